"""End to end: loop detection through a real `mitmdump -s addons/llm.py`, with the official SDKs.

The fake provider plays a model stuck in a loop (``scripted_model(..., repeat=n)``: one paragraph
said hundreds of times, streamed as a model generates). In every client protocol, on a
same-protocol route (the fast path, whose bytes pass untouched until the cut) and on a translated
one, streamed and whole, the client gets the answer's start, the ``[llm-proxy] loop detected``
note and a normal end, well before the loop's end; a streamed answer's provider connection is
closed by the proxy. The clients are the policy tests' (``test_e2e_policies``). Last, Claude Code
through the HTTPS proxy, whose model loops, ends its turn with the note.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from support.agents import FENCE, Task, agents_config, run_agent
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
