"""Thinking OpenAI-compatible servers through a real `mitmdump -s addons/llm.py`, on presets.

A fake DeepSeek-like server (``FakeReasoner``) answers with its reasoning in ``reasoning_content``,
in ``reasoning``, or inside ``<think>…</think>`` at the start of the content, streamed in pieces
that cut both tags. Backends are presets given only a key (``type: deepseek``) or nothing at all
(``type: ollama``). An Anthropic client gets the reasoning as thinking blocks, the answer as text;
Gemini and Responses clients get thought parts and a reasoning item; a Chat client, whose
protocol the server speaks, gets the server's own answer untouched (or, when a rewrite rule makes
the proxy re-encode it, its reasoning as ``reasoning_content``) — and the server refuses, as
DeepSeek does, a tool-calling turn sent back without its reasoning. The other way round, a Chat
client served by Anthropic with extended thinking (``ThinkingAnthropic``) gets the thinking as
``reasoning_content``, whole and streamed, beside an answer the official SDK parses.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web
from google import genai
from google.genai import types
from support.builders import CLIENT_KEY, WEATHER_SCHEMA
from support.fakes import ANTHROPIC_KEY, OPENAI_KEY
from support.fakes.anthropic import FakeAnthropic
from support.fakes.common import Answer, Stream
from support.fakes.openai import (
    PASS_BACK_MODEL,
    PASS_BACK_REFUSED,
    REASONING_FIELDS,
    REASONING_TEXT,
    STRICT_MODEL,
    THINK_MODEL,
    FakeReasoner,
)

ANSWER = "Hello from reasoner!"
STYLES = [*REASONING_FIELDS, THINK_MODEL]  # the model names, one per way of carrying reasoning
TOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}]
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]


@pytest.fixture(scope="module")
def reasoner():
    fake = FakeReasoner(OPENAI_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def local():
    fake = FakeReasoner("no-key-needed")
    fake.keyless = True
    yield fake.start()
    fake.stop()


@pytest.fixture(autouse=True)
def _fresh(reasoner, local):
    reasoner.reset()
    local.reset()


THOUGHTS = ("The user greets me. ", "I greet back.")
SIGNATURE = "EqQBCkYIBxgCKkB-signed"


def bump_index(frame: bytes) -> bytes:
    """An Anthropic SSE frame with its content-block index one higher (a block now comes first)."""
    head, _, data = frame.partition(b"data: ")
    event = json.loads(data)
    if "index" in event:
        event["index"] += 1
    return head + b"data: " + json.dumps(event).encode() + b"\n\n"


class ThinkingAnthropic(FakeAnthropic):
    """Anthropic with extended thinking on: a signed thinking block (two thinking deltas, then its
    signature, when streamed) before the usual answer."""

    name = "thinking-anthropic"

    def message(self, model: str, answer: Answer, request: web.Request) -> dict[str, Any]:
        body = super().message(model, answer, request)
        block = {"type": "thinking", "thinking": "".join(THOUGHTS), "signature": SIGNATURE}
        return {**body, "content": [block, *body["content"]]}

    def stream(self, model: str, answer: Answer, request: web.Request) -> Stream:
        plain = super().stream(model, answer, request)
        deltas = [{"type": "thinking_delta", "thinking": t} for t in THOUGHTS]
        deltas.append({"type": "signature_delta", "signature": SIGNATURE})
        thinking = [
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            },
            *({"type": "content_block_delta", "index": 0, "delta": d} for d in deltas),
            {"type": "content_block_stop", "index": 0},
        ]
        frames = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in thinking]
        rest = [bump_index(f) for f in plain.frames]
        return Stream([rest[0], *frames, *rest[1:]], plain.error, head=plain.head + len(frames))


@pytest.fixture(scope="module")
def thinker():
    fake = ThinkingAnthropic(ANTHROPIC_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def reasoning_proxy(reasoner, local, thinker, tmp_path_factory):
    from support.proxy import Proxy

    config = (
        "backends:\n"
        f'  deepseek: {{base_url: "{reasoner.base_url}/v1", api_keys: ["{OPENAI_KEY}"]}}\n'
        f'  ollama: {{base_url: "{local.base_url}/v1"}}\n'
        f'  groq: {{base_url: "{reasoner.base_url}/v1", api_keys: ["{OPENAI_KEY}"]}}\n'
        f'  anthropic: {{base_url: "{thinker.base_url}", api_keys: ["{ANTHROPIC_KEY}"]}}\n'
        "default_backend: deepseek\n"
    )
    running = Proxy(tmp_path_factory.mktemp("reasoning"), config).start()
    yield running
    running.stop()


def messages_client(proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.front_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0)


def chat_client(proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def ask_messages(proxy, model: str, stream: bool, **extra: Any) -> tuple[list[tuple[str, str]], Any]:
    """(block type, its text) of the answer, and the answer, for a Messages client."""
    args = {"model": model, "max_tokens": 512, "messages": [{"role": "user", "content": "Hi"}]} | extra
    sdk = messages_client(proxy)
    if stream:
        with sdk.messages.stream(**args) as events:
            deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
            message = events.get_final_message()
        assert "thinking_delta" in deltas
    else:
        message = sdk.messages.create(**args)
    blocks = [
        (b.type, getattr(b, "thinking", None) or getattr(b, "text", None) or b.name) for b in message.content
    ]
    return blocks, message


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("style", STYLES)
def test_reasoning_reaches_an_anthropic_client_as_thinking_then_text(
    reasoning_proxy, reasoner, style, stream
):
    blocks, message = ask_messages(reasoning_proxy, f"deepseek:{style}", stream)

    assert blocks == [("thinking", REASONING_TEXT), ("text", ANSWER)]
    assert message.content[0].signature == ""  # not Anthropic's: the client's echo is dropped later
    assert message.stop_reason == "end_turn"
    assert reasoner.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("style", STYLES)
def test_reasoning_before_a_tool_call_comes_first(reasoning_proxy, style, stream):
    blocks, message = ask_messages(reasoning_proxy, f"deepseek:{style}", stream, tools=TOOLS)

    assert blocks == [("thinking", REASONING_TEXT), ("tool_use", "get_weather")]
    assert message.content[1].input == {"city": "Paris"} and message.stop_reason == "tool_use"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_local_preset_needs_no_key(reasoning_proxy, local, stream):
    blocks, _ = ask_messages(reasoning_proxy, f"ollama:{THINK_MODEL}", stream)

    assert blocks == [("thinking", REASONING_TEXT), ("text", ANSWER)]
    assert "authorization" not in local.requests[-1].headers
    assert CLIENT_KEY not in str(local.requests[-1].headers)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_chat_client_gets_the_servers_reasoning_as_the_server_sent_it(reasoning_proxy, stream):
    sdk = chat_client(reasoning_proxy)
    args = {"model": f"deepseek:{PASS_BACK_MODEL}", "messages": [{"role": "user", "content": "Hi"}]}
    if stream:
        chunks = list(sdk.chat.completions.create(**args, stream=True))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
        text = "".join(d.content or "" for d in deltas)
    else:
        message = sdk.chat.completions.create(**args).choices[0].message
        reasoning, text = (message.model_extra or {})["reasoning_content"], message.content

    assert (reasoning, text) == (REASONING_TEXT, ANSWER)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_chat_client_gets_anthropic_thinking_as_reasoning_content(reasoning_proxy, stream):
    sdk = chat_client(reasoning_proxy)
    args = {"model": "anthropic:claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}
    if stream:
        deltas = [c.choices[0].delta for c in sdk.chat.completions.create(**args, stream=True) if c.choices]
        pieces = [(d.model_extra or {}).get("reasoning_content") for d in deltas]
        reasoning = [p for p in pieces if p]
        text = "".join(d.content or "" for d in deltas)
        assert pieces.index(reasoning[0]) < next(i for i, d in enumerate(deltas) if d.content)
    else:
        message = sdk.chat.completions.create(**args).choices[0].message
        reasoning, text = [(message.model_extra or {})["reasoning_content"]], message.content

    assert "".join(reasoning) == "".join(THOUGHTS) and text == "Hello from thinking-anthropic!"
    assert SIGNATURE not in str(reasoning)


@pytest.fixture(scope="module")
def rewriting_proxy(reasoner, tmp_path_factory):
    """A Chat server behind a rewrite rule on answers: a same-protocol route whose answer the
    proxy re-encodes instead of passing on."""
    from support.proxy import Proxy

    config = (
        "backends:\n"
        f'  deepseek: {{base_url: "{reasoner.base_url}/v1", api_keys: ["{OPENAI_KEY}"]}}\n'
        "default_backend: deepseek\n"
        "policies:\n"
        '  rewrite: [{where: assistant, find: "Hello from", replace: "Greetings from"}]\n'
    )
    running = Proxy(tmp_path_factory.mktemp("rewriting"), config).start()
    yield running
    running.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("style", STYLES)
def test_a_chat_client_keeps_the_servers_reasoning_when_the_proxy_rewrites_the_answer(
    rewriting_proxy, style, stream
):
    sdk = chat_client(rewriting_proxy)
    args = {"model": f"deepseek:{style}", "messages": [{"role": "user", "content": "Hi"}]}
    if stream:
        deltas = [c.choices[0].delta for c in sdk.chat.completions.create(**args, stream=True) if c.choices]
        reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
        text = "".join(d.content or "" for d in deltas)
    else:
        message = sdk.chat.completions.create(**args).choices[0].message
        reasoning, text = (message.model_extra or {}).get("reasoning_content"), message.content

    assert (reasoning, text) == (REASONING_TEXT, "Greetings from reasoner!")


def tool_turn(reasoning: dict[str, str]) -> list[dict[str, Any]]:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call], **reasoning},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]


def test_a_tool_turn_sent_back_without_its_reasoning_is_refused_as_deepseek_does(reasoning_proxy):
    sdk = chat_client(reasoning_proxy)
    args = {"model": f"deepseek:{PASS_BACK_MODEL}", "tools": CHAT_TOOLS}

    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(**args, messages=tool_turn({}))
    answer = sdk.chat.completions.create(**args, messages=tool_turn({"reasoning_content": REASONING_TEXT}))

    assert PASS_BACK_REFUSED in str(refused.value)
    assert answer.choices[0].message.content == "Tool said: 18C"


def gemini_client(proxy) -> genai.Client:
    return genai.Client(api_key=CLIENT_KEY, http_options=types.HttpOptions(base_url=proxy.front_url))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_reasoning_reaches_a_gemini_client_as_thought_parts(reasoning_proxy, stream):
    sdk, model = gemini_client(reasoning_proxy), f"deepseek:{THINK_MODEL}"
    if stream:
        parts = [
            p for r in sdk.models.generate_content_stream(model=model, contents="Hi") for p in r.parts or []
        ]
    else:
        parts = sdk.models.generate_content(model=model, contents="Hi").parts or []
    thoughts = "".join(p.text or "" for p in parts if p.thought)
    text = "".join(p.text or "" for p in parts if not p.thought)

    assert (thoughts, text) == (REASONING_TEXT, ANSWER)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_reasoning_reaches_a_responses_client_as_a_reasoning_item(reasoning_proxy, stream):
    sdk = chat_client(reasoning_proxy)
    args = {"model": f"deepseek:{THINK_MODEL}", "input": "Hi"}
    if stream:
        with sdk.responses.stream(**args) as events:
            response = events.get_final_response()
    else:
        response = sdk.responses.create(**args)
    reasoning = [item for item in response.output if item.type == "reasoning"]

    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert "".join(s.text for s in reasoning[0].summary) == REASONING_TEXT
    assert response.output_text == ANSWER


def test_earlier_thinking_never_reaches_a_server_that_refuses_it(reasoning_proxy, reasoner):
    """An Anthropic client's history carries thinking (here from another model); Groq refuses
    any reasoning member on assistant messages."""
    thinking = {"type": "thinking", "thinking": "Earlier thoughts.", "signature": ""}
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [thinking, call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]},
    ]
    blocks, _ = ask_messages(reasoning_proxy, f"groq:{STRICT_MODEL}", False, tools=TOOLS, messages=history)
    sent = reasoner.requests[-1].body["messages"]

    assert blocks == [("text", "Tool said: 18C")]
    assert "Earlier thoughts." not in str(sent)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_anthropic_client_finishes_a_tool_turn_on_deepseek(reasoning_proxy, reasoner, stream):
    """The client echoes the thinking it was shown; DeepSeek needs it back on the tool turn."""
    model = f"deepseek:{PASS_BACK_MODEL}"
    _, first = ask_messages(reasoning_proxy, model, stream, tools=TOOLS)
    result = {"type": "tool_result", "tool_use_id": first.content[1].id, "content": "18C"}
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [result]},
    ]
    blocks, _ = ask_messages(reasoning_proxy, model, stream, tools=TOOLS, messages=history)
    sent = [m for m in reasoner.requests[-1].body["messages"] if m["role"] == "assistant"]

    assert blocks == [("thinking", REASONING_TEXT), ("text", "Tool said: 18C")]
    assert sent[0]["reasoning_content"] == REASONING_TEXT
