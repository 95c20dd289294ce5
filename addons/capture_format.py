"""The capture file format: an RFC 8742 CBOR sequence of small records, one per flow event.

Each record is a CBOR map ``{"v": VERSION, "kind": KIND, "flow": <flow id>, "t": <time.time()>, …}``
(see ``addons/capture.py`` for the fields of each kind). Why a sequence of self-delimiting items: the
writer only ever appends, so a crash or kill loses at most the record being written, and a reader
stops at the first damaged byte and can say where it is. Files are never reopened for writing:
rotation starts a new file whose name sorts after the previous one.

This module needs no mitmproxy, so that ``scripts/captures.py`` reads captures anywhere.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, BinaryIO

import cbor2

logger = logging.getLogger(__name__)

VERSION = 1
KINDS = ("request", "response", "chunk", "end")
FILE_GLOB = "llm-*.cbor"
# What stands in for a credential in every capture (header values, ``key=`` URL parameters, keys).
REDACTED = "[redacted]"
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "x-api-key", "x-goog-api-key", "proxy-authorization", "anthropic-api-key", "cookie"}
)
# The writer gathers what arrives within GATHER_SECONDS into one write: woken for every record, its
# thread would take the GIL from the event loop several times per request (docs/architecture.md,
# "Performance").
GATHER_SECONDS = 0.05
MAX_BATCH = 1000  # records per write at most
# Malformed input makes cbor2 raise its decode errors, or plain ValueError / OverflowError for
# impossible values, or RecursionError for absurd nesting.
DECODE_ERRORS = (cbor2.CBORDecodeError, ValueError, OverflowError, RecursionError)

Record = dict[str, Any]


def file_name(now: float, pid: int, seq: int) -> str:
    """``llm-<UTC time>-<pid>-<seq>.cbor``: unique per process, sorting in creation order."""
    return f"llm-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{pid}-{seq:04d}.cbor"


def capture_files(path: Path) -> list[Path]:
    """A capture directory's files in the order they were written, or the one file given."""
    return sorted(path.glob(FILE_GLOB)) if path.is_dir() else [path]


class Writer:
    """Appends records from one background thread, so the proxy's event loop never waits on disk.

    ``put`` only enqueues. The thread gathers the records of ``GATHER_SECONDS``, passes each through
    ``redact`` (removing secrets is work the event loop need not do), encodes it, and appends and
    flushes them together. With ``tainted`` (does this encoding hold a secret?) it encodes first
    and redacts only a record that needs it: a secret inside any text or bytes of a record shows in
    its CBOR encoding as it is, and searching the encoding costs a tenth of redacting every string.
    The first failure (disk full, directory gone) is logged once and turns capture off for good;
    the proxy carries on.
    """

    def __init__(
        self,
        directory: Path,
        rotate_bytes: int,
        redact: Callable[[Record], Record],
        tainted: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.directory = directory
        self.rotate_bytes = rotate_bytes
        self.redact = redact
        self.tainted = tainted
        self.failed = False
        self.files: list[Path] = []
        self._queue: SimpleQueue[Record | None] = SimpleQueue()
        # One encoder for all records: building one per record (cbor2.dumps) costs several times more.
        self._encoder = cbor2.CBOREncoder(io.BytesIO())
        self._file: BinaryIO | None = None
        self._size = 0
        self._thread = threading.Thread(target=self._run, name="llm capture writer", daemon=True)
        self._thread.start()

    def put(self, record: Record) -> None:
        if not self.failed:
            self._queue.put(record)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then close the file."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            if batch[0] is not None:
                time.sleep(GATHER_SECONDS)  # let the records of the same moment share one write
            while batch[-1] is not None and len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except Empty:
                    break
            records = [record for record in batch if record is not None]
            if records and not self.failed:
                try:
                    self._append([self._clean(record) for record in records])
                except Exception as e:
                    self.failed = True  # from now on what comes is drained, not written
                    logger.error(f"LLM capture stopped: cannot write to {self.directory}: {e}")
            if batch[-1] is None:
                break
        if self._file is not None:
            self._file.close()

    def _clean(self, record: Record) -> bytes:
        """The record's encoding, with nothing ``redact`` would remove."""
        if self.tainted is not None:
            try:
                data = self._encode(record)
            except UnicodeEncodeError:  # text with lone surrogates: redact makes it valid UTF-8
                self._encoder = cbor2.CBOREncoder(io.BytesIO())  # no state left from the failed one
            else:
                if not self.tainted(data):
                    return data
        return self._encode(self.redact(record))

    def _encode(self, record: Record) -> bytes:
        buffer = io.BytesIO()
        self._encoder.fp = buffer
        self._encoder.encode(record)
        return buffer.getvalue()

    def _append(self, encoded: list[bytes]) -> None:
        """One write and one flush per file for the batch; a file never passes ``rotate_bytes``
        unless a single record does (it then has a file of its own)."""
        pending: list[bytes] = []
        for data in encoded:
            if self._file is None or (self._size and self._size + len(data) > self.rotate_bytes):
                self._write(pending)
                pending = []
                self._open_next()
            pending.append(data)
            self._size += len(data)
        self._write(pending)

    def _write(self, pending: list[bytes]) -> None:
        if pending:
            assert self._file is not None
            self._file.write(b"".join(pending))
            self._file.flush()

    def _open_next(self) -> None:
        if self._file is not None:
            self._file.close()
        seq = len(self.files)
        while True:
            path = self.directory / file_name(time.time(), os.getpid(), seq)
            try:
                self._file = path.open("xb")  # never an existing file (a restart with our pid)
                break
            except FileExistsError:
                seq += 1
        self.files.append(path)
        self._size = 0  # the caller counts what it appends


class Reader:
    """Iterates the records of one capture file; stops at the first damaged byte.

    After iteration, ``damage_offset`` is the offset where unreadable bytes begin (a record cut
    short by a crash, or garbage), or None when the file read cleanly to its end.
    """

    def __init__(self, fp: BinaryIO) -> None:
        self.fp = fp
        self.damage_offset: int | None = None

    def __iter__(self) -> Iterator[Record]:
        decoder = cbor2.CBORDecoder(self.fp)
        while True:
            offset = self.fp.tell()
            try:
                record = decoder.decode()
            except DECODE_ERRORS:
                self.fp.seek(offset)
                if self.fp.read(1):
                    self.damage_offset = offset
                return
            if not (isinstance(record, dict) and record.get("kind") in KINDS and "flow" in record):
                self.damage_offset = offset
                return
            yield record


def read_file(path: Path) -> tuple[list[Record], int | None]:
    """All readable records of a file and the damage offset (None: undamaged)."""
    with path.open("rb") as fp:
        reader = Reader(fp)
        records = list(reader)
    return records, reader.damage_offset
