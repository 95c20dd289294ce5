"""Small guards of an answer's budget (README "Loop protection").

``ReasoningFloor`` protects against a reasoning model spending the whole output budget on
thinking and answering nothing: a request to a model matching one of ``reasoning_floor``'s globs
(``{"o*": 1024}`` against the model, ``{"openai:o*": 1024}`` against ``backend:model``) whose
``max_tokens`` is below the floor goes upstream with the floor instead. A request without
``max_tokens`` is left alone (the provider's or the translation's default applies), and so is one
already above it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from translators.canonical import ChatRequest


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
