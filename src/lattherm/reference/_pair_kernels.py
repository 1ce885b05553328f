"""numba Metropolis for systems of pair couplings (``update="pair"``: spin glasses, the chain).

``E_int = −Σ_b J_b s_i s_j`` over a list of bonds with real couplings (any graph), field ``h`` in
``exp(−β(E_int − h Σs))``. The move: pick a site ``i``, flip it, accept with ``min(1, exp(−Δ))``,

    Δ = β (ΔE_int − h ΔΣs) = 2 β s_i (Σ_j J_ij s_j + h),

the Metropolis rule (as the generic update of :mod:`lattherm.reference.mcmc`). A sweep is ``N``
attempts. Layout and randomness follow the CuAu kernel (:mod:`lattherm.reference._ce_kernels`):
states ``x[c, b, i, w]`` uint8, the ``W`` chains of a block in the innermost loop (SIMD), all
chains of a block try the *same* random site at each attempt (one site stream per ``(condition,
block)``, seeded from ``seed ^ SITE_SALT``), acceptance draws per chain (xoroshiro128+ streams of
``(seed, condition, chain)``; one draw per attempt whatever Δ, so a chain's trajectory does not
depend on the other chains). Site ``⌊(r >> 32) · N / 2^32⌋``; accept iff ``Δ <= 0`` or ``(r >> 11)
2^−53 < exp(−Δ)``. ``prange`` runs over ``(ladder, block)`` tasks: results are bit-reproducible for
a seed and independent of the number of threads.

Energies are float sums over the bonds, recomputed from the states where they are needed (every
exchange round and every measured sweep), so nothing drifts however long the run.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from lattherm.reference._mcmc_kernels import _exchange_chain, _next, _swap_rows

__all__ = ["pair_run", "SITE_SALT"]

#: xor-ed into the seed for the site streams (one per condition and block)
SITE_SALT = np.uint64(0x6A09E667F3BCC909)
_S11 = np.uint64(11)
_S32 = np.uint64(32)
_TWO_M53 = 2.0**-53


@njit(inline="always")
def _energies(xb, bonds, Jb, W, e_row, m_row):
    """``e_row[w] = E_int`` and ``m_row[w] = Σs`` of every chain of the block ``xb`` (``(N, W)``)."""
    N = xb.shape[0]
    for w in range(W):
        e_row[w] = 0.0
        m_row[w] = -np.float64(N)
    for i in range(N):
        xi = xb[i]
        for w in range(W):
            m_row[w] += 2.0 * xi[w]
    for q in range(bonds.shape[0]):
        xi = xb[bonds[q, 0]]
        xj = xb[bonds[q, 1]]
        J = Jb[q]
        for w in range(W):
            e_row[w] += J * (2.0 * (xi[w] ^ xj[w]) - 1.0)  # −J s_i s_j


@njit(parallel=True, cache=True)
def pair_run(
    x, nb, jb, deg, bonds, Jb, field, beta, st0, st1, site0, site1,
    ladders, lad_len, ex0, ex1, exchange_every,
    s0, s1, burn, thin, e_out, m_out, states_out, psum, avg_out, ex_stats,
):  # fmt: skip
    """Sweeps ``s0 .. s1 − 1`` of every chain, with replica exchange, measurements and samples, in
    place (call again with the next range to go on).

    ``nb, jb`` ``(N, d_max)``: per site its neighbours and couplings (the first ``deg[i]`` valid);
    ``bonds, Jb`` the bond list; ``field, beta`` ``(n_cond,)``; ``st0, st1`` ``(n_cond, n_blocks,
    W)`` the acceptance streams, ``site0, site1`` ``(n_cond, n_blocks, 1)`` the site streams; ladders
    and exchange as in :func:`lattherm.reference._mcmc_kernels.checkerboard_run` (``ex_stats[c, b,
    w, 0/1]``: attempts / accepts of the pair whose lower member is ``c``). After burn-in every sweep
    adds ``E_int``, its square, ``Σs`` and ``|Σs|`` to ``psum[c, b, w, :]``; sample ``t`` (when
    ``done − burn = (t + 1) thin``) writes ``e_out, m_out[c, b, w, t]``, the states (unless
    ``states_out`` has size 0) and ``avg_out[c, b, w, t, :]``, the means of ``psum`` since the
    previous sample.
    """
    n_cond, n_blocks, N, W = x.shape
    keep = states_out.size > 0
    n_lad = ladders.shape[0]
    inv_thin = 1.0 / np.float64(thin)
    for task in prange(n_lad * n_blocks):
        lad = task // n_blocks
        b = task - lad * n_blocks
        n_l = lad_len[lad]
        loc = np.zeros(W)
        e_k = np.zeros((n_l, W))
        m_k = np.zeros((n_l, W))
        xa0 = ex0[lad, b]
        xa1 = ex1[lad, b]
        for s in range(s0, s1):
            for k in range(n_l):
                c = ladders[lad, k]
                xb = x[c, b]
                s0a = st0[c, b]
                s1a = st1[c, b]
                q0 = site0[c, b]
                q1 = site1[c, b]
                bt = beta[c]
                h = field[c]
                for _ in range(N):
                    i = np.int64(((_next(q0, q1, 0) >> _S32) * np.uint64(N)) >> _S32)
                    for w in range(W):
                        loc[w] = h
                    for q in range(deg[i]):
                        xj = xb[nb[i, q]]
                        J = jb[i, q]
                        for w in range(W):
                            loc[w] += J * (2.0 * xj[w] - 1.0)
                    xi = xb[i]
                    for w in range(W):
                        d = 2.0 * bt * (2.0 * xi[w] - 1.0) * loc[w]
                        r = _next(s0a, s1a, w)
                        if d <= 0.0 or np.float64(r >> _S11) * _TWO_M53 < math.exp(-d):
                            xi[w] ^= np.uint8(1)
            done = s + 1
            exch = exchange_every > 0 and n_l > 1 and done % exchange_every == 0
            meas = done > burn
            if exch or meas:
                for k in range(n_l):
                    _energies(x[ladders[lad, k], b], bonds, Jb, W, e_k[k], m_k[k])
            if exch:
                for k in range((done // exchange_every) % 2, n_l - 1, 2):
                    c1 = ladders[lad, k]
                    c2 = ladders[lad, k + 1]
                    db = beta[c1] - beta[c2]
                    for w in range(W):
                        d = db * ((e_k[k, w] - field[c1] * m_k[k, w]) - (e_k[k + 1, w] - field[c2] * m_k[k + 1, w]))
                        ok = d >= 0.0
                        if not ok:
                            r = _next(xa0, xa1, w)
                            ok = np.float64(r >> _S11) * _TWO_M53 < math.exp(d)
                        ex_stats[c1, b, w, 0] += 1
                        if ok:
                            ex_stats[c1, b, w, 1] += 1
                            _exchange_chain(x[c1, b], x[c2, b], w)
                            _swap_rows(e_k, k, k + 1, w)
                            _swap_rows(m_k, k, k + 1, w)
            if meas:
                t_done = done - burn
                sample = t_done % thin == 0
                ts = t_done // thin - 1
                for k in range(n_l):
                    c = ladders[lad, k]
                    pb = psum[c, b]
                    for w in range(W):
                        e = e_k[k, w]
                        m = m_k[k, w]
                        pb[w, 0] += e
                        pb[w, 1] += e * e
                        pb[w, 2] += m
                        pb[w, 3] += abs(m)
                    if sample:
                        for w in range(W):
                            e_out[c, b, w, ts] = e_k[k, w]
                            m_out[c, b, w, ts] = m_k[k, w]
                            for j in range(4):
                                avg_out[c, b, w, ts, j] = pb[w, j] * inv_thin
                                pb[w, j] = 0.0
                        if keep:
                            xb = x[c, b]
                            for i in range(N):
                                xi = xb[i]
                                for w in range(W):
                                    states_out[c, b, w, ts, i] = xi[w]
