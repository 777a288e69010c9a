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

**Judged in the fleet's volatility regime** (``broken_regime_relative``, on by default). When
the whole market's volatility doubles (late 2008 on real prices) two consecutive losses
beyond 2.5 of the calm weeks' scale are routine for every agent at once, and an absolute cut
takes the whole fleet's capital out at the lows. So the run is read against the fleet's
current regime:

* each agent's **volatility ratio** :math:`v_i = 1.4826\cdot\mathrm{median}|y -
  \mathrm{median}(x)| / \sigma_i`, :math:`y` its last :math:`R + r - 1` records (those being
  judged), :math:`x` the earlier records :math:`\sigma_i` is computed from (NaN where
  :math:`\sigma_i` is unknown);
* the fleet's :math:`V = \mathrm{median}_i\, v_i` over the agents with a finite ratio, when at
  least :data:`MIN_REGIME_AGENTS` (5) have one (else unknown);
* the agent's ``recent_loss_z`` is :math:`z_i / V` when :math:`V \ge` :data:`REGIME_MIN_RATIO`
  (1.5), else :math:`z_i`, compared with ``broken_loss_scale`` as before. The divisor only
  ever raises the bar.

Why the floor 1.5: :math:`v_i` over 6 records is a noisy, upward-biased estimate even in a
calm fleet. Under the null (i.i.d. Student-t(4) records, 20,000 fleets each, by simulation)
the median :math:`V` is 1.16 with 14 earlier records (a daily agent's 4-week history) and 1.04
with 100; its 99th percentile is 1.39 for 80 daily agents, 1.52 for 10 agents with 100 earlier
records, 1.88 for 10 daily agents and 2.31 for 5. Divided by that noise the cut loosened in
calm fleets (a synthetic blow-up's second record at 2.7 scales with :math:`V` = 1.21 over 10
agents was no longer cut, ``tests/allocate/test_select.py``). Share of checks with
:math:`V \ge 1.5`, calm (null) against every agent's recent volatility doubled: 80 daily
agents 0.06% / 100%, 20 daily agents 4.3% / 99.4%, 10 daily agents 10.6% / 96.8%, 5 daily
agents 19% / 90%; 10 agents with 100 earlier records 1.3% / 96.1% (the doubled fleet's median
:math:`V` is 2.07-2.23). Small daily fleets still read some calm noise as a regime.

A median is unmoved while fewer than half the agents' volatility rises (a synthetic blow-up
hits one strategy, a fifth of the fleet), and an agent's own :math:`v_i` barely moves in the
first two records of its blow-up (a median over 6 records), so a blow-up is still cut at its
second record; :math:`V` rises when the whole market's volatility does. Measured
(docs/BACKTEST.md, "The broken cut on real prices").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from meta_supervisor.signals import threads
from meta_supervisor.signals.sortedrows import search_rows
from meta_supervisor.typing import BoolArray, FloatArray, IntArray

if TYPE_CHECKING:
    from meta_supervisor.policy.model import Policy

__all__ = [
    "MAD_TO_SIGMA",
    "MAX_SCALE_RECORDS",
    "MIN_REGIME_AGENTS",
    "MIN_SCALE_RECORDS",
    "REGIME_MIN_RATIO",
    "fleet_loss_runs",
    "fleet_vol_ratio",
    "judged_records",
    "loss_regime",
    "loss_run",
    "loss_run_z",
    "loss_runs",
    "loss_runs_sorted",
    "records_read",
    "regime_divisor",
    "regime_relative",
]

MAD_TO_SIGMA = 1.4826
MIN_SCALE_RECORDS = 10
MAX_SCALE_RECORDS = 1024
#: Fewer agents with a known volatility ratio than this: ``V = 1`` (too few to read a regime).
MIN_REGIME_AGENTS = 5
#: ``V`` below this is calm noise (module docstring: the null's 99th percentile is 1.39 for
#: 80 daily agents), and the cut stays absolute.
REGIME_MIN_RATIO = 1.5


def judged_records(policy: Policy) -> int:
    """:math:`R + r - 1`: the records a run is judged over (0 when the cut is off)."""
    memory, run = policy.broken_memory_records, policy.broken_consecutive
    return 0 if run <= 0 or memory <= 0 else memory + run - 1


def records_read(policy: Policy) -> int:
    """How many of an agent's latest records :func:`loss_run` reads at most:
    :data:`MAX_SCALE_RECORDS` for the scale and :math:`R + r - 1` judged (0: the cut is off).
    An agent's earlier records never change its ``(z_i, v_i)``."""
    judged = judged_records(policy)
    return MAX_SCALE_RECORDS + judged if judged else 0


def loss_run(pnl: FloatArray, policy: Policy) -> tuple[float, float]:
    """``(z_i, v_i)`` of one agent's PnL series (in order; NaN: unknown): the worst run's loss
    in units of its own earlier robust scale, and its volatility ratio (the robust scale of the
    judged records around the earlier median over that scale); see the module docstring.
    :func:`loss_runs` on one row."""
    z, ratio = loss_runs(np.asarray(pnl, dtype=np.float64)[None, :], policy)
    return float(z[0]), float(ratio[0])


def loss_runs(rows: FloatArray, policy: Policy) -> tuple[FloatArray, FloatArray]:
    r""":func:`loss_run` of every row of ``rows`` (agents × records, each row one agent's series
    in order, all of one length), vectorised: ``(z, v)`` per row, NaN where unknown.

    Per row :math:`x`, with ``cut`` :math:`= n - (R + r - 1)` and ``past`` the last
    :data:`MAX_SCALE_RECORDS` records before it: centre :math:`m` = median(past), scale
    :math:`\sigma = 1.4826\cdot\mathrm{median}|past - m|`; ``z`` = max over the windows of
    :math:`r` consecutive judged records of the smallest :math:`-x/\sigma`; ``v`` =
    :math:`1.4826\cdot\mathrm{median}|x_{cut:} - m| / \sigma`. NaN with fewer than
    :data:`MIN_SCALE_RECORDS` earlier records or :math:`\sigma \le 0`. A median along an axis
    is the same partition and mean as a median of one row, so each row's numbers are those of
    the row alone, bit for bit."""
    count, length = rows.shape
    z = np.full(count, np.nan)
    ratio = np.full(count, np.nan)
    judged = judged_records(policy)
    cut = length - judged
    if not judged or cut < MIN_SCALE_RECORDS or not count:
        return z, ratio
    past = rows[:, max(cut - MAX_SCALE_RECORDS, 0) : cut]
    if not np.isfinite(past).all():  # np.median's rules: NaN, and inf − inf in the spread
        with np.errstate(invalid="ignore", over="ignore"):
            centre = np.median(past, axis=1)
            scale = MAD_TO_SIGMA * np.median(np.abs(past - centre[:, None]), axis=1)
    else:  # the same order statistics and mean, by one partition each (split over the cores)
        size = past.shape[1]
        centre = _middle(past.copy(), size)
        with np.errstate(over="ignore"):  # −1e308 − 1e308: inf, quietly
            spread = np.abs(past - centre[:, None])
        scale = _sigma(_middle(spread, size))
    return _judged(rows[:, cut:], centre, scale, policy)


def _judged(
    recent: FloatArray, centre: FloatArray, scale: FloatArray, policy: Policy
) -> tuple[FloatArray, FloatArray]:
    """``(z, v)`` per row from its judged records ``recent`` (in order) and the centre and
    scale of its earlier ones (NaN where the scale is not positive)."""
    z = np.full(recent.shape[0], np.nan)
    ratio = np.full(recent.shape[0], np.nan)
    ok = scale > 0
    if not ok.any():
        return z, ratio
    recent, centre, scale = recent[ok], centre[ok], scale[ok]
    # hostile values give inf and NaN as IEEE says, quietly (an inf scale, a subnormal one)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        losses = -recent / scale[:, None]  # the judged records, losses positive
        windows = np.lib.stride_tricks.sliding_window_view(
            losses, policy.broken_consecutive, axis=1
        )
        z[ok] = windows.min(axis=2).max(axis=1)
        spread = np.median(np.abs(recent - centre[:, None]), axis=1)
        ratio[ok] = MAD_TO_SIGMA * spread / scale
    return z, ratio


def loss_runs_sorted(
    past: FloatArray, recent: FloatArray, policy: Policy
) -> tuple[FloatArray, FloatArray]:
    r""":func:`loss_runs` of rows whose earlier records are given sorted: row ``i`` of
    ``past`` holds its earlier records (those of its scale, every row the same count
    :math:`P`, at most :data:`MAX_SCALE_RECORDS`) ascending, every value finite;
    ``recent[i]`` its judged records, in order.

    The same bits as :func:`loss_runs` on the ordered rows: a median is the order statistic
    :math:`k = \lfloor(P-1)/2\rfloor` (and :math:`k + 1`, averaged by the same ``np.mean``
    for an even :math:`P`) of a multiset, whatever its order. The centre :math:`m` is read
    from the sorted row; the distances :math:`|x - m|` are two ascending runs either side of
    :math:`m` (``fl(x − m)`` is monotone in :math:`x`), whose order statistics one binary
    search finds (:func:`_distance_order`): no partition, :math:`O(\log P)` per row."""
    count, size = past.shape
    if not judged_records(policy) or size < MIN_SCALE_RECORDS or not count:
        return np.full(count, np.nan), np.full(count, np.nan)
    k = (size - 1) // 2
    even = size % 2 == 0
    centre = _pair_mean(past[:, k], past[:, k + 1]) if even else past[:, k].copy()
    low, high = _distance_order(past, centre, k)
    scale = _sigma(_pair_mean(low, high) if even else low)
    return _judged(recent, centre, scale, policy)


def _distance_order(past: FloatArray, centre: FloatArray, k: int) -> tuple[FloatArray, FloatArray]:
    r"""Per ascending row :math:`x` of ``past`` and its ``centre`` :math:`m`: the order
    statistics :math:`k` and :math:`k + 1` of :math:`|x - m|`, as ``np.abs(x - m)`` computes
    each (:math:`k + 1` the row's width: ``+inf``).

    With :math:`p` the values below :math:`m`, :math:`a_i = |x_{p-1-i} - m|` and
    :math:`b_j = |x_{p+j} - m|` are both ascending; the :math:`t = k + 1` smallest distances
    are :math:`a_{<i}` and :math:`b_{<t-i}` for the least :math:`i` with
    :math:`b_{t-1-i} \le a_i`, found by bisection on :math:`i` (every row at once). Then
    statistic :math:`k` is :math:`\max(a_{i-1}, b_{t-i-1})` and :math:`k + 1` is
    :math:`\min(a_i, b_{t-i})`."""
    rows, size = past.shape
    every = np.arange(rows)
    below = search_rows(past, every, centre)  # p: the values below m
    above = size - below
    take = k + 1

    def dist(column: IntArray) -> FloatArray:
        with np.errstate(over="ignore"):  # −1e308 − 1e308: inf, quietly (as loss_runs)
            return np.abs(past[every, np.clip(column, 0, size - 1)] - centre)

    low = np.maximum(0, take - above)
    high = np.minimum(below, take)
    while True:
        open_ = low < high
        if not open_.any():
            break
        i = (low + high) // 2
        enough = dist(below + take - 1 - i) <= dist(below - 1 - i)  # b_{t-1-i} <= a_i
        low = np.where(open_ & ~enough, i + 1, low)
        high = np.where(open_ & enough, i, high)
    i, j = low, take - low
    inf = np.full(rows, np.inf)
    kth = np.maximum(
        np.where(i > 0, dist(below - i), -inf), np.where(j > 0, dist(below + j - 1), -inf)
    )
    after = np.minimum(
        np.where(i < below, dist(below - 1 - i), inf), np.where(j < above, dist(below + j), inf)
    )
    return kth, after


def _sigma(mad: FloatArray) -> FloatArray:
    """The robust scale ``1.4826 · MAD`` (a MAD above ~1.2e308: inf, quietly)."""
    with np.errstate(over="ignore"):
        return MAD_TO_SIGMA * mad


def _pair_mean(low: FloatArray, high: FloatArray) -> FloatArray:
    """``np.mean`` of each pair ``(low, high)``: how ``np.median`` averages an even count's
    two middle values (two values near the float limit: inf, quietly)."""
    with np.errstate(over="ignore"):
        return np.mean(np.stack([low, high], axis=1), axis=1)


def _middle(block: FloatArray, past: int | IntArray) -> FloatArray:
    r"""Each row's median of its ``past`` values (one count for every row, or one per row), as
    ``np.median`` of them alone computes it, the block partitioned in place: the order
    statistic :math:`k_1 = \lfloor(n-1)/2\rfloor`, or for an even count the ``np.mean`` of it
    and the next. Every row's other slots must hold values that put its :math:`k_1` at the
    block's :math:`K` (the largest :math:`k_1`): ``+inf`` after a uniform count, and
    :math:`K - k_1` copies of ``-inf`` besides for rows of different counts
    (:func:`_padded_runs`). One partition at :math:`K + 1`; :math:`K` is then the largest
    value left of it (a second ``kth`` would partition again: ~30% more at 1,000 × 1,030)."""
    count = np.broadcast_to(np.asarray(past), block.shape[:1])
    top = int(((count - 1) // 2).max())
    _partition_rows(block, top + 1)
    low, high = block[:, : top + 1].max(axis=1), block[:, top + 1]
    return np.where(count % 2 == 1, low, _pair_mean(low, high))


def _partition_rows(block: FloatArray, kth: int) -> None:
    """``block.partition(kth, axis=1)``, in place, its rows split across the cores
    (:func:`~meta_supervisor.signals.threads.over_rows`; the rows are independent, so the
    bits are the same): 1,000 agents × 1,030 records, 9.1 -> 5.3 ms on 2 cores."""

    def part(a: int, b: int) -> None:
        block[a:b].partition(kth, axis=1)

    threads.over_rows(block.shape[0], block.size, part)


def fleet_loss_runs(
    lengths: IntArray,
    rows_of: Callable[[IntArray, int], FloatArray],
    policy: Policy,
    sorted_of: Callable[[IntArray], tuple[FloatArray, FloatArray, BoolArray]] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """:func:`loss_run` of each agent ``k``'s series of ``lengths[k]`` records: ``(z, v)`` per
    agent. ``rows_of(agents, n)`` gives the ``(len(agents), n)`` matrix of those agents' last
    ``n`` records, oldest first (a row's columns before its agent's first record may hold
    anything: they are not read). Only the last :func:`records_read` records of a series are
    read; the fleet's series of every length are computed together (:func:`_padded_runs`), so
    a fleet costs a few array passes, not one call per agent or per length.

    ``sorted_of(agents)``, for agents whose series is :func:`records_read` long, gives their
    earlier records sorted (the engine keeps them so, :mod:`.sortedrows`): a
    ``(len(agents), MAX_SCALE_RECORDS)`` block of them ascending, the ``(len(agents), R + r −
    1)`` judged records in order, and per agent whether all its records are finite; those
    rows go through :func:`loss_runs_sorted` (the others as any series)."""
    z = np.full(lengths.size, np.nan)
    ratio = np.full(lengths.size, np.nan)
    keep = records_read(policy)
    if not keep or not lengths.size:
        return z, ratio
    lengths = np.minimum(lengths, keep)
    judged = judged_records(policy)
    agents = np.flatnonzero(lengths >= judged + MIN_SCALE_RECORDS)
    if sorted_of is not None:
        full = agents[lengths[agents] == keep]
        agents = agents[lengths[agents] < keep]
        if full.size:
            earlier, recent, clean = sorted_of(full)
            if not clean.all():
                earlier, recent = earlier[clean], recent[clean]
            z[full[clean]], ratio[full[clean]] = loss_runs_sorted(earlier, recent, policy)
            agents = np.sort(np.concatenate([agents, full[~clean]]))
    # series in bands of lengths within a factor of two: a band is laid out at its longest
    # series, so it holds at most twice its records (one block for the whole fleet held a
    # daily fleet's rows at an hourly agent's length)
    band = np.floor(np.log2(lengths[agents])).astype(np.int64) if agents.size else agents
    for b in np.unique(band):
        some = agents[band == b]
        rows = rows_of(some, int(lengths[some].max()))
        past = np.minimum(lengths[some] - judged, MAX_SCALE_RECORDS)
        width = rows.shape[1] - judged
        valid = np.arange(width) >= (width - past)[:, None]
        finite = np.where(valid, np.isfinite(rows[:, :width]), True).all(axis=1)
        if finite.all():
            z[some], ratio[some] = _padded_runs(rows, past, policy)
            continue
        if finite.any():
            z[some[finite]], ratio[some[finite]] = _padded_runs(rows[finite], past[finite], policy)
        for length in np.unique(lengths[some[~finite]]):  # np.median's rules for NaN and inf
            odd = some[~finite][lengths[some[~finite]] == length]
            z[odd], ratio[odd] = loss_runs(rows_of(odd, int(length)), policy)
    return z, ratio


def _padded_runs(rows: FloatArray, past: IntArray, policy: Policy) -> tuple[FloatArray, FloatArray]:
    r""":func:`loss_runs` of rows whose series have different lengths, at once: row ``i``'s
    last ``judged`` columns are its judged records and the ``past[i]`` columns before them its
    earlier ones (every value finite; the columns before those are not read).

    A median is the order statistic :math:`k_1 = \lfloor(n-1)/2\rfloor` (and, for an even
    count, :math:`k_1 + 1`, averaged by ``np.mean``). Each row's unread columns are filled
    with :math:`K - k_1` copies of :math:`-\infty` (:math:`K` the largest :math:`k_1`) and
    :math:`+\infty` for the rest: its order statistics :math:`k_1, k_1 + 1` are then every
    row's :math:`K, K + 1`, found by one partition of the whole block (:func:`_middle`;
    there is room: a row :math:`d` records shorter than the longest has :math:`d` free columns
    and needs at most :math:`\lceil d/2 \rceil` of them). The same
    values and the same mean as ``np.median`` of each row alone, so the same bits; the scale
    is found the same way on :math:`|x - m|`."""
    judged = judged_records(policy)
    width = rows.shape[1] - judged
    first = (past - 1) // 2
    top = int(first.max())
    columns = np.arange(width)
    free = columns < (width - past)[:, None]  # the columns before each row's earlier records
    low_fill = columns < (top - first)[:, None]

    def laid(values: FloatArray) -> FloatArray:
        block = np.where(free, np.inf, values)
        block[low_fill] = -np.inf  # within the free columns (see above)
        return block

    earlier = rows[:, :width]
    centre = _middle(laid(earlier), past)
    with np.errstate(invalid="ignore", over="ignore"):  # the unread columns may hold anything
        spread = np.abs(earlier - centre[:, None])
    scale = _sigma(_middle(laid(spread), past))
    return _judged(rows[:, width:], centre, scale, policy)


def loss_run_z(pnl: FloatArray, policy: Policy) -> float:
    """``z_i`` of one agent's PnL series (in order; NaN: unknown): the absolute run, before
    the fleet's regime (:func:`loss_run`)."""
    return loss_run(pnl, policy)[0]


def fleet_vol_ratio(ratios: FloatArray) -> float:
    """``V``: the median of the finite ``v_i``, or NaN when fewer than
    :data:`MIN_REGIME_AGENTS` agents have one (then the cut divides by 1)."""
    finite = ratios[np.isfinite(ratios)]
    if finite.size < MIN_REGIME_AGENTS:
        return math.nan
    return float(np.median(finite))


def regime_divisor(fleet_v: float) -> float:
    """What ``z_i`` is divided by: ``V`` when ``V ≥`` :data:`REGIME_MIN_RATIO`, else 1 (and
    when ``V`` is unknown)."""
    return fleet_v if fleet_v >= REGIME_MIN_RATIO else 1.0


def loss_regime(loss_z: FloatArray, ratios: FloatArray, policy: Policy) -> tuple[FloatArray, float]:
    """``(recent_loss_z, V)`` from every agent's ``(z_i, v_i)``: ``z_i`` judged in the
    fleet's regime (:func:`regime_relative`) and ``V`` when ``broken_regime_relative``; else
    ``z_i`` as it is and ``V`` NaN (the cut is absolute)."""
    if not policy.broken_regime_relative:
        return loss_z, math.nan
    fleet_v = fleet_vol_ratio(ratios)
    return regime_relative(loss_z, fleet_v), fleet_v


def regime_relative(loss_z: FloatArray, fleet_v: float) -> FloatArray:
    """``z_i / regime_divisor(V)``; NaN ``z_i`` stays NaN."""
    return loss_z / regime_divisor(fleet_v)
