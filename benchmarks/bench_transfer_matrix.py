"""Seconds per (T, h) point of the exact Ising transfer matrix (momentum blocks), one thread.

For L = 10, 12, 14 the row-orbit structure is built once (timed apart) and a few (T, h) points
are timed one by one; the accuracy column is the deviation from Kaufman's closed form at h = 0.
Recorded in ``benchmarks/results/transfer_matrix.json`` (parameters: the timed points per L).
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from _harness import print_table, record_run  # noqa: E402

from lattherm.reference.exact import T_C, ising_kaufman, ising_transfer_matrix  # noqa: E402
from lattherm.reference.transfer_matrix import _row_structure  # noqa: E402

POINTS = {
    10: [(T_C, 0.0), (1.5, 0.1), (4.0, -0.5)],
    12: [(T_C, 0.0), (1.5, 0.1), (4.0, -0.5)],
    14: [(T_C, 0.0), (1.5, 0.1)],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(POINTS), choices=list(POINTS), help="these L only")
    args = ap.parse_args()
    points_by_L = {L: POINTS[L] for L in args.sizes}
    rows = []
    for L, points in points_by_L.items():
        t0 = time.perf_counter()
        struct = _row_structure(L)
        t_struct = time.perf_counter() - t0
        n_blocks = len(struct.valid)
        block = max(len(v) for v in struct.valid)
        for T, h in points:
            t0 = time.perf_counter()
            res = ising_transfer_matrix(L, T, h)
            dt = time.perf_counter() - t0
            dev = None
            if h == 0:
                k = ising_kaufman(L, T)
                dev = float(max(abs(res[q] - k[q]) for q in ("f", "u", "c")))
            rows.append(
                {
                    "L": L,
                    "T": float(T),
                    "h": float(h),
                    "seconds": dt,
                    "setup_s": t_struct,
                    "blocks": n_blocks,
                    "max_block": block,
                    "f": float(res["f"]),
                    "c": float(res["c"]),
                    "max_dev_kaufman": dev,
                }
            )
            print_table(rows[-1:])
    print()
    print_table(rows)
    per_L = {L: float(np.median([r["seconds"] for r in rows if r["L"] == L])) for L in points_by_L}
    record_run(
        "transfer_matrix",
        {"points": {str(L): [[float(T), float(h)] for T, h in points] for L, points in points_by_L.items()}},
        rows,
        notes=(
            "ising_transfer_matrix per (T, h) point, single thread (torch + BLAS), momentum blocks "
            f"k = 0..L/2; median seconds per point {per_L}; setup_s = row-orbit structure, cached "
            "per L. max_dev_kaufman = max |TM - Kaufman| over f, u, c at h = 0. Shared 2-core "
            "machine: other jobs may inflate timings."
        ),
    )


if __name__ == "__main__":
    main()
