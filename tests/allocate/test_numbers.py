"""The one number parser (``allocate/numbers.py``), and the crash it closed (issue #13)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meta_supervisor import allocation
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.numbers import parse_number

HUGE = 10**400  # beyond a float: float(HUGE) raises OverflowError


@pytest.mark.parametrize("field", ["pnl_sum_bps", "hit_rate", "max_drawdown_bps", "n_records"])
def test_compute_weights_on_a_huge_integer_does_not_raise(field: str) -> None:
    """``compute_weights`` raised OverflowError on a huge integer; now the agent is gated as
    unusable and the others are allocated as before."""
    stats = {
        "huge": {"pnl_sum_bps": 50.0, "hit_rate": 0.6, field: HUGE},
        "ok": {"pnl_sum_bps": 50.0, "hit_rate": 0.6},
    }
    weights = allocation.compute_weights(stats)
    assert weights.get("huge", 0.0) == 0.0 and weights["ok"] > 0.0
    decision = allocate(stats, as_of=datetime(2026, 1, 15, tzinfo=UTC))
    failed = [g for g in decision.agents["huge"]["gates"] if not g["passed"]]
    assert failed and field in failed[0]["detail"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [(True, "boolean"), ("0.5x", "not a number"), (HUGE, "too large"), (math.nan, "finite")],
)
def test_unusable_values_say_why(value: object, problem: str) -> None:
    number, reason = parse_number(value)
    assert number is None and reason is not None and problem in reason


@given(st.integers())
def test_any_integer_is_a_number_or_unusable_never_a_crash(value: int) -> None:
    number, reason = parse_number(value)
    assert (number is None) != (reason is None)
    assert number is None or math.isfinite(number)
