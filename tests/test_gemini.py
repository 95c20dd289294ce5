"""The Gemini protocol module: requests, responses, streams and errors (docs/wire.md §4).

The promises every protocol shares are tests/test_contract.py's; here is what only Gemini does.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from support.examples import GEMINI, GEMINI_RPC_STATUSES
from support.examples import GEMINI_SDK_REQUEST as SDK_REQUEST
from support.examples import GEMINI_SIG as SIG
from support.examples import GEMINI_STREAM_TEXT as STREAM_TEXT
from support.examples import GEMINI_STREAM_THOUGHTS as STREAM_THOUGHTS
from support.examples import GEMINI_STREAM_TOOL as STREAM_TOOL
from support.examples import GEMINI_WHOLE_ADJACENT as WHOLE_ADJACENT

from translators import gemini
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
from translators.errors import CODES, ProxyError
from translators.toolnames import MAPPED, WEB_SEARCH, web_search

ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")

# -- fixtures copied from docs/wire.md §4 ----------------------------------------------------

REQUEST_EXAMPLE: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "You are terse."}]},
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "Describe the images, then get the weather in Paris."},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgoAAAANSUhEUgAA"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG}
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": {"temp_c": 18}}}}],
        },
    ],
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parametersJsonSchema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ]
        }
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    "generationConfig": {
        "temperature": 0.2,
        "topP": 0.95,
        "maxOutputTokens": 4096,
        "stopSequences": ["\n\nUser:"],
        "responseMimeType": "text/plain",
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
    },
}


RESPONSE_EXAMPLE: dict[str, Any] = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "**Planning** I should call the weather tool.", "thought": True},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": SIG,
                    },
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 120,
        "cachedContentTokenCount": 64,
        "candidatesTokenCount": 18,
        "thoughtsTokenCount": 40,
        "totalTokenCount": 178,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}],
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "x1AbCdEfGh",
}


STREAM_PAIRS = list(GEMINI.answers.values())


def parse(body: Any, model: str | None = "gemini-2.5-flash", stream: bool | None = False) -> ChatRequest:
    return gemini.parse_request(body, model=model, stream=stream)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def invalid(body: Any, match: str, **kwargs: Any) -> ProxyError:
    with pytest.raises(ProxyError, match=match) as caught:
        parse(body, **kwargs)
    assert caught.value.code == "invalid_request" and caught.value.status == 400
    return caught.value


def decode(stream: bytes) -> list[Event]:
    decoder = gemini.StreamDecoder()
    return decoder.feed(stream) + decoder.close()


def b64bytes(text: str) -> bytes:
    return base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))


# -- parse_request --------------------------------------------------------------------------------


class TestParseRequest:
    def test_documented_example_field_by_field(self) -> None:
        request = parse(REQUEST_EXAMPLE)
        assert request.model == "gemini-2.5-flash" and request.stream is False
        assert request.system == [Text(text="You are terse.")]
        first, model_turn, results = request.messages
        assert first == Message(
            role="user",
            content=[
                Text(text="Describe the images, then get the weather in Paris."),
                Image(media_type="image/png", data="iVBORw0KGgoAAAANSUhEUgAA"),
                Image(media_type="image/jpeg", url="https://example.com/cat.jpg"),
            ],
        )
        assert model_turn == Message(
            role="assistant",
            content=[
                ToolCall(
                    id="call_1_0", name="get_weather", arguments='{"city":"Paris"}', thought_signature=SIG
                )
            ],
        )
        assert results == Message(
            role="user",
            content=[
                ToolResult(tool_call_id="call_1_0", name="get_weather", content=[Text(text='{"temp_c":18}')])
            ],
        )
        assert request.tools == [
            Tool(
                name="get_weather",
                description="Current weather",
                parameters={
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            )
        ]
        assert request.tool_choice == ToolChoice(mode="auto")
        assert (request.temperature, request.top_p, request.max_tokens) == (0.2, 0.95, 4096)
        assert request.stop == ["\n\nUser:"]
        assert request.response_format is None
        assert request.reasoning == ReasoningConfig(budget_tokens=2048, include_thoughts=True)

    def test_model_comes_from_the_url_and_the_models_prefix_is_dropped(self) -> None:
        request = parse({"contents": [user("hi")]}, model="models/gemini-2.5-pro", stream=True)
        assert request.model == "gemini-2.5-pro"
        assert parse({"contents": [user("hi")]}, stream=True).stream is True

    @pytest.mark.parametrize("model", [None, ""])
    def test_a_missing_model_is_an_invalid_request(self, model: str | None) -> None:
        invalid({"contents": [user("hi")]}, "^model: missing$", model=model)

    def test_what_the_official_sdk_sends_is_accepted_in_both_spellings(self) -> None:
        """docs/snags.md #25: snake_case nested keys, URL-safe base64, OpenAPI-subset schemas."""
        request = parse(SDK_REQUEST)
        _, image, file = request.messages[0].content
        assert image == Image(media_type="image/png", data="iVBOR//+")
        assert file == Image(media_type="image/jpeg", url="https://x/y.jpg")
        call = request.messages[1].content[0]
        assert isinstance(call, ToolCall) and call.thought_signature == "__79AQ=="
        assert request.messages[2].content[0] == ToolResult(
            tool_call_id=call.id, name="f", content=[Text(text="sunny")]
        )
        assert request.tools == [
            Tool(
                name="f",
                description="d",
                parameters={
                    "properties": {
                        "city": {"description": "c", "type": "string"},
                        "n": {"type": ["integer", "null"]},
                    },
                    "propertyOrdering": ["city", "n"],
                    "required": ["city"],
                    "type": "object",
                },
            )
        ]
        assert request.tool_choice == ToolChoice(mode="tool", name="f")
        assert request.response_format == ResponseFormat(type="json_schema", json_schema={"type": "object"})
        assert request.reasoning == ReasoningConfig(effort="high", budget_tokens=1024, include_thoughts=True)

    def test_inline_data_becomes_standard_padded_base64(self) -> None:
        body = {"contents": [{"parts": [{"inline_data": {"mime_type": "image/webp", "data": "UklGRg"}}]}]}
        assert parse(body).messages[0].content == [Image(media_type="image/webp", data="UklGRg==")]

    def test_thought_parts_and_signatures_become_reasoning(self) -> None:
        body = {
            "contents": [
                user("q"),
                {
                    "role": "model",
                    "parts": [
                        {"text": "thinking…", "thought": True, "thoughtSignature": "c2ln"},
                        {"text": "answer", "thought_signature": "YWJj"},
                        {"text": "", "thoughtSignature": "ZW5k"},
                    ],
                },
            ]
        }
        assert parse(body).messages[1].content == [
            Reasoning(text="thinking…", signature="c2ln", origin="gemini"),
            Reasoning(signature="YWJj", origin="gemini"),
            Text(text="answer"),
            Reasoning(signature="ZW5k", origin="gemini"),
        ]

    def test_role_defaults_to_user_and_empty_text_contents_are_dropped(self) -> None:
        body = {"contents": [{"parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"text": ""}]}]}
        assert parse(body).messages == [Message(role="user", content=[Text(text="hi")])]

    def test_calls_without_ids_get_deterministic_ids_and_results_match_by_name_in_order(self) -> None:
        body = {
            "contents": [
                user("go"),
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "read", "args": {"p": "a"}}},
                        {"functionCall": {"name": "list", "args": {}}},
                        {"functionCall": {"name": "read", "args": {"p": "b"}}},
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "read", "response": {"output": "A"}}},
                        {"functionResponse": {"name": "read", "response": {"output": "B"}}},
                        {"functionResponse": {"name": "list", "response": {"output": "L"}}},
                    ],
                },
            ]
        }
        request = parse(body)
        assert [c.id for c in request.messages[1].content] == ["call_1_0", "call_1_1", "call_1_2"]
        results = request.messages[2].content
        assert [(r.tool_call_id, r.content[0].text) for r in results] == [
            ("call_1_0", "A"),
            ("call_1_2", "B"),
            ("call_1_1", "L"),
        ]
        assert parse(body) == request  # stable across parses

    def test_results_match_only_the_nearest_preceding_model_turn(self) -> None:
        turn = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}
        result = {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
        request = parse({"contents": [user("x"), turn, result, turn, result]})
        assert request.messages[2].content[0].tool_call_id == "call_1_0"
        assert request.messages[4].content[0].tool_call_id == "call_3_0"

    def test_ids_given_by_the_client_are_used(self) -> None:
        body = {
            "contents": [
                user("go"),
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "f", "args": {}, "id": "gsig_abc_0"}},
                        {"functionCall": {"name": "f", "args": {}, "id": "c2"}},
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "f", "id": "c2", "response": {}}},
                        {"functionResponse": {"name": "f", "response": {}}},
                    ],
                },
            ]
        }
        request = parse(body)
        assert [c.id for c in request.messages[1].content] == ["gsig_abc_0", "c2"]
        assert [r.tool_call_id for r in request.messages[2].content] == ["c2", "gsig_abc_0"]

    @pytest.mark.parametrize(
        ("response", "text", "is_error"),
        [
            ({"output": "sunny"}, "sunny", False),
            ({"output": {"temp_c": 18}}, '{"temp_c":18}', False),
            ({"temp_c": 18, "unit": "C"}, '{"temp_c":18,"unit":"C"}', False),
            ({"output": "partial", "warning": "w"}, '{"output":"partial","warning":"w"}', False),
            ({"error": "city not found"}, "city not found", True),
            ({"error": {"code": 7}}, '{"code":7}', True),
            ({}, "{}", False),
        ],
    )
    def test_function_response_content(self, response: dict, text: str, is_error: bool) -> None:
        body = {
            "contents": [
                {"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
                {"parts": [{"functionResponse": {"name": "f", "response": response}}]},
            ]
        }
        result = parse(body).messages[1].content[0]
        assert isinstance(result, ToolResult)
        assert (result.content, result.is_error) == ([Text(text=text)], is_error)

    def test_images_inside_a_function_response_are_kept(self) -> None:
        body = {
            "contents": [
                {"role": "model", "parts": [{"functionCall": {"name": "shot"}}]},
                {
                    "parts": [
                        {
                            "functionResponse": {
                                "name": "shot",
                                "response": {"output": "ok"},
                                "parts": [{"inlineData": {"mimeType": "image/png", "data": "iVBO"}}],
                            }
                        }
                    ]
                },
            ]
        }
        result = parse(body).messages[1].content[0]
        assert result.content == [Text(text="ok"), Image(media_type="image/png", data="iVBO")]

    @pytest.mark.parametrize(
        ("mode", "names", "choice"),
        [
            ("AUTO", None, ToolChoice(mode="auto")),
            ("ANY", None, ToolChoice(mode="required")),
            ("NONE", None, ToolChoice(mode="none")),
            ("VALIDATED", None, ToolChoice(mode="auto")),
            ("any", ["b"], ToolChoice(mode="tool", name="b")),
        ],
    )
    def test_tool_config_modes(self, mode: str, names: list[str] | None, choice: ToolChoice) -> None:
        config: dict[str, Any] = {"mode": mode}
        if names:
            config["allowed_function_names"] = names
        body = {
            "contents": [user("x")],
            "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}],
            "tool_config": {"function_calling_config": config},
        }
        assert parse(body).tool_choice == choice

    def test_several_allowed_function_names_narrow_the_tools(self) -> None:
        body = {
            "contents": [user("x")],
            "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["a", "c"]}},
        }
        request = parse(body)
        assert request.tool_choice == ToolChoice(mode="required")
        assert [t.name for t in request.tools] == ["a", "c"]

    def test_a_declaration_without_parameters_takes_no_arguments(self) -> None:
        body = {"contents": [user("x")], "tools": [{"functionDeclarations": [{"name": "now"}]}]}
        tool = parse(body).tools[0]
        assert tool.parameters == {"type": "object", "properties": {}}

    @pytest.mark.parametrize(
        ("config", "expected"),
        [
            ({"responseMimeType": "application/json"}, ResponseFormat(type="json_object")),
            (
                {
                    "response_mime_type": "application/json",
                    "response_schema": {"type": "ARRAY", "items": {"type": "STRING"}},
                },
                ResponseFormat(
                    type="json_schema", json_schema={"type": "array", "items": {"type": "string"}}
                ),
            ),
            ({"responseMimeType": "text/plain"}, None),
        ],
    )
    def test_response_formats(self, config: dict, expected: ResponseFormat | None) -> None:
        assert parse({"contents": [user("x")], "generationConfig": config}).response_format == expected

    @pytest.mark.parametrize(
        ("thinking", "expected"),
        [
            ({"thinkingBudget": 0}, ReasoningConfig(enabled=False)),
            ({"thinkingBudget": -1}, ReasoningConfig(effort="medium")),
            ({"thinkingBudget": 512}, ReasoningConfig(budget_tokens=512)),
            (
                {"thinkingLevel": "LOW", "includeThoughts": True},
                ReasoningConfig(effort="low", include_thoughts=True),
            ),
        ],
    )
    def test_thinking_config(self, thinking: dict, expected: ReasoningConfig) -> None:
        body = {"contents": [user("x")], "generationConfig": {"thinkingConfig": thinking}}
        assert parse(body).reasoning == expected

    def test_sampling_fields(self) -> None:
        config = {
            "topK": 40,
            "seed": 7,
            "presencePenalty": 0.5,
            "frequency_penalty": -0.5,
            "candidateCount": 1,
        }
        request = parse({"contents": [user("x")], "generationConfig": config})
        assert (request.top_k, request.seed) == (40, 7)
        assert (request.presence_penalty, request.frequency_penalty) == (0.5, -0.5)

    @pytest.mark.parametrize(
        ("body", "match"),
        [
            (
                {"contents": [{"parts": [{"inlineData": {"mimeType": "audio/wav", "data": "UklG"}}]}]},
                r"^contents\[0\]\.parts\[0\]\.inlineData: "
                r"inline data of type 'audio/wav' cannot be translated",
            ),
            (
                {
                    "contents": [
                        {"parts": [{"fileData": {"mimeType": "application/pdf", "fileUri": "gs://x"}}]}
                    ]
                },
                r"^contents\[0\]\.parts\[0\]\.fileData: "
                r"a file of type 'application/pdf' cannot be translated",
            ),
            (
                {
                    "contents": [
                        {"role": "model", "parts": [{"executableCode": {"code": "1", "language": "PYTHON"}}]}
                    ]
                },
                r"^contents\[0\]\.parts\[0\]\.executableCode: .*cannot be translated",
            ),
            (
                {"contents": [user("x")], "generationConfig": {"candidateCount": 2}},
                r"^generationConfig\.candidateCount: more than one candidate cannot be translated",
            ),
            (
                {"contents": [user("x")], "generationConfig": {"responseModalities": ["IMAGE"]}},
                r"^generationConfig\.responseModalities: ",
            ),
            ({"contents": [user("x")], "cachedContent": "cachedContents/abc"}, r"^cachedContent: "),
            (
                {"contents": [user("x")], "systemInstruction": {"parts": [{"inlineData": {}}]}},
                r"^systemInstruction\.parts\[0\]: ",
            ),
        ],
    )
    def test_content_the_canonical_model_cannot_carry_is_refused(self, body: dict, match: str) -> None:
        invalid(body, match)

    @pytest.mark.parametrize(
        ("body", "match"),
        [
            ([], r"^body: expected a JSON object$"),
            ({}, r"^contents: expected a list"),
            (
                {"contents": [{"role": "user", "parts": []}]},
                r"^contents\[0\]\.parts: expected a non-empty list$",
            ),
            (
                {"contents": [{"role": "system", "parts": [{"text": "x"}]}]},
                r"^contents\[0\]\.role: unknown role 'system'",
            ),
            ({"contents": [user("x"), {"parts": ["x"]}]}, r"^contents\[1\]\.parts\[0\]: expected an object$"),
            ({"contents": [{"parts": [{"videoMetadata": {}}]}]}, r"^contents\[0\]\.parts\[0\]: no text"),
            (
                {"contents": [{"parts": [{"functionCall": {"name": "f"}}]}]},
                r"^contents\[0\]\.parts\[0\]\.functionCall: only allowed in a model turn$",
            ),
            (
                {"contents": [{"role": "model", "parts": [{"functionCall": {"name": ""}}]}]},
                r"^contents\[0\]\.parts\[0\]\.functionCall\.name: expected a non-empty string$",
            ),
            (
                {"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": "{}"}}]}]},
                r"^contents\[0\]\.parts\[0\]\.functionCall\.args: expected an object$",
            ),
            (
                {"contents": [{"parts": [{"text": "x", "thoughtSignature": 5}]}]},
                r"^contents\[0\]\.parts\[0\]\.thoughtSignature: ",
            ),
            (
                {"contents": [user("x")], "generationConfig": {"temperature": "hot"}},
                r"^generationConfig\.temperature: ",
            ),
            (
                {"contents": [user("x")], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
                r"^toolConfig\.functionCallingConfig\.mode: unknown mode 'SOMETIMES'",
            ),
        ],
    )
    def test_wrong_shapes_name_the_key_path(self, body: Any, match: str) -> None:
        invalid(body, match)

    @pytest.mark.parametrize(
        "body",
        [
            {"contents": [{"role": {"a": 1}, "parts": [{"text": "x"}]}]},
            {"contents": [user("x")], "tools": [{"functionDeclarations": {"name": "f"}}]},
            {
                "contents": [
                    {"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
                    {"parts": [{"functionResponse": {"name": "f", "response": {}, "parts": True}}]},
                ]
            },
            {
                "contents": [user("x")],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": "f"}},
            },
        ],
    )
    def test_malformed_bodies_raise_only_invalid_request(self, body: dict) -> None:
        invalid(body, ": expected|: unknown role")

    def test_a_single_string_modality_is_read_as_one(self) -> None:
        body = {"contents": [user("x")], "generationConfig": {"responseModalities": "TEXT"}}
        assert parse(body).messages

    def test_unknown_top_level_keys_are_ignored(self) -> None:
        safety = [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}]
        body = {"contents": [user("x")], "safetySettings": safety, "labels": {"a": "b"}}
        assert parse(body).messages == [Message(role="user", content=[Text(text="x")])]


# -- render_request -------------------------------------------------------------------------------


def render(**fields: Any) -> dict[str, Any]:
    return gemini.render_request(ChatRequest(model=fields.pop("model", "gemini-2.5-flash"), **fields))


def validate_request_body(body: dict[str, Any]) -> None:
    """Every piece of a rendered body passes the SDK's own (extra-forbidding) types."""
    for content in body["contents"]:
        types.Content.model_validate(content)
        assert content["parts"], "Gemini rejects empty parts"
    if "systemInstruction" in body:
        types.Content.model_validate(body["systemInstruction"])
    for tool in body.get("tools", []):
        types.Tool.model_validate(tool)
    if "toolConfig" in body:
        types.ToolConfig.model_validate(body["toolConfig"])
    if "generationConfig" in body:
        types.GenerationConfig.model_validate(body["generationConfig"])
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}


def call(id: str, name: str = "f", arguments: str = "{}", signature: str | None = None) -> ToolCall:
    return ToolCall(id=id, name=name, arguments=arguments, thought_signature=signature)


class TestRenderRequest:
    def test_parsed_example_renders_back_to_an_sdk_valid_body(self) -> None:
        body = gemini.render_request(parse(REQUEST_EXAMPLE))
        validate_request_body(body)
        expected = copy.deepcopy(REQUEST_EXAMPLE)
        expected["contents"][2]["parts"][0]["functionResponse"]["response"] = {"temp_c": 18}
        del expected["generationConfig"]["responseMimeType"]
        for content, rendered in zip(expected["contents"], body["contents"], strict=True):
            assert rendered == content
        assert body["systemInstruction"] == expected["systemInstruction"]
        assert body["tools"] == expected["tools"]
        assert body["toolConfig"] == expected["toolConfig"]
        assert body["generationConfig"] == expected["generationConfig"]

    def test_consecutive_same_role_messages_merge_and_empty_ones_vanish(self) -> None:
        body = render(
            messages=[
                Message(role="user", content=[Text(text="a")]),
                Message(role="user", content=[Text(text=""), Text(text="b")]),
                Message(
                    role="assistant", content=[Reasoning(text="hm", signature="sig", origin="anthropic")]
                ),
                Message(role="user", content=[Text(text="c")]),
                Message(role="assistant", content=[Text(text="d")]),
            ]
        )
        assert body["contents"] == [
            {"role": "user", "parts": [{"text": "a"}, {"text": "b"}, {"text": "c"}]},
            {"role": "model", "parts": [{"text": "d"}]},
        ]

    def test_tool_results_of_a_turn_share_one_user_content(self) -> None:
        """docs/snags.md #10: names looked up from the calls, object responses, images kept after them."""
        body = render(
            messages=[
                Message(role="user", content=[Text(text="go")]),
                Message(
                    role="assistant",
                    content=[call("toolu_1", "read", signature=SIG), call("toolu_2", "shot")],
                ),
                Message(
                    role="user", content=[ToolResult(tool_call_id="toolu_1", content=[Text(text="plain")])]
                ),
                Message(
                    role="user",
                    content=[
                        ToolResult(
                            tool_call_id="toolu_2",
                            content=[
                                Text(text='{"ok": true}'),
                                Image(media_type="image/png", data="iVBORw0K"),
                            ],
                        ),
                        Text(text="and now?"),
                    ],
                ),
            ]
        )
        validate_request_body(body)
        assert body["contents"][2] == {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "read", "response": {"output": "plain"}}},
                {"functionResponse": {"name": "shot", "response": {"ok": True}}},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                {"text": "and now?"},
            ],
        }

    @pytest.mark.parametrize(
        ("text", "response"),
        [
            ("boom", {"error": "boom"}),
            ('{"code": 7}', {"error": {"code": 7}}),
        ],
    )
    def test_error_results_go_under_error(self, text: str, response: dict) -> None:
        body = render(
            messages=[
                Message(role="assistant", content=[call("a")]),
                Message(
                    role="user",
                    content=[
                        ToolResult(tool_call_id="a", name="f", content=[Text(text=text)], is_error=True)
                    ],
                ),
            ]
        )
        assert body["contents"][1]["parts"] == [{"functionResponse": {"name": "f", "response": response}}]

    def test_a_result_whose_call_cannot_be_found_is_an_invalid_request(self) -> None:
        request = ChatRequest(
            model="m",
            messages=[
                Message(role="user", content=[Text(text="x"), ToolResult(tool_call_id="nope", content=[])])
            ],
        )
        no_call = r"^messages\[0\]\.content\[1\]: no earlier tool call with id 'nope'"
        with pytest.raises(ProxyError, match=no_call):
            gemini.render_request(request)

    def test_synthetic_ids_are_never_sent(self) -> None:
        result = ToolResult(tool_call_id="call_1_0", content=[])
        body = render(
            messages=[
                Message(role="assistant", content=[call("call_1_0")]),
                Message(role="user", content=[result]),
            ]
        )
        assert "id" not in body["contents"][0]["parts"][0]["functionCall"]
        response = {"name": "f", "response": {"output": ""}}
        assert body["contents"][1]["parts"] == [{"functionResponse": response}]

    def test_thought_signature_comes_from_the_call_or_from_its_gsig_id(self) -> None:
        """docs/snags.md #14: an OpenAI/Anthropic client echoes only the id."""
        carried = gemini.call_id_for_signature(SIG, 0)
        body = render(
            messages=[
                Message(role="assistant", content=[call("x", signature="b3du")]),
                Message(role="user", content=[ToolResult(tool_call_id="x", content=[])]),
                Message(role="assistant", content=[call(carried)]),
            ]
        )
        assert body["contents"][0]["parts"][0]["thoughtSignature"] == "b3du"
        assert b64bytes(body["contents"][2]["parts"][0]["thoughtSignature"]) == b64bytes(SIG)

    def test_the_first_unsigned_call_of_a_model_turn_gets_the_placeholder(self) -> None:
        """docs/wire.md §6.9: history from another provider has no signatures; Gemini 3 rejects that."""
        body = render(
            messages=[
                Message(role="user", content=[Text(text="x")]),
                Message(role="assistant", content=[Text(text="ok"), call("toolu_a"), call("toolu_b")]),
            ]
        )
        parts = body["contents"][1]["parts"]
        assert parts[1]["thoughtSignature"] == "skip_thought_signature_validator"
        assert "thoughtSignature" not in parts[0] and "thoughtSignature" not in parts[2]
        validate_request_body(body)

    def test_gemini_reasoning_is_echoed_and_foreign_reasoning_dropped(self) -> None:
        body = render(
            messages=[
                Message(role="user", content=[Text(text="x")]),
                Message(
                    role="assistant",
                    content=[
                        Reasoning(text="gemini thought", signature="c2ln", origin="gemini"),
                        Reasoning(text="claude thought", signature="Zm9v", origin="anthropic"),
                        Reasoning(signature="enc", redacted=True, origin="anthropic"),
                        Reasoning(signature="YWJj", origin="gemini"),
                        Text(text="answer"),
                        Reasoning(signature="ZW5k", origin="gemini"),
                    ],
                ),
            ]
        )
        assert body["contents"][1]["parts"] == [
            {"text": "gemini thought", "thought": True, "thoughtSignature": "c2ln"},
            {"text": "answer", "thoughtSignature": "YWJj"},
            {"text": "", "thoughtSignature": "ZW5k"},
        ]

    def test_a_signature_before_a_signed_call_stays_on_its_own_part(self) -> None:
        body = render(
            messages=[
                Message(
                    role="assistant",
                    content=[Reasoning(signature="YWJj", origin="gemini"), call("a", signature="c2ln")],
                )
            ]
        )
        assert body["contents"][0]["parts"] == [
            {"text": "", "thoughtSignature": "YWJj"},
            {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"},
        ]

    def test_request_parts_round_trip_through_canonical(self) -> None:
        body = {
            "contents": [
                user("q"),
                {
                    "role": "model",
                    "parts": [
                        {"text": "t", "thought": True},
                        {"text": "answer", "thoughtSignature": "YWJj"},
                        {
                            "functionCall": {"name": "f", "args": {"a": [1, {"b": None}]}},
                            "thoughtSignature": "c2ln",
                        },
                        {"functionCall": {"name": "g", "args": {}}},
                        {"text": "", "thoughtSignature": "ZW5k"},
                    ],
                },
            ]
        }
        assert gemini.render_request(parse(body))["contents"] == body["contents"]

    @pytest.mark.parametrize(
        ("image", "part"),
        [
            (
                Image(media_type="image/png", data="AAAA"),
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
            ),
            (Image(data="/9j/4AAQ"), {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}),
            (Image(data="iVBORw0K"), {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}}),
            (
                Image(url="data:image/gif;base64,R0lGODlh"),
                {"inlineData": {"mimeType": "image/gif", "data": "R0lGODlh"}},
            ),
            (
                Image(url="https://x.test/a/cat.PNG?size=2"),
                {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a/cat.PNG?size=2"}},
            ),
            (
                Image(url="https://x.test/cat"),
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/cat"}},
            ),
            (
                Image(url="https://x.test/c.jpg", media_type="image/webp"),
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/c.jpg"}},
            ),
        ],
    )
    def test_images(self, image: Image, part: dict) -> None:
        body = render(messages=[Message(role="user", content=[image])])
        assert body["contents"][0]["parts"] == [part]
        validate_request_body(body)

    @pytest.mark.parametrize(
        ("choice", "config"),
        [
            (ToolChoice(mode="auto"), {"mode": "AUTO"}),
            (ToolChoice(mode="required"), {"mode": "ANY"}),
            (ToolChoice(mode="tool", name="f"), {"mode": "ANY", "allowedFunctionNames": ["f"]}),
            (ToolChoice(mode="none"), {"mode": "NONE"}),
        ],
    )
    def test_tool_choice(self, choice: ToolChoice, config: dict) -> None:
        body = render(
            messages=[Message(role="user", content=[Text(text="x")])],
            tools=[Tool(name="f")],
            tool_choice=choice,
        )
        assert body["toolConfig"] == {"functionCallingConfig": config}
        assert body["tools"] == [
            {
                "functionDeclarations": [
                    {"name": "f", "parametersJsonSchema": {"type": "object", "properties": {}}}
                ]
            }
        ]
        validate_request_body(body)

    def test_generation_config(self) -> None:
        body = render(
            max_tokens=100,
            temperature=0.5,
            top_p=0.9,
            top_k=20,
            seed=3,
            presence_penalty=0.1,
            frequency_penalty=0.2,
            stop=["a", "b", "c", "d", "e", "f"],
            response_format=ResponseFormat(type="json_object"),
        )
        assert body["generationConfig"] == {
            "maxOutputTokens": 100,
            "temperature": 0.5,
            "topP": 0.9,
            "topK": 20,
            "stopSequences": ["a", "b", "c", "d", "e"],
            "seed": 3,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
            "responseMimeType": "application/json",
        }
        validate_request_body(body)

    def test_an_empty_request_has_no_generation_config(self) -> None:
        assert render() == {"contents": []}

    def test_json_schema_output_is_sanitised(self) -> None:
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"n": {"type": "integer", "exclusiveMinimum": 0}},
            "additionalProperties": False,
        }
        body = render(response_format=ResponseFormat(type="json_schema", name="x", json_schema=schema))
        assert body["generationConfig"] == {
            "responseMimeType": "application/json",
            "responseJsonSchema": {
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 0}},
                "additionalProperties": False,
            },
        }
        validate_request_body(body)

    @pytest.mark.parametrize(
        ("model", "reasoning", "thinking"),
        [
            ("gemini-3-pro-preview", ReasoningConfig(effort="high"), {"thinkingLevel": "HIGH"}),
            (
                "gemini-3-flash",
                ReasoningConfig(effort="max", include_thoughts=True),
                {"thinkingLevel": "XHIGH", "includeThoughts": True},
            ),
            ("gemini-3-pro-preview", ReasoningConfig(effort="none"), {"thinkingBudget": 0}),
            ("gemini-2.5-flash", ReasoningConfig(effort="low"), {"thinkingBudget": 2048}),
            ("gemini-2.5-pro", ReasoningConfig(effort="high"), {"thinkingBudget": 24576}),
            (
                "gemini-2.5-pro",
                ReasoningConfig(budget_tokens=5000, include_thoughts=True),
                {"thinkingBudget": 5000, "includeThoughts": True},
            ),
            ("gemini-3-pro-preview", ReasoningConfig(budget_tokens=5000), {"thinkingBudget": 5000}),
            (
                "gemini-2.5-flash",
                ReasoningConfig(enabled=False, include_thoughts=True),
                {"thinkingBudget": 0},
            ),
        ],
    )
    def test_thinking_config(self, model: str, reasoning: ReasoningConfig, thinking: dict) -> None:
        body = render(model=model, reasoning=reasoning)
        assert body["generationConfig"] == {"thinkingConfig": thinking}
        validate_request_body(body)


# -- schema sanitising (docs/snags.md #11) --------------------------------------------------------

# Shaped like what Claude Code / MCP servers send (zod-to-json-schema, pydantic), with property
# names that happen to be JSON-Schema keywords.
NASTY_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "const": {"type": "string", "const": "fixed", "description": "a property called const"},
        "default": {
            "type": "integer",
            "default": 3,
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 10,
            "examples": [4],
        },
        "format": {"type": "string", "format": "uri", "pattern": "^https://", "minLength": 1},
        "when": {"type": "string", "format": "date-time"},
        "$schema": {"type": "string", "enum": ["a", "b"]},
        "level": {"type": "integer", "enum": [1, 2, 3]},
        "allOf": {"allOf": [{"$ref": "#/definitions/Mode"}], "description": "pydantic-style ref"},
        "both": {"allOf": [{"type": "string"}, {"type": "number"}], "title": "conflicting allOf"},
        "tags": {
            "type": "array",
            "items": {"type": "string", "const": 5},
            "minItems": 1,
            "uniqueItems": True,
        },
        "meta": {
            "type": "object",
            "patternProperties": {"^x-": {"type": "string"}},
            "propertyNames": {"pattern": "^[a-z]+$"},
            "additionalProperties": {"type": "string", "default": ""},
        },
        "choice": {"anyOf": [{"type": "string", "const": "x"}, {"type": "null"}], "default": None},
        "pair": {"type": "array", "items": [{"type": "string"}, {"type": "number", "multipleOf": 2}]},
        "old": {"type": "number", "minimum": 1, "exclusiveMinimum": True},
    },
    "required": ["const", "format"],
    "definitions": {"Mode": {"type": "string", "enum": ["fast", "slow"], "not": {"const": "x"}}},
}

NASTY_SANITISED: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "const": {"type": "string", "description": "a property called const", "enum": ["fixed"]},
        "default": {"type": "integer", "minimum": 0, "maximum": 10},
        "format": {"type": "string"},
        "when": {"type": "string", "format": "date-time"},
        "$schema": {"type": "string", "enum": ["a", "b"]},
        "level": {"type": "integer"},
        "allOf": {"description": "pydantic-style ref", "$ref": "#/$defs/Mode"},
        "both": {"title": "conflicting allOf"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "meta": {"type": "object", "additionalProperties": {"type": "string"}},
        "choice": {"anyOf": [{"type": "string", "enum": ["x"]}, {"type": "null"}]},
        "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]},
        "old": {"type": "number", "minimum": 1},
    },
    "required": ["const", "format"],
    "$defs": {"Mode": {"type": "string", "enum": ["fast", "slow"]}},
}


def keywords(schema: Any) -> Iterator[str]:
    """Every keyword used anywhere in a schema, property and definition names excluded."""
    if isinstance(schema, list):
        for sub in schema:
            yield from keywords(sub)
    elif isinstance(schema, dict):
        for key, value in schema.items():
            yield key
            if key in ("properties", "$defs") and isinstance(value, dict):
                for sub in value.values():
                    yield from keywords(sub)
            elif key not in ("enum", "required", "propertyOrdering"):
                yield from keywords(value)


class TestSchemaSanitising:
    def test_a_nasty_real_world_schema(self) -> None:
        assert gemini.sanitise_schema(NASTY_SCHEMA) == NASTY_SANITISED

    def test_only_documented_keywords_survive(self) -> None:
        used = set(keywords(gemini.sanitise_schema(NASTY_SCHEMA)))
        assert used <= gemini.SCHEMA_KEYWORDS
        assert {"const", "default", "format", "$schema", "allOf"} <= set(NASTY_SANITISED["properties"])

    def test_the_sanitised_schema_is_accepted_by_the_sdk_in_a_declaration(self) -> None:
        body = render(tools=[Tool(name="mcp__fs__edit", description="Edit", parameters=NASTY_SCHEMA)])
        validate_request_body(body)
        assert body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == NASTY_SANITISED

    def test_the_input_schema_is_not_mutated(self) -> None:
        before = copy.deepcopy(NASTY_SCHEMA)
        gemini.sanitise_schema(NASTY_SCHEMA)
        assert NASTY_SCHEMA == before


# -- parse_response -------------------------------------------------------------------------------


class TestParseResponse:
    def test_documented_example_field_by_field(self) -> None:
        response = gemini.parse_response(RESPONSE_EXAMPLE)
        assert (response.id, response.model) == ("x1AbCdEfGh", "gemini-2.5-flash")
        thought, tool_call = response.content
        assert thought == Reasoning(text="**Planning** I should call the weather tool.", origin="gemini")
        assert tool_call == ToolCall(
            id="gsig_CiQBVKhcAbCdEfGh_0",
            name="get_weather",
            arguments='{"city":"Paris"}',
            thought_signature=SIG,
        )
        assert response.stop_reason == "tool_use"  # docs/snags.md #17: Gemini says STOP
        assert response.usage == Usage(
            input_tokens=120, output_tokens=58, cache_read_tokens=64, reasoning_tokens=40
        )

    def test_a_signature_rides_in_the_call_id_and_can_be_recovered(self) -> None:
        """docs/snags.md #9 and #14: the id keeps Anthropic's charset and carries the signature's bytes."""
        raw = bytes(range(256)) * 3
        for signature in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
            body = {
                "candidates": [
                    {
                        "content": {
                            "parts": [
                                {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": signature},
                                {"functionCall": {"name": "g", "args": {}}},
                            ]
                        },
                        "finishReason": "STOP",
                    }
                ]
            }
            first, second = gemini.parse_response(body).content
            assert ID_PATTERN.match(first.id) and first.id.startswith("gsig_") and first.id.endswith("_0")
            assert first.thought_signature == signature
            assert base64.b64decode(gemini.signature_from_id(first.id)) == raw
            assert re.fullmatch(r"call_[0-9a-f]{8}_1", second.id)

    def test_a_signature_that_is_not_base64_still_makes_a_valid_id(self) -> None:
        call_id = gemini.call_id_for_signature("not base64!", 2)
        assert ID_PATTERN.match(call_id) and call_id.endswith("_2")
        assert base64.b64decode(gemini.signature_from_id(call_id)) == b"not base64!"

    @pytest.mark.parametrize("call_id", ["call_1_0", "gsig_", "gsig_abc", "gsig_YWJj_x", "toolu_01"])
    def test_ids_that_carry_no_signature(self, call_id: str) -> None:
        assert gemini.signature_from_id(call_id) is None

    def test_the_providers_call_id_is_kept_when_there_is_no_signature(self) -> None:
        body = {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "id": "fc-9"}}]}}]}
        assert gemini.parse_response(body).content == [ToolCall(id="fc-9", name="f", arguments="{}")]

    @pytest.mark.parametrize(
        ("finish", "stop"),
        [
            ("STOP", "end_turn"),
            ("MAX_TOKENS", "max_tokens"),
            ("SAFETY", "refusal"),
            ("RECITATION", "refusal"),
            ("BLOCKLIST", "refusal"),
            ("PROHIBITED_CONTENT", "refusal"),
            ("SPII", "refusal"),
            ("LANGUAGE", "refusal"),
            ("IMAGE_SAFETY", "refusal"),
            ("MALFORMED_FUNCTION_CALL", "error"),
            ("UNEXPECTED_TOOL_CALL", "error"),
            ("TOO_MANY_TOOL_CALLS", "error"),
            ("MALFORMED_RESPONSE", "error"),
            ("MISSING_THOUGHT_SIGNATURE", "error"),
            ("OTHER", "error"),
            ("SOMETHING_NEW", "error"),
        ],
    )
    def test_finish_reasons(self, finish: str, stop: str) -> None:
        content = {"role": "model", "parts": [{"text": "x"}]}
        body = {"candidates": [{"content": content, "finishReason": finish}]}
        assert gemini.parse_response(body).stop_reason == stop

    def test_a_blocked_prompt_is_an_empty_refusal(self) -> None:
        body = {
            "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
            "modelVersion": "gemini-2.5-pro",
        }
        response = gemini.parse_response(body)
        assert (response.content, response.stop_reason) == ([], "refusal")
        assert response.usage == Usage(input_tokens=7)

    def test_tool_use_prompt_tokens_count_as_input(self) -> None:
        body = {
            "candidates": [],
            "usageMetadata": {
                "promptTokenCount": 10,
                "toolUsePromptTokenCount": 5,
                "candidatesTokenCount": 2,
            },
        }
        assert gemini.parse_response(body).usage == Usage(input_tokens=15, output_tokens=2)

    def test_malformed_counts_and_reasons_are_unknown_rather_than_fatal(self) -> None:
        body = {
            "candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": {"odd": 1}}],
            "usageMetadata": {"promptTokenCount": "9", "candidatesTokenCount": 2, "thoughtsTokenCount": [1]},
        }
        response = gemini.parse_response(body)
        assert (response.stop_reason, response.usage) == ("error", Usage(output_tokens=2))

    def test_a_non_object_body_is_an_upstream_error(self) -> None:
        with pytest.raises(ProxyError) as caught:
            gemini.parse_response(["x"])
        assert caught.value.code == "upstream_error"


# -- render_response ------------------------------------------------------------------------------

CLIENT_REQUEST = ChatRequest(model="gemini-2.5-flash")


def sdk_response(body: dict[str, Any]) -> types.GenerateContentResponse:
    return types.GenerateContentResponse.model_validate(body)


class TestRenderResponse:
    def test_the_example_round_trips_and_validates_with_the_sdk(self) -> None:
        response = gemini.parse_response(RESPONSE_EXAMPLE)
        body = gemini.render_response(response, CLIENT_REQUEST)
        parsed = sdk_response(body)
        function_call = parsed.function_calls[0]
        assert function_call.name == "get_weather" and function_call.args == {"city": "Paris"}
        assert parsed.function_calls[0].id == "gsig_CiQBVKhcAbCdEfGh_0"
        assert body["usageMetadata"] == {
            "promptTokenCount": 120,
            "candidatesTokenCount": 18,
            "thoughtsTokenCount": 40,
            "cachedContentTokenCount": 64,
            "totalTokenCount": 178,
        }
        assert (body["responseId"], body["modelVersion"]) == ("x1AbCdEfGh", "gemini-2.5-flash")
        assert gemini.parse_response(body) == response

    def test_foreign_reasoning_is_shown_as_thoughts_without_its_signature(self) -> None:
        response = ChatResponse(
            id="msg_1",
            model="",
            stop_reason="end_turn",
            content=[
                Reasoning(text="let me think", signature="anthropic-sig", origin="anthropic"),
                Reasoning(signature="opaque", redacted=True, origin="anthropic"),
                Text(text="Hi 18 °C"),
            ],
            usage=Usage(input_tokens=5, output_tokens=9),
        )
        body = gemini.render_response(response, ChatRequest(model="claude-via-gemini"))
        assert body["candidates"][0]["content"]["parts"] == [
            {"text": "let me think", "thought": True},
            {"text": "Hi 18 °C"},
        ]
        assert body["modelVersion"] == "claude-via-gemini"
        assert body["usageMetadata"] == {
            "promptTokenCount": 5,
            "candidatesTokenCount": 9,
            "totalTokenCount": 14,
        }
        assert sdk_response(body).text == "Hi 18 °C"

    @pytest.mark.parametrize(
        ("stop", "finish"),
        [
            ("end_turn", "STOP"),
            ("tool_use", "STOP"),
            ("stop_sequence", "STOP"),
            ("pause_turn", "STOP"),
            ("max_tokens", "MAX_TOKENS"),
            ("context_window", "MAX_TOKENS"),
            ("refusal", "SAFETY"),
            ("error", "OTHER"),
        ],
    )
    def test_stop_reasons(self, stop: str, finish: str) -> None:
        body = gemini.render_response(ChatResponse(id="r", model="m", stop_reason=stop), CLIENT_REQUEST)
        assert body["candidates"][0]["finishReason"] == finish
        assert body["candidates"][0]["content"]["parts"] == [{"text": ""}]
        sdk_response(body)

    def test_unknown_usage_is_left_out_rather_than_zero(self) -> None:
        body = gemini.render_response(ChatResponse(id="r", model="m"), CLIENT_REQUEST)
        assert body["usageMetadata"] == {}


# -- stream decoder -------------------------------------------------------------------------------


class TestStreamDecoder:
    def test_plain_text_stream(self) -> None:
        assert decode(STREAM_TEXT) == [
            MessageStart(id="r1", model="gemini-2.5-flash"),
            TextDelta(text="Hel"),
            UsageUpdate(usage=Usage(input_tokens=9)),
            TextDelta(text="lo!"),
            UsageUpdate(usage=Usage(input_tokens=9, output_tokens=3)),
            Stop(reason="end_turn"),
            End(),
        ]

    def test_a_whole_function_call_becomes_start_one_delta_end(self) -> None:
        """docs/snags.md #2: the arguments survive as one complete delta; docs/snags.md #17: STOP
        means tool_use."""
        assert decode(STREAM_TOOL) == [
            MessageStart(id="r2", model="gemini-2.5-flash"),
            ToolCallStart(index=0, id="gsig_CiQBVKhcAbCdEfGh_0", name="get_weather", thought_signature=SIG),
            ToolCallDelta(index=0, arguments='{"city":"Paris"}'),
            ToolCallEnd(index=0),
            UsageUpdate(usage=Usage(input_tokens=50, output_tokens=32, reasoning_tokens=25)),
            Stop(reason="tool_use"),
            End(),
        ]

    def test_thoughts_text_and_a_trailing_signature(self) -> None:
        assert decode(STREAM_THOUGHTS) == [
            MessageStart(id="r3", model="gemini-2.5-flash"),
            ReasoningDelta(text="**Comparing units**\nCelsius is expected.", origin="gemini"),
            TextDelta(text="It is 18 °C."),
            ReasoningDelta(signature=SIG, origin="gemini"),
            UsageUpdate(usage=Usage(input_tokens=9, output_tokens=36, reasoning_tokens=30)),
            Stop(reason="end_turn"),
            End(),
        ]

    def test_adjacent_parts_join_as_in_a_stream(self) -> None:
        assert gemini.parse_response(WHOLE_ADJACENT).content == [
            Reasoning(text="Plan", signature=SIG, origin="gemini"),
            Text(text="AB"),
        ]

    def test_parallel_calls_get_increasing_indexes(self) -> None:
        chunk = {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "YWJj"},
                            {"functionCall": {"name": "b", "args": {}}},
                        ]
                    },
                    "finishReason": "STOP",
                }
            ],
            "responseId": "r",
        }
        events = decode(f"data: {json.dumps(chunk)}\n\n".encode())
        starts = [e for e in events if isinstance(e, ToolCallStart)]
        assert [(s.index, s.name) for s in starts] == [(0, "a"), (1, "b")]
        assert starts[0].id == "gsig_YWJj_0" and re.fullmatch(r"call_[0-9a-f]{8}_1", starts[1].id)
        assert response_from_events(events).content[1].arguments == "{}"

    def test_an_in_band_error_ends_the_stream(self) -> None:
        stream = (
            STREAM_TEXT.split(b"\n\n")[0]
            + b"\n\n"
            + b'data: {"error":{"code":503,"message":"The model is overloaded.",'
            b'"status":"UNAVAILABLE"}}\n\n'
            + b'data: {"candidates":[{"content":{"parts":[{"text":"late"}]}}]}\n\n'
        )
        decoder = gemini.StreamDecoder()
        events = decoder.feed(stream)
        assert events[:2] == [MessageStart(id="r1", model="gemini-2.5-flash"), TextDelta(text="Hel")]
        error = events[-1]
        assert isinstance(error, StreamError) and len(events) == 4
        assert (error.error["code"], error.error["status"], error.error["message"]) == (
            "overloaded",
            503,
            "The model is overloaded.",
        )
        assert error.error["provider_type"] == "UNAVAILABLE"
        assert decoder.close() == []

    def test_a_stream_cut_before_its_finish_reason_is_an_error(self) -> None:
        events = decode(STREAM_TEXT.split(b"\n\n")[0])  # no blank line either: flushed at close
        assert events[:2] == [MessageStart(id="r1", model="gemini-2.5-flash"), TextDelta(text="Hel")]
        assert isinstance(events[-1], StreamError) and events[-1].error["code"] == "upstream_error"
        assert events[-1].error["message"] == "upstream stream ended before it finished"

    def test_an_empty_stream_is_an_error(self) -> None:
        events = decode(b"")
        assert len(events) == 1 and isinstance(events[0], StreamError)

    def test_garbage_in_the_stream_is_an_upstream_error(self) -> None:
        events = decode(b"data: <html>\n\n")
        assert len(events) == 1 and isinstance(events[0], StreamError)
        assert events[0].error["code"] == "upstream_error"

    def test_a_blocked_prompt_in_a_stream_stops_with_refusal(self) -> None:
        stream = b'data: {"promptFeedback":{"blockReason":"SAFETY"},"responseId":"r9"}\n\n'
        assert decode(stream) == [MessageStart(id="r9", model=""), Stop(reason="refusal"), End()]

    def test_state_lives_in_each_decoder(self) -> None:
        """docs/snags.md #7: interleaved streams do not mix."""
        first, second = gemini.StreamDecoder(), gemini.StreamDecoder()
        half = len(STREAM_TOOL) // 2
        a = first.feed(STREAM_TEXT[:40]) + second.feed(STREAM_TOOL[:half])
        a += first.feed(STREAM_TEXT[40:]) + second.feed(STREAM_TOOL[half:])
        assert [e for e in a if isinstance(e, MessageStart)] == [
            MessageStart(id="r1", model="gemini-2.5-flash"),
            MessageStart(id="r2", model="gemini-2.5-flash"),
        ]
        assert first.close() == [End()] and second.close() == [End()]


# -- stream encoder -------------------------------------------------------------------------------


def sse_chunks(data: bytes) -> list[dict[str, Any]]:
    text = data.decode()
    assert text.endswith("\n\n") or not text
    return [json.loads(block.removeprefix("data: ")) for block in text.split("\n\n") if block]


RICH_EVENTS: list[Event] = [
    MessageStart(id="resp-1", model="gemini-2.5-pro"),
    ReasoningDelta(text="Thinking about ", origin="gemini"),
    ReasoningDelta(text="units", origin="gemini"),
    ReasoningDelta(signature="c2ln", origin="gemini"),
    TextDelta(text="It is 18 °C"),
    TextDelta(text=""),
    TextDelta(text=". Calling tools."),
    ToolCallStart(index=0, id="gsig_YWJj_0", name="get_weather", thought_signature="YWJj"),
    ToolCallDelta(index=0, arguments='{"city":'),
    ToolCallDelta(index=0, arguments='"Paris"}'),
    ToolCallEnd(index=0),
    ToolCallStart(index=1, id="call_x_1", name="now"),
    ToolCallEnd(index=1),
    Stop(reason="tool_use"),
    UsageUpdate(usage=Usage(input_tokens=10, output_tokens=30, reasoning_tokens=12, cache_read_tokens=4)),
    End(),
]


class TestStreamEncoder:
    def test_encoded_events_decode_to_the_same_response(self) -> None:
        data = gemini.StreamEncoder(CLIENT_REQUEST).encode(RICH_EVENTS)
        assert response_from_events(decode(data)) == response_from_events(RICH_EVENTS)

    def test_every_chunk_is_a_valid_sdk_response_carrying_id_and_model(self) -> None:
        chunks = sse_chunks(gemini.StreamEncoder(CLIENT_REQUEST).encode(RICH_EVENTS))
        for chunk in chunks:
            sdk_response(chunk)
            assert (chunk["responseId"], chunk["modelVersion"]) == ("resp-1", "gemini-2.5-pro")
        parts = [chunk["candidates"][0]["content"]["parts"] for chunk in chunks]
        assert parts == [
            [{"text": "Thinking about ", "thought": True}],
            [{"text": "units", "thought": True}],
            [{"text": "", "thoughtSignature": "c2ln"}],
            [{"text": "It is 18 °C"}],
            [{"text": ". Calling tools."}],
            [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "gsig_YWJj_0"},
                    "thoughtSignature": "YWJj",
                }
            ],
            [{"functionCall": {"name": "now", "args": {}, "id": "call_x_1"}}],
            [{"text": ""}],
        ]
        assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
        assert chunks[-1]["usageMetadata"] == {
            "promptTokenCount": 10,
            "candidatesTokenCount": 18,
            "thoughtsTokenCount": 12,
            "cachedContentTokenCount": 4,
            "totalTokenCount": 40,
        }
        assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])

    def test_the_final_chunk_waits_for_end(self) -> None:
        """docs/snags.md #4: usage may follow the stop reason."""
        encoder = gemini.StreamEncoder(CLIENT_REQUEST)
        assert encoder.encode([MessageStart(id="r", model="m"), Stop(reason="max_tokens")]) == b""
        assert encoder.encode([UsageUpdate(usage=Usage(input_tokens=3, output_tokens=4))]) == b""
        (final,) = sse_chunks(encoder.encode([End()]))
        assert final["candidates"][0]["finishReason"] == "MAX_TOKENS"
        assert final["usageMetadata"]["totalTokenCount"] == 7
        assert encoder.encode([TextDelta(text="late")]) == b"" and encoder.close() == b""

    def test_close_without_end_finishes_the_stream(self) -> None:
        encoder = gemini.StreamEncoder(CLIENT_REQUEST)
        encoder.encode(
            [
                MessageStart(id="r", model=""),
                ToolCallStart(index=0, id="c", name="f"),
                ToolCallDelta(index=0, arguments='{"a":1}'),
            ]
        )
        chunks = sse_chunks(encoder.close())
        assert chunks[0]["candidates"][0]["content"]["parts"] == [
            {"functionCall": {"name": "f", "args": {"a": 1}, "id": "c"}}
        ]
        assert chunks[1]["candidates"][0]["finishReason"] == "STOP"
        assert chunks[0]["modelVersion"] == "gemini-2.5-flash"  # the request's, as the start had none
        assert encoder.close() == b""

    def test_foreign_signatures_are_not_passed_to_gemini_clients(self) -> None:
        data = gemini.StreamEncoder(CLIENT_REQUEST).encode(
            [
                MessageStart(id="r", model="m"),
                ReasoningDelta(text="hmm", origin="anthropic"),
                ReasoningDelta(signature="EqQBCkYI", origin="anthropic"),
                ReasoningDelta(signature="opaque", redacted=True, origin="anthropic"),
                End(),
            ]
        )
        parts = [c["candidates"][0]["content"]["parts"] for c in sse_chunks(data)]
        assert parts == [[{"text": "hmm", "thought": True}], [{"text": ""}]]

    def test_a_stream_error_is_an_error_chunk_and_nothing_follows(self) -> None:
        encoder = gemini.StreamEncoder(CLIENT_REQUEST)
        error = ProxyError("overloaded", "try later", status=529)
        data = encoder.encode(
            [
                MessageStart(id="r", model="m"),
                TextDelta(text="a"),
                StreamError(error=error.to_dict()),
                TextDelta(text="b"),
                End(),
            ]
        )
        chunks = sse_chunks(data)
        assert len(chunks) == 2 and data.decode().splitlines()[-2].startswith('data: {"error":')
        assert chunks[1]["error"]["code"] == 503 and chunks[1]["error"]["status"] == "UNAVAILABLE"
        assert gemini.parse_error(503, json.dumps(chunks[1]).encode()).code == "overloaded"
        assert encoder.close() == b""

    def test_json_array_mode_without_alt_sse(self) -> None:
        data = gemini.StreamEncoder(CLIENT_REQUEST, sse=False).encode(RICH_EVENTS)
        chunks = json.loads(data)
        assert isinstance(chunks, list) and len(chunks) == 8
        for chunk in chunks:
            sdk_response(chunk)
        assert chunks == sse_chunks(gemini.StreamEncoder(CLIENT_REQUEST).encode(RICH_EVENTS))

    def test_json_array_mode_ends_with_the_error_element(self) -> None:
        encoder = gemini.StreamEncoder(CLIENT_REQUEST, sse=False)
        data = encoder.encode([MessageStart(id="r", model="m"), TextDelta(text="a")])
        data += encoder.encode([StreamError(error=ProxyError("timeout", "slow").to_dict())])
        chunks = json.loads(data)
        assert chunks[-1]["error"]["status"] == "DEADLINE_EXCEEDED" and len(chunks) == 2

    def test_json_array_mode_error_before_any_chunk(self) -> None:
        data = gemini.StreamEncoder(CLIENT_REQUEST, sse=False).encode(
            [StreamError(error=ProxyError("internal", "x").to_dict())]
        )
        assert json.loads(data)[0]["error"]["code"] == 500

    @pytest.mark.parametrize(("stream", "whole"), STREAM_PAIRS)
    def test_provider_stream_relayed_to_a_gemini_client_keeps_its_meaning(
        self, stream: bytes, whole: dict
    ) -> None:
        relayed = gemini.StreamEncoder(CLIENT_REQUEST).encode(decode(stream))
        again = response_from_events(decode(relayed))
        direct = gemini.parse_response(whole)
        assert (again.content, again.stop_reason, again.usage) == (
            direct.content,
            direct.stop_reason,
            direct.usage,
        )


# -- the real SDK against what we serve -----------------------------------------------------------


@pytest.fixture
def serve() -> Iterator[Any]:
    """A loopback server answering every POST with the given status, content type and body."""
    reply: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(reply["status"])
            self.send_header("content-type", reply["type"])
            self.send_header("content-length", str(len(reply["body"])))
            self.end_headers()
            self.wfile.write(reply["body"])

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def client(status: int, body: bytes, content_type: str = "application/json") -> genai.Client:
        reply.update(status=status, body=body, type=content_type)
        options = types.HttpOptions(base_url=f"http://127.0.0.1:{server.server_port}", retry_options=None)
        return genai.Client(api_key="k", http_options=options)

    yield client
    server.shutdown()
    server.server_close()


class TestOfficialClient:
    def test_sdk_reads_our_stream(self, serve: Any) -> None:
        data = gemini.StreamEncoder(CLIENT_REQUEST).encode(RICH_EVENTS)
        client = serve(200, data, "text/event-stream")
        chunks = list(client.models.generate_content_stream(model="gemini-2.5-pro", contents="hi"))
        parts = [p for c in chunks for p in c.candidates[0].content.parts]
        text = "".join(p.text for p in parts if p.text and not p.thought)
        assert text == "It is 18 °C. Calling tools."
        calls = [fc for c in chunks for fc in (c.function_calls or [])]
        assert [(fc.name, fc.args, fc.id) for fc in calls] == [
            ("get_weather", {"city": "Paris"}, "gsig_YWJj_0"),
            ("now", {}, "call_x_1"),
        ]
        assert chunks[-1].usage_metadata.total_token_count == 40

    def test_sdk_raises_on_our_in_stream_error(self, serve: Any) -> None:
        encoder = gemini.StreamEncoder(CLIENT_REQUEST)
        data = encoder.encode(
            [
                MessageStart(id="r", model="m"),
                TextDelta(text="a"),
                StreamError(error=ProxyError("rate_limited", "slow down").to_dict()),
            ]
        )
        client = serve(200, data, "text/event-stream")
        with pytest.raises(genai_errors.APIError) as caught:
            list(client.models.generate_content_stream(model="m", contents="hi"))
        assert caught.value.status == "RESOURCE_EXHAUSTED" and caught.value.message == "slow down"

    def test_sdk_reads_our_response_and_error(self, serve: Any) -> None:
        body = gemini.render_response(gemini.parse_response(RESPONSE_EXAMPLE), CLIENT_REQUEST)
        client = serve(200, json.dumps(body).encode())
        result = client.models.generate_content(model="m", contents="hi")
        assert result.function_calls[0].args == {"city": "Paris"}
        assert result.candidates[0].content.parts[1].thought_signature == base64.b64decode(SIG)
        status, error_body = gemini.render_error(ProxyError("not_found", "no such model"))
        client = serve(status, error_body)
        with pytest.raises(genai_errors.ClientError) as caught:
            client.models.generate_content(model="m", contents="hi")
        assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


# -- errors ---------------------------------------------------------------------------------------

ERROR_TABLE = GEMINI_RPC_STATUSES


class TestErrors:
    @pytest.mark.parametrize(("code", "status", "rpc"), ERROR_TABLE)
    def test_rendered_errors_carry_the_rpc_status_and_the_canonical_code(
        self, code: str, status: int, rpc: str
    ) -> None:
        """The round trip of code, status and message is tests/test_contract.py's."""
        rendered_status, body = gemini.render_error(ProxyError(code, "what happened"))
        envelope = json.loads(body)["error"]
        assert (envelope["code"], envelope["status"]) == (status, rpc)
        assert envelope["details"] == [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": code.upper(),
                "domain": "llm-proxy",
                "metadata": {"retryable": "true" if CODES[code][1] else "false"},
            }
        ]
        assert gemini.parse_error(rendered_status, body).provider_type == rpc

    def test_every_canonical_code_is_in_the_table(self) -> None:
        assert {code for code, _, _ in ERROR_TABLE} == set(CODES)

    def test_anthropic_529_becomes_503(self) -> None:
        status, body = gemini.render_error(ProxyError("overloaded", "busy", status=529, retry_after=2.5))
        envelope = json.loads(body)["error"]
        assert (status, envelope["code"]) == (503, 503)
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}
        assert envelope["details"][1] == retry
        assert gemini.parse_error(status, body).retry_after == 2.5

    def test_a_relayed_gemini_status_is_kept(self) -> None:
        error = gemini.parse_error(400, b'{"error":{"code":400,"message":"m","status":"OUT_OF_RANGE"}}')
        assert (error.code, error.provider_type) == ("invalid_request", "OUT_OF_RANGE")
        assert json.loads(gemini.render_error(error)[1])["error"]["status"] == "OUT_OF_RANGE"

    def test_retryable_override_travels(self) -> None:
        _, body = gemini.render_error(ProxyError("rate_limited", "blocked by policy", retryable=False))
        assert gemini.parse_error(429, body).retryable is False

    @pytest.mark.parametrize(
        ("status", "body", "code", "provider_type"),
        [
            (
                429,
                {
                    "error": {
                        "code": 429,
                        "message": "Resource has been exhausted (e.g. check quota).",
                        "status": "RESOURCE_EXHAUSTED",
                        "details": [
                            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27s"}
                        ],
                    }
                },
                "rate_limited",
                "RESOURCE_EXHAUSTED",
            ),
            (
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "API key not valid. Please pass a valid API key.",
                        "status": "INVALID_ARGUMENT",
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                "reason": "API_KEY_INVALID",
                                "domain": "googleapis.com",
                            }
                        ],
                    }
                },
                "authentication",
                "INVALID_ARGUMENT",
            ),
            (
                400,
                [
                    {
                        "error": {
                            "code": 400,
                            "message": "User location is not supported.",
                            "status": "FAILED_PRECONDITION",
                        }
                    }
                ],
                "billing",
                "FAILED_PRECONDITION",
            ),
            (
                503,
                {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
                "overloaded",
                "UNAVAILABLE",
            ),
            (
                504,
                {"error": {"code": 504, "message": "Deadline exceeded", "status": "DEADLINE_EXCEEDED"}},
                "timeout",
                "DEADLINE_EXCEEDED",
            ),
            (
                499,
                {"error": {"code": 499, "message": "cancelled", "status": "CANCELLED"}},
                "invalid_request",
                "CANCELLED",
            ),
        ],
    )
    def test_google_error_bodies(self, status: int, body: Any, code: str, provider_type: str) -> None:
        error = gemini.parse_error(status, json.dumps(body).encode())
        envelope = body[0]["error"] if isinstance(body, list) else body["error"]
        assert (error.code, error.status, error.message, error.provider_type) == (
            code,
            status,
            envelope["message"],
            provider_type,
        )

    def test_retry_delay_is_kept(self) -> None:
        body = (
            b'{"error":{"code":429,"message":"q","status":"RESOURCE_EXHAUSTED",'
            b'"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"27s"}]}}'
        )
        assert gemini.parse_error(429, body).retry_after == 27.0

    @pytest.mark.parametrize(
        ("status", "body", "code", "message"),
        [
            (
                502,
                b"<html><body>Bad Gateway</body></html>",
                "upstream_error",
                "<html><body>Bad Gateway</body></html>",
            ),
            (503, b"", "overloaded", "HTTP 503 from Gemini"),
            (404, b'{"message": "not an envelope"}', "not_found", '{"message": "not an envelope"}'),
            (500, b"\xff\xfe broken", "internal", "\ufffd\ufffd broken"),
        ],
    )
    def test_bodies_that_are_not_envelopes(self, status: int, body: bytes, code: str, message: str) -> None:
        error = gemini.parse_error(status, body)
        assert (error.code, error.status, error.message) == (code, status, message)


class TestHostedTools:
    """Google Search is the canonical web search; other built-in tools are removed with a warning."""

    def test_google_search_becomes_the_canonical_web_search(self) -> None:
        fn = {"name": "f", "parameters": {"type": "object"}}
        req = parse(
            {"contents": [user("x")], "tools": [{"googleSearch": {}}, {"functionDeclarations": [fn]}]}
        )

        assert [t.name for t in req.tools] == ["f"] and web_search(req.metadata) == {}
        assert req.warnings == [MAPPED.format(where="tools[0].googleSearch", kind="googleSearch")]

    @pytest.mark.parametrize("key", ["code_execution", "urlContext", "googleMaps"])
    def test_other_built_in_tools_are_removed_with_a_warning_not_refused(self, key: str) -> None:
        req = parse({"contents": [user("x")], "tools": [{key: {}}]})

        assert req.tools == [] and web_search(req.metadata) is None
        [warning] = req.warnings
        assert warning.startswith(f"tools[0].{key}: removed the hosted tool")

    def test_a_web_search_alone_is_rendered_as_google_search(self) -> None:
        request = ChatRequest(model="m", messages=[Message(role="user", content=[Text(text="hi")])])
        searching = request.model_copy(update={"metadata": {WEB_SEARCH: {"allowed_domains": ["a.org"]}}})

        assert "tools" not in gemini.render_request(request)
        assert gemini.render_request(searching)["tools"] == [{"googleSearch": {}}]
        validate_request_body(gemini.render_request(searching))

    def test_beside_function_declarations_the_web_search_is_left_out(self) -> None:
        request = ChatRequest(
            model="m",
            messages=[Message(role="user", content=[Text(text="hi")])],
            tools=[Tool(name="f")],
            metadata={WEB_SEARCH: {}},
        )

        assert [list(t) for t in gemini.render_request(request)["tools"]] == [["functionDeclarations"]]
