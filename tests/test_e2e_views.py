"""What mitmweb and mitmdump show: where each call really went, and both sides of a translated
call in each protocol's own words.

Calls made by the official SDKs through ``mitmdump -s addons/llm.py``; the flows as mitmproxy saved
them (``save_stream_file``, read back without the live exchange) and the proxy's own output are what
a user sees.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from google.genai import types
from mitmproxy import contentviews, io
from mitmproxy.exceptions import FlowReadException
from mitmproxy.http import HTTPFlow
from mitmproxy.test import taddons
from support.builders import CLIENT_KEY, CLIENTS, TOOL_RESULT, UPSTREAM_KEYS, WEATHER_SCHEMA
from support.fakes import Fakes
from support.proxy import Proxy, eventually

from addons import views


@pytest.fixture(scope="module")
def saving(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proxy, Path]]:
    confdir = tmp_path_factory.mktemp("views")
    flows = confdir / "flows.mitm"
    options = ["--set", f"save_stream_file={flows}", "--set", "flow_detail=3"]  # 3: bodies in their views
    proxy = Proxy(confdir, fakes.llm_yaml(), options).start()
    yield proxy, flows
    proxy.stop()


def saved_flow(path: Path, marker: str, timeout: float = 10) -> HTTPFlow:
    """The saved flow whose request carried ``marker`` (flows are written as they finish)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with path.open("rb") as f:
                try:
                    for flow in io.FlowReader(f).stream():
                        sent = (flow.request.raw_content or b"") if isinstance(flow, HTTPFlow) else b""
                        if marker.encode() in sent:
                            return flow
                except FlowReadException:
                    pass  # the file's last flow is still being written: read it again
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
    eventually(lambda: any(expected in line for line in proxy.lines), "a console line naming the provider")
    eventually(lambda: any("anthropic:claude-test · translated" in line for line in proxy.lines), "the route")


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
    # mitmdump prints the flow when it has answered: the line may reach its log a moment later
    eventually(lambda: any(f"GET {proxy.front_url}/v1/models" in line for line in proxy.lines), "the line")
    assert not any("127.0.0.1:9/" in line for line in proxy.lines)


# -- both sides of a translated call, in each protocol's own words ---------------------------------


def marked(kind: str, proxy: Proxy, marker: str):
    """The e2e matrix's SDK client of ``kind`` whose first user message is ``marker``."""
    sdk = CLIENTS[kind](proxy)
    if kind == "gemini":
        sdk.contents[0] = types.Content(role="user", parts=[types.Part(text=marker)])
    else:
        sdk.messages[0]["content"] = marker
    return sdk


def views_of(flow: HTTPFlow) -> tuple[str, str]:
    """What mitmweb shows of a saved flow: its request tab, then its response tab."""
    views.register()
    with taddons.context():
        shown = [contentviews.prettify_message(m, flow) for m in (flow.request, flow.response)]
    assert {s.view_name for s in shown} <= {"LLM Conversation", "LLM Stream"}
    return shown[0].text, shown[1].text


def sections(text: str, first: str, second: str) -> tuple[list[str], list[str]]:
    """The lines of a view's two sides (titles in ``views.TITLES``)."""
    assert text.startswith(views.TITLES[first])
    one, two = text.split("\n\n" + views.TITLES[second])
    return one.split("\n"), two.split("\n")


def round_trip(saving, kind: str, model: str, stream: bool) -> tuple[HTTPFlow, HTTPFlow]:
    """A tool call and the turn that answers it, by the official SDK of ``kind``, as saved."""
    proxy, flows = saving
    marker = f"both-sides-{kind}-{stream}-{time.monotonic_ns()}"
    sdk = marked(kind, proxy, marker)
    turn = sdk.ask(model, stream=stream, tools=True)
    assert turn.calls, "the fake model calls the declared tool"
    sdk.answer_tool(turn, TOOL_RESULT)
    sdk.ask(model, stream=stream, tools=True)
    calls = all_saved(flows, marker)
    assert len(calls) == 2
    return calls[0], calls[1]


def all_saved(path: Path, marker: str, count: int = 2, timeout: float = 10) -> list[HTTPFlow]:
    deadline = time.monotonic() + timeout
    found: list[HTTPFlow] = []
    while time.monotonic() < deadline:
        with path.open("rb") as f:
            found = [
                flow
                for flow in io.FlowReader(f).stream()
                if isinstance(flow, HTTPFlow) and marker.encode() in (flow.request.raw_content or b"")
            ]
        if len(found) >= count:
            break
        time.sleep(0.05)
    return found


def test_an_openai_stream_to_anthropic_shows_both_sides_in_their_own_words(saving, fakes):
    call, answer = round_trip(saving, "openai", "anthropic:claude-test", stream=True)
    asked, answered = views_of(answer)
    client, provider = sections(asked, "client request", "provider request")
    assert "openai-chat request · model anthropic:claude-test" in client
    assert "tool:" in client and "  stream_options.include_usage: true" in client  # the wire's words
    assert "  authorization: [redacted]" in client
    assert any(line.startswith("  user-agent: OpenAI/Python") for line in client)
    assert provider[1] == f"POST {fakes.anthropic.base_url}/v1/messages"
    assert "tool:" not in provider and "user:" in provider  # Anthropic carries tool results as user turns
    assert any(re.fullmatch(r"  max_tokens: \d+  \(added by the proxy\)", line) for line in provider)
    assert "  x-api-key: [redacted] (the backend's key, set by the proxy)" in provider
    assert "    city: string — City name" in client and "    city: string — City name" in provider
    assert f"  Tool said: {TOOL_RESULT}" in answered.split("\n")

    _, first_answer = views_of(call)
    sent, received = sections(first_answer, "provider answer", "client answer")
    assert "anthropic stream, reassembled" in sent[1] and "stop: tool_use" in sent
    assert received[1].startswith("openai-chat stream, reassembled") and "stop: tool_calls" in received


def test_an_anthropic_call_to_gemini_marks_the_call_id_the_proxy_made_up(saving, fakes):
    call, _ = round_trip(saving, "anthropic", "gemini:gemini-test", stream=False)
    asked, answered = views_of(call)
    sent, received = sections(answered, "provider answer", "client answer")
    assert sent[1].startswith("gemini response") and "model:" in sent and "stop: STOP" in sent
    assert '  → get_weather({"city": "Paris"})  [no id on the wire]' in sent
    made_up = [line for line in received if "made up by the proxy]" in line]
    assert len(made_up) == 1, "Gemini names no call id: the one the client got is the proxy's"
    assert received[1].startswith("anthropic response") and "assistant:" in received
    assert "stop: tool_use" in received
    client, provider = sections(asked, "client request", "provider request")
    assert "  max_tokens: 512" in client
    assert "  generationConfig.maxOutputTokens: 512" in provider  # the client's own value: no mark


def test_a_gemini_stream_to_openai_shows_gemini_words_on_the_client_side(saving, fakes):
    call, answer = round_trip(saving, "gemini", "openai:gpt-test", stream=True)
    asked, _ = views_of(answer)
    client, provider = sections(asked, "client request", "provider request")
    assert "gemini request · model openai:gpt-test · streamGenerateContent" in client
    assert "model:" in client and "  x-goog-api-key: [redacted]" in client
    assert provider[1] == f"POST {fakes.openai.base_url}/v1/chat/completions"
    assert "assistant:" in provider and "tool:" in provider
    _, first_answer = views_of(call)
    sent, received = sections(first_answer, "provider answer", "client answer")
    assert "stop: tool_calls" in sent and "stop: STOP" in received


def test_the_recorded_sides_hold_no_key(saving, fakes):
    proxy, flows = saving
    marker = f"no-key-{time.monotonic_ns()}"
    marked("openai", proxy, marker).ask("anthropic:claude-test", stream=False, tools=False)
    (flow,) = all_saved(flows, marker, count=1)
    sides = flow.metadata[views.SIDES]
    assert marker.encode() in sides["client"]["content"]
    assert CLIENT_KEY not in repr(sides), "the client's credential is redacted in its recorded headers"
    content = flows.read_bytes()
    assert not any(key.encode() in content for key in UPSTREAM_KEYS.values())


def test_a_responses_call_to_anthropic_shows_responses_words_on_the_client_side(saving, fakes):
    proxy, flows = saving
    marker = f"both-sides-responses-{time.monotonic_ns()}"
    client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    call = {
        "type": "function_call",
        "call_id": "call_r1",
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    items = [
        {"role": "user", "content": marker},
        call,
        {"type": "function_call_output", "call_id": "call_r1", "output": TOOL_RESULT},
    ]
    tool = {"type": "function", "name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA}
    client.responses.create(
        model="anthropic:claude-test",
        input=items,
        tools=[tool],
        instructions="Be brief.",
        max_output_tokens=300,
    )
    (flow,) = all_saved(flows, marker, count=1)
    asked, answered = views_of(flow)
    sent_by_client, received_by_provider = sections(asked, "client request", "provider request")
    assert sent_by_client[:3] == [
        views.TITLES["client request"],
        f"POST {proxy.front_url}/v1/responses",
        "openai-responses request · model anthropic:claude-test",
    ]
    assert "instructions:" in sent_by_client and "function_call_output:" in sent_by_client
    assert "  max_output_tokens: 300" in sent_by_client
    assert "system:" in received_by_provider and "  max_tokens: 300" in received_by_provider
    sent, received = sections(answered, "provider answer", "client answer")
    assert "stop: end_turn" in sent and "stop: completed" in received


def test_mitmdump_prints_both_sides_of_a_translated_call(saving):
    proxy, flows = saving
    marker = f"console-{time.monotonic_ns()}"
    marked("anthropic", proxy, marker).ask("openai:gpt-test", stream=False, tools=False)
    all_saved(flows, marker, count=1)
    deadline = time.monotonic() + 10
    while views.TITLES["client answer"] not in (printed := printed_flow(proxy.log, marker)):
        assert time.monotonic() < deadline, "mitmdump printed no answer of the flow"
        time.sleep(0.05)
    assert all(title in printed for title in views.TITLES.values())


def printed_flow(log: str, marker: str) -> str:
    """What mitmdump printed of the flow whose request carried ``marker``: from the client side's
    title before it on."""
    at = log.find(marker)
    return log[log.rfind(views.TITLES["client request"], 0, at) :] if at >= 0 else ""
