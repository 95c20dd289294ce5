"""A second model that checks the first: what it is asked, what its answer means, when to ask.

Protects against a weaker (cheaper, faster) model drifting unnoticed through a long session: every
Nth turn a stronger model reads the conversation and the answer under review and either lets it
pass or writes a short note; the primary model is then asked again with the note as a private
system instruction. Everything here is plain logic; ``addons/verifier.py`` makes the calls.

Failing open is the rule: a verifier that is slow, down or answers nonsense never blocks or
changes the primary answer, and a circuit breaker stops asking it for a while after repeated
failures, so a dead verifier costs one timeout per ``BREAKER_COOL_DOWN``, not one per turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from translators.canonical import (
    ChatRequest,
    ChatResponse,
    Message,
    Part,
    Reasoning,
    Text,
    ToolCall,
    ToolResult,
)

# How much a turn counts towards ``every``: a new user message is a turn; a tool follow-up (the
# agent sending a tool result back) is a quarter of one, so a long tool chain is checked too,
# but less often than the user's own turns.
TURN_WEIGHT = {"user": 1.0, "tool": 0.25}
BREAKER_FAILURES = 3  # consecutive verifier failures that open the breaker
BREAKER_COOL_DOWN = 60.0  # seconds the breaker stays open
TRANSCRIPT_CHARS = 24_000  # the conversation shown to the verifier: its most recent part
PART_CHARS = 2_000  # one tool result or argument string shown to the verifier, at most
STEER_CHARS = 600  # the note passed on to the primary model, at most

INSTRUCTIONS = (
    "You review the answer another AI assistant is about to give in a conversation. "
    "Check it for factual errors, for ignoring the user's request or earlier instructions, for "
    "unsafe or destructive actions, and for going round in circles. "
    "If the answer is acceptable, reply with exactly: PASS\n"
    "Otherwise reply with: STEER: followed by one or two sentences telling the assistant what to "
    "do differently. Reply with nothing else."
)
STEERING = "[llm-proxy] A reviewer checked your previous draft of this answer and says: {note} Answer again."

Verdict = Literal["pass", "steer"]


@dataclass(frozen=True)
class Review:
    """The verifier's verdict; ``note`` is what the primary model is told (steer only)."""

    verdict: Verdict
    note: str = ""


class Schedule:
    """Which turns are checked: credit accrues per turn (``TURN_WEIGHT``) and a turn that brings
    it to ``every`` is checked and spends it. ``state`` is the session's (or a client's) own."""

    def __init__(self, every: int) -> None:
        self.every = every

    def due(self, state: dict, kind: Literal["user", "tool"]) -> bool:
        credit = state.get("credit", 0.0) + TURN_WEIGHT[kind]
        if credit + 1e-9 >= self.every:
            state["credit"] = credit - self.every
            return True
        state["credit"] = credit
        return False


def turn_kind(request: ChatRequest) -> Literal["user", "tool"]:
    """A request whose last message carries tool results continues a tool chain."""
    last = request.messages[-1] if request.messages else None
    if last is not None and last.role == "user" and any(isinstance(p, ToolResult) for p in last.content):
        return "tool"
    return "user"


class Breaker:
    """Opens after ``BREAKER_FAILURES`` consecutive failures, for ``BREAKER_COOL_DOWN`` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures = 0
        self.open_until = 0.0

    @property
    def open(self) -> bool:
        return self.clock() < self.open_until

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= BREAKER_FAILURES:
            self.open_until, self.failures = self.clock() + BREAKER_COOL_DOWN, 0


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more characters]"


def _part_text(part: Part) -> str:
    match part:
        case Text():
            return part.text
        case ToolCall():
            return f"[calls tool {part.name} with {_shorten(part.arguments, PART_CHARS)}]"
        case ToolResult():
            body = "".join(p.text for p in part.content if isinstance(p, Text))
            return f"[tool result{' (error)' if part.is_error else ''}: {_shorten(body, PART_CHARS)}]"
        case Reasoning():
            return ""  # the reviewer judges what the user gets, not the model's private thoughts
        case _:
            return f"[{part.type}]"


def _render(role: str, parts: list[Part]) -> str:
    text = "\n".join(t for t in map(_part_text, parts) if t)
    return f"{role.upper()}:\n{text}" if text else ""


def review_request(request: ChatRequest, answer: ChatResponse, model: str) -> ChatRequest:
    """What the verifier is asked: the conversation's most recent part and the answer under review,
    as one user message (the verifier need not speak the conversation's tools)."""
    turns = [t for t in (_render(m.role, m.content) for m in request.messages) if t]
    transcript, size = [], 0
    for turn in reversed(turns):  # the most recent turns, up to TRANSCRIPT_CHARS
        if size + len(turn) > TRANSCRIPT_CHARS and transcript:
            break
        transcript.append(_shorten(turn, TRANSCRIPT_CHARS))
        size += len(turn)
    system = "\n".join(t.text for t in request.system)
    prompt = (
        (f"SYSTEM PROMPT OF THE ASSISTANT:\n{_shorten(system, PART_CHARS)}\n\n" if system else "")
        + "CONVERSATION (most recent part):\n\n"
        + "\n\n".join(reversed(transcript))
        + "\n\nANSWER UNDER REVIEW:\n"
        + (_render("assistant", answer.content) or "(empty)")
    )
    return ChatRequest(
        model=model,
        system=[Text(text=INSTRUCTIONS)],
        messages=[Message(role="user", content=[Text(text=prompt)])],
        max_tokens=300,
        temperature=0,
    )


def parse_review(text: str) -> Review | None:
    """PASS, or STEER: note; anything else is no verdict (the caller fails open)."""
    head = text.strip()
    word = head.split(maxsplit=1)[0].rstrip(":.!").upper() if head else ""
    if word == "PASS":
        return Review("pass")
    if word == "STEER":
        note = head.split(maxsplit=1)[1] if " " in head or "\n" in head else ""
        note = " ".join(note.lstrip(":").split())
        return Review("steer", _shorten(note, STEER_CHARS)) if note else None
    return None


def steered_request(request: ChatRequest, review: Review) -> ChatRequest:
    """The primary request again, with the reviewer's note as a private system instruction."""
    note = Text(text=STEERING.format(note=review.note))
    return request.model_copy(update={"system": [*request.system, note]})
