"""cycle: the one place where the core meets files, the clock and the lock.

============== ============================================================================
module         what it holds
============== ============================================================================
run            decide (pure: ledger + as_of + policy + previous -> decision) and
               run_cycle (load the ledger, decide, commit under the state lock)
engine         the store's statistics kept between cycles (engine.state), rebuilt when lost
============== ============================================================================
"""

from meta_supervisor.cycle.run import Ledger, OutOfOrder, decide, load_ledger, run_cycle

__all__ = ["Ledger", "OutOfOrder", "decide", "load_ledger", "run_cycle"]
