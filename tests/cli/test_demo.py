"""Through the whole cycle on files: the demo fleet, and a ledger deep in drawdown ("Done when")."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from helpers import AS_OF, raw_record, write_jsonl
from meta_supervisor.config import Paths
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research.demo import DEMO_AS_OF, write_demo_fleet
from meta_supervisor.state.files import verify_history

# None: what run_cycle loads by default (select, which has its own test below)
PROFILES = [Policy(profile=p) for p in Profile if p is not Profile.SELECT]
ALL_PROFILES = [None, *(Policy(profile=p) for p in Profile)]


def _factor(decision, agent, name):
    return next(f["value"] for f in decision.agents[agent]["factors"] if f["factor"] == name)


def _failed_gates(decision, agent):
    return [g["gate"] for g in decision.agents[agent]["gates"] if not g["passed"]]


@pytest.fixture(scope="module")
def demo_paths(tmp_path_factory):
    return write_demo_fleet(tmp_path_factory.mktemp("demo"))


@pytest.mark.parametrize(
    "policy", PROFILES, ids=lambda p: "default" if p is None else p.profile.value
)
def test_demo_fleet_decision(demo_paths, policy):
    decision, ledger = run_cycle(demo_paths, DEMO_AS_OF, policy, write=False)
    assert ledger.refused == 0
    weights = decision.weights
    # healthy agents get capital
    for healthy in ("atlas", "indus"):
        assert weights.get(healthy, 0.0) > 0.1, decision.agents[healthy]["summary"]
    # error-rate, stale and killed agents get none, with the right gate named
    assert "eridanus" not in weights
    assert _failed_gates(decision, "eridanus") == ["error_rate"]
    assert decision.agents["eridanus"]["summary"].startswith("gated by error_rate")
    assert "gemini" not in weights
    # no record in the window: too few records (and so no PnL either); the first is the reason
    assert _failed_gates(decision, "gemini")[0] == "min_records"
    assert decision.agents["gemini"]["summary"].startswith("gated by min_records")
    assert "hydra" not in weights
    assert "operator_exclusion" in _failed_gates(decision, "hydra")
    assert "risk desk" in decision.agents["hydra"]["summary"]
    # drawdown and bad-tail agents are penalised, and below the healthy ones
    assert _factor(decision, "borealis", "drawdown") < 1.0
    assert _factor(decision, "cygnus", "cvar") < 1.0
    for penalised in ("borealis", "cygnus"):
        assert weights.get(penalised, 0.0) < min(weights["atlas"], weights["indus"])
    # the miscalibrated agent's confidence is below that of the calibrated ones
    assert _factor(decision, "fornax", "confidence") < _factor(decision, "atlas", "confidence")
    assert sum(weights.values()) <= 1.0
    assert decision.cash == pytest.approx(1.0 - sum(weights.values()), abs=1e-12)
    for name, e in decision.agents.items():
        assert e["summary"], name


@pytest.mark.parametrize(
    "policy", [None, Policy(profile=Profile.SELECT)], ids=["default", "select"]
)
def test_demo_fleet_select_profile_holds_cash_only_for_a_named_cause(demo_paths, policy):
    decision, _ = run_cycle(demo_paths, DEMO_AS_OF, policy, write=False)
    assert decision.profile == "select"
    assert _failed_gates(decision, "eridanus") == ["error_rate"]
    assert _failed_gates(decision, "gemini")[0] == "min_records"
    assert "operator_exclusion" in _failed_gates(decision, "hydra")
    live = [a for a in decision.agents if not _failed_gates(decision, a)]
    assert len(live) * Policy().max_weight >= 1.0  # the cap alone holds nothing back here
    # no idle cash: what is not deployed is exactly what the named risk factors held back
    # (beyond-noise drawdown, strategy tail, broken), up to the rounding down of the weights
    held = 0.0
    for agent in live:
        steps = decision.agents[agent]["steps"]
        cut = steps["after_cap"] - steps["after_risk"]
        held += cut
        if cut > 0:
            named = [
                f
                for f in decision.agents[agent]["factors"]
                if f["factor"] in ("broken", "drawdown", "cvar") and f["value"] < 1.0
            ]
            assert named and all(
                "beyond its noise" in f["reason"] or f["reason"].startswith("broken") for f in named
            )
    assert decision.cash == pytest.approx(held, abs=1e-5)
    reason = next(f["reason"] for f in decision.agents["atlas"]["factors"] if f["factor"] == "rule")
    assert reason.startswith("follows ")


def test_demo_cycle_writes_state_and_is_reproducible(tmp_path):
    paths = write_demo_fleet(tmp_path)
    first, _ = run_cycle(paths, DEMO_AS_OF)
    assert json.loads(paths.allocation.read_text()) == first.weights
    ok, message = verify_history(paths.history)
    assert ok, message
    again = write_demo_fleet(tmp_path / "again")
    second, _ = run_cycle(again, DEMO_AS_OF)
    assert second.to_json() == first.to_json()


def _drawdown_fleet(tmp_path):
    """Six agents that made money early and have been losing for a week: deep drawdowns."""
    paths = Paths(
        records=tmp_path / "alpha" / "reconciled.jsonl",
        telemetry=tmp_path / "telemetry" / "events.jsonl",
        state_dir=tmp_path / "state",
    )
    rows = []
    for i in range(6):
        for h in range(140):
            realized = 30.0 + i if h >= 70 else -20.0  # h counts back from as_of
            ts = AS_OF - timedelta(hours=24 + 1 + h)
            rows.append(raw_record(f"agent{i}", ts, realized, realized, strategy=f"s{i % 3}"))
    write_jsonl(paths.records, rows)
    return paths


@pytest.mark.parametrize(
    "policy", ALL_PROFILES, ids=lambda p: "default" if p is None else p.profile.value
)
def test_fleet_deep_in_drawdown_leaves_visibly_less_than_full_deployment(tmp_path, policy):
    paths = _drawdown_fleet(tmp_path)
    decision, _ = run_cycle(paths, AS_OF, policy)
    assert decision.weights, "the agents are still profitable over the window"
    assert decision.gross < 0.8
    assert decision.cash > 0.2
    assert "held back" in decision.portfolio["reason"]
    for name, e in decision.agents.items():
        assert e["inputs"]["max_drawdown_bps"] <= -1000.0
        assert _factor(decision, name, "drawdown") < 1.0
        assert "drawdown" in e["summary"], e["summary"]
    saved = json.loads(paths.allocation.read_text())
    assert sum(saved.values()) == pytest.approx(decision.gross)
