"""Real coding agents — Claude Code, Codex CLI, Gemini CLI, unmodified — complete a tool-using turn
through the proxy, at the front door (their base-URL setting) and as an HTTPS proxy, on each backend.

The fakes' model ``agent-shell`` makes the agent run ``AGENT_COMMAND`` with its own shell tool and
then answers ``Tool said: <the tool's output>``. Every agent runs with a temporary HOME, telemetry
and updates off, a time limit, and the environment ``scripts/agent_env.py`` prints for users, so
the README's instructions are what is tested. Stray traffic is caught: every non-loopback request
goes through the proxy's HTTPS listener (also in front-door mode), and its log must name no host
but the agent's own LLM host. The agents come from ``scripts/install_agents.sh``; how they are run
(``run_agent``) is in ``tests/support/agents.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator

import pytest
from support.agents import AGENT_TIMEOUT, BACKENDS, FENCE, agents_config, run_agent
from support.fakes import AGENT_OUTPUT, Fakes
from support.proxy import Proxy

from scripts.agent_env import MODES
from scripts.install_agents import AGENTS, BIN

MARKER = "marker.txt"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

pytestmark = pytest.mark.timeout(AGENT_TIMEOUT + 60)


@pytest.fixture(scope="module")
def proxies(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Proxy]]:
    """One proxy per backend, started on first use and shared by the module's tests."""
    started: dict[str, Proxy] = {}

    def get(backend: str) -> Proxy:
        if backend not in started:
            confdir = tmp_path_factory.mktemp(f"proxy-{backend}")
            started[backend] = Proxy(confdir, agents_config(fakes, backend), ["--set", f"block_list={FENCE}"])
            started[backend].start()
        return started[backend]

    yield get
    for running in started.values():
        running.stop()


# The matrix of the issue: agent -> the backends it must work on (Codex: Responses and Chat).
MATRIX = {
    "claude": ["anthropic", "openai", "gemini"],
    "codex": ["openai", "compat", "anthropic", "gemini"],
    "gemini": ["gemini", "openai", "anthropic"],
}
# The host each agent calls in HTTPS-proxy mode: the only non-loopback host allowed in the log.
AGENT_HOSTS = {
    "claude": "api.anthropic.com",
    "codex": "api.openai.com",
    "gemini": "generativelanguage.googleapis.com",
}
CASES = [(agent, backend, mode) for agent in MATRIX for backend in MATRIX[agent] for mode in MODES]


def hosts_in(log: str) -> set[str]:
    """Hosts named by the proxy's flow lines and server connections."""
    requests = re.findall(r"\b(?:GET|POST|PUT|HEAD|DELETE|PATCH|OPTIONS) https?://([^/:\s]+)", log)
    return set(requests) | set(re.findall(r"server connect ([^\s:]+):", log))


# --- the matrix ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("agent", "backend", "mode"), CASES, ids=["-".join(case) for case in CASES])
def test_agent_runs_a_shell_tool_and_reports_its_output(agent, backend, mode, proxies, fakes, tmp_path):
    run = run_agent(agent, backend, mode, proxies, fakes, tmp_path / "home")

    assert AGENT_OUTPUT in run.answer
    assert (run.workdir / MARKER).read_text() == f"{AGENT_OUTPUT}\n"
    generations = [r for r in run.upstream if r.method == "POST" and "count" not in r.path.lower()]
    assert len(generations) >= 2, [r.path for r in run.upstream]  # the tool call, then the answer
    expected = BACKENDS[backend]
    assert all(r.headers.get(expected.header) == expected.key for r in run.upstream)
    assert AGENT_OUTPUT in generations[-1].raw.decode()  # the tool result went back upstream
    assert hosts_in(run.proxy_log) <= LOOPBACK_HOSTS | {AGENT_HOSTS[agent]}, run.proxy_log


@pytest.mark.parametrize("agent", list(AGENTS))
def test_the_installed_agents_are_the_pinned_releases(agent, tmp_path):
    """The README's compatibility table names these versions; scripts/install_agents.py pins them."""
    done = subprocess.run(
        [str(BIN / agent), "--version"], env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert re.search(rf"(^|\s){re.escape(AGENTS[agent][1])}(\s|$)", done.stdout), done.stdout
