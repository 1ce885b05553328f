"""Estimators against their exact twins: the exact Boltzmann model and full enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lattherm.models import ExactModel
from lattherm.observables import (
    chain_fit,
    estimate_by_condition,
    estimate_thermo,
    f_nis,
    f_var,
    log_weights,
    log_Z_bar,
    log_Z_nis,
    ness,
)
from lattherm.reference.exact import enumerate_states, exact_thermodynamics
from lattherm.sampling import log_prob, sample
from lattherm.systems import IsingSystem, reduced_energy

BOX = ((1.0, 4.0), (-1.0, 1.0))


def exact_ref(system, T, h) -> dict:
    return {k: float(np.asarray(v)) for k, v in exact_thermodynamics(system, T, h).items()}


@pytest.mark.parametrize("T, h", [(1.5, 0.0), (2.5, 0.3)])
def test_exact_model_gives_exact_free_energy_and_unit_ness(T, h):
    """q = p (the exact twin, sampled in random order): every log w equals ln Z."""
    system = IsingSystem(L=3)
    model = ExactModel(system=system, cond_box=BOX)
    x, log_q = sample(model, [T, h], 200, generator=torch.Generator().manual_seed(0))
    ref = exact_ref(system, T, h)
    log_p = -reduced_energy(system, x, T, h) - ref["log_Z"]
    torch.testing.assert_close(log_q, log_p, rtol=0, atol=1e-10)
    est = estimate_thermo(system, x, log_q, T, h, n_boot=50, seed=1)
    assert abs(est["f_nis"] - ref["f"]) < 1e-10
    assert abs(est["f_var"] - ref["f"]) < 1e-10
    assert abs(est["ness"] - 1) < 1e-10
    assert est["f_nis_err"] == pytest.approx(T / (9 * 200), rel=1e-6)  # no spread: the resolution of 200 draws
    # u, c, m are plain sample averages here: statistically consistent with the exact values
    for k in ("u", "m"):
        assert abs(est[k] - ref[k]) < 5 * est[f"{k}_err"] + 1e-12, (
            k,
            est[k],
            ref[k],
            est[f"{k}_err"],
        )
    assert abs(est["c"] - ref["c"]) < 6 * est["c_err"]


def test_exact_model_marginals_are_consistent():
    """log p(x_S) + log p(x_j | x_S) = log p(x_S ∪ j), and p(empty) = 1: MAM identities, exactly."""
    system = IsingSystem(L=2)
    model = ExactModel(system=system, cond_box=BOX)
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 2, (16, 4), generator=gen)
    vis = torch.rand(16, 4, generator=gen) < 0.5
    cond = torch.tensor([[2.0, 0.2]]).expand(16, 2)
    j = torch.randint(0, 4, (16,), generator=gen)
    logits, lm = model.heads(x, vis, cond)
    lp_j = torch.log_softmax(logits, -1)[torch.arange(16), j].gather(
        1, x[torch.arange(16), j][:, None]
    )[:, 0]
    vis2 = vis.clone()
    vis2[torch.arange(16), j] = True
    keep = ~vis[torch.arange(16), j]
    torch.testing.assert_close(
        (lm + lp_j)[keep], model.log_marginal(x, vis2, cond)[keep], rtol=0, atol=1e-12
    )
    none = torch.zeros(16, 4, dtype=torch.bool)
    torch.testing.assert_close(
        model.log_marginal(x, none, cond), torch.zeros(16, dtype=torch.float64)
    )
    allv = ~none
    torch.testing.assert_close(
        model.log_marginal(x, allv, cond), log_prob(model, x, cond, "fixed"), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("T, h", [(1.2, 0.0), (2.27, -0.4)])
def test_uniform_proposal_over_all_states_is_exact(T, h):
    """Every state once, q uniform: self-normalised weights are p(x); f, u, c, m are exact."""
    system = IsingSystem(L=3)
    x = torch.cat(list(enumerate_states(9))).long()
    log_q = torch.full((len(x),), -9 * math.log(2.0), dtype=torch.float64)
    est = estimate_thermo(system, x, log_q, T, h, n_boot=0)
    ref = exact_ref(system, T, h)
    for k in ("u", "c", "m"):
        assert abs(est[k] - ref[k]) < 1e-10, k
    assert abs(est["f_nis"] - ref["f"]) < 1e-10
    assert est["f_var"] > ref["f"]  # the variational bound is an upper bound
    assert math.isnan(est["f_nis_err"])


def test_estimator_formulas_and_bounds():
    rng = np.random.default_rng(0)
    log_q = rng.normal(size=500)
    red = rng.normal(size=500)
    lw = log_weights(log_q, red)
    np.testing.assert_allclose(lw, -red - log_q)
    w = np.exp(lw)
    assert math.isclose(ness(lw), w.sum() ** 2 / (500 * (w**2).sum()), rel_tol=1e-12)
    T, N = 1.7, 9
    f, err = f_nis(lw, T, N, n_boot=100, seed=4)
    assert math.isclose(f, -T * math.log(w.mean()) / N, rel_tol=1e-12)
    assert f_var(lw, T, N) >= f  # Jensen
    assert err > 0 and f_nis(lw, T, N, n_boot=100, seed=4)[1] == err
    assert f_nis(lw, T, N, n_boot=100, seed=5)[1] != err
    # log space: huge log weights do not overflow
    assert math.isclose(ness(lw + 1e4), ness(lw), rel_tol=1e-12)
    with pytest.raises(ValueError, match="finite"):
        log_weights(np.array([0.0, -np.inf]), np.zeros(2))
    with pytest.raises(ValueError, match="n_boot"):
        f_nis(lw, T, N, n_boot=1)


def test_estimate_by_condition_groups_samples(gen):
    system = IsingSystem(L=2)
    model = ExactModel(system=system, cond_box=BOX)
    conds = torch.tensor([[1.5, 0.0], [3.0, 0.5]])
    x, log_q = sample(model, conds, 50, generator=gen)
    cond = conds.repeat_interleave(50, dim=0)
    table = estimate_by_condition(system, x, log_q, cond, n_boot=20, seed=0)
    assert list(table.columns[:4]) == ["system", "size", "T", "field"]
    assert table["n_samples"].tolist() == [50, 50]
    one = estimate_thermo(system, x[50:], log_q[50:], 3.0, 0.5, n_boot=20, seed=0)
    row = table[table["T"] == 3.0].iloc[0]
    for k, v in one.items():
        assert row[k] == v or (math.isnan(v) and math.isnan(row[k])), k
    for (T, h), f in zip(conds.tolist(), table["f_nis"], strict=True):
        assert abs(f - exact_ref(system, T, h)["f"]) < 1e-10


def test_cuau_adds_composition():
    system = IsingSystem(L=2)
    system.name = "cuau"  # only the name decides: x_au = (m + 1) / 2
    x = torch.tensor([[1, 1, 0, 1], [0, 0, 0, 1]])
    est = estimate_thermo(
        system, x, torch.tensor([-1.0, -2.0], dtype=torch.float64), 2.0, 0.0, n_boot=10
    )
    assert math.isclose(est["x_au"], (est["m"] + 1) / 2)


def _bar_case(T: float, a: float, n_q: int, n_p: int, seed: int):
    """Ising 4x4 at (T, 0): log-weights of an independent-spin proposal q (P(up) = a) on draws of
    q and on exact draws of p (enumeration); the exact ln Z."""
    system = IsingSystem(L=4)
    x = torch.cat(list(enumerate_states(16))).numpy()
    log_p_tilde = -reduced_energy(system, torch.as_tensor(x, dtype=torch.long), T, 0.0).double().numpy()
    log_q = (x * math.log(a) + (1 - x) * math.log(1 - a)).sum(axis=1)
    log_z = float(np.logaddexp.reduce(log_p_tilde))
    rng = np.random.default_rng(seed)
    iq = rng.choice(len(x), n_q, p=np.exp(log_q - np.logaddexp.reduce(log_q)))
    ip = rng.choice(len(x), n_p, p=np.exp(log_p_tilde - log_z))
    lw = log_p_tilde - log_q
    return lw[iq], lw[ip], log_z


def test_bar_is_exact_where_importance_sampling_collapses():
    """A poor proposal (independent spins at T 2, below T_c: NESS·n of a few) over 12 seeds: NIS is
    far off, BAR meets the exact ln Z within 4 of its bootstrap errors, and the errors are the
    size of the seeds' spread (not inflated)."""
    z, est, errs, nis = [], [], [], []
    for seed in range(12):
        lw_q, lw_p, log_z = _bar_case(2.0, 0.5, 2000, 500, seed)
        e, err = log_Z_bar(lw_q, lw_p, n_boot=100, seed=seed)
        z.append((e - log_z) / err)
        est.append(e)
        errs.append(err)
        nis.append(float(log_Z_nis(lw_q)) - log_z)
        assert ness(lw_q) * len(lw_q) < 20
    assert np.max(np.abs(z)) < 4, z
    assert np.median(np.abs(nis)) > 5 * np.median(errs), (nis, errs)  # importance sampling misses
    assert 0.5 < np.std(est, ddof=1) / np.mean(errs) < 2.0, (np.std(est, ddof=1), np.mean(errs))


def test_bar_exact_twin_and_chain_groups():
    """q = p gives ln Z exactly; p draws repeated within chains count once per chain in the error."""
    lw = np.full(50, 3.25)
    assert log_Z_bar(lw, lw[:20])[0] == pytest.approx(3.25, abs=1e-10)
    lw_q, lw_p, _ = _bar_case(3.0, 0.5, 1000, 200, 7)
    rep = np.repeat(lw_p, 5)  # each draw 5 times: 200 chains of 5 identical states
    _, err_groups = log_Z_bar(lw_q, rep, groups_p=np.repeat(np.arange(200), 5), n_boot=200, seed=1)
    _, err_unique = log_Z_bar(lw_q, lw_p, n_boot=200, seed=1)
    _, err_naive = log_Z_bar(lw_q, rep, n_boot=200, seed=1)
    assert 0.7 < err_groups / err_unique < 1.4 and err_naive < 0.8 * err_groups, (err_groups, err_unique, err_naive)
    with pytest.raises(ValueError, match="at least 2 finite"):
        log_Z_bar(lw_q, lw_p[:1])


def test_bar_resamples_chains_of_few_distinct_values_as_histograms(monkeypatch):
    """Long chains of a lattice model take few distinct log-weights: their bootstrap replicates are
    weighted histograms, the same replicates as the draws themselves (equal to rounding); paired
    resampling draws chain k of both sides together, and asks for as many chains on each."""
    import lattherm.observables as obs

    rng = np.random.default_rng(3)
    E_q, E_p = (4.0 * np.round(rng.normal(mu, 30.0, (40, 200)) / 4) for mu in (-500.0, -520.0))
    lw_q, lw_p, g = -0.01 * E_q.ravel(), -0.01 * E_p.ravel(), np.repeat(np.arange(40), 200)
    for paired in (False, True):
        hist = log_Z_bar(lw_q, lw_p, groups_q=g, groups_p=g, n_boot=50, seed=2, paired=paired)
        monkeypatch.setattr(obs, "_HISTOGRAM_CELLS", 0)  # every replicate from the draws
        draws = log_Z_bar(lw_q, lw_p, groups_q=g, groups_p=g, n_boot=50, seed=2, paired=paired)
        monkeypatch.undo()
        assert hist[0] == draws[0] and hist[1] == pytest.approx(draws[1], rel=1e-9), (paired, hist, draws)
    # the same states on both sides, chain by chain (as neighbouring temperatures that exchange
    # configurations): Bennett's estimate reads both sides' log-weights with the same sign between
    # near neighbours, so the paired replicates, which keep the tie, spread more (√2 at most)
    _, err_paired = log_Z_bar(lw_q, lw_q + 0.1, groups_q=g, groups_p=g, n_boot=50, seed=2, paired=True)
    _, err_apart = log_Z_bar(lw_q, lw_q + 0.1, groups_q=g, groups_p=g, n_boot=50, seed=2)
    assert 1.1 < err_paired / err_apart < 1.5, (err_paired, err_apart)
    with pytest.raises(ValueError, match="same number of groups"):
        log_Z_bar(lw_q, lw_p, groups_q=g, groups_p=g // 2, n_boot=5, paired=True)


def test_nis_error_keeps_the_resolution_of_its_draws():
    """Every draw with the same weight (a ground state at low T): the bootstrap sees no spread, and the
    error is the resolution of n draws, k_B T / (N n), not 0."""
    lw = np.full(500, -3.0)
    f, err = f_nis(lw, 0.5, 16, n_boot=20)
    assert f == pytest.approx(-0.5 * -3.0 / 16) and err == pytest.approx(0.5 / (16 * 500), rel=1e-12)
    system = IsingSystem(L=2)
    x = torch.ones(200, 4, dtype=torch.long)
    log_q = -reduced_energy(system, x, 0.5, 0.0).double() - 3.0
    est = estimate_thermo(system, x, log_q, 0.5, 0.0, n_boot=20)
    assert est["f_nis_err"] == pytest.approx(0.5 / (4 * 200), rel=1e-12)


def test_chain_fit_holds_exact_anchors_and_its_errors_are_honest():
    """Exact anchors (variance 0) at both ends of a chain of noisy links: the ends come out exact,
    every inner node within its error bar as often as a Gaussian says (over many replicates), the
    fit has one degree of freedom (the links chained from one end reach the other); a missing link
    leaves two stretches, each tied to its end and claimed, with no degree of freedom left."""
    rng = np.random.default_rng(5)
    n, sd = 12, 0.05
    truth = np.cumsum(rng.normal(size=n))
    ends = [(0, truth[0], 0.0, True), (n - 1, truth[-1], 0.0, True)]
    z, p = [], []
    for _ in range(400):
        d = np.diff(truth) + rng.normal(scale=sd, size=n - 1)
        fit = chain_fit(n, ends, [(k, d[k], sd**2) for k in range(n - 1)])
        assert fit["ln_z"][[0, -1]].tolist() == [truth[0], truth[-1]] and fit["ln_z_err"][[0, -1]].tolist() == [0, 0]
        assert fit["dof"] == 1 and fit["claimed"].all()
        z.append((fit["ln_z"][1:-1] - truth[1:-1]) / fit["ln_z_err"][1:-1])
        p.append(fit["p"])
    z = np.concatenate(z)
    assert 0.9 < np.mean(z**2) < 1.1 and np.abs(z).max() < 5.0
    assert 0.07 < np.mean(np.asarray(p) < 0.1) < 0.13  # the chi-square's p is uniform
    split = chain_fit(n, ends, [(k, d[k], sd**2) for k in range(n - 1) if k != 4])
    assert split["dof"] == 0 and split["claimed"].all()
    assert np.isclose(split["ln_z"][4], truth[0] + d[:4].sum())
    assert np.isclose(split["ln_z"][5], truth[-1] - d[5:].sum())
    bad = chain_fit(n, ends, [(k, d[k] + (k == 6), sd**2) for k in range(n - 1)])
    assert bad["p"] < 1e-3 and not bad["claimed"].any()
