"""Adapter: free energies per composition and the phase diagram of one sample file (rule composition)."""

from typing import TYPE_CHECKING

from lattherm.composition import composition_table, log_composition, sampler_phase_diagram
from lattherm.io import read_table, write_table
from lattherm.runlog import job_log
from lattherm.systems import make_system

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0], "composition", config=snakemake.config, system=wc.system, size=wc.size,
             model=wc.model, source=wc.source, reference=list(snakemake.input.reference),
             tol=params.tol) as log:  # fmt: skip
    ref_path = snakemake.input.reference[0] if snakemake.input.reference else None
    reference = read_table(ref_path, required=("T", "n_au", "f_x")) if ref_path else None
    samples = read_table(snakemake.input.samples, required=("T", "field", "log_q", "energy", "spin_sum"))
    table = composition_table(samples, make_system(wc.system, wc.size, **params.system_params), size=wc.size,
                              reference=reference)  # fmt: skip
    table.insert(2, "model", wc.model)
    table.insert(3, "source", wc.source)
    log_composition(table, log)
    regions = sampler_phase_diagram(table, tol=params.tol)
    log.info("%d two-phase intervals over %d temperatures", len(regions), table["T"].nunique())
    write_table(table, snakemake.output.table, required=("system", "size", "T", "n_au", "x_au", "f_x", "f_x_err"))
    write_table(regions, snakemake.output.regions, required=("system", "size", "T", "x_lo", "x_hi"))
