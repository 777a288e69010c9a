r"""The *evidence* profile: tilt from a neutral prior only as far as the evidence is strong.

DESIGN.md ("What the seed's formula does on real prices"): selecting by trailing PnL chases
noise where no agent has persistent skill, and absolute-bps penalties sit at their floors on
real prices. This profile keeps the seed's shape (gates, then bounded multipliers with a
one-line reason, then pull-back, cap, stability) but changes what the multipliers read:

* **prior**: equal weight over the agents that pass the safety gates (the ``pnl_sum ≤ 0``
  selection is *not* a gate here: a loss inside the noise is no evidence);
* **evidence tilt** from the t-statistic of the agent's mean PnL in the window,
  :math:`t_i = \bar x_i \sqrt{n_i} / s_i` (``pnl_mean_bps``, ``pnl_std_bps``, ``n_records``), so
  the record count and the dispersion set how much a mean can say. The fleet learns how much
  its t-statistics say at all: with :math:`V` the pooled *within-strategy* variance of the
  :math:`t_i` over eligible agents (≈ 1 when no agent differs from another; within strategy,
  so that a factor shared by a strategy's agents does not pass for skill), the signal share is
  :math:`\hat s = \min(1, \max(0, 1 - 1/V))` (James–Stein). The tilt is

  .. math:: m_i = \mathrm{clip}\big(e^{k\,\mathrm{soft}(\hat s\,(t_i - \bar t),\,t_0)},
            \ m_{lo},\ m_{hi}\big)

  with :math:`\mathrm{soft}(x, t_0) = \mathrm{sign}(x)\max(|x| - t_0, 0)`: no tilt while the
  shrunk evidence is inside :math:`\pm t_0`.
* **confidence**: the cycle's calibration multiplier (unchanged, in [floor, ceiling]);
* **drawdown against the agent's own scale**: :math:`z = |dd| / (s_i\sqrt{n_i})` (a zero-drift
  random walk of *n* steps has a drawdown of order :math:`s\sqrt n`);
  :math:`m = \mathrm{clip}(1 - k_{dd}(z - z_0), f_{dd}, 1)`;
* **strategy tail against the agent's own gap scale**:
  :math:`\rho = -CVaR95_{gap} / \overline{|gap|}_i`
  (a normal gap gives ρ ≈ 2.6); :math:`m = \mathrm{clip}(1 - k_{tail}(\rho - \rho_0), f_{tail}, 1)`.

The tilt is a quality factor (it moves capital between agents); drawdown and tail are risk
factors (the allocation's pull-back sends what they remove to cash).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meta_supervisor.allocate import Confidence, Tail
    from meta_supervisor.policy import Policy

__all__ = ["FleetEvidence", "fleet_evidence", "quality_factors", "risk_factors", "t_stat"]


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def t_stat(stats: Mapping[str, Any]) -> float | None:
    """``pnl_mean·sqrt(n)/pnl_std``; ``None`` with fewer than 2 records or no dispersion."""
    n, mean, sd = (_num(stats.get(k)) for k in ("n_records", "pnl_mean_bps", "pnl_std_bps"))
    if n is None or mean is None or sd is None or n < 2 or sd <= 0:
        return None
    return mean * math.sqrt(n) / sd


@dataclass(frozen=True)
class FleetEvidence:
    """What the fleet's cross-section says: mean t, its variance and the signal share."""

    n_agents: int
    mean_t: float
    var_t: float
    signal_share: float


def _eligible(stats: Mapping[str, Any], policy: Policy) -> bool:
    n = _num(stats.get("n_records"))
    err = _num(stats.get("error_rate"))
    return (
        n is not None and n >= policy.min_records and (err is None or err <= policy.max_error_rate)
    )


def fleet_evidence(agent_stats: Mapping[str, Mapping[str, Any]], policy: Policy) -> FleetEvidence:
    """Mean and pooled within-strategy variance of the eligible agents' t-statistics.

    ``signal_share = clip(1 − 1/V, 0, 1)`` with fewer than ``evidence_min_agents`` agents
    giving 0 (too few to tell skill from luck); ``policy.evidence_learn_strength = False``
    fixes it at 1.
    """
    by_strategy: dict[str, list[float]] = {}
    for s in agent_stats.values():
        if _eligible(s, policy) and (t := t_stat(s)) is not None:
            by_strategy.setdefault(str(s.get("strategy") or "unclassified"), []).append(t)
    ts = [t for group in by_strategy.values() for t in group]
    if len(ts) < 2:
        return FleetEvidence(len(ts), ts[0] if ts else 0.0, 0.0, 0.0)
    mean = math.fsum(ts) / len(ts)
    # Pooled *within-strategy* variance: a factor shared by a strategy's agents moves their t
    # together and would pass for skill in the plain cross-sectional variance.
    groups = [g for g in by_strategy.values() if len(g) >= 2]
    dof = sum(len(g) - 1 for g in groups)
    if dof > 0:
        var = math.fsum((t - math.fsum(g) / len(g)) ** 2 for g in groups for t in g) / dof
    else:
        var = math.fsum((t - mean) ** 2 for t in ts) / (len(ts) - 1)
    if not policy.evidence_learn_strength:
        share = 1.0
    elif len(ts) < policy.evidence_min_agents or var <= 0:
        share = 0.0
    else:
        share = min(1.0, max(0.0, 1.0 - 1.0 / var))
    return FleetEvidence(len(ts), mean, var, share)


def _factor(name: str, value: float, reason: str) -> dict[str, Any]:
    return {"factor": name, "value": value, "reason": reason}


def _soft(x: float, threshold: float) -> float:
    return math.copysign(max(abs(x) - threshold, 0.0), x)


def quality_factors(
    stats: Mapping[str, Any],
    confidence: Confidence | None,
    fleet: FleetEvidence,
    policy: Policy,
) -> list[dict[str, Any]]:
    """Prior, evidence tilt and confidence for one agent (see the module docstring)."""
    factors = [_factor("prior", 1.0, "neutral prior: equal weight over eligible agents")]
    t = t_stat(stats)
    if t is None:
        factors.append(_factor("evidence", 1.0, "fewer than 2 records or no dispersion: no tilt"))
    else:
        shrunk = fleet.signal_share * (t - fleet.mean_t)
        raw = math.exp(policy.evidence_k * _soft(shrunk, policy.evidence_t0))
        mult = min(policy.evidence_tilt_max, max(policy.evidence_tilt_min, raw))
        factors.append(
            _factor(
                "evidence",
                mult,
                f"t of mean PnL {t:+.2f} vs fleet {fleet.mean_t:+.2f}, signal share "
                f"{fleet.signal_share:.0%} (fleet t variance {fleet.var_t:.2f} over "
                f"{fleet.n_agents} agents): shrunk {shrunk:+.2f}, tilts beyond "
                f"±{policy.evidence_t0:g}",
            )
        )
    if confidence is None:
        factors.append(_factor("confidence", policy.confidence_prior, "no calibration evidence"))
    else:
        factors.append(
            _factor(
                "confidence",
                confidence.multiplier,
                f"calibration over {confidence.n_evidence} records "
                f"(mean |gap|/sigma {confidence.error_ratio or 0:.2f})",
            )
        )
    return factors


def risk_factors(
    stats: Mapping[str, Any], tail: Tail | None, policy: Policy
) -> list[dict[str, Any]]:
    """Drawdown and strategy tail, each against the agent's own scale."""
    factors = []
    dd = _num(stats.get("max_drawdown_bps"))
    n = _num(stats.get("n_records"))
    sd = _num(stats.get("pnl_std_bps"))
    if dd is None or n is None or sd is None or n < 2 or sd <= 0:
        factors.append(_factor("drawdown", 1.0, "no PnL dispersion to scale the drawdown by"))
    else:
        z = abs(dd) / (sd * math.sqrt(n))
        mult = min(
            1.0,
            max(policy.evidence_dd_floor, 1.0 - policy.evidence_dd_k * (z - policy.evidence_dd_z0)),
        )
        factors.append(
            _factor(
                "drawdown",
                mult,
                f"drawdown {-abs(dd):+.1f} bps = {z:.2f} x sigma·sqrt(n) "
                f"(sigma {sd:.1f} bps, n {n:.0f}); penalised beyond {policy.evidence_dd_z0:g}",
            )
        )
    scale = _num(stats.get("avg_abs_error_bps"))
    used = None if tail is None else _num(tail.gap_cvar95_used_bps)
    if tail is None or used is None or scale is None or scale <= 0:
        factors.append(_factor("cvar", 1.0, "no strategy tail or gap scale"))
    else:
        rho = max(0.0, -used) / scale
        mult = min(
            1.0,
            max(
                policy.evidence_tail_floor,
                1.0 - policy.evidence_tail_k * (rho - policy.evidence_tail_r0),
            ),
        )
        factors.append(
            _factor(
                "cvar",
                mult,
                f"strategy {tail.strategy} gap CVaR95 {used:+.1f} bps = {rho:.2f} x the agent's "
                f"mean |gap| {scale:.1f} bps; penalised beyond {policy.evidence_tail_r0:g}",
            )
        )
    return factors
