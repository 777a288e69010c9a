r"""Which allocation rule does this fleet reward? Learned out of sample, guarded by a paired t.

The *select* profile (:mod:`meta_supervisor.allocate.profiles.select`) follows one of a few
plain allocation rules, and stays at equal weight until the fleet's own past shows, out of
sample, that another rule earned more per unit of risk. Pure: records (or their per-day
cells) and ``as_of`` in, a :class:`RuleSelection` out; no file, no clock.

**Rules** (:func:`rule_weights`; raw weights over the agents that count, normalised to 1):

* ``equal_weight``: 1;
* ``inverse_vol``: :math:`1/s_i` (:math:`s_i` the sample std of the agent's PnL);
* ``evidence_tilt``: :math:`\mathrm{clip}(e^{k(t_i - \bar t)}, m_{lo}, m_{hi})`,
  :math:`t_i = \bar x_i\sqrt{n_i}/s_i`, at full strength (``evidence_k``,
  ``evidence_tilt_min``, ``evidence_tilt_max``);
* ``seed_selection``: :math:`\sqrt{\max(0, \Sigma x_i)}` (the seed's selection on positive
  trailing PnL, without its absolute-bps penalties).

**Out-of-sample record**, with :math:`H` = ``selection_step_hours``, :math:`J` =
``selection_lags``, :math:`L` = ``lookback_hours``, anchor :math:`A` = ``as_of`` rounded down
to a multiple of :math:`H` since the epoch (the record is the same for every cycle between
two anchors), and only records at the policy horizon matured by :math:`A`:

* for lag :math:`j = 1..J`, :math:`T_j = A - jH`; each rule's weights :math:`w^{r}_{ij}` come
  from the agents' records matured in :math:`(T_j - L, T_j]` (agents with
  :math:`n \ge \max(2, \text{min\_records})`, :math:`s > 0` and a record in the next period),
  and its **next-period return** is :math:`R^r_j = \sum_i w^r_{ij}\,y_{ij}`, :math:`y_{ij}` the
  agent's mean PnL over records matured in :math:`(T_j, T_j + H]` (after the weights were
  known: out of sample). A lag counts when at least ``evidence_min_agents`` agents count.
* over the :math:`m` lags that count, each rule's returns are scaled by their own sample std
  :math:`\sigma_r` (risk-adjusted), and the **paired difference** against equal weight is
  :math:`d^r_j = R^r_j/\sigma_r - R^{ew}_j/\sigma_{ew}`;
  :math:`t_r = \bar d^r\sqrt m / s(d^r)` (0 when :math:`s(d^r) = 0`).
* **guard**: the rule followed is the one with the largest :math:`t_r` if it exceeds
  ``selection_t0`` (and :math:`m \ge 10`), else ``equal_weight``: where no rule has beaten
  equal weight significantly, the book is equal weight.

**One computation.** Every window above is a union of whole buckets of width
:math:`\gcd(H, L)` (a day by default), so :math:`n`, :math:`\bar x`, :math:`s` and :math:`y`
are those of :func:`~meta_supervisor.signals.daysums.lag_windows` over the per-(agent, bucket)
cells (:class:`~meta_supervisor.signals.daysums.DaySums`; the spread combined by Chan et al.'s
update, each sum in bucket order), the same cells and combination as the evidence profile's
learned strength. :func:`rule_selection` builds the cells from records; a live cycle keeps
them between cycles (:mod:`meta_supervisor.cycle.learned`: one new day per day) and a backtest
advances them (:class:`~meta_supervisor.signals.persistence.LearnedStrengths`): the same bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from meta_supervisor.signals.daysums import DaySums, lag_windows, sums_range, window_cells
from meta_supervisor.typing import FloatArray

if TYPE_CHECKING:
    from meta_supervisor.policy.model import Policy

__all__ = [
    "MIN_LAGS",
    "RULES",
    "RuleSelection",
    "rule_selection",
    "rule_selection_from_sums",
    "rule_weights",
]

RULES = ("equal_weight", "inverse_vol", "evidence_tilt", "seed_selection")
#: Fewer lags that count than this: too short a record to leave equal weight.
MIN_LAGS = 10


@dataclass(frozen=True)
class RuleSelection:
    """The rule followed, and every rule's paired t against equal weight."""

    rule: str
    t: dict[str, float] = field(default_factory=dict)  # rule -> t_r (equal_weight: 0)
    n_lags: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"rule": self.rule, "t": dict(self.t), "n_lags": self.n_lags}

    @classmethod
    def from_dict(cls, blob: dict[str, Any]) -> RuleSelection:
        """The inverse of :meth:`to_dict`."""
        return cls(str(blob["rule"]), {k: float(v) for k, v in blob["t"].items()}, blob["n_lags"])

    def describe(self, policy: Policy) -> str:
        """One line: which rule and why."""
        best = max((r for r in self.t if r != "equal_weight"), key=self.t.__getitem__, default="")
        if self.n_lags < MIN_LAGS:
            return (
                f"equal weight: {self.n_lags} out-of-sample periods, fewer than {MIN_LAGS} "
                "to test another rule against it"
            )
        if self.rule == "equal_weight":
            detail = f"best {best} t {self.t.get(best, 0.0):+.2f}" if best else "no other rule"
            return (
                f"equal weight: no rule beat it out of sample at t > {policy.selection_t0:g} "
                f"over {self.n_lags} periods ({detail})"
            )
        return (
            f"{self.rule}: beat equal weight's risk-adjusted next-period PnL with paired t "
            f"{self.t[self.rule]:+.2f} > {policy.selection_t0:g} over {self.n_lags} "
            "out-of-sample periods"
        )


@np.errstate(all="ignore")
def rule_weights(
    rule: str,
    n: FloatArray,
    mean: FloatArray,
    sd: FloatArray,
    ok: np.ndarray,
    policy: Policy,
) -> FloatArray:
    """Raw (unnormalised) weights of ``rule`` over the agents ``ok`` (0 elsewhere).

    ``n``, ``mean``, ``sd``: record count, mean and sample std of each agent's PnL (bps); the
    formulas are in the module docstring. Agents ``ok`` must have ``n ≥ 2`` and ``sd > 0``.
    """
    out = np.zeros(n.shape)
    if not ok.any():
        return out
    if rule == "equal_weight":
        out[ok] = 1.0
    elif rule == "inverse_vol":
        out[ok] = 1.0 / sd[ok]
    elif rule == "evidence_tilt":
        t = mean[ok] * np.sqrt(n[ok]) / sd[ok]
        arg = np.clip(policy.evidence_k * (t - t.mean()), -700.0, 700.0)
        out[ok] = np.clip(np.exp(arg), policy.evidence_tilt_min, policy.evidence_tilt_max)
    elif rule == "seed_selection":
        out[ok] = np.sqrt(np.maximum(0.0, mean[ok] * n[ok]))
    else:
        raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")
    return out


def _lag_returns(sums: DaySums, as_of: datetime, policy: Policy) -> dict[str, list[float]]:
    """Every rule's next-period return ``R^r_j`` over the lags that count, from the cells."""
    out: dict[str, list[float]] = {r: [] for r in RULES}
    cells = window_cells(sums, as_of, policy)
    if cells.size == 0:
        return out
    need = max(2, policy.min_records)
    # agent codes in name order (the cells' sorted names): the rules' sums run in that order
    for window in lag_windows(cells, as_of, policy):
        n, mean, sd = window.n, window.mean, window.sd
        ok = (n >= need) & (sd > 0) & (window.n_next > 0)
        if np.count_nonzero(ok) < policy.evidence_min_agents:
            continue
        # the agents that count only: another's PnL may be NaN or ±inf (0 · inf is NaN)
        counted, y = np.flatnonzero(ok), window.next_mean[ok]
        for rule in RULES:
            w = rule_weights(rule, n, mean, sd, ok, policy)[counted]
            total = float(w.sum())
            out[rule].append(float(w @ y) / total if total > 0 else 0.0)
    return out


def rule_selection(
    records: pl.DataFrame | pl.LazyFrame, as_of: datetime, policy: Policy
) -> RuleSelection:
    """The rule the *select* profile follows at ``as_of`` (see the module docstring):
    :func:`rule_selection_from_sums` of the cells of the records in
    :func:`~meta_supervisor.signals.daysums.sums_range`."""
    low, high = sums_range(as_of, policy)
    return rule_selection_from_sums(DaySums.from_records(records, policy, low, high), as_of, policy)


def rule_selection_from_sums(sums: DaySums, as_of: datetime, policy: Policy) -> RuleSelection:
    """The rule the *select* profile follows at ``as_of``, from the per-(agent, bucket) cells
    (:class:`~meta_supervisor.signals.daysums.DaySums` of ``policy``'s horizon and bucket
    width): THE definition, whether the cells were built from records just now, kept between
    cycles or advanced by a backtest."""
    returns = _lag_returns(sums, as_of, policy)
    base = np.array(returns["equal_weight"])
    m = base.size
    t_by_rule = dict.fromkeys(RULES, 0.0)
    if m < MIN_LAGS:
        return RuleSelection("equal_weight", t_by_rule, m)
    base_sd = float(base.std(ddof=1))
    for rule in RULES[1:]:
        r = np.array(returns[rule])
        sd = float(r.std(ddof=1))
        if sd <= 0 or base_sd <= 0:
            continue
        d = r / sd - base / base_sd
        spread = float(d.std(ddof=1))
        if spread > 0 and math.isfinite(spread):
            t_by_rule[rule] = float(d.mean()) * math.sqrt(m) / spread
    best = max(RULES[1:], key=t_by_rule.__getitem__)
    chosen = best if t_by_rule[best] > policy.selection_t0 else "equal_weight"
    return RuleSelection(chosen, t_by_rule, m)
