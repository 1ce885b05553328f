"""The baselines' floor: the study's architectures (``fo-arm-mlp``, ``ao-arm-mlp``, ``mam-mlp``,
``mam-transformer``) on a laptop run's metric tables against their recorded levels
(``benchmarks/baseline_floors.yaml``, from docs/results.md's laptop-run table). A later change
must not make them worse; this checks it after ``make run`` (it reads the tables, it trains
nothing).

Per baseline, from ``<results>/<system>/<size>/metrics/<model>/direct.parquet``
(:func:`lattherm.evaluation.accuracy_summary`):

- ``error``: the largest ``|ΔF/F|`` over the grid (Ising) or ``|ΔF|`` per site in eV (CuAu);
  ``sigma`` the F_NIS bootstrap error at that condition, in the same unit.
- ``worse_error``: ``error > floor + 3 sigma`` (the floor is itself a maximum over noisy
  conditions; three of the worst condition's error bars separate a real loss from noise).
- ``worse_ness``: the NESS minimum below half its floor. The minimum of a grid's NESS estimates
  is itself uncertain by about that factor at low NESS: the laptop checkpoints re-evaluated with
  4x the samples gave 0.007 against 0.0024 (mam-mlp) and 0.24 against 0.30 (ao-arm-mlp).
- ``verdict``: ``no worse``, ``worse``, ``not comparable`` (the table's sample count differs from
  the floor's) or ``missing`` (no table: that model was not run).

One run per results folder and git revision in ``benchmarks/results/baselines.json``.

    python benchmarks/bench_baselines.py results --label "laptop run"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from _harness import git_revision, print_table, record_run

from lattherm.evaluation import accuracy_summary

FLOORS = Path(__file__).resolve().parent / "baseline_floors.yaml"
#: how many error bars above its floor a baseline's worst error must be to count as worse
N_SIGMA = 3.0
#: a NESS minimum below this fraction of its floor counts as worse
NESS_FACTOR = 0.5


def load_floors(path: Path = FLOORS) -> dict[tuple[str, str, str], dict]:
    """``{(system, size, model): {error, ness_min, n_samples, recorded}}`` from the floors file."""
    data = yaml.safe_load(Path(path).read_text())
    floors = {}
    for key, models in data.items():
        system, size = key.split("/")
        for model, level in models.items():
            missing = {"error", "ness_min", "n_samples"} - set(level)
            if missing:
                raise SystemExit(f"{path}: {key} {model}: needs {sorted(missing)}")
            floors[system, size, model] = level
    return floors


def compare(metrics: pd.DataFrame, floor: dict, *, relative: bool) -> dict:
    """One baseline's table against its floor (module doc)."""
    s = accuracy_summary(metrics).iloc[0]
    ref = metrics[metrics["f_ref"].notna()]
    scale = ref["f_ref"].abs() if relative else 1.0
    err, sigma = ref["delta_f"].abs() / scale, ref["f_nis_err"] / scale
    worst = int(np.argmax(err.to_numpy()))
    error, sig = float(err.iloc[worst]), float(sigma.iloc[worst])
    row = {"n_samples": int(s["n_samples"]), "error": error, "floor": float(floor["error"]), "sigma": sig,
           "excess_sigma": (error - float(floor["error"])) / sig if sig > 0 else float("nan"),
           "T_worst": float(ref["T"].iloc[worst]), "field_worst": float(ref["field"].iloc[worst]),
           "ness_min": float(s["ness_min"]), "ness_floor": float(floor["ness_min"])}  # fmt: skip
    row["worse_error"] = error > row["floor"] + N_SIGMA * sig
    row["worse_ness"] = row["ness_min"] < NESS_FACTOR * row["ness_floor"]
    if row["n_samples"] != int(floor["n_samples"]):
        row["verdict"] = "not comparable"
    else:
        row["verdict"] = "worse" if row["worse_error"] or row["worse_ness"] else "no worse"
    return row


def _shown(results: Path) -> str:
    """The results folder as recorded: relative to the repository when inside it (no machine's paths)."""
    root = FLOORS.parent.parent
    try:
        return str(results.resolve().relative_to(root))
    except ValueError:
        return str(results)


def main(results: Path, label: str | None) -> list[dict]:
    rows = []
    for (system, size, model), floor in load_floors().items():
        path = results / system / size / "metrics" / model / "direct.parquet"
        row = {"system": system, "size": size, "model": model, "table": str(path)}
        if not path.exists():
            rows.append({**row, "verdict": "missing"})
            continue
        rows.append({**row, **compare(pd.read_parquet(path), floor, relative=system == "ising")})
    print_table([{k: v for k, v in r.items() if k != "table"} for r in rows])
    params = {"results": _shown(results), "git": git_revision(), "n_sigma": N_SIGMA,
              "ness_factor": NESS_FACTOR}  # fmt: skip
    if label:
        params["label"] = label
    record_run("baselines", params, rows, notes=f"floors: {FLOORS.name}")
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, nargs="?", default=Path("results"), help="the run's results folder")
    ap.add_argument("--label", default=None, help="a name for the run (e.g. 'laptop run')")
    args = ap.parse_args()
    if not args.results.is_dir():
        raise SystemExit(f"results folder {args.results}: not a directory (run `make run` first)")
    main(args.results, args.label)
