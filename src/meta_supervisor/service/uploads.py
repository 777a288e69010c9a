"""Record and telemetry uploads: the body goes through :func:`meta_supervisor.ingest.batch.ingest`.

The same reading, validation, quarantine rules and de-duplication as ``meta-supervisor
ingest``, with two differences an HTTP client needs:

* **All or nothing** (``strict``): a batch with any refused row stores nothing, not even the
  quarantine, and the answer names each refused line and field; the client fixes the batch and
  sends it again. A batch that passes is committed as one ledger batch (a kill before the
  manifest is replaced leaves the previous snapshot).
* **Idempotent under the client's key**: the ``Idempotency-Key`` and the body's SHA-256 are
  recorded in the ledger manifest *with* the batch (one atomic commit), so a retry after a lost
  answer or a killed server finds them and gets the first answer back (``replayed``) without
  storing anything twice; the same key with another body is refused (409). A batch that had
  nothing new to store records no key: a retry of it is again a batch with nothing new.

The body is spooled to ``LEDGER/.uploads/`` (removed after the ingest, and at start for a body
a killed server left behind).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meta_supervisor.ingest.batch import IngestReport, ingest
from meta_supervisor.ledger.store import LedgerBusy, LedgerStore

__all__ = ["KEY_PATTERN", "UploadOutcome", "Uploads", "spool_dir"]

KEY_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_ERRORS = 100


@dataclass(frozen=True)
class UploadOutcome:
    """HTTP status and JSON body of one upload."""

    status: int
    body: dict[str, Any]


def spool_dir(ledger: Path) -> Path:
    """Where upload bodies wait for their ingest."""
    return Path(ledger) / ".uploads"


class Uploads:
    """Serialises this service's uploads and applies the idempotency rule."""

    def __init__(self, ledger: Path) -> None:
        self.ledger = Path(ledger)
        self._lock = threading.Lock()

    def clean_spool(self) -> None:
        """Remove bodies a killed server left behind (their ingest never committed)."""
        shutil.rmtree(spool_dir(self.ledger), ignore_errors=True)

    def _recorded(self, key: str) -> dict[str, Any] | None:
        store = LedgerStore(self.ledger)
        if not store.exists():
            return None
        return next((b for b in store.manifest().batches if b.get("idempotency_key") == key), None)

    def ingest(self, kind: str, body: Path, key: str, sha256: str, who: str) -> UploadOutcome:
        """Ingest the spooled ``body`` (records or telemetry) under idempotency key ``key``."""
        with self._lock:
            try:
                recorded = self._recorded(key)
                if recorded is not None:
                    return _replay(recorded, key, sha256)
                info = {"idempotency_key": key, "body_sha256": sha256, "uploaded_by": who}
                report = ingest(
                    [body], self.ledger, kind=kind, strict=True, info=info, lock_timeout_s=10.0
                )
            except LedgerBusy as err:
                return UploadOutcome(503, {"error": f"{err}; nothing written, retry later"})
            finally:
                body.unlink(missing_ok=True)
        return _outcome(report, key, kind)


def _replay(batch: dict[str, Any], key: str, sha256: str) -> UploadOutcome:
    if batch.get("body_sha256") != sha256:
        return UploadOutcome(
            409,
            {
                "error": f"Idempotency-Key {key!r} was used for another body "
                f"(batch {batch['batch']}); use a new key for a new batch",
            },
        )
    return UploadOutcome(
        200,
        {
            "idempotency_key": key,
            "replayed": True,
            "committed": True,
            "batch": batch["batch"],
            "accepted_records": batch.get("records", 0),
            "accepted_telemetry": batch.get("telemetry", 0),
            "duplicates": batch.get("duplicates", 0),
            "refused": 0,
        },
    )


def _outcome(report: IngestReport, key: str, kind: str) -> UploadOutcome:
    source = report.sources[0] if report.sources else None
    if source is not None and source.error:
        return UploadOutcome(
            422,
            {"error": f"body is not readable as {kind}: {source.error}; nothing written"},
        )
    if report.refused:
        errors = [
            {"line": row["line"], "field": row["field"], "reason": row["reason"]}
            for row in report.quarantine.head(MAX_ERRORS).iter_rows(named=True)
        ]
        first = errors[0]
        return UploadOutcome(
            422,
            {
                "error": f"batch refused: {report.refused} of {report.read} rows invalid "
                f"(first: line {first['line']}, field {first['field']!r}: {first['reason']}); "
                "nothing written",
                "refused": report.refused,
                "errors": errors,
            },
        )
    if report.read == 0:
        return UploadOutcome(422, {"error": "empty body: no row to ingest; nothing written"})
    return UploadOutcome(
        200,
        {
            "idempotency_key": key,
            "replayed": False,
            "committed": report.committed,
            "generation": report.generation,
            "accepted_records": report.accepted_records,
            "accepted_telemetry": report.accepted_telemetry,
            "duplicates": report.duplicates,
            "refused": 0,
        },
    )


def new_spool_file(ledger: Path, suffix: str) -> Path:
    """A fresh spool path for one body (``.jsonl`` or ``.parquet``)."""
    folder = spool_dir(ledger)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"body-{os.getpid()}-{threading.get_ident()}-{os.urandom(6).hex()}{suffix}"
