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


def config_place(config_path: str | None, config: Config) -> str:
    """Where the prices were looked for, for the note on unknown costs."""
    path = Path(config_path or DEFAULT_CONFIG)
    if not path.is_file():
        return f"{path.resolve()} (not found; pass --config FILE)"
    return str(path) + ("" if config.costs else " (it has no `costs:` table)")


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


def cost_note(result: dict[str, Any], where: str) -> str | None:
    """Says when costs are unknown: their models count as 0 in ``cost US$``."""
    unpriced = result.get("unpriced") or []
    if not unpriced:
        return None
    return f"cost unknown (counted as 0) for {', '.join(unpriced)}: no `costs:` entry in {where}"


def day_range(rows: list[dict[str, Any]]) -> list[date]:
    """Every day from the first to the last with data: idle days show as gaps."""
    days = sorted({date.fromisoformat(row["day"]) for row in rows})
    if not days:
        return []
    return [date.fromordinal(n) for n in range(days[0].toordinal(), days[-1].toordinal() + 1)]


def plot(result: dict[str, Any], path: Path, note: str | None) -> None:
    """Input (solid) and output (hatched) tokens per day side by side above, cost per day below,
    each stacked by the groups other than ``day``; one bar group per day, labelled once."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    groups = [g for g in result["group_by"] if g != "day"]
    rows, days = result["rows"], day_range(result["rows"])
    position = {day.isoformat(): i for i, day in enumerate(days)}
    series = sorted({" · ".join(str(row[g]) for g in groups) or "all" for row in rows})
    values = {(name, field): [0.0] * len(days) for name in series for field in COLUMNS}
    for row in rows:
        name = " · ".join(str(row[g]) for g in groups) or "all"
        for field in ("input_tokens", "output_tokens", "cost_usd"):
            values[(name, field)][position[row["day"]]] += row[field] or 0
    figure, (tokens, cost) = pyplot.subplots(2, 1, sharex=True, figsize=(8, 6))
    x = list(range(len(days)))
    bottoms = {field: [0.0] * len(days) for field in ("input_tokens", "output_tokens", "cost_usd")}
    colours = pyplot.get_cmap("tab10")
    for n, name in enumerate(series):
        colour = colours(n % 10)
        for field, offset, hatch in (("input_tokens", -0.2, None), ("output_tokens", 0.2, "//")):
            heights, bottom = values[(name, field)], bottoms[field]
            tokens.bar([i + offset for i in x], heights, 0.4, bottom=bottom, color=colour, hatch=hatch)
            bottoms[field] = [b + h for b, h in zip(bottom, heights)]
        heights = values[(name, "cost_usd")]
        cost.bar(x, heights, 0.6, bottom=bottoms["cost_usd"], color=colour, label=name)
        bottoms["cost_usd"] = [b + h for b, h in zip(bottoms["cost_usd"], heights)]
    tokens.set_ylabel("tokens (input | output, hatched)")
    tokens.set_title("LLM usage per day (UTC)" + (f" by {', '.join(groups)}" if groups else ""))
    cost.set_ylabel("cost (US$)")
    if note:
        cost.set_title("cost unknown for some models (no costs: entry)", fontsize=9)
    if len(series) > 1 or groups:
        cost.legend(fontsize=8)
    step = max(1, len(days) // 12)  # at most about a dozen date labels
    cost.set_xticks(x[::step], [day.isoformat() for day in days][::step])
    cost.set_xlim(-0.6, len(days) - 0.4)
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
        per_day = (query[0], query[1], ["day", *(g for g in query[2] if g != "day")])
        if args.url:
            fetch, where = partial(from_proxy, args.url), f"the configuration of {args.url}"
        else:
            config = prices_and_database(args.config)
            path = Path(args.db).expanduser() if args.db else database_path(config.database, DEFAULT_CONFDIR)
            fetch, where = partial(from_database, path, config), config_place(args.config, config)
        result = fetch(query)
        print(table(result))
        if note := cost_note(result, where):
            print(f"note: {note}", file=sys.stderr)
        if args.plot:
            plot(fetch(per_day), args.plot, note)
            print(f"plot written to {args.plot}")
    except (ValueError, UsageError) as e:
        print(f"usage.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
