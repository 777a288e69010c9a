"""The command line through Typer's test runner: the walkthrough, --json schemas, error paths."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meta_supervisor import __version__
from meta_supervisor.cli import common as cli
from meta_supervisor.cli.main import app
from meta_supervisor.config import Paths
from meta_supervisor.policy.model import Policy, load_policy
from meta_supervisor.state.files import StateLock, read_history

runner = CliRunner()
T0 = "2026-01-15T00:00:00Z"


def run(*args: str, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROOT", "RECORDS", "TELEMETRY", "STATE_DIR", "POLICY", "LEDGER"):
        monkeypatch.delenv(f"META_SUPERVISOR_{name}", raising=False)


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "demo-out"
    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    return out, result.stdout


@pytest.fixture
def root(demo_template: tuple[Path, str], tmp_path: Path) -> Path:
    """A private copy of the demo's output (tests change its state)."""
    copy = tmp_path / "demo-out"
    shutil.copytree(demo_template[0], copy)
    return copy


def test_version() -> None:
    assert run("--version").stdout.strip() == f"meta-supervisor {__version__}"


def test_every_command_has_help_with_an_example() -> None:
    commands = [
        ["demo"], ["allocate"], ["explain"], ["history"], ["diff"], ["verify"],
        ["policy", "show"], ["policy", "validate"],
        ["override", "add"], ["override", "list"], ["override", "remove"],
    ]  # fmt: skip
    for command in commands:
        text = run(*command, "--help").stdout
        assert "Examples" in text, command
        assert "meta-supervisor " + command[0] in text.split("Examples", 1)[1], command


def test_demo_leaves_two_decisions_and_ends_with_next_commands(
    demo_template: tuple[Path, str],
) -> None:
    out, stdout = demo_template
    entries = read_history(Paths.under(out).history)
    assert [e.decision["as_of"] for e in entries] == ["2026-01-14T18:00:00Z", T0]
    tail = stdout.strip().splitlines()[-7:]
    prefix = cli.invocation()  # the test runs with the same PATH and working directory
    assert all(line.strip().startswith(prefix + " ") for line in tail), tail
    for command in ("explain", "history", "diff", "verify", "allocate"):
        assert any(f"{prefix} {command}" in line for line in tail), command


def test_next_commands_work_whether_or_not_the_tool_is_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.shutil, "which", lambda name: "/usr/local/bin/" + name)
    assert cli.invocation() == "meta-supervisor"
    monkeypatch.setattr(cli.shutil, "which", lambda name: None)
    # elsewhere: this interpreter, which has the package
    assert cli.invocation().endswith(" -m meta_supervisor")
    assert sys.executable in cli.invocation()
    # in a checkout (./dev demo runs there): ./dev cli
    (tmp_path / "dev").write_text("#!/bin/sh\n")
    (tmp_path / "pyproject.toml").write_text("")
    assert cli.invocation() == "./dev cli"


def test_allocate_with_root_appends_a_decision(root: Path) -> None:
    result = run("allocate", "--root", root, "--as-of", "2026-01-15T06:00:00Z", "--json")
    decision = json.loads(result.stdout)
    assert decision["as_of"] == "2026-01-15T06:00:00Z"
    assert set(decision) >= {"weights", "cash", "gross", "agents", "portfolio", "provenance"}
    assert abs(decision["cash"] + sum(decision["weights"].values()) - 1) < 1e-9
    entries = read_history(Paths.under(root).history)
    assert len(entries) == 3
    assert decision["provenance"]["previous_decision_hash"] == entries[1].hash


def test_allocate_warns_when_the_data_is_older_than_the_window(root: Path) -> None:
    result = run("allocate", "--root", root, "--as-of", "2026-11-25T00:00:00Z", "--dry-run")
    assert "newest record matured at 2026-01-15" in result.stderr
    assert len(read_history(Paths.under(root).history)) == 2, "--dry-run wrote nothing"


def test_allocate_on_the_clock_shows_one_instant_in_whole_seconds(root: Path) -> None:
    result = run("allocate", "--root", root, "--dry-run")
    warned = re.search(r"before --as-of (\S+):", result.stderr)
    shown = re.search(r"Allocation as of (\S+) ", result.stdout)
    assert warned and shown, (result.stderr, result.stdout)
    assert warned.group(1) == shown.group(1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", shown.group(1))


def test_refused_rows_are_named_by_file_and_line_with_a_runnable_command(root: Path) -> None:
    records = Paths.under(root).records
    with records.open("a", encoding="utf-8") as f:
        f.write('{"ts": "2026-01-14T00:00:00", "agent": "atlas"}\n')
        f.write("not json\n")
    n_lines = len(records.read_text().splitlines())
    result = run("allocate", "--root", root, "--as-of", T0, "--dry-run")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("warning:") for line in lines), lines
    assert f"2 input rows refused (2 in {records})" in result.stderr
    assert f"{records} line {n_lines - 1}: ts:" in result.stderr
    assert f"{records} line {n_lines}:" in result.stderr
    command = result.stderr.split("all of them: ", 1)[1].strip()
    assert command.startswith("meta-supervisor ingest --dry-run ")
    listed = run(*command.split()[1:], "--ledger", root / "scratch-ledger")
    assert "2 refused" in listed.stdout


def test_explain_json_schema_and_selection(root: Path) -> None:
    latest = json.loads(run("explain", "cygnus", "--root", root, "--json").stdout)
    assert latest["schema"] == "meta-supervisor/explain/1"
    assert latest["seq"] == 2
    assert latest["as_of"] == T0
    assert list(latest["agents"]) == ["cygnus"]
    cygnus = latest["agents"]["cygnus"]
    assert {f["factor"] for f in cygnus["factors"]} >= {"rule", "broken", "cvar", "drawdown"}
    cvar = next(f for f in cygnus["factors"] if f["factor"] == "cvar")
    assert "strategy perp_funding" in cvar["reason"]
    assert " bps" in cvar["reason"]  # the tail in bps, against the profile's scale
    assert [o["agent"] for o in latest["overrides"]] == ["hydra"]
    assert abs(sum(p["amount"] for p in latest["cash_breakdown"]) - latest["cash"]) < 1e-9
    first = json.loads(run("explain", "--seq", "1", "--root", root, "--json").stdout)
    assert first["as_of"] == "2026-01-14T18:00:00Z"
    assert first["seq"] == 1
    # --at picks the decision in force at that instant: the latest at or before it
    at = json.loads(
        run("explain", "--at", "2026-01-14T23:59:00Z", "--format", "json", "--root", root).stdout
    )
    assert at["seq"] == 1
    assert at["hash"] == first["hash"] != latest["hash"]


def test_explain_table_and_memo_show_the_override(root: Path) -> None:
    table = run("explain", "hydra", "--root", root).stdout
    assert "operator override: EXCLUDED by risk-desk" in table
    assert "venue outage" in table
    memo = run("explain", "--format", "md", "--root", root).stdout
    assert memo.startswith("# Allocation memo")
    assert "## Operator overrides in force" in memo
    assert "| hydra | exclude |" in memo


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "cygnsu"], "did you mean 'cygnus'"),
        (["explain", "--seq", "9"], "no entry 9 (entries 1 to 2)"),
        (["explain", "--at", "2025-01-01T00:00:00Z"], "no decision at or before"),
        (["explain", "--at", "yesterday"], "--at: "),  # names the option given
        (["explain", "--seq", "1", "--at", T0], "not both"),
        (["history", "--agent", "nobody"], "agent 'nobody'"),
        (["diff", "1", "x"], "neither a history sequence number"),
        (["allocate", "--as-of", "2026-01-15T00:00:00"], "has no time zone"),
        (["override", "add", "atlas", "--exclude", "--reason", "r"], "--expires ISO or --for"),
        (["override", "add", "atlas", "--reason", "r", "--for", "1h"], "--exclude or --cap"),
        (["override", "add", "atlas", "--exclude", "--for", "1h"], "--reason is required"),
        (["override", "add", "atlas", "--cap", "1.2", "--reason", "r", "--for", "1h"], "'cap'"),
        (["override", "add", "atlas", "--exclude", "--reason", "r", "--expires", T0], "future"),
        (["override", "add", "atlaz", "--exclude", "--reason", "r", "--for", "1h"], "'atlas'"),
        (["override", "remove", "atlas"], "no override for agent 'atlas'"),
    ],
)
def test_bad_usage_exits_2_and_says_why(root: Path, args: list[str], message: str) -> None:
    result = run(*args, "--root", root, code=2)
    assert message in result.stderr


def test_missing_state_exits_1(tmp_path: Path) -> None:
    for command in (["explain"], ["history"], ["diff"], ["explain", "--seq", "1"]):
        result = run(*command, "--root", tmp_path, code=1)
        assert "no decision" in result.stderr
        assert "meta-supervisor allocate" in result.stderr


def test_history_json_and_one_agent(root: Path) -> None:
    full = json.loads(run("history", "--root", root, "--json").stdout)
    assert full["schema"] == "meta-supervisor/history/1"
    assert [row["seq"] for row in full["entries"]] == [1, 2]
    assert set(full["entries"][0]["weights"]) == {
        "atlas", "borealis", "cygnus", "eridanus", "fornax", "gemini", "hydra", "indus"
    }  # fmt: skip
    one = json.loads(
        run("history", "--agent", "borealis", "--last", "1", "--root", root, "--json").stdout
    )
    assert [row["seq"] for row in one["entries"]] == [2]
    row = one["entries"][0]["agent"]
    assert row["weight"] == full["entries"][1]["weights"]["borealis"]
    assert row["gated_by"] is None
    explained = json.loads(run("explain", "borealis", "--root", root, "--json").stdout)
    factors = {f["factor"] for f in explained["agents"]["borealis"]["factors"]}
    assert set(row["factors"]) == factors >= {"rule", "broken", "cvar", "drawdown"}
    gated = json.loads(run("history", "--agent", "eridanus", "--root", root, "--json").stdout)
    # the demo's story: eridanus's error rate crosses the gate between the two cycles
    assert gated["entries"][0]["agent"]["gated_by"] is None
    assert gated["entries"][1]["agent"]["gated_by"] == "error_rate"
    text = run("history", "--agent", "borealis", "--root", root).stdout
    assert "borealis over time" in text


def test_diff_names_the_factors_that_moved(root: Path) -> None:
    result = json.loads(run("diff", "--root", root, "--json").stdout)
    assert result["schema"] == "meta-supervisor/diff/1"
    assert (result["from"]["seq"], result["to"]["seq"]) == (1, 2)
    borealis = result["agents"]["borealis"]
    history = json.loads(run("history", "--root", root, "--json").stdout)["entries"]
    assert borealis["old_weight"] == history[0]["weights"]["borealis"]
    assert borealis["new_weight"] == history[1]["weights"]["borealis"]
    kinds = {d["kind"] for d in borealis["drivers"]}
    assert "factor" in kinds
    factor = next(d for d in borealis["drivers"] if d["kind"] == "factor")
    assert factor["effect"] == pytest.approx(factor["new"] / factor["old"])
    assert set(factor) == {"kind", "name", "old", "new", "effect", "short", "text"}
    same = json.loads(run("diff", "1", "1", "--root", root, "--json").stdout)
    assert all(not a["drivers"] for a in same["agents"].values())
    text = run("diff", "--agent", "borealis", "--root", root).stdout
    assert "borealis:" in text
    assert factor["name"] in text


def test_override_expires_across_two_cycles(root: Path) -> None:
    run(
        "override", "add", "atlas", "--cap", "0.05", "--reason", "sim review", "--for", "2h",
        "--as-of", T0, "--root", root,
    )  # fmt: skip
    listed = json.loads(
        run("override", "list", "--as-of", "2026-01-15T01:00:00Z", "--root", root, "--json").stdout
    )
    status = {o["agent"]: o["active"] for o in listed["overrides"]}
    assert status == {"atlas": True, "hydra": True}
    during = json.loads(
        run("allocate", "--as-of", "2026-01-15T01:00:00Z", "--root", root, "--json").stdout
    )
    assert during["agents"]["atlas"]["weight"] <= 0.05
    assert during["agents"]["atlas"]["override"]["reason"] == "sim review"
    assert "sim review" in run("explain", "atlas", "--root", root).stdout
    after = json.loads(
        run("allocate", "--as-of", "2026-01-15T03:00:00Z", "--root", root, "--json").stdout
    )
    assert after["agents"]["atlas"]["override"] is None
    assert after["agents"]["atlas"]["weight"] > 0.05, "back to the evidence once expired"
    assert "sim review" not in run("explain", "atlas", "--root", root).stdout
    diff = json.loads(run("diff", "--agent", "atlas", "--root", root, "--json").stdout)
    assert diff["agents"]["atlas"]["drivers"][0]["kind"] == "override"
    assert "ended" in diff["agents"]["atlas"]["text"]


def test_override_add_replaces_and_remove(root: Path) -> None:
    run(
        "override", "add", "fornax", "--exclude", "--reason", "first", "--for", "1d",
        "--as-of", T0, "--root", root,
    )  # fmt: skip
    replaced = run(
        "override", "add", "fornax", "--cap", "0.01", "--reason", "second", "--expires",
        "2026-01-16T00:00:00Z", "--as-of", T0, "--by", "alice", "--root", root, "--json",
    )  # fmt: skip
    body = json.loads(replaced.stdout)
    assert body["replaced"]["reason"] == "first"
    assert body["added"]["created_by"] == "alice"
    assert (
        "removed the cap override on fornax"
        in run("override", "remove", "fornax", "--root", root).stdout
    )
    listed = json.loads(run("override", "list", "--root", root, "--json").stdout)
    assert [o["agent"] for o in listed["overrides"]] == ["hydra"]


def test_override_list_says_what_the_latest_decision_applied(root: Path) -> None:
    run(
        "override", "add", "fornax", "--cap", "0.02", "--reason", "sim review", "--for", "24h",
        "--as-of", T0, "--root", root,
    )  # fmt: skip
    # long after the demo's data: hydra's exclusion has expired on the clock...
    later = "2030-01-01T00:00:00Z"
    listed = json.loads(run("override", "list", "--as-of", later, "--root", root, "--json").stdout)
    assert listed["latest_decision_as_of"] == T0
    status = {o["agent"]: (o["active"], o["in_latest_decision"]) for o in listed["overrides"]}
    # ...but it is in force in the latest decision; fornax was added after it
    assert status == {"hydra": (False, True), "fornax": (False, False)}
    table = run("override", "list", "--as-of", T0, "--root", root).stdout
    assert f"in latest decision ({T0})" in table
    hydra = next(line for line in table.splitlines() if line.strip().startswith("hydra"))
    fornax = next(line for line in table.splitlines() if line.strip().startswith("fornax"))
    assert "in force" in hydra
    assert "active" in fornax and "not applied (next 'allocate')" in fornax


def test_bad_overrides_file_names_entry_and_field(root: Path) -> None:
    paths = Paths.under(root)
    paths.overrides.write_text(json.dumps([{"agent": "hydra", "action": "exclude"}]))
    result = run("allocate", "--as-of", T0, "--root", root, code=2)
    assert "overrides.json: entry 1: field 'reason' is required" in result.stderr
    assert "field 'reason'" in run("override", "list", "--root", root, code=2).stderr


def test_policy_show_lists_every_field_and_renders_a_loadable_file(tmp_path: Path) -> None:
    shown = json.loads(run("policy", "show", "--json").stdout)
    assert [f["name"] for f in shown["fields"]] == list(Policy.model_fields)
    by_name = {f["name"]: f for f in shown["fields"]}
    assert by_name["max_weight"]["range"] == "(0, 1]"
    assert by_name["horizon_hours"]["range"] == "[1, 720]"
    assert by_name["max_weight"]["default"] == 0.25
    assert by_name["evidence_learn_strength"]["range"] == "true/false"
    table = run("policy", "show").stdout
    row = next(line for line in table.splitlines() if "evidence_learn_strength" in line)
    assert "true/false" in row and "inf" not in row and "True" not in row
    assert all(f["description"] for f in shown["fields"])
    path = tmp_path / "policy.toml"
    path.write_text(run("policy", "show", "--toml").stdout)
    assert load_policy(path) == Policy()
    path.write_text(path.read_text().replace("max_weight = 0.25", "max_weight = 0.2"))
    ok = run("policy", "validate", path)
    assert "1 keys differ from the defaults: max_weight" in ok.stdout
    custom = json.loads(run("policy", "show", "--config", path, "--json").stdout)
    assert {f["name"]: f["value"] for f in custom["fields"]}["max_weight"] == 0.2


def test_policy_errors_name_the_file_and_key(tmp_path: Path, root: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[policy]\nmax_wieght = 0.2\n")
    result = run("policy", "validate", path, code=2)
    assert str(path) in result.stderr
    assert "unknown key 'max_wieght'; did you mean 'max_weight'?" in result.stderr
    path.write_text("max_weight = 3\n")
    assert "key 'max_weight'" in run("policy", "validate", path, code=2).stderr
    path.write_text("max_weight = 3\nmin_records = -1\nmax_wieght = 1\n")
    several = run("policy", "validate", path, code=2).stderr
    lines = [line for line in several.splitlines() if line.strip()]
    assert len(lines) >= 3 and all(line.startswith("error:") for line in lines), lines
    path.write_text("max_weight = \n")
    assert "not valid TOML" in run("allocate", "--config", path, "--root", root, code=2).stderr


def test_verify_ok_then_names_the_edited_entry(root: Path) -> None:
    assert "2 entries, chain intact" in run("verify", "--root", root).stdout
    history = Paths.under(root).history
    lines = history.read_text().splitlines(keepends=True)
    entry = json.loads(lines[0])
    entry["decision"]["cash"] = 0.0
    lines[0] = json.dumps(entry) + "\n"
    history.write_text("".join(lines))
    result = run("verify", "--root", root, code=1)
    assert "entry 1" in result.stderr
    body = json.loads(run("verify", "--root", root, "--json", code=1).stdout)
    assert body["ok"] is False
    assert "entry 1" in body["message"]


def test_unreadable_history_line_exits_1_naming_the_line(root: Path) -> None:
    history = Paths.under(root).history
    history.write_text(history.read_text().replace('{"decision"', "{oops", 1))
    for command in (["history"], ["diff"], ["verify"]):
        result = run(*command, "--root", root, code=1)
        assert "line 1" in result.stderr, command


def test_lock_busy_exits_3(root: Path) -> None:
    paths = Paths.under(root)
    with StateLock(paths.lock):
        result = run("allocate", "--as-of", T0, "--root", root, code=3)
        assert "another cycle is running" in result.stderr
        run(
            "override", "add", "atlas", "--exclude", "--reason", "r", "--for", "1h",
            "--as-of", T0, "--root", root, code=3,
        )  # fmt: skip
    run("allocate", "--as-of", T0, "--root", root)


def test_flags_show_no_bool_type_in_help() -> None:
    text = run("allocate", "--help").stdout
    for flag in ("--dry-run", "--json"):
        line = next(line for line in text.splitlines() if flag in line)
        assert "<bool>" not in line, line
    assert "<float>" in text, "valued options still show their type"


def test_allocate_refuses_an_instant_before_the_latest_decision(tmp_path):
    from meta_supervisor.research.demo import write_demo_fleet

    write_demo_fleet(tmp_path)
    root = ["--root", str(tmp_path)]
    first = runner.invoke(app, ["allocate", *root, "--as-of", "2026-01-15T12:00:00Z"])
    assert first.exit_code == 0, first.output
    late = runner.invoke(app, ["allocate", *root, "--as-of", "2026-01-15T07:00:00Z"])
    assert late.exit_code == 2
    assert "before the latest decision" in late.stderr
    history = (tmp_path / "meta_supervisor" / "state" / "history.jsonl").read_text()
    assert len(history.splitlines()) == 1
    looked_back = runner.invoke(
        app, ["allocate", *root, "--as-of", "2026-01-15T07:00:00Z", "--dry-run"]
    )
    assert looked_back.exit_code == 0


@pytest.mark.parametrize("command", [["explain"], ["history"], ["diff"]])
def test_a_mistyped_root_is_named_as_missing_not_as_no_decision_yet(
    command: list[str], tmp_path: Path
) -> None:
    """explain, history and diff on a mistyped --root said 'no decision yet; run allocate',
    as if the fleet were new (newcomer walkthrough): they now say the directory is missing."""
    result = run(*command, "--root", str(tmp_path / "demo-ot"), code=1)
    assert "no such directory" in result.output and "demo-ot" in result.output
