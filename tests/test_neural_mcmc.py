"""Independent Metropolis–Hastings with an imperfect proposal: its u, c, m, |m| agree with
enumeration on a 3x3 Ising torus within their error bars, and the error bars are honest over
many seeds (the z-scores have unit spread); a degenerate proposal is flagged."""

from __future__ import annotations

import numpy as np
import pytest

from lattherm.neural_mcmc import imh_chain, imh_thermo
from lattherm.reference.exact import enumerate_states
from lattherm.systems import IsingSystem

SYSTEM = IsingSystem(L=3)
STATES = next(enumerate_states(9))
E = SYSTEM.energy(STATES).double().numpy()
M = SYSTEM.spin_sum(STATES).double().numpy()


def _boltzmann(T: float, h: float) -> np.ndarray:
    logp = -(E - h * M) / T
    return np.exp(logp - np.logaddexp.reduce(logp))


def _exact(T: float, h: float) -> dict[str, float]:
    p = _boltzmann(T, h)
    u, m = p @ E / 9, p @ M / 9
    return {"u": u, "m": m, "abs_m": p @ np.abs(M) / 9, "c": (p @ E**2 - (p @ E) ** 2) / T**2 / 9}


def _proposals(n: int, seed: int, T_q: float = 3.2, h_q: float = 0.0):
    """n draws of the Boltzmann distribution at (T_q, h_q), an imperfect proposal for (2.4, 0.3)."""
    q = _boltzmann(T_q, h_q)
    i = np.random.default_rng(seed).choice(len(q), size=n, p=q)
    return E[i], M[i], np.log(q[i])


def test_chain_accepts_by_the_weights():
    idx, acc = imh_chain(np.zeros(100), generator=np.random.default_rng(0))
    assert acc == 1.0 and (idx == np.arange(100)).all()  # equal weights: every proposal accepted
    idx, acc = imh_chain(np.r_[10.0, np.zeros(99)], generator=np.random.default_rng(0))
    assert acc < 0.01 and (idx[:50] == 0).all()  # a heavy first state holds the chain
    with pytest.raises(ValueError, match="finite 1-D"):
        imh_chain(np.array([0.0, np.inf]), generator=np.random.default_rng(0))


def test_imh_matches_enumeration_with_honest_errors():
    exact = _exact(2.4, 0.3)
    res = imh_thermo(*_proposals(40_000, seed=1), 2.4, 0.3, 9, seed=2)
    assert res["converged"] and 0.3 < res["acceptance"] < 0.95
    for k in ("u", "m", "abs_m", "c"):
        assert abs(res[k] - exact[k]) < 4 * res[f"{k}_err"], (k, res[k], exact[k], res[f"{k}_err"])
        assert res[f"{k}_err"] < 0.02
    z = {k: [] for k in ("u", "m", "c")}
    for seed in range(40):
        r = imh_thermo(*_proposals(4000, seed=100 + seed), 2.4, 0.3, 9, seed=seed)
        for k in z:
            z[k].append((r[k] - exact[k]) / r[f"{k}_err"])
    for k, v in z.items():  # honest: unit spread (40 seeds: sd within about ±30 %), no bias
        v = np.asarray(v)
        assert 0.65 < v.std() < 1.45 and abs(v.mean()) < 0.6, (k, v.mean(), v.std())


def test_degenerate_proposal_is_flagged():
    """A proposal that barely covers p (all mass near one sector at low T): the chain sticks, τ is
    long and the row is not claimed converged."""
    res = imh_thermo(*_proposals(2000, seed=3, T_q=1.2, h_q=-1.0), 1.5, 1.0, 9, seed=0)
    assert not res["converged"] and res["n_effective"] < 50
    with pytest.raises(ValueError, match="burn_in"):
        imh_thermo(*_proposals(10, seed=0), 2.4, 0.3, 9, seed=0, burn_in=1.0)
    with pytest.raises(ValueError, match="one shape"):
        imh_thermo(E[:3], M[:2], E[:3], 2.4, 0.3, 9, seed=0)
    stuck = imh_thermo(np.r_[-30.0, np.zeros(999)], np.zeros(1000), np.zeros(1000), 1.0, 0.0, 9, seed=0)
    assert stuck["u_err"] == 0 and stuck["n_effective"] == 1 and not stuck["converged"]  # never moved


@pytest.mark.usefixtures("float64_one_thread")
def test_metric_rows_carry_the_chain_over_their_samples():
    """metrics_table: the IMH columns of a good sampler (the exact twin, 3x3) agree with
    enumeration within 4σ and are converged; u also agrees with the reweighted estimate."""
    from conftest import BOX

    from lattherm.evaluation import IMH_COLUMNS, metrics_table, sample_model
    from lattherm.models import ExactModel
    from lattherm.reference.exact import exact_thermodynamics

    system = IsingSystem(L=3)
    T, h = [1.8, 3.0], [0.4]
    met = metrics_table(sample_model(ExactModel(system=system, cond_box=BOX), system, T, h, 3000, seed=2), system,
                        "exact", "direct", None, None, n_boot=50)  # fmt: skip
    assert set(IMH_COLUMNS) <= set(met.columns)
    for _, r in met.iterrows():
        ex = exact_thermodynamics(system, r["T"], r["field"])
        assert r["imh_converged"] and r["imh_acceptance"] > 0.99  # q = p: every proposal accepted
        for q in ("u", "c", "m"):
            assert abs(r[f"imh_{q}"] - float(ex[q])) < 4 * r[f"imh_{q}_err"], q
        assert abs(r["imh_u"] - r["u"]) < 4 * r["u_err"]
