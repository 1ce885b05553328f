"""The 2D Edwards–Anderson spin glass on an ``L x L`` torus, one disorder instance per size token.

``E_int(x) = −Σ_<ij> J_ij s_i s_j`` over the ``2N`` nearest-neighbour bonds of the torus (each
once, in the order of :meth:`lattherm.lattices.Lattice.bonds`: for every site ``i = r·L + c`` its
bond down to ``(r + 1, c)``, then right to ``(r, c + 1)``, wrapped; for ``L = 2`` both bonds between
a pair count), ``s = 2x − 1``, field ``h`` in
``exp(−β(E_int − h Σ s))``, ``k_B = 1``. The couplings are drawn from the instance seed of the size
token (``"10x10-s1"``: seed 1): Gaussian ``N(0, 1)`` (``couplings="gaussian"``) or ``±1`` with equal
probability (``"pm"``), from ``numpy.random.default_rng([seed, L, 2])`` so that each instance and
size has its own stream. :meth:`EASystem.couplings_table` lists them (``i, j, J``, row-major sites
``i = r·L + c``), the table the workflow stores with the results.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lattherm.lattices import Lattice, square_lattice
from lattherm.systems.base import parse_instance, parse_size, spin_sum
from lattherm.systems.ising import INFO as ISING

__all__ = ["EASystem", "INFO", "COUPLINGS"]

#: the coupling distributions
COUPLINGS = ("gaussian", "pm")


def draw_couplings(L: int, seed: int, kind: str) -> np.ndarray:
    """The ``2 L²`` couplings of an instance, in bond order (module doc)."""
    if kind not in COUPLINGS:
        raise ValueError(f"couplings must be one of {list(COUPLINGS)}, got {kind!r}")
    rng = np.random.default_rng([int(seed), int(L), 2])
    n = 2 * L * L
    return rng.standard_normal(n) if kind == "gaussian" else rng.choice([-1.0, 1.0], size=n)


class EASystem:
    """Batched energies of one Edwards–Anderson instance (size token ``"LxL-sK"``)."""

    name = "ea"
    n_states = 2
    k_B = 1.0

    def __init__(self, size: str, couplings: str = "gaussian") -> None:
        L0, L1 = parse_size(size)
        seed = parse_instance(size)
        if L0 != L1 or L0 < 2 or seed is None:
            raise ValueError(f"an EA size token is 'LxL-sK' (L >= 2, K the couplings' seed), got {size!r}")
        self.size, self.L, self.seed, self.couplings = size, L0, seed, couplings
        self.n_sites = L0 * L0
        self.lattice: Lattice = square_lattice(L0)
        self.J = torch.from_numpy(draw_couplings(L0, seed, couplings))  # (2N,) float64, bond order
        self._bonds = self.lattice.bonds()  # (2N, 2)
        # per site, its 4 bonds: the neighbour and the coupling (for single-flip energy changes)
        nb = torch.full((self.n_sites, 4), -1, dtype=torch.int64)
        jb = torch.zeros(self.n_sites, 4, dtype=torch.float64)
        fill = torch.zeros(self.n_sites, dtype=torch.int64)
        for b, (i, j) in enumerate(self._bonds.tolist()):
            for a, c in ((i, j), (j, i)):
                nb[a, fill[a]], jb[a, fill[a]] = c, self.J[b]
                fill[a] += 1
        self._nb, self._jb = nb, jb

    def pair_couplings(self) -> tuple[Tensor, Tensor]:
        """``(bonds (B, 2), J (B,))``: ``E_int = −Σ_b J_b s_i s_j`` over the bonds (two-body models)."""
        return self._bonds.clone(), self.J.clone()

    def params(self) -> dict:
        """The parameters that, with the size token (and its seed), define the instance."""
        return {"couplings": self.couplings}

    def couplings_table(self) -> pd.DataFrame:
        """``i, j, J`` of every bond (row-major sites), the instance's record."""
        return pd.DataFrame({"i": self._bonds[:, 0].numpy(), "j": self._bonds[:, 1].numpy(), "J": self.J.numpy()})

    def _check(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_sites:
            raise ValueError(f"expected states of shape (B, {self.n_sites}) for EA {self.size}, got {tuple(x.shape)}")

    def energy(self, x: Tensor) -> Tensor:
        """``E_int = −Σ_b J_b s_i s_j`` per configuration, float64."""
        self._check(x)
        s = (2 * x.to(torch.int64) - 1).to(torch.float64)
        b = self._bonds.to(x.device)
        return -(s[:, b[:, 0]] * s[:, b[:, 1]] * self.J.to(x.device)).sum(-1)

    def spin_sum(self, x: Tensor) -> Tensor:
        self._check(x)
        return spin_sum(x)

    def delta_energy(self, x: Tensor, sites: Tensor) -> Tensor:
        """``E_int(x with site i flipped) − E_int(x) = 2 s_i Σ_b J_b s_j`` over the bonds of ``i``."""
        self._check(x)
        s = (2 * x.to(torch.int64) - 1).to(torch.float64)
        nb = self._nb.to(x.device).index_select(0, sites)  # (B, 4)
        jb = self._jb.to(x.device).index_select(0, sites)  # (B, 4)
        s_i = torch.gather(s, 1, sites[:, None])[:, 0]
        return 2.0 * s_i * (jb * torch.gather(s, 1, nb)).sum(-1)


def _square(size: str) -> None:
    L0, L1 = parse_size(size)
    if L0 != L1 or L0 < 2:
        raise ValueError(f"an EA size is a square torus 'LxL-sK' with L >= 2, got {size!r}")


#: units and labels of the Ising model; exact by the row transfer matrix up to 12x12 (and
#: enumeration); Metropolis with replica exchange beyond
INFO = replace(
    ISING,
    name="ea",
    title="2D Edwards–Anderson spin glass",
    factory="lattherm.systems.ea:EASystem",
    labels={**ISING.labels, "name": "EA"},
    references=("couplings", "exact", "mcmc"),
    exact_for=lambda size: parse_size(size)[0] <= 12,
    check_size=_square,
    disordered=True,
    gibbs_block=10,
)
