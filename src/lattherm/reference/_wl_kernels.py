"""Numba kernels of the Wang–Landau walk on the ``L x L`` Ising torus (see ``wang_landau``).

Walkers are indexed by ``w``; each one owns its spins, its level ``m`` (number of pairs of
unsatisfied bonds, ``E = −J(2N − 4m)``), its own ``ln g`` and histogram rows and its own
xoshiro256** random stream. A walker's trajectory depends on nothing but its own state, so the
result of a parallel sweep over walkers (``prange``) does not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_U1 = np.uint64(1)
_M53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(inline="always")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(inline="always")
def _next(s):
    """One xoshiro256** step on the state row ``s`` (4 uint64); returns a uint64."""
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
    return result


@njit(inline="always")
def _uniform(s):
    return np.float64(_next(s) >> np.uint64(11)) * _M53


@njit(inline="always")
def _below(s, n):
    """Uniform integer in ``[0, n)`` (multiply-shift on the high 32 bits; n < 2**32)."""
    return np.int64(((_next(s) >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(cache=True)
def level_of(spins, nb):
    """``m = (2N − Σ_<ij> s_i s_j)/4`` of one configuration (``spins`` in {−1, +1})."""
    n = spins.shape[0]
    b = 0
    for i in range(n):
        # offsets +e_0, +e_1: each bond once
        b += np.int64(spins[i]) * (np.int64(spins[nb[i, 0]]) + spins[nb[i, 1]])
    return (2 * n - b) // 4


@njit(cache=True)
def _is_flat(hist, levels, flatness):
    tot = 0.0
    mn = hist[levels[0]]
    for k in range(levels.shape[0]):
        h = hist[levels[k]]
        tot += h
        if h < mn:
            mn = h
    return mn > 0 and mn >= flatness * tot / levels.shape[0]


@njit(cache=True)
def _walk_one(
    spins,
    nb,
    lng,
    hist,
    levels,
    lo,
    hi,
    m,
    lnf,
    n_moves,
    check_every,
    since_check,
    flatness,
    stop_when_flat,
    inv_t,
    t0,
    s,
):
    """``n_moves`` single-spin-flip WL moves of one walker -> (m, moves done, flat, since_check).

    With ``inv_t`` the modification factor is ``ln f = n_levels / t`` at every move, ``t`` the
    walker's moves since its start (``t0`` before this call), as in Belardinelli–Pereyra.
    """
    n = spins.shape[0]
    nlev = np.float64(levels.shape[0])
    flat = False
    done = 0
    for _ in range(n_moves):
        i = _below(s, n)
        si = np.int64(spins[i])
        h = np.int64(spins[nb[i, 0]]) + spins[nb[i, 1]] + spins[nb[i, 2]] + spins[nb[i, 3]]
        m_new = m + (si * h) // 2
        if m_new >= lo and m_new <= hi:
            d = lng[m] - lng[m_new]
            if d >= 0.0 or _uniform(s) < np.exp(d):
                spins[i] = -si
                m = m_new
        done += 1
        if inv_t:
            lng[m] += nlev / np.float64(t0 + done)
        else:
            lng[m] += lnf
        hist[m] += 1
        since_check += 1
        if since_check >= check_every:
            since_check = 0
            if _is_flat(hist, levels, flatness):
                flat = True
                if stop_when_flat:
                    break
    return m, done, flat, since_check


@njit(cache=True, parallel=True)
def walk(
    spins,
    nb,
    lng,
    hist,
    levels,
    n_levels,
    lo,
    hi,
    m,
    lnf,
    active,
    flat,
    since_check,
    moves,
    n_moves,
    check_every,
    flatness,
    stop_when_flat,
    inv_t,
    rng,
):
    """Advance every active walker ``w`` by up to ``n_moves[w]`` moves, in parallel over walkers.

    ``levels[w, :n_levels[w]]`` lists the allowed levels of walker ``w``'s window (flatness is
    checked over those). A walker found flat keeps walking unless ``stop_when_flat``; ``flat[w]``
    is only ever set here, never cleared (the caller clears it at a stage change). Walkers with
    ``inv_t[w]`` use ``ln f = n_levels / t`` (1/t phase) and never stop early.
    """
    n_w = spins.shape[0]
    for w in prange(n_w):
        if not active[w]:
            continue
        mw, done, fl, sc = _walk_one(
            spins[w],
            nb,
            lng[w],
            hist[w],
            levels[w, : n_levels[w]],
            lo[w],
            hi[w],
            m[w],
            lnf[w],
            n_moves[w],
            check_every,
            since_check[w],
            flatness,
            stop_when_flat and not inv_t[w],
            inv_t[w],
            moves[w],
            rng[w],
        )
        m[w] = mw
        moves[w] += done
        since_check[w] = sc
        if fl:
            flat[w] = True


@njit(cache=True)
def drive_to_window(spins, nb, m, lo, hi, s, max_moves):
    """Random single flips, accepted only when they do not move away from ``[lo, hi]``.

    Returns the final level (the caller checks that it landed inside).
    """
    n = spins.shape[0]
    for _ in range(max_moves):
        if m >= lo and m <= hi:
            break
        i = _below(s, n)
        si = np.int64(spins[i])
        h = np.int64(spins[nb[i, 0]]) + spins[nb[i, 1]] + spins[nb[i, 2]] + spins[nb[i, 3]]
        m_new = m + (si * h) // 2
        if (m < lo and m_new >= m) or (m > hi and m_new <= m):
            spins[i] = -si
            m = m_new
    return m


@njit(cache=True)
def exchange(spins, lng, lo, hi, m, active, w_per_window, n_windows, parity, s):
    """Replica exchange between windows ``k`` and ``k+1`` for ``k ≡ parity (mod 2)``.

    Each walker of window ``k`` is paired with a random walker of window ``k+1`` (a random
    permutation); the swap of configurations is accepted with
    ``min(1, g_i(E_i) g_j(E_j) / (g_i(E_j) g_j(E_i)))`` when both energies lie in both windows.
    Returns (attempts, accepted).
    """
    att = 0
    acc = 0
    perm = np.empty(w_per_window, dtype=np.int64)
    for k in range(parity, n_windows - 1, 2):
        for a in range(w_per_window):
            perm[a] = a
        for a in range(w_per_window - 1, 0, -1):  # Fisher–Yates
            b = _below(s, a + 1)
            perm[a], perm[b] = perm[b], perm[a]
        for a in range(w_per_window):
            i = k * w_per_window + a
            j = (k + 1) * w_per_window + perm[a]
            if not (active[i] and active[j]):
                continue
            mi, mj = m[i], m[j]
            att += 1
            if mi < lo[j] or mi > hi[j] or mj < lo[i] or mj > hi[i]:
                continue
            d = lng[i, mi] - lng[i, mj] + lng[j, mj] - lng[j, mi]
            if d >= 0.0 or _uniform(s) < np.exp(d):
                acc += 1
                for q in range(spins.shape[1]):
                    t = spins[i, q]
                    spins[i, q] = spins[j, q]
                    spins[j, q] = t
                m[i], m[j] = mj, mi
    return att, acc
