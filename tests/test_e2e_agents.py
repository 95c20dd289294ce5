"""Real coding agents — Claude Code, Codex CLI, Gemini CLI, opencode, Qwen Code, unmodified —
complete a tool-using turn through the proxy, at the front door (their base-URL setting) and as an
HTTPS proxy, on each backend, with their default settings: no feature switched off, and either
their own default model name (which a catch-all route maps to the backend) or a ``backend:model``
selector (on a proxy without routes).

The fakes' model ``agent-shell`` makes the agent run ``AGENT_COMMAND`` with its own shell tool and
then answers ``Tool said: <the tool's output>``. Every agent runs with a temporary HOME, telemetry
and updates off, a time limit, and the environment ``scripts/agent_env.py`` prints for users, so
the README's instructions are what is tested. Stray traffic is caught: every non-loopback request
goes through the proxy's HTTPS listener (also in front-door mode), and its log must name no host
but the agents' own LLM hosts. The agents come from ``scripts/install_agents.py``; how they are run
(``run_agent``) is in ``tests/support/agents.py``. The cases run ``PARALLEL`` agents at a time (each
in its own HOME and working directory, the proxies and fakes shared), started when the first case
asks; each test waits for its own run.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from support.agents import AGENT_TIMEOUT, BACKENDS, FENCE_FLAGS, Run, Task, agents_config, run_agent
from support.fakes import AGENT_MODEL, AGENT_OUTPUT, Fakes
from support.proxy import Proxy

from scripts.agent_env import MODES
from scripts.install_agents import AGENTS, BIN

MARKER = "marker.txt"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
PARALLEL = 3  # agents at a time: mostly waiting on loopback, so more than the 2 cores
SELECTOR = "selector"  # the proxy without routes, where the agent's selector chooses the backend

pytestmark = pytest.mark.timeout(2 * AGENT_TIMEOUT + 60)


@pytest.fixture(scope="module")
def proxies(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Proxy]]:
    """One proxy per backend, started on first use and shared by the module's tests. The fakes are
    asked for by name only here, so that no test of this module resets their requests (conftest's
    ``_fresh_fake_requests``) while the agents of other cases are still running."""
    fakes: Fakes = request.getfixturevalue("fakes")
    started: dict[str, Proxy] = {}

    def get(backend: str) -> Proxy:
        if backend not in started:
            confdir = tmp_path_factory.mktemp(f"proxy-{backend}")
            config = agents_config(fakes, None if backend == SELECTOR else backend)
            started[backend] = Proxy(confdir, config, FENCE_FLAGS)
            started[backend].start()
        return started[backend]

    yield get
    for running in started.values():
        running.stop()


# The matrix of the issue: every agent on every backend family (compat: an openai-compatible server,
# Chat Completions; openai: Responses for Codex), with its default model or a selector, in each mode.
# The agents' own defaults meet two side requests the fakes answer as a model would: Codex's default
# model declares its shell only in code mode (the freeform `exec` tool of an `additional_tools` item),
# and Gemini CLI's default model setting first asks a router model for a JSON complexity score.
AGENT_NAMES = ("claude", "codex", "gemini", "opencode", "qwen")
MATRIX = {agent: ["anthropic", "openai", "gemini", "openrouter", "compat"] for agent in AGENT_NAMES}
SETTINGS = ("default", "selector")
# The host each agent calls in HTTPS-proxy mode: the only non-loopback hosts allowed in the logs.
AGENT_HOSTS = {
    "claude": "api.anthropic.com",
    "codex": "api.openai.com",
    "gemini": "generativelanguage.googleapis.com",
    "opencode": "api.anthropic.com",
    "qwen": "dashscope.aliyuncs.com",  # its own default base URL
}
CASES = [
    (agent, backend, setting, mode)
    for agent in MATRIX
    for backend in MATRIX[agent]
    for setting in SETTINGS
    for mode in MODES
]


def hosts_in(log: str) -> set[str]:
    """Hosts named by the proxy's flow lines and server connections."""
    requests = re.findall(r"\b(?:GET|POST|PUT|HEAD|DELETE|PATCH|OPTIONS) https?://([^/:\s]+)", log)
    return set(requests) | set(re.findall(r"server connect ([^\s:]+):", log))


# --- the matrix ----------------------------------------------------------------------------------
def case_id(case: tuple[str, ...]) -> str:
    return "-".join(case)


@pytest.fixture(scope="module")
def runs(
    proxies, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Run]]]:
    """Every selected case of the matrix (``-k`` picks some), submitted at once to a pool of
    ``PARALLEL`` agents."""
    fakes: Fakes = request.getfixturevalue("fakes")
    chosen = {item.callspec.id for item in request.session.items if hasattr(item, "callspec")}
    for name in (*{backend for backends in MATRIX.values() for backend in backends}, SELECTOR):
        proxies(name)  # started here, before any thread asks
    root = tmp_path_factory.mktemp("agents")

    def one(agent: str, backend: str, setting: str, mode: str) -> Run:
        if setting == "default":
            task, via = Task(model=None), backend
        else:
            task, via = Task(model=f"{backend}:{AGENT_MODEL}"), SELECTOR
        home = root / case_id((agent, backend, setting, mode)) / "home"
        return run_agent(agent, backend, mode, proxies, fakes, home, task, via=via)

    with ThreadPoolExecutor(PARALLEL) as pool:
        yield {case_id(case): pool.submit(one, *case) for case in CASES if case_id(case) in chosen}
        pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize(("agent", "backend", "setting", "mode"), CASES, ids=[case_id(c) for c in CASES])
def test_agent_runs_a_shell_tool_and_reports_its_output(agent, backend, setting, mode, runs):
    run = runs[case_id((agent, backend, setting, mode))].result()

    assert AGENT_OUTPUT in run.answer
    assert (Path(run.workdir) / MARKER).read_text() == f"{AGENT_OUTPUT}\n"
    # This run's own generations: the agents state their working directory in every request.
    here = str(run.workdir).encode()
    generations = [
        r for r in run.upstream if r.method == "POST" and "count" not in r.path.lower() and here in r.raw
    ]
    assert len(generations) >= 2, [r.path for r in run.upstream]  # the tool call, then the answer
    expected = BACKENDS[backend]
    assert all(r.headers.get(expected.header) == expected.key for r in run.upstream)
    assert any(AGENT_OUTPUT in r.raw.decode() for r in generations)  # the tool result went back upstream
    # The agents run side by side on shared proxies: a log slice may hold another agent's host.
    assert hosts_in(run.proxy_log) <= LOOPBACK_HOSTS | set(AGENT_HOSTS.values()), run.proxy_log


@pytest.mark.parametrize("agent", list(AGENTS))
def test_the_installed_agents_are_the_pinned_releases(agent, tmp_path):
    """The README's compatibility table names these versions; scripts/install_agents.py pins them."""
    done = subprocess.run(
        [str(BIN / agent), "--version"], env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert re.search(rf"(^|\s){re.escape(AGENTS[agent][1])}(\s|$)", done.stdout), done.stdout
