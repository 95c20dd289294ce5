"""Google Gemini (Generative Language API v1beta): ``generateContent`` and its SSE stream.

Gemini differs from the other protocols in ways that shape this module:

- The model and the stream flag live in the URL, not the body: the front door passes them in and
  ``render_request`` returns only the body.
- Google's parser accepts camelCase and snake_case keys and both base64 alphabets, and the official
  SDK relies on it (it sends ``inlineData.mime_type``, URL-safe base64, …), so every read goes
  through ``_get``; everything written is camelCase.
- Function calls carry no ids but a ``thoughtSignature`` the next turn must echo. Clients of other
  protocols have no field for it, so the call id carries it (``gsig_<base64url>_<n>``,
  docs/snags.md #14) and ``render_request`` recovers it from there.
- Tool schemas must be cut down to the JSON-Schema subset Gemini accepts (docs/snags.md #11).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable, Iterable
from functools import cache
from itertools import groupby
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

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
from translators.mapping import EFFORT_BUDGET
from translators.sse import SSEEvent
from translators.streams import Encoder, SSEDecoder
from translators.toolnames import (
    MAPPED,
    REMOVED,
    WEB_SEARCH,
    Sources,
    client_name,
    origins,
    safe_names,
    web_search,
)
from translators.wire import (
    Reader,
    count,
    dump_arguments,
    dumps,
    dumps_text,
    invalid,
    parse_arguments,
    refuse,
    split_data_url,
)

NAME = "gemini"
STREAM_CONTENT_TYPE = "text/event-stream"

# Google's documented placeholder for function calls Gemini did not produce (docs/wire.md §6.9).
SKIP_SIGNATURE = "skip_thought_signature_validator"

# -- tables ---------------------------------------------------------------------------------------

STOP_IN: dict[str, str] = {
    "STOP": "end_turn",
    "FINISH_REASON_UNSPECIFIED": "end_turn",
    "MAX_TOKENS": "max_tokens",
    "CONTINUATION": "max_tokens",
    **dict.fromkeys(
        (
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "LANGUAGE",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
            "IMAGE_OTHER",
            "MODEL_ARMOR",
        ),
        "refusal",
    ),
    **dict.fromkeys(
        (
            "MALFORMED_FUNCTION_CALL",
            "UNEXPECTED_TOOL_CALL",
            "TOO_MANY_TOOL_CALLS",
            "MALFORMED_RESPONSE",
            "MISSING_THOUGHT_SIGNATURE",
            "NO_IMAGE",
            "ESCALATION",
            "OTHER",
        ),
        "error",
    ),
}

STOP_OUT: dict[str | None, str] = {
    None: "STOP",
    "end_turn": "STOP",
    "tool_use": "STOP",
    "stop_sequence": "STOP",
    "pause_turn": "STOP",
    "max_tokens": "MAX_TOKENS",
    "context_window": "MAX_TOKENS",
    "refusal": "SAFETY",
    "error": "OTHER",
}

TOOL_CHOICE_IN: dict[str, str] = {
    "AUTO": "auto",
    "MODE_UNSPECIFIED": "auto",
    "VALIDATED": "auto",
    "ANY": "required",
    "NONE": "none",
}
TOOL_CHOICE_OUT: dict[str, str] = {"auto": "AUTO", "required": "ANY", "tool": "ANY", "none": "NONE"}

THINKING_LEVEL_OUT: dict[str, str] = {
    "minimal": "MINIMAL",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "xhigh": "XHIGH",
    "max": "XHIGH",
}

# Canonical error code -> google.rpc status string, and the way back.
RPC_STATUS_OUT: dict[str, str] = {
    "invalid_request": "INVALID_ARGUMENT",
    "too_large": "INVALID_ARGUMENT",
    "authentication": "UNAUTHENTICATED",
    "permission": "PERMISSION_DENIED",
    "not_found": "NOT_FOUND",
    "billing": "FAILED_PRECONDITION",
    "rate_limited": "RESOURCE_EXHAUSTED",
    "internal": "INTERNAL",
    "overloaded": "UNAVAILABLE",
    "upstream_error": "UNAVAILABLE",
    "upstream_unreachable": "UNAVAILABLE",
    "unauthenticated": "UNAUTHENTICATED",
    "forbidden": "PERMISSION_DENIED",
    "limit_reached": "RESOURCE_EXHAUSTED",
    "timeout": "DEADLINE_EXCEEDED",
}
RPC_STATUS_IN: dict[str, str] = {
    "INVALID_ARGUMENT": "invalid_request",
    "OUT_OF_RANGE": "invalid_request",
    "FAILED_PRECONDITION": "billing",
    "UNAUTHENTICATED": "authentication",
    "PERMISSION_DENIED": "permission",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "rate_limited",
    "INTERNAL": "internal",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "timeout",
}
ERROR_DOMAIN = "llm-proxy"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"

# The JSON-Schema subset Gemini documents for parametersJsonSchema / responseJsonSchema.
SCHEMA_KEYWORDS = frozenset(
    {
        *("$id", "$defs", "$ref", "$anchor", "type", "format", "title", "description", "enum", "items"),
        *("prefixItems", "minItems", "maxItems", "minimum", "maximum", "anyOf", "oneOf", "properties"),
        *("additionalProperties", "required", "propertyOrdering"),
    }
)
SCHEMA_FORMATS = frozenset({"date-time", "enum", "int32", "int64", "float", "double"})
# Rejected keyword -> the allowed keyword that says (almost) the same; used when that one is absent.
SCHEMA_RENAMES: dict[str, str] = {
    "const": "enum",
    "exclusiveMinimum": "minimum",
    "exclusiveMaximum": "maximum",
    "definitions": "$defs",
}
# OpenAPI-subset ``Schema`` keys (Gemini ``parameters``) whose JSON-Schema spelling differs.
OPENAPI_KEY_IN: dict[str, str] = {"defs": "$defs", "ref": "$ref"}

IMAGE_EXTENSIONS: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
# Leading base64 characters of each image format's magic bytes.
IMAGE_MAGIC: dict[str, str] = {
    "iVBOR": "image/png",
    "/9j/": "image/jpeg",
    "R0lGOD": "image/gif",
    "UklGR": "image/webp",
}
DEFAULT_IMAGE_TYPE = "image/jpeg"

# Part data fields that the canonical model cannot carry.
GOOGLE_SEARCH = frozenset(
    {"googleSearch", "google_search", "googleSearchRetrieval", "google_search_retrieval"}
)
UNTRANSLATABLE_PARTS = ("executableCode", "codeExecutionResult", "toolCall", "toolResponse")

ROLE_IN: dict[str, str] = {"user": "user", "model": "assistant"}
ROLE_OUT: dict[str, str] = {"user": "user", "assistant": "model"}

# generationConfig key -> ChatRequest field
GENERATION_FIELD_IN: dict[str, str] = {
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "maxOutputTokens": "max_tokens",
    "seed": "seed",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
}

# ChatRequest field -> Gemini key path, to name the right key when a value has the wrong type.
FIELD_PATH_OUT: dict[str, str] = {
    "temperature": "generationConfig.temperature",
    "top_p": "generationConfig.topP",
    "top_k": "generationConfig.topK",
    "max_tokens": "generationConfig.maxOutputTokens",
    "seed": "generationConfig.seed",
    "presence_penalty": "generationConfig.presencePenalty",
    "frequency_penalty": "generationConfig.frequencyPenalty",
    "stop": "generationConfig.stopSequences",
    "reasoning": "generationConfig.thinkingConfig",
}


# -- helpers: lenient keys, base64, ids -----------------------------------------------------------


@cache
def _snake(key: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", key).lower()


def _get(obj: dict[str, Any], key: str) -> Any:
    """``obj[key]`` under its camelCase or snake_case spelling: Google's parser accepts both and
    the official SDK sends both (docs/snags.md #25)."""
    value = obj.get(key)
    return value if value is not None else obj.get(_snake(key))


# Type checks naming the key path, with the short messages this module has always given.
_check = Reader(detail=False).check

_URLSAFE = str.maketrans("-_", "+/")


def _std_b64(data: str) -> str:
    """Standard alphabet with padding; the SDK sends URL-safe base64, often unpadded. Translating
    characters avoids decoding what may be megabytes of image."""
    if "-" in data or "_" in data:
        data = data.translate(_URLSAFE)
    return data + "=" * (-len(data) % 4)


def _signature_bytes(signature: str) -> bytes:
    try:
        return base64.b64decode(_std_b64(signature), validate=True)
    except ValueError:
        return signature.encode()


def call_id_for_signature(signature: str, counter: int) -> str:
    """A tool-call id carrying a thoughtSignature (unpadded base64url keeps ``^[a-zA-Z0-9_-]+$``)."""
    encoded = base64.urlsafe_b64encode(_signature_bytes(signature)).rstrip(b"=").decode()
    return f"gsig_{encoded}_{counter}"


def signature_from_id(call_id: str) -> str | None:
    """The thoughtSignature (standard base64) carried by a ``gsig_`` id, else None."""
    if not call_id.startswith("gsig_"):
        return None
    payload, sep, counter = call_id[5:].rpartition("_")
    if not sep or not payload or not counter.isdigit():
        return None
    try:
        raw = base64.b64decode(_std_b64(payload), validate=True)
    except ValueError:
        return None
    return base64.b64encode(raw).decode()


class _CallIds:
    """Ids for one response's function calls; Gemini rarely sends its own (docs/snags.md #14)."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(4)
        self._count = 0

    def assign(self, call: ToolCall) -> ToolCall:
        if call.thought_signature:
            call.id = call_id_for_signature(call.thought_signature, self._count)
        elif not call.id:
            call.id = f"call_{self.nonce}_{self._count}"
        self._count += 1
        return call


# -- request parsing: parts (answers are read with the same readers) ------------------------------


def _signature(part: dict[str, Any], path: str) -> str | None:
    signature = _get(part, "thoughtSignature")
    if signature is not None and not isinstance(signature, str):
        raise invalid(f"{path}.thoughtSignature", "expected a base64 string")
    return signature or None


def _signed(signature: str | None, parts: list[Part]) -> list[Part]:
    """A signature on a non-thought part becomes a signature-only Reasoning just before it, which
    ``_PartWriter`` attaches to the next part again when rendering."""
    if not signature:
        return parts
    return [Reasoning(signature=signature, origin=NAME), *parts]


def _read_text(value: Any, part: dict[str, Any], signature: str | None, path: str) -> list[Part]:
    if not isinstance(value, str):
        raise invalid(path, "expected a string")
    if _get(part, "thought"):
        return [Reasoning(text=value, signature=signature, origin=NAME)]
    return _signed(signature, [Text(text=value)] if value else [])


def _read_image_blob(value: Any, path: str) -> Image:
    if not isinstance(value, dict) or not isinstance(data := _get(value, "data"), str):
        raise invalid(path, "expected an object with base64 data")
    mime = _get(value, "mimeType")
    if not isinstance(mime, str) or not mime.startswith("image/"):
        raise refuse(path, f"inline data of type {mime!r}")
    return Image(media_type=mime, data=_std_b64(data))


def _read_image_file(value: Any, path: str) -> Image:
    if not isinstance(value, dict) or not isinstance(uri := _get(value, "fileUri"), str):
        raise invalid(path, "expected an object with fileUri")
    mime = _get(value, "mimeType")
    if not isinstance(mime, str) or not mime.startswith("image/"):
        raise refuse(path, f"a file of type {mime!r}")
    return Image(media_type=mime, url=uri)


def _read_inline(value: Any, part: dict[str, Any], signature: str | None, path: str) -> list[Part]:
    return _signed(signature, [_read_image_blob(value, path)])


def _read_file(value: Any, part: dict[str, Any], signature: str | None, path: str) -> list[Part]:
    return _signed(signature, [_read_image_file(value, path)])


def _name(value: dict[str, Any], path: str) -> str:
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(f"{path}.name", "expected a non-empty string")
    return name


def _read_call(value: Any, part: dict[str, Any], signature: str | None, path: str) -> list[Part]:
    """A function call with the id Gemini gave (usually none: the caller assigns one)."""
    _check(value, path, "an object")
    args = value.get("args")
    if args is not None and not isinstance(args, dict):
        raise invalid(f"{path}.args", "expected an object")
    return [
        ToolCall(
            id=str(value.get("id") or ""),
            name=_name(value, path),
            arguments=dump_arguments(args),
            thought_signature=signature,
        )
    ]


def _result_text(response: dict[str, Any]) -> tuple[str, bool]:
    """(text, is_error) of a functionResponse.response: ``output`` / ``error`` unwrapped when it is
    the only key, else the whole object as compact JSON."""
    if len(response) == 1 and ("output" in response or "error" in response):
        ((key, value),) = response.items()
        return (value if isinstance(value, str) else dumps_text(value)), key == "error"
    return dumps_text(response), False


def _read_response(value: Any, part: dict[str, Any], signature: str | None, path: str) -> list[Part]:
    _check(value, path, "an object")
    response = value.get("response")
    response = response if isinstance(response, dict) else {} if response is None else {"output": response}
    text, is_error = _result_text(response)
    content: list[Text | Image] = [Text(text=text)]
    parts = value.get("parts") or []
    if not isinstance(parts, list):
        raise invalid(f"{path}.parts", "expected a list")
    content.extend(_read_result_part(sub, f"{path}.parts[{k}]") for k, sub in enumerate(parts))
    return [
        ToolResult(
            tool_call_id=str(value.get("id") or ""),
            name=_name(value, path),
            content=content,
            is_error=is_error,
        )
    ]


def _read_result_part(part: Any, path: str) -> Image:
    """Multimodal function-response parts (images the tool returned)."""
    if isinstance(part, dict):
        if (blob := _get(part, "inlineData")) is not None:
            return _read_image_blob(blob, f"{path}.inlineData")
        if (file := _get(part, "fileData")) is not None:
            return _read_image_file(file, f"{path}.fileData")
    raise refuse(path, "this function-response part")


PART_READERS: dict[str, Callable[[Any, dict[str, Any], str | None, str], list[Part]]] = {
    "text": _read_text,
    "inlineData": _read_inline,
    "fileData": _read_file,
    "functionCall": _read_call,
    "functionResponse": _read_response,
}


def _read_part(part: Any, path: str) -> list[Part]:
    """One Gemini part as canonical parts (none for an empty text part, two for a signed one)."""
    _check(part, path, "an object")
    signature = _signature(part, path)
    for key, reader in PART_READERS.items():
        value = _get(part, key)
        if value is not None:
            return reader(value, part, signature, f"{path}.{key}")
    for key in UNTRANSLATABLE_PARTS:
        if _get(part, key) is not None:
            raise refuse(f"{path}.{key}", key)
    if signature:
        return [Reasoning(signature=signature, origin=NAME)]
    raise invalid(path, "no text, inlineData, fileData, functionCall or functionResponse")


# -- request parsing: contents, tools and options -------------------------------------------------


def parse_request(body: Any, *, model: str | None = None, stream: bool | None = None) -> ChatRequest:
    """A ``GenerateContentRequest``; ``model`` (from the URL) and ``stream`` (from the method) are
    not in a Gemini body."""
    if not isinstance(body, dict):
        raise invalid("body", "expected a JSON object")
    if not model:
        raise invalid("model", "missing")
    if _get(body, "cachedContent") is not None:
        raise refuse("cachedContent", "server-side cached content")
    try:
        declared, metadata, warnings = _parse_tools(_get(body, "tools"))
        tool_choice, tools = _parse_tool_config(_get(body, "toolConfig"), declared)
        request = ChatRequest(
            model=model.removeprefix("models/"),
            system=_parse_system(_get(body, "systemInstruction")),
            messages=_parse_contents(_get(body, "contents")),
            tools=tools,
            tool_choice=tool_choice,
            metadata=metadata,
            warnings=warnings,
            stream=bool(stream),
            **_parse_generation_config(_get(body, "generationConfig")),
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "body"
        raise invalid(FIELD_PATH_OUT.get(field, field), error["msg"]) from None
    return safe_names(request)


def _parse_system(instruction: Any) -> list[Text]:
    if instruction is None:
        return []
    if isinstance(instruction, str):
        return [Text(text=instruction)] if instruction else []
    if not isinstance(instruction, dict) or not isinstance(parts := _get(instruction, "parts"), list):
        raise invalid("systemInstruction", "expected a Content object with parts")
    texts: list[Text] = []
    for j, part in enumerate(parts):
        text = part.get("text") if isinstance(part, dict) else None
        if not isinstance(text, str):
            raise refuse(f"systemInstruction.parts[{j}]", "a non-text system part")
        if text:
            texts.append(Text(text=text))
    return texts


class _CallLedger:
    """Matches id-less functionResponses to the calls of the nearest preceding model turn, by name
    and in order for repeated names."""

    def __init__(self) -> None:
        self._pending: dict[str, list[str]] = {}

    def model_turn(self, calls: list[ToolCall]) -> None:
        self._pending = {}
        for call in calls:
            self._pending.setdefault(call.name, []).append(call.id)

    def match(self, result: ToolResult, fallback: str) -> None:
        ids = self._pending.get(result.name or "", [])
        if result.tool_call_id:
            if result.tool_call_id in ids:
                ids.remove(result.tool_call_id)
        else:
            result.tool_call_id = ids.pop(0) if ids else fallback


def _parse_contents(contents: Any) -> list[Message]:
    if not isinstance(contents, list):
        raise invalid("contents", "expected a list of Content objects")
    ledger = _CallLedger()
    messages: list[Message] = []
    for i, content in enumerate(contents):
        message = _parse_content(content, i, ledger)
        if message.content:
            messages.append(message)
    return messages


def _parse_content(content: Any, i: int, ledger: _CallLedger) -> Message:
    where = f"contents[{i}]"
    _check(content, where, "an object")
    raw_role = content.get("role") or "user"
    role = ROLE_IN.get(raw_role) if isinstance(raw_role, str) else None
    if role is None:
        raise invalid(f"{where}.role", f"unknown role {content.get('role')!r} (user or model)")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise invalid(f"{where}.parts", "expected a non-empty list")
    out: list[Part] = []
    for j, raw in enumerate(parts):
        for part in _read_part(raw, f"{where}.parts[{j}]"):
            _check_role(part, role, f"{where}.parts[{j}]")
            if isinstance(part, ToolCall):
                part.id = part.id or f"call_{i}_{j}"
            elif isinstance(part, ToolResult):
                ledger.match(part, f"call_{i}_{j}")
            out.append(part)
    if role == "assistant":
        ledger.model_turn([p for p in out if isinstance(p, ToolCall)])
    return Message(role=role, content=out)


def _check_role(part: Part, role: str, path: str) -> None:
    if isinstance(part, ToolCall) and role != "assistant":
        raise invalid(f"{path}.functionCall", "only allowed in a model turn")
    if isinstance(part, ToolResult) and role != "user":
        raise invalid(f"{path}.functionResponse", "only allowed in a user turn")


def _parse_tools(tools: Any) -> tuple[list[Tool], dict[str, Any], list[str]]:
    """Function declarations, a built-in Google Search as the canonical web search, and one
    warning per other built-in tool, which is removed (translators/toolnames.py)."""
    if tools is None:
        return [], {}, []
    if not isinstance(tools, list):
        raise invalid("tools", "expected a list")
    parsed: list[Tool] = []
    metadata: dict[str, Any] = {}
    warnings: list[str] = []
    for i, tool in enumerate(tools):
        _check(tool, f"tools[{i}]", "an object")
        for key, value in tool.items():
            if value is None or key in ("functionDeclarations", "function_declarations"):
                continue
            where = f"tools[{i}].{key}"
            if key in GOOGLE_SEARCH:
                metadata[WEB_SEARCH] = {}
                warnings.append(MAPPED.format(where=where, kind=key))
            else:
                warnings.append(REMOVED.format(where=where, kind=key, what="a tool Gemini runs itself"))
        declarations = _get(tool, "functionDeclarations") or []
        if not isinstance(declarations, list):
            raise invalid(f"tools[{i}].functionDeclarations", "expected a list")
        for k, declaration in enumerate(declarations):
            parsed.append(_parse_declaration(declaration, f"tools[{i}].functionDeclarations[{k}]"))
    return parsed, metadata, warnings


def _parse_declaration(declaration: Any, path: str) -> Tool:
    _check(declaration, path, "an object")
    description = declaration.get("description")
    description = description if isinstance(description, str) else None
    tool = Tool(name=_name(declaration, path), description=description)
    if (schema := _get(declaration, "parametersJsonSchema")) is not None:
        _check(schema, f"{path}.parametersJsonSchema", "an object")
        tool.parameters = schema
    elif (schema := declaration.get("parameters")) is not None:
        _check(schema, f"{path}.parameters", "an object")
        tool.parameters = _from_openapi(schema)
    return tool


def _from_openapi(schema: Any) -> Any:
    """Gemini's OpenAPI-subset ``Schema`` (uppercase types, ``nullable``, snake_case keys from the
    SDK) as JSON Schema. Keys inside ``properties`` are property names and stay as they are."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        key = OPENAPI_KEY_IN.get(key) or _camel(key)
        if key == "type" and isinstance(value, str):
            if value.upper() != "TYPE_UNSPECIFIED":
                out["type"] = value.lower()
        elif key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: _from_openapi(sub) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf", "prefixItems") and isinstance(value, list):
            out[key] = [_from_openapi(sub) for sub in value]
        elif key != "nullable":
            out[key] = _from_openapi(value) if key in ("items", "additionalProperties") else value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@cache
def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _parse_tool_config(config: Any, tools: list[Tool]) -> tuple[ToolChoice | None, list[Tool]]:
    """Mode → tool_choice; ``allowedFunctionNames`` narrows the tools (one name under ANY names
    the tool that must be called)."""
    calling = _get(config, "functionCallingConfig") if isinstance(config, dict) else None
    if not isinstance(calling, dict):
        return None, tools
    raw_mode = str(calling.get("mode") or "AUTO").upper()
    mode = TOOL_CHOICE_IN.get(raw_mode)
    if mode is None:
        raise invalid("toolConfig.functionCallingConfig.mode", f"unknown mode {raw_mode!r}")
    names = _get(calling, "allowedFunctionNames")
    if names is not None and not isinstance(names, list):
        raise invalid("toolConfig.functionCallingConfig.allowedFunctionNames", "expected a list")
    if not names or mode == "none":
        return ToolChoice(mode=mode), tools
    tools = [tool for tool in tools if tool.name in names]
    if mode == "required" and len(names) == 1:
        return ToolChoice(mode="tool", name=names[0]), tools
    return ToolChoice(mode=mode), tools


def _parse_generation_config(config: Any) -> dict[str, Any]:
    """ChatRequest keyword arguments from ``generationConfig``."""
    if config is None:
        return {}
    _check(config, "generationConfig", "an object")
    fields = {name: _get(config, key) for key, name in GENERATION_FIELD_IN.items()}
    fields = {name: value for name, value in fields.items() if value is not None}
    count = _get(config, "candidateCount")
    if isinstance(count, int) and count > 1:
        raise refuse("generationConfig.candidateCount", "more than one candidate")
    modalities = _get(config, "responseModalities") or []
    if any(str(m).upper() != "TEXT" for m in ([modalities] if isinstance(modalities, str) else modalities)):
        raise refuse("generationConfig.responseModalities", "non-text output")
    stop = _get(config, "stopSequences")
    if stop is not None:
        fields["stop"] = [stop] if isinstance(stop, str) else stop
    fields["response_format"] = _parse_response_format(config)
    fields["reasoning"] = _parse_thinking(_get(config, "thinkingConfig"))
    return fields


def _parse_response_format(config: dict[str, Any]) -> ResponseFormat | None:
    mime = _get(config, "responseMimeType")
    if mime in (None, "text/plain"):
        return None
    if mime != "application/json":
        raise refuse("generationConfig.responseMimeType", f"response type {mime!r}")
    if isinstance(schema := _get(config, "responseJsonSchema"), dict):
        return ResponseFormat(type="json_schema", json_schema=schema)
    if isinstance(schema := _get(config, "responseSchema"), dict):
        return ResponseFormat(type="json_schema", json_schema=_from_openapi(schema))
    return ResponseFormat(type="json_object")


def _parse_thinking(config: Any) -> ReasoningConfig | None:
    """thinkingBudget 0 = off, -1 = dynamic (medium effort), n = budget; thinkingLevel = effort."""
    if not isinstance(config, dict) or not config:
        return None
    reasoning = ReasoningConfig(include_thoughts=_get(config, "includeThoughts"))
    budget = _get(config, "thinkingBudget")
    if budget == 0:
        reasoning.enabled = False
    elif budget == -1:
        reasoning.effort = "medium"
    elif isinstance(budget, int) and budget > 0:
        reasoning.budget_tokens = budget
    level = _get(config, "thinkingLevel")
    if isinstance(level, str) and level.upper() != "THINKING_LEVEL_UNSPECIFIED":
        reasoning.effort = level.lower()
    return reasoning


# -- request rendering ----------------------------------------------------------------------------


def render_request(request: ChatRequest) -> dict[str, Any]:
    """The ``generateContent`` body (the backend puts the model and the method in the URL)."""
    body: dict[str, Any] = {"contents": _render_contents(request.messages)}
    if system := [{"text": t.text} for t in request.system if t.text]:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        declarations = [_render_declaration(tool) for tool in request.tools]
        body["tools"] = [{"functionDeclarations": declarations}]
        if request.tool_choice is not None:
            body["toolConfig"] = {"functionCallingConfig": _render_tool_choice(request.tool_choice)}
    elif web_search(request.metadata) is not None:
        # Google Search beside function declarations is refused by Gemini 2.x models: only alone.
        body["tools"] = [{"googleSearch": {}}]
    if config := _render_generation_config(request):
        body["generationConfig"] = config
    return body


def _render_contents(messages: list[Message]) -> list[dict[str, Any]]:
    """Consecutive same-role messages become one content (so one turn's tool results share it);
    contents left empty are dropped."""
    names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    indexed = ((i, j, part) for i, m in enumerate(messages) for j, part in enumerate(m.content))
    for role, items in groupby(indexed, key=lambda item: messages[item[0]].role):
        parts = _render_parts(items, names, client=False)
        gemini_role = ROLE_OUT[role]
        if not parts:
            continue
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return contents


class _PartWriter:
    """Collects one content's parts. A pending signature-only thought rides on the next part (or an
    empty text part at the end); toward a provider, the first function call of a turn that has no
    signature gets Google's placeholder (docs/wire.md §6.9)."""

    def __init__(self, *, placeholder: bool) -> None:
        self.parts: list[dict[str, Any]] = []
        self._signature: str | None = None
        self._placeholder = placeholder

    def add(self, part: dict[str, Any]) -> None:
        if self._signature is not None:
            if "thoughtSignature" in part:
                self.parts.append({"text": "", "thoughtSignature": self._signature})
            else:
                part["thoughtSignature"] = self._signature
            self._signature = None
        self.parts.append(part)

    def call(self, part: dict[str, Any]) -> None:
        if self._placeholder and "thoughtSignature" not in part and self._signature is None:
            part["thoughtSignature"] = SKIP_SIGNATURE
        self._placeholder = False
        self.add(part)

    def signature(self, signature: str) -> None:
        if self._signature is not None:
            self.parts.append({"text": "", "thoughtSignature": self._signature})
        self._signature = signature

    def finish(self) -> list[dict[str, Any]]:
        if self._signature is not None:
            self.parts.append({"text": "", "thoughtSignature": self._signature})
            self._signature = None
        return self.parts


def _render_parts(
    items: Iterable[tuple[int, int, Part]], names: dict[str, str], *, client: bool
) -> list[dict[str, Any]]:
    """Gemini parts for ``(message index, part index, part)`` items: function responses first (one
    per result), then images from those results, then everything else in order. ``client`` renders
    for a Gemini client (ids on calls, thoughts of any origin shown) instead of for the provider."""
    writer = _PartWriter(placeholder=not client)
    responses: list[dict[str, Any]] = []
    attachments: list[dict[str, Any]] = []
    for i, j, part in items:
        match part:
            case Text(text=text) if text:
                writer.add({"text": text})
            case Image():
                writer.add(_render_image(part))
            case Reasoning():
                _render_reasoning(writer, part, client=client)
            case ToolCall():
                names[part.id] = part.name
                writer.call(_render_call(part, client=client))
            case ToolResult():
                responses.append(_render_result(part, names, f"messages[{i}].content[{j}]"))
                attachments.extend(_render_image(c) for c in part.content if isinstance(c, Image))
    return responses + attachments + writer.finish()


def _render_reasoning(writer: _PartWriter, part: Reasoning, *, client: bool) -> None:
    """Gemini signatures go back to Gemini; foreign reasoning is dropped toward the provider but
    shown to a Gemini client as thought text."""
    own = part.origin == NAME and not part.redacted
    if part.text and (own or client):
        thought: dict[str, Any] = {"text": part.text, "thought": True}
        if own and part.signature:
            thought["thoughtSignature"] = part.signature
        writer.add(thought)
    elif own and part.signature:
        writer.signature(part.signature)


def _render_call(call: ToolCall, *, client: bool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": call.name, "args": parse_arguments(call.arguments)}
    if client:
        function["id"] = call.id
    part: dict[str, Any] = {"functionCall": function}
    if signature := call.thought_signature or signature_from_id(call.id):
        part["thoughtSignature"] = signature
    return part


def _render_result(result: ToolResult, names: dict[str, str], path: str) -> dict[str, Any]:
    name = result.name or names.get(result.tool_call_id)
    if not name:
        raise invalid(path, f"no earlier tool call with id {result.tool_call_id!r}")
    text = "\n".join(c.text for c in result.content if isinstance(c, Text))
    value = _json_object(text)
    if result.is_error:
        response = {"error": value if value is not None else text}
    else:
        response = value if value is not None else {"output": text}
    return {"functionResponse": {"name": name, "response": response}}


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _render_image(image: Image) -> dict[str, Any]:
    data, mime = image.data, image.media_type
    if data is None and image.url and (inline := split_data_url(image.url)):
        mime, data = mime or inline[0], inline[1]
    if data is not None:
        return {"inlineData": {"mimeType": mime or _sniff_image(data), "data": data}}
    url = image.url or ""
    guessed = IMAGE_EXTENSIONS.get(PurePosixPath(urlsplit(url).path).suffix.lower(), DEFAULT_IMAGE_TYPE)
    return {"fileData": {"mimeType": mime or guessed, "fileUri": url}}


def _sniff_image(data: str) -> str:
    return next((mime for magic, mime in IMAGE_MAGIC.items() if data.startswith(magic)), DEFAULT_IMAGE_TYPE)


def _render_declaration(tool: Tool) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    declaration["parametersJsonSchema"] = sanitise_schema(tool.parameters)
    return declaration


def _render_tool_choice(choice: ToolChoice) -> dict[str, Any]:
    config: dict[str, Any] = {"mode": TOOL_CHOICE_OUT[choice.mode]}
    if choice.mode == "tool" and choice.name:
        config["allowedFunctionNames"] = [choice.name]
    return config


def _render_generation_config(request: ChatRequest) -> dict[str, Any]:
    fields = {
        "maxOutputTokens": request.max_tokens,
        "temperature": request.temperature,
        "topP": request.top_p,
        "topK": request.top_k,
        "stopSequences": request.stop[:5] or None,
        "seed": request.seed,
        "presencePenalty": request.presence_penalty,
        "frequencyPenalty": request.frequency_penalty,
    }
    config = {key: value for key, value in fields.items() if value is not None}
    response_format = request.response_format
    if response_format is not None and response_format.type != "text":
        config["responseMimeType"] = "application/json"
        if response_format.type == "json_schema" and response_format.json_schema is not None:
            config["responseJsonSchema"] = sanitise_schema(response_format.json_schema)
    if thinking := _render_thinking(request.reasoning, request.model):
        config["thinkingConfig"] = thinking
    return config


def _render_thinking(reasoning: ReasoningConfig | None, model: str) -> dict[str, Any]:
    """A budget stays a budget; an effort becomes thinkingLevel on Gemini 3 and a budget
    (mapping.EFFORT_BUDGET) on earlier models."""
    if reasoning is None:
        return {}
    effort = reasoning.effort
    if not reasoning.enabled or (effort == "none" and reasoning.budget_tokens is None):
        return {"thinkingBudget": 0}
    config: dict[str, Any] = {}
    if reasoning.budget_tokens is not None:
        config["thinkingBudget"] = reasoning.budget_tokens
    elif effort and "gemini-3" in model and effort in THINKING_LEVEL_OUT:
        config["thinkingLevel"] = THINKING_LEVEL_OUT[effort]
    elif effort in EFFORT_BUDGET:
        config["thinkingBudget"] = EFFORT_BUDGET[effort]
    if reasoning.include_thoughts:
        config["includeThoughts"] = True
    return config


def sanitise_schema(schema: Any) -> Any:
    """A JSON Schema cut down to the subset Gemini accepts (docs/snags.md #11): rejected keywords dropped or
    replaced by their nearest allowed one, recursively. Keys of ``properties`` and ``$defs`` are
    names, not keywords, and are kept whatever they are called."""
    if not isinstance(schema, dict):
        return schema
    schema = _flatten_all_of(schema)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in SCHEMA_KEYWORDS and (value := _sanitise_value(key, value)) is not None:
            out[key] = value
    for source, target in SCHEMA_RENAMES.items():
        if source in schema and target not in out:
            value = _renamed_value(source, schema[source])
            if (value := _sanitise_value(target, value)) is not None:
                out[target] = value
    if isinstance(out.get("items"), list):
        out.setdefault("prefixItems", out.pop("items"))
    return out


def _flatten_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    """Merge ``allOf`` into its schema when the pieces share no keyword (the common
    ``{"allOf": [{"$ref": …}], "description": …}``); otherwise drop it."""
    all_of = schema.get("allOf")
    if all_of is None:
        return schema
    merged = {key: value for key, value in schema.items() if key != "allOf"}
    rest = dict(merged)
    if not isinstance(all_of, list):
        return rest
    for sub in all_of:
        if not isinstance(sub, dict) or merged.keys() & sub.keys():
            return rest
        merged.update(sub)
    return _flatten_all_of(merged)


def _renamed_value(source: str, value: Any) -> Any:
    if source == "const":
        return [value]
    if source.startswith("exclusive") and isinstance(value, bool):
        return None  # draft-4 boolean form: no bound of its own
    return value


def _sanitise_value(key: str, value: Any) -> Any:
    """The sanitised value of one allowed keyword, or None to drop the keyword."""
    if key in ("properties", "$defs"):
        if not isinstance(value, dict):
            return None
        return {name: sanitise_schema(sub) for name, sub in value.items()}
    if key in ("anyOf", "oneOf", "prefixItems"):
        return [sanitise_schema(sub) for sub in value] if isinstance(value, list) else None
    if key == "items" and isinstance(value, list):
        return [sanitise_schema(sub) for sub in value]
    if key in ("items", "additionalProperties"):
        return sanitise_schema(value)
    if key == "enum":
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None
    if key == "format":
        return value if value in SCHEMA_FORMATS else None
    if key == "$ref" and isinstance(value, str) and value.startswith("#/definitions/"):
        return "#/$defs/" + value.removeprefix("#/definitions/")
    if key == "minimum" or key == "maximum":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return value


# -- response parsing -----------------------------------------------------------------------------


def _first_candidate(body: dict[str, Any]) -> dict[str, Any] | None:
    candidates = body.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return None


def _candidate_parts(candidate: dict[str, Any]) -> list[Any]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return parts if isinstance(parts, list) else []


def _blocked(body: dict[str, Any]) -> bool:
    feedback = _get(body, "promptFeedback")
    return isinstance(feedback, dict) and bool(_get(feedback, "blockReason"))


def _stop_reason(finish: Any, has_calls: bool) -> str | None:
    """Gemini says STOP after function calls: tool use is inferred from the calls (docs/snags.md #17)."""
    if not finish:
        return None
    reason = STOP_IN.get(finish, "error") if isinstance(finish, str) else "error"
    return "tool_use" if reason == "end_turn" and has_calls else reason


def _usage(meta: Any) -> Usage:
    """Input includes cached and tool-use prompt tokens; output includes thoughts (canonical.py)."""
    if not isinstance(meta, dict):
        return Usage()
    thoughts = count(_get(meta, "thoughtsTokenCount"))
    return Usage(
        input_tokens=_sum_known(
            count(_get(meta, "promptTokenCount")), count(_get(meta, "toolUsePromptTokenCount"))
        ),
        output_tokens=_sum_known(count(_get(meta, "candidatesTokenCount")), thoughts),
        cache_read_tokens=count(_get(meta, "cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def _sum_known(*counts: int | None) -> int | None:
    """None when no count is known (unknown is not zero), else the sum of the known ones."""
    known = [count for count in counts if count is not None]
    return sum(known) if known else None


def _coalesce(parts: list[Part]) -> list[Part]:
    """Join adjacent text, and a signature onto the thought before it, exactly as
    ``Assembler`` does for a stream, so streamed and whole answers agree (docs/snags.md #2)."""
    out: list[Part] = []
    for part in parts:
        last = out[-1] if out else None
        if isinstance(part, Text) and isinstance(last, Text):
            last.text += part.text
        elif isinstance(part, Reasoning) and isinstance(last, Reasoning) and last.signature is None:
            last.text += part.text
            last.signature = part.signature
        else:
            out.append(part)
    return out


def _ground(grounding: Any, sources: Sources) -> None:
    """The web pages of Google Search grounding (``groundingChunks[].web``: uri, title)."""
    chunks = _get(grounding, "groundingChunks") if isinstance(grounding, dict) else None
    for chunk in chunks if isinstance(chunks, list) else []:
        web = _get(chunk, "web") if isinstance(chunk, dict) else None
        if isinstance(web, dict):
            sources.add(_get(web, "uri"), _get(web, "title"))


def parse_response(body: Any) -> ChatResponse:
    if not isinstance(body, dict):
        raise ProxyError("upstream_error", "Gemini response: expected a JSON object")
    ids = _CallIds()
    parts: list[Part] = []
    candidate = _first_candidate(body)
    if candidate is not None:
        for j, raw in enumerate(_candidate_parts(candidate)):
            for part in _read_part(raw, f"candidates[0].content.parts[{j}]"):
                parts.append(ids.assign(part) if isinstance(part, ToolCall) else part)
        has_calls = any(isinstance(p, ToolCall) for p in parts)
        stop = _stop_reason(_get(candidate, "finishReason"), has_calls)
        sources = Sources()
        _ground(_get(candidate, "groundingMetadata") or {}, sources)
        if said := sources.text():
            parts.append(Text(text=said))
    else:
        stop = "refusal" if _blocked(body) else None
    return ChatResponse(
        id=str(_get(body, "responseId") or f"gemini-{ids.nonce}"),
        model=str(_get(body, "modelVersion") or ""),
        content=_coalesce(parts),
        stop_reason=stop,  # type: ignore[arg-type]
        usage=_usage(_get(body, "usageMetadata")),
    )


# -- response rendering ---------------------------------------------------------------------------


def _render_usage(usage: Usage) -> dict[str, int]:
    meta: dict[str, int] = {}
    if usage.input_tokens is not None:
        meta["promptTokenCount"] = usage.input_tokens
    if usage.output_tokens is not None:
        meta["candidatesTokenCount"] = max(usage.output_tokens - (usage.reasoning_tokens or 0), 0)
    if usage.reasoning_tokens is not None:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cache_read_tokens is not None:
        meta["cachedContentTokenCount"] = usage.cache_read_tokens
    if usage.input_tokens is not None or usage.output_tokens is not None:
        meta["totalTokenCount"] = (usage.input_tokens or 0) + (usage.output_tokens or 0)
    return meta


def render_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    """A ``GenerateContentResponse``; function calls carry the canonical id so that the client
    echoes it and its results match by id; and under the names the client declared."""
    known = origins(request.tools)
    items = ((0, j, _as_declared(part, known)) for j, part in enumerate(response.content))
    parts = _render_parts(items, {}, client=True) or [{"text": ""}]
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": STOP_OUT.get(response.stop_reason, "OTHER"),
                "index": 0,
            }
        ],
        "usageMetadata": _render_usage(response.usage),
        "modelVersion": response.model or request.model,
        "responseId": response.id,
    }


def _as_declared(part: Part, known: dict[str, ToolOrigin]) -> Part:
    """A call under the name its tool was declared with (``known``: the request's ``origins``)."""
    if isinstance(part, ToolCall) and part.name in known:
        return part.model_copy(update={"name": client_name(part.name, known)})
    return part


# -- stream decoder -------------------------------------------------------------------------------


class StreamDecoder(SSEDecoder):
    """``streamGenerateContent?alt=sse`` → canonical events. Each chunk carries only new parts and
    a function call arrives whole; there is no terminal marker besides the finishReason and EOF."""

    def __init__(self) -> None:
        super().__init__()
        self._ids = _CallIds()
        self._started = False
        self._has_calls = False
        self._calls = 0
        self._sources = Sources()  # Google Search grounding, told as text at the end

    def _on_event(self, frame: SSEEvent, events: list[Event]) -> None:
        if not frame.data.strip():
            return
        try:
            payload = json.loads(frame.data)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._fail(events, ProxyError("upstream_error", "Gemini stream chunk is not a JSON object"))
        elif isinstance(error := payload.get("error"), dict):
            code = error.get("code")
            self._fail(events, _error_from_envelope(error, code if isinstance(code, int) else 500))
        else:
            try:
                self._chunk(payload, events)
            except ProxyError as error:
                self._fail(events, error)

    def _chunk(self, payload: dict[str, Any], events: list[Event]) -> None:
        if not self._started:
            self._started = True
            response_id = _get(payload, "responseId") or f"gemini-{self._ids.nonce}"
            events.append(MessageStart(id=str(response_id), model=str(_get(payload, "modelVersion") or "")))
        candidate = _first_candidate(payload)
        if candidate is not None and not self._stopped:
            for raw in _candidate_parts(candidate):
                self._part(raw, events)
        if (meta := _get(payload, "usageMetadata")) is not None:
            events.append(UsageUpdate(usage=_usage(meta)))
        finish = _get(candidate, "finishReason") if candidate is not None else None
        if candidate is not None and (grounding := _get(candidate, "groundingMetadata")):
            _ground(grounding, self._sources)
        if not self._stopped and (finish or (candidate is None and _blocked(payload))):
            if sources := self._sources.text():
                events.append(TextDelta(text=sources))
            self._stopped = True
            reason = _stop_reason(finish, self._has_calls) if finish else "refusal"
            events.append(Stop(reason=reason))  # type: ignore[arg-type]

    def _part(self, raw: Any, events: list[Event]) -> None:
        if isinstance(raw, dict) and len(raw) == 1 and isinstance(text := raw.get("text"), str):
            if text:  # the common case: plain text, no models built
                events.append(TextDelta(text=text))
            return
        for part in _read_part(raw, "candidates[0].content.parts"):
            match part:
                case Text(text=text) if text:
                    events.append(TextDelta(text=text))
                case Reasoning():
                    events.append(ReasoningDelta(text=part.text, signature=part.signature, origin=NAME))
                case ToolCall():
                    self._call(self._ids.assign(part), events)

    def _call(self, call: ToolCall, events: list[Event]) -> None:
        """A whole function call: start, one delta with all the arguments (docs/snags.md #2), end."""
        index, self._calls, self._has_calls = self._calls, self._calls + 1, True
        events.append(
            ToolCallStart(index=index, id=call.id, name=call.name, thought_signature=call.thought_signature)
        )
        events.append(ToolCallDelta(index=index, arguments=call.arguments))
        events.append(ToolCallEnd(index=index))


# -- stream encoder -------------------------------------------------------------------------------


class _PendingCall:
    __slots__ = ("fragments", "id", "name", "signature")

    def __init__(self, event: ToolCallStart, name: str) -> None:
        self.id, self.name, self.signature = event.id, name, event.thought_signature
        self.fragments: list[str] = []

    def part(self) -> dict[str, Any]:
        function = {"name": self.name, "args": parse_arguments("".join(self.fragments)), "id": self.id}
        part: dict[str, Any] = {"functionCall": function}
        if self.signature:
            part["thoughtSignature"] = self.signature
        return part


class StreamEncoder(Encoder):
    """Canonical events → ``data: <GenerateContentResponse>`` chunks (``sse``), or the streamed JSON
    array Google serves without ``alt=sse``. Function calls go out whole at their end; the finish
    reason and usage go in a final chunk at End."""

    def __init__(self, request: ChatRequest, *, sse: bool = True) -> None:
        super().__init__()
        self._sse = sse
        self._id = ""
        self._model = request.model
        self._calls: dict[int, _PendingCall] = {}
        self._known = origins(request.tools)
        self._stop: Stop | None = None
        self._usage = Usage()
        self._chunks = 0

    def _on_event(self, event: Event, out: list[bytes]) -> None:
        match event:
            case MessageStart():
                self._id, self._model = event.id, event.model or self._model
                if event.usage is not None:
                    self._usage = self._usage.merged(event.usage)
            case TextDelta(text=text) if text:
                self._emit([{"text": text}], out)
            case ReasoningDelta():
                self._reasoning(event, out)
            case ToolCallStart():
                self._calls[event.index] = _PendingCall(event, client_name(event.name, self._known))
            case ToolCallDelta():
                if (call := self._calls.get(event.index)) is not None:
                    call.fragments.append(event.arguments)
            case ToolCallEnd():
                if (call := self._calls.pop(event.index, None)) is not None:
                    self._emit([call.part()], out)
            case UsageUpdate():
                self._usage = self._usage.merged(event.usage)
            case Stop():
                self._stop = event
            case End():
                self._finish(out)
            case StreamError():
                self._error(ProxyError.from_dict(event.error), out)

    def _reasoning(self, event: ReasoningDelta, out: list[bytes]) -> None:
        """Thought text of any origin is shown; only Gemini's own signatures are passed on."""
        signature = event.signature if event.origin == NAME and not event.redacted else None
        if event.text and not event.redacted:
            part: dict[str, Any] = {"text": event.text, "thought": True}
        elif signature:
            part = {"text": ""}
        else:
            return
        if signature:
            part["thoughtSignature"] = signature
        self._emit([part], out)

    def _finish(self, out: list[bytes]) -> None:
        for index in sorted(self._calls):
            self._emit([self._calls.pop(index).part()], out)
        reason = STOP_OUT.get(self._stop.reason if self._stop else None, "OTHER")
        self._emit([{"text": ""}], out, finish=reason, usage=_render_usage(self._usage))
        self._close(out)

    def _error(self, error: ProxyError, out: list[bytes]) -> None:
        self._frame(_error_body(error, 503 if error.status == 529 else error.status), out)
        self._close(out)

    def _emit(
        self,
        parts: list[dict[str, Any]],
        out: list[bytes],
        *,
        finish: str | None = None,
        usage: dict[str, int] | None = None,
    ) -> None:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        chunk: dict[str, Any] = {"candidates": [candidate]}
        if usage:
            chunk["usageMetadata"] = usage
        chunk["modelVersion"] = self._model
        chunk["responseId"] = self._id
        self._frame(chunk, out)

    def _frame(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        if self._sse:
            out.append(b"data: " + dumps(chunk) + b"\n\n")
        else:
            out.append((b"[" if self._chunks == 0 else b",\r\n") + dumps(chunk))
        self._chunks += 1

    def _close(self, out: list[bytes]) -> None:
        self._finished = True
        if not self._sse:
            out.append(b"]" if self._chunks else b"[]")


# -- errors ---------------------------------------------------------------------------------------


def _error_body(error: ProxyError, status: int) -> dict[str, Any]:
    rpc = error.provider_type
    if rpc not in RPC_STATUS_IN:
        rpc = RPC_STATUS_OUT.get(error.code, "UNKNOWN")
    details: list[dict[str, Any]] = [
        {
            "@type": ERROR_INFO,
            "reason": error.code.upper(),
            "domain": ERROR_DOMAIN,
            "metadata": {"retryable": "true" if error.retryable else "false"},
        }
    ]
    if error.retry_after is not None:
        details.append({"@type": RETRY_INFO, "retryDelay": f"{error.retry_after:g}s"})
    return {"error": {"code": status, "message": error.message, "status": rpc, "details": details}}


def render_error(error: ProxyError) -> tuple[int, bytes]:
    """google.rpc.Status envelope; the canonical code travels in an ErrorInfo detail."""
    status = 503 if error.status == 529 else error.status
    return status, dumps(_error_body(error, status))


def _envelope(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    error = value.get("error") if isinstance(value, dict) else None
    return error if isinstance(error, dict) else None


def _detail(details: Any, type_suffix: str) -> dict[str, Any]:
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(type_suffix):
            return detail
    return {}


def _retry_after(details: Any) -> float | None:
    delay = _detail(details, "RetryInfo").get("retryDelay")
    try:
        return float(delay.removesuffix("s")) if isinstance(delay, str) else None
    except ValueError:
        return None


def _error_from_envelope(error: dict[str, Any], status: int) -> ProxyError:
    rpc = error.get("status") if isinstance(error.get("status"), str) else None
    info = _detail(error.get("details"), "ErrorInfo")
    reason = str(info.get("reason") or "")
    ours = info.get("domain") == ERROR_DOMAIN and reason.lower() in CODES
    if ours:
        code = reason.lower()
    elif reason == "API_KEY_INVALID":
        code = "authentication"
    else:
        code = RPC_STATUS_IN.get(rpc or "") or code_for_status(status)
    retryable = (info.get("metadata") or {}).get("retryable") if ours else None
    return ProxyError(
        code,
        str(error.get("message") or f"HTTP {status} from Gemini"),
        status=status,
        retryable=None if retryable is None else retryable == "true",
        provider_type=rpc,
        retry_after=_retry_after(error.get("details")),
    )


def parse_error(status: int, body: bytes) -> ProxyError:
    """A Gemini error body (the envelope, a one-element list around it, or anything else)."""
    error = _envelope(body)
    if error is None:
        text = body.decode("utf-8", "replace").strip()[:500]
        return ProxyError.from_status(status, text or f"HTTP {status} from Gemini")
    return _error_from_envelope(error, status)
