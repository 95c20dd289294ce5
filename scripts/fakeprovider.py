"""A fast fake LLM provider for benchmarks: OpenAI Chat and Anthropic Messages on one loopback port.

Why not ``tests/support/fakes/``: those fakes validate every request and cut streams into 7-byte
pieces to catch translation bugs, which costs far more CPU than the proxy under test. This one is a
raw asyncio HTTP/1.1 server with keep-alive whose answers are precomputed bytes, so that a
benchmark measures the proxy, not the fake. The answers are still real protocol (docs/wire.md
§1.3-1.4, §3.3-3.4, usage included), so the proxy's decoders and encoders do their real work.

Routes: ``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages`` (Anthropic). The requested
model name, which the proxy forwards or translates unchanged, chooses the answer:

- ``"stream": true`` absent -> one small JSON answer;
- ``<name>-n<N>`` streamed -> N content events (default ``DEFAULT_EVENTS``), all written at once;
- ``<name>-n<N>-gap<MS>`` streamed -> the same, but the stream's head (start and one delta) comes
  first and the rest MS milliseconds later: time to first byte without the rest of a burst;
- ``<name>-hold`` streamed -> the stream's head (start and one delta), then nothing until
  ``POST /bench/release`` (which ends every held stream normally) or the client closes: open, idle
  streams for memory measurements;
- ``GET /bench/last`` -> ``{"path": …, "bytes": N}`` of the last generation request received: a
  benchmark checks with it that a proxy sent the whole conversation upstream;
- ``-call<Tool>`` anywhere in the name -> the answer ends with a call of that tool, as agents'
  answers do: whole, text then the call; streamed, the last ``ARG_PIECES`` of the N events are the
  call's arguments in pieces (so N stays the number of content events, with or without a call).
  ``Bash`` gets a harmless shell command (a reactor judges it and lets it pass), any other tool a
  path.

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
CALL = re.compile(r"-call([A-Za-z0-9_]+)")
GAP = re.compile(r"-gap(\d+)\b")
HOLD_SUFFIX = "-hold"
RELEASE_PATH = b"/bench/release"
LAST_PATH = b"/bench/last"
MAX_CACHED = 256  # answers kept per model name; a benchmark uses a handful
ARG_PIECES = 8  # a streamed call's arguments arrive in this many deltas, as providers cut them
CALL_ID = "call_bench_1"
# The arguments of the call the fake makes, per tool; a tool not listed gets the default.
CALL_ARGUMENTS: dict[str, dict[str, str]] = {
    "Bash": {"command": "ls -la src/ && git status --short", "description": "List the sources"},
}
DEFAULT_ARGUMENTS = {"path": "src/app/main.py"}
HEAD_SCAN = 4096  # the model and stream keys are looked for here first (bodies can be megabytes)


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def sse(payload: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + compact(payload) + b"\n\n"


def word(i: int) -> str:
    return f" w{i % 100}"


@dataclass(frozen=True)
class Call:
    """The tool call an answer ends with: its name and its JSON arguments, whole and in pieces."""

    name: str
    arguments: str

    @classmethod
    def of(cls, model: str) -> Call | None:
        if (m := CALL.search(model)) is None:
            return None
        return cls(m[1], compact(CALL_ARGUMENTS.get(m[1], DEFAULT_ARGUMENTS)).decode())

    def pieces(self, count: int) -> list[str]:
        size = -(-len(self.arguments) // count)
        return [self.arguments[i * size : (i + 1) * size] for i in range(count)]


def split_events(events: int, call: Call | None) -> tuple[int, int]:
    """(text deltas, argument deltas) of a stream of `events` content events."""
    if call is None:
        return max(events, 1), 0
    events = max(events, 2)
    pieces = min(ARG_PIECES, events - 1)
    return events - pieces, pieces


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
    finish = "stop"
    if call := Call.of(model):
        function = {"name": call.name, "arguments": call.arguments}
        message["tool_calls"] = [{"id": CALL_ID, "type": "function", "function": function}]
        finish = "tool_calls"
    return compact(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
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

    call = Call.of(model)
    texts, pieces = split_events(events, call)
    deltas = [chunk({"content": word(i)}) for i in range(texts)]
    if call is not None:
        function = {"name": call.name, "arguments": ""}
        start = {"index": 0, "id": CALL_ID, "type": "function", "function": function}
        deltas.append(chunk({"tool_calls": [start]}))
        deltas += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in call.pieces(pieces)
        ]
    head = [chunk({"role": "assistant", "content": ""}), *deltas[:1]]
    tail = [
        chunk({}, "tool_calls" if call else "stop"),
        sse({**base, "choices": [], "usage": openai_usage(texts + pieces)}),
        b"data: [DONE]\n\n",
    ]
    return head, [*deltas[1:], *tail]


# --- Anthropic Messages ---------------------------------------------------------------------------
ANTHROPIC_USAGE = {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def anthropic_body(model: str) -> bytes:
    content: list[dict[str, Any]] = [{"type": "text", "text": TEXT}]
    if call := Call.of(model):
        use = {"type": "tool_use", "id": CALL_ID, "name": call.name, "input": json.loads(call.arguments)}
        content.append(use)
    return compact(
        {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "tool_use" if call else "end_turn",
            "stop_sequence": None,
            "usage": {**ANTHROPIC_USAGE, "output_tokens": 6},
        }
    )


def block_delta(index: int, kind: str, **delta: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, **delta}}


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
    call = Call.of(model)
    texts, pieces = split_events(events, call)
    deltas = [event(block_delta(0, "text_delta", text=word(i))) for i in range(texts)]
    deltas.append(event({"type": "content_block_stop", "index": 0}))
    if call is not None:
        block = {"type": "tool_use", "id": CALL_ID, "name": call.name, "input": {}}
        deltas.append(event({"type": "content_block_start", "index": 1, "content_block": block}))
        deltas += [event(block_delta(1, "input_json_delta", partial_json=p)) for p in call.pieces(pieces)]
        deltas.append(event({"type": "content_block_stop", "index": 1}))
    head = [
        event({"type": "message_start", "message": message}),
        event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        *deltas[:1],
    ]
    tail = [
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use" if call else "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": texts + pieces},
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
        return stream_bytes(*protocol.frames(model, events))


def content_length(head: bytes) -> int:
    """The Content-Length of a lowercased request head (0 when absent)."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : end if end >= 0 else len(head)])


def model_and_stream(buffer: bytearray, start: int, end: int) -> tuple[str, bool]:
    """The requested model and whether it asks for a stream, read from the body in the buffer.

    The keys are looked for near the start first (clients put them there); the whole body is
    searched only when they are not there."""
    near = min(end, start + HEAD_SCAN)
    model = MODEL.search(buffer, start, near) or MODEL.search(buffer, start, end)
    stream = STREAM.search(buffer, start, near) or STREAM.search(buffer, start, end)
    return (model[1].decode() if model else ""), stream is not None


class Fake:
    """State shared by the connections: the answers, the pacing and the held streams."""

    def __init__(self, pacing_ms: float) -> None:
        self.answers = Answers()
        self.pacing = pacing_ms / 1000
        self.held: dict[Connection, Stream] = {}
        self.last = {"path": "", "bytes": 0}  # the last generation request received

    def release(self) -> bytes:
        """End every held stream normally; the answer says how many."""
        held, self.held = self.held, {}
        for connection, stream in held.items():
            connection.resume(stream.rest)
        return json_response(compact({"released": len(held)}))


class Connection(asyncio.Protocol):
    """One keep-alive client connection: requests answered in order, one at a time.

    A request's head is parsed once, then its body is only counted until it is complete: bodies of
    megabytes arrive in many pieces, and searching the whole buffer on each would make the fake,
    not the proxy, the bottleneck."""

    def __init__(self, fake: Fake) -> None:
        self.fake = fake
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a paced or held stream is being written
        self.open = True
        self.pacer: asyncio.Future[None] | None = None
        self.head: tuple[bytes, int, int] | None = None  # (path, body start, body end) of the next request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.fake.held.pop(self, None)
        self.open = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.busy and self._complete():
            assert self.head is not None
            path, start, end = self.head
            self.head = None
            if path in PROTOCOLS:
                self.fake.last = {"path": path.decode(), "bytes": end - start}
            self._answer(path, model_and_stream(self.buffer, start, end))
            del self.buffer[:end]

    def _complete(self) -> bool:
        """Is the next request in the buffer whole? Its head is parsed the first time it is there."""
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(self.buffer[:end]).lower()
            path = head.split(b" ", 2)[1].partition(b"?")[0]
            self.head = (path, end + 4, end + 4 + content_length(head))
        return len(self.buffer) >= self.head[2]

    def resume(self, data: bytes) -> None:
        """Finish the current stream with `data`, then go on with any waiting request."""
        assert self.transport is not None
        if self.open:
            self.transport.write(data)
            self.busy = False
            self.data_received(b"")

    def _answer(self, path: bytes, request: tuple[str, bool]) -> None:
        assert self.transport is not None
        if path == RELEASE_PATH:
            self.transport.write(self.fake.release())
            return
        if path == LAST_PATH:
            self.transport.write(json_response(compact(self.fake.last)))
            return
        model, stream = request
        answer = self.fake.answers.get(path, model, stream)
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
