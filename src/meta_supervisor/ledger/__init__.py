"""ledger: the embedded store: append-only Parquet segments and an atomically replaced
manifest, readable while an ingest writes. An edge: owns files.

============== ============================================================================
module         what it holds
============== ============================================================================
store          LedgerStore (append, scan, records, quarantine), Manifest, Segment
============== ============================================================================
"""

from meta_supervisor.ledger.store import LedgerBusy, LedgerError, LedgerStore, Manifest, Segment

__all__ = ["LedgerBusy", "LedgerError", "LedgerStore", "Manifest", "Segment"]
