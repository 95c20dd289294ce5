"""Tool names a provider refuses, from Chat, Anthropic and Gemini clients, through a real
`mitmdump -s addons/llm.py` with the official SDKs (openai, anthropic, google-genai).

Gemini accepts `mcp.files:read`, OpenAI and Anthropic do not; Gemini refuses `3d-render` and names
over 64 characters, which Chat and Anthropic clients may declare. The fakes check the names as
their providers do, and call the tool by the name they were given (a scripted model), as a
provider would; the client gets the call back, whole and streamed, under the name it declared, and
the next turn with the call and its result in history is accepted too.
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

from translators.toolnames import flat

DOTTED = "mcp.files:read"
DIGIT_FIRST = "3d-render"
LONG = "mcp__" + "a_very_long_server_name_" * 2 + "lookup_all_files"  # 70 characters
ARGS = {"path": "docs/é.txt"}
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
RESULT = "the file says hi"
# backend instance -> the fake behind it
FAKES = {
    "openai": "openai",
    "openai-chat": "openai",
    "responses": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
}
NOT_GEMINI = ["openai-chat", "responses", "anthropic"]


@pytest.fixture(scope="module")
def names_proxy(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory):
    openai_url = f"{fakes.openai.base_url}/v1"
    both = (
        f'  openai-chat: {{type: openai-compatible, base_url: "{openai_url}", api_keys: ["{OPENAI_KEY}"]}}\n'
        f'  responses: {{type: openai-responses, base_url: "{openai_url}", api_keys: ["{OPENAI_KEY}"]}}\n'
    )
    config = fakes.llm_yaml().replace("default_backend:", both + "default_backend:")
    running = Proxy(tmp_path_factory.mktemp("toolnames"), config).start()
    yield running
    running.stop()


def calling(instance: str, name: str) -> str:
    """The model that calls ``name`` (the safe name the provider was given) with ARGS."""
    return f"{instance}:{scripted_model('', [(flat(name), ARGS)])}"


def upstream(fakes: Fakes, instance: str) -> dict[str, Any]:
    return getattr(fakes, FAKES[instance]).requests[-1].body


def declared_upstream(fakes: Fakes, instance: str) -> list[str]:
    tools = upstream(fakes, instance).get("tools", [])
    if instance == "gemini":
        return [d["name"] for tool in tools for d in tool.get("functionDeclarations", [])]
    return [tool["function"]["name"] if "function" in tool else tool["name"] for tool in tools]


def assert_only_safe_names_went_upstream(fakes: Fakes, instance: str, name: str) -> None:
    assert declared_upstream(fakes, instance) == [flat(name)]
    assert json.dumps(name) not in json.dumps(upstream(fakes, instance))


# -- a Gemini client ------------------------------------------------------------------------------


def gemini_client(proxy: Proxy) -> genai.Client:
    return genai.Client(api_key=CLIENT_KEY, http_options=types.HttpOptions(base_url=proxy.front_url))


def gemini_config(name: str) -> types.GenerateContentConfig:
    declaration = types.FunctionDeclaration(name=name, description="Read.", parameters_json_schema=SCHEMA)
    return types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[declaration])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )


def gemini_calls(client: genai.Client, model: str, contents: Any, name: str, stream: bool) -> list[Any]:
    config = gemini_config(name)
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=contents, config=config))
    else:
        chunks = [client.models.generate_content(model=model, contents=contents, config=config)]
    return [call for chunk in chunks for call in chunk.function_calls or []]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("instance", NOT_GEMINI)
@pytest.mark.parametrize("name", [DOTTED, LONG], ids=["dotted", "long"])
def test_a_gemini_clients_tool_is_called_back_under_its_own_name(names_proxy, fakes, name, instance, stream):
    client = gemini_client(names_proxy)
    [call] = gemini_calls(client, calling(instance, name), "Read docs/é.txt", name, stream)

    assert (call.name, call.args) == (name, ARGS)
    assert_only_safe_names_went_upstream(fakes, instance, name)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("instance", NOT_GEMINI)
def test_a_gemini_clients_next_turn_with_the_call_and_its_result_is_accepted(
    names_proxy, fakes, instance, stream
):
    client = gemini_client(names_proxy)
    [call] = gemini_calls(client, calling(instance, DOTTED), "Read docs/é.txt", DOTTED, stream)
    history = [
        types.Content(role="user", parts=[types.Part(text="Read docs/é.txt")]),
        types.Content(role="model", parts=[types.Part(function_call=call)]),
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name=DOTTED, response={"output": RESULT})],
        ),
    ]
    config = gemini_config(DOTTED)
    if stream:
        chunks = client.models.generate_content_stream(model=f"{instance}:m", contents=history, config=config)
        text = "".join(chunk.text or "" for chunk in chunks)
    else:
        text = client.models.generate_content(model=f"{instance}:m", contents=history, config=config).text
    assert text == f"Tool said: {RESULT}"
    assert_only_safe_names_went_upstream(fakes, instance, DOTTED)
    history_sent = {key: value for key, value in upstream(fakes, instance).items() if key != "tools"}
    assert flat(DOTTED) in json.dumps(history_sent)


# -- a Chat client --------------------------------------------------------------------------------


def chat_tools(name: str) -> list[Any]:
    return [{"type": "function", "function": {"name": name, "description": "Render.", "parameters": SCHEMA}}]


def chat_call(proxy: Proxy, model: str, stream: bool) -> tuple[str, str, dict[str, Any]]:
    """(id, name, arguments) of the one call the answer makes."""
    sdk = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    messages = [{"role": "user", "content": "Render it"}]
    args: dict[str, Any] = {"model": model, "messages": messages, "tools": chat_tools(DIGIT_FIRST)}
    if not stream:
        [call] = sdk.chat.completions.create(**args).choices[0].message.tool_calls
        return call.id, call.function.name, json.loads(call.function.arguments)
    chunks = list(sdk.chat.completions.create(**args, stream=True))
    calls = [call for chunk in chunks if chunk.choices for call in chunk.choices[0].delta.tool_calls or []]
    [start] = [call for call in calls if call.function and call.function.name]
    arguments = "".join(call.function.arguments or "" for call in calls if call.function)
    return start.id, start.function.name, json.loads(arguments)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_chat_clients_digit_first_tool_reaches_gemini_and_comes_back_then_its_result(
    names_proxy, fakes, stream
):
    call_id, name, arguments = chat_call(names_proxy, calling("gemini", DIGIT_FIRST), stream)
    assert (name, arguments) == (DIGIT_FIRST, ARGS)
    assert_only_safe_names_went_upstream(fakes, "gemini", DIGIT_FIRST)

    sdk = openai.OpenAI(base_url=names_proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    messages: list[Any] = [
        {"role": "user", "content": "Render it"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": RESULT},
    ]
    answer = sdk.chat.completions.create(
        model="gemini:gemini-2.5-flash", messages=messages, tools=chat_tools(name)
    )
    assert answer.choices[0].message.content == f"Tool said: {RESULT}"
    assert_only_safe_names_went_upstream(fakes, "gemini", DIGIT_FIRST)


# -- an Anthropic client --------------------------------------------------------------------------


def anthropic_client(proxy: Proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.front_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0)


ANTHROPIC_TOOLS: list[Any] = [{"name": LONG, "description": "Look up files.", "input_schema": SCHEMA}]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_anthropic_clients_long_tool_name_reaches_gemini_and_comes_back_then_its_result(
    names_proxy, fakes, stream
):
    sdk = anthropic_client(names_proxy)
    args: dict[str, Any] = {
        "model": calling("gemini", LONG),
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Look it up"}],
        "tools": ANTHROPIC_TOOLS,
        "tool_choice": {"type": "tool", "name": LONG},
    }
    if stream:
        with sdk.messages.stream(**args) as events:
            message = events.get_final_message()
    else:
        message = sdk.messages.create(**args)
    [use] = [block for block in message.content if block.type == "tool_use"]
    assert (use.name, use.input) == (LONG, ARGS)
    assert_only_safe_names_went_upstream(fakes, "gemini", LONG)
    allowed = upstream(fakes, "gemini")["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"]
    assert allowed == [flat(LONG)]

    result = {"type": "tool_result", "tool_use_id": use.id, "content": RESULT}
    follow_up = sdk.messages.create(
        model="gemini:gemini-2.5-flash",
        max_tokens=256,
        tools=ANTHROPIC_TOOLS,
        messages=[
            {"role": "user", "content": "Look it up"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": ARGS}],
            },
            {"role": "user", "content": [result]},
        ],
    )
    assert follow_up.content[0].text == f"Tool said: {RESULT}"  # type: ignore[union-attr]
    assert_only_safe_names_went_upstream(fakes, "gemini", LONG)


# -- tool rules see the client's names ----------------------------------------------------------


@pytest.fixture(scope="module")
def ruled_proxy(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory):
    """A tool rule written for the Gemini client's own name, on a backend that needs it renamed."""
    rule = '  tools:\n    - {match: {model: "openai:*"}, deny: ["mcp.files:*"]}\n'
    config = fakes.llm_yaml() + "policies:\n" + rule
    running = Proxy(tmp_path_factory.mktemp("toolrules"), config).start()
    yield running
    running.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_tool_rule_for_the_clients_name_removes_and_blocks_the_renamed_tool(ruled_proxy, fakes, stream):
    client = gemini_client(ruled_proxy)
    model = calling("openai", DOTTED)  # a model that calls the removed tool anyway
    config = gemini_config(DOTTED)
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents="Read it", config=config))
    else:
        chunks = [client.models.generate_content(model=model, contents="Read it", config=config)]

    assert not [call for chunk in chunks for call in chunk.function_calls or []]
    text = "".join(chunk.text or "" for chunk in chunks)
    assert f"[llm-proxy] blocked the {DOTTED} tool call" in text
    assert declared_upstream(fakes, "openai") == []  # removed before it reached the provider
