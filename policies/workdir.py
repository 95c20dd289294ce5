"""Where the agent works: the working directory a coding agent states in its own prompt.

Policies that judge file paths (``policies.sandbox``) resolve relative paths against it; without it
a relative path cannot be placed. It protects against nothing by itself, but a wrong answer here
would let a relative path be judged against the wrong directory, so it is deliberately narrow:
only the phrasings the agents really use, only in the system prompt and in the user messages that
open the conversation (before the first assistant turn), only absolute paths, the first one wins.

Each agent states it its own way:

- Claude Code (and opencode): an ``<env>`` block in the system prompt with ``Working directory: /p``;
- Codex: an ``<environment_context>`` user message with ``<cwd>/p</cwd>``;
- Gemini CLI: its first user message, ``I'm currently working in the directory: /p`` (or, with
  several workspace directories, a ``- /p`` list after ``I'm currently working in the following
  directories:``).

The text is the agent's, so the path is trusted only as far as the agent is: the agent decides
where its tools run, and this only reads what it says about it.
"""

from __future__ import annotations

import os
import re

from translators.canonical import ChatRequest, Text

# (agent, pattern): the ``path`` group is the working directory. Tried on every text in order.
WORKDIR_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "claude-code",
        re.compile(
            r"<env>[^<]*?^[ \t]*(?:Primary )?[Ww]orking directory:[ \t]*(?P<path>[^\n]+?)[ \t]*$",
            re.MULTILINE,
        ),
    ),
    (
        # Claude Code 2.1.19x: "# Environment … - Primary working directory: /path", no <env> block.
        "claude-code",
        re.compile(
            r"^# Environment\n(?:[^\n]*\n){0,4}?[ \t]*-?[ \t]*Primary working directory:[ \t]*"
            r"(?P<path>[^\n]+?)[ \t]*$",
            re.MULTILINE,
        ),
    ),
    (
        "codex",
        re.compile(r"<environment_context>.*?<cwd>\s*(?P<path>[^<\n]+?)\s*</cwd>", re.DOTALL),
    ),
    (
        "gemini-cli",
        re.compile(r"I['’]m currently working in the directory:[ \t]*(?P<path>[^\n]+?)[ \t]*$", re.MULTILINE),
    ),
    (
        "gemini-cli",
        re.compile(
            r"I['’]m currently working in the following directories:[ \t]*\n"
            r"\s*-[ \t]*(?P<path>[^\n]+?)[ \t]*$",
            re.MULTILINE,
        ),
    ),
)


def working_directory(request: ChatRequest) -> str | None:
    """The agent's working directory as its prompt states it, or None when no known phrasing
    names an absolute path."""
    for text in _opening_texts(request):
        for _agent, pattern in WORKDIR_PATTERNS:
            for match in pattern.finditer(text):
                path = match.group("path").strip().strip("`'\"")
                if os.path.isabs(path):
                    return path
    return None


def _opening_texts(request: ChatRequest) -> list[str]:
    """System texts, then the text parts of the user messages before the first assistant turn."""
    texts = [part.text for part in request.system]
    for message in request.messages:
        if message.role == "assistant":
            break
        texts.extend(part.text for part in message.content if isinstance(part, Text))
    return texts
