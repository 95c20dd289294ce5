"""The tool-loop guard's pairs read from the raw body (policies/tool_pairs.py) are the pairs the
canonical request gives, so the fast path never parses a conversation for the guard."""

from __future__ import annotations

import pytest

import translators
from policies.tool_loop import pairs_of
from policies.tool_pairs import raw_pairs


def chat_turn(n: int, arguments: str, result: object, call_id: str = "") -> list[dict]:
    call_id = call_id or f"call_{n}"
    return [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "read_file", "arguments": arguments}}
        ]},
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]  # fmt: skip


def anthropic_turn(n: int, arguments: dict, result: object, is_error: bool = False) -> list[dict]:
    block: dict = {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": result}
    if is_error:
        block["is_error"] = True
    return [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": f"toolu_{n}", "name": "Read", "input": arguments},
        ]},
        {"role": "user", "content": [block]},
    ]  # fmt: skip


CHAT = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "old task"},
        *chat_turn(0, '{"path": "old.txt"}', "old"),
        {"role": "user", "content": [{"type": "text", "text": "new task"}]},
        *chat_turn(1, '{"path": "a.txt"}', "same"),
        *chat_turn(2, '{ "path":"a.txt" }', [{"type": "text", "text": "sa"}, {"type": "text", "text": "me"}]),
        *chat_turn(3, "not json ", None),
        *chat_turn(4, "", "empty arguments"),
    ],
}
ANTHROPIC = {
    "model": "m",
    "max_tokens": 100,
    "messages": [
        {"role": "user", "content": "old task"},
        *anthropic_turn(0, {"file_path": "old"}, "x"),
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_0", "content": "x"},
            {"type": "text", "text": "<system-reminder>new task</system-reminder>"},
        ]},
        *anthropic_turn(1, {"b": 1, "a": [1.5, "é"]}, "same"),
        *anthropic_turn(2, {"a": [1.5, "é"], "b": 1}, [{"type": "text", "text": "same"}]),
        *anthropic_turn(3, {}, "failed", is_error=True),
        *anthropic_turn(4, {"x": None}, []),
    ],
}  # fmt: skip


@pytest.mark.parametrize(("protocol", "body"), [("openai-chat", CHAT), ("anthropic", ANTHROPIC)])
def test_raw_pairs_are_the_canonical_requests_pairs(protocol, body):
    canonical = translators.get(protocol).parse_request(body, model="m", stream=False)
    expected = pairs_of(canonical)
    assert len(expected) >= 4  # the bodies exercise the boundary and every result shape
    assert raw_pairs(protocol, body) == expected


def test_calls_before_the_last_user_text_are_not_counted():
    pairs = raw_pairs("openai-chat", CHAT)
    assert pairs is not None and all("old.txt" not in arguments for _, arguments, _ in pairs)


@pytest.mark.parametrize(
    ("protocol", "body"),
    [
        ("openai-responses", {"model": "m", "input": []}),  # names the proxy reshapes
        ("gemini", {"contents": []}),  # calls without ids
        ("openai-chat", {"messages": "not a list"}),
        ("openai-chat", {"messages": [{"role": "assistant", "tool_calls": [{"type": "custom"}]}]}),
        ("anthropic", {"messages": 3}),
    ],
)  # fmt: skip
def test_shapes_the_reader_does_not_know_leave_it_to_the_canonical_request(protocol, body):
    assert raw_pairs(protocol, body) is None
