"""The tool-loop guard's judgement in process (policies/tool_loop.py); end to end with a real
mitmdump and the SDKs: tests/test_e2e_loops.py."""

from __future__ import annotations

from addons.stages import StageChain
from policies.session_config import ToolLoopConfig
from policies.tool_loop import HOLD, ToolLoopGuard, ToolLoopStop, most_repeated
from translators.canonical import (
    ChatRequest,
    End,
    Message,
    Stop,
    Text,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
    UsageUpdate,
)


def turn(n: int, arguments: str = '{"path": "a.txt"}', result: str = "not found") -> list[Message]:
    call = ToolCall(id=f"c{n}", name="Read", arguments=arguments)
    answer = ToolResult(tool_call_id=f"c{n}", content=[Text(text=result)])
    return [Message(role="assistant", content=[call]), Message(role="user", content=[answer])]


def request(*turns: list[Message], ask: str = "Read a.txt") -> ChatRequest:
    messages = [Message(role="user", content=[Text(text=ask)])]
    for t in turns:
        messages += t
    return ChatRequest(model="m", messages=messages)


def test_arguments_are_compared_normalised():
    repeat = most_repeated(request(turn(1, '{"path": "a.txt"}'), turn(2, '{ "path":"a.txt" }')))
    assert repeat is not None and repeat.count == 2


def test_a_different_result_is_a_different_fingerprint():
    repeat = most_repeated(request(turn(1, result="x"), turn(2, result="y")))
    assert repeat is not None and repeat.count == 1


def test_the_guard_steers_at_max_repeats_then_stops_when_it_comes_again():
    guard, state = ToolLoopGuard(ToolLoopConfig(max_repeats=3)), {}
    assert guard.judge(request(*[turn(n) for n in range(2)]), state) is None
    action, repeat = guard.judge(request(*[turn(n) for n in range(3)]), state)
    assert action == "steer" and "Read" in guard.note(repeat) and "3 times" in guard.note(repeat)
    action, repeat = guard.judge(request(*[turn(n) for n in range(4)]), state)
    assert action == "stop" and guard.answer(repeat).startswith("[llm-proxy] stopped a tool loop: Read")


def test_a_new_user_message_starts_the_count_again():
    guard, state = ToolLoopGuard(ToolLoopConfig(max_repeats=3)), {}
    looped = request(*[turn(n) for n in range(3)])
    assert guard.judge(looped, state)[0] == "steer"
    fresh = looped.model_copy(
        update={
            "messages": [*looped.messages, Message(role="user", content=[Text(text="Try b.txt")]), *turn(9)]
        }
    )
    assert guard.judge(fresh, state) is None and state == {}


# -- the stop on the steered answer ------------------------------------------------------------------
def steered(max_repeats: int = 3) -> tuple[ToolLoopStop, list]:
    """The stage the guard's steer leaves on the answer, and the decisions it records."""
    guard, state, decisions = ToolLoopGuard(ToolLoopConfig(max_repeats=max_repeats)), {}, []
    action, repeat = guard.judge(request(*[turn(n) for n in range(max_repeats)]), state)
    assert action == "steer"
    return ToolLoopStop(repeat, decisions.append), decisions


def call_events(index: int, name: str, pieces: list[str]) -> list:
    deltas = [ToolCallDelta(index=index, arguments=piece) for piece in pieces]
    return [ToolCallStart(index=index, id=f"n{index}", name=name), *deltas, ToolCallEnd(index=index)]


def run(stage: ToolLoopStop, events: list) -> list:
    """What the client gets: the events fed one at a time, as a stream brings them, then the close."""
    chain, out = StageChain([stage]), []
    for event in events:
        out += chain.feed([event])
    return out + chain.close()


ANSWER_END = [Stop(reason="tool_use"), UsageUpdate(usage=Usage(input_tokens=1, output_tokens=1)), End()]


def test_the_same_call_again_after_the_steer_ends_the_answer_with_the_stop_text():
    stage, decisions = steered()
    events = [
        TextDelta(text="Let me read it again."),
        *call_events(0, "Read", ['{ "path"', ':"a.txt"}']),
        *ANSWER_END,
    ]
    out = run(stage, events)
    assert not any(isinstance(e, (ToolCallStart, ToolCallDelta)) for e in out), (
        "the call never reaches the client"
    )
    texts = "".join(e.text for e in out if isinstance(e, TextDelta))
    assert texts.startswith(
        "Let me read it again.\n\n[llm-proxy] stopped a tool loop: Read was called 3 times"
    )
    assert [e for e in out if isinstance(e, Stop)] == [Stop(reason="end_turn")] and isinstance(out[-1], End)
    assert stage.ending is not None and [d.action for d in decisions] == ["stop"]


def test_a_different_call_after_the_steer_passes_whole_and_in_order():
    stage, decisions = steered()
    events = [
        TextDelta(text="Trying another file."),
        *call_events(0, "Read", ['{"path": "b.txt"}']),
        *call_events(1, "Grep", ['{"path": "a.txt"}']),
        *ANSWER_END,
    ]
    assert run(stage, events) == events and stage.ending is None and decisions == []


def test_calls_are_held_until_judged_and_text_passes_at_once():
    stage, _ = steered()
    assert stage.feed([TextDelta(text="Hm.")]) == [TextDelta(text="Hm.")]
    assert stage.feed(call_events(0, "Read", ['{"path": "b.txt"}'])) == [], "held until the answer's stop"
    assert len(stage.feed(ANSWER_END)) == 3 + len(ANSWER_END)


def test_calls_over_the_hold_bound_pass_unjudged():
    stage, decisions = steered()
    big = call_events(0, "Write", ["x" * (HOLD + 1)])
    out = stage.feed(big[:2])
    assert out == big[:2], "over the bound the held events go on"
    again = call_events(1, "Read", ['{"path": "a.txt"}'])
    assert run(stage, [*big[2:], *again, *ANSWER_END]) == [*big[2:], *again, *ANSWER_END] and decisions == []
