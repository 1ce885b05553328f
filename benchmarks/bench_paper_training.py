"""Training throughput at the paper's scale: each model trained for a short, fixed budget with the
settings of ``config/paper.yaml`` (architecture, batch, schedule, precision ``auto``: bf16 autocast
on CUDA), as the workflow's ``train`` job would run it on one GPU. Records seconds per step,
samples per second, peak memory (max allocated on CUDA, max RSS on a CPU) and the mean F_var of
the last log row, per (system, size, model). Meant for a lent GPU (``benchmarks/gpu_check.sh``);
on a CPU pass small ``--sizes`` and ``--steps`` (``make bench`` skips it without CUDA: paper widths
on 20x20 need tens of GB on a CPU). A run of ``benchmarks/results/paper_training.json`` per command line
and device.

    python benchmarks/bench_paper_training.py --minutes 0.5 [--system ising --sizes 10x10 20x20]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import print_table, record_run

ROOT = Path(__file__).resolve().parents[1]


def one(system_name: str, size: str, model_name: str, minutes: float, steps: int | None, config_path: str) -> dict:
    import torch

    from lattherm.config import cond_box, load_config, read_config_file, train_settings
    from lattherm.models import build_model
    from lattherm.systems import make_system
    from lattherm.training import train

    config = load_config(read_config_file(config_path))  # checked, the schema's defaults filled in
    settings = train_settings(config, system_name, model_name, size)
    settings.update(max_minutes=minutes, checkpoint_every=10**8, log_every=5)  # no checkpoint within the run
    if steps is not None:
        settings["steps"] = steps
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    system, box = make_system(system_name, size), cond_box(config, system_name)
    model_config = config["models"][model_name]
    model = build_model(model_name, system=system, cond_box=box, config=model_config)
    n_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        out = train(system, model_name=model_name, model_config=model_config, train_config=settings, cond_box=box,
                    checkpoint_path=Path(tmp) / "ck.pt", log_path=Path(tmp) / "log.parquet",
                    progress=False)  # fmt: skip
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    n_done = out["steps_done"]
    return {
        "system": system_name, "size": size, "model": model_name,
        "params": n_params, "steps_done": n_done,
        "s_per_step": out["wall_s_this_call"] / max(n_done, 1), "samples_per_s": out["samples_per_s"],
        "peak_mb": peak, "f_var_mean_last": out["last"].get("f_var_mean"),
        "batch": settings.get("samples_per_condition", 40), "ao_grad_steps": settings.get("ao_grad_steps"),
        "precision": settings.get("precision", "auto"), "device": "cuda" if cuda else "cpu",
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "config" / "paper.yaml"))
    ap.add_argument("--system", default="ising", choices=["ising", "cuau"])
    ap.add_argument("--sizes", nargs="+", default=["10x10", "20x20"])
    ap.add_argument("--models", nargs="+", default=["fo-arm-mlp", "ao-arm-mlp", "mam-mlp", "mam-transformer"])
    ap.add_argument("--minutes", type=float, default=0.5, help="training budget per model")
    ap.add_argument("--steps", type=int, default=None, help="cap on steps (default: the config's)")
    ap.add_argument("--label", "--tag", dest="label", default=None, help="free text kept in the run's parameters")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.minutes, args.steps, args.config)))
        return
    notes = (f"{args.config} settings, {args.minutes} min per model (steps capped at {args.steps}), precision auto "
             "(bf16 autocast on CUDA, float32 on CPU), one process per model; s_per_step over this call; peak_mb: max "
             "allocated on CUDA, max RSS growth on CPU")  # fmt: skip
    import torch

    params = {"system": args.system, "sizes": args.sizes, "models": args.models, "minutes": args.minutes,
              "steps": args.steps, "config": str(Path(args.config).resolve().relative_to(ROOT))
              if Path(args.config).resolve().is_relative_to(ROOT) else args.config,
              "device": "cuda" if torch.cuda.is_available() else "cpu"}  # fmt: skip
    if args.label:
        params["label"] = args.label
    rows = []
    for size in args.sizes:
        for model in args.models:  # one process each: its peak memory is its own
            cmd = [sys.executable, __file__, "--one", args.system, size, model, "--minutes", str(args.minutes),
                   "--config", args.config] + ([] if args.steps is None else ["--steps", str(args.steps)])  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                err = (res.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{args.system} {size} {model}: failed: {err}", file=sys.stderr)
                rows.append({"system": args.system, "size": size, "model": model, "error": err})
            else:
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
                print_table(rows[-1:])
            record_run("paper_training", params, rows, notes=notes)  # after every model: a time limit keeps them
    print_table([r for r in rows if "error" not in r])


if __name__ == "__main__":
    main()
