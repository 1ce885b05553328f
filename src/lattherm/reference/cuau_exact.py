"""Exact CuAu thermodynamics on small cells (2x2x4: 16 sites) by enumerating all 2^N states.

Energies are the raw cluster-expansion total energies ``E_int`` (eV) of
:class:`lattherm.systems.cuau.CuAuSystem`; the chemical potential ``μ`` enters as CLEASE's
``SGCMonteCarlo`` does, ``exp(−β(E_int − μ Σ_i s_i))`` with ``Σ s = N_Au − N_Cu = 2 n_Au − N``.
``k_B = ase.units.kB`` (eV/K). The states are grouped into exact levels ``(E, Σs)`` (identical
cluster counts give bit-identical energies) and passed to
:func:`lattherm.reference.dos.thermo_from_dos`.

Two tables:

- :func:`cuau_exact_table`: the semi-grand (``T``, ``μ``) table of DESIGN §6 with ``f`` (the
  grand potential per site ``−k_B T ln Z / N``), ``u``, ``c``, ``m`` and ``x_au = (m + 1)/2``,
  plus ``phi_form`` (definition in its docstring).
- :func:`cuau_exact_composition_table`: canonical free energies per site at every composition
  ``n_au = 0..N``, ``f_x = −k_B T ln Z(n_au) / N`` with ``Z(n_au) = Σ_{x: N_Au = n_au} exp(−β E)``
  (configurational entropy included, μ-independent), plus ``f_x_formation``.

They are tied by ``ln Z(μ) = logsumexp_n [ln Z(n) + β μ (2n − N)]``.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from lattherm.reference.dos import thermo_from_dos
from lattherm.reference.exact import enumerate_levels
from lattherm.systems.cuau import CuAuSystem

__all__ = [
    "cuau_levels",
    "cuau_exact_table",
    "cuau_exact_composition_table",
]


def cuau_levels(system: CuAuSystem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact joint levels of all ``2^N`` states: ``(E_int, spin_sum, log_g)`` as float64 arrays.

    Thin wrapper of :func:`lattherm.reference.exact.enumerate_levels` (N <= 24): identical
    cluster counts give bit-identical energies, so exact-equality merging is lossless.
    """
    levels = enumerate_levels(system)
    return levels.energy, levels.spin_sum, levels.log_count


@functools.lru_cache(maxsize=4)
def _levels_for(
    size: str, eci_items: tuple | None
) -> tuple[CuAuSystem, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    system = CuAuSystem(size=size, eci=None if eci_items is None else dict(eci_items))
    return system, cuau_levels(system)


def _levels(size: str, eci: dict[str, float] | None):
    return _levels_for(size, None if eci is None else tuple(sorted(eci.items())))


def cuau_exact_table(
    size: str,
    T: np.ndarray | float,
    mu: np.ndarray | float = 0.0,
    *,
    eci: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Exact semi-grand thermodynamics of the CuAu CE on a small cell, one row per ``(T, μ)``.

    Args:
        size: cell token (``"2x2x4"``; N <= 24 sites).
        T: temperatures in K; ``mu``: chemical potentials in eV (CLEASE's ``chem_pot``). The two
            broadcast against each other (pass a meshgrid for a full grid); rows are in
            flattened broadcast order.
        eci: ECIs (published ones when ``None``).

    Columns: ``system="cuau", size, T, field`` (= μ, eV), ``f, u, c, m`` per DESIGN §3 (eV/site;
    ``c`` in units of k_B), ``x_au = (m + 1)/2 = ⟨N_Au⟩/N``, ``phi_form``,
    ``method="enumeration"``.

    ``f`` is the semi-grand potential per atom, ``φ = −k_B T ln Z / N = u − T s − μ m`` (the μ term
    is in Z). ``phi_form`` is that semi-grand potential with the energy zero moved onto the pure-end
    tie line at the ensemble's mean composition:

        phi_form = φ − [x_au E_Au + (1 − x_au) E_Cu] = u_form − T s − μ m

    (``E_Au``, ``E_Cu``: CE energies per atom of the pure ends; ``u_form`` the mean formation
    energy). In the pure-Cu limit (``m → −1``) it tends to ``+μ``, in the pure-Au limit to ``−μ``:
    a semi-grand potential, not a formation free energy. Adding ``μ m`` back gives
    ``u_form − T s``, which in the thermodynamic limit equals ``f_x_formation`` of
    :func:`cuau_exact_composition_table` at ``x = x_au``. It is *not* the semi-grand potential of
    the formation-energy Hamiltonian at the same μ (that Hamiltonian differs from ``E_int`` by a
    term linear in ``Σs``, i.e. by a shift of μ).
    """
    system, (E, M, log_g) = _levels(size, eci)
    n = system.n_sites
    T_b, mu_b = np.broadcast_arrays(
        np.asarray(T, dtype=np.float64), np.asarray(mu, dtype=np.float64)
    )
    th = thermo_from_dos(E, log_g, T_b, mu_b, M, n_sites=n, k_B=system.k_B)
    ref = system.pure_energies()
    x_au = (th["m"].ravel() + 1.0) / 2.0
    f = th["f"].ravel()
    return pd.DataFrame(
        {
            "system": "cuau",
            "size": size,
            "T": T_b.ravel().astype(np.float64),
            "field": mu_b.ravel().astype(np.float64),
            "f": f,
            "u": th["u"].ravel(),
            "c": th["c"].ravel(),
            "m": th["m"].ravel(),
            "x_au": x_au,
            "phi_form": f - (x_au * ref.au + (1.0 - x_au) * ref.cu),
            "method": "enumeration",
        }
    )


def cuau_exact_composition_table(
    size: str,
    T: np.ndarray | float,
    *,
    eci: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Exact canonical free energies per site at every composition, one row per ``(T, n_au)``.

    ``f_x = −k_B T ln Z(n_au) / N`` (eV/atom) with ``Z(n_au) = Σ_{x: N_Au = n_au} exp(−β E_int(x))``
    — the raw CE energy, configurational entropy included, independent of μ — and
    ``f_x_formation = f_x − [x_au E_Au + (1 − x_au) E_Cu]`` with ``x_au = n_au / N``.
    Columns: ``system, size, T, n_au, x_au, f_x, f_x_formation``.
    """
    system, (E, M, log_g) = _levels(size, eci)
    n = system.n_sites
    ref = system.pure_energies()
    T_arr = np.atleast_1d(np.asarray(T, dtype=np.float64)).ravel()
    if np.any(~(T_arr > 0)):
        raise ValueError(f"temperatures must be > 0, got min {T_arr.min()}")
    n_au_of_level = np.rint((M + n) / 2).astype(np.int64)
    n_au = np.arange(n + 1)
    rows = []
    for t in T_arr:
        beta = 1.0 / (system.k_B * t)
        logw = log_g - beta * E
        log_z = np.full(n + 1, -np.inf)
        for k in n_au:
            sel = logw[n_au_of_level == k]
            if sel.size:
                mx = sel.max()
                log_z[k] = mx + np.log(np.exp(sel - mx).sum())
        f_x = -system.k_B * t * log_z / n
        x = n_au / n
        rows.append(
            pd.DataFrame(
                {
                    "system": "cuau",
                    "size": size,
                    "T": t,
                    "n_au": n_au,
                    "x_au": x,
                    "f_x": f_x,
                    "f_x_formation": f_x - (x * ref.au + (1.0 - x) * ref.cu),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)
