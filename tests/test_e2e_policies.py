"""End to end: the policies, through a real `mitmdump -s addons/llm.py`, with the official SDKs.

Every client protocol (OpenAI Chat, OpenAI Responses, Anthropic Messages, Gemini) asks a fake
provider — on a same-protocol route and on a translated one, streamed and whole — whose answer the
test dictates through the model name (``support.fakes.scripted_model``: text, then tool calls with
the given names and arguments, streamed in 4-character deltas and 7-byte network pieces, with an
optional pause between the text and the calls). Each case checks what the client receives and what
the provider got. One proxy per policy configuration, shared by the module:

- ``guarded``: no ``policies`` key, so dangerous commands are on by default; wire capture on;
- ``sandboxed``: ``policies.sandbox`` with one root;
- ``restricted``: ``policies.tools`` denying ``WebFetch`` and ``mcp__*`` to ``anthropic:*``;
- ``rewriting``: ``policies.rewrite`` with a system rule and an answer rule.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types
from support.builders import CLIENT_KEY
from support.fakes import STEERING_MARK, Fakes, RecordedRequest, scripted_model
from support.proxy import Proxy, ProxyStartError, eventually

from scripts import captures

BLOCKED = "[llm-proxy] blocked"
RUN_IT_YOURSELF = "If this is intended, run it yourself."
PROTOCOLS = ("openai-chat", "openai-responses", "anthropic", "gemini")
# Which backend serves each client protocol on its own protocol, and which one translates.
SAME = {"openai-chat": "openai", "openai-responses": "openai", "anthropic": "anthropic", "gemini": "gemini"}
TRANSLATED = {
    "openai-chat": "anthropic",
    "openai-responses": "gemini",
    "anthropic": "gemini",
    "gemini": "openai",
}
ROUTES = {"same": SAME, "translated": TRANSLATED}
# The stop reason of a turn that ends normally, and of one that ends waiting for tool results.
NORMAL_END = {
    "openai-chat": "stop",
    "openai-responses": "completed",
    "anthropic": "end_turn",
    "gemini": "STOP",
}
TOOL_END = {
    "openai-chat": "tool_calls",
    "openai-responses": "completed",
    "anthropic": "tool_use",
    "gemini": "STOP",
}

# The tools a coding agent offers: name -> (description, {argument: description}).
TOOLS: dict[str, tuple[str, dict[str, str]]] = {
    "Bash": ("Run a shell command", {"command": "The command", "description": "What it does"}),
    "Read": ("Read a file", {"file_path": "Absolute path"}),
    "Write": ("Write a file", {"file_path": "Absolute path", "content": "The new content"}),
    "WebFetch": ("Fetch a URL", {"url": "The URL", "prompt": "What to extract"}),
    "mcp__github__create_issue": ("Open a GitHub issue", {"title": "The title"}),
}
AGENT_TOOLS = ("Bash", "Read", "Write")
RESET_HARD = {"command": "git reset --hard", "description": "Discard local changes"}
STATUS = {"command": "git status", "description": "Show the working tree status"}
READ = {"file_path": "/repo/README.md"}


def schema(tool: str) -> dict[str, Any]:
    arguments = TOOLS[tool][1]
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": text} for name, text in arguments.items()},
        "required": [next(iter(arguments))],
    }


# -- the four clients ------------------------------------------------------------------------------


@dataclass
class Reply:
    """What a client received, in its own terms."""

    text: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # name, parsed arguments
    ids: list[str] = field(default_factory=list)  # the calls' ids ("" where the protocol has none)
    indices: list[int] = field(default_factory=list)  # Chat streams: the tool_calls indices seen
    argument_deltas: int = 0  # streams: how many pieces the calls' arguments came in
    stop: str | None = None
    arrivals: list[tuple[float, str]] = field(default_factory=list)  # streams: (time, text so far)
    ended: float = 0.0

    def got(self, delta: str) -> None:
        self.text += delta
        self.arrivals.append((time.monotonic(), self.text))

    def when_text_had(self, prefix: str) -> float:
        """When the streamed text first began with ``prefix``."""
        return next(t for t, text in self.arrivals if text.startswith(prefix))


@dataclass(frozen=True)
class Ask:
    """One request: a model, whether to stream, the offered tools, a system prompt, the user's text."""

    model: str
    stream: bool
    tools: Sequence[str] = AGENT_TOOLS
    system: str | None = None
    user: str = "Please tidy up the repository."
    tool_choice: str | None = None  # a tool name the request forces (Chat only)


def ask_chat(base: str, key: str, ask: Ask) -> Reply:
    client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
    messages: list[Any] = [{"role": "system", "content": ask.system}] if ask.system else []
    kwargs: dict[str, Any] = {
        "model": ask.model,
        "messages": [*messages, {"role": "user", "content": ask.user}],
    }
    if ask.tools:
        kwargs["tools"] = [
            {"type": "function", "function": {"name": t, "description": TOOLS[t][0], "parameters": schema(t)}}
            for t in ask.tools
        ]
    if ask.tool_choice:
        kwargs["tool_choice"] = {"type": "function", "function": {"name": ask.tool_choice}}
    reply = Reply()
    if not ask.stream:
        choice = client.chat.completions.create(**kwargs).choices[0]
        reply.text, reply.stop = choice.message.content or "", choice.finish_reason
        for call in choice.message.tool_calls or []:
            reply.calls.append((call.function.name, json.loads(call.function.arguments)))
            reply.ids.append(call.id)
        return reply
    calls: dict[int, dict[str, str]] = {}
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            if choice.delta.content:
                reply.got(choice.delta.content)
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
                reply.argument_deltas += bool(call.function and call.function.arguments)
            reply.stop = choice.finish_reason or reply.stop
    reply.ended = time.monotonic()
    reply.indices = sorted(calls)
    reply.calls = [(c["name"], json.loads(c["arguments"])) for c in calls.values()]
    reply.ids = [c["id"] for c in calls.values()]
    return reply


def ask_responses(base: str, key: str, ask: Ask) -> Reply:
    client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
    kwargs: dict[str, Any] = {"model": ask.model, "input": [{"role": "user", "content": ask.user}]}
    if ask.system:
        kwargs["instructions"] = ask.system
    if ask.tools:
        kwargs["tools"] = [
            {
                "type": "function",
                "name": t,
                "description": TOOLS[t][0],
                "parameters": schema(t),
                "strict": None,
            }
            for t in ask.tools
        ]
    reply = Reply()
    if ask.stream:
        response = None
        for event in client.responses.create(**kwargs, stream=True):
            if event.type == "response.output_text.delta":
                reply.got(event.delta)
            elif event.type == "response.function_call_arguments.delta":
                reply.argument_deltas += 1
            elif event.type == "response.completed":
                response = event.response
        reply.ended = time.monotonic()
        assert response is not None, "the stream never completed"
        assert response.output_text == reply.text, "the completed response disagrees with the deltas"
    else:
        response = client.responses.create(**kwargs)
        reply.text = response.output_text
    reply.stop = response.status if response.incomplete_details is None else "incomplete"
    for item in response.output:
        if item.type == "function_call":
            reply.calls.append((item.name, json.loads(item.arguments)))
            reply.ids.append(item.call_id)
    return reply


def ask_anthropic(base: str, key: str, ask: Ask) -> Reply:
    client = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
    kwargs: dict[str, Any] = {
        "model": ask.model,
        "max_tokens": 512,
        "messages": [{"role": "user", "content": ask.user}],
    }
    if ask.system:
        kwargs["system"] = ask.system
    if ask.tools:
        kwargs["tools"] = [
            {"name": t, "description": TOOLS[t][0], "input_schema": schema(t)} for t in ask.tools
        ]
    reply = Reply()
    if ask.stream:
        with client.messages.stream(**kwargs) as events:
            for event in events:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    reply.got(event.delta.text)
                elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                    reply.argument_deltas += bool(event.delta.partial_json)
            message = events.get_final_message()
        reply.ended = time.monotonic()
    else:
        message = client.messages.create(**kwargs)
    text = "".join(block.text for block in message.content if block.type == "text")
    assert not ask.stream or text == reply.text, "the final message disagrees with the deltas"
    reply.text, reply.stop = text, message.stop_reason
    for block in message.content:
        if block.type == "tool_use":
            reply.calls.append((block.name, dict(block.input)))
            reply.ids.append(block.id)
    return reply


def ask_gemini(base: str, key: str, ask: Ask) -> Reply:
    client = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=base))
    config: dict[str, Any] = {"system_instruction": ask.system} if ask.system else {}
    if ask.tools:
        declarations = [
            types.FunctionDeclaration(name=t, description=TOOLS[t][0], parameters_json_schema=schema(t))
            for t in ask.tools
        ]
        config["tools"] = [types.Tool(function_declarations=declarations)]
        config["automatic_function_calling"] = types.AutomaticFunctionCallingConfig(disable=True)
    settings = types.GenerateContentConfig(**config)
    reply = Reply()
    if ask.stream:
        chunks = []
        for chunk in client.models.generate_content_stream(
            model=ask.model, contents=ask.user, config=settings
        ):
            chunks.append(chunk)
            for part in chunk.candidates[0].content.parts or []:
                if part.text and not part.thought:
                    reply.got(part.text)
        reply.ended = time.monotonic()
    else:
        chunks = [client.models.generate_content(model=ask.model, contents=ask.user, config=settings)]
    text = ""
    for chunk in chunks:
        candidate = chunk.candidates[0]
        for part in candidate.content.parts or []:
            text += part.text or "" if not part.thought else ""
            if part.function_call:
                reply.calls.append((part.function_call.name, dict(part.function_call.args or {})))
                reply.ids.append(part.function_call.id or "")
        reply.stop = candidate.finish_reason.value if candidate.finish_reason else reply.stop
    reply.text = text
    return reply


CLIENTS: dict[str, Callable[[str, str, Ask], Reply]] = {
    "openai-chat": ask_chat,
    "openai-responses": ask_responses,
    "anthropic": ask_anthropic,
    "gemini": ask_gemini,
}


SDK_PATHS = {"openai-chat": "/v1", "openai-responses": "/v1", "anthropic": "/anthropic", "gemini": ""}


def ask(proxy: Proxy, protocol: str, request: Ask) -> Reply:
    """Ask through the proxy's front door, with the client's own (placeholder) key."""
    return CLIENTS[protocol](proxy.front_url + SDK_PATHS[protocol], CLIENT_KEY, request)


def ask_fake(fakes: Fakes, protocol: str, request: Ask) -> Reply:
    """Ask the protocol's fake directly, with its key: what the proxy's upstream says."""
    fake = getattr(fakes, SAME[protocol])
    base = fake.base_url + ("/v1" if protocol.startswith("openai") else "")
    return CLIENTS[protocol](base, fake.api_key, request)


# -- what the provider got -------------------------------------------------------------------------


def generations(fakes: Fakes, backend: str) -> list[RecordedRequest]:
    return [r for r in getattr(fakes, backend).requests if r.method == "POST"]


def last_generation(fakes: Fakes, backend: str) -> RecordedRequest:
    requests = generations(fakes, backend)
    assert requests, f"the {backend} fake received no generation request"
    return requests[-1]


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def system_text(request: RecordedRequest) -> str:
    """The system prompt the provider got, wherever its protocol puts it."""
    body = request.body
    if request.path.endswith("/chat/completions"):
        roles = ("system", "developer")
        return "\n".join(content_text(m.get("content")) for m in body["messages"] if m["role"] in roles)
    if request.path.endswith("/responses"):
        items = body["input"] if isinstance(body["input"], list) else []
        texts = [body.get("instructions") or ""] + [
            content_text(i.get("content")) for i in items if i.get("role") in ("system", "developer")
        ]
        return "\n".join(t for t in texts if t)
    if request.path.endswith("/messages"):
        return content_text(body.get("system"))
    system = body.get("systemInstruction") or body.get("system_instruction") or {}
    return content_text(system.get("parts"))


def tool_names(request: RecordedRequest) -> list[str]:
    """The names of the tools the provider was offered."""
    tools = request.body.get("tools") or []
    if request.path.endswith("/chat/completions"):
        return [t["function"]["name"] for t in tools]
    if "/models/" in request.path:
        return [
            d["name"]
            for t in tools
            for d in t.get("functionDeclarations") or t.get("function_declarations") or []
        ]
    return [t["name"] for t in tools]


# -- the proxies -----------------------------------------------------------------------------------


@dataclass
class Guarded:
    proxy: Proxy
    captures: Path


@pytest.fixture(scope="module")
def guarded(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    directory = tmp_path_factory.mktemp("policy-captures")
    options = ["--set", f"llm_capture={directory}"]
    running = Proxy(tmp_path_factory.mktemp("guarded"), fakes.llm_yaml(), options).start()
    yield Guarded(running, directory)
    running.stop()


@dataclass
class Sandboxed:
    proxy: Proxy
    root: Path  # the one sandbox root; link/ inside it points outside
    outside: Path


@pytest.fixture(scope="module")
def sandboxed(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxed]:
    root = tmp_path_factory.mktemp("sandbox-root").resolve()
    outside = tmp_path_factory.mktemp("sandbox-outside").resolve()
    (root / "src").mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    config = fakes.llm_yaml() + f'policies:\n  sandbox: {{enabled: true, roots: ["{root}"]}}\n'
    running = Proxy(tmp_path_factory.mktemp("sandboxed"), config).start()
    yield Sandboxed(running, root, outside)
    running.stop()


TOOL_RULES = """policies:
  tools:
    - {match: {model: "anthropic:*"}, deny: ["WebFetch", "mcp__*"]}
"""


@pytest.fixture(scope="module")
def restricted(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    running = Proxy(tmp_path_factory.mktemp("restricted"), fakes.llm_yaml() + TOOL_RULES).start()
    yield running
    running.stop()


REWRITE_RULES = """policies:
  rewrite:
    - {where: system, find: "You are Claude Code", replace: "You are a coding agent"}
    - {where: assistant, regex: "(?i)as an ai language model,? ", replace: ""}
"""


@pytest.fixture(scope="module")
def rewriting(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    running = Proxy(tmp_path_factory.mktemp("rewriting"), fakes.llm_yaml() + REWRITE_RULES).start()
    yield running
    running.stop()


def assert_blocked(reply: Reply, protocol: str, tool: str, rule: str) -> None:
    """No call reached the client; a note in its place names the tool and the rule; a normal end."""
    assert reply.calls == [], f"the client received a tool call: {reply.calls}"
    note = reply.text[reply.text.index(BLOCKED) :] if BLOCKED in reply.text else ""
    assert note, f"no {BLOCKED!r} note in the text: {reply.text!r}"
    assert f"the {tool} tool call" in note and rule in note and RUN_IT_YOURSELF in note, note
    assert reply.stop == NORMAL_END[protocol]


ALL_ROUTES = [
    pytest.param(protocol, route, stream, id=f"{protocol}-{route}-{'stream' if stream else 'whole'}")
    for protocol in PROTOCOLS
    for route in ROUTES
    for stream in (True, False)
]


@pytest.fixture(scope="module")
def warm_sdks(fakes: Fakes) -> None:
    """The SDKs build their event models on first use, which can take longer than a test's pause:
    timing tests start with every SDK once through a stream of text and a call."""
    for protocol in PROTOCOLS:
        ask_fake(fakes, protocol, Ask(scripted_model("Warm. ", calls=[("Bash", STATUS)]), stream=True))


# -- the scripted fakes, without the proxy ---------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_sdk_reads_a_scripted_answer_straight_from_its_fake(warm_sdks, fakes, protocol, stream):
    """The script arrives as dictated — text, then the calls, their arguments in many deltas, the
    pause between — so that a failure through the proxy is the proxy's."""
    pause, before = 0.3, "Let me look. "
    model = scripted_model(before, calls=[("Bash", RESET_HARD), ("Read", READ)], pause=pause)
    reply = ask_fake(fakes, protocol, Ask(model, stream))
    assert reply.text == before
    assert reply.calls == [("Bash", RESET_HARD), ("Read", READ)]
    assert reply.stop == TOOL_END[protocol]
    if stream:
        assert reply.ended - reply.when_text_had(before) >= pause / 2
        if protocol != "gemini":  # Gemini sends each call whole
            assert reply.argument_deltas >= 10


# -- dangerous commands (on by default) ------------------------------------------------------------


@pytest.mark.parametrize("protocol, route, stream", ALL_ROUTES)
def test_a_dangerous_shell_call_reaches_the_client_as_a_blocked_note_and_a_normal_end(
    guarded, fakes, protocol, route, stream
):
    backend = ROUTES[route][protocol]
    reply = ask(
        guarded.proxy, protocol, Ask(f"{backend}:{scripted_model(calls=[('Bash', RESET_HARD)])}", stream)
    )
    assert_blocked(reply, protocol, "Bash", "dangerous_commands: git_reset_hard")
    assert reply.text.startswith(BLOCKED), "with no text before the call, the note is the whole text"
    assert "git reset --hard" in reply.text, "the note says what the command would have done"


@pytest.mark.parametrize("protocol, route, stream", ALL_ROUTES)
def test_a_harmless_shell_call_reaches_the_client_unchanged(guarded, fakes, protocol, route, stream):
    backend = ROUTES[route][protocol]
    reply = ask(guarded.proxy, protocol, Ask(f"{backend}:{scripted_model(calls=[('Bash', STATUS)])}", stream))
    assert reply.calls == [("Bash", STATUS)]
    assert reply.text == ""
    assert reply.stop == TOOL_END[protocol]
    if protocol != "gemini":  # Gemini answers calls by name
        assert all(reply.ids), "the client needs the call's id to answer it"
    assert len(generations(fakes, backend)) == 1, "an allowed call is never asked again"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("route", list(ROUTES))
def test_text_before_a_held_call_reaches_the_client_before_the_call_is_decided(
    warm_sdks, guarded, protocol, route
):
    """The fake sends text, waits PAUSE, then the call: the text must not wait for the call's end."""
    pause, before = 0.5, "Let me clean up the working tree first. "
    model = scripted_model(before, calls=[("Bash", RESET_HARD)], pause=pause)
    reply = ask(guarded.proxy, protocol, Ask(f"{ROUTES[route][protocol]}:{model}", stream=True))
    assert reply.text.startswith(before + "\n\n" + BLOCKED), reply.text
    early = reply.ended - reply.when_text_had(before)
    assert early >= pause / 2, f"the text arrived only {early:.3f} s before the stream ended"
    assert_blocked(reply, protocol, "Bash", "git_reset_hard")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_text_before_an_allowed_held_call_streams_on_time_and_the_call_follows(warm_sdks, guarded, protocol):
    pause, before = 0.5, "Checking the status. "
    model = scripted_model(before, calls=[("Bash", STATUS)], pause=pause)
    reply = ask(guarded.proxy, protocol, Ask(f"{TRANSLATED[protocol]}:{model}", stream=True))
    assert reply.text == before
    assert reply.calls == [("Bash", STATUS)]
    early = reply.ended - reply.when_text_had(before)
    assert early >= pause / 2, f"the text arrived only {early:.3f} s before the stream ended"


EVERY_BACKEND = [
    pytest.param(protocol, backend, stream, id=f"{protocol}-to-{backend}-{'stream' if stream else 'whole'}")
    for protocol in PROTOCOLS
    for backend in ("openai", "anthropic", "gemini")
    for stream in (True, False)
]
MIXED_CALLS = [("Bash", STATUS), ("Bash", RESET_HARD), ("Read", READ)]


@pytest.mark.parametrize("protocol, backend, stream", EVERY_BACKEND)
def test_a_blocked_call_between_allowed_ones_leaves_the_others_numbered_without_gaps(
    guarded, protocol, backend, stream
):
    model = scripted_model("Two checks. ", calls=MIXED_CALLS)
    reply = ask(guarded.proxy, protocol, Ask(f"{backend}:{model}", stream))
    assert sorted(reply.calls, key=lambda call: call[0]) == [("Bash", STATUS), ("Read", READ)]
    assert reply.text.startswith("Two checks. ")
    assert BLOCKED in reply.text and "git_reset_hard" in reply.text
    assert reply.stop == TOOL_END[protocol], "calls remain: the turn still waits for their results"
    if protocol == "openai-chat" and stream:
        assert reply.indices == [0, 1]
    if protocol != "gemini":
        assert len(set(reply.ids)) == 2 and all(reply.ids)


@pytest.mark.parametrize("protocol, backend, stream", EVERY_BACKEND)
def test_allowed_calls_reach_the_client_in_the_order_the_model_made_them(guarded, protocol, backend, stream):
    """A call no policy watches must not overtake an earlier call the gate still holds: an agent runs
    a turn's calls in order (mkdir, then write into it)."""
    model = scripted_model("Two checks. ", calls=MIXED_CALLS)
    reply = ask(guarded.proxy, protocol, Ask(f"{backend}:{model}", stream))
    names = [name for name, _ in reply.calls]
    assert names == ["Bash", "Read"], f"the model called Bash (git status), then Read; the client got {names}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_dangerous_command_split_across_many_argument_deltas_is_still_recognised(guarded, protocol):
    """The fake streams arguments 4 characters at a time and the bytes 7 at a time; the words of the
    command arrive in different deltas and spaced out, behind a harmless command."""
    command = {"command": "cd /repo && git   -C .  reset    --hard HEAD~3", "description": "Start over"}
    model = scripted_model(calls=[("Bash", command)])
    reply = ask(guarded.proxy, protocol, Ask(f"{SAME[protocol]}:{model}", stream=True))
    assert_blocked(reply, protocol, "Bash", "git_reset_hard")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_whole_answer_with_a_blocked_call_is_asked_again_with_a_note_before_the_client_gets_text(
    guarded, fakes, protocol
):
    backend = TRANSLATED[protocol]
    reply = ask(
        guarded.proxy, protocol, Ask(f"{backend}:{scripted_model(calls=[('Bash', RESET_HARD)])}", False)
    )
    assert_blocked(reply, protocol, "Bash", "git_reset_hard")
    first, second = generations(fakes, backend)  # policies.retries defaults to 1
    assert STEERING_MARK not in system_text(first)
    note = system_text(second)
    assert STEERING_MARK in note and "Bash" in note and "git_reset_hard" in note, note


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_model_that_takes_the_note_answers_the_client_with_no_trace_of_the_blocked_call(
    guarded, fakes, protocol
):
    backend = SAME[protocol]
    model = scripted_model(calls=[("Bash", RESET_HARD)], steered="I will leave the working tree alone.")
    reply = ask(guarded.proxy, protocol, Ask(f"{backend}:{model}", stream=False))
    assert reply.text == "I will leave the working tree alone."
    assert reply.calls == [] and reply.stop == NORMAL_END[protocol]
    assert len(generations(fakes, backend)) == 2


# -- the fast path ---------------------------------------------------------------------------------

FAST_MODEL = "gpt-fast-1"
# Spacing, key order and escapes a re-serialisation would change; tools no policy watches.
FAST_BODIES: dict[str, bytes] = {
    "openai-chat": (
        b'{ "messages" : [{"role":"user",  "content":"caf\\u00e9 \xc3\xa9 weather?"}],\n'
        b' "model" : "openai:' + FAST_MODEL.encode() + b'", "tools": [{"type": "function", "function": '
        b'{"name": "Read", "parameters": {"type": "object", "properties": {}}}}, {"type": "function", '
        b'"function": {"name": "get_weather", "parameters": {"type": "object"}}}] ,"stream":STREAM}'
    ),
    "openai-responses": (
        b'{"input" : "caf\\u00e9 \xc3\xa9 weather?",  "tools": [{"type":"function","name":"Read",'
        b'"parameters":{"type":"object","properties":{}}}],\n"model":"openai:' + FAST_MODEL.encode() + b'",'
        b' "stream" : STREAM }'
    ),
    "anthropic": (
        b'{"max_tokens":64,  "model":"anthropic:' + FAST_MODEL.encode() + b'", "messages":[{"role":"user",'
        b'"content":"caf\\u00e9 \xc3\xa9 weather?"}],\n "tools":[{"name":"Read","input_schema":'
        b'{"type":"object"}}], "stream":STREAM}'
    ),
    "gemini": (
        b'{"contents":[{"role":"user","parts":[{"text":"caf\\u00e9 \xc3\xa9 weather?"}]}],\n'
        b' "tools":[{"functionDeclarations":[{"name":"Read","description":"Read a file"}]}] }'
    ),
}


def fast_request(protocol: str, stream: bool, model: str) -> tuple[str, bytes]:
    """Path and body of a raw request, with ``model`` (a selector, or the provider's own name)."""
    body = FAST_BODIES[protocol].replace(b"STREAM", b"true" if stream else b"false")
    for family in (b"openai", b"anthropic"):
        body = body.replace(b'"' + family + b":" + FAST_MODEL.encode() + b'"', b'"' + model.encode() + b'"')
    if protocol == "gemini":
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"/v1beta/models/{model}:{method}", body
    paths = {
        "openai-chat": "/v1/chat/completions",
        "openai-responses": "/v1/responses",
        "anthropic": "/v1/messages",
    }
    return paths[protocol], body


def key_headers(protocol: str, key: str) -> dict[str, str]:
    """The credential in each protocol's own header, plus what the protocol requires besides."""
    headers = {"content-type": "application/json"}
    if protocol == "anthropic":
        return {**headers, "x-api-key": key, "anthropic-version": "2023-06-01"}
    if protocol == "gemini":
        return {**headers, "x-goog-api-key": key}
    return {**headers, "authorization": f"Bearer {key}"}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_offering_no_watched_tool_keeps_the_byte_for_byte_fast_path(
    guarded, fakes, protocol, stream
):
    backend = SAME[protocol]
    path, sent = fast_request(protocol, stream, f"{backend}:{FAST_MODEL}")
    with httpx.Client(base_url=guarded.proxy.front_url, trust_env=False, timeout=20) as client:
        via_proxy = client.post(path, content=sent, headers=key_headers(protocol, CLIENT_KEY))
    assert via_proxy.status_code == 200, via_proxy.text
    _, upstream_body = fast_request(protocol, stream, FAST_MODEL)
    assert upstream_body != sent or protocol == "gemini"  # Gemini names the model in the path only
    assert last_generation(fakes, backend).raw == upstream_body, "only the model name may change"

    fake = getattr(fakes, backend)
    with httpx.Client(base_url=fake.base_url, trust_env=False, timeout=20) as client:
        direct = client.post(
            path.replace(f"{backend}:", ""),
            content=upstream_body,
            headers=key_headers(protocol, fake.api_key),
        )
    assert direct.status_code == 200, direct.text
    assert via_proxy.content == direct.content, "the answer comes back as the provider sent it"


# -- the directory sandbox -------------------------------------------------------------------------


def workdir_prompt(cwd: Path | str) -> str:
    """How Claude Code states its working directory in the system prompt."""
    return f"You are an interactive CLI tool.\n<env>\nWorking directory: {cwd}\nPlatform: linux\n</env>"


# (case id, file_path relative to the sandbox fixture (a format string), blocked?)
SANDBOX_CASES = [
    ("absolute-outside", "{outside}/notes.txt", True),
    ("relative-climbing-out", "../{outside_name}/notes.txt", True),
    ("symlink-inside-pointing-outside", "{root}/link/notes.txt", True),
    ("absolute-inside", "{root}/src/app.py", False),
    ("relative-inside", "src/app.py", False),
    ("relative-climbing-back-inside", "src/../src/app.py", False),
]


def sandbox_path(sandbox: Sandboxed, template: str) -> str:
    return template.format(root=sandbox.root, outside=sandbox.outside, outside_name=sandbox.outside.name)


@pytest.mark.parametrize(
    "protocol, backend, stream",
    [("anthropic", "anthropic", True), ("openai-chat", "gemini", False)],
    ids=["anthropic-same-stream", "openai-chat-to-gemini-whole"],
)
@pytest.mark.parametrize("case, template, blocked", SANDBOX_CASES, ids=[c[0] for c in SANDBOX_CASES])
def test_writes_outside_the_sandbox_root_are_blocked_and_writes_inside_are_allowed(
    sandboxed, protocol, backend, stream, case, template, blocked
):
    # The working directory sits beside the outside directory: "../<outside>" climbs out of it.
    cwd = sandboxed.root
    arguments = {"file_path": sandbox_path(sandboxed, template), "content": "print('hi')\n"}
    if case == "relative-climbing-out":
        assert (cwd / ".." / sandboxed.outside.name).resolve() == sandboxed.outside
    model = scripted_model(calls=[("Write", arguments)])
    reply = ask(sandboxed.proxy, protocol, Ask(f"{backend}:{model}", stream, system=workdir_prompt(cwd)))
    if blocked:
        assert_blocked(reply, protocol, "Write", "sandbox: outside roots")
        assert str(sandboxed.outside) in reply.text, "the note names where the write would land"
    else:
        assert reply.calls == [("Write", arguments)]
        assert reply.stop == TOOL_END[protocol]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_client_protocol_gets_a_write_climbing_out_of_the_working_directory_blocked(
    sandboxed, protocol
):
    arguments = {"file_path": f"../{sandboxed.outside.name}/escape.txt", "content": "x"}
    model = scripted_model("Writing the file. ", calls=[("Write", arguments)])
    system = workdir_prompt(sandboxed.root)
    reply = ask(sandboxed.proxy, protocol, Ask(f"{TRANSLATED[protocol]}:{model}", True, system=system))
    assert_blocked(reply, protocol, "Write", "sandbox: outside roots")
    assert reply.text.startswith("Writing the file. \n\n" + BLOCKED)


# -- tool access -----------------------------------------------------------------------------------

OFFERED = ("Read", "WebFetch", "mcp__github__create_issue")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_denied_tools_are_not_offered_to_a_backend_the_rule_matches(restricted, fakes, protocol):
    reply = ask(restricted, protocol, Ask(f"anthropic:{scripted_model('Done.')}", False, tools=OFFERED))
    assert reply.text == "Done."
    assert tool_names(last_generation(fakes, "anthropic")) == ["Read"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_tool_is_offered_to_a_backend_no_rule_matches(restricted, fakes, protocol):
    ask(restricted, protocol, Ask(f"gemini:{scripted_model('Done.')}", False, tools=OFFERED))
    assert tool_names(last_generation(fakes, "gemini")) == list(OFFERED)


def test_a_forced_choice_of_a_denied_tool_becomes_auto(restricted, fakes):
    ask(
        restricted,
        "openai-chat",
        Ask(f"anthropic:{scripted_model('Done.')}", False, OFFERED, tool_choice="WebFetch"),
    )
    upstream = last_generation(fakes, "anthropic").body
    assert tool_names(last_generation(fakes, "anthropic")) == ["Read"]
    assert upstream["tool_choice"] == {"type": "auto"}


DENIED_CALLS = [
    ("WebFetch", {"url": "https://example.com", "prompt": "Summarise"}, "tools: WebFetch"),
    ("mcp__github__create_issue", {"title": "Bug"}, "tools: mcp__*"),
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("tool, arguments, rule", DENIED_CALLS, ids=[c[0] for c in DENIED_CALLS])
def test_a_call_to_a_denied_tool_made_anyway_is_blocked(restricted, protocol, stream, tool, arguments, rule):
    model = scripted_model(calls=[(tool, arguments)])
    reply = ask(restricted, protocol, Ask(f"anthropic:{model}", stream, tools=OFFERED))
    assert_blocked(reply, protocol, tool, rule)


def test_a_call_to_a_tool_denied_elsewhere_passes_where_no_rule_matches(restricted):
    arguments = {"url": "https://example.com", "prompt": "Summarise"}
    model = scripted_model(calls=[("WebFetch", arguments)])
    reply = ask(restricted, "anthropic", Ask(f"gemini:{model}", True, tools=OFFERED))
    assert reply.calls == [("WebFetch", arguments)]


# -- rewriting -------------------------------------------------------------------------------------

CLAUDE_SYSTEM = "You are Claude Code, Anthropic's official CLI. Be brief."
AI_TEXT = "As an AI language model, I cannot browse the web. But as an ai language model I can explain."
AI_TEXT_REWRITTEN = "I cannot browse the web. But I can explain."


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("route", list(ROUTES))
def test_the_provider_receives_the_rewritten_system_prompt(rewriting, fakes, protocol, route):
    backend = ROUTES[route][protocol]
    reply = ask(rewriting, protocol, Ask(f"{backend}:{scripted_model('Hi.')}", False, system=CLAUDE_SYSTEM))
    assert reply.text == "Hi."
    system = system_text(last_generation(fakes, backend))
    assert system == "You are a coding agent, Anthropic's official CLI. Be brief."


@pytest.mark.parametrize("protocol, route, stream", ALL_ROUTES)
def test_the_answer_loses_the_matching_text_even_split_across_deltas(rewriting, protocol, route, stream):
    assert re.sub("(?i)as an ai language model,? ", "", AI_TEXT) == AI_TEXT_REWRITTEN
    backend = ROUTES[route][protocol]
    reply = ask(rewriting, protocol, Ask(f"{backend}:{scripted_model(AI_TEXT)}", stream, tools=()))
    assert reply.text == AI_TEXT_REWRITTEN, "both matches (split over 4-character deltas) are removed"
    assert reply.stop == NORMAL_END[protocol]


# -- decisions are recorded ------------------------------------------------------------------------

METRIC = re.compile(r"^llm_policy_actions_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)


def policy_actions(proxy: Proxy) -> dict[tuple[str, str], float]:
    """``llm_policy_actions_total`` by (policy, action), from /metrics."""
    text = httpx.get(proxy.front_url + "/metrics", timeout=10).text
    counts = {}
    for match in METRIC.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        counts[(labels["policy"], labels["action"])] = float(match.group("value"))
    return counts


def blocked_reset(proxy: Proxy, stream: bool, marker: str = "") -> Reply:
    model = f"anthropic:{scripted_model(calls=[('Bash', RESET_HARD)])}"
    reply = ask(proxy, "anthropic", Ask(model, stream, user=f"Tidy up ({marker})"))
    assert_blocked(reply, "anthropic", "Bash", "git_reset_hard")
    return reply


def test_metrics_count_each_blocked_call(guarded):
    key = ("dangerous_commands", "block")
    before = policy_actions(guarded.proxy).get(key, 0.0)
    blocked_reset(guarded.proxy, stream=True)
    blocked_reset(guarded.proxy, stream=True)
    eventually(lambda: policy_actions(guarded.proxy).get(key) == before + 2, f"{key} counted twice more")


def test_metrics_count_the_retry_and_the_block_of_a_whole_answer(guarded):
    before = policy_actions(guarded.proxy)
    blocked_reset(guarded.proxy, stream=False)

    def counted() -> bool:
        after = policy_actions(guarded.proxy)
        return all(
            after.get(("dangerous_commands", action), 0.0)
            == before.get(("dangerous_commands", action), 0.0) + 1
            for action in ("retry", "block")
        )

    eventually(counted, "one retry and one block counted")


def test_diagnostics_list_the_last_decisions(guarded):
    blocked_reset(guarded.proxy, stream=True)
    decisions = httpx.get(guarded.proxy.front_url + "/v1/diagnostics", timeout=10).json()["policy_decisions"]
    last = decisions[-1]
    assert {k: last[k] for k in ("policy", "action", "tool", "rule")} == {
        "policy": "dangerous_commands",
        "action": "block",
        "tool": "Bash",
        "rule": "git_reset_hard",
    }
    assert "git reset --hard" in last["reason"] and last["flow"]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_the_capture_end_record_lists_the_decisions(guarded, stream):
    marker = f"capture-{'stream' if stream else 'whole'}-{os.getpid()}-{time.monotonic_ns()}"
    blocked_reset(guarded.proxy, stream, marker)

    def end_record() -> dict[str, Any] | None:
        for flow in captures.load(guarded.captures).flows.values():
            body = (flow.request or {}).get("client", {}).get("body") or b""
            if marker.encode() in body and flow.end:
                return flow.end
        return None

    end = eventually(end_record, f"the end record of the flow marked {marker}")
    decisions = [{k: d[k] for k in ("policy", "action", "tool", "rule")} for d in end["decisions"]]
    block = {"policy": "dangerous_commands", "action": "block", "tool": "Bash", "rule": "git_reset_hard"}
    assert decisions == ([block] if stream else [{**block, "action": "retry"}, block])


# -- configuration errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policies, where",
    [
        (
            '  rewrite:\n    - {where: assistant, regex: "(unclosed", replace: ""}\n',
            "policies.rewrite.0.regex",
        ),
        ("  sandbox: {enabled: true, roots: [/tmp], root: /tmp}\n", "policies.sandbox.root"),
    ],
    ids=["bad-rewrite-regex", "unknown-sandbox-key"],
)
def test_a_bad_policy_stops_start_up_with_one_line_naming_its_key_path(fakes, tmp_path, policies, where):
    proxy = Proxy(tmp_path, fakes.llm_yaml() + "policies:\n" + policies)
    try:
        proxy.start()
    except ProxyStartError:
        pass
    else:  # mitmdump exits over start-up errors only after it began listening; on a busy machine, later
        try:
            assert proxy.process is not None and proxy.process.wait(15) != 0
        finally:
            proxy.stop()
    lines = [line for line in proxy.log.splitlines() if where in line]
    assert len(lines) == 1, proxy.log
    assert f"LLM configuration error: {proxy.config_path}: {where}: " in lines[0]
    assert "Traceback" not in proxy.log
