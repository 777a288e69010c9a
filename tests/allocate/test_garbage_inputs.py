"""The allocation's invariants (DESIGN.md) over arbitrary, hostile stats dicts.

Whatever the stats hold (NaN, inf, negative counts, huge numbers, strings, None, lists, bools,
missing keys, odd agent names, no agents, 10,000 agents), ``allocate`` and the seed's
``compute_weights`` never raise; every weight is finite in ``[0, cap]``; ``sum(weights) <= 1``
with Python's own ``sum``; ``cash = 1 - sum``; the decision is strict JSON (no NaN/Infinity).
Monotonicity: worsening one agent's drawdown, its strategy's CVaR, its error rate or its |gap|
never raises its weight.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meta_supervisor import allocation, config
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.policy.model import Policy

AS_OF = datetime(2026, 1, 15, tzinfo=UTC)
KEYS = [
    "pnl_sum_bps",
    "hit_rate",
    "error_rate",
    "avg_abs_error_bps",
    "max_drawdown_bps",
    "n_records",
    "strategy",
    "decision",
]
scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 0.0, -1]),
    st.sampled_from([10**400, -(10**400)]),  # beyond a float (issue #13)
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.none(),
    st.booleans(),
    st.sampled_from(["KILL", "kill ", "keep", "NaN", "inf", " 12.5 "]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.dictionaries(st.text(max_size=3), scalars, max_size=2),
)
stats_dicts = st.dictionaries(
    st.one_of(st.sampled_from(KEYS), st.text(max_size=5)), values, max_size=9
)
fleets = st.dictionaries(st.text(max_size=12), stats_dicts, max_size=8)


def _no_constants(token):
    raise AssertionError(f"non-finite token {token} in the decision JSON")


def check_weights(weights, cap):
    for name, w in weights.items():
        assert isinstance(w, float) and math.isfinite(w), (name, w)
        assert 0.0 <= w <= cap, (name, w)
    assert sum(weights.values()) <= 1.0


def check_decision(decision, agent_stats, cap=0.25):
    check_weights(decision.weights, cap)
    total = sum(decision.weights.values())
    assert decision.cash == pytest.approx(1.0 - total, abs=1e-12) and decision.cash >= 0.0
    assert set(decision.agents) == {str(k) for k in agent_stats}
    parsed = json.loads(decision.to_json(), parse_constant=_no_constants)
    assert parsed["weights"] == decision.weights
    for name, weight in decision.weights.items():
        explanation = decision.agents[name]
        assert weight == 0.0 or all(g["passed"] for g in explanation["gates"]), name


@given(fleets)
def test_allocate_survives_any_stats(agent_stats):
    check_decision(allocate(agent_stats, as_of=AS_OF), agent_stats)


@given(fleets, st.dictionaries(st.text(max_size=12), st.floats(0, 1), max_size=8))
def test_allocate_survives_any_stats_with_previous_weights(agent_stats, previous):
    check_decision(allocate(agent_stats, as_of=AS_OF, previous=previous), agent_stats)


@pytest.fixture(scope="module")
def seed_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("seed")
    config.configure(
        records=root / "none.jsonl", telemetry=root / "none-t.jsonl", state_dir=root / "state"
    )
    yield root
    config.reset()


@given(
    st.dictionaries(
        st.one_of(st.text(max_size=8), st.integers()), st.one_of(stats_dicts, scalars), max_size=6
    )
)
def test_compute_weights_survives_any_stats(seed_paths, agent_stats):
    check_weights(allocation.compute_weights(agent_stats), Policy().max_weight)


def test_no_agents_and_one_agent():
    empty = allocate({}, as_of=AS_OF)
    assert empty.weights == {} and empty.cash == 1.0
    one = allocate({"solo": {"pnl_sum_bps": 100.0, "hit_rate": 0.6}}, as_of=AS_OF)
    assert one.weights == {"solo": 0.25}  # capped; the rest is cash
    check_decision(one, {"solo": {}})


def test_ten_thousand_agents():
    agent_stats = {
        f"agent-{i:05d}": {
            "pnl_sum_bps": [float("nan"), -5.0, 10.0 + i % 97, "12", None][i % 5],
            "hit_rate": (i % 11) / 10,
            "error_rate": (i % 7) / 30,
            "max_drawdown_bps": -float(i % 50),
            "strategy": f"s{i % 13}",
        }
        for i in range(10_000)
    }
    decision = allocate(agent_stats, as_of=AS_OF)
    check_decision(decision, agent_stats)
    assert len(decision.weights) > 1000


# ---------------------------------------------------------------- monotonicity

sane = st.fixed_dictionaries(
    {
        "pnl_sum_bps": st.floats(-50, 2000),
        "hit_rate": st.floats(0, 1),
        "error_rate": st.floats(0, 0.3),
        "avg_abs_error_bps": st.floats(0, 300),
        "max_drawdown_bps": st.floats(-300, 0),
        "strategy": st.sampled_from(["a", "b", "c"]),
    }
)


@given(
    st.lists(sane, min_size=1, max_size=7),
    st.data(),
    st.sampled_from(["max_drawdown_bps", "cvar", "error_rate", "avg_abs_error_bps"]),
    st.floats(0.001, 500),
    st.booleans(),
)
def test_worse_risk_input_never_raises_the_weight(rows, data, what, delta, with_previous):
    names = [f"a{i}" for i in range(len(rows))]
    stats = dict(zip(names, rows, strict=True))
    target = data.draw(st.sampled_from(names))
    cvars = data.draw(st.fixed_dictionaries({s: st.floats(-100, 0) for s in "abc"}))
    confidence = {n: Confidence(data.draw(st.floats(0.5, 1.0))) for n in names}
    previous = {n: data.draw(st.floats(0, 0.25)) for n in names} if with_previous else None

    def weight(stats, cvars):
        tails = {s: Tail(s, 30, v, v) for s, v in cvars.items()}
        decision = allocate(
            stats, as_of=AS_OF, confidence=confidence, tails=tails, previous=previous
        )
        return decision.agents[target]["weight"]

    before = weight(stats, cvars)
    worse = {n: dict(s) for n, s in stats.items()}
    worse_cvars = dict(cvars)
    if what == "cvar":
        worse_cvars[stats[target]["strategy"]] -= delta
    elif what == "max_drawdown_bps":
        worse[target][what] -= delta
    elif what == "error_rate":
        worse[target][what] = min(1.0, worse[target][what] + delta)
    else:
        worse[target][what] += delta
    assert weight(worse, worse_cvars) <= before


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 50.0])
@pytest.mark.parametrize("profile", ["seed", "evidence"])
def test_an_unusable_confidence_gates_that_agent_not_the_fleet(bad, profile):
    """Regression (review): one NaN confidence multiplier made the total quality NaN and put the
    whole fleet in cash with no gate named; 50 raised that agent's weight under the seed
    profile. It is an unusable number: that agent is gated, with the reason."""
    stats = {
        f"a{i}": {
            "pnl_sum_bps": 100.0,
            "pnl_mean_bps": 2.0,
            "pnl_std_bps": 5.0,
            "hit_rate": 0.6,
            "n_records": 30,
            "strategy": "s",
        }
        for i in range(6)
    }
    policy = Policy(profile=profile)
    decision = allocate(
        stats, as_of=AS_OF, policy=policy, confidence={"a0": Confidence(multiplier=bad)}
    )
    assert "a0" not in decision.weights
    assert set(decision.weights) == {f"a{i}" for i in range(1, 6)}
    gate = next(g for g in decision.agents["a0"]["gates"] if g["gate"] == "usable_numbers")
    assert not gate["passed"] and "confidence multiplier" in gate["detail"]
