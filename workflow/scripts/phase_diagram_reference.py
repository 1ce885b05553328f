"""Adapter: reference phase diagram from metadynamics f_x (rule phase_diagram_reference)."""

from typing import TYPE_CHECKING

from lattherm.io import read_table, write_table
from lattherm.reference.phase_diagram import log_transitions, order_disorder_table, phase_boundaries, two_phase_regions
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

with job_log(snakemake.log[0], "phase_diagram_reference", config=snakemake.config, tol=snakemake.params.tol) as log:
    table = read_table(snakemake.input.table)
    regions = two_phase_regions(table, tol=snakemake.params.tol)
    log.info("%d two-phase intervals over %d temperatures", len(regions), table["T"].nunique())
    transitions = order_disorder_table(table)
    log_transitions(transitions, log)
    write_table(regions, snakemake.output.regions, required=("system", "size", "T", "x_lo", "x_hi"))
    write_table(phase_boundaries(regions), snakemake.output.boundaries, required=("system", "size", "T", "x"))
    write_table(transitions, snakemake.output.order_disorder, required=("x_au", "phase", "T_od"))
