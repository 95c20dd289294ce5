"""OpenAI Chat Completions (``POST /v1/chat/completions``) ⇄ the canonical model.

Chat is also the dialect of most OpenAI-compatible servers (OpenRouter, vLLM, DeepSeek, …), so the
parsers accept the non-standard bits those add (``reasoning_content`` / ``reasoning`` text, a
``<think>…</think>`` opening of the content, error chunks with empty ``choices``, numeric error
codes, repeated tool-call indexes), while the renderers emit only what the official SDK types
describe — except reasoning: ``render_request`` sends it back on assistant messages when the
server asks (``ReasoningEcho``: servers disagree, from "required" to "refused"), and the response
renderers give it to the client as ``reasoning_content`` (the member DeepSeek, vLLM and most
compatible servers write, which the official SDK keeps as an extra field). Wire facts: docs/wire.md §1.

The OpenAI Responses module shares this module's conventions (content parts, tool choices, response
formats, usage details, error codes); what it reuses is public here.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

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
from translators.errors import CODES, ProxyError, code_for_status
from translators.mapping import effort_for_budget
from translators.sse import SSEEvent
from translators.streams import Encoder, SSEDecoder
from translators.toolnames import client_name, origins, safe_names
from translators.wire import (
    arguments_text,
    as_object,
    check,
    count,
    dump_arguments,
    dumps,
    image_from_url,
    image_url,
    invalid,
    json_type,
    key_path,
    loads,
    objects,
    read,
    refuse,
)

NAME = "openai-chat"
STREAM_CONTENT_TYPE = "text/event-stream"

# -- tables ---------------------------------------------------------------------------------------

# OpenAI rejects longer tool-call ids (400 string_above_max_length, docs/wire.md §6.7) and more
# stop sequences.
MAX_TOOL_CALL_ID = 40
MAX_STOP = 4

SYSTEM_ROLES = frozenset({"system", "developer"})
CHOICE_MODES = frozenset({"none", "auto", "required"})
FORMAT_TYPES = frozenset({"text", "json_object", "json_schema"})

# Part types and assistant keys whose content the canonical model cannot carry -> what they are.
REFUSED_PARTS: dict[str, str] = {"input_audio": "audio input", "file": "file input"}
REFUSED_ASSISTANT_KEYS: dict[str, str] = {
    "audio": "an audio reference",
    "function_call": "a legacy function_call",
}

STOP_IN: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
    "error": "error",  # OpenRouter
}
STOP_OUT: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "error": "stop",
    "max_tokens": "length",
    "context_window": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Canonical fields rendered under their own name.
PLAIN_FIELDS = ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty", "user")

# Provider type/code strings precise enough to name the canonical code whatever the status; our
# own envelopes carry the canonical code itself in ``code``.
CODE_IN: dict[str, str] = {
    **{code: code for code in CODES},
    "invalid_api_key": "authentication",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "model_not_found": "not_found",
    "rate_limit_exceeded": "rate_limited",
    "rate_limit_error": "rate_limited",
    "insufficient_quota": "billing",
    "overloaded_error": "overloaded",
}
# Without a status (in-stream errors), the broad types still say something.
STATUSLESS_CODE_IN: dict[str, str] = {"invalid_request_error": "invalid_request"}
# canonical code -> OpenAI-like `type` for errors the proxy originates.
ERROR_TYPE_OUT: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "too_large": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "billing": "insufficient_quota",
    "rate_limited": "rate_limit_error",
    "overloaded": "server_error",
    "upstream_error": "server_error",
    "upstream_unreachable": "server_error",
    "timeout": "server_error",
    "internal": "server_error",
    "unauthenticated": "authentication_error",
    "forbidden": "permission_error",
    "limit_reached": "rate_limit_error",
}
# OpenAI has no 529; its SDK retries every 5xx alike.
STATUS_OUT: dict[int, int] = {529: 503}

_DONE = b"data: [DONE]\n\n"

# Reasoning some servers (Qwen QwQ, DeepSeek R1 distills on vLLM/llama.cpp/Together) write into
# the content itself, when the content opens with it (docs/wire.md §1.7).
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# Models whose chat template writes the opening <think> into the prompt, so that a server without
# a reasoning parser (vLLM, llama.cpp) returns the reasoning, then `</think>`, then the answer: a
# part of the model name the server answers with, lower case (docs/wire.md §1.7).
TEMPLATE_OPENS_THINK = ("deepseek-r1", "r1-distill", "qwq", "thinking-2507")
REASONING_FIELD = "reasoning_content"  # where Chat clients get the answer's reasoning


@dataclass(frozen=True)
class ReasoningEcho:
    """What an OpenAI-compatible server wants of earlier reasoning on assistant messages, in
    ``field`` (docs/wire.md §1.7). ``mode``:

    - ``drop``: never sent (OpenAI has no such member; Groq refuses it);
    - ``echo``: a message's reasoning text, when it has some;
    - ``always``: every assistant message carries the member, empty when its reasoning is not
      known (DeepSeek and Kimi refuse tool-calling turns without it).
    """

    mode: Literal["drop", "echo", "always"] = "drop"
    field: str = "reasoning_content"


NO_ECHO = ReasoningEcho()

# -- helpers --------------------------------------------------------------------------------------


def _new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def new_call_id() -> str:
    """A tool-call id in OpenAI's shape, for calls that came without one."""
    return f"call_{uuid.uuid4().hex[:24]}"


def short_call_id(call_id: str) -> str:
    """A tool-call id OpenAI accepts: long foreign ids (Gemini signatures, docs/snags.md #9) become
    a stable hash, so a call and its result still match across turns (docs/wire.md §6.7)."""
    if len(call_id) <= MAX_TOOL_CALL_ID:
        return call_id
    return "call_" + hashlib.sha256(call_id.encode()).hexdigest()[:32]


# -- request parsing: content parts ---------------------------------------------------------------

PartParser = Callable[[dict[str, Any], str], Part]
ChoiceParser = Callable[[dict[str, Any], str], ToolChoice]


def parse_text_part(part: dict[str, Any], where: str) -> Text:
    # cache_control is not OpenAI's, but OpenRouter clients send it in Chat bodies (docs/snags.md #18).
    marker = part.get("cache_control")
    return Text(
        text=read(part, "text", where, "a string", required=True),
        cache_control=marker if isinstance(marker, dict) else None,
    )


def parse_refusal_part(part: dict[str, Any], where: str) -> Text:
    return Text(text=read(part, "refusal", where, "a string", required=True))


def _image_part(part: dict[str, Any], where: str) -> Image:
    image = part.get("image_url")
    if isinstance(image, str):  # lenient: some clients send the URL itself
        image = {"url": image}
    at = key_path(where, "image_url")
    image = check(image, at, "an object")
    url = read(image, "url", at, "a string", required=True)
    return image_from_url(url, read(image, "detail", at, "a string"))


_SYSTEM_PARTS: dict[str, PartParser] = {"text": parse_text_part}
_USER_PARTS: dict[str, PartParser] = {"text": parse_text_part, "image_url": _image_part}
_ASSISTANT_PARTS: dict[str, PartParser] = {"text": parse_text_part, "refusal": parse_refusal_part}
_TOOL_PARTS: dict[str, PartParser] = {"text": parse_text_part}


def parse_content(value: Any, where: str, parsers: dict[str, PartParser]) -> list[Part]:
    """``content`` as a string or an array of typed parts read by ``parsers``; empty text is
    dropped, audio and file parts are refused."""
    if value is None or isinstance(value, str):
        return [Text(text=value)] if value else []
    parts: list[Part] = []
    for i, raw in enumerate(check(value, where, "an array")):
        path = key_path(where, i)
        kind = read(check(raw, path, "an object"), "type", path, "a string", required=True)
        if kind in REFUSED_PARTS:
            raise refuse(key_path(path, "type"), REFUSED_PARTS[kind])
        if kind not in parsers:
            raise invalid(key_path(path, "type"), f"unknown part type {kind!r}")
        part = parsers[kind](raw, path)
        if not (isinstance(part, Text) and not part.text):
            parts.append(part)
    return parts


# -- request parsing: messages --------------------------------------------------------------------


def _reasoning_text(obj: dict[str, Any]) -> str:
    """Non-standard reasoning text (DeepSeek ``reasoning_content``, OpenRouter/vLLM ``reasoning``);
    servers that send both send the same text, so the first one wins."""
    for key in ("reasoning_content", "reasoning"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _function_of(obj: dict[str, Any], where: str, what: str) -> dict[str, Any]:
    """The ``function`` object of a typed tool or tool call (``what``); custom ones (grammars,
    free text) are refused."""
    kind = read(obj, "type", where, "a string") or "function"
    if kind == "custom":
        raise refuse(key_path(where, "type"), f"a custom {what}")
    if kind != "function":
        raise invalid(key_path(where, "type"), f"unknown {what} type {kind!r}")
    return read(obj, "function", where, "an object", required=True)


def _tool_call(call: dict[str, Any], where: str) -> ToolCall:
    function = _function_of(call, where, "tool call")
    return ToolCall(
        id=read(call, "id", where, "a string", required=True),
        name=read(function, "name", key_path(where, "function"), "a string", required=True),
        arguments=arguments_text(function.get("arguments")),
    )


def _user_message(item: dict[str, Any], where: str) -> Message:
    content = parse_content(item.get("content"), key_path(where, "content"), _USER_PARTS)
    return Message(role="user", content=content)


def _assistant_message(item: dict[str, Any], where: str) -> Message:
    for key, what in REFUSED_ASSISTANT_KEYS.items():
        if item.get(key) is not None:
            raise refuse(key_path(where, key), what)
    reasoning = _reasoning_text(item)
    parts: list[Part] = [Reasoning(text=reasoning, origin=NAME)] if reasoning else []
    parts += parse_content(item.get("content"), key_path(where, "content"), _ASSISTANT_PARTS)
    if refusal := read(item, "refusal", where, "a string"):
        parts.append(Text(text=refusal))
    parts += [_tool_call(call, path) for path, call in objects(item, "tool_calls", where)]
    return Message(role="assistant", content=parts)


def _tool_message(item: dict[str, Any], where: str) -> Message:
    result = ToolResult(
        tool_call_id=read(item, "tool_call_id", where, "a string", required=True),
        content=parse_content(item.get("content"), key_path(where, "content"), _TOOL_PARTS),
    )
    return Message(role="user", content=[result])


_MESSAGE_PARSERS: dict[str, Callable[[dict[str, Any], str], Message]] = {
    "user": _user_message,
    "assistant": _assistant_message,
    "tool": _tool_message,
}


def _messages(body: dict[str, Any]) -> tuple[list[Text], list[Message]]:
    """System/developer messages hoisted out; a run of ``tool`` messages becomes one user message
    (all results of one assistant turn together, as Anthropic and Gemini need them)."""
    system: list[Text] = []
    messages: list[Message] = []
    previous = ""
    for where, item in objects(body, "messages", "", required=True):
        role = read(item, "role", where, "a string", required=True)
        if role in SYSTEM_ROLES:
            parts = parse_content(item.get("content"), key_path(where, "content"), _SYSTEM_PARTS)
            system += [p for p in parts if isinstance(p, Text)]
            continue
        if role == "function":
            raise refuse(key_path(where, "role"), "the legacy 'function' role")
        if role not in _MESSAGE_PARSERS:
            raise invalid(key_path(where, "role"), f"unknown role {role!r}")
        message = _MESSAGE_PARSERS[role](item, where)
        if role == "tool" and previous == "tool":
            messages[-1].content.extend(message.content)
        else:
            messages.append(message)
        previous = role
    return system, messages


# -- request parsing: tools and options -----------------------------------------------------------


def parse_function(function: dict[str, Any], where: str) -> Tool:
    """A function declaration (``name``, ``description``, ``parameters``, ``strict``) at ``where``."""
    parameters = read(function, "parameters", where, "an object")
    return Tool(
        name=read(function, "name", where, "a string", required=True),
        description=read(function, "description", where, "a string"),
        strict=read(function, "strict", where, "a boolean"),
        **({"parameters": parameters} if parameters is not None else {}),
    )


def _tool(tool: dict[str, Any], where: str) -> Tool:
    return parse_function(_function_of(tool, where, "tool"), key_path(where, "function"))


def _named_choice(value: dict[str, Any], where: str) -> ToolChoice:
    function = read(value, "function", where, "an object", required=True)
    name = read(function, "name", key_path(where, "function"), "a string", required=True)
    return ToolChoice(mode="tool", name=name)


def _allowed_choice(value: dict[str, Any], where: str) -> ToolChoice:
    """The mode survives; the subset itself has no canonical field and is dropped."""
    allowed = read(value, "allowed_tools", where, "an object", required=True)
    return allowed_mode(allowed, key_path(where, "allowed_tools"))


def allowed_mode(allowed: dict[str, Any], where: str) -> ToolChoice:
    """The ``mode`` of an ``allowed_tools`` choice at ``where``."""
    mode = read(allowed, "mode", where, "a string", required=True)
    if mode not in ("auto", "required"):
        raise invalid(key_path(where, "mode"), f"unknown value {mode!r}")
    return ToolChoice(mode=mode)


def _custom_choice(value: dict[str, Any], where: str) -> ToolChoice:
    raise refuse(where, "a custom tool choice")


_CHOICE_OBJECTS: dict[str, ChoiceParser] = {
    "function": _named_choice,
    "allowed_tools": _allowed_choice,
    "custom": _custom_choice,
}


def _unknown_choice(kind: str) -> ProxyError:
    return invalid("tool_choice.type", f"unknown value {kind!r}")


def parse_tool_choice(
    body: dict[str, Any], parsers: dict[str, ChoiceParser], unknown: Callable[[str], ProxyError]
) -> ToolChoice | None:
    """``tool_choice``: a mode string, or an object whose ``type`` picks its parser (``unknown``
    makes the error for any other type)."""
    value = body.get("tool_choice")
    if value is None:
        return None
    if isinstance(value, str):
        if value not in CHOICE_MODES:
            raise invalid("tool_choice", f"unknown value {value!r}")
        return ToolChoice(mode=value)  # type: ignore[arg-type]
    kind = read(check(value, "tool_choice", "an object"), "type", "tool_choice", "a string", required=True)
    if kind not in parsers:
        raise unknown(kind)
    return parsers[kind](value, "tool_choice")


def parse_tools(
    body: dict[str, Any],
    tool: Callable[[dict[str, Any], str], Tool],
    choices: dict[str, ChoiceParser],
    unknown: Callable[[str], ProxyError],
) -> dict[str, Any]:
    """The ChatRequest fields ``tools``, ``tool_choice`` and ``parallel_tool_calls``, each tool read
    by ``tool`` (the counterpart of ``render_tools``)."""
    return {
        "tools": [tool(value, where) for where, value in objects(body, "tools", "")],
        "tool_choice": parse_tool_choice(body, choices, unknown),
        "parallel_tool_calls": read(body, "parallel_tool_calls", "", "a boolean"),
    }


def _stop(body: dict[str, Any]) -> list[str]:
    value = body.get("stop")
    if value is None or isinstance(value, str):
        return [value] if value else []
    return [check(s, key_path("stop", i), "a string") for i, s in enumerate(check(value, "stop", "an array"))]


def _reasoning(body: dict[str, Any]) -> ReasoningConfig | None:
    effort = read(body, "reasoning_effort", "", "a string")
    return ReasoningConfig(effort=effort, enabled=effort != "none") if effort else None


def parse_format(value: dict[str, Any] | None, where: str, *, nested: str | None) -> ResponseFormat | None:
    """A response format object at ``where``; a ``json_schema`` one has its ``name``/``schema``/
    ``strict`` in the object under ``nested`` (Chat), or beside ``type`` (``nested`` None)."""
    if value is None:
        return None
    kind = read(value, "type", where, "a string", required=True)
    if kind not in FORMAT_TYPES:
        raise invalid(key_path(where, "type"), f"unknown value {kind!r}")
    if kind != "json_schema":
        return ResponseFormat(type=kind)  # type: ignore[arg-type]
    schema, at = value, where
    if nested is not None:
        schema, at = read(value, nested, where, "an object", required=True), key_path(where, nested)
    return ResponseFormat(
        type="json_schema",
        name=read(schema, "name", at, "a string"),
        json_schema=read(schema, "schema", at, "an object"),
        strict=read(schema, "strict", at, "a boolean"),
    )


def parse_request(body: Any, *, model: str | None = None, stream: bool | None = None) -> ChatRequest:
    """A Chat Completions request body as canonical; ``model``/``stream`` override the body's."""
    if not isinstance(body, dict):
        raise invalid("body", f"expected a JSON object, got {json_type(body)}")
    if (read(body, "n", "", "an integer") or 1) > 1:
        raise refuse("n", "more than one choice (n > 1)")
    system, messages = _messages(body)
    options = read(body, "stream_options", "", "an object") or {}
    max_tokens = read(body, "max_completion_tokens", "", "an integer")
    request = ChatRequest(
        model=model if model is not None else read(body, "model", "", "a string", required=True),
        system=system,
        messages=messages,
        **parse_tools(body, _tool, _CHOICE_OBJECTS, _unknown_choice),
        max_tokens=max_tokens if max_tokens is not None else read(body, "max_tokens", "", "an integer"),
        temperature=read(body, "temperature", "", "a number"),
        top_p=read(body, "top_p", "", "a number"),
        stop=_stop(body),
        seed=read(body, "seed", "", "an integer"),
        frequency_penalty=read(body, "frequency_penalty", "", "a number"),
        presence_penalty=read(body, "presence_penalty", "", "a number"),
        reasoning=_reasoning(body),
        response_format=parse_format(
            read(body, "response_format", "", "an object"), "response_format", nested="json_schema"
        ),
        stream=stream if stream is not None else bool(read(body, "stream", "", "a boolean")),
        stream_usage=bool(read(options, "include_usage", "stream_options", "a boolean")),
        user=read(body, "safety_identifier", "", "a string") or read(body, "user", "", "a string"),
        metadata=read(body, "metadata", "", "an object") or {},
    )
    return safe_names(request)


# -- request rendering ----------------------------------------------------------------------------


def _render_image(image: Image) -> dict[str, Any]:
    target: dict[str, Any] = {"url": image_url(image)}
    if image.detail:
        target["detail"] = image.detail
    return {"type": "image_url", "image_url": target}


def _render_user_content(parts: list[Text | Image]) -> str | list[dict[str, Any]] | None:
    kept = [p for p in parts if not (isinstance(p, Text) and not p.text)]
    if len(kept) == 1 and isinstance(kept[0], Text):
        return kept[0].text
    return [
        {"type": "text", "text": p.text} if isinstance(p, Text) else _render_image(p) for p in kept
    ] or None


def _render_tool_result(result: ToolResult) -> dict[str, Any]:
    text = "\n\n".join(p.text for p in result.content if isinstance(p, Text) and p.text)
    return {"role": "tool", "tool_call_id": short_call_id(result.tool_call_id), "content": text}


def _render_user(parts: list[Part]) -> list[dict[str, Any]]:
    """One ``tool`` message per result first; images the results carried (Chat tool messages are
    text only, docs/wire.md §6.8) travel in the user message after them, ahead of the user's own
    content."""
    results = [p for p in parts if isinstance(p, ToolResult)]
    carried = [image for r in results for image in r.content if isinstance(image, Image)]
    own = [p for p in parts if isinstance(p, (Text, Image))]
    rendered = [_render_tool_result(r) for r in results]
    content = _render_user_content(carried + own)
    if content is not None:
        rendered.append({"role": "user", "content": content})
    return rendered


def _render_call(call: ToolCall, call_id: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments or "{}"},
    }


def _render_assistant(parts: list[Part], echo: ReasoningEcho) -> list[dict[str, Any]]:
    """Text joined, tool calls listed; Reasoning has no standard Chat field: it goes back only as
    the server's ``echo`` asks (its text, whatever protocol produced it; never a signature)."""
    text = "".join(p.text for p in parts if isinstance(p, Text))
    calls = [_render_call(p, short_call_id(p.id)) for p in parts if isinstance(p, ToolCall)]
    if not text and not calls:
        return []
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if echo.mode != "drop":
        reasoning = reasoning_text(parts)
        if reasoning or echo.mode == "always":
            message[echo.field] = reasoning
    if calls:
        message["tool_calls"] = calls
    return [message]


_MESSAGE_RENDERERS: dict[str, Callable[[list[Part], ReasoningEcho], list[dict[str, Any]]]] = {
    "user": lambda parts, _echo: _render_user(parts),
    "assistant": _render_assistant,
}


def system_text(request: ChatRequest) -> str:
    """The system parts as one text (empty when there is none)."""
    return "\n\n".join(p.text for p in request.system if p.text)


def _render_messages(request: ChatRequest, echo: ReasoningEcho) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    if system := system_text(request):
        rendered.append({"role": "system", "content": system})
    for message in request.messages:
        rendered += _MESSAGE_RENDERERS[message.role](message.content, echo)
    return rendered


def _render_tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _render_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name or ""}}
    return choice.mode


def render_tools(
    request: ChatRequest,
    tool: Callable[[Tool], dict[str, Any]],
    choice: Callable[[ToolChoice], str | dict[str, Any]],
) -> dict[str, Any]:
    """``tools`` and, only with tools (OpenAI rejects them alone), ``tool_choice`` and
    ``parallel_tool_calls``."""
    if not request.tools:
        return {}
    fields: dict[str, Any] = {"tools": [tool(t) for t in request.tools]}
    if request.tool_choice is not None:
        fields["tool_choice"] = choice(request.tool_choice)
    if request.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = request.parallel_tool_calls
    return fields


def render_effort(config: ReasoningConfig | None) -> str | None:
    """OpenAI's ``reasoning_effort`` for a reasoning config (a budget becomes the nearest effort)."""
    if config is None:
        return None
    if not config.enabled:
        return "none"
    if config.effort:
        return config.effort
    return effort_for_budget(config.budget_tokens) if config.budget_tokens is not None else None


def _render_response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    schema: dict[str, Any] = {"name": fmt.name or "response"}  # name is required by OpenAI
    if fmt.json_schema is not None:
        schema["schema"] = fmt.json_schema
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": schema}


def render_request(request: ChatRequest, *, reasoning_echo: ReasoningEcho = NO_ECHO) -> dict[str, Any]:
    """Body for an OpenAI-compatible provider. ``top_k`` has no Chat field and is dropped;
    earlier reasoning goes back as ``reasoning_echo`` says (the target family's rule)."""
    body: dict[str, Any] = {"model": request.model, "messages": _render_messages(request, reasoning_echo)}
    body.update(render_tools(request, _render_tool, _render_tool_choice))
    if request.max_tokens is not None:
        body["max_completion_tokens"] = request.max_tokens
    for field in PLAIN_FIELDS:
        if (value := getattr(request, field)) is not None:
            body[field] = value
    if request.stop:
        body["stop"] = request.stop[:MAX_STOP]
    if effort := render_effort(request.reasoning):
        body["reasoning_effort"] = effort
    if request.response_format is not None:
        body["response_format"] = _render_response_format(request.response_format)
    if request.stream:
        # Always ask for usage: the proxy accounts for it; the encoder decides what the client sees.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


# -- response parsing -----------------------------------------------------------------------------


def _stop_reason(finish: Any, has_calls: bool, refused: bool) -> StopReason | None:
    """Servers that answer ``stop`` while calling tools still called tools (docs/snags.md #17);
    unknown reasons read as a natural end."""
    if finish is None:
        return None
    if refused:
        return "refusal"
    reason = STOP_IN.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    return "tool_use" if has_calls and reason == "end_turn" else reason


def parse_usage(raw: Any, given: str = "prompt_tokens", produced: str = "completion_tokens") -> Usage:
    """OpenAI usage: the ``given``/``produced`` counts and their ``…_details`` objects (Chat's key
    names by default; Responses says ``input_tokens``/``output_tokens``); unknown without an object."""
    if not isinstance(raw, dict):
        return Usage()
    prompt = as_object(raw.get(f"{given}_details"))
    return Usage(
        input_tokens=count(raw.get(given)),
        output_tokens=count(raw.get(produced)),
        cache_read_tokens=count(prompt.get("cached_tokens")),
        cache_write_tokens=count(prompt.get("cache_write_tokens")),
        reasoning_tokens=count(as_object(raw.get(f"{produced}_details")).get("reasoning_tokens")),
    )


def _response_call(call: Any) -> ToolCall | None:
    if not isinstance(call, dict):
        return None
    function = as_object(call.get("function"))
    return ToolCall(
        id=str(call.get("id") or new_call_id()),
        name=str(function.get("name") or ""),
        arguments=arguments_text(function.get("arguments")),
    )


def template_opens_think(model: str) -> bool:
    """Does this model's chat template open the reasoning (``TEMPLATE_OPENS_THINK``)?"""
    name = model.lower()
    return any(part in name for part in TEMPLATE_OPENS_THINK)


def split_think(content: str, opened: bool = False) -> tuple[str, str]:
    """``content`` that opens with ``<think>`` as (reasoning, text): the reasoning runs to
    ``</think>`` (or to the end, when the answer was cut short), the text follows it with its
    leading white space dropped. ``opened``: the prompt opened the tag (``template_opens_think``),
    so the content is reasoning from its start, ``<think>`` or not. Other content is all text."""
    if content.startswith(THINK_OPEN):
        content = content[len(THINK_OPEN) :]
    elif not opened:
        return "", content
    reasoning, _, text = content.partition(THINK_CLOSE)
    return reasoning, text.lstrip()


def _response_parts(message: dict[str, Any], model: str) -> list[Part]:
    reasoning = _reasoning_text(message)
    content = message.get("content")
    if isinstance(content, str):
        # A server that filled a reasoning member has split the reasoning off itself.
        thought, content = split_think(content, not reasoning and template_opens_think(model))
        reasoning += thought
    parts: list[Part] = [Reasoning(text=reasoning, origin=NAME)] if reasoning else []
    for text in (content, message.get("refusal")):
        if isinstance(text, str) and text:
            parts.append(Text(text=text))
    calls = message.get("tool_calls")
    parts += [c for c in map(_response_call, calls if isinstance(calls, list) else []) if c]
    return parts


def _first_choice(chunk: dict[str, Any]) -> dict[str, Any] | None:
    choices = chunk.get("choices")
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None


def parse_response(body: Any) -> ChatResponse:
    """The first choice of a ``chat.completion``; a refusal reads as text with stop ``refusal``."""
    if not isinstance(body, dict):
        raise ProxyError("upstream_error", f"response: expected a JSON object, got {json_type(body)}")
    choice = _first_choice(body) or {}
    message = as_object(choice.get("message"))
    parts = _response_parts(message, str(body.get("model") or ""))
    has_calls = any(isinstance(p, ToolCall) for p in parts)
    stop_reason = _stop_reason(choice.get("finish_reason"), has_calls, bool(message.get("refusal")))
    return response_of(body, parts, stop_reason, parse_usage(body.get("usage")))


def response_of(
    body: dict[str, Any], content: list[Part], stop_reason: StopReason | None, usage: Usage
) -> ChatResponse:
    """An answer with the ``id`` and ``model`` an OpenAI response body carries at its top level."""
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=content,
        stop_reason=stop_reason,
        usage=usage,
    )


# -- response rendering ---------------------------------------------------------------------------


def _finish_reason(reason: StopReason | None, has_calls: bool) -> str:
    finish = STOP_OUT.get(reason or "end_turn", "stop")
    return "tool_calls" if has_calls and finish == "stop" else finish


def _render_usage(usage: Usage) -> dict[str, Any]:
    prompt, completion = usage.input_tokens or 0, usage.output_tokens or 0
    details: dict[str, int] = {"cached_tokens": usage.cache_read_tokens or 0}
    if usage.cache_write_tokens is not None:
        details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
    }


def reasoning_text(parts: list[Part]) -> str:
    """The readable reasoning of an answer or message (no signatures, no redacted blocks)."""
    return "\n\n".join(p.text for p in parts if isinstance(p, Reasoning) and p.text and not p.redacted)


def _client_call(call: ToolCall, known: dict[str, ToolOrigin]) -> dict[str, Any]:
    """A call as the client declared its tool (``known``: the request's ``origins``)."""
    rendered = _render_call(call, call.id)
    rendered["function"]["name"] = client_name(call.name, known)
    return rendered


def render_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    """A ``chat.completion``; Reasoning text becomes ``reasoning_content`` (no standard field:
    the compatible servers' one), tool-call ids are kept as they are (the client echoes them back
    to this proxy, not to OpenAI)."""
    calls = [p for p in response.content if isinstance(p, ToolCall)]
    text = "".join(p.text for p in response.content if isinstance(p, Text))
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if reasoning := reasoning_text(response.content):
        message[REASONING_FIELD] = reasoning
    if calls:
        known = origins(request.tools)
        message["tool_calls"] = [_client_call(call, known) for call in calls]
    return {
        "id": response.id or _new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": response.model or request.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(response.stop_reason, bool(calls)),
            }
        ],
        "usage": _render_usage(response.usage),
    }


# -- stream decoder -------------------------------------------------------------------------------


class ThinkTags:
    """One stream's content, split as ``split_think`` splits a whole one, delta by delta.

    ``state`` is where the content is: ``open`` (nothing seen yet but a start of ``<think>``),
    ``thinking`` (inside the tag), ``after`` (past ``</think>``, white space still dropped) or
    ``plain`` (ordinary text from here on: the decoder then stops asking). A tag may arrive cut
    anywhere; only what could still be one is held back, so at most ``len(THINK_OPEN) - 1``
    characters before the opening tag and ``len(THINK_CLOSE) - 1`` inside the reasoning.

    ``opened``: the model's template opened the tag (``template_opens_think``). The content then
    starts in state ``template``: reasoning from its first character (a ``<think>`` sent anyway is
    dropped) unless a reasoning member arrives first (``parsed_by_server``: the server split it).
    """

    def __init__(self, opened: bool = False) -> None:
        self.state = "template" if opened else "open"
        self._held = ""

    def parsed_by_server(self) -> None:
        """Reasoning came in its own member before any content: the usual rules apply."""
        if self.state == "template" and not self._held:
            self.state = "open"

    def feed(self, text: str, events: list[Event]) -> None:
        _THINK_STEPS[self.state](self, text, events)

    def flush(self, events: list[Event]) -> None:
        """The content ended (or a tool call came): what was held back is what it was about to be."""
        held, self._held = self._held, ""
        if held:
            events.append(
                ReasoningDelta(text=held, origin=NAME) if self.state == "thinking" else TextDelta(text=held)
            )
        if self.state in ("open", "template"):
            self.state = "plain"

    def _template(self, text: str, events: list[Event]) -> None:
        held = self._held + text
        if THINK_OPEN.startswith(held) and held != THINK_OPEN:
            self._held = held  # perhaps the opening tag after all: held until it cannot be
            return
        self._held, self.state = "", "thinking"
        self._thinking(held.removeprefix(THINK_OPEN), events)

    def _open(self, text: str, events: list[Event]) -> None:
        held = self._held + text
        if held.startswith(THINK_OPEN):
            self._held, self.state = "", "thinking"
            self._thinking(held[len(THINK_OPEN) :], events)
        elif THINK_OPEN.startswith(held):
            self._held = held
        else:
            self._held, self.state = "", "plain"
            events.append(TextDelta(text=held))

    def _thinking(self, text: str, events: list[Event]) -> None:
        buffer = self._held + text
        end = buffer.find(THINK_CLOSE)
        if end >= 0:
            self._held, self.state = "", "after"
            if end:
                events.append(ReasoningDelta(text=buffer[:end], origin=NAME))
            self._after(buffer[end + len(THINK_CLOSE) :], events)
            return
        # A tail that could begin the closing tag starts at the last '<' (the tag has no other).
        cut = buffer.rfind("<", max(0, len(buffer) - len(THINK_CLOSE) + 1))
        if cut < 0 or not THINK_CLOSE.startswith(buffer[cut:]):
            cut = len(buffer)
        self._held = buffer[cut:]
        if cut:
            events.append(ReasoningDelta(text=buffer[:cut], origin=NAME))

    def _after(self, text: str, events: list[Event]) -> None:
        if text := text.lstrip():
            self.state = "plain"
            events.append(TextDelta(text=text))

    def _plain(self, text: str, events: list[Event]) -> None:
        events.append(TextDelta(text=text))


_THINK_STEPS: dict[str, Callable[[ThinkTags, str, list[Event]], None]] = {
    "template": ThinkTags._template,
    "open": ThinkTags._open,
    "thinking": ThinkTags._thinking,
    "after": ThinkTags._after,
    "plain": ThinkTags._plain,
}


class StreamDecoder(SSEDecoder):
    """``chat.completion.chunk`` SSE → canonical events.

    Each chunk splits into ordered events (docs/snags.md #3): reasoning, text, refusal, tool calls,
    finish, usage. Content that opens with ``<think>`` (or any content, for a model whose template
    opens the tag, until a reasoning member says the server split it) goes through ``ThinkTags``
    until its reasoning is over; plain content never does after its first delta. Tool calls are keyed by
    the provider's ``index``; a new ``id`` on a known index starts a new call (servers that send
    every parallel call as index 0), and canonical indexes follow the order of first appearance.
    """

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._refused = False
        self._tags: ThinkTags | None = ThinkTags()  # None once the content is plain text
        # provider index -> (canonical index, provider id or None)
        self._calls: dict[Any, tuple[int, str | None]] = {}
        self._open: list[int] = []
        self._next_index = 0

    def _on_event(self, frame: SSEEvent, events: list[Event]) -> None:
        data = frame.data
        if data.startswith("[DONE]"):
            self._end(events)
            return
        try:
            chunk = loads(data)
        except ValueError:
            self._fail(events, ProxyError("upstream_error", f"upstream sent a malformed chunk: {data[:100]}"))
            return
        if not isinstance(chunk, dict):
            return
        if error := chunk.get("error"):  # OpenRouter: empty choices + error (docs/snags.md #6)
            fields = error if isinstance(error, dict) else {"message": str(error)}
            self._fail(events, _error_from_object(fields, None))
            return
        self._start(events, chunk)
        if (choice := _first_choice(chunk)) is not None:
            self._on_choice(choice, events)
        if isinstance(usage := chunk.get("usage"), dict):
            events.append(UsageUpdate(usage=parse_usage(usage)))

    def _start(self, events: list[Event], chunk: dict[str, Any]) -> None:
        if not self._started:
            self._started = True
            model = str(chunk.get("model") or "")
            if self._tags is not None and template_opens_think(model):
                self._tags = ThinkTags(opened=True)
            events.append(MessageStart(id=str(chunk.get("id") or ""), model=model))

    def _on_choice(self, choice: dict[str, Any], events: list[Event]) -> None:
        delta = as_object(choice.get("delta"))
        if reasoning := _reasoning_text(delta):
            if self._tags is not None:
                self._tags.parsed_by_server()
            events.append(ReasoningDelta(text=reasoning, origin=NAME))
        if isinstance(text := delta.get("content"), str) and text:
            if self._tags is None:
                events.append(TextDelta(text=text))
            else:
                self._tags.feed(text, events)
                if self._tags.state == "plain":
                    self._tags = None
        if isinstance(refusal := delta.get("refusal"), str) and refusal:
            self._refused = True
            events.append(TextDelta(text=refusal))
        calls = delta.get("tool_calls")
        if calls and self._tags is not None:
            self._flush_content(events)
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                self._on_tool_call(call, events)
        finish = choice.get("finish_reason")
        if finish is not None and not self._stopped:
            self._stopped = True
            self._flush_content(events)
            self._close_calls(events)
            reason = _stop_reason(finish, self._next_index > 0, self._refused)
            events.append(Stop(reason=reason or "end_turn"))

    def _on_tool_call(self, call: dict[str, Any], events: list[Event]) -> None:
        key = call.get("index") if isinstance(call.get("index"), int) else None
        function = as_object(call.get("function"))
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        known = self._calls.get(key)
        if known is None or (call_id and known[1] and call_id != known[1]):
            known = self._calls[key] = (self._next_index, call_id)
            self._next_index += 1
            self._open.append(known[0])
            name = function.get("name")
            name = name if isinstance(name, str) else ""
            events.append(ToolCallStart(index=known[0], id=call_id or new_call_id(), name=name))
        arguments = function.get("arguments")
        if arguments:
            text = arguments if isinstance(arguments, str) else dump_arguments(arguments)
            events.append(ToolCallDelta(index=known[0], arguments=text))

    def _flush_content(self, events: list[Event]) -> None:
        if self._tags is not None:
            self._tags.flush(events)

    def _close_calls(self, events: list[Event]) -> None:
        events += [ToolCallEnd(index=index) for index in self._open]
        self._open.clear()

    def _end(self, events: list[Event]) -> None:
        self._start(events, {})
        self._flush_content(events)
        self._close_calls(events)
        super()._end(events)


# -- stream encoder -------------------------------------------------------------------------------


class StreamEncoder(Encoder):
    """Canonical events → ``chat.completion.chunk`` SSE ending in ``data: [DONE]``.

    ``id``/``created``/``model`` are fixed at MessageStart and rendered once into a byte prefix
    shared by every chunk. Reasoning text goes out as ``delta.reasoning_content`` chunks. Usage is
    sent (in the final ``choices: []`` chunk) only when the client asked for it with
    ``stream_options.include_usage``.
    """

    def __init__(self, request: ChatRequest) -> None:
        super().__init__()
        self._request = request
        self._head = b""  # 'data: {"id":…,"model":…,"choices":[' once started
        self._calls: dict[int, int] = {}  # canonical index -> Chat index
        self._known = origins(request.tools)
        self._usage = Usage()
        self._stopped = False

    def _on_event(self, event: Event, out: list[bytes]) -> None:
        match event:
            case MessageStart():
                self._start(event, out)
            case TextDelta() if event.text:
                self._chunk(out, {"content": event.text})
            case ReasoningDelta() if event.text and not event.redacted:
                self._chunk(out, {REASONING_FIELD: event.text})
            case ToolCallStart():
                self._on_call_start(event, out)
            case ToolCallDelta() if event.arguments and event.index in self._calls:
                call = {"index": self._calls[event.index], "function": {"arguments": event.arguments}}
                self._chunk(out, {"tool_calls": [call]})
            case UsageUpdate():
                self._usage = self._usage.merged(event.usage)
            case Stop():
                self._on_stop(event.reason, out)
            case End():
                self._finish(out)
            case StreamError():
                error = _error_envelope(ProxyError.from_dict(event.error))
                out.append(b"data: " + dumps(error) + b"\n\n" + _DONE)
                self._finished = True
            # Signature-only reasoning, ToolCallEnd, empty deltas: nothing to send.

    def _start(self, event: MessageStart, out: list[bytes]) -> None:
        if self._head:
            return
        if event.usage:
            self._usage = self._usage.merged(event.usage)
        head = {
            "id": event.id or _new_completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": event.model or self._request.model,
        }
        self._head = b"data: " + dumps(head)[:-1] + b',"choices":['
        self._chunk(out, {"role": "assistant", "content": ""})

    def _chunk(self, out: list[bytes], delta: dict[str, Any], finish: str | None = None) -> None:
        if not self._head:
            self._start(MessageStart(id="", model=""), out)
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        out.append(self._head + dumps(choice) + b"]}\n\n")

    def _on_call_start(self, event: ToolCallStart, out: list[bytes]) -> None:
        if event.index in self._calls:
            return
        index = self._calls[event.index] = len(self._calls)
        function = {"name": client_name(event.name, self._known), "arguments": ""}
        call = {"index": index, "id": event.id, "type": "function", "function": function}
        self._chunk(out, {"tool_calls": [call]})

    def _on_stop(self, reason: StopReason, out: list[bytes]) -> None:
        if not self._stopped:
            self._stopped = True
            self._chunk(out, {}, _finish_reason(reason, bool(self._calls)))

    def _finish(self, out: list[bytes]) -> None:
        self._on_stop("end_turn", out)
        if self._request.stream_usage:
            out.append(self._head + b'],"usage":' + dumps(_render_usage(self._usage)) + b"}\n\n")
        out.append(_DONE)
        self._finished = True


# -- errors ---------------------------------------------------------------------------------------


def _error_from_object(error: dict[str, Any], status: int | None) -> ProxyError:
    """An OpenAI-style error object; OpenRouter puts the HTTP status in ``code`` as a number."""
    kind = error.get("type") if isinstance(error.get("type"), str) else None
    code = error.get("code")
    if count(code) and not status:
        status = code
    label = code if isinstance(code, str) else None
    canonical = CODE_IN.get(label or "") or CODE_IN.get(kind or "")
    if canonical is None:
        statusless = STATUSLESS_CODE_IN.get(kind or "", "upstream_error")
        canonical = code_for_status(status) if status else statusless
    message = error.get("message")
    param = error.get("param")
    return ProxyError(
        canonical,
        message if isinstance(message, str) and message else _no_message(status),
        status=status,
        provider_type=kind,
        param=param if isinstance(param, str) else None,
    )


def _no_message(status: int | None) -> str:
    return f"upstream returned HTTP {status}" if status else "upstream reported an error"


def parse_error(status: int, body: bytes) -> ProxyError:
    """Any upstream error body: OpenAI's envelope, OpenRouter's, a list-wrapped one, or not JSON."""
    text = body.decode("utf-8", "replace")
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return _error_from_object(error, status)
    message = error if isinstance(error, str) and error else text.strip()[:300]
    return ProxyError.from_status(status, message or _no_message(status))


def _error_envelope(error: ProxyError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": error.provider_type or ERROR_TYPE_OUT.get(error.code, "server_error"),
            "param": error.param,
            "code": error.code,
        }
    }


def render_error(error: ProxyError) -> tuple[int, bytes]:
    status = STATUS_OUT.get(error.status, error.status)
    return status, dumps(_error_envelope(error))
