"""Loop detection: stops an answer that repeats the same text back to back (README "Loop protection").

A model stuck in a loop repeats one paragraph (or one short phrase) until the token limit, burning
money while the user is away. Ordinary output repeats too, but differently: code and tables repeat
a *shape* with different values, a refrain comes back with verses between, a quoted log repeats a
line a few times. A loop repeats the *same characters*, back to back, many times.

So the detector asks one question of the text's tail: is it periodic? The text (answer text and
reasoning each have their own detector) passes unchanged; the detector keeps only the last
``window`` characters. Every ``check_every`` new characters it takes the last ``KEY`` characters,
finds their previous occurrence with ``str.rfind`` (the distance is the candidate unit length p),
and confirms by comparison that the tail is the unit ``k`` times over (``tail[-k*p:] == unit * k``).
Both are C-level scans of at most the window, so the cost per character is constant and the memory
per stream bounded. A short unit (below ``long_unit`` characters) must repeat ``short_repeats``
times, a long one ``long_repeats`` times, and either must cover ``min_chars``: a log line quoted
ten times, a ``=====`` rule or a 4-line stanza sung twice stay far below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from policies.gate import Decision
from policies.session_config import LoopDetectionConfig
from translators.canonical import End, Event, ReasoningDelta, Stop, TextDelta

KEY = 24  # characters searched for; a shorter unit is found as the distance between copies
TRIES = 3  # earlier occurrences of the key confirmed, nearest first (a unit may contain its key)
SHOWN = 60  # characters of the unit quoted in the note


@dataclass(frozen=True)
class Loop:
    """What repeated: the unit, how many back-to-back copies were confirmed, and where."""

    unit: str
    repeats: int
    kind: str  # "text" | "reasoning"

    def note(self) -> str:
        shown = self.unit if len(self.unit) <= SHOWN else self.unit[:SHOWN] + "…"
        return (
            f"[llm-proxy] loop detected: the {self.kind} repeated {shown!r} ({len(self.unit)} characters)"
            f" at least {self.repeats} times in a row; the proxy stopped the answer."
        )


class LoopDetector:
    """The periodicity check over one text's tail; ``add`` returns the loop once it is confirmed."""

    def __init__(self, config: LoopDetectionConfig, kind: str = "text") -> None:
        self.config = config
        self.kind = kind
        self.tail = ""
        self.unchecked = 0

    def add(self, text: str) -> Loop | None:
        tail = self.tail + text
        if len(tail) > 2 * self.config.window:
            tail = tail[-self.config.window :]
        self.tail = tail
        self.unchecked += len(text)
        if self.unchecked < self.config.check_every:
            return None
        self.unchecked = 0
        return self.check()

    def add_long(self, text: str) -> tuple[Loop | None, int]:
        """``add`` for a text of any length (a whole answer is one): the loop and how much of
        ``text`` was read when it was confirmed (all of it when there is none)."""
        step = self.config.check_every
        if len(text) <= step:
            return self.add(text), len(text)
        for start in range(0, len(text), step):
            if loop := self.add(text[start : start + step]):
                return loop, start + step
        return (self.check() if self.unchecked else None), len(text)

    def check(self) -> Loop | None:
        config, tail = self.config, self.tail
        n = len(tail)
        if n < config.min_chars:
            return None
        key = tail[-KEY:]
        end = n - 1
        for _ in range(TRIES):
            found = tail.rfind(key, 0, end)
            if found < 0:
                return None
            period = n - KEY - found
            repeats = config.short_repeats if period < config.long_unit else config.long_repeats
            repeats = max(repeats, -(-config.min_chars // period))
            if repeats * period > n:
                return None  # nearer copies only make longer units; they fit even less
            unit = tail[n - period :]
            if tail[n - repeats * period :] == unit * repeats:
                return Loop(unit=rotated(unit), repeats=repeats, kind=self.kind)
            end = found + KEY - 1
        return None


def rotated(unit: str) -> str:
    """The unit as a reader sees it start: after its first line break or sentence end, if any."""
    for mark in ("\n", ". "):
        cut = unit.find(mark)
        if 0 <= cut < len(unit) - len(mark):
            return unit[cut + len(mark) :] + unit[: cut + len(mark)]
    return unit


def check_text(text: str, config: LoopDetectionConfig, kind: str = "text") -> Loop | None:
    """A whole text, checked once (at every offset the stream would have been)."""
    return LoopDetector(config, kind).add_long(text)[0]


class LoopStage:
    """An event stage (``addons.stages.EventStage``) that protects against an answer stuck
    repeating itself: it watches text and reasoning deltas without holding any back and, on a
    confirmed loop, ends the answer (``ending``: a visible note, the normal stop reason, the end).
    It only observes until then, so the fast path keeps the provider's bytes."""

    changes_answer = False
    name = "loop_detection"

    def __init__(self, config: LoopDetectionConfig, record: Callable[[Decision], None]) -> None:
        self.detectors = {
            TextDelta: LoopDetector(config, "text"),
            ReasoningDelta: LoopDetector(config, "reasoning"),
        }
        self.record = record
        self.ending: list[Event] | None = None

    def feed(self, events: list[Event]) -> list[Event]:
        if self.ending is not None:
            return []
        detectors = self.detectors
        for i, event in enumerate(events):
            detector = detectors.get(type(event))  # type: ignore[call-overload]
            if detector is None:
                continue
            text: str = event.text  # type: ignore[attr-defined]
            loop, said = detector.add_long(text)
            if loop is not None:
                self._stop(loop)
                cut = event.model_copy(update={"text": text[:said]})  # a long delta ends at the cut
                return [*events[:i], cut]
        return events

    def close(self) -> list[Event]:
        return []

    def _stop(self, loop: Loop) -> None:
        note = loop.note()
        self.ending = [TextDelta(text=f"\n\n{note}\n"), Stop(reason="end_turn"), End()]
        shown = loop.unit[:SHOWN]
        self.record(Decision(self.name, "stop", "", f"{loop.kind} loop", f"{loop.repeats}× {shown!r}"))
