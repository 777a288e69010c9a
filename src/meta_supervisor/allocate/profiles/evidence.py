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
  :math:`\hat s = \min(1, \max(0, 1 - 1/V))` (James–Stein). With
  ``evidence_persistence_lags > 0`` (the cycle's default) :math:`\hat s` is instead the strength
  learned out of sample by :mod:`meta_supervisor.signals.persistence`: whether the agents' past t
  predicted their next period's PnL in this fleet (a rolling rank correlation), so a fleet
  without persistent skill stays at the prior and one with it is tilted. The tilt is

  .. math:: m_i = \mathrm{clip}\big(e^{k\,\mathrm{soft}(\hat s\,(t_i - \bar t),\,t_0)},
            \ m_{lo},\ m_{hi}\big)

  with :math:`\mathrm{soft}(x, t_0) = \mathrm{sign}(x)\max(|x| - t_0, 0)`: no tilt while the
  shrunk evidence is inside :math:`\pm t_0`.
* **confidence**: the cycle's calibration multiplier :math:`c_i` (in [floor, ceiling]), used as
  :math:`c_i + (1 - g)(1 - c_i)` (``evidence_confidence_shrink``): calibration moves capital
  between agents only as far as the fleet shows skill, with
  :math:`g = \min(1, \hat s / s_{ref})` (``evidence_risk_strength_ref``);
* **drawdown against the agent's own scale**: :math:`z = |dd| / (s_i\sqrt{n_i})` (a zero-drift
  random walk of *n* steps has a drawdown of order :math:`s\sqrt n`: about 1.1 on average,
  beyond 1.5 one time in five, beyond 2.7 one time in a hundred);
  own factor :math:`m_i = \mathrm{clip}(1 - k_{dd}(z_i - z_0), f_{dd}, 1)`. With
  ``evidence_dd_relative`` the factor used is

  .. math:: d_i = g\,m_i + (1 - g)\,\min(\bar m,\ a_i),\qquad
            a_i = \mathrm{clip}(1 - k_{dd}(z_i - z_{null}), f_{dd}, 1)

  where :math:`\bar m` is the mean own factor over the eligible agents (the fleet's drawdown
  level: held back as cash for every agent alike, so a condition the whole fleet shares does
  not tilt the book) and :math:`a_i` penalises only a drawdown beyond what the agent's own
  volatility explains (:math:`z_{null}` = ``evidence_dd_null_z``, about the 99th percentile of
  a zero-drift walk). Where no agent has shown skill (:math:`g = 0`) a drawdown inside the
  noise moves no capital between agents (measured: it was what made the profile's drawdown
  deeper than equal weight's where nobody has skill, docs/BACKTEST.md); once the fleet shows
  persistence (:math:`g = 1`) the agent's own factor applies. :math:`d_i \in [f_{dd}, 1]`;
* **strategy tail against the strategy's own gap scale**:
  :math:`\rho = -CVaR95_{gap} / \overline{|gap|}_{s}`, both over the strategy's records in the
  CVaR window (a normal gap gives ρ ≈ 2.6);
  :math:`m = \mathrm{clip}(1 - k_{tail}(\rho - \rho_0), f_{tail}, 1)`.
  The strategy's scale, not the agent's: with the agent's own mean |gap| in the denominator a
  worse |gap| lowered the penalty and raised the weight (the monotonicity invariant broke).

The tilt is a quality factor (it moves capital between agents); drawdown and tail are risk
factors (the allocation's pull-back sends what they remove to cash).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from meta_supervisor.allocate.fleet import Fleet
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.allocate.numbers import finite_number, py_max, py_min
from meta_supervisor.allocate.profiles.base import FactorTable, ProfileFactors, ProfileMethod
from meta_supervisor.allocate.schema import Factor
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals.persistence import Persistence
from meta_supervisor.typing import BoolArray, FloatArray, IntArray

__all__ = [
    "KEYS",
    "METHOD",
    "FleetEvidence",
    "compute",
    "confidence_used",
    "drawdown_level",
    "drawdown_multipliers",
    "drawdown_used",
    "eligible",
    "explain",
    "fleet_evidence",
    "fleet_from_arrays",
    "quality_factor_dicts",
    "quality_factors",
    "risk_factor_dicts",
    "risk_factors",
    "risk_weight",
    "t_stat",
    "t_stats",
    "tail_multipliers",
    "tilts",
]


# The formulas below are written on arrays (one entry per agent, NaN = not reported or
# unusable) so that the allocation computes every agent at once. Python's ``max(a, b)`` returns
# ``a`` unless ``b > a`` (NaN never wins); ``np.where(b > a, b, a)`` is that, bit for bit,
# where ``np.maximum`` would propagate NaN: the per-agent functions at the end of this module
# (what tests and callers of one agent use) run the very same array code on length-1 arrays.


_num = finite_number


def _nums(values: list[Any]) -> FloatArray:
    """``_num`` of each value, NaN for ``None``."""
    return np.array([np.nan if (x := _num(v)) is None else x for v in values], dtype=np.float64)


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else x


#: Relative size of an sd that is rounding noise, not dispersion (see :func:`t_stats`).
SD_ZERO = 1e-6


@np.errstate(all="ignore")  # hostile numbers overflow to inf, as Python floats do
def t_stats(n: FloatArray, mean: FloatArray, sd: FloatArray) -> FloatArray:
    """``t = mean·sqrt(n)/sd`` per agent; NaN with fewer than 2 records or no dispersion.

    ``n`` records, ``mean`` and ``sd`` of the PnL (bps); NaN inputs mean "not reported". No
    dispersion is ``sd ≤ 1e-6·max(1, |mean|)`` bps, not ``sd = 0``: identical PnLs give an sd of
    rounding noise whose size depends on how it was summed (1e-8 from running sums, 1e-16 from
    a two-pass sum), and ``t`` would be 1e8 or 1e16, an artefact either way.
    """
    spread = sd > SD_ZERO * np.maximum(1.0, np.abs(mean))
    ok = ~np.isnan(n) & ~np.isnan(mean) & ~np.isnan(sd) & (n >= 2) & spread
    t = np.full(n.shape, np.nan)
    t[ok] = mean[ok] * np.sqrt(n[ok]) / sd[ok]
    return t


def t_stat(stats: Mapping[str, Any]) -> float | None:
    """``pnl_mean·sqrt(n)/pnl_std``; ``None`` with fewer than 2 records or no dispersion."""
    n, mean, sd = (_nums([stats.get(k)]) for k in ("n_records", "pnl_mean_bps", "pnl_std_bps"))
    return _opt(float(t_stats(n, mean, sd)[0]))


@dataclass(frozen=True)
class FleetEvidence:
    """What the fleet's cross-section says: mean t, its variance and the signal share.

    ``persistence``: when given, the signal share is its learned strength (whether past t
    predicted the next period's PnL, :mod:`meta_supervisor.signals.persistence`), not ``1 − 1/V``.
    """

    n_agents: int
    mean_t: float
    var_t: float
    signal_share: float
    persistence: Persistence | None = None
    drawdown_level: float = 1.0  # m̄: mean own drawdown factor over the eligible agents


def eligible(n: FloatArray, error_rate: FloatArray, policy: Policy) -> BoolArray:
    """Agents in the cross-section: ``n ≥ min_records`` and error rate not above the gate."""
    return (
        ~np.isnan(n)
        & (n >= policy.min_records)
        & (np.isnan(error_rate) | (error_rate <= policy.max_error_rate))
    )


@np.errstate(all="ignore")  # hostile numbers overflow to inf, as Python floats do
def fleet_from_arrays(
    t: FloatArray,
    in_fleet: BoolArray,
    groups: IntArray,
    policy: Policy,
    persistence: Persistence | None = None,
    dd_own: FloatArray | None = None,
) -> FleetEvidence:
    """Mean and pooled within-strategy variance of the t-statistics of ``in_fleet & t known``.

    ``groups`` holds a strategy code per agent. Sums are ``math.fsum`` (exactly rounded, so
    independent of the agents' order): ``mean = Σt/N``; ``V = Σ_g Σ_{i∈g} (t_i − t̄_g)² / Σ_g
    (n_g − 1)`` over strategies with at least 2 agents, else the plain sample variance.
    ``signal_share = clip(1 − 1/V, 0, 1)``, 0 with fewer than ``evidence_min_agents`` agents
    (too few to tell skill from luck); ``policy.evidence_learn_strength = False`` fixes it at 1.
    With ``persistence`` (and the strength learned) the share is ``persistence.strength``
    instead: learned out of sample from the fleet's past, not from one cross-section.
    ``drawdown_level`` is :func:`drawdown_level` of ``dd_own`` (1 without it).
    """
    level = 1.0 if dd_own is None else drawdown_level(dd_own, in_fleet)
    sel = np.flatnonzero(in_fleet & ~np.isnan(t))
    ts = t[sel]
    if ts.size < 2:
        mean0 = float(ts[0]) if ts.size else 0.0
        return FleetEvidence(int(ts.size), mean0, 0.0, 0.0, persistence, level)
    # Pooled *within-strategy* variance: a factor shared by a strategy's agents moves their t
    # together and would pass for skill in the plain cross-sectional variance.
    codes = groups[sel]
    order = np.argsort(codes, kind="stable")
    sorted_t, sorted_codes = ts[order], codes[order]
    values = sorted_t.tolist()  # one conversion; fsum is exact, so the order is free
    mean = math.fsum(values) / ts.size
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]).tolist()
    ends = [*starts[1:], len(values)]
    pooled = [(a, b) for a, b in zip(starts, ends, strict=True) if b - a >= 2]
    dof = sum(b - a - 1 for a, b in pooled)
    # Squares by Python's pow (x**2 is C pow, not x*x), as the per-agent formula computed them.
    if dof > 0:
        centre = np.array([math.fsum(values[a:b]) / (b - a) for a, b in pooled])
        sizes = np.array([b - a for a, b in pooled])
        members = np.concatenate([np.arange(a, b) for a, b in pooled])
        deviations = (sorted_t[members] - np.repeat(centre, sizes)).tolist()
        var = math.fsum(map(pow, deviations, itertools.repeat(2.0))) / dof
    else:
        deviations = (ts - mean).tolist()
        var = math.fsum(map(pow, deviations, itertools.repeat(2.0))) / (ts.size - 1)
    if not policy.evidence_learn_strength:
        share = 1.0
    elif ts.size < policy.evidence_min_agents:
        share = 0.0
    elif persistence is not None:
        share = min(1.0, max(0.0, persistence.strength))
    elif var <= 0:
        share = 0.0
    else:
        share = min(1.0, max(0.0, 1.0 - 1.0 / var))
    return FleetEvidence(int(ts.size), mean, var, share, persistence, level)


def drawdown_level(dd_own: FloatArray, in_fleet: BoolArray) -> float:
    """m̄ = mean of the own drawdown factors over ``in_fleet`` (``math.fsum``: independent of
    the agents' order); 1 with no agent in the fleet."""
    values = dd_own[in_fleet].tolist()
    return math.fsum(values) / len(values) if values else 1.0


def risk_weight(fleet: FleetEvidence, policy: Policy) -> float:
    """g = min(1, ŝ / ``evidence_risk_strength_ref``): how far agent-specific drawdown and
    confidence factors act (0 where the fleet shows no skill)."""
    return min(1.0, fleet.signal_share / policy.evidence_risk_strength_ref)


def confidence_used(conf: FloatArray, fleet: FleetEvidence, policy: Policy) -> FloatArray:
    """``c + (1 − g)·(1 − c)`` (exactly ``c`` at ``g = 1``); ``c`` itself without
    ``evidence_confidence_shrink``."""
    if not policy.evidence_confidence_shrink:
        return conf
    return conf + (1.0 - risk_weight(fleet, policy)) * (1.0 - conf)


@np.errstate(all="ignore")  # hostile numbers overflow to inf, as Python floats do
def drawdown_used(
    z: FloatArray, own: FloatArray, fleet: FleetEvidence, policy: Policy
) -> tuple[FloatArray, FloatArray]:
    """``(a, d)``: ``a = clip(1 − k·(z − z_null), floor, 1)`` (1 where ``z`` is NaN) and
    ``d = g·own + (1 − g)·min(m̄, a)`` (``own`` itself without ``evidence_dd_relative``)."""
    inner = 1.0 - policy.evidence_dd_k * (z - policy.evidence_dd_null_z)
    beyond = np.where(np.isnan(z), 1.0, py_min(1.0, py_max(policy.evidence_dd_floor, inner)))
    if not policy.evidence_dd_relative:
        return beyond, own
    g = risk_weight(fleet, policy)
    return beyond, g * own + (1.0 - g) * py_min(fleet.drawdown_level, beyond)


def fleet_evidence(
    agent_stats: Mapping[str, Mapping[str, Any]],
    policy: Policy,
    persistence: Persistence | None = None,
) -> FleetEvidence:
    """:func:`fleet_from_arrays` over a stats dict per agent (strategy ``s or "unclassified"``)."""
    rows = list(agent_stats.values())

    def column(key: str) -> FloatArray:
        return _nums([s.get(key) for s in rows])

    keys = [str(s.get("strategy") or "unclassified") for s in rows]
    codes: dict[str, int] = {}
    groups = np.array([codes.setdefault(k, len(codes)) for k in keys], dtype=np.int64)
    n, sd = column("n_records"), column("pnl_std_bps")
    t = t_stats(n, column("pnl_mean_bps"), sd)
    _, own = drawdown_multipliers(column("max_drawdown_bps"), n, sd, policy)
    return fleet_from_arrays(
        t, eligible(n, column("error_rate"), policy), groups, policy, persistence, own
    )


def _soft(x: FloatArray, threshold: float) -> FloatArray:
    """``sign(x)·max(|x| − threshold, 0)``."""
    return np.copysign(py_max(np.abs(x) - threshold, 0.0), x)


@np.errstate(all="ignore")  # hostile numbers overflow to inf, as Python floats do
def tilts(t: FloatArray, fleet: FleetEvidence, policy: Policy) -> tuple[FloatArray, FloatArray]:
    """``(shrunk, tilt)``: ``shrunk = ŝ·(t − t̄)``, ``tilt = clip(exp(k·soft(shrunk, t0)),
    tilt_min, tilt_max)``; an agent without a t-statistic (NaN) gets ``tilt = 1``."""
    shrunk = fleet.signal_share * (t - fleet.mean_t)
    arg = policy.evidence_k * _soft(shrunk, policy.evidence_t0)
    raw = np.ones(t.shape)
    # math.exp, not np.exp: numpy's SIMD exp may differ in the last bit from the C library's,
    # and exp(±0) = 1 needs no call (the agents inside ±t0: almost all). Beyond exp(709) the
    # tilt is at its maximum anyway (math.exp would raise).
    moved = np.flatnonzero(arg != 0)
    raw[moved] = [math.inf if a >= 709.0 else math.exp(a) for a in arg[moved].tolist()]
    mult = py_min(policy.evidence_tilt_max, py_max(policy.evidence_tilt_min, raw))
    return shrunk, np.where(np.isnan(t), 1.0, mult)


@np.errstate(all="ignore")  # hostile numbers overflow to inf, as Python floats do
def drawdown_multipliers(
    dd: FloatArray, n: FloatArray, sd: FloatArray, policy: Policy
) -> tuple[FloatArray, FloatArray]:
    """``(z, mult)``: ``z = |dd|/(sd·sqrt(n))``, ``mult = clip(1 − k_dd·(z − z0), floor, 1)``.

    NaN ``z`` and ``mult = 1`` where the drawdown, the count or the dispersion is missing,
    ``n < 2`` or ``sd ≤ 0``.
    """
    ok = ~np.isnan(dd) & ~np.isnan(n) & ~np.isnan(sd) & (n >= 2) & (sd > 0)
    z = np.full(dd.shape, np.nan)
    z[ok] = np.abs(dd[ok]) / (sd[ok] * np.sqrt(n[ok]))
    inner = 1.0 - policy.evidence_dd_k * (z - policy.evidence_dd_z0)
    mult = py_min(1.0, py_max(policy.evidence_dd_floor, inner))
    return z, np.where(ok, mult, 1.0)


@np.errstate(all="ignore")  # hostile numbers overflow to inf, as Python floats do
def tail_multipliers(
    used: FloatArray, scale: FloatArray, policy: Policy
) -> tuple[FloatArray, FloatArray]:
    """``(rho, mult)``: ``rho = max(0, −CVaR)/mean|gap|``, ``mult = clip(1 − k·(rho − r0), floor,
    1)``; NaN ``rho`` and ``mult = 1`` without a tail (NaN ``used``) or a positive gap scale."""
    ok = ~np.isnan(used) & ~np.isnan(scale) & (scale > 0)
    rho = np.full(used.shape, np.nan)
    rho[ok] = py_max(0.0, -used[ok]) / scale[ok]
    inner = 1.0 - policy.evidence_tail_k * (rho - policy.evidence_tail_r0)
    mult = py_min(1.0, py_max(policy.evidence_tail_floor, inner))
    return rho, np.where(ok, mult, 1.0)


def _factor(name: str, value: float, reason: str) -> Factor:
    return {"factor": name, "value": value, "reason": reason}


def quality_factor_dicts(
    t: float,
    shrunk: float,
    tilt: float,
    confidence: Confidence | None,
    fleet: FleetEvidence,
    policy: Policy,
) -> list[Factor]:
    """Prior, evidence tilt and confidence of one agent, each with its reason (``t`` NaN: none)."""
    factors = [_factor("prior", 1.0, "neutral prior: equal weight over eligible agents")]
    if math.isnan(t):
        factors.append(_factor("evidence", 1.0, "fewer than 2 records or no dispersion: no tilt"))
    else:
        if fleet.persistence is None:
            source = f"fleet t variance {fleet.var_t:.2f} over {fleet.n_agents} agents"
        else:
            source = fleet.persistence.describe()
        factors.append(
            _factor(
                "evidence",
                tilt,
                f"t of mean PnL {t:+.2f} vs fleet {fleet.mean_t:+.2f}, signal share "
                f"{fleet.signal_share:.0%} ({source}): shrunk {shrunk:+.2f}, tilts beyond "
                f"±{policy.evidence_t0:g}",
            )
        )
    raw = policy.confidence_prior if confidence is None else confidence.multiplier
    used = float(confidence_used(np.array([raw], dtype=np.float64), fleet, policy)[0])
    pulled = ""
    if used != raw:
        pulled = (
            f"; x{raw:.2f} pulled toward 1 by {1 - risk_weight(fleet, policy):.0%} "
            f"(tilt strength {fleet.signal_share:.0%}: calibration moves capital only as far "
            "as skill is evidenced)"
        )
    if confidence is None:
        factors.append(_factor("confidence", used, f"no calibration evidence{pulled}"))
    else:
        factors.append(
            _factor(
                "confidence",
                used,
                f"calibration over {confidence.n_evidence} records "
                f"(mean |gap|/sigma {confidence.error_ratio or 0:.2f}){pulled}",
            )
        )
    return factors


def risk_factor_dicts(
    dd: float,
    n: float,
    sd: float,
    z: float,
    dd_mult: float,
    tail: Tail | None,
    used: float,
    scale: float,
    rho: float,
    tail_mult: float,
    policy: Policy,
    fleet: FleetEvidence | None = None,
    own: float | None = None,
) -> list[Factor]:
    """Drawdown and strategy tail of one agent with their reasons (NaN ``z``/``rho``: none).

    ``dd_mult`` is the factor used; with ``fleet`` and ``own`` (the agent's own drawdown
    factor) the reason says how the fleet's level and the null threshold made it.
    """
    factors = []
    relative = ""
    if fleet is not None and own is not None and policy.evidence_dd_relative:
        g = risk_weight(fleet, policy)
        relative = (
            f"; own x{own:.2f} weighted {g:.0%} (tilt strength {fleet.signal_share:.0%}), "
            f"else fleet mean x{fleet.drawdown_level:.2f} held as cash by every agent, "
            f"own penalty only beyond {policy.evidence_dd_null_z:g} (what its volatility "
            "does not explain)"
        )
    if math.isnan(z):
        factors.append(
            _factor("drawdown", dd_mult, f"no PnL dispersion to scale the drawdown by{relative}")
        )
    else:
        factors.append(
            _factor(
                "drawdown",
                dd_mult,
                f"drawdown {-abs(dd):+.1f} bps = {z:.2f} x sigma·sqrt(n) "
                f"(sigma {sd:.1f} bps, n {n:.0f}); penalised beyond {policy.evidence_dd_z0:g}"
                f"{relative}",
            )
        )
    if tail is None or math.isnan(rho):
        factors.append(_factor("cvar", 1.0, "no strategy tail or gap scale"))
    else:
        factors.append(
            _factor(
                "cvar",
                tail_mult,
                f"strategy {tail.strategy} gap CVaR95 {used:+.1f} bps = {rho:.2f} x its own "
                f"mean |gap| {scale:.1f} bps; penalised beyond {policy.evidence_tail_r0:g}",
            )
        )
    return factors


def quality_factors(
    stats: Mapping[str, Any],
    confidence: Confidence | None,
    fleet: FleetEvidence,
    policy: Policy,
) -> list[Factor]:
    """Prior, evidence tilt and confidence for one agent (see the module docstring)."""
    n, mean, sd = (_nums([stats.get(k)]) for k in ("n_records", "pnl_mean_bps", "pnl_std_bps"))
    t = t_stats(n, mean, sd)
    shrunk, tilt = tilts(t, fleet, policy)
    return quality_factor_dicts(
        float(t[0]), float(shrunk[0]), float(tilt[0]), confidence, fleet, policy
    )


def risk_factors(
    stats: Mapping[str, Any],
    tail: Tail | None,
    policy: Policy,
    fleet: FleetEvidence | None = None,
) -> list[Factor]:
    """Drawdown against the agent's own scale, strategy tail against the strategy's.

    With ``fleet`` (:func:`fleet_evidence` of the agent's fleet) the drawdown factor is the one
    :func:`meta_supervisor.allocate.core.allocate` uses (:func:`drawdown_used`); without it the
    agent's own factor alone.
    """
    dd, n, sd = (_nums([stats.get(k)]) for k in ("max_drawdown_bps", "n_records", "pnl_std_bps"))
    scale = _nums([None if tail is None else tail.mean_abs_gap])
    used = _nums([None if tail is None else tail.gap_cvar95_used_bps])
    z, own = drawdown_multipliers(dd, n, sd, policy)
    dd_mult = own if fleet is None else drawdown_used(z, own, fleet, policy)[1]
    rho, tail_mult = tail_multipliers(used, scale, policy)
    return risk_factor_dicts(
        float(dd[0]),
        float(n[0]),
        float(sd[0]),
        float(z[0]),
        float(dd_mult[0]),
        tail,
        float(used[0]),
        float(scale[0]),
        float(rho[0]),
        float(tail_mult[0]),
        policy,
        fleet,
        float(own[0]),
    )


# ---------------------------------------------------------------- the profile, registered


def compute(
    f: Fleet, conf: FloatArray, policy: Policy, persistence: Persistence | None = None
) -> ProfileFactors:
    """The evidence profile's factors for every agent (see the module docstring)."""
    c = f.columns
    n, mean, sd = c["n_records"].value, c["pnl_mean_bps"].value, c["pnl_std_bps"].value
    t = t_stats(n, mean, sd)
    in_fleet = eligible(n, c["error_rate"].value, policy)
    z, dd_own = drawdown_multipliers(c["max_drawdown_bps"].value, n, sd, policy)
    fleet = fleet_from_arrays(t, in_fleet, f.groups, policy, persistence, dd_own)
    shrunk, tilt = tilts(t, fleet, policy)
    # Without evidence of skill, neither calibration nor a drawdown inside the noise moves
    # capital between agents (the fleet's drawdown level still goes to cash).
    conf = confidence_used(conf, fleet, policy)
    _, dd_mult = drawdown_used(z, dd_own, fleet, policy)
    used = f.tail_number
    # The tail is the strategy's, so its scale is the strategy's own mean |gap|: scaling by the
    # agent's |gap| made a worse |gap| *lower* the penalty (and raise the weight).
    rho, tail_mult = tail_multipliers(used, f.tail_scale, policy)
    factors = {"prior": np.ones(len(f.names)), "evidence": tilt, "confidence": conf}
    factors |= {"drawdown": dd_mult, "cvar": tail_mult}
    return ProfileFactors(
        factors=factors,
        quality=1.0 * tilt * conf,
        risk=dd_mult * tail_mult,
        fleet=fleet,
        extra={"t": t, "shrunk": shrunk, "z": z, "rho": rho, "used": used, "dd_own": dd_own},
    )


def explain(
    table: FactorTable, i: int, held: Confidence | None, tail: Tail | None, strategy: str
) -> list[Factor]:
    """Agent ``i``'s factors (prior, evidence tilt, confidence, drawdown, tail) with reasons."""
    factors, extra, raw, policy = table.factors, table.extra, table.raw, table.policy
    return quality_factor_dicts(
        extra["t"][i], extra["shrunk"][i], factors["evidence"][i], held, table.fleet, policy
    ) + risk_factor_dicts(
        raw["max_drawdown_bps"][i],
        raw["n_records"][i],
        raw["pnl_std_bps"][i],
        extra["z"][i],
        factors["drawdown"][i],
        tail,
        extra["used"][i],
        float(table.tail_scale[i]),
        extra["rho"][i],
        factors["cvar"][i],
        policy,
        table.fleet,
        extra["dd_own"][i],
    )


#: The statistics the profile reads beyond the seed's (no range: a negative mean is a fine mean).
KEYS = ("pnl_mean_bps", "pnl_std_bps")

METHOD = ProfileMethod(
    profile=Profile.EVIDENCE,
    compute=compute,
    explain=explain,
    method=(
        "equal weight over the agents that pass the gates, tilted by each agent's t-statistic "
        "of mean PnL only as far as this fleet's past evidence has predicted its next-day PnL; "
        "drawdown and strategy tail measured against the agent's or strategy's own scale"
    ),
    keys=KEYS,
    uses_persistence=True,
)
