"""The tool-loop guard's judgement in process (policies/tool_loop.py); end to end with a real
mitmdump and the SDKs: tests/test_e2e_loops.py."""

from __future__ import annotations

from policies.session_config import ToolLoopConfig
from policies.tool_loop import ToolLoopGuard, most_repeated
from translators.canonical import ChatRequest, Message, Text, ToolCall, ToolResult


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
