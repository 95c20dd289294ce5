"""Small guards of an answer's budget (README "Loop protection").

``ReasoningFloor`` protects against a reasoning model spending the whole output budget on
thinking and answering nothing: a request to a model matching one of ``reasoning_floor``'s globs
(``{"o*": 1024}`` against the model, ``{"openai:o*": 1024}`` against ``backend:model``) whose
``max_tokens`` is below the floor goes upstream with the floor instead. A request without
``max_tokens`` is left alone (the provider's or the translation's default applies), and so is one
already above it.

The empty-answer retry (``empty_answer: {retries: n}``) protects against an answer that finished
with nothing in it: no text and no tool call. Only an answer no byte of which reached the client can
be asked again, so a whole answer is judged once it is read (``addons/policies.py``), and a stream
is held in the egress relay from its first event until the first one that carries content (text,
reasoning or a tool call: ``carries_content``) or its end, within the relay's peek bound
(``addons/egress.py``); past the bound, or once content came, it streams on as usual. Reasoning
ends the hold too (it may run long, and the client should see it as it comes), so a stream that
reasons and then says nothing is not retried. Either way the request goes again with
``EMPTY_NOTE`` as a private system instruction (``with_recovery_note``).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from translators.canonical import ChatRequest, Event, ReasoningDelta, Text, TextDelta, ToolCallStart

EMPTY_NOTE = (
    "[llm-proxy] Your previous answer was empty: no text and no tool call. "
    "Answer the user now, or call a tool if one is needed."
)


def carries_content(event: Event) -> bool:
    """Does this stream event make the answer non-empty (whitespace alone does not)?"""
    match event:
        case TextDelta():
            return bool(event.text.strip())
        case ReasoningDelta():
            return bool(event.text or event.signature or event.redacted)
        case ToolCallStart():
            return True
    return False


def with_recovery_note(request: ChatRequest) -> ChatRequest:
    """The request to ask again after an empty answer."""
    return request.model_copy(update={"system": [*request.system, Text(text=EMPTY_NOTE)]})


class ReasoningFloor:
    """``reasoning_floor: {model glob: minimum max_tokens}``; the first matching glob decides."""

    name = "reasoning_floor"

    def __init__(self, floors: dict[str, int]) -> None:
        self.floors = floors

    def floor(self, backend: str, model: str) -> int | None:
        """A glob with a colon is matched against ``backend:model``, one without against the model
        alone (else ``o*`` would take in every model of a backend named ``openai``)."""
        qualified = f"{backend}:{model}"
        return next(
            (n for glob, n in self.floors.items() if fnmatchcase(qualified if ":" in glob else model, glob)),
            None,
        )

    def apply(self, request: ChatRequest, floor: int) -> ChatRequest | None:
        """The request with its ``max_tokens`` raised to ``floor``, or None when it needs nothing."""
        if request.max_tokens is None or request.max_tokens >= floor:
            return None
        return request.model_copy(update={"max_tokens": floor})
