"""Print the proxy's usage totals as a table and, with ``--plot``, draw tokens and cost per day.

Reads the state database directly (``--db``; default: the configuration's ``database``, else
``~/.mitmproxy/llm-state.sqlite``) and prices it with the configuration's ``costs``, or asks a
running proxy (``--url http://127.0.0.1:8000``), which prices with its own configuration.

    python scripts/usage.py --since 2026-01-01 --group-by day,model --plot usage.png
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from addons.usage import GROUPS, parse_query, report
from backends.config import Config, ConfigError, parse_config
from backends.store import database_path

DEFAULT_CONFDIR = "~/.mitmproxy"
DEFAULT_CONFIG = "llm.yaml"
# Report field -> column title; the group columns come first.
COLUMNS = {
    "requests": "requests",
    "errors": "errors",
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_tokens": "cache read",
    "reasoning_tokens": "reasoning",
    "estimated_requests": "estimated",
    "cost_usd": "cost US$",
    "avg_latency_ms": "latency ms",
    "avg_ttft_ms": "ttft ms",
}


class UsageError(Exception):
    """A problem the user can fix; printed without a traceback."""


def prices_and_database(config_path: str | None) -> Config:
    """Only the ``costs`` and ``database`` keys: the report needs no provider keys from the environment."""
    path = Path(config_path or DEFAULT_CONFIG)
    if not path.is_file():
        if config_path:
            raise UsageError(f"{path}: no such file")
        return Config()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        wanted = {k: raw[k] for k in ("costs", "database") if isinstance(raw, dict) and k in raw}
        return parse_config(wanted, str(path))
    except (OSError, yaml.YAMLError, ConfigError) as e:
        raise UsageError(f"{path}: {e}") from None


def from_database(
    path: Path, config: Config, query: tuple[str | None, str | None, list[str]]
) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"{path}: no usage database (run the proxy first, or pass --db or --url)")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return report(conn, config.costs, *query)
    except sqlite3.Error as e:
        raise UsageError(f"{path}: {e}") from None
    finally:
        conn.close()


def from_proxy(url: str, query: tuple[str | None, str | None, list[str]]) -> dict[str, Any]:
    since, until, group_by = query
    params = {k: v for k, v in (("since", since), ("until", until)) if v} | {"group_by": ",".join(group_by)}
    address = f"{url.rstrip('/')}/v1/usage?{urllib.parse.urlencode(params)}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through HTTP(S)_PROXY
    try:
        with opener.open(address, timeout=30) as response:
            return json.load(response)
    except OSError as e:  # urllib's errors, HTTP ones included
        raise UsageError(f"{address}: {e}") from None


def table(result: dict[str, Any]) -> str:
    """The rows and a total line, text left-aligned, numbers right-aligned."""
    groups = result["group_by"]
    titles = [*groups, *COLUMNS.values()]
    lines = [[str(row[g]) for g in groups] + [cell(k, row[k]) for k in COLUMNS] for row in result["rows"]]
    total = ["total", *[""] * (len(groups) - 1)] + [cell(k, result["totals"][k]) for k in COLUMNS]
    widths = [max(len(line[i]) for line in [titles, *lines, total]) for i in range(len(titles))]

    def render(line: list[str]) -> str:
        cells = [c.ljust(w) if i < len(groups) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(titles), rule, *map(render, lines), rule, render(total)])


def cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "cost_usd":
        return f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def plot(per_day: dict[str, Any], path: Path) -> None:
    """Input and output tokens per day above, cost per day below, on a date axis (idle days show as gaps)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import dates, pyplot

    rows = per_day["rows"]
    days = dates.date2num([date.fromisoformat(row["day"]) for row in rows])
    figure, (tokens, cost) = pyplot.subplots(2, 1, sharex=True, figsize=(8, 6))
    tokens.bar(days - 0.2, [r["input_tokens"] for r in rows], width=0.4, label="input")
    tokens.bar(days + 0.2, [r["output_tokens"] for r in rows], width=0.4, label="output")
    tokens.set_ylabel("tokens")
    tokens.legend()
    tokens.set_title("LLM usage per day (UTC)")
    cost.bar(days, [r["cost_usd"] for r in rows], width=0.6, color="tab:green")
    cost.set_ylabel("cost (US$)")
    cost.xaxis_date()
    cost.xaxis.set_major_formatter(dates.DateFormatter("%Y-%m-%d"))
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, format="png")
    pyplot.close(figure)


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--db", help="state database file (default: the config's database, else ~/.mitmproxy/...)"
    )
    source.add_argument("--url", help="ask a running proxy instead, e.g. http://127.0.0.1:8000")
    parser.add_argument(
        "--config", help=f"configuration with the cost table (default: {DEFAULT_CONFIG} if present)"
    )
    parser.add_argument("--since", help="first day, ISO date (UTC)")
    parser.add_argument("--until", help="last day, ISO date (UTC)")
    parser.add_argument("--group-by", default=",".join(GROUPS), help=f"comma list of {', '.join(GROUPS)}")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="draw tokens and cost per day")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    try:
        query = parse_query(args.since, args.until, args.group_by)
        per_day = (query[0], query[1], ["day"])
        if args.url:
            fetch = partial(from_proxy, args.url)
        else:
            config = prices_and_database(args.config)
            path = Path(args.db).expanduser() if args.db else database_path(config.database, DEFAULT_CONFDIR)
            fetch = partial(from_database, path, config)
        print(table(fetch(query)))
        if args.plot:
            plot(fetch(per_day), args.plot)
            print(f"plot written to {args.plot}")
    except (ValueError, UsageError) as e:
        print(f"usage.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
