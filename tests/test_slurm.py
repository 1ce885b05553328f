"""The workflow on a real Slurm cluster: a tiny DAG (two reference tables and one training run)
through the Snakemake Slurm executor plugin with profiles/slurm-test; its tables equal a local
run's, its jobs are in sacct, the train job got a (fake) GPU, and plain `sbatch --gpus` works.

Needs a running cluster: `ci/slurm/up.sh` (single node on localhost, what .ci/run starts before
`make test`; `ci/slurm/down.sh` stops it). Skipped when there is no `sinfo` or no cluster answers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, snakemake_env

pytestmark = pytest.mark.slurm

#: state directory of ci/slurm/up.sh
SLURM_DIR = Path(os.environ.get("LATTHERM_SLURM_DIR", "/tmp/lattherm-slurm"))
PROFILE = ROOT / "profiles/slurm-test"
ACCOUNT = "lattherm"

#: Ising 3x3 only (as tests/test_workflow.py's TINY and SAMPLER): three jobs of a few seconds each;
#: training asks for one GPU (the CI node's GPUs are fake: torch trains on the CPU)
TINY = {
    "seed": 7,
    "systems": {
        "ising": {
            "J": 1.0,
            "sizes": ["3x3"],
            "T": {"values": [1.0, 2.269185314213022, 5.0]},
            "field": {"values": [-0.5, 0.0, 0.5]},
            "models": ["fo-arm-mlp"],
        },
    },
    "models": {"fo-arm-mlp": {"channels": 2, "n_hidden": 1, "cond_width": 16, "n_freq": 2}},
    "training": {
        "gpus": 1,
        "ising": {"steps": 10, "lr": 3e-3, "samples_per_condition": 8, "n_T": 2, "n_field": 2, "checkpoint_every": 5},
    },
    "reference": {
        "exact": {"max_transfer_L": 14},
        "mcmc": {
            "ising": {
                "n_chains": 32, "n_samples": 8, "burn_in_sweeps": 100, "thin_sweeps": 10, "saved_per_condition": 16
            },
        },
        "wang_landau": {"schedule": "1/t", "ln_f_final": 1e-5, "walkers_per_window": 1},
    },
}
TARGETS = ["results/ising/3x3/reference/exact.parquet", "results/ising/3x3/reference/mcmc.parquet"]
TRAIN_TARGET = "results/ising/3x3/models/fo-arm-mlp/checkpoint.pt"
#: Snakemake may ignore SIGTERM while it polls Slurm: runs are ended with SIGKILL
SNAKEMAKE_TIMEOUT = 600


def slurm_env() -> dict:
    """The test environment plus SLURM_CONF of the CI cluster (unless SLURM_CONF is set)."""
    env = snakemake_env()
    conf = SLURM_DIR / "etc/slurm.conf"
    if "SLURM_CONF" not in env and conf.exists():
        env["SLURM_CONF"] = str(conf)
    return env


def slurm(*args: str, timeout: int = 30) -> str:
    proc = subprocess.run(args, env=slurm_env(), capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def cluster_problem() -> str | None:
    """Why no Slurm cluster can be used, or None."""
    if shutil.which("sinfo") is None:
        return "no Slurm client (sinfo) on PATH; ci/slurm/up.sh installs and starts a local cluster"
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], env=slurm_env(), capture_output=True, text=True, timeout=15, check=False
        )
    except subprocess.TimeoutExpired:
        return "sinfo timed out: no Slurm controller answers (start one with ci/slurm/up.sh)"
    if proc.returncode != 0:
        return f"no Slurm cluster is up (start one with ci/slurm/up.sh): {proc.stderr.strip()}"
    if not set(proc.stdout.split()) & {"idle", "mix", "alloc"}:
        return f"Slurm has no usable node (states: {proc.stdout.split()}); see ci/slurm/up.sh"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = cluster_problem()
    if problem:
        pytest.skip(problem)


def run_snakemake(exe: str, workdir: Path, targets: list[str], *args: str) -> tuple[int, str]:
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    # targets and flags first: --configfile takes every word that follows it
    cmd = ["timeout", "-s", "KILL", str(SNAKEMAKE_TIMEOUT), exe, *args, *targets]
    cmd += ["-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--configfile", str(cfg)]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=slurm_env(), capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT + 60, check=False
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def slurm_run(cluster, snakemake_exe, tmp_path_factory):
    """The tiny DAG through the Slurm executor: (workdir, Snakemake's output, the run's uuid)."""
    workdir = tmp_path_factory.mktemp("slurm_run")
    start = time.monotonic()
    rc, out = run_snakemake(snakemake_exe, workdir, [*TARGETS, TRAIN_TARGET], "--profile", str(PROFILE))
    took = time.monotonic() - start
    assert rc == 0, f"snakemake --profile profiles/slurm-test failed (rc {rc}, {took:.0f} s):\n{out}"
    match = re.search(r"SLURM run ID: (\S+)", out)
    assert match, f"no 'SLURM run ID' in Snakemake's output (not the Slurm executor?):\n{out}"
    return workdir, out, match.group(1)


def test_outputs_match_local_run(slurm_run, snakemake_exe, tmp_path):
    workdir, _, _ = slurm_run
    rc, out = run_snakemake(snakemake_exe, tmp_path, TARGETS, "--cores", "2")
    assert rc == 0, out
    for target in TARGETS:
        cluster_df = pd.read_parquet(workdir / target)
        local_df = pd.read_parquet(tmp_path / target)
        assert len(cluster_df) == 9
        # same seeds: equal up to floating-point reordering (thread counts differ)
        pd.testing.assert_frame_equal(cluster_df, local_df, check_exact=False, rtol=1e-10, atol=1e-12)
    exact = pd.read_parquet(workdir / TARGETS[0])
    assert np.isfinite(exact[["f", "u", "c", "m"]].to_numpy()).all()
    assert (workdir / "results/logs/ising/3x3/reference/mcmc.log").exists()


def sacct_rows(run_uuid: str) -> list[dict]:
    fields = "JobID,JobName,State,ExitCode,Account,QOS,Constraints,AllocTRES,Comment"
    out = slurm("sacct", "-X", "-P", "-n", "--starttime", "now-1days", "--name", run_uuid, "-o", fields)
    return [dict(zip(fields.split(","), line.split("|"), strict=True)) for line in out.splitlines() if line]


def rule_of(row: dict) -> str:
    # the plugin's comment, "rule_<name>_wildcards_<...>" (kept by AccountingStoreFlags=job_comment)
    return row["Comment"].split("_wildcards")[0].removeprefix("rule_")


def test_jobs_in_sacct(slurm_run):
    """One Slurm job per rule, named by the run's uuid, under the test profile's account, QOS and
    constraints: cpu for the references, gpu for training."""
    _, _, run_uuid = slurm_run
    rows = sacct_rows(run_uuid)
    assert sorted(map(rule_of, rows)) == ["exact_reference", "mcmc_reference", "train"], rows
    for row in rows:
        assert row["JobName"] == run_uuid and row["State"] == "COMPLETED" and row["ExitCode"] == "0:0", row
        assert row["Account"] == ACCOUNT and row["QOS"] == "regular", row
        assert row["Constraints"] == ("gpu" if rule_of(row) == "train" else "cpu"), row


def test_train_job_got_gpus(slurm_run):
    """The train rule's `gpu` resource (config training.gpus) reaches sbatch as --gpus: the job was
    allocated that many (fake) GPUs; the reference jobs none."""
    workdir, _, run_uuid = slurm_run
    for row in sacct_rows(run_uuid):
        gpus = re.search(r"gres/gpu=(\d+)", row["AllocTRES"])
        if rule_of(row) == "train":
            assert gpus and int(gpus.group(1)) == TINY["training"]["gpus"], row
        else:
            assert gpus is None, row
    assert (workdir / TRAIN_TARGET).stat().st_size > 0
    assert len(pd.read_parquet(workdir / "results/ising/3x3/models/fo-arm-mlp/train_log.parquet")) > 0


def test_gpu_job_through_fake_gres(cluster, tmp_path):
    """The GPU path of the cluster: `--gpus=1 -C gpu` gets one (fake) GPU, visible to the job as
    CUDA_VISIBLE_DEVICES, and accounted as gres/gpu=1."""
    log = tmp_path / "gpu.out"
    out = slurm(
        "sbatch", "--parsable", "--wait", "-A", ACCOUNT, "-q", "regular", "-C", "gpu", "--gpus=1",
        "-t", "1", "--mem", "100", "-J", "lattherm-gpu-check", "-o", str(log),
        "--wrap", 'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"',
        timeout=120,
    )  # fmt: skip
    job_id = out.strip().split(";")[0]
    assert re.fullmatch(r"CUDA_VISIBLE_DEVICES=[01]\n", log.read_text()), log.read_text()
    tres = slurm("sacct", "-X", "-P", "-n", "-j", job_id, "-o", "State,AllocTRES")
    assert tres.startswith("COMPLETED|") and "gres/gpu=1" in tres, tres


#: `lattherm submit ... --wait` polls Slurm through submitit, which may ignore SIGTERM: ended with SIGKILL
SUBMIT_TIMEOUT = 240


def test_two_rank_ddp_training_as_a_slurm_job(cluster, tmp_path):
    """A 2-rank gloo DDP training (the tiny fo-arm-mlp of TINY) as one real Slurm job through
    `lattherm submit --executor slurm --tasks-per-node 2`: the job and its 2-task step are in
    sacct, both ranks logged and their states are in the checkpoint (world_size 2), and the
    weights equal the same 2-rank training run locally through `launch` (`lattherm train --nproc 2`)."""
    from lattherm.cli import main as lattherm_main
    from lattherm.training import load_checkpoint

    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    what = ["--system", "ising", "--size", "3x3", "--model", "fo-arm-mlp", "--config", str(cfg)]
    cmd = [
        "timeout", "-s", "KILL", str(SUBMIT_TIMEOUT), sys.executable, "-m", "lattherm.cli", "submit", *what,
        "--out", str(tmp_path / "slurm"), "--executor", "slurm", "--tasks-per-node", "2", "--cpus-per-task", "1",
        "--account", ACCOUNT, "--qos", "regular", "--constraint", "cpu", "--time-min", "5", "--wait",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, env=slurm_env(), capture_output=True, text=True, timeout=SUBMIT_TIMEOUT + 30, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"submitted job (\d+) ", proc.stdout)
    assert match and "finished: 10/10 steps" in proc.stdout, proc.stdout
    job_id = match.group(1)
    deadline = time.monotonic() + 60  # submitit returns on the result files; Slurm ends the job just after
    while True:
        rows = slurm("sacct", "-P", "-n", "-j", job_id, "-o", "JobID,State,NTasks,Account,QOS").splitlines()
        done = all(r.split("|")[1] not in ("PENDING", "RUNNING", "COMPLETING") for r in rows)
        if done or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert rows[0].split("|")[1:2] == ["COMPLETED"] and rows[0].endswith(f"|{ACCOUNT}|regular"), rows
    assert any(r.split("|")[0] == f"{job_id}.0" and r.split("|")[1:3] == ["COMPLETED", "2"] for r in rows), rows
    logs = {r: (tmp_path / f"slurm/submitit/{job_id}_{r}_log.err").read_text() for r in (0, 1)}
    for r, text in logs.items():
        assert f"rank {r} of 2 (local rank {r}, gloo on cpu)" in text, text
    on_slurm = load_checkpoint(tmp_path / "slurm/checkpoint.pt")
    assert on_slurm["finished"] and on_slurm["world_size"] == 2 and len(on_slurm["ranks"]) == 2
    assert lattherm_main(["train", *what, "--out", str(tmp_path / "local"), "--nproc", "2", "--quiet"]) == 0
    local = load_checkpoint(tmp_path / "local/checkpoint.pt")
    for name, v in local["model_state"].items():
        torch.testing.assert_close(on_slurm["model_state"][name], v, rtol=0, atol=1e-6)
    drop = ["wall_s", "samples_per_s"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "slurm/train_log.parquet").drop(columns=drop),
        pd.read_parquet(tmp_path / "local/train_log.parquet").drop(columns=drop),
        check_exact=False, rtol=1e-6,
    )  # fmt: skip
