"""allocate (seed profile): the formula recomputed independently, explanations, overrides."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import AS_OF, brute_water_fill
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.inputs import Confidence, Override, Tail
from meta_supervisor.policy.model import Policy, Profile

SEED = Policy(profile=Profile.SEED)


def seed_profile_weights(
    stats: dict[str, dict],
    confidence: dict[str, float],
    tails: dict[str, float],
    policy: Policy = SEED,
) -> dict[str, float]:
    """The seed profile from its documented steps, in plain Python (no code from the package)."""
    quality: dict[str, float] = {}
    risk: dict[str, float] = {}
    for name, s in stats.items():
        pnl = s["pnl_sum_bps"]
        gated = (
            s.get("error_rate", 0.0) > 0.15
            or pnl <= 1e-6  # documented: within 1e-6 bps of 0 is 0 (summation order)
            or s.get("n_records", math.inf) < policy.min_records
            or s.get("decision") == "KILL"
        )
        conf = confidence.get(name, policy.confidence_prior)
        q = math.sqrt(max(pnl, 0.0)) * (0.6 + s.get("hit_rate", 0.0)) * conf
        q *= 1.0 / (1.0 + s["avg_abs_error_bps"] / 75.0)
        quality[name] = 0.0 if gated else q
        cvar = tails.get(s["strategy"], 0.0)
        dd = -abs(s.get("max_drawdown_bps", 0.0))
        risk[name] = (max(0.25, 1 + 0.015 * cvar) if cvar < 0 else 1.0) * (
            max(0.4, 1 + 0.01 * dd) if dd < 0 else 1.0
        )
    total = math.fsum(quality.values())
    if total <= 0:
        return {}
    names = sorted(stats)
    capped = brute_water_fill([quality[n] / total for n in names], policy.max_weight)
    weights = {}
    for name, share in zip(names, capped, strict=True):
        w = math.floor(share * risk[name] * 1e6 + 1e-9) / 1e6
        if w > 0:
            weights[name] = w
    return weights


def _run(stats, confidence=None, tails=None, **kw):
    conf = {k: Confidence(multiplier=v) for k, v in (confidence or {}).items()}
    tail = {
        k: Tail(strategy=k, n=100, gap_cvar95_bps=v, gap_cvar95_used_bps=v)
        for k, v in (tails or {}).items()
    }
    return allocate(
        stats, as_of=AS_OF, policy=kw.pop("policy", SEED), confidence=conf, tails=tail, **kw
    )


def _agent(pnl, hit=0.55, err=0.02, abs_err=20.0, strategy="momentum", dd=-10.0, n=50):
    return {
        "pnl_sum_bps": pnl,
        "hit_rate": hit,
        "error_rate": err,
        "avg_abs_error_bps": abs_err,
        "strategy": strategy,
        "max_drawdown_bps": dd,
        "n_records": n,
    }


FLEETS = {
    "seed_cap_example": (
        {n: _agent(p, dd=0.0) for n, p in zip("abcd", [3600, 400, 100, 100], strict=True)},
        {},
        {},
    ),
    "mixed_risk": (
        {
            "a": _agent(900, strategy="perp_funding", dd=-35.0),
            "b": _agent(400, hit=0.7, strategy="basis"),
            "c": _agent(250, err=0.3),  # gated
            "d": _agent(-20),  # gated
            "e": _agent(600, abs_err=150.0, dd=-80.0, strategy="perp_funding"),
            "f": _agent(100, n=2),  # gated: too few records
            "g": _agent(300, hit=0.4, dd=12.0),  # positive drawdown read as magnitude
        },
        {"a": 0.9, "e": 0.55},
        {"perp_funding": -22.0, "basis": -3.0},
    ),
    "many_small": (
        {f"x{i:02d}": _agent(50 + 37 * i, hit=0.3 + i / 50, dd=-i) for i in range(15)},
        {f"x{i:02d}": 0.5 + i / 30 for i in range(15)},
        {"momentum": -8.0},
    ),
}


@pytest.mark.parametrize("fleet", sorted(FLEETS))
def test_seed_profile_matches_independent_recomputation(fleet):
    stats, conf, tails = FLEETS[fleet]
    decision = _run(stats, conf, tails)
    want = seed_profile_weights(stats, conf, tails)
    assert set(decision.weights) == set(want)
    for name, w in want.items():
        assert decision.weights[name] == pytest.approx(w, abs=1.5e-6)


agent_st = st.builds(
    _agent,
    pnl=st.floats(-100, 5_000, allow_nan=False),
    hit=st.floats(0, 1),
    err=st.floats(0, 0.3),
    abs_err=st.floats(0, 300),
    strategy=st.sampled_from(["s1", "s2", "s3"]),
    dd=st.floats(-200, 50),
    n=st.integers(0, 100),
)


@given(
    st.dictionaries(st.sampled_from([f"a{i}" for i in range(12)]), agent_st, max_size=12),
    st.dictionaries(st.sampled_from(["s1", "s2", "s3"]), st.floats(-120, 5), max_size=3),
)
def test_seed_profile_matches_recomputation_on_random_fleets(stats, tails):
    decision = _run(stats, {}, tails)
    want = seed_profile_weights(stats, {}, tails)
    for name in stats:
        assert decision.weights.get(name, 0.0) == pytest.approx(want.get(name, 0.0), abs=1.5e-6)


def test_risk_pulls_capital_back_to_cash_not_to_the_others():
    stats = {"a": _agent(400, dd=0.0), "b": _agent(400, dd=0.0, strategy="bad")}
    calm = _run(stats)
    hit = _run(stats, tails={"bad": -30.0})
    assert hit.weights["a"] == calm.weights["a"]
    assert hit.weights["b"] == pytest.approx(calm.weights["b"] * 0.55, abs=1e-6)
    assert hit.cash > calm.cash


def test_explanation_carries_inputs_gates_factors_and_steps():
    stats, conf, tails = FLEETS["mixed_risk"]
    decision = _run(stats, conf, tails)
    e = decision.agents["a"]
    assert e["inputs"]["pnl_sum_bps"] == 900.0
    assert {g["gate"] for g in e["gates"]} >= {"error_rate", "positive_pnl", "min_records", "kill"}
    factors = {f["factor"]: f for f in e["factors"]}
    assert factors["cvar"]["value"] == pytest.approx(1 - 0.015 * 22)
    assert factors["drawdown"]["value"] == pytest.approx(0.65)
    assert factors["confidence"]["value"] == 0.9
    assert all(f["reason"] for f in e["factors"])
    assert e["steps"]["final"] == decision.weights["a"]
    assert "drawdown x0.65" in e["summary"]
    gated = decision.agents["c"]
    assert gated["weight"] == 0.0
    assert gated["summary"].startswith("gated by error_rate")
    assert decision.agents["f"]["summary"].startswith("gated by min_records")
    assert decision.agents["d"]["summary"].startswith("gated by positive_pnl")
    assert decision.portfolio["cash"] == decision.cash
    assert "held back" in decision.portfolio["reason"]


def test_missing_optional_keys_do_not_gate():
    decision = _run({"bare": {"pnl_sum_bps": 100.0}, "other": {"pnl_sum_bps": 100.0}})
    assert decision.weights == {"bare": 0.25, "other": 0.25}
    factors = {f["factor"]: f["value"] for f in decision.agents["bare"]["factors"]}
    assert factors["sim_integrity"] == 1.0  # not the seed's silent 999


def test_operator_exclusion_and_cap_respected_expired_ignored():
    stats = {n: _agent(400 + 10 * i) for i, n in enumerate("abcdef")}
    later = AS_OF + timedelta(hours=1)
    earlier = AS_OF - timedelta(seconds=1)
    overrides = [
        Override("a", "exclude", "venue outage", later),
        Override("b", "cap", "new agent", later, cap=0.05),
        Override("c", "exclude", "expired", earlier),
        Override("d", "cap", "expired", AS_OF, cap=0.0001),  # expires exactly now: inactive
    ]
    decision = _run(stats, overrides=overrides)
    assert "a" not in decision.weights
    assert decision.agents["a"]["summary"].startswith("gated by operator_exclusion")
    assert "venue outage" in decision.agents["a"]["summary"]
    assert decision.weights["b"] <= 0.05
    assert decision.weights["c"] > 0.1
    assert decision.weights["d"] > 0.1


def test_exclusion_is_not_shadowed_by_a_later_cap_on_the_same_agent():
    stats = {n: _agent(400) for n in "abcde"}
    overrides = [
        Override("a", "exclude", "kill switch", AS_OF + timedelta(hours=1)),
        Override("a", "cap", "ramp-up", AS_OF + timedelta(days=7), cap=0.1),
    ]
    decision = _run(stats, overrides=overrides)
    assert "a" not in decision.weights


def test_tighter_of_two_caps_applies():
    stats = {n: _agent(400) for n in "abcde"}
    overrides = [
        Override("a", "cap", "desk", AS_OF + timedelta(hours=1), cap=0.02),
        Override("a", "cap", "ramp-up", AS_OF + timedelta(days=7), cap=0.1),
    ]
    assert _run(stats, overrides=overrides).weights["a"] <= 0.02
