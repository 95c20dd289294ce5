"""`mitmdump -s addons/llm.py` without --mode: the suite opens its three listeners itself."""

from __future__ import annotations

import httpx
from support.proxy import ADDON, MITMDUMP, Server, free_port

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
