"""The 2D Ising model on an ``L x L`` square torus.

``E_int(x) = −J Σ_<ij> s_i s_j`` with ``s = 2x − 1`` (``x = 1`` is spin up), each nearest-neighbour
bond counted once: 2N bonds on the torus (for ``L = 2`` the two bonds between a pair of sites
along a direction are both counted, as the periodic Hamiltonian does). The field ``h`` enters the
Boltzmann weight as ``exp(−β(E_int − h Σ s))``; ``k_B = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from lattherm.lattices import Lattice, square_lattice
from lattherm.systems.base import SystemInfo, parse_size, spin_sum

__all__ = ["IsingSystem", "ising_system", "INFO"]


@dataclass(eq=False)
class IsingSystem:
    """Batched energies of the ``L x L`` Ising torus.

    Args:
        L: side length (>= 2).
        J: coupling (ferromagnetic for ``J > 0``).
    """

    L: int
    J: float = 1.0
    name: str = field(default="ising", init=False)
    n_states: int = field(default=2, init=False)
    k_B: float = field(default=1.0, init=False)

    def __post_init__(self) -> None:
        self.lattice: Lattice = square_lattice(self.L)
        self.L = int(self.L)
        self.J = float(self.J)
        self.size = f"{self.L}x{self.L}"
        self.n_sites = self.L * self.L
        self._bonds = self.lattice.bonds()  # (2N, 2)
        self._neighbours = self.lattice.neighbours()  # (N, 4)

    def pair_couplings(self) -> tuple[Tensor, Tensor]:
        """``(bonds (B, 2), J (B,))``: ``E_int = −Σ_b J_b s_i s_j`` over the bonds (two-body models)."""
        return self._bonds.clone(), torch.full((len(self._bonds),), self.J, dtype=torch.float64)

    def params(self) -> dict:
        """The parameters that, with the size, define the system (checkpoints record them)."""
        return {"J": float(self.J)}

    def _check(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_sites:
            raise ValueError(
                f"expected states of shape (B, {self.n_sites}) for Ising {self.size}, got {tuple(x.shape)}"
            )

    def bond_sum(self, x: Tensor) -> Tensor:
        """``Σ_<ij> s_i s_j`` as int64 (exact)."""
        self._check(x)
        s = 2 * x.to(torch.int64) - 1
        b = self._bonds.to(x.device)
        return (s[:, b[:, 0]] * s[:, b[:, 1]]).sum(-1)

    def energy(self, x: Tensor) -> Tensor:
        """``E_int = −J Σ_<ij> s_i s_j`` per configuration, float64."""
        return -self.J * self.bond_sum(x).to(torch.float64)

    def spin_sum(self, x: Tensor) -> Tensor:
        self._check(x)
        return spin_sum(x)

    def local_field(self, x: Tensor, sites: Tensor) -> Tensor:
        """``Σ_{j ∈ nb(i)} s_j`` at ``i = sites[b]`` of configuration ``b`` (int64)."""
        nb = self._neighbours.to(x.device).index_select(0, sites)  # (B, 4)
        s_nb = 2 * torch.gather(x.to(torch.int64), 1, nb) - 1
        return s_nb.sum(-1)

    def delta_energy(self, x: Tensor, sites: Tensor) -> Tensor:
        """``E_int(x with site flipped) − E_int(x) = 2 J s_i Σ_nb s_j`` (float64)."""
        self._check(x)
        s_i = 2 * torch.gather(x.to(torch.int64), 1, sites[:, None])[:, 0] - 1
        return 2.0 * self.J * (s_i * self.local_field(x, sites)).to(torch.float64)


def ising_system(size: str, J: float = 1.0) -> IsingSystem:
    """The Ising torus of a size token ``"LxL"``."""
    return IsingSystem(L=parse_size(size)[0], J=J)


def _square(size: str) -> None:
    L0, L1 = parse_size(size)
    if L0 != L1 or L0 < 2:
        raise ValueError(f"an Ising size is a square torus 'LxL' with L >= 2, got {size!r}")


INFO = SystemInfo(
    name="ising",
    title="2D Ising model",
    factory="lattherm.systems.ising:ising_system",
    dims=2,
    max_sites=256 * 256,
    units={
        "T": "J/k_B",
        "field": "J (field h)",
        "energy": "J (E_int of a configuration)",
        "per-site f, u, f_var, f_nis, f_est, f_ref, delta_f": "J per site",
        "c": "k_B per site",
        "m, abs_m": "per site",
    },
    labels={"name": "Ising", "T": r"$T$ [$J/k_\mathrm{B}$]", "c": r"$c$ [$k_\mathrm{B}$/site]", "field": "h",
            "field_unit": "J", "energy": "J/site", "energy_scale": 1.0, "relative_error": True},
    flip_symmetric=True,
    two_body=True,
    gibbs_block=10,
    references=("exact", "mcmc", "wang_landau", "field_integration"),
    exact_for=lambda size: True,  # transfer matrix (every field) up to max_transfer_L, Kaufman (field 0) above
    check_size=_square,
)
