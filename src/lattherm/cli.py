"""The ``lattherm`` command: train one model outside Snakemake, here or as a (Slurm) job.

::

    lattherm train  --system ising --size 8x8 --model fo-arm-mlp --config config/config.yaml --out DIR [--nproc N]
    lattherm submit --system ising --size 10x10 --model mam-transformer --config config/paper.yaml --out DIR \\
        --executor slurm --account m1234 --qos regular --constraint gpu --gpus 4 --time-min 720 \\
        [--sweep lr=1e-3,3e-4]

Both take the model and training settings of ``(system, model)`` from a workflow config the way
the ``train`` rule does (:func:`lattherm.config.train_settings` with the ``per_model``
overrides, :func:`lattherm.config.cond_box`, ``models.<model>``, and the job seed
that the train rule derives from the config seed); ``--set KEY=VALUE``
overrides a ``TrainConfig`` key. The result is a :class:`lattherm.training.TrainSpec`, the
same typed spec the workflow's ``train`` script runs. Outputs: ``DIR/checkpoint.pt``
(self-describing; running the same command again resumes it) and ``DIR/train_log.parquet``.

``train`` runs in this shell: one process, or ``--nproc N`` local DDP processes
(:func:`lattherm.distributed.launch`; one per GPU on CUDA, ``gloo`` on CPU).

``submit`` sends the same training to submitit (``--executor slurm``, ``local`` or ``debug``) as
a **checkpointable** job (:class:`TrainJob`): when Slurm pre-empts it or its time limit nears,
submitit calls :meth:`TrainJob.checkpoint`, requeues the job, and the new run resumes from the
last checkpoint in ``DIR`` (written every ``checkpoint_every`` steps), up to ``--max-requeues``
times. The config's ``max_minutes`` is dropped for submitted jobs (the job's ``--time-min`` and
the requeue take its place) unless ``--set max_minutes=...`` is given. Each task of the job is
one DDP rank (``--tasks-per-node``, default one per GPU; the layout comes from Slurm through
:func:`lattherm.distributed.setup_distributed`). ``--sweep KEY=V1,V2`` submits one job per value
(several ``--sweep``: every combination) as one job array, each job in ``DIR/KEY=V``. The
command prints the job ids, the output folders and submitit's log files (``--folder``, default
``DIR/submitit``); ``--wait`` waits for the jobs and fails if one does.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from lattherm.training import TrainSpec, train_process

__all__ = ["main", "TrainSpec", "TrainJob", "build_parser"]


def out_folder(spec: TrainSpec) -> Path:
    """The output folder of a command's training: it holds ``checkpoint.pt`` and ``train_log.parquet``."""
    return Path(spec.checkpoint_path).parent


class TrainJob:
    """A submitit callable: one training; every task of the job is a DDP rank. Checkpointable."""

    def __init__(self, spec: TrainSpec) -> None:
        self.spec = spec

    def __call__(self) -> dict:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and "OMP_NUM_THREADS" not in os.environ:
            import torch

            torch.set_num_threads(int(cpus))
        if _job_rank() != 0:  # task 0 holds the output folder's lock
            return train_process(self.spec)
        with out_lock(out_folder(self.spec)):
            return train_process(self.spec)

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on pre-emption or timeout: resubmit the same training, which resumes
        from the last checkpoint in the output folder (the state lives there, not in this object)."""
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.spec))

    def __repr__(self) -> str:
        s = self.spec
        return f"TrainJob({s.system} {s.size} {s.model} -> {out_folder(s)})"


def _job_rank() -> int:
    """The task's rank in a submitit job (0 when called outside one)."""
    import submitit

    try:
        return int(submitit.JobEnvironment().global_rank)
    except RuntimeError:  # not inside a submitit job (called directly)
        return 0


# --------------------------------------------------------------------------- settings
class CliError(ValueError):
    """A wrong command line or config; printed without a traceback."""


def parse_value(text: str):
    """A command-line value: int, float, true/false, none/null, else the string."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    low = text.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    return text


def _key_value(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise CliError(f"{option} expects KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def load_config(path: str) -> dict:
    """A workflow config file, read strictly and checked as the Snakefile does
    (:func:`lattherm.config.read_config_file`, :func:`lattherm.config.load_config`)."""
    from lattherm.config import load_config as checked
    from lattherm.config import read_config_file

    return checked(read_config_file(path))


def train_spec(args: argparse.Namespace, *, config: Mapping, overrides: Mapping, out: str, progress: bool) -> TrainSpec:
    """The training of ``args.system/size/model`` as the workflow's ``train`` rule sets it up,
    into the folder ``out`` (``checkpoint.pt``, ``train_log.parquet``)."""
    from lattherm.config import cond_box, finetune_from, grid_at, model_settings, train_settings

    if args.system not in config.get("systems", {}):
        raise CliError(f"{args.config} has no systems.{args.system} block (it has {sorted(config['systems'])})")
    size0 = finetune_from(config, args.system, args.size, args.model)
    if size0 is not None and getattr(args, "init_from", None) is None:  # its settings continue a trained model
        raise CliError(f"{args.config} trains {args.model} on {args.system} {args.size} as a fine-tuning stage "
                       f"(scaling.{args.system}.finetune.{args.size}): pass --init-from with its {size0} checkpoint")
    settings = train_settings(config, args.system, args.model, args.size)  # as the train rule's
    settings.update(overrides)
    return TrainSpec(
        system=args.system,
        size=args.size,
        model=args.model,
        model_config=model_settings(config, args.system, args.model),
        train_config=settings,
        cond_box=cond_box(config, args.system),
        checkpoint_path=str(Path(out).resolve() / "checkpoint.pt"),
        log_path=str(Path(out).resolve() / "train_log.parquet"),
        progress=progress,
        init_from=None if getattr(args, "init_from", None) is None else str(Path(args.init_from).resolve()),
        grid_points=tuple(v.tolist() for v in grid_at(config, args.system, args.size)),
    )


def _check_spec(spec: TrainSpec, world_size: int) -> None:
    from lattherm.systems import make_system
    from lattherm.training import check_train_config, train_config_from_dict

    system = make_system(spec.system, spec.size)  # a wrong size token fails here
    check_train_config(train_config_from_dict(spec.train_config), world_size=world_size)
    if spec.init_from is not None:  # the weights to start from fit this run, before any work
        from lattherm.models import build_model
        from lattherm.training.checkpoint import init_record

        model = build_model(spec.model, system=system, cond_box=spec.cond_box, config=spec.model_config)
        try:
            init_record(spec.init_from, spec=model.spec(), system=system)
        except (OSError, ValueError) as err:
            raise CliError(f"--init-from: {err}") from None


def _overrides(pairs: Sequence[str], option: str = "--set") -> dict:
    """``KEY=VALUE`` pairs as TrainConfig keys, each checked against the config schema."""
    from lattherm.schema import ConfigError, check

    values = {k: parse_value(v) for k, v in (_key_value(p, option) for p in pairs)}
    try:
        check(values, "trainLeaf", key=option)
    except ConfigError as err:
        raise CliError(str(err).replace("config key ", "", 1)) from None
    return values


@contextmanager
def out_lock(out: str | os.PathLike):
    """Hold an exclusive lock on the output folder ``out`` (created if needed) while training into
    it: a second run into the same folder is refused instead of interleaving checkpoints."""
    import fcntl

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fh = open(out / ".lattherm.lock", "a+")  # noqa: SIM115 (held for the block)
    except OSError as err:
        raise CliError(f"cannot write to the output folder {out}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise CliError(f"{out} is in use by another training ({holder}); wait or use another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def _sweep(pairs: Sequence[str]) -> list[tuple[str, dict]]:
    """``[(label, {key: value})]``: every combination of the ``--sweep KEY=V1,V2`` values."""
    axes = []
    for pair in pairs:
        key, values = _key_value(pair, "--sweep")
        texts = [v.strip() for v in values.split(",") if v.strip()]
        if not texts:
            raise CliError(f"--sweep {pair!r} has no values")
        axes.append([(f"{key}={t}", key, parse_value(t)) for t in texts])
    points = []
    for combo in itertools.product(*axes):
        points.append(("+".join(lbl for lbl, _, _ in combo), {k: v for _, k, v in combo}))
    return points


# --------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from lattherm.distributed import launch

    config = load_config(args.config)
    spec = train_spec(args, config=config, overrides=_overrides(args.set), out=args.out, progress=not args.quiet)
    _check_spec(spec, args.nproc)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = out_folder(spec)
    with out_lock(out):
        print(f"training {spec.system} {spec.size} {spec.model} on {args.nproc} process(es) -> {out}", flush=True)
        summary = launch(args.nproc, train_process, spec, device=str(spec.train_config.get("device", "auto")))
    state = "finished" if summary["finished"] else f"stopped ({summary['stop_reason']})"
    print(
        f"{state}: {summary['steps_done']}/{summary['steps']} steps, {summary['wall_s']:.1f} s of training; "
        f"checkpoint {spec.checkpoint_path}, log {spec.log_path}"
    )
    return 0


def make_executor(args: argparse.Namespace, folder: Path):
    """A submitit ``AutoExecutor`` with the command line's resources."""
    import submitit

    executor = submitit.AutoExecutor(
        folder=folder,
        cluster=args.executor,
        slurm_max_num_timeout=args.max_requeues,
        local_max_num_timeout=args.max_requeues,
    )
    params = {
        "name": args.name,
        "timeout_min": args.time_min,
        "nodes": 1,
        "tasks_per_node": args.tasks_per_node,
        "cpus_per_task": args.cpus_per_task,
        "gpus_per_node": args.gpus or None,
        "mem_gb": args.mem_gb,
        "slurm_account": args.account,
        "slurm_qos": args.qos,
        "slurm_constraint": args.constraint,
    }
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def cmd_submit(args: argparse.Namespace) -> int:
    if args.tasks_per_node is None:
        args.tasks_per_node = max(1, args.gpus)
    if args.gpus and args.tasks_per_node != args.gpus:
        raise CliError(
            f"one DDP rank per GPU: --tasks-per-node ({args.tasks_per_node}) must equal --gpus ({args.gpus})"
        )
    if args.executor == "debug":
        if args.tasks_per_node > 1:
            raise CliError("the debug executor runs one task in this process: use --executor local for several tasks")
        args.wait = True  # a debug job runs (in this process) when its result is asked for
    config = load_config(args.config)
    overrides = _overrides(args.set)
    overrides.setdefault("max_minutes", None)  # the job's time limit and the requeue take its place
    out = Path(args.out)
    points = _sweep(args.sweep) if args.sweep else [("", {})]
    specs = []
    for label, values in points:
        bad = [k for k in values if k in overrides and k != "max_minutes"]
        if bad:
            raise CliError(f"{bad} both swept and set with --set")
        over = {**overrides, **values}
        specs.append(train_spec(args, config=config, overrides=over, out=str(out / label), progress=False))
    for spec in specs:
        _check_spec(spec, args.tasks_per_node)
    folder = Path(args.folder) if args.folder else out / "submitit"
    executor = make_executor(args, folder)
    if len(specs) == 1:
        jobs = [executor.submit(TrainJob(specs[0]))]
    else:
        with executor.batch():
            jobs = [executor.submit(TrainJob(spec)) for spec in specs]
    for job, spec, (label, _) in zip(jobs, specs, points, strict=True):
        what = f"{spec.system} {spec.size} {spec.model}" + (f" [{label}]" if label else "")
        print(
            f"submitted job {job.job_id} ({args.executor}, {args.tasks_per_node} task(s)): {what} -> {out_folder(spec)}"
        )
        print(f"    submitit logs: {job.paths.stdout} / {job.paths.stderr}")
    sys.stdout.flush()
    if not args.wait:
        return 0
    failed = 0
    for job, spec in zip(jobs, specs, strict=True):
        try:
            summary = job.results()[0]  # rank 0 (every rank returns the same summary)
        except Exception as err:  # submitit's UncompletedJobError / FailedJobError carry the job's traceback
            failed += 1
            print(f"job {job.job_id} failed: {err}", file=sys.stderr)
            continue
        state = "finished" if summary["finished"] else f"stopped ({summary['stop_reason']})"
        print(f"job {job.job_id} {state}: {summary['steps_done']}/{summary['steps']} steps -> {spec.checkpoint_path}")
    return 1 if failed else 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from lattherm.models import MODEL_NAMES
    from lattherm.systems import SYSTEMS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--system", required=True, choices=list(SYSTEMS), help="energy model")
    common.add_argument("--size", required=True, help="size token: Ising LxL (8x8), CuAu cell (2x2x4)")
    common.add_argument("--model", required=True, choices=list(MODEL_NAMES), help="architecture")
    common.add_argument("--config", required=True, help="workflow config (config/config.yaml, config/paper.yaml)")
    common.add_argument("--out", required=True, help="output folder: checkpoint.pt, train_log.parquet")
    common.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a TrainConfig key (repeatable)"
    )
    common.add_argument("--init-from", metavar="CHECKPOINT",
                        help="start from the weights of this checkpoint of the same size-free model trained on "
                             "another size (fine-tuning, e.g. 8x8 weights on 16x16)")  # fmt: skip
    parser = argparse.ArgumentParser(
        prog="lattherm", description="Train lattherm samplers outside Snakemake (docs: lattherm.cli)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", parents=[common], help="train here (one or several local processes)")
    p.add_argument("--nproc", type=int, default=1, help="local DDP processes (one per GPU; gloo on CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("submit", parents=[common], help="train as a checkpointable submitit job (or job array)")
    p.add_argument("--executor", choices=["slurm", "local", "debug"], default="slurm", help="submitit executor")
    p.add_argument("--account", help="Slurm account (sbatch -A)")
    p.add_argument("--qos", help="Slurm QOS (sbatch -q)")
    p.add_argument("--constraint", help="Slurm constraint (sbatch -C), e.g. gpu")
    p.add_argument("--time-min", type=int, default=60, help="time limit per run in minutes (requeued after)")
    p.add_argument("--gpus", type=int, default=0, help="GPUs of the job (one node)")
    p.add_argument("--tasks-per-node", type=int, help="tasks = DDP ranks (default: one per GPU, else 1)")
    p.add_argument("--cpus-per-task", type=int, help="CPU cores per task")
    p.add_argument("--mem-gb", type=float, help="memory of the job in GB (default: the cluster's)")
    p.add_argument("--folder", help="submitit's folder for job files and logs (default: OUT/submitit)")
    p.add_argument(
        "--sweep", action="append", default=[], metavar="KEY=V1,V2", help="one job per value of a TrainConfig key"
    )
    p.add_argument("--max-requeues", type=int, default=3, help="requeues on pre-emption/timeout before giving up")
    p.add_argument("--name", default="lattherm-train", help="job name")
    p.add_argument("--wait", action="store_true", help="wait for the jobs and report their results")
    p.set_defaults(func=cmd_submit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lattherm`` console command; returns the exit status."""
    from lattherm.schema import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "nproc", 1) < 1:
        parser.error(f"--nproc must be >= 1, got {args.nproc}")
    try:
        return args.func(args)
    except (CliError, ConfigError, ValueError) as err:
        print(f"lattherm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. an unreadable checkpoint or a full disk: the file and the reason
        print(f"lattherm {args.command}: error: {err.filename or ''} {err.strerror or err}".strip(), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
