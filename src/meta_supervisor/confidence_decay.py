"""The seed's confidence module: ``update_confidence_multipliers``, ``get_confidence_multiplier``.

The multiplier is a pure function of the records and the time (see
:mod:`meta_supervisor.signals.confidence` for the formula), so updating twice never compounds.
``update_confidence_multipliers()`` computes every agent's multiplier as of now and writes
``meta_supervisor/state/confidence_multipliers.json`` atomically; ``get_confidence_multiplier``
reads that file, computes from the records when the file is absent, and returns the policy's
prior (not the floor) for an agent with no evidence.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from meta_supervisor.allocate.decision import canonical_json
from meta_supervisor.config import current_paths
from meta_supervisor.cycle.run import load_ledger
from meta_supervisor.policy.model import Policy, load_policy
from meta_supervisor.signals.confidence import confidence_multipliers
from meta_supervisor.state.files import atomic_write_text

__all__ = [
    "compute_confidence_multipliers",
    "get_confidence_multiplier",
    "update_confidence_multipliers",
]


def compute_confidence_multipliers(
    as_of: datetime | None = None, policy: Policy | None = None
) -> dict[str, float]:
    """``{agent: multiplier}`` for every agent with evidence, from the configured records."""
    paths = current_paths()
    policy = policy or load_policy(paths.policy)
    frame = confidence_multipliers(load_ledger(paths).records, as_of or datetime.now(UTC), policy)
    return dict(zip(frame["agent"].to_list(), frame["confidence"].to_list(), strict=True))


def update_confidence_multipliers(
    as_of: datetime | None = None, policy: Policy | None = None
) -> dict[str, float]:
    """Compute the multipliers as of ``as_of`` (default now) and save them atomically."""
    values = compute_confidence_multipliers(as_of, policy)
    atomic_write_text(current_paths().confidence, canonical_json(values, indent=2))
    return values


def get_confidence_multiplier(name: str) -> float:
    """The agent's multiplier: saved value, else computed now, else the prior (no evidence)."""
    paths = current_paths()
    policy = load_policy(paths.policy)
    values: dict[str, float] | None = None
    if paths.confidence.exists():
        try:
            loaded = json.loads(paths.confidence.read_text(encoding="utf-8") or "{}")
            values = {str(k): float(v) for k, v in loaded.items()}
        except (ValueError, TypeError, AttributeError):
            values = None
    if values is None:
        values = compute_confidence_multipliers(policy=policy)
    value = values.get(name, policy.confidence_prior)
    low, high = policy.confidence_floor, policy.confidence_ceiling
    return min(high, max(low, value)) if math.isfinite(value) else policy.confidence_prior
