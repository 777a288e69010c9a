"""Issue #13: names are data, never markup: every renderer shows a hostile name as written
(terminal tables and panels, the CLI, the Markdown memo), never as markup, HTML or escapes."""

from __future__ import annotations

import io
import json
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from meta_supervisor.allocate.core import allocate
from meta_supervisor.cli.main import app
from meta_supervisor.config import Paths
from meta_supervisor.cycle.run import commit
from meta_supervisor.views.memo import decision_memo
from meta_supervisor.views.terminal import (
    agent_history_table,
    allocation_table,
    explanation_panel,
    history_table,
)

AS_OF = datetime(2026, 1, 15, tzinfo=UTC)
HOSTILE = {
    "markup": "[/bold]x",
    "style": "[red]atlas[/red]",
    "escape": "evil\x1b[2J\x1b]0;pwned\x07",
    "invisible": "atlas\u200b",
    "bidi": "\u202eatlas",
    "html": "<img src=x onerror=alert(1)>",
    "link": "[click](javascript:alert(1))",
}


def _render(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, width=400, color_system=None, force_terminal=False).print(renderable)
    return out.getvalue()


def _decision(name: str):
    stats = {
        name: {"pnl_sum_bps": 80.0, "hit_rate": 0.6, "strategy": name},
        "atlas": {"pnl_sum_bps": 50.0, "hit_rate": 0.5, "strategy": "momentum"},
    }
    return allocate(stats, as_of=AS_OF)


def _no_raw_controls(text: str) -> None:
    hidden = [c for c in text if unicodedata.category(c) in {"Cc", "Cf"} and c != "\n"]
    assert not hidden, hidden


@pytest.mark.parametrize("name", sorted(HOSTILE.values()))
def test_terminal_renderers_show_names_as_written(name: str) -> None:
    """'[/bold]x' crashed allocate, explain and history; escapes reached the terminal raw."""
    decision = _decision(name)
    for renderable in (
        allocation_table(decision),
        explanation_panel(decision, name),
        history_table(
            [
                {
                    "seq": 1,
                    "as_of": decision.as_of,
                    "weights": decision.weights,
                    "cash": decision.cash,
                }
            ]
        ),
        agent_history_table(
            name,
            [
                {
                    "seq": 1,
                    "as_of": decision.as_of,
                    "agent": {"weight": 0.1, "factors": {}, "summary": name},
                }
            ],
        ),
    ):
        text = _render(renderable)
        _no_raw_controls(text)
        if name.isprintable():
            assert name in text


@pytest.mark.parametrize("name", sorted(HOSTILE.values()))
def test_memo_never_carries_live_html_or_links(name: str) -> None:
    """Raw HTML in names went live in the LP memo."""
    memo = decision_memo(_decision(name).to_dict())
    _no_raw_controls(memo)
    assert "<img" not in memo and "](javascript" not in memo and "[click]" not in memo


@pytest.mark.parametrize("command", [["explain"], ["history"], ["explain", "--format", "md"]])
def test_cli_renders_a_hostile_recorded_name(tmp_path: Path, command: list[str]) -> None:
    """A state written with a hostile name (seed stats dicts skip ingest) renders safely."""
    paths = Paths.under(tmp_path)
    commit(_decision(HOSTILE["markup"]), paths)
    result = CliRunner().invoke(app, [*command, "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "[/bold]x" in result.output or "&#91;/bold&#93;x" in result.output


def test_json_output_keeps_names_as_data(tmp_path: Path) -> None:
    """Machine output is not a renderer: names stay exactly as recorded."""
    paths = Paths.under(tmp_path)
    commit(_decision(HOSTILE["html"]), paths)
    result = CliRunner().invoke(app, ["explain", "--format", "json", "--root", str(tmp_path)])
    assert HOSTILE["html"] in json.loads(result.stdout)["agents"]
