"""Realised performance between two decisions, from the records that matured in between.

Pure: a records frame in (the ledger's, as :func:`meta_supervisor.cycle.run.load_ledger` gives
it), plain numbers out. A record is known at ``matured_at`` (DESIGN.md "Visibility"), so the
outcomes that arrived in ``(start, end]`` are what the agents realised while the earlier
decision's weights were in force. Per agent: ``n`` such records at the policy horizon, their
mean realised PnL (bps of notional per signal) and its ``contribution`` to the book,
``weight × mean`` (bps of capital per signal, the earlier decision's weight); the book's
figure is the sum of the contributions, ``Σ_i w_i · mean_i``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import polars as pl

__all__ = ["realised_between"]


def realised_between(
    records: pl.DataFrame,
    weights: Mapping[str, float],
    start: datetime,
    end: datetime,
    horizon_hours: int,
) -> dict[str, Any]:
    """What the agents realised on the records that matured in ``(start, end]``.

    Returns ``{"start", "end", "n_records", "agents": {agent: {"weight", "n",
    "mean_realized_bps", "contribution_bps"}}, "contribution_bps"}``; an agent with a weight
    and no matured record has ``n = 0`` and no mean (``None``), contributing 0.
    """
    frame = (
        records.lazy()
        .filter(
            (pl.col("matured_at") > start)
            & (pl.col("matured_at") <= end)
            & (pl.col("horizon_hours") == horizon_hours)
        )
        .group_by("agent")
        .agg(pl.len().alias("n"), pl.col("realized_pnl_bps").mean().alias("mean"))
        .collect()
    )
    seen = {row["agent"]: row for row in frame.iter_rows(named=True)}
    agents: dict[str, dict[str, Any]] = {}
    for name in sorted(set(weights) | set(seen)):
        row = seen.get(name)
        weight = float(weights.get(name, 0.0))
        mean = None if row is None else float(row["mean"])
        agents[name] = {
            "weight": weight,
            "n": 0 if row is None else int(row["n"]),
            "mean_realized_bps": mean,
            "contribution_bps": 0.0 if mean is None else weight * mean,
        }
    return {
        "start": start,
        "end": end,
        "n_records": int(sum(a["n"] for a in agents.values())),
        "agents": agents,
        "contribution_bps": math.fsum(a["contribution_bps"] for a in agents.values()),
    }
