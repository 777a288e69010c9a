"""Baselines: eligibility, equal weight, inverse volatility, and the seed as written."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.ingest.records import normalize_records
from meta_supervisor.policy.model import Policy
from meta_supervisor.research.baselines import (
    daily_pnl_matrix,
    eligible_agents,
    equal_weight,
    hrp_available,
    inverse_volatility,
    seed_original,
)


def _stats(**overrides):
    base = {
        "pnl_sum_bps": 100.0,
        "pnl_std_bps": 50.0,
        "hit_rate": 0.5,
        "error_rate": 0.0,
        "avg_abs_error_bps": 0.0,
        "max_drawdown_bps": 0.0,
        "n_records": 20,
        "strategy": "s",
    }
    return {**base, **overrides}


def test_eligibility_is_the_safety_gates_without_pnl_selection():
    stats = {
        "ok": _stats(),
        "losing": _stats(pnl_sum_bps=-50.0),
        "errors": _stats(error_rate=0.3),
        "thin": _stats(n_records=2),
        "killed": _stats(decision="KILL"),
        "no_telemetry": _stats(error_rate=None),
        "nan": _stats(pnl_sum_bps=math.nan),
    }
    assert eligible_agents(stats, Policy()) == ["losing", "no_telemetry", "ok"]
    # 1/3 each is above the 25% cap: capped, the rest stays in cash.
    assert equal_weight(stats, Policy()) == dict.fromkeys(["losing", "no_telemetry", "ok"], 0.25)


def test_equal_weight_is_one_over_n_below_the_cap():
    stats = {f"a{i}": _stats() for i in range(8)}
    assert equal_weight(stats, Policy()) == dict.fromkeys(stats, 1 / 8)
    assert equal_weight({}, Policy()) == {}


def test_inverse_volatility_is_proportional_to_one_over_sigma_and_fully_invested():
    sigmas = [10.0, 20.0, 40.0, 40.0, 80.0, 80.0, 80.0]
    stats = {f"a{i}": _stats(pnl_std_bps=s) for i, s in enumerate(sigmas)}
    w = inverse_volatility(stats, Policy(max_weight=1.0))
    inv = np.array([1 / s for s in sigmas])
    np.testing.assert_allclose([w[f"a{i}"] for i in range(7)], inv / inv.sum())
    capped = inverse_volatility(stats, Policy())
    assert max(capped.values()) <= 0.25 + 1e-12
    assert math.isclose(sum(capped.values()), 1.0)
    assert capped["a0"] >= capped["a1"] >= capped["a2"]


def test_seed_original_reproduces_the_one_pass_cap_bug_and_is_always_fully_invested():
    # DESIGN.md: pnl 3600/400/100/100 put an agent at 37.5% and inverted the ranking.
    stats = {
        name: _stats(pnl_sum_bps=p)
        for name, p in zip("abcd", [3600.0, 400.0, 100.0, 100.0], strict=True)
    }
    w = seed_original(stats, {}, {})
    assert w == {"a": 0.25, "b": 0.375, "c": 0.1875, "d": 0.1875}
    # Penalties never reach cash: a strategy tail and drawdowns still sum to 1.
    tails = {"s": Tail("s", 50, -80.0, -80.0)}
    stressed = {k: {**v, "max_drawdown_bps": -100.0} for k, v in stats.items()}
    conf = {"a": Confidence(0.5)}
    w2 = seed_original(stressed, conf, tails)
    assert math.isclose(sum(w2.values()), 1.0, abs_tol=1e-5)


def test_seed_original_reads_the_seed_defaults_and_gates():
    stats = {
        "missing_error": _stats(avg_abs_error_bps=None),
        "ok": _stats(),
        "errors": _stats(error_rate=0.2),
        "losing": _stats(pnl_sum_bps=0.0),
        **{f"filler{i}": _stats() for i in range(6)},  # keeps every weight under the cap
    }
    w = seed_original(stats, {}, {})
    assert set(w) == {"missing_error", "ok"} | {f"filler{i}" for i in range(6)}
    # A missing avg_abs_error became 999 in the seed: a 1/(1 + 999/75) penalty.
    ratio = w["missing_error"] / w["ok"]
    assert math.isclose(ratio, 1 / (1 + 999 / 75), rel_tol=1e-4)


def test_daily_pnl_matrix_sees_only_matured_records_in_the_window():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for d in range(10):
        for agent, pnl in (("x", 10.0 + d), ("y", -5.0)):
            rows.append(
                {
                    "ts": (t0 + timedelta(days=d)).isoformat(),
                    "agent": agent,
                    "horizon_hours": 24,
                    "realized_pnl_bps": pnl,
                    "expected_pnl_bps": 0.0,
                }
            )
    records = normalize_records(pl.DataFrame(rows)).records
    as_of = t0 + timedelta(days=6)  # records of days 0..5 have matured
    m = daily_pnl_matrix(records, as_of, Policy(lookback_hours=72.0), ["x", "y", "z"])
    np.testing.assert_allclose(m[:, 0], [13.0, 14.0, 15.0])
    np.testing.assert_allclose(m[:, 1], [-5.0, -5.0, -5.0])
    np.testing.assert_allclose(m[:, 2], 0.0)
    assert isinstance(hrp_available(), bool)


@pytest.mark.parametrize("cap", [0.1, 0.25])
def test_baselines_respect_the_cap(cap):
    stats = {f"a{i}": _stats(pnl_std_bps=5.0 + i) for i in range(12)}
    for w in (
        equal_weight(stats, Policy(max_weight=cap)),
        inverse_volatility(stats, Policy(max_weight=cap)),
    ):
        assert max(w.values()) <= cap + 1e-12 and sum(w.values()) <= 1 + 1e-12
