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

A model whose marginal is exact by construction (``mam-tt``: its family is the storage order)
also gets ``q_f_sd_uniform_order``, ``q_f_max_uniform_order``: its conditionals summed step by step
along an independent uniform random order per draw, against the marginal.

An any-order model without a marginal head (``ao-transformer``, ``ao-arm-mlp``) gets the bound
any marginal built on it would meet instead: ``q_f`` is ``log q(x|σ) − log q(x|σ')`` for a second,
independent order σ' of the model's family (the best marginal, a function of x alone, cannot
follow what changes with the order: its consistency sd is at least ``sd(q_f)/√2``).

One run per checkpoint in ``benchmarks/results/mam_diagnosis.json``; ``--every-condition`` takes
every condition of the system's reference table (Ising 8x8: the 105 of the laptop grid) instead of
the diagnosis conditions below.

``--sublattice-split`` (Ising, a model drawing along orders that finish with one whole sublattice,
e.g. the ``ao-transformer``'s checkerboard family) splits ``log q − log p`` into the first half's
part and the second half's: given the first sublattice A, the sites of the other, B, are
independent with exact conditionals ``p(s_b | x_A) ∝ exp(β s_b (J Σ_nb s + h))``, and ``p(x_A) ∝
exp(βh Σ_A s) Π_b 2 cosh(β (J Σ_nb s + h))``. So

    sd_first  = sd(log q(x_A) − log p(x_A))          (the first 32 steps' error on 8x8)
    sd_second = sd(Σ_b log q(s_b | ·) − log p(s_b | x_A))

``sd_first`` is what a model with the exact second half (and a marginal tied to the energy on
complete configurations) would show, with the same first half: the check of that design before
any training.

``--separate-marginal MINUTES`` (MAMs) measures the design "a separate marginal network": a copy of
the checkpoint's network, all of its weights free, is trained for MINUTES by regression of its
marginal onto the frozen conditionals' exact log q of fresh samples (16 uniform conditions of the
box × 16 samples per step, Adam 1e-3), along ``--order`` (``fixed``: the storage order, so no order
dependence bounds it; ``random``); the rows then compare log q with the copy's marginal (``f =
"separate marginal"``) beside the checkpoint's own (``q_f_sd_own``).

    python benchmarks/bench_mam_diagnosis.py results/ising/8x8/models/mam-mlp/checkpoint.pt --label "laptop run"
"""

from __future__ import annotations

import numpy as np
import torch
from _harness import checkpoint_parser, portable_path, print_table, record_run
from bench_training import _setup

from lattherm.sampling import log_prob, model_orders, random_orders, sample
from lattherm.systems.base import reduced_energy
from lattherm.systems.cuau import K_B_EV
from lattherm.training.checkpoint import load_checkpoint, load_model

CONDITIONS = {
    "ising": [(1.5, 0.0), (2.0, 0.0), (2.3, 0.0), (2.6, 0.0), (3.0, 0.0), (3.5, 0.0), (2.3, 1.0), (3.5, 1.0)],
    "cuau": [(200.0, 0.0), (300.0, 0.03), (500.0, 0.0), (800.0, 0.0), (1200.0, 0.0), (800.0, 0.12)],
}


@torch.no_grad()
def diagnose(path: str, n: int, seed: int, every_condition: bool = False) -> list[dict]:
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
    conditions = ref[["T", "field"]].itertuples(index=False) if every_condition else CONDITIONS[system_name]
    for T, h in conditions:
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
        row = {"model": name, "system": system_name, "T": T, "field": h, "n": n,
               "kl": q_p.mean().item(), "sd_q_p": q_p.std().item(),
               "f_p_mean": f_p.mean().item(), "f_p_sd": f_p.std().item(),
               "q_f_mean": q_f.mean().item(), "q_f_sd": q_f.std().item(),
               "f": "marginal" if model.has_marginal else "second order",
               "step": int(ck["step"]), "checkpoint": portable_path(path)}  # fmt: skip
        if model.exact_marginal:  # its family is one order: also the conditionals along uniform ones
            path_lq = log_prob(model, x, cond.expand(n, 2), random_orders(n, N, generator=gen), steps_per_pass=4,
                               stepwise=True)  # fmt: skip
            row["q_f_sd_uniform_order"] = (path_lq - f).std().item()
            row["q_f_max_uniform_order"] = (path_lq - f).abs().max().item()
        rows.append(row)
    return rows


@torch.no_grad()
def sublattice_split(path: str, n: int, seed: int) -> list[dict]:
    """The ``--sublattice-split`` rows (module doc) per diagnosis condition."""
    ck = load_checkpoint(path)
    system_name, name = ck["system"]["name"], ck["model_spec"]["name"]
    if system_name != "ising":
        raise SystemExit(f"{path}: the sublattice split is the Ising torus's (this is {system_name})")
    system, _, _, _, ref, _ = _setup(system_name)
    model = load_model(path, system=system)
    if model.fixed_order:
        raise SystemExit(f"{path}: {name} draws in one fixed order; the split needs orders ending with a sublattice")
    gen = torch.Generator().manual_seed(seed)
    N, J = system.n_sites, float(system.J)
    nb = system.lattice.neighbours()  # (N, 4)
    rows = []
    for T, h in CONDITIONS[system_name]:
        beta = 1.0 / T
        log_z = -N * ref.loc[np.isclose(ref["T"], T) & np.isclose(ref["field"], h), "f"].iloc[0] / T
        cond = torch.tensor([[T, h]], dtype=torch.float64).expand(n, 2)
        x, log_q, order = sample(model, cond, order="random", generator=gen, return_order=True)
        rank = order.argsort(1)
        second = order[:, N // 2 :]  # (n, N/2)
        if not bool((rank.gather(1, nb[second].reshape(n, -1)) < N // 2).all()):
            raise SystemExit(f"{path}: {name}'s orders do not end with a whole sublattice (a site of the second "
                             "half has a neighbour drawn after the first half)")  # fmt: skip
        logits = model.any_order_path_logits(x, torch.zeros_like(x, dtype=torch.bool), order, cond)  # (n, N, 2)
        step_lp = torch.log_softmax(logits.double(), -1).gather(2, x.gather(1, order)[..., None])[..., 0]
        if not torch.allclose(step_lp.sum(1), log_q, atol=1e-6):
            raise SystemExit(f"{path}: the path's step log-probabilities do not add up to the sampled log q")
        s = 2.0 * x.double() - 1.0
        local = J * (2.0 * x[:, None, :].expand(n, N // 2, N).gather(2, nb[second]).double() - 1.0).sum(-1) + h
        s_b = s.gather(1, second)
        exact_lp = beta * s_b * local - torch.log(2.0 * torch.cosh(beta * local))  # log p(s_b | x_A)
        log_p_first = (beta * h * s.gather(1, order[:, : N // 2]).sum(1)
                       + torch.log(2.0 * torch.cosh(beta * local)).sum(1))  # fmt: skip
        e_first = step_lp[:, : N // 2].sum(1) - log_p_first
        e_second = step_lp[:, N // 2 :].sum(1) - exact_lp.sum(1)
        q_p = log_q + reduced_energy(system, x, T, h) + log_z
        if not torch.allclose(e_first + e_second - q_p, (e_first + e_second - q_p).mean(), atol=1e-8):
            raise SystemExit(f"{path}: the split does not add up to log q − log p (T {T}, h {h})")
        rows.append({"model": name, "system": system_name, "T": T, "field": h, "n": n,
                     "sd_q_p": q_p.std().item(), "sd_first": e_first.std().item(),
                     "sd_second": e_second.std().item(), "kl_second": e_second.mean().item(),
                     "f": "sublattice split", "step": int(ck["step"]), "checkpoint": portable_path(path)})  # fmt: skip
    return rows


def separate_marginal(path: str, n: int, seed: int, minutes: float, order: str) -> list[dict]:
    """The separate-marginal experiment (module doc): rows per diagnosis condition."""
    import copy
    import time

    ck = load_checkpoint(path)
    system_name = ck["system"]["name"]
    system = _setup(system_name)[0]
    frozen = load_model(path, system=system)
    if not frozen.has_marginal:
        raise SystemExit(f"{path}: {ck['model_spec']['name']} has no marginal head")
    frozen.requires_grad_(False)
    marginal = copy.deepcopy(frozen).requires_grad_(True)
    opt = torch.optim.Adam(marginal.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    (t0, t1), (h0, h1) = frozen.cond_box
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < 60.0 * minutes:
        T = t0 + (t1 - t0) * torch.rand(16, generator=gen, dtype=torch.float64)
        h = h0 + (h1 - h0) * torch.rand(16, generator=gen, dtype=torch.float64)
        cond = torch.stack([T, h], 1).repeat_interleave(16, 0)
        with torch.no_grad():
            x, log_q = sample(frozen, cond, order=order, generator=gen)
        f = marginal.log_marginal(x, torch.ones_like(x, dtype=torch.bool), cond).double()
        loss = ((f - log_q) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    rows = []
    with torch.no_grad():
        for T, h in CONDITIONS[system_name]:
            cond = torch.tensor([[T, h]], dtype=torch.float64).expand(n, 2)
            x, log_q = sample(frozen, cond, order=order, generator=gen)
            full = torch.ones_like(x, dtype=torch.bool)
            q_f = log_q - marginal.log_marginal(x, full, cond).double()
            own = log_q - frozen.log_marginal(x, full, cond).double()
            rows.append({"model": ck["model_spec"]["name"], "system": system_name, "T": T, "field": h, "n": n,
                         "q_f_mean": q_f.mean().item(), "q_f_sd": q_f.std().item(), "q_f_sd_own": own.std().item(),
                         "f": "separate marginal", "order": order, "minutes": minutes, "distill_steps": steps,
                         "step": int(ck["step"]), "checkpoint": portable_path(path)})  # fmt: skip
    return rows


def main(paths: list[str], n: int, seed: int, label: str | None, every_condition: bool = False) -> None:
    torch.set_num_threads(1)
    for path in paths:
        rows = diagnose(path, n, seed, every_condition)
        print_table(rows)
        ck = load_checkpoint(path)
        params = {"checkpoint": portable_path(path), "system": ck["system"]["name"], "size": ck["system"]["size"],
                  "model": ck["model_spec"]["name"], "step": int(ck["step"]), "samples": n, "seed": seed}  # fmt: skip
        if label:
            params["label"] = label
        if every_condition:
            params["conditions"] = "every condition of the reference table"
        record_run("mam_diagnosis", params, rows,
                   notes=f"{n} samples per condition along one random order each, not symmetrised, 1 torch thread")


if __name__ == "__main__":
    ap = checkpoint_parser(__doc__, samples=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--separate-marginal", type=float, default=None, metavar="MINUTES")
    ap.add_argument("--order", choices=["fixed", "random"], default="fixed")
    ap.add_argument("--sublattice-split", action="store_true")
    ap.add_argument("--every-condition", action="store_true",
                    help="every (T, field) of the system's reference table instead of the diagnosis conditions")
    args = ap.parse_args()
    if args.sublattice_split:
        torch.set_num_threads(1)
        for path in args.checkpoints:
            rows = sublattice_split(path, args.samples, args.seed)
            print_table(rows)
            params = {"checkpoint": portable_path(path), "samples": args.samples, "seed": args.seed,
                      "label": args.label, "sublattice_split": True}  # fmt: skip
            record_run("mam_diagnosis", params, rows, notes="log q − log p split into the first sublattice's "
                       "part and the exact second sublattice's (module doc); one random order each; 1 torch "
                       "thread")  # fmt: skip
    elif args.separate_marginal is None:
        main(args.checkpoints, args.samples, args.seed, args.label, args.every_condition)
    else:
        torch.set_num_threads(1)
        for path in args.checkpoints:
            rows = separate_marginal(path, args.samples, args.seed, args.separate_marginal, args.order)
            print_table(rows)
            params = {"checkpoint": portable_path(path),
                      "samples": args.samples, "seed": args.seed, "label": args.label,
                      "separate_marginal_minutes": args.separate_marginal, "order": args.order}  # fmt: skip
            record_run("mam_diagnosis", params, rows, notes="separate marginal network distilled from the frozen "
                       "conditionals' log q (module doc); 1 torch thread")  # fmt: skip
