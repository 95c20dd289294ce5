"""OpenAI Responses (``POST /v1/responses``) ⇄ the canonical model.

Responses is OpenAI's item-based API and the only one Codex speaks. The proxy is stateless, so
whatever needs the provider's server-side state (``previous_response_id``, ``store: true``,
stored conversations and prompts, background runs) is refused rather than half-translated, and so
are hosted tools and item types the canonical model cannot carry: a same-protocol route passes
those through untouched (docs/snags.md #22). Requests rendered for a Responses backend are stateless too:
``store: false``, with reasoning replayed as items carrying their ``encrypted_content`` (docs/wire.md §6.11).
Errors use the Chat Completions envelope. Wire facts: docs/wire.md §2.

Compaction (docs/wire.md §2.7): Codex asks for a compacted history with a ``compaction_trigger``
item at the end of an ordinary request and takes back one opaque ``compaction`` item, which it
sends again in later requests. OpenAI seals its summary; on a translated route the target model
writes the summary (the trigger becomes a summarising instruction, tools are switched off), the
encoder seals it into the proxy's own ``compaction`` item, and the parser opens that item again
as a user message, so every backend can continue the conversation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, ClassVar

from translators import openai_chat
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
from translators.errors import ProxyError

# Chat's content parts, tool choices, formats and usage keys serve this module unchanged.
from translators.openai_chat import (
    CODE_IN,
    SYSTEM_ROLES,
    ChoiceParser,
    PartParser,
    allowed_mode,
    new_call_id,
    parse_content,
    parse_format,
    parse_function,
    parse_refusal_part,
    parse_text_part,
    parse_tool_choice,
    parse_usage,
    render_effort,
    render_tools,
    response_of,
    short_call_id,
    system_text,
)
from translators.sse import SSEEvent
from translators.streams import Encoder, SSEDecoder
from translators.toolnames import (
    MAPPED,
    REMOVED,
    WEB_SEARCH,
    Names,
    Sources,
    origins,
    search_options,
    web_search,
)
from translators.wire import (
    arguments_text,
    as_list,
    as_object,
    dumps,
    dumps_text,
    image_from_url,
    image_url,
    invalid,
    json_type,
    key_path,
    objects,
    read,
    refuse,
)

NAME = "openai-responses"
STREAM_CONTENT_TYPE = "text/event-stream"

# -- tables ---------------------------------------------------------------------------------------

_NO_STATE = (
    "needs the provider's server-side state, which is not available when the proxy rewrites this "
    "request (translated to another protocol, or with selector parameters); "
)
_FULL_INPUT = "send the full conversation as input items instead"

# key -> advice, refused whatever their (non-null) value
_STATEFUL_KEYS: dict[str, str] = {
    "previous_response_id": _FULL_INPUT,
    "conversation": _FULL_INPUT,
    "prompt": "send the prompt's text as instructions and input instead",
}
# key -> advice, refused when true
_STATEFUL_FLAGS: dict[str, str] = {
    "store": "send store: false (or leave it out) with the full conversation as input items",
    "background": "send the request without background and wait for the answer",
}


# A custom (freeform) tool becomes a function taking its text in this one parameter.
CUSTOM_INPUT = "input"
CUSTOM_INPUT_NOTE = "The tool's whole input as raw text (not JSON-encoded)."
CUSTOM_GRAMMAR = "The input must match this {syntax} grammar:\n{definition}"

# Hosted tools run at OpenAI; on a translated route web search becomes the target's own
# (translators/toolnames.py) and the others are removed from the request with a warning
# (x-llm-warning), never refused. type -> what the tool did.
HOSTED_TOOLS: dict[str, str] = {
    "web_search": "OpenAI's web search",
    "web_search_preview": "OpenAI's web search",
    "web_search_2025_08_26": "OpenAI's web search",
    "web_search_preview_2025_03_11": "OpenAI's web search",
    "tool_search": "OpenAI's search over deferred tools",
    "file_search": "OpenAI's vector-store search",
    "code_interpreter": "OpenAI's code sandbox",
    "image_generation": "OpenAI's image generation",
    "computer_use_preview": "OpenAI's computer use",
    "mcp": "MCP servers called by OpenAI",
}
WEB_SEARCH_TOOLS = frozenset(kind for kind, what in HOSTED_TOOLS.items() if what == "OpenAI's web search")


STOP_IN: dict[str, StopReason] = {
    "completed": "end_turn",
    "incomplete": "max_tokens",
    "failed": "error",
    "cancelled": "error",
}
INCOMPLETE_IN: dict[str, StopReason] = {"max_output_tokens": "max_tokens", "content_filter": "refusal"}
# stop reason -> (status, incomplete_details.reason); anything else completed
STOP_OUT: dict[str, tuple[str, str | None]] = {
    "max_tokens": ("incomplete", "max_output_tokens"),
    "context_window": ("incomplete", "max_output_tokens"),
    "refusal": ("incomplete", "content_filter"),
    "error": ("failed", None),
}
_TURN_ERROR: dict[str, Any] = {"code": "server_error", "message": "the model ended its turn with an error"}

# canonical field -> Responses key
FIELD_OUT: dict[str, str] = {
    "max_tokens": "max_output_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "user": "user",
}

ITEM_PREFIXES: dict[str, str] = {
    "message": "msg",
    "function_call": "fc",
    "custom_tool_call": "ctc",
    "reasoning": "rs",
    "compaction": "cmp",
}

# Compaction on translated routes (module docstring). The instruction replaces the trigger; the
# summary travels sealed in the proxy's own compaction items (prefix + base64url of the UTF-8
# text) and comes back as a user message opened by SUMMARY_NOTE.
COMPACT_INSTRUCTION = (
    "Your context is full and this conversation will now be replaced by your summary of it. "
    "Write a handoff summary for whoever continues the work: what the user asked for, what has "
    "been done so far (commands run, files changed, results and errors), what remains to do, and "
    "every fact, decision and constraint needed to carry on. Be concise and specific. Do not call "
    "tools; answer with the summary only."
)
SUMMARY_NOTE = "Summary of the conversation so far (it was compacted to save context):\n\n"
SEAL_PREFIX = "llm-proxy.compaction.v1."
FOREIGN_COMPACTION = (
    "removed a compaction item sealed by another provider (only the provider that wrote it can "
    "read it); the conversation continues without that summary"
)
CONTENT_KEYS: dict[str, str] = {"output_text": "text", "refusal": "refusal"}

IMAGE_ERRORS = (
    "invalid_image",
    "invalid_image_format",
    "invalid_base64_image",
    "invalid_image_url",
    "image_too_large",
    "image_too_small",
    "image_parse_error",
    "image_content_policy_violation",
    "invalid_image_mode",
    "image_file_too_large",
    "unsupported_image_media_type",
    "empty_image_file",
    "failed_to_download_image",
    "image_file_not_found",
)
# Responses error codes (and the broad types) -> canonical code.
STREAM_CODE_IN: dict[str, str] = {
    **CODE_IN,
    **dict.fromkeys(IMAGE_ERRORS, "invalid_request"),
    "server_error": "internal",
    "invalid_prompt": "invalid_request",
    "invalid_request_error": "invalid_request",
    "vector_store_timeout": "timeout",
}
# canonical code -> response.error.code, whose SDK type is a closed set; everything else server_error
FAILED_CODE_OUT: dict[str, str] = {"rate_limited": "rate_limit_exceeded", "invalid_request": "invalid_prompt"}

# -- helpers --------------------------------------------------------------------------------------


def _new_response_id() -> str:
    return f"resp_{uuid.uuid4().hex[:24]}"


def _id_base(response_id: str) -> str:
    """Item ids derive from the response id and output index, so one answer gets the same ids
    streamed and not."""
    return hashlib.sha256(response_id.encode()).hexdigest()[:20]


def _item_id(kind: str, base: str, index: int) -> str:
    return f"{ITEM_PREFIXES[kind]}_{base}{index:03d}"


# -- request parsing: refusals of server-side state -----------------------------------------------


def _refuse_state(body: dict[str, Any]) -> None:
    for key, advice in _STATEFUL_KEYS.items():
        if body.get(key) is not None:
            raise ProxyError("invalid_request", f"{key} {_NO_STATE}{advice}", param=key)
    for key, advice in _STATEFUL_FLAGS.items():
        if read(body, key, "", "a boolean"):
            raise ProxyError("invalid_request", f"{key}: true {_NO_STATE}{advice}", param=key)


# -- request parsing: content parts ---------------------------------------------------------------


def _image_part(part: dict[str, Any], where: str) -> Image:
    """``image_url`` is a plain string here (docs/wire.md §6.17); uploaded files live with the provider."""
    if read(part, "file_id", where, "a string") is not None:
        raise refuse(key_path(where, "file_id"), "an uploaded file reference")
    url = read(part, "image_url", where, "a string", required=True)
    return image_from_url(url, read(part, "detail", where, "a string"))


def _refused_part(what: str) -> PartParser:
    def refused(part: dict[str, Any], where: str) -> Part:
        raise refuse(key_path(where, "type"), what)

    return refused


_FILE_PART = _refused_part("file input")
_INPUT_PARTS: dict[str, PartParser] = {
    "input_text": parse_text_part,
    "output_text": parse_text_part,
    "refusal": parse_refusal_part,
    "input_image": _image_part,
    "input_file": _FILE_PART,
}
_SYSTEM_PARTS: dict[str, PartParser] = {
    "input_text": parse_text_part,
    "input_image": _refused_part("an image in a system message"),
    "input_file": _FILE_PART,
}
_RESULT_PARTS: dict[str, PartParser] = {
    "input_text": parse_text_part,
    "input_image": _image_part,
    "input_file": _FILE_PART,
}
# Assistant replays use output_text/refusal, but the SDK's easy form types every role's list as
# input parts, so one table serves user and assistant.
_ROLE_PARTS: dict[str, dict[str, PartParser]] = {
    "user": _INPUT_PARTS,
    "assistant": _INPUT_PARTS,
    "system": _SYSTEM_PARTS,
    "developer": _SYSTEM_PARTS,
}


# -- request parsing: input items -----------------------------------------------------------------


@dataclass
class _Tools:
    """The request's tools as they are read: ``tools`` first, then each ``additional_tools`` item
    (Codex's code mode declares tools mid-conversation); calls in history use their flat names."""

    names: Names = field(default_factory=Names)
    tools: list[Tool] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    search: dict[str, Any] | None = None  # a hosted web search's options (toolnames.WEB_SEARCH)

    def add(self, tools: list[Tool]) -> None:
        """A tool declared again (in ``tools`` and an ``additional_tools`` item) is sent once:
        providers refuse duplicate names."""
        known = {tool.name for tool in self.tools}
        self.tools += [tool for tool in tools if tool.name not in known]


ItemParser = Callable[[dict[str, Any], str, _Tools], tuple[str, list[Part]]]


def _message_item(item: dict[str, Any], where: str, _tools: _Tools) -> tuple[str, list[Part]]:
    role = read(item, "role", where, "a string", required=True)
    if role not in _ROLE_PARTS:
        raise invalid(key_path(where, "role"), f"unknown role {role!r}")
    return role, parse_content(item.get("content"), key_path(where, "content"), _ROLE_PARTS[role])


def _flat_name(item: dict[str, Any], where: str, tools: _Tools) -> str:
    name = read(item, "name", where, "a string", required=True)
    return tools.names.of(name, read(item, "namespace", where, "a string"))


def _call_item(item: dict[str, Any], where: str, tools: _Tools) -> tuple[str, list[Part]]:
    call = ToolCall(
        id=read(item, "call_id", where, "a string", required=True),
        name=_flat_name(item, where, tools),
        arguments=arguments_text(item.get("arguments")),
    )
    return "assistant", [call]


def _custom_call_item(item: dict[str, Any], where: str, tools: _Tools) -> tuple[str, list[Part]]:
    """A freeform call replays as a call of its function with the text as ``input``."""
    text = read(item, "input", where, "a string", required=True)
    call = ToolCall(
        id=read(item, "call_id", where, "a string", required=True),
        name=_flat_name(item, where, tools),
        arguments=dumps_text({CUSTOM_INPUT: text}),
    )
    return "assistant", [call]


def _additional_tools_item(item: dict[str, Any], where: str, tools: _Tools) -> tuple[str, list[Part]]:
    for at, tool in objects(item, "tools", where):
        tools.add(_declare(tool, at, None, tools))
    return "developer", []


def _call_output_item(item: dict[str, Any], where: str, _tools: _Tools) -> tuple[str, list[Part]]:
    """The SDK marks ``call_id`` optional, but without it the result matches no call."""
    if item.get("output") is None:
        raise invalid(key_path(where, "output"), "required, expected a string or an array")
    content = parse_content(item["output"], key_path(where, "output"), _RESULT_PARTS)
    result = ToolResult(
        tool_call_id=read(item, "call_id", where, "a string", required=True),
        content=[p for p in content if isinstance(p, (Text, Image))],
    )
    return "user", [result]


def _reasoning_item(item: dict[str, Any], where: str, _tools: _Tools) -> tuple[str, list[Part]]:
    summary = [read(s, "text", at, "a string", required=True) for at, s in objects(item, "summary", where)]
    signature = read(item, "encrypted_content", where, "a string")
    reasoning = Reasoning(text="\n\n".join(summary), signature=signature, origin=NAME)
    return "assistant", [reasoning] if reasoning.text or signature else []


def seal(summary: str) -> str:
    """The ``encrypted_content`` of the proxy's own compaction item."""
    return SEAL_PREFIX + base64.urlsafe_b64encode(summary.encode()).decode()


def unseal(content: str) -> str | None:
    """The summary inside one of the proxy's compaction items; None for anyone else's."""
    if not content.startswith(SEAL_PREFIX):
        return None
    try:
        return base64.urlsafe_b64decode(content[len(SEAL_PREFIX) :].encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def compaction_item(item_id: str, summary: str) -> dict[str, Any]:
    return {"type": "compaction", "id": item_id, "encrypted_content": seal(summary)}


def _trigger_item(item: dict[str, Any], where: str, _tools: _Tools) -> tuple[str, list[Part]]:
    """Codex's request to compact: the target model is asked for the summary instead."""
    return "user", [Text(text=COMPACT_INSTRUCTION)]


def _compaction_item(item: dict[str, Any], where: str, tools: _Tools) -> tuple[str, list[Part]]:
    """An earlier compaction: the proxy's own is read back as the summary it holds."""
    summary = unseal(read(item, "encrypted_content", where, "a string", required=True))
    if summary is None:
        tools.warnings.append(f"{where}: {FOREIGN_COMPACTION}")
        return "user", []
    return "user", [Text(text=SUMMARY_NOTE + summary)]


def compacting(request: ChatRequest) -> bool:
    """Is this the request a ``compaction_trigger`` ended (its answer is a compaction item)?"""
    last = request.messages[-1] if request.messages else None
    return last is not None and last.role == "user" and last.content == [Text(text=COMPACT_INSTRUCTION)]


def _search_call_item(item: dict[str, Any], where: str, _tools: _Tools) -> tuple[str, list[Part]]:
    """A web search OpenAI ran in an earlier turn: what it found is in the answer that followed."""
    return "assistant", []


_ITEM_PARSERS: dict[str, ItemParser] = {
    "message": _message_item,
    "web_search_call": _search_call_item,
    "compaction_trigger": _trigger_item,
    "compaction": _compaction_item,
    "function_call": _call_item,
    "function_call_output": _call_output_item,
    "custom_tool_call": _custom_call_item,
    "custom_tool_call_output": _call_output_item,
    "additional_tools": _additional_tools_item,
    "reasoning": _reasoning_item,
}
_RESULT_ITEMS = frozenset({"function_call_output", "custom_tool_call_output"})


def _joins(role: str, kind: str, previous: str) -> bool:
    """Items of one assistant turn (reasoning, text, calls) form one message, and a run of
    results one user message (all results of a turn together, as Anthropic and Gemini need)."""
    return role == "assistant" or (kind in _RESULT_ITEMS and previous in _RESULT_ITEMS)


def _conversation(body: dict[str, Any], tools: _Tools) -> tuple[list[Text], list[Message]]:
    """``instructions`` first, then system/developer messages hoisted in order."""
    instructions = read(body, "instructions", "", "a string")
    system = [Text(text=instructions)] if instructions else []
    if isinstance(text := body.get("input"), str):
        return system, [Message(role="user", content=[Text(text=text)])] if text else []
    messages: list[Message] = []
    previous = ""
    for where, item in objects(body, "input", ""):
        kind = read(item, "type", where, "a string") or "message"
        if kind not in _ITEM_PARSERS:
            raise refuse(key_path(where, "type"), f"a {kind!r} item")
        role, parts = _ITEM_PARSERS[kind](item, where, tools)
        if role in SYSTEM_ROLES:
            system += [p for p in parts if isinstance(p, Text)]
            continue
        if parts and messages and messages[-1].role == role and _joins(role, kind, previous):
            messages[-1].content.extend(parts)
        elif parts:
            messages.append(Message(role=role, content=parts))  # type: ignore[arg-type]
        previous = kind
    return system, messages


# -- request parsing: tools and options -----------------------------------------------------------


def _custom(tool: dict[str, Any], where: str, namespace: str | None) -> tuple[Tool, ToolOrigin]:
    """A freeform tool as a function of one string; its grammar is told in the description."""
    name = read(tool, "name", where, "a string", required=True)
    notes = [read(tool, "description", where, "a string") or ""]
    fmt = read(tool, "format", where, "an object") or {}
    if fmt.get("type") == "grammar":
        syntax = read(fmt, "syntax", key_path(where, "format"), "a string") or "lark"
        definition = read(fmt, "definition", key_path(where, "format"), "a string") or ""
        notes.append(CUSTOM_GRAMMAR.format(syntax=syntax, definition=definition))
    description = "\n\n".join(note for note in notes if note) or None
    parameters = {
        "type": "object",
        "properties": {CUSTOM_INPUT: {"type": "string", "description": CUSTOM_INPUT_NOTE}},
        "required": [CUSTOM_INPUT],
    }
    tool_ = Tool(name=name, description=description, parameters=parameters)
    return tool_, ToolOrigin(kind="custom", name=name, namespace=namespace)


def _declare(tool: dict[str, Any], where: str, namespace: str | None, tools: _Tools) -> list[Tool]:
    """A declared tool as the flat functions providers accept (none for a hosted tool, which is
    removed with a warning; docs/wire.md §2.6)."""
    kind = read(tool, "type", where, "a string") or "function"
    if kind == "function":
        function = parse_function(tool, where)
        origin = ToolOrigin(name=function.name, namespace=namespace) if namespace else None
        return [tools.names.declare(function, origin)]
    if kind == "custom":
        return [tools.names.declare(*_custom(tool, where, namespace))]
    if kind == "namespace" and namespace is None:
        inner = read(tool, "name", where, "a string", required=True)
        return [t for at, value in objects(tool, "tools", where) for t in _declare(value, at, inner, tools)]
    if kind in WEB_SEARCH_TOOLS:
        filters = read(tool, "filters", where, "an object") or {}
        tools.search = {**search_options(tool), **search_options(filters)}
        tools.warnings.append(MAPPED.format(where=where, kind=kind))
        return []
    if kind in HOSTED_TOOLS:
        tools.warnings.append(REMOVED.format(where=where, kind=kind, what=HOSTED_TOOLS[kind]))
        return []
    raise refuse(key_path(where, "type"), f"a {kind!r} tool")


def _tools(body: dict[str, Any], tools: _Tools) -> None:
    for where, value in objects(body, "tools", ""):
        tools.add(_declare(value, where, None, tools))


def _choice(body: dict[str, Any], tools: _Tools) -> ToolChoice | None:
    """A named choice names the client's tool; providers know it by its flat name."""
    choice = parse_tool_choice(body, _CHOICE_OBJECTS, _unknown_choice)
    if choice is not None and choice.mode == "tool" and choice.name:
        choice = choice.model_copy(update={"name": tools.names.of(choice.name)})
    return choice


def _named_choice(value: dict[str, Any], where: str) -> ToolChoice:
    return ToolChoice(mode="tool", name=read(value, "name", where, "a string", required=True))


# ``allowed_tools`` keeps its mode; the subset itself has no canonical field and is dropped.
_CHOICE_OBJECTS: dict[str, ChoiceParser] = {
    "function": _named_choice,
    "custom": _named_choice,
    "allowed_tools": allowed_mode,
}


def _unknown_choice(kind: str) -> ProxyError:
    """Hosted-tool and custom choices run at OpenAI."""
    return refuse("tool_choice", f"a {kind!r} tool choice")


def _reasoning(body: dict[str, Any]) -> ReasoningConfig | None:
    """Asking for a summary is asking to see the thoughts."""
    value = read(body, "reasoning", "", "an object") or {}
    effort = read(value, "effort", "reasoning", "a string")
    summary = read(value, "summary", "reasoning", "a string") or read(
        value, "generate_summary", "reasoning", "a string"
    )
    if effort is None and summary is None:
        return None
    include = True if summary else None
    return ReasoningConfig(effort=effort, enabled=effort != "none", include_thoughts=include)


def _response_format(body: dict[str, Any]) -> ResponseFormat | None:
    """``text.format`` is flat: no ``json_schema`` wrapper as in Chat (docs/wire.md §6.18)."""
    text = read(body, "text", "", "an object") or {}
    return parse_format(read(text, "format", "text", "an object"), "text.format", nested=None)


def _metadata(body: dict[str, Any], tools: _Tools) -> dict[str, Any]:
    metadata = read(body, "metadata", "", "an object") or {}
    return metadata if tools.search is None else {**metadata, WEB_SEARCH: tools.search}


def parse_request(body: Any, *, model: str | None = None, stream: bool | None = None) -> ChatRequest:
    """A Responses request body as canonical; ``model``/``stream`` override the body's."""
    if not isinstance(body, dict):
        raise invalid("body", f"expected a JSON object, got {json_type(body)}")
    _refuse_state(body)
    tools = _Tools()
    _tools(body, tools)
    system, messages = _conversation(body, tools)
    request = ChatRequest(
        model=model if model is not None else read(body, "model", "", "a string", required=True),
        system=system,
        messages=messages,
        tools=tools.tools,
        tool_choice=_choice(body, tools),
        parallel_tool_calls=read(body, "parallel_tool_calls", "", "a boolean"),
        warnings=tools.warnings,
        max_tokens=read(body, "max_output_tokens", "", "an integer"),
        temperature=read(body, "temperature", "", "a number"),
        top_p=read(body, "top_p", "", "a number"),
        reasoning=_reasoning(body),
        response_format=_response_format(body),
        stream=stream if stream is not None else bool(read(body, "stream", "", "a boolean")),
        user=read(body, "safety_identifier", "", "a string") or read(body, "user", "", "a string"),
        metadata=_metadata(body, tools),
    )
    if compacting(request) and request.tools:
        # The tools stay declared (Anthropic refuses calls in history without them), unusable.
        request.tool_choice = ToolChoice(mode="none")
    return request


# -- request rendering ----------------------------------------------------------------------------


def _render_image(image: Image) -> dict[str, Any]:
    return {"type": "input_image", "image_url": image_url(image), "detail": image.detail or "auto"}


def _render_input(part: Text | Image) -> dict[str, Any]:
    return {"type": "input_text", "text": part.text} if isinstance(part, Text) else _render_image(part)


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def _render_content(role: str, parts: list[Part]) -> list[dict[str, Any]]:
    """One message item for a run of text/images; ids are left out: with ``store: false`` the
    API would look them up and fail."""
    kept = [p for p in parts if isinstance(p, (Text, Image)) and not (isinstance(p, Text) and not p.text)]
    if role == "assistant":
        content = [_output_text(p.text) for p in kept if isinstance(p, Text)]
    else:
        content = [_render_input(p) for p in kept]
    return [{"type": "message", "role": role, "content": content}] if content else []


def _render_result(result: ToolResult) -> dict[str, Any]:
    """Text-only output as a string; with images, as a list of input parts."""
    kept = [p for p in result.content if not (isinstance(p, Text) and not p.text)]
    if any(isinstance(p, Image) for p in kept):
        output: str | list[dict[str, Any]] = [_render_input(p) for p in kept]
    else:
        output = "\n\n".join(p.text for p in kept if isinstance(p, Text))
    return {"type": "function_call_output", "call_id": short_call_id(result.tool_call_id), "output": output}


def _replayable(part: Reasoning | ReasoningDelta) -> str | None:
    """``encrypted_content`` is bound to OpenAI: only our own origin's signature goes back
    (docs/snags.md #13)."""
    return part.signature if part.origin == NAME else None


def _summary(text: str) -> list[dict[str, Any]]:
    return [{"type": "summary_text", "text": text}] if text else []


def _render_part(part: Part) -> list[dict[str, Any]]:
    """One non-content part as items: reasoning only with a signature to replay (its id is left
    out, as Codex does), calls with ids OpenAI accepts (docs/wire.md §6.7)."""
    if isinstance(part, ToolCall):
        call = {"type": "function_call", "call_id": short_call_id(part.id), "name": part.name}
        return [{**call, "arguments": part.arguments or "{}"}]
    if isinstance(part, ToolResult):
        return [_render_result(part)]
    if isinstance(part, Reasoning) and (signature := _replayable(part)):
        return [{"type": "reasoning", "summary": _summary(part.text), "encrypted_content": signature}]
    return []


def _is_content(part: Part) -> bool:
    return isinstance(part, (Text, Image))


def _render_items(request: ChatRequest) -> list[dict[str, Any]]:
    """Parts in order: runs of text/images become message items, the rest items of their own, so
    reasoning stays before the calls it preceded."""
    items: list[dict[str, Any]] = []
    for message in request.messages:
        for is_content, run in groupby(message.content, key=_is_content):
            if is_content:
                items += _render_content(message.role, list(run))
            else:
                items += [item for part in run for item in _render_part(part)]
    return items


def _render_tool(tool: Tool) -> dict[str, Any]:
    """Flat; the SDK requires ``parameters`` and ``strict`` keys (nullable)."""
    rendered: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description:
        rendered["description"] = tool.description
    return {**rendered, "parameters": tool.parameters, "strict": tool.strict}


def _render_search(search: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's web search with the options it has (no blocked domains, no per-turn limit)."""
    rendered: dict[str, Any] = {"type": "web_search"}
    if domains := search.get("allowed_domains"):
        rendered["filters"] = {"allowed_domains": domains}
    if location := search.get("user_location"):
        rendered["user_location"] = location
    return rendered


def _render_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "tool":
        return {"type": "function", "name": choice.name or ""}
    return choice.mode


def _render_reasoning(config: ReasoningConfig | None) -> dict[str, Any] | None:
    effort = render_effort(config)
    if effort is None:
        return None
    rendered: dict[str, Any] = {"effort": effort}
    if config is not None and config.include_thoughts:
        rendered["summary"] = "auto"
    return rendered


def _render_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    # name and schema are required keys.
    rendered: dict[str, Any] = {
        "type": "json_schema",
        "name": fmt.name or "response",
        "schema": fmt.json_schema if fmt.json_schema is not None else {"type": "object"},
    }
    if fmt.strict is not None:
        rendered["strict"] = fmt.strict
    return rendered


def render_request(request: ChatRequest) -> dict[str, Any]:
    """Body for a Responses backend, always stateless (``store: false``). Responses has no stop
    sequences, seed, penalties or top_k: they are dropped. Encrypted reasoning is asked for only
    when reasoning is (other models reject the include)."""
    body: dict[str, Any] = {"model": request.model}
    if system := system_text(request):
        body["instructions"] = system
    body["input"] = _render_items(request)
    body.update(render_tools(request, _render_tool, _render_tool_choice))
    if (search := web_search(request.metadata)) is not None:
        body["tools"] = [*body.get("tools", []), _render_search(search)]
    for field_, key in FIELD_OUT.items():
        if (value := getattr(request, field_)) is not None:
            body[key] = value
    if reasoning := _render_reasoning(request.reasoning):
        body["reasoning"] = reasoning
        if reasoning["effort"] != "none":
            body["include"] = ["reasoning.encrypted_content"]
    if request.response_format is not None:
        body["text"] = {"format": _render_format(request.response_format)}
    if request.stream:
        body["stream"] = True
    body["store"] = False
    return body


# -- response parsing -----------------------------------------------------------------------------


def _stop_reason(status: Any, details: Any, has_calls: bool, refused: bool) -> StopReason | None:
    """There is no finish reason (docs/wire.md §6.14): tool use is read from the calls, a refusal part or a
    content filter means refusal, an unexplained ``incomplete`` an early end."""
    reason = STOP_IN.get(status) if isinstance(status, str) else None
    if reason == "max_tokens" and isinstance(details, dict):
        reason = INCOMPLETE_IN.get(details.get("reason"), "max_tokens")  # type: ignore[arg-type]
    if reason == "end_turn" and refused:
        return "refusal"
    return "tool_use" if reason == "end_turn" and has_calls else reason


def _text_of(value: Any, key: str) -> str:
    text = value.get(key) if isinstance(value, dict) else None
    return text if isinstance(text, str) else ""


def _message_texts(item: dict[str, Any]) -> list[str]:
    """Visible text of an output message, refusals included."""
    parts = [c for c in as_list(item.get("content")) if isinstance(c, dict)]
    return [text for c in parts if (text := _text_of(c, CONTENT_KEYS.get(str(c.get("type")), "")))]


def _cite(item: dict[str, Any], sources: Sources) -> None:
    """An output message's ``url_citation`` annotations (what a web search found)."""
    if item.get("type") != "message":
        return
    for part in as_list(item.get("content")):
        for note in as_list(part.get("annotations")) if isinstance(part, dict) else []:
            if isinstance(note, dict) and note.get("type") == "url_citation":
                sources.add(note.get("url"), note.get("title"))


def _refused(item: dict[str, Any]) -> bool:
    return any(isinstance(c, dict) and c.get("type") == "refusal" for c in as_list(item.get("content")))


def _output_call(item: dict[str, Any]) -> ToolCall:
    call_id = item.get("call_id") or item.get("id")
    return ToolCall(
        id=call_id if isinstance(call_id, str) else new_call_id(),
        name=_text_of(item, "name"),
        arguments=arguments_text(item.get("arguments")),
    )


def _output_reasoning(item: dict[str, Any]) -> Reasoning | None:
    text = "\n\n".join(t for s in as_list(item.get("summary")) if (t := _text_of(s, "text")))
    signature = item.get("encrypted_content") if isinstance(item.get("encrypted_content"), str) else None
    return Reasoning(text=text, signature=signature, origin=NAME) if text or signature else None


def _output_parts(item: dict[str, Any]) -> list[Part]:
    """One output item; hosted-tool items (web search, …) have no canonical part."""
    kind = item.get("type")
    if kind == "message":
        return [Text(text=text) for text in _message_texts(item)]
    if kind == "function_call":
        return [_output_call(item)]
    reasoning = _output_reasoning(item) if kind == "reasoning" else None
    return [reasoning] if reasoning else []


def parse_response(body: Any) -> ChatResponse:
    if not isinstance(body, dict):
        raise ProxyError("upstream_error", f"response: expected a JSON object, got {json_type(body)}")
    items = [item for item in as_list(body.get("output")) if isinstance(item, dict)]
    parts = [part for item in items for part in _output_parts(item)]
    sources = Sources()
    for item in items:
        _cite(item, sources)
    if said := sources.text():
        parts.append(Text(text=said))
    refused = any(_refused(item) for item in items if item.get("type") == "message")
    has_calls = any(isinstance(p, ToolCall) for p in parts)
    stop_reason = _stop_reason(body.get("status"), body.get("incomplete_details"), has_calls, refused)
    return response_of(body, parts, stop_reason, _parse_usage(body.get("usage")))


def _parse_usage(raw: Any) -> Usage:
    return parse_usage(raw, "input_tokens", "output_tokens")


# -- response rendering ---------------------------------------------------------------------------


def _message_output(item_id: str, text: str) -> dict[str, Any]:
    content = [_output_text(text)] if text else []
    return {"type": "message", "id": item_id, "role": "assistant", "status": "completed", "content": content}


def custom_input(arguments: str) -> str:
    """A freeform call's text from its function arguments (the raw text if they are not ours)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return arguments
    text = value.get(CUSTOM_INPUT) if isinstance(value, dict) else None
    return text if isinstance(text, str) else arguments


def _call_fields(name: str, origin: ToolOrigin | None) -> dict[str, Any]:
    """A call's type and the names the client declared (``namespace`` when it had one)."""
    if origin is None:
        return {"type": "function_call", "name": name}
    kind = "custom_tool_call" if origin.kind == "custom" else "function_call"
    namespace = {"namespace": origin.namespace} if origin.namespace else {}
    return {"type": kind, "name": origin.name, **namespace}


def _call_output(item_id: str, call: ToolCall, known: dict[str, ToolOrigin]) -> dict[str, Any]:
    fields = _call_fields(call.name, known.get(call.name))
    item = {**fields, "id": item_id, "call_id": call.id or new_call_id()}
    if fields["type"] == "custom_tool_call":
        return {**item, "input": custom_input(call.arguments)}
    return {**item, "arguments": call.arguments or "{}", "status": "completed"}


def _reasoning_output(item_id: str, text: str, signature: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": _summary(text)}
    if signature is not None:
        item["encrypted_content"] = signature
    return item


def _shows(part: Part) -> bool:
    return (
        isinstance(part, ToolCall)
        or (isinstance(part, Text) and bool(part.text))
        or (isinstance(part, Reasoning) and bool(part.text or _replayable(part)))
    )


def _output_item(part: Part, base: str, index: int, known: dict[str, ToolOrigin]) -> dict[str, Any]:
    if isinstance(part, ToolCall):
        return _call_output(_item_id("function_call", base, index), part, known)
    assert isinstance(part, Reasoning)
    return _reasoning_output(_item_id("reasoning", base, index), part.text, _replayable(part))


def _output_items(content: list[Part], base: str, known: dict[str, ToolOrigin]) -> list[dict[str, Any]]:
    """A run of text is one message item, as a stream renders it (parts that show nothing do not
    split it); foreign reasoning shows its text without a signature."""
    items: list[dict[str, Any]] = []
    for is_text, run in groupby(filter(_shows, content), key=lambda p: isinstance(p, Text)):
        if is_text:
            text = "".join(p.text for p in run if isinstance(p, Text))
            items.append(_message_output(_item_id("message", base, len(items)), text))
        else:
            items += [_output_item(part, base, len(items) + i, known) for i, part in enumerate(run)]
    return items


def _outcome(reason: StopReason | None) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    """(status, incomplete_details, error) for a stop reason."""
    status, why = STOP_OUT.get(reason or "end_turn", ("completed", None))
    return status, {"reason": why} if why else None, _TURN_ERROR if status == "failed" else None


def _render_usage(usage: Usage) -> dict[str, Any]:
    given, produced = usage.input_tokens or 0, usage.output_tokens or 0
    return {
        "input_tokens": given,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens or 0,
            "cache_write_tokens": usage.cache_write_tokens or 0,
        },
        "output_tokens": produced,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": given + produced,
    }


def _echo(request: ChatRequest) -> dict[str, Any]:
    """Request fields a Response repeats (the SDK type requires some of them)."""
    choice = request.tool_choice
    return {
        "instructions": system_text(request) or None,
        "metadata": {k: v for k, v in request.metadata.items() if isinstance(v, str)},
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_output_tokens": request.max_tokens,
        "tool_choice": _render_tool_choice(choice) if choice is not None else "auto",
        "tools": [_render_tool(tool) for tool in request.tools],
    }


def _response_body(
    head: dict[str, Any],
    echo: dict[str, Any],
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        **head,
        "status": status,
        "output": output,
        "usage": usage,
        "incomplete_details": incomplete,
        "error": error,
        **echo,
    }


def _head(response_id: str, model: str) -> dict[str, Any]:
    return {"id": response_id, "object": "response", "created_at": int(time.time()), "model": model}


def render_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    """A complete Response object; a refusal or a cut-off answer is ``incomplete``."""
    response_id = response.id or _new_response_id()
    status, incomplete, error = _outcome(response.stop_reason)
    base = _id_base(response_id)
    if compacting(request):
        summary = "".join(p.text for p in response.content if isinstance(p, Text))
        output = [compaction_item(_item_id("compaction", base, 0), summary)]
    else:
        output = _output_items(response.content, base, origins(request.tools))
    return _response_body(
        _head(response_id, response.model or request.model),
        _echo(request),
        status,
        output,
        _render_usage(response.usage),
        incomplete,
        error,
    )


def compaction_response(body: dict[str, Any], response: ChatResponse) -> dict[str, Any]:
    """``POST /v1/responses/compact``'s answer made from a summary (``response``'s text): the
    request's user messages, then one compaction item holding the summary, as OpenAI answers."""
    response_id = response.id or _new_response_id()
    base = _id_base(response_id)
    given = body.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else as_list(given)
    kept = [
        {"type": "message", "id": _item_id("message", base, i), "role": "user", "content": _input_parts(item)}
        for i, item in enumerate(i for i in items if isinstance(i, dict) and _is_user_message(i))
    ]
    summary = "".join(p.text for p in response.content if isinstance(p, Text))
    return {
        "id": response_id,
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": [*kept, compaction_item(_item_id("compaction", base, len(kept)), summary)],
        "usage": _render_usage(response.usage),
    }


def _is_user_message(item: dict[str, Any]) -> bool:
    return item.get("type", "message") == "message" and item.get("role") == "user"


def _input_parts(item: dict[str, Any]) -> Any:
    """A message's content as parts (the easy form's string becomes one ``input_text``)."""
    content = item.get("content")
    return [{"type": "input_text", "text": content}] if isinstance(content, str) else content


# -- stream decoder -------------------------------------------------------------------------------

Handler = Callable[["StreamDecoder", dict[str, Any], list[Event]], None]


def _key(data: dict[str, Any]) -> Any:
    """Which output item an event belongs to: its ``output_index``, else its item id."""
    index = data.get("output_index")
    if isinstance(index, int):
        return index
    return data.get("item_id") or as_object(data.get("item")).get("id")


class StreamDecoder(SSEDecoder):
    """Typed Responses events → canonical events.

    Content comes from the delta events; an item's ``output_item.done`` fills in only what no
    delta carried (reasoning ``encrypted_content`` always, whole items from servers that send no
    deltas). Calls are keyed by output index and numbered in order of first appearance. The
    terminal ``response.completed``/``.incomplete`` carries the usage and ends the stream.
    """

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._refused = False
        self._calls: dict[Any, int] = {}  # item key -> canonical index
        self._open: list[int] = []
        self._argued: set[int] = set()  # calls that got argument deltas
        self._texted: set[Any] = set()  # message items that got text deltas
        self._summaries: dict[Any, Any] = {}  # reasoning item -> last summary_index with text
        self._sources = Sources()  # a web search's citations, told as text at the end

    def _on_event(self, frame: SSEEvent, events: list[Event]) -> None:
        try:
            payload = json.loads(frame.data)
        except ValueError:
            message = f"upstream sent a malformed event: {frame.data[:100]}"
            self._fail(events, ProxyError("upstream_error", message))
            return
        if not isinstance(payload, dict):
            return
        kind = payload.get("type") or frame.event
        if kind not in ("error", "response.failed"):
            self._start(events, as_object(payload.get("response")))
        if handler := self._HANDLERS.get(kind):  # type: ignore[arg-type]
            handler(self, payload, events)

    def _start(self, events: list[Event], response: dict[str, Any]) -> None:
        if not self._started:
            self._started = True
            response_id, model = response.get("id"), response.get("model")
            events.append(MessageStart(id=str(response_id or ""), model=str(model or "")))

    # content

    def _on_text(self, data: dict[str, Any], events: list[Event]) -> None:
        self._texted.add(_key(data))
        if isinstance(delta := data.get("delta"), str) and delta:
            events.append(TextDelta(text=delta))

    def _on_refusal(self, data: dict[str, Any], events: list[Event]) -> None:
        self._refused = True
        self._on_text(data, events)

    def _on_summary(self, data: dict[str, Any], events: list[Event]) -> None:
        """Summary parts join with a blank line, as ``parse_response`` joins them."""
        key, index, delta = _key(data), data.get("summary_index"), data.get("delta")
        if not isinstance(delta, str) or not delta:
            return
        gap = "\n\n" if key in self._summaries and self._summaries[key] != index else ""
        self._summaries[key] = index
        events.append(ReasoningDelta(text=gap + delta, origin=NAME))

    def _on_arguments(self, data: dict[str, Any], events: list[Event]) -> None:
        index = self._calls.get(_key(data))
        if index is not None and isinstance(delta := data.get("delta"), str) and delta:
            self._argued.add(index)
            events.append(ToolCallDelta(index=index, arguments=delta))

    # items

    def _on_item_added(self, data: dict[str, Any], events: list[Event]) -> None:
        item = data.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            self._open_call(_key(data), item, events)

    def _open_call(self, key: Any, item: dict[str, Any], events: list[Event]) -> int:
        if key not in self._calls:
            index = self._calls[key] = len(self._calls)
            self._open.append(index)
            call = _output_call(item)
            events.append(ToolCallStart(index=index, id=call.id, name=call.name))
        return self._calls[key]

    def _on_item_done(self, data: dict[str, Any], events: list[Event]) -> None:
        item = data.get("item")
        if not isinstance(item, dict):
            return
        key, kind = _key(data), item.get("type")
        if kind == "function_call":
            self._finish_call(key, item, events)
        elif kind == "reasoning":
            self._finish_reasoning(key, item, events)
        elif kind == "message":
            _cite(item, self._sources)
            if key not in self._texted:
                self._refused = self._refused or _refused(item)
                events += [TextDelta(text=text) for text in _message_texts(item)]

    def _finish_call(self, key: Any, item: dict[str, Any], events: list[Event]) -> None:
        index = self._open_call(key, item, events)
        arguments = item.get("arguments")
        if index not in self._argued and isinstance(arguments, str) and arguments:
            events.append(ToolCallDelta(index=index, arguments=arguments))
        if index in self._open:
            self._open.remove(index)
            events.append(ToolCallEnd(index=index))

    def _finish_reasoning(self, key: Any, item: dict[str, Any], events: list[Event]) -> None:
        reasoning = _output_reasoning(item)
        if reasoning is None:
            return
        text = "" if key in self._summaries else reasoning.text
        if text or reasoning.signature:
            events.append(ReasoningDelta(text=text, signature=reasoning.signature, origin=NAME))

    # terminal events

    def _on_finished(self, data: dict[str, Any], events: list[Event]) -> None:
        response = as_object(data.get("response"))
        status = response.get("status") or str(data.get("type")).removeprefix("response.")
        events += [ToolCallEnd(index=index) for index in self._open]
        self._open.clear()
        if sources := self._sources.text():
            events.append(TextDelta(text=sources))
        if isinstance(usage := response.get("usage"), dict):
            events.append(UsageUpdate(usage=_parse_usage(usage)))
        reason = _stop_reason(status, response.get("incomplete_details"), bool(self._calls), self._refused)
        events += [Stop(reason=reason or "end_turn"), End()]
        self._finished = True

    def _on_failed(self, data: dict[str, Any], events: list[Event]) -> None:
        response = as_object(data.get("response"))
        error = response.get("error")
        fields = error if isinstance(error, dict) else {"message": "upstream response failed"}
        self._fail(events, _stream_error(fields))

    def _on_error(self, data: dict[str, Any], events: list[Event]) -> None:
        """``event: error`` carries code/message at top level (its ``type`` is the event's)."""
        nested = data.get("error")
        self._fail(events, _stream_error(nested if isinstance(nested, dict) else {**data, "type": None}))

    _HANDLERS: ClassVar[dict[str, Handler]] = {
        "response.output_item.added": _on_item_added,
        "response.output_item.done": _on_item_done,
        "response.output_text.delta": _on_text,
        "response.refusal.delta": _on_refusal,
        "response.function_call_arguments.delta": _on_arguments,
        "response.reasoning_summary_text.delta": _on_summary,
        "response.completed": _on_finished,
        "response.incomplete": _on_finished,
        "response.failed": _on_failed,
        "error": _on_error,
    }


# -- stream encoder -------------------------------------------------------------------------------

SUMMARY_EVENTS = (TextDelta, ReasoningDelta, ToolCallStart, ToolCallDelta, ToolCallEnd)


@dataclass(slots=True)
class _OpenItem:
    """An output item between ``output_item.added`` and ``.done``."""

    index: int
    item: dict[str, Any]  # as added: the done item keeps its identity (the SDK checks it)
    prefix: bytes  # this item's delta event, rendered up to the delta's value
    chunks: list[str] = field(default_factory=list)

    @property
    def where(self) -> dict[str, Any]:
        return {"item_id": self.item["id"], "output_index": self.index}


class StreamEncoder(Encoder):
    """Canonical events → the typed Responses event sequence (docs/wire.md §2.4).

    Every event has an ``event:`` line equal to its type and a ``sequence_number`` from 0. Text
    and reasoning each stay one item until another item starts; calls are items of their own and
    may overlap. ``response.completed`` (``.incomplete``/``.failed``) waits for End, so late usage
    is in it (docs/snags.md #4), and comes only after every open item was closed: the SDK's accumulator
    refuses unfinished items, duplicate output indexes and changed ids.
    """

    def __init__(self, request: ChatRequest) -> None:
        super().__init__()
        self._request = request
        self._known = origins(request.tools)
        self._custom: set[int] = set()  # canonical indexes of freeform calls (held to their end)
        self._echo = _echo(request)
        self._head: dict[str, Any] | None = None
        self._base = ""
        self._sequence = 0
        self._next_index = 0
        self._done: dict[int, dict[str, Any]] = {}  # finished items by output index
        self._text: _OpenItem | None = None
        self._reasoning: _OpenItem | None = None
        self._calls: dict[int, _OpenItem] = {}  # canonical index -> open call
        self._seen_calls: set[int] = set()
        self._usage = Usage()
        self._stop: StopReason | None = None
        # A compaction's summary, held until the end: its item is sealed whole.
        self._summary: list[str] | None = [] if compacting(request) else None

    def _on_event(self, event: Event, out: list[bytes]) -> None:
        if self._summary is not None and isinstance(event, SUMMARY_EVENTS):
            if isinstance(event, TextDelta):
                self._summary.append(event.text)
            return  # reasoning and calls of a summary are not part of it
        match event:
            case MessageStart():
                self._start(event, out)
            case TextDelta() if event.text:
                self._on_text(event.text, out)
            case ReasoningDelta():
                self._on_reasoning(event, out)
            case ToolCallStart():
                self._on_call_start(event, out)
            case ToolCallDelta() if event.arguments and event.index in self._custom:
                self._calls[event.index].chunks.append(event.arguments)
            case ToolCallDelta() if event.arguments and event.index in self._calls:
                self._delta(out, self._calls[event.index], event.arguments)
            case ToolCallEnd():
                self._close_call(event.index, out)
            case UsageUpdate():
                self._usage = self._usage.merged(event.usage)
            case Stop():
                self._stop = self._stop or event.reason
            case End():
                self._finish(out)
            case StreamError():
                self._finish(out, ProxyError.from_dict(event.error))
            # Empty text deltas and orphan call deltas: nothing to send (docs/snags.md #1).

    # framing

    def _emit(self, out: list[bytes], kind: str, fields: dict[str, Any]) -> None:
        data = dumps_text({"type": kind, "sequence_number": self._sequence, **fields})
        self._sequence += 1
        out.append(f"event: {kind}\ndata: {data}\n\n".encode())

    def _delta(self, out: list[bytes], item: _OpenItem, text: str) -> None:
        item.chunks.append(text)
        tail = b',"sequence_number":%d}\n\n' % self._sequence
        self._sequence += 1
        out.append(item.prefix + dumps(text) + tail)

    # lifecycle

    def _start(self, event: MessageStart, out: list[bytes]) -> None:
        if self._head is not None:
            return
        if event.usage:
            self._usage = self._usage.merged(event.usage)
        response_id = event.id or _new_response_id()
        self._head = _head(response_id, event.model or self._request.model)
        self._base = _id_base(response_id)
        body = _response_body(self._head, self._echo, "in_progress", [], None)
        self._emit(out, "response.created", {"response": body})
        self._emit(out, "response.in_progress", {"response": body})

    def _started(self, out: list[bytes]) -> dict[str, Any]:
        """The response head, starting the stream if no MessageStart came first."""
        if self._head is None:
            self._start(MessageStart(id="", model=""), out)
        assert self._head is not None
        return self._head

    def _open(
        self, out: list[bytes], kind: str, fields: dict[str, Any], delta: str, extra: dict[str, Any]
    ) -> _OpenItem:
        self._started(out)
        index, self._next_index = self._next_index, self._next_index + 1
        item = {"type": kind, "id": _item_id(kind, self._base, index), **fields}
        self._emit(out, "response.output_item.added", {"output_index": index, "item": item})
        head = dumps_text({"type": delta, "item_id": item["id"], "output_index": index, **extra})[:-1]
        return _OpenItem(index, item, f'event: {delta}\ndata: {head},"delta":'.encode())

    def _close(self, out: list[bytes], item: dict[str, Any], index: int) -> None:
        self._done[index] = item
        self._emit(out, "response.output_item.done", {"output_index": index, "item": item})

    def _finish(self, out: list[bytes], error: ProxyError | None = None) -> None:
        """Close what is open, then the terminal event with every finished item in order."""
        head = self._started(out)
        if self._summary is not None and error is None:
            self._close_summary(out)
        self._close_text(out)
        self._close_reasoning(out)
        for index in list(self._calls):
            self._close_call(index, out)
        if error is None:
            status, incomplete, failure = _outcome(self._stop)
        else:
            status, incomplete, failure = "failed", None, _failed_error(error)
        output = [self._done[index] for index in sorted(self._done)]
        usage = _render_usage(self._usage)
        body = _response_body(head, self._echo, status, output, usage, incomplete, failure)
        self._emit(out, f"response.{status}", {"response": body})
        self._finished = True

    def _close_summary(self, out: list[bytes]) -> None:
        """The one compaction item Codex takes back (added and done at once: it is opaque)."""
        index, self._next_index = self._next_index, self._next_index + 1
        item = compaction_item(_item_id("compaction", self._base, index), "".join(self._summary or []))
        self._emit(out, "response.output_item.added", {"output_index": index, "item": item})
        self._close(out, item, index)

    # text

    def _on_text(self, text: str, out: list[bytes]) -> None:
        if self._text is None:
            self._close_reasoning(out)
            fields = {"role": "assistant", "status": "in_progress", "content": []}
            extra = {"content_index": 0, "logprobs": []}
            self._text = self._open(out, "message", fields, "response.output_text.delta", extra)
            part = {**self._text.where, "content_index": 0, "part": _output_text("")}
            self._emit(out, "response.content_part.added", part)
        self._delta(out, self._text, text)

    def _close_text(self, out: list[bytes]) -> None:
        if (open_ := self._text) is None:
            return
        self._text = None
        text = "".join(open_.chunks)
        where = {**open_.where, "content_index": 0}
        self._emit(out, "response.output_text.done", {**where, "text": text, "logprobs": []})
        self._emit(out, "response.content_part.done", {**where, "part": _output_text(text)})
        self._close(out, _message_output(open_.item["id"], text), open_.index)

    # reasoning

    def _on_reasoning(self, event: ReasoningDelta, out: list[bytes]) -> None:
        """Summary text streams into one reasoning item; a signature seals it (the next text opens
        another), and only our own becomes ``encrypted_content``."""
        signature = _replayable(event)
        if event.text or (signature and self._reasoning is None):
            open_ = self._reasoning or self._open_reasoning(out)
            if event.text:
                if not open_.chunks:
                    part = {**open_.where, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}
                    self._emit(out, "response.reasoning_summary_part.added", part)
                self._delta(out, open_, event.text)
        if event.signature is not None and self._reasoning is not None:
            if signature:
                self._reasoning.item["encrypted_content"] = signature
            self._close_reasoning(out)

    def _open_reasoning(self, out: list[bytes]) -> _OpenItem:
        self._close_text(out)
        extra = {"summary_index": 0}
        delta = "response.reasoning_summary_text.delta"
        self._reasoning = self._open(out, "reasoning", {"summary": []}, delta, extra)
        return self._reasoning

    def _close_reasoning(self, out: list[bytes]) -> None:
        if (open_ := self._reasoning) is None:
            return
        self._reasoning = None
        text = "".join(open_.chunks)
        if text:
            where = {**open_.where, "summary_index": 0}
            self._emit(out, "response.reasoning_summary_text.done", {**where, "text": text})
            part = {"type": "summary_text", "text": text}
            self._emit(out, "response.reasoning_summary_part.done", {**where, "part": part})
        item = _reasoning_output(open_.item["id"], text, open_.item.get("encrypted_content"))
        self._close(out, item, open_.index)

    # tool calls

    def _on_call_start(self, event: ToolCallStart, out: list[bytes]) -> None:
        if event.index in self._seen_calls:
            return
        self._seen_calls.add(event.index)
        self._close_text(out)
        self._close_reasoning(out)
        fields = _call_fields(event.name, self._known.get(event.name))
        kind = fields.pop("type")
        fields["call_id"] = event.id or new_call_id()
        if kind == "custom_tool_call":
            self._custom.add(event.index)
            fields["input"] = ""
            delta = "response.custom_tool_call_input.delta"
        else:
            fields |= {"arguments": "", "status": "in_progress"}
            delta = "response.function_call_arguments.delta"
        self._calls[event.index] = self._open(out, kind, fields, delta, {})

    def _close_call(self, index: int, out: list[bytes]) -> None:
        if (open_ := self._calls.pop(index, None)) is None:
            return
        if index in self._custom:
            self._close_custom(open_, out)
            return
        arguments = "".join(open_.chunks) or "{}"
        self._emit(out, "response.function_call_arguments.done", {**open_.where, "arguments": arguments})
        item = {**open_.item, "arguments": arguments, "status": "completed"}
        self._close(out, item, open_.index)

    def _close_custom(self, open_: _OpenItem, out: list[bytes]) -> None:
        """The freeform text is inside the function's JSON arguments, so it is read out once the
        call is complete (one call's arguments held, then sent as one delta)."""
        text = custom_input("".join(open_.chunks))
        open_.chunks = []
        if text:
            self._delta(out, open_, text)
        self._emit(out, "response.custom_tool_call_input.done", {**open_.where, "input": text})
        self._close(out, {**open_.item, "input": text}, open_.index)


# -- errors ---------------------------------------------------------------------------------------

# Same envelope as Chat Completions (docs/wire.md §2.1); render_error also turns 529 into 503.
parse_error = openai_chat.parse_error
render_error = openai_chat.render_error


def _stream_error(fields: dict[str, Any]) -> ProxyError:
    """An in-stream error object. The generic ``server_error`` code says least, so a recorded
    ``type`` (the canonical code, in errors this proxy renders) refines it."""
    code = fields.get("code") if isinstance(fields.get("code"), str) else None
    kind = fields.get("type") if isinstance(fields.get("type"), str) else None
    labels = (kind, code) if code in (None, "server_error") else (code, kind)
    canonical = next((STREAM_CODE_IN[label] for label in labels if label in STREAM_CODE_IN), "upstream_error")
    message, param = fields.get("message"), fields.get("param")
    return ProxyError(
        canonical,
        message if isinstance(message, str) and message else "upstream reported an error",
        provider_type=kind or code,
        param=param if isinstance(param, str) else None,
    )


def _failed_error(error: ProxyError) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "code": FAILED_CODE_OUT.get(error.code, "server_error"),
        "message": error.message,
        "type": error.provider_type or error.code,
    }
    if error.param is not None:
        rendered["param"] = error.param
    return rendered
