"""Reproduce docs/BACKTEST.md's table: every scenario x method, on report seeds.

    .venv/bin/python docs/backtest_table.py --seeds 10 11 12 --out /tmp/bt.json
    .venv/bin/python docs/backtest_table.py --scenarios real_prices --seeds 5 15 25   # [research]

Each run is exactly ``meta-supervisor backtest --scenario NAME --seed N --json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from meta_supervisor.backtest import run_fleet
from meta_supervisor.simulate import SCENARIOS, build_scenario

KEYS = ("sharpe", "max_drawdown_bps", "mean_gross", "derisk_hours", "total_pnl_bps", "turnover")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[10, 11, 12])
    parser.add_argument("--out", type=Path, default=Path("backtest-table.json"))
    args = parser.parse_args()
    rows = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.scenarios:
        for seed in args.seeds:
            result = run_fleet(build_scenario(name, seed), progress=False)
            rows[f"{name}/{seed}"] = {
                m: {k: (v[k] if math.isfinite(v[k]) else str(v[k])) for k in KEYS}
                for m, v in result.metrics.items()
            }
            args.out.write_text(json.dumps(rows, indent=1, sort_keys=True))
            print(name, seed, {m: round(v["sharpe"], 2) for m, v in result.metrics.items()})


if __name__ == "__main__":
    main()
