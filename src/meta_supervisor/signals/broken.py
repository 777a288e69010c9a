r"""Is an agent broken? Losses far beyond its own noise, one after another.

DESIGN.md and issue #14 ("cut what is broken"): an agent whose losses are far beyond its own
noise and persist is cut to zero, fast, and comes back only on evidence. Pure: an agent's
PnL series in, a number out.

Definitions, over an agent's records in the cadence history (``(as_of − C, as_of]``, see
:mod:`meta_supervisor.signals.cadence`), in order, with :math:`R` =
``broken_memory_records`` and :math:`r` = ``broken_consecutive``:

* its **robust scale** :math:`\sigma_i = 1.4826\cdot\mathrm{median}|x - \mathrm{median}(x)|`
  over the records *before* its last :math:`R + r - 1` (so the losses being judged do not
  inflate the scale they are judged by), the latest :data:`MAX_SCALE_RECORDS` of them (an
  hourly agent's 28-day history fits; a faster one's scale is its recent one, and the cost
  per cycle stays bounded); unknown with fewer than :data:`MIN_SCALE_RECORDS` of them or a
  zero scale;
* ``recent_loss_z`` :math:`= \max_k \min_{0 \le q < r} (-x_{k-q}) / \sigma_i` over the runs of
  :math:`r` consecutive records ending at one of the last :math:`R` records: the size of the
  smallest loss in the worst run, in units of the agent's own scale;
* the agent is **broken** when ``recent_loss_z ≥ broken_loss_scale``. It stays cut while such
  a run is among its last :math:`R` records: it comes back after :math:`R` records without a
  new run of losses beyond its noise, the evidence that it works again.

Under the null (Student-t(4) PnL, the synthetic fleets' noise) two consecutive losses beyond
2.5 robust scales occur about once in 1,400 record pairs (measured by simulation, 200,000
draws); a blow-up of the synthetic fleets (each record ``−2.5σ·(1 + |t|)``, at least
3.5 robust scales) is cut at its second visible record.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from meta_supervisor.typing import FloatArray

if TYPE_CHECKING:
    from meta_supervisor.policy.model import Policy

__all__ = ["MAD_TO_SIGMA", "MAX_SCALE_RECORDS", "MIN_SCALE_RECORDS", "loss_run_z"]

MAD_TO_SIGMA = 1.4826
MIN_SCALE_RECORDS = 10
MAX_SCALE_RECORDS = 1024


def loss_run_z(pnl: FloatArray, policy: Policy) -> float:
    """``recent_loss_z`` of one agent's PnL series (in order; NaN: unknown), see the module
    docstring."""
    memory, run = policy.broken_memory_records, policy.broken_consecutive
    if run <= 0 or memory <= 0:
        return math.nan
    cut = pnl.size - (memory + run - 1)
    if cut < MIN_SCALE_RECORDS:
        return math.nan
    past = pnl[max(cut - MAX_SCALE_RECORDS, 0) : cut]
    scale = MAD_TO_SIGMA * float(np.median(np.abs(past - np.median(past))))
    if not scale > 0:
        return math.nan
    recent = -pnl[cut:] / scale  # the last memory + run − 1 records, losses positive
    windows = np.lib.stride_tricks.sliding_window_view(recent, run)
    return float(windows.min(axis=1).max())
