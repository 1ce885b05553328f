"""Wang–Landau: wall time to a final ln f and the accuracy reached, against Kaufman's exact f, u, c.

Cases (each row: size, schedule, layout, ln f reached, moves, wall time, max relative error of f
and c and max absolute error of u over T = 1.5..3.5 step 0.1):

* 8x8, the paper's schedule (halving, flatness 0.8, check every 10^4 moves) to ln f = 1e-8;
* 8x8, the recommended accurate setting (1/t schedule, 2 walkers, ln f = 2e-7), and its
  extrapolation to 1e-8 (1/t moves are fixed by the schedule: n_levels/ln f per walker);
* 16x16, replica-exchange WL (4 windows, overlap 0.75, 1 walker each, 2 threads) with the
  halving schedule to ln f = 1e-8 (or, with --l16-lnf, to a coarser ln f plus a fitted
  extrapolation, labelled as such), and with the 1/t schedule to 1e-6 (and 1e-7 with --long);
* 20x20, REWL halving to 1e-8 (same layout).

Usage: ``python benchmarks/bench_wang_landau.py [--quick] [--l16-lnf 1e-6] [--no-20] [--long]``; a run of
``benchmarks/results/wang_landau.json`` per command line (its options are the run's parameters).
Numbers on a shared 2-core machine depend on what else runs: the load average is recorded with
the results.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import print_table, record_run  # noqa: E402

from lattherm.reference.exact import ising_kaufman  # noqa: E402
from lattherm.reference.wang_landau import wang_landau  # noqa: E402

T_GRID = np.round(np.arange(1.5, 3.5 + 1e-9, 0.1), 2)


def accuracy(res) -> dict:
    ex = ising_kaufman(res.L, T_GRID)
    th = res.thermo(T_GRID)
    return dict(
        max_rel_f=float(np.abs(th["f"] / ex["f"] - 1).max()),
        max_rel_c=float(np.abs(th["c"] / ex["c"] - 1).max()),
        max_abs_u=float(np.abs(th["u"] - ex["u"]).max()),
    )


def run_case(label: str, L: int, **kw) -> tuple[dict, object]:
    load0 = os.getloadavg()[0]
    res = wang_landau(L, **kw)
    row = dict(
        case=label,
        size=res.size,
        schedule=res.settings["schedule"],
        windows=res.settings["n_windows"],
        walkers=res.settings["walkers_per_window"],
        ln_f_final=res.settings["ln_f_final"],
        moves=res.moves,
        wall_s=res.wall_time,
        moves_per_s=res.moves / res.wall_time,
        **accuracy(res),
        seed=kw["seed"],
        load_avg_1min=round(0.5 * (load0 + os.getloadavg()[0]), 2),
        extrapolated=False,
    )
    return row, res


def extrapolate_halving(res, ln_f_target: float) -> dict:
    """Moves and time to ``ln_f_target`` from the per-stage moves of the last stages.

    With the halving schedule the moves of a stage grow roughly geometrically at small ln f
    (the histogram must get flat against ever smaller corrections); fit ``log(moves)`` against
    the stage index over the last stages of the slowest window and sum the fitted stages.
    """
    by_window: dict[int, list[dict]] = {}
    for s in res.stages:
        by_window.setdefault(s["window"], []).append(s)
    n_target = int(np.floor(np.log2(1.0 / ln_f_target))) + 1
    extra_moves = 0.0
    for stages in by_window.values():
        k = np.array([s["stage"] for s in stages[-6:]], dtype=float)
        mv = np.array([max(s["moves"], 1) for s in stages[-6:]], dtype=float)
        a, b = np.polyfit(k, np.log(mv), 1)
        todo = np.arange(k[-1] + 1, n_target)
        extra_moves += float(np.exp(a * todo + b).sum())
    rate = res.moves / res.wall_time
    return dict(
        extra_moves=extra_moves,
        moves=res.moves + extra_moves,
        wall_s=res.wall_time + extra_moves / rate,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="coarser 16x16 run (smoke test of the script)")
    ap.add_argument("--l16-lnf", type=float, default=1e-8, help="final ln f of the 16x16 REWL run")
    ap.add_argument("--accurate-lnf", type=float, default=2e-7, help="final ln f of the 8x8 1/t run")
    ap.add_argument("--no-20", action="store_true", help="skip the 20x20 REWL run")
    ap.add_argument("--long", action="store_true", help="add 16x16 REWL 1/t to ln f = 1e-7 (minutes)")
    args = ap.parse_args()
    rows = []
    wang_landau(4, ln_f_final=1e-2, seed=0)  # compile (numba cache) outside the timings
    wang_landau(6, ln_f_final=1e-2, n_windows=2, seed=0)

    row, _ = run_case("8x8 paper schedule (halving)", 8, ln_f_final=1e-8, seed=1)
    rows.append(row)
    row, _ = run_case(
        "8x8 recommended (1/t, 2 walkers)",
        8,
        ln_f_final=args.accurate_lnf,
        schedule="1/t",
        walkers_per_window=2,
        seed=1,
    )
    rows.append(row)
    # 1/t moves are fixed by the schedule: n_levels / ln_f per walker (+ the short halving phase)
    scale = args.accurate_lnf / 1e-8
    rows.append(
        {
            **row,
            "case": "8x8 1/t, 2 walkers, EXTRAPOLATED to 1e-8 (moves x ln_f ratio, same rate)",
            "ln_f_final": 1e-8,
            "moves": row["moves"] * scale,
            "wall_s": row["wall_s"] * scale,
            "max_rel_f": float("nan"),
            "max_rel_c": float("nan"),
            "max_abs_u": float("nan"),
            "extrapolated": True,
        }
    )
    l16 = 1e-4 if args.quick else args.l16_lnf
    rewl = dict(n_windows=4, walkers_per_window=1, overlap=0.75, seed=1)
    row, res16 = run_case("16x16 REWL halving", 16, ln_f_final=l16, **rewl)
    rows.append(row)
    if l16 > 1e-8:
        ex = extrapolate_halving(res16, 1e-8)
        rows.append(
            {
                **row,
                "case": "16x16 REWL halving, EXTRAPOLATED to 1e-8",
                "ln_f_final": 1e-8,
                "moves": ex["moves"],
                "wall_s": ex["wall_s"],
                "max_rel_f": float("nan"),
                "max_rel_c": float("nan"),
                "max_abs_u": float("nan"),
                "extrapolated": True,
            }
        )
    if not args.quick:
        row, _ = run_case("16x16 REWL 1/t", 16, ln_f_final=1e-6, schedule="1/t", **rewl)
        rows.append(row)
        if args.long:
            row, _ = run_case("16x16 REWL 1/t", 16, ln_f_final=1e-7, schedule="1/t", **rewl)
            rows.append(row)
        if not args.no_20:
            row, _ = run_case("20x20 REWL halving", 20, ln_f_final=1e-8, **rewl)
            rows.append(row)
    print_table(rows)
    notes = (
        "Shared 2-core machine, other engineers' jobs running at the same time (see load_avg_1min; "
        "numba threads = 2). Accuracy: max over T = 1.5..3.5 (step 0.1) against Kaufman's exact "
        "finite-torus f, u, c. ln g symmetrised (g(E) = g(-E), even L). Halving schedule = the "
        "paper's (flatness 0.8, check every 1e4 moves): its error saturates, so ln f = 1e-8 buys "
        "no accuracy; "
        "the 1/t schedule (Belardinelli-Pereyra) is what meets the 8x8 targets. Rows marked "
        "extrapolated=True are computed, not run (8x8 1/t: moves scale exactly as 1/ln_f, time "
        "at the measured rate; 16x16 halving with --l16-lnf: fit of the last stages' moves)."
    )
    record_run("wang_landau", vars(args), rows, notes=notes)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.1f} s")
