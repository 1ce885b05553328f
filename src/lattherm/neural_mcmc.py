"""Neural MCMC: independent Metropolis–Hastings with the sampler as its proposal (DESIGN §5).

The proposals ``x_i ~ q`` are i.i.d. with exact ``log q(x_i)``; the chain moves from ``x`` to the
next proposal ``x'`` with probability ``min(1, w(x') / w(x))``, ``log w = −β(E_int − field Σs) −
log q``. Its stationary distribution is ``p`` exactly, whatever ``q`` (as long as ``q > 0`` where
``p > 0``): where the importance weights degenerate (NESS → 0), the chain sticks instead, its
autocorrelation time grows, and the error bars, ``σ √(τ / n)`` with Sokal's integrated
autocorrelation time, grow with it. A chain with fewer than :data:`MIN_EFFECTIVE` effective
samples (kept samples / τ, and at most its accepted moves + 1) is flagged ``converged = False``.

:func:`imh_chain` runs the chain over the proposals in their order; :func:`imh_thermo` gives the
per-site ``u, c, m, abs_m`` with their errors at one condition (``c = β² Var(E_int) / N`` with a
batch-means error).
"""

from __future__ import annotations

import numpy as np

from lattherm.reference.mcmc import integrated_autocorr_time

__all__ = ["MIN_EFFECTIVE", "imh_chain", "imh_thermo"]

#: effective samples (kept samples / τ) below which a chain's estimates are flagged
MIN_EFFECTIVE = 50
#: batches of the batch-means error of c
_BATCHES = 20


def imh_chain(log_w, *, generator: np.random.Generator) -> tuple[np.ndarray, float]:
    """The state of the independent Metropolis–Hastings chain after each proposal (indices into
    ``log_w``; the chain starts at proposal 0) and its acceptance rate."""
    log_w = np.asarray(log_w, dtype=np.float64)
    if log_w.ndim != 1 or len(log_w) < 2 or not np.all(np.isfinite(log_w)):
        raise ValueError(f"log_w must be a finite 1-D array of at least 2 proposals, got shape {log_w.shape}")
    log_u = np.log(generator.random(len(log_w)))
    idx = np.empty(len(log_w), dtype=np.int64)
    cur, accepted = 0, 0
    idx[0] = 0
    for i in range(1, len(log_w)):
        if log_u[i] < log_w[i] - log_w[cur]:
            cur, accepted = i, accepted + 1
        idx[i] = cur
    return idx, accepted / (len(log_w) - 1)


def _mean_and_error(series: np.ndarray) -> tuple[float, float, float]:
    """Mean, its error ``σ √(τ / n)`` and τ of one chain's series (a constant series: error 0, τ 1)."""
    if np.ptp(series) == 0:
        return float(series[0]), 0.0, 1.0
    tau = float(integrated_autocorr_time(series[None, :]))
    return float(series.mean()), float(series.std(ddof=1) * np.sqrt(tau / len(series))), tau


def imh_thermo(energy, spin_sum, log_q, T: float, field: float, n_sites: int, *, seed: int, k_B: float = 1.0,
               burn_in: float = 0.1) -> dict[str, float]:  # fmt: skip
    """Per-site ``u, c, m, abs_m`` with one-sigma errors from the independent Metropolis–Hastings
    chain over the proposals ``(energy, spin_sum, log_q)`` at ``(T, field)`` (module doc), after
    discarding the first ``burn_in`` fraction; with ``acceptance``, ``tau_E`` (the largest τ of
    the series, in proposals), ``n_effective`` and ``converged``."""
    E, M, log_q = (np.asarray(a, dtype=np.float64) for a in (energy, spin_sum, log_q))
    if not E.shape == M.shape == log_q.shape:
        raise ValueError(f"energy, spin_sum and log_q must have one shape, got {E.shape}, {M.shape}, {log_q.shape}")
    if not 0 <= burn_in < 1:
        raise ValueError(f"burn_in must be a fraction in [0, 1), got {burn_in!r}")
    beta = 1.0 / (k_B * float(T))
    log_w = -beta * (E - float(field) * M) - log_q
    idx, acceptance = imh_chain(log_w, generator=np.random.default_rng(seed))
    keep = idx[int(burn_in * len(idx)) :]
    e, m = E[keep] / n_sites, M[keep] / n_sites
    out: dict[str, float] = {"acceptance": acceptance}
    taus = []
    for name, series in (("u", e), ("m", m), ("abs_m", np.abs(m))):
        out[name], out[f"{name}_err"], tau = _mean_and_error(series)
        taus.append(tau)
    c = beta**2 * n_sites * e.var(ddof=1)
    batches = np.array_split(e, _BATCHES)
    c_b = np.array([beta**2 * n_sites * b.var(ddof=1) for b in batches])
    out["c"], out["c_err"] = float(c), float(c_b.std(ddof=1) / np.sqrt(_BATCHES))
    out["tau_E"] = max(taus)
    moves = int(np.count_nonzero(np.diff(keep)))  # a chain that never moves has constant series (τ = 1)
    out["n_effective"] = min(len(keep) / out["tau_E"], moves + 1.0)
    out["converged"] = bool(out["n_effective"] >= MIN_EFFECTIVE)
    return out
