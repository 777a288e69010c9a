"""The service's settings: flags, else environment, else the policy file's ``[service]`` table.

=================================== ================================ =========================
environment variable                policy file (``[service]``)      default
=================================== ================================ =========================
``META_SUPERVISOR_HOST``            ``host``                         ``127.0.0.1``
``META_SUPERVISOR_PORT``            ``port``                         ``8750``
``META_SUPERVISOR_TOKENS``          ``tokens``                       none (writes refused)
``META_SUPERVISOR_SCHEDULE``        ``every`` or ``cron``            none (no scheduled cycle)
``META_SUPERVISOR_READ_OPEN``       ``read_open``                    ``false``
``META_SUPERVISOR_MAX_BODY``        ``max_body_bytes``               16 MiB
``META_SUPERVISOR_MAX_AGE``         ``max_age``                      2 schedule periods
``META_SUPERVISOR_WEBHOOK``         ``webhook_url``                  none (no alert sent)
``META_SUPERVISOR_ALERT_MOVE``      ``alert_weight_move``            0.05 (5 points)
``META_SUPERVISOR_STALE_AFTER``     ``stale_after``                  ``48h``
=================================== ================================ =========================

``META_SUPERVISOR_SCHEDULE`` is a period (``1h``) or a cron expression (five fields). The
policy file is the one the cycles use (``--config`` or ``META_SUPERVISOR_POLICY``); its
``[policy]`` table is the policy, its ``[service]`` table these settings.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from meta_supervisor.config import Paths
from meta_supervisor.service.schedule import Schedule, ScheduleError, parse_period

__all__ = ["ServiceSettings", "SettingsError", "resolve"]

DEFAULT_PORT = 8750
DEFAULT_MAX_BODY = 16 << 20
_KEYS = {
    "host",
    "port",
    "tokens",
    "every",
    "cron",
    "read_open",
    "max_body_bytes",
    "max_age",
    "webhook_url",
    "alert_weight_move",
    "stale_after",
}


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it and where it came from."""


@dataclass(frozen=True)
class ServiceSettings:
    """Everything :func:`meta_supervisor.service.app.create_app` needs."""

    paths: Paths
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tokens: Path | None = None
    schedule: Schedule | None = None
    read_open: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_age: timedelta | None = None
    webhook_url: str | None = None
    alert_weight_move: float = 0.05
    stale_after: timedelta = timedelta(hours=48)
    policy_file: Path | None = None
    retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0)
    extra: dict[str, Any] = field(default_factory=dict)

    def allowed_age(self) -> timedelta | None:
        """How old the latest decision may be before ``/readyz`` fails."""
        if self.max_age is not None:
            return self.max_age
        if self.schedule is None:
            return None
        return 2 * self.schedule.period(datetime.now(UTC))


def _service_table(policy_file: Path | None) -> dict[str, Any]:
    if policy_file is None or not policy_file.exists():
        return {}
    try:
        doc = tomllib.loads(policy_file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{policy_file}: not valid TOML: {err}") from None
    table = doc.get("service", {})
    if not isinstance(table, dict):
        raise SettingsError(f"{policy_file}: [service] must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise SettingsError(f"{policy_file}: [service]: unknown key '{unknown[0]}'")
    return table


def _truthy(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def resolve(
    paths: Paths,
    *,
    policy_file: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    tokens: Path | None = None,
    every: str | None = None,
    cron: str | None = None,
    read_open: bool | None = None,
    max_body_bytes: int | None = None,
    max_age: str | None = None,
    webhook_url: str | None = None,
    alert_weight_move: float | None = None,
    stale_after: str | None = None,
) -> ServiceSettings:
    """Flags (given here), else ``META_SUPERVISOR_*``, else the policy file's ``[service]``."""
    env = os.environ
    table = _service_table(policy_file)

    def pick(flag: Any, env_key: str, key: str) -> Any:
        if flag is not None:
            return flag
        if env_key in env:
            return env[env_key]
        return table.get(key)

    try:
        if every is None and cron is None:
            scheduled = env.get("META_SUPERVISOR_SCHEDULE")
            if scheduled:
                every, cron = (None, scheduled) if " " in scheduled.strip() else (scheduled, None)
            else:
                every, cron = table.get("every"), table.get("cron")
        schedule = Schedule.parse(every, cron)
        age = pick(max_age, "META_SUPERVISOR_MAX_AGE", "max_age")
        stale = pick(stale_after, "META_SUPERVISOR_STALE_AFTER", "stale_after") or "48h"
        chosen_port = pick(port, "META_SUPERVISOR_PORT", "port")
        port_value = DEFAULT_PORT if chosen_port is None else int(chosen_port)
        body = int(pick(max_body_bytes, "META_SUPERVISOR_MAX_BODY", "max_body_bytes") or 0)
        move = pick(alert_weight_move, "META_SUPERVISOR_ALERT_MOVE", "alert_weight_move")
    except (ScheduleError, ValueError) as err:
        raise SettingsError(str(err)) from None
    if not 0 <= port_value <= 65535:
        raise SettingsError(f"--port: {port_value} is not a TCP port")
    opened = pick(read_open, "META_SUPERVISOR_READ_OPEN", "read_open")
    token_file = pick(tokens, "META_SUPERVISOR_TOKENS", "tokens")
    return ServiceSettings(
        paths=paths,
        host=str(pick(host, "META_SUPERVISOR_HOST", "host") or "127.0.0.1"),
        port=port_value,
        tokens=Path(token_file) if token_file else None,
        schedule=schedule,
        read_open=opened if isinstance(opened, bool) else _truthy(str(opened or "")),
        max_body_bytes=body or DEFAULT_MAX_BODY,
        max_age=parse_period(str(age)) if age else None,
        webhook_url=pick(webhook_url, "META_SUPERVISOR_WEBHOOK", "webhook_url") or None,
        alert_weight_move=float(move) if move is not None else 0.05,
        stale_after=parse_period(str(stale)),
        policy_file=policy_file,
    )
