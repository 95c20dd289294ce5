"""What several test modules build their requests with.

- ``CLIENTS``: an official SDK per client protocol (OpenAI Chat, Anthropic Messages, Gemini), each
  holding a conversation it can ``ask`` (text or a tool call, whole or streamed) and extend with a
  tool result (``answer_tool``), read back as a ``Turn``; used by the end-to-end matrix, the Responses
  end-to-end tests and the views tests.
- The request pieces they share (``WEATHER_SCHEMA``, ``TOOL_RESULT``, the client's own ``CLIENT_KEY``)
  and what every fake reports (``USAGE``, ``UPSTREAM_KEYS``).
- HTTP clients for the proxy's HTTPS-proxy listener that trust its CA (``proxied_http``,
  ``proxied_http2``).
- ``streamed_calls``: the tool calls canonical stream events carry, however their deltas were cut.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anthropic
import httpx
import httpx2
import openai
from google import genai
from google.genai import types

from translators.canonical import ToolCallDelta, ToolCallStart

CLIENT_KEY = "client-key-that-must-not-travel"
UPSTREAM_KEYS = {
    "openai": "sk-fake-openai-0001",
    "anthropic": "sk-ant-fake-0001",
    "gemini": "AIza-fake-gemini-0001",
}
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
    stops: ClassVar[dict[str, str]] = {"text": "stop", "tool": "tool_calls"}

    def __init__(self, proxy):
        self.client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]

    def ask(self, model: str, stream: bool, tools: bool) -> Turn:
        kwargs: dict[str, Any] = {"model": model, "messages": self.messages}
        if tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather",
                        "parameters": WEATHER_SCHEMA,
                    },
                }
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
        for chunk in self.client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        ):
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
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
                }
                for c in calls
            ]
        return Turn(text, calls, stop, usage, message)

    def answer_tool(self, turn: Turn, result: str) -> None:
        self.messages += [
            turn.history,
            {"role": "tool", "tool_call_id": turn.calls[0]["id"], "content": result},
        ]


# -- Anthropic Messages client --------------------------------------------------------------------


class AnthropicClient:
    stops: ClassVar[dict[str, str]] = {"text": "end_turn", "tool": "tool_use"}

    def __init__(self, proxy):
        self.client = anthropic.Anthropic(
            base_url=proxy.front_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0
        )
        self.messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]

    def ask(self, model: str, stream: bool, tools: bool) -> Turn:
        kwargs: dict[str, Any] = {"model": model, "max_tokens": 512, "messages": self.messages}
        if tools:
            kwargs["tools"] = [
                {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}
            ]
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
        calls = [
            {"id": b.id, "name": b.name, "args": b.input} for b in message.content if b.type == "tool_use"
        ]
        usage = (message.usage.input_tokens, message.usage.output_tokens)
        return Turn(
            text, calls, message.stop_reason, usage, {"role": "assistant", "content": message.content}
        )

    def answer_tool(self, turn: Turn, result: str) -> None:
        block = {"type": "tool_result", "tool_use_id": turn.calls[0]["id"], "content": result}
        self.messages += [turn.history, {"role": "user", "content": [block]}]


# -- Gemini client --------------------------------------------------------------------------------


class GeminiClient:
    stops: ClassVar[dict[str, str]] = {"text": "STOP", "tool": "STOP"}

    def __init__(self, proxy):
        options = types.HttpOptions(base_url=proxy.front_url)
        self.client = genai.Client(api_key=CLIENT_KEY, http_options=options)
        self.contents: list[Any] = [
            types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])
        ]

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
            chunks = list(
                self.client.models.generate_content_stream(model=model, contents=self.contents, config=config)
            )
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
                usage = (
                    meta.prompt_token_count,
                    meta.candidates_token_count + (meta.thoughts_token_count or 0),
                )
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


# -- through the HTTPS-proxy listener -----------------------------------------------------------


def trust(proxy) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(proxy.ca_cert))


def proxied_http(proxy) -> httpx.Client:
    """The openai SDK takes an httpx client."""
    return httpx.Client(proxy=proxy.proxy_url, verify=trust(proxy), trust_env=False, timeout=20)


def proxied_http2(proxy) -> httpx2.Client:
    """The anthropic SDK takes an httpx2 client."""
    return httpx2.Client(proxy=proxy.proxy_url, verify=trust(proxy), trust_env=False, timeout=20)


# -- Anthropic answers, as a provider sends them (in-process pipeline tests) -----------------------


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _block(index: int, delta: dict[str, Any]) -> bytes:
    return sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def anthropic_stream(
    command: str | None, text: str | None = "On it.", usage: tuple[int, int] = (12, 9)
) -> bytes:
    """An Anthropic Messages stream: ``text`` (if any), then (if ``command``) a Bash call of it,
    its arguments in two pieces."""
    start = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": 1},
    }
    events = [sse("message_start", {"type": "message_start", "message": start})]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if text is not None:
        blocks.append(({"type": "text", "text": ""}, [{"type": "text_delta", "text": text}]))
    if command is not None:
        arguments, half = json.dumps({"command": command}), len(json.dumps({"command": command})) // 2
        pieces = [
            {"type": "input_json_delta", "partial_json": p} for p in (arguments[:half], arguments[half:])
        ]
        blocks.append(({"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}, pieces))
    for index, (block, deltas) in enumerate(blocks):
        events.append(
            sse(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
            )
        )
        events += [_block(index, delta) for delta in deltas]
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    stop = {"stop_reason": "tool_use" if command is not None else "end_turn", "stop_sequence": None}
    end = {"type": "message_delta", "delta": stop, "usage": {"output_tokens": usage[1]}}
    events += [sse("message_delta", end), sse("message_stop", {"type": "message_stop"})]
    return b"".join(events)


def anthropic_message(
    command: str | None, text: str | None = "On it.", usage: tuple[int, int] = (12, 9)
) -> dict[str, Any]:
    """The same answer whole."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    if command is not None:
        content.append({"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": command}})
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": "tool_use" if command is not None else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


def streamed_calls(events: list[Any]) -> list[tuple[str, str]]:
    """(name, joined arguments) of each tool call in canonical ``events``, in index order."""
    names = {e.index: e.name for e in events if isinstance(e, ToolCallStart)}
    joined = {
        i: "".join(e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == i)
        for i in names
    }
    return [(names[i], joined[i]) for i in sorted(names)]
