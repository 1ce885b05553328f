"""CuAu metadynamics: wall time and accuracy against exact 2x2x4 f_x; optional 4x4x4 phase diagram.

    python benchmarks/bench_metadynamics.py                  # 2x2x4, T = 200..1200 K (config grid)
    python benchmarks/bench_metadynamics.py --phase-diagram  # + 4x4x4 scan 300..1000 K (~2-5 min)

Records ``benchmarks/results/metadynamics.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _harness import print_table, record

from lattherm.reference.cuau_exact import cuau_exact_composition_table
from lattherm.reference.metadynamics import metadynamics_table, run_metadynamics
from lattherm.reference.phase_diagram import order_disorder_temperature, two_phase_regions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase-diagram", action="store_true", help="also run the 4x4x4 T scan")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--pd-production-sweeps", type=int, default=50_000)
    args = ap.parse_args()
    rows = []
    t_all = time.perf_counter()
    for T in np.arange(200.0, 1201.0, 100.0):
        r = run_metadynamics("2x2x4", T, seed=args.seed)
        ex = cuau_exact_composition_table("2x2x4", T)["f_x"].to_numpy()
        rows.append(
            dict(
                size="2x2x4",
                backend="numba",
                T=T,
                wall_s=r.wall_s,
                moves=r.n_moves,
                us_per_move=1e6 * r.wall_s / r.n_moves,
                max_abs_df_meV=1e3 * np.abs(r.f_x - ex).max(),
                max_f_err_meV=1e3 * np.nanmax(r.f_x_err),
            )
        )
    total_2x2x4 = time.perf_counter() - t_all
    T = 400.0
    r = run_metadynamics("2x2x4", T, seed=args.seed, backend="clease", mod_factor_final=1e-3, production_sweeps=20_000)
    ex = cuau_exact_composition_table("2x2x4", T)["f_x"].to_numpy()
    rows.append(
        dict(
            size="2x2x4",
            backend="clease",
            T=T,
            wall_s=r.wall_s,
            moves=r.n_moves,
            us_per_move=1e6 * r.wall_s / r.n_moves,
            max_abs_df_meV=1e3 * np.abs(r.f_x - ex).max(),
            max_f_err_meV=1e3 * np.nanmax(r.f_x_err),
        )
    )
    print_table(rows)
    print(f"2x2x4 numba, 11 temperatures: {total_2x2x4:.1f} s")
    out = dict(runs=rows, total_2x2x4_s=total_2x2x4)
    if args.phase_diagram:
        t0 = time.perf_counter()
        res = [
            run_metadynamics("4x4x4", T, seed=args.seed, production_sweeps=args.pd_production_sweeps)
            for T in np.arange(300.0, 1001.0, 50.0)
        ]
        tab = metadynamics_table(res)
        reg = two_phase_regions(tab, tol=2e-5)
        tc_c = order_disorder_temperature(tab, 0.5)
        tc_h = order_disorder_temperature(tab, 0.5, method="hull", tol=2e-5)
        print(reg.to_string())
        print(f"4x4x4 x=0.5 order-disorder: c_x peak {tc_c:.0f} K, hull {tc_h:.0f} K")
        phases = sorted(set(reg["phase_lo"]) | set(reg["phase_hi"]))
        out["phase_diagram_4x4x4"] = dict(
            wall_s=time.perf_counter() - t0,
            tc_heat_capacity=tc_c,
            tc_hull=tc_h,
            phases=phases,
            production_sweeps=args.pd_production_sweeps,
            tol=2e-5,
            regions=reg.to_dict(orient="records"),
        )
    record("metadynamics", out, notes="shared 2-core machine; numba backend unless stated")


if __name__ == "__main__":
    main()
