"""Which keys and models of each backend instance can be used now, remembered across restarts.

States per (instance, key): ``active``; ``rate_limited`` until a time (from the provider's hint,
else a back-off that doubles on repeats); ``disabled`` after an authentication failure or too many
consecutive failures, until reactivated. Per (instance, model): unsupported models. Keys are
identified by a hash prefix; no key is ever stored.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.config import Failover

logger = logging.getLogger(__name__)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS key_state (
        instance TEXT NOT NULL, key_id TEXT NOT NULL, state TEXT NOT NULL, until REAL,
        failures INTEGER NOT NULL, strikes INTEGER NOT NULL, reason TEXT, updated REAL NOT NULL,
        PRIMARY KEY (instance, key_id))""",
    """CREATE TABLE IF NOT EXISTS unsupported_model (
        instance TEXT NOT NULL, model TEXT NOT NULL, reason TEXT, updated REAL NOT NULL,
        PRIMARY KEY (instance, model))""",
)


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass
class KeyState:
    state: str = "active"  # active | rate_limited | disabled
    until: float | None = None  # end of a rate-limit cool-down
    failures: int = 0  # consecutive failures
    strikes: int = 0  # consecutive rate limits, for the growing back-off
    reason: str | None = None
    updated: float = 0.0

    def usable(self, now: float) -> bool:
        if self.state == "rate_limited" and self.until is not None and self.until <= now:
            self.state = "active"
        return self.state == "active"


class Availability:
    def __init__(self, failover: Failover, database: Path | None = None) -> None:
        self.failover = failover
        self.keys: dict[tuple[str, str], KeyState] = {}
        self.unsupported: dict[tuple[str, str], tuple[str, float]] = {}  # → (reason, since)
        self._cursor: dict[str, int] = {}
        self._db: sqlite3.Connection | None = None
        self._path = database  # opened on first use: configuring alone touches no file

    def _load(self) -> None:
        if self._path is not None:
            path, self._path = self._path, None
            self._open(path)

    def _open(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=2000")
            for statement in SCHEMA:
                db.execute(statement)
            for row in db.execute(
                "SELECT instance, key_id, state, until, failures, strikes, reason, updated FROM key_state"
            ):
                self.keys[(row[0], row[1])] = KeyState(*row[2:])
            for instance, model, reason, since in db.execute(
                "SELECT instance, model, reason, updated FROM unsupported_model"
            ):
                self.unsupported[(instance, model)] = (reason or "", since or 0.0)
            self._db = db
        except sqlite3.Error as e:
            logger.warning(f"backend availability is not persisted: cannot use {path}: {e}")

    # -- choosing ---------------------------------------------------------------------------------

    def usable_keys(self, instance: str, keys: list[str], policy: str) -> list[str]:
        """The instance's usable keys in the order to try them (``[""]`` for a keyless backend)."""
        if not keys:
            return [""]
        now = time.time()
        usable = [k for k in keys if self._state(instance, k).usable(now)]
        if policy == "round_robin" and usable:
            start = self._cursor.get(instance, 0) % len(usable)
            self._cursor[instance] = start + 1
            usable = usable[start:] + usable[:start]
        return usable

    def ready_at(self, instance: str, keys: list[str]) -> float | None:
        """When the earliest rate-limited key of the instance comes back (None: never by itself)."""
        times = [s.until for k in keys if (s := self._state(instance, k)).state == "rate_limited" and s.until]
        return min(times, default=None)

    def is_unsupported(self, instance: str, model: str) -> bool:
        """Did the instance refuse the model lately? The mark expires after
        ``failover.unsupported_model_seconds``: a model a provider adds later, or a refusal that
        was a provider's mistake, must not be refused for ever."""
        self._load()
        mark = self.unsupported.get((instance, model))
        if mark is None:
            return False
        if time.time() - mark[1] < self.failover.unsupported_model_seconds:
            return True
        del self.unsupported[(instance, model)]
        self._write("DELETE FROM unsupported_model WHERE instance = ? AND model = ?", (instance, model))
        return False

    def refusal(self, instance: str, model: str) -> str:
        """What the instance said when it refused the model ("" when it did not)."""
        return self.unsupported.get((instance, model), ("", 0.0))[0]

    # -- learning ---------------------------------------------------------------------------------

    def succeeded(self, instance: str, key: str) -> None:
        state = self._state(instance, key)
        if state.state != "active" or state.failures or state.strikes:
            self._save(instance, key, KeyState(updated=time.time()))

    def rate_limited(self, instance: str, key: str, retry_after: float | None, reason: str) -> float:
        """Cool the key down; returns the cool-down in seconds."""
        state = self._state(instance, key)
        strikes = state.strikes + 1
        if retry_after is None:
            retry_after = min(self.failover.backoff * 2 ** (strikes - 1), self.failover.backoff_max)
        now = time.time()
        self._save(
            instance, key, KeyState("rate_limited", now + retry_after, state.failures, strikes, reason, now)
        )
        return retry_after

    def failed(self, instance: str, key: str, reason: str, *, authentication: bool = False) -> None:
        state = self._state(instance, key)
        failures = state.failures + 1
        disabled = authentication or failures >= self.failover.disable_after
        self._save(
            instance,
            key,
            KeyState(
                "disabled" if disabled else state.state,
                state.until,
                failures,
                state.strikes,
                reason,
                time.time(),
            ),
        )
        if disabled:
            logger.warning(f"backend {instance}: key {key_id(key)} disabled: {reason}")

    def model_unsupported(self, instance: str, model: str, reason: str) -> None:
        self._load()
        self.unsupported[(instance, model)] = (reason, time.time())
        self._write(
            "INSERT OR REPLACE INTO unsupported_model VALUES (?, ?, ?, ?)",
            (instance, model, reason, time.time()),
        )

    def reactivate(self, instance: str, *, clear_models: bool = False) -> None:
        self._load()
        for (name, kid), _ in list(self.keys.items()):
            if name == instance:
                self.keys[(name, kid)] = KeyState(updated=time.time())
        self._write("DELETE FROM key_state WHERE instance = ?", (instance,))
        if clear_models:
            self.unsupported = {k: v for k, v in self.unsupported.items() if k[0] != instance}
            self._write("DELETE FROM unsupported_model WHERE instance = ?", (instance,))

    # -- reporting --------------------------------------------------------------------------------

    def describe(self, instance: str, keys: list[str]) -> dict[str, Any]:
        now = time.time()
        states = [(key_id(k), self._state(instance, k)) for k in keys]
        for _, state in states:
            state.usable(now)
        summary = (
            "active"
            if not keys or any(s.state == "active" for _, s in states)
            else ("rate_limited" if any(s.state == "rate_limited" for _, s in states) else "disabled")
        )
        return {
            "state": summary,
            "keys": [
                {
                    "id": kid,
                    "state": s.state,
                    "until": s.until if s.state == "rate_limited" else None,
                    "consecutive_failures": s.failures,
                    "reason": s.reason,
                }
                for kid, s in states
            ],
            "unsupported_models": sorted(m for (i, m) in self.unsupported if i == instance),
            # model → when its mark expires and the model is tried again (Unix seconds)
            "unsupported_until": {
                m: round(since + self.failover.unsupported_model_seconds, 3)
                for (i, m), (_, since) in sorted(self.unsupported.items())
                if i == instance
            },
        }

    # -- storage ----------------------------------------------------------------------------------

    def _state(self, instance: str, key: str) -> KeyState:
        self._load()
        return self.keys.get((instance, key_id(key))) or KeyState()

    def _save(self, instance: str, key: str, state: KeyState) -> None:
        kid = key_id(key)
        self.keys[(instance, kid)] = state
        self._write(
            "INSERT OR REPLACE INTO key_state VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                instance,
                kid,
                state.state,
                state.until,
                state.failures,
                state.strikes,
                state.reason,
                state.updated,
            ),
        )

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        self._load()
        # State changes are rare (failures, cool-downs), so a write on the event loop is cheap.
        if self._db is not None:
            try:
                self._db.execute(sql, args)
            except sqlite3.Error as e:
                logger.warning(f"backend availability could not be saved: {e}")
