"""The contracts of the allocation: the explanation schema, the frozen Decision, the profile
register (the pipeline dispatches through it), and the one gate table."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import AS_OF
from meta_supervisor.allocate import profiles
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.gates import PROFILE_GATES, SAFETY_GATES, eligible_agents
from meta_supervisor.allocate.profiles.base import ProfileFactors, ProfileMethod
from meta_supervisor.allocate.schema import AgentExplanation, Factor, Gate, Portfolio, Steps
from meta_supervisor.policy.model import Policy, Profile


def _stats(n_agents: int, seed: int) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_agents):
        mean = float(rng.normal(1.0, 2.0))
        out[f"a{i}"] = {
            "pnl_sum_bps": mean * 30,
            "pnl_mean_bps": mean,
            "pnl_std_bps": float(rng.uniform(1.0, 10.0)),
            "hit_rate": float(rng.uniform(0.3, 0.7)),
            "error_rate": float(rng.uniform(0.0, 0.3)),
            "avg_abs_error_bps": float(rng.uniform(0.0, 50.0)),
            "max_drawdown_bps": -float(rng.uniform(0.0, 80.0)),
            "n_records": int(rng.integers(1, 40)),
            "strategy": f"s{i % 3}",
        }
    return out


@pytest.mark.parametrize("profile", list(Profile))
@given(n_agents=st.integers(1, 12), seed=st.integers(0, 10_000))
@settings(max_examples=15)
def test_every_explanation_has_exactly_the_schema_keys(profile, n_agents, seed):
    decision = allocate(_stats(n_agents, seed), as_of=AS_OF, policy=Policy(profile=profile))
    assert set(decision.portfolio) == set(Portfolio.__annotations__)
    for e in decision.agents.values():
        assert set(e) == set(AgentExplanation.__annotations__)
        assert set(e["steps"]) == set(Steps.__annotations__)
        assert all(set(g) == set(Gate.__annotations__) for g in e["gates"])
        assert all(set(f) == set(Factor.__annotations__) for f in e["factors"])
        gates = [g["gate"] for g in e["gates"]]
        assert gates == [*SAFETY_GATES, *profiles.PROFILES[profile].gates]


def test_a_decision_is_frozen():
    decision = allocate(_stats(3, 1), as_of=AS_OF)
    with pytest.raises(AttributeError, match="frozen"):
        decision.cash = 0.0  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del decision.weights
    assert decision.agents is decision.agents  # the lazy explanation is built once


def test_every_profile_is_registered_and_its_gates_exist():
    assert set(profiles.PROFILES) == set(Profile)
    for profile, method in profiles.PROFILES.items():
        assert method.profile is profile and method.method
        assert set(method.gates) <= set(PROFILE_GATES)
        # the texts read the factors' roles from the register: every shown factor has one
        roles = set(method.quality_factors) | set(method.risk_factors)
        assert not set(method.quality_factors) & set(method.risk_factors)
        assert set(method.shown_factors) <= roles


def test_the_pipeline_dispatches_through_the_register(monkeypatch):
    """A profile is one registered method: replacing the register entry changes the decision
    with no edit to the pipeline (here: a method that gives every agent the same quality)."""

    def flat(f, conf, policy, persistence=None):
        n = len(f.names)
        return ProfileFactors({"flat": np.ones(n)}, np.ones(n), np.ones(n), None, {})

    def words(table, i, held, tail, strategy):
        return [{"factor": "flat", "value": 1.0, "reason": "every agent alike"}]

    method = ProfileMethod(
        Profile.SEED,
        flat,
        words,
        "flat weights, for the test",
        quality_factors=("flat",),
        risk_factors=(),
        shown_factors=("flat",),
    )
    monkeypatch.setitem(profiles.PROFILES, Profile.SEED, method)
    stats = {f"a{i}": {"pnl_sum_bps": 10.0 * (i + 1), "n_records": 10} for i in range(5)}
    decision = allocate(stats, as_of=AS_OF, policy=Policy(profile=Profile.SEED))
    assert decision.weights == dict.fromkeys(stats, 0.2)
    assert decision.agents["a0"]["factors"][0]["reason"] == "every agent alike"


def test_baselines_and_profiles_read_one_gate_table():
    stats = _stats(20, 3)
    stats["a0"]["decision"] = "KILL"
    stats["a1"]["hit_rate"] = 1.5  # unusable number
    stats["a2"]["error_rate"] = 0.9
    policy = Policy()
    decision = allocate(stats, as_of=AS_OF, policy=policy)
    passed = {
        name
        for name, e in decision.agents.items()
        if all(g["passed"] for g in e["gates"] if g["gate"] in SAFETY_GATES)
    }
    assert set(eligible_agents(stats, policy)) == passed
    assert {"a0", "a1", "a2"}.isdisjoint(passed)


@pytest.mark.parametrize("profile", list(Profile))
def test_notes_speak_only_of_inputs_the_profile_reads(profile):
    """Regression (newcomer review): under the evidence profile an agent's notes said the hit
    rate fell back to the seed's default and no sim-integrity penalty applied; neither input is
    read there."""
    stats = {"a": {"pnl_sum_bps": 50.0, "pnl_mean_bps": 1.0, "pnl_std_bps": 3.0, "n_records": 20}}
    decision = allocate(stats, as_of=AS_OF, policy=Policy(profile=profile))
    notes = " ".join(decision.agents["a"]["notes"])
    factors = {f["factor"] for f in decision.agents["a"]["factors"]}
    assert ("hit_rate not reported" in notes) == ("hit_rate" in factors)
    assert ("avg_abs_error_bps not reported" in notes) == ("sim_integrity" in factors)
    assert "error_rate not reported" in notes  # the gate's fallback, whatever the profile
