"""Running a real coding agent — Claude Code, Codex CLI, Gemini CLI, opencode, Qwen Code,
unmodified — through the proxy.

Shared by ``tests/test_e2e_agents.py`` (a tool-using turn on every backend, in both modes) and
``tests/test_e2e_agent_policies.py`` (the policies stop what the fakes make the agent attempt).
Every agent runs with a temporary HOME, telemetry and updates off, a time limit, and the
environment ``scripts/agent_env.py`` prints for users, so the README's instructions are what is
tested. The agents come from ``scripts/install_agents.py``.

opencode speaks Anthropic here (its provider when ``ANTHROPIC_API_KEY`` is set: its default model is
that provider's), takes its front door from ``OPENCODE_CONFIG_CONTENT`` and any model outside its
catalogue from its configuration file; Qwen Code speaks OpenAI Chat Completions (its ``openai``
auth type) and takes its base URL from ``OPENAI_BASE_URL``. In HTTPS-proxy mode it keeps its own
default base URL, DashScope (``dashscope.aliyuncs.com/compatible-mode/v1``), which the proxy
intercepts like any provider host; a ``dashscope`` backend makes that host's calls routed (the
catch-all route or the selector then chooses the backend that answers).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scripts.agent_env import MODES, Endpoints, front_door_config
from scripts.install_agents import BIN

from .fakes import AGENT_MODEL, ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY, FakeProvider, Fakes, RecordedRequest
from .proxy import Proxy

AGENT_TIMEOUT = 90  # seconds per agent run
PROMPT = "Write the marker file with your shell tool, then tell me what the command printed."
# Nothing leaves the machine: the proxy closes (444) every request to a non-loopback host that is not
# an LLM call it routes (the agents' settings, plugin and telemetry calls), as if offline.
LLM_PATHS = ("/v1/messages", "/v1/responses", "/v1/chat/completions", "/models/")
CLAUDE_SETTINGS = "/api/claude_code/"  # Claude Code's remote settings and policy limits


def fence(*passing: str) -> str:
    """mitmproxy's block_list entry closing all but loopback and the paths in `passing`
    (separator, flow filter without parentheses, status)."""
    paths = " & ".join(f"!~u {path}" for path in passing)
    return f":!~d 127.0.0.1 & !~d localhost & {paths}:444"


FENCE = fence(*LLM_PATHS)
# The same, but Claude Code's settings calls get a 404, as for an account without remote settings:
# closed, Claude Code retries them with backoff for some 17 seconds before it sends its prompt.
FENCE_FLAGS = [
    *("--set", f"block_list=:~d api.anthropic.com & ~u {CLAUDE_SETTINGS}:404"),
    *("--set", f"block_list={fence(*LLM_PATHS, CLAUDE_SETTINGS)}"),
]


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
    "openrouter": Backend(lambda f: f.openai, "authorization", f"Bearer {OPENAI_KEY}"),  # Chat, its family
}


def agents_config(fakes: Fakes, backend: str | None, model: str = AGENT_MODEL, extra: str = "") -> str:
    """The fakes' configuration plus an OpenAI-compatible, an OpenRouter and a DashScope backend (all
    Chat Completions, served by the OpenAI fake; DashScope is the provider Qwen Code calls by
    default); every request goes to `backend` and `model`, or, for `backend` None, where the
    client's selector says. `extra`: more top-level keys (``policies:``)."""
    head, default = fakes.llm_yaml().rsplit("default_backend:", 1)
    url = f"{fakes.openai.base_url}/v1"
    chat = "".join(
        f'  {name}: {{type: {name}, base_url: "{url}", api_keys: ["{OPENAI_KEY}"]}}\n'
        for name in ("compat", "openrouter", "dashscope")
    ).replace("type: compat", "type: openai-compatible")
    route = f"routes:\n  - match: {{}}\n    target: {backend}:{model}\n" if backend else ""
    return head + chat + "default_backend:" + default + route + extra


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
    "opencode": {  # its models catalogue download, its update check, its plugins' npm look-ups
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "npm_config_offline": "true",
    },
    "qwen": {},  # switched off in its settings.json
}
GEMINI_SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}
QWEN_SETTINGS = {**GEMINI_SETTINGS, "security": {"auth": {"selectedType": "openai"}}}
# On the same-protocol route, Gemini CLI's activate_skill declaration reaches the fake Gemini with
# "$schema" in its parametersJsonSchema, which the fake refuses: leave that one tool out there.
GEMINI_PASSTHROUGH = {"tools": {"exclude": ["activate_skill"]}}


# Codex's multi_agent `namespace` tool and hosted `web_search`, switched off only where a test needs
# every tool checkable (the policies); the agent matrix runs Codex with its defaults.
CODEX_TRANSLATABLE = ["--disable", "multi_agent", "-c", 'web_search="disabled"']


@dataclass(frozen=True)
class Task:
    """What the agent is asked: the model it names (the fakes act by model name; None: the agent's
    own default model, for a route to map), its prompt, the tools Claude Code may use unasked, the
    directories besides its own it may touch, and more flags
    for the agent's command line."""

    model: str | None = AGENT_MODEL
    prompt: str = PROMPT
    claude_tools: tuple[str, ...] = ("Bash",)
    claude_dirs: tuple[Path, ...] = ()
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Setting:
    """What one agent run is given besides its environment."""

    home: Path
    backend: str
    mode: str
    where: Endpoints
    task: Task = Task()


def claude_command(run: Setting) -> list[str]:
    task = run.task
    model = ["--model", task.model] if task.model else []
    command = ["-p", task.prompt, "--output-format", "json", *model]
    dirs = [flag for path in task.claude_dirs for flag in ("--add-dir", str(path))]
    return [*command, "--allowedTools", ",".join(task.claude_tools), *dirs, *task.flags]


def codex_command(run: Setting) -> list[str]:
    config = front_door_config("codex", run.where) if run.mode == "front-door" else {}
    base_url = [flag for key, value in config.items() for flag in ("-c", f"{key}={json.dumps(value)}")]
    model = ["-m", run.task.model] if run.task.model else []
    return [
        "exec", *base_url,
        "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "--ephemeral",
        *model, "-o", str(run.home / "last-message.txt"),
        "-c", "check_for_update_on_startup=false", "-c", "analytics.enabled=false",
        "-c", "feedback.enabled=false", "-c", 'otel.exporter="none"', "--disable", "plugins",
        *run.task.flags, run.task.prompt,
    ]  # fmt: skip


def gemini_command(run: Setting) -> list[str]:
    settings = run.home / ".gemini" / "settings.json"
    settings.parent.mkdir()
    passthrough = GEMINI_PASSTHROUGH if run.backend == "gemini" else {}
    settings.write_text(json.dumps({**GEMINI_SETTINGS, **passthrough}))
    flags = ["--yolo", "--skip-trust", "--output-format", "json", *run.task.flags]
    model = ["-m", run.task.model] if run.task.model else []
    return ["-p", run.task.prompt, *model, *flags]


def opencode_command(run: Setting) -> list[str]:
    """Its configuration file declares a model outside its catalogue (a selector); the front door
    comes from the environment (``OPENCODE_CONFIG_CONTENT``, merged over the file)."""
    anthropic: dict[str, object] = {}
    if run.task.model:
        anthropic["models"] = {run.task.model: {}}
    config = run.home / ".config" / "opencode" / "opencode.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"provider": {"anthropic": anthropic}}))
    model = ["-m", f"anthropic/{run.task.model}"] if run.task.model else []
    return ["run", "--format", "json", *model, *run.task.flags, run.task.prompt]


def qwen_command(run: Setting) -> list[str]:
    settings = run.home / ".qwen" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps(QWEN_SETTINGS))
    model = ["-m", run.task.model] if run.task.model else []
    return ["-p", run.task.prompt, *model, "--yolo", "--output-format", "json", *run.task.flags]


def claude_answer(stdout: str, home: Path) -> str:
    result = json.loads(stdout)
    assert result["is_error"] is False, result
    return str(result["result"])


def codex_answer(stdout: str, home: Path) -> str:
    return (home / "last-message.txt").read_text()


def gemini_answer(stdout: str, home: Path) -> str:
    return str(json.loads(stdout)["response"])


def opencode_answer(stdout: str, home: Path) -> str:
    """The text of its last text event (its JSON lines also carry the tool's own output)."""
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return str([e["part"]["text"] for e in events if e.get("type") == "text"][-1])


def qwen_answer(stdout: str, home: Path) -> str:
    result = json.loads(stdout)[-1]
    assert result["type"] == "result" and result["is_error"] is False, result
    return str(result["result"])


COMMANDS = {
    "claude": claude_command,
    "codex": codex_command,
    "gemini": gemini_command,
    "opencode": opencode_command,
    "qwen": qwen_command,
}
ANSWERS = {
    "claude": claude_answer,
    "codex": codex_answer,
    "gemini": gemini_answer,
    "opencode": opencode_answer,
    "qwen": qwen_answer,
}


@dataclass
class Run:
    answer: str
    workdir: Path
    upstream: list[RecordedRequest]
    proxy_log: str
    output: str = ""  # the ends of the agent's stdout and stderr, for failure messages


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
    agent: str,
    backend: str,
    mode: str,
    proxies: Callable[[str], Proxy],
    fakes: Fakes,
    home: Path,
    task: Task = Task(),
    workdir: Path | None = None,
    via: str | None = None,
) -> Run:
    """Run `agent` on `task` in `workdir` (default: a new ``home/work``) through the proxy
    ``proxies(via or backend)``; it must exit 0."""
    proxy = proxies(via or backend)
    mark = len(proxy.lines)
    if workdir is None:
        workdir = home / "work"
        workdir.mkdir(parents=True)
    else:
        home.mkdir(parents=True, exist_ok=True)
    where = Endpoints(proxy.front_url, proxy.proxy_url, proxy.confdir)
    command = [str(BIN / agent), *COMMANDS[agent](Setting(home, backend, mode, where, task))]
    done = subprocess.run(
        command, cwd=workdir, env=agent_env(agent, mode, proxy, home), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=AGENT_TIMEOUT,
    )  # fmt: skip
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{agent} exited with {done.returncode}\n{output}"
    upstream = list(BACKENDS[backend].fake(fakes).requests)
    return Run(ANSWERS[agent](done.stdout, home), workdir, upstream, "".join(proxy.lines[mark:]), output)
