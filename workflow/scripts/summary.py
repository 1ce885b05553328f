"""Adapter: the accuracy and cost summary of every metric table (rule sampler_summary)."""

from itertools import accumulate
from typing import TYPE_CHECKING

import pandas as pd

from lattherm.evaluation import accuracy_summary, read_job_timing, sampler_costs
from lattherm.io import read_table, write_table
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

inp = snakemake.input
with job_log(snakemake.log[0], "sampler_summary", config=snakemake.config, n_tables=len(inp.metrics)) as log:
    metrics = [read_table(p) for p in inp.metrics]
    ends = list(accumulate(snakemake.params.chain_lengths))  # each table's trainings in the flat lists
    chains = [(inp.train_logs[e - n : e], inp.train_timings[e - n : e])
              for n, e in zip(snakemake.params.chain_lengths, ends, strict=True)]  # fmt: skip
    sources = zip(metrics, chains, inp.sample_timings, strict=True)
    costs = [sampler_costs(m, [read_table(t, required=("step", "wall_s")) for t in logs],
                           train_timing=[read_job_timing(t) for t in timings], sample_timing=read_job_timing(st))
             for m, (logs, timings), st in sources]  # fmt: skip
    table = accuracy_summary(pd.concat(metrics, ignore_index=True), costs)
    for r in table.itertuples():
        log.info("%s %s %s %s: max |delta_f| %.3g at (T=%g, field=%g), NESS median %.3g, min %.3g at (T=%g, "
                 "field=%g); %d steps in %.0f s, %.0f samples/s", r.system, r.size, r.model, r.source,
                 r.max_abs_delta_f, r.T_worst, r.field_worst, r.ness_median, r.ness_min, r.T_ness_min,
                 r.field_ness_min, r.train_steps, r.train_s, r.samples_per_s)  # fmt: skip
    write_table(table, snakemake.output.table, required=("system", "size", "model"))
