"""The drifting training-condition grid (paper §IV.4; DESIGN §5).

Each training step sees an ``n_T x n_field`` grid of conditions: ``n_T`` temperatures times
``n_field`` fields (T-major, like :func:`lattherm.conditions.condition_grid`). At the start every
temperature and every field is drawn uniformly in the configured box; after every step each value
takes an independent Gaussian step of standard deviation ``step_frac x (box width)`` and is
reflected back into the box at its edges (a mirror at both ends, so the uniform distribution on the
box is stationary). A degenerate interval (one temperature, or the field fixed at 0) stays put.

The grid owns its ``torch.Generator``; :meth:`DriftingGrid.state_dict` / :meth:`load_state_dict`
carry its values and generator state, so a resumed run continues the same sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lattherm.models.base import CondBox, check_cond_box

__all__ = ["DriftingGrid", "reflect_into"]


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
