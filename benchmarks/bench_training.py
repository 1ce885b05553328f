"""Accuracy of short trainings on Ising 8x8 over T ∈ [1.5, 3.5], h ∈ [−1, 1] (the issue's
acceptance check): train each model for a wall-clock budget, sample 1000 symmetrised samples at
every evaluation condition (T 1.5..3.5 step 0.1 × h −1..1 step 0.5), compare F_NIS with the
transfer matrix. Prints max/median |ΔF/F|, NESS median/min and records them.

    python benchmarks/bench_training.py [minutes]

One torch thread: on a shared 2-core machine it is 4–10x faster than two (measured).
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from _harness import print_table, record

from lattherm.evaluation import metrics_table, sample_grid
from lattherm.reference.exact import ising_transfer_matrix
from lattherm.systems import IsingSystem
from lattherm.training import TrainConfig, train

BOX = ((1.5, 3.5), (-1.0, 1.0))
#: laptop settings per model (steps sized for ~8 min on one contended core)
RUNS = {
    "fo-arm-mlp": ({"channels": 4, "n_hidden": 1, "cond_width": 64, "n_freq": 8}, {"steps": 600, "lr": 3e-3}),
    "ao-arm-mlp": ({"width": 256, "n_layers": 2, "n_freq": 8}, {"steps": 450, "lr": 3e-3, "ao_grad_steps": 4}),
    "mam-mlp": ({"width": 256, "n_layers": 2, "n_freq": 8}, {"steps": 450, "lr": 3e-3}),
}


def main(minutes: float) -> None:
    torch.set_num_threads(1)
    system = IsingSystem(L=8)
    T = np.round(np.arange(1.5, 3.5001, 0.1), 10)
    h = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    TT, HH = np.meshgrid(T, h, indexing="ij")
    r = ising_transfer_matrix(8, TT.ravel(), HH.ravel())
    ref = pd.DataFrame({"T": TT.ravel(), "field": HH.ravel(), "f": r["f"]})
    rows = []
    for name, (mc, tc) in RUNS.items():
        with tempfile.TemporaryDirectory() as d:
            cfg = TrainConfig(**tc, max_minutes=minutes, checkpoint_every=100, log_every=10)
            s = train(
                system,
                model_name=name,
                model_config=mc,
                train_config=cfg,
                cond_box=BOX,
                checkpoint_path=f"{d}/ck.pt",
                log_path=None,
                progress=False,
            )
            t0 = time.perf_counter()
            df = sample_grid(f"{d}/ck.pt", system, T, h, 1000, seed=1, batch_size=25000, symmetrised=True, device="cpu")
            met = metrics_table(df, system, name, "direct", ref, "exact", n_boot=50, seed=0)
        rel = (met["delta_f"] / met["f_ref"]).abs()
        rows.append(
            {
                "model": name,
                "steps": s["steps_done"],
                "train_s": round(s["wall_s"], 1),
                "eval_s": round(time.perf_counter() - t0, 1),
                "max_rel": float(rel.max()),
                "median_rel": float(rel.median()),
                "ness_median": float(met["ness"].median()),
                "ness_min": float(met["ness"].min()),
            }
        )
    print_table(rows)
    record("training_ising8x8", rows, notes=f"{minutes} min per model, 1 torch thread, symmetrised evaluation")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 8.0)
