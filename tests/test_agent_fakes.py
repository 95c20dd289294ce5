"""The fakes drive a coding agent's own defaults: each official SDK, pointed straight at a fake,
sees model ``agent-shell`` call the shell an agent declares and answer the side requests it makes.

Codex's default model declares its shell only in code mode, a freeform ``exec`` tool inside the
``functions`` namespace of an ``additional_tools`` input item: the Responses fake answers a
``custom_tool_call`` of it, and the other fakes call the flat function the proxy makes of it.
Gemini CLI's default model setting first asks a router for a JSON complexity score: an agent's
model answers a request for structured output with an instance of its schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from google import genai
from google.genai import types
from support.fakes import AGENT_MODEL, AGENT_OUTPUT, GEMINI_KEY, OPENAI_KEY, Fakes
from support.fakes.common import AGENT_CODE_MODE, schema_instance

CODE_MODE_ITEM: dict[str, Any] = {
    "type": "additional_tools",
    "role": "developer",
    "tools": [
        {
            "type": "namespace",
            "name": "functions",
            "description": "",
            "tools": [{"type": "custom", "name": "exec", "description": "Run JavaScript."}],
        }
    ],
}
ASK: dict[str, Any] = {"role": "user", "content": "Write the marker file."}
ROUTER_SCHEMA = {
    "type": "OBJECT",
    "properties": {"reasoning": {"type": "STRING"}, "score": {"type": "INTEGER"}},
    "required": ["reasoning", "score"],
}


@pytest.fixture(scope="module")
def oai(fakes: Fakes) -> Iterator[openai.OpenAI]:
    http = openai.DefaultHttpxClient(trust_env=False)
    with openai.OpenAI(
        base_url=fakes.openai.base_url + "/v1", api_key=OPENAI_KEY, max_retries=0, http_client=http
    ) as client:
        yield client


@pytest.fixture(scope="module")
def gemini(fakes: Fakes) -> Iterator[genai.Client]:
    options = types.HttpOptions(base_url=fakes.gemini.base_url, client_args={"trust_env": False})
    with genai.Client(api_key=GEMINI_KEY, http_options=options) as client:
        yield client


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_codex_code_mode_gets_a_custom_call_of_its_namespaced_exec_tool(oai, stream):
    request: Any = {"model": AGENT_MODEL, "input": [CODE_MODE_ITEM, ASK]}
    if stream:
        with oai.responses.stream(**request) as events:
            deltas = [e.delta for e in events if e.type == "response.custom_tool_call_input.delta"]
            response = events.get_final_response()
        assert "".join(deltas) == AGENT_CODE_MODE
    else:
        response = oai.responses.create(**request)
    [call] = response.output
    assert call.type == "custom_tool_call"
    assert (call.name, call.input) == ("exec", AGENT_CODE_MODE)
    assert json.loads(response.model_dump_json())["output"][0]["namespace"] == "functions"


def test_codex_code_mode_output_is_the_result_the_agent_model_reports(oai):
    call = {"type": "custom_tool_call", "call_id": "call_1", "name": "exec", "input": AGENT_CODE_MODE}
    output = {"type": "custom_tool_call_output", "call_id": "call_1", "output": AGENT_OUTPUT}
    history: Any = [CODE_MODE_ITEM, ASK, call, output]
    response = oai.responses.create(model=AGENT_MODEL, input=history)
    assert response.output_text == f"Tool said: {AGENT_OUTPUT}"


def test_other_models_carry_custom_outputs_without_acting_on_them(oai):
    call = {"type": "custom_tool_call", "call_id": "call_1", "name": "exec", "input": AGENT_CODE_MODE}
    output = {"type": "custom_tool_call_output", "call_id": "call_1", "output": AGENT_OUTPUT}
    response = oai.responses.create(model="gpt-x", input=[CODE_MODE_ITEM, ASK, call, output])
    assert response.output_text == "Hello from openai!"


def test_the_flattened_exec_tool_gets_its_code_as_the_input_argument(oai):
    tool: Any = {
        "type": "function",
        "function": {"name": "functions__exec", "parameters": {"type": "object"}},
    }
    completion = oai.chat.completions.create(model=AGENT_MODEL, messages=[ASK], tools=[tool])
    [call] = completion.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.name == "functions__exec"
    assert json.loads(call.function.arguments) == {"input": AGENT_CODE_MODE}


def test_an_agents_router_request_gets_json_that_fits_its_schema(gemini):
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=ROUTER_SCHEMA
    )
    answer = gemini.models.generate_content(model=AGENT_MODEL, contents="Route this.", config=config)
    assert json.loads(answer.text or "") == {"reasoning": "", "score": 1}


def test_other_models_answer_structured_requests_with_their_greeting(gemini):
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=ROUTER_SCHEMA
    )
    answer = gemini.models.generate_content(model="gemini-x", contents="Route this.", config=config)
    assert answer.text == "Hello from gemini!"


def test_an_openai_structured_request_of_an_agent_gets_an_instance_of_its_schema(oai):
    schema = {"type": "object", "properties": {"next": {"type": "string", "enum": ["user", "model"]}}}
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "next", "schema": schema}}
    completion = oai.chat.completions.create(model=AGENT_MODEL, messages=[ASK], response_format=fmt)
    assert json.loads(completion.choices[0].message.content or "") == {"next": "user"}


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"type": "string", "enum": ["b", "a"]}, "b"),
        ({"type": "NUMBER"}, 1),
        ({"type": ["boolean", "null"]}, False),
        ({"type": "array", "items": {"type": "string"}}, []),
        (
            {"properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}}}},
            {"a": {"b": 1}},
        ),
    ],
)
def test_a_schema_instance_is_its_simplest_fitting_value(schema, instance):
    assert schema_instance(schema) == instance
