"""End to end: in-chat commands and sessions through a real `mitmdump -s addons/llm.py`, with the
official SDKs (openai Chat and Responses, anthropic, google-genai), streamed and whole.

Each client protocol talks to its own-protocol fake (``SAME``); a switch goes to another family
(``OTHER``). The fakes answer a scripted text whatever they get, and record every request: "no
upstream call" and "no command text upstream" are read from those records. One proxy for the
module; each test uses its own client key, so each has sessions of its own.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types
from support.fakes import Fakes, RecordedRequest, scripted_model
from support.proxy import Proxy

PROTOCOLS = ("openai-chat", "openai-responses", "anthropic", "gemini")
SAME = {"openai-chat": "openai", "openai-responses": "openai", "anthropic": "anthropic", "gemini": "gemini"}
OTHER = {"openai-chat": "anthropic", "openai-responses": "gemini", "anthropic": "gemini", "gemini": "openai"}
STREAMS = [pytest.param(True, id="stream"), pytest.param(False, id="whole")]
CASES = [(p, s) for p in PROTOCOLS for s in (True, False)]
CASE_IDS = [f"{p}-{'stream' if s else 'whole'}" for p, s in CASES]
MODEL = scripted_model("Answer from the provider.")
MARK = "[llm-proxy]"
SESSION_HEADER = "x-llm-session"


@dataclass
class Reply:
    text: str
    session: str | None  # the x-llm-session header


History = list[tuple[str, str]]  # (role "user" | "assistant", text)


def chat(base: str, key: str, model: str, history: History, stream: bool) -> Reply:
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    messages: Any = [{"role": role, "content": text} for role, text in history]
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
        return Reply(raw.parse().choices[0].message.content or "", raw.headers.get(SESSION_HEADER))
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=messages, stream=True
    ) as raw:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        return Reply(text, raw.headers.get(SESSION_HEADER))


def responses(base: str, key: str, model: str, history: History, stream: bool) -> Reply:
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    items: Any = [{"role": role, "content": text} for role, text in history]
    if not stream:
        raw = client.responses.with_raw_response.create(model=model, input=items)
        return Reply(raw.parse().output_text, raw.headers.get(SESSION_HEADER))
    with client.responses.with_streaming_response.create(model=model, input=items, stream=True) as raw:
        events = list(raw.parse())
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        done = [e.response for e in events if e.type == "response.completed"]
        assert done and done[0].output_text == text, "the stream did not complete with the same text"
        return Reply(text, raw.headers.get(SESSION_HEADER))


def messages(base: str, key: str, model: str, history: History, stream: bool) -> Reply:
    client = anthropic.Anthropic(base_url=base + "/anthropic", api_key=key, max_retries=0)
    kwargs: Any = {
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": role, "content": text} for role, text in history],
    }
    if not stream:
        raw = client.messages.with_raw_response.create(**kwargs)
        message = raw.parse()
        assert message.stop_reason == "end_turn" and message.usage.output_tokens >= 0
        return Reply(
            "".join(b.text for b in message.content if b.type == "text"), raw.headers.get(SESSION_HEADER)
        )
    with client.messages.stream(**kwargs) as events:
        message = events.get_final_message()
        header = events.response.headers.get(SESSION_HEADER)
    return Reply("".join(b.text for b in message.content if b.type == "text"), header)


def gemini(base: str, key: str, model: str, history: History, stream: bool) -> Reply:
    seen: dict[str, str | None] = {}

    def keep(response: Any) -> None:
        seen["session"] = response.headers.get(SESSION_HEADER)

    options = types.HttpOptions(base_url=base, client_args={"event_hooks": {"response": [keep]}})
    client = genai.Client(api_key=key, http_options=options)
    contents = [
        types.Content(role="model" if role == "assistant" else "user", parts=[types.Part(text=text)])
        for role, text in history
    ]
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=contents))
    else:
        chunks = [client.models.generate_content(model=model, contents=contents)]
    text = "".join(p.text or "" for c in chunks for p in c.candidates[0].content.parts or [])
    return Reply(text, seen.get("session"))


CLIENTS: dict[str, Callable[[str, str, str, History, bool], Reply]] = {
    "openai-chat": chat,
    "openai-responses": responses,
    "anthropic": messages,
    "gemini": gemini,
}


@pytest.fixture(scope="module")
def proxy(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    config = (
        fakes.llm_yaml()
        + 'sessions: {max: 1000, idle_seconds: 600}\ncommands: {enabled: true, prefix: "!/"}\n'
    )
    running = Proxy(tmp_path_factory.mktemp("commands"), config).start()
    yield running
    running.stop()


class Conversation:
    """One client's conversation: its key, protocol, stream mode and the history it re-sends."""

    def __init__(self, proxy: Proxy, protocol: str, stream: bool, key: str | None = None) -> None:
        self.proxy, self.protocol, self.stream = proxy, protocol, stream
        self.key = key or f"client-{uuid.uuid4().hex[:12]}"
        self.history: History = []

    def say(self, text: str, model: str | None = None) -> Reply:
        self.history.append(("user", text))
        selector = model or f"{SAME[self.protocol]}:{MODEL}"
        reply = CLIENTS[self.protocol](self.proxy.front_url, self.key, selector, self.history, self.stream)
        self.history.append(("assistant", reply.text))
        return reply


def generations(fakes: Fakes) -> list[tuple[str, RecordedRequest]]:
    return [(f.name, r) for f in fakes.all for r in f.requests if r.method == "POST"]


def assert_no_command_text(fakes: Fakes) -> None:
    for name, request in generations(fakes):
        assert b"!/" not in request.raw, f"command text reached the {name} fake: {request.raw[:300]!r}"
        assert MARK.encode() not in request.raw, f"a proxy answer reached the {name} fake"


def temperature(request: RecordedRequest) -> Any:
    body = request.body
    return (
        body.get("generationConfig", {}).get("temperature") if "contents" in body else body.get("temperature")
    )


# -- tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol, stream", CASES, ids=CASE_IDS)
def test_status_alone_is_answered_by_the_proxy_without_calling_a_provider(proxy, fakes, protocol, stream):
    reply = Conversation(proxy, protocol, stream).say("!/status")
    assert reply.text.startswith(f"{MARK} session s-"), reply.text
    assert reply.session and reply.session in reply.text
    assert generations(fakes) == []


@pytest.mark.parametrize("protocol, stream", CASES, ids=CASE_IDS)
def test_help_and_unknown_commands_list_the_valid_commands(proxy, fakes, protocol, stream):
    talk = Conversation(proxy, protocol, stream)
    helped = talk.say("!/help")
    unknown = talk.say("!/frobnicate(3)")
    bad = talk.say("!/set(temperature=hot)")
    assert helped.text.startswith(MARK) and "!/oneoff(backend:model)" in helped.text
    assert unknown.text.startswith(f"{MARK} unknown command !/frobnicate") and "!/set(" in unknown.text
    assert bad.text.startswith(f"{MARK} temperature=hot: expected a float") and "!/unset(" in bad.text
    assert generations(fakes) == []


@pytest.mark.parametrize("protocol, stream", CASES, ids=CASE_IDS)
def test_model_switch_serves_the_following_turns_elsewhere_with_no_command_text_upstream(
    proxy, fakes, protocol, stream
):
    talk = Conversation(proxy, protocol, stream)
    switched = talk.say(f"!/model({OTHER[protocol]}:{MODEL})")
    assert switched.text == f"{MARK} model for this session: {OTHER[protocol]}:{MODEL}"
    assert generations(fakes) == []
    first = talk.say("What is the weather?")
    second = talk.say("And tomorrow?")
    assert first.text == second.text == "Answer from the provider."
    assert [name for name, _ in generations(fakes)] == [OTHER[protocol]] * 2
    assert first.session == second.session == switched.session
    assert_no_command_text(fakes)


@pytest.mark.parametrize("protocol, stream", CASES, ids=CASE_IDS)
def test_oneoff_with_text_serves_only_that_request_elsewhere_without_the_command(
    proxy, fakes, protocol, stream
):
    talk = Conversation(proxy, protocol, stream)
    talk.say(f"Check this please !/oneoff({OTHER[protocol]}:{MODEL})")
    [(served, request)] = generations(fakes)
    assert served == OTHER[protocol] and b"Check this please" in request.raw
    talk.say("Thanks, and now?")
    assert sorted(name for name, _ in generations(fakes)) == sorted([OTHER[protocol], SAME[protocol]])
    assert_no_command_text(fakes)


@pytest.mark.parametrize("protocol, stream", CASES, ids=CASE_IDS)
def test_set_and_unset_change_the_parameters_the_provider_gets(proxy, fakes, protocol, stream):
    talk = Conversation(proxy, protocol, stream)
    assert talk.say("!/set(temperature=0.25, loop-detection=off)").text.startswith(
        f"{MARK} set temperature=0.25"
    )
    talk.say("First question")
    status = talk.say("!/status")
    assert "loop-detection=off" in status.text and "temperature=0.25" in status.text
    talk.say("!/unset(temperature)")
    talk.say("Second question")
    sent = [request for _, request in generations(fakes)]
    assert [temperature(r) for r in sent] == [0.25, None]
    assert_no_command_text(fakes)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_identical_histories_from_different_credentials_never_share_a_session(proxy, fakes, protocol):
    alice, bob = Conversation(proxy, protocol, False), Conversation(proxy, protocol, False)
    alice.say("Hello there")
    bob.say("Hello there")
    a = alice.say(f"!/model({OTHER[protocol]}:{MODEL})")
    b = bob.say("!/status")
    assert a.session and b.session and a.session != b.session
    assert "model: as the client asks" in b.text
    bob.say("Go on")
    assert generations(fakes)[-1][0] == SAME[protocol]


def test_a_relayed_answer_carries_the_session_header_and_diagnostics_list_it(proxy, fakes):
    talk = Conversation(proxy, "openai-chat", True)
    first, second = talk.say("Hi"), talk.say("More")
    assert first.session and first.session == second.session
    with urllib.request.urlopen(proxy.front_url + "/v1/diagnostics") as response:
        report = json.load(response)["sessions"]
    mine = [s for s in report["sessions"] if s["id"] == first.session]
    assert mine and mine[0]["turns"] == 2 and mine[0]["user_turns"] == 2
    assert "Hi" not in json.dumps(mine)


def test_a_gemini_stream_without_sse_gets_the_answer_as_a_json_array(proxy, fakes):
    """Gemini clients that omit ?alt=sse read a streamed JSON array; the proxy's own answer too."""
    url = f"{proxy.front_url}/v1beta/models/gemini:{MODEL}:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "!/help"}]}]}
    response = httpx.post(url, json=body, headers={"x-goog-api-key": f"k-{uuid.uuid4().hex}"}, timeout=10)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    chunks = response.json()
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text.startswith(MARK) and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] == 0 and response.headers[SESSION_HEADER]
    assert generations(fakes) == []


def test_a_count_call_holding_command_text_is_estimated_by_the_proxy_not_forwarded(proxy, fakes):
    client = anthropic.Anthropic(base_url=proxy.front_url + "/anthropic", api_key="k-count", max_retries=0)
    history = [
        {"role": "user", "content": "!/set(temperature=0.5)"},
        {"role": "assistant", "content": f"{MARK} set temperature=0.5"},
        {"role": "user", "content": "How many tokens is this?"},
    ]
    raw = client.messages.with_raw_response.count_tokens(model=f"anthropic:{MODEL}", messages=history)
    assert raw.parse().input_tokens > 0 and raw.headers["x-llm-token-count"].startswith("estimated")
    plain = client.messages.with_raw_response.count_tokens(
        model=f"anthropic:{MODEL}", messages=[{"role": "user", "content": "Plain"}]
    )
    assert "x-llm-token-count" not in plain.headers  # forwarded as before
    assert [r.path for _, r in generations(fakes)] == ["/v1/messages/count_tokens"]
    assert_no_command_text(fakes)


LOOP_UNIT = "I will now check the configuration file again to be sure that the value is right. "
LOOPING = scripted_model(LOOP_UNIT, repeat=400)  # 32 KB of one sentence, as a model stuck in a loop
LOOP_NOTE = f"{MARK} loop detected:"


@pytest.mark.parametrize("protocol, stream", CASES, ids=CASE_IDS)
def test_loop_detection_off_lets_this_sessions_loop_through_until_unset(proxy, fakes, protocol, stream):
    """``!/set(loop-detection=off)`` is the session's own: its looping answer arrives whole while
    another session's is still cut, and ``!/unset(loop-detection)`` brings the cut back."""
    looping = f"{SAME[protocol]}:{LOOPING}"
    relaxed, other = Conversation(proxy, protocol, stream), Conversation(proxy, protocol, stream)
    assert relaxed.say("!/set(loop-detection=off)").text.startswith(f"{MARK} set loop-detection=off")
    uncut = relaxed.say("Check the configuration.", model=looping)
    assert uncut.text == LOOP_UNIT * 400, uncut.text[-200:]
    cut = other.say("Check the configuration.", model=looping)
    assert LOOP_NOTE in cut.text and len(cut.text) < len(LOOP_UNIT) * 100
    relaxed.say("!/unset(loop-detection)")
    again = relaxed.say("Check it once more.", model=looping)
    assert LOOP_NOTE in again.text and len(again.text) < len(LOOP_UNIT) * 100
