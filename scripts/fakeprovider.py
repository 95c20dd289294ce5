"""A fast fake LLM provider for benchmarks: OpenAI Chat and Anthropic Messages on one loopback port.

Why not ``tests/support/fakes/``: those fakes validate every request and cut streams into 7-byte
pieces to catch translation bugs, which costs far more CPU than the proxy under test. This one is a
raw asyncio HTTP/1.1 server with keep-alive whose answers are precomputed bytes, so that a
benchmark measures the proxy, not the fake. The answers are still real protocol (docs/protocols.md
§1.3-1.4, §3.3-3.4, usage included), so the proxy's decoders and encoders do their real work.

Routes: ``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages`` (Anthropic). The requested
model name, which the proxy forwards or translates unchanged, chooses the answer:

- ``"stream": true`` absent -> one small JSON answer;
- ``<name>-n<N>`` streamed -> N content events (default ``DEFAULT_EVENTS``), all written at once;
- ``<name>-n<N>-gap<MS>`` streamed -> the same, but the stream's head (start and one delta) comes
  first and the rest MS milliseconds later: time to first byte without the rest of a burst;
- ``<name>-hold`` streamed -> the stream's head (start and one delta), then nothing until
  ``POST /bench/release`` (which ends every held stream normally) or the client closes: open, idle
  streams for memory measurements.

Run alone: ``python scripts/fakeprovider.py --port 8900 [--pacing-ms 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CREATED = 1767225600
DEFAULT_EVENTS = 20
TEXT = "Hello from the bench."
MODEL = re.compile(rb'"model"\s*:\s*"([^"]*)"')
STREAM = re.compile(rb'"stream"\s*:\s*true')
EVENTS = re.compile(r"-n(\d+)\b")
GAP = re.compile(r"-gap(\d+)\b")
HOLD_SUFFIX = "-hold"
RELEASE_PATH = b"/bench/release"
MAX_CACHED = 256  # answers kept per model name; a benchmark uses a handful


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def sse(payload: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + compact(payload) + b"\n\n"


def word(i: int) -> str:
    return f" w{i % 100}"


# --- OpenAI Chat Completions ---------------------------------------------------------------------
def openai_usage(completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": 12,
        "completion_tokens": completion,
        "total_tokens": 12 + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def openai_body(model: str) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": TEXT, "refusal": None, "annotations": []}
    return compact(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
            "usage": openai_usage(6),
            "service_tier": "default",
            "system_fingerprint": None,
        }
    )


def openai_frames(model: str, events: int) -> tuple[list[bytes], list[bytes]]:
    """(head, rest): the role chunk and first delta, then the other deltas, finish, usage, [DONE]."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse({**base, "choices": [choice], "usage": None})

    deltas = [chunk({"content": word(i)}) for i in range(events)]
    head = [chunk({"role": "assistant", "content": ""}), *deltas[:1]]
    tail = [
        chunk({}, "stop"),
        sse({**base, "choices": [], "usage": openai_usage(events)}),
        b"data: [DONE]\n\n",
    ]
    return head, [*deltas[1:], *tail]


# --- Anthropic Messages ---------------------------------------------------------------------------
ANTHROPIC_USAGE = {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def anthropic_body(model: str) -> bytes:
    return compact(
        {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {**ANTHROPIC_USAGE, "output_tokens": 6},
        }
    )


def anthropic_frames(model: str, events: int) -> tuple[list[bytes], list[bytes]]:
    """(head, rest): message_start, the text block's start and first delta, then the rest."""

    def event(payload: dict[str, Any]) -> bytes:
        return sse(payload, payload["type"])

    message: dict[str, Any] = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**ANTHROPIC_USAGE, "output_tokens": 1},
    }
    deltas = [
        event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word(i)}})
        for i in range(events)
    ]
    head = [
        event({"type": "message_start", "message": message}),
        event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        *deltas[:1],
    ]
    tail = [
        event({"type": "content_block_stop", "index": 0}),
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": events},
            }
        ),
        event({"type": "message_stop"}),
    ]
    return head, [*deltas[1:], *tail]


@dataclass(frozen=True)
class Protocol:
    body: Callable[[str], bytes]
    frames: Callable[[str, int], tuple[list[bytes], list[bytes]]]


PROTOCOLS = {
    b"/v1/chat/completions": Protocol(openai_body, openai_frames),
    b"/v1/messages": Protocol(anthropic_body, anthropic_frames),
}
NOT_FOUND = compact({"error": {"message": "fake bench provider: no such endpoint", "type": "not_found"}})


# --- HTTP framing ---------------------------------------------------------------------------------
def json_response(body: bytes, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True)
class Stream:
    """A stream as wire bytes: whole, split where a held stream pauses, and per HTTP chunk (for pacing)."""

    whole: bytes
    head: bytes  # the response head plus the stream's first frames
    rest: bytes
    chunks: list[bytes]


def stream_bytes(head: list[bytes], rest: list[bytes]) -> Stream:
    chunks = [http_chunk(frame) for frame in (*head, *rest)] + [LAST_CHUNK]
    first, after = b"".join(chunks[: len(head)]), b"".join(chunks[len(head) :])
    return Stream(STREAM_HEAD + first + after, STREAM_HEAD + first, after, chunks)


class Answers:
    """Precomputed response bytes per (path, model, stream)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, str, bool], bytes | Stream] = {}

    def get(self, path: bytes, model: str, stream: bool) -> bytes | Stream:
        key = (path, model, stream)
        if (found := self._cache.get(key)) is not None:
            return found
        answer = self._build(path, model, stream)
        if len(self._cache) < MAX_CACHED:
            self._cache[key] = answer
        return answer

    @staticmethod
    def _build(path: bytes, model: str, stream: bool) -> bytes | Stream:
        protocol = PROTOCOLS.get(path)
        if protocol is None:
            return json_response(NOT_FOUND, "404 Not Found")
        if not stream:
            return json_response(protocol.body(model))
        events = int(m[1]) if (m := EVENTS.search(model)) else DEFAULT_EVENTS
        return stream_bytes(*protocol.frames(model, max(events, 1)))


def content_length(head: bytes) -> int:
    """The Content-Length of a lowercased request head (0 when absent)."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : end if end >= 0 else len(head)])


class Fake:
    """State shared by the connections: the answers, the pacing and the held streams."""

    def __init__(self, pacing_ms: float) -> None:
        self.answers = Answers()
        self.pacing = pacing_ms / 1000
        self.held: dict[Connection, Stream] = {}

    def release(self) -> bytes:
        """End every held stream normally; the answer says how many."""
        held, self.held = self.held, {}
        for connection, stream in held.items():
            connection.resume(stream.rest)
        return json_response(compact({"released": len(held)}))


class Connection(asyncio.Protocol):
    """One keep-alive client connection: requests answered in order, one at a time."""

    def __init__(self, fake: Fake) -> None:
        self.fake = fake
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a paced or held stream is being written
        self.open = True
        self.pacer: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.fake.held.pop(self, None)
        self.open = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.busy and (request := self._next_request()) is not None:
            self._answer(*request)

    def _next_request(self) -> tuple[bytes, bytes] | None:
        """(path, body) of the next complete request in the buffer, removed from it."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).lower()
        length = content_length(head)
        if len(self.buffer) < end + 4 + length:
            return None
        path = head.split(b" ", 2)[1]
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        return path.partition(b"?")[0], body

    def resume(self, data: bytes) -> None:
        """Finish the current stream with `data`, then go on with any waiting request."""
        assert self.transport is not None
        if self.open:
            self.transport.write(data)
            self.busy = False
            self.data_received(b"")

    def _answer(self, path: bytes, body: bytes) -> None:
        assert self.transport is not None
        if path == RELEASE_PATH:
            self.transport.write(self.fake.release())
            return
        model = m[1].decode() if (m := MODEL.search(body)) else ""
        answer = self.fake.answers.get(path, model, STREAM.search(body) is not None)
        if isinstance(answer, bytes):
            self.transport.write(answer)
        elif model.endswith(HOLD_SUFFIX):
            self.busy = True
            self.transport.write(answer.head)
            self.fake.held[self] = answer
        elif gap := GAP.search(model):
            self.busy = True
            self.transport.write(answer.head)
            asyncio.get_running_loop().call_later(int(gap[1]) / 1000, self.resume, answer.rest)
        elif self.fake.pacing > 0:
            self.busy = True
            self.pacer = asyncio.ensure_future(self._paced(answer))  # a reference keeps the task alive
        else:
            self.transport.write(answer.whole)

    async def _paced(self, answer: Stream) -> None:
        assert self.transport is not None
        self.transport.write(STREAM_HEAD)
        for chunk in answer.chunks:
            if not self.open:
                return
            self.transport.write(chunk)
            await asyncio.sleep(self.fake.pacing)
        self.resume(b"")


async def serve(port: int, pacing_ms: float = 0.0, ready: Callable[[int], None] | None = None) -> None:
    """Serve forever on 127.0.0.1:port (0: any free port, reported through ``ready``)."""
    fake = Fake(pacing_ms)
    server = await asyncio.get_running_loop().create_server(
        lambda: Connection(fake), "127.0.0.1", port, backlog=1024
    )
    if ready is not None:
        ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed on stdout)")
    parser.add_argument("--pacing-ms", type=float, default=0.0, help="pause after each event (0: no pause)")
    args = parser.parse_args()

    def ready(port: int) -> None:
        print(f"listening on 127.0.0.1:{port}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.pacing_ms, ready))


if __name__ == "__main__":
    main()
