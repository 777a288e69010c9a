"""The safety gates: one table, read by every profile and every baseline.

A gate is a named reason to give an agent nothing, whatever its quality. The table, in the
order the explanation lists them:

==================== =========================================================================
gate                 an agent fails it when
==================== =========================================================================
operator_exclusion   an active operator override excludes it (reason and expiry in the detail)
kill                 its stats say ``decision: "KILL"``
usable_numbers       a statistic is unusable: not a number, NaN, inf, a boolean, or out of
                     range (hit and error rates outside [0, 1], a negative average error)
error_rate           ``error_rate > policy.max_error_rate`` (not applied without telemetry)
min_records          ``n_records`` below what the agent's own cadence asks
                     (:func:`meta_supervisor.signals.cadence.min_records_needed`:
                     ``policy.min_records``, relaxed for an agent whose ``expected_records``
                     in the window are known, so a holiday week never gates a daily agent);
                     not applied when the count is unknown
positive_pnl         ``pnl_sum_bps ≤ 0`` (within :data:`PNL_ZERO_BPS`); a *profile* gate: only
                     profiles that select on PnL (the seed's) apply it
==================== =========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from meta_supervisor.allocate.decision import iso
from meta_supervisor.allocate.fleet import RANGES, Fleet, fleet_from_dicts
from meta_supervisor.allocate.inputs import Override
from meta_supervisor.allocate.schema import Gate
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.cadence import min_records_needed
from meta_supervisor.typing import BoolArray

__all__ = [
    "PNL_ZERO_BPS",
    "PROFILE_GATES",
    "SAFETY_GATES",
    "eligible_agents",
    "gate_details",
    "safety_gates",
]

#: The gates every profile and baseline applies, in the explanation's order.
SAFETY_GATES = ("operator_exclusion", "kill", "usable_numbers", "error_rate", "min_records")

#: ``pnl_sum_bps`` within this of 0 is 0 for the ``pnl_sum > 0`` gate: the same window summed
#: in another order (the store's running sums, a fresh compensated sum) lands on either side of
#: an exact 0 (0.1 + 0.2 − 0.3), and the gate must not flip a whole position on the last bit.
PNL_ZERO_BPS = 1e-6


def safety_gates(f: Fleet, policy: Policy, excluded: BoolArray) -> dict[str, BoolArray]:
    """``{gate: passed}`` for :data:`SAFETY_GATES`, one boolean per agent (``excluded``: the
    agents an active operator override excludes)."""
    c = f.columns
    err, n_rec = c["error_rate"].checked, c["n_records"].checked
    gates = {
        "operator_exclusion": ~excluded,
        "kill": ~f.killed,
        "usable_numbers": np.ones(len(f.names), dtype=bool),
        "error_rate": np.isnan(err) | (err <= policy.max_error_rate),
        "min_records": np.isnan(n_rec)
        | (n_rec >= min_records_needed(c["expected_records"].checked, policy)),
    }
    for key in RANGES:
        gates["usable_numbers"][list(c[key].problems)] = False
    gates["usable_numbers"][f.bad_confidence(policy)] = False
    return gates


def _positive_pnl(f: Fleet, policy: Policy) -> BoolArray:
    pnl = f.columns["pnl_sum_bps"].checked
    return ~np.isnan(pnl) & (pnl > PNL_ZERO_BPS)


#: Gates a profile may add after :data:`SAFETY_GATES`, by name.
PROFILE_GATES: dict[str, Callable[[Fleet, Policy], BoolArray]] = {"positive_pnl": _positive_pnl}


def gate_details(
    i: int,
    passed: Mapping[str, list[bool]],
    problems: list[str] | None,
    checked: Mapping[str, list[float]],
    override: Override | None,
    policy: Policy,
) -> list[Gate]:
    """Agent ``i``'s gates as the explanation lists them: ``{gate, passed, detail}`` each."""
    excluded = not passed["operator_exclusion"][i]
    err, n, pnl, expected = (
        checked[k][i] for k in ("error_rate", "n_records", "pnl_sum_bps", "expected_records")
    )
    details = {
        "operator_exclusion": (
            f"excluded by {override.created_by} until {iso(override.expires_at)}: {override.reason}"
            if excluded and override is not None
            else "no active exclusion"
        ),
        "kill": "not killed" if passed["kill"][i] else "stats say decision KILL",
        "usable_numbers": "; ".join(problems) if problems else "all numbers usable",
        "error_rate": (
            "no telemetry: not gated"
            if math.isnan(err)
            else f"error rate {err:.1%} vs limit {policy.max_error_rate:.1%}"
        ),
        "min_records": (
            "record count not given: not gated"
            if math.isnan(n)
            else _min_records_detail(int(n), expected, policy)
        ),
        "positive_pnl": "pnl_sum_bps missing" if math.isnan(pnl) else f"pnl_sum {pnl:+.1f} bps",
    }
    return [
        {"gate": gate, "passed": values[i], "detail": details[gate]}
        for gate, values in passed.items()
    ]


def _min_records_detail(n: int, expected: float, policy: Policy) -> str:
    """The min_records gate's detail, naming the agent's own cadence when it was used."""
    if math.isnan(expected):
        return f"{n} records in window vs minimum {policy.min_records}"
    need = float(min_records_needed(np.array([expected]), policy)[0])
    return (
        f"{n} records in window vs minimum {need:.1f} "
        f"(its own cadence: {expected:.1f} expected; policy minimum {policy.min_records})"
    )


def eligible_agents(stats: Mapping[str, Mapping[str, Any]], policy: Policy) -> list[str]:
    """Agents passing :data:`SAFETY_GATES` (no PnL selection, no operator overrides), sorted by
    name, that also report the two numbers a baseline needs: ``n_records`` and
    ``pnl_sum_bps`` (a baseline cannot size an agent whose record count it does not know)."""
    fleet = fleet_from_dicts(stats, {}, {}, policy)
    passed = np.logical_and.reduce(
        list(safety_gates(fleet, policy, np.zeros(len(fleet.names), dtype=bool)).values())
    )
    known = ~fleet.columns["n_records"].absent & ~fleet.columns["pnl_sum_bps"].absent
    return [name for name, ok in zip(fleet.names, (passed & known).tolist(), strict=True) if ok]
