"""Prometheus metrics: what each finished call counts, and ``GET /metrics`` as Prometheus reads it.

The exposition is always read back with prometheus-client's own parser, so a format slip fails here
the way it would fail a scraper.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils
from prometheus_client.parser import text_string_to_metric_families
from support.proxy import Proxy

from addons import exchange
from addons.listeners import Listeners
from addons.metrics import Metrics, MetricsEndpoint
from addons.settings import Settings
from addons.usage import UsageRow
from backends.config import parse_config
from backends.routing import Router
from translators import openai_chat, tokens
from translators.errors import ProxyError

T0 = 1_772_409_600.0
CONFIG = parse_config(
    {"backends": {"openai": {"api_keys": ["sk-test"]}}, "default_backend": "openai"}, "test"
)
FRONT_DOOR = ProxyMode.parse("reverse:http://127.0.0.1:9@127.0.0.1:8000")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(exposition: str) -> Samples:
    """Every sample by (name, labels), as a Prometheus server would read the text."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def finished_flow(status: int | None = 200, **fields: Any) -> Any:
    ex = exchange.Exchange(
        client_protocol="openai-chat", surface="front_door", body={}, stream=False, selector="gpt-4o",
        started=T0, ended=T0 + 3.0,
    )  # fmt: skip
    ex.target = Router(CONFIG).resolve("gpt-4o", None, "openai-chat")
    for name, field_value in fields.items():
        setattr(ex, name, field_value)
    flow = tflow.tflow(resp=tutils.tresp(status_code=status) if status else False, err=status is None)
    exchange.put(flow, ex)
    return flow


def exposition(metrics: Metrics) -> Samples:
    return samples(metrics.exposition().get_text())


def test_a_finished_stream_counts_a_request_its_latency_and_its_first_token():
    metrics = Metrics()
    metrics.response(finished_flow(stream=True, first_token=T0 + 0.3))
    found = exposition(metrics)
    labels = {"backend": "openai", "model": "gpt-4o"}
    assert (
        value(found, "llm_requests_total", **labels, client_protocol="openai-chat", status="200", key="") == 1
    )
    assert value(found, "llm_upstream_latency_seconds_count", **labels) == 1
    assert value(found, "llm_upstream_latency_seconds_sum", **labels) == pytest.approx(3.0)
    assert value(found, "llm_upstream_latency_seconds_bucket", **labels, le="2.0") == 0
    assert value(found, "llm_upstream_latency_seconds_bucket", **labels, le="5.0") == 1
    assert value(found, "llm_time_to_first_token_seconds_sum", **labels) == pytest.approx(0.3)
    assert not [k for k in found if k[0] == "llm_errors_total"]


def test_a_whole_answer_observes_no_time_to_first_token():
    metrics = Metrics()
    metrics.response(finished_flow(first_token=T0 + 3.1))
    assert (
        value(exposition(metrics), "llm_time_to_first_token_seconds_count", backend="openai", model="gpt-4o")
        is None
    )


@pytest.mark.parametrize(
    ("status", "fields", "code"),
    [
        (429, {}, "rate_limited"),  # a passthrough error: coded from its status
        (503, {"error": ProxyError("overloaded", "busy")}, "overloaded"),
        (200, {"stream": True, "error": ProxyError("timeout", "upstream went quiet")}, "timeout"),
    ],
)
def test_errors_are_counted_by_canonical_code(status, fields, code):
    metrics = Metrics()
    metrics.response(finished_flow(status, **fields))
    found = exposition(metrics)
    assert value(found, "llm_errors_total", backend="openai", model="gpt-4o", code=code) == 1
    assert (
        value(
            found,
            "llm_requests_total",
            backend="openai",
            model="gpt-4o",
            client_protocol="openai-chat",
            status=str(status),
            key="",
        )
        == 1
    )


def test_a_flow_that_broke_off_counts_as_aborted():
    metrics = Metrics()
    metrics.error(finished_flow(status=None, ended=None))
    found = exposition(metrics)
    labels = {"backend": "openai", "model": "gpt-4o"}
    assert (
        value(found, "llm_requests_total", **labels, client_protocol="openai-chat", status="aborted", key="")
        == 1
    )
    assert value(found, "llm_errors_total", **labels, code="aborted") == 1


def test_flows_without_a_target_and_count_calls_are_not_counted():
    metrics = Metrics()
    metrics.response(finished_flow(target=None))
    metrics.response(finished_flow(operation="count_tokens"))
    metrics.response(tflow.tflow(resp=True))
    assert not [k for k in exposition(metrics) if k[0] == "llm_requests_total"]


def usage_row(**fields: Any) -> UsageRow:
    defaults: dict[str, Any] = {
        "time": T0, "day": "2026-03-02", "client_protocol": "anthropic", "backend": "anthropic",
        "model": "claude-x", "client": "alice", "status": 200, "input_tokens": 120, "output_tokens": 30,
        "cache_read_tokens": None, "cache_write_tokens": None, "reasoning_tokens": None, "estimated": False,
        "latency_ms": 10.0, "ttft_ms": None, "error": None,
    }  # fmt: skip
    return UsageRow(**{**defaults, **fields})


def test_tokens_are_counted_from_usage_rows_by_direction():
    metrics = Metrics()
    metrics.count_tokens(usage_row())
    metrics.count_tokens(usage_row(input_tokens=5, output_tokens=None, estimated=True))
    found = exposition(metrics)
    labels = {"backend": "anthropic", "model": "claude-x"}
    assert value(found, "llm_tokens_total", **labels, direction="input", key="") == 125
    assert value(found, "llm_tokens_total", **labels, direction="output", key="") == 30


KEYED = parse_config(
    {
        "backends": {"openai": {"api_keys": ["sk-test"]}},
        "default_backend": "openai",
        "access": {"mode": "multi-user", "keys": [{"name": "alice", "key": "alice-proxy-key"}]},
    },
    "test",
)


def test_requests_and_tokens_are_labelled_with_the_proxy_keys_name():
    settings = Settings()
    settings.config = KEYED
    metrics = Metrics(settings)
    metrics.response(finished_flow(key=KEYED.access.keys[0]))
    metrics.count_tokens(usage_row(client="alice"))
    metrics.count_tokens(usage_row(client="bob", output_tokens=None))  # not a key: x-llm-client or address
    found = exposition(metrics)
    labels = {"backend": "anthropic", "model": "claude-x"}
    assert value(found, "llm_requests_total", backend="openai", model="gpt-4o", client_protocol="openai-chat",
                 status="200", key="alice") == 1  # fmt: skip
    assert value(found, "llm_tokens_total", **labels, direction="input", key="alice") == 120
    assert value(found, "llm_tokens_total", **labels, direction="input", key="") == 120
    assert "alice-proxy-key" not in metrics.exposition().get_text()


def test_each_instance_counts_in_its_own_registry():
    first, second = Metrics(), Metrics()  # a hot reload builds a new one: no "Duplicated timeseries"
    first.response(finished_flow())
    assert not [k for k in exposition(second) if k[0] == "llm_requests_total"]


def metrics_request(mode: ProxyMode) -> Any:
    flow = tflow.tflow(req=tutils.treq(method=b"GET", path=b"/metrics"))
    flow.client_conn.proxy_mode = mode
    return flow


def test_metrics_are_served_at_the_front_door_in_the_prometheus_text_format():
    metrics = Metrics()
    metrics.response(finished_flow())
    with taddons.context(Listeners()):
        front, proxied = metrics_request(FRONT_DOOR), metrics_request(ProxyMode.parse("regular"))
        MetricsEndpoint(metrics).request(front)
        MetricsEndpoint(metrics).request(proxied)
    assert front.response.status_code == 200
    assert front.response.headers["content-type"].startswith("text/plain; version=")
    assert (
        value(
            samples(front.response.get_text()),
            "llm_upstream_latency_seconds_count",
            backend="openai",
            model="gpt-4o",
        )
        == 1
    )
    assert proxied.response is None  # an intercepted host's /metrics is not ours


# -- end to end ----------------------------------------------------------------------------------

HELLO = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def measured_proxy(fakes, tmp_path_factory) -> Iterator[Proxy]:
    """A proxy that answered two reported calls, an unreported stream and a rate-limited call."""
    running = Proxy(tmp_path_factory.mktemp("metrics"), fakes.llm_yaml()).start()
    client = openai.OpenAI(base_url=running.front_url + "/v1", api_key="unused", max_retries=0, timeout=20)
    client.chat.completions.create(model="gpt-4o", messages=HELLO)
    chunks = client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from openai!"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fail-429", messages=HELLO)
    claude = anthropic.Anthropic(base_url=running.front_url + "/anthropic", api_key="unused", max_retries=0)
    with claude.messages.stream(model="anthropic:claude-sonnet-4-5", max_tokens=64, messages=HELLO) as events:
        assert "".join(events.text_stream) == "Hello from anthropic!"
    yield running
    running.stop()


def scrape(proxy: Proxy) -> Samples:
    response = httpx.get(proxy.front_url + "/metrics", timeout=20)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def scrape_when(proxy: Proxy, name: str, **labels: str) -> Samples:
    """Tokens are counted as each usage row is written, a moment after the answer."""
    deadline = time.monotonic() + 10
    while value(found := scrape(proxy), name, **labels) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_metrics_count_requests_by_backend_model_protocol_and_status(measured_proxy):
    found = scrape(measured_proxy)
    requests = {
        dict(k[1])["model"]: (dict(k[1]), v) for k, v in found.items() if k[0] == "llm_requests_total"
    }
    common = {"key": ""}  # no proxy keys configured
    assert requests == {
        "gpt-4o": ({"backend": "openai", "model": "gpt-4o", "client_protocol": "openai-chat", "status": "200",
                    **common}, 2),
        "fail-429": ({"backend": "openai", "model": "fail-429", "client_protocol": "openai-chat",
                      "status": "429", **common}, 1),
        "claude-sonnet-4-5": ({"backend": "anthropic", "model": "claude-sonnet-4-5",
                               "client_protocol": "anthropic", "status": "200", **common}, 1),
    }  # fmt: skip
    assert value(found, "llm_errors_total", backend="openai", model="fail-429", code="rate_limited") == 1


def test_metrics_time_each_answer_and_each_streams_first_token(measured_proxy):
    found = scrape(measured_proxy)
    gpt, claude = (
        {"backend": "openai", "model": "gpt-4o"},
        {"backend": "anthropic", "model": "claude-sonnet-4-5"},
    )
    assert value(found, "llm_upstream_latency_seconds_count", **gpt) == 2
    assert value(found, "llm_upstream_latency_seconds_bucket", **gpt, le="+Inf") == 2
    assert value(found, "llm_time_to_first_token_seconds_count", **gpt) == 1  # the stream only
    assert value(found, "llm_time_to_first_token_seconds_count", **claude) == 1
    assert (
        0
        < value(found, "llm_time_to_first_token_seconds_sum", **claude)
        <= value(found, "llm_upstream_latency_seconds_sum", **claude)
    )


def test_metrics_count_reported_and_estimated_tokens(measured_proxy):
    found = scrape_when(
        measured_proxy,
        "llm_tokens_total",
        backend="anthropic",
        model="claude-sonnet-4-5",
        direction="output",
        key="",
    )
    gpt = {"backend": "openai", "model": "gpt-4o"}
    # 11 in / 7 out reported by the fake, plus the local estimate of the stream that reported nothing
    request = openai_chat.parse_request({"model": "gpt-4o", "messages": HELLO}, model="gpt-4o", stream=True)
    assert value(found, "llm_tokens_total", **gpt, direction="input", key="") == 11 + tokens.count_request(
        request
    )
    assert value(found, "llm_tokens_total", **gpt, direction="output", key="") == 7 + tokens.count_text(
        "Hello from openai!"
    )
    claude = {"backend": "anthropic", "model": "claude-sonnet-4-5"}
    assert value(found, "llm_tokens_total", **claude, direction="input", key="") == 13
    assert value(found, "llm_tokens_total", **claude, direction="output", key="") == 5
    assert (
        value(found, "llm_tokens_total", backend="openai", model="fail-429", direction="input", key="")
        is None
    )
