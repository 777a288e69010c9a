"""exact.ExactSums: order-free sums where a removal takes back exactly what it added.

Checked against an independent computation: Python's exact rational arithmetic
(``fractions.Fraction`` of every float) for the digits, and ``math.fsum`` (correctly rounded)
for the value.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meta_supervisor.signals.exact import ExactSums, digits

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
# most values in the range bps take, some anywhere in float64
value_st = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), finite)
rows_st = st.lists(st.tuples(st.integers(0, 3), value_st), max_size=40)


def _sums(rows: list[tuple[int, float]]) -> ExactSums:
    sums = ExactSums(4)
    if rows:
        codes, values = zip(*rows, strict=True)
        sums.add(np.array(codes), np.array(values))
    return sums


@given(st.lists(finite, min_size=1, max_size=30))
def test_digits_are_exact_integers_within_their_bound(values):
    x = np.array(values)
    parts = digits(x)
    for i, value in enumerate(values):
        total = sum(Fraction(float(d[i])) * Fraction(2) ** (24 * k) for k, d in parts)
        if abs(value) >= 2.0**-900 or value == 0.0:
            assert total == Fraction(value)
    for _, d in parts:
        assert (d == np.rint(d)).all() and (np.abs(d) < 2**24).all()


@given(rows_st, st.randoms(use_true_random=False))
def test_the_sum_does_not_depend_on_the_order(rows, rnd):
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    # and in another batching: one row at a time
    one_by_one = ExactSums(4)
    for code, value in shuffled:
        one_by_one.add(np.array([code]), np.array([value]))
    assert _sums(rows).value().tobytes() == one_by_one.value().tobytes()


@given(rows_st, rows_st)
@example([(0, 5e-324)], [(0, 1.0)])  # a subnormal alone kept a digit below the lowest level
def test_a_removal_takes_back_exactly_what_the_addition_put_in(rows, others):
    with_others = _sums(rows + others)
    if others:
        codes, values = zip(*others, strict=True)
        with_others.add(np.array(codes), np.array(values), -1)
    assert with_others.value().tobytes() == _sums(rows).value().tobytes()


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(-1e12, 1e12, allow_nan=False)), max_size=60))
@settings(max_examples=200)
def test_the_value_is_the_exact_sum_within_a_few_ulps(rows):
    got = _sums(rows).value()
    for group in range(4):
        exact = math.fsum(v for c, v in rows if c == group)
        assert abs(got[group] - exact) <= 4 * math.ulp(exact) + 2.0**-900


def test_non_finite_values_make_the_sum_non_finite_as_ieee_addition_would():
    sums = ExactSums(4)
    sums.add(np.array([0, 0, 1, 1, 2, 3]), np.array([np.inf, 1.0, np.inf, -np.inf, np.nan, 2.0]))
    got = sums.value()
    assert got[0] == np.inf and np.isnan(got[1]) and np.isnan(got[2]) and got[3] == 2.0
    sums.add(np.array([0]), np.array([np.inf]), -1)
    assert sums.value()[0] == 1.0


@given(rows_st)
def test_the_state_round_trips_through_its_arrays(rows):
    sums = _sums(rows)
    again = ExactSums.from_arrays(sums.to_arrays("x"), "x", 4)
    assert again.value().tobytes() == sums.value().tobytes()


@given(rows_st, st.integers(-3, 3))
def test_a_shift_is_the_sums_of_the_values_times_a_power_of_two_to_the_bit(rows, levels):
    """Moving the confidence anchor shifts the sums by whole 24-bit levels: exactly the sums
    the scaled values would have given (values that stay above 2^-900 when scaled)."""
    rows = [(c, v) for c, v in rows if v == 0.0 or 2.0**-900 < abs(v) < 2.0**900]
    shifted = _sums(rows)
    shifted.shift(levels)
    scaled = _sums([(c, math.ldexp(v, 24 * levels)) for c, v in rows])
    assert shifted.value().tobytes() == scaled.value().tobytes()
