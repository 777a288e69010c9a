"""Render the README's (and docs/BACKTEST.md's) backtest table from a sweep's results.parquet.

The sweep that produces the table (each cell is exactly ``meta-supervisor backtest --scenario
NAME --seed N`` with the cell's policy; every profile and baseline beside it)::

    meta-supervisor sweep --scenario real_prices_period --seeds 0-3 --set profile=select \
        --out sweep-out
    meta-supervisor sweep --scenario skill_blowups --scenario no_skill_blowups \
        --scenario no_skill --scenario mixed_cadence --seeds 10-19 --set profile=select \
        --out sweep-out

(or each scenario group into its own ``--out`` directory, e.g. as parallel processes: the
script concatenates several tables), then::

    .venv/bin/python docs/backtest_table.py sweep-out/results.parquet             # print it
    .venv/bin/python docs/backtest_table.py sweep-out/results.parquet --write README.md \
        --write docs/BACKTEST.md                                                  # replace it

The rendering is :mod:`meta_supervisor.research.tables` (no backtest runs here). The table the
README shows was rendered from ``docs/backtest_results.parquet``, the sweep's results.parquet
as it finished (a test holds the README's block equal to its rendering).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from meta_supervisor.policy.model import Policy
from meta_supervisor.research.tables import render, replace_block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "results", type=Path, nargs="+", help="a sweep's results.parquet (several: concatenated)"
    )
    parser.add_argument("--knobs", default="profile=select", help="the cells' knobs label")
    parser.add_argument(
        "--write", type=Path, action="append", default=[], help="replace the block in FILE"
    )
    args = parser.parse_args()
    table = pl.concat([pl.read_parquet(p) for p in args.results], how="diagonal_relaxed")
    block = render(table, args.knobs, Policy().profile.value)
    if not args.write:
        print(block)
    for path in args.write:
        path.write_text(replace_block(path.read_text(encoding="utf-8"), block), encoding="utf-8")
        print(f"rewrote the block in {path}")


if __name__ == "__main__":
    main()
