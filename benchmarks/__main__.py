"""``python -m benchmarks`` (``./dev bench``): generate the ledger, run every case, print the table.

Each run of each case is a fresh ``python -m benchmarks.child`` process; its peak RSS is read
from ``os.wait4`` (that child's own ``ru_maxrss``, so one case's memory never leaks into
another's figure). Times are measured inside the child, after imports and untimed setup.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.data import LedgerSpec


@dataclass
class Result:
    """All runs of one case."""

    case: str
    size: str
    seconds: list[float] = field(default_factory=list)
    rss_bytes: list[int] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median seconds over the runs."""
        return statistics.median(self.seconds)


def run_child(case: str, n_records: int, options: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Run one case once in a fresh process; return its JSON result and its peak RSS (bytes)."""
    cmd = [sys.executable, "-m", "benchmarks.child", case, str(n_records), json.dumps(options)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark case {case!r} failed (exit {proc.returncode})")
    # ru_maxrss is in KiB on Linux
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss * 1024


def measure(case: str, size: str, n_records: int, runs: int, options: dict[str, Any]) -> Result:
    """Run ``case`` ``runs`` times, each in a fresh process."""
    result = Result(case, size)
    for _ in range(runs):
        out, rss = run_child(case, n_records, options)
        result.seconds.append(float(out.pop("seconds")))
        result.rss_bytes.append(rss)
        result.extra.append(out)
    return result


def _fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _size(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n:,}"


def _plan(size: str, cycles: int, runs: int) -> list[tuple[str, str, dict[str, Any], int]]:
    return [
        ("check", size, {}, 1),
        ("floor", size, {}, runs),
        ("polars", size, {}, runs),
        ("cycle", size, {}, runs),
        ("store_cycle", size, {}, runs),
        ("store_cycle_select", size, {}, runs),
        ("append_full", f"{size} + 10k", {}, runs),
        ("append", f"{size} + 10k", {}, runs),
        ("store_append", f"{size} + 10k", {}, runs),
        ("store_append_select", f"{size} + 10k", {}, runs),
        ("store_append_evidence", f"{size} + 10k", {}, runs),
        ("store_append_nocadence", f"{size} + 10k", {}, runs),
        ("store_append_resident", f"{size} + 10k", {}, runs),
        ("store_append_select_resident", f"{size} + 10k", {}, runs),
        ("store_live", f"{size} + 10k, hourly", {}, runs),
        ("store_live_select", f"{size} + 10k, hourly", {}, runs),
        ("store_live_default", f"{size} + 10k, hourly", {}, runs),
        ("persistence", size, {}, runs),
        ("persistence_rebuild", size, {}, runs),
        ("persistence_select", size, {}, runs),
        ("persistence_select_rebuild", size, {}, runs),
        ("backtest", f"{size}, {cycles} cycles", {"cycles": cycles}, runs),
        ("allocate", "10k agents", {"agents": 10_000}, runs),
    ]


def run_size(
    console: Console,
    n_records: int,
    cycles: int,
    runs: int,
    only: list[str] | None,
    check: bool = True,
) -> dict[str, Result]:
    """Every case of the plan (or those in ``only``; the check unless ``check`` is false) at
    ``n_records``."""
    spec = LedgerSpec(n_records=n_records)
    console.print(f"ledger: {n_records:,} records, key {spec.key()} (generating if needed)")
    run_child("ledger_setup", n_records, {})  # its memory is not the driver's (see the case)
    results: dict[str, Result] = {}
    store_ready = False
    for case, label, options, n_runs in _plan(_size(n_records), cycles, runs):
        if case == "check" and not check:
            continue
        if only and case not in only and case != "check":
            continue
        if (case.startswith(("store_", "persistence"))) and not store_ready:
            # in a child of its own: neither the parent's memory (which a forked child
            # starts from) nor a measured child's includes the ingest
            console.print(
                "  store setup (cached in bench-data/store-<key>-<policy>-s<v>-p<f>-m<m>/) ..."
            )
            run_child("store_setup", n_records, {})
            store_ready = True
        console.print(f"  {case} ({label}) x{n_runs} ...")
        results[case] = measure(case, label, n_records, n_runs, options)
    if check:
        checked = results["check"].extra[0]["checked"]
        console.print(
            "check: the product (the cycle's engine path and its polars forms) and the plain "
            f"polars baseline agree on {checked:,} values (rtol 1e-9)"
        )
    else:
        console.print("check: skipped (--skip-check)")
    return results


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the cases and print the table (and the scale curve)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--size", type=float, default=10e6, help="ledger records (10M)")
    parser.add_argument(
        "--sizes", type=float, nargs="+", help="a scale curve: every case at each size"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per case (>= 3)")
    parser.add_argument("--quick", action="store_true", help="1M records, short backtest")
    parser.add_argument("--backtest-cycles", type=int, default=2160, help="hourly cycles")
    parser.add_argument("--only", nargs="*", help="run only these cases")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--skip-check",
        action="store_true",
        help="skip the equality check (it holds the product, the baseline and the engine in "
        "one process: ~0.5 GiB per million records)",
    )
    parser.add_argument(
        "--scale-from",
        nargs="+",
        metavar="JSON",
        help="print the scale curve of earlier --json files (nothing is run)",
    )
    args = parser.parse_args(argv)
    if args.scale_from:
        print_scale(Console(width=None if sys.stdout.isatty() else 160), load(args.scale_from))
        return
    sizes = [int(x) for x in args.sizes] if args.sizes else [int(1e6 if args.quick else args.size)]
    cycles = min(args.backtest_cycles, 240) if args.quick else args.backtest_cycles
    runs = max(3, args.runs)
    console = Console(width=None if sys.stdout.isatty() else 140)
    started = time.perf_counter()
    by_size: dict[int, dict[str, Result]] = {}
    for n_records in sizes:
        by_size[n_records] = run_size(
            console, n_records, cycles, runs, args.only, check=not args.skip_check
        )
        print_table(console, by_size[n_records])
    if len(sizes) > 1:
        print_scale(console, by_size)
    console.print(f"total wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        blob = {
            str(n): {
                k: {
                    "size": r.size,
                    "seconds": r.seconds,
                    "rss_bytes": r.rss_bytes,
                    "extra": r.extra,
                }
                for k, r in results.items()
            }
            for n, results in by_size.items()
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(blob, handle, indent=2)


def load(paths: list[str]) -> dict[int, dict[str, Result]]:
    """Results written by ``--json`` (later files win for the same size and case)."""
    by_size: dict[int, dict[str, Result]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            blob = json.load(handle)
        for n, cases in blob.items():
            for case, r in cases.items():
                result = Result(case, r["size"], r["seconds"], r["rss_bytes"], r["extra"])
                by_size.setdefault(int(n), {})[case] = result
    return by_size


def print_scale(console: Console, by_size: dict[int, dict[str, Result]]) -> None:
    """The scale curve: each case's median time and peak RSS at every size, and the growth
    from the smallest to the largest size (time and memory ratios)."""
    sizes = sorted(by_size)
    table = Table(title="scale curve: median (peak RSS)")
    table.add_column("case", justify="left")
    for n in sizes:
        table.add_column(_size(n), justify="right")
    table.add_column(f"x time {_size(sizes[0])}->{_size(sizes[-1])}", justify="right")
    cases = [c for c in DESCRIPTIONS if any(c in by_size[n] for n in sizes)]
    for case in cases:
        cells = []
        for n in sizes:
            r = by_size[n].get(case)
            cells.append(
                "-" if r is None else f"{_fmt_s(r.median)} ({max(r.rss_bytes) / 2**20:,.0f} MiB)"
            )
        first, last = by_size[sizes[0]].get(case), by_size[sizes[-1]].get(case)
        growth = f"{last.median / first.median:.1f}x" if first and last else "-"
        table.add_row(DESCRIPTIONS[case], *cells, growth)
    console.print(table)


DESCRIPTIONS = {
    "floor": "floor: pyarrow read of the needed columns + one NumPy pass",
    "polars": "plain polars: read + stats, confidence, tails",
    "cycle": "full cycle: read + stats + conf + tails + allocate",
    "append_full": "append 10k, full recompute",
    "append": "append 10k, incremental",
    "store_cycle": "run_cycle on the store, no saved state",
    "store_cycle_select": "the same, select profile (the default)",
    "store_append": "run_cycle on the store after +10k",
    "store_append_select": "the same, select profile (the default)",
    "store_append_evidence": "the same, evidence profile (strength kept)",
    "store_append_nocadence": "the same, cadence off (no cadence index)",
    "store_append_resident": "the same, cadence off, resident process",
    "store_append_select_resident": "the same, select profile, resident process",
    "store_live": "the live loop: hourly cycles after +10k each, cadence off",
    "store_live_select": "the same, select profile",
    "store_live_default": "the same, the policy's default windows (records leave)",
    "persistence": "evidence: learned strength, daily (kept day sums advanced)",
    "persistence_rebuild": "evidence: learned strength, rebuilt from the store",
    "persistence_select": "select: learned rule, daily (kept day sums advanced)",
    "persistence_select_rebuild": "select: learned rule, rebuilt from the store",
    "backtest": "backtest: run_backtest, hourly",
    "allocate": "allocation step alone (allocate_frames)",
}


def print_table(console: Console, results: dict[str, Result]) -> None:
    """The benchmark table: case, size, median, min-max, peak RSS, ratios to the floor and to
    the plain polars baseline (both medians of the same run)."""
    table = Table(title="meta-supervisor benchmarks")
    for col in ("case", "size", "median", "min-max", "peak RSS", "÷ floor", "÷ polars"):
        table.add_column(col, justify="left" if col in ("case", "size") else "right")
    floor = results["floor"].median if "floor" in results else None
    plain = results["polars"].median if "polars" in results else None
    for name, r in results.items():
        if name == "check":
            continue
        ratio_floor = f"{r.median / floor:.2f}x" if floor and name != "allocate" else "-"
        ratio_plain = f"{r.median / plain:.2f}x" if plain and name != "allocate" else "-"
        table.add_row(
            DESCRIPTIONS.get(name, name),
            r.size,
            _fmt_s(r.median),
            f"{_fmt_s(min(r.seconds))} - {_fmt_s(max(r.seconds))}",
            f"{max(r.rss_bytes) / 2**20:,.0f} MiB",
            ratio_floor,
            ratio_plain,
        )
    console.print(table)
    for name, r in results.items():
        subs = {k: v for k, v in r.extra[0].items() if isinstance(v, float)} if r.extra else {}
        if subs and name != "check":
            parts = ", ".join(
                f"{k} {_fmt_s(statistics.median(e[k] for e in r.extra))}" for k in subs
            )
            console.print(f"  {name}: {parts}")


if __name__ == "__main__":
    main()
