"""Training of every neural sampler: config, objectives, the loop, resume, log.

``train(system, model_name=..., model_config=..., train_config=..., cond_box=...,
checkpoint_path=..., log_path=...)`` trains one conditional model over ``cond_box`` and returns a
summary dict. :class:`TrainSpec` says the same in plain types; :func:`train_process` runs it (the
workflow's ``train`` rule and the ``lattherm`` command both do, in one process or in each of
several). AdamW, linear warm-up then cosine decay of the learning rate, global grad-norm
clipping, optional β-annealing (VAN: the reduced energy in the loss is scaled by ``β_s`` rising
linearly from ``beta0`` to 1 over the first ``beta_anneal_frac`` of the steps).

**Structure.** The model picks its **objective** (:func:`objective_for`, on ``has_marginal``):
:class:`Reinforce` for ARMs (``fo-arm-mlp``, ``ao-arm-mlp``; :mod:`~lattherm.training.reinforce`),
:class:`MAM` for MAMs (``mam-*``; the study's objective owns its Gibbs buffer and the refill/Gibbs schedule,
:mod:`~lattherm.training.mam`). ``objective.loss(cond, step, β_s)`` gives the loss of a step's
conditions with its terms for the log; ``state_dict()`` / ``load_state_dict()`` its own state.
:func:`_setup` builds the model, optimiser, schedule, grid, generator and objective into a
:class:`~lattherm.training.checkpoint.TrainState`, which saves, restores and checks itself on
resume (:mod:`~lattherm.training.checkpoint`). :func:`_loop` is one loop for one process and for
several: each step draws the conditions of the drifting ``n_T x n_field`` grid
(:class:`lattherm.conditions.DriftingGrid`; with ``grid: points``, ``n_T · n_field`` points of a
given grid, :class:`~lattherm.conditions.GridPoints`), computes the loss, backpropagates, averages over the ranks
(:class:`~lattherm.distributed.RankLayout`, whose collectives do nothing in one process), checks
that the loss and gradient are finite, clips, steps, logs and checkpoints.

**Checkpoints and resume.** Every ``checkpoint_every`` steps, on the wall-clock budget
(``max_minutes``) and at the end, the full state is written atomically
(:mod:`~lattherm.training.checkpoint`) and the log to ``log_path`` (Parquet). If the checkpoint
exists, training continues from it when it matches (same model spec, system, box, and train
config apart from ``max_minutes``, ``checkpoint_every``, ``log_every``, ``grad_chunk``), else
fails (``restart_finished``: a finished run of other settings is replaced by a fresh one). A
resumed run continues the same trajectory: every random draw comes from generators stored in the
checkpoint. The budget is checked once per step, after its backward pass (the vote rides in the
all-reduce): a spent budget stops the run after that step, with a checkpoint.

**Divergence.** A non-finite loss term or gradient norm raises :class:`TrainingDiverged` naming the
step and the term and whether a checkpoint exists; nothing is written, so the last good checkpoint
stays untouched.

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
* Gradients are averaged by a **manual all-reduce** of one flat buffer
  (:meth:`~lattherm.distributed.RankLayout.all_reduce_mean`) after ``backward`` and before
  clipping (not ``DistributedDataParallel``: the losses call ``heads``, ``conditional_logits``
  and the samplers, not ``forward``). The loss terms and each rank's time-budget vote ride in the
  same buffer, so the NaN check and the budget stop are decided identically on every rank.
  Initial parameters are broadcast from rank 0.
* Log rows use the full batch: ``log_w`` is all-gathered on log steps (``f_var_*``,
  ``lw_std_*`` over all ``samples_per_condition`` samples of each condition); ``loss`` and its
  terms are the mean over ranks (in the gradients' dtype); ``grad_norm`` is that of the averaged
  gradient; ``samples_per_s`` counts all ranks.
* Only rank 0 writes the checkpoint and the log and shows the progress bar. The checkpoint records
  ``world_size`` and every rank's generator states and (MAMs) Gibbs buffer (``ranks``), so a
  resumed run with the same number of processes continues the same trajectory; another number of
  processes is refused. With one process every collective returns at once (nothing is
  communicated): the same loop runs.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from lattherm.conditions import DriftingGrid, GridPoints, check_cond_box
from lattherm.distributed import RankLayout, resolve_device, setup_distributed
from lattherm.models import build_model
from lattherm.runlog import Progress, job_log
from lattherm.schema import check
from lattherm.seeds import sampling_seed
from lattherm.systems import make_system
from lattherm.training.checkpoint import TrainState, init_record, write_log
from lattherm.training.mam import GibbsBuffer, default_gibbs_block, distill_loss, mam_loss
from lattherm.training.reinforce import reinforce_loss

__all__ = [
    "TrainConfig",
    "TrainSpec",
    "TrainingDiverged",
    "Reinforce",
    "MAM",
    "objective_for",
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
    grid: str = "drift"  # "drift": the drifting grid; "points": n_T · n_field points of the evaluation grid per step
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
    mam_objective: str = "study"  # MAM: "study" (marginal surrogate, Gibbs buffer) or "distill" (training.mam)
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


@dataclass(frozen=True)
class TrainSpec:
    """One training in plain, picklable types: what the workflow's ``train`` rule and the
    ``lattherm`` command run (:func:`train_process`, in one process or in each of several)."""

    system: str  # system name (lattherm.systems)
    size: str  # size token: Ising "LxL", CuAu cell "n1xn2xn3"
    model: str  # model name
    model_config: dict  # the model's config keys
    train_config: dict  # TrainConfig keys
    cond_box: tuple  # ((T_min, T_max), (field_min, field_max))
    checkpoint_path: str
    log_path: str | None = None
    progress: bool = True  # progress lines (rank 0)
    restart_finished: bool = False  # a finished run of other settings at checkpoint_path: train afresh
    init_from: str | None = None  # a checkpoint of the same size-free model (any size) to start from
    grid_points: tuple | None = None  # (T values, field values) for TrainConfig.grid "points"


# --------------------------------------------------------------------------- objectives
# They call reinforce_loss / mam_loss by this module's names: tests (here and in test_devices.py)
# stop or spy on a run by replacing lattherm.training.trainer.reinforce_loss / mam_loss.
class Reinforce:
    """The ARMs' objective (``fo-arm-mlp``, ``ao-arm-mlp``): REINFORCE on fresh samples from this
    rank's generator at every step (:func:`~lattherm.training.reinforce.reinforce_loss`). No state."""

    f_var_source = "log_q"  # the logged f_var comes from the exact log q

    def __init__(self, model, system, cfg: TrainConfig, *, n_conditions: int, samples_per_condition: int,
                 generator: torch.Generator) -> None:  # fmt: skip
        self.model, self.system, self.cfg = model, system, cfg
        self.S, self.generator = samples_per_condition, generator

    def loss(self, cond: Tensor, step: int, beta_scale: float) -> tuple[Tensor, dict, Tensor]:
        """``(loss, terms, log_w)`` of step ``step`` at the conditions ``cond`` (C, 2): the loss to
        differentiate, its detached terms for the log and the ``(C·S,)`` log-weights of this
        rank's samples (condition-major)."""
        cfg = self.cfg
        loss, st = reinforce_loss(self.model, self.system, cond, samples_per_condition=self.S,
                                  generator=self.generator, beta_scale=beta_scale, standardise=cfg.standardise,
                                  grad_steps=cfg.ao_grad_steps, steps_per_pass=cfg.steps_per_pass,
                                  grad_chunk=cfg.grad_chunk)  # fmt: skip
        return loss, {"surrogate": loss.detach(), "reward": st["reward"].mean() / self.system.n_sites}, st["log_w"]

    def state_dict(self) -> None:
        return None

    def load_state_dict(self, state: None, *, device) -> None:
        pass


class MAM:
    """The MAMs' objective (``mam-*``): :func:`~lattherm.training.mam.mam_loss` on a persistent
    :class:`~lattherm.training.mam.GibbsBuffer` of this rank's samples, refilled by ancestral
    sampling at the first step and every ``refill_every`` steps, else moved by ``gibbs_sweeps``
    block-Gibbs moves of ``gibbs_block`` sites. Its state is the buffer. With ``mam_objective:
    distill``, :func:`~lattherm.training.mam.distill_loss` on fresh samples instead (no buffer)."""

    f_var_source = "marginal"  # the logged f_var comes from the marginal surrogate (not an F)

    def __init__(self, model, system, cfg: TrainConfig, *, n_conditions: int, samples_per_condition: int,
                 generator: torch.Generator) -> None:  # fmt: skip
        self.model, self.system, self.cfg, self.generator = model, system, cfg, generator
        self.S = samples_per_condition
        if cfg.mam_objective == "distill":
            self.f_var_source = "log_q"  # the distilled objective samples afresh: f_var from the exact log q
        self.buffer = GibbsBuffer(n_conditions=n_conditions, samples_per_condition=samples_per_condition,
                                  n_sites=system.n_sites)  # fmt: skip
        self.block = cfg.gibbs_block if cfg.gibbs_block is not None else default_gibbs_block(system)

    def loss(self, cond: Tensor, step: int, beta_scale: float) -> tuple[Tensor, dict, Tensor]:
        """As :meth:`Reinforce.loss`, on the buffer after this step's refill or Gibbs moves."""
        cfg, buffer, gen = self.cfg, self.buffer, self.generator
        if cfg.mam_objective == "distill":
            loss, st = distill_loss(self.model, self.system, cond, samples_per_condition=self.S,
                                    lam=cfg.mam_lambda, grad_steps=cfg.ao_grad_steps, generator=gen,
                                    beta_scale=beta_scale, standardise=cfg.standardise,
                                    grad_chunk=cfg.grad_chunk)  # fmt: skip
            return loss, {k: st[k] for k in ("surrogate", "dist", "cons", "anchor")}, st["log_w"]
        if buffer.x is None or step % cfg.refill_every == 0:
            x = buffer.refill(self.model, cond, generator=gen)
        else:
            x = buffer.gibbs(self.model, cond, sweeps=cfg.gibbs_sweeps, block=self.block, generator=gen)
        loss, st = mam_loss(self.model, self.system, x, cond, lam=cfg.mam_lambda, generator=gen,
                            beta_scale=beta_scale, standardise=cfg.standardise)  # fmt: skip
        return loss, {k: st[k] for k in ("kl", "cons", "anchor")}, st["log_w"]

    def state_dict(self) -> dict:
        return self.buffer.state_dict()

    def load_state_dict(self, state: dict, *, device) -> None:
        self.buffer.load_state_dict(state, device=device)


def objective_for(model, system, cfg: TrainConfig, **kwargs) -> Reinforce | MAM:
    """The objective of ``model``: :class:`MAM` when it has a marginal head that is a surrogate,
    else :class:`Reinforce` (an exact marginal is its ``log q``)."""
    return (MAM if model.has_marginal and not model.exact_marginal else Reinforce)(model, system, cfg, **kwargs)


# --------------------------------------------------------------------------- the loop
def _kept(path: Path) -> str:
    """What is left on disk when a run stops on an error."""
    return f"last good checkpoint kept at {path}" if path.exists() else "no checkpoint was written"


def _check_finite(values: Mapping[str, Tensor], grad_norm: Tensor, *, model_name: str, step: int, path: Path,
                  world_size: int) -> None:  # fmt: skip
    """:class:`TrainingDiverged` on a non-finite loss term (the mean over the ranks) or gradient norm."""
    where = f" (mean over {world_size} ranks)" if world_size > 1 else ""
    done = f"at step {step + 1} (steps completed: {step}); {_kept(path)}"
    for name, v in values.items():
        if not torch.isfinite(v).all():
            raise TrainingDiverged(f"{model_name}: loss term {name!r} is {v.item()}{where} {done}")
    if not torch.isfinite(grad_norm):
        raise TrainingDiverged(f"{model_name}: gradient norm is {grad_norm.item()} {done}")


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
    init_from: str | os.PathLike | None = None,
    grid_points=None,
) -> dict:
    """Train ``model_name`` on ``system`` over ``cond_box``; resume from ``checkpoint_path``.

    ``init_from``: start from the weights of that checkpoint instead of the seed's initialisation
    (fine-tuning: the same size-free architecture, config, box and system kind, trained on any
    size, e.g. 8x8 weights trained further on 16x16); the optimiser, schedule and grid start
    afresh. The checkpoint records which weights (``init_from``) and a resume asks for the same.
    ``grid_points``: ``(T values, field values)`` of the grid whose points ``TrainConfig.grid =
    "points"`` trains at (:class:`~lattherm.conditions.GridPoints`).

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
        init_from=init_from,
        grid_points=grid_points,
    )


def _setup(system, layout: RankLayout, *, model_name, model_config, cfg: TrainConfig, cond_box,
           precision: str, grid_points=None) -> TrainState:  # fmt: skip
    """Step 0 of a run on this rank: the model (initialised from ``cfg.seed``, in ``precision``,
    on the rank's device), AdamW and its schedule, the grid, the rank's generator and objective."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(model_name, system=system, cond_box=cond_box, config=model_config)
    if precision == "float64":
        model = model.double()
    model = model.to(layout.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    if cfg.grid == "points":
        if grid_points is None:
            raise ValueError("TrainConfig.grid = 'points' trains at the points of a grid: pass its (T values, "
                             "field values) as grid_points (`lattherm train` passes the system's grid)")  # fmt: skip
        grid = GridPoints(cond_box=cond_box, T_values=grid_points[0], field_values=grid_points[1],
                          n=cfg.n_T * cfg.n_field, seed=cfg.seed + 1)  # fmt: skip
    else:
        grid = DriftingGrid(
            cond_box=cond_box, n_T=cfg.n_T, n_field=cfg.n_field, step_frac=cfg.grid_step_frac, seed=cfg.seed + 1
        )
    gen = torch.Generator(device=layout.device).manual_seed(sampling_seed(cfg.seed, layout.rank))
    S_rank = cfg.samples_per_condition // layout.world_size  # samples per condition drawn by this process
    objective = objective_for(model, system, cfg, n_conditions=grid.n_conditions, samples_per_condition=S_rank,
                              generator=gen)  # fmt: skip
    if layout.world_size > 1:
        log.info(
            "%s: rank %d of %d (local rank %d, %s on %s), %d samples per condition per rank",
            model_name, layout.rank, layout.world_size, layout.local_rank, layout.backend, layout.device, S_rank,
        )  # fmt: skip
    return TrainState(spec=model.spec(), system=system, cond_box=cond_box, cfg=cfg, layout=layout, model=model,
                      optimizer=opt, scheduler=sched, grid=grid, objective=objective, generator=gen)  # fmt: skip


def _train(system, *, layout: RankLayout, model_name, model_config, cfg: TrainConfig, cond_box, checkpoint_path,
           log_path, progress, restart_finished=False, init_from=None, grid_points=None) -> dict:  # fmt: skip
    check_train_config(cfg, world_size=layout.world_size)
    device = layout.device
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if device.type == "cuda" else "float32")
    if precision == "bf16" and device.type not in ("cuda", "cpu"):
        raise ValueError(f"precision 'bf16' autocasts on CUDA or CPU devices, not {device.type!r}")
    if layout.is_main:
        log.info("%s: training on %s in %s", model_name, device, precision)
    run = _setup(system, layout, model_name=model_name, model_config=model_config, cfg=cfg, cond_box=cond_box,
                 precision=precision, grid_points=grid_points)  # fmt: skip
    init_state = None
    if init_from is not None:
        run.init, init_state = init_record(init_from, spec=run.spec, system=system)
    if run.resume(checkpoint_path, restart_finished=restart_finished):
        if layout.is_main:
            log.info("resuming %s from %s at step %d/%d", model_name, checkpoint_path, run.step, cfg.steps)
    elif init_state is not None:
        run.model.load_state_dict(init_state)
        if layout.is_main:
            log.info("%s: starting from the weights of %s (%s, step %d)", model_name, init_from,
                     run.init["system"]["size"], run.init["step"])  # fmt: skip
    layout.broadcast([t.data for t in (*run.model.parameters(), *run.model.buffers())])  # rank 0's parameters
    step_start, t_call = run.step, time.perf_counter()
    last = _loop(run, model_name=model_name, precision=precision, t_call=t_call, checkpoint_path=checkpoint_path,
                 log_path=log_path, progress=progress)  # fmt: skip
    wall = run.wall_s + time.perf_counter() - t_call
    if run.step > step_start:
        run.save(checkpoint_path, log_path, finished=run.step >= cfg.steps, wall_s=wall)
    elif layout.is_main:  # nothing left to train (a finished run asked again): its log all the same
        log.info("%s: %s already holds %d/%d steps; writing its log", model_name, checkpoint_path, run.step, cfg.steps)
        write_log(run.log, log_path)
    layout.barrier()  # return once rank 0's files are written
    elapsed = time.perf_counter() - t_call
    n_samples = (run.step - step_start) * run.grid.n_conditions * cfg.samples_per_condition  # all ranks'
    return {
        "model": model_name,
        "steps_done": run.step,
        "steps": cfg.steps,
        "finished": run.step >= cfg.steps,
        "stop_reason": "completed" if run.step >= cfg.steps else "time_budget",  # else a spent budget
        "wall_s": wall,
        "wall_s_this_call": elapsed,
        "samples_per_s": n_samples / max(elapsed, 1e-9),
        "last": last,
        "checkpoint_path": str(checkpoint_path),
        "log_path": None if log_path is None else str(log_path),
        "world_size": layout.world_size,
    }


def _loop(run: TrainState, *, model_name: str, precision: str, t_call: float, checkpoint_path: Path, log_path,
          progress: bool) -> dict:  # fmt: skip
    """Train ``run`` from its step to ``steps``, or until a rank votes that the time budget of this
    call (started at ``t_call``) is spent; checkpoints on the way. Returns the last log row."""
    cfg, layout, model, grid, opt = run.cfg, run.layout, run.model, run.grid, run.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    clip = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
    budget_s = None if cfg.max_minutes is None else 60 * cfg.max_minutes
    # bf16: matrix products in bfloat16 under autocast (parameters, optimiser state, the reward's
    # log-softmax and energies stay float32/float64). On a CPU it runs the same code path as on a
    # GPU (for tests), usually slower than float32.
    autocast = torch.autocast(layout.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    step_logged, t_log = run.step, t_call
    over_budget, last = False, {}  # over_budget: a rank voted to stop in the last all-reduce
    model.train()
    with Progress(cfg.steps, f"train {model_name}", "steps", initial=run.step,
                  enabled=progress and layout.is_main) as bar:  # fmt: skip
        while run.step < cfg.steps and not over_budget:
            b_s, cond = beta_scale(run.step, cfg), grid.conditions().to(layout.device)  # (C, 2)
            with autocast:
                loss, terms, log_w = run.objective.loss(cond, run.step, b_s)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            values = {"loss": loss.detach(), **terms}
            vote = budget_s is not None and time.perf_counter() - t_call > budget_s
            scalars = torch.stack([v.double().reshape(()) for v in values.values()]
                                  + [torch.tensor(float(vote), dtype=torch.float64, device=loss.device)])  # fmt: skip
            layout.all_reduce_mean([p.grad for p in params if p.grad is not None] + [scalars])  # one flat buffer
            values, over_budget = dict(zip(values, scalars[:-1], strict=True)), bool(scalars[-1] > 0)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            _check_finite(values, grad_norm, model_name=model_name, step=run.step, path=checkpoint_path,
                          world_size=layout.world_size)  # fmt: skip
            lr = opt.param_groups[0]["lr"]
            opt.step()
            run.scheduler.step()
            grid.step()
            run.step += 1
            bar.update(1)
            if run.step % cfg.log_every == 0 or run.step == cfg.steps:
                lw = layout.all_gather_conditions(log_w.double(), len(cond))  # (C, S): every rank's samples
                now, n_samples = time.perf_counter(), (run.step - step_logged) * lw.numel()  # all ranks'
                last = _log_row(run, values, lw, cond, grad_norm=grad_norm, lr=lr, beta_scale=b_s,
                                wall_s=run.wall_s + now - t_call,
                                samples_per_s=n_samples / max(now - t_log, 1e-9))  # fmt: skip
                t_log, step_logged = now, run.step
                bar.set_postfix(loss=f"{last['loss']:.3g}", f_var=f"{last['f_var_mean']:.5g}",
                                lw_std=f"{last['lw_std_mean']:.3g}")  # fmt: skip
            if run.step % cfg.checkpoint_every == 0 and run.step < cfg.steps:
                run.save(checkpoint_path, log_path, finished=False, wall_s=run.wall_s + time.perf_counter() - t_call)
    return last


def _log_row(run: TrainState, values: dict, lw: Tensor, cond: Tensor, **columns) -> dict:
    """One log row, appended to ``run.log``: the loss terms, the per-condition ``f_var`` and
    ``log w`` spread of ``lw`` (C, S) at ``cond`` (C, 2), and ``columns``."""
    f_var_c = -run.system.k_B * cond[:, 0].double() * lw.mean(1) / run.system.n_sites  # (C,)
    lw_std = lw.std(1, correction=0)
    row = {
        "step": run.step,
        **{k: float(v) for k, v in values.items()},
        "f_var_mean": float(f_var_c.mean()),
        "f_var_max": float(f_var_c.max()),
        "f_var_source": run.objective.f_var_source,
        "lw_std_mean": float(lw_std.mean()),
        "lw_std_max": float(lw_std.max()),
        **{k: float(v) for k, v in columns.items()},
    }
    for k, v in row.items():
        run.log.setdefault(k, []).append(v)
    return row


def train_process(spec: TrainSpec, job_log_path: str | None = None) -> dict:
    """One training process, the picklable entry point for :func:`lattherm.distributed.launch`:
    :func:`train` of ``spec`` on ``make_system(spec.system, spec.size)``.

    ``job_log_path``: this process also logs (and sends stderr) to that file, as a workflow job
    does (:func:`lattherm.runlog.job_log`), under the name ``train.rank<RANK>``.
    """
    system = make_system(spec.system, spec.size)
    logs = nullcontext() if job_log_path is None else job_log(job_log_path, f"train.rank{os.environ.get('RANK', '0')}")
    with logs:
        return train(system, model_name=spec.model, model_config=spec.model_config, train_config=spec.train_config,
                     cond_box=spec.cond_box, checkpoint_path=spec.checkpoint_path, log_path=spec.log_path,
                     progress=spec.progress, restart_finished=spec.restart_finished,
                     init_from=spec.init_from, grid_points=spec.grid_points)  # fmt: skip
