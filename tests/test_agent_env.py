"""scripts/agent_env.py: the environment printed for each agent and mode, the combined CA bundle,
and `doctor` against a running proxy."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from support.proxy import REPO, Proxy

from scripts import agent_env
from scripts.agent_env import BUNDLE_FILE, CA_FILE, Endpoints

FAKE_CA = b"-----BEGIN CERTIFICATE-----\nmitmproxy\n-----END CERTIFICATE-----\n"
FAKE_ROOTS = b"-----BEGIN CERTIFICATE-----\nsystem root\n-----END CERTIFICATE-----\n"


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    (tmp_path / CA_FILE).write_bytes(FAKE_CA)
    return tmp_path


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system bundle, replaced by a small file of our own."""
    path = tmp_path / "system-roots.pem"
    path.write_bytes(FAKE_ROOTS)
    monkeypatch.setattr(agent_env, "system_bundle", lambda: path)
    return path


def printed(*args: str) -> tuple[int, str, str]:
    script = REPO / "scripts" / "agent_env.py"
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=REPO)
    return done.returncode, done.stdout, done.stderr


def exported(text: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """What a shell has after `eval "$(agent_env.py …)"`."""
    script = f"{text}\nenv -0"
    done = subprocess.run(["sh", "-c", script], capture_output=True, env=environ or {}, check=True)
    pairs = (item.split(b"=", 1) for item in done.stdout.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode() for k, v in pairs}


# --- front door --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("agent", "variable", "url"),
    [
        ("claude", "ANTHROPIC_BASE_URL", "http://127.0.0.1:8000"),
        ("gemini", "GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:8000"),
        ("qwen", "OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
    ],
)
def test_front_door_points_the_agents_base_url_at_the_proxy(agent, variable, url):
    code, out, _ = printed(agent, "--front-door")
    assert code == 0
    assert exported(out)[variable] == url


def test_opencode_front_door_is_its_configuration_in_opencode_config_content():
    code, out, _ = printed("opencode", "--front-door", "--front-door-url", "http://127.0.0.1:9000")
    env = exported(out)
    assert code == 0 and env["ANTHROPIC_API_KEY"] == "unused"
    config = json.loads(env["OPENCODE_CONFIG_CONTENT"])
    assert config == {"provider": {"anthropic": {"options": {"baseURL": "http://127.0.0.1:9000/v1"}}}}


@pytest.mark.parametrize("agent", ["opencode", "qwen"])
def test_in_https_proxy_mode_opencode_and_qwen_code_keep_their_own_base_url(agent, confdir, roots):
    """Qwen Code's own default, DashScope, is a host the proxy intercepts (backends/presets.py)."""
    where = Endpoints("http://127.0.0.1:8000", "http://127.0.0.1:8080", confdir)
    env = agent_env.https_proxy_env(agent, where)
    assert not {"OPENAI_BASE_URL", "OPENCODE_CONFIG_CONTENT", "ANTHROPIC_BASE_URL"} & set(env)
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:8080"


def test_front_door_is_the_default_mode():
    assert printed("claude")[1] == printed("claude", "--front-door")[1]


def test_codex_front_door_comes_as_its_config_flag_because_it_ignores_openai_base_url():
    _, out, _ = printed("codex", "--front-door", "--front-door-url", "http://127.0.0.1:9000/")
    assert "OPENAI_BASE_URL" not in out
    comment = next(line for line in out.splitlines() if line.startswith("#"))
    assert comment.endswith("""codex -c 'openai_base_url="http://127.0.0.1:9000/v1"'""")
    flag = shlex.split(comment.split(": run codex ", 1)[1])
    assert flag == ["-c", 'openai_base_url="http://127.0.0.1:9000/v1"']


def test_a_placeholder_key_is_set_only_when_the_user_has_none():
    _, out, _ = printed("claude")
    assert exported(out)["ANTHROPIC_API_KEY"] == "unused"
    assert exported(out, {"ANTHROPIC_API_KEY": "mine"})["ANTHROPIC_API_KEY"] == "mine"


# --- HTTPS proxy -------------------------------------------------------------------------------
@pytest.mark.parametrize("agent", ["claude", "codex", "gemini", "opencode", "qwen"])
def test_https_proxy_mode_sets_the_proxy_and_keeps_loopback_direct(agent, confdir, roots):
    where = Endpoints("http://127.0.0.1:8000", "http://127.0.0.1:8081", confdir)
    env = agent_env.https_proxy_env(agent, where)
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:8081"
    assert set(env["NO_PROXY"].split(",")) >= {"localhost", "127.0.0.1"}


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini", "opencode", "qwen"])
def test_node_gets_the_mitmproxy_ca_alone_and_replacing_variables_the_combined_bundle(agent, confdir, roots):
    env = agent_env.https_proxy_env(agent, Endpoints("", "http://127.0.0.1:8080", confdir))
    assert env["NODE_EXTRA_CA_CERTS"] == str(confdir / CA_FILE)
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        assert env[variable] == str(confdir / BUNDLE_FILE)


def test_codex_trusts_the_combined_bundle_through_codex_ca_certificate(confdir, roots):
    env = agent_env.https_proxy_env("codex", Endpoints("", "http://127.0.0.1:8080", confdir))
    assert env["CODEX_CA_CERTIFICATE"] == str(confdir / BUNDLE_FILE)


def test_the_combined_bundle_holds_the_system_roots_then_the_mitmproxy_ca(confdir, roots):
    bundle = agent_env.combined_bundle(confdir)
    assert bundle == confdir / BUNDLE_FILE
    assert bundle.read_bytes() == FAKE_ROOTS + FAKE_CA


def test_the_combined_bundle_is_written_once_and_rewritten_when_the_ca_is_newer(confdir, roots):
    bundle = agent_env.combined_bundle(confdir)
    bundle.write_bytes(b"kept")
    assert agent_env.combined_bundle(confdir).read_bytes() == b"kept"
    later = time.time() + 5
    os.utime(confdir / CA_FILE, (later, later))
    assert agent_env.combined_bundle(confdir).read_bytes() == FAKE_ROOTS + FAKE_CA


def test_the_real_system_roots_are_found():
    assert b"BEGIN CERTIFICATE" in agent_env.system_bundle().read_bytes()


def test_a_missing_ca_says_to_start_the_proxy_once(tmp_path):
    code, out, err = printed("gemini", "--https-proxy", "--confdir", str(tmp_path))
    assert code == 1
    assert out == ""
    assert "start the proxy once" in err and str(tmp_path / CA_FILE) in err


# --- doctor ------------------------------------------------------------------------------------
def doctor_args(proxy, *extra: str) -> list[str]:
    return ["doctor", "--front-door-url", proxy.front_url, "--proxy-url", proxy.proxy_url,
            "--confdir", str(proxy.confdir), *extra]  # fmt: skip


def test_doctor_passes_against_a_running_proxy_with_a_sample_call(proxy, fakes):
    code, out, _ = printed(*doctor_args(proxy, "--model", "openai:gpt-fake-1"))
    assert code == 0, out
    assert out.count("ok   ") == len(agent_env.DOCTOR_CHECKS)
    assert "'Hello from openai!'" in out
    assert fakes.openai.requests[-1].headers["authorization"] == "Bearer sk-fake-openai-0001"


def test_doctor_names_what_to_fix_when_the_proxy_is_down(tmp_path):
    code, out, _ = printed("doctor", "--front-door-url", "http://127.0.0.1:9", "--confdir", str(tmp_path))
    assert code == 1
    assert out.startswith("FAIL front door answers:")


def test_doctor_reports_a_missing_ca(proxy, tmp_path):
    args = doctor_args(proxy)
    args[args.index("--confdir") + 1] = str(tmp_path)
    code, out, _ = printed(*args)
    assert code == 1
    assert "FAIL mitmproxy CA exists" in out and "start the proxy once" in out


def test_doctor_reports_a_failing_sample_call_with_the_providers_answer(start_proxy, fakes):
    own = start_proxy(fakes.llm_yaml())  # a 401 disables the key: not on the shared proxy
    code, out, _ = printed(*doctor_args(own, "--model", "openai:fail-401"))
    assert code == 1
    assert "FAIL sample call through the HTTPS proxy" in out and "401" in out


# --- a proxy with keys (--key NAME:KEY) ----------------------------------------------------------
PROXY_KEY = "s3cret:with/odd@chars and space"  # a key may hold what a URL must quote


@pytest.mark.parametrize(
    ("agent", "variable"),
    [
        ("claude", "ANTHROPIC_API_KEY"),
        ("codex", "OPENAI_API_KEY"),
        ("gemini", "GEMINI_API_KEY"),
        ("opencode", "ANTHROPIC_API_KEY"),
        ("qwen", "OPENAI_API_KEY"),
    ],
)
def test_at_the_front_door_the_proxy_key_is_the_agents_api_key(agent, variable):
    code, out, _ = printed(agent, "--front-door", "--key", f"alice:{PROXY_KEY}")
    assert code == 0
    assert exported(out, {variable: "the-users-own-provider-key"})[variable] == PROXY_KEY


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini", "opencode", "qwen"])
def test_in_https_proxy_mode_the_proxy_key_is_the_proxy_urls_user_and_password(agent, confdir, roots):
    key = agent_env.ProxyKey.parse(f"alice@team:{PROXY_KEY}")
    env = agent_env.https_proxy_env(agent, Endpoints("", "http://127.0.0.1:8081", confdir, key))
    url = urlsplit(env["HTTPS_PROXY"])
    assert (url.hostname, url.port) == ("127.0.0.1", 8081)
    assert (unquote(url.username or ""), unquote(url.password or "")) == ("alice@team", PROXY_KEY)
    variable = agent_env.AGENTS[agent][0]  # the agent's own credential for the provider host stays
    assert env[variable] == agent_env.own_key_or_placeholder(variable)


def test_the_printed_proxy_url_survives_the_shell(confdir, roots):
    args = ("claude", "--https-proxy", "--confdir", str(confdir), "--key", f"alice:{PROXY_KEY}")
    code, out, _ = printed(*args)
    assert code == 0
    assert unquote(urlsplit(exported(out)["HTTPS_PROXY"]).password or "") == PROXY_KEY


def test_a_key_without_its_name_is_refused_saying_the_form():
    code, out, err = printed("claude", "--key", "just-the-secret")
    assert code == 2 and out == ""
    assert "NAME:KEY" in err


ACCESS = f"""access:
  mode: multi-user
  keys:
    - {{name: alice, key: "{PROXY_KEY}"}}
"""


@pytest.fixture(scope="module")
def keyed_proxy(fakes, tmp_path_factory):
    running = Proxy(tmp_path_factory.mktemp("keyed"), fakes.llm_yaml() + ACCESS).start()
    yield running
    running.stop()


def test_doctor_with_the_key_passes_against_a_proxy_with_keys(keyed_proxy, fakes):
    code, out, _ = printed(*doctor_args(keyed_proxy, "--key", f"alice:{PROXY_KEY}"))
    assert code == 0, out
    assert out.count("ok   ") == len(agent_env.DOCTOR_CHECKS)
    assert PROXY_KEY not in str(fakes.openai.requests[-1].headers)


def test_doctor_without_the_key_says_the_proxy_wants_one(keyed_proxy):
    code, out, _ = printed(*doctor_args(keyed_proxy, "--model", "openai:gpt-fake-1"))
    assert code == 1
    assert "FAIL front door answers" in out and "401" in out and "proxy key" in out
