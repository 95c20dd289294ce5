"""Provider presets (backends/presets.py): ``type: deepseek`` with a key, or nothing for a local
server, is a whole backend — base URL, protocol, auth, where the key comes from, and how the
server wants earlier reasoning back (docs/wire.md §1.7)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from addons.frontdoor import PROVIDER_HOSTS
from backends.config import ENV_KEYS, config_from_environment, parse_config
from backends.families import FAMILIES, family_for_host
from backends.presets import PRESET_ENV_KEYS, PRESETS
from backends.routing import Router
from translators import openai_chat

BUILT_IN = ("openai", "openai-responses", "anthropic", "gemini", "openrouter", "openai-compatible")
NAMES = [p.name for p in PRESETS]
# protocol -> (generation endpoint under the base URL, the header carrying the key)
PROTOCOL_WIRE = {
    "openai-chat": ("/chat/completions", "authorization"),
    "anthropic": ("/v1/messages", "x-api-key"),
}


def backend_of(preset: str, **fields):
    config = parse_config({"backends": {preset: fields}}, "test")
    return config.backends[preset]


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch):
    for variable in {*ENV_KEYS.values()}:
        monkeypatch.delenv(variable, raising=False)


def test_the_issue_asks_for_these_providers_at_least():
    wanted = {"deepseek", "moonshot", "zai", "dashscope", "groq", "together", "mistral", "xai", "ollama"}
    assert wanted | {"lmstudio", "vllm"} <= set(NAMES)
    assert len(NAMES) == len(set(NAMES)) and not set(NAMES) & set(BUILT_IN)


@pytest.mark.parametrize("preset", PRESETS, ids=NAMES)
def test_a_preset_with_a_key_is_a_whole_backend(preset):
    backend = backend_of(preset.name, api_keys=["k"])
    family = FAMILIES[backend.type]
    path, header = PROTOCOL_WIRE[preset.protocol]

    assert backend.base_url == preset.base_url and family.protocols == (preset.protocol,)
    assert family.url(preset.protocol, backend.base_url, "m", stream=True) == preset.base_url + path
    assert header in family.auth_headers("k")
    assert family.env_key == preset.env_key


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.env_key], ids=lambda p: p.name)
def test_a_preset_without_keys_reads_its_providers_variable(preset, monkeypatch):
    assert backend_of(preset.name).api_keys == []
    monkeypatch.setenv(preset.env_key, "from-env")

    assert backend_of(preset.name).api_keys == ["from-env"]
    assert backend_of(preset.name, api_keys=["given"]).api_keys == ["given"]
    assert backend_of(f"{preset.name}.second", type=preset.name).api_keys == ["from-env"]


def test_local_servers_need_no_key_and_move_with_base_url():
    local = [p for p in PRESETS if p.env_key is None]
    assert {"ollama", "lmstudio", "vllm"} <= {p.name for p in local}
    assert all(p.base_url.startswith("http://localhost:") for p in local)
    assert backend_of("vllm", base_url="http://127.0.0.1:9000/v1").base_url == "http://127.0.0.1:9000/v1"


def test_a_configured_built_in_family_does_not_read_a_variable(monkeypatch):
    """The no-configuration start reads OPENAI_API_KEY; a configured ``openai`` backend does not."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-o")

    assert backend_of("openai").api_keys == []


def test_only_the_first_preset_of_a_variable_starts_without_configuration(monkeypatch):
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-d")
    monkeypatch.setenv("GROQ_API_KEY", "gsk-g")
    config = config_from_environment()

    assert list(config.backends) == ["deepseek", "groq"] and config.default_backend == "deepseek"
    assert PRESET_ENV_KEYS["deepseek"] == "DEEPSEEK_API_KEY" and "deepseek-anthropic" not in PRESET_ENV_KEYS


ECHOES = {
    "deepseek": openai_chat.ReasoningEcho("always"),
    "moonshot": openai_chat.ReasoningEcho("always"),
    "zai": openai_chat.ReasoningEcho("echo"),
    "openrouter": openai_chat.ReasoningEcho("echo", "reasoning"),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_says_how_reasoning_goes_back_in_chat_requests(family):
    expected = {"reasoning_echo": ECHOES[family]} if family in ECHOES else {}

    assert FAMILIES[family].render_options("openai-chat") == expected
    assert FAMILIES[family].render_options("anthropic") == {}


def test_a_preset_is_a_selector_prefix_and_keeps_its_protocol_for_other_clients():
    config = parse_config(
        {"backends": {"deepseek": {"api_keys": ["k"]}, "deepseek-anthropic": {"api_keys": ["k"]}}}, "test"
    )
    router = Router(config)
    chat = router.resolve("deepseek:deepseek-v4-flash", client_protocol="anthropic")
    messages = router.resolve("deepseek-anthropic:deepseek-v4-flash", client_protocol="openai-chat")

    assert (chat.instance, chat.protocol, chat.url(stream=False)) == (
        "deepseek",
        "openai-chat",
        "https://api.deepseek.com/chat/completions",
    )
    assert (messages.protocol, messages.url(stream=True)) == (
        "anthropic",
        "https://api.deepseek.com/anthropic/v1/messages",
    )


REMOTE = [p for p in PRESETS if p.base_url.startswith("https://")]


@pytest.mark.parametrize("preset", REMOTE, ids=lambda p: p.name)
def test_every_url_a_preset_is_called_at_is_intercepted_as_that_preset(preset):
    """The HTTPS proxy's host table is derived from the presets: the generation URL of each base
    URL a provider documents (``base_url`` and ``also``) is taken, for that preset's family."""
    family = FAMILIES[preset.name]
    for base in (preset.base_url, *preset.also):
        url = urlsplit(family.url(preset.protocol, base, "m", stream=True))
        endpoint = PROVIDER_HOSTS[url.hostname][("POST", url.path)]
        expected = (preset.protocol, "generate", preset.name)
        assert (endpoint.protocol, endpoint.kind, endpoint.family) == expected
        assert family_for_host(url.hostname).name.partition("-")[0] == preset.name.partition("-")[0]


def test_local_servers_are_not_intercepted():
    local = {urlsplit(p.base_url).hostname for p in PRESETS if not p.base_url.startswith("https://")}
    assert local == {"localhost"} and not local & set(PROVIDER_HOSTS)
    assert all(p.intercepted == () for p in PRESETS if p.env_key is None)


def test_qwen_codes_default_base_url_is_one_of_dashscopes():
    dashscope = next(p for p in PRESETS if p.name == "dashscope")
    assert ("dashscope.aliyuncs.com", "/compatible-mode/v1") in dashscope.intercepted
    assert ("dashscope-intl.aliyuncs.com", "/compatible-mode/v1") in dashscope.intercepted
