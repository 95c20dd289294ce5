"""HTTPS-proxy mode: unmodified SDKs calling the real provider hosts are served by the configured
backends, while every other host passes through untouched."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
from google import genai
from google.genai import types
from support.builders import CLIENT_KEY, proxied_http, proxied_http2, trust


def test_openai_sdk_at_api_openai_com_reaches_the_openai_backend(proxy, fakes):
    client = openai.OpenAI(api_key=CLIENT_KEY, http_client=proxied_http(proxy), max_retries=0)
    assert str(client.base_url).startswith("https://api.openai.com/")
    response = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert response.choices[0].message.content == "Hello from openai!"
    upstream = fakes.openai.requests[-1]
    assert upstream.headers["authorization"] == "Bearer sk-fake-openai-0001"


def test_anthropic_sdk_at_api_anthropic_com_reaches_the_anthropic_backend(proxy, fakes):
    client = anthropic.Anthropic(api_key=CLIENT_KEY, http_client=proxied_http2(proxy), max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    ) as events:
        assert "".join(events.text_stream) == "Hello from anthropic!"
    upstream = fakes.anthropic.requests[-1]
    assert upstream.headers["x-api-key"] == "sk-ant-fake-0001"
    assert CLIENT_KEY not in str(upstream.headers)


def test_gemini_sdk_at_google_reaches_the_gemini_backend(proxy, fakes):
    options = types.HttpOptions(
        client_args={"proxy": proxy.proxy_url, "verify": trust(proxy), "trust_env": False}
    )
    client = genai.Client(api_key=CLIENT_KEY, http_options=options)
    assert (
        client.models.generate_content(model="gemini-2.5-flash", contents="Hi").text == "Hello from gemini!"
    )
    assert fakes.gemini.requests[-1].headers["x-goog-api-key"] == "AIza-fake-gemini-0001"


def test_selector_on_an_intercepted_host_translates(proxy, fakes):
    client = openai.OpenAI(api_key=CLIENT_KEY, http_client=proxied_http(proxy), max_retries=0)
    response = client.chat.completions.create(
        model="anthropic:claude-x", messages=[{"role": "user", "content": "Hi"}]
    )
    assert response.choices[0].message.content == "Hello from anthropic!"
    assert fakes.openai.requests == []


def test_no_real_provider_host_was_dialled(proxy):
    for host in ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com"):
        assert f"server connect {host}" not in proxy.log


def test_other_hosts_pass_through_untouched(proxy, fakes):
    """A plain-HTTP call to a non-LLM host keeps its path, body and the client's own credentials."""
    with httpx.Client(proxy=proxy.proxy_url, trust_env=False, timeout=20) as client:
        response = client.get(
            f"{fakes.openai.base_url}/v1/models", headers={"authorization": "Bearer sk-fake-openai-0001"}
        )
    assert response.status_code == 200
    assert fakes.openai.requests[-1].path == "/v1/models"


def test_unconfigured_provider_host_keeps_client_credentials(start_proxy, fakes):
    """With no anthropic backend, a call to api.anthropic.com is left alone (here: it cannot
    connect, so mitmproxy's own 502 shows the flow went to the real host, not to a backend)."""
    config = (
        f'backends:\n  openai: {{type: openai, base_url: "{fakes.openai.base_url}/v1", api_keys: ["k"]}}\n'
    )
    running = start_proxy(config)
    client = anthropic.Anthropic(api_key=CLIENT_KEY, http_client=proxied_http2(running), max_retries=0)
    try:
        client.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    except anthropic.APIError:
        pass
    assert fakes.openai.requests == []
    deadline = time.monotonic() + 15
    while "api.anthropic.com" not in running.log and time.monotonic() < deadline:
        time.sleep(0.1)  # mitmproxy logs the failed dial after answering the client
    assert "api.anthropic.com" in running.log
