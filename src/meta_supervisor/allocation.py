"""The seed's ``meta_supervisor/allocation.py``: same functions, now thin adapters over the core.

``compute_weights(agent_stats)`` takes the seed's stats dict exactly (``pnl_sum_bps, hit_rate,
error_rate, avg_abs_error_bps, strategy, max_drawdown_bps``; optional ``n_records`` and
``decision``) and returns ``{agent: weight}``, weights rounded down to 6 decimals, Σ ≤ 1, the rest
in cash. Strategy tails and confidence come from the configured ledger, as of now.
Differences from the seed, each a fix (DESIGN.md "must not recur"): risk pulls capital back to
cash instead of to the other agents; the cap is water-filled; unusable numbers gate the agent
with a reason instead of crashing or reaching the JSON; ``decision: "KILL"`` gets nothing.

``compute_weights`` is stateless (no smoothing against the previous decision); the full cycle
(``meta-supervisor allocate``) adds the stability step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meta_supervisor import strategy_cvar
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.decision import Decision, canonical_json
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.confidence_decay import compute_confidence_multipliers
from meta_supervisor.config import current_paths
from meta_supervisor.cycle.run import commit
from meta_supervisor.policy.model import Policy, Profile, load_policy
from meta_supervisor.state.files import atomic_write_text

__all__ = ["ALLOCATION_STATE", "compute_decision", "compute_weights", "main", "save_weights"]

_DEFAULT_STATE = Path("meta_supervisor/state/allocation.json")
ALLOCATION_STATE = _DEFAULT_STATE

# The seed's tunables, kept for code that reads them; the policy object is authoritative.
MAX_WEIGHT = 0.25
MIN_CONF = 0.50
CVAR_PENALTY_K = 0.015
DD_PENALTY_K = 0.01


def compute_decision(
    agent_stats: Mapping[str, Mapping[str, Any]],
    *,
    as_of: datetime | None = None,
    policy: Policy | None = None,
) -> Decision:
    """The full decision (with explanations) for a seed stats dict."""
    paths = current_paths()
    if policy is None:
        policy = load_policy(paths.policy)
        if "profile" not in policy.model_fields_set:
            # The seed's functions apply the seed profile (DESIGN.md: "exactly what
            # compute_weights applies to a bare seed stats dict"), unless a policy file chose.
            policy = policy.model_copy(update={"profile": Profile.SEED})
    as_of = as_of or datetime.now(UTC)
    tails_raw = strategy_cvar.run(horizon_hours=policy.horizon_hours, as_of=as_of, policy=policy)
    tails = {name: Tail.from_row({**t, "strategy": name}) for name, t in tails_raw.items()}
    confidence = {
        name: Confidence(multiplier=value)
        for name, value in compute_confidence_multipliers(as_of, policy).items()
    }
    stats = {str(k): (v if isinstance(v, Mapping) else {}) for k, v in (agent_stats or {}).items()}
    return allocate(stats, as_of=as_of, policy=policy, confidence=confidence, tails=tails)


def compute_weights(agent_stats: dict) -> dict:
    """``{agent: weight}`` for the seed's stats dict; see the module docstring."""
    return compute_decision(agent_stats).weights


def _target() -> Path:
    return ALLOCATION_STATE if ALLOCATION_STATE != _DEFAULT_STATE else current_paths().allocation


def save_weights(weights: dict) -> None:
    """Write ``{agent: weight}`` atomically. Non-finite or non-numeric weights are refused."""
    clean: dict[str, float] = {}
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"weight of {name!r} is not a number: {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"weight of {name!r} is not a finite non-negative number: {value!r}")
        clean[str(name)] = float(value)
    atomic_write_text(_target(), canonical_json(clean, indent=2))


def main(agent_stats: dict) -> dict:
    """Compute, save the weights, the full decision and a history entry; return the weights."""
    decision = compute_decision(agent_stats)
    paths = current_paths()
    if ALLOCATION_STATE != _DEFAULT_STATE:
        save_weights(decision.weights)
    commit(decision, paths)
    return decision.weights
