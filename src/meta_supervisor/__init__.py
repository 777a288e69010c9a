"""meta-supervisor: capital allocation for fleets of trading agents, with reasons.

The data flow, package by package (each package's ``__init__`` is its table of contents)::

    ingest (read, validate, quarantine) -> ledger (the store)
    -> signals (per-agent stats, confidence, strategy tails, learned strength: pure)
    -> allocate (gates, profile factors, cap, pull-back, stability: pure) -> decision
    -> cycle (the one place core meets files, clock, lock) -> state (atomic files, history)
    -> views (tables, memo, attribution) -> cli; research (scenarios, backtest) beside it

``policy`` holds every tunable; ``errors`` every deliberate error with its exit code;
``units`` the units and tolerances; ``typing`` the array aliases.

The seed's modules keep their functions: :mod:`meta_supervisor.allocation`
(``compute_weights``, ``save_weights``, ``main``), :mod:`meta_supervisor.confidence_decay`
(``get_confidence_multiplier``) and :mod:`meta_supervisor.strategy_cvar` (``run``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.decision import Decision
from meta_supervisor.allocate.inputs import Confidence, Override, Tail
from meta_supervisor.policy.model import Policy, PolicyError, Profile, load_policy
from meta_supervisor.signals.measures import cvar, decay_weights, max_drawdown

__all__ = [
    "Confidence",
    "Decision",
    "Override",
    "Policy",
    "PolicyError",
    "Profile",
    "Tail",
    "__version__",
    "allocate",
    "cvar",
    "decay_weights",
    "load_policy",
    "max_drawdown",
]
