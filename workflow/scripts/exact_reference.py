"""Adapter: the exact reference table of one system and size (rule exact_reference)."""

from typing import TYPE_CHECKING

from lattherm.io import write_table
from lattherm.reference import exact_table
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0], "exact_reference", config=snakemake.config, system=wc.system, size=wc.size,
             **params) as log:  # fmt: skip
    table = exact_table(wc.system, wc.size, params.grid["T"], params.grid["field"],
                        params=params.system_params, settings=params.settings)  # fmt: skip
    log.info("%d rows, methods %s", len(table), sorted(table["method"].unique()))
    write_table(table, snakemake.output.table)
