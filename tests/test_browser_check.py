"""The browser check (scripts/browser_check.py) passes: mitmweb, in headless Chromium, shows both
sides of a translated call made by the openai SDK, and screenshots of both tabs are written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "browser_check.py"
CHROMIUM = Path("/usr/bin/chromium")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)
def test_mitmweb_shows_both_sides_of_a_translated_call_in_a_browser(tmp_path):
    shot = tmp_path / "mitmweb.png"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(shot)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mitmweb shows both sides of the translated call" in done.stdout
    for path in (shot, tmp_path / "mitmweb-response.png"):
        assert path.read_bytes().startswith(PNG)
