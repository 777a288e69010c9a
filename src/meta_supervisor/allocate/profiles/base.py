"""What a profile is: a quality and risk factor for every agent, and their reasons.

The pipeline (:mod:`meta_supervisor.allocate.core`) owns everything else: the safety gates
(:mod:`~meta_supervisor.allocate.gates`), the cap, the pull-back to cash, the gross cap, the
stability step and the rounding. A profile only says how good each agent is (``quality``) and
how much of its share risk lets it keep (``risk`` in ``[0, 1]``), with the factors that made
both, and explains those factors in words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meta_supervisor.allocate.fleet import Fleet
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.allocate.schema import Factor
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals.persistence import Persistence
from meta_supervisor.typing import FloatArray

__all__ = ["FactorTable", "ProfileFactors", "ProfileMethod"]


@dataclass
class ProfileFactors:
    """A profile's numbers, one array per quantity (agents in name order).

    ``factors``: factor -> value, quality factors first, in the explanation's order;
    ``quality`` (before the gates zero it) and ``risk`` (``w = capped share × risk``);
    ``fleet``: the profile's fleet-level context its reasons quote (or ``None``);
    ``extra``: per-agent numbers its reasons quote.
    """

    factors: dict[str, FloatArray]
    quality: FloatArray
    risk: FloatArray
    fleet: Any
    extra: dict[str, FloatArray]


@dataclass(frozen=True)
class FactorTable:
    """The arrays an explanation reads, as lists (built once per decision, read per agent):
    factor values, the profile's extra numbers, range-checked and raw statistics."""

    factors: Mapping[str, list[float]]
    extra: Mapping[str, list[float]]
    checked: Mapping[str, list[float]]
    raw: Mapping[str, list[float]]
    tail_scale: FloatArray
    fleet: Any
    policy: Policy


#: ``compute(fleet, confidence, policy, persistence)``: ``confidence`` is each agent's
#: multiplier (the policy's prior where the agent has none).
Compute = Callable[[Fleet, FloatArray, Policy, Persistence | None], ProfileFactors]
#: ``explain(table, i, confidence, tail, strategy)``: agent ``i``'s factors as
#: ``{factor, value, reason}`` dicts, in the order of ``ProfileFactors.factors``.
Explain = Callable[[FactorTable, int, Confidence | None, Tail | None, str], list[Factor]]


@dataclass(frozen=True)
class ProfileMethod:
    """One allocation profile, as the registry (:data:`meta_supervisor.allocate.profiles.
    PROFILES`) holds it.

    ``keys``: statistics it reads beyond the seed's (added to the explanation's inputs);
    ``gates``: profile gates it adds after the safety gates (names in
    :data:`meta_supervisor.allocate.gates.PROFILE_GATES`); ``uses_persistence``: whether it
    reads the learned tilt strength (hashed into the inputs fingerprint only then);
    ``method``: one paragraph on how it sizes agents, for the memo.
    """

    profile: Profile
    compute: Compute
    explain: Explain
    method: str
    keys: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()
    uses_persistence: bool = False
