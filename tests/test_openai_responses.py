"""OpenAI Responses translator: parse and render requests, responses, streams and errors.

Fixtures are the examples of docs/wire.md §2, copied literally; rendered bodies are checked key
by key against the official ``openai`` SDK types, and encoded streams are replayed through the SDK's
own stream accumulator.

The promises every protocol shares are tests/test_contract.py's; here is what only Responses does.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.responses import Response, ResponseInputItemParam, ResponseStreamEvent
from openai.types.responses.response_create_params import (
    ResponseCreateParamsNonStreaming,
    ResponseCreateParamsStreaming,
)
from openai.types.shared import ErrorObject
from pydantic import TypeAdapter
from support.examples import RESPONSES, assistant, item_event, response_event, terminal_response, user
from support.examples import RESPONSES_MIXED_OUTPUT as MIXED_OUTPUT
from support.examples import RESPONSES_MIXED_RESPONSE as MIXED_RESPONSE
from support.examples import RESPONSES_STREAM_FAILED as STREAM_FAILED
from support.examples import RESPONSES_STREAM_MIXED as STREAM_MIXED
from support.examples import RESPONSES_STREAM_REASONING as STREAM_REASONING
from support.examples import RESPONSES_STREAM_TEXT as STREAM_TEXT
from support.examples import RESPONSES_STREAM_TOOL as STREAM_TOOL
from support.examples import responses_sse as sse

# The sibling module's SDK conformance helpers (key-by-key TypedDict checks, SDK over a mock transport,
# the SDK's exception per status).
from test_openai_chat import SDK_ERRORS, extra_keys, sdk_client, sdk_problems

from translators import openai_chat
from translators import openai_responses as api
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

# -- fixtures: docs/wire.md §2 ---------------------------------------------------------------

EXAMPLE_REQUEST: dict[str, Any] = {
    "model": "gpt-5.5",
    "instructions": "You are terse.",
    "input": [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Describe the image, then get the weather in Paris."},
                {
                    "type": "input_image",
                    "image_url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA",
                    "detail": "auto",
                },
            ],
        },
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAABpXyZ0"},
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": '{"temp_c":18}'},
    ],
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        }
    ],
    "tool_choice": "auto",
    "reasoning": {"effort": "medium", "summary": "auto"},
    "include": ["reasoning.encrypted_content"],
    "store": False,
    "text": {
        "format": {
            "type": "json_schema",
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
                "additionalProperties": False,
            },
        }
    },
    "max_output_tokens": 2048,
    "stream": True,
}

EXAMPLE_RESPONSE: dict[str, Any] = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1767225600,
    "status": "completed",
    "model": "gpt-5.5",
    "output": [
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Need the weather tool."}],
        },
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "status": "completed",
        },
    ],
    "usage": {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
        "output_tokens": 40,
        "output_tokens_details": {"reasoning_tokens": 22},
        "total_tokens": 160,
    },
    "incomplete_details": None,
    "error": None,
    "instructions": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "temperature": 1.0,
    "top_p": 1.0,
    "tool_choice": "auto",
    "tools": [],
}


STREAMS = RESPONSES.streams


# -- helpers --------------------------------------------------------------------------------------

EVENT = TypeAdapter(ResponseStreamEvent)
# Left out on purpose: with ``store: false`` the API would look these ids up and fail.
OMITTED_KEYS: dict[str, dict[str, str]] = {
    "reasoning": {"id": "rs_x"},
    "message": {"id": "msg_x", "status": "completed"},
}


def sdk_request_problems(body: dict[str, Any]) -> list[str]:
    """Key-by-key conformity to the SDK's create params; each input item is checked on its own
    (the item union would otherwise hide problems behind the plain-string option)."""
    params = ResponseCreateParamsStreaming if body.get("stream") else ResponseCreateParamsNonStreaming
    problems = sdk_problems({**body, "input": []}, params)
    for i, item in enumerate(body["input"]):
        omitted = OMITTED_KEYS.get(item["type"], {}) if item.get("role") in (None, "assistant") else {}
        problems += sdk_problems({**item, **omitted}, ResponseInputItemParam, f"body.input[{i}]")
    return problems


def decode(data: bytes) -> list[Event]:
    decoder = api.StreamDecoder()
    return decoder.feed(data) + decoder.close()


def encode(events: list[Event], **fields: Any) -> bytes:
    encoder = api.StreamEncoder(request(stream=True, **fields))
    return encoder.encode(events) + encoder.close()


def frames(stream: bytes) -> list[dict[str, Any]]:
    """The payloads of an encoded stream, asserting the framing: an ``event:`` line equal to the
    payload's type, one ``data:`` line, and sequence numbers counting from 0."""
    blocks = stream.decode().split("\n\n")
    assert blocks[-1] == ""
    payloads = []
    for block in blocks[:-1]:
        event_line, data_line = block.split("\n")
        payload = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {payload['type']}" and data_line.startswith("data: ")
        payloads.append(payload)
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    return payloads


def kinds(stream: bytes) -> list[str]:
    return [payload["type"] for payload in frames(stream)]


def without_parsed(value: Any) -> Any:
    """An SDK ``ParsedResponse`` as plain JSON, minus the keys the stream helper adds."""
    if isinstance(value, dict):
        return {k: without_parsed(v) for k, v in value.items() if k not in ("parsed", "parsed_arguments")}
    if isinstance(value, list):
        return [without_parsed(v) for v in value]
    return value


def request(**fields: Any) -> ChatRequest:
    return ChatRequest(model="client-model", **fields)


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-5.5", "input": "hi", **fields}


def rejection(value: Any, **kwargs: Any) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        api.parse_request(value, **kwargs)
    assert caught.value.code == "invalid_request" and caught.value.status == 400
    return caught.value


# -- parse_request --------------------------------------------------------------------------------


def test_example_request_parses_field_by_field() -> None:
    parsed = api.parse_request(EXAMPLE_REQUEST)

    assert parsed.model == "gpt-5.5"
    assert parsed.system == [Text(text="You are terse.")]
    assert parsed.messages == [
        user(
            Text(text="Describe the image, then get the weather in Paris."),
            Image(media_type="image/png", data="iVBORw0KGgoAAAANSUhEUgAA", detail="auto"),
        ),
        assistant(
            Reasoning(signature="gAAAAABpXyZ0", origin="openai-responses"),
            ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
        ),
        user(ToolResult(tool_call_id="call_1", content=[Text(text='{"temp_c":18}')])),
    ]
    assert parsed.tools == [
        Tool(
            name="get_weather",
            description="Current weather",
            parameters=EXAMPLE_REQUEST["tools"][0]["parameters"],
            strict=True,
        )
    ]
    assert parsed.tool_choice == ToolChoice(mode="auto")
    assert parsed.reasoning == ReasoningConfig(effort="medium", include_thoughts=True)
    assert parsed.response_format == ResponseFormat(
        type="json_schema",
        name="answer",
        json_schema=EXAMPLE_REQUEST["text"]["format"]["schema"],
        strict=True,
    )
    assert parsed.max_tokens == 2048
    assert parsed.stream is True
    assert (parsed.parallel_tool_calls, parsed.temperature, parsed.top_p, parsed.user) == (
        None,
        None,
        None,
        None,
    )


def test_a_string_input_is_one_user_message() -> None:
    assert api.parse_request(body(input="Hello there")).messages == [user(Text(text="Hello there"))]
    assert api.parse_request(body(input="")).messages == []


def test_instructions_come_first_then_system_and_developer_messages_in_order() -> None:
    parsed = api.parse_request(
        body(
            instructions="zero",
            input=[
                {"role": "system", "content": "one"},
                {"role": "user", "content": "hi"},
                {
                    "type": "message",
                    "role": "developer",
                    "content": [
                        {"type": "input_text", "text": "two"},
                        {"type": "input_text", "text": "three"},
                    ],
                },
                {"role": "assistant", "content": "hello"},
            ],
        )
    )

    assert parsed.system == [Text(text=t) for t in ("zero", "one", "two", "three")]
    assert parsed.messages == [user(Text(text="hi")), assistant(Text(text="hello"))]


def test_easy_and_typed_messages_read_alike() -> None:
    easy = api.parse_request(body(input=[{"role": "user", "content": "look"}]))
    typed = api.parse_request(
        body(input=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"}]}])
    )

    assert easy.messages == typed.messages == [user(Text(text="look"))]


def test_images_keep_https_urls_and_split_data_urls() -> None:
    parsed = api.parse_request(
        body(
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "low"},
                        {
                            "type": "input_image",
                            "image_url": "data:image/jpeg;base64,/9j/4AAQ",
                            "detail": "auto",
                        },
                    ],
                }
            ]
        )
    )

    assert parsed.messages[0].content == [
        Image(url="https://example.com/cat.jpg", detail="low"),
        Image(media_type="image/jpeg", data="/9j/4AAQ", detail="auto"),
    ]


def test_one_assistant_turn_of_replayed_items_is_one_message() -> None:
    """Codex replays a turn as separate items: reasoning, message, calls (docs/snags.md #22)."""
    parsed = api.parse_request(
        body(
            input=[
                {"role": "user", "content": "weather?"},
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [
                        {"type": "summary_text", "text": "Need the tool."},
                        {"type": "summary_text", "text": "Two cities."},
                    ],
                    "encrypted_content": "enc",
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "id": "msg_1",
                    "status": "completed",
                    "content": [
                        {"type": "output_text", "text": "Checking.", "annotations": []},
                        {"type": "refusal", "refusal": "Not London."},
                    ],
                },
                {"type": "function_call", "call_id": "a", "name": "f", "arguments": '{"c":"Paris"}'},
                {"type": "function_call", "call_id": "b", "name": "f", "arguments": ""},
                {"type": "function_call_output", "call_id": "a", "output": "18"},
                {
                    "type": "function_call_output",
                    "call_id": "b",
                    "output": [{"type": "input_text", "text": "12"}],
                },
                {"role": "user", "content": "thanks"},
            ]
        )
    )

    assert parsed.messages == [
        user(Text(text="weather?")),
        assistant(
            Reasoning(text="Need the tool.\n\nTwo cities.", signature="enc", origin="openai-responses"),
            Text(text="Checking."),
            Text(text="Not London."),
            ToolCall(id="a", name="f", arguments='{"c":"Paris"}'),
            ToolCall(id="b", name="f", arguments="{}"),
        ),
        user(
            ToolResult(tool_call_id="a", content=[Text(text="18")]),
            ToolResult(tool_call_id="b", content=[Text(text="12")]),
        ),
        user(Text(text="thanks")),
    ]


def test_tool_output_parts_keep_text_and_images() -> None:
    parsed = api.parse_request(
        body(
            input=[
                {
                    "type": "function_call_output",
                    "call_id": "shot",
                    "output": [
                        {"type": "input_text", "text": "captured"},
                        {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "high"},
                    ],
                }
            ]
        )
    )

    assert parsed.messages == [
        user(
            ToolResult(
                tool_call_id="shot",
                content=[Text(text="captured"), Image(media_type="image/png", data="iVBOR", detail="high")],
            )
        )
    ]


def test_empty_reasoning_items_and_empty_text_are_dropped() -> None:
    parsed = api.parse_request(
        body(
            input=[
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": ""}, {"type": "input_text", "text": "x"}],
                },
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"role": "assistant", "content": ""},
            ]
        )
    )

    assert parsed.messages == [user(Text(text="x"))]


def test_flat_function_tools_without_parameters_get_an_empty_object_schema() -> None:
    parsed = api.parse_request(
        body(tools=[{"type": "function", "name": "now", "parameters": None, "strict": None}])
    )

    assert parsed.tools == [Tool(name="now", parameters={"type": "object", "properties": {}})]


@pytest.mark.parametrize(
    ("wire", "canonical"),
    [
        ("none", ToolChoice(mode="none")),
        ("auto", ToolChoice(mode="auto")),
        ("required", ToolChoice(mode="required")),
        ({"type": "function", "name": "f"}, ToolChoice(mode="tool", name="f")),
        ({"type": "allowed_tools", "mode": "required", "tools": []}, ToolChoice(mode="required")),
        ({"type": "allowed_tools", "mode": "auto", "tools": []}, ToolChoice(mode="auto")),
    ],
)
def test_tool_choice_maps_to_a_mode(wire: Any, canonical: ToolChoice) -> None:
    assert api.parse_request(body(tool_choice=wire)).tool_choice == canonical


def test_options_are_read_and_unknown_keys_ignored() -> None:
    parsed = api.parse_request(
        body(
            temperature=0.5,
            top_p=0.9,
            parallel_tool_calls=False,
            safety_identifier="u-1",
            user="legacy",
            metadata={"k": "v"},
            store=False,
            background=False,
            include=["reasoning.encrypted_content"],
            truncation="auto",
            prompt_cache_key="pk",
            stream_options={"include_obfuscation": False},
        )
    )

    assert (parsed.temperature, parsed.top_p, parsed.parallel_tool_calls) == (0.5, 0.9, False)
    assert parsed.user == "u-1" and parsed.metadata == {"k": "v"}
    assert parsed.stream is False and parsed.max_tokens is None
    assert api.parse_request(body(user="legacy")).user == "legacy"


@pytest.mark.parametrize(
    ("reasoning", "config"),
    [
        ({"effort": "high"}, ReasoningConfig(effort="high")),
        ({"effort": "none"}, ReasoningConfig(effort="none", enabled=False)),
        ({"effort": "low", "summary": "detailed"}, ReasoningConfig(effort="low", include_thoughts=True)),
        ({"summary": "auto"}, ReasoningConfig(include_thoughts=True)),
        ({"generate_summary": "concise"}, ReasoningConfig(include_thoughts=True)),
        ({}, None),
    ],
)
def test_reasoning_effort_and_summary_map_to_the_config(
    reasoning: dict[str, Any], config: ReasoningConfig | None
) -> None:
    assert api.parse_request(body(reasoning=reasoning)).reasoning == config


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "text"}, ResponseFormat(type="text")),
        ({"type": "json_object"}, ResponseFormat(type="json_object")),
        (
            {"type": "json_schema", "name": "a", "schema": {"type": "object"}, "strict": False},
            ResponseFormat(type="json_schema", name="a", json_schema={"type": "object"}, strict=False),
        ),
    ],
)
def test_text_format_is_flat(fmt: dict[str, Any], expected: ResponseFormat) -> None:
    assert api.parse_request(body(text={"format": fmt, "verbosity": "low"})).response_format == expected
    assert api.parse_request(body(text={"verbosity": "low"})).response_format is None


def test_model_and_stream_arguments_override_the_body() -> None:
    parsed = api.parse_request(body(stream=False), model="routed", stream=True)

    assert (parsed.model, parsed.stream) == ("routed", True)


def test_previous_response_id_is_refused_with_advice() -> None:
    """docs/wire.md §6.11: a stateless proxy cannot reproduce the provider's stored conversation."""
    error = rejection(body(previous_response_id="resp_123"))

    assert error.message == (
        "previous_response_id needs the provider's server-side state, which is not available when the "
        "proxy rewrites this request (translated to another protocol, or with selector parameters); "
        "send the full conversation as input items instead"
    )
    assert error.param == "previous_response_id"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"store": True}, "store"),
        ({"conversation": {"id": "conv_1"}}, "conversation"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True}, "background"),
        ({"prompt": {"id": "pmpt_1", "variables": {}}}, "prompt"),
    ],
)
def test_server_side_state_is_refused_naming_the_field(fields: dict[str, Any], param: str) -> None:
    error = rejection(body(**fields))

    assert error.param == param
    assert error.message.startswith(param) and "server-side state" in error.message


def test_store_false_or_absent_and_null_state_fields_are_fine() -> None:
    for fields in ({"store": False}, {}, {"previous_response_id": None, "conversation": None}):
        assert api.parse_request(body(**fields)).messages == [user(Text(text="hi"))]


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (body(input=[{"type": "item_reference", "id": "msg_1"}]), "input[0].type"),
        (body(input=[{"type": "mcp_call", "id": "m", "name": "x", "arguments": "{}"}]), "input[0].type"),
        (body(input=[{"type": "shell_call", "call_id": "c", "action": {"commands": []}}]), "input[0].type"),
        (
            body(input=[{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]),
            "input[0].content[0].type",
        ),
        (
            body(
                input=[
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "file_id": "file_1", "detail": "auto"}],
                    }
                ]
            ),
            "input[0].content[0].file_id",
        ),
        (
            body(
                input=[
                    {
                        "role": "system",
                        "content": [{"type": "input_image", "image_url": "https://x", "detail": "auto"}],
                    }
                ]
            ),
            "input[0].content[0].type",
        ),
        (
            body(
                input=[
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_file", "file_data": "x"}],
                    }
                ]
            ),
            "input[0].output[0].type",
        ),
        (body(tools=[{"type": "local_shell"}]), "tools[0].type"),
        (
            body(tools=[{"type": "namespace", "name": "a", "tools": [{"type": "namespace", "name": "b"}]}]),
            "tools[0].tools[0].type",
        ),
        (body(tool_choice={"type": "web_search_preview"}), "tool_choice"),
    ],
)
def test_untranslatable_content_is_refused_naming_where(value: dict[str, Any], path: str) -> None:
    """A same-protocol route passes these through without parsing (docs/snags.md #22)."""
    message = rejection(value).message

    assert message.startswith(f"{path}: ") and "cannot be translated" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["not", "an", "object"], "body: expected a JSON object, got array"),
        ({"input": "hi"}, "model: required, expected a string"),
        (body(input=5), "input: expected an array, got number"),
        (body(input=["hi"]), "input[0]: expected an object, got string"),
        (body(input=[{"content": "x"}]), "input[0].role: required, expected a string"),
        (body(input=[{"role": "robot", "content": "x"}]), "input[0].role: unknown role 'robot'"),
        (
            body(input=[{"role": "user", "content": [{"type": "foo"}]}]),
            "input[0].content[0].type: unknown part type 'foo'",
        ),
        (
            body(input=[{"role": "user", "content": [{"type": "input_image", "detail": "auto"}]}]),
            "input[0].content[0].image_url: required, expected a string",
        ),
        (
            body(input=[{"type": "function_call", "name": "f", "arguments": "{}"}]),
            "input[0].call_id: required, expected a string",
        ),
        (
            body(input=[{"type": "function_call_output", "output": "x"}]),
            "input[0].call_id: required, expected a string",
        ),
        (
            body(input=[{"type": "function_call_output", "call_id": "c"}]),
            "input[0].output: required, expected a string or an array",
        ),
        (
            body(input=[{"type": "reasoning", "summary": [{"type": "summary_text"}]}]),
            "input[0].summary[0].text: required, expected a string",
        ),
        (body(instructions=["x"]), "instructions: expected a string, got array"),
        (body(temperature="hot"), "temperature: expected a number, got string"),
        (body(max_output_tokens=True), "max_output_tokens: expected an integer, got boolean"),
        (body(store="yes"), "store: expected a boolean, got string"),
        (body(tools=[{"type": "function"}]), "tools[0].name: required, expected a string"),
        (
            body(tools=[{"type": "function", "name": "f", "parameters": "x"}]),
            "tools[0].parameters: expected an object, got string",
        ),
        (body(tool_choice="always"), "tool_choice: unknown value 'always'"),
        (body(tool_choice={"type": "function"}), "tool_choice.name: required, expected a string"),
        (body(tool_choice={"type": "allowed_tools", "mode": "x"}), "tool_choice.mode: unknown value 'x'"),
        (body(reasoning={"effort": 3}), "reasoning.effort: expected a string, got number"),
        (body(text={"format": {"type": "yaml"}}), "text.format.type: unknown value 'yaml'"),
        (body(text={"format": "json"}), "text.format: expected an object, got string"),
    ],
)
def test_malformed_requests_are_rejected_with_their_key_path(value: Any, expected: str) -> None:
    assert rejection(value).message == expected


# -- render_request -------------------------------------------------------------------------------


def test_example_request_survives_parse_render_parse() -> None:
    parsed = api.parse_request(EXAMPLE_REQUEST)
    rendered = api.render_request(parsed)

    assert sdk_request_problems(rendered) == []
    assert api.parse_request(rendered) == parsed
    assert rendered == {
        **{k: v for k, v in EXAMPLE_REQUEST.items() if k != "input"},
        "input": [
            EXAMPLE_REQUEST["input"][0] | {"type": "message"},
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAABpXyZ0"},
            {k: v for k, v in EXAMPLE_REQUEST["input"][2].items() if k != "id"},
            EXAMPLE_REQUEST["input"][3],
        ],
    }


def test_system_parts_become_instructions() -> None:
    rendered = api.render_request(
        request(system=[Text(text="a"), Text(text=""), Text(text="b")], messages=[user(Text(text="hi"))])
    )

    assert rendered["instructions"] == "a\n\nb"
    assert rendered["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]
    assert sdk_request_problems(rendered) == []


def test_assistant_turns_become_typed_items_in_part_order() -> None:
    """Reasoning stays before the calls it preceded (docs/wire.md §6.11); ids are left out
    (``store: false``)."""
    rendered = api.render_request(
        request(
            messages=[
                user(Text(text="hi")),
                assistant(
                    Reasoning(text="plan", signature="enc_1", origin="openai-responses"),
                    Text(text="Che"),
                    Text(text="cking."),
                    ToolCall(id="a", name="f", arguments=""),
                    Reasoning(signature="enc_2", origin="openai-responses"),
                    ToolCall(id="b", name="g", arguments='{"x":1}'),
                ),
            ]
        )
    )

    assert rendered["input"][1:] == [
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "plan"}],
            "encrypted_content": "enc_1",
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Che", "annotations": []},
                {"type": "output_text", "text": "cking.", "annotations": []},
            ],
        },
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "reasoning", "summary": [], "encrypted_content": "enc_2"},
        {"type": "function_call", "call_id": "b", "name": "g", "arguments": '{"x":1}'},
    ]
    assert sdk_request_problems(rendered) == []


def test_foreign_or_unsigned_reasoning_is_dropped() -> None:
    """docs/snags.md #13: encrypted_content is bound to OpenAI; other signatures never travel there."""
    rendered = api.render_request(
        request(
            messages=[
                user(Text(text="hi")),
                assistant(
                    Reasoning(text="thinking", signature="sig", origin="anthropic"),
                    Reasoning(text="gemini thought", signature="ts", origin="gemini"),
                    Reasoning(text="summary only", origin="openai-responses"),
                    Text(text="Hello"),
                ),
                assistant(Reasoning(text="only thoughts", origin="openai-chat")),
            ]
        )
    )

    assert rendered["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
        },
    ]


def test_tool_results_become_call_outputs_with_images_as_parts() -> None:
    screenshot = Image(media_type="image/png", data="iVBOR")
    rendered = api.render_request(
        request(
            messages=[
                assistant(ToolCall(id="a", name="f"), ToolCall(id="b", name="shot")),
                user(
                    ToolResult(
                        tool_call_id="a", content=[Text(text="one"), Text(text=""), Text(text="more")]
                    ),
                    ToolResult(tool_call_id="b", content=[Text(text="captured"), screenshot], is_error=True),
                    Text(text="Here you go"),
                    Image(url="https://example.com/a.png", detail="low"),
                ),
            ]
        )
    )

    assert rendered["input"][2:] == [
        {"type": "function_call_output", "call_id": "a", "output": "one\n\nmore"},
        {
            "type": "function_call_output",
            "call_id": "b",
            "output": [
                {"type": "input_text", "text": "captured"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "auto"},
            ],
        },
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Here you go"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
            ],
        },
    ]
    assert sdk_request_problems(rendered) == []


def test_long_tool_call_ids_are_shortened_identically_in_calls_and_results() -> None:
    """docs/wire.md §6.7: foreign ids (e.g. Gemini signatures carried in the id) exceed OpenAI's limits."""
    long_id = "gemini_" + "A" * 120
    conversation = [
        assistant(ToolCall(id=long_id, name="f"), ToolCall(id="call_short", name="f")),
        user(
            ToolResult(tool_call_id=long_id, content=[Text(text="1")]),
            ToolResult(tool_call_id="call_short", content=[Text(text="2")]),
        ),
    ]
    items = api.render_request(request(messages=conversation))["input"]

    call_ids, result_ids = [i["call_id"] for i in items[:2]], [i["call_id"] for i in items[2:]]
    assert call_ids == result_ids
    assert call_ids[0] == openai_chat.short_call_id(long_id) and call_ids[0] != long_id
    assert call_ids[1] == "call_short"


def test_unset_options_are_left_out_and_the_request_is_stateless() -> None:
    rendered = api.render_request(
        request(
            messages=[user(Text(text="hi"))],
            top_k=40,
            stop=["END"],
            seed=3,
            frequency_penalty=0.5,
            presence_penalty=0.1,
            stream_usage=True,
        )
    )

    assert rendered == {
        "model": "client-model",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "store": False,
    }


def test_set_options_are_rendered_and_validate_against_the_sdk() -> None:
    rendered = api.render_request(
        request(
            messages=[user(Text(text="hi"))],
            tools=[Tool(name="f", description="does f", strict=False), Tool(name="g")],
            tool_choice=ToolChoice(mode="tool", name="f"),
            parallel_tool_calls=False,
            max_tokens=100,
            temperature=0.2,
            top_p=0.8,
            response_format=ResponseFormat(type="json_schema", json_schema={"type": "object"}, strict=True),
            user="u-1",
            metadata={"k": "v"},
            stream=True,
        )
    )

    assert rendered["tools"] == [
        {
            "type": "function",
            "name": "f",
            "description": "does f",
            "parameters": {"type": "object", "properties": {}},
            "strict": False,
        },
        {"type": "function", "name": "g", "parameters": {"type": "object", "properties": {}}, "strict": None},
    ]
    assert rendered["tool_choice"] == {"type": "function", "name": "f"}
    assert rendered["parallel_tool_calls"] is False
    assert rendered["text"] == {
        "format": {"type": "json_schema", "name": "response", "schema": {"type": "object"}, "strict": True}
    }
    assert (rendered["max_output_tokens"], rendered["temperature"], rendered["top_p"]) == (100, 0.2, 0.8)
    assert (rendered["user"], rendered["stream"], rendered["store"]) == ("u-1", True, False)
    assert "stream_options" not in rendered and "metadata" not in rendered
    assert sdk_request_problems(rendered) == []


def test_tool_choice_and_parallel_flag_need_tools() -> None:
    rendered = api.render_request(
        request(
            messages=[user(Text(text="hi"))], tool_choice=ToolChoice(mode="none"), parallel_tool_calls=False
        )
    )

    assert "tool_choice" not in rendered and "parallel_tool_calls" not in rendered


@pytest.mark.parametrize(
    ("config", "reasoning"),
    [
        (ReasoningConfig(effort="high"), {"effort": "high"}),
        (ReasoningConfig(budget_tokens=8000), {"effort": "medium"}),
        (ReasoningConfig(budget_tokens=30000, include_thoughts=True), {"effort": "xhigh", "summary": "auto"}),
        (ReasoningConfig(enabled=False, budget_tokens=4096), {"effort": "none"}),
        (ReasoningConfig(), None),
    ],
)
def test_reasoning_config_becomes_effort_and_asks_for_encrypted_reasoning(
    config: ReasoningConfig, reasoning: dict[str, Any] | None
) -> None:
    rendered = api.render_request(request(messages=[user(Text(text="hi"))], reasoning=config))

    assert rendered.get("reasoning") == reasoning
    # Replaying reasoning with store: false needs its encrypted content (docs/wire.md §6.11).
    thinking = reasoning is not None and reasoning["effort"] != "none"
    assert rendered.get("include") == (["reasoning.encrypted_content"] if thinking else None)
    assert sdk_request_problems(rendered) == []


# -- parse_response -------------------------------------------------------------------------------


def test_example_response_parses_field_by_field() -> None:
    assert api.parse_response(EXAMPLE_RESPONSE) == ChatResponse(
        id="resp_1",
        model="gpt-5.5",
        content=[
            Reasoning(text="Need the weather tool.", origin="openai-responses"),
            Text(text="Checking."),
            ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
        ],
        stop_reason="tool_use",
        usage=Usage(
            input_tokens=120,
            output_tokens=40,
            cache_read_tokens=64,
            cache_write_tokens=0,
            reasoning_tokens=22,
        ),
    )


def test_encrypted_reasoning_is_kept_byte_exact_and_hosted_tool_items_are_skipped() -> None:
    parsed = api.parse_response(
        {
            **EXAMPLE_RESPONSE,
            "output": [
                {
                    "type": "web_search_call",
                    "id": "ws_1",
                    "status": "completed",
                    "action": {"type": "search"},
                },
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA+/=="},
                {"type": "reasoning", "id": "rs_2", "summary": []},
            ],
        }
    )

    assert parsed.content == [Reasoning(signature="gAAAA+/==", origin="openai-responses")]
    assert parsed.stop_reason == "end_turn"


def test_refusal_part_is_text_with_stop_reason_refusal() -> None:
    message = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "refusal", "refusal": "I can't help with that."}],
    }
    parsed = api.parse_response({**EXAMPLE_RESPONSE, "output": [message]})

    assert parsed.content == [Text(text="I can't help with that.")]
    assert parsed.stop_reason == "refusal"


@pytest.mark.parametrize(
    ("status", "details", "calls", "reason"),
    [
        ("completed", None, False, "end_turn"),
        ("completed", None, True, "tool_use"),
        ("incomplete", {"reason": "max_output_tokens"}, False, "max_tokens"),
        ("incomplete", {"reason": "max_output_tokens"}, True, "max_tokens"),
        ("incomplete", {"reason": "content_filter"}, False, "refusal"),
        ("incomplete", None, False, "max_tokens"),
        ("failed", None, False, "error"),
        ("in_progress", None, False, None),
    ],
)
def test_status_and_items_decide_the_stop_reason(
    status: str, details: dict[str, Any] | None, calls: bool, reason: str | None
) -> None:
    """Responses has no finish reason (docs/wire.md §6.14): tool use is read from the items."""
    output = EXAMPLE_RESPONSE["output"] if calls else EXAMPLE_RESPONSE["output"][:2]
    parsed = api.parse_response(
        {**EXAMPLE_RESPONSE, "status": status, "incomplete_details": details, "output": output}
    )

    assert parsed.stop_reason == reason


def test_missing_usage_counts_are_unknown_not_zero() -> None:
    parsed = api.parse_response({**EXAMPLE_RESPONSE, "usage": {"input_tokens": 5, "output_tokens": 2}})

    assert parsed.usage == Usage(input_tokens=5, output_tokens=2)
    assert api.parse_response({**EXAMPLE_RESPONSE, "usage": None}).usage == Usage()


def test_a_non_object_response_is_an_upstream_error() -> None:
    with pytest.raises(ProxyError) as caught:
        api.parse_response(["nope"])

    assert caught.value.code == "upstream_error"


# -- render_response ------------------------------------------------------------------------------

FOREIGN_RESPONSE = ChatResponse(
    id="msg_1",
    model="claude-x",
    content=[
        Reasoning(text="hmm", signature="anthropic-sig", origin="anthropic"),
        Text(text="Let me "),
        Text(text="check."),
        ToolCall(id="toolu_1", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCall(id="toolu_2", name="get_time", arguments=""),
    ],
    stop_reason="tool_use",
    usage=Usage(
        input_tokens=100, output_tokens=20, cache_read_tokens=80, cache_write_tokens=10, reasoning_tokens=5
    ),
)


def test_rendered_response_is_a_valid_sdk_response_without_unknown_keys() -> None:
    rendered = api.render_response(FOREIGN_RESPONSE, request(tools=[Tool(name="get_weather")]))
    response = Response.model_validate(rendered)

    assert extra_keys(response) == []
    assert (response.id, response.object, response.model, response.status) == (
        "msg_1",
        "response",
        "claude-x",
        "completed",
    )
    assert response.output_text == "Let me check."
    reasoning, message, first, second = rendered["output"]
    assert (
        reasoning["summary"] == [{"type": "summary_text", "text": "hmm"}]
        and "encrypted_content" not in reasoning
    )
    assert message["content"] == [{"type": "output_text", "text": "Let me check.", "annotations": []}]
    assert (first["call_id"], first["name"], first["arguments"]) == (
        "toolu_1",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert (second["call_id"], second["arguments"]) == ("toolu_2", "{}")
    assert [item["id"][:3] for item in rendered["output"]] == ["rs_", "msg", "fc_", "fc_"]
    assert len({item["id"] for item in rendered["output"]}) == 4
    assert rendered["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 10},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 120,
    }
    assert (rendered["incomplete_details"], rendered["error"]) == (None, None)


def test_item_ids_are_stable_for_one_response() -> None:
    first = api.render_response(FOREIGN_RESPONSE, request())
    again = api.render_response(FOREIGN_RESPONSE, request())

    assert [i["id"] for i in first["output"]] == [i["id"] for i in again["output"]]


def test_request_fields_are_echoed() -> None:
    rendered = api.render_response(
        ChatResponse(id="r", model="m", content=[Text(text="x")]),
        request(
            system=[Text(text="be brief")],
            tools=[Tool(name="f")],
            tool_choice=ToolChoice(mode="required"),
            parallel_tool_calls=False,
            temperature=0.3,
            top_p=0.5,
            max_tokens=64,
            metadata={"k": "v"},
        ),
    )
    response = Response.model_validate(rendered)

    assert response.instructions == "be brief"
    assert (response.tool_choice, response.parallel_tool_calls) == ("required", False)
    assert (response.temperature, response.top_p, response.max_output_tokens) == (0.3, 0.5, 64)
    assert response.metadata == {"k": "v"}
    assert [tool.name for tool in response.tools] == ["f"]  # type: ignore[union-attr]


def test_rendered_response_fills_id_model_and_zero_usage() -> None:
    rendered = api.render_response(ChatResponse(id="", model=""), request())
    response = Response.model_validate(rendered)

    assert response.id.startswith("resp_") and len(response.id) > len("resp_")
    assert response.model == "client-model"
    assert response.output == [] and response.output_text == ""
    assert response.status == "completed" and response.tool_choice == "auto" and response.parallel_tool_calls
    assert rendered["usage"]["total_tokens"] == 0
    assert rendered["usage"]["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}


@pytest.mark.parametrize(
    ("reason", "status", "incomplete"),
    [
        ("end_turn", "completed", None),
        ("tool_use", "completed", None),
        ("stop_sequence", "completed", None),
        ("pause_turn", "completed", None),
        (None, "completed", None),
        ("max_tokens", "incomplete", {"reason": "max_output_tokens"}),
        ("context_window", "incomplete", {"reason": "max_output_tokens"}),
        ("refusal", "incomplete", {"reason": "content_filter"}),
        ("error", "failed", None),
    ],
)
def test_stop_reasons_map_to_status(reason: Any, status: str, incomplete: dict[str, str] | None) -> None:
    rendered = api.render_response(
        ChatResponse(id="r", model="m", content=[Text(text="x")], stop_reason=reason), request()
    )

    assert (rendered["status"], rendered["incomplete_details"]) == (status, incomplete)
    assert (rendered["error"] is not None) == (status == "failed")
    Response.model_validate(rendered)


def test_response_survives_parse_render_parse() -> None:
    for body_ in (EXAMPLE_RESPONSE, MIXED_RESPONSE):
        parsed = api.parse_response(body_)

        assert api.parse_response(api.render_response(parsed, request())) == parsed.model_copy(
            update={"usage": Usage(**{k: v or 0 for k, v in parsed.usage.model_dump().items()})}
        )


# -- StreamDecoder --------------------------------------------------------------------------------

ORIGIN = "openai-responses"


def test_text_stream_example_decodes_to_events() -> None:
    assert decode(STREAM_TEXT) == [
        MessageStart(id="resp_1", model="gpt-5.5"),
        TextDelta(text="Hello"),
        UsageUpdate(
            usage=Usage(
                input_tokens=9, output_tokens=1, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
            )
        ),
        Stop(reason="end_turn"),
        End(),
    ]


def test_tool_stream_example_decodes_to_events() -> None:
    assert decode(STREAM_TOOL) == [
        MessageStart(id="resp_2", model="gpt-5.5"),
        ToolCallStart(index=0, id="call_1", name="get_weather"),
        ToolCallDelta(index=0, arguments='{"city":'),
        ToolCallDelta(index=0, arguments='"Paris"}'),
        ToolCallEnd(index=0),
        UsageUpdate(
            usage=Usage(
                input_tokens=50,
                output_tokens=18,
                cache_read_tokens=0,
                cache_write_tokens=0,
                reasoning_tokens=0,
            )
        ),
        Stop(reason="tool_use"),
        End(),
    ]


def test_reasoning_stream_example_decodes_to_events() -> None:
    """The encrypted content arrives with output_item.done, after the summary deltas."""
    assert decode(STREAM_REASONING) == [
        MessageStart(id="resp_3", model="gpt-5.5"),
        ReasoningDelta(text="Comparing units.", origin=ORIGIN),
        ReasoningDelta(signature="gAAAAABpXyZ0", origin=ORIGIN),
        TextDelta(text="18 °C."),
        UsageUpdate(
            usage=Usage(
                input_tokens=9,
                output_tokens=30,
                cache_read_tokens=0,
                cache_write_tokens=0,
                reasoning_tokens=26,
            )
        ),
        Stop(reason="end_turn"),
        End(),
    ]


def test_failed_stream_example_is_a_stream_error() -> None:
    """docs/snags.md #6: an error after HTTP 200."""
    events = decode(STREAM_FAILED)

    assert events[0] == MessageStart(id="resp_4", model="gpt-5.5")
    assert len(events) == 2 and isinstance(events[1], StreamError)
    error = ProxyError.from_dict(events[1].error)
    assert (error.code, error.status, error.retryable) == ("internal", 500, True)
    assert (error.message, error.provider_type) == (
        "The server had an error processing your request.",
        "server_error",
    )


def test_mixed_stream_keys_calls_by_output_index_and_joins_summary_parts() -> None:
    assert decode(STREAM_MIXED) == [
        MessageStart(id="resp_m", model="m-1"),
        ReasoningDelta(text="Weather first,", origin=ORIGIN),
        ReasoningDelta(text="\n\nthen the time.", origin=ORIGIN),
        ReasoningDelta(signature="enc_m", origin=ORIGIN),
        TextDelta(text="It is 18 °C"),
        TextDelta(text=" in Paris."),
        ToolCallStart(index=0, id="call_a", name="get_weather"),
        ToolCallStart(index=1, id="call_b", name="get_time"),
        ToolCallDelta(index=1, arguments="{}"),
        ToolCallDelta(index=0, arguments='{"city":'),
        ToolCallDelta(index=0, arguments='"Paris"}'),
        ToolCallEnd(index=1),
        ToolCallEnd(index=0),
        UsageUpdate(
            usage=Usage(
                input_tokens=30,
                output_tokens=12,
                cache_read_tokens=8,
                cache_write_tokens=0,
                reasoning_tokens=5,
            )
        ),
        Stop(reason="tool_use"),
        End(),
    ]


def test_items_sent_whole_without_deltas_are_not_lost() -> None:
    """Some servers send output_item.done only; the SDK rebuilds from those too."""
    message = MIXED_OUTPUT[1]
    call = MIXED_OUTPUT[2]
    stream = sse(
        response_event("response.created", status="in_progress"),
        {"type": "response.output_item.done", "output_index": 0, "item": MIXED_OUTPUT[0]},
        {"type": "response.output_item.done", "output_index": 1, "item": message},
        {"type": "response.output_item.done", "output_index": 2, "item": call},
        response_event("response.completed", status="completed", output=MIXED_OUTPUT[:3]),
    )

    assert decode(stream)[1:-2] == [
        ReasoningDelta(text="Weather first,\n\nthen the time.", signature="enc_m", origin=ORIGIN),
        TextDelta(text="It is 18 °C in Paris."),
        ToolCallStart(index=0, id="call_a", name="get_weather"),
        ToolCallDelta(index=0, arguments='{"city":"Paris"}'),
        ToolCallEnd(index=0),
    ]
    assert response_from_events(decode(stream)) == api.parse_response(terminal_response(stream))


@pytest.mark.parametrize(
    ("details", "reason"),
    [({"reason": "max_output_tokens"}, "max_tokens"), ({"reason": "content_filter"}, "refusal")],
)
def test_incomplete_streams_stop_for_their_reason(details: dict[str, str], reason: str) -> None:
    stream = STREAM_TEXT.replace(b"response.completed", b"response.incomplete").replace(
        b'"status":"completed","model"',
        b'"status":"incomplete","incomplete_details":%s,"model"' % json.dumps(details).encode(),
    )

    assert decode(stream)[-2:] == [Stop(reason=reason), End()]  # type: ignore[arg-type]


def test_streamed_refusal_is_text_with_stop_reason_refusal() -> None:
    stream = sse(
        response_event("response.created", status="in_progress"),
        item_event("msg_r", 0, "response.refusal.delta", content_index=0, delta="No."),
        item_event("msg_r", 0, "response.refusal.done", content_index=0, refusal="No."),
        response_event("response.completed", status="completed"),
    )

    assert decode(stream)[1:] == [TextDelta(text="No."), Stop(reason="refusal"), End()]


@pytest.mark.parametrize(
    ("payload", "code", "provider_type"),
    [
        (
            {"code": "rate_limit_exceeded", "message": "Slow down", "param": None},
            "rate_limited",
            "rate_limit_exceeded",
        ),
        ({"code": "server_error", "message": "Slow down", "param": None}, "internal", "server_error"),
        (
            {"code": "invalid_image", "message": "Slow down", "param": "input"},
            "invalid_request",
            "invalid_image",
        ),
        ({"code": None, "message": "Slow down", "param": None}, "upstream_error", None),
        ({"error": {"type": "overloaded_error", "message": "Slow down"}}, "overloaded", "overloaded_error"),
    ],
)
def test_error_events_are_stream_errors_with_canonical_codes(
    payload: dict[str, Any], code: str, provider_type: str | None
) -> None:
    """docs/snags.md #6: ``event: error`` after HTTP 200 ends the stream; later events are ignored."""
    stream = sse(
        response_event("response.created", status="in_progress"),
        item_event("msg_1", 0, "response.output_text.delta", content_index=0, delta="Hello", logprobs=[]),
        {"type": "error", **payload},
        item_event("msg_1", 0, "response.output_text.delta", content_index=0, delta="late", logprobs=[]),
    )
    events = decode(stream)

    assert events[:2] == [MessageStart(id="resp_m", model="m-1"), TextDelta(text="Hello")]
    assert len(events) == 3 and isinstance(events[2], StreamError)
    error = ProxyError.from_dict(events[2].error)
    assert (error.code, error.message, error.provider_type) == (code, "Slow down", provider_type)
    assert error.param == payload.get("param")


def test_stream_cut_off_before_its_terminal_event_is_an_error() -> None:
    unfinished = decode(STREAM_TEXT.split(b"event: response.completed")[0])

    assert isinstance(unfinished[-1], StreamError)
    assert unfinished[-1].error["code"] == "upstream_error"
    assert unfinished[-1].error["message"] == "upstream stream ended before it finished"
    assert decode(b"") == [unfinished[-1]]


def test_a_malformed_event_is_a_stream_error() -> None:
    events = decode(b"event: response.created\ndata: {not json\n\n")

    assert len(events) == 1 and isinstance(events[0], StreamError)
    assert events[0].error["code"] == "upstream_error"


def test_nothing_is_decoded_after_the_terminal_event() -> None:
    decoder = api.StreamDecoder()
    decoder.feed(STREAM_TEXT)

    assert decoder.feed(STREAM_TEXT) == [] and decoder.close() == []


def test_decoder_state_is_per_instance() -> None:
    """docs/snags.md #7: two interleaved streams do not share state."""
    first, second = api.StreamDecoder(), api.StreamDecoder()
    half = len(STREAM_MIXED) // 2
    events_first = first.feed(STREAM_MIXED[:half])
    events_second = second.feed(STREAM_TOOL)
    events_first += first.feed(STREAM_MIXED[half:]) + first.close()

    assert events_first == decode(STREAM_MIXED)
    assert events_second + second.close() == decode(STREAM_TOOL)


# -- StreamEncoder --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STREAMS)
def test_encoded_streams_decode_to_the_same_events(name: str) -> None:
    original = decode(STREAMS[name])

    assert decode(encode(original)) == original


@pytest.mark.parametrize("name", STREAMS)
def test_every_encoded_event_is_a_valid_sdk_event_with_stable_identity(name: str) -> None:
    payloads = frames(encode(decode(STREAMS[name])))
    events = [EVENT.validate_python(payload) for payload in payloads]

    assert all(extra_keys(event) == [] for event in events)
    lifecycle = [event.response for event in events if hasattr(event, "response")]
    assert len({(r.id, r.created_at, r.model) for r in lifecycle}) == 1
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1].type in ("response.completed", "response.failed")
    added = [p["output_index"] for p in payloads if p["type"] == "response.output_item.added"]
    done = {p["output_index"]: p["item"]["id"] for p in payloads if p["type"] == "response.output_item.done"}
    assert sorted(added) == sorted(done) and len(set(added)) == len(added)
    assert all(
        done[p["output_index"]] == p["item"]["id"]
        for p in payloads
        if p["type"] == "response.output_item.added"
    )


def test_text_stream_is_the_full_typed_sequence() -> None:
    payloads = frames(encode(decode(STREAM_TEXT)))

    assert [p["type"] for p in payloads] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created, completed = payloads[0]["response"], payloads[-1]["response"]
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    item_id = payloads[2]["item"]["id"]
    assert item_id.startswith("msg_")
    assert payloads[4] == {
        "type": "response.output_text.delta",
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "logprobs": [],
        "delta": "Hello",
        "sequence_number": 4,
    }
    assert completed["status"] == "completed" and completed["output"] == [payloads[7]["item"]]
    assert completed["usage"]["total_tokens"] == 10


def test_reasoning_becomes_a_summary_item_carrying_our_encrypted_content() -> None:
    payloads = frames(encode(decode(STREAM_REASONING)))

    assert [p["type"] for p in payloads[2:9]] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
    ]
    assert payloads[2]["item"] == {"type": "reasoning", "id": payloads[2]["item"]["id"], "summary": []}
    assert payloads[7]["item"]["summary"] == [{"type": "summary_text", "text": "Comparing units."}]
    assert payloads[7]["item"]["encrypted_content"] == "gAAAAABpXyZ0"


def test_foreign_signatures_never_become_encrypted_content() -> None:
    """docs/snags.md #13: another provider's signature would be rejected by OpenAI on the next turn."""
    payloads = frames(
        encode(
            [
                MessageStart(id="m", model="x"),
                ReasoningDelta(text="hmm", origin="anthropic"),
                ReasoningDelta(signature="anthropic-sig", origin="anthropic"),
                ReasoningDelta(text="more", origin="anthropic"),
                ReasoningDelta(signature="sig-only", redacted=True, origin="anthropic"),
                TextDelta(text="Hi"),
                End(),
            ]
        )
    )
    reasoning = [
        p["item"]
        for p in payloads
        if p["type"] == "response.output_item.done" and p["item"]["type"] == "reasoning"
    ]

    assert [(r["summary"][0]["text"], "encrypted_content" in r) for r in reasoning] == [
        ("hmm", False),
        ("more", False),
    ]


def test_a_signature_alone_opens_a_reasoning_item_only_when_it_can_be_replayed() -> None:
    payloads = frames(
        encode(
            [
                MessageStart(id="m", model="x"),
                ReasoningDelta(signature="enc", origin="openai-responses"),
                ReasoningDelta(signature="foreign", origin="gemini"),
                End(),
            ]
        )
    )

    assert [p["type"] for p in payloads[2:]] == [
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    assert payloads[3]["item"] == {
        "type": "reasoning",
        "id": payloads[2]["item"]["id"],
        "summary": [],
        "encrypted_content": "enc",
    }


def test_tool_call_items_follow_the_sdk_shape() -> None:
    payloads = frames(
        encode(
            [
                MessageStart(id="m", model="x"),
                TextDelta(text="Calling."),
                ToolCallStart(index=0, id="toolu_1", name="f"),
                ToolCallDelta(index=0, arguments=""),
                ToolCallDelta(index=0, arguments='{"a":'),
                ToolCallDelta(index=0, arguments="1}"),
                ToolCallEnd(index=0),
                ToolCallStart(index=1, id="toolu_2", name="g"),
                ToolCallEnd(index=1),
                Stop(reason="tool_use"),
                End(),
            ]
        )
    )
    calls = payloads[8:]
    fc_1, fc_2 = calls[0]["item"]["id"], calls[5]["item"]["id"]

    assert payloads[7]["type"] == "response.output_item.done"  # the text item closed first
    assert [{k: v for k, v in p.items() if k != "sequence_number"} for p in calls[:-1]] == [
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {
                "type": "function_call",
                "id": fc_1,
                "call_id": "toolu_1",
                "name": "f",
                "arguments": "",
                "status": "in_progress",
            },
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": fc_1,
            "output_index": 1,
            "delta": '{"a":',
        },
        {"type": "response.function_call_arguments.delta", "item_id": fc_1, "output_index": 1, "delta": "1}"},
        {
            "type": "response.function_call_arguments.done",
            "item_id": fc_1,
            "output_index": 1,
            "arguments": '{"a":1}',
        },
        {
            "type": "response.output_item.done",
            "output_index": 1,
            "item": {
                "type": "function_call",
                "id": fc_1,
                "call_id": "toolu_1",
                "name": "f",
                "arguments": '{"a":1}',
                "status": "completed",
            },
        },
        {
            "type": "response.output_item.added",
            "output_index": 2,
            "item": {
                "type": "function_call",
                "id": fc_2,
                "call_id": "toolu_2",
                "name": "g",
                "arguments": "",
                "status": "in_progress",
            },
        },
        {
            "type": "response.function_call_arguments.done",
            "item_id": fc_2,
            "output_index": 2,
            "arguments": "{}",
        },
        {
            "type": "response.output_item.done",
            "output_index": 2,
            "item": {
                "type": "function_call",
                "id": fc_2,
                "call_id": "toolu_2",
                "name": "g",
                "arguments": "{}",
                "status": "completed",
            },
        },
    ]
    assert calls[-1]["type"] == "response.completed" and calls[-1]["response"]["status"] == "completed"


def test_the_sdk_accumulates_the_encoded_stream_into_the_non_streamed_render() -> None:
    events = decode(STREAM_MIXED)
    client = sdk_client(200, encode(events))

    with client.responses.stream(model="m-1", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()

    expected = api.render_response(response_from_events(events), request(stream=True))
    assert deltas == ["It is 18 °C", " in Paris."]
    assert final.output_text == "It is 18 °C in Paris."
    assert without_parsed(final.to_dict()) == {**expected, "created_at": final.created_at}


def test_the_sdk_iterates_a_raw_encoded_stream() -> None:
    client = sdk_client(200, encode(decode(STREAM_TOOL)))

    events = list(client.responses.create(model="gpt-5.5", input="hi", stream=True))

    assert events[-1].type == "response.completed"
    call = events[-1].response.output[0]
    assert (call.type, call.call_id, call.name, call.arguments) == (  # type: ignore[union-attr]
        "function_call",
        "call_1",
        "get_weather",
        '{"city":"Paris"}',
    )


def test_usage_arriving_after_stop_is_in_the_terminal_event() -> None:
    """docs/snags.md #4: the terminal event waits for End."""
    events: list[Event] = [
        MessageStart(id="m", model="x"),
        TextDelta(text="hi"),
        Stop(reason="end_turn"),
        UsageUpdate(usage=Usage(input_tokens=5)),
        UsageUpdate(usage=Usage(input_tokens=5, output_tokens=2)),
        End(),
    ]
    encoder = api.StreamEncoder(request(stream=True))

    head = encoder.encode(events[:4])
    usage = frames(head + encoder.encode(events[4:]))[-1]["response"]["usage"]

    assert b"response.completed" not in head
    assert (usage["input_tokens"], usage["output_tokens"]) == (5, 2)


@pytest.mark.parametrize(
    ("reason", "kind", "incomplete"),
    [
        ("max_tokens", "response.incomplete", {"reason": "max_output_tokens"}),
        ("refusal", "response.incomplete", {"reason": "content_filter"}),
        ("end_turn", "response.completed", None),
    ],
)
def test_stop_reasons_choose_the_terminal_event(reason: Any, kind: str, incomplete: Any) -> None:
    last = frames(
        encode([MessageStart(id="m", model="x"), TextDelta(text="cut"), Stop(reason=reason), End()])
    )[-1]

    assert last["type"] == kind and last["response"]["incomplete_details"] == incomplete
    assert (
        response_from_events(
            decode(encode([MessageStart(id="m", model="x"), Stop(reason=reason), End()]))
        ).stop_reason
        == reason
    )


def test_orphan_deltas_and_empty_text_produce_no_items() -> None:
    """docs/snags.md #1: no item for nothing, no delta for a call that was never started."""
    stream = encode(
        [
            MessageStart(id="m", model="x"),
            TextDelta(text=""),
            ReasoningDelta(text="", origin="anthropic"),
            ToolCallDelta(index=3, arguments='{"x":1}'),
            ToolCallEnd(index=3),
            End(),
        ]
    )

    assert kinds(stream) == ["response.created", "response.in_progress", "response.completed"]


def test_a_repeated_call_start_adds_no_second_item() -> None:
    stream = encode(
        [
            MessageStart(id="m", model="x"),
            ToolCallStart(index=0, id="c", name="f"),
            ToolCallStart(index=0, id="c", name="f"),
            ToolCallEnd(index=0),
            End(),
        ]
    )

    assert kinds(stream).count("response.output_item.added") == 1


def test_stream_error_closes_open_items_then_fails_the_response() -> None:
    error = ProxyError("overloaded", "Overloaded", status=529, provider_type="overloaded_error")
    stream = encode(
        [
            MessageStart(id="m", model="x"),
            TextDelta(text="par"),
            ToolCallStart(index=0, id="c", name="f"),
            ToolCallDelta(index=0, arguments='{"a"'),
            StreamError(error=error.to_dict()),
            TextDelta(text="ignored"),
            End(),
        ]
    )
    payloads = frames(stream)

    assert [p["type"] for p in payloads[5:8]] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",  # the text, before the call was added
    ]
    assert [p["type"] for p in payloads[-3:]] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.failed",
    ]
    failed = Response.model_validate(payloads[-1]["response"])
    assert failed.status == "failed" and failed.error is not None
    assert (failed.error.code, failed.error.message, failed.error.type) == (
        "server_error",
        "Overloaded",
        "overloaded_error",
    )
    assert len(failed.output) == 2
    # Our own decoder recovers the canonical error.
    decoded = decode(stream)[-1]
    assert isinstance(decoded, StreamError) and decoded.error["code"] == "overloaded"


@pytest.mark.parametrize(
    ("code", "wire"),
    [
        ("rate_limited", "rate_limit_exceeded"),
        ("invalid_request", "invalid_prompt"),
        ("timeout", "server_error"),
    ],
)
def test_failed_responses_use_the_sdk_error_codes_and_keep_the_canonical_one(code: str, wire: str) -> None:
    stream = encode([StreamError(error=ProxyError(code, "nope", param="input").to_dict())])
    failed = frames(stream)[-1]["response"]["error"]

    assert failed == {"code": wire, "message": "nope", "type": code, "param": "input"}
    decoded = decode(stream)[-1]
    assert isinstance(decoded, StreamError)
    assert (decoded.error["code"], decoded.error["param"]) == (code, "input")


def test_the_sdk_stream_helper_sees_the_failure() -> None:
    stream = encode(
        [MessageStart(id="m", model="x"), StreamError(error=ProxyError("internal", "boom").to_dict())]
    )

    with sdk_client(200, stream).responses.stream(model="x", input="hi") as events:
        last = list(events)[-1]
        with pytest.raises(RuntimeError):
            events.get_final_response()
    assert last.type == "response.failed" and last.response.error.message == "boom"  # type: ignore[union-attr]


def test_encoder_emits_nothing_after_the_terminal_event() -> None:
    encoder = api.StreamEncoder(request(stream=True))
    first = encoder.encode([MessageStart(id="m", model="x"), End()])

    assert kinds(first)[-1] == "response.completed"
    assert encoder.encode([TextDelta(text="late"), End()]) == b"" and encoder.close() == b""


def test_close_finishes_a_stream_that_got_no_end() -> None:
    encoder = api.StreamEncoder(request(stream=True))
    started = encoder.encode([MessageStart(id="m", model="x"), TextDelta(text="hi")])
    payloads = frames(started + encoder.close())

    assert [p["type"] for p in payloads[-4:]] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_empty_message_id_gets_a_resp_id_and_the_request_model() -> None:
    payloads = frames(encode([MessageStart(id="", model=""), TextDelta(text="hi"), End()]))
    responses = [p["response"] for p in payloads if "response" in p]

    assert {r["id"] for r in responses} == {responses[0]["id"]} and responses[0]["id"].startswith("resp_")
    assert {r["model"] for r in responses} == {"client-model"}


def test_events_before_message_start_still_begin_with_response_created() -> None:
    assert kinds(encode([TextDelta(text="hi"), End()]))[:3] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(CODES))
def test_rendered_errors_are_sdk_error_objects_that_keep_their_param(code: str) -> None:
    """The round trip of code, status and message is tests/test_contract.py's."""
    status, payload = api.render_error(ProxyError(code, f"{code} happened", param="input"))

    assert extra_keys(ErrorObject.model_validate(json.loads(payload)["error"])) == []
    assert api.parse_error(status, payload).param == "input"


def test_the_envelope_is_chat_completions_and_529_becomes_503() -> None:
    error = ProxyError("overloaded", "busy", status=529, provider_type="overloaded_error")

    assert api.render_error(error) == openai_chat.render_error(error)
    status, payload = api.render_error(error)
    assert status == 503
    assert json.loads(payload) == {
        "error": {"message": "busy", "type": "overloaded_error", "param": None, "code": "overloaded"}
    }


@pytest.mark.parametrize(("status", "exception"), SDK_ERRORS)
def test_the_sdk_reads_rendered_errors(status: int, exception: type[openai.APIStatusError]) -> None:
    error = ProxyError.from_status(status, "nope")
    client = sdk_client(*api.render_error(error), content_type="application/json")

    with pytest.raises(exception) as caught:
        client.responses.create(model="m", input="hi")
    assert caught.value.code == error.code and caught.value.status_code == status


def test_provider_errors_keep_status_message_and_type() -> None:
    payload = {
        "error": {
            "message": "Previous response not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }
    }
    parsed = api.parse_error(404, json.dumps(payload).encode())

    assert (parsed.code, parsed.status, parsed.message) == ("not_found", 404, "Previous response not found.")
    assert (parsed.provider_type, parsed.param) == ("invalid_request_error", "previous_response_id")


def test_non_json_error_bodies_keep_their_text_or_say_the_status() -> None:
    html = api.parse_error(502, b"<html>Bad Gateway</html>")
    empty = api.parse_error(500, b"")

    assert (html.code, html.status, html.message) == ("upstream_error", 502, "<html>Bad Gateway</html>")
    assert (empty.code, empty.message) == ("internal", "upstream returned HTTP 500")


# -- compaction (Codex's compaction_trigger and compaction items) ----------------------------------


def said(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


CODEX_COMPACTION = {  # as Codex 0.171 sends it when its context fills up (docs/wire.md §2.7)
    "model": "gpt-5.1-codex",
    "stream": True,
    "instructions": "You are Codex.",
    "input": [
        said("run echo hi"),
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "exec_command",
            "arguments": "{}",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "hi\n"},
        {"type": "compaction_trigger"},
    ],
    "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}],
    "tool_choice": "auto",
    "store": False,
}


def test_a_compaction_trigger_asks_the_target_model_for_a_summary_with_tools_switched_off() -> None:
    parsed = api.parse_request(CODEX_COMPACTION)

    assert api.compacting(parsed)
    assert parsed.messages[-1].content == [Text(text=api.COMPACT_INSTRUCTION)]
    assert [m.role for m in parsed.messages] == ["user", "assistant", "user", "user"]
    assert [t.name for t in parsed.tools] == ["exec_command"], "calls in history keep their declaration"
    assert parsed.tool_choice is not None and parsed.tool_choice.mode == "none"
    assert not api.compacting(api.parse_request({**CODEX_COMPACTION, "input": CODEX_COMPACTION["input"][:3]}))


def test_the_summary_streams_back_as_one_sealed_compaction_item() -> None:
    parsed = api.parse_request(CODEX_COMPACTION)
    encoder = api.StreamEncoder(parsed)
    events: list[Event] = [
        MessageStart(id="msg_1", model="claude"),
        ReasoningDelta(text="thinking", origin="anthropic"),
        TextDelta(text="The user ran "),
        TextDelta(text="echo hi; it printed hi."),
        Stop(reason="end_turn"),
        End(),
    ]
    stream = encoder.encode(events) + encoder.close()

    payloads = frames(stream)
    done = [p["item"] for p in payloads if p["type"] == "response.output_item.done"]
    assert [item["type"] for item in done] == ["compaction"], "exactly one compaction item, nothing else"
    assert api.unseal(done[0]["encrypted_content"]) == "The user ran echo hi; it printed hi."
    assert "response.output_text.delta" not in kinds(stream)
    assert payloads[-1]["type"] == "response.completed"
    assert payloads[-1]["response"]["output"] == done


def test_a_whole_compaction_answer_is_one_compaction_item_the_sdk_reads() -> None:
    parsed = api.parse_request({**CODEX_COMPACTION, "stream": False})
    answer = ChatResponse(id="msg_1", model="m", content=[Text(text="summary")], stop_reason="end_turn")

    rendered = api.render_response(answer, parsed)

    [item] = Response.model_validate(rendered).output
    assert item.type == "compaction" and api.unseal(item.encrypted_content) == "summary"  # type: ignore[union-attr]


def test_the_proxys_compaction_item_reads_back_as_the_summary_and_a_foreign_one_is_removed() -> None:
    ours = {"type": "compaction", "id": "cmp_1", "encrypted_content": api.seal("Ran echo hi — printed hi.")}
    foreign = {"type": "compaction", "id": "cmp_2", "encrypted_content": "gAAAAABo-sealed-by-openai"}
    later = {**CODEX_COMPACTION, "input": [said("run echo hi"), ours, foreign, said("go on")]}

    parsed = api.parse_request(later)

    texts = [p.text for m in parsed.messages for p in m.content if isinstance(p, Text)]
    assert texts == ["run echo hi", api.SUMMARY_NOTE + "Ran echo hi — printed hi.", "go on"]
    assert parsed.warnings == [f"input[2]: {api.FOREIGN_COMPACTION}"]
    assert not api.compacting(parsed)


@pytest.mark.parametrize("content", ["", api.SEAL_PREFIX + "%%%not-base64", api.SEAL_PREFIX + "_w=="])
def test_damaged_or_foreign_seals_are_not_summaries(content: str) -> None:
    assert api.unseal(content) is None


def test_a_web_search_call_in_history_is_left_out_the_answer_after_it_carries_the_findings() -> None:
    searched = {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}}
    said = {"role": "assistant", "content": [{"type": "output_text", "text": "Python 3.14 is out."}]}

    parsed = api.parse_request(body(input=[{"role": "user", "content": "news?"}, searched, said]))

    assert [m.role for m in parsed.messages] == ["user", "assistant"]
    assert parsed.messages[1].content == [Text(text="Python 3.14 is out.")]
