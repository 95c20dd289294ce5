"""scripts/usage.py: the plot for one day and for many, by ``--group-by``, and the note on unknown costs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from addons.usage import SCHEMA
from backends.store import ensure_schema, open_database
from scripts import usage as usage_script

COSTS = "costs:\n  'claude-*': {input: 3, output: 15}\n"


def database(path: Path, rows: list[tuple[str, str, str, int, int]]) -> Path:
    """Usage rows of (day, backend, model, input, output)."""
    conn = open_database(path)
    ensure_schema(conn, "usage", SCHEMA)
    for day, backend, model, tokens_in, tokens_out in rows:
        conn.execute(
            "INSERT INTO usage (time, day, client_protocol, backend, model, client, status, input_tokens, "
            "output_tokens, estimated, latency_ms) "
            "VALUES (0, ?, 'openai-chat', ?, ?, 'alice', 200, ?, ?, 0, 10)",
            (day, backend, model, tokens_in, tokens_out),
        )
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def figures(monkeypatch) -> list[Figure]:
    """The figures the script saves, kept for inspection (the PNG is still written)."""
    saved: list[Figure] = []
    original = Figure.savefig

    def keep(self: Figure, *args: Any, **kwargs: Any) -> None:
        saved.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def draw(tmp_path: Path, rows, *extra: str, costs: str = COSTS) -> None:
    config = tmp_path / "llm.yaml"
    config.write_text(costs)
    db = database(tmp_path / "state.sqlite", rows)
    picture = tmp_path / "usage.png"
    args = ["--db", str(db), "--config", str(config), "--plot", str(picture), *extra]
    assert usage_script.main(args) == 0
    assert picture.read_bytes().startswith(b"\x89PNG")


def labels(figure: Figure) -> list[str]:
    return [t.get_text() for t in figure.axes[1].get_xticklabels()]


def test_one_day_is_labelled_once_with_input_and_output_side_by_side(tmp_path, figures):
    draw(tmp_path, [("2026-03-01", "anthropic", "claude-x", 1000, 200)], "--group-by", "day")
    (figure,) = figures
    assert labels(figure) == ["2026-03-01"]
    bars = [(round(p.get_x() + p.get_width() / 2, 2), p.get_height()) for p in figure.axes[0].patches]
    assert bars == [(-0.2, 1000), (0.2, 200)], "input and output over the same day"


def test_many_days_show_every_day_idle_ones_as_gaps(tmp_path, figures):
    rows = [("2026-03-01", "anthropic", "claude-x", 10, 1), ("2026-03-04", "anthropic", "claude-x", 20, 2)]
    draw(tmp_path, rows, "--group-by", "day")
    assert labels(figures[0]) == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]


def test_the_plot_stacks_the_groups_of_group_by(tmp_path, figures):
    rows = [("2026-03-01", "anthropic", "claude-x", 10, 1), ("2026-03-01", "openai", "gpt-y", 30, 3)]
    draw(tmp_path, rows, "--group-by", "model")
    legend = figures[0].axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["claude-x", "gpt-y"]
    assert "by model" in figures[0].axes[0].get_title()


def test_unknown_costs_are_said_not_shown_as_zero_silently(tmp_path, figures, capsys):
    draw(tmp_path, [("2026-03-01", "openai", "gpt-y", 10, 1)], "--group-by", "day", costs="database: null\n")
    err = capsys.readouterr().err
    assert "cost unknown (counted as 0) for openai:gpt-y" in err and "no `costs:` table" in err
    assert "cost unknown" in figures[0].axes[1].get_title()


def test_a_missing_config_is_named_in_the_note(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = database(tmp_path / "state.sqlite", [("2026-03-01", "openai", "gpt-y", 10, 1)])
    assert usage_script.main(["--db", str(db)]) == 0
    assert "llm.yaml (not found; pass --config FILE)" in capsys.readouterr().err
