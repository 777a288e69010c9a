"""The history format before explanations moved out (issue 17): each entry's decision with its
``agents`` inline, written as the writer of that format did, so that tests can build the state
directories it left and check that they are still read, verified and extended."""

from __future__ import annotations

import json
from pathlib import Path

from meta_supervisor.allocate.decision import Decision, canonical_json
from meta_supervisor.state.files import GENESIS, entry_hash


def legacy_append(path: Path, decision: Decision) -> None:
    """Append ``decision`` with its explanations inline (the old writer's exact bytes)."""
    path = Path(path)
    lines = path.read_bytes().splitlines() if path.exists() else []
    prev = json.loads(lines[-1])["hash"] if lines else GENESIS
    seq = len(lines) + 1
    body = decision.to_dict()
    line = {"seq": seq, "prev_hash": prev, "hash": entry_hash(seq, prev, body), "decision": body}
    with open(path, "ab") as handle:
        handle.write(canonical_json(line).encode() + b"\n")


def legacy_current(state_dir: Path, decision: Decision) -> None:
    """``decision.json`` and ``allocation.json`` as the old writer left them."""
    (Path(state_dir) / "decision.json").write_text(decision.to_json(), encoding="utf-8")
    (Path(state_dir) / "allocation.json").write_text(
        canonical_json(decision.weights, indent=2), encoding="utf-8"
    )
