"""Estimators from samples with exact log-probabilities (DESIGN §5), in log space throughout.

For samples ``x_i ~ q(·|T, field)`` with reported ``log q(x_i)`` and reduced energies
``ε_i = β (E_int(x_i) − field Σ s(x_i))``::

    log w_i = −ε_i − log q(x_i)
    F_var   = −(1/β) mean(log w) / N                     (an upper bound on f)
    F_NIS   = −(1/β) (logsumexp(log w) − log n) / N      (importance-sampled f)
    NESS    = (Σ w)² / (n Σ w²)                          (in (0, 1], 1 for q = p)

and self-normalised weights ``w̃_i = w_i / Σ w`` for ``u = Σ w̃ E_int / N``,
``c = β² Var_w̃(E_int) / N`` (interaction energy alone, DESIGN §3, units of k_B),
``m = Σ w̃ Σs / N`` and, for CuAu, ``x_au = (m + 1) / 2``. ``f`` is in the system's energy
units per site (Ising: J; CuAu: eV/atom). Errors (``*_err``) are bootstrap standard deviations
over resampled sample sets (seeded; ``n_boot = 0`` gives NaN errors); ``f_nis_err`` adds the
resolution of ``n`` draws, ``k_B T / (N n)``, in quadrature (a region below ~1/n of the mass goes
unseen, and the bootstrap cannot see it).

Two magnetisation sectors (DESIGN §3): a sampler that misses one Ising sector underestimates
``ln Z`` by ``ln 2``; use the symmetrised sampler (:func:`lattherm.sampling.sample`) below T_c.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lattherm.systems import REGISTRY
from lattherm.systems.base import reduced_energy

__all__ = [
    "log_weights",
    "log_Z_nis",
    "log_Z_bar",
    "bar_overlap",
    "chain_fit",
    "MIN_FIT_P",
    "f_var",
    "f_nis",
    "ness",
    "normalised_weights",
    "reweighted",
    "estimate_thermo",
    "estimate_by_condition",
]

#: least chi-square p-value of a :func:`chain_fit` for its nodes to be claimed
MIN_FIT_P = 1e-3
#: bootstrap replicates × samples held at once
_BOOT_CHUNK = 1 << 22


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _lse(a: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.log(np.sum(np.exp(a - m), axis=axis)) + np.squeeze(m, axis=axis)


def log_weights(log_q, reduced_energy) -> np.ndarray:
    """``log w = −β(E_int − field Σs) − log q`` (float64, one per sample)."""
    log_q, red = _np(log_q), _np(reduced_energy)
    if log_q.shape != red.shape or log_q.ndim != 1:
        raise ValueError(
            f"log_q and reduced_energy must be 1-D of equal length, "
            f"got {log_q.shape} and {red.shape}"
        )
    if not np.all(np.isfinite(log_q)):
        raise ValueError("log_q must be finite (a sample with q = 0 cannot have been drawn)")
    return -red - log_q


def log_Z_nis(log_w, axis: int = -1) -> np.ndarray:
    """``logsumexp(log w) − log n``: the importance-sampling estimate of ``ln Z``."""
    log_w = _np(log_w)
    return _lse(log_w, axis=axis) - np.log(log_w.shape[axis])


def _q_side(lw_q: np.ndarray, n_p: float, d: float, w_q: np.ndarray | None = None) -> float:
    """The q side of Bennett's equation at ``Δ = d``: ``Σ_q σ(lw_q − Δ − M)``, ``M = ln(n_q / n_p)``;
    ``w_q``: each value's count (a histogram of the draws: ``n_q = Σ w_q``)."""
    from scipy.special import expit

    n_q = len(lw_q) if w_q is None else float(np.sum(w_q))
    terms = expit(lw_q - d - np.log(n_q / n_p))
    return float(np.sum(terms if w_q is None else w_q * terms))


def _bar_solve(lw_q: np.ndarray, lw_p: np.ndarray, w_q: np.ndarray | None = None,
               w_p: np.ndarray | None = None) -> float:  # fmt: skip
    """The root ``Δ`` of Bennett's equation ``Σ_q σ(lw_q − Δ − M) = Σ_p σ(Δ + M − lw_p)``
    (``σ`` the logistic function, ``M = ln(n_q / n_p)``); the left side falls and the right side
    rises with ``Δ``, so the root is unique and bracketed by the log-weights' range. ``w_q, w_p``:
    the values' counts where the sides are given as histograms (values of zero count take no part)."""
    from scipy.optimize import brentq

    n_q = len(lw_q) if w_q is None else float(np.sum(w_q))
    n_p = len(lw_p) if w_p is None else float(np.sum(w_p))

    # the p side is the q side with the roles swapped: Σ_p σ(lw_p' − Δ' − M') for lw' = −lw, Δ' = −Δ
    def g(d: float) -> float:
        return _q_side(lw_q, n_p, d, w_q) - _q_side(-lw_p, n_q, -d, w_p)

    M = np.log(n_q / n_p)

    lo = min(lw_q.min(), lw_p.min()) - abs(M) - 50.0
    hi = max(lw_q.max(), lw_p.max()) + abs(M) + 50.0
    return float(brentq(g, lo, hi, xtol=1e-12, rtol=1e-14))


def log_Z_bar(log_w_q, log_w_p, *, groups_p=None, groups_q=None, n_boot: int = 0, seed: int = 0,
              paired: bool = False) -> tuple[float, float]:  # fmt: skip
    """Bennett's acceptance ratio (BAR) estimate of ``ln Z`` and its bootstrap error.

    ``log_w_q``: ``log w = log p̃ − log q`` of draws of ``q`` (normalised, exact ``log q``);
    ``log_w_p``: the same function on draws of ``p`` (e.g. equilibrated Markov chains). BAR is the
    minimum-variance estimate that uses both sides: it needs the two sides' distributions of
    ``log w`` to overlap, not ``q``'s alone to reach ``p``'s bulk, so it stays accurate where the
    importance weights of ``q`` degenerate (for Gaussian log-weights of variance σ² the sides sit
    σ standard deviations apart). Errors: the standard deviation over ``n_boot`` bootstrap
    replicates, resampling the ``q`` draws and, when ``groups_p`` labels the ``p`` draws by
    Markov chain, whole chains (so correlated draws of one chain are not counted as independent;
    ``groups_q`` does the same for ``q`` draws that come from chains); NaN for ``n_boot = 0``.
    ``paired``: group ``k`` of the two sides is one unit (e.g. chain ``k`` of two temperatures that
    exchange configurations), resampled together; the sides need the same number of groups.
    """
    lw_q, lw_p = _np(log_w_q).ravel(), _np(log_w_p).ravel()
    if len(lw_q) < 2 or len(lw_p) < 2 or not (np.isfinite(lw_q).all() and np.isfinite(lw_p).all()):
        raise ValueError(f"BAR needs at least 2 finite log-weights per side, got {len(lw_q)} and {len(lw_p)}")
    est = _bar_solve(lw_q, lw_p)
    if n_boot == 0:
        return est, float("nan")
    _check_n_boot(n_boot)
    rng = np.random.default_rng(seed)
    side_q = None if groups_q is None else _resampled(groups_q, lw_q, "groups_q", "q")
    side_p = _resampled(groups_p, lw_p, "groups_p", "p")
    if paired and (side_q is None or side_q.n_groups != side_p.n_groups):
        raise ValueError(f"paired resampling needs both sides in the same number of groups, got "
                         f"{'none' if side_q is None else side_q.n_groups} and {side_p.n_groups}")  # fmt: skip
    reps = []
    for _ in range(int(n_boot)):
        if groups_q is None:  # the draws themselves (the same stream as before groups_q existed)
            q = (lw_q[rng.integers(0, len(lw_q), len(lw_q))], None)
        else:
            q_groups = rng.integers(0, side_q.n_groups, side_q.n_groups)
            q = side_q(q_groups)
        p = side_p(q_groups if paired else rng.integers(0, side_p.n_groups, side_p.n_groups))
        reps.append(_bar_solve(q[0], p[0], q[1], p[1]))
    return est, float(np.std(reps, ddof=1))


#: a side's groups are resampled as histograms of its distinct values where these take at most this
#: many cells (groups × values) and are few (a quarter of the draws at most): long chains of a
#: lattice model, whose energies take few values, then cost a replicate per distinct value, not per draw
_HISTOGRAM_CELLS = 20_000_000


class _resampled:
    """Draws of one side of Bennett's equation resampled by whole groups: called with the indices of
    the groups drawn, ``(log-weights, counts or None)`` of the replicate."""

    def __init__(self, groups, lw: np.ndarray, name: str, side: str):
        groups = np.arange(len(lw)) if groups is None else np.asarray(groups)  # each draw its own group
        if groups.shape != lw.shape:
            raise ValueError(f"{name} must label every {side} draw: shape {groups.shape}, expected {lw.shape}")
        labels, inverse = np.unique(groups, return_inverse=True)
        self.n_groups, self.lw = len(labels), lw
        self.values, value_of = np.unique(lw, return_inverse=True)
        n_values = len(self.values)
        if self.n_groups * n_values <= _HISTOGRAM_CELLS and 4 * n_values <= len(lw):
            self.counts = np.zeros((self.n_groups, n_values))
            np.add.at(self.counts, (inverse, value_of), 1.0)
        else:
            order = np.argsort(inverse, kind="stable")  # each group's draws, in their order
            self.counts, self.members = None, np.split(order, np.cumsum(np.bincount(inverse))[:-1])

    def __call__(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.counts is not None:
            return self.values, np.bincount(idx, minlength=self.n_groups) @ self.counts
        return self.lw[np.concatenate([self.members[k] for k in idx])], None


def bar_overlap(log_w_q, log_w_p, log_z: float) -> float:
    """The draws that cross between the sides of Bennett's estimate ``log_z``: its equation's q side
    ``Σ_q σ(log w − ln Z − M)`` (equal to the p side at the root; about 0 where the sides do not
    overlap, at most about ``min(n_q, n_p)``)."""
    return _q_side(_np(log_w_q).ravel(), len(_np(log_w_p).ravel()), float(log_z))


def chain_fit(n: int, anchors, links, *, min_p: float = MIN_FIT_P) -> dict[str, np.ndarray | float]:
    """``ln Z`` at the ``n`` nodes of a chain (the temperatures of one field, the compositions of one
    temperature) by weighted least squares from ``anchors``, ``(k, y, var, alone)``: an estimate
    ``y`` of ``ln Z_k`` with variance ``var``, ``alone`` where it is claimed on its own, and
    ``links``, ``(k, d, var)``: an estimate ``d`` of ``ln Z_(k+1) − ln Z_k``. An anchor of variance
    0 is exact: its node is fixed at ``y`` (error 0) and the others are fitted around it.

    Returns ``ln_z``, ``ln_z_err`` (NaN where the links reach no anchor; errors from the fit's
    covariance), the fit's ``chi2``, ``dof`` and ``p`` (NaN at 0 degrees of freedom), ``n_links``
    per node and ``claimed``: the fit is consistent (``p >= min_p``, or no degree of freedom) and
    the links tie the node to two anchors or more (the chi-square tests them against each other)
    or to one claimed alone. A stretch tied to a single marginal anchor rests on what nothing
    tests."""
    from scipy.stats import chi2

    anchors, links = list(anchors), list(links)
    linked = np.zeros(max(n - 1, 0), bool)
    n_links = np.zeros(n, np.int64)
    for k, _, _ in links:
        linked[k] = True
        n_links[[k, k + 1]] += 1
    stretch = np.concatenate([[0], np.cumsum(~linked)]).astype(np.int64)  # nodes joined by links share one
    n_anchor, n_alone = np.zeros(n), np.zeros(n)
    for k, _, _, alone in anchors:
        n_anchor[stretch[k]] += 1
        n_alone[stretch[k]] += bool(alone)
    tied = n_anchor[stretch] > 0
    tested = tied & ((n_anchor[stretch] >= 2) | (n_alone[stretch] > 0))
    ln_z, ln_z_err = np.full(n, np.nan), np.full(n, np.nan)
    chi_sq, dof, p = float("nan"), 0, float("nan")
    eye = np.eye(n)
    exact = np.zeros(n, bool)
    for k, y, v, _ in anchors:
        if v == 0:
            exact[k], ln_z[k], ln_z_err[k] = True, y, 0.0
    rows = [(eye[k], y, v) for k, y, v, _ in anchors if v > 0] + [(eye[k + 1] - eye[k], d, v) for k, d, v in links]
    if anchors and rows:
        A = np.array([r[0] for r in rows])
        y, w = np.array([r[1] for r in rows]), 1.0 / np.array([r[2] for r in rows])
        free = tied & ~exact
        cols = np.flatnonzero(free)
        keep = np.abs(A[:, ~tied]).sum(axis=1) == 0
        M, yv, wv = A[keep][:, cols], y[keep] - A[keep][:, exact] @ ln_z[exact], w[keep]
        cov = np.linalg.inv(M.T @ (wv[:, None] * M)) if len(cols) else np.zeros((0, 0))
        sol = cov @ (M.T @ (wv * yv))
        ln_z[cols], ln_z_err[cols] = sol, np.sqrt(np.diag(cov))
        resid = yv - M @ sol
        chi_sq, dof = float((wv * resid**2).sum()), int(len(yv) - len(cols))
        p = float(chi2.sf(chi_sq, dof)) if dof > 0 else float("nan")
    consistent = dof == 0 or p >= min_p
    return {"ln_z": ln_z, "ln_z_err": ln_z_err, "chi2": chi_sq, "dof": dof, "p": p, "n_links": n_links,
            "claimed": tested & consistent}


def _check_n_boot(n_boot) -> None:
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 2:
        raise ValueError(f"n_boot must be 0 (no errors) or an integer >= 2, got {n_boot!r}")


def f_var(log_w, T: float, n_sites: int, k_B: float = 1.0) -> float:
    """Variational free energy per site ``−k_B T mean(log w) / N`` (upper bound on f)."""
    return float(-k_B * T * np.mean(_np(log_w)) / n_sites)


def f_nis(
    log_w, T: float, n_sites: int, k_B: float = 1.0, *, n_boot: int = 0, seed: int = 0
) -> tuple[float, float]:
    """``(f_NIS, bootstrap error)`` per site; the error is NaN for ``n_boot = 0``."""
    log_w = _np(log_w)
    f = float(-k_B * T * log_Z_nis(log_w) / n_sites)
    if n_boot == 0:
        return f, float("nan")
    boot = _bootstrap(log_w, None, None, n_boot, seed)
    return f, _with_resolution(float(np.std(-k_B * T * boot["log_Z"] / n_sites, ddof=1)), T, n_sites, len(log_w), k_B)


def _with_resolution(boot_err: float, T: float, n_sites: int, n: int, k_B: float) -> float:
    """The bootstrap error of f_NIS with the resolution of ``n`` draws added in quadrature: a region
    of probability below about ``1/n`` is likely unseen, and its share of ``ln Z`` (≈ its mass where
    q ≈ p) is invisible to the bootstrap; one draw's worth, ``k_B T / (N n)`` per site, is the least
    error ``n`` draws can claim (it matters only where every draw has the same weight)."""
    return float(np.hypot(boot_err, k_B * T / (n_sites * n)))


def ness(log_w) -> float:
    """Normalised effective sample size ``(Σw)² / (n Σw²)``, computed in log space."""
    log_w = _np(log_w)
    return float(np.exp(2 * _lse(log_w) - _lse(2 * log_w) - np.log(len(log_w))))


def normalised_weights(log_w) -> np.ndarray:
    """Self-normalised importance weights ``w / Σ w``."""
    log_w = _np(log_w)
    return np.exp(log_w - _lse(log_w))


def reweighted(
    log_w, energy, spin_sum, T: float, n_sites: int, k_B: float = 1.0
) -> dict[str, float]:
    """Reweighted ``u, c, m`` per site (``c`` of ``E_int`` alone, units of k_B)."""
    w = normalised_weights(log_w)
    E, M = _np(energy), _np(spin_sum)
    mean_E = np.sum(w * E)
    var_E = np.sum(w * (E - mean_E) ** 2)
    beta = 1.0 / (k_B * T)
    return {
        "u": float(mean_E / n_sites),
        "c": float(beta**2 * var_E / n_sites),
        "m": float(np.sum(w * M) / n_sites),
    }


def _bootstrap(
    log_w: np.ndarray, E: np.ndarray | None, M: np.ndarray | None, n_boot: int, seed: int
) -> dict:
    """Replicates: NIS ``log_Z`` and, given ``E``, ``M``: weighted ``<E>``, ``Var E``, ``<M>``."""
    _check_n_boot(n_boot)
    rng = np.random.default_rng(seed)
    n = len(log_w)
    per = max(1, _BOOT_CHUNK // max(n, 1))
    out = {"log_Z": [], "E": [], "varE": [], "M": []}
    for start in range(0, int(n_boot), per):
        idx = rng.integers(0, n, size=(min(per, int(n_boot) - start), n))  # (r, n)
        lw = log_w[idx]
        lse = _lse(lw, axis=1)
        out["log_Z"].append(lse - np.log(n))
        if E is not None:
            w = np.exp(lw - lse[:, None])
            e = E[idx]
            mE = np.sum(w * e, axis=1)
            out["E"].append(mE)
            out["varE"].append(np.sum(w * (e - mE[:, None]) ** 2, axis=1))
            out["M"].append(np.sum(w * M[idx], axis=1))
    return {k: np.concatenate(v) for k, v in out.items() if v}


def estimate_thermo(
    system, x, log_q, T: float, field: float, *, n_boot: int = 200, seed: int = 0
) -> dict[str, float]:
    """All estimators at one condition from samples ``x`` (B, N) and their ``log_q`` (B,).

    Returns ``n_samples, f_var, f_nis, f_nis_err, ness, u, u_err, c, c_err, m, m_err`` (and
    ``x_au, x_au_err`` for CuAu), per site, in the system's units (DESIGN §3).
    """
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[1] != system.n_sites or x.shape[0] < 1:
        raise ValueError(f"x must have shape (B >= 1, {system.n_sites}), got {tuple(x.shape)}")
    T, field = float(T), float(field)
    if not (np.isfinite(T) and T > 0 and np.isfinite(field)):
        raise ValueError(f"need a finite T > 0 and a finite field, got T={T}, field={field}")
    N, k_B = system.n_sites, float(system.k_B)
    with torch.no_grad():
        E = _np(system.energy(x))
        M = _np(system.spin_sum(x))
        red = _np(reduced_energy(system, x, T, field))
    log_w = log_weights(log_q, red)
    beta = 1.0 / (k_B * T)
    res = {
        "n_samples": int(len(log_w)),
        "f_var": f_var(log_w, T, N, k_B),
        "f_nis": f_nis(log_w, T, N, k_B)[0],
    }
    res["ness"] = ness(log_w)
    res.update(reweighted(log_w, E, M, T, N, k_B))
    if n_boot == 0:
        errs = {k: float("nan") for k in ("f_nis_err", "u_err", "c_err", "m_err")}
    else:
        b = _bootstrap(log_w, E, M, n_boot, seed)
        errs = {
            "f_nis_err": _with_resolution(float(np.std(-k_B * T * b["log_Z"] / N, ddof=1)), T, N, len(log_w), k_B),
            "u_err": float(np.std(b["E"] / N, ddof=1)),
            "c_err": float(np.std(beta**2 * b["varE"] / N, ddof=1)),
            "m_err": float(np.std(b["M"] / N, ddof=1)),
        }
    res.update(errs)
    if getattr(system, "name", None) in REGISTRY:  # the system's extra observables (CuAu: x_au)
        res.update(REGISTRY[system.name].observables(res["m"], res["m_err"]))
    return res


def estimate_by_condition(
    system, x, log_q, cond, *, n_boot: int = 200, seed: int = 0
) -> pd.DataFrame:
    """:func:`estimate_thermo` for every distinct ``(T, field)`` row of ``cond`` (B, 2).

    Returns a table with ``system, size, T, field`` and the estimator columns, sorted by T, field.
    """
    cond = _np(cond)
    x = torch.as_tensor(x)
    log_q = _np(log_q)
    if cond.ndim != 2 or cond.shape != (x.shape[0], 2) or log_q.shape != (x.shape[0],):
        raise ValueError(
            f"need cond (B, 2), x (B, N), log_q (B,) with one B; "
            f"got {cond.shape}, {tuple(x.shape)}, {log_q.shape}"
        )
    uniq, inv = np.unique(cond, axis=0, return_inverse=True)
    rows = []
    for k, (T, h) in enumerate(uniq):
        sel = np.flatnonzero(inv.ravel() == k)
        est = estimate_thermo(
            system, x[torch.from_numpy(sel)], log_q[sel], T, h, n_boot=n_boot, seed=seed
        )
        rows.append(
            {"system": system.name, "size": system.size, "T": float(T), "field": float(h), **est}
        )
    return pd.DataFrame(rows)
