"""Replay the broken-agent cut on top of equal weight, by threshold (docs/BACKTEST.md, issue #14).

Equal weight over the agents that pass the min_records gate (their own cadence), with agents
whose ``recent_loss_z`` reaches the threshold cut to cash; the same accounting as the backtest
(``agent_period_pnl``), without the rest of the cycle, so a threshold costs seconds to try::

    .venv/bin/python docs/broken_cut_replay.py real_prices_calendar 0 5 13 15 20
    .venv/bin/python docs/broken_cut_replay.py skill_blowups 0 1 10

The table in docs/BACKTEST.md was measured with the absolute cut (each agent's run against
its own scale only), as here by default; ``REGIME=1`` judges it in the fleet's volatility
regime (``broken_regime_relative``, the shipped default).
"""

import os
import sys

import numpy as np

from meta_supervisor.policy.model import Policy
from meta_supervisor.research.backtest import agent_period_pnl, decision_times
from meta_supervisor.research.metrics import max_drawdown, sharpe
from meta_supervisor.research.scenarios import build_scenario
from meta_supervisor.signals.cadence import CadenceIndex, min_records_needed

REGIME = os.environ.get("REGIME", "0") == "1"


def replay(fleet, settings):
    pol = Policy(**fleet.policy_overrides)
    times, end = decision_times(
        fleet.ledger,
        fleet.start,
        fleet.end,
        every_hours=fleet.every_hours,
        warmup_hours=168,
        horizon_hours=24,
        calendar=fleet.calendar,
    )
    agents = sorted(fleet.records["agent"].unique().to_list())
    pnl = agent_period_pnl(
        fleet.records,
        times,
        fleet.every_hours,
        24,
        agents,
        period_end=end if fleet.calendar else None,
    )
    every = (
        (end - times[0]).total_seconds() / 3600 / len(times)
        if fleet.calendar
        else fleet.every_hours
    )
    idx = CadenceIndex.from_records(fleet.records, 24)
    L = int(pol.lookback_hours * 3.6e9)
    ai = [idx.agents.index(a) for a in agents]
    _Z, E = np.zeros((len(times), len(agents))), np.zeros((len(times), len(agents)))
    N = np.zeros((len(times), len(agents)))
    for k, t in enumerate(times):
        now = int(t.timestamp() * 1e6)
        for j, a in enumerate(ai):
            tt = idx.times[idx.starts[a] : idx.starts[a + 1]]
            N[k, j] = np.searchsorted(tt, now, "right") - np.searchsorted(tt, now - L, "right")
        E[k] = idx.expected_records(agents, t, pol)
    out = {}
    for name, spec in settings.items():
        b, q = spec if isinstance(spec, tuple) else (spec, 1.0)
        w = np.zeros_like(N)
        for k, t in enumerate(times):
            knobs = {"broken_loss_scale": b} if b else {}
            # the table in docs/BACKTEST.md: the absolute cut (before the fleet's regime)
            p = Policy(**{**fleet.policy_overrides, **knobs, "broken_regime_relative": REGIME})
            ok = N[k] >= min_records_needed(E[k], p)
            if b:
                z = idx.recent_loss_z(agents, t, p)
                hit = z >= b
                known = ~np.isnan(z)
                if known.sum() and hit.sum() / known.sum() > q:
                    hit[:] = False
                ok_cut = ok & ~hit
            else:
                ok_cut = ok
            n = ok.sum()
            if n:
                w[k, ok_cut] = min(1 / n, 0.25)
        r = (w * pnl).sum(axis=1)
        out[name] = (sharpe(r, every), max_drawdown(r), w.sum(axis=1).mean())
    return out


name = sys.argv[1]
for seed in map(int, sys.argv[2:]):
    fleet = build_scenario(name, seed)
    res = replay(
        fleet, {"ew": None, "b2.5": 2.5, "b3": 3.0, "b4": 4.0, "b6": 6.0, "b2.5q.1": (2.5, 0.1)}
    )
    print(name, seed, {k: tuple(round(x, 3) for x in v) for k, v in res.items()}, flush=True)
