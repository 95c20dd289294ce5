"""End to end over the OpenAI Responses API, through a real `mitmdump -s addons/llm.py`.

The official `openai` SDK's `client.responses` against every backend (the `openai` backend speaks
Responses itself, so that route passes through untranslated; a `type: openai-responses` backend
serves only /v1/responses), every other SDK against the Responses-only backend, the stateless
proxy's refusal of server-side state and of hosted-tool items where it translates (while a
same-protocol route carries them to the provider), the HTTPS-proxy path, and Codex's WebSocket
attempt. Each case checks what the client sees and what the provider got.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response
from support.builders import (
    CLIENT_KEY,
    CLIENTS,
    TOOL_RESULT,
    USAGE,
    WEATHER_SCHEMA,
    assert_upstream_got_injected_key,
    proxied_http,
    trust,
)
from support.fakes import OPENAI_KEY, Fakes
from support.proxy import Proxy

# backend instance -> the fake behind it; `responses` is the openai fake's /v1/responses alone.
FAKE_OF = {"openai": "openai", "anthropic": "anthropic", "gemini": "gemini", "responses": "openai"}
BACKENDS = tuple(FAKE_OF)
TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather",
        "parameters": WEATHER_SCHEMA,
        "strict": None,
    }
]
QUESTION = "What is the weather in Paris?"


def responses_config(fakes: Fakes) -> str:
    """The fakes' configuration plus a backend that only serves the Responses API."""
    backend = (
        f'  responses: {{type: openai-responses, base_url: "{fakes.openai.base_url}/v1", '
        f'api_keys: ["{OPENAI_KEY}"]}}\n'
    )
    return fakes.llm_yaml().replace("default_backend:", backend + "default_backend:")


@pytest.fixture(scope="module")
def responses_proxy(fakes, tmp_path_factory):
    running = Proxy(tmp_path_factory.mktemp("responses"), responses_config(fakes)).start()
    yield running
    running.stop()


def proxy_for(request: pytest.FixtureRequest, backend: str) -> Proxy:
    """The session proxy knows openai, anthropic and gemini; only `responses` needs its own."""
    return request.getfixturevalue("responses_proxy" if backend == "responses" else "proxy")


def greeting(backend: str) -> str:
    return f"Hello from {FAKE_OF[backend]}!"


def usage_of(backend: str) -> tuple[int, int]:
    return USAGE[FAKE_OF[backend]]


def upstream_path(backend: str, stream: bool) -> str:
    """Where each backend's provider is asked: the Responses endpoint for both OpenAI backends."""
    method = "streamGenerateContent" if stream else "generateContent"
    paths = {
        "openai": "/v1/responses",
        "responses": "/v1/responses",
        "anthropic": "/v1/messages",
        "gemini": f"/v1beta/models/fake-model:{method}",
    }
    return paths[backend]


# -- the Responses client -------------------------------------------------------------------------


@dataclass
class Reply:
    response: Response
    text_deltas: list[str] = field(default_factory=list)  # response.output_text.delta events, streamed

    @property
    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        return [(i.name, json.loads(i.arguments)) for i in self.response.output if i.type == "function_call"]

    @property
    def usage(self) -> tuple[int, int] | None:
        usage = self.response.usage
        return (usage.input_tokens, usage.output_tokens) if usage else None


class ResponsesClient:
    """`client.responses` as Codex uses it: stateless, the whole conversation sent as input items."""

    def __init__(self, proxy: Proxy) -> None:
        self.client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        self.input: list[Any] = [{"role": "user", "content": QUESTION}]

    def ask(self, model: str, stream: bool, tools: bool) -> Reply:
        kwargs: dict[str, Any] = {"model": model, "input": self.input}
        if tools:
            kwargs["tools"] = TOOLS
        if not stream:
            return Reply(self.client.responses.create(**kwargs))
        with self.client.responses.stream(**kwargs) as events:
            seen = list(events)
            response = events.get_final_response()
        assert [e.sequence_number for e in seen] == list(range(len(seen))), "sequence numbers count from 0"
        deltas = [e.delta for e in seen if e.type == "response.output_text.delta"]
        assert "".join(deltas) == response.output_text
        arguments = "".join(e.delta for e in seen if e.type == "response.function_call_arguments.delta")
        assert arguments == "".join(i.arguments for i in response.output if i.type == "function_call")
        return Reply(response, deltas)

    def answer_tool(self, reply: Reply, result: str) -> None:
        """Send back the model's output items as they came, then the result of its one call."""
        [call] = [item for item in reply.response.output if item.type == "function_call"]
        self.input += [item.model_dump(exclude_none=True) for item in reply.response.output]
        self.input.append({"type": "function_call_output", "call_id": call.call_id, "output": result})


# -- the Responses client against every backend ---------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_responses_client_plain_text(request, fakes, backend, stream):
    reply = ResponsesClient(proxy_for(request, backend)).ask(f"{backend}:fake-model", stream, tools=False)
    assert reply.response.output_text == greeting(backend)
    assert reply.response.status == "completed"
    assert reply.calls == []
    assert reply.usage == usage_of(backend)
    if stream:
        assert len(reply.text_deltas) > 1, "the text arrives in pieces"
    upstream = getattr(fakes, FAKE_OF[backend]).requests
    assert [r.path for r in upstream] == [upstream_path(backend, stream)]
    assert_upstream_got_injected_key(fakes, FAKE_OF[backend])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_responses_client_function_call_round_trip(request, fakes, backend, stream):
    client = ResponsesClient(proxy_for(request, backend))
    first = client.ask(f"{backend}:fake-model", stream, tools=True)
    assert first.calls == [("get_weather", {"city": "Paris"})]
    [call] = [item for item in first.response.output if item.type == "function_call"]
    assert call.call_id, "a function call needs a call_id the client can answer"
    assert first.response.status == "completed"
    assert first.usage == usage_of(backend)

    client.answer_tool(first, TOOL_RESULT)
    second = client.ask(f"{backend}:fake-model", stream, tools=True)
    assert second.response.output_text == f"Tool said: {TOOL_RESULT}"
    assert second.calls == []
    assert second.response.status == "completed"
    assert second.usage == usage_of(backend)
    upstream = getattr(fakes, FAKE_OF[backend]).requests
    assert [r.path for r in upstream] == [upstream_path(backend, stream)] * 2
    assert_upstream_got_injected_key(fakes, FAKE_OF[backend])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_selector_parameter_translates_responses_to_responses(responses_proxy, fakes, stream):
    """A parameter in the selector makes the proxy render the request itself, even for its own protocol."""
    client = ResponsesClient(responses_proxy)
    first = client.ask("responses:fake-model?temperature=0.25", stream, tools=True)
    assert first.calls == [("get_weather", {"city": "Paris"})]
    client.answer_tool(first, TOOL_RESULT)
    second = client.ask("responses:fake-model?temperature=0.25", stream, tools=True)
    assert second.response.output_text == f"Tool said: {TOOL_RESULT}"
    assert second.usage == USAGE["openai"]
    sent = fakes.openai.requests[-1].body
    assert (sent["model"], sent["temperature"], sent["store"]) == ("fake-model", 0.25, False)


@pytest.mark.parametrize("backend", ["openai", "responses"])
def test_same_protocol_routes_pass_the_items_through_with_only_the_model_renamed(request, fakes, backend):
    client = ResponsesClient(proxy_for(request, backend))
    client.answer_tool(client.ask(f"{backend}:fake-model", stream=False, tools=True), TOOL_RESULT)
    client.ask(f"{backend}:fake-model", stream=False, tools=True)
    sent = json.loads(fakes.openai.requests[-1].raw)
    assert sent == {"model": "fake-model", "input": client.input, "tools": TOOLS}


# -- every other SDK against the Responses-only backend -------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("client_protocol", list(CLIENTS))
def test_other_clients_plain_text_through_the_responses_backend(
    responses_proxy, fakes, client_protocol, stream
):
    client = CLIENTS[client_protocol](responses_proxy)
    turn = client.ask("responses:fake-model", stream=stream, tools=False)
    assert turn.text == "Hello from openai!"
    assert turn.calls == []
    assert turn.stop == client.stops["text"]
    assert turn.usage == USAGE["openai"]
    [upstream] = fakes.openai.requests
    assert upstream.path == "/v1/responses"
    sent = upstream.body
    assert (sent["model"], sent["store"], sent.get("stream", False)) == ("fake-model", False, stream)
    assert_upstream_got_injected_key(fakes, "openai")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("client_protocol", list(CLIENTS))
def test_other_clients_tool_round_trip_through_the_responses_backend(
    responses_proxy, fakes, client_protocol, stream
):
    client = CLIENTS[client_protocol](responses_proxy)
    first = client.ask("responses:fake-model", stream=stream, tools=True)
    assert [(c["name"], c["args"]) for c in first.calls] == [("get_weather", {"city": "Paris"})]
    if client_protocol != "gemini":  # Gemini matches results to calls by name; ids are optional
        assert first.calls[0]["id"], "a tool call needs an id the client can answer"
    assert first.stop == client.stops["tool"]
    assert first.usage == USAGE["openai"]

    client.answer_tool(first, TOOL_RESULT)
    second = client.ask("responses:fake-model", stream=stream, tools=True)
    assert second.text == f"Tool said: {TOOL_RESULT}"
    assert second.calls == []
    assert second.stop == client.stops["text"]
    assert [r.path for r in fakes.openai.requests] == ["/v1/responses"] * 2
    kinds = [item.get("type") for item in fakes.openai.requests[-1].body["input"]]
    assert [k for k in kinds if k != "message"] == ["function_call", "function_call_output"]
    assert_upstream_got_injected_key(fakes, "openai")


# -- server-side state: refused where the proxy translates, the provider's business otherwise -----


def front_client(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)


STATEFUL = {"previous_response_id": "resp_earlier", "store": True}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("field_", STATEFUL)
def test_server_side_state_on_a_translated_route_is_a_400_naming_the_field(proxy, fakes, field_, stream):
    with pytest.raises(openai.BadRequestError) as raised:
        front_client(proxy).responses.create(
            model="anthropic:x", input="And in Rome?", stream=stream, **{field_: STATEFUL[field_]}
        )
    envelope = raised.value.response.json()
    assert set(envelope) == {"error", "llm_error"}
    assert envelope["llm_error"] == {"code": "invalid_request", "retryable": False}
    error = envelope["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", field_)
    assert field_ in error["message"] and "server-side state" in error["message"]
    assert fakes.anthropic.requests == []


def test_previous_response_id_on_the_openai_passthrough_reaches_the_provider(proxy, fakes):
    refusal = "fake openai: .*Previous response with id 'resp_earlier'"
    with pytest.raises(openai.BadRequestError, match=refusal):
        front_client(proxy).responses.create(
            model="openai:fake-model", input="And in Rome?", previous_response_id="resp_earlier"
        )
    [upstream] = fakes.openai.requests
    assert upstream.path == "/v1/responses"
    assert upstream.body["previous_response_id"] == "resp_earlier"


# -- Codex's history: hosted and custom tool items (docs/snags.md #22) ----------------------------

CODEX_HISTORY: list[Any] = [
    {"role": "user", "content": QUESTION},
    {"type": "custom_tool_call", "call_id": "call_patch", "name": "apply_patch", "input": "*** Begin Patch"},
    {"type": "custom_tool_call_output", "call_id": "call_patch", "output": "Done!"},
]


def test_custom_tool_items_survive_the_openai_passthrough(proxy, fakes):
    tools = [{"type": "custom", "name": "apply_patch", "description": "Patch files"}]
    client = front_client(proxy)
    response = client.responses.create(model="openai:fake-model", input=CODEX_HISTORY, tools=tools)
    assert response.output_text == "Hello from openai!"
    sent = json.loads(fakes.openai.requests[-1].raw)
    assert (sent["input"], sent["tools"]) == (CODEX_HISTORY, tools)


# -- HTTPS-proxy mode -----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_sdk_at_api_openai_com_reaches_the_fakes_responses_endpoint(proxy, fakes, stream):
    client = openai.OpenAI(api_key=CLIENT_KEY, http_client=proxied_http(proxy), max_retries=0)
    assert str(client.base_url) == "https://api.openai.com/v1/"
    if stream:
        with client.responses.stream(model="gpt-5.5", input="Hi") as events:
            response = events.get_final_response()
    else:
        response = client.responses.create(model="gpt-5.5", input="Hi")
    assert response.output_text == "Hello from openai!"
    [upstream] = fakes.openai.requests
    assert (upstream.path, upstream.body["model"]) == ("/v1/responses", "gpt-5.5")
    assert upstream.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert CLIENT_KEY not in json.dumps(upstream.headers)


# -- Codex's WebSocket attempt --------------------------------------------------------------------

WEBSOCKET_HANDSHAKE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Authorization": f"Bearer {CLIENT_KEY}",
}


def websocket_attempt(proxy: Proxy, surface: str) -> httpx.Response:
    """Short timeouts: the refusal must come at once, not after the proxy waited for something."""
    if surface == "front_door":
        with httpx.Client(trust_env=False, timeout=5) as client:
            return client.get(f"{proxy.front_url}/v1/responses", headers=WEBSOCKET_HANDSHAKE)
    with httpx.Client(proxy=proxy.proxy_url, verify=trust(proxy), trust_env=False, timeout=5) as client:
        return client.get("https://api.openai.com/v1/responses", headers=WEBSOCKET_HANDSHAKE)


@pytest.mark.parametrize("surface", ["front_door", "https_proxy"])
def test_websocket_upgrade_is_refused_with_426_in_the_openai_envelope(proxy, fakes, surface):
    response = websocket_attempt(proxy, surface)
    assert response.status_code == 426
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert "WebSocket" in error["message"]
    assert fakes.openai.requests == []
