"""The seed's ``strategy_cvar.run``: per-strategy CVaR95 of the gap, from the configured ledger.

``run(horizon_hours=24)`` returns ``{strategy: {"gap_cvar95_bps", "gap_cvar95_used_bps", "n",
"worst_gap", "mean_gap", "shrunk", "horizon_hours", "window_hours"}}``. ``gap_cvar95_bps`` is the
raw estimator (DESIGN.md); the small-sample shrinkage the allocation uses is under
``gap_cvar95_used_bps``. Records come from ``alpha/reconciled.jsonl`` (see
:mod:`meta_supervisor.config`); a missing file gives ``{}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from meta_supervisor.config import current_paths
from meta_supervisor.cycle.run import load_ledger
from meta_supervisor.policy.model import Policy, load_policy
from meta_supervisor.signals.tails import strategy_tails

__all__ = ["run"]


def run(
    horizon_hours: int = 24, *, as_of: datetime | None = None, policy: Policy | None = None
) -> dict[str, dict[str, Any]]:
    """Tail statistics per strategy as of ``as_of`` (default: now)."""
    paths = current_paths()
    policy = policy or load_policy(paths.policy)
    as_of = as_of or datetime.now(UTC)
    ledger = load_ledger(paths)
    tails = strategy_tails(ledger.records, as_of, policy, horizon_hours=horizon_hours)
    return {
        row["strategy"]: {
            **{k: v for k, v in row.items() if k != "strategy"},
            "horizon_hours": horizon_hours,
            "window_hours": policy.cvar_lookback_hours,
        }
        for row in tails.iter_rows(named=True)
    }
