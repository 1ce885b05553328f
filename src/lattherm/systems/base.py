"""The System protocol shared by every energy model, and the reduced energy.

Conventions (DESIGN §3): site states ``x ∈ {0, 1}``, spins ``s = 2x − 1``. Every system has an
interaction energy ``E_int(x)`` and a field (Ising ``h``, CuAu chemical potential ``μ``) that
enters the Boltzmann weight as ``exp(−β (E_int − field · Σ_i s_i))`` with ``β = 1 / (k_B T)``.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from lattherm.lattices import Lattice

__all__ = ["System", "reduced_energy", "parse_size", "SIZE_PATTERN"]

#: a size token: ``10x10`` (Ising), ``2x2x4`` (CuAu repeats of the primitive FCC cell)
SIZE_PATTERN = r"[1-9]\d*(x[1-9]\d*)+"


@runtime_checkable
class System(Protocol):
    name: str
    size: str
    n_sites: int
    n_states: int
    k_B: float
    lattice: Lattice

    def energy(self, x: Tensor) -> Tensor:
        """``(B, N)`` states → ``(B,)`` float64 interaction energies ``E_int``."""
        ...

    def spin_sum(self, x: Tensor) -> Tensor:
        """``(B, N)`` states → ``(B,)`` ``Σ_i s_i`` (float64)."""
        ...

    def delta_energy(self, x: Tensor, sites: Tensor) -> Tensor:
        """Change of ``E_int`` when site ``sites[b]`` of configuration ``b`` is flipped."""
        ...


def spin_sum(x: Tensor) -> Tensor:
    """``Σ_i (2 x_i − 1)`` over the last axis, as float64."""
    return (2 * x.to(torch.int64).sum(-1) - x.shape[-1]).to(torch.float64)


def reduced_energy(system: System, x: Tensor, T: Tensor | float, field: Tensor | float) -> Tensor:
    """``β (E_int(x) − field · Σ s)`` with ``β = 1/(k_B T)``; T and field broadcast over the batch."""
    T = torch.as_tensor(T, dtype=torch.float64, device=x.device)
    field = torch.as_tensor(field, dtype=torch.float64, device=x.device)
    return (system.energy(x) - field * system.spin_sum(x)) / (system.k_B * T)


def parse_size(size: str) -> tuple[int, ...]:
    """``"10x10"`` → ``(10, 10)``; raises ``ValueError`` naming the expected form."""
    if not isinstance(size, str) or not re.fullmatch(SIZE_PATTERN, size):
        raise ValueError(
            f"size token must look like '10x10' or '2x2x4' (positive integers joined by 'x'), got {size!r}"
        )
    return tuple(int(n) for n in size.split("x"))
