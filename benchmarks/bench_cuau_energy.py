"""CuAu cluster-expansion energy evaluations per second on 4x4x8 (128 sites).

Side by side, in one run:
- torch, float64 counts, batches of 4096 random configurations (and single configurations);
- torch, float32 counts (exact, the GPU path), batches of 4096;
- torch ``delta_energy`` (single-site flips), batches of 4096;
- CLEASE's own calculator (``Clease``; C++ updater): ``get_potential_energy`` after setting the
  symbols of a new random configuration, a few hundred configurations one by one;
- CLEASE's calculator after a single-site change (its MCMC use).

Every torch figure is the best of a few repeats (the machine is shared), at 1 and 2 CPU threads
(``--threads``); CUDA is timed too when available. Energies are checked against each other
before timing. Run:
``python benchmarks/bench_cuau_energy.py [--size 4x4x8] [--batch 4096] [--n-clease 300]``; a run of
``benchmarks/results/cuau_energy.json`` per command line.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from _harness import print_table, record_run

from lattherm.systems.cuau import CuAuSystem, clease_settings, load_published_eci


def _best_rate(fn, n_items: int, repeats: int, sync=lambda: None) -> float:
    fn()  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return n_items / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4x4x8")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-clease", type=int, default=300)
    ap.add_argument("--threads", default="1,2", help="torch CPU thread counts to time")
    args = ap.parse_args()

    t0 = time.perf_counter()
    sys64 = CuAuSystem(args.size)
    t_setup = time.perf_counter() - t0
    sys32 = CuAuSystem(args.size, dtype=torch.float32)
    n = sys64.n_sites
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(args.batch, n, generator=g) < 0.5).to(torch.uint8)
    sites = torch.randint(0, n, (args.batch,), generator=g)
    e64 = sys64.energy(x)
    assert torch.equal(sys32.energy(x), e64)

    rows = []

    def row(method, device, batch, rate, threads=1, **extra):
        rows.append(
            {
                "method": method,
                "device": device,
                "threads": threads,
                "batch": batch,
                "evals_per_s": rate,
                **extra,
            }
        )

    default_threads = torch.get_num_threads()
    runs = [("cpu", int(t)) for t in args.threads.split(",")]
    runs += [("cuda", default_threads)] if torch.cuda.is_available() else []
    for dev, threads in runs:
        torch.set_num_threads(threads)
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        xd, sd = x.to(dev), sites.to(dev)
        for label, system in (("torch float64", sys64), ("torch float32", sys32)):
            rate = _best_rate(lambda s=system, x=xd: s.energy(x), args.batch, args.repeats, sync)
            row(label, dev, args.batch, rate, threads)
        rate = _best_rate(
            lambda x=xd, s=sd: sys64.delta_energy(x, s), args.batch, args.repeats, sync
        )
        row("torch delta_energy float64", dev, args.batch, rate, threads)
        x1 = xd[:1]
        rate = _best_rate(lambda x=x1: [sys64.energy(x) for _ in range(50)], 50, args.repeats, sync)
        row("torch float64", dev, 1, rate, threads)
    torch.set_num_threads(default_threads)

    # CLEASE's own calculator, one configuration at a time
    eci = load_published_eci()
    with tempfile.TemporaryDirectory(prefix="bench-cuau-") as tmp:
        t0 = time.perf_counter()
        shape = tuple(int(v) for v in args.size.split("x"))
        settings = clease_settings(shape, os.path.join(tmp, "ce.db"))
        atoms = settings.atoms.copy()
        from clease.calculator import Clease

        atoms.calc = Clease(settings, eci=eci)
        atoms.get_potential_energy()
        t_clease_setup = time.perf_counter() - t0
        m = min(args.n_clease, args.batch)
        symbols = [["Au" if v else "Cu" for v in xi] for xi in x[:m].tolist()]
        e_clease = np.empty(m)
        t0 = time.perf_counter()
        for i in range(m):
            atoms.symbols = symbols[i]
            e_clease[i] = atoms.get_potential_energy()
        rate = m / (time.perf_counter() - t0)
        max_diff = float(np.abs(e_clease - e64[:m].numpy()).max())
        row("CLEASE calculator (new random config)", "cpu", 1, rate, max_abs_diff_eV=max_diff)
        # single-site change: the calculator's incremental update (its MCMC use)
        flip = sites[:m].tolist()
        t0 = time.perf_counter()
        for i in range(m):
            j = flip[i]
            atoms.symbols[j] = "Cu" if atoms.symbols[j] == "Au" else "Au"
            atoms.get_potential_energy()
        rate = m / (time.perf_counter() - t0)
        row("CLEASE calculator (single-site change)", "cpu", 1, rate)

    print_table(rows)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    notes = (
        f"CuAu CE {args.size} ({n} sites); torch: best of {args.repeats}, random 50% configs; "
        f"float32 path bit-identical to float64 (checked); CLEASE energies agree to "
        f"{rows[-2]['max_abs_diff_eV']:.1e} eV. CuAuSystem construction {t_setup:.2f} s "
        f"(CLEASE export included), CLEASE calculator setup {t_clease_setup:.2f} s. "
        f"Shared machine, load average at the end {load}."
    )
    print(notes)
    record_run("cuau_energy", vars(args), rows, notes)


if __name__ == "__main__":
    main()
