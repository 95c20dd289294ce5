"""The Responses endpoints beside generation, in process (addons/responses_extra.py).

The front door, ResponsesExtra, StoredResponses and the translation addon on mitmproxy's test
context, with the relay stood in for: what each endpoint prepares for the egress on an OpenAI
target, how an emulated compaction's request is built for another target and how its answer is
reshaped, the local estimate, and the stored-response endpoints with and without an OpenAI
backend. End to end through a real mitmdump: tests/test_e2e_responses_extra.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import taddons
from support.builders import anthropic_message
from test_pipeline import ANTHROPIC_KEY, CONFIG, OPENAI_KEY, front_door, intercepted

from addons import exchange
from addons.frontdoor import FrontDoor
from addons.listeners import Listeners
from addons.responses_extra import ResponsesExtra, StoredResponses
from addons.settings import Settings
from addons.translate import TranslateResponses
from backends.config import Timeouts
from translators import openai_responses, wire

HISTORY: list[Any] = [
    {"role": "user", "content": "Run echo hi."},
    {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "hi"},
]


@dataclass
class Relay:
    """Stands in for the egress relay: records what it is asked and answers what it is given."""

    answers: list[Any] = field(default_factory=list)
    posted: list[exchange.Exchange] = field(default_factory=list)
    read: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def fetch(self, ex: exchange.Exchange) -> http.Response:
        self.posted.append(ex)
        return self.answers.pop(0)

    async def fetch_json(self, url: str, headers: dict[str, str], timeouts: Timeouts) -> Any:
        self.read.append((url, headers))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class Addons:
    settings: Settings
    relay: Relay
    frontdoor: FrontDoor
    extra: ResponsesExtra
    stored: StoredResponses
    translate: TranslateResponses

    def send(self, flow: http.HTTPFlow) -> exchange.Exchange | None:
        self.frontdoor.request(flow)
        self.extra.request(flow)
        return exchange.get(flow)

    def answer(self, flow: http.HTTPFlow, status: int, body: dict[str, Any]) -> http.Response:
        flow.response = http.Response.make(status, wire.dumps(body), {"content-type": "application/json"})
        for addon in (self.extra, self.translate):
            addon.response(flow)
        return flow.response


def pipeline(tmp_path: Path, config: str) -> Iterator[Addons]:
    path = tmp_path / "llm.yaml"
    path.write_text(config)
    settings = Settings()
    relay = Relay()
    addons = Addons(
        settings,
        relay,
        FrontDoor(settings),
        ResponsesExtra(settings),
        StoredResponses(settings, relay),  # type: ignore[arg-type]
        TranslateResponses(settings),
    )
    with taddons.context(settings, Listeners(), addons.frontdoor, addons.translate) as tctx:
        tctx.configure(settings, confdir=str(tmp_path / "confdir"), llm_config=str(path))
        yield addons


@pytest.fixture
def pipe(tmp_path: Path) -> Iterator[Addons]:
    yield from pipeline(tmp_path, CONFIG)


@pytest.fixture
def no_openai(tmp_path: Path) -> Iterator[Addons]:
    yield from pipeline(
        tmp_path, "".join(line for line in CONFIG.splitlines(True) if "type: openai" not in line)
    )


def compact(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "input": HISTORY, **extra}


# -- compact and input_tokens on an OpenAI target ----------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/responses/compact", "/v1/responses/input_tokens"])
def test_on_an_openai_target_the_clients_body_goes_to_the_same_path_with_the_model_spliced_in(pipe, path):
    flow = front_door(path, compact("openai:gpt-5.5"))

    ex = pipe.send(flow)

    assert ex is not None and flow.response is None and ex.upstream is not None
    assert ex.upstream.url == "http://127.0.0.1:9/v1" + path.removeprefix("/v1")
    assert ex.passthrough and [t.instance for t in ex.candidates] == ["openai"]
    assert json.loads(flow.request.content) == compact("gpt-5.5")
    assert "authorization" not in ex.upstream.headers, "the egress adds the provider key, nothing else"


def test_an_intercepted_compact_without_an_openai_backend_keeps_the_clients_credentials(no_openai):
    flow = intercepted("https://api.openai.com/v1/responses/compact", compact("gpt-5.5"))

    assert no_openai.send(flow) is None and flow.response is None


# -- emulated compaction ----------------------------------------------------------------------------


def test_elsewhere_the_compaction_is_the_flows_own_whole_call_ending_in_the_summary_instruction(pipe):
    flow = front_door("/v1/responses/compact", {**compact("anthropic:claude-x"), "stream": True})

    ex = pipe.send(flow)

    assert ex is not None and flow.response is None and not ex.stream
    assert [t.instance for t in ex.candidates][0] == "anthropic"
    request = ex.canonical()
    assert openai_responses.compacting(request) and ex.rewritten
    assert request.messages[-1].content[0].text == openai_responses.COMPACT_INSTRUCTION  # type: ignore[union-attr]


def test_the_target_models_answer_becomes_openais_compaction_object(pipe):
    flow = front_door("/v1/responses/compact", compact("anthropic:claude-x"))
    ex = pipe.send(flow)
    assert ex is not None
    ex.target = ex.candidates[0]  # the egress committed the answering target

    answer = anthropic_message(None, text="The user ran echo hi.", usage=(30, 6))
    response = pipe.answer(flow, 200, answer)

    body = json.loads(response.content)
    assert body["object"] == "response.compaction"
    *kept, sealed = body["output"]
    assert kept == [
        {
            "type": "message",
            "id": kept[0]["id"],
            "role": "user",
            "content": [{"type": "input_text", "text": "Run echo hi."}],
        }
    ]
    assert openai_responses.unseal(sealed["encrypted_content"]) == "The user ran echo hi."
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (30, 6)
    assert ex.usage is not None and ex.usage.output_tokens == 6


def test_a_provider_error_on_an_emulated_compaction_is_rendered_in_the_openai_envelope(pipe):
    flow = front_door("/v1/responses/compact", compact("anthropic:claude-x"))
    ex = pipe.send(flow)
    assert ex is not None
    ex.target = ex.candidates[0]

    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}}
    response = pipe.answer(flow, 400, error)

    assert response.status_code == 400
    assert json.loads(response.content)["error"]["message"] == "prompt is too long"


def test_an_emulated_compaction_the_canonical_model_refuses_gets_a_native_400(pipe):
    flow = front_door("/v1/responses/compact", compact("anthropic:claude-x", previous_response_id="resp_1"))

    pipe.send(flow)

    assert flow.response is not None and flow.response.status_code == 400
    assert "previous_response_id" in json.loads(flow.response.content)["error"]["message"]


# -- input_tokens elsewhere -------------------------------------------------------------------------


def test_input_tokens_elsewhere_are_a_local_estimate_in_openais_shape(pipe):
    flow = front_door("/v1/responses/input_tokens", compact("gemini:gemini-x"))

    pipe.send(flow)

    assert flow.response is not None and flow.response.status_code == 200
    body = json.loads(flow.response.content)
    assert body["object"] == "response.input_tokens" and body["input_tokens"] > 5
    assert flow.response.headers["x-llm-token-count"].startswith("estimated; ")


# -- stored responses -------------------------------------------------------------------------------


async def test_a_stored_response_is_read_from_the_openai_backend_with_its_key(pipe):
    pipe.relay.answers.append({"id": "resp_1", "object": "response"})
    flow = front_door("/v1/responses/resp_1?include=x", method="GET")

    await pipe.stored.request(flow)

    assert flow.response is not None and json.loads(flow.response.content)["id"] == "resp_1"
    [(url, headers)] = pipe.relay.read
    assert url == "http://127.0.0.1:9/v1/responses/resp_1?include=x"
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "client-own-key" not in json.dumps(headers), "the client's credentials never travel"


async def test_an_unknown_stored_response_is_openais_404(pipe):
    pipe.relay.answers.append(RuntimeError("127.0.0.1:9 answered HTTP 404"))
    flow = front_door("/v1/responses/resp_gone", method="GET")

    await pipe.stored.request(flow)

    assert flow.response is not None and flow.response.status_code == 404
    assert json.loads(flow.response.content)["error"]["code"] == "not_found"


async def test_a_cancel_goes_through_the_relay_as_a_pass_through_call(pipe):
    pipe.relay.answers.append(http.Response.make(200, b'{"id":"resp_1","status":"cancelled"}'))
    flow = front_door("/v1/responses/resp_1/cancel", b"")

    await pipe.stored.request(flow)

    [ex] = pipe.relay.posted
    assert ex.upstream is not None and ex.upstream.url == "http://127.0.0.1:9/v1/responses/resp_1/cancel"
    assert ex.passthrough and ex.upstream.body is None and exchange.get(flow) is ex
    assert flow.response is not None and json.loads(flow.response.content)["status"] == "cancelled"


@pytest.mark.parametrize(
    ("path", "method"), [("/v1/responses/resp_1", "GET"), ("/v1/responses/resp_1/cancel", "POST")]
)
async def test_without_an_openai_backend_stored_responses_get_a_native_400(no_openai, path, method):
    flow = front_door(path, b"", method=method)

    await no_openai.stored.request(flow)

    assert flow.response is not None and flow.response.status_code == 400
    message = json.loads(flow.response.content)["error"]["message"]
    assert "stores no responses" in message and f"{method} {path}" in message
    assert no_openai.relay.read == [] and no_openai.relay.posted == []


@pytest.mark.parametrize(
    ("flow_of", "why"),
    [
        (lambda: front_door("/v1/responses/compact", compact("m")), "the front door's own row"),
        (lambda: front_door("/v1/responses/resp_1", b"", method="POST"), "not a method of that path"),
        (lambda: intercepted("https://example.com/v1/responses/resp_1", method="GET"), "another host"),
    ],
)
async def test_stored_responses_step_aside_for_other_requests(pipe, flow_of, why):
    flow = flow_of()

    await pipe.stored.request(flow)

    assert flow.response is None and pipe.relay.read == [] and pipe.relay.posted == [], why


async def test_an_intercepted_read_without_an_openai_backend_passes_untouched(no_openai):
    flow = intercepted("https://api.openai.com/v1/responses/resp_1", method="GET")

    await no_openai.stored.request(flow)

    assert flow.response is None and flow.request.headers["authorization"] == "Bearer client-own-key"
    assert ANTHROPIC_KEY not in json.dumps(dict(flow.request.headers))
