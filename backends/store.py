"""The proxy's state: one embedded SQLite file (usage now, availability and quotas later).

Each kind of state names its own schema and migrates it with ``ensure_schema``, so they can share
the one file. A ``Worker`` thread owns a connection: hooks hand it jobs and never touch the disk
on mitmproxy's event loop; a read queued after writes sees them.

Writes are gathered for ``FLUSH_SECONDS`` before they run, in one transaction (one commit per
batch). Waking the thread for every row would cost more than the rows: each wake-up makes the
event loop hand over the GIL, which at hundreds of requests per second cost about a fifth of the
proxy's CPU (docs/architecture.md, "Performance"). A write given a ``key`` replaces a write of the
same key still waiting (the latest state of a session is all that needs saving). Reads
(``call``) run as soon as the thread is free, after the writes queued before them.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

DEFAULT_FILE = "llm-state.sqlite"
BUSY_TIMEOUT_MS = 5_000
MAX_BATCH = 500  # jobs per transaction
FLUSH_SECONDS = 0.1  # how long a write waits for others to share its transaction

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]


def database_path(configured: str | None, confdir: str) -> Path:
    """The configured ``database`` path, else ``llm-state.sqlite`` in mitmproxy's confdir."""
    return Path(os.path.expanduser(configured or os.path.join(confdir, DEFAULT_FILE)))


def open_database(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode (readers never block the writer), usable from another thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "PRAGMA synchronous=NORMAL"
    )  # WAL stays consistent; only a power cut may lose the last commits
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def ensure_schema(conn: sqlite3.Connection, name: str, steps: Sequence[str]) -> None:
    """Apply the steps of ``name``'s schema this file has not seen yet, atomically.

    ``steps`` is append-only: released steps never change, a schema change is a new step.
    """
    with conn:
        conn.execute("BEGIN IMMEDIATE")  # one process migrates at a time
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        row = conn.execute("SELECT version FROM schema_versions WHERE name = ?", (name,)).fetchone()
        version = row[0] if row else 0
        if version > len(steps):
            raise sqlite3.DatabaseError(
                f"schema {name!r} is at version {version}, newer than this proxy's {len(steps)}; "
                "upgrade the proxy"
            )
        for step in steps[version:]:
            conn.execute(step)
        conn.execute(
            "INSERT INTO schema_versions (name, version) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            (name, len(steps)),
        )


class Worker:
    """One thread, one connection, jobs in order."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self.conn = conn
        self._jobs: queue.SimpleQueue[tuple[Job, Future[Any] | None] | None] = queue.SimpleQueue()
        self._keyed: dict[Any, Job] = {}  # the latest job per key, not run yet
        self._keyed_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job, key: Any = None) -> None:
        """Run ``job`` later; a failure is logged. A job with a ``key`` replaces the job of the same
        key that has not run yet (it takes that job's place in the order)."""
        if key is None:
            self._jobs.put((job, None))
            return
        with self._keyed_lock:
            waiting = key in self._keyed
            self._keyed[key] = job
        if not waiting:
            self._jobs.put((partial(self._run_keyed, key), None))

    def _run_keyed(self, key: Any, conn: sqlite3.Connection) -> Any:
        with self._keyed_lock:
            job = self._keyed.pop(key)
        return job(conn)

    def call(self, job: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Run ``job`` after everything queued before it; its result or exception comes in the future."""
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued jobs, then close the connection."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._jobs.get()]
            if batch[0] is not None and batch[0][1] is None:
                time.sleep(FLUSH_SECONDS)  # a write: let the next ones join its transaction
            while batch[-1] is not None and len(batch) < MAX_BATCH:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            jobs = [item for item in batch if item is not None]
            if jobs:
                self._run_batch(jobs)
            if batch[-1] is None:
                self.conn.close()
                return

    def _run_batch(self, jobs: list[tuple[Job, Future[Any] | None]]) -> None:
        """Run the jobs in one transaction; futures learn their outcome only once it is committed."""
        outcomes: list[tuple[Future[Any], bool, Any]] = []
        try:
            with self.conn:
                for job, future in jobs:
                    try:
                        result, ok = job(self.conn), True
                    except Exception as e:
                        if future is None:
                            logger.exception("LLM state database job failed")
                        result, ok = e, False
                    if future is not None:
                        outcomes.append((future, ok, result))
        except sqlite3.Error as e:
            logger.exception("LLM state database: a batch could not be committed")
            outcomes = [(future, False, e) for future, _, _ in outcomes]
        for future, ok, result in outcomes:
            if ok:
                future.set_result(result)
            else:
                future.set_exception(result)
