"""The fake providers speak their protocols: each official SDK, pointed straight at its fake, understands it.

If these pass, an end-to-end failure through the proxy is the proxy's fault, not the fake's.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from support.fakes import (
    ANTHROPIC_KEY,
    DEGREES_TEXT,
    GEMINI_KEY,
    GEMINI_SIGNATURE,
    OPENAI_KEY,
    TOOL_ARGS,
    TOOL_NAME,
    Fakes,
    awkward_pieces,
)

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": TOOL_NAME, "description": "Weather", "parameters": WEATHER_SCHEMA},
    }
]
ANTHROPIC_TOOLS: list[Any] = [{"name": TOOL_NAME, "description": "Weather", "input_schema": WEATHER_SCHEMA}]
GEMINI_TOOLS: list[Any] = [
    types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name=TOOL_NAME, description="Weather", parameters_json_schema=WEATHER_SCHEMA
            )
        ]
    )
]
HI: list[Any] = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def raw() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5) as client:
        yield client


# ------------------------------------------------------------------------------------------------
# shared machinery
# ------------------------------------------------------------------------------------------------
def test_awkward_pieces_are_at_most_seven_bytes_and_split_multibyte_characters() -> None:
    data = "data: 18 °C\n\n".encode()
    pieces = awkward_pieces(data)
    assert b"".join(pieces) == data
    assert max(map(len, pieces)) <= 7
    assert any(piece.endswith(b"\xc2") for piece in pieces)  # "°" is b"\xc2\xb0", cut in two


def test_requests_are_recorded_with_lowercased_headers_and_cleared_by_reset(
    fakes: Fakes, raw: httpx.Client
) -> None:
    raw.post(
        fakes.gemini.base_url + "/v1beta/models/m:generateContent?key=" + GEMINI_KEY,
        headers={"X-Custom": "yes"},
        json={"contents": [{"parts": [{"text": "Hi"}]}]},
    )
    [recorded] = fakes.gemini.requests
    assert (recorded.method, recorded.path, recorded.query) == (
        "POST",
        "/v1beta/models/m:generateContent",
        {"key": GEMINI_KEY},
    )
    assert recorded.headers["x-custom"] == "yes"
    assert recorded.body == {"contents": [{"parts": [{"text": "Hi"}]}]}
    fakes.reset()
    assert fakes.gemini.requests == []


def test_unknown_routes_answer_404_in_the_protocol_envelope(fakes: Fakes, raw: httpx.Client) -> None:
    response = raw.get(
        fakes.openai.base_url + "/v1/nothing", headers={"Authorization": f"Bearer {OPENAI_KEY}"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("fake openai: no route")


# ------------------------------------------------------------------------------------------------
# OpenAI Chat Completions
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def oai(fakes: Fakes) -> Iterator[openai.OpenAI]:
    http = openai.DefaultHttpxClient(trust_env=False)
    with openai.OpenAI(
        base_url=fakes.openai.base_url + "/v1", api_key=OPENAI_KEY, max_retries=0, http_client=http
    ) as c:
        yield c


def test_openai_answers_hello_with_fixed_usage(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-x", messages=HI)
    assert completion.choices[0].message.content == "Hello from openai!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    ) == (11, 7, 18)


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_streams_text_in_pieces_with_usage_only_when_asked(
    oai: openai.OpenAI, include_usage: bool
) -> None:
    stream = oai.chat.completions.create(
        model="gpt-x", messages=HI, stream=True, stream_options={"include_usage": include_usage}
    )
    chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == ["Hel", "lo from ", "openai!"]
    usages = [c.usage for c in chunks if c.usage is not None]
    if include_usage:
        assert [(u.prompt_tokens, u.completion_tokens) for u in usages] == [(11, 7)]
        assert chunks[-1].choices == []
    else:
        assert usages == []


def test_openai_degrees_scenario_streams_a_multibyte_character(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model="degrees", messages=HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == DEGREES_TEXT


def test_openai_tool_call_round_trip(oai: openai.OpenAI, fakes: Fakes) -> None:
    first = oai.chat.completions.create(model="gpt-x", messages=HI, tools=OPENAI_TOOLS)
    [call] = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls" and call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == (TOOL_NAME, {"city": "Paris"})
    history: list[Any] = [
        *HI,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"},
    ]
    second = oai.chat.completions.create(model="gpt-x", messages=history, tools=OPENAI_TOOLS)
    assert second.choices[0].message.content == "Tool said: 18 degrees"
    assert fakes.openai.requests[1].body["messages"][-1]["tool_call_id"] == call.id


def test_openai_streams_tool_call_arguments_in_fragments(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model="gpt-x", messages=HI, tools=OPENAI_TOOLS, stream=True)
    chunks = [c for c in stream if c.choices]
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function and deltas[0].function.name == TOOL_NAME
    fragments = [d.function.arguments or "" for d in deltas[1:] if d.function]
    assert len(fragments) > 1 and "".join(fragments) == TOOL_ARGS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_tool_choice_none_answers_text(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="gpt-x", messages=HI, tools=OPENAI_TOOLS, tool_choice="none"
    )
    assert completion.choices[0].message.content == "Hello from openai!"


def test_openai_rejects_a_wrong_key(fakes: Fakes) -> None:
    client = openai.OpenAI(base_url=fakes.openai.base_url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="fake openai: incorrect API key"):
        client.chat.completions.create(model="gpt-x", messages=HI)


CALL = {"id": "call_1", "type": "function", "function": {"name": TOOL_NAME, "arguments": TOOL_ARGS}}
OPENAI_MALFORMED: dict[str, tuple[str, dict[str, Any]]] = {
    "empty messages": ("messages: must be a non-empty array", {"messages": []}),
    "unknown role": ("invalid role 'robot'", {"messages": [{"role": "robot", "content": "Hi"}]}),
    "tool message answering no call": (
        "must be a response to a preceeding message",
        {"messages": [*HI, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
    ),
    "tool call left unanswered": (
        "did not have response messages: call_1",
        {
            "messages": [
                *HI,
                {"role": "assistant", "tool_calls": [CALL]},
                {"role": "user", "content": "And?"},
            ],
            "tools": OPENAI_TOOLS,
        },
    ),
    "arguments as an object": (
        "function.arguments: expected a string",
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "tool_calls": [{**CALL, "function": {"name": TOOL_NAME, "arguments": {"city": "Paris"}}}],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
            ],
            "tools": OPENAI_TOOLS,
        },
    ),
    "tool call id over 40 characters": (
        "string too long",
        {
            "messages": [
                *HI,
                {"role": "assistant", "tool_calls": [{**CALL, "id": "call_" + "x" * 36}]},
                {"role": "tool", "tool_call_id": "call_" + "x" * 36, "content": "x"},
            ],
            "tools": OPENAI_TOOLS,
        },
    ),
    "stream_options without stream": (
        "only allowed when 'stream' is enabled",
        {"messages": HI, "stream_options": {"include_usage": True}},
    ),
    "tool_choice without tools": (
        "only allowed when 'tools' are specified",
        {"messages": HI, "tool_choice": "auto"},
    ),
    "parameters whose root is not an object": (
        "schema must be a JSON Schema of 'type",
        {
            "messages": HI,
            "tools": [
                {"type": "function", "function": {"name": TOOL_NAME, "parameters": {"type": "string"}}}
            ],
        },
    ),
    "an unknown field": (
        "argument supplied: system",
        {"messages": HI, "extra_body": {"system": "Be terse."}},
    ),
    "an image_url given as a string": (
        "image_url: expected",
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": "https://x.test/a.png"}]}
            ]
        },
    ),
}


@pytest.mark.parametrize(("fragment", "kwargs"), OPENAI_MALFORMED.values(), ids=OPENAI_MALFORMED.keys())
def test_openai_rejects_malformed_requests(oai: openai.OpenAI, fragment: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError, match=f"fake openai: .*{re.escape(fragment)}"):
        oai.chat.completions.create(model="gpt-x", **kwargs)


OPENAI_FAILURES = {
    "fail-401": (openai.AuthenticationError, "authentication failed"),
    "fail-404": (openai.NotFoundError, "model not found"),
    "fail-429": (openai.RateLimitError, "rate limited"),
    "fail-500": (openai.InternalServerError, "internal error"),
    "fail-503": (openai.InternalServerError, "service unavailable"),
}


@pytest.mark.parametrize("model", OPENAI_FAILURES)
def test_openai_failure_models_raise_the_matching_error(oai: openai.OpenAI, model: str) -> None:
    error, text = OPENAI_FAILURES[model]
    with pytest.raises(error, match=f"fake openai: {text}") as raised:
        oai.chat.completions.create(model=model, messages=HI)
    assert raised.value.status_code == int(model[5:])
    if model == "fail-429":
        assert raised.value.response.headers["retry-after"] == "1"


def test_openai_fail_midstream_sends_an_error_chunk_after_the_first_text(oai: openai.OpenAI) -> None:
    texts: list[str] = []
    with pytest.raises(openai.APIError, match="fake openai: stream failed"):
        for chunk in oai.chat.completions.create(model="fail-midstream", messages=HI, stream=True):
            texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) == "Hel"


def test_openai_drop_midstream_breaks_the_connection_after_the_first_text(oai: openai.OpenAI) -> None:
    texts: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(model="drop-midstream", messages=HI, stream=True):
            texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) == "Hel"


def test_openai_midstream_models_without_stream(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="fail-midstream", messages=HI)
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="drop-midstream", messages=HI)


def test_openai_hang_never_answers(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APITimeoutError):
        oai.chat.completions.create(model="hang", messages=HI, timeout=0.3)


def test_openai_slow_first_byte_delays_the_answer(oai: openai.OpenAI) -> None:
    started = time.monotonic()
    completion = oai.chat.completions.create(model="slow-first-byte-0.3", messages=HI)
    assert time.monotonic() - started >= 0.3
    assert completion.choices[0].message.content == "Hello from openai!"


def test_openai_lists_models(oai: openai.OpenAI) -> None:
    assert [m.id for m in oai.models.list()] == ["gpt-fake-1", "gpt-fake-1-mini"]


# ------------------------------------------------------------------------------------------------
# OpenAI Responses (same fake, POST /v1/responses)
# ------------------------------------------------------------------------------------------------
RESPONSES_TOOLS: list[Any] = [
    {
        "type": "function",
        "name": TOOL_NAME,
        "description": "Weather",
        "parameters": WEATHER_SCHEMA,
        "strict": None,
    }
]
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
CALL_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]
FC = {"type": "function_call", "call_id": "call_1", "name": TOOL_NAME, "arguments": TOOL_ARGS}
FC_OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "18"}
ASK_ITEM = {"role": "user", "content": "Weather?"}


def response_events(raw: httpx.Client, fakes: Fakes, model: str) -> list[tuple[str, dict[str, Any]]]:
    """(event line, parsed data) of each frame of a streamed Response."""
    response = raw.post(
        fakes.openai.base_url + "/v1/responses",
        headers={"Authorization": f"Bearer {OPENAI_KEY}"},
        json={"model": model, "input": "Hi", "stream": True},
    )
    assert response.headers["content-type"] == "text/event-stream"
    frames = [f for f in response.text.split("\n\n") if f]
    return [
        (event.removeprefix("event: "), json.loads(data.removeprefix("data: ")))
        for event, data in (frame.split("\n") for frame in frames)
    ]


def test_openai_responses_answers_hello_with_fixed_usage(oai: openai.OpenAI, fakes: Fakes) -> None:
    response = oai.responses.create(model="gpt-x", input="Hi")
    assert response.output_text == "Hello from openai!"
    assert (response.status, response.model) == ("completed", "gpt-x")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        11,
        7,
        18,
    )
    assert fakes.openai.requests[0].path == "/v1/responses"


def test_openai_responses_streams_the_typed_event_sequence_with_text_in_pieces(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-x", input="Hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in events] == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(TEXT_EVENTS)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["Hel", "lo from ", "openai!"]
    assert final.output_text == "Hello from openai!" and final.status == "completed"
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (11, 7)


def test_openai_responses_stream_frames_name_their_type_and_end_without_done(
    fakes: Fakes, raw: httpx.Client
) -> None:
    events = response_events(raw, fakes, "gpt-x")
    assert all(name == data["type"] for name, data in events)
    assert events[0][1]["response"]["usage"] is None
    assert events[-1][1]["response"]["usage"]["total_tokens"] == 18
    assert {data["response"]["id"] for _, data in events if "response" in data} == {"resp_fake_openai"}


def test_openai_responses_degrees_scenario_streams_a_multibyte_character(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="degrees", input="Hi") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert text == DEGREES_TEXT


def test_openai_responses_function_call_round_trip(oai: openai.OpenAI, fakes: Fakes) -> None:
    first = oai.responses.create(model="gpt-x", input="Weather?", tools=RESPONSES_TOOLS)
    [call] = first.output
    assert call.type == "function_call" and first.status == "completed"
    assert (call.name, json.loads(call.arguments)) == (TOOL_NAME, {"city": "Paris"})
    history: list[Any] = [
        {"role": "user", "content": "Weather?"},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees"},
    ]
    second = oai.responses.create(model="gpt-x", input=history, tools=RESPONSES_TOOLS)
    assert second.output_text == "Tool said: 18 degrees"
    assert fakes.openai.requests[1].body["input"][-1]["call_id"] == call.call_id


def test_openai_responses_reads_typed_items_and_part_list_outputs(oai: openai.OpenAI) -> None:
    history: list[Any] = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be terse."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        FC,
        {**FC_OUTPUT, "output": [{"type": "input_text", "text": "18"}]},
    ]
    response = oai.responses.create(model="gpt-x", input=history, tools=RESPONSES_TOOLS)
    assert response.output_text == "Tool said: 18"


def test_openai_responses_carries_hosted_tools_and_items_without_acting_on_them(oai: openai.OpenAI) -> None:
    history: list[Any] = [
        ASK_ITEM,
        {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Done"},
    ]
    tools: list[Any] = [{"type": "custom", "name": "apply_patch"}, {"type": "web_search"}]
    response = oai.responses.create(model="gpt-x", input=history, tools=tools)
    assert response.output_text == "Hello from openai!"


def test_openai_responses_streams_function_call_arguments_in_fragments(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-x", input="Weather?", tools=RESPONSES_TOOLS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in events] == CALL_EVENTS
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.type == "function_call" and added.item.name == TOOL_NAME
    fragments = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(fragments) > 1 and "".join(fragments) == TOOL_ARGS
    [call] = final.output
    assert call.type == "function_call" and call.arguments == TOOL_ARGS


def test_openai_responses_tool_choice_none_answers_text(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-x", input="Hi", tools=RESPONSES_TOOLS, tool_choice="none")
    assert response.output_text == "Hello from openai!"


def test_openai_responses_rejects_a_wrong_key(fakes: Fakes) -> None:
    client = openai.OpenAI(base_url=fakes.openai.base_url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="fake openai: incorrect API key"):
        client.responses.create(model="gpt-x", input="Hi")


RESPONSES_MALFORMED: dict[str, tuple[str, dict[str, Any]]] = {
    "previous_response_id": (
        "Previous response with id 'resp_1' not found",
        {"input": "Hi", "previous_response_id": "resp_1"},
    ),
    "store: true": ("store: true is not supported", {"input": "Hi", "store": True}),
    "an unknown field": ("Unknown parameter: messages", {"input": "Hi", "extra_body": {"messages": HI}}),
    "empty input": ("input: expected a string or a non-empty array", {"input": []}),
    "an output answering no call": (
        "No tool call found for function call output with call_id call_1",
        {"input": [ASK_ITEM, FC_OUTPUT]},
    ),
    "a call left unanswered": (
        "No tool output found for function call call_1",
        {"input": [ASK_ITEM, FC, {"role": "user", "content": "And?"}], "tools": RESPONSES_TOOLS},
    ),
    "arguments as an object": (
        "arguments: expected a JSON string",
        {"input": [ASK_ITEM, {**FC, "arguments": {"city": "Paris"}}, FC_OUTPUT], "tools": RESPONSES_TOOLS},
    ),
    "a chat-style nested tool": (
        "'tools[0].function' (function tools are flat)",
        {"input": "Hi", "tools": [{**OPENAI_TOOLS[0], "name": TOOL_NAME}]},
    ),
    "input_text in an assistant message": (
        "input[1].content[0].type: invalid value 'input_text'",
        {
            "input": [
                ASK_ITEM,
                {"role": "assistant", "content": [{"type": "input_text", "text": "x"}]},
                ASK_ITEM,
            ]
        },
    ),
    "an image_url given as an object": (
        "image_url': expected a string",
        {
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": {"url": "https://x.test/a.png"}}],
                }
            ]
        },
    ),
    "a json_schema format wrapped as in Chat": (
        "Unknown parameter: 'text.format.json_schema'",
        {"input": "Hi", "text": {"format": {"type": "json_schema", "json_schema": {"name": "a"}}}},
    ),
    "max_output_tokens under 16": ("Invalid 'max_output_tokens'", {"input": "Hi", "max_output_tokens": 5}),
    "an unknown item type": ("input[0].type: invalid value 'telepathy'", {"input": [{"type": "telepathy"}]}),
    "an item reference": (
        "Item with id 'msg_1' not found",
        {"input": [{"type": "item_reference", "id": "msg_1"}, ASK_ITEM]},
    ),
}


@pytest.mark.parametrize(("fragment", "kwargs"), RESPONSES_MALFORMED.values(), ids=RESPONSES_MALFORMED.keys())
def test_openai_responses_rejects_malformed_requests(
    oai: openai.OpenAI, fragment: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(openai.BadRequestError, match=f"fake openai: .*{re.escape(fragment)}"):
        oai.responses.create(model="gpt-x", **kwargs)


@pytest.mark.parametrize("model", OPENAI_FAILURES)
def test_openai_responses_failure_models_raise_the_matching_error(oai: openai.OpenAI, model: str) -> None:
    error, text = OPENAI_FAILURES[model]
    with pytest.raises(error, match=f"fake openai: {text}") as raised:
        oai.responses.create(model=model, input="Hi")
    assert raised.value.status_code == int(model[5:])
    if model == "fail-429":
        assert raised.value.response.headers["retry-after"] == "1"


def test_openai_responses_fail_midstream_sends_an_error_event_after_the_first_text(
    oai: openai.OpenAI,
) -> None:
    with oai.responses.stream(model="fail-midstream", input="Hi") as stream:
        events = list(stream)
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hel"
    error = events[-1]
    assert error.type == "error" and error.message == "fake openai: stream failed"
    assert (error.code, error.sequence_number) == ("server_error", len(events) - 1)
    assert "response.completed" not in [e.type for e in events]


def test_openai_responses_fail_first_event_is_an_error_numbered_zero(fakes: Fakes, raw: httpx.Client) -> None:
    [(name, data)] = response_events(raw, fakes, "fail-first-event")
    assert (name, data["type"], data["sequence_number"]) == ("error", "error", 0)


def test_openai_responses_drop_midstream_breaks_the_connection_after_the_first_text(
    oai: openai.OpenAI,
) -> None:
    texts: list[str] = []
    with (
        pytest.raises(openai.APIConnectionError),
        oai.responses.stream(model="drop-midstream", input="Hi") as stream,
    ):
        texts.extend(e.delta for e in stream if e.type == "response.output_text.delta")
    assert texts == ["Hel"]


def test_openai_responses_midstream_models_without_stream(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        oai.responses.create(model="fail-midstream", input="Hi")
    with pytest.raises(openai.APIConnectionError):
        oai.responses.create(model="drop-midstream", input="Hi")


def test_openai_responses_hang_never_answers(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APITimeoutError):
        oai.responses.create(model="hang", input="Hi", timeout=0.3)


# ------------------------------------------------------------------------------------------------
# Anthropic Messages
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def claude(fakes: Fakes) -> Iterator[anthropic.Anthropic]:
    http = anthropic.DefaultHttpxClient(trust_env=False)
    with anthropic.Anthropic(
        base_url=fakes.anthropic.base_url, api_key=ANTHROPIC_KEY, max_retries=0, http_client=http
    ) as c:
        yield c


def test_anthropic_answers_hello_with_fixed_usage(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="claude-x", max_tokens=100, messages=HI)
    [block] = message.content
    assert isinstance(block, anthropic.types.TextBlock) and block.text == "Hello from anthropic!"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (13, 5)


def test_anthropic_streams_text_in_pieces_with_split_usage(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="claude-x", max_tokens=100, messages=HI) as stream:
        events = list(stream)
        final = stream.get_final_message()
    texts = [e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"]
    assert texts == ["Hel", "lo from ", "anthropic!"]
    start = next(e for e in events if e.type == "message_start")
    assert start.message.usage.input_tokens == 13
    assert (final.usage.input_tokens, final.usage.output_tokens) == (13, 5)


def test_anthropic_stream_carries_a_ping_and_event_lines(fakes: Fakes, raw: httpx.Client) -> None:
    response = raw.post(
        fakes.anthropic.base_url + "/v1/messages",
        headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
        json={"model": "claude-x", "max_tokens": 10, "messages": HI, "stream": True},
    )
    events = [
        line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")
    ]
    assert events[:3] == ["message_start", "content_block_start", "ping"]
    assert events[-2:] == ["message_delta", "message_stop"]
    assert response.headers["content-type"] == "text/event-stream"


def test_anthropic_degrees_scenario_streams_a_multibyte_character(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="degrees", max_tokens=100, messages=HI) as stream:
        assert "".join(stream.text_stream) == DEGREES_TEXT


def test_anthropic_tool_call_round_trip(claude: anthropic.Anthropic, fakes: Fakes) -> None:
    first = claude.messages.create(model="claude-x", max_tokens=100, messages=HI, tools=ANTHROPIC_TOOLS)
    [use] = first.content
    assert first.stop_reason == "tool_use" and isinstance(use, anthropic.types.ToolUseBlock)
    assert (use.name, use.input) == (TOOL_NAME, {"city": "Paris"})
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "18 degrees"}
    history = [
        *HI,
        {"role": "assistant", "content": [use.model_dump()]},
        {"role": "user", "content": [result]},
    ]
    second = claude.messages.create(model="claude-x", max_tokens=100, messages=history, tools=ANTHROPIC_TOOLS)
    [text] = second.content
    assert isinstance(text, anthropic.types.TextBlock) and text.text == "Tool said: 18 degrees"
    assert fakes.anthropic.requests[1].body["messages"][-1]["content"][0]["type"] == "tool_result"


def test_anthropic_streams_tool_input_in_fragments(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="claude-x", max_tokens=100, messages=HI, tools=ANTHROPIC_TOOLS
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    fragments = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(fragments) > 1 and json.loads("".join(fragments)) == {"city": "Paris"}
    [use] = final.content
    assert final.stop_reason == "tool_use"
    assert isinstance(use, anthropic.types.ToolUseBlock) and use.input == {"city": "Paris"}


def test_anthropic_counts_tokens(claude: anthropic.Anthropic) -> None:
    assert claude.messages.count_tokens(model="claude-x", messages=HI).input_tokens == 13


def test_anthropic_accepts_x_api_key_and_requires_a_version(fakes: Fakes, raw: httpx.Client) -> None:
    body = {"model": "claude-x", "max_tokens": 10, "messages": HI}
    url = fakes.anthropic.base_url + "/v1/messages"
    ok = raw.post(url, headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}, json=body)
    assert ok.status_code == 200
    missing = raw.post(url, headers={"x-api-key": ANTHROPIC_KEY}, json=body)
    assert missing.status_code == 400
    assert missing.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_requires_max_tokens(fakes: Fakes, raw: httpx.Client) -> None:
    response = raw.post(
        fakes.anthropic.base_url + "/v1/messages",
        headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
        json={"model": "claude-x", "messages": HI},
    )
    assert response.status_code == 400 and "max_tokens" in response.json()["error"]["message"]


def test_anthropic_rejects_a_wrong_key(fakes: Fakes) -> None:
    client = anthropic.Anthropic(base_url=fakes.anthropic.base_url, api_key="sk-ant-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError, match="fake anthropic: invalid x-api-key"):
        client.messages.create(model="claude-x", max_tokens=10, messages=HI)


USE = {"type": "tool_use", "id": "toolu_1", "name": TOOL_NAME, "input": {"city": "Paris"}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 degrees"}
ANTHROPIC_MALFORMED: dict[str, tuple[str, dict[str, Any]]] = {
    "a system role in messages": (
        "Input should be 'user' or 'assistant'",
        {"messages": [{"role": "system", "content": "Be terse."}, *HI]},
    ),
    "an empty text block": (
        "must contain non-whitespace text",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
    ),
    "empty content": (
        "must have non-empty content",
        {"messages": [{"role": "user", "content": []}, {"role": "assistant", "content": "x"}, *HI]},
    ),
    "text before the tool result": (
        "tool_result blocks must come first",
        {
            "messages": [
                *HI,
                {"role": "assistant", "content": [USE]},
                {"role": "user", "content": [{"type": "text", "text": "see:"}, RESULT]},
            ],
            "tools": ANTHROPIC_TOOLS,
        },
    ),
    "a tool use left unanswered": (
        "ids were found without `tool_result` blocks",
        {
            "messages": [*HI, {"role": "assistant", "content": [USE]}, {"role": "user", "content": "And?"}],
            "tools": ANTHROPIC_TOOLS,
        },
    ),
    "a tool result for another id": (
        "unexpected `tool_use_id`",
        {
            "messages": [
                *HI,
                {"role": "assistant", "content": [USE]},
                {"role": "user", "content": [{**RESULT, "tool_use_id": "toolu_2"}]},
            ],
            "tools": ANTHROPIC_TOOLS,
        },
    ),
    "tool blocks without tools": (
        "must define tools",
        {"messages": [*HI, {"role": "assistant", "content": [USE]}, {"role": "user", "content": [RESULT]}]},
    ),
    "a tool id with forbidden characters": (
        "String should match pattern",
        {
            "messages": [
                *HI,
                {"role": "assistant", "content": [{**USE, "id": "functions.Read:0"}]},
                {"role": "user", "content": [{**RESULT, "tool_use_id": "functions.Read:0"}]},
            ],
            "tools": ANTHROPIC_TOOLS,
        },
    ),
    "an input_schema whose root is not an object": (
        "Input should be 'object'",
        {
            "messages": HI,
            "tools": [{"name": TOOL_NAME, "input_schema": {"type": "string"}}],
        },
    ),
    "temperature under 2026-10-21": (
        "temperature: Extra inputs",
        {"messages": HI, "extra_body": {"temperature": 0.5}},
    ),
    "an unknown field": ("n: Extra inputs are not permitted", {"messages": HI, "extra_body": {"n": 1}}),
    "an image with a data: URL prefix": (
        "invalid base64 data",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": "data:image/png;base64,iVBO",
                            },
                        }
                    ],
                }
            ]
        },
    ),
}


@pytest.mark.parametrize(("fragment", "kwargs"), ANTHROPIC_MALFORMED.values(), ids=ANTHROPIC_MALFORMED.keys())
def test_anthropic_rejects_malformed_requests(
    claude: anthropic.Anthropic, fragment: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=f"fake anthropic: .*{re.escape(fragment)}"):
        claude.messages.create(model="claude-x", max_tokens=100, **kwargs)


ANTHROPIC_FAILURES = {
    "fail-401": (anthropic.AuthenticationError, "authentication failed"),
    "fail-404": (anthropic.NotFoundError, "model not found"),
    "fail-429": (anthropic.RateLimitError, "rate limited"),
    "fail-500": (anthropic.InternalServerError, "internal error"),
    "fail-503": (anthropic.InternalServerError, "service unavailable"),
    "fail-529": (anthropic.OverloadedError, "overloaded"),
}


@pytest.mark.parametrize("model", ANTHROPIC_FAILURES)
def test_anthropic_failure_models_raise_the_matching_error(claude: anthropic.Anthropic, model: str) -> None:
    error, text = ANTHROPIC_FAILURES[model]
    with pytest.raises(error, match=f"fake anthropic: {text}") as raised:
        claude.messages.create(model=model, max_tokens=10, messages=HI)
    assert raised.value.status_code == int(model[5:])
    if model == "fail-429":
        assert raised.value.response.headers["retry-after"] == "1"


def test_anthropic_fail_midstream_sends_an_error_event_after_the_first_text(
    claude: anthropic.Anthropic,
) -> None:
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError, match="fake anthropic: stream failed"),
        claude.messages.stream(model="fail-midstream", max_tokens=10, messages=HI) as stream,
    ):
        texts.extend(stream.text_stream)
    assert texts == ["Hel"]


def test_anthropic_drop_midstream_breaks_the_connection_after_the_first_text(
    claude: anthropic.Anthropic,
) -> None:
    texts: list[str] = []
    # anthropic 2.17 began to wrap a broken stream in its own connection error, as openai does.
    with (
        pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)),
        claude.messages.stream(model="drop-midstream", max_tokens=10, messages=HI) as stream,
    ):
        texts.extend(stream.text_stream)
    assert texts == ["Hel"]


def test_anthropic_hang_never_answers(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APITimeoutError):
        claude.messages.create(model="hang", max_tokens=10, messages=HI, timeout=0.3)


def test_anthropic_lists_models(claude: anthropic.Anthropic) -> None:
    assert [m.id for m in claude.models.list()] == ["claude-fake-1", "claude-fake-1-haiku"]


# ------------------------------------------------------------------------------------------------
# Gemini
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gemini(fakes: Fakes) -> Iterator[genai.Client]:
    options = types.HttpOptions(base_url=fakes.gemini.base_url, client_args={"trust_env": False})
    with genai.Client(api_key=GEMINI_KEY, http_options=options) as client:
        yield client


def test_gemini_answers_hello_with_fixed_usage(gemini: genai.Client) -> None:
    response = gemini.models.generate_content(model="gemini-x", contents="Hi")
    assert response.text == "Hello from gemini!"
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage and (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (
        17,
        3,
        20,
    )


def test_gemini_streams_text_in_pieces_with_running_usage(gemini: genai.Client, fakes: Fakes) -> None:
    chunks = list(gemini.models.generate_content_stream(model="gemini-x", contents="Hi"))
    assert [c.text for c in chunks] == ["Hel", "lo from ", "gemini!"]
    assert [c.usage_metadata.total_token_count for c in chunks if c.usage_metadata] == [17, 17, 20]
    assert fakes.gemini.requests[0].query["alt"] == "sse"


def test_gemini_streams_a_json_array_without_alt_sse(fakes: Fakes, raw: httpx.Client) -> None:
    response = raw.post(
        fakes.gemini.base_url + "/v1beta/models/gemini-x:streamGenerateContent",
        headers={"x-goog-api-key": GEMINI_KEY},
        json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
    )
    chunks = response.json()
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == "Hello from gemini!"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_gemini_degrees_scenario_streams_a_multibyte_character(gemini: genai.Client) -> None:
    chunks = gemini.models.generate_content_stream(model="degrees", contents="Hi")
    assert "".join(c.text or "" for c in chunks) == DEGREES_TEXT


@pytest.mark.parametrize(
    ("response", "said"),
    [({"output": "18 degrees"}, "Tool said: 18 degrees"), ({"temp_c": 18}, 'Tool said: {"temp_c":18}')],
)
def test_gemini_function_call_round_trip(
    gemini: genai.Client, fakes: Fakes, response: dict[str, Any], said: str
) -> None:
    config = types.GenerateContentConfig(tools=GEMINI_TOOLS)
    first = gemini.models.generate_content(model="gemini-x", contents="Weather?", config=config)
    [call] = first.function_calls or []
    assert (call.name, call.args) == (TOOL_NAME, {"city": "Paris"})
    assert first.candidates and first.candidates[0].content
    history = [
        types.Content(role="user", parts=[types.Part(text="Weather?")]),
        first.candidates[0].content,
        types.Content(
            role="user", parts=[types.Part.from_function_response(name=TOOL_NAME, response=response)]
        ),
    ]
    second = gemini.models.generate_content(model="gemini-x", contents=history, config=config)
    assert second.text == said
    assert "functionResponse" in fakes.gemini.requests[1].body["contents"][-1]["parts"][0]


def test_gemini_streams_a_whole_function_call(gemini: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=GEMINI_TOOLS)
    chunks = list(gemini.models.generate_content_stream(model="gemini-x", contents="Weather?", config=config))
    assert [(c.name, c.args) for chunk in chunks for c in chunk.function_calls or []] == [
        (TOOL_NAME, {"city": "Paris"})
    ]


def test_gemini_3_demands_its_thought_signature_back(gemini: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=GEMINI_TOOLS)
    first = gemini.models.generate_content(model="gemini-3-fake", contents="Weather?", config=config)
    assert first.candidates and first.candidates[0].content and first.candidates[0].content.parts
    assert first.candidates[0].content.parts[0].thought_signature == GEMINI_SIGNATURE
    answer = types.Content(
        role="user", parts=[types.Part.from_function_response(name=TOOL_NAME, response={"output": "x"})]
    )
    question = types.Content(role="user", parts=[types.Part(text="Weather?")])
    echoed = gemini.models.generate_content(
        model="gemini-3-fake", contents=[question, first.candidates[0].content, answer], config=config
    )
    assert echoed.text == "Tool said: x"
    [call] = first.function_calls or []
    stripped = types.Content(role="model", parts=[types.Part(function_call=call)])
    with pytest.raises(genai_errors.ClientError, match="thought_signature"):
        gemini.models.generate_content(
            model="gemini-3-fake", contents=[question, stripped, answer], config=config
        )


def test_gemini_accepts_the_key_as_a_query_parameter(fakes: Fakes, raw: httpx.Client) -> None:
    response = raw.post(
        fakes.gemini.base_url + f"/v1beta/models/gemini-x:generateContent?key={GEMINI_KEY}",
        json={"contents": [{"parts": [{"text": "Hi"}]}]},
    )
    assert response.json()["candidates"][0]["content"]["parts"] == [{"text": "Hello from gemini!"}]


def test_gemini_rejects_a_wrong_key_as_invalid_argument(fakes: Fakes) -> None:
    options = types.HttpOptions(base_url=fakes.gemini.base_url, client_args={"trust_env": False})
    with (
        genai.Client(api_key="AIza-wrong", http_options=options) as client,
        pytest.raises(genai_errors.ClientError, match="API key not valid") as raised,
    ):
        client.models.generate_content(model="gemini-x", contents="Hi")
    assert (raised.value.code, raised.value.status) == (400, "INVALID_ARGUMENT")
    assert raised.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_gemini_rejects_a_missing_key_as_permission_denied(fakes: Fakes, raw: httpx.Client) -> None:
    response = raw.post(
        fakes.gemini.base_url + "/v1beta/models/gemini-x:generateContent", json={"contents": []}
    )
    assert response.status_code == 403 and response.json()["error"]["status"] == "PERMISSION_DENIED"


def declaration(**schema: Any) -> list[Any]:
    return [types.Tool(function_declarations=[types.FunctionDeclaration(name=TOOL_NAME, **schema)])]


CALL_PART = types.Part.from_function_call(name=TOOL_NAME, args={"city": "Paris"})
CALL_TURN = types.Content(role="model", parts=[CALL_PART])
ASK = types.Content(role="user", parts=[types.Part(text="Weather?")])
GEMINI_MALFORMED: dict[str, tuple[str, dict[str, Any]]] = {
    "an assistant role": (
        "Please use a valid role",
        {"contents": [ASK, types.Content(role="assistant", parts=[types.Part(text="x")]), ASK]},
    ),
    "empty parts": ("must contain at least one part", {"contents": [types.Content(role="user", parts=[])]}),
    "an empty text part": (
        "empty text parameter",
        {"contents": [types.Content(role="user", parts=[types.Part(text="")])]},
    ),
    "fewer responses than calls": (
        "number of function response parts is equal",
        {
            "contents": [
                ASK,
                types.Content(role="model", parts=[CALL_PART, CALL_PART]),
                types.Content(
                    role="user",
                    parts=[types.Part.from_function_response(name=TOOL_NAME, response={"output": "x"})],
                ),
            ],
            "config": types.GenerateContentConfig(tools=GEMINI_TOOLS),
        },
    ),
    "text instead of the function response": (
        "number of function response parts is equal",
        {"contents": [ASK, CALL_TURN, ASK], "config": types.GenerateContentConfig(tools=GEMINI_TOOLS)},
    ),
    "a function response under another name": (
        "do not match the calls",
        {
            "contents": [
                ASK,
                CALL_TURN,
                types.Content(
                    role="user",
                    parts=[types.Part.from_function_response(name="get_time", response={"output": "x"})],
                ),
            ],
            "config": types.GenerateContentConfig(tools=GEMINI_TOOLS),
        },
    ),
    "additionalProperties in parameters": (
        'Unknown name "additionalProperties"',
        {
            "contents": [ASK],
            "config": types.GenerateContentConfig(
                tools=declaration(
                    parameters=types.Schema(
                        type=types.Type.OBJECT,
                        properties={"city": types.Schema(type=types.Type.STRING)},
                        additional_properties=False,
                    )
                )
            ),
        },
    ),
    "default in parameters": (
        'Unknown name "default"',
        {
            "contents": [ASK],
            "config": types.GenerateContentConfig(
                tools=declaration(
                    parameters=types.Schema(
                        type=types.Type.OBJECT,
                        properties={"city": types.Schema(type=types.Type.STRING, default="Paris")},
                    )
                )
            ),
        },
    ),
    "$schema in parametersJsonSchema": (
        'Unknown name "$schema"',
        {
            "contents": [ASK],
            "config": types.GenerateContentConfig(
                tools=declaration(
                    parameters_json_schema={
                        **WEATHER_SCHEMA,
                        "$schema": "https://json-schema.org/draft/2020-12/schema",
                    }
                )
            ),
        },
    ),
    "const in parametersJsonSchema": (
        'Unknown name "const"',
        {
            "contents": [ASK],
            "config": types.GenerateContentConfig(
                tools=declaration(
                    parameters_json_schema={"type": "object", "properties": {"unit": {"const": "C"}}}
                )
            ),
        },
    ),
}


@pytest.mark.parametrize(("fragment", "kwargs"), GEMINI_MALFORMED.values(), ids=GEMINI_MALFORMED.keys())
def test_gemini_rejects_malformed_requests(
    gemini: genai.Client, fragment: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(genai_errors.ClientError, match=f"fake gemini: .*{re.escape(fragment)}") as raised:
        gemini.models.generate_content(model="gemini-x", **kwargs)
    assert raised.value.code == 400


def test_gemini_rejects_unknown_part_fields(fakes: Fakes, raw: httpx.Client) -> None:
    response = raw.post(
        fakes.gemini.base_url + "/v1beta/models/gemini-x:generateContent",
        headers={"x-goog-api-key": GEMINI_KEY},
        json={"contents": [{"role": "user", "parts": [{"type": "text", "text": "Hi"}]}]},
    )
    assert response.status_code == 400 and 'Unknown name "type"' in response.json()["error"]["message"]


GEMINI_FAILURES = {
    "fail-401": (genai_errors.ClientError, "UNAUTHENTICATED", "authentication failed"),
    "fail-404": (genai_errors.ClientError, "NOT_FOUND", "model not found"),
    "fail-429": (genai_errors.ClientError, "RESOURCE_EXHAUSTED", "rate limited"),
    "fail-500": (genai_errors.ServerError, "INTERNAL", "internal error"),
    "fail-503": (genai_errors.ServerError, "UNAVAILABLE", "service unavailable"),
}


@pytest.mark.parametrize("model", GEMINI_FAILURES)
def test_gemini_failure_models_raise_the_matching_error(gemini: genai.Client, model: str) -> None:
    error, status, text = GEMINI_FAILURES[model]
    with pytest.raises(error, match=f"fake gemini: {text}") as raised:
        gemini.models.generate_content(model=model, contents="Hi")
    assert (raised.value.code, raised.value.status) == (int(model[5:]), status)
    if model == "fail-429":
        assert raised.value.response is not None and raised.value.response.headers["retry-after"] == "1"


def test_gemini_fail_midstream_sends_an_error_chunk_after_the_first_text(gemini: genai.Client) -> None:
    texts: list[str] = []
    with pytest.raises(genai_errors.ServerError, match="fake gemini: stream failed"):
        for chunk in gemini.models.generate_content_stream(model="fail-midstream", contents="Hi"):
            texts.append(chunk.text or "")
    assert texts == ["Hel"]


def test_gemini_fail_midstream_ends_the_json_array_with_the_error(fakes: Fakes, raw: httpx.Client) -> None:
    response = raw.post(
        fakes.gemini.base_url + "/v1beta/models/fail-midstream:streamGenerateContent",
        headers={"x-goog-api-key": GEMINI_KEY},
        json={"contents": [{"parts": [{"text": "Hi"}]}]},
    )
    assert response.json()[-1]["error"]["message"] == "fake gemini: stream failed"


def test_gemini_drop_midstream_breaks_the_connection_after_the_first_text(gemini: genai.Client) -> None:
    texts: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):
        for chunk in gemini.models.generate_content_stream(model="drop-midstream", contents="Hi"):
            texts.append(chunk.text or "")
    assert texts == ["Hel"]


def test_gemini_lists_models(gemini: genai.Client) -> None:
    assert [m.name for m in gemini.models.list()] == ["models/gemini-fake-1", "models/gemini-3-fake"]
