"""Accuracy of trained checkpoints (e.g. the laptop run's ``results/.../checkpoint.pt``) at a
chosen sample count: the workflow's sampling and metrics (:func:`lattherm.evaluation.sample_grid`,
:func:`~lattherm.evaluation.metrics_table`, :func:`~lattherm.evaluation.accuracy_summary`) on the
laptop evaluation grid (Ising 8x8: T 1.5..3.5 step 0.1 x h -1..1 step 0.5; CuAu 2x2x4: T 200..1200 K
step 100 x 9 values of μ) against the exact tables. The laptop config samples 1000 per condition,
whose statistical error (~1e-4 relative on Ising 8x8, ~0.1 meV/atom on CuAu at high T) is as large
as the acceptance thresholds; this measures the same models with more samples. One run per
checkpoint in ``benchmarks/results/checkpoint_eval.json`` (parameters: the checkpoint, its system,
model and step, the sample count, orders, seed, threads, grid subset and ``--label``).

    python benchmarks/bench_checkpoint_eval.py results/ising/8x8/models/fo-arm-mlp/checkpoint.pt --samples 8000 \
        --label "laptop run"
"""

from __future__ import annotations

import time

import torch
from _harness import checkpoint_parser, portable_path, print_table, record_run
from bench_training import _setup, grid_subset

from lattherm.evaluation import accuracy_summary, metrics_table, sample_grid
from lattherm.training.checkpoint import load_checkpoint


def main(paths: list[str], n_samples: int, n_orders: int, label: str | None, threads: int = 1, seed: int = 1,
         eval_T: list[float] | None = None, eval_field: list[float] | None = None, order: str = "random") -> None:
    torch.set_num_threads(threads)
    for path in paths:
        ck = load_checkpoint(path)
        system_name, model = ck["system"]["name"], ck["model_spec"]["name"]
        system, _, T, h, ref, symmetrised = _setup(system_name)
        T, h = grid_subset(T, eval_T, "--eval-T"), grid_subset(h, eval_field, "--eval-field")
        t0 = time.perf_counter()
        df = sample_grid(path, system, T, h, n_samples, seed=seed, batch_size=20000, symmetrised=symmetrised,
                         n_orders=n_orders, order=order, device="cpu")  # fmt: skip
        met = metrics_table(df, system, model, "direct", ref, "exact", n_boot=50, seed=0)
        s = accuracy_summary(met).iloc[0].to_dict()
        s.update(checkpoint=path, seed=seed, step=int(ck["step"]), eval_s=round(time.perf_counter() - t0, 1),
                 max_abs_delta_f_meV=s["max_abs_delta_f"] * 1e3)  # fmt: skip
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in s.items()}
        print_table([row])
        params = {"checkpoint": portable_path(path),
                  "system": system_name, "size": ck["system"]["size"], "model": model,
                  "step": int(ck["step"]), "samples": n_samples, "n_orders": n_orders, "order": order, "seed": seed,
                  "threads": threads, "eval_T": eval_T, "eval_field": eval_field}  # fmt: skip
        if label:
            params["label"] = label
        record_run("checkpoint_eval", params, row,
                   notes=f"{n_samples} samples/condition, n_orders {n_orders}, order {order} (any-order models), "
                   f"{threads} torch thread{'s' if threads > 1 else ''}; eval_T/eval_field null: the whole grid")


if __name__ == "__main__":
    ap = checkpoint_parser(__doc__, samples=4000)
    ap.add_argument("--n-orders", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the workflow's sample job)")
    ap.add_argument("--seed", type=int, default=1, help="sampling seed")
    ap.add_argument("--order", choices=("random", "fixed"), default="random",
                    help="any-order models: a random order per sample, or the storage order for all")
    ap.add_argument("--eval-T", nargs="+", type=float, default=None, help="these grid temperatures only")
    ap.add_argument("--eval-field", nargs="+", type=float, default=None, help="these grid fields only")
    args = ap.parse_args()
    main(args.checkpoints, args.samples, args.n_orders, args.label, args.threads, args.seed, args.eval_T,
         args.eval_field, args.order)
