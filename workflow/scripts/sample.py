"""Adapter: direct samples of a trained model on the evaluation grid (rule sample)."""

from typing import TYPE_CHECKING

from lattherm.evaluation import sample_grid
from lattherm.io import write_table
from lattherm.runlog import job_log
from lattherm.systems import make_system

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
settings = dict(params.sampling)  # n_samples, symmetrised, n_orders, order, batch_size
with job_log(
    snakemake.log[0],
    "sample",
    config=snakemake.config,
    threads=snakemake.threads,
    system=wc.system,
    size=wc.size,
    model=wc.model,
    seed=params.seed,
    **settings,
) as log:
    samples = sample_grid(
        snakemake.input.checkpoint,
        make_system(wc.system, wc.size, **params.system_params),
        params.grid["T"],
        params.grid["field"],
        settings.pop("n_samples"),
        seed=params.seed,
        **settings,
    )
    log.info("%d samples", len(samples))
    write_table(samples, snakemake.output.samples)
