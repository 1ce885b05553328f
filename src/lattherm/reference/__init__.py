"""Reference thermodynamics: exact (enumeration, transfer matrix, Kaufman, Onsager), Monte Carlo
(batched Metropolis, Wang–Landau) and CLEASE metadynamics for CuAu.

The workflow asks for a reference of a system by method name (the methods a system lists in its
:class:`~lattherm.systems.SystemInfo`); the functions below dispatch to the system's own
implementation, so that the rules and scripts stay the same for every system:

* :func:`exact_table` (method ``exact``): the DESIGN §6 table on a (T, field) grid;
* :func:`exact_composition_table` (method ``exact_composition``): canonical free energies per
  composition;
* :func:`wang_landau_tables` (method ``wang_landau``): field-0 thermodynamics and the density of
  states;
* :func:`field_integration_table` (method ``field_integration``): free energies at every field
  past the exact transfer matrix;
* :func:`beta_integration_table` (method ``beta_integration``): free energies by thermodynamic
  integration over β from β = 0 with replica-exchange Metropolis, where nothing exact applies
  (spin glasses past enumeration and the transfer matrix);
* :func:`couplings_table` (method ``couplings``): a disordered instance's couplings.

:func:`applies` says where a method is computed, :func:`free_energy_reference` which table the
metrics of a trained sampler compare with.

``params`` are the system's parameters from the config (e.g. Ising ``J``); ``settings`` the
method's config block.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = [
    "exact_table",
    "exact_composition_table",
    "wang_landau_tables",
    "field_integration_table",
    "beta_integration_table",
    "couplings_table",
    "applies",
    "free_energy_reference",
    "composition_reference",
]


def _no_method(system: str, method: str):
    from lattherm.systems import system_info

    listed = system_info(system).references
    return ValueError(f"no {method} reference for {system} (it has {list(listed)})")


def exact_table(
    system: str, size: str, T, field, *, params: Mapping | None = None, settings: Mapping | None = None
) -> pd.DataFrame:
    """The exact reference table of ``system`` at ``size`` on the grid ``T x field``."""
    params, settings = dict(params or {}), dict(settings or {})
    if system == "ising":
        from lattherm.reference.exact import ising_exact_table

        L = int(size.split("x")[0])
        return ising_exact_table(L, T, field, J=params.get("J", 1.0), max_transfer_L=settings.get("max_transfer_L", 14))
    if system == "cuau":
        from lattherm.reference.cuau_exact import cuau_exact_table

        TT, HH = np.meshgrid(np.asarray(T, float), np.asarray(field, float), indexing="ij")
        return cuau_exact_table(size, TT.ravel(), HH.ravel(), **params)
    if system == "chain":
        from lattherm.reference.exact import chain_exact_table

        return chain_exact_table(int(size), T, field, J=params.get("J", 1.0))
    if system == "ea":
        from lattherm.reference.spin_glass import ea_exact_table

        return ea_exact_table(size, T, field, **params)
    if system == "rrg":
        from lattherm.reference.exact import enumeration_table
        from lattherm.systems import make_system

        return enumeration_table(make_system(system, size, **params), T, field)
    raise _no_method(system, "exact")


def applies(system: str, method: str, size: str, settings: Mapping, fields=None) -> bool:
    """Whether the reference ``method`` is computed for ``system`` at ``size`` (``settings``: the
    config's ``reference`` block; ``fields``: the field grid there, if known): the methods the
    system lists, where they apply. Exact tables exist where the system has them (Ising: the
    transfer matrix up to ``exact.max_transfer_L``, Kaufman's field-0 rows above); field
    integration fills the nonzero fields of Ising tori above it; β integration the sizes without
    an exact table."""
    from lattherm.systems import system_info

    info = system_info(system)
    if method not in info.references or method == "metadynamics":
        return False  # metadynamics: at the cells of reference.metadynamics
    if method.startswith("exact"):
        return info.has_exact(size)
    if method == "beta_integration":
        return not info.has_exact(size)
    if method == "field_integration":
        nonzero = fields is None or any(float(h) != 0 for h in fields)
        return info.parse(size)[0] > settings["exact"]["max_transfer_L"] and nonzero
    return True


def composition_reference(system: str, size: str, settings: Mapping) -> str | None:
    """The method whose table holds the free energies per composition ``f_x`` at ``system`` and
    ``size`` (``settings``: the config's ``reference`` block): exact enumeration where it applies,
    else metadynamics at its configured cells, else none."""
    from lattherm.systems import system_info

    if applies(system, "exact_composition", size, settings):
        return "exact_composition"
    if "metadynamics" in system_info(system).references and size in settings["metadynamics"]["sizes"]:
        return "metadynamics"
    return None


def free_energy_reference(system: str, size: str, settings: Mapping, fields=None) -> str | None:
    """The method whose table holds the free energies of the metrics of ``system`` at ``size``
    (``fields``: the grid's fields): field integration where it applies (every field), else the
    exact table where one exists, else β integration."""
    for method in ("field_integration", "exact", "beta_integration"):
        if applies(system, method, size, settings, fields):
            return method
    return None


def field_integration_table(
    system: str, size: str, T, field, *, params: Mapping | None = None, settings: Mapping, seed: int,
    progress: bool = False,
) -> pd.DataFrame:
    """f(T, h) past the exact transfer matrix by MBAR over a field ladder from Kaufman's f(T, 0)
    (:func:`lattherm.reference.integration.ising_field_integration`)."""
    if system == "ising":
        from lattherm.reference.integration import ising_field_integration

        L = int(size.split("x")[0])
        return ising_field_integration(L, T, field, J=dict(params or {}).get("J", 1.0), seed=seed, progress=progress,
                                       **settings)  # fmt: skip
    raise _no_method(system, "field_integration")


def beta_integration_table(
    system: str, size: str, T, field, *, params: Mapping | None = None, settings: Mapping, seed: int,
    progress: bool = False,
) -> pd.DataFrame:
    """f(T, h) by thermodynamic integration over β from β = 0, replica-exchange Metropolis at every
    node (:func:`lattherm.reference.integration.beta_integration`; ``settings``: its keywords)."""
    from lattherm.systems import make_system, system_info

    if "beta_integration" not in system_info(system).references:
        raise _no_method(system, "beta_integration")
    from lattherm.reference.integration import beta_integration

    return beta_integration(make_system(system, size, **dict(params or {})), T, field, seed=seed, progress=progress,
                            **settings)  # fmt: skip


def couplings_table(system: str, size: str, *, params: Mapping | None = None) -> pd.DataFrame:
    """The couplings ``i, j, J`` of a disordered system's instance (row-major sites), with
    ``system, size`` leading."""
    from lattherm.systems import make_system

    table = make_system(system, size, **dict(params or {})).couplings_table()
    table.insert(0, "size", size)
    table.insert(0, "system", system)
    return table


def exact_composition_table(system: str, size: str, T, *, params: Mapping | None = None) -> pd.DataFrame:
    """Exact canonical free energies per composition of ``system`` at ``size`` (CuAu)."""
    if system == "cuau":
        from lattherm.reference.cuau_exact import cuau_exact_composition_table

        return cuau_exact_composition_table(size, T, **dict(params or {}))
    raise _no_method(system, "exact_composition")


def wang_landau_tables(
    system: str, size: str, T, *, params: Mapping | None = None, settings: Mapping, seed: int, progress: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    """``(table, density-of-states table, result)`` of a Wang–Landau run (Ising)."""
    if system == "ising":
        from lattherm.reference.wang_landau import wang_landau, wang_landau_dos_table, wang_landau_table

        L = int(size.split("x")[0])
        result = wang_landau(L, J=dict(params or {}).get("J", 1.0), seed=seed, progress=progress, **settings)
        return wang_landau_table(result, T), wang_landau_dos_table(result), result
    raise _no_method(system, "wang_landau")
