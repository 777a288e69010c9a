"""The scheduler: one cycle per slot, under the state lock, retried, reported; and the watcher.

Each slot runs :func:`meta_supervisor.cycle.run.run_cycle` with ``as_of`` = the slot's instant,
exactly as ``meta-supervisor allocate --as-of SLOT`` would: the same state lock (so a shell's
``allocate`` and the service never interleave), the same crash-safe commit. A failed attempt
(lock busy, unreadable ledger, bad policy file, any error) is counted, alerted and retried after
``retry_delays_s`` while the next slot has not come; a failed cycle leaves no partial state
(the history append is the commit point, see :mod:`meta_supervisor.state.files`).

Missed slots (the service was down, or a cycle outlasted its period) are counted in
``meta_supervisor_missed_slots_total``, alerted and shown by ``/v1/status``; they are not
replayed one by one: after downtime only the latest missed slot is run, at once. A state with
no decision yet gets one for the current slot at start.

At start, the current files are repaired if a killed cycle left them one entry behind the
history. Between slots the same thread watches the state once a second: a new committed decision
(whoever committed it) updates the decision gauges and raises gate and weight notices; an
override that expired and a ledger with no new record for ``stale_after`` raise notices too.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from meta_supervisor.allocate.decision import Decision, fingerprint, iso, parse_iso
from meta_supervisor.cycle.run import OutOfOrder, commit, run_cycle
from meta_supervisor.ledger.store import LedgerStore
from meta_supervisor.policy.model import load_policy
from meta_supervisor.service.alerts import Alerter, Notice, decision_notices
from meta_supervisor.service.metrics import ServiceMetrics
from meta_supervisor.service.reader import StateView
from meta_supervisor.service.settings import ServiceSettings
from meta_supervisor.state import overrides as overrides_file
from meta_supervisor.state.files import check_current

__all__ = ["Scheduler"]

log = logging.getLogger("meta_supervisor.service")
WATCH_EVERY_S = 1.0


class Scheduler:
    """Runs the schedule (if any) and the watcher in one background thread."""

    def __init__(
        self,
        settings: ServiceSettings,
        view: StateView,
        metrics: ServiceMetrics,
        alerter: Alerter,
    ) -> None:
        self.settings = settings
        self.view = view
        self.metrics = metrics
        self.alerter = alerter
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: tuple[str, dict[str, Any]] | None = None
        self._overrides_checked = datetime.now(UTC)
        self._stale = False
        self.state: dict[str, Any] = {
            "schedule": settings.schedule.describe() if settings.schedule else None,
            "next_slot": None,
            "last_slot": None,
            "last_success_at": None,
            "last_error": None,
            "consecutive_failures": 0,
            "running": False,
            "missed_slots_total": 0,
            "missed": None,
        }

    # ---- thread --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread (reports missed slots first)."""
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop after the current cycle, and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def repair(self) -> None:
        """Make ``decision.json`` and ``allocation.json`` show the last committed decision
        (a cycle killed between its history append and its file writes left them one behind):
        :func:`meta_supervisor.cycle.run.commit` of the recorded decision appends nothing."""
        paths = self.settings.paths
        current = self.view.current()
        if current is None or check_current(paths.history, paths.decision)[1].startswith(
            "decision.json is the last"
        ):
            return
        try:
            commit(Decision.from_dict(current.entry.decision), paths, lock_timeout_s=5.0)
        except Exception as err:  # reported; the next cycle repairs the files as well
            log.warning("could not repair the current files: %s", err)

    def _run(self) -> None:
        self.repair()
        self.watch()
        schedule = self.settings.schedule
        if schedule is not None:
            current = self.view.current()
            if current is None:  # a new state: decide the current slot now, not in an hour
                self.run_slot(schedule.last_at_or_before(datetime.now(UTC)))
            else:
                latest = parse_iso(current.entry.decision["as_of"])
                count, last = schedule.missed(latest, datetime.now(UTC))
                if count and last is not None:
                    self._report_missed(count, latest, last, "while the service was down")
                    self.run_slot(last)
        while not self._stop.is_set():
            now = datetime.now(UTC)
            if schedule is None:
                self._stop.wait(WATCH_EVERY_S)
                self.watch()
                continue
            slot = schedule.next_after(now)
            self.state["next_slot"] = iso(slot)
            while not self._stop.is_set():
                left = (slot - datetime.now(UTC)).total_seconds()
                if left <= 0:
                    break
                self._stop.wait(min(left, WATCH_EVERY_S))
                self.watch()
            if self._stop.is_set():
                break
            self.run_slot(slot)
            self.watch()
            count, last = schedule.missed(slot, datetime.now(UTC))
            if count and last is not None:
                self._report_missed(count, slot, last, "while a cycle ran longer than its period")

    def _report_missed(self, count: int, after: datetime, last: datetime, why: str) -> None:
        self.metrics.missed.inc(count)
        self.state["missed_slots_total"] += count
        self.state["missed"] = {"count": count, "after": iso(after), "last": iso(last), "why": why}
        self.alerter.notify(
            Notice(
                "missed_slots",
                f"{count} scheduled cycle(s) missed after {iso(after)} up to {iso(last)} {why}; "
                "not replayed" + ("; the latest is run now" if "down" in why else ""),
            )
        )

    # ---- one slot ------------------------------------------------------------------------

    def run_slot(self, slot: datetime) -> bool:
        """Run the cycle for ``slot``, retrying failed attempts; True when it committed."""
        schedule = self.settings.schedule
        # retries go on until the next slot from now (a catch-up slot may be long past)
        later = max(slot, datetime.now(UTC))
        deadline = schedule.next_after(later) if schedule is not None else None
        self.state["last_slot"] = iso(slot)
        for delay in (0.0, *self.settings.retry_delays_s):
            if delay and self._wait_retry(delay, deadline):
                break
            outcome = self._attempt(slot)
            if outcome is None:
                return True
            if isinstance(outcome, OutOfOrder):
                break  # a later decision exists: retrying cannot help
        return False

    def _wait_retry(self, delay: float, deadline: datetime | None) -> bool:
        """Wait ``delay`` s; True when the retry should not happen (stopping, or next slot)."""
        if deadline is not None and datetime.now(UTC).timestamp() + delay >= deadline.timestamp():
            return True
        return self._stop.wait(delay)

    def _attempt(self, slot: datetime) -> Exception | None:
        """One try; ``None`` when it committed, else the error (reported here)."""
        started = time.perf_counter()
        self.state["running"] = True
        try:
            policy = load_policy(self.settings.policy_file or self.settings.paths.policy)
            run_cycle(self.settings.paths, slot, policy, lock_timeout_s=5.0)
        except Exception as err:  # every failure is reported, none kills the scheduler
            self.metrics.failures.inc()
            self.state["consecutive_failures"] += 1
            self.state["last_error"] = f"{type(err).__name__}: {err}"
            log.error("cycle at %s failed: %s", iso(slot), self.state["last_error"])
            self.alerter.notify(
                Notice("cycle_failed", f"cycle at {iso(slot)} failed: {self.state['last_error']}")
            )
            return err
        finally:
            self.metrics.cycle_duration.observe(time.perf_counter() - started)
            self.state["running"] = False
        self.metrics.last_success.set(time.time())
        self.state["last_success_at"] = iso(datetime.now(UTC))
        self.state["consecutive_failures"] = 0
        self.state["last_error"] = None
        return None

    # ---- watcher -------------------------------------------------------------------------

    def watch(self) -> None:
        """Look at the committed state once: new decision, expired overrides, stale ledger."""
        try:
            self._watch_decision()
            self._watch_overrides()
            self._watch_ledger()
        except Exception as err:  # a bad state file is reported by the API; keep watching
            log.warning("watcher: %s", err)

    def _watch_decision(self) -> None:
        current = self.view.current()
        if current is None:
            return
        decision = current.entry.decision
        digest = current.entry.hash
        if self._seen is not None and self._seen[0] == digest:
            return
        self.metrics.show_decision(fingerprint(decision), decision)
        previous = self._seen[1] if self._seen is not None else None
        for notice in decision_notices(previous, decision, self.settings.alert_weight_move):
            self.alerter.notify(notice)
        self._seen = (digest, decision)

    def _watch_overrides(self) -> None:
        now = datetime.now(UTC)
        for override in overrides_file.load_overrides(self.settings.paths.overrides):
            if self._overrides_checked < override.expires_at <= now:
                self.alerter.notify(
                    Notice(
                        "override_expired",
                        f"override on {override.agent} ({override.action}: {override.reason}) "
                        f"expired at {iso(override.expires_at)}",
                    )
                )
        self._overrides_checked = now

    def newest_record(self) -> datetime | None:
        """The newest record's ``matured_at``: from the store's manifest, else the decision."""
        ledger = self.settings.paths.ledger
        store = LedgerStore(ledger) if ledger is not None else None
        if store is not None and store.exists():
            his = [s.hi for s in store.manifest().of("records") if s.hi is not None]
            if his:
                return datetime.fromtimestamp(max(his) / 1e6, UTC)
        current = self.view.current()
        if current is None:
            return None
        seen = [
            e.get("inputs", {}).get("last_matured_at")
            for e in current.entry.decision.get("agents", {}).values()
        ]
        times = [parse_iso(t) for t in seen if isinstance(t, str)]
        return max(times) if times else None

    def _watch_ledger(self) -> None:
        newest = self.newest_record()
        if newest is None:
            return
        age = datetime.now(UTC) - newest
        stale = age > self.settings.stale_after
        if stale and not self._stale:
            self.alerter.notify(
                Notice(
                    "ledger_stale",
                    f"no new record since {iso(newest)} ({age.total_seconds() / 3600:.1f} h, "
                    f"limit {self.settings.stale_after.total_seconds() / 3600:g} h)",
                )
            )
        elif self._stale and not stale:
            self.alerter.notify(Notice("ledger_fresh", f"records arrive again ({iso(newest)})"))
        self._stale = stale
