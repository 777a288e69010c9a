"""views: decisions for people. Terminal tables, the LP memo, and the attribution numbers they
quote (what made a weight, the cash, a change between two decisions).

============== ============================================================================
module         what it holds
============== ============================================================================
terminal       rich tables and panels (allocation, explanation, history, diff, policy)
memo           the Markdown memo for LPs
attribution    cash breakdown, step notes, decision diffs, weight history
safe           the one escaping helper: names are data, never markup (terminal, Markdown)
============== ============================================================================
"""

from meta_supervisor.views.attribution import cash_breakdown, compare_decisions, weight_history
from meta_supervisor.views.memo import decision_memo
from meta_supervisor.views.safe import markup, md, term, visible

__all__ = [
    "cash_breakdown",
    "compare_decisions",
    "decision_memo",
    "markup",
    "md",
    "term",
    "visible",
    "weight_history",
]
