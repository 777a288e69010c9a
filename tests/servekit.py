"""A real ``meta-supervisor serve`` process for the service tests, and a fleet to serve.

The server is started by the test as a child process on 127.0.0.1 with ``--port 0``: it binds
any free port and prints it on its first line of output, so no port is guessed and nothing
races for it. Every wait is a bounded poll (count and time), never a sleep for timing.
Clients never use proxies from the environment (``trust_env=False``): only loopback traffic.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from meta_supervisor.config import Paths
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.research.demo import DEMO_CYCLES, write_demo_fleet
from meta_supervisor.service.tokens import hash_token

#: name -> (secret, scopes) of the tokens every test server accepts
TOKENS = {
    "reader": ("reader-secret-0123456789", ["read"]),
    "ingester": ("ingester-secret-0123456789", ["ingest"]),
    "risk-desk": ("risk-desk-secret-0123456789", ["read", "override"]),
}
STARTUP_S = 60.0
_ADDRESS = re.compile(r"http://127\.0\.0\.1:(\d+)/")


def auth(name: str) -> dict[str, str]:
    """The Authorization header of one of :data:`TOKENS`."""
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


def write_tokens(path: Path) -> Path:
    """The tokens file of :data:`TOKENS` (hashes only)."""
    items = [
        {"name": name, "scopes": scopes, "sha256": hash_token(secret)}
        for name, (secret, scopes) in TOKENS.items()
    ]
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def demo_fleet(root: Path) -> Paths:
    """The demo fleet under ``root`` with the demo's two cycles committed (raw files)."""
    paths = write_demo_fleet(root)
    for as_of in DEMO_CYCLES:
        run_cycle(paths, as_of)
    return paths


def copy_fleet(template: Path, root: Path) -> Paths:
    """A private copy of a fleet made by :func:`demo_fleet` (cheaper than a new one)."""
    shutil.copytree(template, root)
    return Paths.under(root)


def poll(
    check: Callable[[], Any], *, timeout_s: float = 30.0, every_s: float = 0.05, what: str = ""
) -> Any:
    """Call ``check`` until it returns something truthy; bounded in time and in count."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / every_s) + 1):
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(every_s)  # the pace of the poll, not a guess at how long something takes
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or check}")


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: no META_SUPERVISOR_* from the caller, polars on 2 threads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("META_SUPERVISOR_")}
    env["POLARS_MAX_THREADS"] = "2"
    env.update(extra or {})
    return env


class Server:
    """One ``meta-supervisor serve`` child process and an HTTP client for it."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, root: Path) -> None:
        self.proc = proc
        self.root = root
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.base, trust_env=False, timeout=30.0)

    @classmethod
    def start(
        cls,
        root: Path,
        *args: str,
        env: dict[str, str] | None = None,
        tokens: Path | None = None,
    ) -> Server:
        """Start serving ``root``; return once ``/healthz`` answers."""
        server = cls.launch(root, *args, env=env, tokens=tokens)
        poll(server._healthy, timeout_s=STARTUP_S, what="/healthz")
        return server

    @classmethod
    def launch(
        cls,
        root: Path,
        *args: str,
        env: dict[str, str] | None = None,
        tokens: Path | None = None,
    ) -> Server:
        """Start serving ``root``; return once it has bound its port (a server meant to die
        early, e.g. at a fault point of its first cycle, may never answer ``/healthz``)."""
        command = [sys.executable, "-m", "meta_supervisor", "serve", "--root", str(root)]
        command += ["--port", "0", *(["--tokens", str(tokens)] if tokens else []), *args]
        proc = subprocess.Popen(
            command,
            env=server_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=root.parent,
        )
        return cls(proc, _read_port(proc), root)

    def _healthy(self) -> bool:
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> str:
        """Stop the server (SIGTERM, then SIGKILL if it does not exit); return its stderr."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return err

    def wait_dead(self, timeout_s: float = 60.0) -> int:
        """Wait for the process to die by itself (a fault hook); return its exit code."""
        return self.proc.wait(timeout=timeout_s)


def _read_port(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + STARTUP_S
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        line += chunk
    found = _ADDRESS.search(line.decode(errors="replace"))
    if found is None:
        proc.kill()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise AssertionError(f"serve did not start: {line!r} {err[-3000:]}")
    return int(found.group(1))


@contextmanager
def serving(root: Path, *args: str, **kwargs: Any) -> Iterator[Server]:
    """``with serving(root, "--read-open") as server: server.client.get(...)``."""
    server = Server.start(root, *args, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def record_lines(agent: str, count: int, start_hour: int = 0, run: str = "up") -> bytes:
    """``count`` valid record lines (JSON lines) for ``agent``, an hour apart from 2026-01-16."""
    lines = []
    for k in range(count):
        hour = start_hour + k
        lines.append(
            json.dumps(
                {
                    "ts": f"2026-01-{16 + hour // 24:02d}T{hour % 24:02d}:00:00Z",
                    "agent": agent,
                    "run_id": f"{run}-{agent}-{hour}",
                    "symbol": "BTC",
                    "direction": "long",
                    "horizon_hours": 24,
                    "realized_pnl_bps": 1.5 + k % 3,
                    "expected_pnl_bps": 1.0,
                    "expected_sigma_bps": 5.0,
                    "strategy_class": "momentum",
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()


def ledger_rows(root: Path) -> int:
    """Records stored in the ledger under ``root`` (0 when there is no store)."""
    from meta_supervisor.ledger.store import LedgerStore

    store = LedgerStore(Paths.under(root).ledger or root)
    return store.manifest().rows("records") if store.exists() else 0
