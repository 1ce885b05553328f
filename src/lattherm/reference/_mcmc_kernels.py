"""numba kernels of the Ising fast path of :mod:`lattherm.reference.mcmc`.

Layout: the states of ``n_cond`` conditions × ``n_blocks × W`` chains are one ``uint8`` array
``x[c, b, i, w]`` (site ``i`` of chain ``b·W + w`` at condition ``c``), so that the innermost
loop runs over the ``W`` chains of a block with unit stride and LLVM vectorises it (AVX2/AVX-512).
``prange`` runs over the ``(condition, block)`` tasks (:func:`checkerboard_run`: the
``(ladder, block)`` tasks, a ladder being the conditions that exchange replicas); every chain has
its own random stream, so results do not depend on the number of threads or on how tasks are
scheduled.

Random numbers: xoroshiro128+ (Blackman & Vigna), two ``uint64`` words of state per chain,
seeded by SplitMix64 from ``(seed, condition, chain)``. A Metropolis move is accepted iff the
64-bit draw ``r < thr``, with ``thr = floor(p · 2^64)`` (capped at ``2^64 − 1``) for the
acceptance probability ``p``: the acceptance is exact to ``2^-64``, and no float work is done
in the kernel. The weak lowest bits of xoroshiro128+ only matter at the ``2^-60`` level.

The Metropolis updates are integer-only; the replica-exchange step of :func:`checkerboard_run`
compares a 53-bit uniform with ``exp`` of a float64 exponent. ``fastmath`` is not used.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["seed_streams", "random_fill", "checkerboard_sweeps", "checkerboard_run"]

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
_S11 = np.uint64(11)
_TWO_M53 = 2.0**-53


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


@njit(inline="always")
def _exchange_chain(xb1, xb2, w):
    """Exchange chain ``w``'s configuration between two slots (replica exchange): column ``w`` of
    two ``(N, W)`` arrays."""
    for i in range(xb1.shape[0]):
        v = xb1[i, w]
        xb1[i, w] = xb2[i, w]
        xb2[i, w] = v


@njit(inline="always")
def _swap_rows(a, k1, k2, w):
    """Exchange ``a[k1, w]`` and ``a[k2, w]`` (a slot's tracked totals follow its configuration)."""
    v = a[k1, w]
    a[k1, w] = a[k2, w]
    a[k2, w] = v


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
def _row_thresholds(t):
    """The 10 thresholds ``t`` of a condition as a tuple of scalars, loaded once per site row."""
    return (t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9])


@njit(inline="always")
def _threshold(tt, xw, nup):
    """``tt[5 x_w + n_up]`` by selects (not a table gather): compiles to blends, keeps the chain
    loop vectorised."""
    if xw == 0:
        th = tt[0] if nup == 0 else (tt[1] if nup == 1 else (tt[2] if nup == 2 else (tt[3] if nup == 3 else tt[4])))
    else:
        th = tt[5] if nup == 0 else (tt[6] if nup == 1 else (tt[7] if nup == 2 else (tt[8] if nup == 3 else tt[9])))
    return th


@njit(inline="always")
def _site_row(xi, n0, n1, n2, n3, s0a, s1a, t, W):
    """One Metropolis attempt at one site for the W chains of a block (vectorised loop)."""
    tt = _row_thresholds(t)
    for w in range(W):
        nup = n0[w] + n1[w] + n2[w] + n3[w]
        xw = xi[w]
        r = _next(s0a, s1a, w)
        xi[w] = xw ^ np.uint8(r < _threshold(tt, xw, nup))


@njit(inline="always")
def _site_row_tracked(xi, n0, n1, n2, n3, s0a, s1a, t, W, bond, up):
    """:func:`_site_row` (same draws, same moves) that also updates every chain's bond sum
    ``Σ_<ij> s_i s_j`` (``bond``, by ``−2 s_i n`` on a flip, ``n = 2 n_up − 4`` the neighbour
    spin sum) and number of up sites (``up``), int32 per chain."""
    tt = _row_thresholds(t)
    for w in range(W):
        nup = n0[w] + n1[w] + n2[w] + n3[w]
        xw = xi[w]
        r = _next(s0a, s1a, w)
        f = np.uint8(r < _threshold(tt, xw, nup))
        xi[w] = xw ^ f
        fi = np.int32(f)
        sx = 2 * np.int32(xw) - 1
        bond[w] += fi * (-2 * sx * (2 * np.int32(nup) - 4))
        up[w] -= fi * sx


@njit(cache=True)
def _wolff(xb, nb, thr, ferro, beta_h, n_clusters, s0a, s1a, W, bond, up, mark, stack, stamp):
    """``n_clusters`` Wolff cluster moves of every chain ``w`` of the block ``xb`` (``(N, W)``), in
    place, updating the chains' bond sums ``bond`` and up counts ``up``; returns the last ``stamp``.

    A move draws a uniform seed site (the high 32 bits of a draw times ``N``), grows the cluster
    through the satisfied bonds (``x_i = x_j`` for ``J > 0``, ``x_i ≠ x_j`` for ``J < 0``), each
    added with probability ``p_add`` (a draw below ``thr``), and flips it with probability
    ``min(1, exp(−2 β h Σ_C s))`` (the field's Metropolis ratio; no draw when ``h Σ_C s <= 0``).
    Flipping keeps the satisfaction of every bond inside the cluster and the proposal is symmetric
    given the boundary, so the move keeps ``exp(−β(E_int − h Σs))`` invariant (Wolff 1989).
    ``mark`` (``(N,)`` int64, entries ``< stamp``) and ``stack`` (``(N,)`` int64) are scratch.
    """
    N = xb.shape[0]
    n_nb = nb.shape[1]
    for w in range(W):
        for _ in range(n_clusters):
            stamp += 1
            r = _next(s0a, s1a, w)
            i0 = np.int64(((r >> _S32) * np.uint64(N)) >> _S32)
            mark[i0] = stamp
            stack[0] = i0
            n = 1
            k = 0
            while k < n:  # breadth over the cluster list; stack[:n] is the cluster
                a = stack[k]
                k += 1
                xa = xb[a, w]
                for q in range(n_nb):
                    j = nb[a, q]
                    if mark[j] == stamp or ((xb[j, w] == xa) != ferro):
                        continue
                    if _next(s0a, s1a, w) < thr:
                        mark[j] = stamp
                        stack[n] = j
                        n += 1
            ssum = np.int64(0)  # Σ_C s
            bsum = np.int64(0)  # Σ over boundary bonds of s_a s_j
            for k in range(n):
                a = stack[k]
                sa = 2 * np.int64(xb[a, w]) - 1
                ssum += sa
                for q in range(n_nb):
                    j = nb[a, q]
                    if mark[j] != stamp:
                        bsum += sa * (2 * np.int64(xb[j, w]) - 1)
            d = -2.0 * beta_h * np.float64(ssum)
            if d < 0.0 and np.float64(_next(s0a, s1a, w) >> _S11) * _TWO_M53 >= math.exp(d):
                continue
            for k in range(n):
                xb[stack[k], w] ^= np.uint8(1)
            bond[w] += -2 * bsum
            up[w] -= ssum
    return stamp


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


@njit(inline="always")
def _count_bonds_up(xb, bonds, N, W, bond_row, up_row):
    """``bond_row[w] = Σ_<ij> s_i s_j`` and ``up_row[w]`` = number of ``x = 1`` sites of every
    chain of the block ``xb`` (``(N, W)``)."""
    n_bonds = bonds.shape[0]
    for w in range(W):
        up_row[w] = 0
    for i in range(N):
        xi = xb[i]
        for w in range(W):
            up_row[w] += xi[w]
    for w in range(W):
        bond_row[w] = 0
    for q in range(n_bonds):
        xi = xb[bonds[q, 0]]
        xj = xb[bonds[q, 1]]
        for w in range(W):
            bond_row[w] += np.int64(xi[w] ^ xj[w])  # number of unsatisfied bonds
    for w in range(W):
        bond_row[w] = n_bonds - 2 * bond_row[w]


@njit(parallel=True, cache=True)
def checkerboard_run(
    x, thr, st0, st1, nb, order, bonds, J, field, beta,
    ladders, lad_len, ex0, ex1, exchange_every, e_shift,
    s0, s1, burn, thin, bond_out, up_out, states_out, psum, avg_out, ex_stats, bad,
    wolff_thr, n_clusters,
):  # fmt: skip
    """Global sweeps ``s0 .. s1 − 1`` of every chain, with replica exchange, measurements and
    samples, in place (one parallel region; call it again with the next range to go on).

    ``x, thr, st0, st1, nb, order`` as in :func:`checkerboard_sweeps`, ``bonds`` ``(n_bonds, 2)``;
    ``J`` the coupling, ``field, beta`` ``(n_cond,)``. Tasks are ``(ladder, block)``: ladder
    ``l`` is the list of conditions ``ladders[l, :lad_len[l]]`` (one field, increasing T). A sweep
    is one checkerboard sweep (as :func:`checkerboard_sweeps`, same draws and moves) at every
    condition of the ladder, in ladder order, tracking every chain's bond sum and up count
    (:func:`_site_row_tracked`; recounted at the end of the call, ``bad[c, b] = 1`` if they
    differ), each condition's sweep followed by ``n_clusters`` Wolff moves of every chain
    (:func:`_wolff`, bond thresholds ``wolff_thr`` ``(n_cond,)`` of
    :func:`lattherm.reference.mcmc.wolff_thresholds`; none when ``n_clusters = 0``);
    after the sweep ``s`` (``done = s + 1``):

    * exchange, when ``exchange_every > 0`` and ``done % exchange_every == 0``: the pairs
      ``(k, k + 1)`` with ``k ≡ done // exchange_every (mod 2)`` swap the states of chain ``w``
      with probability ``min(1, exp((β_k − β_{k+1}) (H_k − H_{k+1})))``, ``H = −J Σ s_i s_j −
      h Σs`` (no draw when the exponent is >= 0; else accept iff ``(r >> 11) 2^−53 < exp(·)`` for
      a draw ``r`` of the exchange stream ``ex0/ex1[l, b, w]``). ``ex_stats[c, b, w, 0/1]`` count attempts /
      accepts of the pair whose lower member is ``c``;
    * measurement, when ``done > burn``: ``E_int − e_shift[c]``, its square, ``Σs`` and ``|Σs|``
      are added to ``psum[c, b, w, :]``;
    * sample ``t``, when ``done − burn = (t + 1) thin``: ``bond_out, up_out[c, b, w, t]`` (and
      ``states_out[c, b, w, t, :]`` unless it has size 0) as in the documented layout,
      ``avg_out[c, b, w, t, :]`` the means of ``psum`` over the ``thin`` sweeps since the previous
      sample; ``psum`` is reset.

    Without exchange each condition's chains do exactly what :func:`checkerboard_sweeps` does.
    """
    n_cond, n_blocks, N, W = x.shape
    keep = states_out.size > 0
    n_lad = ladders.shape[0]
    inv_thin = 1.0 / np.float64(thin)
    for task in prange(n_lad * n_blocks):
        lad = task // n_blocks
        b = task - lad * n_blocks
        n_l = lad_len[lad]
        bnd = np.zeros((n_l, W), dtype=np.int32)
        upc = np.zeros((n_l, W), dtype=np.int32)
        b64 = np.zeros(W, dtype=np.int64)
        u64 = np.zeros(W, dtype=np.int64)
        for k in range(n_l):
            _count_bonds_up(x[ladders[lad, k], b], bonds, N, W, b64, u64)
            for w in range(W):
                bnd[k, w] = b64[w]
                upc[k, w] = u64[w]
        xa0 = ex0[lad, b]
        xa1 = ex1[lad, b]
        mark = np.zeros(N if n_clusters > 0 else 0, dtype=np.int64)
        stack = np.zeros_like(mark)
        stamp = np.int64(0)
        ferro = J > 0
        for s in range(s0, s1):
            for k in range(n_l):
                c = ladders[lad, k]
                xb = x[c, b]
                s0a = st0[c, b]
                s1a = st1[c, b]
                t = thr[c]
                bk = bnd[k]
                uk = upc[k]
                for kk in range(N):
                    i = order[kk]
                    _site_row_tracked(
                        xb[i], xb[nb[i, 0]], xb[nb[i, 1]], xb[nb[i, 2]], xb[nb[i, 3]], s0a, s1a, t,
                        W, bk, uk,
                    )  # fmt: skip
                if n_clusters > 0:
                    stamp = _wolff(xb, nb, wolff_thr[c], ferro, beta[c] * field[c], n_clusters, s0a, s1a, W, bk,
                                   uk, mark, stack, stamp)  # fmt: skip
            done = s + 1
            exch = exchange_every > 0 and n_l > 1 and done % exchange_every == 0
            meas = done > burn
            if exch:
                for k in range((done // exchange_every) % 2, n_l - 1, 2):
                    c1 = ladders[lad, k]
                    c2 = ladders[lad, k + 1]
                    db = beta[c1] - beta[c2]
                    for w in range(W):
                        h1 = -J * np.float64(bnd[k, w]) - field[c1] * np.float64(2 * upc[k, w] - N)
                        h2 = -J * np.float64(bnd[k + 1, w]) - field[c2] * np.float64(
                            2 * upc[k + 1, w] - N
                        )
                        d = db * (h1 - h2)
                        ok = d >= 0.0
                        if not ok:
                            r = _next(xa0, xa1, w)
                            ok = np.float64(r >> _S11) * _TWO_M53 < math.exp(d)
                        ex_stats[c1, b, w, 0] += 1
                        if ok:
                            ex_stats[c1, b, w, 1] += 1
                            _exchange_chain(x[c1, b], x[c2, b], w)
                            _swap_rows(bnd, k, k + 1, w)
                            _swap_rows(upc, k, k + 1, w)
            if meas:
                t_done = done - burn
                sample = t_done % thin == 0
                ts = t_done // thin - 1
                for k in range(n_l):
                    c = ladders[lad, k]
                    pb = psum[c, b]
                    for w in range(W):
                        d = -J * np.float64(bnd[k, w]) - e_shift[c]
                        m = np.float64(2 * upc[k, w] - N)
                        pb[w, 0] += d
                        pb[w, 1] += d * d
                        pb[w, 2] += m
                        pb[w, 3] += abs(m)
                    if sample:
                        for w in range(W):
                            bond_out[c, b, w, ts] = bnd[k, w]
                            up_out[c, b, w, ts] = upc[k, w]
                            for j in range(4):
                                avg_out[c, b, w, ts, j] = pb[w, j] * inv_thin
                                pb[w, j] = 0.0
                        if keep:
                            xb = x[c, b]
                            for i in range(N):
                                xi = xb[i]
                                for w in range(W):
                                    states_out[c, b, w, ts, i] = xi[w]
        # the tracked sums are exact; prove it on the final states
        for k in range(n_l):
            _count_bonds_up(x[ladders[lad, k], b], bonds, N, W, b64, u64)
            for w in range(W):
                if b64[w] != bnd[k, w] or u64[w] != upc[k, w]:
                    bad[ladders[lad, k], b] = 1
