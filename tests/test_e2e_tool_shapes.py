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

import anthropic
import openai
import pytest
from google import genai
from google.genai import types
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


# -- hosted web search from the other clients ------------------------------------------------------

WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}


def test_claude_codes_web_search_reaches_gemini_as_google_search_and_the_client_is_told(shapes_proxy, fakes):
    sdk = anthropic.Anthropic(
        base_url=shapes_proxy.front_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0
    )
    raw = sdk.messages.with_raw_response.create(
        model="gemini:gemini-2.5-flash", max_tokens=64, tools=[WEB_SEARCH],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "What is new in Python?"}],
    )  # fmt: skip

    assert raw.parse().content[0].text == "Hello from gemini!"  # type: ignore[union-attr]
    assert "web_search_20250305" in raw.headers["x-llm-warning"]
    assert fakes.gemini.requests[-1].body["tools"] == [{"googleSearch": {}}]


def test_gemini_clis_google_search_reaches_anthropic_as_its_web_search(shapes_proxy, fakes):
    client = genai.Client(api_key=CLIENT_KEY, http_options=types.HttpOptions(base_url=shapes_proxy.front_url))
    search = types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())])
    answer = client.models.generate_content(
        model="anthropic:claude-x", contents="What is new?", config=search
    )

    assert answer.candidates, "answered (the fake calls a tool whenever one is declared)"
    assert fakes.anthropic.requests[-1].body["tools"] == [
        {"type": "web_search_20250305", "name": "web_search"}
    ]


def test_beside_functions_a_web_search_is_left_out_for_gemini_which_would_refuse_both(shapes_proxy, fakes):
    shell = {"name": "shell", "input_schema": {"type": "object", "properties": {}}}
    sdk = anthropic.Anthropic(
        base_url=shapes_proxy.front_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0
    )
    sdk.messages.create(
        model="gemini:gemini-2.5-flash", max_tokens=64, tools=[shell, WEB_SEARCH],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Hi"}],
    )  # fmt: skip

    [tools] = fakes.gemini.requests[-1].body["tools"]
    assert list(tools) == ["functionDeclarations"]
