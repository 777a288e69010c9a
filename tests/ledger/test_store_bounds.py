"""Issue #17: a records segment's per-agent bounds live in a file beside it, not in the
manifest. A live service appends every hour and its cycle parses the manifest after every
append: format 1's inline bounds grew the manifest by ~73 KB a batch at 1,000 agents (the
cycle's store read went from 1 ms to 50 ms within two days of hourly batches).

References: the records themselves (``LedgerStore.records``, filtered and grouped), and the
same store with its bounds inline (rewritten as format 1)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest
from test_store import T0, write_records

from meta_supervisor.ingest.batch import ingest
from meta_supervisor.ledger.store import BOUNDS_SUFFIX, MANIFEST, LedgerError, LedgerStore
from meta_supervisor.research.demo import write_demo_fleet


def _store(tmp_path: Path, batches: int = 3, agents: int = 9) -> Path:
    """A store of ``batches`` ingests, each two months of records (several segments), and an
    agent whose records stop in the first weeks (stale in later windows)."""
    root = tmp_path / "L"
    for k in range(batches):
        source = write_records(
            tmp_path / f"{k}.jsonl", 900, start=900 * k, agents=agents + k, step_min=97
        )
        ingest([source], root)
    early = tmp_path / "early.jsonl"
    with early.open("w", encoding="utf-8") as handle:
        for day in range(2, 30, 3):
            ts = (T0 + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")
            row = {"ts": ts, "agent": "early", "horizon_hours": 24, "realized_pnl_bps": 1.0}
            handle.write(json.dumps({**row, "expected_pnl_bps": 0.0, "symbol": "ETH"}) + "\n")
    ingest([early], root)
    return root


def _as_format_1(root: Path) -> None:
    """Rewrite the store as format 1 wrote it: every records segment's bounds inline in the
    manifest, no bounds files."""
    store = LedgerStore(root)
    body = json.loads((root / MANIFEST).read_text())
    for entry in body["segments"]:
        if entry["agents"] is None:
            segment = next(s for s in store.manifest().segments if s.path == entry["path"])
            entry["agents"] = store.agent_bounds(segment)
            (root / (entry["path"] + BOUNDS_SUFFIX)).unlink()
        entry.pop("agents_sha256")
    body["format"] = 1
    (root / MANIFEST).write_text(json.dumps(body, sort_keys=True, indent=1) + "\n")


def _bounds_from_records(root: Path) -> dict[str, dict[str, list[int]]]:
    """Per segment, ``{agent: [lo, hi]}`` of its rows, read from the segment."""
    store = LedgerStore(root)
    out = {}
    for segment in store.manifest().of("records"):
        frame = pl.read_parquet(root / segment.path)
        micros = pl.col("matured_at").dt.epoch("us")
        grouped = frame.group_by("agent").agg(micros.min().alias("lo"), micros.max().alias("hi"))
        out[segment.path] = {a: [lo, hi] for a, lo, hi in grouped.iter_rows()}
    return out


def test_a_batch_adds_a_few_hundred_bytes_to_the_manifest_whatever_the_fleet(
    tmp_path: Path,
) -> None:
    """300 agents a batch: format 1 grew the manifest by ~18 KB a batch (their bounds)."""
    root = tmp_path / "L"
    sizes = []
    for k in range(4):
        source = write_records(tmp_path / f"{k}.jsonl", 600, start=600 * k, agents=300, step_min=1)
        ingest([source], root)
        sizes.append((root / MANIFEST).stat().st_size)
    assert max(b - a for a, b in itertools.pairwise(sizes)) < 2_000
    store = LedgerStore(root)
    last = store.manifest().of("records")[-1]
    assert last.agents is None and (root / (last.path + BOUNDS_SUFFIX)).is_file()
    assert len(store.agent_bounds(last)) == 300


def test_bounds_files_hold_each_segments_own_bounds(tmp_path: Path) -> None:
    root = _store(tmp_path)
    store = LedgerStore(root)
    want = _bounds_from_records(root)
    got = {s.path: store.agent_bounds(s) for s in store.manifest().of("records")}
    assert got == want and len(got) > 3


def test_a_store_answers_alike_with_its_bounds_inline_or_beside(tmp_path: Path) -> None:
    """The agents of a window and the stale agents' latest records, against the records, for
    starts across the store's span; then the same store in format 1."""
    root = _store(tmp_path)
    store = LedgerStore(root)
    full = store.records()
    last = full["matured_at"].max()
    answers = []
    for form in ("beside", "inline"):
        if form == "inline":
            _as_format_1(root)
        manifest = store.manifest()
        got = []
        for days in (1, 20, 45, 80, 130):
            start = T0 + timedelta(days=days)
            inside = full.filter((pl.col("matured_at") > start) & (pl.col("matured_at") <= last))
            seen = store.agents_after(start, last, manifest)
            assert seen == set(inside["agent"])
            stale = store.latest_before(start, seen, manifest).sort("agent")
            before = full.filter(pl.col("matured_at") <= start)
            want = (
                before.filter(~pl.col("agent").is_in(sorted(seen)))
                .sort(["matured_at", "ts", "record_id"])
                .group_by("agent", maintain_order=True)
                .last()
                .sort("agent")
            )
            assert stale["record_id"].to_list() == want["record_id"].to_list()
            got.append((sorted(seen), stale["record_id"].to_list()))
        answers.append(got)
    assert answers[0] == answers[1]
    assert any(stale for _, stale in answers[0]) and any(seen for seen, _ in answers[0])


def test_a_format_1_store_is_read_then_its_bounds_move_beside_at_the_next_commit(
    tmp_path: Path,
) -> None:
    root = _store(tmp_path, batches=2, agents=200)
    _as_format_1(root)
    store = LedgerStore(root)
    old = store.manifest()
    assert all(s.agents for s in old.of("records"))
    assert not list(root.rglob(f"*{BOUNDS_SUFFIX}"))
    want = _bounds_from_records(root)
    assert {s.path: store.agent_bounds(s) for s in old.of("records")} == want  # read inline
    before = (root / MANIFEST).stat().st_size
    ingest([write_records(tmp_path / "new.jsonl", 900, start=5_000, agents=5)], root)
    new = store.manifest()
    assert json.loads((root / MANIFEST).read_text())["format"] == 2
    assert all(s.agents is None and s.agents_sha256 for s in new.of("records"))
    assert (root / MANIFEST).stat().st_size < before / 2  # the inline bounds are gone
    assert store.check(new) == []
    for segment in new.of("records"):  # each file is the one its digest names, and is read
        data = (root / (segment.path + BOUNDS_SUFFIX)).read_bytes()
        assert hashlib.sha256(data).hexdigest() == segment.agents_sha256
    assert {s.path: store.agent_bounds(s) for s in new.of("records")} == _bounds_from_records(root)


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_link_where_an_earlier_segments_bounds_would_move_is_refused_never_written_through(
    tmp_path: Path, link: str
) -> None:
    """A link planted at a format 1 segment's bounds path, to another segment: writing the
    bounds through it would overwrite committed data. The store is refused, naming it, as
    any file the manifest does not name, and the other segment is left whole."""
    root = _store(tmp_path, batches=2)
    _as_format_1(root)
    segments = LedgerStore(root).manifest().of("records")
    target, victim = root / (segments[0].path + BOUNDS_SUFFIX), root / segments[-1].path
    before = victim.read_bytes()
    if link == "symbolic":
        target.symlink_to(victim)
    else:
        os.link(victim, target)
    with pytest.raises(LedgerError, match=re.escape(segments[0].path + BOUNDS_SUFFIX)):
        ingest([write_records(tmp_path / "new.jsonl", 90, start=5_000, agents=5)], root)
    assert victim.read_bytes() == before


KILLED = """
import sys
from meta_supervisor.ledger import store as L
from meta_supervisor.ingest.batch import ingest

source, root = sys.argv[1:3]
prefix = f"{L.LedgerStore(root).manifest().generation + 1:08d}-"
original = L._write_bounds

def paused(path, bounds):
    digest = original(path, bounds)
    if not path.name.startswith(prefix):  # an earlier batch's bounds, moved beside
        print("PAUSED", flush=True)
        sys.stdin.read()
    return digest

L._write_bounds = paused
ingest([source], root)
"""


def test_a_kill_while_inline_bounds_move_beside_leaves_a_store_that_reads_and_heals(
    tmp_path: Path,
) -> None:
    """Killed after the first earlier segment's bounds file is written, before the commit:
    the manifest still holds them inline, the file left is neither read nor taken for
    evidence of a backwards manifest, and the next commit moves every bound beside."""
    root = _store(tmp_path, batches=2)
    _as_format_1(root)
    store = LedgerStore(root)
    old = store.manifest()
    source = write_records(tmp_path / "new.jsonl", 900, start=5_000, agents=5)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(source), str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "PAUSED"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed = f"{old.generation + 1:08d}-"
    moved = [p for p in root.rglob(f"*{BOUNDS_SUFFIX}") if not p.name.startswith(killed)]
    assert moved  # an earlier segment's bounds file, written before the kill
    assert store.manifest() == old
    leftovers = store.check(old)  # no LedgerError: not evidence of a backwards manifest
    assert leftovers and all(p.name.startswith(killed) for p in leftovers)
    ingest([source], root)
    new = store.manifest()
    assert all(s.agents is None for s in new.of("records"))
    assert {s.path: store.agent_bounds(s) for s in new.of("records")} == _bounds_from_records(root)


def _repoint(root: Path, segment_path: str, data: bytes) -> None:
    """Edit the manifest as an attacker who rewrote the bounds file would: its SHA-256 then
    names the new bytes (the check left is the bounds' own shape and range)."""
    body = json.loads((root / MANIFEST).read_text())
    entry = next(e for e in body["segments"] if e["path"] == segment_path)
    entry["agents_sha256"] = hashlib.sha256(data).hexdigest()
    (root / MANIFEST).write_text(json.dumps(body, sort_keys=True, indent=1) + "\n")


DAMAGES = [
    "deleted",
    "truncated",
    "not a map",
    "one bound",
    "lo after hi",
    "an agent left out",
    "another segment's",
    "empty",
    "too large",
    "a symbolic link",
    "a FIFO",
]


#: Damages whose bytes leave a shape or range to refuse even with the manifest's SHA-256
#: edited to match them (an agent left out is then the manifest's own trust, as format 1's
#: inline bounds; a file deleted, linked or a FIFO has no bytes to name).
SHAPE_DAMAGES = [
    d for d in DAMAGES if d not in ("deleted", "an agent left out", "a symbolic link", "a FIFO")
]


@pytest.mark.parametrize(
    ("damage", "repointed"),
    [(d, False) for d in DAMAGES] + [(d, True) for d in SHAPE_DAMAGES],
)
def test_a_missing_or_damaged_bounds_file_is_computed_again_from_its_segment(
    tmp_path: Path, damage: str, repointed: bool
) -> None:
    """Damaged alone, the file's bytes are not those the manifest names. ``repointed``: the
    manifest's SHA-256 edited to match as well (:data:`SHAPE_DAMAGES`)."""
    root = _store(tmp_path, batches=2)
    store = LedgerStore(root)
    segments = store.manifest().of("records")
    segment, other = segments[0], segments[-1]
    want = store.agent_bounds(segment)
    full = store.records()
    path = root / (segment.path + BOUNDS_SUFFIX)
    # an agent holding neither the segment's least lo nor its greatest hi
    inner = next(a for a, (lo, hi) in want.items() if lo != segment.lo and hi != segment.hi)
    lo, hi = want[inner]
    edits = {
        "truncated": path.read_bytes()[:-7],
        "not a map": b"[1, 2]",
        "one bound": orjson.dumps({**want, inner: [lo]}),
        "lo after hi": orjson.dumps({**want, inner: [hi + 1, hi]}),
        "an agent left out": orjson.dumps({a: b for a, b in want.items() if a != inner}),
        "another segment's": (root / (other.path + BOUNDS_SUFFIX)).read_bytes(),
        "empty": b"{}",
        # valid bounds but the wrong ones, read only if the size were not checked
        "too large": orjson.dumps({**want, inner: [lo, lo]}) + b" " * (200 * segment.rows),
    }
    if damage == "deleted":
        path.unlink()
    elif damage == "a symbolic link":  # to other bounds, which the manifest's digest names
        other_bounds = orjson.dumps({**want, inner: [lo, lo]})
        (tmp_path / "elsewhere.json").write_bytes(other_bounds)
        path.unlink()
        path.symlink_to(tmp_path / "elsewhere.json")
        _repoint(root, segment.path, other_bounds)
    elif damage == "a FIFO":
        path.unlink()
        os.mkfifo(path)
    else:
        path.write_bytes(edits[damage])
        if repointed:
            _repoint(root, segment.path, edits[damage])
    # the segment as the manifest now names it (its digest repointed, where it was)
    segment = next(s for s in store.manifest().of("records") if s.path == segment.path)
    # on a thread: a reader that opened the FIFO would wait for a writer forever
    got: list[dict[str, list[int]]] = []
    reader = threading.Thread(target=lambda: got.append(store.agent_bounds(segment)), daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert got == [want], "the bounds were not computed again (or the read never returned)"
    # the universe of a late window: the stale agents' latest records are found alike
    as_of = full["matured_at"].max()
    assert store.records(as_of, 6.0)["agent"].n_unique() == full["agent"].n_unique()


@pytest.mark.parametrize("kind", ["records in format 1", "telemetry"])
def test_a_manifest_entry_without_bounds_where_they_must_be_inline_is_refused(
    tmp_path: Path, kind: str
) -> None:
    paths = write_demo_fleet(tmp_path / "fleet")
    ledger = tmp_path / "L"
    ingest([paths.records, paths.telemetry], ledger)
    body = json.loads((ledger / MANIFEST).read_text())
    if kind == "telemetry":
        entry = next(e for e in body["segments"] if e["kind"] == "telemetry")
    else:
        body["format"] = 1
        entry = next(e for e in body["segments"] if e["kind"] == "records")
    entry["agents"] = None
    (ledger / MANIFEST).write_text(json.dumps(body))
    with pytest.raises(LedgerError, match=r"no per-agent bounds"):
        LedgerStore(ledger).manifest()


def test_a_source_name_that_is_not_utf8_is_stored_and_read(tmp_path: Path) -> None:
    """A batch records its source paths in the manifest; a file name that is not UTF-8 is a
    string with a lone surrogate, which the manifest's encoder escapes (orjson alone refused
    to write it, and to read the escape a format 1 manifest already holds)."""
    odd = tmp_path / os.fsdecode(b"records-\xff.jsonl")
    write_records(odd, 300)
    root = tmp_path / "L"
    ingest([odd], root)
    ingest([write_records(tmp_path / "more.jsonl", 300, start=300)], root)
    store = LedgerStore(root)
    assert store.manifest().generation == 2 and store.records().height == 600
    _as_format_1(root)
    assert LedgerStore(root).manifest().generation == 2
