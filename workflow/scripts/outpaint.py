"""Adapter: a larger box out-painted by a trained any-order model (rule outpaint)."""

from typing import TYPE_CHECKING

from lattherm.evaluation import outpaint_grid
from lattherm.io import write_table
from lattherm.runlog import job_log
from lattherm.systems import make_system

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
settings = dict(params.settings)  # stride, n_samples, batch_size, symmetrised
with job_log(snakemake.log[0], "outpaint", config=snakemake.config, threads=snakemake.threads, system=wc.system,
             size=wc.size, source_size=wc.size0, model=wc.model, seed=params.seed, **settings) as log:  # fmt: skip
    source = make_system(wc.system, wc.size0, **params.system_params)
    target = make_system(wc.system, wc.size, **params.system_params)
    samples = outpaint_grid(snakemake.input.checkpoint, source, target, params.grid["T"], params.grid["field"],
                            settings.pop("n_samples"), seed=params.seed, **settings)  # fmt: skip
    log.info("%d samples of %s %s out-painted from %s", len(samples), wc.system, wc.size, wc.size0)
    write_table(samples, snakemake.output.samples)
