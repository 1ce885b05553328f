"""Exact thermodynamics of the ``L x L`` Ising torus by the row transfer matrix, in momentum blocks.

A row is ``L`` spins, a state ``σ ∈ {0 .. 2^L − 1}`` (bit ``i`` is site ``i`` of the row, 1 = up).
With ``K = βJ`` and ``b = βh`` the torus partition function is ``Z = Tr 𝒯^L`` with the symmetric

    𝒯(σ, σ') = exp( K·G(σ, σ') + b·(M(σ) + M(σ'))/2 ),
    G(σ, σ') = (H(σ) + H(σ'))/2 + V(σ, σ'),

``H(σ) = Σ_i s_i s_{i+1}`` the bonds inside a row (periodic), ``V(σ, σ') = Σ_i s_i s'_i`` the
bonds between consecutive rows and ``M(σ) = Σ_i s_i``. Every bond of the torus is counted once
(for ``L = 2`` both bonds of a periodic pair, as :class:`lattherm.systems.IsingSystem` counts them).

Derivatives are exact (no finite differences). With ``B`` the bond sum of a configuration
(``E_int = −J B``), ``∂_K ln Z = ⟨B⟩`` and ``∂²_K ln Z = Var B`` at fixed ``b``:

    ∂_K Z  = L Tr(𝒯^{L−1} 𝒯'),                         𝒯'  = 𝒯 ∘ G,
    ∂²_K Z = L Tr(𝒯^{L−1} 𝒯'') + L Σ_{k=0}^{L−2} Tr(𝒯^k 𝒯' 𝒯^{L−2−k} 𝒯'),   𝒯'' = 𝒯 ∘ G²,

evaluated in the eigenbasis ``𝒯 = U diag(μ) U†``: with ``A = U† 𝒯' U`` the double sum is
``Σ_ij |A_ij|² Σ_k μ_i^k μ_j^{L−2−k}`` (summed term by term, so degenerate eigenvalues are safe),
and ``∂_b Z = L Tr(𝒯^L M)``. ``G`` is centred on its value at the largest entry of ``𝒯`` (so the
low-temperature variance is not a difference of two large numbers), ``𝒯`` is divided by its
largest entry and by its Perron eigenvalue, and ``ln Z`` is assembled in log space: no overflow or
underflow at any ``T > 0``.

Speed: ``𝒯``, ``𝒯'`` and ``𝒯''`` commute with the cyclic shift ``P`` of a row, so they are block
diagonal in the Bloch basis ``|r, k⟩ = p^{−1/2} Σ_{j<p} e^{−2πi kj/L} P^j |r⟩`` (``r`` an orbit
representative of period ``p``, momentum ``k`` with ``kp ≡ 0 mod L``). The block entries are

    ⟨r, k| O |r', k⟩ = √(p p') / L · Σ_{m=0}^{L−1} e^{−2πi km/L} O(r, P^m r'),

one FFT over ``m`` for all momenta at once. Blocks ``k`` and ``L − k`` are complex conjugates
(``𝒯`` is real), so only ``k = 0 .. ⌊L/2⌋`` are diagonalised; blocks ``0`` and ``L/2`` are real.
Block size ≈ ``2^L / L``: ``L = 12`` costs a fraction of a second per ``(T, h)`` point.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ising_transfer_matrix", "MAX_TRANSFER_L"]

#: largest side length the transfer matrix accepts (2^14 row states)
MAX_TRANSFER_L = 14
#: largest side length of the dense (unblocked) reference implementation
MAX_DENSE_L = 10


def _popcount(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    return np.bitwise_count(x).astype(np.int64)


def _rotate(states: np.ndarray, m: int, L: int) -> np.ndarray:
    """``P^m``: rotate the ``L``-bit row states left by ``m`` (site ``i`` moves to ``i + m``)."""
    m %= L
    if m == 0:
        return states.copy()
    return ((states << m) | (states >> (L - m))) & ((1 << L) - 1)


@dataclass(frozen=True)
class _RowStructure:
    """Orbits of row states under cyclic shifts and the integer pieces of ``G`` and ``M``."""

    L: int
    reps: np.ndarray  # (n,) orbit representatives (smallest member)
    period: np.ndarray  # (n,) orbit length p
    G2: np.ndarray  # (n, n, L) int16: 2·G(r, P^m r')
    M_r: np.ndarray  # (n,) M of the representatives
    valid: tuple[np.ndarray, ...]  # per k = 0..L//2: reps with k p ≡ 0 (mod L)


@functools.lru_cache(maxsize=4)
def _row_structure(L: int) -> _RowStructure:
    states = np.arange(1 << L, dtype=np.int64)
    shifts = np.stack([_rotate(states, m, L) for m in range(L)])  # (L, 2^L)
    rep_of = shifts.min(axis=0)
    reps = np.flatnonzero(rep_of == states)
    back = shifts[1:, reps] == reps[None, :]
    period = np.where(back.any(axis=0), back.argmax(axis=0) + 1, L)
    cols = shifts[:, reps].T  # (n, L): P^m r'
    H = L - 2 * _popcount(states ^ _rotate(states, 1, L))  # in-row bond sum of every state
    M = 2 * _popcount(states) - L
    V = L - 2 * _popcount(reps[:, None, None] ^ cols[None, :, :])  # (n, n, L)
    G2 = (H[reps][:, None, None] + H[cols][None, :, :] + 2 * V).astype(np.int16)
    valid = tuple(np.flatnonzero((k * period) % L == 0) for k in range(L // 2 + 1))
    return _RowStructure(
        L=L, reps=reps, period=period, G2=G2, M_r=M[reps].astype(np.float64), valid=valid
    )


def _block_moments(L: int, mats, weight: float, mu_max: float | None, M_diag: np.ndarray):
    """Eigen-decompose one block and return its contributions (scaled by ``mu_max``).

    Linear algebra in torch (float64/complex128): its LAPACK is markedly faster than numpy's for
    complex Hermitian eigenproblems here.
    """
    Tk, T1k, T2k = (torch.from_numpy(np.ascontiguousarray(X)) for X in mats)
    mu, U = torch.linalg.eigh(Tk)
    if (
        mu_max is None
    ):  # the Perron root lies in the k = 0 block (its eigenvector is shift-invariant)
        mu_max = float(mu.abs().max())
    lam = (mu / mu_max).to(torch.float64)
    T1k, T2k = T1k / mu_max, T2k / mu_max
    lamL1 = lam ** (L - 1)
    Uh = U.conj().T
    A = Uh @ (T1k @ U)  # 𝒯' in the eigenbasis
    diag2 = (U.conj() * (T2k @ U)).sum(0).real  # diag of U† 𝒯'' U
    powers = lam[:, None] ** torch.arange(L - 1, dtype=torch.float64)[None, :]  # λ_i^k, k < L-1
    S = powers @ powers.flip(1).T  # S_ij = Σ_k λ_i^k λ_j^{L-2-k}
    absA2 = A.abs() ** 2 if A.is_complex() else A**2
    occ = U.abs() ** 2 if U.is_complex() else U**2  # |U_ai|²
    M = torch.from_numpy(M_diag)
    z0 = weight * float((lamL1 * lam).sum())
    z1 = weight * L * float((lamL1 * torch.diagonal(A).real).sum())
    z2 = weight * L * (float((lamL1 * diag2).sum()) + float((absA2 * S).sum()))
    zb = weight * L * float((lamL1 * lam * (M @ occ)).sum())
    return mu_max, np.array([z0, z1, z2, zb])


def _blocks(struct: _RowStructure, K: float, b: float):
    """``(g, c0, [(k, weight, (𝒯_k, 𝒯'_k, 𝒯''_k), M_k) ...])`` for ``k = 0 .. L//2``."""
    L = struct.L
    M = struct.M_r
    G = 0.5 * struct.G2.astype(np.float64)
    logT = K * G + (0.5 * b) * (M[:, None, None] + M[None, :, None])
    i_max = int(np.argmax(logT))
    c0, g = float(logT.flat[i_max]), float(G.flat[i_max])
    T0 = np.exp(logT - c0)
    del logT
    G -= g
    T1 = T0 * G
    T2 = T1 * G
    del G
    norm = np.sqrt(struct.period[:, None] * struct.period[None, :]) / L
    fts = []
    for X in (T0, T1, T2):
        fts.append(np.fft.rfft(X, axis=2))
    del T0, T1, T2
    out = []
    for k, sel in enumerate(struct.valid):
        if sel.size == 0:
            continue
        nk = norm[np.ix_(sel, sel)]
        mats = []
        for F in fts:
            B = F[np.ix_(sel, sel, [k])][:, :, 0] * nk
            B = 0.5 * (B + B.conj().T)
            if k == 0 or 2 * k == L:
                B = B.real.copy()
            mats.append(B)
        weight = 1.0 if (k == 0 or 2 * k == L) else 2.0
        out.append((k, weight, tuple(mats), M[sel]))
    return g, c0, out


def _point_from_blocks(L: int, K: float, b: float, struct: _RowStructure):
    g, c0, blocks = _blocks(struct, K, b)
    mu_max = None
    acc = np.zeros(4)
    for _k, weight, mats, M_k in blocks:
        mu_max, z = _block_moments(L, mats, weight, mu_max, M_k)
        acc += z
    return _assemble(L, g, c0, mu_max, acc)


def _assemble(L: int, g: float, c0: float, mu_max: float, acc: np.ndarray):
    z0, z1, z2, zb = acc
    log_Z = L * (c0 + np.log(mu_max)) + np.log(z0)
    mean_dB = z1 / z0  # ⟨B⟩ − L g
    var_B = z2 / z0 - mean_dB**2
    return log_Z, L * g + mean_dB, var_B, zb / z0


def _point_dense(L: int, K: float, b: float):
    """Same quantities from the dense ``2^L x 2^L`` matrices (reference for the blocks)."""
    states = np.arange(1 << L, dtype=np.int64)
    H = (L - 2 * _popcount(states ^ _rotate(states, 1, L))).astype(np.float64)
    M = (2 * _popcount(states) - L).astype(np.float64)
    V = (L - 2 * _popcount(states[:, None] ^ states[None, :])).astype(np.float64)
    G = 0.5 * (H[:, None] + H[None, :]) + V
    logT = K * G + 0.5 * b * (M[:, None] + M[None, :])
    i_max = int(np.argmax(logT))
    c0, g = float(logT.flat[i_max]), float(G.flat[i_max])
    T0 = np.exp(logT - c0)
    G -= g
    T1 = T0 * G
    mu_max, z = _block_moments(L, (T0, T1, T1 * G), 1.0, None, M)
    return _assemble(L, g, c0, mu_max, z)


def _check_L(L, limit: int) -> int:
    if isinstance(L, bool) or int(L) != L or L < 2:
        raise ValueError(f"lattice side L must be an integer >= 2, got {L!r}")
    if L > limit:
        raise ValueError(f"the transfer matrix handles L <= {limit} (2^L row states), got L={L}")
    return int(L)


def _check_T_field(T, h) -> tuple[np.ndarray, np.ndarray]:
    T = np.asarray(T, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    bad = ~(np.isfinite(T) & (T > 0))
    if np.any(bad):
        raise ValueError(f"temperatures must be finite and > 0, got {T[bad].ravel()[:5].tolist()}")
    if np.any(~np.isfinite(h)):
        raise ValueError(f"fields must be finite, got {h[~np.isfinite(h)].ravel()[:5].tolist()}")
    return np.broadcast_arrays(T, h)


def ising_transfer_matrix(
    L: int, T, h, J: float = 1.0, *, method: str = "momentum"
) -> dict[str, np.ndarray]:
    """Exact ``f, u, c, m`` (and ``log_Z``) of the ``L x L`` Ising torus at ``broadcast(T, h)``.

    Conventions (DESIGN §3): ``f = −T ln Z / N`` with the field in ``Z``; ``u = ⟨E_int⟩/N`` and
    ``c = β² Var(E_int)/N`` of the interaction energy alone (also at ``h ≠ 0``); ``m = ⟨Σs⟩/N``.

    Args:
        L: side length, ``2 <= L <= 14``.
        T: temperatures (> 0), broadcast against ``h``.
        h: fields.
        J: coupling (any finite real; ``J > 0`` ferromagnetic).
        method: ``"momentum"`` (translation blocks, the default) or ``"dense"`` (the full
            ``2^L`` matrix, ``L <= 10``; a reference for tests).
    """
    if method not in ("momentum", "dense"):
        raise ValueError(f"method must be 'momentum' or 'dense', got {method!r}")
    L = _check_L(L, MAX_DENSE_L if method == "dense" else MAX_TRANSFER_L)
    J = float(J)
    if not np.isfinite(J):
        raise ValueError(f"coupling J must be finite, got {J}")
    T_b, h_b = _check_T_field(T, h)
    N = L * L
    struct = _row_structure(L) if method == "momentum" else None
    out = {k: np.empty(T_b.shape) for k in ("log_Z", "f", "u", "c", "m")}
    for idx in np.ndindex(T_b.shape):
        t, field = float(T_b[idx]), float(h_b[idx])
        K, b = J / t, field / t
        if method == "momentum":
            log_Z, mean_B, var_B, mean_M = _point_from_blocks(L, K, b, struct)
        else:
            log_Z, mean_B, var_B, mean_M = _point_dense(L, K, b)
        out["log_Z"][idx] = log_Z
        out["f"][idx] = -t * log_Z / N
        out["u"][idx] = -J * mean_B / N
        out["c"][idx] = K * K * var_B / N
        out["m"][idx] = mean_M / N
    return out
