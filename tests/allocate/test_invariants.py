"""Property tests of the decision's invariants over well-formed inputs (DESIGN.md "Invariants").

Every profile is checked: every weight finite and in [0, cap]; Σ ≤ 1 with Python's sum();
cash = 1 − Σ; a worse risk input never raises that agent's weight (with and without a previous
decision); the same inputs give byte-identical JSON; operator overrides hold, expired ones don't.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import AS_OF, fleet_strategies, tails_st
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.inputs import Confidence, Override, Tail
from meta_supervisor.policy.model import Policy, Profile

PROFILES = [Policy(profile=p) for p in Profile]
NAMES = [f"agent{i:02d}" for i in range(10)]
fleet_st, conf_st, previous_st = fleet_strategies(NAMES, max_previous_weight=0.25)


def _decide(policy, stats, conf, tails, previous=None, overrides=()):
    return allocate(
        stats,
        as_of=AS_OF,
        policy=policy,
        confidence={k: Confidence(multiplier=v, n_evidence=10) for k, v in conf.items()},
        tails={
            # a fixed strategy gap scale, so that the evidence profile's tail factor fires
            k: Tail(strategy=k, n=50, gap_cvar95_bps=v, gap_cvar95_used_bps=v, mean_abs_gap=10.0)
            for k, v in tails.items()
        },
        previous=previous,
        overrides=overrides,
    )


def _check_bounds(decision, policy):
    weights = list(decision.weights.values())
    for w in weights:
        assert math.isfinite(w)
        assert 0.0 <= w <= policy.max_weight
    assert sum(weights) <= 1.0
    assert sum(weights) <= policy.gross_cap + 1e-12
    assert decision.cash == pytest.approx(1.0 - sum(weights), abs=1e-12)
    assert decision.cash >= 0.0
    for name, e in decision.agents.items():
        assert e["weight"] == decision.weights.get(name, 0.0)


@pytest.mark.parametrize("policy", PROFILES, ids=lambda p: p.profile.value)
@given(fleet_st, conf_st, tails_st, previous_st)
def test_weights_bounded_and_cash_is_the_rest(policy, stats, conf, tails, previous):
    if previous is not None and sum(previous.values()) > 1:
        previous = {k: v / 4 for k, v in previous.items()}
    _check_bounds(_decide(policy, stats, conf, tails, previous), policy)


@given(fleet_st, conf_st, tails_st, st.floats(0.05, 1.0), st.floats(0.02, 0.5))
def test_bounds_hold_under_tighter_policies(stats, conf, tails, gross_cap, max_weight):
    for base in PROFILES:
        policy = base.model_copy(update={"gross_cap": gross_cap, "max_weight": max_weight})
        _check_bounds(_decide(policy, stats, conf, tails), policy)


def _worsen(kind, amount, name, stats, conf, tails):
    stats = {k: dict(v) for k, v in stats.items()}
    conf, tails = dict(conf), dict(tails)
    s = stats[name]
    if kind == "drawdown":
        s["max_drawdown_bps"] -= amount * 100
    elif kind == "cvar":
        tails[s["strategy"]] = tails.get(s["strategy"], 0.0) - amount * 100
    elif kind == "error_rate":
        s["error_rate"] = min(1.0, s["error_rate"] + amount)
    elif kind == "abs_error":
        s["avg_abs_error_bps"] += amount * 100
    elif kind == "confidence":
        conf[name] = max(0.5, conf.get(name, 1.0) - amount)
    return stats, conf, tails


KINDS = ["drawdown", "cvar", "error_rate", "abs_error", "confidence"]
MONOTONE_CASES = [(p, k) for p in PROFILES for k in KINDS]


@pytest.mark.parametrize(
    ("policy", "kind"), MONOTONE_CASES, ids=[f"{p.profile.value}-{k}" for p, k in MONOTONE_CASES]
)
@settings(max_examples=40)
@given(fleet_st, conf_st, tails_st, previous_st, st.floats(0.0, 1.0), st.data())
def test_worse_risk_input_never_raises_the_weight(
    policy, kind, stats, conf, tails, previous, amount, data
):
    name = data.draw(st.sampled_from(sorted(stats)))
    if previous is not None and sum(previous.values()) > 1:
        previous = {k: v / 4 for k, v in previous.items()}
    before = _decide(policy, stats, conf, tails, previous)
    after = _decide(policy, *_worsen(kind, amount, name, stats, conf, tails), previous)
    assert after.weights.get(name, 0.0) <= before.weights.get(name, 0.0)


@pytest.mark.parametrize("policy", PROFILES, ids=lambda p: p.profile.value)
@given(fleet_st, conf_st, tails_st, previous_st)
def test_same_inputs_give_byte_identical_decision(policy, stats, conf, tails, previous):
    first = _decide(policy, stats, conf, tails, previous).to_json()
    # same content, different insertion order of every mapping
    reordered = {k: dict(reversed(list(v.items()))) for k, v in reversed(list(stats.items()))}
    conf_r = dict(reversed(list(conf.items())))
    tails_r = dict(reversed(list(tails.items())))
    prev_r = None if previous is None else dict(reversed(list(previous.items())))
    assert _decide(policy, reordered, conf_r, tails_r, prev_r).to_json() == first
    assert _decide(policy, stats, conf, tails, previous).to_json() == first


@pytest.mark.parametrize("policy", PROFILES, ids=lambda p: p.profile.value)
@given(fleet_st, conf_st, tails_st, previous_st, st.data())
def test_operator_overrides_respected_and_expired_ignored(
    policy, stats, conf, tails, previous, data
):
    names = sorted(stats)
    excluded = data.draw(st.sampled_from(names))
    capped = data.draw(st.sampled_from(names))
    cap = data.draw(st.floats(0.0, 0.3))
    expired = data.draw(st.sampled_from(names))
    soon = AS_OF + timedelta(minutes=5)
    overrides = [
        Override(excluded, "exclude", "desk", soon),
        Override(capped, "cap", "ramp", soon, cap=cap),
        Override(expired, "exclude", "old", AS_OF - timedelta(minutes=5)),
    ]
    decision = _decide(policy, stats, conf, tails, previous, overrides)
    _check_bounds(decision, policy)
    assert excluded not in decision.weights
    assert decision.weights.get(capped, 0.0) <= cap
    if expired not in (excluded, capped):
        base = _decide(policy, stats, conf, tails, previous, overrides[:2])
        assert decision.weights.get(expired, 0.0) == base.weights.get(expired, 0.0)


def test_evidence_profile_larger_abs_gap_never_raises_the_weight():
    """Regression: the tail was once scaled by the agent's own mean |gap|, so a worse |gap|
    lowered the penalty (weight 0.0625 -> 0.25 here). It is now the strategy's own scale."""
    policy = Policy(profile="evidence")
    base = {
        "pnl_sum_bps": 0.0, "pnl_mean_bps": 0.0, "pnl_std_bps": 1.0, "hit_rate": 0.0,
        "error_rate": 0.0, "max_drawdown_bps": 0.0,
    }  # fmt: skip
    stats = {
        "a": {**base, "avg_abs_error_bps": 0.0, "strategy": "momentum", "n_records": 5},
        "b": {**base, "avg_abs_error_bps": 0.125, "strategy": "basis", "n_records": 5},
    }
    before = _decide(policy, stats, {}, {"basis": -60.0})
    stats["b"] = {**stats["b"], "avg_abs_error_bps": 100.125}
    after = _decide(policy, stats, {}, {"basis": -60.0})
    for decision in (before, after):
        cvar = {f["factor"]: f["value"] for f in decision.agents["b"]["factors"]}["cvar"]
        assert cvar < 1.0  # the tail penalty fires, whatever the agent's |gap|
    assert after.weights.get("b", 0.0) <= before.weights.get("b", 0.0)
