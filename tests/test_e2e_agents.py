"""Real coding agents — Claude Code, Codex CLI, Gemini CLI, unmodified — complete a tool-using turn
through the proxy, at the front door (their base-URL setting) and as an HTTPS proxy, on each backend.

The fakes' model ``agent-shell`` makes the agent run ``AGENT_COMMAND`` with its own shell tool and
then answers ``Tool said: <the tool's output>``. Every agent runs with a temporary HOME, telemetry
and updates off, a time limit, and the environment ``scripts/agent_env.py`` prints for users, so
the README's instructions are what is tested. Stray traffic is caught: every non-loopback request
goes through the proxy's HTTPS listener (also in front-door mode), and its log must name no host
but the agent's own LLM host. The agents come from ``scripts/install_agents.sh``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.fakes import (
    AGENT_MODEL,
    AGENT_OUTPUT,
    ANTHROPIC_KEY,
    GEMINI_KEY,
    OPENAI_KEY,
    FakeProvider,
    Fakes,
    RecordedRequest,
)
from support.proxy import Proxy

from scripts.agent_env import MODES, Endpoints, front_door_config
from scripts.install_agents import AGENTS, BIN

AGENT_TIMEOUT = 90  # seconds per agent run
PROMPT = "Write the marker file with your shell tool, then tell me what the command printed."
MARKER = "marker.txt"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Nothing leaves the machine: the proxy closes (444) every request to a non-loopback host that is not
# an LLM call it routes (the agents' settings, plugin and telemetry calls), as if offline.
FENCE = ":!~d 127.0.0.1 & !~d localhost & " + " & ".join(
    f"!~u {path}" for path in ("/v1/messages", "/v1/responses", "/v1/chat/completions", "/models/")
) + ":444"  # mitmproxy's block_list: separator, flow filter (no parentheses), status

pytestmark = pytest.mark.timeout(AGENT_TIMEOUT + 60)


# --- backends ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    """A proxy backend the agents can be routed to, and how its fake sees the injected key."""

    fake: Callable[[Fakes], FakeProvider]
    header: str
    key: str


BACKENDS = {
    "anthropic": Backend(lambda f: f.anthropic, "x-api-key", ANTHROPIC_KEY),
    "openai": Backend(lambda f: f.openai, "authorization", f"Bearer {OPENAI_KEY}"),  # Responses for Codex
    "compat": Backend(lambda f: f.openai, "authorization", f"Bearer {OPENAI_KEY}"),  # Chat Completions only
    "gemini": Backend(lambda f: f.gemini, "x-goog-api-key", GEMINI_KEY),
}


def agents_config(fakes: Fakes, backend: str) -> str:
    """The fakes' configuration plus an OpenAI-compatible backend; every request goes to `backend`."""
    head, default = fakes.llm_yaml().rsplit("default_backend:", 1)
    url = f"{fakes.openai.base_url}/v1"
    compat = f'  compat: {{type: openai-compatible, base_url: "{url}", api_keys: ["{OPENAI_KEY}"]}}\n'
    route = f"routes:\n  - match: {{}}\n    target: {backend}:{AGENT_MODEL}\n"
    return head + compat + "default_backend:" + default + route


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


# --- agents --------------------------------------------------------------------------------------
# Telemetry, error reporting, update checks and non-essential traffic off, for each agent.
QUIET = {
    "claude": {
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    },
    "codex": {},  # switched off in its command line (-c ...)
    "gemini": {},  # switched off in its settings.json
}
GEMINI_SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}
# On the same-protocol route, Gemini CLI's activate_skill declaration reaches the fake Gemini with
# "$schema" in its parametersJsonSchema, which the fake refuses: leave that one tool out there.
GEMINI_PASSTHROUGH = {"tools": {"exclude": ["activate_skill"]}}


# Codex's default tools include a `namespace` (multi_agent) and the hosted `web_search`, which the
# proxy refuses to translate to another protocol: routes to other protocols switch them off.
CODEX_TRANSLATABLE = ["--disable", "multi_agent", "-c", 'web_search="disabled"']


@dataclass(frozen=True)
class Setting:
    """What one agent run is given besides its environment."""

    home: Path
    backend: str
    mode: str
    where: Endpoints


def claude_command(run: Setting) -> list[str]:
    return ["-p", PROMPT, "--output-format", "json", "--model", AGENT_MODEL, "--allowedTools", "Bash"]


def codex_command(run: Setting) -> list[str]:
    config = front_door_config("codex", run.where) if run.mode == "front-door" else {}
    base_url = [flag for key, value in config.items() for flag in ("-c", f"{key}={json.dumps(value)}")]
    translatable = CODEX_TRANSLATABLE if run.backend != "openai" else []
    return [
        "exec", *base_url, *translatable,
        "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "--ephemeral",
        "-m", AGENT_MODEL, "-o", str(run.home / "last-message.txt"),
        "-c", "check_for_update_on_startup=false", "-c", "analytics.enabled=false",
        "-c", "feedback.enabled=false", "-c", 'otel.exporter="none"', "--disable", "plugins",
        PROMPT,
    ]  # fmt: skip


def gemini_command(run: Setting) -> list[str]:
    settings = run.home / ".gemini" / "settings.json"
    settings.parent.mkdir()
    passthrough = GEMINI_PASSTHROUGH if run.backend == "gemini" else {}
    settings.write_text(json.dumps({**GEMINI_SETTINGS, **passthrough}))
    return ["-p", PROMPT, "-m", AGENT_MODEL, "--yolo", "--skip-trust", "--output-format", "json"]


def claude_answer(stdout: str, home: Path) -> str:
    result = json.loads(stdout)
    assert result["is_error"] is False, result
    return str(result["result"])


def codex_answer(stdout: str, home: Path) -> str:
    return (home / "last-message.txt").read_text()


def gemini_answer(stdout: str, home: Path) -> str:
    return str(json.loads(stdout)["response"])


COMMANDS = {"claude": claude_command, "codex": codex_command, "gemini": gemini_command}
ANSWERS = {"claude": claude_answer, "codex": codex_answer, "gemini": gemini_answer}

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


@dataclass
class Run:
    answer: str
    workdir: Path
    upstream: list[RecordedRequest]
    proxy_log: str


def agent_env(agent: str, mode: str, proxy: Proxy, home: Path) -> dict[str, str]:
    """What agent_env.py prints for the mode, placeholders expanded, plus the fences of this test."""
    where = Endpoints(proxy.front_url, proxy.proxy_url, proxy.confdir)
    printed = MODES[mode](agent, where)
    env = {name: re.sub(r"\$\{\w+:-(\w+)\}", r"\1", value) for name, value in printed.items()}
    # Front door: anything not for the front door must still go through the proxy, to be seen.
    env.setdefault("HTTPS_PROXY", proxy.proxy_url)
    env.setdefault("NO_PROXY", "localhost,127.0.0.1,::1")
    return {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "HTTP_PROXY": proxy.proxy_url,
        "no_proxy": env["NO_PROXY"],
        **QUIET[agent],
        **env,
    }


def run_agent(
    agent: str, backend: str, mode: str, proxies: Callable[[str], Proxy], fakes: Fakes, home: Path
) -> Run:
    proxy = proxies(backend)
    mark = len(proxy.lines)
    workdir = home / "work"
    workdir.mkdir(parents=True)
    where = Endpoints(proxy.front_url, proxy.proxy_url, proxy.confdir)
    command = [str(BIN / agent), *COMMANDS[agent](Setting(home, backend, mode, where))]
    done = subprocess.run(
        command, cwd=workdir, env=agent_env(agent, mode, proxy, home), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=AGENT_TIMEOUT,
    )  # fmt: skip
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{agent} exited with {done.returncode}\n{output}"
    upstream = list(BACKENDS[backend].fake(fakes).requests)
    return Run(ANSWERS[agent](done.stdout, home), workdir, upstream, "".join(proxy.lines[mark:]))


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
