r"""Exact running sums of float64 values: the same bits whatever the order of the additions,
and a removal takes back exactly what the addition put in.

Why: a running sum kept across cycles (add what entered a window, subtract what left it)
depends in its last bits on the order of those operations, so a state rebuilt from the ledger
would decide a later cycle a few ulps differently from the state advanced cycle by cycle
(issue #13: "a rebuild must give the same bytes as the incremental path"). Sums kept here are
a function of the multiset of values they hold, so both paths agree to the bit.

How: every finite ``x`` is split at the fixed binary grids :math:`2^{24k}` (``k`` an integer
*level*), from the top level down, into *digits*

.. math:: x = \sum_k u_k(x)\,2^{24k}, \qquad u_k = \operatorname{trunc}(r_k / 2^{24k}),
   \quad r_{k-1} = r_k - u_k 2^{24k},

each :math:`u_k` an integer with :math:`|u_k| < 2^{24}` and the sign of ``x`` (the remainder
after truncating to a multiple of :math:`2^{24k}` is below it, and the top level is chosen
above the value; levels above a value's own give it zero digits). Every step is exact in
float64 (scaling by a power of two, truncation to an integer, and subtracting a value that
shares the remainder's leading bits), and the digits depend on ``x`` alone, not on the other
values or on the batch. Per group and level the digits are summed in float64: integers below
:math:`2^{53}`, exact in any order for up to :math:`2^{29}` values. :meth:`ExactSums.value`
folds the levels into one float in a fixed order, from the digits' canonical form: a
function of the exact sum alone (within a few ulps of it; not correctly rounded).

Values below :math:`2^{-900}` keep their bits down to the lowest level :math:`2^{-960}`
(the rest is dropped, again as a function of the value alone). Non-finite values are counted
per group (``+inf``, ``-inf``, ``nan``) and make the sum non-finite as IEEE addition would.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ExactSums", "digits"]

_WIDTH = 24  # bits per level
# 2^(24·-40) = 2^-960, the finest grid used: a value with a digit there is a normal float, so
# scaling it by a power of two (ExactSums.shift, the confidence anchor) is exact
_LOWEST = -40
_HIGHEST = 42  # 2^(24·42) = 2^1008: the top level of the largest float64
_BLOCK = 1 << 18  # values per block in ExactSums.add


def _scale(values: np.ndarray, power: int, out: np.ndarray) -> np.ndarray:
    """``values · 2^power`` into ``out`` (exact: a power of two; a multiplication when the
    factor is a normal float, else ``ldexp``)."""
    if -1000 < power < 1000:
        return np.multiply(values, 2.0**power, out=out)
    return np.ldexp(values, power, out=out)


def _levels(values: np.ndarray) -> tuple[int, int] | None:
    """``(top, bottom)`` levels that hold every finite nonzero value of ``values`` exactly
    (``None`` when there is none)."""
    magnitudes = np.abs(values)
    nonzero = magnitudes[magnitudes > 0]
    if not nonzero.size:
        return None
    _, e_max = np.frexp(nonzero.max())  # |x| < 2^e_max
    _, e_min = np.frexp(nonzero.min())
    # top: |x| < 2^(24·(top + 1)); bottom: the grid at or below the smallest value's ulp
    top = max(-(-int(e_max) // _WIDTH) - 1, _LOWEST)
    bottom = max((int(e_min) - 53) // _WIDTH, _LOWEST)
    return top, min(bottom, top)


def digits(values: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``[(level k, digits u_k)]`` of finite ``values`` (see the module docstring): integers
    as float64 (``|u_k| < 2^24``) with ``values == Σ_k u_k·2^(24k)`` (exactly, for values
    above 2^-900)."""
    values = np.asarray(values, dtype=np.float64)
    span = _levels(values)
    if span is None:
        return []
    top, bottom = span
    rest = values.copy()
    scaled = np.empty_like(rest)
    out = []
    for level in range(top, bottom - 1, -1):
        _scale(rest, -_WIDTH * level, out=scaled)
        digit = np.trunc(scaled, out=np.empty_like(scaled))
        rest -= _scale(digit, _WIDTH * level, out=scaled)
        out.append((level, digit))
    return out


class ExactSums:
    """Per-group exact sums (groups numbered ``0..size-1``): :meth:`add` with ``sign`` ±1,
    :meth:`value` as float64. The state is the digit sums per level and the non-finite counts.
    """

    def __init__(self, size: int = 0) -> None:
        self.size = size
        self.levels: dict[int, np.ndarray] = {}
        self.special = np.zeros((size, 3), dtype=np.int64)

    def resize(self, size: int) -> None:
        """Make room for ``size`` groups (new groups hold an empty sum)."""
        if size <= self.size:
            return
        grow = size - self.size
        self.levels = {k: np.concatenate([v, np.zeros(grow)]) for k, v in self.levels.items()}
        self.special = np.concatenate([self.special, np.zeros((grow, 3), dtype=np.int64)])
        self.size = size

    def add(self, codes: np.ndarray, values: np.ndarray, sign: int = 1) -> None:
        """Add (``sign`` = 1) or remove (-1) ``values[i]`` to/from group ``codes[i]``."""
        codes = np.asarray(codes, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if not codes.size:
            return
        finite = np.isfinite(values)
        if not finite.all():
            bad = ~finite
            kinds = (values[bad] == np.inf, values[bad] == -np.inf, np.isnan(values[bad]))
            for column, kind in enumerate(kinds):
                np.add.at(self.special[:, column], codes[bad][kind], sign)
            codes, values = codes[finite], values[finite]
        # in blocks that stay in cache (digits are a function of each value alone, so the
        # blocks change no bit): about 3x faster than whole arrays at 10M values
        for at in range(0, values.size, _BLOCK):
            block = codes[at : at + _BLOCK]
            for level, digit in digits(values[at : at + _BLOCK]):
                sums = np.bincount(block, weights=digit, minlength=self.size)
                if sign < 0:
                    sums = -sums
                if level in self.levels:
                    self.levels[level] += sums
                else:
                    self.levels[level] = sums

    def clear(self, groups: np.ndarray) -> None:
        """Empty the sums of ``groups``."""
        for sums in self.levels.values():
            sums[groups] = 0.0
        self.special[groups] = 0

    def value(self) -> np.ndarray:
        """Each group's sum as float64 (``0.0`` for an empty group): a function of the exact
        sum alone.

        The digit sums are first put in the one canonical form of the exact sum: base
        :math:`2^{24}` digits all of the total's sign (floor carries from the lowest level up
        give digits in ``[0, 2^24)`` under a signed top one, whose sign is the total's; a
        negative total then borrows its way to digits in ``(-2^24, 0]``). Folding same-sign
        digits from the lowest level never overshoots the total (no spurious overflow)."""
        out = np.zeros(self.size)
        if self.levels:
            low, high = min(self.levels), max(self.levels)
            rows = high - low + 4  # room for the carries of sums below 2^53
            d = np.zeros((rows, self.size))
            for level, sums in self.levels.items():
                d[level - low] = sums
            base = 2.0**_WIDTH
            for i in range(rows - 1):
                carry = np.floor(d[i] / base)
                d[i] -= carry * base
                d[i + 1] += carry
            negative = d[rows - 1] < 0
            if negative.any():
                borrow = np.zeros(self.size)
                for i in range(rows - 1):
                    digit = d[i] + borrow
                    lend = negative & (digit > 0)
                    d[i] = np.where(lend, digit - base, np.where(negative, digit, d[i]))
                    borrow = lend.astype(np.float64)
                d[rows - 1] += borrow
            with np.errstate(over="ignore"):  # a sum beyond float64 is ±inf, as in IEEE
                for i in range(rows):
                    out += np.ldexp(d[i], _WIDTH * (low + i))
        if self.special.any():
            pinf, ninf, nan = (self.special[:, i] != 0 for i in range(3))
            out = np.where(pinf, np.inf, out)
            out = np.where(ninf, -np.inf, out)
            out = np.where(nan | (pinf & ninf), np.nan, out)
        return out

    def shift(self, levels: int) -> None:
        """Multiply every sum by :math:`2^{24·levels}` exactly: each level's digit sums move to
        the level ``levels`` above (below when negative); digits that would fall below the
        lowest level are dropped, as :func:`digits` would drop them from values that small."""
        self.levels = {k + levels: v for k, v in self.levels.items() if k + levels >= _LOWEST}

    def prune(self) -> None:
        """Drop levels that hold nothing (the sums are unchanged)."""
        self.levels = {k: v for k, v in self.levels.items() if v.any()}

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The state as named arrays (for an ``.npz``): levels and a ``(levels, size)`` grid."""
        self.prune()
        keys = sorted(self.levels)
        grid = np.stack([self.levels[k] for k in keys]) if keys else np.zeros((0, self.size))
        return {
            f"{prefix}_levels": np.array(keys, dtype=np.int64),
            f"{prefix}_digits": grid,
            f"{prefix}_special": self.special,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, size: int) -> ExactSums:
        """The state :meth:`to_arrays` wrote; ``ValueError`` when it does not fit ``size``."""
        keys = arrays[f"{prefix}_levels"]
        grid = arrays[f"{prefix}_digits"].astype(np.float64)
        special = arrays[f"{prefix}_special"].astype(np.int64)
        if keys.ndim != 1 or grid.shape != (keys.size, size) or special.shape != (size, 3):
            raise ValueError(f"exact sums {prefix} do not have {size} groups")
        if np.unique(keys).size != keys.size or ((keys < _LOWEST) | (keys > _HIGHEST)).any():
            raise ValueError(f"exact sums {prefix} have a repeated or impossible level")
        if not np.isfinite(grid).all() or (grid != np.rint(grid)).any():
            raise ValueError(f"exact sums {prefix} hold a digit sum that is not an integer")
        if (np.abs(grid) >= 2.0**53).any() or (special < 0).any():
            raise ValueError(f"exact sums {prefix} hold an impossible digit sum or count")
        out = cls(size)
        out.levels = {int(k): grid[i].copy() for i, k in enumerate(keys)}
        out.special = special.copy()
        return out
