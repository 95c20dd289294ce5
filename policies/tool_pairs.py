"""The tool calls and results of a request since its last user text, read from the decoded body.

The tool-loop guard (``policies/tool_loop.py``) needs only these pairs, but an agent's request
carries its whole conversation: building the canonical request (``translators``) for it costs a
parse of every message, and on the byte-for-byte fast path nothing else needs one. So for the
protocols whose calls keep their client's names in the canonical model (Chat Completions and
Anthropic Messages) the pairs are read straight from the JSON the front door decoded, with the
same fingerprints as from a canonical request. Other protocols (the Responses API, whose names the
proxy reshapes, and Gemini, whose calls have no ids) and any shape a reader does not expect get
``None``: the guard then reads the canonical request.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from translators import wire

# A result is (is_error, text): the text is the body's own string, not a copy of it (results are
# whole file contents and command outputs, most of an agent's request).
Result = tuple[bool, str]
Pair = tuple[str, str, Result]  # tool name, normalised arguments, result
MEMO_CHARS = 1024  # arguments up to this size are normalised once per process, not per request
MEMO_SIZE = 4096  # at most 4 M characters of arguments held


def normalised(arguments: str) -> str:
    """Tool arguments compared by meaning: parsed JSON with sorted keys, else the stripped text.
    An agent sends its whole history again each turn, so short ones come from a memo."""
    if len(arguments) <= MEMO_CHARS:
        return _memo(arguments)
    return _normalise(arguments)


def _normalise(arguments: str) -> str:
    try:
        value: Any = wire.loads(arguments or "{}")
    except ValueError:
        return arguments.strip()
    return wire.dumps_sorted(value)


_memo = lru_cache(maxsize=MEMO_SIZE)(_normalise)


class Unknown(Exception):
    """A shape the raw reader does not know: the canonical request decides instead."""


def _text(content: Any, part_type: str = "text") -> str:
    """The text of a content that is a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise Unknown
    return "".join(
        p["text"] for p in content if isinstance(p, dict) and p.get("type") == part_type and "text" in p
    )


def _has_user_text(message: dict[str, Any]) -> bool:
    content = message.get("content")
    if isinstance(content, str):
        return bool(content.strip())
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") == "text" and str(p.get("text", "")).strip() for p in content
    )


def _since_user_text(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise Unknown
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user" and _has_user_text(messages[i]):
            return messages[i + 1 :]
    return messages


def chat_pairs(body: dict[str, Any]) -> list[Pair]:
    calls: dict[str, tuple[str, str]] = {}
    pairs: list[Pair] = []
    for message in _since_user_text(body.get("messages")):
        role = message.get("role")
        if role == "assistant":
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or call.get("type", "function") != "function":
                    raise Unknown
                calls[call.get("id")] = (function.get("name"), normalised(function.get("arguments") or ""))
        elif role == "tool" and message.get("tool_call_id") in calls:
            result = _text(message.get("content") or "")
            pairs.append((*calls[message["tool_call_id"]], (False, result)))
    return pairs


def anthropic_pairs(body: dict[str, Any]) -> list[Pair]:
    calls: dict[str, tuple[str, str]] = {}
    pairs: list[Pair] = []
    for message in _since_user_text(body.get("messages")):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "tool_use":
                calls[block.get("id")] = (block.get("name"), wire.dumps_sorted(block.get("input") or {}))
            elif kind == "tool_result" and block.get("tool_use_id") in calls:
                result = _text(block.get("content") or "")
                pairs.append((*calls[block["tool_use_id"]], (bool(block.get("is_error")), result)))
    return pairs


READERS: dict[str, Callable[[dict[str, Any]], list[Pair]]] = {
    "openai-chat": chat_pairs,
    "anthropic": anthropic_pairs,
}


def raw_pairs(protocol: str, body: Any) -> list[Pair] | None:
    """The pairs read from the decoded body, or None where the canonical request must decide."""
    reader = READERS.get(protocol)
    if reader is None or not isinstance(body, dict):
        return None
    try:
        return reader(body)
    except (Unknown, TypeError, AttributeError):
        return None
