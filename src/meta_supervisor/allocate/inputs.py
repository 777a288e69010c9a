"""What the allocation reads besides the statistics: strategy tails, confidence, overrides.

Plain frozen records, built by the signals (:mod:`meta_supervisor.signals`) or the operator
(:mod:`meta_supervisor.state.overrides`) and read by every profile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from meta_supervisor.allocate.decision import iso
from meta_supervisor.allocate.schema import OverrideRecord

__all__ = ["Confidence", "Override", "Tail"]


@dataclass(frozen=True)
class Tail:
    """A strategy's tail: raw and used CVaR95 of the gap (bps, ≤ 0 is bad) over ``n`` gaps."""

    strategy: str
    n: int
    gap_cvar95_bps: float | None
    gap_cvar95_used_bps: float | None
    shrunk: bool = False
    worst_gap: float | None = None
    mean_gap: float | None = None
    window_hours: float | None = None
    mean_abs_gap: float | None = None  # the strategy's own gap scale (evidence profile)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], window_hours: float | None = None) -> Tail:
        """A tail from a row of :func:`meta_supervisor.signals.tails.strategy_tails` (or the same
        keys,
        as :func:`meta_supervisor.strategy_cvar.run` returns them, with ``strategy`` added)."""
        return cls(
            strategy=row["strategy"],
            n=row["n"],
            gap_cvar95_bps=row["gap_cvar95_bps"],
            gap_cvar95_used_bps=row["gap_cvar95_used_bps"],
            shrunk=row["shrunk"],
            worst_gap=row["worst_gap"],
            mean_gap=row["mean_gap"],
            window_hours=row.get("window_hours", window_hours),
            mean_abs_gap=row.get("mean_abs_gap"),
        )


@dataclass(frozen=True)
class Confidence:
    """An agent's confidence multiplier and the evidence behind it."""

    multiplier: float
    n_evidence: int = 0
    evidence_weight: float = 0.0
    error_ratio: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Confidence:
        """From a row of :func:`meta_supervisor.signals.confidence.confidence_multipliers`'
        frame (its columns :data:`_CONFIDENCE_FIELDS` name)."""
        return cls(**{field: row[column] for field, column in _CONFIDENCE_FIELDS.items()})

    @classmethod
    def by_agent(cls, frame: pl.DataFrame) -> dict[str, Confidence]:
        """:meth:`from_row` of every row of ``frame``, keyed by ``agent`` (a later row wins),
        read column by column (a row iteration costs ~4 ms at 1,000 agents). A frame with no
        rows is no confidence (``{}``), whatever its columns."""
        if not frame.height:
            return {}
        # in the fields' order: each row's values are the dataclass's positional arguments
        order = [_CONFIDENCE_FIELDS[f.name] for f in dataclasses.fields(cls)]
        columns = (frame[c].to_list() for c in ("agent", *order))
        return {agent: cls(*values) for agent, *values in zip(*columns, strict=True)}


#: :class:`Confidence`'s fields and the columns of the confidence frame they are read from.
_CONFIDENCE_FIELDS = {
    "multiplier": "confidence",
    "n_evidence": "n_evidence",
    "evidence_weight": "evidence_weight",
    "error_ratio": "error_ratio",
}


@dataclass(frozen=True)
class Override:
    """An operator's action on one agent, active while ``as_of < expires_at``.

    ``action`` is ``"exclude"`` (weight 0) or ``"cap"`` (weight at most ``cap``).
    """

    agent: str
    action: str
    reason: str
    expires_at: datetime
    cap: float | None = None
    created_by: str = "operator"

    def active(self, as_of: datetime) -> bool:
        """True while the override applies."""
        return as_of < self.expires_at

    def to_dict(self) -> OverrideRecord:
        """JSON-ready form."""
        return {
            "agent": self.agent,
            "action": self.action,
            "reason": self.reason,
            "expires_at": iso(self.expires_at),
            "cap": self.cap,
            "created_by": self.created_by,
        }
