"""Shared fixtures: the fake providers, and the real proxy (`mitmdump -s addons/llm.py`) as a subprocess.

Fixtures:
- ``fakes`` (session): FakeOpenAI / FakeAnthropic / FakeGemini on loopback (``tests/fakes.py``); their
  recorded requests are cleared before every test that uses them.
- ``proxy`` (session): one proxy process configured with ``fakes.llm_yaml()``.
- ``start_proxy`` (function): ``start_proxy(config_text, extra_args=[]) -> Proxy``, a process of its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import pytest
from fakes import Fakes

REPO = Path(__file__).resolve().parents[1]
TIKTOKEN_CACHE = REPO.parent / "shared" / "tiktoken"
if TIKTOKEN_CACHE.is_dir():  # tiktoken must never download its encodings during tests
    os.environ["TIKTOKEN_CACHE_DIR"] = str(TIKTOKEN_CACHE)

# Tests never touch the user's home: mitmproxy's default confdir (~/.mitmproxy) included.
os.environ["HOME"] = tempfile.mkdtemp(prefix="llm-proxy-tests-home-")

MITMDUMP = Path(sys.executable).with_name("mitmdump")
STARTUP_TIMEOUT = 30.0
# mitmdump listens first and only then exits over errors logged during startup ("Error logged during
# startup, exiting..."): a process still alive this long after listening has really started.
STARTUP_GRACE = 0.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProxyStartError(RuntimeError):
    """mitmdump exited or never listened; the message carries its whole log."""


class Proxy:
    """A running `mitmdump -s addons/llm.py`: a reverse front door plus a regular (HTTPS-proxy) listener."""

    def __init__(
        self, confdir: Path, config_text: str, extra_args: Sequence[str] = (), *, anthropic_port: bool = False
    ) -> None:
        self.confdir = confdir
        self.config_path = self.confdir / "llm.yaml"
        self.config_path.write_text(config_text)
        self.front_port, self.proxy_port = free_port(), free_port()
        # The Anthropic-rooted port is one more reverse listener, recognised by its port number.
        self.anthropic_port = free_port() if anthropic_port else 0
        self.extra_args = list(extra_args)
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._drainer: threading.Thread

    @property
    def front_url(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def ca_cert(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def command(self) -> list[str]:
        return [
            str(MITMDUMP),
            "--set", f"confdir={self.confdir}",
            "--set", f"llm_config={self.config_path}",
            "--mode", f"reverse:http://127.0.0.1:9@127.0.0.1:{self.front_port}",
            "--mode", f"regular@127.0.0.1:{self.proxy_port}",
            "--set", f"llm_anthropic_port={self.anthropic_port}",
            *(["--mode", f"reverse:http://127.0.0.1:9@127.0.0.1:{self.anthropic_port}"] if self.anthropic_port else []),
            "-s", str(REPO / "addons" / "llm.py"),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> Proxy:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            self.command(), cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._drainer = threading.Thread(target=self._drain, name="mitmdump-log", daemon=True)
        self._drainer.start()
        self._await_listeners()
        return self

    def _drain(self) -> None:
        """Keep reading: mitmdump blocks once its pipe fills."""
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def _await_listeners(self) -> None:
        assert self.process is not None
        ports = [p for p in (self.front_port, self.proxy_port, self.anthropic_port) if p]
        wanted = [f"listening at 127.0.0.1:{port}" for port in ports]
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not all(w in self.log for w in wanted):
            if (code := self.process.poll()) is not None:
                self._fail(f"mitmdump exited with code {code} before listening")
            if time.monotonic() > deadline:
                self._fail(f"mitmdump did not listen on {wanted} within {STARTUP_TIMEOUT:.0f} s")
            time.sleep(0.05)
        try:
            code = self.process.wait(STARTUP_GRACE)
        except subprocess.TimeoutExpired:
            return
        self._fail(f"mitmdump exited with code {code} right after it started listening")

    def _fail(self, reason: str) -> NoReturn:
        self.stop()
        self._drainer.join(5)  # the log up to the very end
        command = " ".join(self.command())
        raise ProxyStartError(
            f"{reason}\ncommand: {command}\n--- mitmdump log ---\n{self.log}--- end of log ---"
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


@pytest.fixture(scope="session")
def fakes() -> Iterator[Fakes]:
    started = Fakes().start()
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def _fresh_fake_requests(request: pytest.FixtureRequest) -> None:
    """Each test sees only its own upstream requests (only where the fakes are in use)."""
    if "fakes" in request.fixturenames:
        request.getfixturevalue("fakes").reset()


@pytest.fixture(scope="session")
def proxy(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    running = Proxy(tmp_path_factory.mktemp("proxy"), fakes.llm_yaml()).start()
    yield running
    running.stop()


@pytest.fixture
def start_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []

    def start(config_text: str, extra_args: Sequence[str] = ()) -> Proxy:
        instance = Proxy(tmp_path_factory.mktemp("proxy"), config_text, extra_args)
        started.append(instance)
        return instance.start()

    yield start
    for instance in started:
        instance.stop()
