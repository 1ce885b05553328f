"""A marginalization model whose marginals are exact: a non-negative tensor train (``mam-tt``).

The model is a product of non-negative matrices along the storage order (an HMM with ``D`` hidden
states, or a matrix product state with non-negative entries)::

    q̃(x | c) = u(c)ᵀ A_1[x_1](c) A_2[x_2](c) ··· A_N[x_N](c) v(c),     A_i[a](c) ∈ R_{>0}^{D×D}

with ``log A_i[a](c) = W⁰_ia + Σ_f φ_f(c) W^f_ia`` elementwise (``φ``: the Fourier features of
``(T, field)``, :class:`~lattherm.models.base.FourierCondition`), and likewise ``u``, ``v``.
Summing a site out replaces its matrix by ``Σ_a A_i[a]``, so the marginal of ANY set of visible
sites is one product of ``N`` matrices, and ``q(x) = q̃(x) / Z`` with ``Z`` the product of all
sums: exactly normalised. The conditional of a site given any visible set is the ratio of two
such marginals: ``q(x_j = a | x_V) ∝ L_j A_j[a] R_j`` with ``L_j``, ``R_j`` the products of the
(selected or summed) matrices before and after ``j``. Conditionals and marginal are therefore
consistent by construction: the path probability along every order equals the marginal,
``log q(x | σ) = log q(x)``, the property the study's MAMs only approximate through a training
penalty (``benchmarks/bench_mam_diagnosis.py`` measures it). ``log_marginal`` is exact here, not a
surrogate, and the model is trained by REINFORCE on it (one pass; :attr:`exact_marginal`).

Every order draws the same distribution, so the model's order family is the storage order alone
(:meth:`draw_orders`), sampled by a stepper that keeps the running left vector: ``O(q D²)`` per
site and sample, the right vectors of the summed matrices computed once per condition. Vectors are
renormalised after every product (their log-norms summed), so ``N`` products neither overflow nor
underflow. Parameters grow as ``N q D² (1 + F)``: the weights are tied to the box.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lattherm.conditions import CondBox
from lattherm.lattices import Lattice
from lattherm.models.base import FourierCondition, Model, check_integers

__all__ = ["TensorTrainConfig", "TensorTrain"]


@dataclass
class TensorTrainConfig:
    bond_dim: int = 16  # D: hidden states carried from one site to the next
    n_freq: int = 4  # Fourier frequencies per condition variable
    init_scale: float = 1.0  # spread of the initial log-entries (0: the uniform distribution, a saddle)


class _Groups:
    """The rows of a batch grouped by condition: consecutive equal rows form a group; when every
    group has the same size the contractions run on a ``(groups, rows per group)`` view."""

    def __init__(self, cond: Tensor) -> None:
        uniq, counts = torch.unique_consecutive(cond, dim=0, return_counts=True)
        self.cond = uniq  # (G, 2)
        self.B = int(cond.shape[0])
        self.G = int(uniq.shape[0])
        self.even = bool((counts == counts[0]).all()) if self.G else True
        self.index = torch.repeat_interleave(torch.arange(self.G, device=cond.device), counts)  # (B,)

    def left(self, vec: Tensor, mats: Tensor) -> Tensor:
        """``vec (B, D)`` times each row's group's ``mats (G, q, D, D)`` from the left → ``(B, q, D)``."""
        if self.even:
            G, D = self.G, vec.shape[-1]
            return torch.einsum("gsd,gqde->gsqe", vec.view(G, -1, D), mats).reshape(self.B, mats.shape[1], D)
        return torch.einsum("bd,bqde->bqe", vec, mats[self.index])

    def right(self, mats: Tensor, vec: Tensor) -> Tensor:
        """Each row's group's ``mats (G, q, D, D)`` times ``vec (B, D)`` from the right → ``(B, q, D)``."""
        if self.even:
            G, D = self.G, vec.shape[-1]
            return torch.einsum("gqde,gse->gsqd", mats, vec.view(G, -1, D)).reshape(self.B, mats.shape[1], D)
        return torch.einsum("bqde,be->bqd", mats[self.index], vec)


def _pick(y: Tensor, x: Tensor, visible: Tensor) -> Tensor:
    """``y (B, q, D)`` at state ``x`` (B,) where visible, summed over the states elsewhere."""
    chosen = y.gather(1, x[:, None, None].expand(-1, 1, y.shape[-1]))[:, 0]
    return torch.where(visible[:, None], chosen, y.sum(1))


def _normalised(y: Tensor) -> tuple[Tensor, Tensor]:
    """``(y / Σy, log Σy)`` of positive ``(B, D)`` vectors."""
    n = y.sum(-1, keepdim=True)
    return y / n, n[:, 0].log()


class TensorTrain(Model):
    """Non-negative tensor train with exact marginals (``mam-tt``); see the module docstring."""

    name = "mam-tt"
    has_marginal = True
    exact_marginal = True

    @classmethod
    def check_config(cls, config: TensorTrainConfig, periods: tuple[int, ...]) -> None:
        check_integers(config, "bond_dim", "n_freq")
        if not config.init_scale >= 0:
            raise ValueError(f"TensorTrainConfig.init_scale must be >= 0, got {config.init_scale!r}")

    def __init__(self, *, lattice: Lattice, n_states: int, cond_box: CondBox, config: TensorTrainConfig) -> None:
        super().__init__(lattice=lattice, n_states=n_states, cond_box=cond_box, config=config)
        N, q, D = self.n_sites, self.n_states, int(config.bond_dim)
        self.cond_embed = FourierCondition(cond_box=cond_box, n_freq=config.n_freq)
        Fd = self.cond_embed.out_features
        s, sc = config.init_scale, config.init_scale / Fd**0.5
        self.log_core = nn.Parameter(torch.randn(N, q, D, D) * s)
        self.core_cond = nn.Parameter(torch.randn(Fd, N, q, D, D) * sc)
        self.log_ends = nn.Parameter(torch.randn(2, D) * s)  # u, v
        self.ends_cond = nn.Parameter(torch.randn(Fd, 2, D) * sc)

    # ------------------------------------------------------------------ the matrices
    def _tables(self, groups: _Groups) -> tuple[Tensor, Tensor, Tensor]:
        """Per condition group: the matrices ``A (G, N, q, D, D)``, their state sums ``(G, N, D, D)``
        and the end vectors ``(G, 2, D)``."""
        phi = self.cond_embed(groups.cond.to(self.dtype))  # (G, F)
        A = (self.log_core + torch.einsum("gf,fnqde->gnqde", phi, self.core_cond)).exp()
        ends = (self.log_ends + torch.einsum("gf,fkd->gkd", phi, self.ends_cond)).exp()
        return A, A.sum(2), ends

    def _left(self, x: Tensor, visible: Tensor, cond: Tensor, *, keep: bool):
        """Left to right: ``log q(x_visible)`` (B,), and with ``keep`` each site's ``L_j A_j[a]``
        (the product before site ``j``, normalised, times its matrices) for the conditionals."""
        groups = _Groups(cond)
        A, A_sum, ends = self._tables(groups)
        A = A.unbind(1)  # per site (one backward op, not a full-size gradient per slice)
        L, log_scale = _normalised(ends[groups.index, 0])
        steps = []
        for j in range(x.shape[1]):
            y = groups.left(L, A[j])  # (B, q, D)
            if keep:
                steps.append(y)
            L, ls = _normalised(_pick(y, x[:, j], visible[:, j]))
            log_scale = log_scale + ls
        log_visible = log_scale + (L * ends[groups.index, 1]).sum(-1).log()
        return log_visible - self._log_z(A_sum, ends)[groups.index], steps, groups, A, ends

    def _heads(self, x: Tensor, visible: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        log_marginal, steps, groups, A, ends = self._left(x, visible, cond, keep=True)
        # right to left: R_j, the product after site j; the conditional of site j is L_j A_j[a] R_j
        R, _ = _normalised(ends[groups.index, 1])
        logits = [None] * x.shape[1]
        for j in reversed(range(x.shape[1])):
            logits[j] = (steps[j] * R[:, None, :]).sum(-1).log()  # (B, q)
            R, _ = _normalised(_pick(groups.right(A[j], R), x[:, j], visible[:, j]))
        return torch.stack(logits, 1), log_marginal

    def log_marginal(self, x: Tensor, visible: Tensor, cond: Tensor) -> Tensor:
        """``(B,)`` the exact ``log q(x_visible)`` (the left pass alone)."""
        return self._left(*self._check(x, visible, cond), keep=False)[0]

    @staticmethod
    def _log_z(A_sum: Tensor, ends: Tensor) -> Tensor:
        """``(G,)`` log of the normalisation ``uᵀ Π_i Σ_a A_i[a] v`` per condition group."""
        L, log_scale = _normalised(ends[:, 0])
        for A_j in A_sum.unbind(1):
            L, ls = _normalised(torch.einsum("gd,gde->ge", L, A_j))
            log_scale = log_scale + ls
        return log_scale + (L * ends[:, 1]).sum(-1).log()

    # ------------------------------------------------------------------ sampling
    def draw_orders(self, n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
        """The storage order for every sample: every order draws the same ``q`` (module docstring)."""
        return torch.arange(self.n_sites, device=device).expand(n, self.n_sites)

    @torch.no_grad()
    def fixed_order_stepper(self, cond: Tensor) -> _ChainStepper:
        """Incremental sampling along the storage order (:meth:`Model.fixed_order_stepper`)."""
        return _ChainStepper(self, cond.reshape(-1, 2).to(self.log_core.device))


class _ChainStepper:
    """The running left vector ``L`` of the drawn sites; right vectors of the summed matrices."""

    def __init__(self, model: TensorTrain, cond: Tensor) -> None:
        self.groups = _Groups(cond)
        self.A, A_sum, ends = model._tables(self.groups)
        self.L, _ = _normalised(ends[self.groups.index, 0])
        # R[j]: the normalised product of the summed matrices after site j (G, D), j = 0..N-1
        R, _ = _normalised(ends[:, 1])
        rights = [R]
        for j in reversed(range(1, model.n_sites)):
            R, _ = _normalised(torch.einsum("gde,ge->gd", A_sum[:, j], R))
            rights.append(R)
        self.R = torch.stack(rights[::-1], 1)  # (G, N, D)
        self.y = None

    def logits(self, t: int) -> Tensor:
        self.y = self.groups.left(self.L, self.A[:, t])  # (B, q, D)
        return (self.y * self.R[self.groups.index, t][:, None, :]).sum(-1).log()

    def observe(self, t: int, a: Tensor) -> None:
        self.L, _ = _normalised(self.y.gather(1, a[:, None, None].expand(-1, 1, self.y.shape[-1]))[:, 0])
