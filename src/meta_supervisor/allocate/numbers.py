"""One number parser for every input the allocation reads (stats dicts, frames, tails).

A value is *absent* (``None``), *usable* (a finite float) or *unusable*, with the reason in
words: a boolean (``True`` is not 1 bps), text that is not a number, a type that is not a
number, or a non-finite value (NaN, ±inf, or an integer too large for a float).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from meta_supervisor.typing import FloatArray

__all__ = ["finite_number", "or_zero", "parse_number", "py_max", "py_min"]


def parse_number(value: Any) -> tuple[float | None, str | None]:
    """``(number, None)``, ``(None, None)`` when absent, or ``(None, problem)`` when unusable."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return None, f"is a boolean ({value!r}), not a number"
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except OverflowError:
        return None, "is not finite (too large for a float)"
    except (TypeError, ValueError):
        if isinstance(value, str):
            return None, f"is not a number ({value[:40]!r})"
        return None, f"is not a number ({type(value).__name__})"
    if not math.isfinite(number):
        return None, f"is not finite ({number!r})"
    return number, None


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, else ``None`` (absent or unusable: see :func:`parse_number`)."""
    return parse_number(value)[0]


# The factors are written on arrays (one entry per agent, NaN = not reported or unusable) so
# that the allocation computes every agent at once. Python's ``max(a, b)`` returns ``a`` unless
# ``b > a`` (NaN never wins); ``np.where(b > a, b, a)`` is that, bit for bit, where
# ``np.maximum`` would propagate NaN.


def py_max(a: Any, b: Any) -> Any:
    """Python's ``max(a, b)`` elementwise (``b`` only when ``b > a``; NaN never wins)."""
    return np.where(b > a, b, a)


def py_min(a: Any, b: Any) -> Any:
    """Python's ``min(a, b)`` elementwise (``b`` only when ``b < a``; NaN never wins)."""
    return np.where(b < a, b, a)


def or_zero(x: FloatArray) -> FloatArray:
    """Python's ``x or 0.0`` with NaN for ``None``: NaN and ±0 become +0."""
    return np.where(np.isnan(x) | (x == 0), 0.0, x)
