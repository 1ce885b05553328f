"""Adapter: CuAu metadynamics scan over temperature for one cell (rule metadynamics_reference)."""

from typing import TYPE_CHECKING

from lattherm.io import write_table
from lattherm.reference.metadynamics import metadynamics_scan
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

size, params = snakemake.wildcards.size, snakemake.params
with job_log(
    snakemake.log[0],
    "metadynamics_reference",
    config=snakemake.config,
    size=size,
    seed=params.seed,
    T=params.temperatures,
    **params.settings,
) as log:
    table = metadynamics_scan(size, params.temperatures, seed=params.seed, progress=True, log=log, **params.settings)
    # a row's f_x_err is a claim only where converged (lattherm.reference.metadynamics, "converged")
    flagged = ~table["converged"].to_numpy(bool)
    if flagged.any():
        log.warning(
            "%d of %d rows (T, x_Au) not converged (column converged = False: their f_x_err is no claim) "
            "at T = %s K; a longer production run (production_sweeps) converges them",
            int(flagged.sum()),
            len(table),
            sorted(table.loc[flagged, "T"].unique().tolist()),
        )
    else:
        log.info("all %d rows (T, x_Au) converged", len(table))
    write_table(table, snakemake.output.table)
