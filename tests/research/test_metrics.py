"""Backtest metrics, each checked against an independent computation."""

from __future__ import annotations

import math
import statistics

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from meta_supervisor.research.metrics import derisk_hours, mean_gross, sharpe, summarize, turnover

pnl_lists = st.lists(
    st.floats(min_value=-500, max_value=500, allow_nan=False, allow_infinity=False),
    min_size=2,
    max_size=60,
)


@given(pnl_lists)
def test_sharpe_matches_the_statistics_module(values):
    sd = statistics.stdev(values)
    expected = 0.0 if sd == 0 else statistics.fmean(values) / sd * math.sqrt(8760 / 6)
    assert math.isclose(sharpe(values, 6.0), expected, rel_tol=1e-9, abs_tol=1e-9)


def test_sharpe_of_a_constant_or_single_period_is_zero():
    assert sharpe([3.0, 3.0, 3.0], 6.0) == 0.0
    assert sharpe([3.0], 6.0) == 0.0


def _brute_drawdown(values):
    path = [0.0]
    for v in values:
        path.append(path[-1] + v)
    worst = 0.0
    for j in range(len(path)):
        for i in range(j):
            worst = min(worst, path[j] - path[i])
    return worst


def _brute_cvar(values, alpha=0.05):
    # Rockafellar–Uryasev: max over t of t − (1/(alpha·n)) Σ (t − x)^+, attained at a sample.
    n = len(values)
    return max(t - sum(max(t - x, 0.0) for x in values) / (alpha * n) for t in values)


@given(pnl_lists)
def test_drawdown_and_cvar_match_brute_force(values):
    m = summarize(values, np.ones((len(values), 1)), 6.0)
    assert math.isclose(m["max_drawdown_bps"], _brute_drawdown(values), abs_tol=1e-6)
    assert math.isclose(m["cvar95_bps"], _brute_cvar(values), rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(m["total_pnl_bps"], math.fsum(values), abs_tol=1e-6)


def test_gross_and_turnover_match_loops():
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 0.2, (9, 4))
    gross = sum(sum(row) for row in w.tolist()) / 9
    turn = (
        sum(sum(abs(a - b) for a, b in zip(w[k], w[k - 1], strict=True)) for k in range(1, 9)) / 8
    )
    assert math.isclose(mean_gross(w), gross, rel_tol=1e-12)
    assert math.isclose(turnover(w), turn, rel_tol=1e-12)
    assert turnover(w[:1]) == 0.0


def test_derisk_hours_counts_from_the_onset_to_the_first_rebalance_under_the_threshold():
    times = np.array([0.0, 6.0, 12.0, 18.0, 24.0])
    w = np.array(
        [
            [0.20, 0.01, 0.10],
            [0.20, 0.01, 0.10],
            [0.20, 0.01, 0.10],
            [0.03, 0.01, 0.10],
            [0.00, 0.01, 0.10],
        ]
    )
    # Agent 0: above 5% at the rebalance before the onset (t=0 ≤ 3), below first at t=18.
    assert derisk_hours(w, times, [(0, 3.0)]) == 18.0 - 3.0
    # Agent 1 was already below 5% when its blow-up began.
    assert derisk_hours(w, times, [(1, 3.0)]) == 0.0
    # Agent 2 never goes below: infinite; the worst over events is reported.
    assert math.isinf(derisk_hours(w, times, [(0, 3.0), (2, 3.0)]))
    assert derisk_hours(w, times, [(0, 3.0), (1, 3.0)]) == 15.0
    assert math.isnan(summarize([1.0, 2.0], w[:2], 6.0)["derisk_hours"])
