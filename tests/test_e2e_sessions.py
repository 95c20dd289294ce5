"""End to end: session identity and commands beyond the front door, through a real
`mitmdump -s addons/llm.py`.

- Continuity: what clients send to name their conversation (``x-session-id``, Claude Code's
  ``metadata.user_id`` session part) finds the session only within the client's own credential, and
  neither it nor the proxy's id travels upstream.
- HTTPS-proxy mode: SDKs calling the real provider hosts use the commands as at the front door.
- A real agent: Claude Code through the HTTPS proxy, told ``!/model(gemini:…)`` in its prompt, is
  answered by the proxy; its next turn (``--continue``, the same Claude Code session) is served by
  the Gemini backend.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import anthropic
import httpx
import openai
import pytest
from support.agents import AGENT_TIMEOUT, FENCE, Task, run_agent
from support.builders import proxied_http, proxied_http2
from support.fakes import AGENT_MODEL, AGENT_OUTPUT, Fakes, scripted_model
from support.proxy import Proxy

MARK = "[llm-proxy]"
SESSION_HEADER = "x-llm-session"
MODEL = scripted_model("Answer from the provider.")

pytestmark = pytest.mark.timeout(2 * AGENT_TIMEOUT + 60)


@pytest.fixture(scope="module")
def proxy(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    running = Proxy(tmp_path_factory.mktemp("sessions"), fakes.llm_yaml(), ["--set", f"block_list={FENCE}"])
    yield running.start()
    running.stop()


def posts(fakes: Fakes) -> list[tuple[str, object]]:
    return [(f.name, r) for f in fakes.all for r in f.requests if r.method == "POST"]


def claude_code_user_id(session: str) -> str:
    """``metadata.user_id`` as Claude Code 2.x writes it: a JSON string."""
    return json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": session})


def ask_anthropic(proxy: Proxy, key: str, text: str, user_id: str, history: list | None = None):
    client = anthropic.Anthropic(base_url=proxy.front_url + "/anthropic", api_key=key, max_retries=0)
    messages = [*(history or []), {"role": "user", "content": text}]
    raw = client.messages.with_raw_response.create(
        model=f"openai:{MODEL}", max_tokens=64, messages=messages, metadata={"user_id": user_id}
    )
    message = raw.parse()
    return raw.headers.get(SESSION_HEADER), "".join(b.text for b in message.content if b.type == "text")


def test_claude_code_session_ids_find_the_session_only_within_the_same_credential(proxy, fakes):
    conversation = str(uuid.uuid4())
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    first, _ = ask_anthropic(proxy, alice, "Start here", claude_code_user_id(conversation))
    # Later turn: another first message (Claude Code compacts), the same Claude Code session.
    again, _ = ask_anthropic(proxy, alice, "Elsewhere", claude_code_user_id(conversation))
    other, _ = ask_anthropic(proxy, alice, "Start here", claude_code_user_id(str(uuid.uuid4())))
    stolen, _ = ask_anthropic(proxy, bob, "Start here", claude_code_user_id(conversation))
    assert first == again
    assert len({first, other, stolen}) == 3
    for _, request in posts(fakes):
        assert first.encode() not in request.raw and first not in json.dumps(request.headers)


def test_a_session_header_is_a_lookup_key_and_never_travels_upstream(proxy, fakes):
    client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=f"k-{uuid.uuid4().hex}", max_retries=0)
    label = f"conv-{uuid.uuid4().hex[:8]}"

    def ask(text: str) -> str | None:
        raw = client.chat.completions.with_raw_response.create(
            model=f"anthropic:{MODEL}",
            messages=[{"role": "user", "content": text}],
            extra_headers={"x-session-id": label},
        )
        return raw.headers.get(SESSION_HEADER)

    one, two = ask("One"), ask("Two")
    assert one == two and one != label and one.startswith("s-")
    [(served, request)] = [p for p in posts(fakes)][:1]
    assert served == "anthropic"
    for _, request in posts(fakes):
        assert label not in json.dumps(request.headers) and label.encode() not in request.raw


def test_commands_work_for_sdks_calling_the_provider_hosts_through_the_https_proxy(proxy, fakes):
    chat = openai.OpenAI(api_key=f"k-{uuid.uuid4().hex}", http_client=proxied_http(proxy), max_retries=0)
    history = [{"role": "user", "content": f"!/model(anthropic:{MODEL})"}]
    answer = chat.chat.completions.create(model="gpt-4o", messages=history).choices[0].message.content
    assert answer == f"{MARK} model for this session: anthropic:{MODEL}"
    assert posts(fakes) == []
    history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "Now really"}]
    reply = chat.chat.completions.create(model="gpt-4o", messages=history).choices[0].message.content
    assert reply == "Answer from the provider."
    assert [name for name, _ in posts(fakes)] == ["anthropic"]

    claude = anthropic.Anthropic(
        api_key=f"k-{uuid.uuid4().hex}", http_client=proxied_http2(proxy), max_retries=0
    )
    with claude.messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "!/status"}]
    ) as events:
        assert "".join(events.text_stream).startswith(f"{MARK} session s-")
    assert [name for name, _ in posts(fakes)] == ["anthropic"]
    for _, request in posts(fakes):
        assert b"!/" not in request.raw


def test_claude_code_is_switched_to_another_backend_by_a_command_in_its_prompt(proxy, fakes, tmp_path):
    proxies: Callable[[str], Proxy] = lambda _backend: proxy  # noqa: E731 (one proxy, every backend)
    home, workdir = tmp_path / "home", tmp_path / "work"
    workdir.mkdir()
    switch = Task(prompt=f"!/model(gemini:{AGENT_MODEL})")
    first = run_agent("claude", "anthropic", "https-proxy", proxies, fakes, home, switch, workdir)
    assert first.answer.startswith(f"{MARK} model for this session: gemini:{AGENT_MODEL}"), first.output
    assert [r for r in fakes.gemini.requests if r.method == "POST"] == []
    assert all(b"!/model" not in r.raw for r in fakes.anthropic.requests)  # count calls included

    fakes.reset()
    follow = Task(flags=("--continue",))
    second = run_agent("claude", "anthropic", "https-proxy", proxies, fakes, home, follow, workdir)
    assert AGENT_OUTPUT in second.answer, second.output
    served = [r for r in fakes.gemini.requests if r.method == "POST"]
    assert len(served) >= 2, "the tool call and the answer after it come from the Gemini backend"
    assert [r for r in fakes.anthropic.requests if r.method == "POST" and "count" not in r.path] == []
    for request in served + fakes.anthropic.requests:
        assert b"!/model" not in request.raw and MARK.encode() not in request.raw


def test_with_proxy_keys_sessions_are_scoped_by_the_key_name(fakes, start_proxy):
    keys = {"alice": "alice-sessions-proxy-key-1", "bob": "bob-sessions-proxy-key-22"}
    admin = "ops-sessions-proxy-key-333"
    access = "access:\n  mode: multi-user\n  keys:\n" + "".join(
        f'    - {{name: {name}, key: "{key}"}}\n' for name, key in keys.items()
    )
    guarded = start_proxy(fakes.llm_yaml() + access + f'    - {{name: ops, key: "{admin}", admin: true}}\n')
    seen = {}
    for name, key in keys.items():
        client = openai.OpenAI(base_url=guarded.front_url + "/v1", api_key=key, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model=f"openai:{MODEL}", messages=[{"role": "user", "content": "!/status"}]
        )
        seen[name] = raw.headers[SESSION_HEADER]
    assert seen["alice"] != seen["bob"] and posts(fakes) == []
    report = httpx.get(guarded.front_url + "/v1/diagnostics", headers={"authorization": f"Bearer {admin}"})
    clients = {s["id"]: s["client"] for s in report.json()["sessions"]["sessions"]}
    assert clients == {seen["alice"]: "key:alice", seen["bob"]: "key:bob"}
