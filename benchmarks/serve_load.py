"""Load on ``meta-supervisor serve`` (issue 15): ``python -m benchmarks.serve_load``.

Starts a real server process on 127.0.0.1 (any free port) over the demo fleet ingested into a
ledger store, with a cycle every 2 s (``--every 2s``) and an uploader posting a batch of
records every 0.5 s, then measures, each phase bounded in requests *and* seconds:

1. **polling**: 50 concurrent clients (asyncio + httpx, keep-alive, one connection each) read
   ``GET /v1/allocation``: requests per second and the latency of each request as the client
   saw it (p50, p90, p99, max; the client runs on the same cores, so these figures include its
   own overhead), and the server's CPU time per request. At saturation (each client asks again
   as soon as it is answered) with plain GETs (200 + body) and as executors poll
   (``If-None-Match``: 304 until a cycle commits); then paced, each client polling every 0.1 s
   (500 requests/s offered) and every 1 s (50/s).
2. **commit -> served**: one client polls as fast as it can while the scheduler commits; for
   each new decision, the time from the history line's write (the file's mtime: the commit
   point) to the first answer that carried it.
3. **memory**: the server's RSS (``/proc/PID/status``) before and after N polls by the 50
   clients (default 180,000: an hour of 50 executors polling once a second), sampled on the way.

Prints a table and writes ``--json FILE``. Only loopback traffic; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.ingest.batch import ingest
from meta_supervisor.research.demo import DEMO_CYCLES, write_demo_fleet
from meta_supervisor.service.tokens import hash_token

TOKEN = "bench-ingest-token-0123456789"
AGENTS = ("atlas", "indus", "fornax", "borealis", "cygnus", "eridanus", "gemini", "hydra")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(found.group(1)) if found else -1


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prepare(base: Path) -> Path:
    """The demo fleet with its two cycles, ingested into a store; a tokens file."""
    root = base / "fleet"
    paths = write_demo_fleet(root)
    ingest([paths.records, paths.telemetry], paths.ledger or root)
    for as_of in DEMO_CYCLES:
        run_cycle(paths, as_of)
    tokens = [{"name": "bench", "scopes": ["ingest"], "sha256": hash_token(TOKEN)}]
    (base / "tokens.json").write_text(json.dumps(tokens))
    return root


def start_server(root: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """``meta-supervisor serve`` on any free loopback port; returns the process and its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("META_SUPERVISOR_")}
    env["POLARS_MAX_THREADS"] = "1"
    command = [sys.executable, "-m", "meta_supervisor", "serve", "--root", str(root)]
    command += ["--port", "0", "--read-open", "--tokens", str(root.parent / "tokens.json")]
    proc = subprocess.Popen([*command, *args], env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = os.read(proc.stdout.fileno(), 4096).decode() if ready else ""
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if found is None:
        proc.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    url = f"http://127.0.0.1:{found.group(1)}"
    with httpx.Client(trust_env=False) as client:
        for _ in range(600):
            try:
                if client.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    return proc, url


class Uploader(threading.Thread):
    """Posts a batch of 8 x 5 new records (ts one day back, so matured) every ``every_s``."""

    def __init__(self, url: str, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.url, self.every_s = url, every_s
        self.stop = threading.Event()
        self.batches = self.failures = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, trust_env=False, timeout=30) as client:
            while not self.stop.wait(self.every_s):
                ts = datetime.now(UTC) - timedelta(hours=24)
                lines = [
                    json.dumps(
                        {
                            "ts": (ts - timedelta(minutes=k)).isoformat(),
                            "agent": agent,
                            "run_id": f"bench-{self.batches}-{agent}-{k}",
                            "horizon_hours": 24,
                            "realized_pnl_bps": 1.0 + (k % 3),
                            "expected_pnl_bps": 1.0,
                            "expected_sigma_bps": 5.0,
                            "strategy_class": "momentum",
                        }
                    )
                    for agent in AGENTS
                    for k in range(5)
                ]
                answer = client.post(
                    "/v1/records",
                    content=("\n".join(lines) + "\n").encode(),
                    headers={
                        "Authorization": f"Bearer {TOKEN}",
                        "Content-Type": "application/x-ndjson",
                        "Idempotency-Key": f"bench-{self.batches}",
                    },
                )
                self.batches += 1
                self.failures += answer.status_code != 200


async def _poller(
    url: str,
    stop_at: float,
    budget: list[int],
    latencies: list[float],
    conditional: bool,
    interval_s: float,
) -> dict[str, int]:
    codes: dict[str, int] = {}
    etag: str | None = None
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    next_at = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, trust_env=False, limits=limits, timeout=30) as c:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            if interval_s:  # an executor's pace: one poll per interval, on a fixed schedule
                next_at += interval_s
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            budget[0] -= 1
            headers = {"If-None-Match": etag} if conditional and etag else {}
            started = time.perf_counter()
            answer = await c.get("/v1/allocation", headers=headers)
            latencies.append(time.perf_counter() - started)
            codes[str(answer.status_code)] = codes.get(str(answer.status_code), 0) + 1
            if answer.status_code == 200:
                etag = answer.headers.get("etag")
    return codes


def poll_load(
    url: str,
    clients: int,
    requests: int,
    seconds: float,
    conditional: bool,
    pid: int = 0,
    interval_s: float = 0.0,
) -> dict[str, Any]:
    """``clients`` concurrent pollers until ``requests`` in all or ``seconds`` have passed.

    ``interval_s = 0``: each client sends its next request as soon as the last one is answered
    (saturation: latency is then ``clients / throughput``, Little's law); otherwise each client
    polls once per ``interval_s`` (offered load ``clients / interval_s``), as executors do.

    With the server's ``pid``, also the server's CPU time per request (all its threads, so
    cycles and uploads running meanwhile are included): a figure the machine's load does not
    inflate the way it inflates wall-clock latency."""
    latencies: list[float] = []
    cpu_before = _cpu_s(pid) if pid else 0.0
    budget = [requests]

    async def main() -> list[dict[str, int]]:
        stop_at = time.perf_counter() + seconds
        tasks = [
            _poller(url, stop_at, budget, latencies, conditional, interval_s)
            for _ in range(clients)
        ]
        return await asyncio.gather(*tasks)

    started = time.perf_counter()
    per_client = asyncio.run(main())
    elapsed = time.perf_counter() - started
    cpu = _cpu_s(pid) - cpu_before if pid else None
    codes: dict[str, int] = {}
    for c in per_client:
        for code, n in c.items():
            codes[code] = codes.get(code, 0) + n
    return {
        "clients": clients,
        "interval_s": interval_s,
        "conditional": conditional,
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1e3 * _quantile(latencies, 0.50), 2),
        "p90_ms": round(1e3 * _quantile(latencies, 0.90), 2),
        "p99_ms": round(1e3 * _quantile(latencies, 0.99), 2),
        "max_ms": round(1e3 * max(latencies), 2),
        "server_cpu_ms_per_request": round(1e3 * cpu / len(latencies), 3) if cpu else None,
        "codes": codes,
    }


def commit_to_served(url: str, history: Path, commits: int, seconds: float) -> dict[str, Any]:
    """Poll as fast as one client can; time each new decision from its commit to its answer."""
    delays: list[float] = []
    with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        seen = client.get("/v1/allocation").json()["seq"]
        deadline = time.monotonic() + seconds
        while len(delays) < commits and time.monotonic() < deadline:
            body = client.get("/v1/allocation").json()
            arrived = time.time()
            if body["seq"] != seen:
                committed = history.stat().st_mtime
                delays.append(arrived - committed)
                seen = body["seq"]
    return {
        "commits": len(delays),
        "p50_ms": round(1e3 * statistics.median(delays), 2) if delays else None,
        "max_ms": round(1e3 * max(delays), 2) if delays else None,
    }


def server_side(url: str) -> dict[str, Any]:
    """From the server's own /metrics: handling time of /v1/allocation (histogram buckets: a
    quantile is the upper bound of its bucket) and the scheduled cycles' duration."""
    with httpx.Client(base_url=url, trust_env=False) as client:
        text = client.get("/metrics").text
    buckets: dict[float, float] = {}
    pattern = re.compile(
        r'^meta_supervisor_http_request_duration_seconds_bucket\{le="([^"]+)",method="GET",'
        r'route="/v1/allocation",status="(?:200|304)"\} (\S+)$'
    )
    for line in text.splitlines():
        found = pattern.match(line)
        if found:
            bound = float(found.group(1))
            buckets[bound] = buckets.get(bound, 0.0) + float(found.group(2))
    total = buckets.get(float("inf"), 0.0)

    def upper(q: float) -> float | None:
        for bound in sorted(buckets):
            if total and buckets[bound] >= q * total:
                return bound * 1e3
        return None

    cycles = {
        name: float(value)
        for name, value in re.findall(
            r"^meta_supervisor_cycle_duration_seconds_(sum|count) (\S+)$", text, re.M
        )
    }
    return {
        "allocation_requests": int(total),
        "allocation_p50_ms_at_most": upper(0.5),
        "allocation_p99_ms_at_most": upper(0.99),
        "cycles": int(cycles.get("count", 0)),
        "cycle_mean_s": round(cycles["sum"] / cycles["count"], 3) if cycles.get("count") else None,
    }


def memory(
    url: str, pid: int, clients: int, requests: int, seconds: float, samples: int = 5
) -> dict[str, Any]:
    """RSS before and after ``requests`` polls (in ``samples`` steps), bounded by ``seconds``."""
    rss = [_rss_kib(pid)]
    done = 0
    started = time.monotonic()
    for _ in range(samples):
        left = seconds - (time.monotonic() - started)
        if left <= 0:
            break
        step = poll_load(url, clients, requests // samples, left, conditional=False)
        done += step["requests"]
        rss.append(_rss_kib(pid))
    return {"requests": done, "rss_mib": [round(r / 1024, 1) for r in rss]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20_000, help="per polling phase")
    parser.add_argument("--seconds", type=float, default=30.0, help="cap per polling phase")
    parser.add_argument("--memory-requests", type=int, default=180_000)
    parser.add_argument("--memory-seconds", type=float, default=600.0)
    parser.add_argument("--commits", type=int, default=15)
    parser.add_argument(
        "--paced",
        type=float,
        nargs="*",
        default=[0.1, 1.0],
        help="also poll at these intervals per client (s): 0.1 = 500 req/s offered by 50",
    )
    parser.add_argument("--every", default="2s", help="cycle schedule; 'off' for none")
    parser.add_argument("--upload-every", type=float, default=0.5, help="seconds; 0: none")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    proc = None
    uploader = None
    try:
        root = prepare(base)
        proc, url = start_server(root, *(["--every", args.every] if args.every != "off" else []))
        uploader = Uploader(url, args.upload_every)
        if args.upload_every > 0:
            uploader.start()
        results: dict[str, Any] = {
            "machine_cpus": os.cpu_count(),
            "every": args.every,
            "upload_every_s": args.upload_every,
        }
        results["load_average_at_start"] = os.getloadavg()
        results["poll_200"] = poll_load(
            url, args.clients, args.requests, args.seconds, False, proc.pid
        )
        results["poll_304"] = poll_load(
            url, args.clients, args.requests, args.seconds, True, proc.pid
        )
        for interval in args.paced:
            results[f"paced_{interval:g}s"] = poll_load(
                url, args.clients, args.requests, args.seconds, True, proc.pid, interval
            )
        history = root / "meta_supervisor" / "state" / "history.jsonl"
        if args.every != "off":
            results["commit_to_served"] = commit_to_served(url, history, args.commits, 120)
        results["memory"] = memory(
            url, proc.pid, args.clients, args.memory_requests, args.memory_seconds
        )
        results["server_side"] = server_side(url)
        uploader.stop.set()
        if uploader.is_alive():
            uploader.join(timeout=30)
        with httpx.Client(base_url=url, trust_env=False) as client:
            status = client.get("/v1/status").json()
        results["background"] = {
            "upload_batches": uploader.batches,
            "upload_failures": uploader.failures,
            "last_cycle_slot": status["last_slot"],
            "cycle_failures": status["consecutive_failures"],
            "missed_slots_total": status["missed_slots_total"],
        }
    finally:
        if uploader is not None:
            uploader.stop.set()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
