"""End to end: every client protocol × every backend × streamed or not × text or a tool round trip.

Each case drives the official SDK against a real `mitmdump -s addons/llm.py`, which talks to the
fake provider of the chosen backend; the case checks what the client sees (text, tool call,
stop reason, usage) and what the provider got (the injected key, never the client's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

CLIENT_KEY = "client-key-that-must-not-travel"
BACKENDS = ("openai", "anthropic", "gemini")
UPSTREAM_KEYS = {"openai": "sk-fake-openai-0001", "anthropic": "sk-ant-fake-0001", "gemini": "AIza-fake-gemini-0001"}
# (input, output) tokens each fake reports, as every client should see them.
USAGE = {"openai": (11, 7), "anthropic": (13, 5), "gemini": (17, 3)}
TOOL_RESULT = "18C and sunny"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
}


@dataclass
class Turn:
    text: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)  # id, name, args
    stop: str | None = None
    usage: tuple[int | None, int | None] = (None, None)
    history: Any = None  # the assistant turn, in the client's own shape, to send back


# -- OpenAI Chat Completions client ---------------------------------------------------------------


class OpenAIClient:
    stops = {"text": "stop", "tool": "tool_calls"}

    def __init__(self, proxy):
        self.client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]

    def ask(self, model: str, stream: bool, tools: bool) -> Turn:
        kwargs: dict[str, Any] = {"model": model, "messages": self.messages}
        if tools:
            kwargs["tools"] = [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA}}
            ]
        if not stream:
            response = self.client.chat.completions.create(**kwargs)
            choice = response.choices[0]
            calls = [
                {"id": c.id, "name": c.function.name, "args": json.loads(c.function.arguments)}
                for c in choice.message.tool_calls or []
            ]
            usage = (response.usage.prompt_tokens, response.usage.completion_tokens)
            return self._turn(choice.message.content or "", calls, choice.finish_reason, usage)
        text, calls, stop, usage = "", {}, None, (None, None)
        for chunk in self.client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}):
            if chunk.usage:
                usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for call in choice.delta.tool_calls or []:
                    entry = calls.setdefault(call.index, {"id": "", "name": "", "args": ""})
                    entry["id"] += call.id or ""
                    entry["name"] += (call.function.name or "") if call.function else ""
                    entry["args"] += (call.function.arguments or "") if call.function else ""
                stop = choice.finish_reason or stop
        parsed = [{**c, "args": json.loads(c["args"])} for c in calls.values()]
        return self._turn(text, parsed, stop, usage)

    def _turn(self, text, calls, stop, usage) -> Turn:
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
                for c in calls
            ]
        return Turn(text, calls, stop, usage, message)

    def answer_tool(self, turn: Turn, result: str) -> None:
        self.messages += [turn.history, {"role": "tool", "tool_call_id": turn.calls[0]["id"], "content": result}]


# -- Anthropic Messages client --------------------------------------------------------------------


class AnthropicClient:
    stops = {"text": "end_turn", "tool": "tool_use"}

    def __init__(self, proxy):
        self.client = anthropic.Anthropic(base_url=proxy.front_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0)
        self.messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]

    def ask(self, model: str, stream: bool, tools: bool) -> Turn:
        kwargs: dict[str, Any] = {"model": model, "max_tokens": 512, "messages": self.messages}
        if tools:
            kwargs["tools"] = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}]
        if stream:
            text = ""
            with self.client.messages.stream(**kwargs) as events:
                for event in events:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        text += event.delta.text
                message = events.get_final_message()
            assert text == "".join(b.text for b in message.content if b.type == "text")
        else:
            message = self.client.messages.create(**kwargs)
        text = "".join(b.text for b in message.content if b.type == "text")
        calls = [{"id": b.id, "name": b.name, "args": b.input} for b in message.content if b.type == "tool_use"]
        usage = (message.usage.input_tokens, message.usage.output_tokens)
        return Turn(text, calls, message.stop_reason, usage, {"role": "assistant", "content": message.content})

    def answer_tool(self, turn: Turn, result: str) -> None:
        block = {"type": "tool_result", "tool_use_id": turn.calls[0]["id"], "content": result}
        self.messages += [turn.history, {"role": "user", "content": [block]}]


# -- Gemini client --------------------------------------------------------------------------------


class GeminiClient:
    stops = {"text": "STOP", "tool": "STOP"}

    def __init__(self, proxy):
        options = types.HttpOptions(base_url=proxy.front_url)
        self.client = genai.Client(api_key=CLIENT_KEY, http_options=options)
        self.contents: list[Any] = [types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])]

    def ask(self, model: str, stream: bool, tools: bool) -> Turn:
        config = types.GenerateContentConfig()
        if tools:
            declaration = types.FunctionDeclaration(
                name="get_weather", description="Weather", parameters_json_schema=WEATHER_SCHEMA
            )
            config = types.GenerateContentConfig(
                tools=[types.Tool(function_declarations=[declaration])],
                automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            )
        if stream:
            chunks = list(self.client.models.generate_content_stream(model=model, contents=self.contents, config=config))
        else:
            chunks = [self.client.models.generate_content(model=model, contents=self.contents, config=config)]
        text, parts, stop, usage = "", [], None, (None, None)
        for chunk in chunks:
            candidate = chunk.candidates[0]
            for part in candidate.content.parts or []:
                parts.append(part)
                text += part.text or "" if not part.thought else ""
            stop = candidate.finish_reason.value if candidate.finish_reason else stop
            if chunk.usage_metadata and chunk.usage_metadata.candidates_token_count is not None:
                meta = chunk.usage_metadata
                usage = (meta.prompt_token_count, meta.candidates_token_count + (meta.thoughts_token_count or 0))
        calls = [
            {"id": p.function_call.id, "name": p.function_call.name, "args": p.function_call.args}
            for p in parts
            if p.function_call
        ]
        return Turn(text, calls, stop, usage, types.Content(role="model", parts=parts))

    def answer_tool(self, turn: Turn, result: str) -> None:
        response = types.Part.from_function_response(name=turn.calls[0]["name"], response={"output": result})
        self.contents += [turn.history, types.Content(role="user", parts=[response])]


CLIENTS = {"openai": OpenAIClient, "anthropic": AnthropicClient, "gemini": GeminiClient}


def assert_upstream_got_injected_key(fakes, backend: str) -> None:
    fake = getattr(fakes, backend)
    assert fake.requests, f"the {backend} fake received nothing"
    for request in fake.requests:
        headers = json.dumps(request.headers) + json.dumps(request.query)
        assert UPSTREAM_KEYS[backend] in headers
        assert CLIENT_KEY not in headers


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
