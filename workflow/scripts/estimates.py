"""Adapter: every free-energy estimate of one sample file side by side (rule estimates)."""

from typing import TYPE_CHECKING

from lattherm.evaluation import estimate_table
from lattherm.io import read_table, write_table
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

with job_log(snakemake.log[0], "estimates", config=snakemake.config, **dict(snakemake.wildcards)) as log:
    table = estimate_table(*(read_table(snakemake.input[k]) for k in ("metrics", "refined", "ladder")))
    best = table[table["best"]]
    log.info("best estimate at %d of %d conditions (%s); max |delta_f| %.3g, max |z| %.2f", len(best),
             table.groupby(["T", "field"]).ngroups, best["estimator"].value_counts().to_dict(),
             best["delta_f"].abs().max(), best["z"].abs().max())  # fmt: skip
    write_table(table, snakemake.output.table, required=("system", "size", "T", "field", "estimator", "f_est", "best"))
