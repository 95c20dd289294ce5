"""Per-key model rights and usage limits, checked after routing and before anything is sent.

Runs right after ``RouteRequests``: the rights match the resolved ``backend:model`` of every
candidate (after route rules), the way failover patterns name a target (instance:model,
type:model, model). Candidates a key may not use are dropped from the failover order; only when
none is left is the request refused, 403 ``forbidden`` naming the model. A limit reached is 429
``limit_reached`` with ``Retry-After`` at the moment the window frees up. Both answers are in the
client's own envelope.

The windows live in ``backends.limits.Counters`` (in memory, see there why); this addon loads them
from the usage table when the state database is opened (once, at start-up or when the database
changes) and feeds them each usage row as it is written (``count``, on the database's worker).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from mitmproxy import ctx, http

from addons import exchange
from addons.replies import error_response
from addons.settings import Settings
from addons.usage import Totals, UsageRow, cost_usd, price
from backends.access import Limits, ProxyKey
from backends.limits import Counters
from backends.routing import Target
from translators.errors import ProxyError

logger = logging.getLogger(__name__)

CLOCK_OFFSET = "llm_clock_offset"
NEAR = 0.8  # diagnostics list a key whose use of some limit is at least this share of it

MONTH_ROWS = """
SELECT client, time, time + latency_ms / 1000.0, backend, model,
    COALESCE(input_tokens, 0), COALESCE(output_tokens, 0), COALESCE(cache_read_tokens, 0)
FROM usage WHERE day >= :first
"""


def target_names(target: Target) -> tuple[str, ...]:
    return (f"{target.instance}:{target.model}", f"{target.backend.type}:{target.model}", target.model)


def allowed(key: ProxyKey, target: Target) -> bool:
    return any(fnmatchcase(name, glob) for glob in key.models for name in target_names(target))


def row_cost(
    costs: dict, backend: str, model: str, input_tokens: int, output_tokens: int, cached: int
) -> float:
    totals = Totals(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached)
    return cost_usd(price(costs, backend, model), totals)


class KeyLimits:
    """Protects a shared proxy's budget: a key uses only its models and within its limits."""

    def __init__(self, settings: Settings, counters: Counters | None = None) -> None:
        self.settings = settings
        self.offset = 0
        self.counters = counters or Counters(lambda: time.time() + self.offset)
        self._loaded: Path | None = None

    # -- configuration -----------------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option(
            CLOCK_OFFSET,
            int,
            0,
            "Seconds added to the clock of the proxy keys' usage limits (a test aid: moves the "
            "rolling minutes and the UTC days and months without waiting). Default 0.",
        )

    def configure(self, updated: set[str]) -> None:
        if CLOCK_OFFSET in updated:
            self.offset = getattr(ctx.options, CLOCK_OFFSET)
        path = self.settings.database_path
        if path is None or path == self._loaded:
            return
        self._loaded = path
        self.counters.clear()
        try:
            self._load(path)
        except sqlite3.Error as e:  # no usage table yet: nothing used
            logger.debug(f"LLM limits: no usage history loaded from {path}: {e}")

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        names = {k.name for k in self.settings.config.access.keys}
        first = datetime.fromtimestamp(self.counters.clock(), UTC).strftime("%Y-%m-01")
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute(MONTH_ROWS, {"first": first}).fetchall()
        finally:
            conn.close()
        costs = self.settings.config.costs
        for client, started, ended, backend, model, inp, out, cached in sorted(rows, key=lambda r: r[1]):
            if client in names:
                self.counters.admitted(client, started)
                self.counters.record(
                    client, inp + out, row_cost(costs, backend, model, inp, out, cached), ended
                )

    def count(self, row: UsageRow) -> None:
        """A usage row just written (the worker thread): its tokens and cost count from now on."""
        if row.client not in {k.name for k in self.settings.config.access.keys}:
            return
        inp, out = row.input_tokens or 0, row.output_tokens or 0
        cost = row_cost(
            self.settings.config.costs, row.backend, row.model, inp, out, row.cache_read_tokens or 0
        )
        self.counters.record(row.client, inp + out, cost)

    # -- the request -------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or flow.response or ex.operation != "generate" or ex.key is None or ex.target is None:
            return
        error = self._rights(ex) or self._limit(ex.key)
        if error is not None:
            flow.response = error_response(ex.client_protocol, ex.fail(error))
            # No backend was called: without a target the answer stages leave this reply as it is
            # (they would read it as a provider's error) and no usage row counts it.
            ex.target, ex.candidates = None, []

    def _rights(self, ex: exchange.Exchange) -> ProxyError | None:
        assert ex.key is not None and ex.target is not None
        usable = [t for t in ex.candidates if allowed(ex.key, t)]
        if usable:
            ex.candidates, ex.target = usable, usable[0]
            return None
        model = f"{ex.target.instance}:{ex.target.model}"
        return ProxyError(
            "forbidden",
            f"proxy key {ex.key.name!r} may not use model {model!r} "
            f"(allowed: {', '.join(ex.key.models) or 'none'})",
        )

    def _limit(self, key: ProxyKey) -> ProxyError | None:
        refused = self.counters.admit(key.name, self.settings.config.access.limits_of(key))
        if refused is None:
            return None
        return ProxyError(
            "limit_reached", refused.message(key.name), retry_after=math.ceil(refused.retry_after)
        )

    # -- reports -----------------------------------------------------------------------------

    def use(self, name: str | None = None) -> list[dict[str, Any]]:
        """Each key's use against its limits (only ``name``'s when given); never a secret."""
        access = self.settings.config.access
        return [
            {"key": k.name, "use": self.counters.use(k.name), "limits": _set(access.limits_of(k))}
            for k in access.keys
            if name is None or k.name == name
        ]

    def diagnostics(self) -> list[dict[str, Any]]:
        """Keys at or near a limit (at least ``NEAR`` of it used)."""
        near = []
        for entry in self.use():
            close = {
                limit: {"used": entry["use"][limit], "limit": value}
                for limit, value in entry["limits"].items()
                if entry["use"][limit] >= NEAR * value
            }
            if close:
                near.append({"key": entry["key"], "limits": close})
        return near


def _set(limits: Limits) -> dict[str, float]:
    return {name: value for name, value in limits.model_dump().items() if value is not None}
