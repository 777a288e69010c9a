"""tails.strategy_tails: the vectorised CVaR95 of the gap equals measures.cvar per strategy."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import AS_OF, loop_cvar, rec, records_frame
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.measures import cvar
from meta_supervisor.signals.tails import strategy_tails

POLICY = Policy(cvar_min_samples=20, cvar_prior_bps=-10.0)

gap_rows = st.lists(
    st.tuples(
        st.sampled_from(["perp_funding", "basis", "momentum"]),
        st.one_of(st.integers(-30, 30).map(float), st.floats(-500, 500, allow_nan=False)),
    ),
    min_size=1,
    max_size=90,
)


def _tails(frame, policy: Policy = POLICY, **kw) -> dict[str, dict]:
    out = strategy_tails(frame, AS_OF, policy, **kw)
    return {row["strategy"]: row for row in out.iter_rows(named=True)}


@given(gap_rows)
def test_vectorised_tail_equals_measures_cvar_per_strategy(rows):
    frame = records_frame(
        [rec(f"agent{i % 4}", 1 + i, gap, 0.0, strategy=s) for i, (s, gap) in enumerate(rows)]
    )
    got = _tails(frame)
    by_strategy: dict[str, list[float]] = {}
    for s, gap in rows:
        by_strategy.setdefault(s, []).append(gap)
    assert set(got) == set(by_strategy)
    for s, gaps in by_strategy.items():
        row = got[s]
        raw = cvar(gaps)
        assert row["n"] == len(gaps)
        assert row["gap_cvar95_bps"] == pytest.approx(raw, rel=1e-12, abs=1e-9)
        assert row["gap_cvar95_bps"] == pytest.approx(loop_cvar(gaps), rel=1e-12, abs=1e-9)
        assert row["worst_gap"] == min(gaps)
        assert row["mean_gap"] == pytest.approx(sum(gaps) / len(gaps), abs=1e-9)
        n_min = POLICY.cvar_min_samples
        if len(gaps) < n_min:
            lam = len(gaps) / n_min
            want = lam * raw + (1 - lam) * POLICY.cvar_prior_bps
            assert row["shrunk"] is True
            assert row["gap_cvar95_used_bps"] == pytest.approx(want, rel=1e-12, abs=1e-9)
        else:
            assert row["shrunk"] is False
            assert row["gap_cvar95_used_bps"] == row["gap_cvar95_bps"]


@given(gap_rows)
def test_tails_do_not_depend_on_file_order(rows):
    frame = records_frame([rec("a", 1 + i, g, 0.0, strategy=s) for i, (s, g) in enumerate(rows)])
    assert strategy_tails(frame, AS_OF, POLICY).equals(
        strategy_tails(frame.reverse(), AS_OF, POLICY)
    )


def test_three_samples_are_shrunk_but_the_raw_value_is_reported():
    frame = records_frame([rec("a", h, -100.0, 0.0, strategy="basis") for h in (1, 2, 3)])
    row = _tails(frame, Policy())["basis"]
    assert row["gap_cvar95_bps"] == -100.0  # raw, as the seed reports it
    assert row["shrunk"] is True
    assert row["gap_cvar95_used_bps"] == pytest.approx(-100.0 * 3 / 20)  # prior 0


def test_window_and_horizon_filtering():
    policy = Policy(cvar_lookback_hours=100.0)
    rows = [
        rec("a", 0, -1.0),  # matured at as_of: in
        rec("a", 99, -2.0),  # in
        rec("a", 100, -1000.0),  # exactly at as_of - lookback: out
        rec("a", -1, -2000.0),  # future: out
        rec("a", 5, -3000.0, horizon=4),  # other horizon: out at 24, alone at 4
    ]
    got = _tails(records_frame(rows), policy)["momentum"]
    assert got["n"] == 2
    assert got["worst_gap"] == -2.0
    at_four = _tails(records_frame(rows), policy, horizon_hours=4)["momentum"]
    assert at_four["n"] == 1
    assert at_four["gap_cvar95_bps"] == -3000.0


def test_grouped_by_the_record_strategy_not_the_agent_name():
    rows = [rec("perp_funding_bot", h, -50.0, strategy="basis_trade") for h in range(1, 30)]
    got = _tails(records_frame(rows))
    assert set(got) == {"basis_trade"}


exact_rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from(["perp_funding", "basis", "momentum"])),
        st.one_of(
            st.sampled_from([0.0, -0.0, 1e-300, -1e-300]),
            st.integers(-30, 30).map(float),
            st.floats(-500, 500, allow_nan=False),
        ),
        st.integers(0, 30),  # matured hours before as_of (some outside the window)
    ),
    max_size=150,
)


@given(exact_rows, st.sampled_from([0.05, 0.1, 0.5]))
def test_numpy_tails_equal_the_polars_reference_bit_for_bit(rows, alpha):
    """strategy_tails (per strategy, NumPy) = strategy_tails_reference (one polars query), every
    column exactly, zeros' signs, a null strategy and an empty window included."""
    from polars.testing import assert_frame_equal

    from meta_supervisor.signals.tails import strategy_tails_reference

    policy = Policy(cvar_min_samples=20, cvar_prior_bps=-10.0, cvar_lookback_hours=24.0)
    frame = records_frame(
        [rec(f"agent{i % 4}", 1 + i, gap, 0.0, strategy=s) for i, (s, gap, _) in enumerate(rows)]
    )
    if rows:
        hours = [h for _, _, h in rows]
        frame = frame.with_columns(
            (pl.lit(AS_OF) - pl.duration(hours=pl.Series(hours))).alias("matured_at")
        )
    got = strategy_tails(frame, AS_OF, policy, alpha=alpha)
    want = strategy_tails_reference(frame, AS_OF, policy, alpha=alpha)
    assert_frame_equal(got, want, check_exact=True)
    for a, b in zip(got.iter_rows(), want.iter_rows(), strict=True):
        assert repr(a) == repr(b)  # -0.0 and 0.0 apart
