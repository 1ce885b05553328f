"""Out-painting: an any-order model trained on a small box fills a larger one, window by window,
with the exact log-probability of every sample (DESIGN §5).

The **schedule** is fixed by the two boxes and a stride: windows of the model's box shape, placed
at origins ``0, s, 2s, …`` along every direction until the target is covered (the last windows
wrap around the target's periodic boundary), taken in raster order. In each window the sites
already filled are context (known); the others are drawn from the model by in-painting
(:func:`lattherm.sampling.sample` with ``known_mask``), in a uniformly random order of the window's
new sites per sample, or an order given per window. Window sites map to target sites by cell
coordinates (``origin + coords`` of the model's site, wrapped), so any site order (Ising row-major,
CuAu CLEASE's template order) works in any dimension.

Every window's in-painting is a normalised distribution of its new sites given the rest, and the
schedule does not depend on what was drawn, so the out-painted ``q_out(x | σ)`` — the product of
the windows' conditionals actually used — is exactly normalised on the target for every choice of
the within-window orders ``σ``: with random orders it is the path probability of the pair
``(σ, x)``, and importance weights ``p(x) / q_out(x | σ)`` stay unbiased for ``Z`` (DESIGN §4).
:func:`outpaint_log_prob` teacher-forces a given configuration through the same schedule and
orders. The symmetrised mixture (Ising) is ``½[q_out(x | h) + q_out(x̄ | −h)]``, as for direct
sampling.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lattherm.conditions import expand_conditions
from lattherm.lattices import Lattice
from lattherm.sampling import log_prob, sample

__all__ = ["Schedule", "schedule", "outpaint", "outpaint_log_prob"]

LN2 = math.log(2.0)


@dataclass(frozen=True)
class Schedule:
    """The windows of an out-painting: ``windows[k]`` holds, for every site of the model (in the
    model's order), the target site it paints in window ``k``; ``new[k]`` says which of them the
    window draws (the others are already filled)."""

    windows: tuple[Tensor, ...]  # (n_model_sites,) long, target indices
    new: tuple[Tensor, ...]  # (n_model_sites,) bool
    origins: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.windows)


def schedule(source: Lattice, target: Lattice, stride: int | tuple[int, ...]) -> Schedule:
    """The out-painting schedule of a model on ``source`` over ``target`` (module doc)."""
    if source.dim != target.dim:
        raise ValueError(f"a {source.dim}-D model cannot paint a {target.dim}-D box")
    wshape, tshape = tuple(source.shape), tuple(target.shape)
    if any(w > t for w, t in zip(wshape, tshape, strict=True)):
        raise ValueError(f"the model's box {wshape} is larger than the target {tshape}")
    strides = (stride,) * source.dim if isinstance(stride, int) else tuple(stride)
    if len(strides) != source.dim or any(int(s) != s or not 1 <= s for s in strides):
        raise ValueError(f"stride must be a positive integer (or one per direction), got {stride!r}")
    if any(s > w for s, w in zip(strides, wshape, strict=True)):
        raise ValueError(f"a stride {strides} larger than the window {wshape} would leave sites unpainted")
    starts = [range(0, max(t - w, 0) + s, s) if t > w else range(1) for t, w, s in zip(tshape, wshape, strides,
                                                                                      strict=True)]  # fmt: skip
    coords = source.coords  # (n, d) cell coordinates of the model's sites, in its order
    filled = np.zeros(target.n_sites, dtype=bool)
    windows, new, origins = [], [], []
    for origin in itertools.product(*starts):
        idx = target.index(coords + np.asarray(origin))
        fresh = ~filled[idx]
        if not fresh.any():
            continue
        windows.append(torch.from_numpy(np.asarray(idx, dtype=np.int64)))
        new.append(torch.from_numpy(fresh))
        origins.append(tuple(int(o) for o in origin))
        filled[idx] = True
    if not filled.all():  # pragma: no cover (the starts cover every direction)
        raise RuntimeError("the schedule leaves target sites unpainted")
    return Schedule(tuple(windows), tuple(new), tuple(origins))


def _check_model(model) -> None:
    if model.fixed_order:
        raise ValueError(f"out-painting needs an any-order model; {model.name} generates in one fixed order")


@torch.no_grad()
def outpaint(
    model,
    target: Lattice,
    cond,
    n: int | None = None,
    *,
    stride: int | tuple[int, ...],
    orders: list[Tensor] | None = None,
    generator: torch.Generator | None = None,
    symmetrised: bool = False,
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Draw configurations of ``target`` by out-painting with ``model`` (module doc).

    Args:
        cond: ``(2,)`` or ``(C, 2)`` conditions, each repeated ``n`` times (or ``(B, 2)`` with
            ``n`` None), as for :func:`lattherm.sampling.sample`.
        orders: per window, the order of the model's sites for every sample (``(N0,)`` or
            ``(B, N0)``); None draws a uniform random order per sample and window.
        symmetrised: sample the global-flip mixture (binary states) and report its log q.

    Returns:
        ``(x (B, N) long, log_q (B,) float64, orders)``: the orders used, per window ``(B, N0)``.
    """
    _check_model(model)
    plan = schedule(model.lattice, target, stride)
    cond = expand_conditions(cond, n)
    B = cond.shape[0]
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    cond = cond.to(device)
    flip = None
    if symmetrised:
        flip = torch.rand(B, generator=generator, device=device) < 0.5
        cond = torch.where(flip[:, None], cond * torch.tensor([1.0, -1.0], device=device, dtype=cond.dtype), cond)
    x = torch.zeros(B, target.n_sites, dtype=torch.long, device=device)
    log_q = torch.zeros(B, dtype=torch.float64, device=device)
    used = []
    for k, (idx, fresh) in enumerate(zip(plan.windows, plan.new, strict=True)):
        idx, known = idx.to(device), ~fresh.to(device)
        order = "random" if orders is None else orders[k]
        xw, lq, order_used = sample(model, cond, order=order, generator=generator, return_order=True,
                                    known_mask=known.expand(B, -1), known_values=x[:, idx])  # fmt: skip
        x[:, idx[fresh.to(device)]] = xw[:, fresh.to(device)]
        log_q += lq
        used.append(order_used)
    if symmetrised:  # the other branch of the mixture: the flipped draw at the flipped field
        mirror = cond * torch.tensor([1.0, -1.0], device=device, dtype=cond.dtype)
        other = outpaint_log_prob(model, target, 1 - x, mirror, stride=stride, orders=used)
        log_q = torch.logaddexp(log_q, other) - LN2
        x = torch.where(flip[:, None], 1 - x, x)
    return x, log_q, used


def outpaint_log_prob(
    model, target: Lattice, x: Tensor, cond, *, stride: int | tuple[int, ...], orders: list[Tensor]
) -> Tensor:
    """``(B,)`` float64 log-probability of configurations ``x`` of ``target`` under out-painting
    with ``model`` along the given within-window ``orders`` (one per window, as :func:`outpaint`
    returns them); not symmetrised (the mixture adds the flipped branch at −h)."""
    _check_model(model)
    plan = schedule(model.lattice, target, stride)
    if len(orders) != len(plan):
        raise ValueError(f"the schedule has {len(plan)} windows, got orders for {len(orders)}")
    cond = expand_conditions(cond)
    x = torch.as_tensor(x)
    B = x.shape[0]
    if cond.shape[0] == 1:
        cond = cond.expand(B, -1)
    cond = cond.to(x.device)
    total = torch.zeros(B, dtype=torch.float64, device=x.device)
    for idx, fresh, order in zip(plan.windows, plan.new, orders, strict=True):
        idx = idx.to(x.device)
        total += log_prob(model, x[:, idx], cond, order, known_mask=(~fresh.to(x.device)).expand(B, -1))
    return total
