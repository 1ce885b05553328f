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
import torch

from lattherm.lattices import Lattice, square_lattice
from lattherm.systems.base import PairCouplings, parse_instance, parse_size
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


class EASystem(PairCouplings):
    """Batched energies of one Edwards–Anderson instance (size token ``"LxL-sK"``)."""

    name = "ea"

    def __init__(self, size: str, couplings: str = "gaussian") -> None:
        L0, L1 = parse_size(size)
        seed = parse_instance(size)
        if L0 != L1 or L0 < 2 or seed is None:
            raise ValueError(f"an EA size token is 'LxL-sK' (L >= 2, K the couplings' seed), got {size!r}")
        self.size, self.L, self.seed, self.couplings = size, L0, seed, couplings
        self.n_sites = L0 * L0
        self.lattice: Lattice = square_lattice(L0)
        self._set_couplings(self.lattice.bonds(), torch.from_numpy(draw_couplings(L0, seed, couplings)))

    def params(self) -> dict:
        """The parameters that, with the size token (and its seed), define the instance."""
        return {"couplings": self.couplings}


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
