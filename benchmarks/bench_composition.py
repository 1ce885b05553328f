"""CuAu free energies per composition and the phase diagram from a trained sampler's semi-grand
samples (``lattherm.composition``) against a reference composition table: exact enumeration
(cells of at most 24 sites) or metadynamics (``--reference results/cuau/4x4x4/reference/metadynamics.parquet``).

The checkpoint's model draws ``--samples`` configurations at every (T, μ) of the laptop grid
(T 200..1200 K step 100, μ −0.12..0.12 eV step 0.03), from ``--n-orders`` orders per sample (any-order
models); the composition table and its phase diagram are compared with the reference's: f_x
(max |Δ| in meV/atom and |z| with both error bars over the rows converged on both sides, per
temperature), and the two-phase intervals (same tolerance, the reference's on its own table).
One run per checkpoint and settings in ``benchmarks/results/composition.json``.

    python benchmarks/bench_composition.py /tmp/cuau444/checkpoint.pt --size 4x4x4 \\
        --reference results/cuau/4x4x4/reference/metadynamics.parquet --samples 4000 --label "30-minute run"
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from _harness import checkpoint_parser, portable_path, print_table, record_run

from lattherm.composition import composition_table, sampler_phase_diagram
from lattherm.evaluation import sample_grid
from lattherm.reference.cuau_exact import cuau_exact_composition_table
from lattherm.reference.phase_diagram import two_phase_regions
from lattherm.systems import make_system

T_GRID = np.arange(200.0, 1200.1, 100.0)
MU_GRID = np.round(np.arange(-0.12, 0.1201, 0.03), 10)
TOL = 2e-5  # the laptop config's reference.phase_diagram.tol


def _intervals(regions: pd.DataFrame) -> dict[float, list[tuple[float, float]]]:
    return {float(T): sorted(zip(g["x_lo"], g["x_hi"], strict=True)) for T, g in regions.groupby("T")}


def main(path: str, size: str, reference: str | None, n: int, n_orders: int, label: str | None, seed: int) -> None:
    torch.set_num_threads(1)
    system = make_system("cuau", size)
    t0 = time.perf_counter()
    samples = sample_grid(path, system, T_GRID, MU_GRID, n, seed=seed, batch_size=20000, n_orders=n_orders,
                          device="cpu")  # fmt: skip
    sample_s = time.perf_counter() - t0
    ref = pd.read_parquet(reference) if reference else cuau_exact_composition_table(size, T_GRID)
    ref = ref[np.isin(ref["T"], T_GRID)]
    if "converged" in ref:
        ref = ref.assign(f_x=ref["f_x"].where(ref["converged"].astype(bool)))
    table = composition_table(samples, system, size=size, reference=ref)
    err = table["f_x_err"] ** 2 + (table["f_x_ref_err"] ** 2 if "f_x_ref_err" in table else 0.0)
    table["z"] = table["delta_f_x"] / np.sqrt(err)
    both = table[table["converged"] & table["f_x_ref"].notna()]
    rows = []
    got = _intervals(sampler_phase_diagram(table, tol=TOL))
    want = _intervals(two_phase_regions(ref, tol=TOL, err="f_x_err" if "f_x_err" in ref else None))
    for T, g in both.groupby("T"):
        rows.append({"T": float(T), "rows": len(g), "of": int((table["T"] == T).sum()),
                     "max_abs_delta_meV": float(g["delta_f_x"].abs().max() * 1e3),
                     "max_abs_z": float(g["z"].abs().max()),
                     "intervals": got.get(float(T), []), "reference_intervals": want.get(float(T), []),
                     "same_intervals": got.get(float(T), []) == want.get(float(T), [])})  # fmt: skip
    print_table([{k: v for k, v in r.items() if not isinstance(v, list)} for r in rows])
    params = {"checkpoint": portable_path(path),
              "size": size, "reference": reference or "exact enumeration", "samples": n,
              "n_orders": n_orders, "seed": seed, "tol": TOL, **({"label": label} if label else {})}  # fmt: skip
    summary = {"max_abs_delta_meV": float(both["delta_f_x"].abs().max() * 1e3),
               "max_abs_z": float(both["z"].abs().max()), "rows_compared": len(both),
               "rows_converged": int(table["converged"].sum()), "rows": len(table), "sample_s": sample_s,
               "temperatures_with_the_reference_intervals": int(sum(r["same_intervals"] for r in rows))}  # fmt: skip
    print(summary)
    record_run("composition", params, {"summary": summary, "per_T": rows},
               notes="f_x from the semi-grand samples over the μ grid against the reference's converged rows; "
                     "z with both error bars; intervals by the same hull construction and tolerance")  # fmt: skip


if __name__ == "__main__":
    ap = checkpoint_parser(__doc__, samples=4000)
    ap.add_argument("--size", default="2x2x4")
    ap.add_argument("--reference", default=None, help="a composition table (default: exact enumeration)")
    ap.add_argument("--n-orders", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for p in args.checkpoints:
        main(p, args.size, args.reference, args.samples, args.n_orders, args.label, args.seed)
