"""Reproduce the README's and docs/BACKTEST.md's tables from a sweep's results.parquet.

The sweep (each cell is exactly ``meta-supervisor backtest --scenario NAME --seed N`` with the
cell's policy; ``docs/BACKTEST.md`` has the command lines)::

    meta-supervisor sweep --scenario real_prices_period --seeds 0-3 \
        --set profile=select --set selection_t0=2,3 --out sweep-out
    meta-supervisor sweep --scenario skill_blowups --scenario no_skill \
        --scenario no_skill_blowups --scenario mixed_cadence --seeds 0,1,10,11,12 \
        --set profile=select --set selection_t0=2,3 --out sweep-out
    meta-supervisor sweep --scenario real_prices_period --seeds 0-3 --set profile=evidence \
        --set cadence_history_hours=0 --profile evidence --baseline equal_weight --out sweep-out

then::

    .venv/bin/python docs/backtest_table.py sweep-out/results.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

PERIODS = ["1995-2006", "2007-2009", "2010-2019", "2020-2022"]
METHODS = ["select", "evidence", "equal_weight", "inverse_vol", "hrp", "seed", "seed_original"]


def _label(scenario: str, seed: int) -> str:
    if scenario == "real_prices_period":
        return f"real prices {PERIODS[seed % 4]}"
    return scenario


def _cell(row: dict) -> str:
    cash = row["cash_days_share"] or 0.0
    return f"{row['sharpe']:+.2f} / {row['max_drawdown_bps']:.0f} / {row['mean_gross']:.0%}" + (
        f" / cash {cash:.0%}" if cash > 0 else ""
    )


def compact(table: pl.DataFrame, knobs: str, seeds: list[int] | None) -> str:
    """Scenario (or real-price sub-period) x method: mean Sharpe / max DD bps / mean gross."""
    rows = table.filter(pl.col("knobs") == knobs)
    if seeds is not None:
        rows = rows.filter(
            (pl.col("scenario") == "real_prices_period") | pl.col("seed").is_in(seeds)
        )
    means = (
        rows.with_columns(
            pl.struct("scenario", "seed")
            .map_elements(lambda s: _label(s["scenario"], s["seed"]), return_dtype=pl.String)
            .alias("row")
        )
        .group_by("row", "method")
        .agg(
            pl.col("sharpe").mean(),
            pl.col("max_drawdown_bps").mean(),
            pl.col("mean_gross").mean(),
            pl.col("cash_days_share").mean(),
        )
    )
    methods = [m for m in METHODS if m in set(means["method"])]
    out = ["| scenario | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for label in sorted(set(means["row"])):
        cells = []
        for m in methods:
            hit = means.filter((pl.col("row") == label) & (pl.col("method") == m))
            cells.append(_cell(hit.row(0, named=True)) if hit.height else "-")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def targets(table: pl.DataFrame, knobs: str, method: str = "select") -> str:
    """The issue's targets per real-price period and per skill-and-blow-ups seed."""
    rows = table.filter(pl.col("knobs") == knobs)
    out = []
    for seed in range(4):
        cell = rows.filter((pl.col("scenario") == "real_prices_period") & (pl.col("seed") == seed))
        if not cell.height:
            continue
        get = {r["method"]: r for r in cell.iter_rows(named=True)}
        m, ew = get[method], get["equal_weight"]
        ratio = m["sharpe"] / ew["sharpe"] if ew["sharpe"] else float("nan")
        out.append(
            f"- real prices {PERIODS[seed]}: Sharpe {m['sharpe']:+.3f} vs equal weight "
            f"{ew['sharpe']:+.3f} ({ratio:.3f}x, {'met' if m['sharpe'] >= ew['sharpe'] else 'MISS'}"
            f" by {m['sharpe'] - ew['sharpe']:+.3f}); max DD {m['max_drawdown_bps']:.0f} vs "
            f"{ew['max_drawdown_bps']:.0f} bps "
            f"({'met' if m['max_drawdown_bps'] >= ew['max_drawdown_bps'] else 'MISS'}); "
            f"days at 100% cash {m['cash_days_share']:.1%}"
        )
    for seed in sorted(set(rows.filter(pl.col("scenario") == "skill_blowups")["seed"])):
        cell = rows.filter((pl.col("scenario") == "skill_blowups") & (pl.col("seed") == seed))
        get = {r["method"]: r for r in cell.iter_rows(named=True)}
        best = max(get.values(), key=lambda r: r["sharpe"])
        m, ew = get[method], get["equal_weight"]
        limit = 0.6 * ew["max_drawdown_bps"]
        out.append(
            f"- skill_blowups/{seed}: Sharpe {m['sharpe']:+.2f} vs best {best['method']} "
            f"{best['sharpe']:+.2f} ({m['sharpe'] / best['sharpe']:.2f}x, target 0.8x); max DD "
            f"{m['max_drawdown_bps']:.0f} vs 0.6x equal weight {limit:.0f} "
            f"({'met' if m['max_drawdown_bps'] >= limit else 'MISS'}); de-risk "
            f"{m['derisk_hours']:.0f} h"
        )
    return "\n".join(out)


def walk_forward_default(
    table: pl.DataFrame, knobs: str, candidates: tuple[str, ...] = ("select", "evidence")
) -> str:
    """Choose the default profile out of sample on the real-price periods, in time order: for
    each period from the second on, the candidate with the larger mean Sharpe minus equal
    weight's over the *earlier* periods, and how it then did on the period itself."""
    rows = table.filter((pl.col("knobs") == knobs) & (pl.col("scenario") == "real_prices_period"))
    excess: dict[tuple[int, str], float] = {}
    for seed in range(4):
        cell = {r["method"]: r for r in rows.filter(pl.col("seed") == seed).iter_rows(named=True)}
        if not cell:
            continue
        for m in candidates:
            excess[(seed, m)] = cell[m]["sharpe"] - cell["equal_weight"]["sharpe"]
    out = ["| test period | trained on | chosen | its Sharpe − EW on the test period | other's |"]
    out.append("|---|---|---|---|---|")
    for seed in range(1, 4):
        if (seed, candidates[0]) not in excess:
            continue
        train = [s for s in range(seed) if (s, candidates[0]) in excess]
        score = {m: sum(excess[(s, m)] for s in train) / len(train) for m in candidates}
        chosen = max(candidates, key=lambda m: score[m])
        other = next(m for m in candidates if m != chosen)
        out.append(
            f"| {PERIODS[seed]} | {', '.join(PERIODS[s] for s in train)} | {chosen} "
            f"({score[chosen]:+.3f} vs {score[other]:+.3f}) | {excess[(seed, chosen)]:+.3f} "
            f"| {other} {excess[(seed, other)]:+.3f} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path, help="a sweep's results.parquet")
    parser.add_argument("--knobs", default="profile=select, selection_t0=2.0")
    parser.add_argument("--seeds", nargs="*", type=int, default=[10, 11, 12])
    args = parser.parse_args()
    table = pl.read_parquet(args.results)
    print("cells per scenario x method: Sharpe / max DD bps / mean gross (/ days at 100% cash)\n")
    print(compact(table, args.knobs, args.seeds))
    print()
    print(targets(table, args.knobs))
    print()
    print(walk_forward_default(table, args.knobs))


if __name__ == "__main__":
    main()
