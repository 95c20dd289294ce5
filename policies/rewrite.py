"""The rewriting policy: configured text edits to system prompts, user messages and answers.

``policies.rewrite`` is an ordered list of rules. Each names *where* it applies (``system``,
``user`` or ``assistant``), *what* it looks for (a literal ``find`` or a ``regex``) and *how* it
edits every match (``replace`` it, ``prepend`` or ``append`` text). A rule with ``prepend`` or
``append`` and neither ``find`` nor ``regex`` decorates the whole text instead: the system prompt,
each user message, the answer. Rules apply in order; each one sees the text the previous one made.

Semantics, once:

- Literal rules replace like ``str.replace``; regex rules like ``re.sub`` (leftmost, non-overlapping
  matches; empty matches count, so ``(?m)^`` with ``prepend`` marks every line). Replacement text is
  inserted as written: no ``\\1`` or ``\\g<name>`` group references.
- Rules never see across parts: each ``Text`` part is matched on its own (so Anthropic
  ``cache_control`` blocks keep their places). Whole-text rules put ``prepend`` on the first Text part
  and ``append`` on the last, and leave text that is empty, or absent, alone: they never invent a
  system prompt, a text part or an answer (a tool-call-only answer gets no stray text).
- ``user`` rules edit the Text parts of user messages, not tool results. ``assistant`` rules edit
  answers only, never the assistant messages of a request's history: the client sends back what it
  received, which is already rewritten, and rewriting it again would stack prepends and appends.

Streamed answers are rewritten as they flow (``StreamRewriter``), across chunk boundaries, and the
text held back is bounded, because every held character is latency the user sees and memory the
proxy spends:

- a literal of length n holds at most n - 1 trailing characters, and only while they are a prefix of
  the literal, so most text passes at once;
- a regex holds its last ``max_match - 1`` characters, because ``re`` cannot tell whether a match
  could still start there (and private parser APIs are off limits). A match is decided once
  ``max_match`` characters from its start are known, so a streamed match of ``max_match``
  characters or more is not found. Set ``max_match`` above everything the pattern reads from where
  a match starts: the match itself, lookaheads, what a failing alternative reads, and the character
  after the match that greedy quantifiers and ``\\b`` look at (``$`` looks at two: it also matches
  before a final newline). Lookbehinds see at most ``max_match`` characters back. Within those
  bounds the stream's output, however it is chunked, equals ``rewrite_text`` of the whole answer;
  non-streamed text is always matched whole.

``re`` has no timeout: a pattern's cost on a stream is its cost on a window of ``max_match`` plus one
chunk, on a request its cost on the whole text. Avoid nested quantifiers such as ``(a+)+``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from translators.canonical import (
    ChatRequest,
    End,
    Event,
    Message,
    ReasoningDelta,
    Stop,
    StreamError,
    Text,
    TextDelta,
    ToolCallStart,
)

Where = Literal["system", "user", "assistant"]


class RewriteRule(BaseModel):
    """One ``policies.rewrite`` entry: exactly one of ``find``/``regex`` (or neither, for a
    whole-text ``prepend``/``append``) and exactly one of ``replace``/``prepend``/``append``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    where: Where
    find: str | None = Field(None, min_length=1)
    regex: str | None = None
    replace: str | None = None
    prepend: str | None = None
    append: str | None = None
    # Regex rules on streamed answers only: streamed matches are shorter; max_match - 1 chars are held.
    max_match: int = Field(256, ge=2)
    _pattern: re.Pattern[str] | None = PrivateAttr(None)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            if not value:
                raise ValueError("must not be empty")
            try:
                re.compile(value)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {e}") from None
        return value

    @model_validator(mode="after")
    def _one_of_each(self) -> RewriteRule:
        if self.find is not None and self.regex is not None:
            raise ValueError("give find or regex, not both")
        actions = [a for a in ("replace", "prepend", "append") if getattr(self, a) is not None]
        if len(actions) != 1:
            raise ValueError('give exactly one of replace, prepend or append (replace: "" deletes the match)')
        if self.whole and self.replace is not None:
            raise ValueError("replace needs find or regex (prepend and append may go without)")
        return self

    def model_post_init(self, context: object) -> None:
        if self.regex is not None:
            self._pattern = re.compile(self.regex)

    @property
    def whole(self) -> bool:
        """Does the rule decorate the whole text (no find, no regex)?"""
        return self.find is None and self.regex is None

    @property
    def pattern(self) -> re.Pattern[str] | None:
        return self._pattern

    def rewritten(self, matched: str) -> str:
        """What one match (or, for a whole-text rule, the whole text) becomes."""
        if self.replace is not None:
            return self.replace
        return (self.prepend or "") + matched + (self.append or "")

    def apply(self, text: str) -> str:
        """The rule on one whole text."""
        if self.whole:
            return self.rewritten(text) if text else text
        if self.find is not None:
            return text.replace(self.find, self.rewritten(self.find))
        assert self._pattern is not None
        pieces, pos, _ = _rewrite_matches(self._pattern, text, 0, len(text) + 1, None, self.rewritten)
        return "".join(pieces) + text[pos:]


def _rewrite_matches(
    pattern: re.Pattern[str],
    text: str,
    pos: int,
    stop: int,
    longest: int | None,
    rewritten: Callable[[str], str],
    empty_done: bool = False,
) -> tuple[list[str], int, bool]:
    """Rewrite the matches in ``text[pos:]`` that start before ``stop`` and are at most ``longest``
    long (longer ones are skipped as no match). ``empty_done``: an empty match at ``pos`` was
    already rewritten (by an earlier call, before the text grew). Returns the output pieces, the
    position up to which ``text`` is consumed, and whether its last match was an empty one there."""
    out: list[str] = []
    matches = pattern.finditer(text, pos)
    while (m := next(matches, None)) is not None and m.start() < stop:
        start, end = m.span()
        if start == end == pos and empty_done:
            continue  # finditer then looks for a non-empty match here, as re.sub would
        if longest is not None and end - start > longest:
            matches = pattern.finditer(text, start + 1)
            continue
        out += [text[pos:start], rewritten(m.group())]
        pos, empty_done = end, start == end
    return out, pos, empty_done


# -- streams -------------------------------------------------------------------------------------


class _Stage(Protocol):
    @property
    def held(self) -> int: ...

    def feed(self, text: str) -> str: ...

    def flush(self) -> str: ...


class _WholeStage:
    """Prepend before the first text, append after the last; holds nothing."""

    def __init__(self, rule: RewriteRule) -> None:
        self.rule, self.seen = rule, False

    @property
    def held(self) -> int:
        return 0

    def feed(self, text: str) -> str:
        if text and not self.seen:
            self.seen = True
            return (self.rule.prepend or "") + text
        return text

    def flush(self) -> str:
        return (self.rule.append or "") if self.seen else ""


class _LiteralStage:
    """``str.replace`` over a stream: holds only a trailing proper prefix of the literal."""

    def __init__(self, rule: RewriteRule) -> None:
        assert rule.find is not None
        self.find, self.into, self.tail = rule.find, rule.rewritten(rule.find), ""

    @property
    def held(self) -> int:
        return len(self.tail)

    def feed(self, text: str) -> str:
        text, out, pos = self.tail + text, [], 0
        while (i := text.find(self.find, pos)) >= 0:
            out += [text[pos:i], self.into]
            pos = i + len(self.find)
        keep = self._prefix_at_end(text, pos)
        out.append(text[pos : len(text) - keep])
        self.tail = text[len(text) - keep :]
        return "".join(out)

    def _prefix_at_end(self, text: str, pos: int) -> int:
        """The length of the longest suffix of ``text[pos:]`` that is a proper prefix of the literal."""
        for size in range(min(len(self.find) - 1, len(text) - pos), 0, -1):
            if text.endswith(self.find[:size]):
                return size
        return 0

    def flush(self) -> str:
        tail, self.tail = self.tail, ""
        return tail


class _RegexStage:
    """``re.sub`` over a stream: a match is decided once ``max_match`` characters from its start
    are known, so at most ``max_match - 1`` are held; ``left`` keeps consumed text for lookbehinds,
    ``^`` and ``\\b``."""

    def __init__(self, rule: RewriteRule) -> None:
        assert rule.pattern is not None
        self.rule, self.pattern, self.window = rule, rule.pattern, rule.max_match
        self.left, self.tail, self.empty_done = "", "", False

    @property
    def held(self) -> int:
        return len(self.tail)

    def feed(self, text: str) -> str:
        self.tail += text
        return self._advance(final=False)

    def flush(self) -> str:
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        text, begin = self.left + self.tail, len(self.left)
        stop = len(text) + 1 if final else len(text) - self.window + 1
        longest = None if final else self.window - 1
        out, pos, self.empty_done = _rewrite_matches(
            self.pattern, text, begin, stop, longest, self.rule.rewritten, self.empty_done
        )
        decided = len(text) if final else stop
        if decided > pos:  # no match starts in text[pos:decided]
            out.append(text[pos:decided])
            pos, self.empty_done = decided, False
        self.left, self.tail = text[max(0, pos - self.window) : pos], text[pos:]
        return "".join(out)


def _stage(rule: RewriteRule) -> _Stage:
    if rule.whole:
        return _WholeStage(rule)
    return _LiteralStage(rule) if rule.find is not None else _RegexStage(rule)


class StreamRewriter:
    """The ``assistant`` rules over one streamed answer: ``feed`` each text delta and send what it
    returns (possibly ``""``), then send ``flush()`` once at the end of the text. One per stream."""

    def __init__(self, rules: Iterable[RewriteRule]) -> None:
        self._stages = [_stage(rule) for rule in rules]

    @property
    def held(self) -> int:
        """Characters fed but not yet returned (over all rules)."""
        return sum(stage.held for stage in self._stages)

    def feed(self, text: str) -> str:
        for stage in self._stages:
            text = stage.feed(text)
        return text

    def flush(self) -> str:
        text = ""
        for stage in self._stages:  # what one rule lets go still goes through the next ones
            text = stage.feed(text) + stage.flush()
        return text


# -- requests and answers ------------------------------------------------------------------------


class Rewriter:
    """The configured rules, ready to apply."""

    def __init__(self, rules: Sequence[RewriteRule]) -> None:
        self._rules: dict[str, list[RewriteRule]] = {"system": [], "user": [], "assistant": []}
        for rule in rules:
            self._rules[rule.where].append(rule)

    @property
    def active_for_requests(self) -> bool:
        """Does any rule edit requests (system prompts, user messages)?"""
        return bool(self._rules["system"] or self._rules["user"])

    @property
    def active_for_answers(self) -> bool:
        """Does any rule edit answers?"""
        return bool(self._rules["assistant"])

    @property
    def active(self) -> bool:
        return self.active_for_requests or self.active_for_answers

    def rewrite_text(self, text: str, where: Where) -> str:
        """The ``where`` rules on one whole text (a non-streamed answer's text, say)."""
        return self._rewrite_texts([text], where)[0]

    def stream(self) -> StreamRewriter:
        return StreamRewriter(self._rules["assistant"])

    def rewrite_request(self, request: ChatRequest) -> ChatRequest:
        """A copy with system and user rules applied (unchanged parts are shared, not copied); the
        request itself when nothing changed. Never mutates ``request``."""
        if not self.active_for_requests:
            return request
        system = self._rewrite_parts(request.system, "system")
        messages = [self._rewrite_message(message) for message in request.messages]
        if system is request.system and all(new is old for new, old in zip(messages, request.messages)):
            return request
        return request.model_copy(update={"system": system, "messages": messages})

    def _rewrite_message(self, message: Message) -> Message:
        if message.role != "user":
            return message
        content = self._rewrite_parts(message.content, "user")
        return message if content is message.content else message.model_copy(update={"content": content})

    def _rewrite_parts[P: BaseModel](self, parts: list[P], where: Where) -> list[P]:
        """``parts`` with the rules applied to its Text parts; ``parts`` itself when unchanged."""
        texts = {i: part.text for i, part in enumerate(parts) if isinstance(part, Text)}
        if not texts or not self._rules[where]:
            return parts
        new = dict(zip(texts, self._rewrite_texts(list(texts.values()), where)))
        if new == texts:
            return parts
        return [
            part.model_copy(update={"text": new[i]}) if i in new and new[i] != texts[i] else part
            for i, part in enumerate(parts)
        ]

    def _rewrite_texts(self, texts: list[str], where: Where) -> list[str]:
        """The ``where`` rules, in order, on a text made of ``texts`` (matched part by part;
        whole-text rules put prepend on the first part and append on the last)."""
        for rule in self._rules[where]:
            if not rule.whole:
                texts = [rule.apply(text) for text in texts]
            elif any(texts):
                texts = [(rule.prepend or "") + texts[0], *texts[1:]]
                texts[-1] += rule.append or ""
        return texts


# -- the answer stage ----------------------------------------------------------------------------


class RewriteStage:
    """The ``assistant`` rules as an event stage (``addons.stages.EventStage``): text deltas are
    rewritten as they pass. What a rule still holds goes out before the next tool call or
    reasoning (text never moves past them), and everything, appended text included, before the
    stop: nothing may follow a stream's final event."""

    changes_answer = True

    def __init__(self, rewriter: Rewriter) -> None:
        self.stream = rewriter.stream()
        self.done = False

    def feed(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if isinstance(event, TextDelta):
                text = self.stream.feed(event.text)
            elif isinstance(event, Stop | End | StreamError):
                text = self.close_text()
            elif isinstance(event, ToolCallStart | ReasoningDelta):
                text = self.stream.flush() if self.stream.held else ""
            else:  # usage, message start: text may pass them (Gemini repeats usage in every chunk)
                text = ""
            if text:
                out.append(TextDelta(text=text))
            if not isinstance(event, TextDelta):
                out.append(event)
        return out

    def close_text(self) -> str:
        if self.done:
            return ""
        self.done = True
        return self.stream.flush()

    def close(self) -> list[Event]:
        text = self.close_text()
        return [TextDelta(text=text)] if text else []
