"""FakeAnthropic: Messages and count_tokens (docs/wire.md §3)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .common import (
    BODY,
    STREAM_FAILED,
    Answer,
    FakeProvider,
    Invalid,
    Json,
    Script,
    Stream,
    arg_fragments,
    expect_dict,
    expect_list,
    is_int,
    json_response,
    require,
    script_pieces,
    sse,
    text_pieces,
    words,
)

ANTHROPIC_VERSIONS = frozenset({"2023-06-01", "2026-10-21"})
ANTHROPIC_USAGE_START = {
    "input_tokens": 13,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 1,
}
ANTHROPIC_USAGE = {**ANTHROPIC_USAGE_START, "output_tokens": 5}
ANTHROPIC_TOOL_ID = "toolu_fake_anthropic_01"
ANTHROPIC_ARG_FRAGMENTS = ["", '{"city":', '"Paris"}']
ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}
ANTHROPIC_FIELDS = words(
    "model max_tokens messages system stop_sequences stream tools tool_choice thinking output_config metadata"
    " service_tier cache_control speed inference_geo container diagnostics temperature top_p top_k"
    " mcp_servers context_management"
)
ANTHROPIC_COUNT_FIELDS = ANTHROPIC_FIELDS - {
    "max_tokens",
    "stream",
    "stop_sequences",
    "metadata",
    "service_tier",
}
ANTHROPIC_SAMPLING = ("temperature", "top_p", "top_k")  # rejected under 2026-10-21
ANTHROPIC_BLOCKS = {  # role -> block types it may carry
    "user": frozenset({"text", "image", "document", "tool_result", "search_result"}),
    "assistant": frozenset({"text", "tool_use", "thinking", "redacted_thinking", "server_tool_use"}),
}
ANTHROPIC_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
ANTHROPIC_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MID_CONVERSATION_SYSTEM = "mid-conversation-system-"  # anthropic-beta prefix


def check_anthropic(body: Json, version: str, counting: bool) -> None:
    allowed = ANTHROPIC_COUNT_FIELDS if counting else ANTHROPIC_FIELDS
    extra = sorted(set(body) - allowed)
    require(not extra, f"{', '.join(extra)}: Extra inputs are not permitted")
    require(isinstance(body.get("model"), str) and body["model"], "model: Field required")
    if not counting:
        require(is_int(body.get("max_tokens")), "max_tokens: Field required (an integer)")
    require("stream" not in body or isinstance(body["stream"], bool), "stream: must be a boolean")
    if version == "2026-10-21":
        for key in ANTHROPIC_SAMPLING:
            require(key not in body, f"{key}: Extra inputs are not permitted (anthropic-version 2026-10-21)")
    check_anthropic_thinking(body.get("thinking"), body.get("max_tokens"), counting)
    check_anthropic_system(body.get("system"))
    tools = check_anthropic_tools(body.get("tools"))
    turns = anthropic_turns(body.get("messages"))
    uses_tools = any(b["type"] in ("tool_use", "tool_result") for _, blocks in turns for b in blocks)
    require(
        tools or not uses_tools,
        "Requests which include `tool_use` or `tool_result` blocks must define tools.",
    )
    check_anthropic_pairing(turns)


def check_anthropic_thinking(thinking: Any, max_tokens: Any, counting: bool) -> None:
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return
    budget = thinking.get("budget_tokens")
    if not is_int(budget) or budget < 1024:
        raise Invalid("thinking.budget_tokens: must be an integer >= 1024")
    require(
        counting or (is_int(max_tokens) and budget < max_tokens),
        "thinking.budget_tokens: must be less than max_tokens",
    )


def check_anthropic_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    require(isinstance(system, list), "system: expected a string or an array of text blocks")
    for i, block in enumerate(system):
        require(isinstance(block, dict) and block.get("type") == "text", f"system.{i}.type: expected 'text'")
        check_anthropic_text(f"system.{i}", block)


def check_anthropic_text(where: str, block: Json) -> None:
    text = block.get("text")
    require(
        isinstance(text, str) and text.strip(),
        f"{where}: text content blocks must contain non-whitespace text",
    )


def check_server_tool(i: int, tool: Json) -> None:
    """The web search server tool as Anthropic checks it; other server types pass unchecked."""
    kind = str(tool.get("type"))
    if not kind.startswith("web_search_"):
        return
    require(
        kind in ("web_search_20250305", "web_search_20260209"), f"tools.{i}.type: unknown tool type {kind!r}"
    )
    require(tool.get("name") == "web_search", f"tools.{i}.name: Input should be 'web_search'")
    require(
        not (tool.get("allowed_domains") and tool.get("blocked_domains")),
        f"tools.{i}: allowed_domains and blocked_domains cannot be used together",
    )


def check_anthropic_tools(tools: Any) -> bool:
    """Check the tool definitions; True when there are any."""
    if tools is None:
        return False
    require(isinstance(tools, list), "tools: expected an array")
    for i, tool in enumerate(tools):
        require(isinstance(tool, dict), f"tools.{i}: expected an object")
        if tool.get("type", "custom") != "custom":
            check_server_tool(i, tool)  # a server tool (web_search_…): no input_schema
            continue
        name = tool.get("name")
        require(
            isinstance(name, str) and ANTHROPIC_TOOL_NAME.match(name), f"tools.{i}.name: invalid {name!r}"
        )
        schema = tool.get("input_schema")
        require(isinstance(schema, dict), f"tools.{i}.input_schema: Field required")
        require(schema.get("type") == "object", f"tools.{i}.input_schema.type: Input should be 'object'")
    return bool(tools)


def mid_conversation_system(request: web.Request) -> Json:
    """The body, with `role: "system"` messages checked and set aside when the request carries the
    beta that allows them among the turns (Claude Code sends both); without it they stay and fail."""
    body = request[BODY]
    messages = body.get("messages")
    allowed = MID_CONVERSATION_SYSTEM in request.headers.get("anthropic-beta", "")
    if not allowed or not isinstance(messages, list):
        return body
    turns = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "system":
            check_anthropic_system(message.get("content"))
        else:
            turns.append(message)
    return {**body, "messages": turns}


def anthropic_turns(messages: Any) -> list[tuple[str, list[Json]]]:
    """Check each message and merge consecutive same-role messages, as the API does."""
    messages = expect_list(messages, "messages: must be a non-empty array")
    turns: list[tuple[str, list[Json]]] = []
    for i, message in enumerate(messages):
        final_assistant = (
            i == len(messages) - 1 and isinstance(message, dict) and message.get("role") == "assistant"
        )
        role, blocks = anthropic_message(i, message, final_assistant)
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, list(blocks)))
    return turns


def anthropic_message(i: int, message: Any, final_assistant: bool) -> tuple[str, list[Json]]:
    require(isinstance(message, dict), f"messages.{i}: expected an object")
    role = message.get("role")
    require(
        role in ANTHROPIC_BLOCKS, f"messages.{i}.role: Input should be 'user' or 'assistant', got {role!r}"
    )
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}] if content or not final_assistant else []
    require(isinstance(content, list), f"messages.{i}.content: expected a string or an array")
    require(
        content or final_assistant,
        f"messages.{i}: all messages must have non-empty content"
        " except for the optional final assistant message",
    )
    for j, block in enumerate(content):
        check_anthropic_block(f"messages.{i}.content.{j}", role, block)
    return role, content


def check_anthropic_block(where: str, role: str, block: Any) -> None:
    kind = str(block.get("type")) if isinstance(block, dict) else ""
    require(kind in ANTHROPIC_BLOCKS[role], f"{where}.type: {kind!r} is not allowed in a {role} message")
    if (check := CHECK_ANTHROPIC_BLOCK.get(kind)) is not None:
        check(where, block)


def check_anthropic_tool_use(where: str, block: Json) -> None:
    require(
        isinstance(block.get("id"), str) and ANTHROPIC_ID.match(block["id"]),
        f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'",
    )
    require(isinstance(block.get("name"), str) and block["name"], f"{where}.name: Field required")
    require(isinstance(block.get("input"), dict), f"{where}.input: Input should be a valid dictionary")


def check_anthropic_tool_result(where: str, block: Json) -> None:
    tool_use_id = block.get("tool_use_id")
    require(
        isinstance(tool_use_id, str) and ANTHROPIC_ID.match(tool_use_id),
        f"{where}.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'",
    )
    content = block.get("content", "")
    if isinstance(content, list):
        for k, inner in enumerate(content):
            require(
                isinstance(inner, dict)
                and inner.get("type") in ("text", "image", "document", "search_result"),
                f"{where}.content.{k}.type: not allowed in a tool_result",
            )
            if inner["type"] == "text":
                check_anthropic_text(f"{where}.content.{k}", inner)
    else:
        require(isinstance(content, str), f"{where}.content: expected a string or an array")


def check_anthropic_image(where: str, block: Json) -> None:
    source = expect_dict(block.get("source"), f"{where}.source: Field required")
    if source.get("type") == "base64":
        require(source.get("media_type") in ANTHROPIC_IMAGE_TYPES, f"{where}.source.media_type: invalid")
        data = source.get("data")
        require(
            isinstance(data, str) and not data.startswith("data:"),
            f"{where}.source.data: invalid base64 data",
        )
    else:
        require(source.get("type") in ("url", "file"), f"{where}.source.type: invalid {source.get('type')!r}")


CHECK_ANTHROPIC_BLOCK: dict[str, Callable[[str, Json], None]] = {
    "text": check_anthropic_text,
    "tool_use": check_anthropic_tool_use,
    "tool_result": check_anthropic_tool_result,
    "image": check_anthropic_image,
}


def check_anthropic_pairing(turns: list[tuple[str, list[Json]]]) -> None:
    """Every tool_use is answered by tool_result blocks at the start of the next user turn, and only those."""
    asked: list[str] = []
    for k, (role, blocks) in enumerate(turns):
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        leading = list(itertools.takewhile(lambda b: b["type"] == "tool_result", blocks))
        require(
            len(leading) == len(results),
            f"messages.{k}: tool_result blocks must come first in the user message",
        )
        extra = sorted(set(results) - set(asked))
        require(
            not extra,
            f"messages.{k}.content: unexpected `tool_use_id` found in `tool_result` blocks:"
            f" {', '.join(extra)}."
            " Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
        )
        missing = sorted(set(asked) - set(results))
        require(
            not missing,
            f"messages.{k}: `tool_use` ids were found without `tool_result` blocks immediately after:"
            f" {', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block"
            " in the next message.",
        )
        asked = [b["id"] for b in blocks if b["type"] == "tool_use"] if role == "assistant" else []
    require(
        not asked,
        f"`tool_use` ids were found without `tool_result` blocks immediately after: {', '.join(asked)}",
    )


def anthropic_result_text(block: Json) -> str:
    content = block.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(inner.get("text", "") for inner in content if inner.get("type") == "text")


class FakeAnthropic(FakeProvider):
    """POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models."""

    name = "anthropic"
    failure_statuses = FakeProvider.failure_statuses | {529}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/messages", self.messages),
            web.post("/v1/messages/count_tokens", self.count_tokens),
            web.get("/v1/models", self.models),
        ]

    def key_of(self, request: web.Request) -> str | None:
        return request.headers.get("x-api-key") or request.headers.get("Authorization", "").removeprefix(
            "Bearer "
        )

    def check_auth(self, request: web.Request) -> web.Response | None:
        if not self.accepts(self.key_of(request)):
            return self.error(401, "fake anthropic: invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            return self.error(400, "fake anthropic: anthropic-version: header is required")
        if version not in ANTHROPIC_VERSIONS:
            return self.error(400, f"fake anthropic: anthropic-version: unsupported version {version!r}")
        return None

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        kind = ANTHROPIC_ERRORS.get(status, "api_error")
        envelope = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_fake_anthropic",
        }
        return json_response(envelope, headers, status)

    def response_headers(self) -> dict[str, str]:
        return {"request-id": "req_fake_anthropic"}

    async def models(self, request: web.Request) -> web.Response:
        ids = ["claude-fake-1", "claude-fake-1-haiku"]
        data = [
            {"type": "model", "id": i, "display_name": i.title(), "created_at": "2026-01-01T00:00:00Z"}
            for i in ids
        ]
        return json_response({"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]})

    async def count_tokens(self, request: web.Request) -> web.Response:
        body = mid_conversation_system(request)
        check_anthropic(body, request.headers["anthropic-version"], counting=True)
        return json_response({"input_tokens": ANTHROPIC_USAGE["input_tokens"]})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = mid_conversation_system(request)
        check_anthropic(body, request.headers["anthropic-version"], counting=False)
        return await self.respond(request, body["model"], self.answer(body), body.get("stream") is True)

    def answer(self, body: Json) -> Answer:
        turns = anthropic_turns(body["messages"])
        last_user = next((blocks for role, blocks in reversed(turns) if role == "user"), [])
        results = [anthropic_result_text(b) for b in last_user if b["type"] == "tool_result"]
        tools_on = bool(body.get("tools")) and (body.get("tool_choice") or {}).get("type") != "none"
        names = [tool.get("name", "") for tool in body.get("tools") or []]
        return self.reply(body["model"], results, tools_on, names, anthropic_schema(body))

    def message(self, model: str, answer: Answer, request: web.Request) -> Json:
        if answer.tool_call:
            block = {
                "type": "tool_use",
                "id": ANTHROPIC_TOOL_ID,
                "name": answer.name,
                "input": json.loads(answer.arguments),
            }
        else:
            block = {"type": "text", "text": answer.text}
        return {
            **self.envelope(model),
            "content": [block],
            "stop_reason": self.stop_reason(answer),
            "usage": ANTHROPIC_USAGE,
        }

    @staticmethod
    def envelope(model: str) -> Json:
        return {"id": "msg_fake_anthropic", "type": "message", "role": "assistant", "model": model}

    @staticmethod
    def stop_reason(answer: Answer) -> str:
        return "tool_use" if answer.tool_call else "end_turn"

    def stream(self, model: str, answer: Answer, request: web.Request) -> Stream:
        start = {**self.envelope(model), "content": [], "stop_reason": None, "stop_sequence": None}
        events: list[Json] = [
            {"type": "message_start", "message": {**start, "usage": ANTHROPIC_USAGE_START}},
            {"type": "content_block_start", "index": 0, "content_block": self.opening_block(answer)},
            {"type": "ping"},
            *({"type": "content_block_delta", "index": 0, "delta": d} for d in self.deltas(answer)),
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason(answer), "stop_sequence": None},
                "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]},
            },
            {"type": "message_stop"},
        ]
        failure = {
            "type": "error",
            "error": {"type": "overloaded_error", "message": f"fake anthropic: {STREAM_FAILED}"},
        }
        return Stream([sse(e, e["type"]) for e in events], sse(failure, "error"), head=4)

    @staticmethod
    def opening_block(answer: Answer) -> Json:
        if answer.tool_call:
            return {"type": "tool_use", "id": ANTHROPIC_TOOL_ID, "name": answer.name, "input": {}}
        return {"type": "text", "text": ""}

    @staticmethod
    def deltas(answer: Answer) -> list[Json]:
        if answer.tool_call:
            fragments = arg_fragments(answer, ANTHROPIC_ARG_FRAGMENTS)
            return [{"type": "input_json_delta", "partial_json": f} for f in fragments]
        return [{"type": "text_delta", "text": p} for p in text_pieces(answer.text)]

    # --- scripted answers (common.Script): a text block, then one tool_use block per call ----------
    @staticmethod
    def script_blocks(script: Script) -> list[Json]:
        blocks: list[Json] = [{"type": "text", "text": script.text}] if script.text else []
        for i, (name, arguments) in enumerate(script.calls):
            call_id = f"{ANTHROPIC_TOOL_ID}_{i}"
            blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": json.loads(arguments)})
        return blocks

    def script_message(self, model: str, script: Script, request: web.Request) -> Json:
        stop = "tool_use" if script.calls else "end_turn"
        content = self.script_blocks(script)
        return {**self.envelope(model), "content": content, "stop_reason": stop, "usage": ANTHROPIC_USAGE}

    def script_stream(self, model: str, script: Script, request: web.Request) -> Stream:
        start = {**self.envelope(model), "content": [], "stop_reason": None, "stop_sequence": None}
        events: list[Json] = [{"type": "message_start", "message": {**start, "usage": ANTHROPIC_USAGE_START}}]
        pause_at = 0
        for index, block in enumerate(self.script_blocks(script)):
            if block["type"] == "text":
                opening: Json = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": p} for p in script_pieces(block["text"])]
            else:
                opening = {**block, "input": {}}
                arguments = script.calls[index - bool(script.text)][1]
                deltas = [{"type": "input_json_delta", "partial_json": p} for p in script_pieces(arguments)]
            events.append({"type": "content_block_start", "index": index, "content_block": opening})
            events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
            events.append({"type": "content_block_stop", "index": index})
            if block["type"] == "text":
                pause_at = len(events)
        stop = "tool_use" if script.calls else "end_turn"
        events += [
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]},
            },
            {"type": "message_stop"},
        ]
        frames = [sse(e, e["type"]) for e in events]
        return Stream(frames, b"", head=0, pause_at=pause_at, pause=script.pause)


def anthropic_schema(body: Json) -> Json | None:
    """The JSON schema the request wants the answer in (output_config.format)."""
    fmt = (body.get("output_config") or {}).get("format") or {}
    return fmt.get("schema") if fmt.get("type") == "json_schema" else None
