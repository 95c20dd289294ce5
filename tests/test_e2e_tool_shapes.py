"""Codex's tool shapes through a real `mitmdump -s addons/llm.py`, with the official `openai` SDK.

A Responses client declares a custom (freeform, grammar) tool, a namespaced function, a long
name and hosted web search; the Anthropic, Gemini and Chat-protocol fakes (which refuse names outside
their patterns and unknown tool types) get flat functions, plus Anthropic its own web search server
tool (Gemini's Google Search is sent only without functions, Chat has none), and the client gets its
own shapes back, whole and streamed; the custom call's output is the tool result of the next turn.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from support.builders import CLIENT_KEY
from support.fakes import OPENAI_KEY, Fakes, scripted_model
from support.proxy import Proxy

GRAMMAR = {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)+/'}
LONG = "mcp__" + "a_rather_long_server_name_" * 3 + "lookup"
TOOLS: list[Any] = [
    {"type": "custom", "name": "apply_patch", "description": "Edit files.", "format": GRAMMAR},
    {
        "type": "namespace",
        "name": "docs",
        "description": "Docs server",
        "tools": [{"type": "function", "name": "search", "parameters": {"type": "object", "properties": {}}}],
    },
    {"type": "function", "name": LONG, "parameters": {"type": "object", "properties": {}}},
    {"type": "web_search"},
]
PATCH = "*** Begin Patch\n*** Add File: a.txt\n+é\n*** End Patch\n"
# The fake calls the flat names, as a provider would.
CALLS = [("apply_patch", {"input": PATCH}), ("docs__search", {"q": "x"})]
BACKENDS = {"anthropic": "anthropic", "gemini": "gemini", "chat": "openai"}


def client(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)


# backend -> the hosted web search its provider is sent beside the functions (docs/wire.md §2.8)
SEARCH_SENT: dict[str, list[Any]] = {
    "anthropic": [{"type": "web_search_20250305", "name": "web_search"}],
    "gemini": [],
    "chat": [],
}


def upstream_tools(fakes: Fakes, backend: str) -> tuple[list[str], list[Any]]:
    """The function names and the hosted tools the provider got."""
    body = getattr(fakes, BACKENDS[backend]).requests[-1].body
    if backend == "gemini":
        names = [d["name"] for tool in body["tools"] for d in tool.get("functionDeclarations", [])]
        return names, [tool for tool in body["tools"] if "functionDeclarations" not in tool]
    if backend == "chat":
        return [tool["function"]["name"] for tool in body["tools"]], []
    hosted = [tool for tool in body["tools"] if "type" in tool]
    return [tool["name"] for tool in body["tools"] if "type" not in tool], hosted


def model_for(backend: str, calls: Any) -> str:
    instance = "openai-chat" if backend == "chat" else backend
    return f"{instance}:{scripted_model('', calls)}"


@pytest.fixture(scope="module")
def shapes_proxy(fakes, tmp_path_factory):
    backend = (
        f'  openai-chat: {{type: openai-compatible, base_url: "{fakes.openai.base_url}/v1", '
        f'api_keys: ["{OPENAI_KEY}"]}}\n'
    )
    config = fakes.llm_yaml().replace("default_backend:", backend + "default_backend:")
    running = Proxy(tmp_path_factory.mktemp("shapes"), config).start()
    yield running
    running.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_codex_tool_shapes_come_back_as_declared(shapes_proxy, fakes, backend, stream):
    sdk = client(shapes_proxy)
    args = {"model": model_for(backend, CALLS), "input": "patch it", "tools": TOOLS}
    if stream:
        with sdk.responses.stream(**args) as events:
            kinds = [event.type for event in events]
            response = events.get_final_response()
        assert "response.custom_tool_call_input.done" in kinds
    else:
        raw = sdk.responses.with_raw_response.create(**args)
        assert "web_search" in raw.headers["x-llm-warning"]
        response = raw.parse()
    patch, search = response.output
    assert (patch.type, patch.name, patch.input) == ("custom_tool_call", "apply_patch", PATCH)
    assert (search.type, search.name, search.namespace) == ("function_call", "search", "docs")
    names, hosted = upstream_tools(fakes, backend)
    assert names[:2] == ["apply_patch", "docs__search"] and len(names) == 3 and len(names[2]) <= 64
    assert hosted == SEARCH_SENT[backend]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_custom_tool_call_output_is_the_next_turns_tool_result(shapes_proxy, fakes, backend):
    history = [
        {"role": "user", "content": "patch it"},
        {"type": "custom_tool_call", "call_id": "call_patch", "name": "apply_patch", "input": PATCH},
        {"type": "custom_tool_call_output", "call_id": "call_patch", "output": "Done!"},
        {
            "type": "function_call",
            "call_id": "call_s",
            "name": "search",
            "namespace": "docs",
            "arguments": "{}",
        },
        {"type": "function_call_output", "call_id": "call_s", "output": "found"},
    ]
    instance = "openai-chat" if backend == "chat" else backend
    response = client(shapes_proxy).responses.create(model=f"{instance}:m", input=history, tools=TOOLS)
    assert response.output_text.startswith("Tool said: ")
    sent = json.dumps(getattr(fakes, BACKENDS[backend]).requests[-1].body)
    assert "Done!" in sent and "Add File: a.txt" in sent and '"custom"' not in sent
