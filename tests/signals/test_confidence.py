"""confidence.confidence_multipliers: bounds, monotonicity, prior, idempotence, time-awareness."""

from __future__ import annotations

import math
from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import AS_OF, rec, records_frame
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.confidence import (
    confidence_from_ratio,
    confidence_multipliers,
    prior_ratio,
)

POLICY = Policy()

evidence = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.floats(0, 700, allow_nan=False),  # age (h): inside the 720 h window
        st.floats(-300, 300, allow_nan=False),  # gap (bps)
        st.one_of(st.none(), st.floats(1, 50, allow_nan=False)),  # stated sigma
    ),
    min_size=1,
    max_size=30,
)


def _frame(items) -> pl.DataFrame:
    return records_frame([rec(a, age, gap, 0.0, sigma=s) for a, age, gap, s in items])


def _conf(frame: pl.DataFrame, as_of=AS_OF, policy: Policy = POLICY) -> dict[str, float]:
    out = confidence_multipliers(frame, as_of, policy)
    return dict(zip(out["agent"].to_list(), out["confidence"].to_list(), strict=True))


def _plain(items, agent: str, policy: Policy = POLICY, shift_hours: float = 0.0) -> float:
    """The documented formula in plain Python (independent of the polars code)."""
    f, u, tau, w0 = (
        policy.confidence_floor,
        policy.confidence_ceiling,
        policy.confidence_tolerance,
        policy.confidence_prior_weight,
    )
    # z0 solves f + (u − f)·τ/z0 = prior
    z0 = tau * (u - f) / (policy.confidence_prior - f)
    num, den = w0 * z0, w0
    for a, age, gap, sigma in items:
        if a != agent:
            continue
        scale = sigma if sigma is not None and sigma > 0 else policy.sim_error_scale_bps
        weight = 0.5 ** ((age + shift_hours) / policy.confidence_half_life_hours)
        num += weight * abs(gap) / scale
        den += weight
    e = num / den
    return u if e <= tau else f + (u - f) * tau / e


@given(evidence)
def test_formula_matches_plain_python(items):
    got = _conf(_frame(items))
    for agent, value in got.items():
        assert value == pytest.approx(_plain(items, agent), rel=1e-12)


@given(evidence, st.sampled_from([Policy(), Policy(confidence_prior=0.8, confidence_floor=0.3)]))
def test_multiplier_lies_in_floor_ceiling(items, policy):
    for value in _conf(_frame(items), policy=policy).values():
        assert policy.confidence_floor <= value <= policy.confidence_ceiling


@given(evidence, st.data())
def test_non_increasing_in_every_abs_gap(items, data):
    i = data.draw(st.integers(0, len(items) - 1))
    bump = data.draw(st.floats(0.0, 500.0, allow_nan=False))
    agent, age, gap, sigma = items[i]
    worse = list(items)
    worse[i] = (agent, age, math.copysign(abs(gap) + bump, gap), sigma)
    assert _conf(_frame(worse))[agent] <= _conf(_frame(items))[agent] + 1e-15


def test_no_evidence_gives_the_prior_not_the_floor():
    policy = Policy(confidence_prior=0.8)
    # no record of "quiet": it is absent, and the documented mapping gives the prior at z0
    assert "quiet" not in _conf(records_frame([rec("busy", 1, 5.0)]), policy=policy)
    assert confidence_from_ratio(prior_ratio(policy), policy) == pytest.approx(0.8)
    # evidence outside the window is no evidence either
    old = records_frame([rec("a", 10_000, 500.0)])
    assert _conf(old, policy=policy) == {}


def test_records_outside_window_or_horizon_or_future_are_ignored():
    base = [rec("a", 10, 2.0, sigma=5.0)]
    noise = [
        rec("a", -5, 1e6, sigma=5.0),  # not matured yet
        rec("a", 5, 1e6, sigma=5.0, horizon=4),  # another horizon
        rec("a", 721, 1e6, sigma=5.0),  # before the 720 h window
    ]
    assert _conf(records_frame(base + noise)) == _conf(records_frame(base))


@given(evidence)
def test_running_twice_gives_the_same_number(items):
    frame = _frame(items)
    first = confidence_multipliers(frame, AS_OF, POLICY)
    assert first.equals(confidence_multipliers(frame, AS_OF, POLICY))
    assert first.equals(confidence_multipliers(frame.reverse(), AS_OF, POLICY))


@given(evidence, st.floats(1, 2_000, allow_nan=False))
def test_same_records_seen_later_move_toward_the_prior(items, later_hours):
    policy = Policy(confidence_prior=0.8, confidence_lookback_hours=24 * 366)
    frame = _frame(items)
    now = _conf(frame, policy=policy)
    later = _conf(frame, as_of=AS_OF + timedelta(hours=later_hours), policy=policy)
    for agent, value in now.items():
        assert abs(later[agent] - 0.8) <= abs(value - 0.8) + 1e-12
        assert later[agent] == pytest.approx(
            _plain(items, agent, policy, shift_hours=later_hours), rel=1e-12
        )


def test_evidence_weight_counts_age_in_hours_not_in_signals():
    # one bad record 72 h old weighs 0.5 whether 0 or 50 newer records came after it
    alone = records_frame([rec("a", 72, 300.0, sigma=5.0)])
    out = confidence_multipliers(alone, AS_OF, POLICY)
    assert out["evidence_weight"][0] == pytest.approx(0.5)
    crowd = [rec("a", 72, 300.0, sigma=5.0)] + [
        rec("a", 1 + i * 0.1, 0.0, sigma=5.0) for i in range(50)
    ]
    out = confidence_multipliers(records_frame(crowd), AS_OF, POLICY)
    newer = sum(0.5 ** ((1 + i * 0.1) / 72) for i in range(50))
    assert out["evidence_weight"][0] == pytest.approx(0.5 + newer)


def test_calibrated_agent_is_at_ceiling_and_miscalibrated_one_is_pulled_down():
    calibrated = [rec("good", h, 4.0 * (-1) ** h, sigma=5.0) for h in range(1, 60)]
    wild = [rec("wild", h, 60.0 * (-1) ** h, sigma=5.0) for h in range(1, 60)]
    conf = _conf(records_frame(calibrated + wild))
    assert conf["good"] == 1.0
    assert 0.5 <= conf["wild"] < 0.6
