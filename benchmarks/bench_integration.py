"""Free energies past enumeration, measured: field integration (MBAR over a field ladder from
Kaufman's f(T, 0)) and thermodynamic integration over β, against exact values where they exist.

Ising 8x8: every row against the transfer matrix. 16x16 (and 32x32 with ``--sizes 8 16 32``): at
h = 0 the β integration against Kaufman; at h != 0 nothing is exact, so the field integration's two
seeds are compared with each other and with the β integration (an independent method). Per run:
max |Δf/f| and max |z| against the exact values, the largest claimed error ``f_err/|f|``, wall time and
attempted spin flips; a scan of run lengths at 16x16 says what reaches 2e-4 relative; and the error of
integrating the *exact* m(h) by the trapezoid rule on uniform grids, which shows what the small-h
region (the two sectors' ln 2 / N) does to plain quadrature.

Recorded in ``benchmarks/results/integration.json``: parameters (sizes, grids, seeds, every
setting, numba threads), per-run summaries and every row.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from _harness import print_table, record_run  # noqa: E402

from lattherm.reference.exact import ising_kaufman, ising_transfer_matrix  # noqa: E402
from lattherm.reference.integration import (  # noqa: E402
    exchange_temperatures,
    field_ladder,
    ising_beta_integration,
    ising_field_integration,
)

T_GRID = [1.5, 2.0, 2.269, 2.5, 3.0, 3.5]
H_GRID = [0.05, 0.25, 0.5, 1.0]
#: the library's defaults, written out so that the record holds them
FIELD = {"n_chains": 64, "n_samples": 2000, "burn_in_sweeps": 1000, "thin_sweeps": 1, "exchange_sweeps": 1,
         "h_min": None, "h_ratio": 1.4, "exchange_spacing": 1.2, "exchange_T_max": None,
         "min_overlap": 0.03}  # fmt: skip
BETA = {"n_chains": 64, "n_samples": 100, "burn_in_sweeps": 500, "thin_sweeps": 10, "exchange_sweeps": 1,
        "d_beta": 0.015}  # fmt: skip
#: run lengths scanned at 16x16 (besides the default)
SCAN_FIELD = [250, 1000]
SCAN_BETA = [25, 400]


def _exact(L: int, T, h) -> dict | None:
    """(T, field) -> exact f: transfer matrix for L <= 14, else Kaufman at h = 0 only."""
    TT, HH = np.meshgrid(np.asarray(T, float), np.asarray(h, float), indexing="ij")
    if L <= 14:
        f = ising_transfer_matrix(L, TT.ravel(), HH.ravel())["f"]
        return {(t, x): v for t, x, v in zip(TT.ravel(), HH.ravel(), f, strict=True)}
    f0 = ising_kaufman(L, np.asarray(T, float))["f"]
    return {(t, 0.0): v for t, v in zip(T, f0, strict=True)}


def _rows(tab, L: int, seed: int, label: str, exact: dict) -> list[dict]:
    out = []
    for r in tab.itertuples():
        fx = exact.get((r.T, r.field))
        out.append({
            "size": f"{L}x{L}", "seed": seed, "run": label, "method": r.method, "T": r.T, "field": r.field,
            "f": r.f, "f_err": r.f_err, "f_exact": fx,
            "rel_err": None if fx is None else (r.f - fx) / abs(fx),
            "z": None if (fx is None or not r.f_err > 0) else (r.f - fx) / r.f_err,
            "m": getattr(r, "m", None), "m_err": getattr(r, "m_err", None), "converged": bool(r.converged),
        })  # fmt: skip
    return out


def _summary(rows: list[dict], tab, L: int, seed: int, label: str, wall: float, flips: float) -> dict:
    nz = [r for r in rows if r["field"] != 0 or r["method"] == "beta_integration"]
    rel = [abs(r["rel_err"]) for r in nz if r["rel_err"] is not None]
    z = [abs(r["z"]) for r in nz if r["z"] is not None]
    claimed = [r["f_err"] / abs(r["f"]) for r in nz if np.isfinite(r["f_err"])]
    return {
        "size": f"{L}x{L}", "seed": seed, "run": label, "method": tab["method"].iloc[0],
        "rows": len(nz), "converged": int(sum(r["converged"] for r in nz)),
        "rows_vs_exact": len(rel), "max_rel_err": max(rel) if rel else None, "max_abs_z": max(z) if z else None,
        "max_claimed_rel_err": max(claimed) if claimed else None,
        "wall_s": wall, "spin_flips": float(flips), "flips_per_s": float(flips) / wall,
    }  # fmt: skip


def _field_run(L, seed, settings, label, fields, exact, summaries, rows):
    t0 = time.perf_counter()
    tab = ising_field_integration(L, T_GRID, [0.0] + fields, seed=seed, **settings)
    wall = time.perf_counter() - t0
    rr = _rows(tab, L, seed, label, exact)
    s = _summary(rr, tab, L, seed, label, wall, tab["spin_flips"].iloc[0])
    s["n_temperatures"] = int(tab["n_temperatures"].iloc[0])
    s["n_fields"] = int(len(field_ladder(fields, L, h_min=settings["h_min"], ratio=settings["h_ratio"])))
    s["min_overlap"] = float(tab.loc[tab["field"] != 0, "overlap"].min())
    summaries.append(s)
    rows.extend(rr)
    return tab


def _beta_run(L, seed, settings, label, fields, exact, summaries, rows):
    t0 = time.perf_counter()
    tab = ising_beta_integration(L, T_GRID, fields, seed=seed, **settings)
    wall = time.perf_counter() - t0
    rr = _rows(tab, L, seed, label, exact)
    s = _summary(rr, tab, L, seed, label, wall, tab.groupby("field")["spin_flips"].first().sum())
    s["n_nodes"] = int(tab["n_nodes"].max())
    s["fields"] = sorted({float(abs(h)) for h in fields})
    summaries.append(s)
    rows.extend(rr)
    return tab


def _compare(a, b, what: str, L: int) -> dict:
    """z of the difference of two tables' f at their common h != 0 rows (independent runs)."""
    m = a.merge(b, on=["T", "field"], suffixes=("_a", "_b"))
    m = m[m["field"] != 0]
    z = (m["f_a"] - m["f_b"]) / np.hypot(m["f_err_a"], m["f_err_b"])
    rel = (m["f_a"] - m["f_b"]).abs() / m["f_b"].abs()
    return {"size": f"{L}x{L}", "comparison": what, "rows": int(len(m)), "max_abs_z": float(z.abs().max()),
            "max_rel_diff": float(rel.max()),
            "both_converged": int((m["converged_a"] & m["converged_b"]).sum())}  # fmt: skip


def naive_quadrature(sizes=(8, 10), T=(1.5, 2.0), h: float = 0.05, steps=(0.05, 0.01, 0.002)) -> list[dict]:
    """f(T, h) = f(T, 0) − ∫_0^h m by the trapezoid rule on uniform grids, with the *exact* m
    (transfer matrix): the error is the quadrature's alone."""
    out = []
    for L, t in ((L, t) for L in sizes for t in T):
        f_ex = float(ising_transfer_matrix(L, t, h)["f"])
        f0 = float(ising_kaufman(L, [t])["f"][0])
        for dh in steps:
            x = np.linspace(0.0, h, int(round(h / dh)) + 1)
            m = ising_transfer_matrix(L, np.full_like(x, t), x)["m"]
            f = f0 - float(np.sum(0.5 * (m[1:] + m[:-1]) * np.diff(x)))
            out.append({"size": f"{L}x{L}", "T": t, "field": h, "grid_step": dh, "nodes": int(x.size),
                        "rel_err": (f - f_ex) / abs(f_ex),
                        "T_ln2_over_N_rel": t * np.log(2) / (L * L) / abs(f_ex)})  # fmt: skip
    return out


def h0_baseline(sizes, seed: int, n_samples) -> None:
    """β integration at h = 0 on large tori, with and without cluster moves, against Kaufman: the
    error and wall time a physicist's Monte Carlo reaches (what a neural estimate past enumeration
    has to beat at equal wall time)."""
    import numba

    load0 = os.getloadavg()
    summaries, rows = [], []
    for L in sizes:
        exact = _exact(L, T_GRID, [0.0])
        for n in n_samples:
            for k in (0, 1):
                label = f"n_samples {n}, cluster_updates {k}"
                print(f"--- {L}x{L}: {label}", flush=True)
                _beta_run(L, 100 + seed, {**BETA, "n_samples": n, "cluster_updates": k}, label, [0.0], exact,
                          summaries, rows)  # fmt: skip
                print(summaries[-1], flush=True)
    print_table(summaries)
    params = {"sizes": sizes, "seed": 100 + seed, "T": T_GRID, "fields": [0.0], "beta_integration": BETA,
              "n_samples": n_samples, "cluster_updates": [0, 1], "numba_threads": numba.get_num_threads(),
              "J": 1.0}  # fmt: skip
    notes = ("h0_baseline: β integration at h = 0 against Kaufman, local Metropolis alone and with one Wolff move "
             "per chain after every sweep; wall_s per run (every T of the grid), spin_flips the local attempts. "
             f"load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end (2 shared cores).")  # fmt: skip
    record_run("integration", params, {"summaries": summaries, "rows": rows}, notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-scan", action="store_true", help="skip the run-length scan at 16x16")
    ap.add_argument("--h0-baseline", action="store_true",
                    help="only β integration at h = 0 on --sizes against Kaufman, local moves alone and with one Wolff "
                         "move per sweep, side by side (the baseline's cost past enumeration)")  # fmt: skip
    ap.add_argument("--n-samples", type=int, nargs="+", default=[BETA["n_samples"]],
                    help="--h0-baseline: run lengths (kept samples per chain and node)")
    args = ap.parse_args()
    if args.h0_baseline:
        return h0_baseline(args.sizes, args.seeds[0], args.n_samples)
    import numba

    load0 = os.getloadavg()
    summaries, rows, comparisons = [], [], []
    for L in args.sizes:
        exact = _exact(L, T_GRID, [0.0] + H_GRID + [-h for h in H_GRID])
        fi, ti = {}, {}
        for seed in args.seeds:
            print(f"--- {L}x{L} seed {seed}: exchange ladder {len(exchange_temperatures(L, T_GRID))} temperatures")
            fi[seed] = _field_run(L, seed, FIELD, "default", H_GRID, exact, summaries, rows)
            ti[seed] = _beta_run(L, 100 + seed, BETA, "default", [0.0] + H_GRID, exact, summaries, rows)
        s0, s1 = args.seeds[0], args.seeds[-1]
        if len(args.seeds) > 1:
            comparisons.append(_compare(fi[s0], fi[s1], f"field_integration seed {s0} vs {s1}", L))
        for seed in args.seeds:
            comparisons.append(_compare(fi[seed], ti[seed], f"field_integration vs beta_integration (seed {seed})", L))
        if L == 16 and not args.no_scan:
            for n in SCAN_FIELD:
                _field_run(L, s0, {**FIELD, "n_samples": n}, f"n_samples {n}", H_GRID, exact, summaries, rows)
            for n in SCAN_BETA:
                _beta_run(L, 100 + s0, {**BETA, "n_samples": n}, f"n_samples {n}", [0.0], exact, summaries, rows)
    quad = naive_quadrature()
    print_table(summaries)
    print_table(comparisons)
    print_table(quad)
    params = {
        "sizes": args.sizes, "seeds": args.seeds, "T": T_GRID, "fields": H_GRID, "field_integration": FIELD,
        "beta_integration": BETA, "beta_integration_seeds": [100 + s for s in args.seeds],
        "scan_16x16": None if args.no_scan else {"field_n_samples": SCAN_FIELD, "beta_n_samples": SCAN_BETA},
        "numba_threads": numba.get_num_threads(), "J": 1.0,
    }  # fmt: skip
    notes = (
        "f_err/|f| and |Δf/f| over h != 0 rows for field_integration (h = 0 rows are Kaufman's), over "
        "all rows for beta_integration; exact: transfer matrix (L <= 14), Kaufman at h = 0 (L > 14). "
        "comparisons: z of f differences between independent runs. naive_quadrature: trapezoid over "
        f"the exact m(h) on uniform grids. load average {load0[0]:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end (2 shared cores)."
    )
    record_run("integration", params, {"summaries": summaries, "comparisons": comparisons,
                                       "naive_quadrature": quad, "rows": rows}, notes)  # fmt: skip


if __name__ == "__main__":
    main()
