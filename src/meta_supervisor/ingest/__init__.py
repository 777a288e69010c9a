"""ingest: files in (JSONL, CSV, Parquet), validated and normalised rows out; bad rows
quarantined with source, line, field and reason. An edge: reads files.

============== ============================================================================
module         what it holds
============== ============================================================================
sources        readers: files -> raw frames, line numbers kept, truncated lines refused
records        the ledger's schema, the record identity and the vectorised validation
batch          one ingest: validate, de-duplicate, commit one batch to the store
               (``meta_supervisor.ingest.batch.ingest``; not imported here, because the
               store reads this package's schema)
============== ============================================================================
"""

from meta_supervisor.ingest.records import (
    RECORD_SCHEMA,
    TELEMETRY_SCHEMA,
    normalize_records,
    normalize_telemetry,
)
from meta_supervisor.ingest.sources import read_records, read_telemetry

__all__ = [
    "RECORD_SCHEMA",
    "TELEMETRY_SCHEMA",
    "normalize_records",
    "normalize_telemetry",
    "read_records",
    "read_telemetry",
]
