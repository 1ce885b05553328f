"""The system registry: every system describes itself, and a system added as one module (the 1D
Ising chain of lattherm/systems/chain.py, with its exact reference) runs through the whole
workflow — references, training, sampling, metrics — with no other change to the code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from lattherm.reference import exact_table
from lattherm.reference.exact import chain_exact_table, exact_thermodynamics
from lattherm.refine import LADDER_MIN_P
from lattherm.systems import REGISTRY, SYSTEMS, make_system, system_info


def test_registry_finds_every_system_module():
    assert set(SYSTEMS) == {"ising", "cuau", "chain", "ea", "rrg"}
    for name, info in REGISTRY.items():
        assert info.name == name and info.references and info.units["T"] and info.labels["T"]
    assert REGISTRY["ising"].flip_symmetric and not REGISTRY["cuau"].flip_symmetric
    assert (REGISTRY["ising"].gibbs_block, REGISTRY["cuau"].gibbs_block) == (10, 4)
    assert REGISTRY["cuau"].observables(0.2, 0.01) == {"x_au": 0.6, "x_au_err": 0.005}
    assert REGISTRY["cuau"].has_exact("2x2x4") and not REGISTRY["cuau"].has_exact("4x4x4")


@pytest.mark.parametrize(
    ("system", "size", "message"),
    [("ising", "4x5", "square torus"), ("ising", "1x1", "square torus"), ("ising", "2x2x4", "2 integers"),
     ("cuau", "2x2", "3 integers"), ("cuau", "40x40x40", "at most 4096"), ("chain", "4x4", "1 integers"),
     ("chain", "1", "at least 2"), ("tpu", "4x4", "unknown system")],  # fmt: skip
)
def test_bad_sizes_are_refused_by_the_system(system, size, message):
    with pytest.raises(ValueError, match=message):
        make_system(system, size)


def test_system_params_are_recorded():
    assert make_system("ising", "4x4", J=0.5).params() == {"J": 0.5}
    assert make_system("chain", "6", J=-1.0).params() == {"J": -1.0}
    assert set(make_system("cuau", "2x2x4").params()["eci"]) >= {"c0", "c1_0"}


@pytest.mark.parametrize(("L", "J"), [(2, 1.0), (3, -0.7), (8, 1.3), (12, 1.0)])
def test_chain_transfer_matrix_matches_enumeration(L, J):
    """The chain's exact reference against the sum over all 2^L states, at both signs of J."""
    T, h = np.array([0.4, 1.0, 2.5]), np.array([-0.6, 0.0, 0.25])
    table = chain_exact_table(L, T, h, J=J)
    TT, HH = np.meshgrid(T, h, indexing="ij")
    ref = exact_thermodynamics(make_system("chain", str(L), J=J), TT.ravel(), HH.ravel())
    for k in ("f", "u", "c", "m"):
        np.testing.assert_allclose(table[k], np.asarray(ref[k]).ravel(), rtol=1e-12, atol=1e-13, err_msg=k)
    pd.testing.assert_frame_equal(exact_table("chain", str(L), T, h, params={"J": J}), table)


def test_chain_thermodynamic_limit():
    """Long rings approach the infinite chain: f = −T ln(e^K cosh b + sqrt(e^{2K} sinh² b + e^{−2K}))."""
    T, h = np.array([1.0, 2.0]), np.array([0.0, 0.5])
    t = chain_exact_table(400, T, h, J=1.0)
    K, b = 1.0 / t["T"].to_numpy(), t["field"].to_numpy() / t["T"].to_numpy()
    lam = np.exp(K) * np.cosh(b) + np.sqrt(np.exp(2 * K) * np.sinh(b) ** 2 + np.exp(-2 * K))
    np.testing.assert_allclose(t["f"], -t["T"] * np.log(lam), rtol=1e-12)
    np.testing.assert_allclose(t.loc[t["field"] == 0, "m"], 0.0, atol=1e-15)


CHAIN = {
    "seed": 5,
    "systems": {"chain": {"J": 1.0, "sizes": ["6"], "T": {"values": [0.8, 2.0]}, "field": {"values": [-0.5, 0.0, 0.5]},
                          "models": ["fo-arm-mlp"]}},
    "models": {"fo-arm-mlp": {"channels": 2, "n_hidden": 1, "cond_width": 16, "n_freq": 2}},
    "training": {"chain": {"steps": 200, "lr": 1e-2, "samples_per_condition": 32, "n_T": 2, "n_field": 2}},
    "sampling": {"n_samples": 2000},
    "reference": {"mcmc": {"chain": {"n_chains": 64, "n_samples": 20, "burn_in_sweeps": 200, "thin_sweeps": 10,
                                     "saved_per_condition": 8}}},
}  # fmt: skip


@pytest.mark.workflow
def test_chain_runs_through_the_workflow(snakemake_exe, tmp_path):
    """A config of the chain alone: its exact and MCMC references, a trained sampler's metrics, the
    figures and the tables' views."""
    from test_workflow import run_snakemake

    info = system_info("chain")
    assert set(info.references) == {"exact", "mcmc"}
    rc, out = run_snakemake(snakemake_exe, tmp_path, "all", config=CHAIN)
    assert rc == 0, out
    base = tmp_path / "results/chain/6"
    exact = pd.read_parquet(base / "reference/exact.parquet")
    pd.testing.assert_frame_equal(exact, chain_exact_table(6, [0.8, 2.0], [-0.5, 0.0, 0.5]))
    mcmc = pd.read_parquet(base / "reference/mcmc.parquet").merge(exact, on=["T", "field"], suffixes=("", "_ref"))
    ok = mcmc["converged"] if "converged" in mcmc else np.ones(len(mcmc), bool)
    z = ((mcmc["u"] - mcmc["u_ref"]) / mcmc["u_err"])[ok]
    assert len(z) >= 4 and (z.abs() < 4).all(), mcmc
    metrics = pd.read_parquet(base / "metrics/fo-arm-mlp/direct.parquet")
    assert len(metrics) == 6 and (metrics["ref_method"] == "exact").all()
    # the trained sampler reproduces the exact free energy within its error bars (6 sites: easy)
    assert (metrics["delta_f"].abs() < 5 * metrics["f_nis_err"] + 1e-4).all(), metrics[["T", "field", "delta_f"]]
    assert not (tmp_path / "results/ising").exists() and not (tmp_path / "results/cuau").exists()
    for figure in ("free_energy", "heat_capacity", "training"):
        assert (tmp_path / f"results/figures/chain_6_{figure}.png").stat().st_size > 10_000
    assert (tmp_path / "results/chain/6/reference/exact.html").exists()
    assert (ROOT / "src/lattherm/systems/chain.py").exists()


@pytest.mark.workflow
def test_chain_outpainted_and_transferred_through_the_workflow(snakemake_exe, tmp_path):
    """scaling: any-order models trained on the 6-site ring out-paint 12 and 18 sites, and the
    size-free ao-transformer's weights are sampled directly on 12 sites; the metric tables compare
    with the exact transfer matrix there, within their error bars, and the summary lists them."""
    from test_workflow import run_snakemake

    models = ["ao-arm-mlp", "ao-transformer"]
    cfg = {**CHAIN, "systems": {"chain": {**CHAIN["systems"]["chain"], "models": models}},
           "models": {"ao-arm-mlp": {"width": 32, "n_layers": 2, "n_freq": 2},
                      "ao-transformer": {"dim": 16, "n_blocks": 1, "n_heads": 2, "radius": 2, "n_freq": 2}},
           "training": {"chain": {"steps": 150, "lr": 1e-2, "samples_per_condition": 32, "n_T": 2, "n_field": 2}},
           "scaling": {"chain": {"from": "6", "to": ["12", "18"], "transfer": ["12"], "stride": 3, "n_samples": 1500,
                                 "field": {"values": [0.0, 0.5]},
                                 "refine": {"n_chains": 64, "burn_in_sweeps": 100, "n_samples": 50,
                                            "thin_sweeps": 5, "ladder_chains": 128}}}}  # fmt: skip
    estimate_figures = [f"results/figures/chain_{L}_{m}_outpaint-6_estimates.png" for L in (12, 18) for m in models]
    rc, out = run_snakemake(snakemake_exe, tmp_path, "all_scaling", "results/tables/sampler_accuracy.parquet",
                            "results/figures/chain_12_free_energy.png", "results/figures/equal_cost.png",
                            "results/figures/chain_12_ao-transformer_transfer-6_estimates.png", *estimate_figures,
                            config=cfg)  # fmt: skip
    assert rc == 0, out
    tables = [(L, m, "outpaint-6") for L in (12, 18) for m in models] + [(12, "ao-transformer", "transfer-6")]
    for L, model, source in tables:
        m = pd.read_parquet(tmp_path / f"results/chain/{L}/metrics/{model}/{source}.parquet")
        assert len(m) == 4 and (m["source"] == source).all() and (m["ref_method"] == "exact").all()
        np.testing.assert_allclose(m["f_ref"], chain_exact_table(L, m["T"].unique(), [0.0, 0.5])["f"], rtol=1e-12)
        z = m["delta_f"] / m["f_nis_err"]
        assert (z.abs() < 4).all() and (m["ness"] > 0).all(), (L, model, source, m[["T", "field", "delta_f", "ness"]])
    assert not (tmp_path / "results/chain/18/metrics/ao-transformer/transfer-6.parquet").exists()
    # every table refined (lattherm.refine): chains started from its samples meet the exact u, c
    rejected = 0
    for L, model, source in tables:
        r = pd.read_parquet(tmp_path / f"results/chain/{L}/metrics/{model}/{source}_refined.parquet")
        assert len(r) == 4 and (r["n_chains"] == 64).all() and (r["source"] == source).all()
        exact = chain_exact_table(L, r["T"].unique(), [0.0, 0.5])
        np.testing.assert_allclose(r["u_ref"], exact["u"], rtol=1e-12)
        for q in ("u", "c"):
            z = ((r[q] - r[f"{q}_ref"]) / r[f"{q}_err"]).dropna()
            assert len(z) >= 3 and (z.abs() < 4).all(), (L, model, source, q, r)
        # Bennett's free energy from the file's draws and the chains' states, within its error bars
        assert (r["estimator"] == "bar").all() and r["est_converged"].sum() >= 3, r
        z = (r["delta_f"] / r["f_est_err"])[r["est_converged"]]
        assert (z.abs() < 4).all(), (L, model, source, r[["T", "field", "delta_f", "f_est_err", "bar_overlap"]])
        corr = pd.read_parquet(tmp_path / f"results/chain/{L}/metrics/{model}/{source}_correlation.parquet")
        assert corr.empty  # G(r) is the square-lattice Ising's
        for kind in ("composition", "phase_diagram", "order_disorder"):  # the field is no chemical potential
            path = tmp_path / f"results/chain/{L}/metrics/{model}/{source}_refined_{kind}.parquet"
            assert pd.read_parquet(path).empty
        # the ladder: Bennett's estimates of a field tied through the chains of its two temperatures;
        # every anchor here is claimed on its own, so a row goes unclaimed only where its field's fit
        # fails the chi-square test (p < LADDER_MIN_P: one in a thousand honest fits)
        lad = pd.read_parquet(tmp_path / f"results/chain/{L}/metrics/{model}/{source}_ladder.parquet")
        assert len(lad) == 4 and (lad["estimator"] == "ladder").all(), lad
        p = lad["ladder_p"].fillna(1.0)  # NaN: no degree of freedom (a lone link-less anchor), nothing tested
        assert (lad["est_converged"] == (p >= LADDER_MIN_P)).all(), lad
        rejected += int((p.groupby(lad["field"]).first() < LADDER_MIN_P).sum())
        z = (lad["delta_f"] / lad["f_est_err"])[lad["est_converged"]]
        assert (z.abs() < 4).all(), (L, model, source, lad[["T", "field", "delta_f", "f_est_err", "ladder_p"]])
        # both estimators side by side, the best claimed one per condition within its error bar
        est = pd.read_parquet(tmp_path / f"results/chain/{L}/metrics/{model}/{source}_estimates.parquet")
        assert len(est) == 12 and set(est["estimator"]) == {"nis", "bar", "ladder"} and est["best"].sum() >= 3
        assert (est.loc[est["best"], "z"].abs() < 4).all(), est
    assert rejected <= 1  # of 10 fits (two: about 5e-5 when all are honest)
    for L, model, source in tables:
        figure = tmp_path / f"results/figures/chain_{L}_{model}_{source}_estimates.png"
        assert figure.stat().st_size > 10_000
    summary = pd.read_parquet(tmp_path / "results/tables/sampler_accuracy.parquet")
    assert {"direct", "outpaint-6", "transfer-6"} <= set(summary["source"])
    # every sampler's cost: its model's training (at 6 sites) and the job that drew its samples
    assert (summary["train_steps"] == 150).all() and (summary["train_s"] > 0).all(), summary
    assert (summary["sample_s"] > 0).all() and (summary["samples_per_s"] > 0).all()
    assert (tmp_path / "results/figures/equal_cost.png").stat().st_size > 5000


@pytest.mark.workflow
def test_chain_fine_tuned_and_transferred_through_the_workflow(snakemake_exe, tmp_path):
    """scaling.<system>.finetune: the ao-transformer trained on the 6-site ring is trained further on
    12 sites at the points of the grid (rule train, starting from the 6-site weights, which its
    checkpoint names by digest), and its 12-site weights are sampled on 18 sites (per_size.18.from:
    source transfer-12), against the exact transfer matrix within the error bars; the summary
    charges that table with both trainings."""
    import torch
    from test_workflow import run_snakemake

    from lattherm.training.checkpoint import weights_digest

    cfg = {**CHAIN, "systems": {"chain": {**CHAIN["systems"]["chain"], "models": ["ao-transformer"]}},
           "models": {"ao-transformer": {"dim": 16, "n_blocks": 1, "n_heads": 2, "radius": 2, "n_freq": 2}},
           "training": {"chain": {"steps": 150, "lr": 1e-2, "samples_per_condition": 32, "n_T": 2, "n_field": 2,
                                  "per_size": {"12": {"steps": 40, "lr": 3e-3, "beta_anneal_frac": 0.0,
                                                      "grid": "points"}}}},
           "scaling": {"chain": {"from": "6", "transfer": ["18"], "finetune": {"12": {"from": "6"}},
                                 "per_size": {"18": {"from": "12"}}, "field": {"values": [0.0, 0.5]}}},
           "sampling": {"n_samples": 2000, "chain": {"per_size": {"18": {"n_samples": 1500}}}}}  # fmt: skip
    rc, out = run_snakemake(snakemake_exe, tmp_path, "all_scaling", "results/tables/sampler_accuracy.parquet",
                            config=cfg)  # fmt: skip
    assert rc == 0, out
    base = tmp_path / "results/chain"
    first = torch.load(base / "6/models/ao-transformer/checkpoint.pt", weights_only=True)
    tuned = torch.load(base / "12/models/ao-transformer/checkpoint.pt", weights_only=True)
    assert tuned["step"] == 40 and tuned["init_from"]["step"] == first["step"] == 150
    assert tuned["init_from"]["digest"] == weights_digest(first["model_state"]) != weights_digest(tuned["model_state"])
    assert tuned["init_from"]["system"]["size"] == "6", tuned["init_from"]
    m = pd.read_parquet(base / "18/metrics/ao-transformer/transfer-12.parquet")
    assert len(m) == 4 and (m["source"] == "transfer-12").all() and (m["ref_method"] == "exact").all()
    np.testing.assert_allclose(m["f_ref"], chain_exact_table(18, m["T"].unique(), [0.0, 0.5])["f"], rtol=1e-12)
    z = m["delta_f"] / m["f_nis_err"]
    assert (z.abs() < 4).all() and (m["ness"] > 0).all(), m[["T", "field", "delta_f", "f_nis_err", "ness"]]
    assert not (base / "18/metrics/ao-transformer/transfer-6.parquet").exists()
    summary = pd.read_parquet(tmp_path / "results/tables/sampler_accuracy.parquet").set_index("source")
    assert summary.loc["transfer-12", "train_steps"] == 150 + 40 and summary.loc["direct", "train_steps"] == 150
    walls = [pd.read_parquet(base / f"{n}/models/ao-transformer/train_log.parquet")["wall_s"].max() for n in (6, 12)]
    assert summary.loc["transfer-12", "train_s"] == pytest.approx(sum(walls), rel=1e-12)
