"""Usage: one row per finished LLM call in the state database, and ``GET /v1/usage`` totals.

Tokens are the provider's counts when it reported them; otherwise a local tiktoken estimate, and
the row says so. Building a row (which may parse the request and run tiktoken) and writing it
happen on the database's worker thread, never on mitmproxy's event loop. Costs are computed when
reporting, from the configuration's price table, so a changed table re-prices history.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase
from functools import cache, partial
from pathlib import Path
from typing import Any

from mitmproxy import http

from addons import access, exchange, listeners
from addons.replies import error_response, json_response
from addons.settings import Settings
from backends.config import ModelCost
from backends.store import Worker, ensure_schema, open_database
from translators import tokens
from translators.canonical import ChatRequest, Usage
from translators.errors import ProxyError, code_for_status

logger = logging.getLogger(__name__)

ABORTED = "aborted"  # error code of a flow that broke off (client gone, connection killed)
PATH = "/v1/usage"
GROUPS = ("day", "backend", "model", "client")
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")

# Append-only (backends.store.ensure_schema).
SCHEMA = [
    """CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,               -- when the request arrived, Unix seconds
        day TEXT NOT NULL,                -- its UTC date, YYYY-MM-DD
        client_protocol TEXT NOT NULL,
        backend TEXT NOT NULL,            -- backend instance
        model TEXT NOT NULL,              -- the provider's model name
        client TEXT NOT NULL,
        status INTEGER,                   -- HTTP status the client got; NULL when the flow broke off
        input_tokens INTEGER,             -- all prompt tokens, cached ones included; NULL: unknown
        output_tokens INTEGER,            -- reasoning included
        cache_read_tokens INTEGER,
        cache_write_tokens INTEGER,
        reasoning_tokens INTEGER,
        estimated INTEGER NOT NULL,       -- 1: some counts are local estimates
        latency_ms REAL NOT NULL,
        ttft_ms REAL,                     -- time to first token of a stream; NULL: no stream or no content
        error TEXT                        -- canonical error code
    )""",
    "CREATE INDEX usage_day ON usage (day)",
]


@dataclass(frozen=True)
class Outcome:
    status: int | None  # what the client got; None when the flow broke off
    error: str | None  # canonical error code
    latency: float  # seconds from the request's arrival to the end of the answer
    ttft: float | None  # seconds to the first content token, streams only


def outcome(flow: http.HTTPFlow, ex: exchange.Exchange) -> Outcome:
    """How a finished flow ended (shared with the metrics)."""
    latency = (ex.ended or time.time()) - ex.started
    # A whole answer is read after it ended: its "first token" says nothing about the model.
    ttft = ex.first_token - ex.started if ex.stream and ex.first_token else None
    if flow.error or flow.response is None:
        return Outcome(None, ex.error.code if ex.error else ABORTED, latency, ttft)
    status = flow.response.status_code
    if ex.error:
        return Outcome(status, ex.error.code, latency, ttft)
    return Outcome(status, code_for_status(status) if status >= 400 else None, latency, ttft)


def side_outcome(side: exchange.Exchange) -> Outcome:
    """How a side call (``Exchange.side_calls``) ended: it has no flow of its own."""
    latency = (side.ended or time.time()) - side.started
    if side.error is not None:
        return Outcome(side.upstream_status, side.error.code, latency, None)
    status = side.upstream_status
    return Outcome(status, code_for_status(status) if status and status >= 400 else None, latency, None)


@dataclass(frozen=True)
class Finished:
    """What the event loop hands the worker: the exchange is no longer written to."""

    exchange: exchange.Exchange
    outcome: Outcome
    address: str


@dataclass(frozen=True)
class UsageRow:
    time: float
    day: str
    client_protocol: str
    backend: str
    model: str
    client: str
    status: int | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    estimated: bool
    latency_ms: float
    ttft_ms: float | None
    error: str | None


COLUMNS = [f.name for f in fields(UsageRow)]
INSERT = f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def canonical_request(ex: exchange.Exchange) -> ChatRequest | None:
    """The request in canonical form, or None when it cannot be read (the call was refused)."""
    try:
        return ex.canonical()
    except (ProxyError, KeyError):  # KeyError: a protocol without a translator
        return None


def measure(
    ex: exchange.Exchange, failed: bool, request: Callable[[], ChatRequest | None]
) -> tuple[Usage, bool]:
    """Token counts and whether any is estimated. A refused call generated nothing to estimate."""
    usage = ex.usage or Usage()
    if usage.input_tokens is not None and usage.output_tokens is not None:
        return usage, False
    if failed and not ex.output:
        return usage, False
    update: dict[str, int] = {}
    if usage.input_tokens is None and (parsed := request()) is not None:
        update["input_tokens"] = tokens.count_request(parsed)
    if usage.output_tokens is None:
        update["output_tokens"] = tokens.count_text(ex.output.generated_text())
    return usage.model_copy(update=update), True


def client_identity(headers: dict[str, str], user: Callable[[], str | None], address: str) -> str:
    """``x-llm-client``, else the request's end user, else a digest of the client's own key
    (never the key), else its address."""
    lower = {name.lower(): value for name, value in headers.items()}
    if named := lower.get("x-llm-client", "").strip():
        return named
    if named := user():
        return named
    for header in CREDENTIAL_HEADERS:
        scheme, _, token = lower.get(header, "").strip().partition(" ")
        secret = token.strip() if scheme.lower() == "bearer" else scheme
        if secret:
            return "key:" + hashlib.sha256(secret.encode()).hexdigest()[:10]
    return address


def client_of(ex: exchange.Exchange, address: str) -> str:
    """A proxy key's name wins: ``x-llm-client`` cannot pass one key's use off as another's."""
    return ex.key.name if ex.key else client_identity(ex.client_headers, ex.client_user, address)


def usage_row(finished: Finished) -> UsageRow:
    ex, result = finished.exchange, finished.outcome
    assert ex.target is not None
    request = cache(partial(canonical_request, ex))  # parsed at most once, only when needed
    usage, estimated = measure(ex, result.error is not None, request)
    return UsageRow(
        time=ex.started,
        day=datetime.fromtimestamp(ex.started, UTC).date().isoformat(),
        client_protocol=ex.client_protocol,
        backend=ex.target.instance,
        model=ex.target.model,
        client=client_of(ex, finished.address),
        status=result.status,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        estimated=estimated,
        latency_ms=result.latency * 1000,
        ttft_ms=None if result.ttft is None else result.ttft * 1000,
        error=result.error,
    )


# -- reports -------------------------------------------------------------------------------------

REPORT = """
SELECT day, backend, model, client, COUNT(*), COUNT(error),
    COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
    COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(reasoning_tokens), 0), SUM(estimated),
    TOTAL(latency_ms), COUNT(latency_ms), TOTAL(ttft_ms), COUNT(ttft_ms)
FROM usage
WHERE (:since IS NULL OR day >= :since) AND (:until IS NULL OR day <= :until)
    AND (:client IS NULL OR client = :client)
GROUP BY day, backend, model, client
"""


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    estimated_requests: int = 0
    cost_usd: float = 0.0
    # Sums and counts behind the averages, not reported as such.
    latency_ms: float = 0.0
    latency_count: int = 0
    ttft_ms: float = 0.0
    ttft_count: int = 0

    def add(self, other: Totals) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, Any]:
        reported = {k: v for k, v in asdict(self).items() if k not in AVERAGED}
        return {
            **reported,
            "cost_usd": round(self.cost_usd, 6),
            "avg_latency_ms": round(self.latency_ms / self.latency_count, 1) if self.latency_count else None,
            "avg_ttft_ms": round(self.ttft_ms / self.ttft_count, 1) if self.ttft_count else None,
        }


AVERAGED = frozenset({"latency_ms", "latency_count", "ttft_ms", "ttft_count"})


def price(costs: dict[str, ModelCost], backend: str, model: str) -> ModelCost | None:
    """The first glob matching the model, or ``backend:model``."""
    for glob, cost in costs.items():
        if fnmatchcase(model, glob) or fnmatchcase(f"{backend}:{model}", glob):
            return cost
    return None


def cost_usd(cost: ModelCost | None, totals: Totals) -> float:
    """US dollars; models without a price cost nothing. Cache reads are part of the input."""
    if cost is None:
        return 0.0
    cached = totals.cache_read_tokens
    cached_price = cost.input if cost.cached_input is None else cost.cached_input
    dollars = (
        (totals.input_tokens - cached) * cost.input
        + cached * cached_price
        + totals.output_tokens * cost.output
    )
    return dollars / 1_000_000


def parse_query(
    since: str | None, until: str | None, group_by: str | None
) -> tuple[str | None, str | None, list[str]]:
    """Validated report parameters; ValueError says which one is wrong and how."""
    for name, value in (("since", since), ("until", until)):
        if value is not None:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{name}: expected an ISO date such as 2026-01-31, got {value!r}") from None
    groups = [g.strip() for g in (group_by or ",".join(GROUPS)).split(",") if g.strip()]
    if unknown := [g for g in groups if g not in GROUPS]:
        raise ValueError(f"group_by: unknown {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    return since, until, list(dict.fromkeys(groups))


def report(
    conn: sqlite3.Connection,
    costs: dict[str, ModelCost],
    since: str | None,
    until: str | None,
    group_by: Sequence[str],
    client: str | None = None,
) -> dict[str, Any]:
    """Totals per group (of ``client``'s rows only, when given); cost is priced per backend and
    model, then summed into the groups."""
    groups: dict[tuple[str, ...], Totals] = {}
    everything = Totals()
    unpriced: set[str] = set()  # backend:model without a price: their cost counts as 0
    for day, backend, model, who, *counts in conn.execute(
        REPORT, {"since": since, "until": until, "client": client}
    ):
        totals = Totals(*counts[:7], 0.0, *counts[7:])  # REPORT's columns in Totals' order, cost aside
        if (cost := price(costs, backend, model)) is None:
            unpriced.add(f"{backend}:{model}")
        totals.cost_usd = cost_usd(cost, totals)
        keys = {"day": day, "backend": backend, "model": model, "client": who}
        groups.setdefault(tuple(keys[g] for g in group_by), Totals()).add(totals)
        everything.add(totals)
    rows = [{**dict(zip(group_by, key)), **totals.as_dict()} for key, totals in sorted(groups.items())]
    return {
        "since": since,
        "until": until,
        "group_by": list(group_by),
        "rows": rows,
        "totals": everything.as_dict(),
        "unpriced": sorted(unpriced),
    }


# -- addons --------------------------------------------------------------------------------------


class UsageLog:
    """Records every finished generation call. Place it after TranslateResponses (which sets the
    usage and the end time); ``on_row`` receives each row on the worker thread (metrics' tokens)."""

    def __init__(self, settings: Settings, on_row: Callable[[UsageRow], None] | None = None) -> None:
        self.settings = settings
        self.on_row = on_row
        self.path: Path | None = None
        self.worker: Worker | None = None

    def configure(self, updated: set[str]) -> None:
        if not updated & {"confdir", "llm_config"}:
            return
        path = self.settings.database_path
        if path is None or path == self.path:
            return
        try:
            conn = open_database(path)
            ensure_schema(conn, "usage", SCHEMA)
        except (OSError, sqlite3.Error) as e:
            # At start-up an error log line stops mitmdump with just this message.
            logger.error(f"LLM usage database {path}: {e}")
            return
        self.done()
        self.path, self.worker = path, Worker(conn, "llm-usage")
        logger.info(f"LLM usage database: {path}")

    def done(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.path, self.worker = None, None

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def _record(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or ex.target is None or ex.operation != "generate" or self.worker is None:
            return
        address = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        self.worker.submit(partial(self._store, Finished(ex, outcome(flow, ex), address)))
        for side in ex.side_calls:  # the verifier's calls: a row each
            if side.target is not None:
                self.worker.submit(partial(self._store, Finished(side, side_outcome(side), address)))

    def _store(self, finished: Finished, conn: sqlite3.Connection) -> None:
        row = usage_row(finished)
        conn.execute(INSERT, [getattr(row, column) for column in COLUMNS])  # asdict: 4x the cost
        if self.on_row is not None:
            self.on_row(row)

    async def report(
        self, since: str | None, until: str | None, group_by: Sequence[str], client: str | None = None
    ) -> dict[str, Any]:
        """Totals read on the worker thread, after every row queued before the call."""
        if self.worker is None:
            raise ProxyError("internal", "the usage database is not open; see the proxy log")
        costs = self.settings.config.costs
        job = partial(report, costs=costs, since=since, until=until, group_by=group_by, client=client)
        try:
            return await asyncio.wrap_future(self.worker.call(job))
        except sqlite3.Error as e:
            raise ProxyError("internal", f"the usage database cannot be read: {e}") from None


class UsageEndpoint:
    """``GET /v1/usage`` at the front door and the Anthropic port. Place it before FrontDoor.

    A non-admin proxy key sees its own rows only; ``keys`` (the limits' report) adds each key's
    use against its limits, for the one key or for all."""

    def __init__(self, usage: UsageLog, keys: Callable[[str | None], Any] | None = None) -> None:
        self.usage = usage
        self.keys = keys

    async def request(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        if flow.response or request.method != "GET" or request.path.partition("?")[0] != PATH:
            return
        where = listeners.surface(flow)
        if where == "proxy":
            return
        protocol = "anthropic" if where == "anthropic_port" else "openai-chat"
        query = request.query
        try:
            since, until, group_by = parse_query(
                query.get("since"), query.get("until"), query.get("group_by")
            )
        except ValueError as e:
            flow.response = error_response(protocol, ProxyError("invalid_request", str(e)))
            return
        key = access.key_of(flow)
        client = key.name if key is not None and not key.admin else None
        try:
            payload = await self.usage.report(since, until, group_by, client)
        except ProxyError as e:
            flow.response = error_response(protocol, e)
            return
        if self.keys is not None:
            payload["keys"] = self.keys(client)
        flow.response = json_response(200, payload)
