"""End to end: loop detection through a real `mitmdump -s addons/llm.py`, with the official SDKs.

The fake provider plays a model stuck in a loop (``scripted_model(..., repeat=n)``: one paragraph
said hundreds of times, streamed as a model generates). In every client protocol, on a
same-protocol route (the fast path, whose bytes pass untouched until the cut) and on a translated
one, streamed and whole, the client gets the answer's start, the ``[llm-proxy] loop detected``
note and a normal end, well before the loop's end; a streamed answer's provider connection is
closed by the proxy. The clients are the policy tests' (``test_e2e_policies``). Claude Code through
the HTTPS proxy, whose model loops, ends its turn with the note. Last, the tool-loop guard, in
every client protocol, same and translated, streamed and whole: a session's history with the same
call and result ``max_repeats`` times is steered, and the steered answer that calls the same thing
again reaches the client as the stop text with a normal stop reason; and Claude Code, whose
model calls one tool for ever, ends its turn with that text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types
from support.agents import FENCE, Task, agents_config, run_agent
from support.builders import CLIENT_KEY
from support.fakes import Fakes, scripted_model
from support.proxy import Proxy
from test_e2e_policies import NORMAL_END, PROTOCOLS, ROUTES, Ask, ask, generations

NOTE = "[llm-proxy] loop detected:"
UNIT = "I will now check the configuration file again to be sure that the value is right. "
REPEATS = 400  # 32 KB of text: the proxy must cut far earlier
BOUND = 6000  # characters the client may receive before the note


@pytest.fixture(scope="module")
def proxy(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    running = Proxy(tmp_path_factory.mktemp("loops"), fakes.llm_yaml()).start()
    yield running
    running.stop()


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_looping_answer_is_cut_with_a_note_and_a_normal_end(proxy, fakes, protocol, route, stream):
    backend = ROUTES[route][protocol]
    fake = getattr(fakes, backend)
    before = fake.hung_up
    model = scripted_model("Let me see. " + UNIT, repeat=REPEATS)
    reply = ask(proxy, protocol, Ask(f"{backend}:{model}", stream, tools=()))
    assert NOTE in reply.text, reply.text[-300:]
    assert "repeated" in reply.text and "check the configuration" in reply.text.split(NOTE)[1]
    assert reply.text.index(NOTE) < BOUND, "the loop was cut within a bounded number of characters"
    assert reply.text.startswith("Let me see."), "what came before the cut reached the client"
    assert reply.stop == NORMAL_END[protocol]
    if stream:
        assert wait_for(lambda: fake.hung_up > before), "the provider's connection was not closed"


def test_a_cut_loop_is_counted_in_metrics(proxy, fakes):
    model = scripted_model(UNIT, repeat=REPEATS)
    ask(proxy, "anthropic", Ask(f"anthropic:{model}", True, tools=()))
    metrics = httpx.get(proxy.front_url + "/metrics").text
    lines = [line for line in metrics.splitlines() if line.startswith("llm_loops_total{")]
    assert any('kind="text"' in line and not line.endswith(" 0.0") for line in lines), lines


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ordinary_repetition_passes_whole(proxy, fakes, protocol):
    """A refrain sung a few times and a log line quoted ten times are not loops."""
    text = "Line of the log: worker heartbeat ok\n" * 10 + "And the river runs to the sea.\n" * 4
    backend = ROUTES["same"][protocol]
    reply = ask(proxy, protocol, Ask(f"{backend}:{scripted_model(text)}", True, tools=()))
    assert reply.text == text


def test_claude_code_whose_model_loops_is_stopped_with_the_note_in_its_output(
    fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
):
    """A real agent through the HTTPS proxy: its provider streams a loop, the proxy cuts it, and
    Claude Code ends its turn normally with the note as the last of its answer."""
    confdir = tmp_path_factory.mktemp("loops-agent")
    agent_proxy = Proxy(confdir, agents_config(fakes, None), ["--set", f"block_list={FENCE}"]).start()
    try:
        model = f"anthropic:{scripted_model(UNIT, repeat=REPEATS)}"
        home = tmp_path_factory.mktemp("claude-loop") / "home"
        task = Task(model=model, prompt="Check the configuration.")
        before = fakes.anthropic.hung_up
        run = run_agent("claude", "anthropic", "https-proxy", lambda _: agent_proxy, fakes, home, task)
    finally:
        agent_proxy.stop()
    assert NOTE in run.answer, run.output
    assert run.answer.index(NOTE) < BOUND
    assert wait_for(lambda: fakes.anthropic.hung_up > before), "the provider's connection was not closed"


# -- the tool-loop guard ---------------------------------------------------------------------------
STEERED = "[llm-proxy] You have called Read"
STOPPED = "[llm-proxy] stopped a tool loop: Read"
READ_ARGS = {"file_path": "/a.txt"}
NOT_FOUND = "No such file"
READ_SCHEMA = {"type": "object", "properties": {"file_path": {"type": "string"}}}
MAX_REPEATS = 4  # the default tool_loop.max_repeats


@dataclass
class Turn:
    """What a client received for one request of a tool loop."""

    text: str
    stop: str | None
    calls: list[str]  # tool names


def chat_turn(base: str, model: str, ask_text: str, repeats: int, stream: bool) -> Turn:
    client = openai.OpenAI(base_url=base + "/v1", api_key=CLIENT_KEY, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": ask_text}]
    for n in range(repeats):
        call = {
            "id": f"call_{n}",
            "type": "function",
            "function": {"name": "Read", "arguments": json.dumps(READ_ARGS)},
        }
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{n}", "content": NOT_FOUND},
        ]
    tools = [{"type": "function", "function": {"name": "Read", "parameters": READ_SCHEMA}}]
    if not stream:
        choice = client.chat.completions.create(model=model, messages=messages, tools=tools).choices[0]
        calls = [c.function.name for c in choice.message.tool_calls or []]
        return Turn(choice.message.content or "", choice.finish_reason, calls)
    turn = Turn("", None, [])
    for chunk in client.chat.completions.create(model=model, messages=messages, tools=tools, stream=True):
        for choice in chunk.choices:
            turn.text += choice.delta.content or ""
            turn.calls += [
                c.function.name for c in choice.delta.tool_calls or [] if c.function and c.function.name
            ]
            turn.stop = choice.finish_reason or turn.stop
    return turn


def responses_turn(base: str, model: str, ask_text: str, repeats: int, stream: bool) -> Turn:
    client = openai.OpenAI(base_url=base + "/v1", api_key=CLIENT_KEY, max_retries=0)
    items: list[Any] = [{"role": "user", "content": ask_text}]
    for n in range(repeats):
        items += [
            {
                "type": "function_call",
                "call_id": f"call_{n}",
                "name": "Read",
                "arguments": json.dumps(READ_ARGS),
            },
            {"type": "function_call_output", "call_id": f"call_{n}", "output": NOT_FOUND},
        ]
    tools: Any = [{"type": "function", "name": "Read", "parameters": READ_SCHEMA, "strict": None}]
    if stream:
        events = client.responses.create(model=model, input=items, tools=tools, stream=True)
        response = next(e.response for e in events if e.type == "response.completed")
    else:
        response = client.responses.create(model=model, input=items, tools=tools)
    calls = [item.name for item in response.output if item.type == "function_call"]
    return Turn(response.output_text, response.status, calls)


def anthropic_turn(base: str, model: str, ask_text: str, repeats: int, stream: bool) -> Turn:
    client = anthropic.Anthropic(base_url=base + "/anthropic", api_key=CLIENT_KEY, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": ask_text}]
    for n in range(repeats):
        call = {"type": "tool_use", "id": f"toolu_{n}", "name": "Read", "input": READ_ARGS}
        result = {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": NOT_FOUND}
        messages += [{"role": "assistant", "content": [call]}, {"role": "user", "content": [result]}]
    kwargs: Any = dict(
        model=model, max_tokens=100, messages=messages, tools=[{"name": "Read", "input_schema": READ_SCHEMA}]
    )
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    text = "".join(block.text for block in message.content if block.type == "text")
    return Turn(
        text, message.stop_reason, [block.name for block in message.content if block.type == "tool_use"]
    )


def gemini_turn(base: str, model: str, ask_text: str, repeats: int, stream: bool) -> Turn:
    client = genai.Client(api_key=CLIENT_KEY, http_options=types.HttpOptions(base_url=base))
    contents = [types.Content(role="user", parts=[types.Part.from_text(text=ask_text)])]
    for _ in range(repeats):
        contents += [
            types.Content(role="model", parts=[types.Part.from_function_call(name="Read", args=READ_ARGS)]),
            types.Content(
                role="user",
                parts=[types.Part.from_function_response(name="Read", response={"output": NOT_FOUND})],
            ),
        ]
    declaration = types.FunctionDeclaration(name="Read", parameters_json_schema=READ_SCHEMA)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[declaration])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    call = client.models.generate_content_stream if stream else client.models.generate_content
    chunks = (
        list(call(model=model, contents=contents, config=config))
        if stream
        else [call(model=model, contents=contents, config=config)]
    )
    turn = Turn("", None, [])
    for chunk in chunks:
        candidate = chunk.candidates[0]
        for part in candidate.content.parts or []:
            turn.text += part.text or ""
            turn.calls += [part.function_call.name] if part.function_call else []
        turn.stop = candidate.finish_reason.value if candidate.finish_reason else turn.stop
    return turn


TURNS = {
    "openai-chat": chat_turn,
    "openai-responses": responses_turn,
    "anthropic": anthropic_turn,
    "gemini": gemini_turn,
}


def loop_turn(proxy: Proxy, protocol: str, model: str, ask_text: str, repeats: int, stream: bool) -> Turn:
    """One request of a session whose history has the same Read call and result ``repeats`` times."""
    return TURNS[protocol](proxy.front_url, model, ask_text, repeats, stream)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_tool_loop_guard_steers_and_stops_the_same_call_on_the_steered_answer(
    proxy, fakes, protocol, route, stream
):
    """Below ``max_repeats`` nothing happens; at ``max_repeats`` the request carries the steering
    note and, as the model calls the same thing again, that answer ends with the stop text and a
    normal stop reason: the agent never gets the call to run once more."""
    backend = ROUTES[route][protocol]
    model = f"{backend}:{scripted_model(calls=[('Read', READ_ARGS)])}"
    ask_text = f"Read a.txt please ({protocol} {route} {stream} {time.monotonic()})"
    before = len(generations(fakes, backend))
    below = loop_turn(proxy, protocol, model, ask_text, MAX_REPEATS - 1, stream)
    assert below.calls == ["Read"] and STOPPED not in below.text
    assert STEERED not in generations(fakes, backend)[-1].raw.decode(), "below max_repeats nothing happens"
    stopped = loop_turn(proxy, protocol, model, ask_text, MAX_REPEATS, stream)
    sent = generations(fakes, backend)[before:]
    assert len(sent) == 2 and STEERED in sent[1].raw.decode(), "the request at max_repeats is steered"
    assert stopped.calls == [], "the repeated call never reached the client"
    assert stopped.text.startswith(STOPPED) and f"{MAX_REPEATS} times" in stopped.text, stopped.text
    assert stopped.stop == NORMAL_END[protocol]


def test_a_steered_model_that_changes_approach_is_not_stopped(proxy, fakes):
    hint = "I cannot find a.txt. Which file do you mean?"
    model = f"anthropic:{scripted_model(calls=[('Read', READ_ARGS)], steered=hint)}"
    ask_text = f"Read a.txt ({time.monotonic()})"
    turn = loop_turn(proxy, "anthropic", model, ask_text, MAX_REPEATS, True)
    assert turn.text == hint and turn.stop == "end_turn"


@pytest.mark.parametrize("protocol", ["anthropic", "openai-chat"])
def test_a_loop_that_went_on_after_the_steer_is_answered_by_the_proxy_itself(proxy, fakes, protocol):
    """The steered answer did not repeat the call, yet the next request shows the same call and
    result once more: the proxy answers it itself, and no provider is called."""
    backend = ROUTES["same"][protocol]
    model = f"{backend}:{scripted_model(calls=[('Read', READ_ARGS)], steered='Let me think.')}"
    ask_text = f"Read it ({protocol} {time.monotonic()})"
    assert loop_turn(proxy, protocol, model, ask_text, MAX_REPEATS, False).text == "Let me think."
    sent = len(generations(fakes, backend))
    stopped = loop_turn(proxy, protocol, model, ask_text, MAX_REPEATS + 1, True)
    assert len(generations(fakes, backend)) == sent, "the stop is the proxy's own answer"
    assert stopped.text.startswith(STOPPED) and stopped.stop == NORMAL_END[protocol]


def test_claude_code_stuck_calling_one_tool_is_stopped_with_the_note_in_its_output(
    fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
):
    """A real agent through the HTTPS proxy whose model reads the same missing file for ever:
    Claude Code runs the call ``max_repeats`` times, the next request is steered, and the answer
    that calls it once more ends Claude Code's turn with the stop text instead. (Served by the
    Gemini fake, translated: the Anthropic fake gives every call the same id, and Claude Code
    keeps only one of the calls sharing an id in its history, so no repeat would ever show.)"""
    confdir = tmp_path_factory.mktemp("tool-loop-agent")
    agent_proxy = Proxy(confdir, agents_config(fakes, None), ["--set", f"block_list={FENCE}"]).start()
    missing = str(tmp_path_factory.mktemp("tool-loop-files") / "missing.txt")
    try:
        model = f"gemini:{scripted_model(calls=[('Read', {'file_path': missing})])}"
        home = tmp_path_factory.mktemp("claude-tool-loop") / "home"
        task = Task(model=model, prompt="Read the missing file.", claude_tools=("Read",))
        before = len(generations(fakes, "gemini"))
        run = run_agent("claude", "gemini", "https-proxy", lambda _: agent_proxy, fakes, home, task)
    finally:
        agent_proxy.stop()
    assert run.answer.startswith("[llm-proxy] stopped a tool loop: Read"), run.output
    sent = [r.raw.decode() for r in generations(fakes, "gemini")[before:] if missing.encode() in r.raw]
    assert len(sent) == MAX_REPEATS, "one request per run of the call, the last one steered"
    assert STEERED in sent[-1] and sent[-1].count('"functionResponse"') == MAX_REPEATS
    assert not any(STEERED in text for text in sent[:-1])
