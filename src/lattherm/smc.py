"""Sequential Monte Carlo from the sampler ``q`` to the Boltzmann distribution ``p`` (DESIGN §5):
``ln Z`` with an error bar that stays honest where the importance weights degenerate (NESS → 0).

**The ladder.** The targets are ``π_λ ∝ q^(1−λ) p̃^λ`` for ``λ`` from 0 to 1, on the pairs
``(σ, x)`` the sampler draws (order and configuration, whose joint ``log q`` it returns exactly;
at ``λ = 1`` the configuration's marginal is ``p``). The particles start as ``n`` draws of ``q``;
the log-weight of the ladder is ``log w = log p̃ − log q = −β(E_int − field Σs) − log q``.

**One level.** From ``λ`` the next ``λ'`` is chosen by bisection so that the conditional ESS of the
incremental weights ``exp((λ' − λ) log w)`` is ``cess`` times ``n`` (or ``λ' = 1`` if it is above
that). The particles' weights take the increment and ``ln Z`` the log of its weighted mean
(Jarzynski's equality; an unbiased estimate of ``Z / Z_q`` per level, ``Z_q = 1``). When the ESS of
the weights falls below ``resample`` times ``n`` they are resampled (systematic). Then ``n_moves``
independent Metropolis–Hastings moves: a fresh draw ``x'`` of ``q`` for every particle, accepted
with ``min(1, exp(λ' (log w' − log w)))``, which leaves ``π_λ'`` invariant. Where ``q`` is good the
ladder is one level and the estimate is that of importance sampling; where it is poor the ladder
has many levels, and the moves bring in fresh proposals at every level.

**The error bar.** ``n_replicas`` independent runs (seeds derived from ``seed``) each give an
unbiased ``Ẑ_r``; the estimate is ``ln mean_r Ẑ_r`` and its one-sigma error ``std_r(Ẑ_r) /
(√R mean_r Ẑ_r)`` (delta method). Runs whose ``ln Ẑ_r`` spread by more than :data:`MAX_SPREAD`
(standard deviation) are heavy-tailed: the error bar is then not trusted and ``converged`` is
False, as it is when a run needed more than ``max_levels`` levels.

The budget is recorded: draws of ``q`` (each with one energy evaluation) and wall seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from lattherm.observables import log_weights, ness
from lattherm.systems.base import reduced_energy

__all__ = ["MAX_SPREAD", "smc_free_energy", "next_lambda", "systematic_resample"]

#: standard deviation of the replicas' ln Ẑ_r above which the error bar is not trusted
MAX_SPREAD = 0.5


def _lse(a: np.ndarray) -> float:
    m = float(np.max(a))
    return m + float(np.log(np.sum(np.exp(a - m))))


def _ess(log_W: np.ndarray) -> float:
    """Effective sample size of (unnormalised) log-weights: ``n`` times their NESS."""
    return ness(log_W) * len(log_W)


def next_lambda(lam: float, log_W: np.ndarray, log_w: np.ndarray, cess: float) -> float:
    """The next ``λ'`` in ``(λ, 1]``: the conditional ESS ``(Σ W e^{Δ log w})² / (Σ W Σ W e^{2Δ log w})``
    of the increment is ``cess`` (a fraction), by bisection; 1 where the whole step keeps it."""
    W = log_W - _lse(log_W)

    def cond_ess(d: float) -> float:
        a = W + d * log_w
        return float(np.exp(2 * _lse(a) - _lse(W + 2 * d * log_w)))

    if cond_ess(1.0 - lam) >= cess:
        return 1.0
    lo, hi = 0.0, 1.0 - lam
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cond_ess(mid) >= cess else (lo, mid)
    return lam + max(lo, 1e-12)


def systematic_resample(log_W: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` particles drawn by systematic resampling with probabilities ``∝ exp(log_W)``."""
    n = len(log_W)
    p = np.exp(log_W - _lse(log_W))
    edges = np.cumsum(p)
    edges[-1] = 1.0
    return np.searchsorted(edges, (rng.random() + np.arange(n)) / n, side="right").clip(0, n - 1)


class _Particles:
    """The ``n`` particles of one run: states, their sampler log-weight at the start condition,
    energy and spin sum."""

    def __init__(self, x, log_w, E, M) -> None:
        self.x, self.log_w, self.E, self.M = x, log_w, E, M

    def take(self, idx: np.ndarray) -> None:
        self.x = self.x[torch.as_tensor(idx, device=self.x.device)]
        self.log_w, self.E, self.M = self.log_w[idx], self.E[idx], self.M[idx]


def _ladder(direction, p: _Particles, log_W, rng, cess, resample, move, max_levels) -> tuple:
    """One ladder ``s: 0 → 1`` whose log-target grows by ``s · direction(p)``: adaptive steps,
    incremental weights, resampling and ``move(p, s)`` at every intermediate ``s`` (module doc).
    Returns ``(Δ ln Z, log_W, levels, finished)``."""
    s, log_z, levels = 0.0, 0.0, 0
    while s < 1.0 and levels < max_levels:
        d = direction(p)
        new = next_lambda(s, log_W, d, cess)
        inc = (new - s) * d
        log_z += _lse(log_W + inc) - _lse(log_W)
        log_W = log_W + inc
        s, levels = new, levels + 1
        if _ess(log_W) < resample * len(log_W):
            p.take(systematic_resample(log_W, rng))
            log_W = np.zeros(len(log_W))
        if s < 1.0:
            move(p, s)
    return log_z, log_W, levels, s >= 1.0


def _run(draw, system, T0, T, field, n, rng, gen, cess, resample, n_moves, n_sweeps, max_levels) -> dict:
    """One SMC run (module doc): ``ln Ẑ``, levels, mean acceptance, draws, and the final weighted
    particles' energy and spin sum."""
    from lattherm.reference.mcmc import run_metropolis  # numba kernels: imported where used

    def fresh(k: int) -> _Particles:
        x, log_q = draw(k, gen)
        with torch.no_grad():
            red = reduced_energy(system, x, T0, field)
            E, M = system.energy(x), system.spin_sum(x)
        lw = log_weights(log_q.detach().cpu().numpy(), red.cpu().numpy())
        return _Particles(x, lw, E.double().cpu().numpy(), M.double().cpu().numpy())

    draws, acc, sweeps = [n], [], []

    def imh(p: _Particles, lam: float) -> None:  # independent MH moves for q^(1-λ) p^λ at T0
        for _ in range(n_moves):
            new = fresh(n)
            draws.append(n)
            keep = np.log(rng.random(n)) < lam * (new.log_w - p.log_w)
            acc.append(float(keep.mean()))
            p.x = torch.where(torch.as_tensor(keep, device=p.x.device)[:, None], new.x, p.x)
            p.log_w, p.E, p.M = (np.where(keep, a, b) for a, b in ((new.log_w, p.log_w), (new.E, p.E), (new.M, p.M)))

    def temperature(s: float) -> float:
        return 1.0 / (1.0 / T0 + s * (1.0 / T - 1.0 / T0))

    def local(p: _Particles, s: float) -> None:  # Metropolis sweeps at the ladder's temperature
        if n_sweeps == 0:
            return
        sweeps.append(n * n_sweeps)
        res = run_metropolis(system, temperature(s), field, n_chains=n, n_samples=1, seed=int(rng.integers(2**62)),
                             burn_in_sweeps=0, thin_sweeps=n_sweeps, start=p.x.cpu().numpy().astype(np.uint8))
        p.x = torch.from_numpy(res.states[0, :, 0].astype(np.int64)).to(p.x.device)
        p.E, p.M = res.energy[0, :, 0].copy(), res.spin_sum[0, :, 0].copy()

    def reduced(p: _Particles) -> np.ndarray:  # (E − field Σs) / k_B: the reduced energy times T
        return (p.E - field * p.M) / float(system.k_B)

    p = fresh(n)
    log_z, log_W, levels, done = _ladder(lambda q: q.log_w, p, np.zeros(n), rng, cess, resample, imh, max_levels)
    beta_levels = 0
    if T != T0 and done:
        dz, log_W, beta_levels, done = _ladder(lambda q: -(1.0 / T - 1.0 / T0) * reduced(q), p, log_W, rng, cess,
                                               resample, local, max_levels)  # fmt: skip
        log_z += dz
    local(p, 1.0)  # at the target: moves for the observables (they leave ln Ẑ as it is)
    W = np.exp(log_W - _lse(log_W))
    return {"log_z": log_z, "levels": levels, "beta_levels": beta_levels, "finished": done,
            "acceptance": float(np.mean(acc)) if acc else float("nan"), "draws": int(sum(draws)),
            "sweeps": int(sum(sweeps)), "W": W, "E": p.E,
            "M": p.M}  # fmt: skip


def smc_free_energy(
    draw: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]],
    system,
    T: float,
    field: float,
    *,
    n_particles: int = 2000,
    n_replicas: int = 8,
    seed: int = 0,
    cess: float = 0.5,
    resample: float = 0.5,
    n_moves: int = 2,
    n_sweeps: int = 2,
    T_start: float | None = None,
    max_levels: int = 200,
    device=None,
) -> dict:
    """Free energy per site ``f_est`` with its one-sigma error ``f_est_err`` at ``(T, field)`` by SMC
    from the sampler (module doc). ``draw(k, generator) -> (x (k, N), log_q (k,))``: ``k`` draws of
    the sampler at this condition with their exact log-probabilities.

    Returns ``f_est, f_est_err, log_z, log_z_err, log_z_spread`` (standard deviation of the
    replicas' ``ln Ẑ_r``), ``u, u_err, m, m_err`` (per site, from the final particles of the
    replicas), ``levels`` (mean per replica), ``acceptance`` (mean of the moves), ``draws`` (draws of
    q and energy evaluations, all replicas), ``wall_s`` and ``converged`` (module doc)."""
    for name, v, lo in (("n_particles", n_particles, 2), ("n_replicas", n_replicas, 2), ("n_moves", n_moves, 0),
                        ("n_sweeps", n_sweeps, 0), ("max_levels", max_levels, 1)):  # fmt: skip
        if isinstance(v, bool) or int(v) != v or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    for name, v in (("cess", cess), ("resample", resample)):
        if not 0.0 < float(v) < 1.0:
            raise ValueError(f"{name} must be a fraction in (0, 1), got {v!r}")
    T, field = float(T), float(field)
    if not (np.isfinite(T) and T > 0 and np.isfinite(field)):
        raise ValueError(f"need a finite T > 0 and a finite field, got T={T}, field={field}")
    T0 = T if T_start is None else float(T_start)
    if not (np.isfinite(T0) and T0 >= T):
        raise ValueError(f"T_start must be a finite temperature >= T ({T}), got {T_start!r}")
    if T0 != T and n_sweeps == 0:
        raise ValueError("a temperature ladder (T_start > T) needs local moves: n_sweeps must be >= 1")
    t0 = time.perf_counter()
    ss = np.random.SeedSequence([int(seed), 0x5EC])
    runs = []
    for child in ss.spawn(int(n_replicas)):
        rng = np.random.default_rng(child)
        gen = torch.Generator(device=device or "cpu").manual_seed(int(child.generate_state(1, np.uint64)[0] >> 1))
        runs.append(_run(draw, system, T0, T, field, int(n_particles), rng, gen, float(cess), float(resample),
                         int(n_moves), int(n_sweeps), int(max_levels)))  # fmt: skip
    lz = np.array([r["log_z"] for r in runs])
    m = lz.max()
    z = np.exp(lz - m)  # Ẑ_r / e^m
    log_z = m + float(np.log(z.mean()))
    log_z_err = float(z.std(ddof=1) / np.sqrt(len(z)) / z.mean())
    N, kT = system.n_sites, float(system.k_B) * T
    u_r = np.array([np.sum(r["W"] * r["E"]) / N for r in runs])
    m_r = np.array([np.sum(r["W"] * r["M"]) / N for r in runs])
    spread = float(lz.std(ddof=1))
    return {
        "f_est": -kT * log_z / N,
        "f_est_err": kT * log_z_err / N,
        "log_z": log_z,
        "log_z_err": log_z_err,
        "log_z_spread": spread,
        "u": float(u_r.mean()),
        "u_err": float(u_r.std(ddof=1) / np.sqrt(len(u_r))),
        "m": float(m_r.mean()),
        "m_err": float(m_r.std(ddof=1) / np.sqrt(len(m_r))),
        "levels": float(np.mean([r["levels"] for r in runs])),
        "beta_levels": float(np.mean([r["beta_levels"] for r in runs])),
        "acceptance": float(np.nanmean([r["acceptance"] for r in runs])) if any(r["levels"] > 1 for r in runs)
        else float("nan"),
        "draws": int(sum(r["draws"] for r in runs)),
        "sweeps": int(sum(r["sweeps"] for r in runs)),
        "wall_s": time.perf_counter() - t0,
        "converged": bool(spread <= MAX_SPREAD and all(r["finished"] for r in runs)),
    }
