"""The condition ``(T, field)`` in one place: evaluation grids, the condition box a model covers,
condition tensors, and the drifting grid of training conditions.

* **Grids.** A grid spec in config is either ``{min, max, step}`` (inclusive of both ends when
  ``max − min`` is a whole number of steps; values rounded to 12 decimals so that ``1.5 + 7·0.1``
  prints as ``2.2``) or ``{values: [...]}`` (an explicit, strictly increasing list).
  :func:`condition_grid` is the ``(C, 2)`` outer product, T-major: the conditions of every table.
* **Box.** ``cond_box = ((T_min, T_max), (field_min, field_max))``, the range a model is trained
  on (:func:`cond_box_of` a grid; :func:`check_cond_box`).
* **Tensors.** :func:`expand_conditions` makes the ``(B, 2)`` float64 rows the models take.
* **Drifting grid** (paper §IV.4; DESIGN §5). Each training step sees an ``n_T x n_field`` grid
  of conditions (T-major). At the start every temperature and every field is drawn uniformly in
  the box; after every step each value takes an independent Gaussian step of standard deviation
  ``step_frac x (box width)`` and is reflected back into the box at its edges (a mirror at both
  ends, so the uniform distribution on the box is stationary). A degenerate interval (one
  temperature, or the field fixed at 0) stays put. :class:`DriftingGrid` owns its
  ``torch.Generator``; its ``state_dict`` carries its values and generator state, so a resumed
  run continues the same sequence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "GridPoints",
    "grid_values",
    "condition_grid",
    "MAX_GRID_VALUES",
    "CondBox",
    "check_cond_box",
    "cond_box_of",
    "expand_conditions",
    "DriftingGrid",
    "reflect_into",
]

#: ``((T_min, T_max), (field_min, field_max))``
CondBox = tuple[tuple[float, float], tuple[float, float]]

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


def check_cond_box(cond_box) -> CondBox:
    """Validate ``((T_min, T_max), (h_min, h_max))``: finite, ``min <= max``, ``T_min > 0``."""
    try:
        (t0, t1), (h0, h1) = cond_box
        t0, t1, h0, h1 = (float(v) for v in (t0, t1, h0, h1))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"cond_box must be ((T_min, T_max), (field_min, field_max)), got {cond_box!r}"
        ) from err
    if not all(math.isfinite(v) for v in (t0, t1, h0, h1)):
        raise ValueError(f"cond_box must be finite, got {cond_box!r}")
    if not (0 < t0 <= t1):
        raise ValueError(f"cond_box temperatures must satisfy 0 < T_min <= T_max, got ({t0}, {t1})")
    if not h0 <= h1:
        raise ValueError(f"cond_box fields must satisfy field_min <= field_max, got ({h0}, {h1})")
    return ((t0, t1), (h0, h1))


def cond_box_of(T, field) -> CondBox:
    """The box spanned by the values of a grid: ``((min T, max T), (min field, max field))``."""
    T, field = np.asarray(T, dtype=np.float64), np.asarray(field, dtype=np.float64)
    return check_cond_box(((T.min(), T.max()), (field.min(), field.max())))


def expand_conditions(cond, n: int | None = None, *, device=None) -> Tensor:
    """``(B, 2)`` float64 conditions: ``(2,)`` repeated n times, ``(C, 2)`` each repeated n times
    (condition-major), or ``(B, 2)`` as given when ``n`` is None."""
    cond = torch.as_tensor(cond, dtype=torch.float64, device=device)
    if cond.ndim == 1:
        cond = cond[None]
    if cond.ndim != 2 or cond.shape[1] != 2:
        raise ValueError(
            f"cond must be (2,) or (B, 2) of (T, field), got shape {tuple(cond.shape)}"
        )
    if n is not None:
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        cond = cond.repeat_interleave(int(n), dim=0)
    if not torch.all(torch.isfinite(cond)) or not torch.all(cond[:, 0] > 0):
        raise ValueError("conditions must be finite with temperatures T > 0")
    return cond


def reflect_into(v: Tensor, lo: float, hi: float) -> Tensor:
    """Fold ``v`` into ``[lo, hi]`` by mirror reflections at both edges (any step size)."""
    width = hi - lo
    if width <= 0:
        return torch.full_like(v, lo)
    y = torch.remainder(v - lo, 2 * width)  # [0, 2w)
    y = torch.where(y > width, 2 * width - y, y)
    return (lo + y).clamp(lo, hi)


class DriftingGrid:
    """``n_T x n_field`` conditions that drift by reflected Gaussian steps inside ``cond_box``.

    Args:
        cond_box: ``((T_min, T_max), (field_min, field_max))``.
        n_T, n_field: grid sides (paper: 5 x 5).
        step_frac: Gaussian step per iteration, as a fraction of each box width.
        seed: seed of the grid's own generator (CPU).
    """

    def __init__(self, *, cond_box: CondBox, n_T: int, n_field: int, step_frac: float, seed: int) -> None:
        for name, v in (("n_T", n_T), ("n_field", n_field)):
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not step_frac >= 0:
            raise ValueError(f"step_frac must be >= 0, got {step_frac!r}")
        self.cond_box = check_cond_box(cond_box)
        self.n_T, self.n_field, self.step_frac = int(n_T), int(n_field), float(step_frac)
        self.generator = torch.Generator().manual_seed(int(seed))
        (t0, t1), (h0, h1) = self.cond_box
        self.T = t0 + (t1 - t0) * torch.rand(self.n_T, generator=self.generator, dtype=torch.float64)
        self.field = h0 + (h1 - h0) * torch.rand(self.n_field, generator=self.generator, dtype=torch.float64)

    @property
    def n_conditions(self) -> int:
        return self.n_T * self.n_field

    def conditions(self) -> Tensor:
        """``(n_T · n_field, 2)`` float64 ``(T, field)`` of the current grid, T-major."""
        TT, HH = torch.meshgrid(self.T, self.field, indexing="ij")
        return torch.stack([TT.reshape(-1), HH.reshape(-1)], dim=1)

    def step(self) -> None:
        """One reflected Gaussian step of every temperature and every field."""
        (t0, t1), (h0, h1) = self.cond_box
        dT = torch.randn(self.n_T, generator=self.generator, dtype=torch.float64)
        dh = torch.randn(self.n_field, generator=self.generator, dtype=torch.float64)
        self.T = reflect_into(self.T + self.step_frac * (t1 - t0) * dT, t0, t1)
        self.field = reflect_into(self.field + self.step_frac * (h1 - h0) * dh, h0, h1)

    def state_dict(self) -> dict:
        return {
            "T": self.T.clone(),
            "field": self.field.clone(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        T, field = state["T"].to(torch.float64), state["field"].to(torch.float64)
        if T.shape != (self.n_T,) or field.shape != (self.n_field,):
            raise ValueError(
                f"grid state has {tuple(T.shape)} temperatures and {tuple(field.shape)} fields, "
                f"expected ({self.n_T},) and ({self.n_field},)"
            )
        self.T, self.field = T.clone(), field.clone()
        self.generator.set_state(state["generator"])


class GridPoints:
    """``n`` distinct conditions drawn afresh at every step from the points of a fixed grid
    ``T_values x field_values`` (e.g. the evaluation grid: training where the sampler is used), the
    alternative to :class:`DriftingGrid` with the same interface. With ``n`` at least the number of
    points every step sees all of them.

    Args:
        T_values, field_values: the grid's values, inside ``cond_box``.
        n: conditions per step (``n_T · n_field`` of the training config).
        seed: seed of its own generator (CPU).
    """

    def __init__(self, *, cond_box: CondBox, T_values, field_values, n: int, seed: int) -> None:
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        self.cond_box = check_cond_box(cond_box)
        T = torch.as_tensor(np.asarray(T_values, dtype=np.float64).ravel())
        h = torch.as_tensor(np.asarray(field_values, dtype=np.float64).ravel())
        (t0, t1), (h0, h1) = self.cond_box
        if T.numel() == 0 or h.numel() == 0:
            raise ValueError("the grid needs at least one temperature and one field")
        if bool(((T < t0 - 1e-12) | (T > t1 + 1e-12)).any() | ((h < h0 - 1e-12) | (h > h1 + 1e-12)).any()):
            raise ValueError(f"grid points outside the training box {self.cond_box}: "
                             f"T {T.tolist()}, field {h.tolist()}")  # fmt: skip
        TT, HH = torch.meshgrid(T, h, indexing="ij")
        self.points = torch.stack([TT.reshape(-1), HH.reshape(-1)], dim=1)
        self.n = min(int(n), len(self.points))
        self.generator = torch.Generator().manual_seed(int(seed))
        self.step()

    @property
    def n_conditions(self) -> int:
        return self.n

    def conditions(self) -> Tensor:
        """``(n, 2)`` float64 ``(T, field)`` of this step, in the grid's order (T-major)."""
        return self.points[self.index]

    def step(self) -> None:
        """Draw the next step's ``n`` points (uniformly, without replacement)."""
        self.index = torch.randperm(len(self.points), generator=self.generator)[: self.n].sort().values

    def state_dict(self) -> dict:
        return {"points": self.points.clone(), "index": self.index.clone(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if not torch.equal(state["points"].to(torch.float64), self.points):
            raise ValueError(f"the stored grid's points {state['points'].tolist()} differ from this run's "
                             f"{self.points.tolist()}: train anew (another checkpoint path) or pass the same "
                             "grid")  # fmt: skip
        self.index = state["index"].clone()
        self.generator.set_state(state["generator"])
