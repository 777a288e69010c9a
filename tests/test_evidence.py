"""The evidence profile's factors: formulas, bounds, monotonicity, and its place in allocate."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from meta_supervisor.allocate import Tail, allocate
from meta_supervisor.evidence import fleet_evidence, quality_factors, risk_factors, t_stat
from meta_supervisor.policy import Policy, Profile

AS_OF = datetime(2026, 2, 1, tzinfo=UTC)
EVIDENCE = Policy(profile=Profile.EVIDENCE)


def _stats(mean=1.0, sd=50.0, n=40, dd=-100.0, err=0.0, **extra):
    return {
        "pnl_mean_bps": mean,
        "pnl_std_bps": sd,
        "n_records": n,
        "pnl_sum_bps": mean * n,
        "hit_rate": 0.5,
        "error_rate": err,
        "avg_abs_error_bps": 40.0,
        "max_drawdown_bps": dd,
        "strategy": "s",
        **extra,
    }


def test_t_stat_is_mean_times_sqrt_n_over_std():
    assert math.isclose(t_stat(_stats(mean=5.0, sd=40.0, n=64)), 5.0 * 8 / 40.0)
    assert t_stat(_stats(n=1)) is None and t_stat(_stats(sd=0.0)) is None


def test_fleet_signal_share_is_james_stein_on_the_cross_section():
    means = [-4.0, -1.0, 0.0, 2.0, 3.0, 9.0, 12.0]
    stats = {f"a{i}": _stats(mean=m, sd=40.0, n=100) for i, m in enumerate(means)}
    stats["gated"] = _stats(mean=50.0, err=0.9)  # not eligible: not in the cross-section
    fleet = fleet_evidence(stats, EVIDENCE)
    ts = np.array(means) * 10 / 40.0
    assert fleet.n_agents == len(means)
    assert math.isclose(fleet.mean_t, ts.mean())
    assert math.isclose(fleet.var_t, ts.var(ddof=1))
    assert math.isclose(fleet.signal_share, min(1.0, max(0.0, 1 - 1 / ts.var(ddof=1))))
    few = fleet_evidence(dict(list(stats.items())[:3]), EVIDENCE)
    assert few.signal_share == 0.0  # fewer than evidence_min_agents: no tilt at all


def test_a_shift_shared_by_a_strategy_does_not_pass_for_skill():
    # Two strategies, every agent of one shifted by the same amount (a shared factor): the
    # pooled within-strategy variance ignores it; the plain cross-section would not.
    rng = np.random.default_rng(1)
    stats = {}
    for i in range(12):
        strategy, shift = ("up", 30.0) if i % 2 else ("down", -30.0)
        stats[f"a{i}"] = _stats(mean=shift + rng.normal(0, 4.0), sd=40.0, n=100, strategy=strategy)
    fleet = fleet_evidence(stats, EVIDENCE)
    ts = np.array([t_stat(s) for s in stats.values()])
    groups = [ts[0::2], ts[1::2]]
    pooled = sum(((g - g.mean()) ** 2).sum() for g in groups) / (len(ts) - 2)
    assert math.isclose(fleet.var_t, pooled)
    assert ts.var(ddof=1) > 10 * pooled


@given(st.floats(-20, 20), st.floats(0, 1))
def test_tilt_is_bounded_and_neutral_inside_the_threshold(t_value, share):
    from meta_supervisor.evidence import FleetEvidence

    fleet = FleetEvidence(20, 0.0, 2.0, share)
    stats = _stats(mean=t_value * 50.0 / math.sqrt(40), sd=50.0, n=40)
    tilt = next(
        f for f in quality_factors(stats, None, fleet, EVIDENCE) if f["factor"] == "evidence"
    )
    assert EVIDENCE.evidence_tilt_min <= tilt["value"] <= EVIDENCE.evidence_tilt_max
    if abs(share * t_value) <= EVIDENCE.evidence_t0:
        assert tilt["value"] == 1.0
    assert tilt["reason"]


@given(st.floats(0, 5000), st.floats(0, 5000), st.floats(-500, 0), st.floats(-500, 0))
def test_risk_factors_never_reward_a_deeper_drawdown_or_tail(dd1, dd2, c1, c2):
    def mults(dd, cvar):
        tail = Tail("s", 100, cvar, cvar, mean_abs_gap=20.0)
        return {f["factor"]: f["value"] for f in risk_factors(_stats(dd=-dd), tail, EVIDENCE)}

    a, b = mults(min(dd1, dd2), max(c1, c2)), mults(max(dd1, dd2), min(c1, c2))
    assert b["drawdown"] <= a["drawdown"] and b["cvar"] <= a["cvar"]
    if min(c1, c2) < -100:  # rho > 5, well beyond the threshold: the tail penalty fires
        assert b["cvar"] < 1.0
    for m in (a, b):
        assert EVIDENCE.evidence_dd_floor <= m["drawdown"] <= 1.0
        assert EVIDENCE.evidence_tail_floor <= m["cvar"] <= 1.0


def test_evidence_profile_holds_a_small_loser_that_the_seed_profile_gates():
    stats = {f"a{i}": _stats(mean=1.0 + 0.1 * i) for i in range(8)}
    stats["unlucky"] = _stats(mean=-0.5)  # a loss well inside the noise (t ≈ −0.06)
    seed = allocate(stats, as_of=AS_OF, policy=Policy(profile=Profile.SEED))
    evidence = allocate(stats, as_of=AS_OF, policy=EVIDENCE)
    assert "unlucky" not in seed.weights
    assert evidence.weights["unlucky"] > 0
    # Near equal weight: no agent's evidence is strong, all face the same drawdown.
    values = list(evidence.weights.values())
    assert max(values) - min(values) < 0.01
    assert evidence.profile == "evidence"
    assert all(g["gate"] != "positive_pnl" for e in evidence.agents.values() for g in e["gates"])


def test_evidence_profile_still_applies_the_safety_gates():
    stats = {f"a{i}": _stats() for i in range(6)}
    stats["noisy"] = _stats(err=0.5)
    stats["thin"] = _stats(n=2)
    d = allocate(stats, as_of=AS_OF, policy=EVIDENCE)
    assert "noisy" not in d.weights and "thin" not in d.weights
    assert sum(d.weights.values()) <= 1.0
