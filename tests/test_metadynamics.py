"""CuAu metadynamics over x_Au against exact enumeration of the 2x2x4 cell (16 sites)."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import pytest

from lattherm.io import write_table
from lattherm.reference.cuau_exact import _levels, cuau_exact_composition_table
from lattherm.reference.metadynamics import (
    batch_errors,
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
    # the same production bookkeeping as the numba backend: every move in one batch, tours nested
    assert res.batch_visits.sum() == 20_000 * N // 64 * 64
    assert np.all(np.diff(res.batch_tours, axis=1) <= 0)
    assert np.all(err[1:] < 5 * res.f_x_err[1:] + 1e-4)


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
    assert {"converged", "tau_sweeps", "batch_sweeps"} <= set(df.columns)
    assert df["converged"].dtype == bool
    np.testing.assert_array_equal(df["converged"], np.concatenate([r.row_converged for r in res]))
    assert len(df) == 2 * (N + 1)
    assert (df["method"] == "metadynamics").all() and (df["system"] == "cuau").all()
    ref = CuAuSystem(SIZE).pure_energies()
    pure_cu = df[df["n_au"] == 0]
    np.testing.assert_allclose(pure_cu["f_x"], ref.cu, atol=1e-12)
    np.testing.assert_allclose(pure_cu["f_x_formation"], 0.0, atol=1e-12)
    write_table(df, tmp_path / "metadynamics.parquet")


def test_error_bars_are_honest_against_exact_2x2x4():
    """f_x_err is a claim: the converged rows of short runs (seconds) at 11 temperatures lie
    within 4 error bars of exact enumeration, and few beyond 3 (a normal law: 0.3 %; the former
    8-block error, t₇ tails, put 2–4 % of the points beyond 3σ and up to 5–10σ)."""
    z, conv = [], []
    for i, T in enumerate(np.arange(200.0, 1201.0, 100.0)):
        res = run_metadynamics(SIZE, T, seed=11 + i, mod_factor_final=1e-3, production_sweeps=20_000)
        f_exact = cuau_exact_composition_table(SIZE, T)["f_x"].to_numpy()
        assert res.f_x_err[0] == 0.0 and res.f_x[0] == pytest.approx(f_exact[0], abs=1e-12)
        z.append((res.f_x - f_exact)[1:] / res.f_x_err[1:])
        conv.append(res.row_converged[1:])
    z, conv = np.abs(np.concatenate(z)), np.concatenate(conv)
    assert conv.mean() >= 0.9, f"only {conv.mean():.0%} of the rows converged"  # no pass by flagging
    assert z[conv].max() < 4.0, f"max |z| = {z[conv].max():.2f}"
    assert np.mean(z[conv] > 3.0) <= 0.03, f"{np.mean(z[conv] > 3.0):.1%} of the points beyond 3σ"


def test_too_short_production_is_flagged(caplog):
    """A production run of a few traversals pure Cu <-> pure Au cannot give honest error bars:
    its rows are flagged (and a warning logged); so are all rows of a run whose stages never
    became flat."""
    with caplog.at_level(logging.WARNING, logger="lattherm.reference.metadynamics"):
        res = run_metadynamics(SIZE, 500.0, seed=3, mod_factor_final=1e-2, production_sweeps=300)
    assert res.converged  # the stages were flat; the production run is what is too short
    assert res.batch_tours[:, N].mean() < 2
    assert not res.row_converged[N] and (~res.row_converged).sum() >= N // 2
    assert res.row_converged[0]  # pure Cu is exact
    assert "not converged" in caplog.text
    df = metadynamics_table(res)
    np.testing.assert_array_equal(df["converged"], res.row_converged)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lattherm.reference.metadynamics"):
        res = run_metadynamics(SIZE, 500.0, seed=3, mod_factor_final=1e-2, max_sweeps_per_stage=1)
    assert not res.converged and not res.row_converged.any()
    assert "before being flat" in caplog.text


def test_production_batches_are_tours_between_the_ends():
    """Every production move is in one batch; a batch holds whole tours between visits of pure Cu
    or pure Au (regeneration points), so ``batch_tours[b, n]`` (tours through pure Cu reaching n)
    cannot grow with n."""
    res = run_metadynamics(SIZE, 800.0, seed=2, mod_factor_final=1e-2, production_sweeps=5000, min_batches=16)
    assert res.batch_visits.shape == res.batch_tours.shape == (16, N + 1)
    assert res.batch_visits.sum() == 5000 * N // 16 * 16
    np.testing.assert_array_equal(res.batch_visits.sum(0), res.visits)
    assert np.all(np.diff(res.batch_tours, axis=1) <= 0) and res.batch_tours[:, N].sum() > 0
    assert res.batch_sweeps == 5000 * N // 16 / N and res.settings["n_batches"] == 16
    # production_blocks larger than min_batches sets the number of batches
    res = run_metadynamics(SIZE, 800.0, seed=2, mod_factor_final=1e-2, production_sweeps=5000, production_blocks=80)
    assert res.batch_visits.shape[0] == 80


def test_batch_errors_match_the_multinomial_variance():
    """Independent batches of uncorrelated moves: the jackknife error is the multinomial one,
    k_B T/N · sqrt((1/p_n + 1/p_0)/M), and the implied autocorrelation time half a move."""
    rng = np.random.default_rng(0)
    T, B, m = 600.0, 256, 20_000
    p = rng.uniform(0.5, 1.5, N + 1)
    p /= p.sum()
    H = rng.multinomial(m, p, size=B)
    tours = np.full((B, N + 1), 3.0)
    err, tau, ok = batch_errors(H, tours, T=T, n_sites=N)
    expected = K_B_EV * T / N * np.sqrt((1 / p + 1 / p[0]) / (B * m))
    assert err[0] == 0.0 and np.isnan(tau[0]) and ok.all()
    np.testing.assert_allclose(err[1:], expected[1:], rtol=0.25)  # jackknife of 256: ±5 % (1σ)
    np.testing.assert_allclose(tau[1:] * N, 0.5, rtol=0.25)
    tours[:, 5:] = 1.0  # few tours reach n >= 5
    _, _, ok = batch_errors(H, tours, T=T, n_sites=N, min_tours=2.0)
    assert ok[:5].all() and not ok[5:].any()


def test_argument_checks():
    with pytest.raises(ValueError, match="mod_factor_final"):
        run_metadynamics(SIZE, 500.0, seed=0, mod_factor_final=2.0)
    with pytest.raises(ValueError, match="backend"):
        run_metadynamics(SIZE, 500.0, seed=0, backend="gpu")
    with pytest.raises(ValueError, match="T must be"):
        run_metadynamics(SIZE, 0.0, seed=0)
    with pytest.raises(ValueError, match="min_batches"):
        run_metadynamics(SIZE, 500.0, seed=0, min_batches=1)
    with pytest.raises(ValueError, match="min_tours"):
        run_metadynamics(SIZE, 500.0, seed=0, min_tours=-1.0)
