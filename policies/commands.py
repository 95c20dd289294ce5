"""In-chat commands (``!/model(backend:model)``, ``!/set(temperature=0.2)``, …): the user steers
the proxy from inside the conversation, without touching the client.

It protects the provider and the conversation from the proxy's own vocabulary: command text never
reaches a model (it is removed from the last user message, and again from the history the client
re-sends in later turns), a message that is only commands is answered by the proxy itself, and a
command only ever acts when it is in the *last* user message, so re-sent history never re-runs it.
README "Commands".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backends.sessions import Session
from translators.canonical import ChatRequest, Message, Part, Text

MARK = "[llm-proxy]"  # every answer of the proxy's own begins with it
# How agents begin the blocks they add to the user's message (Claude Code: its reminders); a
# message of commands and such blocks is still a command-only message.
CONTEXT_BLOCKS = ("<system-reminder>",)

# The commands, what their argument is and what they do (the help text and error answers list them).
COMMANDS: dict[str, str] = {
    "model": "!/model(backend:model) — use this model for the rest of the session",
    "oneoff": "!/oneoff(backend:model) — use this model for the next request only",
    "set": "!/set(key=value, …) — set session parameters",
    "unset": "!/unset(key, …) — back to what the client asks for",
    "status": "!/status — the session id, its model and settings",
    "help": "!/help — this list",
}
ON_OFF = {"on": True, "true": True, "off": False, "false": False}


def _on_off(value: str) -> bool:
    if value.lower() not in ON_OFF:
        raise ValueError("on or off")
    return ON_OFF[value.lower()]


def _effort(value: str) -> str:
    if not re.fullmatch(r"[a-z]+", value):
        raise ValueError("a word such as low, medium or high")
    return value


# Session settings and how a value is read (session.settings keeps them under these names).
SETTINGS: dict[str, Callable[[str], Any]] = {
    "model": str,  # checked against the configured backends
    "temperature": float,
    "top_p": float,
    "max_tokens": int,
    "reasoning-effort": _effort,
    "loop-detection": _on_off,
}
# Settings that become model-selector parameters (backends/routing.py PARAMETERS).
SELECTOR_PARAMETERS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_tokens",
    "reasoning-effort": "reasoning_effort",
}


class CommandError(ValueError):
    pass


@dataclass
class Command:
    name: str
    argument: str | None  # the text between the parentheses, None without them


class Commands:
    """Finds, removes and runs the commands of one prefix. ``valid_model`` says whether a
    ``backend:model`` names a configured backend."""

    def __init__(self, prefix: str, valid_model: Callable[[str], bool]) -> None:
        self.prefix, self.valid_model = prefix, valid_model
        self.pattern = re.compile(re.escape(prefix) + r"([A-Za-z][\w-]*)(?:\(([^()]*)\))?")

    def find(self, text: str) -> list[Command]:
        return [Command(m[1].lower(), m[2]) for m in self.pattern.finditer(text)]

    def strip(self, text: str) -> str:
        return self.pattern.sub("", text).strip()

    def run(self, commands: list[Command], session: Session) -> list[str]:
        """Check every command, then apply them all; the answer's lines. Raises CommandError
        (nothing applied) for an unknown command or a bad argument."""
        actions = [self._check(command) for command in commands]
        return [line for action in actions if (line := action(session))]

    def help(self) -> str:
        return "commands:\n" + "\n".join(f"  {text}" for text in COMMANDS.values()) + "\n" + self.keys()

    @staticmethod
    def keys() -> str:
        return "settings: " + ", ".join(SETTINGS)

    def _check(self, command: Command) -> Callable[[Session], str]:
        checks = {
            "model": self._model,
            "oneoff": self._oneoff,
            "set": self._set,
            "unset": self._unset,
            "status": lambda _: status,
            "help": lambda _: lambda s: self.help(),
        }
        check = checks.get(command.name)
        if check is None:
            raise CommandError(f"unknown command {self.prefix}{command.name}")
        return check(command.argument)

    def _model(self, argument: str | None) -> Callable[[Session], str]:
        model = self._selector(argument, "model")
        return lambda s: _assign(s, "model", model) or f"model for this session: {model}"

    def _oneoff(self, argument: str | None) -> Callable[[Session], str]:
        model = self._selector(argument, "oneoff")
        return lambda s: setattr(s, "oneoff", model) or f"model for the next request: {model}"

    def _selector(self, argument: str | None, name: str) -> str:
        model = (argument or "").strip()
        if not self.valid_model(model):
            raise CommandError(f"{self.prefix}{name}({model}): not a configured backend:model")
        return model

    def _set(self, argument: str | None) -> Callable[[Session], str]:
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in (argument or "").split(","))):
            key, sep, raw = (piece.strip() for piece in item.partition("="))
            if key not in SETTINGS or not sep:
                raise CommandError(f"{self.prefix}set({item}): expected key=value with a known key")
            values[key] = self._selector(raw, "set") if key == "model" else _read(key, raw)
        if not values:
            raise CommandError(f"{self.prefix}set(): expected key=value, …")

        def apply(session: Session) -> str:
            for key, value in values.items():
                _assign(session, key, value)
            return "set " + ", ".join(f"{k}={_show(v)}" for k, v in values.items())

        return apply

    def _unset(self, argument: str | None) -> Callable[[Session], str]:
        keys = [key.strip() for key in (argument or "").split(",") if key.strip()]
        if not keys or any(key not in SETTINGS for key in keys):
            raise CommandError(f"{self.prefix}unset({argument or ''}): expected known keys")

        def apply(session: Session) -> str:
            for key in keys:
                _assign(session, key, None)
            return "unset " + ", ".join(keys)

        return apply

    def strip_request(self, request: ChatRequest) -> tuple[ChatRequest, list[Command], bool]:
        """The request without command text, the last user message's commands, and whether that
        message was nothing but commands (and the agent's context blocks). A history message that
        held only commands goes, with the proxy's answer to it; its context blocks move on to the
        next user message, so the conversation keeps its turns in order."""
        messages: list[Message] = []
        carry: list[Part] = []  # context blocks of a dropped command-only message
        last, found, only, skip_answer = len(request.messages) - 1, [], False, False
        for i, message in enumerate(request.messages):
            if skip_answer and message.role == "assistant" and _is_proxy_answer(message):
                skip_answer = False
                continue  # the proxy's own answer to a command-only message
            skip_answer = False
            if message.role != "user":
                messages.append(message)
                continue
            content, commands = self._strip_content(message.content)
            found = commands if i == last else found
            if commands and all(_is_context(p) for p in content):
                if i == last:
                    only = True
                    messages.append(message)
                else:
                    carry, skip_answer = carry + content, True
                continue
            if carry or commands:
                message = message.model_copy(update={"content": carry + content})
                carry = []
            messages.append(message)
        changed = len(messages) != len(request.messages) or any(
            a is not b for a, b in zip(messages, request.messages, strict=False)
        )
        return (request.model_copy(update={"messages": messages}) if changed else request), found, only

    def _strip_content(self, content: list[Part]) -> tuple[list[Part], list[Command]]:
        """The parts without command text (a part left empty goes) and the commands found."""
        commands = [c for p in content if isinstance(p, Text) for c in self.find(p.text)]
        if not commands:
            return content, []
        stripped = [
            p.model_copy(update={"text": self.strip(p.text)})
            if isinstance(p, Text) and self.pattern.search(p.text)
            else p
            for p in content
        ]
        return [p for p in stripped if not (isinstance(p, Text) and not p.text)], commands


def status(session: Session) -> str:
    settings = ", ".join(f"{k}={_show(v)}" for k, v in sorted(session.settings.items())) or "none"
    return (
        f"session {session.id}; model: {session.model or 'as the client asks'}"
        f"{f'; next request: {session.oneoff}' if session.oneoff else ''}; settings: {settings}; "
        f"turns: {session.turns}"
    )


def selector(session: Session, asked: str) -> str:
    """The model selector this session's request goes to: a one-off model, else the session's,
    else what the client asked, with the session's parameters as selector parameters."""
    model = session.oneoff or session.model or asked
    base, _, query = model.partition("?")
    params = [query] if query else []
    params += [
        f"{SELECTOR_PARAMETERS[k]}={v}" for k, v in session.settings.items() if k in SELECTOR_PARAMETERS
    ]
    return base + ("?" + "&".join(params) if params else "")


def _read(key: str, raw: str) -> Any:
    try:
        return SETTINGS[key](raw)
    except ValueError as e:
        detail = str(e) if key in ("loop-detection", "reasoning-effort") else f"a {SETTINGS[key].__name__}"
        raise CommandError(f"{key}={raw}: expected {detail}") from None


def _assign(session: Session, key: str, value: Any) -> None:
    """``model`` lives on the session itself (routing reads it); the others in ``settings``."""
    if key == "model":
        session.model = value
    elif value is None:
        session.settings.pop(key, None)
    else:
        session.settings[key] = value


def _show(value: Any) -> str:
    return {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else str(value)


def _is_context(part: Part) -> bool:
    """A block the agent adds to what the user typed (not the user's words)."""
    return isinstance(part, Text) and part.text.lstrip().startswith(CONTEXT_BLOCKS)


def _is_proxy_answer(message: Message) -> bool:
    texts = [p.text for p in message.content if isinstance(p, Text)]
    return bool(texts) and texts[0].lstrip().startswith(MARK)
