"""A model a provider refused is skipped for a while, never for ever, and the client is told why.

Once an instance answered 404 "model not found", later requests for that model are not sent there
again until ``failover.unsupported_model_seconds`` have passed; meanwhile every client protocol gets
its own 404 ``not_found`` naming the model and the instance (not a bare 502), other models keep
working, and ``/v1/diagnostics`` shows the mark and when it expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from support.fakes import Fakes
from support.proxy import Proxy

# client protocol -> (path, body) for a model
REQUESTS: dict[str, Callable[[str], tuple[str, dict]]] = {
    "openai-chat": lambda m: (
        "/v1/chat/completions",
        {"model": m, "messages": [{"role": "user", "content": "Hi"}]},
    ),
    "anthropic": lambda m: (
        "/anthropic/v1/messages",
        {"model": m, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]},
    ),
    "gemini": lambda m: (f"/v1beta/models/{m}:generateContent", {"contents": [{"parts": [{"text": "Hi"}]}]}),
}
BAD, GOOD = "openai:fail-404", "openai:gpt-4o"


def ask(proxy: Proxy, protocol: str, model: str) -> httpx.Response:
    path, body = REQUESTS[protocol](model)
    return httpx.post(proxy.front_url + path, json=body, timeout=30)


def refusal_config(fakes: Fakes, seconds: float) -> str:
    return fakes.llm_yaml() + f"failover: {{unsupported_model_seconds: {seconds}}}\n"


@pytest.fixture
def remembering(fakes: Fakes, start_proxy) -> Iterator[Proxy]:
    yield start_proxy(refusal_config(fakes, 3600))


@pytest.mark.parametrize("protocol", list(REQUESTS))
def test_a_refused_model_is_a_native_404_that_names_it_without_calling_the_provider_again(
    remembering: Proxy, fakes: Fakes, protocol: str
):
    first = ask(remembering, protocol, BAD)
    assert first.status_code == 404, first.text
    assert ask(remembering, protocol, GOOD).status_code == 200
    fakes.reset()
    again = ask(remembering, protocol, BAD)
    assert again.status_code == 404, again.text
    assert again.json()["llm_error"]["code"] == "not_found"
    assert "'fail-404'" in again.text and "openai refused it" in again.text
    assert not [r for r in fakes.openai.requests if "fail-404" in r.raw.decode(errors="replace")]


def test_diagnostics_show_the_mark_and_when_it_expires(remembering: Proxy):
    before = time.time()
    assert ask(remembering, "openai-chat", BAD).status_code == 404
    openai = httpx.get(remembering.front_url + "/v1/diagnostics").json()["backends"]["openai"]
    assert openai["unsupported_models"] == ["fail-404"]
    assert before + 3600 - 5 <= openai["unsupported_until"]["fail-404"] <= time.time() + 3600


@pytest.mark.parametrize("protocol", list(REQUESTS))
def test_once_the_mark_expired_the_model_is_tried_again(fakes: Fakes, start_proxy, protocol: str):
    forgetting = start_proxy(refusal_config(fakes, 0))
    assert ask(forgetting, protocol, BAD).status_code == 404
    fakes.reset()
    assert ask(forgetting, protocol, BAD).status_code == 404
    assert [r for r in fakes.openai.requests if "fail-404" in r.raw.decode(errors="replace")]
