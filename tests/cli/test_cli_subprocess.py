"""The installed command as a real process: entry points, exit codes, stdout/stderr split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meta_supervisor.config import Paths
from meta_supervisor.state.files import StateLock

#: SIGKILLs and real processes: seconds each (still part of the suite).
pytestmark = pytest.mark.slow

T0 = "2026-01-15T00:00:00Z"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("META_SUPERVISOR_")}
    env["COLUMNS"] = "200"
    return env


def cli(*args: object, code: int = 0, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m meta_supervisor ARGS`` (the same app as the ``meta-supervisor`` script)."""
    result = subprocess.run(
        [sys.executable, "-m", "meta_supervisor", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=60,
    )
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    return result


def test_version_via_module_and_script() -> None:
    assert cli("--version").stdout.startswith("meta-supervisor ")
    script = Path(sys.executable).with_name("meta-supervisor")
    if script.exists():  # the console script installed with the package
        out = subprocess.run(
            [script, "--version"], check=False, capture_output=True, text=True, env=_env()
        )
        assert out.returncode == 0
        assert out.stdout == cli("--version").stdout


def test_walkthrough_in_a_working_directory(tmp_path: Path) -> None:
    cli("demo", cwd=tmp_path)
    assert (tmp_path / "demo-out" / "meta_supervisor" / "state" / "history.jsonl").exists()
    decision = json.loads(
        cli(
            "allocate", "--root", "demo-out", "--as-of", "2026-01-15T06:00:00Z", "--json",
            cwd=tmp_path,
        ).stdout
    )  # fmt: skip
    assert decision["as_of"] == "2026-01-15T06:00:00Z"
    bare = cli("history", "--json", cwd=tmp_path, code=1)
    assert bare.stdout == "", "errors never go to stdout"
    assert "no decision in the history yet" in bare.stderr
    env_root = cli("history", "--root", "demo-out", "--json", cwd=tmp_path).stdout
    assert [row["seq"] for row in json.loads(env_root)["entries"]] == [1, 2, 3]
    assert "3 entries, chain intact" in cli("verify", "--root", "demo-out", cwd=tmp_path).stdout


def test_bad_policy_key_exits_2_with_did_you_mean_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[policy]\ncvar_flor = 0.3\n")
    result = cli("policy", "validate", path, code=2)
    assert result.stdout == ""
    assert f"{path}: unknown key 'cvar_flor'; did you mean 'cvar_floor'?" in result.stderr


def test_lock_busy_exits_3(tmp_path: Path) -> None:
    with StateLock(Paths.under(tmp_path / "d").lock):
        result = cli("allocate", "--root", tmp_path / "d", "--as-of", T0, "--allow-empty", code=3)
    assert "another cycle is running" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr
