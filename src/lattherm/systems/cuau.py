"""The CuAu FCC cluster expansion (CLEASE 1.2.0), exported once to batched torch energies.

Model (DESIGN §3): the published 11-ECI CuAu cluster expansion (``lattherm/data/cuau/``, see its
README for provenance) on ``n1 x n2 x n3`` repeats of the primitive FCC cell (a = 3.8 Å), built
exactly as CLEASE builds it::

    CEBulk(crystalstructure="fcc", a=3.8, size=[n1, n2, n3],
           concentration=Concentration(basis_elements=[["Au", "Cu"]]),
           max_cluster_dia=[6.0, 4.5, 4.5])          # default (polynomial) basis

Site states ``x ∈ {0, 1}``: ``x = 1`` is Au, ``x = 0`` Cu; the binary polynomial basis function
is the spin ``s = 2x − 1`` (Au = +1, Cu = −1; checked against CLEASE at construction). Sites are
in CLEASE's template order.

How CLEASE counts (``CEUpdater::calculate_cf_from_scratch``, binary single-sublattice case): for
a cluster ``c`` with ``n_c`` figures per reference site (``cluster.indices``, in the template's
index representation around the reference site), every template atom ``a`` is a reference and
every figure is translated by ``trans_matrix[a]``; the correlation function is the mean of the
spin products over these ``N · n_c`` translated figures::

    cf_c = (1 / (N n_c)) Σ_a Σ_{f ∈ figures(c)} Π_{j ∈ f} s_{T[a, j]},   cf_c0 = 1,  cf_c1 = mean(s)

    E = N Σ_c ECI_c · cf_c                      (eV, CLEASE's total energy)

Nothing is dropped: in small cells (2x2x4) periodic images make the same site appear twice in a
figure and the same site tuple appear several times, and each occurrence counts. We export the
translated figures once, sort the sites inside each figure and merge identical tuples into one
row with an integer multiplicity per cluster (an exact rewriting of the same sum), so that

    count_c(x) = Σ_rows mult[row, c] · Π_{j ∈ row} s_j          (an exact integer)
    E(x)       = Σ_c (N ECI_c / norm_c) · count_c(x),           norm_c = N n_c (1 for c0, N for c1)

The counts are sums of ±1 products with small integer weights, bounded by ``N n_c`` (6144 on
4x4x8), so they are exact in float32 (integers up to 2^24) as well as in float64; the float64
ECIs are applied afterwards, in float64. ``CuAuSystem(dtype=torch.float32)`` is therefore the
GPU path with the same result, bit for bit, as the float64 path. (Exact also under TF32 matmuls:
±1 and the multiplicities are representable with TF32's 10-bit mantissa, accumulation is fp32.)

Single-site flips: flipping site i multiplies every row that contains i an odd number of times by
−1 (an even number of times: unchanged), so ``ΔE = −2 (ECI_c1 s_i + Σ_{rows ∋ i, odd} w_row Π s)``
with ``w_row = Σ_c mult[row, c] N ECI_c / norm_c``, from a per-site table built once.
:meth:`CuAuSystem.flip_tables` exports the same sum per cluster, reduced to the other sites and
with integer multiplicities (:class:`FlipTables`), for the numba Monte Carlo kernels.

CLEASE construction takes under a second per cell (plus a few seconds to import CLEASE once);
the export is cached in memory per cell shape and the merged tables per (cell, ECIs)
(:func:`functools.lru_cache`), so further ``CuAuSystem`` objects cost about a millisecond.
CLEASE's database file lives in a temporary directory that is deleted at once.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from lattherm.lattices import Lattice
from lattherm.systems.base import SystemInfo, parse_size, spin_sum

__all__ = [
    "CuAuSystem",
    "FlipTables",
    "PureEnergies",
    "K_B_EV",
    "LATTICE_A",
    "MAX_CLUSTER_DIA",
    "FCC_NN_OFFSETS",
    "ORDERED_PHASES",
    "load_published_eci",
    "clease_settings",
    "ordered_state",
    "PHASES_BY_CODE",
    "sublattices",
    "order_parameters",
    "order_phase",
]

#: Boltzmann constant in eV/K, ``ase.units.kB`` (DESIGN §3)
K_B_EV = 8.617330337217213e-05
#: FCC lattice constant (Å) of the published cluster expansion
LATTICE_A = 3.8
#: CLEASE ``max_cluster_dia`` for pairs, triplets, quadruplets (Å)
MAX_CLUSTER_DIA = (6.0, 4.5, 4.5)
#: the 12 nearest-neighbour offsets of the FCC lattice in primitive-cell coordinates
FCC_NN_OFFSETS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, 0], [1, 0, -1], [0, 1, -1]]
    + [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [-1, 1, 0], [-1, 0, 1], [0, -1, 1]],
    dtype=np.int64,
)
#: ordered structures understood by :func:`ordered_state`
ORDERED_PHASES = ("Cu", "Au", "L1_2-Cu3Au", "L1_0-CuAu", "L1_2-CuAu3")

#: phases named by the order parameters (:func:`order_phase`), by code
PHASES_BY_CODE = ("disordered", "Cu3Au", "CuAu", "CuAu3")
#: least ``min_a |η_a|`` of an L1_2 state and least ``max_a |η_a|`` of an L1_0 one (perfect order:
#: 1/2 and 1; a disordered 4x4x8 cell fluctuates to ~0.1)
L12_MIN, L10_MIN = 0.25, 0.5

_ECI_RESOURCE = ("data", "cuau", "CI_params_ECI_CuAu_Final_Submission.json")
_FLOAT32_EXACT = 2**24


def load_published_eci() -> dict[str, float]:
    """The 11 published ECIs (eV per site) shipped in ``lattherm/data/cuau/``."""
    path = resources.files("lattherm").joinpath(*_ECI_RESOURCE)
    return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}


def clease_settings(shape: tuple[int, int, int], db_name: str):
    """CLEASE ``CEBulk`` settings of the CuAu CE on ``shape`` repeats of the primitive FCC cell.

    ``db_name`` is the database file CLEASE creates: pass a path inside a temporary directory.
    """
    from clease.settings import CEBulk, Concentration  # slow import: load on demand

    return CEBulk(
        crystalstructure="fcc",
        a=LATTICE_A,
        size=[int(n) for n in shape],
        concentration=Concentration(basis_elements=[["Au", "Cu"]]),
        max_cluster_dia=list(MAX_CLUSTER_DIA),
        db_name=db_name,
    )


@dataclass(frozen=True, eq=False)  # hashed by identity: the export itself is cached
class _CleaseExport:
    """What we take from CLEASE for one cell shape (numpy only, ECI-independent)."""

    shape: tuple[int, int, int]
    atoms: object  # ase.Atoms template (CLEASE's site order)
    prim_cell: np.ndarray  # (3, 3) primitive FCC vectors as rows (Å)
    cf_names: tuple[str, ...]  # CLEASE's correlation-function names, all of them
    cf_size: tuple[int, ...]  # cluster size of each cf name
    cf_norm: tuple[int, ...]  # CLEASE's normalisation: 1 (c0), N (c1), N * n_figures (k >= 2)
    figures: dict  # cf name -> (N * n_figures, k) int64 translated figures, duplicates kept


@functools.lru_cache(maxsize=8)
def _clease_export(shape: tuple[int, int, int]) -> _CleaseExport:
    with tempfile.TemporaryDirectory(prefix="lattherm-clease-") as tmp:
        settings = clease_settings(shape, os.path.join(tmp, "clease.db"))
        bf = settings.basis_functions
        if len(bf) != 1 or {k: float(v) for k, v in bf[0].items()} != {"Au": 1.0, "Cu": -1.0}:
            raise RuntimeError(
                f"expected CLEASE's binary polynomial basis {{Au: +1, Cu: -1}}, got {bf}"
            )
        if len(settings.index_by_sublattice) != 1 or len(settings.background_indices) != 0:
            raise RuntimeError("expected a single FCC sublattice without background atoms")
        atoms = settings.atoms.copy()
        n = len(atoms)
        trans = settings.trans_matrix.trans_matrix  # list of dicts: template index -> translated
        all_names = tuple(settings.all_cf_names)
        names, sizes, norms, figures = [], [], [], {}
        for cluster in settings.cluster_list:
            if cluster.group != 0:
                raise RuntimeError(
                    f"cluster {cluster.name} is on translation group {cluster.group}"
                )
            k = int(cluster.size)
            if k == 0:
                name, norm = "c0", 1
            elif k == 1:
                name, norm = "c1_0", n
            else:
                name = f"{cluster.name}_{'0' * k}"
                fig = np.asarray(cluster.indices, dtype=np.int64).reshape(-1, k)  # (n_c, k)
                rows = np.empty((n, fig.shape[0], k), dtype=np.int64)
                for a in range(n):
                    t = trans[a]
                    rows[a] = np.vectorize(t.__getitem__, otypes=[np.int64])(fig)
                figures[name] = rows.reshape(-1, k)
                norm = n * fig.shape[0]
            if name in names:
                raise RuntimeError(f"cluster {name} appears twice in CLEASE's cluster list")
            names.append(name)
            sizes.append(k)
            norms.append(norm)
        if set(names) != set(all_names):
            raise RuntimeError(f"cluster names {names} differ from CLEASE's cf names {all_names}")
        prim = np.asarray(settings.prim_cell.cell, dtype=np.float64)
    return _CleaseExport(
        shape=shape,
        atoms=atoms,
        prim_cell=prim,
        cf_names=tuple(names),
        cf_size=tuple(sizes),
        cf_norm=tuple(norms),
        figures=figures,
    )


@dataclass(frozen=True, eq=False)
class _Tables:
    """Energy and flip tables of one (cell, ECIs): read-only numpy arrays shared by instances."""

    coef: np.ndarray  # (n_cf,) energy = counts @ coef, coef_c = N ECI_c / norm_c
    rows: dict  # k -> (R_k, k) unique sorted figure rows (site indices)
    mult: dict  # k -> (R_k, n_cf) integer multiplicity of each row in each cluster
    flip_rows: np.ndarray  # (N, M, 4) rows with an odd number of site i, padded with index N
    flip_w: np.ndarray  # (N, M) energy weight of each of those rows (0 for padding)


@functools.lru_cache(maxsize=16)
def _cluster_tables(exp: _CleaseExport, eci: tuple[float, ...]) -> _Tables:
    """Merge duplicate figures (keeping their multiplicity) and build energy and flip tables."""
    n = len(exp.atoms)
    coef = n * np.asarray(eci, dtype=np.float64) / np.asarray(exp.cf_norm, dtype=np.float64)
    rows, mult = {}, {}
    flip_site, flip_row, flip_w = [], [], []
    for k in sorted({s for s in exp.cf_size if s >= 2}):
        names = [c for c, s in zip(exp.cf_names, exp.cf_size, strict=True) if s == k]
        raw = np.concatenate([np.sort(exp.figures[c], axis=1) for c in names])
        col = np.concatenate([np.full(len(exp.figures[c]), exp.cf_names.index(c)) for c in names])
        uniq, inv = np.unique(raw, axis=0, return_inverse=True)
        m = np.zeros((len(uniq), len(exp.cf_names)), dtype=np.int64)
        np.add.at(m, (inv.ravel(), col), 1)
        if m.max() > 2048:  # keeps the counts exact under TF32 matmuls
            raise RuntimeError(f"figure multiplicity {m.max()} too large for exact float32 counts")
        rows[k], mult[k] = uniq, m
        # (row, site) pairs where the site occurs an odd number of times in the row
        occ = (uniq[:, :, None] == uniq[:, None, :]).sum(-1)  # (R_k, k)
        r_idx, j_idx = np.nonzero(occ % 2 == 1)
        pairs = np.unique(np.stack([r_idx, uniq[r_idx, j_idx]], axis=1), axis=0)  # (P, 2)
        w = m @ coef
        keep = w[pairs[:, 0]] != 0.0
        pairs = pairs[keep]
        padded = np.concatenate([uniq, np.full((len(uniq), 4 - k), n, dtype=np.int64)], axis=1)
        flip_site.append(pairs[:, 1])
        flip_row.append(padded[pairs[:, 0]])
        flip_w.append(w[pairs[:, 0]])
    site = np.concatenate(flip_site) if flip_site else np.zeros(0, dtype=np.int64)
    order = np.argsort(site, kind="stable")
    site = site[order]
    per_site = np.bincount(site, minlength=n)
    slot = np.arange(len(site)) - np.repeat(np.cumsum(per_site) - per_site, per_site)
    m_max = max(1, int(per_site.max(initial=0)))
    f_rows = np.full((n, m_max, 4), n, dtype=np.int64)
    f_w = np.zeros((n, m_max), dtype=np.float64)
    if len(site):
        f_rows[site, slot] = np.concatenate(flip_row)[order]
        f_w[site, slot] = np.concatenate(flip_w)[order]
    for arr in (coef, f_rows, f_w, *rows.values(), *mult.values()):
        arr.setflags(write=False)
    return _Tables(coef=coef, rows=rows, mult=mult, flip_rows=f_rows, flip_w=f_w)


class FlipTables(NamedTuple):
    """Per-site single-flip tables of the CE for compiled kernels (numpy, read-only).

    Only the clusters that change the energy are tracked: ``Q`` clusters of size >= 2 with a
    nonzero ECI, ``q = 0..Q−1``, cf column ``cf_index[q]``. For site ``i`` and cluster ``q`` the
    terms ``t = ptr[i, q] .. ptr[i, q + 1] − 1`` are the figure rows that contain ``i`` an odd
    number of times, reduced to the *other* sites that occur an odd number of times in the row
    (``others[t, :width[q]]``, padded with index ``N``, a constant spin +1), identical reduced
    rows merged with their integer multiplicities summed into ``mult[t]``.

    Why the reduction is exact (self-images included): a row ``r`` contributes ``Π_{j ∈ r} s_j``
    to the cluster count; a site occurring ``k`` times contributes ``s^k`` (``s`` for odd ``k``,
    1 for even). Flipping ``s_i`` multiplies the product by ``(−1)^{k_i}``, so only rows with odd
    ``k_i`` change, by ``−2 Π``, and ``Π = s_i Π_{j ≠ i, k_j odd} s_j``. With
    ``A_q = Σ_t mult[t] Π_m s[others[t, m]]`` (an exact integer):

        ΔC_q = −2 s_i A_q                    (exact change of the integer count of cluster q)
        ΔE   = −2 s_i (coef_c1 + Σ_q coef[q] A_q)
        E    = coef_c0 + coef_c1 Σ_i s_i + Σ_q coef[q] C_q

    ``coef = N ECI / norm`` as in :meth:`CuAuSystem.energy` (``C_q`` = its cluster counts).
    """

    cf_index: np.ndarray  # (Q,) int64 column of each tracked cluster in cf_names
    coef: np.ndarray  # (Q,) float64 energy per unit count (eV)
    width: np.ndarray  # (Q,) int64 cluster size − 1 (columns of others to read)
    ptr: np.ndarray  # (N, Q + 1) int64 term offsets; ptr[i, Q] == ptr[i + 1, 0]
    others: np.ndarray  # (n_terms, 3) int32 other sites, padded with N
    mult: np.ndarray  # (n_terms,) int64 merged multiplicities (> 0)
    coef_c0: float  # constant energy (eV): N ECI_c0
    coef_c1: float  # energy per unit Σs (eV): ECI_c1


@functools.lru_cache(maxsize=16)
def _flip_tables(exp: _CleaseExport, eci: tuple[float, ...]) -> FlipTables:
    """Build :class:`FlipTables` from the merged rows of :func:`_cluster_tables`."""
    n = len(exp.atoms)
    tab = _cluster_tables(exp, eci)
    tracked = [
        c for c, k in enumerate(exp.cf_size) if k >= 2 and tab.coef[c] != 0.0
    ]  # cf columns, in cf_names order
    q_of = {c: q for q, c in enumerate(tracked)}
    keys = []  # (site, q, o0, o1, o2, mult)
    for k, rows in tab.rows.items():
        m = tab.mult[k]
        for r in range(len(rows)):
            clusters = [c for c in np.flatnonzero(m[r]) if c in q_of]
            if not clusters:
                continue
            sites, occ = np.unique(rows[r], return_counts=True)
            odd = sites[occ % 2 == 1]
            for i in odd:
                oth = [int(j) for j in odd if j != i] + [n] * 3
                for c in clusters:
                    keys.append((int(i), q_of[c], *oth[:3], int(m[r, c])))
    Q = len(tracked)
    if keys:
        a = np.array(keys, dtype=np.int64)
        uniq, inv = np.unique(a[:, :5], axis=0, return_inverse=True)  # sorted by (site, q, ...)
        mult = np.zeros(len(uniq), dtype=np.int64)
        np.add.at(mult, inv.ravel(), a[:, 5])
    else:
        uniq, mult = np.zeros((0, 5), dtype=np.int64), np.zeros(0, dtype=np.int64)
    counts = np.zeros((n, Q), dtype=np.int64)
    np.add.at(counts, (uniq[:, 0], uniq[:, 1]), 1)
    ptr = np.zeros((n, Q + 1), dtype=np.int64)
    ptr[:, 1:] = np.cumsum(counts, axis=1)
    ptr += (np.cumsum(counts.sum(1)) - counts.sum(1))[:, None]
    out = FlipTables(
        cf_index=np.asarray(tracked, dtype=np.int64),
        coef=np.ascontiguousarray(tab.coef[tracked]),
        width=np.asarray([exp.cf_size[c] - 1 for c in tracked], dtype=np.int64),
        ptr=ptr,
        others=np.ascontiguousarray(uniq[:, 2:5], dtype=np.int32),
        mult=mult,
        coef_c0=float(tab.coef[exp.cf_names.index("c0")]),
        coef_c1=float(tab.coef[exp.cf_names.index("c1_0")]),
    )
    for arr in out[:6]:
        arr.setflags(write=False)
    return out


class PureEnergies(NamedTuple):
    """Energies per site (eV) of the pure ends of the CE."""

    cu: float
    au: float


class CuAuSystem:
    """Batched CuAu cluster-expansion energies on an ``n1 x n2 x n3`` primitive-FCC supercell.

    Args:
        size: size token ``"n1xn2xn3"`` (repeats of the primitive FCC cell), e.g. ``"2x2x4"``.
        eci: ECIs in eV per site keyed by CLEASE's cf names; the published 11 when ``None``.
            Names must be CLEASE cf names of this cluster set; missing names have ECI 0.
        dtype: accumulation dtype of the integer cluster counts: ``torch.float64`` or
            ``torch.float32`` (exact too; the GPU path). Energies are always float64.

    Attributes: ``name = "cuau"``, ``size``, ``n_sites``, ``n_states = 2``, ``k_B`` (eV/K),
    ``lattice`` (cell coordinates in CLEASE's template order, FCC nearest-neighbour offsets),
    ``atoms`` (CLEASE's ``ase.Atoms`` template), ``periods``, ``eci``, ``cf_names``.
    """

    name = "cuau"
    n_states = 2
    k_B = K_B_EV

    def __init__(
        self,
        size: str = "2x2x4",
        eci: dict[str, float] | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        dims = parse_size(size)
        if len(dims) != 3:
            raise ValueError(
                f"CuAu size must be 'n1xn2xn3' (repeats of the primitive FCC cell), got {size!r}"
            )
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        self.size = size
        self.dtype = dtype
        self._export = exp = _clease_export(tuple(dims))
        self.n_sites = len(exp.atoms)
        self.atoms = exp.atoms.copy()
        self.cf_names = exp.cf_names
        eci = load_published_eci() if eci is None else {str(k): float(v) for k, v in eci.items()}
        unknown = sorted(set(eci) - set(exp.cf_names))
        if unknown:
            raise ValueError(
                f"ECI names {unknown} are not CLEASE cf names of this cluster set {exp.cf_names}"
            )
        self.eci = {name: eci.get(name, 0.0) for name in exp.cf_names}
        self.lattice = _lattice(exp)
        tables = _cluster_tables(exp, tuple(self.eci[c] for c in exp.cf_names))
        self._coef, self._rows, self._mult = tables.coef, tables.rows, tables.mult
        self._flip_rows, self._flip_w = tables.flip_rows, tables.flip_w
        self._i_c0 = exp.cf_names.index("c0")
        self._i_c1 = exp.cf_names.index("c1_0")
        max_count = max(exp.cf_norm)
        if dtype == torch.float32 and max_count > _FLOAT32_EXACT:
            raise ValueError(
                f"cluster counts up to {max_count} exceed 2^24: float32 would not be exact"
            )
        self._on_device: dict = {}

    def params(self) -> dict:
        """The parameters that, with the size, define the system (checkpoints record them)."""
        return {"eci": {str(k): float(v) for k, v in self.eci.items()}}

    # ------------------------------------------------------------------ construction
    def _tables(self, device: torch.device) -> dict:
        key = str(device)
        if key not in self._on_device:
            t = {  # torch.tensor copies (the numpy tables are shared and read-only)
                "coef": torch.tensor(self._coef, device=device),
                "rows": {k: torch.tensor(r, device=device) for k, r in self._rows.items()},
                "mult_t": {
                    k: torch.tensor(m.T, dtype=self.dtype, device=device)
                    for k, m in self._mult.items()
                },
                "flip_rows": torch.tensor(self._flip_rows, device=device),
                "flip_w": torch.tensor(self._flip_w, device=device),
            }
            self._on_device[key] = t
        return self._on_device[key]

    def flip_tables(self) -> FlipTables:
        """Per-site single-flip tables (numpy, read-only, cached per cell and ECIs) for compiled
        Monte Carlo kernels; see :class:`FlipTables` for the exact ΔE and count updates."""
        return _flip_tables(self._export, tuple(self.eci[c] for c in self.cf_names))

    # ------------------------------------------------------------------ geometry
    @property
    def periods(self) -> tuple[int, ...]:
        """Periods of the box along the three primitive directions (in cells)."""
        return self.lattice.periods

    @property
    def prim_cell(self) -> np.ndarray:
        """``(3, 3)`` primitive FCC vectors as rows (Å)."""
        return self._export.prim_cell.copy()

    # ------------------------------------------------------------------ energies
    def _check(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_sites:
            raise ValueError(
                f"expected states of shape (B, {self.n_sites}) for CuAu {self.size}, "
                f"got {tuple(x.shape)}"
            )

    def cluster_counts(self, x: Tensor, *, chunk: int | None = None) -> Tensor:
        """``(B, n_cf)`` exact integer counts ``norm_c · cf_c`` (float64), in ``cf_names`` order.

        Accumulated in ``self.dtype`` (float32 is exact: every count is an integer < 2^24), then
        returned as float64. Spins are laid out site-major, ``(N, b)``, so that gathering the
        sites of a figure row copies contiguous memory; ``chunk`` configurations at a time
        (default 1024 on CPU, where the working set then stays in cache; 65536 on GPUs).
        """
        self._check(x)
        B = x.shape[0]
        t = self._tables(x.device)
        if chunk is None:
            chunk = 1024 if x.device.type == "cpu" else 65536
        sT = (2 * x.to(self.dtype) - 1).T.contiguous()  # (N, B) spins ±1
        counts = torch.empty(len(self.cf_names), B, dtype=self.dtype, device=x.device)  # (n_cf, B)
        for b0 in range(0, B, chunk):
            sb = sT[:, b0 : b0 + chunk]  # (N, b)
            acc = counts[:, b0 : b0 + chunk]
            acc.zero_()
            for k, rows in t["rows"].items():
                prod = sb.index_select(0, rows[:, 0])  # (R_k, b) of ±1
                for j in range(1, k):
                    prod.mul_(sb.index_select(0, rows[:, j]))
                acc.add_(t["mult_t"][k] @ prod)  # (n_cf, b): exact integers
        out = counts.T.to(torch.float64)
        out[:, self._i_c0] = 1.0
        out[:, self._i_c1] = sT.sum(0).to(torch.float64)
        return out

    def correlation_functions(self, x: Tensor) -> Tensor:
        """``(B, n_cf)`` CLEASE correlation functions (float64), in ``cf_names`` order."""
        norm = torch.tensor(self._export.cf_norm, dtype=torch.float64, device=x.device)
        return self.cluster_counts(x) / norm

    @torch.no_grad()
    def energy(self, x: Tensor) -> Tensor:
        """``(B, N)`` states → ``(B,)`` float64 CE total energies ``E_int`` in eV (CLEASE's)."""
        counts = self.cluster_counts(x)
        return counts @ self._tables(x.device)["coef"]

    def spin_sum(self, x: Tensor) -> Tensor:
        """``Σ_i s_i = N_Au − N_Cu`` (float64)."""
        self._check(x)
        return spin_sum(x)

    @torch.no_grad()
    def delta_energy(self, x: Tensor, sites: Tensor) -> Tensor:
        """``E_int(x with site sites[b] flipped) − E_int(x)`` per configuration (float64, eV)."""
        self._check(x)
        B, n = x.shape
        t = self._tables(x.device)
        sites = sites.to(device=x.device, dtype=torch.long).reshape(B)
        s = torch.ones(B, n + 1, dtype=torch.float64, device=x.device)  # index n: constant +1
        s[:, :n] = 2 * x.to(torch.float64) - 1
        rows = t["flip_rows"][sites]  # (B, M, 4)
        M = rows.shape[1]
        prod = torch.gather(s, 1, rows.reshape(B, M * 4)).reshape(B, M, 4).prod(-1)  # (B, M)
        s_i = torch.gather(s, 1, sites[:, None])[:, 0]
        coef1 = t["coef"][self._i_c1]
        return -2.0 * (coef1 * s_i + (prod * t["flip_w"][sites]).sum(-1))

    # ------------------------------------------------------------------ formation reference
    def pure_energies(self) -> PureEnergies:
        """Energies per site (eV) of all-Cu and all-Au, the formation-energy references."""
        x = torch.stack(
            [
                torch.zeros(self.n_sites, dtype=torch.uint8),
                torch.ones(self.n_sites, dtype=torch.uint8),
            ]
        )
        e = self.energy(x) / self.n_sites
        return PureEnergies(cu=float(e[0]), au=float(e[1]))

    def formation_energy(self, x: Tensor) -> Tensor:
        """Formation energy per site (eV): ``E/N − x_Au E_Au − (1 − x_Au) E_Cu`` (DESIGN §3)."""
        ref = self.pure_energies()
        x_au = x.to(torch.float64).mean(-1)
        return self.energy(x) / self.n_sites - x_au * ref.au - (1.0 - x_au) * ref.cu

    def __repr__(self) -> str:
        return f"CuAuSystem(size={self.size!r}, n_sites={self.n_sites}, dtype={self.dtype})"


def _lattice(exp: _CleaseExport) -> Lattice:
    """Lattice in CLEASE's template order: cell coordinates from positions via the inverse basis."""
    prim = exp.prim_cell
    shape = exp.shape
    cell = np.asarray(exp.atoms.cell, dtype=np.float64)
    if not np.allclose(cell, np.diag(shape) @ prim, atol=1e-8):
        raise RuntimeError(
            f"CLEASE's supercell {cell.tolist()} is not diag{shape} @ primitive cell"
        )
    frac = exp.atoms.positions @ np.linalg.inv(prim)
    coords = np.rint(frac).astype(np.int64)
    if np.abs(frac - coords).max() > 1e-6:
        raise RuntimeError(
            "CLEASE's template positions are not integer combinations of the primitive cell"
        )
    coords = np.mod(coords, np.array(shape))
    return Lattice(shape=shape, basis=prim, offsets=FCC_NN_OFFSETS, coords_=coords)


def ordered_state(system: CuAuSystem, phase: str, axis: int = 2) -> Tensor:
    """``(N,)`` uint8 state of an ordered FCC structure on the system's cell.

    Phases (``ORDERED_PHASES``): ``"Cu"``, ``"Au"`` (pure A1); ``"L1_2-Cu3Au"`` (Au on the corners
    of the conventional cube, x_Au = 1/4); ``"L1_2-CuAu3"`` (its complement, 3/4);
    ``"L1_0-CuAu"`` (alternating Au/Cu (001) planes normal to Cartesian ``axis``, 1/2).
    Raises ``ValueError`` if the cell does not admit the ordering (a supercell vector that is
    not a lattice vector of the ordered structure).
    """
    if phase not in ORDERED_PHASES:
        raise ValueError(f"unknown phase {phase!r}; expected one of {ORDERED_PHASES}")
    n = system.n_sites
    if phase in ("Cu", "Au"):
        return torch.full((n,), int(phase == "Au"), dtype=torch.uint8)
    a = LATTICE_A
    cell = np.asarray(system.atoms.cell, dtype=np.float64) / a  # supercell vectors in units of a
    q = np.rint(2.0 * system.atoms.positions / a).astype(np.int64)  # conventional half-cube grid
    if phase == "L1_0-CuAu":
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
        need = cell[:, axis]
        au = q[:, axis] % 2 == 0
    else:
        need = cell
        corners = np.all(q % 2 == 0, axis=1)
        au = corners if phase == "L1_2-Cu3Au" else ~corners
    if not np.allclose(need, np.rint(need), atol=1e-8):
        raise ValueError(
            f"the {system.size} cell does not admit {phase} "
            f"(supercell vectors / a = {cell.tolist()})"
        )
    return torch.from_numpy(au.astype(np.uint8))


def sublattices(system: CuAuSystem) -> np.ndarray:
    """``(N,)`` int64: the simple-cubic sublattice (0 … 3) of every site, the conventional cube's
    corner ``(0, 0, 0)`` and face centres ``(½, ½, 0)``, ``(½, 0, ½)``, ``(0, ½, ½)`` (in units of a).
    Raises ``ValueError`` if the cell is not made of whole conventional cubes."""
    cell = np.asarray(system.atoms.cell, dtype=np.float64) / LATTICE_A
    if not np.allclose(cell, np.rint(cell), atol=1e-8):
        raise ValueError(f"the {system.size} cell has no whole conventional cubes (supercell vectors / a = "
                         f"{cell.tolist()}): no sublattice order parameters")  # fmt: skip
    q = np.rint(2.0 * system.atoms.positions / LATTICE_A).astype(np.int64) % 2
    return np.select([(q == [0, 0, 0]).all(1), (q == [1, 1, 0]).all(1), (q == [1, 0, 1]).all(1)], [0, 1, 2], 3)


def order_parameters(system: CuAuSystem, x) -> np.ndarray:
    """``(..., 3)`` float64 order parameters ``η_a`` (a = x, y, z) of configurations ``x``
    (``(..., N)`` 0/1): with ``c_j`` the Au fraction of sublattice ``j`` (:func:`sublattices`),
    ``η_a = (c_0 + c_j(a) − the other two) / 2``, ``j(a)`` the face centre in the plane normal to
    ``a``. L1_0 CuAu (Au planes normal to a): ``|η_a| = 1``, the others 0; L1_2 Cu3Au: all three
    ``±½`` with a positive product, CuAu3 a negative one; a disordered cell: all near 0."""
    sub = sublattices(system)
    x = np.asarray(x)
    c = np.stack([x[..., sub == j].mean(axis=-1, dtype=np.float64) for j in range(4)], axis=-1)
    return np.stack([c[..., 0] + c[..., j] - c.sum(axis=-1) / 2 for j in (3, 2, 1)], axis=-1)


def order_phase(eta: np.ndarray) -> np.ndarray:
    """``(...)`` int8 code in :data:`PHASES_BY_CODE` of order parameters ``eta`` ``(..., 3)``: L1_2
    (Cu3Au or CuAu3 by the sign of ``η_x η_y η_z``) where every ``|η_a| ≥`` :data:`L12_MIN`, else
    L1_0 CuAu where the largest ``≥`` :data:`L10_MIN`, else disordered."""
    eta = np.asarray(eta, dtype=np.float64)
    a = np.abs(eta)
    l12 = a.min(axis=-1) >= L12_MIN
    return np.select([l12 & (eta.prod(axis=-1) > 0), l12, a.max(axis=-1) >= L10_MIN], [1, 3, 2], 0).astype(np.int8)


def _phase_of(system: CuAuSystem, x) -> tuple[np.ndarray, np.ndarray]:
    eta = order_parameters(system, x)
    return order_phase(eta), np.abs(eta).max(axis=-1)


INFO = SystemInfo(
    name="cuau",
    title="CuAu alloy (cluster expansion)",
    factory="lattherm.systems.cuau:CuAuSystem",
    dims=3,
    max_sites=4096,
    units={
        "T": "K",
        "field": "eV (Au chemical potential μ, weight exp(−β(E − μ Σs)))",
        "energy": "eV (cluster-expansion E_int of a configuration)",
        "per-site f, u, u_form, phi_form, f_x, f_var, f_nis, f_est, f_ref, delta_f": "eV per atom",
        "c": "k_B per atom",
        "m": "per atom (Au +1, Cu −1)",
        "x_au": "Au fraction",
    },
    labels={"name": "CuAu", "T": r"$T$ [K]", "c": r"$c$ [$k_\mathrm{B}$/atom]", "field": "μ", "field_unit": "eV",
            "energy": "meV/atom", "energy_scale": 1e3, "relative_error": False},
    flip_symmetric=False,
    gibbs_block=4,
    references=("mcmc", "exact", "exact_composition", "metadynamics"),
    observables=lambda m, m_err: {"x_au": (m + 1) / 2, "x_au_err": m_err / 2},
    compositions=True,
    phases=PHASES_BY_CODE,
    phase_of=_phase_of,
)
