"""Provider families as data: protocol, endpoints, auth, the hosts an unmodified agent calls.

An *instance* (``backends.config.BackendConfig``) is a family plus a base URL and keys. Besides
the providers the proxy was built around, every row of ``backends.presets`` is a family of its
own (``type: deepseek``), speaking the protocol of the family it is compatible with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from backends.presets import PRESETS, Preset
from translators.openai_chat import NO_ECHO, ReasoningEcho

# Where each protocol's operations live under a base URL (as the vendor's SDK takes it).
GENERATE = {
    "openai-chat": "{base}/chat/completions",
    "openai-responses": "{base}/responses",
    "anthropic": "{base}/v1/messages",
}
COUNT_TOKENS = {"anthropic": "{base}/v1/messages/count_tokens"}
MODELS = {
    "openai-chat": "{base}/models",
    "openai-responses": "{base}/models",
    "anthropic": "{base}/v1/models",
}


def _gemini_root(base: str) -> str:
    return base if base.endswith(("/v1beta", "/v1")) else f"{base}/v1beta"


@dataclass(frozen=True)
class Family:
    name: str
    protocols: tuple[str, ...]  # translators module NAMEs it speaks; the first is its native one
    default_base_url: str
    auth_header: str  # header that carries the key
    auth_prefix: str = ""  # e.g. "Bearer "
    hosts: tuple[str, ...] = ()  # hosts whose traffic belongs to this family in HTTPS-proxy mode
    extra_headers: dict[str, str] = field(default_factory=dict)
    # What the server wants of earlier reasoning in Chat requests (docs/wire.md §1.7).
    reasoning_echo: ReasoningEcho = NO_ECHO
    env_key: str | None = None  # where a preset backend's key comes from by convention

    @property
    def protocol(self) -> str:
        return self.protocols[0]

    def protocol_for(self, client_protocol: str) -> str:
        """Speak the client's protocol when the family can (no translation), else its own."""
        return client_protocol if client_protocol in self.protocols else self.protocols[0]

    def render_options(self, protocol: str) -> dict[str, Any]:
        """Keyword arguments for ``render_request`` of ``protocol`` on this family's servers."""
        if protocol == "openai-chat" and self.reasoning_echo != NO_ECHO:
            return {"reasoning_echo": self.reasoning_echo}
        return {}

    def auth_headers(self, key: str) -> dict[str, str]:
        return {self.auth_header: self.auth_prefix + key}

    def url(self, protocol: str, base_url: str, model: str, stream: bool, *, sse: bool = True) -> str:
        """The generation endpoint. ``sse=False`` asks Gemini for its streamed JSON array."""
        base = base_url.rstrip("/")
        if protocol == "gemini":
            method = "generateContent"
            if stream:
                method = "streamGenerateContent?alt=sse" if sse else "streamGenerateContent"
            return f"{_gemini_root(base)}/models/{quote(model, safe='-._~/')}:{method}"
        return GENERATE[protocol].format(base=base)

    def count_tokens_url(self, base_url: str, model: str) -> str | None:
        """The provider's own token-counting endpoint, if it has one."""
        base = base_url.rstrip("/")
        if self.protocol == "gemini":
            return f"{_gemini_root(base)}/models/{quote(model, safe='-._~/')}:countTokens"
        template = COUNT_TOKENS.get(self.protocol)
        return template.format(base=base) if template else None

    def models_url(self, base_url: str) -> str:
        base = base_url.rstrip("/")
        if self.protocol == "gemini":
            return f"{_gemini_root(base)}/models?pageSize=1000"
        return MODELS[self.protocol].format(base=base)


OPENAI_PROTOCOLS = ("openai-chat", "openai-responses")
# How each protocol a preset may speak authenticates, and the headers it always sends.
PRESET_AUTH: dict[str, tuple[str, str, dict[str, str]]] = {
    "openai-chat": ("authorization", "Bearer ", {}),
    "anthropic": ("x-api-key", "", {"anthropic-version": "2023-06-01"}),
}


def preset_family(preset: Preset) -> Family:
    header, prefix, extra = PRESET_AUTH[preset.protocol]
    echo = ReasoningEcho(preset.echo, preset.echo_field)
    return Family(
        preset.name,
        (preset.protocol,),
        preset.base_url,
        header,
        prefix,
        hosts=preset.hosts,
        extra_headers=dict(extra),
        reasoning_echo=echo,
        env_key=preset.env_key,
    )


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "openai",
            OPENAI_PROTOCOLS,
            "https://api.openai.com/v1",
            "authorization",
            "Bearer ",
            hosts=("api.openai.com",),
        ),
        Family(
            "openai-responses",
            ("openai-responses",),
            "https://api.openai.com/v1",
            "authorization",
            "Bearer ",
        ),
        Family(
            "anthropic",
            ("anthropic",),
            "https://api.anthropic.com",
            "x-api-key",
            hosts=("api.anthropic.com",),
            extra_headers={"anthropic-version": "2023-06-01"},
        ),
        Family(
            "gemini",
            ("gemini",),
            "https://generativelanguage.googleapis.com",
            "x-goog-api-key",
            hosts=("generativelanguage.googleapis.com",),
        ),
        Family(
            "openrouter",
            ("openai-chat",),
            "https://openrouter.ai/api/v1",
            "authorization",
            "Bearer ",
            hosts=("openrouter.ai",),
            reasoning_echo=ReasoningEcho("echo", "reasoning"),
        ),
        Family("openai-compatible", ("openai-chat",), "", "authorization", "Bearer "),
        *map(preset_family, PRESETS),
    )
}


def family_for_host(host: str) -> Family | None:
    for family in FAMILIES.values():
        if host in family.hosts:
            return family
    return None
