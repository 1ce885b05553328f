"""Adapter: exact CuAu tables for one small cell (rule cuau_exact_reference)."""

from typing import TYPE_CHECKING

from lattherm.conditions import condition_grid
from lattherm.io import write_table
from lattherm.reference.cuau_exact import cuau_exact_composition_table, cuau_exact_table
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

size = snakemake.wildcards.size
with job_log(snakemake.log[0], "cuau_exact_reference", config=snakemake.config, size=size, **snakemake.params) as log:
    grid = condition_grid(snakemake.params.grid["T"], snakemake.params.grid["field"])
    table = cuau_exact_table(size, grid[:, 0], grid[:, 1])
    composition = cuau_exact_composition_table(size, snakemake.params.grid["T"])
    log.info("%d conditions, %d composition rows", len(table), len(composition))
    write_table(table, snakemake.output.table)
    write_table(composition, snakemake.output.composition, required=("system", "size", "T", "n_au", "x_au", "f_x"))
