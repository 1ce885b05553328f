"""Where a trained marginalization model (MAM) loses accuracy: its sampler (the conditional head's
path distribution q) against the exact Boltzmann distribution p, split into the two parts of the
MAM objective (DESIGN §5): the marginal head f_θ against log p (what the KL term trains) and the
path log q against f_θ (what the consistency term ties together). On the sampler's own samples
(one random order, not symmetrised), per condition, in nats over the whole lattice:

    kl      = mean(log q − log p)   (KL(q‖p) >= 0; N·β·(F_var − F))
    sd_q_p  = sd(log q − log p)     (what the importance weights see: NESS ≈ exp(−sd²) for small sd)
    f_p     = mean, sd of f_θ(x) − log p(x)   (the marginal surrogate's error)
    q_f     = mean, sd of log q(x) − f_θ(x)   (the accumulated inconsistency of the N conditionals)

Below T_c the unsymmetrised Ising path sampler may cover one magnetisation sector (kl ≥ ln 2).

An any-order model without a marginal head (``ao-transformer``, ``ao-arm-mlp``) gets the bound
any marginal built on it would meet instead: ``q_f`` is ``log q(x|σ) − log q(x|σ')`` for a second,
independent order σ' of the model's family (the best marginal, a function of x alone, cannot
follow what changes with the order: its consistency sd is at least ``sd(q_f)/√2``).

One run per checkpoint in ``benchmarks/results/mam_diagnosis.json``.

    python benchmarks/bench_mam_diagnosis.py results/ising/8x8/models/mam-mlp/checkpoint.pt --label "laptop run"
"""

from __future__ import annotations

import numpy as np
import torch
from _harness import checkpoint_parser, print_table, record_run
from bench_training import _setup

from lattherm.sampling import log_prob, model_orders, sample
from lattherm.systems.base import reduced_energy
from lattherm.systems.cuau import K_B_EV
from lattherm.training.checkpoint import load_checkpoint, load_model

CONDITIONS = {
    "ising": [(1.5, 0.0), (2.0, 0.0), (2.3, 0.0), (2.6, 0.0), (3.0, 0.0), (3.5, 0.0), (2.3, 1.0), (3.5, 1.0)],
    "cuau": [(200.0, 0.0), (300.0, 0.03), (500.0, 0.0), (800.0, 0.0), (1200.0, 0.0), (800.0, 0.12)],
}


@torch.no_grad()
def diagnose(path: str, n: int, seed: int) -> list[dict]:
    ck = load_checkpoint(path)
    system_name, name = ck["system"]["name"], ck["model_spec"]["name"]
    system, _, _, _, ref, _ = _setup(system_name)
    model = load_model(path, system=system)
    if not model.has_marginal and model.fixed_order:
        raise SystemExit(f"{path}: {name} has no marginal head and one order: nothing to compare")
    gen = torch.Generator().manual_seed(seed)
    kT = K_B_EV if system_name == "cuau" else 1.0
    N = system.n_sites
    rows = []
    for T, h in CONDITIONS[system_name]:
        f_ref = ref.loc[np.isclose(ref["T"], T) & np.isclose(ref["field"], h), "f"].iloc[0]
        log_z = -N * f_ref / (kT * T)
        cond = torch.tensor([[T, h]], dtype=torch.float64)
        x, log_q = sample(model, cond, n, order="random", generator=gen)
        log_p = -reduced_energy(system, x, T, h) - log_z
        if model.has_marginal:
            f = model.log_marginal(x, torch.ones_like(x, dtype=torch.bool), cond.expand(n, 2)).double()
        else:  # the path log q along a second, independent order of the family (module doc)
            f = log_prob(model, x, cond.expand(n, 2), model_orders(model, n, generator=gen))
        q_p, f_p, q_f = log_q - log_p, f - log_p, log_q - f
        rows.append({"model": name, "system": system_name, "T": T, "field": h, "n": n,
                     "kl": q_p.mean().item(), "sd_q_p": q_p.std().item(),
                     "f_p_mean": f_p.mean().item(), "f_p_sd": f_p.std().item(),
                     "q_f_mean": q_f.mean().item(), "q_f_sd": q_f.std().item(),
                     "f": "marginal" if model.has_marginal else "second order",
                     "step": int(ck["step"]), "checkpoint": path})  # fmt: skip
    return rows


def main(paths: list[str], n: int, seed: int, label: str | None) -> None:
    torch.set_num_threads(1)
    for path in paths:
        rows = diagnose(path, n, seed)
        print_table(rows)
        ck = load_checkpoint(path)
        params = {"checkpoint": path, "system": ck["system"]["name"], "size": ck["system"]["size"],
                  "model": ck["model_spec"]["name"], "step": int(ck["step"]), "samples": n, "seed": seed}  # fmt: skip
        if label:
            params["label"] = label
        record_run("mam_diagnosis", params, rows,
                   notes=f"{n} samples per condition along one random order each, not symmetrised, 1 torch thread")


if __name__ == "__main__":
    ap = checkpoint_parser(__doc__, samples=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    main(args.checkpoints, args.samples, args.seed, args.label)
