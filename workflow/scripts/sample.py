"""Adapter: direct samples of a trained model on the evaluation grid (rule sample)."""

from typing import TYPE_CHECKING

from lattherm.evaluation import sample_grid
from lattherm.io import write_table
from lattherm.runlog import job_log
from lattherm.systems import make_system

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0], "sample", threads=snakemake.threads, system=wc.system, size=wc.size, model=wc.model,
             seed=params.seed, n_samples=params.n_samples, symmetrised=params.symmetrised,
             n_orders=params.n_orders) as log:
    samples = sample_grid(
        snakemake.input.checkpoint,
        make_system(wc.system, wc.size),
        params.grid["T"],
        params.grid["field"],
        params.n_samples,
        seed=params.seed,
        batch_size=params.batch_size,
        symmetrised=params.symmetrised,
        n_orders=params.n_orders,
    )
    log.info("%d samples", len(samples))
    write_table(samples, snakemake.output.samples)
