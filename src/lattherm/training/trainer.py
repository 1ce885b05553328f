"""Training loop of every neural sampler: config, schedule, checkpoints, resume, log.

``train(system, model_name=..., model_config=..., train_config=..., cond_box=...,
checkpoint_path=..., log_path=...)`` trains one conditional model over ``cond_box`` and returns a
summary dict. ARMs (``fo-arm-mlp``, ``ao-arm-mlp``) use :mod:`~lattherm.training.reinforce`,
MAMs (``mam-*``) :mod:`~lattherm.training.mam`. Each step draws the conditions of the drifting
``n_T x n_field`` grid (:mod:`~lattherm.training.conditions`). AdamW, linear warm-up then cosine
decay of the learning rate, global grad-norm clipping, optional β-annealing (VAN: the reduced
energy in the loss is scaled by ``β_s`` rising linearly from ``beta0`` to 1 over the first
``beta_anneal_frac`` of the steps).

**Checkpoints and resume.** Every ``checkpoint_every`` steps, on the wall-clock budget
(``max_minutes``) and at the end, the full state is written atomically
(:mod:`~lattherm.training.checkpoint`) and the log to ``log_path`` (Parquet). If the checkpoint
exists, training continues from it when it matches (same model spec, system, box, and train
config apart from ``max_minutes``, ``checkpoint_every``, ``log_every``), else fails. A resumed run
continues the same trajectory: every random draw comes from generators stored in the checkpoint.

**Divergence.** A non-finite loss term or gradient norm raises :class:`TrainingDiverged` naming the
step and the term; nothing is written, so the last good checkpoint stays untouched.

**Log** (one row every ``log_every`` steps and at the last step): ``step`` (steps completed),
``loss`` and its terms (ARMs: ``surrogate``, ``reward``; MAMs: ``kl``, ``cons``, ``anchor``),
``f_var_mean`` / ``f_var_max`` (per-site variational free energy of each batch condition,
averaged / maximised over the ``n_T · n_field`` conditions — ARMs from the exact ``log q``,
MAMs from the marginal surrogate, see ``f_var_source``), ``lw_std_mean`` / ``lw_std_max`` (per
condition standard deviation of ``log w``, 0 when ``q = p``: the reference-free convergence
signal), ``grad_norm`` (before clipping), ``lr``, ``beta_scale``, ``wall_s`` (training time
summed over resumes), ``samples_per_s``.

**Several processes (DDP).** ``train`` reads the rank layout from the environment
(:func:`lattherm.distributed.setup_distributed`: torchrun variables, a multi-task Slurm step or
submitit job, else one process); :func:`lattherm.distributed.launch` with :func:`train_process`
starts ``N`` local processes. With ``world_size = W > 1``:

* ``samples_per_condition`` stays the *global* number per condition and must divide by ``W``
  (at least 2 per rank); each rank draws ``samples_per_condition / W`` per condition of the same
  drifting grid, from its own generator seeded by :func:`sampling_seed` ``(seed, rank)`` (rank 0
  keeps the single-process seed). The REINFORCE baseline / standardisation (and a MAM rank's
  Gibbs buffer) is per rank, over that rank's samples of each condition.
* Gradients are averaged by a **manual all-reduce** of one flat buffer after ``backward`` and
  before clipping (not ``DistributedDataParallel``: the losses call ``heads``,
  ``conditional_logits`` and the samplers, not ``forward``). The loss terms and each rank's
  time-budget vote ride in the same buffer, so the NaN check and the budget stop are decided
  identically on every rank. Initial parameters are broadcast from rank 0.
* Log rows use the full batch: ``log_w`` is all-gathered on log steps (``f_var_*``,
  ``lw_std_*`` over all ``samples_per_condition`` samples of each condition); ``loss`` and its
  terms are the mean over ranks (in the gradients' dtype); ``grad_norm`` is that of the averaged
  gradient; ``samples_per_s`` counts all ranks.
* Only rank 0 writes the checkpoint and the log and shows the progress bar. The checkpoint records
  ``world_size`` and every rank's generator states and (MAMs) Gibbs buffer (``ranks``), so a
  resumed run with the same number of processes continues the same trajectory; another number of
  processes is refused. Single-process runs are unchanged (no collective is called).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from lattherm.distributed import RankLayout, resolve_device, setup_distributed
from lattherm.io import write_table
from lattherm.models import build_model, check_cond_box
from lattherm.runlog import Progress, job_log
from lattherm.schema import check
from lattherm.systems import make_system
from lattherm.training.checkpoint import (
    FORMAT,
    check_system,
    load_checkpoint,
    save_checkpoint,
    system_record,
)
from lattherm.training.conditions import DriftingGrid
from lattherm.training.mam import GibbsBuffer, default_gibbs_block, mam_loss
from lattherm.training.reinforce import reinforce_loss

__all__ = [
    "TrainConfig",
    "TrainingDiverged",
    "train",
    "train_process",
    "train_config_from_dict",
    "check_train_config",
    "sampling_seed",
    "resolve_device",
]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 2000  # optimisation steps
    n_T: int = 5  # drifting grid: temperatures per step (paper: 5)
    n_field: int = 5  # drifting grid: fields per step (paper: 5)
    samples_per_condition: int = 40  # samples per condition per step, all processes together (MAMs: buffer)
    grid_step_frac: float = 0.1  # Gaussian drift of each grid value per step, fraction of the box
    lr: float = 1e-3  # peak AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_frac: float = 0.02  # linear warm-up over this fraction of the steps
    min_lr_frac: float = 0.05  # cosine decay ends at min_lr_frac · lr
    grad_clip: float | None = 1.0  # max global gradient norm (None: no clipping)
    beta0: float = 0.2  # β-annealing: initial scale of the reduced energy in the loss
    beta_anneal_frac: float = 0.2  # ... reaching 1 after this fraction of the steps (0: off)
    standardise: bool = True  # per-condition standardised advantage (False: leave-one-out)
    ao_grad_steps: int | None = None  # any-order ARMs: None exact ∇log q(x|σ) (N passes); k: unbiased k-step
    steps_per_pass: int = 16  # exact any-order gradient: steps batched per forward call
    grad_chunk: int | None = None  # ARMs: samples per activation-checkpointed chunk of the gradient (memory)
    mam_lambda: float = 1.0  # MAM: weight λ of N·L_cons + L_anchor
    gibbs_sweeps: int = 1  # MAM: block-Gibbs moves per step
    gibbs_block: int | None = None  # MAM: sites re-drawn per move (None: the paper's K, 10 Ising, 4 CuAu)
    refill_every: int = 50  # MAM: refill the buffer by ancestral sampling every this many steps
    checkpoint_every: int = 200  # steps between checkpoints (and log writes)
    log_every: int = 10  # steps between log rows
    seed: int = 0  # seed of initialisation, grid, sampling
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # "auto" (bf16 on CUDA, float32 on CPU), "float32", "bf16" (autocast), "float64"
    max_minutes: float | None = None  # wall-clock budget of this call: checkpoint and stop cleanly


#: config fields that do not change the trajectory (may differ on resume)
_FREE_ON_RESUME = ("max_minutes", "checkpoint_every", "log_every", "grad_chunk")


class TrainingDiverged(FloatingPointError):
    """A loss term or the gradient norm became NaN/inf; the last checkpoint was kept."""


def train_config_from_dict(config: Mapping | TrainConfig | None) -> TrainConfig:
    """A :class:`TrainConfig` from a dict of its keys (checked against the config schema: unknown
    keys, types and bounds), an instance, or None for the defaults."""
    if config is None:
        return TrainConfig()
    if isinstance(config, TrainConfig):
        return config
    check(dict(config), "trainLeaf", key="TrainConfig")
    return TrainConfig(**dict(config))


def check_train_config(cfg: TrainConfig, *, world_size: int = 1) -> None:
    """Raise ``ValueError`` (:class:`~lattherm.schema.ConfigError`) on a wrong setting: the config
    schema's types and bounds; ``world_size``: the number of training processes, which must divide
    ``samples_per_condition`` with at least 2 per process."""
    check(asdict(cfg), "trainLeaf", key="TrainConfig")
    S, W = cfg.samples_per_condition, int(world_size)
    if W > 1 and (S % W or S // W < 2):
        raise ValueError(
            f"TrainConfig.samples_per_condition = {S} is the number per condition over all {W} processes: "
            f"it must be a multiple of {W} with at least 2 per process (e.g. {max(2, -(-S // W)) * W})"
        )


def sampling_seed(seed: int, rank: int = 0) -> int:
    """Seed of the sampling generator of process ``rank``: ``seed + 2`` for rank 0 (the
    single-process seed), a hash of ``(seed, rank)`` below 2**63 for the others."""
    if rank == 0:
        return int(seed) + 2
    digest = hashlib.sha256(f"lattherm-sampling/{int(seed)}/{int(rank)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine to ``min_lr_frac`` at the last step."""
    warm = int(round(cfg.warmup_frac * cfg.steps))
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def beta_scale(step: int, cfg: TrainConfig) -> float:
    """VAN's β-annealing: ``beta0`` → 1 linearly over ``beta_anneal_frac · steps``, then 1."""
    n = cfg.beta_anneal_frac * cfg.steps
    if n <= 0:
        return 1.0
    return min(1.0, cfg.beta0 + (1 - cfg.beta0) * step / n)


def _rng_state(gen: torch.Generator) -> dict:
    np_state = np.random.get_state()  # noqa: NPY002 (the global state, saved for completeness)
    return {
        "train_generator": gen.get_state(),
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    # generator states are CPU byte tensors (a checkpoint loaded onto a GPU moved them there)
    gen.set_state(state["train_generator"].cpu())
    torch.set_rng_state(state["torch_cpu"].cpu())
    if state["torch_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["torch_cuda"]])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))  # noqa: NPY002
    random.setstate(state["python"])


def _diff_keys(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _trajectory_configs(state: dict, cfg: TrainConfig) -> tuple[dict, dict]:
    """``(asked, stored)`` TrainConfig keys that define the trajectory (all but ``_FREE_ON_RESUME``)."""
    mine = {k: v for k, v in asdict(cfg).items() if k not in _FREE_ON_RESUME}
    theirs = {k: v for k, v in state["train_config"].items() if k not in _FREE_ON_RESUME}
    return mine, theirs


def _changed_settings(state: dict, *, spec: dict, cond_box, cfg: TrainConfig) -> list[str]:
    """What a stored state was trained with differently: ``model_spec``, ``cond_box``, TrainConfig keys."""
    changed = ["model_spec"] if state["model_spec"] != spec else []
    changed += ["cond_box"] if state["cond_box"] != [list(b) for b in cond_box] else []
    return changed + _diff_keys(*_trajectory_configs(state, cfg))


def _check_resume(state: dict, *, spec: dict, system, cond_box, cfg: TrainConfig, path, world_size: int = 1) -> None:
    check_system(state["system"], system)
    if state["model_spec"] != spec:
        raise ValueError(
            f"{path} holds a different model ({state['model_spec']}) than asked for ({spec}); "
            "delete it or use another path"
        )
    if state["cond_box"] != [list(b) for b in cond_box]:
        raise ValueError(f"{path} was trained on cond_box {state['cond_box']}, asked for {cond_box}")
    mine, theirs = _trajectory_configs(state, cfg)
    diff = _diff_keys(mine, theirs)
    if diff:
        raise ValueError(
            f"{path} was trained with a different TrainConfig in {diff} "
            f"(checkpoint: { {k: theirs.get(k) for k in diff} }, asked: { {k: mine.get(k) for k in diff} }); "
            "delete it to start over"
        )
    written_by = int(state.get("world_size", 1))
    if written_by != world_size:
        raise ValueError(
            f"{path} was written by a {written_by}-process run and cannot continue with {world_size} "
            f"processes (every rank's generator and buffer are stored): resume it with {written_by} "
            "processes (training.gpus / --nproc / tasks per node), or delete it to start over"
        )


def _write_log(rows: dict, path) -> None:
    if path is None:
        return
    write_table(pd.DataFrame(rows), path, required=())


def _per_condition(values: torch.Tensor, C: int) -> torch.Tensor:
    return values.view(C, -1)


def _mean_over_ranks(params: list[torch.Tensor], scalars: torch.Tensor, world_size: int) -> torch.Tensor:
    """Average the gradients of ``params`` and ``scalars`` (1-D) over the ranks in one all-reduce
    of a flat buffer in the gradients' dtype; the gradients are replaced, the scalars returned.

    Parameters without a gradient are left out: which parameters get one is structural (the same
    code on same-shaped batches on every rank), so the buffers line up."""
    grads = [p.grad for p in params if p.grad is not None]
    dtype = grads[0].dtype if grads else scalars.dtype
    device = grads[0].device if grads else scalars.device
    flat = torch.cat([g.reshape(-1).to(dtype) for g in grads] + [scalars.to(device=device, dtype=dtype)])
    dist.all_reduce(flat)  # sum (ReduceOp.AVG is NCCL-only)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    return flat[offset:].double()


def _gather_conditions(x: torch.Tensor, C: int, world_size: int) -> torch.Tensor:
    """Every rank's condition-major ``(C·S_r,)`` values → ``(C, world_size·S_r)`` (all samples of
    each condition)."""
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.stack([p.view(C, -1) for p in parts], 1).reshape(C, -1)  # (C, W, S_r) -> (C, S)


def _kept(path: Path) -> str:
    """What is left on disk when a run stops on an error."""
    return f"last good checkpoint kept at {path}" if path.exists() else "no checkpoint was written"


def _check_finite(values: Mapping[str, torch.Tensor], *, model_name: str, step: int, path, where: str = "") -> None:
    for name, v in values.items():
        if not torch.isfinite(v).all():
            raise TrainingDiverged(
                f"{model_name}: loss term {name!r} is {v.item()}{where} at step {step + 1} "
                f"(steps completed: {step}); {_kept(path)}"
            )


def train(
    system,
    *,
    model_name: str,
    model_config=None,
    train_config: TrainConfig | Mapping | None = None,
    cond_box,
    checkpoint_path: str | os.PathLike,
    log_path: str | os.PathLike | None = None,
    progress: bool = True,
    restart_finished: bool = False,
) -> dict:
    """Train ``model_name`` on ``system`` over ``cond_box``; resume from ``checkpoint_path``.

    A state at ``checkpoint_path`` with another model, box or trajectory-defining setting is
    refused (it may hold a killed run's progress); with ``restart_finished``, a *finished* run's
    state of other settings is replaced by a fresh training instead (the workflow's case: its
    finished model lives on in the job's output, and a changed config asks for a new one).

    One process, or one rank of a multi-process run when the environment describes one (module
    doc). Returns ``{model, steps_done, steps, finished, stop_reason, wall_s, wall_s_this_call,
    samples_per_s, last (the last log row), checkpoint_path, log_path, world_size}`` (the same on
    every rank).
    """
    cfg = train_config_from_dict(train_config)
    check_train_config(cfg)
    cond_box = check_cond_box(cond_box)
    return _train(
        system,
        layout=setup_distributed(cfg.device),
        model_name=model_name,
        model_config=model_config,
        cfg=cfg,
        cond_box=cond_box,
        checkpoint_path=Path(checkpoint_path),
        log_path=log_path,
        progress=progress,
        restart_finished=restart_finished,
    )


def _train(system, *, layout: RankLayout, model_name, model_config, cfg: TrainConfig, cond_box, checkpoint_path,
           log_path, progress, restart_finished=False) -> dict:  # fmt: skip
    W, rank = layout.world_size, layout.rank
    check_train_config(cfg, world_size=W)
    device = layout.device
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if device.type == "cuda" else "float32")
    if precision == "bf16" and device.type not in ("cuda", "cpu"):
        raise ValueError(f"precision 'bf16' autocasts on CUDA or CPU devices, not {device.type!r}")
    if layout.is_main:
        log.info("%s: training on %s in %s", model_name, device, precision)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(model_name, system=system, cond_box=cond_box, config=model_config)
    if precision == "float64":
        model = model.double()
    model = model.to(device)
    spec = model.spec()
    is_mam = model.has_marginal
    N = system.n_sites
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    grid = DriftingGrid(
        cond_box=cond_box, n_T=cfg.n_T, n_field=cfg.n_field, step_frac=cfg.grid_step_frac, seed=cfg.seed + 1
    )
    C, S = grid.n_conditions, cfg.samples_per_condition
    S_rank = S // W  # samples per condition drawn by this process
    gen = torch.Generator(device=device).manual_seed(sampling_seed(cfg.seed, rank))
    buffer = GibbsBuffer(n_conditions=C, samples_per_condition=S_rank, n_sites=N) if is_mam else None
    sweeps = cfg.gibbs_sweeps
    block = cfg.gibbs_block if cfg.gibbs_block is not None else default_gibbs_block(system)
    if W > 1:
        log.info(
            "%s: rank %d of %d (local rank %d, %s on %s), %d samples per condition per rank",
            model_name, rank, W, layout.local_rank, layout.backend, device, S_rank,
        )  # fmt: skip

    step, wall_prev, rows = 0, 0.0, {}
    resume = checkpoint_path.exists()
    if W > 1:  # rank 0's view decides
        flag = [resume]
        dist.broadcast_object_list(flag, src=0)
        resume = flag[0]
    if resume:
        state = load_checkpoint(checkpoint_path, map_location=device)
        changed = _changed_settings(state, spec=spec, cond_box=cond_box, cfg=cfg)
        if restart_finished and state.get("finished") and changed:  # every rank sees the same state
            if layout.is_main:
                log.info("%s: %s holds a finished run with other %s; training afresh",
                         model_name, checkpoint_path, changed)  # fmt: skip
            resume = False
    if resume:
        _check_resume(state, spec=spec, system=system, cond_box=cond_box, cfg=cfg, path=checkpoint_path, world_size=W)
        model.load_state_dict(state["model_state"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        grid.load_state_dict(state["grid"])
        own = state["ranks"][rank] if W > 1 else {"rng": state["rng"], "buffer": state["buffer"]}
        _set_rng_state(own["rng"], gen)
        if is_mam:
            buffer.load_state_dict(own["buffer"], device=device)
        step, wall_prev, rows = int(state["step"]), float(state["wall_s"]), dict(state["log"])
        if layout.is_main:
            log.info("resuming %s from %s at step %d/%d", model_name, checkpoint_path, step, cfg.steps)
    if W > 1:  # every rank starts from rank 0's parameters
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)

    def rank_state() -> dict:
        return {"rng": _rng_state(gen), "buffer": buffer.state_dict() if is_mam else None}

    def snapshot(finished: bool, wall: float, ranks: list | None) -> dict:
        mine = rank_state() if ranks is None else ranks[0]
        return {
            "format": FORMAT,
            "model_spec": spec,
            "model_state": model.state_dict(),
            "system": system_record(system),
            "cond_box": [list(b) for b in cond_box],
            "train_config": asdict(cfg),
            "step": step,
            "finished": finished,
            "wall_s": wall,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": mine["rng"],
            "grid": grid.state_dict(),
            "buffer": mine["buffer"],
            "world_size": W,
            "ranks": ranks,
            "log": rows,
        }

    def save(finished: bool, wall: float) -> None:
        ranks = None
        if W > 1:  # a collective: every rank takes part
            ranks = [None] * W
            dist.all_gather_object(ranks, rank_state())
        if layout.is_main:
            save_checkpoint(snapshot(finished, wall, ranks), checkpoint_path)
            _write_log(rows, log_path)

    step_start = step
    t_call = time.perf_counter()
    t_log, n_since_log = t_call, 0
    stop_reason = "completed"
    # bf16: matrix products in bfloat16 under autocast (parameters, optimiser state, the reward's
    # log-softmax and energies stay float32/float64). On a CPU it runs the same code path as on a
    # GPU (for tests), usually slower than float32.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    bar = Progress(cfg.steps, f"train {model_name}", "steps", initial=step, enabled=progress and layout.is_main)
    params = [p for p in model.parameters() if p.requires_grad]
    budget_s = None if cfg.max_minutes is None else 60 * cfg.max_minutes
    over_budget = False  # W > 1: a rank voted to stop in the last all-reduce
    model.train()
    last: dict = {}
    while step < cfg.steps:
        if W == 1:
            over_budget = budget_s is not None and time.perf_counter() - t_call > budget_s
        if over_budget:
            stop_reason = "time_budget"
            break
        b_s = beta_scale(step, cfg)
        cond = grid.conditions().to(device)  # (C, 2)
        with autocast:
            if is_mam:
                if buffer.x is None or step % cfg.refill_every == 0:
                    x = buffer.refill(model, cond, generator=gen)
                else:
                    x = buffer.gibbs(model, cond, sweeps=sweeps, block=block, generator=gen)
                loss, st = mam_loss(
                    model,
                    system,
                    x,
                    cond,
                    lam=cfg.mam_lambda,
                    generator=gen,
                    beta_scale=b_s,
                    standardise=cfg.standardise,
                )
                terms = {"kl": st["kl"], "cons": st["cons"], "anchor": st["anchor"]}
            else:
                loss, st = reinforce_loss(
                    model,
                    system,
                    cond,
                    samples_per_condition=S_rank,
                    generator=gen,
                    beta_scale=b_s,
                    standardise=cfg.standardise,
                    grad_steps=cfg.ao_grad_steps,
                    steps_per_pass=cfg.steps_per_pass,
                    grad_chunk=cfg.grad_chunk,
                )
                terms = {"surrogate": loss.detach(), "reward": st["reward"].mean() / N}
        values = {"loss": loss.detach(), **terms}
        if W == 1:
            try:
                _check_finite(values, model_name=model_name, step=step, path=checkpoint_path)
            except TrainingDiverged:
                bar.close()
                raise
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if W > 1:
            vote = float(budget_s is not None and time.perf_counter() - t_call > budget_s)
            scalars = torch.stack([v.double().reshape(()) for v in values.values()] + [torch.tensor(vote).double()])
            means = _mean_over_ranks(params, scalars.to(device), W)
            values = dict(zip(values, means[:-1], strict=True))
            over_budget = bool(means[-1] > 0)
            try:
                _check_finite(
                    values, model_name=model_name, step=step, path=checkpoint_path, where=f" (mean over {W} ranks)"
                )
            except TrainingDiverged:
                bar.close()
                raise
        clip = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        if not torch.isfinite(grad_norm):
            bar.close()
            raise TrainingDiverged(
                f"{model_name}: gradient norm is {grad_norm.item()} at step {step + 1} "
                f"(steps completed: {step}); {_kept(checkpoint_path)}"
            )
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        grid.step()
        step += 1
        n_since_log += C * S
        bar.update(1)

        if step % cfg.log_every == 0 or step == cfg.steps:
            T_rows = st["cond"][:, 0]
            if W == 1:
                lw = _per_condition(st["log_w"].double(), C)  # (C, S)
            else:
                lw = _gather_conditions(st["log_w"].double(), C, W)  # (C, S): all ranks' samples
            T_c = _per_condition(T_rows, C)[:, 0].double()
            f_var_c = -system.k_B * T_c * lw.mean(1) / N  # (C,)
            lw_std = lw.std(1, correction=0)
            now = time.perf_counter()
            last = {
                "step": step,
                **{k: float(v) for k, v in values.items()},
                "f_var_mean": float(f_var_c.mean()),
                "f_var_max": float(f_var_c.max()),
                "f_var_source": "marginal" if is_mam else "log_q",
                "lw_std_mean": float(lw_std.mean()),
                "lw_std_max": float(lw_std.max()),
                "grad_norm": float(grad_norm),
                "lr": float(lr),
                "beta_scale": float(b_s),
                "wall_s": wall_prev + now - t_call,
                "samples_per_s": n_since_log / max(now - t_log, 1e-9),
            }
            for k, v in last.items():
                rows.setdefault(k, []).append(v)
            t_log, n_since_log = now, 0
            bar.set_postfix(
                loss=f"{last['loss']:.3g}", f_var=f"{last['f_var_mean']:.5g}", lw_std=f"{last['lw_std_mean']:.3g}"
            )
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            save(False, wall_prev + time.perf_counter() - t_call)
    bar.close()
    wall = wall_prev + time.perf_counter() - t_call
    if step > step_start:
        save(step >= cfg.steps, wall)
    elif layout.is_main:  # nothing left to train (a finished run asked again): its log all the same
        log.info("%s: %s already holds %d/%d steps; writing its log", model_name, checkpoint_path, step, cfg.steps)
        _write_log(rows, log_path)
    if W > 1:  # return once rank 0's files are written
        dist.barrier()
    elapsed = time.perf_counter() - t_call
    return {
        "model": model_name,
        "steps_done": step,
        "steps": cfg.steps,
        "finished": step >= cfg.steps,
        "stop_reason": stop_reason,
        "wall_s": wall,
        "wall_s_this_call": elapsed,
        "samples_per_s": (step - step_start) * C * S / max(elapsed, 1e-9),
        "last": last,
        "checkpoint_path": str(checkpoint_path),
        "log_path": None if log_path is None else str(log_path),
        "world_size": W,
    }


def train_process(system_name: str, size: str, options: Mapping, job_log_path: str | None = None) -> dict:
    """One training process, the picklable entry point for :func:`lattherm.distributed.launch`:
    ``train(make_system(system_name, size), **options)``.

    ``job_log_path``: this process also logs (and sends stderr) to that file, as a workflow job
    does (:func:`lattherm.runlog.job_log`), under the name ``train.rank<RANK>``.
    """
    system = make_system(system_name, size)
    if job_log_path is None:
        return train(system, **options)
    with job_log(job_log_path, f"train.rank{os.environ.get('RANK', '0')}"):
        return train(system, **options)
