"""Codex's Responses tool shapes on translated routes, and provider-safe tool names.

Custom (freeform) tools, namespaced tools and the ``additional_tools`` item become plain functions
with names every provider accepts; hosted tools are removed with a warning; answers (whole and
streamed, split at every byte) give the client back exactly the names and shapes it declared.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from support.builders import streamed_calls

from translators import anthropic, gemini, openai_chat, openai_responses
from translators.canonical import (
    ChatResponse,
    End,
    MessageStart,
    Stop,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
)
from translators.toolnames import SAFE, flat

GRAMMAR = {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /.+/s'}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files.", "format": GRAMMAR}
FREEFORM = {"type": "custom", "name": "js", "description": "Run JavaScript."}
SHELL = {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}}
NAMESPACE = {
    "type": "namespace",
    "name": "mcp__docs",
    "description": "Docs server",
    "tools": [{"type": "function", "name": "search", "description": "Search the docs."}, FREEFORM],
}
LONG = "mcp__" + "very_long_server_name_" * 4 + "tool"
EVENTS = TypeAdapter(ResponseStreamEvent)


def parse(**body: Any) -> Any:
    return openai_responses.parse_request({"model": "m", "input": "hi", **body})


def by_origin(request: Any) -> dict[tuple[str | None, str], Any]:
    return {(t.origin.namespace, t.origin.name) if t.origin else (None, t.name): t for t in request.tools}


# -- request: declarations -------------------------------------------------------------------------


def test_custom_tool_with_grammar_becomes_a_function_of_one_string_telling_the_grammar():
    [tool] = parse(tools=[APPLY_PATCH]).tools
    assert tool.name == "apply_patch" and tool.origin.kind == "custom"
    assert tool.parameters["required"] == ["input"]
    assert tool.parameters["properties"]["input"]["type"] == "string"
    assert "Edit files." in tool.description and GRAMMAR["definition"] in tool.description
    assert "lark" in tool.description


def test_custom_tool_without_grammar_keeps_its_description_only():
    [tool] = parse(tools=[FREEFORM]).tools
    assert tool.description == "Run JavaScript." and tool.origin.kind == "custom"


def test_namespaced_tools_are_flattened_with_their_namespace_remembered():
    tools = by_origin(parse(tools=[NAMESPACE]))
    search, js = tools[("mcp__docs", "search")], tools[("mcp__docs", "js")]
    assert (search.name, search.origin.kind) == ("mcp__docs__search", "function")
    assert (js.name, js.origin.kind) == ("mcp__docs__js", "custom")


def test_additional_tools_item_declares_tools_and_leaves_no_message():
    item = {"type": "additional_tools", "role": "developer", "tools": [SHELL, NAMESPACE]}
    request = parse(input=[item, {"role": "user", "content": "go"}])
    assert [t.name for t in request.tools] == ["shell", "mcp__docs__search", "mcp__docs__js"]
    assert [m.role for m in request.messages] == ["user"]


def test_a_tool_declared_again_in_additional_tools_is_sent_once():
    item = {"type": "additional_tools", "role": "developer", "tools": [SHELL]}
    request = parse(tools=[SHELL], input=[item, {"role": "user", "content": "go"}])
    assert [t.name for t in request.tools] == ["shell"]


@pytest.mark.parametrize(
    "kind", sorted(set(openai_responses.HOSTED_TOOLS) - openai_responses.WEB_SEARCH_TOOLS)
)
def test_hosted_tools_without_an_equivalent_are_removed_with_a_warning_not_refused(kind):
    request = parse(tools=[SHELL, {"type": kind}])
    assert [t.name for t in request.tools] == ["shell"]
    [warning] = request.warnings
    assert warning.startswith("tools[1]: removed the hosted tool") and kind in warning


CODEX_SEARCH = {  # Codex's hosted search, with the options OpenAI takes
    "type": "web_search",
    "filters": {"allowed_domains": ["docs.python.org"]},
    "user_location": {"type": "approximate", "country": "FR"},
    "search_context_size": "low",
}
# target -> the web search it is sent, beside a function tool (None: none is sent)
SEARCH_WITH_FUNCTIONS: dict[Any, Any] = {
    openai_responses: {
        "type": "web_search",
        "filters": {"allowed_domains": ["docs.python.org"]},
        "user_location": {"type": "approximate", "country": "FR"},
    },
    anthropic: {
        "type": "web_search_20250305",
        "name": "web_search",
        "allowed_domains": ["docs.python.org"],
        "user_location": {"type": "approximate", "country": "FR"},
    },
    gemini: None,  # Gemini 2.x refuses Google Search beside function declarations
    openai_chat: None,  # Chat Completions has no hosted search
}


@pytest.mark.parametrize("kind", sorted(openai_responses.WEB_SEARCH_TOOLS))
def test_hosted_web_search_is_kept_with_its_options_for_the_targets_own_and_said_so(kind):
    request = parse(tools=[SHELL, {**CODEX_SEARCH, "type": kind}])
    assert [t.name for t in request.tools] == ["shell"], "never declared as a function"
    [warning] = request.warnings
    assert warning.startswith(f"tools[1]: the hosted tool {kind!r} is sent as the target's own web search")


@pytest.mark.parametrize("target", list(SEARCH_WITH_FUNCTIONS), ids=lambda t: t.NAME)
def test_each_target_gets_its_own_web_search_or_none(target):
    rendered = target.render_request(parse(tools=[SHELL, CODEX_SEARCH]))
    tools = rendered.get("tools", [])
    hosted = [t for t in tools if "web_search" in json.dumps(t) or "googleSearch" in t]
    assert hosted == ([SEARCH_WITH_FUNCTIONS[target]] if SEARCH_WITH_FUNCTIONS[target] else [])


def test_web_search_alone_reaches_gemini_as_google_search():
    rendered = gemini.render_request(parse(tools=[CODEX_SEARCH]))
    assert rendered["tools"] == [{"googleSearch": {}}] and "toolConfig" not in rendered


@pytest.mark.parametrize(
    ("client", "body"),
    [
        (
            anthropic,
            {
                "model": "m",
                "max_tokens": 9,
                "messages": [],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
        ),
        (
            gemini,
            {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "tools": [{"googleSearch": {}}]},
        ),
    ],
    ids=["anthropic", "gemini"],
)
def test_claude_codes_and_gemini_clis_web_search_reaches_openai_responses_as_its_own(client, body):
    request = client.parse_request(body, model="m")
    assert openai_responses.render_request(request)["tools"] == [{"type": "web_search"}]


def test_unknown_tool_types_are_still_refused_by_name():
    with pytest.raises(Exception, match=r"tools\[0\]\.type: .*'local_shell'"):
        parse(tools=[{"type": "local_shell"}])


# -- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "namespace"),
    [
        (LONG, None),
        ("a.b:c", None),
        ("9lives", None),
        ("x" * 64, None),
        ("tool", "ns.with.dots"),
        ("é", None),
    ],
)
def test_flat_names_match_every_providers_pattern_and_are_deterministic(name, namespace):
    first = flat(name, namespace)
    assert SAFE.fullmatch(first) and first == flat(name, namespace)


def test_a_safe_name_is_left_alone():
    assert flat("get_weather") == "get_weather" and flat("x" * 64) == "x" * 64


def test_names_that_collide_after_flattening_get_distinct_names_and_map_back():
    request = parse(tools=[{"type": "function", "name": "mcp__docs__search"}, NAMESPACE])
    plain, namespaced = request.tools[0], request.tools[1]
    assert plain.name == "mcp__docs__search" and namespaced.name != plain.name
    assert SAFE.fullmatch(namespaced.name)
    call = ToolCall(id="c", name=namespaced.name, arguments="{}")
    [item] = openai_responses.render_response(answer(call), request)["output"]
    assert (item["name"], item["namespace"]) == ("search", "mcp__docs")


def test_long_names_are_shortened_and_remember_the_clients_name():
    [tool] = parse(tools=[{**SHELL, "name": LONG}]).tools
    assert len(tool.name) <= 64 and tool.origin.name == LONG and tool.origin.kind == "function"


# -- request: history -------------------------------------------------------------------------------


def test_custom_call_and_output_in_history_become_a_call_and_its_result():
    history = [
        {"role": "user", "content": "patch it"},
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done!"},
    ]
    request = parse(tools=[APPLY_PATCH], input=history)
    [call] = request.messages[1].content
    [result] = request.messages[2].content
    assert isinstance(call, ToolCall) and call.name == "apply_patch"
    assert json.loads(call.arguments) == {"input": "*** Begin Patch"}
    assert isinstance(result, ToolResult) and result.tool_call_id == "c1"


def test_namespaced_and_long_named_calls_in_history_use_the_flat_names():
    history = [
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "search",
            "namespace": "mcp__docs",
            "arguments": "{}",
        },
        {"type": "function_call", "call_id": "c2", "name": LONG, "arguments": "{}"},
    ]
    request = parse(tools=[NAMESPACE, {**SHELL, "name": LONG}], input=history)
    names = [part.name for part in request.messages[0].content]
    assert names == ["mcp__docs__search", by_origin(request)[(None, LONG)].name]


@pytest.mark.parametrize("target", [anthropic, gemini, openai_chat, openai_responses])
def test_every_target_gets_only_flat_function_declarations(target):
    request = parse(tools=[APPLY_PATCH, NAMESPACE, {**SHELL, "name": LONG}, {"type": "file_search"}])
    rendered = json.dumps(target.render_request(request))
    assert "file_search" not in rendered and '"custom"' not in rendered and LONG not in rendered
    assert "mcp__docs__search" in rendered and "apply_patch" in rendered


# -- answers: whole ---------------------------------------------------------------------------------


def answer(*calls: ToolCall) -> ChatResponse:
    return ChatResponse(id="r1", model="m", content=list(calls), stop_reason="tool_use")


def test_whole_answer_restores_custom_namespaced_and_long_names():
    request = parse(tools=[APPLY_PATCH, NAMESPACE, {**SHELL, "name": LONG}])
    long_flat = by_origin(request)[(None, LONG)].name
    calls = (
        ToolCall(id="c1", name="apply_patch", arguments='{"input": "*** Begin Patch\\n"}'),
        ToolCall(id="c2", name="mcp__docs__search", arguments='{"q": "x"}'),
        ToolCall(id="c3", name=long_flat, arguments="{}"),
        ToolCall(id="c4", name="mcp__docs__js", arguments='{"input": "1+1"}'),
    )
    body = openai_responses.render_response(answer(*calls), request)
    output = Response.model_validate(body).output
    assert (output[0].type, output[0].name, output[0].input) == (
        "custom_tool_call",
        "apply_patch",
        "*** Begin Patch\n",
    )
    assert (output[1].type, output[1].name, output[1].namespace) == ("function_call", "search", "mcp__docs")
    assert (output[2].name, output[2].namespace) == (LONG, None)
    assert (output[3].type, output[3].name, output[3].namespace) == ("custom_tool_call", "js", "mcp__docs")


def test_a_custom_call_whose_arguments_are_not_our_json_keeps_the_raw_text():
    request = parse(tools=[FREEFORM])
    body = openai_responses.render_response(answer(ToolCall(id="c", name="js", arguments="1+1")), request)
    assert body["output"][0]["input"] == "1+1"


# -- answers: streamed ------------------------------------------------------------------------------


def canonical_events() -> list[Any]:
    arguments = json.dumps({"input": "*** Begin Patch\n+é\n"})
    return [
        MessageStart(id="r1", model="m"),
        ToolCallStart(index=0, id="c1", name="apply_patch"),
        *[ToolCallDelta(index=0, arguments=arguments[i : i + 3]) for i in range(0, len(arguments), 3)],
        ToolCallEnd(index=0),
        ToolCallStart(index=1, id="c2", name="mcp__docs__search"),
        ToolCallDelta(index=1, arguments='{"q":'),
        ToolCallDelta(index=1, arguments='"x"}'),
        ToolCallEnd(index=1),
        Stop(reason="tool_use"),
        End(),
    ]


def streamed(request: Any, events: list[Any]) -> bytes:
    encoder = openai_responses.StreamEncoder(request)
    return b"".join(encoder.encode([event]) for event in events) + encoder.close()


def sse_events(raw: bytes) -> list[Any]:
    frames = [f for f in raw.decode().split("\n\n") if f]
    return [EVENTS.validate_json(f.split("data: ", 1)[1]) for f in frames]


def test_streamed_custom_call_comes_as_custom_tool_call_input_events():
    events = sse_events(streamed(parse(tools=[APPLY_PATCH, NAMESPACE]), canonical_events()))
    kinds = [e.type for e in events]
    assert (
        "response.custom_tool_call_input.delta" in kinds and "response.custom_tool_call_input.done" in kinds
    )
    assert "response.function_call_arguments.delta" in kinds  # the namespaced function streams as usual
    done = next(e for e in events if e.type == "response.custom_tool_call_input.done")
    assert done.input == "*** Begin Patch\n+é\n"
    patch, search = events[-1].response.output
    assert (patch.type, patch.name, patch.input) == (
        "custom_tool_call",
        "apply_patch",
        "*** Begin Patch\n+é\n",
    )
    assert (search.type, search.name, search.namespace, search.arguments) == (
        "function_call",
        "search",
        "mcp__docs",
        '{"q":"x"}',
    )


@pytest.mark.parametrize("provider", [anthropic, gemini, openai_chat])
def test_a_provider_stream_split_at_every_byte_gives_the_client_the_same_calls(provider):
    """The provider's stream (calls under the flat names) cut at every byte, decoded and
    re-encoded for the Responses client, always ends in the client's own shapes."""
    request = parse(tools=[APPLY_PATCH, NAMESPACE])
    upstream = provider.StreamEncoder(provider.parse_request(provider.render_request(request), model="m"))
    raw = b"".join(upstream.encode([event]) for event in canonical_events()) + upstream.close()
    expected = sse_events(streamed(request, canonical_events()))[-1].response.output
    whole = provider.StreamDecoder()
    events = whole.feed(raw) + whole.close()
    output = sse_events(streamed(request, events))[-1].response.output
    shapes = [(item.type, item.name, getattr(item, "namespace", None)) for item in output]
    assert shapes == [(item.type, item.name, getattr(item, "namespace", None)) for item in expected]
    assert output[0].input == expected[0].input
    for cut in range(1, len(raw)):
        decoder = provider.StreamDecoder()
        split = decoder.feed(raw[:cut]) + decoder.feed(raw[cut:]) + decoder.close()
        assert streamed(request, split) == streamed(request, events) or _same_calls(split, events), cut


def _same_calls(one: list[Any], other: list[Any]) -> bool:
    """Deltas may be cut differently; the calls' names and joined arguments may not."""
    return streamed_calls(one) == streamed_calls(other)


# -- answers of a hosted web search: the cited pages as text -------------------------------------

PAGE = ("https://docs.python.org/3.14/whatsnew/", "What's new in Python 3.14")
SOURCES = f"\n\nSources:\n- {PAGE[1]}: {PAGE[0]}"
ANTHROPIC_CITATION = {
    "type": "web_search_result_location",
    "url": PAGE[0],
    "title": PAGE[1],
    "cited_text": "3.14",
}
ANTHROPIC_SEARCHED: list[Any] = [
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "python 3.14"}},
    {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": [
            {"type": "web_search_result", "url": PAGE[0], "title": PAGE[1], "encrypted_content": "e"}
        ],
    },
    {"type": "text", "text": "Python 3.14 is out.", "citations": [ANTHROPIC_CITATION]},
]
GEMINI_GROUNDED = {
    "candidates": [
        {
            "content": {"role": "model", "parts": [{"text": "Python 3.14 is out."}]},
            "finishReason": "STOP",
            "groundingMetadata": {
                "webSearchQueries": ["python 3.14"],
                "groundingChunks": [{"web": {"uri": PAGE[0], "title": PAGE[1]}}, {"web": {"uri": PAGE[0]}}],
            },
        }
    ]
}
OPENAI_ANNOTATED: list[Any] = [
    {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {"type": "search", "query": "q"},
    },
    {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [
            {
                "type": "output_text",
                "text": "Python 3.14 is out.",
                "annotations": [
                    {
                        "type": "url_citation",
                        "start_index": 0,
                        "end_index": 6,
                        "url": PAGE[0],
                        "title": PAGE[1],
                    }
                ],
            }
        ],
    },
]


def sse_frames(*events: dict[str, Any], named: bool = True) -> bytes:
    """SSE frames; ``named``: each with an ``event:`` line of its type (Gemini's have none)."""
    head = (lambda data: f"event: {data['type']}\n".encode()) if named else (lambda data: b"")
    return b"".join(head(data) + b"data: " + json.dumps(data).encode() + b"\n\n" for data in events)


def block(index: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": f"content_block_{kind}", "index": index, **fields}


def streamed_text(module: Any, data: bytes) -> str:
    decoder = module.StreamDecoder()
    events = decoder.feed(data) + decoder.close()
    return "".join(e.text for e in events if type(e).__name__ == "TextDelta")


def whole_text(module: Any, body: dict[str, Any]) -> str:
    return "".join(p.text for p in module.parse_response(body).content if hasattr(p, "text"))


def test_anthropics_search_blocks_are_skipped_and_its_citations_end_the_text_whole_and_streamed():
    whole = {"id": "m", "model": "c", "content": ANTHROPIC_SEARCHED, "stop_reason": "end_turn", "usage": {}}
    citing = {"type": "citations_delta", "citation": ANTHROPIC_CITATION}
    said = {"type": "text_delta", "text": "Python 3.14 is out."}
    stream = sse_frames(
        {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {}}},
        block(0, "start", content_block=ANTHROPIC_SEARCHED[0]),
        block(0, "stop"),
        block(1, "start", content_block=ANTHROPIC_SEARCHED[1]),
        block(1, "stop"),
        block(2, "start", content_block={**ANTHROPIC_SEARCHED[2], "text": "", "citations": []}),
        block(2, "delta", delta=citing),
        block(2, "delta", delta=said),
        block(2, "stop"),
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    )

    assert whole_text(anthropic, whole) == "Python 3.14 is out." + SOURCES
    assert streamed_text(anthropic, stream) == "Python 3.14 is out." + SOURCES


def test_geminis_grounding_ends_the_text_whole_and_streamed():
    first = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Python 3.14 is out."}]}}]}
    last = {"candidates": [{**GEMINI_GROUNDED["candidates"][0], "content": {"role": "model", "parts": []}}]}

    assert whole_text(gemini, GEMINI_GROUNDED) == "Python 3.14 is out." + SOURCES
    assert streamed_text(gemini, sse_frames(first, last, named=False)) == "Python 3.14 is out." + SOURCES


def test_openais_url_citations_end_the_text_and_its_search_call_is_skipped_whole_and_streamed():
    whole = {"id": "r", "status": "completed", "output": OPENAI_ANNOTATED}
    head = {"id": "r", "object": "response", "status": "in_progress", "output": []}
    done = "response.output_item.done"
    stream = sse_frames(
        {"type": "response.created", "response": head},
        {"type": done, "output_index": 0, "item": OPENAI_ANNOTATED[0]},
        {"type": "response.output_text.delta", "output_index": 1, "delta": "Python 3.14 is out."},
        {"type": done, "output_index": 1, "item": OPENAI_ANNOTATED[1]},
        {"type": "response.completed", "response": {**whole, "object": "response"}},
    )

    assert whole_text(openai_responses, whole) == "Python 3.14 is out." + SOURCES
    assert streamed_text(openai_responses, stream) == "Python 3.14 is out." + SOURCES


def test_an_answer_without_citations_gets_no_sources():
    plain = {"id": "m", "model": "c", "content": [{"type": "text", "text": "Hi."}], "stop_reason": "end_turn"}
    assert whole_text(anthropic, plain) == "Hi."
