"""Adapter: train one model (rule train) as a lattherm.training.TrainSpec (the spec the lattherm
command runs too); resumable through the state checkpoint. A fine-tuning stage starts from the
weights of its input init_from; training config grid "points" trains at the points of params.grid.

The job starts max(1, gpus) training processes (resource gpu = config training.gpus): one process
in this one when gpus <= 1, else one DDP process per GPU (lattherm.distributed.launch), each of
which also logs to the job's log.
"""

import shutil
from typing import TYPE_CHECKING

from lattherm.distributed import launch
from lattherm.io import atomic_path
from lattherm.runlog import job_log
from lattherm.training import TrainSpec, train_process

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main() -> None:
    wc, params = snakemake.wildcards, snakemake.params
    nproc = max(1, int(getattr(snakemake.resources, "gpu", 0)))
    spec = TrainSpec(
        system=wc.system,
        size=wc.size,
        model=wc.model,
        model_config=params.model_config,
        train_config=params.train_config,
        cond_box=params.cond_box,
        checkpoint_path=params.state,
        log_path=snakemake.output.train_log,
        restart_finished=True,  # a changed config retrains; a killed run of other settings is refused
        init_from=snakemake.input.get("init_from"),
        grid_points=(params.grid["T"], params.grid["field"]),
    )
    with job_log(
        snakemake.log[0],
        "train",
        threads=snakemake.threads,
        system=spec.system,
        size=spec.size,
        model=spec.model,
        model_config=spec.model_config,
        train_config=spec.train_config,
        cond_box=spec.cond_box,
        init_from=spec.init_from,
        processes=nproc,
    ) as log:
        summary = launch(
            nproc,
            train_process,
            spec,
            snakemake.log[0] if nproc > 1 else None,  # launched processes log there too
            device=str(spec.train_config.get("device", "auto")),
        )
        log.info("%s", summary)
        with atomic_path(snakemake.output.checkpoint, suffix=".pt") as tmp:
            shutil.copyfile(params.state, tmp)


# launched processes start by 'spawn', which imports this script again (as __mp_main__): guard
if __name__ == "__main__":
    main()
