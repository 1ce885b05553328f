"""Replica exchange, convergence diagnostics and claimed error bars of lattherm.reference.mcmc.

Against exact values (CuAu 2x2x4 enumeration, Ising transfer matrix), with tolerances that can
fail: the rows the diagnostics call converged lie within 4 claimed error bars of the exact value
(on the hard CuAu conditions 200 and 300 K at μ = ±0.03 eV, the frozen μ = −0.12 eV ladder, and
Ising 8x8 through T_c); runs that are too short or lack replica exchange at 200 K are flagged;
the exchange step does exactly what is documented, keeps the Boltzmann distribution of every
rung, and stays bit-reproducible and independent of threads and of the number of chains.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from conftest import chi2_pvalue_of_counts, numba_threads, xoroshiro128p

from lattherm.reference import _mcmc_kernels as K
from lattherm.reference.exact import enumerate_states, ising_transfer_matrix
from lattherm.reference.mcmc import (
    EXCHANGE_SALT,
    _checkerboard_order,
    _error_from_loo,
    apply_mixed_starts,
    convergence_report,
    ising_thresholds,
    mcmc_table,
    run_metropolis,
    split_rhat,
)
from lattherm.systems import IsingSystem

PT = dict(start="mixed", replica_exchange=True)
#: the laptop config's CuAu settings (config/config.yaml, reference.mcmc.cuau)
CUAU_LAPTOP = dict(n_chains=64, n_samples=20, burn_in_sweeps=1000, thin_sweeps=50)
CUAU_T = np.arange(200.0, 1201.0, 100.0)


def _z(tab, exact, keys):
    return {k: (tab[k].to_numpy() - np.asarray(exact[k])) / tab[f"{k}_err"].to_numpy() for k in keys}


@pytest.fixture(scope="module")
def cuau():
    pytest.importorskip("clease")
    from lattherm.systems.cuau import CuAuSystem

    return CuAuSystem("2x2x4")


# ----------------------------------------------------------------------------- CuAu vs enumeration
@pytest.fixture(scope="module")
def cuau_pt(cuau):
    """Laptop settings, replica exchange along the laptop T grid at μ = −0.12, −0.03, 0.03 eV."""
    T, mu = (a.ravel() for a in np.meshgrid(CUAU_T, [-0.12, -0.03, 0.03], indexing="ij"))
    res = run_metropolis(cuau, T, mu, seed=7, keep_states=False, **CUAU_LAPTOP, **PT)
    return res, mcmc_table(res, cuau)


def test_cuau_low_T_rows_converge_with_honest_errors(cuau_pt):
    """The conditions that were 7-8σ off (200 K, μ = 0.03; 300 K, μ = −0.03) converge under replica
    exchange, and every claimed error bar of the three ladders holds against enumeration."""
    from lattherm.reference.cuau_exact import cuau_exact_table

    res, tab = cuau_pt
    ex = cuau_exact_table("2x2x4", res.T, res.field)
    hard = tab["T"].isin([200.0, 300.0]) & tab["field"].isin([-0.03, 0.03])
    assert tab.loc[hard, "converged"].all(), tab.loc[hard, ["T", "field", "diagnosis"]]
    assert tab["converged"].mean() > 0.9
    z = _z(tab, ex, ("u", "c", "m", "x_au"))
    for k, zk in z.items():
        claimed = np.isfinite(zk)
        assert claimed[tab["converged"].to_numpy()].all()
        assert np.all(np.abs(zk[claimed]) < 4), (k, np.round(zk, 2))
    # errors mean something: the 200 K composition is resolved to 1 % of the Au fraction
    assert tab.loc[hard & (tab["T"] == 200.0), "x_au_err"].max() < 0.01
    acc = tab["exchange_acc"].to_numpy()
    assert np.all(acc[np.isfinite(acc)] > 0.5) and np.isnan(acc[tab["T"] == 1200.0]).all()


def test_frozen_rows_come_from_the_ladder(cuau_pt):
    """At 200 K, μ = −0.12 eV nearly every sample is pure Cu: the sweeps show (almost) no
    fluctuation, the MBAR ladder estimate weighs in the excursions seen at higher T and is exact
    within its error (u to 1e-9 eV/site)."""
    from lattherm.reference.cuau_exact import cuau_exact_table

    res, tab = cuau_pt
    row = tab[(tab["T"] == 200.0) & (tab["field"] == -0.12)].iloc[0]
    assert row["estimator"] == "ladder" and row["converged"]
    ex = cuau_exact_table("2x2x4", 200.0, -0.12).iloc[0]
    assert row["u_err"] < 1e-8
    for k in ("u", "c", "m"):
        assert abs(row[k] - ex[k]) < 4 * row[f"{k}_err"], (k, row[k], ex[k], row[f"{k}_err"])


def test_without_replica_exchange_the_200K_rows_are_flagged(cuau):
    """The first version's setting (independent chains, laptop settings) at 200 K: the chains keep
    the basins they started in; the diagnostics say so and no error bar is claimed there."""
    res = run_metropolis(cuau, 200.0, [0.03, -0.03], seed=20261122, keep_states=False, **CUAU_LAPTOP)
    tab = mcmc_table(res, cuau)
    assert not tab["converged"].any()
    assert tab["u_err"].isna().all() and tab["m_err"].isna().all()
    assert tab["diagnosis"].str.contains("split-R̂").all()


def test_too_short_chains_are_flagged(cuau):
    """20 sweeps of burn-in and 100 of sampling from mixed starts, no exchange: the all-Au and
    all-Cu families have not met at 200-400 K, and the rows say so."""
    res = run_metropolis(
        cuau, [200.0, 300.0, 400.0], 0.03, n_chains=96, n_samples=20, burn_in_sweeps=20,
        thin_sweeps=5, seed=3, start="mixed", keep_states=False,
    )  # fmt: skip
    tab = mcmc_table(res, cuau)
    assert not tab["converged"].any(), tab[["T", "diagnosis"]]
    assert tab["diagnosis"].str.contains("split-R̂").all()
    assert "start families differ" in tab["diagnosis"][0]  # 200 K: all-Au chains stay Au-rich
    assert tab[["u_err", "c_err", "m_err", "x_au_err"]].isna().all().all()
    n_bad, lines = convergence_report(tab)
    assert n_bad == 3 and len(lines) == 3 and "T=200" in lines[0]


# ----------------------------------------------------------------------------- Ising vs transfer matrix
def test_ising_8x8_through_tc_with_replica_exchange():
    """8x8 across T_c at h = 0 and 0.5: converged rows within 4 error bars of the transfer matrix
    (u, c, m); at h = 0 below T_c the exchange carries chains between the two sectors, so the
    rows converge (without it split-R̂ flags them)."""
    system = IsingSystem(8)
    Ts = np.array([1.5, 1.75, 2.0, 2.15, 2.27, 2.4, 2.6, 3.0, 3.5])
    T, h = (a.ravel() for a in np.meshgrid(Ts, [0.0, 0.5], indexing="ij"))
    kw = dict(n_chains=128, n_samples=20, burn_in_sweeps=500, thin_sweeps=100, seed=11, keep_states=False)
    tab = mcmc_table(run_metropolis(system, T, h, **kw, **PT))
    assert tab["converged"].all(), tab.loc[~tab["converged"], ["T", "field", "diagnosis"]]
    z = _z(tab, ising_transfer_matrix(8, T, h), ("u", "c", "m"))
    for k, zk in z.items():
        assert np.all(np.abs(zk) < 4), (k, np.round(zk, 2))
    low = (T < 2.0) & (h == 0.0)
    flat = mcmc_table(run_metropolis(system, T[low], h[low], **kw))
    assert not flat["converged"].any() and flat["diagnosis"].str.contains("split-R̂").all()


# ----------------------------------------------------------------------------- the exchange step
def test_exchange_step_matches_python_reference():
    """checkerboard_run with one ladder of three temperatures, three sweeps, an exchange round
    after every sweep: the same as checkerboard_sweeps for each rung, then the documented swap of
    pairs (k, k+1), k ≡ done (mod 2), accepted without a draw when (β_k − β_k+1)(H_k − H_k+1) >= 0,
    else iff (r >> 11) 2^-53 < exp(·) for r from the (ladder, chain) stream."""
    system = IsingSystem(4)
    N, W = 16, 8
    T, h = np.array([1.8, 2.3, 3.0]), np.full(3, 0.2)
    beta = 1.0 / T
    thr = ising_thresholds(T, h, 1.0)
    nb = np.ascontiguousarray(system.lattice.neighbours().numpy(), dtype=np.int64)
    bonds = np.ascontiguousarray(system.lattice.bonds().numpy(), dtype=np.int64)
    order = _checkerboard_order(system)
    x = np.zeros((3, 1, N, W), dtype=np.uint8)
    st0, st1 = np.zeros((3, 1, W), dtype=np.uint64), np.zeros((3, 1, W), dtype=np.uint64)
    K.seed_streams(np.uint64(9), st0, st1)
    K.random_fill(x, st0, st1)
    ex0, ex1 = np.zeros((1, 1, W), dtype=np.uint64), np.zeros((1, 1, W), dtype=np.uint64)
    K.seed_streams(np.uint64(9) ^ EXCHANGE_SALT, ex0, ex1)
    ref = [a.copy() for a in (x, st0, st1, ex0, ex1)]
    ladders, lad_len = np.array([[0, 1, 2]]), np.array([3])
    n_sweeps = 3
    empty = np.zeros((3, 1, W, 0), dtype=np.int64)
    ex_stats = np.zeros((3, 1, W, 2), dtype=np.int64)
    bad = np.zeros((3, 1), dtype=np.int64)
    K.checkerboard_run(
        x, thr, st0, st1, nb, order, bonds, 1.0, h, beta, ladders, lad_len, ex0, ex1, 1,
        np.zeros(3), 0, n_sweeps, n_sweeps, 1, empty, empty.copy(), np.zeros((0, 0, 0, 0, 0), np.uint8),
        np.zeros((3, 1, W, 4)), np.zeros((3, 1, W, 0, 4)), ex_stats, bad, np.zeros(3, np.uint64), 0,
    )  # fmt: skip
    assert not bad.any()
    rx, r0, r1, e0, e1 = ref
    streams = [[int(e0[0, 0, w]), int(e1[0, 0, w])] for w in range(W)]
    att = np.zeros((3, W), dtype=int)
    acc = np.zeros((3, W), dtype=int)
    for s in range(n_sweeps):
        K.checkerboard_sweeps(rx, thr, r0, r1, nb, order, 1)  # same draws per rung
        done = s + 1
        for k in range(done % 2, 2, 2):
            for w in range(W):
                H = []
                for c in (k, k + 1):
                    sp = 2 * rx[c, 0, :, w].astype(np.int64) - 1
                    H.append(-float((sp[bonds[:, 0]] * sp[bonds[:, 1]]).sum()) - h[c] * float(sp.sum()))
                d = (beta[k] - beta[k + 1]) * (H[0] - H[1])
                ok = d >= 0.0
                if not ok:
                    r, streams[w][0], streams[w][1] = xoroshiro128p(*streams[w])
                    ok = float(r >> 11) * 2.0**-53 < np.exp(d)
                att[k, w] += 1
                if ok:
                    acc[k, w] += 1
                    rx[[k, k + 1], 0, :, w] = rx[[k + 1, k], 0, :, w]
    np.testing.assert_array_equal(x, rx)
    assert [[int(ex0[0, 0, w]), int(ex1[0, 0, w])] for w in range(W)] == streams
    np.testing.assert_array_equal(ex_stats[:, 0, :, 0], att)
    np.testing.assert_array_equal(ex_stats[:, 0, :, 1], acc)
    assert 0 < acc.sum() < att.sum()  # some swaps accepted, some refused


def _levels(system, x: np.ndarray) -> np.ndarray:
    return x.astype(np.int64) @ (1 << np.arange(system.n_sites))


def test_replica_exchange_keeps_every_rung_boltzmann():
    """Ising 3x3, a ladder of four temperatures at h = 0.2, exchange every sweep: the states of
    every rung follow its Boltzmann distribution (chi-square over all 512 states), and a 10 %
    wrong temperature is rejected (the test has teeth)."""
    system = IsingSystem(3)
    T = np.array([1.4, 1.9, 2.5, 3.2])
    res = run_metropolis(
        system, T, 0.2, n_chains=2048, n_samples=6, seed=5, burn_in_sweeps=50, thin_sweeps=4, **PT
    )  # fmt: skip
    xs = torch.cat(list(enumerate_states(9)))
    E, M = system.energy(xs).numpy(), system.spin_sum(xs).numpy()
    for c, t in enumerate(T):
        obs = np.bincount(_levels(system, res.states[c].reshape(-1, 9)), minlength=512).astype(float)

        def p(temp):
            logw = -(E - 0.2 * M) / temp
            w = np.exp(logw - logw.max())
            return w / w.sum()

        assert chi2_pvalue_of_counts(obs, p(t)) > 1e-3, t
        if t > 1.5:
            assert chi2_pvalue_of_counts(obs, p(1.1 * t)) < 1e-6, t


def test_replica_exchange_keeps_cuau_composition_boltzmann(cuau):
    """CuAu 2x2x4 at μ = 0.03 eV, 300..700 K with exchange: the sampled n_Au of every rung
    against enumeration (chi-square)."""
    from lattherm.reference.exact import enumerate_levels

    T = np.array([300.0, 400.0, 500.0, 700.0])
    res = run_metropolis(
        cuau, T, 0.03, n_chains=512, n_samples=8, seed=8, burn_in_sweeps=200, thin_sweeps=10,
        keep_states=False, **PT,
    )  # fmt: skip
    lv = enumerate_levels(cuau)
    for c, t in enumerate(T):
        logw = lv.log_count - (lv.energy - 0.03 * lv.spin_sum) / (cuau.k_B * t)
        w = np.exp(logw - logw.max())
        p = np.bincount(((lv.spin_sum + 16) / 2).astype(int), weights=w / w.sum(), minlength=17)
        obs = np.bincount(((res.spin_sum[c].ravel() + 16) / 2).astype(int), minlength=17).astype(float)
        assert chi2_pvalue_of_counts(obs, p) > 1e-3, t


# ----------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("which", ["ising", "cuau"])
def test_replica_exchange_reproducible_thread_and_chain_count_independent(which, request):
    system = IsingSystem(5) if which == "ising" else request.getfixturevalue("cuau")
    T, f = ([1.8, 2.4, 3.0, 2.0], [0.0, 0.0, 0.0, 0.3]) if which == "ising" else ([300.0, 600.0, 900.0], 0.02)
    kw = dict(n_samples=4, seed=21, burn_in_sweeps=7, thin_sweeps=3, **PT)
    with numba_threads(1):
        a = run_metropolis(system, T, f, n_chains=150, **kw)
    with numba_threads(min(2, numba.config.NUMBA_NUM_THREADS)):
        b = run_metropolis(system, T, f, n_chains=150, **kw)
        c = run_metropolis(system, T, f, n_chains=300, **kw)
        d = run_metropolis(system, T, f, n_chains=150, progress=True, **kw)
    for k in ("states", "energy", "averages", "exchange"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
        np.testing.assert_array_equal(getattr(a, k), getattr(c, k)[:, :150])
        np.testing.assert_array_equal(getattr(a, k), getattr(d, k))
    assert a.exchange[..., 1].sum() > 0
    e = run_metropolis(system, T, f, n_chains=150, **{**kw, "seed": 22})
    assert not np.array_equal(a.states, e.states)


def test_recorded_energies_and_averages_match_states():
    """With exchange, the tracked bond sums behind samples and sweep averages are exact."""
    system = IsingSystem(4)
    res = run_metropolis(system, [1.5, 2.5, 3.5], 0.1, n_chains=40, n_samples=3, seed=2,
                         burn_in_sweeps=3, thin_sweeps=1, **PT)  # fmt: skip
    x = torch.from_numpy(res.states.reshape(-1, 16))
    np.testing.assert_array_equal(res.energy.ravel(), system.energy(x).numpy())
    np.testing.assert_array_equal(res.spin_sum.ravel(), system.spin_sum(x).numpy())
    # thin = 1: the average of a period is its single measurement
    np.testing.assert_allclose(res.averages[..., 0] + res.energy_shift[:, None, None], res.energy)
    np.testing.assert_allclose(res.averages[..., 2], res.spin_sum)
    np.testing.assert_allclose(res.averages[..., 3], np.abs(res.spin_sum))


def test_mixed_starts():
    x = np.full((2, 2, 4, 5), 7, dtype=np.uint8)  # (n_cond, n_blocks, W, N)
    apply_mixed_starts(x, 2, 4)
    j = np.arange(8).reshape(2, 4)
    assert (x[:, j % 3 == 1] == 0).all() and (x[:, j % 3 == 2] == 1).all() and (x[:, j % 3 == 0] == 7).all()
    res = run_metropolis(IsingSystem(3), 2.0, 0.0, n_chains=7, n_samples=1, seed=0, burn_in_sweeps=0,
                         thin_sweeps=1, start="mixed")  # fmt: skip
    assert res.start_group.tolist() == [0, 1, 2, 0, 1, 2, 0] and res.start == "mixed"


def test_replica_exchange_in_the_generic_update():
    """The torch random-site update with exchange: every rung of Ising 3x3 stays Boltzmann
    (chi-square over all 512 states), swaps happen, and a seed gives the same arrays."""
    system = IsingSystem(3)
    T = np.array([1.4, 2.0, 3.0])
    kw = dict(n_chains=768, n_samples=6, seed=4, burn_in_sweeps=300, thin_sweeps=3, update="random-site", **PT)
    res = run_metropolis(system, T, 0.2, **kw)
    xs = torch.cat(list(enumerate_states(9)))
    E, M = system.energy(xs).numpy(), system.spin_sum(xs).numpy()
    for c, t in enumerate(T):
        obs = np.bincount(_levels(system, res.states[c].reshape(-1, 9)), minlength=512).astype(float)
        logw = -(E - 0.2 * M) / t
        w = np.exp(logw - logw.max())
        assert chi2_pvalue_of_counts(obs, w / w.sum()) > 1e-3, t
    acc = res.exchange_acceptance
    assert 0.1 < acc[0] < 1 and 0.1 < acc[1] < 1 and np.isnan(acc[2])
    small = {**kw, "n_chains": 16, "burn_in_sweeps": 5}
    a, b = (run_metropolis(system, T, 0.2, **small) for _ in range(2))
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.exchange, b.exchange)


# ----------------------------------------------------------------------------- the statistics
def test_split_rhat():
    g = np.random.default_rng(0)
    iid = g.normal(size=(3, 64, 40))
    assert np.all(np.abs(split_rhat(iid) - 1) < 0.03)
    stuck = iid + np.arange(64)[None, :, None] % 2 * 3.0  # two groups of chains, never mixing
    assert np.all(split_rhat(stuck) > 1.5)
    drift = iid + np.linspace(0, 3, 40)  # every chain still moving
    assert np.all(split_rhat(drift) > 1.1)
    assert np.isnan(split_rhat(np.ones((1, 8, 10))))[0] and np.isnan(split_rhat(iid[..., :3])).all()


def test_error_ess_counts_rare_events():
    """k chains out of 64 carry all the deviation: the error ESS is about k; Gaussian batch means
    give about n/2; identical batches give NaN."""
    loo = np.zeros((3, 64))
    loo[0, :3] = 1.0
    loo[1] = np.random.default_rng(1).normal(size=64)
    err, ess = _error_from_loo(loo, np.array([False, False, True]))
    assert 2.5 < ess[0] < 3.5 and 20 < ess[1] <= 64 and np.isnan(ess[2])
    assert err[0] > 0
