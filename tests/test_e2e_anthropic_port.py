"""The Anthropic-rooted port (ANTHROPIC_BASE_URL=http://127.0.0.1:PORT) and token counting."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from google import genai
from google.genai import types
from support.proxy import Proxy

CLIENT_KEY = "client-key-that-must-not-travel"


@pytest.fixture(scope="module")
def anthropic_port_proxy(fakes, tmp_path_factory):
    running = Proxy(tmp_path_factory.mktemp("anthropic-port"), fakes.llm_yaml(), anthropic_port=True).start()
    running.anthropic_url = f"http://127.0.0.1:{running.anthropic_port}"
    yield running
    running.stop()


def client_at_port(proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.anthropic_url, api_key=CLIENT_KEY, max_retries=0)


MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.mark.parametrize("backend", ["anthropic", "openai", "gemini"])
def test_messages_at_the_root_of_the_port(anthropic_port_proxy, backend):
    message = client_at_port(anthropic_port_proxy).messages.create(
        model=f"{backend}:fake-model", max_tokens=100, messages=MESSAGES
    )
    assert message.content[0].text == f"Hello from {backend}!"


def test_count_tokens_is_forwarded_to_an_anthropic_backend(anthropic_port_proxy, fakes):
    raw = client_at_port(anthropic_port_proxy).messages.with_raw_response.count_tokens(
        model="anthropic:claude-x", messages=MESSAGES
    )
    assert raw.parse().input_tokens == 13  # what the fake counts
    assert "x-llm-token-count" not in raw.headers
    assert fakes.anthropic.requests[-1].path == "/v1/messages/count_tokens"
    assert fakes.anthropic.requests[-1].body["model"] == "claude-x"


@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_count_tokens_for_other_backends_is_a_labelled_estimate(anthropic_port_proxy, fakes, backend):
    raw = client_at_port(anthropic_port_proxy).messages.with_raw_response.count_tokens(
        model=f"{backend}:m", messages=MESSAGES, system="Be terse."
    )
    count = raw.parse().input_tokens
    assert 10 < count < 40
    assert raw.headers["x-llm-token-count"] == "estimated; tiktoken o200k_base"
    assert getattr(fakes, backend).requests == []


def test_models_at_the_port_are_anthropic_shaped(anthropic_port_proxy):
    page = client_at_port(anthropic_port_proxy).models.list()
    assert page.has_more is False


def test_unknown_path_on_the_port_is_an_anthropic_404(anthropic_port_proxy):
    response = httpx.post(f"{anthropic_port_proxy.anthropic_url}/v1/chat/completions", json={}, timeout=10)
    assert response.status_code == 404
    assert response.json()["type"] == "error"


def gemini(proxy) -> genai.Client:
    return genai.Client(api_key=CLIENT_KEY, http_options=types.HttpOptions(base_url=proxy.front_url))


def test_gemini_count_tokens_is_forwarded_to_a_gemini_backend(proxy, fakes):
    client = gemini(proxy)  # keep a reference: a collected client closes its connection pool
    result = client.models.count_tokens(model="gemini:gemini-x", contents="Hello there")
    assert result.total_tokens == 19
    assert fakes.gemini.requests[-1].path.endswith("/models/gemini-x:countTokens")
    assert fakes.gemini.requests[-1].headers["x-goog-api-key"] == "AIza-fake-gemini-0001"


def test_gemini_count_tokens_for_other_backends_is_estimated(proxy, fakes):
    response = httpx.post(
        f"{proxy.front_url}/v1beta/models/anthropic:claude-x:countTokens",
        json={"contents": [{"role": "user", "parts": [{"text": "Hello there, how are you today?"}]}]},
        timeout=10,
    )
    assert response.status_code == 200
    assert 5 < response.json()["totalTokens"] < 20
    assert response.headers["x-llm-token-count"].startswith("estimated")
    assert fakes.anthropic.requests == []
