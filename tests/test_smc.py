"""Sequential Monte Carlo from a sampler to p (lattherm.smc) against exact free energies: honest
error bars where importance sampling's weights degenerate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lattherm.observables import f_nis, log_weights, ness
from lattherm.reference.exact import exact_thermodynamics
from lattherm.smc import next_lambda, smc_free_energy, systematic_resample
from lattherm.systems import IsingSystem
from lattherm.systems.base import reduced_energy

SYSTEM = IsingSystem(L=4)


def product_sampler(p_up: float):
    """Independent spins, up with probability ``p_up``: draws with their exact log q (a poor
    sampler of the coupled model; its NESS falls with T)."""

    def draw(k: int, gen: torch.Generator):
        x = (torch.rand(k, SYSTEM.n_sites, generator=gen, dtype=torch.float64) < p_up).long()
        n_up = x.sum(1).double()
        log_q = n_up * np.log(p_up) + (SYSTEM.n_sites - n_up) * np.log1p(-p_up)
        return x, log_q

    return draw


def exact(T: float, h: float) -> dict:
    return {k: float(v) for k, v in exact_thermodynamics(SYSTEM, T, h).items()}


def nis_ness(draw, T, h, n=20000) -> float:
    x, lq = draw(n, torch.Generator().manual_seed(0))
    return ness(log_weights(lq.numpy(), reduced_energy(SYSTEM, x, T, h).numpy()))


@pytest.mark.parametrize(("T", "h", "p_up", "T_start"), [(5.0, 0.0, 0.5, None), (2.0, 0.3, 0.6, 10.0),
                                                      (1.6, 0.0, 0.5, 10.0)])  # fmt: skip
def test_free_energy_within_its_error_bar_where_weights_degenerate(T, h, p_up, T_start):
    """4x4 Ising from independent spins: at T = 5 along λ at the target (independent MH moves); at
    T = 2 and 1.6, where importance sampling's NESS is below 1e-3, started at T = 10 and annealed in
    β with Metropolis sweeps. f_est within 4σ of the exact f, the error bar tight (below 0.5 % of
    |f|), u within its error bar, the run converged."""
    draw = product_sampler(p_up)
    res = smc_free_energy(draw, SYSTEM, T, h, n_particles=1000, n_replicas=8, seed=1, T_start=T_start)
    ref = exact(T, h)
    assert res["converged"]
    assert abs(res["f_est"] - ref["f"]) < 4 * res["f_est_err"]
    assert 0 < res["f_est_err"] < 5e-3 * abs(ref["f"])
    assert abs(res["u"] - ref["u"]) < 4 * res["u_err"] + 2e-3
    assert res["draws"] >= 8 * 1000 and (res["beta_levels"] > 1) == (T_start is not None)
    if T_start is not None:
        assert nis_ness(draw, T, h) < 1e-3  # where importance sampling alone has nothing left


def test_error_bars_cover_the_exact_value_across_seeds():
    """T = 1.8 (NESS ≈ 1e-4 for independent spins), annealed from T = 10: over 12 seeds the
    standardised errors of f_est behave like a normal sample (at most 2 beyond 2σ, none beyond
    4σ), where plain importance sampling at the target with as many draws of q is biased (f high,
    ln Z low) on average."""
    T, h = 1.8, 0.0
    draw = product_sampler(0.5)
    f_ref = exact(T, h)["f"]
    z, nis_bias = [], []
    for seed in range(12):
        res = smc_free_energy(draw, SYSTEM, T, h, n_particles=500, n_replicas=8, seed=seed, T_start=10.0)
        z.append((res["f_est"] - f_ref) / res["f_est_err"])
        x, lq = draw(res["draws"], torch.Generator().manual_seed(100 + seed))
        lw = log_weights(lq.numpy(), reduced_energy(SYSTEM, x, T, h).numpy())
        nis_bias.append(f_nis(lw, T, SYSTEM.n_sites)[0] - f_ref)
    z = np.abs(np.array(z))
    assert (z > 2).sum() <= 2 and z.max() < 4
    assert np.mean(nis_bias) > 0


def test_perfect_sampler_is_one_level_and_exact():
    """q = p (drawn from the enumerated Boltzmann weights): log w is constant, the ladder is one
    level and ln Z is exact with zero spread."""
    T, h = 2.2, 0.2
    from lattherm.reference.exact import enumerate_states

    X = torch.cat(list(enumerate_states(SYSTEM.n_sites))).long()
    log_p = -reduced_energy(SYSTEM, X, T, h).double()
    log_p = log_p - torch.logsumexp(log_p, 0)

    def draw(k, gen):
        i = torch.multinomial(log_p.exp(), k, replacement=True, generator=gen)
        return X[i], log_p[i]

    res = smc_free_energy(draw, SYSTEM, T, h, n_particles=200, n_replicas=3, seed=0)
    ref = exact(T, h)
    assert res["levels"] == 1 and res["draws"] == 600
    assert abs(res["f_est"] - ref["f"]) < 1e-12 and res["f_est_err"] < 1e-12


def test_ladder_steps_and_resampling():
    rng = np.random.default_rng(0)
    log_w = rng.normal(0, 5, 1000)
    lam = next_lambda(0.0, np.zeros(1000), log_w, 0.5)
    a = lam * log_w
    cess = np.exp(2 * np.logaddexp.reduce(a) - np.logaddexp.reduce(2 * a)) / 1000
    assert 0 < lam < 1 and abs(cess - 0.5) < 1e-6
    assert next_lambda(0.0, np.zeros(10), np.zeros(10), 0.5) == 1.0
    idx = systematic_resample(np.log(np.array([0.5, 0.25, 0.25, 1e-300])), np.random.default_rng(1))
    assert sorted(idx.tolist()) == [0, 0, 1, 2]


def test_bad_settings_are_refused():
    draw = product_sampler(0.5)
    for kw, msg in (({"n_particles": 1}, "n_particles"), ({"n_replicas": 1}, "n_replicas"), ({"cess": 1.0}, "cess"),
                    ({"resample": 0}, "resample"), ({"n_moves": 1.5}, "n_moves")):  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            smc_free_energy(draw, SYSTEM, 2.0, 0.0, **kw)
    with pytest.raises(ValueError, match="T > 0"):
        smc_free_energy(draw, SYSTEM, -1.0, 0.0)
    with pytest.raises(ValueError, match="T_start must be"):
        smc_free_energy(draw, SYSTEM, 2.0, 0.0, T_start=1.5)
    with pytest.raises(ValueError, match="n_sweeps"):
        smc_free_energy(draw, SYSTEM, 2.0, 0.0, T_start=3.0, n_sweeps=0)


@pytest.mark.usefixtures("float64_one_thread")
def test_smc_rows_of_a_model_against_enumeration():
    """smc_model on the exact twin (q = p, 3x3): at the condition's own T one level and the exact
    f; started at the top of the box and annealed in β, within 4σ of it; the budget recorded; the
    NIS rows of the same sampler carry the same estimate columns."""
    from conftest import BOX

    from lattherm.evaluation import ESTIMATE_COLUMNS, direct_draw, metrics_table, sample_model, smc_model
    from lattherm.models import ExactModel
    from lattherm.reference.exact import ising_exact_table

    system = IsingSystem(L=3)
    model = ExactModel(system=system, cond_box=BOX)
    T, h = [2.0], [0.3]
    ref = ising_exact_table(3, T, h)
    draw, meta = direct_draw(model, system, h)
    kw = dict(seed=3, reference_df=ref, ref_method="exact", n_particles=200, n_replicas=4)
    own = smc_model(model, system, T, h, draw, meta, **kw).iloc[0]
    assert own["estimator"] == "smc" and own["levels"] == 1 and own["beta_levels"] == 0
    assert abs(own["delta_f"]) < 1e-10 and own["est_converged"] and own["est_draws"] == 800
    rows = smc_model(model, system, T, h, draw, meta, T_start="box", **kw)
    r = rows.iloc[0]
    assert set(ESTIMATE_COLUMNS) <= set(rows.columns)
    assert r["T_start"] == BOX[0][1] and r["beta_levels"] >= 1 and r["est_converged"]
    assert abs(r["delta_f"]) < 4 * r["f_est_err"] and r["f_est_err"] < 1e-2 * abs(r["f_ref"])
    assert r["est_sweeps"] > 0 and r["est_wall_s"] > 0
    met = metrics_table(sample_model(model, system, T, h, 500, seed=0), system, model.name, "direct", ref, "exact")
    nis = met.iloc[0]
    assert nis["estimator"] == "nis" and nis["f_est"] == nis["f_nis"] and nis["est_draws"] == 500
    assert nis["est_converged"] == (nis["ness"] * 500 >= 50)
    with pytest.raises(ValueError, match="T_start"):
        smc_model(model, system, T, h, draw, meta, seed=0, T_start="top")
