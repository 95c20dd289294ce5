"""The reasoning token floor (policies/guards.py) in process; end to end: tests/test_e2e_guards.py."""

from __future__ import annotations

import pytest

from policies.guards import ReasoningFloor
from translators.canonical import ChatRequest

FLOORS = {"deepseek-reasoner": 2048, "o*": 1024, "openai:gpt-5*": 4096}


@pytest.mark.parametrize(
    "backend, model, floor",
    [
        ("deepseek", "deepseek-reasoner", 2048),
        ("openai", "o3-mini", 1024),
        ("openai", "gpt-5-mini", 4096),  # matched as backend:model
        ("azure", "gpt-5-mini", None),
        ("openai", "gpt-4o", None),
    ],
)
def test_the_first_matching_glob_gives_the_floor(backend, model, floor):
    assert ReasoningFloor(FLOORS).floor(backend, model) == floor


@pytest.mark.parametrize(
    "sent, expected", [(100, 1024), (1023, 1024), (1024, None), (8000, None), (None, None)]
)
def test_only_a_limit_below_the_floor_is_raised(sent, expected):
    request = ChatRequest(model="o3-mini", max_tokens=sent)
    raised = ReasoningFloor(FLOORS).apply(request, 1024)
    assert (raised.max_tokens if raised else None) == expected
    assert request.max_tokens == sent, "the client's request is not changed in place"
