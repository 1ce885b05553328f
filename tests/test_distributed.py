"""Multi-process (DDP) training on the CPU (``gloo``): one 2-rank step against a gradient averaged
by hand, identical ranks with only rank 0 writing, a killed and resumed 2-rank MAM run that
continues the uninterrupted trajectory, clear errors (world size on resume, indivisible samples),
the rank layout from Slurm/torchrun variables, and the ``lattherm`` command (train, submitit's
local executor with 2 tasks, the checkpoint/requeue path).

Each :func:`lattherm.distributed.launch` of 2 processes costs ~10–20 s on 2 cores (spawn, imports),
so the tests that launch do several things per launch and are marked ``slow``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import BOX, TINY, TINY_TRAIN, snakemake_env

import lattherm.training.checkpoint as checkpoint_mod
import lattherm.training.trainer as trainer_mod
from lattherm.cli import TrainJob, main
from lattherm.conditions import DriftingGrid
from lattherm.distributed import RankLayout, launch, setup_distributed
from lattherm.models import build_model
from lattherm.systems import IsingSystem
from lattherm.training import (
    TrainConfig,
    TrainSpec,
    load_checkpoint,
    reinforce_loss,
    sampling_seed,
    train_process,
)
from lattherm.training.trainer import beta_scale, lr_factor

#: one step of a tiny fo-arm-mlp, float64 so that the hand-made reference agrees to ~1e-12
ONE_STEP = dict(
    steps=1, n_T=2, n_field=2, samples_per_condition=8, grad_clip=None, seed=5, precision="float64", log_every=1
)
#: a few steps of a tiny MAM with refills, Gibbs moves and checkpoints every 2 steps (conftest.TINY_TRAIN)
MAM_STEPS = TINY_TRAIN


def _spec(name: str, cfg: dict, out: Path, stem: str) -> TrainSpec:
    """A training of ``name`` on Ising 3x3 into ``out/stem.pt`` and ``out/stem.parquet``."""
    return TrainSpec(system="ising", size="3x3", model=name, model_config=TINY[name], train_config=cfg, cond_box=BOX,
                     checkpoint_path=str(out / f"{stem}.pt"), log_path=str(out / f"{stem}.parquet"),
                     progress=False)  # fmt: skip


def _at(spec: TrainSpec, out: Path, stem: str) -> TrainSpec:
    return replace(spec, checkpoint_path=str(out / f"{stem}.pt"), log_path=str(out / f"{stem}.parquet"))


# --------------------------------------------------------------------------- rank workers
def _spying_worker(spy_dir: str, spec: TrainSpec) -> dict:
    """Train with spies on the model and the writers; leave this rank's parameters and the
    writes it made in ``spy_dir``."""
    rank = int(os.environ["RANK"])
    models, writes = [], []
    real_build, real_save, real_log = trainer_mod.build_model, checkpoint_mod.save_checkpoint, checkpoint_mod.write_log

    def build(*args, **kwargs):
        models.append(real_build(*args, **kwargs))
        return models[-1]

    def save(*args, **kwargs):
        writes.append("checkpoint")
        return real_save(*args, **kwargs)

    def write_log(*args, **kwargs):
        writes.append("log")
        return real_log(*args, **kwargs)

    trainer_mod.build_model, checkpoint_mod.save_checkpoint, checkpoint_mod.write_log = build, save, write_log
    summary = train_process(spec)
    torch.save({k: v.detach().cpu() for k, v in models[0].state_dict().items()}, Path(spy_dir) / f"rank{rank}.pt")
    (Path(spy_dir) / f"rank{rank}.json").write_text(json.dumps(writes))
    return summary


def _kill_resume_worker(out: str, spec: TrainSpec, kill_at: int) -> dict:
    """An uninterrupted run (a), a run killed during step ``kill_at`` on every rank and resumed
    (b), and two runs that must fail with a clear error on every rank (no hang)."""
    out = Path(out)
    found = {}
    train_process(_at(spec, out, "a"))
    b = _at(spec, out, "b")
    real, calls = trainer_mod.mam_loss, [0]

    def killing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    trainer_mod.mam_loss = killing
    try:
        train_process(b)
    except KeyboardInterrupt:
        found["killed_at_step"] = load_checkpoint(out / "b.pt")["step"]
    trainer_mod.mam_loss = real
    found["resumed"] = train_process(b)
    for key, cfg, path in [
        ("indivisible", {**spec.train_config, "samples_per_condition": 7}, out / "c.pt"),
        ("one_process_checkpoint", spec.train_config, out / "one.pt"),
    ]:
        try:
            train_process(replace(spec, train_config=cfg, checkpoint_path=str(path)))
        except ValueError as err:
            found[key] = str(err)
    return found


# --------------------------------------------------------------------------- tests
def _reference_one_step(world_size: int = 2):
    """One step done by hand: each rank's REINFORCE gradient from its own generator
    (:func:`sampling_seed`), averaged, applied by AdamW; also the rank-0-only update."""
    cfg = TrainConfig(**ONE_STEP)
    system = IsingSystem(L=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model("fo-arm-mlp", system=system, cond_box=BOX, config=TINY["fo-arm-mlp"]).double()
    cond = DriftingGrid(cond_box=BOX, n_T=2, n_field=2, step_frac=cfg.grid_step_frac, seed=cfg.seed + 1).conditions()
    params = list(model.parameters())
    grads, losses, log_w = [], [], []
    for rank in range(world_size):
        gen = torch.Generator().manual_seed(sampling_seed(cfg.seed, rank))
        loss, st = reinforce_loss(
            model,
            system,
            cond,
            samples_per_condition=cfg.samples_per_condition // world_size,
            generator=gen,
            beta_scale=beta_scale(0, cfg),
            standardise=cfg.standardise,
            steps_per_pass=cfg.steps_per_pass,
        )
        grads.append(torch.autograd.grad(loss, params))
        losses.append(float(loss.detach()))
        log_w.append(st["log_w"].view(len(cond), -1))
    mean = [sum(g) / world_size for g in zip(*grads, strict=True)]

    def adamw_step(grad) -> dict:
        m = build_model("fo-arm-mlp", system=system, cond_box=BOX, config=TINY["fo-arm-mlp"]).double()
        m.load_state_dict(model.state_dict())
        opt = torch.optim.AdamW(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
        for p, g in zip(m.parameters(), grad, strict=True):
            p.grad = g.clone()
        opt.step()
        return m.state_dict()

    lw = torch.cat(log_w, 1)  # (C, S): both ranks' samples of each condition
    f_var = -system.k_B * cond[:, 0] * lw.mean(1) / system.n_sites
    return {
        "params": adamw_step(mean),
        "params_rank0_only": adamw_step(grads[0]),
        "grad_norm": math.sqrt(sum(float((g**2).sum()) for g in mean)),
        "loss": sum(losses) / world_size,
        "f_var_mean": float(f_var.mean()),
        "lw_std_mean": float(lw.std(1, correction=0).mean()),
    }


@pytest.mark.slow
def test_two_rank_step_averages_gradients_and_only_rank0_writes(tmp_path):
    """(a) one 2-rank gloo step equals the hand-averaged gradient applied by AdamW (and differs
    from rank 0's gradient alone); the log's grad_norm and loss are those of the average (a sum
    instead of a mean, invisible to Adam's first step, shows there). (b) both ranks end with the
    same parameters; only rank 0 wrote the checkpoint and the log."""
    out, spy = tmp_path / "out", tmp_path / "spy"
    out.mkdir(), spy.mkdir()
    summary = launch(2, _spying_worker, str(spy), _spec("fo-arm-mlp", ONE_STEP, out, "ck"))
    assert summary["world_size"] == 2 and summary["finished"]
    ref = _reference_one_step()
    ranks = [torch.load(spy / f"rank{r}.pt") for r in (0, 1)]
    for name, v in ref["params"].items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        torch.testing.assert_close(ranks[0][name], v, rtol=0, atol=1e-6)
    moved = max(float((ref["params"][k] - v).abs().max()) for k, v in ref["params_rank0_only"].items())
    assert moved > 1e-4, "rank 0's own gradient gives the same step: the test could not see a missing all-reduce"
    state = load_checkpoint(out / "ck.pt")
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    for name, v in state["model_state"].items():
        assert torch.equal(v, ranks[0][name]), name
    row = pd.read_parquet(out / "ck.parquet").iloc[0]
    assert row["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-9)
    assert row["loss"] == pytest.approx(ref["loss"], rel=1e-9, abs=1e-12)
    assert row["f_var_mean"] == pytest.approx(ref["f_var_mean"], rel=1e-9)
    assert row["lw_std_mean"] == pytest.approx(ref["lw_std_mean"], rel=1e-9)
    assert json.loads((spy / "rank0.json").read_text()) == ["checkpoint", "log"]
    assert json.loads((spy / "rank1.json").read_text()) == []
    assert sorted(p.name for p in out.iterdir()) == ["ck.parquet", "ck.pt"]


@pytest.mark.slow
def test_two_rank_mam_resume_continues_trajectory_and_errors_are_clear(tmp_path):
    """(c) a 2-rank MAM run killed during step 6 (last checkpoint at step 4) and resumed ends
    exactly where the uninterrupted run does: weights, grid, every rank's buffer and generator,
    log. (d) resuming with another number of processes (both directions) and indivisible samples
    fail with a clear ValueError, on every rank (no hang)."""
    spec = _spec("mam-mlp", MAM_STEPS, tmp_path, "unused")
    train_process(replace(spec, checkpoint_path=str(tmp_path / "one.pt"), log_path=None))  # 1 process
    found = launch(2, _kill_resume_worker, str(tmp_path), spec, 6)
    assert found["killed_at_step"] == 4
    assert found["resumed"]["finished"] and found["resumed"]["steps_done"] == MAM_STEPS["steps"]
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert a["world_size"] == b["world_size"] == 2
    for k, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][k]), k
    assert torch.equal(a["grid"]["T"], b["grid"]["T"])
    for ra, rb in zip(a["ranks"], b["ranks"], strict=True):
        assert torch.equal(ra["buffer"]["x"], rb["buffer"]["x"])
        assert torch.equal(ra["rng"]["train_generator"], rb["rng"]["train_generator"])
    # the ranks drew different samples (distinct seeds)
    assert not torch.equal(a["ranks"][0]["buffer"]["x"], a["ranks"][1]["buffer"]["x"])
    assert a["ranks"][0]["buffer"]["x"].shape == (4 * 4, 9)  # C · S/2 per rank
    drop = ["wall_s", "samples_per_s"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a.parquet").drop(columns=drop),
        pd.read_parquet(tmp_path / "b.parquet").drop(columns=drop),
    )
    assert "multiple of 2" in found["indivisible"] and "samples_per_condition = 7" in found["indivisible"]
    assert "written by a 1-process run" in found["one_process_checkpoint"]
    with pytest.raises(ValueError, match="written by a 2-process run and cannot continue with 1"):
        train_process(_at(spec, tmp_path, "b"))


def _fail_on_rank_1() -> str:
    if os.environ["RANK"] == "1":
        raise ValueError("rank 1 cannot go on")
    torch.distributed.init_process_group("gloo")  # waits for rank 1, which never comes: stopped
    return "unreachable"


@pytest.mark.slow
def test_launch_reraises_the_failing_rank_exception():
    with pytest.raises(ValueError, match="rank 1 cannot go on") as info:
        launch(2, _fail_on_rank_1)
    assert any("raised on rank 1 of 2" in note for note in info.value.__notes__)


def test_launch_checks_its_arguments(monkeypatch):
    assert launch(1, math.hypot, 3.0, 4.0) == 5.0  # one process: called here
    with pytest.raises(ValueError, match="nproc must be an integer >= 1"):
        launch(0, math.hypot, 3.0, 4.0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="asked for 2 processes .* but 1 GPUs are visible"):
        launch(2, math.hypot, 3.0, 4.0)
    with pytest.raises(ValueError, match="names one GPU"):
        launch(2, math.hypot, 3.0, 4.0, device="cuda:0")


_LAYOUT_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SUBMITIT_EXECUTOR",
)


@pytest.fixture
def clean_layout_env(monkeypatch):
    """No layout variables; whatever a test exports (RANK, MASTER_ADDR, ...) is removed after it."""
    for k in [*_LAYOUT_VARS, "CUDA_VISIBLE_DEVICES", *(k for k in os.environ if k.startswith(("SLURM_", "SUBMITIT_")))]:
        monkeypatch.setenv(k, "")  # recorded, so that teardown restores (or removes) it
        monkeypatch.delenv(k)
    return monkeypatch


def test_single_process_layout_without_variables(clean_layout_env):
    assert setup_distributed("cpu") == RankLayout(0, 1, 0, None, torch.device("cpu"))
    # a torchrun/Slurm layout of one process needs no process group
    clean_layout_env.setenv("RANK", "0")
    clean_layout_env.setenv("WORLD_SIZE", "1")
    assert setup_distributed("auto").world_size == 1 and not torch.distributed.is_initialized()
    clean_layout_env.delenv("RANK")
    clean_layout_env.delenv("WORLD_SIZE")
    clean_layout_env.setenv("SLURM_NTASKS", "1")
    clean_layout_env.setenv("SLURM_PROCID", "0")
    assert setup_distributed("cpu").backend is None


def test_one_process_collectives_return_their_input():
    """The training loop calls the same collectives with one process: they change nothing."""
    layout = RankLayout()
    grad, scalars = torch.randn(3, 2), torch.tensor([1.5, 0.0], dtype=torch.float64)
    before = grad.clone(), scalars.clone()
    layout.all_reduce_mean([grad, scalars])
    layout.broadcast([grad])
    layout.barrier()
    assert torch.equal(grad, before[0]) and torch.equal(scalars, before[1])
    x = torch.arange(6.0)
    assert torch.equal(layout.all_gather_conditions(x, 2), x.view(2, 3))
    assert layout.all_gather_object({"a": 1}) == [{"a": 1}] and layout.broadcast_object(7) == 7


def test_slurm_layout_through_submitit_keeps_cuda_visible_devices(clean_layout_env):
    """Task 3 of a 4-task srun step on two nodes: submitit's TorchDistributedEnvironment exports
    the torchrun variables (first node as master, port from the job id); CUDA_VISIBLE_DEVICES
    (one GPU bound to the task) is left alone."""
    from lattherm.distributed import _export_submitit_layout, _multi_task_job

    env = {
        "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
        "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "nid[001234-001235]",
        "CUDA_VISIBLE_DEVICES": "1",
    }  # fmt: skip
    for k, v in env.items():
        clean_layout_env.setenv(k, v)
    assert _multi_task_job()
    _export_submitit_layout()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("3", "4", "1")
    assert os.environ["LOCAL_WORLD_SIZE"] == "2" and os.environ["MASTER_ADDR"] == "nid001234"
    assert 20000 <= int(os.environ["MASTER_PORT"]) <= 60000
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1" and "SUBMITIT_EXECUTOR" not in os.environ
    # submitit's local executor with 2 tasks is a multi-task job too
    clean_layout_env.setenv("SUBMITIT_EXECUTOR", "local")
    clean_layout_env.setenv("SUBMITIT_LOCAL_NTASKS", "2")
    assert _multi_task_job()


@pytest.mark.parametrize(
    "visible, local_rank, expected",
    [(4, 2, "cuda:2"), (1, 2, "cuda:0"), (2, 3, None)],
    ids=["all-gpus-visible", "one-gpu-per-task", "too-few"],
)
def test_rank_device_on_cuda(monkeypatch, visible, local_rank, expected):
    from lattherm.distributed import _rank_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    kw = dict(rank=local_rank, world_size=4, local_rank=local_rank, local_world_size=4)
    if expected is None:
        with pytest.raises(ValueError, match="sees 2 GPUs"):
            _rank_device("auto", **kw)
    else:
        assert _rank_device("auto", **kw) == torch.device(expected)
    with pytest.raises(ValueError, match="names one GPU"):
        _rank_device("cuda:1", **kw)
    assert _rank_device("cpu", **kw) == torch.device("cpu")


def test_sampling_seed_keeps_rank0_and_separates_ranks():
    assert sampling_seed(11, 0) == 13  # the single-process seed (seed + 2)
    seeds = {sampling_seed(s, r) for s in range(4) for r in range(8)}
    assert len(seeds) == 32 and all(0 <= x < 2**63 for x in seeds)


# --------------------------------------------------------------------------- lattherm command
TINY_CONFIG = {
    "seed": 7,
    "systems": {
        "ising": {
            "J": 1.0,
            "sizes": ["3x3"],
            "T": {"values": [2.0, 3.0]},
            "field": {"values": [-0.5, 0.5]},
            "models": ["fo-arm-mlp", "mam-mlp"],
        }
    },
    "models": {"fo-arm-mlp": TINY["fo-arm-mlp"], "mam-mlp": TINY["mam-mlp"]},
    "training": {
        "gpus": 0,
        "ising": {
            "steps": 6, "n_T": 2, "n_field": 2, "samples_per_condition": 8, "checkpoint_every": 2, "log_every": 1,
            "max_minutes": 5, "per_model": {"mam-mlp": {"refill_every": 3, "gibbs_sweeps": 2}},
        },
    },
}  # fmt: skip


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(TINY_CONFIG))
    return path


def test_cli_train_takes_the_workflow_settings(tiny_config, tmp_path, capsys):
    from lattherm.config import cond_box, job_seed

    out = tmp_path / "out"
    base = ["--system", "ising", "--size", "3x3", "--config", str(tiny_config), "--out", str(out)]
    assert main(["train", *base, "--model", "mam-mlp", "--set", "steps=3", "--quiet"]) == 0
    assert "finished: 3/3 steps" in capsys.readouterr().out
    state = load_checkpoint(out / "checkpoint.pt")
    tc = state["train_config"]
    assert tc["steps"] == 3 and tc["samples_per_condition"] == 8 and tc["refill_every"] == 3  # per_model override
    assert tc["seed"] == job_seed(7, "train", "ising", "3x3", "mam-mlp")  # the workflow's job seed
    assert state["model_spec"]["config"]["width"] == TINY["mam-mlp"]["width"]
    assert state["cond_box"] == [list(b) for b in cond_box(TINY_CONFIG, "ising")]
    assert (out / "train_log.parquet").exists() and state["world_size"] == 1
    # clear errors, before any process starts
    assert main(["train", *base, "--model", "fo-arm-mlp", "--nproc", "3"]) == 2
    assert "samples_per_condition = 8 is the number per condition over all 3 processes" in capsys.readouterr().err
    assert main(["train", *base, "--model", "fo-arm-mlp", "--set", "lr"]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err
    assert main(["train", *base, "--model", "fo-arm-mlp", "--set", "nonsense=1"]) == 2
    assert "'--set.nonsense' is unknown; the keys here are" in capsys.readouterr().err
    bad = ["train", "--system", "cuau", "--size", "2x2x4", "--model", "fo-arm-mlp", "--config", str(tiny_config)]
    assert main([*bad, "--out", str(out)]) == 2
    assert "has no systems.cuau block" in capsys.readouterr().err
    # fine-tuning: only a size-free model starts from weights of another size (the MLP's are tied to its box)
    made = tmp_path / "made"
    assert main(["train", *base[:-2], "--out", str(made), "--model", "fo-arm-mlp", "--set", "steps=1", "--quiet"]) == 0
    capsys.readouterr()
    argv = ["train", "--system", "ising", "--size", "4x4", "--config", str(tiny_config), "--out", str(tmp_path / "ft"),
            "--model", "fo-arm-mlp", "--init-from", str(made / "checkpoint.pt"), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    assert "--init-from: init_from" in capsys.readouterr().err and not (tmp_path / "ft").exists()
    # a fine-tuning stage of the config continues trained weights: without them, refused by name
    staged = tmp_path / "staged.yaml"
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["scaling"] = {"ising": {"from": "3x3", "transfer": ["6x6"], "models": ["fo-pixelcnn"],
                                "finetune": {"4x4": {"from": "3x3"}}}}  # fmt: skip
    cfg["systems"]["ising"]["models"] = [*cfg["systems"]["ising"]["models"], "fo-pixelcnn"]
    staged.write_text(yaml.safe_dump(cfg))
    argv = ["train", "--system", "ising", "--size", "4x4", "--config", str(staged), "--out", str(tmp_path / "st"),
            "--model", "fo-pixelcnn", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    assert "scaling.ising.finetune.4x4): pass --init-from with its 3x3 checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "st").exists()


def test_cli_bad_input_gets_one_message(tiny_config, tmp_path, capsys):
    """Bad values, files and folders: one line naming what is wrong, no traceback, nothing written."""
    out = tmp_path / "out"
    base = ["train", "--system", "ising", "--size", "3x3", "--model", "fo-arm-mlp", "--quiet"]
    cases = [
        ([*base, "--config", str(tiny_config), "--out", str(out), "--set", "lr=abc"], "'--set.lr': expected a finite"),
        ([*base, "--config", str(tiny_config), "--out", str(out), "--set", "device=tpu"], "'--set.device'"),
        ([*base, "--config", str(tiny_config), "--out", str(out), "--set", "steps=inf"], "'--set.steps'"),
        ([*base, "--config", str(tmp_path / "missing.yaml"), "--out", str(out)], "missing.yaml does not exist"),
        ([*base, "--config", str(tiny_config), "--out", str(out), "--init-from", str(tmp_path / "nope.pt")],
         "--init-from: [Errno 2] No such file"),
    ]
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: 1\nsystems: {ising: {J: 1\n")
    cases.append(([*base, "--config", str(broken), "--out", str(out)], "broken.yaml, line 3"))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if not os.access(locked, os.W_OK):  # root writes anywhere
        cases.append(([*base, "--config", str(tiny_config), "--out", str(locked / "o")], "cannot write to the output"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not out.exists()


def test_cli_refuses_an_output_folder_in_use(tiny_config, tmp_path, capsys):
    from lattherm.cli import out_lock

    out = tmp_path / "out"
    argv = ["train", "--system", "ising", "--size", "3x3", "--model", "fo-arm-mlp", "--config", str(tiny_config),
            "--out", str(out), "--quiet"]  # fmt: skip
    with out_lock(out):  # another training holds it
        assert main(argv) == 2
        assert "is in use by another training (pid" in capsys.readouterr().err
        assert not (out / "checkpoint.pt").exists()
    assert main(argv) == 0  # free again


def test_cli_truncated_checkpoint_names_the_file(tiny_config, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["train", "--system", "ising", "--size", "3x3", "--model", "fo-arm-mlp", "--config", str(tiny_config),
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    ckpt = out / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{ckpt} is not a readable checkpoint" in err and "truncated" in err and "Traceback" not in err


def test_submit_sweep_with_debug_executor(tiny_config, tmp_path, capsys):
    """One job per swept value, each in its own folder with that value; the config's max_minutes
    is dropped for submitted jobs."""
    out = tmp_path / "sweep"
    args = ["submit", "--system", "ising", "--size", "3x3", "--model", "fo-arm-mlp", "--config", str(tiny_config)]
    assert main([*args, "--out", str(out), "--executor", "debug", "--sweep", "lr=0.001,0.003"]) == 0
    text = capsys.readouterr().out
    assert text.count("submitted job") == 2 and text.count("finished: 6/6 steps") == 2, text
    for lr in ("0.001", "0.003"):
        state = load_checkpoint(out / f"lr={lr}" / "checkpoint.pt")
        assert state["train_config"]["lr"] == float(lr) and state["train_config"]["max_minutes"] is None
        assert f"lr={lr}" in text


def test_checkpoint_returns_a_delayed_submission_that_resumes(tiny_config, tmp_path, monkeypatch):
    """submitit calls TrainJob.checkpoint() on pre-emption/timeout and requeues what it returns:
    a DelayedSubmission of the same training, which (after pickling) resumes from the last
    checkpoint and ends where an uninterrupted run does."""
    import submitit

    from lattherm.cli import load_config

    config = load_config(str(tiny_config))
    spec_args = dict(system="ising", size="3x3", model="fo-arm-mlp", model_config=TINY["fo-arm-mlp"])
    settings = {**config["training"]["ising"], "seed": 1, "max_minutes": None}
    settings.pop("per_model")
    box = ((2.0, 3.0), (-0.5, 0.5))
    whole = TrainJob(TrainSpec(**spec_args, train_config=settings, cond_box=box,
                               checkpoint_path=str(tmp_path / "whole" / "checkpoint.pt"), progress=False))  # fmt: skip
    assert whole()["finished"]
    job = TrainJob(replace(whole.spec, checkpoint_path=str(tmp_path / "pre" / "checkpoint.pt")))
    real, calls = trainer_mod.reinforce_loss, [0]

    def preempted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 5:  # pre-empted during step 5: last checkpoint at step 4
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(trainer_mod, "reinforce_loss", preempted)
        with pytest.raises(KeyboardInterrupt):
            job()
    assert load_checkpoint(tmp_path / "pre" / "checkpoint.pt")["step"] == 4
    delayed = job.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission) and isinstance(delayed.function, TrainJob)
    delayed.dump(tmp_path / "requeued.pkl")  # what submitit writes before requeueing
    summary = submitit.helpers.DelayedSubmission.load(tmp_path / "requeued.pkl").result()
    assert summary["finished"] and summary["steps_done"] == 6
    a, b = load_checkpoint(tmp_path / "whole/checkpoint.pt"), load_checkpoint(tmp_path / "pre/checkpoint.pt")
    for k, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][k]), k


#: submitit / the local executor may ignore SIGTERM: the command is ended with SIGKILL
SUBMIT_TIMEOUT = 300


@pytest.mark.slow
def test_submit_local_executor_two_tasks(tiny_config, tmp_path):
    """`lattherm submit --executor local --tasks-per-node 2`: two tasks, each a DDP rank, write one
    finished 2-rank checkpoint; both ranks logged."""
    out = tmp_path / "job"
    cmd = [
        "timeout", "-s", "KILL", str(SUBMIT_TIMEOUT), sys.executable, "-m", "lattherm.cli", "submit",
        "--system", "ising", "--size", "3x3", "--model", "mam-mlp", "--config", str(tiny_config), "--out", str(out),
        "--executor", "local", "--tasks-per-node", "2", "--time-min", "5", "--wait",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, env=snakemake_env(), capture_output=True, text=True, timeout=SUBMIT_TIMEOUT + 30, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted job" in proc.stdout and "finished: 6/6 steps" in proc.stdout, proc.stdout
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["finished"] and state["world_size"] == 2 and len(state["ranks"]) == 2
    logs = sorted((out / "submitit").glob("*_log.err"))
    assert [any(f"rank {r} of 2" in p.read_text() for p in logs) for r in (0, 1)] == [True, True]
