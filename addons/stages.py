"""The event seam: a chain of stages between the answer's decoder and the client's encoder.

Policies that watch or change answers (tool-call reactors, rewriting, loop detection) must see
every answer the same way, whichever route carried it: a translated stream, a same-protocol
stream on the fast path, or a whole (non-streamed) body. So every answer becomes canonical events
(a stream through its decoder, a whole body through ``answer_events``) and passes the exchange's
``event_stages`` in order before it is encoded for the client.

A stage that only observes (``changes_answer = False``) leaves the fast path's bytes untouched: the
events are decoded alongside and the client's bytes are the provider's. As soon as one stage may
change the answer, the flow is re-encoded from the stages' output, even on a same-protocol route.

A stage may end the answer early (loop detection): it sets ``ending`` to the events that close it
(a note, the stop reason, ``End``), and the chain is ``ended``. Its users then stop decoding, send
the client those events in its protocol (the fast path encodes just them, after the provider's
bytes so far) and close the provider's response (``Exchange.cut``), so the provider stops too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from translators.assemble import response_from_events
from translators.canonical import (
    ChatResponse,
    End,
    Event,
    Image,
    MessageStart,
    Reasoning,
    ReasoningDelta,
    Stop,
    Text,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    UsageUpdate,
)


class EventStage(Protocol):
    """One stage of the chain. ``feed`` gets the events completed so far and returns what goes
    on (the same list when it passes all, fewer when it holds some back, others when it replaces
    them); ``close`` returns what it still holds when the answer is over. State is per answer."""

    changes_answer: bool
    ending: list[Event] | None  # optional: set when the stage ends the answer with these events

    def feed(self, events: list[Event]) -> list[Event]: ...
    def close(self) -> list[Event]: ...


class StageChain:
    """The exchange's stages run in order; what one releases at close still passes the later ones."""

    def __init__(self, stages: Sequence[EventStage]) -> None:
        self.stages = list(stages)
        self.changes_answer = any(stage.changes_answer for stage in self.stages)
        self.ending: list[Event] | None = None  # the closing events once a stage ended the answer

    @property
    def ended(self) -> bool:
        return self.ending is not None

    def feed(self, events: list[Event]) -> list[Event]:
        """What passes, plus the closing events if a stage ended the answer here."""
        if self.ending is not None:
            return []
        for stage in self.stages:
            if not events:
                break
            events = stage.feed(events)
            ending = getattr(stage, "ending", None)
            if ending is not None:
                self.ending = ending
                return events + ending
        return events

    def close(self) -> list[Event]:
        if self.ending is not None:
            return []
        events: list[Event] = []
        for stage in self.stages:
            events = (stage.feed(events) if events else []) + stage.close()
        return events


def answer_events(answer: ChatResponse) -> list[Event]:
    """A whole answer as the events a stream of it carries, so that stages see both alike."""
    events: list[Event] = [MessageStart(id=answer.id, model=answer.model)]
    calls = 0
    for part in answer.content:
        if isinstance(part, Text):
            events.append(TextDelta(text=part.text))
        elif isinstance(part, Reasoning):
            events.append(
                ReasoningDelta(
                    text=part.text, signature=part.signature, redacted=part.redacted, origin=part.origin
                )
            )
        elif isinstance(part, ToolCall):
            start = ToolCallStart(
                index=calls, id=part.id, name=part.name, thought_signature=part.thought_signature
            )
            events += [start, ToolCallDelta(index=calls, arguments=part.arguments), ToolCallEnd(index=calls)]
            calls += 1
    if answer.stop_reason is not None:
        events.append(Stop(reason=answer.stop_reason, stop_sequence=answer.stop_sequence))
    events += [UsageUpdate(usage=answer.usage), End()]
    return events


def answer_from_events(events: list[Event], original: ChatResponse) -> ChatResponse:
    """The answer the stages let through; parts no event carries (images) stay at the end."""
    answer = response_from_events(events)
    images = [part for part in original.content if isinstance(part, Image)]
    if images:
        answer.content.extend(images)
    return answer
