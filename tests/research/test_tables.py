"""The README's backtest table is rendered from a sweep's table, and says what that table says."""

from __future__ import annotations

import statistics
from pathlib import Path

import polars as pl
import pytest

from meta_supervisor.policy.model import Policy
from meta_supervisor.research.tables import (
    BEGIN,
    END,
    compact,
    render,
    replace_block,
    targets,
    walk_forward_default,
)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "backtest_results.parquet"
KNOBS = "profile=select"


def _row(scenario: str, seed: int, method: str, sharpe: float, dd: float, **extra) -> dict:
    row = {
        "cell": f"{scenario}{seed}",
        "scenario": scenario,
        "seed": seed,
        "fold": "",
        "knobs": KNOBS,
        "method": method,
        "is_default": method == "select",
        "periods": 100,
        "sharpe": sharpe,
        "max_drawdown_bps": dd,
        "total_pnl_bps": 0.0,
        "mean_gross": 1.0,
        "turnover": 0.0,
        "derisk_hours": None,
        "cvar95_bps": 0.0,
        "fallback_share": None,
        "cash_days_share": 0.0,
    }
    row.update(extra)
    return row


def _table() -> pl.DataFrame:
    real = "real_prices_period"
    rows = [
        # excess over equal weight: select -0.1, +0.3, -0.5; evidence 0.0, -0.2, +0.4
        _row(real, 0, "equal_weight", 1.0, -100.0),
        _row(real, 0, "select", 0.9, -90.0, cash_days_share=0.02),
        _row(real, 0, "evidence", 1.0, -120.0),
        _row(real, 1, "equal_weight", 0.5, -200.0),
        _row(real, 1, "select", 0.8, -250.0),
        _row(real, 1, "evidence", 0.3, -150.0),
        _row(real, 2, "equal_weight", 0.5, -300.0),
        _row(real, 2, "select", 0.0, -300.0),
        _row(real, 2, "evidence", 0.9, -310.0),
    ]
    for seed, (s, ew, best) in {10: (4.0, 1.0, 5.0), 11: (2.0, -1.0, 10.0)}.items():
        rows += [
            _row("skill_blowups", seed, "select", s, -100.0, derisk_hours=24.0),
            _row("skill_blowups", seed, "evidence", 0.0, -300.0, derisk_hours=6.0),
            _row("skill_blowups", seed, "equal_weight", ew, -200.0, derisk_hours=0.0),
            _row("skill_blowups", seed, "seed", best, -10.0, derisk_hours=0.0),
            _row("skill_blowups", seed, "hrp", 0.0, -200.0, fallback_share=0.05),
        ]
    rows.append(_row("real_prices_period", 0, "select", 9.0, 0.0) | {"knobs": "other"})
    return pl.DataFrame(rows)


def test_compact_shows_each_sub_period_and_the_seeds_mean_and_spread():
    text = compact(_table(), KNOBS, "evidence")
    lines = text.splitlines()
    assert lines[0].split(" | ")[1:3] == ["select", "**evidence** (default)"]
    assert lines[2].startswith("| real prices 1995-2006 | +0.90 / -90 / 100% |")  # not "other"
    skill = next(line for line in lines if line.startswith("| skill_blowups (2 seeds)"))
    sd = statistics.stdev([4.0, 2.0])
    assert f"+3.00 ±{sd:.2f} / -100 / 100%" in skill
    assert "(EW 5%)" in skill  # where HRP fell back to equal weight


def test_targets_state_every_miss_with_its_size():
    text = targets(_table(), KNOBS, ["select"])
    first = next(line for line in text.splitlines() if "1995-2006" in line)
    assert "Sharpe +0.900 vs equal weight +1.000 (0.90x): **missed** by 0.100" in first
    assert "max DD -90 vs -100 bps: met" in first
    assert "closes at 100% cash 2 of 100" in first
    second = next(line for line in text.splitlines() if "2007-2009" in line)
    assert "met; max DD -250 vs -200 bps: **missed** by 50 bps" in second
    skill = next(line for line in text.splitlines() if "skill_blowups" in line)
    # seed 10: 4/5 = 0.8x (met); seed 11: 2/10 = 0.2x; DD limit 0.6 x -200 = -120 met twice
    assert "per seed mean 0.50x" in skill and "≥ 0.8x on 1 of 2" in skill
    assert "Sharpe +3.00 ±1.41 vs the best method's per seed +7.50 ±3.54" in skill
    assert "max DD ≤ 0.6x equal weight's on 2 of 2;" in skill
    assert "mean 24, max 24" in skill


def test_walk_forward_decides_each_period_on_the_earlier_ones_only():
    text, chosen = walk_forward_default(_table(), KNOBS, ("select", "evidence"))
    # 2007-09 on 1995-2006 alone: evidence (0.0 > -0.1), although select wins 2007-09 itself;
    # 2010-19 on both earlier: select (+0.1 vs -0.1), although evidence wins 2010-19 itself
    assert chosen == ["evidence", "select"]
    assert "| 2007-2009 | 1995-2006 | evidence (+0.000) | -0.200 | select -0.100; +0.300 |" in text
    assert "Trained on all 3 sub-periods (what the rule would choose next): evidence +0.067" in text


def test_replace_block_keeps_the_text_around_it():
    text = f"before\n{BEGIN}\nold\n{END}\nafter\n"
    assert replace_block(text, f"{BEGIN}\nnew\n{END}") == f"before\n{BEGIN}\nnew\n{END}\nafter\n"


@pytest.mark.parametrize("doc", ["README.md", "docs/BACKTEST.md"])
def test_the_documented_table_is_the_rendering_of_the_committed_sweep_results(doc):
    """The block in the doc is exactly what docs/backtest_table.py renders from the sweep's
    results.parquet (committed as docs/backtest_results.parquet): no hand-edited number."""
    block = render(pl.read_parquet(RESULTS), KNOBS, Policy().profile.value)
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert text[text.index(BEGIN) : text.index(END) + len(END)] == block
