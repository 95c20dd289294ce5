"""Directory sandboxing: file-writing tool calls may only change files under configured roots.

Protects against a model writing, editing, moving or deleting files outside the directories the
user allowed, whether by an absolute path elsewhere, by ``..`` climbing out of a root, or through a
symlink inside a root that points outside it. Every path a call would change is extracted — from
path arguments (``PATH_ARGUMENTS``), from Codex ``apply_patch`` bodies and from unified diffs — and
resolved the way the kernel would: relative to the agent's working directory, ``~`` expanded,
symlinks followed on the longest existing prefix (so a file not yet written under a symlinked
directory lands where the symlink points) and ``..`` applied after them.

Rules, in order:

- a call that names a path outside every root is blocked (the first such path is reported);
- a call whose paths cannot be found (invalid JSON that is no patch either, no path argument,
  a patch without file lines) is blocked when ``strict``, allowed otherwise;
- a relative path when the working directory is unknown (``Context.cwd`` is None) cannot be placed:
  if it climbs (``..`` still leads after normalisation) it is blocked, since climbing out is what an
  escape looks like and nothing vouches for where it lands; otherwise it stays below the agent's own
  directory and is treated like an unparseable call (blocked when ``strict``, allowed otherwise);
- calls of the text editor's read-only commands (``READ_ONLY_COMMANDS``) change nothing: allowed.

Assumes the proxy sees the agent's filesystem (same machine): symlinks are resolved on the proxy's
filesystem, and where the paths do not exist there, resolution is plain normalisation. Roots are
resolved once, when the ``Sandbox`` is built. Shell commands are not parsed here: a ``shell`` or
``Bash`` call that writes files is the business of the command policies.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from policies.base import ALLOW, Call, Context, Verdict

# Tools that write files, by client: Claude Code, Codex, Gemini CLI, then common names (Anthropic's
# text editor tool, MCP filesystem servers, other agents). Entries may be fnmatch globs.
DEFAULT_FILE_TOOLS: tuple[str, ...] = (
    "Write", "Edit", "MultiEdit", "NotebookEdit",  # Claude Code
    "apply_patch",  # Codex (function tool with "input", or freeform: the arguments are the patch)
    "write_file", "replace",  # Gemini CLI
    "edit_file", "create_file", "str_replace", "delete_file", "move_file",
    "str_replace_based_edit_tool", "str_replace_editor",  # Anthropic text editor
)  # fmt: skip

# Argument names whose string value (or list of strings) is a path the call changes.
PATH_ARGUMENTS: tuple[str, ...] = (
    "file_path", "path", "notebook_path", "target_file", "absolute_path", "filepath", "filename", "file",
    "source", "destination", "new_path", "old_path", "source_path", "destination_path", "target_path",
    "src", "dst", "dest", "from", "to", "target", "output_path", "paths", "file_paths", "files",
)  # fmt: skip

# Argument names holding a list of objects that carry their own path arguments (multi-file edits).
NESTED_ARGUMENTS: tuple[str, ...] = ("edits", "changes", "files", "operations")

# Argument names whose value is a patch body (Codex apply_patch format or a unified diff).
PATCH_ARGUMENTS: tuple[str, ...] = ("input", "patch", "diff")

# The text editor tool's commands that change nothing (argument ``command``).
READ_ONLY_COMMANDS: frozenset[str] = frozenset({"view"})

# Lines of a Codex apply_patch body (and of git's rename/copy headers) that name a changed file.
PATCH_FILE_LINES: tuple[re.Pattern[str], ...] = (
    re.compile(r"^\*\*\* (?:Add File|Update File|Delete File|Move to): (?P<path>.+?)\s*$", re.MULTILINE),
    re.compile(r"^(?:rename|copy) (?:from|to) (?P<path>.+?)\s*$", re.MULTILINE),
)

# Unified diff headers: a ``---`` line directly followed by a ``+++`` line; git's a/ and b/ prefixes.
DIFF_HEADERS = re.compile(r"^--- (?P<old>[^\n]+)\n\+\+\+ (?P<new>[^\n]+)$", re.MULTILINE)
DIFF_PREFIXES = {"old": "a/", "new": "b/"}
DIFF_NO_FILE = "/dev/null"

OUTSIDE = "outside roots"
STRICT = "strict"


class SandboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    # Directories writes may land in: ``~`` expanded, made absolute (symlinks resolved by Sandbox).
    roots: list[str] = Field(default_factory=list, validate_default=True)
    strict: bool = False  # block calls whose paths cannot be found or placed
    file_tools: list[str] = Field(default_factory=lambda: list(DEFAULT_FILE_TOOLS))

    @field_validator("roots")
    @classmethod
    def _absolute_roots(cls, roots: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("enabled") and not roots:
            raise ValueError("at least one root is required when the sandbox is enabled")
        if any(not root.strip() for root in roots):
            raise ValueError("a root must not be empty")
        return [os.path.abspath(os.path.expanduser(root)) for root in roots]


class Sandbox:
    """The directory sandbox as a reactor (see the module docstring for its rules)."""

    name = "sandbox"

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.roots = tuple(os.path.realpath(root) for root in config.roots)
        self._shown_roots = ", ".join(config.roots)

    def watches(self, tool: str) -> bool:
        return self.config.enabled and any(fnmatchcase(tool, glob) for glob in self.config.file_tools)

    def judge(self, call: Call, context: Context) -> Verdict:
        if not self.watches(call.name):
            return ALLOW
        paths = changed_paths(call.arguments)
        if paths is None:
            return self._unknown(f"could not tell which files {call.name} would change")
        cwd = context.cwd if context.cwd and os.path.isabs(context.cwd) else None
        unplaced = False
        for path in paths:
            resolved = resolve(path, cwd)
            if resolved is None:
                if _climbs(path):
                    return self._outside(os.path.normpath(path) + " (relative to an unknown directory)")
                unplaced = True
            elif not self.contains(resolved):
                return self._outside(resolved)
        if unplaced:
            return self._unknown(f"{call.name} names a relative path and the working directory is unknown")
        return ALLOW

    def contains(self, resolved: str) -> bool:
        """Is this resolved (absolute, real) path one of the roots or below one?"""
        return any(os.path.commonpath((resolved, root)) == root for root in self.roots)

    def _outside(self, shown: str) -> Verdict:
        reason = f"would write {shown}, outside {self._shown_roots}"
        return Verdict("block", policy=self.name, rule=OUTSIDE, reason=reason)

    def _unknown(self, reason: str) -> Verdict:
        if not self.config.strict:
            return ALLOW
        return Verdict("block", policy=self.name, rule=STRICT, reason=reason + " (strict sandbox)")


def resolve(path: str, cwd: str | None) -> str | None:
    """Where a write to ``path`` would land: absolute, ``~`` expanded, symlinks followed on the
    longest existing prefix, ``..`` applied after them. None for a relative path without a cwd."""
    path = os.path.expanduser(path)
    if not os.path.isabs(path):
        if cwd is None:
            return None
        path = os.path.join(cwd, path)
    try:
        return os.path.realpath(path)
    except ValueError:  # an embedded NUL: no file can have that name, judge the plain path
        return os.path.normpath(path)


def _climbs(path: str) -> bool:
    normal = os.path.normpath(path)
    return normal == os.pardir or normal.startswith(os.pardir + os.sep)


# -- finding the paths a call changes ------------------------------------------------------------


def changed_paths(arguments: str) -> list[str] | None:
    """Every path a call's arguments would change, or None when none can be found. Arguments
    that are not a JSON object are read as a patch (freeform tools send the patch text itself)."""
    try:
        value: Any = json.loads(arguments)
    except ValueError:
        value = arguments
    if isinstance(value, str):
        paths = patch_paths(value)
    elif isinstance(value, dict):
        if isinstance(value.get("command"), str) and value["command"] in READ_ONLY_COMMANDS:
            return []
        paths = list(_argument_paths(value))
    else:
        paths = []
    return paths or None


def _argument_paths(arguments: dict[str, Any], nested: bool = True) -> Iterator[str]:
    for name in PATH_ARGUMENTS:
        value = arguments.get(name)
        if isinstance(value, str) and value.strip():
            yield value.strip()
        elif isinstance(value, list):
            yield from (item.strip() for item in value if isinstance(item, str) and item.strip())
    for name in PATCH_ARGUMENTS:
        if isinstance(arguments.get(name), str):
            yield from patch_paths(arguments[name])
    for name in NESTED_ARGUMENTS if nested else ():
        if isinstance(arguments.get(name), list):
            for item in arguments[name]:
                if isinstance(item, dict):
                    yield from _argument_paths(item, nested=False)


def patch_paths(patch: str) -> list[str]:
    """The files a Codex apply_patch body or a unified diff names (``/dev/null`` left out)."""
    paths = [m.group("path") for pattern in PATCH_FILE_LINES for m in pattern.finditer(patch)]
    paths = [_unquote(path) for path in paths]
    for match in DIFF_HEADERS.finditer(patch):
        for side, prefix in DIFF_PREFIXES.items():
            path = _unquote(_diff_header_path(match.group(side)))
            if path != DIFF_NO_FILE:
                paths.append(path.removeprefix(prefix))
    return [path for path in paths if path]


def _diff_header_path(header: str) -> str:
    """A diff header's path without the tab-separated timestamp some diff tools append."""
    return header.split("\t", 1)[0].rstrip()


def _unquote(path: str) -> str:
    """git quotes paths with unusual characters: ``"a/my file"`` (escapes are kept as they are)."""
    if len(path) >= 2 and path[0] == path[-1] == '"':
        return path[1:-1]
    return path.strip()
