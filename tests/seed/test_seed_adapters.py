"""The seed's modules, used exactly as the seed's callers use them (SEED.md)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from helpers import raw_record, write_jsonl
from meta_supervisor import allocation, confidence_decay, config, strategy_cvar
from meta_supervisor.cycle.run import load_ledger

ENV = [
    "META_SUPERVISOR_RECORDS",
    "META_SUPERVISOR_TELEMETRY",
    "META_SUPERVISOR_STATE_DIR",
    "META_SUPERVISOR_POLICY",
    "META_SUPERVISOR_LEDGER",
    "META_SUPERVISOR_ROOT",
]


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    config.reset()
    yield
    config.reset()


@pytest.fixture
def configured(tmp_path, clean_env):
    paths = config.configure(
        records=tmp_path / "in" / "reconciled.jsonl",
        telemetry=tmp_path / "in" / "events.jsonl",
        state_dir=tmp_path / "state",
    )
    return paths


def _stats(pnl=400.0, **kw):
    base = {
        "pnl_sum_bps": pnl,
        "hit_rate": 0.55,
        "error_rate": 0.02,
        "avg_abs_error_bps": 20.0,
        "strategy": "momentum",
        "max_drawdown_bps": -10.0,
    }
    return base | kw


def _strict_load(text: str):
    def reject(name):
        raise ValueError(name)

    return json.loads(text, parse_constant=reject)


def _recent(hours_ago: float) -> datetime:
    # signal time whose 24 h outcome matured `hours_ago` hours before now
    return datetime.now(UTC) - timedelta(hours=24 + hours_ago)


def test_compute_weights_with_no_files_is_no_evidence(configured):
    stats = {f"a{i}": _stats(100.0 * (i + 1)) for i in range(6)}
    weights = allocation.compute_weights(stats)
    assert set(weights) == set(stats)
    assert all(0 < w <= 0.25 for w in weights.values())
    assert sum(weights.values()) <= 1.0
    assert strategy_cvar.run() == {}
    assert confidence_decay.get_confidence_multiplier("a0") == 1.0  # the prior, not the floor


def test_main_saves_plain_map_decision_and_history(configured):
    stats = {f"a{i}": _stats(100.0 * (i + 1)) for i in range(6)}
    weights = allocation.main(stats)
    saved = _strict_load(configured.allocation.read_text())
    assert saved == weights
    assert all(isinstance(v, float) for v in saved.values())
    decision = _strict_load(configured.decision.read_text())
    assert decision["weights"] == weights
    # the explanations are kept once, in the file decision.json and the history entry name
    explained = configured.state_dir / decision["explanations"]["file"]
    assert set(_strict_load(explained.read_text())) == set(stats)
    assert len(configured.history.read_text().splitlines()) == 1


def test_default_relative_paths_from_the_working_directory(tmp_path, monkeypatch, clean_env):
    monkeypatch.chdir(tmp_path)
    write_jsonl(
        tmp_path / "alpha" / "reconciled.jsonl",
        [raw_record("a0", _recent(h), -40.0 if h % 4 == 0 else 5.0, 5.0) for h in range(40)],
    )
    assert strategy_cvar.run(horizon_hours=24)["momentum"]["n"] == 40
    weights = allocation.main({"a0": _stats(), "a1": _stats()})
    saved = json.loads((tmp_path / "meta_supervisor/state/allocation.json").read_text())
    assert saved == weights
    values = confidence_decay.update_confidence_multipliers()
    on_disk = json.loads(
        (tmp_path / "meta_supervisor/state/confidence_multipliers.json").read_text()
    )
    assert on_disk == values
    assert confidence_decay.get_confidence_multiplier("a0") == values["a0"]


def test_save_weights_writes_the_plain_map_and_refuses_non_finite(configured):
    allocation.save_weights({"a": 0.25, "b": 0.1})
    assert json.loads(configured.allocation.read_text()) == {"a": 0.25, "b": 0.1}
    for bad in (math.nan, math.inf, -0.1, "0.2"):
        with pytest.raises(ValueError, match="weight of 'x'"):
            allocation.save_weights({"x": bad})
    assert json.loads(configured.allocation.read_text()) == {"a": 0.25, "b": 0.1}


def test_unusable_numbers_gate_with_a_reason_and_never_reach_the_json(configured):
    stats = {
        "text": _stats(pnl="lots"),
        "nan": _stats(hit_rate=math.nan),
        "inf": _stats(avg_abs_error_bps=math.inf),
        "hit": _stats(hit_rate=1.5),
        "neg": _stats(avg_abs_error_bps=-3.0),
        "fine": _stats(),
        "fine2": _stats(),
    }
    weights = allocation.main(stats)
    assert set(weights) == {"fine", "fine2"}
    decision = allocation.compute_decision(stats)
    for name in ("text", "nan", "inf", "hit", "neg"):
        summary = decision.agents[name]["summary"]
        assert summary.startswith("gated by usable_numbers"), summary
    _strict_load(configured.allocation.read_text())
    record = _strict_load(configured.decision.read_text())
    _strict_load(configured.history.read_text().splitlines()[-1])
    _strict_load((configured.state_dir / record["explanations"]["file"]).read_text())


def test_killed_agent_gets_nothing(configured):
    weights = allocation.compute_weights(
        {"dead": _stats(3600.0, decision="KILL"), "b": _stats(), "c": _stats()}
    )
    assert "dead" not in weights


def test_keys_the_seed_lacks_are_optional_and_missing_ones_do_not_gate(configured):
    weights = allocation.compute_weights(
        {n: {"pnl_sum_bps": 100.0, "strategy": "momentum"} for n in "abcd"}
    )
    assert weights == {n: 0.25 for n in "abcd"}


def test_strategy_cvar_run_raw_and_shrunk_reported_apart_bad_line_and_duplicates(configured):
    rows = [
        raw_record("bot", _recent(h), -100.0 if h < 2 else 5.0, 5.0, strategy="basis")
        for h in range(10)
    ]
    write_jsonl(configured.records, [*rows, "not json at all", *rows])  # duplicates + a bad line
    out = strategy_cvar.run(horizon_hours=24)
    assert set(out) == {"basis"}
    basis = out["basis"]
    for key in ("gap_cvar95_bps", "n", "worst_gap", "mean_gap"):
        assert key in basis
    assert basis["n"] == 10
    assert basis["gap_cvar95_bps"] == -105.0  # raw: n < 20, the worst gap
    assert basis["shrunk"] is True
    assert basis["gap_cvar95_used_bps"] == pytest.approx(-105.0 * 10 / 20)
    assert strategy_cvar.run(horizon_hours=4) == {}
    ledger = load_ledger(config.current_paths())
    assert (ledger.refused, ledger.duplicates) == (1, 10)


def test_the_cvar_penalty_fires_for_the_stats_strategy(configured):
    rows = [
        raw_record("x", _recent(h), -60.0 if h % 10 == 0 else 5.0, 5.0, strategy="perp_funding")
        for h in range(60)
    ]
    write_jsonl(configured.records, rows)
    stats = {n: _stats() for n in "abcd"} | {"bad": _stats(strategy="perp_funding")}
    decision = allocation.compute_decision(stats)
    factors = {f["factor"]: f["value"] for f in decision.agents["bad"]["factors"]}
    assert factors["cvar"] < 1.0
    assert decision.weights["bad"] < decision.weights["a"]


def test_confidence_is_time_aware_and_update_is_idempotent(configured):
    rows = [raw_record("wild", _recent(h), 60.0 * (-1) ** h, 0.0, sigma=5.0) for h in range(30)]
    rows += [raw_record("calm", _recent(h), 3.0 * (-1) ** h, 0.0, sigma=5.0) for h in range(30)]
    write_jsonl(configured.records, rows)
    as_of = datetime.now(UTC)
    first = confidence_decay.update_confidence_multipliers(as_of)
    second = confidence_decay.update_confidence_multipliers(as_of)
    assert first == second
    assert first["calm"] == 1.0
    assert 0.5 <= first["wild"] < 0.7
    later = confidence_decay.compute_confidence_multipliers(as_of + timedelta(days=20))
    assert first["wild"] < later["wild"] <= 1.0  # old evidence weighs less: back toward prior
    assert confidence_decay.get_confidence_multiplier("wild") == first["wild"]
    assert confidence_decay.get_confidence_multiplier("nobody") == 1.0


def test_telemetry_error_rate_is_not_read_by_compute_weights_but_stats_error_rate_gates(
    configured,
):
    weights = allocation.compute_weights({"a": _stats(error_rate=0.2), "b": _stats()})
    assert "a" not in weights
    assert "b" in weights


def test_the_seed_functions_apply_the_seed_profile_unless_a_policy_file_chooses(
    configured, tmp_path
):
    stats = {f"a{i}": _stats(100.0 * (i + 1), n_records=30) for i in range(6)}
    seed = allocation.compute_decision(stats)
    assert seed.profile == "seed"  # the cycle's default is select; the seed's API is the seed
    assert allocation.compute_weights(stats) == seed.weights
    # the seed ranks by pnl_sum: more PnL, more weight (the evidence tilt needs a std to move)
    assert seed.weights["a5"] > seed.weights["a0"]
    chosen = tmp_path / "policy.toml"
    chosen.write_text('profile = "evidence"\n', encoding="utf-8")
    config.configure(policy=chosen)
    assert allocation.compute_decision(stats).profile == "evidence"


def test_a_rendered_policy_file_does_not_switch_the_seed_functions_profile(configured, tmp_path):
    # Regression: the CLI rendered the default `profile = ...` uncommented (the fix had gone into a
    # second renderer only the tests called), so a file written by `policy show --toml` switched
    # the seed's own functions to the evidence profile. Rendered through the CLI itself.
    from typer.testing import CliRunner

    from meta_supervisor.cli import app

    stats = {f"a{i}": _stats(100.0 * (i + 1), n_records=30) for i in range(6)}
    chosen = tmp_path / "chosen.toml"
    chosen.write_text("max_weight = 0.3\n", encoding="utf-8")
    shown = CliRunner().invoke(app, ["policy", "show", "--config", str(chosen), "--toml"])
    assert shown.exit_code == 0, shown.output
    assert '# profile = "select"' in shown.stdout
    rendered = tmp_path / "rendered.toml"
    rendered.write_text(shown.stdout, encoding="utf-8")
    config.configure(policy=rendered)
    decision = allocation.compute_decision(stats)
    assert decision.profile == "seed"
    assert decision.to_dict()["policy"]["max_weight"] == 0.3
