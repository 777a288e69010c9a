"""``meta-supervisor sweep``: a grid of backtests on Ray (or in this process), one table.

Example: meta-supervisor sweep --scenario skill_blowups --scenario no_skill --seeds 0-2 \
    --set profile=select --set selection_t0=1.5,2,3 --out sweep-out
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from meta_supervisor.policy.model import PolicyError, make_policy
from meta_supervisor.research.sweep import grid, ray_executor, run_sweep, serial_executor

__all__ = ["sweep"]


def _seeds(text: str) -> list[int]:
    """``0-2,5`` -> ``[0, 1, 2, 5]``."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _knobs(items: list[str]) -> dict[str, list[Any]]:
    """``key=v1,v2`` items -> ``{key: [v1, v2]}``, each value validated by the policy."""
    out: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE[,VALUE...]")
        out[key.strip()] = [_value(v.strip()) for v in values.split(",")]
        for v in out[key.strip()]:
            make_policy({key.strip(): v}, source="--set")
    return out


def _folds(items: list[str]) -> list[tuple[str, str | None, str | None]]:
    """``label:FROM:TO`` items (ISO dates) -> fold tuples; none: the whole span."""
    if not items:
        return [("", None, None)]
    out = []
    for item in items:
        label, _, rest = item.partition(":")
        start, _, end = rest.partition(":")
        out.append(
            (label, f"{start}T00:00:00Z" if start else None, f"{end}T23:59:59Z" if end else None)
        )
    return out


def sweep(
    scenario: Annotated[list[str], typer.Option(help="Scenario (repeat for several).")],
    out: Annotated[Path, typer.Option(help="Directory for results.parquet + summary.html.")],
    seeds: Annotated[str, typer.Option(help="Seeds: 0-4 or 0,3,7.")] = "0",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Policy knob grid KEY=V1,V2 (repeat); profile=select too."),
    ] = None,
    profile: Annotated[
        list[str] | None, typer.Option(help="Profiles run beside it (default: all).")
    ] = None,
    baseline: Annotated[
        list[str] | None, typer.Option(help="Baselines (default: the backtest's set).")
    ] = None,
    fold: Annotated[
        list[str] | None,
        typer.Option(help="Walk-forward fold LABEL:FROM:TO (ISO dates; repeat)."),
    ] = None,
    executor: Annotated[str, typer.Option(help="ray (default) or serial.")] = "ray",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: a local Ray).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Local Ray CPUs (default: all).")] = None,
) -> None:
    """Run a grid of backtests (scenarios x seeds x knobs x folds); finished cells are reused.

    Each cell is exactly `meta-supervisor backtest --scenario S --seed N` with the cell's
    policy; the table has one row per cell and method.
    """
    err = Console(stderr=True)
    try:
        knob_grid = _knobs(set_ or [])
        cells = grid(
            scenario,
            _seeds(seeds),
            knob_grid,
            profiles=profile or (),
            baselines=baseline,
            folds=_folds(fold or []),
        )
        for cell in cells:
            cell.policy()
        if executor not in ("ray", "serial"):
            raise ValueError(f"--executor {executor!r}: expected ray or serial")
    except (ValueError, PolicyError) as error:
        err.print(f"[bold red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from None
    run = ray_executor(address, workers) if executor == "ray" else serial_executor
    began = time.perf_counter()

    def progress(done: int, total: int) -> None:
        err.print(f"cell {done}/{total} done ({time.perf_counter() - began:.0f} s)")

    try:
        table = run_sweep(cells, out, run, on_cell=progress)
    except (KeyError, ImportError, ValueError) as error:
        err.print(f"[bold red]error:[/] {escape(str(error.args[0] if error.args else error))}")
        raise typer.Exit(2) from None
    sys.stdout.write(
        f"{table['cell'].n_unique()} cells, {table.height} rows in "
        f"{time.perf_counter() - began:.1f} s: {out / 'results.parquet'}, "
        f"{out / 'summary.html'}\n"
    )
