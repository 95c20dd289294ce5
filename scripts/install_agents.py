"""Install the pinned coding agents that tests/test_e2e_agents.py drives, into .agents/ (git-ignored).

    python scripts/install_agents.py

Never globally: npm installs under ``.agents/`` of the repository, whose package.json and
package-lock.json stay out of git (the lock records registry URLs). Pins are the newest releases
that run on Node.js 20: Claude Code 2.1.197 is the last whose ``engines`` allow Node 20 (2.1.198
wants 22); Codex ships a native binary (``@openai/codex-linux-x64``) inside the npm package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = REPO / ".agents"
BIN = PREFIX / "node_modules" / ".bin"
ATTEMPTS = 2
# command -> (npm package, pinned version)
AGENTS = {
    "claude": ("@anthropic-ai/claude-code", "2.1.197"),
    "codex": ("@openai/codex", "0.169.0"),
    "gemini": ("@google/gemini-cli", "0.61.0"),
}


def main() -> int:
    PREFIX.mkdir(exist_ok=True)
    manifest = PREFIX / "package.json"
    if not manifest.exists():
        manifest.write_text(json.dumps({"private": True, "description": "agents for the e2e tests"}) + "\n")
    specs = [f"{package}@{version}" for package, version in AGENTS.values()]
    command = ["npm", "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund", "--loglevel=error"]
    for _ in range(ATTEMPTS):  # a registry hiccup should not fail a whole CI run
        if (code := subprocess.run([*command, *specs], check=False).returncode) == 0:
            return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
