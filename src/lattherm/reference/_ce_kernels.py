"""numba semi-grand Metropolis for the CuAu cluster expansion (``update="cluster-expansion"``).

The move: pick a site ``i`` uniformly at random, flip it (Au <-> Cu), accept with

    min(1, exp(−β (ΔE_int − μ ΔΣs))),   ΔΣs = −2 s_i,

the Metropolis rule for ``exp(−β (E_int − μ Σ s))`` (DESIGN §3; CLEASE's ``SGCMonteCarlo`` with
``chem_pot={"c1_0": μ}`` samples the same weight). A sweep is ``N`` attempts. Each single-site
kernel is reversible, and a mixture of them with state-independent site probabilities is too,
so the (tiny, ``<= N / 2^32``) non-uniformity of the site draw for ``N`` not a power of two
cannot bias the stationary distribution.

ΔE comes from the per-site tables of :meth:`lattherm.systems.cuau.CuAuSystem.flip_tables`
(:class:`~lattherm.systems.cuau.FlipTables`): for every tracked cluster ``q`` the integer
``A_q = Σ_t mult[t] Π_m s[others[t, m]]`` over the figures containing ``i`` (an odd number of
times: self-images of small cells included), then ``ΔC_q = −2 s_i A_q`` (exact change of the
integer cluster count) and ``ΔE = −2 s_i (coef_c1 + Σ_q coef_q A_q)``. :func:`flip_delta` is that
function for one spin vector, reusable from any numba code (e.g. a metadynamics walker).

Blocks (the fast path): chains run in blocks of ``BLOCK = 64``, states ``x[c, b, i, w]`` uint8 0/1
(row ``i = N`` all 1: the padding, spin +1), so the term loops run over the 64 chains of a block
with unit stride (SIMD): a term's spin product is a parity, ``x[o0] ^ x[o1] ^ x[o2]``, accumulated
with its multiplicity in uint8 lanes (exact: a site's multiplicities sum to <= 255, checked).
All chains of a block try the *same* random site at each attempt (one site stream per block);
acceptance draws are per chain. Every chain is still an exact random-site Metropolis chain (the
site sequence is independent of the states); chains of one block are independent given the site
sequence and become independent once mixed, as with the deterministic checkerboard order of the
Ising kernel (give ``burn_in_sweeps`` accordingly).

Exact energies: every chain carries its integer cluster counts ``C_q`` (int64) and ``Σs``,
updated exactly on acceptance; a sampled energy is ``coef_c0 + coef_c1 Σs + Σ_q coef_q C_q``
computed from the integers (no drift however long the run). :func:`run_chains` re-checks the
final energies against :meth:`CuAuSystem.energy` and raises if they differ by more than 1e-9 eV.

Randomness: xoroshiro128+ streams seeded by SplitMix64
(:func:`lattherm.reference._mcmc_kernels.seed_streams`): chain ``j = b·64 + w`` draws its
acceptance numbers from the stream of ``(seed, condition, j)``, block ``b`` its sites from that of
``(seed ^ salt, condition, b)``. ``prange`` runs over ``(condition, block)`` tasks, so results are
bit-reproducible for a seed, independent of the number of threads, and a chain's trajectory does
not depend on how many chains or conditions run beside it. Site ``⌊(r >> 32) · N / 2^32⌋``;
acceptance iff ``Δ <= 0`` (no draw) or ``(r >> 11) · 2^−53 < exp(−βΔ)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from lattherm.reference._mcmc_kernels import _exchange_chain

__all__ = [
    "BLOCK",
    "flip_delta",
    "block_delta_energy",
    "kernel_tables",
    "ce_sweeps",
    "ce_run",
    "run_chains",
    "spins_from_states",
]

_R24 = np.uint64(24)
_R40 = np.uint64(40)
_R37 = np.uint64(37)
_R27 = np.uint64(27)
_L16 = np.uint64(16)
_S11 = np.uint64(11)
_S32 = np.uint64(32)
_TWO_M53 = 2.0**-53
#: the check of tracked against recomputed energies at the end of a run (eV)
ENERGY_CHECK_TOL = 1e-9
#: chains per block: one site sequence per block, vector loops over the block's chains
BLOCK = 64
_SITE_SALT = np.uint64(0x5EED0F517E5EED00)


@njit(inline="always")
def _xoro(s0, s1):
    """xoroshiro128+: ``(output, next s0, next s1)``."""
    r = s0 + s1
    s1 ^= s0
    return r, ((s0 << _R24) | (s0 >> _R40)) ^ s1 ^ (s1 << _L16), (s1 << _R37) | (s1 >> _R27)


@njit(cache=True)
def flip_delta(s, i, ptr, others, mult, width, coef, coef_c1, acc):
    """ΔE_int (eV) of flipping site ``i`` of the spin vector ``s``, and the count changes.

    Args:
        s: ``(N + 1,)`` spins ±1 (any integer or float dtype) with ``s[N] = +1``.
        i: the site.
        ptr, others, mult, width, coef, coef_c1: the fields of
            :class:`lattherm.systems.cuau.FlipTables` (``CuAuSystem.flip_tables()``).
        acc: ``(Q,)`` int64 scratch; on return ``acc[q] = ΔC_q = −2 s_i A_q``, the exact change
            of cluster ``q``'s integer count (add it to the counts if the flip is accepted).

    Returns ``ΔE = −2 s_i (coef_c1 + Σ_q coef[q] A_q)`` in eV (float64). ``s`` is not modified.
    """
    Q = coef.shape[0]
    si = np.int64(s[i])
    tot = coef_c1
    for q in range(Q):
        a = np.int64(0)
        t0 = ptr[i, q]
        t1 = ptr[i, q + 1]
        wq = width[q]
        if wq == 1:
            for t in range(t0, t1):
                a += mult[t] * np.int64(s[others[t, 0]])
        elif wq == 2:
            for t in range(t0, t1):
                a += mult[t] * np.int64(s[others[t, 0]] * s[others[t, 1]])
        else:
            for t in range(t0, t1):
                a += mult[t] * np.int64(s[others[t, 0]] * s[others[t, 1]] * s[others[t, 2]])
        acc[q] = -2 * si * a
        tot += coef[q] * a
    return -2.0 * si * tot


@njit(inline="always")
def _block_delta(xb, i, ptr, others, mult8, width, msum, coef, coef_c1, acc, de):
    """ΔE of flipping site ``i`` in each of the ``W`` chains of a block (vectorised over chains).

    ``xb``: ``(N + 1, W)`` uint8 states 0/1 (row ``N`` all 1: the padding, spin +1);
    ``mult8``: the multiplicities as uint8; ``msum[i, q] = Σ_t mult[t]`` (<= 255). With
    ``z_t = x[o0] ^ x[o1] ^ x[o2]`` (parity of the Au count among the other sites), the spin
    product of a term is ``(−1)^{width_q} (1 − 2 z_t)``, so
    ``A_q = (−1)^{width_q} (msum[i, q] − 2 Σ_t mult_t z_t)``. Fills ``acc[q, w] = Σ_t mult_t z_t``
    (uint8, exact because ``msum <= 255``) and ``de[w] = ΔE`` (float64, eV).
    """
    Q = coef.shape[0]
    W = xb.shape[1]
    xi = xb[i]
    for w in range(W):
        de[w] = coef_c1
    for q in range(Q):
        a = acc[q]
        for w in range(W):
            a[w] = 0
        t0 = ptr[i, q]
        t1 = ptr[i, q + 1]
        wq = width[q]
        if wq == 1:
            for t in range(t0, t1):
                mt = mult8[t]
                r0 = xb[others[t, 0]]
                for w in range(W):
                    a[w] += mt * r0[w]
        elif wq == 2:
            for t in range(t0, t1):
                mt = mult8[t]
                r0 = xb[others[t, 0]]
                r1 = xb[others[t, 1]]
                for w in range(W):
                    a[w] += mt * (r0[w] ^ r1[w])
        else:
            for t in range(t0, t1):
                mt = mult8[t]
                r0 = xb[others[t, 0]]
                r1 = xb[others[t, 1]]
                r2 = xb[others[t, 2]]
                for w in range(W):
                    a[w] += mt * (r0[w] ^ r1[w] ^ r2[w])
        cq = coef[q] if wq % 2 == 0 else -coef[q]
        mq = np.float64(msum[i, q])
        for w in range(W):
            de[w] += cq * (mq - 2.0 * np.float64(a[w]))
    for w in range(W):
        de[w] *= -2.0 * (2.0 * np.float64(xi[w]) - 1.0)


@njit(inline="always")
def _block_moves(
    xb, cnt, ssum, st0, st1, sq0, sq1, n_moves, beta, mu, s_lo, s_hi,
    ptr, others, mult8, width, msum, coef, coef_c1, acc, de,
):  # fmt: skip
    """``n_moves`` random-site attempts of the ``W`` chains of one block; returns the block's
    site-stream state ``(sq0, sq1)``. One site per attempt for the whole block (block stream),
    one acceptance draw per chain (chain streams ``st0[w], st1[w]``) when ``Δ > 0``. A flip that
    would take ``Σs`` out of ``[s_lo, s_hi]`` is rejected without a draw (the window)."""
    N = xb.shape[0] - 1
    W = xb.shape[1]
    Q = coef.shape[0]
    nn = np.uint64(N)
    for _ in range(n_moves):
        r, sq0, sq1 = _xoro(sq0, sq1)
        i = np.int64(((r >> _S32) * nn) >> _S32)
        _block_delta(xb, i, ptr, others, mult8, width, msum, coef, coef_c1, acc, de)
        xi = xb[i]
        for w in range(W):
            si = 2 * np.int64(xi[w]) - 1
            if ssum[w] - 2 * si < s_lo or ssum[w] - 2 * si > s_hi:
                continue
            d = de[w] + 2.0 * mu * si  # ΔE_int − μ ΔΣs, ΔΣs = −2 s_i
            ok = d <= 0.0
            if not ok:
                r, a0, a1 = _xoro(st0[w], st1[w])
                st0[w] = a0
                st1[w] = a1
                ok = np.float64(r >> _S11) * _TWO_M53 < math.exp(-beta * d)
            if ok:
                xi[w] ^= np.uint8(1)
                ssum[w] -= 2 * si
                for q in range(Q):
                    A = np.int64(msum[i, q]) - 2 * np.int64(acc[q, w])
                    if width[q] % 2 == 1:
                        A = -A
                    cnt[w, q] -= 2 * si * A  # ΔC_q = −2 s_i A_q
    return sq0, sq1


@njit(inline="always")
def _condition_block_moves(
    c, b, n_moves, x, cnt, ssum, beta, mu, window, st0, st1, sq0, sq1,
    ptr, others, mult8, width, msum, coef, coef_c1, acc, de,
):  # fmt: skip
    """:func:`_block_moves` of block ``b`` of condition ``c`` (the arrays of all conditions and
    blocks as in :func:`ce_sweeps`); the block's site stream is stored back in ``sq0, sq1``."""
    r0, r1 = _block_moves(
        x[c, b], cnt[c, b], ssum[c, b], st0[c, b], st1[c, b], sq0[c, b], sq1[c, b],
        n_moves, beta[c], mu[c], window[c, 0], window[c, 1], ptr, others, mult8, width, msum, coef, coef_c1,
        acc, de,
    )  # fmt: skip
    sq0[c, b] = r0
    sq1[c, b] = r1


@njit(parallel=True, cache=True)
def ce_sweeps(
    x, cnt, ssum, beta, mu, window, st0, st1, sq0, sq1,
    ptr, others, mult8, width, msum, coef, coef_c1, n_moves,
):  # fmt: skip
    """``n_moves`` attempts of every chain, in place.

    Args:
        x: ``(n_cond, n_blocks, N + 1, W)`` uint8 states 0/1, row ``N`` all 1 (padding).
        cnt: ``(n_cond, n_blocks, W, Q)`` int64 integer counts of the tracked clusters.
        ssum: ``(n_cond, n_blocks, W)`` int64 ``Σ s``.
        beta, mu: ``(n_cond,)`` float64 ``1/(k_B T)`` (1/eV) and ``μ`` (eV).
        window: ``(n_cond, 2)`` int64 least and greatest ``Σs`` a chain may reach (``−N, N``: none).
        st0, st1: ``(n_cond, n_blocks, W)`` uint64 chain streams (acceptance draws).
        sq0, sq1: ``(n_cond, n_blocks)`` uint64 block streams (site draws).
        ptr, others, width, coef, coef_c1: :class:`~lattherm.systems.cuau.FlipTables`;
            ``mult8`` its ``mult`` as uint8, ``msum[i, q]`` the sum of ``mult`` over the terms.
        n_moves: attempts per chain.
    """
    n_cond, n_blocks, _, W = x.shape
    Q = coef.shape[0]
    for task in prange(n_cond * n_blocks):
        c = task // n_blocks
        b = task - c * n_blocks
        acc = np.empty((Q, W), dtype=np.uint8)
        de = np.empty(W, dtype=np.float64)
        _condition_block_moves(
            c, b, n_moves, x, cnt, ssum, beta, mu, window, st0, st1, sq0, sq1,
            ptr, others, mult8, width, msum, coef, coef_c1, acc, de,
        )  # fmt: skip


@njit(inline="always")
def _ce_energy(cw, sw, coef, coef_c0, coef_c1):
    """``E_int`` of one chain from its integer counts ``cw`` (``(Q,)``) and ``Σs`` ``sw``."""
    e = coef_c0 + coef_c1 * np.float64(sw)
    for q in range(coef.shape[0]):
        e += coef[q] * np.float64(cw[q])
    return e


@njit(parallel=True, cache=True)
def ce_run(
    x, cnt, ssum, beta, mu, window, st0, st1, sq0, sq1,
    ptr, others, mult8, width, msum, coef, coef_c0, coef_c1,
    ladders, lad_len, ex0, ex1, exchange_every, e_shift,
    s0, s1, burn, thin, e_out, m_out, x_out, psum, avg_out, ex_stats,
):  # fmt: skip
    """Global sweeps ``s0 .. s1 − 1`` of every chain, with replica exchange, measurements and
    samples, in place (one parallel region; call it again with the next range to go on).

    Tasks are ``(ladder, block)``: ladder ``l`` is the list of conditions ``ladders[l, :lad_len[l]]``
    (increasing T; a ladder of one condition has no exchange); ``window`` as in :func:`ce_sweeps`
    (the conditions of a ladder share it). A sweep is ``N``
    attempts (:func:`_block_moves`) at every condition of the ladder, in ladder order; after the
    sweep ``s`` (``done = s + 1``):

    * exchange, when ``exchange_every > 0`` and ``done % exchange_every == 0``: the pairs
      ``(k, k + 1)`` of the ladder with ``k ≡ done // exchange_every (mod 2)`` swap the states of
      chain ``w`` with probability ``min(1, exp((β_k − β_{k+1}) (E_k − E_{k+1}) − (β_k μ_k − β_{k+1}
      μ_{k+1}) (Σs_k − Σs_{k+1})))``, ``E = E_int`` (with one μ: ``(β_k − β_{k+1}) (H_k − H_{k+1})``,
      ``H = E_int − μ Σs``; no draw when the exponent is >= 0; else one draw from the
      exchange stream ``ex0/ex1[l, b, w]``). ``ex_stats[c, b, w, 0/1]`` count attempts/accepts
      of chain ``w`` of the pair whose lower member is ``c``;
    * measurement, when ``done > burn``: ``E_int − e_shift[c]``, its square, ``Σs`` and ``|Σs|``
      are added to ``psum[c, b, w, :]``;
    * sample ``t``, when ``done − burn = (t + 1) thin``: ``e_out, m_out[c, b, w, t]`` (and
      ``x_out[c, b, w, t, :]`` unless it has size 0) get the current state, ``avg_out[c, b, w,
      t, :]`` the means of ``psum`` over the ``thin`` sweeps since the previous sample, and
      ``psum`` is reset.

    Without exchange each condition's chains do exactly what :func:`ce_sweeps` does.
    """
    n_cond, n_blocks, Np1, W = x.shape
    N = Np1 - 1
    Q = coef.shape[0]
    keep = x_out.size > 0
    n_lad = ladders.shape[0]
    inv_thin = 1.0 / np.float64(thin)
    for task in prange(n_lad * n_blocks):
        lad = task // n_blocks
        b = task - lad * n_blocks
        n_l = lad_len[lad]
        acc = np.empty((Q, W), dtype=np.uint8)
        de = np.empty(W, dtype=np.float64)
        tmp = np.empty(Q, dtype=np.int64)
        e1 = np.empty(W, dtype=np.float64)
        xa0 = ex0[lad, b]
        xa1 = ex1[lad, b]
        for s in range(s0, s1):
            for k in range(n_l):
                c = ladders[lad, k]
                _condition_block_moves(
                    c, b, N, x, cnt, ssum, beta, mu, window, st0, st1, sq0, sq1,
                    ptr, others, mult8, width, msum, coef, coef_c1, acc, de,
                )  # fmt: skip
            done = s + 1
            if exchange_every > 0 and n_l > 1 and done % exchange_every == 0:
                for k in range((done // exchange_every) % 2, n_l - 1, 2):
                    c1 = ladders[lad, k]
                    c2 = ladders[lad, k + 1]
                    db = beta[c1] - beta[c2]
                    for w in range(W):
                        h1 = _ce_energy(cnt[c1, b, w], ssum[c1, b, w], coef, coef_c0, coef_c1)
                        h2 = _ce_energy(cnt[c2, b, w], ssum[c2, b, w], coef, coef_c0, coef_c1)
                        if mu[c1] == mu[c2]:
                            h1 -= mu[c1] * np.float64(ssum[c1, b, w])
                            h2 -= mu[c2] * np.float64(ssum[c2, b, w])
                            d = db * (h1 - h2)
                        else:  # β H of both states under both conditions
                            ds = np.float64(ssum[c1, b, w] - ssum[c2, b, w])
                            d = db * (h1 - h2) - (beta[c1] * mu[c1] - beta[c2] * mu[c2]) * ds
                        ok = d >= 0.0
                        if not ok:
                            r, a0, a1 = _xoro(xa0[w], xa1[w])
                            xa0[w] = a0
                            xa1[w] = a1
                            ok = np.float64(r >> _S11) * _TWO_M53 < math.exp(d)
                        ex_stats[c1, b, w, 0] += 1
                        if ok:
                            ex_stats[c1, b, w, 1] += 1
                            _exchange_chain(x[c1, b], x[c2, b], w)
                            tmp[:] = cnt[c1, b, w]
                            cnt[c1, b, w] = cnt[c2, b, w]
                            cnt[c2, b, w] = tmp
                            v2 = ssum[c1, b, w]
                            ssum[c1, b, w] = ssum[c2, b, w]
                            ssum[c2, b, w] = v2
            if done > burn:
                t_done = done - burn
                sample = t_done % thin == 0
                t = t_done // thin - 1
                for k in range(n_l):
                    c = ladders[lad, k]
                    cb = cnt[c, b]
                    mb = ssum[c, b]
                    pb = psum[c, b]
                    for w in range(W):
                        e1[w] = _ce_energy(cb[w], mb[w], coef, coef_c0, coef_c1)
                        d = e1[w] - e_shift[c]
                        m = np.float64(mb[w])
                        pb[w, 0] += d
                        pb[w, 1] += d * d
                        pb[w, 2] += m
                        pb[w, 3] += abs(m)
                    if sample:
                        for w in range(W):
                            e_out[c, b, w, t] = e1[w]
                            m_out[c, b, w, t] = np.float64(mb[w])
                            for j in range(4):
                                avg_out[c, b, w, t, j] = pb[w, j] * inv_thin
                                pb[w, j] = 0.0
                        if keep:
                            xb = x[c, b]
                            for i in range(N):
                                xr = xb[i]
                                for w in range(W):
                                    x_out[c, b, w, t, i] = xr[w]


@njit(cache=True)
def block_delta_energy(xb, i, ptr, others, mult8, width, msum, coef, coef_c1):
    """ΔE (eV) of flipping site ``i`` in every chain of one block ``xb`` (``(N + 1, W)`` uint8,
    row ``N`` all 1): the kernel's own computation, exposed for tests."""
    acc = np.empty((coef.shape[0], xb.shape[1]), dtype=np.uint8)
    de = np.empty(xb.shape[1], dtype=np.float64)
    _block_delta(xb, i, ptr, others, mult8, width, msum, coef, coef_c1, acc, de)
    return de


def kernel_tables(ft) -> tuple:
    """``(ptr, others, mult8, width, msum, coef)`` for the block kernels from
    :class:`~lattherm.systems.cuau.FlipTables`; raises if a per-site multiplicity sum exceeds
    255 (the uint8 accumulators would overflow)."""
    n = ft.ptr.shape[0]
    Q = len(ft.coef)
    csum = np.concatenate([[0], np.cumsum(ft.mult)])
    msum = csum[ft.ptr[:, 1:]] - csum[ft.ptr[:, :-1]]  # (N, Q)
    if msum.size and msum.max() > 255:
        raise ValueError(
            f"a site's multiplicity sum {msum.max()} exceeds 255: the uint8 accumulators of the "
            "cluster-expansion kernel would overflow (use update='random-site')"
        )
    assert msum.shape == (n, Q)
    return (
        np.ascontiguousarray(ft.ptr),
        np.ascontiguousarray(ft.others),
        ft.mult.astype(np.uint8),
        np.ascontiguousarray(ft.width),
        np.ascontiguousarray(msum, dtype=np.int64),
        np.ascontiguousarray(ft.coef),
    )


def spins_from_states(x: np.ndarray) -> np.ndarray:
    """``(..., N)`` 0/1 states → ``(..., N + 1)`` int8 spins ±1 with the padding spin +1."""
    s = np.ones((*x.shape[:-1], x.shape[-1] + 1), dtype=np.int8)
    s[..., :-1] = 2 * np.asarray(x, dtype=np.int8) - 1
    return s


def _energies_from_counts(tables, cnt: np.ndarray, ssum: np.ndarray) -> np.ndarray:
    """Same formula as the kernel, in numpy (float64)."""
    e = tables.coef_c0 + tables.coef_c1 * ssum.astype(np.float64)
    for q in range(len(tables.coef)):
        e = e + tables.coef[q] * cnt[..., q].astype(np.float64)
    return e


def run_chains(
    system, T, h, *, n_chains, n_samples, seed, burn, thin, x0, keep_states, progress,
    ladders, lad_len, exchange_every, window=None,
):  # fmt: skip
    """The ``"cluster-expansion"`` update of :func:`lattherm.reference.mcmc.run_metropolis`.

    Arguments as passed by ``run_metropolis`` (``T, h``: ``(n_cond,)``; ``x0``: ``"random"``,
    ``"mixed"`` or ``(n_cond, n_chains, N)`` uint8; ``burn``, ``thin`` in sweeps of ``N``
    attempts; ``ladders, lad_len, exchange_every``: the replica-exchange ladders of
    :func:`ce_run`, ``exchange_every = 0`` for none; ``window``: ``(n_cond, 2)`` bounds on ``Σs``,
    ``None`` for none). Returns a dict with ``energy, spin_sum``
    ``(n_cond, n_chains, n_samples)``, ``states`` (or ``None``), ``averages`` ``(n_cond,
    n_chains, n_samples, 4)``, ``energy_shift`` ``(n_cond,)`` and ``exchange`` ``(n_cond,
    n_chains, 2)`` (attempts, accepts), as :class:`~lattherm.reference.mcmc.MCMCResult` holds
    them. Chains run in blocks of ``BLOCK`` (padding chains run and are discarded).
    """
    import torch

    from lattherm.reference import _mcmc_kernels as K
    from lattherm.reference.mcmc import EXCHANGE_SALT, _progress_chunk, apply_mixed_starts
    from lattherm.runlog import Progress

    ft = system.flip_tables()
    tab = kernel_tables(ft)
    n_cond, N, W = T.size, system.n_sites, BLOCK
    n_blocks = -(-n_chains // W)
    M = n_blocks * W
    st0 = np.zeros((n_cond, n_blocks, W), dtype=np.uint64)
    st1 = np.zeros_like(st0)
    K.seed_streams(np.uint64(seed), st0, st1)  # chain j = b W + w: stream of (seed, c, j)
    sq0 = np.zeros((n_cond, 1, n_blocks), dtype=np.uint64)
    sq1 = np.zeros_like(sq0)
    K.seed_streams(np.uint64(seed) ^ _SITE_SALT, sq0, sq1)  # block b: stream of (seed', c, b)
    sq0, sq1 = np.ascontiguousarray(sq0[:, 0]), np.ascontiguousarray(sq1[:, 0])
    ex0 = np.zeros((ladders.shape[0], n_blocks, W), dtype=np.uint64)
    ex1 = np.zeros_like(ex0)
    K.seed_streams(np.uint64(seed) ^ EXCHANGE_SALT, ex0, ex1)  # (ladder l, chain j)
    x = np.ones((n_cond, n_blocks, N + 1, W), dtype=np.uint8)
    if isinstance(x0, str):  # "random" / "mixed": uniform bits from each chain's own stream
        K.random_fill(x[:, :, :N, :], st0, st1)
        if x0 == "mixed":
            apply_mixed_starts(x[:, :, :N, :].transpose(0, 1, 3, 2), n_blocks, W)
    else:
        xp = np.zeros((n_cond, M, N), dtype=np.uint8)
        xp[:, :n_chains] = x0
        x[:, :, :N, :] = xp.reshape(n_cond, n_blocks, W, N).transpose(0, 1, 3, 2)
    x_flat = torch.from_numpy(np.ascontiguousarray(x[:, :, :N, :].transpose(0, 1, 3, 2)))
    counts = system.cluster_counts(x_flat.reshape(-1, N)).numpy()  # exact integers (float64)
    cnt = np.ascontiguousarray(
        np.rint(counts[:, ft.cf_index]).astype(np.int64).reshape(n_cond, n_blocks, W, -1)
    )
    ssum = np.ascontiguousarray(
        np.rint(counts[:, system.cf_names.index("c1_0")]).astype(np.int64)
    ).reshape(n_cond, n_blocks, W)
    beta = np.ascontiguousarray(1.0 / (system.k_B * T), dtype=np.float64)
    mu = np.ascontiguousarray(h, dtype=np.float64)
    window = np.tile([-N, N], (n_cond, 1)) if window is None else window
    window = np.ascontiguousarray(window, dtype=np.int64)
    e_cu = float(system.energy(torch.zeros((1, N), dtype=torch.long))[0])  # all-Cu, x = 0
    e_shift = np.full(n_cond, e_cu)

    energy = np.empty((n_cond, n_blocks, W, n_samples))
    spin = np.empty((n_cond, n_blocks, W, n_samples))
    shape = (n_cond, n_blocks, W, n_samples, N) if keep_states else (0, 0, 0, 0, 0)
    states = np.empty(shape, dtype=np.uint8)
    psum = np.zeros((n_cond, n_blocks, W, 4))
    avg = np.empty((n_cond, n_blocks, W, n_samples, 4))
    ex_stats = np.zeros((n_cond, n_blocks, W, 2), dtype=np.int64)
    total = burn + n_samples * thin
    chunk = _progress_chunk(total) if progress else total
    with Progress(total, f"metropolis {system.size}", "sweeps", enabled=progress) as bar:
        for s0 in range(0, total, chunk):
            s1 = min(total, s0 + chunk)
            ce_run(
                x, cnt, ssum, beta, mu, window, st0, st1, sq0, sq1, *tab, ft.coef_c0, ft.coef_c1,
                ladders, lad_len, ex0, ex1, exchange_every, e_shift,
                s0, s1, burn, thin, energy, spin, states, psum, avg, ex_stats,
            )  # fmt: skip
            bar.update(s1 - s0)
    # the tracked energies are exact; prove it on the final states
    x_end = np.ascontiguousarray(x[:, :, :N, :].transpose(0, 1, 3, 2)).reshape(-1, N)
    e_end = system.energy(torch.from_numpy(x_end)).numpy().reshape(n_cond, n_blocks, W)
    e_track = _energies_from_counts(ft, cnt, ssum)
    err = np.abs(e_end - e_track).max()
    if not err <= ENERGY_CHECK_TOL:
        raise RuntimeError(
            f"tracked CE energies differ from CuAuSystem.energy by {err:.3g} eV at the end of the "
            f"run (tolerance {ENERGY_CHECK_TOL:g}): the flip tables and energies disagree"
        )
    return {
        "energy": energy.reshape(n_cond, M, n_samples)[:, :n_chains],
        "spin_sum": spin.reshape(n_cond, M, n_samples)[:, :n_chains],
        "states": states.reshape(n_cond, M, n_samples, N)[:, :n_chains] if keep_states else None,
        "averages": avg.reshape(n_cond, M, n_samples, 4)[:, :n_chains],
        "energy_shift": e_shift,
        "exchange": ex_stats.reshape(n_cond, M, 2)[:, :n_chains],
    }
