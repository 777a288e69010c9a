"""Shared type aliases: one home for the array types the package passes around."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["BoolArray", "FloatArray", "IntArray"]

#: Per-agent (or per-record) float64 values, bps unless the name says otherwise.
FloatArray = NDArray[np.float64]
#: Per-agent flags (a gate passed, a value absent, ...).
BoolArray = NDArray[np.bool_]
#: Integer codes and counts.
IntArray = NDArray[np.int64]
