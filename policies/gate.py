"""The tool-call gate: the event stage that lets reactors decide on each tool call of an answer.

A tool call cannot be judged before its arguments are complete, and must not reach the client
before it is judged: once an agent has the call, it runs it. So the gate holds exactly the events
of the calls a reactor watches, from their start to their end (bounded: a call whose arguments
outgrow ``MAX_HELD_BYTES`` is blocked, because what cannot be checked cannot be allowed), while
text and reasoning pass at once. Then it applies the first verdict that is not ``allow``:

- allow: the held events go on, renumbered so that the client sees calls 0, 1, … without gaps;
- rewrite: the call goes on with the reactor's arguments;
- block: the call is replaced by assistant text starting with ``[llm-proxy] blocked``, and a
  ``tool_use`` stop with no call left becomes ``end_turn`` (an agent waiting for a call that never
  comes would hang or retry).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from policies.base import ALLOW, Call, Context, Reactor, Verdict
from translators.canonical import (
    End,
    Event,
    Stop,
    StreamError,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)

MAX_HELD_BYTES = 4 * 1024 * 1024
BLOCKED = "[llm-proxy] blocked"


def blocked_note(call: Call, verdict: Verdict) -> str:
    """What the model and the user read instead of a blocked call."""
    rule = f"{verdict.policy}: {verdict.rule}" if verdict.rule else verdict.policy
    reason = verdict.reason.rstrip(". ")
    return f"{BLOCKED} the {call.name} tool call ({rule}): {reason}. If this is intended, run it yourself."


@dataclass
class Held:
    start: ToolCallStart
    arguments: list[str] = field(default_factory=list)
    size: int = 0


@dataclass(frozen=True)
class Decision:
    """One verdict that was not ``allow``, as recorded for metrics, capture and diagnostics."""

    policy: str
    action: str
    tool: str
    rule: str
    reason: str


class ToolCallGate:
    """An event stage (``addons.stages.EventStage``) running ``reactors`` on each tool call."""

    changes_answer = True

    def __init__(
        self, reactors: Sequence[Reactor], context: Context, record: Callable[[Decision], None]
    ) -> None:
        self.reactors = list(reactors)
        self.context = context
        self.record = record
        self.held: dict[int, Held] = {}
        self.emitted = 0  # calls that reached the client, for renumbering
        self.index_map: dict[int, int] = {}  # provider index → client index, for passed calls
        self.blocked = 0
        self.text = False  # has text gone out before (a note then starts on a new paragraph)

    def feed(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            match event:
                case ToolCallStart() if self._watched(event.name):
                    self.held[event.index] = Held(event)
                case ToolCallDelta() if event.index in self.held:
                    self._hold(self.held[event.index], event.arguments)
                case ToolCallEnd() if event.index in self.held:
                    out += self._decide(self.held.pop(event.index))
                case Stop() | End() | StreamError():
                    for index in list(self.held):
                        out += self._decide(self.held.pop(index))
                    out.append(self._fix_stop(event) if isinstance(event, Stop) else event)
                case ToolCallStart():
                    out.append(self._renumbered_start(event))
                case ToolCallDelta() | ToolCallEnd():
                    out.append(
                        event.model_copy(update={"index": self.index_map.get(event.index, event.index)})
                    )
                case TextDelta():
                    self.text = True
                    out.append(event)
                case _:
                    out.append(event)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        for index in list(self.held):
            out += self._decide(self.held.pop(index))
        return out

    def _watched(self, tool: str) -> bool:
        return any(reactor.watches(tool) for reactor in self.reactors)

    def _hold(self, held: Held, piece: str) -> None:
        held.size += len(piece)
        if held.size <= MAX_HELD_BYTES:
            held.arguments.append(piece)

    def _verdict(self, call: Call, held: Held) -> Verdict:
        if held.size > MAX_HELD_BYTES:
            reason = f"its arguments exceed the {MAX_HELD_BYTES // 1024 // 1024} MB the proxy can check"
            return Verdict("block", policy="policies", rule="size limit", reason=reason)
        for reactor in self.reactors:
            if reactor.watches(call.name):
                verdict = reactor.judge(call, self.context)
                if verdict.action != "allow":
                    return verdict
        return ALLOW

    def _decide(self, held: Held) -> list[Event]:
        call = Call(name=held.start.name, arguments="".join(held.arguments), id=held.start.id)
        verdict = self._verdict(call, held)
        if verdict.action != "allow":
            self.record(Decision(verdict.policy, verdict.action, call.name, verdict.rule, verdict.reason))
        if verdict.action == "block":
            self.blocked += 1
            separator, self.text = ("\n\n" if self.text else ""), True
            return [TextDelta(text=separator + blocked_note(call, verdict))]
        arguments = (
            verdict.arguments
            if verdict.action == "rewrite" and verdict.arguments is not None
            else call.arguments
        )
        start = self._renumbered_start(held.start)
        return [start, ToolCallDelta(index=start.index, arguments=arguments), ToolCallEnd(index=start.index)]

    def _renumbered_start(self, start: ToolCallStart) -> ToolCallStart:
        self.index_map[start.index] = self.emitted
        self.emitted += 1
        return start.model_copy(update={"index": self.index_map[start.index]})

    def _fix_stop(self, stop: Stop) -> Stop:
        if stop.reason == "tool_use" and self.blocked and not self.emitted:
            return Stop(reason="end_turn")
        return stop
