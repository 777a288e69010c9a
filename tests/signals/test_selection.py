"""Learned rule selection (signals/selection.py) and the broken-agent test (signals/broken.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import SMALL_SELECT, brute_earlier_scale
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.broken import (
    MAX_SCALE_RECORDS,
    loss_run_z,
)
from meta_supervisor.signals.daysums import DaySums, anchor, sums_range
from meta_supervisor.signals.persistence import LearnedStrengths, persistence
from meta_supervisor.signals.selection import (
    MIN_LAGS,
    RULES,
    RuleSelection,
    rule_selection,
    rule_selection_from_sums,
    rule_weights,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _fleet(days: int, skill: float, seed: int = 0) -> pl.DataFrame:
    """Daily records of 12 agents; agents 0-3 have a persistent edge of ``skill`` bps."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(days):
        for a in range(12):
            edge = skill if a < 4 else -skill / 2 if a < 6 else 0.0
            matured = T0 + timedelta(days=d, hours=21)
            rows.append(
                {
                    "agent": f"a{a:02d}",
                    "strategy": "trend" if a % 2 else "carry",
                    "ts": matured - timedelta(hours=24),
                    "matured_at": matured,
                    "horizon_hours": 24,
                    "realized_pnl_bps": float(edge + 50 * rng.standard_normal()),
                }
            )
    return pl.DataFrame(rows)


def _brute_t(records: pl.DataFrame, as_of: datetime, policy: Policy) -> dict[str, float]:
    """Every rule's paired t against equal weight, by the module docstring, with loops."""
    return _brute(records, as_of, policy)[1]


def _brute(records: pl.DataFrame, as_of: datetime, policy: Policy) -> tuple[int, dict[str, float]]:
    """The lags that count and every rule's paired t (by the module docstring, with loops)."""
    at = anchor(as_of, policy)
    look = timedelta(hours=policy.lookback_hours)
    step = timedelta(hours=policy.selection_step_hours)
    rets: dict[str, list[float]] = {r: [] for r in RULES}
    for j in range(1, policy.selection_lags + 1):
        t_j = at - j * step
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
        if base.size < 2:
            continue
        d = r / r.std(ddof=1) - base / base.std(ddof=1)
        out[rule] = d.mean() * math.sqrt(d.size) / d.std(ddof=1)
    return base.size, out


def test_paired_t_equals_a_brute_force_computation():
    records = _fleet(60, 20.0)
    policy = Policy(profile="select", selection_lags=30)
    as_of = T0 + timedelta(days=59, hours=23)
    got = rule_selection(records, as_of, policy)
    want = _brute_t(records, as_of, policy)
    for rule, t in want.items():
        assert got.t[rule] == pytest.approx(t, rel=1e-9, abs=1e-12)


def _ragged_fleet(seed: int) -> pl.DataFrame:
    """8 agents reporting at random instants (some hours twice, some days not at all; two
    agents start late), 4 of them with an edge: windows where an agent has 0, 1, 2 or many
    records, ties on time, a 2 h bucket under a 6 h step and a 20 h lookback."""
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(8):
        start = 0 if a < 6 else int(rng.integers(24, 120))
        hours = np.sort(rng.choice(np.arange(start, 14 * 24), size=90, replace=True))
        for h in hours.tolist():
            matured = T0 + timedelta(hours=h, minutes=int(rng.integers(0, 2)) * 30)
            rows.append(
                {
                    "agent": f"r{a}",
                    "strategy": "s",
                    "ts": matured - timedelta(hours=24),
                    "matured_at": matured,
                    "horizon_hours": 24,
                    "realized_pnl_bps": float((8.0 if a < 4 else 0.0) + 30 * rng.standard_normal()),
                }
            )
    return pl.DataFrame(rows)


@pytest.mark.parametrize("seed", range(4))
def test_paired_t_on_ragged_windows_equals_a_brute_force_computation(seed):
    """Review: the daily fleet above has every agent in every window, so neither
    ``min_records``, the next-period record nor ``evidence_min_agents`` decides anything
    there. Here they do: some lags are dropped (asserted), and the rule ignoring any one of
    the three fails this test."""
    records = _ragged_fleet(seed)
    policy = Policy(
        profile="select",
        selection_step_hours=6.0,
        lookback_hours=20.0,
        selection_lags=36,
        min_records=4,
        evidence_min_agents=5,
    )
    as_of = T0 + timedelta(days=13, hours=23)
    got = rule_selection(records, as_of, policy)
    m, want = _brute(records, as_of, policy)
    assert got.n_lags == m
    assert MIN_LAGS <= m < policy.selection_lags  # lags that do not count were dropped
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
        pl.when(pl.col("matured_at") > anchor(as_of, policy))
        .then(pl.lit(-1e6))
        .otherwise(pl.col("realized_pnl_bps"))
        .alias("realized_pnl_bps")
    )
    assert rule_selection(records, as_of, policy) == rule_selection(later, as_of, policy)


SMALL = SMALL_SELECT
small_record = st.tuples(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.integers(0, 5 * 24 * 4),  # matured, quarter hours after T0: ties on time on purpose
    st.integers(-600, 600).map(lambda v: v / 10),  # tenths: sums depend on their order
)


def _small_frame(rows: list[tuple[str, int, float]]) -> pl.DataFrame:
    matured = [T0 + timedelta(minutes=15 * q) for _, q, _ in rows]
    return pl.DataFrame(
        {
            "agent": [a for a, _, _ in rows],
            "strategy": ["s"] * len(rows),
            "ts": [m - timedelta(hours=1) for m in matured],
            "matured_at": matured,
            "horizon_hours": [24] * len(rows),
            "realized_pnl_bps": [x for _, _, x in rows],
        },
        schema_overrides={"horizon_hours": pl.Int64},
    )


def _bits(got: RuleSelection) -> tuple[str, int, bytes]:
    return got.rule, got.n_lags, np.array([got.t[r] for r in RULES]).tobytes()


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(small_record, min_size=0, max_size=200),
    hours=st.integers(24, 5 * 24),
    cut=st.integers(0, 12),
    seed=st.integers(0, 3),
)
def test_the_rule_is_a_function_of_the_cells_however_they_were_built(rows, hours, cut, seed):
    """One definition: the rule from the records is the rule from their cells, bit for bit,
    whatever the records' order and however the cells were built (the range in two parts
    joined, as a live cycle joins kept and recomputed buckets)."""
    frame = _small_frame(rows)
    as_of = T0 + timedelta(hours=hours)
    got = rule_selection(frame, as_of, SMALL)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    assert _bits(rule_selection(shuffled, as_of, SMALL)) == _bits(got)
    low, high = sums_range(as_of, SMALL)
    width = DaySums.empty(SMALL).bucket_us
    middle = min(high, low + cut * width)
    early = DaySums.from_records(shuffled, SMALL, low, middle)
    late = DaySums.from_records(frame, SMALL, middle, high)
    joined = early.replaced(range(middle // width, high // width), late)
    assert _bits(rule_selection_from_sums(joined, as_of, SMALL)) == _bits(got)


def test_an_agent_that_does_not_count_leaves_the_returns_alone_whatever_its_pnl():
    """Regression: a rule's next-period return was ``w @ y`` over every agent, 0 weight for
    those that do not count; an agent with an infinite PnL (a store appended to directly
    may hold one) does not count (its spread is NaN), yet 0 · inf made every lag's return NaN
    and every t 0. The returns read the agents that count only."""
    records = _fleet(60, 20.0)
    policy = Policy(profile="select", selection_lags=30)
    as_of = T0 + timedelta(days=59, hours=23)
    broken = records.filter(pl.col("agent") == "a00").with_columns(
        pl.lit("zz").alias("agent"), pl.lit(math.inf).alias("realized_pnl_bps")
    )
    got = rule_selection(pl.concat([records, broken]), as_of, policy)
    want = rule_selection(records, as_of, policy)
    assert want.rule != "equal_weight"  # the fixture has a rule to lose
    assert _bits(got) == _bits(want)


def test_a_backtest_walk_learns_the_rule_of_the_whole_ledger_bit_for_bit():
    """The backtest advances the cells anchor after anchor (LearnedStrengths): the same rule
    and the same t, bit for bit, as the rule computed from the whole ledger at each instant."""
    records = _fleet(50, 25.0, seed=5)
    policy = Policy(profile="select", selection_lags=20)
    walk = LearnedStrengths(records.sample(fraction=1.0, shuffle=True, seed=1))
    seen = set()
    for hours in range(24 * 20, 24 * 50, 17):  # several instants per anchor, anchors skipped
        as_of = T0 + timedelta(hours=hours)
        got = walk.at(as_of, policy).selection
        want = persistence(records, as_of, policy).selection
        assert got is not None and want is not None
        assert _bits(got) == _bits(want) == _bits(rule_selection(records, as_of, policy))
        seen.add(got.rule)
    assert "equal_weight" in seen and len(seen) > 1  # the walk crosses the guard


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
