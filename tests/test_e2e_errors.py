"""Bad input and upstream faults reach each client as its own protocol's error, never a hang.

Every case goes through a real `mitmdump -s addons/llm.py` and is read by the official SDK (or, for
bodies an SDK cannot send, by plain HTTP), asserting status, envelope and message.
"""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from support.proxy import Proxy, free_port

CLIENT_KEY = "client-key-that-must-not-travel"
FAST_TIMEOUTS = "timeouts: {connect: 1, first_byte: 1.5, idle: 1.5}"


@pytest.fixture(scope="module")
def faulty_proxy(fakes, tmp_path_factory):
    """The fakes' configuration plus a backend on a closed port and one with short timeouts."""
    config = fakes.llm_yaml().replace("default_backend", "#")
    config += (
        f'  dead: {{type: openai-compatible, base_url: "http://127.0.0.1:{free_port()}/v1"}}\n'
        f'  openai.slow: {{type: openai, base_url: "{fakes.openai.base_url}/v1", '
        f'api_keys: ["sk-fake-openai-0001"], {FAST_TIMEOUTS}}}\n'
        "default_backend: openai\n"
        "max_request_bytes: 20000\n"
    )
    running = Proxy(tmp_path_factory.mktemp("faulty"), config).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _fresh_backend_state(request):
    """Failures teach the proxy to avoid keys (cool-downs, disabling): start each case afresh."""
    yield
    if "faulty_proxy" in request.fixturenames:
        proxy = request.getfixturevalue("faulty_proxy")
        for instance in ("openai", "anthropic", "gemini", "dead", "openai.slow"):
            url = f"{proxy.front_url}/v1/diagnostics/backends/{instance}/reactivate?clear_models=true"
            httpx.post(url, timeout=10).raise_for_status()


def openai_client(proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def anthropic_client(proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=proxy.front_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0, timeout=20
    )


def gemini_client(proxy) -> genai.Client:
    return genai.Client(
        api_key=CLIENT_KEY, http_options=types.HttpOptions(base_url=proxy.front_url, timeout=20_000)
    )


def ask(client_protocol: str, proxy, model: str, stream: bool = False) -> str:
    """One user turn; returns the text (consuming the whole stream)."""
    messages = [{"role": "user", "content": "Hi"}]
    if client_protocol == "openai":
        client = openai_client(proxy)
        if stream:
            chunks = client.chat.completions.create(model=model, messages=messages, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return client.chat.completions.create(model=model, messages=messages).choices[0].message.content
    if client_protocol == "anthropic":
        client = anthropic_client(proxy)
        if stream:
            with client.messages.stream(model=model, max_tokens=64, messages=messages) as events:
                return "".join(events.text_stream)
        return client.messages.create(model=model, max_tokens=64, messages=messages).content[0].text
    client = gemini_client(proxy)
    if stream:
        return "".join(
            c.text or "" for c in client.models.generate_content_stream(model=model, contents="Hi")
        )
    return client.models.generate_content(model=model, contents="Hi").text


SDK_ERRORS = {
    "openai": openai.APIStatusError,
    "anthropic": anthropic.APIStatusError,
    "gemini": genai_errors.APIError,
}


def status_and_message(error: Exception) -> tuple[int, str]:
    if isinstance(error, genai_errors.APIError):
        return error.code, error.message or ""
    return error.status_code, str(error.body)


# -- malformed and wrong-shaped bodies (plain HTTP: SDKs cannot send them) ---------------------------

ENDPOINTS = {
    "openai": ("/v1/chat/completions", {"model": "anthropic:x"}),
    "anthropic": ("/anthropic/v1/messages", {"model": "openai:x", "max_tokens": 5}),
    "gemini": ("/v1beta/models/openai:x:generateContent", {}),
}


def envelope_message(client_protocol: str, body: dict) -> tuple[str, str]:
    """(error type or status, message) from each protocol's envelope, asserting its shape."""
    if client_protocol == "openai":
        assert set(body) - {"llm_error"} == {"error"} and {"message", "type", "code"} <= set(body["error"])
        return body["error"]["type"], body["error"]["message"]
    if client_protocol == "anthropic":
        assert body["type"] == "error" and {"type", "message"} <= set(body["error"])
        return body["error"]["type"], body["error"]["message"]
    assert {"code", "message", "status"} <= set(body["error"])
    return body["error"]["status"], body["error"]["message"]


BAD_REQUEST_TYPE = {
    "openai": "invalid_request_error",
    "anthropic": "invalid_request_error",
    "gemini": "INVALID_ARGUMENT",
}


@pytest.mark.parametrize("client_protocol", list(ENDPOINTS))
def test_malformed_json_is_a_native_400(faulty_proxy, client_protocol):
    path, _ = ENDPOINTS[client_protocol]
    response = httpx.post(faulty_proxy.front_url + path, content=b'{"model": "x", "messages": [', timeout=20)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    kind, message = envelope_message(client_protocol, response.json())
    assert kind == BAD_REQUEST_TYPE[client_protocol]
    assert "not valid JSON" in message


WRONG_SHAPES = {
    "openai": ({"messages": "Hi"}, "messages"),
    "anthropic": ({"messages": [{"role": "robot", "content": "Hi"}]}, "messages[0].role"),
    "gemini": ({"contents": [{"role": "user", "parts": "Hi"}]}, "contents[0].parts"),
}


@pytest.mark.parametrize("client_protocol", list(WRONG_SHAPES))
def test_wrong_shape_names_the_field(faulty_proxy, client_protocol):
    path, base = ENDPOINTS[client_protocol]
    body, field = WRONG_SHAPES[client_protocol]
    response = httpx.post(faulty_proxy.front_url + path, json={**base, **body}, timeout=20)
    assert response.status_code == 400
    kind, message = envelope_message(client_protocol, response.json())
    assert kind == BAD_REQUEST_TYPE[client_protocol]
    assert field in message
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("client_protocol", list(ENDPOINTS))
def test_unknown_path_is_a_native_404(faulty_proxy, client_protocol):
    prefix = {"openai": "/v1", "anthropic": "/anthropic/v1", "gemini": "/v1beta"}[client_protocol]
    response = httpx.post(f"{faulty_proxy.front_url}{prefix}/nonsense", json={}, timeout=20)
    assert response.status_code == 404
    envelope_message(client_protocol, response.json())


@pytest.mark.parametrize("client_protocol", list(ENDPOINTS))
def test_oversized_body_is_refused_with_413(faulty_proxy, client_protocol):
    path, base = ENDPOINTS[client_protocol]
    body = {**base, "messages": [{"role": "user", "content": "x" * 30000}]}
    response = httpx.post(faulty_proxy.front_url + path, json=body, timeout=20)
    assert response.status_code == 413
    _, message = envelope_message(client_protocol, response.json())
    assert "exceeds the limit of 20000 bytes" in message


# -- routing and upstream faults, read by the SDKs --------------------------------------------------


@pytest.mark.parametrize("client_protocol", list(SDK_ERRORS))
def test_unconfigured_backend_is_not_found(faulty_proxy, client_protocol):
    with pytest.raises(SDK_ERRORS[client_protocol]) as caught:
        ask(client_protocol, faulty_proxy, "openrouter:some/model")
    status, message = status_and_message(caught.value)
    assert status == 404
    assert "no backend of type 'openrouter' is configured" in message


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("client_protocol", list(SDK_ERRORS))
def test_refused_connection_is_a_502_saying_so(faulty_proxy, client_protocol, stream):
    with pytest.raises(SDK_ERRORS[client_protocol]) as caught:
        ask(client_protocol, faulty_proxy, "dead:model", stream=stream)
    status, message = status_and_message(caught.value)
    assert status == 502
    assert "cannot connect to upstream 127.0.0.1" in message


@pytest.mark.parametrize("client_protocol", list(SDK_ERRORS))
def test_upstream_that_never_answers_times_out(faulty_proxy, client_protocol):
    started = time.monotonic()
    with pytest.raises(SDK_ERRORS[client_protocol]) as caught:
        ask(client_protocol, faulty_proxy, "openai.slow:hang")
    status, message = status_and_message(caught.value)
    assert status == 504
    assert "did not answer within 2.5 s" in message
    assert time.monotonic() - started < 10


# (client, backend, provider status, status the client sees, words of the provider's message)
UPSTREAM_ERRORS = [
    ("openai", "openai", 401, 401, "fake openai: authentication failed"),
    ("openai", "anthropic", 529, 503, "fake anthropic: overloaded"),
    ("openai", "gemini", 429, 429, "fake gemini: rate limited"),
    ("anthropic", "openai", 429, 429, "fake openai: rate limited"),
    ("anthropic", "anthropic", 529, 529, "fake anthropic: overloaded"),
    ("anthropic", "gemini", 500, 500, "fake gemini: internal error"),
    ("gemini", "openai", 404, 404, "fake openai: model not found"),
    ("gemini", "anthropic", 401, 401, "fake anthropic: authentication failed"),
    ("gemini", "gemini", 503, 503, "fake gemini: service unavailable"),
    ("openai", "anthropic", 500, 500, "fake anthropic: internal error"),
    ("anthropic", "openai", 404, 404, "fake openai: model not found"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("client_protocol, backend, provider_status, status, message", UPSTREAM_ERRORS)
def test_upstream_error_keeps_status_and_message(
    faulty_proxy, client_protocol, backend, provider_status, status, message, stream
):
    with pytest.raises(SDK_ERRORS[client_protocol]) as caught:
        ask(client_protocol, faulty_proxy, f"{backend}:fail-{provider_status}", stream=stream)
    got_status, got_message = status_and_message(caught.value)
    assert (got_status, message in got_message) == (status, True), got_message


MIDSTREAM_ERRORS = {
    "openai": openai.APIError,
    "anthropic": anthropic.APIError,
    "gemini": genai_errors.APIError,
}


@pytest.mark.parametrize("model", ["fail-midstream", "drop-midstream"])
@pytest.mark.parametrize("backend", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("client_protocol", list(MIDSTREAM_ERRORS))
def test_failure_mid_stream_ends_with_the_clients_error_event(faulty_proxy, client_protocol, backend, model):
    started = time.monotonic()
    with pytest.raises(MIDSTREAM_ERRORS[client_protocol]):
        ask(client_protocol, faulty_proxy, f"{backend}:{model}", stream=True)
    assert time.monotonic() - started < 10


def test_no_traceback_or_key_ever_reaches_the_log(faulty_proxy):
    log = faulty_proxy.log
    at = log.find("Traceback")
    assert at < 0, log[max(0, at - 2000) : at + 3000]
    for key in ("sk-fake-openai-0001", "sk-ant-fake-0001", "AIza-fake-gemini-0001"):
        assert key not in faulty_proxy.log


# -- error parity: every surface, its own envelope, the same canonical detail ----------------------

SURFACES = {
    "chat": ("openai", "/v1/chat/completions", {"model": "anthropic:x"}),
    "responses": ("openai", "/v1/responses", {"model": "anthropic:x"}),
    "anthropic": ("anthropic", "/anthropic/v1/messages", {"model": "openai:x", "max_tokens": 5}),
    "gemini": ("gemini", "/v1beta/models/openai:x:generateContent", {}),
}
BAD_INPUTS = {
    "malformed JSON": (b'{"model": ', 400, "invalid_request"),
    "unknown backend": ({"model": "openrouter:x"}, 404, "not_found"),
    "refused connection": ({"model": "dead:x"}, 502, "upstream_unreachable"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize("surface", list(SURFACES))
def test_every_surface_carries_the_same_canonical_detail(faulty_proxy, surface, case):
    protocol, path, base = SURFACES[surface]
    body, status, code = BAD_INPUTS[case]
    if isinstance(body, dict):
        if protocol == "gemini":
            path = path.replace("openai:x", body["model"])
            body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
        else:
            messages = (
                {"input": "Hi"}
                if surface == "responses"
                else {"messages": [{"role": "user", "content": "Hi"}]}
            )
            body = {**base, **messages, **body}
        response = httpx.post(faulty_proxy.front_url + path, json=body, timeout=20)
    else:
        response = httpx.post(faulty_proxy.front_url + path, content=body, timeout=20)
    assert response.status_code == status
    payload = response.json()
    envelope_message(protocol, payload)
    retryable = status >= 500
    assert payload["llm_error"] == {"code": code, "retryable": retryable}
    assert response.headers["x-llm-error-code"] == code
    assert response.headers["x-should-retry"] == ("true" if retryable else "false")
