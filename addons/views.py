"""mitmweb views of LLM traffic, and the addon that keeps both sides of a call viewable.

Every body is read through the canonical model (the protocol's own ``parse_request`` /
``parse_response``, or its ``StreamDecoder`` and ``response_from_events`` for streams) and printed
in one layout shared by all protocols, so a conversation reads the same whichever API carried it.
The canonical model normalises what the wire says, so the layout takes the wire's own words from
the body itself wherever they matter to a reader: roles (an OpenAI ``tool`` message, Gemini's
``model``), request parameters by their field names (``max_completion_tokens``,
``stream_options.include_usage``), stop reasons (``tool_calls``, ``STOP``). What the proxy added
or made up is marked: a parameter the provider received that the client did not send, a call id
found nowhere in the bytes the call came from (and, apart, one the wire does not carry). A body
the canonical model cannot hold (a same-protocol pass-through with item types it refuses, a
damaged body) is shown as pretty JSON with the reason, never as an error. Lines are wrapped,
because mitmweb's detail pane does not.

A translated call has two sides and mitmproxy's flow holds one of each: its request is what the
provider received, its response what the client received. ``KeepStreams`` records the other two
(the client's request with its headers, credentials redacted; the provider's answer as it came)
as plain data in ``flow.metadata["llm_sides"]``, so they are saved with the flow, and the views
print both sides in order: the request tab shows the client's request, then the provider's; the
response tab the provider's answer, then the client's. Nothing is copied per request: the record
holds references to bytes the exchange already has, plus a small redacted header dict.

mitmproxy keeps no body for streamed responses (docs/mitm.md §4), so ``KeepStreams`` also keeps a
bounded copy of each streamed side (what the provider sent and what the client received, each up
to ``llm_keep_stream_kb``) and puts the client's back as the response body at the end.
"""

from __future__ import annotations

import json
import logging
import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

from mitmproxy import contentviews, ctx, exceptions, http
from mitmproxy.contentviews import Contentview, Metadata, SyntaxHighlight
from mitmproxy.net import encoding

import translators
from addons import exchange
from addons.capture import redact_headers, redact_url
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

logger = logging.getLogger(__name__)

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
    r"/(?P<model>(?:models|tunedModels)/[^?]+?):(?P<method>streamGenerateContent|generateContent)\b"
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
SIDES = "llm_sides"  # flow.metadata: the other side of each message of a routed call (see ``record``)
STREAM_STARTS = (b"data:", b"event:", b":", b"[")  # SSE, or Gemini's JSON array without alt=sse
# The sections of a routed call's views, in the order the messages travelled.
TITLES: dict[str, str] = {
    "client request": "── client side ── the request as the client sent it",
    "provider request": "── provider side ── the request as the provider received it",
    "provider answer": "── provider side ── the answer as the provider sent it",
    "client answer": "── client side ── the answer as the client received it",
}
REDACTED_KEY = "[redacted] (the backend's key, set by the proxy)"

USAGE_LABELS: dict[str, str] = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_tokens": "cache read",
    "cache_write_tokens": "cache write",
    "reasoning_tokens": "reasoning",
}
# What each protocol calls the speaker of a canonical message: "result" is a user message's tool
# results (an OpenAI Chat "tool" message, a Responses function_call_output item).
ROLE_WORDS: dict[str, dict[str, str]] = {
    "openai-chat": {"user": "user", "assistant": "assistant", "result": "tool"},
    "openai-responses": {"user": "user", "assistant": "assistant", "result": "function_call_output"},
    "anthropic": {"user": "user", "assistant": "assistant", "result": "user"},
    "gemini": {"user": "user", "assistant": "model", "result": "user"},
}
# Request fields the layout prints itself (conversation, tools, model); every other top-level
# field is printed under "parameters:" by its wire name.
LAID_OUT: dict[str, frozenset[str]] = {
    "openai-chat": frozenset({"model", "messages", "tools"}),
    "openai-responses": frozenset({"model", "input", "instructions", "tools"}),
    "anthropic": frozenset({"model", "system", "messages", "tools"}),
    "gemini": frozenset({"model", "contents", "systemInstruction", "tools"}),
}
# Wire parameters (dotted paths) and the canonical field each one sets: a provider's value that
# the client's request does not hold is marked as the proxy's.
WIRE_PARAMETERS: dict[str, dict[str, str]] = {
    "openai-chat": {
        "max_completion_tokens": "max_tokens",
        "max_tokens": "max_tokens",
        "temperature": "temperature",
        "top_p": "top_p",
        "seed": "seed",
        "frequency_penalty": "frequency_penalty",
        "presence_penalty": "presence_penalty",
        "stream_options.include_usage": "stream_usage",
    },
    "openai-responses": {"max_output_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p"},
    "anthropic": {
        "max_tokens": "max_tokens",
        "temperature": "temperature",
        "top_p": "top_p",
        "top_k": "top_k",
    },
    "gemini": {
        "generationConfig.maxOutputTokens": "max_tokens",
        "generationConfig.temperature": "temperature",
        "generationConfig.topP": "top_p",
        "generationConfig.topK": "top_k",
        "generationConfig.seed": "seed",
        "generationConfig.frequencyPenalty": "frequency_penalty",
        "generationConfig.presencePenalty": "presence_penalty",
    },
}
FLAT_DEPTH = 2  # parameters: object members opened into dotted names this deep
SHORT_JSON = 72  # arguments up to this long stay on one line
WIDTH = 90  # lines are wrapped to this many characters (mitmweb's detail pane: half a 1440-pixel window)


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
    if (route := _route(flow)) is not None:
        protocol, peer = route
        if is_request:
            protocol, peer = peer, protocol
    else:
        protocol = _path_protocol(flow.request.path) or _body_protocol(data, is_request, flow.request.headers)
    if protocol is None:
        return None
    model, stream = _gemini_url(flow.request.path) if protocol == "gemini" else (None, None)
    return Subject(protocol, is_request, status, model, stream, peer if peer != protocol else None)


def _route(flow: http.HTTPFlow) -> tuple[str, str] | None:
    """(client protocol, backend protocol) of a routed flow, live or saved."""
    if (ex := exchange.get(flow)) is not None:
        return ex.client_protocol, ex.backend_protocol
    summary = flow.metadata.get(exchange.KEY)
    if isinstance(summary, dict) and summary.get("backend"):
        return summary["client_protocol"], summary["backend_protocol"]
    return None


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
    return metadata.content_type == "text/event-stream" or looks_streamed(data)


def looks_streamed(data: bytes) -> bool:
    return data[:64].lstrip().startswith(STREAM_STARTS)


class Unreadable(ValueError):
    """A body the views show as it is; the message says why."""


def _module(protocol: str) -> ModuleType:
    try:
        return translators.get(protocol)
    except (KeyError, ImportError):  # a protocol module not there (yet)
        raise Unreadable(f"no {protocol} translator available") from None


# -- the wire's words ----------------------------------------------------------------------------


@dataclass
class Wire:
    """What the layout reads from the body itself: the protocol, the decoded JSON (a stream: its
    events' objects), the body's own text, the text of the other side's message it was made from
    (``source``: ids there are not the proxy's) and, for a provider's request, the client's
    request in canonical form."""

    protocol: str
    body: Any = None
    own: str = ""
    source: str | None = None
    client: ChatRequest | None = None

    def role(self, role: str) -> str:
        return ROLE_WORDS.get(self.protocol, {}).get(role, role)

    def call_id(self, call_id: str) -> str:
        """A call id as shown: marked when the wire has none (Gemini) or the proxy made it up."""
        if self.own and call_id and call_id not in self.own:
            return "[no id on the wire]"
        if self.source is not None and call_id and call_id not in self.source:
            return f"[{_short(call_id)}, made up by the proxy]"
        return f"[{_short(call_id)}]"

    def system(self) -> str:
        """Where the system prompt travels: a field, or the role of a message."""
        body = self.body if isinstance(self.body, dict) else {}
        if self.protocol == "gemini":
            return "systemInstruction"
        if self.protocol == "openai-responses" and body.get("instructions"):
            return "instructions"
        items = body.get("messages") or body.get("input") or []
        roles = (
            (item.get("role") for item in items if isinstance(item, dict)) if isinstance(items, list) else ()
        )
        return next((role for role in roles if role in ("system", "developer")), "system")


def _chat_stop(body: dict[str, Any]) -> str | None:
    return next((c.get("finish_reason") for c in body.get("choices") or [] if c.get("finish_reason")), None)


def _gemini_stop(body: dict[str, Any]) -> str | None:
    return next((c.get("finishReason") for c in body.get("candidates") or [] if c.get("finishReason")), None)


def _anthropic_stop(body: dict[str, Any]) -> str | None:
    delta = body.get("delta")
    return body.get("stop_reason") or (delta.get("stop_reason") if isinstance(delta, dict) else None)


def _responses_stop(body: dict[str, Any]) -> str | None:
    response = body.get("response", body)
    if not isinstance(response, dict) or response.get("status") in (None, "in_progress", "queued"):
        return None
    if response.get("object", "response") != "response" or "output" not in response:
        return None  # an output item's status, not the answer's
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return f"{response['status']} ({reason})" if reason else response["status"]


# Where each protocol says why the answer ended, read from a body or each stream event's object.
WIRE_STOP: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "openai-chat": _chat_stop,
    "openai-responses": _responses_stop,
    "anthropic": _anthropic_stop,
    "gemini": _gemini_stop,
}


def wire_stop(protocol: str, objects: list[Any]) -> str | None:
    """The last stop reason the objects state, in the wire's own words."""
    read = WIRE_STOP.get(protocol)
    found = [read(o) for o in objects if isinstance(o, dict)] if read else []
    return next((stop for stop in reversed(found) if stop), None)


def flat(value: Any, path: str, depth: int = 1) -> Iterable[tuple[str, Any]]:
    """A parameter by dotted wire paths: objects are opened down to ``FLAT_DEPTH`` names
    (``stream_options.include_usage``, ``generationConfig.maxOutputTokens``), deeper ones stay JSON."""
    if isinstance(value, dict) and value and depth < FLAT_DEPTH:
        for key, inner in value.items():
            yield from flat(inner, f"{path}.{key}", depth + 1)
    else:
        yield path, value


def parameter_lines(wire: Wire, request: ChatRequest) -> list[str]:
    """The body's other fields by their wire paths; on a provider's request (``wire.client``
    known), what the proxy added or changed is marked by comparing ``request``, the body's
    canonical reading, with the client's."""
    body = wire.body if isinstance(wire.body, dict) else {}
    laid_out = LAID_OUT.get(wire.protocol, frozenset())
    fields = WIRE_PARAMETERS.get(wire.protocol, {})
    lines = []
    for key, value in body.items():
        if key in laid_out:
            continue
        for path, leaf in flat(value, key):
            field = fields.get(path)
            mark = proxy_mark(request, wire.client, field) if field and wire.client else ""
            lines.append(f"{path}: {_compact(leaf)}{mark}")
    return lines


def proxy_mark(provider: ChatRequest, client: ChatRequest, field: str) -> str:
    """A provider's parameter the client did not send as it is: the proxy's default or change."""
    sent, asked = getattr(provider, field, None), getattr(client, field, None)
    if sent == asked:
        return ""
    if asked is None or asked is False:
        return "  (added by the proxy)"
    return f"  (set by the proxy; the client sent {_compact(asked)})"


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
        return wrap(both_sides(about, data, metadata) or read_any(about, data))


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
        sided = both_sides(about, data, metadata)
        return wrap(sided or read_any(about, data, streamed=True) + _cut_note(data, metadata))


def read_any(about: Subject, data: bytes, *, streamed: bool | None = None, wire: Wire | None = None) -> str:
    """One body, read as what it is; a body the views cannot read is shown as it is."""
    streamed = (not about.request and looks_streamed(data)) if streamed is None else streamed
    wire = wire or Wire(about.protocol)
    try:
        return read_stream(about, data, wire) if streamed else read_body(about, data, wire)
    except Exception as e:  # a viewer shows what it cannot read; it never fails
        if streamed:
            return sse_fallback(data, f"{about.protocol} stream", _reason(e))
        kind = "request" if about.request else "response"
        return fallback(data, f"{about.protocol} {kind}", _reason(e))


def read_body(about: Subject, data: bytes, wire: Wire | None = None) -> str:
    body = json.loads(data)
    if about.status >= 400:
        return render_error(about, data, body)
    wire = wire or Wire(about.protocol)
    wire.body = body
    wire.own = _text(data)
    module = _module(about.protocol)
    if about.request:
        request = module.parse_request(body, model=_model(about), stream=about.stream)
        return render_request(request, _header(about, "request", request.model), wire)
    answer = module.parse_response(body)
    if not (answer.content or answer.stop_reason or usage_text(answer.usage)):
        raise Unreadable("no message in it")  # lenient parsers read any object as an empty answer
    return render_response(answer, _header(about, "response", answer.model, answer.id), wire)


def read_stream(about: Subject, data: bytes, wire: Wire | None = None) -> str:
    events = decode_stream(_module(about.protocol), data)
    answer = response_from_events(events)
    errors = [event.error for event in events if isinstance(event, StreamError)]
    wire = wire or Wire(about.protocol)
    wire.body = stream_objects(data)
    wire.own = _text(data)
    header = _header(about, "stream, reassembled", answer.model, answer.id)
    return render_response(answer, header, wire, errors)


def stream_objects(data: bytes) -> list[Any]:
    """The JSON object of each event of a stream (SSE, or Gemini's JSON array), for wire words."""
    if data.lstrip().startswith(b"["):
        try:
            return list(json.loads(data))
        except ValueError:
            return []
    parser = SSEParser()
    objects = []
    for event in parser.feed(data) + parser.close():
        try:
            objects.append(json.loads(event.data))
        except ValueError:
            continue  # [DONE], comments
    return objects


def _cut_note(data: bytes, metadata: Metadata) -> str:
    """KeepStreams kept only part of this stream: its missing end is not the provider's fault."""
    seen = metadata.flow.metadata.get(TRUNCATED) if isinstance(metadata.flow, http.HTTPFlow) else None
    return cut_note(len(data), seen)


def cut_note(kept: int, seen: int | None) -> str:
    return f"\n(kept only the first {kept} of {seen} bytes: the rest is not shown)" if seen else ""


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
    if about.stream and about.request:
        items.append("streamGenerateContent")  # Gemini streams by its URL, not a body field
    if about.peer:
        items.append(f"translated from {about.peer}")
    return " · ".join(items)


# -- both sides ----------------------------------------------------------------------------------


def record(flow: http.HTTPFlow, ex: exchange.Exchange, answer: bytes | None = None) -> dict[str, Any] | None:
    """Both sides of a routed call as plain data (saved with the flow): the client's request as
    sent, the request the provider received (headers without the key, which is marked) and, when
    the call was translated, the provider's answer as received. Bytes are kept by reference."""
    upstream, target = ex.upstream, ex.target
    if upstream is None or target is None or not ex.client_content:
        return None
    provider_headers = redact_headers(upstream.headers.items())
    provider_headers[target.family.auth_header] = REDACTED_KEY
    sides: dict[str, Any] = {
        "client": {
            "protocol": ex.client_protocol,
            "url": redact_url(ex.client_url),
            "headers": client_headers(ex),
            "content": ex.client_content,
        },
        "provider": {
            "protocol": ex.backend_protocol,
            "url": redact_url(upstream.url),
            "headers": provider_headers,
            "content": upstream.body if upstream.body is not None else ex.client_content,
        },
        "passthrough": ex.passthrough,
    }
    if answer is not None and not ex.passthrough:
        status = ex.upstream_status or (flow.response.status_code if flow.response else 200)
        sides["answer"] = {"status": status, "content": redacted(answer) if status >= 400 else answer}
    return sides


def client_headers(ex: exchange.Exchange) -> dict[str, str]:
    """The client's headers, credentials redacted; ``Host`` as the client sent it (a reverse
    listener rewrites it to its unused target)."""
    headers = redact_headers(ex.client_headers.items())
    host = urlsplit(ex.client_url).netloc
    return {name: host if name.lower() == "host" and host else value for name, value in headers.items()}


def redacted(content: bytes) -> bytes:
    """A provider's error body without the configured keys (some echo the key they refused)."""
    settings = ctx.master.addons.get("settings") if ctx.master else None
    return settings.redact(content) if hasattr(settings, "redact") else content


def recorded(flow: http.HTTPFlow) -> dict[str, Any] | None:
    """The flow's sides: as KeepStreams recorded them, or (a call still running) from its exchange."""
    sides = flow.metadata.get(SIDES)
    if sides is None and (ex := exchange.get(flow)) is not None:
        sides = record(flow, ex)
    return sides if isinstance(sides, dict) else None


def both_sides(about: Subject, data: bytes, metadata: Metadata) -> str | None:
    """The two sides of this message of a routed call, in the order they travelled, or None."""
    flow = metadata.flow
    sides = recorded(flow) if isinstance(flow, http.HTTPFlow) else None
    if sides is None:
        return None
    if about.request:
        return request_sides(sides)
    return answer_sides(sides, Subject(about.protocol, False, about.status), data) + _cut_note(data, metadata)


def request_sides(sides: dict[str, Any]) -> str:
    client, provider = sides["client"], sides["provider"]
    asked, sent = decoded(client), decoded(provider)
    first = read_any(_side_subject(client, True), asked)
    if sides.get("passthrough") and sent == asked:
        second = "(the client's body, passed through unchanged)"
    else:
        wire = Wire(provider["protocol"], source=_text(asked), client=client_request(client, asked))
        second = read_any(_side_subject(provider, True), sent, wire=wire)
    return (
        side(TITLES["client request"], client, first)
        + "\n\n"
        + side(TITLES["provider request"], provider, second)
    )


def answer_sides(sides: dict[str, Any], about: Subject, data: bytes) -> str:
    answered = sides.get("answer")
    if answered is None:
        note = " (passthrough: the provider's bytes)" if sides.get("passthrough") else ""
        return f"{TITLES['client answer']}{note}\n" + read_any(about, data)
    content = answered["content"]
    provider = Subject(sides["provider"]["protocol"], False, answered["status"])
    first = read_any(provider, content) + cut_note(len(content), answered.get("seen"))
    second = read_any(about, data, wire=Wire(about.protocol, source=_text(content)))
    status = f" (HTTP {answered['status']})"
    return f"{TITLES['provider answer']}{status}\n{first}\n\n{TITLES['client answer']}\n{second}"


def side(title: str, message: dict[str, Any], body: str) -> str:
    """A request side: where it went, what it said, then its headers."""
    headers = [f"  {name}: {value}" for name, value in message["headers"].items()]
    return "\n".join([title, f"POST {message['url']}", body, "headers:", *headers])


def _side_subject(message: dict[str, Any], request: bool) -> Subject:
    protocol = message["protocol"]
    model, stream = _gemini_url(message["url"]) if protocol == "gemini" else (None, None)
    return Subject(protocol, request, 200, model, stream)


def decoded(message: dict[str, Any]) -> bytes:
    """A request side's body without its content encoding (a client may compress what it sends)."""
    content = message["content"]
    coding = next((v for k, v in message["headers"].items() if k.lower() == "content-encoding"), "")
    if not coding or coding == "identity":
        return content
    try:
        return encoding.decode(content, coding)
    except ValueError:
        return content  # shown as it is, with the reason it is not JSON


def client_request(client: dict[str, Any], content: bytes) -> ChatRequest | None:
    about = _side_subject(client, True)
    try:
        return _module(about.protocol).parse_request(
            json.loads(content), model=_model(about), stream=about.stream
        )
    except Exception:
        return None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# -- layout --------------------------------------------------------------------------------------


class Layout:
    """The lines of one rendering; remembers tool names so results can say which call they answer."""

    def __init__(self, header: str, wire: Wire | None = None) -> None:
        self.lines = [header]
        self.call_names: dict[str, str] = {}
        self.wire = wire or Wire("")

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
                return tool_call(part, self.wire.call_id(part.id))
            case ToolResult():
                return self.tool_result(part)
            case Reasoning():
                return reasoning(part)

    def tool_result(self, result: ToolResult) -> str:
        name = result.name or self.call_names.get(result.tool_call_id, "")
        label = " ".join(filter(None, ("←", name, "error" if result.is_error else "result")))
        lines = [f"{label}  {self.wire.call_id(result.tool_call_id)}"]
        for part in result.content:
            text = json_text(part.text) if isinstance(part, Text) else image(part)
            lines.extend("  " + line for line in text.split("\n"))
        return "\n".join(lines)

    def message(self, message: Message) -> None:
        """One canonical message, under the wire's name for each run of its parts (an OpenAI
        Chat user message of tool results is the ``tool`` messages it came from)."""
        if not message.content:
            self.add(f"{self.wire.role(message.role)}: (no content)")
            return
        label = None
        for part in message.content:
            kind = "result" if isinstance(part, ToolResult) else message.role
            if (word := self.wire.role(kind)) != label:
                label = word
                self.add(f"{word}:")
            self.add(self.part(part), 1)

    def text(self) -> str:
        return "\n".join(self.lines)


def render_request(request: ChatRequest, header: str, wire: Wire | None = None) -> str:
    layout = Layout(header, wire)
    if request.system:
        layout.add(f"{layout.wire.system()}:")
        layout.parts(request.system, 1)
    for message in request.messages:
        layout.message(message)
    if request.tools:
        layout.add("tools:")
        for tool in request.tools:
            layout.add(tool_text(tool), 1)
    if parameters := parameter_lines(layout.wire, request):
        layout.add("parameters:")
        for line in parameters:
            layout.add(line, 1)
    return layout.text()


def render_response(
    response: ChatResponse, header: str, wire: Wire | None = None, errors: list[dict[str, Any]] | None = None
) -> str:
    layout = Layout(header, wire)
    layout.message(Message(role="assistant", content=response.content))
    for error in errors or []:
        layout.add(f"error: {error.get('code')}: {error.get('message')}")
    body = layout.wire.body
    stop = wire_stop(layout.wire.protocol, body if isinstance(body, list) else [body]) or response.stop_reason
    if stop:
        matched = f" {json.dumps(response.stop_sequence)}" if response.stop_sequence else ""
        layout.add(f"stop: {stop}{matched}")
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


def tool_call(call: ToolCall, shown_id: str | None = None) -> str:
    signature = f" [signature {_short(call.thought_signature)}]" if call.thought_signature else ""
    return f"→ {call.name}({json_text(call.arguments)})  {shown_id or f'[{_short(call.id)}]'}{signature}"


def reasoning(part: Reasoning) -> str:
    if part.redacted:
        return f"reasoning (redacted) [{_short(part.signature or '')}]"
    signature = f"[signature {_short(part.signature)}]" if part.signature else ""
    if not part.text:
        return f"reasoning: {signature or '(empty)'}"
    body = "\n".join("  " + line for line in [*part.text.split("\n"), signature] if line)
    return "reasoning:\n" + body


def tool_text(tool: Tool) -> str:
    """``name(arg: type, optional?: type)``, then the whole description and the parameters the
    signature does not tell in full (long lines are folded by ``wrap``)."""
    properties, required = _properties(tool.parameters)
    arguments = ", ".join(
        f"{name}{_optional(name, required)}: {schema_type(spec)}" for name, spec in properties.items()
    )
    lines = [f"{tool.name}({arguments})"]
    lines += ["  " + line for line in (tool.description or "").strip().split("\n") if tool.description]
    return "\n".join(lines + schema_lines(tool.parameters, 1, top=True))


def schema_lines(schema: dict[str, Any], depth: int, top: bool = False) -> list[str]:
    """``name?: type — description`` per parameter, nested objects' members one level in. At the
    top, a parameter without a description or members is left to the signature."""
    properties, required = _properties(schema)
    lines = []
    for name, spec in properties.items():
        spec = spec if isinstance(spec, dict) else {}
        inner = _members(spec)
        described = spec.get("description") if isinstance(spec.get("description"), str) else ""
        if top and not described.strip() and inner is None:
            continue
        pad = "  " * depth
        text = f"{name}{_optional(name, required)}: {schema_type(spec)}"
        if described.strip():
            text += " — " + described.strip().replace("\n", "\n" + pad + "  ")
        lines.append(pad + text)
        if inner is not None:
            lines += schema_lines(inner, depth + 1)
    return lines


def _properties(schema: Any) -> tuple[dict[str, Any], set[str]]:
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return {}, set()
    return schema["properties"], set(schema.get("required") or [])


def _members(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema inside a parameter (itself, or its array's items), if it has members."""
    for inner in (spec, spec.get("items")):
        if _properties(inner)[0]:
            return inner
    return None


def _optional(name: str, required: set[str]) -> str:
    return "" if name in required else "?"


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
    """The counts the provider reported, zeros left out (they say nothing)."""
    counts = usage.model_dump(exclude_none=True)
    return " · ".join(f"{label} {counts[key]}" for key, label in USAGE_LABELS.items() if counts.get(key))


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


def wrap(text: str) -> str:
    """Every line cut to ``WIDTH`` characters at spaces, continued two columns further in."""
    return "\n".join(piece for line in text.split("\n") for piece in _wrapped(line))


def _wrapped(line: str) -> list[str]:
    if len(line) <= WIDTH:
        return [line]
    pad = " " * (len(line) - len(line.lstrip(" ")) + 2)
    return textwrap.wrap(
        line, WIDTH, subsequent_indent=pad, break_on_hyphens=False, replace_whitespace=False
    ) or [line]


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


# -- keeping both sides --------------------------------------------------------------------------

StreamCallable = Callable[[bytes], bytes | Iterable[bytes]]


class StreamTee:
    """A ``flow.response.stream`` callable around another one (None: bytes pass unchanged) that
    keeps the first ``limit`` bytes it hands to the client (unless mitmproxy stores them itself)
    and, when asked (a translated stream), the first ``limit`` bytes it was given. Per chunk: an
    append and a subtraction per side."""

    __slots__ = ("inner", "limit", "room", "seen", "kept", "given", "taken", "room_in")

    def __init__(
        self, inner: StreamCallable | None, limit: int, keep_input: bool = False, keep_output: bool = True
    ) -> None:
        self.inner = inner
        self.limit = limit
        self.room = limit if keep_output else 0
        self.seen = 0
        self.kept: list[bytes] = []
        self.given: list[bytes] | None = [] if keep_input else None  # what the provider sent
        self.taken = 0
        self.room_in = limit

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self.given is not None:
            self.taken += len(chunk)
            if self.room_in > 0 and chunk:
                self.given.append(chunk[: self.room_in])
                self.room_in -= len(chunk)
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

    def take_input(self) -> bytes | None:
        """The kept input (None: not kept), once."""
        if self.given is None:
            return None
        given, self.given = b"".join(self.given), []
        return given


def _as_list(out: bytes | Iterable[bytes]) -> list[bytes]:
    """What mitmproxy accepts from a stream callable (bytes or any iterable) as the list of
    non-empty pieces the suite's stream contract promises."""
    if isinstance(out, bytes):
        return [out] if out else []
    return list(out)


class KeepStreams:
    """Keeps both sides of each routed LLM call viewable: records the client's request and the
    provider's answer in ``flow.metadata`` (see ``record``) and keeps what the client received of
    a streamed answer as the response body, so mitmweb can show it (mitmproxy stores no streamed
    body). Runs after TranslateResponses: it wraps the stream callable that one set up, and finds
    the provider's whole answer on the exchange."""

    def load(self, loader) -> None:
        loader.add_option(
            "llm_keep_stream_kb",
            int,
            1024,
            "Keep up to this many KB of each streamed LLM answer as the client received it (the "
            "response body, for mitmweb and the LLM Stream view) and, on a translated route, as "
            "well as the provider sent it. 0 turns it off.",
        )

    def configure(self, updated: set[str]) -> None:
        if "llm_keep_stream_kb" in updated and ctx.options.llm_keep_stream_kb < 0:
            raise exceptions.OptionsError("llm_keep_stream_kb must be 0 (off) or a positive number of KB")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        limit = ctx.options.llm_keep_stream_kb * 1024
        if not limit or response is None or not response.stream or (ex := exchange.get(flow)) is None:
            return
        stored = ctx.options.store_streamed_bodies  # mitmproxy keeps what the client received itself
        if stored and ex.passthrough:
            return
        inner = response.stream if callable(response.stream) else None
        response.stream = StreamTee(inner, limit, keep_input=not ex.passthrough, keep_output=not stored)

    def response(self, flow: http.HTTPFlow) -> None:
        self._keep(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._keep(flow)  # a stream cut off mid-way: what the client got is still worth seeing

    @staticmethod
    def _keep(flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        tee = _tee(flow)
        answer = ex.upstream_content if ex is not None and ex.first_byte is not None else None
        if tee is not None and flow.response is not None and flow.response.raw_content is None:
            flow.response.raw_content = tee.take()
            if tee.truncated:
                flow.metadata[TRUNCATED] = tee.seen
                note = f"streamed body: kept the first {tee.limit // 1024} KB of {tee.seen} bytes"
                flow.comment = f"{flow.comment}\n{note}" if flow.comment else note
        if tee is not None and (given := tee.take_input()) is not None:
            answer = given
        try:
            sides = record(flow, ex, answer) if ex is not None else None
        except Exception:  # an observer: the addons after it (usage, metrics, capture) must still run
            logger.exception("LLM views: could not record both sides of %r", ex)
            return
        if sides is not None:
            if tee is not None and tee.taken > tee.limit and "answer" in sides:
                sides["answer"]["seen"] = tee.taken
            flow.metadata[SIDES] = sides


def _tee(flow: http.HTTPFlow) -> StreamTee | None:
    """The flow's tee; the capture's recorder, when on, wraps it: look inside."""
    tee = flow.response.stream if flow.response is not None else None
    while tee is not None and not isinstance(tee, StreamTee):
        tee = getattr(tee, "inner", None)
    return tee
