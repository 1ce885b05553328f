"""CuAu metadynamics: wall time and accuracy against exact 2x2x4 f_x; optional 4x4x4 phase diagram.

    python benchmarks/bench_metadynamics.py                  # 2x2x4, T = 200..1200 K (config grid)
    python benchmarks/bench_metadynamics.py --phase-diagram  # + 4x4x4 scan 300..1000 K (~2-5 min)
    python benchmarks/bench_metadynamics.py --error-check [--seeds K]   # are the error bars honest?

Records a run of ``benchmarks/results/metadynamics.json`` (parameters: seed, phase diagram and its
production sweeps); ``--error-check`` records a run of ``benchmarks/results/metadynamics_error_check.json``
instead (parameters: the settings, temperatures and seeds below): the laptop job's settings
(``reference.metadynamics`` of config/config.yaml) on 2x2x4 at every configured temperature,
``z = (f_x − exact)/f_x_err`` at every (T, x) against exact enumeration: points, fraction beyond
3σ, max |z| among converged rows, flagged (not converged) rows, wall time. The first seed is the
one the workflow's job uses; ``--seeds K`` adds K − 1 more. The same runs are also scored with the
former error estimate (8 consecutive blocks, standard error of the 8 block estimates) for a
before/after comparison on identical trajectories.
"""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

import numpy as np
from _harness import print_table, record_run

from lattherm.reference.cuau_exact import cuau_exact_composition_table
from lattherm.reference.metadynamics import free_energy_from_bias, metadynamics_table, run_metadynamics
from lattherm.reference.phase_diagram import order_disorder_temperature, two_phase_regions
from lattherm.systems.cuau import CuAuSystem

ROOT = Path(__file__).resolve().parents[1]


def _laptop_settings(config_path: Path) -> tuple[dict, np.ndarray, int]:
    """``run_metadynamics`` keywords, temperatures and the 2x2x4 job seed of a workflow config."""
    import yaml

    from lattherm.conditions import grid_values
    from lattherm.config import job_seed

    config = yaml.safe_load(config_path.read_text())
    meta = dict(config["reference"]["metadynamics"])
    temperatures = grid_values(meta.pop("T"))
    meta.pop("sizes")
    return meta, temperatures, job_seed(config["seed"], "metadynamics", "cuau", "2x2x4")


def _old_block_error(r, blocks: int = 8) -> np.ndarray:
    """The former ``f_x_err``: standard error of the ``blocks`` per-block estimates (consecutive
    production batches merged into ``blocks`` blocks; NaN where a block missed a bin)."""
    H = r.batch_visits.reshape(blocks, -1, r.n_sites + 1).sum(1)
    if np.any(H <= 0):
        return np.full(r.n_sites + 1, np.nan)
    e_cu = CuAuSystem(r.size).pure_energies().cu * r.n_sites
    kw = dict(T=r.T, mu=r.mu, e_all_cu=e_cu, n_sites=r.n_sites)
    fb = np.stack([free_energy_from_bias(r.bias, visits=h, **kw) for h in H])
    return fb.std(0, ddof=1) / np.sqrt(blocks)


def _z_summary(z: np.ndarray, conv: np.ndarray) -> dict:
    zc = np.abs(z[conv & np.isfinite(z)])
    return dict(
        points=int(z.size),
        converged=int(conv.sum()),
        flagged=int((~conv).sum()),
        frac_beyond_3sigma=float(np.mean(zc > 3)) if zc.size else None,
        n_beyond_3sigma=int(np.sum(zc > 3)),
        n_beyond_4sigma=int(np.sum(zc > 4)),
        max_abs_z=float(zc.max()) if zc.size else None,
        rms_z=float(np.sqrt(np.mean(zc**2))) if zc.size else None,
    )


def error_check(args) -> None:
    settings, temperatures, job_seed = _laptop_settings(Path(args.config))
    size = "2x2x4"
    seeds = [job_seed + 1000 * k for k in range(args.seeds)]
    runs, per_seed = [], []
    z_all, c_all, z_old_all = [], [], []
    t_all = time.perf_counter()
    for base in seeds:
        t0 = time.perf_counter()
        zs, cs, zo = [], [], []
        for i, T in enumerate(temperatures):
            r = run_metadynamics(size, float(T), seed=base + i, **settings)  # the seeds of metadynamics_scan
            exact = cuau_exact_composition_table(size, float(T))["f_x"].to_numpy()
            z = (r.f_x - exact)[1:] / r.f_x_err[1:]  # n = 0 (pure Cu) is exact: f_x_err = 0
            z_old = (r.f_x - exact)[1:] / _old_block_error(r)[1:]
            conv = r.row_converged[1:]
            zs.append(z)
            cs.append(conv)
            zo.append(z_old)
            runs.append(
                dict(
                    seed=base + i,
                    T=float(T),
                    wall_s=r.wall_s,
                    moves=r.n_moves,
                    us_per_move=1e6 * r.wall_s / r.n_moves,
                    stages_flat=r.converged,
                    flagged=int((~r.row_converged).sum()),
                    traversals_per_batch=float(r.batch_tours[:, -1].mean()),
                    max_tau_sweeps=float(np.nanmax(r.tau_sweeps)),
                    max_abs_z=float(np.nanmax(np.abs(z[conv]))) if conv.any() else None,
                    max_abs_z_old8=float(np.nanmax(np.abs(z_old))),
                    max_abs_df_meV=1e3 * float(np.abs(r.f_x - exact).max()),
                    max_f_err_meV=1e3 * float(np.nanmax(r.f_x_err)),
                )
            )
        z, c, zo = np.concatenate(zs), np.concatenate(cs), np.concatenate(zo)
        runs_wall = sum(r["wall_s"] for r in runs[-len(temperatures) :])
        per_seed.append(
            dict(
                seed=base,
                wall_s=time.perf_counter() - t0,  # with the exact tables and the first numba load
                wall_s_metadynamics=runs_wall,  # run_metadynamics alone: what the workflow job costs
                **_z_summary(z, c),
                old8=_z_summary(zo, np.ones_like(c)),
            )
        )
        z_all.append(z)
        c_all.append(c)
        z_old_all.append(zo)
        print(f"seed {base}: {per_seed[-1]}")
    z, c, zo = np.concatenate(z_all), np.concatenate(c_all), np.concatenate(z_old_all)
    print_table([{k: v for k, v in r.items() if k != "seed"} for r in runs[: len(temperatures)]])
    parameters = dict(
        size=size,
        temperatures=temperatures.tolist(),
        settings=settings,
        library_defaults={
            k: p.default
            for k, p in inspect.signature(run_metadynamics).parameters.items()
            if k not in settings and p.default is not inspect.Parameter.empty and k not in ("eci", "workdir")
        },
        config=str(Path(args.config).resolve().relative_to(ROOT)),
        seeds=seeds,
        seed_rule="temperature i of seed s runs with seed s + i (metadynamics_scan); the first s is the "
        "workflow job's seed job_seed(config seed, 'metadynamics', 'cuau', '2x2x4')",
        exact="lattherm.reference.cuau_exact.cuau_exact_composition_table (enumeration of all 2^16 states)",
        points="(T, n_au) with n_au = 1..16 (n_au = 0, pure Cu, is the exact gauge point, f_x_err = 0)",
        old8="former f_x_err: 8 consecutive blocks of the same runs, std of the 8 block estimates / sqrt(8)",
    )
    out = dict(
        job_seed=per_seed[0],
        pooled=dict(**_z_summary(z, c), old8=_z_summary(zo, np.ones_like(c))),
        wall_s=time.perf_counter() - t_all,
        wall_s_job_seed=per_seed[0]["wall_s_metadynamics"],
        per_seed=per_seed,
        runs=runs,
    )
    print(f"job seed: {per_seed[0]}")
    print(f"pooled over {len(seeds)} seeds: {out['pooled']}")
    record_run(
        "metadynamics_error_check",
        parameters,
        out,
        notes="shared 2-core machine; numba backend; laptop config settings",
    )


def _timed_2x2x4(T: float, **kw) -> dict:
    """One 2x2x4 ``run_metadynamics(T, **kw)``: its wall time and moves, |f_x − exact| and f_x_err."""
    r = run_metadynamics("2x2x4", T, **kw)
    ex = cuau_exact_composition_table("2x2x4", T)["f_x"].to_numpy()
    return dict(
        size="2x2x4",
        backend=r.backend,
        T=T,
        wall_s=r.wall_s,
        moves=r.n_moves,
        us_per_move=1e6 * r.wall_s / r.n_moves,
        max_abs_df_meV=1e3 * np.abs(r.f_x - ex).max(),
        max_f_err_meV=1e3 * np.nanmax(r.f_x_err),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase-diagram", action="store_true", help="also run the 4x4x4 T scan")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--pd-production-sweeps", type=int, default=50_000)
    ap.add_argument("--error-check", action="store_true", help="only the error-bar check (see the docstring)")
    ap.add_argument("--seeds", type=int, default=1, help="--error-check: seeds (the job's first)")
    ap.add_argument("--config", default=str(ROOT / "config" / "config.yaml"), help="--error-check: settings")
    args = ap.parse_args()
    if args.error_check:
        error_check(args)
        return
    rows = []
    t_all = time.perf_counter()
    for T in np.arange(200.0, 1201.0, 100.0):
        rows.append(_timed_2x2x4(T, seed=args.seed))
    total_2x2x4 = time.perf_counter() - t_all
    rows.append(_timed_2x2x4(400.0, seed=args.seed, backend="clease", mod_factor_final=1e-3, production_sweeps=20_000))
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
    params = {"seed": args.seed, "phase_diagram": args.phase_diagram}
    if args.phase_diagram:
        params["pd_production_sweeps"] = args.pd_production_sweeps
    record_run("metadynamics", params, out, notes="shared 2-core machine; numba backend unless stated")


if __name__ == "__main__":
    main()
