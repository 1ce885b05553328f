"""Batched Metropolis (lattherm.reference.mcmc) against exact enumeration / transfer matrix.

Every statistical test has a fixed seed and a tolerance that can fail: stationary histograms by
chi-square (p > 1e-3, with a control that the same test rejects a wrong temperature),
observables within 4 error bars of the exact values, z-scores of many independent repeats with
unit spread.
"""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import chi2_pvalue_of_counts, numba_threads, xoroshiro128p

from lattherm.io import read_table, unpack_states, write_table
from lattherm.lattices import Lattice
from lattherm.reference.exact import (
    enumerate_levels,
    enumerate_states,
    exact_thermodynamics,
    ising_transfer_matrix,
)
from lattherm.reference.mcmc import (
    integrated_autocorr_time,
    ising_thresholds,
    mcmc_histograms,
    mcmc_samples_table,
    mcmc_summary,
    mcmc_table,
    run_metropolis,
)
from lattherm.systems import IsingSystem, System

T_C = 2.269185314213022
K_B_EV = 8.617330337217213e-05


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def torch_one_thread():
    """The generic path runs many tiny torch ops: one intra-op thread is faster (and far faster
    on a loaded machine, where a second OpenMP thread waits for a core)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class FakeCuAu:
    """A non-Ising toy in the CuAu units: 8 sites (a 2x2x2 box), random pair *and* triplet
    interactions in eV, ``k_B`` in eV/K, field = chemical potential in eV, ``name = "cuau"``.
    ``delta_energy`` is computed by brute force, so nothing Ising-like is assumed anywhere."""

    name = "cuau"
    size = "2x2x2"
    n_sites = 8
    n_states = 2
    k_B = K_B_EV

    def __init__(self, seed: int = 3) -> None:
        g = np.random.default_rng(seed)
        self.lattice = Lattice(shape=(2, 2, 2))
        # dense symmetric couplings: pairs V[i, j] (each pair once in the energy) and triplets
        V = np.triu(g.normal(0.0, 0.012, (8, 8)), 1)  # eV
        self.V = torch.from_numpy(V + V.T)
        W = np.zeros((8, 8, 8))
        for i, j, k in list(itertools.combinations(range(8), 3))[::5]:
            W[i, j, k] = g.normal(0.0, 0.006)
        self.W = torch.from_numpy(W.reshape(8, 64))
        self.e0 = -3.7  # eV per site, an offset as in a cluster expansion

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        s = 2 * x.to(torch.float64) - 1  # (B, 8)
        pair = 0.5 * ((s @ self.V) * s).sum(-1)
        tri = ((s @ self.W) * (s[:, :, None] * s[:, None, :]).reshape(-1, 64)).sum(-1)
        return self.e0 * self.n_sites + pair + tri

    def spin_sum(self, x: torch.Tensor) -> torch.Tensor:
        return (2 * x.to(torch.int64).sum(-1) - x.shape[-1]).to(torch.float64)

    def delta_energy(self, x: torch.Tensor, sites: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y.scatter_(1, sites[:, None], 1 - torch.gather(x, 1, sites[:, None]))
        return self.energy(y) - self.energy(x)


def boltzmann(system: System, T: float, h: float) -> np.ndarray:
    """Exact probabilities of all 2^N states, indexed by ``k = Σ_i x_i 2^i``."""
    x = torch.cat(list(enumerate_states(system.n_sites)))
    logw = -(system.energy(x) - h * system.spin_sum(x)).numpy() / (system.k_B * T)
    w = np.exp(logw - logw.max())
    return w / w.sum()


def chi2_pvalue(states: np.ndarray, p: np.ndarray) -> float:
    """Chi-square goodness of fit of ``(n, N)`` states to ``p``; states whose expected count is
    below 5 are pooled into one bin."""
    k = states.astype(np.int64) @ (1 << np.arange(states.shape[1]))
    return chi2_pvalue_of_counts(np.bincount(k, minlength=len(p)).astype(np.float64), p)


def exact_abs_m(system: System, T: np.ndarray, h: np.ndarray) -> np.ndarray:
    lv = enumerate_levels(system)
    out = []
    for t, f in zip(T, h, strict=True):
        logw = lv.log_count - (lv.energy - f * lv.spin_sum) / t
        w = np.exp(logw - logw.max())
        out.append((w * np.abs(lv.spin_sum)).sum() / w.sum() / system.n_sites)
    return np.array(out)


GRID_T, GRID_H = (a.ravel() for a in np.meshgrid([1.8, T_C, 3.0], [0.0, 0.3], indexing="ij"))


# ----------------------------------------------------------------------------- acceptance
@pytest.mark.parametrize("J", [1.0, -0.7])
def test_thresholds_satisfy_detailed_balance(J):
    T = np.array([0.5, 1.0, 2.269, 5.0, 2.0])
    h = np.array([0.0, 0.3, -0.4, 1.0, 0.0])
    thr = ising_thresholds(T, h, J).astype(np.float64) / 2.0**64  # (n_cond, 10)
    for c in range(len(T)):
        for n_up in range(5):
            n = 2 * n_up - 4
            # x_i = 0 -> 1 (s: -1 -> +1) and back, with the same neighbours
            dE_red = (-2 * J * n - 2 * h[c]) / T[c]  # β(ΔE_int − h ΔΣs) of the up-flip
            p_up, p_down = thr[c, n_up], thr[c, 5 + n_up]
            # Metropolis, except exact ties (h = 0, n = 0), which are accepted with p = 1/2
            assert max(p_up, p_down) == pytest.approx(0.5 if dE_red == 0 else 1.0, abs=1e-15)
            assert p_up / p_down == pytest.approx(np.exp(-dE_red), rel=1e-12)


def test_checkerboard_kernel_matches_python_reference():
    """The vectorised kernel does exactly the documented update, bit for bit: checkerboard
    order, acceptance iff draw < threshold[5 x_i + n_up], one xoroshiro128+ draw per attempt."""
    from lattherm.reference import _mcmc_kernels as K
    from lattherm.reference.mcmc import _checkerboard_order

    system = IsingSystem(3)
    N, W, sweeps = 9, 5, 4
    thr = ising_thresholds(np.array([1.7, 2.9]), np.array([0.0, 0.4]), 1.0)
    x = np.zeros((2, 1, N, W), dtype=np.uint8)
    st0, st1 = np.zeros((2, 1, W), dtype=np.uint64), np.zeros((2, 1, W), dtype=np.uint64)
    K.seed_streams(np.uint64(42), st0, st1)
    K.random_fill(x, st0, st1)
    ref_x, ref_s0, ref_s1 = x.copy(), st0.copy(), st1.copy()
    nb = system.lattice.neighbours().numpy()
    order = _checkerboard_order(system)
    K.checkerboard_sweeps(x, thr, st0, st1, nb, order, sweeps)
    for c in range(2):
        for w in range(W):
            xs = [int(v) for v in ref_x[c, 0, :, w]]
            s0, s1 = int(ref_s0[c, 0, w]), int(ref_s1[c, 0, w])
            for _ in range(sweeps):
                for i in order:
                    n_up = sum(xs[j] for j in nb[i])
                    r, s0, s1 = xoroshiro128p(s0, s1)
                    if r < int(thr[c, 5 * xs[i] + n_up]):
                        xs[i] ^= 1
            assert xs == x[c, 0, :, w].tolist()
            assert (s0, s1) == (int(st0[c, 0, w]), int(st1[c, 0, w]))


# ----------------------------------------------------------------------------- stationarity
STATIONARY_CONDS = [(3.0, 0.0), (2.5, 0.3)]


@pytest.mark.parametrize("update", ["checkerboard", "random-site"])
@pytest.mark.parametrize("L", [2, 3])
def test_ising_samples_follow_boltzmann(update, L, torch_one_thread):
    system = IsingSystem(L)
    T, h = np.array(STATIONARY_CONDS).T
    res = run_metropolis(
        system,
        T,
        h,
        n_chains=2048,
        n_samples=12,
        seed=11 + L,
        burn_in_sweeps=60,
        thin_sweeps=30,
        update=update,
    )
    # samples must be (nearly) independent for the chi-square test to be exact
    assert np.all(integrated_autocorr_time(res.energy) < 1.5)
    assert np.all(integrated_autocorr_time(res.spin_sum) < 1.5)
    for c, (t, f) in enumerate(STATIONARY_CONDS):
        st = res.states[c].reshape(-1, system.n_sites)
        assert chi2_pvalue(st, boltzmann(system, t, f)) > 1e-3
        # control: the same test rejects a 10 % wrong temperature
        assert chi2_pvalue(st, boltzmann(system, 1.1 * t, f)) < 1e-6


@pytest.mark.parametrize(("L", "J"), [(3, 1.0), (4, 1.0), (4, -1.0)])
def test_wolff_moves_follow_boltzmann(L, J):
    """Eight Wolff moves per sweep dominate the dynamics; the states still follow p exactly (also
    in a field, and for the antiferromagnet, whose clusters grow through anti-aligned bonds)."""
    system = IsingSystem(L, J=J)
    conds = [(2.0, 0.0), (2.5, 0.3), (1.8, -0.2)]
    T, h = np.array(conds).T
    res = run_metropolis(system, T, h, n_chains=2048, n_samples=10, seed=5 + L, burn_in_sweeps=20,
                         thin_sweeps=5, cluster_updates=8)  # fmt: skip
    assert res.cluster_updates == 8
    for c, (t, f) in enumerate(conds):
        st = res.states[c].reshape(-1, system.n_sites)
        assert chi2_pvalue(st, boltzmann(system, t, f)) > 1e-3
        assert chi2_pvalue(st, boltzmann(system, 1.1 * t, f)) < 1e-6  # the test's power
    x = torch.from_numpy(res.states.reshape(-1, system.n_sites))  # the tracked sums are the states'
    np.testing.assert_array_equal(res.energy.ravel(), system.energy(x).numpy())
    np.testing.assert_array_equal(res.spin_sum.ravel(), system.spin_sum(x).numpy())


def test_wolff_moves_cross_sectors_and_keep_bytes_without_them():
    """At h = 0 below T_c local moves keep the sign of m on 16x16; one Wolff move per sweep flips
    it within a few sweeps. Without cluster moves the draws are the plain update's."""
    system = IsingSystem(16)
    kw = dict(n_chains=64, n_samples=10, seed=3, burn_in_sweeps=10, thin_sweeps=2, start="up")
    local = run_metropolis(system, 1.8, 0.0, **kw)
    cluster = run_metropolis(system, 1.8, 0.0, cluster_updates=1, **kw)
    assert (local.spin_sum > 0).all()
    down = (cluster.spin_sum < 0).mean()
    assert 0.35 < down < 0.65, down
    plain = run_metropolis(system, 1.8, 0.0, cluster_updates=0, **kw)
    np.testing.assert_array_equal(plain.states, local.states)


@pytest.mark.slow
def test_generic_update_on_non_ising_system(torch_one_thread):
    system = FakeCuAu()
    T, mu = np.array([500.0, 900.0]), np.array([0.01, -0.02])  # K, eV
    res = run_metropolis(
        system, T, mu, n_chains=1024, n_samples=12, seed=5, burn_in_sweeps=40, thin_sweeps=15
    )
    assert res.update == "random-site"
    assert np.all(integrated_autocorr_time(res.energy) < 1.5)
    assert np.all(integrated_autocorr_time(res.spin_sum) < 1.5)
    for c in range(2):
        st = res.states[c].reshape(-1, system.n_sites)
        p = boltzmann(system, T[c], mu[c])
        assert chi2_pvalue(st, p) > 1e-3
        assert chi2_pvalue(st, boltzmann(system, T[c] * 1.15, mu[c])) < 1e-6
    # table in CuAu units: x_au and formation energy, both against enumeration
    tab = mcmc_table(res, system)
    ex = exact_thermodynamics(system, T, mu)
    assert np.all(np.abs(tab.u - ex["u"]) < 4 * tab.u_err)
    assert np.all(np.abs(tab.c - ex["c"]) < 4 * tab.c_err)
    assert np.all(np.abs(tab.x_au - (1 + ex["m"]) / 2) < 4 * tab.x_au_err)
    e_ends = (
        system.energy(
            torch.stack([torch.ones(8, dtype=torch.long), torch.zeros(8, dtype=torch.long)])
        ).numpy()
        / 8
    )
    u_form = ex["u"] - (1 + ex["m"]) / 2 * e_ends[0] - (1 - ex["m"]) / 2 * e_ends[1]
    assert np.all(np.abs(tab.u_form - u_form) < 4 * tab.u_form_err)


@pytest.mark.slow
def test_generic_update_on_cuau_2x2x4(torch_one_thread):
    """The real CuAu cluster expansion (16 sites, eV, K) against enumeration of all 2^16 states."""
    pytest.importorskip("clease")
    from lattherm.systems import make_system

    system = make_system("cuau", "2x2x4")
    T, mu = np.array([400.0, 800.0, 1500.0]), np.array([0.0, 0.05, -0.1])
    res = run_metropolis(
        system,
        T,
        mu,
        n_chains=64,
        n_samples=30,
        seed=3,
        burn_in_sweeps=100,
        thin_sweeps=4,
        keep_states=False,
        update="random-site",  # the generic torch path ("auto" picks the CE kernel, tested elsewhere)
    )
    assert res.update == "random-site"
    tab = mcmc_table(res, system, **KEEP)
    ex = exact_thermodynamics(system, T, mu)
    ex["x_au"] = (1 + ex["m"]) / 2
    _check_against(tab, ex, ("u", "c", "m", "x_au"))


# ----------------------------------------------------------------------------- observables
# The tests of this file check the estimates and their jackknife errors themselves, also at rows
# that the convergence diagnostics flag (short chains, sectors below T_c without replica
# exchange): they ask for unconverged_errors="keep". The diagnostics and the claimed (finite)
# error bars are tested in tests/test_mcmc_convergence.py.
KEEP = dict(unconverged_errors="keep")


def _check_against(tab: pd.DataFrame, exact: dict[str, np.ndarray], keys=("u", "c", "m")) -> None:
    for k in keys:
        z = (tab[k].to_numpy() - exact[k]) / tab[f"{k}_err"].to_numpy()
        assert np.all(np.abs(z) < 4), (
            f"{k}: z = {np.round(z, 2)} at T, h = {list(zip(tab['T'], tab['field'], strict=True))}"
        )


def test_checkerboard_observables_4x4():
    system = IsingSystem(4)
    res = run_metropolis(
        system,
        GRID_T,
        GRID_H,
        n_chains=256,
        n_samples=200,
        seed=2024,
        burn_in_sweeps=1000,
        thin_sweeps=5,
        keep_states=False,
    )
    tab = mcmc_table(res, **KEEP)
    ex = exact_thermodynamics(system, GRID_T, GRID_H)
    ex["abs_m"] = exact_abs_m(system, GRID_T, GRID_H)
    _check_against(tab, ex, ("u", "c", "m", "abs_m"))
    # the errors are small enough to mean something
    assert np.all(tab.u_err < 0.01) and np.all(tab.c_err < 0.08)


@pytest.mark.slow
def test_checkerboard_observables_6x6():
    system = IsingSystem(6)
    res = run_metropolis(
        system,
        GRID_T,
        GRID_H,
        n_chains=256,
        n_samples=100,
        seed=606,
        burn_in_sweeps=3000,
        thin_sweeps=10,
        keep_states=False,
    )
    tab = mcmc_table(res, **KEEP)
    _check_against(tab, ising_transfer_matrix(6, GRID_T, GRID_H))
    assert np.all(tab.u_err < 0.01)


def test_random_site_observables_4x4(torch_one_thread):
    system = IsingSystem(4)
    res = run_metropolis(
        system,
        GRID_T,
        GRID_H,
        n_chains=64,
        n_samples=32,
        seed=77,
        burn_in_sweeps=250,
        thin_sweeps=4,
        update="random-site",
        keep_states=False,
    )
    tab = mcmc_table(res, **KEEP)
    _check_against(tab, exact_thermodynamics(system, GRID_T, GRID_H))


def test_ordered_start_below_tc_stays_in_its_sector():
    system = IsingSystem(6)
    res = run_metropolis(
        system,
        [1.8, 1.8],
        0.0,
        n_chains=32,
        n_samples=20,
        seed=1,
        burn_in_sweeps=50,
        thin_sweeps=5,
        start=np.stack([np.ones((32, 36)), np.zeros((32, 36))]).astype(np.uint8),
    )
    s = mcmc_summary(res)
    assert s["m"][0] > 0.9 and s["m"][1] < -0.9
    assert np.allclose(np.abs(s["m"]), s["abs_m"])


# ----------------------------------------------------------------------------- honest errors
def test_error_bars_have_unit_z_spread_between_chains():
    """60 independent conditions (10 repeats of 6 exact points): z-scores of u, c, m, |m|."""
    system = IsingSystem(4)
    T, h = np.tile(GRID_T, 10), np.tile(GRID_H, 10)
    res = run_metropolis(
        system,
        T,
        h,
        n_chains=128,
        n_samples=100,
        seed=99,
        burn_in_sweeps=500,
        thin_sweeps=5,
        keep_states=False,
    )
    tab = mcmc_table(res, **KEEP)
    ex = exact_thermodynamics(system, T, h)
    ex["abs_m"] = np.tile(exact_abs_m(system, GRID_T, GRID_H), 10)
    z = np.concatenate([(tab[k] - ex[k]) / tab[f"{k}_err"] for k in ("u", "c", "m", "abs_m")])
    assert abs(z.mean()) < 0.2
    assert 0.8 < z.std() < 1.2


def test_error_bars_by_blocking_few_chains():
    """4 chains per condition: errors come from blocks inside chains (fast mixing, T = 3)."""
    system = IsingSystem(4)
    T, h = np.full(50, 3.0), np.tile([0.0, 0.3], 25)
    res = run_metropolis(
        system,
        T,
        h,
        n_chains=4,
        n_samples=800,
        seed=4,
        burn_in_sweeps=100,
        thin_sweeps=2,
        keep_states=False,
    )
    tab = mcmc_table(res, **KEEP)
    assert np.all(tab.n_batches == 32)
    ex = exact_thermodynamics(system, T, h)
    z = np.concatenate([(tab[k] - ex[k]) / tab[f"{k}_err"] for k in ("u", "c", "m")])
    assert abs(z.mean()) < 0.25
    assert 0.75 < z.std() < 1.25


def test_blocking_warns_when_chains_are_stuck():
    res = run_metropolis(
        IsingSystem(6),
        1.5,
        0.0,
        n_chains=2,
        n_samples=64,
        seed=3,
        burn_in_sweeps=100,
        thin_sweeps=1,
        keep_states=False,
    )
    with pytest.warns(UserWarning, match="shorter than 5"):
        mcmc_summary(res)


def test_autocorr_time_of_ar1():
    g = np.random.default_rng(0)
    a = 0.8
    x = np.empty((64, 4000))
    x[:, 0] = g.normal(size=64) / np.sqrt(1 - a * a)
    for t in range(1, x.shape[1]):
        x[:, t] = a * x[:, t - 1] + g.normal(size=64)
    assert integrated_autocorr_time(x) == pytest.approx((1 + a) / (1 - a), rel=0.05)
    assert integrated_autocorr_time(g.normal(size=(8, 5000))) == pytest.approx(1.0, abs=0.1)


# ----------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("update", ["checkerboard", "random-site"])
def test_same_seed_same_arrays(update, torch_one_thread):
    system = IsingSystem(5)
    kw = dict(n_chains=9, n_samples=6, burn_in_sweeps=3, thin_sweeps=2, update=update)
    a = run_metropolis(system, [2.0, 3.0], [0.0, 0.1], seed=123, **kw)
    b = run_metropolis(system, [2.0, 3.0], [0.0, 0.1], seed=123, **kw)
    c = run_metropolis(system, [2.0, 3.0], [0.0, 0.1], seed=124, **kw)
    for k in ("energy", "spin_sum", "states"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.states, c.states)


def test_checkerboard_independent_of_threads_and_chain_count():
    system = IsingSystem(6)
    kw = dict(n_samples=5, seed=8, burn_in_sweeps=4, thin_sweeps=3)
    with numba_threads(1):
        one = run_metropolis(system, [2.2, 2.6], 0.1, n_chains=300, **kw)
    with numba_threads(max(numba.get_num_threads(), 2) if numba.config.NUMBA_NUM_THREADS >= 2 else 1):
        two = run_metropolis(system, [2.2, 2.6], 0.1, n_chains=300, **kw)
    np.testing.assert_array_equal(one.states, two.states)
    few = run_metropolis(system, [2.2, 2.6], 0.1, n_chains=7, **kw)  # other blocking of chains
    np.testing.assert_array_equal(few.states, one.states[:, :7])


def test_recorded_energies_match_states():
    system = IsingSystem(5)  # odd L: the two colours are not independent, still exact
    res = run_metropolis(
        system,
        [1.5, 2.5],
        [0.0, -0.2],
        n_chains=20,
        n_samples=4,
        seed=0,
        burn_in_sweeps=2,
        thin_sweeps=1,
    )
    x = torch.from_numpy(res.states.reshape(-1, system.n_sites))
    np.testing.assert_array_equal(res.energy.ravel(), system.energy(x).numpy())
    np.testing.assert_array_equal(res.spin_sum.ravel(), system.spin_sum(x).numpy())


# ----------------------------------------------------------------------------- tables, inputs
def test_tables(tmp_path):
    system = IsingSystem(4)
    res = run_metropolis(
        system,
        [2.0, 3.0],
        [0.0, 0.2],
        n_chains=40,
        n_samples=10,
        seed=1,
        burn_in_sweeps=20,
        thin_sweeps=2,
    )
    tab = mcmc_table(res)
    assert list(tab.columns[:4]) == ["system", "size", "T", "field"]
    for q in ("u", "c", "m", "abs_m"):  # every estimate with its error
        assert q in tab.columns and f"{q}_err" in tab.columns
    for col in ("tau_E", "tau_M", "n_samples"):
        assert col in tab.columns
    assert (tab.method == "mcmc").all() and (tab.n_samples == 400).all()
    write_table(tab, tmp_path / "mcmc.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "mcmc.parquet"), tab)

    hist = mcmc_histograms(res)
    sums = hist.groupby(["T", "quantity"]).probability.sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0)
    assert set(hist.quantity) == {"energy", "spin_sum"}

    samples = mcmc_samples_table(res, max_per_condition=50)
    assert len(samples) == 100 and samples.chain.max() == 39
    write_table(samples, tmp_path / "samples.parquet")
    back = read_table(tmp_path / "samples.parquet")
    x = unpack_states(
        np.frombuffer(b"".join(back.configuration), dtype=np.uint8).reshape(len(back), -1), 16
    )
    np.testing.assert_array_equal(
        system.energy(torch.from_numpy(x)).numpy(), back.energy.to_numpy()
    )
    np.testing.assert_array_equal(
        system.spin_sum(torch.from_numpy(x)).numpy(), back.spin_sum.to_numpy()
    )


@pytest.mark.parametrize(
    ("update", "n_samples", "burn", "thin"),
    [("checkerboard", 120, 2500, 30), ("random-site", 7, 5, 3)],  # checkerboard: 4 + 3 chunks
)
def test_progress_bar_does_not_change_results(update, n_samples, burn, thin, torch_one_thread):
    kw = dict(n_chains=6, n_samples=n_samples, seed=2, burn_in_sweeps=burn, thin_sweeps=thin)
    kw["update"] = update
    quiet = run_metropolis(IsingSystem(4), 2.5, 0.1, **kw)
    loud = run_metropolis(IsingSystem(4), 2.5, 0.1, progress=True, **kw)
    np.testing.assert_array_equal(quiet.states, loud.states)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(T=0.0), "temperatures"),
        (dict(n_chains=0), "n_chains"),
        (dict(thin_sweeps=0), "thin_sweeps"),
        (dict(seed=-1), "seed"),
        (dict(update="wolff"), "update"),
        (dict(start="hot"), "start"),
        (dict(start=np.zeros((3, 9))), "shape"),
        (dict(n_chains=2**20, n_samples=2**10), "GiB"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = dict(T=2.0, n_chains=4, n_samples=2, seed=0, thin_sweeps=1)
    args.update(kwargs)
    T = args.pop("T")
    with pytest.raises(ValueError, match=match):
        run_metropolis(IsingSystem(3), T, 0.0, **args)


def test_checkerboard_refuses_other_systems():
    with pytest.raises(ValueError, match="IsingSystem only"):
        run_metropolis(
            FakeCuAu(), 500.0, 0.0, n_chains=2, n_samples=1, seed=0, update="checkerboard"
        )


# ----------------------------------------------------------------------------- pair couplings
def test_pair_update_samples_glasses_and_the_chain_exactly():
    """The numba pair-coupling update ("auto" for spin glasses and the chain): sampled states follow
    the Boltzmann distribution (chi-square against enumeration, and not a 15 % hotter one), the
    recorded energies are the states', and the same seed gives the same arrays whatever the
    thread count."""
    from lattherm.systems import make_system

    for system, T, h in ((make_system("rrg", "n8-d3-s2"), [0.6, 1.5], [0.0, 0.3]),
                         (make_system("ea", "3x3-s1", couplings="pm"), [1.3, 2.0], [0.2, 0.0]),
                         (make_system("chain", "8"), [1.0, 2.0], [-0.4, 0.0])):  # fmt: skip
        res = run_metropolis(system, T, h, n_chains=512, n_samples=16, seed=3, burn_in_sweeps=30, thin_sweeps=12)
        assert res.update == "pair" and res.averages is not None
        x = torch.from_numpy(res.states.reshape(-1, system.n_sites).astype(np.int64))
        np.testing.assert_allclose(res.energy.ravel(), system.energy(x).numpy(), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(res.spin_sum.ravel(), system.spin_sum(x).numpy())
        for c in range(2):
            st = res.states[c].reshape(-1, system.n_sites)
            assert chi2_pvalue(st, boltzmann(system, T[c], h[c])) > 1e-3, (system.name, c)
            assert chi2_pvalue(st, boltzmann(system, T[c] * 1.15, h[c])) < 1e-4, (system.name, c)
    system = make_system("rrg", "n12-d3-s1")
    kw = dict(n_chains=70, n_samples=5, seed=8, burn_in_sweeps=4, thin_sweeps=3, replica_exchange=True)
    with numba_threads(1):
        one = run_metropolis(system, [0.7, 1.0, 1.4], 0.0, **kw)
    with numba_threads(max(numba.get_num_threads(), 2) if numba.config.NUMBA_NUM_THREADS >= 2 else 1):
        two = run_metropolis(system, [0.7, 1.0, 1.4], 0.0, **kw)
    for k in ("energy", "spin_sum", "states", "averages", "exchange"):
        np.testing.assert_array_equal(getattr(one, k), getattr(two, k))
    assert one.exchange[..., 1].sum() > 0  # replicas were exchanged
    with pytest.raises(ValueError, match="pair couplings"):
        run_metropolis(FakeCuAu(), [500.0], 0.0, n_chains=2, n_samples=1, seed=0, update="pair")
