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
    "UNITS",
    "SIZE_PATTERN",
]

#: system names known to the workflow
SYSTEMS = ("ising", "cuau")

#: units of each system's table columns (recorded in every Parquet file's metadata)
UNITS = {
    "ising": {
        "T": "J/k_B",
        "field": "J (field h)",
        "energy": "J (E_int of a configuration)",
        "per-site f, u, f_var, f_nis, f_est, f_ref, delta_f": "J per site",
        "c": "k_B per site",
        "m, abs_m": "per site",
    },
    "cuau": {
        "T": "K",
        "field": "eV (Au chemical potential μ, weight exp(−β(E − μ Σs)))",
        "energy": "eV (cluster-expansion E_int of a configuration)",
        "per-site f, u, u_form, phi_form, f_x, f_var, f_nis, f_est, f_ref, delta_f": "eV per atom",
        "c": "k_B per atom",
        "m": "per atom (Au +1, Cu −1)",
        "x_au": "Au fraction",
    },
}


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
