"""The Markdown memo and the attribution numbers behind it (cash breakdown, diff effects)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.decision import fingerprint
from meta_supervisor.allocate.inputs import Override, Tail
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.views.attribution import (
    STEPS,
    cash_breakdown,
    compare_decisions,
    fleet_quality,
)
from meta_supervisor.views.memo import decision_memo, md_cell

T0 = datetime(2026, 1, 15, tzinfo=UTC)
SEED = Policy(profile=Profile.SEED)


def _stats(pnl: float, hit: float = 0.6, dd: float = 0.0, err: float = 5.0) -> dict[str, object]:
    return {
        "pnl_sum_bps": pnl,
        "hit_rate": hit,
        "error_rate": 0.01,
        "avg_abs_error_bps": err,
        "strategy": "trend",
        "max_drawdown_bps": dd,
        "n_records": 50,
    }


def _fleet() -> dict[str, dict[str, object]]:
    return {
        "a": _stats(3600.0),
        "b": _stats(400.0, dd=-30.0),
        "c": _stats(100.0, err=80.0),
        "d": _stats(-5.0),
    }


def _decision(**kwargs: object) -> dict[str, object]:
    """The fleet under the seed profile (the expected figures below are its)."""
    tails = {"trend": Tail("trend", 40, -20.0, -20.0, window_hours=720)}
    kwargs.setdefault("policy", SEED)
    return allocate(_fleet(), as_of=T0, tails=tails, **kwargs).to_dict()  # type: ignore[arg-type]


def _rows(memo: str) -> list[str]:
    return [line for line in memo.splitlines() if line.startswith("|")]


def test_md_cell_escapes_pipes_and_newlines() -> None:
    assert md_cell("avg |gap| 5\nbps") == "avg \\|gap\\| 5 bps"


def test_memo_is_self_contained() -> None:
    cap = Override("b", "cap", "sim under review", T0 + timedelta(days=1), cap=0.05)
    decision = _decision(overrides=[cap])
    memo = decision_memo(decision, seq=7, entry_hash="f" * 64, version="9.9")
    assert memo.startswith(f"# Allocation memo: decision as of {decision['as_of']}")
    assert "### How this decision was made" in memo
    for name, e in decision["agents"].items():
        assert f"### {name} ({e['strategy']}): {e['weight']:.2%}" in memo
        for g in e["gates"]:
            assert f"| {g['gate']} |" in memo
        for f in e["factors"]:
            assert md_cell(f["reason"]) in memo
    # one "weight after every step" table per agent, in pipeline order
    order = [key for key, _ in STEPS]
    positions = [memo.index(f"| {key} |") for key in order]
    assert positions == sorted(positions)
    assert "| b | cap | 5.00% | sim under review |" in memo
    assert "**Operator override:** capped at 5.00%" in memo
    assert f"`{fingerprint(decision)}`" in memo
    assert decision["provenance"]["policy_fingerprint"] in memo
    assert "#7, chain hash `" + "f" * 64 in memo
    # every table row has as many cells as its header: no unescaped pipe broke a row
    for line in _rows(memo):
        cells = re.split(r"(?<!\\)\|", line)
        header = next(h for h in reversed(_rows(memo[: memo.index(line)] + line)) if "---" not in h)
        assert len(cells) == len(re.split(r"(?<!\\)\|", header)), line


def test_memo_without_overrides_says_so() -> None:
    memo = decision_memo(_decision(), agents=["a"])
    assert "None: every weight above follows from the evidence" in memo
    assert "### a (trend)" in memo
    assert "### b (trend)" not in memo


def test_cash_breakdown_adds_up_to_the_cash_on_the_demo_like_fleet() -> None:
    decision = _decision()
    parts = cash_breakdown(decision)
    assert math.fsum(p["amount"] for p in parts) == pytest.approx(decision["cash"], abs=1e-9)
    assert {p["cause"] for p in parts} >= {"risk"}


@given(
    pnls=st.lists(st.floats(-50, 5000), min_size=1, max_size=8),
    dd=st.floats(-200, 0),
    cvar=st.floats(-100, 0),
    previous=st.booleans(),
)
def test_cash_breakdown_always_sums_to_cash(
    pnls: list[float], dd: float, cvar: float, previous: bool
) -> None:
    stats = {f"a{i}": _stats(p, dd=dd * (i % 2)) for i, p in enumerate(pnls)}
    tails = {"trend": Tail("trend", 40, cvar, cvar)}
    prev = {f"a{i}": 0.02 * i for i in range(len(pnls))} if previous else None
    decision = allocate(stats, as_of=T0, tails=tails, previous=prev).to_dict()
    total = math.fsum(p["amount"] for p in cash_breakdown(decision))
    assert total == pytest.approx(1.0 - math.fsum(decision["weights"].values()), abs=1e-9)


def test_diff_effects_multiply_to_the_share_change() -> None:
    """Independent check: share_new / share_old = Π quality-factor ratios · Σq_old / Σq_new."""
    old = _decision()
    stats = _fleet()
    stats["a"] = _stats(2500.0, hit=0.7)
    stats["c"] = _stats(300.0, err=40.0)
    new = allocate(
        stats, as_of=T0 + timedelta(hours=1), policy=SEED, previous=old["weights"]
    ).to_dict()
    diff = compare_decisions(old, new)
    for name in ("a", "b", "c"):
        drivers = diff["agents"][name]["drivers"]
        product = math.prod(
            d["effect"]
            for d in drivers
            if d["kind"] == "fleet"
            or (d["kind"] == "factor" and d["name"] not in ("cvar", "drawdown"))
        )
        ratio = (
            new["agents"][name]["steps"]["share_before_risk"]
            / old["agents"][name]["steps"]["share_before_risk"]
        )
        assert product == pytest.approx(ratio, rel=1e-3), name
    assert fleet_quality(old) == pytest.approx(
        sum(e["steps"]["quality"] for e in old["agents"].values())
    )
    # gated agent d: nothing about factors, its weight stays 0
    assert diff["agents"]["d"]["change"] == 0
    assert diff["agents"]["a"]["change"] == pytest.approx(
        new["agents"]["a"]["weight"] - old["agents"]["a"]["weight"]
    )


def test_diff_names_a_flipped_gate_and_a_policy_change() -> None:
    old = _decision()
    stats = _fleet()
    stats["b"] = dict(stats["b"], error_rate=0.5)
    wider = SEED.model_copy(update={"max_weight": 0.3})
    new = allocate(stats, as_of=T0, policy=wider, previous=old["weights"])
    diff = compare_decisions(old, new.to_dict())
    b = diff["agents"]["b"]
    assert b["new_weight"] == 0
    assert b["drivers"][0]["kind"] == "gate"
    assert "gate error_rate fails now" in b["text"]
    assert diff["policy_changes"] == {"max_weight": {"old": 0.25, "new": 0.3}}


def test_memo_reading_guide_gives_the_code_s_step_order_and_the_no_trade_band() -> None:
    memo = decision_memo(_decision())
    guide = memo.split("### How this decision was made", 1)[1].split("### What changed", 1)[0]
    # the allocation caps the quality shares first, then applies the risk multipliers
    order = ["per-agent cap", "risk multipliers", "gross cap", "stability rule", "rounded down"]
    positions = [guide.index(word) for word in order]
    assert positions == sorted(positions), positions
    assert "no-trade band" in guide and "0.25 pp" in guide  # the decision's own band
    assert "spread over cycles" not in memo


def test_stability_says_what_it_did_per_agent() -> None:
    target = _decision()["agents"]
    # previous weights that put a inside the band, b far below (limited), c above (decrease)
    a, b, c = (target[n]["steps"]["after_gross_cap"] for n in ("a", "b", "c"))
    assert b > 0.06 and c > 0, "the fleet gives b room for a limited increase"
    previous = {"a": a - 0.001, "b": b - 0.06, "c": c + 0.03, "d": 0.0}
    decision = _decision(previous=previous)
    agents = decision["agents"]
    # independent of the notes: what portfolio.smooth did (band 0.25 pp, limit 5 pp)
    assert agents["a"]["steps"]["after_stability"] == pytest.approx(previous["a"])
    assert agents["b"]["steps"]["after_stability"] == pytest.approx(previous["b"] + 0.05)
    assert agents["c"]["steps"]["after_stability"] == pytest.approx(c)
    memo = decision_memo(decision)
    assert (
        f"held at previous {previous['a']:.2%} (move of +0.10 pp inside the no-trade band " in memo
    )
    assert "increase limited to +5.00 pp per cycle" in memo
    assert f"decrease from {previous['c']:.2%} applied in full" in memo
    assert "moves limited from the previous" not in memo
    stability = next(p for p in cash_breakdown(decision) if p["cause"] == "stability")
    # the line says what it is: band holds and increase limits, net
    assert stability["text"].startswith("stability, net (")
    assert "increases limited +1.00 pp" in stability["text"]  # target 6 pp above, 5 allowed
    assert "no-trade-band holds" in stability["text"]
    held_and_limited = (a - previous["a"]) + (b - previous["b"] - 0.05)
    assert stability["amount"] == pytest.approx(held_and_limited, abs=1e-9)


def test_the_memo_states_the_min_records_gate_as_applied():
    """Regression (newcomer review): the memo said "fewer than 5 records" while the gate also
    passes an agent at 60% of its own cadence (a holiday week)."""
    from meta_supervisor.views.memo import gate_rules

    agents = {"a": {"gates": [{"gate": "min_records", "passed": True, "detail": ""}]}}
    on = gate_rules({"agents": agents, "policy": Policy().model_dump(mode="json")})
    assert "60% of what it normally reports" in on[0] and "fewer than 5 records" in on[0]
    off = Policy(profile=Profile.EVIDENCE, cadence_history_hours=0).model_dump(mode="json")
    assert "normally" not in gate_rules({"agents": agents, "policy": off})[0]
