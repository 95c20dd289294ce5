"""End to end: loop detection through a real `mitmdump -s addons/llm.py`, with the official SDKs.

The fake provider plays a model stuck in a loop (``scripted_model(..., repeat=n)``: one paragraph
said hundreds of times, streamed as a model generates). In every client protocol, on a
same-protocol route (the fast path, whose bytes pass untouched until the cut) and on a translated
one, streamed and whole, the client gets the answer's start, the ``[llm-proxy] loop detected``
note and a normal end, well before the loop's end; a streamed answer's provider connection is
closed by the proxy. The clients are the policy tests' (``test_e2e_policies``). Claude Code through
the HTTPS proxy, whose model loops, ends its turn with the note. Last, the tool-loop guard: a
session's history with the same call and result ``max_repeats`` times is steered, one more is
answered by the proxy itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from support.agents import FENCE, Task, agents_config, run_agent
from support.builders import CLIENT_KEY
from support.fakes import Fakes, scripted_model
from support.proxy import Proxy
from test_e2e_policies import NORMAL_END, PROTOCOLS, ROUTES, Ask, ask

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
READ_TOOL = {"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}


def anthropic_history(ask_text: str, repeats: int) -> list[dict]:
    messages: list[dict] = [{"role": "user", "content": ask_text}]
    for n in range(repeats):
        call = {"type": "tool_use", "id": f"toolu_{n}", "name": "Read", "input": {"file_path": "/a.txt"}}
        result = {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": "No such file"}
        messages += [{"role": "assistant", "content": [call]}, {"role": "user", "content": [result]}]
    return messages


def chat_history(ask_text: str, repeats: int) -> list[dict]:
    messages: list[dict] = [{"role": "user", "content": ask_text}]
    for n in range(repeats):
        call = {"id": f"call_{n}", "type": "function", "function": {"name": "Read", "arguments": '{"p":1}'}}
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{n}", "content": "No such file"},
        ]
    return messages


def test_the_tool_loop_guard_steers_then_answers_itself_anthropic(proxy, fakes):
    client = anthropic.Anthropic(base_url=proxy.front_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0)
    ask_text = f"Read a.txt please ({time.monotonic()})"

    def send(repeats: int, stream: bool):
        kwargs = dict(model="anthropic:claude-sonnet-4-5", max_tokens=100, tools=[READ_TOOL])
        messages = anthropic_history(ask_text, repeats)
        if stream:
            with client.messages.stream(messages=messages, **kwargs) as events:
                return events.get_final_message()
        return client.messages.create(messages=messages, **kwargs)

    before = len(fakes.anthropic.requests)
    send(3, False)
    assert STEERED not in fakes.anthropic.requests[-1].raw.decode(), "below max_repeats nothing happens"
    send(4, False)
    assert STEERED in fakes.anthropic.requests[-1].raw.decode(), "the fourth repeat steers"
    sent = len(fakes.anthropic.requests)
    stopped = send(5, True)
    assert len(fakes.anthropic.requests) == sent, "the stop is the proxy's own answer"
    assert stopped.stop_reason == "end_turn" and stopped.content[0].text.startswith(STOPPED)
    assert sent - before == 2


def test_the_tool_loop_guard_stops_an_openai_chat_client_whole(proxy, fakes):
    client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    ask_text = f"Read it ({time.monotonic()})"
    tools = [{"type": "function", "function": {"name": "Read", "parameters": {"type": "object"}}}]
    for repeats in (4, 5):
        reply = client.chat.completions.create(
            model="openai:gpt-4o", messages=chat_history(ask_text, repeats), tools=tools
        )
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content.startswith(STOPPED)
