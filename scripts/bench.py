"""Benchmark of the proxy against bare mitmproxy and a direct connection, on one machine, in one run.

    .venv/bin/python scripts/bench.py [--quick] [--paths a,b,c,d,e] [--json bench-results.json]

Paths (all OpenAI Chat Completions clients, all against ``scripts/fakeprovider.py`` on loopback):

- a: client → fake provider directly (the floor; shows the load generator is not the bottleneck);
- b: client → bare ``mitmdump`` in reverse mode, no addon (the reference of every ratio);
- c: client → ``mitmdump -s addons/llm.py``, OpenAI backend (same protocol: the byte-for-byte path);
- d: the suite translating the OpenAI client to an Anthropic backend and the Anthropic stream back;
- e: d with wire capture on (``--set llm_capture=DIR``; "n/a" while that option does not exist).

Metrics: small non-streaming request latency (p50, p99 at concurrency 1 and 32); time to first byte
of a stream (its first event alone, then a 50 ms pause) and time to the last event of a stream sent
as one burst (1,000 events by default); requests per second at saturation and proxy CPU per small
request; proxy CPU per 1,000 streamed events (from /proc/PID/stat); proxy resident memory per open
stream (VmRSS with 200 held streams minus idle VmRSS); and, in-process, the CPU that the stream
translation (decoder, encoder, bookkeeping) spends per event. Every figure is also given as a ratio
to path b.

Method, and why:
- The load generator is a raw asyncio HTTP/1.1 keep-alive client in a process of its own, and the
  fake provider a raw asyncio server answering precomputed bytes: both are far cheaper per request
  than any proxy, which path a shows.
- On 2+ cores the proxies are pinned to CPU 0 and the fake provider, the load generator and this
  script to CPU 1 (``--no-pin`` turns that off). Against ``--no-pin`` on a 2-core machine the
  difference stayed within run-to-run noise (about ±20%); pinning is the default because it keeps
  the proxy's core free of its own load, so that its figures do not depend on the scheduler.
- Bare mitmdump gets ``stream_large_bodies=1``: without it mitmproxy buffers a whole SSE answer
  before sending any of it, so its time to first byte and memory would not be comparable.
- Each path has a proxy process of its own, all started up front. Each is warmed up, then its
  memory is measured before any heavy run (freed memory from earlier load would hide the cost of
  open streams). The timed runs are split into rounds that go round the paths in turn, so that
  other work on the machine weighs on every path alike rather than on whichever ran at the time.
- Runs are fixed-count with a time cap, or fixed-duration, so a default run takes about two
  minutes on 2 cores (progress goes to stderr).
- Targets are shown, not asserted: a loaded or noisy machine moves the numbers (the run warns
  when the load average is already high).

The exit status is 1 when any request failed or a stream came back short; timings never fail it.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import math
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/bench.py`: the repository's packages
    sys.path.insert(0, str(REPO))
if str(REPO / "tests") not in sys.path:  # the process harness, `support.proxy`, as the tests import it
    sys.path.append(str(REPO / "tests"))

from support.proxy import ADDON, MITMDUMP, Server, answers_http, free_port

from scripts import fakeprovider

HOLD_TIMEOUT = 60.0
SETTLE_SECONDS = 0.3  # before reading a proxy's memory
BUSY_LOAD = 0.5  # a 1-minute load average above this before the run earns a warning
PROXY_CPU, LOAD_CPU = 0, 1
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
# Pause after a stream's first event in the time-to-first-byte run: longer than any proxy needs to
# pass one event on, so that the rest of the stream never delays the first byte.
FIRST_EVENT_GAP_MS = 50


@dataclass(frozen=True)
class Plan:
    """How much each path is measured: counts, durations and concurrency."""

    warmup: int = 300
    c1_requests: int = 1000
    c32_requests: int = 4000
    latency_seconds: float = 4.0  # cap of each latency run (a slow or busy machine sends fewer)
    stream_events: int = 1000
    ttfb_streams: int = 20
    cpu_streams: int = 40
    cpu_concurrency: int = 4
    saturation_seconds: float = 3.0
    saturation_concurrency: int = 64
    open_streams: int = 200
    rounds: int = 4  # the timed runs are split into rounds that go round the paths


QUICK = Plan(
    warmup=5,
    c1_requests=10,
    c32_requests=64,
    stream_events=50,
    ttfb_streams=2,
    cpu_streams=4,
    saturation_seconds=0.3,
    open_streams=10,
    rounds=1,
)


@dataclass(frozen=True)
class PathSpec:
    label: str
    proxy: str  # "none" | "bare" | "suite" | "capture"
    model: str  # what the client asks for; the fake reads suffixes (-n1000, -hold) from it


PATHS: dict[str, PathSpec] = {
    "a": PathSpec("direct", "none", "bench"),
    "b": PathSpec("bare mitmdump", "bare", "bench"),
    "c": PathSpec("suite, same protocol", "suite", "bench"),
    "d": PathSpec("suite, OpenAI→Anthropic", "suite", "anthropic:bench"),
    "e": PathSpec("d + wire capture", "capture", "anthropic:bench"),
}

# metric -> (row title, number format); the proxy-only ones are None for path a.
METRICS: dict[str, tuple[str, str]] = {
    "latency_c1_p50_ms": ("latency c=1 p50 (ms)", "{:.2f}"),
    "latency_c1_p99_ms": ("latency c=1 p99 (ms)", "{:.2f}"),
    "latency_c32_p50_ms": ("latency c=32 p50 (ms)", "{:.2f}"),
    "latency_c32_p99_ms": ("latency c=32 p99 (ms)", "{:.2f}"),
    "stream_ttfb_p50_ms": ("stream first byte p50 (ms)", "{:.2f}"),
    "stream_last_event_p50_ms": ("stream last event p50 (ms)", "{:.2f}"),
    "saturation_rps": ("requests/s at saturation", "{:,.0f}"),
    "cpu_ms_per_request": ("proxy CPU ms / small request", "{:.2f}"),
    "cpu_s_per_1k_events": ("proxy CPU s / 1,000 events", "{:.4f}"),
    "cpu_us_per_event": ("proxy CPU µs / event", "{:.1f}"),
    "rss_kb_per_open_stream": ("proxy RSS KB / open stream", "{:.1f}"),
}
SAMPLES = ("latency_c1", "latency_c32", "ttfb", "last_event")  # pooled across rounds, in ms
TOTALS = ("stream_cpu", "stream_events", "saturation_cpu", "saturation_requests", "saturation_seconds")
PROXY_METRICS = ("cpu_ms_per_request", "cpu_s_per_1k_events", "cpu_us_per_event", "rss_kb_per_open_stream")


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of unsorted values."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


# --- requests --------------------------------------------------------------------------------------
def chat_body(model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 64,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def http_request(port: int, body: dict[str, Any], path: str = "/v1/chat/completions") -> bytes:
    data = compact(body)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer sk-client-unused\r\ncontent-length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


@dataclass(frozen=True)
class Requests:
    """The raw requests of one path: small; a stream of N events as one burst, or with its first
    event alone (then a pause); a held stream."""

    small: bytes
    burst: bytes
    first_alone: bytes
    hold: bytes

    @classmethod
    def for_path(cls, port: int, model: str, events: int) -> Requests:
        return cls(
            http_request(port, chat_body(model, stream=False)),
            http_request(port, chat_body(f"{model}-n{events}", stream=True)),
            http_request(port, chat_body(f"{model}-n{events}-gap{FIRST_EVENT_GAP_MS}", stream=True)),
            http_request(port, chat_body(f"{model}{fakeprovider.HOLD_SUFFIX}", stream=True)),
        )


# --- load generator (runs in its own process) -----------------------------------------------------
@dataclass
class Reply:
    start: float
    keep: bool  # keep the body (streams are checked for their events)
    status: int = 0
    chunked: bool = False
    first: float = 0.0  # first body byte
    end: float = 0.0
    parts: list[bytes] = field(default_factory=list)

    def events(self) -> int:
        body = b"".join(self.parts)
        return (dechunk(body) if self.chunked else body).count(b"data:")


def dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while (eol := data.find(b"\r\n", pos)) >= 0 and (size := int(data[pos:eol].split(b";")[0], 16)):
        out += data[eol + 2 : eol + 2 + size]
        pos = eol + 4 + size
    return bytes(out)


class Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, parsing only the framing."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.reply = Reply(0.0, False)
        self.done: asyncio.Future[Reply] | None = None
        self.first_byte: asyncio.Future[None] | None = None
        self.in_head = True
        self.left = 0  # body bytes left (Content-Length), or of the current chunk with its CRLF
        self.trailer = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection closed before the response ended"))

    def send(self, request: bytes, keep: bool = False, notify: bool = False) -> asyncio.Future[Reply]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.reply = Reply(time.perf_counter(), keep)
        self.done = loop.create_future()
        self.first_byte = loop.create_future() if notify else None
        self.in_head, self.trailer, self.left = True, False, 0
        self.transport.write(request)
        return self.done

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._head(bytes(self.buffer[:end]).lower())
            data = bytes(self.buffer[end + 4 :])
            self.buffer.clear()
            if not self.reply.chunked and self.left == 0:
                return self._finish()
            if not data:
                return
        reply = self.reply
        if not reply.first:
            reply.first = time.perf_counter()
            if self.first_byte is not None:
                self.first_byte.set_result(None)
        if reply.keep:
            reply.parts.append(data)
        if self._chunk_body(data) if reply.chunked else self._counted_body(data):
            self._finish()

    def _head(self, head: bytes) -> None:
        self.in_head = False
        self.reply.status = int(head[9:12])
        self.reply.chunked = b"\r\ntransfer-encoding: chunked" in head
        if not self.reply.chunked and (at := head.find(b"\r\ncontent-length:")) >= 0:
            eol = head.find(b"\r\n", at + 2)
            self.left = int(head[at + 17 : eol if eol >= 0 else len(head)])

    def _counted_body(self, data: bytes) -> bool:
        self.left -= len(data)
        return self.left <= 0

    def _chunk_body(self, data: bytes) -> bool:
        """Walk the chunk framing; True at the end of the body."""
        buffer = self.buffer
        buffer += data
        pos = 0
        while True:
            if self.left:
                take = min(self.left, len(buffer) - pos)
                if not take:
                    break
                pos += take
                self.left -= take
                continue
            eol = buffer.find(b"\r\n", pos)
            if eol < 0:
                break
            if self.trailer:
                if eol == pos:
                    buffer.clear()
                    return True
            elif size := int(buffer[pos:eol].split(b";")[0], 16):
                self.left = size + 2
            else:
                self.trailer = True
            pos = eol + 2
        del buffer[:pos]
        return False

    def _finish(self) -> None:
        self.reply.end = time.perf_counter()
        self.in_head = True
        assert self.done is not None
        self.done.set_result(self.reply)


async def open_clients(port: int, count: int) -> list[Client]:
    """One after another: a burst of connects can overflow the proxy's accept queue (1 s SYN retry)."""
    loop = asyncio.get_running_loop()
    return [(await loop.create_connection(Client, "127.0.0.1", port))[1] for _ in range(count)]


def close_all(clients: Sequence[Client]) -> None:
    for client in clients:
        if client.transport is not None:
            client.transport.close()


def shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def job_latency(
    port: int, request: bytes, concurrency: int, count: int, seconds: float
) -> dict[str, Any]:
    """`count` requests over `concurrency` connections, or fewer if `seconds` run out first."""
    clients = await open_clients(port, concurrency)
    latencies: list[float] = []
    failed = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: Client, n: int) -> None:
        nonlocal failed
        for _ in range(n):
            if time.perf_counter() > deadline:
                return
            reply = await client.send(request)
            latencies.append(reply.end - reply.start)
            failed += reply.status != 200

    await asyncio.gather(*(worker(c, n) for c, n in zip(clients, shares(count, concurrency), strict=True)))
    close_all(clients)
    return {"latencies_ms": [t * 1000 for t in latencies], "errors": failed}


async def job_saturate(port: int, request: bytes, concurrency: int, seconds: float) -> dict[str, Any]:
    clients = await open_clients(port, concurrency)
    done = failed = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: Client) -> None:
        nonlocal done, failed
        while time.perf_counter() < deadline:
            reply = await client.send(request)
            done += 1
            failed += reply.status != 200

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed = time.perf_counter() - started
    close_all(clients)
    return {"requests": done, "seconds": elapsed, "errors": failed}


async def job_streams(port: int, request: bytes, count: int, concurrency: int, events: int) -> dict[str, Any]:
    clients = await open_clients(port, concurrency)
    ttfb: list[float] = []
    total: list[float] = []
    received = failed = 0

    async def worker(client: Client, n: int) -> None:
        nonlocal received, failed
        for _ in range(n):
            reply = await client.send(request, keep=True)
            ttfb.append(reply.first - reply.start)
            total.append(reply.end - reply.start)
            got = reply.events()
            received += got
            failed += reply.status != 200 or got < events

    await asyncio.gather(*(worker(c, n) for c, n in zip(clients, shares(count, concurrency), strict=True)))
    close_all(clients)
    return {
        "ttfb_ms": [t * 1000 for t in ttfb],
        "total_ms": [t * 1000 for t in total],
        "events": received,
        "errors": failed,
    }


async def job_hold(port: int, request: bytes, count: int, fake_port: int, pipe: Connection) -> dict[str, Any]:
    """Open `count` streams, report "held" once each has its first bytes, end them on "release"."""
    loop = asyncio.get_running_loop()
    clients = await open_clients(port, count)
    replies = [c.send(request, keep=True, notify=True) for c in clients]
    await asyncio.wait_for(asyncio.gather(*(c.first_byte for c in clients if c.first_byte)), HOLD_TIMEOUT)
    pipe.send("held")
    await loop.run_in_executor(None, pipe.recv)
    releaser = (await open_clients(fake_port, 1))[0]
    await releaser.send(http_request(fake_port, {}, fakeprovider.RELEASE_PATH.decode()))
    ended = await asyncio.wait_for(asyncio.gather(*replies, return_exceptions=True), HOLD_TIMEOUT)
    close_all([*clients, releaser])
    failed = sum(
        not isinstance(r, Reply) or r.status != 200 or r.events() < fakeprovider.DEFAULT_EVENTS for r in ended
    )
    return {"errors": failed}


JOBS: dict[str, Callable[..., Any]] = {
    "latency": job_latency,
    "saturate": job_saturate,
    "streams": job_streams,
    "hold": job_hold,
}


def loadgen_main(pipe: Connection, cpus: set[int] | None) -> None:
    """The load generator process: runs the jobs it receives until it receives None."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    asyncio.run(_serve_jobs(pipe))


async def _serve_jobs(pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    while (job := await loop.run_in_executor(None, pipe.recv)) is not None:
        kind = job.pop("kind")
        extra = {"pipe": pipe} if kind == "hold" else {}
        try:
            result = await JOBS[kind](**job, **extra)
        except Exception as e:  # noqa: BLE001 - reported to the orchestrator, which stops the run
            result = {"failure": f"{kind}: {type(e).__name__}: {e}"}
        pipe.send(result)


class LoadGen:
    def __init__(self, cpus: set[int] | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(
            target=loadgen_main, args=(child, cpus), name="bench-loadgen", daemon=True
        )
        self.process.start()

    def run(self, kind: str, while_held: Callable[[], Any] = lambda: None, **job: Any) -> dict[str, Any]:
        self.pipe.send({"kind": kind, **job})
        message = self.pipe.recv()
        held = None
        if message == "held":
            held = while_held()
            self.pipe.send("release")
            message = self.pipe.recv()
        if "failure" in message:
            raise RuntimeError(f"load generator: {message['failure']}")
        return {**message, "held": held}

    def stop(self) -> None:
        self.pipe.send(None)
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


# --- processes under test --------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of all the process's threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def settled_rss_kb(pid: int) -> int:
    """VmRSS once the process has had a moment to finish what it was doing."""
    time.sleep(SETTLE_SECONDS)
    return rss_kb(pid)


def child_setup(cpus: set[int] | None) -> Callable[[], None]:
    """What a child runs before exec: die with the benchmark even when it is killed (no orphaned
    servers), and keep to its CPUs."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only calls into it

    def setup() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


def server(name: str, command: list[str], port: int, workdir: Path, cpus: set[int] | None) -> Server:
    """A process under test (fake provider or mitmdump), started by the tests' harness: its output
    in a log file (so the benchmark runs no reader thread beside ``child_setup``), ready once it
    answers HTTP at all (the suite's /v1/models, a 404 from the others)."""
    return Server(
        name, command, ready=answers_http(port), port=port, cwd=workdir,
        setup=child_setup(cpus), log_file=workdir / f"{name}.log",
    )  # fmt: skip


def suite_config(fake_port: int) -> str:
    return json.dumps(
        {
            "backends": {
                "openai": {
                    "type": "openai",
                    "base_url": f"http://127.0.0.1:{fake_port}/v1",
                    "api_keys": ["sk-bench"],
                },
                "anthropic": {
                    "type": "anthropic",
                    "base_url": f"http://127.0.0.1:{fake_port}",
                    "api_keys": ["sk-bench"],
                },
            },
            "default_backend": "openai",
        }
    )  # JSON is YAML


def proxy_command(kind: str, port: int, fake_port: int, workdir: Path) -> list[str]:
    confdir = ["--set", f"confdir={workdir}"]
    if kind == "bare":
        return [
            str(MITMDUMP), "-q", *confdir,
            "--mode", f"reverse:http://127.0.0.1:{fake_port}@127.0.0.1:{port}",
            "--set", "connection_strategy=lazy",
            "--set", "stream_large_bodies=1",
        ]  # fmt: skip
    config = workdir / "llm.yaml"
    config.write_text(suite_config(fake_port))
    capture = ["--set", f"llm_capture={workdir / 'capture'}"] if kind == "capture" else []
    return [
        str(MITMDUMP), *confdir,
        "--set", f"llm_config={config}",
        "--mode", f"reverse:http://127.0.0.1:9@127.0.0.1:{port}",
        "--set", "llm_anthropic_port=0",
        "-q", "-s", str(ADDON), *capture,
    ]  # fmt: skip


def capture_available(workdir: Path) -> bool:
    """Does the suite define ``llm_capture``? (An unknown ``--set`` is silently deferred, not refused.)"""
    listed = subprocess.run(
        [str(MITMDUMP), "--set", f"confdir={workdir}", "-s", str(ADDON), "--options"],
        cwd=workdir,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    return any(line.startswith("llm_capture:") for line in listed.stdout.splitlines())


# --- measuring one path ----------------------------------------------------------------------------
class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class PathResult:
    label: str
    available: bool = True
    reason: str = ""
    metrics: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(METRICS))
    ratio_to_b: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(METRICS))
    details: dict[str, Any] = field(default_factory=dict)


class Measurement:
    """One path: warm-up and memory once, then its share of every timed run per round, its
    samples pooled across rounds. Proxy-only figures stay None for the direct path."""

    def __init__(
        self, spec: PathSpec, port: int, fake_port: int, proxy: Server | None, loadgen: LoadGen, plan: Plan
    ) -> None:
        self.port, self.fake_port, self.proxy, self.loadgen, self.plan = port, fake_port, proxy, loadgen, plan
        self.requests = Requests.for_path(port, spec.model, plan.stream_events)
        self.result = PathResult(spec.label, details={"errors": 0})
        self.samples: dict[str, list[float]] = {name: [] for name in SAMPLES}
        self.totals: dict[str, float] = dict.fromkeys(TOTALS, 0.0)

    def run(self, kind: str, **job: Any) -> dict[str, Any]:
        outcome = self.loadgen.run(kind, port=self.port, **job)
        self.result.details["errors"] += outcome["errors"]
        return outcome

    def streams(self, request: bytes, count: int, concurrency: int = 1) -> dict[str, Any]:
        return self.run(
            "streams", request=request, count=count, concurrency=concurrency, events=self.plan.stream_events
        )

    def cpu(self) -> float:
        return cpu_seconds(self.proxy.pid) if self.proxy else 0.0

    def warm_up(self) -> None:
        self.run("latency", request=self.requests.small, concurrency=8, count=self.plan.warmup, seconds=2.0)
        self.streams(self.requests.burst, 2)

    def memory(self) -> None:
        if (proxy := self.proxy) is None:
            return
        idle = settled_rss_kb(proxy.pid)
        held = self.run(
            "hold", request=self.requests.hold, count=self.plan.open_streams, fake_port=self.fake_port,
            while_held=lambda: settled_rss_kb(proxy.pid),
        )["held"]  # fmt: skip
        self.result.metrics["rss_kb_per_open_stream"] = (held - idle) / self.plan.open_streams
        self.result.details |= {"rss_idle_kb": idle, "rss_held_kb": held}

    def round(self, rounds: int) -> None:
        """1/rounds of each timed run: latency, streams, CPU per event, saturation."""
        plan, small, samples, totals = self.plan, self.requests.small, self.samples, self.totals
        for concurrency, count in ((1, plan.c1_requests), (32, plan.c32_requests)):
            outcome = self.run(
                "latency", request=small, concurrency=concurrency, count=max(count // rounds, concurrency),
                seconds=plan.latency_seconds / rounds,
            )  # fmt: skip
            samples[f"latency_c{concurrency}"] += outcome["latencies_ms"]
        streams = max(plan.ttfb_streams // rounds, 1)
        samples["ttfb"] += self.streams(self.requests.first_alone, streams)["ttfb_ms"]
        samples["last_event"] += self.streams(self.requests.burst, streams)["total_ms"]
        before = self.cpu()
        streams = max(plan.cpu_streams // rounds, plan.cpu_concurrency)
        self.streams(self.requests.burst, streams, plan.cpu_concurrency)
        totals["stream_cpu"] += self.cpu() - before
        totals["stream_events"] += streams * plan.stream_events
        before = self.cpu()
        outcome = self.run(
            "saturate", request=small, concurrency=plan.saturation_concurrency,
            seconds=plan.saturation_seconds / rounds,
        )  # fmt: skip
        totals["saturation_cpu"] += self.cpu() - before
        totals["saturation_requests"] += outcome["requests"]
        totals["saturation_seconds"] += outcome["seconds"]

    def finish(self) -> PathResult:
        samples, totals, metrics = self.samples, self.totals, self.result.metrics
        for concurrency in (1, 32):
            latencies = samples[f"latency_c{concurrency}"]
            metrics[f"latency_c{concurrency}_p50_ms"] = percentile(latencies, 0.5)
            metrics[f"latency_c{concurrency}_p99_ms"] = percentile(latencies, 0.99)
        metrics["stream_ttfb_p50_ms"] = percentile(samples["ttfb"], 0.5)
        metrics["stream_last_event_p50_ms"] = percentile(samples["last_event"], 0.5)
        metrics["saturation_rps"] = totals["saturation_requests"] / totals["saturation_seconds"]
        if self.proxy is not None:
            metrics["cpu_ms_per_request"] = totals["saturation_cpu"] / totals["saturation_requests"] * 1000
            metrics["cpu_s_per_1k_events"] = totals["stream_cpu"] / totals["stream_events"] * 1000
            metrics["cpu_us_per_event"] = totals["stream_cpu"] / totals["stream_events"] * 1e6
        self.result.details |= {name: round(value, 3) for name, value in totals.items()}
        self.result.details |= {f"{name}_samples": len(values) for name, values in samples.items()}
        return self.result


def start_path(
    key: str, fake: Server, loadgen: LoadGen, plan: Plan, pin: bool, workdir: Path
) -> tuple[Measurement, Server | None]:
    """The path's proxy, started (none for the direct path), and its measurement."""
    spec = PATHS[key]
    if spec.proxy == "none":
        return Measurement(spec, fake.port, fake.port, None, loadgen, plan), None
    port = free_port()
    pathdir = workdir / key
    pathdir.mkdir()
    command = proxy_command(spec.proxy, port, fake.port, pathdir)
    proxy = server(f"proxy-{key}", command, port, pathdir, {PROXY_CPU} if pin else None).start()
    return Measurement(spec, port, fake.port, proxy, loadgen, plan), proxy


def measure_all(
    keys: Sequence[str], fake: Server, loadgen: LoadGen, plan: Plan, pin: bool, workdir: Path, say: Progress
) -> dict[str, PathResult]:
    """Every path's proxy runs from the start, and the timed runs go round the paths in turn, so
    that a change in the machine's other load falls on every path alike."""
    measurements: dict[str, Measurement] = {}
    proxies: list[Server] = []
    try:
        for key in keys:
            say(f"path {key}: starting ({PATHS[key].label})")
            measurements[key], proxy = start_path(key, fake, loadgen, plan, pin, workdir)
            proxies += [proxy] if proxy else []
        for key, measurement in measurements.items():
            say(f"path {key}: warm-up, then memory with {plan.open_streams} open streams")
            measurement.warm_up()
            measurement.memory()
        for number in range(1, plan.rounds + 1):
            say(f"round {number} of {plan.rounds}: latency, streams, CPU, saturation on every path")
            for measurement in measurements.values():
                measurement.round(plan.rounds)
        return {key: measurement.finish() for key, measurement in measurements.items()}
    finally:
        for proxy in proxies:
            proxy.stop()


# --- translation alone ------------------------------------------------------------------------------
def translation_us_per_event(events: int, repeats: int) -> float:
    """CPU per event of the stream translation the proxy runs for path d (Anthropic → OpenAI Chat).

    The proxy's own ``StreamTranslator`` (decode, encode, observe) is fed one SSE event per chunk,
    as a provider that flushes every event delivers them.
    """
    import translators
    from addons.exchange import Exchange
    from addons.translate import StreamTranslator

    head, rest = fakeprovider.anthropic_frames("bench", events)
    body = chat_body("anthropic:bench", stream=True)
    request = translators.get("openai-chat").parse_request(body, model="bench", stream=True)
    spent = 0.0
    for _ in range(repeats):
        ex = Exchange(
            client_protocol="openai-chat",
            surface="front_door",
            body=body,
            stream=True,
            selector="anthropic:bench",
        )
        translate = StreamTranslator(
            translators.get("anthropic").StreamDecoder(),
            translators.get("openai-chat").StreamEncoder(request),
            ex,
        )
        started = time.process_time()
        for frame in (*head, *rest, b""):
            translate(frame)
        spent += time.process_time() - started
    return spent / (events * repeats) * 1e6


# --- report -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    name: str
    path: str
    metric: str
    reference: str  # a path, or "" for an absolute limit
    limit: float
    higher_is_better: bool = False


TARGETS = [
    Target("c p50 latency within 1.25x of b", "c", "latency_c1_p50_ms", "b", 1.25),
    Target("c throughput within 1.25x of b", "c", "saturation_rps", "b", 1.25, True),
    Target("d p50 latency within 1.5x of b", "d", "latency_c1_p50_ms", "b", 1.5),
    Target("d throughput within 1.5x of b", "d", "saturation_rps", "b", 1.5, True),
    Target("e p50 latency within 1.1x of d", "e", "latency_c1_p50_ms", "d", 1.1),
    Target("e throughput within 1.1x of d", "e", "saturation_rps", "d", 1.1, True),
    *(Target(f"{p} memory under 50 KB per open stream", p, "rss_kb_per_open_stream", "", 50) for p in "cde"),
    Target("translation CPU under 20 µs per event", "", "translation_us_per_event", "", 20),
]


def judge(target: Target, paths: dict[str, PathResult], translation: float | None) -> dict[str, Any]:
    """A target's verdict: PASS/FAIL with its numbers, or n/a when a figure is missing."""
    value = (
        translation
        if not target.path
        else paths[target.path].metrics[target.metric]
        if target.path in paths
        else None
    )
    reference = paths[target.reference].metrics[target.metric] if target.reference in paths else None
    verdict: dict[str, Any] = {"name": target.name, "value": value, "limit": target.limit}
    if value is None or (target.reference and not reference):
        return verdict | {"result": "n/a"}
    if not target.reference:
        return verdict | {"result": "PASS" if value < target.limit else "FAIL"}
    assert reference is not None
    factor = reference / value if target.higher_is_better else value / reference
    return verdict | {
        "reference": reference,
        "factor": factor,
        "result": "PASS" if factor <= target.limit else "FAIL",
    }


def add_ratios(paths: dict[str, PathResult]) -> None:
    base = paths.get("b")
    for result in paths.values():
        for metric, value in result.metrics.items():
            reference = base.metrics[metric] if base else None
            result.ratio_to_b[metric] = value / reference if value is not None and reference else None


def cell(metric: str, result: PathResult) -> str:
    value, ratio = result.metrics[metric], result.ratio_to_b[metric]
    if value is None:
        return "n/a"
    text = METRICS[metric][1].format(value)
    return f"{text} ({ratio:.2f}x)" if ratio is not None else text


def table(paths: dict[str, PathResult]) -> str:
    header = ["metric", *(f"{k}: {r.label}" for k, r in paths.items())]
    rows = [[METRICS[m][0], *(cell(m, r) for r in paths.values())] for m in METRICS]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(
            text.ljust(w) if i == 0 else text.rjust(w)
            for i, (text, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in (header, *rows)
    ]
    missing = [f"{k}: {r.reason}" for k, r in paths.items() if not r.available]
    return "\n".join([*lines, *missing])


def verdict_line(v: dict[str, Any]) -> str:
    if v["result"] == "n/a":
        return f"  n/a   {v['name']}"
    if "factor" in v:
        numbers = f"{v['factor']:.2f}x ({v['value']:.3g} vs {v['reference']:.3g})"
        return f"  {v['result']:<5} {v['name']}: {numbers}"
    return f"  {v['result']:<5} {v['name']}: {v['value']:.1f}"


def targets_text(verdicts: list[dict[str, Any]]) -> str:
    return "\n".join(["targets:", *(verdict_line(v) for v in verdicts)])


# --- main -------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Plan()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few requests per path (smoke test, seconds)")
    parser.add_argument("--paths", default="a,b,c,d,e", help="paths to measure (default: a,b,c,d,e)")
    parser.add_argument("--json", default="bench-results.json", type=Path, help="where the results go")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin processes to CPUs")
    parser.add_argument(
        "--requests", type=int, help=f"requests at concurrency 1 (default {defaults.c1_requests})"
    )
    parser.add_argument(
        "--c32-requests", type=int, help=f"requests at concurrency 32 (default {defaults.c32_requests})"
    )
    parser.add_argument(
        "--events", type=int, help=f"events per measured stream (default {defaults.stream_events})"
    )
    parser.add_argument(
        "--streams", type=int, help=f"streams for the CPU figure (default {defaults.cpu_streams})"
    )
    parser.add_argument(
        "--duration", type=float, help=f"seconds at saturation (default {defaults.saturation_seconds:g})"
    )
    parser.add_argument(
        "--open-streams", type=int, help=f"held streams for memory (default {defaults.open_streams})"
    )
    args = parser.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if unknown := [p for p in args.paths if p not in PATHS]:
        parser.error(f"unknown path(s) {', '.join(unknown)}; choose from {', '.join(PATHS)}")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    overrides = {
        "c1_requests": args.requests,
        "c32_requests": args.c32_requests,
        "stream_events": args.events,
        "cpu_streams": args.streams,
        "saturation_seconds": args.duration,
        "open_streams": args.open_streams,
    }
    return replace(QUICK if args.quick else Plan(), **{k: v for k, v in overrides.items() if v is not None})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))  # run the clean-ups
    pin = args.pin and len(os.sched_getaffinity(0)) >= 2 and {PROXY_CPU, LOAD_CPU} <= os.sched_getaffinity(0)
    if pin:
        os.sched_setaffinity(0, {LOAD_CPU})
    say = Progress()
    load = os.getloadavg()[0]
    if load > BUSY_LOAD:
        say(f"warning: load average {load:.2f} before the run; other work on this machine skews the figures")
    workdir = Path(tempfile.mkdtemp(prefix="llm-bench-"))
    loadgen = LoadGen({LOAD_CPU} if pin else None)
    fake_port = free_port()
    fake_command = [sys.executable, str(REPO / "scripts" / "fakeprovider.py"), "--port", str(fake_port)]
    fake = server("fake-provider", fake_command, fake_port, workdir, {LOAD_CPU} if pin else None)
    paths: dict[str, PathResult] = {}
    try:
        fake.start()
        missing = set() if "e" not in args.paths or capture_available(workdir) else {"e"}
        measured = measure_all(
            [k for k in args.paths if k not in missing], fake, loadgen, plan, pin, workdir, say
        )
        for key in args.paths:
            paths[key] = measured.get(key) or PathResult(
                PATHS[key].label, available=False, reason="n/a (llm_capture not available)"
            )
    finally:
        loadgen.stop()
        fake.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    say("translation CPU per event (in-process)")
    translation = translation_us_per_event(plan.stream_events, 5 if args.quick else 30)
    add_ratios(paths)
    verdicts = [judge(t, paths, translation) for t in TARGETS]
    print(table(paths))
    print(f"\ntranslation alone (Anthropic stream → OpenAI Chat chunks): {translation:.1f} µs per event\n")
    print(targets_text(verdicts))
    report = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "pinned": pin,
            "load_before": load,
        },
        "plan": asdict(plan),
        "seconds": round(time.monotonic() - say.started, 1),
        "paths": {k: asdict(r) for k, r in paths.items()},
        "translation_us_per_event": translation,
        "targets": verdicts,
    }
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    say(f"results written to {args.json}")
    failed = {k: r.details["errors"] for k, r in paths.items() if r.details.get("errors")}
    if failed:
        print(f"failed requests (or short streams) per path: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
