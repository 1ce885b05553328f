"""Metropolis throughput on the 10x10 Ising torus, 4096 chains: spin-flip attempts per second;
with ``--check``, the full-grid honesty check of the MCMC references against exact values.

Side by side in one run: a naive vectorised torch checkerboard (float32 spins, ``torch.roll``
neighbour sums, ``exp`` per site, ``torch.where``) and the numba fast path of
:mod:`lattherm.reference.mcmc` (kernel alone, and ``run_metropolis`` end to end with the paper's
250 sweeps between samples), each with 1 and 2 threads; plus the numba kernel's block width.
Best of ``REPEATS`` timings (the machine is shared: others may load the CPU; the load average
is recorded with the results).

``--check`` (``benchmarks/results/mcmc_reference_check.json``): CuAu 2x2x4 (99 conditions) and
Ising 8x8 (105 conditions) on the laptop config's grids, at the laptop config's and the paper
config's Metropolis settings (``reference.mcmc`` of ``config/config.yaml`` and
``config/paper.yaml``), each run twice: "before" (independent chains from random starts, errors
from the samples, every error kept: what the reference did until the replica exchange) and
"after" (the library's workflow defaults: replica exchange, mixed starts, sweep averages and the
ladder estimate, unclaimed errors NaN). Every estimate is compared with exact enumeration
(:func:`lattherm.reference.cuau_exact.cuau_exact_table`), the transfer matrix
(:func:`lattherm.reference.exact.ising_transfer_matrix`; ``abs_m`` from the distribution of
``Σs``, :func:`ising_magnetisation_distribution`): rows, max |z| over claimed (finite) errors per
quantity, the rows with |z| > 4, flagged rows and their diagnoses, wall times.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numba
import numpy as np
import torch
from _harness import best_of, print_table, record

from lattherm.reference import _mcmc_kernels as K
from lattherm.reference import mcmc
from lattherm.systems import IsingSystem

L, CHAINS, T, H = 10, 4096, 2.269, 0.0
REPEATS = 3
E2E_SAMPLES, THIN = 4, 250  # run_metropolis end to end: the paper's thinning


@torch.no_grad()
def torch_checkerboard(n_sweeps: int, gen: torch.Generator) -> None:
    """The naive vectorised baseline: one float32 tensor ``(B, L, L)`` of spins ±1."""
    s = torch.randint(0, 2, (CHAINS, L, L), generator=gen).float() * 2 - 1
    ij = torch.arange(L)
    colour = ((ij[:, None] + ij[None, :]) % 2).bool()
    beta = 1.0 / T
    for _ in range(n_sweeps):
        for mask in (~colour, colour):
            nb = s.roll(1, 1) + s.roll(-1, 1) + s.roll(1, 2) + s.roll(-1, 2)
            dE = 2.0 * s * (nb + H)
            accept = torch.rand(s.shape, generator=gen) < torch.exp(-beta * dE)
            s = torch.where(mask & accept, -s, s)


def numba_kernel(n_sweeps: int, W: int) -> callable:
    system = IsingSystem(L)
    N = system.n_sites
    n_blocks = -(-CHAINS // W)
    x = np.zeros((1, n_blocks, N, W), dtype=np.uint8)
    st0 = np.zeros((1, n_blocks, W), dtype=np.uint64)
    st1 = np.zeros_like(st0)
    K.seed_streams(np.uint64(1), st0, st1)
    K.random_fill(x, st0, st1)
    thr = mcmc.ising_thresholds(np.array([T]), np.array([H]), 1.0)
    nb = np.ascontiguousarray(system.lattice.neighbours().numpy())
    order = mcmc._checkerboard_order(system)
    K.checkerboard_sweeps(x, thr, st0, st1, nb, order, 1)  # compile / load from cache
    return lambda: K.checkerboard_sweeps(x, thr, st0, st1, nb, order, n_sweeps)


def main() -> None:
    load0 = os.getloadavg()
    N = L * L
    rows = []
    old_torch, old_numba = torch.get_num_threads(), numba.get_num_threads()
    system = IsingSystem(L)
    mcmc.run_metropolis(
        system, T, H, n_chains=8, n_samples=1, seed=0, burn_in_sweeps=1, thin_sweeps=1
    )  # warm-up
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            gen = torch.Generator().manual_seed(0)
            n_torch = 20
            dt = best_of(lambda: torch_checkerboard(n_torch, gen), REPEATS)  # noqa: B023
            rows.append(
                {
                    "impl": "torch checkerboard (naive)",
                    "threads": threads,
                    "block_W": "-",
                    "sweeps": n_torch,
                    "seconds": dt,
                    "flips_per_s": CHAINS * N * n_torch / dt,
                }
            )
            for W in (64, 128, 256):
                n_nb = 300
                fn = numba_kernel(n_nb, W)
                dt = best_of(fn, REPEATS)
                rows.append(
                    {
                        "impl": "numba kernel",
                        "threads": threads,
                        "block_W": W,
                        "sweeps": n_nb,
                        "seconds": dt,
                        "flips_per_s": CHAINS * N * n_nb / dt,
                    }
                )
            dt = best_of(
                lambda: mcmc.run_metropolis(
                    system,
                    T,
                    H,
                    n_chains=CHAINS,
                    n_samples=E2E_SAMPLES,
                    seed=1,
                    burn_in_sweeps=0,
                    thin_sweeps=THIN,
                    keep_states=True,
                ),
                REPEATS,
            )
            rows.append(
                {
                    "impl": "run_metropolis (thin 250, states kept)",
                    "threads": threads,
                    "block_W": mcmc._chain_blocks(CHAINS)[1],
                    "sweeps": E2E_SAMPLES * THIN,
                    "seconds": dt,
                    "flips_per_s": CHAINS * N * E2E_SAMPLES * THIN / dt,
                }
            )
    finally:
        torch.set_num_threads(old_torch)
        numba.set_num_threads(old_numba)
    base = {r["threads"]: r["flips_per_s"] for r in rows if r["impl"].startswith("torch")}
    for r in rows:
        r["speedup_vs_torch"] = r["flips_per_s"] / base[r["threads"]]
    print_table(rows)
    load1 = os.getloadavg()
    notes = (
        f"10x10 Ising, {CHAINS} chains, T={T}, h={H}; attempts/s = chains*N*sweeps/seconds, "
        f"best of {REPEATS}. Shared 2-core machine: load average (1, 5, 15 min) "
        f"{tuple(round(v, 2) for v in load0)} at start, {tuple(round(v, 2) for v in load1)} at "
        "end; other engineers' jobs may depress the numbers, "
        "especially with 2 threads."
    )
    record("mcmc", rows, notes=notes)


# ----------------------------------------------------------------------------- --check
CONFIGS = {"laptop": "config/config.yaml", "paper": "config/paper.yaml"}


def ising_magnetisation_distribution(L: int, T: float, J: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(M, P(M))`` of the ``L x L`` Ising torus at field 0, ``M = −N … N`` in steps of 2.

    Row transfer matrix ``A = exp(K G)`` (``G``: half the in-row bonds of both rows plus the bonds
    between them) and a discrete Fourier transform in ``M``: with ``E_θ = diag(exp(iθ M_row))``,
    ``Tr (A E_θ)^L = Σ_n Z_n exp(iθ (2n − N))``; ``2θ_j = 2π j / (N + 1)`` gives every ``Z_n``.
    Exact up to rounding (``1e-16`` of the total), checked against enumeration (4x4) and the
    transfer matrix's ``m`` at nonzero fields (reweighting ``P`` by ``exp(β h M)``).
    """
    N = L * L
    s = np.arange(1 << L)
    spins = 2 * ((s[:, None] >> np.arange(L)) & 1) - 1
    intra = (spins * np.roll(spins, -1, axis=1)).sum(axis=1)
    G = 0.5 * (intra[:, None] + intra[None, :]) + spins @ spins.T
    A = np.exp(J / T * (G - G.max()))
    M_row = spins.sum(axis=1)
    F = np.empty(N + 1, dtype=complex)
    for j in range(N // 2 + 1):
        th = np.pi * j / (N + 1)
        F[j] = np.trace(np.linalg.matrix_power(A * np.exp(1j * th * M_row)[None, :], L)) * np.exp(1j * th * N)
        if j:
            F[N + 1 - j] = np.conj(F[j])
    Z = np.clip(np.fft.fft(F).real / (N + 1), 0.0, None)
    return 2 * np.arange(N + 1) - N, Z / Z.sum()


def _exact(system_name: str, size: str, T: np.ndarray, field: np.ndarray) -> dict[str, np.ndarray]:
    if system_name == "cuau":
        from lattherm.reference.cuau_exact import cuau_exact_table

        ex = cuau_exact_table(size, T, field)
        return {k: ex[k].to_numpy() for k in ("u", "c", "m")}
    from lattherm.reference.exact import ising_transfer_matrix

    L = int(size.split("x")[0])
    ex = dict(ising_transfer_matrix(L, T, field))
    dist = {t: ising_magnetisation_distribution(L, t) for t in np.unique(T)}
    abs_m, m_check = [], []
    for t, h in zip(T, field, strict=True):
        M, P = dist[t]
        w = P * np.exp(h * M / t - np.max(h * M / t))
        w /= w.sum()
        abs_m.append((w * np.abs(M)).sum() / L**2)
        m_check.append((w * M).sum() / L**2)
    dev = float(np.max(np.abs(np.array(m_check) - ex["m"])))
    if dev > 1e-8:
        raise RuntimeError(f"P(M) reweighted to the fields misses the transfer matrix's m by {dev:.2g}")
    return {"u": ex["u"], "c": ex["c"], "m": ex["m"], "abs_m": np.array(abs_m)}


def _json_z(v: float) -> float | str | None:
    """A z-score for JSON: rounded, ``"inf"`` for a zero error, None for NaN (no claim)."""
    return None if np.isnan(v) else ("inf" if np.isinf(v) else round(float(v), 2))


def _nan_stat(fn, a) -> float | None:
    """``fn`` over the finite values of ``a``, None if there are none."""
    a = np.asarray(a, dtype=np.float64)
    return float(fn(a)) if np.isfinite(a).any() else None


def _check_one(system_name: str, size: str, settings: dict, grid, exact, seed: int, variant: str) -> dict:
    from dataclasses import replace

    from lattherm.reference.mcmc import mcmc_table, run_metropolis
    from lattherm.schema import node
    from lattherm.systems import make_system

    system = make_system(system_name, size)
    kw = {k: settings[k] for k in ("n_chains", "n_samples", "burn_in_sweeps", "thin_sweeps")}
    if variant == "after":
        defaults = node("mcmc")["properties"]  # the workflow's: the config schema's defaults
        kw.update({k: defaults[k]["default"] for k in ("start", "replica_exchange", "exchange_sweeps")})
    else:
        kw.update(start="random", replica_exchange=False)
    t0 = time.perf_counter()
    res = run_metropolis(system, grid[:, 0], grid[:, 1], seed=seed, keep_states=False, **kw)
    t1 = time.perf_counter()
    if variant == "after":
        tab = mcmc_table(res, system)
    else:  # the first version: estimates and errors from the samples, every error kept
        tab = mcmc_table(replace(res, averages=None, energy_shift=None), system, unconverged_errors="keep")
    t2 = time.perf_counter()
    qs = [q for q in ("u", "c", "m", "abs_m") if q in exact]
    errs = {q: tab[f"{q}_err"].to_numpy() for q in qs}
    with np.errstate(divide="ignore", invalid="ignore"):
        z = {q: (tab[q].to_numpy() - exact[q]) / errs[q] for q in qs}
    claimed = {q: ~np.isnan(errs[q]) for q in qs}  # zero errors are claimed too (infinite z)
    over = [
        {"T": float(tab["T"][i]), "field": float(tab["field"][i]),
         **{f"z_{q}": _json_z(z[q][i]) for q in qs}}
        for i in range(len(tab))
        if any(abs(z[q][i]) > 4 for q in qs)
    ]  # fmt: skip
    flagged = tab[~tab["converged"].astype(bool)]
    return {
        "system": system_name,
        "size": size,
        "variant": variant,
        "settings": {**kw, "seed": seed},
        "rows": len(tab),
        "max_abs_z_claimed": {q: _nan_stat(np.max, np.abs(z[q][claimed[q] & np.isfinite(z[q])])) for q in qs},
        "infinite_z_claimed": {q: int((claimed[q] & np.isinf(z[q])).sum()) for q in qs},
        "claimed_errors": {q: int(claimed[q].sum()) for q in qs},
        "zero_errors": {q: int((errs[q] == 0).sum()) for q in qs},
        "nan_errors": {q: int(np.isnan(errs[q]).sum()) for q in qs},
        "rows_abs_z_over_4": over,
        "flagged": len(flagged) if variant == "after" else None,
        "flagged_rows": (
            [{"T": float(r.T), "field": float(r.field), "diagnosis": r.diagnosis} for r in flagged.itertuples()]
            if variant == "after"
            else None
        ),
        "estimator_ladder_rows": int((tab["estimator"] == "ladder").sum()) if variant == "after" else None,
        "max_rhat": _nan_stat(np.nanmax, tab["rhat"]),
        "max_tau_E_samples": _nan_stat(np.nanmax, tab["tau_E"]),
        "max_tau_M_samples": _nan_stat(np.nanmax, tab["tau_M"]),
        "nan_tau": int(np.isnan(tab["tau_E"]).sum() + np.isnan(tab["tau_M"]).sum()),
        "exchange_acceptance_min": _nan_stat(np.nanmin, tab["exchange_acc"]),
        "wall_s_run": t1 - t0,
        "wall_s_table": t2 - t1,
    }


def reference_check(which: list[str], variants: list[str], more_seeds: int = 0) -> None:
    import yaml

    from lattherm.conditions import condition_grid, grid_values

    root = Path(__file__).resolve().parents[1]
    laptop = yaml.safe_load((root / CONFIGS["laptop"]).read_text())
    seed = int(laptop["seed"])
    cases = [("cuau", "2x2x4"), ("ising", "8x8")]
    grids = {
        name: condition_grid(grid_values(laptop["systems"][name]["T"]), grid_values(laptop["systems"][name]["field"]))
        for name, _ in cases
    }
    t0 = time.perf_counter()
    exact = {name: _exact(name, size, grids[name][:, 0], grids[name][:, 1]) for name, size in cases}
    print(f"exact references: {time.perf_counter() - t0:.1f} s")
    load0 = os.getloadavg()
    rows = []
    for cfg in which:
        settings = yaml.safe_load((root / CONFIGS[cfg]).read_text())["reference"]["mcmc"]
        for name, size in cases:
            for variant in variants:
                r = _check_one(name, size, settings[name], grids[name], exact[name], seed, variant)
                r["config"] = CONFIGS[cfg]
                rows.append(r)
                print(
                    f"{cfg:6s} {name:5s} {size:5s} {variant:6s} rows {r['rows']} flagged {r['flagged']} "
                    f"max|z| {r['max_abs_z_claimed']} inf {r['infinite_z_claimed']} "
                    f"|z|>4: {len(r['rows_abs_z_over_4'])} run {r['wall_s_run']:.1f} s table {r['wall_s_table']:.1f} s"
                )
    for k in range(1, more_seeds + 1):  # the same check at other seeds: laptop settings, after
        settings = yaml.safe_load((root / CONFIGS["laptop"]).read_text())["reference"]["mcmc"]
        for name, size in cases:
            r = _check_one(name, size, settings[name], grids[name], exact[name], seed + k, "after")
            r["config"] = CONFIGS["laptop"]
            rows.append(r)
            print(
                f"seed {seed + k} {name:5s} flagged {r['flagged']} max|z| {r['max_abs_z_claimed']} "
                f"|z|>4: {len(r['rows_abs_z_over_4'])} run {r['wall_s_run']:.1f} s"
            )
    load1 = os.getloadavg()
    notes = (
        "Full-grid check of the MCMC references against exact values (see the module docstring). "
        "Grids of config/config.yaml (CuAu 2x2x4: T 200..1200 K step 100, mu -0.12..0.12 eV step 0.03; "
        "Ising 8x8: T 1.5..3.5 step 0.1, h -1..1 step 0.5); settings of the named config; seed of "
        "config/config.yaml (and, 'after' at laptop settings only, the next --more-seeds seeds). "
        "'before': independent chains, random starts, estimates and errors from the "
        "samples, every error kept (a zero error gives an infinite z: counted apart). 'after': replica "
        "exchange along T per field every sweep, mixed starts, sweep averages and the MBAR ladder "
        "estimate, converged column; max |z| over claimed (finite) errors only. Wall times: "
        "run_metropolis and mcmc_table, numba "
        f"threads {numba.get_num_threads()}, shared 2-core machine: load average "
        f"{tuple(round(v, 2) for v in load0)} at start, {tuple(round(v, 2) for v in load1)} at end."
    )
    record("mcmc_reference_check", rows, notes=notes)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="the full-grid check against exact values")
    ap.add_argument("--configs", nargs="+", default=["laptop", "paper"], choices=sorted(CONFIGS))
    ap.add_argument("--variants", nargs="+", default=["before", "after"], choices=["before", "after"])
    ap.add_argument("--more-seeds", type=int, default=0, help="'after' at laptop settings at more seeds")
    args = ap.parse_args()
    if args.check:
        reference_check(args.configs, args.variants, args.more_seeds)
    else:
        main()
