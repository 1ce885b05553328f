"""Spin glasses on random regular graphs (RRG): ``N`` sites, each with ``d`` neighbours, one
disorder instance (graph and couplings) per size token.

``E_int(x) = −Σ_<ij> J_ij s_i s_j`` over the ``N d / 2`` edges of the graph (each once, listed
with ``i < j`` in ascending order), ``s = 2x − 1``, field ``h`` in ``exp(−β(E_int − h Σ s))``,
``k_B = 1``. A size token ``"n24-d3-s1"`` names ``N = 24`` sites of degree ``d = 3`` drawn from
seed 1. The graph is a uniform ``d``-regular simple graph by the pairing (configuration) model
with rejection: the ``N d`` half-edges are paired by a random permutation and the draw is repeated
until no pair is a loop or a repeated edge (about ``exp((d² − 1)/4)`` draws: 7 for ``d = 3``).
Then the couplings, Gaussian ``N(0, 1)`` (``couplings="gaussian"``) or ``±1`` with equal
probability (``"pm"``), in edge order. Everything comes from ``numpy.random.default_rng([seed, N,
d, 3])``, so an instance is the same on every machine. :meth:`RRGSystem.couplings_table` lists the
edges (``i, j, J``), the table the workflow stores with the results.

The sites have no geometry: the system's :attr:`~RRGSystem.lattice` is the ring of ``N`` storage
positions (what the models index by), and the graph lives in :meth:`RRGSystem.pair_couplings`.
Exact references: enumeration up to 24 sites; past it, thermodynamic integration over β with
replica-exchange Metropolis (:func:`lattherm.reference.integration.beta_integration`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from lattherm.lattices import Lattice, hypercubic_lattice
from lattherm.systems.base import MAX_ENUMERATE_SITES, PairCouplings, parse_degree, parse_instance, parse_size
from lattherm.systems.ea import COUPLINGS
from lattherm.systems.ising import INFO as ISING

__all__ = ["RRGSystem", "INFO", "random_regular_graph"]

#: pairing-model draws before giving up (the acceptance is exp(−(d² − 1)/4) for small d)
_MAX_DRAWS = 100_000


def random_regular_graph(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """The ``(n d / 2, 2)`` edges ``i < j`` (ascending) of a uniform random ``d``-regular simple
    graph on ``n`` sites, by the pairing model with rejection (module doc)."""
    if not (1 <= d < n) or (n * d) % 2:
        raise ValueError(f"a d-regular graph on n sites needs 1 <= d < n and n·d even, got n={n}, d={d}")
    stubs = np.repeat(np.arange(n), d)
    for _ in range(_MAX_DRAWS):
        pairs = rng.permutation(stubs).reshape(-1, 2)
        pairs.sort(axis=1)
        if np.any(pairs[:, 0] == pairs[:, 1]):
            continue
        key = pairs[:, 0] * n + pairs[:, 1]
        if len(np.unique(key)) == len(key):
            return pairs[np.argsort(key)]
    raise RuntimeError(f"no simple {d}-regular graph on {n} sites in {_MAX_DRAWS} pairings; use a smaller degree")


class RRGSystem(PairCouplings):
    """Batched energies of one spin glass on a random regular graph (size token ``"n24-d3-s1"``)."""

    name = "rrg"

    def __init__(self, size: str, couplings: str = "gaussian") -> None:
        (n,) = parse_size(size)
        d, seed = parse_degree(size), parse_instance(size)
        if d is None or seed is None:
            raise ValueError(f"an RRG size token is 'n<sites>-d<degree>-s<seed>', e.g. 'n24-d3-s1', got {size!r}")
        if couplings not in COUPLINGS:
            raise ValueError(f"couplings must be one of {list(COUPLINGS)}, got {couplings!r}")
        self.size, self.n_sites, self.degree, self.seed, self.couplings = size, n, d, seed, couplings
        rng = np.random.default_rng([int(seed), int(n), int(d), 3])
        edges = random_regular_graph(n, d, rng)
        J = rng.standard_normal(len(edges)) if couplings == "gaussian" else rng.choice([-1.0, 1.0], size=len(edges))
        self.lattice: Lattice = hypercubic_lattice((n,))  # storage positions only (module doc)
        self._set_couplings(torch.from_numpy(edges).long(), torch.from_numpy(J))

    def params(self) -> dict:
        """The parameters that, with the size token (its degree and seed), define the instance."""
        return {"couplings": self.couplings}


def _graph(size: str) -> None:
    (n,), d = parse_size(size), parse_degree(size)
    if not (1 <= d < n) or (n * d) % 2:
        raise ValueError(f"an RRG needs 1 <= degree < sites and sites·degree even, got {size!r}")


#: units and labels of the Ising model; exact by enumeration up to 24 sites, thermodynamic
#: integration over β (replica-exchange Metropolis) beyond
INFO = replace(
    ISING,
    name="rrg",
    title="spin glass on a random regular graph",
    factory="lattherm.systems.rrg:RRGSystem",
    dims=1,
    max_sites=4096,
    labels={**ISING.labels, "name": "RRG"},
    references=("couplings", "exact", "beta_integration"),
    exact_for=lambda size: parse_size(size)[0] <= MAX_ENUMERATE_SITES,
    check_size=_graph,
    disordered=True,
    graph=True,
    gibbs_block=4,
)
