"""Conventions every command keeps: -h, no ``<bool>`` type on flags, COLUMNS and NO_COLOR,
numbers never cut at 80 columns, a schema key on every --json output (documented in
docs/CLI.md), a JSON error object under --json, --root everywhere, ingest --max-refused, and
override list's status at the latest decision's as_of."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meta_supervisor.cli import common
from meta_supervisor.cli.ingest import refused_limit
from meta_supervisor.cli.main import app
from meta_supervisor.config import Paths
from meta_supervisor.errors import BadInput
from meta_supervisor.state.files import read_history

runner = CliRunner()
T0 = "2026-01-15T00:00:00Z"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "CLI.md"
COMMANDS = [
    ["demo"], ["allocate"], ["explain"], ["history"], ["diff"], ["verify"], ["backtest"],
    ["ingest"], ["quarantine"], ["policy", "show"], ["policy", "validate"],
    ["override", "add"], ["override", "list"], ["override", "remove"],
]  # fmt: skip


def run(*args: object, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def cli(*args: object, code: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
    """A real process (piped, not a terminal) with ``env`` added."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("META_SUPERVISOR_")}
    base.pop("COLUMNS", None)
    base.pop("NO_COLOR", None)
    base.pop("FORCE_COLOR", None)
    result = subprocess.run(
        [sys.executable, "-m", "meta_supervisor", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        env=base | env,
        timeout=120,
    )
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    return result


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROOT", "RECORDS", "TELEMETRY", "STATE_DIR", "POLICY", "LEDGER"):
        monkeypatch.delenv(f"META_SUPERVISOR_{name}", raising=False)


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo-out"
    result = runner.invoke(app, ["demo", "--root", str(out)])
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture
def root(demo_template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "demo-out"
    shutil.copytree(demo_template, copy)
    return copy


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_dash_h_is_help_and_no_flag_shows_a_bool_type(command: list[str]) -> None:
    short = run(*command, "-h").stdout
    assert short == run(*command, "--help").stdout
    assert "Usage: " in short and "-h" in short
    assert "<bool>" not in short and "BOOLEAN" not in short


def test_top_level_dash_h() -> None:
    assert "Usage: " in run("-h").stdout
    assert "<bool>" not in run("-h").stdout


# ---------------------------------------------------------------- widths and colour


def test_output_width_honours_columns_when_piped() -> None:
    assert common.output_width(False, {"COLUMNS": "80"}) == 80
    assert common.output_width(False, {}) == 160
    assert common.output_width(False, {"COLUMNS": "wide"}) == 160
    assert common.output_width(True, {"COLUMNS": "80"}) is None  # rich reads the terminal


def test_at_80_columns_no_line_is_longer_and_no_number_or_date_is_cut(root: Path) -> None:
    history = json.loads(run("history", "--root", root, "--json").stdout)
    for command in (
        ["allocate", "--as-of", "2026-01-15T06:00:00Z", "--dry-run"],
        ["history"],
        ["explain", "hydra"],
        ["diff"],
    ):
        out = cli(*command, "--root", root, COLUMNS="80").stdout
        assert max(len(line) for line in out.splitlines()) <= 80, (command, out)
        assert "…" not in out, (command, out)
        if command[0] in ("allocate", "explain"):
            assert "2026-01-18T00:00:00Z" in out  # the exclusion's expiry, never folded
    text = cli("history", "--root", root, COLUMNS="80").stdout
    for entry in history["entries"]:
        for name, weight in entry["weights"].items():
            assert re.search(rf"{entry['as_of']}\s+{name}\s+{weight:.2%}", text), (name, text)


def test_allocation_table_is_wide_when_columns_allow(root: Path) -> None:
    out = cli("explain", "--root", root, COLUMNS="200").stdout  # not the table: sanity
    assert out
    wide = cli("allocate", "--as-of", "2026-01-15T06:00:00Z", "--dry-run", "--root", root)
    header = next(line for line in wide.stdout.splitlines() if " agent " in line)
    shown = ["rule", "broken", "drawdown", "cvar"]  # the default profile's (select)
    assert header.split() == ["agent", "strategy", "weight", *shown, "why"]


_COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;)[0-9;]*m")


def test_no_color_turns_colour_off(root: Path) -> None:
    args = ("allocate", "--as-of", "2026-01-15T06:00:00Z", "--dry-run", "--root", root)
    assert _COLOUR.search(cli(*args, FORCE_COLOR="1").stdout)
    assert not _COLOUR.search(cli(*args, FORCE_COLOR="1", NO_COLOR="1").stdout)


# ---------------------------------------------------------------- JSON


def _schemas() -> list[str]:
    return [v for k, v in vars(common).items() if k.endswith("_SCHEMA")]


def test_every_schema_is_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for schema in [*_schemas(), "meta-supervisor/decision/1", "meta-supervisor/policy/1"]:
        assert f"`{schema}`" in docs, schema


def test_every_json_output_has_a_schema_key(root: Path, tmp_path: Path) -> None:
    records = tmp_path / "r.jsonl"
    good = {"ts": "2026-01-01T00:00:00Z", "agent": "a", "horizon_hours": 24}
    good |= {"realized_pnl_bps": 1.5, "expected_pnl_bps": 1.0, "run_id": "q1"}
    bad = {"ts": "2026-01-01T00:00:00", "agent": "a"}  # no time zone: refused
    records.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    policy = tmp_path / "p.toml"
    policy.write_text("[policy]\nmax_weight = 0.3\n", encoding="utf-8")
    outputs = {
        "allocate": run("allocate", "--as-of", "2026-01-15T06:00:00Z", "--root", root, "--json"),
        "explain": run("explain", "--root", root, "--json"),
        "history": run("history", "--root", root, "--json"),
        "diff": run("diff", "--root", root, "--json"),
        "verify": run("verify", "--root", root, "--json"),
        "override list": run("override", "list", "--root", root, "--json"),
        "override add": run(
            *("override", "add", "fornax", "--cap", "0.02", "--reason", "r", "--for", "24h"),
            *("--as-of", T0, "--root", root, "--json"),
        ),
        "policy show": run("policy", "show", "--json"),
        "policy validate": run("policy", "validate", policy, "--json"),
        "ingest": run(
            "ingest", root / "alpha" / "reconciled.jsonl", "--root", root, "--json", "--dry-run"
        ),
        "quarantine": None,
        "backtest": run(
            "backtest", "--scenario", "no_skill", "--seed", "1", "--every", "24h", "--json"
        ),
        "demo": run("demo", "--root", tmp_path / "d", "--json"),
    }
    run("ingest", root / "alpha" / "reconciled.jsonl", records, "--root", root)
    outputs["quarantine"] = run("quarantine", "--root", root, "--json")
    for name, result in outputs.items():
        body = json.loads(result.stdout)
        assert body["schema"].startswith("meta-supervisor/"), name


def test_errors_under_json_print_a_json_error_object(root: Path) -> None:
    bad_agent = run("explain", "nobody", "--root", root, "--json", code=2)
    body = json.loads(bad_agent.stdout)
    assert body == {
        "schema": common.ERROR_SCHEMA,
        "error": body["error"],
        "hint": None,
        "exit_code": 2,
    }
    assert "'nobody' is not in the decision" in body["error"]
    usage = run("history", "--bogus", "--json", code=2)
    assert json.loads(usage.stdout)["error"] == "No such option: --bogus"
    md = run("explain", "nobody", "--format", "json", "--root", root, code=2)
    assert json.loads(md.stdout)["exit_code"] == 2
    history = Paths.under(root).history
    history.write_text(history.read_text().replace('"cash":', '"cash": 0.5, "x":', 1))
    broken = run("verify", "--root", root, "--json", code=1)
    body = json.loads(broken.stdout)  # one document: verify's own report, no error object
    assert body["schema"] == "meta-supervisor/verify/1" and body["ok"] is False
    plain = run("explain", "nobody", "--root", root, code=2)
    assert plain.stdout == ""  # without --json errors go to stderr only


# ---------------------------------------------------------------- flags


def test_demo_takes_root_like_every_command_and_out_still_works(tmp_path: Path) -> None:
    run("demo", "--root", tmp_path / "a")
    run("demo", "--out", tmp_path / "b")
    for name in ("a", "b"):
        assert len(read_history(Paths.under(tmp_path / name).history)) == 2


def test_allocate_reads_the_store_named_by_ledger(root: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    run("ingest", root / "alpha" / "reconciled.jsonl", root / "telemetry" / "events.jsonl",
        "--ledger", store)  # fmt: skip
    by_files = json.loads(
        run("allocate", "--as-of", T0, "--root", root, "--dry-run", "--json").stdout
    )
    by_store = json.loads(
        run(
            "allocate", "--as-of", T0, "--root", root, "--ledger", store, "--dry-run", "--json"
        ).stdout
    )
    assert by_store["weights"] == by_files["weights"]
    missing = run("allocate", "--root", root, "--ledger", tmp_path / "none", code=2)
    assert "no ledger store there" in missing.stderr


def test_max_refused_count_and_share() -> None:
    assert refused_limit(None, 8) is None
    assert refused_limit("0", 8) == 0
    assert refused_limit("3", 8) == 3
    assert refused_limit("50%", 8) == 4
    assert refused_limit("12.5%", 8) == 1
    for bad in ("x", "-1", "1.5", "101%"):
        with pytest.raises(BadInput):
            refused_limit(bad, 8)


def test_ingest_max_refused_exits_1_for_cron(tmp_path: Path) -> None:
    """Regression: ``ingest`` exited 0 with 5 of 8 rows refused; cron had nothing to alarm on."""
    good = {
        "ts": "2026-01-01T00:00:00Z",
        "agent": "a",
        "horizon_hours": 24,
        "realized_pnl_bps": 1.5,
        "expected_pnl_bps": 1.0,
    }
    lines = [json.dumps(good | {"run_id": f"r{i}"}) for i in range(3)]
    lines += ['{"ts": "2026-01-01T00:00:00", "agent": "a"}'] * 5
    path = tmp_path / "r.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    ledger = tmp_path / "ledger"
    ok = run("ingest", path, "--ledger", ledger, "--json", "--max-refused", "5")
    assert json.loads(ok.stdout)["over_max_refused"] is False
    over = run("ingest", path, "--ledger", ledger, "--json", "--max-refused", "50%", code=1)
    assert "5 of 8 rows refused, more than --max-refused 50% allows (4)" in over.stderr
    body = json.loads(over.stdout)  # the report, then no second JSON document
    assert body["schema"] == "meta-supervisor/ingest/1" and body["over_max_refused"] is True
    assert run("ingest", path, "--ledger", ledger).exit_code == 0  # no threshold: as before
    bad = run("ingest", path, "--ledger", ledger, "--max-refused", "lots", code=2)
    assert "--max-refused" in bad.stderr


def test_override_list_status_at_the_latest_decision_not_the_clock(root: Path) -> None:
    """Regression: right after the README's ``override add`` (demo data in January 2026),
    ``override list`` called the new override expired: its status was taken at the clock."""
    run("override", "add", "fornax", "--cap", "0.02", "--reason", "sim under review",
        "--for", "24h", "--as-of", T0, "--root", root)  # fmt: skip
    body = json.loads(run("override", "list", "--root", root, "--json").stdout)
    assert body["as_of"] == T0 == body["latest_decision_as_of"]
    status = {o["agent"]: o["active"] for o in body["overrides"]}
    assert status == {"fornax": True, "hydra": True}
    table = run("override", "list", "--root", root).stdout
    assert "expired" not in table and "active" in table
    later = json.loads(
        run("override", "list", "--root", root, "--as-of", "2026-01-20T00:00:00Z", "--json").stdout
    )
    assert not any(o["active"] for o in later["overrides"])
