"""What every fake provider shares: the keys, the behaviour chosen from the request (``Answer``),
the failure models by model name, the aiohttp server on a thread of its own (``FakeProvider``), the
request-checking helpers (``Invalid``, ``require``) and the wire helpers (``sse``, ``awkward_pieces``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeGuard, cast

from aiohttp import web

Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY = web.RequestKey("body", dict)  # the parsed JSON body, set by the gate middleware

OPENAI_KEY = "sk-fake-openai-0001"
ANTHROPIC_KEY = "sk-ant-fake-0001"
GEMINI_KEY = "AIza-fake-gemini-0001"

TOOL_NAME = "get_weather"
TOOL_ARGS = '{"city":"Paris"}'
DEGREES_MODEL = "degrees"
DEGREES_TEXT = "It is 18 °C in Paris."
SLOW_PREFIX = "slow-first-byte-"
LINGER_PREFIX = "linger-"  # linger-<s>: the stream ends s seconds after its last event
AGENT_MODEL = "agent-shell"
AGENT_COMMAND = "echo proxied-ok > marker.txt && cat marker.txt"
AGENT_OUTPUT = "proxied-ok"
# Codex's code mode (its default model): the model writes JavaScript for the freeform tool `exec`
# (namespace `functions`), which calls the agent's nested tools; `text` hands the output back.
AGENT_CODE_MODE = (
    f"const r = await tools.exec_command({{cmd: {json.dumps(AGENT_COMMAND)}}});\ntext(r.output);"
)
# The tool recognition of model agent-shell: each coding agent's own shell tool, as the fake sees it
# declared -> its arguments for AGENT_COMMAND (a JSON object; the raw input for a freeform tool).
# The Responses fake names a namespaced tool `namespace.name`; the other fakes see the flat function
# the proxy makes of it (`namespace__name`, one string parameter `input` for a freeform tool).
AGENT_SHELL_TOOLS: dict[str, dict[str, str] | str] = {
    "Bash": {"command": AGENT_COMMAND, "description": "Write and read the marker file"},  # Claude Code
    "exec_command": {"cmd": AGENT_COMMAND},  # Codex CLI, with a selector
    "shell_command": {"command": AGENT_COMMAND},  # Codex CLI, older releases
    "functions.exec": AGENT_CODE_MODE,  # Codex CLI, its default model, on the Responses API
    "functions__exec": {"input": AGENT_CODE_MODE},  # the same, translated for another provider
    "run_shell_command": {"command": AGENT_COMMAND, "description": "Write and read the marker file"},
    "bash": {"command": AGENT_COMMAND},  # opencode
}
# Model agent-danger: each coding agent's shell tool -> its arguments for a destructive command.
AGENT_DANGER_MODEL = "agent-danger"
AGENT_DANGER_COMMAND = "git reset --hard"
AGENT_DANGER_TOOLS: dict[str, dict[str, str] | str] = {
    "Bash": {"command": AGENT_DANGER_COMMAND, "description": "Discard the uncommitted changes"},
    "exec_command": {"cmd": AGENT_DANGER_COMMAND},
    "shell_command": {"command": AGENT_DANGER_COMMAND},
    "run_shell_command": {"command": AGENT_DANGER_COMMAND, "description": "Discard the uncommitted changes"},
}
# Model agent-write: Claude Code's Write tool -> AGENT_WRITE.path with AGENT_WRITE_CONTENT.
AGENT_WRITE_MODEL = "agent-write"
AGENT_WRITE_CONTENT = "written-by-the-agent\n"


@dataclass
class AgentWrite:
    """Where model agent-write makes the agent write. The test that runs the agent sets ``path`` before
    it starts the agent (the fakes read it on their threads: one string, replaced whole; tests run one
    at a time in a process), and puts it back afterwards."""

    path: str = ""

    def tools(self) -> dict[str, dict[str, str] | str]:
        return {"Write": {"file_path": self.path, "content": AGENT_WRITE_CONTENT}}


AGENT_WRITE = AgentWrite()
CREATED = 1767225600

# status -> what the fake says for model "fail-<status>" (message: "fake <provider>: <text>")
FAILURE_TEXT = {
    401: "authentication failed",
    404: "model not found",
    429: "rate limited",
    500: "internal error",
    503: "service unavailable",
    529: "overloaded",
}
STREAM_FAILED = "stream failed"
MIDSTREAM_MODELS = ("fail-midstream", "drop-midstream", "fail-first-event")
SCRIPT_PREFIX = "scripted-"  # model scripted-<base64url JSON>: answer what the test dictates (Script)
SCRIPT_PIECE = 4  # characters per streamed delta of a scripted answer's text and arguments
LOOP_BATCH = 40  # frames per write of a looping model's stream
STEERING_MARK = "[llm-proxy]"  # how the proxy's own notes to the model begin


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def words(text: str) -> frozenset[str]:
    """The names in a space-separated string: long lists of field names read as prose."""
    return frozenset(text.split())


def text_pieces(text: str) -> list[str]:
    """Several deltas, exact text kept: "Hello from openai!" -> "Hel", "lo from ", "openai!"."""
    return [piece for piece in (text[:3], text[3:11], text[11:]) if piece]


def awkward_pieces(data: bytes, size: int = 7) -> list[bytes]:
    """Cut every `size` bytes and inside every multi-byte UTF-8 character, as a hostile network would."""
    cuts = set(range(size, len(data), size))
    cuts.update(i + 1 for i, byte in enumerate(data) if byte >= 0xC0)
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


class Invalid(ValueError):
    """A request the real provider rejects with 400; the message names the rule."""


def require(condition: object, message: str) -> None:
    if not condition:
        raise Invalid(message)


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def expect_dict(value: Any, message: str) -> Json:
    require(isinstance(value, dict), message)
    return cast(Json, value)


def expect_list(value: Any, message: str) -> list[Any]:
    """A non-empty array, or Invalid."""
    require(isinstance(value, list) and value, message)
    return cast(list[Any], value)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lowercased names
    body: Any  # parsed JSON, None when empty or not JSON
    raw: bytes


@dataclass(frozen=True)
class Script:
    """An answer a test dictates through the model name (``scripted_model``), whatever the request
    offers or carries: ``text``, then ``calls`` (tool name, JSON arguments), in that order.

    Streams cut the text and each call's arguments into deltas of ``SCRIPT_PIECE`` characters (and
    the bytes into awkward pieces, as always) and wait ``pause`` seconds between the text and the
    calls. ``steered``: the text answered instead (no calls) when the request carries one of the
    proxy's notes (``STEERING_MARK``), as a model that takes the hint would.
    """

    text: str = ""
    calls: tuple[tuple[str, str], ...] = ()
    pause: float = 0.0
    steered: str | None = None
    repeat: int = 1  # a looping model: the text is said this many times over, sent in batches

    @property
    def model(self) -> str:
        payload = {"text": self.text, "calls": [list(c) for c in self.calls], "pause": self.pause}
        if self.steered is not None:
            payload["steered"] = self.steered
        if self.repeat != 1:
            payload["repeat"] = self.repeat
        encoded = base64.urlsafe_b64encode(compact(payload).encode()).decode().rstrip("=")
        return SCRIPT_PREFIX + encoded

    @classmethod
    def of(cls, model: str) -> Script | None:
        """The script a model name carries, or None (not scripted, or not decodable)."""
        if not model.startswith(SCRIPT_PREFIX):
            return None
        encoded = model.removeprefix(SCRIPT_PREFIX)
        try:
            payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        except (ValueError, binascii.Error):
            return None
        calls = tuple((str(name), str(arguments)) for name, arguments in payload.get("calls", []))
        repeat = int(payload.get("repeat", 1))
        text = payload.get("text", "") * repeat
        return cls(text, calls, float(payload.get("pause", 0)), payload.get("steered"), repeat)


def scripted_model(
    text: str = "",
    calls: Sequence[tuple[str, Any]] = (),
    pause: float = 0.0,
    steered: str | None = None,
    repeat: int = 1,
) -> str:
    """The model name that makes every fake answer ``text`` (``repeat`` times over: a model stuck
    in a loop) and then ``calls`` (name, arguments as a dict or as JSON text); see ``Script``."""
    encoded = tuple((name, args if isinstance(args, str) else compact(args)) for name, args in calls)
    return Script(text, encoded, pause, steered, repeat).model


def script_pieces(text: str) -> list[str]:
    """A scripted text or argument string in deltas of SCRIPT_PIECE characters (none when empty)."""
    return [text[i : i + SCRIPT_PIECE] for i in range(0, len(text), SCRIPT_PIECE)]


@dataclass(frozen=True)
class Answer:
    """What the fake model says: a text, or one tool call (get_weather unless an agent's shell;
    ``custom``: a freeform tool's call, ``arguments`` its raw input); or, for a scripted model,
    whatever its ``script`` says."""

    text: str = ""
    tool_call: bool = False
    name: str = TOOL_NAME
    arguments: str = TOOL_ARGS
    script: Script | None = None
    custom: bool = False


@dataclass
class Stream:
    """A stream as whole protocol frames, plus what the mid-stream failure scenarios need."""

    frames: list[bytes]
    error: bytes  # the protocol's in-band error frame
    head: int  # frames up to and including the first text delta
    content_type: str = "text/event-stream"
    first_error: bytes | None = None  # the error as the very first frame, where frames are numbered
    pause_at: int = 0  # with a pause: the frames before this index are sent, then the pause
    pause: float = 0.0  # seconds


class FakeProvider:
    """One protocol's fake: an aiohttp app on its own thread and event loop."""

    name: ClassVar[str]
    failure_statuses: ClassVar[frozenset[int]] = frozenset({401, 404, 429, 500, 503})

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.extra_keys: set[str] = set()  # more keys this fake accepts (rotation tests)
        self.hung_up = 0  # looping streams whose client closed the connection before their end
        # key -> status (or (status, headers)) the fake answers every request made with that key
        self.key_failures: dict[str, int | tuple[int, dict[str, str]]] = {}
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), name=f"fake-{self.name}")
        self._thread.daemon = True
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError(f"fake {self.name} did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(15)
            self._loop = None

    def reset(self) -> None:
        self.requests.clear()
        self.extra_keys.clear()
        self.key_failures.clear()
        self.hung_up = 0

    def accepts(self, key: str | None) -> bool:
        return key is not None and (key == self.api_key or key in self.extra_keys)

    def _serve(self, started: threading.Event) -> None:
        asyncio.run(self._main(started))  # at exit, cancels what still hangs ("hang", slow answers)

    async def _main(self, started: threading.Event) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.port = runner.addresses[0][1]
        started.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate], client_max_size=64 * 1024 * 1024)
        app.add_routes(self.routes())
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record every request; reject bad auth, bad JSON and unknown routes in the protocol envelope."""
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.query), headers, body, raw)
        )
        if (failure := self.key_failures.get(self.key_of(request) or "")) is not None:
            if isinstance(failure, tuple):
                return self.error(failure[0], f"fake {self.name}: {FAILURE_TEXT[failure[0]]}", failure[1])
            return self.failure(failure)
        if (denied := self.check_auth(request)) is not None:
            return denied
        if request.method == "POST" and not isinstance(body, dict):
            return self.error(400, f"fake {self.name}: the request body is not a JSON object")
        request[BODY] = body if isinstance(body, dict) else {}
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self.error(404, f"fake {self.name}: no route {request.method} {request.path}")
        except web.HTTPMethodNotAllowed:
            return self.error(405, f"fake {self.name}: method {request.method} not allowed on {request.path}")
        except Invalid as exc:
            return self.error(400, f"fake {self.name}: {exc}")

    # --- behaviour -------------------------------------------------------------------------------
    def reply(
        self,
        model: str,
        results: list[str],
        tools_on: bool,
        tools: Sequence[str] = (),
        schema: Json | None = None,
    ) -> Answer:
        """The deterministic answer; mid-stream scenarios always answer the greeting text.

        `tools` are the declared tool names: model agent-shell calls the agent's shell tool among them
        (agent-danger and agent-write: the tool and arguments of ``AGENT_SCRIPTS``). `schema`: the
        JSON schema the request wants the answer in, which an agent's model answers an instance of
        (an agent's side requests, such as Gemini CLI's model router, parse what they asked for).
        """
        if (script := Script.of(model)) is not None:
            return Answer(script.text, tool_call=bool(script.calls), script=script)
        if model in MIDSTREAM_MODELS:
            return Answer(self.greeting(model))
        if results:
            return Answer("Tool said: " + " | ".join(results))
        if schema is not None and is_agent_model(model):
            return Answer(compact(schema_instance(schema)))
        if model == AGENT_MODEL:
            return agent_answer(tools if tools_on else (), self.greeting(model))
        if model in AGENT_SCRIPTS:
            return agent_answer(tools if tools_on else (), self.greeting(model), AGENT_SCRIPTS[model]())
        if tools_on:
            return Answer(tool_call=True)
        return Answer(self.greeting(model))

    def greeting(self, model: str) -> str:
        return DEGREES_TEXT if model == DEGREES_MODEL else f"Hello from {self.name}!"

    async def respond(
        self, request: web.Request, model: str, answer: Answer, streaming: bool
    ) -> web.StreamResponse:
        """Failure scenarios by model name, else the answer as JSON or as a stream.

        fail-<status> -> that status in the provider's envelope (429 with retry-after: 1);
        hang -> never answers; slow-first-byte-<s> -> waits s seconds first;
        fail-midstream -> first text event, then the in-band error (non-streaming: a 500);
        drop-midstream -> first text event, then the connection is cut (non-streaming: half a body);
        linger-<s> -> the stream's body ends s seconds after its last event.
        scripted-… -> the script (``Script``), never a failure.
        """
        if answer.script is not None:
            return await self._respond_script(request, model, answer.script, streaming)
        if model.startswith("fail-") and model[5:].isdigit() and int(model[5:]) in self.failure_statuses:
            return self.failure(int(model[5:]))
        if model == "hang":
            await asyncio.Event().wait()
        if model.startswith(SLOW_PREFIX):
            await asyncio.sleep(float(model.removeprefix(SLOW_PREFIX)))
        if not streaming:
            return await self._respond_json(request, model, answer)
        stream = self.stream(model, answer, request)
        frames = {
            "fail-first-event": [stream.first_error or stream.error],
            "fail-midstream": [*stream.frames[: stream.head], stream.error],
            "drop-midstream": stream.frames[: stream.head],
        }.get(model, stream.frames)
        linger = float(model.removeprefix(LINGER_PREFIX)) if model.startswith(LINGER_PREFIX) else 0.0
        return await self._send(
            request, frames, stream.content_type, cut=model == "drop-midstream", linger=linger
        )

    async def _respond_json(self, request: web.Request, model: str, answer: Answer) -> web.StreamResponse:
        if model == "fail-midstream":
            return self.failure(500)
        data = compact(self.message(model, answer, request)).encode()
        if model != "drop-midstream":
            return web.Response(body=data, content_type="application/json", headers=self.response_headers())
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        return self._cut(request, response)

    async def _respond_script(
        self, request: web.Request, model: str, script: Script, streaming: bool
    ) -> web.StreamResponse:
        if script.steered is not None and STEERING_MARK.encode() in await request.read():
            script = Script(script.steered)
        if not streaming:
            return json_response(self.script_message(model, script, request), self.response_headers())
        stream = self.script_stream(model, script, request)
        frames, kind, at = stream.frames, stream.content_type, stream.pause_at
        if script.repeat > 1:
            return await self._send_loop(request, frames, kind)
        return await self._send(request, frames, kind, cut=False, pause_at=at, pause=stream.pause)

    async def _send_loop(
        self, request: web.Request, frames: list[bytes], content_type: str
    ) -> web.StreamResponse:
        """A looping model's long stream, LOOP_BATCH frames at a time with a short pause between,
        as a model generates; a client that hangs up before the end is counted in ``hung_up``."""
        headers = {"Content-Type": content_type, "Cache-Control": "no-cache", **self.response_headers()}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        try:
            for start in range(0, len(frames), LOOP_BATCH):
                await response.write(b"".join(frames[start : start + LOOP_BATCH]))
                await asyncio.sleep(0.002)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            self.hung_up += 1
        return response

    async def _send(
        self,
        request: web.Request,
        frames: list[bytes],
        content_type: str,
        cut: bool,
        pause_at: int = 0,
        pause: float = 0.0,
        linger: float = 0.0,
    ) -> web.StreamResponse:
        """Write the stream in awkward pieces, yielding after each so they leave as separate segments
        (and, given a pause, waiting that long once the frames before ``pause_at`` are out; given a
        linger, ending the body that long after the last frame)."""
        headers = {"Content-Type": content_type, "Cache-Control": "no-cache", **self.response_headers()}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        groups = [frames[:pause_at], frames[pause_at:]] if pause else [frames]
        for n, group in enumerate(groups):
            if n:
                await asyncio.sleep(pause)
            for piece in awkward_pieces(b"".join(group)):
                await response.write(piece)
                await asyncio.sleep(0)
        if cut:
            return self._cut(request, response)
        await asyncio.sleep(linger)
        await response.write_eof()
        return response

    @staticmethod
    def _cut(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        """Close the socket without the terminating chunk: the client sees the body break off."""
        assert request.transport is not None
        request.transport.close()
        response.force_close()
        return response

    def failure(self, status: int) -> web.Response:
        headers = {"retry-after": "1"} if status == 429 else {}
        return self.error(status, f"fake {self.name}: {FAILURE_TEXT[status]}", headers)

    # --- per protocol ----------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def check_auth(self, request: web.Request) -> web.Response | None:
        raise NotImplementedError

    def key_of(self, request: web.Request) -> str | None:
        raise NotImplementedError

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        raise NotImplementedError

    def message(self, model: str, answer: Answer, request: web.Request) -> Json:
        raise NotImplementedError

    def stream(self, model: str, answer: Answer, request: web.Request) -> Stream:
        raise NotImplementedError

    def script_message(self, model: str, script: Script, request: web.Request) -> Json:
        """A scripted answer as one JSON body."""
        raise NotImplementedError

    def script_stream(self, model: str, script: Script, request: web.Request) -> Stream:
        """A scripted answer as a stream, ``pause_at`` after its text."""
        raise NotImplementedError

    def response_headers(self) -> dict[str, str]:
        return {}


def agent_answer(
    tools: Sequence[str], greeting: str, calls: dict[str, dict[str, str] | str] = AGENT_SHELL_TOOLS
) -> Answer:
    """The call of the agent's tool in `calls` when declared (a side request without it gets the greeting)."""
    shell = next((name for name in tools if name in calls), None)
    if shell is None:
        return Answer(greeting)
    arguments = calls[shell]
    if isinstance(arguments, str):
        return Answer(tool_call=True, name=shell, arguments=arguments, custom=True)
    return Answer(tool_call=True, name=shell, arguments=compact(arguments))


# A JSON schema's type (JSON Schema's lowercase or OpenAPI's uppercase) -> the value the fakes fill
# it with; an object gets every property, an enum its first value.
SCHEMA_VALUES: dict[str, Any] = {
    "string": "",
    "integer": 1,
    "number": 1,
    "boolean": False,
    "array": [],
    "null": None,
}


def schema_instance(schema: Json) -> Any:
    """The simplest value that fits `schema` (its enum's first value, every property of an object)."""
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object")
    kind = str(kind[0] if isinstance(kind, list) else kind).lower()
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: schema_instance(value) for name, value in properties.items() if isinstance(value, dict)}
    return SCHEMA_VALUES.get(kind, "")


def is_agent_model(model: str) -> bool:
    """A model that drives a coding agent (agent-shell, agent-danger, agent-write)."""
    return model == AGENT_MODEL or model in AGENT_SCRIPTS


# The other models that drive a coding agent: model -> (the agent's tool -> its arguments), read per
# request (agent-write's path is the test's).
AGENT_SCRIPTS: dict[str, Callable[[], dict[str, dict[str, str]]]] = {
    AGENT_DANGER_MODEL: lambda: AGENT_DANGER_TOOLS,
    AGENT_WRITE_MODEL: AGENT_WRITE.tools,
}


def arg_fragments(answer: Answer, fixed: list[str]) -> list[str]:
    """get_weather's arguments in the protocol's fixed fragments; other arguments in three pieces."""
    return fixed if answer.arguments == TOOL_ARGS else text_pieces(answer.arguments)


def sse(payload: Json | str, event: str | None = None, end: str = "\n") -> bytes:
    data = payload if isinstance(payload, str) else compact(payload)
    head = f"event: {event}{end}" if event else ""
    return f"{head}data: {data}{end}{end}".encode()


def json_response(payload: Json, headers: dict[str, str] | None = None, status: int = 200) -> web.Response:
    return web.Response(
        body=compact(payload).encode(), status=status, content_type="application/json", headers=headers
    )
