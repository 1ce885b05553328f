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
    "check_columns",
    "pack_states",
    "unpack_states",
]

#: leading columns of every thermodynamic table (DESIGN §6)
THERMO_COLUMNS = ("system", "size", "T", "field")


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
    from lattherm.systems import UNITS

    meta: dict = {"lattherm_version": __version__}
    systems = sorted(set(df["system"])) if "system" in df.columns and len(df) else []
    if len(systems) == 1 and systems[0] in UNITS:
        meta["units"] = UNITS[systems[0]]
    elif systems:
        meta["units"] = {s: UNITS[s] for s in systems if s in UNITS}
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
