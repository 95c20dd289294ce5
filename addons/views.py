"""mitmweb views of LLM traffic, and the addon that keeps streamed answers viewable.

Every body is read through the canonical model (the protocol's own ``parse_request`` /
``parse_response``, or its ``StreamDecoder`` and ``response_from_events`` for streams) and printed
in one layout shared by all protocols, so a conversation reads the same whichever API carried it.
A body the canonical model cannot hold (a same-protocol pass-through with item types it refuses, a
damaged body) is shown as pretty JSON with the reason, never as an error.

mitmproxy keeps no body for streamed responses (docs/mitm.md §4), so ``KeepStreams`` keeps a
bounded copy of what the client received and puts it back as the response body at the end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import unquote

from mitmproxy import contentviews, ctx, exceptions, http
from mitmproxy.contentviews import Contentview, Metadata, SyntaxHighlight

import translators
from addons import exchange
from translators.assemble import response_from_events
from translators.canonical import (
    ChatRequest,
    ChatResponse,
    Event,
    Image,
    Message,
    Part,
    Reasoning,
    StreamError,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    Usage,
)
from translators.errors import ProxyError
from translators.sse import SSEParser, format_event

LLM_PRIORITY = 2.0  # beats the built-in JSON view (1)
NOT_LLM = -1.0

# Generation endpoints by how their path ends (query stripped); also matches provider prefixes
# such as OpenRouter's /api/v1/chat/completions.
PATH_PROTOCOLS: tuple[tuple[str, str], ...] = (
    ("/chat/completions", "openai-chat"),
    ("/responses", "openai-responses"),
    ("/messages", "anthropic"),
    (":generateContent", "gemini"),
    (":streamGenerateContent", "gemini"),
)
GEMINI_METHOD = re.compile(
    r"/(?P<model>(?:models|tunedModels)/[^:?]+):(?P<method>streamGenerateContent|generateContent)"
)
# Without an exchange or a known path: tell-tale keys and values near the start of a body, first
# match wins (the order matters: an Anthropic tool_use carries an "input" key of its own). A
# "messages" request is Anthropic's when the client sent anthropic-version (see _body_protocol).
REQUEST_MARKERS: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb'"contents"\s*:'), "gemini"),
    (re.compile(rb'"messages"\s*:'), "openai-chat"),
    (re.compile(rb'"input"\s*:'), "openai-responses"),
)
RESPONSE_MARKERS: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb'"candidates"\s*:'), "gemini"),
    (re.compile(rb'"chat\.completion'), "openai-chat"),
    (re.compile(rb'"object"\s*:\s*"response"|"type"\s*:\s*"response\.'), "openai-responses"),
    (re.compile(rb'"type"\s*:\s*"message(?:_start)?"'), "anthropic"),
)
MARKER_WINDOW = 2048
TRUNCATED = "llm_stream_truncated"  # flow.metadata: bytes the client got of a stream kept only in part
STREAM_STARTS = (b"data:", b"event:", b":", b"[")  # SSE, or Gemini's JSON array without alt=sse

USAGE_LABELS: dict[str, str] = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_tokens": "cache read",
    "cache_write_tokens": "cache write",
    "reasoning_tokens": "reasoning",
}
# Request fields printed by the layout itself rather than under "parameters:".
LAID_OUT = {"model", "system", "messages", "tools"}
SHORT_JSON = 72  # arguments up to this long stay on one line
DESCRIPTION = 100  # tool descriptions: the first line, cut to this length


# -- what a body is ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """What a body is: its protocol, its direction and what only the URL says (Gemini)."""

    protocol: str
    request: bool
    status: int = 200
    model: str | None = None  # from a Gemini URL
    stream: bool | None = None  # from a Gemini URL
    peer: str | None = None  # the protocol on the other side of a translated flow


def subject(data: bytes, metadata: Metadata) -> Subject | None:
    """The LLM body this is, or None. A routed flow's request body is what the provider received
    (backend protocol); its response body is what the client received (client protocol)."""
    message = metadata.http_message
    flow = metadata.flow
    is_request = isinstance(message, http.Request)
    status = message.status_code if isinstance(message, http.Response) else 200
    if not isinstance(flow, http.HTTPFlow):
        protocol = _body_protocol(data, is_request, None)
        return Subject(protocol, is_request, status) if protocol else None
    peer = None
    if (ex := exchange.get(flow)) is not None:
        protocol, peer = ex.client_protocol, ex.backend_protocol
        if is_request:
            protocol, peer = peer, protocol
    else:
        protocol = _path_protocol(flow.request.path) or _body_protocol(data, is_request, flow.request.headers)
    if protocol is None:
        return None
    model, stream = _gemini_url(flow.request.path) if protocol == "gemini" else (None, None)
    return Subject(protocol, is_request, status, model, stream, peer if peer != protocol else None)


def _path_protocol(path: str) -> str | None:
    path = path.partition("?")[0]
    return next((protocol for suffix, protocol in PATH_PROTOCOLS if path.endswith(suffix)), None)


def _body_protocol(data: bytes, is_request: bool, headers: http.Headers | None) -> str | None:
    head = data[:MARKER_WINDOW]
    markers = REQUEST_MARKERS if is_request else RESPONSE_MARKERS
    protocol = next((p for marker, p in markers if marker.search(head)), None)
    if protocol == "openai-chat" and is_request and headers is not None and "anthropic-version" in headers:
        return "anthropic"
    return protocol


def _gemini_url(path: str) -> tuple[str | None, bool | None]:
    if (m := GEMINI_METHOD.search(path)) is None:
        return None, None
    return unquote(m["model"]).removeprefix("models/"), m["method"] == "streamGenerateContent"


def is_stream(data: bytes, metadata: Metadata, about: Subject) -> bool:
    if about.request:
        return False
    return metadata.content_type == "text/event-stream" or data[:64].lstrip().startswith(STREAM_STARTS)


class Unreadable(ValueError):
    """A body the views show as it is; the message says why."""


def _module(protocol: str) -> ModuleType:
    try:
        return translators.get(protocol)
    except (KeyError, ImportError):  # a protocol module not there (yet)
        raise Unreadable(f"no {protocol} translator available") from None


# -- views ---------------------------------------------------------------------------------------


class LLMConversation(Contentview):
    """A request or a whole response of any LLM protocol, as a readable conversation."""

    name = "LLM Conversation"
    syntax_highlight: SyntaxHighlight = "yaml"

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        about = subject(data, metadata) if data else None
        return LLM_PRIORITY if about and not is_stream(data, metadata, about) else NOT_LLM

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        about = subject(data, metadata)
        if about is None:
            return fallback(data, "LLM body", "not recognised as an LLM request or response")
        what = f"{about.protocol} {'request' if about.request else 'response'}"
        try:
            return read_body(about, data)
        except Exception as e:  # a viewer shows what it cannot read; it never fails
            return fallback(data, what, _reason(e))


def read_body(about: Subject, data: bytes) -> str:
    body = json.loads(data)
    if about.status >= 400:
        return render_error(about, data, body)
    module = _module(about.protocol)
    if about.request:
        request = module.parse_request(body, model=_model(about), stream=about.stream)
        return render_request(request, _header(about, "request", request.model))
    answer = module.parse_response(body)
    if not (answer.content or answer.stop_reason or usage_text(answer.usage)):
        raise Unreadable("no message in it")  # lenient parsers read any object as an empty answer
    return render_response(answer, _header(about, "response", answer.model, answer.id))


class LLMStream(Contentview):
    """A streamed answer (SSE, or Gemini's JSON array) reassembled into the final message."""

    name = "LLM Stream"
    syntax_highlight: SyntaxHighlight = "yaml"

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        about = subject(data, metadata) if data else None
        return LLM_PRIORITY if about and is_stream(data, metadata, about) else NOT_LLM

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        about = subject(data, metadata)
        if about is None:
            return sse_fallback(data, "LLM stream", "not recognised as an LLM stream")
        try:
            text = read_stream(about, data)
        except Exception as e:  # as above
            return sse_fallback(data, f"{about.protocol} stream", _reason(e))
        return text + _cut_note(data, metadata)


def read_stream(about: Subject, data: bytes) -> str:
    events = decode_stream(_module(about.protocol), data)
    answer = response_from_events(events)
    errors = [event.error for event in events if isinstance(event, StreamError)]
    return render_response(answer, _header(about, "stream, reassembled", answer.model, answer.id), errors)


def _cut_note(data: bytes, metadata: Metadata) -> str:
    """KeepStreams kept only part of this stream: its missing end is not the provider's fault."""
    seen = metadata.flow.metadata.get(TRUNCATED) if isinstance(metadata.flow, http.HTTPFlow) else None
    return f"\n(kept only the first {len(data)} of {seen} bytes: the rest is not shown)" if seen else ""


def register() -> None:
    """Called once by the entry script; adding again replaces the views by name (hot reload)."""
    contentviews.add(LLMConversation)
    contentviews.add(LLMStream)


def decode_stream(module: ModuleType, data: bytes) -> list[Event]:
    if data.lstrip().startswith(b"["):  # Gemini without alt=sse: the same chunks as a JSON array
        data = b"".join(format_event(chunk) for chunk in json.loads(data))
    decoder = module.StreamDecoder()
    return decoder.feed(data) + decoder.close()


def _model(about: Subject) -> str | None:
    """Gemini bodies do not name their model; the URL does."""
    return about.model or ("?" if about.protocol == "gemini" else None)


def _reason(error: Exception) -> str:
    match error:
        case ProxyError():
            return error.message
        case json.JSONDecodeError() | UnicodeDecodeError():
            return f"not JSON: {error}"
        case ValueError():
            return str(error)
    return f"{type(error).__name__}: {error}"


def _header(about: Subject, kind: str, model: str, response_id: str = "") -> str:
    items = [f"{about.protocol} {kind}", f"model {model or '?'}"]
    if response_id:
        items.append(f"id {response_id}")
    if about.peer:
        items.append(f"translated from {about.peer}")
    return " · ".join(items)


# -- layout --------------------------------------------------------------------------------------


class Layout:
    """The lines of one rendering; remembers tool names so results can say which call they answer."""

    def __init__(self, header: str) -> None:
        self.lines = [header]
        self.call_names: dict[str, str] = {}

    def add(self, text: str, depth: int = 0) -> None:
        pad = "  " * depth
        self.lines.extend(pad + line for line in text.split("\n"))

    def parts(self, parts: Iterable[Part], depth: int) -> None:
        for part in parts:
            self.add(self.part(part), depth)

    def part(self, part: Part) -> str:
        match part:
            case Text(cache_control=None):
                return part.text
            case Text():
                return f"{part.text}\n[cache_control {_compact(part.cache_control)}]"
            case Image():
                return image(part)
            case ToolCall():
                self.call_names[part.id] = part.name
                return tool_call(part)
            case ToolResult():
                return self.tool_result(part)
            case Reasoning():
                return reasoning(part)

    def tool_result(self, result: ToolResult) -> str:
        name = result.name or self.call_names.get(result.tool_call_id, "")
        label = " ".join(filter(None, ("←", name, "error" if result.is_error else "result")))
        lines = [f"{label}  [{_short(result.tool_call_id)}]"]
        for part in result.content:
            text = json_text(part.text) if isinstance(part, Text) else image(part)
            lines.extend("  " + line for line in text.split("\n"))
        return "\n".join(lines)

    def message(self, message: Message) -> None:
        self.add(f"{message.role}:" if message.content else f"{message.role}: (no content)")
        self.parts(message.content, 1)

    def text(self) -> str:
        return "\n".join(self.lines)


def render_request(request: ChatRequest, header: str) -> str:
    layout = Layout(header)
    if request.system:
        layout.add("system:")
        layout.parts(request.system, 1)
    for message in request.messages:
        layout.message(message)
    if request.tools:
        layout.add("tools:")
        for tool in request.tools:
            layout.add(tool_signature(tool), 1)
    parameters = request.model_dump(exclude_defaults=True, exclude=LAID_OUT)
    if parameters:
        layout.add("parameters:")
        for key, value in parameters.items():
            layout.add(f"{key}: {_compact(value)}", 1)
    return layout.text()


def render_response(response: ChatResponse, header: str, errors: list[dict[str, Any]] | None = None) -> str:
    layout = Layout(header)
    layout.message(Message(role="assistant", content=response.content))
    for error in errors or []:
        layout.add(f"error: {error.get('code')}: {error.get('message')}")
    if response.stop_reason:
        matched = f" {json.dumps(response.stop_sequence)}" if response.stop_sequence else ""
        layout.add(f"stop: {response.stop_reason}{matched}")
    if counts := usage_text(response.usage):
        layout.add(f"usage: {counts}")
    return layout.text()


def render_error(about: Subject, data: bytes, body: Any) -> str:
    """An error answer: the protocol's reading of it, then the body itself."""
    error = _module(about.protocol).parse_error(about.status, data)
    header = f"{about.protocol} error · {error.status} {error.code}: {error.message}"
    return header + "\n" + json.dumps(body, indent=2, ensure_ascii=False)


def image(part: Image) -> str:
    detail = f", detail {part.detail}" if part.detail else ""
    if part.data is not None:
        return f"[image {part.media_type or 'of unknown type'}, {size_text(base64_size(part.data))}{detail}]"
    return f"[image url {_short(part.url or '', 48)}{detail}]"


def tool_call(call: ToolCall) -> str:
    signature = f" [signature {_short(call.thought_signature)}]" if call.thought_signature else ""
    return f"→ {call.name}({json_text(call.arguments)})  [{_short(call.id)}]{signature}"


def reasoning(part: Reasoning) -> str:
    if part.redacted:
        return f"reasoning (redacted) [{_short(part.signature or '')}]"
    signature = f"[signature {_short(part.signature)}]" if part.signature else ""
    if not part.text:
        return f"reasoning: {signature or '(empty)'}"
    body = "\n".join("  " + line for line in [*part.text.split("\n"), signature] if line)
    return "reasoning:\n" + body


def tool_signature(tool: Tool) -> str:
    """``name(arg: type, optional?: type): first line of the description``."""
    schema = tool.parameters
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = set(schema.get("required") or [])
    arguments = ", ".join(
        f"{name}{'' if name in required else '?'}: {schema_type(spec)}" for name, spec in properties.items()
    )
    description = (tool.description or "").strip().split("\n")[0]
    if len(description) > DESCRIPTION:
        description = description[: DESCRIPTION - 1] + "…"
    return f"{tool.name}({arguments})" + (f": {description}" if description else "")


def schema_type(spec: Any) -> str:
    if not isinstance(spec, dict):
        return "any"
    kind = spec.get("type")
    if isinstance(kind, list):
        return "|".join(str(k).lower() for k in kind)
    if str(kind).lower() == "array":  # Gemini's OpenAPI schemas spell types in capitals
        return schema_type(spec.get("items")) + "[]"
    if isinstance(spec.get("enum"), list):
        return "|".join(json.dumps(v, ensure_ascii=False) for v in spec["enum"])
    return str(kind).lower() if kind else "any"


def usage_text(usage: Usage) -> str:
    counts = usage.model_dump(exclude_none=True)
    return " · ".join(f"{label} {counts[key]}" for key, label in USAGE_LABELS.items() if key in counts)


def json_text(text: str) -> str:
    """JSON objects and arrays pretty-printed (one line when short), anything else as it is."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if not isinstance(value, dict | list):
        return text
    one_line = json.dumps(value, ensure_ascii=False)
    return one_line if len(one_line) <= SHORT_JSON else json.dumps(value, ensure_ascii=False, indent=2)


def base64_size(data: str) -> int:
    data = data.strip()
    return len(data) * 3 // 4 - (len(data) - len(data.rstrip("=")))


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def _short(text: str, keep: int = 8) -> str:
    """Long opaque strings (signatures, generated ids, data) as head…tail and their length."""
    if len(text) <= 2 * keep + 8:
        return text
    return f"{text[:keep]}…{text[-keep:]} ({len(text)} chars)"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# -- fallbacks -----------------------------------------------------------------------------------


def fallback(data: bytes, what: str, reason: str) -> str:
    """Pretty JSON (or the text itself) under a line saying why it is not a conversation."""
    try:
        text = json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except ValueError:
        text = data.decode("utf-8", "replace")
    return f"{what} (shown as is: {reason})\n{text}"


def sse_fallback(data: bytes, what: str, reason: str) -> str:
    """One line per SSE event, or the JSON/text fallback when the body is not SSE."""
    parser = SSEParser()
    events = parser.feed(data) + parser.close()
    if not events or data.lstrip().startswith(b"["):
        return fallback(data, what, reason)
    lines = [f"{event.event or 'data'}: {event.data}" for event in events]
    return f"{what} (shown as events: {reason})\n" + "\n".join(lines)


# -- keeping streamed bodies ---------------------------------------------------------------------

StreamCallable = Callable[[bytes], bytes | Iterable[bytes]]


class StreamTee:
    """A ``flow.response.stream`` callable around another one (None: bytes pass unchanged) that
    keeps the first ``limit`` bytes it hands to the client. Per chunk: an append and a subtraction."""

    __slots__ = ("inner", "limit", "room", "seen", "kept")

    def __init__(self, inner: StreamCallable | None, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.room = limit
        self.seen = 0
        self.kept: list[bytes] = []

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self.inner is None:
            out = [chunk] if chunk else []
        elif type(out := self.inner(chunk)) is not list:
            out = _as_list(out)
        for piece in out:
            self.seen += len(piece)
            if self.room > 0:
                self.kept.append(piece[: self.room])
                self.room -= len(piece)
        return out

    @property
    def truncated(self) -> bool:
        return self.seen > self.limit

    def take(self) -> bytes:
        """The kept bytes, once: the tee lets go of them."""
        kept, self.kept = b"".join(self.kept), []
        return kept


def _as_list(out: bytes | Iterable[bytes]) -> list[bytes]:
    """What mitmproxy accepts from a stream callable (bytes or any iterable) as the list of
    non-empty pieces the suite's stream contract promises."""
    if isinstance(out, bytes):
        return [out] if out else []
    return list(out)


class KeepStreams:
    """Keeps what the client received of a streamed LLM answer as the response body, so mitmweb
    can show it (mitmproxy stores no streamed body). Runs after TranslateResponses: it wraps the
    stream callable that one set up."""

    def load(self, loader) -> None:
        loader.add_option(
            "llm_keep_stream_kb",
            int,
            1024,
            "Keep up to this many KB of each streamed LLM answer (as the client received it) as the "
            "response body, for mitmweb and the LLM Stream view. 0 turns it off.",
        )

    def configure(self, updated: set[str]) -> None:
        if "llm_keep_stream_kb" in updated and ctx.options.llm_keep_stream_kb < 0:
            raise exceptions.OptionsError("llm_keep_stream_kb must be 0 (off) or a positive number of KB")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        limit = ctx.options.llm_keep_stream_kb * 1024
        if not limit or response is None or not response.stream or exchange.get(flow) is None:
            return
        if ctx.options.store_streamed_bodies:
            return  # mitmproxy keeps the whole body itself
        response.stream = StreamTee(response.stream if callable(response.stream) else None, limit)

    def response(self, flow: http.HTTPFlow) -> None:
        self._keep(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._keep(flow)  # a stream cut off mid-way: what the client got is still worth seeing

    @staticmethod
    def _keep(flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or response.raw_content is not None:
            return
        tee = response.stream  # the capture's recorder, when on, wraps the tee: look inside
        while tee is not None and not isinstance(tee, StreamTee):
            tee = getattr(tee, "inner", None)
        if tee is None:
            return
        response.raw_content = tee.take()
        if tee.truncated:
            flow.metadata[TRUNCATED] = tee.seen
            note = f"streamed body: kept the first {tee.limit // 1024} KB of {tee.seen} bytes"
            flow.comment = f"{flow.comment}\n{note}" if flow.comment else note
