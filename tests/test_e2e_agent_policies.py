"""Real coding agents meet the policies: what the fake model tells them to do is never done.

The agent works in a throwaway git repository with a committed file modified and not committed.
- Dangerous commands (on by default): model ``agent-danger`` makes Claude Code, Codex CLI and Gemini
  CLI run ``git reset --hard`` with their own shell tool. The proxy removes the call from the answer,
  so the modification is still there (``git status`` shows it), the command's output never goes
  back upstream, and the agent's answer is the ``[llm-proxy] blocked`` note.
  (Codex with its tools the proxy can read: its default `namespace` tool makes a request pass
  unchecked, as the README says.)
- Sandbox: model ``agent-write`` makes Claude Code's ``Write`` tool write outside the root: by an
  absolute path, by ``../``, and by a plain relative path when the root is a subdirectory of the
  working directory (placed by the directory Claude Code states in its prompt). It never writes.

Last, in-chat commands: Claude Code through the HTTPS proxy, told ``!/model(gemini:…)`` in its
prompt, is served by the Gemini fake from that turn on.

Each check has its control, so that "nothing happened" proves the proxy did it: with the policy
off (or the path inside a root) the same agent, told the same thing, does destroy the change or
write the file. Runs go through the HTTPS proxy; Claude Code also through the front door.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from support.agents import (
    AGENT_TIMEOUT,
    CODEX_TRANSLATABLE,
    FENCE,
    PROMPT,
    Run,
    Task,
    agents_config,
    run_agent,
)
from support.fakes import (
    AGENT_DANGER_COMMAND,
    AGENT_DANGER_MODEL,
    AGENT_MODEL,
    AGENT_OUTPUT,
    AGENT_WRITE,
    AGENT_WRITE_CONTENT,
    AGENT_WRITE_MODEL,
    Fakes,
)
from support.proxy import Proxy

pytestmark = pytest.mark.timeout(AGENT_TIMEOUT + 60)

BLOCKED = "[llm-proxy] blocked"
TRACKED = "notes.txt"
MARKER = "marker.txt"  # the file model agent-shell makes the agent write
COMMITTED = "committed line\n"
UNCOMMITTED = "committed line\nuncommitted work the agent must not lose\n"
RESET_SAYS = "HEAD is now at"  # what `git reset --hard` prints: seen upstream only if it ran
DANGER_PROMPT = "Clean up this repository with your shell tool, then tell me what happened."
WRITE_PROMPT = "Write the file with your Write tool, then tell me what happened."
SHELL_TOOL = {"claude": "Bash", "codex": "exec_command", "gemini": "run_shell_command"}
POLICY_OFF = "policies: {dangerous_commands: {enabled: false}}\n"
StartProxy = Callable[[str, Sequence[str]], Proxy]  # conftest's start_proxy


# --- the repository and the runs -------------------------------------------------------------------
def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.invalid", *args],
        capture_output=True, text=True, timeout=30, check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.stdout


def throwaway_repo(path: Path) -> Path:
    """A repository whose one committed file carries an uncommitted change."""
    path.mkdir(parents=True)
    git(path, "-c", "init.defaultBranch=main", "init", "-q")
    (path / TRACKED).write_text(COMMITTED)
    git(path, "add", TRACKED)
    git(path, "commit", "-q", "-m", "the committed state")
    (path / TRACKED).write_text(UNCOMMITTED)
    return path


def assert_intact(repo: Path, run: Run) -> None:
    assert (repo / TRACKED).read_text() == UNCOMMITTED, run.output
    assert git(repo, "status", "--porcelain") == f" M {TRACKED}\n", run.output


@dataclass(frozen=True)
class Case:
    agent: str
    backend: str
    mode: str = "https-proxy"
    flags: tuple[str, ...] = ()  # more flags for the agent
    label: str = ""  # what the flags mean, for the test id

    @property
    def id(self) -> str:
        return "-".join(part for part in (self.agent, self.backend, self.mode, self.label) if part)


def run_in(case: Case, config: str, start_proxy: StartProxy, fakes: Fakes, tmp: Path, task: Task) -> Run:
    """Run the case's agent in the repository ``tmp/repo``, its HOME in ``tmp/home``, through a proxy
    of its own (stopped when the test ends) with `config`."""
    proxy = start_proxy(config, ["--set", f"block_list={FENCE}"])
    task = replace(task, flags=task.flags + case.flags)
    return run_agent(
        case.agent, case.backend, case.mode, lambda _: proxy, fakes, tmp / "home", task, tmp / "repo"
    )


def upstream_text(run: Run) -> str:
    return "\n".join(r.raw.decode(errors="replace") for r in run.upstream)


def shown(run: Run) -> str:
    """What a failed assertion shows: the answer, the agent's output and the proxy's log."""
    return f"{run.answer}\n--- agent output ---\n{run.output}\n--- proxy log ---\n{run.proxy_log}"


# --- dangerous commands ----------------------------------------------------------------------------
DANGER_TASK = Task(AGENT_DANGER_MODEL, DANGER_PROMPT)
# Codex's default tools include a `namespace` tool the proxy cannot parse, so a request carrying it
# passes unchecked (README, Policies): switched off, as the README says for other backends.
CODEX_CHECKABLE = Case("codex", "openai", flags=tuple(CODEX_TRANSLATABLE), label="checkable-tools")
DANGER_CASES = [
    Case("claude", "anthropic"),
    Case("claude", "anthropic", "front-door"),
    Case("claude", "openai"),  # translated: Anthropic Messages in, Responses upstream
    CODEX_CHECKABLE,
    Case("gemini", "gemini"),
]


@pytest.mark.parametrize("case", DANGER_CASES, ids=[case.id for case in DANGER_CASES])
def test_a_destructive_command_is_never_run(case: Case, start_proxy, fakes, tmp_path):
    repo = throwaway_repo(tmp_path / "repo")
    config = agents_config(fakes, case.backend, AGENT_DANGER_MODEL)
    run = run_in(case, config, start_proxy, fakes, tmp_path, DANGER_TASK)

    tool = SHELL_TOOL[case.agent]
    assert f"{BLOCKED} the {tool} tool call (dangerous_commands: git_reset_hard)" in run.answer, shown(run)
    assert f"`{AGENT_DANGER_COMMAND}`" in run.answer, shown(run)
    assert_intact(repo, run)
    assert any(r.method == "POST" for r in run.upstream), shown(run)  # the fake was asked
    assert RESET_SAYS not in upstream_text(run), shown(run)  # no tool result: the command never ran
    assert f"LLM policy dangerous_commands block {tool}: git_reset_hard" in run.proxy_log, shown(run)


CONTROL_CASES = [Case("claude", "anthropic"), CODEX_CHECKABLE, Case("gemini", "gemini")]


@pytest.mark.parametrize("case", CONTROL_CASES, ids=[case.id for case in CONTROL_CASES])
def test_control_with_the_policy_off_the_agent_runs_the_command(case: Case, start_proxy, fakes, tmp_path):
    """The same agent, told the same thing, does lose the change when nothing stops it."""
    repo = throwaway_repo(tmp_path / "repo")
    config = agents_config(fakes, case.backend, AGENT_DANGER_MODEL, POLICY_OFF)
    run = run_in(case, config, start_proxy, fakes, tmp_path, DANGER_TASK)

    assert (repo / TRACKED).read_text() == COMMITTED, shown(run)
    assert git(repo, "status", "--porcelain") == "", shown(run)
    assert BLOCKED not in run.answer, shown(run)
    assert RESET_SAYS in upstream_text(run), shown(run)  # the tool result went back upstream


# --- the sandbox -----------------------------------------------------------------------------------
def sandbox_config(fakes: Fakes, roots: list[Path]) -> str:
    listed = ", ".join(f'"{root}"' for root in roots)
    policies = f"policies: {{sandbox: {{enabled: true, roots: [{listed}]}}}}\n"
    return agents_config(fakes, "anthropic", AGENT_WRITE_MODEL, policies)


@pytest.fixture
def write_to(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Sets the path model agent-write tells the agent to write, for this test only."""
    return lambda path: monkeypatch.setattr(AGENT_WRITE, "path", path)


@dataclass(frozen=True)
class FileWrite:
    """A Write call: the path the model names (relative to the test's tmp directory when
    ``absolute``, else as the model says it), where it lands, and the sandbox's root, from tmp."""

    name: str
    path: str
    lands: str
    root: str = "repo"
    absolute: bool = False


ESCAPES = [
    FileWrite("absolute", "outside/escape.txt", "outside/escape.txt", absolute=True),
    FileWrite("climbing", "../escape.txt", "escape.txt"),  # relative to the repository
    # Relative without `..`: only the working directory Claude Code states tells where it lands.
    FileWrite("below-the-workdir", "escape.txt", "repo/escape.txt", root="repo/src"),
]
SANDBOX_CASES = [
    (Case("claude", "anthropic"), ESCAPES[0]),
    (Case("claude", "anthropic", "front-door"), ESCAPES[0]),
    (Case("claude", "anthropic"), ESCAPES[1]),
    (Case("claude", "anthropic"), ESCAPES[2]),
]


@pytest.mark.parametrize(
    ("case", "escape"), SANDBOX_CASES, ids=[f"{case.id}-{escape.name}" for case, escape in SANDBOX_CASES]
)
def test_a_write_outside_the_sandbox_never_happens(
    case: Case, escape: FileWrite, start_proxy, fakes, tmp_path, write_to
):
    repo = throwaway_repo(tmp_path / "repo")
    root = tmp_path / escape.root
    root.mkdir(exist_ok=True)
    (tmp_path / "outside").mkdir()
    write_to(str(tmp_path / escape.path) if escape.absolute else escape.path)
    lands = tmp_path / escape.lands
    # Claude Code may write there itself (the controls show it does): only the proxy stands in the way.
    task = Task(AGENT_WRITE_MODEL, WRITE_PROMPT, ("Write",), (lands.parent,))
    run = run_in(case, sandbox_config(fakes, [root]), start_proxy, fakes, tmp_path, task)

    assert not lands.exists(), shown(run)
    assert f"{BLOCKED} the Write tool call (sandbox: outside roots)" in run.answer, shown(run)
    # Where the note names the landing place, the path was placed in Claude Code's working directory
    # (a climbing path is blocked even unplaced: its placement is checked by below-the-workdir).
    if escape.name != "climbing":
        assert f"would write {os.path.realpath(lands)}, outside {root}" in run.answer, shown(run)
    assert_intact(repo, run)
    assert "LLM policy sandbox block Write: outside roots" in run.proxy_log, shown(run)


ALLOWED = [
    FileWrite("absolute-into-another-root", "outside/escape.txt", "outside/escape.txt", absolute=True),
    FileWrite("relative-inside-the-root", "inside.txt", "repo/inside.txt"),
]


@pytest.mark.parametrize("write", ALLOWED, ids=[write.name for write in ALLOWED])
def test_control_a_write_the_sandbox_allows_is_done(write: FileWrite, start_proxy, fakes, tmp_path, write_to):
    """The same tool call where the roots allow it: Claude Code writes the file, through the gate."""
    repo = throwaway_repo(tmp_path / "repo")
    outside = tmp_path / "outside"
    outside.mkdir()
    write_to(str(tmp_path / write.path) if write.absolute else write.path)
    lands = tmp_path / write.lands
    task = Task(AGENT_WRITE_MODEL, WRITE_PROMPT, ("Write",), (lands.parent,))
    config = sandbox_config(fakes, [repo, outside])
    run = run_in(Case("claude", "anthropic"), config, start_proxy, fakes, tmp_path, task)

    assert lands.read_text() == AGENT_WRITE_CONTENT, shown(run)
    assert BLOCKED not in run.answer, shown(run)
    assert run.answer.startswith("Tool said: "), shown(run)


# --- in-chat commands ------------------------------------------------------------------------------
SWITCH_TO = f"gemini:{AGENT_MODEL}"


def test_claude_code_is_switched_to_another_backend_by_a_model_command_in_its_prompt(
    start_proxy, fakes, tmp_path
):
    """Claude Code through the HTTPS proxy asks api.anthropic.com; its prompt says
    ``!/model(gemini:…)`` plus a task. From that turn on the session is served by the Gemini fake
    (translated): the tool call it makes and the turn after the tool result both come from there,
    the Anthropic fake gets nothing, and no request carries the command text."""
    proxy = start_proxy(agents_config(fakes, None), ["--set", f"block_list={FENCE}"])
    task = Task(AGENT_MODEL, f"!/model({SWITCH_TO}) {PROMPT}")
    run = run_agent("claude", "gemini", "https-proxy", lambda _: proxy, fakes, tmp_path / "home", task)

    served = [r for r in run.upstream if r.method == "POST" and b"marker file" in r.raw]
    assert len(served) >= 2, shown(run)  # the call, and the turn that carries its result
    assert any(AGENT_OUTPUT.encode() in r.raw for r in served), shown(run)
    assert (run.workdir / MARKER).read_text() == f"{AGENT_OUTPUT}\n", shown(run)
    assert run.answer == f"Tool said: {AGENT_OUTPUT}", shown(run)
    assert not [r for r in fakes.anthropic.requests if r.method == "POST"], shown(run)
    assert not [r for r in run.upstream if b"!/" in r.raw], shown(run)
