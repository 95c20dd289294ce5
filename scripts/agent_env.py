"""Print the environment that runs a coding agent through the proxy, or check that it would work.

    eval "$(python scripts/agent_env.py claude --front-door)"     # ANTHROPIC_BASE_URL → the front door
    eval "$(python scripts/agent_env.py codex --https-proxy)"     # HTTPS_PROXY plus the CA trust
    python scripts/agent_env.py doctor                            # proxy up? CA there? a call works?
    eval "$(python scripts/agent_env.py claude --key "alice:$ALICE_PROXY_KEY")"  # a proxy with keys

With ``--key NAME:KEY`` (a proxy with ``access.keys``) the proxy key goes where the proxy reads it:
at the front door it is the agent's API key; in HTTPS-proxy mode, where the agent's API key is its
own provider credential, it is the proxy URL's user and password
(``HTTPS_PROXY=http://NAME:KEY@host:port``, URL-quoted), which every agent's runtime sends as
``Proxy-Authorization: Basic`` on its CONNECT.

Why a combined bundle: Node appends ``NODE_EXTRA_CA_CERTS`` to its own roots, so the mitmproxy CA
alone is right there; ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE`` and ``CODEX_CA_CERTIFICATE``
*replace* the trust store, so they get the system roots plus the mitmproxy CA (docs/snags.md #23),
written once next to mitmproxy's confdir and rewritten only when the CA is newer.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_FRONT_DOOR = "http://127.0.0.1:8000"
DEFAULT_PROXY = "http://127.0.0.1:8080"
DEFAULT_CONFDIR = "~/.mitmproxy"
CA_FILE = "mitmproxy-ca-cert.pem"
BUNDLE_FILE = "mitmproxy-ca-bundle.pem"  # system roots + the mitmproxy CA
SYSTEM_BUNDLES = (  # Debian/Ubuntu, Fedora/RHEL, Alpine/macOS (Homebrew OpenSSL)
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)
LOOPBACK = "localhost,127.0.0.1,::1"
PLACEHOLDER_KEY = "unused"  # the proxy ignores the client's key and injects the provider's

# agent -> (its API-key variable, its front-door variables as {name: path after the front door URL}).
# opencode speaks Anthropic (its provider when ANTHROPIC_API_KEY is set), Qwen Code Chat Completions
# (its `openai` auth type, chosen in ~/.qwen/settings.json). In HTTPS-proxy mode each keeps its own
# default host: Qwen Code's is DashScope, which the proxy intercepts like api.openai.com.
AGENTS: dict[str, tuple[str, dict[str, str]]] = {
    "claude": ("ANTHROPIC_API_KEY", {"ANTHROPIC_BASE_URL": ""}),
    "codex": ("OPENAI_API_KEY", {}),
    "gemini": ("GEMINI_API_KEY", {"GOOGLE_GEMINI_BASE_URL": ""}),
    "opencode": ("ANTHROPIC_API_KEY", {}),
    "qwen": ("OPENAI_API_KEY", {"OPENAI_BASE_URL": "/v1"}),
}
# Front-door settings an agent reads from a variable holding its configuration as JSON (opencode
# merges OPENCODE_CONFIG_CONTENT over its configuration files): agent -> (variable, the JSON
# with "{front}" standing for the front door URL).
CONFIG_CONTENT: dict[str, tuple[str, str]] = {
    "opencode": (
        "OPENCODE_CONFIG_CONTENT",
        '{"provider": {"anthropic": {"options": {"baseURL": "{front}/v1"}}}}',
    ),
}
# Front-door settings an agent takes only from its configuration (Codex ignores OPENAI_BASE_URL):
# agent -> {config key: path after the front door URL}, printed as a comment with the flag form.
FRONT_DOOR_CONFIG: dict[str, dict[str, str]] = {"codex": {"openai_base_url": "/v1"}}
# Trust variables that replace the store (-> the combined bundle), per agent; Node's appends.
REPLACING_TRUST = {
    "claude": ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"),
    "codex": ("CODEX_CA_CERTIFICATE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"),
    "gemini": ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"),
    "opencode": ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"),
    "qwen": ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"),
}


class SetupError(RuntimeError):
    """Something the user must fix first; the message says how."""


# --- the CA bundle ------------------------------------------------------------------------------
def system_bundle() -> Path:
    """The system's root bundle: OpenSSL's default file, else the usual distribution paths."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, *SYSTEM_BUNDLES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise SetupError("no system CA bundle found (install ca-certificates)")


def mitmproxy_ca(confdir: Path) -> Path:
    ca = confdir / CA_FILE
    if not ca.is_file():
        raise SetupError(
            f"{ca} does not exist: start the proxy once (mitmdump -s addons/llm.py) to create it,"
            " or pass --confdir where it was started with --set confdir=DIR"
        )
    return ca


def combined_bundle(confdir: Path, system: Path | None = None) -> Path:
    """System roots followed by the mitmproxy CA, next to the confdir; rewritten only when stale."""
    ca = mitmproxy_ca(confdir)
    bundle = confdir / BUNDLE_FILE
    if bundle.is_file() and bundle.stat().st_mtime >= ca.stat().st_mtime:
        return bundle
    roots = (system or system_bundle()).read_bytes()
    bundle.write_bytes(roots.rstrip(b"\n") + b"\n" + ca.read_bytes())
    return bundle


# --- the environment ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ProxyKey:
    """A proxy key of ``access.keys``: its name and its secret."""

    name: str
    secret: str = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> ProxyKey:
        """``NAME:KEY`` (a name never holds a colon; a key may)."""
        name, colon, secret = text.partition(":")
        if not (name and colon and secret):
            raise argparse.ArgumentTypeError("give the proxy key as NAME:KEY, as in access.keys")
        return cls(name, secret)


@dataclass(frozen=True)
class Endpoints:
    front_door: str
    proxy: str
    confdir: Path
    key: ProxyKey | None = None  # None: the proxy has no access.keys

    @property
    def proxy_with_key(self) -> str:
        """The HTTPS-proxy URL, with the proxy key as its user and password when there is one."""
        if self.key is None:
            return self.proxy
        parts = urlsplit(self.proxy)
        user = f"{quote(self.key.name, safe='')}:{quote(self.key.secret, safe='')}"
        return urlunsplit(parts._replace(netloc=f"{user}@{parts.netloc.rpartition('@')[2]}"))


def own_key_or_placeholder(variable: str) -> str:
    """The user's key stays (the proxy drops it but some agents insist on one), else a placeholder."""
    return f"${{{variable}:-{PLACEHOLDER_KEY}}}"


def front_door_env(agent: str, where: Endpoints) -> dict[str, str]:
    """The front door reads the proxy key where each protocol carries an API key: the agent's own."""
    key, urls = AGENTS[agent]
    env = {name: where.front_door + path for name, path in urls.items()}
    if agent in CONFIG_CONTENT:
        variable, content = CONFIG_CONTENT[agent]
        env[variable] = content.replace("{front}", where.front_door)
    return {**env, key: where.key.secret if where.key else own_key_or_placeholder(key)}


def front_door_config(agent: str, where: Endpoints) -> dict[str, str]:
    return {key: where.front_door + path for key, path in FRONT_DOOR_CONFIG.get(agent, {}).items()}


def config_comment(agent: str, where: Endpoints) -> str:
    """The settings no variable can carry, as `codex -c key="value"` (or config.toml lines)."""
    settings = front_door_config(agent, where)
    if not settings:
        return ""
    flags = " ".join(f"-c {shlex.quote(f'{key}={json.dumps(value)}')}" for key, value in settings.items())
    return f"# {agent} takes the front door from its configuration only: run {agent} {flags}\n"


def https_proxy_env(agent: str, where: Endpoints) -> dict[str, str]:
    """The proxy for HTTPS only; loopback stays direct; each runtime's trust variable."""
    key, _ = AGENTS[agent]
    bundle = str(combined_bundle(where.confdir))
    return {
        "HTTPS_PROXY": where.proxy_with_key,
        "NO_PROXY": LOOPBACK,
        "NODE_EXTRA_CA_CERTS": str(mitmproxy_ca(where.confdir)),
        **dict.fromkeys(REPLACING_TRUST[agent], bundle),
        key: own_key_or_placeholder(key),
    }


MODES: dict[str, Callable[[str, Endpoints], dict[str, str]]] = {
    "front-door": front_door_env,
    "https-proxy": https_proxy_env,
}


def export_lines(env: dict[str, str]) -> str:
    """`export NAME=value` lines; a `${VAR:-default}` value stays expandable, all else is quoted."""

    def quoted(value: str) -> str:
        return f'"{value}"' if value.startswith("${") else shlex.quote(value)

    return "".join(f"export {name}={quoted(value)}\n" for name, value in env.items())


# --- doctor -------------------------------------------------------------------------------------
def check_listening(url: str) -> None:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=3).close()
    except OSError as exc:
        raise SetupError(f"nothing listens at {url} ({exc}): start the proxy (mitmdump -s addons/llm.py)")


def fetch(opener: urllib.request.OpenerDirector, request: urllib.request.Request) -> bytes:
    try:
        with opener.open(request, timeout=30) as answer:
            return bytes(answer.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise SetupError(f"{request.full_url} answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SetupError(f"{request.full_url} failed: {exc}") from exc


def direct() -> urllib.request.OpenerDirector:
    """The front door is on loopback: never through a proxy from the environment."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def front_door_request(where: Endpoints, path: str) -> urllib.request.Request:
    headers = {"Authorization": f"Bearer {where.key.secret}"} if where.key else {}
    return urllib.request.Request(f"{where.front_door}{path}", headers=headers)


def first_model(where: Endpoints) -> str:
    body = json.loads(fetch(direct(), front_door_request(where, "/v1/models")))
    models = [m["id"] for m in body.get("data", []) if ":" in m.get("id", "")]
    if not models:
        raise SetupError("the proxy lists no backend:model selector: pass --model BACKEND:MODEL")
    return str(models[0])


def sample_call(where: Endpoints, model: str) -> str:
    """One short chat completion to api.openai.com through the HTTPS proxy, trusting the bundle."""
    context = ssl.create_default_context(cafile=str(combined_bundle(where.confdir)))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"https": where.proxy_with_key}),
        urllib.request.HTTPSHandler(context=context),
    )
    payload = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "Say ok."}]}
    request = urllib.request.Request(
        "https://api.openai.com/v1/chat/completions",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {PLACEHOLDER_KEY}"},
    )
    answer = json.loads(fetch(opener, request))
    return str(answer["choices"][0]["message"].get("content") or "")


def check_front_door(where: Endpoints, model: str | None) -> str:
    fetch(direct(), front_door_request(where, "/v1/models"))
    return where.front_door


def check_https_proxy(where: Endpoints, model: str | None) -> str:
    check_listening(where.proxy)
    return where.proxy


def check_ca(where: Endpoints, model: str | None) -> str:
    return str(mitmproxy_ca(where.confdir))


def check_bundle(where: Endpoints, model: str | None) -> str:
    return str(combined_bundle(where.confdir))


def check_sample_call(where: Endpoints, model: str | None) -> str:
    chosen = model or first_model(where)
    return f"{chosen} answered {sample_call(where, chosen)!r}"


DOCTOR_CHECKS: dict[str, Callable[[Endpoints, str | None], str]] = {
    "front door answers": check_front_door,
    "HTTPS proxy listens": check_https_proxy,
    "mitmproxy CA exists": check_ca,
    "combined CA bundle": check_bundle,
    "sample call through the HTTPS proxy": check_sample_call,
}


def doctor(where: Endpoints, model: str | None, out: Callable[[str], None]) -> int:
    """Each check in order; the first failure says what to fix and ends the run."""
    for name, check in DOCTOR_CHECKS.items():
        try:
            detail = check(where, model)
        except SetupError as exc:
            out(f"FAIL {name}: {exc}")
            return 1
        out(f"ok   {name}: {detail}")
    return 0


# --- command line -------------------------------------------------------------------------------
def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("agent", choices=[*AGENTS, "doctor"])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--front-door", dest="mode", action="store_const", const="front-door")
    mode.add_argument("--https-proxy", dest="mode", action="store_const", const="https-proxy")
    parser.add_argument("--front-door-url", default=DEFAULT_FRONT_DOOR, help="the proxy's API front door")
    parser.add_argument("--proxy-url", default=DEFAULT_PROXY, help="the proxy's HTTPS-proxy listener")
    parser.add_argument("--confdir", default=DEFAULT_CONFDIR, help="mitmproxy's confdir (holds its CA)")
    parser.add_argument("--model", help="doctor: the sample call's backend:model (default: the first listed)")
    parser.add_argument(
        "--key", type=ProxyKey.parse, metavar="NAME:KEY", help="the proxy key, for a proxy with access.keys"
    )
    parser.set_defaults(mode="front-door")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    confdir = Path(args.confdir).expanduser()
    where = Endpoints(args.front_door_url.rstrip("/"), args.proxy_url, confdir, args.key)
    if args.agent == "doctor":
        return doctor(where, args.model, print)
    try:
        sys.stdout.write(export_lines(MODES[args.mode](args.agent, where)))
        if args.mode == "front-door":
            sys.stdout.write(config_comment(args.agent, where))
    except SetupError as exc:
        print(f"agent_env: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
