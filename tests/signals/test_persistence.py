"""The evidence tilt's learned strength: did past t predict the next period's PnL?

Each formula is checked against a plain-Python computation written from the module docstring
(brute-force ranks, explicit loops over records), plus the no-future rule and the wiring into
the evidence profile.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.allocate.core import allocate
from meta_supervisor.cycle.run import cycle_frames, cycle_inputs, decide
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research.simulate import FleetSpec
from meta_supervisor.signals.persistence import (
    LagCorrelation,
    LearnedStrengths,
    Persistence,
    anchor,
    day_sums,
    lag_correlations,
    lag_samples,
    persistence,
    persistence_from_lags,
    persistence_from_sums,
    spearman,
)

AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = Policy(
    profile=Profile.EVIDENCE,
    lookback_hours=48.0,
    evidence_persistence_lags=4,
    evidence_persistence_step_hours=12.0,
    min_records=3,
)


# ---------------------------------------------------------------- brute force


def _brute_ranks(xs: list[float]) -> list[float]:
    """1 + (values below) + (ties − 1)/2: the average rank, by counting."""
    return [1 + sum(y < x for y in xs) + (sum(y == x for y in xs) - 1) / 2 for x in xs]


def _pearson(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    den = math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    return num / den if den > 0 else math.nan


def _brute_spearman(a: list[float], b: list[float]) -> float:
    return _pearson(_brute_ranks(a), _brute_ranks(b))


def _brute_agents(rows: list[dict], as_of: datetime, policy: Policy) -> list[dict]:
    """Per lag, {agent: (t, next-period mean, strategy)} of the agents that count, from the
    docstring, one record at a time (exact sums: ``math.fsum``)."""
    h = policy.evidence_persistence_step_hours
    rows = [
        r for r in rows if r["horizon_hours"] == policy.horizon_hours and r["matured_at"] <= as_of
    ]
    strategy = {}
    for r in sorted(rows, key=lambda r: (r["matured_at"], r["ts"])):
        strategy[r["agent"]] = r["strategy"]
    out = []
    for j in range(1, policy.evidence_persistence_lags + 1):
        t_j = as_of - timedelta(hours=j * h)
        start, end = t_j - timedelta(hours=policy.lookback_hours), t_j + timedelta(hours=h)
        found = {}
        for agent in strategy:
            past = [
                r["pnl"] for r in rows if r["agent"] == agent and start < r["matured_at"] <= t_j
            ]
            after = [r["pnl"] for r in rows if r["agent"] == agent and t_j < r["matured_at"] <= end]
            n = len(past)
            if n < max(2, policy.min_records) or not after:
                continue
            mean = math.fsum(past) / n
            sd = math.sqrt(math.fsum((x - mean) ** 2 for x in past) / (n - 1))
            if sd > 0:
                found[agent] = (mean * math.sqrt(n) / sd, math.fsum(after) / len(after))
        size: dict[str, int] = {}
        for agent in found:
            size[strategy[agent]] = size.get(strategy[agent], 0) + 1
        out.append({a: (*v, strategy[a]) for a, v in found.items() if size[strategy[a]] >= 2})
    return out


def _brute_lags(rows: list[dict], as_of: datetime, policy: Policy) -> list[tuple[float, int, int]]:
    """(rho, N, dof) per lag, from the docstring, one record at a time."""
    out = []
    for found in _brute_agents(rows, as_of, policy):
        members: dict[str, list[str]] = {}
        for agent, (_, _, s) in found.items():
            members.setdefault(s, []).append(agent)
        xs, ys = [], []
        for m in members.values():
            tm = sum(found[a][0] for a in m) / len(m)
            nm = sum(found[a][1] for a in m) / len(m)
            xs += [found[a][0] - tm for a in m]
            ys += [found[a][1] - nm for a in m]
        rho = _brute_spearman(xs, ys) if len(found) >= 2 else math.nan
        out.append((rho, len(found), len(found) - len(members)))
    return out


def _records(
    rng: np.random.Generator, skill: float, n_agents: int = 12, hours: int = 120, level: float = 0.0
):
    """Records every 2 h per agent, 3 strategies; ``skill`` sets a persistent edge per agent."""
    edge = rng.normal(0, 1, n_agents) * skill
    rows = []
    start = AS_OF - timedelta(hours=hours)
    for i in range(n_agents):
        for k in range(0, hours + 24, 2):
            ts = start + timedelta(hours=k - 24 + int(rng.integers(0, 2)))
            for horizon in (24, 4):
                rows.append(
                    {
                        "agent": f"a{i:02d}",
                        "strategy": f"s{i % 3}",
                        "ts": ts,
                        "matured_at": ts + timedelta(hours=horizon),
                        "horizon_hours": horizon,
                        # ties on purpose: rounded PnL, so ranks must average them
                        "pnl": level + float(round(edge[i] + rng.standard_t(4) * 10.0)),
                    }
                )
    frame = pl.DataFrame(rows).rename({"pnl": "realized_pnl_bps"})
    return rows, frame


# ---------------------------------------------------------------- formulas


@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=2, max_size=12))
def test_spearman_is_pearson_of_brute_force_average_ranks(pairs):
    a = [float(x) for x, _ in pairs]
    b = [float(y) for _, y in pairs]
    got = spearman(np.array(a), np.array(b))
    want = _brute_spearman(a, b)
    assert (math.isnan(got) and math.isnan(want)) or math.isclose(got, want, abs_tol=1e-12)


@pytest.mark.parametrize(
    ("seed", "level", "lookback", "hours"),
    [
        (1, 0.0, 48.0, 120),
        (2, 0.0, 30.0, 120),
        (3, 1e6, 48.0, 120),
        (4, -3e7, 30.0, 120),
        (5, 0.0, 48.0, 60),  # the records start inside the earliest windows
    ],
)
def test_each_lags_t_and_next_pnl_equal_a_brute_force_over_the_records(
    seed, level, lookback, hours
):
    """The per-(agent, bucket) sums give each agent's t and next-period mean as the records
    do, to 1e-9 relative (the independent computation sums exactly, ``math.fsum``; the sums
    reassociate, and a common level of 1e6-3e7 bps must not cancel the spread). A 30 h
    lookback with a 12 h step makes 6 h buckets; with 60 h of records the earliest windows
    begin before the first record (a per-agent slice search once read the previous agent's
    cells there)."""
    rows, frame = _records(np.random.default_rng(seed), 4.0, hours=hours, level=level)
    policy = POLICY.model_copy(update={"lookback_hours": lookback})
    samples = lag_samples(frame, AS_OF, policy)
    assert len(samples) == policy.evidence_persistence_lags
    for sample, found in zip(samples, _brute_agents(rows, AS_OF, policy), strict=True):
        agents = sorted(found)
        assert len(agents) >= 6  # the fixture really exercises the lag
        np.testing.assert_allclose(sample.t, [found[a][0] for a in agents], rtol=1e-9)
        np.testing.assert_allclose(sample.next_pnl, [found[a][1] for a in agents], rtol=1e-12)


def test_the_strength_from_records_is_the_strength_from_their_day_sums_bit_for_bit():
    """One formula: the direct function builds the cells and calls the same code, and the
    backtest's sums advanced anchor after anchor give the same bits."""
    _, frame = _records(np.random.default_rng(9), 6.0, hours=240)
    policy = POLICY.model_copy(update={"evidence_persistence_lags": 6})
    walk = LearnedStrengths(frame.sample(fraction=1.0, shuffle=True, seed=3))
    for k in range(0, 200, 7):  # every 7 h: several instants per anchor, anchors skipped
        as_of = AS_OF - timedelta(hours=k)
        direct = persistence(frame, as_of, policy)
        assert direct == persistence_from_sums(day_sums(frame, as_of, policy), as_of, policy)
    for k in range(200, -1, -7):  # the walk goes forward in time
        as_of = AS_OF - timedelta(hours=k)
        got, want = walk.at(as_of, policy), persistence(frame, as_of, policy)
        assert got.to_dict() == want.to_dict() and got.lags == want.lags


@pytest.mark.parametrize("seed, skill", [(1, 0.0), (2, 8.0)])
def test_lag_correlations_equal_the_docstring_computed_record_by_record(seed, skill):
    rows, frame = _records(np.random.default_rng(seed), skill)
    got = lag_correlations(frame, AS_OF, POLICY)
    want = _brute_lags(rows, AS_OF, POLICY)
    assert [g.lag for g in got] == [1, 2, 3, 4]
    for g, (rho, n, dof) in zip(got, want, strict=True):
        assert (g.n_agents, g.dof) == (n, dof)
        assert n >= 9  # the fixture really exercises the lags
        assert math.isclose(g.rho, rho, abs_tol=1e-12)


def test_strength_is_the_james_stein_shape_of_z_over_the_lags_that_count():
    lags = [
        LagCorrelation(1, 0.50, 20, 17),
        LagCorrelation(2, 0.30, 20, 17),
        LagCorrelation(3, math.nan, 20, 17),  # undefined: does not count
        LagCorrelation(4, 0.90, 3, 1),  # too few agents: does not count
        LagCorrelation(5, 0.25, 30, 27),
    ]
    p = persistence_from_lags(lags, POLICY)
    mean = (0.50 + 0.30 + 0.25) / 3
    se = math.sqrt(1 / 17 + 1 / 17 + 1 / 27) / 3
    assert p.n_lags == 3
    assert math.isclose(p.mean_rho, mean) and math.isclose(p.se, se)
    assert math.isclose(p.z, mean / se) and p.z > POLICY.evidence_persistence_z0
    assert math.isclose(p.strength, 1 - (POLICY.evidence_persistence_z0 / (mean / se)) ** 2)
    # Lags that disagree more than the null allows: their own scatter is the standard error.
    scattered = [LagCorrelation(j, r, 40, 37) for j, r in enumerate((0.9, -0.5, 0.8, -0.2), 1)]
    wide = persistence_from_lags(scattered, POLICY)
    rhos = np.array([0.9, -0.5, 0.8, -0.2])
    assert math.isclose(wide.se, rhos.std(ddof=1) / 2) and wide.se > math.sqrt(4 / 37) / 4
    assert math.isclose(wide.z, rhos.mean() / wide.se)
    none = persistence_from_lags(lags[2:4], POLICY)
    assert (none.strength, none.n_lags) == (0.0, 0) and math.isnan(none.z)


@given(
    st.lists(st.floats(-1, 1), min_size=1, max_size=8),
    st.floats(-0.5, 0.5),
    st.integers(6, 60),
    st.floats(0, 5),
)
def test_strength_is_in_0_1_zero_until_z0_and_never_falls_as_rho_rises(rhos, bump, n, z0):
    policy = POLICY.model_copy(update={"evidence_persistence_z0": z0})
    lags = [LagCorrelation(j, r, n, n - 3) for j, r in enumerate(rhos, 1)]
    p = persistence_from_lags(lags, policy)
    higher = persistence_from_lags(
        [LagCorrelation(x.lag, min(1.0, x.rho + abs(bump)), n, n - 3) for x in lags], policy
    )
    assert 0.0 <= p.strength <= 1.0
    assert p.strength == 0.0 or p.z > z0
    assert higher.strength >= p.strength


# ---------------------------------------------------------------- behaviour


def test_persistent_skill_gives_a_strong_tilt_and_none_gives_none():
    policy = POLICY.model_copy(update={"evidence_persistence_lags": 6})
    skilled = persistence(_records(np.random.default_rng(3), 12.0)[1], AS_OF, policy)
    assert skilled.z > 4 and skilled.strength > 0.7
    noise = [
        persistence(_records(np.random.default_rng(s), 0.0)[1], AS_OF, policy) for s in (4, 5, 6)
    ]
    assert all(abs(p.z) < 3 for p in noise)
    assert sum(p.strength for p in noise) < skilled.strength


def test_nothing_that_matures_after_as_of_is_read():
    _, frame = _records(np.random.default_rng(7), 8.0)
    base = persistence(frame, AS_OF, POLICY)
    late = pl.col("matured_at") > AS_OF
    corrupted = frame.with_columns(
        pl.when(late).then(-1e6).otherwise(pl.col("realized_pnl_bps")).alias("realized_pnl_bps"),
        pl.when(late).then(pl.lit("other")).otherwise(pl.col("strategy")).alias("strategy"),
    )
    assert frame.filter(late).height > 0
    assert persistence(corrupted, AS_OF, POLICY) == base


def test_no_records_or_no_lags_give_strength_zero():
    _, frame = _records(np.random.default_rng(8), 8.0)
    assert persistence(frame.head(0), AS_OF, POLICY).strength == 0.0
    off = POLICY.model_copy(update={"evidence_persistence_lags": 0})
    assert persistence(frame, AS_OF, off) == Persistence(0.0, math.nan, math.nan, math.nan, 0)


# ---------------------------------------------------------------- wiring


@pytest.fixture(scope="module")
def fleet(fleets):
    return fleets(FleetSpec(n_agents=20, days=14, skilled_share=0.4), 11)


def _as_of(fleet):
    return fleet.ledger.records["matured_at"].min() + timedelta(hours=24 * 12)


def test_decide_applies_the_learned_strength_to_the_evidence_tilt(fleet):
    policy = Policy(profile=Profile.EVIDENCE, evidence_t0=0.0)
    as_of = _as_of(fleet)
    learned = persistence(fleet.ledger.records, as_of, policy)
    decision = decide(fleet.ledger, as_of, policy)
    stats, conf, tails = cycle_inputs(fleet.ledger, as_of, policy)
    by_dicts = allocate(
        stats, as_of=as_of, policy=policy, confidence=conf, tails=tails, persistence=learned
    )
    assert decision.to_json() == by_dicts.to_json()
    reasons = [
        f["reason"]
        for e in decision.agents.values()
        for f in e["factors"]
        if f["factor"] == "evidence"
    ]
    assert any(f"strength {learned.strength:.0%}" in r for r in reasons)
    # Forced strengths: 0 is no tilt at all; 1 tilts (the fleet has skilled agents).
    for strength, tilted in ((0.0, False), (1.0, True)):
        forced = Persistence(strength, 0.1, 0.05, 2.0, 3)
        d = decide(fleet.ledger, as_of, policy, persistence=forced)
        tilts = [
            f["value"] for e in d.agents.values() for f in e["factors"] if f["factor"] == "evidence"
        ]
        assert any(v != 1.0 for v in tilts) == tilted


def test_decide_on_given_frames_still_learns_the_strength_from_the_ledger(fleet):
    policy = Policy(profile=Profile.EVIDENCE)
    as_of = _as_of(fleet)
    frames = cycle_frames(fleet.ledger, as_of, policy)
    assert decide(fleet.ledger, as_of, policy, frames=frames).to_json() == (
        decide(fleet.ledger, as_of, policy).to_json()
    )


def test_the_seed_profile_ignores_the_strength_byte_for_byte(fleet):
    policy = Policy(profile=Profile.SEED)
    as_of = _as_of(fleet)
    plain = decide(fleet.ledger, as_of, policy)
    given_strength = decide(
        fleet.ledger, as_of, policy, persistence=Persistence(1.0, 0.5, 0.1, 5.0, 4)
    )
    assert given_strength.to_json() == plain.to_json()


@given(st.integers(0, 12 * 3600 - 1))
def test_every_instant_until_the_next_anchor_learns_what_the_anchor_learned(seconds):
    """The strength reads only records matured by the anchor (as_of rounded down to H): a
    cycle at any instant of the step sees the anchor's value, whatever matured since."""
    _, frame = _records(np.random.default_rng(11), 8.0)
    as_of = AS_OF + timedelta(seconds=seconds)
    assert anchor(as_of, POLICY) == AS_OF  # H = 12 h, AS_OF on a boundary
    since = (pl.col("matured_at") > AS_OF) & (pl.col("matured_at") <= as_of)
    corrupted = frame.with_columns(
        pl.when(since).then(1e6).otherwise(pl.col("realized_pnl_bps")).alias("realized_pnl_bps")
    )
    assert persistence(corrupted, as_of, POLICY) == persistence(frame, AS_OF, POLICY)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d", "e", "f"]),
            st.sampled_from(["s1", "s2"]),
            st.integers(0, 80),  # hours before AS_OF: agents join and leave mid-range
            st.integers(-20, 20),
        ),
        min_size=1,
        max_size=120,
    )
)
@settings(max_examples=60)
def test_any_fleet_gives_the_brute_forces_agents_t_and_next_pnl(items):
    """Random fleets (agents that start late, stop early, constant PnL): the same agents per
    lag as the record-by-record brute force, t to 1e-9 and the next-period mean to 1e-12."""
    policy = POLICY.model_copy(update={"evidence_persistence_lags": 3, "min_records": 2})
    rows = []
    for k, (agent, strategy, hours, pnl) in enumerate(items):
        matured = AS_OF - timedelta(hours=hours, minutes=k % 60)
        rows.append(
            {
                "agent": agent,
                "strategy": strategy,
                "ts": matured - timedelta(hours=24),
                "matured_at": matured,
                "horizon_hours": 24,
                "pnl": float(pnl),
            }
        )
    frame = pl.DataFrame(rows).rename({"pnl": "realized_pnl_bps"})
    for sample, found in zip(
        lag_samples(frame, AS_OF, policy), _brute_agents(rows, AS_OF, policy), strict=True
    ):
        agents = sorted(found)
        assert sample.t.size == len(agents)
        np.testing.assert_allclose(sample.t, [found[a][0] for a in agents], rtol=1e-9)
        np.testing.assert_allclose(sample.next_pnl, [found[a][1] for a in agents], rtol=1e-12)
