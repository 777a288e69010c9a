"""The write API: uploads of records and telemetry, and overrides added or lifted.

Every write needs a bearer token with its scope (``ingest``, ``override``), goes through the
same functions as the CLI (:func:`meta_supervisor.ingest.batch.ingest`,
:mod:`meta_supervisor.state.overrides` under the state lock) and is recorded in the audit log.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from meta_supervisor.allocate.decision import iso, parse_iso
from meta_supervisor.service.alerts import Notice
from meta_supervisor.service.auth import require
from meta_supervisor.service.routes_read import AGENT_PATTERN
from meta_supervisor.service.tokens import Scope
from meta_supervisor.service.uploads import KEY_PATTERN, new_spool_file
from meta_supervisor.state import overrides as overrides_file
from meta_supervisor.state.files import LockBusy, StateLock

__all__ = ["router"]

log = logging.getLogger("meta_supervisor.service")

router = APIRouter(prefix="/v1")

_JSONL_TYPES = {
    "application/x-ndjson",
    "application/jsonl",
    "application/json-lines",
    "application/jsonlines",
    "text/plain",
}
_PARQUET_TYPES = {
    "application/vnd.apache.parquet",
    "application/x-parquet",
    "application/parquet",
    "application/octet-stream",
}
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN.pattern,
        description="client's key of this batch (1-128 of A-Z a-z 0-9 . _ : -)",
    ),
]


async def _spool_body(request: Request, ledger: Path, limit: int) -> tuple[Path, str]:
    """Stream the body to a spool file (413 past ``limit`` bytes); return it and its SHA-256."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in _JSONL_TYPES:
        suffix = ".jsonl"
    elif media in _PARQUET_TYPES:
        suffix = ".parquet"
    else:
        raise HTTPException(
            415,
            f"Content-Type {media or '(none)'!r}: send application/x-ndjson (JSON lines) or "
            "application/vnd.apache.parquet",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {int(declared)} bytes exceeds the {limit}-byte limit")
    path = new_spool_file(ledger, suffix)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"body exceeds the {limit}-byte limit")
                digest.update(chunk)
                handle.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, digest.hexdigest()


async def _upload(request: Request, kind: str, key: str, who: str) -> JSONResponse:
    service = request.app.state.service
    ledger = service.settings.paths.ledger
    if ledger is None:
        raise HTTPException(409, "this service reads raw files (no ledger store): uploads are off")
    body, sha256 = await _spool_body(request, ledger, service.settings.max_body_bytes)
    outcome = await asyncio.to_thread(service.uploads.ingest, kind, body, key, sha256, who)
    stored = outcome.body.get(f"accepted_{kind}", 0)
    if outcome.status == 200 and not outcome.body.get("replayed"):
        service.metrics.ingested.labels(kind=kind).inc(stored)
    elif outcome.status == 422:
        service.metrics.refused.labels(kind=kind).inc(outcome.body.get("refused", 0))
    if outcome.status == 200:  # a refused batch wrote nothing: it is answered, not audited
        service.audit.record(
            who,
            f"upload_{kind}",
            key,
            "replayed"
            if outcome.body.get("replayed")
            else ("committed" if outcome.body.get("committed") else "nothing new"),
            {"sha256": sha256, f"accepted_{kind}": stored},
        )
    else:
        log.info("upload %s by %s refused (%d)", key, who, outcome.status)
    retry = {"Retry-After": "5"} if outcome.status == 503 else None
    return JSONResponse(outcome.body, status_code=outcome.status, headers=retry)


@router.post("/records", summary="Upload records (JSON lines or Parquet), all or nothing")
async def upload_records(
    request: Request,
    key: IdempotencyKey,
    who: Annotated[str, Depends(require(Scope.INGEST))],
) -> JSONResponse:
    """Validate, de-duplicate and store a batch of reconciled records exactly as
    ``meta-supervisor ingest`` does; any refused row refuses the whole batch (422, each line
    and field named). Retrying with the same ``Idempotency-Key`` never stores twice."""
    return await _upload(request, "records", key, who)


@router.post("/telemetry", summary="Upload telemetry runs (JSON lines or Parquet), all or nothing")
async def upload_telemetry(
    request: Request,
    key: IdempotencyKey,
    who: Annotated[str, Depends(require(Scope.INGEST))],
) -> JSONResponse:
    """As ``POST /v1/records``, for telemetry runs."""
    return await _upload(request, "telemetry", key, who)


class OverrideIn(BaseModel):
    """An exclusion or a cap, with a reason and an expiry (``expires_at`` or ``duration``)."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(pattern=AGENT_PATTERN, max_length=128)
    action: Literal["exclude", "cap"]
    reason: str = Field(min_length=1, max_length=1000)
    cap: float | None = Field(None, ge=0, le=1)
    expires_at: str | None = Field(None, description="ISO-8601 instant with a zone")
    duration: str | None = Field(None, description="from now: 90m, 24h, 3d, 1w")
    allow_unknown: bool = Field(False, description="accept an agent not in the latest decision")


MAX_OVERRIDE_BODY = 64 << 10


async def _override_body(request: Request) -> OverrideIn:
    """Parse the JSON body after the token was checked (a 422 names each field at fault)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_OVERRIDE_BODY:
            raise HTTPException(413, f"body exceeds the {MAX_OVERRIDE_BODY}-byte limit")
    try:
        return OverrideIn.model_validate_json(raw or b"null")
    except ValidationError as err:
        raise HTTPException(422, field_errors(err)) from None


def field_errors(err: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{"field", "reason"}`` (the field as a dotted path)."""
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "reason": e["msg"]}
        for e in err.errors(include_url=False)
    ]


@router.post(
    "/overrides",
    status_code=201,
    summary="Add (or replace) an agent's override",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": OverrideIn.model_json_schema()}},
        }
    },
)
async def add_override(
    request: Request, who: Annotated[str, Depends(require(Scope.OVERRIDE))]
) -> dict[str, Any]:
    """Exclude or cap an agent until an expiry, as ``meta-supervisor override add``; the
    token's name is recorded as ``created_by``. Applies from the next cycle."""
    body = await _override_body(request)
    return await asyncio.to_thread(_add_override, request.app.state.service, body, who)


def _add_override(service: Any, body: OverrideIn, who: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    try:
        if (body.expires_at is None) == (body.duration is None):
            raise overrides_file.OverrideError("give exactly one of expires_at or duration")
        if body.expires_at is not None:
            try:
                expires = parse_iso(body.expires_at)
            except ValueError as err:
                raise overrides_file.OverrideError(f"field 'expires_at': {err}") from None
        else:
            expires = now + overrides_file.parse_duration(body.duration or "")
        override = overrides_file.make_override(
            body.agent,
            action=body.action,
            reason=body.reason,
            expires_at=expires,
            now=now,
            cap=body.cap,
            created_by=who,
        )
        current = service.view.current()
        known = current.entry.decision.get("agents", {}) if current is not None else None
        if not body.allow_unknown and known is not None and body.agent not in known:
            raise overrides_file.OverrideError(
                f"field 'agent': {body.agent!r} is not in the latest decision "
                "(send allow_unknown: true for an agent not seen yet)"
            )
        with StateLock(service.settings.paths.lock, 5.0):
            replaced = overrides_file.add_override(service.settings.paths.overrides, override)
    except overrides_file.OverrideError as err:
        raise HTTPException(422, str(err)) from None
    except LockBusy as err:
        raise HTTPException(503, str(err), headers={"Retry-After": "5"}) from None
    added = override.to_dict()
    service.audit.record(
        who,
        "override_add",
        body.agent,
        "committed",
        {"override": added, "replaced": bool(replaced)},
    )
    what = "excluded" if override.action == "exclude" else f"capped at {override.cap:.2%}"
    service.alerter.notify(
        Notice(
            "override_added",
            f"{override.agent} {what} until {iso(override.expires_at)} by {who}: {override.reason}",
        )
    )
    return {"added": added, "replaced": replaced and replaced.to_dict()}


@router.delete("/overrides/{agent}", summary="Lift an agent's override")
def lift_override(
    request: Request,
    agent: Annotated[str, PathParam(pattern=AGENT_PATTERN)],
    who: Annotated[str, Depends(require(Scope.OVERRIDE))],
) -> dict[str, Any]:
    """Remove the agent's override now, as ``meta-supervisor override remove``."""
    service = request.app.state.service
    try:
        with StateLock(service.settings.paths.lock, 5.0):
            removed = overrides_file.remove_override(service.settings.paths.overrides, agent)
    except overrides_file.OverrideError as err:
        raise HTTPException(404, str(err)) from None
    except LockBusy as err:
        raise HTTPException(503, str(err), headers={"Retry-After": "5"}) from None
    service.audit.record(who, "override_lift", agent, "committed", {"removed": removed.to_dict()})
    service.alerter.notify(
        Notice("override_lifted", f"override on {agent} lifted by {who} ({removed.reason})")
    )
    return {"removed": removed.to_dict()}
