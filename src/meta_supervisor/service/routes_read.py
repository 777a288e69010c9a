"""The read API (``/v1/...``): current allocation, decisions, explanations, history, diff,
overrides, quarantine, status. Every answer comes from the committed history
(:mod:`meta_supervisor.service.reader`) or the files the CLI reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam

from meta_supervisor.allocate.decision import iso, parse_iso
from meta_supervisor.ledger.store import LedgerError, LedgerStore
from meta_supervisor.service.auth import require
from meta_supervisor.service.tokens import Scope
from meta_supervisor.state import overrides as overrides_file
from meta_supervisor.state.files import HistoryEntry
from meta_supervisor.views.attribution import compare_decisions

__all__ = ["AGENT_PATTERN", "router"]

#: Agent names the API accepts in a path or a body: letters, digits and ``_.:@+-``, no
#: leading dot or slash (so ``..`` and ``/etc/passwd`` are refused before anything is read).
AGENT_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,127}$"

router = APIRouter(prefix="/v1", dependencies=[Depends(require(Scope.READ))])
Agent = Annotated[str, PathParam(pattern=AGENT_PATTERN, description="agent name")]
Seq = Annotated[int, PathParam(ge=1, description="history sequence number (1 = first)")]


def _service(request: Request) -> Any:
    return request.app.state.service


def _entry_doc(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "hash": entry.hash,
        "prev_hash": entry.prev_hash,
        "decision": entry.decision,
    }


def _no_decision() -> HTTPException:
    return HTTPException(404, "no decision yet: run a cycle (meta-supervisor allocate)")


def _entry(request: Request, seq: int | None) -> HistoryEntry:
    view = _service(request).view
    if seq is None:
        current = view.current()
        if current is None:
            raise _no_decision()
        return current.entry
    entry = view.by_seq(seq)
    if entry is None:
        raise HTTPException(404, f"no decision {seq} (entries 1 to {len(view.entries())})")
    return entry


def _agent(entry: HistoryEntry, agent: str) -> dict[str, Any]:
    agents = entry.decision.get("agents", {})
    if agent not in agents:
        raise HTTPException(
            404,
            f"agent {agent!r} is not in decision {entry.seq} ({entry.decision['as_of']})",
        )
    return agents[agent]


@router.get("/allocation", summary="The current allocation (weights, cash, as_of, hash)")
async def allocation(request: Request) -> Response:
    """The last committed decision's weights. ``ETag`` is the decision's chain hash: send it
    back in ``If-None-Match`` and an unchanged allocation costs a ``304`` with no body."""
    current = _service(request).view.current()
    if current is None:
        raise _no_decision()
    headers = {"ETag": current.etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == current.etag:
        return Response(status_code=304, headers=headers)
    return Response(current.body, media_type="application/json", headers=headers)


@router.get("/decisions/latest", summary="The latest decision, in full")
def latest_decision(request: Request) -> dict[str, Any]:
    """The last committed decision with every explanation, its sequence number and hashes."""
    return _entry_doc(_entry(request, None))


@router.get("/decisions/{seq}", summary="One decision by sequence number")
def decision(request: Request, seq: Seq) -> dict[str, Any]:
    """Decision ``seq`` of the history (1 = first), with its chain hashes."""
    return _entry_doc(_entry(request, seq))


@router.get("/decisions/{seq}/agents/{agent}", summary="One agent's explanation in a decision")
def decision_agent(request: Request, seq: Seq, agent: Agent) -> dict[str, Any]:
    """Inputs, gates, factors, steps and summary behind one agent's weight in decision ``seq``."""
    entry = _entry(request, seq)
    return {"seq": entry.seq, "as_of": entry.decision["as_of"], **_agent(entry, agent)}


@router.get("/agents/{agent}", summary="One agent's explanation in the latest decision")
def agent_latest(request: Request, agent: Agent) -> dict[str, Any]:
    """Inputs, gates, factors, steps and summary behind one agent's current weight."""
    entry = _entry(request, None)
    return {"seq": entry.seq, "as_of": entry.decision["as_of"], **_agent(entry, agent)}


def _parse_time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_iso(text)
    except ValueError as err:
        raise HTTPException(422, f"{name}: {err}") from None


def _agent_point(entry: HistoryEntry, agent: str) -> dict[str, Any] | None:
    explanation = entry.decision.get("agents", {}).get(agent)
    if explanation is None:
        return None
    gate = next((g for g in explanation.get("gates", []) if not g.get("passed")), None)
    return {
        "seq": entry.seq,
        "as_of": entry.decision["as_of"],
        "weight": explanation.get("weight", 0.0),
        "gate": gate,
        "factors": {f["factor"]: f["value"] for f in explanation.get("factors", [])},
        "summary": explanation.get("summary"),
        "override": explanation.get("override"),
    }


@router.get("/history", summary="Weights over time (all agents, or one agent's factors)")
def history(
    request: Request,
    agent: Annotated[str | None, Query(pattern=AGENT_PATTERN)] = None,
    start: Annotated[str | None, Query(description="ISO-8601 instant, inclusive")] = None,
    end: Annotated[str | None, Query(description="ISO-8601 instant, inclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="newest entries kept")] = 500,
) -> dict[str, Any]:
    """Decisions with ``start <= as_of <= end``, oldest first, at most ``limit`` (the newest).

    Without ``agent``: weights, cash and gross of each. With ``agent``: its weight, the gate it
    failed, its factors and summary in each decision where it appears.
    """
    lo, hi = _parse_time(start, "start"), _parse_time(end, "end")
    # as_of, weights, cash and gross are in each entry's record: only an agent's points need
    # the explanations (built from each decision's inputs file)
    chosen = [
        e
        for e in _service(request).view.entries()
        if (lo is None or parse_iso(e.record["as_of"]) >= lo)
        and (hi is None or parse_iso(e.record["as_of"]) <= hi)
    ][-limit:]
    if agent is None:
        points = [
            {
                "seq": e.seq,
                "as_of": e.record["as_of"],
                "hash": e.hash,
                "weights": e.record["weights"],
                "cash": e.record["cash"],
                "gross": e.record["gross"],
            }
            for e in chosen
        ]
    else:
        points = [p for e in chosen if (p := _agent_point(e, agent)) is not None]
    return {"agent": agent, "points": points}


@router.get("/diff", summary="What changed between two decisions, and why")
def diff(
    request: Request,
    old: Annotated[int | None, Query(ge=1, description="older seq (default: new - 1)")] = None,
    new: Annotated[int | None, Query(ge=1, description="newer seq (default: latest)")] = None,
) -> dict[str, Any]:
    """Portfolio, policy and per-agent changes with their drivers (as ``meta-supervisor diff``)."""
    new_entry = _entry(request, new)
    old_seq = old if old is not None else new_entry.seq - 1
    if old_seq < 1:
        raise HTTPException(404, "only one decision so far: nothing to compare")
    old_entry = _entry(request, old_seq)
    return {
        "old": {"seq": old_entry.seq, "as_of": old_entry.decision["as_of"]},
        "new": {"seq": new_entry.seq, "as_of": new_entry.decision["as_of"]},
        **compare_decisions(old_entry.decision, new_entry.decision),
    }


@router.get("/overrides", summary="Operator overrides, active or expired")
def overrides(request: Request) -> dict[str, Any]:
    """Every override in the file, whether it is in force now, and whether the latest decision
    applied it (an override added since takes effect at the next cycle)."""
    service = _service(request)
    now = datetime.now(UTC)
    try:
        items = overrides_file.load_overrides(service.settings.paths.overrides)
    except overrides_file.OverrideError as err:
        raise HTTPException(500, str(err)) from None
    current = service.view.current()
    applied = (
        {}
        if current is None
        else {
            name: e.get("override")
            for name, e in current.entry.decision.get("agents", {}).items()
            if e.get("override")
        }
    )
    return {
        "as_of": iso(now),
        "overrides": [
            o.to_dict()
            | {
                "active": o.active(now),
                "in_latest_decision": applied.get(o.agent) == o.to_dict(),
            }
            for o in items
        ],
    }


@router.get("/quarantine", summary="Rows refused by ingest (file, line, field, reason)")
def quarantine(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """The ledger's quarantine, in commit order (as ``meta-supervisor quarantine``)."""
    ledger = _service(request).settings.paths.ledger
    store = LedgerStore(ledger) if ledger is not None else None
    if store is None or not store.exists():
        return {"total": 0, "rows": []}
    try:
        rows = store.quarantine()
    except LedgerError as err:
        raise HTTPException(500, str(err)) from None
    return {"total": rows.height, "rows": rows.slice(offset, limit).to_dicts()}


@router.get("/status", summary="Scheduler state: schedule, next slot, failures, missed slots")
def status(request: Request) -> dict[str, Any]:
    """What the scheduler is doing and has done since the service started."""
    service = _service(request)
    return {"service_started_at": service.started_at, **service.scheduler.state}
