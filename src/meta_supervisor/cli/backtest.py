"""``meta-supervisor backtest``: every profile and baseline on a scenario or a ledger, side by side.

Registered on the main app by :mod:`meta_supervisor.cli.main`.

Examples::

    meta-supervisor backtest --scenario skill_blowups --seed 3 --report out.html
    meta-supervisor backtest --records alpha/reconciled.jsonl --telemetry telemetry/events.jsonl
    meta-supervisor backtest --ledger meta_supervisor/ledger        # the ingested store
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from meta_supervisor.allocate.decision import parse_iso
from meta_supervisor.cli.common import BACKTEST_SCHEMA, console, emit_json, fail
from meta_supervisor.cycle.run import Ledger
from meta_supervisor.ingest.records import dedupe_records
from meta_supervisor.policy.model import Policy, PolicyError, load_policy
from meta_supervisor.research.backtest import BacktestResult, run_backtest, run_fleet

__all__ = ["backtest", "metrics_table", "parse_duration"]

_UNITS = {"m": 1 / 60, "h": 1.0, "d": 24.0}


def parse_duration(text: str) -> float:
    """``"6h"``, ``"30m"``, ``"1d"`` or a bare number of hours -> hours (> 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhd]?)\s*", text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 6h, 30m, 1d)")
    hours = float(match.group(1)) * _UNITS.get(match.group(2) or "h", 1.0)
    if hours <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return hours


_COLUMNS = [
    ("sharpe", "Sharpe", "{:+.2f}"),
    ("total_pnl_bps", "PnL bps", "{:+.0f}"),
    ("max_drawdown_bps", "max DD bps", "{:.0f}"),
    ("cvar95_bps", "CVaR95 bps", "{:.1f}"),
    ("mean_gross", "gross", "{:.0%}"),
    ("turnover", "turnover", "{:.3f}"),
    ("derisk_hours", "de-risk h", "{:.0f}"),
    ("fallback_share", "fell back", "{:.0%}"),
]


def _cell(value: float, fmt: str) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "never"
    return fmt.format(value)


def metrics_table(result: BacktestResult, title: str = "backtest") -> Table:
    """Methods x metrics; the default profile is marked with ``*``."""
    table = Table(title=title)
    table.add_column("method")
    for _, header, _ in _COLUMNS:
        table.add_column(header, justify="right")
    for name, values in result.metrics.items():
        label = f"{name} *" if name == result.default_method else name
        table.add_row(label, *(_cell(values.get(key, math.nan), fmt) for key, _, fmt in _COLUMNS))
    return table


def backtest(
    scenario: Annotated[str | None, typer.Option(help="Named scenario (see --list).")] = None,
    records: Annotated[
        Path | None, typer.Option(help="Reconciled records (JSONL/CSV/Parquet) instead.")
    ] = None,
    telemetry: Annotated[Path | None, typer.Option(help="Telemetry with --records.")] = None,
    ledger: Annotated[
        Path | None, typer.Option(help="An ingested store (see 'ingest') instead.")
    ] = None,
    every: Annotated[str, typer.Option(help="Rebalance interval (6h, 30m, 1d).")] = "",
    seed: Annotated[int, typer.Option(help="Scenario seed.")] = 0,
    warmup: Annotated[str, typer.Option(help="Warm-up before the first rebalance.")] = "7d",
    config: Annotated[Path | None, typer.Option(help="Policy TOML for the default method.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")] = None,
    cost_bps: Annotated[
        float,
        typer.Option(
            "--cost-bps",
            min=0,
            help="Trading cost in bps of the notional traded, for the report's net PnL.",
        ),
    ] = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    list_scenarios: Annotated[bool, typer.Option("--list", help="List the scenarios.")] = False,
    calendar: Annotated[
        bool | None,
        typer.Option(
            "--calendar/--no-calendar",
            help="Decide at the ledger's own trading calendar (each distinct maturity: the "
            "closes) instead of every --every (default: the scenario's choice; off for files).",
        ),
    ] = None,
    date_from: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="First decision date (ISO, UTC); the history before it is the warm-up.",
        ),
    ] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last decision date (ISO).")] = None,
) -> None:
    """Backtest every policy profile and baseline through the live cycle, rebalancing every 6 h.

    Example: meta-supervisor backtest --scenario skill_blowups --seed 3 --report out.html
    """
    from meta_supervisor.research.scenarios import SCENARIOS, build_scenario

    out = Console(stderr=True)
    if list_scenarios:
        for name, sc in SCENARIOS.items():
            out.print(f"[bold]{name}[/]: {sc.description}")
        return
    if sum(x is not None for x in (scenario, records, ledger)) != 1:
        raise fail("give exactly one of --scenario NAME, --records FILE or --ledger DIR")
    try:
        every_h = parse_duration(every) if every else None
        warmup_h = parse_duration(warmup)
        policy = load_policy(config) if config else None
        window = {"date_from": _date_arg(date_from), "date_to": _date_arg(date_to, end=True)}
    except (ValueError, PolicyError) as err:
        raise fail(str(err)) from None
    try:
        if scenario is not None:
            fleet = build_scenario(scenario, seed)
            info = {"scenario": scenario, "seed": seed}
            result = run_fleet(
                fleet,
                every_hours=every_h,
                policy=policy,
                warmup_hours=warmup_h,
                console=out,
                info=info,
                **window,
                **({} if calendar is None else {"calendar": calendar}),
            )
        else:
            source = (
                _ledger_from_store(ledger)
                if ledger
                else _ledger_from_files(cast(Path, records), telemetry, out)
            )
            result = _run_ledger(
                source,
                str(ledger or records),
                every_h or 6.0,
                policy,
                warmup_h,
                out,
                calendar=bool(calendar),
                **window,
            )
    except (KeyError, ImportError, ValueError) as err:
        raise fail(str(err.args[0] if err.args else err)) from None
    title = (f"{scenario} (seed {seed})" if scenario else str(records or ledger)) + (
        f": {len(result.times)} rebalances at the ledger's closes"
        if result.info.get("calendar")
        else f": {len(result.times)} rebalances every {result.every_hours:g} h"
    )
    if json_out:
        emit_json({"schema": BACKTEST_SCHEMA} | result.to_dict())
    else:
        console.print(metrics_table(result, title))
    if report is not None:
        from meta_supervisor.research.report import write_report

        path = write_report(result, report, title=title, cost_bps=cost_bps)
        out.print(f"report written to {path}")


def _ledger_from_files(records: Path, telemetry: Path | None, console: Console) -> Ledger:
    from meta_supervisor.ingest.records import empty_telemetry
    from meta_supervisor.ingest.sources import read_records, read_telemetry

    batch = read_records(records)
    if batch.quarantine.height:
        console.print(f"[yellow]{batch.quarantine.height} record rows refused[/] in {records}")
    recs, _ = dedupe_records(batch.records)
    tel = read_telemetry(telemetry).records if telemetry else empty_telemetry()
    return Ledger(records=recs, telemetry=tel)


def _ledger_from_store(root: Path) -> Ledger:
    from meta_supervisor.ledger.store import LedgerStore

    store = LedgerStore(root)
    if not store.exists():
        raise ValueError(f"{root}: no ingested ledger here (run 'meta-supervisor ingest' first)")
    manifest = store.manifest()
    return Ledger(
        records=store.records(manifest=manifest), telemetry=store.telemetry(manifest=manifest)
    )


def _run_ledger(
    ledger: Ledger,
    source: str,
    every_h: float,
    policy: Policy | None,
    warmup_h: float,
    console: Console,
    *,
    calendar: bool = False,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
) -> BacktestResult:
    recs = ledger.records
    if recs.height == 0:
        raise ValueError(f"{source}: no usable record")
    return run_backtest(
        ledger,
        cast(datetime, recs["ts"].min()),
        cast(datetime, recs["matured_at"].max()),
        every_hours=every_h,
        policy=policy,
        warmup_hours=warmup_h,
        console=console,
        info={"ledger": source},
        calendar=calendar,
        date_from=date_from,
        date_to=date_to,
    )


def _date_arg(text: str | None, *, end: bool = False) -> datetime | None:
    """``--from``/``--to``: an ISO date (UTC midnight; ``--to`` a date means through its end)
    or an ISO instant with a zone."""
    if text is None:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return parse_iso(text)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1) if end else start
