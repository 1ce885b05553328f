"""Accuracy of short trainings on Ising 8x8 over T ∈ [1.5, 3.5], h ∈ [−1, 1] (the issue's
acceptance check; ``--system cuau``: CuAu 2x2x4 over the 99 conditions T 200–1200 K × μ −0.12..0.12 eV
against enumeration, |ΔF| in meV/atom; ``--system ea --size 10x10-s1``: an Edwards–Anderson
instance at T 0.5..3, field 0, against the row transfer matrix): train each model for a
wall-clock budget, sample ``--samples`` symmetrised samples at every evaluation condition (T
1.5..3.5 step 0.1 × h −1..1 step 0.5), compare F_NIS with the transfer matrix. Prints max/median
|ΔF/F|, NESS median/min, the worst conditions, the
training speed, the load average of the machine, and records them.

    python benchmarks/bench_training.py [minutes] [--models fo-arm-mlp ...] [--samples 4000] [--set steps=2500 ...]

One torch thread: on a shared 2-core machine it is 4–10x faster than two (measured), and on a
quiet one still ~2x for these sizes (fo-arm-mlp: 0.105 s/step vs 0.19 s/step). ≥ 4000 samples
per condition are needed to judge |ΔF/F| at 1e-4 (the statistical error at 1000 is ~1e-4 at the
worst conditions). Each model trained is one run of ``benchmarks/results/training.json``; its
parameters: system and size, model, ``budget_minutes``, the model and training settings (``RUNS`` with
``--model-set`` / ``--set``), the evaluation's samples, orders and temperatures, and ``--label``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from _harness import key_values, print_table, record_run

from lattherm.evaluation import accuracy_summary, metrics_table, sample_grid
from lattherm.models import is_fixed_order
from lattherm.reference.cuau_exact import cuau_exact_table
from lattherm.reference.exact import ising_transfer_matrix
from lattherm.systems import IsingSystem, make_system
from lattherm.training import TrainConfig, train

BOX = ((1.5, 3.5), (-1.0, 1.0))
#: laptop settings per model: (model config, train config); steps sized for ~8 min on one core
RUNS = {
    "fo-arm-mlp": ({"channels": 4, "n_hidden": 1, "cond_width": 64, "n_freq": 8}, {"steps": 3800, "lr": 5e-3}),
    "ao-arm-mlp": ({"width": 256, "n_layers": 2, "n_freq": 8}, {"steps": 450, "lr": 3e-3, "ao_grad_steps": 4}),
    "mam-mlp": ({"width": 256, "n_layers": 2, "n_freq": 8}, {"steps": 450, "lr": 3e-3}),
    # message passing on the lattice graph, 3 layers of width 32 and the global node; the buffer of the
    # laptop's MAM setting (refill_every 10) at half its samples: 0.77 s/step on 8x8 (11 minutes)
    "mam-gnn": ({"hidden": 32, "layers": 3, "filter_width": 16, "global_node": True, "n_freq": 8},
                {"steps": 850, "lr": 3e-3, "refill_every": 10, "samples_per_condition": 20}),
    "mam-transformer": ({"dim": 64, "n_blocks": 2, "n_heads": 4}, {"steps": 100, "lr": 1e-3}),
    # per-site weights: a larger rate than the shared ones (tests/test_twobo.py); 0.18 s/step on 8x8
    "twobo": ({"hidden": 16, "n_freq": 8}, {"steps": 2600, "lr": 3e-2}),
    # periodic masked convolutions, 4 layers of half-width 2 (the receptive field covers the 8x8 torus)
    "fo-pixelcnn": ({"channels": 32, "layers": 4, "kernel": 2, "cond_width": 64, "n_freq": 8},
                    {"steps": 1800, "lr": 3e-3}),
}


#: the EA evaluation temperatures (the spin-glass issue's grid; field 0)
EA_T = np.array([0.5, 0.75, 1.0, 1.5, 2.0, 3.0])


def _setup(system_name: str, size: str | None = None):
    """System, box, evaluation grid and exact reference: Ising 8x8 or CuAu 2x2x4 (laptop config grids),
    or an EA instance (``size``, e.g. ``10x10-s1``; T 0.5..3 at field 0, the row transfer matrix)."""
    if system_name == "ea":
        from lattherm.reference.spin_glass import ea_exact_table

        size = size or "10x10-s1"
        ref = ea_exact_table(size, EA_T, np.zeros_like(EA_T))[["T", "field", "f"]]
        return make_system("ea", size), ((0.5, 3.0), (0.0, 0.0)), EA_T, np.array([0.0]), ref, True
    if system_name == "cuau":
        T = np.arange(200.0, 1200.1, 100.0)
        h = np.round(np.arange(-0.12, 0.1201, 0.03), 10)
        TT, HH = np.meshgrid(T, h, indexing="ij")
        ref = cuau_exact_table("2x2x4", TT.ravel(), HH.ravel())[["T", "field", "f"]]
        return make_system("cuau", "2x2x4"), ((200.0, 1200.0), (-0.12, 0.12)), T, h, ref, False
    T = np.round(np.arange(1.5, 3.5001, 0.1), 10)
    h = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    TT, HH = np.meshgrid(T, h, indexing="ij")
    r = ising_transfer_matrix(8, TT.ravel(), HH.ravel())
    ref = pd.DataFrame({"T": TT.ravel(), "field": HH.ravel(), "f": r["f"]})
    return IsingSystem(L=8), BOX, T, h, ref, True


def grid_subset(grid: np.ndarray, wanted: list[float] | None, flag: str) -> np.ndarray:
    """``wanted`` values of an evaluation grid (all of it when None); off-grid values are an error."""
    if not wanted:
        return grid
    missing = [v for v in wanted if not np.isclose(grid, v).any()]
    if missing:
        raise SystemExit(f"{flag} {missing}: not on the evaluation grid {grid.tolist()}")
    return np.round(np.asarray(wanted, dtype=float), 10)


def _summary(name, mc, tc, s, met, n_orders, n_samples, eval_s, load_before, load_after_train) -> dict:
    """One result row: training speed, accuracy against the reference, the worst conditions."""
    acc = accuracy_summary(met).iloc[0]
    met = met.assign(rel=(met["delta_f"] / met["f_ref"]).abs(), abs_mev=met["delta_f"].abs() * 1e3)
    worst = met.sort_values("rel", ascending=False).head(3)
    low_ness = met.sort_values("ness").head(3)
    return {
        "model": name,
        "config": mc,
        "train_config": tc,
        "steps": s["steps_done"],
        "finished": s["finished"],
        "train_s": round(s["wall_s"], 1),
        "s_per_step": round(s["wall_s"] / max(1, s["steps_done"]), 4),
        "n_orders": n_orders,
        "eval_s": round(eval_s, 1),
        "n_samples": n_samples,
        "max_rel": float(acc["max_rel_delta_f"]),
        "median_rel": float(acc["median_rel_delta_f"]),
        "frac_rel_below_1e-4": float((met["rel"] < 1e-4).mean()),
        "max_abs_delta_f_meV": float(acc["max_abs_delta_f"]) * 1e3,
        "max_abs_delta_over_err": float(acc["max_delta_over_err"]),
        "ness_median": float(acc["ness_median"]),
        "ness_min": float(acc["ness_min"]),
        "worst_rel_at": worst[["T", "field", "rel", "abs_mev"]].values.tolist(),
        "lowest_ness_at": low_ness[["T", "field", "ness"]].values.tolist(),
        "loadavg_1_5_15_start": [round(v, 2) for v in load_before],
        "loadavg_1_5_15_after_train": [round(v, 2) for v in load_after_train],
    }


def main(minutes: float, models: list[str], n_samples: int, overrides: dict | None = None, system_name="ising",
         model_overrides: dict | None = None, label: str | None = None, n_orders: tuple[int, ...] = (1,),
         keep: str | None = None, eval_T: list[float] | None = None, size: str | None = None) -> None:
    torch.set_num_threads(1)
    system, box, T, h, ref, symmetrised = _setup(system_name, size)
    T_all = T
    T = grid_subset(T, eval_T, "--eval-T")  # slow samplers: some temperatures, every field value
    rows = []
    for name in models:
        mc, tc = RUNS[name]
        mc = {**mc, **(model_overrides or {})}
        tc = {**tc, **({"n_field": 1} if len(h) == 1 else {}), **(overrides or {})}
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory() as d:
            cfg = TrainConfig(**tc, max_minutes=minutes, checkpoint_every=500, log_every=50)
            s = train(
                system,
                model_name=name,
                model_config=mc,
                train_config=cfg,
                cond_box=box,
                checkpoint_path=f"{d}/ck.pt",
                log_path=None,
                progress=False,
            )
            load_after_train = os.getloadavg()
            if keep:
                os.makedirs(keep, exist_ok=True)
                shutil.copy(f"{d}/ck.pt", os.path.join(keep, f"{system_name}_{name}.pt"))
            evals = []
            for M in n_orders if not is_fixed_order(name) else (1,):
                t0 = time.perf_counter()
                df = sample_grid(f"{d}/ck.pt", system, T, h, n_samples, seed=1, batch_size=20000,
                                 symmetrised=symmetrised, n_orders=M, device="cpu")  # fmt: skip
                met = metrics_table(df, system, name, "direct", ref, "exact", n_boot=50, seed=0)
                evals.append((M, met, time.perf_counter() - t0))
        model_rows = [_summary(name, mc, tc, s, met, M, n_samples, eval_s, load_before, load_after_train)
                      for M, met, eval_s in evals]  # fmt: skip
        rows += model_rows
        params = {"system": system_name, "size": system.size, "model": name, "budget_minutes": minutes,
                  "model_config": mc, "train_config": tc, "eval_samples": n_samples,
                  "eval_n_orders": [r["n_orders"] for r in model_rows],
                  "eval_T": None if len(T) == len(T_all) else T.tolist()}  # fmt: skip
        if label:
            params["label"] = label
        drop = ("model", "config", "train_config")  # in the parameters
        record_run("training", params, [{k: v for k, v in r.items() if k not in drop} for r in model_rows],
                   notes=f"{system_name}: {minutes} min, 1 torch thread, {n_samples} "
                   f"{'symmetrised ' if symmetrised else ''}samples/condition at T {T.tolist()} x field {h.tolist()} "
                   "(eval_T null: the whole grid)")  # fmt: skip
    print_table([{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in rows])
    for r in rows:
        print(r["model"], "worst |dF/F| at (T, h, rel):", r["worst_rel_at"], "lowest NESS at:", r["lowest_ness_at"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("minutes", nargs="?", type=float, default=8.0)
    ap.add_argument("--models", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--system", choices=["ising", "cuau", "ea"], default="ising")
    ap.add_argument("--size", default=None, help="--system ea: the instance's size token (default 10x10-s1)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides (all models)")
    ap.add_argument("--model-set", nargs="*", default=[], metavar="KEY=VALUE", help="model config overrides")
    ap.add_argument("--label", "--tag", dest="label", default=None,
                    help="free text kept in the runs' parameters (tells otherwise identical runs apart)")
    ap.add_argument("--n-orders", nargs="+", type=int, default=[1], help="any-order models: evaluate with each M")
    ap.add_argument("--keep", default=None, metavar="DIR", help="copy the trained checkpoints there")
    ap.add_argument("--eval-T", nargs="+", type=float, default=None, help="evaluate at these grid temperatures only")
    args = ap.parse_args()
    main(args.minutes, args.models, args.samples, key_values(args.set), args.system, key_values(args.model_set),
         args.label, tuple(args.n_orders), args.keep, args.eval_T, args.size)
