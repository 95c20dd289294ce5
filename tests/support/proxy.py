"""The proxy under test as a subprocess: `mitmdump -s addons/llm.py`, or any other server command.

A ``Server`` is started, awaited until it is ready (with a deadline, failing with its whole log when
it exits or never gets ready), its output kept in memory, and stopped on demand. ``Proxy`` is the
suite's own process: a reverse front door, a regular (HTTPS-proxy) listener and, if asked, the
Anthropic-rooted port, each on a free port.

Shared by the test fixtures (``tests/conftest.py``) and the benchmark (``scripts/bench.py``). It
needs neither pytest nor the proxy's own packages, so a script can import it as ``support.proxy``
once ``tests/`` is on ``sys.path`` (pytest puts it there, beside ``conftest.py``).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, Self

REPO = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).with_name("mitmdump")
ADDON = REPO / "addons" / "llm.py"
TIKTOKEN_CACHE = REPO.parent / "shared" / "tiktoken"  # tiktoken's encodings, never downloaded
STARTUP_TIMEOUT = 30.0
# mitmdump listens first and only then exits over errors logged during startup ("Error logged during
# startup, exiting..."): a process still alive this long after listening has really started.
STARTUP_GRACE = 0.5
POLL = 0.05  # seconds between two looks at a starting server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    """The environment of a server process: this one's, unbuffered, with tiktoken's local cache."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if TIKTOKEN_CACHE.is_dir():
        env.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    return env


def answers_http(port: int, path: str = "/v1/models") -> Callable[[], bool]:
    """A readiness check: the server answers an HTTP GET on the port at all, whatever the status."""

    def ready() -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()
        return True

    return ready


class ProxyStartError(RuntimeError):
    """The server exited or never got ready; the message carries its whole log."""


class Server:
    """A server process: ready once ``ready()`` holds (and it is still alive ``grace`` seconds later).

    Its output (stdout and stderr) is read on a thread into ``lines``, as it comes (a process writing
    to a full pipe would block), or, given ``log_file``, written to that file with no thread at all.
    ``setup`` runs in the child between fork and exec (``preexec_fn``): it is only safe in a process
    that runs no other thread, hence only with ``log_file`` (as the benchmark starts its servers).
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str] = (),
        *,
        ready: Callable[[], bool] | None = None,
        port: int = 0,
        cwd: Path = REPO,
        grace: float = 0.0,
        setup: Callable[[], None] | None = None,
        log_file: Path | None = None,
    ) -> None:
        if setup is not None and log_file is None:
            raise ValueError("a setup runs between fork and exec: give a log_file, so no reader thread runs")
        self.name = name
        self.port = port  # the port it serves, where one is known
        self.cwd, self.grace, self.setup = cwd, grace, setup
        self._command = list(command)
        self._ready = ready
        self.log_file = log_file
        self._lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._drainer: threading.Thread | None = None

    def command(self) -> list[str]:
        return list(self._command)

    def ready(self) -> bool:
        return self._ready() if self._ready is not None else True

    @property
    def lines(self) -> list[str]:
        """The output so far, line by line."""
        if self.log_file is None:
            return self._lines
        return self.log.splitlines(keepends=True)

    @property
    def log(self) -> str:
        if self.log_file is None:
            return "".join(self._lines)
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def start(self) -> Self:
        with contextlib.ExitStack() as opened:
            output = subprocess.PIPE
            if self.log_file is not None:  # the child's copy stays open; ours closes once it is started
                output = opened.enter_context(self.log_file.open("wb"))
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.cwd,
                env=child_env(),
                text=True,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=self.setup,  # noqa: PLW1509 - only with a log file, so no thread of ours runs
            )
        if self.log_file is None:
            self._drainer = threading.Thread(target=self._drain, name=f"{self.name}-log", daemon=True)
            self._drainer.start()
        self._await_ready()
        return self

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    def _await_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.ready():
            if (code := self.process.poll()) is not None:
                self._fail(f"{self.name} exited with code {code} before it was ready")
            if time.monotonic() > deadline:
                waited = f"{STARTUP_TIMEOUT:.0f} s ({self.waiting_for()})"
                self._fail(f"{self.name} was not ready within {waited}")
            time.sleep(POLL)
        if not self.grace:
            return
        try:
            code = self.process.wait(self.grace)
        except subprocess.TimeoutExpired:
            return
        self._fail(f"{self.name} exited with code {code} right after it got ready")

    def waiting_for(self) -> str:
        """What readiness means, for the failure message."""
        return f"an HTTP answer on port {self.port}" if self.port else "its readiness check"

    def _fail(self, reason: str) -> NoReturn:
        self.stop()
        if self._drainer is not None:
            self._drainer.join(5)  # the log up to the very end
        command = " ".join(self.command())
        raise ProxyStartError(
            f"{reason}\ncommand: {command}\n--- {self.name} log ---\n{self.log}--- end of log ---"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Proxy(Server):
    """A running `mitmdump -s addons/llm.py`: a reverse front door plus a regular (HTTPS-proxy) listener."""

    def __init__(
        self, confdir: Path, config_text: str, extra_args: Sequence[str] = (), *, anthropic_port: bool = False
    ) -> None:
        super().__init__("mitmdump", grace=STARTUP_GRACE)
        self.confdir = confdir
        self.config_path = self.confdir / "llm.yaml"
        self.config_path.write_text(config_text)
        self.front_port, self.proxy_port = free_port(), free_port()
        self.port = self.front_port
        # The Anthropic-rooted port is one more reverse listener, recognised by its port number.
        self.anthropic_port = free_port() if anthropic_port else 0
        self.extra_args = list(extra_args)

    @property
    def front_url(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def ca_cert(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def command(self) -> list[str]:
        return [
            str(MITMDUMP),
            "--set", f"confdir={self.confdir}",
            "--set", f"llm_config={self.config_path}",
            "--mode", f"reverse:http://127.0.0.1:9@127.0.0.1:{self.front_port}",
            "--mode", f"regular@127.0.0.1:{self.proxy_port}",
            "--set", f"llm_anthropic_port={self.anthropic_port}",
            *(
                ["--mode", f"reverse:http://127.0.0.1:9@127.0.0.1:{self.anthropic_port}"]
                if self.anthropic_port else []
            ),
            "-s", str(ADDON),
            *self.extra_args,
        ]  # fmt: skip

    def listening(self) -> list[str]:
        """The log lines that say every listener is up."""
        ports = [p for p in (self.front_port, self.proxy_port, self.anthropic_port) if p]
        return [f"listening at 127.0.0.1:{port}" for port in ports]

    def ready(self) -> bool:
        log = self.log
        return all(line in log for line in self.listening())

    def waiting_for(self) -> str:
        return f"log lines {self.listening()}"


def eventually(check: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    """Observers run in the flow's last hooks, just after the client has its answer: poll briefly."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)
    return result
