"""End to end: the small guards through a real `mitmdump -s addons/llm.py`, with the official
SDKs. The reasoning token floor: a request to a model the floor lists, with a smaller
``max_tokens``, reaches the provider with the floor; other models and larger limits as sent. The
empty-answer retry: an empty answer, whole or streamed (a stream of framing events only, held in
the relay until it ended), is asked again with a note (the scripted fake answers its ``steered``
text to a request carrying one), in every protocol, same and translated."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
from support.builders import CLIENT_KEY
from support.fakes import Fakes, scripted_model
from support.proxy import Proxy
from test_e2e_policies import NORMAL_END, PROTOCOLS, ROUTES, Ask, ask

FLOOR = 'reasoning_floor: {"o*": 1024, "anthropic:claude-opus*": 2048}\n'


@pytest.fixture(scope="module")
def proxy(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    running = Proxy(tmp_path_factory.mktemp("guards"), fakes.llm_yaml() + FLOOR).start()
    yield running
    running.stop()


def limit(fakes: Fakes, backend: str) -> int:
    body = [r for r in getattr(fakes, backend).requests if r.method == "POST"][-1].body
    return body.get("max_completion_tokens") or body.get("max_tokens")


def chat(proxy: Proxy, model: str, max_tokens: int) -> str:
    client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    messages = [{"role": "user", "content": "Hi"}]
    reply = client.chat.completions.create(model=model, messages=messages, max_completion_tokens=max_tokens)
    return reply.choices[0].message.content or ""


def test_a_limit_below_the_floor_reaches_the_provider_raised(proxy, fakes):
    assert chat(proxy, "openai:o3-mini", 100)
    assert limit(fakes, "openai") == 1024


def test_a_limit_above_the_floor_and_other_models_are_left_alone(proxy, fakes):
    chat(proxy, "openai:o3-mini", 5000)
    assert limit(fakes, "openai") == 5000
    chat(proxy, "openai:gpt-4o", 100)
    assert limit(fakes, "openai") == 100


def test_the_floor_applies_on_a_translated_route_and_in_every_protocol(proxy, fakes):
    chat(proxy, "anthropic:claude-opus-4-5", 300)
    assert limit(fakes, "anthropic") == 2048
    client = anthropic.Anthropic(base_url=proxy.front_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0)
    messages = [{"role": "user", "content": "Hi"}]
    client.messages.create(model="anthropic:claude-opus-4-5", max_tokens=50, messages=messages)
    assert limit(fakes, "anthropic") == 2048


EMPTY_NOTE = "[llm-proxy] Your previous answer was empty"


def generations(fakes: Fakes, backend: str) -> list:
    return [r for r in getattr(fakes, backend).requests if r.method == "POST"]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("route", list(ROUTES))
def test_an_empty_answer_is_asked_again_with_a_note(proxy, fakes, protocol, route, stream):
    """The fake answers nothing (streamed: only the framing events) until the request carries the
    note; the client gets only the second answer, in its protocol, with a normal end."""
    backend = ROUTES[route][protocol]
    before = len(generations(fakes, backend))
    model = scripted_model("", steered="Here is the answer after all.")
    reply = ask(proxy, protocol, Ask(f"{backend}:{model}", stream, tools=()))
    assert reply.text == "Here is the answer after all." and reply.stop == NORMAL_END[protocol]
    sent = generations(fakes, backend)[before:]
    assert len(sent) == 2
    assert EMPTY_NOTE not in sent[0].raw.decode() and EMPTY_NOTE in sent[1].raw.decode()


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_an_answer_that_stays_empty_is_retried_once_and_then_passed_on(proxy, fakes, stream):
    before = len(generations(fakes, "openai"))
    reply = ask(proxy, "openai-chat", Ask(f"openai:{scripted_model('')}", stream, tools=()))
    assert reply.text == "" and reply.stop == "stop"
    assert len(generations(fakes, "openai")) - before == 2


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("answer", ["text", "tool call"])
def test_an_answer_with_content_is_not_retried(proxy, fakes, stream, answer):
    text, calls = ("Fine.", ()) if answer == "text" else ("", [("Read", {"file_path": "/a.txt"})])
    before = len(generations(fakes, "anthropic"))
    model = scripted_model(text, calls, steered="Retried.")
    reply = ask(proxy, "anthropic", Ask(f"anthropic:{model}", stream, tools=("Read",)))
    assert reply.text == text and [name for name, _ in reply.calls] == [name for name, _ in calls]
    assert len(generations(fakes, "anthropic")) - before == 1
