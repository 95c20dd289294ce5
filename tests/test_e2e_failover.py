"""Resilient routing through a real proxy: key rotation, cool-downs, disabling, failover across
instances and protocols, bounds, route rules, the one-off route header, state across restarts."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from support.proxy import Proxy, ProxyStartError

K1, K2, K3 = "sk-rot-key-0001", "sk-rot-key-0002", "sk-rot-key-0003"
ANTHROPIC_KEY = "sk-ant-fake-0001"
GEMINI_KEY = "AIza-fake-gemini-0001"


def config(fakes, extra: str = "", attempts: int = 4, deadline: float = 20) -> str:
    openai_url = f"{fakes.openai.base_url}/v1"
    return f"""
backends:
  openai.1: {{type: openai, base_url: "{openai_url}", api_keys: ["{K1}", "{K2}"], models: ["gpt-*"]}}
  openai.2: {{type: openai, base_url: "{openai_url}", api_keys: ["{K3}"], models: ["gpt-*"]}}
  openai.fill: {{type: openai, base_url: "{openai_url}", api_keys: ["{K1}", "{K2}"], key_policy: fill_first,
                models: ["fill-*"]}}
  anthropic: {{type: anthropic, base_url: "{fakes.anthropic.base_url}", api_keys: ["{ANTHROPIC_KEY}"]}}
  gemini: {{type: gemini, base_url: "{fakes.gemini.base_url}", api_keys: ["{GEMINI_KEY}"],
           timeouts: {{connect: 1, first_byte: 5, idle: 5}}}}
default_backend: openai.1
failover:
  attempts: {attempts}
  deadline: {deadline}
  backoff: 1
  fallbacks:
    "openai*:gpt-*": ["anthropic:claude-fallback"]
    "anthropic:fail-first-event": ["gemini:gemini-fallback"]
routes:
  - match: {{model: "claude-*"}}
    target: "gemini:gemini-from-rule"
  - match: {{model: "tuned-*"}}
    target: "anthropic:tuned-model"
    params: {{temperature: 0.3, max_tokens: 321}}
{extra}"""


@pytest.fixture
def routed(fakes, tmp_path):
    fakes.openai.extra_keys |= {K1, K2, K3}
    running = Proxy(tmp_path, config(fakes)).start()
    yield running
    running.stop()


def ask(proxy, model: str, stream: bool = False, **kwargs) -> str:
    client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key="client", max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "Hi"}]
    if stream:
        chunks = client.chat.completions.create(model=model, messages=messages, stream=True, **kwargs)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return client.chat.completions.create(model=model, messages=messages, **kwargs).choices[0].message.content


def keys_used(fake) -> list[str]:
    return [
        r.headers.get("authorization", "").removeprefix("Bearer ") or r.headers.get("x-api-key", "")
        for r in fake.requests
    ]


def diagnostics(proxy) -> dict:
    return httpx.get(f"{proxy.front_url}/v1/diagnostics", timeout=10).json()


def test_keys_rotate_round_robin(routed, fakes):
    for _ in range(4):
        assert ask(routed, "openai.1:gpt-x") == "Hello from openai!"
    assert keys_used(fakes.openai) == [K1, K2, K1, K2]


def test_fill_first_keeps_to_the_first_key(routed, fakes):
    for _ in range(3):
        ask(routed, "fill-model")
    assert keys_used(fakes.openai) == [K1, K1, K1]


def test_rate_limited_key_cools_down_then_comes_back(routed, fakes):
    fakes.openai.key_failures[K1] = 429  # with retry-after: 1
    assert ask(routed, "openai.fill:fill-x") == "Hello from openai!"
    assert keys_used(fakes.openai) == [K1, K2]
    del fakes.openai.key_failures[K1]
    ask(routed, "openai.fill:fill-x")
    assert keys_used(fakes.openai)[-1] == K2, "K1 is still cooling down"
    state = diagnostics(routed)["backends"]["openai.fill"]["keys"][0]
    assert state["state"] == "rate_limited" and state["until"] > time.time()
    deadline = time.monotonic() + 10  # the cool-down is the fake's retry-after: 1 s
    while diagnostics(routed)["backends"]["openai.fill"]["keys"][0]["state"] == "rate_limited":
        assert time.monotonic() < deadline, "K1 is still cooling down after 10 s"
        time.sleep(0.05)
    ask(routed, "openai.fill:fill-x")
    assert keys_used(fakes.openai)[-1] == K1, "the cool-down expired"


def test_cool_down_without_retry_after_backs_off(routed, fakes):
    fakes.openai.key_failures[K1] = (429, {})
    ask(routed, "openai.fill:fill-x")
    key = diagnostics(routed)["backends"]["openai.fill"]["keys"][0]
    assert key["state"] == "rate_limited"
    assert 0 < key["until"] - time.time() <= 1.0  # failover.backoff: 1


def test_authentication_failure_disables_the_key_until_reactivated(routed, fakes):
    fakes.openai.key_failures[K1] = 401
    assert ask(routed, "openai.fill:fill-x") == "Hello from openai!"
    del fakes.openai.key_failures[K1]
    for _ in range(2):
        ask(routed, "openai.fill:fill-x")
    assert keys_used(fakes.openai) == [K1, K2, K2, K2]
    backend = diagnostics(routed)["backends"]["openai.fill"]
    assert backend["keys"][0]["state"] == "disabled"
    assert backend["last_error"]["status"] == 401
    assert K1 not in str(diagnostics(routed)) and K2 not in str(diagnostics(routed))

    response = httpx.post(f"{routed.front_url}/v1/diagnostics/backends/openai.fill/reactivate", timeout=10)
    assert response.json()["keys"][0]["state"] == "active"
    ask(routed, "openai.fill:fill-x")
    assert keys_used(fakes.openai)[-1] == K1


def test_failover_to_the_next_instance(routed, fakes):
    fakes.openai.key_failures |= {K1: 500, K2: 500}
    assert ask(routed, "gpt-x") == "Hello from openai!"
    assert keys_used(fakes.openai) == [K1, K2, K3]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_failover_across_protocols_gives_one_valid_openai_answer(routed, fakes, stream):
    fakes.openai.key_failures |= {K1: 503, K2: 503, K3: 529 if False else 503}
    assert ask(routed, "gpt-x", stream=stream) == "Hello from anthropic!"
    assert len(fakes.openai.requests) == 3
    assert fakes.anthropic.requests[-1].body["model"] == "claude-fallback"


def test_error_as_first_stream_event_still_fails_over(routed, fakes):
    assert ask(routed, "anthropic:fail-first-event", stream=True) == "Hello from gemini!"
    assert "gemini-fallback" in fakes.gemini.requests[-1].path


def test_no_retry_once_bytes_reached_the_client(routed, fakes):
    with pytest.raises(openai.APIError):
        ask(routed, "openai.1:fail-midstream", stream=True)
    assert len(fakes.openai.requests) == 1


def test_attempts_are_bounded(fakes, tmp_path):
    fakes.openai.extra_keys |= {K1, K2, K3}
    fakes.openai.key_failures |= {K1: 500, K2: 500, K3: 500}
    running = Proxy(tmp_path, config(fakes, attempts=2)).start()
    try:
        with pytest.raises(openai.InternalServerError, match=r"gave up after 2 attempt"):
            ask(running, "gpt-x")
        assert len(fakes.openai.requests) == 2 and fakes.anthropic.requests == []
    finally:
        running.stop()


def test_overall_deadline_is_honoured(fakes, tmp_path):
    running = Proxy(tmp_path, config(fakes, deadline=2)).start()
    try:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            ask(running, "gemini:hang")
        assert caught.value.status_code == 504
        assert time.monotonic() - started < 4
    finally:
        running.stop()


def test_state_survives_a_restart(fakes, tmp_path):
    fakes.openai.extra_keys |= {K1, K2, K3}
    fakes.openai.key_failures[K1] = 401
    first = Proxy(tmp_path, config(fakes)).start()
    ask(first, "openai.fill:fill-x")
    first.stop()
    del fakes.openai.key_failures[K1]
    second = Proxy(tmp_path, config(fakes)).start()
    try:
        ask(second, "openai.fill:fill-x")
        assert keys_used(fakes.openai)[-1] == K2
        assert diagnostics(second)["backends"]["openai.fill"]["keys"][0]["state"] == "disabled"
    finally:
        second.stop()


def test_route_rule_replaces_the_model(routed, fakes):
    assert ask(routed, "claude-sonnet-4-5") == "Hello from gemini!"
    assert "gemini-from-rule" in fakes.gemini.requests[-1].path


def test_route_rule_parameters_are_defaults(routed, fakes):
    ask(routed, "tuned-thing")
    body = fakes.anthropic.requests[-1].body
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("tuned-model", 0.3, 321)
    ask(routed, "tuned-thing", temperature=0.9)
    assert fakes.anthropic.requests[-1].body["temperature"] == 0.9, "the request's own value wins"


def test_route_header_overrides_routing_for_one_request(routed, fakes):
    text = ask(routed, "claude-sonnet-4-5", extra_headers={"x-llm-route": "anthropic:claude-by-header"})
    assert text == "Hello from anthropic!"
    assert fakes.anthropic.requests[-1].body["model"] == "claude-by-header"
    assert "x-llm-route" not in fakes.anthropic.requests[-1].headers
    assert ask(routed, "claude-sonnet-4-5") == "Hello from gemini!"


@pytest.mark.parametrize(
    "extra, where",
    [
        ('  - match: {model: "x"}\n    target: "nowhere:model"\n', "routes[2].target"),
        ('  - match: {model: "x"}\n    target: "just-a-model"\n', "routes[2].target"),
    ],
)
def test_invalid_rule_targets_are_refused_at_start(fakes, tmp_path, extra, where):
    proxy = Proxy(tmp_path, config(fakes, extra=extra))
    try:
        proxy.start()
    except ProxyStartError:
        pass
    else:  # mitmdump exits over start-up errors only after it began listening; on a busy machine, later
        assert proxy.process.wait(15) != 0
    assert f"LLM configuration error: {proxy.config_path}: {where}: " in proxy.log
    assert "must be backend:model with a configured backend" in proxy.log
    assert "Traceback" not in proxy.log
