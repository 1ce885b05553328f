"""MCMC refinement (lattherm.refine): the two-point function on configurations whose G(r) is known,
and refined chains started from poor configurations against exact enumeration of the 4x4 torus
(u, c, |m| and G(r) within a few of their error bars)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lattherm.io import pack_states
from lattherm.observables import f_nis, log_weights
from lattherm.reference.exact import enumerate_states, ising_exact_table
from lattherm.refine import MIN_OVERLAP, MIN_OVERLAP_ALONE, REFINE_COLUMNS, correlation_function, ladder_table, refine
from lattherm.systems import IsingSystem
from lattherm.systems.base import reduced_energy


def test_correlation_function_of_known_configurations():
    L = 6
    up = np.ones(L * L, dtype=np.uint8)
    checker = ((np.arange(L)[:, None] + np.arange(L)[None, :]) % 2).ravel().astype(np.uint8)
    stripes = np.repeat((np.arange(L) % 2)[:, None], L, axis=1).ravel().astype(np.uint8)  # rows alternate
    g = correlation_function(np.stack([up, checker, stripes]), L)
    assert g.shape == (3, L // 2 + 1)
    np.testing.assert_allclose(g[0], 1.0)
    np.testing.assert_allclose(g[1], [(-1.0) ** r for r in range(L // 2 + 1)])
    # along the rows' direction every pair agrees (1), across them they alternate: the mean of both
    np.testing.assert_allclose(g[2], [0.5 * (1 + (-1.0) ** r) for r in range(L // 2 + 1)])
    with pytest.raises(ValueError, match="16 sites"):
        correlation_function(np.zeros((2, 16), dtype=np.uint8), 5)


def _exact(L: int, T: float, h: float) -> tuple[np.ndarray, float]:
    """Exact ``G(r)`` and ``⟨|m|⟩`` of the L x L torus by enumeration."""
    system = IsingSystem(L=L)
    x = torch.cat(list(enumerate_states(L * L))).numpy()
    log_p = -reduced_energy(system, torch.as_tensor(x, dtype=torch.long), T, h).double().numpy()
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    return p @ correlation_function(x, L), float(p @ np.abs(2.0 * x.mean(axis=1) - 1.0))


def _samples_table(x: np.ndarray, conditions) -> pd.DataFrame:
    rows = []
    for T, h in conditions:
        for b in pack_states(x):
            rows.append({"T": T, "field": h, "configuration": b.tobytes()})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("cluster_updates", [None, 0])
def test_refined_chains_from_poor_starts_meet_enumeration(cluster_updates):
    """Starts: every chain in the all-down state (a poor sampler); after the burn-in, u, c, |m|, m
    and G(r) agree with exact enumeration within 4 error bars wherever an error is claimed. With
    local moves alone (``cluster_updates=0``) the chains at T 2, h 0 keep their sector and m is not
    claimed there; the default Wolff moves mix it."""
    L, conditions = 4, [(2.0, 0.0), (2.5, 0.0), (3.5, 0.0), (2.5, 0.5)]
    system = IsingSystem(L=L)
    starts = np.zeros((64, L * L), dtype=np.uint8)
    exact = ising_exact_table(L, np.array([2.0, 2.5, 3.5]), np.array([0.0, 0.5]))
    table, corr, *_ = refine(system, _samples_table(starts, conditions), model="m", source="direct", n_chains=64,
                         burn_in_sweeps=200, n_samples=100, thin_sweeps=2, seed=3, reference_df=exact,
                         cluster_updates=cluster_updates)  # fmt: skip
    assert list(table.columns[: len(REFINE_COLUMNS)]) == list(REFINE_COLUMNS)
    assert (table["cluster_updates"] == (1 if cluster_updates is None else 0)).all()
    assert len(table) == 4
    # every claimed error (finite) is honest
    for q in ("u", "c", "m"):
        z = ((table[q] - table[f"{q}_ref"]) / table[f"{q}_err"]).dropna()
        assert (z.abs() < 4).all(), (q, z.tolist())
    assert table[["u_err", "c_err", "abs_m_err"]].notna().all().all() and (table["u_err"] < 0.02).all()
    low = table[(table["T"] == 2.0) & (table["field"] == 0.0)].iloc[0]
    if cluster_updates == 0:
        assert np.isnan(low["m_err"]) and not low["converged"] and "Σs" in low["diagnosis"]
        assert table.loc[table["T"] == 3.5, "converged"].all() and table.loc[table["field"] == 0.5, "converged"].all()
    else:
        assert table["converged"].all(), table["diagnosis"].tolist()
    for T, h in conditions:
        g = corr[(corr["T"] == T) & (corr["field"] == h)].sort_values("r")
        assert g["r"].tolist() == [0, 1, 2] and np.allclose(g["G"].iloc[0], 1.0)
        G, abs_m = _exact(L, T, h)
        z = (g["G"].to_numpy()[1:] - G[1:]) / g["G_err"].to_numpy()[1:]
        assert (np.abs(z) < 4).all(), (T, h, z)
        row = table[(table["T"] == T) & (table["field"] == h)].iloc[0]
        assert abs(row["abs_m"] - abs_m) < 4 * row["abs_m_err"], (T, h, row["abs_m"], abs_m)


def test_refine_asks_for_enough_configurations():
    system = IsingSystem(L=4)
    df = _samples_table(np.zeros((10, 16), dtype=np.uint8), [(2.0, 0.0)])
    with pytest.raises(ValueError, match="10 configurations at T=2.0, field=0.0; refinement asks for n_chains=64"):
        refine(system, df, model="m", source="direct", n_chains=64, burn_in_sweeps=1, n_samples=2, thin_sweeps=1,
               seed=0)  # fmt: skip


def _uniform_table(L: int, n: int, conditions, seed: int) -> pd.DataFrame:
    """A sample file of the uniform sampler (log q = −N ln 2) at each condition."""
    system = IsingSystem(L=L)
    rng = np.random.default_rng(seed)
    parts = []
    for T, h in conditions:
        x = rng.integers(0, 2, (n, L * L)).astype(np.uint8)
        xt = torch.as_tensor(x, dtype=torch.long)
        parts.append(pd.DataFrame({"T": T, "field": h, "configuration": [b.tobytes() for b in pack_states(x)],
                                   "log_q": -L * L * np.log(2.0), "energy": system.energy(xt).double().numpy(),
                                   "spin_sum": system.spin_sum(xt).double().numpy()}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def _uniform_density(x, cond, gen):
    return torch.full((x.shape[0],), -x.shape[1] * np.log(2.0), dtype=torch.float64)


def test_bar_from_refined_chains_meets_the_exact_free_energy():
    """The uniform sampler on 4x4 (q side) and chains refined from its draws (p side): Bennett's
    estimate meets the exact f within 4 error bars; on 8x8 at T 2 the two sides do not overlap
    (uniform draws never look ordered), and the row says so instead of claiming a number."""
    conditions = [(2.5, 0.0), (3.5, 0.0), (2.5, 0.5)]
    exact = ising_exact_table(4, np.array([2.5, 3.5]), np.array([0.0, 0.5]))
    samples = _uniform_table(4, 4000, conditions, 1)
    table, *_ = refine(IsingSystem(L=4), samples, model="uniform", source="direct", n_chains=64, burn_in_sweeps=100,
                       n_samples=20, thin_sweeps=2, seed=5, reference_df=exact, density=_uniform_density)  # fmt: skip
    assert (table["estimator"] == "bar").all() and table["est_converged"].all(), table
    assert (table["bar_overlap"] >= MIN_OVERLAP_ALONE).all()  # a claim on its own
    z = table["delta_f"] / table["f_est_err"]
    assert (z.abs() < 4).all(), table[["T", "field", "delta_f", "f_est_err"]]
    # the uniform draws alone (NESS 0.001-0.04) give importance-sampling errors 4-5 times larger
    for (T, h), g in samples.groupby(["T", "field"]):
        lw = log_weights(g["log_q"], (g["energy"] - h * g["spin_sum"]) / T)
        row = table[(table["T"] == T) & (table["field"] == h)].iloc[0]
        assert row["f_est_err"] < 0.5 * f_nis(lw, T, 16, n_boot=100, seed=0)[1], (T, h)
    assert (table["est_draws"] == 4000 + 64 * 20).all() and (table["est_sweeps"] == 100 + 20 * 2).all()
    far, *_ = refine(IsingSystem(L=8), _uniform_table(8, 500, [(2.0, 0.0)], 2), model="uniform", source="direct",
                    n_chains=32, burn_in_sweeps=100, n_samples=4, thin_sweeps=2, seed=5,
                    reference_df=ising_exact_table(8, np.array([2.0]), np.array([0.0])),
                    density=_uniform_density)  # fmt: skip
    assert far["bar_overlap"].iloc[0] < 1 and not far["est_converged"].iloc[0]


@torch.no_grad()
def test_sampler_densities_of_the_exact_model_are_exact():
    """The densities BAR evaluates on draws of p (evaluation.direct_density, outpaint_density), on
    the exact model, whose conditionals do not depend on the order: the symmetrised mixture of two
    orders is log p exactly; the symmetrised out-painting of a 3x3 model onto 3x4 gives what the
    out-painting sampler reported for its own draws, and sums to 1 over all 2^12 configurations
    although every row draws its own window orders."""
    from types import SimpleNamespace

    from lattherm.evaluation import direct_density, outpaint_density
    from lattherm.lattices import hypercubic_lattice
    from lattherm.models import ExactModel
    from lattherm.outpaint import outpaint

    system = IsingSystem(L=3)
    model = ExactModel(system=system, cond_box=((1.0, 4.0), (-1.0, 1.0)))
    x = torch.cat(list(enumerate_states(9))).long()
    c = torch.tensor([2.3, 0.4], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    log_p = -reduced_energy(system, x, 2.3, 0.4).double()
    log_p -= torch.logsumexp(log_p, 0)
    lq = direct_density(model, symmetrised=True, n_orders=2)(x, c.expand(len(x), 2), gen)
    torch.testing.assert_close(lq, log_p, rtol=0, atol=1e-10)
    target = SimpleNamespace(lattice=hypercubic_lattice((3, 4)))
    density = outpaint_density(model, target, stride=1, symmetrised=True)
    drawn, lq_drawn, _ = outpaint(model, target.lattice, c, 200, stride=1, generator=gen, symmetrised=True)
    torch.testing.assert_close(density(drawn, c.expand(200, 2), gen), lq_drawn, rtol=0, atol=1e-10)
    states = torch.cat(list(enumerate_states(12))).long()
    assert abs(torch.logsumexp(density(states, c.expand(len(states), 2), gen), 0).item()) < 1e-10


def test_estimate_table_puts_the_estimators_side_by_side_and_picks_the_best_claimed_one():
    from lattherm.evaluation import estimate_table

    def table(estimator, errs, claims, extra):
        return pd.DataFrame({"system": "ising", "size": "12x12", "T": [2.0, 2.5, 3.0], "field": 0.0,
                             "model": "ao-transformer", "source": "transfer-8x8", "estimator": estimator,
                             "f_est": [-2.1, -2.3, -2.6], "f_est_err": errs, "est_draws": 100, "est_sweeps": 0,
                             "est_wall_s": 1.0, "est_converged": claims, "f_ref": [-2.1001, -2.3, -2.6],
                             **extra})  # fmt: skip

    nis = table("nis", [1e-4, 1e-4, 1e-4], [True, True, False], {"ness": 0.5})
    bar = table("bar", [5e-5, 2e-4, 5e-5], [True, True, False], {"bar_overlap": 300.0})
    est = estimate_table(nis, bar)
    assert len(est) == 6 and set(est["estimator"]) == {"nis", "bar"}
    best = est[est["best"]].set_index("T")["estimator"].to_dict()
    # the smaller claimed error bar wins; where nothing is claimed nothing is best
    assert best == {2.0: "bar", 2.5: "nis"}
    row = est[(est["T"] == 2.0) & (est["estimator"] == "bar")].iloc[0]
    assert row["delta_f"] == pytest.approx(1e-4) and row["z"] == pytest.approx(2.0)
    on_bar = est["estimator"] == "bar"
    assert est.loc[on_bar, "ness"].isna().all() and (est.loc[on_bar, "bar_overlap"] == 300).all()
    # a Monte Carlo reference's own error joins the estimate's in z
    mc = estimate_table(nis.assign(f_ref_err=1e-4), bar.assign(f_ref_err=1e-4))
    row = mc[(mc["T"] == 2.0) & (mc["estimator"] == "bar")].iloc[0]
    assert row["z"] == pytest.approx(1e-4 / np.hypot(5e-5, 1e-4))
    with pytest.raises(ValueError, match="same estimator"):
        estimate_table(nis, nis)
    with pytest.raises(ValueError, match="f_est_err"):
        estimate_table(nis.drop(columns="f_est_err"))


def test_ladder_ties_the_temperatures_of_a_field_into_tighter_honest_estimates():
    """The uniform sampler on 4x4 at 7 temperatures of two fields: the ladder (links between
    neighbouring temperatures from 256 further chains, fitted to the Bennett anchors) meets the
    exact f within 4 error bars, with error bars well below the anchors', and a consistent fit."""
    T = [2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5]
    conditions = [(t, h) for h in (0.0, 0.5) for t in T]
    exact = ising_exact_table(4, np.array(T), np.array([0.0, 0.5]))
    samples = _uniform_table(4, 2000, conditions, 3)
    out = refine(IsingSystem(L=4), samples, model="uniform", source="direct", n_chains=32, burn_in_sweeps=100,
                 n_samples=20, thin_sweeps=2, seed=9, reference_df=exact, density=_uniform_density,
                 ladder_chains=256)  # fmt: skip
    lad, bar = out.ladder, out.table
    assert len(lad) == 14 and (lad["estimator"] == "ladder").all() and lad["est_converged"].all(), lad
    # 6 links and the claimed anchors (the uniform draws reach T 2 at one field only), 7 unknowns
    assert (lad["n_links"] >= 1).all() and (lad["ladder_dof"] >= 5).all() and (lad["ladder_p"] > 1e-3).all()
    z = lad["delta_f"] / lad["f_est_err"]
    assert (z.abs() < 4).all(), lad[["T", "field", "delta_f", "f_est_err"]]
    merged = lad.merge(bar[["T", "field", "f_est_err"]], on=["T", "field"], suffixes=("", "_bar"))
    tighter = merged["f_est_err"] < 0.7 * merged["f_est_err_bar"]
    assert tighter.mean() >= 0.8, merged[["T", "field", "f_est_err", "f_est_err_bar"]]
    with pytest.raises(ValueError, match="ladder_chains"):
        refine(IsingSystem(L=4), samples, model="uniform", source="direct", n_chains=32, burn_in_sweeps=1, n_samples=2,
               thin_sweeps=1, seed=9, ladder_chains=64)  # fmt: skip


def test_ladder_rungs_link_temperatures_whose_energies_do_not_overlap():
    """6x6 at T 1 and 4 (the uniform sampler's anchor claimed at 4 only): the two temperatures'
    energies share almost no draws, so without rungs nothing ties T 1; with 8 rungs between them
    (ladder chains alone) the ladder claims T 1 within 4 error bars of the exact f, and its rows are
    the grid's two."""
    T = [1.0, 4.0]
    exact = ising_exact_table(6, np.array(T), np.array([0.0]))
    samples = _uniform_table(6, 1000, [(t, 0.0) for t in T], 3)

    def run(rungs):
        return refine(IsingSystem(L=6), samples, model="uniform", source="direct", n_chains=32, burn_in_sweeps=100,
                      n_samples=20, thin_sweeps=2, seed=9, reference_df=exact, density=_uniform_density,
                      ladder_chains=256, ladder_rungs=rungs).ladder  # fmt: skip

    bare, rungs = run(0), run(8)
    assert bare["T"].tolist() == rungs["T"].tolist() == T
    assert not bare["est_converged"].iloc[0] and bare["n_links"].iloc[0] == 0, bare
    assert "link to T 4: " in bare["diagnosis"].iloc[0] and "draws crossing" in bare["diagnosis"].iloc[0], bare
    assert (rungs["diagnosis"] == "").all(), rungs  # claimed: nothing to say
    assert rungs["est_converged"].all() and (rungs["n_links"] == 1).all(), rungs  # each end: its link to a rung
    assert (rungs["delta_f"].abs() < 4 * rungs["f_est_err"]).all(), rungs[["T", "delta_f", "f_est_err"]]
    with pytest.raises(ValueError, match="ladder_rungs"):
        refine(IsingSystem(L=6), samples, model="uniform", source="direct", n_chains=32, burn_in_sweeps=1,
               n_samples=2, thin_sweeps=1, seed=9, density=_uniform_density, ladder_rungs=2)  # fmt: skip


def test_ladder_top_rungs_tie_the_grid_to_the_exact_end():
    """6x6 at T 1.5 and 2 from the uniform sampler: its draws never look ordered, so no Bennett
    anchor and, without top rungs, no estimate; with 12 rungs up to β = 0 (every configuration
    equally likely: ln Z = N ln 2 exactly, at any field) both temperatures of both fields are
    claimed within 4 error bars of the exact f."""
    T, fields = [1.5, 2.0], [0.0, 0.5]
    exact = ising_exact_table(6, np.array(T), np.array(fields))
    samples = _uniform_table(6, 256, [(t, f) for f in fields for t in T], 4)

    def run(top):
        return refine(IsingSystem(L=6), samples, model="uniform", source="direct", n_chains=32, burn_in_sweeps=100,
                      n_samples=20, thin_sweeps=2, seed=11, reference_df=exact, density=_uniform_density,
                      ladder_chains=256, ladder_top_rungs=top)  # fmt: skip

    bare, top = run(0).ladder, run(12)
    assert bare["f_est"].isna().all() and not bare["est_converged"].any(), bare
    assert not top.table["est_converged"].any()  # no anchor of the sampler's own
    lad = top.ladder
    assert len(lad) == 4 and lad["est_converged"].all() and (lad["ladder_dof"] == 0).all(), lad  # one exact end
    assert (lad["delta_f"].abs() < 4 * lad["f_est_err"]).all(), lad[["T", "field", "delta_f", "f_est_err"]]
    assert (lad["f_est_err"] < 2e-3).all()
    with pytest.raises(ValueError, match="ladder_top_rungs"):
        refine(IsingSystem(L=6), samples, model="uniform", source="direct", n_chains=32, burn_in_sweeps=1,
               n_samples=2, thin_sweeps=1, seed=9, density=_uniform_density, ladder_top_rungs=2)  # fmt: skip


def test_a_long_chain_of_links_from_the_exact_end_has_honest_error_bars():
    """6x6 at T 1.5 from the uniform sampler (no anchor of its own): ln Z from β = 0 through 11
    links, every sweep of the ladder chains kept. Over 40 seeds the error bars are honest: mean z²
    within [0.5, 1.5] (measured 0.97; 1.90 when each temperature's states entered both its links,
    which the fit takes as independent). Keeping every sweep shrinks the error bar of the same run's
    thinned samples, at the same sweeps; with exchanges along T it is refused."""
    exact = ising_exact_table(6, np.array([1.5]), np.array([0.0]))
    samples = _uniform_table(6, 64, [(1.5, 0.0)], 1)

    def run(seed, every_sweep=True, **kw):
        return refine(IsingSystem(L=6), samples, model="uniform", source="direct", n_chains=8, burn_in_sweeps=50,
                      n_samples=10, thin_sweeps=2, seed=seed, reference_df=exact, density=_uniform_density,
                      ladder_chains=64, ladder_top_rungs=10, ladder_every_sweep=every_sweep, **kw).ladder  # fmt: skip

    rows = pd.concat([run(100 + r) for r in range(40)], ignore_index=True)
    assert rows["est_converged"].mean() >= 0.9, rows[["f_est", "f_est_err", "diagnosis"]]
    z = (rows["delta_f"] / rows["f_est_err"])[rows["est_converged"]]
    assert 0.5 < (z**2).mean() < 1.5 and z.abs().max() < 4, z.describe()
    thinned = run(100, every_sweep=False)
    assert rows["f_est_err"].iloc[0] < 0.9 * thinned["f_est_err"].iloc[0], (rows.iloc[0], thinned.iloc[0])
    with pytest.raises(ValueError, match="ladder_every_sweep"):
        run(1, replica_exchange=True)


def test_fewer_longer_ladder_chains_keep_their_own_samples():
    """6x6 at T 1.5 from β = 0 with 16 ladder chains of 80 samples (``ladder_n_samples``), the
    anchor chains keeping 4: the row's budget counts the ladder chains' 80 samples, and the estimate
    is claimed within 4 error bars of the exact f. Without ladder chains the key is refused."""
    exact = ising_exact_table(6, np.array([1.5]), np.array([0.0]))
    samples = _uniform_table(6, 64, [(1.5, 0.0)], 1)
    kw = dict(model="uniform", source="direct", n_chains=8, burn_in_sweeps=50, n_samples=4, thin_sweeps=2,
              reference_df=exact, density=_uniform_density, ladder_top_rungs=10)  # fmt: skip
    lad = refine(IsingSystem(L=6), samples, seed=5, ladder_chains=16, ladder_n_samples=80, **kw).ladder
    assert lad["est_converged"].all() and (lad["est_sweeps"] == 50 + 80 * 2).all(), lad
    assert (lad["delta_f"].abs() < 4 * lad["f_est_err"]).all(), lad[["delta_f", "f_est_err"]]
    with pytest.raises(ValueError, match="ladder_n_samples"):
        refine(IsingSystem(L=6), samples, seed=5, ladder_n_samples=80, **{**kw, "ladder_top_rungs": 0})


def _exact_ladder_states(system, T):
    """Exact Boltzmann draws of the 4x4 torus at ``T`` (h = 0) as the ladder's states: energies and
    spin sums ``(len(T), 64 chains, 20 samples)``."""
    x = torch.cat(list(enumerate_states(16)))
    E_all, S_all = system.energy(x).double().numpy(), system.spin_sum(x).double().numpy()
    rng = np.random.default_rng(0)
    idx = []
    for t in T:
        log_p = -E_all / t
        p = np.exp(log_p - log_p.max())
        idx.append(rng.choice(len(E_all), size=(64, 20), p=p / p.sum()))
    return E_all[np.asarray(idx)], S_all[np.asarray(idx)]


def test_ladder_flags_anchors_that_disagree_with_its_links():
    """Exact Boltzmann draws of 4x4 as the ladder's states and exact anchors with 1e-4 error bars:
    a consistent fit that claims every temperature; one anchor shifted by 0.02 per site (0.13 in
    ln Z, several of the links' error bars): the chi-square says so, and no row of that field is
    claimed."""
    T = [2.0, 2.5, 3.0, 3.5]
    system = IsingSystem(L=4)
    E, S = _exact_ladder_states(system, T)
    exact = ising_exact_table(4, np.array(T), np.array([0.0]))
    anchors = exact.assign(f_est=exact["f"], f_est_err=1e-4, u_err=0.01, bar_overlap=MIN_OVERLAP_ALONE)
    ok = ladder_table(system, T, [0.0] * 4, E, S, anchors, model="m", source="direct", seed=1, reference_df=exact)
    assert ok["est_converged"].all() and ok["ladder_p"].iloc[0] > 1e-3 and (ok["ladder_dof"] == 3).all(), ok
    assert (ok["delta_f"].abs() < 4 * ok["f_est_err"]).all() and (ok["f_est_err"] < 1e-4).all()
    shifted = anchors.assign(f_est=anchors["f_est"] + np.where(anchors["T"] == 2.5, 0.02, 0.0))
    bad = ladder_table(system, T, [0.0] * 4, E, S, shifted, model="m", source="direct", seed=1)
    assert bad["ladder_p"].iloc[0] < 1e-3 and not bad["est_converged"].any(), bad


def test_the_ladder_claims_a_marginal_anchor_only_where_another_tests_it():
    """The exact ladder states of 4x4 above with anchors of MIN_OVERLAP crossings (enough to enter
    the fit, too few to be claimed alone): one such anchor ties every temperature but claims none
    (nothing tests it); two claim all four; one with MIN_OVERLAP_ALONE crossings alone claims all;
    an anchor whose chains did not mix (``u_err`` NaN) or with fewer crossings ties nothing."""
    T = [2.0, 2.5, 3.0, 3.5]
    system = IsingSystem(L=4)
    E, S = _exact_ladder_states(system, T)
    exact = ising_exact_table(4, np.array(T), np.array([0.0]))

    def fit(overlaps, u_err=0.01):
        anchors = exact.assign(f_est=exact["f"], f_est_err=1e-4, u_err=u_err, bar_overlap=overlaps)
        return ladder_table(system, T, [0.0] * 4, E, S, anchors, model="m", source="direct", seed=1,
                            reference_df=exact)  # fmt: skip

    one = fit([MIN_OVERLAP, 0.0, 0.0, 0.0])
    assert one["f_est"].notna().all() and not one["est_converged"].any() and (one["ladder_dof"] == 0).all(), one
    assert (one["delta_f"].abs() < 4 * one["f_est_err"]).all()  # the value is there, only unclaimed
    two = fit([MIN_OVERLAP, 0.0, 0.0, MIN_OVERLAP])
    assert two["est_converged"].all() and (two["ladder_dof"] == 1).all(), two
    alone = fit([0.0, MIN_OVERLAP_ALONE, 0.0, 0.0])
    assert alone["est_converged"].all(), alone
    none = fit([MIN_OVERLAP - 1, 0.0, 0.0, 0.0])
    assert none["f_est"].isna().all() and not none["est_converged"].any(), none
    unmixed = fit([MIN_OVERLAP_ALONE] * 4, u_err=np.nan)
    assert unmixed["f_est"].isna().all() and not unmixed["est_converged"].any(), unmixed


def test_links_read_the_mixing_of_the_series_they_use():
    """8x8 at T 1.5 with local moves alone, half the chains started all up and half all down: the
    energy mixes, the sign of m never flips, so the reference's ``converged`` fails everywhere. At
    h = 0 the link's reduced energy is the interaction energy alone and the chains may carry a link;
    at h = 0.02 it holds −h Σs too, which has not mixed, and they may not."""
    from lattherm.reference.mcmc import mcmc_table, run_metropolis
    from lattherm.refine import links_mixed

    system = IsingSystem(L=8)
    start = np.repeat(np.array([0, 1], np.int8), 16)[:, None] * np.ones((1, system.n_sites), np.int8)
    result = run_metropolis(system, np.array([1.5, 1.5]), np.array([0.0, 0.02]), n_chains=32, n_samples=50,
                            seed=3, burn_in_sweeps=50, thin_sweeps=2, start=start, keep_states=False)  # fmt: skip
    table = mcmc_table(result, system)
    assert not table["converged"].any() and table["u_err"].notna().all(), table[["field", "diagnosis", "u_err"]]
    assert links_mixed(table).tolist() == [True, False]
    # a ladder over them: at h = 0.02 the row says which chains cut its link
    T, h = np.array([1.5, 1.5]), np.array([0.0, 0.02])
    anchors = pd.DataFrame({"T": T, "field": h, "f_est": np.nan, "f_est_err": np.nan, "u_err": np.nan,
                            "bar_overlap": 0.0})  # fmt: skip
    lad = ladder_table(system, np.array([1.5, 2.0, 1.5, 2.0]), np.array([0.0, 0.0, 0.02, 0.02]),
                       np.concatenate([result.energy] * 2), np.concatenate([result.spin_sum] * 2), anchors,
                       model="m", source="s", seed=1, mixed=np.array([True, True, False, True]))  # fmt: skip
    assert lad.loc[lad["field"] == 0.02, "diagnosis"].str.contains("chains not mixed at T 1.5").all(), lad
