"""Usage: the state database, one row per finished call, ``GET /v1/usage`` and ``scripts/usage.py``.

Unit tests drive the pieces with hand-made exchanges; the end-to-end tests send real SDK calls
through `mitmdump -s addons/llm.py` and read the rows back from the database file, the endpoint and
the script.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types
from mitmproxy import ctx
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils
from support.proxy import Proxy

from addons import exchange
from addons.listeners import Listeners
from addons.settings import Settings
from addons.usage import (
    SCHEMA,
    Finished,
    UsageEndpoint,
    UsageLog,
    UsageRow,
    client_identity,
    outcome,
    parse_query,
    report,
    usage_row,
)
from backends.config import parse_config
from backends.routing import Router
from backends.store import Worker, database_path, ensure_schema, open_database
from scripts import usage as usage_script
from translators import openai_chat, tokens
from translators.canonical import Usage
from translators.errors import ProxyError

CLIENT_KEY = "client-key-that-must-not-be-stored"
KEY_ID = "key:" + hashlib.sha256(CLIENT_KEY.encode()).hexdigest()[:10]
COSTS = {
    "gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25},
    "anthropic:*": {"input": 3.0, "output": 15.0},
}
COSTS_YAML = (
    "costs:\n"
    '  "gpt-4o": {input: 2.5, output: 10.0, cached_input: 1.25}\n'
    '  "anthropic:*": {input: 3.0, output: 15.0}\n'
)
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "How warm is Paris today?"}]}
T0 = datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC).timestamp()
FRONT_DOOR = ProxyMode.parse("reverse:http://127.0.0.1:9@127.0.0.1:8000")


def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """The first truthy result of ``check``: rows are written on a thread, a moment after the answer."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {result!r} after {timeout} s")
        time.sleep(0.05)
    return result


# -- the state database --------------------------------------------------------------------------


def test_database_opens_in_wal_mode_creating_its_directory(tmp_path):
    conn = open_database(tmp_path / "a" / "b" / "state.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert (tmp_path / "a" / "b" / "state.sqlite").is_file()


def test_database_path_is_the_configured_one_else_the_confdirs(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert database_path(None, "~/.mitmproxy") == tmp_path / ".mitmproxy" / "llm-state.sqlite"
    assert database_path("~/state/usage.db", "~/.mitmproxy") == tmp_path / "state" / "usage.db"


def test_schema_steps_apply_once_and_later_steps_extend_the_same_file(tmp_path):
    conn = open_database(tmp_path / "s.sqlite")
    steps = ["CREATE TABLE t (a INTEGER)"]
    ensure_schema(conn, "demo", steps)
    ensure_schema(conn, "demo", steps)  # already applied: no "table t already exists"
    ensure_schema(conn, "demo", [*steps, "ALTER TABLE t ADD COLUMN b TEXT"])
    ensure_schema(conn, "other", ["CREATE TABLE u (x INTEGER)"])  # another kind of state, same file
    assert [c[1] for c in conn.execute("PRAGMA table_info(t)")] == ["a", "b"]
    assert dict(conn.execute("SELECT name, version FROM schema_versions")) == {"demo": 2, "other": 1}


def test_a_file_from_a_newer_proxy_is_refused(tmp_path):
    conn = open_database(tmp_path / "s.sqlite")
    ensure_schema(conn, "demo", ["CREATE TABLE t (a)", "CREATE TABLE u (a)"])
    with pytest.raises(sqlite3.DatabaseError, match="newer than this proxy"):
        ensure_schema(conn, "demo", ["CREATE TABLE t (a)"])


def test_worker_reads_see_every_write_queued_before_them(tmp_path):
    conn = open_database(tmp_path / "w.sqlite")
    ensure_schema(conn, "demo", ["CREATE TABLE t (a INTEGER)"])
    worker = Worker(conn, "test-worker")
    for i in range(200):
        worker.submit(lambda c, i=i: c.execute("INSERT INTO t VALUES (?)", (i,)))
    count = worker.call(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0])
    assert count.result(10) == 200
    worker.close()


def test_worker_hands_a_failing_job_its_error_and_carries_on(tmp_path):
    worker = Worker(open_database(tmp_path / "w.sqlite"), "test-worker")
    failed = worker.call(lambda c: c.execute("SELECT * FROM missing"))
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        failed.result(10)
    assert worker.call(lambda c: c.execute("SELECT 1").fetchone()).result(10) == (1,)
    worker.close()


# -- one row per call ----------------------------------------------------------------------------

CONFIG = parse_config(
    {
        "backends": {"openai": {"api_keys": ["sk-test"]}, "anthropic": {"api_keys": ["sk-ant-test"]}},
        "default_backend": "openai",
        "costs": COSTS,
    },
    "test",
)


def make_exchange(selector: str = "gpt-4o", **fields: Any) -> exchange.Exchange:
    ex = exchange.Exchange(
        client_protocol="openai-chat", surface="front_door", body=dict(BODY, model=selector), stream=False,
        selector=selector, started=T0, ended=T0 + 2.5,
        client_headers={"Authorization": f"Bearer {CLIENT_KEY}"},
    )  # fmt: skip
    ex.target = Router(CONFIG).resolve(selector, None, "openai-chat")
    for name, value in fields.items():
        setattr(ex, name, value)
    return ex


def make_flow(ex: exchange.Exchange | None, status: int | None = 200) -> Any:
    flow = tflow.tflow(resp=tutils.tresp(status_code=status) if status else False)
    flow.client_conn.peername = ("10.1.2.3", 50000)
    flow.client_conn.proxy_mode = FRONT_DOOR
    if ex is not None:
        exchange.put(flow, ex)
    return flow


def row_of(ex: exchange.Exchange, status: int | None = 200) -> UsageRow:
    flow = make_flow(ex, status)
    if status is None:
        flow.error = tflow.terr()
    return usage_row(Finished(ex, outcome(flow, ex), "10.1.2.3"))


def test_reported_usage_is_recorded_as_the_provider_reported_it():
    reported = Usage(input_tokens=120, output_tokens=30, cache_read_tokens=100, reasoning_tokens=12)
    row = row_of(make_exchange(usage=reported, output=exchange.Output(text=["Warm."])))
    assert (row.input_tokens, row.output_tokens, row.cache_read_tokens, row.reasoning_tokens) == (
        120,
        30,
        100,
        12,
    )
    assert row.estimated is False
    assert (row.backend, row.model, row.client_protocol, row.status, row.error) == (
        "openai", "gpt-4o", "openai-chat", 200, None,
    )  # fmt: skip


def test_unreported_usage_is_a_tiktoken_estimate_marked_as_such():
    row = row_of(make_exchange(output=exchange.Output(text=["It is ", "18 °C."])))
    request = openai_chat.parse_request(BODY, model="gpt-4o", stream=False)
    assert tokens.is_exact()  # tests set TIKTOKEN_CACHE_DIR: a real tokenizer, not characters/4
    assert row.input_tokens == tokens.count_request(request) > 0
    assert row.output_tokens == tokens.count_text("It is 18 °C.") > 0
    assert row.estimated is True


def test_a_partial_report_keeps_the_reported_counts_and_estimates_the_rest():
    row = row_of(make_exchange(usage=Usage(input_tokens=500), output=exchange.Output(text=["Hello"])))
    assert (row.input_tokens, row.output_tokens, row.estimated) == (500, tokens.count_text("Hello"), True)


def test_a_refused_call_has_unknown_tokens_rather_than_an_estimate():
    row = row_of(make_exchange(), status=429)
    assert (row.input_tokens, row.output_tokens, row.estimated) == (None, None, False)
    assert (row.status, row.error) == (429, "rate_limited")


def test_times_are_milliseconds_from_arrival_and_the_day_is_the_utc_date():
    reported = Usage(input_tokens=1, output_tokens=1)
    row = row_of(make_exchange(usage=reported, stream=True, first_token=T0 + 0.75))
    assert (row.time, row.day) == (T0, "2026-03-01")
    assert row.latency_ms == pytest.approx(2500)
    assert row.ttft_ms == pytest.approx(750)


def test_a_whole_answer_has_no_time_to_first_token():
    row = row_of(make_exchange(usage=Usage(input_tokens=1, output_tokens=1), first_token=T0 + 2.6))
    assert row.ttft_ms is None


def test_an_error_in_the_exchange_gives_its_code_even_on_a_200_stream():
    ex = make_exchange(
        stream=True, output=exchange.Output(text=["Hal"]), error=ProxyError("timeout", "upstream went quiet")
    )
    row = row_of(ex)
    assert (row.status, row.error, row.estimated) == (200, "timeout", True)


def test_a_flow_that_broke_off_is_recorded_as_aborted():
    row = row_of(make_exchange(ended=None, output=exchange.Output(text=["Hal"])), status=None)
    assert (row.status, row.error) == (None, "aborted")
    assert row.latency_ms > 0


def no_request() -> None:
    return None


def test_the_client_names_itself_with_a_header():
    headers = {"X-LLM-Client": " ci-bot ", "authorization": f"Bearer {CLIENT_KEY}"}
    assert client_identity(headers, no_request, "10.1.2.3") == "ci-bot"


def test_the_requests_user_names_the_client_when_no_header_does():
    ex = make_exchange(body=dict(BODY, user="alice@example.com"))  # a passthrough: parsed only now
    assert row_of(ex).client == "alice@example.com"


def test_a_client_key_is_named_by_a_digest_and_never_stored():
    by_bearer = client_identity({"Authorization": f"Bearer {CLIENT_KEY}"}, no_request, "a")
    by_header = client_identity({"x-api-key": CLIENT_KEY}, no_request, "a")
    by_google = client_identity({"x-goog-api-key": CLIENT_KEY}, no_request, "a")
    assert by_bearer == by_header == by_google == KEY_ID
    assert CLIENT_KEY not in by_bearer


def test_the_client_address_names_a_client_without_header_user_or_key():
    assert row_of(make_exchange(client_headers={})).client == "10.1.2.3"


# -- reports -------------------------------------------------------------------------------------


def stored(rows: list[dict[str, Any]]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    ensure_schema(conn, "usage", SCHEMA)
    defaults = {
        "time": T0, "client_protocol": "openai-chat", "status": 200,
        "input_tokens": None, "output_tokens": None,
        "cache_read_tokens": None, "cache_write_tokens": None, "reasoning_tokens": None, "estimated": False,
        "latency_ms": 100.0, "ttft_ms": None, "error": None,
    }  # fmt: skip
    for row in rows:
        values = {**defaults, **row}
        columns = ", ".join(values)
        conn.execute(
            f"INSERT INTO usage ({columns}) VALUES ({', '.join('?' * len(values))})", list(values.values())
        )
    return conn


HISTORY = [
    {"day": "2026-03-01", "backend": "openai", "model": "gpt-4o", "client": "alice",
     "input_tokens": 1_000_000, "output_tokens": 100_000, "cache_read_tokens": 400_000, "ttft_ms": 300.0},
    {"day": "2026-03-01", "backend": "openai", "model": "gpt-4o", "client": "bob",
     "input_tokens": 2000, "output_tokens": 10, "estimated": True, "latency_ms": 300.0},
    {"day": "2026-03-02", "backend": "anthropic", "model": "claude-x", "client": "alice",
     "input_tokens": 1_000_000, "output_tokens": 1_000_000},
    {"day": "2026-03-03", "backend": "gemini", "model": "gemini-2.5-flash", "client": "bob",
     "status": 429, "error": "rate_limited"},
]  # fmt: skip
COST_TABLE = CONFIG.costs


def test_totals_are_grouped_by_day_backend_model_and_client_by_default():
    result = report(stored(HISTORY), COST_TABLE, None, None, ["day", "backend", "model", "client"])
    keys = [(r["day"], r["backend"], r["model"], r["client"]) for r in result["rows"]]
    assert keys == sorted((h["day"], h["backend"], h["model"], h["client"]) for h in HISTORY)
    totals = result["totals"]
    assert (totals["requests"], totals["errors"], totals["estimated_requests"]) == (4, 1, 1)
    assert (totals["input_tokens"], totals["output_tokens"], totals["cache_read_tokens"]) == (
        2_002_000,
        1_100_010,
        400_000,
    )
    assert totals["avg_latency_ms"] == pytest.approx((100 + 300 + 100 + 100) / 4)
    assert totals["avg_ttft_ms"] == 300.0


def test_cost_prices_cache_reads_at_the_cached_rate_by_the_first_matching_glob():
    result = report(stored(HISTORY), COST_TABLE, None, None, ["backend", "client"])
    by_key = {(r["backend"], r["client"]): r["cost_usd"] for r in result["rows"]}
    alice_openai = (600_000 * 2.5 + 400_000 * 1.25 + 100_000 * 10.0) / 1e6  # "gpt-4o" by model name
    assert by_key[("openai", "alice")] == pytest.approx(alice_openai)
    assert by_key[("openai", "bob")] == pytest.approx((2000 * 2.5 + 10 * 10.0) / 1e6)
    assert by_key[("anthropic", "alice")] == pytest.approx(3.0 + 15.0)  # "anthropic:*" by backend:model
    assert by_key[("gemini", "bob")] == 0.0  # no price
    assert result["totals"]["cost_usd"] == pytest.approx(sum(by_key.values()))


def test_a_changed_price_table_reprices_history():
    conn = stored(HISTORY)
    before = report(conn, COST_TABLE, None, None, ["model"])["totals"]["cost_usd"]
    doubled = parse_config({"costs": {"*": {"input": 5.0, "output": 20.0}}}, "test").costs
    after = report(conn, doubled, None, None, ["model"])["totals"]["cost_usd"]
    assert after == pytest.approx((2_002_000 * 5.0 + 1_100_010 * 20.0) / 1e6)
    assert before == pytest.approx(
        (600_000 * 2.5 + 400_000 * 1.25 + 100_000 * 10.0 + 2000 * 2.5 + 100.0) / 1e6 + 18.0
    )


def test_a_group_by_subset_merges_the_other_dimensions():
    result = report(stored(HISTORY), COST_TABLE, None, None, ["client"])
    assert [(r["client"], r["requests"]) for r in result["rows"]] == [("alice", 2), ("bob", 2)]
    assert set(result["rows"][0]) == {"client", *result["totals"]}


def test_since_and_until_are_inclusive_days():
    result = report(stored(HISTORY), COST_TABLE, "2026-03-02", "2026-03-03", ["day"])
    assert [(r["day"], r["requests"]) for r in result["rows"]] == [("2026-03-02", 1), ("2026-03-03", 1)]
    assert (result["since"], result["until"], result["group_by"]) == ("2026-03-02", "2026-03-03", ["day"])


def test_an_empty_history_reports_zero_totals_and_no_averages():
    totals = report(stored([]), COST_TABLE, None, None, ["day"])["totals"]
    assert (totals["requests"], totals["cost_usd"], totals["avg_latency_ms"]) == (0, 0.0, None)


@pytest.mark.parametrize(
    ("since", "until", "group_by", "message"),
    [
        ("yesterday", None, None, "since: expected an ISO date"),
        (None, "2026-13-01", None, "until: expected an ISO date"),
        (None, None, "day,team", "group_by: unknown team"),
    ],
)
def test_bad_report_parameters_say_what_is_expected(since, until, group_by, message):
    with pytest.raises(ValueError, match=message):
        parse_query(since, until, group_by)


def test_group_by_defaults_to_all_four_dimensions():
    assert parse_query(None, None, None) == (None, None, ["day", "backend", "model", "client"])


# -- the addons ----------------------------------------------------------------------------------


@pytest.fixture
def usage_log(tmp_path: Path) -> Iterator[UsageLog]:
    settings = Settings()
    log = UsageLog(settings)
    config = tmp_path / "llm.yaml"
    config.write_text(
        "backends:\n  openai: {api_keys: [sk-test]}\n  anthropic: {api_keys: [sk-ant-test]}\n"
        "default_backend: openai\n" + COSTS_YAML
    )
    with taddons.context(settings, Listeners(), log) as tctx:
        tctx.configure(log, confdir=str(tmp_path / "confdir"), llm_config=str(config))
        yield log
        log.done()


def stored_rows(log: UsageLog) -> list[dict[str, Any]]:
    def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        cursor = conn.execute("SELECT * FROM usage ORDER BY id")
        return [dict(zip([c[0] for c in cursor.description], values)) for values in cursor]

    assert log.worker is not None
    return log.worker.call(read).result(10)


def test_usage_log_writes_to_llm_state_in_the_confdir(usage_log, tmp_path):
    usage_log.response(make_flow(make_exchange(usage=Usage(input_tokens=3, output_tokens=4))))
    rows = stored_rows(usage_log)
    assert usage_log.path == tmp_path / "confdir" / "llm-state.sqlite"
    assert [(r["backend"], r["input_tokens"], r["output_tokens"], r["client"]) for r in rows] == [
        ("openai", 3, 4, KEY_ID)
    ]


def test_usage_log_moves_to_the_configured_database(usage_log, tmp_path):
    config = tmp_path / "other.yaml"
    config.write_text(f"database: {tmp_path / 'elsewhere' / 'state.db'}\n")
    ctx.options.update(llm_config=str(config))  # Settings reloads first, then the usage log follows
    usage_log.response(make_flow(make_exchange(usage=Usage(input_tokens=1, output_tokens=1))))
    assert usage_log.path == tmp_path / "elsewhere" / "state.db"
    assert len(stored_rows(usage_log)) == 1


def test_calls_without_a_target_and_count_calls_are_not_usage(usage_log):
    usage_log.response(make_flow(make_exchange(target=None)))
    usage_log.response(make_flow(make_exchange(operation="count_tokens")))
    usage_log.response(make_flow(None))
    assert stored_rows(usage_log) == []


def test_every_row_reaches_on_row(usage_log):
    seen: list[UsageRow] = []
    usage_log.on_row = seen.append
    usage_log.error(make_flow(make_exchange(output=exchange.Output(text=["x"])), status=None))
    stored_rows(usage_log)
    assert [(r.error, r.estimated) for r in seen] == [("aborted", True)]


def usage_request(path: str, mode: ProxyMode = FRONT_DOOR) -> Any:
    flow = tflow.tflow(req=tutils.treq(method=b"GET", path=path.encode()))
    flow.client_conn.proxy_mode = mode
    return flow


async def test_usage_endpoint_answers_totals_at_the_front_door(usage_log):
    usage_log.response(make_flow(make_exchange(usage=Usage(input_tokens=1_000_000, output_tokens=0))))
    flow = usage_request("/v1/usage?group_by=model")
    await UsageEndpoint(usage_log).request(flow)
    body = json.loads(flow.response.content)
    assert flow.response.status_code == 200
    assert body["rows"] == [{"model": "gpt-4o", **body["totals"]}]
    assert body["totals"]["cost_usd"] == 2.5


async def test_usage_endpoint_refuses_bad_parameters_in_the_openai_envelope(usage_log):
    flow = usage_request("/v1/usage?since=last-week")
    await UsageEndpoint(usage_log).request(flow)
    assert flow.response.status_code == 400
    assert "since: expected an ISO date" in json.loads(flow.response.content)["error"]["message"]


async def test_usage_endpoint_speaks_anthropic_at_the_anthropic_port(usage_log):
    flow = usage_request(
        "/v1/usage?group_by=team", ProxyMode.parse("reverse:http://127.0.0.1:9@127.0.0.1:8001")
    )
    await UsageEndpoint(usage_log).request(flow)
    body = json.loads(flow.response.content)
    assert (flow.response.status_code, body["type"], body["error"]["type"]) == (
        400,
        "error",
        "invalid_request_error",
    )


async def test_usage_endpoint_leaves_https_proxy_traffic_alone(usage_log):
    flow = usage_request("/v1/usage", ProxyMode.parse("regular"))
    await UsageEndpoint(usage_log).request(flow)
    assert flow.response is None


# -- end to end: SDK calls through the real proxy ------------------------------------------------

HELLO = [{"role": "user", "content": "Hi"}]


def openai_client(proxy: Proxy, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=proxy.front_url + "/v1",
        api_key=CLIENT_KEY,
        max_retries=0,
        timeout=20,
        default_headers=headers,
    )


@pytest.fixture(scope="module")
def used_proxy(fakes, tmp_path_factory) -> Iterator[Proxy]:
    """A proxy with a price table that has answered: a reported OpenAI call (named client), an
    unreported OpenAI stream (estimated), an Anthropic and a Gemini call, and a rate-limited one."""
    running = Proxy(tmp_path_factory.mktemp("usage"), fakes.llm_yaml() + COSTS_YAML).start()
    openai_client(running, **{"x-llm-client": "alice"}).chat.completions.create(
        model="gpt-4o", messages=HELLO
    )
    chunks = openai_client(running).chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from openai!"
    anthropic.Anthropic(
        base_url=running.front_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0
    ).messages.create(model="anthropic:claude-sonnet-4-5", max_tokens=64, messages=HELLO)
    options = types.HttpOptions(base_url=running.front_url, timeout=20_000)
    gemini = genai.Client(api_key=CLIENT_KEY, http_options=options)  # kept: a dropped client closes itself
    gemini.models.generate_content(model="gemini:gemini-2.5-flash", contents="Hi")
    with pytest.raises(openai.RateLimitError):
        openai_client(running).chat.completions.create(model="fail-429", messages=HELLO)
    yield running
    running.stop()


def database_rows(proxy: Proxy, count: int = 5) -> list[sqlite3.Row]:
    """The proxy's rows once all ``count`` are written (read straight from the file)."""

    def read() -> list[sqlite3.Row]:
        conn = sqlite3.connect(proxy.confdir / "llm-state.sqlite")
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute("SELECT * FROM usage ORDER BY id").fetchall()
        finally:
            conn.close()
        return rows if len(rows) >= count else []

    return wait_until(read)


def test_each_call_is_one_row_with_backend_model_client_and_tokens(used_proxy):
    rows = database_rows(used_proxy)
    got = [
        (r["client_protocol"], r["backend"], r["model"], r["client"], r["status"], r["error"], r["estimated"])
        for r in rows
    ]
    assert got == [
        ("openai-chat", "openai", "gpt-4o", "alice", 200, None, 0),
        ("openai-chat", "openai", "gpt-4o", KEY_ID, 200, None, 1),
        ("anthropic", "anthropic", "claude-sonnet-4-5", KEY_ID, 200, None, 0),
        ("gemini", "gemini", "gemini-2.5-flash", KEY_ID, 200, None, 0),
        ("openai-chat", "openai", "fail-429", KEY_ID, 429, "rate_limited", 0),
    ]
    reported = [(r["input_tokens"], r["output_tokens"]) for i, r in enumerate(rows) if i != 1]
    assert reported == [(11, 7), (13, 5), (17, 3), (None, None)]  # the fakes' usage; a 429 has none
    assert all(r["day"] == datetime.fromtimestamp(r["time"], UTC).date().isoformat() for r in rows)
    assert all(r["latency_ms"] > 0 for r in rows)
    assert 0 < rows[1]["ttft_ms"] <= rows[1]["latency_ms"]  # the stream
    assert [r["ttft_ms"] for i, r in enumerate(rows) if i != 1] == [None] * 4  # whole answers


def test_an_openai_stream_without_include_usage_is_estimated_locally(used_proxy):
    estimated = database_rows(used_proxy)[1]
    request = openai_chat.parse_request({"model": "gpt-4o", "messages": HELLO}, model="gpt-4o", stream=True)
    assert estimated["input_tokens"] == tokens.count_request(request)
    assert estimated["output_tokens"] == tokens.count_text("Hello from openai!")


def test_the_client_key_never_reaches_the_database(used_proxy):
    database_rows(used_proxy)
    for path in used_proxy.confdir.glob("llm-state.sqlite*"):
        assert CLIENT_KEY.encode() not in path.read_bytes()


def test_v1_usage_totals_match_the_rows_and_the_price_table(used_proxy):
    rows = database_rows(used_proxy)
    response = httpx.get(used_proxy.front_url + "/v1/usage", params={"group_by": "backend"}, timeout=20)
    assert response.status_code == 200
    body = response.json()
    by_backend = {r["backend"]: r for r in body["rows"]}
    openai_rows = [r for r in rows if r["backend"] == "openai"]
    assert (by_backend["openai"]["requests"], by_backend["openai"]["errors"]) == (3, 1)
    assert by_backend["openai"]["estimated_requests"] == 1
    assert by_backend["openai"]["input_tokens"] == sum(r["input_tokens"] or 0 for r in openai_rows)
    openai_cost = sum(
        ((r["input_tokens"] or 0) * 2.5 + (r["output_tokens"] or 0) * 10.0) / 1e6 for r in openai_rows
    )
    assert by_backend["openai"]["cost_usd"] == pytest.approx(openai_cost, abs=1e-6)
    assert by_backend["anthropic"]["cost_usd"] == pytest.approx((13 * 3.0 + 5 * 15.0) / 1e6)
    assert by_backend["gemini"]["cost_usd"] == 0.0
    totals = body["totals"]
    assert (totals["requests"], totals["errors"], totals["estimated_requests"]) == (5, 1, 1)
    assert totals["output_tokens"] == sum(r["output_tokens"] or 0 for r in rows)


def test_v1_usage_groups_by_all_four_dimensions_by_default(used_proxy):
    database_rows(used_proxy)
    body = httpx.get(used_proxy.front_url + "/v1/usage", timeout=20).json()
    assert body["group_by"] == ["day", "backend", "model", "client"]
    assert {(r["backend"], r["model"], r["client"]) for r in body["rows"]} == {
        ("openai", "gpt-4o", "alice"),
        ("openai", "gpt-4o", KEY_ID),
        ("anthropic", "claude-sonnet-4-5", KEY_ID),
        ("gemini", "gemini-2.5-flash", KEY_ID),
        ("openai", "fail-429", KEY_ID),
    }


def test_the_script_prints_the_same_totals_as_an_aligned_table(used_proxy, capsys):
    database_rows(used_proxy)
    database = used_proxy.confdir / "llm-state.sqlite"
    assert (
        usage_script.main(
            ["--db", str(database), "--config", str(used_proxy.config_path), "--group-by", "backend"]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "backend", "requests", "errors", "input", "output", "cache", "read", "reasoning", "estimated",
        "cost", "US$", "latency", "ms", "ttft", "ms",
    ]  # fmt: skip
    assert len({len(line) for line in lines}) <= 2  # every line as wide as the header (text lines trimmed)
    cells = {line.split()[0]: line.split() for line in lines[2:5]}
    expected = httpx.get(used_proxy.front_url + "/v1/usage?group_by=backend", timeout=20).json()
    for row in expected["rows"]:
        assert cells[row["backend"]][1:5] == [
            str(row[k]) for k in ("requests", "errors", "input_tokens", "output_tokens")
        ]
        assert cells[row["backend"]][8] == f"{row['cost_usd']:.4f}"
    assert lines[-1].split()[:2] == ["total", "5"]


def test_the_script_reads_a_running_proxy_too(used_proxy, capsys):
    database_rows(used_proxy)
    assert usage_script.main(["--url", used_proxy.front_url, "--group-by", "client"]) == 0
    clients = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:4]]
    assert sorted(clients) == sorted(["alice", KEY_ID])


def test_the_script_draws_tokens_and_cost_per_day_as_a_png(used_proxy, tmp_path, capsys):
    database_rows(used_proxy)
    picture = tmp_path / "usage.png"
    assert usage_script.main(["--url", used_proxy.front_url, "--plot", str(picture)]) == 0
    data = picture.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    assert f"plot written to {picture}" in capsys.readouterr().out


def test_the_script_prices_from_the_config_without_its_provider_keys(tmp_path, capsys):
    conn = open_database(tmp_path / "state.sqlite")
    ensure_schema(conn, "usage", SCHEMA)
    conn.execute(
        "INSERT INTO usage (time, day, client_protocol, backend, model, client, status, input_tokens, "
        "output_tokens, estimated, latency_ms) "
        "VALUES (?, '2026-03-01', 'anthropic', 'anthropic', 'claude-x', 'alice', 200, 1000000, 0, 0, 10)",
        (T0,),
    )
    conn.commit()
    config = tmp_path / "llm.yaml"
    config.write_text(
        "backends:\n  anthropic: {api_keys: ['${UNSET_KEY_FOR_USAGE_TEST}']}\n"
        f"database: {tmp_path / 'state.sqlite'}\n" + COSTS_YAML
    )
    assert usage_script.main(["--config", str(config), "--group-by", "day"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[-3] == "3.0000"


def test_the_script_says_what_is_wrong_without_a_traceback(tmp_path, capsys):
    assert usage_script.main(["--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no usage database" in capsys.readouterr().err
    assert usage_script.main(["--db", str(tmp_path / "none.sqlite"), "--since", "soon"]) == 2
    assert "since: expected an ISO date" in capsys.readouterr().err
