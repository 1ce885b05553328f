"""The 1D Ising chain on a ring of ``L`` sites: the smallest system, with a 2x2 transfer matrix.

``E_int(x) = −J Σ_i s_i s_{i+1}`` (periodic, each bond once: ``L`` bonds; for ``L = 2`` both bonds
between the two sites count), ``s = 2x − 1``, field ``h`` in ``exp(−β(E_int − h Σ s))``,
``k_B = 1``. Size tokens are one integer, ``"16"``. Its exact reference is
:func:`lattherm.reference.exact.chain_exact_table`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from lattherm.lattices import Lattice, hypercubic_lattice
from lattherm.systems.base import parse_size, spin_sum
from lattherm.systems.ising import INFO as ISING

__all__ = ["ChainSystem", "INFO"]


class ChainSystem:
    """Batched energies of the periodic Ising chain of ``size`` sites (a token like ``"16"``)."""

    name = "chain"
    n_states = 2
    k_B = 1.0

    def __init__(self, size: str, J: float = 1.0) -> None:
        (L,) = parse_size(size)
        if L < 2:
            raise ValueError(f"a chain has at least 2 sites, got {size!r}")
        self.size, self.n_sites, self.J = str(L), L, float(J)
        self.lattice: Lattice = hypercubic_lattice((L,))
        self._bonds = self.lattice.bonds()  # (L, 2)
        self._neighbours = self.lattice.neighbours()  # (L, 2)

    def pair_couplings(self) -> tuple[Tensor, Tensor]:
        """``(bonds (B, 2), J (B,))``: ``E_int = −Σ_b J_b s_i s_j`` over the bonds (two-body models)."""
        return self._bonds.clone(), torch.full((len(self._bonds),), self.J, dtype=torch.float64)

    def params(self) -> dict:
        """The parameters that, with the size, define the system (checkpoints record them)."""
        return {"J": self.J}

    def _check(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_sites:
            raise ValueError(f"expected states of shape (B, {self.n_sites}) for the chain, got {tuple(x.shape)}")

    def energy(self, x: Tensor) -> Tensor:
        """``E_int = −J Σ_i s_i s_{i+1}`` per configuration, float64."""
        self._check(x)
        s = 2 * x.to(torch.int64) - 1
        b = self._bonds.to(x.device)
        return -self.J * (s[:, b[:, 0]] * s[:, b[:, 1]]).sum(-1).to(torch.float64)

    def spin_sum(self, x: Tensor) -> Tensor:
        self._check(x)
        return spin_sum(x)

    def delta_energy(self, x: Tensor, sites: Tensor) -> Tensor:
        """``E_int(x with site flipped) − E_int(x) = 2 J s_i (s_{i−1} + s_{i+1})`` (float64)."""
        self._check(x)
        xi = x.to(torch.int64)
        s_i = 2 * torch.gather(xi, 1, sites[:, None])[:, 0] - 1
        nb = self._neighbours.to(x.device).index_select(0, sites)  # (B, 2)
        s_nb = (2 * torch.gather(xi, 1, nb) - 1).sum(-1)
        return 2.0 * self.J * (s_i * s_nb).to(torch.float64)


#: as the 2D Ising model (units, labels, flip symmetry), on one-integer size tokens
INFO = replace(
    ISING,
    name="chain",
    title="1D Ising chain",
    factory="lattherm.systems.chain:ChainSystem",
    dims=1,
    max_sites=4096,
    labels={**ISING.labels, "name": "Ising chain"},
    gibbs_block=4,
    references=("exact", "mcmc"),
    check_size=None,
)
