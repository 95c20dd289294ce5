"""FakeOpenAIExtra: FakeOpenAI plus the Responses endpoints beside generation (docs/wire.md §2.7).

``POST /v1/responses/compact`` answers OpenAI's compaction object (the user messages, then one
compaction item whose ``encrypted_content`` only this fake can read), ``POST
/v1/responses/input_tokens`` a count, ``GET /v1/responses/{id}`` the one response it stores
(``STORED_ID``) and 404 for any other, ``POST /v1/responses/{id}/cancel`` OpenAI's 400 for a
response that did not run in the background. Requests are checked as OpenAI checks them: a model
is required, input must be a string or a list of items, unknown keys are refused.
"""

from __future__ import annotations

from aiohttp import web

from .common import BODY, CREATED, Json, json_response, require, words
from .openai import FakeOpenAI

STORED_ID = "resp_fake_stored_01"
FAKE_SEAL = "gAAAAB-fake-openai-compaction"  # what OpenAI's opaque compaction content looks like
COMPACT_FIELDS = words(
    "model input instructions tools parallel_tool_calls reasoning service_tier prompt_cache_key text"
    " previous_response_id prompt_cache_retention image"
)
COUNT_FIELDS = words(
    "model input instructions tools tool_choice parallel_tool_calls reasoning text truncation conversation"
    " previous_response_id"
)


def check_extra(body: Json, fields: frozenset[str], model_required: bool) -> None:
    unknown = sorted(set(body) - fields)
    require(not unknown, f"Unrecognized request argument supplied: {', '.join(unknown)}")
    require(not model_required or isinstance(body.get("model"), str), "model: a string is required")
    items = body.get("input")
    require(items is None or isinstance(items, (str, list)), "input: expected a string or an array")


def user_messages(items: object) -> list[Json]:
    """The request's user messages as output items (an easy-form message gains its type and parts)."""
    listed = [{"role": "user", "content": items}] if isinstance(items, str) else items
    kept = []
    for item in listed if isinstance(listed, list) else []:
        if isinstance(item, dict) and item.get("type", "message") == "message" and item.get("role") == "user":
            content = item["content"]
            if isinstance(content, str):
                content = [{"type": "input_text", "text": content}]
            kept.append({"type": "message", "role": "user", "content": content})
    return kept


def stored_response() -> Json:
    text = {"type": "output_text", "text": "Stored at the fake.", "annotations": []}
    message = {
        "type": "message",
        "id": "msg_fake_stored",
        "role": "assistant",
        "status": "completed",
        "content": [text],
    }
    return {
        "id": STORED_ID,
        "object": "response",
        "created_at": CREATED,
        "model": "gpt-fake-1",
        "status": "completed",
        "output": [message],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


class FakeOpenAIExtra(FakeOpenAI):
    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/responses/compact", self.compact),
            web.post("/v1/responses/input_tokens", self.input_tokens),
            web.get("/v1/responses/{id}", self.stored),
            web.post("/v1/responses/{id}/cancel", self.cancel),
            *super().routes(),
        ]

    async def compact(self, request: web.Request) -> web.Response:
        body = request[BODY]
        check_extra(body, COMPACT_FIELDS, model_required=True)
        seal = {"type": "compaction", "id": "cmp_fake_01", "encrypted_content": FAKE_SEAL}
        kept = [{**item, "id": f"msg_fake_{i}"} for i, item in enumerate(user_messages(body.get("input")))]
        usage = {"input_tokens": 40, "output_tokens": 9, "total_tokens": 49}
        return json_response(
            {
                "id": "resp_fake_compact",
                "object": "response.compaction",
                "created_at": CREATED,
                "output": [*kept, seal],
                "usage": usage,
            }
        )

    async def input_tokens(self, request: web.Request) -> web.Response:
        check_extra(request[BODY], COUNT_FIELDS, model_required=False)
        return json_response({"object": "response.input_tokens", "input_tokens": 42})

    async def stored(self, request: web.Request) -> web.Response:
        if request.match_info["id"] != STORED_ID:
            return unknown_response(request.match_info["id"])
        return json_response(stored_response())

    async def cancel(self, request: web.Request) -> web.Response:
        if request.match_info["id"] != STORED_ID:
            return unknown_response(request.match_info["id"])
        return self.error(400, "Only responses created with background=true can be cancelled.")


def unknown_response(response_id: str) -> web.Response:
    """OpenAI's 404 for an id it never stored: about the response, not a model (no code)."""
    message = f"Response with id '{response_id}' not found."
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return json_response({"error": error}, None, 404)
