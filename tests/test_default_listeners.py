"""The listeners at start-up: without --mode the suite opens its three listeners itself; a request
sent the moment a listener opens is served; mitmproxy's default listener, bound for a moment
before the suite replaces it, serves nothing (docs/mitm.md §2, "Start-up order")."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
from mitmproxy import connection
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons
from support.proxy import ADDON, MITMDUMP, Proxy, Server, free_port

from addons.listeners import Listeners

HOST = "127.0.0.2"  # a loopback address of its own: the fixed front-door port 8000 stays clear of others


def test_no_mode_flag_serves_front_door_proxy_and_anthropic_port(tmp_path, fakes):
    proxy_port, anthropic_port = free_port(), free_port()
    (tmp_path / "llm.yaml").write_text(fakes.llm_yaml())
    command = [
        str(MITMDUMP), "--set", f"confdir={tmp_path}", "--set", f"llm_config={tmp_path / 'llm.yaml'}",
        "--listen-host", HOST, "--listen-port", str(proxy_port),
        "--set", f"llm_anthropic_port={anthropic_port}",
        "-s", str(ADDON),
    ]  # fmt: skip
    wanted = {f"reverse proxy to http://127.0.0.1:9 listening at {HOST}:8000.",
              f"HTTP(S) proxy listening at {HOST}:{proxy_port}.",
              f"listening at {HOST}:{anthropic_port}."}  # fmt: skip
    mitmdump = Server("mitmdump", command, ready=lambda: all(w in mitmdump.log for w in wanted))
    try:
        mitmdump.start()
        assert all(w in mitmdump.log for w in wanted), mitmdump.log
        answer = httpx.post(
            f"http://{HOST}:8000/v1/chat/completions",
            json={"model": "anthropic:x", "messages": [{"role": "user", "content": "Hi"}]},
            timeout=20,
        )
        assert answer.json()["choices"][0]["message"]["content"] == "Hello from anthropic!"
        models = httpx.get(f"http://{HOST}:{anthropic_port}/v1/models", timeout=20).json()
        assert models["has_more"] is False
    finally:
        mitmdump.stop()


# -- a request the moment the port opens ----------------------------------------------------------

BODY = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}).encode()
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


class FirstCaller(threading.Thread):
    """Connects in a tight loop until the port accepts, sends a request at once, reads the answer."""

    def __init__(self, port: int, deadline: float = 120) -> None:
        super().__init__(name="first caller", daemon=True)
        self.port, self.deadline = port, time.monotonic() + deadline
        self.answer: bytes | None = None
        self.failure = "the front door never accepted the connection"

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            with socket.socket() as sock:
                try:
                    sock.connect(("127.0.0.1", self.port))
                except OSError:
                    continue
                try:
                    sock.sendall(REQUEST)
                    sock.settimeout(90)
                    chunks = []
                    while chunk := sock.recv(65536):
                        chunks.append(chunk)
                except OSError as e:  # accepted, then no answer: say so rather than die silently
                    self.failure = f"accepted, then {type(e).__name__}: {e}"
                    return
                self.answer = b"".join(chunks)
                return


def test_a_request_sent_the_moment_the_front_door_opens_is_served(fakes, tmp_path):
    proxy = Proxy(tmp_path, fakes.llm_yaml())
    caller = FirstCaller(proxy.front_port)
    caller.start()
    try:
        proxy.start()
        caller.join(150)
        assert caller.answer is not None, caller.failure
        head, _, body = caller.answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), caller.answer[:500]
        assert json.loads(body)["choices"][0]["message"]["content"] == "Hello from openai!"
        assert "error establishing server connection" not in proxy.log
        # What makes this hold: the script loads, and sets the lazy strategy, before any bind.
        assert proxy.log.index("Loading script") < proxy.log.index("listening at")
    finally:
        proxy.stop()


# -- in process ----------------------------------------------------------------------------------


def test_the_lazy_strategy_is_set_as_soon_as_the_suite_is_configured():
    listeners = Listeners()
    with taddons.context(Proxyserver(), listeners) as tctx:
        assert tctx.options.connection_strategy == "eager"  # mitmproxy's default
        tctx.configure(listeners)
        assert tctx.options.connection_strategy == "lazy"


def client_of(spec: str) -> connection.Client:
    return connection.Client(
        peername=("192.0.2.7", 50000), sockname=("0.0.0.0", 8080), timestamp_start=time.time(),
        proxy_mode=ProxyMode.parse(spec),
    )  # fmt: skip


def test_connections_to_mitmproxys_default_listener_are_closed_at_once():
    listeners = Listeners()
    with taddons.context(Proxyserver(), listeners) as tctx:
        tctx.configure(listeners, mode=["regular"])  # mitmproxy's default: the user gave no --mode
        transient = client_of("regular")
        listeners.client_connected(transient)
        listeners.running()
        assert tctx.options.mode[1] == "regular@127.0.0.1:8080"
        own = client_of(tctx.options.mode[1])
        listeners.client_connected(own)
    assert transient.error
    assert own.error is None


def test_the_users_own_modes_are_never_closed():
    listeners = Listeners()
    with taddons.context(Proxyserver(), listeners) as tctx:
        tctx.configure(listeners, mode=["regular", "reverse:http://127.0.0.1:9@127.0.0.1:8000"])
        client = client_of("regular")  # the user's own --mode regular: *:8080, as asked
        listeners.client_connected(client)
    assert client.error is None
