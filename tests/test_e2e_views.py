"""What mitmweb's flow list and mitmdump's console lines show: where each call really went.

Calls made by the official SDKs through ``mitmdump -s addons/llm.py``; the flows as mitmproxy saved
them (``save_stream_file``) and the proxy's own output are what a user sees.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from mitmproxy import io
from mitmproxy.http import HTTPFlow
from support.fakes import Fakes
from support.proxy import Proxy


@pytest.fixture(scope="module")
def saving(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proxy, Path]]:
    confdir = tmp_path_factory.mktemp("views")
    flows = confdir / "flows.mitm"
    proxy = Proxy(confdir, fakes.llm_yaml(), ["--set", f"save_stream_file={flows}"]).start()
    yield proxy, flows
    proxy.stop()


def saved_flow(path: Path, marker: str, timeout: float = 10) -> HTTPFlow:
    """The saved flow whose request carried ``marker`` (flows are written as they finish)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with path.open("rb") as f:
                for flow in io.FlowReader(f).stream():
                    if isinstance(flow, HTTPFlow) and marker.encode() in (flow.request.raw_content or b""):
                        return flow
        time.sleep(0.05)
    raise AssertionError(f"no saved flow carries {marker}")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_translated_call_names_the_provider_url_and_backend_model(saving, fakes, stream):
    proxy, flows = saving
    marker = f"views-{stream}-{time.monotonic_ns()}"
    client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(
        model="anthropic:claude-test", messages=[{"role": "user", "content": marker}], stream=stream
    )
    if stream:
        list(answer)
    flow = saved_flow(flows, marker)
    assert flow.request.url == f"{fakes.anthropic.base_url}/v1/messages"
    assert "anthropic:claude-test · translated openai-chat → anthropic" in flow.comment
    expected = f"POST {fakes.anthropic.base_url}/v1/messages"
    assert any(expected in line for line in proxy.lines), "mitmdump's console line names the provider"
    assert any("anthropic:claude-test · translated" in line for line in proxy.lines)


def test_a_passthrough_call_says_so(saving, fakes):
    proxy, flows = saving
    marker = f"views-pass-{time.monotonic_ns()}"
    client = anthropic.Anthropic(base_url=proxy.front_url, api_key="unused", max_retries=0)
    client.messages.create(
        model="anthropic:claude-test", max_tokens=50, messages=[{"role": "user", "content": marker}]
    )
    flow = saved_flow(flows, marker)
    assert flow.request.url == f"{fakes.anthropic.base_url}/v1/messages"
    assert flow.comment.endswith("anthropic:claude-test · passthrough")


def test_the_proxys_own_endpoint_shows_its_own_address(saving):
    proxy, flows = saving
    httpx.get(proxy.front_url + "/v1/models", timeout=10).raise_for_status()
    assert any(f"GET {proxy.front_url}/v1/models" in line for line in proxy.lines)
    assert not any("127.0.0.1:9/" in line for line in proxy.lines)
