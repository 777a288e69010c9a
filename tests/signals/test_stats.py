"""stats.agent_stats: visibility, window, order, and every statistic against plain Python."""

from __future__ import annotations

import math
import statistics
from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import (
    AS_OF,
    brute_drawdown,
    rec,
    records_frame,
    telemetry_frame,
    write_jsonl,
)
from meta_supervisor.allocate.decision import iso
from meta_supervisor.ingest.sources import read_telemetry
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.stats import agent_stats

POLICY = Policy(lookback_hours=100.0)

record_st = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.integers(-30, 130),  # age in hours: negative = not yet matured, > 100 = before the window
    st.integers(-50, 50).map(float),
    st.integers(-50, 50).map(float),
    st.sampled_from([1, 24]),
    st.sampled_from(["momentum", "trend"]),
    st.integers(-3, 3),  # ts offset: same matured_at, different ts
)


def _frame(items) -> pl.DataFrame:
    rows = [
        rec(a, age, r, e, horizon=h, strategy=s, ts_offset_hours=o)
        for a, age, r, e, h, s, o in items
    ]
    return records_frame(rows)


def _brute(frame: pl.DataFrame, policy: Policy = POLICY) -> dict[str, dict]:
    """Per-agent stats in plain Python from the definitions of DESIGN.md."""
    start = AS_OF - timedelta(hours=policy.lookback_hours)
    out: dict[str, dict] = {}
    rows = frame.to_dicts()
    for agent in sorted({r["agent"] for r in rows if r["matured_at"] <= AS_OF}):
        mine = [
            r
            for r in rows
            if r["agent"] == agent
            and start < r["matured_at"] <= AS_OF
            and r["horizon_hours"] == policy.horizon_hours
        ]
        mine.sort(key=lambda r: (r["matured_at"], r["ts"], r["record_id"]))
        pnl = [r["realized_pnl_bps"] for r in mine]
        visible = [r for r in rows if r["agent"] == agent and r["matured_at"] <= AS_OF]
        visible.sort(key=lambda r: (r["matured_at"], r["ts"], r["record_id"]))
        out[agent] = {
            "n_records": len(mine),
            "pnl_sum_bps": math.fsum(pnl),
            "hit_rate": (sum(p > 0 for p in pnl) / len(pnl)) if pnl else None,
            "avg_abs_error_bps": (math.fsum(abs(r["gap_bps"]) for r in mine) / len(mine))
            if mine
            else None,
            "max_drawdown_bps": brute_drawdown(pnl),
            "pnl_std_bps": statistics.stdev(pnl) if len(pnl) > 1 else None,
            "strategy": (mine or visible)[-1]["strategy"],
        }
    return out


def _as_dict(stats: pl.DataFrame) -> dict[str, dict]:
    return {row["agent"]: row for row in stats.iter_rows(named=True)}


@given(st.lists(record_st, max_size=60))
def test_stats_match_plain_python(items):
    frame = _frame(items)
    got = _as_dict(agent_stats(frame, None, AS_OF, POLICY))
    want = _brute(frame)
    assert set(got) == set(want)
    for agent, w in want.items():
        g = got[agent]
        assert g["n_records"] == w["n_records"]
        assert g["strategy"] == w["strategy"]
        assert g["pnl_sum_bps"] == pytest.approx(w["pnl_sum_bps"], abs=1e-9)
        assert g["max_drawdown_bps"] == pytest.approx(w["max_drawdown_bps"], abs=1e-9)
        assert g["max_drawdown_bps"] <= 0.0
        for key in ("hit_rate", "avg_abs_error_bps", "pnl_std_bps"):
            if w[key] is None:
                assert g[key] is None
            else:
                assert g[key] == pytest.approx(w[key], abs=1e-12)


@given(st.lists(record_st, min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_file_order_does_not_matter(items, rnd):
    frame = _frame(items)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=rnd.randint(0, 10**6))
    assert agent_stats(frame, None, AS_OF, POLICY).equals(
        agent_stats(shuffled, None, AS_OF, POLICY)
    )


@given(st.lists(record_st, min_size=1, max_size=60))
def test_records_not_yet_matured_are_invisible(items):
    frame = _frame(items)
    future = pl.col("matured_at") > AS_OF
    corrupted = frame.with_columns(
        pl.when(future).then(1e9).otherwise(pl.col("realized_pnl_bps")).alias("realized_pnl_bps"),
        pl.when(future).then(-1e9).otherwise(pl.col("gap_bps")).alias("gap_bps"),
        pl.when(future).then(pl.lit("poison")).otherwise(pl.col("strategy")).alias("strategy"),
    )
    # an agent seen only in the future must not appear either
    ghost = records_frame([rec("ghost", -5, 1e6)]).with_columns(
        pl.lit("ghost-id").alias("record_id")
    )
    before = agent_stats(frame, None, AS_OF, POLICY)
    after = agent_stats(pl.concat([corrupted, ghost]), None, AS_OF, POLICY)
    assert before.equals(after)


def test_window_is_half_open_at_the_lookback_end():
    frame = records_frame(
        [
            rec("a", 0, 1.0),  # matured exactly at as_of: in
            rec("a", 100, 10.0),  # matured exactly at as_of - lookback: out
            rec("a", 99.999, 100.0),  # just inside
            rec("a", -0.001, 1000.0),  # just in the future: out
            rec("a", 5, 10_000.0, horizon=4),  # other horizon: out
        ]
    )
    row = _as_dict(agent_stats(frame, None, AS_OF, POLICY))["a"]
    assert row["n_records"] == 2
    assert row["pnl_sum_bps"] == 101.0


def test_order_is_matured_at_then_ts_then_record_id():
    # all four records mature at the same instant; their order decides the drawdown
    rows = [
        rec("a", 10, 5.0, ts_offset_hours=0, record_id="z1"),
        rec("a", 10, -5.0, ts_offset_hours=0, record_id="z2"),
        rec("a", 10, 5.0, ts_offset_hours=0, record_id="z3"),
        rec("a", 10, -5.0, ts_offset_hours=0, record_id="z4"),
    ]
    # by record id: +5 -5 +5 -5 -> drawdown -5 (file order reversed to prove it is not used)
    stats = agent_stats(records_frame(rows[::-1]), None, AS_OF, POLICY)
    assert stats["max_drawdown_bps"][0] == -5.0
    # ids now say +5 +5 -5 -5 -> drawdown -10
    relabelled = [dict(r, record_id=i) for r, i in zip(rows, ["z1", "z3", "z2", "z4"], strict=True)]
    stats = agent_stats(records_frame(relabelled), None, AS_OF, POLICY)
    assert stats["max_drawdown_bps"][0] == -10.0


def test_ts_breaks_ties_before_record_id():
    # same matured_at is impossible with the same horizon and different ts, so mix horizons: a
    # 1 h record signalled 23 h after a 24 h one matures at the same instant.
    policy = Policy(lookback_hours=100.0, horizon_hours=24)
    rows = [
        rec("a", 10, -5.0, record_id="a-early"),
        rec("a", 10, 5.0, record_id="b-late", ts_offset_hours=0.5),
        rec("a", 10, 5.0, record_id="c-later", ts_offset_hours=1.0),
    ]
    # matured_at differs by the ts offsets; ordered by time the path is -5, 0, 5: drawdown -5
    stats = agent_stats(records_frame(rows[::-1]), None, AS_OF, policy)
    assert stats["max_drawdown_bps"][0] == -5.0


def test_hit_rate_and_avg_abs_error():
    frame = records_frame(
        [
            rec("a", 1, 10.0, 4.0),
            rec("a", 2, -3.0, 1.0),
            rec("a", 3, 0.0, 2.0),  # zero is not a hit
            rec("a", 4, 6.0, 6.0),
        ]
    )
    row = _as_dict(agent_stats(frame, None, AS_OF, POLICY))["a"]
    assert row["hit_rate"] == 0.5
    assert row["avg_abs_error_bps"] == pytest.approx((6 + 4 + 2 + 0) / 4)


def test_error_rate_from_both_telemetry_schemas(tmp_path):
    def ts(age: float) -> str:
        return iso(AS_OF - timedelta(hours=age))

    events = [
        # schema A: error is a string or null; cost/tokens may be null
        {"ts": ts(1), "agent": "a", "run_id": "1", "latency_ms": 5, "cost_usd": None,
         "tokens_in": None, "tokens_out": None, "error": "timeout", "reward": 0.0},
        {"ts": ts(2), "agent": "a", "run_id": "2", "latency_ms": 5, "cost_usd": None,
         "tokens_in": None, "tokens_out": None, "error": None, "reward": 0.0},
        {"ts": ts(3), "agent": "a", "run_id": "3", "latency_ms": 5, "cost_usd": None,
         "tokens_in": None, "tokens_out": None, "error": "", "reward": 0.0},
        # schema B: errors is a count
        {"ts": ts(4), "agent": "a", "run_id": "4", "latency_ms": 5, "tokens_in": 1,
         "tokens_out": 1, "cost_usd": 0.1, "errors": 2},
        {"ts": ts(5), "agent": "a", "run_id": "5", "latency_ms": 5, "tokens_in": 1,
         "tokens_out": 1, "cost_usd": 0.1, "errors": 0},
        # outside the window: ignored
        {"ts": ts(500), "agent": "a", "run_id": "6", "latency_ms": 5, "errors": 1},
        {"ts": ts(-1), "agent": "a", "run_id": "7", "latency_ms": 5, "errors": 1},
    ]  # fmt: skip
    batch = read_telemetry(write_jsonl(tmp_path / "events.jsonl", events))
    assert batch.quarantine.height == 0
    frame = records_frame([rec("a", 1, 1.0)])
    row = _as_dict(agent_stats(frame, batch.records, AS_OF, POLICY))["a"]
    assert row["n_runs"] == 5
    assert row["error_rate"] == pytest.approx(2 / 5)


def test_agent_without_telemetry_has_no_error_rate_and_telemetry_only_agent_is_listed():
    frame = records_frame([rec("a", 1, 1.0)])
    tel = telemetry_frame([("b", 1, True), ("b", 2, False)])
    stats = _as_dict(agent_stats(frame, tel, AS_OF, POLICY))
    assert stats["a"]["error_rate"] is None
    assert stats["b"]["n_records"] == 0
    assert stats["b"]["error_rate"] == 0.5


def test_stale_agent_appears_with_zero_records_and_its_strategy():
    frame = records_frame([rec("old", 500, 50.0, strategy="trend"), rec("new", 1, 2.0)])
    stats = _as_dict(agent_stats(frame, None, AS_OF, POLICY))
    assert stats["old"]["n_records"] == 0
    assert stats["old"]["pnl_sum_bps"] == 0.0
    assert stats["old"]["max_drawdown_bps"] == 0.0
    assert stats["old"]["strategy"] == "trend"


def test_strategy_is_that_of_the_latest_record():
    frame = records_frame(
        [rec("a", 1, 1.0, strategy="new"), rec("a", 50, 1.0, strategy="old")][::-1]
    )
    assert _as_dict(agent_stats(frame, None, AS_OF, POLICY))["a"]["strategy"] == "new"
