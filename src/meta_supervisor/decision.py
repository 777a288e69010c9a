"""The decision: weights, cash, per-agent explanations and provenance, as plain JSON.

A decision serialises canonically (sorted keys, no NaN or inf: non-finite numbers become
``null``), so the same inputs give a byte-identical file and its SHA-256 identifies it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["SCHEMA", "Decision", "canonical_json", "fingerprint", "iso", "parse_iso"]

SCHEMA = "meta-supervisor/decision/1"


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` (naive datetimes are refused: they hide a time zone)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: give a time zone (UTC)")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 instant with a zone ('Z' or an offset) to an aware UTC datetime."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone (add 'Z' or '+00:00')")
    return moment.astimezone(UTC)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def canonical_json(value: Any, *, indent: int | None = None) -> str:
    """Deterministic JSON: sorted keys, non-finite floats as ``null`` (never NaN or Infinity).

    orjson (fast, C) writes NaN and ±inf as ``null`` and numbers in their shortest round-trip
    form, so the same value always gives the same bytes. ``indent`` (any value) means 2 spaces.
    """
    options = _OPTIONS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, default=_default, option=options).decode()


def fingerprint(value: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


@dataclass
class Decision:
    """What a cycle decided, with every number that made it.

    ``weights`` holds only agents with a positive weight; ``cash = 1 − Σ weights``;
    ``agents[name]`` is the explanation (inputs, gates, factors, steps, summary).
    """

    as_of: str
    profile: str
    weights: dict[str, float]
    cash: float
    gross: float
    agents: dict[str, dict[str, Any]]
    portfolio: dict[str, Any]
    provenance: dict[str, Any]
    policy: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (non-finite numbers become null): a JSON round trip."""
        return orjson.loads(canonical_json(self._plain()))

    def _plain(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def to_json(self, indent: int | None = 2) -> str:
        """Canonical JSON text."""
        return canonical_json(self._plain(), indent=indent)

    def digest(self) -> str:
        """SHA-256 of the compact canonical JSON: the decision's identity."""
        return fingerprint(self._plain())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """Rebuild from :meth:`to_dict` output."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)
