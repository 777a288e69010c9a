"""The columnar allocation: ``allocate_frames`` on the cycle's frames, lazy explanations.

The frame path and the dict path are one implementation read two ways; the cycle's frames
turned into dicts row by row (as ``cycle_inputs`` does) must give the same decision, byte for
byte, whatever the frames hold.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meta_supervisor.allocate.core import allocate, allocate_frames
from meta_supervisor.allocate.inputs import Confidence, Override, Tail
from meta_supervisor.allocate.profiles import evidence
from meta_supervisor.cycle.run import cycle_frames, cycle_inputs, decide, frames_to_inputs
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research.simulate import FleetSpec
from meta_supervisor.signals.persistence import persistence

AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
SPEC = FleetSpec(
    n_agents=24, days=16, skilled_share=0.3, late_share=0.2, stale_share=0.2, burst_share=0.3
)


@pytest.fixture(scope="module")
def fleet(fleets):
    return fleets(SPEC, 5)


def _as_of(fleet, hours):
    return fleet.ledger.records["matured_at"].min() + timedelta(hours=hours)


def _dicts(stats, conf, tails, policy):
    """The frames as dicts, row by row (what ``cycle_inputs`` builds)."""
    return frames_to_inputs(stats, conf, tails, policy)


@pytest.mark.parametrize("profile", list(Profile))
def test_decide_on_frames_equals_allocate_on_cycle_input_dicts(fleet, profile):
    policy = Policy(profile=profile)
    previous = None
    for hours in (40, 150, 300, 370):
        as_of = _as_of(fleet, hours)
        stats, confidence, tails = cycle_inputs(fleet.ledger, as_of, policy)
        first = sorted(stats)[0]
        overrides = [Override(first, "exclude", "review", as_of + timedelta(hours=1))]
        by_dicts = allocate(
            stats,
            as_of=as_of,
            policy=policy,
            confidence=confidence,
            tails=tails,
            previous=previous,
            overrides=overrides,
            previous_hash="abc",
            persistence=persistence(fleet.ledger.records, as_of, policy),
        )
        by_frames = decide(fleet.ledger, as_of, policy, previous, overrides, "abc")
        assert by_frames.to_json() == by_dicts.to_json()
        assert by_frames.agents[first]["weight"] == 0.0
        previous = by_frames.weights


def test_row_order_of_the_frames_does_not_matter(fleet):
    policy = Policy(profile=Profile.EVIDENCE)
    as_of = _as_of(fleet, 300)
    stats, conf, tails = cycle_frames(fleet.ledger, as_of, policy)
    plain = allocate_frames(stats, conf, tails, as_of=as_of, policy=policy)
    shuffled = allocate_frames(
        stats.sample(fraction=1.0, shuffle=True, seed=3),
        conf.sample(fraction=1.0, shuffle=True, seed=4),
        tails.sample(fraction=1.0, shuffle=True, seed=5),
        as_of=as_of,
        policy=policy,
    )
    assert shuffled.to_json() == plain.to_json()


def test_a_repeated_agent_in_the_stats_frame_is_refused_by_name(fleet):
    as_of = _as_of(fleet, 300)
    stats, conf, tails = cycle_frames(fleet.ledger, as_of, Policy())
    doubled = pl.concat([stats, stats.head(1)])
    with pytest.raises(ValueError, match=repr(stats["agent"][0])):
        allocate_frames(doubled, conf, tails, as_of=as_of)


# Odd values a frame can hold: NaN and inf in float columns, out-of-range rates, negative
# counts, nulls, padded or empty strategies, a kill flag; the dict path reads the same rows.
floats = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-300, 300),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.5, -1.0]),
)
frames = st.lists(
    st.fixed_dictionaries(
        {
            "strategy": st.sampled_from(["a", "b", " a", "", None, "c"]),
            "n_records": st.one_of(st.none(), st.integers(-3, 60)),
            "pnl_sum_bps": floats,
            "pnl_mean_bps": floats,
            "pnl_std_bps": floats,
            "hit_rate": floats,
            "avg_abs_error_bps": floats,
            "max_drawdown_bps": floats,
            "error_rate": floats,
            "decision": st.sampled_from([None, "KILL", " kill ", "keep"]),
        }
    ),
    max_size=9,
)


@given(
    frames,
    st.sampled_from(list(Profile)),
    st.lists(st.floats(0.5, 1.0), min_size=9, max_size=9),
    st.dictionaries(st.sampled_from(["a", "b", "c", ""]), st.one_of(st.none(), floats)),
    st.booleans(),
)
def test_frame_and_dict_paths_agree_on_any_values(rows, profile, multipliers, cvars, with_prev):
    policy = Policy(profile=profile, evidence_min_agents=2)
    agents = [f"agent-{i}" for i in range(len(rows))]
    stats = pl.DataFrame(
        [{"agent": a, **row} for a, row in zip(agents, rows, strict=True)],
        schema={
            "agent": pl.String,
            "strategy": pl.String,
            "n_records": pl.Int64,
            **{
                k: pl.Float64
                for k in (
                    "pnl_sum_bps",
                    "pnl_mean_bps",
                    "pnl_std_bps",
                    "hit_rate",
                    "avg_abs_error_bps",
                    "max_drawdown_bps",
                    "error_rate",
                )
            },
            "decision": pl.String,
        },
    )
    conf = pl.DataFrame(
        {
            "agent": agents[::2],
            "confidence": multipliers[: len(agents[::2])],
            "n_evidence": list(range(len(agents[::2]))),
            "evidence_weight": [1.5] * len(agents[::2]),
            "error_ratio": [None, 0.7] * (len(agents[::2]) // 2) + [0.9] * (len(agents[::2]) % 2),
        },
        schema={
            "agent": pl.String,
            "confidence": pl.Float64,
            "n_evidence": pl.Int64,
            "evidence_weight": pl.Float64,
            "error_ratio": pl.Float64,
        },
    )
    tails = pl.DataFrame(
        {
            "strategy": list(cvars),
            "n": [30] * len(cvars),
            "gap_cvar95_bps": list(cvars.values()),
            "gap_cvar95_used_bps": list(cvars.values()),
            "shrunk": [True] * len(cvars),
            "worst_gap": [None] * len(cvars),
            "mean_gap": [None] * len(cvars),
        },
        schema={
            "strategy": pl.String,
            "n": pl.Int64,
            "gap_cvar95_bps": pl.Float64,
            "gap_cvar95_used_bps": pl.Float64,
            "shrunk": pl.Boolean,
            "worst_gap": pl.Float64,
            "mean_gap": pl.Float64,
        },
    )
    previous = {a: 0.01 for a in agents[1::2]} if with_prev else None
    by_frames = allocate_frames(stats, conf, tails, as_of=AS_OF, policy=policy, previous=previous)
    rows, confidence, tail_map = _dicts(stats, conf, tails, policy)
    by_dicts = allocate(
        rows,
        confidence=confidence,
        tails=tail_map,
        as_of=AS_OF,
        policy=policy,
        previous=previous,
    )
    assert by_frames.weights == by_dicts.weights
    assert by_frames.to_json() == by_dicts.to_json()
    json.loads(by_frames.to_json(), parse_constant=_no_constants)


def _no_constants(token):
    raise AssertionError(f"non-finite token {token} in the decision JSON")


# ---------------------------------------------------------------- laziness


def _seed_stats(n):
    rng = np.random.default_rng(n)
    return {
        f"a{i:03d}": {
            "pnl_sum_bps": float(rng.normal(50, 100)),
            "hit_rate": float(rng.uniform(0.3, 0.7)),
            "avg_abs_error_bps": float(rng.uniform(5, 100)),
            "max_drawdown_bps": float(-rng.exponential(40)),
            "error_rate": float(rng.uniform(0, 0.2)),
            "strategy": f"s{i % 3}",
        }
        for i in range(n)
    }


def test_explanations_show_the_inputs_as_they_were_at_the_call():
    stats = _seed_stats(20)
    tails = {"s0": Tail("s0", 40, -30.0, -30.0)}
    confidence = {"a000": Confidence(0.8, 12, 4.0, 1.1)}
    previous = {"a001": 0.05}
    decision = allocate(stats, as_of=AS_OF, tails=tails, confidence=confidence, previous=previous)
    expected = allocate(
        _seed_stats(20),
        as_of=AS_OF,
        tails=dict(tails),
        confidence=dict(confidence),
        previous=dict(previous),
    ).to_json()
    # The caller reuses its dicts after the call: the (lazy) explanation must not see it.
    stats["a000"]["pnl_sum_bps"] = -1e9
    stats["a002"]["hit_rate"] = "garbage"
    tails["s1"] = Tail("s1", 40, -90.0, -90.0)
    confidence["a003"] = Confidence(0.5)
    previous["a004"] = 0.2
    assert decision.to_json() == expected


def test_weights_do_not_need_the_explanations_and_reading_them_changes_nothing():
    stats = _seed_stats(30)
    lazy = allocate(stats, as_of=AS_OF)
    weights, portfolio = dict(lazy.weights), dict(lazy.portfolio)
    eager = allocate(stats, as_of=AS_OF)
    first = eager.agents["a000"]  # explanations built first, then the JSON
    assert first["agent"] == "a000"
    assert lazy.weights == weights and lazy.portfolio == portfolio
    assert lazy.to_json() == eager.to_json()
    assert sum(1 for e in lazy.agents.values() if e["weight"] > 0) == len(weights)


# ---------------------------------------------------------------- the evidence profile, per agent


def test_evidence_factors_per_agent_are_those_of_the_whole_fleet_computation():
    policy = Policy(profile=Profile.EVIDENCE, evidence_min_agents=2)
    rng = np.random.default_rng(9)
    stats = {
        f"e{i}": {
            "pnl_mean_bps": float(rng.normal(0, 6)),
            "pnl_std_bps": float(rng.uniform(10, 40)),
            "n_records": int(rng.integers(1, 200)),
            "avg_abs_error_bps": float(rng.uniform(1, 50)),
            "max_drawdown_bps": float(-rng.exponential(200)),
            "error_rate": float(rng.uniform(0, 0.2)),
            "strategy": f"s{i % 4}",
        }
        for i in range(40)
    }
    tails = {f"s{k}": Tail(f"s{k}", 50, -60.0 * k, -60.0 * k) for k in range(4)}
    confidence = {name: Confidence(0.9, 5, 2.0, 0.6) for name in list(stats)[::3]}
    decision = allocate(stats, as_of=AS_OF, policy=policy, tails=tails, confidence=confidence)
    fleet = evidence.fleet_evidence(stats, policy)
    for name, s in stats.items():
        alone = evidence.quality_factors(
            s, confidence.get(name), fleet, policy
        ) + evidence.risk_factors(s, tails[s["strategy"]], policy, fleet)
        assert decision.agents[name]["factors"] == alone


_US_RANGE = (-62_135_596_800_000_000, 253_402_300_800_000_000 - 1)  # years 1-9999


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(*_US_RANGE), st.integers(-(10**12), 10**12)),
            st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
            st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        ),
        min_size=0,
        max_size=30,
    ),
    st.sampled_from(["us", "ms"]),
)
def test_frame_views_are_each_rows_own_view(rows, unit):
    """The explanations' inputs and the inputs fingerprint read ``_frame_views``, built column
    by column (datetimes formatted at once): each row's view must be the one
    ``_inputs_view`` gives that row alone, value by value (ISO with ``Z`` from
    ``datetime.isoformat``, non-finite numbers as text, nulls as ``None``)."""
    from meta_supervisor.allocate.fleet import _frame_views, _inputs_view

    scale = 1000 if unit == "ms" else 1
    moments = [None if t is None else t // scale for t in (r[0] for r in rows)]
    frame = pl.DataFrame(
        {
            "at": pl.Series(moments, dtype=pl.Int64).cast(pl.Datetime(unit, "UTC")),
            "x": pl.Series([r[1] for r in rows], dtype=pl.Float64),
            "n": pl.Series([r[2] for r in rows], dtype=pl.Int64),
            "agent": [f"a{i}" for i in range(len(rows))],
        }
    )
    expected = [_inputs_view(row) for row in frame.iter_rows(named=True)]
    assert _frame_views(frame) == expected
    assert json.dumps(_frame_views(frame)) == json.dumps(expected)  # the NaN/float text too


@pytest.mark.parametrize(
    "empty", [pl.DataFrame(), pl.DataFrame({"agent": []}, schema={"agent": pl.String})]
)
def test_a_confidence_frame_with_no_rows_is_no_confidence_in_the_provenance_too(fleet, empty):
    """A confidence frame with no rows (of any columns) is read as no confidence: the decision
    and its provenance are those without one (regression: the provenance's column-wise read
    of the confidence raised ColumnNotFoundError on such a frame, after the weights were
    decided)."""
    policy = Policy(profile=Profile.SEED)
    as_of = _as_of(fleet, 300)
    stats, _, tails = cycle_frames(fleet.ledger, as_of, policy)
    with_empty = allocate_frames(stats, empty, tails, as_of=as_of, policy=policy)
    without = allocate_frames(stats, None, tails, as_of=as_of, policy=policy)
    assert with_empty.weights == without.weights
    assert with_empty.provenance == without.provenance
    assert Confidence.by_agent(empty) == {}


@pytest.mark.parametrize("unit", ["us", "ms"])
def test_a_datetime_outside_pythons_years_is_never_written_as_another_instant(unit):
    """A UTC datetime no Python datetime holds (beyond year 9999, or one whose count in ms
    wraps around int64 once scaled to µs) is written as its count since the epoch, not as an
    ISO instant it is not (regression: 18446744073709552 ms was written
    '1970-01-01T00:00:00.000384Z'), and the frame's other values are formatted as usual."""
    from meta_supervisor.allocate.fleet import _frame_views

    end_us, first_us = 253_402_300_800_000_000, -62_135_596_800_000_000  # years 10000 and 1
    huge = (
        [end_us, first_us - 1, 2**62]
        if unit == "us"
        else [18_446_744_073_709_552 // 2, -(10**17), end_us // 1000]
    )
    series = pl.Series("at", [*huge, 0, None], dtype=pl.Int64).cast(pl.Datetime(unit, "UTC"))
    views = _frame_views(pl.DataFrame({"at": series}))
    assert [v["at"] for v in views[:3]] == [
        f"{v} {unit} since 1970-01-01 (outside years 1-9999)" for v in huge
    ]
    assert [v["at"] for v in views[3:]] == ["1970-01-01T00:00:00Z", None]
