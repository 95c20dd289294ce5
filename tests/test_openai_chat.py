"""OpenAI Chat Completions translator: parse and render requests, responses, streams and errors.

Fixtures are the examples of docs/wire.md §1, copied literally; rendered bodies are checked key
by key against the official ``openai`` SDK types, and streams are replayed through the SDK's own
stream parser.

The promises every protocol shares are tests/test_contract.py's; here is what only Chat does.
"""

from __future__ import annotations

import collections.abc
import json
import types
from typing import Annotated, Any, Literal, NotRequired, Required, Union, get_args, get_origin

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from openai.types.shared import ErrorObject
from pydantic import BaseModel
from support.examples import CHAT, assistant, user
from support.examples import CHAT_EXAMPLE_RESPONSE as EXAMPLE_RESPONSE
from support.examples import CHAT_MIXED_RESPONSE as MIXED_RESPONSE
from support.examples import CHAT_STREAM_MIXED as STREAM_MIXED
from support.examples import CHAT_STREAM_TEXT as STREAM_TEXT
from support.examples import CHAT_STREAM_TOOL as STREAM_TOOL
from support.examples import CHAT_TEXT_RESPONSE as TEXT_RESPONSE

# The SDK declares its TypedDicts with typing_extensions, which typing.is_typeddict does not see.
from typing_extensions import get_type_hints, is_typeddict

from translators import openai_chat as chat
from translators.assemble import response_from_events
from translators.canonical import (
    ChatRequest,
    ChatResponse,
    End,
    Event,
    Image,
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
from translators.errors import CODES, ProxyError

# -- fixtures: docs/wire.md §1 ---------------------------------------------------------------

EXAMPLE_REQUEST: dict[str, Any] = {
    "model": "gpt-5.5",
    "messages": [
        {"role": "developer", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe the image, then get the weather in Paris."},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA", "detail": "auto"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c":18}'},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        }
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "max_completion_tokens": 1024,
    "reasoning_effort": "low",
    "stop": ["\n\nUser:"],
    "response_format": {"type": "text"},
    "stream": True,
    "stream_options": {"include_usage": True},
    "safety_identifier": "u-123",
}


STREAMS = CHAT.streams


# -- helpers --------------------------------------------------------------------------------------


def sdk_problems(value: Any, tp: Any, path: str = "body") -> list[str]:
    """Key-by-key conformity of a JSON value to an SDK TypedDict (pydantic validates the SDK's
    lazy ``Iterable`` fields only when iterated and ignores unknown keys, so it cannot check this)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp in (Any, object):
        return []
    if origin in (Required, NotRequired, Annotated):
        return sdk_problems(value, args[0], path)
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        hints = get_type_hints(tp, include_extras=True)
        found = [f"{path}.{key}: unknown key" for key in value if key not in hints]
        found += [
            f"{path}.{key}: missing"
            for key, hint in hints.items()
            if _required(tp, key, hint) and key not in value
        ]
        for key, item in value.items():
            if key in hints:
                found += sdk_problems(item, hints[key], f"{path}.{key}")
        return found
    if origin in (Union, types.UnionType):
        options = [sdk_problems(value, option, path) for option in args]
        return [] if any(not problems for problems in options) else min(options, key=len)
    if origin is Literal:
        return [] if value in args else [f"{path}: {value!r} not one of {args}"]
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence) or (
        getattr(origin, "__name__", "") == "SequenceNotStr"
    ):
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        return [p for i, item in enumerate(value) for p in sdk_problems(item, args[0], f"{path}[{i}]")]
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        return [p for key, item in value.items() for p in sdk_problems(item, args[1], f"{path}.{key}")]
    kinds = {str: (str,), int: (int,), float: (int, float), bool: (bool,), type(None): (type(None),)}[tp]
    if isinstance(value, kinds) and not (isinstance(value, bool) and tp is not bool):
        return []
    return [f"{path}: expected {tp.__name__}, got {value!r}"]


def _required(tp: Any, key: str, hint: Any) -> bool:
    # The SDK uses string annotations, so __required_keys__ misses Required[] inside total=False.
    origin = get_origin(hint)
    if origin is Required:
        return True
    return key in tp.__required_keys__ and origin is not NotRequired


def assert_sdk_request(body: dict[str, Any]) -> None:
    params = CompletionCreateParamsStreaming if body.get("stream") else CompletionCreateParamsNonStreaming
    assert sdk_problems(body, params) == []


def extra_keys(model: Any, path: str = "") -> list[str]:
    """Keys an SDK model accepted only as extras (its models allow unknown keys)."""
    if isinstance(model, list):
        return [k for i, item in enumerate(model) for k in extra_keys(item, f"{path}[{i}]")]
    if not isinstance(model, BaseModel):
        return []
    found = [f"{path}.{key}" for key in (model.model_extra or {})]
    for name in type(model).model_fields:
        found += extra_keys(getattr(model, name), f"{path}.{name}")
    return found


def decode(data: bytes) -> list[Event]:
    decoder = chat.StreamDecoder()
    return decoder.feed(data) + decoder.close()


def chunks_of(stream: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of an encoded stream (``[DONE]`` excluded), asserting the framing."""
    assert stream.endswith(b"data: [DONE]\n\n")
    frames = stream.decode().split("\n\n")
    assert frames[-1] == "" and frames[-2] == "data: [DONE]"
    assert all(frame.startswith("data: ") and "\n" not in frame for frame in frames[:-1])
    return [json.loads(frame[6:]) for frame in frames[:-2]]


def sdk_client(status: int, body: bytes, content_type: str = "text/event-stream") -> openai.OpenAI:
    """An SDK client whose transport answers every request with ``body`` (no network)."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"content-type": content_type}, content=body)

    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
        max_retries=0,
    )


def request(**fields: Any) -> ChatRequest:
    return ChatRequest(model="client-model", **fields)


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], **fields}


def rejection(value: Any, **kwargs: Any) -> str:
    with pytest.raises(ProxyError) as caught:
        chat.parse_request(value, **kwargs)
    assert caught.value.code == "invalid_request" and caught.value.status == 400
    return caught.value.message


# -- parse_request --------------------------------------------------------------------------------


def test_example_request_parses_field_by_field() -> None:
    parsed = chat.parse_request(EXAMPLE_REQUEST)

    assert parsed.model == "gpt-5.5"
    assert parsed.system == [Text(text="You are terse.")]
    assert parsed.messages == [
        user(
            Text(text="Describe the image, then get the weather in Paris."),
            Image(media_type="image/png", data="iVBORw0KGgoAAAANSUhEUgAA", detail="auto"),
        ),
        assistant(ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}')),
        user(ToolResult(tool_call_id="call_1", content=[Text(text='{"temp_c":18}')])),
    ]
    assert parsed.tools == [
        Tool(
            name="get_weather",
            description="Current weather",
            parameters={
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            strict=True,
        )
    ]
    assert parsed.tool_choice == ToolChoice(mode="auto")
    assert parsed.parallel_tool_calls is True
    assert parsed.max_tokens == 1024
    assert parsed.reasoning == ReasoningConfig(effort="low")
    assert parsed.stop == ["\n\nUser:"]
    assert parsed.response_format == ResponseFormat(type="text")
    assert parsed.stream is True and parsed.stream_usage is True
    assert parsed.user == "u-123"
    assert (parsed.temperature, parsed.top_p, parsed.top_k, parsed.seed) == (None, None, None, None)


def test_system_and_developer_messages_anywhere_are_hoisted_in_order() -> None:
    parsed = chat.parse_request(
        body(
            messages=[
                {"role": "system", "content": "one"},
                {"role": "user", "content": "hi"},
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "three"}],
                },
                {"role": "assistant", "content": "hello"},
            ]
        )
    )

    assert parsed.system == [Text(text="one"), Text(text="two"), Text(text="three")]
    assert parsed.messages == [user(Text(text="hi")), assistant(Text(text="hello"))]


def test_image_urls_keep_url_and_detail_while_data_urls_are_split() -> None:
    parsed = chat.parse_request(
        body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"},
                        },
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                    ],
                }
            ]
        )
    )

    assert parsed.messages[0].content == [
        Image(url="https://example.com/cat.jpg", detail="low"),
        Image(media_type="image/jpeg", data="/9j/4AAQ"),
    ]


def test_empty_text_is_dropped_but_cache_markers_are_kept() -> None:
    parsed = chat.parse_request(
        body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": ""},
                        {"type": "text", "text": "big prefix", "cache_control": {"type": "ephemeral"}},
                    ],
                }
            ]
        )
    )

    assert parsed.messages[0].content == [Text(text="big prefix", cache_control={"type": "ephemeral"})]


def test_assistant_reasoning_comes_before_text_and_refusal_is_text() -> None:
    parsed = chat.parse_request(
        body(
            messages=[
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "reasoning_content": "think",
                    "content": [
                        {"type": "text", "text": "Sure."},
                        {"type": "refusal", "refusal": "Not that."},
                    ],
                    "refusal": "Also not.",
                },
                {"role": "assistant", "reasoning": "ponder", "content": "ok"},
            ]
        )
    )

    assert parsed.messages[1] == assistant(
        Reasoning(text="think", origin="openai-chat"),
        Text(text="Sure."),
        Text(text="Not that."),
        Text(text="Also not."),
    )
    assert parsed.messages[2] == assistant(Reasoning(text="ponder", origin="openai-chat"), Text(text="ok"))


def test_tool_call_arguments_are_json_text_and_empty_means_empty_object() -> None:
    parsed = chat.parse_request(
        body(
            messages=[
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "a", "type": "function", "function": {"name": "f", "arguments": ""}},
                        {"id": "b", "type": "function", "function": {"name": "g", "arguments": '{"x": 1}'}},
                    ],
                }
            ]
        )
    )

    assert parsed.messages[0].content == [
        ToolCall(id="a", name="f", arguments="{}"),
        ToolCall(id="b", name="g", arguments='{"x": 1}'),
    ]


def test_consecutive_tool_messages_collect_into_one_user_message() -> None:
    parsed = chat.parse_request(
        body(
            messages=[
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                        {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    ],
                },
                {"role": "tool", "tool_call_id": "a", "content": "one"},
                {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "two"}]},
                {"role": "user", "content": "thanks"},
            ]
        )
    )

    assert parsed.messages[1:] == [
        user(
            ToolResult(tool_call_id="a", content=[Text(text="one")]),
            ToolResult(tool_call_id="b", content=[Text(text="two")]),
        ),
        user(Text(text="thanks")),
    ]


def test_tools_without_parameters_get_an_empty_object_schema() -> None:
    parsed = chat.parse_request(body(tools=[{"type": "function", "function": {"name": "now"}}]))

    assert parsed.tools == [Tool(name="now", parameters={"type": "object", "properties": {}})]


@pytest.mark.parametrize(
    ("wire", "canonical"),
    [
        ("none", ToolChoice(mode="none")),
        ("auto", ToolChoice(mode="auto")),
        ("required", ToolChoice(mode="required")),
        ({"type": "function", "function": {"name": "f"}}, ToolChoice(mode="tool", name="f")),
        (
            {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": []}},
            ToolChoice(mode="required"),
        ),
        ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}, ToolChoice(mode="auto")),
    ],
)
def test_tool_choice_maps_to_a_mode(wire: Any, canonical: ToolChoice) -> None:
    assert chat.parse_request(body(tool_choice=wire)).tool_choice == canonical


def test_options_are_read_with_their_fallbacks() -> None:
    parsed = chat.parse_request(
        body(
            max_tokens=50,
            stop="END",
            seed=7,
            temperature=0.5,
            top_p=0.9,
            frequency_penalty=0.1,
            presence_penalty=-0.2,
            user="legacy-user",
            metadata={"k": "v"},
            n=1,
            logprobs=True,
            store=False,
            verbosity="low",
        )
    )

    assert parsed.max_tokens == 50
    assert parsed.stop == ["END"]
    assert (parsed.seed, parsed.temperature, parsed.top_p) == (7, 0.5, 0.9)
    assert (parsed.frequency_penalty, parsed.presence_penalty) == (0.1, -0.2)
    assert parsed.user == "legacy-user"
    assert parsed.metadata == {"k": "v"}
    assert parsed.stream is False and parsed.stream_usage is False


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert chat.parse_request(body(max_tokens=50, max_completion_tokens=70)).max_tokens == 70


def test_reasoning_effort_none_disables_reasoning() -> None:
    assert chat.parse_request(body(reasoning_effort="none")).reasoning == ReasoningConfig(
        effort="none", enabled=False
    )


def test_json_schema_response_format_keeps_name_schema_and_strict() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    parsed = chat.parse_request(
        body(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            }
        )
    )

    assert parsed.response_format == ResponseFormat(
        type="json_schema", name="answer", json_schema=schema, strict=True
    )


def test_model_and_stream_arguments_override_the_body() -> None:
    parsed = chat.parse_request(body(stream=False), model="routed", stream=True)

    assert (parsed.model, parsed.stream) == ("routed", True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["not", "an", "object"], "body: expected a JSON object, got array"),
        ({"messages": []}, "model: required, expected a string"),
        ({"model": "m"}, "messages: required, expected an array"),
        (
            body(messages=[{"role": "user", "content": [{"type": "foo"}]}]),
            "messages[0].content[0].type: unknown part type 'foo'",
        ),
        (body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role: unknown role 'robot'"),
        (body(messages=["hi"]), "messages[0]: expected an object, got string"),
        (
            body(messages=[{"role": "user", "content": 5}]),
            "messages[0].content: expected an array, got number",
        ),
        (
            body(messages=[{"role": "tool", "content": "x"}]),
            "messages[0].tool_call_id: required, expected a string",
        ),
        (
            body(
                messages=[
                    {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}
                ]
            ),
            "messages[0].tool_calls[0].id: required, expected a string",
        ),
        (body(temperature="hot"), "temperature: expected a number, got string"),
        (body(max_tokens=True), "max_tokens: expected an integer, got boolean"),
        (body(stop=["a", 1]), "stop[1]: expected a string, got number"),
        (
            body(tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
            "tools[0].function.parameters: expected an object, got string",
        ),
        (body(tool_choice="always"), "tool_choice: unknown value 'always'"),
        (body(tool_choice=5), "tool_choice: expected an object, got number"),
        (
            body(response_format={"type": "json_schema"}),
            "response_format.json_schema: required, expected an object",
        ),
        (body(response_format={"type": "yaml"}), "response_format.type: unknown value 'yaml'"),
        (
            body(stream_options={"include_usage": "yes"}),
            "stream_options.include_usage: expected a boolean, got string",
        ),
    ],
)
def test_malformed_requests_are_rejected_with_their_key_path(value: Any, expected: str) -> None:
    assert rejection(value) == expected


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}],
                    }
                ]
            ),
            "messages[0].content[0].type",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]),
            "messages[0].content[0].type",
        ),
        (
            body(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "x", "input": "y"}}],
                    }
                ]
            ),
            "messages[0].tool_calls[0].type",
        ),
        (
            body(messages=[{"role": "assistant", "content": None, "audio": {"id": "audio_1"}}]),
            "messages[0].audio",
        ),
        (body(messages=[{"role": "function", "name": "f", "content": "x"}]), "messages[0].role"),
        (body(tools=[{"type": "custom", "custom": {"name": "grammar"}}]), "tools[0].type"),
        (body(tool_choice={"type": "custom", "custom": {"name": "grammar"}}), "tool_choice"),
        (body(n=2), "n"),
    ],
)
def test_untranslatable_content_is_refused_naming_where(value: Any, path: str) -> None:
    message = rejection(value)

    assert message.startswith(f"{path}: ") and "cannot be translated" in message


# -- render_request -------------------------------------------------------------------------------


def test_example_request_survives_parse_render_parse() -> None:
    parsed = chat.parse_request(EXAMPLE_REQUEST)
    rendered = chat.render_request(parsed)

    assert_sdk_request(rendered)
    assert chat.parse_request(rendered) == parsed
    assert rendered["messages"] == [
        {"role": "system", "content": "You are terse."},
        *EXAMPLE_REQUEST["messages"][1:],
    ]
    assert rendered["max_completion_tokens"] == 1024 and "max_tokens" not in rendered
    assert rendered["user"] == "u-123"


def test_system_parts_become_one_leading_system_message() -> None:
    rendered = chat.render_request(
        request(
            system=[Text(text="a"), Text(text=""), Text(text="b", cache_control={"type": "ephemeral"})],
            messages=[user(Text(text="hi"))],
        )
    )

    assert rendered["messages"] == [
        {"role": "system", "content": "a\n\nb"},
        {"role": "user", "content": "hi"},
    ]
    assert_sdk_request(rendered)


def test_tool_results_become_tool_messages_before_the_rest_of_the_user_turn() -> None:
    rendered = chat.render_request(
        request(
            messages=[
                assistant(ToolCall(id="a", name="f"), ToolCall(id="b", name="g", arguments='{"x":1}')),
                user(
                    Text(text="Here you go"),
                    ToolResult(tool_call_id="a", content=[Text(text="one"), Text(text="more")]),
                    ToolResult(tool_call_id="b", content=[Text(text="boom")], is_error=True),
                ),
            ]
        )
    )

    assert rendered["messages"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": '{"x":1}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "one\n\nmore"},
        {"role": "tool", "tool_call_id": "b", "content": "boom"},
        {"role": "user", "content": "Here you go"},
    ]
    assert_sdk_request(rendered)


def test_images_in_tool_results_move_to_a_following_user_message() -> None:
    screenshot = Image(media_type="image/png", data="iVBOR")
    rendered = chat.render_request(
        request(
            messages=[
                assistant(ToolCall(id="a", name="screenshot")),
                user(ToolResult(tool_call_id="a", content=[Text(text="captured"), screenshot])),
            ]
        )
    )

    assert rendered["messages"][1:] == [
        {"role": "tool", "tool_call_id": "a", "content": "captured"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}],
        },
    ]
    assert_sdk_request(rendered)


def test_long_tool_call_ids_are_shortened_identically_in_calls_and_results() -> None:
    long_id = "gemini_" + "A" * 120  # e.g. a thought signature carried in the id (docs/snags.md #9)
    conversation = [
        assistant(ToolCall(id=long_id, name="f"), ToolCall(id="call_short", name="f")),
        user(
            ToolResult(tool_call_id=long_id, content=[Text(text="1")]),
            ToolResult(tool_call_id="call_short", content=[Text(text="2")]),
        ),
    ]
    first = chat.render_request(request(messages=conversation))
    again = chat.render_request(request(messages=conversation))

    call_ids = [call["id"] for call in first["messages"][0]["tool_calls"]]
    result_ids = [message["tool_call_id"] for message in first["messages"][1:]]
    assert call_ids == result_ids
    assert len(call_ids[0]) <= 40 and call_ids[0] != long_id and call_ids[0].startswith("call_")
    assert call_ids[1] == "call_short"
    assert again == first


def test_reasoning_is_dropped_and_text_only_assistant_content_is_a_string() -> None:
    rendered = chat.render_request(
        request(
            messages=[
                user(Text(text="hi")),
                assistant(
                    Reasoning(text="thinking", signature="sig", origin="anthropic"),
                    Text(text="Hel"),
                    Text(text="lo"),
                ),
                assistant(Reasoning(text="only thoughts")),
                user(Text(text="next")),
            ]
        )
    )

    assert rendered["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "next"},
    ]


def test_mixed_user_content_is_a_part_list_and_empty_text_is_dropped() -> None:
    rendered = chat.render_request(
        request(
            messages=[
                user(
                    Text(text=""),
                    Text(text="look"),
                    Image(url="https://example.com/a.png", detail="high"),
                )
            ]
        )
    )

    assert rendered["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
            ],
        }
    ]


def test_streaming_requests_always_ask_for_usage() -> None:
    rendered = chat.render_request(request(messages=[user(Text(text="hi"))], stream=True, stream_usage=False))

    assert rendered["stream"] is True
    assert rendered["stream_options"] == {"include_usage": True}


def test_unset_options_are_left_out_and_top_k_is_dropped() -> None:
    rendered = chat.render_request(request(messages=[user(Text(text="hi"))], top_k=40))

    assert rendered == {"model": "client-model", "messages": [{"role": "user", "content": "hi"}]}


def test_set_options_are_rendered_and_validate_against_the_sdk() -> None:
    rendered = chat.render_request(
        request(
            messages=[user(Text(text="hi"))],
            tools=[Tool(name="f", description="does f", strict=False)],
            tool_choice=ToolChoice(mode="tool", name="f"),
            parallel_tool_calls=False,
            max_tokens=100,
            temperature=0.2,
            top_p=0.8,
            seed=3,
            frequency_penalty=0.5,
            presence_penalty=0.1,
            stop=["a", "b", "c", "d", "e"],
            response_format=ResponseFormat(type="json_schema", json_schema={"type": "object"}, strict=True),
            user="u-1",
        )
    )

    assert rendered["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert rendered["parallel_tool_calls"] is False
    assert rendered["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "does f",
                "parameters": {"type": "object", "properties": {}},
                "strict": False,
            },
        }
    ]
    assert rendered["stop"] == ["a", "b", "c", "d"]
    assert rendered["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": {"type": "object"}, "strict": True},
    }
    assert (rendered["temperature"], rendered["top_p"], rendered["seed"]) == (0.2, 0.8, 3)
    assert (rendered["frequency_penalty"], rendered["presence_penalty"], rendered["user"]) == (
        0.5,
        0.1,
        "u-1",
    )
    assert_sdk_request(rendered)


def test_tool_choice_and_parallel_flag_need_tools() -> None:
    rendered = chat.render_request(
        request(
            messages=[user(Text(text="hi"))],
            tool_choice=ToolChoice(mode="none"),
            parallel_tool_calls=False,
        )
    )

    assert "tool_choice" not in rendered and "parallel_tool_calls" not in rendered


@pytest.mark.parametrize(
    ("config", "effort"),
    [
        (ReasoningConfig(effort="high"), "high"),
        (ReasoningConfig(budget_tokens=8000), "medium"),
        (ReasoningConfig(budget_tokens=30000), "xhigh"),
        (ReasoningConfig(enabled=False, budget_tokens=4096), "none"),
        (ReasoningConfig(), None),
    ],
)
def test_reasoning_config_becomes_reasoning_effort(config: ReasoningConfig, effort: str | None) -> None:
    rendered = chat.render_request(request(messages=[user(Text(text="hi"))], reasoning=config))

    assert rendered.get("reasoning_effort") == effort


# -- parse_response -------------------------------------------------------------------------------


def test_example_response_parses_field_by_field() -> None:
    parsed = chat.parse_response(EXAMPLE_RESPONSE)

    assert parsed == ChatResponse(
        id="chatcmpl-abc",
        model="gpt-5.5-2026-01-01",
        content=[ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}')],
        stop_reason="tool_use",
        usage=Usage(input_tokens=120, output_tokens=40, cache_read_tokens=64, reasoning_tokens=22),
    )


def test_refusal_is_text_with_stop_reason_refusal() -> None:
    parsed = chat.parse_response(
        {
            **TEXT_RESPONSE,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
                }
            ],
        }
    )

    assert parsed.content == [Text(text="I can't help with that.")]
    assert parsed.stop_reason == "refusal"


def test_nonstandard_reasoning_text_comes_first_with_its_origin() -> None:
    parsed = chat.parse_response(
        {
            **TEXT_RESPONSE,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "42", "reasoning_content": "6 times 7"},
                }
            ],
        }
    )

    assert parsed.content == [Reasoning(text="6 times 7", origin="openai-chat"), Text(text="42")]


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("function_call", "tool_use"),
        (None, None),
    ],
)
def test_finish_reasons_map_to_stop_reasons(finish: str | None, reason: str | None) -> None:
    parsed = chat.parse_response(
        {
            **TEXT_RESPONSE,
            "choices": [
                {"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "x"}}
            ],
        }
    )

    assert parsed.stop_reason == reason


def test_stop_with_tool_calls_means_tool_use() -> None:
    """docs/snags.md #17: some compatible servers say 'stop' while calling tools."""
    choice = {**EXAMPLE_RESPONSE["choices"][0], "finish_reason": "stop"}

    assert chat.parse_response({**EXAMPLE_RESPONSE, "choices": [choice]}).stop_reason == "tool_use"


def test_missing_usage_counts_are_unknown_not_zero() -> None:
    parsed = chat.parse_response(
        {
            **TEXT_RESPONSE,
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cache_write_tokens": 3},
            },
        }
    )

    assert parsed.usage == Usage(input_tokens=5, output_tokens=2, cache_write_tokens=3)
    assert chat.parse_response({**TEXT_RESPONSE, "usage": None}).usage == Usage()


# -- render_response ------------------------------------------------------------------------------


def test_rendered_response_is_a_valid_chat_completion_whose_only_extra_is_the_reasoning() -> None:
    response = ChatResponse(
        id="msg_1",
        model="claude-x",
        content=[
            Reasoning(text="hmm", signature="s", origin="anthropic"),
            Text(text="Let me check."),
            ToolCall(id="toolu_1", name="get_weather", arguments='{"city":"Paris"}'),
        ],
        stop_reason="tool_use",
        usage=Usage(
            input_tokens=100,
            output_tokens=20,
            cache_read_tokens=80,
            cache_write_tokens=10,
            reasoning_tokens=5,
        ),
    )
    rendered = chat.render_response(response, request())
    completion = ChatCompletion.model_validate(rendered)

    assert extra_keys(completion) == [".choices[0].message.reasoning_content"]
    assert completion.choices[0].message.model_extra == {"reasoning_content": "hmm"}  # no signature
    assert completion.id == "msg_1" and completion.model == "claude-x"
    choice = completion.choices[0]
    assert choice.message.content == "Let me check." and choice.message.refusal is None
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []] == [
        ("toolu_1", "get_weather", '{"city":"Paris"}')
    ]
    assert choice.finish_reason == "tool_calls"
    assert rendered["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 10},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }


def test_rendered_response_fills_id_model_and_zero_usage() -> None:
    rendered = chat.render_response(ChatResponse(id="", model=""), request())
    completion = ChatCompletion.model_validate(rendered)

    assert completion.id.startswith("chatcmpl-") and len(completion.id) > len("chatcmpl-")
    assert completion.model == "client-model"
    assert completion.choices[0].message.content is None
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"
    assert rendered["usage"]["total_tokens"] == 0 and rendered["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 0
    }


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("error", "stop"),
        ("max_tokens", "length"),
        ("context_window", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(reason: Any, finish: str) -> None:
    rendered = chat.render_response(
        ChatResponse(id="r", model="m", content=[Text(text="x")], stop_reason=reason), request()
    )

    assert rendered["choices"][0]["finish_reason"] == finish


def test_tool_calls_with_a_natural_end_finish_as_tool_calls() -> None:
    """Gemini reports STOP when it called tools; a Chat agent must still see tool_calls."""
    response = ChatResponse(id="r", model="m", content=[ToolCall(id="c", name="f")], stop_reason="end_turn")

    assert chat.render_response(response, request())["choices"][0]["finish_reason"] == "tool_calls"


def test_response_survives_parse_render_parse() -> None:
    parsed = chat.parse_response(MIXED_RESPONSE)

    assert chat.parse_response(chat.render_response(parsed, request())) == parsed.model_copy(
        update={"usage": Usage(input_tokens=30, output_tokens=12, cache_read_tokens=0, reasoning_tokens=0)}
    )


# -- StreamDecoder --------------------------------------------------------------------------------


def test_text_stream_example_decodes_to_events() -> None:
    assert decode(STREAM_TEXT) == [
        MessageStart(id="chatcmpl-1", model="gpt-5.5"),
        TextDelta(text="Hello"),
        Stop(reason="end_turn"),
        UsageUpdate(usage=Usage(input_tokens=9, output_tokens=1, cache_read_tokens=0, reasoning_tokens=0)),
        End(),
    ]


def test_tool_stream_example_decodes_to_events() -> None:
    assert decode(STREAM_TOOL) == [
        MessageStart(id="chatcmpl-2", model="gpt-5.5"),
        ToolCallStart(index=0, id="call_1", name="get_weather"),
        ToolCallDelta(index=0, arguments='{"ci'),
        ToolCallDelta(index=0, arguments='ty":"Paris"}'),
        ToolCallEnd(index=0),
        Stop(reason="tool_use"),
        End(),
    ]


def test_combined_chunk_splits_into_ordered_events() -> None:
    """docs/snags.md #3: reasoning, text, tool call, finish and usage in one chunk; nothing dropped."""
    chunk = {
        "id": "x",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "delta": {
                    "reasoning_content": "plan",
                    "content": "Calling.",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }

    assert decode(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()) == [
        MessageStart(id="x", model="m"),
        ReasoningDelta(text="plan", origin="openai-chat"),
        TextDelta(text="Calling."),
        ToolCallStart(index=0, id="c1", name="f"),
        ToolCallDelta(index=0, arguments="{}"),
        ToolCallEnd(index=0),
        Stop(reason="tool_use"),
        UsageUpdate(usage=Usage(input_tokens=3, output_tokens=4)),
        End(),
    ]


def test_mixed_stream_handles_comments_crlf_and_parallel_calls() -> None:
    assert decode(STREAM_MIXED) == [
        MessageStart(id="gen-7", model="m-1"),
        TextDelta(text="It is 18 °C"),
        TextDelta(text=" in Paris."),
        ToolCallStart(index=0, id="call_a", name="get_weather"),
        ToolCallStart(index=1, id="call_b", name="get_time"),
        ToolCallDelta(index=1, arguments="{}"),
        ToolCallDelta(index=0, arguments='{"city":"Paris"}'),
        ToolCallEnd(index=0),
        ToolCallEnd(index=1),
        Stop(reason="tool_use"),
        UsageUpdate(usage=Usage(input_tokens=30, output_tokens=12)),
        End(),
    ]


def test_openrouter_error_chunk_with_empty_choices_is_a_stream_error() -> None:
    """docs/snags.md #6: numeric code, no type, after a processing comment."""
    stream = (
        b": OPENROUTER PROCESSING\n\n"
        b'data: {"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
        b'"error":{"code":429,"message":"Provider rate limited"}}\n\n'
    )
    events = decode(stream)

    assert len(events) == 1 and isinstance(events[0], StreamError)
    error = ProxyError.from_dict(events[0].error)
    assert (error.code, error.status, error.message) == ("rate_limited", 429, "Provider rate limited")


def test_mid_stream_openai_error_ends_the_stream() -> None:
    stream = STREAM_TEXT.split(b"\n\n")[1] + (
        b'\n\ndata: {"error":{"message":"The server is overloaded","type":"server_error",'
        b'"param":null,"code":null}}\n\n'
        b'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"late"},'
        b'"finish_reason":null}]}\n\n'
    )
    events = decode(stream)

    assert events[:2] == [MessageStart(id="chatcmpl-1", model="gpt-5.5"), TextDelta(text="Hello")]
    assert len(events) == 3 and isinstance(events[2], StreamError)
    assert events[2].error["code"] == "upstream_error"
    assert events[2].error["message"] == "The server is overloaded"
    assert events[2].error["provider_type"] == "server_error"


def test_error_chunk_with_a_bare_message_is_a_stream_error() -> None:
    events = decode(b'data: {"error":"model crashed"}\n\n')

    assert len(events) == 1 and isinstance(events[0], StreamError)
    assert (events[0].error["code"], events[0].error["message"]) == ("upstream_error", "model crashed")


def test_stream_cut_off_before_finish_is_an_error_but_after_finish_ends_cleanly() -> None:
    unfinished = decode(
        STREAM_TEXT.split(
            b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk",'
            b'"created":1767225600,"model":"gpt-5.5","choices":[{"index":0,'
            b'"delta":{},'
        )[0]
    )
    finished = decode(STREAM_TEXT.replace(b"data: [DONE]\n\n", b""))

    assert isinstance(unfinished[-1], StreamError) and unfinished[-1].error["code"] == "upstream_error"
    assert unfinished[-1].error["message"] == "upstream stream ended before it finished"
    assert finished == decode(STREAM_TEXT)
    assert isinstance(decode(b"")[-1], StreamError)


def test_done_without_finish_closes_open_calls_then_ends() -> None:
    stream = STREAM_TOOL.replace(STREAM_TOOL.split(b"\n\n")[3] + b"\n\n", b"")

    assert decode(stream)[-3:] == [
        ToolCallDelta(index=0, arguments='ty":"Paris"}'),
        ToolCallEnd(index=0),
        End(),
    ]


def test_parallel_calls_reusing_index_zero_are_told_apart_by_id() -> None:
    chunks = [
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"n":1}'}}
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "b", "function": {"name": "g", "arguments": '{"n":'}}
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "id": "b", "function": {"arguments": "2}"}}]},
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    stream = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"
    response = response_from_events(decode(stream))

    assert response.content == [
        ToolCall(id="a", name="f", arguments='{"n":1}'),
        ToolCall(id="b", name="g", arguments='{"n":2}'),
    ]
    assert response.stop_reason == "tool_use"


def test_streamed_refusal_is_text_with_stop_reason_refusal() -> None:
    chunks = [
        {
            "id": "r",
            "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "refusal": "No."}}],
        },
        {"id": "r", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    stream = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"

    assert decode(stream)[1:3] == [TextDelta(text="No."), Stop(reason="refusal")]


def test_reasoning_sent_under_both_names_is_taken_once() -> None:
    chunk = {
        "id": "r",
        "model": "m",
        "choices": [{"index": 0, "delta": {"reasoning_content": "hm", "reasoning": "hm"}}],
    }

    assert decode(f"data: {json.dumps(chunk)}\n\n".encode())[1:2] == [
        ReasoningDelta(text="hm", origin="openai-chat")
    ]


def test_nothing_is_decoded_after_done() -> None:
    decoder = chat.StreamDecoder()
    decoder.feed(STREAM_TEXT)

    assert decoder.feed(STREAM_TEXT) == [] and decoder.close() == []


def test_decoder_state_is_per_instance() -> None:
    """docs/snags.md #7: two interleaved streams do not share state."""
    first, second = chat.StreamDecoder(), chat.StreamDecoder()
    half = len(STREAM_TOOL) // 2
    events_first = first.feed(STREAM_TOOL[:half])
    events_second = second.feed(STREAM_TEXT)
    events_first += first.feed(STREAM_TOOL[half:]) + first.close()

    assert events_first == decode(STREAM_TOOL)
    assert events_second + second.close() == decode(STREAM_TEXT)


# -- StreamEncoder --------------------------------------------------------------------------------


def encode(events: list[Event], **fields: Any) -> bytes:
    encoder = chat.StreamEncoder(request(stream=True, **fields))
    return encoder.encode(events) + encoder.close()


@pytest.mark.parametrize("name", STREAMS)
def test_encoded_streams_decode_to_the_same_response(name: str) -> None:
    original = response_from_events(decode(STREAMS[name]))
    again = response_from_events(decode(encode(decode(STREAMS[name]), stream_usage=True)))

    assert again.model_copy(update={"usage": original.usage}) == original
    # The usage chunk reports unknown counts as zeros, as OpenAI's own does.
    known = original.usage.model_dump(exclude_none=True)
    assert again.usage.model_dump(exclude_none=True) == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "reasoning_tokens": 0,
        **known,
    }


@pytest.mark.parametrize("name", STREAMS)
def test_every_encoded_chunk_is_a_valid_sdk_chunk_with_stable_identity(name: str) -> None:
    chunks = [
        ChatCompletionChunk.model_validate(c)
        for c in chunks_of(encode(decode(STREAMS[name]), stream_usage=True))
    ]

    assert all(extra_keys(c) == [] for c in chunks)
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert [c.choices[0].finish_reason for c in chunks[:-1]].count(None) == len(chunks) - 2


def test_sdk_stream_helper_assembles_the_encoded_stream() -> None:
    encoded = encode(decode(STREAM_MIXED), stream_usage=True)
    client = sdk_client(200, encoded)

    with client.chat.completions.stream(model="m-1", messages=[{"role": "user", "content": "hi"}]) as stream:
        completion = stream.get_final_completion()

    message = completion.choices[0].message
    assert message.content == "It is 18 °C in Paris."
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [
        ("call_a", "get_weather", '{"city":"Paris"}'),
        ("call_b", "get_time", "{}"),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None and completion.usage.total_tokens == 42


def test_usage_chunk_is_sent_only_when_the_client_asked() -> None:
    events = decode(STREAM_TEXT)

    assert all(c["choices"] for c in chunks_of(encode(events)))
    with_usage = chunks_of(encode(events, stream_usage=True))
    assert with_usage[-1] == {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": with_usage[0]["created"],
        "model": "gpt-5.5",
        "choices": [],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 1,
            "total_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


def test_usage_arriving_after_stop_is_still_reported() -> None:
    """docs/snags.md #4."""
    events: list[Event] = [
        MessageStart(id="m", model="x"),
        TextDelta(text="hi"),
        Stop(reason="end_turn"),
        UsageUpdate(usage=Usage(input_tokens=5)),
        UsageUpdate(usage=Usage(input_tokens=5, output_tokens=2)),
        End(),
    ]
    last = chunks_of(encode(events, stream_usage=True))[-1]

    assert last["usage"]["prompt_tokens"] == 5 and last["usage"]["completion_tokens"] == 2


def test_tool_call_chunks_follow_the_sdk_shape() -> None:
    chunks = chunks_of(
        encode(
            [
                MessageStart(id="m", model="x"),
                ToolCallStart(index=0, id="toolu_1", name="f"),
                ToolCallDelta(index=0, arguments=""),
                ToolCallDelta(index=0, arguments='{"a":1}'),
                ToolCallEnd(index=0),
                Stop(reason="tool_use"),
                End(),
            ]
        )
    )

    assert [c["choices"][0]["delta"] for c in chunks[1:]] == [
        {
            "tool_calls": [
                {"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_orphan_deltas_signature_only_reasoning_and_empty_text_produce_no_chunks() -> None:
    """docs/snags.md #1: no delta for a call that was never started, no empty chunks."""
    chunks = chunks_of(
        encode(
            [
                MessageStart(id="m", model="x"),
                ReasoningDelta(signature="sig", origin="anthropic"),
                ReasoningDelta(text="", redacted=True, signature="data", origin="anthropic"),
                TextDelta(text=""),
                ToolCallDelta(index=3, arguments='{"x":1}'),
                ToolCallEnd(index=3),
                End(),
            ]
        )
    )

    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {}]


def test_end_without_stop_still_sends_a_finish_reason() -> None:
    plain = chunks_of(encode([MessageStart(id="m", model="x"), TextDelta(text="hi"), End()]))
    with_call = chunks_of(
        encode([MessageStart(id="m", model="x"), ToolCallStart(index=0, id="c", name="f"), End()])
    )

    assert plain[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert with_call[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_empty_message_id_gets_a_chatcmpl_id_and_the_request_model() -> None:
    chunks = chunks_of(encode([MessageStart(id="", model=""), TextDelta(text="hi"), End()]))

    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and chunks[0]["id"].startswith("chatcmpl-")
    assert {c["model"] for c in chunks} == {"client-model"}


def test_stream_error_becomes_an_error_chunk_the_sdk_raises() -> None:
    error = ProxyError("overloaded", "Overloaded", status=529, provider_type="overloaded_error")
    encoded = encode(
        [
            MessageStart(id="m", model="x"),
            TextDelta(text="par"),
            StreamError(error=error.to_dict()),
            TextDelta(text="ignored"),
            End(),
        ]
    )

    assert encoded.endswith(
        b'data: {"error":{"message":"Overloaded","type":"overloaded_error","param":null,'
        b'"code":"overloaded"}}\n\n'
        b"data: [DONE]\n\n"
    )
    stream = sdk_client(200, encoded).chat.completions.create(
        model="x", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert caught.value.message == "Overloaded" and caught.value.code == "overloaded"


def test_encoder_emits_nothing_after_end() -> None:
    encoder = chat.StreamEncoder(request(stream=True))
    first = encoder.encode([MessageStart(id="m", model="x"), End()])

    assert first.endswith(b"data: [DONE]\n\n")
    assert encoder.encode([TextDelta(text="late"), End()]) == b"" and encoder.close() == b""


def test_close_finishes_a_stream_that_got_no_end() -> None:
    encoder = chat.StreamEncoder(request(stream=True, stream_usage=True))
    encoder.encode([MessageStart(id="m", model="x"), TextDelta(text="hi")])
    chunks = chunks_of(encoder.close())

    assert chunks[0]["choices"][0]["finish_reason"] == "stop"
    assert chunks[1]["choices"] == [] and chunks[1]["usage"]["total_tokens"] == 0


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(CODES))
def test_rendered_errors_are_sdk_error_objects_that_keep_their_param(code: str) -> None:
    """The round trip of code, status and message is tests/test_contract.py's."""
    status, payload = chat.render_error(ProxyError(code, f"{code} happened", param="messages"))

    assert extra_keys(ErrorObject.model_validate(json.loads(payload)["error"])) == []
    assert chat.parse_error(status, payload).param == "messages"


@pytest.mark.parametrize(
    ("code", "type_"),
    [
        ("invalid_request", "invalid_request_error"),
        ("authentication", "authentication_error"),
        ("permission", "permission_error"),
        ("not_found", "not_found_error"),
        ("billing", "insufficient_quota"),
        ("rate_limited", "rate_limit_error"),
        ("overloaded", "server_error"),
        ("internal", "server_error"),
    ],
)
def test_proxy_errors_get_openai_like_types(code: str, type_: str) -> None:
    payload = json.loads(chat.render_error(ProxyError(code, "m"))[1])

    assert payload == {"error": {"message": "m", "type": type_, "param": None, "code": code}}


def test_provider_type_is_kept_and_529_becomes_503() -> None:
    status, payload = chat.render_error(
        ProxyError("overloaded", "busy", status=529, provider_type="overloaded_error")
    )

    assert status == 503
    assert json.loads(payload)["error"]["type"] == "overloaded_error"


# HTTP status -> the exception the OpenAI SDK raises for it (Chat and Responses alike).
SDK_ERRORS: list[tuple[int, type[openai.APIStatusError]]] = [
    (400, openai.BadRequestError),
    (401, openai.AuthenticationError),
    (403, openai.PermissionDeniedError),
    (404, openai.NotFoundError),
    (429, openai.RateLimitError),
    (503, openai.InternalServerError),
]


@pytest.mark.parametrize(("status", "exception"), SDK_ERRORS)
def test_the_sdk_reads_rendered_errors(status: int, exception: type[openai.APIStatusError]) -> None:
    error = ProxyError.from_status(status, "nope")
    client = sdk_client(*chat.render_error(error), content_type="application/json")

    with pytest.raises(exception) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == error.code and caught.value.status_code == status


@pytest.mark.parametrize(
    ("status", "payload", "code"),
    [
        (
            401,
            {
                "error": {
                    "message": "Incorrect API key provided: sk-abc***.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            "authentication",
        ),
        (
            404,
            {
                "error": {
                    "message": "no such model",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
            "not_found",
        ),
        (
            404,
            {
                "error": {
                    "message": "no such route",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
            "not_found",
        ),
        (
            429,
            {
                "error": {
                    "message": "quota",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            },
            "billing",
        ),
        (
            429,
            {
                "error": {
                    "message": "slow down",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            "rate_limited",
        ),
        (
            400,
            {
                "error": {
                    "message": "too long",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
            "invalid_request",
        ),
        (
            500,
            {"error": {"message": "oops", "type": "server_error", "param": None, "code": None}},
            "internal",
        ),
        (
            503,
            {"error": {"message": "busy", "type": "server_error", "param": None, "code": None}},
            "overloaded",
        ),
    ],
)
def test_provider_errors_keep_status_message_and_type(
    status: int, payload: dict[str, Any], code: str
) -> None:
    parsed = chat.parse_error(status, json.dumps(payload).encode())

    assert (parsed.code, parsed.status) == (code, status)
    assert parsed.message == payload["error"]["message"]
    assert parsed.provider_type == payload["error"]["type"]
    assert parsed.param == payload["error"]["param"]


def test_openrouter_numeric_codes_and_list_wrappers_are_understood() -> None:
    openrouter = chat.parse_error(
        429, b'{"error":{"code":429,"message":"Rate limit exceeded","metadata":{}}}'
    )
    wrapped = chat.parse_error(
        400, b'[{"error":{"code":400,"message":"bad field","status":"INVALID_ARGUMENT"}}]'
    )

    assert (openrouter.code, openrouter.status, openrouter.message) == (
        "rate_limited",
        429,
        "Rate limit exceeded",
    )
    assert (wrapped.code, wrapped.status, wrapped.message) == ("invalid_request", 400, "bad field")


def test_non_json_error_bodies_keep_their_text_or_say_the_status() -> None:
    html = b"<html><body>" + b"Bad Gateway " * 60 + b"</body></html>"
    from_html = chat.parse_error(502, html)
    empty = chat.parse_error(500, b"")
    plain = chat.parse_error(401, b'{"error":"invalid token"}')

    assert (from_html.code, from_html.status) == ("upstream_error", 502)
    assert from_html.message == html.decode()[:300]
    assert (empty.code, empty.message) == ("internal", "upstream returned HTTP 500")
    assert (plain.code, plain.message) == ("authentication", "invalid token")


# -- reasoning of OpenAI-compatible servers (docs/wire.md §1.7) ------------------------------------

THOUGHT, ANSWER = "plan é<b", "Hello"
THINKING = f"<think>{THOUGHT}</think>\n\n{ANSWER}"


def content_stream(*pieces: str, finish: str = "stop") -> bytes:
    """A Chat stream whose content arrives in ``pieces``, one delta each."""
    frames = [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    frames.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return b"".join(b"data: " + json.dumps({"id": "x", "model": "m", **f}).encode() + b"\n\n" for f in frames)


def said(events: list[Event]) -> tuple[str, str, list[str]]:
    """The reasoning and the text of a decoded stream, and the order their kinds came in."""
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    kinds = [e.type for e in events if isinstance(e, (ReasoningDelta, TextDelta))]
    return reasoning, text, [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]


def test_think_tags_at_the_start_of_whole_content_become_reasoning() -> None:
    def parts(content: str) -> list[Any]:
        return chat.parse_response({"choices": [{"message": {"content": content}}]}).content

    assert parts(THINKING) == [Reasoning(text=THOUGHT, origin="openai-chat"), Text(text=ANSWER)]
    assert parts("<think>cut short") == [Reasoning(text="cut short", origin="openai-chat")]
    assert parts("Hi <think>x</think>") == [Text(text="Hi <think>x</think>")]


@pytest.mark.parametrize("cut", range(len(THINKING) + 1))
def test_think_tags_are_found_whatever_character_the_content_is_cut_at(cut: int) -> None:
    events = decode(content_stream(THINKING[:cut], THINKING[cut:]))

    assert said(events) == (THOUGHT, ANSWER, ["reasoning_delta", "text_delta"])


STREAM_OF_THINKING = content_stream(THINKING)


@pytest.mark.parametrize("cut", range(len(STREAM_OF_THINKING) + 1))
def test_think_tags_are_found_whatever_byte_the_stream_is_cut_at(cut: int) -> None:
    decoder = chat.StreamDecoder()
    events = decoder.feed(STREAM_OF_THINKING[:cut]) + decoder.feed(STREAM_OF_THINKING[cut:]) + decoder.close()

    assert said(events) == (THOUGHT, ANSWER, ["reasoning_delta", "text_delta"])


def test_think_tags_one_character_per_delta() -> None:
    assert said(decode(content_stream(*THINKING))) == (THOUGHT, ANSWER, ["reasoning_delta", "text_delta"])


def test_think_tags_hold_back_only_what_could_still_be_a_tag() -> None:
    """Fed one character at a time: reasoning and text leave as soon as they cannot be a tag."""
    content = "<think>a<b</think>\n\nHi"
    expected = [("", "")] * 7 + [("a", "")] * 2 + [("a<b", "")] * 11 + [("a<b", "H"), ("a<b", "Hi")]
    tags, out, seen = chat.ThinkTags(), [], []
    for character in content:
        tags.feed(character, out)
        seen.append(said(out)[:2])

    assert seen == expected


def test_content_that_is_not_a_think_tag_is_text_at_once_and_a_cut_tag_is_kept() -> None:
    opening = content_stream("Hello").split(b"\n\n")[0] + b"\n\n"  # the first delta, no finish yet

    assert chat.StreamDecoder().feed(opening)[1:] == [TextDelta(text="Hello")]
    assert said(decode(content_stream("<b", "old>"))) == ("", "<bold>", ["text_delta"])
    assert said(decode(content_stream("<thi", finish="length"))) == ("", "<thi", ["text_delta"])
    assert said(decode(content_stream("<think>a</thi", finish="length"))) == (
        "a</thi",
        "",
        ["reasoning_delta"],
    )


def test_reasoning_before_a_tool_call_leaves_before_the_call() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    frames = [
        {"choices": [{"index": 0, "delta": {"content": "<think>look</th"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    data = b"".join(b"data: " + json.dumps({"id": "x", "model": "m", **f}).encode() + b"\n\n" for f in frames)
    kinds = [type(e).__name__ for e in decode(data)]

    assert kinds == [
        "MessageStart",
        "ReasoningDelta",
        "ReasoningDelta",
        "ToolCallStart",
        "ToolCallDelta",
        "ToolCallEnd",
        "Stop",
        "End",
    ]


def history_with_thoughts() -> list[Any]:
    """A tool-calling turn whose reasoning came from Anthropic (signed), then a plain answer."""
    call = ToolCall(id="call_1", name="get_weather", arguments="{}")
    return [
        user(Text(text="weather?")),
        assistant(
            Reasoning(text="plan", signature="sig", origin="anthropic"),
            Reasoning(redacted=True, signature="x"),
            call,
        ),
        user(ToolResult(tool_call_id="call_1", content=[Text(text="18")])),
        assistant(Text(text="18 degrees")),
        user(Text(text="thanks")),
    ]


@pytest.mark.parametrize(
    ("echo", "members"),
    [
        (chat.NO_ECHO, [{}, {}]),
        (chat.ReasoningEcho("echo"), [{"reasoning_content": "plan"}, {}]),
        (chat.ReasoningEcho("echo", "reasoning"), [{"reasoning": "plan"}, {}]),
        (chat.ReasoningEcho("always"), [{"reasoning_content": "plan"}, {"reasoning_content": ""}]),
    ],
    ids=["drop", "echo", "echo-as-reasoning", "always"],
)
def test_earlier_reasoning_goes_back_as_the_server_asks(echo: Any, members: list[dict[str, str]]) -> None:
    rendered = chat.render_request(request(messages=history_with_thoughts()), reasoning_echo=echo)
    assistants = [m for m in rendered["messages"] if m["role"] == "assistant"]

    assert [{k: v for k, v in m.items() if k.startswith("reasoning")} for m in assistants] == members
    assert "sig" not in json.dumps(rendered) and "x" not in [m.get("reasoning_content") for m in assistants]


# -- reasoning for Chat clients ---------------------------------------------------------------------


def test_a_chat_client_gets_the_answers_reasoning_as_reasoning_content_in_the_message() -> None:
    response = ChatResponse(
        id="m",
        model="x",
        content=[
            Reasoning(text="first", signature="s", origin="anthropic"),
            Reasoning(redacted=True, signature="hidden"),
            Reasoning(text="second", origin="gemini"),
            Text(text="Paris"),
        ],
        stop_reason="end_turn",
    )
    message = ChatCompletion.model_validate(chat.render_response(response, request())).choices[0].message

    assert message.content == "Paris"
    assert message.model_extra == {"reasoning_content": "first\n\nsecond"}


def test_an_answer_without_reasoning_has_no_reasoning_member() -> None:
    response = ChatResponse(id="m", model="x", content=[Text(text="hi")], stop_reason="end_turn")

    assert "reasoning_content" not in chat.render_response(response, request())["choices"][0]["message"]


def test_streamed_reasoning_goes_out_as_delta_reasoning_content_before_the_text() -> None:
    stream = encode(
        [
            MessageStart(id="m", model="x"),
            ReasoningDelta(text="thinking ", origin="anthropic"),
            ReasoningDelta(text="hard", origin="anthropic"),
            ReasoningDelta(signature="sig", origin="anthropic"),
            TextDelta(text="Paris"),
            Stop(reason="end_turn"),
            End(),
        ]
    )
    chunks = [ChatCompletionChunk.model_validate(c) for c in chunks_of(stream)]
    deltas = [c.choices[0].delta for c in chunks]

    assert [d.model_extra.get("reasoning_content") for d in deltas] == [None, "thinking ", "hard", None, None]
    assert "".join(d.content or "" for d in deltas) == "Paris"
    assert b"sig" not in stream


def test_think_tags_of_a_compatible_server_reach_a_chat_client_as_reasoning_content() -> None:
    """A stage re-encodes a same-protocol answer: the `<think>` opening still reaches the client."""
    events = decode(content_stream("<think>pla", "n</think>\n\nHel", "lo"))
    deltas = [c["choices"][0]["delta"] for c in chunks_of(encode(events))]

    assert "".join(d.get("reasoning_content", "") for d in deltas) == "plan"
    assert "".join(d.get("content", "") for d in deltas) == "Hello"


# -- `</think>` without its opening tag: the model's template opened it (docs/wire.md §1.7) ---------

R1 = "DeepSeek-R1-Distill-Qwen-32B"  # as vLLM names a model it serves from the hub
TEMPLATED = f"{THOUGHT}</think>\n\n{ANSWER}"


def model_stream(model: str, *deltas: dict[str, Any]) -> bytes:
    frames = [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    frames.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(
        b"data: " + json.dumps({"id": "x", "model": model, **f}).encode() + b"\n\n" for f in frames
    )


def whole(model: str, **message: Any) -> list[Any]:
    body = {"model": model, "choices": [{"message": {"role": "assistant", **message}}]}
    return chat.parse_response(body).content


@pytest.mark.parametrize("model", [R1, "deepseek-r1:14b", "Qwen/QwQ-32B", "Qwen3-30B-A3B-Thinking-2507"])
def test_a_closing_tag_ends_the_reasoning_of_a_model_whose_template_opens_it(model: str) -> None:
    assert whole(model, content=TEMPLATED) == [
        Reasoning(text=THOUGHT, origin="openai-chat"),
        Text(text=ANSWER),
    ]
    assert whole(model, content=f"<think>{TEMPLATED}")[0] == Reasoning(text=THOUGHT, origin="openai-chat")
    assert said(decode(model_stream(model, {"content": TEMPLATED}))) == (
        THOUGHT,
        ANSWER,
        ["reasoning_delta", "text_delta"],
    )


@pytest.mark.parametrize("model", ["gpt-4o", "deepseek-chat", "deepseek-reasoner", "qwen3-coder-plus"])
def test_other_models_keep_a_closing_tag_without_its_opening_as_text(model: str) -> None:
    assert whole(model, content=TEMPLATED) == [Text(text=TEMPLATED)]
    assert said(decode(model_stream(model, {"content": TEMPLATED}))) == ("", TEMPLATED, ["text_delta"])


def test_a_server_that_parsed_the_reasoning_itself_sends_plain_content_even_for_r1() -> None:
    """vLLM with a reasoning parser: `reasoning_content` first, then the answer alone."""
    text = "The tag </think> closes reasoning."
    parsed = whole(R1, reasoning_content=THOUGHT, content=text)
    stream = model_stream(R1, {"reasoning_content": THOUGHT}, {"content": text})

    assert parsed == [Reasoning(text=THOUGHT, origin="openai-chat"), Text(text=text)]
    assert said(decode(stream)) == (THOUGHT, text, ["reasoning_delta", "text_delta"])


def test_an_r1_answer_cut_short_before_its_closing_tag_is_all_reasoning() -> None:
    assert whole(R1, content="still thinking") == [Reasoning(text="still thinking", origin="openai-chat")]
    assert said(decode(model_stream(R1, {"content": "still thinking"}))) == (
        "still thinking",
        "",
        ["reasoning_delta"],
    )


@pytest.mark.parametrize("cut", range(len(TEMPLATED) + 1))
def test_a_template_opened_reasoning_is_found_whatever_character_the_content_is_cut_at(cut: int) -> None:
    events = decode(model_stream(R1, {"content": TEMPLATED[:cut]}, {"content": TEMPLATED[cut:]}))

    assert said(events) == (THOUGHT, ANSWER, ["reasoning_delta", "text_delta"])


STREAM_OF_R1 = model_stream(R1, {"content": TEMPLATED})


@pytest.mark.parametrize("cut", range(len(STREAM_OF_R1) + 1))
def test_a_template_opened_reasoning_is_found_whatever_byte_the_stream_is_cut_at(cut: int) -> None:
    decoder = chat.StreamDecoder()
    events = decoder.feed(STREAM_OF_R1[:cut]) + decoder.feed(STREAM_OF_R1[cut:]) + decoder.close()

    assert said(events) == (THOUGHT, ANSWER, ["reasoning_delta", "text_delta"])


def test_a_template_opened_reasoning_holds_back_only_what_could_still_be_the_closing_tag() -> None:
    """One character per delta: reasoning leaves at once but for a possible start of `</think>`
    (at most 7 characters), the answer as soon as it comes."""
    tags, out = chat.ThinkTags(opened=True), []
    close = TEMPLATED.index(chat.THINK_CLOSE)
    for i, character in enumerate(TEMPLATED):
        tags.feed(character, out)
        reasoning, text, _ = said(out)
        if i < close:
            assert TEMPLATED[: i + 1].startswith(reasoning)
            assert i + 1 - len(reasoning) <= len(chat.THINK_CLOSE) - 1
        else:
            assert reasoning == THOUGHT and ANSWER.startswith(text)
    assert said(out)[:2] == (THOUGHT, ANSWER)


def test_a_template_opened_reasoning_drops_a_leading_think_tag_and_holds_only_its_prefix() -> None:
    tags, out = chat.ThinkTags(opened=True), []
    tags.feed("<th", out)
    assert out == []  # perhaps `<think>`
    tags.feed("e", out)
    assert said(out)[0] == "<the"  # it was not: reasoning
    tags, out = chat.ThinkTags(opened=True), []
    for piece in ("<think", ">a</think>", "b"):
        tags.feed(piece, out)
    assert said(out)[:2] == ("a", "b")
