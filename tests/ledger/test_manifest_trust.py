"""Issue #13: the manifest is a trust boundary; nothing the manifest does not name is deleted
when it might be committed data, and a manifest that went backwards is refused."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from test_store import snapshot, write_records

from meta_supervisor.config import Paths
from meta_supervisor.cycle.run import load_ledger
from meta_supervisor.ingest.batch import ingest
from meta_supervisor.ledger.store import MANIFEST, LedgerError, LedgerStore


def _three_batches(tmp_path: Path) -> Path:
    root = tmp_path / "L"
    ingest([write_records(tmp_path / "a.jsonl", 200)], root)
    shutil.copy(root / MANIFEST, tmp_path / "manifest-backup.json")
    ingest([write_records(tmp_path / "b.jsonl", 200, start=200)], root)
    ingest([write_records(tmp_path / "c.jsonl", 200, start=400)], root)
    return root


def _segment_files(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(root).items() if k != MANIFEST}


def test_manifest_restored_from_a_backup_deletes_nothing(tmp_path: Path) -> None:
    """The next ingest used to delete every segment the restored manifest did not name."""
    root = _three_batches(tmp_path)
    before = _segment_files(root)
    shutil.copy(tmp_path / "manifest-backup.json", root / MANIFEST)
    with pytest.raises(LedgerError, match="went backwards") as caught:
        ingest([write_records(tmp_path / "d.jsonl", 10, start=600)], root)
    assert "records/00000002-" in str(caught.value) or "records/00000003-" in str(caught.value)
    assert _segment_files(root) == before
    # a cycle reading the store refuses it too (it would decide on a third of the records)
    paths = replace(Paths.under(tmp_path / "fleet"), ledger=root)
    with pytest.raises(LedgerError, match="went backwards"):
        load_ledger(paths)


def test_manifest_with_a_segment_removed_is_refused(tmp_path: Path) -> None:
    root = _three_batches(tmp_path)
    text = (root / MANIFEST).read_text()
    manifest = LedgerStore(root).manifest()
    dropped = manifest.of("records")[0].path
    before = _segment_files(root)
    body = json.loads(text)
    body["segments"] = [s for s in body["segments"] if s["path"] != dropped]
    (root / MANIFEST).write_text(json.dumps(body))
    with pytest.raises(LedgerError, match=dropped.replace(".", r"\.")):
        ingest([write_records(tmp_path / "d.jsonl", 10, start=600)], root)
    assert _segment_files(root) == before
