"""Adapter: exact free energies per composition of one system and size (rule exact_composition_reference)."""

from typing import TYPE_CHECKING

from lattherm.io import write_table
from lattherm.reference import exact_composition_table
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0], "exact_composition_reference", config=snakemake.config, system=wc.system,
             size=wc.size) as log:  # fmt: skip
    table = exact_composition_table(wc.system, wc.size, params.T, params=params.system_params)
    log.info("%d composition rows", len(table))
    write_table(table, snakemake.output.table, required=("system", "size", "T", "n_au", "x_au", "f_x"))
