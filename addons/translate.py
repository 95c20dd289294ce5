"""Turns the provider's answer into the client's protocol: whole bodies, errors and streams.

Streams are translated as they arrive (decoder → events → encoder) through mitmproxy's
``flow.response.stream``; nothing is buffered beyond an incomplete SSE event.
"""

from __future__ import annotations

import json
import logging
import time

from mitmproxy import http

import translators
from addons import exchange
from addons.egress import ERROR_HEADER
from addons.replies import error_response
from addons.settings import Settings
from translators.canonical import (
    ChatResponse,
    Event,
    ReasoningDelta,
    StreamError,
    Text,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    UsageUpdate,
)
from translators.errors import ProxyError
from translators.protocol import StreamDecoder, StreamEncoder

logger = logging.getLogger(__name__)


CONTENT_EVENTS = (TextDelta, ReasoningDelta, ToolCallStart, ToolCallDelta)


def observe(ex: exchange.Exchange, events: list[Event]) -> None:
    """Record on the exchange what a stream said: usage, errors, output text, first-token time."""
    for event in events:
        if isinstance(event, CONTENT_EVENTS):
            if ex.first_token is None:
                ex.first_token = time.time()
            if isinstance(event, TextDelta | ReasoningDelta):
                ex.output_parts.append(event.text)
            elif isinstance(event, ToolCallDelta):
                ex.output_parts.append(event.arguments)
            else:
                ex.output_parts.append(event.name)
        elif isinstance(event, UsageUpdate):
            ex.usage = ex.usage.merged(event.usage) if ex.usage else event.usage
        elif isinstance(event, StreamError):
            ex.error = ProxyError.from_dict(event.error)


class StreamObserver:
    """Same protocol on both sides: the bytes pass untouched while a decoder reads alongside."""

    def __init__(self, decoder: StreamDecoder, ex: exchange.Exchange) -> None:
        self.decoder = decoder
        self.exchange = ex
        self.failed = False

    def __call__(self, chunk: bytes) -> list[bytes]:
        if not self.failed:
            try:
                observe(self.exchange, self.decoder.feed(chunk) if chunk else self.decoder.close())
            except Exception:
                self.failed = True
                logger.exception("LLM stream observation failed; the stream itself is unaffected")
        return [chunk] if chunk else []


class StreamTranslator:
    """A ``flow.response.stream`` callable: provider bytes in, client bytes out."""

    def __init__(self, decoder: StreamDecoder, encoder: StreamEncoder, ex: exchange.Exchange) -> None:
        self.decoder = decoder
        self.encoder = encoder
        self.exchange = ex
        self.failed = False

    def __call__(self, chunk: bytes) -> list[bytes]:
        # mitmproxy sends an empty chunk as the end of a chunked body: never return one mid-stream.
        try:
            events = self.decoder.feed(chunk) if chunk else self.decoder.close()
            out = self.encoder.encode(events) if events else b""
            if not chunk:
                out += self.encoder.close()
            observe(self.exchange, events)
        except Exception:
            out = self._fail()
        return [out] if out else []

    def _fail(self) -> bytes:
        if self.failed:
            return b""
        self.failed = True
        logger.exception("LLM stream translation failed")
        error = ProxyError("internal", "the proxy could not translate the provider's stream")
        self.exchange.error = error
        try:
            return self.encoder.encode([StreamError(error=error.to_dict())])
        except Exception:
            return b""


class TranslateResponses:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        response = flow.response
        if ex is None or ex.target is None or response is None:
            return
        exchange.publish(flow)  # the relay chose the answering target: saved flows say which
        if not ex.stream:
            return
        if response.status_code >= 400 or ERROR_HEADER in response.headers:
            return  # a short error body: translated whole in `response`
        if ex.passthrough:
            response.stream = StreamObserver(translators.get(ex.backend_protocol).StreamDecoder(), ex)
            return
        client = translators.get(ex.client_protocol)
        options = {"sse": ex.gemini_sse} if ex.client_protocol == "gemini" else {}
        encoder = client.StreamEncoder(ex.request, **options)
        backend = translators.get(ex.backend_protocol)
        response.stream = StreamTranslator(backend.StreamDecoder(), encoder, ex)
        response.headers.pop("content-length", None)
        sse = ex.client_protocol != "gemini" or ex.gemini_sse
        response.headers["content-type"] = client.STREAM_CONTENT_TYPE if sse else "application/json"
        response.headers["cache-control"] = "no-cache"

    def response(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or ex.target is None or flow.response is None:
            return
        ex.ended = time.time()
        response = flow.response
        if not ex.stream or response.status_code >= 400:
            ex.upstream_status, ex.upstream_content = response.status_code, response.raw_content
        if ERROR_HEADER in response.headers:
            ex.error = ProxyError.from_dict(json.loads(response.content or b"{}"))
            flow.response = error_response(ex.client_protocol, ex.error)
        elif response.status_code >= 400:
            self._upstream_error(flow, ex)
        elif not ex.stream and ex.operation == "generate":
            self._translate_body(flow, ex)

    def _upstream_error(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> None:
        response = flow.response
        content = self.settings.redact(response.content or b"")
        if ex.passthrough:
            response.content = content
            return
        error = translators.get(ex.backend_protocol).parse_error(response.status_code, content)
        ex.error = error
        flow.response = error_response(ex.client_protocol, error)

    def _translate_body(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> None:
        """Read the answer (for usage) and, unless it passes through, render it for the client."""
        try:
            body = json.loads(flow.response.content or b"")
            answer = translators.get(ex.backend_protocol).parse_response(body)
        except (ValueError, ProxyError):
            if ex.passthrough:
                return  # the client reads its own protocol; the proxy just cannot count it
            ex.error = ProxyError("upstream_error", "the provider returned a response the proxy cannot read")
            flow.response = error_response(ex.client_protocol, ex.error)
            return
        ex.usage = answer.usage
        ex.first_token = ex.first_token or ex.first_byte  # a whole answer arrives with its first byte
        observe(ex, _content_events(answer))
        if ex.passthrough:
            return
        rendered = translators.get(ex.client_protocol).render_response(answer, ex.request)
        flow.response.content = json.dumps(rendered, ensure_ascii=False, separators=(",", ":")).encode()
        flow.response.headers["content-type"] = "application/json"


def _content_events(answer: ChatResponse) -> list[Event]:
    """A whole answer as the content events a stream of it would carry (for ``observe``)."""
    events: list[Event] = []
    for index, part in enumerate(answer.content):
        if isinstance(part, Text):
            events.append(TextDelta(text=part.text))
        elif isinstance(part, ToolCall):
            events += [ToolCallStart(index=index, id=part.id, name=part.name), ToolCallDelta(index=index, arguments=part.arguments)]
    return events
