"""Periodic Bravais lattices: sites, coordinates, periods, neighbour lists, windows.

A lattice here is a finite periodic box of a Bravais lattice in ``d`` dimensions: ``shape =
(n_1, ..., n_d)`` repeats of a primitive cell with one site, wrapped into a torus. Sites carry
integer cell coordinates ``r ∈ Z^d`` with ``0 <= r_k < n_k``; the default site order is row-major
(C order: the last coordinate runs fastest), so on an ``L x L`` square lattice site ``i`` sits at
row ``i // L``, column ``i % L``. A lattice may carry another site order (CuAu uses CLEASE's
template order); ``coords[i]`` is always the cell coordinate of site ``i`` in that order.

Neighbours are given by offset vectors in cell coordinates (the square lattice: ``±e_k``); for
each site and offset, ``neighbours[i, j]`` is the index of site ``r_i + offset_j`` wrapped into the
box. Windows (for out-painting) are rectangular boxes of cell coordinates, also wrapped.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Lattice", "square_lattice", "hypercubic_lattice"]


@dataclass(frozen=True, eq=False)
class Lattice:
    """A periodic box of a Bravais lattice with one site per primitive cell.

    Args:
        shape: repeats ``(n_1, ..., n_d)`` of the primitive cell; each >= 1.
        basis: ``(d, d_cart)`` primitive vectors as rows (Cartesian positions are
            ``coords @ basis``); the identity (simple hypercubic) by default.
        offsets: ``(z, d)`` integer neighbour offsets in cell coordinates; for the square
            lattice ``±e_k``. Pairs ``{o, -o}`` should both be present for a symmetric list.
        coords: ``(N, d)`` cell coordinates of the sites in their storage order; row-major
            order when omitted.
    """

    shape: tuple[int, ...]
    basis: np.ndarray | None = None
    offsets: np.ndarray | None = None
    coords_: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if not shape or any(n < 1 for n in shape):
            raise ValueError(f"lattice shape must be a non-empty tuple of integers >= 1, got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        d = len(shape)
        basis = np.eye(d) if self.basis is None else np.asarray(self.basis, dtype=np.float64)
        if basis.ndim != 2 or basis.shape[0] != d:
            raise ValueError(f"basis must have {d} rows (one primitive vector per dimension), got shape {basis.shape}")
        object.__setattr__(self, "basis", basis)
        offsets = (
            np.concatenate([np.eye(d, dtype=np.int64), -np.eye(d, dtype=np.int64)])
            if self.offsets is None
            else np.asarray(self.offsets, dtype=np.int64).reshape(-1, d)
        )
        object.__setattr__(self, "offsets", offsets)
        if self.coords_ is None:
            coords = np.array(list(itertools.product(*(range(n) for n in shape))), dtype=np.int64)
        else:
            coords = np.asarray(self.coords_, dtype=np.int64)
            if coords.shape != (int(np.prod(shape)), d):
                raise ValueError(f"coords must have shape ({int(np.prod(shape))}, {d}), got {coords.shape}")
            if np.any(coords < 0) or np.any(coords >= np.array(shape)):
                raise ValueError("coords must lie inside the box 0 <= r_k < n_k")
        object.__setattr__(self, "coords_", coords)
        # index of each cell coordinate (row-major flat key -> storage index)
        keys = self._flat_key(coords)
        if len(np.unique(keys)) != len(keys):
            raise ValueError("coords must list every cell of the box exactly once")
        index_of = np.empty(len(keys), dtype=np.int64)
        index_of[keys] = np.arange(len(keys))
        object.__setattr__(self, "_index_of", index_of)

    # ------------------------------------------------------------------ geometry
    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def n_sites(self) -> int:
        return int(np.prod(self.shape))

    @property
    def periods(self) -> tuple[int, ...]:
        """Period of the box along each lattice direction (in cells)."""
        return self.shape

    @property
    def coords(self) -> np.ndarray:
        """``(N, d)`` integer cell coordinates of the sites, in storage order."""
        return self.coords_

    @property
    def positions(self) -> np.ndarray:
        """``(N, d_cart)`` Cartesian positions ``coords @ basis``."""
        return self.coords_ @ self.basis

    def _flat_key(self, coords: np.ndarray) -> np.ndarray:
        return np.ravel_multi_index(tuple(np.asarray(coords).T), self.shape)

    def index(self, coords: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Storage indices of the sites at (wrapped) cell coordinates ``(..., d)``."""
        c = np.mod(np.asarray(coords, dtype=np.int64), np.array(self.shape))
        return self._index_of[np.ravel_multi_index(tuple(np.moveaxis(c, -1, 0)), self.shape)]

    def neighbours(self, offsets: np.ndarray | None = None) -> torch.Tensor:
        """``(N, z)`` long tensor: ``[i, j]`` is the site at ``coords[i] + offsets[j]`` (wrapped)."""
        off = self.offsets if offsets is None else np.asarray(offsets, dtype=np.int64).reshape(-1, self.dim)
        nb = self.index(self.coords_[:, None, :] + off[None, :, :])
        return torch.from_numpy(nb)

    def bonds(self, offsets: np.ndarray | None = None) -> torch.Tensor:
        """``(n_bonds, 2)`` pairs ``(i, i + o)`` for each site and each given offset.

        With the default (positive) half of the square-lattice offsets, every nearest-neighbour
        bond of the torus appears once: ``d * N`` bonds. For ``n_k = 2`` both bonds between the
        two sites along direction k are kept, as the periodic Hamiltonian counts them.
        """
        off = self.offsets[: self.dim] if offsets is None else np.asarray(offsets, dtype=np.int64)
        nb = self.neighbours(off)  # (N, z)
        i = torch.arange(self.n_sites).repeat_interleave(nb.shape[1])
        return torch.stack([i, nb.reshape(-1)], dim=1)

    def window(self, origin: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
        """Storage indices of the rectangular window ``origin + [0, shape)`` (periodic wrap).

        The result has the window's shape, its entries in row-major order over the window, so
        ``window(...).reshape(-1)`` lists the window's sites row by row.
        """
        origin = np.asarray(origin, dtype=np.int64)
        wshape = tuple(int(s) for s in shape)
        if origin.shape != (self.dim,) or len(wshape) != self.dim:
            raise ValueError(f"origin and shape must have {self.dim} entries, got {origin.tolist()} and {list(wshape)}")
        if any(s < 1 or s > n for s, n in zip(wshape, self.shape, strict=True)):
            raise ValueError(f"window shape {wshape} must be between 1 and the box {self.shape} in each direction")
        grid = np.stack(np.meshgrid(*(np.arange(s) for s in wshape), indexing="ij"), axis=-1)
        return torch.from_numpy(self.index(grid + origin))


def hypercubic_lattice(shape: Sequence[int]) -> Lattice:
    """Simple hypercubic torus with nearest-neighbour offsets ``±e_k``."""
    return Lattice(shape=tuple(shape))


def square_lattice(L: int) -> Lattice:
    """The ``L x L`` square torus, sites in row-major order."""
    if int(L) != L or L < 2:
        raise ValueError(f"square lattice side L must be an integer >= 2, got {L!r}")
    return hypercubic_lattice((int(L), int(L)))
