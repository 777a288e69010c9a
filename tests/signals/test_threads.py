"""The thread pool the array work shares (signals/threads.py)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from meta_supervisor.policy.model import Policy
from meta_supervisor.signals import threads
from meta_supervisor.signals.incremental import IncrementalStats


def test_work_is_split_only_when_large_enough_and_over_the_cores(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 3)
    assert threads.parts(threads.MIN_SIZE - 1) == 1
    assert threads.parts(threads.MIN_SIZE) == 3


def test_the_cores_are_the_affinity_at_most_max_threads():
    usable = len(os.sched_getaffinity(0))
    assert threads.cores() == max(1, min(usable, threads.MAX_THREADS))


def test_first_calls_at_once_make_one_pool(monkeypatch):
    """Eight threads starting work at once, before any pool exists, make one pool between them
    (regression: the lookup and the creation were not atomic, and racing first calls each
    made a pool whose idle threads stayed to the process's end)."""
    made: list[ThreadPoolExecutor] = []

    def pool(*args, **kwargs):
        assert threads._LOCK.locked()  # made only while the lookup is held
        made.append(ThreadPoolExecutor(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(threads, "_POOL", {})
    monkeypatch.setattr(threads, "ThreadPoolExecutor", pool)
    ready = threading.Barrier(8, timeout=30)
    results: list[int] = []

    def first(i: int) -> None:
        ready.wait()
        results.append(threads.start(lambda: i).result(timeout=30))

    callers = [threading.Thread(target=first, args=(i,)) for i in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=60)
    assert sorted(results) == list(range(8))
    assert len(made) == 1
    made[0].shutdown()


def test_an_advance_that_fails_waits_for_its_other_threads_first(monkeypatch):
    """When the agent sums raise while the confidence sums and the tails run in threads of
    their own, ``advance`` waits for both before raising (no write lands in the state after
    it raised) and raises the agent sums' error (regression: the other thread was left
    running)."""
    waited: list[bool] = []
    real_start = threads.start

    def start(work):
        future = real_start(work)
        result = future.result

        def wait(*args, **kwargs):
            waited.append(True)
            return result(*args, **kwargs)

        future.result = wait  # type: ignore[method-assign]
        return future

    def broken(self, entering, leaving):
        raise ValueError("the agent sums failed")

    monkeypatch.setattr(threads, "MIN_SIZE", 0)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads, "start", start)
    monkeypatch.setattr(IncrementalStats, "_update_stats", broken)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ledger = pl.DataFrame(
        {
            "record_id": ["r1", "r2"],
            "ts": [t0, t0],
            "matured_at": [t0 + timedelta(hours=1), t0 + timedelta(hours=2)],
            "agent": ["a", "b"],
            "strategy": ["s", "s"],
            "horizon_hours": [24, 24],
            "realized_pnl_bps": [1.0, -2.0],
            "expected_sigma_bps": [None, 3.0],
            "gap_bps": [0.5, -1.0],
        }
    )
    inc = IncrementalStats(Policy())
    with pytest.raises(ValueError, match="agent sums failed"):
        inc.advance(ledger, t0 + timedelta(hours=3))
    assert waited == [True, True]


def test_run_all_finishes_every_work_and_raises_the_first_error(monkeypatch):
    """``run_all`` (the one rule every split uses): results in order; when a work raises, the
    others are finished first and the caller's own error is the one raised, with a note
    naming each other error (regression: the second was dropped)."""
    monkeypatch.setattr(threads, "MIN_SIZE", 0)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    assert threads.run_all([lambda: 1, lambda: 2, lambda: 3], 10) == [1, 2, 3]
    finished = threading.Event()

    def slow() -> None:  # on the pool: it must have run by the time run_all raises
        finished.set()

    def fails() -> None:
        raise ValueError("first")

    def fails_too() -> None:
        raise KeyError("second")

    with pytest.raises(ValueError, match="first") as raised:
        threads.run_all([fails, slow, fails_too], 10)
    assert finished.is_set()
    # the other failure is not lost: the raised error names it
    assert raised.value.__notes__ == ["another work failed too: KeyError: 'second'"]
    monkeypatch.setattr(threads, "MIN_SIZE", 1 << 62)  # not worth splitting: in order, here
    order: list[int] = []
    threads.run_all([lambda: order.append(1), lambda: order.append(2)], 10)
    assert order == [1, 2]


def test_beside_runs_the_second_work_on_the_pool_and_finishes_both(monkeypatch):
    """``beside`` (two works of different kinds, such as the frames and the broken cut's
    medians): the second runs on a pool thread while the first runs in the caller's, both
    results come back, and a failure is raised only once the other work has finished. On one
    core both run here, one after the other."""
    monkeypatch.setattr(threads, "cores", lambda: 2)
    caller = threading.get_ident()
    where = threads.beside(threading.get_ident, threading.get_ident)
    assert where[0] == caller and where[1] != caller
    finished = threading.Event()

    def fails() -> None:
        raise ValueError("first")

    with pytest.raises(ValueError, match="first"):
        threads.beside(fails, finished.set)
    assert finished.is_set()
    monkeypatch.setattr(threads, "cores", lambda: 1)
    assert threads.beside(threading.get_ident, threading.get_ident) == (caller, caller)


class _Interrupted:
    """A running work's future whose first waits are interrupted (as Ctrl-C interrupts a
    waiting thread), then whose work finishes with ``outcome`` (a value, or an error raised)."""

    def __init__(self, interrupts: int, outcome: object) -> None:
        self.interrupts, self.outcome, self.waits = interrupts, outcome, 0

    def done(self) -> bool:
        return self.waits > self.interrupts

    def result(self) -> object:
        self.waits += 1
        if self.waits <= self.interrupts:
            raise KeyboardInterrupt
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def test_an_interrupted_wait_waits_for_the_work_to_finish_then_raises_the_interrupt():
    """Regression: a ``KeyboardInterrupt`` while waiting for pool work (``run_all``,
    ``beside``, the cycle's telemetry read) left that work running after the call raised. Now
    the wait goes on until the work is done, then the interrupt is raised (the work's own
    error noted on it); an uninterrupted wait gives the result or the work's error."""
    job = _Interrupted(2, 7)
    with pytest.raises(KeyboardInterrupt):
        threads.finished(job)  # type: ignore[arg-type]
    assert job.waits == 3 and job.done()  # waited again until the work was done
    failing = _Interrupted(1, ValueError("the work failed"))
    with pytest.raises(KeyboardInterrupt) as raised:
        threads.finished(failing)  # type: ignore[arg-type]
    assert raised.value.__notes__ == ["the work failed too: ValueError: the work failed"]
    assert threads.finished(_Interrupted(0, 7)) == 7  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="failed"):
        threads.finished(_Interrupted(0, ValueError("failed")))  # type: ignore[arg-type]


def test_run_all_waits_for_an_interrupted_pool_work(monkeypatch):
    """``run_all`` waits through an interrupted wait for its pool work (the same regression),
    and raises the interrupt."""
    monkeypatch.setattr(threads, "MIN_SIZE", 0)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    jobs: list[_Interrupted] = []

    def start(work):
        jobs.append(_Interrupted(1, work()))
        return jobs[-1]

    monkeypatch.setattr(threads, "start", start)
    with pytest.raises(KeyboardInterrupt):
        threads.run_all([lambda: 1, lambda: 2], 10)
    assert [job.waits for job in jobs] == [2]
