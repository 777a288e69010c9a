"""cycle: the one place where the core meets files, the clock and the lock.

============== ============================================================================
module         what it holds
============== ============================================================================
run            decide (pure: ledger + as_of + policy + previous -> decision),
               run_cycle (load the ledger, decide, commit under the state lock, after
               checking what it builds on) and supersede_latest (a wrong decision, audited)
engine         the store's statistics kept between cycles (engine.state), rebuilt when lost
============== ============================================================================
"""

from meta_supervisor.cycle.run import (
    FutureAsOf,
    Ledger,
    NoInputs,
    NothingToSupersede,
    OutOfOrder,
    StateIOError,
    decide,
    load_ledger,
    run_cycle,
    supersede_latest,
)

__all__ = [
    "FutureAsOf",
    "Ledger",
    "NoInputs",
    "NothingToSupersede",
    "OutOfOrder",
    "StateIOError",
    "decide",
    "load_ledger",
    "run_cycle",
    "supersede_latest",
]
