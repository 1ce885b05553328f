"""Free energies past the training box: importance sampling (NIS) against sequential Monte Carlo
(SMC, :mod:`lattherm.smc`) on the same sampler, against exact values (Ising; transfer matrix up to
L = 14, Kaufman at h = 0 above).

An 8x8 any-order checkpoint is evaluated on larger tori, either directly with its weights (size
transfer, ``--transfer L ...``) or out-painted (``--outpaint L ...``, window stride ``--stride``),
at the conditions ``--eval-T x --eval-h``. Per condition and sampler: NIS from ``--samples`` draws
(symmetrised), and SMC with ``--particles`` particles in ``--replicas`` replicas started at
``--T-start`` (``box``: the top of the model's box; ``none``: the condition's own T) and annealed
with ``--sweeps`` Metropolis sweeps per level. Recorded: ``|Δf/f|``, ``|Δ|/err`` (is the error bar
honest), the budget of each estimator (draws of the sampler, particle sweeps, wall seconds) and
the machine, in ``benchmarks/results/smc.json``.

    python benchmarks/bench_smc.py CHECKPOINT --transfer 12 --outpaint 16 32 --eval-T 2.0 2.3 2.6 3.0
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from _harness import record_run
from bench_training import _setup

from lattherm.evaluation import direct_draw, metrics_table, outpaint_draw, sample_model, smc_model
from lattherm.models import transfer_model
from lattherm.reference.exact import ising_exact_table
from lattherm.systems import IsingSystem
from lattherm.training import load_model


def _row(kind: str, L: int, r, wall: float | None = None) -> dict:
    rel = abs(r["delta_f"] / r["f_ref"])
    return {"kind": kind, "L": L, "T": r["T"], "field": r["field"], "estimator": r["estimator"],
            "rel": float(rel), "delta_over_err": float(abs(r["delta_f"]) / r["f_est_err"]),
            "f_est_err_rel": float(r["f_est_err"] / abs(r["f_ref"])), "draws": int(r["est_draws"]),
            "sweeps": int(r["est_sweeps"]), "wall_s": float(r["est_wall_s"] if wall is None else wall),
            "converged": bool(r["est_converged"]), **({"ness": float(r["ness"])} if "ness" in r else {}),
            **({"levels": float(r["levels"]), "beta_levels": float(r["beta_levels"])} if "levels" in r
               else {})}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--transfer", nargs="*", type=int, default=[12])
    ap.add_argument("--outpaint", nargs="*", type=int, default=[])
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--eval-T", nargs="+", type=float, default=[2.0, 2.3, 2.6, 3.0])
    ap.add_argument("--eval-h", nargs="+", type=float, default=[0.0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--particles", type=int, default=500)
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--sweeps", type=int, default=2)
    ap.add_argument("--moves", type=int, default=2)
    ap.add_argument("--T-start", default="box")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default=None)
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    T_start = None if a.T_start == "none" else ("box" if a.T_start == "box" else float(a.T_start))
    small, *_ = _setup("ising")
    src = load_model(a.checkpoint, system=small)
    T = np.round(np.asarray(a.eval_T, dtype=float), 10)
    h = np.round(np.asarray(a.eval_h, dtype=float), 10)
    rows = []
    for kind, sizes in (("transfer", a.transfer), ("outpaint", a.outpaint)):
        for L in sizes:
            system = IsingSystem(L=L)
            ref = ising_exact_table(L, T, h)[["T", "field", "f"]]
            hh = h[np.isin(h, ref["field"])]
            if kind == "transfer":
                model = transfer_model(src, system)
                draw, meta = direct_draw(model, system, hh, symmetrised=True)
            else:
                model = src
                draw, meta = outpaint_draw(src, system, hh, stride=a.stride, symmetrised=True)
            for Ti in T:
                for hi in hh:
                    t0 = time.perf_counter()
                    if kind == "transfer":
                        df = sample_model(model, system, [Ti], [hi], a.samples, seed=a.seed, symmetrised=True)
                    else:
                        from lattherm.evaluation import outpaint_model

                        df = outpaint_model(src, system, [Ti], [hi], a.samples, stride=a.stride, seed=a.seed,
                                            symmetrised=True)  # fmt: skip
                    met = metrics_table(df, system, src.name, meta["source"], ref, "exact", n_boot=100, seed=0)
                    rows.append(_row(kind, L, met.iloc[0], time.perf_counter() - t0))
                    smc = smc_model(model, system, [Ti], [hi], draw, meta, seed=a.seed, reference_df=ref,
                                    ref_method="exact", T_start=T_start, n_particles=a.particles,
                                    n_replicas=a.replicas, n_sweeps=a.sweeps, n_moves=a.moves)  # fmt: skip
                    rows.append(_row(kind, L, smc.iloc[0]))
                    print(rows[-2], "\n", rows[-1], flush=True)
    record_run("smc", {"checkpoint": os.path.basename(a.checkpoint), "transfer": a.transfer, "outpaint": a.outpaint,
                       "stride": a.stride, "eval_T": a.eval_T, "eval_h": a.eval_h, "samples": a.samples,
                       "particles": a.particles, "replicas": a.replicas, "sweeps": a.sweeps, "moves": a.moves,
                       "T_start": a.T_start, "seed": a.seed, "tag": a.tag},
               rows, notes=f"Ising: NIS and SMC on one 8x8 checkpoint's samplers on larger tori ({a.threads} torch "
                           f"threads, load {os.getloadavg()[0]:.2f}). {a.note}")  # fmt: skip


if __name__ == "__main__":
    main()
