"""The 2D Edwards–Anderson spin glass: instances from their seed, energies, and the row transfer
matrix with site-dependent couplings against exact enumeration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lattherm.reference import couplings_table, exact_table
from lattherm.reference.exact import exact_thermodynamics
from lattherm.reference.spin_glass import ea_transfer_matrix
from lattherm.systems import make_system, system_info


def test_instances_come_from_their_seed():
    a, b, c = make_system("ea", "4x4-s1"), make_system("ea", "4x4-s1"), make_system("ea", "4x4-s2")
    assert torch.equal(a.J, b.J) and not torch.equal(a.J, c.J)
    pm = make_system("ea", "4x4-s1", couplings="pm")
    assert set(pm.J.tolist()) == {-1.0, 1.0} and len(a.J) == 2 * 16
    t = couplings_table("ea", "4x4-s1", params={"couplings": "gaussian"})
    assert list(t.columns) == ["system", "size", "i", "j", "J"] and len(t) == 32
    np.testing.assert_array_equal(t["J"], a.J.numpy())
    with pytest.raises(ValueError, match="disorder instance"):
        make_system("ea", "4x4")
    with pytest.raises(ValueError, match="couplings"):
        make_system("ea", "4x4-s1", couplings="cauchy")
    assert system_info("ea").disordered and system_info("ea").flip_symmetric


def test_energy_from_the_couplings_table_and_single_flips():
    system = make_system("ea", "3x3-s5")
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (64, 9), generator=gen)
    t = system.couplings_table()
    s = (2 * x - 1).double()
    E = -(s[:, t["i"].to_numpy()] * s[:, t["j"].to_numpy()] * torch.tensor(t["J"].to_numpy().copy())).sum(1)
    torch.testing.assert_close(system.energy(x), E, rtol=0, atol=1e-12)
    sites = torch.randint(0, 9, (64,), generator=gen)
    flipped = x.clone()
    flipped[torch.arange(64), sites] = 1 - flipped[torch.arange(64), sites]
    torch.testing.assert_close(system.delta_energy(x, sites), system.energy(flipped) - system.energy(x), rtol=0,
                               atol=1e-12)  # fmt: skip
    torch.testing.assert_close(system.energy(1 - x), system.energy(x))  # the global flip at h = 0


@pytest.mark.parametrize("size", ["2x2-s3", "3x3-s7", "4x4-s1"])
@pytest.mark.parametrize("couplings", ["gaussian", "pm"])
def test_transfer_matrix_matches_enumeration(size, couplings):
    system = make_system("ea", size, couplings=couplings)
    T, h = np.array([0.4, 1.0, 2.0, 3.0]), np.array([0.0, 0.3, -0.7, 0.1])
    tm, ref = ea_transfer_matrix(system, T, h), exact_thermodynamics(system, T, h)
    for k in ("f", "u", "c", "m"):
        np.testing.assert_allclose(tm[k], np.asarray(ref[k]), rtol=1e-12, atol=1e-13, err_msg=k)


def test_exact_table_through_the_reference_dispatch():
    table = exact_table("ea", "3x3-s2", [0.5, 1.0], [0.0, 0.2], params={"couplings": "pm"})
    assert list(table.columns) == ["system", "size", "T", "field", "f", "u", "c", "m", "method"]
    assert len(table) == 4 and (table["method"] == "transfer_matrix").all() and (table["system"] == "ea").all()
    # an instance's f is not the clean ferromagnet's, and c >= 0 everywhere
    ising = exact_table("ising", "3x3", [0.5, 1.0], [0.0, 0.2])
    assert not np.allclose(table["f"], ising["f"]) and (table["c"] >= 0).all()
    assert isinstance(table, pd.DataFrame)


EA = {
    "seed": 9,
    "systems": {"ea": {"couplings": "gaussian", "sizes": ["4x4-s1", "4x4-s2"], "T": {"values": [0.6, 1.2, 2.5]},
                       "field": {"values": [-0.2, 0.0, 0.2]}}},
    "reference": {"mcmc": {"ea": {"n_chains": 48, "n_samples": 30, "burn_in_sweeps": 300, "thin_sweeps": 10,
                                  "saved_per_condition": 8}}},
}  # fmt: skip


@pytest.mark.workflow
def test_ea_instances_through_the_workflow(snakemake_exe, tmp_path):
    """Two instances of a config: their couplings stored, exact tables equal to enumeration, and the
    Metropolis reference (replica exchange) within 4 of its error bars where it claims them."""
    from test_workflow import run_snakemake

    rc, out = run_snakemake(snakemake_exe, tmp_path, "all_references", config=EA)
    assert rc == 0, out
    for size in ("4x4-s1", "4x4-s2"):
        base = tmp_path / "results/ea" / size / "reference"
        system = make_system("ea", size)
        np.testing.assert_array_equal(pd.read_parquet(base / "couplings.parquet")["J"], system.J.numpy())
        exact = pd.read_parquet(base / "exact.parquet")
        ref = exact_thermodynamics(system, exact["T"].to_numpy(), exact["field"].to_numpy())
        np.testing.assert_allclose(exact["f"], ref["f"], rtol=1e-12)
        mcmc = pd.read_parquet(base / "mcmc.parquet").merge(exact, on=["T", "field"], suffixes=("", "_ref"))
        for q in ("u", "m"):
            z = ((mcmc[q] - mcmc[f"{q}_ref"]) / mcmc[f"{q}_err"]).dropna()
            assert len(z) >= 5 and (z.abs() < 4).all(), (size, q, mcmc[["T", "field", q, f"{q}_ref", f"{q}_err"]])
    s1 = pd.read_parquet(tmp_path / "results/ea/4x4-s1/reference/exact.parquet")
    s2 = pd.read_parquet(tmp_path / "results/ea/4x4-s2/reference/exact.parquet")
    assert not np.allclose(s1["f"], s2["f"])  # two instances, two free energies


@pytest.mark.workflow
def test_twobo_samples_an_instance_through_the_workflow(snakemake_exe, tmp_path):
    """The two-body ARN trained on one EA instance (its couplings), sampled at every temperature and
    compared with the instance's exact free energy within its error bars."""
    from test_workflow import run_snakemake

    cfg = {"seed": 5,
           "systems": {"ea": {"sizes": ["4x4-s1"], "T": {"values": [0.8, 1.5, 3.0]}, "field": {"values": [0.0]},
                              "models": ["twobo"]}},
           "models": {"twobo": {"hidden": 8, "n_freq": 2}},
           "training": {"ea": {"steps": 300, "lr": 3e-2, "samples_per_condition": 32, "n_T": 3, "n_field": 1}},
           "sampling": {"n_samples": 2000, "batch_size": 6000}, "metrics": {"n_boot": 50}}  # fmt: skip
    rc, out = run_snakemake(snakemake_exe, tmp_path, "results/ea/4x4-s1/metrics/twobo/direct.parquet", config=cfg)
    assert rc == 0, out
    m = pd.read_parquet(tmp_path / "results/ea/4x4-s1/metrics/twobo/direct.parquet")
    assert len(m) == 3 and (m["ref_method"] == "exact").all() and (m["ness"] > 0.5).all(), m
    z = m["delta_f"] / m["f_nis_err"]
    assert (z.abs() < 4).all() and (m["delta_f"].abs() / m["f_ref"].abs() < 1e-3).all(), m[["T", "delta_f", "ness"]]
