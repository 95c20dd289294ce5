"""Model selectors: backend:model, instance:model, globs, the intercepted host's family, default."""

from __future__ import annotations

import pytest

from backends.config import parse_config
from backends.routing import Router
from translators.errors import ProxyError

CONFIG = {
    "backends": {
        "openai": {"api_keys": ["o1", "o2"], "models": ["gpt-*"]},
        "openai.work": {"api_keys": ["w"]},
        "anthropic": {"api_keys": ["a"], "models": ["claude-*"]},
        "openrouter": {"api_keys": ["r"], "models": ["*/*"]},
    },
    "default_backend": "anthropic",
}


@pytest.fixture
def router():
    return Router(parse_config(CONFIG, "t"))


@pytest.mark.parametrize(
    "selector, instance, model",
    [
        ("openai:gpt-4o", "openai", "gpt-4o"),
        ("openai.work:gpt-4o", "openai.work", "gpt-4o"),
        ("anthropic:claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
        ("gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("claude-opus-4", "anthropic", "claude-opus-4"),
        ("meta-llama/llama-3-70b", "openrouter", "meta-llama/llama-3-70b"),
        ("some-unknown-model", "anthropic", "some-unknown-model"),
        ("llama3:8b", "anthropic", "llama3:8b"),  # a colon that names no backend is part of the model
    ],
)
def test_selector_resolves_to_instance_and_model(router, selector, instance, model):
    target = router.resolve(selector)
    assert (target.instance, target.model) == (instance, model)


def test_intercepted_host_family_beats_default(router):
    assert router.resolve("o3-pro", host_family="openai").instance == "openai"


def test_uri_parameters_are_typed(router):
    target = router.resolve("openai:gpt-4o?temperature=0.5&max_tokens=100&reasoning_effort=low")
    assert target.model == "gpt-4o"
    assert target.params == {"temperature": 0.5, "max_tokens": 100, "reasoning_effort": "low"}


@pytest.mark.parametrize(
    "selector, code, message",
    [
        ("gpt-4o?color=red", "invalid_request", "parameter 'color' is not supported"),
        ("gpt-4o?temperature=hot", "invalid_request", "temperature='hot' is not a valid float"),
        ("gemini:gemini-2.5-pro", "not_found", "no backend of type 'gemini' is configured"),
        ("", "invalid_request", "a model is required"),
    ],
)
def test_bad_selectors_are_refused_clearly(router, selector, code, message):
    with pytest.raises(ProxyError) as e:
        router.resolve(selector)
    assert e.value.code == code and message in e.value.message


def test_no_default_and_no_match_is_not_found():
    router = Router(parse_config({"backends": {"openai": {"models": ["gpt-*"]}}}, "t"))
    with pytest.raises(ProxyError, match="no backend serves it"):
        router.resolve("claude-3")


def test_gemini_endpoint_keeps_selector_colons_out_of_the_url():
    from backends.families import FAMILIES

    url = FAMILIES["gemini"].url("gemini", "http://h", "gemini-2.5-pro", stream=True)
    assert url == "http://h/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    assert FAMILIES["anthropic"].url("anthropic", "http://h/", "m", stream=False) == "http://h/v1/messages"


@pytest.mark.parametrize(
    "client, family, protocol",
    [
        ("openai-responses", "openai", "openai-responses"),
        ("openai-chat", "openai", "openai-chat"),
        ("openai-responses", "anthropic", "anthropic"),
        ("openai-chat", "openai-responses", "openai-responses"),
        ("anthropic", "openrouter", "openai-chat"),
    ],
)
def test_target_speaks_the_clients_protocol_when_its_family_can(client, family, protocol):
    router = Router(parse_config({"backends": {family: {"api_keys": ["k"]}}, "default_backend": family}, "t"))
    assert router.resolve("m", client_protocol=client).protocol == protocol
