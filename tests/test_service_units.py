"""The service's pure parts and its threads, in process: schedule, settings, alerts, the
scheduler's retries under a busy lock and its missed-slot report."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meta_supervisor.config import Paths
from meta_supervisor.service.alerts import Alerter, Notice, decision_notices
from meta_supervisor.service.metrics import ServiceMetrics
from meta_supervisor.service.reader import StateView
from meta_supervisor.service.schedule import Schedule, ScheduleError, parse_period
from meta_supervisor.service.scheduler import Scheduler
from meta_supervisor.service.settings import ServiceSettings, SettingsError, resolve
from meta_supervisor.state.files import StateLock, read_history
from servekit import auth, demo_fleet, poll, serving, write_tokens

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
periods = st.integers(min_value=1, max_value=7 * 86400).map(lambda s: timedelta(seconds=s))


# ---------------------------------------------------------------- schedule


@given(moment=instants, period=periods)
def test_period_slots_are_aligned_to_the_clock(moment: datetime, period: timedelta) -> None:
    schedule = Schedule(every=period)
    before, after = schedule.last_at_or_before(moment), schedule.next_after(moment)
    assert before <= moment < after
    assert after - before == period
    assert (before - EPOCH) % period == timedelta(0)


@given(latest=instants, gap=st.integers(min_value=0, max_value=500), period=periods)
def test_missed_slots_are_counted_exactly(latest: datetime, gap: int, period: timedelta) -> None:
    schedule = Schedule(every=period)
    now = latest + gap * period
    count, last = schedule.missed(latest, now)
    brute, slot = 0, latest
    while (slot := schedule.next_after(slot)) <= now:
        brute += 1
    assert count == brute
    assert (last is None) == (count == 0)
    if last is not None:
        assert last == schedule.last_at_or_before(now)


def test_cron_slots_and_missed_count() -> None:
    schedule = Schedule(cron="5 * * * *")
    now = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    assert schedule.next_after(now) == datetime(2026, 1, 1, 11, 5, tzinfo=UTC)
    assert schedule.last_at_or_before(now) == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    count, last = schedule.missed(datetime(2026, 1, 1, 7, tzinfo=UTC), now)
    assert (count, last) == (4, datetime(2026, 1, 1, 10, 5, tzinfo=UTC))
    assert schedule.period(now) == timedelta(hours=1)


@pytest.mark.parametrize("text", ["", "h", "1x", "-1h", "0s", "1h junk"])
def test_bad_periods_are_named(text: str) -> None:
    with pytest.raises(ScheduleError, match="--every"):
        parse_period(text)


def test_a_schedule_is_a_period_or_a_cron_expression() -> None:
    assert parse_period("1h30m") == timedelta(minutes=90)
    with pytest.raises(ScheduleError):
        Schedule(every=timedelta(hours=1), cron="* * * * *")
    with pytest.raises(ScheduleError, match="cron"):
        Schedule(cron="every hour")


# ---------------------------------------------------------------- settings


def test_flags_win_over_environment_over_the_policy_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[policy]\nprofile = "seed"\n[service]\nevery = "1d"\nport = 9001\nread_open = true\n'
    )
    for key in ("SCHEDULE", "PORT", "READ_OPEN"):
        monkeypatch.delenv(f"META_SUPERVISOR_{key}", raising=False)
    paths = Paths.under(tmp_path)
    from_file = resolve(paths, policy_file=policy)
    assert from_file.schedule == Schedule(every=timedelta(days=1))
    assert (from_file.port, from_file.read_open) == (9001, True)
    monkeypatch.setenv("META_SUPERVISOR_SCHEDULE", "*/15 * * * *")
    monkeypatch.setenv("META_SUPERVISOR_PORT", "9002")
    from_env = resolve(paths, policy_file=policy)
    assert from_env.schedule == Schedule(cron="*/15 * * * *")
    assert from_env.port == 9002
    from_flags = resolve(paths, policy_file=policy, every="1h", port=0, read_open=False)
    assert from_flags.schedule == Schedule(every=timedelta(hours=1))
    assert (from_flags.port, from_flags.read_open) == (0, False)
    assert from_flags.allowed_age() == timedelta(hours=2)
    policy.write_text("[service]\nevry = '1h'\n")
    with pytest.raises(SettingsError, match="evry"):
        resolve(paths, policy_file=policy)


# ---------------------------------------------------------------- alerts


def _decision(as_of: str, agents: dict[str, tuple[float, str | None]]) -> dict[str, Any]:
    return {
        "as_of": as_of,
        "agents": {
            name: {
                "weight": weight,
                "summary": "s",
                "gates": [{"gate": gate or "error_rate", "passed": gate is None, "detail": "d"}],
            }
            for name, (weight, gate) in agents.items()
        },
    }


def test_notices_for_gates_and_moves() -> None:
    old = _decision("t1", {"a": (0.2, None), "b": (0.0, "error_rate"), "c": (0.1, None)})
    new = _decision("t2", {"a": (0.0, "min_records"), "b": (0.1, None), "c": (0.12, None)})
    notices = decision_notices(old, new, 0.05)
    kinds = [(n.kind, n.text.split()[0]) for n in notices]
    assert kinds == [("gated", "a"), ("weight_move", "a"), ("ungated", "b"), ("weight_move", "b")]
    assert decision_notices(None, new, 0.05) == []


def test_notify_never_blocks_and_is_rate_limited() -> None:
    release = threading.Event()
    posted: list[bytes] = []
    counts: list[str] = []

    def stuck(_url: str, body: bytes) -> None:
        release.wait(30)
        posted.append(body)

    alerter = Alerter("http://hook", per_minute=2, queue_size=3, post=stuck, count=counts.append)
    alerter.start()
    started = time.perf_counter()
    for k in range(10):
        alerter.notify(Notice("cycle_failed", f"n{k}"))
    assert time.perf_counter() - started < 1.0  # a dead webhook never holds the caller
    release.set()
    poll(lambda: len(posted) == 2 and counts.count("dropped") >= 6, timeout_s=10)
    alerter.stop()
    assert json.loads(posted[0])["text"].startswith("[meta-supervisor] n0")
    assert counts.count("sent") == 2


def test_a_failing_webhook_is_retried_then_given_up() -> None:
    attempts: list[int] = []
    counts: list[str] = []

    def failing(_url: str, _body: bytes) -> None:
        attempts.append(1)
        raise OSError("connection refused")

    alerter = Alerter("http://hook", retry_delays_s=(0.01, 0.01), post=failing, count=counts.append)
    alerter.start()
    alerter.notify(Notice("cycle_failed", "x"))
    poll(lambda: counts == ["failed"], timeout_s=10)
    alerter.stop()
    assert len(attempts) == 3


# ---------------------------------------------------------------- scheduler


class Collecting(Alerter):
    """An alerter that keeps its notices."""

    def __init__(self) -> None:
        super().__init__(None)
        self.notices: list[Notice] = []

    def notify(self, notice: Notice) -> None:
        self.notices.append(notice)


@pytest.mark.slow
def test_a_busy_lock_fails_the_attempt_and_a_retry_commits(tmp_path: Path) -> None:
    paths = demo_fleet(tmp_path / "fleet")
    settings = ServiceSettings(
        paths=paths, schedule=Schedule(every=timedelta(hours=6)), retry_delays_s=(0.1, 0.1, 30.0)
    )
    alerter, metrics = Collecting(), ServiceMetrics()
    scheduler = Scheduler(settings, StateView(paths.history), metrics, alerter)
    slot = datetime(2026, 1, 15, 6, tzinfo=UTC)
    done: list[bool] = []
    with StateLock(paths.lock):
        worker = threading.Thread(target=lambda: done.append(scheduler.run_slot(slot)))
        worker.start()
        poll(lambda: scheduler.state["consecutive_failures"] >= 1, timeout_s=30)
    worker.join(timeout=120)
    assert done == [True]
    assert [n.kind for n in alerter.notices][:1] == ["cycle_failed"]
    assert "another cycle is running" in alerter.notices[0].text
    assert read_history(paths.history)[-1].decision["as_of"] == "2026-01-15T06:00:00Z"
    assert metrics.failures._value.get() >= 1
    scheduler.watch()
    assert metrics.cash._value.get() == read_history(paths.history)[-1].decision["cash"]


# ---------------------------------------------------------------- webhook end to end


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: Any) -> None:
        return


@pytest.mark.slow
def test_webhook_receives_slack_compatible_notices(tmp_path: Path) -> None:
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=hook.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    try:
        demo_fleet(tmp_path / "fleet")
        tokens = write_tokens(tmp_path / "tokens.json")
        url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
        with serving(tmp_path / "fleet", "--read-open", "--webhook", url, tokens=tokens) as server:
            answer = server.client.post(
                "/v1/overrides",
                json={"agent": "atlas", "action": "exclude", "reason": "desk", "duration": "2h"},
                headers=auth("risk-desk"),
            )
            assert answer.status_code == 201
            poll(
                lambda: any("atlas excluded" in m["text"] for m in _Hook.received),
                timeout_s=30,
                what="the override notice",
            )
        texts = [m["text"] for m in _Hook.received]
        assert all(set(m) == {"text"} for m in _Hook.received)
        assert any("no new record since" in t for t in texts)  # the demo's ledger is stale
    finally:
        hook.shutdown()
        hook.server_close()
