"""FakeOpenAI: Chat Completions (docs/wire.md §1) and the Responses API (§2), stateless."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .common import (
    BODY,
    CREATED,
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
    is_agent_model,
    is_int,
    json_response,
    require,
    script_pieces,
    sse,
    text_pieces,
    words,
)

# ================================================================================================
# Chat Completions (docs/wire.md §1)
# ================================================================================================
OPENAI_USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 7,
    "total_tokens": 18,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
OPENAI_TOOL_ID = "call_fake_openai_01"
OPENAI_ARG_FRAGMENTS = ['{"ci', 'ty":"Pa', 'ris"}']
OPENAI_ERRORS = {  # status -> (type, code)
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    405: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
OPENAI_FIELDS = words(
    "model messages tools tool_choice parallel_tool_calls max_completion_tokens max_tokens temperature top_p"
    " frequency_penalty presence_penalty seed n logprobs top_logprobs logit_bias stop stream stream_options"
    " response_format reasoning_effort verbosity metadata user store service_tier prompt_cache_key"
    " prompt_cache_retention modalities audio prediction web_search_options safety_identifier functions"
    " function_call"
)
OPENAI_ROLES = frozenset({"developer", "system", "user", "assistant", "tool", "function"})
OPENAI_PARTS = {  # role -> content part types it may carry
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "tool": frozenset({"text"}),
}
BOT_COOKIE = "__cf_bm=fake-bot-management; path=/; HttpOnly; SameSite=None"
OPENAI_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
SCRIPTED_ITEM_ID = "msg_fake_openai"  # the message item of a scripted Responses answer
OPENAI_TOOL_ID_MAX = 40


def check_openai_chat(body: Json) -> None:
    unknown = sorted(set(body) - OPENAI_FIELDS)
    require(not unknown, f"Unrecognized request argument supplied: {', '.join(unknown)}")
    require(isinstance(body.get("model"), str) and body["model"], "model: a non-empty string is required")
    require("stream" not in body or isinstance(body["stream"], bool), "stream: must be a boolean")
    require(
        "stream_options" not in body or body.get("stream") is True,
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
    )
    names = check_openai_tools(body.get("tools"))
    check_openai_tool_choice(body.get("tool_choice"), names)
    messages = expect_list(body.get("messages"), "messages: must be a non-empty array")
    pending: list[str] = []
    for i, message in enumerate(messages):
        pending = check_openai_message(i, message, pending)
    require(not pending, unanswered_calls(pending))


def unanswered_calls(ids: list[str]) -> str:
    return (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each"
        f" 'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(ids)}"
    )


def check_openai_tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    require(isinstance(tools, list) and tools, "tools: expected a non-empty array")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        require(
            isinstance(tool, dict) and tool.get("type") == "function", f"tools[{i}].type: expected 'function'"
        )
        function = tool.get("function")
        require(isinstance(function, dict), f"tools[{i}].function: required object")
        name = function.get("name")
        require(
            isinstance(name, str) and OPENAI_TOOL_NAME.match(name),
            f"tools[{i}].function.name: invalid {name!r}",
        )
        params = function.get("parameters")
        require(
            params is None or (isinstance(params, dict) and params.get("type") == "object"),
            f"Invalid schema for function '{name}': schema must be a JSON Schema of 'type: \"object\"'",
        )
        names.add(name)
    return names


def check_openai_tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None:
        return
    require(
        names, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
    )
    if isinstance(choice, str):
        require(choice in ("none", "auto", "required"), f"tool_choice: invalid value {choice!r}")
        return
    require(isinstance(choice, dict), "tool_choice: expected a string or an object")
    if choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        require(name in names, f"tool_choice: function {name!r} is not among the tools")
    else:
        require(
            choice.get("type") in ("allowed_tools", "custom"),
            f"tool_choice.type: invalid {choice.get('type')!r}",
        )


def check_openai_message(i: int, message: Any, pending: list[str]) -> list[str]:
    """Check one message; returns the tool-call ids still awaiting a tool message."""
    require(isinstance(message, dict), f"messages[{i}]: expected an object")
    role = message.get("role")
    require(role in OPENAI_ROLES, f"messages[{i}].role: invalid role {role!r}")
    if role == "tool":
        call_id = message.get("tool_call_id")
        require(
            call_id in pending,
            f"messages[{i}]: messages with role 'tool' must be a response to a preceeding message with"
            f" 'tool_calls' (tool_call_id {call_id!r} answers no pending call)",
        )
        check_openai_content(i, role, message.get("content"))
        return [p for p in pending if p != call_id]
    require(not pending, unanswered_calls(pending))
    if role == "assistant":
        return check_openai_assistant(i, message)
    if role != "function":
        check_openai_content(i, role, message.get("content"))
    return []


def check_openai_content(i: int, role: str, content: Any) -> None:
    if isinstance(content, str):
        return
    require(
        isinstance(content, list) and content,
        f"messages[{i}].content: expected a string or a non-empty array",
    )
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        require(
            kind in OPENAI_PARTS[role], f"messages[{i}].content[{j}].type: {kind!r} is not allowed for {role}"
        )
        if kind == "text":
            require(isinstance(part.get("text"), str), f"messages[{i}].content[{j}].text: required string")
        if kind == "image_url":
            url = (part.get("image_url") or {}) if isinstance(part.get("image_url"), dict) else None
            require(
                url and isinstance(url.get("url"), str),
                f"messages[{i}].content[{j}].image_url: expected {{url}}",
            )


def check_openai_assistant(i: int, message: Json) -> list[str]:
    calls = message.get("tool_calls")
    content = message.get("content")
    if content is not None:
        check_openai_content(i, "assistant", content)
    if calls is None:
        require(content is not None, f"messages[{i}].content: required unless tool_calls is specified")
        return []
    require(isinstance(calls, list) and calls, f"messages[{i}].tool_calls: expected a non-empty array")
    for j, call in enumerate(calls):
        check_openai_call(f"messages[{i}].tool_calls[{j}]", call)
    return [call["id"] for call in calls]


def check_openai_call(where: str, call: Any) -> None:
    require(isinstance(call, dict) and call.get("type") == "function", f"{where}.type: expected 'function'")
    call_id = call.get("id")
    require(isinstance(call_id, str) and call_id, f"{where}.id: required string")
    require(
        len(call_id) <= OPENAI_TOOL_ID_MAX,
        f"{where}.id: string too long. Expected a string with maximum length {OPENAI_TOOL_ID_MAX},"
        f" but got a string with length {len(call_id)} instead.",
    )
    function = call.get("function")
    require(
        isinstance(function, dict) and isinstance(function.get("name"), str),
        f"{where}.function.name: required",
    )
    require(isinstance(function.get("arguments"), str), f"{where}.function.arguments: expected a string")


def openai_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [])


class FakeOpenAI(FakeProvider):
    """POST /v1/chat/completions, POST /v1/responses, GET /v1/models (the SDK's base_url is
    ``base_url + "/v1"``). Both generation endpoints share the behaviour and failure models; the
    request's path picks the wire format of the answer."""

    name = "openai"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(CHAT_PATH, self.chat),
            web.post(RESPONSES_PATH, self.responses),
            web.get("/v1/models", self.models),
        ]

    def key_of(self, request: web.Request) -> str | None:
        given = request.headers.get("Authorization", "")
        return given.removeprefix("Bearer ") if given.startswith("Bearer ") else None

    def check_auth(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization")
        if self.accepts(self.key_of(request)):
            return None
        message = "incorrect API key provided" if given else "no API key provided (Authorization: Bearer)"
        return self.error(401, f"fake openai: {message}")

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        kind, code = OPENAI_ERRORS.get(status, ("server_error", None))
        envelope = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return json_response(envelope, headers, status)

    def response_headers(self) -> dict[str, str]:
        # As api.openai.com's Cloudflare front sends it on every answer.
        return {"x-request-id": "req_fake_openai", "set-cookie": BOT_COOKIE}

    async def models(self, request: web.Request) -> web.Response:
        ids = ["gpt-fake-1", "gpt-fake-1-mini"]
        data = [{"id": i, "object": "model", "created": CREATED, "owned_by": "fake"} for i in ids]
        return json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        check_openai_chat(body)
        return await self.respond(request, body["model"], self.answer(body), body.get("stream") is True)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        check_openai_responses(body)
        if is_agent_model(body["model"]):
            answer = self.reply(body["model"], *agent_reading(body))
        else:
            names = [
                tool.get("name", "") for tool in body.get("tools") or [] if tool.get("type") == "function"
            ]
            answer = self.reply(body["model"], responses_results(body), responses_tools_on(body), names)
        return await self.respond(request, body["model"], answer, body.get("stream") is True)

    def answer(self, body: Json) -> Answer:
        messages = body["messages"]
        last_assistant = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
        results = [
            openai_text(m.get("content")) for m in messages[last_assistant + 1 :] if m["role"] == "tool"
        ]
        tools_on = bool(body.get("tools")) and body.get("tool_choice") != "none"
        names = [tool["function"]["name"] for tool in body.get("tools") or []]
        return self.reply(body["model"], results, tools_on, names, chat_schema(body))

    def message(self, model: str, answer: Answer, request: web.Request) -> Json:
        if request.path == RESPONSES_PATH:
            return response_object(model, answer, request[BODY], done=True)
        return self.completion(model, answer)

    def stream(self, model: str, answer: Answer, request: web.Request) -> Stream:
        if request.path == RESPONSES_PATH:
            return responses_stream(model, answer, request[BODY])
        return self.chunks(model, answer, request[BODY])

    def completion(self, model: str, answer: Answer) -> Json:
        message: Json = {
            "role": "assistant",
            "content": answer.text or None,
            "refusal": None,
            "annotations": [],
        }
        if answer.tool_call:
            function = {"name": answer.name, "arguments": answer.arguments}
            message["tool_calls"] = [{"id": OPENAI_TOOL_ID, "type": "function", "function": function}]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish(answer)}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [choice],
            "usage": OPENAI_USAGE,
            "system_fingerprint": None,
        }

    @staticmethod
    def finish(answer: Answer) -> str:
        return "tool_calls" if answer.tool_call else "stop"

    def chunks(self, model: str, answer: Answer, body: Json) -> Stream:
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED, "model": model}
        extra = {"usage": None} if with_usage else {}

        def chunk(delta: Json, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice], **extra})

        frames = [chunk(delta) for delta in self.deltas(answer)] + [chunk({}, self.finish(answer))]
        if with_usage:
            frames.append(sse({**base, "choices": [], "usage": OPENAI_USAGE}))
        frames.append(sse("[DONE]"))
        failure = {
            "message": f"fake openai: {STREAM_FAILED}",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        return Stream(frames, sse({"error": failure}), head=2)

    @staticmethod
    def deltas(answer: Answer) -> list[Json]:
        if not answer.tool_call:
            return [{"role": "assistant", "content": ""}] + [{"content": p} for p in text_pieces(answer.text)]
        start = {
            "index": 0,
            "id": OPENAI_TOOL_ID,
            "type": "function",
            "function": {"name": answer.name, "arguments": ""},
        }
        fragments = [
            {"tool_calls": [{"index": 0, "function": {"arguments": f}}]}
            for f in arg_fragments(answer, OPENAI_ARG_FRAGMENTS)
        ]
        return [{"role": "assistant", "content": None, "tool_calls": [start]}, *fragments]

    # --- scripted answers (common.Script): text, then any number of calls --------------------------
    def script_message(self, model: str, script: Script, request: web.Request) -> Json:
        if request.path == RESPONSES_PATH:
            return scripted_response(model, script, request[BODY], done=True)
        message: Json = {"role": "assistant", "content": script.text or None}
        message |= {"refusal": None, "annotations": []}
        if script.calls:
            message["tool_calls"] = [
                {"id": scripted_call_id(i), "type": "function", "function": {"name": name, "arguments": args}}
                for i, (name, args) in enumerate(script.calls)
            ]
        finish = "tool_calls" if script.calls else "stop"
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return {**self.completion(model, Answer()), "choices": [choice]}

    def script_stream(self, model: str, script: Script, request: web.Request) -> Stream:
        body = request[BODY]
        if request.path == RESPONSES_PATH:
            return scripted_responses_stream(model, script, body)
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED, "model": model}
        extra = {"usage": None} if with_usage else {}

        def chunk(delta: Json, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice], **extra})

        text = [{"role": "assistant", "content": ""}] + [{"content": p} for p in script_pieces(script.text)]
        frames = [chunk(delta) for delta in (text if script.text else [])]
        pause_at = len(frames)
        for i, (name, arguments) in enumerate(script.calls):
            start: Json = {"index": i, "id": scripted_call_id(i), "type": "function"}
            opening: Json = {"tool_calls": [{**start, "function": {"name": name, "arguments": ""}}]}
            if not frames:
                opening = {"role": "assistant", "content": None, **opening}
            frames.append(chunk(opening))
            frames += [
                chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                for piece in script_pieces(arguments)
            ]
        frames.append(chunk({}, "tool_calls" if script.calls else "stop"))
        if with_usage:
            frames.append(sse({**base, "choices": [], "usage": OPENAI_USAGE}))
        frames.append(sse("[DONE]"))
        return Stream(frames, b"", head=0, pause_at=pause_at, pause=script.pause)


# ================================================================================================
# Responses API (docs/wire.md §2), served by FakeOpenAI
# ================================================================================================
RESPONSES_USAGE = {
    "input_tokens": 11,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 18,
}
RESPONSE_ID = "resp_fake_openai"
RESPONSES_ITEM_IDS = {False: "msg_fake_openai", True: "fc_fake_openai"}  # by Answer.tool_call
RESPONSES_FIELDS = words(
    "model input instructions max_output_tokens max_tool_calls temperature top_p top_logprobs tools"
    " tool_choice parallel_tool_calls text reasoning include store stream stream_options metadata user"
    " safety_identifier prompt_cache_key prompt_cache_retention prompt_cache_options service_tier"
    " truncation background background_options previous_response_id conversation prompt"
    " context_management moderation image access_programs"
    " client_metadata"  # Codex sends client_metadata; api.openai.com takes it
)
RESPONSES_MIN_OUTPUT_TOKENS = 16
RESPONSES_INPUT_PARTS = frozenset({"input_text", "input_image", "input_file"})
RESPONSES_PARTS = {  # role -> content part types its message may carry
    "user": RESPONSES_INPUT_PARTS,
    "system": RESPONSES_INPUT_PARTS,
    "developer": RESPONSES_INPUT_PARTS,
    "assistant": frozenset({"output_text", "refusal"}),
}
RESPONSES_CHOICES = frozenset({"none", "auto", "required"})
# Hosted and custom tools, and their items, which the real API knows: the fake takes them unchecked
# and never acts on them, so that a same-protocol route can be seen carrying them
# (docs/snags.md #22).
RESPONSES_HOSTED_TOOLS = words(
    "file_search computer computer_use_preview web_search web_search_2025_08_26 web_search_preview"
    " web_search_preview_2025_03_11 mcp code_interpreter programmatic_tool_calling image_generation"
    " local_shell shell custom namespace tool_search apply_patch"
)
RESPONSES_HOSTED_ITEMS = words(
    "file_search_call computer_call computer_call_output web_search_call tool_search_call"
    " tool_search_output additional_tools configuration_update compaction image_generation_call"
    " code_interpreter_call local_shell_call local_shell_call_output shell_call shell_call_output"
    " apply_patch_call apply_patch_call_output mcp_list_tools mcp_approval_request mcp_approval_response"
    " mcp_call custom_tool_call custom_tool_call_output compaction_trigger program program_output"
)
RESPONSES_FORMATS = frozenset({"text", "json_object", "json_schema"})
# Server-side state this stateless fake has not got: key -> why it refuses a non-null value.
RESPONSES_STATEFUL = {
    "previous_response_id": "Previous response with id {!r} not found: this fake is stateless",
    "conversation": "Conversation {!r} not found: this fake is stateless",
}


def check_openai_responses(body: Json) -> None:
    unknown = sorted(set(body) - RESPONSES_FIELDS)
    require(not unknown, f"Unknown parameter: {', '.join(unknown)}")
    require(isinstance(body.get("model"), str) and body["model"], "model: a non-empty string is required")
    require("stream" not in body or isinstance(body["stream"], bool), "stream: must be a boolean")
    for key, refusal in RESPONSES_STATEFUL.items():
        require(body.get(key) is None, f"{key}: {refusal.format(body.get(key))}")
    require(body.get("store") is not True, "store: true is not supported: this fake is stateless")
    limit = body.get("max_output_tokens")
    require(
        limit is None or (is_int(limit) and limit >= RESPONSES_MIN_OUTPUT_TOKENS),
        f"Invalid 'max_output_tokens': expected an integer >= {RESPONSES_MIN_OUTPUT_TOKENS}, got {limit!r}",
    )
    names = check_responses_tools(body.get("tools"))
    check_responses_tool_choice(body.get("tool_choice"), names)
    check_responses_text(body.get("text"))
    given = body.get("input")
    if not isinstance(given, str):
        check_responses_input(expect_list(given, "input: expected a string or a non-empty array of items"))


def check_responses_tools(tools: Any) -> set[str]:
    """Function tools are flat: name and parameters beside ``type``, no ``function`` wrapper."""
    if tools is None:
        return set()
    require(isinstance(tools, list), "tools: expected an array")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        known = kind == "function" or kind in RESPONSES_HOSTED_TOOLS
        require(known, f"tools[{i}].type: invalid value {kind!r}")
        if kind != "function":
            continue
        require("function" not in tool, f"Unknown parameter: 'tools[{i}].function' (function tools are flat)")
        name = tool.get("name")
        require(isinstance(name, str) and OPENAI_TOOL_NAME.match(name), f"tools[{i}].name: invalid {name!r}")
        params = tool.get("parameters")
        require(
            params is None or (isinstance(params, dict) and params.get("type") == "object"),
            f"Invalid schema for function '{name}': schema must be a JSON Schema of 'type: \"object\"'",
        )
        names.add(name)
    return names


def check_responses_tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None or isinstance(choice, str):
        require(choice is None or choice in RESPONSES_CHOICES, f"tool_choice: invalid value {choice!r}")
        return
    require(isinstance(choice, dict), "tool_choice: expected a string or an object")
    kind = choice.get("type")
    if kind == "function":
        name = choice.get("name")
        require(name in names, f"tool_choice: function {name!r} is not among the tools")
    else:
        known = kind == "allowed_tools" or kind in RESPONSES_HOSTED_TOOLS
        require(known, f"tool_choice.type: invalid {kind!r}")


def check_responses_text(text: Any) -> None:
    """``text.format`` is flat: a json_schema format has name and schema, no ``json_schema`` wrapper."""
    if text is None:
        return
    fmt = expect_dict(text, "text: expected an object").get("format")
    if fmt is None:
        return
    require(
        isinstance(fmt, dict) and fmt.get("type") in RESPONSES_FORMATS,
        f"text.format.type: expected one of {sorted(RESPONSES_FORMATS)}",
    )
    if fmt["type"] == "json_schema":
        require("json_schema" not in fmt, "Unknown parameter: 'text.format.json_schema'")
        require(isinstance(fmt.get("name"), str), "Missing required parameter: 'text.format.name'")
        require(isinstance(fmt.get("schema"), dict), "Missing required parameter: 'text.format.schema'")


def check_responses_input(items: list[Any]) -> None:
    """Each item by type; every function_call_output answers an earlier call, and every call is answered."""
    called: list[str] = []
    answered: set[str] = set()
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type", "message") if isinstance(item, dict) else None
        check = CHECK_RESPONSES_ITEM.get(str(kind))
        if check is None:
            raise Invalid(f"{where}.type: invalid value {kind!r}")
        check(where, item)
        if kind == "function_call":
            called.append(item["call_id"])
        elif kind == "function_call_output":
            require(
                item["call_id"] in called,
                f"{where}: No tool call found for function call output with call_id {item['call_id']}.",
            )
            answered.add(item["call_id"])
    missing = [call_id for call_id in called if call_id not in answered]
    require(not missing, f"No tool output found for function call {', '.join(missing)}.")


def check_responses_message(where: str, item: Json) -> None:
    role = item.get("role")
    require(role in RESPONSES_PARTS, f"{where}.role: invalid role {role!r}")
    content = item.get("content")
    if isinstance(content, str):
        return
    require(isinstance(content, list) and content, f"{where}.content: expected a string or a non-empty array")
    for j, part in enumerate(content):
        check_responses_part(f"{where}.content[{j}]", part, RESPONSES_PARTS[role])


def check_responses_part(where: str, part: Any, allowed: frozenset[str]) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    require(kind in allowed, f"{where}.type: invalid value {kind!r}, supported: {', '.join(sorted(allowed))}")
    if kind in ("input_text", "output_text"):
        require(isinstance(part.get("text"), str), f"{where}.text: expected a string")
    if kind == "input_image":
        url = part.get("image_url")
        require(
            url is None or isinstance(url, str),
            f"Invalid type for '{where}.image_url': expected a string, but got {type(url).__name__}",
        )
        require(url is not None or part.get("file_id"), f"{where}: image_url or file_id is required")


def check_responses_call(where: str, item: Json) -> None:
    for key in ("call_id", "name"):
        require(isinstance(item.get(key), str) and item[key], f"Missing required parameter: '{where}.{key}'")
    require(isinstance(item.get("arguments"), str), f"{where}.arguments: expected a JSON string")


def check_responses_call_output(where: str, item: Json) -> None:
    require(
        isinstance(item.get("call_id"), str) and item["call_id"],
        f"Missing required parameter: '{where}.call_id'",
    )
    output = item.get("output")
    if isinstance(output, str):
        return
    require(isinstance(output, list), f"{where}.output: expected a string or an array")
    for j, part in enumerate(output):
        check_responses_part(f"{where}.output[{j}]", part, RESPONSES_INPUT_PARTS)


def check_responses_reasoning(where: str, item: Json) -> None:
    require(isinstance(item.get("summary"), list), f"Missing required parameter: '{where}.summary'")


def check_responses_reference(where: str, item: Json) -> None:
    raise Invalid(f"{where}: Item with id {item.get('id')!r} not found: this fake is stateless")


def carry_hosted_item(where: str, item: Json) -> None:
    """A hosted or custom tool's item: carried, never checked nor answered."""


CHECK_RESPONSES_ITEM: dict[str, Callable[[str, Json], None]] = {
    "message": check_responses_message,
    "function_call": check_responses_call,
    "function_call_output": check_responses_call_output,
    "reasoning": check_responses_reasoning,
    "item_reference": check_responses_reference,
    **dict.fromkeys(RESPONSES_HOSTED_ITEMS, carry_hosted_item),
}


def responses_results(body: Json, kinds: frozenset[str] = frozenset({"function_call_output"})) -> list[str]:
    """The outputs of the items of `kinds` (function_call_output) after the model's last turn."""
    items = body["input"] if isinstance(body["input"], list) else []
    model_turn = max((i for i, item in enumerate(items) if is_model_item(item)), default=-1)
    return [
        responses_output_text(item["output"]) for item in items[model_turn + 1 :] if item.get("type") in kinds
    ]


def is_model_item(item: Json) -> bool:
    """An item of the model's turn: its own calls (hosted ones too), reasoning, or text."""
    kind = item.get("type", "message")
    return kind in ("function_call", "reasoning") or kind.endswith("_call") or item.get("role") == "assistant"


def responses_output_text(output: str | list[Json]) -> str:
    return output if isinstance(output, str) else "".join(p.get("text", "") for p in output)


def responses_tools_on(body: Json) -> bool:
    """Only function tools make the fake call get_weather."""
    functions = any(tool.get("type") == "function" for tool in body.get("tools") or [])
    return functions and body.get("tool_choice") != "none"


def output_text(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response_item(answer: Answer, done: bool) -> Json:
    """The one output item; while in progress a message has no content and a call no arguments."""
    if answer.custom:
        return custom_call_item(answer, done)
    status = "completed" if done else "in_progress"
    item_id = RESPONSES_ITEM_IDS[answer.tool_call]
    if answer.tool_call:
        arguments = answer.arguments if done else ""
        fields = {"call_id": OPENAI_TOOL_ID, "name": answer.name, "arguments": arguments, "status": status}
        return {"type": "function_call", "id": item_id, **fields}
    content = [output_text(answer.text)] if done else []
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}


def response_object(model: str, answer: Answer, body: Json, done: bool) -> Json:
    """A Response, echoing the request's settings; in progress it has no output and no usage yet."""
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED,
        "status": "completed" if done else "in_progress",
        "model": model,
        "output": [response_item(answer, done)] if done else [],
        "usage": RESPONSES_USAGE if done else None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "store": False,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
    }


def response_content_events(answer: Answer) -> list[Json]:
    """Between output_item.added and .done: text parts and deltas, or argument fragments."""
    where: Json = {"item_id": RESPONSES_ITEM_IDS[answer.tool_call], "output_index": 0}
    if answer.custom:
        return custom_call_events(answer)
    if answer.tool_call:
        deltas = [
            {"type": "response.function_call_arguments.delta", **where, "delta": fragment}
            for fragment in arg_fragments(answer, OPENAI_ARG_FRAGMENTS)
        ]
        done = {"type": "response.function_call_arguments.done", **where, "arguments": answer.arguments}
        return [*deltas, done]
    where["content_index"] = 0
    deltas = [
        {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
        for piece in text_pieces(answer.text)
    ]
    return [
        {"type": "response.content_part.added", **where, "part": output_text("")},
        *deltas,
        {"type": "response.output_text.done", **where, "text": answer.text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": output_text(answer.text)},
    ]


# -- how a coding agent's model reads a Responses request (common.is_agent_model) ------------------
AGENT_RESULT_ITEMS = frozenset({"function_call_output", "custom_tool_call_output"})
CUSTOM_CALL_ID = "ctc_fake_openai"


def chat_schema(body: Json) -> Json | None:
    """The JSON schema a Chat request wants the answer in (response_format.json_schema.schema)."""
    fmt = body.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None


def responses_schema(body: Json) -> Json | None:
    """The JSON schema a Responses request wants the answer in (text.format.schema)."""
    fmt = (body.get("text") or {}).get("format") or {}
    return fmt.get("schema") if fmt.get("type") == "json_schema" else None


def agent_reading(body: Json) -> tuple[list[str], bool, list[str], Json | None]:
    """What an agent's model acts on, unlike the other models (which carry custom items and never
    act on them): the results of its function and freeform calls, and every function and freeform
    tool, also those an ``additional_tools`` item declares (Codex's code mode), a namespaced one
    as ``namespace.name``. Returns the arguments of ``FakeProvider.reply`` after the model."""
    names = declared_names(body.get("tools") or [])
    for item in body["input"] if isinstance(body["input"], list) else []:
        if item.get("type") == "additional_tools":
            names += declared_names(item.get("tools") or [])
    results = responses_results(body, AGENT_RESULT_ITEMS)
    return results, body.get("tool_choice") != "none", names, responses_schema(body)


def declared_names(tools: list[Json], namespace: str = "") -> list[str]:
    """The names of function and custom tools, a namespace's own tools as ``namespace.name``."""
    names: list[str] = []
    for tool in tools:
        if tool.get("type") == "namespace":
            names += declared_names(tool.get("tools") or [], f"{tool.get('name')}.")
        elif tool.get("type") in ("function", "custom"):
            names.append(namespace + str(tool.get("name")))
    return names


def custom_call_item(answer: Answer, done: bool) -> Json:
    """A freeform tool's call (`namespace.name`: the name and its namespace); no input in progress."""
    namespace, _, name = answer.name.rpartition(".")
    fields = {"call_id": OPENAI_TOOL_ID, "name": name, **({"namespace": namespace} if namespace else {})}
    status = "completed" if done else "in_progress"
    return {
        "type": "custom_tool_call",
        "id": CUSTOM_CALL_ID,
        **fields,
        "input": answer.arguments if done else "",
        "status": status,
    }


def custom_call_events(answer: Answer) -> list[Json]:
    where: Json = {"item_id": CUSTOM_CALL_ID, "output_index": 0}
    deltas = [
        {"type": "response.custom_tool_call_input.delta", **where, "delta": piece}
        for piece in text_pieces(answer.arguments)
    ]
    return [*deltas, {"type": "response.custom_tool_call_input.done", **where, "input": answer.arguments}]


def responses_stream(model: str, answer: Answer, body: Json) -> Stream:
    """The typed event sequence of docs/wire.md §2.4; `event:` equals `type`, sequence numbers
    count from 0."""
    started = response_object(model, answer, body, done=False)
    events = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": response_item(answer, done=False)},
        *response_content_events(answer),
        {"type": "response.output_item.done", "output_index": 0, "item": response_item(answer, done=True)},
        {"type": "response.completed", "response": response_object(model, answer, body, done=True)},
    ]
    frames = [sse({"type": e["type"], "sequence_number": n, **e}, e["type"]) for n, e in enumerate(events)]
    head = 5  # created, in_progress, output_item.added, content_part.added, the first text delta
    return Stream(frames, responses_error(head), head, first_error=responses_error(0))


def responses_error(sequence_number: int) -> bytes:
    failure = {
        "type": "error",
        "sequence_number": sequence_number,
        "code": "server_error",
        "message": f"fake openai: {STREAM_FAILED}",
        "param": None,
    }
    return sse(failure, "error")


# -- scripted answers (common.Script) on the Responses API -------------------------------------------


def scripted_call_id(i: int) -> str:
    """The id of a scripted answer's i-th call (Chat ``id``, Responses ``call_id``)."""
    return f"{OPENAI_TOOL_ID}_{i}"


def scripted_items(script: Script, done: bool) -> list[Json]:
    """The output items of a scripted answer: its message (when it has text), then one function_call
    per call; in progress, a message has no content and a call no arguments."""
    status = "completed" if done else "in_progress"
    items: list[Json] = []
    if script.text:
        content = [output_text(script.text)] if done else []
        message = {"type": "message", "id": SCRIPTED_ITEM_ID, "role": "assistant", "status": status}
        items.append({**message, "content": content})
    for i, (name, arguments) in enumerate(script.calls):
        fields = {"call_id": scripted_call_id(i), "name": name, "arguments": arguments if done else ""}
        items.append({"type": "function_call", "id": f"fc_fake_openai_{i}", **fields, "status": status})
    return items


def scripted_response(model: str, script: Script, body: Json, done: bool) -> Json:
    output = scripted_items(script, True) if done else []
    return {**response_object(model, Answer(), body, done), "output": output}


def scripted_responses_stream(model: str, script: Script, body: Json) -> Stream:
    """The typed events of a scripted answer: the message's text, then each call's arguments."""
    started = scripted_response(model, script, body, done=False)
    events: list[Json] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    items = zip(scripted_items(script, False), scripted_items(script, True))
    for index, (added, finished) in enumerate(items):
        where: Json = {"item_id": added["id"], "output_index": index}
        events.append({"type": "response.output_item.added", "output_index": index, "item": added})
        if added["type"] == "message":
            where["content_index"] = 0
            events += [
                {"type": "response.content_part.added", **where, "part": output_text("")},
                *(
                    {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
                    for piece in script_pieces(script.text)
                ),
                {"type": "response.output_text.done", **where, "text": script.text, "logprobs": []},
                {"type": "response.content_part.done", **where, "part": output_text(script.text)},
            ]
        else:
            arguments = finished["arguments"]
            events += [
                *(
                    {"type": "response.function_call_arguments.delta", **where, "delta": piece}
                    for piece in script_pieces(arguments)
                ),
                {"type": "response.function_call_arguments.done", **where, "arguments": arguments},
            ]
        events.append({"type": "response.output_item.done", "output_index": index, "item": finished})
    pause_at = next((n + 1 for n, e in enumerate(events) if e["type"] == "response.output_item.done"), 0)
    completed = scripted_response(model, script, body, done=True)
    events.append({"type": "response.completed", "response": completed})
    frames = [sse({"type": e["type"], "sequence_number": n, **e}, e["type"]) for n, e in enumerate(events)]
    return Stream(frames, b"", head=0, pause_at=pause_at if script.text else 0, pause=script.pause)


# ================================================================================================
# An OpenAI-compatible server whose models think (docs/wire.md §1.7), served by FakeReasoner
# ================================================================================================
REASONING_TEXT = "Thinking about Paris."
REASONING_PIECE = 3  # characters per streamed delta: every tag arrives cut
# model -> the message member its reasoning travels in (DeepSeek/Kimi/GLM, OpenRouter/vLLM/Ollama)
REASONING_FIELDS = {"reasoning-content": "reasoning_content", "reasoning-field": "reasoning"}
THINK_MODEL = "think-tags"  # reasoning written into the content: <think>…</think> then the answer
# The model that behaves as DeepSeek's thinking mode about earlier reasoning.
PASS_BACK_MODEL = "reasoning-content"
PASS_BACK_REFUSED = "The `reasoning_content` in the thinking mode must be passed back to the API."
STRICT_MODEL = "strict-schema"  # refuses reasoning members on assistant messages, as Groq does


def think_content(text: str) -> str:
    return f"<think>{REASONING_TEXT}</think>\n\n{text}"


def reasoning_pieces(text: str) -> list[str]:
    return [text[i : i + REASONING_PIECE] for i in range(0, len(text), REASONING_PIECE)]


def check_no_reasoning_members(messages: list[Any]) -> None:
    """Groq's strict schema: an assistant message has no member for earlier reasoning."""
    for i, message in enumerate(messages):
        for member in REASONING_FIELDS.values():
            require(
                message.get("role") != "assistant" or member not in message,
                f"'messages.{i}' : for 'role:assistant' the following must be satisfied"
                f"[('messages.{i}' : property '{member}' is unsupported)]",
            )


def check_reasoning_passed_back(messages: list[Any]) -> None:
    """DeepSeek's thinking mode: where the model called tools between two user messages, every
    assistant message between them must bring its ``reasoning_content`` back (a string, empty
    allowed); elsewhere the member is optional and ignored."""
    span: list[int] = []
    for i, message in enumerate([*messages, {"role": "user"}]):
        if message.get("role") == "user":
            if any(messages[j].get("tool_calls") for j in span):
                for j in span:
                    require(
                        isinstance(messages[j].get("reasoning_content"), str),
                        f"messages[{j}]: {PASS_BACK_REFUSED}",
                    )
            span = []
        elif message.get("role") == "assistant":
            span.append(i)


def reasoning_chunk(model: str, body: Json, delta: Json) -> bytes:
    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED, "model": model}
    return sse({**chunk, "choices": [choice], **({"usage": None} if with_usage else {})})


def reasoning_frames(model: str, body: Json) -> list[bytes]:
    """The frames a thinking model sends before its answer, by model name (none for others)."""
    if model == THINK_MODEL:
        head = think_content("")
        return [reasoning_chunk(model, body, {"content": piece}) for piece in reasoning_pieces(head)]
    field = REASONING_FIELDS.get(model)
    if field is None:
        return []
    opening = reasoning_chunk(model, body, {"role": "assistant", "content": None, field: ""})
    pieces = reasoning_pieces(REASONING_TEXT)
    return [opening, *(reasoning_chunk(model, body, {"content": None, field: p}) for p in pieces)]


class FakeReasoner(FakeOpenAI):
    """Chat Completions as a thinking OpenAI-compatible server answers it; the model name picks
    how the reasoning (``REASONING_TEXT``) comes, whole and streamed, before the usual answer:

    - ``reasoning-content`` / ``reasoning-field``: in ``reasoning_content`` / ``reasoning``;
      ``reasoning-content`` also refuses, as DeepSeek does, a history whose tool-calling turn
      lacks its reasoning (``check_reasoning_passed_back``);
    - ``strict-schema``: no reasoning, and refuses reasoning members in history, as Groq does;
    - ``think-tags``: at the start of the content, inside ``<think>…</think>``, streamed in
      pieces of ``REASONING_PIECE`` characters so that both tags are cut.

    Any other model answers as FakeOpenAI does. ``keyless``: a local server (Ollama, vLLM, …),
    which takes requests that carry no key at all (a wrong key is still refused).
    """

    name = "reasoner"
    keyless = False

    def check_auth(self, request: web.Request) -> web.Response | None:
        if self.keyless and "Authorization" not in request.headers:
            return None
        return super().check_auth(request)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        check_openai_chat(body)
        if body["model"] == PASS_BACK_MODEL:
            check_reasoning_passed_back(body["messages"])
        if body["model"] == STRICT_MODEL:
            check_no_reasoning_members(body["messages"])
        return await self.respond(request, body["model"], self.answer(body), body.get("stream") is True)

    def completion(self, model: str, answer: Answer) -> Json:
        completion = super().completion(model, answer)
        message = completion["choices"][0]["message"]
        if model == THINK_MODEL:
            message["content"] = think_content(message["content"] or "")
        elif field := REASONING_FIELDS.get(model):
            message[field] = REASONING_TEXT
        return completion

    def chunks(self, model: str, answer: Answer, body: Json) -> Stream:
        stream = super().chunks(model, answer, body)
        head = reasoning_frames(model, body)
        return Stream(head + stream.frames, stream.error, head=len(head) + stream.head)
