"""SIGKILL the server during an upload and during a scheduled cycle (at named points of the
fault hook, ``META_SUPERVISOR_FAULT``: deterministic where a timed kill would be flaky), then
restart it: nothing half-written, a retried upload is stored once, and the API serves the last
committed decision."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import pytest

from meta_supervisor.config import Paths
from meta_supervisor.ledger.store import LedgerStore
from meta_supervisor.state.files import check_current, read_history, verify_history
from servekit import (
    TOKENS,
    Server,
    auth,
    demo_fleet,
    ledger_rows,
    poll,
    record_lines,
    serving,
    write_tokens,
)

pytestmark = pytest.mark.slow


def test_kill_during_an_upload_then_retry_with_the_same_key(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    paths = demo_fleet(root)
    tokens = write_tokens(tmp_path / "tokens.json")
    body = record_lines("atlas", 12)
    headers = {**auth("ingester"), "Content-Type": "application/x-ndjson", "Idempotency-Key": "b-1"}
    dying = Server.start(
        root,
        "--read-open",
        tokens=tokens,
        env={"META_SUPERVISOR_FAULT": "kill:before_rename:MANIFEST.json"},
    )
    try:
        with pytest.raises(httpx.TransportError):
            dying.client.post("/v1/records", content=body, headers=headers)
        assert dying.wait_dead() == -signal.SIGKILL
    finally:
        dying.stop()
    store = LedgerStore(paths.ledger or "")
    assert not store.exists()  # the batch's segments were written, its manifest never was
    leftovers = list((store.root / "records").glob("*.parquet"))
    assert leftovers  # ... so the kill really came mid-upload
    with serving(root, "--read-open", tokens=tokens) as server:
        assert not (store.root / ".uploads").exists() or not any(
            (store.root / ".uploads").iterdir()
        )
        retry = server.client.post("/v1/records", content=body, headers=headers)
        assert retry.status_code == 200, retry.text
        assert retry.json()["accepted_records"] == 12
        assert retry.json()["replayed"] is False
        again = server.client.post("/v1/records", content=body, headers=headers)
        assert again.json()["replayed"] is True
        assert ledger_rows(root) == 12
        named = {store.root / path for path in store.manifest().files()}
        assert set((store.root / "records").iterdir()) <= named  # orphans removed
        assert server.client.get("/v1/allocation").json()["seq"] == 2


def test_kill_while_the_body_is_still_arriving(tmp_path: Path) -> None:
    """Killed with half a body spooled: nothing stored, the spool cleaned at restart."""
    root = tmp_path / "fleet"
    paths = demo_fleet(root)
    tokens = write_tokens(tmp_path / "tokens.json")
    body = record_lines("atlas", 40)
    server = Server.start(root, "--read-open", tokens=tokens)
    spool = (paths.ledger or root) / ".uploads"
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
            head = (
                "POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {TOKENS['ingester'][0]}\r\n"
                "Content-Type: application/x-ndjson\r\nIdempotency-Key: half-1\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            conn.sendall(head.encode() + body[: len(body) // 2])
            poll(
                lambda: spool.is_dir() and any(spool.iterdir()),
                timeout_s=30,
                what="the body's spool file",
            )
            server.proc.send_signal(signal.SIGKILL)
            assert server.wait_dead() == -signal.SIGKILL
    finally:
        server.stop()
    assert not LedgerStore(paths.ledger or "").exists()
    with serving(root, "--read-open", tokens=tokens) as restarted:
        assert not spool.exists()
        headers = {**auth("ingester"), "Content-Type": "application/x-ndjson"}
        retry = restarted.client.post(
            "/v1/records", content=body, headers={**headers, "Idempotency-Key": "half-1"}
        )
        assert retry.json()["accepted_records"] == 40
    assert ledger_rows(root) == 40


def test_a_retry_after_a_restart_is_replayed_from_the_ledger(tmp_path: Path) -> None:
    """The key lives in the ledger's manifest, not in the server's memory: a client whose answer
    was lost with a killed server gets the first answer back from the next one."""
    root = tmp_path / "fleet"
    demo_fleet(root)
    tokens = write_tokens(tmp_path / "tokens.json")
    body = record_lines("indus", 5)
    headers = {**auth("ingester"), "Content-Type": "application/x-ndjson", "Idempotency-Key": "b-2"}
    with serving(root, "--read-open", tokens=tokens) as server:
        first = server.client.post("/v1/records", content=body, headers=headers)
        assert first.status_code == 200
        server.proc.send_signal(signal.SIGKILL)
        server.wait_dead()
    with serving(root, "--read-open", tokens=tokens) as server:
        retry = server.client.post("/v1/records", content=body, headers=headers)
        assert retry.json() | {"replayed": True} == retry.json()
        assert retry.json()["accepted_records"] == 5
        assert ledger_rows(root) == 5


@pytest.mark.parametrize(
    ("point", "committed"),
    [
        ("history_append", False),  # half the line written: never committed
        ("after_history_append", True),  # committed, decision.json not yet rewritten
        ("before_rename:decision.json", True),  # committed, decision.json temp not renamed
    ],
)
def test_kill_during_a_scheduled_cycle(tmp_path: Path, point: str, committed: bool) -> None:
    root = tmp_path / "fleet"
    paths = demo_fleet(root)
    before = read_history(paths.history)
    # --every 1h on a fleet decided in January: the catch-up cycle starts at once, and dies
    # launched, not started: the cycle may reach its fault point before /healthz answers
    dying = Server.launch(
        root, "--read-open", "--every", "1h", env={"META_SUPERVISOR_FAULT": f"kill:{point}"}
    )
    try:
        assert dying.wait_dead() == -signal.SIGKILL
    finally:
        dying.stop()
    ok, message = verify_history(paths.history)
    assert ok, message
    after = read_history(paths.history)
    assert len(after) == len(before) + (1 if committed else 0)
    assert check_current(paths.history, paths.decision)[0]
    with serving(root, "--read-open") as server:
        served = server.client.get("/v1/allocation").json()
        assert served["seq"] == after[-1].seq
        assert served["hash"] == after[-1].hash
    with serving(root, "--read-open", "--every", "1h") as server:
        # at start the files are brought in line with the history; an uncommitted slot is run

        def settled() -> bool:
            done = len(read_history(paths.history)) == len(before) + 1
            current = check_current(paths.history, paths.decision)
            return done and current == (True, "decision.json is the last entry")

        poll(settled, timeout_s=120, what="the repaired state")
        assert server.client.get("/v1/allocation").json()["seq"] == len(before) + 1
    assert not [p for p in Paths.under(root).state_dir.iterdir() if p.name.endswith(".tmp")]
