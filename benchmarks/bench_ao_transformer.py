"""The any-order Transformer (``ao-transformer``) against the issue's targets, and its speed next
to the fixed-order MADE.

``train``: train on Ising 8x8 over the laptop box (T 1.5..3.5, h −1..1) or CuAu 2x2x4 (200–1200 K,
μ −0.12..0.12 eV) for at most ``--minutes`` of wall clock (one torch thread), then draw ``--samples``
samples per condition at every condition of the laptop grid (Ising: 105, symmetrised; CuAu: 99)
and compare F_NIS with the exact reference (transfer matrix; CuAu enumeration): max / median
|ΔF/F| (Ising) or |ΔF| in meV/atom (CuAu), NESS min / median, the worst conditions, the training
trajectory (the train log's ``lw_std`` every few hundred steps) and the load average of the
machine. ``--note`` says in the record what the run tried; the record holds every parameter.

    python benchmarks/bench_ao_transformer.py train --minutes 30 --samples 10000 \
        --model-set dim=32 orders=raster --set steps=4000 lr=3e-3 --tag ising_30min --note "..."

``speed``: s/step (the REINFORCE step: sampling, one-pass log q, backward, AdamW), sampling
throughput (configurations/s with their exact log q, symmetrised as in the workflow) and peak
memory (max RSS growth of a fresh process), for ``ao-transformer`` and ``fo-arm-mlp`` at their
laptop settings, each measurement in its own process, alternating models, ``--repeats`` times; the
record holds the load average before and after (time only when it is below ~1.3).

    python benchmarks/bench_ao_transformer.py speed --model-set dim=32 --repeats 3

``eval``: a checkpoint kept by ``train --keep`` re-evaluated (other sample counts, order mixtures
``--n-orders M`` over the model's order family, seeds).

``transfer``: the weights of an 8x8 checkpoint on 12x12 and 16x16 tori (size transfer), sampled
directly against the exact tables (transfer matrix; Kaufman at h = 0 past L = 14).

``orders``: order families at equal steps (same model, seed and steps; the measure of item 3 of
the issue): each family trained for ``--set steps=...`` and evaluated at a few conditions.

Records (``benchmarks/_harness.record_run``: one run per parameter set, machine inside):
``benchmarks/results/ao_transformer_train.json``, ``ao_transformer_eval.json``,
``ao_transformer_transfer.json``, ``ao_transformer_speed.json``, ``ao_transformer_orders.json``; a
run's parameters are its command line's settings (system, model and train configs, minutes,
samples, orders, tag).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from _harness import key_values, print_table, record_run
from bench_training import _setup

from lattherm.evaluation import accuracy_summary, metrics_table, sample_model
from lattherm.models.ao_transformer import ORDER_FAMILIES
from lattherm.reference.cuau_exact import cuau_exact_table
from lattherm.reference.exact import ising_transfer_matrix
from lattherm.systems import IsingSystem
from lattherm.training import TrainConfig, load_model, train

#: laptop settings: (model config, train config) per model and system
LAPTOP = {
    ("ising", "fo-arm-mlp"): ({"channels": 4, "n_hidden": 1, "cond_width": 64, "n_freq": 8},
                              {"steps": 8000, "lr": 5e-3, "samples_per_condition": 40}),
    ("ising", "ao-transformer"): ({"dim": 32, "n_blocks": 1, "n_query_blocks": 1, "n_heads": 2, "orders": "raster"},
                                  {"steps": 4000, "lr": 3e-3, "samples_per_condition": 40}),
    ("cuau", "fo-arm-mlp"): ({"channels": 4, "n_hidden": 1, "cond_width": 64, "n_freq": 8},
                             {"steps": 2000, "lr": 3e-3, "samples_per_condition": 40}),
    ("cuau", "ao-transformer"): ({"dim": 32, "n_blocks": 1, "n_query_blocks": 1, "n_heads": 2, "orders": "raster"},
                                 {"steps": 3000, "lr": 3e-3, "samples_per_condition": 40}),
}  # fmt: skip


def _parameters(a, *names: str) -> dict:
    """A run's parameters: the command line's ``names``, in that order (``model_set`` and ``set`` as dicts)."""
    return {n: key_values(getattr(a, n)) if n in ("model_set", "set") else getattr(a, n) for n in names}


def _top(met: pd.DataFrame, col: str, cols: list[str], ascending: bool = False) -> list:
    return met.sort_values(col, ascending=ascending).head(3)[cols].values.tolist()


def evaluate(model, system, T, h, ref, symmetrised: bool, n_samples: int, n_orders: int, seed: int = 1) -> dict:
    """Accuracy of ``model`` at the grid ``T x h`` against ``ref`` (module doc)."""
    t0 = time.perf_counter()
    df = sample_model(model, system, T, h, n_samples, seed=seed, batch_size=20000, symmetrised=symmetrised,
                      n_orders=n_orders)  # fmt: skip
    eval_s = time.perf_counter() - t0
    met = metrics_table(df, system, model.name, "direct", ref, "exact", n_boot=50, seed=0)
    acc = accuracy_summary(met).iloc[0]
    met = met.assign(rel=(met["delta_f"] / met["f_ref"]).abs(), abs_mev=met["delta_f"].abs() * 1e3)
    return {
        "n_samples": n_samples,
        "n_orders": n_orders,
        "symmetrised": symmetrised,
        "n_conditions": len(met),
        "eval_s": round(eval_s, 1),
        "max_rel": float(acc["max_rel_delta_f"]),
        "median_rel": float(acc["median_rel_delta_f"]),
        "frac_rel_below_1e-4": float((met["rel"] < 1e-4).mean()),
        "max_abs_delta_f_meV": float(acc["max_abs_delta_f"]) * 1e3,
        "median_abs_delta_f_meV": float(acc["median_abs_delta_f"]) * 1e3,
        "max_abs_delta_over_err": float(acc["max_delta_over_err"]),
        "ness_median": float(acc["ness_median"]),
        "ness_min": float(acc["ness_min"]),
        "frac_ness_below_0.8": float((met["ness"] < 0.8).mean()),
        "worst_rel_at": _top(met, "rel", ["T", "field", "rel", "abs_mev"]),
        "worst_abs_at": _top(met, "abs_mev", ["T", "field", "abs_mev", "ness"]),
        "lowest_ness_at": met.sort_values("ness").head(3)[["T", "field", "ness"]].values.tolist(),
    }


def trajectory(log_path: str, every: int = 250) -> list[list[float]]:
    """``[step, wall_s, lw_std_mean, lw_std_max]`` rows of the train log, about every ``every`` steps."""
    log = pd.read_parquet(log_path)
    keep = log[(log["step"] % every == 0) | (log.index == len(log) - 1)]
    return keep[["step", "wall_s", "lw_std_mean", "lw_std_max"]].round(4).values.tolist()


def cmd_train(a) -> None:
    torch.set_num_threads(1)
    system, box, T, h, ref, symmetrised = _setup(a.system)
    if a.eval_T:
        T = np.round(np.asarray(a.eval_T, dtype=float), 10)
        ref = ref[np.isin(np.round(ref["T"], 10), T)]
    rows = []
    for name in a.models:
        mc, tc = LAPTOP[(a.system, name)]
        mc = {**mc, **(key_values(a.model_set) if name == "ao-transformer" else {})}
        tc = {**tc, **key_values(a.set)}
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory() as d:
            cfg = TrainConfig(**tc, max_minutes=a.minutes, checkpoint_every=10**6, log_every=25)
            s = train(system, model_name=name, model_config=mc, train_config=cfg, cond_box=box,
                      checkpoint_path=f"{d}/ck.pt", log_path=f"{d}/log.parquet", progress=False)  # fmt: skip
            load_after = os.getloadavg()
            traj = trajectory(f"{d}/log.parquet")
            if a.keep:
                os.makedirs(a.keep, exist_ok=True)
                shutil.copy(f"{d}/ck.pt", os.path.join(a.keep, f"{a.system}_{name}_{a.tag or 'run'}.pt"))
            model = load_model(f"{d}/ck.pt", system=system)
        for M in a.n_orders if name != "fo-arm-mlp" else (1,):
            ev = evaluate(model, system, T, h, ref, symmetrised, a.samples, M)
            rows.append({"model": name, "system": system.name, "size": system.size, "config": mc, "train_config": tc,
                         "max_minutes": a.minutes, "steps": s["steps_done"], "finished": s["finished"],
                         "train_s": round(s["wall_s"], 1),
                         "s_per_step": round(s["wall_s"] / max(1, s["steps_done"]), 4),
                         **ev, "trajectory_step_wall_lwstd_mean_max": traj,
                         "loadavg_1_5_15_start": [round(v, 2) for v in load_before],
                         "loadavg_1_5_15_after_train": [round(v, 2) for v in load_after],
                         "loadavg_1_5_15_end": [round(v, 2) for v in os.getloadavg()]})  # fmt: skip
    print_table([{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in rows])
    for r in rows:
        print(r["model"], "worst:", r["worst_rel_at"] if a.system == "ising" else r["worst_abs_at"],
              "lowest NESS:", r["lowest_ness_at"])  # fmt: skip
    record_run("ao_transformer_train", _parameters(a, "system", "models", "model_set", "set", "minutes", "samples",
                                                   "n_orders", "eval_T", "tag"), rows,
           notes=f"{a.system} {system.size}: at most {a.minutes} min of training per model on 1 torch thread, then "
                 f"{a.samples} {'symmetrised ' if symmetrised else ''}samples per condition at T {T.tolist()} x field "
                 f"{h.tolist()}. {a.note}")  # fmt: skip


def cmd_eval(a) -> None:
    """A kept checkpoint (``train --keep``) at every condition of the grid, with other sample counts,
    order mixtures or seeds."""
    torch.set_num_threads(a.threads)
    system, _, T, h, ref, symmetrised = _setup(a.system)
    model = load_model(a.checkpoint, system=system)
    rows = []
    for M in a.n_orders:
        ev = evaluate(model, system, T, h, ref, symmetrised, a.samples, M, seed=a.seed)
        rows.append({"checkpoint": os.path.basename(a.checkpoint), "config": dict(vars(model.config)), **ev,
                     "seed": a.seed, "threads": a.threads, "loadavg_1": round(os.getloadavg()[0], 2)})  # fmt: skip
        print({k: v for k, v in rows[-1].items() if not isinstance(v, dict | list)}, flush=True)
    record_run("ao_transformer_eval", {"system": a.system, "checkpoint": os.path.basename(a.checkpoint),
                                       "samples": a.samples, "n_orders": a.n_orders, "seed": a.seed, "tag": a.tag},
               rows, notes=f"{a.system}: a checkpoint of `train --keep` re-evaluated at every condition of the "
                           f"laptop grid ({a.threads} torch threads). {a.note}")  # fmt: skip


def _second_cumulant(log_w: np.ndarray) -> tuple[float, float]:
    """``(κ1 + κ2/2, κ3/6)`` of the log-weights (k-statistics): the second-order cumulant estimate of
    ln Z, exact for Gaussian log-weights, and the size of its next term."""
    n, m = len(log_w), float(np.mean(log_w))
    d = log_w - m
    k2 = n / (n - 1) * float(np.mean(d**2))
    k3 = n**2 / ((n - 1) * (n - 2)) * float(np.mean(d**3))
    return m + k2 / 2, k3 / 6


def _reference_of_size(paths: list[str], L: int) -> tuple[pd.DataFrame, str]:
    """The reference table among ``paths`` whose ``size`` is ``LxL`` and its ``method``."""
    for path in paths:
        ref = pd.read_parquet(path)
        if (ref["size"] == f"{L}x{L}").all():
            methods = sorted(set(ref["method"])) if "method" in ref else ["reference"]
            return ref, "+".join(methods)
    raise SystemExit(f"--reference: none of {paths} is a table of size {L}x{L}")


def cmd_transfer(a) -> None:
    """Size transfer: the 8x8 checkpoint's weights on L x L tori (the parameters do not depend on the
    box), sampled directly and compared with the exact table (transfer matrix up to L = 14, Kaufman
    at h = 0 above) or ``--reference`` tables; ``z`` counts the reference's own error. Per
    condition it also records the second-order cumulant estimate of ln Z (``κ1 + κ2/2`` of the
    log-weights, exact for Gaussian ones) beside F_NIS: a candidate for
    where the weights degenerate; with ``--refine CHAINS BURN KEEP THIN``, Bennett's estimate from
    the samples and Metropolis chains started from them (:func:`lattherm.refine.refine`). One run
    per size (kept as each size finishes)."""
    from lattherm.models import transfer_model
    from lattherm.observables import log_weights
    from lattherm.reference.exact import ising_exact_table

    torch.set_num_threads(a.threads)
    small, _, *_ = _setup("ising")
    src = load_model(a.checkpoint, system=small)
    for L in a.sizes:
        system = IsingSystem(L=L)
        model = transfer_model(src, system)
        T = np.round(np.asarray(a.eval_T, dtype=float), 10)
        h = np.round(np.asarray(a.eval_h, dtype=float), 10)
        if a.reference:  # e.g. results/ising/16x16/reference/field_integration.parquet (h != 0 past L 14)
            ref, ref_method = _reference_of_size(a.reference, L)
        else:
            ref, ref_method = ising_exact_table(L, T, h)[["T", "field", "f"]], "exact"
        ref = ref[np.isin(np.round(ref["T"], 10), T)]
        h = h[np.isin(h, np.round(ref["field"], 10))]
        t0 = time.perf_counter()
        df = sample_model(model, system, T, h, a.samples, seed=a.seed, batch_size=a.batch_size, symmetrised=True)
        eval_s = time.perf_counter() - t0
        met = metrics_table(df, system, model.name, f"transfer-{small.size}", ref, ref_method, n_boot=50, seed=0)
        acc = accuracy_summary(met).iloc[0]
        bar = None
        if a.refine:  # Bennett's estimate from the samples and chains refined from them (lattherm.refine)
            from lattherm.evaluation import direct_density
            from lattherm.refine import refine

            t1 = time.perf_counter()
            bar, *_ = refine(system, df, model=model.name, source=f"transfer-{small.size}", n_chains=a.refine[0],
                            burn_in_sweeps=a.refine[1], n_samples=a.refine[2], thin_sweeps=a.refine[3], seed=a.seed,
                            reference_df=ref, density=direct_density(model, symmetrised=True),
                            batch_size=a.batch_size)  # fmt: skip
            bar_s = time.perf_counter() - t1
        per = []
        for (t, f), g in df.groupby(["T", "field"], sort=True):
            lw = log_weights(g["log_q"].to_numpy(), g["energy"].to_numpy() / t - f * g["spin_sum"].to_numpy() / t)
            row = met[(met["T"] == t) & (met["field"] == f)].iloc[0]
            lz_ref = -system.n_sites * row["f_ref"] / t
            c2, next_term = _second_cumulant(lw)
            per.append({"T": float(t), "field": float(f), "rel_nis": float(row["delta_f"] / abs(row["f_ref"])),
                        "z_nis": float(row["delta_f"] / np.hypot(row["f_nis_err"], row["f_ref_err"])),
                        "ness": float(row["ness"]),
                        "lw_sd": float(np.std(lw, ddof=1)),
                        "lw_skew": float(np.mean((lw - lw.mean()) ** 3) / np.std(lw) ** 3),
                        "rel_cumulant2": float(-(c2 - lz_ref) / abs(lz_ref)),  # as Δf / |f|
                        "next_term_rel": float(-next_term / abs(lz_ref))})  # fmt: skip
            if bar is not None:
                b = bar[(bar["T"] == t) & (bar["field"] == f)].iloc[0]
                per[-1].update(rel_bar=float(b["delta_f"] / abs(b["f_ref"])),
                               z_bar=float(b["delta_f"] / np.hypot(b["f_est_err"], b["f_ref_err"])),
                               bar_overlap=float(b["bar_overlap"]),
                               bar_claimed=bool(b["est_converged"]))  # fmt: skip
        row = {"L": L, "checkpoint": os.path.basename(a.checkpoint), "n_samples": a.samples, "eval_s": round(eval_s, 1),
               "max_rel": float(acc["max_rel_delta_f"]), "median_rel": float(acc["median_rel_delta_f"]),
               "max_abs_delta_over_err": float(acc["max_delta_over_err"]), "ness_median": float(acc["ness_median"]),
               "ness_min": float(acc["ness_min"]), "per_condition": per, "threads": a.threads,
               "refine_s": round(bar_s, 1) if bar is not None else None,
               "loadavg_1": round(os.getloadavg()[0], 2)}  # fmt: skip
        print_table(per)
        print({k: v for k, v in row.items() if not isinstance(v, dict | list)}, flush=True)
        record_run("ao_transformer_transfer", {"checkpoint": os.path.basename(a.checkpoint), "sizes": [L],
                                               "samples": a.samples, "eval_T": a.eval_T, "eval_h": a.eval_h,
                                               "seed": a.seed, "tag": a.tag, "refine": a.refine,
                                               "reference": a.reference},
                   [row], notes=f"Ising: the weights of an 8x8 checkpoint on {L}x{L}, symmetrised samples, exact "
                                f"references ({a.threads} torch threads). {a.note}")  # fmt: skip


# ---------------------------------------------------------------------------------------- speed
def speed_one(name: str, system_name: str, mc: dict, tc: dict, steps: int, n_sample: int) -> dict:
    """In a fresh process: s/step of the REINFORCE step, sampling throughput, peak RSS growth."""
    from lattherm.models import build_model
    from lattherm.sampling import sample
    from lattherm.training.reinforce import reinforce_loss

    torch.set_num_threads(1)
    system, box, *_ = _setup(system_name)
    torch.manual_seed(0)
    model = build_model(name, system=system, cond_box=box, config=mc)
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"])
    gen = torch.Generator().manual_seed(0)
    (t0, t1), (h0, h1) = box
    cond = torch.stack(torch.meshgrid(torch.linspace(t0, t1, 5), torch.linspace(h0, h1, 5), indexing="ij"), -1)
    cond = cond.reshape(-1, 2).double()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        loss, _ = reinforce_loss(model, system, cond, samples_per_condition=tc["samples_per_condition"], generator=gen,
                                 grad_steps=tc.get("ao_grad_steps"))  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    peak_train = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    model.requires_grad_(False)
    order = "fixed" if model.fixed_order else "random"
    c = torch.tensor([[2.3, 0.0]], dtype=torch.float64)
    t = time.perf_counter()
    sample(model, c, n_sample, order=order, generator=gen, symmetrised=system_name == "ising", batch_size=20000)
    samp_s = time.perf_counter() - t
    return {"model": name, "s_per_step": float(np.median(times[1:])), "s_per_step_min": float(min(times[1:])),
            "samples_per_s": n_sample / samp_s, "peak_rss_growth_mb": round(peak_train, 1),
            "peak_rss_growth_total_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1)}


def cmd_speed(a) -> None:
    load_before = os.getloadavg()
    if load_before[0] > 1.3:
        print(f"warning: 1-minute load average {load_before[0]:.2f} > 1.3: timings are not comparable")
    rows = []
    for rep in range(a.repeats):
        for name in ("fo-arm-mlp", "ao-transformer"):
            mc, tc = LAPTOP[(a.system, name)]
            mc = {**mc, **(key_values(a.model_set) if name == "ao-transformer" else {})}
            tc = {**tc, **key_values(a.set)}
            job = json.dumps({"name": name, "system_name": a.system, "mc": mc, "tc": tc, "steps": a.steps,
                              "n_sample": a.n_sample})  # fmt: skip
            out = subprocess.run([sys.executable, __file__, "_speed_one", job], capture_output=True, text=True,
                                 check=True)  # fmt: skip
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"repeat": rep, **r, "config": mc, "train_config": tc,
                         "loadavg_1": round(os.getloadavg()[0], 2)})  # fmt: skip
            print(rows[-1], flush=True)
    summ = []
    for name in ("fo-arm-mlp", "ao-transformer"):
        rr = [r for r in rows if r["model"] == name]
        summ.append({"model": name, "s_per_step": float(np.median([r["s_per_step"] for r in rr])),
                     "samples_per_s": float(np.median([r["samples_per_s"] for r in rr])),
                     "peak_rss_growth_mb": float(np.median([r["peak_rss_growth_mb"] for r in rr]))})  # fmt: skip
    ratio = {k: summ[1][k] / summ[0][k] for k in ("s_per_step", "samples_per_s", "peak_rss_growth_mb")}
    print_table(summ)
    print("ao-transformer / fo-arm-mlp:", ratio)
    parameters = _parameters(a, "system", "model_set", "set", "steps", "n_sample", "repeats", "tag")
    record_run("ao_transformer_speed", parameters,
           {"summary": summ, "ratio_ao_transformer_over_fo_arm_mlp": ratio, "runs": rows,
            "loadavg_1_5_15_start": [round(v, 2) for v in load_before],
            "loadavg_1_5_15_end": [round(v, 2) for v in os.getloadavg()]},
           notes=f"{a.system}: one REINFORCE step (25 conditions x samples_per_condition, sampling + log q + "
                 f"backward + "
                 f"AdamW; median of {a.steps} steps after one warm-up), sampling throughput ({a.n_sample} "
                 f"configurations at T 2.3, h 0, exact log q{', symmetrised' if a.system == 'ising' else ''}), peak "
                 f"RSS growth of a fresh process; 1 torch thread; models alternate, {a.repeats} repeats. "
                 f"{a.note}")  # fmt: skip


# ---------------------------------------------------------------------------------------- orders
def cmd_orders(a) -> None:
    torch.set_num_threads(1)
    system, box, T, h, ref, symmetrised = _setup(a.system)
    T = np.round(np.asarray(a.eval_T or ([2.0, 2.3, 2.6, 3.0] if a.system == "ising" else [300, 600, 900]), float), 10)
    h = np.round(np.asarray(a.eval_h or ([0.0, 0.5] if a.system == "ising" else [-0.06, 0.0, 0.06]), float), 10)
    TT, HH = np.meshgrid(T, h, indexing="ij")
    if a.system == "ising":
        r = ising_transfer_matrix(8, TT.ravel(), HH.ravel())
        ref = pd.DataFrame({"T": TT.ravel(), "field": HH.ravel(), "f": r["f"]})
    else:
        ref = cuau_exact_table("2x2x4", TT.ravel(), HH.ravel())[["T", "field", "f"]]
    mc0, tc0 = LAPTOP[(a.system, "ao-transformer")]
    rows = []
    for fam in a.families:
        mc = {**mc0, **key_values(a.model_set), "orders": fam}
        tc = {**tc0, **key_values(a.set)}
        with tempfile.TemporaryDirectory() as d:
            cfg = TrainConfig(**tc, max_minutes=a.minutes, checkpoint_every=10**6, log_every=25)
            s = train(system, model_name="ao-transformer", model_config=mc, train_config=cfg, cond_box=box,
                      checkpoint_path=f"{d}/ck.pt", log_path=f"{d}/log.parquet", progress=False)  # fmt: skip
            traj = trajectory(f"{d}/log.parquet", every=100)
            model = load_model(f"{d}/ck.pt", system=system)
        ev = evaluate(model, system, T, h, ref, symmetrised, a.samples, 1)
        rows.append({"orders": fam, "config": mc, "train_config": tc, "steps": s["steps_done"],
                     "train_s": round(s["wall_s"], 1), **ev, "trajectory_step_wall_lwstd_mean_max": traj,
                     "loadavg_1": round(os.getloadavg()[0], 2)})  # fmt: skip
        print({k: v for k, v in rows[-1].items() if not isinstance(v, dict | list)}, flush=True)
    print_table([{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in rows])
    record_run("ao_transformer_orders", _parameters(a, "system", "families", "model_set", "set", "minutes", "samples",
                                                    "eval_T", "eval_h", "tag"), rows,
           notes=f"{a.system}: order families at equal steps (same model, seed, steps); evaluated with {a.samples} "
                 f"samples per condition at T {T.tolist()} x field {h.tolist()} along the family's own orders. "
                 f"{a.note}")  # fmt: skip


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_speed_one":
        print(json.dumps(speed_one(**json.loads(sys.argv[2]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--system", choices=["ising", "cuau"], default="ising")
    common.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides")
    common.add_argument("--model-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="ao-transformer config overrides")  # fmt: skip
    common.add_argument("--tag", default=None, help="suffix of the recorded result's name")
    common.add_argument("--note", default="", help="what this run tried (kept in the record)")
    t = sub.add_parser("train", parents=[common])
    t.add_argument("--minutes", type=float, default=30.0)
    t.add_argument("--models", nargs="+", default=["ao-transformer"], choices=["ao-transformer", "fo-arm-mlp"])
    t.add_argument("--samples", type=int, default=10000)
    t.add_argument("--n-orders", nargs="+", type=int, default=[1])
    t.add_argument("--eval-T", nargs="+", type=float, default=None)
    t.add_argument("--keep", default=None, metavar="DIR", help="copy the trained checkpoint there")
    s = sub.add_parser("speed", parents=[common])
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--n-sample", type=int, default=20000)
    s.add_argument("--repeats", type=int, default=3)
    e = sub.add_parser("eval", parents=[common])
    e.add_argument("checkpoint")
    e.add_argument("--samples", type=int, default=10000)
    e.add_argument("--n-orders", nargs="+", type=int, default=[1])
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--threads", type=int, default=1)
    x = sub.add_parser("transfer", parents=[common])
    x.add_argument("checkpoint")
    x.add_argument("--sizes", nargs="+", type=int, default=[12, 16])
    x.add_argument("--samples", type=int, default=2000)
    x.add_argument("--eval-T", nargs="+", type=float, default=[2.0, 2.3, 2.6, 3.0])
    x.add_argument("--eval-h", nargs="+", type=float, default=[0.0, 0.5])
    x.add_argument("--seed", type=int, default=1)
    x.add_argument("--threads", type=int, default=1)
    x.add_argument("--batch-size", type=int, default=20000,
                   help="samples per forward batch (memory grows as batch x sites^2: ~7 MB per sample on 32x32)")
    x.add_argument("--reference", nargs="+", default=None, metavar="PARQUET",
                   help="reference tables (one per size; e.g. field_integration.parquet) instead of the exact one")
    x.add_argument("--refine", nargs=4, type=int, default=None, metavar=("CHAINS", "BURN", "KEEP", "THIN"),
                   help="also refine the samples by Metropolis chains and give Bennett's estimate (lattherm.refine)")
    o = sub.add_parser("orders", parents=[common])
    o.add_argument("--families", nargs="+", default=list(ORDER_FAMILIES), choices=list(ORDER_FAMILIES))
    o.add_argument("--minutes", type=float, default=None)
    o.add_argument("--samples", type=int, default=4000)
    o.add_argument("--eval-T", nargs="+", type=float, default=None)
    o.add_argument("--eval-h", nargs="+", type=float, default=None)
    a = ap.parse_args()
    {"train": cmd_train, "eval": cmd_eval, "transfer": cmd_transfer, "speed": cmd_speed,
     "orders": cmd_orders}[a.cmd](a)


if __name__ == "__main__":
    main()
