"""The live service (``meta-supervisor serve``): HTTP API, scheduler, metrics, alerts, dashboard.

One module per job::

    settings   flags, environment, the policy file's [service] table
    schedule   slots aligned to the clock (a period or a cron expression), pure
    scheduler  one cycle per slot under the state lock, retries, missed slots; the watcher
    reader     the committed history, cached by file stat (what the read API serves)
    routes_read, routes_write   the /v1 API; auth: bearer tokens and scopes (tokens: hashed)
    uploads    records and telemetry through the ingest pipeline, all or nothing, idempotent
    audit      the append-only log of every write
    metrics    Prometheus metrics; alerts: webhook notices off the cycle's path
    app        the FastAPI app, health, the dashboard (dashboard/: HTML, JS, CSS, no CDN)

The service writes through the same functions as the CLI (``run_cycle``, ``ingest``, the
overrides file under the state lock); nothing in the core imports it.
"""

from __future__ import annotations

from meta_supervisor.service.app import Service, create_app
from meta_supervisor.service.schedule import Schedule, ScheduleError
from meta_supervisor.service.settings import ServiceSettings, SettingsError, resolve
from meta_supervisor.service.tokens import Scope, Tokens

__all__ = [
    "Schedule",
    "ScheduleError",
    "Scope",
    "Service",
    "ServiceSettings",
    "SettingsError",
    "Tokens",
    "create_app",
    "resolve",
]
