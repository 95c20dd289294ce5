"""In-process: session identity and scoping (addons/sessions.py, backends/sessions.py), on
mitmproxy's own test flows through FrontDoor → Sessions → RouteRequests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from addons import exchange
from addons.frontdoor import FrontDoor
from addons.listeners import Listeners
from addons.router import RouteRequests
from addons.sessions import SESSION_HEADER, Sessions
from addons.settings import Settings
from backends.sessions import SessionTable

CONFIG = """
backends:
  openai: {type: openai, base_url: "http://127.0.0.1:9/v1", api_keys: ["fake-sessions-openai-key"]}
  anthropic: {type: anthropic, base_url: "http://127.0.0.1:9", api_keys: ["sk-ant-fake-sessions"]}
default_backend: openai
sessions: {max: 3, idle_seconds: 60}
"""
FRONT_DOOR = ProxyMode.parse("reverse:http://127.0.0.1:9@127.0.0.1:8000")


@dataclass
class Chain:
    settings: Settings
    frontdoor: FrontDoor
    sessions: Sessions
    router: RouteRequests

    def send(self, path: str, body: dict, headers: dict[str, str] | None = None) -> exchange.Exchange:
        all_headers = {
            "content-type": "application/json",
            "authorization": "Bearer own-key",
            **(headers or {}),
        }
        request = http.Request.make("POST", f"http://127.0.0.1:8000{path}", json.dumps(body), all_headers)
        flow = tflow.tflow(req=request)
        flow.client_conn.proxy_mode = FRONT_DOOR
        flow.client_conn.sockname = ("127.0.0.1", 8000)
        for addon in (self.frontdoor, self.sessions, self.router):
            addon.request(flow)
        self.flow = flow
        ex = exchange.get(flow)
        assert ex is not None
        return ex


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    config = tmp_path / "llm.yaml"
    config.write_text(CONFIG)
    settings = Settings()
    made = Chain(settings, FrontDoor(settings), Sessions(settings), RouteRequests(settings))
    with taddons.context(settings, Listeners(), made.frontdoor, made.sessions, made.router) as tctx:
        tctx.configure(settings, confdir=str(tmp_path / "confdir"), llm_config=str(config))
        tctx.configure(made.sessions)
        yield made
        made.sessions.done()


def chat(*texts: str, system: str = "You are terse.") -> dict:
    messages = [{"role": "system", "content": system}]
    for i, text in enumerate(texts):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return {"model": "gpt-4o", "messages": messages}


def test_a_conversation_is_found_again_by_its_start_and_counts_its_turns(chain):
    first = chain.send("/v1/chat/completions", chat("Hi"))
    again = chain.send("/v1/chat/completions", chat("Hi", "Hello", "More"))
    other = chain.send("/v1/chat/completions", chat("Something else"))
    assert first.session is again.session and other.session is not first.session
    assert first.session.turns == 2 and first.session.user_turns == 2 and first.session.user_turn


def test_identical_histories_with_different_credentials_get_different_sessions(chain):
    a = chain.send("/v1/chat/completions", chat("Hi"), {"authorization": "Bearer key-a"})
    b = chain.send("/v1/chat/completions", chat("Hi"), {"authorization": "Bearer key-b"})
    named = chain.send(
        "/v1/chat/completions", chat("Hi"), {"authorization": "Bearer key-b", "x-llm-client": "a"}
    )
    assert a.session is not b.session and named.session is b.session  # x-llm-client scopes nothing
    assert a.session.client.startswith("key:") and "key-a" not in a.session.client


def test_a_tool_follow_up_is_a_turn_but_not_a_user_turn(chain):
    body = {
        "model": "claude-x",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "18"}]},
        ],
    }
    ex = chain.send("/v1/messages", body)
    assert ex.session.turns == 1 and ex.session.user_turns == 0 and not ex.session.user_turn


def test_claude_code_session_ids_in_both_formats_find_the_same_session(chain):
    def ask(user_id: str, text: str) -> exchange.Exchange:
        body = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": text}]}
        return chain.send("/v1/messages", {**body, "metadata": {"user_id": user_id}})

    sid = "0d4c9f1e-2b8a-4c1e-9a51-3f6f2c1d7b90"
    new = ask(json.dumps({"device_id": "x", "account_uuid": "", "session_id": sid}), "one")
    old = ask(f"user_abc_account__session_{sid}", "two")
    assert new.session is old.session


def test_a_request_without_commands_or_overrides_is_not_parsed_and_keeps_its_selector(chain):
    ex = chain.send("/v1/chat/completions", chat("Plain question"))
    assert ex.request is None and not ex.rewritten and ex.selector == "gpt-4o"
    assert ex.target is not None and ex.target.instance == "openai"


def test_a_command_only_message_is_answered_with_the_session_header(chain):
    ex = chain.send("/v1/chat/completions", chat("!/model(anthropic:claude-x)"))
    response = chain.flow.response
    assert response is not None and response.headers[SESSION_HEADER] == ex.session.id
    assert ex.target is None  # routing stepped aside
    nxt = chain.send("/v1/chat/completions", chat("!/model(anthropic:claude-x)", "[llm-proxy] ok", "Go"))
    assert nxt.target is not None and (nxt.target.instance, nxt.target.model) == ("anthropic", "claude-x")
    assert chain.flow.request.headers["x-llm-route"] == "anthropic:claude-x"
    assert [m.content[0].text for m in nxt.request.messages] == ["Go"]


def test_the_table_is_bounded_by_count_and_idle_age():
    dropped: list[str] = []
    table = SessionTable(2, 10.0, on_drop=lambda s: dropped.append(s.id))
    a = table.find("c", "k1", now=0).session
    table.find("c", "k2", now=1)
    table.find("c", "k1", now=2)  # a is seen again: k2 is now the oldest
    table.find("c", "k3", now=3)
    assert len(table) == 2 and table.find("c", "k1", now=4).session is a
    assert table.find("c", "k1", now=20).new and a.id in dropped  # idle longer than 10 s


def test_sessions_survive_a_restart_through_the_state_store(tmp_path):
    config = tmp_path / "llm.yaml"
    config.write_text(CONFIG)
    ids = []
    for _ in range(2):
        settings = Settings()
        made = Chain(settings, FrontDoor(settings), Sessions(settings), RouteRequests(settings))
        with taddons.context(settings, Listeners(), made.frontdoor, made.sessions, made.router) as tctx:
            tctx.configure(settings, confdir=str(tmp_path / "confdir"), llm_config=str(config))
            tctx.configure(made.sessions)
            ids.append(made.send("/v1/chat/completions", chat("Remember me")).session.id)
            made.sessions.done()  # the writer finishes its queue
    assert ids[0] == ids[1]


def test_diagnostics_show_ids_and_counters_never_content(chain):
    chain.send("/v1/chat/completions", chat("A secret plan"))
    report = chain.sessions.diagnostics()
    assert report["count"] == 1 and set(report["sessions"][0]) >= {
        "id",
        "client",
        "model",
        "turns",
        "last_seen",
    }
    assert "secret" not in json.dumps(report)


def test_with_commands_disabled_command_text_is_plain_text(tmp_path):
    config = tmp_path / "llm.yaml"
    config.write_text(CONFIG + "commands: {enabled: false}\n")
    settings = Settings()
    made = Chain(settings, FrontDoor(settings), Sessions(settings), RouteRequests(settings))
    with taddons.context(settings, Listeners(), made.frontdoor, made.sessions, made.router) as tctx:
        tctx.configure(settings, confdir=str(tmp_path / "confdir"), llm_config=str(config))
        tctx.configure(made.sessions)
        ex = made.send("/v1/chat/completions", chat("!/model(anthropic:claude-x)"))
        assert made.flow.response is None and ex.request is None and ex.target.instance == "openai"
        made.sessions.done()


def test_a_malformed_body_with_a_command_gets_an_error_in_the_clients_protocol(chain):
    body = {
        "model": "claude-x",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "nope"}]}],
    }
    body["messages"].append({"role": "user", "content": "!/status"})
    chain.send("/v1/messages", body)
    response = chain.flow.response
    assert response is not None and response.status_code == 400
    assert json.loads(response.content)["type"] == "error"
