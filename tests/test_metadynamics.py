"""CuAu metadynamics over x_Au against exact enumeration of the 2x2x4 cell (16 sites)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from lattherm.io import write_table
from lattherm.reference.cuau_exact import _levels, cuau_exact_composition_table
from lattherm.reference.metadynamics import (
    free_energy_from_bias,
    metadynamics_table,
    run_metadynamics,
)
from lattherm.systems.cuau import K_B_EV, CuAuSystem

SIZE = "2x2x4"
N = 16
TOL_EV = 1e-3  # the acceptance: 1 meV/atom at every composition


def _exact_canonical(T: float) -> tuple[np.ndarray, np.ndarray]:
    """(f_x, u_x) per composition from the exact levels (eV/atom)."""
    system, (E, M, log_g) = _levels(SIZE, None)
    n_au = np.rint((M + N) / 2).astype(int)
    beta = 1.0 / (K_B_EV * T)
    f = cuau_exact_composition_table(SIZE, T)["f_x"].to_numpy()
    u = np.empty(N + 1)
    for k in range(N + 1):
        sel = n_au == k
        lw = log_g[sel] - beta * E[sel]
        w = np.exp(lw - lw.max())
        u[k] = (w * E[sel]).sum() / w.sum() / N
    return f, u


def test_bias_to_free_energy_relation_is_exact():
    """A bias built from the exact ln Z_n at μ != 0 (what a perfectly flat walk converges to,
    plus an arbitrary constant) gives back the exact f_x; a non-flat production histogram of a
    frozen bias is corrected by −k_B T ln H."""
    T, mu = 700.0, 0.07
    f_exact = cuau_exact_composition_table(SIZE, T)["f_x"].to_numpy()
    n = np.arange(N + 1)
    kT = K_B_EV * T
    ln_z = -f_exact * N / kT
    bias = kT * ln_z + mu * (2 * n - N) + 0.123  # βV = ln Z_n + βμ(2n − N) + const
    e_cu = CuAuSystem(SIZE).pure_energies().cu * N
    f = free_energy_from_bias(bias, T=T, mu=mu, e_all_cu=e_cu, n_sites=N)
    np.testing.assert_allclose(f, f_exact, rtol=0, atol=1e-12)
    # a bias that is off by δ(n) leaves visits ∝ exp(βδ); the correction removes δ
    delta = 0.01 * np.sin(n)
    visits = 1e6 * np.exp(delta / kT)
    f2 = free_energy_from_bias(bias - delta, T=T, mu=mu, e_all_cu=e_cu, n_sites=N, visits=visits)
    np.testing.assert_allclose(f2, f_exact, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="N \\+ 1"):
        free_energy_from_bias(bias[:-1], T=T, mu=mu, e_all_cu=e_cu, n_sites=N)


@pytest.mark.parametrize(("T", "mu"), [(400.0, 0.0), (1200.0, 0.05)], ids=["400K-mu0", "1200K-mu0.05"])
def test_numba_metadynamics_matches_exact_2x2x4(T, mu):
    res = run_metadynamics(SIZE, T, mu=mu, seed=11, production_sweeps=100_000)
    assert res.converged
    f_exact, u_exact = _exact_canonical(T)
    err = np.abs(res.f_x - f_exact)
    assert err.max() < TOL_EV, f"max |Δf_x| = {err.max() * 1e3:.3f} meV/atom at T={T}"
    assert res.f_x[0] == pytest.approx(f_exact[0], abs=1e-12)  # the pure-Cu anchor
    # block errors are honest to a factor of a few
    assert np.all(err[1:] < 5 * res.f_x_err[1:] + 1e-4)
    # canonical energies at fixed composition from the frozen-bias run
    assert np.abs(res.u_x - u_exact).max() < 1e-3
    assert np.all(res.c_x >= 0)


@pytest.mark.slow  # ~35 s: CLEASE runs ~40 µs per move on 16 sites
def test_clease_metadynamics_matches_exact_2x2x4():
    """CLEASE's SGCMonteCarlo + BinnedBiasPotential + MetaDynamicsSampler, short run at 400 K."""
    T = 400.0
    res = run_metadynamics(SIZE, T, backend="clease", seed=5, mod_factor_final=1e-3, production_sweeps=20_000)
    assert res.converged and res.backend == "clease"
    f_exact, u_exact = _exact_canonical(T)
    err = np.abs(res.f_x - f_exact)
    assert err.max() < TOL_EV, f"max |Δf_x| = {err.max() * 1e3:.3f} meV/atom"
    assert np.abs(res.u_x - u_exact).max() < 2e-3


def test_clease_run_is_seeded_leaves_no_files_and_restores_global_rngs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    random.seed(123)
    np.random.seed(123)  # noqa: NPY002
    before = (random.random(), np.random.random())  # noqa: NPY002
    random.seed(123)
    np.random.seed(123)  # noqa: NPY002
    kw = dict(backend="clease", mod_factor_start=1.0, mod_factor_final=0.25, production_sweeps=100)
    a = run_metadynamics(SIZE, 600.0, seed=3, **kw)
    assert (random.random(), np.random.random()) == before  # global RNG states restored  # noqa: NPY002
    b = run_metadynamics(SIZE, 600.0, seed=3, **kw)
    c = run_metadynamics(SIZE, 600.0, seed=4, **kw)
    np.testing.assert_array_equal(a.f_x, b.f_x)
    assert not np.array_equal(a.f_x, c.f_x)
    assert list(os.listdir(tmp_path)) == []  # CLEASE's database and JSON went to a temp dir
    work = tmp_path / "work"
    work.mkdir()
    run_metadynamics(SIZE, 600.0, seed=3, workdir=work, **kw)
    assert (work / "clease.db").exists()


def test_numba_run_is_seeded():
    kw = dict(mod_factor_final=0.01, production_sweeps=2000)
    a = run_metadynamics(SIZE, 800.0, seed=1, **kw)
    b = run_metadynamics(SIZE, 800.0, seed=1, **kw)
    c = run_metadynamics(SIZE, 800.0, seed=2, **kw)
    np.testing.assert_array_equal(a.f_x, b.f_x)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert not np.array_equal(a.f_x, c.f_x)
    assert a.mod_factors == tuple(0.5**k for k in range(7))  # 1, 1/2, ..., 1/64 >= 0.01


def test_table_columns_and_parquet(tmp_path):
    res = [run_metadynamics(SIZE, T, seed=1, mod_factor_final=0.01, production_sweeps=2000) for T in (500.0, 900.0)]
    df = metadynamics_table(res)
    assert list(df.columns[:6]) == ["system", "size", "T", "field", "n_au", "x_au"]
    assert {"f_x", "f_x_err", "f_x_formation", "u_x", "c_x", "method"} <= set(df.columns)
    assert len(df) == 2 * (N + 1)
    assert (df["method"] == "metadynamics").all() and (df["system"] == "cuau").all()
    ref = CuAuSystem(SIZE).pure_energies()
    pure_cu = df[df["n_au"] == 0]
    np.testing.assert_allclose(pure_cu["f_x"], ref.cu, atol=1e-12)
    np.testing.assert_allclose(pure_cu["f_x_formation"], 0.0, atol=1e-12)
    write_table(df, tmp_path / "metadynamics.parquet")


def test_argument_checks():
    with pytest.raises(ValueError, match="mod_factor_final"):
        run_metadynamics(SIZE, 500.0, seed=0, mod_factor_final=2.0)
    with pytest.raises(ValueError, match="backend"):
        run_metadynamics(SIZE, 500.0, seed=0, backend="gpu")
    with pytest.raises(ValueError, match="T must be"):
        run_metadynamics(SIZE, 0.0, seed=0)
