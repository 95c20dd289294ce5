"""Per-key model rights and usage limits through a real `mitmdump -s addons/llm.py` with the
official SDKs (the SDKs' API key is the proxy key): a key restricted to some models in each client
protocol, each limit reached (429 with Retry-After) and freed again by moving the limits' clock
(``llm_clock_offset``, on a restart that loads the windows from the usage table; no sleeping
minutes), a stream in flight when its key reaches a limit finishes intact, and a non-admin key
sees only its own usage."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from support.proxy import Proxy

from backends.limits import seconds_to_next_day, seconds_to_next_month

KEYS = {
    "restricted": "restricted-e2e-proxy-key-a1",
    "rpm": "rpm-e2e-proxy-key-b2",
    "tpm": "tpm-e2e-proxy-key-c3",
    "daily": "daily-e2e-proxy-key-d4",
    "daycost": "daycost-e2e-proxy-key-e5",
    "monthcost": "monthcost-e2e-proxy-key-f6",
    "inflight": "inflight-e2e-proxy-key-g7",
    "ops": "ops-e2e-proxy-key-h8",
}
ACCESS = f"""costs:
  "gpt-4o": {{input: 100, output: 100}}
access:
  mode: multi-user
  keys:
    - {{name: restricted, key: "{KEYS["restricted"]}", models: ["anthropic:*", "openai:gpt-4o*"]}}
    - {{name: rpm, key: "{KEYS["rpm"]}", limits: {{requests_per_minute: 2}}}}
    - {{name: tpm, key: "{KEYS["tpm"]}", limits: {{tokens_per_minute: 30}}}}
    - {{name: daily, key: "{KEYS["daily"]}", limits: {{tokens_per_day: 30}}}}
    - {{name: daycost, key: "{KEYS["daycost"]}", limits: {{cost_per_day: 0.001}}}}
    - {{name: monthcost, key: "{KEYS["monthcost"]}", limits: {{cost_per_month: 0.001}}}}
    - {{name: inflight, key: "{KEYS["inflight"]}", limits: {{tokens_per_day: 10}}}}
    - {{name: ops, key: "{KEYS["ops"]}", admin: true}}
"""
HELLO = [{"role": "user", "content": "Hi"}]


def chat(proxy: Proxy, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.front_url + "/v1", api_key=KEYS[name], max_retries=0, timeout=20)


def messages(proxy: Proxy, name: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=proxy.front_url + "/anthropic", api_key=KEYS[name], max_retries=0, timeout=20
    )


def gemini(proxy: Proxy, name: str) -> genai.Client:
    return genai.Client(api_key=KEYS[name], http_options={"base_url": proxy.front_url, "timeout": 20_000})


def usage(proxy: Proxy, name: str) -> dict:
    response = httpx.get(
        f"{proxy.front_url}/v1/usage", headers={"authorization": f"Bearer {KEYS[name]}"}, timeout=20
    )
    assert response.status_code == 200, response.text
    return response.json()


def refused(proxy: Proxy, name: str) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as error:
        chat(proxy, name).chat.completions.create(model="gpt-4o", messages=HELLO)
    return error.value


def eventually_refused(proxy: Proxy, name: str) -> openai.RateLimitError:
    """Tokens count once the usage row is written (on the database's worker, just after the
    answer): the next call may come a few milliseconds before that."""
    deadline = time.monotonic() + 5
    while True:
        try:
            chat(proxy, name).chat.completions.create(model="gpt-4o", messages=HELLO)
        except openai.RateLimitError as e:
            return e
        assert time.monotonic() < deadline, f"{name} was never refused"
        time.sleep(0.05)


class Phases:
    """One state database, proxies started one after another with the clock moved further."""

    def __init__(self, fakes, tmp_path_factory) -> None:
        self.confdir = tmp_path_factory.mktemp("limits")
        self.config = fakes.llm_yaml() + ACCESS
        self.current: Proxy | None = None

    def start(self, offset: float = 0) -> Proxy:
        self.stop()
        offset_option = ["--set", f"llm_clock_offset={round(offset)}"]
        self.current = Proxy(self.confdir, self.config, offset_option).start()
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture(scope="module")
def phases(fakes, tmp_path_factory) -> Iterator[Phases]:
    made = Phases(fakes, tmp_path_factory)
    made.start()
    yield made
    made.stop()


@pytest.fixture
def limited(phases) -> Proxy:
    assert phases.current is not None
    return phases.current


# -- model rights -----------------------------------------------------------------------------------


def test_a_restricted_key_gets_its_models_and_a_403_naming_any_other_in_each_protocol(limited):
    assert chat(limited, "restricted").chat.completions.create(model="gpt-4o", messages=HELLO).choices
    with pytest.raises(openai.PermissionDeniedError) as chat_error:
        chat(limited, "restricted").chat.completions.create(model="o3-mini", messages=HELLO)
    assert chat_error.value.response.json()["llm_error"]["code"] == "forbidden"
    assert "o3-mini" in chat_error.value.message
    assert chat(limited, "restricted").responses.create(model="gpt-4o-mini", input="Hi").output_text
    with pytest.raises(openai.PermissionDeniedError):
        chat(limited, "restricted").responses.create(model="o3-mini", input="Hi")
    reply = messages(limited, "restricted").messages.create(
        model="anthropic:claude-sonnet-4-5", max_tokens=50, messages=HELLO
    )
    assert reply.content[0].text
    with pytest.raises(anthropic.PermissionDeniedError) as messages_error:
        messages(limited, "restricted").messages.create(
            model="gemini:gemini-2.5-flash", max_tokens=50, messages=HELLO
        )
    assert "gemini-2.5-flash" in messages_error.value.response.json()["error"]["message"]
    client = gemini(limited, "restricted")  # held: a dropped genai client closes its transport
    assert client.models.generate_content(model="anthropic:claude-sonnet-4-5", contents="Hi").text
    with pytest.raises(genai_errors.ClientError) as gemini_error:
        client.models.generate_content(model="gemini:gemini-2.5-flash", contents="Hi")
    assert gemini_error.value.code == 403 and "gemini-2.5-flash" in str(gemini_error.value.message)


# -- a stream in flight -----------------------------------------------------------------------------


def test_a_stream_in_flight_when_its_key_reaches_a_limit_finishes_intact(limited):
    client = chat(limited, "inflight")
    # linger-2: every event is sent, then the body stays open 2 s: the stream is still in flight.
    with client.chat.completions.create(model="linger-2", messages=HELLO, stream=True) as stream:
        chunks = iter(stream)
        first = next(chunks)
        # Meanwhile a whole answer of the same key ends: its 18 tokens pass tokens_per_day: 10.
        assert client.chat.completions.create(model="gpt-4o", messages=HELLO).choices
        rest = list(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
    assert text == "Hello from openai!"
    assert [c.choices[0].finish_reason for c in rest if c.choices][-1] == "stop"
    error = eventually_refused(limited, "inflight")
    assert "tokens_per_day: 10" in error.message


# -- each limit reached, then freed by moving the clock ---------------------------------------------


def test_each_limit_is_reached_with_retry_after_and_freed_as_its_window_passes(phases, limited):
    for _ in range(2):
        chat(limited, "rpm").chat.completions.create(model="gpt-4o", messages=HELLO)
    rpm = refused(limited, "rpm")
    assert (
        "requests_per_minute: 2" in rpm.message
        and rpm.response.headers["x-llm-error-code"] == "limit_reached"
    )
    assert 50 <= int(rpm.response.headers["retry-after"]) <= 60
    for name, limit in [("tpm", "tokens_per_minute: 30"), ("daily", "tokens_per_day: 30")]:
        for _ in range(2):  # 18 tokens each: 36 >= 30
            chat(limited, name).chat.completions.create(model="gpt-4o", messages=HELLO)
        assert limit in eventually_refused(limited, name).message
    for name, limit in [("daycost", "cost_per_day: 0.001"), ("monthcost", "cost_per_month: 0.001")]:
        chat(limited, name).chat.completions.create(model="gpt-4o", messages=HELLO)  # 18 tokens: $0.0018
        assert limit in eventually_refused(limited, name).message
    assert refused(limited, "tpm").response.headers["retry-after"] in {str(s) for s in range(55, 61)}
    day_wait = seconds_to_next_day(time.time())
    assert abs(int(refused(limited, "daily").response.headers["retry-after"]) - day_wait) <= 5
    month_wait = seconds_to_next_month(time.time())
    assert abs(int(refused(limited, "monthcost").response.headers["retry-after"]) - month_wait) <= 5

    # A minute later (the windows are loaded from the usage table on restart).
    later = phases.start(offset=61)
    for name in ("rpm", "tpm"):
        assert chat(later, name).chat.completions.create(model="gpt-4o", messages=HELLO).choices
    for name in ("daily", "daycost", "monthcost"):
        refused(later, name)

    # The next UTC day.
    later = phases.start(offset=seconds_to_next_day(time.time()) + 5)
    for name in ("daily", "daycost"):
        assert chat(later, name).chat.completions.create(model="gpt-4o", messages=HELLO).choices
    if seconds_to_next_day(time.time()) + 5 < seconds_to_next_month(time.time()):
        refused(later, "monthcost")

    # The next UTC month.
    later = phases.start(offset=seconds_to_next_month(time.time()) + 5)
    assert chat(later, "monthcost").chat.completions.create(model="gpt-4o", messages=HELLO).choices


# -- usage ------------------------------------------------------------------------------------------


def test_a_non_admin_key_sees_only_its_own_usage_and_the_admin_sees_every_key(phases):
    proxy = phases.current
    assert proxy is not None
    chat(proxy, "restricted").chat.completions.create(model="gpt-4o", messages=HELLO)
    own = usage(proxy, "restricted")
    assert {row["client"] for row in own["rows"]} == {"restricted"}
    assert [entry["key"] for entry in own["keys"]] == ["restricted"]
    everyone = usage(proxy, "ops")
    assert {"restricted", "rpm", "monthcost"} <= {row["client"] for row in everyone["rows"]}
    keys = {entry["key"]: entry for entry in everyone["keys"]}
    assert keys["rpm"]["limits"] == {"requests_per_minute": 2}
    assert all(secret not in str(everyone) for secret in KEYS.values())
