"""CuAu free energy per composition by metadynamics over the Au concentration (CLEASE).

The semi-grand canonical (SGC) walk of CLEASE 1.2.0 (DESIGN §5, "Metadynamics"):

- ``SGCMonteCarlo`` on the CLEASE template of the cell with a CLEASE calculator holding the
  published ECIs; trial moves flip one random site (Au <-> Cu). The chemical potential is set
  explicitly, ``chem_pot = {"c1_0": μ}``; CLEASE subtracts it from the singlet ECI, so the
  sampled energy is ``E_int − μ N cf_c1_0 = E_int − μ Σ_i s_i`` (Au = +1), DESIGN §3.
- Collective variable: CLEASE's ``ConcentrationObserver(atoms, "Au")``, which returns the Au
  *fraction* ``x = n_Au / N ∈ [0, 1]`` (not a per-site spin average).
- ``BinnedBiasPotential`` with ``N + 1`` bins over ``[−0.5/N, 1 + 0.5/N]``: bin width ``1/N``, bin
  ``n`` centred on ``x = n/N``, so every composition, pure Cu and pure Au included, is a bin
  centre (there the bias's Lagrange interpolation returns the bin value itself). The bias is an
  energy in eV added to the sampled energy: the walk samples ``exp(−β(E_int − μΣs + V(n)))``.
- ``MetaDynamicsSampler``: after every move, ``V(n_current) += mod_factor · k_B T`` (CLEASE's
  ``mod_factor`` is in units of ``k_B T``) and the visit histogram of that bin grows by one —
  a Wang–Landau update in composition space. CLEASE's own flatness test omits the last bin
  (``coeff[i_min:i_max]`` with ``i_max = nbins − 1``) and runs after every move; we override it
  (DESIGN: flatness over *all* bins): ``min H > flatness · mean H`` over all ``N + 1`` bins, checked
  every ``sweeps_per_check`` sweeps. When flat, the visit histogram is cleared and ``mod_factor``
  halved (the schedule runs outside CLEASE's sampler, which does one stage per ``run``), until the
  last completed stage has the smallest ``mod_factor = start · 2^−k >= mod_factor_final``.

From the bias to the canonical free energy. In the biased SGC ensemble the visit probability of
composition ``n`` is ``∝ Z_n exp(βμ(2n − N)) exp(−βV(n))`` with ``Z_n = Σ_{x: n_Au = n} exp(−βE_int)``.
A flat histogram therefore means ``βV(n) = ln Z_n + βμ(2n − N) + const``, i.e. the bias converges
to minus the SGC free-energy profile ``−[−k_B T ln P_μ(n)]`` up to a constant, and

    F(n) = −k_B T ln Z_n = −V(n) + μ (2n − N) + C.

``C`` is fixed by pure Cu, a single state: ``F(0) = E_int(all Cu)`` exactly. Then
``f_x = F(n)/N`` (eV/atom) is the canonical free energy per site at ``x = n/N``, independent of
μ (the μ used only changes how the walk is biased, not the result), and comparable row by row
with :func:`lattherm.reference.cuau_exact.cuau_exact_composition_table`.

Production run. The halving schedule saturates (the error stops shrinking once the stages get
short: measured ~1–2 meV/atom on 2x2x4 at 1200 K whatever the final ``mod_factor``), so after
the last stage the walk continues with the bias frozen (``mod_factor = 0``) for
``production_sweeps`` sweeps. Its visit histogram ``H(n)`` measures what is left of the
non-flatness, ``P_biased(n) ∝ Z_n e^{βμ(2n−N)} e^{−βV(n)}``, so

    F(n) = −V(n) − k_B T ln H(n) + μ (2n − N) + C          (C again from F(0) = E_int(all Cu)),

an unbiased estimate (the multicanonical reweighting of the frozen bias) whose error falls as
the run grows. The bias is a fixed function during this run, so its own error (how far the
last stage was from the true profile) does not enter ``f_x``: it only makes ``H`` less flat.
The states visited at fixed ``n`` during this run are Boltzmann-distributed at ``T`` (the bias
is constant inside a bin), which gives the canonical ``u_x = ⟨E_int⟩_n / N`` and
``c_x = β² Var_n(E_int) / N`` (units of k_B) used for the order–disorder transition
(:mod:`lattherm.reference.phase_diagram`).

Error bars. ``f_x(n) − f_x(0) = −[V(n) − V(0) + k_B T (ln H(n) − ln H(0))]/N + const``: the
error of row ``n`` is that of ``ln H(n) − ln H(0)``, the gauge point (pure Cu, ``F(0)`` exact)
included through ``H(0)``. Its standard error comes from ``B = max(production_blocks,
min_batches)`` batches of the production run (64 by default) as the delete-one-batch jackknife
(``f_x_err``), and two things make the batches independent and numerous:

- *Regeneration.* Pure Cu and pure Au are single microstates, so each visit of either is a
  regeneration point of the walk (with the bias frozen, what follows is independent of what came
  before). The production run is cut into *tours* between visits of an end; the run is split in
  ``B`` equal time windows and batch ``b`` holds the tours that end in window ``b`` (the last
  batch also the unfinished last tour). The batches are therefore independent whatever the
  autocorrelation time, instead of merely long: plain consecutive blocks are correlated over a
  round trip pure Cu -> pure Au -> pure Cu (100–200 sweeps on 2x2x4, ~3000 on 4x4x4 at 200 K),
  which a block length cannot be checked against without such a count.
- *Enough batches.* A standard error estimated from ``B`` numbers gives ``(f_x − exact)/f_x_err``
  Student-t tails with ``B − 1`` degrees of freedom. No Student-t rescaling is applied: with
  ``B >= 64`` it is within 1 % of a normal law at 1σ (±3σ covers 99.6 %, ±4σ 99.98 %). The
  former estimate used ``production_blocks = 8`` blocks, t₇ tails (±3σ covers 98 %, ±4σ 99.5 %),
  and because all rows share the pure-Cu anchor one under-estimated block variance put a whole
  temperature out at once: on 2x2x4 at the laptop settings, 21 temperatures, 4.5 % of the points
  lay beyond 3σ and the worst at 5.3σ; with these batches, on the same runs, 0.6 % and 3.2σ
  (benchmarks/results/metadynamics_error_check.json).

The bias's own error does not enter (see above), and the end bins are not rare: the frozen bias
keeps the production histogram near flat (min/mean 0.65–0.94 measured on 2x2x4 and 4x4x4).

The ``converged`` flag (per row; its ``f_x_err`` is a claim — the exact value within a few error
bars — only where ``True``). Independent batches are not enough when a batch holds only a few of
the tours that carry the information on row ``n``: those connecting pure Cu and composition
``n`` (``batch_tours``; for ``n = N`` the traversals pure Cu <-> pure Au, two per round trip).
Then the batch sums are far from normal and the t law fails (measured on 2x2x4 over ~16,000
points of short runs: with < 1 such tour per batch 1.3–3.3 % of the points lie beyond 3σ and
0.5 % beyond 4σ, with 1–2 per batch 0.7 %, with >= 2 per batch 0.4–0.6 %, as for t₆₃). Row
``n`` is converged when

- every stage of the schedule reached flatness (``max_sweeps_per_stage`` not hit), and
- the batches hold on average at least ``min_tours`` (default 2) tours connecting pure Cu and
  ``n``, i.e. the production run holds ``>= min_tours · B`` of them.

The pure-Cu row is exact (``f_x_err = 0``) and converged whenever the stages are. Without a
production run there is no error bar (``f_x_err = NaN``) and no row is converged. At the laptop
settings (200,000 production sweeps, 64 batches) every row of 2x2x4 and 4x4x4 is converged
(2x2x4: 28–60 traversals per batch; 4x4x4: 2.2 at 200 K to 12 at 1000 K); 4x4x8 needs a longer
run at low T (0.8 traversals per batch at 200 K, 1.5 at 500 K, 4.6 at 900 K). ``tau_sweeps`` reports the integrated
autocorrelation time that the error implies, ``N_moves · Var / (2 (1/p_n + 1/p_0)) / N`` sweeps
(``p`` the production visit fractions; ``1/2`` move for independent moves), for diagnosis.

Backends. ``backend="clease"`` runs the algorithm above with CLEASE's classes (the reference
implementation; 40–50 µs per move on 2x2x4 on the shared 2-core machine, measured; CLEASE's own
per-move flatness test would add ~30%).
``backend="numba"`` runs the *same* algorithm (same moves, acceptance, bias update, bins,
flatness rule and schedule) in a numba kernel on the exact flip tables of
:class:`lattherm.systems.cuau.CuAuSystem` (the same energies as CLEASE's calculator to ~1e-10 eV,
tested in test_cuau.py),
0.6–1 µs per move on 2x2x4 and ~1.3 µs on 4x4x4 (measured); it is the default, and the one to
use for the workflow's temperature grids and on 4x4x4 (11 temperatures of 2x2x4 with the
default settings: ~40 s; one 4x4x4 temperature with 50,000 production sweeps: ~5 s). Both are
tested against exact enumeration on 2x2x4.

Seeds. CLEASE draws its trial moves and Metropolis numbers from Python's global ``random`` module
(``random.choice``, ``random.random``); ``numpy``'s global RNG is seeded too for safety. Both are
seeded with ``seed`` at the start of the run and their previous states restored at the end. The
numba backend seeds numba's own generator (``np.random.seed`` inside a jitted function). Same seed
⇒ same result on a CPU, for either backend.

Files. CLEASE writes a database (the settings) and the sampler's JSON state; both go to a
temporary directory (or ``workdir`` when given), never to the working directory.
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd

from lattherm.systems.cuau import K_B_EV, CuAuSystem

__all__ = [
    "MetadynamicsResult",
    "run_metadynamics",
    "metadynamics_table",
    "metadynamics_scan",
    "free_energy_from_bias",
    "batch_errors",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetadynamicsResult:
    """Metadynamics run at one temperature (arrays indexed by ``n_au = 0..N``); ``converged`` is
    the run's (stages flat), ``row_converged`` each row's (module docstring)."""

    size: str
    T: float  # K
    mu: float  # eV, CLEASE's c1_0 chemical potential used during the walk
    n_sites: int
    bias: np.ndarray  # (N+1,) eV: the bias V(n) at the bin centres after the last stage
    visits: np.ndarray  # (N+1,) visits of each bin in the production run (frozen bias)
    f_x: np.ndarray  # (N+1,) eV/atom: canonical free energy per site at x = n/N
    f_x_err: np.ndarray  # (N+1,) eV/atom: jackknife standard error over the production batches
    u_x: np.ndarray  # (N+1,) eV/atom: ⟨E_int⟩/N at fixed n (production run)
    c_x: np.ndarray  # (N+1,) k_B: β² Var(E_int)/N at fixed n (production run)
    mod_factors: tuple[float, ...]  # the stages of the schedule (units of k_B T)
    n_moves: int
    converged: bool  # False if a stage hit max_sweeps_per_stage or a bin was never visited
    wall_s: float
    backend: str
    seed: int
    settings: dict = field(default_factory=dict)
    # (B, N+1) visits of each production batch (the tours ending in time window b; the last
    # batch also holds the unfinished last tour); B = max(production_blocks, min_batches)
    batch_visits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    # (B, N+1) completed tours of batch b (between visits of pure Cu or pure Au) that touched
    # pure Cu and reached n_au = n ([:, N]: traversals pure Cu <-> pure Au, two per round trip)
    batch_tours: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    batch_sweeps: float = float("nan")  # length L of one time window, in sweeps
    # (N+1,) integrated autocorrelation time of row n's estimator, in sweeps (NaN at n = 0)
    tau_sweeps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # (N+1,) bool: row n's f_x_err is a claim (stages flat and >= min_tours tours per batch)
    row_converged: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def n_au(self) -> np.ndarray:
        return np.arange(self.n_sites + 1)

    @property
    def x_au(self) -> np.ndarray:
        return self.n_au / self.n_sites


def free_energy_from_bias(
    bias: np.ndarray,
    *,
    T: float,
    mu: float,
    e_all_cu: float,
    n_sites: int,
    visits: np.ndarray | None = None,
) -> np.ndarray:
    """Canonical ``f_x = F(n)/N`` (eV/atom) from a bias ``V(n)`` (eV), ``n = 0..N``.

    ``F(n) = −V(n) − k_B T ln H(n) + μ(2n − N) + C`` with ``C`` such that ``F(0) = e_all_cu``
    (total energy of pure Cu, the only state at n = 0); ``H`` are the visits of a run with the
    bias frozen (``None``: a perfectly flat histogram, the plain metadynamics estimate). See the
    module docstring for the derivation.
    """
    bias = np.asarray(bias, dtype=np.float64)
    if bias.shape != (n_sites + 1,):
        raise ValueError(f"bias must have N + 1 = {n_sites + 1} bins, got shape {bias.shape}")
    n = np.arange(n_sites + 1)
    F = -bias + mu * (2 * n - n_sites)
    if visits is not None:
        visits = np.asarray(visits, dtype=np.float64)
        if visits.shape != bias.shape or np.any(~(visits > 0)):
            raise ValueError("visits must be positive in every one of the N + 1 bins")
        F = F - K_B_EV * T * np.log(visits)
    F = F - F[0] + e_all_cu
    return F / n_sites


def run_metadynamics(
    size: str,
    T: float,
    *,
    mu: float = 0.0,
    mod_factor_start: float = 1.0,
    mod_factor_final: float = 1e-4,
    flatness: float = 0.8,
    sweeps_per_check: int = 10,
    max_sweeps_per_stage: int = 200_000,
    production_sweeps: int = 200_000,
    production_blocks: int = 8,
    min_batches: int = 64,
    min_tours: float = 2.0,
    seed: int,
    backend: str = "numba",
    eci: dict[str, float] | None = None,
    progress: bool = False,
    workdir: str | os.PathLike | None = None,
) -> MetadynamicsResult:
    """Metadynamics over the Au fraction at temperature ``T`` (K) on a CuAu cell.

    Args:
        size: cell token, ``"2x2x4"``, ``"4x4x4"``, ...
        T: temperature in K. mu: CLEASE's chemical potential (eV) during the walk.
        mod_factor_start, mod_factor_final: the bias update, in units of ``k_B T``; halved each
            time the visit histogram is flat; the last stage run has the smallest
            ``start · 2^−k >= final``.
        flatness: a stage ends when ``min H > flatness · mean H`` over all ``N + 1`` bins.
        sweeps_per_check: flatness is checked every ``sweeps_per_check · N`` moves.
        max_sweeps_per_stage: a stage that is not flat after this many sweeps ends anyway and the
            result is marked ``converged=False`` (and a warning logged).
        production_sweeps: sweeps of the final run with the bias frozen; its visits correct the
            bias for the residual non-flatness (``0``: no production run, plain bias estimate,
            no u_x/c_x/errors, no row ``converged``).
        production_blocks, min_batches: the production run is split in
            ``B = max(production_blocks, min_batches)`` equal time windows; the tours of the walk
            between visits of pure Cu or pure Au that end in window ``b`` form batch ``b``, the
            independent batches of the jackknife error ``f_x_err`` (module docstring).
            ``min_batches`` (default 64) is a floor: an error estimated from few batches has
            Student-t tails with ``B − 1`` degrees of freedom (8 blocks: 2 % of the points beyond
            3σ instead of 0.3 %).
        min_tours: row ``n`` is ``converged`` only if the batches hold on average at least
            ``min_tours`` tours that connect pure Cu and composition ``n`` (for ``n = N``:
            traversals pure Cu <-> pure Au, two per round trip); see the module docstring.
        seed: seed of every random number used (see the module docstring).
        backend: ``"numba"`` (default; the algorithm on CuAuSystem's flip tables) or ``"clease"``
            (CLEASE's SGCMonteCarlo/BinnedBiasPotential/MetaDynamicsSampler, ~300x slower).
        eci: ECIs (published ones when ``None``).
        progress: log progress over the stages and production blocks.
        workdir: folder for CLEASE's files (a temporary one, deleted afterwards, when ``None``).
    """
    if not T > 0:
        raise ValueError(f"T must be > 0 K, got {T}")
    if not 0 < mod_factor_final <= mod_factor_start:
        raise ValueError(f"need 0 < mod_factor_final <= mod_factor_start, got {mod_factor_final}, {mod_factor_start}")
    if not 0 < flatness < 1:
        raise ValueError(f"flatness must be in (0, 1), got {flatness}")
    if backend not in ("clease", "numba"):
        raise ValueError(f"backend must be 'clease' or 'numba', got {backend!r}")
    if production_sweeps < 0 or production_blocks < 1:
        raise ValueError("need production_sweeps >= 0 and production_blocks >= 1")
    if min_batches < 2:
        raise ValueError(f"min_batches must be >= 2 (a variance needs two batches), got {min_batches}")
    if not min_tours >= 0:
        raise ValueError(f"min_tours must be >= 0, got {min_tours}")
    n_stages = int(math.floor(math.log2(mod_factor_start / mod_factor_final) + 1e-12)) + 1
    schedule = tuple(mod_factor_start * 0.5**k for k in range(n_stages))
    system = CuAuSystem(size, eci=eci)
    n = system.n_sites
    n_batches = max(int(production_blocks), int(min_batches))
    block_moves = int(production_sweeps) * n // n_batches
    n_blocks = n_batches if block_moves > 0 else 0
    settings = dict(
        mod_factor_start=mod_factor_start,
        mod_factor_final=mod_factor_final,
        flatness=flatness,
        sweeps_per_check=sweeps_per_check,
        max_sweeps_per_stage=max_sweeps_per_stage,
        production_sweeps=production_sweeps,
        production_blocks=production_blocks,
        min_batches=min_batches,
        min_tours=min_tours,
        n_batches=n_blocks,
    )
    bar = None
    if progress:
        from lattherm.runlog import Progress

        bar = Progress(len(schedule) + n_blocks, f"metadynamics {size} T={T:g} K", "stages+batches")
    t0 = time.perf_counter()
    try:
        run = _run_clease if backend == "clease" else _run_numba
        bias, H_blocks, tours, sum_e, sum_e2, cnt, n_moves, converged = run(
            system,
            float(T),
            float(mu),
            schedule,
            flatness=flatness,
            check_every=max(1, int(sweeps_per_check)) * n,
            max_moves=int(max_sweeps_per_stage) * n,
            production=(n_blocks, block_moves),
            seed=int(seed),
            bar=bar,
            workdir=workdir,
        )
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    if not converged:
        log.warning(
            "metadynamics %s T=%g K: a stage hit max_sweeps_per_stage=%d before being flat (no row converged)",
            size,
            T,
            max_sweeps_per_stage,
        )
    e_cu = system.pure_energies().cu * n
    common = dict(T=T, mu=mu, e_all_cu=e_cu, n_sites=n)
    visits = H_blocks.sum(0)
    f_err = np.full(n + 1, np.nan)
    tau = np.full(n + 1, np.nan)
    row_ok = np.zeros(n + 1, dtype=bool)
    if n_blocks and np.all(visits > 0):
        f_x = free_energy_from_bias(bias, visits=visits, **common)
        f_err, tau, row_ok = batch_errors(H_blocks, tours, T=T, n_sites=n, min_tours=min_tours)
        row_ok &= bool(converged)
    else:
        if n_blocks:
            log.warning("metadynamics %s T=%g K: a bin was never visited in production", size, T)
            converged = False
        f_x = free_energy_from_bias(bias, **common)
    if n_blocks and converged and not row_ok.all():
        log.warning(
            "metadynamics %s T=%g K: %d of %d compositions not converged: %.2g traversals pure Cu <-> "
            "pure Au per batch (%d batches of %.0f sweeps), need %g per batch between pure Cu and each "
            "composition; run longer (production_sweeps)",
            size,
            T,
            int((~row_ok).sum()),
            n + 1,
            tours[:, n].mean(),
            n_blocks,
            block_moves / n,
            min_tours,
        )
    beta = 1.0 / (K_B_EV * T)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sum_e / cnt
        var = np.maximum(sum_e2 / cnt - mean**2, 0.0)
    return MetadynamicsResult(
        size=size,
        T=float(T),
        mu=float(mu),
        n_sites=n,
        bias=bias,
        visits=visits,
        f_x=f_x,
        f_x_err=f_err,
        u_x=np.where(cnt > 0, mean / n, np.nan),
        c_x=np.where(cnt > 1, beta**2 * var / n, np.nan),
        mod_factors=schedule,
        n_moves=int(n_moves),
        converged=bool(converged),
        wall_s=wall,
        backend=backend,
        seed=int(seed),
        settings=settings,
        batch_visits=H_blocks,
        batch_tours=tours,
        batch_sweeps=block_moves / n if n_blocks else float("nan"),
        tau_sweeps=tau,
        row_converged=row_ok,
    )


def batch_errors(
    batch_visits: np.ndarray, batch_tours: np.ndarray, *, T: float, n_sites: int, min_tours: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jackknife error, autocorrelation time and convergence flag of each row ``n`` of ``f_x``.

    ``batch_visits``, ``batch_tours``: (B, N+1) visits and tours of the B production batches
    (:class:`MetadynamicsResult`). Returns ``(f_x_err, tau_sweeps, ok)``, each (N+1,), see the
    module docstring: ``f_x_err[n]`` is the delete-one-batch jackknife standard error (eV/atom)
    of ``−k_B T (ln H(n) − ln H(0)) / N`` over the non-empty batches (0 at n = 0; NaN with fewer
    than two), ``tau_sweeps[n]`` the integrated autocorrelation time that this error implies
    (sweeps; NaN at n = 0), ``ok[n]`` whether the error is finite and the batches hold on
    average at least ``min_tours`` tours connecting pure Cu and ``n``.
    """
    H = np.asarray(batch_visits, dtype=np.float64)
    R = np.asarray(batch_tours, dtype=np.float64)
    if H.ndim != 2 or H.shape[1] != n_sites + 1 or R.shape != H.shape:
        raise ValueError(f"batch_visits and batch_tours must be (B, N + 1 = {n_sites + 1}), got {H.shape}, {R.shape}")
    full = H.sum(1) > 0
    H = H[full]
    B = H.shape[0]
    err = np.full(n_sites + 1, np.nan)
    tau = np.full(n_sites + 1, np.nan)
    if B >= 2:
        tot = H.sum(0)
        loo = tot[None, :] - H  # leave-one-out totals
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(loo) - np.log(loo[:, :1])  # ln H(n) − ln H(0), batch b left out
            var = (B - 1) / B * ((y - y.mean(0)) ** 2).sum(0)
            var[~np.all(loo > 0, axis=0) | ~np.all(loo[:, 0] > 0)] = np.nan
            # uncorrelated moves would give Var = (1/p_n + 1/p_0) / M (multinomial, M moves)
            p = tot / tot.sum()
            tau = tot.sum() * var / (2.0 * (1.0 / p + 1.0 / p[0])) / n_sites
        err = K_B_EV * T / n_sites * np.sqrt(var)
    err[0] = 0.0
    tau[0] = np.nan
    ok = np.isfinite(err) & (R.mean(0) >= min_tours)
    return err, tau, ok


def metadynamics_table(results: list[MetadynamicsResult] | MetadynamicsResult) -> pd.DataFrame:
    """One row per ``(T, n_au)``: ``system="cuau", size, T, field, n_au, x_au, f_x, f_x_err,
    f_x_formation, u_x, c_x, converged, tau_sweeps, batch_sweeps, method="metadynamics"``
    (eV/atom; ``c_x`` in k_B).

    ``field`` is the chemical potential μ of the walk (``f_x`` does not depend on it);
    ``f_x_formation = f_x − [x E_Au + (1 − x) E_Cu]`` with the CE's pure-end energies per site.
    ``f_x_err`` is the jackknife standard error over ``max(production_blocks, min_batches)``
    independent production batches (64 by default; whole tours between visits of pure Cu or
    pure Au; no Student-t rescaling: t₆₃ is within 1 % of normal at 1σ). ``converged`` is per
    row: the stages were flat and the batches hold on average >= ``min_tours`` (2) tours
    connecting pure Cu and the row's composition. Only ``converged`` rows' ``f_x_err`` is a
    claim (the exact value within a few error bars). ``tau_sweeps``: the integrated
    autocorrelation time (sweeps) that the row's error implies; ``batch_sweeps``: the length of
    one batch window (sweeps).
    """
    if isinstance(results, MetadynamicsResult):
        results = [results]
    frames = []
    for r in results:
        ref = CuAuSystem(r.size).pure_energies()
        x = r.x_au
        frames.append(
            pd.DataFrame(
                {
                    "system": "cuau",
                    "size": r.size,
                    "T": r.T,
                    "field": r.mu,
                    "n_au": r.n_au,
                    "x_au": x,
                    "f_x": r.f_x,
                    "f_x_err": r.f_x_err,
                    "f_x_formation": r.f_x - (x * ref.au + (1.0 - x) * ref.cu),
                    "u_x": r.u_x,
                    "c_x": r.c_x,
                    "converged": _row_flags(r),
                    "tau_sweeps": r.tau_sweeps if r.tau_sweeps.shape == x.shape else np.nan,
                    "batch_sweeps": r.batch_sweeps,
                    "method": "metadynamics",
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _row_flags(r: MetadynamicsResult) -> np.ndarray:
    if r.row_converged.shape == (r.n_sites + 1,):
        return r.row_converged
    return np.zeros(r.n_sites + 1, dtype=bool)  # a result without batch statistics claims nothing


# ---------------------------------------------------------------------------------- CLEASE


def _run_clease(system, T, mu, schedule, *, flatness, check_every, max_moves, production, seed, bar, workdir):
    from clease.calculator import attach_calculator
    from clease.montecarlo import BinnedBiasPotential, MetaDynamicsSampler, SGCMonteCarlo
    from clease.montecarlo.observers import ConcentrationObserver

    from lattherm.systems.cuau import clease_settings

    class _Sampler(MetaDynamicsSampler):
        """CLEASE's sampler with flatness over all bins every ``check_every`` moves, a move cap
        (``stop_after``), and, when ``collect`` (production), per-bin interaction-energy
        statistics and the tours between the ends (see :func:`_nb_stage`)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            nb = self.bias.nbins
            self.sum_e, self.sum_e2, self.cnt = np.zeros(nb), np.zeros(nb), np.zeros(nb)
            self.collect = False
            self.check_every = check_every
            self.stop_after = max_moves
            self.flat_test = True
            self.moves = self.total_moves = 0
            self.hit_cap = False
            self.tour = np.zeros(nb)  # visits since the last visit of an end
            self.tour_min = self.tour_max = 0
            self.batch = 0
            self.H_batches = self.tours = None

        def visit_is_flat(self):  # called by run() after every move
            self.moves += 1
            self.total_moves += 1
            if self.moves >= self.stop_after:
                self.hit_cap = self.flat_test
                return True
            if not self.flat_test or self.moves % self.check_every:
                return False
            h = self.visit_hist.get_coeff()
            avg = float(np.mean(h))
            return avg > 0 and float(np.min(h)) > self.flat_limit * avg

        def update(self):
            super().update()
            if self.collect:
                x = self.bias.getter(None)
                i = self.bias.get_index(x)
                # E_int = (sampled energy) − bias + μ Σs,  Σs = N (2x − 1)
                e = self.mc.current_energy - self.bias.evaluate(x) + mu * n_sites * (2 * x - 1)
                self.sum_e[i] += e
                self.sum_e2[i] += e * e
                self.cnt[i] += 1
                self.tour[i] += 1
                self.tour_min, self.tour_max = min(self.tour_min, i), max(self.tour_max, i)
                if i == 0 or i == n_sites:  # pure Cu or Au: the tour is complete
                    self.H_batches[self.batch] += self.tour
                    if self.tour_min == 0:
                        self.tours[self.batch, : self.tour_max + 1] += 1
                    self.tour[:] = 0
                    self.tour_min = self.tour_max = i

    n_sites = system.n_sites
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    own_tmp = None
    if workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="lattherm-metadyn-")
        workdir = own_tmp.name
    try:
        settings = clease_settings(system._export.shape, os.path.join(workdir, "clease.db"))
        atoms = settings.atoms.copy()
        atoms.symbols[:] = "Cu"  # start in pure Cu
        atoms = attach_calculator(settings, atoms, eci=dict(system.eci))
        mc = SGCMonteCarlo(atoms, T, symbols=["Au", "Cu"])
        mc.chemical_potential = {"c1_0": mu}
        conc = ConcentrationObserver(atoms, element="Au")
        bias = BinnedBiasPotential(xmin=-0.5 / n_sites, xmax=1.0 + 0.5 / n_sites, nbins=n_sites + 1, getter=conc)
        sampler = _Sampler(
            mc,
            bias,
            flat_limit=flatness,
            mod_factor=schedule[0],
            fname=os.path.join(workdir, "metadyn.json"),
        )
        sampler.log_freq = 1e9  # no periodic JSON dumps
        converged = True
        for mf in schedule:
            sampler.mod_factor = mf * K_B_EV * T  # CLEASE stores it in eV
            sampler.visit_hist.zero()
            sampler.moves = 0
            sampler.run(max_sweeps=None)
            converged &= not sampler.hit_cap
            if bar is not None:
                bar.update(1)
                bar.set_postfix(moves=sampler.total_moves)
        n_blocks, block_moves = production
        sampler.H_batches = np.zeros((n_blocks, n_sites + 1))
        sampler.tours = np.zeros((n_blocks, n_sites + 1))
        sampler.tour_min = sampler.tour_max = int(round(bias.getter(None) * n_sites))
        sampler.mod_factor = 0.0  # frozen bias
        sampler.flat_test, sampler.stop_after, sampler.collect = False, block_moves, True
        for b in range(n_blocks):
            sampler.batch = b
            sampler.moves = 0
            sampler.run(max_sweeps=None)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(moves=sampler.total_moves)
        if n_blocks:
            sampler.H_batches[-1] += sampler.tour  # the unfinished last tour
        values = np.array(bias.get_coeff(), dtype=np.float64)
        stats = (sampler.sum_e, sampler.sum_e2, sampler.cnt)
        return (values, sampler.H_batches, sampler.tours, *stats, sampler.total_moves, converged)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
        if own_tmp is not None:
            own_tmp.cleanup()


# ---------------------------------------------------------------------------------- numba


@numba.njit(cache=True)
def _nb_seed(seed):
    np.random.seed(seed)  # noqa: NPY002


@numba.njit(cache=True)
def _nb_stage(
    s, state, V, H, sum_e, sum_e2, cnt, rows, w, coef1, mu, beta, dv, flat, check_every, max_moves, collect, Hb, Rb, b
):
    """One Wang–Landau stage, or (``collect``) one window of the production run.

    ``s``: (N+1,) spins ±1 with s[N] = +1 (padding); ``state``: float64 [n_au, E_int, lowest and
    highest n_au of the current tour]. Stage: ``H`` is the visit histogram, flatness checked
    every ``check_every`` moves. Production (``collect``, ``dv = 0``): ``H`` holds the visits of
    the current *tour*, since the last visit of an end. Pure Cu and pure Au are single states,
    so each visit of one is a regeneration point of the Markov chain: it completes the tour,
    which is added to batch ``b`` (``Hb[b] += H``); a tour that touched pure Cu (started or
    ended there) also counts in ``Rb[b, k]`` for every ``k`` it reached. Returns (moves,
    flat_reached)."""
    N = s.shape[0] - 1
    M = w.shape[1]
    n_au = int(state[0])
    e = state[1]
    tour_min = int(state[2])
    tour_max = int(state[3])
    moves = 0
    flat_reached = False
    while moves < max_moves:
        i = np.random.randint(N)  # noqa: NPY002
        si = s[i]
        acc = 0.0
        for m in range(M):
            wm = w[i, m]
            if wm == 0.0:
                break
            acc += wm * s[rows[i, m, 0]] * s[rows[i, m, 1]] * s[rows[i, m, 2]] * s[rows[i, m, 3]]
        de = -2.0 * (coef1 * si + acc)
        n_new = n_au + 1 if si < 0 else n_au - 1
        d_tot = de + mu * 2.0 * si + V[n_new] - V[n_au]  # −μ ΔΣs, ΔΣs = −2 s_i
        if d_tot <= 0.0 or np.random.random() <= math.exp(-beta * d_tot):  # noqa: NPY002
            s[i] = -si
            n_au = n_new
            e += de
        V[n_au] += dv
        H[n_au] += 1.0
        moves += 1
        if collect:
            sum_e[n_au] += e
            sum_e2[n_au] += e * e
            cnt[n_au] += 1.0
            if n_au > tour_max:
                tour_max = n_au
            if n_au < tour_min:
                tour_min = n_au
            if n_au == 0 or n_au == N:
                for k in range(tour_min, tour_max + 1):
                    Hb[b, k] += H[k]
                    H[k] = 0.0
                    if tour_min == 0:
                        Rb[b, k] += 1.0
                tour_min = n_au
                tour_max = n_au
        elif moves % check_every == 0:
            hmin = H[0]
            hsum = 0.0
            for k in range(H.shape[0]):
                hsum += H[k]
                if H[k] < hmin:
                    hmin = H[k]
            if hsum > 0.0 and hmin > flat * hsum / H.shape[0]:
                flat_reached = True
                break
    state[0] = n_au
    state[1] = e
    state[2] = tour_min
    state[3] = tour_max
    return moves, flat_reached


def _run_numba(system, T, mu, schedule, *, flatness, check_every, max_moves, production, seed, bar, workdir):
    n = system.n_sites
    kT = K_B_EV * T
    rows = np.ascontiguousarray(system._flip_rows)
    w = np.ascontiguousarray(system._flip_w)
    coef1 = float(system._coef[system._i_c1])
    s = np.ones(n + 1)
    s[:n] = -1.0  # pure Cu
    state = np.array([0.0, system.pure_energies().cu * n, 0.0, 0.0])
    V = np.zeros(n + 1)
    H = np.zeros(n + 1)
    sum_e, sum_e2, cnt = np.zeros(n + 1), np.zeros(n + 1), np.zeros(n + 1)
    n_blocks, block_moves = production
    H_blocks = np.zeros((n_blocks, n + 1))
    tours = np.zeros((n_blocks, n + 1))
    _nb_seed(seed % 2**32)
    total, converged = 0, True
    for mf in schedule:
        H[:] = 0.0
        args = (rows, w, coef1, mu, 1.0 / kT, mf * kT, flatness, check_every, max_moves, False, H_blocks, tours, 0)
        moves, flat = _nb_stage(s, state, V, H, sum_e, sum_e2, cnt, *args)
        total += moves
        converged &= bool(flat)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(moves=total)
    H[:] = 0.0  # the current tour
    state[2:] = state[0]
    for b in range(n_blocks):  # frozen bias (update 0), batch window b
        args = (rows, w, coef1, mu, 1.0 / kT, 0.0, 2.0, block_moves, block_moves, True, H_blocks, tours, b)
        moves, _ = _nb_stage(s, state, V, H, sum_e, sum_e2, cnt, *args)
        total += moves
        if bar is not None:
            bar.update(1)
            bar.set_postfix(moves=total)
    if n_blocks:
        H_blocks[-1] += H  # the unfinished last tour
    # guard against drift of the running energy: recompute it from scratch and compare
    import torch

    x = torch.from_numpy((s[:n] > 0).astype(np.uint8))[None]
    e_exact = float(system.energy(x)[0])
    if abs(e_exact - state[1]) > 1e-8 * max(1.0, abs(e_exact)):
        raise RuntimeError(f"running energy drifted: {state[1]} vs {e_exact} from scratch")
    return V.copy(), H_blocks, tours, sum_e, sum_e2, cnt, total, converged


def metadynamics_scan(
    size: str, temperatures, *, seed: int, progress: bool = False, log=None, **settings
) -> pd.DataFrame:
    """Run :func:`run_metadynamics` at each temperature and return :func:`metadynamics_table`.

    Temperature ``i`` uses seed ``seed + i``; ``settings`` are passed on (mu, schedule, backend…).
    """
    results = []
    for i, T in enumerate(np.asarray(temperatures, dtype=float)):
        r = run_metadynamics(size, float(T), seed=int(seed) + i, progress=progress, **settings)
        if log is not None:
            log.info(
                "T = %g K: %d moves, %.1f s, stages flat %s, final mod factor %g, %d of %d compositions "
                "converged (%d batches of %.0f sweeps, %.3g traversals pure Cu <-> pure Au per batch, "
                "max autocorrelation time %.3g sweeps)",
                T,
                r.n_moves,
                r.wall_s,
                r.converged,
                r.mod_factors[-1] if len(r.mod_factors) else float("nan"),
                int(r.row_converged.sum()),
                r.n_sites + 1,
                r.batch_visits.shape[0],
                r.batch_sweeps,
                r.batch_tours[:, -1].mean() if r.batch_tours.size else float("nan"),
                np.nanmax(r.tau_sweeps) if np.isfinite(r.tau_sweeps).any() else float("nan"),
            )
        results.append(r)
    return metadynamics_table(results)
