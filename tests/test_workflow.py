"""The Snakemake workflow: dry run of the default config, a real run on a tiny config, and bad
input (config values, mistyped targets) stopped before any job with nothing written."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, snakemake_env

pytestmark = pytest.mark.workflow

TINY = {
    "seed": 7,
    "systems": {
        "ising": {
            "J": 1.0,
            "sizes": ["3x3", "4x4"],
            "T": {"values": [1.0, 2.269185314213022, 5.0]},
            "field": {"values": [-0.5, 0.0, 0.5]},
            "models": [],
        },
        "cuau": {"sizes": ["2x2x4"], "T": {"values": [600.0, 900.0]}, "field": {"values": [-0.06, 0.0]}},
    },
    "reference": {
        "exact": {"max_transfer_L": 14},
        "mcmc": {
            "ising": {
                "n_chains": 32,
                "n_samples": 8,
                "burn_in_sweeps": 100,
                "thin_sweeps": 10,
                "saved_per_condition": 16,
            },
            "cuau": {
                "n_chains": 64,
                "n_samples": 4,
                "burn_in_sweeps": 200,
                "thin_sweeps": 10,
                "saved_per_condition": 8,
            },
        },
        "wang_landau": {"schedule": "1/t", "ln_f_final": 1e-5, "walkers_per_window": 1},
        "metadynamics": {
            "sizes": ["2x2x4"],
            "T": {"values": [400.0, 600.0]},
            "mod_factor_final": 1e-3,
            "production_sweeps": 20000,
        },
    },
}


def run_snakemake(exe: str, workdir: Path, *args: str, config: dict | str | None = None, timeout: int = 300):
    """Snakemake on ``workdir`` under umask 022 (a config dict is written there; a str is the text
    of the config file)."""
    # targets and flags first: --configfile takes every word that follows it
    cmd = [exe, *args, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--cores", "2"]
    if config is None:
        cmd += ["--configfile", str(ROOT / "config/config.yaml")]
    else:
        cfg = workdir / "config.yaml"
        cfg.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
        cmd += ["--configfile", str(cfg)]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=snakemake_env(), capture_output=True, text=True, timeout=timeout, check=False,
        preexec_fn=lambda: os.umask(0o022),
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def test_lint_is_clean(snakemake_exe):
    """`snakemake --lint` (make lint) finds nothing to say about the workflow."""
    proc = subprocess.run([snakemake_exe, "--lint"], cwd=ROOT, env=snakemake_env(), capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_dry_run_default_config(snakemake_exe, tmp_path):
    rc, out = run_snakemake(snakemake_exe, tmp_path, "-n", "all_references")
    assert rc == 0, out
    counts = {
        # Ising 4x4, 8x8; CuAu 2x2x4 (enumeration); EA 10x10-s1..s3 (transfer matrix); RRG n24-d3-s1..s3
        "exact_reference": 9,
        "mcmc_reference": 6,  # Ising 4x4, 8x8; CuAu 2x2x4; EA 10x10-s1..s3
        "couplings_reference": 7,  # EA 10x10-s1..s3, RRG n24-d3-s1..s3 and n64-d3-s1
        "beta_integration_reference": 1,  # RRG n64-d3-s1
        "wang_landau": 2,
        "exact_composition_reference": 1,
        "metadynamics_reference": 3,  # CuAu 2x2x4, 4x4x4, 4x4x8
        "phase_diagram_reference": 3,
    }
    for rule, n in counts.items():
        assert re.search(rf"\b{rule}\s+{n}\b", out), (rule, out)
    assert not (tmp_path / "results").exists()


def test_all_references_tiny_config(snakemake_exe, tmp_path):
    from lattherm.reference.exact import ising_exact_table

    rc, out = run_snakemake(
        snakemake_exe, tmp_path, "all_references", "results/figures/cuau_2x2x4_phase_diagram.png", config=TINY
    )
    assert rc == 0, out
    _check_report(snakemake_exe, tmp_path, TINY, ["exact.html", "mcmc.html", "cuau_2x2x4_phase_diagram.png"])
    assert (tmp_path / "results/figures/cuau_2x2x4_phase_diagram.png").stat().st_size > 10_000
    assert (tmp_path / "results/figures/cuau_2x2x4_phase_diagram.pdf").exists()
    for L in (3, 4):
        path = tmp_path / f"results/ising/{L}x{L}/reference/exact.parquet"
        df = pd.read_parquet(path)
        assert list(df.columns[:4]) == ["system", "size", "T", "field"]
        assert {"f", "u", "c", "m", "method"} <= set(df.columns)
        assert len(df) == 9 and (df["system"] == "ising").all() and (df["size"] == f"{L}x{L}").all()
        ref = ising_exact_table(L, TINY["systems"]["ising"]["T"]["values"], TINY["systems"]["ising"]["field"]["values"])
        for col in ("f", "u", "c", "m"):
            np.testing.assert_allclose(df[col].to_numpy(), ref[col].to_numpy(), rtol=1e-12, atol=1e-14)
        assert (tmp_path / f"results/logs/ising/{L}x{L}/reference/exact.log").exists()
        mcmc = pd.read_parquet(tmp_path / f"results/ising/{L}x{L}/reference/mcmc.parquet")
        assert len(mcmc) == 9 and {"u", "u_err", "c", "c_err", "m", "m_err", "abs_m", "tau_E"} <= set(mcmc.columns)
        assert (mcmc["n_samples"] == 32 * 8).all() and (mcmc["u_err"] >= 0).all() and mcmc["u"].notna().all()
        samples = pd.read_parquet(tmp_path / f"results/ising/{L}x{L}/reference/mcmc_samples.parquet")
        assert len(samples) == 9 * 16
        wl = pd.read_parquet(tmp_path / f"results/ising/{L}x{L}/reference/wang_landau.parquet")
        assert len(wl) == 3 and (wl["field"] == 0).all() and (wl["schedule"] == "1/t").all()
        exact0 = ref[ref["field"] == 0].reset_index(drop=True)
        np.testing.assert_allclose(wl["f"], exact0["f"], rtol=2e-3)  # a coarse WL run (ln f = 1e-5)
        dos = pd.read_parquet(tmp_path / f"results/ising/{L}x{L}/reference/wang_landau_dos.parquet")
        assert np.log(np.exp(dos["ln_g"]).sum()) == pytest.approx(L * L * np.log(2), rel=1e-12)
    meta = pd.read_parquet(tmp_path / "results/cuau/2x2x4/reference/metadynamics.parquet")
    assert len(meta) == 2 * 17 and meta["converged"].all()
    exact_fx = pd.read_parquet(tmp_path / "results/cuau/2x2x4/reference/exact_composition.parquet")
    joined = meta.merge(exact_fx, on=["T", "n_au"], suffixes=("", "_exact"))
    assert len(joined) == 17  # the exact table has T = 600 K in common
    assert (joined["f_x"] - joined["f_x_exact"]).abs().max() < 1e-3  # 1 meV/atom, short run
    regions = pd.read_parquet(tmp_path / "results/cuau/2x2x4/reference/phase_diagram.parquet")
    low = regions[regions["T"] == 400.0].sort_values("x_lo")
    assert low["x_lo"].tolist() == [0.0, 0.25, 0.5, 0.75] and low["x_hi"].tolist() == [0.25, 0.5, 0.75, 1.0]
    transitions = pd.read_parquet(tmp_path / "results/cuau/2x2x4/reference/order_disorder.parquet")
    assert transitions["phase"].tolist() == ["Cu3Au", "CuAu", "CuAu3"]  # a T_od where the grid brackets it
    assert (transitions["T_od"].notna() | (transitions["note"] != "")).all()
    cuau_mcmc = pd.read_parquet(tmp_path / "results/cuau/2x2x4/reference/mcmc.parquet")
    assert len(cuau_mcmc) == 4 and {"x_au", "x_au_err", "u", "u_err"} <= set(cuau_mcmc.columns)
    cuau = pd.read_parquet(tmp_path / "results/cuau/2x2x4/reference/exact.parquet")
    assert len(cuau) == 4 and set(cuau["field"]) == {-0.06, 0.0}
    row = cuau[(cuau["T"] == 600.0) & (cuau["field"] == 0.0)]
    assert row["f"].item() == pytest.approx(-0.0436415345, abs=1e-10)  # published check value
    comp = pd.read_parquet(tmp_path / "results/cuau/2x2x4/reference/exact_composition.parquet")
    assert len(comp) == 2 * 17 and comp["n_au"].max() == 16
    # a size outside the config, asked for on the command line
    rc, out = run_snakemake(snakemake_exe, tmp_path, "results/ising/5x5/reference/exact.parquet", config=TINY)
    assert rc == 0, out
    assert len(pd.read_parquet(tmp_path / "results/ising/5x5/reference/exact.parquet")) == 9


def _norm(text: str) -> str:
    """jsonschema prints paths as ['a']['b']; lattherm as a.b — compare in one form."""
    return re.sub(r"\['([^']+)'\]", r".\1", text).replace("instance.", "")


BAD = [
    ("T.min", {"T": {"min": -1.0, "max": 3.0, "step": 0.5}}, "systems.ising.T.min"),
    ("T reversed", {"T": {"min": 3.0, "max": 1.0, "step": 0.5}}, "systems.ising.T.max"),
    ("T.step 0", {"T": {"min": 1.0, "max": 3.0, "step": 0.0}}, "systems.ising.T.step"),
    ("field empty", {"field": {"values": []}}, "systems.ising.field"),
    ("size 1", {"sizes": ["4x4", "1x1"]}, "systems.ising.sizes"),
    ("size 2.5", {"sizes": [2.5]}, "systems.ising.sizes"),
    ("model", {"models": ["made"]}, "systems.ising.models"),
]


def test_field_integration_where_the_transfer_matrix_stops(snakemake_exe, tmp_path):
    """With max_transfer_L 4, the 6x6 torus gets Kaufman's field-0 rows and, at every field, the
    field-integration table, which agrees with the transfer matrix within its error bars."""
    from lattherm.reference.transfer_matrix import ising_transfer_matrix

    ising = {"sizes": ["6x6"], "T": {"values": [1.5, 2.3, 3.0]}, "field": {"values": [-0.3, 0.0, 0.1, 0.5]}}
    reference = {"exact": {"max_transfer_L": 4}, "field_integration": {"n_samples": 400, "n_chains": 32}}
    cfg = {"seed": 3, "systems": {"ising": ising}, "reference": reference}
    target = "results/ising/6x6/reference/field_integration.parquet"
    rc, out = run_snakemake(snakemake_exe, tmp_path, target, "results/ising/6x6/reference/exact.parquet", config=cfg)
    assert rc == 0, out
    exact = pd.read_parquet(tmp_path / "results/ising/6x6/reference/exact.parquet")
    assert set(exact["field"]) == {0.0} and (exact["method"] == "kaufman").all()
    fi = pd.read_parquet(tmp_path / target)
    assert len(fi) == 12 and fi["converged"].all(), fi[["T", "field", "diagnosis"]]
    f_tm = np.asarray(ising_transfer_matrix(6, fi["T"].to_numpy(), fi["field"].to_numpy())["f"])
    z = (fi["f"] - f_tm) / fi["f_err"].where(fi["f_err"] > 0, np.inf)
    assert (z.abs() < 4).all() and (np.abs(fi["f"] - f_tm) / np.abs(f_tm)).max() < 5e-4, fi[["T", "field", "f"]]
    # past the transfer matrix, the samplers' metrics compare with this table
    rc, out = run_snakemake(snakemake_exe, tmp_path, "results/ising/8x8/reference/field_integration.parquet", "-n",
                            config=cfg)  # fmt: skip
    assert rc == 0, out
    rc, out = run_snakemake(snakemake_exe, tmp_path, "results/ising/4x4/reference/field_integration.parquet",
                            config=cfg)  # fmt: skip
    assert rc != 0 and "no field_integration reference for ising 4x4" in out, out


@pytest.mark.parametrize(("change", "key"), [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_stops_before_any_job(snakemake_exe, tmp_path, change, key):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["systems"]["ising"].update(change)
    rc, out = run_snakemake(snakemake_exe, tmp_path, "all_references", config=cfg)
    assert rc != 0
    assert key in _norm(out), out
    assert not (tmp_path / "results").exists()


#: config/config.yaml with one change: (id, key path, value, what the message says)
BAD_DEFAULT = [
    ("lr inf", ("training", "ising", "lr"), float("inf"), "config key 'training.ising.lr': expected a finite number"),
    ("grad_clip -1", ("training", "ising", "grad_clip"), -1, "config key 'training.ising.grad_clip'"),
    ("typo under training", ("training", "ising", "gpu"), 1, "config key 'training.ising.gpu' is unknown"),
    ("n_boot 0", ("metrics", "n_boot"), 0, "config key 'metrics.n_boot'"),
    ("seed abc", ("seed",), "abc", "config key 'seed': expected an integer"),
    ("width", ("models", "ao-arm-mlp", "width"), -256, "config key 'models.ao-arm-mlp.width'"),
    ("device tpu", ("training", "ising", "device"), "tpu", "config key 'training.ising.device'"),
    ("T step tiny", ("systems", "ising", "T", "step"), 1e-12, "config key 'systems.ising.T.step'"),
    ("cuau 40x40x40", ("systems", "cuau", "sizes"), ["40x40x40"], "config key 'systems.cuau.sizes[0]'"),
    ("gpus and batch", ("training", "gpus"), 3, "samples_per_condition': expected for"),
]


def _check_stopped(rc: int, out: str, message: str, workdir: Path) -> None:
    """Snakemake stopped with one line naming the key, before any job and without a traceback."""
    assert rc != 0 and message in out, out
    assert "Traceback" not in out and 'File "' not in out, out
    assert [line for line in out.splitlines() if line.startswith("lattherm: ")] == [out.strip().splitlines()[-1]]
    assert not (workdir / "results").exists()


@pytest.mark.parametrize(("path", "value", "message"), [b[1:] for b in BAD_DEFAULT], ids=[b[0] for b in BAD_DEFAULT])
def test_bad_config_file_one_line_no_traceback(snakemake_exe, tmp_path, path, value, message):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    d = cfg
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    rc, out = run_snakemake(snakemake_exe, tmp_path, "-n", config=cfg)
    _check_stopped(rc, out, message, tmp_path)


def test_job_over_its_memory_is_refused_with_the_estimate(snakemake_exe, tmp_path):
    """The CuAu MAM Transformer's 1e5 samples per condition need about 5.5 GB: refused under 2 GB."""
    rc, out = run_snakemake(snakemake_exe, tmp_path, "-n", "--resources", "mem_mb=2000")
    message = "the job sample cuau 2x2x4 mam-transformer needs about 5452 MB of memory, more than the 2000 MB"
    _check_stopped(rc, out, message, tmp_path)
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["sampling"]["n_samples"] = 10**8  # every model: about 2 TB
    rc, out = run_snakemake(snakemake_exe, tmp_path, "-n", config=cfg)
    _check_stopped(rc, out, "needs about", tmp_path)


def test_duplicate_key_in_config_file_is_refused(snakemake_exe, tmp_path):
    text = (ROOT / "config/config.yaml").read_text() + "seed: 5\n"
    line = text.count("\n")
    rc, out = run_snakemake(snakemake_exe, tmp_path, "-n", config=text)
    _check_stopped(rc, out, f"line {line}: key 'seed' is given twice", tmp_path)


def test_unknown_system_stops_before_any_job(snakemake_exe, tmp_path):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["systems"]["isng"] = cfg["systems"].pop("ising")
    rc, out = run_snakemake(snakemake_exe, tmp_path, "all_references", config=cfg)
    assert rc != 0 and "systems.isng" in out and "ising" in out, out
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("results/ising/4x5/reference/exact.parquet", "lattherm: an Ising size is a square torus 'LxL'"),
        ("results/ising/1x1/reference/exact.parquet", "lattherm: an Ising size is a square torus 'LxL'"),
        ("results/cuau/4x4x4/reference/exact.parquet", "lattherm: no exact reference for cuau 4x4x4"),
        ("results/ising/4x4/reference/metadynamics.parquet", "lattherm: no metadynamics reference for ising 4x4"),
        ("results/isng/4x4/reference/exact.parquet", "MissingRuleException"),
        ("results/ising/4x4/reference/exakt.parquet", "MissingRuleException"),
    ],
)
def test_mistyped_target_stops_before_any_job(snakemake_exe, tmp_path, target, message):
    rc, out = run_snakemake(snakemake_exe, tmp_path, target, config=TINY)
    assert rc != 0 and message in out, out
    assert not (tmp_path / "results").exists()


SAMPLER = {
    "seed": 3,
    "systems": {
        "ising": {
            "sizes": ["3x3"],
            "T": {"values": [1.5, 2.5, 4.0]},
            "field": {"values": [-0.5, 0.0, 0.5]},
            "models": ["fo-arm-mlp", "mam-transformer"],
        },
        "cuau": {
            "sizes": ["2x2x4"],
            "T": {"values": [600.0, 1000.0]},
            "field": {"values": [0.0]},
            "models": ["ao-arm-mlp"],
        },
    },
    "models": {
        "fo-arm-mlp": {"channels": 2, "n_hidden": 1, "cond_width": 16, "n_freq": 2},
        "ao-arm-mlp": {"width": 32, "n_layers": 2, "n_freq": 2},
        "mam-transformer": {"dim": 16, "n_blocks": 1, "n_heads": 2, "n_freq": 2},
    },
    "training": {
        "ising": {"steps": 30, "lr": 3e-3, "samples_per_condition": 8, "n_T": 2, "n_field": 2, "checkpoint_every": 10,
                  "per_size": {"3x3": {"per_model": {"mam-transformer": {"steps": 20}}}}},
        "cuau": {"steps": 20, "samples_per_condition": 8, "n_T": 2, "n_field": 1, "ao_grad_steps": 2},
    },
    # the CuAu sampler is drawn 96 times per condition (sampling.<system>.per_model), the others 64
    "sampling": {"n_samples": 64, "batch_size": 256, "cuau": {"per_model": {"ao-arm-mlp": {"n_samples": 96}}}},
    "metrics": {"n_boot": 20},
}


def test_sampler_stage_tiny_config(snakemake_exe, tmp_path):
    """train -> sample -> metrics for three models; tables follow DESIGN §6 and the references."""
    import torch

    figures = [f"results/figures/{s}_{figure}.png" for s in ("ising_3x3", "cuau_2x2x4")
               for figure in ("free_energy", "heat_capacity", "training")]  # fmt: skip
    rc, out = run_snakemake(snakemake_exe, tmp_path, "all_metrics", *figures, config=SAMPLER)
    assert rc == 0, out
    for f in figures:
        assert (tmp_path / f).stat().st_size > 10_000 and (tmp_path / f).with_suffix(".pdf").exists(), f
    for system, size, model, n_cond, steps, n in [
        ("ising", "3x3", "fo-arm-mlp", 9, 30, 64),
        ("ising", "3x3", "mam-transformer", 9, 20, 64),  # training.ising.per_size
        ("cuau", "2x2x4", "ao-arm-mlp", 2, 20, 96),  # sampling.cuau.per_model
    ]:
        base = tmp_path / "results" / system / size
        ckpt = torch.load(base / f"models/{model}/checkpoint.pt", weights_only=True)
        assert ckpt["step"] == steps
        log = pd.read_parquet(base / f"models/{model}/train_log.parquet")
        assert log["step"].max() <= ckpt["step"] and np.isfinite(log["loss"]).all()
        samples = pd.read_parquet(base / f"samples/{model}/direct.parquet")
        assert len(samples) == n * n_cond
        assert {"T", "field", "configuration", "log_q", "energy", "spin_sum"} <= set(samples.columns)
        assert (samples["log_q"] <= 0).all()
        m = pd.read_parquet(base / f"metrics/{model}/direct.parquet")
        required = [
            "system",
            "size",
            "T",
            "field",
            "model",
            "source",
            "n_samples",
            "f_var",
            "f_nis",
            "f_nis_err",
            "ness",
            "f_ref",
            "ref_method",
            "delta_f",
        ]
        assert set(required) <= set(m.columns) and len(m) == n_cond
        assert (m["ref_method"] == "exact").all() and (m["n_samples"] == n).all()
        np.testing.assert_allclose(m["delta_f"], m["f_nis"] - m["f_ref"], rtol=0, atol=1e-14)
        # a barely trained sampler: the variational bound lies above the exact free energy
        assert (m["f_var"] > m["f_ref"]).all() and ((m["ness"] > 0) & (m["ness"] <= 1)).all()
    assert (pd.read_parquet(tmp_path / "results/ising/3x3/samples/fo-arm-mlp/direct.parquet")["symmetrised"]).all()
    # CuAu: f_x per composition from the semi-grand samples against exact enumeration, and its phase diagram
    comp = pd.read_parquet(tmp_path / "results/cuau/2x2x4/metrics/ao-arm-mlp/direct_composition.parquet")
    assert len(comp) == 2 * 17 and {"f_x", "f_x_err", "f_x_ref", "converged", "model"} <= set(comp.columns)
    assert comp["f_x_ref"].notna().all() and (comp["model"] == "ao-arm-mlp").all()
    regions = pd.read_parquet(tmp_path / "results/cuau/2x2x4/metrics/ao-arm-mlp/direct_phase_diagram.parquet")
    assert {"T", "x_lo", "x_hi", "phase_lo", "phase_hi"} <= set(regions.columns)
    # every output readable by the group and others under umask 022, with its provenance and units
    for path in (tmp_path / "results").rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    from lattherm.config import config_hash, load_config
    from lattherm.io import read_metadata

    meta = read_metadata(tmp_path / "results/cuau/2x2x4/metrics/ao-arm-mlp/direct.parquet")
    assert meta["config_hash"] == config_hash(load_config(SAMPLER)) and meta["job"] == "metrics"
    assert meta["units"]["T"] == "K" and isinstance(meta["seed"], int) and meta["lattherm_version"]
    # a finished training reruns cleanly (the user's --forcerun train): same model, log rewritten
    target = "results/ising/3x3/models/fo-arm-mlp/checkpoint.pt"
    before = torch.load(tmp_path / target, weights_only=True)["model_state"]
    rc, out = run_snakemake(snakemake_exe, tmp_path, target, "--forcerun", "train", config=SAMPLER)
    assert rc == 0, out
    after = torch.load(tmp_path / target, weights_only=True)["model_state"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "results/ising/3x3/models/fo-arm-mlp/train_log.parquet").exists()
    summary = pd.read_parquet(tmp_path / "results/tables/sampler_accuracy.parquet")
    assert len(summary) == 3  # every configured sampler of SAMPLER, one row each
    row = summary.set_index(["system", "size", "model"]).loc[("ising", "3x3", "fo-arm-mlp")]
    m = pd.read_parquet(tmp_path / "results/ising/3x3/metrics/fo-arm-mlp/direct.parquet")
    assert row["max_abs_delta_f"] == m["delta_f"].abs().max() and row["ness_min"] == m["ness"].min()
    _check_report(snakemake_exe, tmp_path, SAMPLER, ["metrics/fo-arm-mlp/direct.html", "ising_3x3_free_energy.png"])


def _check_report(snakemake_exe, workdir: Path, config: dict, expected: list[str]) -> None:
    """`snakemake --report report.zip` over what has been computed: the figures and table views."""
    import zipfile

    rc, out = run_snakemake(snakemake_exe, workdir, "--report", str(workdir / "report.zip"), config=config)
    assert rc == 0, out
    names = zipfile.ZipFile(workdir / "report.zip").namelist()
    assert any(n.endswith("report.html") for n in names), names
    for path in expected:
        leaf = path.rsplit("/", 1)[-1]
        assert any(n.endswith(leaf) for n in names), (path, names)


CUAU_SCALING = {
    "seed": 5,
    "systems": {"cuau": {"sizes": ["2x2x4"], "T": {"values": [700.0, 1000.0]},
                         "field": {"values": [-0.06, -0.03, 0.0, 0.03, 0.06]}, "models": ["ao-transformer"]}},
    "models": {"ao-transformer": {"dim": 16, "n_blocks": 1, "n_heads": 2, "radius": 1, "n_freq": 2}},
    "training": {"cuau": {"steps": 60, "lr": 1e-2, "samples_per_condition": 16, "n_T": 2, "n_field": 2}},
    "sampling": {"n_samples": 64, "cuau": {"per_size": {"2x2x8": {"n_samples": 600}}}},
    "reference": {"metadynamics": {"sizes": ["2x2x8"], "T": {"values": [700.0, 1000.0]}, "mod_factor_final": 1e-3,
                                   "production_sweeps": 40000, "production_blocks": 16, "min_batches": 16}},
    "scaling": {"cuau": {"from": "2x2x4", "transfer": ["2x2x8"],
                         "refine": {"n_chains": 64, "burn_in_sweeps": 100, "n_samples": 20, "thin_sweeps": 5}}},
}  # fmt: skip


def test_cuau_transferred_and_refined_meets_metadynamics(snakemake_exe, tmp_path):
    """A barely trained ao-transformer of the 16-site cell sampled on the 32-site one, refined by
    semi-grand chains: f_x per composition (Bennett's ln Z_μ + the chains' histograms) within a few
    combined error bars of metadynamics there, with its phase diagram and order-disorder table."""
    base = "results/cuau/2x2x8/metrics/ao-transformer/transfer-2x2x4"
    figure = "results/figures/cuau_2x2x8_ao-transformer_transfer-2x2x4_refined_phase_diagram.png"
    rc, out = run_snakemake(snakemake_exe, tmp_path, f"{base}_refined_composition.parquet", figure,
                            config=CUAU_SCALING, timeout=600)  # fmt: skip
    assert rc == 0, out
    assert (tmp_path / figure).stat().st_size > 10_000
    comp = pd.read_parquet(tmp_path / f"{base}_refined_composition.parquet")
    assert len(comp) == 2 * 33 and (comp["estimator"] == "refined").all() and (comp["source"] == "transfer-2x2x4").all()
    ok = comp[comp["converged"]]
    assert len(ok) >= 20 and ok["f_x_ref"].notna().all(), comp
    z = ok["delta_f_x"] / np.hypot(ok["f_x_err"], ok["f_x_ref_err"])
    assert z.abs().max() < 4.5, ok.assign(z=z)[["T", "n_au", "delta_f_x", "f_x_err", "f_x_ref_err"]]
    assert 0.2 < np.mean(z**2) < 2.5, z.describe()  # neither too small nor much too large
    assert ok["f_x_err"].median() < 5e-4, ok["f_x_err"].describe()  # eV/atom, from 600 draws and 64 short chains
    regions = pd.read_parquet(tmp_path / f"{base}_refined_phase_diagram.parquet")
    assert {"T", "x_lo", "x_hi", "phase_lo", "phase_hi"} <= set(regions.columns)
    transitions = pd.read_parquet(tmp_path / f"{base}_refined_order_disorder.parquet")
    assert transitions["phase"].tolist() == ["Cu3Au", "CuAu", "CuAu3"] * 2
    assert transitions["method"].tolist() == ["heat_capacity"] * 3 + ["order_parameter"] * 3
    by_c = transitions[transitions["method"] == "heat_capacity"]
    assert by_c["T_od"].isna().all() and (by_c["note"] != "").all()  # two temperatures bracket no c_x peak
    by_order = transitions[transitions["method"] == "order_parameter"]  # a crossing between them, or the reason
    assert (by_order["T_od"].between(700.0, 1000.0) | (by_order["T_od"].isna() & (by_order["note"] != ""))).all()
    assert {"eta", "ordered_frac", "phase"} <= set(comp.columns)
