"""MCMC refinement (the study's): short local Metropolis runs started from a sampler's
configurations, and the observables they measure (DESIGN §5).

A sampler that is close to ``p`` but not exact (NESS → 0 on a large box, where reweighting fails)
still gives configurations close to equilibrium. ``n_chains`` of them per condition start
independent Metropolis chains at that condition (:func:`lattherm.reference.mcmc.run_metropolis`,
the project's numba kernels: the checkerboard update for Ising, the cluster-expansion one for
CuAu; for Ising with ``cluster_updates`` Wolff moves per chain after every sweep, one by default:
near T_c and below it at ``h = 0`` local moves alone do not mix within the short runs);
``burn_in_sweeps`` sweeps are discarded and ``n_samples`` samples kept every ``thin_sweeps``. The
estimates, their errors and the convergence flags are those of the MCMC reference
(:func:`~lattherm.reference.mcmc.mcmc_table`): errors from the spread between the independent
chains (honest whatever the autocorrelation, once the chains have forgotten their start), and
``converged`` only where split-R̂ and the half-against-half drift test say the chains have mixed.
A sampler whose configurations are far from ``p`` is not hidden: its chains drift and
the row is flagged, or the burn-in must be longer.

Given the ``density`` of the procedure that drew the sample file (the exact log q of any
configuration: :func:`lattherm.evaluation.sampler_density`), the refined states are draws of
``p`` and the file's are draws of ``q``: Bennett's acceptance ratio over both
(:func:`lattherm.observables.log_Z_bar`) gives ``ln Z`` where importance sampling alone fails,
as long as the two sides' log-weights overlap. Its row has ``estimator = "bar"``, ``f_est``,
``f_est_err`` (bootstrap over the file's draws and over whole chains), the budget and
``est_converged``: the chains' energies have mixed (``u`` claimed) and at least
:data:`MIN_OVERLAP_ALONE` draws cross between the sides (``bar_overlap``, BAR's
``Σ_q σ(log w − Δ − M)``, equal to the ``p`` side's sum at the root). With fewer crossings the
estimate's bootstrap error understates its spread: it may still anchor the ladder from
:data:`MIN_OVERLAP` crossings on, where other anchors test it.

**The ladder.** Bennett's estimates are independent at every temperature; the chains themselves
tie neighbouring temperatures of one field together. With ``ladder_chains``, that many further
chains per condition (Monte Carlo only: no density) give, between neighbouring temperatures ``T_i
< T_(i+1)``, Bennett's ``d_i = ln Z_(i+1) − ln Z_i`` from the reduced-energy differences of both
sides' states (bootstrap over whole chains on both sides; only between conditions whose ladder
chains' reduced energies pass the reference's convergence tests: :func:`links_mixed`). Each link
reads half of each side's chains, those of its parity (even chains for even links): a
temperature's states would otherwise enter both its links, whose errors the fit takes as
independent (on a chain of links from β = 0 that understates the error by up to √2). A weighted
least-squares fit of ``ln Z`` to the Bennett anchors (mixed chains, at least :data:`MIN_OVERLAP`
draws crossing) and the links with at least :data:`MIN_OVERLAP` draws crossing
(:func:`ladder_table`) pools every anchor of a field into each temperature's estimate: rows with
``estimator = "ladder"``, errors from the fit's covariance, ``est_converged`` where the fit's
chi-square is consistent (``ladder_p`` ≥ :data:`LADDER_MIN_P`), so anchors and links that disagree
beyond their errors show, and the temperature is tied through links to two anchors or more (the
chi-square tests them against each other) or to one that is claimed on its own
(:data:`MIN_OVERLAP_ALONE`). A stretch of temperatures tied to a single marginal anchor rests on
an estimate nothing tests.

The Ising two-point function ``G(r) = ⟨s_i s_{i+r}⟩`` (``s = 2x − 1``; averaged over every site
and both axes, ``r = 0 … ⌊L/2⌋``) comes from the kept states: the mean per chain, then the mean
and standard error over chains (:func:`correlation_function`). It is the plain correlation; the
connected one subtracts ``m²`` (zero at ``h = 0`` on a finite torus).

:func:`refine` gives one row per condition (:data:`REFINE_COLUMNS`, beside the MCMC reference's
columns) and, for Ising, the long table ``T, field, r, G, G_err``.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from lattherm.composition import COLUMNS as COMPOSITION_COLUMNS
from lattherm.composition import (
    WINDOW_COLUMNS,
    composition_ladder,
    refined_composition_table,
    run_windows,
    semi_grand_from_ladder,
    window_links,
)
from lattherm.evaluation import reference_f
from lattherm.io import check_columns, row_at, rows_at, unpack_states
from lattherm.observables import MIN_FIT_P, bar_overlap, chain_fit, log_weights, log_Z_bar
from lattherm.reference.mcmc import mcmc_table, run_metropolis
from lattherm.runlog import Progress
from lattherm.seeds import derived_seed
from lattherm.systems import REGISTRY
from lattherm.systems.base import reduced_energy
from lattherm.systems.ising import IsingSystem

__all__ = ["BAR_COLUMNS", "CORRELATION_COLUMNS", "LADDER_COLUMNS", "LADDER_MIN_P", "MIN_OVERLAP", "MIN_OVERLAP_ALONE",
           "REFINE_COLUMNS", "Refinement", "WINDOWS_MAX_Z", "correlation_function", "ladder_table", "links_mixed",
           "log_ladder", "log_against_windows", "refine"]

#: the observables of a refined row (with the MCMC reference's diagnostics after them)
REFINE_COLUMNS = ("system", "size", "T", "field", "model", "source", "n_chains", "burn_in_sweeps", "thin_sweeps",
                  "cluster_updates", "n_samples", "u", "u_err", "c", "c_err", "m", "m_err", "abs_m", "abs_m_err",
                  "converged", "diagnosis")  # fmt: skip
#: the BAR estimate's columns (with a density), as the metric tables' estimate columns
BAR_COLUMNS = ("estimator", "f_est", "f_est_err", "est_draws", "est_sweeps", "est_wall_s", "est_converged",
               "bar_overlap", "f_ref", "f_ref_err", "delta_f")  # fmt: skip
#: draws that must cross between the two sides of a Bennett estimate for it to enter the ladder
#: (an anchor or a link), where other estimates test it
MIN_OVERLAP = 20.0
#: draws that must cross for a Bennett estimate of ``ln Z`` to be claimed on its own: at 20–30
#: crossings an anchor that nothing tests was seen 3.4 error bars off (CuAu 4x4x8, docs/results.md)
MIN_OVERLAP_ALONE = 50.0
#: bootstrap replicates of the BAR error
_BAR_BOOT = 200
#: the ladder's rows (:func:`ladder_table`), in the estimate tables' schema
LADDER_COLUMNS = ("system", "size", "T", "field", "model", "source", "estimator", "f_est", "f_est_err", "est_draws",
                  "est_sweeps", "est_wall_s", "est_converged", "ladder_chi2", "ladder_dof", "ladder_p", "n_links",
                  "f_ref", "f_ref_err", "delta_f", "diagnosis")  # fmt: skip
#: largest |f_est − f_windows| in combined error bars for an estimate to stay claimed beside the
#: composition windows' semi-grand free energy (CuAu with ``composition_windows``)
WINDOWS_MAX_Z = 4.0
#: least chi-square p-value of a field's ladder fit for its rows to be claimed
LADDER_MIN_P = MIN_FIT_P
#: the two-point function's long table (no rows for systems other than Ising)
CORRELATION_COLUMNS = ("system", "size", "T", "field", "model", "source", "r", "G", "G_err")


class Refinement(NamedTuple):
    """What :func:`refine` gives: one row per condition, the Ising ``G(r)`` table (no rows for other
    systems), for a system whose field is a chemical potential refined with a density the
    composition-resolved table of :func:`lattherm.composition.refined_composition_table`, with
    ``ladder_chains`` the :func:`ladder_table` and with ``composition_windows`` the windows'
    :func:`lattherm.composition.window_links` table (else no rows)."""

    table: pd.DataFrame
    correlation: pd.DataFrame
    composition: pd.DataFrame
    ladder: pd.DataFrame
    windows: pd.DataFrame


def correlation_function(x: np.ndarray, L: int) -> np.ndarray:
    """``G(r) = ⟨s_i s_{i+r}⟩`` per configuration, ``(..., ⌊L/2⌋ + 1)``, of 0/1 states ``x``
    ``(..., L·L)`` on the ``L x L`` torus (row-major sites), averaged over the sites and both axes."""
    x = np.asarray(x)
    if x.shape[-1] != L * L:
        raise ValueError(f"states have {x.shape[-1]} sites, an {L}x{L} torus has {L * L}")
    s = (2.0 * x.reshape(*x.shape[:-1], L, L) - 1.0).astype(np.float64)
    out = np.empty((*x.shape[:-1], L // 2 + 1))
    for r in range(L // 2 + 1):
        rows = np.mean(s * np.roll(s, -r, axis=-2), axis=(-2, -1))
        cols = np.mean(s * np.roll(s, -r, axis=-1), axis=(-2, -1))
        out[..., r] = 0.5 * (rows + cols)
    return out


def _starts(samples_df: pd.DataFrame, n_sites: int, n_chains: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(T, field, states (n_cond, n_chains, N))``: the first ``n_chains`` configurations of every
    condition of a sample table."""
    check_columns(samples_df, ("T", "field", "configuration"), what="sample table")
    T, h, x0 = [], [], []
    for (t, f), g in samples_df.groupby(["T", "field"], sort=True):
        if len(g) < n_chains:
            raise ValueError(f"sample table has {len(g)} configurations at T={t}, field={f}; "
                             f"refinement asks for n_chains={n_chains}")  # fmt: skip
        packed = np.stack([np.frombuffer(b, dtype=np.uint8) for b in g["configuration"].iloc[:n_chains]])
        T.append(float(t))
        h.append(float(f))
        x0.append(unpack_states(packed, n_sites))
    return np.asarray(T), np.asarray(h), np.stack(x0).astype(np.uint8)


def _at(df: pd.DataFrame, T: float, field: float, col: str) -> float:
    row = row_at(df, T, field)
    return float(row[col]) if row is not None else float("nan")


def _bar_row(system, samples_df, result, c: int, density, *, seed: int, batch_size: int, reference_df) -> dict:
    """The BAR estimate at condition ``c`` of the refinement ``result``: the sample file's draws
    (q side) against the refined states (p side, grouped by chain)."""
    t0 = time.perf_counter()
    T, h = float(result.T[c]), float(result.field[c])
    g = rows_at(samples_df, T, h)
    check_columns(g, ("log_q", "energy", "spin_sum"), what="sample table")
    k_T = float(system.k_B) * T
    lw_q = log_weights(g["log_q"], (g["energy"] - h * g["spin_sum"]) / k_T)
    states = torch.as_tensor(result.states[c].reshape(-1, system.n_sites), dtype=torch.long)
    gen = torch.Generator().manual_seed(int(seed))
    cond = torch.tensor([T, h], dtype=torch.float64)
    with torch.no_grad():
        log_q = torch.cat([density(xb, cond.expand(len(xb), 2), gen) for xb in states.split(int(batch_size))])
        lw_p = log_weights(log_q, reduced_energy(system, states, T, h))
    chains = np.repeat(np.arange(result.states.shape[1]), result.states.shape[2])
    log_z, err = log_Z_bar(lw_q, lw_p, groups_p=chains, n_boot=_BAR_BOOT, seed=seed)
    overlap = bar_overlap(lw_q, lw_p, log_z)
    N = system.n_sites
    f, f_err = -k_T * log_z / N, k_T * err / N
    f_ref, f_ref_err = reference_f(row_at(reference_df, T, h) if reference_df is not None and "f" in reference_df
                                   else None)  # fmt: skip
    return {"estimator": "bar", "f_est": f, "f_est_err": f_err, "est_draws": len(lw_q) + len(lw_p),
            "est_sweeps": int(result.burn_in_sweeps + result.n_samples * result.thin_sweeps),
            "est_wall_s": time.perf_counter() - t0, "est_converged": bool(overlap >= MIN_OVERLAP_ALONE),
            "bar_overlap": overlap, "f_ref": f_ref, "f_ref_err": f_ref_err, "delta_f": f - f_ref}  # fmt: skip


def _with_rungs(T: np.ndarray, h: np.ndarray, x0: np.ndarray, rungs: int, k_B: float, top_rungs: int = 0):
    """The conditions ``T, h`` (with start states ``x0`` ``(n_cond, n_chains, N)``), then ``rungs``
    temperatures between every two neighbouring ones of a field, equally spaced in β, and
    ``top_rungs`` between a field's highest temperature and β = 0 (not included); each rung's
    chains start from the states of the nearer of its grid neighbours. Returns ``(T, h, x0)``."""
    TT, hh, xx = [T], [h], [x0]
    for f in np.unique(h):
        idx = np.flatnonzero(h == f)
        idx = idx[np.argsort(T[idx])]
        top = idx[-1]
        for j in range(1, top_rungs + 1):
            TT.append([T[top] * (top_rungs + 1) / j])  # β_top · j / (top_rungs + 1)
            hh.append([f])
            xx.append(x0[[top]])
        for a, b in zip(idx[:-1], idx[1:], strict=True):
            beta_a, beta_b = 1.0 / (k_B * T[a]), 1.0 / (k_B * T[b])
            for j in range(1, rungs + 1):
                w = j / (rungs + 1)
                TT.append([1.0 / (k_B * ((1 - w) * beta_a + w * beta_b))])
                hh.append([f])
                xx.append(x0[[a if w <= 0.5 else b]])
    return np.concatenate(TT), np.concatenate(hh).astype(np.float64), np.concatenate(xx)


def _uniform_draws(system, shape: tuple[int, int], *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Energies and spin sums ``shape`` of independent uniform configurations: exact draws at β = 0."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    E, S = np.empty(n), np.empty(n)
    for i in range(0, n, 256):  # batches: large boxes
        x = torch.as_tensor(rng.integers(0, system.n_states, (min(256, n - i), system.n_sites)), dtype=torch.long)
        E[i : i + len(x)] = system.energy(x).double().numpy()
        S[i : i + len(x)] = system.spin_sum(x).double().numpy()
    return E.reshape(shape), S.reshape(shape)


def _link(E_lo: np.ndarray, E_hi: np.ndarray, beta_lo: float, beta_hi: float, *, seed: int,
          overlap_every: int = 1) -> tuple[float, ...]:  # fmt: skip
    """``(ln Z_hi − ln Z_lo, its error, the draws crossing)`` by Bennett's estimate between the
    states of two temperatures, ``(n_chains, n_samples)`` reduced-field energies each (chain ``j``
    of both resampled together: exchanges and shared starts tie them); the draws
    crossing count every ``overlap_every``-th sample of a chain (chains measured every sweep count
    at the spacing of independent samples)."""
    d_beta = beta_hi - beta_lo
    lw_lo, lw_hi = -d_beta * E_lo.ravel(), -d_beta * E_hi.ravel()
    g_lo, g_hi = (np.repeat(np.arange(E.shape[0]), E.shape[1]) for E in (E_lo, E_hi))
    d, err = log_Z_bar(lw_lo, lw_hi, groups_q=g_lo, groups_p=g_hi, n_boot=_BAR_BOOT, seed=seed, paired=True)
    every = slice(None, None, int(overlap_every))
    return d, err, bar_overlap(-d_beta * E_lo[:, every], -d_beta * E_hi[:, every], d)


def links_mixed(table: pd.DataFrame) -> np.ndarray:
    """Whether each row's ladder chains can carry a link: a link's Bennett estimate reads the chains'
    reduced energies ``E_int − h Σs`` alone, so the series behind them must have mixed (the claimed
    ``u_err`` of :func:`~lattherm.reference.mcmc.mcmc_table`; at h ≠ 0 the claimed ``m_err`` too).
    At h = 0 neither ``m`` nor ``|m|`` enters the weight, and near T_c they mix far more slowly than
    the energy."""
    u = table["u_err"].notna().to_numpy()
    return u & ((table["field"].to_numpy() == 0.0) | table["m_err"].notna().to_numpy())


def ladder_table(system, T, field, energy, spin_sum, anchors: pd.DataFrame, *, model: str, source: str, seed: int,
                 mixed=None, sweeps: int = 0, reference_df: pd.DataFrame | None = None,
                 overlap_every: int = 1) -> pd.DataFrame:  # fmt: skip
    """The ladder estimate (module doc) at every condition: ``T, field`` ``(n_cond,)``; ``energy``,
    ``spin_sum`` the ladder chains' samples ``(n_cond, n_chains, n_samples)``; ``mixed``
    ``(n_cond,)``: whether those chains' reduced energies have mixed (:func:`links_mixed`; a link
    needs both ends; default all); ``anchors`` the refined rows (``T, field, f_est, f_est_err,
    u_err, bar_overlap``) at the same conditions: an anchor where ``u_err`` is finite (the chains mixed) and
    :data:`MIN_OVERLAP` draws cross, one claimed on its own from :data:`MIN_OVERLAP_ALONE`. One row
    per condition (:data:`LADDER_COLUMNS`); a temperature tied to no anchor gets NaN. ``diagnosis``
    says why a row is not claimed: the fit's chi-square, or too few anchors reached, and each link
    to a neighbouring node that was dropped (its chains not mixed, or too few draws crossing).
    ``overlap_every``: the draws crossing count every that many samples of a chain (:func:`_link`)."""
    check_columns(anchors, ("T", "field", "f_est", "f_est_err", "u_err", "bar_overlap"), what="refined table")
    T, field = np.asarray(T, np.float64), np.asarray(field, np.float64)
    energy, spin_sum = np.asarray(energy, np.float64), np.asarray(spin_sum, np.float64)
    mixed = np.ones(len(T), bool) if mixed is None else np.asarray(mixed, bool)
    N, k_B = int(system.n_sites), float(system.k_B)
    rows = []
    for h in np.unique(field):
        idx = np.flatnonzero(field == h)
        idx = idx[np.argsort(T[idx])]
        beta = 1.0 / (k_B * T[idx])
        E = energy[idx] - h * spin_sum[idx]  # the field's term belongs to the Boltzmann weight
        n = len(idx)
        points, links, dropped = [], [], {}
        for k, c in enumerate(idx):
            if not np.isfinite(T[c]):  # β = 0: every configuration equally likely, ln Z = N ln q
                points.append((k, N * np.log(float(system.n_states)), 0.0, True))
                continue
            a = row_at(anchors, float(T[c]), float(h))
            if (a is not None and np.isfinite(a["u_err"]) and a["bar_overlap"] >= MIN_OVERLAP
                    and np.isfinite(a["f_est_err"]) and a["f_est_err"] > 0):  # fmt: skip
                points.append((k, -N * beta[k] * float(a["f_est"]), (N * beta[k] * float(a["f_est_err"])) ** 2,
                               a["bar_overlap"] >= MIN_OVERLAP_ALONE))  # fmt: skip
        for k in range(n - 1):
            if not (mixed[idx[k]] and mixed[idx[k + 1]]):
                dropped[k] = "chains not mixed at T " + " and ".join(
                    f"{T[c]:.4g}" for c in (idx[k], idx[k + 1]) if not mixed[c])
                continue
            half = slice(k % 2, None, 2)  # this link's chains: disjoint from its neighbours' (module doc)
            d, err, overlap = _link(E[k][half], E[k + 1][half], beta[k], beta[k + 1],
                                    seed=derived_seed(seed, 3, int(idx[k])), overlap_every=overlap_every)  # fmt: skip
            if overlap >= MIN_OVERLAP and np.isfinite(err) and err > 0:
                links.append((k, d, err**2))
            else:
                dropped[k] = f"{overlap:.3g} draws crossing"
        fit = chain_fit(n, points, links, min_p=LADDER_MIN_P)
        ln_z, ln_z_err, n_links = fit["ln_z"], fit["ln_z_err"], fit["n_links"]
        chi_sq, dof, p = fit["chi2"], fit["dof"], fit["p"]
        for k, c in enumerate(idx):
            if not np.isfinite(T[c]):
                continue  # the exact end is a node of the fit, not a row
            f = -ln_z[k] / (N * beta[k])
            why = []
            if not fit["claimed"][k]:
                why.append(f"the fit's p {p:.2g} < {LADDER_MIN_P:g}" if p < LADDER_MIN_P
                           else "tied to no two anchors nor one claimed alone")  # fmt: skip
                why += [f"link to T {T[idx[j]]:.4g}: {dropped[min(k, j)]}" for j in (k - 1, k + 1)
                        if 0 <= j < n and min(k, j) in dropped]  # fmt: skip
            has_ref = reference_df is not None and "f" in reference_df
            f_ref, f_ref_err = reference_f(row_at(reference_df, float(T[c]), float(h)) if has_ref else None)
            rows.append({
                "system": system.name, "size": system.size, "T": float(T[c]), "field": float(h), "model": model,
                "source": source, "estimator": "ladder", "f_est": f, "f_est_err": ln_z_err[k] / (N * beta[k]),
                "est_draws": int(energy[c].size), "est_sweeps": int(sweeps), "est_wall_s": float("nan"),
                "est_converged": bool(fit["claimed"][k]), "ladder_chi2": chi_sq, "ladder_dof": dof,
                "ladder_p": p, "n_links": int(n_links[k]), "f_ref": f_ref, "f_ref_err": f_ref_err,
                "delta_f": f - f_ref, "diagnosis": "; ".join(why),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(LADDER_COLUMNS)).sort_values(["T", "field"], ignore_index=True)


def _phases(system, states: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The system's phase codes and order-parameter magnitudes of ``states`` ``(n_cond, …, N)``, one
    condition at a time; ``None`` where the system or its cell names no phases."""
    phase_of = REGISTRY[system.name].phase_of
    try:
        out = [phase_of(system, s) for s in states] if phase_of is not None else None
    except ValueError:  # a cell without the phases' sublattices
        return None
    return None if out is None else (np.stack([o[0] for o in out]), np.stack([o[1] for o in out]))


def _checked_by_windows(system, table: pd.DataFrame, composition_ladder_table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (Bennett's or the T ladder's rows) with the composition windows' semi-grand free
    energy ``f_windows, f_windows_err`` (:func:`lattherm.composition.semi_grand_from_ladder`, tied
    to the exact pure elements), and ``est_converged`` withdrawn where ``f_est`` is more than
    :data:`WINDOWS_MAX_Z` combined error bars from it: an error bar the independent estimate
    contradicts is no claim."""
    if not len(table):
        return table.assign(f_windows=pd.Series(dtype=float), f_windows_err=pd.Series(dtype=float))
    f, err = semi_grand_from_ladder(system, composition_ladder_table, table["T"], table["field"])
    out = table.assign(f_windows=f, f_windows_err=err)
    out["est_converged"] = out["est_converged"].astype(bool) & ~(_windows_z(out) > WINDOWS_MAX_Z)
    return out


def _windows_z(table: pd.DataFrame) -> pd.Series:
    """``|f_est − f_windows|`` in combined error bars (NaN where either is missing)."""
    return ((table["f_est"] - table["f_windows"]) / np.hypot(table["f_est_err"], table["f_windows_err"])).abs()


def log_against_windows(tables: dict[str, pd.DataFrame], log) -> None:
    """Log, per named table with ``f_windows`` (:func:`_checked_by_windows`), how many estimates
    the composition windows' free energy contradicts (no longer claimed) and the largest
    ``|f_est − f_windows|`` among the claimed ones."""
    for name, t in tables.items():
        if "f_windows" not in t or not t["f_windows"].notna().any():
            continue
        z = _windows_z(t)
        ok = t["est_converged"].astype(bool)
        log.info("%s: %d estimates more than %g error bars from the composition windows' f (none claimed); the claimed "
                 "ones within %.3g of it", name, int((z > WINDOWS_MAX_Z).sum()), WINDOWS_MAX_Z,
                 (t.loc[ok, "f_est"] - t.loc[ok, "f_windows"]).abs().max())  # fmt: skip


def _ladder_first(table: pd.DataFrame, ladder: pd.DataFrame) -> pd.DataFrame:
    """The refined rows with ``f_est, f_est_err, est_converged`` from the ladder where it is claimed
    (it pools every anchor of the field, and reaches conditions whose own Bennett estimate lacks
    overlap) and from Bennett's estimate elsewhere."""
    if not len(ladder):
        return table
    cols = ["f_est", "f_est_err", "est_converged"]
    lad = table[["T", "field"]].merge(ladder[["T", "field", *cols]], on=["T", "field"], how="left")
    use = lad["est_converged"].astype("boolean").fillna(False).to_numpy(bool)
    out = table.copy()
    for col in cols:
        out.loc[use, col] = lad.loc[use, col].to_numpy()
    return out


def log_ladder(ladder: pd.DataFrame, log) -> None:
    """Log where a :func:`ladder_table` is claimed and, with a reference, its largest error and
    ``|z|`` (the reference's error counted) there; nothing for a table without rows."""
    if not len(ladder):
        return
    claimed = ladder[ladder["est_converged"].astype(bool)]
    z = claimed["delta_f"] / np.hypot(claimed["f_est_err"], claimed["f_ref_err"].fillna(0.0))
    log.info("ladder: claimed at %d of %d conditions, max |delta_f| there %.3g, max |z| %.2f (with the "
             "reference's error)", len(claimed), len(ladder), claimed["delta_f"].abs().max(),
             z.abs().max())  # fmt: skip


def refine(
    system,
    samples_df: pd.DataFrame,
    *,
    model: str,
    source: str,
    n_chains: int,
    burn_in_sweeps: int,
    n_samples: int,
    thin_sweeps: int,
    seed: int,
    reference_df: pd.DataFrame | None = None,
    density=None,
    batch_size: int = 1024,
    cluster_updates: int | None = None,
    composition_reference: pd.DataFrame | None = None,
    ladder_chains: int = 0,
    ladder_rungs: int = 0,
    ladder_top_rungs: int = 0,
    ladder_every_sweep: bool = False,
    ladder_n_samples: int | None = None,
    replica_exchange: bool = False,
    composition_windows: bool = False,
    window_burn_in_sweeps: int | None = None,
    window_thin_sweeps: int | None = None,
) -> Refinement:
    """Refine a sample table (module doc): a :class:`Refinement` (the rows, the G(r) table
    :data:`CORRELATION_COLUMNS` and the composition table; the latter two without rows where they do
    not apply). ``composition_reference``: a reference composition table for the composition
    table's ``delta_f_x``. ``ladder_chains``: chains per condition for the ladder's links (0: no
    ladder; it needs the density, for its anchors; the composition table then takes ``ln Z_μ`` from
    the ladder where it is claimed, Bennett's elsewhere). ``ladder_rungs``: that many further
    temperatures between every two neighbouring ones of a field (equally spaced in β), with ladder
    chains alone: links only, for boxes where neighbouring temperatures' energies do not overlap
    (the spacing must shrink as ``1/√N`` near a heat-capacity peak). ``ladder_top_rungs``: the
    ladder continues from each field's highest temperature to β = 0, where every configuration is
    equally likely (``ln Z = N ln q`` exactly, its states uniform draws), through that many
    temperatures equally spaced in β (ladder chains alone): an exact anchor where the sampler's
    own lack overlap (0: none). ``ladder_every_sweep``: the ladder chains' energies are kept after
    every sweep, not every ``thin_sweeps`` (the links' Bennett estimates read them all, as β
    integration averages every sweep; far from T_c, where the energy decorrelates in a sweep or two,
    their errors shrink by up to √thin_sweeps at the same sweeps; the draws crossing still count
    ``thin_sweeps`` apart). ``ladder_n_samples``: samples kept per ladder chain (``None``:
    ``n_samples``): fewer, longer ladder chains spend less of their sweeps on burn-in for the same
    states. ``replica_exchange``: the chains of neighbouring temperatures of one field exchange
    configurations after every sweep (as the reference MCMC does; each temperature's chains stay
    draws of its p), so that chains started in different phases near a first-order transition can
    cross. ``composition_windows`` (a system whose field is a chemical potential, with the density):
    ``n_chains`` further chains in every window ``{n, n + 1}`` of every temperature
    (:func:`lattherm.composition.run_windows`, with the same samples and exchanges; burn-in and
    thinning ``window_burn_in_sweeps``, ``window_thin_sweeps``, by default the chains'; windows that
    do not converge run again, longer), whose links give ``f_x`` at every composition they tie to
    the exact pure-element ends, checked against the sampler's ``ln Z_μ``
    (:func:`lattherm.composition.composition_ladder`), and whose states add to ``u_x``, ``c_x``.

    ``reference_df`` (optional, with ``T, field`` and any of ``u, c, m``) adds ``u_ref, c_ref,
    m_ref`` where it has the condition (NaN elsewhere). ``cluster_updates``: Wolff moves per chain
    after every sweep (Ising only; ``None``: 1 for Ising, 0 elsewhere)."""
    if int(n_chains) != n_chains or n_chains < 2:
        raise ValueError(f"refine.n_chains must be an integer >= 2, got {n_chains!r}")
    ising = isinstance(system, IsingSystem)
    if cluster_updates is None:
        cluster_updates = 1 if ising else 0
    if int(cluster_updates) != cluster_updates or cluster_updates < 0 or (cluster_updates and not ising):
        raise ValueError(f"refine.cluster_updates must be an integer >= 0, and 0 for systems other than "
                         f"Ising (their updates have no cluster moves), got {cluster_updates!r} for "
                         f"{system.name}")  # fmt: skip
    if int(ladder_chains) != ladder_chains or ladder_chains < 0 or 0 < ladder_chains < 4:
        raise ValueError(f"refine.ladder_chains must be 0 or an integer >= 4 (each link reads half of them, "
                         f"resampled by chain), got {ladder_chains!r}")  # fmt: skip
    for name, value in (("ladder_rungs", ladder_rungs), ("ladder_top_rungs", ladder_top_rungs)):
        if int(value) != value or value < 0 or (value and not ladder_chains):
            raise ValueError(f"refine.{name} must be an integer >= 0, and 0 without ladder_chains, got {value!r}")
    if ladder_n_samples is not None and (int(ladder_n_samples) != ladder_n_samples or ladder_n_samples < 2
                                         or not ladder_chains):
        raise ValueError(f"refine.ladder_n_samples must be None or an integer >= 2, and None without ladder_chains, "
                         f"got {ladder_n_samples!r}")  # fmt: skip
    if ladder_every_sweep and (replica_exchange or not ladder_chains):
        raise ValueError("refine.ladder_every_sweep needs ladder_chains and no replica_exchange: with exchanges after "
                         "every sweep a configuration's visits to neighbouring temperatures tie links that the fit "
                         "takes as independent (its errors then read about 1.4 times too small)")  # fmt: skip
    if ladder_chains and density is None:
        raise ValueError("refine.ladder_chains needs the sampler's density: the ladder ties Bennett's estimates")
    compositions = REGISTRY[system.name].compositions
    if composition_windows and (density is None or not compositions):
        raise ValueError(f"refine.composition_windows needs a system whose field is a chemical potential and the "
                         f"sampler's density (its ln Z_μ check the windows' ladder), got {system.name}"
                         f"{'' if density is not None else ' without a density'}")  # fmt: skip
    T, h, x_all = _starts(samples_df, system.n_sites, int(max(n_chains, ladder_chains)))
    x0_ladder, x0 = x_all[:, : int(ladder_chains)], x_all[:, : int(n_chains)]
    t0 = time.perf_counter()
    result = run_metropolis(system, T, h, n_chains=int(n_chains), n_samples=n_samples, seed=seed,
                            burn_in_sweeps=burn_in_sweeps, thin_sweeps=thin_sweeps, start=x0,
                            keep_states=ising or density is not None, progress=True,
                            cluster_updates=int(cluster_updates), replica_exchange=bool(replica_exchange))  # fmt: skip
    mcmc_s = (time.perf_counter() - t0) / len(T)
    table = mcmc_table(result, system)
    table.insert(4, "model", model)
    table.insert(5, "source", source)
    table["burn_in_sweeps"], table["thin_sweeps"] = int(burn_in_sweeps), int(thin_sweeps)
    table["cluster_updates"] = result.cluster_updates
    if reference_df is not None:
        check_columns(reference_df, ("T", "field"), what="reference table")
        for q in ("u", "c", "m"):
            if q in reference_df:
                table[f"{q}_ref"] = [_at(reference_df, t, f, q) for t, f in zip(T, h, strict=True)]
    if density is not None:
        bar = []
        with Progress(len(T), f"Bennett's estimate {model} {source} {system.size}", "conditions") as progress:
            for c in range(len(T)):  # the chains' states under the sampler's density: a pass per state
                bar.append(_bar_row(system, samples_df, result, c, density, seed=derived_seed(seed, 1, c),
                                    batch_size=batch_size, reference_df=reference_df))  # fmt: skip
                progress.update(1)
        for col in BAR_COLUMNS:
            table[col] = [row[col] for row in bar]
        table["est_wall_s"] += mcmc_s
        table["est_converged"] &= table["u_err"].notna()
    extra = [c for c in table.columns if c not in REFINE_COLUMNS]
    table = table[[*REFINE_COLUMNS, *extra]]
    ladder = pd.DataFrame({c: [] for c in LADDER_COLUMNS})
    if ladder_chains:
        t0 = time.perf_counter()
        TL, hL, xL = _with_rungs(T, h, x0_ladder, int(ladder_rungs), float(system.k_B), int(ladder_top_rungs))
        every = int(thin_sweeps) if ladder_every_sweep else 1  # ladder samples per thinned one: a sweep each
        kept = int(n_samples if ladder_n_samples is None else ladder_n_samples)
        links = run_metropolis(system, TL, hL, n_chains=int(ladder_chains), n_samples=kept * every,
                               burn_in_sweeps=burn_in_sweeps, thin_sweeps=thin_sweeps // every,
                               seed=derived_seed(seed, 4),
                               start=xL, keep_states=False, progress=True,
                               cluster_updates=int(cluster_updates),
                               replica_exchange=bool(replica_exchange))  # fmt: skip
        energy, spin_sum = links.energy, links.spin_sum
        mixed = links_mixed(mcmc_table(links, system))
        if ladder_top_rungs:  # β = 0: exact uniform draws, one set for every field
            fields = np.unique(h)
            E0, S0 = _uniform_draws(system, (int(ladder_chains), kept * every), seed=derived_seed(seed, 7))
            TL, hL = np.concatenate([TL, np.full(len(fields), np.inf)]), np.concatenate([hL, fields])
            energy = np.concatenate([energy, np.broadcast_to(E0, (len(fields), *E0.shape))])
            spin_sum = np.concatenate([spin_sum, np.broadcast_to(S0, (len(fields), *S0.shape))])
            mixed = np.concatenate([mixed, np.ones(len(fields), bool)])
        ladder = ladder_table(system, TL, hL, energy, spin_sum, table, model=model, source=source,
                              seed=derived_seed(seed, 5), mixed=mixed,
                              sweeps=burn_in_sweeps + kept * thin_sweeps, reference_df=reference_df,
                              overlap_every=every)  # fmt: skip
        on_grid = set(zip(T.tolist(), h.tolist(), strict=True))  # the rungs' rows go: they are nodes, not conditions
        ladder = ladder[[c in on_grid for c in zip(ladder["T"], ladder["field"], strict=True)]].reset_index(drop=True)
        ladder["est_wall_s"] = (time.perf_counter() - t0) / len(T) + table["est_wall_s"].to_numpy().mean()
    composition = pd.DataFrame({c: [] for c in COMPOSITION_COLUMNS})
    windows = pd.DataFrame({c: [] for c in WINDOW_COLUMNS})
    if density is not None and compositions:
        rows, energy, spin_sum, lad = _ladder_first(table, ladder), result.energy, result.spin_sum, None
        order = [_phases(system, result.states)]
        if composition_windows:
            win, sweeps = run_windows(system, table, np.repeat(T, x_all.shape[1]), x_all.reshape(-1, system.n_sites),
                              n_chains=int(n_chains), n_samples=n_samples, seed=derived_seed(seed, 6),
                              burn_in_sweeps=burn_in_sweeps if window_burn_in_sweeps is None else window_burn_in_sweeps,
                              thin_sweeps=thin_sweeps if window_thin_sweeps is None else window_thin_sweeps,
                              replica_exchange=bool(replica_exchange))  # fmt: skip
            windows = window_links(win, system, sweeps=sweeps)
            lad = composition_ladder(system, rows, spin_sum, windows)
            table, ladder = (_checked_by_windows(system, t, lad) for t in (table, ladder))
            rows = _ladder_first(table, ladder)
            on_windows = pd.DataFrame({"T": win.T, "field": win.field, "f_est": np.nan, "f_est_err": np.nan,
                                       "est_converged": False, "converged": windows["energy_mixed"]})  # fmt: skip
            cols = list(on_windows.columns)
            rows = pd.concat([rows[cols], on_windows], ignore_index=True)
            energy, spin_sum = np.concatenate([energy, win.energy]), np.concatenate([spin_sum, win.spin_sum])
            order.append(_phases(system, win.states))
        order = None if order[0] is None else tuple(np.concatenate(a) for a in zip(*order, strict=True))
        composition = refined_composition_table(system, rows, energy, spin_sum, size=system.size,
                                                seed=derived_seed(seed, 2), reference=composition_reference,
                                                ladder=lad, order=order)  # fmt: skip
        composition.insert(2, "model", model)
        composition.insert(3, "source", source)
    if not ising:
        return Refinement(table, pd.DataFrame({c: [] for c in CORRELATION_COLUMNS}), composition, ladder, windows)
    g = correlation_function(result.states, system.L).mean(axis=2)  # (n_cond, n_chains, R): per chain
    R = g.shape[-1]
    corr = pd.DataFrame({
        "system": system.name, "size": system.size, "T": np.repeat(T, R), "field": np.repeat(h, R),
        "model": model, "source": source, "r": np.tile(np.arange(R), len(T)),
        "G": g.mean(axis=1).ravel(), "G_err": (g.std(axis=1, ddof=1) / np.sqrt(g.shape[1])).ravel(),
    })  # fmt: skip
    return Refinement(table, corr, composition, ladder, windows)
