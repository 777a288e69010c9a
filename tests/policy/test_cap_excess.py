"""The ``cap_excess`` policy key: read from a file by its value, validated, rendered back."""

from __future__ import annotations

from pathlib import Path

import pytest

from meta_supervisor.policy.model import CapExcess, Policy, PolicyError, load_policy
from meta_supervisor.policy.toml import render_toml


def test_cap_excess_is_named_by_its_value_in_a_file(tmp_path: Path) -> None:
    """Regression: under the strict policy types ``cap_excess = "cash"`` in a file was refused
    ("Input should be an instance of CapExcess")."""
    path = tmp_path / "p.toml"
    path.write_text('[policy]\ncap_excess = "cash"\n', encoding="utf-8")
    assert load_policy(path).cap_excess is CapExcess.CASH
    assert Policy().cap_excess is CapExcess.AGENTS  # the default: today's water-filling
    path.write_text('[policy]\ncap_excess = "bank"\n', encoding="utf-8")
    with pytest.raises(PolicyError, match="cap_excess"):
        load_policy(path)


def test_cap_excess_round_trips_through_the_rendered_file(tmp_path: Path) -> None:
    policy = Policy(cap_excess=CapExcess.CASH)
    path = tmp_path / "p.toml"
    path.write_text(render_toml(policy), encoding="utf-8")
    assert load_policy(path).fingerprint() == policy.fingerprint()
