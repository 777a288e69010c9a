"""The *seed* profile: the seed's formula (SEED.md), made correct (DESIGN.md "Allocation").

Quality ``q = sqrt(max(pnl_sum, 0)) · (hit_rate_offset + hit_rate) · confidence ·
1/(1 + avg_abs_error/sim_error_scale)`` and risk ``r = cvar_mult · dd_mult`` with
``cvar_mult = max(cvar_floor, 1 + cvar_k·cvar)`` for a strategy CVaR95 of the gap ``cvar < 0``
(bps) and ``dd_mult = max(drawdown_floor, 1 + drawdown_k·dd)`` for a drawdown ``dd < 0``
(bps; a positive drawdown handed in is read as its magnitude). Defaults are the seed's: 0.6,
75 bps, 0.015 and 0.25, 0.01 and 0.4. It selects on PnL: the ``positive_pnl`` gate.
"""

from __future__ import annotations

import math

import numpy as np

from meta_supervisor.allocate.fleet import Fleet
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.allocate.numbers import or_zero, py_max
from meta_supervisor.allocate.profiles.base import FactorTable, ProfileFactors, ProfileMethod
from meta_supervisor.allocate.schema import Factor
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals.persistence import Persistence
from meta_supervisor.typing import FloatArray

__all__ = ["METHOD", "compute", "explain"]


def compute(
    f: Fleet, conf: FloatArray, policy: Policy, persistence: Persistence | None = None
) -> ProfileFactors:
    """The seed's factors for every agent (see the module docstring)."""
    c = f.columns
    pnl_used = py_max(or_zero(c["pnl_sum_bps"].checked), 0.0)  # max(p, 0.0)
    hit = or_zero(c["hit_rate"].checked)
    aae = c["avg_abs_error_bps"].checked
    sim = np.where(np.isnan(aae), 1.0, 1.0 / (1.0 + aae / policy.sim_error_scale_bps))
    cvar = np.where(
        f.has_tail & (f.tail_used < 0),
        py_max(policy.cvar_floor, 1.0 + f.tail_used * policy.cvar_k),
        1.0,
    )
    dd_in = c["max_drawdown_bps"].checked
    dd = or_zero(np.where(np.isnan(dd_in), 0.0, -np.abs(dd_in)))
    dd_mult = np.where(dd < 0, py_max(policy.drawdown_floor, 1.0 + dd * policy.drawdown_k), 1.0)
    factors = {
        "alpha": np.sqrt(pnl_used),
        "hit_rate": policy.hit_rate_offset + hit,
        "confidence": conf,
        "sim_integrity": sim,
        "cvar": cvar,
        "drawdown": dd_mult,
    }
    return ProfileFactors(
        factors=factors,
        quality=factors["alpha"] * factors["hit_rate"] * conf * sim,
        risk=cvar * dd_mult,
        fleet=None,
        extra={"pnl": pnl_used, "hit": hit, "dd": dd},
    )


def _factor(name: str, value: float, reason: str) -> Factor:
    return {"factor": name, "value": value, "reason": reason}


def _over(n_records: int | None, hours: float) -> str:
    counted = "" if n_records is None else f" {n_records} records"
    return f" over{counted} in the last {hours:g} h"


def _at_floor(mult: float, floor: float) -> str:
    return f"; at its floor x{floor:g}" if mult <= floor else ""


def explain(
    table: FactorTable, i: int, held: Confidence | None, tail: Tail | None, strategy: str
) -> list[Factor]:
    """Agent ``i``'s six factors with their one-line reasons."""
    policy, factors, extra, checked = table.policy, table.factors, table.extra, table.checked
    n = checked["n_records"][i]
    n_records = None if math.isnan(n) else int(n)
    out = [
        _factor(
            "alpha",
            factors["alpha"][i],
            f"sqrt of pnl_sum {extra['pnl'][i]:.1f} bps"
            f"{_over(n_records, policy.lookback_hours)} "
            "(concave: steady gains count more than one big win)",
        ),
        _factor(
            "hit_rate",
            factors["hit_rate"][i],
            f"{policy.hit_rate_offset:g} + hit rate {extra['hit'][i]:.0%} "
            "(share of records with PnL > 0)",
        ),
    ]
    if held is None:
        out.append(
            _factor(
                "confidence",
                policy.confidence_prior,
                "no calibration evidence: prior (a new agent is not punished)",
            )
        )
    else:
        ratio = (
            ""
            if held.error_ratio is None
            else f", mean |gap|/σ {held.error_ratio:.2f} vs tolerance "
            f"{policy.confidence_tolerance:g}"
        )
        out.append(
            _factor(
                "confidence",
                held.multiplier,
                f"{held.n_evidence} records (weight {held.evidence_weight:.1f}){ratio}"
                f", evidence half-life {policy.confidence_half_life_hours:g} h",
            )
        )
    aae = checked["avg_abs_error_bps"][i]
    if math.isnan(aae):
        out.append(_factor("sim_integrity", 1.0, "avg |gap| not reported: no penalty"))
    else:
        scale = policy.sim_error_scale_bps
        out.append(
            _factor(
                "sim_integrity",
                factors["sim_integrity"][i],
                f"avg |gap| {aae:.1f} bps vs scale {scale:g} bps "
                "(how far results miss the simulator's forecasts)",
            )
        )
    used = None if tail is None else tail.gap_cvar95_used_bps
    if tail is None or used is None:
        out.append(_factor("cvar", 1.0, f"no tail evidence for strategy {strategy}"))
    else:
        mult = factors["cvar"][i]
        window = f" in the last {tail.window_hours:g} h" if tail.window_hours else ""
        shrink = (
            f" (raw {tail.gap_cvar95_bps:+.1f} shrunk: n < {policy.cvar_min_samples})"
            if tail.shrunk and tail.gap_cvar95_bps is not None
            else ""
        )
        out.append(
            _factor(
                "cvar",
                mult,
                f"strategy {strategy}, tail {used:+.1f} bps over {tail.n} records"
                f"{window}{shrink}{_at_floor(mult, policy.cvar_floor)}",
            )
        )
    dd, mult = extra["dd"][i], factors["drawdown"][i]
    out.append(
        _factor(
            "drawdown",
            mult,
            f"max drawdown {dd:+.1f} bps in window (last {policy.lookback_hours:g} h)"
            f"{_at_floor(mult, policy.drawdown_floor)}",
        )
    )
    return out


METHOD = ProfileMethod(
    profile=Profile.SEED,
    compute=compute,
    explain=explain,
    method=(
        "the seed's formula made correct: quality = sqrt(pnl_sum) x (0.6 + hit rate) x "
        "confidence x 1/(1 + avg |gap|/75), agents with pnl_sum <= 0 gated; risk = CVaR and "
        "drawdown multipliers in absolute bps"
    ),
    gates=("positive_pnl",),
)
