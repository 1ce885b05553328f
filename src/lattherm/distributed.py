"""Multi-process (DDP) training support: the rank layout and a local launcher (DESIGN §7).

One process per GPU, the ``nccl`` backend on CUDA and ``gloo`` on CPU (so that a 2-rank run is
testable without a GPU). :func:`setup_distributed` reads the layout from the environment, in this
order:

1. **an initialised process group** (the caller set one up): used as it is;
2. **torchrun variables** (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
   ``MASTER_PORT``; also set by :func:`launch`): ``init_process_group("env://")``;
3. **a Slurm step or submitit job with several tasks** (``SLURM_NTASKS > 1`` with
   ``SLURM_PROCID``, e.g. ``srun --ntasks=4`` or a submitit job with ``tasks_per_node=4``; also
   submitit's local executor, ``SUBMITIT_LOCAL_NTASKS > 1``): submitit's
   ``helpers.TorchDistributedEnvironment().export()`` turns the job's variables into the torchrun
   ones (``MASTER_ADDR`` = the job's first node, ``MASTER_PORT`` from the job id unless set),
   then ``env://``. ``export`` is called with ``set_cuda_visible_devices=False``: its default
   rewrites ``CUDA_VISIBLE_DEVICES`` to the local rank, which hides every GPU when Slurm has
   already bound one GPU per task (``--gpus-per-task=1``: each task sees its GPU as device 0).
   The device is chosen below instead;
4. otherwise **a single process**, no process group (``world_size == 1``; a torchrun/Slurm
   layout of one process is treated the same way).

**Device.** One process: the requested device (``"auto"``: CUDA when available). Several ranks on
CUDA: ``cuda:LOCAL_RANK`` when the process sees at least as many GPUs as there are ranks on its
node (``--gpus=N``, ``torchrun``); ``cuda:0`` when it sees exactly one (one GPU bound per task);
anything else is an error that says what was visible. An explicit ``"cuda:k"`` with several ranks
is refused (each rank picks its own GPU).

:class:`RankLayout` also carries the run's collectives (mean of gradients, gathers, broadcasts,
barrier), which do nothing in a single process, so the training loop is the same code for one
process and for several.

A process group created here lives as long as the process (destroyed at exit), so a second
``train`` in the same process reuses it (case 1): destroying a group and creating another over the
same rendezvous store is not reliable (gloo may pair with the old group's stale addresses).
:func:`launch` runs ``fn(*args)`` in ``nproc`` local processes, as
``torchrun --standalone --nproc_per_node=N`` would, and returns rank 0's result.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import tempfile
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["RankLayout", "resolve_device", "setup_distributed", "launch"]


@dataclass(frozen=True)
class RankLayout:
    """Where this process sits in a (possibly single-process) run, and the collectives of the run.

    Every collective must be called by every rank in the same order; with one process each one
    returns at once and communicates nothing (no process group exists then)."""

    rank: int = 0  # global rank
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this node
    backend: str | None = None  # "nccl" or "gloo"; None: single process, no process group
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and logs."""
        return self.rank == 0

    def all_reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        """Replace ``tensors`` by their mean over the ranks: one all-reduce of a flat buffer in the
        first tensor's dtype and device (a sum divided by ``world_size``: ``ReduceOp.AVG`` is
        NCCL-only). The tensors must line up on every rank (same shapes in the same order)."""
        if self.world_size == 1 or not tensors:
            return
        dtype, device = tensors[0].dtype, tensors[0].device
        flat = torch.cat([t.reshape(-1).to(device=device, dtype=dtype) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def all_gather_conditions(self, x: torch.Tensor, n_conditions: int) -> torch.Tensor:
        """Every rank's condition-major ``(C·S_r,)`` values → ``(C, world_size·S_r)``: all samples
        of each condition, rank 0's first."""
        if self.world_size == 1:
            return x.view(n_conditions, -1)
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.stack([p.view(n_conditions, -1) for p in parts], 1).reshape(n_conditions, -1)

    def all_gather_object(self, obj: Any) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects)."""
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (picklable), on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite ``tensors`` in place with rank 0's values."""
        if self.world_size > 1:
            for t in tensors:
                dist.broadcast(t, src=0)

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.world_size > 1:
            dist.barrier()


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA if available, else CPU; any other string is checked and returned."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available")
    return dev


def _env_int(name: str, default: int | None = None) -> int | None:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def _rank_device(device: str, *, rank: int, world_size: int, local_rank: int, local_world_size: int) -> torch.device:
    dev = resolve_device(device)
    if dev.type != "cuda":
        return dev
    if dev.index is not None:
        raise ValueError(
            f"device {device!r} names one GPU, but this is rank {rank} of {world_size}: use 'cuda' or 'auto' "
            "(each rank takes the GPU of its local rank)"
        )
    visible = torch.cuda.device_count()
    if visible >= local_world_size:
        return torch.device("cuda", local_rank)
    if visible == 1:  # one GPU bound to this task (srun --gpus-per-task=1)
        return torch.device("cuda", 0)
    raise ValueError(
        f"rank {rank} (local rank {local_rank} of {local_world_size} on this node) sees {visible} GPUs "
        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
        "start one process per GPU: as many GPUs per node as tasks per node, or one GPU per task"
    )


def _multi_task_job() -> bool:
    """A Slurm step / submitit job with several tasks (case 3 of the module doc)."""
    if os.environ.get("SUBMITIT_EXECUTOR") == "local":
        return (_env_int("SUBMITIT_LOCAL_NTASKS", 1) or 1) > 1
    return (_env_int("SLURM_NTASKS", 1) or 1) > 1 and "SLURM_PROCID" in os.environ


def _export_submitit_layout() -> None:
    """torchrun variables from the Slurm/submitit job (submitit's TorchDistributedEnvironment)."""
    import submitit

    executor = os.environ.get("SUBMITIT_EXECUTOR")
    # submitit recognises a Slurm job by SUBMITIT_EXECUTOR, which a plain srun step lacks
    if executor is None:
        os.environ["SUBMITIT_EXECUTOR"] = "slurm"
    try:
        env = submitit.helpers.TorchDistributedEnvironment()
    finally:
        if executor is None:
            del os.environ["SUBMITIT_EXECUTOR"]
    # overwrite: MASTER_ADDR must be the job's first node; MASTER_PORT, if set, was read above
    env.export(set_cuda_visible_devices=False, overwrite=True)


def setup_distributed(device: str = "auto") -> RankLayout:
    """The rank layout of this process; initialises ``torch.distributed`` when needed (module doc).

    Args:
        device: the requested device (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:k"`` for one
            process); with several ranks on CUDA each rank takes its own GPU.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank)
        local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
        if world_size == 1:
            return RankLayout(device=resolve_device(device))
        dev = _rank_device(
            device, rank=rank, world_size=world_size, local_rank=local_rank, local_world_size=local_world_size
        )
        return RankLayout(rank, world_size, local_rank, str(dist.get_backend()), dev)

    if "RANK" not in os.environ and _multi_task_job():
        _export_submitit_layout()
    world_size = _env_int("WORLD_SIZE", 1)
    if "RANK" not in os.environ or world_size == 1:
        return RankLayout(device=resolve_device(device))

    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"RANK and WORLD_SIZE are set but {missing} are not: an incomplete torchrun layout")
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world_size} but this torch build has no torch.distributed")
    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK", rank)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
    dev = _rank_device(
        device, rank=rank, world_size=world_size, local_rank=local_rank, local_world_size=local_world_size
    )
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=rank,
        world_size=world_size,
        device_id=dev if dev.type == "cuda" else None,
    )
    atexit.register(_destroy_process_group)
    return RankLayout(rank, world_size, local_rank, backend, dev)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _run_rank(fn: Callable, errors_dir: str, *args):
    """Entry point of a launched process: ``fn(*args)``; on an exception, pickle it (with this
    rank's traceback as a note) for :func:`launch` to re-raise, then fail the process."""
    try:
        return fn(*args)
    except BaseException as err:
        rank = os.environ.get("RANK", "?")
        note = f"raised on rank {rank} of {os.environ.get('WORLD_SIZE', '?')}:\n{traceback.format_exc()}"
        with contextlib.suppress(Exception):
            err.add_note(note)
            with open(Path(errors_dir) / f"rank{rank}.pkl", "wb") as fh:
                pickle.dump(err, fh)
        raise


def _child_error(errors_dir: str, first_rank: int) -> BaseException | None:
    """The exception pickled by the rank that failed first (then by any other rank)."""
    files = sorted(Path(errors_dir).glob("rank*.pkl"), key=lambda p: (int(p.stem[4:]) != first_rank, int(p.stem[4:])))
    for path in files:
        with contextlib.suppress(Exception), open(path, "rb") as fh:
            return pickle.load(fh)
    return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def launch(nproc: int, fn: Callable[..., Any], *args, device: str = "auto") -> Any:
    """Run ``fn(*args)`` in ``nproc`` local processes (one per GPU) and return rank 0's result.

    ``nproc == 1`` calls ``fn(*args)`` in this process. Otherwise the processes are started as
    ``torchrun --standalone --nproc_per_node=nproc`` does (``elastic_launch``, a c10d rendezvous
    on a free localhost port, no restarts, ``spawn``): each gets ``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``, which :func:`setup_distributed` reads.
    ``fn`` and ``args`` must be picklable (a module-level function; pass names, not
    ``System`` objects). Each process gets ``OMP_NUM_THREADS`` = cores / ``nproc`` unless set.
    If a process fails the others are stopped and its exception is re-raised here, with the
    failing rank's traceback as a note.

    Args:
        device: the training device (as ``TrainConfig.device``), only to check that CUDA has
            ``nproc`` GPUs.
    """
    if isinstance(nproc, bool) or int(nproc) != nproc or nproc < 1:
        raise ValueError(f"nproc must be an integer >= 1, got {nproc!r}")
    nproc = int(nproc)
    if nproc == 1:
        return fn(*args)
    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is not None:
            raise ValueError(f"device {device!r} names one GPU; {nproc} processes need 'cuda' or 'auto'")
        visible = torch.cuda.device_count()
        if nproc > visible:
            raise ValueError(
                f"asked for {nproc} processes (one per GPU) but {visible} GPUs are visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
            )
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    set_threads = "OMP_NUM_THREADS" not in os.environ
    if set_threads:  # inherited by the spawned processes
        os.environ["OMP_NUM_THREADS"] = str(max(1, _cores() // nproc))
    try:
        with tempfile.TemporaryDirectory(prefix="lattherm-launch-") as tmp:
            errors = Path(tmp) / "errors"
            errors.mkdir()
            config = LaunchConfig(
                min_nodes=1,
                max_nodes=1,
                nproc_per_node=nproc,
                run_id=str(uuid.uuid4()),
                rdzv_backend="c10d",
                rdzv_endpoint="localhost:0",  # torchrun --standalone: a free port
                max_restarts=0,
                monitor_interval=0.1,
                start_method="spawn",
                logs_specs=DefaultLogsSpecs(log_dir=str(Path(tmp) / "logs")),
            )
            try:
                results = elastic_launch(config, _run_rank)(fn, str(errors), *args)
            except ChildFailedError as failure:
                err = _child_error(str(errors), failure.get_first_failure()[0])
                if err is not None:
                    raise err from None
                name = getattr(fn, "__name__", fn)
                raise RuntimeError(f"{nproc}-process launch of {name} failed:\n{failure}") from None
    finally:
        if set_threads:
            del os.environ["OMP_NUM_THREADS"]
    return results[0]
