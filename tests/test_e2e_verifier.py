"""End to end: the quality verifier, through a real `mitmdump -s addons/llm.py`, with the official SDKs.

The primary model is scripted (``support.fakes.scripted_model``) to answer a first draft, and a
second draft when the request carries one of the proxy's notes; the verifier is a scripted model
of the Anthropic fake that says PASS or STEER, hangs, or fails. ``every: 1`` checks every turn
(the schedule itself is pinned in tests/test_verifier.py). One proxy per verifier behaviour:

- ``passing``: the verifier says PASS; wire capture on;
- ``steering``: the verifier says STEER with a note; wire capture on;
- ``hanging``: the verifier never answers (``timeout: 2``);
- ``failing``: the verifier answers HTTP 500;
- ``bounded``: the verifier says STEER, but holds at most 1 KB of a stream (``hold_kb: 1``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.fakes import STEERING_MARK, Fakes, RecordedRequest, scripted_model
from support.proxy import Proxy
from test_e2e_policies import ALL_ROUTES, NORMAL_END, ROUTES, Ask, ask, eventually

from scripts import captures

FIRST = "The first draft says it is warm."
SECOND = "The second draft says it is 18 degrees."
NOTE = "Give the temperature in degrees."
PRIMARY = scripted_model(FIRST, steered=SECOND)
VERDICTS = {
    "passing": scripted_model("PASS"),
    "steering": scripted_model(f"STEER: {NOTE}"),
    "hanging": "hang",
    "failing": "fail-500",
}


@dataclass
class Verified:
    proxy: Proxy
    captures: Path
    verifier_model: str


def start(
    fakes: Fakes, factory: pytest.TempPathFactory, behaviour: str, timeout: float = 10, extra: str = ""
) -> Verified:
    directory = factory.mktemp(f"verifier-{behaviour}-captures")
    model = VERDICTS["steering" if behaviour == "bounded" else behaviour]
    config = (
        fakes.llm_yaml() + f'verifier: {{model: "anthropic:{model}", every: 1, timeout: {timeout}{extra}}}\n'
    )
    proxy = Proxy(factory.mktemp(f"verifier-{behaviour}"), config, ["--set", f"llm_capture={directory}"])
    return Verified(proxy.start(), directory, model)


def proxy_fixture(behaviour: str, timeout: float = 10, extra: str = ""):
    """A module-scoped fixture named ``behaviour``: its proxy, stopped after the module."""

    @pytest.fixture(scope="module", name=behaviour)
    def running(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verified]:
        verified = start(fakes, tmp_path_factory, behaviour, timeout, extra)
        yield verified
        verified.proxy.stop()

    return running


passing = proxy_fixture("passing")
steering = proxy_fixture("steering")
hanging = proxy_fixture("hanging", timeout=2)
failing = proxy_fixture("failing")
bounded = proxy_fixture("bounded", extra=", hold_kb: 1")


def primary_model(protocol: str, route: str) -> str:
    return f"{ROUTES[route][protocol]}:{PRIMARY}"


def verifier_requests(fakes: Fakes, verified: Verified) -> list[RecordedRequest]:
    return [
        r
        for r in fakes.anthropic.requests
        if r.method == "POST" and r.body.get("model") == verified.verifier_model
    ]


def primary_requests(fakes: Fakes, protocol: str, route: str) -> list[RecordedRequest]:
    backend = getattr(fakes, ROUTES[route][protocol])
    return [
        r for r in backend.requests if r.method == "POST" and PRIMARY in (r.path + str(r.body.get("model")))
    ]


def mentions(request: RecordedRequest, text: str) -> bool:
    return text.encode() in request.raw


@pytest.mark.parametrize("protocol, route, stream", ALL_ROUTES)
def test_a_passed_answer_reaches_the_client_unchanged_after_one_check(
    passing, fakes, protocol, route, stream
):
    reply = ask(passing.proxy, protocol, Ask(primary_model(protocol, route), stream, tools=()))
    assert reply.text == FIRST and reply.stop == NORMAL_END[protocol]
    checks = verifier_requests(fakes, passing)
    assert len(checks) == 1, f"the verifier was asked {len(checks)} times"
    assert mentions(checks[0], FIRST), "the verifier did not see the answer under review"
    assert mentions(checks[0], "Please tidy up the repository."), "the verifier did not see the conversation"
    assert len(primary_requests(fakes, protocol, route)) == 1


@pytest.mark.parametrize("protocol, route, stream", ALL_ROUTES)
def test_a_steered_answer_is_replaced_by_the_primary_models_second_answer(
    steering, fakes, protocol, route, stream
):
    reply = ask(steering.proxy, protocol, Ask(primary_model(protocol, route), stream, tools=()))
    assert reply.text == SECOND and reply.stop == NORMAL_END[protocol]
    first, second = primary_requests(fakes, protocol, route)
    assert not mentions(first, STEERING_MARK)
    assert mentions(second, STEERING_MARK) and mentions(second, NOTE), "the note did not reach the primary"
    assert len(verifier_requests(fakes, steering)) == 1, "verification nested"


@pytest.mark.parametrize("behaviour", ["hanging", "failing"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("protocol", ["openai-chat", "anthropic"])
def test_a_verifier_that_hangs_or_fails_lets_the_primary_answer_through(
    request, fakes, behaviour, protocol, stream
):
    verified: Verified = request.getfixturevalue(behaviour)
    started = time.monotonic()
    reply = ask(verified.proxy, protocol, Ask(primary_model(protocol, "translated"), stream, tools=()))
    assert reply.text == FIRST and reply.stop == NORMAL_END[protocol]
    assert time.monotonic() - started < 8, "the fail-open took longer than the verifier's timeout"
    report = httpx.get(verified.proxy.front_url + "/v1/diagnostics", timeout=10).json()
    assert report["verifier"]["failed_open"] >= 1
    assert any(d["policy"] == "verifier" and d["action"] == "fail_open" for d in report["policy_decisions"])


def test_usage_records_the_primary_and_the_verifier_call(steering, fakes):
    ask(steering.proxy, "openai-chat", Ask(primary_model("openai-chat", "same"), False, tools=()))

    def rows() -> list[dict[str, Any]]:
        url = steering.proxy.front_url + "/v1/usage?group_by=backend,model"
        found = httpx.get(url, timeout=10).json()["rows"]
        return found if {r["model"] for r in found} >= {PRIMARY, steering.verifier_model} else []

    found = eventually(rows, "usage rows of the primary and the verifier")
    by_model = {r["model"]: r for r in found}
    assert by_model[steering.verifier_model]["backend"] == "anthropic"
    assert by_model[PRIMARY]["requests"] >= 1


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_the_capture_end_record_holds_the_verifier_call_and_the_steer(steering, stream):
    marker = f"verified-{'stream' if stream else 'whole'}-{time.monotonic_ns()}"
    ask(steering.proxy, "anthropic", Ask(primary_model("anthropic", "same"), stream, tools=(), user=marker))

    def end_record() -> dict[str, Any] | None:
        for flow in captures.load(steering.captures).flows.values():
            body = (flow.request or {}).get("client", {}).get("body") or b""
            if marker.encode() in body and flow.end and flow.end.get("side_calls"):
                return flow.end
        return None

    end = eventually(end_record, f"the end record of the flow marked {marker}")
    (side,) = end["side_calls"]
    assert side["backend"] == "anthropic" and side["model"] == steering.verifier_model
    assert marker.encode() in side["request_body"] and NOTE.encode() in side["upstream_body"]
    assert [(d["policy"], d["action"]) for d in end["decisions"]] == [("verifier", "steer")]


@pytest.mark.parametrize("protocol", ["openai-chat", "gemini"])
def test_a_stream_longer_than_the_hold_bound_passes_through_live_unchecked(bounded, fakes, protocol):
    # About 3 KB of text, more in events; no sentence repeats (loop detection would cut it).
    long_text = "".join(f"Sentence {i} of the long answer adds point {i * 7}. " for i in range(80))
    model = f"{ROUTES['translated'][protocol]}:{scripted_model(long_text, steered=SECOND)}"
    reply = ask(bounded.proxy, protocol, Ask(model, True, tools=()))
    assert reply.text == long_text and reply.stop == NORMAL_END[protocol]
    assert verifier_requests(fakes, bounded) == [], "a stream over the bound was held for the verifier"


def test_a_whole_answer_under_the_bound_is_still_checked(bounded, fakes):
    reply = ask(bounded.proxy, "anthropic", Ask(primary_model("anthropic", "translated"), False, tools=()))
    assert reply.text == SECOND and len(verifier_requests(fakes, bounded)) == 1
