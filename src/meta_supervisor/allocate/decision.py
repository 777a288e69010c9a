"""The decision: weights, cash, per-agent explanations and provenance, as plain JSON.

A decision serialises canonically (sorted keys, no NaN or inf: non-finite numbers become
``null``), so the same inputs give a byte-identical file and its SHA-256 identifies it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
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


Lazy = Callable[[], dict[str, Any]]


class Decision:
    """What a cycle decided, with every number that made it.

    ``weights`` holds only agents with a positive weight; ``cash = 1 − Σ weights``;
    ``agents[name]`` is the explanation (inputs, gates, factors, steps, summary).

    ``agents`` and ``provenance`` may be given as zero-argument callables: they are called on
    first access (and their result kept), so that a decision for 10,000 agents has its
    weights, cash and portfolio without building 10,000 explanation dicts and hashing the
    inputs until someone reads them (:meth:`to_json`, a view, a commit).
    """

    FIELDS = (
        "as_of",
        "profile",
        "weights",
        "cash",
        "gross",
        "agents",
        "portfolio",
        "provenance",
        "policy",
        "schema",
    )

    __slots__ = (
        "_agents",
        "_build_agents",
        "_build_provenance",
        "_provenance",
        "as_of",
        "cash",
        "gross",
        "policy",
        "portfolio",
        "profile",
        "recipe",
        "schema",
        "weights",
    )

    as_of: str
    profile: str
    weights: dict[str, float]
    cash: float
    gross: float
    portfolio: dict[str, Any]
    policy: dict[str, Any]
    schema: str
    _agents: dict[str, dict[str, Any]]
    _build_agents: Lazy | None
    _provenance: dict[str, Any]
    _build_provenance: Lazy | None
    recipe: Any  # a Recipe (meta_supervisor.allocate.recipe) or None

    def __init__(
        self,
        as_of: str,
        profile: str,
        weights: dict[str, float],
        cash: float,
        gross: float,
        agents: dict[str, dict[str, Any]] | Lazy,
        portfolio: dict[str, Any],
        provenance: dict[str, Any] | Lazy,
        policy: dict[str, Any] | None = None,
        schema: str = SCHEMA,
        recipe: Any = None,
    ) -> None:
        init = object.__setattr__  # frozen: the only writes are here and in the lazy builds
        init(self, "as_of", as_of)
        init(self, "profile", profile)
        init(self, "weights", weights)
        init(self, "cash", cash)
        init(self, "gross", gross)
        if callable(agents):
            init(self, "_agents", {})
            init(self, "_build_agents", agents)
        else:
            init(self, "_agents", agents)
            init(self, "_build_agents", None)
        init(self, "portfolio", portfolio)
        if callable(provenance):
            init(self, "_provenance", {})
            init(self, "_build_provenance", provenance)
        else:
            init(self, "_provenance", provenance)
            init(self, "_build_provenance", None)
        init(self, "policy", {} if policy is None else policy)
        init(self, "schema", schema)
        # the inputs it was decided from (meta_supervisor.allocate.recipe), when known: a
        # commit keeps them instead of the explanations; not part of the decision's content
        init(self, "recipe", recipe)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a Decision is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Decision is frozen: cannot delete {name!r}")

    @property
    def agents(self) -> dict[str, dict[str, Any]]:
        """Per-agent explanations (built on first access when given as a callable)."""
        if self._build_agents is not None:
            object.__setattr__(self, "_agents", self._build_agents())
            object.__setattr__(self, "_build_agents", None)
        return self._agents

    @property
    def provenance(self) -> dict[str, Any]:
        """``as_of``, policy and inputs fingerprints, previous decision hash (lazy as agents)."""
        if self._build_provenance is not None:
            object.__setattr__(self, "_provenance", self._build_provenance())
            object.__setattr__(self, "_build_provenance", None)
        return self._provenance

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._plain() == other._plain()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Decision(as_of={self.as_of!r}, profile={self.profile!r}, "
            f"{len(self.weights)} weights, cash={self.cash!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (non-finite numbers become null): a JSON round trip."""
        return orjson.loads(canonical_json(self._plain()))

    def _plain(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def to_json(self, indent: int | None = 2) -> str:
        """Canonical JSON text."""
        return canonical_json(self._plain(), indent=indent)

    def digest(self) -> str:
        """SHA-256 of the compact canonical JSON: the decision's identity."""
        return fingerprint(self._plain())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """Rebuild from :meth:`to_dict` output."""
        known = {k: data[k] for k in cls.FIELDS if k in data}
        return cls(**known)
