"""Learned rule selection (signals/selection.py) and the broken-agent test (signals/broken.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import brute_earlier_scale
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.broken import (
    MAX_SCALE_RECORDS,
    loss_run_z,
)
from meta_supervisor.signals.selection import (
    MIN_LAGS,
    RULES,
    RuleSelection,
    rule_selection,
    rule_weights,
    selection_anchor,
    window_rows,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _fleet(days: int, skill: float, seed: int = 0) -> pl.DataFrame:
    """Daily records of 12 agents; agents 0-3 have a persistent edge of ``skill`` bps."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(days):
        for a in range(12):
            edge = skill if a < 4 else -skill / 2 if a < 6 else 0.0
            rows.append(
                {
                    "agent": f"a{a:02d}",
                    "matured_at": T0 + timedelta(days=d, hours=21),
                    "horizon_hours": 24,
                    "realized_pnl_bps": float(edge + 50 * rng.standard_normal()),
                }
            )
    return pl.DataFrame(rows)


def _brute_t(records: pl.DataFrame, as_of: datetime, policy: Policy) -> dict[str, float]:
    """Every rule's paired t against equal weight, by the module docstring, with loops."""
    anchor = selection_anchor(as_of, policy)
    look = timedelta(hours=policy.lookback_hours)
    step = timedelta(hours=policy.selection_step_hours)
    rets: dict[str, list[float]] = {r: [] for r in RULES}
    for j in range(1, policy.selection_lags + 1):
        t_j = anchor - j * step
        stats = []
        for _agent, part in records.group_by("agent"):
            ev = part.filter((pl.col("matured_at") > t_j - look) & (pl.col("matured_at") <= t_j))
            nx = part.filter((pl.col("matured_at") > t_j) & (pl.col("matured_at") <= t_j + step))
            x = ev["realized_pnl_bps"].to_numpy()
            if x.size >= max(2, policy.min_records) and x.std(ddof=1) > 0 and nx.height:
                stats.append((x.size, x.mean(), x.std(ddof=1), nx["realized_pnl_bps"].mean()))
        if len(stats) < policy.evidence_min_agents:
            continue
        n, mean, sd, y = (np.array(c, dtype=float) for c in zip(*stats, strict=True))
        for rule in RULES:
            w = rule_weights(rule, n, mean, sd, np.ones(n.size, dtype=bool), policy)
            rets[rule].append(float(w @ y / w.sum()) if w.sum() > 0 else 0.0)
    base = np.array(rets["equal_weight"])
    out = {}
    for rule in RULES[1:]:
        r = np.array(rets[rule])
        d = r / r.std(ddof=1) - base / base.std(ddof=1)
        out[rule] = d.mean() * math.sqrt(d.size) / d.std(ddof=1)
    return out


def test_paired_t_equals_a_brute_force_computation():
    records = _fleet(60, 20.0)
    policy = Policy(profile="select", selection_lags=30)
    as_of = T0 + timedelta(days=59, hours=23)
    got = rule_selection(records, as_of, policy)
    want = _brute_t(records, as_of, policy)
    for rule, t in want.items():
        assert got.t[rule] == pytest.approx(t, rel=1e-9, abs=1e-12)


def test_guard_keeps_equal_weight_without_skill_and_leaves_it_with_skill():
    policy = Policy(profile="select", selection_lags=40)
    as_of = T0 + timedelta(days=79, hours=23)
    assert rule_selection(_fleet(80, 0.0), as_of, policy).rule == "equal_weight"
    skilled = rule_selection(_fleet(80, 40.0), as_of, policy)
    assert skilled.rule in ("evidence_tilt", "seed_selection")
    assert skilled.t[skilled.rule] > policy.selection_t0
    assert skilled.rule in skilled.describe(policy)


def test_too_short_a_record_keeps_equal_weight():
    policy = Policy(profile="select")
    got = rule_selection(_fleet(12, 100.0), T0 + timedelta(days=11, hours=23), policy)
    assert got.rule == "equal_weight" and got.n_lags < MIN_LAGS
    assert "fewer than" in got.describe(policy)
    assert RuleSelection.from_dict(got.to_dict()) == got


def test_nothing_after_the_anchor_is_read():
    records = _fleet(60, 30.0)
    policy = Policy(profile="select", selection_lags=30)
    as_of = T0 + timedelta(days=50, hours=23)
    later = records.with_columns(
        pl.when(pl.col("matured_at") > selection_anchor(as_of, policy))
        .then(pl.lit(-1e6))
        .otherwise(pl.col("realized_pnl_bps"))
        .alias("realized_pnl_bps")
    )
    assert rule_selection(records, as_of, policy) == rule_selection(later, as_of, policy)


def _brute_loss_z(x: list[float], policy: Policy) -> float:
    memory, run = policy.broken_memory_records, policy.broken_consecutive
    cut = len(x) - (memory + run - 1)
    _, scale = brute_earlier_scale(x, cut)
    if math.isnan(scale):
        return math.nan
    best = -math.inf
    for end in range(cut + run - 1, len(x)):
        best = max(best, min(-x[end - q] / scale for q in range(run)))
    return best


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.floats(-500, 500), min_size=0, max_size=40),
    st.integers(1, 6),
    st.integers(1, 3),
)
def test_loss_run_z_equals_a_brute_force_computation(x, memory, run):
    policy = Policy(broken_memory_records=memory, broken_consecutive=run)
    got = loss_run_z(np.array(x, dtype=float), policy)
    want = _brute_loss_z(x, policy)
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)


def test_the_scale_reads_the_latest_records_before_the_judged_ones_only():
    """Every record of a fast agent's history went into two medians per cycle (0.45 s a cycle
    for 1,000 agents of 10,000 records each): the scale now reads the latest
    MAX_SCALE_RECORDS before the judged ones, whatever came earlier."""
    rng = np.random.default_rng(3)
    policy = Policy()
    recent = list(50 * rng.standard_normal(MAX_SCALE_RECORDS + 7))
    calm, wild = list(rng.standard_normal(4000)), list(5000 * rng.standard_normal(4000))
    z = loss_run_z(np.array(calm + recent), policy)
    assert z == loss_run_z(np.array(wild + recent), policy) == _brute_loss_z(recent, policy)


def test_a_blow_up_is_cut_at_its_second_record_and_returns_after_the_memory():
    rng = np.random.default_rng(1)
    policy = Policy()
    normal = list(50 * rng.standard_normal(40))
    one = [*normal, -400.0]
    two = [*one, -400.0]
    assert loss_run_z(np.array(one), policy) < policy.broken_loss_scale
    assert loss_run_z(np.array(two), policy) >= policy.broken_loss_scale
    healed = two + list(50 * rng.standard_normal(policy.broken_memory_records))
    assert loss_run_z(np.array(healed), policy) < policy.broken_loss_scale


@given(
    hours=st.lists(st.integers(-400, 0).map(lambda h: h / 4), min_size=1, max_size=60),
    low=st.integers(-420, 10).map(lambda h: h / 4),
    width=st.integers(0, 200).map(lambda h: h / 4),
)
def test_a_window_of_time_ordered_rows_is_the_slice_of_the_masked_rows(hours, low, width):
    """The rule selection reads each lag's window as a slice when the rows are in time order
    (ties and window bounds on a record included): the same rows, in the same order, as the
    mask it used on any order."""
    ordered = np.sort(np.array(hours))
    high = low + width
    got = np.arange(ordered.size)[window_rows(ordered, low, high, True)]
    want = np.flatnonzero(window_rows(ordered, low, high, False))
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("cores", [2, 3])
def test_lags_computed_in_threads_give_the_same_bits(monkeypatch, cores):
    """A large record's lags are split over threads (every k-th lag in each): the returns and
    every rule's t are those of one thread, bit for bit, in lag order (forced here on any
    machine, shuffled rows included, so both the slice and the mask windows run); and the
    threaded t is still the brute-force one."""
    from meta_supervisor.signals import threads

    records = _fleet(60, 20.0, seed=3)
    policy = Policy(profile="select", selection_lags=30)
    as_of = T0 + timedelta(days=59, hours=23)
    for frame in (records, records.sample(fraction=1.0, shuffle=True, seed=2)):
        monkeypatch.setattr(threads, "MIN_SIZE", 1 << 62)
        one = rule_selection(frame, as_of, policy)
        monkeypatch.setattr(threads, "MIN_SIZE", 0)
        monkeypatch.setattr(threads, "cores", lambda: cores)
        split = rule_selection(frame, as_of, policy)
        assert split.n_lags == one.n_lags > 0
        assert split.rule == one.rule
        assert (
            np.array(list(split.t.values())).tobytes() == np.array(list(one.t.values())).tobytes()
        )
    want = _brute_t(records, as_of, policy)
    for rule, t in want.items():
        assert split.t[rule] == pytest.approx(t, rel=1e-9, abs=1e-12)
