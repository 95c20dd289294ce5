"""Provider families as data: protocol, endpoints, auth, the hosts an unmodified agent calls.

An *instance* (``backends.config.BackendConfig``) is a family plus a base URL and keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote


@dataclass(frozen=True)
class Family:
    name: str
    protocol: str  # translators module NAME
    default_base_url: str
    auth_header: str  # header that carries the key
    auth_prefix: str = ""  # e.g. "Bearer "
    hosts: tuple[str, ...] = ()  # hosts whose traffic belongs to this family in HTTPS-proxy mode
    extra_headers: dict[str, str] = field(default_factory=dict)

    def auth_headers(self, key: str) -> dict[str, str]:
        return {self.auth_header: self.auth_prefix + key}

    def url(self, base_url: str, model: str, stream: bool, *, sse: bool = True) -> str:
        """The generation endpoint for ``model`` under ``base_url`` (as the vendor's SDK takes it).
        ``sse=False`` asks Gemini for its streamed JSON array instead of SSE."""
        base = base_url.rstrip("/")
        match self.protocol:
            case "openai-chat":
                return f"{base}/chat/completions"
            case "anthropic":
                return f"{base}/v1/messages"
            case "gemini":
                method = "generateContent"
                if stream:
                    method = "streamGenerateContent?alt=sse" if sse else "streamGenerateContent"
                root = base if base.endswith(("/v1beta", "/v1")) else f"{base}/v1beta"
                return f"{root}/models/{quote(model, safe='-._~/')}:{method}"
        raise ValueError(f"no endpoint for protocol {self.protocol}")


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "openai",
            "openai-chat",
            "https://api.openai.com/v1",
            "authorization",
            "Bearer ",
            hosts=("api.openai.com",),
        ),
        Family(
            "anthropic",
            "anthropic",
            "https://api.anthropic.com",
            "x-api-key",
            hosts=("api.anthropic.com",),
            extra_headers={"anthropic-version": "2023-06-01"},
        ),
        Family(
            "gemini",
            "gemini",
            "https://generativelanguage.googleapis.com",
            "x-goog-api-key",
            hosts=("generativelanguage.googleapis.com",),
        ),
        Family(
            "openrouter",
            "openai-chat",
            "https://openrouter.ai/api/v1",
            "authorization",
            "Bearer ",
            hosts=("openrouter.ai",),
        ),
        Family("openai-compatible", "openai-chat", "", "authorization", "Bearer "),
    )
}


def family_for_host(host: str) -> Family | None:
    for family in FAMILIES.values():
        if host in family.hosts:
            return family
    return None
