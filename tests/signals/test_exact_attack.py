"""Review attacks on exact.ExactSums (value a function of the exact sum, within a few ulps of
math.fsum, state restore validation)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from meta_supervisor.signals.exact import ExactSums


def _value(values: list[float]) -> float:
    sums = ExactSums(1)
    sums.add(np.zeros(len(values), dtype=np.int64), np.array(values))
    return float(sums.value()[0])


def test_the_largest_float_alone_sums_to_itself_not_to_inf():
    """Suspected cause: value() carries a balanced digit up to the top level and then
    ldexp(2^16, 1008) overflows, though the sum (DBL_MAX) is finite."""
    top = sys.float_info.max
    assert _value([top]) == math.fsum([top])
    assert _value([top, -1.0]) == math.fsum([top, -1.0])


def test_the_value_is_a_function_of_the_exact_sum_alone():
    """Two multisets with the same exact sum, 2^71 + 2^18 + 1 (fsum: 2^71 + 2^19), give two
    floats one ulp apart. Suspected cause: value()'s rint carry leaves a tie digit of +2^23 or
    -2^23 depending on how the level sums are split (balanced digits are not unique), and the
    low-to-high fold rounds them differently (the docstring says 'a function of the exact sum
    alone')."""
    one = _value([2.0**71, 2.0**18 + 1])
    other = _value([-(2.0**71), 2.0**72, 2.0**18 + 1])
    assert math.fsum([2.0**71, 2.0**18 + 1]) == math.fsum([-(2.0**71), 2.0**72, 2.0**18 + 1])
    assert one == other


def test_a_restored_state_with_a_repeated_level_is_refused():
    """from_arrays checks shapes and integrality but not that levels are distinct: a grid with
    a level twice is read as one of its rows (the other silently dropped), another sum.
    Suspected cause: no uniqueness / range check on ``{prefix}_levels``."""
    sums = ExactSums(1)
    sums.add(np.array([0, 0]), np.array([1.0, 2.0**-30]))  # two levels: 0 and -2
    arrays = sums.to_arrays("x")
    arrays["x_levels"] = np.array([0, 0], dtype=np.int64)
    with pytest.raises(ValueError):
        ExactSums.from_arrays(arrays, "x", 1)
