"""Adapter: CuAu metadynamics scan over temperature for one cell (rule metadynamics_reference)."""

from typing import TYPE_CHECKING

from lattherm.io import write_table
from lattherm.reference.metadynamics import metadynamics_scan
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

size, params = snakemake.wildcards.size, snakemake.params
with job_log(snakemake.log[0], "metadynamics_reference", size=size, seed=params.seed, T=params.temperatures,
             **params.settings) as log:
    table = metadynamics_scan(size, params.temperatures, seed=params.seed, progress=True, log=log, **params.settings)
    if not table["converged"].all():
        log.warning("not converged at T = %s K", sorted(table.loc[~table["converged"], "T"].unique()))
    write_table(table, snakemake.output.table)
