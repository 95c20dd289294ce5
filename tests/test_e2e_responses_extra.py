"""End to end: the Responses endpoints beside generation, through a real `mitmdump -s addons/llm.py`.

The official `openai` SDK calls `responses.compact`, `responses.input_tokens.count`,
`responses.retrieve` and `responses.cancel` at the front door and, as an unmodified client, at
api.openai.com through the HTTPS proxy. On the OpenAI backend each passes through to the fake,
which records the path; on the Anthropic and Gemini backends compaction is emulated with the
target model and input tokens are estimated, and the stored-response endpoints get a native 400
when no OpenAI backend exists. Codex 0.171's own compaction — a `compaction_trigger` item at the
end of an ordinary streamed request — is driven the same way, and the compaction item it gets
back is sent again in the next request, as Codex does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from support.agents import Task, agents_config, run_agent
from support.builders import CLIENT_KEY, proxied_http
from support.fakes import (
    AGENT_MODEL,
    AGENT_OUTPUT,
    ANTHROPIC_KEY,
    GEMINI_KEY,
    OPENAI_KEY,
    Answer,
    FakeAnthropic,
    FakeGemini,
    Fakes,
)
from support.fakes.common import Json
from support.fakes.openai_extra import FAKE_SEAL, STORED_ID, FakeOpenAIExtra
from support.proxy import Proxy

from translators import openai_responses

HISTORY: list[Any] = [
    {"role": "user", "content": "Run echo hi."},
    {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": '{"command":"echo hi"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "hi"},
    {"role": "user", "content": "Now tell me what it printed."},
]
SHELL: list[Any] = [
    {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}, "strict": None}
]
# The fakes' answer when the last user turn holds the tool result "hi" (tests/support/fakes): what
# the "model" summarises HISTORY to.
FAKE_SUMMARY = "Tool said: hi"
MODELS = {"anthropic": "anthropic:claude-fake", "gemini": "gemini:gemini-fake", "chat": "chat:gpt-fake-1"}
FAKE_OF = {"anthropic": "anthropic", "gemini": "gemini", "chat": "openai"}  # chat: the OpenAI fake's Chat API
KEYS = (OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY)


@pytest.fixture(scope="module")
def extra_fakes() -> Iterator[Fakes]:
    started = Fakes(openai=FakeOpenAIExtra(OPENAI_KEY)).start()
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def _fresh(extra_fakes: Fakes) -> None:
    extra_fakes.reset()


@pytest.fixture(scope="module")
def extra_proxy(extra_fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    chat = (
        f'  chat: {{type: openai-compatible, base_url: "{extra_fakes.openai.base_url}/v1", '
        f'api_keys: ["{OPENAI_KEY}"]}}\n'
    )
    config = extra_fakes.llm_yaml().replace("default_backend:", chat + "default_backend:")
    running = Proxy(tmp_path_factory.mktemp("responses-extra"), config).start()
    yield running
    running.stop()


def front(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def at_openai(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(api_key=CLIENT_KEY, http_client=proxied_http(proxy), max_retries=0)


def no_key_in(text: str) -> None:
    assert not any(key in text for key in (*KEYS, CLIENT_KEY))


def sent_text(body: dict[str, Any]) -> str:
    """Every text the provider got, in any protocol."""
    return json.dumps(body, ensure_ascii=False)


# -- compact ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("client_of", [front, at_openai], ids=["front-door", "https-proxy"])
def test_compact_on_the_openai_backend_passes_through_to_its_compact_endpoint(
    extra_proxy, extra_fakes, client_of
):
    compacted = client_of(extra_proxy).responses.compact(model="gpt-fake-1", input=HISTORY)

    assert compacted.object == "response.compaction"
    assert [item.type for item in compacted.output] == ["message", "message", "compaction"]
    assert compacted.output[-1].encrypted_content == FAKE_SEAL  # type: ignore[union-attr]
    [upstream] = extra_fakes.openai.requests
    assert (upstream.method, upstream.path) == ("POST", "/v1/responses/compact")
    assert upstream.body["input"] == HISTORY and upstream.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert CLIENT_KEY not in json.dumps(upstream.headers)


@pytest.mark.parametrize("backend", ["anthropic", "gemini"])
def test_compact_elsewhere_asks_the_target_model_for_the_summary_and_answers_openais_shape(
    extra_proxy, extra_fakes, backend
):
    compact = front(extra_proxy).responses.compact  # Codex sends its tools too (the SDK has no parameter)
    compacted = compact(model=MODELS[backend], input=HISTORY, extra_body={"tools": SHELL})

    assert compacted.object == "response.compaction" and compacted.usage.total_tokens > 0
    *kept, sealed = compacted.output
    assert [item.role for item in kept] == ["user", "user"]  # type: ignore[union-attr]
    assert sealed.type == "compaction"
    assert openai_responses.unseal(sealed.encrypted_content) == FAKE_SUMMARY  # type: ignore[union-attr]
    [upstream] = getattr(extra_fakes, backend).requests
    assert openai_responses.COMPACT_INSTRUCTION in sent_text(upstream.body)
    assert "shell" in sent_text(upstream.body), "the tools stay declared for the calls in history"
    assert extra_fakes.openai.requests == []
    no_key_in(compacted.model_dump_json())


def test_compact_through_the_https_proxy_with_a_selector_is_emulated(extra_proxy, extra_fakes):
    compacted = at_openai(extra_proxy).responses.compact(model=MODELS["anthropic"], input="Summarise me.")

    assert openai_responses.unseal(compacted.output[-1].encrypted_content) == "Hello from anthropic!"  # type: ignore[union-attr]
    assert len(extra_fakes.anthropic.requests) == 1 and extra_fakes.openai.requests == []


def test_a_compaction_the_target_cannot_answer_is_the_clients_own_error(extra_proxy, extra_fakes):
    with pytest.raises(openai.BadRequestError) as caught:
        front(extra_proxy).responses.compact(
            model=MODELS["anthropic"], input=HISTORY, previous_response_id="r"
        )
    assert "previous_response_id" in caught.value.message
    assert extra_fakes.anthropic.requests == []


# -- Codex's compaction: a compaction_trigger in an ordinary request --------------------------------


@pytest.mark.parametrize("backend", ["anthropic", "gemini", "chat"])
def test_codex_compaction_streams_one_compaction_item_that_the_next_request_reads_as_the_summary(
    extra_proxy, extra_fakes, backend
):
    client = front(extra_proxy)
    trigger = [*HISTORY, {"type": "compaction_trigger"}]
    with client.responses.stream(model=MODELS[backend], input=trigger, tools=SHELL) as events:  # type: ignore[arg-type]
        done = [e.item for e in events if e.type == "response.output_item.done"]
        final = events.get_final_response()
    assert [item.type for item in done] == ["compaction"] == [item.type for item in final.output]
    summary = openai_responses.unseal(done[0].encrypted_content)  # type: ignore[union-attr]
    assert summary == FAKE_SUMMARY

    later = [HISTORY[0], done[0].model_dump(exclude_none=True), {"role": "user", "content": "Go on."}]
    answer = client.responses.create(model=MODELS[backend], input=later)  # type: ignore[arg-type]

    assert answer.output_text == f"Hello from {FAKE_OF[backend]}!"
    first, second = getattr(extra_fakes, FAKE_OF[backend]).requests
    assert openai_responses.COMPACT_INSTRUCTION in sent_text(first.body)
    assert openai_responses.SUMMARY_NOTE.strip() in sent_text(second.body) and summary in sent_text(
        second.body
    )


# -- input_tokens -----------------------------------------------------------------------------------


def test_input_tokens_on_the_openai_backend_are_the_providers_count(extra_proxy, extra_fakes):
    counted = front(extra_proxy).responses.input_tokens.count(model="gpt-fake-1", input=HISTORY)

    assert (counted.object, counted.input_tokens) == ("response.input_tokens", 42)
    [upstream] = extra_fakes.openai.requests
    assert upstream.path == "/v1/responses/input_tokens"


@pytest.mark.parametrize("backend", ["anthropic", "gemini"])
def test_input_tokens_elsewhere_are_estimated_and_say_so(extra_proxy, extra_fakes, backend):
    raw = front(extra_proxy).responses.input_tokens.with_raw_response.count(
        model=MODELS[backend], input=HISTORY
    )
    counted = raw.parse()

    assert counted.object == "response.input_tokens" and counted.input_tokens > 10
    assert raw.headers["x-llm-token-count"].startswith("estimated; ")
    assert getattr(extra_fakes, backend).requests == [] and extra_fakes.openai.requests == []


# -- stored responses -------------------------------------------------------------------------------


@pytest.mark.parametrize("client_of", [front, at_openai], ids=["front-door", "https-proxy"])
def test_stored_responses_are_read_and_cancelled_at_the_openai_backend(extra_proxy, extra_fakes, client_of):
    client = client_of(extra_proxy)

    stored = client.responses.retrieve(STORED_ID)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_never_made")
    with pytest.raises(openai.BadRequestError) as refused:
        # The SDK posts no body; OpenAI takes that, the fakes' gate wants a JSON object.
        client.responses.cancel(STORED_ID, extra_body={})

    assert stored.id == STORED_ID and stored.output_text == "Stored at the fake."
    assert "background" in refused.value.message, "the provider's own refusal reaches the client"
    paths = [(r.method, r.path) for r in extra_fakes.openai.requests]
    assert paths == [
        ("GET", f"/v1/responses/{STORED_ID}"),
        ("GET", "/v1/responses/resp_never_made"),
        ("POST", f"/v1/responses/{STORED_ID}/cancel"),
    ]
    assert all(r.headers["authorization"] == f"Bearer {OPENAI_KEY}" for r in extra_fakes.openai.requests)
    no_key_in(refused.value.response.text)


def test_without_an_openai_backend_stored_responses_get_a_native_400_saying_why(extra_fakes, start_proxy):
    config = "".join(
        line for line in extra_fakes.llm_yaml("anthropic").splitlines(True) if "type: openai" not in line
    )
    client = front(start_proxy(config))

    for call in (lambda: client.responses.retrieve(STORED_ID), lambda: client.responses.cancel(STORED_ID)):
        with pytest.raises(openai.BadRequestError) as caught:
            call()
        assert "stores no responses" in caught.value.message and "no OpenAI backend" in caught.value.message
    assert extra_fakes.openai.requests == []


# -- the real Codex, compacting on a translated route ------------------------------------------------

DONE = "Compacted, and the command printed its marker."
SUMMARY_MARK = openai_responses.SUMMARY_NOTE.strip()  # as it reads inside a JSON string (no newline)


class CompactedAnthropic(FakeAnthropic):
    """Answers plain text once a summary the proxy made is in the conversation (an agent model
    would otherwise call the shell again, and compaction would never end at a tiny token limit)."""

    def answer(self, body: Json) -> Answer:
        return Answer(DONE) if SUMMARY_MARK in json.dumps(body["messages"]) else super().answer(body)


class CompactedGemini(FakeGemini):
    def answer(self, model: str, body: Json) -> Answer:
        return Answer(DONE) if SUMMARY_MARK in json.dumps(body["contents"]) else super().answer(model, body)


@pytest.fixture(scope="module")
def compacting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fakes, Proxy]]:
    fakes = Fakes(anthropic=CompactedAnthropic(ANTHROPIC_KEY), gemini=CompactedGemini(GEMINI_KEY)).start()
    running = Proxy(tmp_path_factory.mktemp("compacting"), agents_config(fakes, None)).start()
    yield fakes, running
    running.stop()
    fakes.stop()


@pytest.mark.parametrize(("backend", "mode"), [("anthropic", "front-door"), ("gemini", "https-proxy")])
def test_codex_compacts_its_context_on_a_translated_route_and_finishes_the_turn(
    compacting, tmp_path, backend, mode
):
    """Codex 0.171 with a token limit its first answer exceeds: after the shell call it asks for
    a compaction (a compaction_trigger), gets the target model's summary as one compaction item, and
    continues from it."""
    fakes, proxy = compacting
    fakes.reset()
    task = Task(model=f"{backend}:{AGENT_MODEL}", flags=("-c", "model_auto_compact_token_limit=15"))

    run = run_agent("codex", backend, mode, lambda _: proxy, fakes, tmp_path / "home", task)

    sent = [json.dumps(r.body) for r in run.upstream]
    asked = [i for i, text in enumerate(sent) if openai_responses.COMPACT_INSTRUCTION in text]
    assert asked, f"Codex never compacted: {len(sent)} requests\n{run.output}"
    assert any(SUMMARY_MARK in text for text in sent[asked[0] + 1 :]), "the summary came back"
    assert run.answer.strip() == DONE
    assert (run.workdir / "marker.txt").read_text() == f"{AGENT_OUTPUT}\n", "the shell tool really ran"
