"""Tables and files on disk: atomic Parquet writes, table schemas, provenance, sample packing.

Every output is written to a temporary file in the destination folder and renamed into place,
so a killed job never leaves a half-written table under ``results/``. Every Parquet table
carries, in its file metadata under the key ``lattherm`` (JSON; :func:`read_metadata`), the
package version, the units of its system's columns, and the provenance of the job that wrote it
(job name, seed, config hash: :func:`provenance`, set by :func:`lattherm.runlog.job_log`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "atomic_path",
    "write_table",
    "read_table",
    "read_metadata",
    "provenance",
    "THERMO_COLUMNS",
    "COLUMNS",
    "check_columns",
    "row_at",
    "rows_at",
    "pack_states",
    "unpack_states",
]

#: leading columns of every thermodynamic table (DESIGN §6)
THERMO_COLUMNS = ("system", "size", "T", "field")

#: what every column of the project's tables means; per-site quantities are in the units that the
#: table's metadata records for its system (lattherm.systems.REGISTRY): Ising J per site, CuAu eV/atom
COLUMNS = {
    "system": "energy model: ising, cuau",
    "size": "size token: Ising LxL torus, CuAu n1xn2xn3 repeats of the primitive FCC cell",
    "T": "temperature (Ising J/k_B, CuAu K)",
    "field": "field h (Ising) or Au chemical potential μ in eV (CuAu), weight exp(−β(E_int − field Σs))",
    "f": "free energy per site −k_B T ln Z / N (field term in Z: for CuAu the semi-grand potential φ = u − Ts − μm)",
    "u": "interaction energy per site ⟨E_int⟩/N",
    "c": "heat capacity per site β² Var(E_int)/N, in units of k_B",
    "m": "magnetisation per site ⟨Σs⟩/N (CuAu: Au +1, Cu −1)",
    "abs_m": "⟨|Σs|⟩/N",
    "x_au": "Au fraction ⟨N_Au⟩/N = (1 + m)/2",
    "phi_form": "φ − [x_au E_Au + (1 − x_au) E_Cu]: semi-grand potential from the pure-end tie line (+μ for pure Cu)",
    "u_form": "formation energy per atom ⟨E_int − N_Au E_Au − N_Cu E_Cu⟩/N (pure-end energies per atom)",
    "n_au": "number of Au atoms of the composition bin",
    "f_x": "canonical free energy per atom at fixed composition −k_B T ln Z(n_au)/N (μ-independent)",
    "f_x_formation": "f_x − [x_au E_Au + (1 − x_au) E_Cu]",
    "u_x": "interaction energy per atom at fixed composition",
    "c_x": "heat capacity per atom at fixed composition, in units of k_B",
    "method": "how the row was computed (transfer_matrix, kaufman, enumeration, mcmc, wang_landau, ...)",
    "converged": "the row passed its convergence diagnostic; rows with false are not claimed accurate",
    "tau_E": "integrated autocorrelation time of E_int, in samples",
    "tau_M": "integrated autocorrelation time of Σs, in samples",
    "n_samples": "samples behind the row",
    "n_chains": "independent Markov chains per condition",
    "x_lo": "lower composition bound of a two-phase interval",
    "x_hi": "upper composition bound of a two-phase interval",
    "phase_lo": "phase label at x_lo",
    "phase": ("a phase's name; in a refined composition table, the phase most of the chains' states at (T, n_au) "
              "are in, by their sublattice order parameters"),
    "eta": "mean largest |η_a| of the states at (T, n_au) (sublattice order parameters: 1/2 L1_2, 1 L1_0)",
    "ordered_frac": "fraction of the states at (T, n_au) in an ordered phase (L1_2 or L1_0 by their order parameters)",
    "phase_hi": "phase label at x_hi",
    "n_inside": "composition bins strictly inside the two-phase interval (off the lower hull of f_x)",
    "depth": "largest height of f_x above its lower convex hull inside the interval (eV/atom)",
    "model": "neural sampler architecture",
    "source": "how the samples were drawn: direct (ancestral on the trained size), outpaint-<size0> (out-painted "
              "by the model trained at size0), transfer-<size0> (the size0 model's weights on this box)",
    "symmetrised": "Ising: samples of the global-flip mixture q_sym (both magnetisation sectors)",
    "n_orders": "random orders per sample in the mixture (any-order models); 1 for fixed-order models",
    "order": "generation order: fixed or random",
    "log_q": "exact log-probability of the sample under the procedure that drew it",
    "energy": "E_int of the configuration",
    "spin_sum": "Σ s_i of the configuration",
    "configuration": "packed site states, 8 sites per byte, site 0 in bit 0 (lattherm.io.unpack_states)",
    "f_var": "variational free energy per site −k_B T mean(log w)/N, an upper bound of f",
    "f_nis": "importance-sampled free energy per site −k_B T (logsumexp(log w) − log n)/N",
    "f_nis_err": "bootstrap standard error of f_nis",
    "ness": "normalised effective sample size (Σw)²/(n Σw²)",
    "f_ref": "reference free energy per site",
    "f_ref_err": "the reference's one-sigma error of f (0 for exact tables)",
    "ref_method": "the reference's method",
    "delta_f": "f_nis − f_ref (f_est − f_ref in rows of another estimator)",
    "f_est": "the row's estimator's free energy per site",
    "f_est_err": "one-sigma error of f_est",
    "est_draws": "draws of the sampler behind f_est (one energy evaluation each)",
    "est_sweeps": "Metropolis sweeps of one particle behind f_est",
    "est_wall_s": "wall seconds of the estimate (NaN for importance sampling: its cost is the sampling job's)",
    "est_converged": "whether f_est's error bar is trusted (importance sampling: at least 50 effective samples)",
    "imh_u": "u from the independent Metropolis–Hastings chain over the samples (lattherm.neural_mcmc)",
    "imh_c": "c from the independent Metropolis–Hastings chain over the samples",
    "imh_m": "m from the independent Metropolis–Hastings chain over the samples",
    "imh_abs_m": "⟨|Σs|⟩/N from the independent Metropolis–Hastings chain over the samples",
    "imh_acceptance": "acceptance rate of the independent Metropolis–Hastings chain",
    "imh_n_effective": "effective samples of the chain (kept samples / τ, at most the accepted moves + 1)",
    "imh_converged": "whether the chain has at least 50 effective samples",
    "burn_in_sweeps": "Metropolis sweeps discarded before the first kept sample",
    "thin_sweeps": "Metropolis sweeps between kept samples",
    "r": "lattice distance along an axis of the torus",
    "G": "two-point function ⟨s_i s_(i+r)⟩ averaged over the sites and both axes (not connected)",
    "G_err": "standard error of G over independent chains",
    "f_err": "one-sigma statistical error of f (with the discretisation estimate where a quadrature is used)",
    "f0": "the exact free energy at field 0 the field integration starts from (Kaufman)",
    "log_z_ratio": "ln Z(T, h) − ln Z(T, 0) from MBAR over the field ladder",
    "log_z_ratio_err": "one-sigma error of log_z_ratio (jackknife over groups of chains)",
    "overlap": "smallest overlap coefficient of neighbouring fields' Σs distributions on the path from 0",
    "error_ess": "independent fluctuations behind the error bar (at least 5 for a claimed error)",
    "n_fields": "fields of the MBAR ladder",
    "excluded_fields": "ladder fields left out of the MBAR because their chains did not mix",
    "n_temperatures": "temperatures of the replica-exchange ladder",
    "wall_s": "wall time of the computation in seconds",
    "spin_flips": "attempted single-spin flips, the Monte Carlo cost",
    "diagnosis": "why a row is not converged (empty when it is)",
    "estimator": "which estimate the row reports (metric tables: nis, smc; refined: bar; MCMC: sweeps or ladder)",
    "bar_overlap": ("draws crossing between the q and p sides of Bennett's estimate (at least 50 to claim it alone, "
                    "20 to anchor the ladder)"),
    "rhat": "split-R̂ of the row's Monte Carlo series (1 when the chains agree)",
    "frac_up": "fraction of a composition window's sweeps at its upper composition n + 1",
    "d_ln_z": "ln Z_(n+1) − ln Z_n (canonical, raw CE energy) from a composition window",
    "d_ln_z_err": "one-sigma error of d_ln_z (the spread between the window's chains)",
    "f_x_method": ("where f_x comes from: semi-grand (ln Z_μ and the chains' histogram), ladder (composition "
                   "windows) or empty"),
    "ladder_p": "chi-square p-value of the ladder fit the row's estimate comes from (claimed from 1e-3)",
    "anchor_p": ("chi-square p-value of the sampler's ln Z_μ against the composition ladder between the exact "
                 "pure-element ends (a check: NaN without an anchor)"),
    "sweeps": "sweeps a composition window's chains ran, burn-in included (doubled for each rerun)",
    "f_windows": ("semi-grand free energy per site at (T, μ) from the composition windows' ladder between the exact "
                  "pure-element ends (NaN where it is not claimed at every composition)"),
    "f_windows_err": ("upper bound on the one-sigma error of f_windows (its compositions' errors taken fully "
                      "correlated)"),
    "train_steps": "training steps of the sampler's model",
    "train_s": "training wall time in seconds (every call of a resumed training)",
    "s_per_step": "training wall time per step in seconds",
    "train_peak_mb": "peak resident memory of the training job in MB (NaN: not recorded)",
    "sample_s": "wall time of the sampling job in seconds (loading, sampling at every condition, writing)",
    "samples_per_s": "configurations drawn per second by the sampling job, with their exact log q",
    "sample_peak_mb": "peak resident memory of the sampling job in MB (NaN: not recorded)",
}


def _umask() -> int:
    """The process's umask (read without changing it where Linux allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched. The file gets
    the permissions of a plainly created one (``0666`` less the umask: ``0644`` under umask 022),
    so that collaborators can read results on a shared file system.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_columns(df: pd.DataFrame, required: Iterable[str], what: str = "table") -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing columns {missing}; it has {list(df.columns)}")


def rows_at(df: pd.DataFrame, T: float, field: float) -> pd.DataFrame:
    """The rows of a table at the condition ``(T, field)`` (equal to 1e-9: grids are rounded)."""
    return df[np.isclose(df["T"], T, rtol=0, atol=1e-9) & np.isclose(df["field"], field, rtol=0, atol=1e-9)]


def row_at(df: pd.DataFrame | None, T: float, field: float, *, what: str = "reference") -> pd.Series | None:
    """The one row of a table at ``(T, field)``: None where it has none (or there is no table), an
    error where it has several."""
    if df is None:
        return None
    hit = rows_at(df, T, field)
    if len(hit) > 1:
        raise ValueError(f"{what} has {len(hit)} rows at T={T}, field={field}; expected one")
    return None if hit.empty else hit.iloc[0]


#: provenance stamped into every table written in the current job (see :func:`provenance`)
_PROVENANCE: ContextVar[dict | None] = ContextVar("lattherm_provenance", default=None)

#: metadata key of the lattherm record in a Parquet file
METADATA_KEY = b"lattherm"


@contextmanager
def provenance(**values):
    """Within the block, every table written by :func:`write_table` records ``values`` (e.g. job,
    seed, config_hash) in its metadata."""
    token = _PROVENANCE.set({**(_PROVENANCE.get() or {}), **values})
    try:
        yield
    finally:
        _PROVENANCE.reset(token)


def table_metadata(df: pd.DataFrame, extra: Mapping | None = None) -> dict:
    """The ``lattherm`` metadata record of a table: version, units of its system, provenance."""
    from lattherm import __version__
    from lattherm.systems import REGISTRY

    meta: dict = {"lattherm_version": __version__}
    systems = sorted(set(df["system"])) if "system" in df.columns and len(df) else []
    if len(systems) == 1 and systems[0] in REGISTRY:
        meta["units"] = dict(REGISTRY[systems[0]].units)
    elif systems:
        meta["units"] = {s: dict(REGISTRY[s].units) for s in systems if s in REGISTRY}
    return {**meta, **(_PROVENANCE.get() or {}), **(extra or {})}


def write_table(
    df: pd.DataFrame,
    path: str | os.PathLike,
    *,
    required: Iterable[str] = THERMO_COLUMNS,
    metadata: Mapping | None = None,
) -> None:
    """Write ``df`` to Parquet atomically after checking its required leading columns; the file's
    metadata records :func:`table_metadata` (with ``metadata`` added)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_columns(df, required, what=str(path))
    table = pa.Table.from_pandas(df, preserve_index=False)
    record = json.dumps(table_metadata(df, metadata), default=str).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: record})
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def read_metadata(path: str | os.PathLike) -> dict:
    """The ``lattherm`` metadata record of a Parquet table ({} for a file without one)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else {}


def read_table(path: str | os.PathLike, *, required: Iterable[str] = THERMO_COLUMNS) -> pd.DataFrame:
    """Read a Parquet table with a clear error for a missing or corrupt file."""
    try:
        df = pd.read_parquet(path)
    except FileNotFoundError:
        raise
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise ValueError(f"{path} is not a readable Parquet table ({type(err).__name__}: {err})") from err
    check_columns(df, required, what=str(path))
    return df


def pack_states(x: np.ndarray) -> np.ndarray:
    """``(B, N)`` 0/1 states → ``(B, ceil(N/8))`` uint8, bit order little (site 0 is bit 0)."""
    return np.packbits(np.asarray(x, dtype=np.uint8), axis=1, bitorder="little")


def unpack_states(packed: np.ndarray, n_sites: int) -> np.ndarray:
    """Inverse of :func:`pack_states`."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1, count=n_sites, bitorder="little")


def write_with(path: str | os.PathLike, writer: Callable[[Path], None], suffix: str | None = None) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path, suffix=suffix) as tmp:
        writer(tmp)
