"""Adapter: the couplings of one disordered instance (rule couplings_reference)."""

from typing import TYPE_CHECKING

from lattherm.io import write_table
from lattherm.reference import couplings_table
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0], "couplings_reference", config=snakemake.config, system=wc.system, size=wc.size) as log:
    table = couplings_table(wc.system, wc.size, params=params.system_params)
    log.info("%d bonds", len(table))
    write_table(table, snakemake.output.table, required=("system", "size", "i", "j", "J"))
