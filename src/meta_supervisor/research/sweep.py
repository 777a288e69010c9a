"""Sweeps: a grid of backtests (scenarios x seeds x policy knobs x date ranges), one table.

A **cell** is one backtest exactly as ``meta-supervisor backtest`` runs it: one scenario and
seed, one policy (the profile under test and its knobs), the other profiles and baselines
beside it, optionally restricted to a date range (a walk-forward fold). :func:`run_cell` is that
backtest, nothing else, so a cell's result is identical to running it alone (tested).

:func:`run_sweep` runs the cells not yet in the output table on an executor (in this process,
or on Ray: local by default, a cluster with ``address``), appends one row per cell and method to
``results.parquet`` and writes ``summary.html``. Rerunning reuses every finished cell (keyed by
:func:`cell_key`, a hash of everything the cell depends on).

Scaling (on paper): cells are independent and each holds one scenario in memory (a worker
ran at ~550 MB resident for the 12-year, 80-agent daily fleet), so the wall time is
``ceil(cells / workers)`` times a cell's, up to the longest cell. Ray ships only the cell's
parameters (the scenario is built inside the task), so ``k`` nodes divide a grid of
``n ≥ k`` cells by about ``k`` (one cell per node: a serial backtest already uses a node's
cores, polars and NumPy being multi-threaded, so two workers on the same two cores gained
nothing here). Measurements are in docs/BACKTEST.md; a cell's fixed cost beside its backtest
(the scenario build ~7%, a Ray dispatch ~1 ms, the table write a few ms; Ray's start once per
sweep) in benchmarks/README.md, "Sweep cell overhead".
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from meta_supervisor.allocate.decision import parse_iso
from meta_supervisor.policy.model import Policy, Profile

__all__ = [
    "Cell",
    "Executor",
    "cell_key",
    "grid",
    "ray_executor",
    "run_cell",
    "run_sweep",
    "serial_executor",
    "walk_forward",
    "write_summary",
]

METRICS = (
    "sharpe",
    "max_drawdown_bps",
    "total_pnl_bps",
    "mean_gross",
    "turnover",
    "derisk_hours",
    "cvar95_bps",
    "fallback_share",
    "cash_days_share",
)


@dataclass(frozen=True)
class Cell:
    """One backtest: scenario, seed, the policy of the profile under test, an optional range."""

    scenario: str
    seed: int
    knobs: tuple[tuple[str, Any], ...] = ()  # policy fields (profile included), sorted
    profiles: tuple[str, ...] = ()  # profiles run beside it (empty: every profile)
    baselines: tuple[str, ...] | None = None  # None: the backtest's default set
    date_from: str | None = None  # ISO instants
    date_to: str | None = None
    fold: str = ""  # a label only (e.g. "1995-2006"); not part of the key

    def policy(self) -> Policy:
        """The policy of the cell's default method."""
        return Policy(**dict(self.knobs))

    def knobs_text(self) -> str:
        """The knobs as ``k=v`` pairs (the summary's row label)."""
        return ", ".join(f"{k}={v}" for k, v in self.knobs) or "defaults"


def cell_key(cell: Cell) -> str:
    """SHA-256 (16 hex) of every parameter the cell's result depends on."""
    blob = asdict(cell)
    blob.pop("fold")
    text = json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def grid(
    scenarios: Sequence[str],
    seeds: Sequence[int],
    knob_grid: Mapping[str, Sequence[Any]],
    *,
    profiles: Sequence[str] = (),
    baselines: Sequence[str] | None = None,
    folds: Sequence[tuple[str, str | None, str | None]] = (("", None, None),),
) -> list[Cell]:
    """The product of scenarios x seeds x knob values x folds ``(label, from, to)``."""
    names = sorted(knob_grid)
    combos = list(itertools.product(*(knob_grid[k] for k in names))) or [()]
    return [
        Cell(
            scenario,
            seed,
            tuple(zip(names, combo, strict=True)),
            tuple(profiles),
            None if baselines is None else tuple(baselines),
            date_from,
            date_to,
            label,
        )
        for scenario, seed, combo, (label, date_from, date_to) in itertools.product(
            scenarios, seeds, combos, folds
        )
    ]


def run_cell(cell: Cell) -> list[dict[str, Any]]:
    """The cell's backtest (:func:`meta_supervisor.research.backtest.run_fleet`), one row per
    method with the cell's parameters and every metric (NaN as null)."""
    from meta_supervisor.research.backtest import run_fleet
    from meta_supervisor.research.scenarios import build_scenario

    fleet = build_scenario(cell.scenario, cell.seed)
    result = run_fleet(
        fleet,
        policy=cell.policy(),
        profiles=[Profile(p) for p in cell.profiles] or None,
        baseline_names=None if cell.baselines is None else list(cell.baselines),
        progress=False,
        date_from=parse_iso(cell.date_from) if cell.date_from else None,
        date_to=parse_iso(cell.date_to) if cell.date_to else None,
    )
    key = cell_key(cell)
    rows = []
    for method, values in result.metrics.items():
        gross = result.methods[method].weights.sum(axis=1)
        row: dict[str, Any] = {
            "cell": key,
            "scenario": cell.scenario,
            "seed": cell.seed,
            "fold": cell.fold,
            "knobs": cell.knobs_text(),
            "method": method,
            "is_default": method == result.default_method,
            "periods": len(result.times),
        }
        metrics = {**values, "cash_days_share": float((gross <= 1e-9).mean())}
        for name in METRICS:
            value = metrics.get(name, math.nan)
            row[name] = None if value is None or not math.isfinite(value) else float(value)
        rows.append(row)
    return rows


Executor = Callable[[Callable[[Cell], list[dict[str, Any]]], list[Cell]], Iterable[list[dict]]]
"""``executor(function, cells)`` yields ``function(cell)`` for every cell, in any order."""


def serial_executor(
    function: Callable[[Cell], list[dict[str, Any]]], cells: list[Cell]
) -> Iterable[list[dict[str, Any]]]:
    """Run the cells one after another in this process."""
    for cell in cells:
        yield function(cell)


def ray_executor(address: str | None = None, num_cpus: int | None = None) -> Executor:
    """An executor on Ray (the ``sweep`` extra): a local Ray started here (``num_cpus``
    workers, default all cores) unless ``address`` names a running cluster."""

    def execute(
        function: Callable[[Cell], list[dict[str, Any]]], cells: list[Cell]
    ) -> Iterable[list[dict[str, Any]]]:
        try:
            import ray
        except ImportError as err:
            raise ImportError(
                "sweeps on Ray need the sweep extra: pip install 'meta-supervisor[sweep]'"
            ) from err
        started = not ray.is_initialized()
        if started:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, log_to_driver=False, include_dashboard=False)
        try:
            task = ray.remote(num_cpus=1)(function)
            pending = [task.remote(cell) for cell in cells]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            if started:
                ray.shutdown()

    return execute


def run_sweep(
    cells: Sequence[Cell],
    out_dir: Path,
    executor: Executor = serial_executor,
    *,
    on_cell: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """Run the cells missing from ``out_dir/results.parquet`` and return the whole table.

    The table is rewritten (atomically) after every finished cell, so an interrupted sweep
    keeps what it finished; ``summary.html`` is written at the end.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.parquet"
    table = pl.read_parquet(path) if path.exists() else None
    done = set(table["cell"].to_list()) if table is not None else set()
    todo = [c for c in dict.fromkeys(cells) if cell_key(c) not in done]
    for finished, rows in enumerate(executor(run_cell, todo), start=1):
        new = pl.DataFrame(rows)
        table = new if table is None else pl.concat([table, new], how="diagonal_relaxed")
        tmp = path.with_suffix(".parquet.tmp")
        table.write_parquet(tmp)
        tmp.replace(path)
        if on_cell is not None:
            on_cell(finished, len(todo))
    if table is None:
        raise ValueError("a sweep needs at least one cell")
    keys = {cell_key(c) for c in cells}
    result = table.filter(pl.col("cell").is_in(list(keys)))
    write_summary(result, out_dir / "summary.html")
    return result


def walk_forward(
    table: pl.DataFrame,
    method: str,
    train: dict[str, Sequence[str]],
    objective: str = "sharpe",
) -> pl.DataFrame:
    """Per fold ``{test_fold: train_folds}``: the knobs with the best mean ``objective`` of
    ``method`` over the train folds' cells, and that choice's mean on the test fold (out of
    sample), beside the in-sample best on the test fold (what a fit to it would claim)."""
    rows = table.filter(pl.col("method") == method)
    out = []
    for test, train_folds in train.items():
        fit = (
            rows.filter(pl.col("fold").is_in(list(train_folds)))
            .group_by("knobs")
            .agg(pl.col(objective).mean())
            .sort([objective, "knobs"], descending=[True, False])
        )
        on_test = (
            rows.filter(pl.col("fold") == test).group_by("knobs").agg(pl.col(objective).mean())
        )
        if fit.height == 0 or on_test.height == 0:
            continue
        chosen = fit["knobs"][0]
        held = on_test.filter(pl.col("knobs") == chosen)[objective]
        best = on_test.sort(objective, descending=True)
        out.append(
            {
                "test_fold": test,
                "chosen_knobs": chosen,
                "train_" + objective: fit[objective][0],
                "test_" + objective: held[0] if held.len() else None,
                "in_sample_best_knobs": best["knobs"][0],
                "in_sample_best_" + objective: best[objective][0],
            }
        )
    return pl.DataFrame(out)


def write_summary(table: pl.DataFrame, path: Path, *, title: str = "sweep") -> Path:
    """An offline HTML page: per scenario and fold, mean metrics per knobs x method."""
    means = (
        table.group_by("scenario", "fold", "knobs", "method")
        .agg(
            pl.len().alias("cells"),
            pl.col("sharpe").mean(),
            pl.col("max_drawdown_bps").mean(),
            pl.col("mean_gross").mean(),
            pl.col("cash_days_share").mean(),
            pl.col("derisk_hours").max(),
        )
        .sort("scenario", "fold", "knobs", "method")
    )
    columns = means.columns
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in means.iter_rows():
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row)
        body.append(f"<tr>{cells}</tr>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{table['cell'].n_unique()} cells, "
        f"{table.height} rows; means over seeds.</p>"
        f"<table><tr>{head}</tr>{''.join(body)}</table></body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.3f}"
    return "-" if value is None else str(value)
