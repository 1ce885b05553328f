"""Energy models: every system satisfies :class:`lattherm.systems.base.System`."""

from __future__ import annotations

from lattherm.systems.base import SIZE_PATTERN, System, parse_size, reduced_energy, spin_sum
from lattherm.systems.ising import IsingSystem

__all__ = [
    "System",
    "IsingSystem",
    "make_system",
    "parse_size",
    "reduced_energy",
    "spin_sum",
    "SYSTEMS",
    "SIZE_PATTERN",
]

#: system names known to the workflow
SYSTEMS = ("ising", "cuau")


def make_system(name: str, size: str, **params) -> System:
    """Build a system from its name and size token (``make_system("ising", "8x8", J=1.0)``)."""
    dims = parse_size(size)
    if name == "ising":
        if len(dims) != 2 or dims[0] != dims[1] or dims[0] < 2:
            raise ValueError(f"Ising size must be 'LxL' with an integer L >= 2, got {size!r}")
        return IsingSystem(L=dims[0], **params)
    if name == "cuau":
        from lattherm.systems.cuau import CuAuSystem  # CLEASE import is slow: load on demand

        return CuAuSystem(size=size, **params)
    raise ValueError(f"unknown system {name!r}; expected one of {SYSTEMS}")
