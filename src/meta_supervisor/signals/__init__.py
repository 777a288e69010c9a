"""signals: what the ledger says about each agent and strategy as of an instant. Pure.

============== ============================================================================
module         what it holds
============== ============================================================================
measures       risk measures on arrays: fractional-tail CVaR, max drawdown, decay weights
stats          per-agent statistics in the window (only records matured by ``as_of``)
confidence     per-agent confidence multiplier (time-decayed calibration evidence)
tails          per-strategy CVaR95 of the gap, raw and shrunk
persistence    the learned tilt strength: has past evidence predicted next-day PnL?
daysums        the per-(agent, day) PnL sums the learned rule and strength are computed from
selection      the select profile's learned rule: which allocation rule beat equal weight?
cadence        each agent's expected records in a window, from its own cadence
broken         consecutive losses beyond an agent's own robust scale
incremental    the same statistics kept as running sums between cycles
threads        the pool that runs independent parts of that array work on more cores
============== ============================================================================
"""

from meta_supervisor.signals.broken import loss_run_z
from meta_supervisor.signals.cadence import CadenceIndex, min_records_needed
from meta_supervisor.signals.confidence import confidence_multipliers
from meta_supervisor.signals.incremental import IncrementalStats, SortedLedger, StateMismatch
from meta_supervisor.signals.measures import cvar, decay_weights, max_drawdown
from meta_supervisor.signals.persistence import Persistence, persistence
from meta_supervisor.signals.selection import RuleSelection, rule_selection
from meta_supervisor.signals.stats import agent_stats
from meta_supervisor.signals.tails import strategy_tails

__all__ = [
    "CadenceIndex",
    "IncrementalStats",
    "Persistence",
    "RuleSelection",
    "SortedLedger",
    "StateMismatch",
    "agent_stats",
    "confidence_multipliers",
    "cvar",
    "decay_weights",
    "loss_run_z",
    "max_drawdown",
    "min_records_needed",
    "persistence",
    "rule_selection",
    "strategy_tails",
]
