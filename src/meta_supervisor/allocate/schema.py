"""The explanation schema: what ``decision.agents[name]`` and ``decision.portfolio`` hold.

One home for the keys the views, the memo, the CLI's ``--json`` and docs/CLI.md read. Weights
and steps are fractions of capital; bps values are named ``*_bps``; a multiplier of 1 has no
effect.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = ["AgentExplanation", "Factor", "Gate", "OverrideRecord", "Portfolio", "Steps"]


class Gate(TypedDict):
    """One safety gate's verdict (:mod:`meta_supervisor.allocate.gates`)."""

    gate: str
    passed: bool
    detail: str


class Factor(TypedDict):
    """One factor of the profile: its value (a multiplier, or the seed's ``alpha`` base) and
    a one-line reason."""

    factor: str
    value: float
    reason: str


class Steps(TypedDict):
    """The agent's weight after every step of the pipeline (``quality`` is the profile's
    quality, 0 when gated; ``share_before_risk = quality / Σ quality``)."""

    quality: float
    share_before_risk: float
    after_cap: float
    after_risk: float
    after_gross_cap: float
    after_stability: float
    final: float


class OverrideRecord(TypedDict):
    """An operator override as recorded (:meth:`~meta_supervisor.allocate.inputs.Override.
    to_dict`)."""

    agent: str
    action: str
    reason: str
    expires_at: str
    cap: float | None
    created_by: str


class AgentExplanation(TypedDict):
    """Everything behind one agent's weight."""

    agent: str
    strategy: str
    inputs: dict[str, Any]
    notes: list[str]
    gates: list[Gate]
    factors: list[Factor]
    override: OverrideRecord | None
    steps: Steps
    weight: float
    previous_weight: float | None
    summary: str


class Portfolio(TypedDict):
    """The portfolio's numbers: gross + cash = 1; the cash split by cause."""

    gross: float
    cash: float
    cash_from_risk: float
    cash_from_caps: float
    n_agents: int
    n_allocated: int
    n_gated: int
    binding_caps: list[str]
    gross_cap_binding: bool
    turnover: float | None
    reason: str
