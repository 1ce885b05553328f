"""Spin-glass references where nothing is exact, measured: the numba pair-coupling Metropolis
against the generic torch update, and thermodynamic integration over β against exact values.

1. Throughput (spin-flip attempts per second, side by side in one run, best of ``REPEATS``): the
   ``pair`` update of :func:`lattherm.reference.mcmc.run_metropolis` and the generic
   ``random-site`` one (what a glass used before), one thread each, on an RRG of 64 sites and an
   EA 10x10 instance, 6 temperatures × 64 chains, replica exchange on.
2. Accuracy and cost: :func:`lattherm.reference.integration.beta_integration` with the laptop
   config's settings (``reference.beta_integration``) on instances with exact references: three
   24-site RRGs (enumeration) and EA 10x10-s1 (row transfer matrix), T 0.5–3 at h = 0. Per instance:
   max |Δf/f| and |z| against the exact values, the largest claimed error ``f_err/|f|``, every row
   converged or not, wall time.

Recorded in ``benchmarks/results/glass.json`` with every setting and the numba thread count.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
numba.set_num_threads(1)

from _harness import print_table, record_run  # noqa: E402

from lattherm.config import load_config, read_config_file  # noqa: E402
from lattherm.reference import exact_table  # noqa: E402
from lattherm.reference.integration import beta_integration  # noqa: E402
from lattherm.reference.mcmc import run_metropolis  # noqa: E402
from lattherm.systems import make_system  # noqa: E402

T_GRID = [0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
REPEATS = 3
SPEED = {"n_chains": 64, "n_samples": 10, "burn_in_sweeps": 0, "thin_sweeps": 2, "replica_exchange": True}
INSTANCES = [("rrg", "n24-d3-s1"), ("rrg", "n24-d3-s2"), ("rrg", "n24-d3-s3"), ("ea", "10x10-s1")]


def throughput(system, update: str) -> float:
    """Best attempts/s of ``REPEATS`` runs (a first short run compiles the kernel)."""
    run_metropolis(system, T_GRID, 0.0, n_chains=8, n_samples=1, burn_in_sweeps=0, thin_sweeps=1, seed=0,
                   update=update, keep_states=False)  # fmt: skip
    best = 0.0
    for r in range(REPEATS):
        t0 = time.perf_counter()
        run_metropolis(system, T_GRID, 0.0, seed=r, update=update, keep_states=False, **SPEED)
        sweeps = SPEED["burn_in_sweeps"] + SPEED["n_samples"] * SPEED["thin_sweeps"]
        best = max(best, len(T_GRID) * SPEED["n_chains"] * sweeps * system.n_sites / (time.perf_counter() - t0))
    return best


def main() -> None:
    settings = load_config(read_config_file("../config/config.yaml"))["reference"]["beta_integration"]
    speed = []
    for name, size in (("rrg", "n64-d3-s1"), ("ea", "10x10-s1")):
        system = make_system(name, size)
        pair, generic = throughput(system, "pair"), throughput(system, "random-site")
        speed.append({"system": name, "size": size, "pair_attempts_per_s": pair,
                      "random_site_attempts_per_s": generic, "ratio": pair / generic})  # fmt: skip
    print_table(speed)
    accuracy = []
    for name, size in INSTANCES:
        system = make_system(name, size)
        exact = exact_table(name, size, T_GRID, [0.0])
        t0 = time.perf_counter()
        tab = beta_integration(system, T_GRID, 0.0, seed=7, **settings)
        wall = time.perf_counter() - t0
        d = tab["f"].to_numpy() - exact["f"].to_numpy()
        accuracy.append({
            "system": name, "size": size, "max_rel_err": float(np.max(np.abs(d / exact["f"].to_numpy()))),
            "max_abs_z": float(np.max(np.abs(d / tab["f_err"].to_numpy()))),
            "max_claimed_rel_err": float(np.max(tab["f_err"] / tab["f"].abs())),
            "all_converged": bool(tab["converged"].all()), "wall_s": wall,
            "spin_flips": int(tab["spin_flips"].iloc[0]), "exact_method": str(exact["method"].iloc[0]),
            "rows": tab[["T", "f", "f_err", "converged"]].assign(f_exact=exact["f"].to_numpy()).to_dict("records"),
        })  # fmt: skip
    print_table([{k: v for k, v in r.items() if k != "rows"} for r in accuracy])
    record_run("glass", {"T": T_GRID, "speed": SPEED, "repeats": REPEATS, "beta_integration": settings,
                         "instances": INSTANCES, "numba_threads": numba.get_num_threads()},
               {"speed": speed, "accuracy": accuracy},
               notes="one thread; beta_integration at the laptop config's settings, seed 7")  # fmt: skip


if __name__ == "__main__":
    main()
