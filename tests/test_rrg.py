"""Spin glasses on random regular graphs: instances (graph and couplings) from their seed, exact
enumeration against a direct sum, and thermodynamic integration over β against enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lattherm.reference import applies, couplings_table, exact_table, free_energy_reference
from lattherm.reference.integration import beta_integration
from lattherm.systems import make_system, system_info


def test_instances_are_simple_regular_graphs_from_their_seed():
    a, b, c = (make_system("rrg", s) for s in ("n24-d3-s1", "n24-d3-s1", "n24-d3-s2"))
    assert torch.equal(a.J, b.J) and torch.equal(a._bonds, b._bonds) and not torch.equal(a._bonds, c._bonds)
    for system, d in ((a, 3), (make_system("rrg", "n30-d4-s7"), 4)):
        e = system.couplings_table()[["i", "j"]].to_numpy()
        assert len(e) == system.n_sites * d // 2 and (e[:, 0] < e[:, 1]).all()
        assert len({tuple(p) for p in e.tolist()}) == len(e)  # no repeated edge, no loop
        np.testing.assert_array_equal(np.bincount(e.ravel(), minlength=system.n_sites), d)  # regular
    pm = make_system("rrg", "n12-d3-s1", couplings="pm")
    assert set(pm.J.tolist()) == {-1.0, 1.0}
    t = couplings_table("rrg", "n24-d3-s1", params={"couplings": "gaussian"})
    assert list(t.columns) == ["system", "size", "i", "j", "J"] and len(t) == 36
    np.testing.assert_array_equal(t["J"], a.J.numpy())
    info = system_info("rrg")
    assert info.disordered and info.graph and info.two_body and info.n_sites("n24-d3-s1") == 24
    for bad, msg in (("n24-d3", "disorder instance"), ("24-s1", "graph"), ("n23-d3-s1", "even"),
                     ("n4-d4-s1", "degree < sites"), ("8x8-s1", "graph")):  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            info.parse(bad)
    with pytest.raises(ValueError, match="box, not a graph"):
        system_info("ising").parse("n24-d3")


def test_energies_and_single_flips():
    system = make_system("rrg", "n16-d3-s4")
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 2, (64, 16), generator=gen)
    sites = torch.randint(0, 16, (64,), generator=gen)
    flipped = x.clone()
    flipped[torch.arange(64), sites] ^= 1
    torch.testing.assert_close(system.delta_energy(x, sites), system.energy(flipped) - system.energy(x), rtol=0,
                               atol=1e-12)  # fmt: skip
    torch.testing.assert_close(system.energy(1 - x), system.energy(x))  # the global flip at h = 0


def test_exact_table_is_the_direct_sum():
    """Enumeration through the reference dispatch against ln Z summed here term by term."""
    system = make_system("rrg", "n10-d3-s3")
    T, h = [0.5, 1.0, 2.0], [0.0, 0.4]
    table = exact_table("rrg", "n10-d3-s3", T, h)
    assert list(table.columns) == ["system", "size", "T", "field", "f", "u", "c", "m", "method"]
    assert (table["method"] == "enumeration").all() and len(table) == 6
    e = system.couplings_table()
    for r in table.itertuples():
        terms, energies = [], []
        for bits in itertools.product((-1, 1), repeat=10):
            s = np.array(bits, dtype=float)
            E = -float((e["J"] * s[e["i"]] * s[e["j"]]).sum())
            terms.append(-(E - r.field * s.sum()) / r.T)
            energies.append(E)
        w = np.exp(np.array(terms) - max(terms))
        log_z = math.log(w.sum()) + max(terms)
        assert r.f == pytest.approx(-r.T * log_z / 10, rel=1e-12)
        assert r.u == pytest.approx(float(w @ np.array(energies) / w.sum()) / 10, rel=1e-10, abs=1e-12)


def test_beta_integration_matches_enumeration_within_its_error_bars():
    """β integration with replica exchange on a 20-site glass (down to T = 0.5, in its glassy
    phase): every row converged, within 4 error bars of enumeration, errors a few 1e-4 of f."""
    system = make_system("rrg", "n20-d3-s2")
    T = [0.5, 1.0, 2.0]
    exact = exact_table("rrg", "n20-d3-s2", T, 0.0)
    tab = beta_integration(system, T, 0.0, n_chains=64, n_samples=60, burn_in_sweeps=200, thin_sweeps=4,
                           d_beta=0.03, seed=11)  # fmt: skip
    assert (tab["system"] == "rrg").all() and (tab["size"] == "n20-d3-s2").all() and tab["converged"].all()
    z = (tab["f"].to_numpy() - exact["f"].to_numpy()) / tab["f_err"].to_numpy()
    assert (np.abs(z) < 4).all(), (z, tab[["T", "f", "f_err", "diagnosis"]])
    assert (tab["f_err"] / exact["f"].abs() < 1e-3).all()
    assert (tab["f_err_quad"] <= tab["f_err_stat"]).all()


def test_which_reference_applies():
    settings = {"exact": {"max_transfer_L": 14}}
    for size, exact in (("n24-d3-s1", True), ("n64-d3-s1", False)):
        assert applies("rrg", "exact", size, settings) == exact
        assert applies("rrg", "beta_integration", size, settings) == (not exact)
    assert free_energy_reference("rrg", "n24-d3-s1", settings, [0.0]) == "exact"
    assert free_energy_reference("rrg", "n64-d3-s1", settings, [0.0]) == "beta_integration"


@pytest.mark.workflow
def test_twobo_on_a_glass_past_enumeration_through_the_workflow(snakemake_exe, tmp_path):
    """A 26-site instance: the β-integration reference, then the two-body ARN's metrics against it,
    with the reference's own error carried in f_ref_err and the difference within the combined errors."""
    from test_workflow import run_snakemake

    cfg = {"seed": 3,
           "systems": {"rrg": {"sizes": ["n26-d3-s1"], "T": {"values": [0.8, 2.0]}, "field": {"values": [0.0]},
                               "models": ["twobo"]}},
           "reference": {"beta_integration": {"d_beta": 0.05, "n_chains": 64, "n_samples": 40, "burn_in_sweeps": 100,
                                              "thin_sweeps": 3}},
           "models": {"twobo": {"hidden": 8, "n_freq": 2}},
           "training": {"rrg": {"steps": 300, "lr": 3e-2, "samples_per_condition": 32, "n_T": 2, "n_field": 1}},
           "sampling": {"n_samples": 2000, "batch_size": 4000}, "metrics": {"n_boot": 50}}  # fmt: skip
    rc, out = run_snakemake(snakemake_exe, tmp_path, "results/rrg/n26-d3-s1/metrics/twobo/direct.parquet", config=cfg)
    assert rc == 0, out
    ref = pd.read_parquet(tmp_path / "results/rrg/n26-d3-s1/reference/beta_integration.parquet")
    assert ref["converged"].all() and (ref["method"] == "beta_integration").all()
    m = pd.read_parquet(tmp_path / "results/rrg/n26-d3-s1/metrics/twobo/direct.parquet")
    assert (m["ref_method"] == "beta_integration").all() and (m["f_ref_err"] > 0).all()
    np.testing.assert_allclose(m["f_ref_err"], ref["f_err"])
    z = m["delta_f"] / np.hypot(m["f_nis_err"], m["f_ref_err"])
    assert (m["ness"] > 0.3).all() and (z.abs() < 4).all(), m[["T", "delta_f", "f_nis_err", "f_ref_err", "ness"]]
