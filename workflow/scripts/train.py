"""Adapter: train one model (rule train); resumable through the state checkpoint."""

import shutil
from typing import TYPE_CHECKING

from lattherm.io import atomic_path
from lattherm.runlog import job_log
from lattherm.systems import make_system
from lattherm.training import train

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0], "train", threads=snakemake.threads, system=wc.system, size=wc.size, model=wc.model,
             model_config=params.model_config, train_config=params.train_config, cond_box=params.cond_box) as log:
    summary = train(
        make_system(wc.system, wc.size),
        model_name=wc.model,
        model_config=params.model_config,
        train_config=params.train_config,
        cond_box=params.cond_box,
        checkpoint_path=params.state,
        log_path=snakemake.output.train_log,
        progress=True,
    )
    log.info("%s", summary)
    with atomic_path(snakemake.output.checkpoint, suffix=".pt") as tmp:
        shutil.copyfile(params.state, tmp)
