"""Directory sandboxing (policies.sandbox) and working-directory discovery (policies.workdir)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from policies.base import Call, Context
from policies.sandbox import DEFAULT_FILE_TOOLS, Sandbox, SandboxConfig, changed_paths, patch_paths
from policies.workdir import working_directory
from translators.canonical import ChatRequest, Message, Text, ToolResult


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text("print('hi')\n")
    (tmp_path / "outside").mkdir()
    return project


def sandbox(*roots: Path | str, strict: bool = False) -> Sandbox:
    return Sandbox(SandboxConfig(enabled=True, roots=[str(r) for r in roots], strict=strict))


def call(name: str, arguments: dict[str, object] | str) -> Call:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return Call(name=name, arguments=text, id="call_1")


def judge(box: Sandbox, name: str, arguments: dict[str, object] | str, cwd: str | Path | None = None):
    return box.judge(
        call(name, arguments), Context(model="openai:gpt-5", cwd=None if cwd is None else str(cwd))
    )


# -- configuration -------------------------------------------------------------------------------


def test_config_defaults_cover_the_agents_file_tools() -> None:
    config = SandboxConfig()
    assert config.enabled is False and config.strict is False and config.roots == []
    for tool in ("Write", "Edit", "MultiEdit", "NotebookEdit", "apply_patch", "write_file", "replace"):
        assert tool in config.file_tools
    for tool in ("edit_file", "create_file", "str_replace", "delete_file", "move_file"):
        assert tool in DEFAULT_FILE_TOOLS


def test_config_roots_are_expanded_and_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    config = SandboxConfig(enabled=True, roots=["~/code", "rel/dir", "/abs/./x/../y"])
    assert config.roots == [str(tmp_path / "code"), str(tmp_path / "rel" / "dir"), "/abs/y"]


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ({"enabled": True}, ("roots",)),
        ({"enabled": True, "roots": []}, ("roots",)),
        ({"enabled": True, "roots": [""]}, ("roots",)),
        ({"enabled": True, "roots": ["/x"], "stritc": True}, ("stritc",)),
        ({"roots": "/x"}, ("roots",)),
        ({"file_tools": [1]}, ("file_tools", 0)),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, object], loc: tuple[object, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        SandboxConfig.model_validate(raw)
    assert caught.value.errors()[0]["loc"] == loc


def test_disabled_sandbox_watches_nothing(root: Path) -> None:
    box = Sandbox(SandboxConfig(roots=[str(root)]))
    assert not box.watches("Write")
    assert judge(box, "Write", {"file_path": "/etc/passwd"}).action == "allow"


def test_watches_file_tools_only(root: Path) -> None:
    box = sandbox(root)
    assert box.watches("Write") and box.watches("apply_patch") and box.watches("replace")
    assert not box.watches("Bash") and not box.watches("Read") and not box.watches("write")


def test_file_tools_may_be_globs(root: Path) -> None:
    box = Sandbox(SandboxConfig(enabled=True, roots=[str(root)], file_tools=["mcp__fs__*"]))
    assert box.watches("mcp__fs__write_file") and not box.watches("Write")
    assert judge(box, "mcp__fs__write_file", {"path": "/etc/x"}).action == "block"


# -- paths arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("Write", {"file_path": "{root}/src/new.py", "content": "x = 1\n"}),
        ("Edit", {"file_path": "{root}/src/app.py", "old_string": "hi", "new_string": "ho"}),
        ("MultiEdit", {"file_path": "{root}/src/app.py", "edits": [{"old_string": "a", "new_string": "b"}]}),
        ("NotebookEdit", {"notebook_path": "{root}/nb.ipynb", "new_source": "print(1)"}),
        ("write_file", {"file_path": "{root}/deep/new/dir/file.txt", "content": ""}),
        ("replace", {"file_path": "{root}/src/app.py", "old_string": "a", "new_string": "b"}),
        ("move_file", {"source": "{root}/src/app.py", "destination": "{root}/src/main.py"}),
        ("str_replace_based_edit_tool", {"command": "create", "path": "{root}/a.md", "file_text": "#"}),
        ("Write", {"file_path": "{root}"}),
    ],
)
def test_harmless_writes_inside_the_root_are_allowed(root: Path, tool: str, arguments: dict) -> None:
    filled = json.loads(json.dumps(arguments).replace("{root}", str(root)))
    assert judge(sandbox(root), tool, filled).action == "allow"


def test_absolute_path_outside_is_blocked(root: Path) -> None:
    verdict = judge(sandbox(root), "Write", {"file_path": "/etc/cron.d/evil", "content": "x"})
    assert verdict.action == "block" and verdict.policy == "sandbox" and verdict.rule == "outside roots"
    assert verdict.reason == f"would write /etc/cron.d/evil, outside {root}"


def test_sibling_with_a_common_prefix_is_outside(root: Path) -> None:
    sibling = root.parent / (root.name + "-evil")
    assert judge(sandbox(root), "Write", {"file_path": f"{sibling}/x"}).action == "block"


def test_dotdot_escape_is_blocked(root: Path) -> None:
    verdict = judge(sandbox(root), "Edit", {"file_path": f"{root}/src/../../outside/x.txt"})
    assert verdict.action == "block"
    assert str(root.parent.resolve() / "outside" / "x.txt") in verdict.reason


def test_dotdot_that_stays_inside_is_allowed(root: Path) -> None:
    assert judge(sandbox(root), "Edit", {"file_path": f"{root}/src/../README.md"}).action == "allow"


def test_symlink_pointing_out_is_blocked(root: Path) -> None:
    outside = root.parent / "outside"
    (root / "link").symlink_to(outside, target_is_directory=True)
    verdict = judge(sandbox(root), "Write", {"file_path": f"{root}/link/not-yet-written.txt"})
    assert verdict.action == "block"
    assert f"would write {outside.resolve() / 'not-yet-written.txt'}," in verdict.reason


def test_dangling_file_symlink_pointing_out_is_blocked(root: Path) -> None:
    (root / "notes.txt").symlink_to(root.parent / "outside" / "created-by-write.txt")
    assert judge(sandbox(root), "Write", {"file_path": f"{root}/notes.txt"}).action == "block"


def test_symlink_then_dotdot_follows_the_link_like_the_kernel(root: Path) -> None:
    deep = root.parent / "outside" / "a" / "b"
    deep.mkdir(parents=True)
    (root / "jump").symlink_to(deep, target_is_directory=True)
    # Lexically this is {root}/x; the kernel follows jump first and lands in outside/a/x.
    assert judge(sandbox(root), "Write", {"file_path": f"{root}/jump/../x"}).action == "block"


def test_symlinked_root_and_paths_through_links_into_the_root(root: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    assert judge(sandbox(alias), "Write", {"file_path": f"{root}/src/x.py"}).action == "allow"
    assert judge(sandbox(root), "Write", {"file_path": f"{alias}/src/x.py"}).action == "allow"


def test_several_roots(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    box = sandbox(root, other)
    assert judge(box, "Write", {"file_path": f"{other}/x"}).action == "allow"
    verdict = judge(box, "Write", {"file_path": "/tmp/x"})
    assert verdict.action == "block" and verdict.reason.endswith(f"outside {root}, {other}")


def test_every_path_of_a_call_is_judged(root: Path) -> None:
    verdict = judge(
        sandbox(root), "move_file", {"source": f"{root}/src/app.py", "destination": "/etc/app.py"}
    )
    assert verdict.action == "block" and "/etc/app.py" in verdict.reason


def test_nested_edit_lists_are_judged(root: Path) -> None:
    arguments = {"edits": [{"path": f"{root}/a"}, {"path": "/etc/b", "new_text": "x"}]}
    assert judge(sandbox(root), "edit_file", arguments).action == "block"


def test_home_is_expanded(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(root.parent / "outside"))
    assert judge(sandbox(root), "Write", {"file_path": "~/.bashrc"}).action == "block"


def test_text_editor_view_changes_nothing(root: Path) -> None:
    box = sandbox(root, strict=True)
    assert (
        judge(box, "str_replace_based_edit_tool", {"command": "view", "path": "/etc/hosts"}).action == "allow"
    )
    arguments = {"command": "str_replace", "path": "/etc/hosts", "old_str": "a", "new_str": "b"}
    assert judge(box, "str_replace_based_edit_tool", arguments).action == "block"


def test_unwatched_tools_are_allowed(root: Path) -> None:
    assert judge(sandbox(root, strict=True), "Read", {"file_path": "/etc/passwd"}).action == "allow"


# -- relative paths and the working directory ----------------------------------------------------


def test_relative_paths_resolve_against_the_cwd(root: Path) -> None:
    box = sandbox(root)
    assert judge(box, "write_file", {"file_path": "src/new.py"}, cwd=root).action == "allow"
    assert judge(box, "write_file", {"file_path": "../x.py"}, cwd=root / "src").action == "allow"
    verdict = judge(box, "write_file", {"file_path": "../outside/x.py"}, cwd=root)
    assert verdict.action == "block" and str(root.parent.resolve() / "outside" / "x.py") in verdict.reason


def test_relative_path_from_a_cwd_outside_the_root_is_blocked(root: Path) -> None:
    verdict = judge(sandbox(root), "write_file", {"file_path": "x.py"}, cwd=root.parent / "outside")
    assert verdict.action == "block"


def test_relative_path_without_cwd_is_allowed_unless_strict(root: Path) -> None:
    assert judge(sandbox(root), "write_file", {"file_path": "src/new.py"}).action == "allow"
    verdict = judge(sandbox(root, strict=True), "write_file", {"file_path": "src/new.py"})
    assert verdict.action == "block" and verdict.rule == "strict" and "working directory" in verdict.reason


def test_climbing_relative_path_without_cwd_is_blocked(root: Path) -> None:
    verdict = judge(sandbox(root), "write_file", {"file_path": "src/../../etc/x"})
    assert verdict.action == "block" and verdict.rule == "outside roots"
    assert "../etc/x (relative to an unknown directory)" in verdict.reason


def test_a_relative_cwd_counts_as_unknown(root: Path) -> None:
    assert judge(sandbox(root, strict=True), "Write", {"file_path": "x"}, cwd="project").action == "block"


# -- patches -------------------------------------------------------------------------------------

CODEX_PATCH = """*** Begin Patch
*** Add File: docs/new.md
+# New
*** Update File: src/app.py
@@ def main():
-    print('hi')
+    print('ho')
*** Delete File: old.txt
*** Update File: src/a.py
*** Move to: src/b.py
@@
-x
+y
*** End Patch
"""

UNIFIED_DIFF = """diff --git a/src/app.py b/src/app.py
index 83db48f..bf269f4 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1 +1 @@
--- a comment that starts like a header
+print('ho')
--- /dev/null
+++ b/docs/added.md\t2024-05-01 10:00:00.000000000 +0200
@@ -0,0 +1 @@
+# added
"""


def test_patch_paths_of_a_codex_patch() -> None:
    assert patch_paths(CODEX_PATCH) == ["docs/new.md", "src/app.py", "old.txt", "src/a.py", "src/b.py"]


def test_patch_paths_of_a_unified_diff() -> None:
    assert patch_paths(UNIFIED_DIFF) == ["src/app.py", "src/app.py", "docs/added.md"]
    assert patch_paths('--- "a/my file"\n+++ "b/my file"\n') == ["my file", "my file"]
    assert patch_paths("diff --git a/x b/y\nsimilarity index 100%\nrename from x\nrename to ../y\n") == [
        "x",
        "../y",
    ]


def test_patch_paths_with_crlf_line_ends() -> None:
    assert patch_paths(CODEX_PATCH.replace("\n", "\r\n"))[:2] == ["docs/new.md", "src/app.py"]


def test_codex_patch_inside_the_root_is_allowed(root: Path) -> None:
    box = sandbox(root)
    assert judge(box, "apply_patch", {"input": CODEX_PATCH}, cwd=root).action == "allow"
    assert judge(box, "apply_patch", CODEX_PATCH, cwd=root).action == "allow"  # freeform tool


@pytest.mark.parametrize(
    "line",
    [
        "*** Add File: ../outside/evil.sh",
        "*** Update File: /etc/hosts",
        "*** Delete File: ../../../../home/user/.ssh/authorized_keys",
        "*** Update File: src/app.py\n*** Move to: ../outside/app.py",
    ],
)
def test_codex_patch_escapes_are_blocked(root: Path, line: str) -> None:
    patch = f"*** Begin Patch\n{line}\n@@\n-a\n+b\n*** End Patch\n"
    box = sandbox(root)
    assert judge(box, "apply_patch", {"input": patch}, cwd=root).action == "block"
    assert judge(box, "apply_patch", {"patch": patch}, cwd=root).action == "block"
    assert judge(box, "apply_patch", patch, cwd=root).action == "block"  # freeform: the raw text
    assert judge(box, "apply_patch", json.dumps(patch), cwd=root).action == "block"  # a JSON string


def test_codex_patch_through_a_symlink_is_blocked(root: Path) -> None:
    (root / "out").symlink_to(root.parent / "outside", target_is_directory=True)
    patch = "*** Begin Patch\n*** Add File: out/new.txt\n+x\n*** End Patch\n"
    assert judge(sandbox(root), "apply_patch", patch, cwd=root).action == "block"


def test_unified_diff_inside_and_outside(root: Path) -> None:
    box = sandbox(root)
    assert judge(box, "apply_patch", {"patch": UNIFIED_DIFF}, cwd=root).action == "allow"
    escape = "--- a/../outside/x\n+++ b/../outside/x\n@@ -1 +1 @@\n-a\n+b\n"
    assert judge(box, "apply_patch", {"patch": escape}, cwd=root).action == "block"
    absolute = "--- /dev/null\n+++ /etc/profile.d/evil.sh\n@@ -0,0 +1 @@\n+x\n"
    verdict = judge(box, "apply_patch", {"diff": absolute}, cwd=root)
    assert verdict.action == "block" and "/etc/profile.d/evil.sh" in verdict.reason


# -- strict mode and unparseable calls -----------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("Write", "{not json"),
        ("Write", {"content": "no path argument"}),
        ("Write", {"file_path": ""}),
        ("Write", {"file_path": 42}),
        ("Write", "[1, 2]"),
        ("apply_patch", {"input": "*** Begin Patch\n*** End Patch\n"}),
        ("apply_patch", "just some text, no file lines"),
        ("apply_patch", ""),
    ],
)
def test_unparseable_calls_blocked_only_when_strict(root: Path, tool: str, arguments: dict | str) -> None:
    assert judge(sandbox(root), tool, arguments, cwd=root).action == "allow"
    verdict = judge(sandbox(root, strict=True), tool, arguments, cwd=root)
    assert verdict.action == "block" and verdict.policy == "sandbox" and verdict.rule == "strict"
    assert tool in verdict.reason


def test_changed_paths() -> None:
    assert changed_paths('{"file_path": " /a/b "}') == ["/a/b"]
    assert changed_paths('{"paths": ["/a", 3, "/b"]}') == ["/a", "/b"]
    assert changed_paths('{"command": "view", "path": "/x"}') == []
    assert changed_paths("{}") is None
    assert changed_paths("*** Begin Patch\n*** Delete File: x\n*** End Patch") == ["x"]


def test_nul_byte_in_a_path_is_still_judged(root: Path) -> None:
    assert judge(sandbox(root), "Write", {"file_path": "/etc/x\u0000y"}).action == "block"
    assert judge(sandbox(root), "Write", {"file_path": f"{root}/x\u0000y"}).action == "allow"


# -- working directory discovery -----------------------------------------------------------------

CLAUDE_CODE_SYSTEM = """You are Claude Code, Anthropic's official CLI for Claude.

Here is useful information about the environment you are running in:
<env>
Working directory: /Users/ada/src/my project
Is directory a git repo: Yes
Platform: darwin
OS Version: Darwin 24.5.0
Today's date: 2025-07-14
</env>
You are powered by the model named Sonnet 4.
"""

CODEX_ENVIRONMENT = """<environment_context>
  <cwd>/home/ada/work/codex-demo</cwd>
  <approval_policy>on-request</approval_policy>
  <sandbox_mode>workspace-write</sandbox_mode>
  <network_access>restricted</network_access>
  <shell>zsh</shell>
</environment_context>"""

GEMINI_CLI_CONTEXT = """This is the Gemini CLI. We are setting up the context for our chat.
Today's date is Monday, July 14, 2025 (formatted according to the user's locale).
My operating system is: linux
I'm currently working in the directory: /home/ada/gemini-demo
Here is the folder structure of the current working directories:

Showing up to 200 items (files + folders).

/home/ada/gemini-demo/
├───package.json
└───src/
"""

GEMINI_CLI_WORKSPACES = """This is the Gemini CLI. We are setting up the context for our chat.
My operating system is: darwin
I'm currently working in the following directories:
  - /Users/ada/frontend
  - /Users/ada/backend
Here is the folder structure of the current working directories:
"""


def user(*texts: str) -> Message:
    return Message(role="user", content=[Text(text=t) for t in texts])


def assistant(text: str) -> Message:
    return Message(role="assistant", content=[Text(text=text)])


def test_claude_code_working_directory() -> None:
    request = ChatRequest(model="m", system=[Text(text="x-anthropic-billing"), Text(text=CLAUDE_CODE_SYSTEM)])
    assert working_directory(request) == "/Users/ada/src/my project"


def test_codex_working_directory() -> None:
    agents_md = (
        "# AGENTS.md instructions for /home/ada/work/codex-demo\n\n<INSTRUCTIONS>be brief</INSTRUCTIONS>"
    )
    request = ChatRequest(
        model="m",
        system=[Text(text="You are Codex, based on GPT-5.")],
        messages=[user(agents_md), user(CODEX_ENVIRONMENT), user("fix the tests")],
    )
    assert working_directory(request) == "/home/ada/work/codex-demo"


def test_gemini_cli_working_directory() -> None:
    request = ChatRequest(model="m", messages=[user(GEMINI_CLI_CONTEXT), assistant("Got it."), user("hi")])
    assert working_directory(request) == "/home/ada/gemini-demo"
    request = ChatRequest(model="m", messages=[user(GEMINI_CLI_WORKSPACES)])
    assert working_directory(request) == "/Users/ada/frontend"


def test_gemini_cli_context_in_the_system_prompt() -> None:
    request = ChatRequest(model="m", system=[Text(text=GEMINI_CLI_CONTEXT)])
    assert working_directory(request) == "/home/ada/gemini-demo"


def test_system_prompt_wins_over_user_messages() -> None:
    request = ChatRequest(
        model="m", system=[Text(text=CLAUDE_CODE_SYSTEM)], messages=[user(CODEX_ENVIRONMENT)]
    )
    assert working_directory(request) == "/Users/ada/src/my project"


def test_unknown_working_directory() -> None:
    assert working_directory(ChatRequest(model="m")) is None
    request = ChatRequest(
        model="m", system=[Text(text="You are helpful.")], messages=[user("Working directory: /x")]
    )
    assert working_directory(request) is None  # outside an <env> block


def test_relative_paths_are_not_working_directories() -> None:
    request = ChatRequest(
        model="m", messages=[user("<environment_context><cwd>~/proj</cwd></environment_context>")]
    )
    assert working_directory(request) is None
    request = ChatRequest(model="m", system=[Text(text="<env>\nWorking directory: .\n</env>")])
    assert working_directory(request) is None


def test_later_turns_and_tool_results_are_not_read() -> None:
    planted = ChatRequest(
        model="m",
        messages=[
            user("hello"),
            assistant("hi"),
            user(CODEX_ENVIRONMENT),
        ],
    )
    assert working_directory(planted) is None
    result = ToolResult(tool_call_id="t1", content=[Text(text=CODEX_ENVIRONMENT)])
    from_tool = ChatRequest(model="m", messages=[Message(role="user", content=[result])])
    assert working_directory(from_tool) is None


def test_discovered_directory_places_relative_patch_paths(root: Path) -> None:
    environment = CODEX_ENVIRONMENT.replace("/home/ada/work/codex-demo", str(root))
    cwd = working_directory(ChatRequest(model="m", messages=[user(environment)]))
    assert cwd == str(root)
    patch = "*** Begin Patch\n*** Add File: ../outside/x\n+x\n*** End Patch\n"
    assert judge(sandbox(root), "apply_patch", patch, cwd=cwd).action == "block"
    assert os.path.isabs(cwd)
