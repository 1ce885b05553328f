"""numba kernels of the Ising fast path of :mod:`lattherm.reference.mcmc`.

Layout: the states of ``n_cond`` conditions × ``n_blocks × W`` chains are one ``uint8`` array
``x[c, b, i, w]`` (site ``i`` of chain ``b·W + w`` at condition ``c``), so that the innermost
loop runs over the ``W`` chains of a block with unit stride and LLVM vectorises it (AVX2/AVX-512).
``prange`` runs over the ``(condition, block)`` tasks; every chain has its own random stream,
so results do not depend on the number of threads or on how tasks are scheduled.

Random numbers: xoroshiro128+ (Blackman & Vigna), two ``uint64`` words of state per chain,
seeded by SplitMix64 from ``(seed, condition, chain)``. A Metropolis move is accepted iff the
64-bit draw ``r < thr``, with ``thr = floor(p · 2^64)`` (capped at ``2^64 − 1``) for the
acceptance probability ``p``: the acceptance is exact to ``2^-64``, and no float work is done
in the kernel. The weak lowest bits of xoroshiro128+ only matter at the ``2^-60`` level.

The kernels are integer-only; ``fastmath`` would change nothing and is not used.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["seed_streams", "random_fill", "checkerboard_sweeps", "checkerboard_sample"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_S63 = np.uint64(63)
_R24 = np.uint64(24)
_R40 = np.uint64(40)
_R37 = np.uint64(37)
_R27 = np.uint64(27)
_L16 = np.uint64(16)
_ONE = np.uint64(1)


@njit(inline="always")
def _mix64(z):
    """SplitMix64 finaliser (a bijection of uint64 with good avalanche)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def seed_streams(seed, st0, st1):
    """Seed the xoroshiro128+ state ``st0, st1`` (``(n_cond, n_blocks, W)`` uint64) in place.

    Chain ``j = b·W + w`` of condition ``c`` gets a state that depends on ``(seed, c, j)`` only,
    so a chain's trajectory does not change when more chains or conditions are added.
    """
    n_cond, n_blocks, W = st0.shape
    base = _mix64(np.uint64(seed) + _GOLDEN)
    for c in range(n_cond):
        kc = _mix64(base ^ _mix64(np.uint64(c) + _GOLDEN))
        for b in range(n_blocks):
            for w in range(W):
                j = np.uint64(b * W + w)
                h = _mix64(kc ^ _mix64(j + _GOLDEN + _GOLDEN))
                a0 = _mix64(h + _GOLDEN)
                a1 = _mix64(h + _GOLDEN + _GOLDEN)
                if a0 == 0 and a1 == 0:  # the one forbidden state
                    a0 = _ONE
                st0[c, b, w] = a0
                st1[c, b, w] = a1


@njit(inline="always")
def _next(s0a, s1a, w):
    s0 = s0a[w]
    s1 = s1a[w]
    r = s0 + s1
    s1 ^= s0
    s0a[w] = ((s0 << _R24) | (s0 >> _R40)) ^ s1 ^ (s1 << _L16)
    s1a[w] = (s1 << _R37) | (s1 >> _R27)
    return r


@njit(parallel=True, cache=True)
def random_fill(x, st0, st1):
    """Fill ``x[c, b, i, w]`` with uniform random bits from each chain's stream (in place)."""
    n_cond, n_blocks, N, W = x.shape
    for task in prange(n_cond * n_blocks):
        c = task // n_blocks
        b = task - c * n_blocks
        s0a = st0[c, b]
        s1a = st1[c, b]
        xb = x[c, b]
        for i in range(N):
            for w in range(W):
                xb[i, w] = np.uint8(_next(s0a, s1a, w) >> _S63)


@njit(inline="always")
def _site_row(xi, n0, n1, n2, n3, s0a, s1a, t, W):
    """One Metropolis attempt at one site for the W chains of a block (vectorised loop)."""
    t0 = t[0]
    t1 = t[1]
    t2 = t[2]
    t3 = t[3]
    t4 = t[4]
    t5 = t[5]
    t6 = t[6]
    t7 = t[7]
    t8 = t[8]
    t9 = t[9]
    for w in range(W):
        nup = n0[w] + n1[w] + n2[w] + n3[w]
        xw = xi[w]
        # select (not a table gather): compiles to blends, keeps the loop vectorised
        if xw == 0:
            th = (
                t0
                if nup == 0
                else (t1 if nup == 1 else (t2 if nup == 2 else (t3 if nup == 3 else t4)))
            )
        else:
            th = (
                t5
                if nup == 0
                else (t6 if nup == 1 else (t7 if nup == 2 else (t8 if nup == 3 else t9)))
            )
        r = _next(s0a, s1a, w)
        xi[w] = xw ^ np.uint8(r < th)


@njit(parallel=True, cache=True)
def checkerboard_sweeps(x, thr, st0, st1, nb, order, n_sweeps):
    """``n_sweeps`` Metropolis sweeps of every chain, in place.

    Args:
        x: ``(n_cond, n_blocks, N, W)`` uint8 states.
        thr: ``(n_cond, 10)`` uint64 thresholds; entry ``5·x_i + n_up`` is the acceptance
            threshold of flipping site i with state x_i and n_up up-neighbours (of 4).
        st0, st1: ``(n_cond, n_blocks, W)`` uint64 random state (advanced in place).
        nb: ``(N, 4)`` int64 neighbour table.
        order: ``(N,)`` int64 site order of a sweep (checkerboard: one colour, then the other).
        n_sweeps: number of sweeps.

    Each attempt is a single-site Metropolis update that leaves the Boltzmann distribution
    invariant, applied sequentially within a chain, so any site order (also odd L, where the
    two colours are not independent) samples the right distribution.
    """
    n_cond, n_blocks, N, W = x.shape
    for task in prange(n_cond * n_blocks):
        c = task // n_blocks
        b = task - c * n_blocks
        xb = x[c, b]
        s0a = st0[c, b]
        s1a = st1[c, b]
        t = thr[c]
        for _ in range(n_sweeps):
            for k in range(N):
                i = order[k]
                _site_row(
                    xb[i], xb[nb[i, 0]], xb[nb[i, 1]], xb[nb[i, 2]], xb[nb[i, 3]], s0a, s1a, t, W
                )


@njit(parallel=True, cache=True)
def checkerboard_sample(
    x, thr, st0, st1, nb, order, bonds, thin, t0, n_take, bond_out, up_out, states_out
):
    """``n_take`` rounds of (``thin`` sweeps, then a measurement), in place, in one parallel region.

    ``x, thr, st0, st1, nb, order`` as in :func:`checkerboard_sweeps`; ``bonds`` ``(n_bonds, 2)``
    int64. Sample ``t0 + k`` of chain ``(b, w)`` goes to ``bond_out[c, b, w, t0 + k]``
    (``Σ_<ij> s_i s_j``, int64), ``up_out[c, b, w, t0 + k]`` (number of ``x = 1`` sites, int64)
    and, unless ``states_out`` has size 0, ``states_out[c, b, w, t0 + k, :]`` (uint8).
    """
    n_cond, n_blocks, N, W = x.shape
    n_bonds = bonds.shape[0]
    keep = states_out.size > 0
    for task in prange(n_cond * n_blocks):
        c = task // n_blocks
        b = task - c * n_blocks
        xb = x[c, b]
        s0a = st0[c, b]
        s1a = st1[c, b]
        t = thr[c]
        acc = np.zeros(W, dtype=np.int64)
        for k in range(n_take):
            for _ in range(thin):
                for kk in range(N):
                    i = order[kk]
                    _site_row(
                        xb[i],
                        xb[nb[i, 0]],
                        xb[nb[i, 1]],
                        xb[nb[i, 2]],
                        xb[nb[i, 3]],
                        s0a,
                        s1a,
                        t,
                        W,
                    )
            ts = t0 + k
            for w in range(W):
                acc[w] = 0
            for i in range(N):
                xi = xb[i]
                for w in range(W):
                    acc[w] += xi[w]
            for w in range(W):
                up_out[c, b, w, ts] = acc[w]
                acc[w] = 0
            for q in range(n_bonds):
                xi = xb[bonds[q, 0]]
                xj = xb[bonds[q, 1]]
                for w in range(W):
                    acc[w] += np.int64(xi[w] ^ xj[w])  # number of unsatisfied bonds
            for w in range(W):
                bond_out[c, b, w, ts] = n_bonds - 2 * acc[w]
            if keep:
                for i in range(N):
                    xi = xb[i]
                    for w in range(W):
                        states_out[c, b, w, ts, i] = xi[w]
