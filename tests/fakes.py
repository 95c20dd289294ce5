"""Fake upstream LLM providers: real HTTP servers on 127.0.0.1, each speaking its protocols strictly.

Why strict: a fake that accepts anything hides translation bugs. Each fake rejects, in its own error
envelope and status, the request shapes the real provider rejects (protocols.md §1, §3, §4), and cuts
its streams into awkward pieces (7-byte writes, UTF-8 characters split) so that decoders meet every
boundary. Behaviour is chosen from the request alone, so tests can drive it through the proxy:

- tools defined (and not switched off) and no tool result in the last user turn
  -> one tool call ``get_weather`` with ``{"city": "Paris"}``;
- a tool result in the last user turn -> text ``"Tool said: <result text>"``;
- otherwise -> ``"Hello from <openai|anthropic|gemini>!"`` (model ``degrees``: ``DEGREES_TEXT``).

Model ``agent-shell`` drives a real coding agent instead: when the request declares the agent's
shell tool (``AGENT_SHELL_TOOLS``), it calls that tool with ``AGENT_COMMAND``, never get_weather.

FakeOpenAI serves Chat Completions and the Responses API (stateless: no ``previous_response_id``,
no ``store: true``), with the same behaviour, usage and failure models on both.

The requested model name selects failures: see ``FakeProvider.respond``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
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
AGENT_MODEL = "agent-shell"
AGENT_COMMAND = "echo proxied-ok > marker.txt && cat marker.txt"
AGENT_OUTPUT = "proxied-ok"
# Each coding agent's own shell tool (as it declares it) -> its arguments for AGENT_COMMAND.
AGENT_SHELL_TOOLS: dict[str, dict[str, str]] = {
    "Bash": {"command": AGENT_COMMAND, "description": "Write and read the marker file"},  # Claude Code
    "exec_command": {"cmd": AGENT_COMMAND},  # Codex CLI
    "shell_command": {"command": AGENT_COMMAND},  # Codex CLI, older releases
    "run_shell_command": {"command": AGENT_COMMAND, "description": "Write and read the marker file"},
}
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


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


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
class Answer:
    """What the fake model says: a text, or one tool call (get_weather unless an agent's shell)."""

    text: str = ""
    tool_call: bool = False
    name: str = TOOL_NAME
    arguments: str = TOOL_ARGS


@dataclass
class Stream:
    """A stream as whole protocol frames, plus what the mid-stream failure scenarios need."""

    frames: list[bytes]
    error: bytes  # the protocol's in-band error frame
    head: int  # frames up to and including the first text delta
    content_type: str = "text/event-stream"
    first_error: bytes | None = None  # the error as the very first frame, where frames are numbered


class FakeProvider:
    """One protocol's fake: an aiohttp app on its own thread and event loop."""

    name: ClassVar[str]
    failure_statuses: ClassVar[frozenset[int]] = frozenset({401, 404, 429, 500, 503})

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.extra_keys: set[str] = set()  # more keys this fake accepts (rotation tests)
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
    def reply(self, model: str, results: list[str], tools_on: bool, tools: Sequence[str] = ()) -> Answer:
        """The deterministic answer; mid-stream scenarios always answer the greeting text.

        `tools` are the declared tool names: model agent-shell calls the agent's shell tool among them.
        """
        if model in MIDSTREAM_MODELS:
            return Answer(self.greeting(model))
        if results:
            return Answer("Tool said: " + " | ".join(results))
        if model == AGENT_MODEL:
            return agent_answer(tools if tools_on else (), self.greeting(model))
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
        drop-midstream -> first text event, then the connection is cut (non-streaming: half a body).
        """
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
        return await self._send(request, frames, stream.content_type, cut=model == "drop-midstream")

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

    async def _send(
        self, request: web.Request, frames: list[bytes], content_type: str, cut: bool
    ) -> web.StreamResponse:
        """Write the stream in awkward pieces, yielding after each so they leave as separate segments."""
        headers = {"Content-Type": content_type, "Cache-Control": "no-cache", **self.response_headers()}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        for piece in awkward_pieces(b"".join(frames)):
            await response.write(piece)
            await asyncio.sleep(0)
        if cut:
            return self._cut(request, response)
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

    def response_headers(self) -> dict[str, str]:
        return {}


def agent_answer(tools: Sequence[str], greeting: str) -> Answer:
    """The call of the agent's shell tool when declared (a side request without it gets the greeting)."""
    shell = next((name for name in tools if name in AGENT_SHELL_TOOLS), None)
    if shell is None:
        return Answer(greeting)
    return Answer(tool_call=True, name=shell, arguments=compact(AGENT_SHELL_TOOLS[shell]))


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


# ================================================================================================
# OpenAI Chat Completions (protocols.md §1)
# ================================================================================================
OPENAI_USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 7,
    "total_tokens": 18,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
OPENAI_TOOL_ID = "call_fake_openai_01"
OPENAI_ARG_FRAGMENTS = ['{"ci', 'ty":"Pa', 'ris"}']
OPENAI_ERRORS = {  # status -> (type, code)
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    405: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
OPENAI_FIELDS = frozenset(
    "model messages tools tool_choice parallel_tool_calls max_completion_tokens max_tokens temperature top_p"
    " frequency_penalty presence_penalty seed n logprobs top_logprobs logit_bias stop stream stream_options"
    " response_format reasoning_effort verbosity metadata user store service_tier prompt_cache_key"
    " prompt_cache_retention modalities audio prediction web_search_options safety_identifier functions"
    " function_call".split()
)
OPENAI_ROLES = frozenset({"developer", "system", "user", "assistant", "tool", "function"})
OPENAI_PARTS = {  # role -> content part types it may carry
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "tool": frozenset({"text"}),
}
OPENAI_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
OPENAI_TOOL_ID_MAX = 40


def check_openai_chat(body: Json) -> None:
    unknown = sorted(set(body) - OPENAI_FIELDS)
    require(not unknown, f"Unrecognized request argument supplied: {', '.join(unknown)}")
    require(isinstance(body.get("model"), str) and body["model"], "model: a non-empty string is required")
    require("stream" not in body or isinstance(body["stream"], bool), "stream: must be a boolean")
    require(
        "stream_options" not in body or body.get("stream") is True,
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
    )
    names = check_openai_tools(body.get("tools"))
    check_openai_tool_choice(body.get("tool_choice"), names)
    messages = expect_list(body.get("messages"), "messages: must be a non-empty array")
    pending: list[str] = []
    for i, message in enumerate(messages):
        pending = check_openai_message(i, message, pending)
    require(not pending, unanswered_calls(pending))


def unanswered_calls(ids: list[str]) -> str:
    return (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each"
        f" 'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(ids)}"
    )


def check_openai_tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    require(isinstance(tools, list) and tools, "tools: expected a non-empty array")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        require(
            isinstance(tool, dict) and tool.get("type") == "function", f"tools[{i}].type: expected 'function'"
        )
        function = tool.get("function")
        require(isinstance(function, dict), f"tools[{i}].function: required object")
        name = function.get("name")
        require(
            isinstance(name, str) and OPENAI_TOOL_NAME.match(name),
            f"tools[{i}].function.name: invalid {name!r}",
        )
        params = function.get("parameters")
        require(
            params is None or (isinstance(params, dict) and params.get("type") == "object"),
            f"Invalid schema for function '{name}': schema must be a JSON Schema of 'type: \"object\"'",
        )
        names.add(name)
    return names


def check_openai_tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None:
        return
    require(
        names, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
    )
    if isinstance(choice, str):
        require(choice in ("none", "auto", "required"), f"tool_choice: invalid value {choice!r}")
        return
    require(isinstance(choice, dict), "tool_choice: expected a string or an object")
    if choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        require(name in names, f"tool_choice: function {name!r} is not among the tools")
    else:
        require(
            choice.get("type") in ("allowed_tools", "custom"),
            f"tool_choice.type: invalid {choice.get('type')!r}",
        )


def check_openai_message(i: int, message: Any, pending: list[str]) -> list[str]:
    """Check one message; returns the tool-call ids still awaiting a tool message."""
    require(isinstance(message, dict), f"messages[{i}]: expected an object")
    role = message.get("role")
    require(role in OPENAI_ROLES, f"messages[{i}].role: invalid role {role!r}")
    if role == "tool":
        call_id = message.get("tool_call_id")
        require(
            call_id in pending,
            f"messages[{i}]: messages with role 'tool' must be a response to a preceeding message with"
            f" 'tool_calls' (tool_call_id {call_id!r} answers no pending call)",
        )
        check_openai_content(i, role, message.get("content"))
        return [p for p in pending if p != call_id]
    require(not pending, unanswered_calls(pending))
    if role == "assistant":
        return check_openai_assistant(i, message)
    if role != "function":
        check_openai_content(i, role, message.get("content"))
    return []


def check_openai_content(i: int, role: str, content: Any) -> None:
    if isinstance(content, str):
        return
    require(
        isinstance(content, list) and content,
        f"messages[{i}].content: expected a string or a non-empty array",
    )
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        require(
            kind in OPENAI_PARTS[role], f"messages[{i}].content[{j}].type: {kind!r} is not allowed for {role}"
        )
        if kind == "text":
            require(isinstance(part.get("text"), str), f"messages[{i}].content[{j}].text: required string")
        if kind == "image_url":
            url = (part.get("image_url") or {}) if isinstance(part.get("image_url"), dict) else None
            require(
                url and isinstance(url.get("url"), str),
                f"messages[{i}].content[{j}].image_url: expected {{url}}",
            )


def check_openai_assistant(i: int, message: Json) -> list[str]:
    calls = message.get("tool_calls")
    content = message.get("content")
    if content is not None:
        check_openai_content(i, "assistant", content)
    if calls is None:
        require(content is not None, f"messages[{i}].content: required unless tool_calls is specified")
        return []
    require(isinstance(calls, list) and calls, f"messages[{i}].tool_calls: expected a non-empty array")
    for j, call in enumerate(calls):
        check_openai_call(f"messages[{i}].tool_calls[{j}]", call)
    return [call["id"] for call in calls]


def check_openai_call(where: str, call: Any) -> None:
    require(isinstance(call, dict) and call.get("type") == "function", f"{where}.type: expected 'function'")
    call_id = call.get("id")
    require(isinstance(call_id, str) and call_id, f"{where}.id: required string")
    require(
        len(call_id) <= OPENAI_TOOL_ID_MAX,
        f"{where}.id: string too long. Expected a string with maximum length {OPENAI_TOOL_ID_MAX},"
        f" but got a string with length {len(call_id)} instead.",
    )
    function = call.get("function")
    require(
        isinstance(function, dict) and isinstance(function.get("name"), str),
        f"{where}.function.name: required",
    )
    require(isinstance(function.get("arguments"), str), f"{where}.function.arguments: expected a string")


def openai_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [])


class FakeOpenAI(FakeProvider):
    """POST /v1/chat/completions, POST /v1/responses, GET /v1/models (the SDK's base_url is
    ``base_url + "/v1"``). Both generation endpoints share the behaviour and failure models; the
    request's path picks the wire format of the answer."""

    name = "openai"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(CHAT_PATH, self.chat),
            web.post(RESPONSES_PATH, self.responses),
            web.get("/v1/models", self.models),
        ]

    def key_of(self, request: web.Request) -> str | None:
        given = request.headers.get("Authorization", "")
        return given.removeprefix("Bearer ") if given.startswith("Bearer ") else None

    def check_auth(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization")
        if self.accepts(self.key_of(request)):
            return None
        message = "incorrect API key provided" if given else "no API key provided (Authorization: Bearer)"
        return self.error(401, f"fake openai: {message}")

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        kind, code = OPENAI_ERRORS.get(status, ("server_error", None))
        envelope = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return json_response(envelope, headers, status)

    def response_headers(self) -> dict[str, str]:
        return {"x-request-id": "req_fake_openai"}

    async def models(self, request: web.Request) -> web.Response:
        ids = ["gpt-fake-1", "gpt-fake-1-mini"]
        data = [{"id": i, "object": "model", "created": CREATED, "owned_by": "fake"} for i in ids]
        return json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        check_openai_chat(body)
        return await self.respond(request, body["model"], self.answer(body), body.get("stream") is True)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        check_openai_responses(body)
        names = [tool.get("name", "") for tool in body.get("tools") or [] if tool.get("type") == "function"]
        answer = self.reply(body["model"], responses_results(body), responses_tools_on(body), names)
        return await self.respond(request, body["model"], answer, body.get("stream") is True)

    def answer(self, body: Json) -> Answer:
        messages = body["messages"]
        last_assistant = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
        results = [
            openai_text(m.get("content")) for m in messages[last_assistant + 1 :] if m["role"] == "tool"
        ]
        tools_on = bool(body.get("tools")) and body.get("tool_choice") != "none"
        names = [tool["function"]["name"] for tool in body.get("tools") or []]
        return self.reply(body["model"], results, tools_on, names)

    def message(self, model: str, answer: Answer, request: web.Request) -> Json:
        if request.path == RESPONSES_PATH:
            return response_object(model, answer, request[BODY], done=True)
        return self.completion(model, answer)

    def stream(self, model: str, answer: Answer, request: web.Request) -> Stream:
        if request.path == RESPONSES_PATH:
            return responses_stream(model, answer, request[BODY])
        return self.chunks(model, answer, request[BODY])

    def completion(self, model: str, answer: Answer) -> Json:
        message: Json = {
            "role": "assistant",
            "content": answer.text or None,
            "refusal": None,
            "annotations": [],
        }
        if answer.tool_call:
            function = {"name": answer.name, "arguments": answer.arguments}
            message["tool_calls"] = [{"id": OPENAI_TOOL_ID, "type": "function", "function": function}]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish(answer)}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [choice],
            "usage": OPENAI_USAGE,
            "system_fingerprint": None,
        }

    @staticmethod
    def finish(answer: Answer) -> str:
        return "tool_calls" if answer.tool_call else "stop"

    def chunks(self, model: str, answer: Answer, body: Json) -> Stream:
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED, "model": model}
        extra = {"usage": None} if with_usage else {}

        def chunk(delta: Json, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice], **extra})

        frames = [chunk(delta) for delta in self.deltas(answer)] + [chunk({}, self.finish(answer))]
        if with_usage:
            frames.append(sse({**base, "choices": [], "usage": OPENAI_USAGE}))
        frames.append(sse("[DONE]"))
        failure = {
            "message": f"fake openai: {STREAM_FAILED}",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        return Stream(frames, sse({"error": failure}), head=2)

    @staticmethod
    def deltas(answer: Answer) -> list[Json]:
        if not answer.tool_call:
            return [{"role": "assistant", "content": ""}] + [{"content": p} for p in text_pieces(answer.text)]
        start = {
            "index": 0,
            "id": OPENAI_TOOL_ID,
            "type": "function",
            "function": {"name": answer.name, "arguments": ""},
        }
        fragments = [
            {"tool_calls": [{"index": 0, "function": {"arguments": f}}]}
            for f in arg_fragments(answer, OPENAI_ARG_FRAGMENTS)
        ]
        return [{"role": "assistant", "content": None, "tool_calls": [start]}, *fragments]


# ================================================================================================
# OpenAI Responses (protocols.md §2), served by FakeOpenAI
# ================================================================================================
RESPONSES_USAGE = {
    "input_tokens": 11,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 18,
}
RESPONSE_ID = "resp_fake_openai"
RESPONSES_ITEM_IDS = {False: "msg_fake_openai", True: "fc_fake_openai"}  # by Answer.tool_call
RESPONSES_FIELDS = frozenset(
    "model input instructions max_output_tokens max_tool_calls temperature top_p top_logprobs tools"
    " tool_choice parallel_tool_calls text reasoning include store stream stream_options metadata user"
    " safety_identifier prompt_cache_key prompt_cache_retention prompt_cache_options service_tier"
    " truncation background background_options previous_response_id conversation prompt"
    " context_management moderation image access_programs"
    " client_metadata".split()  # Codex sends client_metadata; api.openai.com takes it
)
RESPONSES_MIN_OUTPUT_TOKENS = 16
RESPONSES_INPUT_PARTS = frozenset({"input_text", "input_image", "input_file"})
RESPONSES_PARTS = {  # role -> content part types its message may carry
    "user": RESPONSES_INPUT_PARTS,
    "system": RESPONSES_INPUT_PARTS,
    "developer": RESPONSES_INPUT_PARTS,
    "assistant": frozenset({"output_text", "refusal"}),
}
RESPONSES_CHOICES = frozenset({"none", "auto", "required"})
# Hosted and custom tools, and their items, which the real API knows: the fake takes them unchecked
# and never acts on them, so that a same-protocol route can be seen carrying them (trap 22).
RESPONSES_HOSTED_TOOLS = frozenset(
    "file_search computer computer_use_preview web_search web_search_2025_08_26 web_search_preview"
    " web_search_preview_2025_03_11 mcp code_interpreter programmatic_tool_calling image_generation"
    " local_shell shell custom namespace tool_search apply_patch".split()
)
RESPONSES_HOSTED_ITEMS = frozenset(
    "file_search_call computer_call computer_call_output web_search_call tool_search_call"
    " tool_search_output additional_tools configuration_update compaction image_generation_call"
    " code_interpreter_call local_shell_call local_shell_call_output shell_call shell_call_output"
    " apply_patch_call apply_patch_call_output mcp_list_tools mcp_approval_request mcp_approval_response"
    " mcp_call custom_tool_call custom_tool_call_output compaction_trigger program program_output".split()
)
RESPONSES_FORMATS = frozenset({"text", "json_object", "json_schema"})
# Server-side state this stateless fake has not got: key -> why it refuses a non-null value.
RESPONSES_STATEFUL = {
    "previous_response_id": "Previous response with id {!r} not found: this fake is stateless",
    "conversation": "Conversation {!r} not found: this fake is stateless",
}


def check_openai_responses(body: Json) -> None:
    unknown = sorted(set(body) - RESPONSES_FIELDS)
    require(not unknown, f"Unknown parameter: {', '.join(unknown)}")
    require(isinstance(body.get("model"), str) and body["model"], "model: a non-empty string is required")
    require("stream" not in body or isinstance(body["stream"], bool), "stream: must be a boolean")
    for key, refusal in RESPONSES_STATEFUL.items():
        require(body.get(key) is None, f"{key}: {refusal.format(body.get(key))}")
    require(body.get("store") is not True, "store: true is not supported: this fake is stateless")
    limit = body.get("max_output_tokens")
    require(
        limit is None or (is_int(limit) and limit >= RESPONSES_MIN_OUTPUT_TOKENS),
        f"Invalid 'max_output_tokens': expected an integer >= {RESPONSES_MIN_OUTPUT_TOKENS}, got {limit!r}",
    )
    names = check_responses_tools(body.get("tools"))
    check_responses_tool_choice(body.get("tool_choice"), names)
    check_responses_text(body.get("text"))
    given = body.get("input")
    if not isinstance(given, str):
        check_responses_input(expect_list(given, "input: expected a string or a non-empty array of items"))


def check_responses_tools(tools: Any) -> set[str]:
    """Function tools are flat: name and parameters beside ``type``, no ``function`` wrapper."""
    if tools is None:
        return set()
    require(isinstance(tools, list), "tools: expected an array")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        known = kind == "function" or kind in RESPONSES_HOSTED_TOOLS
        require(known, f"tools[{i}].type: invalid value {kind!r}")
        if kind != "function":
            continue
        require("function" not in tool, f"Unknown parameter: 'tools[{i}].function' (function tools are flat)")
        name = tool.get("name")
        require(
            isinstance(name, str) and OPENAI_TOOL_NAME.match(name), f"tools[{i}].name: invalid {name!r}"
        )
        params = tool.get("parameters")
        require(
            params is None or (isinstance(params, dict) and params.get("type") == "object"),
            f"Invalid schema for function '{name}': schema must be a JSON Schema of 'type: \"object\"'",
        )
        names.add(name)
    return names


def check_responses_tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None or isinstance(choice, str):
        require(choice is None or choice in RESPONSES_CHOICES, f"tool_choice: invalid value {choice!r}")
        return
    require(isinstance(choice, dict), "tool_choice: expected a string or an object")
    kind = choice.get("type")
    if kind == "function":
        name = choice.get("name")
        require(name in names, f"tool_choice: function {name!r} is not among the tools")
    else:
        known = kind == "allowed_tools" or kind in RESPONSES_HOSTED_TOOLS
        require(known, f"tool_choice.type: invalid {kind!r}")


def check_responses_text(text: Any) -> None:
    """``text.format`` is flat: a json_schema format has name and schema, no ``json_schema`` wrapper."""
    if text is None:
        return
    fmt = expect_dict(text, "text: expected an object").get("format")
    if fmt is None:
        return
    require(
        isinstance(fmt, dict) and fmt.get("type") in RESPONSES_FORMATS,
        f"text.format.type: expected one of {sorted(RESPONSES_FORMATS)}",
    )
    if fmt["type"] == "json_schema":
        require("json_schema" not in fmt, "Unknown parameter: 'text.format.json_schema'")
        require(isinstance(fmt.get("name"), str), "Missing required parameter: 'text.format.name'")
        require(isinstance(fmt.get("schema"), dict), "Missing required parameter: 'text.format.schema'")


def check_responses_input(items: list[Any]) -> None:
    """Each item by type; every function_call_output answers an earlier call, and every call is answered."""
    called: list[str] = []
    answered: set[str] = set()
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type", "message") if isinstance(item, dict) else None
        check = CHECK_RESPONSES_ITEM.get(str(kind))
        if check is None:
            raise Invalid(f"{where}.type: invalid value {kind!r}")
        check(where, item)
        if kind == "function_call":
            called.append(item["call_id"])
        elif kind == "function_call_output":
            require(
                item["call_id"] in called,
                f"{where}: No tool call found for function call output with call_id {item['call_id']}.",
            )
            answered.add(item["call_id"])
    missing = [call_id for call_id in called if call_id not in answered]
    require(not missing, f"No tool output found for function call {', '.join(missing)}.")


def check_responses_message(where: str, item: Json) -> None:
    role = item.get("role")
    require(role in RESPONSES_PARTS, f"{where}.role: invalid role {role!r}")
    content = item.get("content")
    if isinstance(content, str):
        return
    require(
        isinstance(content, list) and content, f"{where}.content: expected a string or a non-empty array"
    )
    for j, part in enumerate(content):
        check_responses_part(f"{where}.content[{j}]", part, RESPONSES_PARTS[role])


def check_responses_part(where: str, part: Any, allowed: frozenset[str]) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    require(kind in allowed, f"{where}.type: invalid value {kind!r}, supported: {', '.join(sorted(allowed))}")
    if kind in ("input_text", "output_text"):
        require(isinstance(part.get("text"), str), f"{where}.text: expected a string")
    if kind == "input_image":
        url = part.get("image_url")
        require(
            url is None or isinstance(url, str),
            f"Invalid type for '{where}.image_url': expected a string, but got {type(url).__name__}",
        )
        require(url is not None or part.get("file_id"), f"{where}: image_url or file_id is required")


def check_responses_call(where: str, item: Json) -> None:
    for key in ("call_id", "name"):
        require(isinstance(item.get(key), str) and item[key], f"Missing required parameter: '{where}.{key}'")
    require(isinstance(item.get("arguments"), str), f"{where}.arguments: expected a JSON string")


def check_responses_call_output(where: str, item: Json) -> None:
    require(
        isinstance(item.get("call_id"), str) and item["call_id"],
        f"Missing required parameter: '{where}.call_id'",
    )
    output = item.get("output")
    if isinstance(output, str):
        return
    require(isinstance(output, list), f"{where}.output: expected a string or an array")
    for j, part in enumerate(output):
        check_responses_part(f"{where}.output[{j}]", part, RESPONSES_INPUT_PARTS)


def check_responses_reasoning(where: str, item: Json) -> None:
    require(isinstance(item.get("summary"), list), f"Missing required parameter: '{where}.summary'")


def check_responses_reference(where: str, item: Json) -> None:
    raise Invalid(f"{where}: Item with id {item.get('id')!r} not found: this fake is stateless")


def carry_hosted_item(where: str, item: Json) -> None:
    """A hosted or custom tool's item: carried, never checked nor answered."""


CHECK_RESPONSES_ITEM: dict[str, Callable[[str, Json], None]] = {
    "message": check_responses_message,
    "function_call": check_responses_call,
    "function_call_output": check_responses_call_output,
    "reasoning": check_responses_reasoning,
    "item_reference": check_responses_reference,
    **dict.fromkeys(RESPONSES_HOSTED_ITEMS, carry_hosted_item),
}


def responses_results(body: Json) -> list[str]:
    """The outputs of function_call_output items after the model's last turn."""
    items = body["input"] if isinstance(body["input"], list) else []
    model_turn = max((i for i, item in enumerate(items) if is_model_item(item)), default=-1)
    return [
        responses_output_text(item["output"])
        for item in items[model_turn + 1 :]
        if item.get("type") == "function_call_output"
    ]


def is_model_item(item: Json) -> bool:
    """An item of the model's turn: its own calls (hosted ones too), reasoning, or text."""
    kind = item.get("type", "message")
    return kind in ("function_call", "reasoning") or kind.endswith("_call") or item.get("role") == "assistant"


def responses_output_text(output: str | list[Json]) -> str:
    return output if isinstance(output, str) else "".join(p.get("text", "") for p in output)


def responses_tools_on(body: Json) -> bool:
    """Only function tools make the fake call get_weather."""
    functions = any(tool.get("type") == "function" for tool in body.get("tools") or [])
    return functions and body.get("tool_choice") != "none"


def output_text(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response_item(answer: Answer, done: bool) -> Json:
    """The one output item; while in progress a message has no content and a call no arguments."""
    status = "completed" if done else "in_progress"
    item_id = RESPONSES_ITEM_IDS[answer.tool_call]
    if answer.tool_call:
        arguments = answer.arguments if done else ""
        fields = {"call_id": OPENAI_TOOL_ID, "name": answer.name, "arguments": arguments, "status": status}
        return {"type": "function_call", "id": item_id, **fields}
    content = [output_text(answer.text)] if done else []
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}


def response_object(model: str, answer: Answer, body: Json, done: bool) -> Json:
    """A Response, echoing the request's settings; in progress it has no output and no usage yet."""
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED,
        "status": "completed" if done else "in_progress",
        "model": model,
        "output": [response_item(answer, done)] if done else [],
        "usage": RESPONSES_USAGE if done else None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "store": False,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
    }


def response_content_events(answer: Answer) -> list[Json]:
    """Between output_item.added and .done: text parts and deltas, or argument fragments."""
    where: Json = {"item_id": RESPONSES_ITEM_IDS[answer.tool_call], "output_index": 0}
    if answer.tool_call:
        deltas = [
            {"type": "response.function_call_arguments.delta", **where, "delta": fragment}
            for fragment in arg_fragments(answer, OPENAI_ARG_FRAGMENTS)
        ]
        done = {"type": "response.function_call_arguments.done", **where, "arguments": answer.arguments}
        return [*deltas, done]
    where["content_index"] = 0
    deltas = [
        {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
        for piece in text_pieces(answer.text)
    ]
    return [
        {"type": "response.content_part.added", **where, "part": output_text("")},
        *deltas,
        {"type": "response.output_text.done", **where, "text": answer.text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": output_text(answer.text)},
    ]


def responses_stream(model: str, answer: Answer, body: Json) -> Stream:
    """The typed event sequence of §2.4; `event:` equals `type`, sequence numbers count from 0."""
    started = response_object(model, answer, body, done=False)
    events = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": response_item(answer, done=False)},
        *response_content_events(answer),
        {"type": "response.output_item.done", "output_index": 0, "item": response_item(answer, done=True)},
        {"type": "response.completed", "response": response_object(model, answer, body, done=True)},
    ]
    frames = [sse({"type": e["type"], "sequence_number": n, **e}, e["type"]) for n, e in enumerate(events)]
    head = 5  # created, in_progress, output_item.added, content_part.added, the first text delta
    return Stream(frames, responses_error(head), head, first_error=responses_error(0))


def responses_error(sequence_number: int) -> bytes:
    failure = {
        "type": "error",
        "sequence_number": sequence_number,
        "code": "server_error",
        "message": f"fake openai: {STREAM_FAILED}",
        "param": None,
    }
    return sse(failure, "error")


# ================================================================================================
# Anthropic Messages (protocols.md §3)
# ================================================================================================
ANTHROPIC_VERSIONS = frozenset({"2023-06-01", "2026-10-21"})
ANTHROPIC_USAGE_START = {
    "input_tokens": 13,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 1,
}
ANTHROPIC_USAGE = {**ANTHROPIC_USAGE_START, "output_tokens": 5}
ANTHROPIC_TOOL_ID = "toolu_fake_anthropic_01"
ANTHROPIC_ARG_FRAGMENTS = ["", '{"city":', '"Paris"}']
ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}
ANTHROPIC_FIELDS = frozenset(
    "model max_tokens messages system stop_sequences stream tools tool_choice thinking output_config metadata"
    " service_tier cache_control speed inference_geo container diagnostics temperature top_p top_k"
    " mcp_servers context_management".split()
)
ANTHROPIC_COUNT_FIELDS = ANTHROPIC_FIELDS - {
    "max_tokens",
    "stream",
    "stop_sequences",
    "metadata",
    "service_tier",
}
ANTHROPIC_SAMPLING = ("temperature", "top_p", "top_k")  # rejected under 2026-10-21
ANTHROPIC_BLOCKS = {  # role -> block types it may carry
    "user": frozenset({"text", "image", "document", "tool_result", "search_result"}),
    "assistant": frozenset({"text", "tool_use", "thinking", "redacted_thinking", "server_tool_use"}),
}
ANTHROPIC_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
ANTHROPIC_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MID_CONVERSATION_SYSTEM = "mid-conversation-system-"  # anthropic-beta prefix


def check_anthropic(body: Json, version: str, counting: bool) -> None:
    allowed = ANTHROPIC_COUNT_FIELDS if counting else ANTHROPIC_FIELDS
    extra = sorted(set(body) - allowed)
    require(not extra, f"{', '.join(extra)}: Extra inputs are not permitted")
    require(isinstance(body.get("model"), str) and body["model"], "model: Field required")
    if not counting:
        require(is_int(body.get("max_tokens")), "max_tokens: Field required (an integer)")
    require("stream" not in body or isinstance(body["stream"], bool), "stream: must be a boolean")
    if version == "2026-10-21":
        for key in ANTHROPIC_SAMPLING:
            require(key not in body, f"{key}: Extra inputs are not permitted (anthropic-version 2026-10-21)")
    check_anthropic_thinking(body.get("thinking"), body.get("max_tokens"), counting)
    check_anthropic_system(body.get("system"))
    tools = check_anthropic_tools(body.get("tools"))
    turns = anthropic_turns(body.get("messages"))
    uses_tools = any(b["type"] in ("tool_use", "tool_result") for _, blocks in turns for b in blocks)
    require(
        tools or not uses_tools,
        "Requests which include `tool_use` or `tool_result` blocks must define tools.",
    )
    check_anthropic_pairing(turns)


def check_anthropic_thinking(thinking: Any, max_tokens: Any, counting: bool) -> None:
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return
    budget = thinking.get("budget_tokens")
    if not is_int(budget) or budget < 1024:
        raise Invalid("thinking.budget_tokens: must be an integer >= 1024")
    require(
        counting or (is_int(max_tokens) and budget < max_tokens),
        "thinking.budget_tokens: must be less than max_tokens",
    )


def check_anthropic_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    require(isinstance(system, list), "system: expected a string or an array of text blocks")
    for i, block in enumerate(system):
        require(isinstance(block, dict) and block.get("type") == "text", f"system.{i}.type: expected 'text'")
        check_anthropic_text(f"system.{i}", block)


def check_anthropic_text(where: str, block: Json) -> None:
    text = block.get("text")
    require(
        isinstance(text, str) and text.strip(),
        f"{where}: text content blocks must contain non-whitespace text",
    )


def check_anthropic_tools(tools: Any) -> bool:
    """Check the tool definitions; True when there are any."""
    if tools is None:
        return False
    require(isinstance(tools, list), "tools: expected an array")
    for i, tool in enumerate(tools):
        require(isinstance(tool, dict), f"tools.{i}: expected an object")
        if tool.get("type", "custom") != "custom":
            continue  # a server tool (web_search_…): no input_schema
        name = tool.get("name")
        require(
            isinstance(name, str) and ANTHROPIC_TOOL_NAME.match(name), f"tools.{i}.name: invalid {name!r}"
        )
        schema = tool.get("input_schema")
        require(isinstance(schema, dict), f"tools.{i}.input_schema: Field required")
        require(schema.get("type") == "object", f"tools.{i}.input_schema.type: Input should be 'object'")
    return bool(tools)


def mid_conversation_system(request: web.Request) -> Json:
    """The body, with `role: "system"` messages checked and set aside when the request carries the
    beta that allows them among the turns (Claude Code sends both); without it they stay and fail."""
    body = request[BODY]
    messages = body.get("messages")
    allowed = MID_CONVERSATION_SYSTEM in request.headers.get("anthropic-beta", "")
    if not allowed or not isinstance(messages, list):
        return body
    turns = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "system":
            check_anthropic_system(message.get("content"))
        else:
            turns.append(message)
    return {**body, "messages": turns}


def anthropic_turns(messages: Any) -> list[tuple[str, list[Json]]]:
    """Check each message and merge consecutive same-role messages, as the API does."""
    messages = expect_list(messages, "messages: must be a non-empty array")
    turns: list[tuple[str, list[Json]]] = []
    for i, message in enumerate(messages):
        final_assistant = (
            i == len(messages) - 1 and isinstance(message, dict) and message.get("role") == "assistant"
        )
        role, blocks = anthropic_message(i, message, final_assistant)
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, list(blocks)))
    return turns


def anthropic_message(i: int, message: Any, final_assistant: bool) -> tuple[str, list[Json]]:
    require(isinstance(message, dict), f"messages.{i}: expected an object")
    role = message.get("role")
    require(
        role in ANTHROPIC_BLOCKS, f"messages.{i}.role: Input should be 'user' or 'assistant', got {role!r}"
    )
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}] if content or not final_assistant else []
    require(isinstance(content, list), f"messages.{i}.content: expected a string or an array")
    require(
        content or final_assistant,
        f"messages.{i}: all messages must have non-empty content"
        " except for the optional final assistant message",
    )
    for j, block in enumerate(content):
        check_anthropic_block(f"messages.{i}.content.{j}", role, block)
    return role, content


def check_anthropic_block(where: str, role: str, block: Any) -> None:
    kind = str(block.get("type")) if isinstance(block, dict) else ""
    require(kind in ANTHROPIC_BLOCKS[role], f"{where}.type: {kind!r} is not allowed in a {role} message")
    if (check := CHECK_ANTHROPIC_BLOCK.get(kind)) is not None:
        check(where, block)


def check_anthropic_tool_use(where: str, block: Json) -> None:
    require(
        isinstance(block.get("id"), str) and ANTHROPIC_ID.match(block["id"]),
        f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'",
    )
    require(isinstance(block.get("name"), str) and block["name"], f"{where}.name: Field required")
    require(isinstance(block.get("input"), dict), f"{where}.input: Input should be a valid dictionary")


def check_anthropic_tool_result(where: str, block: Json) -> None:
    tool_use_id = block.get("tool_use_id")
    require(
        isinstance(tool_use_id, str) and ANTHROPIC_ID.match(tool_use_id),
        f"{where}.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'",
    )
    content = block.get("content", "")
    if isinstance(content, list):
        for k, inner in enumerate(content):
            require(
                isinstance(inner, dict)
                and inner.get("type") in ("text", "image", "document", "search_result"),
                f"{where}.content.{k}.type: not allowed in a tool_result",
            )
            if inner["type"] == "text":
                check_anthropic_text(f"{where}.content.{k}", inner)
    else:
        require(isinstance(content, str), f"{where}.content: expected a string or an array")


def check_anthropic_image(where: str, block: Json) -> None:
    source = expect_dict(block.get("source"), f"{where}.source: Field required")
    if source.get("type") == "base64":
        require(source.get("media_type") in ANTHROPIC_IMAGE_TYPES, f"{where}.source.media_type: invalid")
        data = source.get("data")
        require(
            isinstance(data, str) and not data.startswith("data:"),
            f"{where}.source.data: invalid base64 data",
        )
    else:
        require(source.get("type") in ("url", "file"), f"{where}.source.type: invalid {source.get('type')!r}")


CHECK_ANTHROPIC_BLOCK: dict[str, Callable[[str, Json], None]] = {
    "text": check_anthropic_text,
    "tool_use": check_anthropic_tool_use,
    "tool_result": check_anthropic_tool_result,
    "image": check_anthropic_image,
}


def check_anthropic_pairing(turns: list[tuple[str, list[Json]]]) -> None:
    """Every tool_use is answered by tool_result blocks at the start of the next user turn, and only those."""
    asked: list[str] = []
    for k, (role, blocks) in enumerate(turns):
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        leading = list(itertools.takewhile(lambda b: b["type"] == "tool_result", blocks))
        require(
            len(leading) == len(results),
            f"messages.{k}: tool_result blocks must come first in the user message",
        )
        extra = sorted(set(results) - set(asked))
        require(
            not extra,
            f"messages.{k}.content: unexpected `tool_use_id` found in `tool_result` blocks:"
            f" {', '.join(extra)}."
            " Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
        )
        missing = sorted(set(asked) - set(results))
        require(
            not missing,
            f"messages.{k}: `tool_use` ids were found without `tool_result` blocks immediately after:"
            f" {', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block"
            " in the next message.",
        )
        asked = [b["id"] for b in blocks if b["type"] == "tool_use"] if role == "assistant" else []
    require(
        not asked,
        f"`tool_use` ids were found without `tool_result` blocks immediately after: {', '.join(asked)}",
    )


def anthropic_result_text(block: Json) -> str:
    content = block.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(inner.get("text", "") for inner in content if inner.get("type") == "text")


class FakeAnthropic(FakeProvider):
    """POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models."""

    name = "anthropic"
    failure_statuses = FakeProvider.failure_statuses | {529}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/messages", self.messages),
            web.post("/v1/messages/count_tokens", self.count_tokens),
            web.get("/v1/models", self.models),
        ]

    def key_of(self, request: web.Request) -> str | None:
        return request.headers.get("x-api-key") or request.headers.get("Authorization", "").removeprefix("Bearer ")

    def check_auth(self, request: web.Request) -> web.Response | None:
        if not self.accepts(self.key_of(request)):
            return self.error(401, "fake anthropic: invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            return self.error(400, "fake anthropic: anthropic-version: header is required")
        if version not in ANTHROPIC_VERSIONS:
            return self.error(400, f"fake anthropic: anthropic-version: unsupported version {version!r}")
        return None

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        kind = ANTHROPIC_ERRORS.get(status, "api_error")
        envelope = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_fake_anthropic",
        }
        return json_response(envelope, headers, status)

    def response_headers(self) -> dict[str, str]:
        return {"request-id": "req_fake_anthropic"}

    async def models(self, request: web.Request) -> web.Response:
        ids = ["claude-fake-1", "claude-fake-1-haiku"]
        data = [
            {"type": "model", "id": i, "display_name": i.title(), "created_at": "2026-01-01T00:00:00Z"}
            for i in ids
        ]
        return json_response({"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]})

    async def count_tokens(self, request: web.Request) -> web.Response:
        body = mid_conversation_system(request)
        check_anthropic(body, request.headers["anthropic-version"], counting=True)
        return json_response({"input_tokens": ANTHROPIC_USAGE["input_tokens"]})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = mid_conversation_system(request)
        check_anthropic(body, request.headers["anthropic-version"], counting=False)
        return await self.respond(request, body["model"], self.answer(body), body.get("stream") is True)

    def answer(self, body: Json) -> Answer:
        turns = anthropic_turns(body["messages"])
        last_user = next((blocks for role, blocks in reversed(turns) if role == "user"), [])
        results = [anthropic_result_text(b) for b in last_user if b["type"] == "tool_result"]
        tools_on = bool(body.get("tools")) and (body.get("tool_choice") or {}).get("type") != "none"
        names = [tool.get("name", "") for tool in body.get("tools") or []]
        return self.reply(body["model"], results, tools_on, names)

    def message(self, model: str, answer: Answer, request: web.Request) -> Json:
        if answer.tool_call:
            block = {
                "type": "tool_use",
                "id": ANTHROPIC_TOOL_ID,
                "name": answer.name,
                "input": json.loads(answer.arguments),
            }
        else:
            block = {"type": "text", "text": answer.text}
        return {
            **self.envelope(model),
            "content": [block],
            "stop_reason": self.stop_reason(answer),
            "usage": ANTHROPIC_USAGE,
        }

    @staticmethod
    def envelope(model: str) -> Json:
        return {"id": "msg_fake_anthropic", "type": "message", "role": "assistant", "model": model}

    @staticmethod
    def stop_reason(answer: Answer) -> str:
        return "tool_use" if answer.tool_call else "end_turn"

    def stream(self, model: str, answer: Answer, request: web.Request) -> Stream:
        start = {**self.envelope(model), "content": [], "stop_reason": None, "stop_sequence": None}
        events: list[Json] = [
            {"type": "message_start", "message": {**start, "usage": ANTHROPIC_USAGE_START}},
            {"type": "content_block_start", "index": 0, "content_block": self.opening_block(answer)},
            {"type": "ping"},
            *({"type": "content_block_delta", "index": 0, "delta": d} for d in self.deltas(answer)),
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason(answer), "stop_sequence": None},
                "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]},
            },
            {"type": "message_stop"},
        ]
        failure = {
            "type": "error",
            "error": {"type": "overloaded_error", "message": f"fake anthropic: {STREAM_FAILED}"},
        }
        return Stream([sse(e, e["type"]) for e in events], sse(failure, "error"), head=4)

    @staticmethod
    def opening_block(answer: Answer) -> Json:
        if answer.tool_call:
            return {"type": "tool_use", "id": ANTHROPIC_TOOL_ID, "name": answer.name, "input": {}}
        return {"type": "text", "text": ""}

    @staticmethod
    def deltas(answer: Answer) -> list[Json]:
        if answer.tool_call:
            fragments = arg_fragments(answer, ANTHROPIC_ARG_FRAGMENTS)
            return [{"type": "input_json_delta", "partial_json": f} for f in fragments]
        return [{"type": "text_delta", "text": p} for p in text_pieces(answer.text)]


# ================================================================================================
# Gemini generateContent (protocols.md §4)
# ================================================================================================
GEMINI_VERSIONS = ("v1beta", "v1")
GEMINI_USAGE_START = {"promptTokenCount": 17, "totalTokenCount": 17}
GEMINI_COUNT_TOKENS = 19
GEMINI_USAGE = {"promptTokenCount": 17, "candidatesTokenCount": 3, "totalTokenCount": 20}
GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
GEMINI_FIELDS = frozenset(
    "contents systemInstruction tools toolConfig generationConfig safetySettings cachedContent model".split()
)
GEMINI_CONFIG_FIELDS = frozenset(
    "temperature topP topK candidateCount maxOutputTokens stopSequences presencePenalty frequencyPenalty seed"
    " responseMimeType responseSchema responseJsonSchema responseModalities responseLogprobs logprobs"
    " mediaResolution speechConfig thinkingConfig imageConfig enableEnhancedCivicAnswers".split()
)
GEMINI_DATA = frozenset(
    "text inlineData fileData functionCall functionResponse executableCode codeExecutionResult".split()
)
GEMINI_PART_META = frozenset("thought thoughtSignature videoMetadata mediaResolution partMetadata".split())
GEMINI_DECLARATION_FIELDS = frozenset(
    "name description parameters parametersJsonSchema response responseJsonSchema behavior".split()
)
# Function schemas: `parameters` takes the OpenAPI subset, `parametersJsonSchema` the documented
# JSON Schema subset.
GEMINI_OPENAPI_KEYS = frozenset(
    "type format title description nullable enum maxItems minItems properties required minProperties"
    " maxProperties minLength maxLength pattern example anyOf propertyOrdering items minimum maximum".split()
)
GEMINI_JSON_SCHEMA_KEYS = frozenset(
    "$id $defs $ref $anchor type format title description enum items prefixItems minItems maxItems minimum"
    " maximum anyOf oneOf properties additionalProperties required propertyOrdering".split()
)
GEMINI_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
GEMINI_FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}$")
# Gemini 3 models attach a thought signature to their first function call and demand it back.
GEMINI_THINKING_PREFIX = "gemini-3"
GEMINI_SIGNATURE = b"fake-gemini-thought-signature"
GEMINI_SIGNATURE_B64 = base64.b64encode(GEMINI_SIGNATURE).decode()
GEMINI_SKIP_SIGNATURES = frozenset(
    {"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"}
)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def get(obj: Json, camel: str, default: Any = None) -> Any:
    """Google's parser takes camelCase and the snake_case proto name alike (the SDK sends both)."""
    return obj.get(camel, obj.get(snake(camel), default))


def camel_keys(obj: Json) -> set[str]:
    return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key) for key in obj}


def check_unknown(obj: Json, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(camel_keys(obj) - allowed)
    require(
        not unknown,
        f'Invalid JSON payload received. Unknown name "{unknown[0] if unknown else ""}" at {where!r}',
    )


def check_gemini(body: Json, model: str) -> None:
    check_unknown(body, GEMINI_FIELDS, "request")
    config = get(body, "generationConfig") or {}
    check_unknown(config, GEMINI_CONFIG_FIELDS, "generation_config")
    require(
        not (get(config, "responseSchema") and get(config, "responseJsonSchema")),
        "generation_config: response_schema and response_json_schema are mutually exclusive",
    )
    require(
        not get(config, "responseJsonSchema") or get(config, "responseMimeType"),
        "generation_config.response_json_schema requires response_mime_type",
    )
    if (system := get(body, "systemInstruction")) is not None:
        check_gemini_parts("system_instruction", system)
    for i, tool in enumerate(body.get("tools") or []):
        for j, declaration in enumerate(get(tool, "functionDeclarations") or []):
            check_gemini_declaration(f"tools[{i}].function_declarations[{j}]", declaration)
    contents = expect_list(body.get("contents"), "contents is not specified")
    check_gemini_turns(contents)
    if model.startswith(GEMINI_THINKING_PREFIX):
        check_gemini_signatures(contents)


def check_gemini_parts(where: str, content: Any) -> list[Json]:
    parts = expect_list(
        expect_dict(content, f"{where}: expected an object").get("parts"),
        f"{where}.parts: must contain at least one part",
    )
    for k, part in enumerate(parts):
        check_gemini_part(f"{where}.parts[{k}]", part)
    return parts


def check_gemini_part(where: str, part: Any) -> None:
    require(isinstance(part, dict), f"{where}: expected an object")
    check_unknown(part, GEMINI_DATA | GEMINI_PART_META, where)
    data = camel_keys(part) & GEMINI_DATA
    require(len(data) == 1, f"{where}: a part must hold exactly one data field, got {sorted(data)}")
    if "text" in part:
        require(isinstance(part["text"], str), f"{where}.text: expected a string")
        require(
            part["text"] or get(part, "thoughtSignature"),
            f"{where}: Unable to submit request because it has an empty text parameter.",
        )
    if (call := get(part, "functionCall")) is not None:
        require(
            isinstance(call, dict) and isinstance(call.get("name"), str),
            f"{where}.function_call.name: required",
        )
        require(isinstance(call.get("args", {}), dict), f"{where}.function_call.args: expected an object")
    if (result := get(part, "functionResponse")) is not None:
        require(
            isinstance(result, dict) and result.get("name"),
            f"{where}.function_response.name: Name cannot be empty.",
        )
        require(
            isinstance(result.get("response"), dict),
            f"{where}.function_response.response: expected an object",
        )
    if (inline := get(part, "inlineData")) is not None:
        require(
            get(inline, "mimeType") and isinstance(inline.get("data"), str),
            f"{where}.inline_data: mime_type and data required",
        )


def check_gemini_turns(contents: list[Any]) -> None:
    """Roles user/model; a user turn after a call turn answers every call, one functionResponse part each."""
    called: list[str] = []
    for i, content in enumerate(contents):
        role = content.get("role", "user") if isinstance(content, dict) else None
        require(role in ("user", "model"), f"contents[{i}].role: Please use a valid role: user, model.")
        parts = check_gemini_parts(f"contents[{i}]", content)
        calls = [get(p, "functionCall")["name"] for p in parts if get(p, "functionCall") is not None]
        answers = [
            get(p, "functionResponse")["name"] for p in parts if get(p, "functionResponse") is not None
        ]
        require(role == "model" or not calls, f"contents[{i}]: function calls belong in a model turn")
        require(role == "user" or not answers, f"contents[{i}]: function responses belong in a user turn")
        if role == "user" and (called or answers):
            require(
                len(answers) == len(called),
                "Please ensure that the number of function response parts is equal to the number of function"
                " call parts of the function call turn.",
            )
            require(
                Counter(answers) == Counter(called),
                f"contents[{i}]: function response names {answers} do not match the calls {called}",
            )
        called = calls if role == "model" else []


def check_gemini_signatures(contents: list[Json]) -> None:
    """Gemini 3: the first function call of each model turn in the current turn carries our signature back."""
    starts = [i for i, c in enumerate(contents) if c.get("role", "user") == "user" and not gemini_answers(c)]
    for i, content in enumerate(contents[max(starts, default=0) :], max(starts, default=0)):
        calls = [p for p in content["parts"] if get(p, "functionCall") is not None]
        if content.get("role") == "model" and calls:
            require(
                valid_signature(get(calls[0], "thoughtSignature")),
                f"contents[{i}].parts: Function call is missing a thought_signature in functionCall parts.",
            )


def gemini_answers(content: Json) -> list[Json]:
    return [r for p in content["parts"] if (r := get(p, "functionResponse")) is not None]


def valid_signature(signature: Any) -> bool:
    """Ours (either base64 alphabet, padding optional) or a documented placeholder, raw or base64-encoded."""
    if not isinstance(signature, str):
        return False
    if signature in GEMINI_SKIP_SIGNATURES:
        return True
    try:
        decoded = base64.urlsafe_b64decode(
            signature.replace("+", "-").replace("/", "_") + "=" * (-len(signature) % 4)
        )
    except ValueError:
        return False
    return decoded == GEMINI_SIGNATURE or decoded.decode("latin-1") in GEMINI_SKIP_SIGNATURES


def check_gemini_declaration(where: str, declaration: Any) -> None:
    require(isinstance(declaration, dict), f"{where}: expected an object")
    check_unknown(declaration, GEMINI_DECLARATION_FIELDS, where)
    name = declaration.get("name")
    require(
        isinstance(name, str) and GEMINI_FUNCTION_NAME.match(name),
        f"{where}.name: Invalid function name {name!r}",
    )
    openapi, json_schema = get(declaration, "parameters"), get(declaration, "parametersJsonSchema")
    require(
        openapi is None or json_schema is None,
        f"{where}: parameters and parameters_json_schema are mutually exclusive",
    )
    if openapi is not None:
        check_schema(f"{where}.parameters", openapi, GEMINI_OPENAPI_KEYS, openapi=True)
    if json_schema is not None:
        check_schema(f"{where}.parameters_json_schema", json_schema, GEMINI_JSON_SCHEMA_KEYS, openapi=False)


def check_schema(where: str, schema: Any, allowed: frozenset[str], openapi: bool) -> None:
    require(isinstance(schema, dict), f"{where}: expected an object")
    check_unknown(schema, allowed, where)
    if openapi and "type" in schema:
        require(str(schema["type"]).upper() in GEMINI_TYPES, f"{where}.type: invalid type {schema['type']!r}")
    if openapi and "enum" in schema:
        require(
            all(isinstance(v, str) for v in schema["enum"]), f"{where}.enum: only string values are allowed"
        )
    for name, sub in {**schema.get("properties", {}), **schema.get("$defs", {})}.items():
        check_schema(f"{where}.properties[{name}]", sub, allowed, openapi)
    for key in ("items", "additionalProperties"):
        if isinstance(sub := get(schema, key), dict):
            check_schema(f"{where}.{key}", sub, allowed, openapi)
    for key in ("anyOf", "oneOf", "prefixItems"):
        for k, sub in enumerate(get(schema, key) or []):
            check_schema(f"{where}.{key}[{k}]", sub, allowed, openapi)


def gemini_result_text(response: Json) -> str:
    output = response.get("output")
    return output if isinstance(output, str) else compact(response)


class FakeGemini(FakeProvider):
    """POST /v1beta/models/{model}:generateContent | :streamGenerateContent, GET /v1beta/models (+ /v1)."""

    name = "gemini"

    def routes(self) -> list[web.RouteDef]:
        """Both API versions, like Google: google-genai 3.6.1 calls /v1 by default, other clients /v1beta."""
        return [
            route
            for version in GEMINI_VERSIONS
            for route in (
                web.post(f"/{version}/models/{{target}}", self.generate),
                web.get(f"/{version}/models", self.models),
            )
        ]

    def key_of(self, request: web.Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key")

    def check_auth(self, request: web.Request) -> web.Response | None:
        given = self.key_of(request)
        if self.accepts(given):
            return None
        if not given:
            return self.error(
                403, "fake gemini: Method doesn't allow unregistered callers. Please use an API key."
            )
        return self.error(
            400, "fake gemini: API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID"
        )

    def error(
        self, status: int, message: str, headers: dict[str, str] | None = None, reason: str | None = None
    ) -> web.Response:
        error: Json = {"code": status, "message": message, "status": GEMINI_STATUS.get(status, "UNKNOWN")}
        if reason:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": reason,
                    "domain": "googleapis.com",
                }
            ]
        if status == 429:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
        return json_response({"error": error}, headers, status)

    async def models(self, request: web.Request) -> web.Response:
        ids = ["gemini-fake-1", "gemini-3-fake"]
        data = [
            {
                "name": f"models/{i}",
                "baseModelId": i,
                "version": "001",
                "displayName": i.title(),
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 65536,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for i in ids
        ]
        return json_response({"models": data})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["target"].rpartition(":")
        if action == "countTokens" and model:
            return self.count_tokens(request[BODY])
        if action not in ("generateContent", "streamGenerateContent") or not model:
            raise web.HTTPNotFound()
        body = request[BODY]
        check_gemini(body, model)
        return await self.respond(request, model, self.answer(model, body), action == "streamGenerateContent")

    @staticmethod
    def count_tokens(body: Json) -> web.Response:
        """countTokens takes `contents` or a whole `generateContentRequest`, never both."""
        inner = get(body, "generateContentRequest")
        if (inner is None) == (get(body, "contents") is None):
            raise Invalid("countTokens takes exactly one of contents and generateContentRequest")
        return json_response({"totalTokens": GEMINI_COUNT_TOKENS})

    def answer(self, model: str, body: Json) -> Answer:
        last_user = next((c for c in reversed(body["contents"]) if c.get("role", "user") == "user"), None)
        results = [gemini_result_text(r["response"]) for r in gemini_answers(last_user)] if last_user else []
        declared = any(get(tool, "functionDeclarations") for tool in body.get("tools") or [])
        mode = get(get(get(body, "toolConfig") or {}, "functionCallingConfig") or {}, "mode")
        tools = body.get("tools") or []
        declarations = [d for tool in tools for d in get(tool, "functionDeclarations") or []]
        names = [declaration.get("name", "") for declaration in declarations]
        return self.reply(model, results, declared and mode != "NONE", names)

    def message(self, model: str, answer: Answer, request: web.Request) -> Json:
        return self.chunk(model, self.parts(model, answer), GEMINI_USAGE, finished=True)

    def parts(self, model: str, answer: Answer) -> list[Json]:
        if not answer.tool_call:
            return [{"text": answer.text}]
        part: Json = {"functionCall": {"name": answer.name, "args": json.loads(answer.arguments)}}
        if model.startswith(GEMINI_THINKING_PREFIX):
            part["thoughtSignature"] = GEMINI_SIGNATURE_B64
        return [part]

    @staticmethod
    def chunk(model: str, parts: list[Json], usage: Json, finished: bool) -> Json:
        candidate: Json = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finished:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": "fake-gemini-resp",
        }

    def stream(self, model: str, answer: Answer, request: web.Request) -> Stream:
        if answer.tool_call:
            chunks = [self.message(model, answer, request)]
        else:
            pieces = text_pieces(answer.text)
            chunks = [
                self.chunk(model, [{"text": p}], GEMINI_USAGE_START, finished=False) for p in pieces[:-1]
            ]
            chunks.append(self.chunk(model, [{"text": pieces[-1]}], GEMINI_USAGE, finished=True))
        failure = {"error": {"code": 500, "message": f"fake gemini: {STREAM_FAILED}", "status": "INTERNAL"}}
        if request.query.get("alt") == "sse":
            return Stream([sse(c, end="\r\n") for c in chunks], sse(failure, end="\r\n"), head=1)
        # without alt=sse: one JSON array, streamed element by element
        frames = [("[" if i == 0 else ",\r\n") + compact(c) for i, c in enumerate(chunks)] + ["]"]
        return Stream(
            [f.encode() for f in frames], f",\r\n{compact(failure)}]".encode(), 1, "application/json"
        )


# ================================================================================================
@dataclass
class Fakes:
    """The three fakes together, with the keys the proxy's test configuration uses."""

    openai: FakeOpenAI = field(default_factory=lambda: FakeOpenAI(OPENAI_KEY))
    anthropic: FakeAnthropic = field(default_factory=lambda: FakeAnthropic(ANTHROPIC_KEY))
    gemini: FakeGemini = field(default_factory=lambda: FakeGemini(GEMINI_KEY))

    @property
    def all(self) -> tuple[FakeProvider, ...]:
        return (self.openai, self.anthropic, self.gemini)

    def start(self) -> Self:
        for fake in self.all:
            fake.start()
        return self

    def stop(self) -> None:
        for fake in self.all:
            fake.stop()

    def reset(self) -> None:
        for fake in self.all:
            fake.reset()

    def llm_yaml(self, default_backend: str = "openai") -> str:
        """The proxy configuration routing to these fakes; append top-level keys to extend it."""
        backends = {
            "openai": (f"{self.openai.base_url}/v1", OPENAI_KEY),
            "anthropic": (self.anthropic.base_url, ANTHROPIC_KEY),
            "gemini": (self.gemini.base_url, GEMINI_KEY),
        }
        lines = [
            f'  {name}: {{type: {name}, base_url: "{url}", api_keys: ["{key}"]}}\n'
            for name, (url, key) in backends.items()
        ]
        return "backends:\n" + "".join(lines) + f"default_backend: {default_backend}\n"
