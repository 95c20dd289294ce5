"""In-process tests of addons/access.py: where each protocol's key is read, what a refusal looks
like, the proxy key of an HTTPS-proxy connection, the slow-down and the admin endpoints."""

from __future__ import annotations

import base64
import itertools
import json
import logging
from pathlib import Path

import pytest
import yaml
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from addons.access import Access, Slowdown, key_of
from addons.listeners import Listeners
from addons.settings import Settings
from backends.config import Config, parse_config

ALICE = "alice-proxy-secret-1"
OPS = "ops-proxy-secret-22"
FRONT_DOOR = ProxyMode.parse("reverse:http://127.0.0.1:9@127.0.0.1:8000")
PROXY = ProxyMode.parse("regular@127.0.0.1:8080")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings_with(keys: bool = True) -> Settings:
    settings = Settings()
    access = {
        "mode": "multi-user",
        "keys": [{"name": "alice", "key": ALICE}, {"name": "ops", "key": OPS, "admin": True}],
    }
    settings.config = Config.model_validate({"access": access} if keys else {})
    return settings


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def access(clock):
    addon = Access(settings_with(), Slowdown(clock))
    with taddons.context(Listeners(), addon):
        yield addon


def front_door(path: str = "/v1/chat/completions", headers: dict | None = None, peer: str = "10.0.0.7"):
    flow = tflow.tflow()
    flow.client_conn.proxy_mode = FRONT_DOOR
    flow.client_conn.peername = (peer, 50000)
    flow.request.method = "POST" if "models" not in path and "diagnostics" not in path else "GET"
    flow.request.path = path
    flow.request.headers.clear()
    for name, value in (headers or {}).items():
        flow.request.headers[name] = value
    return flow


def refusal(flow) -> dict:
    assert flow.response is not None
    assert ALICE.encode() not in flow.response.content and OPS.encode() not in flow.response.content
    return json.loads(flow.response.content)


@pytest.mark.parametrize(
    "path,headers",
    [
        ("/v1/chat/completions", {"authorization": f"Bearer {ALICE}"}),
        ("/v1/responses", {"authorization": f"Bearer {ALICE}"}),
        ("/v1/messages", {"x-api-key": ALICE}),
        ("/v1beta/models/gemini-2.5-flash:generateContent", {"x-goog-api-key": ALICE}),
        (f"/v1beta/models/gemini-2.5-flash:generateContent?key={ALICE}&alt=sse", {}),
    ],
)
def test_a_good_key_in_its_protocols_place_authenticates_and_is_removed(access, path, headers):
    flow = front_door(path, headers)
    access.request(flow)
    assert flow.response is None
    assert key_of(flow).name == "alice"
    assert ALICE not in str(flow.request.headers) and ALICE not in flow.request.path
    if "alt=sse" in path:
        assert flow.request.query["alt"] == "sse"


@pytest.mark.parametrize(
    "path,headers,envelope",
    [
        ("/v1/chat/completions", {"authorization": "Bearer wrong-key-000"}, "error"),
        ("/v1/chat/completions", {}, "error"),
        ("/anthropic/v1/messages", {"x-api-key": "wrong-key-000"}, "type"),
        ("/v1beta/models/x:generateContent", {"x-goog-api-key": "wrong-key-000"}, "error"),
    ],
)
def test_a_missing_or_wrong_key_is_a_401_in_the_clients_envelope(access, path, headers, envelope):
    flow = front_door(path, headers)
    access.request(flow)
    body = refusal(flow)
    assert flow.response.status_code == 401
    assert body["llm_error"]["code"] == "unauthenticated"
    assert envelope in body
    assert key_of(flow) is None
    if path.startswith("/anthropic"):
        assert body["type"] == "error"
    if "generateContent" in path:
        assert body["error"]["status"] == "UNAUTHENTICATED"


def test_without_keys_requests_pass_untouched():
    addon = Access(settings_with(keys=False))
    with taddons.context(Listeners(), addon):
        flow = front_door(headers={"authorization": "Bearer sk-clients-own"})
        addon.request(flow)
        assert flow.response is None and key_of(flow) is None
        assert flow.request.headers["authorization"] == "Bearer sk-clients-own"


def connect(credential: str | None, peer: str = "10.0.0.8"):
    flow = tflow.tflow()
    flow.client_conn.proxy_mode = PROXY
    flow.client_conn.peername = (peer, 40000)
    flow.request.method = "CONNECT"
    flow.request.headers.clear()
    if credential:
        flow.request.headers["proxy-authorization"] = credential
    return flow


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@pytest.mark.parametrize("credential", [basic("alice", ALICE), f"Bearer {ALICE}"])
def test_a_proxy_key_on_the_connect_authenticates_the_connections_requests(access, credential):
    tunnel = connect(credential)
    access.http_connect(tunnel)
    assert tunnel.response is None and "proxy-authorization" not in tunnel.request.headers
    inner = tflow.tflow()
    inner.client_conn = tunnel.client_conn
    inner.request.host = "api.anthropic.com"
    inner.request.headers["authorization"] = "Bearer the-clients-own-provider-key"
    access.request(inner)
    assert inner.response is None and key_of(inner).name == "alice"
    assert inner.request.headers["authorization"] == "Bearer the-clients-own-provider-key"


@pytest.mark.parametrize("credential", [None, basic("alice", "wrong-key-000"), basic("ops", ALICE)])
def test_a_connect_without_a_valid_proxy_key_gets_407(access, credential):
    tunnel = connect(credential)
    access.http_connect(tunnel)
    assert tunnel.response.status_code == 407
    assert tunnel.response.headers["proxy-authenticate"].startswith("Basic")
    assert refusal(tunnel)["llm_error"]["code"] == "unauthenticated"


def test_a_plain_proxied_request_carries_its_own_proxy_key(access):
    flow = connect(basic("alice", ALICE))
    flow.request.method = "POST"
    flow.request.host = "api.openai.com"
    access.request(flow)
    assert flow.response is None and key_of(flow).name == "alice"


def test_repeated_failures_are_refused_for_a_while_doubling(access, clock):
    def attempt(key: str, peer: str = "10.0.0.9"):
        flow = front_door(headers={"authorization": f"Bearer {key}"}, peer=peer)
        access.request(flow)
        return flow

    for _ in range(5):
        assert attempt("wrong-key-000").response.status_code == 401
    refused = attempt(ALICE)  # even the right key waits: guessing must not pay off
    assert refused.response.status_code == 429
    assert refused.response.headers["retry-after"] == "30"
    assert refusal(refused)["llm_error"]["code"] == "unauthenticated"
    assert attempt(ALICE, peer="10.0.0.10").response is None  # another address is not slowed
    clock.now += 31
    for _ in range(5):
        attempt("wrong-key-000")
    assert attempt(ALICE).response.headers["retry-after"] == "60"
    clock.now += 61
    assert attempt(ALICE).response is None  # a success clears the address
    assert attempt("wrong-key-000").response.status_code == 401


def test_the_slowdown_is_bounded_by_an_hour(clock):
    slowdown = Slowdown(clock)
    for _ in range(20):
        for _ in range(5):
            slowdown.failed("a")
        clock.now += slowdown.refused_for("a") + 1
    for _ in range(5):
        slowdown.failed("a")
    assert slowdown.refused_for("a") == 3600


def test_failures_older_than_the_window_are_forgotten(clock):
    slowdown = Slowdown(clock)
    for _ in range(4):
        slowdown.failed("a")
    clock.now += 901
    slowdown.failed("a")
    assert slowdown.refused_for("a") == 0


@pytest.mark.parametrize(
    "path", ["/v1/diagnostics", "/v1/diagnostics/backends/openai/reactivate", "/metrics"]
)
def test_admin_endpoints_refuse_a_non_admin_key_and_accept_an_admin(access, path):
    flow = front_door(path, {"authorization": f"Bearer {ALICE}"})
    access.request(flow)
    assert flow.response.status_code == 403
    assert refusal(flow)["llm_error"]["code"] == "forbidden"
    flow = front_door(path, {"authorization": f"Bearer {OPS}"})
    access.request(flow)
    assert flow.response is None and key_of(flow).name == "ops"


def test_a_non_admin_key_may_ask_for_its_usage(access):
    flow = front_door("/v1/usage?group_by=day", {"authorization": f"Bearer {ALICE}"})
    access.request(flow)
    assert flow.response is None and key_of(flow).name == "alice"


@pytest.mark.parametrize("peer,allowed", [("127.0.0.1", True), ("::1", True), ("192.168.1.4", False)])
def test_without_keys_admin_endpoints_answer_loopback_only(peer, allowed):
    addon = Access(settings_with(keys=False))
    with taddons.context(Listeners(), addon):
        flow = front_door("/v1/diagnostics", peer=peer)
        addon.request(flow)
        assert (flow.response is None) is allowed


@pytest.mark.parametrize(
    "modes,listen_host,refused",
    [
        (["regular@127.0.0.1:8080"], "", False),
        (["reverse:http://127.0.0.1:9@localhost:8000"], "", False),
        (["regular@8080"], "", True),  # every interface
        (["regular@8080"], "0.0.0.0", True),
        (["reverse:http://127.0.0.1:9@192.168.1.2:8000"], "127.0.0.1", True),
    ],
)
def test_start_up_without_keys_is_refused_for_a_non_loopback_listener(caplog, modes, listen_host, refused):
    addon = Access(settings_with(keys=False))
    with taddons.context(Listeners(), addon) as tctx:
        tctx.options.update(mode=modes, listen_host=listen_host)
        with caplog.at_level(logging.ERROR):
            addon.running()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert bool(errors) is refused
    if refused:
        assert len(errors) == 1 and modes[0] in errors[0] and "access.keys" in errors[0]


def test_start_up_with_keys_accepts_any_address(caplog):
    addon = Access(settings_with())
    with taddons.context(Listeners(), addon) as tctx:
        tctx.options.update(mode=["regular@0.0.0.0:8080"])
        with caplog.at_level(logging.ERROR):
            addon.running()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_example_configurations_multi_user_block_is_valid_once_uncommented(monkeypatch):
    """llm.example.yaml shows the access block commented out; uncommented, it must load."""
    example = (Path(__file__).parents[1] / "llm.example.yaml").read_text().splitlines()
    start = example.index("# access:")
    block = [line[2:] for line in itertools.takewhile(lambda line: line.startswith("# "), example[start:])]
    for variable in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "ALICE_PROXY_KEY",
        "OPS_PROXY_KEY",
    ):
        monkeypatch.setenv(variable, f"{variable.lower()}-value")
    raw = yaml.safe_load("\n".join(example[:start] + block))
    access = parse_config(raw, "llm.example.yaml").access
    assert access.mode == "multi-user"
    assert [(k.name, k.key, k.admin) for k in access.keys] == [
        ("alice", "alice_proxy_key-value", False),
        ("ops", "ops_proxy_key-value", True),
    ]
    assert access.keys[0].limits is not None and access.keys[0].limits.requests_per_minute == 60
    assert access.default_limits.tokens_per_day == 2_000_000
