"""Operator overrides on disk: ``state_dir/overrides.json``, validated, written atomically.

An override excludes an agent (weight 0) or caps it (weight at most ``cap``) with a reason,
until ``expires_at``. It is active while ``as_of < expires_at``
(:meth:`meta_supervisor.allocate.core.Override.active`); once expired the agent returns to
evidence-based allocation, which is the point: the original system's kill list was a one-way
ratchet. Expired overrides stay in the file as a record until removed.

The file is a JSON list, one object per agent (adding an override for an agent replaces its
previous one, so that the allocator never has to choose between two)::

    [{"agent": "hydra", "action": "exclude", "reason": "venue outage",
      "expires_at": "2026-01-18T00:00:00Z", "cap": null, "created_by": "risk-desk"}]

Errors (:class:`OverrideError`) name the file, the entry (1-based) and the field at fault.
Reading and writing the file are the only I/O here; the clock is always an argument.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from meta_supervisor.allocate.decision import canonical_json, iso, parse_iso
from meta_supervisor.allocate.inputs import Override
from meta_supervisor.errors import BadInput
from meta_supervisor.state.files import atomic_write_text

__all__ = [
    "ACTIONS",
    "OverrideError",
    "active_overrides",
    "add_override",
    "load_overrides",
    "make_override",
    "parse_duration",
    "parse_override",
    "remove_override",
    "save_overrides",
]

ACTIONS = ("exclude", "cap")
_FIELDS = ("agent", "action", "reason", "expires_at", "cap", "created_by")
_UNITS = {"m": 1 / 60, "h": 1.0, "d": 24.0, "w": 24.0 * 7}


class OverrideError(BadInput):
    """An override or the overrides file is invalid; the message names the field at fault."""


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise OverrideError(f"{where}: field '{key}' is required (a non-empty string)")
    return value.strip()


def parse_override(item: Any, where: str = "override") -> Override:
    """Validate one JSON object into an :class:`Override`; errors name ``where`` and the field.

    Checks: ``agent``, ``action`` (``exclude`` | ``cap``) and ``reason`` present and non-empty;
    ``expires_at`` an ISO-8601 instant with a zone; ``cap`` a number in ``[0, 1]``, required
    for ``cap`` and absent (or null) for ``exclude``; no unknown field.
    """
    if not isinstance(item, dict):
        raise OverrideError(f"{where}: expected an object, got {type(item).__name__}")
    for key in item:
        if key not in _FIELDS:
            hint = difflib.get_close_matches(str(key), _FIELDS, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            raise OverrideError(f"{where}: unknown field '{key}'{suggestion}")
    agent = _text(item, "agent", where)
    action = _text(item, "action", where).lower()
    if action not in ACTIONS:
        raise OverrideError(f"{where}: field 'action' must be one of {ACTIONS}, got {action!r}")
    reason = _text(item, "reason", where)
    try:
        expires_at = parse_iso(_text(item, "expires_at", where))
    except ValueError as err:
        raise OverrideError(f"{where}: field 'expires_at': {err}") from None
    cap = item.get("cap")
    if action == "cap":
        if isinstance(cap, bool) or not isinstance(cap, int | float):
            raise OverrideError(f"{where}: field 'cap' is required for action 'cap' (0 to 1)")
        if not 0.0 <= float(cap) <= 1.0:
            raise OverrideError(f"{where}: field 'cap' must be in [0, 1], got {cap!r}")
        cap = float(cap)
    elif cap is not None:
        raise OverrideError(f"{where}: field 'cap' must be empty for action 'exclude'")
    created_by = item.get("created_by", "operator")
    if not isinstance(created_by, str) or not created_by.strip():
        raise OverrideError(f"{where}: field 'created_by' must be a non-empty string")
    return Override(
        agent=agent,
        action=action,
        reason=reason,
        expires_at=expires_at,
        cap=cap,
        created_by=created_by.strip(),
    )


def load_overrides(path: str | Path) -> list[Override]:
    """All overrides in ``path`` (active or not); a missing file means none.

    An empty file is an error, not "none": a file truncated or emptied by accident would lift
    every exclusion (no overrides is ``[]``).
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise OverrideError(f"{path}: not UTF-8 text: {err.reason}") from None
    if not text.strip():
        raise OverrideError(
            f"{path}: the overrides file is empty; an empty file would lift every exclusion. "
            "Write [] for no overrides, or restore the file"
        )
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise OverrideError(
            f"{path}: line {err.lineno} column {err.colno}: not valid JSON: {err.msg}"
        ) from None
    if not isinstance(items, list):
        raise OverrideError(f"{path}: expected a JSON list of overrides")
    overrides = [parse_override(item, f"{path}: entry {i}") for i, item in enumerate(items, 1)]
    seen: dict[str, int] = {}
    for i, override in enumerate(overrides, 1):
        if override.agent in seen:
            raise OverrideError(
                f"{path}: entry {i}: field 'agent': {override.agent!r} already has an override "
                f"(entry {seen[override.agent]}); keep one per agent"
            )
        seen[override.agent] = i
    return overrides


def save_overrides(path: str | Path, overrides: Iterable[Override]) -> None:
    """Write ``overrides`` to ``path`` atomically, sorted by agent (canonical JSON)."""
    items = [o.to_dict() for o in sorted(overrides, key=lambda o: o.agent)]
    atomic_write_text(Path(path), canonical_json(items, indent=2) + "\n")


def parse_duration(text: str) -> timedelta:
    """``"90m"``, ``"24h"``, ``"3d"``, ``"1w"`` (a bare number is hours) -> timedelta > 0."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw]?)\s*", text.lower())
    if not match:
        raise OverrideError(f"--for: {text!r} is not a duration (e.g. 90m, 24h, 3d, 1w)")
    hours = float(match.group(1)) * _UNITS[match.group(2) or "h"]
    if hours <= 0:
        raise OverrideError(f"--for: {text!r} must be longer than zero")
    return timedelta(hours=hours)


def make_override(
    agent: str,
    *,
    action: str,
    reason: str,
    expires_at: datetime,
    now: datetime,
    cap: float | None = None,
    created_by: str = "operator",
) -> Override:
    """A new override, validated like a file entry, whose expiry must be after ``now``."""
    if expires_at <= now:
        raise OverrideError(
            f"field 'expires_at': {iso(expires_at)} is not after {iso(now)}; "
            "an override must expire in the future"
        )
    item = {
        "agent": agent,
        "action": action,
        "reason": reason,
        "expires_at": iso(expires_at),
        "cap": cap,
        "created_by": created_by,
    }
    return parse_override(item, f"override for {agent!r}")


def add_override(path: str | Path, override: Override) -> Override | None:
    """Add ``override`` to the file, replacing the agent's previous one (returned, or None)."""
    current = load_overrides(path)
    replaced = next((o for o in current if o.agent == override.agent), None)
    save_overrides(path, [o for o in current if o.agent != override.agent] + [override])
    return replaced


def remove_override(path: str | Path, agent: str) -> Override:
    """Remove the agent's override from the file and return it."""
    current = load_overrides(path)
    found = next((o for o in current if o.agent == agent), None)
    if found is None:
        known = ", ".join(o.agent for o in current) or "none"
        raise OverrideError(f"{path}: no override for agent {agent!r} (overrides: {known})")
    save_overrides(path, [o for o in current if o.agent != agent])
    return found


def active_overrides(overrides: Sequence[Override], as_of: datetime) -> list[Override]:
    """The overrides in force at ``as_of`` (``as_of < expires_at``), sorted by agent."""
    return sorted((o for o in overrides if o.active(as_of)), key=lambda o: o.agent)
