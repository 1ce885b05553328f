"""Composition-resolved free energies from a sampler's semi-grand samples, and the phase diagram.

A CuAu sample file holds, at every temperature ``T``, draws ``x ~ q(·|T, μ_k)`` at each chemical
potential ``μ_k`` of the grid with their exact ``log q``, energy ``E`` and ``Σs = 2 n_Au − N``. The
canonical partition function at ``n`` Au atoms, ``Z_n = Σ_{x: n(x) = n} exp(−β E(x))``, is the
same quantity under every ``μ_k``, and each ``μ_k``'s draws estimate it without bias::

    w_i      = exp(−β (E_i − μ_k Σs_i) − log q(x_i))        (importance weight to p_μk, unnormalised)
    Ẑ_n^(k)  = exp(−β μ_k (2n − N)) · (1/M_k) Σ_i 1[n_i = n] w_i

(the factor ``exp(β μ_k Σs)`` is constant at fixed ``n``). Its relative variance is estimated by
the delta method, ``Var ln Ẑ = Σ w² / (Σ w)² − 1/M`` over the draws at ``n`` (plus the resolution of
``M`` draws, ``1/M²``: a composition region below ~1/M of the mass goes unseen, as for ``f_NIS``).
A ``(μ_k, n)`` pair enters when at least ``min_count`` of its draws have ``n`` Au atoms; the
estimates of one ``(T, n)`` are combined with inverse-variance weights, and
``f_x = −k_B T ln Z_n / N`` with the combined one-sigma error. Compositions that no ``μ_k``
visits often enough get no row value (NaN): on a grid of ``μ`` these are the compositions inside
two-phase regions, which the semi-grand ensemble skips.

``u_x = ⟨E⟩_n / N`` and ``c_x = β² Var_n(E) / N`` (units of k_B) are the self-normalised
estimates of each ``μ_k``'s draws at ``n``, averaged over the ``μ_k`` in proportion to their
effective counts there; their errors are the delta method's (``Σ w̃² (E − Ē)²`` and
``Σ w̃² ((E − Ē)² − Var E)²``), combined with the same proportions.

A row is ``converged`` when the effective draws at ``n``, summed over ``μ_k``, reach
:data:`MIN_EFFECTIVE`; the phase diagram (:func:`sampler_phase_diagram`) uses those rows only, by
the reference's hull construction (:func:`lattherm.reference.phase_diagram.two_phase_regions`),
and claims a two-phase interval only where its inside shows one: a converged composition above
the hull, or compositions the draws skip.

**The composition ladder** (:func:`run_windows`, :func:`window_links`, :func:`composition_ladder`).
The semi-grand ensemble skips the compositions inside two-phase regions, and near a first-order
transition in μ its chains keep the phase they started in. Chains kept to two neighbouring
compositions ``{n, n + 1}`` (a *window*: :func:`lattherm.reference.mcmc.run_metropolis` with
``spin_window``) at one μ sample ``P(n + 1)/P(n) = (Z_(n+1)/Z_n) e^(2βμ)``, so each window gives a
link ``d_n = ln Z_(n+1) − ln Z_n = logit f − 2βμ`` (``f`` the fraction of sweeps at ``n + 1``,
per chain from the sweep averages; error by the delta method from the spread between chains),
and its states at one composition are canonical draws there (``u_x``, ``c_x``). Every window of
a temperature grid runs: ``n = 0 … N − 1`` at every T, exchanging configurations along T at each
window. μ is set per window so that both compositions are visited: a first guess from the
semi-grand chains' ``x(μ)``, then :data:`WINDOW_ROUNDS` short rounds that move μ by
``ln((1 − f)/f)/(2β)``; the measuring run keeps μ fixed. Starts: the sample file's
configurations at that T nearest in composition, brought into the window by flipping random
sites. A window whose chains fail the convergence tests runs again, with its whole ladder (every T
of its ``n``), from the same starts for twice the sweeps, up to :data:`WINDOW_EXTENSIONS` times
(column ``sweeps``). A link counts where the window's chains mixed and at least
:data:`MIN_CHAINS` chains visit each side.

At each T, ``ln Z_0 … ln Z_N`` come from a weighted least-squares fit
(:func:`lattherm.observables.chain_fit`) of the links between the two exact ends: the pure
elements are single configurations, ``ln Z_0 = −β E(all Cu)`` and ``ln Z_N = −β E(all Au)``. With
every link present the fit has one degree of freedom, the links chained from pure Cu reaching pure
Au, and a consistent fit (``ladder_p``) claims every composition; a missing link splits the chain
into stretches tied to one end each (claimed, untested by the chi-square). ``f_x`` then comes from
the windows' Monte Carlo, started from the sampler's draws at the μ its chains set. The sampler's
own ``ln Z_μ`` (claimed Bennett or T-ladder estimates) are the check, one anchor per claimed μ (at
the composition its chains visit most, ``ln Z_μ + ln P_μ(n) − βμ(2n − N)``): their chi-square
against the fit, ``anchor_chi2`` over ``anchor_dof`` anchors (variances the anchor's plus the
fit's), and its p-value ``anchor_p``.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd

from lattherm.io import check_columns
from lattherm.observables import chain_fit, log_weights
from lattherm.reference.mcmc import MCMCResult, mcmc_table, run_metropolis
from lattherm.reference.phase_diagram import solution_name, two_phase_regions
from lattherm.seeds import derived_seed
from lattherm.systems import system_info

__all__ = ["composition_table", "composition_ladder", "log_composition", "log_windows", "refined_composition_table",
           "run_windows", "sampler_phase_diagram", "semi_grand_from_ladder", "window_links", "window_starts",
           "MIN_EFFECTIVE", "MIN_COUNT", "MIN_CHAINS", "WINDOW_COLUMNS", "WINDOW_EXTENSIONS", "WINDOW_ROUNDS",
           "WINDOW_ROUND_SWEEPS"]

#: least effective draws at a composition (all μ together) for a converged row
MIN_EFFECTIVE = 50
#: least draws at a composition under one μ for that μ's estimate to enter
MIN_COUNT = 20

#: least chains that visit a composition under one μ for the refined estimate there to enter (its
#: histogram's error is the spread between chains)
MIN_CHAINS = 8

#: rounds of the μ adjustment of the composition windows, and sweeps per round
WINDOW_ROUNDS = 4
WINDOW_ROUND_SWEEPS = 40
#: reruns, at twice the sweeps each, of the windows whose chains did not pass the convergence tests
WINDOW_EXTENSIONS = 2
#: one row per window (:func:`window_links`)
WINDOW_COLUMNS = ("system", "size", "T", "n_au", "field", "n_chains", "frac_up", "d_ln_z", "d_ln_z_err",
                  "chains_lo", "chains_hi", "converged", "energy_mixed", "link", "sweeps", "diagnosis")  # fmt: skip

#: leading columns of :func:`composition_table` (the reference composition tables' schema first)
COLUMNS = ["system", "size", "T", "n_au", "x_au", "f_x", "f_x_err", "f_x_formation", "u_x", "u_x_err", "c_x", "c_x_err",
           "n_draws", "n_effective", "n_mu", "converged"]  # fmt: skip


def _per_mu(mu: float, E: np.ndarray, s: np.ndarray, log_q: np.ndarray, N: int, beta: float,
            min_count: int) -> dict[str, np.ndarray]:  # fmt: skip
    """One chemical potential's estimates per composition ``n = 0..N`` (module doc): ``log_z`` and
    its delta-method variance, the effective count, ``⟨E⟩`` and ``Var E`` with their variances,
    the draw count and whether the estimate enters (``use``)."""
    M = len(E)
    n_i = np.rint((s + N) / 2).astype(np.int64)
    lw = log_weights(log_q, beta * (E - mu * s))
    c0 = np.full(N + 1, -np.inf)
    np.maximum.at(c0, n_i, lw)  # per composition: no weight underflows against another n's
    c0 = np.where(np.isfinite(c0), c0, 0.0)
    w = np.exp(lw - c0[n_i])

    def per_n(v: np.ndarray) -> np.ndarray:
        return np.bincount(n_i, v, minlength=N + 1)

    cnt = np.bincount(n_i, minlength=N + 1)
    use = cnt >= min_count
    S1 = np.where(use, per_n(w), 1.0)
    S2 = np.where(use, per_n(w * w), 1.0)
    mean = per_n(w * E) / S1
    d = E - mean[n_i]
    var = per_n(w * d * d) / S1
    return {
        "use": use,
        "count": cnt,
        "log_z": -beta * mu * (2 * np.arange(N + 1) - N) + c0 + np.log(S1 / M),
        # delta method: Var ln Ẑ = Σw²/(Σw)² − 1/M, plus the resolution of M draws
        "log_z_var": np.maximum(S2 / S1**2 - 1.0 / M, 0.0) + 1.0 / M**2,
        "ess": S1**2 / S2,
        "mean": mean,
        "mean_var": per_n(w * w * d * d) / S1**2,
        "var": var,
        "var_var": per_n(w * w * (d * d - var[n_i]) ** 2) / S1**2,
    }


def _one_temperature(groups: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]], N: int, beta: float,
                     min_count: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Per composition ``n = 0..N``: the μ estimates combined (module doc): ``log_z`` (inverse
    variance) and its variance; ``mean``, ``var`` of E and their variances (in proportion to the
    effective counts); draw count, effective count and the number of μ that entered."""
    parts = [_per_mu(mu, E, s, log_q, N, beta, min_count) for mu, E, s, log_q in groups]
    parts = [p for p in parts if p["use"].any()]

    def total(fn) -> np.ndarray:
        return sum((np.where(p["use"], fn(p), 0.0) for p in parts), np.zeros(N + 1))

    inv = total(lambda p: 1.0 / p["log_z_var"])
    ess = total(lambda p: p["ess"])
    seen = inv > 0
    inv_, ess_ = np.where(seen, inv, 1.0), np.where(seen, ess, 1.0)
    out = {"log_z": total(lambda p: p["log_z"] / p["log_z_var"]) / inv_, "log_z_var": 1.0 / inv_}
    for k in ("mean", "var"):  # each μ in proportion to its effective draws at n
        out[k] = total(lambda p, k=k: p["ess"] / ess_ * p[k])
        out[k + "_var"] = total(lambda p, k=k: (p["ess"] / ess_) ** 2 * p[k + "_var"])
    out = {k: np.where(seen, v, np.nan) for k, v in out.items()}
    draws = sum(np.bincount(np.rint((s + N) / 2).astype(np.int64), minlength=N + 1) for _, _, s, _ in groups)
    n_mu = sum((p["use"].astype(np.int64) for p in parts), np.zeros(N + 1, np.int64))
    return {**out, "draws": draws, "ess": ess, "n_mu": n_mu}


def composition_table(samples: pd.DataFrame, system, *, size: str, min_count: int = MIN_COUNT,
                      reference: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
    """Canonical ``f_x`` (eV/atom) with errors, ``u_x``, ``c_x`` at every ``(T, n_au)`` from a CuAu
    sample file (columns ``T, field, log_q, energy, spin_sum``; every ``μ`` of a temperature is
    used), in the reference composition tables' schema (:data:`COLUMNS`). With a ``reference``
    composition table (``T, n_au, f_x``, and ``f_x_err`` if it has one): also ``f_x_ref`` (and
    ``f_x_ref_err``) and ``delta_f_x = f_x − f_x_ref``."""
    check_columns(samples, ("T", "field", "log_q", "energy", "spin_sum"), what="sample table")
    if int(min_count) < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    N = int(system.n_sites)
    k_B = float(system.k_B)
    pure = system.pure_energies()
    n_au = np.arange(N + 1)
    x_au = n_au / N
    parts = []
    for T, g in samples.groupby("T", sort=True):
        beta = 1.0 / (k_B * float(T))
        groups = [(float(mu), gm["energy"].to_numpy(np.float64), gm["spin_sum"].to_numpy(np.float64),
                   gm["log_q"].to_numpy(np.float64)) for mu, gm in g.groupby("field", sort=True)]  # fmt: skip
        r = _one_temperature(groups, N, beta, int(min_count))
        f_x = -k_B * float(T) * r["log_z"] / N
        parts.append(pd.DataFrame({
            "system": system.name, "size": size, "T": float(T), "n_au": n_au, "x_au": x_au,
            "f_x": f_x, "f_x_err": k_B * float(T) * np.sqrt(r["log_z_var"]) / N,
            "f_x_formation": f_x - (x_au * pure.au + (1.0 - x_au) * pure.cu),
            "u_x": r["mean"] / N, "u_x_err": np.sqrt(r["mean_var"]) / N,
            "c_x": beta**2 * r["var"] / N, "c_x_err": beta**2 * np.sqrt(r["var_var"]) / N,
            "n_draws": r["draws"], "n_effective": r["ess"], "n_mu": r["n_mu"],
            "converged": r["ess"] >= MIN_EFFECTIVE,
        }))  # fmt: skip
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    return _with_reference(table, reference)


def _with_reference(table: pd.DataFrame, reference: pd.DataFrame | None) -> pd.DataFrame:
    """``table`` with ``f_x_ref`` (``f_x_ref_err``) and ``delta_f_x`` from a reference composition
    table, or unchanged without one."""
    if reference is not None:
        check_columns(reference, ("T", "n_au", "f_x"), what="reference composition table")
        cols = ["T", "n_au", "f_x", *(["f_x_err"] if "f_x_err" in reference else [])]
        ref = reference[cols].rename(columns={"f_x": "f_x_ref", "f_x_err": "f_x_ref_err"})
        table = table.merge(ref.assign(T=ref["T"].astype(float), n_au=ref["n_au"].astype(np.int64)),
                            on=["T", "n_au"], how="left")  # fmt: skip
        table["delta_f_x"] = table["f_x"] - table["f_x_ref"]
    return table


def refined_composition_table(system, refined: pd.DataFrame, energy: np.ndarray, spin_sum: np.ndarray, *, size: str,
                              min_count: int = MIN_COUNT, min_chains: int = MIN_CHAINS, n_boot: int = 200,
                              seed: int = 0, reference: pd.DataFrame | None = None,
                              ladder: pd.DataFrame | None = None,
                              order: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:  # fmt: skip
    """Canonical ``f_x``, ``u_x``, ``c_x`` at every ``(T, n_au)`` from refined semi-grand chains, in
    :func:`composition_table`'s schema (with ``estimator = "refined"``, and ``f_x_method``: where
    ``f_x`` comes from, ``"semi-grand"``, ``"ladder"`` or empty).

    ``refined``: one row per condition (``T, field`` = μ, Bennett's ``f_est, f_est_err``,
    ``est_converged`` and the chains' ``converged``: :func:`lattherm.refine.refine` with a density);
    ``energy`` and ``spin_sum``: the chains' kept samples, ``(n_cond, n_chains, n_samples)``, in the
    rows' order. Each refined chain state is a draw of ``p_μ``, so its composition histogram
    ``P_μ(n)`` ties the semi-grand partition function to the canonical one::

        ln Z_n = ln Z_μ + ln P_μ(n) − β μ (2n − N)

    with ``ln Z_μ = −N β f_est`` from Bennett's estimate or the ladder's (both survive NESS → 0
    where the importance weights of :func:`composition_table` do not; :func:`lattherm.refine.refine`
    passes the ladder's where it is claimed: it reaches conditions whose own Bennett estimate lacks
    overlap, as near a transition). Its variance is ``ln Z_μ``'s plus the
    histogram's, ``(σ_P / P)²`` with ``σ_P`` the spread of the per-chain fractions over the chains.
    A μ's chains sample ``n`` when they mixed (``converged``) and at least ``min_count`` of their
    states, from at least ``min_chains`` chains, have ``n`` Au atoms. Every such state is a draw of
    the canonical ``p(x | n)`` whatever its μ: ``u_x`` and ``c_x`` pool them over those μ, with
    errors from ``n_boot`` bootstrap resamples of whole chains (they need no ``ln Z_μ``). A μ enters
    ``f_x`` where it samples ``n`` and its ``ln Z_μ`` is claimed (``est_converged``); the μ are
    combined with inverse-variance weights. ``n_draws`` counts every row's states at ``n``
    (claimed or not: a composition the chains visit is no composition the ensemble skips, for
    :func:`sampler_phase_diagram`), ``n_effective`` the (μ, chain) pairs of the entering μ that visit
    it; a row is ``converged`` where at least one μ entered ``f_x`` (``u_x``, ``c_x`` may have values
    where it is not). With a :func:`composition_ladder` table (``ladder``), ``f_x`` is the ladder's
    where it is claimed (``ladder_p`` its temperature's fit, ``anchor_p`` the sampler's ``ln Z_μ``
    against it), the histograms' elsewhere. Rows of
    composition windows (their μ the windows', ``f_est`` NaN) add their states to ``u_x``, ``c_x``.

    ``order``: the states' phase codes and order-parameter magnitudes (the system's ``phase_of``,
    each ``(n_cond, n_chains, n_samples)``), pooled like ``u_x``: ``eta`` (the mean magnitude),
    ``ordered_frac`` (the fraction of states in an ordered phase, code ≠ 0) and ``phase`` (the
    system's name of the most frequent code; empty where no state counts)."""
    check_columns(refined, ("T", "field", "f_est", "f_est_err", "est_converged", "converged"), what="refined table")
    energy, spin_sum = np.asarray(energy, np.float64), np.asarray(spin_sum, np.float64)
    if energy.shape != spin_sum.shape or energy.ndim != 3 or energy.shape[0] != len(refined):
        raise ValueError(f"energy and spin_sum must be (n_cond, n_chains, n_samples) with n_cond = {len(refined)} "
                         f"rows of the refined table, got {energy.shape} and {spin_sum.shape}")  # fmt: skip
    if int(min_count) < 1 or int(min_chains) < 2:
        raise ValueError(f"min_count must be >= 1 and min_chains >= 2, got {min_count!r} and {min_chains!r}")
    N, k_B = int(system.n_sites), float(system.k_B)
    pure = system.pure_energies()
    n_au = np.arange(N + 1)
    x_au = n_au / N
    n_state = np.rint((spin_sum + N) / 2).astype(np.int64)
    mixed = refined["converged"].astype(bool).to_numpy()
    claimed = refined["est_converged"].astype(bool).to_numpy() & mixed
    rng = np.random.default_rng(seed)
    names = tuple(system_info(system.name).phases) if order is not None else ()
    if order is not None and (not names or any(np.shape(a) != energy.shape for a in order)):
        raise ValueError(f"order must be the phase codes and order parameters of every state, {energy.shape}, of a "
                         f"system that names phases, got {[np.shape(a) for a in order]} for {system.name}")  # fmt: skip
    parts = []
    for T, rows in refined.reset_index(drop=True).groupby("T", sort=True):
        beta = 1.0 / (k_B * float(T))
        inv, num = np.zeros(N + 1), np.zeros(N + 1)
        n_mu, draws, pairs = np.zeros(N + 1, np.int64), np.zeros(N + 1, np.int64), np.zeros(N + 1, np.int64)
        groups = []  # per (μ, chain): count, Σ E, Σ E² at every n (the mixed μ that visit it)
        codes, eta_sum = np.zeros((N + 1, len(names)), np.int64), np.zeros(N + 1)
        sampled = np.zeros(N + 1, bool)
        for c in rows.index:
            C = n_state.shape[1]
            n_c, E_c = n_state[c], energy[c]
            cnt, P, P_err = _histogram(n_c, N)
            draws += cnt.sum(axis=0)  # visited, claimed or not: not a composition the ensemble skips
            visited = (cnt.sum(axis=0) >= min_count) & ((cnt > 0).sum(axis=0) >= min_chains) & mixed[c]
            if not visited.any():
                continue
            sums = np.stack([cnt, *(np.stack([np.bincount(n_c[j], E_c[j] ** k, minlength=N + 1) for j in range(C)])
                                    for k in (1, 2))], axis=-1)  # fmt: skip
            groups.append(np.where(visited[None, :, None], sums, 0.0))  # u_x, c_x: any mixed chains
            if order is not None:
                at = visited[n_c]
                codes += np.bincount(n_c[at] * len(names) + order[0][c][at], minlength=(N + 1) * len(names)
                                     ).reshape(N + 1, len(names))  # fmt: skip
                eta_sum += np.bincount(n_c[at], order[1][c][at], minlength=N + 1)
            sampled |= visited
            use = visited & claimed[c]  # f_x: also ln Z_μ
            if not use.any():
                continue
            P_ = np.where(use, P, 1.0)
            log_z, var = _canonical_log_z(refined.iloc[c], P_, P_err, n_au, beta, N)
            inv += np.where(use, 1.0 / var, 0.0)
            num += np.where(use, log_z / var, 0.0)
            n_mu += use
            pairs += np.where(use, (cnt > 0).sum(axis=0), 0)
        seen = inv > 0
        log_z = np.where(seen, num / np.where(seen, inv, 1.0), np.nan)
        log_z_err = np.where(seen, 1.0 / np.sqrt(np.where(seen, inv, 1.0)), np.nan)
        method = np.where(seen, "semi-grand", "")
        ladder_p, anchor_p = np.full(N + 1, np.nan), np.full(N + 1, np.nan)
        if ladder is not None:
            lad = ladder[ladder["T"] == T].set_index("n_au").reindex(n_au)
            on = lad["claimed"].fillna(False).to_numpy(bool)
            log_z = np.where(on, -N * beta * lad["f_x"].to_numpy(np.float64), log_z)
            log_z_err = np.where(on, N * beta * lad["f_x_err"].to_numpy(np.float64), log_z_err)
            seen, method = seen | on, np.where(on, "ladder", method)
            ladder_p, anchor_p = lad["ladder_p"].to_numpy(np.float64), lad["anchor_p"].to_numpy(np.float64)
        u, c_x, u_err, c_err = (np.full(N + 1, np.nan) for _ in range(4))
        if groups:
            S = np.concatenate(groups)  # (G, N + 1, 3)
            W = rng.multinomial(len(S), np.full(len(S), 1.0 / len(S)), size=int(n_boot)).astype(np.float64)
            tot = np.concatenate([S.sum(axis=0)[None], np.einsum("bg,gnk->bnk", W, S)])  # estimate, replicates
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = tot[..., 1] / tot[..., 0]
                var_E = np.maximum(tot[..., 2] / tot[..., 0] - mean**2, 0.0)
            u, c_x = np.where(sampled, mean[0] / N, np.nan), np.where(sampled, beta**2 * var_E[0] / N, np.nan)
            with warnings.catch_warnings():  # compositions no μ entered: all-NaN columns, masked below
                warnings.simplefilter("ignore", RuntimeWarning)
                u_err = np.where(sampled, np.nanstd(mean[1:], axis=0, ddof=1) / N, np.nan)
                c_err = np.where(sampled, beta**2 * np.nanstd(var_E[1:], axis=0, ddof=1) / N, np.nan)
        f_x = -log_z / (beta * N)
        phases = {}
        if order is not None:
            n_order = codes.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                phases = {"eta": eta_sum / n_order, "ordered_frac": 1.0 - codes[:, 0] / n_order,
                          "phase": np.where(n_order > 0, np.asarray(names)[np.argmax(codes, axis=1)], "")}  # fmt: skip
        parts.append(pd.DataFrame({
            "system": system.name, "size": size, "T": float(T), "n_au": n_au, "x_au": x_au,
            "f_x": f_x, "f_x_err": log_z_err / (beta * N),
            "f_x_formation": f_x - (x_au * pure.au + (1.0 - x_au) * pure.cu),
            "u_x": u, "u_x_err": u_err, "c_x": c_x, "c_x_err": c_err,
            "n_draws": draws, "n_effective": pairs, "n_mu": n_mu, "converged": seen, "estimator": "refined",
            "f_x_method": method, "ladder_p": ladder_p, "anchor_p": anchor_p,
            **phases,
        }))  # fmt: skip
    table = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame(columns=[*COLUMNS, "estimator", "f_x_method", "ladder_p", "anchor_p"]))  # fmt: skip
    return _with_reference(table, reference)


def _canonical_log_z(row, P, P_err, n, beta: float, N: int) -> tuple:
    """``ln Z_n = ln Z_μ + ln P_μ(n) − βμ(2n − N)`` and its variance, ``ln Z_μ``'s (from the refined
    ``row``: ``field`` = μ, ``f_est``, ``f_est_err``) plus the histogram's ``(σ_P / P)²``."""
    log_z_mu = -N * beta * float(row["f_est"])
    var_mu = (N * beta * float(row["f_est_err"])) ** 2
    return log_z_mu + np.log(P) - beta * float(row["field"]) * (2 * n - N), var_mu + (P_err / P) ** 2


def _histogram(n_c: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The composition histogram of one condition's chains, ``n_c`` ``(n_chains, n_samples)`` Au
    counts: per-chain counts ``(n_chains, N + 1)``, ``P(n)`` (the mean of the per-chain fractions)
    and its error (their spread over the chains)."""
    cnt = np.stack([np.bincount(row, minlength=N + 1) for row in n_c])
    frac = cnt / n_c.shape[1]
    return cnt, frac.mean(axis=0), frac.std(axis=0, ddof=1) / np.sqrt(len(frac))


def window_starts(pool_T: np.ndarray, pool_x: np.ndarray, T: np.ndarray, n: np.ndarray, n_chains: int, *,
                  seed: int) -> np.ndarray:  # fmt: skip
    """``(n_windows, n_chains, N)`` uint8 starts of the windows ``{n, n + 1}`` at ``T``: for each,
    the ``pool_x`` configurations (``(M, N)`` 0/1, at temperatures ``pool_T``) of the same T nearest
    in composition (ties at random; repeated if the pool is short), brought to ``n`` or ``n + 1``
    by flipping random sites (seeded)."""
    rng = np.random.default_rng(seed)
    pool_x = np.asarray(pool_x, np.uint8)
    N = pool_x.shape[1]
    comp = pool_x.sum(axis=1).astype(np.int64)
    out = np.empty((len(T), int(n_chains), N), np.uint8)
    for c, (t, k) in enumerate(zip(np.asarray(T, np.float64), np.asarray(n, np.int64), strict=True)):
        idx = np.flatnonzero(pool_T == t)
        if not len(idx):
            raise ValueError(f"no configuration at T={t} to start the composition windows from")
        near = idx[np.lexsort((rng.random(len(idx)), np.abs(comp[idx] - (k + 0.5))))]
        for j, i in enumerate(np.resize(near[:n_chains], n_chains)):
            x = pool_x[i].copy()
            diff = min(max(int(comp[i]), k), k + 1) - int(comp[i])
            if diff:
                x[rng.choice(np.flatnonzero(x == (diff < 0)), abs(diff), replace=False)] = diff > 0
            out[c, j] = x
    return out


def _mu_guess(table: pd.DataFrame, T: np.ndarray, n: np.ndarray, N: int) -> np.ndarray:
    """μ at which the semi-grand chains' mean composition (``table``: ``T, field, x_au``) passes
    ``(n + 1/2)/N``, by linear interpolation at each T (clamped to the μ grid's ends)."""
    out = np.empty(len(T))
    for t in np.unique(T):
        g = table[(table["T"] == t) & table["x_au"].notna()].sort_values("field")
        at = T == t
        if len(g) < 2:
            out[at] = float(g["field"].iloc[0]) if len(g) else 0.0
            continue
        x = np.maximum.accumulate(g["x_au"].to_numpy(np.float64)) + 1e-12 * np.arange(len(g))
        out[at] = np.interp((n[at] + 0.5) / N, x, g["field"].to_numpy(np.float64))
    return out


def _up_fraction(result: MCMCResult) -> np.ndarray:
    """``(n_windows, n_chains)``: the fraction of the sampling sweeps each chain spent at the upper
    composition of its window (from the per-sweep averages of ``Σs``)."""
    lo = result.spin_window[:, 0].astype(np.float64)
    return ((result.averages[..., 2] - lo[:, None, None]) / 2.0).mean(axis=2)


def run_windows(system, semi_grand: pd.DataFrame, pool_T: np.ndarray, pool_x: np.ndarray, *, n_chains: int,
                burn_in_sweeps: int, n_samples: int, thin_sweeps: int, seed: int,
                replica_exchange: bool = True) -> tuple[MCMCResult, np.ndarray]:  # fmt: skip
    """The composition windows ``{n, n + 1}``, ``n = 0 … N − 1``, at every temperature of the
    ``semi_grand`` table (``T, field, x_au``: its μ guess), started from ``pool_x`` (module doc):
    the measuring run's :class:`~lattherm.reference.mcmc.MCMCResult` (its ``field`` the windows'
    μ, ``spin_window`` their bounds; the rows of extended windows those of their last run) and the
    sweeps each window ran, burn-in included."""
    N, k_B = int(system.n_sites), float(system.k_B)
    temps = np.unique(semi_grand["T"].to_numpy(np.float64))
    T = np.repeat(temps, N)
    n = np.tile(np.arange(N), len(temps))
    window = np.stack([2 * n - N, 2 * n + 2 - N], axis=1)
    beta = 1.0 / (k_B * T)
    mu = _mu_guess(semi_grand, T, n, N)
    x = window_starts(pool_T, pool_x, T, n, n_chains, seed=derived_seed(seed, 0))
    eps = 1.0 / (n_chains * WINDOW_ROUND_SWEEPS)
    for r in range(WINDOW_ROUNDS):
        res = run_metropolis(system, T, mu, n_chains=n_chains, n_samples=2, burn_in_sweeps=0,
                             thin_sweeps=WINDOW_ROUND_SWEEPS // 2, seed=derived_seed(seed, 1, r), start=x,
                             keep_states=True, replica_exchange=replica_exchange, spin_window=window)  # fmt: skip
        f = _up_fraction(res).mean(axis=1)
        mu = mu + np.log((1.0 - f + eps) / (f + eps)) / (2.0 * beta)
        x = res.states[:, :, -1]

    def measure(at: np.ndarray, factor: int, key: int) -> MCMCResult:
        return run_metropolis(system, T[at], mu[at], n_chains=n_chains, n_samples=n_samples,
                              burn_in_sweeps=factor * burn_in_sweeps, thin_sweeps=factor * thin_sweeps,
                              seed=derived_seed(seed, 2, key), start=x[at], keep_states=True, progress=True,
                              replica_exchange=replica_exchange, spin_window=window[at])  # fmt: skip

    out = measure(np.ones(len(T), bool), 1, 0)
    sweeps = np.full(len(T), burn_in_sweeps + n_samples * thin_sweeps, np.int64)
    arrays = {k: np.array(getattr(out, k)) for k in ("energy", "spin_sum", "states", "averages", "exchange")
              if getattr(out, k) is not None}  # fmt: skip
    bad = ~mcmc_table(out, system)["converged"].to_numpy(bool)
    for r in range(1, WINDOW_EXTENSIONS + 1):
        at = np.isin(n, n[bad])  # a window's whole ladder: every T of its n
        if not at.any():
            break
        ext = measure(at, 2**r, r)
        for k, a in arrays.items():
            a[at] = getattr(ext, k)
        sweeps[at] = 2**r * (burn_in_sweeps + n_samples * thin_sweeps)
        bad = np.zeros(len(T), bool)
        bad[at] = ~mcmc_table(ext, system)["converged"].to_numpy(bool)
    return replace(out, **arrays), sweeps


def window_links(result: MCMCResult, system, *, sweeps: np.ndarray | None = None,
                 min_chains: int = MIN_CHAINS) -> pd.DataFrame:  # fmt: skip
    """One row per window of :func:`run_windows` (:data:`WINDOW_COLUMNS`): its μ (``field``), the
    fraction ``frac_up`` of sweeps at ``n + 1``, the link ``d_ln_z = ln Z_(n+1) − ln Z_n`` and its
    error, the chains that visit each side, the chains' convergence (the MCMC reference's tests:
    ``converged`` for all of them, ``energy_mixed`` where ``E`` passes them: the window's states
    then enter ``u_x``, ``c_x``) and ``link``: whether the link enters :func:`composition_ladder`
    (``Σs`` passes the same tests, at least ``min_chains`` chains on each side); ``sweeps`` per
    window (:func:`run_windows`'), by default the result's."""
    N, k_B = int(system.n_sites), float(system.k_B)
    tab = mcmc_table(result, system)
    f_cj = _up_fraction(result)
    C = f_cj.shape[1]
    f = f_cj.mean(axis=1)
    beta = 1.0 / (k_B * result.T)
    up = result.spin_sum > result.spin_window[:, :1, None]
    chains_hi, chains_lo = up.any(axis=2).sum(axis=1), (~up).any(axis=2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(f / (1.0 - f)) - 2.0 * beta * result.field
        err = f_cj.std(axis=1, ddof=1) / np.sqrt(C) / (f * (1.0 - f))
    converged = tab["converged"].to_numpy(bool)
    mixed = np.isfinite(tab["m_err"].to_numpy(np.float64))  # Σs claimed: the window's composition mixed
    link = mixed & (chains_lo >= min_chains) & (chains_hi >= min_chains) & np.isfinite(d) & (err > 0)
    return pd.DataFrame({
        "system": system.name, "size": system.size, "T": result.T,
        "n_au": ((result.spin_window[:, 0] + N) // 2).astype(np.int64), "field": result.field, "n_chains": C,
        "frac_up": f, "d_ln_z": d, "d_ln_z_err": err, "chains_lo": chains_lo, "chains_hi": chains_hi,
        "converged": converged, "energy_mixed": np.isfinite(tab["u_err"].to_numpy(np.float64)), "link": link,
        "sweeps": (np.full(len(f), result.burn_in_sweeps + result.n_samples * result.thin_sweeps, np.int64)
                   if sweeps is None else np.asarray(sweeps, np.int64)),
        "diagnosis": tab["diagnosis"].to_numpy(),
    }, columns=list(WINDOW_COLUMNS))  # fmt: skip


def composition_ladder(system, refined: pd.DataFrame, spin_sum: np.ndarray, links: pd.DataFrame, *,
                       min_count: int = MIN_COUNT, min_chains: int = MIN_CHAINS) -> pd.DataFrame:  # fmt: skip
    """``ln Z_n`` at every ``(T, n_au)`` from the window links between the exact pure-element ends,
    and the sampler's anchors checked against it (module doc): ``refined`` and ``spin_sum`` as for
    :func:`refined_composition_table` (the semi-grand conditions), ``links`` a :func:`window_links`
    table. Columns ``T, n_au, f_x, f_x_err`` (NaN where no end is tied), ``claimed``, the T's fit
    ``ladder_chi2, ladder_dof, ladder_p`` and the anchors' check ``anchor_chi2, anchor_dof,
    anchor_p`` (NaN without an anchor at a claimed composition)."""
    from scipy.stats import chi2

    check_columns(refined, ("T", "field", "f_est", "f_est_err", "est_converged", "converged"), what="refined table")
    check_columns(links, ("T", "n_au", "d_ln_z", "d_ln_z_err", "link"), what="window table")
    N, k_B = int(system.n_sites), float(system.k_B)
    pure = system.pure_energies()
    n_state = np.rint((np.asarray(spin_sum, np.float64) + N) / 2).astype(np.int64)
    claimed = (refined["est_converged"].astype(bool) & refined["converged"].astype(bool)).to_numpy()
    parts = []
    for T in np.unique(np.concatenate([refined["T"].to_numpy(np.float64), links["T"].to_numpy(np.float64)])):
        beta = 1.0 / (k_B * T)
        ends = [(0, -beta * N * pure.cu, 0.0, True), (N, -beta * N * pure.au, 0.0, True)]
        lk = links[(links["T"] == T) & links["link"].astype(bool)]
        fit = chain_fit(N + 1, ends, [(int(r.n_au), float(r.d_ln_z), float(r.d_ln_z_err) ** 2)
                                      for r in lk.itertuples()])  # fmt: skip
        z = []
        for c in np.flatnonzero((refined["T"].to_numpy() == T) & claimed):
            cnt, P, P_err = _histogram(n_state[c], N)
            visited = (cnt.sum(axis=0) >= min_count) & ((cnt > 0).sum(axis=0) >= min_chains)
            k = int(np.argmax(np.where(visited, cnt.sum(axis=0), -1)))
            if visited.any() and fit["claimed"][k]:
                y, var = _canonical_log_z(refined.iloc[c], P[k], P_err[k], k, beta, N)
                z.append((y - fit["ln_z"][k]) / np.sqrt(var + fit["ln_z_err"][k] ** 2))
        a_chi2 = float(np.sum(np.square(z))) if z else float("nan")
        parts.append(pd.DataFrame({
            "T": T, "n_au": np.arange(N + 1), "f_x": -fit["ln_z"] / (beta * N), "f_x_err": fit["ln_z_err"] / (beta * N),
            "claimed": fit["claimed"], "ladder_chi2": fit["chi2"], "ladder_dof": fit["dof"], "ladder_p": fit["p"],
            "anchor_chi2": a_chi2, "anchor_dof": len(z), "anchor_p": float(chi2.sf(a_chi2, len(z))) if z else np.nan,
        }))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def semi_grand_from_ladder(system, ladder: pd.DataFrame, T, mu) -> tuple[np.ndarray, np.ndarray]:
    """The semi-grand free energy per site ``f(T, μ) = −(k_B T / N) ln Σ_n Z_n e^(βμ(2n − N))`` at
    every ``(T, μ)`` from a :func:`composition_ladder` table claimed at every composition of that T
    (NaN elsewhere), and its error: ``Σ_n w_n σ(f_x)_n`` with ``w_n`` the composition distribution
    at μ (the nodes' errors taken fully correlated, an upper bound: the ladder's nodes share its
    links)."""
    N, k_B = int(system.n_sites), float(system.k_B)
    T, mu = np.asarray(T, np.float64), np.asarray(mu, np.float64)
    f, err = np.full(len(T), np.nan), np.full(len(T), np.nan)
    for t in np.unique(T):
        lad = ladder[ladder["T"] == t].sort_values("n_au")
        if len(lad) != N + 1 or not lad["claimed"].all():
            continue
        beta = 1.0 / (k_B * t)
        at = np.flatnonzero(T == t)
        a = -N * beta * lad["f_x"].to_numpy()[None, :] + beta * mu[at, None] * (2 * np.arange(N + 1) - N)
        log_sum = np.logaddexp.reduce(a, axis=1)
        f[at] = -log_sum / (N * beta)
        err[at] = (np.exp(a - log_sum[:, None]) * lad["f_x_err"].to_numpy()[None, :]).sum(axis=1)
    return f, err


def log_windows(windows: pd.DataFrame, log) -> None:
    """Log how many composition windows give a link (nothing for a table without rows)."""
    if len(windows):
        log.info("composition windows: %d of %d give a link (Σs mixed, both sides visited), %d have their energies "
                 "mixed", int(windows["link"].sum()), len(windows), int(windows["energy_mixed"].sum()))  # fmt: skip


def log_composition(table: pd.DataFrame, log) -> None:
    """Log how many ``(T, n_au)`` rows of a composition table converged and, with a reference, the
    largest error and ``|z|`` among them (both errors counted; rows exact on both sides left out
    of ``|z|``)."""
    ok = table[table["converged"].astype(bool)]
    log.info("%d of %d (T, n_au) rows converged", len(ok), len(table))
    if "delta_f_x" in table:
        err = np.hypot(ok["f_x_err"], ok["f_x_ref_err"].fillna(0.0) if "f_x_ref_err" in ok else 0.0)
        z = (ok["delta_f_x"] / err)[err > 0]
        log.info("converged rows: max |f_x - f_x_ref| = %.3g eV/atom, max |z| = %.2f (mean z² %.2f)",
                 ok["delta_f_x"].abs().max(), z.abs().max(), (z**2).mean())  # fmt: skip


def sampler_phase_diagram(table: pd.DataFrame, *, tol: float, n_sigma: float = 2.0) -> pd.DataFrame:
    """Two-phase intervals per temperature (:func:`~lattherm.reference.phase_diagram.two_phase_regions`)
    from the converged rows of a :func:`composition_table`: a composition counts as on the hull
    within ``tol + n_sigma · f_x_err`` of it, and the compositions without a converged value lie
    inside the interval that spans them (the semi-grand ensemble skips two-phase compositions).
    An interval is kept where that is what its inside shows: a converged composition above the hull,
    or one the draws skipped (fewer than :data:`MIN_COUNT` draws over all μ). One whose inside was
    drawn but did not converge says nothing about coexistence and is left out. With a ``phase``
    column (the order parameters of the chains' states), an interval's ends are named by it: the
    ordered phase of the states at that composition, or for a disordered one the hull's name of a
    solid solution ("Cu", "Au", "disordered")."""
    check_columns(table, ("system", "size", "T", "x_au", "f_x", "f_x_err", "converged", "n_draws"),
                  what="composition table")  # fmt: skip
    ok = table["converged"].astype(bool)
    regions = two_phase_regions(table.assign(f_x=table["f_x"].where(ok)), tol=tol, err="f_x_err", n_sigma=n_sigma)
    keep = []
    for r in regions.itertuples():
        g = table[(table["T"] == r.T) & (table["x_au"] > r.x_lo + 1e-12) & (table["x_au"] < r.x_hi - 1e-12)]
        shown = g["converged"].astype(bool) | (g["n_draws"] < MIN_COUNT)
        keep.append(bool(shown.any()))
    regions = regions[np.asarray(keep, dtype=bool)].reset_index(drop=True)
    if "phase" in table and len(regions):
        named = table.assign(_x=table["x_au"].round(12)).set_index(["T", "_x"])["phase"]
        for side in ("lo", "hi"):
            x = regions[f"x_{side}"]
            by_order = named.reindex(pd.MultiIndex.from_arrays([regions["T"], x.round(12)])).fillna("")
            regions[f"phase_{side}"] = [solution_name(xv) if p == "disordered" else p or hull
                                        for p, xv, hull in zip(by_order, x, regions[f"phase_{side}"], strict=True)]
    return regions
