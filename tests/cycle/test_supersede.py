"""Issue #13: a future --as-of typo was recorded and then blocked every later cycle with no
supported way back. It is refused now (see test_cycle_trust), and a wrong decision that was
recorded anyway can be superseded in the open: nothing deleted, every step in the chain."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faultkit import AS_OFS, fresh_state, make_inputs
from meta_supervisor.cli.main import app
from meta_supervisor.config import Paths
from meta_supervisor.cycle import run
from meta_supervisor.cycle.run import OutOfOrder, run_cycle
from meta_supervisor.state.files import read_history, verify_history

TYPO = AS_OFS[2] + timedelta(days=365)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    root = tmp_path_factory.mktemp("supersede")
    paths = replace(fresh_state(make_inputs(root), root / "state"), ledger=None)
    for as_of in AS_OFS[:2]:
        run_cycle(paths, as_of)
    run_cycle(paths, TYPO, now=AS_OFS[2], allow_future=True)  # recorded on purpose
    return paths


@pytest.fixture
def state(recorded: Paths, tmp_path: Path) -> Paths:
    shutil.copytree(recorded.state_dir, tmp_path / "state")
    return replace(recorded, state_dir=tmp_path / "state")


def test_a_recorded_future_typo_can_be_superseded_and_cycles_go_on(state: Paths) -> None:
    with pytest.raises(OutOfOrder):
        run_cycle(state, AS_OFS[2])
    entries = read_history(state.history)
    decision, wrong = run.supersede_latest(state, "as_of typo", "alice", AS_OFS[2])
    assert wrong.seq == 3 and decision.as_of == entries[1].decision["as_of"]
    after = read_history(state.history)
    assert len(after) == 4 and after[2] == entries[2]  # the wrong entry stays, for the audit
    note = after[3].decision["provenance"]["supersedes"]
    assert note["seq"] == 3 and note["hash"] == entries[2].hash
    assert (note["reason"], note["by"], note["restores_seq"]) == ("as_of typo", "alice", 2)
    assert after[3].decision["weights"] == entries[1].decision["weights"]
    assert verify_history(state.history)[0]
    nxt, _ = run_cycle(state, AS_OFS[2])  # allowed again, smoothing against the restored one
    assert nxt.provenance["previous_decision_hash"] == after[3].hash
    assert json.loads(state.decision.read_text())["as_of"] == nxt.as_of


def test_rerunning_the_restored_instant_smooths_against_what_it_smoothed_against(
    state: Paths,
) -> None:
    entries = read_history(state.history)
    run.supersede_latest(state, "as_of typo", "alice", AS_OFS[2])
    again, _ = run_cycle(state, AS_OFS[1])
    assert again.provenance["previous_decision_hash"] == entries[0].hash


def test_supersede_through_the_cli_and_what_it_refuses(state: Paths, tmp_path: Path) -> None:
    cli = CliRunner()
    args = ["supersede", "--state-dir", str(state.state_dir), "--by", "bob"]
    assert cli.invoke(app, [*args, "--reason", " "]).exit_code == 2
    result = cli.invoke(app, [*args, "--reason", "typo"])
    assert result.exit_code == 0, result.output
    assert "entry 3" in result.output and "superseded" in result.output
    again = cli.invoke(app, [*args, "--reason", "twice"])
    assert again.exit_code == 2 and "already supersedes" in again.output
    empty = cli.invoke(app, ["supersede", "--state-dir", str(tmp_path / "none"), "--reason", "x"])
    assert empty.exit_code == 2 and "no decision to supersede" in empty.output
    at = cli.invoke(
        app, ["explain", "--state-dir", str(state.state_dir), "--at", TYPO.isoformat(), "--json"]
    )
    assert at.exit_code == 0, at.output
    # the superseded decision was never in force: the restored one is, at the typo's instant
    assert json.loads(at.stdout)["as_of"] == read_history(state.history)[1].decision["as_of"]
