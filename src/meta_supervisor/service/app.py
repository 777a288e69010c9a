"""The ASGI application: routes, health, metrics, the dashboard, and the background threads.

:func:`create_app` builds one :class:`Service` (settings, state view, tokens, audit log,
uploads, metrics, alerter, scheduler) and a FastAPI app around it. The lifespan starts the
alerter and the scheduler and stops them on shutdown; everything else is per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from meta_supervisor import __version__
from meta_supervisor.allocate.decision import fingerprint, iso, parse_iso
from meta_supervisor.ledger.store import LedgerError, LedgerStore
from meta_supervisor.service import routes_read, routes_write
from meta_supervisor.service.alerts import Alerter
from meta_supervisor.service.audit import AuditLog
from meta_supervisor.service.auth import require
from meta_supervisor.service.metrics import ServiceMetrics
from meta_supervisor.service.reader import StateView
from meta_supervisor.service.scheduler import Scheduler
from meta_supervisor.service.settings import ServiceSettings
from meta_supervisor.service.tokens import Scope, Tokens
from meta_supervisor.service.uploads import Uploads

__all__ = ["Service", "create_app"]

log = logging.getLogger("meta_supervisor.service")
DASHBOARD = Path(str(files("meta_supervisor.service") / "dashboard"))
#: The pages load only what the package serves: no CDN, no inline script, no framing.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

ASGIScope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]


@dataclass
class Service:
    """What the routes share."""

    settings: ServiceSettings
    view: StateView
    tokens: Tokens
    audit: AuditLog
    uploads: Uploads | None
    metrics: ServiceMetrics
    alerter: Alerter
    scheduler: Scheduler
    started_at: str


class LatencyMiddleware:
    """Observe each HTTP request's latency, labelled by route template (plain ASGI: cheap)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.http_latency.labels(
                route=template, method=scope["method"], status=str(status[0])
            ).observe(time.perf_counter() - started)


def _error_body(detail: Any) -> dict[str, Any]:
    if isinstance(detail, list):
        first = detail[0] if detail else {}
        return {"error": f"field {first.get('field')!r}: {first.get('reason')}", "errors": detail}
    return {"error": str(detail)}


def build_service(settings: ServiceSettings) -> Service:
    """The shared objects of one service (no thread started)."""
    metrics = ServiceMetrics()
    view = StateView(settings.paths.history)
    alerter = Alerter(
        settings.webhook_url, count=lambda outcome: metrics.alerts.labels(outcome=outcome).inc()
    )
    ledger = settings.paths.ledger
    return Service(
        settings=settings,
        view=view,
        tokens=Tokens.load(settings.tokens),
        audit=AuditLog(settings.paths.state_dir / "audit.jsonl"),
        uploads=Uploads(ledger) if ledger is not None else None,
        metrics=metrics,
        alerter=alerter,
        scheduler=Scheduler(settings, view, metrics, alerter),
        started_at=iso(datetime.now(UTC).replace(microsecond=0)),
    )


def _ready(service: Service) -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {}
    ok = True
    try:
        current = service.view.current()
    except (OSError, ValueError) as err:
        return False, {"decision": f"history unreadable: {err}"}
    if current is None:
        ok, checks["decision"] = False, "no decision yet"
    else:
        as_of = parse_iso(current.entry.record["as_of"])  # no explanations needed
        age = datetime.now(UTC) - as_of
        allowed = service.settings.allowed_age()
        fresh = allowed is None or age <= allowed
        ok = ok and fresh
        checks["decision"] = {
            "as_of": iso(as_of),
            "age_s": round(age.total_seconds(), 3),
            "allowed_age_s": None if allowed is None else allowed.total_seconds(),
            "fresh": fresh,
        }
    ledger = service.settings.paths.ledger
    store = LedgerStore(ledger) if ledger is not None else None
    try:
        if store is not None and store.exists():
            checks["ledger"] = f"store generation {store.manifest().generation}"
        else:
            for path in (service.settings.paths.records, service.settings.paths.telemetry):
                if path.exists():
                    with open(path, "rb") as handle:
                        handle.read(1)
            checks["ledger"] = "raw files readable"
    except (OSError, LedgerError) as err:
        ok, checks["ledger"] = False, f"unreadable: {err}"
    return ok, checks


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service as an ASGI app (``uvicorn`` runs it; tests may too)."""
    service = build_service(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if service.uploads is not None:
            service.uploads.clean_spool()
        service.alerter.start()
        service.scheduler.start()
        try:
            yield
        finally:
            service.scheduler.stop()
            service.alerter.stop()

    app = FastAPI(
        title="meta-supervisor",
        version=__version__,
        description="Capital allocation for a fleet of trading agents: the current weights, "
        "every decision with its reasons, uploads and overrides. Guide: docs/SERVICE.md.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/v1/openapi.json",
        redirect_slashes=False,
    )
    app.state.service = service
    app.add_middleware(LatencyMiddleware, metrics=service.metrics)
    app.include_router(routes_read.router)
    app.include_router(routes_write.router)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(_error_body(exc.detail), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
        ]
        return JSONResponse(_error_body(errors), 422)

    @app.exception_handler(ValueError)
    @app.exception_handler(LedgerError)
    async def unreadable(_request: Request, exc: Exception) -> JSONResponse:
        # a state or ledger file that will not parse: name it, point at the check
        log.error("unreadable state: %s", exc)
        return JSONResponse({"error": f"{exc}; run 'meta-supervisor verify'"}, 500)

    @app.get("/healthz", summary="The process is up", tags=["health"])
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__, "started_at": service.started_at}

    @app.get(
        "/readyz", summary="A fresh decision exists and the ledger is readable", tags=["health"]
    )
    def readyz() -> JSONResponse:
        ok, checks = _ready(service)
        return JSONResponse({"ready": ok, "checks": checks}, 200 if ok else 503)

    @app.get(
        "/metrics",
        summary="Prometheus metrics (scope read, unless reads are open)",
        tags=["health"],
        dependencies=[Depends(require(Scope.READ))],
    )
    def metrics() -> Response:
        current = service.view.current()
        if current is not None:
            decision = current.entry.decision
            service.metrics.show_decision(fingerprint(decision), decision)
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD / "index.html", headers=PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(DASHBOARD / "docs.html", headers=PAGE_HEADERS)

    app.mount("/assets", StaticFiles(directory=DASHBOARD), name="assets")
    return app
