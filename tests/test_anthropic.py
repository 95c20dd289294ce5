"""translators.anthropic against docs/wire.md §3 and the anthropic SDK's own types and stream code.

The promises every protocol shares are tests/test_contract.py's; here is what only Anthropic does.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message as SDKMessage
from anthropic.types import RawMessageStreamEvent
from anthropic.types.message_create_params import (
    MessageCreateParamsNonStreaming,
    MessageCreateParamsStreaming,
)
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter
from support.examples import (
    ANTHROPIC_ERROR_TYPES,
    anthropic_render_input,
    assistant,
    user,
    with_json_arguments,
)
from support.examples import ANTHROPIC_REQUEST_EXAMPLE as REQUEST_EXAMPLE
from support.examples import ANTHROPIC_STREAM_TEXT as STREAM_TEXT
from support.examples import ANTHROPIC_STREAM_THINKING as STREAM_THINKING
from support.examples import ANTHROPIC_STREAM_TOOL as STREAM_TOOL

from translators import anthropic as proto
from translators.assemble import response_from_events
from translators.canonical import (
    ChatRequest,
    ChatResponse,
    End,
    Event,
    Image,
    Message,
    MessageStart,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    ResponseFormat,
    Stop,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    Usage,
    UsageUpdate,
)
from translators.errors import ProxyError
from translators.mapping import ANTHROPIC_MIN_BUDGET, DEFAULT_MAX_TOKENS, EFFORT_BUDGET
from translators.sse import SSEParser
from translators.toolnames import MAPPED, WEB_SEARCH, web_search

# -- fixtures copied from docs/wire.md §3 ----------------------------------------------------


RESPONSE_EXAMPLE: dict[str, Any] = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [
        {"type": "thinking", "thinking": "The user wants the weather.", "signature": "EqQBCkYIBBgCGkDx"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 56,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1200,
        "output_tokens": 80,
        "output_tokens_details": {"thinking_tokens": 40},
        "service_tier": "standard",
    },
}


STREAM_ERROR = b"""event: error
data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}

"""

ERROR_EXAMPLE = (
    b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},'
    b' "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}'
)

ANTHROPIC = "anthropic"
# Module-level: pydantic's lazy Iterable validators need their adapter alive while iterated.
REQUEST_ADAPTERS = {
    False: TypeAdapter(MessageCreateParamsNonStreaming),
    True: TypeAdapter(MessageCreateParamsStreaming),
}
EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
VALID_ID = re.compile(r"^[a-zA-Z0-9_-]+$")

# -- helpers --------------------------------------------------------------------------------------


def request(**fields: Any) -> ChatRequest:
    return ChatRequest(model="claude-sonnet-4-6", **fields)


def parse_with(**changes: Any) -> ChatRequest:
    body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **changes}
    return proto.parse_request(body)


def invalid(body: Any) -> str:
    with pytest.raises(ProxyError) as caught:
        proto.parse_request(body)
    assert caught.value.code == "invalid_request"
    assert caught.value.status == 400
    return caught.value.message


def materialise(value: Any) -> Any:
    """Iterate the lazy validators pydantic puts on the SDK's Iterable[...] fields."""
    if isinstance(value, dict):
        return {key: materialise(item) for key, item in value.items()}
    if value is None or isinstance(value, (str, bytes, int, float, bool)):
        return value
    return [materialise(item) for item in value]


def sdk_valid_request(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a rendered body against the SDK's request types plus the rules they cannot express."""
    materialise(REQUEST_ADAPTERS[bool(body.get("stream"))].validate_python(body))
    for message in body["messages"]:
        assert message["content"], "empty message"
        for block in message["content"]:
            assert block["type"] != "text" or block["text"], "empty text block"
            for key in ("id", "tool_use_id"):
                if key in block:
                    assert VALID_ID.match(block[key])
    for tool in body.get("tools", []):
        assert tool["input_schema"]["type"] == "object"
    return body


def decode(data: bytes, *cuts: int) -> list[Event]:
    decoder = proto.StreamDecoder()
    events: list[Event] = []
    start = 0
    for cut in (*cuts, len(data)):
        events += decoder.feed(data[start:cut])
        start = cut
    return events + decoder.close()


def wire_events(data: bytes) -> list[dict[str, Any]]:
    """Parse encoder output, checking each event has an ``event:`` line equal to ``data.type``
    and validates as the SDK's stream event (or error envelope)."""
    parser = SSEParser()
    frames = parser.feed(data) + parser.close()
    events = []
    for frame in frames:
        payload = json.loads(frame.data)
        assert frame.event == payload["type"]
        if payload["type"] == "error":
            ErrorResponse.model_validate(payload)
        else:
            EVENT_ADAPTER.validate_python(payload)
        events.append(payload)
    return events


def sdk_client(status: int, body: bytes, content_type: str) -> anthropic.Anthropic:
    """An SDK client whose transport answers every request in-process with ``body``."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"content-type": content_type}, content=body)

    transport = httpx2.MockTransport(answer)
    return anthropic.Anthropic(
        api_key="k",
        base_url="http://127.0.0.1:9",
        max_retries=0,
        http_client=httpx2.Client(transport=transport),
    )


def sdk_stream_message(data: bytes) -> Any:
    """Run the SDK's own stream reader and accumulator (anthropic.lib.streaming) over ``data``."""
    client = sdk_client(200, data, "text/event-stream")
    with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        return stream.get_final_message()


def encode(events: list[Event], req: ChatRequest | None = None) -> bytes:
    encoder = proto.StreamEncoder(req or request())
    return encoder.encode(events) + encoder.close()


def sse_stream(*payloads: dict[str, Any]) -> bytes:
    return b"".join(f"event: {p['type']}\ndata: {json.dumps(p)}\n\n".encode() for p in payloads)


def message_start(**usage: int) -> dict[str, Any]:
    return {"type": "message_start", "message": {"id": "m", "model": "c", "usage": usage}}


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["type"] + (f":{e['content_block']['type']}" if e["type"] == "content_block_start" else "")
        for e in events
    ]


def assert_same_answer(got: ChatResponse, expected: ChatResponse) -> None:
    """Same content, stop and token counts; cache counts unknown on one side may be 0 on the other."""
    got, expected = with_json_arguments(got), with_json_arguments(expected)
    assert got.content == expected.content
    assert (got.stop_reason, got.stop_sequence) == (expected.stop_reason, expected.stop_sequence)
    counts = {"input_tokens", "output_tokens", "reasoning_tokens"}
    assert got.usage.model_dump(include=counts) == expected.usage.model_dump(include=counts)


# -- parse_request --------------------------------------------------------------------------------


def test_parse_request_reads_the_protocols_example_field_by_field():
    req = proto.parse_request(copy.deepcopy(REQUEST_EXAMPLE))

    assert req.model == "claude-sonnet-4-6"
    assert req.max_tokens == 4096
    assert req.system == [Text(text="You are terse.", cache_control={"type": "ephemeral"})]
    first, second, third = req.messages
    assert first == user(
        Text(text="Describe the images, then get the weather in Paris."),
        Image(media_type="image/png", data="iVBORw0KGgoAAAANSUhEUgAA"),
        Image(url="https://example.com/cat.jpg"),
    )
    assert second == assistant(
        Reasoning(text="Need the weather tool.", signature="EqQBCkYIBBgCGkDx", origin=ANTHROPIC),
        ToolCall(id="toolu_01", name="get_weather", arguments='{"city":"Paris"}'),
    )
    assert third == user(
        ToolResult(tool_call_id="toolu_01", content=[Text(text='{"temp_c":18}')]),
        Text(text="Answer in Celsius."),
    )
    assert req.tools == [
        Tool(
            name="get_weather",
            description="Current weather",
            parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        )
    ]
    assert req.tool_choice == ToolChoice(mode="auto")
    assert req.parallel_tool_calls is True
    assert req.reasoning == ReasoningConfig(budget_tokens=2048)
    assert req.stop == ["\n\nHuman:"]
    assert req.user == "u-123"
    assert req.stream is True


def test_parse_request_does_not_modify_the_body():
    body = copy.deepcopy(REQUEST_EXAMPLE)
    proto.parse_request(body)
    assert body == REQUEST_EXAMPLE


def test_missing_max_tokens_is_an_invalid_request():
    body = {k: v for k, v in REQUEST_EXAMPLE.items() if k != "max_tokens"}
    assert invalid(body) == "max_tokens: required"


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_a_body_that_is_not_an_object_is_an_invalid_request(body):
    assert invalid(body) == "body: expected an object"


def test_a_count_tokens_body_parses_once_the_caller_supplies_max_tokens():
    """count_tokens bodies have no max_tokens (docs/snags.md #21); the local estimator adds one to
    parse them."""
    body = {k: v for k, v in REQUEST_EXAMPLE.items() if k not in ("max_tokens", "stream", "metadata")}
    req = proto.parse_request({**body, "max_tokens": 1})
    assert len(req.messages) == 3 and req.tools[0].name == "get_weather"


def test_model_and_stream_arguments_override_the_body():
    req = proto.parse_request({**REQUEST_EXAMPLE, "stream": True}, model="claude-opus-4-6", stream=False)
    assert (req.model, req.stream) == ("claude-opus-4-6", False)


def test_string_content_and_string_system_become_text_parts():
    req = parse_with(system="Be brief.")
    assert req.system == [Text(text="Be brief.")]
    assert req.messages == [user(Text(text="hi"))]


def test_system_role_inside_messages_is_hoisted_after_the_top_level_system():
    req = parse_with(
        system="First.",
        messages=[
            {
                "role": "system",
                "content": [{"type": "text", "text": "Second.", "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Third."},
        ],
    )
    assert req.system == [
        Text(text="First."),
        Text(text="Second.", cache_control={"type": "ephemeral"}),
        Text(text="Third."),
    ]
    assert req.messages == [user(Text(text="hi"))]


def test_redacted_thinking_keeps_its_data_as_the_signature():
    req = parse_with(
        messages=[{"role": "assistant", "content": [{"type": "redacted_thinking", "data": "EmwKAhgBEgy"}]}]
    )
    assert req.messages[0].content == [Reasoning(redacted=True, signature="EmwKAhgBEgy", origin=ANTHROPIC)]


def test_tool_result_blocks_keep_text_images_and_the_error_flag():
    block = {
        "type": "tool_result",
        "tool_use_id": "toolu_9",
        "is_error": True,
        "content": [
            {"type": "text", "text": "failed"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}},
        ],
    }
    req = parse_with(messages=[{"role": "user", "content": [block]}])
    assert req.messages[0].content == [
        ToolResult(
            tool_call_id="toolu_9",
            is_error=True,
            content=[Text(text="failed"), Image(media_type="image/gif", data="R0lG")],
        )
    ]


def test_tool_use_input_becomes_compact_argument_text():
    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"q": "18 °C", "n": [1, 2]}}
    req = parse_with(messages=[{"role": "assistant", "content": [block]}])
    assert req.messages[0].content == [ToolCall(id="toolu_1", name="f", arguments='{"q":"18 °C","n":[1,2]}')]


@pytest.mark.parametrize(
    ("block", "path"),
    [
        (
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}},
            "[0].type",
        ),
        ({"type": "image", "source": {"type": "file", "file_id": "file_1"}}, "[0].source.type"),
        (
            {
                "type": "tool_result",
                "tool_use_id": "t",
                "content": [{"type": "search_result", "source": "s"}],
            },
            "[0].content[0].type",
        ),
    ],
)
def test_content_the_canonical_model_cannot_carry_is_refused_as_untranslatable(block, path):
    message = invalid({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [block]}]})
    assert message.startswith(f"messages[0].content{path}: ")
    assert "cannot be translated" in message


def test_a_server_tools_call_and_result_in_history_are_left_out_and_the_text_after_them_kept():
    searched = [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        {"type": "text", "text": "Python 3.14 is out."},
    ]
    req = parse_with(
        messages=[{"role": "user", "content": "news?"}, {"role": "assistant", "content": searched}]
    )

    assert req.messages[1].content == [Text(text="Python 3.14 is out.")]


def test_the_web_search_server_tool_becomes_the_canonical_web_search_with_its_options():
    search = {
        "type": "web_search_20250305",
        "name": "web_search",
        "max_uses": 3,
        "allowed_domains": ["docs.python.org"],
        "user_location": {"type": "approximate", "city": "Paris", "country": "FR"},
    }
    req = parse_with(tools=[{"name": "f", "input_schema": {"type": "object"}}, search])

    assert [t.name for t in req.tools] == ["f"]
    assert web_search(req.metadata) == {
        "max_uses": 3,
        "allowed_domains": ["docs.python.org"],
        "user_location": {"type": "approximate", "city": "Paris", "country": "FR"},
    }
    assert req.warnings == [MAPPED.format(where="tools[1]", kind="web_search_20250305")]


@pytest.mark.parametrize("kind", ["web_fetch_20250910", "code_execution_20250825", "bash_20250124"])
def test_other_anthropic_defined_tools_are_removed_with_a_warning_not_refused(kind):
    req = parse_with(tools=[{"type": kind, "name": "x"}, {"name": "f", "input_schema": {"type": "object"}}])

    assert [t.name for t in req.tools] == ["f"] and web_search(req.metadata) is None
    [warning] = req.warnings
    assert warning.startswith("tools[0]: removed the hosted tool") and kind in warning


def test_a_web_search_is_rendered_as_the_server_tool_beside_the_functions():
    search = {"allowed_domains": ["a.org"], "blocked_domains": ["b.org"], "max_uses": 2}
    request = ChatRequest(
        model="m", messages=[Message(role="user", content=[Text(text="hi")])],
        tools=[Tool(name="f")], metadata={WEB_SEARCH: search},
    )  # fmt: skip

    body = proto.render_request(request)

    assert body["tools"][-1] == {
        "type": "web_search_20250305", "name": "web_search", "allowed_domains": ["a.org"], "max_uses": 2,
    }, "allowed and blocked domains together are refused: allowed wins"  # fmt: skip
    assert [t["name"] for t in body["tools"]] == ["f", "web_search"]


def test_a_client_function_named_web_search_keeps_the_name_to_itself():
    request = ChatRequest(
        model="m", messages=[Message(role="user", content=[Text(text="hi")])],
        tools=[Tool(name="web_search")], metadata={WEB_SEARCH: {}},
    )  # fmt: skip

    assert [t.get("type") for t in proto.render_request(request)["tools"]] == [None]


def test_custom_typed_tools_are_ordinary_tools():
    req = parse_with(
        tools=[{"type": "custom", "name": "f", "input_schema": {"type": "object"}, "strict": True}]
    )
    assert req.tools == [Tool(name="f", parameters={"type": "object"}, strict=True)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "foo"}]}]},
            "messages[0].content[0].type: unknown part type 'foo'",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role: unknown role 'tool'"),
        (
            {"messages": [{"role": "user", "content": 5}]},
            "messages[0].content: expected a string or an array of blocks",
        ),
        ({"messages": {"role": "user"}}, "messages: expected an array"),
        ({"messages": [], "max_tokens": "100"}, "max_tokens: expected an integer"),
        ({"messages": [], "max_tokens": True}, "max_tokens: expected an integer"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text: required",
        ),
        ({"messages": [], "tool_choice": {"type": "tool"}}, "tool_choice.name: required"),
        ({"messages": [], "thinking": {"type": "enabled"}}, "thinking.budget_tokens: required"),
        (
            {"messages": [], "system": [{"type": "image", "source": {}}]},
            "system[0].type: 'image' blocks cannot be translated here",
        ),
    ],
)
def test_a_wrong_shape_is_reported_with_its_key_path(body, message):
    assert invalid({"model": "m", "max_tokens": 5, **body}) == message


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, ToolChoice(mode="auto"), None),
        ({"type": "any"}, ToolChoice(mode="required"), None),
        ({"type": "none"}, ToolChoice(mode="none"), None),
        ({"type": "tool", "name": "f"}, ToolChoice(mode="tool", name="f"), None),
        ({"type": "any", "disable_parallel_tool_use": True}, ToolChoice(mode="required"), False),
    ],
)
def test_tool_choice_maps_onto_canonical_modes(choice, expected, parallel):
    req = parse_with(tool_choice=choice)
    assert (req.tool_choice, req.parallel_tool_calls) == (expected, parallel)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 3000}}, ReasoningConfig(budget_tokens=3000)),
        ({"thinking": {"type": "adaptive"}}, ReasoningConfig(effort="medium")),
        (
            {"thinking": {"type": "adaptive", "display": "omitted"}, "output_config": {"effort": "high"}},
            ReasoningConfig(effort="high", include_thoughts=False),
        ),
        ({"thinking": {"type": "disabled"}}, ReasoningConfig(enabled=False)),
        ({"output_config": {"effort": "low"}}, ReasoningConfig(effort="low")),
        ({}, None),
    ],
)
def test_thinking_and_effort_become_a_reasoning_config(fields, expected):
    assert parse_with(**fields).reasoning == expected


def test_output_config_json_schema_becomes_a_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = parse_with(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert req.response_format == ResponseFormat(type="json_schema", json_schema=schema)


def test_sampling_parameters_are_kept():
    req = parse_with(temperature=0.5, top_p=1, top_k=40)
    assert (req.temperature, req.top_p, req.top_k) == (0.5, 1, 40)


# -- render_request -------------------------------------------------------------------------------


def test_rendering_the_parsed_example_gives_back_an_equivalent_body():
    body = sdk_valid_request(proto.render_request(proto.parse_request(copy.deepcopy(REQUEST_EXAMPLE))))

    expected = copy.deepcopy(REQUEST_EXAMPLE)
    expected["messages"][2]["content"][0]["content"] = [{"type": "text", "text": '{"temp_c":18}'}]
    expected["tool_choice"] = {"type": "auto"}
    assert body == expected


def test_the_rendered_body_shares_no_objects_with_the_request():
    """Cache markers and tool schemas are copied: changing the body leaves the request as it was."""
    req = anthropic_render_input()
    before = req.model_dump()
    body = proto.render_request(req)
    body["system"][0]["cache_control"]["ttl"] = "1h"
    body["tools"][0]["input_schema"]["extra"] = 1
    assert req.model_dump() == before


def test_max_tokens_defaults_when_the_client_gave_none():
    body = proto.render_request(request(messages=[user(Text(text="hi"))]))
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ([Text(text="Be brief.")], "Be brief."),
        ([Text(text="A"), Text(text="B")], [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]),
        (
            [Text(text="A", cache_control={"type": "ephemeral"})],
            [{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}}],
        ),
        ([Text(text=""), Text(text="Only")], "Only"),
    ],
)
def test_system_is_a_string_only_when_blocks_would_carry_nothing_more(system, expected):
    body = proto.render_request(request(system=system, messages=[user(Text(text="hi"))]))
    assert body["system"] == expected


def test_no_system_key_without_system_text():
    body = proto.render_request(request(system=[Text(text="")], messages=[user(Text(text="hi"))]))
    assert "system" not in body


def test_openai_style_tool_turns_become_one_user_message_with_tool_results_first():
    req = request(
        tools=[Tool(name="get_weather")],
        messages=[
            user(Text(text="Weather in Paris and Rome?")),
            assistant(
                Text(text=""),
                ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
                ToolCall(id="call_2", name="get_weather", arguments='{"city":"Rome"}'),
            ),
            user(Text(text="Use Celsius.")),
            user(ToolResult(tool_call_id="call_1", content=[Text(text="18")])),
            user(ToolResult(tool_call_id="call_2", content=[Text(text="24")])),
        ],
    )
    body = sdk_valid_request(proto.render_request(req))
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18"}]},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "24"}]},
                {"type": "text", "text": "Use Celsius."},
            ],
        },
    ]


def test_messages_left_empty_are_dropped_and_their_neighbours_merge():
    req = request(
        messages=[
            user(Text(text="one")),
            assistant(Text(text=""), Reasoning(text="foreign", signature="sig", origin="gemini")),
            user(Text(text="two")),
        ]
    )
    assert proto.render_request(req)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}
    ]


def test_tool_ids_are_sanitised_identically_in_tool_use_and_tool_result():
    req = request(
        tools=[Tool(name="Read")],
        messages=[
            assistant(ToolCall(id="functions.Read:0", name="Read", arguments="")),
            user(ToolResult(tool_call_id="functions.Read:0", content=[Text(text="ok")])),
        ],
    )
    body = sdk_valid_request(proto.render_request(req))
    tool_use = body["messages"][0]["content"][0]
    tool_result = body["messages"][1]["content"][0]
    assert tool_use["id"] == tool_result["tool_use_id"] == proto.tool_id("functions.Read:0")
    assert tool_use["input"] == {}


def test_tool_id_sanitising_keeps_valid_ids_and_never_returns_empty_or_colliding_ids():
    assert proto.tool_id("toolu_01AbC-9") == "toolu_01AbC-9"
    assert VALID_ID.match(proto.tool_id(""))
    assert proto.tool_id("functions.Read:0") != proto.tool_id("functions:Read.0")
    assert proto.tool_id("a.b") == proto.tool_id("a.b")
    assert all(VALID_ID.match(proto.tool_id(i)) for i in ("a b", "ü", "x/y=", "call:1"))


def test_only_anthropic_signed_reasoning_is_sent_back():
    req = request(
        messages=[
            user(Text(text="q")),
            assistant(
                Reasoning(text="mine", signature="sigA", origin=ANTHROPIC),
                Reasoning(redacted=True, signature="dataB", origin=ANTHROPIC),
                Reasoning(text="gemini thought", signature="gsig", origin="gemini"),
                Reasoning(text="echoed foreign text", signature="", origin=ANTHROPIC),
                Reasoning(text="unsigned", origin=ANTHROPIC),
                Reasoning(signature="enc", origin="openai-responses"),
                Text(text="answer"),
            ),
        ]
    )
    assert proto.render_request(req)["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "mine", "signature": "sigA"},
        {"type": "redacted_thinking", "data": "dataB"},
        {"type": "text", "text": "answer"},
    ]


@pytest.mark.parametrize(
    ("image", "source"),
    [
        (
            Image(media_type="image/png", data="iVBO"),
            {"type": "base64", "media_type": "image/png", "data": "iVBO"},
        ),
        (
            Image(url="data:image/webp;base64,UklG"),
            {"type": "base64", "media_type": "image/webp", "data": "UklG"},
        ),
        (
            Image(url="https://example.com/cat.jpg", detail="high"),
            {"type": "url", "url": "https://example.com/cat.jpg"},
        ),
    ],
)
def test_images_become_base64_or_url_sources(image, source):
    body = sdk_valid_request(proto.render_request(request(messages=[user(image)])))
    assert body["messages"][0]["content"] == [{"type": "image", "source": source}]


@pytest.mark.parametrize(
    "image", [Image(media_type="image/bmp", data="Qk0="), Image(url="data:image/tiff;base64,SUkq")]
)
def test_images_of_a_type_anthropic_rejects_are_refused(image):
    with pytest.raises(ProxyError) as caught:
        proto.render_request(request(messages=[user(Text(text="see"), image)]))
    assert caught.value.code == "invalid_request"
    assert caught.value.message.startswith("messages[0].content[1]: image type")


def test_images_inside_tool_results_survive():
    result = ToolResult(
        tool_call_id="t1", content=[Image(media_type="image/jpeg", data="/9j/")], is_error=True
    )
    req = request(
        tools=[Tool(name="shot")], messages=[assistant(ToolCall(id="t1", name="shot")), user(result)]
    )
    assert proto.render_request(req)["messages"][1]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "t1",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}}
            ],
            "is_error": True,
        }
    ]


@pytest.mark.parametrize(
    ("parameters", "schema"),
    [
        ({}, {"type": "object", "properties": {}}),
        (
            {"properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"a": {"type": "string"}}},
        ),
        (
            {"type": "object", "properties": {}, "required": []},
            {"type": "object", "properties": {}, "required": []},
        ),
    ],
)
def test_tool_schemas_get_an_object_root(parameters, schema):
    body = proto.render_request(request(tools=[Tool(name="f", description="does f", parameters=parameters)]))
    assert body["tools"] == [{"name": "f", "description": "does f", "input_schema": schema}]


def test_strict_is_not_forwarded_to_anthropic():
    body = proto.render_request(request(tools=[Tool(name="f", strict=True)]))
    assert "strict" not in body["tools"][0]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        (ToolChoice(mode="auto"), None, {"type": "auto"}),
        (ToolChoice(mode="required"), None, {"type": "any"}),
        (ToolChoice(mode="none"), None, {"type": "none"}),
        (ToolChoice(mode="tool", name="f"), None, {"type": "tool", "name": "f"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice(mode="required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (ToolChoice(mode="none"), False, {"type": "none"}),
        (ToolChoice(mode="auto"), True, {"type": "auto"}),
    ],
)
def test_tool_choice_table(choice, parallel, expected):
    body = proto.render_request(
        request(tools=[Tool(name="f")], tool_choice=choice, parallel_tool_calls=parallel)
    )
    assert body.get("tool_choice") == expected
    sdk_valid_request({**body, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]})


def test_no_tool_choice_without_tools():
    body = proto.render_request(request(tool_choice=ToolChoice(mode="required"), parallel_tool_calls=False))
    assert "tool_choice" not in body and "tools" not in body


def test_tool_history_without_tools_declares_the_called_tools_and_forbids_new_calls():
    req = request(
        messages=[
            user(Text(text="Weather?")),
            assistant(ToolCall(id="c1", name="get_weather", arguments='{"city":"Paris"}')),
            user(ToolResult(tool_call_id="c1", content=[Text(text="18")]), Text(text="Summarise.")),
        ]
    )
    body = sdk_valid_request(proto.render_request(req))
    assert body["tools"] == [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "none"}


def test_effort_becomes_a_thinking_budget_with_max_tokens_above_it():
    body = proto.render_request(request(max_tokens=1000, reasoning=ReasoningConfig(effort="high")))
    budget = EFFORT_BUDGET["high"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] > budget
    assert body["max_tokens"] - budget == 1000  # the client's visible output allowance is kept


def test_a_budget_below_max_tokens_leaves_max_tokens_alone():
    body = proto.render_request(request(max_tokens=4096, reasoning=ReasoningConfig(budget_tokens=2048)))
    assert (body["max_tokens"], body["thinking"]["budget_tokens"]) == (4096, 2048)


@pytest.mark.parametrize(
    "config",
    [
        ReasoningConfig(effort="none"),
        ReasoningConfig(enabled=False, budget_tokens=4096),
        ReasoningConfig(budget_tokens=ANTHROPIC_MIN_BUDGET - 1),
        ReasoningConfig(include_thoughts=True),
    ],
)
def test_no_thinking_when_reasoning_is_off_or_below_the_minimum(config):
    body = proto.render_request(request(temperature=0.2, reasoning=config))
    assert "thinking" not in body
    assert body["temperature"] == 0.2


def test_thinking_drops_sampling_parameters():
    req = request(temperature=0.2, top_p=0.9, top_k=5, reasoning=ReasoningConfig(effort="low"))
    body = proto.render_request(req)
    assert body["thinking"]["budget_tokens"] == EFFORT_BUDGET["low"]
    assert not {"temperature", "top_p", "top_k"} & body.keys()


def test_sampling_parameters_are_sent_when_thinking_is_off():
    body = proto.render_request(request(temperature=0.2, top_p=0.9, top_k=5, seed=7, frequency_penalty=1.0))
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 5)
    assert not {"seed", "frequency_penalty"} & body.keys()


@pytest.mark.parametrize("choice", [ToolChoice(mode="required"), ToolChoice(mode="tool", name="f")])
def test_forced_tool_use_drops_thinking(choice):
    req = request(tools=[Tool(name="f")], tool_choice=choice, reasoning=ReasoningConfig(budget_tokens=4096))
    assert "thinking" not in proto.render_request(req)


def test_thinking_is_dropped_mid_tool_loop_when_the_last_assistant_turn_has_no_thinking_block():
    """History from another provider cannot start the tool turn with a thinking block (docs/snags.md #13)."""
    req = request(
        tools=[Tool(name="f")],
        reasoning=ReasoningConfig(effort="medium"),
        messages=[
            user(Text(text="go")),
            assistant(Reasoning(text="t", signature="gsig", origin="gemini"), ToolCall(id="c1", name="f")),
            user(ToolResult(tool_call_id="c1", content=[Text(text="done")])),
        ],
    )
    assert "thinking" not in proto.render_request(req)


def test_thinking_stays_when_the_tool_turn_starts_with_anthropic_thinking():
    req = request(
        tools=[Tool(name="f")],
        reasoning=ReasoningConfig(effort="medium"),
        messages=[
            user(Text(text="go")),
            assistant(Reasoning(text="t", signature="sig", origin=ANTHROPIC), ToolCall(id="c1", name="f")),
            user(ToolResult(tool_call_id="c1", content=[Text(text="done")])),
        ],
    )
    assert proto.render_request(req)["thinking"] == {
        "type": "enabled",
        "budget_tokens": EFFORT_BUDGET["medium"],
    }


def test_json_schema_output_goes_to_output_config_and_json_object_has_no_equivalent():
    schema = {"type": "object", "properties": {}}
    body = proto.render_request(
        request(response_format=ResponseFormat(type="json_schema", name="x", json_schema=schema))
    )
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    body = proto.render_request(request(response_format=ResponseFormat(type="json_object")))
    assert "output_config" not in body


def test_stop_user_and_stream_fields():
    body = proto.render_request(request(stop=["END"], user="u-1", stream=True))
    assert (body["stop_sequences"], body["metadata"], body["stream"]) == (["END"], {"user_id": "u-1"}, True)
    assert not {"stop_sequences", "metadata", "stream"} & proto.render_request(request()).keys()


# -- parse_response / render_response -------------------------------------------------------------


def test_parse_response_reads_the_protocols_example_field_by_field():
    response = proto.parse_response(copy.deepcopy(RESPONSE_EXAMPLE))
    assert response.id == "msg_01"
    assert response.model == "claude-sonnet-4-6"
    assert response.content == [
        Reasoning(text="The user wants the weather.", signature="EqQBCkYIBBgCGkDx", origin=ANTHROPIC),
        Text(text="Checking."),
        ToolCall(id="toolu_01", name="get_weather", arguments='{"city":"Paris"}'),
    ]
    assert response.stop_reason == "tool_use"
    assert response.stop_sequence is None
    # canonical input includes the cache: 56 + 0 + 1200
    assert response.usage == Usage(
        input_tokens=1256, output_tokens=80, cache_read_tokens=1200, cache_write_tokens=0, reasoning_tokens=40
    )


@pytest.mark.parametrize(
    ("wire", "canonical"),
    [
        ("end_turn", "end_turn"),
        ("max_tokens", "max_tokens"),
        ("stop_sequence", "stop_sequence"),
        ("tool_use", "tool_use"),
        ("pause_turn", "pause_turn"),
        ("refusal", "refusal"),
        ("model_context_window_exceeded", "context_window"),
    ],
)
def test_stop_reasons_map_both_ways(wire, canonical):
    body = {**RESPONSE_EXAMPLE, "content": [{"type": "text", "text": "x"}], "stop_reason": wire}
    assert proto.parse_response(body).stop_reason == canonical
    response = ChatResponse(id="m", model="x", content=[Text(text="x")], stop_reason=canonical)
    assert proto.render_response(response, request())["stop_reason"] == wire


def test_the_matched_stop_sequence_is_kept():
    body = {**RESPONSE_EXAMPLE, "stop_reason": "stop_sequence", "stop_sequence": "\n\nHuman:"}
    response = proto.parse_response(body)
    assert (response.stop_reason, response.stop_sequence) == ("stop_sequence", "\n\nHuman:")
    assert proto.render_response(response, request())["stop_sequence"] == "\n\nHuman:"


def test_parse_response_skips_server_tool_blocks():
    body = {
        **RESPONSE_EXAMPLE,
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
            {"type": "text", "text": "Found it."},
        ],
    }
    assert proto.parse_response(body).content == [Text(text="Found it.")]


def test_parse_response_rejects_a_body_that_is_not_an_object():
    with pytest.raises(ProxyError) as caught:
        proto.parse_response(["nope"])
    assert caught.value.code == "upstream_error"


def test_render_response_round_trips_the_example_and_validates_with_the_sdk():
    response = proto.parse_response(copy.deepcopy(RESPONSE_EXAMPLE))
    body = proto.render_response(response, request())
    SDKMessage.model_validate(body)
    assert body["content"] == RESPONSE_EXAMPLE["content"]
    assert body["usage"] == {
        "input_tokens": 56,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1200,
        "output_tokens": 80,
        "output_tokens_details": {"thinking_tokens": 40},
    }
    assert proto.parse_response(body) == response


def test_render_response_fills_id_and_model_when_missing():
    body = proto.render_response(ChatResponse(id="", model="", content=[Text(text="hi")]), request())
    SDKMessage.model_validate(body)
    assert body["id"].startswith("msg_")
    assert body["model"] == "claude-sonnet-4-6"


def test_render_response_usage_excludes_cache_from_input_and_reports_unknown_as_zero():
    usage = Usage(input_tokens=100, cache_read_tokens=80, cache_write_tokens=30)
    body = proto.render_response(ChatResponse(id="m", model="x", usage=usage), request())
    assert body["usage"] == {
        "input_tokens": 0,  # never negative even when the counts disagree
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 80,
        "output_tokens": 0,
    }
    body = proto.render_response(ChatResponse(id="m", model="x"), request())
    assert body["usage"]["input_tokens"] == 0 and body["usage"]["output_tokens"] == 0


def test_openai_usage_with_cached_tokens_becomes_anthropic_usage():
    usage = Usage(input_tokens=120, output_tokens=40, cache_read_tokens=64, reasoning_tokens=22)
    body = proto.render_response(ChatResponse(id="m", model="x", usage=usage), request())
    assert body["usage"] == {
        "input_tokens": 56,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 64,
        "output_tokens": 40,
        "output_tokens_details": {"thinking_tokens": 22},
    }


@pytest.mark.parametrize(
    ("reason", "content", "wire"),
    [
        (None, [Text(text="x")], "end_turn"),
        (None, [ToolCall(id="c", name="f")], "tool_use"),
        ("end_turn", [ToolCall(id="c", name="f")], "tool_use"),  # docs/snags.md #17: Gemini says STOP
        ("error", [Text(text="x")], "end_turn"),
        ("max_tokens", [ToolCall(id="c", name="f")], "max_tokens"),
    ],
)
def test_render_response_infers_tool_use_and_maps_error(reason, content, wire):
    body = proto.render_response(
        ChatResponse(id="m", model="x", content=content, stop_reason=reason), request()
    )
    assert body["stop_reason"] == wire


def test_foreign_reasoning_is_shown_unsigned_and_dropped_when_the_client_echoes_it():
    response = ChatResponse(
        id="m",
        model="gemini-3-pro",
        content=[
            Reasoning(text="Thinking about Paris.", signature="gemini-sig", origin="gemini"),
            Reasoning(signature="encrypted", origin="openai-responses"),
            Reasoning(redacted=True, signature="x", origin="gemini"),
            ToolCall(id="functions.get_weather:0", name="get_weather", arguments='{"city":"Paris"}'),
        ],
    )
    body = proto.render_response(response, request())
    SDKMessage.model_validate(body)
    assert body["content"] == [
        {"type": "thinking", "thinking": "Thinking about Paris.", "signature": ""},
        {
            "type": "tool_use",
            "id": proto.tool_id("functions.get_weather:0"),
            "name": "get_weather",
            "input": {"city": "Paris"},
        },
    ]
    # Claude Code sends the turn back; the foreign thinking must not reach Anthropic.
    echoed = proto.parse_request(
        {
            "model": "m",
            "max_tokens": 100,
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": body["content"]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": body["content"][1]["id"]}],
                },
            ],
        }
    )
    rendered = sdk_valid_request(proto.render_request(echoed))
    assert [b["type"] for b in rendered["messages"][1]["content"]] == ["tool_use"]


def test_render_response_drops_content_anthropic_cannot_show():
    response = ChatResponse(
        id="m", model="x", content=[Text(text=""), Image(url="https://x/y.png"), Text(text="ok")]
    )
    assert proto.render_response(response, request())["content"] == [{"type": "text", "text": "ok"}]


# -- StreamDecoder --------------------------------------------------------------------------------

TEXT_EVENTS: list[Event] = [
    MessageStart(
        id="msg_01",
        model="claude-sonnet-4-6",
        usage=Usage(input_tokens=12, output_tokens=1, cache_read_tokens=0, cache_write_tokens=0),
    ),
    TextDelta(text="Hello"),
    TextDelta(text="!"),
    Stop(reason="end_turn"),
    UsageUpdate(usage=Usage(input_tokens=12, output_tokens=5, cache_read_tokens=0, cache_write_tokens=0)),
    End(),
]
TOOL_EVENTS: list[Event] = [
    MessageStart(id="msg_02", model="claude-sonnet-4-6", usage=Usage(input_tokens=50, output_tokens=1)),
    ToolCallStart(index=0, id="toolu_01", name="get_weather"),
    ToolCallDelta(index=0, arguments='{"city": "Par'),
    ToolCallDelta(index=0, arguments='is"}'),
    ToolCallEnd(index=0),
    Stop(reason="tool_use"),
    UsageUpdate(usage=Usage(input_tokens=50, output_tokens=40)),
    End(),
]
THINKING_EVENTS: list[Event] = [
    MessageStart(id="msg_03", model="claude-sonnet-4-6", usage=Usage(input_tokens=30, output_tokens=1)),
    ReasoningDelta(text="18 C is mild.", origin=ANTHROPIC),
    ReasoningDelta(signature="EqQBCkYIBBgCGkDx", origin=ANTHROPIC),
    TextDelta(text="It is 18 °C."),
    Stop(reason="end_turn"),
    UsageUpdate(usage=Usage(input_tokens=30, output_tokens=61, reasoning_tokens=44)),
    End(),
]
EXAMPLE_STREAMS = [
    pytest.param(STREAM_TEXT, TEXT_EVENTS, id="text"),
    pytest.param(STREAM_TOOL, TOOL_EVENTS, id="tool"),
    pytest.param(STREAM_THINKING, THINKING_EVENTS, id="thinking"),
]


@pytest.mark.parametrize(("data", "expected"), EXAMPLE_STREAMS)
def test_decoder_reads_the_protocols_example_streams(data, expected):
    assert decode(data) == expected


def test_decoder_accepts_crlf_framing():
    assert decode(STREAM_THINKING.replace(b"\n", b"\r\n")) == THINKING_EVENTS


def test_decoder_numbers_tool_calls_apart_from_other_blocks_and_skips_empty_fragments():
    data = sse_stream(
        message_start(input_tokens=1, output_tokens=1),
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Two calls."},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "a", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "b", "name": "g", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    )
    events = decode(data)
    assert [e for e in events if isinstance(e, (ToolCallStart, ToolCallDelta, ToolCallEnd))] == [
        ToolCallStart(index=0, id="a", name="f"),
        ToolCallEnd(index=0),
        ToolCallStart(index=1, id="b", name="g"),
        ToolCallDelta(index=1, arguments="{}"),
        ToolCallEnd(index=1),
    ]


def test_decoder_turns_redacted_thinking_into_a_redacted_reasoning_delta():
    data = sse_stream(
        message_start(input_tokens=1, output_tokens=1),
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "redacted_thinking", "data": "EmwKAhgB"},
        },
        {"type": "content_block_stop", "index": 0},
    )
    assert decode(data)[1] == ReasoningDelta(redacted=True, signature="EmwKAhgB", origin=ANTHROPIC)


def test_decoder_merges_message_delta_usage_with_the_cache_counts_of_message_start():
    data = sse_stream(
        message_start(
            input_tokens=10, cache_creation_input_tokens=5, cache_read_input_tokens=1000, output_tokens=1
        ),
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": None},
        },
        {"type": "message_stop"},
    )
    events = decode(data)
    assert events[0].usage == Usage(
        input_tokens=1015, output_tokens=1, cache_read_tokens=1000, cache_write_tokens=5
    )
    assert events[2] == UsageUpdate(
        usage=Usage(input_tokens=1015, output_tokens=7, cache_read_tokens=1000, cache_write_tokens=5)
    )


@pytest.mark.parametrize(
    ("error_type", "code", "status"),
    [
        ("overloaded_error", "overloaded", 529),
        ("rate_limit_error", "rate_limited", 429),
        ("api_error", "internal", 500),
        ("invalid_request_error", "invalid_request", 400),
        ("something_new", "upstream_error", 502),
    ],
)
def test_an_error_event_becomes_a_final_stream_error(error_type, code, status):
    data = (
        STREAM_TEXT.split(b"event: content_block_delta")[0]
        + STREAM_ERROR.replace(b"overloaded_error", error_type.encode())
        + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    events = decode(data)
    assert events[-1] == StreamError(
        error=ProxyError(code, "Overloaded", status=status, provider_type=error_type).to_dict()
    )
    assert not any(isinstance(e, End) for e in events)


def test_the_protocols_error_stream_decodes_to_overloaded():
    (event,) = decode(STREAM_ERROR)
    assert isinstance(event, StreamError)
    assert (event.error["code"], event.error["status"], event.error["provider_type"]) == (
        "overloaded",
        529,
        "overloaded_error",
    )
    assert event.error["retryable"] is True


def test_close_after_a_stop_reason_ends_the_stream():
    data = STREAM_TEXT.split(b"event: message_stop")[0]
    assert decode(data) == TEXT_EVENTS


def test_close_before_a_stop_reason_reports_a_broken_stream():
    data = STREAM_TEXT.split(b"event: content_block_stop")[0]
    events = decode(data)
    assert events[:-1] == TEXT_EVENTS[:3]
    assert isinstance(events[-1], StreamError)
    assert events[-1].error["code"] == "upstream_error"
    assert events[-1].error["message"] == "upstream stream ended before it finished"


def test_decoder_emits_nothing_after_the_end():
    decoder = proto.StreamDecoder()
    decoder.feed(STREAM_TEXT)
    assert decoder.feed(STREAM_TEXT) == []
    assert decoder.close() == []


def test_malformed_stream_data_is_an_upstream_error():
    events = decode(b"event: message_start\ndata: {not json\n\n")
    assert len(events) == 1 and events[0].error["code"] == "upstream_error"


def test_the_sdk_reads_the_example_streams_like_the_decoder():
    message = sdk_stream_message(STREAM_THINKING)
    response = response_from_events(decode(STREAM_THINKING))
    assert proto.parse_response(message.model_dump()) == response


# -- StreamEncoder --------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), EXAMPLE_STREAMS)
def test_encoder_output_decodes_to_the_same_answer(data, expected):
    encoded = encode(decode(data))
    wire_events(encoded)
    assert_same_answer(response_from_events(decode(encoded)), response_from_events(expected))


@pytest.mark.parametrize(("data", "expected"), EXAMPLE_STREAMS)
def test_the_sdk_accumulates_encoder_output_into_the_same_message(data, expected):
    message = sdk_stream_message(encode(expected))
    assert_same_answer(proto.parse_response(message.model_dump()), response_from_events(expected))


def test_every_event_has_an_event_line_equal_to_its_type():
    encoded = encode(THINKING_EVENTS)
    frames = SSEParser().feed(encoded)
    assert frames and all(frame.event == json.loads(frame.data)["type"] for frame in frames)
    assert kinds(wire_events(encoded)) == [
        "message_start",
        "content_block_start:thinking",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start:text",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_message_start_reports_real_input_excluding_cache():
    usage = Usage(input_tokens=1256, cache_read_tokens=1200, cache_write_tokens=0)
    events = wire_events(encode([MessageStart(id="msg_x", model="claude-x", usage=usage), End()]))
    assert events[0]["message"]["usage"] == {
        "input_tokens": 56,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1200,
        "output_tokens": 0,
    }
    assert (events[0]["message"]["id"], events[0]["message"]["model"]) == ("msg_x", "claude-x")


def test_message_start_without_usage_reports_zeros_and_fills_id_and_model():
    (start, *_rest) = wire_events(encode([MessageStart(id="", model=""), End()]))
    assert start["message"]["id"].startswith("msg_")
    assert start["message"]["model"] == "claude-sonnet-4-6"
    assert start["message"]["usage"]["input_tokens"] == 0


def test_no_block_is_opened_for_empty_content():
    events = [
        MessageStart(id="m", model="x"),
        TextDelta(text=""),
        ReasoningDelta(text="", signature=None),
        ReasoningDelta(signature="gemini-thought-signature", origin="gemini"),
        ToolCallDelta(index=3, arguments='{"orphan":1}'),
        ToolCallEnd(index=3),
        Stop(reason="end_turn"),
        End(),
    ]
    assert kinds(wire_events(encode(events))) == ["message_start", "message_delta", "message_stop"]


def test_message_delta_waits_for_late_usage_until_the_end():
    encoder = proto.StreamEncoder(request())
    head = encoder.encode([MessageStart(id="m", model="x"), TextDelta(text="Hi"), Stop(reason="end_turn")])
    assert b"message_delta" not in head
    assert (
        encoder.encode([UsageUpdate(usage=Usage(input_tokens=9, output_tokens=1, cache_read_tokens=0))])
        == b""
    )
    tail = wire_events(encoder.encode([End()]))
    assert kinds(tail) == ["content_block_stop", "message_delta", "message_stop"]
    assert tail[1]["usage"] == {"input_tokens": 9, "cache_read_input_tokens": 0, "output_tokens": 1}
    assert tail[1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


def test_message_delta_does_not_overwrite_unknown_input_counts():
    encoded = encode(
        [
            MessageStart(id="m", model="x", usage=Usage(input_tokens=40)),
            UsageUpdate(usage=Usage(output_tokens=3)),
            End(),
        ]
    )
    message = sdk_stream_message(encoded)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (40, 3)


def test_nothing_is_emitted_after_the_end():
    encoder = proto.StreamEncoder(request())
    encoder.encode([MessageStart(id="m", model="x"), End()])
    assert encoder.encode([TextDelta(text="late"), End()]) == b""
    assert encoder.close() == b""


def test_close_finishes_a_stream_that_got_no_end():
    encoder = proto.StreamEncoder(request())
    data = encoder.encode([MessageStart(id="m", model="x"), TextDelta(text="partial")]) + encoder.close()
    assert kinds(wire_events(data))[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert sdk_stream_message(data).content[0].text == "partial"


def test_content_before_message_start_still_gets_a_message_start_first():
    data = encode([TextDelta(text="hi"), End()])
    assert kinds(wire_events(data))[0] == "message_start"
    assert sdk_stream_message(data).model == "claude-sonnet-4-6"


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([TextDelta(text="x")], "end_turn"),
        ([ToolCallStart(index=0, id="c", name="f"), ToolCallEnd(index=0)], "tool_use"),
        (
            [ToolCallStart(index=0, id="c", name="f"), ToolCallEnd(index=0), Stop(reason="end_turn")],
            "tool_use",
        ),
        ([TextDelta(text="x"), Stop(reason="context_window")], "model_context_window_exceeded"),
        ([TextDelta(text="x"), Stop(reason="error")], "end_turn"),
    ],
)
def test_stop_reason_is_inferred_and_mapped(events, reason):
    encoded = encode([MessageStart(id="m", model="x"), *events, End()])
    assert wire_events(encoded)[-2]["delta"]["stop_reason"] == reason


def test_stop_sequence_is_reported_with_its_value():
    events = [
        MessageStart(id="m", model="x"),
        TextDelta(text="x"),
        Stop(reason="stop_sequence", stop_sequence="END"),
        End(),
    ]
    assert wire_events(encode(events))[-2]["delta"] == {
        "stop_reason": "stop_sequence",
        "stop_sequence": "END",
    }


def test_an_openai_style_tool_call_streams_as_a_tool_use_block():
    events = [
        MessageStart(id="chatcmpl-2", model="gpt-5.5"),
        ToolCallStart(index=0, id="call:1", name="get_weather"),
        ToolCallDelta(index=0, arguments='{"ci'),
        ToolCallDelta(index=0, arguments=""),
        ToolCallDelta(index=0, arguments='ty":"Paris"}'),
        ToolCallEnd(index=0),
        Stop(reason="tool_use"),
        End(),
    ]
    encoded = encode(events)
    wire = wire_events(encoded)
    assert wire[1]["content_block"] == {
        "type": "tool_use",
        "id": proto.tool_id("call:1"),
        "name": "get_weather",
        "input": {},
    }
    assert [e["delta"]["partial_json"] for e in wire if e["type"] == "content_block_delta"] == [
        '{"ci',
        'ty":"Paris"}',
    ]
    message = sdk_stream_message(encoded)
    assert message.content[0].input == {"city": "Paris"}
    assert message.stop_reason == "tool_use"


def test_a_tool_call_without_argument_fragments_keeps_its_empty_input():
    encoded = encode([ToolCallStart(index=0, id="c1", name="now"), ToolCallEnd(index=0), End()])
    assert kinds(wire_events(encoded))[1:3] == ["content_block_start:tool_use", "content_block_stop"]
    assert sdk_stream_message(encoded).content[0].input == {}


def test_a_gemini_style_whole_call_is_one_fragment():
    events = [
        ToolCallStart(index=0, id="", name="f"),
        ToolCallDelta(index=0, arguments='{"a":1}'),
        ToolCallEnd(index=0),
        ToolCallStart(index=1, id="", name="g"),
        ToolCallDelta(index=1, arguments='{"b":2}'),
        ToolCallEnd(index=1),
        End(),
    ]
    message = sdk_stream_message(encode(events))
    assert [(b.name, b.input) for b in message.content] == [("f", {"a": 1}), ("g", {"b": 2})]
    assert all(VALID_ID.match(b.id) for b in message.content)


def test_interleaved_parallel_calls_are_serialised_without_orphan_deltas():
    events = [
        MessageStart(id="m", model="x"),
        ToolCallStart(index=0, id="call_a", name="f"),
        ToolCallStart(index=1, id="call_b", name="g"),
        ToolCallDelta(index=1, arguments='{"y":'),
        ToolCallDelta(index=0, arguments='{"x":1}'),
        ToolCallDelta(index=1, arguments="2}"),
        ToolCallEnd(index=1),
        ToolCallEnd(index=0),
        Stop(reason="tool_use"),
        End(),
    ]
    encoded = encode(events)
    wire = wire_events(encoded)
    started: set[int] = set()
    for event in wire:
        if event["type"] == "content_block_start":
            started.add(event["index"])
        elif event["type"] in ("content_block_delta", "content_block_stop"):
            assert event["index"] in started
    message = sdk_stream_message(encoded)
    assert [(b.id, b.input) for b in message.content] == [("call_a", {"x": 1}), ("call_b", {"y": 2})]


def test_a_queued_call_still_open_when_the_first_ends_stays_open_for_its_fragments():
    events = [
        ToolCallStart(index=0, id="a", name="f"),
        ToolCallStart(index=1, id="b", name="g"),
        ToolCallDelta(index=1, arguments='{"y"'),
        ToolCallEnd(index=0),
        ToolCallDelta(index=1, arguments=":2}"),
        ToolCallEnd(index=1),
        End(),
    ]
    message = sdk_stream_message(encode(events))
    assert [(b.id, b.input) for b in message.content] == [("a", {}), ("b", {"y": 2})]


def test_text_after_a_tool_call_closes_its_block_first():
    events = [
        ToolCallStart(index=0, id="a", name="f"),
        ToolCallDelta(index=0, arguments="{}"),
        TextDelta(text="Done."),
        End(),
    ]
    encoded = encode(events)
    assert kinds(wire_events(encoded))[1:6] == [
        "content_block_start:tool_use",
        "content_block_delta",
        "content_block_stop",
        "content_block_start:text",
        "content_block_delta",
    ]
    assert [b.type for b in sdk_stream_message(encoded).content] == ["tool_use", "text"]


def test_anthropic_reasoning_streams_with_its_signature():
    encoded = encode(THINKING_EVENTS)
    deltas = [e["delta"] for e in wire_events(encoded) if e["type"] == "content_block_delta"]
    assert {"type": "signature_delta", "signature": "EqQBCkYIBBgCGkDx"} in deltas
    assert sdk_stream_message(encoded).content[0].signature == "EqQBCkYIBBgCGkDx"


def test_foreign_reasoning_streams_as_an_unsigned_thinking_block():
    events = [
        MessageStart(id="m", model="x"),
        ReasoningDelta(text="Let me think", origin="gemini"),
        ReasoningDelta(text=" more.", origin="gemini"),
        ReasoningDelta(signature="gemini-signature", origin="gemini"),
        TextDelta(text="Answer."),
        End(),
    ]
    encoded = encode(events)
    wire = wire_events(encoded)
    assert wire[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert not any(e.get("delta", {}).get("type") == "signature_delta" for e in wire)
    thinking, text = sdk_stream_message(encoded).content
    assert (thinking.thinking, thinking.signature, text.text) == ("Let me think more.", "", "Answer.")


def test_a_signed_thinking_block_closes_so_the_next_reasoning_opens_a_new_one():
    events = [
        ReasoningDelta(text="first", origin=ANTHROPIC),
        ReasoningDelta(signature="s1", origin=ANTHROPIC),
        ReasoningDelta(text="second", origin=ANTHROPIC),
        ReasoningDelta(signature="s2", origin=ANTHROPIC),
        End(),
    ]
    content = sdk_stream_message(encode(events)).content
    assert [(b.thinking, b.signature) for b in content] == [("first", "s1"), ("second", "s2")]


def test_redacted_thinking_is_streamed_only_when_anthropic_made_it():
    events = [
        ReasoningDelta(redacted=True, signature="EmwKAhgB", origin=ANTHROPIC),
        ReasoningDelta(redacted=True, signature="foreign", origin="openai-responses"),
        TextDelta(text="ok"),
        End(),
    ]
    encoded = encode(events)
    assert kinds(wire_events(encoded))[1:3] == ["content_block_start:redacted_thinking", "content_block_stop"]
    redacted, text = sdk_stream_message(encoded).content
    assert (redacted.type, redacted.data, text.text) == ("redacted_thinking", "EmwKAhgB", "ok")


def test_a_stream_error_closes_the_open_block_and_ends_with_an_error_event():
    error = ProxyError("overloaded", "Overloaded", status=529, provider_type="overloaded_error")
    encoder = proto.StreamEncoder(request())
    data = encoder.encode(
        [MessageStart(id="m", model="x"), TextDelta(text="Hel"), StreamError(error=error.to_dict())]
    )
    wire = wire_events(data)
    assert kinds(wire)[-2:] == ["content_block_stop", "error"]
    assert wire[-1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert encoder.encode([TextDelta(text="more"), End()]) + encoder.close() == b""
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk_stream_message(data)
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_an_error_from_another_protocol_gets_an_anthropic_error_type():
    error = ProxyError("rate_limited", "Slow down", provider_type="requests")
    wire = wire_events(encode([StreamError(error=error.to_dict())]))
    assert wire == [{"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}]


def test_encoder_state_is_per_instance():
    first = proto.StreamEncoder(request())
    second = proto.StreamEncoder(request())
    first.encode([MessageStart(id="m1", model="x"), ToolCallStart(index=0, id="a", name="f")])
    data = second.encode([MessageStart(id="m2", model="x"), TextDelta(text="hi"), End()])
    assert kinds(wire_events(data)) == [
        "message_start",
        "content_block_start:text",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


# -- errors ---------------------------------------------------------------------------------------

SDK_EXCEPTIONS: dict[int, type[anthropic.APIStatusError]] = {
    400: anthropic.BadRequestError,
    401: anthropic.AuthenticationError,
    402: anthropic.PaymentRequiredError,
    403: anthropic.PermissionDeniedError,
    404: anthropic.NotFoundError,
    413: anthropic.ContentTooLargeError,
    429: anthropic.RateLimitError,
    500: anthropic.InternalServerError,
    504: anthropic.GatewayTimeoutError,
    529: anthropic.OverloadedError,
}
ERROR_TABLE = [(status, code, type_, SDK_EXCEPTIONS[status]) for status, code, type_ in ANTHROPIC_ERROR_TYPES]


@pytest.mark.parametrize(("status", "code", "error_type", "exception"), ERROR_TABLE)
def test_rendered_errors_are_anthropic_envelopes_that_keep_the_error_type(
    status, code, error_type, exception
):
    """The round trip of code, status and message is tests/test_contract.py's."""
    _, body = proto.render_error(ProxyError(code, "went wrong: 18 °C", status=status))
    envelope = json.loads(body)
    assert envelope == {"type": "error", "error": {"type": error_type, "message": "went wrong: 18 °C"}}
    if error_type != "request_too_large":  # sent by Anthropic's edge, absent from the SDK's types
        ErrorResponse.model_validate(envelope)
    assert proto.parse_error(status, body).provider_type == error_type


@pytest.mark.parametrize(("status", "code", "error_type", "exception"), ERROR_TABLE)
def test_the_sdk_raises_the_matching_exception_for_rendered_errors(status, code, error_type, exception):
    status, body = proto.render_error(ProxyError(code, "nope", status=status))
    client = sdk_client(status, body, "application/json")
    with pytest.raises(exception):
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])


def test_parse_error_reads_the_protocols_example():
    error = proto.parse_error(529, ERROR_EXAMPLE)
    assert (error.code, error.status, error.message, error.provider_type) == (
        "overloaded",
        529,
        "Overloaded",
        "overloaded_error",
    )
    assert error.retryable is True


def test_an_openai_side_503_overloaded_stays_503():
    status, body = proto.render_error(ProxyError("overloaded", "busy", status=503))
    assert status == 503
    assert json.loads(body)["error"]["type"] == "overloaded_error"


def test_render_error_keeps_an_anthropic_provider_type_that_agrees_with_the_code():
    status, body = proto.render_error(
        ProxyError("invalid_request", "dup", status=409, provider_type="conflict_error")
    )
    assert (status, json.loads(body)["error"]["type"]) == (409, "conflict_error")
    # An OpenAI 401 says invalid_request_error too; the canonical code decides.
    _, body = proto.render_error(
        ProxyError("authentication", "bad key", status=401, provider_type="invalid_request_error")
    )
    assert json.loads(body)["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("code", "error_type"),
    [("upstream_error", "api_error"), ("upstream_unreachable", "api_error"), ("something_else", "api_error")],
)
def test_codes_without_an_anthropic_twin_render_as_api_error(code, error_type):
    _, body = proto.render_error(ProxyError(code, "x"))
    assert json.loads(body)["error"]["type"] == error_type


def test_render_error_leaves_details_out():
    _, body = proto.render_error(ProxyError("rate_limited", "slow", retry_after=3))
    assert "details" not in json.loads(body)["error"]


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (
            502,
            b"<html><body>502 Bad Gateway</body></html>",
            "upstream_error",
            "<html><body>502 Bad Gateway</body></html>",
        ),
        (503, b"", "overloaded", "upstream returned HTTP 503"),
        (500, b"\xff\xfe not utf-8", "internal", "\ufffd\ufffd not utf-8"),
        (429, b'"just a string"', "rate_limited", '"just a string"'),
    ],
)
def test_parse_error_handles_bodies_that_are_not_an_envelope(status, body, code, message):
    error = proto.parse_error(status, body)
    assert (error.code, error.status, error.message, error.provider_type) == (code, status, message, None)


def test_parse_error_reads_other_error_shapes():
    openai_body = json.dumps(
        {
            "error": {
                "message": "Incorrect API key",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        }
    ).encode()
    error = proto.parse_error(401, openai_body)
    assert (error.code, error.message, error.provider_type) == (
        "authentication",
        "Incorrect API key",
        "invalid_request_error",
    )
    error = proto.parse_error(429, b'{"error": "quota exceeded"}')
    assert (error.code, error.message) == ("rate_limited", "quota exceeded")
    gemini_body = b'{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}'
    error = proto.parse_error(503, gemini_body)
    assert (error.code, error.message) == ("overloaded", "The model is overloaded.")


def test_parse_error_takes_the_precise_type_over_the_status():
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert proto.parse_error(500, body).code == "overloaded"
