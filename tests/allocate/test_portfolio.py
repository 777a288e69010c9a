"""portfolio: water-filling cap, gross cap, stability step, rounding down."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import brute_water_fill
from meta_supervisor.allocate.portfolio import (
    apply_gross_cap,
    cap_water_fill,
    in_band,
    round_down,
    smooth,
)

weights_st = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=25)
caps = st.sampled_from([0.05, 0.1, 0.25, 0.3, 0.5, 1.0])


def _normalised(values: list[float]) -> np.ndarray:
    w = np.asarray(values, dtype=np.float64)
    total = w.sum()
    return w / total if total > 0 else w


@given(weights_st, caps)
def test_water_fill_matches_iterative_brute_force(values, cap):
    w = _normalised(values)
    np.testing.assert_allclose(cap_water_fill(w, cap), brute_water_fill(w, cap), atol=1e-12)


@given(weights_st, caps)
def test_water_fill_properties(values, cap):
    w = _normalised(values)
    out = cap_water_fill(w, cap)
    assert np.all(out <= cap + 1e-15)
    assert np.all(out >= 0)
    n_positive = int(np.count_nonzero(w > 0))
    if n_positive * cap >= w.sum():
        # feasible: the total is preserved
        assert out.sum() == pytest.approx(w.sum(), abs=1e-12)
    else:
        # everyone capped: the excess is cash
        np.testing.assert_allclose(out[w > 0], cap)
    # ranking never inverts
    order = np.argsort(w, kind="stable")
    assert np.all(np.diff(out[order]) >= -1e-15)
    # nobody receives weight out of nothing, nobody is cut unless capped
    assert np.all(out[w == 0] == 0)
    assert np.all((out >= w - 1e-15) | (np.abs(out - cap) <= 1e-15))


def test_water_fill_of_seed_example_3600_400_100_100():
    q = np.sqrt([3600.0, 400.0, 100.0, 100.0])
    out = cap_water_fill(q / q.sum(), 0.25)
    # all four end at the cap: the total 1 is feasible only as 4 x 0.25
    np.testing.assert_allclose(out, [0.25] * 4)
    five = np.sqrt([3600.0, 400.0, 100.0, 100.0, 25.0])
    out = cap_water_fill(five / five.sum(), 0.25)
    assert out.max() <= 0.25
    assert out.sum() == pytest.approx(1.0)
    assert list(np.argsort(-out, kind="stable")) == [0, 1, 2, 3, 4]


@given(weights_st, st.floats(0.05, 1.0))
def test_gross_cap_scales_down_never_up(values, gross):
    w = _normalised(values) * 0.9
    out = apply_gross_cap(w, gross)
    assert out.sum() <= max(gross, 0) + 1e-12 or out.sum() == pytest.approx(w.sum())
    assert out.sum() <= w.sum() + 1e-15
    assert np.all(out <= w + 1e-15)
    if w.sum() <= gross:
        np.testing.assert_array_equal(out, w)


@given(
    st.lists(st.tuples(st.floats(0, 0.3), st.floats(0, 0.3)), min_size=1, max_size=10),
    st.floats(0.001, 0.2),
    st.floats(0.0, 0.01),
    st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_smooth_derisks_at_once_and_rerisks_slowly(pairs, max_increase, band, relative):
    target = np.array([t for t, _ in pairs])
    previous = np.array([p for _, p in pairs])
    out = smooth(target, previous, max_increase, band, relative)
    for t, p, o in zip(target, previous, out, strict=True):
        small = relative is None or abs(t - p) < relative * max(t, p)
        if abs(t - p) < band and t > 0 and small:
            assert o == p  # inside the no-trade band: no move
        elif t <= p:
            assert o == t  # decrease: at once
        else:
            assert o == min(t, p + max_increase)  # increase: limited
    # a gated agent (target 0) always goes to 0
    assert smooth(np.array([0.0]), np.array([0.001]), 0.05, 0.01)[0] == 0.0


@given(st.lists(st.floats(0.0, 0.25), min_size=1, max_size=40), st.integers(2, 9))
def test_round_down_never_exceeds_and_loses_less_than_a_unit(values, decimals):
    w = np.asarray(values)
    if w.sum() > 1:
        w = w / w.sum()
    out = round_down(w, decimals)
    assert sum(out.tolist()) <= 1.0
    assert np.all(out <= w + 1e-9)
    assert np.all(out >= w - 10.0**-decimals - 1e-12)


@given(
    st.integers(2, 5000),
    st.floats(0.0, 0.01),
    st.floats(0.0, 1.0, exclude_max=True),
)
def test_the_relative_band_never_keeps_an_agent_out(n, band, relative):
    """From all-zero weights every positive target is entered, however many agents share the
    capital (the absolute band alone held 1,000 agents at 0.1% each at 0 for ever)."""
    target = np.full(n, 1.0 / n)
    out = smooth(target, np.zeros(n), 1.0, band, relative)
    np.testing.assert_array_equal(out, target)
    assert np.all(~in_band(target, np.zeros(n), band, relative))
    if 1.0 / n < band:  # the case the absolute band got wrong
        assert np.all(in_band(target, np.zeros(n), band))
