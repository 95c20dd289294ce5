"""End to end: every client protocol × every backend × streamed or not × text or a tool round trip.

Each case drives the official SDK against a real `mitmdump -s addons/llm.py`, which talks to the
fake provider of the chosen backend; the case checks what the client sees (text, tool call,
stop reason, usage) and what the provider got (the injected key, never the client's).
"""

from __future__ import annotations

import httpx
import pytest
from support.builders import (
    CLIENT_KEY,
    CLIENTS,
    TOOL_RESULT,
    UPSTREAM_KEYS,
    USAGE,
    OpenAIClient,
    assert_upstream_got_injected_key,
)

BACKENDS = ("openai", "anthropic", "gemini")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("client_protocol", list(CLIENTS))
def test_plain_text(proxy, fakes, client_protocol, backend, stream):
    client = CLIENTS[client_protocol](proxy)
    turn = client.ask(f"{backend}:fake-model", stream=stream, tools=False)
    assert turn.text == f"Hello from {backend}!"
    assert turn.calls == []
    assert turn.stop == client.stops["text"]
    assert turn.usage == USAGE[backend]
    assert_upstream_got_injected_key(fakes, backend)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("client_protocol", list(CLIENTS))
def test_tool_call_round_trip(proxy, fakes, client_protocol, backend, stream):
    client = CLIENTS[client_protocol](proxy)
    first = client.ask(f"{backend}:fake-model", stream=stream, tools=True)
    assert [(c["name"], c["args"]) for c in first.calls] == [("get_weather", {"city": "Paris"})]
    if client_protocol != "gemini":  # Gemini matches results to calls by name; ids are optional
        assert first.calls[0]["id"], "a tool call needs an id the client can answer"
    assert first.stop == client.stops["tool"]
    assert first.usage == USAGE[backend]

    client.answer_tool(first, TOOL_RESULT)
    second = client.ask(f"{backend}:fake-model", stream=stream, tools=True)
    assert second.text == f"Tool said: {TOOL_RESULT}"
    assert second.calls == []
    assert second.stop == client.stops["text"]
    assert len(getattr(fakes, backend).requests) == 2
    assert_upstream_got_injected_key(fakes, backend)


def test_no_key_in_proxy_log(proxy):
    for key in UPSTREAM_KEYS.values():
        assert key not in proxy.log


def test_unconfigured_default_reaches_default_backend(proxy, fakes):
    client = OpenAIClient(proxy)
    turn = client.ask("some-model", stream=False, tools=False)
    assert turn.text == "Hello from openai!"
    assert fakes.openai.requests[-1].body["model"] == "some-model"


def test_selector_parameters_reach_the_provider(proxy, fakes):
    client = OpenAIClient(proxy)
    client.ask("anthropic:claude-x?temperature=0.25&max_tokens=77", stream=False, tools=False)
    body = fakes.anthropic.requests[-1].body
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("claude-x", 0.25, 77)


def test_gemini_stream_without_alt_sse_is_a_json_array(proxy, fakes):
    response = httpx.post(
        f"{proxy.front_url}/v1beta/models/openai:fake-model:streamGenerateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
        headers={"x-goog-api-key": CLIENT_KEY},
        timeout=30,
    )
    chunks = response.json()
    assert isinstance(chunks, list)
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text == "Hello from openai!"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
