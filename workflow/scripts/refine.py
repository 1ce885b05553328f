"""Adapter: MCMC refinement of one sample file (rule refine)."""

from typing import TYPE_CHECKING

from lattherm.io import read_table, write_table
from lattherm.refine import refine
from lattherm.runlog import job_log
from lattherm.systems import make_system

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0], "refine", config=snakemake.config, system=wc.system, size=wc.size, model=wc.model,
             source=wc.source, seed=params.seed, refine=params.refine) as log:  # fmt: skip
    reference = read_table(snakemake.input.reference[0]) if snakemake.input.reference else None
    table, corr = refine(make_system(wc.system, wc.size, **params.system_params), read_table(snakemake.input.samples),
                         model=wc.model, source=wc.source, seed=params.seed, reference_df=reference,
                         **params.refine)  # fmt: skip
    log.info("%d of %d conditions converged", int(table["converged"].sum()), len(table))
    write_table(table, snakemake.output.table)
    write_table(corr, snakemake.output.correlation)
