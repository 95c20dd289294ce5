"""The egress keeps no cookies: what a provider sets for one client never rides on another's request.

Providers behind Cloudflare (OpenAI, Anthropic) set a bot-management cookie on every answer. An
HTTP client with a cookie jar would store it and send it with every later call, whoever makes it:
state of one client's session leaking into all the others'. The provider's ``set-cookie`` still
reaches the client that got the answer, which may keep it as its own.
"""

from __future__ import annotations

import httpx
import pytest
from support.fakes.openai import BOT_COOKIE
from support.proxy import Proxy


@pytest.fixture(scope="module")
def named_host_proxy(fakes, tmp_path_factory):
    """The OpenAI fake reached as ``localhost``: cookie jars refuse cookies from IP addresses, and
    a real provider is always a host name."""
    config = fakes.llm_yaml().replace("default_backend", "#")
    port = fakes.openai.base_url.rsplit(":", 1)[1]
    config += (
        f'  named: {{type: openai, base_url: "http://localhost:{port}/v1", '
        'api_keys: ["sk-fake-openai-0001"]}\n'
        "default_backend: named\n"
    )
    running = Proxy(tmp_path_factory.mktemp("cookies"), config).start()
    yield running
    running.stop()


def ask(proxy: Proxy) -> httpx.Response:
    """One call from a fresh client (no cookie jar of its own carried over)."""
    body = {"model": "gpt-fake-1", "messages": [{"role": "user", "content": "hello"}]}
    with httpx.Client(timeout=20) as client:
        return client.post(f"{proxy.front_url}/v1/chat/completions", json=body)


def test_a_cookie_the_provider_set_for_one_client_is_not_sent_for_the_next(named_host_proxy, fakes):
    first, second = ask(named_host_proxy), ask(named_host_proxy)
    assert first.status_code == second.status_code == 200
    assert first.headers["set-cookie"] == BOT_COOKIE  # the client that got the answer sees it
    sent = [r for r in fakes.openai.requests if r.path.endswith("/chat/completions")]
    assert len(sent) == 2
    assert [r.headers.get("cookie") for r in sent] == [None, None]
