"""Usage counters behind the per-key limits of ``access:`` (requests, tokens and cost per window).

Why in memory: the limits are checked before every call, on mitmproxy's event loop, which must
never wait for the disk. So the counters are windows kept in memory, loaded once from the usage
table of the state database (``addons/limits.py`` reads the current month's rows at start-up) and
updated as each usage row is written (from the database's worker thread, hence the lock). The
narrow interface (``admit``, ``admitted``, ``record``, ``refusal``, ``use``) is all the rest of
the suite sees, so a shared store (several proxy processes) can replace this class without
touching its callers.

Windows (the vocabulary of ``Limits``):
- ``requests_per_minute``: requests admitted in the last 60 s, counted when they are admitted
  (a request in flight counts);
- ``tokens_per_minute``: input plus output tokens of calls that ended in the last 60 s;
- ``tokens_per_day`` / ``cost_per_day``: calls that ended on the current UTC calendar day;
- ``cost_per_month``: calls that ended in the current UTC calendar month.
Tokens and cost are known only when a call ends, so they count from then on: a call in flight is
never cut, and a limit is reached when the used amount is at or above it.

The clock is injected (``clock``), so tests move time instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backends.access import Limits

MINUTE = 60.0


@dataclass(frozen=True)
class Refusal:
    """A limit that is reached: which, its value, what is used, and seconds until it frees up."""

    limit: str
    value: float
    used: float
    retry_after: float

    def message(self, name: str) -> str:
        return (
            f"proxy key {name!r} reached its limit {self.limit}: {_number(self.value)} "
            f"(used {_number(self.used)}); try again in {round(self.retry_after)} s"
        )


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def day_of(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).date().isoformat()


def seconds_to_next_day(t: float) -> float:
    now = datetime.fromtimestamp(t, UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + 86_400
    return midnight - t


def seconds_to_next_month(t: float) -> float:
    now = datetime.fromtimestamp(t, UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp() - t


@dataclass
class Counter:
    """One key's windows."""

    requests: deque[float] = field(default_factory=deque)  # admission times, last minute
    tokens: deque[tuple[float, int]] = field(default_factory=deque)  # (end time, tokens), last minute
    day: str = ""
    day_tokens: int = 0
    day_cost: float = 0.0
    month: str = ""
    month_cost: float = 0.0

    def roll(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - MINUTE:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - MINUTE:
            self.tokens.popleft()
        today = day_of(now)
        if self.day != today:
            self.day, self.day_tokens, self.day_cost = today, 0, 0.0
        if self.month != today[:7]:
            self.month, self.month_cost = today[:7], 0.0

    def minute_tokens(self) -> int:
        return sum(n for _, n in self.tokens)

    def tokens_free_after(self, limit: int, now: float) -> float:
        """Seconds until the tokens of the last minute fall below ``limit``."""
        total = self.minute_tokens()
        for ended, n in self.tokens:
            total -= n
            if total < limit:
                return ended + MINUTE - now
        return 0.0

    def refusal(self, limits: Limits, now: float) -> Refusal | None:
        """The first reached limit, in the vocabulary's order."""
        checks = (
            (
                "requests_per_minute",
                limits.requests_per_minute,
                len(self.requests),
                lambda v: self.requests[len(self.requests) - v] + MINUTE - now,
            ),
            (
                "tokens_per_minute",
                limits.tokens_per_minute,
                self.minute_tokens(),
                lambda v: self.tokens_free_after(v, now),
            ),
            ("tokens_per_day", limits.tokens_per_day, self.day_tokens, lambda v: seconds_to_next_day(now)),
            ("cost_per_day", limits.cost_per_day, self.day_cost, lambda v: seconds_to_next_day(now)),
            ("cost_per_month", limits.cost_per_month, self.month_cost, lambda v: seconds_to_next_month(now)),
        )
        for name, value, used, free in checks:
            if value is not None and used >= value:
                return Refusal(name, value, used, max(0.0, free(value)))
        return None

    def use(self) -> dict[str, float]:
        return {
            "requests_per_minute": len(self.requests),
            "tokens_per_minute": self.minute_tokens(),
            "tokens_per_day": self.day_tokens,
            "cost_per_day": round(self.day_cost, 6),
            "cost_per_month": round(self.month_cost, 6),
        }


class Counters:
    """The in-memory windows of every proxy key, by key name."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._keys: dict[str, Counter] = {}
        self._lock = threading.Lock()

    def _counter(self, name: str, now: float) -> Counter:
        counter = self._keys.setdefault(name, Counter())
        counter.roll(now)
        return counter

    def refusal(self, name: str, limits: Limits) -> Refusal | None:
        """The limit ``name`` has reached now, or None."""
        now = self.clock()
        with self._lock:
            return self._counter(name, now).refusal(limits, now)

    def admit(self, name: str, limits: Limits) -> Refusal | None:
        """Check, and when nothing is reached count the request as admitted."""
        now = self.clock()
        with self._lock:
            counter = self._counter(name, now)
            if (refused := counter.refusal(limits, now)) is None:
                counter.requests.append(now)
            return refused

    def admitted(self, name: str, at: float) -> None:
        """A request admitted at ``at`` (loading history): it counts while it is in the minute."""
        now = self.clock()
        with self._lock:
            if at > now - MINUTE:
                self._counter(name, now).requests.append(at)

    def record(self, name: str, tokens: int, cost: float = 0.0, at: float | None = None) -> None:
        """A finished call's tokens and cost; ``at`` (the end, else now) decides its windows."""
        now = self.clock()
        at = now if at is None else at
        with self._lock:
            counter = self._counter(name, now)
            if at > now - MINUTE:
                counter.tokens.append((at, tokens))
            if day_of(at) == counter.day:
                counter.day_tokens += tokens
                counter.day_cost += cost
            if day_of(at)[:7] == counter.month:
                counter.month_cost += cost

    def use(self, name: str) -> dict[str, float]:
        now = self.clock()
        with self._lock:
            return self._counter(name, now).use()

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
