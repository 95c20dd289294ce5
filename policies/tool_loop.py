"""The tool-loop guard: stops an agent calling the same tool with the same result over and over
(README "Loop protection").

An agent stuck in a tool loop never repeats text, so loop detection cannot see it: each turn is
one call, the client runs it, sends the result back, and the model calls it again. The requests
carry the evidence: since the last real user message (one with text, not only tool results),
each tool call with its result. A call is fingerprinted by its name and its arguments normalised
(parsed JSON, keys sorted; the raw text when it is not JSON) together with its result's text.

- When one fingerprint has come back ``max_repeats`` times, the request gets a short steering note
  (``STEER``) as a private system instruction, and the session remembers how often it had come.
- The answer to that steered request is watched (``ToolLoopStop``, an event stage): if the model
  calls the same thing again (same name, same normalised arguments), that call never reaches the
  client. The answer ends there with ``[llm-proxy] stopped a tool loop: …`` and a normal stop
  reason, so the agent ends its turn without running the call once more, and the user sees why.
  To judge a call before the client has it, the stage holds the answer's tool calls (text passes at
  once) from the first call's start to the stop, up to ``HOLD`` characters of arguments; over that
  it lets them pass.
- Should a request still show the call with the same result once more after a steer (the stop
  stage let an oversized answer pass), the proxy answers that request itself in the same way, and
  no provider is called.

A new user message starts the count from zero (the window begins after it). The memory is the
session's (``Session.state["tool_loop"]``); a request without a session is never judged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from policies.gate import Decision
from policies.session_config import ToolLoopConfig
from policies.tool_pairs import Pair, normalised
from translators.canonical import (
    ChatRequest,
    End,
    Event,
    Message,
    Stop,
    StreamError,
    Text,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
)

STEER = (
    "[llm-proxy] You have called {tool} with the same arguments {count} times and got the same "
    "result each time. Repeating it will not change the result: change your approach, or stop and "
    "ask the user."
)
STOPPED = (
    "[llm-proxy] stopped a tool loop: {tool} was called {count} times with the same arguments "
    "({arguments}) and returned the same result each time."
)
SHOWN = 80  # characters of the arguments quoted to the user
HOLD = 1024 * 1024  # characters of tool-call arguments the stop stage holds at most

Action = Literal["steer", "stop"]  # steer: add the note and go on; stop: the proxy answers itself


@dataclass(frozen=True)
class Repeat:
    tool: str
    arguments: str  # normalised
    count: int
    fingerprint: str


def since_last_user_text(messages: list[Message]) -> list[Message]:
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message.role == "user" and any(isinstance(p, Text) and p.text.strip() for p in message.content):
            return messages[i + 1 :]
    return messages


def pairs_of(request: ChatRequest) -> list[Pair]:
    """Each tool call with its result since the last user message, from a canonical request."""
    calls: dict[str, tuple[str, str]] = {}
    pairs: list[Pair] = []
    for message in since_last_user_text(request.messages):
        for part in message.content:
            if isinstance(part, ToolCall):
                calls[part.id] = (part.name, normalised(part.arguments))
            elif isinstance(part, ToolResult) and part.tool_call_id in calls:
                result = "".join(p.text for p in part.content if isinstance(p, Text))
                pairs.append((*calls[part.tool_call_id], (part.is_error, result)))
    return pairs


def most_repeated(conversation: ChatRequest | list[Pair]) -> Repeat | None:
    """The call and result that came back most often since the last user message; the pairs may
    come read from the raw body already (``policies/tool_pairs.py``)."""
    pairs = pairs_of(conversation) if isinstance(conversation, ChatRequest) else conversation
    if not pairs:
        return None
    # Results are whole file contents and command outputs: only the calls made more than once
    # have their results compared (hashed), not every result of a long session.
    calls = Counter((tool, arguments) for tool, arguments, _ in pairs)
    repeated = {call for call, n in calls.items() if n > 1}
    counts = Counter(pair for pair in pairs if pair[:2] in repeated) or Counter(pairs[:1])
    (tool, arguments, result), count = counts.most_common(1)[0]
    return Repeat(tool, arguments, count, f"{tool}\0{arguments}\0{hash(result)}")


class ToolLoopGuard:
    """Judges a request of a session by the tool calls and results it carries (see the module)."""

    name = "tool_loop"

    def __init__(self, config: ToolLoopConfig) -> None:
        self.max_repeats = config.max_repeats

    def judge(
        self, conversation: ChatRequest | list[Pair], state: dict[str, Any]
    ) -> tuple[Action, Repeat] | None:
        """``state`` is the session's memory of this guard, updated here."""
        repeat = most_repeated(conversation)
        if repeat is None or repeat.count < self.max_repeats:
            state.clear()
            return None
        steered = state.get("fingerprint") == repeat.fingerprint
        if steered and repeat.count > state.get("count", 0):
            state.clear()
            return "stop", repeat
        state.update(fingerprint=repeat.fingerprint, count=repeat.count)
        return "steer", repeat

    @staticmethod
    def note(repeat: Repeat) -> str:
        return STEER.format(tool=repeat.tool, count=repeat.count)

    @staticmethod
    def answer(repeat: Repeat) -> str:
        shown = repeat.arguments if len(repeat.arguments) <= SHOWN else repeat.arguments[:SHOWN] + "…"
        return STOPPED.format(tool=repeat.tool, count=repeat.count, arguments=shown)


class ToolLoopStop:
    """An event stage (``addons.stages.EventStage``) on the answer to a steered request: a call of
    ``repeat`` again ends the answer (``ending``) with the stop text instead of the call."""

    changes_answer = True  # it holds calls back, so the client's bytes are encoded from its output
    name = "tool_loop"

    def __init__(self, repeat: Repeat, record: Callable[[Decision], None]) -> None:
        self.repeat = repeat
        self.record = record
        self.held: list[Event] = []  # everything from the first call's start on, in order
        self.arguments: dict[int, list[str]] = {}  # argument pieces of the held calls of the tool
        self.size = 0
        self.text = False  # text went out (the stop text then starts a new paragraph)
        self.passing = False  # over HOLD: everything passes unjudged
        self.ending: list[Event] | None = None

    def feed(self, events: list[Event]) -> list[Event]:
        if self.ending is not None:
            return []
        out: list[Event] = []
        for event in events:
            if self.passing or not (self.held or isinstance(event, ToolCallStart)):
                self.text |= isinstance(event, TextDelta)
                out.append(event)
                continue
            if isinstance(event, (Stop, End, StreamError)):
                out += [*self._release(), event]
                continue
            self.held.append(event)
            if isinstance(event, ToolCallStart) and event.name == self.repeat.tool:
                self.arguments[event.index] = []
            elif isinstance(event, ToolCallDelta):
                self.size += len(event.arguments)
                self.arguments.get(event.index, []).append(event.arguments)
            elif isinstance(event, ToolCallEnd) and self._again(event.index):
                self._stop()
                return out
            if self.size > HOLD:
                self.passing = True
                out += self._release()
        return out

    def close(self) -> list[Event]:
        return self._release() if self.ending is None else []

    def _again(self, index: int) -> bool:
        pieces = self.arguments.get(index)
        return pieces is not None and normalised("".join(pieces)) == self.repeat.arguments

    def _release(self) -> list[Event]:
        held, self.held, self.arguments = self.held, [], {}
        return held

    def _stop(self) -> None:
        repeat = self.repeat
        separator = "\n\n" if self.text else ""
        self.ending = [
            TextDelta(text=separator + ToolLoopGuard.answer(repeat)),
            Stop(reason="end_turn"),
            End(),
        ]
        detail = f"{repeat.count}× same call and result, called again after the steer"
        self.record(Decision(self.name, "stop", repeat.tool, detail, repeat.arguments[:SHOWN]))
