"""Invariants of the whole pure cycle (``cycle.decide``) over arbitrary ledgers.

Random but valid records (agents, strategies, ages, PnL, duplicates of content), in random row
order, through the same function the live cycle and the backtest call.
"""

from __future__ import annotations

import math

import orjson
import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from helpers import AS_OF, rec, records_frame
from meta_supervisor.cycle.run import Ledger, decide
from meta_supervisor.ingest.records import empty_telemetry
from meta_supervisor.policy.model import Policy, Profile

_AGENTS = [f"agent-{i}" for i in range(6)]
_STRATEGIES = ["momentum", "carry", "stat_arb"]

_record = st.builds(
    lambda agent, strategy, age, realized, expected, sigma, offset: rec(
        agent,
        age,
        realized,
        expected,
        strategy=strategy,
        sigma=sigma,
        ts_offset_hours=offset,
    ),
    agent=st.sampled_from(_AGENTS),
    strategy=st.sampled_from(_STRATEGIES),
    age=st.floats(-48, 24 * 40, allow_nan=False),
    realized=st.floats(-500, 500, allow_nan=False),
    expected=st.floats(-50, 50, allow_nan=False),
    sigma=st.one_of(st.none(), st.floats(0.5, 100)),
    offset=st.sampled_from([0.0, 0.25, 0.5]),
)


def _ledger(rows: list[dict]) -> Ledger:
    return Ledger(records=records_frame(rows), telemetry=empty_telemetry())


def _policy(profile: Profile) -> Policy:
    return Policy(profile=profile)


@given(
    rows=st.lists(_record, max_size=60),
    profile=st.sampled_from(list(Profile)),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_ledger_gives_a_bounded_decision_independent_of_row_order(
    rows: list[dict], profile: Profile, seed: int
) -> None:
    policy = _policy(profile)
    ledger = _ledger(rows)
    decision = decide(ledger, AS_OF, policy)

    weights = decision.weights
    assert all(math.isfinite(w) and 0.0 < w <= policy.max_weight for w in weights.values())
    assert sum(weights.values()) <= 1.0
    assert math.isclose(decision.cash, 1.0 - sum(weights.values()), abs_tol=1e-12)
    text = decision.to_json()
    assert b"NaN" not in text.encode() and b"Infinity" not in text.encode()
    orjson.loads(text)

    shuffled = Ledger(
        records=ledger.records.sample(fraction=1.0, shuffle=True, seed=seed),
        telemetry=empty_telemetry(),
    )
    assert decide(shuffled, AS_OF, policy).to_json() == text


@given(rows=st.lists(_record, min_size=1, max_size=40), profile=st.sampled_from(list(Profile)))
def test_records_maturing_after_as_of_never_change_the_decision(
    rows: list[dict], profile: Profile
) -> None:
    policy = _policy(profile)
    ledger = _ledger(rows)
    before = decide(ledger, AS_OF, policy).to_json()
    frame = ledger.records
    future = pl.col("matured_at") > AS_OF
    corrupted = frame.with_columns(
        pl.when(future).then(-1e6).otherwise(pl.col("realized_pnl_bps")).alias("realized_pnl_bps"),
        pl.when(future).then(1e6).otherwise(pl.col("gap_bps")).alias("gap_bps"),
        pl.when(future).then(pl.lit("poisoned")).otherwise(pl.col("strategy")).alias("strategy"),
    )
    after = decide(Ledger(records=corrupted, telemetry=empty_telemetry()), AS_OF, policy)
    assert after.to_json() == before
