"""Model discovery through each SDK's own list call, and the diagnostics report."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types
from support.proxy import Proxy, free_port

KEYS = ("sk-fake-openai-0001", "sk-ant-fake-0001", "AIza-fake-gemini-0001")


@pytest.fixture(scope="module")
def catalog_proxy(fakes, tmp_path_factory):
    config = f"""
backends:
  openai: {{type: openai, base_url: "{fakes.openai.base_url}/v1", api_keys: ["{KEYS[0]}"],
           models: ["gpt-configured", "gpt-*"], discover_models: true}}
  anthropic: {{type: anthropic, base_url: "{fakes.anthropic.base_url}", api_keys: ["{KEYS[1]}"],
              discover_models: true}}
  gemini: {{type: gemini, base_url: "{fakes.gemini.base_url}", api_keys: ["{KEYS[2]}"],
           discover_models: true}}
  broken: {{type: openai-compatible, base_url: "http://127.0.0.1:{free_port()}/v1", discover_models: true,
           timeouts: {{connect: 1, first_byte: 1}}}}
default_backend: openai
"""
    running = Proxy(tmp_path_factory.mktemp("catalog"), config).start()
    yield running
    running.stop()


EXPECTED = {
    "openai/gpt-configured",
    "openai:gpt-configured",
    "openai/gpt-fake-1-mini",
    "openai:gpt-fake-1-mini",
    "anthropic/claude-fake-1",
    "anthropic:claude-fake-1",
    "google/gemini-fake-1",
    "gemini:gemini-fake-1",
}


def test_openai_sdk_lists_configured_and_discovered_models(catalog_proxy):
    client = openai.OpenAI(base_url=catalog_proxy.front_url + "/v1", api_key="client", max_retries=0)
    ids = {model.id for model in client.models.list()}
    assert EXPECTED <= ids
    assert not any("*" in i for i in ids), "globs are patterns, not models"


def test_anthropic_sdk_lists_models(catalog_proxy):
    client = anthropic.Anthropic(
        base_url=catalog_proxy.front_url + "/anthropic", api_key="client", max_retries=0
    )
    assert EXPECTED <= {model.id for model in client.models.list()}


def test_gemini_sdk_lists_models(catalog_proxy):
    client = genai.Client(api_key="client", http_options=types.HttpOptions(base_url=catalog_proxy.front_url))
    names = {model.name for model in client.models.list()}
    assert {f"models/{i}" for i in EXPECTED} <= names


def test_a_backend_that_cannot_list_is_reported_not_fatal(catalog_proxy):
    listing = httpx.get(f"{catalog_proxy.front_url}/v1/models", timeout=20).json()
    assert "broken" in listing["errors"]
    assert "did not answer" in listing["errors"]["broken"] or "failed" in listing["errors"]["broken"]
    assert not any(key in str(listing) for key in KEYS)


def test_discovered_lists_are_cached(catalog_proxy, fakes):
    httpx.get(f"{catalog_proxy.front_url}/v1/models", timeout=20)
    httpx.get(f"{catalog_proxy.front_url}/v1/models", timeout=20)
    assert len([r for r in fakes.openai.requests if r.path == "/v1/models"]) <= 1


def test_canonical_ids_are_routable(catalog_proxy, fakes):
    client = openai.OpenAI(base_url=catalog_proxy.front_url + "/v1", api_key="client", max_retries=0)
    reply = client.chat.completions.create(
        model="anthropic/claude-fake-1", messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content == "Hello from anthropic!"
    assert fakes.anthropic.requests[-1].body["model"] == "claude-fake-1"


def test_diagnostics_after_an_upstream_error(catalog_proxy):
    client = openai.OpenAI(base_url=catalog_proxy.front_url + "/v1", api_key="client", max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gemini:fail-500", messages=[{"role": "user", "content": "Hi"}])
    report = httpx.get(f"{catalog_proxy.front_url}/v1/diagnostics", timeout=10).json()
    gemini = report["backends"]["gemini"]
    assert gemini["type"] == "gemini" and gemini["key_count"] == 1
    assert gemini["errors"] >= 1 and gemini["last_error"]["status"] == 500
    assert "fake gemini: internal error" in gemini["last_error"]["error"]
    assert gemini["base_url"] == report["backends"]["gemini"]["base_url"]
    assert set(report["models"]["gpt-*"]) == {"openai"}
    assert report["truncated"] is None
    assert not any(key in str(report) for key in KEYS)


def test_reactivating_an_unknown_instance_is_a_404(catalog_proxy):
    response = httpx.post(f"{catalog_proxy.front_url}/v1/diagnostics/backends/nope/reactivate", timeout=10)
    assert response.status_code == 404
    assert "no backend instance 'nope'" in response.json()["error"]["message"]


GLOB_ONLY = """
backends:
  openai: {{type: openai, base_url: "{openai}", api_keys: ["{key}"], models: ["gpt-*"]}}
  gone: {{type: openai-compatible, base_url: "http://127.0.0.1:{port}/v1", models: ["local-literal", "l-*"],
         timeouts: {{connect: 1, first_byte: 1}}{extra}}}
default_backend: openai
"""


def test_glob_only_backends_list_the_providers_models_by_default(fakes, start_proxy):
    """The common configuration (globs, no discover_models): a model picker still gets names."""
    config = GLOB_ONLY.format(openai=f"{fakes.openai.base_url}/v1", key=KEYS[0], port=free_port(), extra="")
    proxy = start_proxy(config)
    client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key="unused", max_retries=0)
    ids = {m.id for m in client.models.list()}
    assert {"openai:gpt-fake-1-mini", "gone:local-literal"} <= ids
    listing = httpx.get(proxy.front_url + "/v1/models", timeout=10).json()
    assert set(listing["errors"]) == {"gone"}, "the failing discovery is reported, the listing still made"


def test_offline_backends_list_their_configured_literal_names(fakes, start_proxy):
    config = GLOB_ONLY.format(
        openai=f"{fakes.openai.base_url}/v1", key=KEYS[0], port=free_port(), extra=", discover_models: false"
    )
    listing = httpx.get(start_proxy(config).front_url + "/v1/models", timeout=10).json()
    ids = {m["id"] for m in listing["data"]}
    assert "gone:local-literal" in ids and not any(i.startswith("gone:l-") for i in ids)
    assert "gone" not in listing.get("errors", {})
