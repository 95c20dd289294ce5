"""A stream ends for the client when the provider's stream has ended, and a client that hangs up
after the protocol's final event has had a successful call.

The OpenAI SDK closes the connection right after ``data: [DONE]``. On a translated route the
proxy makes that event itself (from Anthropic's ``message_stop``); were it sent before the
Anthropic stream had ended, the hang-up would break the flow off as "Client disconnected" and the
usage row, the metrics and the capture would call the answer aborted. The fake Anthropic here
ends its body a while after its last event (``linger-<s>``), as real providers sometimes do.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from support.fakes import Fakes
from support.proxy import Proxy, eventually

from scripts import captures

LINGER = 0.6  # seconds between the fake's last event and the end of its body
MODEL = f"linger-{LINGER}"


@pytest.fixture(scope="module")
def lingering(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proxy, Path]]:
    directory = tmp_path_factory.mktemp("stream-end-captures")
    confdir = tmp_path_factory.mktemp("stream-end")
    config = fakes.llm_yaml() + f'database: "{confdir / "state.sqlite"}"\n'
    proxy = Proxy(confdir, config, ["--set", f"llm_capture={directory}"]).start()
    yield proxy, directory
    proxy.stop()


def stream_and_hang_up(proxy: Proxy, backend: str, marker: str) -> tuple[str, float]:
    """The official SDK's stream, read to its end: the SDK closes the response after [DONE]."""
    client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key="unused", max_retries=0)
    started = time.monotonic()
    stream = client.chat.completions.create(
        model=f"{backend}:{MODEL}", messages=[{"role": "user", "content": marker}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    return text, time.monotonic() - started


def usage_rows(proxy: Proxy, backend: str) -> list[sqlite3.Row]:
    with sqlite3.connect(proxy.confdir / "state.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        query = "SELECT * FROM usage WHERE model = ? AND backend = ?"
        return conn.execute(query, (MODEL, backend)).fetchall()


def test_an_openai_stream_closed_after_done_on_a_translated_route_is_a_success(lingering):
    """[DONE] waits for the end of the Anthropic stream; the flow, usage, metrics and capture say 200."""
    proxy, directory = lingering
    marker = f"stream-end-{time.monotonic_ns()}"
    text, took = stream_and_hang_up(proxy, "anthropic", marker)
    assert text, "the client got the answer"
    assert took >= LINGER, "[DONE] waited for the end of the provider's stream"
    assert_success(proxy, directory, "anthropic", marker)


def test_an_openai_stream_closed_after_the_providers_own_done_is_a_success(lingering):
    """Same protocol: the provider's [DONE] passes at once; the SDK hangs up while the provider's
    body is still open, and the call is still a success."""
    proxy, directory = lingering
    marker = f"stream-end-{time.monotonic_ns()}"
    text, took = stream_and_hang_up(proxy, "openai", marker)
    assert text and took < LINGER, "the passthrough stream is not held"
    assert_success(proxy, directory, "openai", marker)


def assert_success(proxy: Proxy, directory: Path, backend: str, marker: str) -> None:
    (row,) = eventually(lambda: usage_rows(proxy, backend), "the usage row")
    assert (row["status"], row["error"]) == (200, None)

    def end() -> dict[str, Any] | None:
        for flow in captures.load(directory).flows.values():
            body = (flow.request or {}).get("client", {}).get("body") or b""
            if marker.encode() in body and flow.end:
                return flow.end
        return None

    record = eventually(end, "the capture's end record")
    assert (record["status"], record["flow_error"], record["error"]) == (200, None, None)

    metrics = httpx.get(proxy.front_url + "/metrics", timeout=10).text
    statuses = [
        labels["status"]
        for text in re.findall(r"^llm_requests_total\{([^}]*)\}", metrics, re.M)
        if (labels := dict(re.findall(r'(\w+)="([^"]*)"', text)))["model"] == MODEL
        and labels["backend"] == backend
    ]
    assert statuses == ["200"]
