"""Wire capture: every LLM flow's events, appended as CBOR records to files in ``llm_capture``.

Observes, never changes a flow. Goes last in the chain, so that it sees the request as the egress
will send it and wraps the stream callable of TranslateResponses (recording the provider's bytes,
the callable's input). Records, one per event, keyed by flow id (format: ``addons.capture_format``):

- ``request``  the client's request as sent, the request as sent upstream (None when the suite
  answered locally), client protocol, surface, target, passthrough, and ``key``: the name of the
  proxy key that authenticated it (None without keys, or when the key was refused);
- ``response`` status and headers when the answer's head arrives;
- ``chunk``    each provider chunk of a streamed answer, with its arrival time, as it happens;
- ``end``      final status and headers, usage, attempts, errors, timings, and for an answer that
  was not streamed the provider's body and the body the client got.

Credentials never reach the disk: credential headers and ``key=`` URL parameters are replaced when
a record is built, and every occurrence of a configured provider key is removed on the writer's
thread before encoding (off the event loop, like all disk I/O).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from addons import access, exchange, listeners
from addons.capture_format import CREDENTIAL_HEADERS, REDACTED, VERSION, Record, Writer
from addons.settings import Settings

logger = logging.getLogger(__name__)

MB = 1024 * 1024
METADATA_KEY = "llm_capture"  # on flows being captured, until their "end" record
# Headers of the hop to the egress relay, not of the request the provider gets.
TARGET_FIELDS = ("instance", "model", "protocol")
TIMINGS = ("started", "first_byte", "first_token", "ended")  # Exchange attributes, time.time() floats
KEY_PARAMETER = re.compile(r"([?&]key=)[^&#]*")

Redact = Callable[[bytes], bytes]
StreamCallable = Callable[[bytes], Any]


def redact_url(url: str) -> str:
    return KEY_PARAMETER.sub(rf"\g<1>{REDACTED}", url)


def redact_headers(headers: Iterable[tuple[str, str]], skip: frozenset[str] = frozenset()) -> dict[str, str]:
    return {
        name: REDACTED if name.lower() in CREDENTIAL_HEADERS else value
        for name, value in headers
        if name.lower() not in skip
    }


def scrub(value: Any, redact: Redact) -> Any:
    """``value`` with ``redact`` applied to every bytes and text in it. Text comes out as valid
    UTF-8 (mitmproxy keeps undecodable header bytes as lone surrogates, which CBOR cannot carry)."""
    if isinstance(value, bytes):
        return redact(value)
    if isinstance(value, str):
        return redact(value.encode("utf-8", "surrogateescape")).decode("utf-8", "replace")
    if isinstance(value, dict):
        return {scrub(k, redact): scrub(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, redact) for v in value]
    return value


def _message(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Record:
    return {"method": method, "url": redact_url(url), "headers": headers, "body": body}


def request_record(flow: http.HTTPFlow, ex: exchange.Exchange | None) -> Record:
    fields = _exchange_request(flow, ex) if ex else _front_door_request(flow)
    key = access.key_of(flow)
    return {"v": VERSION, "kind": "request", "flow": flow.id, "key": key.name if key else None, **fields}


def _exchange_request(flow: http.HTTPFlow, ex: exchange.Exchange) -> Record:
    request, target, sent = flow.request, ex.target, ex.upstream
    upstream = None
    if sent is not None:  # what the first target received (credentials are added later, never here)
        body = sent.body if sent.body is not None else ex.client_content
        upstream = _message(request.method, sent.url, redact_headers(sent.headers.items()), body)
    client_headers = redact_headers(ex.client_headers.items())
    return {
        "t": ex.started,
        "protocol": ex.client_protocol,
        "surface": ex.surface,
        "operation": ex.operation,
        "selector": ex.selector,
        "stream": ex.stream,
        "target": {name: getattr(target, name) for name in TARGET_FIELDS} if target else None,
        "passthrough": ex.passthrough,
        "client": _message(request.method, ex.client_url, client_headers, ex.client_content),
        "upstream": upstream,
    }


def _front_door_request(flow: http.HTTPFlow) -> Record:
    """A flow the front door answered before any exchange existed (unknown path, bad JSON, models)."""
    request = flow.request
    headers = redact_headers(request.headers.items())
    return {
        "t": request.timestamp_start,
        "protocol": None,
        "surface": listeners.surface(flow),
        "operation": None,
        "selector": None,
        "stream": False,
        "target": None,
        "passthrough": False,
        "client": _message(request.method, request.pretty_url, headers, request.raw_content),
        "upstream": None,
    }


def response_record(flow: http.HTTPFlow) -> Record:
    assert flow.response is not None
    return {
        "v": VERSION,
        "kind": "response",
        "flow": flow.id,
        "t": time.time(),
        "status": flow.response.status_code,
        "headers": redact_headers(flow.response.headers.items()),
    }


def end_record(flow: http.HTTPFlow, ex: exchange.Exchange | None) -> Record:
    response = flow.response
    outcome = _exchange_outcome(ex) if ex else _front_door_outcome(flow)
    outcome["timings"]["ended"] = outcome["timings"]["ended"] or time.time()
    return {
        "v": VERSION,
        "kind": "end",
        "flow": flow.id,
        "t": outcome["timings"]["ended"],
        "status": response.status_code if response else None,
        "headers": redact_headers(response.headers.items()) if response else None,
        "flow_error": flow.error.msg if flow.error else None,
        # A stream's bytes are its chunk records; the body kept for mitmweb would repeat them.
        "client_body": response.raw_content if response and not response.stream else None,
        **outcome,
    }


def _exchange_outcome(ex: exchange.Exchange) -> Record:
    return {
        "usage": ex.usage.model_dump(exclude_none=True) if ex.usage else None,
        "attempts": [dataclasses.asdict(a) for a in ex.attempts],
        "error": ex.error.to_dict() if ex.error else None,
        "timings": {name: getattr(ex, name) for name in TIMINGS},
        "upstream_status": ex.upstream_status,
        "upstream_body": ex.upstream_content,
        "decisions": [dataclasses.asdict(d) for d in ex.decisions],
        # The verifier's calls for this flow: what it was asked and what it answered.
        "side_calls": [
            {
                **side.summary(),
                "request_body": side.upstream.body if side.upstream else None,
                "upstream_body": side.upstream_content,
            }
            for side in ex.side_calls
        ],
    }


def _front_door_outcome(flow: http.HTTPFlow) -> Record:
    timings = {name: None for name in TIMINGS} | {"started": flow.request.timestamp_start}
    return {
        "usage": None,
        "attempts": [],
        "error": None,
        "timings": timings,
        "upstream_status": None,
        "upstream_body": None,
        "decisions": [],
        "side_calls": [],
    }


class ChunkRecorder:
    """Wraps a ``flow.response.stream`` callable: records each provider chunk, then hands it on
    unchanged (same return value, same final ``b""`` call). Per chunk: a clock read, a small dict
    and a queue put; redaction and encoding happen on the writer's thread."""

    __slots__ = ("inner", "flow_id", "put")

    def __init__(self, inner: StreamCallable | None, flow_id: str, put: Callable[[Record], None]) -> None:
        self.inner = inner  # None: mitmproxy's plain ``stream = True``
        self.flow_id = flow_id
        self.put = put

    def __call__(self, chunk: bytes) -> Any:
        if chunk:
            self.put({"v": VERSION, "kind": "chunk", "flow": self.flow_id, "t": time.time(), "data": chunk})
        if self.inner is None:
            return [chunk] if chunk else []
        return self.inner(chunk)


class Capture:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.writer: Writer | None = None
        self._running = False

    def load(self, loader) -> None:
        loader.add_option(
            "llm_capture",
            str,
            "",
            "Directory for wire captures of every LLM flow (CBOR sequence files, read them with "
            "scripts/captures.py). Empty: no capture.",
        )
        loader.add_option(
            "llm_capture_rotate_mb", int, 64, "Size in MiB at which a capture file is closed, the next begun."
        )

    def configure(self, updated: set[str]) -> None:
        if not updated & {"llm_capture", "llm_capture_rotate_mb"}:
            return
        try:
            writer = self._writer(ctx.options.llm_capture, ctx.options.llm_capture_rotate_mb)
        except exceptions.OptionsError as e:
            if self._running:
                raise
            logger.error(str(e))  # at start-up: stops mitmdump with just this line
            return
        self._close()
        self.writer = writer

    def running(self) -> None:
        self._running = True

    def done(self) -> None:
        self._close()

    def _writer(self, directory: str, rotate_mb: int) -> Writer | None:
        if rotate_mb < 1:
            raise exceptions.OptionsError(f"llm_capture_rotate_mb must be at least 1, not {rotate_mb}")
        if not directory:
            return None
        path = Path(directory).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise exceptions.OptionsError(f"llm_capture: cannot create {path}: {e.strerror}") from None
        return Writer(path, rotate_mb * MB, self._redact, tainted=self.settings.holds_secret)

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def put(self, record: Record) -> None:
        if self.writer is not None:
            self.writer.put(record)

    def _redact(self, record: Record) -> Record:
        """On the writer's thread, before encoding: every configured provider key, anywhere (in a
        chunk record only its data comes from outside)."""
        if record["kind"] == "chunk":
            return record | {"data": self.settings.redact_secrets(record["data"])}
        return scrub(record, self.settings.redact_secrets)

    def request(self, flow: http.HTTPFlow) -> None:
        if self.writer is None:
            return
        ex = exchange.get(flow)
        if ex is None and listeners.surface(flow) == "proxy":
            return  # not an LLM flow: ordinary intercepted traffic
        flow.metadata[METADATA_KEY] = True
        self.put(request_record(flow, ex))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if METADATA_KEY not in flow.metadata or flow.response is None:
            return
        self.put(response_record(flow))
        stream = flow.response.stream
        if stream:
            inner = stream if callable(stream) else None
            flow.response.stream = ChunkRecorder(inner, flow.id, self.put)

    def response(self, flow: http.HTTPFlow) -> None:
        self._end(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._end(flow)

    def _end(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.pop(METADATA_KEY, None):
            self.put(end_record(flow, exchange.get(flow)))
