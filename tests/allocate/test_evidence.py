"""The evidence profile's factors: formulas, bounds, monotonicity, and its place in allocate."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.inputs import Tail
from meta_supervisor.allocate.profiles.evidence import (
    fleet_evidence,
    quality_factors,
    risk_factors,
    t_stat,
)
from meta_supervisor.policy.model import Policy, Profile

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
    from meta_supervisor.allocate.profiles.evidence import FleetEvidence

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


# ---------------------------------------------------------------- no skill in evidence: no tilt
# by calibration or by a drawdown inside the noise (docs/BACKTEST.md, "no-harm gap")


def _strength(s: float):
    from meta_supervisor.signals.persistence import Persistence

    return Persistence(s, 0.1, 0.02, 5.0 if s > 0 else 0.0, 20)


def _noisy_fleet(dds, confidence_values):
    from meta_supervisor.allocate.inputs import Confidence

    # sd 50, n 100: sigma·sqrt(n) = 500 bps, so dd -1000 is z = 2 (inside a zero-drift
    # walk's 99th percentile, beyond the own factor's z0 = 1.5) and dd -2000 is z = 4.
    stats = {f"a{i}": _stats(mean=0.0, sd=50.0, n=100, dd=dd) for i, dd in enumerate(dds)}
    conf = {f"a{i}": Confidence(c, 50, 20.0, 1.0) for i, c in enumerate(confidence_values)}
    return stats, conf


def test_without_evidence_of_skill_noise_sized_drawdowns_and_calibration_move_no_capital():
    dds = [-100.0, -1000.0, -200.0, -900.0, -300.0, -1100.0, -50.0, -400.0]
    stats, conf = _noisy_fleet(dds, [1.0, 0.6, 0.9, 1.0, 0.7, 1.0, 0.8, 1.0])
    d = allocate(stats, as_of=AS_OF, policy=EVIDENCE, confidence=conf, persistence=_strength(0))
    # Equal weight in shape; the fleet's mean own drawdown factor is held back as cash.
    z = np.abs(dds) / 500.0
    own = np.clip(1 - EVIDENCE.evidence_dd_k * (z - EVIDENCE.evidence_dd_z0), 0.25, 1.0)
    expected = own.mean() / len(dds)
    assert all(math.isclose(w, expected, abs_tol=2e-6) for w in d.weights.values())
    assert len(d.weights) == len(dds)
    factors = {f["factor"]: f for f in d.agents["a1"]["factors"]}
    assert (
        factors["confidence"]["value"] == 1.0
        and "pulled toward 1" in factors["confidence"]["reason"]
    )
    assert "fleet mean" in factors["drawdown"]["reason"]
    # The same fleet with the switches off (the version before): drawdown and calibration tilt.
    plain = EVIDENCE.model_copy(
        update={"evidence_dd_relative": False, "evidence_confidence_shrink": False}
    )
    old = allocate(stats, as_of=AS_OF, policy=plain, confidence=conf, persistence=_strength(0))
    assert old.weights["a1"] < 0.75 * old.weights["a0"]


def test_a_drawdown_beyond_what_its_volatility_explains_is_cut_even_without_skill():
    dds = [-100.0, -200.0, -300.0, -2000.0, -150.0, -250.0, -50.0, -400.0]
    stats, conf = _noisy_fleet(dds, [1.0] * len(dds))
    d = allocate(stats, as_of=AS_OF, policy=EVIDENCE, confidence=conf, persistence=_strength(0))
    # z = 4 for a3: beyond = 1 − 0.5·(4 − 2.7) = 0.35, below the fleet level (about 0.92).
    beyond = 1 - EVIDENCE.evidence_dd_k * (4.0 - EVIDENCE.evidence_dd_null_z)
    a3 = {f["factor"]: f["value"] for f in d.agents["a3"]["factors"]}
    assert math.isclose(a3["drawdown"], beyond)
    assert d.weights["a3"] < 0.5 * d.weights["a0"]


def test_with_evidence_of_skill_the_agents_own_factors_apply():
    dds = [-100.0, -1000.0, -200.0, -900.0, -300.0, -1100.0, -50.0, -400.0]
    stats, conf = _noisy_fleet(dds, [1.0, 0.6, 0.9, 1.0, 0.7, 1.0, 0.8, 1.0])
    full = allocate(stats, as_of=AS_OF, policy=EVIDENCE, confidence=conf, persistence=_strength(1))
    for name, e in full.agents.items():
        got = {f["factor"]: f["value"] for f in e["factors"]}
        own = {f["factor"]: f["value"] for f in risk_factors(stats[name], None, EVIDENCE)}
        assert got["drawdown"] == own["drawdown"]  # g = 1: exactly the own factor
        assert got["confidence"] == conf[name].multiplier
    assert full.weights["a1"] < full.weights["a0"]


@given(
    st.lists(st.floats(0, 5000), min_size=5, max_size=12),
    st.floats(0, 1),
    st.floats(0.25, 1.0),
)
def test_drawdown_used_is_bounded_and_matches_its_formula(dds, strength, c):
    from meta_supervisor.allocate.inputs import Confidence
    from meta_supervisor.allocate.profiles.evidence import fleet_evidence as fleet_of

    stats = {f"a{i}": _stats(mean=0.0, sd=50.0, n=100, dd=-dd) for i, dd in enumerate(dds)}
    fleet = fleet_of(stats, EVIDENCE, _strength(strength))
    g = min(1.0, fleet.signal_share / EVIDENCE.evidence_risk_strength_ref)
    z = np.array(dds) / 500.0
    k, floor = EVIDENCE.evidence_dd_k, EVIDENCE.evidence_dd_floor
    own = np.clip(1 - k * (z - EVIDENCE.evidence_dd_z0), floor, 1.0)
    beyond = np.clip(1 - k * (z - EVIDENCE.evidence_dd_null_z), floor, 1.0)
    assert math.isclose(fleet.drawdown_level, own.mean())
    expected = g * own + (1 - g) * np.minimum(own.mean(), beyond)
    conf = Confidence(c, 10, 5.0, 1.0)
    for i, name in enumerate(stats):
        got = {f["factor"]: f["value"] for f in risk_factors(stats[name], None, EVIDENCE, fleet)}
        assert math.isclose(got["drawdown"], expected[i], abs_tol=1e-12)
        assert floor <= got["drawdown"] <= 1.0
        q = {f["factor"]: f["value"] for f in quality_factors(stats[name], conf, fleet, EVIDENCE)}
        assert math.isclose(q["confidence"], c + (1 - g) * (1 - c), abs_tol=1e-12)
        assert c <= q["confidence"] <= 1.0


@pytest.mark.parametrize("sd", [1.05e-8, 1.36e-16, 0.0])
def test_identical_pnls_have_no_t_whatever_rounding_noise_their_sd_carries(sd):
    # three records of 0.7 bps: running sums give sd ~1e-8, a two-pass sum ~1e-16; both noise
    assert t_stat({"n_records": 3, "pnl_mean_bps": 0.7, "pnl_std_bps": sd}) is None
    real = t_stat({"n_records": 3, "pnl_mean_bps": 0.7, "pnl_std_bps": 0.01})
    assert real == pytest.approx(0.7 * 3**0.5 / 0.01)
