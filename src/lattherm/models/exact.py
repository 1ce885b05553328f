"""The exact twin of every sampler: Boltzmann conditionals and marginals by enumeration.

:class:`ExactModel` satisfies the :class:`~lattherm.models.base.Model` protocol for a tiny
system (``N <= max_sites``): for a visible set ``S`` with values ``x_S``,

    log p(x_S)            = logsumexp_{y : y_S = x_S} (−β (E_int(y) − field Σ s(y))) − ln Z
    logits_j(a | x_S)     = logsumexp_{y : y_S = x_S, y_j = a} (−β (E_int(y) − field Σ s(y)))

so samples drawn through :mod:`lattherm.sampling` along any order are exact Boltzmann samples
with ``log_q = log p`` (up to rounding), and ``log_marginal`` is the exact marginal. For tests of
sampling, estimators, and training objectives (a MAM consistency loss vanishes on it).
Computed in float64 whatever the input; cost ``O(B · 2^N · N)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lattherm.conditions import CondBox
from lattherm.models.base import Model
from lattherm.reference.exact import enumerate_states

__all__ = ["ExactModel", "ExactConfig"]


@dataclass
class ExactConfig:
    max_sites: int = 16  # refuse larger systems (2^N configurations are held in memory)


class ExactModel(Model):
    """Exact Boltzmann conditionals of ``system`` (see module docstring)."""

    name = "exact"
    has_marginal = True

    def __init__(self, *, system, cond_box: CondBox, config: ExactConfig | None = None) -> None:
        config = ExactConfig() if config is None else config
        if system.n_sites > config.max_sites:
            raise ValueError(
                f"ExactModel enumerates 2^N states: N={system.n_sites} > "
                f"max_sites={config.max_sites}"
            )
        super().__init__(
            lattice=system.lattice, n_states=system.n_states, cond_box=cond_box, config=config
        )
        if self.n_states != 2:
            raise ValueError(
                f"ExactModel enumerates binary states only, got n_states={self.n_states}"
            )
        states = torch.cat(list(enumerate_states(self.n_sites))).long()  # (K, N)
        self.k_B = float(system.k_B)
        self.register_buffer("states", states, persistent=False)
        self.register_buffer("energy", system.energy(states).to(torch.float64), persistent=False)
        self.register_buffer("spins", system.spin_sum(states).to(torch.float64), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64

    def log_weights(self, cond: Tensor) -> Tensor:
        """``(B, K)`` unnormalised log Boltzmann weights of every enumerated state."""
        cond = cond.to(torch.float64)
        T, h = cond[:, :1], cond[:, 1:]
        return -(self.energy[None, :] - h * self.spins[None, :]) / (self.k_B * T)

    def _heads(self, x: Tensor, visible: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        lw = self.log_weights(cond)  # (B, K)
        log_Z = torch.logsumexp(lw, dim=1)  # (B,)
        match = (self.states[None, :, :] == x[:, None, :]) | ~visible[:, None, :]  # (B, K, N)
        lw_S = torch.where(match.all(-1), lw, -torch.inf)  # (B, K) consistent with x_S
        logits = torch.stack(
            [
                torch.logsumexp(
                    torch.where(self.states[None] == a, lw_S[:, :, None], -torch.inf), dim=1
                )
                for a in range(self.n_states)
            ],
            dim=-1,
        )  # (B, N, q)
        return logits, torch.logsumexp(lw_S, dim=1) - log_Z
