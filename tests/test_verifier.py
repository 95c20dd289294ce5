"""The verifier's plain logic (policies/verifier.py): which turns are checked, what the verifier is
asked, how its verdict is read, and when it is left alone. The calls themselves are pinned end to
end in tests/test_e2e_verifier.py."""

from __future__ import annotations

import pytest

from policies.verifier import (
    BREAKER_COOL_DOWN,
    BREAKER_FAILURES,
    STEER_CHARS,
    TRANSCRIPT_CHARS,
    Breaker,
    Review,
    Schedule,
    parse_review,
    review_request,
    steered_request,
    turn_kind,
)
from translators.canonical import ChatRequest, ChatResponse, Message, Reasoning, Text, ToolCall, ToolResult


def user(text: str) -> Message:
    return Message(role="user", content=[Text(text=text)])


def tool_result(text: str) -> Message:
    return Message(role="user", content=[ToolResult(tool_call_id="c1", content=[Text(text=text)])])


def answer(text: str) -> ChatResponse:
    return ChatResponse(id="r1", model="m", content=[Text(text=text)])


def test_every_nth_user_turn_is_checked():
    schedule, state = Schedule(3), {}
    assert [schedule.due(state, "user") for _ in range(6)] == [False, False, True, False, False, True]


def test_tool_follow_ups_count_a_quarter_of_a_user_turn():
    schedule, state = Schedule(1), {}
    assert [schedule.due(state, "tool") for _ in range(8)] == [False, False, False, True] * 2


def test_every_one_checks_each_user_turn():
    schedule, state = Schedule(1), {}
    assert all(schedule.due(state, "user") for _ in range(5))


def test_a_request_ending_in_tool_results_is_a_tool_follow_up():
    assert turn_kind(ChatRequest(model="m", messages=[user("hi"), tool_result("ok")])) == "tool"
    assert turn_kind(ChatRequest(model="m", messages=[user("hi")])) == "user"
    assert turn_kind(ChatRequest(model="m")) == "user"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("PASS", Review("pass")),
        ("  pass.\n", Review("pass")),
        ("STEER: Use metric units.", Review("steer", "Use metric units.")),
        ("Steer:\n  check the\n  dates", Review("steer", "check the dates")),
        ("STEER:", None),
        ("I think it is fine", None),
        ("", None),
    ],
)
def test_a_verdict_is_pass_or_steer_with_a_note_and_anything_else_is_none(text, expected):
    assert parse_review(text) == expected


def test_a_long_steering_note_is_shortened():
    review = parse_review("STEER: " + "x" * (STEER_CHARS * 2))
    assert review is not None and len(review.note) < STEER_CHARS + 40


def test_the_verifier_sees_the_latest_conversation_and_the_answer_but_not_reasoning():
    old = user("an old turn " + "o" * TRANSCRIPT_CHARS)
    request = ChatRequest(model="m", system=[Text(text="Be brief.")], messages=[old, user("What is 2+2?")])
    reviewed = ChatResponse(
        id="r",
        model="m",
        content=[
            Reasoning(text="secret thoughts"),
            Text(text="4"),
            ToolCall(id="c", name="calc", arguments="{}"),
        ],
    )
    asked = review_request(request, reviewed, "judge")
    prompt = asked.messages[0].content[0].text
    assert asked.model == "judge" and "PASS" in asked.system[0].text
    assert "What is 2+2?" in prompt and "Be brief." in prompt and "calls tool calc" in prompt
    assert "secret thoughts" not in prompt
    assert "an old turn" not in prompt, "the transcript is not bounded"
    assert prompt.index("ANSWER UNDER REVIEW") > prompt.index("What is 2+2?")


def test_a_single_huge_turn_is_shortened_not_dropped():
    request = ChatRequest(model="m", messages=[user("start " + "y" * (TRANSCRIPT_CHARS * 3))])
    prompt = review_request(request, answer("ok"), "judge").messages[0].content[0].text
    assert "start" in prompt and len(prompt) < TRANSCRIPT_CHARS + 2_000


def test_the_steered_request_carries_the_note_as_a_proxy_system_instruction():
    request = ChatRequest(model="m", system=[Text(text="Be brief.")], messages=[user("hi")])
    steered = steered_request(request, Review("steer", "Say hello back."))
    assert steered.system[0].text == "Be brief."
    assert steered.system[1].text.startswith("[llm-proxy]") and "Say hello back." in steered.system[1].text
    assert steered.messages == request.messages


def test_the_breaker_opens_after_repeated_failures_and_closes_after_the_cool_down():
    now = [0.0]
    breaker = Breaker(clock=lambda: now[0])
    for _ in range(BREAKER_FAILURES - 1):
        breaker.failed()
    assert not breaker.open
    breaker.failed()
    assert breaker.open
    now[0] = BREAKER_COOL_DOWN + 1
    assert not breaker.open


def test_a_success_resets_the_failure_count():
    breaker = Breaker(clock=lambda: 0.0)
    for _ in range(BREAKER_FAILURES - 1):
        breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert not breaker.open
