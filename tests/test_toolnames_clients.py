"""Provider-safe tool names for Chat, Anthropic and Gemini clients (translators/toolnames.py).

Each client's parser gives every declared tool a name all providers accept and keeps the client's
on ``Tool.origin``; calls and results in history and a named tool choice get the same name; the
client's answer (whole, and streamed however the provider's bytes are cut) carries the name the
client declared. Names that are already safe stay exactly as they are.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest
from support.builders import streamed_calls
from support.fakes.anthropic import ANTHROPIC_TOOL_NAME
from support.fakes.common import awkward_pieces
from support.fakes.gemini import GEMINI_FUNCTION_NAME
from support.fakes.openai import OPENAI_TOOL_NAME

from translators import anthropic, gemini, openai_chat, openai_responses
from translators.canonical import (
    ChatResponse,
    End,
    MessageStart,
    Stop,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolOrigin,
    ToolResult,
)
from translators.toolnames import SAFE, flat

SAFE_NAME = "get_weather"
DOTTED = "mcp.files:read"  # Gemini accepts it; OpenAI and Anthropic refuse the '.' and ':'
DIGIT_FIRST = "3d-render"  # Gemini wants a letter or '_' first
DASH_FIRST = "-render"
LONG = "mcp__" + "a_very_long_server_name_" * 2 + "lookup_all_files"  # 70 characters, over 64
UNSAFE = [DOTTED, DIGIT_FIRST, DASH_FIRST, LONG]
ARGUMENTS = '{"path": "é/ü.txt"}'
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}}


def chat_body(name: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": ARGUMENTS}}
    return {
        "model": "m",
        "messages": [
            {"role": "user", "content": "read it"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "text"},
        ],
        "tools": [{"type": "function", "function": {"name": name, "parameters": SCHEMA}}],
        "tool_choice": {"type": "function", "function": {"name": name}},
    }


def anthropic_body(name: str) -> dict[str, Any]:
    use = {"type": "tool_use", "id": "toolu_1", "name": name, "input": json.loads(ARGUMENTS)}
    return {
        "model": "m",
        "max_tokens": 64,
        "messages": [
            {"role": "user", "content": "read it"},
            {"role": "assistant", "content": [use]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "text"}],
            },
        ],
        "tools": [{"name": name, "input_schema": SCHEMA}],
        "tool_choice": {"type": "tool", "name": name},
    }


def gemini_body(name: str) -> dict[str, Any]:
    """Id-less call and response, as Gemini clients send them: matched by name."""
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "read it"}]},
            {"role": "model", "parts": [{"functionCall": {"name": name, "args": json.loads(ARGUMENTS)}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": name, "response": {"output": "text"}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": name, "parametersJsonSchema": SCHEMA}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}},
    }


BODIES = {openai_chat: chat_body, anthropic: anthropic_body, gemini: gemini_body}
CLIENTS = list(BODIES)
PROVIDERS = [openai_chat, openai_responses, anthropic, gemini]
# provider -> the pattern its fake (tests/support/fakes/) checks declared names against
PATTERNS = {
    openai_chat: OPENAI_TOOL_NAME,
    openai_responses: OPENAI_TOOL_NAME,
    anthropic: ANTHROPIC_TOOL_NAME,
    gemini: GEMINI_FUNCTION_NAME,
}


def module_id(module: ModuleType) -> str:
    return module.NAME


def parse(client: ModuleType, name: str) -> Any:
    return client.parse_request(BODIES[client](name), model="m")


def declared_names(provider: ModuleType, rendered: dict[str, Any]) -> list[str]:
    tools = rendered.get("tools", [])
    if provider is gemini:
        return [d["name"] for tool in tools for d in tool.get("functionDeclarations", [])]
    if provider is openai_chat:
        return [tool["function"]["name"] for tool in tools]
    return [tool["name"] for tool in tools]


# -- requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", UNSAFE)
@pytest.mark.parametrize("client", CLIENTS, ids=module_id)
def test_an_unsafe_declared_name_becomes_provider_safe_with_the_clients_name_on_origin(client, name):
    [tool] = parse(client, name).tools
    assert SAFE.fullmatch(tool.name) and tool.name == flat(name)
    assert tool.origin == ToolOrigin(name=name)
    assert tool.parameters == SCHEMA


@pytest.mark.parametrize("name", UNSAFE)
@pytest.mark.parametrize("client", CLIENTS, ids=module_id)
def test_history_calls_results_and_a_named_choice_use_the_same_safe_name(client, name):
    request = parse(client, name)
    [tool] = request.tools
    [call] = [p for m in request.messages for p in m.content if isinstance(p, ToolCall)]
    [result] = [p for m in request.messages for p in m.content if isinstance(p, ToolResult)]
    assert call.name == tool.name and json.loads(call.arguments) == json.loads(ARGUMENTS)
    assert result.tool_call_id == call.id and result.name in (None, tool.name)
    assert (request.tool_choice.mode, request.tool_choice.name) == ("tool", tool.name)


def test_a_gemini_function_response_is_named_like_its_call():
    request = parse(gemini, DOTTED)
    result = request.messages[2].content[0]
    assert isinstance(result, ToolResult) and result.name == flat(DOTTED)


@pytest.mark.parametrize("client", CLIENTS, ids=module_id)
def test_a_call_in_history_to_a_tool_no_longer_declared_still_gets_the_same_safe_name(client):
    body = BODIES[client](DOTTED)
    for key in ("tool_choice", "toolConfig"):
        body.pop(key, None)
    body["tools"] = BODIES[client](SAFE_NAME)["tools"]
    request = client.parse_request(body, model="m")
    [call] = [p for m in request.messages for p in m.content if isinstance(p, ToolCall)]
    assert call.name == flat(DOTTED)


@pytest.mark.parametrize("client", CLIENTS, ids=module_id)
def test_safe_names_are_left_exactly_as_they_are(client):
    request = parse(client, SAFE_NAME)
    [tool] = request.tools
    assert (tool.name, tool.origin) == (SAFE_NAME, None)
    names = [p.name for m in request.messages for p in m.content if isinstance(p, ToolCall | ToolResult)]
    assert set(names) - {None} == {SAFE_NAME} and request.tool_choice.name == SAFE_NAME
    assert declared_names(client, client.render_request(request)) == [SAFE_NAME]


@pytest.mark.parametrize("provider", PROVIDERS, ids=module_id)
@pytest.mark.parametrize("name", UNSAFE)
@pytest.mark.parametrize("client", CLIENTS, ids=module_id)
def test_every_provider_gets_names_its_fake_accepts_and_never_the_unsafe_one(client, name, provider):
    rendered = provider.render_request(parse(client, name))
    assert declared_names(provider, rendered) == [flat(name)]
    assert all(PATTERNS[provider].match(n) for n in declared_names(provider, rendered))
    assert json.dumps(name) not in json.dumps(rendered), "the client's name is nowhere upstream"


# -- answers: whole -------------------------------------------------------------------------------


def answered_names(client: ModuleType, body: dict[str, Any]) -> list[str]:
    """The calls' names in the client's answer, read back with the client's own parser."""
    return [p.name for p in client.parse_response(body).content if isinstance(p, ToolCall)]


@pytest.mark.parametrize("name", [*UNSAFE, SAFE_NAME])
@pytest.mark.parametrize("client", CLIENTS, ids=module_id)
def test_the_whole_answer_calls_the_tool_by_the_name_the_client_declared(client, name):
    request = parse(client, name)
    call = ToolCall(id="call_9", name=flat(name), arguments=ARGUMENTS)
    answer = ChatResponse(id="r1", model="m", content=[call], stop_reason="tool_use")
    body = client.render_response(answer, request)
    assert answered_names(client, body) == [name]
    assert flat(name) not in json.dumps(body) or name == flat(name)


@pytest.mark.parametrize("client", CLIENTS, ids=module_id)
def test_a_call_of_a_name_nobody_reshaped_is_answered_as_it_came(client):
    request = parse(client, DOTTED)
    call = ToolCall(id="call_9", name="invented_tool", arguments="{}")
    answer = ChatResponse(id="r1", model="m", content=[call], stop_reason="tool_use")
    assert answered_names(client, client.render_response(answer, request)) == ["invented_tool"]


# -- answers: streamed ----------------------------------------------------------------------------


def canonical_events(name: str) -> list[Any]:
    return [
        MessageStart(id="r1", model="m"),
        TextDelta(text="Reading…"),
        ToolCallStart(index=0, id="call_9", name=name),
        *[ToolCallDelta(index=0, arguments=ARGUMENTS[i : i + 5]) for i in range(0, len(ARGUMENTS), 5)],
        ToolCallEnd(index=0),
        Stop(reason="tool_use"),
        End(),
    ]


def encoded(module: ModuleType, request: Any, events: list[Any]) -> bytes:
    encoder = module.StreamEncoder(request)
    return b"".join(encoder.encode([event]) for event in events) + encoder.close()


def decoded(module: ModuleType, *pieces: bytes) -> list[Any]:
    decoder = module.StreamDecoder()
    return [event for piece in pieces for event in decoder.feed(piece)] + decoder.close()


@pytest.mark.parametrize("name", [*UNSAFE, SAFE_NAME])
@pytest.mark.parametrize("client", CLIENTS, ids=module_id)
def test_the_streamed_call_starts_under_the_name_the_client_declared(client, name):
    request = parse(client, name)
    raw = encoded(client, request, canonical_events(flat(name)))
    [(called, arguments)] = streamed_calls(decoded(client, raw))
    assert called == name and json.loads(arguments) == json.loads(ARGUMENTS)
    assert name == flat(name) or flat(name).encode() not in raw


PIECE = 7


def shifted_pieces(raw: bytes, offset: int) -> list[bytes]:
    """``raw`` cut every PIECE bytes from ``offset``: over the offsets, every byte starts a piece."""
    cuts = [0, *range(offset or PIECE, len(raw), PIECE), len(raw)]
    return [raw[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


@pytest.mark.parametrize("provider", PROVIDERS, ids=module_id)
@pytest.mark.parametrize("client", CLIENTS, ids=module_id)
def test_a_provider_stream_cut_anywhere_reaches_the_client_under_its_own_name(client, provider):
    """The provider's stream (the call under the safe name) cut into pieces whose boundaries fall,
    over the offsets, at every byte (and inside every multi-byte character), decoded and encoded
    for the client: the client always reads the name it declared."""
    request = parse(client, DOTTED)
    upstream = provider.parse_request(provider.render_request(request), model="m")
    raw = encoded(provider, upstream, canonical_events(flat(DOTTED)))
    cuttings = [shifted_pieces(raw, offset) for offset in range(PIECE)] + [awkward_pieces(raw)]
    for pieces in cuttings:
        events = decoded(provider, *pieces)
        [(called, arguments)] = streamed_calls(decoded(client, encoded(client, request, events)))
        assert (called, json.loads(arguments)) == (DOTTED, json.loads(ARGUMENTS)), pieces
