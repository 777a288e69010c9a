"""measures: CVaR95 and max drawdown against independent brute forces (DESIGN.md, normative)."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import brute_cvar_ru, brute_drawdown, loop_cvar
from meta_supervisor.signals.measures import cvar, decay_weights, max_drawdown, tail_count

bps = st.floats(-5_000, 5_000, allow_nan=False, allow_infinity=False)
# integers make ties frequent
samples = st.one_of(
    st.lists(bps, min_size=1, max_size=120),
    st.lists(st.integers(-20, 20).map(float), min_size=1, max_size=120),
)


@given(samples)
def test_cvar_equals_rockafellar_uryasev_minimum(values):
    assert cvar(values) == pytest.approx(brute_cvar_ru(values), rel=1e-9, abs=1e-7)


@given(samples)
def test_cvar_equals_the_formula_with_explicit_loops(values):
    assert cvar(values) == pytest.approx(loop_cvar(values), rel=1e-12, abs=1e-9)


@given(samples, st.randoms(use_true_random=False))
def test_cvar_ignores_order(values, rnd):
    shuffled = list(values)
    rnd.shuffle(shuffled)
    assert cvar(shuffled) == cvar(values)


@given(samples, st.integers(2, 5))
def test_cvar_invariant_to_ties_replicating_the_sample(values, times):
    # replicating every value keeps the empirical distribution, so CVaR must not move
    assert cvar(values * times) == pytest.approx(cvar(values), rel=1e-9, abs=1e-7)


@given(st.lists(bps, min_size=1, max_size=19))
def test_cvar_below_one_tail_observation_is_the_worst_value(values):
    assert cvar(values) == min(values)


def test_cvar_of_twenty_values_is_exactly_the_worst():
    values = [float(v) for v in range(-10, 10)]
    assert cvar(values) == -10.0


def test_cvar_of_sixty_values_is_the_mean_of_three_worst():
    # 0.05*60 is 3.0000000000000004 in binary floating point: a naive ceil would take a 4th value
    values = [-30.0, -20.0, -10.0] + [1e9] * 57
    assert cvar(values) == -20.0


def test_tail_count_is_free_of_float_noise():
    for n in range(1, 3001):
        k, m = tail_count(n)
        assert k == float(Fraction(n, 20))
        assert m == math.ceil(Fraction(n, 20))


def test_cvar_fractional_tail_weights_the_boundary_value():
    # n = 30: k = 1.5, m = 2 -> (g1 + 0.5·g2) / 1.5
    values = [-9.0, -3.0] + [100.0] * 28
    assert cvar(values) == pytest.approx((-9.0 + 0.5 * -3.0) / 1.5, rel=1e-15)


def test_cvar_is_signed_and_refuses_empty():
    assert cvar([-50.0] * 40) == -50.0
    assert cvar([7.0] * 40) == 7.0
    with pytest.raises(ValueError, match="empty"):
        cvar([])


@given(st.lists(bps, max_size=80))
def test_max_drawdown_equals_quadratic_brute_force(pnl):
    assert max_drawdown(pnl) == pytest.approx(brute_drawdown(pnl), rel=1e-9, abs=1e-6)


@given(st.lists(bps, max_size=80))
def test_max_drawdown_is_never_positive(pnl):
    assert max_drawdown(pnl) <= 0.0


def test_max_drawdown_path_starts_at_zero():
    # a first loss is a drawdown from the starting capital even with no earlier peak
    assert max_drawdown([-5.0, 1.0]) == -5.0
    assert max_drawdown([]) == 0.0
    assert max_drawdown([1.0, 2.0, 3.0]) == 0.0
    assert max_drawdown([10.0, -4.0, 1.0, -8.0, 20.0]) == -11.0


def test_max_drawdown_depends_on_order():
    assert max_drawdown([5.0, -5.0, 5.0, -5.0]) == -5.0
    assert max_drawdown([5.0, 5.0, -5.0, -5.0]) == -10.0


@given(
    st.lists(st.floats(0, 10_000, allow_nan=False), min_size=1, max_size=30),
    st.floats(0.5, 1_000, allow_nan=False),
)
def test_decay_weights_are_half_life_powers(ages, half_life):
    got = decay_weights(ages, half_life)
    want = [0.5 ** (a / half_life) for a in ages]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


def test_decay_weight_is_one_half_at_one_half_life_and_one_for_future():
    np.testing.assert_array_equal(decay_weights([72.0, 0.0, -3.0], 72.0), [0.5, 1.0, 1.0])


def test_cvar_matches_skfolio_style_reference_on_a_seeded_sample():
    # a second independent route: sort and average the worst k with numpy, k integer (n = 200)
    rng = random.Random(3)
    values = [rng.gauss(0.0, 40.0) for _ in range(200)]
    worst = np.sort(values)[:10]
    assert cvar(values) == pytest.approx(float(worst.mean()), rel=1e-12)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(-500, 500, allow_nan=False)),
        min_size=1,
        max_size=60,
    )
)
def test_the_polars_drawdown_is_the_numpy_one(rows):
    """One formula, two engines: the per-row fall below the running peak (polars, as the stats
    and the engine compute it), minimised per group, equals :func:`max_drawdown` per group."""
    import polars as pl

    from meta_supervisor.signals.measures import below_peak, cumulative_pnl

    frame = pl.DataFrame(rows, schema=["agent", "realized_pnl_bps"], orient="row")
    got = (
        frame.with_columns(below_peak(cumulative_pnl("agent"), "agent").alias("dd"))
        .group_by("agent")
        .agg(pl.col("dd").min())
    )
    for agent, dd in got.iter_rows():
        pnl = [p for a, p in rows if a == agent]
        np.testing.assert_allclose(min(dd, 0.0), max_drawdown(pnl), rtol=1e-12, atol=1e-9)
