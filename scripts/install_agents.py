"""Install the pinned coding agents that tests/test_e2e_agents.py drives, into .agents/ (git-ignored).

    python scripts/install_agents.py

Never globally: npm installs under ``.agents/`` of the repository, whose package.json and
package-lock.json stay out of git (the lock records registry URLs). Pins are the current releases.
Claude Code 2.1.198 and later want Node.js 22, so Node 22 comes from the registry's ``node``
package (its binary package for the platform) into the same ``.agents/``: its ``node`` lands in
``BIN``, which the tests put first on PATH, so it runs the agents and nothing else. Codex and
opencode ship native binaries inside their npm packages. A registry hiccup should not fail a CI
run: the whole install is tried again, after a pause.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = REPO / ".agents"
BIN = PREFIX / "node_modules" / ".bin"
ATTEMPTS = 3
PAUSE = 10  # seconds between attempts
NODE = ("node", "22.23.3")  # the runtime of the agents, not of the project
# command -> (npm package, pinned version)
AGENTS = {
    "claude": ("@anthropic-ai/claude-code", "2.1.332"),
    "codex": ("@openai/codex", "0.171.0"),
    "gemini": ("@google/gemini-cli", "0.61.0"),
    "opencode": ("opencode-ai", "1.18.33"),
    "qwen": ("@qwen-code/qwen-code", "0.24.4"),
}


def main() -> int:
    PREFIX.mkdir(exist_ok=True)
    manifest = PREFIX / "package.json"
    if not manifest.exists():
        manifest.write_text(json.dumps({"private": True, "description": "agents for the e2e tests"}) + "\n")
    specs = [f"{package}@{version}" for package, version in (NODE, *AGENTS.values())]
    command = ["npm", "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund", "--loglevel=error"]
    for attempt in range(ATTEMPTS):
        if (code := subprocess.run([*command, *specs], check=False).returncode) == 0:
            return 0
        if attempt + 1 < ATTEMPTS:
            time.sleep(PAUSE)
    return code


if __name__ == "__main__":
    sys.exit(main())
