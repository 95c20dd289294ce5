"""In-process tests of per-key model rights and usage limits: the windows and their Retry-After
arithmetic at minute, UTC day and UTC month boundaries (a test clock, no sleeping), the 403 and 429
answers in the client's envelope, failover candidates a key may not use, loading from the usage
table, and the key name in usage rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from addons import exchange
from addons.frontdoor import FrontDoor
from addons.limits import KeyLimits
from addons.listeners import Listeners
from addons.router import RouteRequests
from addons.settings import Settings
from addons.usage import SCHEMA, client_of
from backends.access import Limits
from backends.limits import Counters, seconds_to_next_day, seconds_to_next_month
from backends.store import ensure_schema

CONFIG = """
backends:
  openai: {type: openai, base_url: "http://127.0.0.1:9/v1", api_keys: ["sk-fake-limits-openai"]}
  anthropic: {type: anthropic, base_url: "http://127.0.0.1:9", api_keys: ["sk-ant-fake-limits"]}
default_backend: openai
failover:
  fallbacks:
    "openai:gpt-*": ["anthropic:claude-fallback"]
costs:
  "gpt-4o": {input: 1000000, output: 1000000}
access:
  mode: multi-user
  keys:
    - {name: alice, key: "alice-proxy-key-1", models: ["anthropic:*", "openai:gpt-4o*"],
       limits: {requests_per_minute: 2}}
    - {name: claude-only, key: "claude-proxy-key-1", models: ["anthropic:*"]}
    - {name: bob, key: "bob-proxy-key-1", limits: {tokens_per_minute: 100, cost_per_day: 5}}
    - {name: ops, key: "ops-proxy-key-1", admin: true}
  default_limits: {tokens_per_day: 1000}
"""
FRONT_DOOR = ProxyMode.parse("reverse:http://127.0.0.1:9@127.0.0.1:8000")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, start: str) -> None:
        self.now = at(start)

    def __call__(self) -> float:
        return self.now


@dataclass
class Chain:
    settings: Settings
    limits: KeyLimits

    def send(self, key: str, body: dict, path: str = "/v1/chat/completions") -> http.HTTPFlow:
        headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        flow = tflow.tflow(
            req=http.Request.make("POST", f"http://127.0.0.1:8000{path}", json.dumps(body), headers)
        )
        flow.client_conn.proxy_mode = FRONT_DOOR
        flow.client_conn.sockname = ("127.0.0.1", 8000)
        proxy_key = next(k for k in self.settings.config.access.keys if k.key == key)
        FrontDoor(self.settings).request(flow)
        ex = exchange.get(flow)
        assert ex is not None
        ex.key = proxy_key  # what authentication (addons/access.py) leaves for a valid key
        for addon in (RouteRequests(self.settings), self.limits):
            addon.request(flow)
        return flow


@pytest.fixture
def clock() -> Clock:
    return Clock("2026-03-10T12:00:00")


@pytest.fixture
def chain(tmp_path: Path, clock: Clock) -> Iterator[Chain]:
    config = tmp_path / "llm.yaml"
    config.write_text(CONFIG)
    settings = Settings()
    made = Chain(settings, KeyLimits(settings, Counters(clock)))
    with taddons.context(settings, Listeners(), made.limits) as tctx:
        tctx.configure(settings, confdir=str(tmp_path / "confdir"), llm_config=str(config))
        tctx.configure(made.limits)
        yield made


def chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def error_of(flow: http.HTTPFlow) -> dict:
    assert flow.response is not None
    return json.loads(flow.response.content)


# -- the windows ------------------------------------------------------------------------------------


def test_requests_per_minute_free_up_when_the_oldest_request_is_a_minute_old():
    clock = Clock("2026-03-10T12:00:00")
    counters, limits = Counters(clock), Limits(requests_per_minute=2)
    assert counters.admit("k", limits) is None
    clock.now += 20
    assert counters.admit("k", limits) is None
    clock.now += 10
    refused = counters.admit("k", limits)
    assert refused is not None and refused.limit == "requests_per_minute" and refused.value == 2
    assert refused.retry_after == pytest.approx(30)  # the first request leaves the window at +60 s
    clock.now += 30
    assert counters.admit("k", limits) is None


def test_a_refused_request_does_not_count_against_the_minute():
    clock = Clock("2026-03-10T12:00:00")
    counters, limits = Counters(clock), Limits(requests_per_minute=1)
    counters.admit("k", limits)
    for _ in range(5):
        assert counters.admit("k", limits) is not None
    assert counters.use("k")["requests_per_minute"] == 1


def test_tokens_per_minute_free_up_when_enough_tokens_leave_the_window():
    clock = Clock("2026-03-10T12:00:00")
    counters, limits = Counters(clock), Limits(tokens_per_minute=100)
    counters.record("k", 60)
    clock.now += 15
    counters.record("k", 50)
    refused = counters.refusal("k", limits)
    assert refused is not None and refused.used == 110
    assert refused.retry_after == pytest.approx(45)  # the 60 tokens leave at +60 s, 50 < 100
    clock.now += 45
    assert counters.refusal("k", limits) is None


@pytest.mark.parametrize(
    ("now", "seconds"),
    [
        ("2026-03-10T23:59:30", 30),
        ("2026-03-10T00:00:00", 86_400),
        ("2026-12-31T23:00:00", 3_600),
    ],
)
def test_the_day_frees_up_at_the_next_utc_midnight(now, seconds):
    assert seconds_to_next_day(at(now)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("now", "seconds"),
    [
        ("2026-12-31T23:00:00", 3_600),  # the year turns
        ("2028-02-28T00:00:00", 2 * 86_400),  # a leap year's February
        ("2026-02-28T12:00:00", 12 * 3_600),
        ("2026-03-01T00:00:00", 31 * 86_400),
    ],
)
def test_the_month_frees_up_on_the_first_of_the_next_utc_month(now, seconds):
    assert seconds_to_next_month(at(now)) == pytest.approx(seconds)


def test_tokens_per_day_are_refused_until_midnight_utc_then_free():
    clock = Clock("2026-03-10T23:59:00")
    counters, limits = Counters(clock), Limits(tokens_per_day=1000)
    counters.record("k", 1000)
    refused = counters.refusal("k", limits)
    assert refused is not None and refused.limit == "tokens_per_day"
    assert refused.retry_after == pytest.approx(60)
    clock.now += 60
    assert counters.refusal("k", limits) is None
    assert counters.use("k")["tokens_per_day"] == 0


def test_cost_per_month_counts_the_whole_month_and_frees_on_the_first():
    clock = Clock("2026-03-01T00:00:00")
    counters, limits = Counters(clock), Limits(cost_per_month=10.0)
    counters.record("k", 1, 6.0)
    clock.now = at("2026-03-20T00:00:00")
    counters.record("k", 1, 4.0)
    refused = counters.refusal("k", limits)
    assert refused is not None and refused.limit == "cost_per_month" and refused.used == pytest.approx(10.0)
    assert refused.retry_after == pytest.approx(12 * 86_400)
    assert "cost_per_month: 10" in refused.message("k")
    clock.now = at("2026-04-01T00:00:00")
    assert counters.refusal("k", limits) is None


def test_a_call_from_an_earlier_day_loaded_at_start_counts_only_in_its_month():
    clock = Clock("2026-03-10T12:00:00")
    counters = Counters(clock)
    counters.record("k", 500, 3.0, at=at("2026-03-09T12:00:00"))
    counters.record("k", 7, 1.0, at=at("2026-02-27T12:00:00"))
    assert counters.use("k") == {
        "requests_per_minute": 0,
        "tokens_per_minute": 0,
        "tokens_per_day": 0,
        "cost_per_day": 0.0,
        "cost_per_month": 3.0,
    }


# -- model rights -----------------------------------------------------------------------------------


def test_a_key_restricted_to_some_models_is_refused_others_with_403_naming_the_model(chain):
    flow = chain.send("claude-proxy-key-1", chat("o3-mini"))  # no fallback: openai only
    assert flow.response is not None and flow.response.status_code == 403
    body = error_of(flow)
    assert body["llm_error"] == {"code": "forbidden", "retryable": False}
    assert "openai:o3-mini" in body["error"]["message"] and "claude-proxy-key-1" not in flow.response.text


def test_a_key_allowed_the_model_goes_through_untouched(chain):
    flow = chain.send("alice-proxy-key-1", chat("gpt-4o-mini"))
    ex = exchange.get(flow)
    assert flow.response is None and ex is not None and ex.target is not None
    assert (ex.target.instance, ex.target.model) == ("openai", "gpt-4o-mini")


def test_failover_candidates_the_key_may_not_use_are_dropped(chain):
    alice = chain.send("alice-proxy-key-1", chat("gpt-4o"))
    ex = exchange.get(alice)
    assert ex is not None
    assert [(t.instance, t.model) for t in ex.candidates] == [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-fallback"),
    ]
    # claude-only may not use openai: the fallback to anthropic becomes its first and only target.
    flow = chain.send("claude-proxy-key-1", chat("gpt-4o-mini"))
    ex = exchange.get(flow)
    assert flow.response is None and ex is not None and ex.target is not None
    assert [(t.instance, t.model) for t in ex.candidates] == [("anthropic", "claude-fallback")]
    assert ex.target.instance == "anthropic"


def test_a_forbidden_model_is_refused_in_the_anthropic_envelope_on_the_messages_path(chain):
    body = {"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    flow = chain.send("claude-proxy-key-1", {**body, "model": "openai:o3"}, path="/v1/messages")
    assert flow.response is not None and flow.response.status_code == 403
    envelope = error_of(flow)
    assert envelope["type"] == "error" and envelope["error"]["type"] == "permission_error"


# -- limits through the addon -----------------------------------------------------------------------


def test_the_limit_reached_is_a_429_with_retry_after_and_frees_when_the_clock_moves(chain, clock):
    for _ in range(2):
        assert chain.send("alice-proxy-key-1", chat("gpt-4o")).response is None
    clock.now += 10
    flow = chain.send("alice-proxy-key-1", chat("gpt-4o"))
    assert flow.response is not None and flow.response.status_code == 429
    assert flow.response.headers["retry-after"] == "50"
    assert flow.response.headers["x-should-retry"] == "false"
    body = error_of(flow)
    assert body["llm_error"]["code"] == "limit_reached"
    assert "requests_per_minute: 2" in body["error"]["message"]
    ex = exchange.get(flow)
    assert ex is not None and ex.target is None, "a refused call keeps no target for the answer stages"
    clock.now += 50
    assert chain.send("alice-proxy-key-1", chat("gpt-4o")).response is None


def test_a_key_without_limits_of_its_own_gets_the_default_limits(chain):
    chain.limits.counters.record("ops", 1000)
    flow = chain.send("ops-proxy-key-1", chat("gpt-4o"))
    assert flow.response is not None and flow.response.status_code == 429
    assert "tokens_per_day: 1000" in error_of(flow)["error"]["message"]


def test_use_and_diagnostics_show_keys_near_a_limit_by_name_never_by_secret(chain):
    chain.limits.counters.record("bob", 90)
    use = {entry["key"]: entry for entry in chain.limits.use()}
    assert use["bob"]["use"]["tokens_per_minute"] == 90
    assert use["bob"]["limits"] == {"tokens_per_minute": 100, "cost_per_day": 5.0}
    assert [entry["key"] for entry in chain.limits.use("bob")] == ["bob"]
    near = chain.limits.diagnostics()
    assert near == [{"key": "bob", "limits": {"tokens_per_minute": {"used": 90, "limit": 100}}}]
    assert "bob-proxy-key-1" not in json.dumps([use, near])


def test_windows_are_loaded_from_the_usage_table_priced_by_the_costs_table(tmp_path, clock):
    database = tmp_path / "confdir" / "llm-state.sqlite"
    database.parent.mkdir()
    conn = sqlite3.connect(database)
    ensure_schema(conn, "usage", SCHEMA)
    row = (
        "INSERT INTO usage (time, day, client_protocol, backend, model, client, input_tokens, output_tokens,"
    )
    row += " estimated, latency_ms) VALUES (?, ?, 'openai-chat', 'openai', 'gpt-4o', ?, ?, ?, 0, 1000)"
    with conn:
        conn.execute(row, (clock.now - 3600, "2026-03-10", "bob", 2, 3))  # $5 at $1 a token
        conn.execute(row, (clock.now - 3600, "2026-03-10", "stranger", 2, 3))
    conn.close()
    config = tmp_path / "llm.yaml"
    config.write_text(CONFIG)
    settings = Settings()
    limits = KeyLimits(settings, Counters(clock))
    with taddons.context(settings, Listeners(), limits) as tctx:
        tctx.configure(settings, confdir=str(tmp_path / "confdir"), llm_config=str(config))
        tctx.configure(limits)
        assert limits.counters.use("bob")["cost_per_day"] == pytest.approx(5.0)
        refused = limits.counters.refusal("bob", Limits(cost_per_day=5))
        assert refused is not None and refused.retry_after == pytest.approx(12 * 3600)


def test_a_usage_row_names_the_key_and_x_llm_client_cannot_override_it(chain):
    flow = chain.send("alice-proxy-key-1", chat("gpt-4o"))
    ex = exchange.get(flow)
    assert ex is not None
    ex.client_headers = {**ex.client_headers, "x-llm-client": "bob"}
    assert client_of(ex, "127.0.0.1") == "alice"
