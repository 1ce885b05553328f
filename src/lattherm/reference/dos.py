"""Thermodynamics from a (joint) density of states, in log space.

Given levels ``(E_k, M_k)`` with multiplicities ``g_k`` (``log_g``), the semi-grand partition
function at ``(T, field)`` is ``Z = Σ_k g_k exp(−β(E_k − field·M_k))`` with ``M = Σ_i s_i``.
Conventions (DESIGN §3): ``f = −k_B T ln Z / N`` includes the field term; ``u = ⟨E_int⟩/N`` and
``c = β² Var(E_int)/N`` are of the interaction energy alone, also at nonzero field; ``m = ⟨M⟩/N``.

Used by exact enumeration (``lattherm.reference.exact``) and Wang–Landau
(``lattherm.reference.wang_landau``), whose DOS has no ``M`` (field 0 only).
"""

from __future__ import annotations

import numpy as np

__all__ = ["thermo_from_dos"]


def thermo_from_dos(
    energy: np.ndarray,
    log_g: np.ndarray,
    T: np.ndarray | float,
    field: np.ndarray | float = 0.0,
    spin_sum: np.ndarray | None = None,
    *,
    n_sites: int,
    k_B: float = 1.0,
    chunk: int = 64,
) -> dict[str, np.ndarray]:
    """``f, u, c, m`` (per site) and ``log_Z`` at every point of ``broadcast(T, field)``.

    Args:
        energy: ``(K,)`` interaction energies ``E_int`` of the levels.
        log_g: ``(K,)`` natural log of each level's multiplicity (``-inf`` for empty levels).
        T, field: temperatures (> 0) and fields; broadcast against each other.
        spin_sum: ``(K,)`` ``Σ s`` of each level; ``None`` for an energy-only DOS, which then
            requires ``field == 0`` everywhere and returns ``m = nan``.
        n_sites: number of sites N.
        k_B: Boltzmann constant in the units of ``energy`` per unit of ``T``.
        chunk: points evaluated at once (memory ``chunk × K``).
    """
    E = np.asarray(energy, dtype=np.float64).ravel()
    lg = np.asarray(log_g, dtype=np.float64).ravel()
    if E.shape != lg.shape:
        raise ValueError(f"energy and log_g must have the same length, got {E.shape} and {lg.shape}")
    T_b, h_b = np.broadcast_arrays(np.asarray(T, dtype=np.float64), np.asarray(field, dtype=np.float64))
    if np.any(~(T_b > 0)):
        raise ValueError(f"temperatures must be > 0, got min {T_b.min()}")
    if spin_sum is None:
        if np.any(h_b != 0):
            raise ValueError("an energy-only density of states gives thermodynamics at field 0 only")
        M = np.zeros_like(E)
    else:
        M = np.asarray(spin_sum, dtype=np.float64).ravel()
        if M.shape != E.shape:
            raise ValueError(f"spin_sum must have the length of energy, got {M.shape} and {E.shape}")
    keep = np.isfinite(lg)
    E, M, lg = E[keep], M[keep], lg[keep]
    # centre E and M so that exponents and variances stay well conditioned
    E0 = 0.5 * (E.max() + E.min())
    Tf, hf = T_b.ravel(), h_b.ravel()
    out = {k: np.empty(Tf.shape) for k in ("log_Z", "f", "u", "c", "m")}
    for s in range(0, len(Tf), chunk):
        t, h = Tf[s : s + chunk, None], hf[s : s + chunk, None]
        beta = 1.0 / (k_B * t)
        logw = lg[None, :] - beta * ((E[None, :] - E0) - h * M[None, :])  # (P, K)
        mx = logw.max(axis=1, keepdims=True)
        w = np.exp(logw - mx)
        Zs = w.sum(axis=1, keepdims=True)
        p = w / Zs
        log_Z = (mx + np.log(Zs))[:, 0] + (-beta[:, 0] * E0)
        u = (p * E[None, :]).sum(axis=1)
        var = (p * (E[None, :] - u[:, None]) ** 2).sum(axis=1)
        out["log_Z"][s : s + chunk] = log_Z
        out["f"][s : s + chunk] = -k_B * t[:, 0] * log_Z / n_sites
        out["u"][s : s + chunk] = u / n_sites
        out["c"][s : s + chunk] = beta[:, 0] ** 2 * var / n_sites
        out["m"][s : s + chunk] = (p * M[None, :]).sum(axis=1) / n_sites if spin_sum is not None else np.nan
    return {k: v.reshape(T_b.shape) for k, v in out.items()}
