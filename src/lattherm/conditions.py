"""Condition grids ``(T, field)``: evaluation grids from config and the training-condition box.

A grid spec in config is either ``{min, max, step}`` (inclusive of both ends when ``max − min``
is a whole number of steps; values rounded to 12 decimals so that ``1.5 + 7·0.1`` prints as
``2.2``) or ``{values: [...]}`` (an explicit, strictly increasing list).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["grid_values", "condition_grid", "MAX_GRID_VALUES"]

#: most values of one grid axis
MAX_GRID_VALUES = 1000


def grid_values(spec: Mapping) -> np.ndarray:
    """The values of a grid spec (see module docstring); raises ``ValueError`` on a bad spec."""
    if "values" in spec:
        v = np.asarray(spec["values"], dtype=np.float64)
        if v.ndim != 1 or v.size == 0:
            raise ValueError("'values' must be a non-empty list of numbers")
        if np.any(np.diff(v) <= 0):
            raise ValueError(f"'values' must be strictly increasing, got {v.tolist()}")
        return v
    lo, hi, step = float(spec["min"]), float(spec["max"]), float(spec["step"])
    if not step > 0:
        raise ValueError(f"'step' must be > 0, got {step}")
    if not hi > lo:
        raise ValueError(f"'max' must be greater than 'min' (got min={lo}, max={hi}); for one value use values: [{lo}]")
    n = int(np.floor((hi - lo) / step + 1e-9))
    if n + 1 > MAX_GRID_VALUES:
        raise ValueError(f"a grid from {lo} to {hi} in steps of {step} has {n + 1} values; at most {MAX_GRID_VALUES}")
    return np.round(lo + step * np.arange(n + 1), 12)


def condition_grid(T: np.ndarray, field: np.ndarray) -> np.ndarray:
    """``(n_T · n_field, 2)`` outer product of temperatures and fields, T-major."""
    TT, HH = np.meshgrid(np.asarray(T, float), np.asarray(field, float), indexing="ij")
    return np.stack([TT.ravel(), HH.ravel()], axis=1)
