"""Exact Ising references against each other, against hand-computable cases and known limits.

Tolerances: ``u, c, m`` are O(1) per-site quantities and compared in absolute terms; ``f`` grows
like ``T ln 2`` and is compared relative to ``|f|`` (it is >= ~2 everywhere here). Every
tolerance sits at least two orders of magnitude above the deviations measured when it was set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lattherm.reference.exact import (
    T_C,
    enumerate_levels,
    enumerate_states,
    exact_thermodynamics,
    ising_exact_table,
    ising_kaufman,
    ising_transfer_matrix,
    onsager_energy,
    onsager_free_energy,
)
from lattherm.systems import IsingSystem

CATALAN = 0.915965594177219015054603514932384110774
K_C = 0.5 * np.log1p(np.sqrt(2.0))


def assert_thermo_close(got, ref, keys="fucm", f_rtol=1e-12, atol=1e-10, where=""):
    for k in keys:
        if k == "f":
            np.testing.assert_allclose(got[k], ref[k], rtol=f_rtol, atol=0, err_msg=f"f {where}")
        else:
            np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=atol, err_msg=f"{k} {where}")


# --------------------------------------------------------------------------- enumeration
def test_enumerate_states_bit_order_and_chunks():
    chunks = list(enumerate_states(5, chunk_size=7))
    x = torch.cat(chunks)
    assert x.dtype == torch.uint8 and x.shape == (32, 5)
    assert [c.shape[0] for c in chunks] == [7, 7, 7, 7, 4]
    k = (x.to(torch.int64) << torch.arange(5)).sum(1)
    assert torch.equal(k, torch.arange(32))  # configuration k has site i = bit i of k


def test_enumerate_states_refuses_large_systems():
    with pytest.raises(ValueError, match="n_sites must be <= 24"):
        next(enumerate_states(25))


def test_enumerate_levels_normalisation_and_symmetry():
    lev = enumerate_levels(IsingSystem(4), chunk_size=5000)  # chunks that do not divide 2^16
    assert lev.count.sum() == 2**16
    assert np.isclose(np.exp(lev.log_count).sum(), 2**16, rtol=1e-14)
    # levels are distinct pairs; the spectrum is symmetric under the global flip M -> -M
    pairs = set(zip(lev.energy.tolist(), lev.spin_sum.tolist(), strict=True))
    assert len(pairs) == len(lev.energy)
    flipped = dict(
        zip(
            zip(lev.energy.tolist(), (-lev.spin_sum).tolist(), strict=True),
            lev.count.tolist(),
            strict=True,
        )
    )
    assert all(
        flipped[(e, m)] == n for e, m, n in zip(lev.energy, lev.spin_sum, lev.count, strict=True)
    )
    assert (
        lev.energy.min() == -32.0 and lev.count[np.argmin(lev.energy)] == 1
    )  # all up (and all down)


class _FloatSystem:
    """A toy system with irrational, nearly degenerate energies (stands in for CuAu in eV)."""

    n_sites = 6
    k_B = 8.617330337217213e-05

    def energy(self, x):
        w = torch.tensor(
            [0.1, np.sqrt(2) * 1e-3, np.pi * 1e-3, 0.1 + 1e-15, 0.05, 0.05], dtype=torch.float64
        )
        return (x.to(torch.float64) * w).sum(1)

    def spin_sum(self, x):
        return (2 * x.to(torch.int64).sum(1) - x.shape[1]).to(torch.float64)


def test_enumerate_levels_float_energies_merge_only_equal_pairs():
    sys = _FloatSystem()
    lev = enumerate_levels(sys, chunk_size=9)
    assert lev.count.sum() == 64
    x = torch.cat(list(enumerate_states(6)))
    E, M = sys.energy(x).numpy(), sys.spin_sum(x).numpy()
    assert len(lev.energy) == len(set(zip(E.tolist(), M.tolist(), strict=True)))
    # thermodynamics equal the direct Boltzmann sum over all 64 states (T in K, field in eV)
    T, mu = 300.0, 2e-3
    res = exact_thermodynamics(sys, T, mu)
    beta = 1 / (sys.k_B * T)
    logw = -beta * (E - mu * M)
    p = np.exp(logw - logw.max())
    p /= p.sum()
    log_Z = logw.max() + np.log(np.exp(logw - logw.max()).sum())
    assert np.isclose(res["f"], -sys.k_B * T * log_Z / 6, rtol=1e-13, atol=0)
    assert np.isclose(res["u"], (p * E).sum() / 6, rtol=1e-12, atol=0)
    assert np.isclose(
        res["c"], beta**2 * (p * (E - (p * E).sum()) ** 2).sum() / 6, rtol=1e-10, atol=0
    )
    assert np.isclose(res["m"], (p * M).sum() / 6, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- hand-computable
def _two_by_two(T, h, J=1.0):
    """2x2 torus, each periodic pair counted twice (8 bonds):
    Z = 2e^{8K}cosh4b + 8cosh2b + 4 + 2e^{-8K}."""
    K, b = J / T, h / T
    Z = 2 * np.exp(8 * K) * np.cosh(4 * b) + 8 * np.cosh(2 * b) + 4 + 2 * np.exp(-8 * K)
    dK = 16 * np.exp(8 * K) * np.cosh(4 * b) - 16 * np.exp(-8 * K)
    dKK = 128 * np.exp(8 * K) * np.cosh(4 * b) + 128 * np.exp(-8 * K)
    db = 8 * np.exp(8 * K) * np.sinh(4 * b) + 16 * np.sinh(2 * b)
    mean_B = dK / Z
    return {
        "f": -T * np.log(Z) / 4,
        "u": -J * mean_B / 4,
        "c": K**2 * (dKK / Z - mean_B**2) / 4,
        "m": db / Z / 4,
    }


@pytest.mark.parametrize("T,h", [(0.5, 0.0), (T_C, 0.3), (4.0, -1.5), (20.0, 0.7)])
def test_two_by_two_closed_form(T, h):
    ref = _two_by_two(T, h)
    assert_thermo_close(ising_transfer_matrix(2, T, h), ref, where="transfer matrix")
    assert_thermo_close(exact_thermodynamics(IsingSystem(2), T, h), ref, where="enumeration")
    if h == 0:
        assert_thermo_close(ising_kaufman(2, T), ref, keys="fuc", where="Kaufman")


def test_low_and_high_temperature_limits():
    """T -> 0: two ground states (f = -2J - T ln2/N, u = -2J, c = 0, m = 0 at h = 0, 1 at h > 0).
    T -> ∞: high-temperature series ln Z/N = ln2 + 2 ln cosh K + n4 tanh^4 K + O(tanh^6 K), with
    n4 = (N plaquettes + 2L winding loops of length 4)/N = 1.5 on the 4x4 torus."""
    for L in (4, 12):  # L = 12 at a single point: ~0.5 s
        N = L * L
        r = ising_transfer_matrix(L, 0.05, 0.0)
        assert np.isclose(r["f"], -2 - 0.05 * np.log(2) / N, rtol=1e-14, atol=0)
        assert (
            np.isclose(r["u"], -2.0, rtol=0, atol=1e-13)
            and abs(r["c"]) < 1e-13
            and abs(r["m"]) < 1e-12
        )
        assert all(np.isfinite(r[k]).all() for k in r)
    r = ising_transfer_matrix(4, 0.05, 0.1)
    assert np.isclose(r["m"], 1.0, rtol=0, atol=1e-13) and np.isclose(
        r["f"], -2.1, rtol=1e-14, atol=0
    )
    k = ising_kaufman(4, np.array([0.05, 1e3]))
    assert np.isclose(k["f"][0], -2 - 0.05 * np.log(2) / 16, rtol=1e-14, atol=0)
    for T in (1e3, 50.0):
        K = 1 / T
        series = np.log(2) + 2 * np.log(np.cosh(K)) + 1.5 * np.tanh(K) ** 4
        for res in (ising_transfer_matrix(4, T, 0.0), ising_kaufman(4, T)):
            assert abs(res["log_Z"] / 16 - series) < 2e-13 + 20 * np.tanh(K) ** 6
    big = ising_transfer_matrix(12, 1e3, 0.0)
    assert all(np.isfinite(big[k]).all() for k in big)
    t = np.tanh(1e-3)  # u = -d/dK[2 ln cosh K + tanh^4 K] + O(t^5)
    assert np.isclose(big["u"], -(2 * t + 4 * t**3 * (1 - t**2)), rtol=1e-9, atol=0)


# --------------------------------------------------------------------------- cross-checks
T_GRID = np.array([0.3, 1.0, 2.0, T_C, 3.0, 50.0])
H_GRID = np.array([-0.7, 0.0, 0.2, 1.5])


@pytest.mark.parametrize("L", [3, 4])
def test_enumeration_equals_transfer_matrix(L):
    ref = exact_thermodynamics(IsingSystem(L), T_GRID[:, None], H_GRID[None, :])
    got = ising_transfer_matrix(L, T_GRID[:, None], H_GRID[None, :])
    assert got["f"].shape == (len(T_GRID), len(H_GRID))
    assert_thermo_close(got, ref, where=f"L={L}")


@pytest.mark.parametrize("L", [3, 4])
def test_antiferromagnet_enumeration_equals_transfer_matrix(L):
    T, h = np.array([0.5, T_C, 5.0]), np.array([0.0, 1.0])
    ref = exact_thermodynamics(IsingSystem(L, J=-1.0), T[:, None], h[None, :])
    assert_thermo_close(
        ising_transfer_matrix(L, T[:, None], h[None, :], J=-1.0), ref, where=f"J=-1 L={L}"
    )


@pytest.mark.parametrize("L", [5, 6, 8])
def test_momentum_blocks_equal_dense_matrix(L):
    T, h = np.array([0.4, T_C, 7.0]), np.array([-0.3, 0.0, 0.05])
    dense = ising_transfer_matrix(L, T, h, method="dense")
    blocks = ising_transfer_matrix(L, T, h)
    assert_thermo_close(blocks, dense, f_rtol=1e-13, atol=1e-12, where=f"L={L}")


def test_transfer_matrix_equals_kaufman():
    T = np.array([0.7, 1.5, 2.0, 2.2, T_C, 2.4, 3.0, 6.0])
    worst = 0.0
    for L in range(4, 11):
        tm = ising_transfer_matrix(L, T, 0.0)
        kf = ising_kaufman(L, T)
        assert_thermo_close(kf, tm, keys="fuc", f_rtol=1e-12, atol=1e-9, where=f"L={L}")
        worst = max(worst, *(np.abs(kf[k] - tm[k]).max() for k in "uc"))
        assert np.all(np.abs(tm["m"]) < 1e-12)
    assert worst < 1e-11  # measured ~1e-14 when written


def test_field_symmetry():
    T, h = np.array([1.2, T_C, 4.0]), np.array([0.1, 0.8, 2.0])
    up = ising_transfer_matrix(5, T[:, None], h[None, :])
    down = ising_transfer_matrix(5, T[:, None], -h[None, :])
    np.testing.assert_allclose(up["f"], down["f"], rtol=1e-13, atol=0)
    np.testing.assert_allclose(up["u"], down["u"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(up["c"], down["c"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(up["m"], -down["m"], rtol=0, atol=1e-12)
    assert np.all(up["m"] > 0)


# --------------------------------------------------------------------------- Onsager
def test_onsager_critical_point_closed_forms():
    # -βf_c = ½ ln 2 + 2G/π (G Catalan's constant); u_c = -√2 J
    assert np.isclose(
        onsager_free_energy(T_C), -T_C * (0.5 * np.log(2) + 2 * CATALAN / np.pi), rtol=1e-14, atol=0
    )
    assert np.isclose(onsager_energy(T_C), -np.sqrt(2.0), rtol=1e-13, atol=0)
    assert np.isclose(T_C, 2.269185314213022, rtol=1e-15)


def test_onsager_limits_and_no_overflow():
    T = np.array([1e-3, 0.05, 1e3, 1e6])
    f, u = onsager_free_energy(T), onsager_energy(T)
    assert np.all(np.isfinite(f)) and np.all(np.isfinite(u))
    np.testing.assert_allclose(f[:2], -2.0, rtol=1e-15, atol=0)
    np.testing.assert_allclose(u[:2], -2.0, rtol=1e-15, atol=0)
    K = 1 / T[2:]
    np.testing.assert_allclose(
        -f[2:] / T[2:], np.log(2) + 2 * np.log(np.cosh(K)) + np.tanh(K) ** 4, rtol=1e-14
    )
    t = np.tanh(K)  # u = -d/dK[2 ln cosh K + t^4 + 2 t^6 + O(t^8)]  (square-lattice loop counts)
    np.testing.assert_allclose(u[2:], -(2 * t + (4 * t**3 + 12 * t**5) * (1 - t**2)), rtol=1e-13)


def test_kaufman_converges_to_onsager():
    T = np.array([1.5, 2.0, 2.2, T_C, 2.4, 3.5])
    f_inf, u_inf = onsager_free_energy(T), onsager_energy(T)
    df, du = [], []
    for L in (8, 16, 32, 64, 128):
        k = ising_kaufman(L, T)
        df.append(np.abs(k["f"] - f_inf))
        du.append(np.abs(k["u"] - u_inf))
    df, du = np.array(df), np.array(du)
    at_tc = 3
    assert np.all(np.diff(df[:, at_tc]) < 0) and np.all(np.diff(du[:, at_tc]) < 0)
    # f_L - f_∞ ~ 1/L² at T_c (measured: 9.3e-5 at L = 128); u_L - u_∞ ~ 1/L
    assert df[-1, at_tc] < 1.2e-4 and du[-1, at_tc] < 6e-3
    # away from T_c the finite-size corrections are exponentially small, except that below T_c
    # the torus has two ordered sectors: ln Z_L = N(-βf_∞) + ln 2, so f_L = f_∞ - T ln2 / N
    k = ising_kaufman(128, T)
    shift = np.where(T < T_C, -T * np.log(2) / 128**2, 0.0)
    off = [0, 1, 5]
    np.testing.assert_allclose(k["f"][off], (f_inf + shift)[off], rtol=1e-14, atol=0)
    np.testing.assert_allclose(k["u"][off], u_inf[off], rtol=0, atol=1e-13)


def test_kaufman_heat_capacity_log_divergence():
    """c(T_c, L) = A0 ln L + B0 + O(ln L / L), A0 = (8/π) K_c² (Onsager; Ferdinand–Fisher)."""
    A0 = 8 / np.pi * K_C**2
    c = {L: float(ising_kaufman(L, T_C)["c"]) for L in (32, 64, 128, 256)}
    slopes = [(c[2 * L] - c[L]) / (A0 * np.log(2)) for L in (32, 64, 128)]
    assert np.all(np.abs(np.array(slopes) - 1) < 4.0 / np.array([32, 64, 128]))  # measured ~0.5/L
    assert abs(slopes[-1] - 1) < 3e-3
    # the heat capacity of the finite torus peaks a little above T_c and stays finite
    T = np.linspace(2.2, 2.4, 41)
    cT = ising_kaufman(64, T)["c"]
    assert 2.25 < T[np.argmax(cT)] < 2.32 and cT.max() < 2.5


# --------------------------------------------------------------------------- table and inputs
def test_exact_table_small_lattice_uses_transfer_matrix():
    table = ising_exact_table(3, [2.0, 1.0], [0.5, 0.0])
    assert list(table.columns) == ["system", "size", "T", "field", "f", "u", "c", "m", "method"]
    assert table[["T", "field"]].values.tolist() == [[1.0, 0.0], [1.0, 0.5], [2.0, 0.0], [2.0, 0.5]]
    assert (table["method"] == "transfer_matrix").all() and (table["size"] == "3x3").all()
    ref = exact_thermodynamics(IsingSystem(3), table["T"].to_numpy(), table["field"].to_numpy())
    np.testing.assert_allclose(table["f"], ref["f"], rtol=1e-12)


def test_exact_table_large_lattice_uses_kaufman_at_zero_field():
    table = ising_exact_table(32, [T_C, 2.0], [0.0, 0.3])
    assert isinstance(table, pd.DataFrame) and len(table) == 2
    assert (
        (table["method"] == "kaufman").all()
        and (table["field"] == 0).all()
        and (table["m"] == 0).all()
    )
    assert table["T"].tolist() == [2.0, T_C]
    with pytest.raises(ValueError, match="covers field 0 only; L=32"):
        ising_exact_table(32, [2.0], [0.1, 0.2])
    small = ising_exact_table(6, [2.0], [0.0], max_transfer_L=5)
    assert small["method"].tolist() == ["kaufman"]


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ising_transfer_matrix(15, 2.0, 0.0), "L <= 14"),
        (lambda: ising_transfer_matrix(2.5, 2.0, 0.0), "2.5"),
        (lambda: ising_transfer_matrix(4, -1.0, 0.0), r"\[-1.0\]"),
        (lambda: ising_transfer_matrix(4, 1.0, np.inf), "finite"),
        (lambda: ising_kaufman(1, 2.0), "got 1"),
        (lambda: ising_kaufman(8, [1.0, np.nan]), "nan"),
        (lambda: ising_kaufman(8, 1.0, J=-1.0), "J=-1.0"),
        (lambda: ising_exact_table(4, [0.0], [0.0]), r"\[0.0\]"),
        (lambda: ising_exact_table(4, [1.0], [0.0], max_transfer_L=16), "<= 14"),
    ],
    ids=[
        "L>14",
        "L-not-int",
        "T<0",
        "h-inf",
        "kaufman-L",
        "kaufman-nan",
        "kaufman-J",
        "table-T0",
        "table-maxL",
    ],
)
def test_input_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()
