"""Flows saved with mitmdump's -w read back with a plain summary of the exchange, and neither the
saved file nor the log holds a provider key."""

from __future__ import annotations

import openai
from mitmproxy import io

KEYS = (b"sk-fake-openai-0001", b"sk-ant-fake-0001", b"AIza-fake-gemini-0001")


def test_saved_flows_carry_the_exchange_summary_and_no_key(start_proxy, fakes, tmp_path):
    saved = tmp_path / "flows.mitm"
    proxy = start_proxy(fakes.llm_yaml(), ["-w", str(saved)])
    client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key="client", max_retries=0)
    for model in ("anthropic:claude-x", "openai:gpt-x"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    proxy.stop()

    with saved.open("rb") as f:
        flows = list(io.FlowReader(f).stream())
    summaries = [flow.metadata["llm"] for flow in flows]
    assert [(s["backend"], s["model"], s["passthrough"]) for s in summaries] == [
        ("anthropic", "claude-x", False),
        ("openai", "gpt-x", True),
    ]
    assert summaries[0]["attempts"][0]["status"] == 200
    content = saved.read_bytes()
    assert not any(key in content for key in KEYS)
    assert "Addon error" not in proxy.log
    assert not any(key.decode() in proxy.log for key in KEYS)
