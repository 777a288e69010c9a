"""research: does it allocate well? Simulated and real-price fleets, the backtest (the live
cycle called at each rebalance), baselines, metrics and the HTML report. Only the CLI
imports this package; its modules are imported one by one (some need the ``research``
extra), so this file imports none of them.

============== ============================================================================
module         what it holds
============== ============================================================================
simulate       synthetic fleets with and without skill, blow-ups, regime shifts
realprice      a fleet of plain trading rules on real S&P 500 closes (``research`` extra)
calendar       an exchange calendar (NYSE rules, early closes) and the mixed-cadence fleet
scenarios      every named scenario in one register
sweep          grids of backtests (scenarios x seeds x knobs x folds) on Ray or serially
tables         the README's backtest table, targets and walk-forward from a sweep's table
backtest       run_backtest / run_fleet: profiles and baselines side by side
baselines      equal weight, inverse volatility, HRP, the seed exactly as written
metrics        Sharpe, drawdown, gross, turnover, time to de-risk
report         the self-contained HTML report
demo           the built-in example fleet of ``meta-supervisor demo``
============== ============================================================================
"""
