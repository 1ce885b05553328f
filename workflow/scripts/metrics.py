"""Adapter: metrics of one sample file against the best reference (rule metrics)."""

from typing import TYPE_CHECKING

from lattherm.evaluation import metrics_table
from lattherm.io import read_table, write_table
from lattherm.runlog import job_log
from lattherm.systems import make_system

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
with job_log(
    snakemake.log[0],
    "metrics",
    config=snakemake.config,
    system=wc.system,
    size=wc.size,
    model=wc.model,
    seed=params.seed,
    reference=list(snakemake.input.reference),
    ref_method=params.ref_method,
) as log:
    reference = read_table(snakemake.input.reference[0]) if snakemake.input.reference else None
    table = metrics_table(
        read_table(snakemake.input.samples),
        make_system(wc.system, wc.size, **params.system_params),
        wc.model,
        wc.source,
        reference,
        params.ref_method,
        n_boot=params.n_boot,
        seed=params.seed,
    )
    log.info("max |delta_f| = %.3g, min NESS = %.3g", table["delta_f"].abs().max(), table["ness"].min())
    write_table(table, snakemake.output.table)
