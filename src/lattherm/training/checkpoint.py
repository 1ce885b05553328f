"""Self-describing checkpoints (DESIGN §6 ``checkpoint.pt``), loadable with ``weights_only=True``,
and the training state they hold (:class:`TrainState`: what is saved, restored and checked on resume).

A checkpoint is a plain dict of tensors, dicts, lists, str, int, float, bool and None::

    format        "lattherm-checkpoint-1"
    model_spec    model.spec(): {name, config (dict), cond_box}
    model_state   state_dict of the model
    system        {name, size, n_sites, params}      (params: Ising {J}; CuAu {eci})
    cond_box      [[T_min, T_max], [field_min, field_max]]
    train_config  dataclasses.asdict(TrainConfig)
    step, finished, wall_s
    optimizer, scheduler           state dicts
    rng           {train_generator, torch_cpu, torch_cuda (list), numpy, python}   (rank 0's)
    grid          DriftingGrid.state_dict()
    buffer        the objective's state_dict(): the MAM's GibbsBuffer, None for ARMs (rank 0's)
    world_size    number of training processes (1; absent in older checkpoints: 1)
    ranks         None for one process; else a list over ranks of {rng, buffer}, so that a run
                  resumed with the same number of processes continues every rank's stream
    log           {column: list} of the training log so far
    init_from     None, or the checkpoint whose weights the run started from (fine-tuning a
                  size-free model on another size, :func:`init_record`): {path, system, step,
                  digest} (absent in older checkpoints: None)

Written atomically (temporary file + rename), by rank 0 only.

**Resume** (:meth:`TrainState.resume`): a stored state continues only with the same model spec,
system, condition box, number of processes and TrainConfig apart from :data:`FREE_ON_RESUME`;
anything else is refused with what differs, except that ``restart_finished`` replaces a
*finished* run of other settings by a fresh training. A run started from another checkpoint's
weights continues only from the same weights (``init_from``: their digest, system and step; the
path may move).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lattherm.io import atomic_path, write_table
from lattherm.models import build_from_spec

__all__ = [
    "FORMAT", "FREE_ON_RESUME", "CheckpointError", "TrainState", "save_checkpoint", "load_checkpoint", "write_log",
    "system_record", "check_system", "load_model", "init_record",
]

log = logging.getLogger(__name__)

FORMAT = "lattherm-checkpoint-1"
#: TrainConfig keys that do not change the trajectory (may differ on resume)
FREE_ON_RESUME = ("max_minutes", "checkpoint_every", "log_every", "grad_chunk")


def system_record(system) -> dict:
    """``{name, size, n_sites, params}`` of a system (plain types only; ``params``: what besides
    the size defines it, e.g. Ising ``J``, CuAu ``eci``, a disorder instance)."""
    params = system.params() if hasattr(system, "params") else {}
    return {"name": system.name, "size": system.size, "n_sites": int(system.n_sites), "params": params}


def check_system(record: dict, system) -> None:
    """Fail fast when ``system`` is not the one a checkpoint was trained on."""
    mine = system_record(system)
    if mine != record:
        diff = sorted(k for k in set(mine) | set(record) if mine.get(k) != record.get(k))
        raise ValueError(
            f"checkpoint was trained on {record['name']} {record['size']} and differs from the given "
            f"system ({mine['name']} {mine['size']}) in {diff}"
        )


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    with atomic_path(Path(path), suffix=".pt") as tmp:
        torch.save(state, tmp)


class CheckpointError(ValueError):
    """A checkpoint file cannot be read (truncated, corrupt, tampered with, or not ours)."""


def load_checkpoint(path: str | os.PathLike, *, map_location="cpu") -> dict:
    """The state dict of a checkpoint, loaded with ``weights_only=True``; :class:`CheckpointError`
    naming the file for anything that is not a complete lattherm checkpoint."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated zip raises OSError/RuntimeError, a tampered one UnpicklingError
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "it may be truncated or corrupt: delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a lattherm checkpoint (format {FORMAT!r})")
    return state


def load_model(path: str | os.PathLike, *, system, device="cpu"):
    """The trained model of a checkpoint (eval mode, on ``device``), checked against ``system``."""
    state = load_checkpoint(path, map_location=device)
    check_system(state["system"], system)
    model = build_from_spec(state["model_spec"], system=system)
    if state["train_config"].get("precision") == "float64":
        model = model.double()
    model.load_state_dict(state["model_state"])
    return model.to(device).eval()


def write_log(rows: dict, path) -> None:
    """The training log ``{column: list}`` as a Parquet table at ``path`` (None: not written)."""
    if path is None:
        return
    write_table(pd.DataFrame(rows), path, required=())


# --------------------------------------------------------------------------- generators
def rng_state(gen: torch.Generator) -> dict:
    """The training generator's state, and the process-wide ones (saved for completeness)."""
    np_state = np.random.get_state()  # noqa: NPY002 (the global state, saved for completeness)
    return {
        "train_generator": gen.get_state(),
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": random.getstate(),
    }


def set_rng_state(state: dict, gen: torch.Generator) -> None:
    """Restore :func:`rng_state` into ``gen`` and the process-wide generators."""
    # generator states are CPU byte tensors (a checkpoint loaded onto a GPU moved them there)
    gen.set_state(state["train_generator"].cpu())
    torch.set_rng_state(state["torch_cpu"].cpu())
    if state["torch_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["torch_cuda"]])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))  # noqa: NPY002
    random.setstate(state["python"])


# --------------------------------------------------------------------------- resume checks
def _diff_keys(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _trajectory_configs(state: dict, cfg) -> tuple[dict, dict]:
    """``(asked, stored)`` TrainConfig keys that define the trajectory (all but ``FREE_ON_RESUME``)."""
    mine = {k: v for k, v in asdict(cfg).items() if k not in FREE_ON_RESUME}
    theirs = {k: v for k, v in state["train_config"].items() if k not in FREE_ON_RESUME}
    return mine, theirs


def weights_digest(model_state: dict) -> str:
    """A short SHA-256 of a state dict's tensors (names, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name in sorted(model_state):
        t = model_state[name].detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def init_record(path: str | os.PathLike, *, spec: dict, system) -> tuple[dict, dict]:
    """``(record, model_state)`` of the checkpoint at ``path`` whose weights start a fine-tuning
    run of the model ``spec`` on ``system``: the same architecture and config and condition box, a
    size-free model, the same system kind and parameters (any size). Raises ``ValueError`` naming
    the file and what differs."""
    state = load_checkpoint(path)
    src, mine = state["model_spec"], spec
    if src["name"] != mine["name"] or src["config"] != mine["config"]:
        raise ValueError(f"init_from {path} holds {src['name']} {src['config']}; this run trains {mine['name']} "
                         f"{mine['config']}: the architecture and its config must be the same")  # fmt: skip
    if src["cond_box"] != mine["cond_box"]:
        raise ValueError(f"init_from {path} was trained on cond_box {src['cond_box']}, this run on "
                         f"{mine['cond_box']}: they must be the same")  # fmt: skip
    from lattherm.models import is_size_free

    if not is_size_free(mine["name"]):
        raise ValueError(f"init_from {path}: {mine['name']} has weights tied to its box; only a size-free "
                         "architecture starts from weights trained on another size")  # fmt: skip
    rec, here = state["system"], system_record(system)
    if rec["name"] != here["name"] or rec["params"] != here["params"]:
        raise ValueError(f"init_from {path} was trained on {rec['name']} {rec['params']}, this run is on "
                         f"{here['name']} {here['params']}")  # fmt: skip
    record = {"path": str(path), "system": rec, "step": int(state["step"]),
              "digest": weights_digest(state["model_state"])}  # fmt: skip
    return record, state["model_state"]


def _same_init(a: dict | None, b: dict | None) -> bool:
    """Whether two :func:`init_record` s (or None) name the same weights, wherever the file lies."""

    def weights(r: dict | None) -> dict | None:
        return None if r is None else {k: v for k, v in r.items() if k != "path"}

    return weights(a) == weights(b)


def _changed_settings(state: dict, *, spec: dict, cond_box, cfg, init: dict | None = None,
                      grid: dict | None = None) -> list[str]:  # fmt: skip
    """What a stored state was trained with differently: ``model_spec``, ``cond_box``,
    ``init_from``, the grid's points (``grid``: this run's grid state, with ``points`` for
    TrainConfig grid "points"), TrainConfig keys."""
    changed = ["model_spec"] if state["model_spec"] != spec else []
    changed += ["cond_box"] if state["cond_box"] != [list(b) for b in cond_box] else []
    changed += [] if _same_init(state.get("init_from"), init) else ["init_from"]
    mine, theirs = (grid or {}).get("points"), (state.get("grid") or {}).get("points")
    if mine is not None and theirs is not None and not torch.equal(theirs.double().cpu(), mine.double().cpu()):
        changed.append("grid points")
    return changed + _diff_keys(*_trajectory_configs(state, cfg))


def _check_resume(state: dict, *, spec: dict, system, cond_box, cfg, path, world_size: int = 1,
                  init: dict | None = None) -> None:  # fmt: skip
    check_system(state["system"], system)
    if not _same_init(state.get("init_from"), init):
        raise ValueError(
            f"{path} started from the weights of {state.get('init_from')}, asked to start from {init}; "
            "delete it to start over"
        )
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


# --------------------------------------------------------------------------- the training state
@dataclass
class TrainState:
    """A training run in progress: the objects a checkpoint is taken from and restored into, and
    the counters of the run. ``objective`` has ``state_dict()`` / ``load_state_dict(state,
    device=)`` (the MAM's buffer; None for ARMs); ``layout`` is the run's
    :class:`~lattherm.distributed.RankLayout`, whose collectives :meth:`resume` and :meth:`save`
    call on every rank."""

    spec: dict  # model.spec()
    system: Any
    cond_box: Any
    cfg: Any  # TrainConfig
    layout: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    grid: Any  # DriftingGrid
    objective: Any
    generator: torch.Generator  # this rank's sampling generator
    step: int = 0  # steps completed
    wall_s: float = 0.0  # training time of the earlier calls
    log: dict = field(default_factory=dict)  # {column: list}
    init: dict | None = None  # init_record() of the weights the run started from (None: its seed's)

    def rank_state(self) -> dict:
        """This rank's own part of the state: its generators and the objective's state."""
        return {"rng": rng_state(self.generator), "buffer": self.objective.state_dict()}

    def checkpoint(self, ranks: list[dict], *, finished: bool, wall_s: float) -> dict:
        """The checkpoint dict (module doc) with every rank's :meth:`rank_state` ``ranks``."""
        return {
            "format": FORMAT,
            "model_spec": self.spec,
            "model_state": self.model.state_dict(),
            "system": system_record(self.system),
            "cond_box": [list(b) for b in self.cond_box],
            "train_config": asdict(self.cfg),
            "step": self.step,
            "finished": finished,
            "wall_s": wall_s,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": ranks[0]["rng"],
            "grid": self.grid.state_dict(),
            "buffer": ranks[0]["buffer"],
            "world_size": len(ranks),
            "ranks": ranks if len(ranks) > 1 else None,
            "log": self.log,
            "init_from": self.init,
        }

    def save(self, path: Path, log_path, *, finished: bool, wall_s: float) -> None:
        """Gather every rank's state (a collective); rank 0 writes the checkpoint and the log."""
        ranks = self.layout.all_gather_object(self.rank_state())
        if self.layout.is_main:
            save_checkpoint(self.checkpoint(ranks, finished=finished, wall_s=wall_s), path)
            write_log(self.log, log_path)

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint dict: weights, optimiser, schedule, grid, this rank's
        generators and objective state, counters and log."""
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.grid.load_state_dict(state["grid"])
        own = (state["ranks"] or [state])[self.layout.rank]  # one process: rng and buffer at the top
        set_rng_state(own["rng"], self.generator)
        self.objective.load_state_dict(own["buffer"], device=self.layout.device)
        self.step, self.wall_s, self.log = int(state["step"]), float(state["wall_s"]), dict(state["log"])

    def resume(self, path: Path, *, restart_finished: bool = False) -> bool:
        """Restore the checkpoint at ``path`` if there is one to continue (module doc; rank 0's
        view of whether it exists decides); False: start afresh. Raises ``ValueError`` naming what
        differs when the stored run cannot continue with these settings."""
        if not self.layout.broadcast_object(path.exists()):
            return False
        state = load_checkpoint(path, map_location=self.layout.device)
        changed = _changed_settings(state, spec=self.spec, cond_box=self.cond_box, cfg=self.cfg, init=self.init,
                                    grid=self.grid.state_dict())  # fmt: skip
        if restart_finished and state.get("finished") and changed:  # every rank sees the same state
            if self.layout.is_main:
                log.info("%s: %s holds a finished run with other %s; training afresh",
                         self.spec["name"], path, changed)  # fmt: skip
            return False
        _check_resume(state, spec=self.spec, system=self.system, cond_box=self.cond_box, cfg=self.cfg, path=path,
                      world_size=self.layout.world_size, init=self.init)  # fmt: skip
        self.restore(state)
        return True
