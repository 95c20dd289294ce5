"""The order of ``addons/llm.py``'s ``addons`` list, where it matters, and why.

mitmproxy runs every hook through the addons in list order (docs/mitm.md §1), so the order
is behaviour: an addon that steps aside when an earlier one answered, reads what an earlier one
wrote, or wraps the stream callable an earlier one set, depends on its place. Each assertion below
names the reason (docs/architecture.md "Why the order matters" explains it at length); the last
tests run the entry script's own list through mitmproxy's hook dispatch, in process, and show the
consequences of that order on one streamed and one whole answer. Nothing is contacted: the
egress relay is never started, and its provider call (``Relay.dispatch``) is stubbed.

The entry script is loaded the way ``mitmdump -s addons/llm.py`` loads it
(``mitmproxy.addons.script.load_script``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.addons import script
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHeadersHook, HttpResponseHook
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow
from support.builders import anthropic_message, anthropic_stream

from addons import exchange
from addons.access import Access
from addons.capture import Capture, ChunkRecorder
from addons.capture_format import capture_files, read_file
from addons.counting import CountTokens
from addons.diagnostics import Diagnostics
from addons.egress import Egress, Outcome, Reply
from addons.fallback import Fallback
from addons.frontdoor import FrontDoor
from addons.limits import KeyLimits
from addons.listeners import Listeners
from addons.metrics import Metrics, MetricsEndpoint
from addons.models import ModelCatalog
from addons.policies import Policies
from addons.responses_extra import ResponsesExtra, StoredResponses
from addons.router import RouteRequests
from addons.sessions import Sessions
from addons.settings import Settings
from addons.translate import StreamTranslator, TranslateResponses
from addons.usage import UsageEndpoint, UsageLog
from addons.verifier import Verifier
from addons.views import KeepStreams, StreamTee
from policies.gate import BLOCKED, ToolCallGate
from policies.loops import LoopStage
from translators import wire

LLM_PY = Path(__file__).resolve().parents[1] / "addons" / "llm.py"
FRONT_DOOR = ProxyMode.parse("reverse:http://127.0.0.1:9@127.0.0.1:8000")

CORE = (
    Settings,
    Listeners,
    Access,
    Diagnostics,
    UsageEndpoint,
    MetricsEndpoint,
    StoredResponses,
    FrontDoor,
    ModelCatalog,
    Sessions,
    RouteRequests,
    KeyLimits,
    Policies,
    Verifier,
    ResponsesExtra,
    CountTokens,
    Egress,
    Fallback,
    TranslateResponses,
    KeepStreams,
    UsageLog,
    Metrics,
    Capture,
)


@pytest.fixture
def entry() -> Iterator[ModuleType]:
    """``addons/llm.py`` as mitmproxy loads an ``-s`` script (its directory put on sys.path first,
    which mitmproxy leaves there: it is taken off again here, so that addons/policies.py cannot
    shadow the policies package for later imports)."""
    saved = list(sys.path)
    module = script.load_script(str(LLM_PY))
    sys.path[:] = saved
    assert module is not None, "addons/llm.py failed to load; see the log"
    yield module


def kinds(entry: ModuleType) -> list[type]:
    return [type(addon) for addon in entry.addons]


def position(entry: ModuleType, kind: type) -> int:
    found = [i for i, k in enumerate(kinds(entry)) if k is kind]
    assert len(found) == 1, f"{kind.__name__} is in addons/llm.py's list {len(found)} times, not once"
    return found[0]


def assert_before(entry: ModuleType, first: type, then: type, why: str) -> None:
    assert position(entry, first) < position(entry, then), (
        f"{first.__name__} must run before {then.__name__}: {why}"
    )


def addon(entry: ModuleType, kind: type) -> Any:
    return entry.addons[position(entry, kind)]


# -- the list --------------------------------------------------------------------------------------


def test_the_entry_script_lists_every_core_addon_exactly_once(entry):
    """A missing addon is a missing pipeline stage; a doubled one runs its hooks twice."""
    assert sorted(k.__name__ for k in kinds(entry)) == sorted(k.__name__ for k in CORE)
    for kind in CORE:
        position(entry, kind)


def test_the_addons_share_one_settings_and_the_policies_fetch_through_the_egress(entry):
    """One configuration for all (a reload reaches every addon at once), and the policies'
    steering retry goes out through the same egress (keys, failover, timeouts) as any request."""
    settings = addon(entry, Settings)
    for kind in (
        Diagnostics,
        FrontDoor,
        ModelCatalog,
        RouteRequests,
        Policies,
        StoredResponses,
        ResponsesExtra,
        CountTokens,
        Egress,
        TranslateResponses,
        UsageLog,
        Capture,
    ):
        assert addon(entry, kind).settings is settings, f"{kind.__name__} reads another Settings"
    assert addon(entry, Policies).fetch == addon(entry, Egress).relay.fetch
    assert addon(entry, StoredResponses).relay is addon(entry, Egress).relay


def test_settings_comes_first(entry):
    """``configure`` runs in list order: Settings.configure loads the new llm_config (and the state
    database path) that Policies.configure and UsageLog.configure then read from it."""
    assert position(entry, Settings) == 0, "Settings must configure before every addon that reads it"


def test_the_local_endpoints_answer_before_the_front_door(entry):
    """The front door answers every path it does not know with a native 404:
    /v1/diagnostics, /v1/usage and /metrics would never reach their endpoints after it."""
    for endpoint in (Diagnostics, UsageEndpoint, MetricsEndpoint):
        assert_before(entry, endpoint, FrontDoor, "it 404s every front-door path that is not an LLM endpoint")


def test_access_checks_the_key_before_any_endpoint_answers(entry):
    """Access refuses a missing or wrong proxy key and keeps the admin endpoints to admins: an
    endpoint or the front door before it would answer unauthenticated clients. Its ``running``
    checks the listeners Listeners.running has just chosen."""
    for endpoint in (Diagnostics, UsageEndpoint, MetricsEndpoint, FrontDoor):
        assert_before(entry, Access, endpoint, "an unauthenticated request would be answered")
    assert_before(entry, Listeners, Access, "the listeners must be chosen before they are checked")


def test_stored_responses_are_answered_after_the_key_check_and_before_the_front_door(entry):
    """``GET /v1/responses/{id}`` and ``/cancel`` carry the id in the path, which the front door's
    table cannot hold: it would answer them with a 404. They reach a provider, so the proxy key
    is checked first."""
    assert_before(entry, Access, StoredResponses, "an unauthenticated client would reach OpenAI")
    assert_before(entry, StoredResponses, FrontDoor, "the front door 404s paths outside its table")


def test_the_other_responses_endpoints_are_prepared_before_the_egress_and_reshaped_before_translation(entry):
    """ResponsesExtra prepares compact and input_tokens calls (a pass-through upstream, or the
    emulated compaction's request) for the egress to send, and in ``response`` turns an emulated
    compaction's answer into OpenAI's compaction object; the translation addon after it renders
    errors in the client's envelope and leaves that body alone."""
    assert_before(entry, FrontDoor, ResponsesExtra, "it reads the Exchange the front door opens")
    assert_before(entry, ResponsesExtra, Egress, "the egress sends the upstream it prepares")
    assert_before(entry, ResponsesExtra, Fallback, "a prepared flow is a handled flow")
    assert_before(entry, ResponsesExtra, TranslateResponses, "the answer is reshaped before translation")


def test_the_front_door_opens_the_exchange_before_anything_reads_it(entry):
    """FrontDoor decodes the body once and opens the Exchange (and leaves the models mark);
    every later request stage starts from ``exchange.get(flow)`` and steps aside without it."""
    for reader in (ModelCatalog, RouteRequests, Policies, CountTokens, Egress):
        assert_before(entry, FrontDoor, reader, f"{reader.__name__} reads the Exchange the front door opens")


def test_sessions_come_after_the_front_door_and_before_routing(entry):
    """Sessions reads the Exchange the front door opens, answers command-only messages itself,
    and hands the session's model and parameters to routing as the Exchange's selector."""
    assert_before(entry, FrontDoor, Sessions, "the session is found from the Exchange")
    assert_before(entry, Sessions, RouteRequests, "routing reads the selector the session sets")
    assert_before(entry, Sessions, Fallback, "a command-only answer is a handled flow")


def test_routing_comes_before_the_policies(entry):
    """Tool rules match the chosen backend:model, and Policies.request steps aside while the
    Exchange has no target."""
    assert_before(entry, RouteRequests, Policies, "policies judge for the backend:model routing chose")


def test_key_limits_judge_the_routed_candidates_before_any_stage_or_provider(entry):
    """Model rights match the resolved backend:model of each candidate, so KeyLimits needs the
    route; a 403 or 429 must be answered before policies, the verifier or the egress act."""
    assert position(entry, KeyLimits) == position(entry, RouteRequests) + 1, "KeyLimits follows routing"
    assert_before(entry, KeyLimits, Policies, "a refused request reaches no policy")


def test_the_request_stages_come_before_the_egress(entry):
    """The egress prepares and renders the first target's request from what the stages left: the
    candidates (routing), a rewritten request and the event stages (policies), a forwarded count
    call's upstream (counting), and sends it."""
    assert_before(entry, RouteRequests, Egress, "the egress sends only flows with candidates")
    assert_before(entry, Policies, Egress, "the egress renders the request after the policies changed it")
    assert_before(entry, CountTokens, Egress, "a forwarded count call leaves the upstream the egress sends")


def test_fallback_follows_every_addon_that_answers_or_redirects(entry):
    """Fallback answers a front-door flow that has neither a response nor the relay header; before
    any of these it would answer flows they were about to handle with an internal error."""
    for kind in (
        Diagnostics,
        UsageEndpoint,
        MetricsEndpoint,
        StoredResponses,
        FrontDoor,
        ModelCatalog,
        RouteRequests,
        Policies,
        ResponsesExtra,
        CountTokens,
        Egress,
    ):
        assert_before(entry, kind, Fallback, "Fallback must only see flows nobody handled")


def test_the_stream_callables_nest_translator_inside_tee_inside_recorder(entry):
    """In responseheaders TranslateResponses *assigns* flow.response.stream (StreamTranslator or
    StreamObserver); KeepStreams wraps whatever is there in StreamTee, which keeps its inner
    callable's *output* (what the client gets); Capture wraps that in ChunkRecorder, which records
    its *input* chunk (as the provider sent it, with its arrival time) before calling the tee.
    Both wrappers step aside while there is no stream callable yet, so before TranslateResponses
    they would wrap nothing, and the assignment would replace anything they had set. With Capture
    last, its recorder is outermost and sees every provider chunk first."""
    assert_before(
        entry, TranslateResponses, KeepStreams, "the tee must wrap the translator to keep client bytes"
    )
    assert_before(
        entry, TranslateResponses, Capture, "the recorder must wrap the translator to record provider bytes"
    )


def test_keep_streams_restores_the_body_before_capture_ends_the_flow(entry):
    """In response KeepStreams sets the kept copy as the streamed response's body (mitmproxy keeps
    none); Capture's end record takes the response body, so it must come after KeepStreams. (The
    one list order also makes Capture's recorder the outer wrapper in responseheaders.)"""
    assert_before(entry, KeepStreams, Capture, "the end record must see the body KeepStreams put back")


def test_the_policies_retry_a_whole_answer_before_it_is_translated(entry):
    """Policies.response replaces a whole answer with a blocked call by the model's second answer;
    the translation must render that one, not the blocked first one."""
    assert_before(
        entry, Policies, TranslateResponses, "the steering retry replaces the answer being translated"
    )


def test_usage_and_metrics_come_after_the_translation(entry):
    """TranslateResponses sets the end time, a whole answer's usage, the decisions of its gate and
    the final error; UsageLog and Metrics record those in the same response hook."""
    for observer in (UsageLog, Metrics):
        assert_before(
            entry, TranslateResponses, observer, f"{observer.__name__} reads what the translation sets"
        )


def test_capture_is_last(entry):
    """In request Capture records the request as it goes upstream (after the stages, the rendering
    and the egress); in responseheaders its recorder must be the outermost wrapper; in response its
    end record takes the body KeepStreams has put back."""
    assert position(entry, Capture) == len(entry.addons) - 1, "Capture must be the last addon"


def test_the_translator_assigns_the_stream_callable_rather_than_wrapping(pipeline):
    """Why TranslateResponses must come first of the three: a callable set before it is dropped."""
    entry, tctx, flow = pipeline
    run_request_stages(entry, flow)
    earlier = ChunkRecorder(None, flow.id, lambda record: None)
    flow.response = stream_head()
    flow.response.stream = earlier
    addon(entry, TranslateResponses).responseheaders(flow)
    assert isinstance(flow.response.stream, StreamTranslator) and flow.response.stream is not earlier


# -- the consequences, through mitmproxy's own hook dispatch ---------------------------------------

CONFIG = """
backends:
  openai: {type: openai, base_url: "http://127.0.0.1:9/v1", api_keys: [fake-pipeline-openai-key]}
  anthropic: {type: anthropic, base_url: "http://127.0.0.1:9", api_keys: [sk-ant-fake-pipeline]}
default_backend: openai
policies:
  retries: 1
  tools:
    - {match: {model: "anthropic:*"}, deny: ["WebFetch"]}
"""
RELAY_PORT = 65000  # nothing listens: the relay is never started and nothing is sent to it


@pytest.fixture
def pipeline(entry, tmp_path: Path) -> Iterator[tuple[ModuleType, taddons.context, http.HTTPFlow]]:
    """The entry script's addons in a mitmproxy context (Proxyserver only for its
    store_streamed_bodies option), configured with a capture directory, and a front-door flow."""
    config = tmp_path / "llm.yaml"
    config.write_text(CONFIG)
    with taddons.context(*entry.addons, Proxyserver()) as tctx:
        tctx.configure(
            addon(entry, Settings),
            confdir=str(tmp_path / "confdir"),
            llm_config=str(config),
            llm_capture=str(tmp_path / "captures"),
        )
        relay = addon(entry, Egress).relay
        relay.port = RELAY_PORT
        relay.ready.set()
        flow = tflow.tflow(req=http.Request.make("POST", "http://127.0.0.1:9/v1/chat/completions", b"{}"))
        flow.client_conn.proxy_mode = FRONT_DOOR
        flow.client_conn.sockname = ("127.0.0.1", 8000)
        set_body(flow, chat_body(stream=True))
        yield entry, tctx, flow
        addon(entry, UsageLog).done()
        addon(entry, Capture).done()


def set_body(flow: http.HTTPFlow, body: dict[str, Any]) -> None:
    flow.request.headers["content-type"] = "application/json"
    flow.request.content = json.dumps(body).encode()


def chat_body(*, stream: bool) -> dict[str, Any]:
    tools = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in ("WebFetch", "Bash")
    ]
    return {
        "model": "anthropic:claude-sonnet-4-5",
        "stream": stream,
        "tools": tools,
        "messages": [{"role": "user", "content": "Reset my repository"}],
    }


def run_request_stages(entry: ModuleType, flow: http.HTTPFlow) -> None:
    """FrontDoor, RouteRequests and Policies only (for a test that looks at one later hook)."""
    for kind in (FrontDoor, RouteRequests, Policies):
        addon(entry, kind).request(flow)


async def dispatch(tctx: taddons.context, hook: Any, caplog: pytest.LogCaptureFixture) -> None:
    """One hook through every addon in chain order, as mitmproxy runs it; an addon's exception
    (which mitmproxy logs and carries on from) fails the test."""
    with caplog.at_level(logging.ERROR):
        await tctx.master.addons.trigger_event(hook)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


def stream_head() -> http.Response:
    """A streamed answer's head as mitmproxy has it in responseheaders: no body read yet."""
    response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    response.raw_content = None
    return response


def captured(directory: Path) -> list[dict[str, Any]]:
    return [record for path in capture_files(directory) for record in read_file(path)[0]]


def usage_rows(log: UsageLog) -> list[dict[str, Any]]:
    def read(conn):
        cursor = conn.execute("SELECT input_tokens, output_tokens, estimated, status FROM usage ORDER BY id")
        return [dict(zip([c[0] for c in cursor.description], row)) for row in cursor]

    assert log.worker is not None
    return log.worker.call(read).result(10)


async def stream_through_the_entry_order(
    pipeline: tuple[ModuleType, taddons.context, http.HTTPFlow], caplog: pytest.LogCaptureFixture
) -> tuple[bytes, bytes, ChunkRecorder]:
    """A streamed chat request to Anthropic offering Bash, through request, responseheaders, every
    chunk of a blocked call and response. Returns (provider bytes, client bytes, the outer callable)."""
    entry, tctx, flow = pipeline
    await dispatch(tctx, HttpRequestHook(flow), caplog)
    flow.response = stream_head()
    await dispatch(tctx, HttpResponseHeadersHook(flow), caplog)
    outer = flow.response.stream
    provider = anthropic_stream("git reset --hard", text=None, usage=(21, 8))
    chunks = [provider[i : i + 50] for i in range(0, len(provider), 50)]
    client = b"".join(piece for chunk in [*chunks, b""] for piece in outer(chunk))
    await dispatch(tctx, HttpResponseHook(flow), caplog)
    return provider, client, outer


async def test_in_entry_order_a_stream_request_is_checked_then_rendered_then_redirected(pipeline, caplog):
    entry, tctx, flow = pipeline
    await dispatch(tctx, HttpRequestHook(flow), caplog)
    ex = exchange.get(flow)
    assert ex is not None and flow.response is None, "Fallback stepped aside: the egress redirected the flow"
    assert flow.request.url == f"http://127.0.0.1:{RELAY_PORT}/v1/messages"
    assert flow.request.content == b""  # the relay sends the prepared body itself
    assert [t["name"] for t in json.loads(ex.upstream.body)["tools"]] == ["Bash"], (
        "the tool rule for anthropic:* (routing before policies) removed WebFetch before the egress rendered"
    )
    assert [type(s) for s in ex.event_stages] == [ToolCallGate, LoopStage]  # loop detection is on by default
    assert ex.event_stages[0].context.model == "anthropic:claude-sonnet-4-5"


async def test_in_entry_order_the_recorder_sees_provider_bytes_and_the_tee_keeps_client_bytes(
    pipeline, tmp_path, caplog
):
    entry, tctx, flow = pipeline
    provider, client, outer = await stream_through_the_entry_order(pipeline, caplog)
    assert isinstance(outer, ChunkRecorder), "Capture's recorder is the outermost callable"
    assert isinstance(outer.inner, StreamTee), "KeepStreams' tee is next"
    assert isinstance(outer.inner.inner, StreamTranslator), "the translator is innermost"
    assert BLOCKED.encode() in client and b"tool_calls" not in client, "the client got the gate's text"
    assert outer.inner.seen == len(client), "the tee counted the bytes the client received"
    addon(entry, Capture).done()
    records = captured(tmp_path / "captures")
    assert [r["kind"] for r in records if r["kind"] != "chunk"] == ["request", "response", "end"]
    [request] = [r for r in records if r["kind"] == "request"]
    assert request["upstream"]["body"] == flow.request.content, (
        "Capture recorded the request as sent upstream"
    )
    chunks = b"".join(r["data"] for r in records if r["kind"] == "chunk")
    assert chunks == provider, "the recorder saw the provider's bytes, before the translation"
    [end] = [r for r in records if r["kind"] == "end"]
    assert [d["action"] for d in end["decisions"]] == ["block"]
    assert usage_rows(addon(entry, UsageLog)) == [
        {"input_tokens": 21, "output_tokens": 8, "estimated": 0, "status": 200}
    ], "UsageLog recorded the usage the translation read from the stream"


async def test_in_entry_order_keep_streams_puts_the_client_bytes_back_before_capture_ends_the_flow(
    pipeline, tmp_path, caplog
):
    """KeepStreams (before Capture) sets the kept copy as the response body in ``response``, so
    that mitmweb shows it even with the capture on; the capture's end record (after it) keeps no
    ``client_body`` for a stream, whose bytes are its chunk records."""
    entry, tctx, flow = pipeline
    provider, client, outer = await stream_through_the_entry_order(pipeline, caplog)
    assert flow.response.raw_content == client, (
        "KeepStreams did not put the kept stream back as the body: with the capture on, "
        f"flow.response.stream is a {type(flow.response.stream).__name__} around the StreamTee"
    )
    addon(entry, Capture).done()
    [end] = [r for r in captured(tmp_path / "captures") if r["kind"] == "end"]
    assert end["client_body"] is None, "a stream's end record does not repeat its chunks"


async def test_without_the_capture_keep_streams_puts_the_client_bytes_back(pipeline, caplog):
    """The same stream with ``llm_capture`` off: the tee is outermost and its copy becomes the body."""
    entry, tctx, flow = pipeline
    tctx.configure(addon(entry, Capture), llm_capture="")
    provider, client, outer = await stream_through_the_entry_order(pipeline, caplog)
    assert isinstance(outer, StreamTee)
    assert flow.response.raw_content == client


async def test_in_entry_order_a_blocked_whole_answer_is_retried_then_translated_then_counted(
    pipeline, tmp_path, caplog, monkeypatch
):
    """The model insists: Policies asks again (response, before the translation), the translation
    renders the second answer with its call blocked, and UsageLog and Metrics (after it) count
    that answer's usage and both decisions."""
    entry, tctx, flow = pipeline
    set_body(flow, chat_body(stream=False))
    answers = [
        wire.dumps(anthropic_message("git reset --hard", text=None, usage=(30, 4))),
        wire.dumps(anthropic_message("git reset --hard HEAD", text="Trying again.", usage=(45, 6))),
    ]
    sent: list[bytes] = []

    async def provider(ex: exchange.Exchange) -> Outcome:
        assert ex.upstream is not None and ex.upstream.body is not None
        sent.append(ex.upstream.body)
        return Outcome(reply=Reply(200, {"content-type": "application/json"}, answers[len(sent) - 1]))

    # The provider call itself: both the egress's fetch and the policies' retry (its fetch) end here.
    monkeypatch.setattr(addon(entry, Egress).relay, "dispatch", provider)
    await dispatch(tctx, HttpRequestHook(flow), caplog)
    assert flow.response is not None and len(sent) == 1, (
        "the egress fetched the whole answer in the request hook"
    )
    await dispatch(tctx, HttpResponseHeadersHook(flow), caplog)
    await dispatch(tctx, HttpResponseHook(flow), caplog)

    assert len(sent) == 2 and b"Your previous answer called the Bash tool" in sent[1]
    body = json.loads(flow.response.content)
    assert body["object"] == "chat.completion", "the client got the answer translated to its protocol"
    message = body["choices"][0]["message"]
    assert message["content"].startswith("Trying again.\n\n" + BLOCKED), "the retried answer was translated"
    assert not message.get("tool_calls") and body["choices"][0]["finish_reason"] == "stop"
    ex = exchange.get(flow)
    assert [d.action for d in ex.decisions] == ["retry", "block"]
    metrics = addon(entry, Metrics)
    for action in ("retry", "block"):
        assert metrics.policy_actions.labels("dangerous_commands", action)._value.get() == 1, (
            f"Metrics counted the {action} decision"
        )
    assert (
        metrics.requests.labels("anthropic", "claude-sonnet-4-5", "openai-chat", "200", "")._value.get() == 1
    )
    assert usage_rows(addon(entry, UsageLog)) == [
        {"input_tokens": 45, "output_tokens": 6, "estimated": 0, "status": 200}
    ], "UsageLog recorded the usage of the answer the client got"
    addon(entry, Capture).done()
    [end] = [r for r in captured(tmp_path / "captures") if r["kind"] == "end"]
    assert end["upstream_body"] == answers[1] and end["client_body"] == flow.response.content
    assert [d["action"] for d in end["decisions"]] == ["retry", "block"]
