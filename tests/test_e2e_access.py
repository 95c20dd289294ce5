"""Access control through a real `mitmdump -s addons/llm.py` with the official SDKs and one real
agent: proxy keys in every place each client protocol carries an API key, refusals in the client's
own envelope, the HTTPS-proxy mode's ``Proxy-Authorization``, a key restricted to some models, the
admin endpoints, start-up refused for unsafe configurations, the brute-force slow-down, and no proxy
key in any upstream request, log line, capture byte or error body.

One multi-user proxy serves the whole module (with a capture directory and debug logging, so that
a leak has every chance to show). The slow-down counts failures per client address, so each client
here connects from a loopback address of its own (``127.0.0.N``, all of which reach the proxy's
127.0.0.1): one test's refusals never slow down another's requests.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from prometheus_client.parser import text_string_to_metric_families
from support.agents import AGENT_TIMEOUT, ANSWERS, COMMANDS, FENCE, QUIET, Setting, Task
from support.builders import CLIENT_KEY, UPSTREAM_KEYS, trust
from support.fakes import AGENT_MODEL, Fakes
from support.fakes.common import AGENT_OUTPUT
from support.proxy import REPO, Proxy, child_env, free_port

from addons.access import Slowdown
from addons.capture_format import capture_files, read_file
from scripts.agent_env import Endpoints
from scripts.install_agents import BIN

KEYS = {
    "bob": "bob-e2e-access-key-0001",  # every model, no admin
    "alice": "alice-e2e-access-key-0002",  # restricted to some models
    "ops": "ops-e2e-access-key-0003",  # admin
}
WRONG = "wrong-e2e-access-key-0009"
ACCESS = f"""access:
  mode: multi-user
  keys:
    - {{name: bob, key: "{KEYS["bob"]}"}}
    - {{name: alice, key: "{KEYS["alice"]}", models: ["anthropic:*", "openai:gpt-4o*"]}}
    - {{name: ops, key: "{KEYS["ops"]}", admin: true}}
"""
HELLO = [{"role": "user", "content": "Hi"}]
MODELS = {
    "openai": "openai:gpt-4o",
    "anthropic": "anthropic:claude-sonnet-4-5",
    "gemini": "gemini:gemini-2.5-flash",
}
GEMINI_PATH = "/v1beta/models/gemini:gemini-2.5-flash:generateContent"
TIMEOUT = 20
THRESHOLD = Slowdown().threshold  # failures from one address that refuse it for a while
FIRST_WAIT = Slowdown().first  # seconds of the first refusal
ADDRESSES = (f"127.0.0.{n}" for n in itertools.count(2))


def secrets() -> list[str]:
    """Every proxy key and the wrong one, raw and as HTTPS_PROXY's Basic credentials carry them."""
    raw = [*KEYS.values(), WRONG]
    basic = [base64.b64encode(f"{name}:{key}".encode()).decode() for name, key in KEYS.items()]
    return raw + basic


def assert_no_secret(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    leaked = [s for s in secrets() if s.encode() in data]
    assert not leaked, f"proxy key in {where}: {leaked}"


def assert_clean_upstream(fakes: Fakes) -> list[Any]:
    """What the fakes received: the provider's key, never a proxy key (nor the client's own key)."""
    received = [r for fake in fakes.all for r in fake.requests]
    for r in received:
        assert_no_secret(f"{r.path} {r.query} {r.headers}".encode() + r.raw, "an upstream request")
        assert CLIENT_KEY not in str(r.headers)
    return received


# -- the proxy ------------------------------------------------------------------------------------


@dataclass
class Keyed:
    proxy: Proxy
    capture: Path


@pytest.fixture(scope="module")
def keyed(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    capture = tmp_path_factory.mktemp("access-capture")
    options = [
        "--set", f"llm_capture={capture}",
        "--set", "termlog_verbosity=debug",  # every log line there is, for the leak check
        "--set", f"block_list={FENCE}",  # the agent's other traffic never leaves the machine
    ]  # fmt: skip
    running = Proxy(tmp_path_factory.mktemp("access"), fakes.llm_yaml() + ACCESS, options).start()
    yield Keyed(running, capture)
    running.stop()


# The SDKs refuse to send a request without an API key: "no key" is an SDK given a placeholder
# whose HTTP client drops every credential header on the way out (a client that forgot its key).
NO_KEY = "placeholder-dropped-before-sending"
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")


def drop_credentials(request: httpx.Request | httpx2.Request) -> None:
    for header in CREDENTIAL_HEADERS:
        request.headers.pop(header, None)


def hooks(secret: str) -> dict[str, list[Callable[[Any], None]]]:
    return {"request": [drop_credentials]} if secret == NO_KEY else {}


def http_from(address: str | None = None, secret: str = "") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address or next(ADDRESSES))
    return httpx.Client(transport=transport, timeout=TIMEOUT, event_hooks=hooks(secret))


# -- the clients: each protocol, with its key in each place it can go ----------------------------


def chat(proxy: Proxy, secret: str, address: str | None = None) -> str:
    client = openai.OpenAI(
        base_url=proxy.front_url + "/v1",
        api_key=secret,
        max_retries=0,
        http_client=http_from(address, secret),
    )
    return client.chat.completions.create(model=MODELS["openai"], messages=HELLO).choices[0].message.content


def responses(proxy: Proxy, secret: str, address: str | None = None) -> str:
    client = openai.OpenAI(
        base_url=proxy.front_url + "/v1",
        api_key=secret,
        max_retries=0,
        http_client=http_from(address, secret),
    )
    return client.responses.create(model=MODELS["openai"], input="Hi").output_text


def messages_client(proxy: Proxy, address: str | None, **auth: str) -> anthropic.Anthropic:
    transport = httpx2.HTTPTransport(local_address=address or next(ADDRESSES))
    http = httpx2.Client(transport=transport, timeout=TIMEOUT, event_hooks=hooks(*auth.values()))
    return anthropic.Anthropic(
        base_url=proxy.front_url + "/anthropic", max_retries=0, http_client=http, **auth
    )


def messages(proxy: Proxy, secret: str, address: str | None = None) -> str:
    """Anthropic's own place: ``x-api-key`` (the SDK's api_key, Claude Code's ANTHROPIC_API_KEY)."""
    client = messages_client(proxy, address, api_key=secret)
    return client.messages.create(model=MODELS["anthropic"], max_tokens=50, messages=HELLO).content[0].text


def messages_bearer(proxy: Proxy, secret: str, address: str | None = None) -> str:
    """``Authorization: Bearer`` (the SDK's auth_token, Claude Code's ANTHROPIC_AUTH_TOKEN)."""
    client = messages_client(proxy, address, auth_token=secret)
    return client.messages.create(model=MODELS["anthropic"], max_tokens=50, messages=HELLO).content[0].text


def gemini(proxy: Proxy, secret: str, address: str | None = None) -> str:
    """``x-goog-api-key``, where google-genai and Gemini CLI put it."""
    options = {"base_url": proxy.front_url, "httpx_client": http_from(address, secret)}
    client = genai.Client(api_key=secret, http_options=options)
    return client.models.generate_content(model=MODELS["gemini"], contents="Hi").text


def gemini_query(proxy: Proxy, secret: str, address: str | None = None) -> str:
    """``?key=``, Gemini's query parameter (curl, older clients): google-genai never sends it."""
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    with http_from(address) as client:
        response = client.post(f"{proxy.front_url}{GEMINI_PATH}", params={"key": secret}, json=body)
    if response.status_code != 200:
        raise genai_errors.APIError(response.status_code, response.json(), response)
    return response.json()["candidates"][0]["content"]["parts"][0]["text"]


Call = Callable[[Proxy, str, str | None], str]
# (client, backend it reaches): every place each protocol carries an API key.
PLACES: dict[str, tuple[Call, str]] = {
    "openai-chat-bearer": (chat, "openai"),
    "openai-responses-bearer": (responses, "openai"),
    "anthropic-x-api-key": (messages, "anthropic"),
    "anthropic-bearer": (messages_bearer, "anthropic"),
    "gemini-x-goog-api-key": (gemini, "gemini"),
    "gemini-query-key": (gemini_query, "gemini"),
}
# One place per protocol for the refusals: the error envelope is the protocol's, not the place's.
PROTOCOLS = {
    "openai-chat": chat,
    "openai-responses": responses,
    "anthropic": messages,
    "gemini": gemini,
}
SDK_ERRORS = (openai.APIStatusError, anthropic.APIStatusError, genai_errors.APIError)


@dataclass
class Refusal:
    status: int
    body: dict[str, Any]
    text: str
    headers: httpx.Headers | httpx2.Headers


def refusal(call: Callable[[], Any]) -> Refusal:
    with pytest.raises(SDK_ERRORS) as caught:
        call()
    response = caught.value.response
    return Refusal(response.status_code, response.json(), response.text, response.headers)


def envelope_message(protocol: str, body: dict[str, Any]) -> str:
    """The error message where each protocol's own clients read it."""
    if protocol == "anthropic":
        assert body["type"] == "error"
    return body["error"]["message"]


# -- the front door -------------------------------------------------------------------------------


@pytest.mark.parametrize("place", PLACES)
def test_a_good_key_in_each_place_its_protocol_allows_is_served_and_never_sent_upstream(keyed, fakes, place):
    call, backend = PLACES[place]
    assert call(keyed.proxy, KEYS["bob"], None) == f"Hello from {backend}!"
    received = assert_clean_upstream(fakes)
    assert [r for r in received if UPSTREAM_KEYS[backend] in str(r.headers) + str(r.query)]


@pytest.mark.parametrize("presented", ["wrong", "none"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_wrong_or_missing_key_is_a_401_unauthenticated_in_the_clients_envelope(
    keyed, fakes, protocol, presented
):
    secret = WRONG if presented == "wrong" else NO_KEY
    answer = refusal(lambda: PROTOCOLS[protocol](keyed.proxy, secret, None))
    assert answer.status == 401
    assert answer.body["llm_error"]["code"] == "unauthenticated"
    expected = "invalid proxy key" if presented == "wrong" else "a valid proxy key is required"
    assert expected in envelope_message(protocol, answer.body)
    assert_no_secret(answer.text, "an error body")
    assert assert_clean_upstream(fakes) == []  # refused before any provider was called


def test_a_restricted_key_gets_its_models_and_a_403_forbidden_naming_any_other(keyed, fakes):
    assert chat(keyed.proxy, KEYS["alice"]) == "Hello from openai!"
    client = openai.OpenAI(
        base_url=keyed.proxy.front_url + "/v1", api_key=KEYS["alice"], max_retries=0, http_client=http_from()
    )
    answer = refusal(lambda: client.chat.completions.create(model="gemini:gemini-2.5-flash", messages=HELLO))
    assert answer.status == 403 and answer.body["llm_error"]["code"] == "forbidden"
    assert "gemini-2.5-flash" in answer.body["error"]["message"]
    assert_no_secret(answer.text, "an error body")
    assert fakes.gemini.requests == []


# -- the HTTPS proxy ------------------------------------------------------------------------------


def proxied(proxy: Proxy, name: str | None, secret: str | None = None, bearer: bool = False) -> httpx.Client:
    """An httpx client for the HTTPS-proxy listener; the key as HTTPS_PROXY's user:password sends
    it (Basic), or as a Bearer Proxy-Authorization header."""
    url = f"http://{name}:{secret}@127.0.0.1:{proxy.proxy_port}" if name else proxy.proxy_url
    headers = {"proxy-authorization": f"Bearer {secret}"} if bearer else None
    transport = httpx.HTTPTransport(
        proxy=httpx.Proxy(url, headers=headers), verify=trust(proxy), local_address=next(ADDRESSES)
    )
    return httpx.Client(transport=transport, timeout=TIMEOUT)


def test_a_bearer_proxy_authorization_authenticates_too(keyed, fakes):
    client = openai.OpenAI(
        api_key=CLIENT_KEY, http_client=proxied(keyed.proxy, None, KEYS["bob"], bearer=True), max_retries=0
    )
    assert client.responses.create(model="gpt-4o", input="Hi").output_text == "Hello from openai!"
    assert_clean_upstream(fakes)


def test_the_connects_key_carries_the_keys_model_rights(keyed, fakes):
    client = openai.OpenAI(
        api_key=CLIENT_KEY, http_client=proxied(keyed.proxy, "alice", KEYS["alice"]), max_retries=0
    )
    answer = refusal(lambda: client.chat.completions.create(model="o3-mini", messages=HELLO))
    assert answer.status == 403 and "o3-mini" in answer.body["error"]["message"]
    assert fakes.openai.requests == []


def connect(
    proxy: Proxy, authorization: str | None, address: str | None = None
) -> tuple[int, dict[str, str], str]:
    """A bare CONNECT to the HTTPS-proxy listener, as an HTTPS_PROXY client opens its tunnel."""
    source = (address or next(ADDRESSES), 0)
    connection = http.client.HTTPConnection(
        "127.0.0.1", proxy.proxy_port, timeout=TIMEOUT, source_address=source
    )
    headers = {"host": "api.openai.com:443"}
    if authorization:
        headers["proxy-authorization"] = authorization
    try:
        connection.request("CONNECT", "api.openai.com:443", headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic " + base64.b64encode(f"bob:{WRONG}".encode()).decode(),
        f"Bearer {WRONG}",
        "Basic " + base64.b64encode(f"alice:{KEYS['bob']}".encode()).decode(),
    ],  # fmt: skip
    ids=["none", "wrong-basic", "wrong-bearer", "another-keys-name"],
)
def test_a_connect_without_a_valid_proxy_key_gets_407_with_proxy_authenticate(keyed, authorization):
    status, headers, body = connect(keyed.proxy, authorization)
    assert status == 407
    assert headers["proxy-authenticate"].startswith("Basic")
    assert headers["x-llm-error-code"] == "unauthenticated"
    assert_no_secret(body, "an error body")


def test_repeated_wrong_proxy_credentials_are_slowed_down_too(keyed):
    address, wrong = next(ADDRESSES), "Basic " + base64.b64encode(f"bob:{WRONG}".encode()).decode()
    for attempt in range(THRESHOLD):
        assert connect(keyed.proxy, wrong, address)[0] == 407, f"attempt {attempt + 1}"
    right = "Basic " + base64.b64encode(f"bob:{KEYS['bob']}".encode()).decode()
    status, headers, body = connect(keyed.proxy, right, address)
    assert status == 429
    assert 0 < int(headers["retry-after"]) <= FIRST_WAIT
    assert "too many failed proxy key attempts" in body


def proxied2(proxy: Proxy, name: str, secret: str) -> httpx2.Client:
    """The same for the anthropic SDK, which takes an httpx2 client."""
    url = f"http://{name}:{secret}@127.0.0.1:{proxy.proxy_port}"
    transport = httpx2.HTTPTransport(proxy=url, verify=trust(proxy), local_address=next(ADDRESSES))
    return httpx2.Client(transport=transport, timeout=TIMEOUT)


PROXIED_SDKS = {
    "openai": lambda proxy, key: (
        openai.OpenAI(api_key=CLIENT_KEY, http_client=proxied(proxy, "bob", key), max_retries=0)
        .chat.completions.create(model="gpt-4o", messages=HELLO)
        .choices[0]
        .message.content
    ),
    "anthropic": lambda proxy, key: (
        anthropic.Anthropic(api_key=CLIENT_KEY, http_client=proxied2(proxy, "bob", key), max_retries=0)
        .messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=HELLO)
        .content[0]
        .text
    ),
    "gemini": lambda proxy, key: (
        genai.Client(api_key=CLIENT_KEY, http_options={"httpx_client": proxied(proxy, "bob", key)})
        .models.generate_content(model="gemini-2.5-flash", contents="Hi")
        .text
    ),
}


@pytest.mark.parametrize("sdk", PROXIED_SDKS)
def test_each_sdk_at_its_providers_host_authenticates_with_the_proxy_url_credentials(keyed, fakes, sdk):
    assert PROXIED_SDKS[sdk](keyed.proxy, KEYS["bob"]) == f"Hello from {sdk}!"
    upstream = assert_clean_upstream(fakes)
    assert [r for r in upstream if UPSTREAM_KEYS[sdk] in str(r.headers)]


def agent_environment(proxy: Proxy, home: Path) -> dict[str, str]:
    """What `agent_env.py claude --https-proxy --key bob:KEY` prints, as a shell has it after eval,
    plus a home, a PATH with the agents and the agent's telemetry switches."""
    script = REPO / "scripts" / "agent_env.py"
    key = f"bob:{KEYS['bob']}"
    args = [
        "claude",
        "--https-proxy",
        "--key",
        key,
        "--proxy-url",
        proxy.proxy_url,
        "--confdir",
        str(proxy.confdir),
    ]
    printed = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True)
    done = subprocess.run(["sh", "-c", printed.stdout + "env -0"], capture_output=True, env={}, check=True)
    env = dict(item.decode().split("=", 1) for item in done.stdout.split(b"\0") if b"=" in item)
    for shell_own in ("PWD", "SHLVL", "_"):
        env.pop(shell_own, None)
    return {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "HTTP_PROXY": env["HTTPS_PROXY"],  # anything plain-HTTP goes through the proxy, to be fenced
        **QUIET["claude"],
        **env,
    }


def test_claude_code_through_the_https_proxy_with_the_key_agent_env_prints(keyed, fakes, tmp_path):
    home, workdir = tmp_path / "home", tmp_path / "work"
    home.mkdir(), workdir.mkdir()
    env = agent_environment(keyed.proxy, home)
    assert env["HTTPS_PROXY"] == f"http://bob:{KEYS['bob']}@127.0.0.1:{keyed.proxy.proxy_port}"
    where = Endpoints(keyed.proxy.front_url, keyed.proxy.proxy_url, keyed.proxy.confdir)
    setting = Setting(home, "anthropic", "https-proxy", where, Task(model=f"anthropic:{AGENT_MODEL}"))
    command = [str(BIN / "claude"), *COMMANDS["claude"](setting)]
    done = subprocess.run(
        command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=AGENT_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert AGENT_OUTPUT in ANSWERS["claude"](done.stdout, home)
    upstream = assert_clean_upstream(fakes)
    generations = [r for r in upstream if r.method == "POST" and str(workdir).encode() in r.raw]
    assert len(generations) >= 2  # the tool call, then the answer
    assert all(r.headers["x-api-key"] == UPSTREAM_KEYS["anthropic"] for r in fakes.anthropic.requests)


# -- admin endpoints ------------------------------------------------------------------------------

ADMIN = [
    ("GET", "/v1/diagnostics"),
    ("POST", "/v1/diagnostics/backends/openai/reactivate"),
    ("GET", "/metrics"),
]


def admin_call(proxy: Proxy, method: str, path: str, name: str) -> httpx.Response:
    with http_from() as client:
        return client.request(
            method, proxy.front_url + path, headers={"authorization": f"Bearer {KEYS[name]}"}
        )


@pytest.mark.parametrize(("method", "path"), ADMIN, ids=[p for _, p in ADMIN])
def test_admin_endpoints_are_refused_to_a_non_admin_key_and_served_to_an_admin_key(keyed, method, path):
    refused = admin_call(keyed.proxy, method, path, "bob")
    assert refused.status_code == 403
    assert refused.json()["llm_error"]["code"] == "forbidden"
    assert "needs an admin key" in refused.json()["error"]["message"]
    served = admin_call(keyed.proxy, method, path, "ops")
    assert served.status_code == 200, served.text
    assert_no_secret(refused.text + served.text, f"{path}'s answer")


def usage_clients(proxy: Proxy, name: str) -> set[str]:
    with http_from() as client:
        response = client.get(
            proxy.front_url + "/v1/usage", params={"group_by": "client"},
            headers={"authorization": f"Bearer {KEYS[name]}"},
        )  # fmt: skip
    assert response.status_code == 200, response.text
    assert_no_secret(response.text, "/v1/usage")
    return {row["client"] for row in response.json()["rows"]}


def test_all_client_usage_is_for_admin_keys_and_a_non_admin_key_sees_its_own(keyed):
    chat(keyed.proxy, KEYS["bob"]), chat(keyed.proxy, KEYS["alice"])
    deadline = time.monotonic() + 10  # rows are written on the database's worker, just after the answer
    while usage_clients(keyed.proxy, "ops") < {"bob", "alice"}:
        assert time.monotonic() < deadline, "the usage rows never showed"
        time.sleep(0.05)
    assert usage_clients(keyed.proxy, "bob") == {"bob"}
    assert usage_clients(keyed.proxy, "alice") == {"alice"}


def test_metrics_label_requests_and_tokens_with_the_keys_name(keyed):
    chat(keyed.proxy, KEYS["bob"])
    deadline = time.monotonic() + 10  # tokens count when the usage row is written, just after the answer
    while not {"llm_requests", "llm_tokens"} <= (named := metrics_named(keyed.proxy, "bob")):
        assert time.monotonic() < deadline, named
        time.sleep(0.05)


def metrics_named(proxy: Proxy, key: str) -> set[str]:
    """The metric families with a sample labelled with this key's name."""
    text = admin_call(proxy, "GET", "/metrics", "ops").text
    return {
        family.name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("key") == key and sample.value > 0
    }


# -- the brute-force slow-down --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai-chat", "anthropic", "gemini"])
def test_repeated_wrong_keys_from_one_address_are_slowed_down_with_retry_after(keyed, fakes, protocol):
    call, address = PROTOCOLS[protocol], next(ADDRESSES)
    for attempt in range(THRESHOLD):
        assert refusal(lambda: call(keyed.proxy, WRONG, address)).status == 401, f"attempt {attempt + 1}"
    blocked = refusal(lambda: call(keyed.proxy, KEYS["bob"], address))  # even the right key, for now
    assert blocked.status == 429
    assert blocked.body["llm_error"]["code"] == "unauthenticated"
    assert 0 < int(blocked.headers["retry-after"]) <= FIRST_WAIT
    assert "too many failed proxy key attempts" in envelope_message(protocol, blocked.body)
    assert call(keyed.proxy, KEYS["bob"], next(ADDRESSES))  # another address is not slowed down
    assert_clean_upstream(fakes)


# -- nothing leaks --------------------------------------------------------------------------------


def test_no_proxy_key_in_the_log_or_the_capture_and_captures_name_the_key(keyed):
    chat(keyed.proxy, KEYS["bob"])
    refusal(lambda: chat(keyed.proxy, WRONG))
    deadline = time.monotonic() + 10
    while not (named := {r.get("key") for r in records(keyed.capture) if r["kind"] == "request"}) >= {"bob"}:
        assert time.monotonic() < deadline, "no capture record named the key"
        time.sleep(0.05)
    assert None in named  # the refused request: no key authenticated it
    assert_no_secret(keyed.proxy.log, "the proxy's log")
    for path in capture_files(keyed.capture):
        assert_no_secret(path.read_bytes(), f"the capture {path.name}")


def records(directory: Path) -> list[dict[str, Any]]:
    return [r for path in capture_files(directory) for r in read_file(path)[0]]


# -- start-up -------------------------------------------------------------------------------------


def start_up(confdir: Path, config: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run the proxy to its end: an unsafe configuration must stop it at start-up."""
    command = Proxy(confdir, config, extra).command()
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=child_env(), cwd=REPO)


def test_start_up_is_refused_for_a_non_loopback_listener_without_keys(fakes, tmp_path):
    port = free_port()
    done = start_up(tmp_path, fakes.llm_yaml(), "--mode", f"reverse:http://127.0.0.1:9@0.0.0.0:{port}")
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "LLM access:" in line]
    assert len(lines) == 1, done.stdout + done.stderr
    assert f"0.0.0.0:{port}" in lines[0] and "access.keys" in lines[0] and "127.0.0.1" in lines[0]


def test_start_up_is_refused_for_multi_user_without_keys(fakes, tmp_path):
    done = start_up(tmp_path, fakes.llm_yaml() + "access:\n  mode: multi-user\n")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if "multi-user mode needs at least one key" in line]
    assert len(lines) == 1, output
