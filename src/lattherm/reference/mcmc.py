"""Batched Metropolis Monte Carlo in the semi-grand ensemble, for any :class:`System`.

Many independent chains at many conditions ``(T, field)`` run at once. A move flips one site
``i`` (``x_i → 1 − x_i``) and is accepted with probability

    min(1, exp(−β (ΔE_int − field · ΔΣs))),   ΔΣs = −2 s_i,   β = 1 / (k_B T),

which satisfies detailed balance for ``exp(−β (E_int − field · Σ s))`` (DESIGN §3).

Two updates, chosen by ``update=`` in :func:`run_metropolis`:

``"random-site"`` (generic, torch): each step picks a uniformly random site per chain and asks
    ``system.delta_energy``; a sweep is ``N`` steps. Works for every system (CuAu included).
``"checkerboard"`` (Ising fast path, numba): sites are visited colour by colour (even then odd
    ``r_0 + r_1``); acceptance thresholds for the 10 cases ``(x_i, #up neighbours)`` are
    precomputed per condition as integers ``floor(p · 2^64)`` and compared with 64-bit
    xoroshiro128+ draws, one stream per chain seeded from ``(seed, condition, chain)``. States
    are ``uint8``, updated in place. Bit-reproducible for a seed, independent of the number
    of numba threads, and a chain's trajectory does not depend on how many chains run.
    Ties: with a fixed visiting order and ``p = 1`` at ``ΔE_red = 0``, Metropolis is not
    ergodic. At ``h = 0`` on an even torus the period-2 stripe states (every site has as many
    up as down neighbours) flip colour by colour deterministically into each other forever:
    a closed set (on 2x2 at T = 2.5 a quarter of the chains ended in it). The checkerboard update
    therefore accepts exact ties with probability 1/2, which keeps detailed balance (both directions
    1/2) and leaves every deterministic move strictly energy-lowering, so no deterministic
    cycle remains. All other moves use the Metropolis probability.
``"cluster-expansion"`` (CuAu fast path, numba): random-site semi-grand Metropolis on the exact
    per-site flip tables of :class:`CuAuSystem` (int8 spins, integer cluster counts tracked per
    chain, so sampled energies are exact; per-chain xoroshiro128+ streams as above, bit-reproducible
    and thread-independent). See :mod:`lattherm.reference._ce_kernels`.
``"pair"`` (pair couplings on any graph, numba): random-site Metropolis for systems with
    ``pair_couplings()`` (spin glasses, the chain), float energies recomputed from the states where
    needed; per-chain streams as above. See :mod:`lattherm.reference._pair_kernels`.
Cluster moves (``cluster_updates=k``, checkerboard update only): after each condition's sweep,
every chain makes ``k`` Wolff moves (a cluster grown through the satisfied bonds with probability
``1 − exp(−2β|J|)`` per bond, flipped with the field's Metropolis ratio ``min(1, exp(−2βh Σ_C s))``;
:func:`lattherm.reference._mcmc_kernels._wolff`). Near T_c, where local moves slow down as a
power of L, and below it at ``h = 0``, where they keep the sign of the magnetisation, a cluster move
reaches an independent configuration in a few sweeps. A sweep then costs up to about twice a
local one. ``0`` (the default) leaves every draw as without them.

``"auto"`` picks ``"checkerboard"`` for :class:`IsingSystem`, ``"cluster-expansion"`` for
:class:`CuAuSystem`, ``"pair"`` for the other systems of pair couplings, ``"random-site"``
otherwise.

Samples are taken after ``burn_in_sweeps`` and then every ``thin_sweeps`` sweeps (the paper
uses 250). The numba updates also measure ``E_int`` and ``Σs`` after *every* sweep of the
sampling period and keep, per sample, their means over the ``thin_sweeps`` sweeps that end with it
(:attr:`MCMCResult.averages`): the estimates use every sweep, the samples stay for tables,
histograms and the ladder estimate.

Replica exchange (``replica_exchange=True``, every update; the workflow's default): the
conditions that share a field form a ladder in increasing T. After every ``exchange_sweeps``
sweeps, neighbours ``(k, k + 1)`` of the ladder (even pairs, then odd pairs, alternating) try to
swap the configurations of chain slot ``j`` with probability ``min(1, exp((β_k − β_{k+1}) (H_k −
H_{k+1})))``, ``H = E_int − field · Σs`` (the field is common to the ladder), which keeps the
product of the ladder's Boltzmann distributions invariant. In the numba kernels the draws come
from a stream per (ladder, slot) (seed xor ``EXCHANGE_SALT``) and one task runs per (ladder, block
of slots), so results stay bit-reproducible and independent of the thread count, and slot ``j``
does not depend on how many slots run (the generic update draws from its one generator). A
configuration stuck in an ordered phase at low T (CuAu at 200-300 K, Ising sectors below T_c)
climbs the ladder, melts and comes back: without it the low-T CuAu rows
kept the composition of their starting basins (the 8σ errors of the first version). Slots stay
independent of each other, so the spread between slots is still an honest error.

Composition windows (``spin_window``, the cluster-expansion update): every chain of a condition
keeps ``Σs`` within the condition's ``[lo, hi]`` (a flip that would leave it is rejected): the
semi-grand distribution restricted to those compositions, e.g. two neighbouring ones, whose
histogram gives ``Z_(n+1)/Z_n`` and whose states at one composition are canonical draws. Near a
first-order transition in μ the unrestricted chains keep the composition of their starting phase
(CuAu↔CuAu3 on 128 sites); windowed ones cannot leave it. With windows, the ladders of the
exchange are the conditions that share a window (by increasing T, any μ: the swap is accepted
with ``min(1, exp((β_k − β_(k+1)) (E_k − E_(k+1)) − (β_k μ_k − β_(k+1) μ_(k+1)) (Σs_k −
Σs_(k+1))))``, the same rule).

Starts: ``start="mixed"`` (the workflow's default) starts slot ``j`` random, all ``x = 0`` or all
``x = 1`` for ``j mod 3 = 0, 1, 2`` (:attr:`MCMCResult.start_group`), so that forgetting the
start can be tested.

Estimates and errors (:func:`mcmc_summary`):

* the *sweeps* estimate averages the condition's sweep averages (the samples for the generic
  update). Every chain is cut into ``blocks_per_chain`` contiguous blocks; the ``n_batches =
  n_chains × blocks_per_chain`` batch means are treated as independent and errors are
  delete-one-batch jackknife errors. With the default, one block per chain whenever there are >=
  32 chains, the error is the spread between independent chains: honest whatever the
  autocorrelation, *if* the chains have forgotten their start. With fewer chains each chain is
  blocked, which is honest only when a block is much longer than the autocorrelation time (a
  warning says when it is not);
* the *ladder* estimate (replica-exchange runs, :func:`ladder_estimates`) is MBAR over the
  samples of every temperature of the ladder, with jackknife errors over groups of slots. Where a
  condition's own fluctuations are rare (CuAu at 200 K and μ = ±0.12 eV: nearly every sample is
  the pure end; at 300 K, μ = −0.12 eV, 40 % of Var(E) comes from an L1_2 state of probability
  1e-6 that the sweeps of 64 chains never visit), the higher temperatures, where those states are
  common, weigh them in.

Convergence (:func:`mcmc_summary`, column ``converged``): an error bar is claimed (finite) only
when the chains have mixed in the series it rests on (``E_int`` for ``u, c``, ``Σs`` for ``m``,
``|Σs|`` for ``abs_m``): split-R̂ <= ``RHAT_MAX`` or not significantly above 1 (F-test at
``P_MIN``: short runs give noisy R̂), no start family differs from the others and no chain half
from the other (t-tests at ``P_MIN``; where the series only has a few rare excursions, the
start families alone); the estimate's error rests on enough independent
fluctuations (error ESS >= ``MIN_ERROR_ESS``: the kurtosis of the jackknife values; with k rare
events it is about k, and the z-scores of such errors have heavy tails); and, where both
estimates are claimable, they agree (t-test at ``P_MIN`` on their jackknifed difference).
``converged`` rows have all of ``u, c, m, abs_m`` claimed; the others say why in ``diagnosis`` and
(by default) carry NaN for every unclaimed error: at ``h = 0`` below T_c without replica
exchange, for instance, ``m`` is not claimed (chains keep their sector) while ``u, c, abs_m`` are.
``P_MIN = 1e-5``: a grid of ~100 conditions runs ~3000 of these tests, so a few % of grids flag
one error falsely; a real failure (a start family in another basin, an unseen state) gives p far
below.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lattherm.io import pack_states
from lattherm.systems.base import System, bond_table
from lattherm.systems.cuau import CuAuSystem
from lattherm.systems.ising import IsingSystem

__all__ = [
    "MCMCResult",
    "run_metropolis",
    "mcmc_summary",
    "mcmc_table",
    "mcmc_histograms",
    "mcmc_samples_table",
    "integrated_autocorr_time",
    "split_rhat",
    "ladder_estimates",
    "convergence_report",
]

UPDATES = ("auto", "checkerboard", "random-site", "cluster-expansion", "pair")
#: widest block of chains handled by one numba task (vector loop length)
_MAX_BLOCK = 128
#: below this many chains, :func:`mcmc_summary` blocks inside chains by default
_MIN_BATCHES = 32
#: xor-ed into the seed for the replica-exchange streams (one per ladder and chain)
EXCHANGE_SALT = np.uint64(0x3C6EF372FE94F82B)
#: defaults of the convergence tests of :func:`mcmc_summary` (module docstring, "Convergence")
RHAT_MAX = 1.1
P_MIN = 1e-5
MIN_ERROR_ESS = 5.0
#: refuse to keep more sampled states than this (bytes, one per site)
_MAX_STATE_BYTES = 4 * 2**30


@dataclass(frozen=True, eq=False)
class MCMCResult:
    """Samples of a batched Metropolis run.

    Attributes:
        system, size, n_sites, k_B: the system's name, size token, N and Boltzmann constant.
        T, field: ``(n_cond,)`` conditions.
        energy: ``(n_cond, n_chains, n_samples)`` float64 ``E_int`` of every sample.
        spin_sum: ``(n_cond, n_chains, n_samples)`` float64 ``Σ s`` of every sample.
        states: ``(n_cond, n_chains, n_samples, N)`` uint8 configurations, or ``None`` when
            the run was asked not to keep them.
        seed, update, burn_in_sweeps, thin_sweeps: how the samples were made.
        averages: ``(n_cond, n_chains, n_samples, 4)`` float64 or ``None``: for sample ``t``, the
            means over the ``thin_sweeps`` sweeps that end with it (a measurement after every
            sweep) of ``E_int − energy_shift``, its square, ``Σ s`` and ``|Σ s|`` (the numba
            updates record them; :func:`mcmc_summary` estimates from them when present).
        energy_shift: ``(n_cond,)`` the shift of the energies in ``averages`` (the energy of the
            all-``x = 0`` state), or ``None``.
        start: ``"random"``, ``"up"``, ``"down"``, ``"mixed"`` or ``"array"``.
        start_group: ``(n_chains,)`` int8 start family of every chain (0 random, 1 all ``x = 0``,
            2 all ``x = 1``; all 0 for an array start): :func:`mcmc_summary` compares them.
        replica_exchange, exchange_sweeps: whether (and every how many sweeps) the conditions of
            one field exchanged configurations (see the module docstring).
        exchange: ``(n_cond, n_chains, 2)`` int64 exchange attempts and acceptances of every chain
            with the next-higher temperature of its ladder, or ``None``.
        cluster_updates: Wolff moves per chain after every sweep (see the module docstring).
        spin_window: ``(n_cond, 2)`` int64 bounds on ``Σs`` of every chain, or ``None``.
    """

    system: str
    size: str
    n_sites: int
    k_B: float
    T: np.ndarray
    field: np.ndarray
    energy: np.ndarray
    spin_sum: np.ndarray
    states: np.ndarray | None
    seed: int
    update: str
    burn_in_sweeps: int
    thin_sweeps: int
    averages: np.ndarray | None = None
    energy_shift: np.ndarray | None = None
    start: str = "random"
    start_group: np.ndarray | None = None
    replica_exchange: bool = False
    exchange_sweeps: int = 0
    exchange: np.ndarray | None = None
    cluster_updates: int = 0
    spin_window: np.ndarray | None = None

    @property
    def n_cond(self) -> int:
        return self.energy.shape[0]

    @property
    def n_chains(self) -> int:
        return self.energy.shape[1]

    @property
    def n_samples(self) -> int:
        """Samples per chain."""
        return self.energy.shape[2]

    @property
    def beta(self) -> np.ndarray:
        return 1.0 / (self.k_B * self.T)

    @property
    def exchange_acceptance(self) -> np.ndarray:
        """``(n_cond,)`` acceptance of the exchanges of every condition with the next-higher
        temperature of its ladder (NaN where none was attempted)."""
        if self.exchange is None:
            return np.full(self.n_cond, np.nan)
        att, acc = self.exchange.sum(axis=1).T
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(att > 0, acc / np.maximum(att, 1), np.nan)


# ----------------------------------------------------------------------------- sampling
def run_metropolis(
    system: System,
    T: np.ndarray | float,
    field: np.ndarray | float = 0.0,
    *,
    n_chains: int,
    n_samples: int,
    seed: int,
    burn_in_sweeps: int = 1000,
    thin_sweeps: int = 250,
    start: str | np.ndarray = "random",
    update: str = "auto",
    keep_states: bool = True,
    progress: bool = False,
    replica_exchange: bool = False,
    exchange_sweeps: int = 1,
    cluster_updates: int = 0,
    spin_window: np.ndarray | None = None,
) -> MCMCResult:
    """Run ``n_chains`` independent Metropolis chains at every condition of ``broadcast(T, field)``.

    Args:
        system: any :class:`System` with two states per site.
        T, field: temperatures (> 0, in the units of ``system.k_B``) and fields (Ising ``h``,
            CuAu ``μ`` in eV); broadcast against each other and flattened to ``n_cond``.
        n_chains: independent chains per condition.
        n_samples: samples per chain, taken every ``thin_sweeps`` sweeps after burn-in.
        seed: seed of every random number (same seed and arguments ⇒ same arrays on CPU).
        burn_in_sweeps: sweeps (``N`` attempted flips per chain each) discarded at the start.
        thin_sweeps: sweeps between samples (>= 1).
        start: ``"random"`` (independent uniform sites), ``"up"`` (all ``x = 1``), ``"down"``
            (all ``x = 0``), ``"mixed"`` (chain ``j`` starts random, all ``x = 0`` or all
            ``x = 1`` for ``j mod 3 = 0, 1, 2``: the families whose agreement
            :func:`mcmc_summary` tests), or an array of 0/1 states ``(n_chains, N)`` or
            ``(n_cond, n_chains, N)``.
        update: ``"auto"``, ``"checkerboard"`` (Ising only), ``"cluster-expansion"`` (CuAu only),
            ``"pair"`` (systems of pair couplings) or ``"random-site"``.
        keep_states: keep every sampled configuration (``n_cond·n_chains·n_samples·N`` bytes;
            more than 4 GiB is refused).
        progress: log progress over sweeps (:class:`lattherm.runlog.Progress`).
        replica_exchange: parallel tempering: the conditions that share a field form a ladder
            in increasing T, and after every ``exchange_sweeps`` sweeps neighbours of the ladder
            try to swap the configurations of chain ``j`` (see the module docstring). Chain ``j``
            of a condition is then no longer one Markov chain at that condition, but the chains
            of different ``j`` stay independent.
        exchange_sweeps: sweeps between two exchange rounds (>= 1).
        cluster_updates: Wolff cluster moves per chain after every sweep (>= 0; the checkerboard
            update only; see the module docstring).
        spin_window: ``(2,)`` or ``(n_cond, 2)`` integers ``lo <= hi``: bounds on ``Σs`` of every
            chain (the cluster-expansion update only; the start an array of states inside them;
            with ``replica_exchange`` the ladders are the conditions that share a window).
    """
    T_b, h_b = np.broadcast_arrays(
        np.asarray(T, dtype=np.float64), np.asarray(field, dtype=np.float64)
    )
    T_arr, h_arr = T_b.ravel().copy(), h_b.ravel().copy()
    if T_arr.size == 0 or np.any(~(T_arr > 0)) or np.any(~np.isfinite(T_arr)):
        raise ValueError(f"temperatures must be finite and > 0, got {T_arr}")
    if np.any(~np.isfinite(h_arr)):
        raise ValueError(f"fields must be finite, got {h_arr}")
    for name, val, lo in (
        ("n_chains", n_chains, 1),
        ("n_samples", n_samples, 1),
        ("thin_sweeps", thin_sweeps, 1),
        ("burn_in_sweeps", burn_in_sweeps, 0),
        ("exchange_sweeps", exchange_sweeps, 1),
        ("cluster_updates", cluster_updates, 0),
    ):
        if int(val) != val or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
    if int(seed) != seed or seed < 0 or seed >= 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if system.n_states != 2:
        raise ValueError(
            f"Metropolis flips need two states per site, {system.name} has {system.n_states}"
        )
    if update not in UPDATES:
        raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
    if update == "auto":
        if isinstance(system, IsingSystem):
            update = "checkerboard"
        elif isinstance(system, CuAuSystem):
            update = "cluster-expansion"
        elif hasattr(system, "pair_couplings"):
            update = "pair"
        else:
            update = "random-site"
    if update == "checkerboard" and not isinstance(system, IsingSystem):
        raise ValueError(
            "the checkerboard update is for IsingSystem only, "
            f"got {type(system).__name__}; use 'random-site'"
        )
    if update == "cluster-expansion" and not isinstance(system, CuAuSystem):
        raise ValueError(
            "the cluster-expansion update is for CuAuSystem only, "
            f"got {type(system).__name__}; use 'random-site'"
        )
    if cluster_updates and update != "checkerboard":
        raise ValueError(f"cluster_updates={cluster_updates} needs the checkerboard update (Ising), "
                         f"the run uses {update!r}")  # fmt: skip
    n_cond, N = T_arr.size, system.n_sites
    if keep_states and n_cond * n_chains * n_samples * N > _MAX_STATE_BYTES:
        raise ValueError(
            f"keeping every state needs {n_cond * n_chains * n_samples * N / 2**30:.1f} GiB "
            f"(n_cond·n_chains·n_samples·N bytes, limit {_MAX_STATE_BYTES / 2**30:.0f} GiB); "
            "pass keep_states=False (energies and spin sums are always kept) or sample less"
        )
    x0 = _start_states(start, n_cond, int(n_chains), N)
    window = None if spin_window is None else _check_window(spin_window, x0, update, n_cond, N)
    ladders, lad_len = _ladders(T_arr, h_arr if window is None else window @ [2 * N + 1, 1], bool(replica_exchange))
    args = dict(
        n_chains=int(n_chains),
        n_samples=int(n_samples),
        seed=int(seed),
        burn=int(burn_in_sweeps),
        thin=int(thin_sweeps),
        x0=x0,
        keep_states=keep_states,
        progress=progress,
    )
    if update == "pair" and not hasattr(system, "pair_couplings"):
        raise ValueError(f"the pair update needs a system of pair couplings, got {type(system).__name__}; "
                         "use 'random-site'")  # fmt: skip
    if update == "cluster-expansion":
        from lattherm.reference._ce_kernels import run_chains as run
    else:
        run = {"checkerboard": _run_checkerboard, "pair": _run_pair}.get(update, _run_random_site)
    every = int(exchange_sweeps) if replica_exchange else 0
    if update == "checkerboard":
        args["cluster_updates"] = int(cluster_updates)
    if window is not None:
        args["window"] = window
    out = run(system, T_arr, h_arr, ladders=ladders, lad_len=lad_len, exchange_every=every, **args)
    mixed = isinstance(start, str) and start == "mixed"
    group = _mixed_groups(int(n_chains)) if mixed else np.zeros(int(n_chains), dtype=np.int8)
    return MCMCResult(
        system=system.name,
        size=system.size,
        n_sites=N,
        k_B=float(system.k_B),
        T=T_arr,
        field=h_arr,
        energy=out["energy"],
        spin_sum=out["spin_sum"],
        states=out["states"],
        seed=int(seed),
        update=update,
        burn_in_sweeps=int(burn_in_sweeps),
        thin_sweeps=int(thin_sweeps),
        averages=out.get("averages"),
        energy_shift=out.get("energy_shift"),
        start=start if isinstance(start, str) else "array",
        start_group=group,
        replica_exchange=bool(replica_exchange),
        exchange_sweeps=int(exchange_sweeps) if replica_exchange else 0,
        exchange=out.get("exchange") if replica_exchange else None,
        cluster_updates=int(cluster_updates),
        spin_window=window,
    )


def _check_window(spin_window, x0, update: str, n_cond: int, N: int) -> np.ndarray:
    """``spin_window`` as ``(n_cond, 2)`` int64, or ValueError: integer bounds ``−N <= lo <= hi
    <= N``, the cluster-expansion update, a start array whose every state lies inside."""
    w = np.asarray(spin_window)
    if w.shape == (2,):
        w = np.tile(w, (n_cond, 1))
    if w.shape != (n_cond, 2) or not np.all(np.isfinite(w)) or np.any(w != np.rint(w)):
        raise ValueError(f"spin_window must be integers of shape (2,) or ({n_cond}, 2), got {spin_window!r}")
    w = w.astype(np.int64)
    if np.any(w[:, 0] > w[:, 1]) or np.any(w < -N) or np.any(w > N):
        raise ValueError(f"spin_window needs -{N} <= lo <= hi <= {N} (Σs of {N} sites), got {w.tolist()}")
    if update != "cluster-expansion":
        raise ValueError(f"spin_window needs the cluster-expansion update, the run uses {update!r}")
    if isinstance(x0, str):
        raise ValueError(f"spin_window needs a start array of states inside the windows, got start={x0!r}")
    s = 2 * np.asarray(x0, dtype=np.int64).sum(axis=-1) - N  # (n_cond, n_chains)
    out = (s < w[:, :1]) | (s > w[:, 1:])
    if out.any():
        c, j = np.argwhere(out)[0]
        raise ValueError(f"start state {j} of condition {c} has Σs {s[c, j]} outside its spin_window "
                         f"{w[c].tolist()} ({int(out.sum())} states outside)")  # fmt: skip
    return w


def _ladders(T: np.ndarray, h: np.ndarray, exchange: bool) -> tuple[np.ndarray, np.ndarray]:
    """Replica-exchange ladders: ``(n_ladders, max_len)`` int64 condition indices (padded with
    −1) and ``(n_ladders,)`` lengths. With ``exchange``, one ladder per distinct ``h`` (the field,
    or a key of the window) (in order of
    first appearance) holding its conditions by increasing T (ties in input order); without,
    one ladder per condition."""
    if not exchange:
        return np.arange(T.size, dtype=np.int64)[:, None], np.ones(T.size, dtype=np.int64)
    fields, first = np.unique(h, return_index=True)
    groups = []
    for f in fields[np.argsort(first)]:
        idx = np.flatnonzero(h == f)
        groups.append(idx[np.argsort(T[idx], kind="stable")])
    lad = np.full((len(groups), max(len(g) for g in groups)), -1, dtype=np.int64)
    for k, g in enumerate(groups):
        lad[k, : len(g)] = g
    return lad, np.array([len(g) for g in groups], dtype=np.int64)


def _mixed_groups(n: int) -> np.ndarray:
    """Start family of chains ``0..n−1`` under ``start="mixed"``: ``j mod 3`` (0 random,
    1 all ``x = 0``, 2 all ``x = 1``)."""
    return (np.arange(n) % 3).astype(np.int8)


def apply_mixed_starts(x: np.ndarray, n_blocks: int, W: int) -> None:
    """Overwrite the random start states ``x`` (a ``(n_cond, n_blocks, W, N)`` view, chain
    ``j = b·W + w``) of the chains of family 1 with all 0 and of family 2 with all 1, in place."""
    g = _mixed_groups(n_blocks * W).reshape(n_blocks, W)
    x[:, g == 1] = 0
    x[:, g == 2] = 1


def _start_states(start, n_cond: int, n_chains: int, N: int) -> np.ndarray | str:
    """``"random"`` and ``"mixed"`` stay strings (each update draws it from its own RNG); otherwise a
    ``(n_cond, n_chains, N)`` uint8 array."""
    if isinstance(start, str):
        if start in ("random", "mixed"):
            return start
        if start in ("up", "down"):
            return np.full((n_cond, n_chains, N), 1 if start == "up" else 0, dtype=np.uint8)
        raise ValueError(
            f"start must be 'random', 'mixed', 'up', 'down' or an array of states, got {start!r}"
        )
    x = np.asarray(start)
    if x.shape == (n_chains, N):
        x = np.broadcast_to(x, (n_cond, n_chains, N))
    if x.shape != (n_cond, n_chains, N):
        raise ValueError(
            f"start states must have shape ({n_chains}, {N}) or ({n_cond}, {n_chains}, {N}), "
            f"got {x.shape}"
        )
    if not np.isin(x, (0, 1)).all():
        raise ValueError("start states must be 0/1")
    return np.ascontiguousarray(x, dtype=np.uint8)


def _progress(total: int, enabled: bool, desc: str):
    from lattherm.runlog import Progress

    return Progress(total, desc, "sweeps", enabled=enabled)


# --- Ising fast path -----------------------------------------------------------------
def ising_thresholds(T: np.ndarray, field: np.ndarray, J: float, k_B: float = 1.0) -> np.ndarray:
    """``(n_cond, 10)`` uint64 acceptance thresholds of the checkerboard kernel.

    Entry ``5·x_i + n_up`` is ``min(floor(p · 2^64), 2^64 − 1)`` with the Metropolis
    probability ``p = min(1, exp(−β(2 J s_i n + 2 h s_i)))`` of flipping site i with state
    ``x_i`` (spin ``s_i = 2 x_i − 1``) and ``n_up`` of 4 neighbours up (``n = 2 n_up − 4``).
    A flip is accepted iff a uniform 64-bit draw is below the threshold. Exact ties
    (``ΔE_red = 0``) get ``p = 1/2`` instead of 1 (see the module docstring).
    """
    T = np.atleast_1d(np.asarray(T, dtype=np.float64))
    h = np.atleast_1d(np.asarray(field, dtype=np.float64))
    xi = np.repeat(np.arange(2), 5)
    n_up = np.tile(np.arange(5), 2)
    s, n = 2 * xi - 1, 2 * n_up - 4
    beta = 1.0 / (k_B * T[:, None])
    log_p = -beta * (2.0 * J * s * n + 2.0 * h[:, None] * s)  # −β(ΔE_int − h ΔΣs), ΔΣs = −2 s_i
    p = np.exp(np.minimum(log_p, 0.0))
    p[log_p == 0.0] = 0.5  # ties: see the module docstring (the period-2 stripe trap)
    return _thresholds(p)


def wolff_thresholds(beta: np.ndarray, J: float) -> np.ndarray:
    """``(n_cond,)`` uint64 thresholds of the Wolff bond probability ``p_add = 1 − exp(−2 β |J|)``
    (:func:`lattherm.reference._mcmc_kernels._wolff`)."""
    return _thresholds(-np.expm1(-2.0 * np.asarray(beta, dtype=np.float64) * abs(float(J))))


def _thresholds(p: np.ndarray) -> np.ndarray:
    """``min(floor(p · 2^64), 2^64 − 1)`` as uint64, elementwise: a draw below it has probability p."""
    p = np.asarray(p, dtype=np.float64)
    top = 2**64 - 1
    return np.array([min(int(math.ldexp(float(q), 64)), top) for q in p.ravel()], dtype=np.uint64).reshape(p.shape)


def _chain_blocks(n_chains: int) -> tuple[int, int]:
    """``(n_blocks, W)``: ``n_blocks · W >= n_chains``, ``W <= _MAX_BLOCK``, W a multiple of 8
    when >= 8 (the padding chains run and are discarded)."""
    n_blocks = -(-n_chains // _MAX_BLOCK)
    W = -(-n_chains // n_blocks)
    if W >= 8:
        W = -(-W // 8) * 8
    return n_blocks, W


def _kernel_chains(seed: int, x0, n_cond: int, n_chains: int, N: int, n_ladders: int) -> tuple[np.ndarray, ...]:
    """The numba kernels' chains: ``x[c, b, i, w]`` uint8 in blocks (:func:`_chain_blocks`), started
    as ``x0`` asks, with the acceptance streams ``st0, st1`` of ``(seed, condition, chain)`` and the
    exchange streams ``ex0, ex1`` of ``(seed ^ EXCHANGE_SALT, ladder, chain)``."""
    from lattherm.reference import _mcmc_kernels as K

    n_blocks, W = _chain_blocks(n_chains)
    x = np.zeros((n_cond, n_blocks, N, W), dtype=np.uint8)
    st0 = np.zeros((n_cond, n_blocks, W), dtype=np.uint64)
    st1 = np.zeros_like(st0)
    K.seed_streams(np.uint64(seed), st0, st1)
    ex0 = np.zeros((n_ladders, n_blocks, W), dtype=np.uint64)
    ex1 = np.zeros_like(ex0)
    K.seed_streams(np.uint64(seed) ^ EXCHANGE_SALT, ex0, ex1)  # (ladder l, chain j)
    if isinstance(x0, str):
        K.random_fill(x, st0, st1)
        if x0 == "mixed":
            apply_mixed_starts(x.transpose(0, 1, 3, 2), n_blocks, W)
    else:
        xp = np.zeros((n_cond, n_blocks * W, N), dtype=np.uint8)
        xp[:, :n_chains] = x0
        x[...] = xp.reshape(n_cond, n_blocks, W, N).transpose(0, 1, 3, 2)
    return x, st0, st1, ex0, ex1


def _checkerboard_order(system: IsingSystem) -> np.ndarray:
    parity = system.lattice.coords.sum(axis=1) % 2
    return np.concatenate([np.flatnonzero(parity == 0), np.flatnonzero(parity == 1)]).astype(
        np.int64
    )


def _run_checkerboard(
    system: IsingSystem, T, h, *, n_chains, n_samples, seed, burn, thin, x0, keep_states, progress,
    ladders, lad_len, exchange_every, cluster_updates=0,
):  # fmt: skip
    from lattherm.reference import _mcmc_kernels as K

    n_cond, N = T.size, system.n_sites
    nb = np.ascontiguousarray(system.lattice.neighbours().numpy(), dtype=np.int64)
    if nb.shape != (N, 4):
        raise ValueError(
            f"the checkerboard kernel needs 4 neighbours per site, got a table of shape {nb.shape}"
        )
    bonds = np.ascontiguousarray(system.lattice.bonds().numpy(), dtype=np.int64)
    order = _checkerboard_order(system)
    thr = ising_thresholds(T, h, system.J, system.k_B)
    x, st0, st1, ex0, ex1 = _kernel_chains(seed, x0, n_cond, n_chains, N, len(ladders))
    n_blocks, W = x.shape[1], x.shape[3]
    M = n_blocks * W

    bond = np.empty((n_cond, n_blocks, W, n_samples), dtype=np.int64)
    up = np.empty_like(bond)
    st_out = np.empty(
        (n_cond, n_blocks, W, n_samples, N) if keep_states else (0, 0, 0, 0, 0), dtype=np.uint8
    )
    psum = np.zeros((n_cond, n_blocks, W, 4))
    avg = np.empty((n_cond, n_blocks, W, n_samples, 4))
    ex_stats = np.zeros((n_cond, n_blocks, W, 2), dtype=np.int64)
    bad = np.zeros((n_cond, n_blocks), dtype=np.int64)
    beta = np.ascontiguousarray(1.0 / (system.k_B * T), dtype=np.float64)
    field = np.ascontiguousarray(h, dtype=np.float64)
    wolff_thr = wolff_thresholds(beta, system.J)
    e_shift = np.full(n_cond, -float(system.J) * len(bonds))  # E_int of the all-x=0 state
    total = burn + n_samples * thin
    # one parallel region per chunk of sweeps; chunks only serve the progress log
    chunk = _progress_chunk(total) if progress else total
    with _progress(total, progress, f"metropolis {system.size}") as bar:
        for s0 in range(0, total, chunk):
            s1 = min(total, s0 + chunk)
            K.checkerboard_run(
                x, thr, st0, st1, nb, order, bonds, float(system.J), field, beta,
                ladders, lad_len, ex0, ex1, exchange_every, e_shift,
                s0, s1, burn, thin, bond, up, st_out, psum, avg, ex_stats, bad,
                wolff_thr, int(cluster_updates),
            )  # fmt: skip
            bar.update(s1 - s0)
    if bad.any():
        raise RuntimeError("tracked Ising bond sums differ from a recount: a kernel bug")
    energy = -system.J * bond.reshape(n_cond, M, n_samples)[:, :n_chains].astype(np.float64)
    spin = (2 * up.reshape(n_cond, M, n_samples)[:, :n_chains] - N).astype(np.float64)
    return {
        "energy": energy,
        "spin_sum": spin,
        "states": st_out.reshape(n_cond, M, n_samples, N)[:, :n_chains] if keep_states else None,
        "averages": avg.reshape(n_cond, M, n_samples, 4)[:, :n_chains],
        "energy_shift": e_shift,
        "exchange": ex_stats.reshape(n_cond, M, 2)[:, :n_chains],
    }


def _run_pair(
    system: System, T, h, *, n_chains, n_samples, seed, burn, thin, x0, keep_states, progress,
    ladders, lad_len, exchange_every,
):  # fmt: skip
    """The pair-coupling update (:mod:`lattherm.reference._pair_kernels`), from the system's
    ``pair_couplings()``."""
    from lattherm.reference import _mcmc_kernels as K
    from lattherm.reference._pair_kernels import SITE_SALT, pair_run

    n_cond, N = T.size, system.n_sites
    b_t, J_t = system.pair_couplings()
    bonds = np.ascontiguousarray(b_t.numpy(), dtype=np.int64)
    Jb = np.ascontiguousarray(np.broadcast_to(J_t.numpy(), (len(bonds),)), dtype=np.float64)
    nb, jb, deg = (np.ascontiguousarray(t.numpy()) for t in bond_table(b_t, J_t, N))
    x, st0, st1, ex0, ex1 = _kernel_chains(seed, x0, n_cond, n_chains, N, len(ladders))
    n_blocks, W = x.shape[1], x.shape[3]
    M = n_blocks * W
    site0 = np.zeros((n_cond, n_blocks, 1), dtype=np.uint64)
    site1 = np.zeros_like(site0)
    K.seed_streams(np.uint64(seed) ^ SITE_SALT, site0, site1)  # (condition, block)
    e_out = np.empty((n_cond, n_blocks, W, n_samples))
    m_out = np.empty_like(e_out)
    st_out = np.empty((n_cond, n_blocks, W, n_samples, N) if keep_states else (0, 0, 0, 0, 0), dtype=np.uint8)
    psum = np.zeros((n_cond, n_blocks, W, 4))
    avg = np.empty((n_cond, n_blocks, W, n_samples, 4))
    ex_stats = np.zeros((n_cond, n_blocks, W, 2), dtype=np.int64)
    beta = np.ascontiguousarray(1.0 / (system.k_B * T), dtype=np.float64)
    field = np.ascontiguousarray(h, dtype=np.float64)
    total = burn + n_samples * thin
    chunk = _progress_chunk(total) if progress else total
    with _progress(total, progress, f"metropolis {system.size}") as bar:
        for s0 in range(0, total, chunk):
            s1 = min(total, s0 + chunk)
            pair_run(
                x, nb, jb, deg, bonds, Jb, field, beta, st0, st1, site0, site1,
                ladders, lad_len, ex0, ex1, exchange_every,
                s0, s1, burn, thin, e_out, m_out, st_out, psum, avg, ex_stats,
            )  # fmt: skip
            bar.update(s1 - s0)
    return {
        "energy": e_out.reshape(n_cond, M, n_samples)[:, :n_chains],
        "spin_sum": m_out.reshape(n_cond, M, n_samples)[:, :n_chains],
        "states": st_out.reshape(n_cond, M, n_samples, N)[:, :n_chains] if keep_states else None,
        "averages": avg.reshape(n_cond, M, n_samples, 4)[:, :n_chains],
        "energy_shift": np.zeros(n_cond),
        "exchange": ex_stats.reshape(n_cond, M, 2)[:, :n_chains],
    }


def _progress_chunk(total: int) -> int:
    """Sweeps per kernel call when progress is logged (results do not depend on it)."""
    return max(100, -(-total // 50))


# --- generic path --------------------------------------------------------------------
@torch.no_grad()
def _run_random_site(
    system: System, T, h, *, n_chains, n_samples, seed, burn, thin, x0, keep_states, progress,
    ladders, lad_len, exchange_every,
):  # fmt: skip
    """The generic update. With ``exchange_every > 0``, after every ``exchange_every`` sweeps the
    pairs ``(k, k + 1)`` of every ladder with ``k ≡ done // exchange_every (mod 2)`` swap chain
    ``j``'s states with probability ``min(1, exp((β_k − β_{k+1}) (H_k − H_{k+1})))`` (one uniform
    draw of the run's generator per chain and pair, ladder by ladder)."""
    n_cond, N = T.size, system.n_sites
    B = n_cond * n_chains
    gen = torch.Generator().manual_seed(seed)
    beta_c = 1.0 / (system.k_B * T)
    beta = torch.from_numpy(beta_c).repeat_interleave(n_chains)  # (B,)
    hb = torch.from_numpy(h).repeat_interleave(n_chains)  # (B,)
    if isinstance(x0, str):
        x = torch.randint(0, 2, (B, N), generator=gen, dtype=torch.long)
        if x0 == "mixed":
            apply_mixed_starts(x.numpy().reshape(n_cond, 1, n_chains, N), 1, n_chains)
    else:
        x = torch.from_numpy(x0.reshape(B, N).astype(np.int64))
    ex_stats = np.zeros((n_cond, n_chains, 2), dtype=np.int64)

    def sweep() -> None:
        for _ in range(N):
            sites = torch.randint(0, N, (B,), generator=gen)
            dE = system.delta_energy(x, sites).to(torch.float64)
            xi = torch.gather(x, 1, sites[:, None])[:, 0]
            s = (2 * xi - 1).to(torch.float64)
            log_p = -beta * (dE + 2.0 * hb * s)  # −β(ΔE_int − field ΔΣs), ΔΣs = −2 s_i
            accept = torch.rand(B, generator=gen, dtype=torch.float64) < torch.exp(log_p)
            x.scatter_(1, sites[:, None], (xi ^ accept.long())[:, None])

    def exchange(done: int) -> None:
        H = (system.energy(x).to(torch.float64) - hb * system.spin_sum(x).to(torch.float64)).numpy()
        H = H.reshape(n_cond, n_chains)
        xv = x.view(n_cond, n_chains, N)
        for lad, n_l in zip(ladders, lad_len, strict=True):
            for k in range((done // exchange_every) % 2, n_l - 1, 2):
                c1, c2 = int(lad[k]), int(lad[k + 1])
                d = (beta_c[c1] - beta_c[c2]) * (H[c1] - H[c2])
                u = torch.rand(n_chains, generator=gen, dtype=torch.float64).numpy()
                ok = (d >= 0.0) | (u < np.exp(np.minimum(d, 0.0)))
                ex_stats[c1, :, 0] += 1
                ex_stats[c1, :, 1] += ok
                sel = torch.from_numpy(np.flatnonzero(ok))
                a1, a2 = xv[c1, sel].clone(), xv[c2, sel].clone()
                xv[c1, sel], xv[c2, sel] = a2, a1

    energy = np.empty((n_cond, n_chains, n_samples))
    spin = np.empty((n_cond, n_chains, n_samples))
    states = np.empty((n_cond, n_chains, n_samples, N), dtype=np.uint8) if keep_states else None
    with _progress(burn + n_samples * thin, progress, f"metropolis {system.size}") as bar:
        for done in range(1, burn + n_samples * thin + 1):
            sweep()
            if exchange_every > 0 and done % exchange_every == 0:
                exchange(done)
            if done > burn and (done - burn) % thin == 0:
                t = (done - burn) // thin - 1
                energy[:, :, t] = system.energy(x).to(torch.float64).numpy().reshape(n_cond, n_chains)
                spin[:, :, t] = system.spin_sum(x).to(torch.float64).numpy().reshape(n_cond, n_chains)
                if states is not None:
                    states[:, :, t, :] = x.numpy().reshape(n_cond, n_chains, N)
            bar.update(1)
    return {"energy": energy, "spin_sum": spin, "states": states, "exchange": ex_stats}


# ----------------------------------------------------------------------------- analysis
def integrated_autocorr_time(a: np.ndarray, c: float = 5.0) -> np.ndarray:
    """Integrated autocorrelation time of ``a (..., n_chains, n)``, in units of samples.

    ``τ = 1 + 2 Σ_{t=1}^{W} ρ(t)`` (so independent samples give τ = 1 and ``n_eff = n / τ``),
    with ``ρ`` the autocorrelation averaged over chains around the *grand* mean (a chain stuck in
    one sector therefore shows a long τ, as it should), and Sokal's window: the smallest W with
    ``W >= c · τ(W)``; if no such W exists, ``W = n − 1`` (τ is then a lower bound). ``nan``
    for a constant series or a single sample.
    """
    a = np.asarray(a)
    n = a.shape[-1]
    lead = a.shape[:-2]
    if n < 2:
        return np.full(lead, np.nan)
    flat = a.reshape(-1, *a.shape[-2:])
    acf = np.empty((flat.shape[0], n))
    for k, series in enumerate(flat):  # one condition at a time: bounded memory
        d = series - series.mean(dtype=np.float64)
        f = np.fft.rfft(d, n=2 * n, axis=-1)
        acf[k] = np.fft.irfft(f * np.conj(f), n=2 * n, axis=-1)[:, :n].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = acf / acf[:, :1]
    taus = 2.0 * np.cumsum(rho, axis=-1) - 1.0  # τ(W) for W = 0..n-1
    ok = np.arange(n) >= c * taus
    W = np.where(ok.any(axis=-1), ok.argmax(axis=-1), n - 1)
    return np.take_along_axis(taus, W[:, None], axis=-1)[:, 0].reshape(lead)


def _error_from_loo(loo: np.ndarray, constant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jackknife error and error ESS from leave-one-out values ``loo (n_cond, n_b)``.

    The error ESS is ``n_b / (κ − 1)`` with ``κ = n_b Σ δ⁴ / (Σ δ²)²`` the kurtosis of the
    leave-one-out deviations ``δ`` (at most ``n_b``): about how many independent fluctuations the
    error rests on (about ``n_b / 2`` for Gaussian batch means, ``k`` when ``k`` batches hold all
    the deviation, as with ``k`` rare events). NaN where ``constant`` (every batch identical: no
    error is measurable) or where all leave-one-out values agree.
    """
    n_b = loo.shape[1]
    if n_b < 2:
        nan = np.full(loo.shape[0], np.nan)
        return nan, nan
    d = loo - loo.mean(axis=1, keepdims=True)
    s2 = (d**2).sum(axis=1)
    err = np.sqrt((n_b - 1) / n_b * s2)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = n_b * (d**4).sum(axis=1) / s2**2
        ess = np.minimum(n_b / (kappa - 1.0), n_b)
    return err, np.where(constant | ~(s2 > 0), np.nan, ess)


def _jackknife(stat, sums: list[np.ndarray], ell: int) -> tuple[np.ndarray, ...]:
    """Estimate, leave-one-out values, delete-one-batch jackknife error and error ESS
    (:func:`_error_from_loo`) of ``stat(*means)``.

    ``sums``: ``(n_cond, n_batches)`` per-batch sums of each moment, batches of ``ell`` samples.
    """
    n_b = sums[0].shape[1]
    tot = [s.sum(axis=1, keepdims=True) for s in sums]
    full = stat(*[t / (n_b * ell) for t in tot])[:, 0]
    if n_b < 2:
        nan = np.full_like(full, np.nan)
        return full, np.full((full.size, n_b), np.nan), nan, nan
    loo = stat(
        *[(t - s) / ((n_b - 1) * ell) for t, s in zip(tot, sums, strict=True)]
    )  # (n_cond, n_b)
    constant = np.logical_and.reduce([np.ptp(s, axis=1) == 0 for s in sums])
    err, ess = _error_from_loo(loo, constant)
    return full, loo, err, ess


def split_rhat(a: np.ndarray) -> np.ndarray:
    """Split-R̂ (Gelman et al., *Bayesian Data Analysis*, 3rd ed., §11.4) of ``a (..., n_chains,
    n)``: every chain cut into its first and last ``n // 2`` samples, ``R̂ = sqrt(((h − 1)/h · W
    + B/h) / W)`` with ``W`` the mean within-half variance and ``B/h`` the variance of the half
    means. Near 1 when every chain samples the same distribution within its run; ``inf`` when the
    halves are constant but differ, NaN when everything is constant or ``n < 4``."""
    a = np.asarray(a, dtype=np.float64)
    h = a.shape[-1] // 2
    if h < 2:
        return np.full(a.shape[:-2], np.nan)
    x = np.concatenate([a[..., :h], a[..., a.shape[-1] - h :]], axis=-2)
    W = x.var(axis=-1, ddof=1).mean(axis=-1)
    B = h * x.mean(axis=-1).var(axis=-1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sqrt(((h - 1) / h * W + B / h) / W)
    return np.where(W > 0, r, np.where(B > 0, np.inf, np.nan))


def _rhat_pvalue(a: np.ndarray) -> np.ndarray:
    """p-value of the split-R̂ of ``a (..., n_chains, n)`` under "every half-chain holds
    independent draws of one distribution": the ratio of the between-half to the mean within-half
    variance, ``B/W`` (as in :func:`split_rhat`), against the F distribution with ``(2 n_chains −
    1, 2 n_chains (h − 1))`` degrees of freedom. Small when R̂ exceeds 1 by more than the noise of
    short or few chains. NaN where :func:`split_rhat` is NaN."""
    from scipy.special import fdtrc

    a = np.asarray(a, dtype=np.float64)
    h = a.shape[-1] // 2
    if h < 2:
        return np.full(a.shape[:-2], np.nan)
    x = np.concatenate([a[..., :h], a[..., a.shape[-1] - h :]], axis=-2)
    k = x.shape[-2]
    W = x.var(axis=-1, ddof=1).mean(axis=-1)
    B = h * x.mean(axis=-1).var(axis=-1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = B / W
    p = fdtrc(k - 1.0, k * (h - 1.0), np.where(np.isfinite(ratio), ratio, 0.0))
    return np.where(W > 0, p, np.where(B > 0, 0.0, np.nan))


def _t_pvalue(diff: np.ndarray, se: np.ndarray, dof: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Two-sided Student-t p-value of ``diff / se``; ``se`` is floored at ``1e-12 · scale`` (the
    size of the compared values), so that rounding of equal values does not count as a
    difference while a real difference between constant groups gives ``p = 0``."""
    from scipy.special import stdtr  # scipy comes with ase (a dependency)

    se = np.fmax(se, 1e-12 * np.abs(scale))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(se > 0, np.abs(diff) / np.where(se > 0, se, 1.0), np.where(diff == 0, 0.0, np.inf))
    return 2.0 * stdtr(np.maximum(dof, 1.0), -t)


def _drift_pvalue(y: np.ndarray) -> np.ndarray:
    """``y (n_cond, K, n)`` per-sample values: p-value of "the mean of the second half of every
    chain equals that of its first half" (paired over chains; NaN for ``n < 2`` or one chain)."""
    n_cond, K, n = y.shape
    h = n // 2
    if h < 1 or K < 2:
        return np.full(n_cond, np.nan)
    d = y[:, :, n - h :].mean(axis=2) - y[:, :, :h].mean(axis=2)
    scale = np.abs(y).max(axis=(1, 2))
    return _t_pvalue(d.mean(axis=1), d.std(axis=1, ddof=1) / np.sqrt(K), np.full(n_cond, K - 1.0), scale)


def _start_pvalue(y: np.ndarray, group: np.ndarray | None) -> np.ndarray:
    """``y (n_cond, K)`` chain means: smallest p-value (Welch t) of "start family g has the same
    mean as the other chains" over the families with >= 2 chains (NaN for fewer than 2)."""
    n_cond = y.shape[0]
    if group is None:
        return np.full(n_cond, np.nan)
    labels = [g for g in np.unique(group) if (group == g).sum() >= 2 and (group != g).sum() >= 2]
    if len(labels) < 2:
        return np.full(n_cond, np.nan)
    p = np.full(n_cond, np.inf)
    for g in labels:
        a, b = y[:, group == g], y[:, group != g]
        va, vb = a.var(axis=1, ddof=1) / a.shape[1], b.var(axis=1, ddof=1) / b.shape[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            dof = (va + vb) ** 2 / (va**2 / (a.shape[1] - 1) + vb**2 / (b.shape[1] - 1))
        dof = np.where(np.isfinite(dof), dof, min(a.shape[1], b.shape[1]) - 1.0)
        diff = a.mean(axis=1) - b.mean(axis=1)
        p = np.minimum(p, _t_pvalue(diff, np.sqrt(va + vb), dof, np.abs(y).max(axis=1)))
    return p


def _moments(result: MCMCResult) -> tuple[np.ndarray, ...]:
    """Per-sample ``(E − E_ref, (E − E_ref)², Σs, |Σs|)`` ``(n_cond, n_chains, n_samples)`` and
    ``E_ref (n_cond,)``: the sweep averages of the sample periods when the run recorded them,
    else the samples themselves (centred on their mean energy)."""
    if result.averages is not None:
        a = result.averages
        return a[..., 0], a[..., 1], a[..., 2], a[..., 3], np.asarray(result.energy_shift)
    E, M = result.energy, result.spin_sum
    E_ref = E.mean(axis=(1, 2))  # centring keeps the variance well conditioned
    dE = E - E_ref[:, None, None]
    return dE, dE**2, M, np.abs(M), E_ref


# --- the ladder estimate (MBAR over a replica-exchange ladder) ---------------------------
#: most slot groups of the ladder estimate's jackknife (and of its comparison with the sweeps)
LADDER_GROUPS = 32
#: the statistics of every condition
STATS = ("u", "c", "m", "abs_m")


def _slot_groups(n_chains: int) -> np.ndarray:
    """Contiguous groups of chain slots for the ladder jackknife: ``min(n_chains, 32)`` groups."""
    G = min(n_chains, LADDER_GROUPS)
    return (np.arange(n_chains) * G) // n_chains


def _mbar_newton(A: np.ndarray, counts: np.ndarray, mult: np.ndarray, f: np.ndarray,
                 max_iter: int = 100, tol: float = 1e-10) -> tuple[np.ndarray, ...]:  # fmt: skip
    """MBAR free energies by damped Newton steps on its convex objective.

    ``A (L, U)``: log Boltzmann factors ``−β_l H`` of every distinct sampled value in every state,
    ``mult (U,)`` how many samples took each value, ``counts (L,)`` samples drawn from each state,
    ``f (L,)`` a first guess. Returns ``f`` (``f[0] = 0``), the weights ``W (L, U)`` (``(W[k] *
    mult) @ a`` is ``⟨a⟩_k``) and ``s (U,)`` with ``Q = exp(f + A − s) <= 1`` (for
    :func:`_mbar_replicate`). Raises if it does not converge.
    """
    for _ in range(max_iter):
        X = f[:, None] + A
        s = X.max(axis=0)
        Q = np.exp(X - s)
        W, step, col = _mbar_step(Q, counts, mult)
        if np.max(np.abs(col - 1.0)) < tol:
            return f, W, s
        big = np.abs(step).max()
        f = f + (step * (2.0 / big) if big > 2.0 else step)
        f = f - f[0]
    raise RuntimeError("MBAR over a replica-exchange ladder did not converge")


def _mbar_step(Q: np.ndarray, counts: np.ndarray, mult: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weights ``W = Q / Σ_l N_l Q_l``, the Newton step on ``f`` (``step[0] = 0``) and the
    normalisations ``Σ_u mult_u W_ku`` (1 at the solution)."""
    W = Q / (counts @ Q)
    col = W @ mult
    NW = counts[:, None] * W
    hess = np.diag(counts * col) - (NW * mult) @ NW.T
    step = np.zeros(Q.shape[0])
    step[1:] = -np.linalg.solve(hess[1:, 1:], (counts * (col - 1.0))[1:])
    return W, step, col


def _mbar_replicate(Q: np.ndarray, counts: np.ndarray, mult: np.ndarray, steps: int = 2) -> np.ndarray:
    """Weights ``(L, U)`` of a jackknife replicate (sample multiplicities ``mult``, ``counts``
    samples per state; ``Q`` the full solution's ``exp(f + A − s)``): ``steps`` Newton steps from
    the full solution, then each state's weights normalised (``(W * mult).sum(1) = 1``)."""
    delta = np.zeros(Q.shape[0])
    for _ in range(steps):
        _, step, _ = _mbar_step(np.exp(delta)[:, None] * Q, counts, mult)
        delta = delta + step
    Qd = np.exp(delta)[:, None] * Q
    W = Qd / (counts @ Qd)
    return W / (W @ mult)[:, None]


def ladder_estimates(result: MCMCResult) -> dict[str, np.ndarray] | None:
    """The ladder estimate of a replica-exchange run: MBAR (Shirts & Chodera, J. Chem. Phys. 129,
    124105, 2008) over the samples of every condition of a ladder (one field), so that states that
    are rare at one temperature but common at another are weighed in from where they were seen.

    Returns ``None`` without replica exchange or with composition windows (their ladders mix
    μ); else, per statistic ``u, c, m, abs_m``, the
    estimate ``(n_cond,)`` and its leave-one-group-out values ``(n_cond, G)`` under ``"<q>"``
    and ``"<q>_loo"`` (groups of chain slots, :func:`_slot_groups`: chains of one slot are coupled
    through the exchanges, different slots are independent), NaN at conditions alone in their
    ladder or where MBAR failed (a warning says so); and ``"constant"`` ``(n_cond,)``, True where
    every sample of the ladder has the same ``E_int`` and ``Σs``. Samples with equal ``(E_int,
    Σs)`` have equal weights and are merged.
    """
    if not result.replica_exchange or result.spin_window is not None:
        return None
    ladders, lad_len = _ladders(result.T, result.field, True)
    n_cond, K, n = result.energy.shape
    N = result.n_sites
    grp = _slot_groups(K)
    G = int(grp.max()) + 1
    out = {q: np.full(n_cond, np.nan) for q in STATS}
    out.update({f"{q}_loo": np.full((n_cond, G), np.nan) for q in STATS})
    out["constant"] = np.zeros(n_cond, dtype=bool)
    for lad, Ll in zip(ladders, lad_len, strict=True):
        idx = lad[:Ll]
        if Ll < 2:
            continue
        beta = result.beta[idx]
        pairs = np.stack([result.energy[idx].reshape(-1), result.spin_sum[idx].reshape(-1)], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        U = len(uniq)
        g_of = np.broadcast_to(grp[None, :, None], (Ll, K, n)).reshape(-1)
        mult_g = np.bincount(g_of * U + inv.ravel(), minlength=G * U).reshape(G, U).astype(np.float64)
        mult = mult_g.sum(axis=0)
        E, M = uniq[:, 0], uniq[:, 1]
        E0 = float((mult @ E) / mult.sum())
        E = E - E0
        mu = result.field[idx[0]]
        H0 = float(mult @ (E - mu * M) / mult.sum())
        H = E - mu * M - H0  # centred: the Boltzmann factors stay representable
        A = -beta[:, None] * H[None, :]
        counts = np.full(Ll, float(K * n))
        Hk = (result.energy[idx] - E0 - mu * result.spin_sum[idx]).mean(axis=(1, 2)) - H0
        f0 = np.concatenate([[0.0], np.cumsum(np.diff(beta) * 0.5 * (Hk[1:] + Hk[:-1]))])
        values = (E, E**2, M, np.abs(M))

        def stats(Wm, beta=beta, E0=E0, values=values):
            e1, e2, m1, am = (Wm @ v for v in values)
            return ((e1 + E0) / N, beta**2 * (e2 - e1**2) / N, m1 / N, am / N)

        try:
            f, W, s_max = _mbar_newton(A, counts, mult, f0)
            Q = np.exp(f[:, None] + A - s_max)
            full = stats(W * mult)
            loo = []
            for g in range(G):
                mg = mult - mult_g[g]
                loo.append(stats(_mbar_replicate(Q, np.full(Ll, float((K - (grp == g).sum()) * n)), mg) * mg))
        except (RuntimeError, np.linalg.LinAlgError) as err:
            warnings.warn(
                f"no ladder estimate at field {mu:g} ({err}); the sweeps estimate stands alone there",
                stacklevel=2,
            )
            continue
        for j, q in enumerate(STATS):
            out[q][idx] = full[j]
            out[f"{q}_loo"][idx] = np.stack([r[j] for r in loo], axis=1)
        out["constant"][idx] = U == 1
    return out


def _group_loo(stat, sums: list[np.ndarray], grp: np.ndarray, ell: int) -> np.ndarray:
    """Leave-one-group-out values of ``stat(*means)`` from per-chain sums ``(n_cond, K)`` of
    ``ell`` samples each, chains grouped by ``grp (K,)``."""
    G = int(grp.max()) + 1
    tot = [s.sum(axis=1, keepdims=True) for s in sums]
    gs = [np.stack([s[:, grp == g].sum(axis=1) for g in range(G)], axis=1) for s in sums]
    n_out = np.array([(grp != g).sum() for g in range(G)])[None, :] * ell
    return stat(*[(t - x) / n_out for t, x in zip(tot, gs, strict=True)])


def mcmc_summary(
    result: MCMCResult,
    *,
    blocks_per_chain: int | None = None,
    linear: dict[str, tuple[float, float, float]] | None = None,
    rhat_max: float = RHAT_MAX,
    p_min: float = P_MIN,
    min_error_ess: float = MIN_ERROR_ESS,
    unconverged_errors: str = "nan",
) -> dict[str, np.ndarray]:
    """Per-condition estimates, errors and convergence: ``u, c, m, abs_m`` (+ ``*_err``),
    ``tau_E, tau_M, rhat, p_start, p_drift, p_ladder, error_ess, estimator, converged,
    diagnosis, exchange_acc``.

    ``u = ⟨E_int⟩/N``, ``c = β² Var(E_int)/N``, ``m = ⟨Σs⟩/N``, ``abs_m = ⟨|Σs|⟩/N``. Two
    estimates (module docstring, "Estimates and errors"):

    * ``"sweeps"``: over every sweep of the sampling period when the run recorded sweep averages
      (:attr:`MCMCResult.averages`, the numba updates), else over the samples. Errors:
      delete-one-batch jackknife over ``n_batches = n_chains × blocks_per_chain`` batches; the
      default ``blocks_per_chain`` is 1 for >= 32 chains, else ``ceil(32 / n_chains)`` (at most
      ``n_samples``); each chain's first ``n_samples mod blocks_per_chain`` samples are dropped so
      that blocks are equal.
    * ``"ladder"`` (replica-exchange runs): :func:`ladder_estimates`, errors by jackknife over
      groups of chain slots.

    ``linear``: more statistics ``name: (a_u, a_m, b)`` meaning ``a_u u + a_m m + b``, estimated,
    jackknifed and claimed with ``u`` and ``m``. ``tau_E, tau_M``: :func:`integrated_autocorr_time`
    of the samples, in samples (a lower bound when its window does not close).

    Convergence: the chains have mixed in a series (``E_int`` for ``u, c``; ``Σs`` for ``m``;
    ``|Σs|`` for ``abs_m``; the series of the sweep averages per sample period when recorded, else
    of the samples) when

    * its :func:`split_rhat` is <= ``rhat_max`` or not significantly above 1
      (:func:`_rhat_pvalue` >= ``p_min``);
    * ``p_start`` >= ``p_min`` (or NaN: a single start family): Welch t-test of every start family
      (:attr:`MCMCResult.start_group`, ``start="mixed"``) against the other chains, on the chain
      means: the chains have forgotten where they started;
    * ``p_drift`` >= ``p_min`` (or NaN): paired t-test of the second against the first half of
      every chain: no trend within the sampling period.

    Where the series is constant or its fluctuations rest on fewer than ``min_error_ess`` chains
    (its sweeps error ESS: a few rare excursions), R̂ and the drift test say nothing about mixing
    and are skipped when there are several start families: their agreement decides alone (the
    sweeps estimate is not claimable there anyway; the ladder estimate may be).

    The columns ``rhat``, ``p_start``, ``p_drift`` hold the worst of the three series.

    An estimate's error bar of a statistic is *claimable* when the chains have mixed in its series
    and its error ESS (:func:`_error_from_loo`) is >= ``min_error_ess`` (enough independent
    fluctuations to trust it; NaN when no fluctuation was sampled at all); a ``linear`` statistic
    when ``u`` and ``m`` are. ``p_ladder``: the smallest p-value (t-test on the jackknifed
    difference, paired by slot groups) of the two estimates agreeing, over the statistics where
    both are claimable. A row reports the sweeps estimate when all four of its statistics are
    claimable, else the ladder estimate when it has more claimable statistics (``estimator``); a
    statistic's error is claimed (finite) when it is claimable for that estimate and the other
    estimate, if claimable too, agrees (``p >= p_min``). ``converged``: all four claimed;
    ``error_ess``: the smallest error ESS of the four in the reported estimate; ``diagnosis`` says
    what failed (empty when converged). With ``unconverged_errors="nan"`` (default) unclaimed
    errors are NaN (the estimates stay), with ``"keep"`` the jackknife errors stay.
    """
    if unconverged_errors not in ("nan", "keep"):
        raise ValueError(f"unconverged_errors must be 'nan' or 'keep', got {unconverged_errors!r}")
    n_cond, K, n = result.energy.shape
    N = result.n_sites
    nbk = (
        blocks_per_chain
        if blocks_per_chain is not None
        else (1 if K >= _MIN_BATCHES else -(-_MIN_BATCHES // K))
    )
    nbk = int(min(max(nbk, 1), n))
    ell = n // nbk
    keep = slice(n - nbk * ell, n)

    def batch_sums(a: np.ndarray) -> np.ndarray:  # (n_cond, K, n) → (n_cond, K·nbk)
        return a[:, :, keep].reshape(n_cond, K * nbk, ell).sum(axis=2)

    dE, dE2, M, absM, E_ref = _moments(result)
    beta = result.beta[:, None]
    E_ref = E_ref[:, None]
    moments = {"u": (dE,), "c": (dE, dE2), "m": (M,), "abs_m": (absM,)}
    fns = {
        "u": lambda e1: (e1 + E_ref) / N,
        "c": lambda e1, e2: beta**2 * (e2 - e1**2) / N,
        "m": lambda m1: m1 / N,
        "abs_m": lambda m1: m1 / N,
    }
    linear = dict(linear or {})
    names = list(STATS) + list(linear)
    # ---- the sweeps estimate
    sw: dict[str, dict[str, np.ndarray]] = {"est": {}, "loo": {}, "err": {}, "ess": {}}
    for q in STATS:
        r = _jackknife(fns[q], [batch_sums(a) for a in moments[q]], ell)
        for key, v in zip(("est", "loo", "err", "ess"), r, strict=True):
            sw[key][q] = v
    # ---- the ladder estimate, and both as leave-one-slot-group-out values for their comparison
    lad = ladder_estimates(result)
    if lad is not None:
        grp = _slot_groups(K)
        chain_sums = {q: [a[:, :, keep].sum(axis=2) for a in moments[q]] for q in STATS}
        sw_g = {q: _group_loo(fns[q], chain_sums[q], grp, nbk * ell) for q in STATS}
        ld: dict[str, dict[str, np.ndarray]] = {"est": {}, "loo": {}, "err": {}, "ess": {}}
        for q in STATS:
            ld["est"][q], ld["loo"][q] = lad[q], lad[f"{q}_loo"]
            ld["err"][q], ld["ess"][q] = _error_from_loo(lad[f"{q}_loo"], lad["constant"])
    for name, (a_u, a_m, b0) in linear.items():
        for est in [sw] + ([ld] if lad is not None else []):
            est["est"][name] = a_u * est["est"]["u"] + a_m * est["est"]["m"] + b0
            est["loo"][name] = a_u * est["loo"]["u"] + a_m * est["loo"]["m"] + b0
            const = np.isnan(est["ess"]["u"]) & np.isnan(est["ess"]["m"])
            est["err"][name], est["ess"][name] = _error_from_loo(est["loo"][name], const)
        if lad is not None:
            sw_g[name] = a_u * sw_g["u"] + a_m * sw_g["m"] + b0

    # ---- mixing, per series: E_int (u, c), Σs (m), |Σs| (abs_m)
    series = {"E": dE, "M": M, "A": absM}
    of_stat = {"u": "E", "c": "E", "m": "M", "abs_m": "A"}
    rh = {k: split_rhat(v) for k, v in series.items()}
    p_rh = {k: _rhat_pvalue(v) for k, v in series.items()}
    p_st = {k: _start_pvalue(v.mean(axis=2), result.start_group) for k, v in series.items()}
    p_dr = {k: _drift_pvalue(v) for k, v in series.items()}
    ess_of = {"E": sw["ess"]["u"], "M": sw["ess"]["m"], "A": sw["ess"]["abs_m"]}
    fail = {k: [] for k in series}  # per series: (condition mask, reason) of every failed test
    mix = {}
    for k in series:
        ok_start = ~(p_st[k] < p_min)
        # R̂ and the drift test need fluctuations carried by several chains: a series that is
        # constant, or whose few excursions sit in fewer than min_error_ess chains (its error
        # ESS), says nothing about mixing there; the start families then decide alone
        rare = ~(ess_of[k] >= min_error_ess) & np.isfinite(p_st[k])
        ok_rhat = ((rh[k] <= rhat_max) | ~(p_rh[k] < p_min)) & ~np.isnan(rh[k]) | rare
        ok_drift = ~(p_dr[k] < p_min) | rare
        mix[k] = ok_rhat & ok_start & ok_drift
        fail[k] = [(~ok_rhat, "rhat"), (~ok_start, "start"), (~ok_drift, "drift")]
    mixed = {q: mix[of_stat[q]] for q in STATS}
    rhat = np.fmax.reduce([rh[k] for k in series])
    p_start = np.fmin.reduce([p_st[k] for k in series])
    p_drift = np.fmin.reduce([p_dr[k] for k in series])

    def claimable(est):
        ok = {q: mixed[q] & (est["ess"][q] >= min_error_ess) for q in STATS}
        for name in linear:
            ok[name] = ok["u"] & ok["m"] & (est["ess"][name] >= min_error_ess)
        return ok

    ok_sw = claimable(sw)
    p_lad = {q: np.full(n_cond, np.nan) for q in names}
    if lad is not None:
        ok_ld = claimable(ld)
        G = int(grp.max()) + 1
        for q in names:
            both = ok_sw[q] & ok_ld[q]
            diff_loo = sw_g[q] - ld["loo"][q]
            d = diff_loo - diff_loo.mean(axis=1, keepdims=True)
            se = np.sqrt((G - 1) / G * (d**2).sum(axis=1))
            diff = sw["est"][q] - ld["est"][q]
            scale = np.fmax(np.abs(sw["est"][q]), np.abs(ld["est"][q]))
            p_lad[q] = np.where(both, _t_pvalue(diff, se, np.full(n_cond, G - 1.0), scale), np.nan)
        n_sw = np.sum([ok_sw[q] for q in STATS], axis=0)
        n_ld = np.sum([ok_ld[q] for q in STATS], axis=0)
        use_ld = (n_sw < len(STATS)) & (n_ld > n_sw)
    else:
        use_ld = np.zeros(n_cond, dtype=bool)
    agree = {q: ~(p_lad[q] < p_min) for q in names}
    out: dict[str, np.ndarray] = {}
    claimed = {}
    for q in names:
        if lad is not None:
            for key, suffix in (("est", ""), ("err", "_err")):
                out[q + suffix] = np.where(use_ld, ld[key][q], sw[key][q])
            ess_q = np.where(use_ld, ld["ess"][q], sw["ess"][q])
            claimed[q] = np.where(use_ld, ok_ld[q], ok_sw[q]) & agree[q]
        else:
            out[q], out[q + "_err"], ess_q = sw["est"][q], sw["err"][q], sw["ess"][q]
            claimed[q] = ok_sw[q]
        if q in STATS:
            out[f"_ess_{q}"] = ess_q
    converged = np.logical_and.reduce([claimed[q] for q in STATS])
    err_ess = np.stack([out.pop(f"_ess_{q}") for q in STATS])
    err_ess = np.where(np.isnan(err_ess).any(axis=0), np.nan, err_ess.min(axis=0))
    p_ladder = np.fmin.reduce([p_lad[q] for q in STATS])

    label = {"E": "E", "M": "Σs", "A": "|Σs|"}
    diagnosis = []
    for c in range(n_cond):
        why = []
        for k in series:
            for mask, test in fail[k]:
                if not mask[c]:
                    continue
                if test == "rhat":
                    why.append(
                        f"split-R̂ of {label[k]} undefined ("
                        + ("< 4 samples per chain" if n < 4 else "constant samples") + ")"
                        if np.isnan(rh[k][c])
                        else f"split-R̂ of {label[k]} {rh[k][c]:.3g} > {rhat_max:g} (p {p_rh[k][c]:.1e})"
                    )
                elif test == "start":
                    why.append(f"start families differ in {label[k]} (p {p_st[k][c]:.1e})")
                else:
                    why.append(f"drift of {label[k]} between halves (p {p_dr[k][c]:.1e})")
        est = ld if (lad is not None and use_ld[c]) else sw
        few = [q for q in STATS if mixed[q][c] and not est["ess"][q][c] >= min_error_ess]
        if few:
            why.append(
                "few fluctuations: "
                + ", ".join(f"{q} (error ESS {est['ess'][q][c]:.2g})" for q in few)
                + f" < {min_error_ess:g}"
            )
        bad = [q for q in STATS if p_lad[q][c] < p_min]
        if bad:
            why.append(
                "sweeps and ladder estimates differ: "
                + ", ".join(f"{q} (p {p_lad[q][c]:.1e})" for q in bad)
            )
        diagnosis.append("; ".join(why))

    out["tau_E"] = integrated_autocorr_time(result.energy)
    out["tau_M"] = integrated_autocorr_time(result.spin_sum)
    out["n_samples"] = np.full(n_cond, K * n, dtype=np.int64)
    out["n_chains"] = np.full(n_cond, K, dtype=np.int64)
    out["n_batches"] = np.where(use_ld, int(grp.max()) + 1 if lad is not None else 0, K * nbk).astype(np.int64)
    out["rhat"], out["p_start"], out["p_drift"], out["p_ladder"] = rhat, p_start, p_drift, p_ladder
    out["error_ess"] = err_ess
    out["estimator"] = np.where(use_ld, "ladder", "sweeps").astype(object)
    out["converged"] = converged
    out["diagnosis"] = np.array(diagnosis, dtype=object)
    out["exchange_acc"] = result.exchange_acceptance
    if unconverged_errors == "nan":
        for q in names:
            out[q + "_err"] = np.where(claimed[q], out[q + "_err"], np.nan)
    if nbk > 1:
        tau = np.fmax(out["tau_E"], out["tau_M"])
        bad = tau * 5 > ell
        if np.any(bad):
            warnings.warn(
                f"blocks of {ell} samples are shorter than 5 τ (max τ = {np.nanmax(tau):.3g} "
                f"samples) at {int(bad.sum())} conditions: error bars from blocking inside {K} "
                "chains are too small there; "
                f"run more chains (>= {_MIN_BATCHES}) or longer chains",
                stacklevel=2,
            )
    return out


def mcmc_table(
    result: MCMCResult,
    system: System | None = None,
    *,
    blocks_per_chain: int | None = None,
    **diagnostics,
) -> pd.DataFrame:
    """One row per condition: ``system, size, T, field, u, u_err, c, c_err, m, m_err, abs_m,
    abs_m_err, tau_E, tau_M, n_samples, n_chains, n_batches, converged, estimator, diagnosis,
    rhat, p_start, p_drift, p_ladder, error_ess, exchange_acc, update, method="mcmc"``.

    CuAu adds ``x_au`` (``= (1 + m)/2``) and ``x_au_err``; given the ``system``, also the
    formation energy per site ``u_form = ⟨E_int − N_Au E_Au/N − N_Cu E_Cu/N⟩/N = u − E_Cu/N −
    (1 + m)/2 · (E_Au − E_Cu)/N`` relative to the pure ends (``E_Au``, ``E_Cu``: energies of the
    all-Au and all-Cu configurations) and its error. Estimates, errors, τ and the convergence
    columns are those of :func:`mcmc_summary` (``diagnostics``: its ``rhat_max, p_min,
    min_error_ess, unconverged_errors``); ``exchange_acc`` is the replica-exchange acceptance with
    the next-higher temperature (NaN without exchange). ``n_batches``: the jackknife's batches
    (slot groups for the ladder estimate).
    """
    linear = {}
    if result.system == "cuau" and system is not None:
        N = result.n_sites
        ends = system.energy(
            torch.stack([torch.ones(N, dtype=torch.long), torch.zeros(N, dtype=torch.long)])
        )
        e_au, e_cu = (float(v) / N for v in ends)
        linear["u_form"] = (1.0, -(e_au - e_cu) / 2.0, -e_cu - (e_au - e_cu) / 2.0)
    s = mcmc_summary(result, blocks_per_chain=blocks_per_chain, linear=linear, **diagnostics)
    cols = {"system": result.system, "size": result.size, "T": result.T, "field": result.field}
    for k in ("u", "u_err", "c", "c_err", "m", "m_err", "abs_m", "abs_m_err"):
        cols[k] = s[k]
    if result.system == "cuau":
        cols["x_au"], cols["x_au_err"] = (1.0 + s["m"]) / 2.0, s["m_err"] / 2.0
        if "u_form" in s:
            cols["u_form"], cols["u_form_err"] = s["u_form"], s["u_form_err"]
    for k in ("tau_E", "tau_M", "n_samples", "n_chains", "n_batches", "converged", "estimator"):
        cols[k] = s[k]
    for k in ("diagnosis", "rhat", "p_start", "p_drift", "p_ladder", "error_ess", "exchange_acc"):
        cols[k] = s[k]
    cols["update"] = result.update
    cols["method"] = "mcmc"
    return pd.DataFrame(cols)


def convergence_report(table: pd.DataFrame, max_rows: int = 20) -> tuple[int, list[str]]:
    """``(number of rows not converged, one line per such row (at most max_rows))`` of an
    :func:`mcmc_table`, for logs."""
    bad = table[~table["converged"].astype(bool)]
    lines = [f"T={r.T:g} field={r.field:g}: {r.diagnosis}" for r in bad.head(max_rows).itertuples()]
    if len(bad) > max_rows:
        lines.append(f"... and {len(bad) - max_rows} more")
    return len(bad), lines


def _condition_frame(result: MCMCResult, c: int, **columns) -> pd.DataFrame:
    """Rows of condition ``c``: columns ``system, size, T, field``, then ``columns``."""
    return pd.DataFrame(
        {"system": result.system, "size": result.size, "T": result.T[c], "field": result.field[c], **columns}
    )


def mcmc_histograms(result: MCMCResult, *, bins: int = 64) -> pd.DataFrame:
    """Histograms of ``E_int`` and ``Σs`` per condition, in long form.

    Columns ``system, size, T, field, quantity ("energy" | "spin_sum"), value, bin_lo, bin_hi,
    count, probability``. ``Σs`` and energies that take at most ``2N + 1`` distinct values over the
    whole run (Ising) are histogrammed exactly (``value = bin_lo = bin_hi``, only levels that
    were visited at some condition appear, with zero counts at the others); continuous energies
    (CuAu) use ``bins`` equal bins over the run's range, shared by all conditions.
    """
    frames = []
    for quantity, a in (("energy", result.energy), ("spin_sum", result.spin_sum)):
        flat = a.reshape(a.shape[0], -1)
        levels = np.unique(flat)
        if levels.size <= 2 * result.n_sites + 1:
            idx = np.searchsorted(levels, flat)
            lo = hi = value = levels
            n_bins = levels.size
        else:
            edges = np.linspace(levels[0], levels[-1], bins + 1)
            idx = np.clip(np.searchsorted(edges, flat, side="right") - 1, 0, bins - 1)
            lo, hi, value, n_bins = edges[:-1], edges[1:], 0.5 * (edges[:-1] + edges[1:]), bins
        for c in range(a.shape[0]):
            count = np.bincount(idx[c], minlength=n_bins)
            frames.append(
                _condition_frame(
                    result,
                    c,
                    quantity=quantity,
                    value=value,
                    bin_lo=lo,
                    bin_hi=hi,
                    count=count,
                    probability=count / flat.shape[1],
                )
            )
    return pd.concat(frames, ignore_index=True)


def mcmc_samples_table(result: MCMCResult, *, max_per_condition: int | None = None) -> pd.DataFrame:
    """The sampled configurations, ready for Parquet: columns ``system, size, T, field, chain,
    sample, configuration`` (bytes of :func:`lattherm.io.pack_states`), ``energy, spin_sum``.

    Rows run sample index outer, chain inner, so ``max_per_condition`` keeps the first samples
    of all chains (the most independent subset) rather than one chain's trajectory.
    """
    if result.states is None:
        raise ValueError(
            "this run did not keep its states; rerun run_metropolis with keep_states=True"
        )
    n_cond, K, n, N = result.states.shape
    take = K * n if max_per_condition is None else min(int(max_per_condition), K * n)
    frames = []
    for c in range(n_cond):
        st = result.states[c].transpose(1, 0, 2).reshape(K * n, N)[:take]  # (sample, chain) order
        packed = pack_states(st)
        chain = np.tile(np.arange(K), n)[:take]
        sample = np.repeat(np.arange(n), K)[:take]
        frames.append(
            _condition_frame(
                result,
                c,
                chain=chain,
                sample=sample,
                configuration=[row.tobytes() for row in packed],
                energy=result.energy[c].T.reshape(-1)[:take],
                spin_sum=result.spin_sum[c].T.reshape(-1)[:take],
            )
        )
    return pd.concat(frames, ignore_index=True)
