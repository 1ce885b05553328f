"""Two-body autoregressive network (``twobo``): conditionals built from the couplings' sparsity.

After Biazzo, Wu and Carleo's TwoBo ("Sparse autoregressive neural networks for classical spin
systems"). For a Boltzmann weight ``exp(β Σ_{l<m} J_lm s_l s_m + β h Σ s)`` (``s = 2x − 1``) the
exact conditional of site ``i`` in the storage order depends on the sites already drawn only
through the fields they exert,

    ρ_l = Σ_{j<i} J_lj s_j,

on site ``i`` itself and on the later sites ``F_i = {l > i coupled to some j <= i}`` (the
boundary; on an L x L torus in raster order about two rows):

    logit_i = log q(s_i=+1|·) − log q(s_i=−1|·)
            = 2β (ρ_i + h) + G_i(β (ρ_F + J_Fi)) − G_i(β (ρ_F − J_Fi)),

where ``G_i(βφ) = log Z_{>i}(φ)`` is the log partition function of the later sites in the fields
``φ`` (the field ``h`` acts on them too, so ``φ_F = ρ_F ± J_Fi + h``). This module keeps that
structure exactly and learns ``G_i``: one small network per site,
``G_i(u) = Σ_a v_ia softplus(W_ia · u + b_ia + c_ia(T, h))`` over the ``|F_i|`` boundary fields
``u = βφ_F`` (at most ``K``, zero-padded), ``hidden`` units each, with condition features ``c``
from the Fourier embedding of ``(T, h)`` (``Z_>i`` depends on β and on the field of the sites
beyond the boundary too). The field must enter ``u``: a condition that only shifts the biases
cannot flip the sign of ``G(u⁺) − G(u⁻)`` (softplus is monotone). Parameters grow as ``N K
hidden``, not ``N²`` as a MADE's.

Fixed order (the storage order: row-major on the square lattice); one pass gives every
conditional (the fields of all prefixes are a cumulative sum), and sampling keeps the running
fields, ``O(K hidden)`` per site and sample. Needs a two-body system (``pair_couplings``: Ising,
EA, chain); the couplings are rebuilt from the system, not stored in checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lattherm.conditions import CondBox
from lattherm.lattices import Lattice
from lattherm.models.base import FourierCondition, Model, check_integers

__all__ = ["TwoBoConfig", "TwoBo", "boundary_sets"]


@dataclass
class TwoBoConfig:
    hidden: int = 8  # units of each site's network G_i
    n_freq: int = 8  # Fourier frequencies per condition variable


def boundary_sets(J: Tensor) -> tuple[Tensor, Tensor]:
    """``(index (N, K), mask (N, K))``: per site ``i``, the later sites ``l > i`` coupled to a site
    ``j <= i`` (the boundary ``F_i``, ascending), padded to the largest boundary ``K`` (at least 1)."""
    N = J.shape[0]
    nz = J != 0
    pos = torch.arange(N)
    # reach[l, i]: l is coupled to some j <= i  (cumulative OR over j)
    reach = torch.cummax(nz.long(), dim=1).values.bool()
    later = pos[:, None] > pos[None, :]  # [l, i]: l > i
    member = (reach & later).T  # (i, l)
    K = max(1, int(member.sum(1).max()))
    idx = torch.zeros(N, K, dtype=torch.long)
    mask = torch.zeros(N, K, dtype=torch.bool)
    for i in range(N):
        ls = torch.nonzero(member[i]).flatten()
        idx[i, : len(ls)], mask[i, : len(ls)] = ls, True
    return idx, mask


class TwoBo(Model):
    """Two-body fixed-order ARM (``twobo``); see the module docstring."""

    name = "twobo"
    fixed_order = True
    uses_couplings = "always"

    @classmethod
    def check_config(cls, config: TwoBoConfig, periods: tuple[int, ...]) -> None:
        check_integers(config, "hidden", "n_freq")

    def __init__(self, *, lattice: Lattice, n_states: int, cond_box: CondBox, config: TwoBoConfig,
                 couplings: tuple[Tensor, Tensor], k_B: float = 1.0) -> None:  # fmt: skip
        super().__init__(lattice=lattice, n_states=n_states, cond_box=cond_box, config=config)
        if self.n_states != 2:
            raise ValueError(f"twobo models spins (2 states per site), got {self.n_states}")
        bonds, Jb = couplings
        N, H = self.n_sites, config.hidden
        J = torch.zeros(N, N, dtype=torch.float64)
        b = torch.as_tensor(bonds).long()
        Jb = torch.as_tensor(Jb, dtype=torch.float64).expand(len(b))
        J.index_put_((b[:, 0], b[:, 1]), Jb, accumulate=True)
        J.index_put_((b[:, 1], b[:, 0]), Jb, accumulate=True)
        J.fill_diagonal_(0.0)  # a site with itself: a constant energy, no field
        idx, mask = boundary_sets(J)
        K = idx.shape[1]
        dt = torch.get_default_dtype()
        self.k_B = float(k_B)
        # geometry and couplings: rebuilt from the system, not stored in checkpoints
        self.register_buffer("J", J.to(dt), persistent=False)
        self.register_buffer("f_idx", idx, persistent=False)
        self.register_buffer("f_mask", mask.to(dt), persistent=False)
        self.register_buffer("J_fi", (J[idx, torch.arange(N)[:, None]] * mask).to(dt), persistent=False)
        self.W = nn.Parameter(torch.randn(N, H, K) * 0.1 / max(1.0, K**0.5))
        self.b = nn.Parameter(torch.zeros(N, H))
        self.v = nn.Parameter(torch.randn(N, H) * 0.1)
        self.cond_embed = FourierCondition(cond_box=cond_box, n_freq=config.n_freq)
        self.cond_lin = nn.Linear(self.cond_embed.out_features, N * H)
        nn.init.zeros_(self.cond_lin.weight)
        nn.init.zeros_(self.cond_lin.bias)

    def _beta_h(self, cond: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``β`` (B, 1), ``h`` (B, 1) and the condition biases ``c`` (B, N, H)."""
        cond = cond.to(self.dtype)
        beta = 1.0 / (self.k_B * cond[:, :1])
        c = self.cond_lin(self.cond_embed(cond)).view(-1, self.n_sites, self.config.hidden)
        return beta, cond[:, 1:2], c

    def _G(self, u: Tensor, c: Tensor, sites: Tensor | None = None) -> Tensor:
        """``G_i(u)`` for boundary fields ``u`` (B, n, K) at ``sites`` (n,) (all sites when None)."""
        W, b, v = (self.W, self.b, self.v) if sites is None else (self.W[sites], self.b[sites], self.v[sites])
        pre = torch.einsum("bnk,nhk->bnh", u, W) + b + c
        return (F.softplus(pre) * v).sum(-1)  # (B, n)

    def _logit(self, rho_i: Tensor, rho_f: Tensor, beta: Tensor, h: Tensor, c: Tensor,
               sites: Tensor | None = None) -> Tensor:  # fmt: skip
        """``logit_i`` (B, n) from the field on site ``i`` (B, n) and on its boundary (B, n, K)."""
        jf = self.J_fi if sites is None else self.J_fi[sites]
        mask = self.f_mask if sites is None else self.f_mask[sites]
        bb, hh = beta[:, :, None], h[:, :, None]
        plus = self._G(bb * (rho_f + jf + hh) * mask, c, sites)
        minus = self._G(bb * (rho_f - jf + hh) * mask, c, sites)
        return 2.0 * beta * (rho_i + h) + plus - minus

    @staticmethod
    def _two_class(logit: Tensor) -> Tensor:
        """Logits of the states (x = 0: s = −1, x = 1: s = +1)."""
        return torch.stack([-0.5 * logit, 0.5 * logit], dim=-1)

    def _logits(self, x: Tensor, visible: Tensor, cond: Tensor) -> Tensor:
        B, N = x.shape
        s = ((2 * x - 1) * visible).to(self.dtype)  # invisible sites exert no field
        # rho[b, i, l] = Σ_{j<i} J_lj s_j: exclusive cumulative sum over j of s_j J[:, j]
        contrib = s[:, :, None] * self.J.T[None]  # (B, j, l)
        rho = torch.cumsum(contrib, dim=1) - contrib  # (B, i, l)
        rho_i = torch.diagonal(rho, dim1=1, dim2=2)  # (B, N)
        rho_f = rho.gather(2, self.f_idx[None].expand(B, -1, -1))  # (B, N, K)
        beta, h, c = self._beta_h(cond)
        return self._two_class(self._logit(rho_i, rho_f, beta, h, c))

    @torch.no_grad()
    def fixed_order_stepper(self, cond: Tensor) -> _TwoBoStepper:
        cond = torch.as_tensor(cond, device=self.J.device)
        return _TwoBoStepper(self, cond.reshape(-1, 2))


class _TwoBoStepper:
    """Incremental sampling: the running fields ``ρ`` (B, N) of the sites drawn so far."""

    def __init__(self, model: TwoBo, cond: Tensor) -> None:
        self.m = model
        self.beta, self.h, self.c = model._beta_h(cond)
        self.rho = torch.zeros(cond.shape[0], model.n_sites, dtype=model.dtype, device=cond.device)

    def logits(self, t: int) -> Tensor:
        m = self.m
        site = torch.tensor([t], device=self.rho.device)
        rho_f = self.rho[:, m.f_idx[t]][:, None, :]  # (B, 1, K)
        logit = m._logit(self.rho[:, t : t + 1], rho_f, self.beta, self.h, self.c[:, t : t + 1], site)
        return m._two_class(logit[:, 0])

    def observe(self, t: int, a: Tensor) -> None:
        s = (2 * a - 1).to(self.rho.dtype)  # (B,)
        self.rho.add_(s[:, None] * self.m.J[:, t][None, :])
