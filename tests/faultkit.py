"""Shared fixtures of the reliability tests: a fleet on disk, a reference run, child cycles.

A *child* is a real Python process running :func:`meta_supervisor.cycle.run.run_cycle` (or the
CLI) on a state directory, optionally with the fault hook ``META_SUPERVISOR_FAULT`` armed
(see :mod:`meta_supervisor.state.files`): ``kill:<point>`` makes it SIGKILL itself at that point,
``stop:<point>`` SIGSTOPs it so that a test can act while it holds the lock.

Children run polars single-threaded (``POLARS_MAX_THREADS=1``): with several threads polars'
group-by sums are not bitwise reproducible (the partial sums are combined in thread order), so
two runs on the same inputs can differ in the last bit and a byte comparison would test polars
instead of the crash safety under test. That non-determinism is a finding of its own (issue 7).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from meta_supervisor.allocate.decision import iso
from meta_supervisor.config import Paths
from meta_supervisor.research.demo import DEMO_AS_OF, write_demo_fleet

# Six cycles a day apart over the demo fleet's last week: the weights move enough that the
# stability step (max increase per cycle) binds, so previous weights matter.
AS_OFS = [DEMO_AS_OF - timedelta(days=5 - k) for k in range(6)]
STATE_FILES = ("history.jsonl", "decision.json", "allocation.json")
#: Each cycle's inputs file (issue 17: its explanations are built from it when read), named by
#: its history entry (1-based).
EXPLANATIONS = "explanations/{seq:08d}.inputs"

_CHILD = """
import json, sys
from pathlib import Path
from meta_supervisor.config import Paths
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.allocate.decision import parse_iso
spec = json.loads(sys.argv[1])
paths = Paths(**{k: Path(v) for k, v in spec["paths"].items()})
for k, as_of in enumerate(spec["as_ofs"]):
    decision, _ = run_cycle(paths, parse_iso(as_of), lock_timeout_s=spec["wait"])
    print(decision.as_of, decision.digest(), flush=True)
    if spec.get("snapshots"):
        import shutil
        target = Path(spec["snapshots"]) / str(k)
        target.mkdir(parents=True)
        for name in ("history.jsonl", "decision.json", "allocation.json"):
            shutil.copy(paths.state_dir / name, target / name)
        shutil.copytree(paths.state_dir / "explanations", target / "explanations")
"""


def make_inputs(root: Path) -> Paths:
    """Write the demo fleet's inputs under ``root``; return paths with a state dir to fill.

    The policy file pins the seed profile: on this fleet its weights move every cycle, so each
    state file is rewritten each cycle and every fault point is reached (crash safety does not
    depend on the profile).
    """
    paths = write_demo_fleet(root / "fleet")
    policy = root / "policy.toml"
    policy.write_text('profile = "seed"\n', encoding="utf-8")
    return replace(paths, ledger=root / "ledger", policy=policy)


def fresh_state(inputs: Paths, state_dir: Path) -> Paths:
    """A new, empty state directory over ``inputs`` (the operator overrides copied in)."""
    state_dir.mkdir(parents=True)
    if inputs.overrides.exists():
        shutil.copy(inputs.overrides, state_dir / "overrides.json")
    return replace(inputs, state_dir=state_dir)


def run_reference(paths: Paths, as_ofs: list, snapshots: Path) -> dict[str, list[bytes | None]]:
    """Run the cycles in one child, no fault; return each state file's bytes after each cycle
    (the explanations files included, ``None`` before their cycle)."""
    proc = spawn_cycles(paths, as_ofs, snapshots=snapshots)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    names = [*STATE_FILES, *(EXPLANATIONS.format(seq=k + 1) for k in range(len(as_ofs)))]
    return {
        name: [
            (snapshots / str(k) / name).read_bytes()
            if (snapshots / str(k) / name).exists()
            else None
            for k in range(len(as_ofs))
        ]
        for name in names
    }


def seed_state(paths: Paths, reference: dict[str, list[bytes | None]], cycle: int) -> None:
    """Put the reference state after ``cycle`` (0-based) into ``paths.state_dir``."""
    for name, versions in reference.items():
        data = versions[cycle]
        if data is not None:
            (paths.state_dir / name).parent.mkdir(exist_ok=True)
            (paths.state_dir / name).write_bytes(data)


def child_env(fault: str | None = None) -> dict[str, str]:
    """The environment of a child, with the fault hook armed when ``fault`` is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("META_SUPERVISOR_")}
    if fault:
        env["META_SUPERVISOR_FAULT"] = fault
    env["POLARS_MAX_THREADS"] = "1"
    return env


def paths_spec(paths: Paths) -> dict[str, str]:
    """The records, telemetry, state and ledger paths as text, for a child process's spec
    (``Paths(**{k: Path(v) ...})`` rebuilds them)."""
    return {
        "records": str(paths.records),
        "telemetry": str(paths.telemetry),
        "state_dir": str(paths.state_dir),
        "ledger": str(paths.ledger),
    }


def spawn_cycles(
    paths: Paths,
    as_ofs: list,
    *,
    fault: str | None = None,
    wait: float = 0.0,
    snapshots: Path | None = None,
) -> subprocess.Popen:
    """Start a child process running the cycles ``as_ofs`` in order on ``paths``."""
    spec = {
        "paths": {**paths_spec(paths), "policy": str(paths.policy)},
        "as_ofs": [iso(a) for a in as_ofs],
        "wait": wait,
        "snapshots": str(snapshots) if snapshots else None,
    }
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(spec)],
        env=child_env(fault),
        cwd=paths.state_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def spawn_cli(paths: Paths, *args: str, fault: str | None = None) -> subprocess.Popen:
    """Start ``meta-supervisor`` (the real CLI) on ``paths`` with ``args``."""
    env = child_env(fault)
    env["META_SUPERVISOR_LEDGER"] = str(paths.ledger)
    env["META_SUPERVISOR_POLICY"] = str(paths.policy)
    command = "from meta_supervisor.cli.main import app; app()"
    base = [
        "--records",
        str(paths.records),
        "--telemetry",
        str(paths.telemetry),
        "--state-dir",
        str(paths.state_dir),
    ]
    return subprocess.Popen(
        [sys.executable, "-c", command, *args, *base],
        env=env,
        cwd=paths.state_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def state_bytes(state_dir: Path) -> dict[str, bytes | None]:
    """Each state file's bytes (``None`` when absent) and every explanations or inputs file
    present."""
    found = {
        f"explanations/{p.name}"
        for pattern in ("*.json", "*.inputs")
        for p in (state_dir / "explanations").glob(pattern)
    }
    wanted = sorted(set(STATE_FILES) | found)
    return {
        name: (state_dir / name).read_bytes() if (state_dir / name).exists() else None
        for name in wanted
    }


def reference_at(reference: dict[str, list[bytes | None]], cycle: int) -> dict[str, bytes | None]:
    """The reference state after ``cycle`` (0-based), as :func:`state_bytes` gives it."""
    return {name: versions[cycle] for name, versions in reference.items() if versions[cycle]} | {
        name: reference[name][cycle] for name in STATE_FILES
    }


def committed_as_ofs(history: Path) -> list[str]:
    """The as_of of every committed (newline-terminated) history line."""
    if not history.exists():
        return []
    data = history.read_bytes()
    lines = data[: data.rfind(b"\n") + 1].splitlines()
    return [json.loads(line)["decision"]["as_of"] for line in lines]
