"""The mitmweb views and KeepStreams.

Each protocol's requests, answers and streams read as one conversation layout, whatever API carried
them; bodies that are not LLM traffic are left to mitmproxy's own views; a body the canonical model
cannot read is shown as it is, never as an error; KeepStreams keeps what the client received of a
stream so that mitmweb can show it. The bodies are the SDK-verified examples of docs/wire.md and
real bytes recorded through the proxy.
"""

from __future__ import annotations

import base64
import itertools
import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
import test_anthropic
import test_gemini
import test_openai_chat
import test_openai_responses
from google import genai
from google.genai import types
from mitmproxy import contentviews, exceptions, http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.contentviews import Metadata
from mitmproxy.io import tnetstring
from mitmproxy.net import encoding
from mitmproxy.test import taddons, tflow, tutils
from support.builders import CLIENT_KEY, CLIENTS, TOOL_RESULT, WEATHER_SCHEMA
from support.fakes import RecordedRequest

import translators
from addons import exchange as llm_exchange
from addons import views
from addons.exchange import Exchange
from addons.upstream import Upstream
from backends.config import BackendConfig
from backends.families import FAMILIES
from backends.routing import Target

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
MESSAGES_PATH = "/v1/messages"
GEMINI_PATH = "/v1beta/models/gemini-2.5-flash:generateContent"
GEMINI_STREAM_PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"

# -- docs/wire.md examples (verified against the official SDKs) ------------------------------


def _text(example: str | bytes) -> str:
    return example.decode() if isinstance(example, bytes) else example


# The docs/wire.md stream examples, as the translator tests hold them (one copy of each).
OPENAI_CHAT_TOOL_STREAM = test_openai_chat.STREAM_TOOL.decode()
RESPONSES_REASONING_STREAM = _text(test_openai_responses.STREAM_REASONING)
ANTHROPIC_THINKING_STREAM = _text(test_anthropic.STREAM_THINKING)
ANTHROPIC_ERROR_EVENT = _text(test_anthropic.STREAM_ERROR)
GEMINI_THOUGHT_STREAM = _text(test_gemini.STREAM_THOUGHTS)

OPENAI_CHAT_REQUEST = (
    r"""{
  "model": "gpt-5.5",
  "messages": [
    {"role": "developer", "content": "You are terse."},
    {"role": "user", "content": [
      {"type": "text", "text": "Describe the image, then get the weather in Paris."},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA","""
    r""" "detail": "auto"}}
    ]},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "call_1", "type": "function","""
    r""" "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\":18}"}
  ],
  "tools": [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": false},
    "strict": true}}],
  "tool_choice": "auto",
  "parallel_tool_calls": true,
  "max_completion_tokens": 1024,
  "reasoning_effort": "low",
  "stop": ["\n\nUser:"],
  "response_format": {"type": "text"},
  "stream": true,
  "stream_options": {"include_usage": true},
  "safety_identifier": "u-123"
}"""
)

OPENAI_CHAT_RESPONSE = r"""{
  "id": "chatcmpl-abc",
  "object": "chat.completion",
  "created": 1767225600,
  "model": "gpt-5.5-2026-01-01",
  "choices": [{
    "index": 0,
    "message": {"role": "assistant", "content": null, "refusal": null, "annotations": [],
      "tool_calls": [{"id": "call_1", "type": "function",
                      "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
    "logprobs": null,
    "finish_reason": "tool_calls"
  }],
  "usage": {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160,
    "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 22, "audio_tokens": 0,
      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
  "service_tier": "default",
  "system_fingerprint": null
}"""


OPENAI_ERROR = (
    r'{"error": {"message": "Incorrect API key provided: sk-abc***.", "type": "invalid_request_error", '
    r'"param": null, "code": "invalid_api_key"}}'
)

RESPONSES_REQUEST = (
    r"""{
  "model": "gpt-5.5",
  "instructions": "You are terse.",
  "input": [
    {"role": "user", "content": [
      {"type": "input_text", "text": "Describe the image, then get the weather in Paris."},
      {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA", "detail": "auto"}
    ]},
    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAABpXyZ0"},
    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather","""
    r""" "arguments": "{\"city\":\"Paris\"}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp_c\":18}"}
  ],
  "tools": [{"type": "function", "name": "get_weather", "description": "Current weather",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"], "additionalProperties": false},
             "strict": true}],
  "tool_choice": "auto",
  "reasoning": {"effort": "medium", "summary": "auto"},
  "include": ["reasoning.encrypted_content"],
  "store": false,
  "text": {"format": {"type": "json_schema", "name": "answer", "strict": true,
           "schema": {"type": "object", "properties": {"text": {"type": "string"}},
                      "required": ["text"], "additionalProperties": false}}},
  "max_output_tokens": 2048,
  "stream": true
}"""
)

RESPONSES_RESPONSE = (
    r"""{
  "id": "resp_1",
  "object": "response",
  "created_at": 1767225600,
  "status": "completed",
  "model": "gpt-5.5",
  "output": [
    {"type": "reasoning", "id": "rs_1","""
    r""" "summary": [{"type": "summary_text", "text": "Need the weather tool."}]},
    {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
     "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
     "arguments": "{\"city\":\"Paris\"}", "status": "completed"}
  ],
  "usage": {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
            "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 22}, "total_tokens": 160},
  "incomplete_details": null,
  "error": null,
  "instructions": null,
  "metadata": {},
  "parallel_tool_calls": true,
  "temperature": 1.0,
  "top_p": 1.0,
  "tool_choice": "auto",
  "tools": []
}"""
)


ANTHROPIC_REQUEST = (
    r"""{
  "model": "claude-sonnet-4-6",
  "max_tokens": 4096,
  "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
  "messages": [
    {"role": "user", "content": [
      {"type": "text", "text": "Describe the images, then get the weather in Paris."},
      {"type": "image", "source": {"type": "base64", "media_type": "image/png","""
    r""" "data": "iVBORw0KGgoAAAANSUhEUgAA"}},
      {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    ]},
    {"role": "assistant", "content": [
      {"type": "thinking", "thinking": "Need the weather tool.", "signature": "EqQBCkYIBBgCGkDx"},
      {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
    ]},
    {"role": "user", "content": [
      {"type": "tool_result", "tool_use_id": "toolu_01", "content": "{\"temp_c\":18}"},
      {"type": "text", "text": "Answer in Celsius."}
    ]}
  ],
  "tools": [{"name": "get_weather", "description": "Current weather",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},"""
    r""" "required": ["city"]}}],
  "tool_choice": {"type": "auto", "disable_parallel_tool_use": false},
  "thinking": {"type": "enabled", "budget_tokens": 2048},
  "stop_sequences": ["\n\nHuman:"],
  "metadata": {"user_id": "u-123"},
  "stream": true
}"""
)

ANTHROPIC_RESPONSE = r"""{
  "id": "msg_01",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-6",
  "content": [
    {"type": "thinking", "thinking": "The user wants the weather.", "signature": "EqQBCkYIBBgCGkDx"},
    {"type": "text", "text": "Checking."},
    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
  ],
  "stop_reason": "tool_use",
  "stop_sequence": null,
  "usage": {"input_tokens": 56, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1200,
            "output_tokens": 80, "output_tokens_details": {"thinking_tokens": 40}, "service_tier": "standard"}
}"""


GEMINI_REQUEST = (
    r"""{
  "systemInstruction": {"parts": [{"text": "You are terse."}]},
  "contents": [
    {"role": "user", "parts": [
      {"text": "Describe the images, then get the weather in Paris."},
      {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgoAAAANSUhEUgAA"}},
      {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}}
    ]},
    {"role": "model", "parts": [
      {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},"""
    r""" "thoughtSignature": "CiQBVKhcAbCdEfGh"}
    ]},
    {"role": "user", "parts": [
      {"functionResponse": {"name": "get_weather", "response": {"output": {"temp_c": 18}}}}
    ]}
  ],
  "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Current weather",
    "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}},"""
    r""" "required": ["city"]}}]}],
  "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
  "generationConfig": {
    "temperature": 0.2, "topP": 0.95, "maxOutputTokens": 4096, "stopSequences": ["\n\nUser:"],
    "responseMimeType": "text/plain",
    "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true}
  }
}"""
)

GEMINI_RESPONSE = (
    r"""{
  "candidates": [{
    "content": {"role": "model", "parts": [
      {"text": "**Planning** I should call the weather tool.", "thought": true},
      {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},"""
    r""" "thoughtSignature": "CiQBVKhcAbCdEfGh"}
    ]},
    "finishReason": "STOP",
    "index": 0
  }],
  "usageMetadata": {"promptTokenCount": 120, "cachedContentTokenCount": 64, "candidatesTokenCount": 18,
                    "thoughtsTokenCount": 40, "totalTokenCount": 178,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}]},
  "modelVersion": "gemini-2.5-flash",
  "responseId": "x1AbCdEfGh"
}"""
)


GEMINI_ARRAY_STREAM = json.dumps(
    [json.loads(line[len("data: ") :]) for line in GEMINI_THOUGHT_STREAM.splitlines() if line]
)
PROTOCOLS = {
    "openai": "openai-chat",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "responses": "openai-responses",
}
BACKENDS = ("openai", "anthropic", "gemini")


# -- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def keeper() -> views.KeepStreams:
    return views.KeepStreams()


@pytest.fixture(autouse=True)
def tctx(keeper: views.KeepStreams) -> Iterator[taddons.context]:
    """prettify_message reads ctx.options: every test runs inside a mitmproxy context."""
    views.register()
    with taddons.context(keeper, Proxyserver()) as context:  # Proxyserver: store_streamed_bodies
        yield context


def llm_flow(
    path: str,
    request: str | bytes = b"",
    response: str | bytes = b"",
    *,
    content_type: str = "application/json",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> http.HTTPFlow:
    flow = tflow.tflow(
        req=tutils.treq(method=b"POST", path=path.encode()), resp=tutils.tresp(status_code=status)
    )
    flow.request.content = request.encode() if isinstance(request, str) else request
    flow.request.headers.update({"content-type": "application/json", **(headers or {})})
    flow.response.content = response.encode() if isinstance(response, str) else response
    flow.response.headers["content-type"] = content_type
    return flow


def routed(client_protocol: str, backend: str, stream: bool = False) -> Exchange:
    """The exchange of a flow from a client of ``client_protocol`` to a ``backend`` family instance."""
    target = Target(backend, BackendConfig(type=backend), FAMILIES[backend], "fake-model")
    return Exchange(client_protocol, "front_door", {}, stream, f"{backend}:fake-model", target=target)


def shown(message: http.Message, flow: http.HTTPFlow) -> contentviews.ContentviewResult:
    return contentviews.prettify_message(message, flow)


def shown_request(path: str, body: str | bytes, **kwargs) -> contentviews.ContentviewResult:
    flow = llm_flow(path, body, **kwargs)
    return shown(flow.request, flow)


def shown_response(path: str, body: str | bytes, **kwargs) -> contentviews.ContentviewResult:
    flow = llm_flow(path, response=body, **kwargs)
    return shown(flow.response, flow)


def head(text: str) -> str:
    """A view's first line, unwrapped (``views.wrap`` continues a long line two columns in)."""
    first, *rest = text.split("\n")
    continued = [line.strip() for line in itertools.takewhile(lambda line: line.startswith("  "), rest)]
    return " ".join([first, *continued])


def shown_as_is(text: str, start: str) -> tuple[str, str]:
    """A fallback's (wrapped) reason line and the body shown after it, from its first ``start``."""
    at = text.index("\n" + start)
    return text[:at], text[at + 1 :]


def priorities(message: http.Message, flow: http.HTTPFlow) -> tuple[float, ...]:
    metadata = Metadata(flow=flow, http_message=message, content_type=message.headers.get("content-type"))
    data = message.content or b""
    ours = (views.LLMConversation(), views.LLMStream())
    return tuple(view.render_priority(data, metadata) for view in ours)


# -- requests -------------------------------------------------------------------------------------


def test_anthropic_request_reads_as_a_conversation():
    result = shown_request(MESSAGES_PATH, ANTHROPIC_REQUEST)
    assert result.view_name == "LLM Conversation"
    conversation, _, parameters = result.text.partition("\nparameters:\n")
    assert conversation == textwrap.dedent(
        """\
        anthropic request · model claude-sonnet-4-6
        system:
          You are terse.
          [cache_control {"type": "ephemeral"}]
        user:
          Describe the images, then get the weather in Paris.
          [image image/png, 18 B]
          [image url https://example.com/cat.jpg]
        assistant:
          reasoning:
            Need the weather tool.
            [signature EqQBCkYIBBgCGkDx]
          → get_weather({"city": "Paris"})  [toolu_01]
        user:
          ← get_weather result  [toolu_01]
            {"temp_c": 18}
          Answer in Celsius.
        tools:
          get_weather(city: string)
            Current weather"""
    )
    assert "  max_tokens: 4096" in parameters.split("\n")
    assert "  thinking.budget_tokens: 2048" in parameters.split("\n")
    assert '  stop_sequences: ["\\n\\nHuman:"]' in parameters.split("\n")


def test_openai_chat_request_shows_developer_prompt_image_tool_round_trip_and_parameters():
    lines = shown_request(CHAT_PATH, OPENAI_CHAT_REQUEST).text.split("\n")
    assert lines[:3] == ["openai-chat request · model gpt-5.5", "developer:", "  You are terse."]
    assert "  [image image/png, 18 B, detail auto]" in lines
    assert '  → get_weather({"city": "Paris"})  [call_1]' in lines
    result = lines.index("  ← get_weather result  [call_1]")
    assert lines[result - 1 : result + 2] == [
        "tool:",
        "  ← get_weather result  [call_1]",
        '    {"temp_c": 18}',
    ]
    assert lines[lines.index("  get_weather(city: string)") + 1] == "    Current weather"
    wire_names = {
        "  max_completion_tokens: 1024",
        '  reasoning_effort: "low"',
        "  stream_options.include_usage: true",
    }
    assert wire_names <= set(lines)


def test_gemini_request_takes_its_model_from_the_url():
    lines = shown_request(GEMINI_STREAM_PATH + "?alt=sse", GEMINI_REQUEST).text.split("\n")
    assert lines[0] == "gemini request · model gemini-2.5-flash · streamGenerateContent"  # not a body field
    assert lines[1:3] == ["systemInstruction:", "  You are terse."]
    assert "  [image url https://example.com/cat.jpg]" in lines
    assert "model:" in lines and "assistant:" not in lines
    result = next(i for i, line in enumerate(lines) if line.startswith("  ← get_weather result  ["))
    assert lines[result + 1] == '    {"temp_c": 18}'
    assert "  generationConfig.maxOutputTokens: 4096" in lines


def test_gemini_tool_call_shows_its_thought_signature():
    text = shown_request(GEMINI_PATH, GEMINI_REQUEST).text
    assert '→ get_weather({"city": "Paris"})' in text
    assert "[signature CiQBVKhcAbCdEfGh]" in text


def test_responses_request_reads_as_a_conversation():
    result = shown_request(RESPONSES_PATH, RESPONSES_REQUEST)
    assert result.text.startswith("openai-responses request · model gpt-5.5\ninstructions:\n  You are terse.")
    assert '→ get_weather({"city": "Paris"})' in result.text
    assert "function_call_output:\n  ← get_weather result  [call_1]" in result.text
    assert "  max_output_tokens: 2048" in result.text.split("\n")


def test_long_tool_arguments_are_indented_and_short_ones_stay_on_one_line():
    arguments = {"path": "/srv/project/src/module.py", "content": "print('hello')\n" * 4}
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "Write it."},
            {"role": "assistant", "tool_calls": [
                {"id": "call_9", "type": "function",
                 "function": {"name": "write", "arguments": json.dumps(arguments)}},
                {"id": "call_10", "type": "function",
                 "function": {"name": "read", "arguments": '{"path":"a"}'}},
            ]},
        ],
    }  # fmt: skip
    lines = shown_request(CHAT_PATH, json.dumps(body)).text.split("\n")
    start = lines.index("  → write({")
    assert lines[start + 1 : start + 4] == [
        '    "path": "/srv/project/src/module.py",',
        "    \"content\": \"print('hello')\\nprint('hello')\\nprint('hello')\\nprint('hello')\\n\"",
        "  })  [call_9]",
    ]
    assert '  → read({"path": "a"})  [call_10]' in lines


def test_images_show_their_decoded_size_instead_of_their_data():
    data = base64.b64encode(bytes(12595)).decode()
    image = {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}}
    body = {"model": "m", "messages": [{"role": "user", "content": [image]}]}
    text = shown_request(CHAT_PATH, json.dumps(body)).text
    assert "  [image image/jpeg, 12.3 KB]" in text.split("\n")
    assert data[:40] not in text


def test_long_signatures_are_shortened():
    signature = "S" * 8 + "x" * 384 + "E" * 8
    thinking = {"type": "thinking", "thinking": "Hmm.", "signature": signature}
    body = {
        "model": "m",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [thinking]}],
    }
    text = shown_request(MESSAGES_PATH, json.dumps(body)).text
    assert "[signature SSSSSSSS…EEEEEEEE (400 chars)]" in text
    assert signature not in text


# -- whole responses ------------------------------------------------------------------------------


def test_openai_chat_response_shows_tool_call_stop_and_usage():
    result = shown_response(CHAT_PATH, OPENAI_CHAT_RESPONSE)
    assert result.view_name == "LLM Conversation"
    assert result.text == textwrap.dedent(
        """\
        openai-chat response · model gpt-5.5-2026-01-01 · id chatcmpl-abc
        assistant:
          → get_weather({"city": "Paris"})  [call_1]
        stop: tool_calls
        usage: input 120 · output 40 · cache read 64 · reasoning 22"""
    )


def test_anthropic_response_shows_thinking_text_and_tool_call_in_order():
    lines = shown_response(MESSAGES_PATH, ANTHROPIC_RESPONSE).text.split("\n")
    assert lines[:7] == [
        "anthropic response · model claude-sonnet-4-6 · id msg_01",
        "assistant:",
        "  reasoning:",
        "    The user wants the weather.",
        "    [signature EqQBCkYIBBgCGkDx]",
        "  Checking.",
        '  → get_weather({"city": "Paris"})  [toolu_01]',
    ]
    assert "stop: tool_use" in lines


def test_gemini_response_shows_thought_and_call():
    text = shown_response(GEMINI_PATH, GEMINI_RESPONSE).text
    assert text.split("\n")[:3] == [
        "gemini response · model gemini-2.5-flash · id x1AbCdEfGh",
        "model:",
        "  reasoning:",
    ]
    assert "stop: STOP" in text.split("\n")
    assert "**Planning** I should call the weather tool." in text
    assert "usage: input 120 · output 58 · cache read 64 · reasoning 40" in text


def test_responses_response_reads_as_a_conversation():
    text = shown_response(RESPONSES_PATH, RESPONSES_RESPONSE).text
    assert text.startswith("openai-responses response · model gpt-5.5 · id resp_1\nassistant:\n")
    assert "Need the weather tool." in text and "Checking." in text
    assert '→ get_weather({"city": "Paris"})' in text


def test_error_answer_shows_the_protocols_reading_then_the_body():
    result = shown_response(CHAT_PATH, OPENAI_ERROR, status=401)
    first, _, body = result.text.partition("\n")
    assert first == "openai-chat error · 401 authentication: Incorrect API key provided: sk-abc***."
    assert json.loads(body) == json.loads(OPENAI_ERROR)


# -- streams --------------------------------------------------------------------------------------


def test_openai_chat_stream_is_reassembled():
    result = shown_response(CHAT_PATH, OPENAI_CHAT_TOOL_STREAM, content_type="text/event-stream")
    assert result.view_name == "LLM Stream"
    assert result.text == textwrap.dedent(
        """\
        openai-chat stream, reassembled · model gpt-5.5 · id chatcmpl-2
        assistant:
          → get_weather({"city": "Paris"})  [call_1]
        stop: tool_calls"""
    )


def test_anthropic_stream_is_reassembled_with_its_thinking():
    result = shown_response(MESSAGES_PATH, ANTHROPIC_THINKING_STREAM, content_type="text/event-stream")
    assert result.text.split("\n") == [
        "anthropic stream, reassembled · model claude-sonnet-4-6 · id msg_03",
        "assistant:",
        "  reasoning:",
        "    18 C is mild.",
        "    [signature EqQBCkYIBBgCGkDx]",
        "  It is 18 °C.",
        "stop: end_turn",
        "usage: input 30 · output 61 · reasoning 44",
    ]


def test_stream_error_event_is_shown():
    result = shown_response(MESSAGES_PATH, ANTHROPIC_ERROR_EVENT, content_type="text/event-stream")
    assert "error: overloaded: Overloaded" in result.text.split("\n")


def test_gemini_sse_and_json_array_streams_read_the_same():
    sse_path = GEMINI_STREAM_PATH + "?alt=sse"
    sse = shown_response(sse_path, GEMINI_THOUGHT_STREAM, content_type="text/event-stream")
    array = shown_response(GEMINI_STREAM_PATH, GEMINI_ARRAY_STREAM)
    assert sse.view_name == array.view_name == "LLM Stream"
    assert sse.text == array.text
    assert "  It is 18 °C." in sse.text.split("\n")
    assert "  reasoning: [signature CiQBVKhcAbCdEfGh]" in sse.text.split("\n")


def test_responses_stream_is_reassembled():
    text = shown_response(RESPONSES_PATH, RESPONSES_REASONING_STREAM, content_type="text/event-stream").text
    assert text.startswith("openai-responses stream, reassembled · model gpt-5.5 · id resp_3")
    assert "Comparing units." in text and "  18 °C." in text.split("\n")


# -- choosing the view ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body, content_type",
    [
        ("/api/users", '{"users": [{"name": "ada"}]}', "application/json"),
        ("/v1/models", '{"object": "list", "data": [{"id": "gpt-5.5"}]}', "application/json"),
        ("/", "<html><body>hello</body></html>", "text/html"),
        ("/ticker", 'data: {"price": 1}\n\n', "text/event-stream"),
        (CHAT_PATH, "", "application/json"),
    ],
    ids=["json-api", "models-list", "html", "other-sse", "empty"],
)
def test_bodies_that_are_not_llm_traffic_are_left_to_mitmproxy(path, body, content_type):
    flow = llm_flow(path, response=body, content_type=content_type)
    conversation, stream = priorities(flow.response, flow)
    assert conversation < 0 and stream < 0
    assert not (shown(flow.response, flow).view_name or "").startswith("LLM")


def test_llm_bodies_beat_the_json_view():
    flow = llm_flow(CHAT_PATH, OPENAI_CHAT_REQUEST, OPENAI_CHAT_RESPONSE)
    json_priority = contentviews.registry["json"].render_priority(
        flow.request.content, Metadata(flow=flow, http_message=flow.request, content_type="application/json")
    )
    assert priorities(flow.request, flow)[0] > json_priority
    assert priorities(flow.response, flow)[0] > json_priority


@pytest.mark.parametrize(
    "body, headers, protocol",
    [
        (OPENAI_CHAT_REQUEST, {}, "openai-chat request"),
        (ANTHROPIC_REQUEST, {"anthropic-version": "2023-06-01"}, "anthropic request"),
        (GEMINI_RESPONSE, {}, "gemini response"),
        (ANTHROPIC_RESPONSE, {}, "anthropic response"),
    ],
)
def test_unknown_paths_are_recognised_by_the_body(body, headers, protocol):
    flow = llm_flow("/gateway/llm", body, body, headers=headers)
    message = flow.request if protocol.endswith("request") else flow.response
    assert shown(message, flow).text.startswith(protocol)


def test_routed_flow_request_is_the_providers_and_response_the_clients():
    """mitmweb shows the request as the provider received it and the answer as the client got it."""
    flow = llm_flow("/relay", ANTHROPIC_REQUEST, OPENAI_CHAT_RESPONSE)
    llm_exchange.put(flow, routed("openai-chat", "anthropic"))
    request, response = shown(flow.request, flow), shown(flow.response, flow)
    assert head(request.text) == "anthropic request · model claude-sonnet-4-6 · translated from openai-chat"
    assert head(response.text) == (
        "openai-chat response · model gpt-5.5-2026-01-01 · id chatcmpl-abc · translated from anthropic"
    )


def test_registering_again_replaces_the_views():
    views.register()
    views.register()
    ours = sorted(name for name in contentviews.registry if name.startswith("llm"))
    assert ours == ["llm conversation", "llm stream"]


# -- fallbacks ------------------------------------------------------------------------------------


def test_damaged_json_is_shown_as_text():
    result = shown_request(CHAT_PATH, OPENAI_CHAT_REQUEST[:200])
    assert result.view_name == "LLM Conversation"
    first, rest = shown_as_is(result.text, "{")
    assert first.startswith("openai-chat request (shown as is: not JSON: ")
    assert rest == OPENAI_CHAT_REQUEST[:200]


def test_damaged_stream_is_reassembled_as_far_as_it_goes():
    cut = ANTHROPIC_THINKING_STREAM[: ANTHROPIC_THINKING_STREAM.index("It is") + 2]
    result = shown_response(MESSAGES_PATH, cut, content_type="text/event-stream")
    assert result.view_name == "LLM Stream"
    assert "    18 C is mild." in result.text.split("\n")
    assert "error: upstream_error: " in result.text


def test_damaged_json_array_stream_falls_back_to_text():
    result = shown_response(GEMINI_STREAM_PATH, GEMINI_ARRAY_STREAM[:-40])
    assert result.view_name == "LLM Stream"
    assert result.text.startswith("gemini stream (shown as is: not JSON: ")


@pytest.mark.parametrize(
    "path, protocol, body, reason",
    [
        (
            RESPONSES_PATH,
            "openai-responses",
            {
                "model": "gpt-5.5",
                "input": [{"type": "no_such_item", "call_id": "c1", "name": "apply_patch"}],
            },
            "a 'no_such_item' item cannot be translated",
        ),
        (
            GEMINI_PATH,
            "gemini",
            {
                "cachedContent": "cachedContents/abc",
                "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            },
            "cachedContent",
        ),
    ],
    ids=["unknown-responses-item", "gemini-cached-content"],
)
def test_same_protocol_body_the_canonical_model_refuses_is_pretty_json(path, protocol, body, reason):
    """Pass-through routes carry what translation cannot (docs/snags.md #22); the view still shows it."""
    result = shown_request(path, json.dumps(body))
    first, rest = shown_as_is(result.text, "{")
    assert result.view_name == "LLM Conversation"
    assert first.startswith(f"{protocol} request (shown as is: ") and reason in " ".join(first.split())
    assert rest == json.dumps(body, indent=2)


def test_responses_bodies_fall_back_to_json_without_the_translator(monkeypatch):
    real_get = translators.get

    def without_responses(name: str):
        if name == "openai-responses":
            raise KeyError(name)
        return real_get(name)

    monkeypatch.setattr(translators, "get", without_responses)
    request = shown_request(RESPONSES_PATH, RESPONSES_REQUEST)
    stream = shown_response(RESPONSES_PATH, RESPONSES_REASONING_STREAM, content_type="text/event-stream")
    assert request.view_name == "LLM Conversation"
    assert request.text.startswith(
        "openai-responses request (shown as is: no openai-responses translator available)\n"
    )
    assert json.loads(request.text.partition("\n")[2]) == json.loads(RESPONSES_REQUEST)
    lines = stream.text.split("\n")
    assert lines[0] == "openai-responses stream (shown as events: no openai-responses translator available)"
    assert lines[1].startswith('response.created: {"type":"response.created","sequence_number":0,')
    assert all(len(line) <= views.WIDTH for line in lines)


def test_body_without_an_exchange_and_not_llm_is_refused_when_chosen_by_hand():
    flow = llm_flow("/api/users", response='{"users": []}')
    result = contentviews.prettify_message(flow.response, flow, view_name="LLM Conversation")
    assert result.text.startswith("LLM body (shown as is: not recognised as an LLM request or response)")


# -- KeepStreams ----------------------------------------------------------------------------------


def streamed_flow(stream: object, exchange: Exchange | None = None) -> http.HTTPFlow:
    """A flow at ``responseheaders`` time whose response will stream through ``stream``."""
    flow = llm_flow(CHAT_PATH, OPENAI_CHAT_REQUEST, content_type="text/event-stream")
    llm_exchange.put(flow, exchange or routed("openai-chat", "openai", stream=True))
    flow.response.stream = stream
    return flow


def run_stream(keeper: views.KeepStreams, flow: http.HTTPFlow, chunks: list[bytes]) -> list[list[bytes]]:
    """What mitmproxy does: headers hook, each chunk then b"" through the stream, no body, response hook."""
    keeper.responseheaders(flow)
    out = [list(flow.response.stream(chunk)) for chunk in [*chunks, b""]]
    flow.response.raw_content = None
    keeper.response(flow)
    return out


def test_kept_body_is_what_the_client_received(keeper):
    def translate(chunk: bytes) -> list[bytes]:
        return [chunk.upper()] if chunk else [b"|END"]

    flow = streamed_flow(translate)
    out = run_stream(keeper, flow, [b"ab", b"cd"])
    assert out == [[b"AB"], [b"CD"], [b"|END"]]
    assert flow.response.raw_content == b"ABCD|END"
    assert flow.comment == ""


@pytest.mark.parametrize(
    "inner",
    [lambda c: c, lambda c: iter([c] if c else []), lambda c: [c[:1], c[1:]] if c else []],
    ids=["bytes", "iterator", "several-pieces"],
)
def test_wrapped_callable_keeps_the_stream_contract(keeper, inner):
    """Lists of bytes out, never an empty element (a chunked client would read it as the end)."""
    flow = streamed_flow(inner)
    out = run_stream(keeper, flow, [b"data: 1\n\n", b"data: 2\n\n"])
    assert all(isinstance(pieces, list) and all(pieces) for pieces in out)
    assert out[-1] == []
    assert flow.response.raw_content == b"data: 1\n\ndata: 2\n\n"


def test_plain_streaming_is_kept_too(keeper):
    flow = streamed_flow(True)
    out = run_stream(keeper, flow, [b"data: x\n\n"])
    assert out == [[b"data: x\n\n"], []]
    assert flow.response.raw_content == b"data: x\n\n"


def test_stream_beyond_the_limit_is_cut_and_marked(keeper, tctx):
    tctx.configure(keeper, llm_keep_stream_kb=1)
    flow = streamed_flow(True)
    flow.comment = "openai:gpt-5.5 → https://api.openai.com/v1/chat/completions"
    out = run_stream(keeper, flow, [b"a" * 600, b"b" * 600, b"c" * 600])
    assert [len(b"".join(pieces)) for pieces in out] == [600, 600, 600, 0]  # the client gets everything
    assert flow.response.raw_content == b"a" * 600 + b"b" * 424
    assert flow.comment.split("\n") == [
        "openai:gpt-5.5 → https://api.openai.com/v1/chat/completions",
        "streamed body: kept the first 1 KB of 1800 bytes",
    ]


def test_stream_view_says_when_the_kept_stream_was_cut(keeper, tctx):
    tctx.configure(keeper, llm_keep_stream_kb=1)
    data = ANTHROPIC_THINKING_STREAM.encode()
    flow = streamed_flow(True, routed("anthropic", "anthropic", stream=True))
    run_stream(keeper, flow, [data[:600], data[600:]])
    lines = shown(flow.response, flow).text.split("\n")
    assert "    18 C is mild." in lines
    assert lines[-1] == f"(kept only the first 1024 of {len(data)} bytes: the rest is not shown)"


def test_stream_cut_off_midway_is_kept_for_the_error_flow(keeper):
    flow = streamed_flow(True)
    keeper.responseheaders(flow)
    flow.response.stream(b"data: partial")
    flow.response.raw_content = None
    keeper.error(flow)
    assert flow.response.raw_content == b"data: partial"


@pytest.mark.parametrize("case", ["off", "not-llm", "not-streamed", "mitmproxy-stores-a-passthrough"])
def test_streams_are_left_alone(keeper, tctx, case):
    flow = streamed_flow(True)
    exchange = llm_exchange.get(flow)
    if exchange is not None and case == "mitmproxy-stores-a-passthrough":
        exchange.upstream = Upstream(exchange.target, PROVIDER_URL, {}, None, True)
    if case == "off":
        tctx.configure(keeper, llm_keep_stream_kb=0)
    elif case == "not-llm":
        llm_exchange.drop(flow)
    elif case == "not-streamed":
        flow.response.stream = False
    else:
        tctx.options.store_streamed_bodies = True
    keeper.responseheaders(flow)
    assert not isinstance(flow.response.stream, views.StreamTee)


def test_a_body_mitmproxy_kept_is_not_replaced(keeper):
    flow = streamed_flow(True)
    keeper.responseheaders(flow)
    flow.response.stream(b"data: seen\n\n")
    flow.response.raw_content = b"stored by mitmproxy"
    keeper.response(flow)
    assert flow.response.raw_content == b"stored by mitmproxy"


def test_negative_limit_is_refused(keeper, tctx):
    with pytest.raises(exceptions.OptionsError, match="llm_keep_stream_kb"):
        tctx.configure(keeper, llm_keep_stream_kb=-1)


def test_kept_translated_stream_reads_in_the_stream_view(keeper):
    """The real chain: TranslateResponses' translator turns Anthropic into OpenAI, KeepStreams wraps it."""
    from addons.translate import StreamTranslator

    exchange = routed("openai-chat", "anthropic", stream=True)
    exchange.request = translators.get("openai-chat").parse_request(json.loads(OPENAI_CHAT_REQUEST))
    encoder = translators.get("openai-chat").StreamEncoder(exchange.request)
    translator = StreamTranslator(translators.get("anthropic").StreamDecoder(), encoder, exchange)
    flow = streamed_flow(translator, exchange)
    data = ANTHROPIC_THINKING_STREAM.encode()
    out = run_stream(keeper, flow, [data[i : i + 7] for i in range(0, len(data), 7)])
    assert flow.response.raw_content == b"".join(piece for pieces in out for piece in pieces)
    result = shown(flow.response, flow)
    assert result.view_name == "LLM Stream"
    lines = result.text.split("\n")
    assert lines[0].startswith("openai-chat stream, reassembled · model claude-sonnet-4-6 · id ")
    assert head(result.text).endswith(" · translated from anthropic")
    assert (
        "  It is 18 °C." in lines and "stop: stop" in lines
    )  # Chat's finish_reason for Anthropic's end_turn


# -- real bytes through the proxy -----------------------------------------------------------------


Answer = tuple[httpx2.Headers, bytearray]


class Tape(httpx2.BaseTransport):
    """An httpx2 transport (what the SDKs use) that records each answer's headers and body bytes as
    the client read them."""

    def __init__(self) -> None:
        self.inner = httpx2.HTTPTransport()
        self.answers: list[Answer] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        body = bytearray()
        self.answers.append((response.headers, body))
        stream = Recorded(response.stream, body)
        return httpx2.Response(
            response.status_code, headers=response.headers, stream=stream, extensions=response.extensions
        )

    def close(self) -> None:
        self.inner.close()


class Recorded(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, sink: bytearray) -> None:
        self.inner, self.sink = inner, sink

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.sink += chunk
            yield chunk

    def close(self) -> None:
        self.inner.close()


class ResponsesClient:
    """The official SDK's Responses API, shaped like the e2e matrix's clients."""

    def __init__(self, proxy, http_client: httpx2.Client) -> None:
        url = proxy.front_url + "/v1"
        self.client = openai.OpenAI(base_url=url, api_key=CLIENT_KEY, max_retries=0, http_client=http_client)
        self.items: list[dict] = [{"role": "user", "content": "What is the weather in Paris?"}]

    def ask(self, model: str, stream: bool, tools: bool):
        tool = {"type": "function", "name": "get_weather", "description": "Weather"}
        tool["parameters"] = WEATHER_SCHEMA
        kwargs = {"model": model, "input": self.items, "tools": [tool] if tools else []}
        if not stream:
            return self.client.responses.create(**kwargs)
        with self.client.responses.stream(**kwargs) as events:
            for _ in events:
                pass
            return events.get_final_response()

    def answer_tool(self, response, result: str) -> None:
        call = next(item for item in response.output if item.type == "function_call")
        self.items.append(call.model_dump(include={"type", "call_id", "name", "arguments"}))
        self.items.append({"type": "function_call_output", "call_id": call.call_id, "output": result})


def recording_client(kind: str, proxy, tape: Tape):
    """The e2e matrix's SDK client of ``kind`` whose HTTP goes through ``tape``."""
    http_client = httpx2.Client(transport=tape, timeout=30)
    if kind == "responses":
        return ResponsesClient(proxy, http_client)
    client = CLIENTS[kind](proxy)
    if kind == "gemini":
        options = types.HttpOptions(base_url=proxy.front_url, httpx_client=http_client)
        client.client = genai.Client(api_key=CLIENT_KEY, http_options=options)
    else:
        client.client = client.client.with_options(http_client=http_client)
    return client


def recorded_flow(
    client: str, backend: str, stream: bool, upstream: RecordedRequest, answer: Answer
) -> http.HTTPFlow:
    """The flow as mitmweb holds it: the provider's request, the client's answer, the exchange."""
    headers, body = answer
    query = "&".join(f"{k}={v}" for k, v in upstream.query.items())
    path = f"{upstream.path}?{query}" if query else upstream.path
    flow = llm_flow(path, upstream.raw, bytes(body), content_type=headers.get("content-type", ""))
    llm_exchange.put(flow, routed(PROTOCOLS[client], backend, stream))
    return flow


# The fake OpenAI serves Chat Completions only, where a Responses client would pass straight through.
ROUTES = [(c, b) for c in PROTOCOLS for b in BACKENDS if (c, b) != ("responses", "openai")]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("client, backend", ROUTES, ids=[f"{c}-to-{b}" for c, b in ROUTES])
def test_recorded_tool_round_trip_reads_as_conversation(proxy, fakes, client, backend, stream):
    tape = Tape()
    sdk = recording_client(client, proxy, tape)
    first = sdk.ask(f"{backend}:fake-model", stream=stream, tools=True)
    sdk.answer_tool(first, TOOL_RESULT)
    sdk.ask(f"{backend}:fake-model", stream=stream, tools=True)
    upstream = getattr(fakes, backend).requests
    call, result = (
        recorded_flow(client, backend, stream, u, a) for u, a in zip(upstream, tape.answers, strict=True)
    )

    asked = shown(result.request, result)
    assert asked.view_name == "LLM Conversation"
    assert asked.text.startswith(f"{PROTOCOLS[backend]} request · model fake-model")
    assert '→ get_weather({"city": "Paris"})' in asked.text
    assert "← get_weather result" in asked.text and TOOL_RESULT in asked.text
    tool = asked.text.split("\n").index("  get_weather(city: string)")
    assert asked.text.split("\n")[tool + 1] == "    Weather"

    answers = [shown(call.response, call), shown(result.response, result)]
    assert {a.view_name for a in answers} == {"LLM Stream" if stream else "LLM Conversation"}
    assert all(a.text.startswith(PROTOCOLS[client]) for a in answers)
    assert '  → get_weather({"city": "Paris"})' in answers[0].text
    assert f"  Tool said: {TOOL_RESULT}" in answers[1].text.split("\n")
    if PROTOCOLS[client] != PROTOCOLS[backend]:
        assert head(answers[1].text).endswith(f"· translated from {PROTOCOLS[backend]}")


def test_recorded_gemini_json_array_stream_is_reassembled(proxy, fakes):
    url = f"{proxy.front_url}/v1beta/models/openai:fake-model:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    answer = httpx2.post(url, json=body, headers={"x-goog-api-key": CLIENT_KEY}, timeout=30)
    content_type = answer.headers["content-type"]
    flow = llm_flow(GEMINI_STREAM_PATH, json.dumps(body), answer.content, content_type=content_type)
    llm_exchange.put(flow, routed("gemini", "openai", stream=True))
    result = shown(flow.response, flow)
    assert answer.content.startswith(b"[")
    assert result.view_name == "LLM Stream"
    assert "  Hello from openai!" in result.text.split("\n")


# The views as mitmweb will use them, inside a real proxy (whose entry script registers them and
# keeps streamed bodies): this script records what the views show of each LLM flow. The openai
# SDK closes the connection at [DONE], so a stream may end in mitmproxy's error hook instead.
RECORDER = """
import base64, json, pathlib
from mitmproxy import contentviews

OUT = pathlib.Path(__file__).parent / "flows"
OUT.mkdir(exist_ok=True)


class Record:
    def response(self, flow):
        if flow.metadata.get("llm") is None or (OUT / f"{flow.id}.json").exists():
            return
        record = {}
        for name in ("request", "response"):
            result = contentviews.prettify_message(getattr(flow, name), flow)
            record[name] = [result.view_name, result.text]
        record["kept"] = base64.b64encode(flow.response.raw_content or b"").decode()
        (OUT / "partial").write_text(json.dumps(record))
        (OUT / "partial").rename(OUT / f"{flow.id}.json")

    error = response


addons = [Record()]
"""


def test_mitmweb_sees_the_stream_the_client_received(start_proxy, fakes, tmp_path):
    (tmp_path / "recorder.py").write_text(RECORDER)
    proxy = start_proxy(fakes.llm_yaml(), ["-s", str(tmp_path / "recorder.py")])
    tape = Tape()
    turn = recording_client("openai", proxy, tape).ask("anthropic:fake-model", stream=True, tools=False)
    assert turn.text == "Hello from anthropic!"
    records = wait_for_files(tmp_path / "flows")
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert base64.b64decode(record["kept"]) == bytes(tape.answers[0][1])
    request_view, request_text = record["request"]
    response_view, response_text = record["response"]
    assert (request_view, response_view) == ("LLM Conversation", "LLM Stream")
    client, provider = request_text.split("\n\n── provider side ── ")
    assert client.startswith(
        views.TITLES["client request"] + f"\nPOST {proxy.front_url}/v1/chat/completions\n"
    )
    assert "openai-chat request · model anthropic:fake-model" in client
    assert {"  stream_options.include_usage: true", "  authorization: [redacted]"} <= set(client.split("\n"))
    assert provider.startswith(
        f"the request as the provider received it\nPOST {fakes.anthropic.base_url}/v1/messages"
    )
    assert "  max_tokens: 8192  (added by the proxy)" in provider.split("\n")
    assert "  x-api-key: [redacted] (the backend's key, set by the proxy)" in provider.split("\n")
    answered, received = response_text.split("\n\n── client side ── ")
    assert answered.startswith(views.TITLES["provider answer"] + " (HTTP 200)\nanthropic stream, reassembled")
    assert "stop: end_turn" in answered.split("\n") and "stop: stop" in received.split("\n")
    assert "  Hello from anthropic!" in received.split("\n")


def wait_for_files(directory: Path, timeout: float = 5.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while not (files := sorted(directory.glob("*.json"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return files


# -- the wire's words and the proxy's marks -------------------------------------------------------


def test_tool_descriptions_and_parameter_descriptions_are_shown_in_full_and_folded():
    description = "Run a shell command in the sandbox. " * 6 + "\nSecond paragraph: never use sudo."
    schema = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The command line, as one string."},
            "timeout": {"type": "integer"},
        },
        "required": ["command"],
    }
    tool = {
        "type": "function",
        "function": {"name": "bash", "description": description, "parameters": schema},
    }
    body = {"model": "m", "messages": [{"role": "user", "content": "ls"}], "tools": [tool]}
    lines = shown_request(CHAT_PATH, json.dumps(body)).text.split("\n")
    start = lines.index("  bash(command: string, timeout?: integer)")
    folded = lines[start + 1 : lines.index("    Second paragraph: never use sudo.")]
    assert len(folded) > 1 and all(len(line) <= views.WIDTH for line in folded)
    assert " ".join(line.strip() for line in folded) == description.split("\n")[0].strip()
    assert "    command: string — The command line, as one string." in lines
    assert not any(line.strip().startswith("timeout") for line in lines[1:])  # the signature says it all


def test_long_lines_are_wrapped_and_nothing_is_lost():
    words = [f"word{i}" for i in range(80)]
    body = {"model": "m", "messages": [{"role": "user", "content": " ".join(words)}]}
    lines = shown_request(CHAT_PATH, json.dumps(body)).text.split("\n")
    said = lines[lines.index("user:") + 1 :]
    assert len(said) > 1 and all(len(line) <= views.WIDTH for line in said)
    assert said[0].startswith("  word0 ") and all(line.startswith("    ") for line in said[1:])
    assert " ".join(line.strip() for line in said).split() == words


def test_zero_counters_are_left_out():
    answer = json.loads(ANTHROPIC_RESPONSE)
    answer["usage"] = {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 0}
    lines = shown_response(MESSAGES_PATH, json.dumps(answer)).text.split("\n")
    assert lines[-1] == "usage: input 7 · output 3"


# -- both sides, in process -----------------------------------------------------------------------

CLIENT_URL = "http://127.0.0.1:8000/v1/chat/completions"
PROVIDER_URL = "https://api.anthropic.example/v1/messages"


def sided_exchange(client_body: dict, provider_body: dict, stream: bool = False) -> Exchange:
    """A routed openai-chat → anthropic exchange as the front door and the egress leave it."""
    ex = routed("openai-chat", "anthropic", stream=stream)
    assert ex.target is not None
    ex.client_url = CLIENT_URL
    ex.client_headers = {
        "Host": "127.0.0.1:9",
        "authorization": f"Bearer {CLIENT_KEY}",
        "user-agent": "sdk/1",
    }
    ex.client_content = json.dumps(client_body).encode()
    headers = {"anthropic-version": "2023-06-01"}
    ex.commit(Upstream(ex.target, PROVIDER_URL, headers, json.dumps(provider_body).encode(), False))
    ex.first_byte = time.time()
    return ex


CLIENT_BODY = {"model": "anthropic:m", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.5}
PROVIDER_BODY = {
    "model": "m",
    "messages": [{"role": "user", "content": "Hi"}],
    "max_tokens": 8192,
    "temperature": 0.2,
    "top_p": 0.9,
}


def test_the_request_tab_shows_the_clients_request_then_the_providers_with_the_proxys_values_marked(keeper):
    ex = sided_exchange(CLIENT_BODY, PROVIDER_BODY)
    flow = llm_flow(MESSAGES_PATH, ex.upstream.body, ANTHROPIC_RESPONSE)
    llm_exchange.put(flow, ex)
    text = shown(flow.request, flow).text
    client, provider = (part.split("\n") for part in text.split("\n\n"))
    assert client[:3] == [
        views.TITLES["client request"],
        f"POST {CLIENT_URL}",
        "openai-chat request · model anthropic:m",
    ]
    assert {"  Host: 127.0.0.1:8000", "  authorization: [redacted]", "  user-agent: sdk/1"} <= set(client)
    assert provider[:2] == [views.TITLES["provider request"], f"POST {PROVIDER_URL}"]
    assert "  max_tokens: 8192  (added by the proxy)" in provider
    assert "  temperature: 0.2  (set by the proxy; the client sent 0.5)" in provider
    assert "  top_p: 0.9  (added by the proxy)" in provider
    assert "  x-api-key: [redacted] (the backend's key, set by the proxy)" in provider
    assert CLIENT_KEY not in text


def test_keep_streams_records_the_providers_stream_within_the_budget(keeper, tctx):
    tctx.configure(keeper, llm_keep_stream_kb=1)
    ex = sided_exchange(CLIENT_BODY, PROVIDER_BODY, stream=True)
    flow = streamed_flow(lambda chunk: [chunk.upper()] if chunk else [], ex)
    run_stream(keeper, flow, [b"a" * 700, b"b" * 700])
    answer = flow.metadata[views.SIDES]["answer"]
    assert answer["content"] == b"a" * 700 + b"b" * 324  # the provider's bytes, not the client's
    assert answer["seen"] == 1400
    assert flow.response.raw_content == b"A" * 700 + b"B" * 324


def test_a_passthrough_stream_keeps_one_copy(keeper):
    ex = sided_exchange(CLIENT_BODY, PROVIDER_BODY, stream=True)
    assert ex.upstream is not None
    ex.upstream.passthrough = True
    flow = streamed_flow(True, ex)
    run_stream(keeper, flow, [b"data: x\n\n"])
    sides = flow.metadata[views.SIDES]
    assert sides["passthrough"] and "answer" not in sides
    assert flow.response.raw_content == b"data: x\n\n"


def test_saved_sides_read_back_without_the_exchange(keeper):
    """What mitmdump -w writes (tnetstring of the flow's state) shows both sides when read back."""
    ex = sided_exchange(CLIENT_BODY, PROVIDER_BODY)
    flow = llm_flow(MESSAGES_PATH, ex.upstream.body, OPENAI_CHAT_RESPONSE)
    llm_exchange.put(flow, ex)
    ex.upstream_status, ex.upstream_content = 200, ANTHROPIC_RESPONSE.encode()
    keeper.response(flow)
    llm_exchange.publish(flow)
    saved = http.HTTPFlow.from_state(tnetstring.loads(tnetstring.dumps(flow.get_state())))
    assert llm_exchange.get(saved) is None
    text = shown(saved.response, saved).text
    sent, received = text.split("\n\n")
    assert sent.startswith(views.TITLES["provider answer"] + " (HTTP 200)\nanthropic response")
    assert "stop: tool_use" in sent.split("\n")
    assert received.startswith(views.TITLES["client answer"] + "\nopenai-chat response")
    assert "stop: tool_calls" in received.split("\n")


class Secrets:
    """Stands in for the Settings addon: its ``redact``."""

    name = "settings"

    def redact(self, content: bytes) -> bytes:
        return content.replace(b"sk-secret", b"[redacted]")


def test_a_providers_error_body_is_recorded_without_the_key(keeper, tctx):
    tctx.master.addons.add(Secrets())
    ex = sided_exchange(CLIENT_BODY, PROVIDER_BODY)
    flow = llm_flow(MESSAGES_PATH, ex.upstream.body, b"{}", status=401)
    llm_exchange.put(flow, ex)
    ex.upstream_status, ex.upstream_content = 401, b'{"error": {"message": "bad key sk-secret"}}'
    keeper.response(flow)
    assert flow.metadata[views.SIDES]["answer"]["content"] == b'{"error": {"message": "bad key [redacted]"}}'


def test_nested_parameters_are_shown_with_their_members():
    todo = {
        "type": "object",
        "properties": {
            "content": {"type": "string", "description": "What to do"},
            "status": {"type": "string", "enum": ["pending", "done"]},
        },
        "required": ["content", "status"],
    }
    schema = {
        "type": "object",
        "properties": {"todos": {"type": "array", "items": todo}},
        "required": ["todos"],
    }
    tool = {"name": "TodoWrite", "description": "Update the list.", "input_schema": schema}
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Plan."}],
        "tools": [tool],
    }
    lines = shown_request(MESSAGES_PATH, json.dumps(body)).text.split("\n")
    start = lines.index("  TodoWrite(todos: object[])")
    assert lines[start + 1 : start + 5] == [
        "    Update the list.",
        "    todos: object[]",
        "      content: string — What to do",
        '      status: "pending"|"done"',
    ]


def test_a_failure_to_record_the_sides_does_not_escape_the_hook(keeper, monkeypatch, caplog):
    """An exception out of a hook would skip usage, metrics and capture for the flow (docs/mitm.md §1)."""

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "record", broken)
    flow = streamed_flow(True, sided_exchange(CLIENT_BODY, PROVIDER_BODY, stream=True))
    run_stream(keeper, flow, [b"data: x\n\n"])
    assert flow.response.raw_content == b"data: x\n\n" and views.SIDES not in flow.metadata
    assert "could not record both sides" in caplog.text


def test_with_mitmproxy_storing_streams_the_providers_stream_is_still_kept(keeper, tctx):
    tctx.options.store_streamed_bodies = True
    flow = streamed_flow(
        lambda chunk: [chunk.upper()] if chunk else [], sided_exchange(CLIENT_BODY, PROVIDER_BODY, True)
    )
    keeper.responseheaders(flow)
    out = [piece for chunk in (b"data: a\n\n", b"") for piece in flow.response.stream(chunk)]
    flow.response.raw_content = b"".join(out)  # what mitmproxy stored
    keeper.response(flow)
    assert flow.response.raw_content == b"DATA: A\n\n"
    assert flow.metadata[views.SIDES]["answer"]["content"] == b"data: a\n\n"


def test_a_compressed_client_body_reads_as_its_conversation(keeper):
    ex = sided_exchange(CLIENT_BODY, PROVIDER_BODY)
    ex.client_headers["content-encoding"] = "zstd"
    ex.client_content = encoding.encode(ex.client_content, "zstd")
    flow = llm_flow(MESSAGES_PATH, ex.upstream.body, ANTHROPIC_RESPONSE)
    llm_exchange.put(flow, ex)
    client = shown(flow.request, flow).text.split("\n\n")[0].split("\n")
    assert client[2:5] == ["openai-chat request · model anthropic:m", "user:", "  Hi"]
