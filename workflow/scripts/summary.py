"""Adapter: the accuracy summary of every metric table (rule sampler_summary)."""

from typing import TYPE_CHECKING

import pandas as pd

from lattherm.evaluation import accuracy_summary
from lattherm.io import read_table, write_table
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

with job_log(
    snakemake.log[0], "sampler_summary", config=snakemake.config, n_tables=len(snakemake.input.metrics)
) as log:
    table = accuracy_summary(pd.concat([read_table(p) for p in snakemake.input.metrics], ignore_index=True))
    for r in table.itertuples():
        log.info("%s %s %s: max |delta_f| %.3g at (T=%g, field=%g), NESS median %.3g, min %.3g at (T=%g, field=%g)",
                 r.system, r.size, r.model, r.max_abs_delta_f, r.T_worst, r.field_worst, r.ness_median,
                 r.ness_min, r.T_ness_min, r.field_ness_min)  # fmt: skip
    write_table(table, snakemake.output.table, required=("system", "size", "model"))
