"""Issue #13: a policy file is a trust boundary; no key is ignored, no type is coerced."""

from __future__ import annotations

from pathlib import Path

import pytest

from meta_supervisor.policy.model import PolicyError, load_policy


def _load(tmp_path: Path, text: str):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return load_policy(path)


def test_key_outside_policy_table_is_an_error(tmp_path: Path) -> None:
    """``max_weight`` written above ``[policy]`` was silently ignored."""
    with pytest.raises(PolicyError, match="'max_weight' outside the \\[policy\\] table"):
        _load(tmp_path, "max_weight = 0.05\n[policy]\nmin_records = 3\n")


def test_policy_key_that_is_not_a_table_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="key 'policy' must be a table"):
        _load(tmp_path, "policy = 3\n")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("max_weight = true", "max_weight"),
        ('max_weight = "0.5"', "max_weight"),
        ("min_records = 5.5", "min_records"),
        ("min_records = 5.0", "min_records"),
        ('min_records = "5"', "min_records"),
        ("evidence_learn_strength = 1", "evidence_learn_strength"),
        ('evidence_learn_strength = "yes"', "evidence_learn_strength"),
        ("max_weight = [0.5]", "max_weight"),
    ],
)
@pytest.mark.parametrize("table", [True, False])
def test_wrong_types_are_errors_naming_the_key(
    tmp_path: Path, line: str, key: str, table: bool
) -> None:
    text = ("[policy]\n" if table else "") + line + "\n"
    with pytest.raises(PolicyError, match=f"key '{key}'"):
        _load(tmp_path, text)


def test_right_types_still_load(tmp_path: Path) -> None:
    policy = _load(
        tmp_path,
        '[policy]\nprofile = "seed"\nmax_weight = 1\nmin_records = 3\n'
        "evidence_learn_strength = false\n",
    )
    assert policy.max_weight == 1.0 and isinstance(policy.max_weight, float)
    assert policy.min_records == 3
    assert policy.evidence_learn_strength is False
    assert policy.profile.value == "seed"


def test_misplaced_table_key_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="unknown key 'polcy'"):
        _load(tmp_path, "[polcy]\nmax_weight = 0.1\n")
