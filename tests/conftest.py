"""Shared fixtures: the fake providers, and the real proxy (`mitmdump -s addons/llm.py`) as a subprocess.

Fixtures:
- ``fakes`` (session): FakeOpenAI / FakeAnthropic / FakeGemini on loopback (``tests/support/fakes/``);
  their recorded requests are cleared before every test that uses them.
- ``proxy`` (session): one proxy process configured with ``fakes.llm_yaml()``.
- ``start_proxy`` (function): ``start_proxy(config_text, extra_args=[]) -> Proxy``, a process of its own.

Helpers live in ``tests/support/`` (``support.proxy``, ``support.fakes``, ``support.builders``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence

import pytest

pytest.register_assert_rewrite("support")  # its helpers' asserts explain their failures, as in tests

from support.fakes import Fakes  # noqa: E402
from support.proxy import TIKTOKEN_CACHE, Proxy  # noqa: E402

if TIKTOKEN_CACHE.is_dir():  # tiktoken must never download its encodings during tests
    os.environ["TIKTOKEN_CACHE_DIR"] = str(TIKTOKEN_CACHE)

# Tests never touch the user's home: mitmproxy's default confdir (~/.mitmproxy) included.
os.environ["HOME"] = tempfile.mkdtemp(prefix="llm-proxy-tests-home-")


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
