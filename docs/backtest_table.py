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

from meta_supervisor.research.backtest import run_fleet
from meta_supervisor.research.scenarios import SCENARIOS, build_scenario

KEYS = ("sharpe", "max_drawdown_bps", "mean_gross", "derisk_hours", "total_pnl_bps", "turnover")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[10, 11, 12])
    parser.add_argument("--out", type=Path, default=Path("backtest-table.json"))
    parser.add_argument("--markdown", action="store_true", help="print the table of --out")
    parser.add_argument(
        "--readme", action="store_true", help="print the compact scenario x method table of --out"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return
    if args.readme:
        print(readme(json.loads(args.out.read_text())))
        return
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


def markdown(rows: dict, profile: str = "evidence") -> str:
    """Scenario x method table (mean over seeds, per-seed Sharpe) and the issue's targets."""
    out = []
    scenarios = sorted({key.split("/")[0] for key in rows})
    for sc in scenarios:
        seeds = sorted(k for k in rows if k.split("/")[0] == sc)
        methods = list(rows[seeds[0]])
        out.append(f"\n### {sc} (seeds {', '.join(s.split('/')[1] for s in seeds)})\n")
        out.append(
            "| method | Sharpe (mean) | Sharpe per seed | max DD bps (mean) | mean gross "
            "| de-risk h (worst) | PnL bps (mean) |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for m in methods:
            vals = [rows[s][m] for s in seeds]
            sh = [v["sharpe"] for v in vals]
            dr = [float(v["derisk_hours"]) for v in vals]
            drs = "-" if all(math.isnan(d) for d in dr) else f"{max(dr):.0f}"
            out.append(
                f"| {m} | {sum(sh) / len(sh):+.2f} | {' / '.join(f'{x:+.2f}' for x in sh)} "
                f"| {sum(v['max_drawdown_bps'] for v in vals) / len(vals):.0f} "
                f"| {sum(v['mean_gross'] for v in vals) / len(vals):.0%} | {drs} "
                f"| {sum(v['total_pnl_bps'] for v in vals) / len(vals):+.0f} |"
            )
        out.append("")
        out.extend(_targets(sc, seeds, rows, profile))
    return "\n".join(out)


def readme(rows: dict) -> str:
    """One row per scenario, one column per method: mean Sharpe / max DD bps / mean gross."""
    scenarios = sorted({key.split("/")[0] for key in rows})
    methods = list(next(iter(rows.values())))
    out = [
        "| scenario | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for sc in scenarios:
        seeds = [k for k in rows if k.split("/")[0] == sc]
        cells = []
        for m in methods:
            vals = [rows[s][m] for s in seeds]
            sharpe = sum(v["sharpe"] for v in vals) / len(vals)
            dd = sum(v["max_drawdown_bps"] for v in vals) / len(vals)
            gross = sum(v["mean_gross"] for v in vals) / len(vals)
            cells.append(f"{sharpe:+.2f} / {dd:.0f} / {gross:.0%}")
        out.append(f"| {sc} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _targets(sc: str, seeds: list[str], rows: dict, profile: str) -> list[str]:
    lines = []
    for s in seeds:
        r = rows[s]
        ew, me = r["equal_weight"], r[profile]
        me_sharpe = me["sharpe"]
        if sc in ("no_skill", "real_prices"):
            need = ew["sharpe"] - 0.1 * abs(ew["sharpe"])
            ok_s = me["sharpe"] >= need
            ok_d = me["max_drawdown_bps"] >= ew["max_drawdown_bps"]
            lines.append(
                f"- {s}: Sharpe {me['sharpe']:+.2f} vs needed >= {need:+.2f} "
                f"({'met' if ok_s else f'MISS by {need - me_sharpe:.2f}'}); max DD "
                f"{me['max_drawdown_bps']:.0f} vs equal weight {ew['max_drawdown_bps']:.0f} "
                f"({'met' if ok_d else _by(ew['max_drawdown_bps'] - me['max_drawdown_bps'])})"
            )
        if sc == "skill_blowups":
            best = max(v["sharpe"] for v in r.values())
            limit = 0.6 * ew["max_drawdown_bps"]
            dd_gap = limit - me["max_drawdown_bps"]
            dr = float(me["derisk_hours"])
            lines.append(
                f"- {s}: Sharpe {me['sharpe']:+.2f} vs best {best:+.2f} "
                f"({'met' if me_sharpe >= best else f'MISS by {best - me_sharpe:.2f}'}); "
                f"max DD {me['max_drawdown_bps']:.0f} vs limit {limit:.0f} "
                f"({'met' if dd_gap <= 0 else _by(dd_gap)})"
                f"; de-risk {dr:.0f} h "
                f"({'met' if dr <= 12 else 'MISS'})"
            )
    return lines


def _by(bps: float) -> str:
    """A drawdown miss with its size (bps deeper than allowed)."""
    return f"MISS by {bps:.0f} bps"


if __name__ == "__main__":
    main()
