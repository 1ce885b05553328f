"""Metropolis throughput on the 10x10 Ising torus, 4096 chains: spin-flip attempts per second.

Side by side in one run: a naive vectorised torch checkerboard (float32 spins, ``torch.roll``
neighbour sums, ``exp`` per site, ``torch.where``) and the numba fast path of
:mod:`lattherm.reference.mcmc` (kernel alone, and ``run_metropolis`` end to end with the paper's
250 sweeps between samples), each with 1 and 2 threads; plus the numba kernel's block width.
Best of ``REPEATS`` timings (the machine is shared: others may load the CPU; the load average
is recorded with the results).
"""

from __future__ import annotations

import os
import time

import numba
import numpy as np
import torch
from _harness import print_table, record

from lattherm.reference import _mcmc_kernels as K
from lattherm.reference import mcmc
from lattherm.systems import IsingSystem

L, CHAINS, T, H = 10, 4096, 2.269, 0.0
REPEATS = 3
E2E_SAMPLES, THIN = 4, 250  # run_metropolis end to end: the paper's thinning


def best_of(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@torch.no_grad()
def torch_checkerboard(n_sweeps: int, gen: torch.Generator) -> None:
    """The naive vectorised baseline: one float32 tensor ``(B, L, L)`` of spins ±1."""
    s = torch.randint(0, 2, (CHAINS, L, L), generator=gen).float() * 2 - 1
    ij = torch.arange(L)
    colour = ((ij[:, None] + ij[None, :]) % 2).bool()
    beta = 1.0 / T
    for _ in range(n_sweeps):
        for mask in (~colour, colour):
            nb = s.roll(1, 1) + s.roll(-1, 1) + s.roll(1, 2) + s.roll(-1, 2)
            dE = 2.0 * s * (nb + H)
            accept = torch.rand(s.shape, generator=gen) < torch.exp(-beta * dE)
            s = torch.where(mask & accept, -s, s)


def numba_kernel(n_sweeps: int, W: int) -> callable:
    system = IsingSystem(L)
    N = system.n_sites
    n_blocks = -(-CHAINS // W)
    x = np.zeros((1, n_blocks, N, W), dtype=np.uint8)
    st0 = np.zeros((1, n_blocks, W), dtype=np.uint64)
    st1 = np.zeros_like(st0)
    K.seed_streams(np.uint64(1), st0, st1)
    K.random_fill(x, st0, st1)
    thr = mcmc.ising_thresholds(np.array([T]), np.array([H]), 1.0)
    nb = np.ascontiguousarray(system.lattice.neighbours().numpy())
    order = mcmc._checkerboard_order(system)
    K.checkerboard_sweeps(x, thr, st0, st1, nb, order, 1)  # compile / load from cache
    return lambda: K.checkerboard_sweeps(x, thr, st0, st1, nb, order, n_sweeps)


def main() -> None:
    load0 = os.getloadavg()
    N = L * L
    rows = []
    old_torch, old_numba = torch.get_num_threads(), numba.get_num_threads()
    system = IsingSystem(L)
    mcmc.run_metropolis(
        system, T, H, n_chains=8, n_samples=1, seed=0, burn_in_sweeps=1, thin_sweeps=1
    )  # warm-up
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            gen = torch.Generator().manual_seed(0)
            n_torch = 20
            dt = best_of(lambda: torch_checkerboard(n_torch, gen))  # noqa: B023
            rows.append(
                {
                    "impl": "torch checkerboard (naive)",
                    "threads": threads,
                    "block_W": "-",
                    "sweeps": n_torch,
                    "seconds": dt,
                    "flips_per_s": CHAINS * N * n_torch / dt,
                }
            )
            for W in (64, 128, 256):
                n_nb = 300
                fn = numba_kernel(n_nb, W)
                dt = best_of(fn)
                rows.append(
                    {
                        "impl": "numba kernel",
                        "threads": threads,
                        "block_W": W,
                        "sweeps": n_nb,
                        "seconds": dt,
                        "flips_per_s": CHAINS * N * n_nb / dt,
                    }
                )
            dt = best_of(
                lambda: mcmc.run_metropolis(
                    system,
                    T,
                    H,
                    n_chains=CHAINS,
                    n_samples=E2E_SAMPLES,
                    seed=1,
                    burn_in_sweeps=0,
                    thin_sweeps=THIN,
                    keep_states=True,
                )
            )
            rows.append(
                {
                    "impl": "run_metropolis (thin 250, states kept)",
                    "threads": threads,
                    "block_W": mcmc._chain_blocks(CHAINS)[1],
                    "sweeps": E2E_SAMPLES * THIN,
                    "seconds": dt,
                    "flips_per_s": CHAINS * N * E2E_SAMPLES * THIN / dt,
                }
            )
    finally:
        torch.set_num_threads(old_torch)
        numba.set_num_threads(old_numba)
    base = {r["threads"]: r["flips_per_s"] for r in rows if r["impl"].startswith("torch")}
    for r in rows:
        r["speedup_vs_torch"] = r["flips_per_s"] / base[r["threads"]]
    print_table(rows)
    load1 = os.getloadavg()
    notes = (
        f"10x10 Ising, {CHAINS} chains, T={T}, h={H}; attempts/s = chains*N*sweeps/seconds, "
        f"best of {REPEATS}. Shared 2-core machine: load average (1, 5, 15 min) "
        f"{tuple(round(v, 2) for v in load0)} at start, {tuple(round(v, 2) for v in load1)} at "
        "end; other engineers' jobs may depress the numbers, "
        "especially with 2 threads."
    )
    record("mcmc", rows, notes=notes)


if __name__ == "__main__":
    main()
