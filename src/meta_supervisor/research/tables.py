"""The README's backtest table, its targets and the default's walk-forward, from a sweep's table.

Input: a sweep's ``results.parquet`` (:mod:`meta_supervisor.research.sweep`: one row per cell
and method). Output: Markdown, rendered only from that table (no backtest is run here), so the
README's numbers are reproduced by rerunning the sweep command shown beside them and then
``docs/backtest_table.py``.

* :func:`compact`: scenario (a real-price sub-period, or a synthetic scenario) x method:
  ``Sharpe / max drawdown bps / mean gross``. Real prices: one run per sub-period. Synthetic:
  Sharpe as ``mean ±sd`` over the seeds (sample std, ``ddof = 1``), drawdown and gross their
  means. HRP's cells say how often it fell back to equal weight (``fallback_share``).
* :func:`targets`: the issue's targets for each profile, every miss with its size: on each
  real sub-period Sharpe ``≥ 1.0x`` equal weight's (ratio and difference) and max drawdown no
  deeper than equal weight's (bps), closes at 100% cash; on ``skill_blowups`` per seed the
  Sharpe against the best method's (``≥ 0.8x``), max drawdown against ``0.6x`` equal
  weight's and the hours to de-risk, then mean, spread and how many seeds met each.
* :func:`walk_forward_default`: the default profile chosen out of sample, in time order: each
  real sub-period from the second on is decided by the profile with the best mean
  ``Sharpe − equal weight's Sharpe`` over the *earlier* sub-periods only; then the same score
  over all of them (what the rule would choose for the next period).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import polars as pl

__all__ = [
    "BEGIN",
    "END",
    "METHODS",
    "PERIODS",
    "compact",
    "render",
    "replace_block",
    "targets",
    "walk_forward_default",
]

#: The real-price sub-periods in seed order (``real_prices_period``, seed mod 4).
PERIODS = ("1995-2006", "2007-2009", "2010-2019", "2020-2022")
#: Column order: the profiles, then the baselines.
METHODS = ("select", "evidence", "seed", "equal_weight", "inverse_vol", "hrp", "seed_original")
PROFILES = ("select", "evidence", "seed")
REAL = "real_prices_period"
SKILL = "skill_blowups"
#: Markers around the rendered block in README.md and docs/BACKTEST.md.
BEGIN = "<!-- backtest-table: begin (docs/backtest_table.py renders this block) -->"
END = "<!-- backtest-table: end -->"

Row = dict[str, Any]


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _label(scenario: str, seed: int) -> str:
    return f"real prices {PERIODS[seed % 4]}" if scenario == REAL else scenario


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


def _sd(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.stdev(finite) if len(finite) > 1 else math.nan


def _cells(table: pl.DataFrame, knobs: str) -> dict[tuple[str, int], dict[str, Row]]:
    """``(scenario, seed) -> method -> row`` for the knobs (the whole span: fold ``""``)."""
    out: dict[tuple[str, int], dict[str, Row]] = {}
    for row in table.filter(pl.col("knobs") == knobs).iter_rows(named=True):
        out.setdefault((row["scenario"], row["seed"]), {})[row["method"]] = row
    return out


def _seeds_of(cells: dict[tuple[str, int], dict[str, Row]], scenario: str) -> list[int]:
    return sorted(seed for name, seed in cells if name == scenario)


def _order(names: set[str]) -> list[str]:
    return [m for m in METHODS if m in names] + sorted(names - set(METHODS))


def compact(table: pl.DataFrame, knobs: str, default: str) -> str:
    """The table (module docstring); ``default`` (the shipped profile) is marked bold."""
    cells = _cells(table, knobs)
    methods = _order({m for by in cells.values() for m in by})
    head = [f"**{m}** (default)" if m == default else m for m in methods]
    out = ["| scenario | " + " | ".join(head) + " |", "|---" * (len(methods) + 1) + "|"]
    real = [(REAL, s) for s in _seeds_of(cells, REAL)]
    for key in real:
        by = cells[key]
        row = [_one(by[m]) if m in by else "-" for m in methods]
        out.append(f"| {_label(*key)} | " + " | ".join(row) + " |")
    for scenario in sorted({name for name, _ in cells if name != REAL}):
        seeds = _seeds_of(cells, scenario)
        row = []
        for m in methods:
            rows = [cells[(scenario, s)][m] for s in seeds if m in cells[(scenario, s)]]
            row.append(_many(rows) if rows else "-")
        label = f"{scenario} ({len(seeds)} seeds)"
        out.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(out)


def _fell_back(share: float) -> str:
    return f" (EW {share:.0%})" if math.isfinite(share) and share > 0 else ""


def _one(r: Row) -> str:
    return (
        f"{_num(r['sharpe']):+.2f} / {_num(r['max_drawdown_bps']):.0f} / "
        f"{_num(r['mean_gross']):.0%}{_fell_back(_num(r['fallback_share']))}"
    )


def _many(rows: list[Row]) -> str:
    sharpe = [_num(r["sharpe"]) for r in rows]
    dd = _mean([_num(r["max_drawdown_bps"]) for r in rows])
    gross = _mean([_num(r["mean_gross"]) for r in rows])
    fell = _mean([_num(r["fallback_share"]) for r in rows])
    return f"{_mean(sharpe):+.2f} ±{_sd(sharpe):.2f} / {dd:.0f} / {gross:.0%}{_fell_back(fell)}"


def _verdict(ok: bool, miss: str) -> str:
    return "met" if ok else f"**missed** by {miss}"


def targets(
    table: pl.DataFrame, knobs: str, profiles: Sequence[str] = ("select", "evidence")
) -> str:
    """The issue's targets for each profile, every miss with its size (module docstring)."""
    cells = _cells(table, knobs)
    out: list[str] = []
    for method in profiles:
        out.append(f"{chr(10) if out else ''}`{method}`:")
        for seed in _seeds_of(cells, REAL):
            by = cells[(REAL, seed)]
            if method not in by or "equal_weight" not in by:
                continue
            m, ew = by[method], by["equal_weight"]
            s, s_ew = _num(m["sharpe"]), _num(ew["sharpe"])
            dd, dd_ew = _num(m["max_drawdown_bps"]), _num(ew["max_drawdown_bps"])
            ratio = f"{s / s_ew:.2f}x" if s_ew > 0 else f"{s:+.2f} vs {s_ew:+.2f}"
            cash = _num(m["cash_days_share"]) * _num(m["periods"])
            out.append(
                f"- real prices {PERIODS[seed % 4]}: Sharpe {s:+.3f} vs equal weight "
                f"{s_ew:+.3f} ({ratio}): {_verdict(s >= s_ew, f'{s_ew - s:.3f}')}; max DD "
                f"{dd:.0f} vs {dd_ew:.0f} bps: {_verdict(dd >= dd_ew, f'{dd_ew - dd:.0f} bps')}; "
                f"closes at 100% cash {cash:.0f} of {_num(m['periods']):.0f}"
            )
        seeds = [s for s in _seeds_of(cells, SKILL) if method in cells[(SKILL, s)]]
        if seeds:
            out.append(_skill(cells, seeds, method))
    return "\n".join(out)


def _skill(cells: dict[tuple[str, int], dict[str, Row]], seeds: list[int], method: str) -> str:
    ratios, dd_miss, derisk, best_names, own, bests = [], [], [], [], [], []
    met_s = met_dd = 0
    for seed in seeds:
        by = cells[(SKILL, seed)]
        best = max(by.values(), key=lambda r: _num(r["sharpe"]))
        s, s_best = _num(by[method]["sharpe"]), _num(best["sharpe"])
        own.append(s)
        bests.append(s_best)
        ratios.append(s / s_best if s_best > 0 else math.nan)
        met_s += s >= 0.8 * s_best
        limit = 0.6 * _num(by["equal_weight"]["max_drawdown_bps"])
        dd = _num(by[method]["max_drawdown_bps"])
        met_dd += dd >= limit
        dd_miss.append(max(0.0, limit - dd))
        derisk.append(_num(by[method]["derisk_hours"]))
        best_names.append(best["method"])
    n = len(seeds)
    misses = [m for m in dd_miss if m > 0]
    top = min(_order(set(best_names)), key=lambda m: -best_names.count(m))  # ties: column order
    return (
        f"- {SKILL} (seeds {_span(seeds)}): Sharpe {_mean(own):+.2f} ±{_sd(own):.2f} vs the "
        f"best method's per seed {_mean(bests):+.2f} ±{_sd(bests):.2f} (most often {top}, "
        f"{best_names.count(top)} of {n}): {_mean(own) / _mean(bests):.2f}x of the means; per "
        f"seed mean {_mean(ratios):.2f}x ±{_sd(ratios):.2f} (min "
        f"{min(ratios):.2f}x, max {max(ratios):.2f}x), ≥ 0.8x on {met_s} of {n}; max DD ≤ 0.6x "
        f"equal weight's on {met_dd} of {n}"
        + (
            f" (missed by {_mean(misses):.0f} bps on average, at most {max(misses):.0f})"
            if misses
            else ""
        )
        + f"; hours from onset to weight < 5%: mean {_mean(derisk):.0f}, max {max(derisk):.0f}"
    )


def _span(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def walk_forward_default(
    table: pl.DataFrame, knobs: str, candidates: Sequence[str] = PROFILES
) -> tuple[str, list[str]]:
    """The walk-forward (module docstring) as a Markdown table, and the profile chosen for each
    test period in time order."""
    cells = _cells(table, knobs)
    seeds = _seeds_of(cells, REAL)
    excess: dict[tuple[int, str], float] = {}
    for seed in seeds:
        by = cells[(REAL, seed)]
        for m in candidates:
            if m in by and "equal_weight" in by:
                excess[(seed, m)] = _num(by[m]["sharpe"]) - _num(by["equal_weight"]["sharpe"])
    names = [m for m in candidates if all((s, m) in excess for s in seeds)]
    out = [
        "| test period | trained on | chosen (its mean Sharpe − EW on them) | chosen's Sharpe − "
        "EW on the test period | the others' (train; test) |",
        "|---|---|---|---|---|",
    ]
    chosen_all: list[str] = []
    for k, seed in enumerate(seeds[1:], start=1):
        train = seeds[:k]
        score = {m: _mean([excess[(s, m)] for s in train]) for m in names}
        chosen = max(names, key=lambda m: score[m])
        chosen_all.append(chosen)
        others = ", ".join(
            f"{m} {score[m]:+.3f}; {excess[(seed, m)]:+.3f}" for m in names if m != chosen
        )
        out.append(
            f"| {PERIODS[seed % 4]} | {', '.join(PERIODS[s % 4] for s in train)} | {chosen} "
            f"({score[chosen]:+.3f}) | {excess[(seed, chosen)]:+.3f} | {others} |"
        )
    if seeds and names:
        whole = {m: _mean([excess[(s, m)] for s in seeds]) for m in names}
        ranked = sorted(names, key=lambda m: -whole[m])
        out.append("")
        out.append(
            f"Trained on all {len(seeds)} sub-periods (what the rule would choose next): "
            + ", ".join(f"{m} {whole[m]:+.3f}" for m in ranked)
            + "."
        )
    return "\n".join(out), chosen_all


def render(table: pl.DataFrame, knobs: str, default: str) -> str:
    """The whole block between :data:`BEGIN` and :data:`END` (markers included)."""
    wf, chosen = walk_forward_default(table, knobs)
    last = chosen[-1] if chosen else "-"
    return "\n".join(
        [
            BEGIN,
            "",
            compact(table, knobs, default),
            "",
            "Targets (every miss with its size):",
            "",
            targets(table, knobs),
            "",
            f"Walk-forward choice of the default profile (shipped: `{default}`; latest fold: "
            f"`{last}`), each sub-period decided on the earlier ones only, by the mean Sharpe "
            "minus equal weight's:",
            "",
            wf,
            "",
            END,
        ]
    )


def replace_block(text: str, block: str) -> str:
    """``text`` with the part from :data:`BEGIN` to :data:`END` replaced by ``block``."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block + text[end:]
