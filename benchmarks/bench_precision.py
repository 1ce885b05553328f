"""What bf16 autocast does to a sampler's log-likelihood: for trained checkpoints, the difference
``log q_bf16(x) − log q_fp32(x)`` over the model's own samples (along the same orders) at a few
conditions. Training in bf16 (``precision: auto`` on a GPU) computes the REINFORCE reward's
``log q`` this way; the ``sample`` rule evaluates in float32. A spread comparable to the spread of
the log-weights ``log p − log q`` (sqrt(−ln NESS) roughly) means bf16 rounding is as large as the
signal a well-trained model learns from.

One run per checkpoint in ``benchmarks/results/precision.json``.

    python benchmarks/bench_precision.py results/ising/8x8/models/*/checkpoint.pt --samples 1000 --label "laptop run"
"""

from __future__ import annotations

import time

import torch
from _harness import checkpoint_parser, print_table, record_run

from lattherm.sampling import log_prob, sample
from lattherm.systems import make_system, reduced_energy
from lattherm.training.checkpoint import load_checkpoint, load_model

CONDITIONS = {"ising": [(1.8, 0.0), (2.3, 0.0), (3.0, 0.5)], "cuau": [(300.0, 0.0), (700.0, 0.03), (1100.0, -0.06)]}


def main(paths: list[str], n: int, label: str | None, threads: int = 1) -> None:
    torch.set_num_threads(threads)
    for path in paths:
        rows = []
        ck = load_checkpoint(path)
        system = make_system(ck["system"]["name"], ck["system"]["size"])
        model = load_model(path, system=system)
        cond = torch.tensor(CONDITIONS[system.name], dtype=torch.float64)
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        with torch.no_grad():
            x, lq, order = sample(model, cond, n, order="fixed" if model.fixed_order else "random", generator=gen,
                                  return_order=True)  # fmt: skip
            rows_c = cond.repeat_interleave(n, 0)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                lq_bf16 = log_prob(model, x, rows_c, order)
            lq_fp32 = log_prob(model, x, rows_c, order)
            log_w = -reduced_energy(system, x, rows_c[:, 0], rows_c[:, 1]) - lq_fp32
        d, lw = (lq_bf16 - lq_fp32).view(len(cond), n), log_w.view(len(cond), n)
        for i, (T, h) in enumerate(CONDITIONS[system.name]):
            rows.append({
                "model": ck["model_spec"]["name"], "system": system.name, "size": system.size, "N": system.n_sites,
                "T": T, "field": h, "mean_diff": float(d[i].mean()), "std_diff": float(d[i].std()),
                "max_abs_diff": float(d[i].abs().max()), "std_log_w": float(lw[i].std()),
                "fp32_vs_sampler": float((lq_fp32 - lq).abs().max()), "s": round(time.perf_counter() - t0, 1),
            })  # fmt: skip
        print_table(rows)
        params = {"checkpoint": path, "system": system.name, "size": system.size, "model": ck["model_spec"]["name"],
                  "step": int(ck["step"]), "samples": n, "threads": threads}  # fmt: skip
        if label:
            params["label"] = label
        record_run(
            "precision", params, rows,
            notes=f"{n} samples per condition from the checkpoint (float32 sampler), log q re-evaluated along the "
            "same orders under CPU bf16 autocast and in float32; std_log_w: spread of log p - log q (float32) for "
            "comparison; s: seconds for the checkpoint's conditions",
        )  # fmt: skip


if __name__ == "__main__":
    ap = checkpoint_parser(__doc__, samples=1000)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    main(a.checkpoints, a.samples, a.label, a.threads)
