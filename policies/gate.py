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
    """A call waiting to go on: a watched one until its verdict, or an unwatched one that came
    after a watched one (calls reach the client in the order the model made them)."""

    start: ToolCallStart
    watched: bool
    arguments: list[str] = field(default_factory=list)
    size: int = 0
    ended: bool = False
    verdict: Verdict | None = None


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
                case ToolCallStart() if self.held or self._watched(event.name):
                    self.held[event.index] = Held(event, watched=self._watched(event.name))
                case ToolCallDelta() if event.index in self.held:
                    self._hold(self.held[event.index], event.arguments)
                case ToolCallEnd() if event.index in self.held:
                    self._end(self.held[event.index])
                    out += self._release()
                case Stop() | End() | StreamError():
                    out += self._release(everything=True)
                    out.append(self._fix_stop(event) if isinstance(event, Stop) else event)
                case ToolCallStart():
                    out.append(self._renumbered_start(event))
                case ToolCallDelta() | ToolCallEnd():
                    out.append(self._renumbered(event))
                case TextDelta():
                    self.text = True
                    out.append(event)
                case _:
                    out.append(event)
        return out

    def close(self) -> list[Event]:
        return self._release(everything=True)

    def _end(self, held: Held) -> None:
        held.ended = True
        if held.watched:
            held.verdict = self._verdict(held)

    def _release(self, everything: bool = False) -> list[Event]:
        """The waiting calls from the first on, as far as they are decided (all at the end)."""
        out: list[Event] = []
        while self.held:
            index, held = next(iter(self.held.items()))
            if not (held.ended or everything):
                break
            del self.held[index]
            if held.watched and held.verdict is None:
                held.verdict = self._verdict(held)
            out += self._emit(held)
        return out

    def _watched(self, tool: str) -> bool:
        """Does a reactor watch the call ``tool`` (the provider's name, read as the client's)?"""
        name = self.context.client_name(tool)
        return any(reactor.watches(name) for reactor in self.reactors)

    def _hold(self, held: Held, piece: str) -> None:
        held.size += len(piece)
        if held.size <= MAX_HELD_BYTES or not held.watched:  # what is judged is bounded
            held.arguments.append(piece)

    def _call(self, held: Held) -> Call:
        """The held call as the policies see it: under the name the client declared."""
        name = self.context.client_name(held.start.name)
        return Call(name=name, arguments="".join(held.arguments), id=held.start.id)

    def _verdict(self, held: Held) -> Verdict:
        call = self._call(held)
        verdict = ALLOW
        if held.size > MAX_HELD_BYTES:
            reason = f"its arguments exceed the {MAX_HELD_BYTES // 1024 // 1024} MB the proxy can check"
            verdict = Verdict("block", policy="policies", rule="size limit", reason=reason)
        else:
            for reactor in self.reactors:
                if (
                    reactor.watches(call.name)
                    and (judged := reactor.judge(call, self.context)).action != "allow"
                ):
                    verdict = judged
                    break
        if verdict.action != "allow":
            self.record(Decision(verdict.policy, verdict.action, call.name, verdict.rule, verdict.reason))
        return verdict

    def _emit(self, held: Held) -> list[Event]:
        verdict = held.verdict or ALLOW
        if verdict.action == "block":
            self.blocked += 1
            separator, self.text = ("\n\n" if self.text else ""), True
            return [TextDelta(text=separator + blocked_note(self._call(held), verdict))]
        arguments = "".join(held.arguments)
        if verdict.action == "rewrite" and verdict.arguments is not None:
            arguments = verdict.arguments
        start = self._renumbered_start(held.start)
        return [start, ToolCallDelta(index=start.index, arguments=arguments), ToolCallEnd(index=start.index)]

    def _renumbered(self, event: ToolCallDelta | ToolCallEnd) -> Event:
        return event.model_copy(update={"index": self.index_map.get(event.index, event.index)})

    def _renumbered_start(self, start: ToolCallStart) -> ToolCallStart:
        self.index_map[start.index] = self.emitted
        self.emitted += 1
        return start.model_copy(update={"index": self.index_map[start.index]})

    def _fix_stop(self, stop: Stop) -> Stop:
        if stop.reason == "tool_use" and self.blocked and not self.emitted:
            return Stop(reason="end_turn")
        return stop
