"""Anthropic Messages API (docs/wire.md §3) to and from the canonical model.

Anthropic differs from the canonical model in ways that decide most of this module: usage counts
cache reads and writes *outside* ``input_tokens``, tool ids must match ``^[a-zA-Z0-9_-]+$``,
thinking blocks carry byte-exact signatures that only Anthropic may see again, and a stream's
content blocks share one index space while canonical tool calls are numbered on their own.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from translators.canonical import (
    ChatRequest,
    ChatResponse,
    End,
    Event,
    Image,
    Message,
    MessageStart,
    Part,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    ResponseFormat,
    Stop,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolOrigin,
    ToolResult,
    Usage,
    UsageUpdate,
)
from translators.errors import ProxyError, code_for_status
from translators.mapping import ANTHROPIC_MIN_BUDGET, DEFAULT_MAX_TOKENS, EFFORT_BUDGET
from translators.sse import SSEEvent, format_event
from translators.streams import SSEDecoder
from translators.toolnames import (
    MAPPED,
    REMOVED,
    SEARCH_OPTIONS,
    WEB_SEARCH,
    Sources,
    client_name,
    origins,
    safe_names,
    search_options,
    web_search,
)
from translators.wire import (
    Reader,
    count,
    dump_arguments,
    dumps,
    invalid,
    key_path,
    parse_arguments,
    split_data_url,
)

NAME = "anthropic"
STREAM_CONTENT_TYPE = "text/event-stream"

# -- tables ---------------------------------------------------------------------------------------

STOP_IN: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "pause_turn": "pause_turn",
    "refusal": "refusal",
    "model_context_window_exceeded": "context_window",
}
STOP_OUT: dict[str, str] = {
    **{canonical: wire for wire, canonical in STOP_IN.items()},
    "error": "end_turn",  # Anthropic has no error stop reason; the turn did end
}

# Anthropic error type -> (canonical code, the status Anthropic sends it with).
ERROR_TYPE_IN: dict[str, tuple[str, int]] = {
    "invalid_request_error": ("invalid_request", 400),
    "authentication_error": ("authentication", 401),
    "billing_error": ("billing", 402),
    "permission_error": ("permission", 403),
    "not_found_error": ("not_found", 404),
    "conflict_error": ("invalid_request", 409),
    "request_too_large": ("too_large", 413),
    "rate_limit_error": ("rate_limited", 429),
    "api_error": ("internal", 500),
    "timeout_error": ("timeout", 504),
    "overloaded_error": ("overloaded", 529),
}
ERROR_TYPE_OUT: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "billing": "billing_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "rate_limited": "rate_limit_error",
    "internal": "api_error",
    "upstream_error": "api_error",
    "upstream_unreachable": "api_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
    "unauthenticated": "authentication_error",
    "forbidden": "permission_error",
    "limit_reached": "rate_limit_error",
}

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# Blocks Anthropic accepts that the canonical model cannot carry: refused, so that the caller
# can fall back to a byte-exact pass-through on an Anthropic-to-Anthropic route.
UNTRANSLATABLE_BLOCKS = frozenset(
    {
        "document",
        "search_result",
        "container_upload",
        "mcp_tool_use",
        "mcp_tool_result",
        "tool_reference",
    }
)

WEB_SEARCH_PREFIX = "web_search_"  # web_search_20250305, web_search_20260209, …
WEB_SEARCH_TOOL = "web_search_20250305"  # the version written: every current model takes it
# A server tool's call and results, as they come back in history (left out when parsed).
SERVER_TOOL_BLOCKS = frozenset(
    {
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
    }
)
TOOL_CHOICE_IN: dict[str, str] = {"auto": "auto", "any": "required", "none": "none", "tool": "tool"}
TOOL_CHOICE_OUT: dict[str, str] = {mode: wire for wire, mode in TOOL_CHOICE_IN.items()}
FORCED_TOOL_CHOICES = frozenset({"any", "tool"})

_VALID_ID = re.compile(r"[a-zA-Z0-9_-]+")
_INVALID_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


# -- helpers --------------------------------------------------------------------------------------


def tool_id(value: str) -> str:
    """A tool-call id Anthropic accepts (docs/snags.md #9). Valid ids pass unchanged; any other id (also an
    empty one) gets its invalid characters replaced and a short hash of the original appended, so
    the mapping is deterministic (tool_use and tool_result agree across turns) and two ids that
    differ only in invalid characters stay distinct."""
    if _VALID_ID.fullmatch(value):
        return value
    digest = hashlib.blake2s(value.encode(), digest_size=6).hexdigest()
    cleaned = _INVALID_ID_CHARS.sub("_", value)
    return f"{cleaned}_{digest}" if cleaned else f"toolu_{digest}"


def _new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


# Typed reads naming key paths, with the shorter messages this module has always given.
_READER = Reader(detail=False)
_check = _READER.check
_read = _READER.read


# -- request parsing ------------------------------------------------------------------------------


def parse_request(body: Any, *, model: str | None = None, stream: bool | None = None) -> ChatRequest:
    body = _check(body, "body", "an object")
    system = _parse_texts(body["system"], "system") if body.get("system") is not None else []
    messages: list[Message] = []
    for i, raw in enumerate(_read(body, "messages", "", "an array", required=True)):
        _parse_message(_check(raw, f"messages[{i}]", "an object"), f"messages[{i}]", messages, system)
    tool_choice, parallel = _parse_tool_choice(body.get("tool_choice"))
    tools, metadata, warnings = _parse_tools(_read(body, "tools", "", "an array") or [])
    request = ChatRequest(
        model=model or _read(body, "model", "", "a string", required=True),
        system=system,
        messages=messages,
        tools=tools,
        metadata=metadata,
        warnings=warnings,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=_read(body, "max_tokens", "", "an integer", required=True),
        temperature=_read(body, "temperature", "", "a number"),
        top_p=_read(body, "top_p", "", "a number"),
        top_k=_read(body, "top_k", "", "an integer"),
        stop=_parse_strings(body, "stop_sequences"),
        reasoning=_parse_reasoning(body),
        response_format=_parse_format(body),
        stream=stream if stream is not None else bool(_read(body, "stream", "", "a boolean")),
        user=_read(
            _check(body.get("metadata") or {}, "metadata", "an object"), "user_id", "metadata", "a string"
        ),
    )
    return safe_names(request)


def _parse_strings(body: dict[str, Any], key: str) -> list[str]:
    values = _read(body, key, "", "an array") or []
    return [_check(value, key_path(key, i), "a string") for i, value in enumerate(values)]


def _parse_texts(value: Any, path: str) -> list[Text]:
    """A string or an array of text blocks (system prompts accept nothing else)."""
    if isinstance(value, str):
        return [Text(text=value)]
    if not isinstance(value, list):
        raise invalid(path, "expected a string or an array of text blocks")
    parts = [_parse_block(block, f"{path}[{i}]", _TEXT_ONLY) for i, block in enumerate(value)]
    return [part for part in parts if isinstance(part, Text)]


def _parse_message(raw: dict[str, Any], path: str, messages: list[Message], system: list[Text]) -> None:
    """Append the message; a ``system`` role (SDK 2.x, Claude Code) is hoisted into ``system``."""
    role = _read(raw, "role", path, "a string", required=True)
    content = raw.get("content")
    if role == "system":
        system.extend(_parse_texts(content, f"{path}.content"))
    elif role in ("user", "assistant"):
        messages.append(Message(role=role, content=_parse_content(content, f"{path}.content")))
    else:
        raise invalid(f"{path}.role", f"unknown role {role!r}")


def _parse_content(value: Any, path: str) -> list[Part]:
    """A message's blocks; a server tool's call and result in history are left out (the text
    after them says what they found, and no other provider can replay them)."""
    if isinstance(value, str):
        return [Text(text=value)]
    if not isinstance(value, list):
        raise invalid(path, "expected a string or an array of blocks")
    return [
        _parse_block(block, f"{path}[{i}]", _BLOCK_PARSERS)
        for i, block in enumerate(value)
        if not (isinstance(block, dict) and block.get("type") in SERVER_TOOL_BLOCKS)
    ]


def _parse_block(block: Any, path: str, parsers: dict[str, Callable[[dict[str, Any], str], Part]]) -> Part:
    block = _check(block, path, "an object")
    kind = _read(block, "type", path, "a string", required=True)
    parser = parsers.get(kind)
    if parser is not None:
        return parser(block, path)
    if kind in UNTRANSLATABLE_BLOCKS or kind in _BLOCK_PARSERS:
        raise invalid(f"{path}.type", f"{kind!r} blocks cannot be translated here")
    raise invalid(f"{path}.type", f"unknown part type {kind!r}")


def _parse_text(block: dict[str, Any], path: str) -> Text:
    return Text(
        text=_read(block, "text", path, "a string", required=True),
        cache_control=_read(block, "cache_control", path, "an object"),
    )


def _parse_image(block: dict[str, Any], path: str) -> Image:
    source = _check(block.get("source"), f"{path}.source", "an object")
    kind = _read(source, "type", f"{path}.source", "a string", required=True)
    if kind == "base64":
        return Image(
            media_type=_read(source, "media_type", f"{path}.source", "a string", required=True),
            data=_read(source, "data", f"{path}.source", "a string", required=True),
        )
    if kind == "url":
        return Image(url=_read(source, "url", f"{path}.source", "a string", required=True))
    if kind == "file":
        raise invalid(f"{path}.source.type", "file sources cannot be translated")
    raise invalid(f"{path}.source.type", f"unknown image source type {kind!r}")


def _parse_tool_use(block: dict[str, Any], path: str) -> ToolCall:
    return ToolCall(
        id=_read(block, "id", path, "a string", required=True),
        name=_read(block, "name", path, "a string", required=True),
        arguments=dump_arguments(block.get("input")),
    )


def _parse_tool_result(block: dict[str, Any], path: str) -> ToolResult:
    content = block.get("content")
    if content is None:
        parts: list[Part] = []
    elif isinstance(content, str):
        parts = [Text(text=content)]
    elif isinstance(content, list):
        parts = [_parse_block(b, f"{path}.content[{i}]", _RESULT_PARSERS) for i, b in enumerate(content)]
    else:
        raise invalid(f"{path}.content", "expected a string or an array of blocks")
    return ToolResult(
        tool_call_id=_read(block, "tool_use_id", path, "a string", required=True),
        content=parts,
        is_error=bool(_read(block, "is_error", path, "a boolean")),
    )


def _parse_thinking(block: dict[str, Any], path: str) -> Reasoning:
    return Reasoning(
        text=_read(block, "thinking", path, "a string") or "",
        signature=_read(block, "signature", path, "a string"),
        origin=NAME,
    )


def _parse_redacted(block: dict[str, Any], path: str) -> Reasoning:
    data = _read(block, "data", path, "a string", required=True)
    return Reasoning(redacted=True, signature=data, origin=NAME)


_BLOCK_PARSERS: dict[str, Callable[[dict[str, Any], str], Part]] = {
    "text": _parse_text,
    "image": _parse_image,
    "tool_use": _parse_tool_use,
    "tool_result": _parse_tool_result,
    "thinking": _parse_thinking,
    "redacted_thinking": _parse_redacted,
}
_RESULT_PARSERS = {kind: _BLOCK_PARSERS[kind] for kind in ("text", "image")}
_TEXT_ONLY = {"text": _parse_text}


def _parse_tools(tools: list[Any]) -> tuple[list[Tool], dict[str, Any], list[str]]:
    """Client tools; the web search server tool as the canonical web search; one warning per
    other Anthropic-defined tool, which is removed (translators/toolnames.py)."""
    parsed: list[Tool] = []
    metadata: dict[str, Any] = {}
    warnings: list[str] = []
    for i, raw in enumerate(tools):
        path = f"tools[{i}]"
        raw = _check(raw, path, "an object")
        kind = _read(raw, "type", path, "a string")
        if kind in (None, "custom"):
            parsed.append(_parse_tool(raw, path))
        elif kind.startswith(WEB_SEARCH_PREFIX):
            metadata[WEB_SEARCH] = search_options(raw)
            warnings.append(MAPPED.format(where=path, kind=kind))
        else:
            warnings.append(REMOVED.format(where=path, kind=kind, what="a tool defined by Anthropic"))
    return parsed, metadata, warnings


def _parse_tool(raw: dict[str, Any], path: str) -> Tool:
    schema = _read(raw, "input_schema", path, "an object")
    return Tool(
        name=_read(raw, "name", path, "a string", required=True),
        description=_read(raw, "description", path, "a string"),
        strict=_read(raw, "strict", path, "a boolean"),
        **({"parameters": schema} if schema is not None else {}),
    )


def _parse_tool_choice(value: Any) -> tuple[ToolChoice | None, bool | None]:
    if value is None:
        return None, None
    value = _check(value, "tool_choice", "an object")
    kind = _read(value, "type", "tool_choice", "a string", required=True)
    if kind not in TOOL_CHOICE_IN:
        raise invalid("tool_choice.type", f"unknown tool choice {kind!r}")
    name = _read(value, "name", "tool_choice", "a string", required=kind == "tool")
    disable = _read(value, "disable_parallel_tool_use", "tool_choice", "a boolean")
    return ToolChoice(mode=TOOL_CHOICE_IN[kind], name=name), None if disable is None else not disable


def _thinking_enabled(thinking: dict[str, Any], effort: str | None, include: bool | None) -> ReasoningConfig:
    budget = _read(thinking, "budget_tokens", "thinking", "an integer", required=True)
    return ReasoningConfig(budget_tokens=budget, effort=effort, include_thoughts=include)


def _thinking_adaptive(thinking: dict[str, Any], effort: str | None, include: bool | None) -> ReasoningConfig:
    return ReasoningConfig(effort=effort or "medium", include_thoughts=include)


def _thinking_disabled(thinking: dict[str, Any], effort: str | None, include: bool | None) -> ReasoningConfig:
    return ReasoningConfig(enabled=False)


_THINKING_TYPES = {
    "enabled": _thinking_enabled,
    "adaptive": _thinking_adaptive,
    "between_tools": _thinking_adaptive,
    "disabled": _thinking_disabled,
}


def _parse_reasoning(body: dict[str, Any]) -> ReasoningConfig | None:
    """``thinking`` and ``output_config.effort`` together; effort alone still sets the effort."""
    config = _check(body.get("output_config") or {}, "output_config", "an object")
    effort = _read(config, "effort", "output_config", "a string")
    thinking = _read(body, "thinking", "", "an object")
    if thinking is None:
        return ReasoningConfig(effort=effort) if effort else None
    kind = _read(thinking, "type", "thinking", "a string", required=True)
    if kind not in _THINKING_TYPES:
        raise invalid("thinking.type", f"unknown thinking type {kind!r}")
    display = _read(thinking, "display", "thinking", "a string")
    return _THINKING_TYPES[kind](thinking, effort, None if display is None else display != "omitted")


def _parse_format(body: dict[str, Any]) -> ResponseFormat | None:
    config = _check(body.get("output_config") or {}, "output_config", "an object")
    fmt = _read(config, "format", "output_config", "an object")
    if fmt is None:
        return None
    kind = _read(fmt, "type", "output_config.format", "a string", required=True)
    if kind != "json_schema":
        raise invalid("output_config.format.type", f"unknown format type {kind!r}")
    schema = _read(fmt, "schema", "output_config.format", "an object", required=True)
    return ResponseFormat(type="json_schema", json_schema=schema)


# -- request rendering ----------------------------------------------------------------------------


def render_request(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _render_messages(request.messages),
    }
    if system := _render_system(request.system):
        body["system"] = system
    if request.tools:
        body["tools"] = [_render_tool(tool) for tool in request.tools]
        if choice := _render_tool_choice(request):
            body["tool_choice"] = choice
    elif called := _called_tools(body["messages"]):
        body["tools"], body["tool_choice"] = called, {"type": "none"}
    if (search := web_search(request.metadata)) is not None and "web_search" not in [
        t.name for t in request.tools
    ]:
        body["tools"] = [*body.get("tools", []), _render_search(search)]
    if budget := _thinking_budget(request.reasoning, body):
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if body["max_tokens"] <= budget:  # the budget is part of max_tokens (docs/snags.md #16)
            body["max_tokens"] += budget
    else:  # Anthropic rejects sampling parameters with thinking on
        sampling = {"temperature": request.temperature, "top_p": request.top_p, "top_k": request.top_k}
        body.update({key: value for key, value in sampling.items() if value is not None})
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if fmt := _render_format(request.response_format):
        body["output_config"] = {"format": fmt}
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if request.stream:
        body["stream"] = True
    return body


def _render_system(parts: list[Text]) -> str | list[dict[str, Any]] | None:
    """A plain string when that loses nothing; blocks otherwise, so cache markers survive
    (docs/snags.md #18)."""
    blocks = [block for part in parts if (block := _render_text(part, "system"))]
    if len(blocks) == 1 and "cache_control" not in blocks[0]:
        return blocks[0]["text"]
    return blocks or None


def _render_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Anthropic rejects empty blocks and messages, merges same-role turns anyway, and wants the
    tool results of a turn at the start of the next user message (docs/snags.md #10)."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        blocks = [
            block
            for j, part in enumerate(message.content)
            if (block := _RENDERERS[part.type](part, f"messages[{i}].content[{j}]")) is not None
        ]
        if not blocks:
            continue
        if out and out[-1]["role"] == message.role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": message.role, "content": blocks})
    for message in out:
        if message["role"] == "user":
            message["content"].sort(key=lambda block: block["type"] != "tool_result")  # stable
    return out


def _render_text(part: Text, path: str) -> dict[str, Any] | None:
    if not part.text:
        return None
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if part.cache_control:
        block["cache_control"] = dict(part.cache_control)
    return block


def _render_image(part: Image, path: str) -> dict[str, Any]:
    data, media_type = part.data, part.media_type
    if data is None and part.url and (inline := split_data_url(part.url)):
        media_type, data = inline
    if data is not None:
        if media_type not in IMAGE_MEDIA_TYPES:
            problem = f"image type {media_type!r} cannot be sent to Anthropic (jpeg, png, gif, webp only)"
            raise invalid(path, problem)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if part.url:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    raise invalid(path, "image has neither data nor url")


def _render_tool_call(part: ToolCall, path: str) -> dict[str, Any]:
    arguments = parse_arguments(part.arguments)
    return {"type": "tool_use", "id": tool_id(part.id), "name": part.name, "input": arguments}


def _render_tool_result(part: ToolResult, path: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(part.tool_call_id)}
    content = [
        rendered
        for k, item in enumerate(part.content)
        if (rendered := _RENDERERS[item.type](item, f"{path}.content[{k}]")) is not None
    ]
    if content:
        block["content"] = content
    if part.is_error:
        block["is_error"] = True
    return block


def _render_reasoning(part: Reasoning, path: str) -> dict[str, Any] | None:
    """Only Anthropic's own signed thinking goes back to Anthropic (docs/snags.md #13)."""
    if part.origin != NAME or not part.signature:
        return None
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.signature}
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


_RENDERERS: dict[str, Callable[[Any, str], dict[str, Any] | None]] = {
    "text": _render_text,
    "image": _render_image,
    "tool_call": _render_tool_call,
    "tool_result": _render_tool_result,
    "reasoning": _render_reasoning,
}


def _render_tool(tool: Tool) -> dict[str, Any]:
    schema = {**tool.parameters, "type": "object"}  # Anthropic insists on an object root
    schema.setdefault("properties", {})
    rendered: dict[str, Any] = {"name": tool.name, "input_schema": schema}
    if tool.description:
        rendered["description"] = tool.description
    return rendered


def _render_search(search: dict[str, Any]) -> dict[str, Any]:
    """The web search server tool; Anthropic refuses allowed and blocked domains together."""
    rendered: dict[str, Any] = {"type": WEB_SEARCH_TOOL, "name": "web_search"}
    rendered.update({k: v for k, v in search.items() if k in SEARCH_OPTIONS})
    if "allowed_domains" in rendered:
        rendered.pop("blocked_domains", None)
    return rendered


def _called_tools(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Anthropic rejects tool_use history without a ``tools`` array (docs/wire.md §6,
    docs/snags.md #4), which clients of other protocols may omit on a last turn: declare the tools
    the history called, and tool_choice ``none`` keeps the model from calling them again."""
    names = dict.fromkeys(
        block["name"] for message in messages for block in message["content"] if block["type"] == "tool_use"
    )
    return [{"name": name, "input_schema": {"type": "object", "properties": {}}} for name in names]


def _render_tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    """The choice, carrying ``disable_parallel_tool_use`` (which needs a choice object, docs/snags.md #20)."""
    choice = request.tool_choice
    serial = request.parallel_tool_calls is False
    if choice is None and not serial:
        return None
    mode = choice.mode if choice else "auto"
    rendered: dict[str, Any] = {"type": TOOL_CHOICE_OUT[mode]}
    if mode == "tool":
        if not choice or not choice.name:
            raise invalid("tool_choice.name", "required for a named tool choice")
        rendered["name"] = choice.name
    if serial and mode != "none":
        rendered["disable_parallel_tool_use"] = True
    return rendered


def _thinking_budget(config: ReasoningConfig | None, body: dict[str, Any]) -> int | None:
    """The thinking budget to send, or None when thinking must stay off: not asked for, below
    Anthropic's minimum, incompatible with a forced tool choice, or mid tool loop whose last
    assistant turn has no thinking block to start with (history from another provider)."""
    if config is None or not config.enabled:
        return None
    budget = config.budget_tokens
    if budget is None:
        budget = EFFORT_BUDGET.get(config.effort or "", 0)
    if budget < ANTHROPIC_MIN_BUDGET:
        return None
    if body.get("tool_choice", {}).get("type") in FORCED_TOOL_CHOICES:
        return None
    return None if _tool_turn_lacks_thinking(body["messages"]) else budget


def _tool_turn_lacks_thinking(messages: list[dict[str, Any]]) -> bool:
    last = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
    if last is None or not any(block["type"] == "tool_use" for block in last["content"]):
        return False
    return last["content"][0]["type"] not in ("thinking", "redacted_thinking")


def _render_format(fmt: ResponseFormat | None) -> dict[str, Any] | None:
    """JSON schema output only; ``json_object`` has no Anthropic equivalent (docs/wire.md §6,
    docs/snags.md #18)."""
    if fmt is None or fmt.type != "json_schema" or fmt.json_schema is None:
        return None
    return {"type": "json_schema", "schema": dict(fmt.json_schema)}


# -- response parsing -----------------------------------------------------------------------------

_RESPONSE_PARSERS = {
    kind: _BLOCK_PARSERS[kind] for kind in ("text", "tool_use", "thinking", "redacted_thinking")
}


def parse_response(body: Any) -> ChatResponse:
    """Server-tool blocks (a mapped web search's ``server_tool_use`` and ``web_search_tool_result``)
    are skipped: the answer's text carries what the search found."""
    if not isinstance(body, dict):
        raise ProxyError("upstream_error", "response: expected a JSON object")
    blocks = body.get("content") if isinstance(body.get("content"), list) else []
    try:
        content = [
            _RESPONSE_PARSERS[block["type"]](block, f"content[{i}]")
            for i, block in enumerate(blocks)
            if isinstance(block, dict) and block.get("type") in _RESPONSE_PARSERS
        ]
    except ProxyError as error:
        raise ProxyError("upstream_error", f"response {error.message}") from None
    sources = Sources()
    for block in blocks:
        if isinstance(block, dict) and block.get("type") == "text":
            _cite(block, sources)
    if said := sources.text():
        content.append(Text(text=said))
    reason = body.get("stop_reason")
    stop_sequence = body.get("stop_sequence")
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=content,
        stop_reason=STOP_IN.get(reason, "end_turn") if reason else None,
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
        usage=_usage(body.get("usage") if isinstance(body.get("usage"), dict) else {}),
    )


def _usage(raw: dict[str, Any]) -> Usage:
    """Anthropic usage → canonical: cache reads and writes join the input count."""
    read = count(raw.get("cache_read_input_tokens"))
    write = count(raw.get("cache_creation_input_tokens"))
    base = count(raw.get("input_tokens"))
    details = raw.get("output_tokens_details")
    return Usage(
        input_tokens=None if base is None else base + (read or 0) + (write or 0),
        output_tokens=count(raw.get("output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=count(details.get("thinking_tokens")) if isinstance(details, dict) else None,
    )


# -- response rendering ---------------------------------------------------------------------------


def _wire_usage(usage: Usage, *, complete: bool) -> dict[str, Any]:
    """Canonical usage → Anthropic's. ``complete`` (message_start, a full message) reports unknown
    counts as 0 because the SDK requires them; otherwise (message_delta) only known counts are
    sent, since each one overwrites what message_start reported."""
    read, write = usage.cache_read_tokens, usage.cache_write_tokens
    base = None if usage.input_tokens is None else max(0, usage.input_tokens - (read or 0) - (write or 0))
    counts = {
        "input_tokens": base,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": usage.output_tokens,
    }
    if complete:
        wire = {key: value or 0 for key, value in counts.items()}
    else:
        wire = {key: value for key, value in counts.items() if value is not None}
        wire.setdefault("output_tokens", 0)
    if usage.reasoning_tokens is not None:
        wire["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return wire


def _wire_stop(reason: StopReason | None, has_calls: bool) -> str:
    """A turn that called tools must say ``tool_use`` or agents stop after one turn (docs/snags.md #17)."""
    if has_calls and reason in (None, "end_turn"):
        return "tool_use"
    return STOP_OUT[reason or "end_turn"]


def render_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    has_calls = any(isinstance(part, ToolCall) for part in response.content)
    reason = _wire_stop(response.stop_reason, has_calls)
    known = origins(request.tools)
    return {
        "id": response.id or _new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": response.model or request.model,
        "content": [block for part in response.content if (block := _client_block(part, known)) is not None],
        "stop_reason": reason,
        "stop_sequence": response.stop_sequence if reason == "stop_sequence" else None,
        "usage": _wire_usage(response.usage, complete=True),
    }


def _client_block(part: Part, known: dict[str, ToolOrigin]) -> dict[str, Any] | None:
    """A content block for an Anthropic client (a call under the name it declared, ``known``: the
    request's ``origins``). Foreign reasoning is shown as thinking with an empty signature: the
    client echoes it back and ``render_request`` then drops it."""
    match part:
        case Text():
            return {"type": "text", "text": part.text} if part.text else None
        case ToolCall():
            return {**_render_tool_call(part, ""), "name": client_name(part.name, known)}
        case Reasoning() if part.origin == NAME and part.signature:
            return _render_reasoning(part, "")
        case Reasoning() if part.text and not part.redacted:
            return {"type": "thinking", "thinking": part.text, "signature": ""}
    return None


# -- stream decoder -------------------------------------------------------------------------------


def _cite(block: dict[str, Any], sources: Sources) -> None:
    """A text block's web search citations (``web_search_result_location``: url, title)."""
    for citation in block.get("citations") or []:
        if isinstance(citation, dict):
            sources.add(citation.get("url"), citation.get("title"))


def _text_delta(delta: dict[str, Any]) -> Event | None:
    text = delta.get("text")
    return TextDelta(text=text) if isinstance(text, str) and text else None


def _thinking_delta(delta: dict[str, Any]) -> Event | None:
    text = delta.get("thinking")
    return ReasoningDelta(text=text, origin=NAME) if isinstance(text, str) and text else None


def _signature_delta(delta: dict[str, Any]) -> Event | None:
    signature = delta.get("signature")
    if isinstance(signature, str) and signature:
        return ReasoningDelta(signature=signature, origin=NAME)
    return None


_DELTAS: dict[str, Callable[[dict[str, Any]], Event | None]] = {
    "text_delta": _text_delta,
    "thinking_delta": _thinking_delta,
    "signature_delta": _signature_delta,
}


class StreamDecoder(SSEDecoder):
    """Anthropic SSE → canonical events.

    Block indexes are shared by every block kind while canonical tool-call indexes count tool
    calls only, hence the block → call map. Usage is merged in Anthropic's own terms before being
    normalised, because a message_delta may repeat ``input_tokens`` without the cache counts that
    message_start gave (normalising each event alone would then lose the cached part)."""

    def __init__(self) -> None:
        super().__init__()
        self._calls: dict[int, int] = {}  # content-block index -> canonical tool-call index
        self._usage: dict[str, Any] = {}  # Anthropic's raw usage, merged
        self._sources = Sources()  # a web search's citations, told as text at the end

    def _on_event(self, frame: SSEEvent, events: list[Event]) -> None:
        if frame.data:
            events.extend(self._frame(frame))

    def _frame(self, frame: SSEEvent) -> list[Event]:
        try:
            data = json.loads(frame.data)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._finished = True
            message = frame.data if frame.event == "error" else "upstream sent a malformed stream event"
            return [StreamError(error=ProxyError("upstream_error", message).to_dict())]
        handler = self._HANDLERS.get(data.get("type") or frame.event or "")
        return handler(self, data) if handler else []

    def _message_start(self, data: dict[str, Any]) -> list[Event]:
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        raw = message.get("usage")
        self._usage = dict(raw) if isinstance(raw, dict) else {}
        return [
            MessageStart(
                id=str(message.get("id") or ""),
                model=str(message.get("model") or ""),
                usage=_usage(self._usage) if self._usage else None,
            )
        ]

    def _block_start(self, data: dict[str, Any]) -> list[Event]:
        block = data.get("content_block") if isinstance(data.get("content_block"), dict) else {}
        kind = block.get("type")
        if kind == "tool_use":
            call = self._calls[data.get("index")] = len(self._calls)
            name = str(block.get("name") or "")
            start = ToolCallStart(index=call, id=str(block.get("id") or ""), name=name)
            events: list[Event] = [start]
            if block.get("input"):  # some compatible servers send the whole input here
                events.append(ToolCallDelta(index=call, arguments=dump_arguments(block["input"])))
            return events
        if kind == "redacted_thinking":
            return [ReasoningDelta(redacted=True, signature=str(block.get("data") or ""), origin=NAME)]
        if kind == "text" and block.get("citations"):
            _cite(block, self._sources)
        first = _text_delta(block) if kind == "text" else None
        return [first] if first else []

    def _block_delta(self, data: dict[str, Any]) -> list[Event]:
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        kind = delta.get("type")
        if kind == "citations_delta":
            _cite({"citations": [delta.get("citation")]}, self._sources)
            return []
        if kind == "input_json_delta":
            call = self._calls.get(data.get("index"))  # None for server-tool blocks
            fragment = delta.get("partial_json")
            return [ToolCallDelta(index=call, arguments=fragment)] if call is not None and fragment else []
        event = _DELTAS[kind](delta) if kind in _DELTAS else None
        return [event] if event else []

    def _block_stop(self, data: dict[str, Any]) -> list[Event]:
        call = self._calls.get(data.get("index"))
        return [ToolCallEnd(index=call)] if call is not None else []

    def _message_delta(self, data: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        if reason := delta.get("stop_reason"):
            if sources := self._sources.text():
                events.append(TextDelta(text=sources))
            self._stopped = True
            sequence = delta.get("stop_sequence")
            events.append(Stop(reason=STOP_IN.get(reason, "end_turn"), stop_sequence=sequence or None))
        if isinstance(usage := data.get("usage"), dict):
            self._usage.update({key: value for key, value in usage.items() if value is not None})
            events.append(UsageUpdate(usage=_usage(self._usage)))
        return events

    def _message_stop(self, data: dict[str, Any]) -> list[Event]:
        self._finished = True
        return [End()]

    def _error(self, data: dict[str, Any]) -> list[Event]:
        self._finished = True
        return [StreamError(error=_error_from_body(data, None).to_dict())]

    _HANDLERS: ClassVar[dict[str, Callable[[StreamDecoder, dict[str, Any]], list[Event]]]] = {
        "message_start": _message_start,
        "content_block_start": _block_start,
        "content_block_delta": _block_delta,
        "content_block_stop": _block_stop,
        "message_delta": _message_delta,
        "message_stop": _message_stop,
        "error": _error,
    }


# -- stream encoder -------------------------------------------------------------------------------


@dataclass
class _QueuedCall:
    start: ToolCallStart
    fragments: list[str] = field(default_factory=list)
    ended: bool = False


class StreamEncoder:
    """Canonical events → Anthropic SSE, one content block open at a time.

    Blocks open only when content arrives (docs/snags.md #1) and every event carries its ``event:`` line.
    ``message_delta`` is held until End so that late usage still makes it (docs/snags.md #4).

    Tool calls: Anthropic cannot interleave blocks, so a call that starts while another call's
    block is open is queued with its fragments and emitted, in order, when the open call ends.
    Text or reasoning arriving while calls are open closes them (queued ones are emitted first);
    fragments that arrive for a call after its block closed, or for a call that never started,
    are dropped — no provider streams that way, and a delta without a start breaks clients."""

    def __init__(self, request: ChatRequest) -> None:
        self._request = request
        self._known = origins(request.tools)
        self._out: list[bytes] = []
        self._started = False
        self._done = False
        self._blocks = 0  # content blocks opened so far
        self._open: str | None = None  # type of the open block
        self._open_call: int | None = None  # canonical index of the open tool call
        self._queued: dict[int, _QueuedCall] = {}
        self._has_calls = False
        self._usage = Usage()
        self._stop: Stop | None = None

    def encode(self, events: list[Event]) -> bytes:
        for event in events:
            if self._done:
                break
            self._HANDLERS[event.type](self, event)
        return self._flush()

    def close(self) -> bytes:
        if not self._done:
            self._finish()
        return self._flush()

    def _flush(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def _emit(self, data: dict[str, Any]) -> None:
        self._out.append(format_event(data, data["type"]))

    # message framing

    def _on_message_start(self, event: MessageStart) -> None:
        if event.usage:
            self._usage = self._usage.merged(event.usage)
        if not self._started:
            self._start(event.id, event.model)

    def _start(self, message_id: str, model: str) -> None:
        self._started = True
        message = {
            "id": message_id or _new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": model or self._request.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _wire_usage(self._usage, complete=True),  # real input when known (docs/snags.md #5)
        }
        self._emit({"type": "message_start", "message": message})

    def _ensure_started(self) -> None:
        if not self._started:
            self._start("", "")

    def _finish(self) -> None:
        self._ensure_started()
        self._close_all()
        stop = self._stop
        reason = _wire_stop(stop.reason if stop else None, self._has_calls)
        sequence = stop.stop_sequence if stop and reason == "stop_sequence" else None
        usage = _wire_usage(self._usage, complete=False)
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        self._emit({"type": "message_delta", "delta": delta, "usage": usage})
        self._emit({"type": "message_stop"})
        self._done = True

    # blocks

    def _open_block(self, block: dict[str, Any]) -> None:
        self._emit({"type": "content_block_start", "index": self._blocks, "content_block": block})
        self._blocks += 1
        self._open = block["type"]

    def _delta(self, delta: dict[str, Any]) -> None:
        self._emit({"type": "content_block_delta", "index": self._blocks - 1, "delta": delta})

    def _close_block(self) -> None:
        if self._open is not None:
            self._emit({"type": "content_block_stop", "index": self._blocks - 1})
            self._open, self._open_call = None, None

    def _close_all(self) -> None:
        self._close_block()
        self._drain(keep_open=False)

    def _switch_to(self, kind: str, block: dict[str, Any]) -> None:
        if self._open != kind:
            self._ensure_started()
            self._close_all()
            self._open_block(block)

    # content

    def _on_text(self, event: TextDelta) -> None:
        if event.text:
            self._switch_to("text", {"type": "text", "text": ""})
            self._delta({"type": "text_delta", "text": event.text})

    def _on_reasoning(self, event: ReasoningDelta) -> None:
        """Signatures and redacted data go out only when Anthropic made them (docs/snags.md #13). A thinking
        block for foreign reasoning still starts with ``signature: ""`` to stay well-formed."""
        native = event.origin == NAME
        if event.redacted:
            if native and event.signature:
                self._ensure_started()
                self._close_all()
                self._open_block({"type": "redacted_thinking", "data": event.signature})
                self._close_block()
            return
        signature = event.signature if native else None
        if not event.text and not signature:
            return
        self._switch_to("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        if event.text:
            self._delta({"type": "thinking_delta", "thinking": event.text})
        if signature:  # the signature completes its block
            self._delta({"type": "signature_delta", "signature": signature})
            self._close_block()

    # tool calls

    def _on_tool_start(self, event: ToolCallStart) -> None:
        self._has_calls = True
        if self._open == "tool_use":
            self._queued[event.index] = _QueuedCall(event)
            return
        self._ensure_started()
        self._close_all()
        self._open_tool(event)

    def _open_tool(self, start: ToolCallStart) -> None:
        name = client_name(start.name, self._known)
        self._open_block({"type": "tool_use", "id": tool_id(start.id), "name": name, "input": {}})
        self._open_call = start.index

    def _on_tool_delta(self, event: ToolCallDelta) -> None:
        if not event.arguments:
            return
        if event.index == self._open_call:
            self._delta({"type": "input_json_delta", "partial_json": event.arguments})
        elif event.index in self._queued:
            self._queued[event.index].fragments.append(event.arguments)

    def _on_tool_end(self, event: ToolCallEnd) -> None:
        if event.index == self._open_call:
            self._close_block()
            self._drain(keep_open=True)
        elif event.index in self._queued:
            self._queued[event.index].ended = True

    def _drain(self, *, keep_open: bool) -> None:
        """Emit queued calls in order; with ``keep_open`` the first unfinished one stays open."""
        while self._queued:
            call = self._queued.pop(next(iter(self._queued)))
            self._open_tool(call.start)
            for fragment in call.fragments:
                self._delta({"type": "input_json_delta", "partial_json": fragment})
            if keep_open and not call.ended:
                return
            self._close_block()

    # end of turn

    def _on_usage(self, event: UsageUpdate) -> None:
        self._usage = self._usage.merged(event.usage)

    def _on_stop(self, event: Stop) -> None:
        self._stop = event

    def _on_end(self, event: End) -> None:
        self._finish()

    def _on_error(self, event: StreamError) -> None:
        self._close_block()
        self._queued.clear()
        self._emit(_error_body(ProxyError.from_dict(event.error)))
        self._done = True

    _HANDLERS: ClassVar[dict[str, Callable[[StreamEncoder, Any], None]]] = {
        "message_start": _on_message_start,
        "text_delta": _on_text,
        "reasoning_delta": _on_reasoning,
        "tool_call_start": _on_tool_start,
        "tool_call_delta": _on_tool_delta,
        "tool_call_end": _on_tool_end,
        "usage": _on_usage,
        "stop": _on_stop,
        "end": _on_end,
        "error": _on_error,
    }


# -- errors ---------------------------------------------------------------------------------------


def _error_type(error: ProxyError) -> str:
    """The provider's own type when it is Anthropic's and agrees with the code (an OpenAI 401 also
    says ``invalid_request_error``), else the type for the canonical code."""
    known = ERROR_TYPE_IN.get(error.provider_type or "")
    if known and known[0] == error.code:
        return error.provider_type  # type: ignore[return-value]
    return ERROR_TYPE_OUT.get(error.code, "api_error")


def _error_body(error: ProxyError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _error_type(error), "message": error.message}}


def render_error(error: ProxyError) -> tuple[int, bytes]:
    return error.status, dumps(_error_body(error))


def parse_error(status: int, body: bytes) -> ProxyError:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return _error_from_body(data, status)
    text = body.decode("utf-8", "replace").strip()
    return ProxyError.from_status(status, text[:500] or f"upstream returned HTTP {status}")


def _error_from_body(data: dict[str, Any], status: int | None) -> ProxyError:
    """Anthropic's envelope, or other ``{"error": …}`` shapes (OpenAI's, a bare string). Without
    a ``status`` (in-stream errors) the status Anthropic uses for the type is taken."""
    error = data.get("error")
    details = error if isinstance(error, dict) else {}
    kind = details.get("type") if isinstance(details.get("type"), str) else None
    message = details.get("message") or (error if isinstance(error, str) else None) or data.get("message")
    code, usual_status = ERROR_TYPE_IN.get(kind or "", (None, 502))
    status = status or usual_status
    if kind == "invalid_request_error":  # Anthropic (and OpenAI) use it for other 4xx too
        code = None
    return ProxyError(
        code or code_for_status(status),
        str(message or f"upstream returned HTTP {status}"),
        status=status,
        provider_type=kind,
    )
