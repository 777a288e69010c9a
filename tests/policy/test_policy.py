"""policy: the seed's defaults, validation that names the field, TOML round trip, fingerprint."""

from __future__ import annotations

import pytest

from meta_supervisor.policy.model import Policy, PolicyError, load_policy, make_policy
from meta_supervisor.policy.toml import render_toml


def test_defaults_are_the_seeds_constants():
    p = Policy()
    assert (p.max_weight, p.confidence_floor) == (0.25, 0.50)
    assert (p.cvar_k, p.cvar_floor, p.drawdown_k, p.drawdown_floor) == (0.015, 0.25, 0.01, 0.4)
    assert (p.sim_error_scale_bps, p.max_error_rate, p.horizon_hours) == (75.0, 0.15, 24)


@pytest.mark.parametrize(
    ("key", "value"),
    [("max_weight", 1.5), ("max_weight", 0), ("confidence_floor", -0.1), ("horizon_hours", 0),
     ("cvar_prior_bps", 5.0), ("gross_cap", 2.0), ("no_trade_band", -1)],
)  # fmt: skip
def test_out_of_range_value_names_the_field(key, value):
    with pytest.raises(PolicyError, match=key):
        make_policy({key: value})


def test_unknown_key_suggests_the_close_one(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text("[policy]\nmax_weigth = 0.2\n")
    with pytest.raises(PolicyError, match=r"policy.toml.*max_weigth.*did you mean 'max_weight'"):
        load_policy(path)


def test_floor_above_prior_is_refused():
    with pytest.raises(PolicyError, match="confidence_prior"):
        make_policy({"confidence_floor": 0.9, "confidence_prior": 0.8})


@pytest.mark.parametrize(
    "values", [{"max_weight": 0.2, "lookback_hours": 72.0}, {"profile": "seed"}, {}]
)
def test_policy_show_toml_round_trips_through_policy_validate(tmp_path, values):
    """What ``policy show --toml`` prints is a file ``policy validate`` accepts, loading to the
    same policy (same fingerprint); a profile left to the default stays commented out."""
    from typer.testing import CliRunner

    from meta_supervisor.cli import app

    runner = CliRunner()
    chosen = tmp_path / "chosen.toml"
    chosen.write_text("".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in values.items()))
    shown = runner.invoke(app, ["policy", "show", "--config", str(chosen), "--toml"])
    assert shown.exit_code == 0, shown.output
    rendered = tmp_path / "rendered.toml"
    rendered.write_text(shown.stdout)
    checked = runner.invoke(app, ["policy", "validate", str(rendered), "--json"])
    assert checked.exit_code == 0, checked.output
    assert load_policy(rendered).fingerprint() == load_policy(chosen).fingerprint()
    assert ("\nprofile = " in shown.stdout) == ("profile" in values)


def test_toml_round_trip_and_fingerprint(tmp_path):
    policy = make_policy({"max_weight": 0.2, "lookback_hours": 72.0})
    path = tmp_path / "p.toml"
    path.write_text(render_toml(policy))
    loaded = load_policy(path)
    assert loaded == policy
    assert loaded.fingerprint() == policy.fingerprint()
    assert Policy().fingerprint() != policy.fingerprint()
    assert load_policy(None) == Policy()
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "missing.toml")


def test_the_select_profile_refuses_cadence_off():
    """Regression (review): with cadence_history_hours = 0 the select profile's broken-agent
    cut had no history to read and was silently off, its reason blaming the data."""
    with pytest.raises(PolicyError, match="cadence_history_hours"):
        make_policy({"profile": "select", "cadence_history_hours": 0})
    assert make_policy({"profile": "evidence", "cadence_history_hours": 0}).profile == "evidence"
