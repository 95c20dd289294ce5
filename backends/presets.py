"""Well-known OpenAI- and Anthropic-compatible providers as data, so ``type: deepseek`` is a
complete backend: base URL, protocol, where its key comes from, how it wants reasoning back.

Each row becomes a family in ``backends.families.FAMILIES`` (its name is the ``type``); a row
is all a new provider needs. The base URLs are the ones the providers document for their
OpenAI-compatible (or Anthropic-compatible) API, taken as the vendor's SDK takes them: the Chat
endpoint is ``{base}/chat/completions``, the Messages one ``{base}/v1/messages``.

``env_key`` is the variable a preset backend's key is read from when the configuration gives
none (and what the no-configuration start looks for); None marks a local server that needs no key.
``also`` lists the other base URLs the provider serves the same API at (a mainland endpoint, a
``/v1`` alias, a coding plan). With ``base_url`` they are what the HTTPS proxy intercepts
(``intercepted``): a client that calls one of them unmodified, e.g. Qwen Code at its default
``dashscope.aliyuncs.com/compatible-mode/v1``, is routed like a call to ``api.openai.com``. Local
servers (``http://``) are never intercepted: the proxy only sees their traffic when pointed at it.

``echo`` says what the server wants of earlier reasoning on assistant messages — a mode of
``translators.openai_chat.ReasoningEcho`` (docs/wire.md §1.7):

- ``drop``: never sent back (Groq refuses the unknown member with a 400; others were not
  shown to want it);
- ``echo``: each message's own reasoning text, where it has one (Z.AI GLM keeps thinking
  across turns; OpenRouter takes it as ``reasoning``);
- ``always``: every assistant message carries the member, empty when the reasoning is not
  known (DeepSeek and Kimi refuse a tool-calling turn without it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

EchoMode = Literal["drop", "echo", "always"]


@dataclass(frozen=True)
class Preset:
    name: str
    protocol: Literal["openai-chat", "anthropic"]
    base_url: str
    env_key: str | None  # None: a local server without a key
    echo: EchoMode = "drop"
    echo_field: str = "reasoning_content"
    also: tuple[str, ...] = ()  # other base URLs of the same API

    @property
    def intercepted(self) -> tuple[tuple[str, str], ...]:
        """(host, base path) of each ``https`` base URL, for the HTTPS proxy's host table."""
        parts = [urlsplit(url) for url in (self.base_url, *self.also)]
        return tuple((p.hostname or "", p.path.rstrip("/")) for p in parts if p.scheme == "https")

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(host for host, _ in self.intercepted))


PRESETS: tuple[Preset, ...] = (
    # api-docs.deepseek.com: OpenAI at the root (or /v1), Anthropic under /anthropic
    Preset(
        "deepseek",
        "openai-chat",
        "https://api.deepseek.com",
        "DEEPSEEK_API_KEY",
        "always",
        also=("https://api.deepseek.com/v1",),
    ),
    Preset("deepseek-anthropic", "anthropic", "https://api.deepseek.com/anthropic", "DEEPSEEK_API_KEY"),
    # platform.moonshot.ai (Kimi); api.moonshot.cn is the mainland endpoint
    Preset(
        "moonshot",
        "openai-chat",
        "https://api.moonshot.ai/v1",
        "MOONSHOT_API_KEY",
        "always",
        also=("https://api.moonshot.cn/v1",),
    ),
    Preset(
        "moonshot-anthropic",
        "anthropic",
        "https://api.moonshot.ai/anthropic",
        "MOONSHOT_API_KEY",
        also=("https://api.moonshot.cn/anthropic",),
    ),
    # docs.z.ai (GLM); the coding plan lives at /api/coding/paas/v4
    Preset(
        "zai",
        "openai-chat",
        "https://api.z.ai/api/paas/v4",
        "ZAI_API_KEY",
        "echo",
        also=("https://api.z.ai/api/coding/paas/v4",),
    ),
    Preset("zai-anthropic", "anthropic", "https://api.z.ai/api/anthropic", "ZAI_API_KEY"),
    # Alibaba Model Studio (Qwen), international; dashscope.aliyuncs.com is the mainland one (and
    # Qwen Code's default base URL)
    Preset(
        "dashscope",
        "openai-chat",
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        "DASHSCOPE_API_KEY",
        also=("https://dashscope.aliyuncs.com/compatible-mode/v1",),
    ),
    Preset("groq", "openai-chat", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    Preset("together", "openai-chat", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    Preset("mistral", "openai-chat", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    Preset("xai", "openai-chat", "https://api.x.ai/v1", "XAI_API_KEY"),
    # Local servers at their default ports (vLLM's and llama.cpp's are the proxy's own defaults
    # too: one of the two moves).
    Preset("ollama", "openai-chat", "http://localhost:11434/v1", None),
    Preset("lmstudio", "openai-chat", "http://localhost:1234/v1", None),
    Preset("vllm", "openai-chat", "http://localhost:8000/v1", None),
    Preset("llamacpp", "openai-chat", "http://localhost:8080/v1", None),
)


def _first_per_variable() -> dict[str, str]:
    """preset -> its key's variable, for a start without configuration: the first row naming a
    variable (a provider's OpenAI-compatible API rather than its Anthropic one)."""
    first: dict[str, str] = {}
    for preset in PRESETS:
        if preset.env_key and preset.env_key not in first.values():
            first[preset.name] = preset.env_key
    return first


PRESET_ENV_KEYS = _first_per_variable()
