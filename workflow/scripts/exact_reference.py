"""Adapter: exact Ising table for one L (rule exact_reference)."""

from typing import TYPE_CHECKING

from lattherm.io import write_table
from lattherm.reference.exact import ising_exact_table
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

L = int(snakemake.wildcards.L)
with job_log(snakemake.log[0], "exact_reference", config=snakemake.config, L=L, **snakemake.params) as log:
    table = ising_exact_table(
        L,
        snakemake.params.grid["T"],
        snakemake.params.grid["field"],
        J=snakemake.params.J,
        max_transfer_L=snakemake.params.max_transfer_L,
    )
    log.info("%d rows, methods %s", len(table), sorted(table["method"].unique()))
    write_table(table, snakemake.output.table)
