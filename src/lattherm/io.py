"""Tables and files on disk: atomic Parquet writes, table schemas, sample packing.

Every output is written to a temporary file in the destination folder and renamed into place,
so a killed job never leaves a half-written table under ``results/``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "atomic_path",
    "write_table",
    "read_table",
    "THERMO_COLUMNS",
    "check_columns",
    "pack_states",
    "unpack_states",
]

#: leading columns of every thermodynamic table (DESIGN §6)
THERMO_COLUMNS = ("system", "size", "T", "field")


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
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


def write_table(df: pd.DataFrame, path: str | os.PathLike, *, required: Iterable[str] = THERMO_COLUMNS) -> None:
    """Write ``df`` to Parquet atomically after checking its required leading columns."""
    check_columns(df, required, what=str(path))
    with atomic_path(path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)


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
