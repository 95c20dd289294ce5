"""Does mitmweb show both sides of a translated call? A look through a real browser.

Starts the fake providers and ``mitmweb -s addons/llm.py`` on loopback, makes a translated tool
round trip with the official openai SDK (OpenAI Chat to the Anthropic fake, the second call
streamed), opens the second call's flow in headless Chromium (Debian's ``/usr/bin/chromium``), and
checks that its request tab shows the client side and the provider side and its response tab the
provider's answer and the client's, each in its own words, with no line wider than the detail pane.
It writes a screenshot of each tab for review (``--out``, and ``-response`` beside it). The
browser is driven over the DevTools protocol on its websocket (aiohttp, which the proxy already
uses): no browser driver to install.

    .venv/bin/python scripts/browser_check.py --out docs/mitmweb.png

Exit status 0 when both tabs show both sides, 1 (with what the page said) when not, 2 when Chromium
is missing. Nothing leaves loopback: the fakes are the providers, and Chromium runs with its
background networking off and a new profile.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "tests") not in sys.path:  # the process harness and fakes, as the tests import them
    sys.path.append(str(REPO / "tests"))

import aiohttp  # noqa: E402
import openai  # noqa: E402
from support.builders import TOOL_RESULT, WEATHER_SCHEMA  # noqa: E402
from support.fakes import Fakes  # noqa: E402
from support.proxy import MITMDUMP, Proxy, Server, free_port  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
MITMWEB = MITMDUMP.with_name("mitmweb")
# Debian's chromium, headless, without any network of its own (updates, sync, QUIC, first run).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WINDOW = (1600, 1800)  # tall enough for both sides of the request tab
COLUMNS = ("tls", "icon", "path", "method", "status", "size", "time", "comment")
MODEL = "anthropic:claude-test"
DESCRIPTION = (
    "Get the current weather for a city: temperature in degrees Celsius, the sky, and the wind. Use it"
    " whenever the user asks about the weather now; for forecasts, say that you cannot tell."
)
WEB_URL = re.compile(r"Web server listening at (http://\S+)")
# What each tab (its route in mitmweb's single-page app) must show of the second call: both sides,
# each in its own words (a Chat "tool" message, Anthropic's end_turn and Chat's stop).
TABS: dict[str, tuple[str, ...]] = {
    "request": ("the request as the client sent it", "the request as the provider received it", "tool:"),
    "response": (
        "the answer as the provider sent it",
        "the answer as the client received it",
        "stop: end_turn",
        "stop: stop",
    ),
}
PAGE_WAIT = 30.0  # seconds for the page to render a tab
# The detail pane needs no horizontal scrolling: from the innermost element showing the view's
# first line up, no element is wider inside than it shows. Answers "fits" or the element that is not.
FITS = """(() => {
  const start = %s;
  const all = [...document.querySelectorAll("body *")].filter(e => (e.innerText || "").startsWith(start));
  for (let e = all[all.length - 1]; e && e !== document.body; e = e.parentElement) {
    if (e.scrollWidth > e.clientWidth + 1)
      return `${e.tagName}.${e.className}: ${e.scrollWidth} > ${e.clientWidth}`;
  }
  return all.length ? "fits" : "view not found";
})()"""


class WebProxy(Proxy):
    """The suite in mitmweb rather than mitmdump: the same listeners, plus the web UI."""

    def __init__(self, confdir: Path, config_text: str) -> None:
        self.web_port = free_port()
        columns = [arg for column in COLUMNS for arg in ("--set", f"web_columns={column}")]
        options = ["--set", f"web_port={self.web_port}", "--set", "web_open_browser=false", *columns]
        super().__init__(confdir, config_text, options)
        self.name = "mitmweb"

    def command(self) -> list[str]:
        return [str(MITMWEB), *super().command()[1:]]

    def ready(self) -> bool:
        return super().ready() and self.web_url is not None

    @property
    def web_url(self) -> str | None:
        """The UI's address with its login token, as mitmweb prints it."""
        found = WEB_URL.search(self.log)
        return found[1] if found else None


def chromium(profile: Path) -> Server:
    """Headless Chromium with its DevTools endpoint on a port of its choosing (written to the profile)."""
    width, height = WINDOW
    command = [
        str(CHROMIUM),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    return Server("chromium", command, ready=lambda: (profile / "DevToolsActivePort").exists())


def translated_round_trip(proxy: Proxy) -> None:
    """A tool call (whole) and the turn that answers it (streamed), by the openai SDK; the tool's
    description is long, as coding agents' are, so the pane has lines to fold."""
    client = openai.OpenAI(base_url=proxy.front_url + "/v1", api_key="unused", max_retries=0)
    tool = {"name": "get_weather", "description": DESCRIPTION, "parameters": WEATHER_SCHEMA}
    asked: dict[str, Any] = {"model": MODEL, "tools": [{"type": "function", "function": tool}]}
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.chat.completions.create(messages=messages, **asked).choices[0].message
    result = {"role": "tool", "tool_call_id": called.tool_calls[0].id, "content": TOOL_RESULT}
    messages += [called.model_dump(exclude_none=True), result]
    stream_usage = {"include_usage": True}
    list(client.chat.completions.create(messages=messages, stream=True, stream_options=stream_usage, **asked))


async def last_translated_flow(session: aiohttp.ClientSession, base: str, token: str) -> str:
    """The id of the newest finished flow that went to the Anthropic fake."""
    deadline = time.monotonic() + PAGE_WAIT
    while time.monotonic() < deadline:
        async with session.get(f"{base}/flows", headers={"authorization": f"Bearer {token}"}) as answer:
            flows = await answer.json()
        done = [f for f in flows if f["request"]["path"].endswith("/v1/messages") and f.get("response")]
        if len(done) >= 2:
            return done[-1]["id"]
        await asyncio.sleep(0.2)
    raise RuntimeError("mitmweb lists no finished translated flow")


class Page:
    """One browser tab, driven with DevTools protocol commands over its websocket."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        await self.socket.send_json({"id": number, "method": method, "params": params})
        async for message in self.socket:
            reply = json.loads(message.data)
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise RuntimeError("the browser closed its DevTools connection")

    async def text(self) -> str:
        result = await self.call("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)
        return str(result.get("result", {}).get("value", ""))

    async def show(self, url: str, wanted: tuple[str, ...]) -> str:
        """Open ``url`` and wait until the page says everything ``wanted``; the page's text."""
        await self.call("Page.navigate", url=url)
        deadline = time.monotonic() + PAGE_WAIT
        text = ""
        while time.monotonic() < deadline:
            text = await self.text()
            if all(word in text for word in wanted):
                break
            await asyncio.sleep(0.25)
        return text

    async def fits(self, start: str) -> str:
        expression = FITS % json.dumps(start)
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return str(result.get("result", {}).get("value", ""))

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


async def look(devtools: str, web_url: str, out: Path) -> list[str]:
    """Open the flow's two tabs, screenshot each; what was missing (empty when all was there)."""
    base, _, query = web_url.rstrip("/").partition("/?")
    token = query.removeprefix("token=")
    missing: list[str] = []
    async with aiohttp.ClientSession() as session:
        flow = await last_translated_flow(session, base, token)
        async with session.get(f"http://{devtools}/json/list") as answer:
            target = next(t for t in await answer.json() if t["type"] == "page")
        async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            page = Page(socket)
            await page.call("Page.enable")
            for tab, wanted in TABS.items():
                text = await page.show(f"{base}/?token={token}#/flows/{flow}/{tab}", wanted)
                shot = out if tab == "request" else out.with_name(f"{out.stem}-{tab}{out.suffix}")
                await page.screenshot(shot)
                missing += [f"{tab} tab: {word!r}" for word in wanted if word not in text]
                if (fits := await page.fits("── ")) != "fits":  # the view's first line: a side's title
                    missing.append(f"{tab} tab: lines that fit the pane ({fits})")
                print(f"{tab} tab: {shot}")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("mitmweb.png"), help="the request tab's screenshot")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fakes = Fakes().start()
    with tempfile.TemporaryDirectory(prefix="browser-check-") as scratch:
        proxy = WebProxy(Path(scratch), fakes.llm_yaml())
        browser = chromium(Path(scratch) / "profile")
        try:
            proxy.start()
            translated_round_trip(proxy)
            browser.start()
            port = (Path(scratch) / "profile" / "DevToolsActivePort").read_text().split()[0]
            assert proxy.web_url is not None
            missing = asyncio.run(look(f"127.0.0.1:{port}", proxy.web_url, args.out))
        finally:
            browser.stop()
            proxy.stop()
            fakes.stop()
    if missing:
        print("mitmweb did not show " + "; ".join(missing), file=sys.stderr)
        return 1
    print("mitmweb shows both sides of the translated call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
