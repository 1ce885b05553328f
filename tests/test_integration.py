"""Free energies past enumeration (lattherm.reference.integration): field reweighting from Kaufman's
f(T, 0) and thermodynamic integration over β, against the exact transfer matrix and Kaufman's form.

Tolerances can fail: every claimed row within |z| < 4 of the exact value, error bars below 2e-4
relative at these settings, and a too-coarse run either flagged or covered by its error bar."""

from __future__ import annotations

import numpy as np
import pytest

from lattherm.reference.exact import T_C, enumerate_levels, ising_kaufman, ising_transfer_matrix
from lattherm.reference.integration import (
    BETA_COLUMNS,
    FIELD_COLUMNS,
    beta_nodes,
    exchange_temperatures,
    field_ladder,
    field_mbar,
    ising_beta_integration,
    ising_field_integration,
)
from lattherm.systems.ising import IsingSystem

#: below, at and above T_c; the small fields below T_c are where ln 2 / N lives
T_GRID = [1.5, 2.0, 2.269, 2.6, 3.5]
H_GRID = [0.0, 0.005, -0.005, 0.02, 0.05, 0.3, 1.0]


def _exact(L, T, h):
    TT, HH = np.meshgrid(np.asarray(T, float), np.asarray(h, float), indexing="ij")
    r = ising_transfer_matrix(L, TT.ravel(), HH.ravel())
    return {(t, f): (F, m) for t, f, F, m in zip(TT.ravel(), HH.ravel(), r["f"], r["m"], strict=True)}


# ----------------------------------------------------------------------------- ladders and rules
def test_field_ladder_holds_zero_the_targets_and_a_graded_ladder():
    lad = field_ladder([0.25, -0.05, 1.0], 8)
    assert lad[0] == 0.0 and np.all(np.diff(lad) > 0)
    assert {0.05, 0.25, 1.0} <= set(lad.tolist())
    assert lad[1] == pytest.approx(1 / 64) and lad[-1] == 1.0
    ratios = lad[2:] / lad[1:-1]
    assert ratios.max() <= 1.4**1.25 * (1 + 1e-12) and len(lad) > 10  # a point near a target is dropped
    assert field_ladder([0.5], 4, h_min=10.0).tolist() == [0.0, 0.5]  # no ladder below the target
    with pytest.raises(ValueError, match="ratio"):
        field_ladder([0.5], 4, ratio=1.0)
    with pytest.raises(ValueError, match="finite"):
        field_ladder([np.nan], 4)


def test_exchange_temperatures_hold_the_targets_and_bound_the_spacing():
    L, spacing = 12, 1.2
    T = exchange_temperatures(L, [1.5, 2.269, 3.0], spacing=spacing)
    assert {1.5, 2.269, 3.0} <= set(T.tolist()) and np.all(np.diff(T) > 0)
    assert T.max() == pytest.approx(1.6 * T_C)
    beta = 1 / T
    c = ising_kaufman(L, T)["c"]
    sigma = np.sqrt(c * L * L) / beta  # exact h = 0 energy spread
    worst = (-np.diff(beta)) * np.maximum(sigma[1:], sigma[:-1])
    assert worst.max() < 1.5 * spacing  # about erfc(0.6) = 0.4 acceptance between neighbours
    with pytest.raises(ValueError, match="temperatures"):
        exchange_temperatures(L, [0.0, 1.0])


def test_beta_nodes_simpson_rules_are_exact_for_cubics():
    rule = beta_nodes([1.5, 2.269, 3.5], d_beta=0.03)
    assert rule.nodes[0] == 0.0 and np.all(np.diff(rule.nodes) > 0)
    assert np.diff(rule.nodes).max() <= 0.03 + 1e-12 and beta_nodes([1.5]).nodes.size == 4 * 12 + 1
    assert set((1 / np.array([1.5, 2.269, 3.5])).tolist()) <= set(rule.nodes.tolist())
    g = 1.0 - 2.0 * rule.nodes + 3.0 * rule.nodes**3
    exact = rule.beta - rule.beta**2 + 0.75 * rule.beta**4
    np.testing.assert_allclose(rule.fine @ g, exact, rtol=1e-13)
    np.testing.assert_allclose(rule.coarse @ g, exact, rtol=1e-13)
    # a quartic separates the rules: Richardson's |fine − coarse| / 15 is then the fine rule's error
    g4 = rule.nodes**4
    err_fine = rule.fine @ g4 - rule.beta**5 / 5
    np.testing.assert_allclose((rule.fine - rule.coarse) @ g4 / 15, -err_fine, rtol=1e-6)


# ----------------------------------------------------------------------------- MBAR on exact histograms
@pytest.mark.parametrize("T", [1.5, 2.5])
def test_field_mbar_recovers_exact_ratios_from_exact_histograms_even_with_one_sector_at_zero(T):
    """Exact Σs histograms of the 4x4 torus (enumeration); at h = 0 only the M >= 0 sector is given,
    as from chains that never tunnel: the mirror images restore the other sector and its ln 2."""
    L, N = 4, 16
    lv = enumerate_levels(IsingSystem(L))
    fields = np.array([0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0])
    beta = 1.0 / T
    counts = np.zeros((fields.size, 2, N + 1))
    for k, h in enumerate(fields):
        logw = lv.log_count - beta * lv.energy + beta * h * lv.spin_sum
        p = np.bincount(((lv.spin_sum + N) / 2).astype(int), weights=np.exp(logw - logw.max()), minlength=N + 1)
        p /= p.sum()
        if h == 0:
            p[: N // 2] = 0.0  # one sector: M < 0 never seen
            p[N // 2] *= 0.5  # M = 0 shared between the mirror images
            p /= p.sum()
        counts[k] = np.rint(p * 1e9)[None, :]  # two identical slot groups
    ev = np.array([0.0, 0.01, 0.02, 0.3, 1.0])
    out = field_mbar(counts, fields, beta, ev)
    exact = ising_transfer_matrix(L, T, ev)
    np.testing.assert_allclose(out["log_z"], exact["log_Z"] - exact["log_Z"][0], atol=1e-6)
    np.testing.assert_allclose(out["m"], exact["m"], atol=1e-6)
    assert np.all(out["overlap"] > 0.1) and out["overlap"][0] == 1.0
    with pytest.raises(ValueError, match="ascending"):
        field_mbar(counts[::-1], fields[::-1], beta, ev)


# ----------------------------------------------------------------------------- against exact values
@pytest.fixture(scope="module")
def field_8x8():
    return ising_field_integration(8, T_GRID, H_GRID, n_chains=64, n_samples=600, burn_in_sweeps=300, seed=11)


def test_field_integration_matches_the_transfer_matrix_on_8x8(field_8x8):
    tab = field_8x8
    assert tuple(tab.columns[: len(FIELD_COLUMNS)]) == FIELD_COLUMNS
    assert len(tab) == len(T_GRID) * len(H_GRID) and (tab["method"] == "field_integration").all()
    assert tab["converged"].all(), tab.loc[~tab["converged"], ["T", "field", "diagnosis"]].to_string()
    ex = _exact(8, T_GRID, H_GRID)
    f_ex = np.array([ex[(r.T, r.field)][0] for r in tab.itertuples()])
    m_ex = np.array([ex[(r.T, r.field)][1] for r in tab.itertuples()])
    nz = tab["field"].to_numpy() != 0
    f, f_err = tab["f"].to_numpy(), tab["f_err"].to_numpy()
    z = (f[nz] - f_ex[nz]) / f_err[nz]
    assert np.all(f_err[nz] > 0) and np.abs(z).max() < 4, z
    assert (f_err[nz] / np.abs(f[nz])).max() < 2e-4
    zm = (tab["m"].to_numpy()[nz] - m_ex[nz]) / tab["m_err"].to_numpy()[nz]
    assert np.abs(zm).max() < 4, zm
    np.testing.assert_allclose(f[~nz], f_ex[~nz], rtol=1e-12)  # Kaufman at h = 0
    # the two sectors' ln 2 / N: f(1.5, 0.02) lies T ln 2 / N = 0.016 above the one-sector value
    row = tab[(tab["T"] == 1.5) & (tab["field"] == 0.02)].iloc[0]
    assert abs(row.f - ex[(1.5, 0.02)][0]) < 1e-3 * 1.5 * np.log(2) / 64


def test_field_integration_uses_the_symmetry_in_h(field_8x8):
    tab = field_8x8.set_index(["T", "field"])
    for t in T_GRID:
        a, b = tab.loc[(t, 0.005)], tab.loc[(t, -0.005)]
        assert a.f == b.f and a.f_err == b.f_err and a.m == -b.m and a.m_err == b.m_err


def test_beta_integration_matches_the_transfer_matrix_and_kaufman():
    T = [1.5, 2.269, 3.5]
    tab = ising_beta_integration(8, T, [0.0, 0.3], n_chains=64, n_samples=75, burn_in_sweeps=300, seed=5)
    assert tuple(tab.columns[: len(BETA_COLUMNS)]) == BETA_COLUMNS and len(tab) == 6
    assert tab["converged"].all(), tab.loc[~tab["converged"], ["T", "field", "diagnosis"]].to_string()
    ex = _exact(8, T, [0.0, 0.3])
    f_ex = np.array([ex[(r.T, r.field)][0] for r in tab.itertuples()])
    z = (tab["f"] - f_ex) / tab["f_err"]
    assert np.abs(z).max() < 4, z.to_numpy()
    assert (tab["f_err"] / tab["f"].abs()).max() < 2e-4
    assert (tab["f_err_quad"] < tab["f_err_stat"]).all() and (tab["spin_flips"] > 0).all()
    assert (tab["wall_s"] > 0).all() and (tab["method"] == "beta_integration").all()
    # a size past the transfer matrix's reach in tests, against Kaufman at h = 0
    t10 = ising_beta_integration(10, [1.8, 2.4], n_chains=64, n_samples=50, burn_in_sweeps=300, seed=6)
    z10 = (t10["f"] - ising_kaufman(10, t10["T"])["f"]) / t10["f_err"]
    assert t10["converged"].all() and np.abs(z10).max() < 4, z10.to_numpy()
    # with a Wolff move after every sweep (the cluster baseline), the same claims
    w10 = ising_beta_integration(10, [1.8, 2.4], n_chains=64, n_samples=50, burn_in_sweeps=300, seed=6,
                                 cluster_updates=1)  # fmt: skip
    zw = (w10["f"] - ising_kaufman(10, w10["T"])["f"]) / w10["f_err"]
    assert w10["converged"].all() and np.abs(zw).max() < 4, zw.to_numpy()
    assert not np.array_equal(w10["f"], t10["f"])


# ----------------------------------------------------------------------------- too coarse
def test_a_too_coarse_beta_grid_is_flagged_or_covered():
    T = [1.5, 2.269]
    tab = ising_beta_integration(8, T, d_beta=1.0, n_chains=64, n_samples=100, burn_in_sweeps=200, seed=7)
    assert tab["n_nodes"].max() <= 9  # 4 Simpson steps per panel
    f_ex = ising_kaufman(8, tab["T"])["f"]
    z = np.abs(tab["f"] - f_ex) / tab["f_err"]
    assert np.all(~tab["converged"] | (z < 4)), tab[["T", "f_err", "diagnosis"]].to_string()
    assert not tab["converged"].any()  # here: Richardson's estimate dominates, and says so
    assert tab["diagnosis"].str.contains("discretisation").all()


def test_a_too_coarse_field_ladder_is_flagged_or_covered():
    """Only the requested fields sampled (no ladder between 0 and 1): where MBAR's neighbour overlap is
    too small the rows are flagged, elsewhere the error bars cover the exact values."""
    T, H = [2.269, 3.5], [0.0, 1.0]
    tab = ising_field_integration(12, T, H, h_min=10.0, n_chains=64, n_samples=200, burn_in_sweeps=200, seed=8)
    assert (tab["n_fields"] == 2).all()
    ex = _exact(12, T, H)
    rows = tab[tab["field"] != 0]
    z = np.abs(np.array([(r.f - ex[(r.T, r.field)][0]) / r.f_err for r in rows.itertuples()]))
    assert np.all(~rows["converged"].to_numpy() | (z < 4)), rows[["T", "overlap", "diagnosis"]].to_string()
    assert not rows["converged"].all() and rows["diagnosis"].str.contains("overlap").any()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="L must be"):
        ising_field_integration(1, [2.0], [0.1])
    with pytest.raises(ValueError, match="temperatures"):
        ising_beta_integration(4, [-1.0])
    with pytest.raises(ValueError, match="d_beta"):
        beta_nodes([2.0], d_beta=0.0)


@pytest.mark.slow
def test_field_and_beta_integration_agree_on_16x16():
    """Past the transfer matrix nothing is exact at h != 0: the two independent methods must agree."""
    T, H = [1.5, 2.269], [0.05, 0.5]
    fi = ising_field_integration(16, T, H, n_chains=64, n_samples=400, burn_in_sweeps=300, seed=21)
    ti = ising_beta_integration(16, T, H, n_chains=64, n_samples=75, burn_in_sweeps=300, seed=22)
    assert fi["converged"].all() and ti["converged"].all()
    z = (fi["f"].to_numpy() - ti["f"].to_numpy()) / np.hypot(fi["f_err"], ti["f_err"]).to_numpy()
    assert np.abs(z).max() < 4, z
