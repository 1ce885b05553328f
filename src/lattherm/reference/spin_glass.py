"""Exact thermodynamics of 2D Edwards–Anderson instances by a row transfer matrix with
site-dependent couplings (tori up to 12x12; DESIGN §3 conventions).

Rows ``r = 0..L−1`` of the torus have ``2^L`` states ``a`` (bit ``c`` of ``a`` is the site
``(r, c)``, ``x = 1`` up). With ``K = β`` and ``b = β h``,

    Z = Tr Π_r [ D_r V_r ],   D_r(a) = exp(K Σ_c Jh[r,c] s_c s_{c+1} + b Σ_c s_c),
                              V_r(a', a) = Π_c exp(K Jv[r,c] s'_c s_c)

(``Jh[r, c]``: the bond from ``(r, c)`` right, ``Jv[r, c]`` down to row ``r + 1``, wrapped). ``V_r``
is a Kronecker product of ``L`` 2x2 factors, applied one column at a time, so a row costs
``L · 4^L`` operations on the ``2^L x 2^L`` matrix of partial sums (16.7 M entries at 12x12),
rescaled after every row (float64). ``u = −∂ ln Z/∂K / N`` (the interaction energy alone),
``c = K² ∂² ln Z/∂K² / N`` and ``m = ∂ ln Z/∂b / N`` are exact forward-mode derivatives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.func import jvp

__all__ = ["ea_transfer_matrix", "ea_exact_table", "MAX_EA_L", "bond_matrices"]

#: the largest side solved by the row transfer matrix (4^12 entries per row step)
MAX_EA_L = 12


def bond_matrices(system) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Jh, Jv)``, ``(L, L)`` float64: the coupling of the bond from ``(r, c)`` right and down."""
    L = system.L
    Jh = torch.zeros(L, L, dtype=torch.float64)
    Jv = torch.zeros(L, L, dtype=torch.float64)
    for (i, j), J in zip(system.couplings_table()[["i", "j"]].to_numpy(), system.J.tolist(), strict=True):
        (ri, ci), (rj, cj) = divmod(int(i), L), divmod(int(j), L)
        if cj == ci and rj == (ri + 1) % L:
            Jv[ri, ci] = J
        elif rj == ri and cj == (ci + 1) % L:
            Jh[ri, ci] = J
        else:
            raise ValueError(f"bond ({i}, {j}) is not a nearest-neighbour bond of the {L}x{L} torus")
    return Jh, Jv


def _log_Z(K: torch.Tensor, b: torch.Tensor, Jh: torch.Tensor, Jv: torch.Tensor) -> torch.Tensor:
    L = Jh.shape[0]
    n = 1 << L
    bits = (torch.arange(n)[:, None] >> torch.arange(L)[None, :]) & 1
    s = (2 * bits - 1).to(torch.float64)  # (2^L, L): s[a, c]
    bond_h = s * torch.roll(s, -1, dims=1)  # (2^L, L): s_c s_{c+1}
    M = torch.eye(n, dtype=torch.float64)
    log_scale = torch.zeros((), dtype=torch.float64)
    for r in range(L):
        M = M * torch.exp(K * (bond_h * Jh[r]).sum(1) + b * s.sum(1))[:, None]  # D_r on the current row
        for c in range(L):  # V_r: one 2x2 factor per column, on bit c of the row state
            e, o = torch.exp(K * Jv[r, c]), torch.exp(-K * Jv[r, c])  # same / opposite spins
            Mc = M.reshape(n >> (c + 1), 2, (1 << c) * n)  # bit c of the row index is axis 1
            down, up = Mc[:, 0], Mc[:, 1]
            M = torch.stack([e * down + o * up, o * down + e * up], dim=1).reshape(n, n)
        top = M.abs().max()
        M = M / top
        log_scale = log_scale + torch.log(top)
    return torch.log(torch.diagonal(M).sum()) + log_scale


def ea_transfer_matrix(system, T, field) -> dict[str, np.ndarray]:
    """``f, u, c, m, log_Z`` per site of an :class:`~lattherm.systems.ea.EASystem` at every
    ``(T, field)`` of ``broadcast(T, field)`` (module doc)."""
    if system.L > MAX_EA_L:
        raise ValueError(f"the row transfer matrix solves L <= {MAX_EA_L}, got {system.size}")
    T_b, h_b = np.broadcast_arrays(np.asarray(T, dtype=np.float64), np.asarray(field, dtype=np.float64))
    if np.any(~(T_b > 0)) or not np.isfinite(h_b).all():
        raise ValueError("temperatures must be > 0 and fields finite")
    Jh, Jv = bond_matrices(system)
    N, one = system.n_sites, torch.ones((), dtype=torch.float64)
    out = {k: np.empty(T_b.size) for k in ("f", "u", "c", "m", "log_Z")}
    for k, (t, h) in enumerate(zip(T_b.ravel(), h_b.ravel(), strict=True)):
        K, b = torch.tensor(1.0 / t, dtype=torch.float64), torch.tensor(h / t, dtype=torch.float64)

        def of_K(K_, b=b):
            return _log_Z(K_, b, Jh, Jv)

        def of_b(b_, K=K):
            return _log_Z(K, b_, Jh, Jv)

        dK, dKK = jvp(lambda K_: jvp(of_K, (K_,), (one,))[1], (K,), (one,))  # first and second in K
        log_Z, db = jvp(of_b, (b,), (one,))
        out["log_Z"][k] = float(log_Z)
        out["f"][k] = -t * float(log_Z) / N
        out["u"][k] = -float(dK) / N
        out["c"][k] = float(K) ** 2 * float(dKK) / N
        out["m"][k] = float(db) / N
    return {k: v.reshape(T_b.shape) for k, v in out.items()}


def ea_exact_table(size: str, T, field, *, couplings: str = "gaussian") -> pd.DataFrame:
    """The exact table of an EA instance (columns ``system, size, T, field, f, u, c, m,
    method="transfer_matrix"``) on the grid ``T x field``, T-major."""
    from lattherm.systems.ea import EASystem

    system = EASystem(size, couplings=couplings)
    TT, HH = np.meshgrid(np.unique(np.ravel(T)), np.unique(np.ravel(field)), indexing="ij")
    th = ea_transfer_matrix(system, TT.ravel(), HH.ravel())
    return pd.DataFrame({"system": "ea", "size": size, "T": TT.ravel(), "field": HH.ravel(),
                         **{k: th[k] for k in ("f", "u", "c", "m")}, "method": "transfer_matrix"})  # fmt: skip
