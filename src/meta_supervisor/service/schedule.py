"""When cycles run: a fixed period aligned to the clock (``1h``) or a cron expression.

Pure functions of the instant they are given (no clock read here): the scheduler
(:mod:`meta_supervisor.service.scheduler`) asks for the next slot after *now* and for the slots
missed between the latest decision and *now*.

* ``every``: slots are the multiples of the period since the Unix epoch, in UTC, so ``1h`` runs
  at every full hour and ``15m`` at :00, :15, :30 and :45 whenever the service was started.
* ``cron``: a five-field cron expression in UTC (``"5 * * * *"``: five past every hour), read by
  ``croniter``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from meta_supervisor.units import epoch_us, from_epoch_us

__all__ = ["Schedule", "ScheduleError", "parse_period"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Missed slots counted one by one at most this many (older ones are counted, not listed).
MAX_LISTED = 10_000


class ScheduleError(ValueError):
    """A schedule that cannot be read; the message names the value."""


def parse_period(text: str) -> timedelta:
    """``"30s"``, ``"15m"``, ``"1h"``, ``"1d"`` (or combinations such as ``"1h30m"``) > 0."""
    parts = re.findall(r"(\d+)\s*([smhd])", text.strip().lower())
    if not parts or re.sub(r"\s*\d+\s*[smhd]\s*", "", text.strip().lower()):
        raise ScheduleError(f"--every: {text!r} is not a period (e.g. 30s, 15m, 1h, 1d)")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ScheduleError(f"--every: {text!r} must be longer than zero")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Schedule:
    """A period (``every``) or a cron expression (``cron``): exactly one of them."""

    every: timedelta | None = None
    cron: str | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ScheduleError("give exactly one of --every PERIOD or --cron EXPRESSION")
        if self.cron is not None:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise ScheduleError(f"--cron: {self.cron!r} is not a cron expression")

    @classmethod
    def parse(cls, every: str | None, cron: str | None) -> Schedule | None:
        """From the flag texts; ``None`` when neither is given (no scheduled cycles)."""
        if every is None and cron is None:
            return None
        return cls(every=parse_period(every) if every else None, cron=cron or None)

    def describe(self) -> str:
        """``every 1:00:00`` or ``cron 5 * * * *``."""
        return f"every {self.every}" if self.every is not None else f"cron {self.cron}"

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after ``moment``."""
        if self.every is not None:
            step = self.every // timedelta(microseconds=1)
            elapsed = epoch_us(moment)
            return from_epoch_us((elapsed // step + 1) * step)
        from croniter import croniter

        return _utc(croniter(self.cron, moment.astimezone(UTC)).get_next(datetime))

    def last_at_or_before(self, moment: datetime) -> datetime:
        """The latest slot at or before ``moment``."""
        if self.every is not None:
            step = self.every // timedelta(microseconds=1)
            elapsed = epoch_us(moment)
            return from_epoch_us((elapsed // step) * step)
        from croniter import croniter

        probe = moment + timedelta(microseconds=1)
        return _utc(croniter(self.cron, probe.astimezone(UTC)).get_prev(datetime))

    def period(self, moment: datetime) -> timedelta:
        """The gap between the slot before ``moment`` and the one after it."""
        before = self.last_at_or_before(moment)
        return self.next_after(before) - before

    def missed(self, latest: datetime, now: datetime) -> tuple[int, datetime | None]:
        """Slots in ``(latest, now]``: how many, and the last of them (``None`` if none).

        The count is exact for a period (arithmetic); for cron it stops at ``MAX_LISTED``.
        """
        last = self.last_at_or_before(now)
        if last <= latest:
            return 0, None
        if self.every is not None:
            return (last - self.last_at_or_before(latest)) // self.every, last
        count, slot = 0, latest
        while count < MAX_LISTED:
            slot = self.next_after(slot)
            if slot > now:
                break
            count += 1
        return count, last


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(fold=0)
