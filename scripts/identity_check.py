"""Byte-identity check for refactors: the demo's decision files, the store's hidden state and
the backtest table must not change across a move.

    .venv/bin/python scripts/identity_check.py snapshot before.json   # on the old tree
    .venv/bin/python scripts/identity_check.py snapshot after.json    # on the new tree
    .venv/bin/python scripts/identity_check.py compare before.json after.json

It drives only the command line (``python -m meta_supervisor``), so it runs unchanged on both
trees: ``demo --json``, the demo fleet ingested into a store and two store cycles (which write
``engine.state``, ``engine.json`` and ``persistence.state``), and ``backtest --json`` on two
scenarios. Every file under each state directory is hashed (SHA-256); JSON outputs are kept
whole so a difference can be read.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CLI = [sys.executable, "-m", "meta_supervisor"]
BACKTESTS = (("no_skill", 1), ("skill_blowups", 2))


def _run(*args: str) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


_SEGMENT = re.compile(rb"\d{8}-[0-9a-f]{8}")


def _content(path: Path, tmp: Path) -> bytes:
    """The bytes that carry meaning: an ``.npz`` engine state by its arrays (a zip member's
    timestamp is not content), JSON with the temporary directory and the random part of
    segment names masked (they differ on every run of this script, before or after)."""
    data = path.read_bytes()
    if data[:2] == b"PK" and path.suffix != ".inputs":  # a decision's inputs: canonical bytes
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return _canonical_engine({name: arrays[name] for name in arrays.files})
    data = data.replace(str(tmp.resolve()).encode(), b"TMP")
    data = re.sub(rb'"sha256": "[0-9a-f]{64}"', b'"sha256": "SHA"', data)
    return _SEGMENT.sub(b"SEGMENT", data)


def _canonical_engine(arrays: dict[str, np.ndarray]) -> bytes:
    """The engine state's arrays with agents and strategies in name order (the engine keeps
    them in first-seen order, which a polars group-by does not fix)."""
    agents = np.argsort(arrays["names"], kind="stable")
    strategies = np.argsort(arrays["t_names"], kind="stable")
    offsets = arrays["t_offsets"]
    parts = [arrays["header"].tobytes()]
    for name in sorted(arrays):
        if name in ("header", "t_offsets", "t_buffer"):
            continue
        order = agents if name == "names" or name.startswith(("a_", "c_", "r_")) else strategies
        values = arrays[name]
        if name == "r_ring":  # the loss tails: one block of slots per agent
            values = values.reshape(agents.size, -1)
        if name.endswith("_levels"):  # exact sums: the levels, a (levels, groups) grid
            order = np.arange(values.shape[0])
        elif name.endswith("_digits"):
            values = values.T
        parts.append(name.encode() + values[order].tobytes())
    for i in strategies:
        parts.append(arrays["t_buffer"][int(offsets[i]) : int(offsets[i + 1])].tobytes())
    return b"".join(parts)


def _hashes(folder: Path, tmp: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(_content(p, tmp)).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def snapshot() -> dict[str, object]:
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        out["demo_json"] = _run("demo", "--out", str(root), "--json")
        out["demo_state"] = _hashes(root / "meta_supervisor" / "state", Path(tmp))
        _run(
            "ingest",
            str(root / "alpha" / "reconciled.jsonl"),
            str(root / "telemetry" / "events.jsonl"),
            "--root",
            str(root),
        )
        state = Path(tmp) / "store-state"
        for as_of in ("2026-01-14T18:00:00Z", "2026-01-15T00:00:00Z"):
            _run("allocate", "--root", str(root), "--state-dir", str(state), "--as-of", as_of)
        out["store_state"] = _hashes(state, Path(tmp))
        out["store_decision"] = (state / "decision.json").read_text()
    for name, seed in BACKTESTS:
        out[f"backtest_{name}_{seed}"] = _run(
            "backtest", "--scenario", name, "--seed", str(seed), "--json"
        )
    return out


def main() -> None:
    if sys.argv[1] == "snapshot":
        Path(sys.argv[2]).write_text(json.dumps(snapshot(), indent=1, sort_keys=True))
        return
    before = json.loads(Path(sys.argv[2]).read_text())
    after = json.loads(Path(sys.argv[3]).read_text())
    bad = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    for key in bad:
        print(f"DIFFERS: {key}")
    print(f"{len(before) - len(bad)} of {len(before)} outputs byte-identical")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
