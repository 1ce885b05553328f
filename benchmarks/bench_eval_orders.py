"""Which generation order an any-order model should be sampled along, on Ising 8x8 near T_c:
F_NIS error and NESS of the same checkpoint along an independent random order per sample (the
workflow's ``sampling.order: random``), the raster (storage) order (``order: fixed``), a
checkerboard order (one sublattice in a random order, then the other) and a coarse-to-fine order
(stride-4 sites, then stride-2, then the rest of that sublattice, then the other), all
flip-symmetrised as in the workflow. Every order gives an exactly normalised ``q(x | σ)``. One run
per checkpoint in ``benchmarks/results/eval_orders.json``.

    python benchmarks/bench_eval_orders.py /tmp/exp/ao60/ising_ao-arm-mlp.pt --samples 4000 --label "60-minute run"
"""

from __future__ import annotations

import numpy as np
import torch
from _harness import checkpoint_parser, portable_path, print_table, record_run
from bench_training import _setup

from lattherm.evaluation import load_model
from lattherm.observables import estimate_thermo
from lattherm.sampling import sample
from lattherm.training.checkpoint import load_checkpoint

CONDITIONS = ((2.3, 0.0), (2.4, 0.0), (2.6, 0.0), (2.2, 0.5))


def ising_orders(L: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Named orders of the L x L lattice's sites (row-major storage)."""
    idx = torch.arange(L * L).view(L, L)
    i, j = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")

    def shuffled(mask):
        sites = idx[mask]
        return sites[torch.randperm(len(sites), generator=generator)]

    black, even = (i + j) % 2 == 0, (i % 2 == 0) & (j % 2 == 0)
    coarse = (i % 4 == 0) & (j % 4 == 0)
    return {
        "raster": torch.arange(L * L),
        "checkerboard": torch.cat([shuffled(black), shuffled(~black)]),
        "coarse-to-fine": torch.cat([shuffled(coarse), shuffled(even & ~coarse), shuffled(black & ~even),
                                     shuffled(~black)]),  # fmt: skip
    }


def main(path: str, n: int, label: str | None, seed: int = 1) -> None:
    threads = 2
    torch.set_num_threads(threads)
    system, _, _, _, ref, _ = _setup("ising")
    model = load_model(path, system=system, device=torch.device("cpu"))
    orders = {"random": "random", **ising_orders(system.L, torch.Generator().manual_seed(0))}
    rows = []
    for T, h in CONDITIONS:
        f_ref = float(ref[np.isclose(ref["T"], T) & np.isclose(ref["field"], h)].iloc[0]["f"])
        for name, order in orders.items():
            x, lq = sample(model, torch.tensor([[T, h]]), n, order=order, symmetrised=True,
                           generator=torch.Generator().manual_seed(seed))  # fmt: skip
            est = estimate_thermo(system, x, lq.numpy(), T, h, n_boot=30)
            rows.append({"T": T, "field": h, "order": name, "rel_delta_f": abs(est["f_nis"] - f_ref) / abs(f_ref),
                         "ness": est["ness"]})  # fmt: skip
    print_table(rows)
    ck = load_checkpoint(path)
    params = {"checkpoint": portable_path(path),
              "system": "ising", "size": system.size, "model": ck["model_spec"]["name"],
              "step": int(ck["step"]), "samples": n, "seed": seed, "threads": threads}  # fmt: skip
    if label:
        params["label"] = label
    record_run("eval_orders", params, rows, notes=f"{portable_path(path)}: {n} samples per condition, "
               f"symmetrised, seed {seed}, "
               f"{threads} torch threads")  # fmt: skip


if __name__ == "__main__":
    ap = checkpoint_parser(__doc__, samples=4000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for p in args.checkpoints:
        main(p, args.samples, args.label, args.seed)
