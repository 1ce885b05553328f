"""Time and peak memory of one training step: AO-ARM MLP vs MAM MLP vs MAM Transformer.

The paper's claim: an any-order ARM needs N forward passes with gradients for exact log q, a
marginalization model one, so its training memory is O(N) smaller. Each (model, L) runs in its own
process so that peak memory (max RSS on CPU, max allocated on CUDA) is that step's alone. Equal
batch: 25 conditions x 8 samples. The AO-ARM step includes its sampling and is run with the exact
N-pass gradient and with the unbiased 4-step estimator; the MAM step excludes the Gibbs refresh
(no gradient, about one ancestral pass). Also the direct sampling throughput (configurations/s,
exact log q included) per model. CPU widths are reduced (noted in the record); on a GPU pass --paper.
A run of ``benchmarks/results/train_step.json`` per (--paper, --sizes, device).

    python benchmarks/bench_train_step.py [--paper] [--sizes 10 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from _harness import print_table, record_run

MODELS = {
    "ao-arm-mlp": {"width": 256, "n_layers": 2},
    "mam-mlp": {"width": 256, "n_layers": 2},
    "mam-transformer": {"dim": 64, "n_blocks": 2, "n_heads": 4},
}
PAPER = {
    "ao-arm-mlp": {"width": 2048, "n_layers": 3},
    "mam-mlp": {"width": 2048, "n_layers": 3},
    "mam-transformer": {"dim": 256, "n_blocks": 4, "n_heads": 8},
}


def one(model_name: str, L: int, paper: bool, grad_steps: int | None = None, grad_chunk: int | None = None) -> dict:
    import torch

    from lattherm.models import build_model
    from lattherm.systems import IsingSystem
    from lattherm.training.mam import mam_loss
    from lattherm.training.reinforce import reinforce_loss

    torch.set_num_threads(1)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    system = IsingSystem(L=L)
    cfg = (PAPER if paper else MODELS)[model_name]
    model = build_model(model_name, system=system, cond_box=((1.5, 3.5), (-1.0, 1.0)), config=cfg).to(dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    T = torch.linspace(1.5, 3.5, 5, device=dev)
    h = torch.linspace(-1.0, 1.0, 5, device=dev)
    cond = torch.stack(torch.meshgrid(T, h, indexing="ij"), -1).reshape(-1, 2)
    S = 8
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if model.has_marginal:  # the buffer's content does not change the cost: random states
        x = torch.randint(0, 2, (cond.shape[0] * S, L * L), generator=gen, device=dev)
        loss, _ = mam_loss(model, system, x, cond, lam=1.0, generator=gen)
    else:  # sampling (no gradient) + the gradient of log q: exact N passes, or k sampled steps
        loss, _ = reinforce_loss(model, system, cond, samples_per_condition=S, generator=gen, grad_steps=grad_steps,
                                 grad_chunk=grad_chunk)  # fmt: skip
    loss.backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    step_s = time.perf_counter() - t0
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if dev.type == "cuda"
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    )
    from lattherm.sampling import sample

    n = 40 if (dev.type == "cuda" or "mlp" in model_name) else 2  # the CPU transformer samples slowly
    with torch.no_grad():  # direct sampling throughput, exact log q included
        t0 = time.perf_counter()
        sample(model, cond, n, generator=gen)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        sample_per_s = cond.shape[0] * n / (time.perf_counter() - t0)
    n_params = sum(p.numel() for p in model.parameters())
    grad = "MAM" if model.has_marginal else f"{grad_steps or L * L}-step"
    grad += f", chunks of {grad_chunk}" if grad_chunk else ""
    return {"model": model_name, "grad": grad, "L": L, "N": L * L, "params": n_params, "step_s": step_s,
            "peak_mb": peak, "samples_per_s": sample_per_s, "device": dev.type}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paper", action="store_true", help="the paper's widths (for a GPU)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        name, L, k, chunk = args.one
        print(json.dumps(one(name, int(L), args.paper, int(k) or None, int(chunk) or None)))
        return
    rows = []
    runs = [("ao-arm-mlp", None, None), ("ao-arm-mlp", None, 20), ("ao-arm-mlp", 4, None), ("mam-mlp", None, None),
            ("mam-transformer", None, None)]  # fmt: skip
    for L in args.sizes:
        for name, k, chunk in runs:
            cmd = [sys.executable, __file__, "--one", name, str(L), str(k or 0), str(chunk or 0)]
            cmd += ["--paper"] if args.paper else []
            # large blocks from mmap, handed back when freed: max RSS then follows the live tensors
            # (glibc's adaptive threshold otherwise keeps freed blocks, and RSS shows fragmentation)
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
            out = out.strip().splitlines()[-1]
            rows.append(json.loads(out))
            print_table(rows[-1:])
    print_table(rows)
    record_run(
        "train_step",
        {"paper": args.paper, "sizes": args.sizes, "device": rows[0]["device"] if rows else None},
        rows,
        notes="one training step at equal batch (25 conditions x 8 samples), one torch thread; ao-arm-mlp: sampling "
        "+ the exact N-pass gradient of log q (grad N-step; 'chunks of 20': activation-checkpointed over chunks of 20 "
        "samples, TrainConfig.grad_chunk) or the unbiased 4-step estimator (4-step); MAMs: the full "
        "objective (KL surrogate, consistency, anchor) on a given buffer, Gibbs refresh excluded; peak_mb = growth of "
        "max RSS during the step on CPU (glibc mmap threshold 128 KiB: freed tensors leave RSS), max allocated on "
        "CUDA; samples_per_s = direct ancestral sampling with exact log q (25 conditions x 40, the CPU transformer "
        "x 2; no gradient). "
        + ("paper widths" if args.paper else "reduced CPU widths: " + json.dumps(MODELS)),
    )


if __name__ == "__main__":
    main()
