"""The examples the translator tests share, keyed by protocol in ``EXAMPLES``.

Bodies and streams are docs/wire.md's examples, copied literally, plus streams built to reach
the decoders' edge cases (comments, CRLF framing, parallel calls, multi-byte characters).
tests/test_contract.py holds every protocol to the same contract over ``EXAMPLES``; each protocol's
own test file imports the examples it also checks field by field.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import translators
from translators.canonical import (
    ChatRequest,
    ChatResponse,
    Image,
    Message,
    Part,
    Reasoning,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)
from translators.errors import CODES
from translators.wire import dump_arguments, parse_arguments


@dataclass(frozen=True)
class ErrorCase:
    """An error a protocol's envelope carries there and back."""

    code: str
    status: int
    message: str


@dataclass(frozen=True)
class ProtocolExamples:
    """What the contract tests run over for one protocol.

    ``streams``: provider streams by name. ``answers``: by name, a stream and the same answer not
    streamed; with ``exact_arguments`` False their tool arguments agree as JSON values only (the
    stream's text keeps the provider's spacing, the whole answer carries an object). ``errors``:
    errors that survive ``render_error`` then ``parse_error``. ``render_input``: a fresh request
    that reaches every part of ``render_request``.
    """

    streams: dict[str, bytes]
    answers: dict[str, tuple[bytes, dict[str, Any]]]
    errors: list[ErrorCase]
    render_input: Callable[[], ChatRequest]
    exact_arguments: bool = True


def user(*parts: Part) -> Message:
    return Message(role="user", content=list(parts))


def assistant(*parts: Part) -> Message:
    return Message(role="assistant", content=list(parts))


def with_json_arguments(response: ChatResponse) -> ChatResponse:
    """Tool arguments compared as JSON values: a stream keeps the provider's own spacing."""
    content = [
        part.model_copy(update={"arguments": dump_arguments(parse_arguments(part.arguments))})
        if isinstance(part, ToolCall)
        else part
        for part in response.content
    ]
    return response.model_copy(update={"content": content})


# -- openai-chat: docs/wire.md §1 ------------------------------------------------------------
CHAT_EXAMPLE_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1767225600,
    "model": "gpt-5.5-2026-01-01",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "annotations": [],
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 40,
        "total_tokens": 160,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 22,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": None,
}

CHAT_STREAM_TEXT = b"""data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-5.5","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-5.5","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-5.5","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-5.5","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

"""

CHAT_STREAM_TOOL = b"""data: {"id":"chatcmpl-2","object":"chat.completion.chunk","created":1767225600,"model":"gpt-5.5","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-2","object":"chat.completion.chunk","created":1767225600,"model":"gpt-5.5","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"ci"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-2","object":"chat.completion.chunk","created":1767225600,"model":"gpt-5.5","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\\":\\"Paris\\"}"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-2","object":"chat.completion.chunk","created":1767225600,"model":"gpt-5.5","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: [DONE]

"""

# Text with a multi-byte character, a comment line, CRLF framing and two parallel calls.
CHAT_STREAM_MIXED = (
    ": OPENROUTER PROCESSING\r\n\r\n"
    'data: {"id":"gen-7","object":"chat.completion.chunk","created":1,"model":"m-1","choices":[{"index":0,"delta":{"role":"assistant","content":"It is 18 °C"},"finish_reason":null}]}\r\n\r\n'
    'data: {"id":"gen-7","object":"chat.completion.chunk","created":1,"model":"m-1","choices":[{"index":0,"delta":{"content":" in Paris."},"finish_reason":null}]}\r\n\r\n'
    'data: {"id":"gen-7","object":"chat.completion.chunk","created":1,"model":"m-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}},{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":null}]}\r\n\r\n'
    'data: {"id":"gen-7","object":"chat.completion.chunk","created":1,"model":"m-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":\\"Paris\\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42}}\r\n\r\n'
    "data: [DONE]\r\n\r\n"
).encode()

# The non-streamed answer equal to CHAT_STREAM_MIXED (docs/snags.md #2).
CHAT_MIXED_RESPONSE: dict[str, Any] = {
    "id": "gen-7",
    "object": "chat.completion",
    "created": 1,
    "model": "m-1",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "It is 18 °C in Paris.",
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
}

CHAT_TEXT_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1767225600,
    "model": "gpt-5.5",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello"}}],
    "usage": {
        "prompt_tokens": 9,
        "completion_tokens": 1,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}

CHAT_TOOL_RESPONSE: dict[str, Any] = {
    **CHAT_EXAMPLE_RESPONSE,
    "id": "chatcmpl-2",
    "model": "gpt-5.5",
    "usage": None,
}


def chat_render_input() -> ChatRequest:
    return ChatRequest(
        model="client-model",
        system=[Text(text="s")],
        messages=[assistant(ToolCall(id="x" * 50, name="f")), user(ToolResult(tool_call_id="x" * 50))],
        stream=True,
    )


CHAT = ProtocolExamples(
    streams={"text": CHAT_STREAM_TEXT, "tool": CHAT_STREAM_TOOL, "mixed": CHAT_STREAM_MIXED},
    answers={
        "text": (CHAT_STREAM_TEXT, CHAT_TEXT_RESPONSE),
        "tool": (CHAT_STREAM_TOOL, CHAT_TOOL_RESPONSE),
        "mixed": (CHAT_STREAM_MIXED, CHAT_MIXED_RESPONSE),
    },
    errors=[ErrorCase(code, CODES[code][0], f"{code} happened") for code in sorted(CODES)],
    render_input=chat_render_input,
)

# -- openai-responses: docs/wire.md §2 -------------------------------------------------------
# docs/wire.md §2.4 (a) plain text.
RESPONSES_STREAM_TEXT = rb"""event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1767225600,"status":"in_progress","model":"gpt-5.5","output":[],"usage":null}}

event: response.in_progress
data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1","object":"response","created_at":1767225600,"status":"in_progress","model":"gpt-5.5","output":[],"usage":null}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"message","id":"msg_1","role":"assistant","status":"in_progress","content":[]}}

event: response.content_part.added
data: {"type":"response.content_part.added","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hello","logprobs":[]}

event: response.output_text.done
data: {"type":"response.output_text.done","sequence_number":5,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Hello","logprobs":[]}

event: response.content_part.done
data: {"type":"response.content_part.done","sequence_number":6,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"Hello","annotations":[]}}

event: response.output_item.done
data: {"type":"response.output_item.done","sequence_number":7,"output_index":0,"item":{"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"Hello","annotations":[]}]}}

event: response.completed
data: {"type":"response.completed","sequence_number":8,"response":{"id":"resp_1","object":"response","created_at":1767225600,"status":"completed","model":"gpt-5.5","output":[{"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"Hello","annotations":[]}]}],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":1,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":10}}}

"""

# docs/wire.md §2.4 (b) one function call.
RESPONSES_STREAM_TOOL = rb"""event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_2","object":"response","created_at":1767225600,"status":"in_progress","model":"gpt-5.5","output":[],"usage":null}}

event: response.in_progress
data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_2","object":"response","created_at":1767225600,"status":"in_progress","model":"gpt-5.5","output":[],"usage":null}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":"","status":"in_progress"}}

event: response.function_call_arguments.delta
data: {"type":"response.function_call_arguments.delta","sequence_number":3,"item_id":"fc_1","output_index":0,"delta":"{\"city\":"}

event: response.function_call_arguments.delta
data: {"type":"response.function_call_arguments.delta","sequence_number":4,"item_id":"fc_1","output_index":0,"delta":"\"Paris\"}"}

event: response.function_call_arguments.done
data: {"type":"response.function_call_arguments.done","sequence_number":5,"item_id":"fc_1","output_index":0,"arguments":"{\"city\":\"Paris\"}"}

event: response.output_item.done
data: {"type":"response.output_item.done","sequence_number":6,"output_index":0,"item":{"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"}}

event: response.completed
data: {"type":"response.completed","sequence_number":7,"response":{"id":"resp_2","object":"response","created_at":1767225600,"status":"completed","model":"gpt-5.5","output":[{"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"}],"usage":{"input_tokens":50,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":18,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":68}}}

"""

# docs/wire.md §2.4 (c) reasoning summary, then text.
RESPONSES_STREAM_REASONING = r"""event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_3","object":"response","created_at":1767225600,"status":"in_progress","model":"gpt-5.5","output":[],"usage":null}}

event: response.in_progress
data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_3","object":"response","created_at":1767225600,"status":"in_progress","model":"gpt-5.5","output":[],"usage":null}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"reasoning","id":"rs_1","summary":[]}}

event: response.reasoning_summary_part.added
data: {"type":"response.reasoning_summary_part.added","sequence_number":3,"item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":""}}

event: response.reasoning_summary_text.delta
data: {"type":"response.reasoning_summary_text.delta","sequence_number":4,"item_id":"rs_1","output_index":0,"summary_index":0,"delta":"Comparing units."}

event: response.reasoning_summary_text.done
data: {"type":"response.reasoning_summary_text.done","sequence_number":5,"item_id":"rs_1","output_index":0,"summary_index":0,"text":"Comparing units."}

event: response.reasoning_summary_part.done
data: {"type":"response.reasoning_summary_part.done","sequence_number":6,"item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":"Comparing units."}}

event: response.output_item.done
data: {"type":"response.output_item.done","sequence_number":7,"output_index":0,"item":{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"Comparing units."}],"encrypted_content":"gAAAAABpXyZ0"}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":8,"output_index":1,"item":{"type":"message","id":"msg_3","role":"assistant","status":"in_progress","content":[]}}

event: response.content_part.added
data: {"type":"response.content_part.added","sequence_number":9,"item_id":"msg_3","output_index":1,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":10,"item_id":"msg_3","output_index":1,"content_index":0,"delta":"18 °C.","logprobs":[]}

event: response.output_text.done
data: {"type":"response.output_text.done","sequence_number":11,"item_id":"msg_3","output_index":1,"content_index":0,"text":"18 °C.","logprobs":[]}

event: response.content_part.done
data: {"type":"response.content_part.done","sequence_number":12,"item_id":"msg_3","output_index":1,"content_index":0,"part":{"type":"output_text","text":"18 °C.","annotations":[]}}

event: response.output_item.done
data: {"type":"response.output_item.done","sequence_number":13,"output_index":1,"item":{"type":"message","id":"msg_3","role":"assistant","status":"completed","content":[{"type":"output_text","text":"18 °C.","annotations":[]}]}}

event: response.completed
data: {"type":"response.completed","sequence_number":14,"response":{"id":"resp_3","object":"response","created_at":1767225600,"status":"completed","model":"gpt-5.5","output":[{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"Comparing units."}],"encrypted_content":"gAAAAABpXyZ0"},{"type":"message","id":"msg_3","role":"assistant","status":"completed","content":[{"type":"output_text","text":"18 °C.","annotations":[]}]}],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":30,"output_tokens_details":{"reasoning_tokens":26},"total_tokens":39}}}

""".encode()

# docs/wire.md §2.4 failure at the end of a stream.
RESPONSES_STREAM_FAILED = rb"""event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_4","object":"response","created_at":1767225600,"status":"in_progress","model":"gpt-5.5","output":[],"usage":null}}

event: response.in_progress
data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_4","object":"response","created_at":1767225600,"status":"in_progress","model":"gpt-5.5","output":[],"usage":null}}

event: response.failed
data: {"type":"response.failed","sequence_number":2,"response":{"id":"resp_4","object":"response","created_at":1767225600,"status":"failed","model":"gpt-5.5","output":[],"error":{"code":"server_error","message":"The server had an error processing your request."}}}

"""


def responses_sse(*events: dict[str, Any] | str, newline: str = "\n") -> bytes:
    """A Responses stream of ``events`` (dicts get their ``event:`` line and sequence number;
    strings are sent as they are, e.g. comments)."""
    blocks = []
    for number, event in enumerate(events):
        if isinstance(event, str):
            blocks.append(event + newline * 2)
            continue
        data = json.dumps({"type": event["type"], "sequence_number": number, **event}, ensure_ascii=False)
        blocks.append(f"event: {event['type']}{newline}data: {data}{newline}{newline}")
    return "".join(blocks).encode()


RESPONSES_MIXED_OUTPUT: list[dict[str, Any]] = [
    {
        "type": "reasoning",
        "id": "rs_m",
        "summary": [
            {"type": "summary_text", "text": "Weather first,"},
            {"type": "summary_text", "text": "then the time."},
        ],
        "encrypted_content": "enc_m",
    },
    {
        "type": "message",
        "id": "msg_m",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "It is 18 °C in Paris.", "annotations": []}],
    },
    {
        "type": "function_call",
        "id": "fc_a",
        "call_id": "call_a",
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
        "status": "completed",
    },
    {
        "type": "function_call",
        "id": "fc_b",
        "call_id": "call_b",
        "name": "get_time",
        "arguments": "{}",
        "status": "completed",
    },
]

RESPONSES_MIXED_USAGE: dict[str, Any] = {
    "input_tokens": 30,
    "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
    "output_tokens": 12,
    "output_tokens_details": {"reasoning_tokens": 5},
    "total_tokens": 42,
}

# The non-streamed answer equal to RESPONSES_STREAM_MIXED (docs/snags.md #2).
RESPONSES_MIXED_RESPONSE: dict[str, Any] = {
    "id": "resp_m",
    "object": "response",
    "created_at": 1,
    "status": "completed",
    "model": "m-1",
    "output": RESPONSES_MIXED_OUTPUT,
    "usage": RESPONSES_MIXED_USAGE,
}


def response_event(kind: str, **fields: Any) -> dict[str, Any]:
    base = {
        "id": "resp_m",
        "object": "response",
        "created_at": 1,
        "model": "m-1",
        "output": [],
        "usage": None,
    }
    return {"type": kind, "response": {**base, **fields}}


def item_event(item_id: str, index: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "item_id": item_id, "output_index": index, **fields}


# Two summary parts, text with a multi-byte character, two overlapping calls (one with its whole
# arguments in a single delta), an unknown event, a keep-alive comment and CRLF framing.
RESPONSES_STREAM_MIXED = responses_sse(
    response_event("response.created", status="in_progress"),
    ": keep-alive",
    response_event("response.in_progress", status="in_progress"),
    {
        "type": "response.output_item.added",
        "output_index": 0,
        "item": {**RESPONSES_MIXED_OUTPUT[0], "summary": []},
    },
    item_event(
        "rs_m", 0, "response.reasoning_summary_part.added", summary_index=0, part={"type": "summary_text"}
    ),
    item_event("rs_m", 0, "response.reasoning_summary_text.delta", summary_index=0, delta="Weather first,"),
    item_event("rs_m", 0, "response.reasoning_summary_text.done", summary_index=0, text="Weather first,"),
    item_event("rs_m", 0, "response.reasoning_summary_text.delta", summary_index=1, delta="then the time."),
    {"type": "response.output_item.done", "output_index": 0, "item": RESPONSES_MIXED_OUTPUT[0]},
    {
        "type": "response.output_item.added",
        "output_index": 1,
        "item": {**RESPONSES_MIXED_OUTPUT[1], "status": "in_progress", "content": []},
    },
    item_event("msg_m", 1, "response.output_text.delta", content_index=0, delta="It is 18 °C", logprobs=[]),
    item_event("msg_m", 1, "response.output_text.delta", content_index=0, delta=" in Paris.", logprobs=[]),
    item_event(
        "msg_m", 1, "response.output_text.done", content_index=0, text="It is 18 °C in Paris.", logprobs=[]
    ),
    {"type": "response.output_item.done", "output_index": 1, "item": RESPONSES_MIXED_OUTPUT[1]},
    {
        "type": "response.output_item.added",
        "output_index": 2,
        "item": {**RESPONSES_MIXED_OUTPUT[2], "arguments": "", "status": "in_progress"},
    },
    {
        "type": "response.output_item.added",
        "output_index": 3,
        "item": {**RESPONSES_MIXED_OUTPUT[3], "arguments": "", "status": "in_progress"},
    },
    item_event("fc_b", 3, "response.function_call_arguments.delta", delta="{}"),
    item_event("fc_a", 2, "response.function_call_arguments.delta", delta='{"city":'),
    {"type": "response.future_event", "detail": "ignored"},
    item_event("fc_a", 2, "response.function_call_arguments.delta", delta='"Paris"}'),
    {"type": "response.output_item.done", "output_index": 3, "item": RESPONSES_MIXED_OUTPUT[3]},
    {"type": "response.output_item.done", "output_index": 2, "item": RESPONSES_MIXED_OUTPUT[2]},
    response_event(
        "response.completed", status="completed", output=RESPONSES_MIXED_OUTPUT, usage=RESPONSES_MIXED_USAGE
    ),
    newline="\r\n",
)


def terminal_response(stream: bytes) -> dict[str, Any]:
    """The response object of a stream's last event: the non-streamed twin of the stream."""
    last = stream.decode().strip().split("\n")[-1].strip()
    return json.loads(last.removeprefix("data: "))["response"]


def responses_render_input() -> ChatRequest:
    return ChatRequest(
        model="client-model",
        system=[Text(text="s")],
        messages=[
            assistant(
                Reasoning(text="r", signature="e", origin="openai-responses"), ToolCall(id="x" * 50, name="f")
            ),
            user(ToolResult(tool_call_id="x" * 50, content=[Image(data="AA", media_type="image/png")])),
        ],
        tools=[Tool(name="f")],
        stream=True,
    )


RESPONSES_COMPLETE_STREAMS = {
    "text": RESPONSES_STREAM_TEXT,
    "tool": RESPONSES_STREAM_TOOL,
    "reasoning": RESPONSES_STREAM_REASONING,
    "mixed": RESPONSES_STREAM_MIXED,
}
RESPONSES = ProtocolExamples(
    streams={**RESPONSES_COMPLETE_STREAMS, "failed": RESPONSES_STREAM_FAILED},
    # docs/snags.md #2: the terminal event's response object is the non-streamed answer.
    answers={
        **{name: (stream, terminal_response(stream)) for name, stream in RESPONSES_COMPLETE_STREAMS.items()},
        "mixed twin": (RESPONSES_STREAM_MIXED, RESPONSES_MIXED_RESPONSE),
    },
    errors=[ErrorCase(code, CODES[code][0], f"{code} happened") for code in sorted(CODES)],
    render_input=responses_render_input,
)

# -- anthropic: docs/wire.md §3 --------------------------------------------------------------
ANTHROPIC_REQUEST_EXAMPLE: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 4096,
    "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe the images, then get the weather in Paris."},
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/png",
                        "data": "iVBORw0KGgoAAAANSUhEUgAA",
                    },
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Need the weather tool.", "signature": "EqQBCkYIBBgCGkDx"},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": '{"temp_c":18}'},
                {"type": "text", "text": "Answer in Celsius."},
            ],
        },
    ],
    "tools": [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": False},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "stop_sequences": ["\n\nHuman:"],
    "metadata": {"user_id": "u-123"},
    "stream": True,
}

ANTHROPIC_STREAM_TEXT = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type":"ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}

event: message_stop
data: {"type":"message_stop"}

"""

ANTHROPIC_STREAM_TOOL = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_02","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":50,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Par"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"is\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":40}}

event: message_stop
data: {"type":"message_stop"}

"""

ANTHROPIC_STREAM_THINKING = """event: message_start
data: {"type":"message_start","message":{"id":"msg_03","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":30,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"18 C is mild."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCkYIBBgCGkDx"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"It is 18 °C."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":61,"output_tokens_details":{"thinking_tokens":44}}}

event: message_stop
data: {"type":"message_stop"}

""".encode()


ANTHROPIC_THINKING_RESPONSE: dict[str, Any] = {
    "id": "msg_03",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [
        {"type": "thinking", "thinking": "18 C is mild.", "signature": "EqQBCkYIBBgCGkDx"},
        {"type": "text", "text": "It is 18 °C."},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 30,
        "output_tokens": 61,
        "output_tokens_details": {"thinking_tokens": 44},
    },
}
ANTHROPIC_TOOL_RESPONSE: dict[str, Any] = {
    "id": "msg_02",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 50, "output_tokens": 40},
}

# (status, canonical code, Anthropic error type): what Anthropic's envelope carries both ways.
ANTHROPIC_ERROR_TYPES: list[tuple[int, str, str]] = [
    (400, "invalid_request", "invalid_request_error"),
    (401, "authentication", "authentication_error"),
    (402, "billing", "billing_error"),
    (403, "permission", "permission_error"),
    (404, "not_found", "not_found_error"),
    (413, "too_large", "request_too_large"),
    (429, "rate_limited", "rate_limit_error"),
    (500, "internal", "api_error"),
    (504, "timeout", "timeout_error"),
    (529, "overloaded", "overloaded_error"),
]


def anthropic_render_input() -> ChatRequest:
    request = translators.get("anthropic").parse_request(copy.deepcopy(ANTHROPIC_REQUEST_EXAMPLE))
    return request.model_copy(update={"tools": [Tool(name="f", parameters={"properties": {}})]})


ANTHROPIC = ProtocolExamples(
    streams={
        "text": ANTHROPIC_STREAM_TEXT,
        "tool": ANTHROPIC_STREAM_TOOL,
        "thinking": ANTHROPIC_STREAM_THINKING,
    },
    answers={
        "thinking": (ANTHROPIC_STREAM_THINKING, ANTHROPIC_THINKING_RESPONSE),
        "tool": (ANTHROPIC_STREAM_TOOL, ANTHROPIC_TOOL_RESPONSE),
    },
    errors=[ErrorCase(code, status, "went wrong: 18 °C") for status, code, _ in ANTHROPIC_ERROR_TYPES],
    render_input=anthropic_render_input,
    exact_arguments=False,
)

# -- gemini: docs/wire.md §4 -----------------------------------------------------------------
GEMINI_SIG = "CiQBVKhcAbCdEfGh"

# What google-genai 3.6.1 really sent for a similar request (captured from a loopback server):
# snake_case inside nested objects, URL-safe base64, an OpenAPI-subset schema with uppercase types.
GEMINI_SDK_REQUEST: dict[str, Any] = {
    "contents": [
        {
            "parts": [
                {"text": "hi"},
                {"inlineData": {"data": "iVBOR__-", "mime_type": "image/png"}},
                {"fileData": {"file_uri": "https://x/y.jpg", "mime_type": "image/jpeg"}},
            ],
            "role": "user",
        },
        {
            "parts": [{"functionCall": {"args": {"city": "P"}, "name": "f"}, "thoughtSignature": "__79AQ=="}],
            "role": "model",
        },
        {"parts": [{"functionResponse": {"name": "f", "response": {"output": "sunny"}}}], "role": "user"},
    ],
    "systemInstruction": {"parts": [{"text": "be terse"}], "role": "user"},
    "tools": [
        {
            "functionDeclarations": [
                {
                    "description": "d",
                    "name": "f",
                    "parameters": {
                        "properties": {
                            "city": {"description": "c", "type": "STRING"},
                            "n": {"nullable": True, "type": "INTEGER"},
                        },
                        "property_ordering": ["city", "n"],
                        "required": ["city"],
                        "type": "OBJECT",
                    },
                },
                {
                    "name": "g",
                    "parameters_json_schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                },
            ]
        }
    ],
    "toolConfig": {"functionCallingConfig": {"allowedFunctionNames": ["f"], "mode": "ANY"}},
    "generationConfig": {
        "temperature": 0.1,
        "maxOutputTokens": 100,
        "stopSequences": ["x"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
        "thinkingConfig": {"include_thoughts": True, "thinking_budget": 1024, "thinking_level": "HIGH"},
    },
}

GEMINI_STREAM_TEXT = (
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}],"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9},"modelVersion":"gemini-2.5-flash","responseId":"r1"}\n\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"lo!"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":3,"totalTokenCount":12},"modelVersion":"gemini-2.5-flash","responseId":"r1"}\n\n'
)

GEMINI_STREAM_TOOL = b'data: {"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"CiQBVKhcAbCdEfGh"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":50,"candidatesTokenCount":7,"thoughtsTokenCount":25,"totalTokenCount":82},"modelVersion":"gemini-2.5-flash","responseId":"r2"}\n\n'

GEMINI_STREAM_THOUGHTS = (
    'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"**Comparing units**\\nCelsius is expected.","thought":true}]},"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"r3"}\n\n'
    'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"It is 18 °C."}]},"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"r3"}\n\n'
    'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"","thoughtSignature":"CiQBVKhcAbCdEfGh"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":6,"thoughtsTokenCount":30,"totalTokenCount":45},"modelVersion":"gemini-2.5-flash","responseId":"r3"}\n\n'
).encode()

# The same three answers, not streamed.
GEMINI_WHOLE_TEXT = {
    "candidates": [
        {"content": {"role": "model", "parts": [{"text": "Hello!"}]}, "finishReason": "STOP", "index": 0}
    ],
    "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "r1",
}

GEMINI_WHOLE_TOOL = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": GEMINI_SIG,
                    }
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 50,
        "candidatesTokenCount": 7,
        "thoughtsTokenCount": 25,
        "totalTokenCount": 82,
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "r2",
}

GEMINI_WHOLE_THOUGHTS = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "**Comparing units**\nCelsius is expected.", "thought": True},
                    {"text": "It is 18 °C."},
                    {"text": "", "thoughtSignature": GEMINI_SIG},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 9,
        "candidatesTokenCount": 6,
        "thoughtsTokenCount": 30,
        "totalTokenCount": 45,
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "r3",
}

# Parts the stream assembler joins: a thought and its signature part, text split over parts.
GEMINI_WHOLE_ADJACENT = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "Plan", "thought": True},
                    {"text": "", "thoughtSignature": GEMINI_SIG},
                    {"text": "A"},
                    {"text": "B"},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "modelVersion": "gemini-2.5-flash",
    "responseId": "r4",
}

GEMINI_STREAM_ADJACENT = "".join(
    "data: "
    + json.dumps(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [part]},
                    "index": 0,
                    **({"finishReason": "STOP"} if k == 3 else {}),
                }
            ],
            "modelVersion": "gemini-2.5-flash",
            "responseId": "r4",
        }
    )
    + "\n\n"
    for k, part in enumerate(GEMINI_WHOLE_ADJACENT["candidates"][0]["content"]["parts"])
).encode()


# (canonical code, status, google.rpc status) for every canonical code.
GEMINI_RPC_STATUSES: list[tuple[str, int, str]] = [
    ("invalid_request", 400, "INVALID_ARGUMENT"),
    ("authentication", 401, "UNAUTHENTICATED"),
    ("billing", 402, "FAILED_PRECONDITION"),
    ("permission", 403, "PERMISSION_DENIED"),
    ("not_found", 404, "NOT_FOUND"),
    ("too_large", 413, "INVALID_ARGUMENT"),
    ("rate_limited", 429, "RESOURCE_EXHAUSTED"),
    ("internal", 500, "INTERNAL"),
    ("upstream_error", 502, "UNAVAILABLE"),
    ("upstream_unreachable", 502, "UNAVAILABLE"),
    ("overloaded", 503, "UNAVAILABLE"),
    ("timeout", 504, "DEADLINE_EXCEEDED"),
    ("unauthenticated", 401, "UNAUTHENTICATED"),
    ("forbidden", 403, "PERMISSION_DENIED"),
    ("limit_reached", 429, "RESOURCE_EXHAUSTED"),
]


def gemini_render_input() -> ChatRequest:
    """The SDK's own request plus a replayed turn with a signature and a ``gsig_`` call id."""
    request = translators.get("gemini").parse_request(GEMINI_SDK_REQUEST, model="gemini-2.5-flash")
    call = ToolCall(id="gsig_YWJj_0", name="f", arguments="{}")
    request.messages.append(assistant(Reasoning(signature="YWJj", origin="gemini"), call))
    return request


GEMINI = ProtocolExamples(
    streams={
        "text": GEMINI_STREAM_TEXT,
        "tool": GEMINI_STREAM_TOOL,
        "thoughts": GEMINI_STREAM_THOUGHTS,
        "adjacent": GEMINI_STREAM_ADJACENT,
    },
    answers={
        "text": (GEMINI_STREAM_TEXT, GEMINI_WHOLE_TEXT),
        "tool": (GEMINI_STREAM_TOOL, GEMINI_WHOLE_TOOL),
        "thoughts": (GEMINI_STREAM_THOUGHTS, GEMINI_WHOLE_THOUGHTS),
        "adjacent": (GEMINI_STREAM_ADJACENT, GEMINI_WHOLE_ADJACENT),
    },
    errors=[ErrorCase(code, status, "what happened") for code, status, _ in GEMINI_RPC_STATUSES],
    render_input=gemini_render_input,
)

EXAMPLES: dict[str, ProtocolExamples] = {
    "openai-chat": CHAT,
    "openai-responses": RESPONSES,
    "anthropic": ANTHROPIC,
    "gemini": GEMINI,
}
