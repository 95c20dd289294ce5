"""Turns the provider's answer into the client's protocol: whole bodies, errors and streams.

Every answer passes the exchange's event stages (``addons.stages``) as canonical events:
streams as they arrive (decoder → stages → encoder) through mitmproxy's ``flow.response.stream``,
nothing buffered beyond an incomplete SSE event and what a stage holds; whole bodies as the events
a stream of them would carry. Same protocol on both sides and no stage that changes answers →
the provider's bytes pass untouched while a decoder reads alongside.
"""

from __future__ import annotations

import logging
import time

from mitmproxy import ctx, hooks, http

import translators
from addons import exchange
from addons.egress import ERROR_HEADER
from addons.replies import error_response
from addons.settings import Settings
from addons.stages import StageChain, answer_events, answer_from_events
from translators import wire
from translators.canonical import (
    End,
    Event,
    MessageStart,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    UsageUpdate,
)
from translators.errors import ProxyError
from translators.protocol import StreamDecoder, StreamEncoder

logger = logging.getLogger(__name__)
WARNING_HEADER = "x-llm-warning"  # what a translation removed from the request, "; "-joined


CONTENT_EVENTS = (TextDelta, ReasoningDelta, ToolCallStart, ToolCallDelta)


def observe(ex: exchange.Exchange, events: list[Event]) -> None:
    """Record on the exchange what the client got: output, usage, errors, first-token time."""
    for event in events:
        if isinstance(event, CONTENT_EVENTS):
            if ex.first_token is None:
                ex.first_token = time.time()
            ex.output.add(event)
        elif isinstance(event, UsageUpdate):
            ex.usage = ex.usage.merged(event.usage) if ex.usage else event.usage
        elif isinstance(event, StreamError):
            ex.fail(ProxyError.from_dict(event.error))


def complete_events(chunk: bytes) -> bytes:
    """The chunk up to its last complete SSE event: the rest (an event the decoder has not read
    yet) is dropped where a stage ends the answer, so the closing events start on a boundary."""
    ends = [i + len(sep) for sep in (b"\n\n", b"\r\n\r\n") if (i := chunk.rfind(sep)) >= 0]
    return chunk[: max(ends, default=0)]


class StreamObserver:
    """Same protocol on both sides, no stage changes answers: the bytes pass untouched while a
    decoder reads alongside and the stages watch."""

    def __init__(
        self, decoder: StreamDecoder, ex: exchange.Exchange, chain: StageChain | None = None
    ) -> None:
        self.decoder = decoder
        self.chain = chain or StageChain(ex.event_stages)
        self.exchange = ex
        self.failed = False
        # What shapes the client's framing (blocks opened), kept only if a stage may end the answer.
        self.shape: list[Event | tuple[type, int]] | None = (
            [] if any(hasattr(stage, "ending") for stage in self.chain.stages) else None
        )

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self.exchange.cut:
            return []  # a stage ended the answer: what the provider still sends is dropped
        if not self.failed:
            try:
                decoded = self.decoder.feed(chunk) if chunk else self.decoder.close()
                events = self.chain.feed(decoded) + (self.chain.close() if not chunk else [])
                if self.chain.ending is not None:
                    return [complete_events(chunk) + self._ending(decoded)]
                if self.shape is not None:
                    self._shape(events)
                observe(self.exchange, events)
                self.exchange.delivered |= any(isinstance(e, End) for e in events)
            except Exception:
                self.failed = True
                logger.exception("LLM stream observation failed; the stream itself is unaffected")
        return [chunk] if chunk else []

    def _shape(self, events: list[Event]) -> None:
        """Note the blocks as they open: a call's start and end, and where in the exchange's
        output (``Exchange.output``, which keeps the text anyway) each text or reasoning block starts."""
        shape, output = self.shape, self.exchange.output
        assert shape is not None
        seen = {TextDelta: len(output.text), ReasoningDelta: len(output.reasoning)}
        for event in events:
            kind = type(event)
            if kind in seen:
                if not shape or not (isinstance(shape[-1], tuple) and shape[-1][0] is kind):
                    shape.append((kind, seen[kind]))
                seen[kind] += 1
            elif kind in (ToolCallStart, ToolCallEnd):
                shape.append(event)

    def _primer(self) -> list[Event]:
        """The events so far as the client's encoder needs them: each block once, with its text."""
        output = self.exchange.output
        said = {TextDelta: output.text, ReasoningDelta: output.reasoning}
        starts = [entry for entry in self.shape or [] if isinstance(entry, tuple)]
        primer: list[Event] = []
        for entry in self.shape or []:
            if not isinstance(entry, tuple):
                primer.append(entry)
                continue
            kind, start = entry
            later = [s for k, s in starts if k is kind and s > start]
            primer.append(kind(text="".join(said[kind][start : later[0] if later else None])))
        return primer

    def _ending(self, decoded: list[Event]) -> bytes:
        """The closing events in the client's protocol, after the provider's bytes so far (all
        of this chunk's, ``decoded``): only they are encoded, by an encoder primed (its output
        discarded) with the blocks the provider sent, so that indices, framing and final
        summaries continue the provider's."""
        ex, ending = self.exchange, self.chain.ending or []
        self._shape(decoded)
        observe(ex, decoded)
        options = {"sse": ex.gemini_sse} if ex.client_protocol == "gemini" else {}
        encoder = translators.get(ex.client_protocol).StreamEncoder(ex.canonical(), **options)
        encoder.encode([MessageStart(id="", model=ex.selector), *self._primer()])
        observe(ex, ending)
        ex.delivered = True
        closing = encoder.encode(ending) + encoder.close()
        ex.cut = True  # only now: a request the proxy cannot encode for passes on unchanged
        return closing


class StreamTranslator:
    """A ``flow.response.stream`` callable: provider bytes in, client bytes out.

    The client's last event (``[DONE]``, ``message_stop``, …) is held until the provider's stream
    has ended: SDKs hang up right after it, and a hang-up while the provider still sends would
    break the flow off as an abort. Only the bytes encoded from the provider's terminal event are
    held (nothing is encoded after it); a terminal event a stage makes on its own (the proxy ending
    the answer) is sent at once."""

    def __init__(
        self,
        decoder: StreamDecoder,
        encoder: StreamEncoder,
        ex: exchange.Exchange,
        chain: StageChain | None = None,
    ) -> None:
        self.decoder = decoder
        self.chain = chain or StageChain(ex.event_stages)
        self.encoder = encoder
        self.exchange = ex
        self.failed = False
        self.held: bytes | None = None  # the client's last event, from the provider's terminal one
        self.ended = False  # an End was encoded for the client

    def __call__(self, chunk: bytes) -> list[bytes]:
        # mitmproxy sends an empty chunk as the end of a chunked body: never return one mid-stream.
        if self.failed:
            return self._release(chunk, b"")
        try:
            decoded = self.decoder.feed(chunk) if chunk else self.decoder.close()
            events = self.chain.feed(decoded) + (self.chain.close() if not chunk else [])
            out = self.encoder.encode(events) if events else b""
            if not chunk:
                out += self.encoder.close()
            observe(self.exchange, events)
            self.ended |= any(isinstance(e, End) for e in events)
            self.exchange.cut |= self.chain.ended
            if chunk and any(isinstance(e, (End, StreamError)) for e in decoded):
                self.held = b""
        except Exception:
            out = self._fail()
        return self._release(chunk, out)

    def _release(self, chunk: bytes, out: bytes) -> list[bytes]:
        """Hold ``out`` after the provider's terminal event until its stream ends."""
        if self.held is not None:
            self.held += out
            if chunk:
                return []
            out, self.held = self.held, None
        self.exchange.delivered |= self.ended and bool(out)
        return [out] if out else []

    def _fail(self) -> bytes:
        self.failed = True
        logger.exception("LLM stream translation failed")
        error = self.exchange.fail(
            ProxyError("internal", "the proxy could not translate the provider's stream")
        )
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
        exchange.publish(flow)  # the egress chose the answering target: saved flows say which
        if ex.request is not None and ex.request.warnings and not ex.passthrough:
            # What the translation removed (hosted tools): one log line, told to the client too.
            logger.warning("%r: %s", ex, "; ".join(ex.request.warnings))
            response.headers[WARNING_HEADER] = "; ".join(ex.request.warnings)
        if not ex.stream:
            return
        if response.status_code >= 400 or ERROR_HEADER in response.headers:
            return  # a short error body: translated whole in `response`
        chain = StageChain(ex.event_stages)
        backend = translators.get(ex.backend_protocol)
        if ex.passthrough and not chain.changes_answer:
            response.stream = StreamObserver(backend.StreamDecoder(), ex, chain)
            return
        client = translators.get(ex.client_protocol)
        options = {"sse": ex.gemini_sse} if ex.client_protocol == "gemini" else {}
        encoder = client.StreamEncoder(ex.canonical(), **options)
        response.stream = StreamTranslator(backend.StreamDecoder(), encoder, ex, chain)
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
            error = ex.fail(ProxyError.from_dict(wire.loads(response.content or b"{}")))
            flow.response = error_response(ex.client_protocol, error)
        elif response.status_code >= 400:
            self._upstream_error(flow, ex)
        elif not ex.stream and ex.operation == "generate":
            self._translate_body(flow, ex)
        exchange.publish(flow)  # saved flows keep the usage, the decisions and the final error

    def error(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is not None and ex.delivered and ex.error is None and flow.response is not None:
            # The client hung up after the protocol's final event (the OpenAI SDK does after
            # [DONE]): a finished answer, for the flow list and every observer after this one.
            flow.error = None
            ex.ended = flow.response.timestamp_end = time.time()
            ctx.master.addons.trigger(hooks.UpdateHook([flow]))
        exchange.publish(flow)

    def _upstream_error(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> None:
        response = flow.response
        content = self.settings.redact(response.content or b"")
        if ex.passthrough:
            response.content = content
            return
        error = ex.fail(translators.get(ex.backend_protocol).parse_error(response.status_code, content))
        flow.response = error_response(ex.client_protocol, error)

    def _translate_body(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> None:
        """Read the answer, pass it through the stages and, unless its bytes pass untouched,
        render it for the client."""
        try:
            answer = ex.answer(flow.response.content or b"")
        except (ValueError, ProxyError):
            if ex.passthrough:
                return  # the client reads its own protocol; the proxy just cannot count it
            error = ex.fail(
                ProxyError("upstream_error", "the provider returned a response the proxy cannot read")
            )
            flow.response = error_response(ex.client_protocol, error)
            return
        ex.first_token = ex.first_token or ex.first_byte  # a whole answer arrives with its first byte
        chain = StageChain(ex.event_stages)
        original = answer_events(answer)
        events = chain.feed(list(original)) + chain.close()
        observe(ex, events)
        if ex.passthrough and not chain.ended and (not chain.changes_answer or events == original):
            return  # nothing was changed: the provider's bytes are the client's (no render, no parse)
        if chain.changes_answer or chain.ended:
            answer = answer_from_events(events, answer)
        rendered = translators.get(ex.client_protocol).render_response(answer, ex.canonical())
        flow.response.content = wire.dumps(rendered)
        flow.response.headers["content-type"] = "application/json"
