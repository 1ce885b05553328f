"""Free energies where nothing is exact: field reweighting (Ising) and β integration (any system).

Exact references stop at the row transfer matrix (``L <= 14``, every field) and Kaufman's closed
form (any ``L``, ``h = 0`` only). Past them this module builds ``f = −T ln Z / N`` (DESIGN §3, field
term in Z, ``J = k_B = 1`` unless given) from the project's batched Metropolis
(:func:`lattherm.reference.mcmc.run_metropolis`, replica exchange along T, mixed starts):

:func:`ising_field_integration` (method ``field_integration``):
    ``f(T, h) = f(T, 0) − (T/N) ln[Z(T, h)/Z(T, 0)]`` with ``f(T, 0)`` from Kaufman (exact) and
    ``ln Z(h)/Z(0)`` by multistate reweighting (MBAR, Shirts & Chodera 2008) over a ladder of
    fields at each T. At fixed T two fields differ only by ``β Δh Σs``, so the MBAR runs on the
    histogram of ``Σs`` alone (``N + 1`` values) and gives ``ln Z(h)/Z(0)`` and ``m(h)`` directly,
    with no quadrature: this is ``f(T, 0) − ∫_0^h m dh'`` done exactly on the sampled
    distributions.

    **The small-h region.** Below T_c the finite torus has two sectors; ``m(h)`` rises from 0 to
    ``±m_s`` over ``h ~ 1/(β N m_s)``, and that region carries the ``ln 2 / N`` of the two
    sectors (T ln 2 / N is 2e-3 of f on 16x16 at T = 1.5; a uniform quadrature grid misses it).
    Here the symmetry ``P_h(Σs) = P_{−h}(−Σs)`` is exact and is used: every sampled field ``h > 0`` is also
    a state ``−h`` with the mirrored samples, and the ``h = 0`` samples are pooled with their
    mirror images. The ``h = 0`` state therefore holds both sectors with exactly equal weights
    even when no chain tunnels between them, and the rise of ``m`` near 0 is the reweighting of
    that symmetric, bimodal histogram, not a quadrature: ``ln Z(h)/Z(0) → β h N m_s − ln 2`` comes
    out of the sector weights by itself. The fields just above 0 (where both sectors matter and
    chains must tunnel) need the replica exchange along T to equilibrate; a state whose chains have
    not mixed in ``Σs`` (:func:`lattherm.reference.mcmc.mcmc_summary`: split-R̂, start families,
    drift) is left out of the pool, and the overlap test below says whether its neighbours still
    bridge the gap.

    **Ladders.** Fields: 0, a geometric ladder from ``h_min`` (default ``1/N``) with ratio
    ``h_ratio`` up to the largest requested ``|h|``, and every requested ``|h|`` (:func:`field_ladder`).
    Temperatures: every requested T plus the replica-exchange temperatures of
    :func:`exchange_temperatures` (spaced by the exact h = 0 energy fluctuations, up to above T_c
    where the sectors mix), shared by all fields.

    **Errors and convergence.** Jackknife over groups of chain slots (slots are independent
    Markov chains across the whole run; the MBAR is re-solved without each group), so ``f_err``
    is statistical and covers the correlations through the exchanges. ``converged`` requires: the
    target field's own chains mixed (``Σs`` and ``|Σs|``); on the path from 0 to the field, the
    overlap coefficient ``Σ_s min(p_i(s), p_j(s))`` of neighbouring fields' ``Σs`` distributions (as
    MBAR estimates them: 1 for equal, 0 for disjoint) at least ``min_overlap`` (0.03: below it few
    samples bridge two states, the reweighting error bars are not trustworthy, and a too-coarse
    ladder is flagged); a finite error resting on at least ``MIN_ERROR_ESS`` independent
    fluctuations. Ferromagnetic ``J > 0`` (Kaufman's form).

:func:`beta_integration` (method ``beta_integration``; any two-state system, the Ising torus by
:func:`ising_beta_integration`), the textbook baseline, and the reference of spin glasses past
enumeration and the transfer matrix:
    ``ln Z(β) = N ln 2 − ∫_0^β ⟨E_int − h Σs⟩_β' dβ'`` with ``⟨H⟩`` from Metropolis (every sweep
    measured) at the nodes of :func:`beta_nodes`: composite Simpson on panels between the
    requested β (each cut into a multiple of 4 equal steps <= ``d_beta``), ``⟨H⟩ = 0`` at ``β = 0``
    exactly. The discretisation check compares the same data integrated by Simpson on every other
    node: ``D = |S_h − S_2h|``; the estimate is Richardson's ``D / 15``, or all of ``D`` beyond twice
    its jackknife noise where that is larger (a coarse grid is not yet in the asymptotic regime,
    where ``D / 15`` underestimates: on 8x8 with 4 steps from β = 0.44 to 0.67 by 2x), added in
    quadrature to the jackknife error; ``converged`` also requires it not to dominate
    (``f_err_quad <= f_err_stat``). The default ``d_beta = 0.015`` keeps it far below the
    statistical error (rule applied to exact integrands: transfer matrix 8x8-12x12 at h = 0.05,
    Kaufman up to 32x32; at 0.03 Simpson's error on 12x12, h = 0.05, is 2e-5 of f but ``D`` is 4e-4
    and would flag). At a fixed total of sweeps the statistical error hardly depends on the number of
    nodes, so a fine grid costs only burn-in. The cost (wall time, attempted spin flips) is in every
    row, to compare with neural estimates at equal wall time.

Both return one row per requested ``(T, field)``; ``f(T, −h) = f(T, h)``, ``m(T, −h) = −m(T, h)``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from lattherm.reference.exact import T_C, ising_kaufman
from lattherm.reference.mcmc import (
    MIN_ERROR_ESS,
    MCMCResult,
    _error_from_loo,
    _slot_groups,
    mcmc_summary,
    run_metropolis,
)
from lattherm.seeds import derived_seed
from lattherm.systems.base import System
from lattherm.systems.ising import IsingSystem

__all__ = [
    "FIELD_COLUMNS",
    "BETA_COLUMNS",
    "exchange_temperatures",
    "field_ladder",
    "beta_nodes",
    "field_mbar",
    "ising_field_integration",
    "ising_beta_integration",
    "beta_integration",
]

#: leading columns of :func:`ising_field_integration` (more follow: see its docstring)
FIELD_COLUMNS = ("system", "size", "T", "field", "f", "f_err", "m", "m_err", "converged", "method")
#: leading columns of :func:`beta_integration`
BETA_COLUMNS = ("system", "size", "T", "field", "f", "f_err", "f_err_stat", "f_err_quad", "converged", "method")
#: neighbour overlap coefficient below which reweighting error bars are not claimed
MIN_OVERLAP = 0.03
#: bytes per (condition, chain, sample) that run_metropolis keeps (energy, Σs, 4 sweep averages)
_BYTES_PER_SAMPLE = 48


# ----------------------------------------------------------------------------- ladders
def _check_L(L) -> int:
    if isinstance(L, bool) or int(L) != L or L < 2:
        raise ValueError(f"lattice side L must be an integer >= 2, got {L!r}")
    return int(L)


def _check_T(T) -> np.ndarray:
    T = np.unique(np.asarray(np.ravel(T), dtype=np.float64))
    if T.size == 0 or np.any(~(np.isfinite(T) & (T > 0))):
        raise ValueError(f"temperatures must be finite and > 0 (and not empty), got {T.tolist()}")
    return T


def _check_fields(field) -> np.ndarray:
    h = np.unique(np.asarray(np.ravel(field), dtype=np.float64))
    if h.size == 0 or np.any(~np.isfinite(h)):
        raise ValueError(f"fields must be finite (and not empty), got {h.tolist()}")
    return h


def _check_chains(n_chains) -> None:
    if isinstance(n_chains, bool) or int(n_chains) != n_chains or n_chains < 2:
        raise ValueError(f"n_chains must be an integer >= 2 (errors are the spread between chains), got {n_chains!r}")


def exchange_temperatures(L: int, T, *, J: float = 1.0, spacing: float = 1.2, T_max: float | None = None) -> np.ndarray:
    """Replica-exchange temperatures for the ``L x L`` torus: every ``T`` plus a ladder from
    ``min(T)`` up to ``max(max(T), T_max)`` (default ``T_max = 1.6 T_c``, where the sectors mix
    freely) spaced so that ``Δβ · σ_E <= spacing``, with ``σ_E = √(c N)/β`` the exact h = 0 energy
    fluctuation (Kaufman). Neighbours then accept exchanges with probability about
    ``erfc(spacing / 2)`` (0.4 at the default 1.2). Sorted ascending."""
    L = _check_L(L)
    T = _check_T(T)
    if not (np.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be > 0, got {spacing!r}")
    N = L * L
    t_hi = max(float(T.max()), 1.6 * T_C * J if T_max is None else float(T_max))

    def sigma(beta: float) -> float:
        c = float(ising_kaufman(L, [1.0 / beta], J=J)["c"][0])
        return math.sqrt(max(c, 1e-12) * N) / beta

    betas = [1.0 / float(T.min())]
    b_lo = 1.0 / t_hi
    while betas[-1] > b_lo:
        b = betas[-1]
        mid = b - 0.5 * spacing / sigma(b)  # midpoint rule for the step
        nxt = b - spacing / sigma(max(mid, 0.5 * b))
        betas.append(max(nxt, b_lo))
    ladder = 1.0 / np.array(betas)
    # drop ladder points within a tenth of a step of a requested T, then merge
    keep = [t for t in ladder if np.min(np.abs(1.0 / t - 1.0 / T)) > 0.1 * spacing / sigma(1.0 / t)]
    return np.unique(np.concatenate([T, np.array(keep)]))


def field_ladder(field, L: int, *, h_min: float | None = None, ratio: float = 1.4) -> np.ndarray:
    """The fields ``>= 0`` sampled at every temperature: 0, a geometric ladder ``h_min · ratio^k``
    (``h_min`` default ``1/N``) below the largest requested ``|field|``, and every requested
    ``|field|`` (ladder points closer than a quarter step to one are dropped). Sorted ascending."""
    L = _check_L(L)
    targets = np.unique(np.abs(_check_fields(field)))
    if not (np.isfinite(ratio) and ratio > 1):
        raise ValueError(f"the ladder ratio must be > 1, got {ratio!r}")
    h_min = 1.0 / (L * L) if h_min is None else float(h_min)
    if not (np.isfinite(h_min) and h_min > 0):
        raise ValueError(f"h_min must be > 0, got {h_min!r}")
    h_max = float(targets.max())
    geo = []
    h = h_min
    while h < h_max:
        geo.append(h)
        h *= ratio
    geo = np.array(geo)
    pos = targets[targets > 0]
    if pos.size and geo.size:
        near = np.min(np.abs(np.log(geo[:, None] / pos[None, :])), axis=1) < 0.25 * math.log(ratio)
        geo = geo[~near]
    return np.unique(np.concatenate([[0.0], geo, targets]))


@dataclasses.dataclass(frozen=True)
class BetaRule:
    """Nodes and weights of :func:`beta_nodes`: ``∫_0^{β_t} g ≈ fine[t] @ g(nodes)``
    (composite Simpson) and ``coarse[t] @ g(nodes)`` (Simpson on every other node, for
    Richardson's estimate ``|fine − coarse| / 15``); ``beta[t]`` the targets (ascending)."""

    nodes: np.ndarray
    beta: np.ndarray
    fine: np.ndarray
    coarse: np.ndarray


def _simpson(n: int, width: float) -> np.ndarray:
    w = np.ones(n + 1)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return w * width / (3.0 * n)


def beta_nodes(T, d_beta: float = 0.015) -> BetaRule:
    """Simpson nodes on ``[0, max β]`` for thermodynamic integration over β: panels between ``0``
    and the requested ``β = 1/T`` (ascending), each cut into ``4m`` equal steps of at most
    ``d_beta``, so that both Simpson on every node and Simpson on every other node apply."""
    T = _check_T(T)
    if not (np.isfinite(d_beta) and d_beta > 0):
        raise ValueError(f"d_beta must be > 0, got {d_beta!r}")
    beta = np.sort(1.0 / T)
    edges = np.concatenate([[0.0], beta])
    nodes = [np.array([0.0])]
    panels = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        m = 4 * max(1, math.ceil((b - a) / (4.0 * d_beta)))
        x = np.linspace(a, b, m + 1)
        panels.append((sum(len(n) for n in nodes) - 1, m, b - a))
        nodes.append(x[1:])
    nodes = np.concatenate(nodes)
    nodes[np.searchsorted(nodes, beta)] = beta  # exact targets
    fine = np.zeros((beta.size, nodes.size))
    coarse = np.zeros_like(fine)
    for t, (start, m, width) in enumerate(panels):
        if t > 0:
            fine[t], coarse[t] = fine[t - 1], coarse[t - 1]
        fine[t, start : start + m + 1] += _simpson(m, width)
        coarse[t, start : start + m + 1 : 2] += _simpson(m // 2, width)
    return BetaRule(nodes=nodes, beta=beta, fine=fine, coarse=coarse)


# ----------------------------------------------------------------------------- MBAR over fields
def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    mx = np.max(a, axis=axis, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    return np.squeeze(mx, axis=axis) + np.log(np.sum(np.exp(a - mx), axis=axis))


def _mbar_solve(A: np.ndarray, counts: np.ndarray, mult: np.ndarray, f0: np.ndarray,
                max_iter: int = 200, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """MBAR free energies ``f`` (``f[0] = 0``, ``Z_k ∝ e^{−f_k}``) by Newton steps with a
    backtracking line search on MBAR's convex objective ``Σ_u mult_u ln Σ_l N_l e^{f_l + A_lu} −
    Σ_k N_k f_k`` (robust from a poor start, where plain Newton can stall between states that do not
    overlap). ``A (S, U)``: log Boltzmann factors of every distinct sampled value in every state,
    ``mult (U,)`` samples per value, ``counts (S,)`` samples per state. Returns ``f`` and ``log_d
    (U,)``, ``ln Σ_l N_l e^{f_l + A_lu}``. Raises ``RuntimeError`` if it does not converge."""
    log_n = np.log(counts)[:, None]

    def objective(f):
        X = log_n + f[:, None] + A
        log_d = _logsumexp(X, axis=0)
        return mult @ log_d - counts @ f, X, log_d

    f = np.asarray(f0, dtype=np.float64) - f0[0]
    F, X, log_d = objective(f)
    for _ in range(max_iter):
        P = np.exp(X - log_d[None, :])  # (S, U) share of each state in each value's denominator
        occ = P @ mult
        g = occ - counts
        if np.max(np.abs(g) / counts) < tol:
            return f, log_d
        PM = P * mult
        H = np.diag(occ) - PM @ P.T
        Hs, gs = H[1:, 1:], g[1:]
        ridge = 1e-12 * max(float(np.trace(Hs)), 1.0)
        try:
            step = np.linalg.solve(Hs + ridge * np.eye(Hs.shape[0]), -gs)
        except np.linalg.LinAlgError:
            step = -gs / np.maximum(np.diag(Hs), ridge)
        d = np.concatenate([[0.0], step])
        t, slope = 1.0, float(g @ d)
        noise = 1e-13 * (abs(F) + float(mult @ np.abs(log_d)))  # rounding of the objective
        while True:
            F_new, X_new, log_d_new = objective(f + t * d)
            if F_new <= F + 1e-4 * t * slope + noise or t < 1e-8:
                break
            t *= 0.5
        if t < 1e-8:
            break
        f, F, X, log_d = f + t * d, F_new, X_new, log_d_new
    raise RuntimeError(
        f"MBAR over the field ladder did not converge (largest relative gradient {np.max(np.abs(g) / counts):.2g})"
    )


class _FieldStates:
    """The mirrored MBAR states of one temperature (see :func:`field_mbar`)."""

    def __init__(self, counts: np.ndarray, fields: np.ndarray, beta: float):
        n_f, G, U1 = counts.shape
        N = U1 - 1
        pos = fields > 0
        self.h = np.concatenate([fields, -fields[pos]])
        hist = np.concatenate([counts, counts[pos, :, ::-1]]).astype(np.float64)  # (S, G, N+1)
        zero = np.flatnonzero(fields == 0)
        for z in zero:
            hist[z] = hist[z] + hist[z, :, ::-1]
        # reference state first: 0 if sampled, else the smallest |h|
        ref = int(zero[0]) if zero.size else int(np.argmin(np.abs(self.h)))
        order = np.concatenate([[ref], np.delete(np.arange(self.h.size), ref)])
        self.h, hist = self.h[order], hist[order]
        visited = hist.sum(axis=(0, 1)) > 0
        self.M = (2.0 * np.arange(N + 1) - N)[visited]
        self.hist = hist[:, :, visited]  # (S, G, U)
        self.beta, self.N, self.G = float(beta), N, G
        self.A = self.beta * self.h[:, None] * self.M[None, :]

    def first_guess(self, hist: np.ndarray) -> np.ndarray:
        """``f`` from one-sided exponential averages between neighbouring fields (the mean of the
        forward and the reverse estimate), chained along increasing ``h``."""
        per_state = hist.sum(axis=1)  # (S, U)
        with np.errstate(divide="ignore"):
            log_p = np.log(per_state) - np.log(per_state.sum(axis=1, keepdims=True))
        srt = np.argsort(self.h)
        g = np.zeros(self.h.size)
        for a, b in zip(srt[:-1], srt[1:], strict=True):
            fwd = _logsumexp(log_p[a] + self.A[b] - self.A[a], axis=0)  # ln Z_b/Z_a from a's samples
            rev = -_logsumexp(log_p[b] + self.A[a] - self.A[b], axis=0)  # from b's samples
            g[b] = g[a] + 0.5 * (fwd + rev)
        f = -g
        return f - f[0]

    def solve(self, drop: int | None = None, f0: np.ndarray | None = None):
        hist = self.hist if drop is None else np.delete(self.hist, drop, axis=1)
        counts = hist.sum(axis=(1, 2))
        mult = hist.sum(axis=(0, 1))
        if f0 is None:
            f0 = self.first_guess(hist)
        f, log_d = _mbar_solve(self.A, counts, mult, f0)
        return f, counts, mult, log_d

    def distributions(self, f: np.ndarray, mult: np.ndarray, log_d: np.ndarray) -> np.ndarray:
        """``(S, U)`` MBAR's estimate of every state's distribution of ``Σs``."""
        with np.errstate(divide="ignore"):
            return np.exp(np.log(mult)[None, :] + f[:, None] + self.A - log_d[None, :])

    def predict(self, h: np.ndarray, mult: np.ndarray, log_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ln Z(h) − ln Z(0), m(h))`` at any fields ``h`` from a solution."""
        with np.errstate(divide="ignore"):
            base = np.log(mult)[None, :] - log_d[None, :]
        a = base + self.beta * np.concatenate([[0.0], h])[:, None] * self.M[None, :]
        g = _logsumexp(a, axis=1)
        p = np.exp(a - g[:, None])
        m = (p @ self.M) / self.N
        return g[1:] - g[0], m[1:]


def field_mbar(counts: np.ndarray, fields, beta: float, eval_fields) -> dict[str, np.ndarray]:
    """MBAR over a ladder of fields at one temperature, from histograms of ``Σs``.

    Args:
        counts: ``(n_fields, G, N + 1)`` how many samples at ladder field ``k`` of chain-slot
            group ``g`` had ``Σs = 2u − N`` (``u = 0..N``); groups are independent (jackknife).
        fields: ``(n_fields,)`` distinct ladder fields ``>= 0`` (ascending).
        beta: ``1/T``.
        eval_fields: fields ``>= 0`` where to report (sampled or not).

    Every state ``h > 0`` enters twice, as ``+h`` and as ``−h`` with mirrored samples, and the
    ``h = 0`` samples are pooled with their mirror images (exact: ``P_h(Σs) = P_{−h}(−Σs)``).

    Returns ``log_z`` (``ln Z(h)/Z(0)``), ``log_z_err``, ``m``, ``m_err``, ``error_ess`` (of
    ``log_z``, :func:`lattherm.reference.mcmc._error_from_loo`), ``overlap``: the smallest overlap
    coefficient ``Σ_s min(p_i(s), p_j(s))`` of MBAR's estimated ``Σs`` distributions (1 for equal
    distributions, 0 for disjoint ones: no sample bridges them) between neighbouring sampled fields
    on the path from 0 to the first sampled field >= ``h`` (0 beyond the largest sampled field),
    and ``neighbour_overlap``, those of the ladder from 0 up (``n_fields − 1`` values; one more,
    first, between ``∓h_1`` when 0 is not sampled).
    """
    counts = np.asarray(counts)
    fields = np.asarray(fields, dtype=np.float64)
    ev = np.asarray(eval_fields, dtype=np.float64)
    if counts.ndim != 3 or counts.shape[0] != fields.size or fields.size == 0:
        raise ValueError(f"counts must be (n_fields, G, N + 1) with n_fields = {fields.size}, got {counts.shape}")
    if np.any(fields < 0) or np.any(np.diff(fields) <= 0) or np.any(ev < 0):
        raise ValueError("fields must be distinct, >= 0 and ascending; eval_fields >= 0")
    if np.any(counts.sum(axis=(1, 2)) == 0):
        raise ValueError("every ladder field needs samples")
    st = _FieldStates(counts, fields, beta)
    f, n_k, mult, log_d = st.solve()
    log_z, m = st.predict(ev, mult, log_d)
    # jackknife: drop one slot group, re-solve from the full solution
    G = st.G
    loo_z = np.full((ev.size, G), np.nan)
    loo_m = np.full((ev.size, G), np.nan)
    if G >= 2:
        for g in range(G):
            if np.any(np.delete(st.hist, g, axis=1).sum(axis=(1, 2)) == 0):
                continue
            _, _, mult_g, log_d_g = st.solve(drop=g, f0=f)
            loo_z[:, g], loo_m[:, g] = st.predict(ev, mult_g, log_d_g)
    constant = np.zeros(ev.size, dtype=bool)
    z_err, ess = _error_from_loo(loo_z, constant)
    m_err, _ = _error_from_loo(loo_m, constant)
    z_err = np.where(ev == 0, 0.0, z_err)
    # overlap between neighbouring sampled fields >= 0 (the mirror of the smallest bridges 0)
    P = st.distributions(f, mult, log_d)
    idx = {float(h): i for i, h in enumerate(st.h)}
    path = [idx[float(h)] for h in fields]
    if fields[0] > 0:  # no h = 0 state: −h_1 and h_1 bridge it
        path = [idx[-float(fields[0])]] + path
    nb = np.array([np.minimum(P[a], P[b]).sum() for a, b in zip(path[:-1], path[1:], strict=True)])
    overlap = np.empty(ev.size)
    lo = 0 if fields[0] == 0 else 1
    for i, h in enumerate(ev):
        k = int(np.searchsorted(fields, h))  # first sampled field >= h
        if k >= fields.size:
            overlap[i] = 0.0
        else:
            seg = nb[: k + lo] if (k + lo) > 0 else nb[:0]
            overlap[i] = float(seg.min()) if seg.size else 1.0
    return {
        "log_z": log_z,
        "log_z_err": z_err,
        "m": m,
        "m_err": m_err,
        "error_ess": ess,
        "overlap": overlap,
        "neighbour_overlap": nb,
    }


# ----------------------------------------------------------------------------- running chains
def _run_fields(
    system: System, T_run: np.ndarray, fields: np.ndarray, *, n_chains: int, n_samples: int,
    burn_in_sweeps: int, thin_sweeps: int, exchange_sweeps: int, seed: int, progress: bool,
    max_memory_gb: float, consume: Callable[[MCMCResult, np.ndarray], None], cluster_updates: int = 0,
) -> int:  # fmt: skip
    """Run Metropolis with replica exchange along ``T_run`` at every field, in chunks of fields
    that keep at most ``max_memory_gb`` of samples; ``consume(result, chunk_fields)`` reads each
    chunk (result conditions: T outer, field inner). Returns the attempted spin flips."""
    per_field = T_run.size * n_chains * n_samples * _BYTES_PER_SAMPLE
    chunk = max(1, int(max_memory_gb * 2**30 // per_field))
    flips = 0
    for k, start in enumerate(range(0, fields.size, chunk)):
        hs = fields[start : start + chunk]
        TT, HH = np.meshgrid(T_run, hs, indexing="ij")
        res = run_metropolis(
            system, TT.ravel(), HH.ravel(), n_chains=n_chains, n_samples=n_samples,
            burn_in_sweeps=burn_in_sweeps, thin_sweeps=thin_sweeps, seed=derived_seed(seed, k),
            start="mixed", keep_states=False, progress=progress, replica_exchange=True,
            exchange_sweeps=exchange_sweeps, cluster_updates=cluster_updates,
        )  # fmt: skip
        flips += TT.size * n_chains * (burn_in_sweeps + n_samples * thin_sweeps) * system.n_sites
        consume(res, hs)
    return flips


def _claims(result: MCMCResult) -> dict[str, np.ndarray]:
    """Per condition, the sweeps estimates and which error bars :func:`mcmc_summary` claims
    (split-R̂, start families, drift, error ESS), without its ladder estimate (the reweighting
    here does not use it, and it is the slow part)."""
    s = mcmc_summary(dataclasses.replace(result, replica_exchange=False))
    out = {q: s[q] for q in ("u", "u_err", "c", "c_err", "m", "m_err", "abs_m", "abs_m_err")}
    for q in ("u", "c", "m", "abs_m"):
        out[f"ok_{q}"] = np.isfinite(s[f"{q}_err"])
    out["diagnosis"] = s["diagnosis"]
    return out


# ----------------------------------------------------------------------------- field integration
def ising_field_integration(
    L: int,
    T,
    field,
    *,
    J: float = 1.0,
    n_chains: int = 64,
    n_samples: int = 2000,
    burn_in_sweeps: int = 1000,
    thin_sweeps: int = 1,
    exchange_sweeps: int = 1,
    h_min: float | None = None,
    h_ratio: float = 1.4,
    exchange_spacing: float = 1.2,
    exchange_T_max: float | None = None,
    min_overlap: float = MIN_OVERLAP,
    seed: int = 0,
    progress: bool = False,
    max_memory_gb: float = 0.5,
) -> pd.DataFrame:
    """``f(T, h)`` of the ``L x L`` Ising torus by field reweighting from Kaufman's ``f(T, 0)``
    (module docstring), one row per ``(T, field)`` of the outer product, sorted by T then field.

    Args:
        L, T, field, J: the torus, the requested temperatures and fields (any sign), the coupling.
        n_chains, n_samples, burn_in_sweeps, thin_sweeps, exchange_sweeps: the Metropolis run at
            every (ladder temperature, ladder field); the reweighting uses the ``n_samples`` samples
            of each chain (``thin_sweeps`` apart), the convergence tests every sweep.
        h_min, h_ratio: the field ladder (:func:`field_ladder`).
        exchange_spacing, exchange_T_max: the temperature ladder (:func:`exchange_temperatures`).
        min_overlap: smallest neighbour overlap coefficient on a row's path for ``converged``.
        seed: seed of every chain (each chunk of fields derives its own).
        max_memory_gb: samples kept at once (fields are run in chunks below it).

    Columns: ``system, size, T, field, f, f_err, m, m_err, converged, method`` (``=
    "field_integration"``), then ``f0`` (Kaufman's ``f(T, 0)``), ``log_z_ratio`` (``ln Z(h)/Z(0)``)
    and its ``_err``, ``u, u_err, c, c_err`` (Metropolis at the row's field, Kaufman at 0; NaN
    errors where not claimed), ``overlap`` (smallest neighbour overlap on the path), ``error_ess``,
    ``n_fields`` (ladder states in the reweighting at that T), ``excluded_fields`` (the ladder fields
    left out at that T as not mixed, with the reason), ``n_temperatures`` (of the exchange
    ladder), ``n_chains``, ``n_samples`` (per chain), ``wall_s`` and ``spin_flips`` (the whole run:
    one run gives every row), ``diagnosis`` (empty when converged). ``field = 0`` rows are
    Kaufman's (``f_err = 0``, ``m = 0``).
    """
    L = _check_L(L)
    T = _check_T(T)
    req = _check_fields(field)
    _check_chains(n_chains)
    N = L * L
    t0 = time.perf_counter()
    system = IsingSystem(L, J=J)
    T_run = exchange_temperatures(L, T, J=J, spacing=exchange_spacing, T_max=exchange_T_max)
    ladder = field_ladder(req, L, h_min=h_min, ratio=h_ratio) if np.any(req != 0) else np.array([0.0])
    t_idx = np.searchsorted(T_run, T)
    G = int(_slot_groups(n_chains).max()) + 1
    grp = _slot_groups(n_chains)
    hist = np.zeros((T.size, ladder.size, G, N + 1), dtype=np.int64)
    claims = {k: np.full((T.size, ladder.size), np.nan) for k in ("u", "u_err", "c", "c_err")}
    ok_m = np.zeros((T.size, ladder.size), dtype=bool)
    why = np.full((T.size, ladder.size), "", dtype=object)

    def consume(res: MCMCResult, hs: np.ndarray) -> None:
        cl = _claims(res)
        n_h = hs.size
        for j, h in enumerate(hs):
            li = int(np.searchsorted(ladder, h))
            for ti, tr in enumerate(t_idx):
                c = tr * n_h + j
                u = ((res.spin_sum[c] + N) / 2).astype(np.int64)  # (K, n)
                flat = grp[:, None] * (N + 1) + u
                hist[ti, li] = np.bincount(flat.ravel(), minlength=G * (N + 1)).reshape(G, N + 1)
                for k in claims:
                    claims[k][ti, li] = cl[k][c]
                ok = cl["ok_abs_m"][c] & (cl["ok_m"][c] if h > 0 else True)
                ok_m[ti, li] = ok
                why[ti, li] = "" if ok else str(cl["diagnosis"][c])

    flips = 0
    if np.any(req != 0):  # field 0 alone is Kaufman's
        flips = _run_fields(
            system, T_run, ladder, n_chains=n_chains, n_samples=n_samples, burn_in_sweeps=burn_in_sweeps,
            thin_sweeps=thin_sweeps, exchange_sweeps=exchange_sweeps, seed=seed, progress=progress,
            max_memory_gb=max_memory_gb, consume=consume,
        )  # fmt: skip
    kauf = ising_kaufman(L, T, J=J)
    rows = []
    for ti, t in enumerate(T):
        targets = np.unique(np.abs(req))
        use = ok_m[ti]
        res, fail = None, ""
        excluded = "; ".join(f"{h:g}: {why[ti, i]}" for i, h in enumerate(ladder) if not use[i])
        if use.any():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    res = field_mbar(hist[ti, use], ladder[use], 1.0 / t, targets)
            except (RuntimeError, np.linalg.LinAlgError) as err:
                res = None
                fail = f"MBAR failed ({err})"
        else:
            fail = "no ladder field mixed"
        for h in req:
            a = abs(h)
            li = int(np.searchsorted(ladder, a))
            k = int(np.searchsorted(targets, a))
            row = {"system": "ising", "size": f"{L}x{L}", "T": t, "field": h, "f0": kauf["f"][ti]}
            if a == 0:
                row.update(f=kauf["f"][ti], f_err=0.0, m=0.0, m_err=0.0, log_z_ratio=0.0, log_z_ratio_err=0.0,
                           u=kauf["u"][ti], u_err=0.0, c=kauf["c"][ti], c_err=0.0, overlap=1.0,
                           error_ess=np.inf, converged=True, diagnosis="")  # fmt: skip
            else:
                sign = 1.0 if h > 0 else -1.0
                reasons = []
                if res is None:
                    lz = lz_err = m = m_err = ov = ess = np.nan
                    reasons.append(fail)
                else:
                    lz, lz_err = res["log_z"][k], res["log_z_err"][k]
                    m, m_err = sign * res["m"][k], res["m_err"][k]
                    ov, ess = res["overlap"][k], res["error_ess"][k]
                if not ok_m[ti, li]:
                    reasons.append(f"chains at field {a:g} not mixed: {why[ti, li]}")
                if res is not None and not ov >= min_overlap:
                    reasons.append(
                        f"MBAR overlap {ov:.2g} < {min_overlap:g} on the path from 0 (refine the field ladder)"
                    )
                if res is not None and not (np.isfinite(lz_err) and ess >= MIN_ERROR_ESS):
                    reasons.append(f"error not claimable (error ESS {ess:.2g})")
                row.update(
                    f=kauf["f"][ti] - t * lz / N, f_err=t * lz_err / N, m=m, m_err=m_err,
                    log_z_ratio=lz, log_z_ratio_err=lz_err,
                    u=claims["u"][ti, li], u_err=claims["u_err"][ti, li],
                    c=claims["c"][ti, li], c_err=claims["c_err"][ti, li],
                    overlap=ov, error_ess=ess, converged=not reasons, diagnosis="; ".join(reasons),
                )  # fmt: skip
            row.update(n_fields=int(use.sum()), excluded_fields=excluded, n_temperatures=T_run.size,
                       n_chains=n_chains, n_samples=n_samples)  # fmt: skip
            rows.append(row)
    wall = time.perf_counter() - t0
    table = pd.DataFrame(rows)
    table["method"] = "field_integration"
    table["wall_s"] = wall
    table["spin_flips"] = flips
    rest = [c for c in table.columns if c not in FIELD_COLUMNS and c != "diagnosis"]
    table = table[list(FIELD_COLUMNS) + rest + ["diagnosis"]]
    table["converged"] = table["converged"].astype(bool)
    return table.sort_values(["T", "field"], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- β integration
def ising_beta_integration(L: int, T, field=0.0, *, J: float = 1.0, **settings) -> pd.DataFrame:
    """:func:`beta_integration` on the ``L x L`` Ising torus with coupling ``J``."""
    return beta_integration(IsingSystem(_check_L(L), J=J), T, field, **settings)


def beta_integration(
    system: System,
    T,
    field=0.0,
    *,
    d_beta: float = 0.015,
    n_chains: int = 64,
    n_samples: int = 100,
    burn_in_sweeps: int = 500,
    thin_sweeps: int = 10,
    exchange_sweeps: int = 1,
    seed: int = 0,
    progress: bool = False,
    max_memory_gb: float = 0.5,
    cluster_updates: int = 0,
) -> pd.DataFrame:
    """``f(T, h)`` of any two-state ``system`` by thermodynamic integration over β from β = 0
    (module docstring), one row per ``(T, field)`` of the outer product, sorted by T then field.

    Every field (its ``|h|``; the system must be symmetric under the global flip with ``h → −h``,
    as the Ising model and the spin glasses are) is one replica-exchange ladder over the nodes of
    :func:`beta_nodes` (``d_beta``); ``⟨E_int − h Σs⟩`` at a node averages every sweep after
    burn-in (``n_samples · thin_sweeps`` sweeps per chain) where the update measures every sweep
    (the numba kernels), else the ``n_samples`` samples of each chain. Errors: jackknife over groups
    of chain slots of the whole integral (nodes are correlated through the exchanges), plus
    Richardson's discretisation estimate in quadrature.

    Columns: ``system, size, T, field, f, f_err, f_err_stat, f_err_quad, converged, method`` (``=
    "beta_integration"``), then ``log_z`` and its ``_err``, ``u, u_err, m, m_err`` (Metropolis at
    the row's node), ``error_ess``, ``n_nodes``, ``d_beta``, ``n_chains``, ``sweeps`` (per chain
    and node, burn-in included), ``wall_s`` and ``spin_flips`` (the run of that field: one run
    gives every T), ``diagnosis``. ``cluster_updates``: Wolff moves per chain after every sweep
    (Ising only; :func:`lattherm.reference.mcmc.run_metropolis`), the baseline a physicist picks
    near T_c; ``spin_flips`` counts the local attempts only.
    """
    T = _check_T(T)
    req = _check_fields(field)
    _check_chains(n_chains)
    N = system.n_sites
    rule = beta_nodes(T, d_beta)
    T_nodes = 1.0 / rule.nodes[1:]  # descending T; β = 0 is exact (⟨H⟩ = 0)
    order = np.argsort(T_nodes)
    T_run = T_nodes[order]  # ascending, as run_metropolis orders its ladders
    node_of_run = 1 + order  # node index of each run temperature
    grp = _slot_groups(n_chains)
    G = int(grp.max()) + 1
    fields = np.unique(np.abs(req))
    rows = []
    for fi, h in enumerate(fields):
        t0 = time.perf_counter()
        H_mean = np.zeros(rule.nodes.size)
        H_loo = np.zeros((rule.nodes.size, G))
        node_ok = np.ones(rule.nodes.size, dtype=bool)
        node_why = np.full(rule.nodes.size, "", dtype=object)
        node_obs = {k: np.full(rule.nodes.size, np.nan) for k in ("u", "u_err", "m", "m_err")}

        def consume(res: MCMCResult, hs: np.ndarray, h=h, H_mean=H_mean, H_loo=H_loo, node_ok=node_ok,
                    node_why=node_why, node_obs=node_obs) -> None:  # fmt: skip
            cl = _claims(res)
            if res.averages is not None:  # (n_cond, K, n, 4): sweep means of E − shift, (E − shift)², Σs, |Σs|
                avg = res.averages
                H = avg[..., 0] + res.energy_shift[:, None, None] - h * avg[..., 2]
            else:  # the generic update: the samples
                H = res.energy - h * res.spin_sum
            per_chain = H.mean(axis=2)  # (n_cond, K): equal sweeps per chain
            tot = per_chain.sum(axis=1)
            gsum = np.stack([per_chain[:, grp == g].sum(axis=1) for g in range(G)], axis=1)
            gcnt = np.array([(grp == g).sum() for g in range(G)])
            nodes = node_of_run
            H_mean[nodes] = tot / n_chains
            H_loo[nodes] = (tot[:, None] - gsum) / (n_chains - gcnt)[None, :]
            ok = cl["ok_u"] & ((cl["ok_m"] & cl["ok_abs_m"]) if h > 0 else True)
            node_ok[nodes] = ok
            node_why[nodes] = np.where(ok, "", cl["diagnosis"])
            for k in node_obs:
                node_obs[k][nodes] = cl[k]

        flips = _run_fields(
            system, T_run, np.array([h]), n_chains=n_chains, n_samples=n_samples,
            burn_in_sweeps=burn_in_sweeps, thin_sweeps=thin_sweeps, exchange_sweeps=exchange_sweeps,
            seed=derived_seed(seed, 1000 + fi), progress=progress, max_memory_gb=max_memory_gb,
            consume=consume, cluster_updates=cluster_updates,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        log_z = N * math.log(2.0) - rule.fine @ H_mean  # (n_targets,)
        log_z_coarse = N * math.log(2.0) - rule.coarse @ H_mean
        loo = N * math.log(2.0) - rule.fine @ H_loo  # (n_targets, G)
        z_err, ess = _error_from_loo(loo, np.zeros(rule.beta.size, dtype=bool))
        # Richardson, made safe where the rules are not yet asymptotic: a coarse-fine difference
        # beyond its own noise counts whole
        diff = np.abs(log_z - log_z_coarse)
        diff_err, _ = _error_from_loo((rule.coarse - rule.fine) @ H_loo, np.zeros(rule.beta.size, dtype=bool))
        quad = np.fmax(diff / 15.0, diff - 2.0 * np.nan_to_num(diff_err))
        for ti, b in enumerate(rule.beta):
            t = 1.0 / b
            node = int(np.flatnonzero(rule.nodes == b)[0])
            used = rule.fine[ti] != 0
            stat, qerr = t * z_err[ti] / N, t * quad[ti] / N
            reasons = []
            bad = np.flatnonzero(used & ~node_ok)
            if bad.size:
                reasons.append(
                    f"{bad.size} node(s) not mixed, e.g. T={1.0 / rule.nodes[bad[0]]:.4g}: {node_why[bad[0]]}"
                )
            if not (np.isfinite(stat) and ess[ti] >= MIN_ERROR_ESS):
                reasons.append(f"error not claimable (error ESS {ess[ti]:.2g})")
            if not qerr <= stat:
                reasons.append(f"discretisation estimate {qerr:.2g} > statistical error {stat:.2g} (lower d_beta)")
            for sign in (1.0, -1.0) if h > 0 else (1.0,):
                if not np.any(req == sign * h):
                    continue
                rows.append({
                    "system": system.name, "size": system.size, "T": t, "field": sign * h,
                    "f": -t * log_z[ti] / N, "f_err": math.hypot(stat, qerr), "f_err_stat": stat,
                    "f_err_quad": qerr, "converged": not reasons, "method": "beta_integration",
                    "log_z": log_z[ti], "log_z_err": z_err[ti],
                    "u": node_obs["u"][node], "u_err": node_obs["u_err"][node],
                    "m": sign * node_obs["m"][node], "m_err": node_obs["m_err"][node],
                    "error_ess": ess[ti], "n_nodes": int(used.sum()), "d_beta": float(d_beta),
                    "n_chains": n_chains, "sweeps": burn_in_sweeps + n_samples * thin_sweeps,
                    "wall_s": wall, "spin_flips": flips, "diagnosis": "; ".join(reasons),
                })  # fmt: skip
    table = pd.DataFrame(rows)
    table["converged"] = table["converged"].astype(bool)
    return table.sort_values(["T", "field"], kind="stable").reset_index(drop=True)
