"""Ledger store benchmark: ingest, full scan and window scan at 1M / 10M records.

Usage::

    python benchmarks/store_bench.py --rows 1000000 10000000 --repeat 3 --work /tmp/store-bench

Each measurement runs in a fresh child process so its peak RSS (``ru_maxrss``) is its own.
Prints a Markdown table: median wall and CPU seconds (user + system, all threads; a fairer
figure on a shared machine) and the largest peak RSS (MiB) per operation:

* ``parquet-store``: :func:`meta_supervisor.ingest.batch.ingest` of a JSONL file (and of the same
  data as Parquet) into the default store, a re-ingest of the same file (idempotent, nothing new),
  :meth:`LedgerStore.records` of all history and of a 30-day window.
* ``sqlite-wal``: the same validated rows into SQLite (WAL, index on ``matured_at``), inserted
  with ``executemany``; full scan and window scan into a polars frame. 1M rows only unless
  ``--sqlite-10m`` (it takes minutes).
* ``duckdb``: the same, when the ``duckdb`` package is importable (it is not a dependency).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

AS_OF = datetime(2025, 10, 1, tzinfo=UTC)
WINDOW_H = 720.0


def generate(n: int, path: Path, seed: int = 0) -> None:
    """``n`` records over a year, 60 agents, half run-keyed, written as JSONL and Parquet."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2025-01-01T00:00:00", "us")
    ts = start + (rng.integers(0, 365 * 24 * 3600, n) * 1_000_000).astype("timedelta64[us]")
    agent = rng.integers(0, 60, n)
    realized = rng.normal(2, 40, n).round(3)
    expected = rng.normal(3, 10, n).round(3)
    run_id = np.where(rng.random(n) < 0.5, "", np.char.add("r", np.arange(n).astype(str)))
    frame = pl.DataFrame(
        {
            "ts": pl.Series(ts).dt.replace_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "agent": np.char.add("agent_", agent.astype(str)),
            "run_id": run_id,
            "symbol": np.array(["BTC", "ETH", "SOL"])[agent % 3],
            "direction": np.where(rng.random(n) < 0.5, "LONG", "SHORT"),
            "entry_price": rng.random(n) * 100,
            "exit_price": rng.random(n) * 100,
            "horizon_hours": rng.choice([1, 4, 24], n),
            "realized_pnl_bps": realized,
            "expected_pnl_bps": expected,
            "expected_sigma_bps": np.abs(rng.normal(20, 5, n)).round(2),
            "pnl_error_bps": realized - expected,
            "abs_error_bps": np.abs(realized - expected),
            "sim_version": "v3",
            "strategy_class": np.array(["perp_funding", "basis", "momo", "meanrev", "arb"])[
                agent % 5
            ],
            "regime": "normal",
            "confidence": rng.random(n),
            "score_final": rng.random(n),
        }
    )
    frame.write_ndjson(path.with_suffix(".jsonl"))
    frame.write_parquet(path.with_suffix(".parquet"))


# ---------------------------------------------------------------- child operations


def _validated(source: Path) -> pl.DataFrame:
    from meta_supervisor.ingest.batch import dedupe_batch
    from meta_supervisor.ingest.sources import read_records

    records, _, _ = dedupe_batch(read_records(source).records)
    return records


def op_ingest(source: str, store: str) -> dict:
    from meta_supervisor.ingest.batch import ingest

    report = ingest([source], store)
    return {"accepted": report.accepted, "duplicates": report.duplicates}


def op_full(store: str) -> dict:
    from meta_supervisor.ledger.store import LedgerStore

    return {"rows": LedgerStore(store).records().height}


def op_window(store: str) -> dict:
    from meta_supervisor.ledger.store import LedgerStore

    return {"rows": LedgerStore(store).records(AS_OF, WINDOW_H).height}


def op_sqlite_ingest(source: str, db: str) -> dict:
    import sqlite3

    frame = _validated(Path(source))
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    cols = ", ".join(frame.columns)
    con.execute(f"CREATE TABLE IF NOT EXISTS records ({cols}, PRIMARY KEY (record_id))")
    con.execute("CREATE INDEX IF NOT EXISTS by_matured ON records (matured_at)")
    rows = frame.with_columns(
        pl.col("ts", "matured_at").dt.epoch("us")
    ).iter_rows()  # timestamps as integer µs
    with con:
        marks = ", ".join("?" * frame.width)
        con.executemany(f"INSERT OR IGNORE INTO records VALUES ({marks})", rows)
    con.close()
    return {"rows": frame.height}


def _sqlite_read(db: str, where: str = "", args: tuple = ()) -> pl.DataFrame:
    import sqlite3

    con = sqlite3.connect(db)
    cur = con.execute(f"SELECT * FROM records {where}", args)
    names = [d[0] for d in cur.description]
    frame = pl.DataFrame(cur.fetchall(), schema=names, orient="row")
    con.close()
    return frame


def op_sqlite_full(db: str) -> dict:
    return {"rows": _sqlite_read(db).height}


def op_sqlite_window(db: str) -> dict:
    end = (AS_OF - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    start = end - int(WINDOW_H * 3600 * 1e6)
    return {
        "rows": _sqlite_read(db, "WHERE matured_at > ? AND matured_at <= ?", (start, end)).height
    }


def op_duckdb_ingest(source: str, db: str) -> dict:
    import duckdb

    frame = _validated(Path(source))
    con = duckdb.connect(db)
    con.execute("CREATE TABLE IF NOT EXISTS records AS SELECT * FROM frame LIMIT 0")
    con.execute(
        "INSERT INTO records SELECT * FROM frame f WHERE NOT EXISTS "
        "(SELECT 1 FROM records r WHERE r.record_id = f.record_id)"
    )
    con.close()
    return {"rows": frame.height}


def op_duckdb_full(db: str) -> dict:
    import duckdb

    con = duckdb.connect(db, read_only=True)
    return {"rows": pl.from_arrow(con.execute("SELECT * FROM records").to_arrow_table()).height}


def op_duckdb_window(db: str) -> dict:
    import duckdb

    con = duckdb.connect(db, read_only=True)
    start = AS_OF - timedelta(hours=WINDOW_H)
    query = "SELECT * FROM records WHERE matured_at > ? AND matured_at <= ?"
    return {"rows": pl.from_arrow(con.execute(query, [start, AS_OF]).to_arrow_table()).height}


def op_generate(n: str, base: str) -> dict:
    generate(int(n), Path(base))
    return {}


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def child(op: str, args: list[str]) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    result = OPS[op](*args)
    result["seconds"] = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime - cpu0
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    print(json.dumps(result))


# ---------------------------------------------------------------- driver


def measure(op: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", op, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def reset(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def bench(
    n: int, work: Path, repeat: int, sqlite: bool, duck: bool, ingest_repeat: int | None = None
) -> list[tuple]:
    base = work / f"records-{n}"
    if not base.with_suffix(".parquet").exists():
        # In a child: Linux keeps ru_maxrss across fork+exec, so a big driver would inflate
        # every later child's peak RSS.
        measure("generate", str(n), str(base))
    jsonl, parquet = str(base.with_suffix(".jsonl")), str(base.with_suffix(".parquet"))
    rows: list[tuple] = []

    def run(label: str, make: callable, op: str, *args: str) -> None:  # type: ignore[valid-type]
        results = []
        times = repeat if "ingest" not in op or ingest_repeat is None else ingest_repeat
        for _ in range(times):
            make()
            results.append(measure(op, *args))
        secs = statistics.median(r["seconds"] for r in results)
        cpu = statistics.median(r["cpu_seconds"] for r in results)
        rss = max(r["peak_rss_mib"] for r in results)
        rows.append((n, label, secs, cpu, rss))
        label = f"{label} (x{times})"
        print(f"| {n:>10,} | {label:<34} | {secs:8.2f} | {cpu:8.2f} | {rss:8.0f} |", flush=True)

    store = work / f"store-{n}"
    run("parquet-store: ingest JSONL", lambda: reset(store), "ingest", jsonl, str(store))
    run("parquet-store: ingest Parquet", lambda: reset(store), "ingest", parquet, str(store))
    run("parquet-store: re-ingest (no-op)", lambda: None, "ingest", parquet, str(store))
    run("parquet-store: full scan", lambda: None, "full", str(store))
    run("parquet-store: 30-day window", lambda: None, "window", str(store))
    if sqlite:
        db = work / f"sqlite-{n}.db"
        run("sqlite-wal: ingest", lambda: reset(db), "sqlite_ingest", parquet, str(db))
        run("sqlite-wal: full scan", lambda: None, "sqlite_full", str(db))
        run("sqlite-wal: 30-day window", lambda: None, "sqlite_window", str(db))
    if duck:
        db = work / f"duck-{n}.db"
        run("duckdb: ingest", lambda: reset(db), "duckdb_ingest", parquet, str(db))
        run("duckdb: full scan", lambda: None, "duckdb_full", str(db))
        run("duckdb: 30-day window", lambda: None, "duckdb_window", str(db))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/store-bench"))
    parser.add_argument("--ingest-repeat", type=int, help="runs of each ingest (default: --repeat)")
    parser.add_argument("--sqlite-10m", action="store_true", help="also SQLite above 1M rows")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1:])
        return
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        import duckdb  # noqa: F401

        duck = True
    except ImportError:
        duck = False
        print("duckdb not importable: skipped", flush=True)
    print(f"| {'rows':>10} | {'operation':<34} | {'wall s':>8} | {'CPU s':>8} | {'RSS MiB':>8} |")
    print(f"|{'-' * 12}|{'-' * 36}|{'-' * 10}|{'-' * 10}|{'-' * 10}|", flush=True)
    for n in args.rows:
        sqlite = n <= 1_000_000 or args.sqlite_10m
        bench(n, args.work, args.repeat, sqlite, duck, args.ingest_repeat)


if __name__ == "__main__":
    main()
