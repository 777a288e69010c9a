r"""The *select* profile: follow the allocation rule this fleet rewards, equal weight until shown.

Issue #14 ("learned selection"): on real prices no agent has persistent skill and every tilt
costs Sharpe against equal weight; on fleets with persistent skill the seed's selection on
trailing PnL wins by far. Which world a fleet is in can be learned out of sample:
:mod:`meta_supervisor.signals.selection` scores each plain rule (equal weight, inverse
volatility, the evidence tilt at full strength, the seed's selection) by its next-period PnL
after its weights were known, and this profile follows the one that beat equal weight's
risk-adjusted PnL with a paired t above ``selection_t0``, else equal weight.

Factors, per agent:

* **rule** (quality): the followed rule's raw weight on the agent's window statistics
  (:func:`meta_supervisor.signals.selection.rule_weights`); the pipeline normalises the shares
  over the agents that pass the gates and caps them. Agents the rule cannot size (fewer than 2
  records or no dispersion) get the rule's mean weight: neutral.
* **broken** (risk, 0 or 1): 0 when ``recent_loss_z ≥ broken_loss_scale``
  (:mod:`meta_supervisor.signals.broken`: consecutive losses each far beyond the agent's own
  robust scale, divided by ``V``, the fleet's volatility ratio, when ``V ≥ 1.5``, with
  ``broken_regime_relative``: a market-wide volatility rise cuts nobody by itself); the
  pull-back sends its share to cash and the explanation names why (and the fleet's ``V``
  when it raised the bar).
* **drawdown beyond noise** (risk): :math:`a_i = \mathrm{clip}(1 - k_{dd}(z_i/c(n_i) -
  z_{null}), f_{dd}, 1)` with :math:`z_i = |dd_i|/(s_i\sqrt{n_i})` (the evidence profile's
  :math:`z`, :func:`meta_supervisor.allocate.profiles.evidence.drawdown_multipliers`): 1 unless
  the drawdown is beyond what a zero-drift walk of the agent's own volatility reaches about
  one time in a hundred (``evidence_dd_null_z`` 2.7, the 99th percentile of :math:`z` for a
  long walk). :math:`c(n) = q_{99}(n)/q_{99}(\infty)` (:func:`small_sample_inflation`) is how
  much larger :math:`z`'s 99th percentile is over only :math:`n` steps, the sample std
  :math:`s_i` being estimated from those same few steps: 3.77/2.72 = 1.39 at 5 records, 1 from
  20 on. Without it a daily agent's 168 h window (5 records) exceeded 2.7 on 2.6% of the null's
  agent-days, not 1% (issue #14: the pull-back firing on noise on real prices).
* **strategy tail beyond noise** (risk): the evidence profile's tail factor, 1 unless the
  strategy's gap CVaR95 exceeds ``evidence_tail_r0`` (4) times its own mean |gap| (a normal
  gap gives 2.6).

No other factor holds capital back (no fleet-wide drawdown level, no calibration): where
nothing is broken, beyond its noise, gated or capped by an operator, the book is fully
invested (no idle cash without a stated cause).
"""

from __future__ import annotations

import math

import numpy as np

from meta_supervisor.allocate.fleet import Fleet
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.allocate.profiles.base import FactorTable, ProfileFactors, ProfileMethod
from meta_supervisor.allocate.profiles.evidence import drawdown_multipliers, tail_multipliers
from meta_supervisor.allocate.schema import Factor
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals.broken import REGIME_MIN_RATIO, regime_divisor
from meta_supervisor.signals.persistence import Persistence
from meta_supervisor.signals.selection import RuleSelection, rule_weights
from meta_supervisor.typing import FloatArray

__all__ = [
    "KEYS",
    "METHOD",
    "NULL_Q99",
    "broken_factor",
    "compute",
    "explain",
    "rule_quality",
    "small_sample_inflation",
]

#: The statistics the profile reads beyond the seed's.
KEYS = ("pnl_mean_bps", "pnl_std_bps", "recent_loss_z", "fleet_vol_ratio")

#: 99th percentile of ``z = max drawdown / (s·sqrt(n))`` of a zero-drift walk of ``n`` normal
#: steps, ``s`` their sample std (ddof 1), for n = 2..19 (400,000 walks each, seed 20261207;
#: Student-t(4) steps give the same within 0.1); from 20 steps on it is 2.70-2.76
#: (:data:`NULL_Q99_LONG`). Regenerated and checked by ``tests/allocate/test_select.py``.
NULL_Q99 = {
    2: 30.84, 3: 6.89, 4: 4.53, 5: 3.77, 6: 3.36, 7: 3.19, 8: 3.07, 9: 2.98, 10: 2.92,
    11: 2.86, 12: 2.83, 13: 2.82, 14: 2.80, 15: 2.78, 16: 2.77, 17: 2.76, 18: 2.75, 19: 2.74,
}  # fmt: skip
NULL_Q99_LONG = 2.72


def small_sample_inflation(n: FloatArray) -> FloatArray:
    """``c(n) = q99(n)/q99(∞)`` (:data:`NULL_Q99`), 1 for ``n ≥ 20``; NaN below 2 records."""
    out = np.ones(n.shape)
    with np.errstate(invalid="ignore"):
        out[~(n >= 2)] = np.nan
        for k, q in NULL_Q99.items():
            out[np.floor(n) == k] = q / NULL_Q99_LONG
    return out


def rule_quality(rule: str, f: Fleet, policy: Policy) -> FloatArray:
    """The rule's raw weight per agent; agents it cannot size get its mean (neutral)."""
    c = f.columns
    n, mean, sd = c["n_records"].value, c["pnl_mean_bps"].value, c["pnl_std_bps"].value
    if rule == "equal_weight":
        return np.ones(len(f.names))
    with np.errstate(invalid="ignore"):
        ok = ~np.isnan(n) & ~np.isnan(mean) & ~np.isnan(sd) & (n >= max(2, policy.min_records))
        ok &= sd > 0
    if not ok.any():
        return np.ones(len(f.names))
    raw = rule_weights(rule, n, mean, sd, ok, policy)
    return np.where(ok, raw, float(raw[ok].mean()))


def broken_factor(loss_z: FloatArray, policy: Policy) -> FloatArray:
    """0 where ``recent_loss_z ≥ broken_loss_scale`` (NaN: unknown, 1), else 1."""
    with np.errstate(invalid="ignore"):
        return np.where(loss_z >= policy.broken_loss_scale, 0.0, 1.0)


def compute(
    f: Fleet, conf: FloatArray, policy: Policy, persistence: Persistence | None = None
) -> ProfileFactors:
    """The select profile's factors (module docstring); ``conf`` is not used: calibration
    moves no capital here."""
    selection = persistence.selection if persistence is not None else None
    selection = selection or RuleSelection("equal_weight")
    quality = rule_quality(selection.rule, f, policy)
    c = f.columns
    loss_z = c["recent_loss_z"].value
    broken = broken_factor(loss_z, policy)
    z, _ = drawdown_multipliers(
        c["max_drawdown_bps"].value, c["n_records"].value, c["pnl_std_bps"].value, policy
    )
    inflation = small_sample_inflation(c["n_records"].value)
    inner = 1.0 - policy.evidence_dd_k * (z / inflation - policy.evidence_dd_null_z)
    drawdown = np.where(np.isnan(z), 1.0, np.clip(inner, policy.evidence_dd_floor, 1.0))
    rho, tail = tail_multipliers(f.tail_number, f.tail_scale, policy)
    return ProfileFactors(
        factors={"rule": quality, "broken": broken, "drawdown": drawdown, "cvar": tail},
        quality=quality,
        risk=broken * drawdown * tail,
        fleet=selection,
        extra={
            "loss_z": loss_z,
            "fleet_v": c["fleet_vol_ratio"].value,
            "z": z,
            "inflation": inflation,
            "rho": rho,
            "used": f.tail_number,
        },
    )


def explain(
    table: FactorTable, i: int, held: Confidence | None, tail: Tail | None, strategy: str
) -> list[Factor]:
    """Agent ``i``'s rule weight and broken test, each with its reason."""
    selection: RuleSelection = table.fleet
    policy = table.policy
    loss_z = table.extra["loss_z"][i]
    if math.isnan(loss_z):
        why = "no run of losses to judge (too short a history or no dispersion)"
    else:
        run = _run_text(loss_z, table.extra["fleet_v"][i])
        if table.factors["broken"][i] == 0.0:
            why = (
                f"broken: {policy.broken_consecutive} consecutive losses each at least "
                f"{run} within its last {policy.broken_memory_records} records (limit "
                f"{policy.broken_loss_scale:g}): cut to zero until that many records pass "
                "without such a run"
            )
        else:
            why = (
                f"worst run of {policy.broken_consecutive} losses {run}, within its noise "
                f"(limit {policy.broken_loss_scale:g})"
            )
    return [
        {
            "factor": "rule",
            "value": table.factors["rule"][i],
            "reason": f"follows {selection.describe(policy)}",
        },
        {"factor": "broken", "value": table.factors["broken"][i], "reason": why},
        {
            "factor": "drawdown",
            "value": table.factors["drawdown"][i],
            "reason": _drawdown_reason(table, i),
        },
        {
            "factor": "cvar",
            "value": table.factors["cvar"][i],
            "reason": _tail_reason(table, i, strategy),
        },
    ]


def _run_text(loss_z: float, fleet_v: float) -> str:
    """``loss_z`` (already divided by the fleet's regime divisor) in words, with the fleet's
    ``V`` when it raised the bar (:func:`meta_supervisor.signals.broken.regime_divisor`)."""
    divisor = regime_divisor(fleet_v)
    if divisor == 1.0:
        return f"{loss_z:.1f}x its own robust scale"
    return (
        f"{loss_z * divisor:.1f}x its own robust scale, {loss_z:.1f}x after dividing by the "
        f"fleet's volatility ratio V {fleet_v:.2f} (median over agents of recent/earlier "
        f"scale, at least {REGIME_MIN_RATIO:g}: a market-wide move is not a broken agent)"
    )


def _drawdown_reason(table: FactorTable, i: int) -> str:
    z, policy = table.extra["z"][i], table.policy
    if math.isnan(z):
        return "no PnL dispersion to scale the drawdown by"
    limit = policy.evidence_dd_null_z * table.extra["inflation"][i]
    verdict = "beyond its noise: penalised" if z > limit else "within its noise"
    sigma, n = table.raw["pnl_std_bps"][i], table.raw["n_records"][i]
    return (
        f"drawdown {-abs(table.raw['max_drawdown_bps'][i]):+.1f} bps = {z:.2f} x "
        f"sigma·sqrt(n) (sigma {sigma:.1f} bps, n {n:.0f}) of its own PnL; {verdict} "
        f"(limit {limit:.2f}, what a zero-drift walk of {n:.0f} steps exceeds one time in a "
        "hundred)"
    )


def _tail_reason(table: FactorTable, i: int, strategy: str) -> str:
    rho, policy = table.extra["rho"][i], table.policy
    if math.isnan(rho):
        return "no strategy tail or gap scale"
    verdict = "beyond its noise: penalised" if rho > policy.evidence_tail_r0 else "within noise"
    used, scale = table.extra["used"][i], float(table.tail_scale[i])
    return (
        f"strategy {strategy} gap CVaR95 {used:+.1f} bps = {rho:.2f} x its own mean |gap| "
        f"{scale:.1f} bps; "
        f"{verdict} (limit {policy.evidence_tail_r0:g}; a normal gap gives 2.6)"
    )


METHOD = ProfileMethod(
    profile=Profile.SELECT,
    compute=compute,
    explain=explain,
    method=(
        "q = rule: the share the rule it follows gives each agent that passes the gates. That "
        "rule is equal weight over the agents that pass the gates until another allocation rule "
        "(inverse volatility, evidence tilt, the seed's selection) has beaten it out of sample "
        "with a paired t above the policy's threshold, then that rule; an agent whose "
        "consecutive losses are far beyond its own noise (and beyond the fleet's volatility "
        "regime) is cut to zero, and a drawdown or a "
        "strategy tail beyond what noise explains is pulled back to cash"
    ),
    quality_factors=("rule",),
    risk_factors=("broken", "drawdown", "cvar"),
    shown_factors=("rule", "broken", "drawdown", "cvar"),
    keys=KEYS,
    uses_persistence=True,
)
