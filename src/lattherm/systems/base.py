"""The System protocol shared by every energy model, and the reduced energy.

Conventions (DESIGN §3): site states ``x ∈ {0, 1}``, spins ``s = 2x − 1``. Every system has an
interaction energy ``E_int(x)`` and a field (Ising ``h``, CuAu chemical potential ``μ``) that
enters the Boltzmann weight as ``exp(−β (E_int − field · Σ_i s_i))`` with ``β = 1 / (k_B T)``.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pandas as pd
import torch
from torch import Tensor

from lattherm.lattices import Lattice

__all__ = [
    "System",
    "SystemInfo",
    "PairCouplings",
    "bond_table",
    "reduced_energy",
    "parse_size",
    "parse_instance",
    "parse_degree",
    "SIZE_PATTERN",
]

#: the most sites exact enumeration solves (2^N states)
MAX_ENUMERATE_SITES = 24

#: a size token: ``10x10`` (Ising), ``2x2x4`` (CuAu repeats of the primitive FCC cell), ``16`` (a chain),
#: ``n24-d3`` (a graph of 24 sites of degree 3); a disordered system's token ends in its instance,
#: the seed of its couplings (and graph): ``10x10-s1``, ``n24-d3-s1``
SIZE_PATTERN = r"([1-9]\d*(x[1-9]\d*)*|n[1-9]\d*-d[1-9]\d*)(-s\d+)?"


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


@dataclass(frozen=True)
class SystemInfo:
    """What the library and the workflow know about a system without building it: each system
    module defines one as ``INFO`` and :mod:`lattherm.systems` registers it by its ``name``. Code
    outside ``systems/`` and ``reference/`` asks these fields instead of testing a system's name.

    Attributes:
        name: the system's name in config keys, paths and tables.
        title: a human name (figure titles, reports).
        factory: ``"module:Class"``, called as ``Class(size=..., **params)`` (imported on demand).
        dims: the number of integers in a size token (``8x8``: 2; ``2x2x4``: 3).
        max_sites: the largest system the workflow accepts.
        units: the units of the table columns (recorded in every table's metadata).
        labels: figures: ``name`` (short), axis labels ``T`` and ``c`` (mathtext), the field's
            symbol ``field`` and unit ``field_unit``, ``energy`` (the unit of per-site energies in
            figures), ``energy_scale`` (per-site energies are multiplied by it in figures), and
            ``relative_error`` (free-energy errors shown relative, else absolute in ``energy``).
        flip_symmetric: the global flip ``x → 1 − x`` with ``field → −field`` is a symmetry
            (symmetrised sampling is offered; DESIGN §3).
        gibbs_block: sites re-drawn per Gibbs move of MAM training (the paper's K).
        observables: extra per-condition observables from the magnetisation ``m`` and its error
            (``{"x_au": ...}`` for CuAu), added to every estimate.
        compositions: the field is a chemical potential, and sample files over its grid resolve the
            canonical free energy per composition and the phase diagram (:mod:`lattherm.composition`).
        two_body: the energy is a sum of pair couplings (the system has ``pair_couplings()``), which
            two-body models (``twobo``) are built from.
        references: the reference methods that apply (``lattherm.reference`` computes them).
        enumeration_limit: the largest number of sites solved by exact enumeration.
        disordered: a size token names a disorder instance (``10x10-s1``: the couplings' seed).
        graph: size tokens name a random graph, ``n<sites>-d<degree>`` (``n24-d3-s1``), not a box.
        phases: the phases its order parameters name (``phase_of``' codes index them).
        phase_of: ``(system, x) -> (code, eta)``: for configurations ``x`` ``(..., N)``, the
            int8 code of each one's phase in ``phases`` and the largest order-parameter magnitude;
            ``None`` where the system names no phases (a ``ValueError`` for a cell without them).
        exact_for: ``size -> bool``, whether an exact reference (any method) exists at that size.
        check_size: ``size -> None``, extra rules on a size token (raise ``ValueError``).
    """

    name: str
    title: str
    factory: str
    dims: int
    max_sites: int
    units: Mapping[str, str]
    labels: Mapping[str, object]
    flip_symmetric: bool
    gibbs_block: int
    references: tuple[str, ...]
    enumeration_limit: int = MAX_ENUMERATE_SITES
    disordered: bool = False
    graph: bool = False
    observables: Callable[[float, float], dict] = field(default=lambda m, m_err: {})
    compositions: bool = False
    two_body: bool = False
    phases: tuple[str, ...] = ()
    phase_of: Callable | None = None
    exact_for: Callable[[str], bool] | None = None
    check_size: Callable[[str], None] | None = None

    def n_sites(self, size: str) -> int:
        return math.prod(self.parse(size))

    def parse(self, size: str) -> tuple[int, ...]:
        """The integers of a size token of this system; ``ValueError`` naming the expected form."""
        dims = parse_size(size)
        if (parse_instance(size) is not None) != self.disordered:
            want = "ends in its disorder instance, e.g. -s1" if self.disordered else "has no disorder instance -sK"
            raise ValueError(f"a {self.name} size token {want}, got {size!r}")
        if (parse_degree(size) is not None) != self.graph:
            want = "names a graph n<sites>-d<degree>, e.g. n24-d3-s1" if self.graph else "names a box, not a graph"
            raise ValueError(f"a {self.name} size token {want}, got {size!r}")
        if len(dims) != self.dims:
            form = "x".join(["n"] * self.dims)
            raise ValueError(f"a {self.name} size token is {form} ({self.dims} integers), got {size!r}")
        if self.check_size is not None:
            self.check_size(size)
        if math.prod(dims) > self.max_sites:
            raise ValueError(f"{self.name} {size} has {math.prod(dims)} sites; at most {self.max_sites}")
        return dims

    def has_exact(self, size: str) -> bool:
        """Whether an exact reference exists at ``size`` (default: enumeration up to its limit)."""
        if self.exact_for is not None:
            return self.exact_for(size)
        return self.n_sites(size) <= self.enumeration_limit

    def build(self, size: str, **params) -> System:
        """The system at ``size`` (``params``: e.g. Ising ``J``)."""
        self.parse(size)
        module, _, cls = self.factory.partition(":")
        return getattr(importlib.import_module(module), cls)(size=size, **params)


def bond_table(bonds: Tensor, J: Tensor, n_sites: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per site the partners and couplings of its bonds, ``(nb (N, d_max) long, jb (N, d_max)
    float64, degree (N,) long)``, in bond order; rows are padded with the site itself and a zero
    coupling (a bond listed twice, as on a period-2 torus, counts twice)."""
    bonds = torch.as_tensor(bonds).long()
    J = torch.as_tensor(J, dtype=torch.float64).expand(len(bonds))
    ends = torch.cat([bonds, bonds.flip(1)])  # (2B, 2): every bond from both of its sites
    Jb = torch.cat([J, J])
    deg = torch.bincount(ends[:, 0], minlength=n_sites)
    nb = torch.arange(n_sites)[:, None].repeat(1, max(1, int(deg.max()) if len(deg) else 0))
    jb = torch.zeros(nb.shape, dtype=torch.float64)
    order = torch.argsort(ends[:, 0], stable=True)
    slot = torch.arange(len(order)) - (torch.cumsum(deg, 0) - deg)[ends[order, 0]]
    nb[ends[order, 0], slot], jb[ends[order, 0], slot] = ends[order, 1], Jb[order]
    return nb, jb, deg


class PairCouplings:
    """Batched energies of a system given by a bond list with one coupling per bond (the spin
    glasses): ``E_int = −Σ_b J_b s_i s_j``, ``s = 2x − 1``, two states per site, ``k_B = 1``.
    Subclasses set ``name, size, n_sites`` and call :meth:`_set_couplings`."""

    n_states = 2
    k_B = 1.0

    def _set_couplings(self, bonds: Tensor, J: Tensor) -> None:
        """``bonds (B, 2)`` long, ``J (B,)`` float64; per site its bonds' partners and couplings
        (padded with the site itself and a zero coupling) for single-flip energy changes."""
        self._bonds, self.J = bonds, J
        self._nb, self._jb, _ = bond_table(bonds, J, self.n_sites)

    def pair_couplings(self) -> tuple[Tensor, Tensor]:
        """``(bonds (B, 2), J (B,))``: ``E_int = −Σ_b J_b s_i s_j`` over the bonds (two-body models)."""
        return self._bonds.clone(), self.J.clone()

    def couplings_table(self) -> pd.DataFrame:
        """``i, j, J`` of every bond, the instance's record."""
        return pd.DataFrame({"i": self._bonds[:, 0].numpy(), "j": self._bonds[:, 1].numpy(), "J": self.J.numpy()})

    def _check(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_sites:
            raise ValueError(f"expected states of shape (B, {self.n_sites}) for {self.name} {self.size}, "
                             f"got {tuple(x.shape)}")  # fmt: skip

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
        """``E_int(x with site i flipped) − E_int(x) = 2 s_i Σ_j J_ij s_j`` over the bonds of ``i``."""
        self._check(x)
        s = (2 * x.to(torch.int64) - 1).to(torch.float64)
        nb = self._nb.to(x.device).index_select(0, sites)
        jb = self._jb.to(x.device).index_select(0, sites)
        s_i = torch.gather(s, 1, sites[:, None])[:, 0]
        return 2.0 * s_i * (jb * torch.gather(s, 1, nb)).sum(-1)


def spin_sum(x: Tensor) -> Tensor:
    """``Σ_i (2 x_i − 1)`` over the last axis, as float64."""
    return (2 * x.to(torch.int64).sum(-1) - x.shape[-1]).to(torch.float64)


def reduced_energy(system: System, x: Tensor, T: Tensor | float, field: Tensor | float) -> Tensor:
    """``β (E_int(x) − field · Σ s)`` with ``β = 1/(k_B T)``; T and field broadcast over the batch."""
    T = torch.as_tensor(T, dtype=torch.float64, device=x.device)
    field = torch.as_tensor(field, dtype=torch.float64, device=x.device)
    return (system.energy(x) - field * system.spin_sum(x)) / (system.k_B * T)


def parse_size(size: str) -> tuple[int, ...]:
    """``"10x10"`` → ``(10, 10)``, a graph token ``"n24-d3"`` → ``(24,)`` (its sites; the degree:
    :func:`parse_degree`; a disorder instance ``-sK`` is left out: :func:`parse_instance`); raises
    ``ValueError`` naming the expected form."""
    if not isinstance(size, str) or not re.fullmatch(SIZE_PATTERN, size):
        raise ValueError(
            f"size token must look like '10x10', '2x2x4', '16', '10x10-s1' or 'n24-d3-s1' (positive integers "
            f"joined by 'x', or n<sites>-d<degree>, then a disorder instance -s<seed>), got {size!r}"
        )
    head = size.split("-")[0]
    return (int(head[1:]),) if head.startswith("n") else tuple(int(n) for n in head.split("x"))


def parse_degree(size: str) -> int | None:
    """The degree of a graph token (``"n24-d3-s1"`` → 3), None for a lattice token."""
    parse_size(size)
    m = re.fullmatch(r"n\d+-d(\d+)(-s\d+)?", size)
    return int(m.group(1)) if m else None


def parse_instance(size: str) -> int | None:
    """The disorder instance of a size token (``"10x10-s3"`` → 3), None without one."""
    parse_size(size)
    return int(size.rsplit("-s", 1)[1]) if "-s" in size else None
