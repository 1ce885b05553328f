"""Ising at h = 0 past enumeration, side by side: a size-free checkpoint's weights on L x L (size
transfer: trained on 8x8, or 8x8 weights fine-tuned on 16x16), refined, against thermodynamic
integration over β from β = 0 (the Monte Carlo a physicist would run instead), both against
Kaufman's exact f.

Per size, the neural estimate is the workflow's: symmetrised samples of the transferred model at
every temperature (:func:`lattherm.evaluation.sample_model`), importance sampling
(:func:`~lattherm.evaluation.metrics_table`), Metropolis chains with Wolff moves started from the
samples with Bennett's estimate and the ladder (:func:`lattherm.refine.refine`), the best claimed
estimate at each temperature (:func:`~lattherm.evaluation.estimate_table`). Its wall time (sampling,
density evaluations, Monte Carlo) then sets the budget of the baseline:
:func:`lattherm.reference.integration.ising_beta_integration` with one Wolff move per chain after
every sweep, its kept samples per node chosen from a short calibration run so that its wall time
matches (both walls recorded). With ``--concurrent N`` the baseline instead runs with ``N`` kept samples
per node in a second process started with the neural estimate, one core each, so that both see the
same machine at the same time; its error bars are also given at the neural wall
(``ti_err_rel_equal_wall``: the statistical part scaled as 1/√time, the discretisation estimate
as it is). Per temperature: each method's relative error, z and claim; per size: max |Δf/f| over
the claimed rows, max |z|, rows claimed, wall times.

    python benchmarks/bench_scaling.py CHECKPOINT --sizes 32 64 --samples 500 --tag pcnn
    python benchmarks/bench_scaling.py CHECKPOINT --sizes 128 --samples 200 --concurrent 250 ...

Recorded in ``benchmarks/results/scaling.json`` (one run per size and parameter set: checkpoint,
model, temperatures, sample counts, refinement settings, seed, threads, machine, load average).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numba
import numpy as np
import pandas as pd
import torch
from _harness import portable_path, print_table, record_run

from lattherm.evaluation import direct_density, estimate_table, metrics_table, sample_model
from lattherm.models import transfer_model
from lattherm.reference.exact import ising_exact_table
from lattherm.reference.integration import ising_beta_integration
from lattherm.refine import refine
from lattherm.systems import IsingSystem, make_system
from lattherm.training import load_checkpoint, load_model

T_LAPTOP = [round(1.5 + 0.1 * k, 1) for k in range(21)]
#: the baseline's settings besides its run length (the library's defaults and one Wolff move)
BETA = {"n_chains": 64, "burn_in_sweeps": 500, "thin_sweeps": 10, "d_beta": 0.015, "cluster_updates": 1}
CALIBRATION_SAMPLES = 10


def neural(model, system, T, a, source: str) -> tuple[pd.DataFrame, dict]:
    """Every estimate of the transferred model at ``T`` (h = 0) and the walls of its stages."""
    ref = ising_exact_table(system.L, T, [0.0])
    t0 = time.perf_counter()
    df = sample_model(model, system, T, [0.0], a.samples, seed=a.seed, batch_size=a.batch_size, symmetrised=True)
    t1 = time.perf_counter()
    met = metrics_table(df, system, model.name, source, ref, "kaufman", n_boot=50, seed=0)
    chains, burn, keep, thin = a.refine
    rf = refine(system, df, model=model.name, source=source, n_chains=chains, burn_in_sweeps=burn, n_samples=keep,
                thin_sweeps=thin, seed=a.seed, reference_df=ref, density=direct_density(model, symmetrised=True),
                batch_size=a.batch_size, ladder_chains=a.ladder_chains, ladder_rungs=a.ladder_rungs,
                ladder_top_rungs=a.ladder_top_rungs, replica_exchange=a.replica_exchange,
                ladder_every_sweep=a.ladder_every_sweep, ladder_n_samples=a.ladder_samples)  # fmt: skip
    t2 = time.perf_counter()
    tables = [met, rf.table] + ([rf.ladder] if len(rf.ladder) else [])
    est = estimate_table(*tables)
    extra = rf.table.set_index("T")["converged"]
    est["chains_converged"] = est["T"].map(extra)
    return est, {"sample_s": t1 - t0, "refine_s": t2 - t1}


def baseline(L: int, T, budget_s: float, seed: int) -> tuple[pd.DataFrame, dict]:
    """β integration with the run length that makes its wall time about ``budget_s``."""
    t0 = time.perf_counter()
    ising_beta_integration(L, T, 0.0, seed=seed, n_samples=CALIBRATION_SAMPLES, **BETA)
    cal = time.perf_counter() - t0
    sweeps = BETA["burn_in_sweeps"] + CALIBRATION_SAMPLES * BETA["thin_sweeps"]
    target = sweeps * budget_s / cal
    n = max(2, int(round((target - BETA["burn_in_sweeps"]) / BETA["thin_sweeps"])))
    tab, bw = baseline_run(L, T, n, seed)
    return tab, {**bw, "calibration_s": cal}


def baseline_run(L: int, T, n_samples: int, seed: int, threads: int | None = None) -> tuple[pd.DataFrame, dict]:
    """β integration with ``n_samples`` kept samples per node (``threads``: numba's, in a process of its own)."""
    if threads is not None:
        numba.set_num_threads(threads)
    t0 = time.perf_counter()
    tab = ising_beta_integration(L, T, 0.0, seed=seed, n_samples=n_samples, **BETA)
    return tab, {"calibration_s": None, "n_samples": n_samples, "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="an Ising checkpoint of a size-free model (fo-pixelcnn, ao-transformer), "
                                       "e.g. 8x8, or 8x8 weights fine-tuned on 16x16")  # fmt: skip
    ap.add_argument("--sizes", nargs="+", type=int, default=[32, 64])
    ap.add_argument("--eval-T", nargs="+", type=float, default=T_LAPTOP)
    ap.add_argument("--samples", type=int, default=500, help="symmetrised samples per temperature")
    ap.add_argument("--refine", nargs=4, type=int, default=[64, 200, 16, 10],
                    metavar=("CHAINS", "BURN", "KEEP", "THIN"))  # fmt: skip
    ap.add_argument("--ladder-chains", type=int, default=512)
    ap.add_argument("--ladder-rungs", type=int, default=0, help="ladder temperatures between grid neighbours")
    ap.add_argument("--ladder-top-rungs", type=int, default=0, help="ladder temperatures from the highest to β = 0")
    ap.add_argument("--replica-exchange", action="store_true", help="exchanges along T between the chains")
    ap.add_argument("--ladder-every-sweep", action="store_true", help="the ladder's links read every sweep")
    ap.add_argument("--ladder-samples", type=int, default=None, help="samples kept per ladder chain (default: KEEP)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (numba uses its own)")
    ap.add_argument("--no-baseline", action="store_true", help="the neural estimate alone")
    ap.add_argument("--concurrent", type=int, default=None, metavar="TI_SAMPLES",
                    help="run β integration with this many kept samples per node in a second process at the same "
                         "time as the neural estimate, one core each (numba and torch threads 1; no calibration: "
                         "both walls recorded, and the baseline's error bars also scaled to the neural wall)")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--save", default="/tmp/bench_scaling", help="folder for each size's raw tables (parquet)")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    if max(a.refine[0], a.ladder_chains) > a.samples:
        ap.error(f"--refine CHAINS ({a.refine[0]}) and --ladder-chains ({a.ladder_chains}) start from the samples: "
                 f"at most --samples ({a.samples})")  # fmt: skip
    if a.concurrent is not None:
        if a.no_baseline or a.concurrent < 2:
            ap.error("--concurrent needs the baseline and at least 2 samples per node")
        a.threads = 1
        numba.set_num_threads(1)
    torch.set_num_threads(a.threads)
    state = load_checkpoint(a.checkpoint)
    trained = state["system"]  # the size it was trained (or fine-tuned) on
    init = state.get("init_from")
    init_from = None if init is None else {"size": init["system"]["size"], "step": init["step"],
                                           "digest": init["digest"], "path": portable_path(init["path"])}  # fmt: skip
    src = load_model(a.checkpoint, system=make_system("ising", trained["size"]))
    T = np.round(np.asarray(a.eval_T, dtype=float), 10)
    os.makedirs(a.save, exist_ok=True)
    for L in a.sizes:
        load0 = os.getloadavg()[0]
        system = IsingSystem(L=L)
        model = transfer_model(src, system)
        pool = job = None
        if a.concurrent is not None:  # started first: the neural side's sampling and the baseline's chains overlap
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            job = pool.submit(baseline_run, L, T, a.concurrent, a.seed + 100, 1)
        est, walls = neural(model, system, T, a, f"transfer-{trained['size']}")
        est["T"] = est["T"].round(6)
        walls["neural_s"] = walls["sample_s"] + walls["refine_s"]
        est.to_parquet(os.path.join(a.save, f"neural_{L}.parquet"))
        best = est[est["best"]].set_index("T")
        per = {round(float(t), 6): {"estimator": None} for t in T}
        for t, r in best.iterrows():
            per[float(t)] = {"estimator": r["estimator"], "rel": float(r["delta_f"] / abs(r["f_ref"])),
                             "z": float(r["z"]), "err_rel": float(r["f_est_err"] / abs(r["f_ref"]))}  # fmt: skip
        for t, g in est.groupby("T"):
            nis = g[g["estimator"] == "nis"]
            bar = g[g["estimator"] == "bar"]
            per[float(t)].update(ness=float(nis["ness"].iloc[0]) if len(nis) else None,
                                 bar_overlap=float(bar["bar_overlap"].iloc[0]) if len(bar) else None,
                                 chains_converged=bool(g["chains_converged"].iloc[0]))  # fmt: skip
        summary = {"L": L, "model": model.name, "claimed": int(len(best)), "of": int(len(T)),
                   "max_rel": float((best["delta_f"] / best["f_ref"]).abs().max()) if len(best) else None,
                   "max_abs_z": float(best["z"].abs().max()) if len(best) else None,
                   **{k: round(v, 1) for k, v in walls.items()}}  # fmt: skip
        if not a.no_baseline:
            if job is not None:
                tab, bw = job.result()
                pool.shutdown()
            else:
                tab, bw = baseline(L, T, walls["neural_s"], a.seed + 100)
            scale = np.sqrt(bw["wall_s"] / walls["neural_s"])  # its statistical error at the neural wall (1/√time)
            tab["T"] = tab["T"].round(6)
            tab.to_parquet(os.path.join(a.save, f"baseline_{L}.parquet"))
            exact = ising_exact_table(L, T, [0.0]).assign(T=lambda d: d["T"].round(6)).set_index("T")["f"]
            for r in tab.itertuples():
                fx = float(exact[r.T])
                per[float(r.T)].update(ti_rel=(r.f - fx) / abs(fx), ti_z=(r.f - fx) / r.f_err if r.f_err > 0 else None,
                                       ti_err_rel=r.f_err / abs(fx),
                                       ti_err_rel_equal_wall=np.hypot(r.f_err_stat * scale, r.f_err_quad) / abs(fx),
                                       ti_converged=bool(r.converged))  # fmt: skip
            ok = [p for p in per.values() if p.get("ti_converged")]
            summary.update(ti_claimed=len(ok), ti_max_rel=max(abs(p["ti_rel"]) for p in ok) if ok else None,
                           ti_max_abs_z=max(abs(p["ti_z"]) for p in ok if p["ti_z"] is not None) if ok else None,
                           ti_n_samples=bw["n_samples"], ti_wall_s=round(bw["wall_s"], 1),
                           ti_calibration_s=None if bw["calibration_s"] is None else round(bw["calibration_s"], 1),
                           concurrent=a.concurrent is not None)  # fmt: skip
        rows = [{"T": t, **p} for t, p in per.items()]
        print_table(rows)
        print(summary, flush=True)
        summary["loadavg_start"], summary["loadavg_end"] = round(load0, 2), round(os.getloadavg()[0], 2)
        record_run("scaling", {"checkpoint": portable_path(a.checkpoint), "trained_on": trained["size"],
                               "init_from": init_from, "model": model.name, "L": L,
                               "T": T.tolist(), "samples": a.samples, "refine": a.refine,
                               "ladder_chains": a.ladder_chains, "ladder_rungs": a.ladder_rungs,
                               "ladder_top_rungs": a.ladder_top_rungs, "replica_exchange": a.replica_exchange,
                               "ladder_every_sweep": a.ladder_every_sweep, "ladder_samples": a.ladder_samples,
                               "batch_size": a.batch_size, "seed": a.seed,
                               "threads": a.threads, "baseline": None if a.no_baseline else BETA,
                               "concurrent_ti_samples": a.concurrent, "tag": a.tag},
                   {"summary": summary, "per_T": rows},
                   notes=f"Ising h = 0, {L}x{L}: the {trained['size']} checkpoint's weights (size transfer), "
                         f"symmetrised samples, refined with one Wolff move per sweep (Bennett, ladder); the best "
                         f"claimed estimate per T against Kaufman; β integration with Wolff moves at about the same "
                         f"wall time. "
                         f"{a.note}")  # fmt: skip


if __name__ == "__main__":
    main()
