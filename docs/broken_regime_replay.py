"""Experiment: the broken cut judged in the fleet's current volatility regime.

loss_z_i / max(1, V), V = median over agents of (robust scale of the agent's last R+r-1
records) / (its robust scale before them). Select only + equal weight, per scenario/seed.
usage: MODE=regime|base python docs/broken_regime_replay.py OUT.json SCENARIO SEED...
"""
import json, os, sys, time
import numpy as np
from meta_supervisor.signals import cadence, broken
from meta_supervisor.signals.broken import MAD_TO_SIGMA, MIN_SCALE_RECORDS, loss_run_z
from meta_supervisor.research.scenarios import build_scenario
from meta_supervisor.research.backtest import run_fleet
from meta_supervisor.policy.model import Policy, Profile

MODE = os.environ.get("MODE", "base")

def vol_ratio(pnl, policy):
    memory, run = policy.broken_memory_records, policy.broken_consecutive
    cut = pnl.size - (memory + run - 1)
    if cut < MIN_SCALE_RECORDS:
        return np.nan
    past = pnl[:cut]
    scale = MAD_TO_SIGMA * float(np.median(np.abs(past - np.median(past))))
    if not scale > 0:
        return np.nan
    recent = pnl[cut:]
    return MAD_TO_SIGMA * float(np.median(np.abs(recent - np.median(past)))) / scale

orig = cadence.CadenceIndex.recent_loss_z
def patched(self, agents, as_of, policy):
    out = np.full(len(agents), np.nan)
    v = np.full(len(agents), np.nan)
    for k, start, _, lo, hi in self._windows(agents, as_of, policy):
        x = self.pnl[start + lo : start + hi]
        out[k] = loss_run_z(x, policy)
        v[k] = vol_ratio(x, policy)
    if np.isfinite(v).sum() >= 5:
        out = out / max(1.0, float(np.nanmedian(v)))
    return out
if MODE == "regime":
    cadence.CadenceIndex.recent_loss_z = patched

res = {}
scen = sys.argv[2]
for seed in map(int, sys.argv[3:]):
    t = time.time()
    fleet = build_scenario(scen, seed)
    r = run_fleet(fleet, policy=Policy(profile=Profile.SELECT), profiles=[Profile.SELECT],
                  baseline_names=["equal_weight"], progress=False)
    res[f"{scen}/{seed}"] = {m: {k: r.metrics[m][k] for k in ("sharpe", "max_drawdown_bps", "mean_gross", "derisk_hours")} for m in r.metrics}
    print(MODE, scen, seed, {m: round(v["sharpe"], 3) for m, v in res[f"{scen}/{seed}"].items()}, f"{time.time()-t:.0f}s", flush=True)
json.dump(res, open(sys.argv[1], "w"), indent=1, default=float)
