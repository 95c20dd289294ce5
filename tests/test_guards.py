"""The small guards (policies/guards.py) in process: the reasoning token floor, and what the
empty-answer retry counts as content; end to end: tests/test_e2e_guards.py."""

from __future__ import annotations

import pytest

from policies.guards import EMPTY_NOTE, ReasoningFloor, carries_content, with_recovery_note
from translators.canonical import (
    ChatRequest,
    End,
    MessageStart,
    ReasoningDelta,
    Stop,
    Text,
    TextDelta,
    ToolCallStart,
    Usage,
    UsageUpdate,
)

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


# -- what ends the empty-answer hold of a stream ----------------------------------------------------
@pytest.mark.parametrize(
    "event, content",
    [
        (TextDelta(text="Hi"), True),
        (TextDelta(text=" \n"), False),  # whitespace alone is still an empty answer
        (ReasoningDelta(text="Thinking"), True),
        (ReasoningDelta(signature="sig"), True),  # a signature-only block is reasoning the client keeps
        (ToolCallStart(index=0, id="c", name="Read"), True),
        (MessageStart(id="m", model="x"), False),
        (Stop(reason="end_turn"), False),
        (UsageUpdate(usage=Usage(input_tokens=3, output_tokens=0)), False),
        (End(), False),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, bool) else str(value),
)
def test_only_text_reasoning_or_a_tool_call_carry_content(event, content):
    assert carries_content(event) is content


def test_the_recovery_note_is_added_as_a_private_system_instruction():
    request = ChatRequest(model="m", system=[Text(text="Be brief.")])
    recovered = with_recovery_note(request)
    assert [part.text for part in recovered.system] == ["Be brief.", EMPTY_NOTE] and request.system == [
        Text(text="Be brief.")
    ]
