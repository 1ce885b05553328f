"""Adapter: reference phase diagram from metadynamics f_x (rule phase_diagram_reference)."""

from typing import TYPE_CHECKING

from lattherm.io import read_table, write_table
from lattherm.reference.phase_diagram import order_disorder_temperature, phase_boundaries, two_phase_regions
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

with job_log(snakemake.log[0], "phase_diagram_reference", config=snakemake.config, tol=snakemake.params.tol) as log:
    table = read_table(snakemake.input.table)
    regions = two_phase_regions(table, tol=snakemake.params.tol)
    log.info("%d two-phase intervals over %d temperatures", len(regions), table["T"].nunique())
    try:
        log.info("x = 0.5 order-disorder temperature (heat-capacity peak): %.0f K", order_disorder_temperature(table))
    except ValueError as err:  # e.g. the peak lies outside the temperature grid
        log.warning("x = 0.5 order-disorder temperature not determined: %s", err)
    write_table(regions, snakemake.output.regions, required=("system", "size", "T", "x_lo", "x_hi"))
    write_table(phase_boundaries(regions), snakemake.output.boundaries, required=("system", "size", "T", "x"))
