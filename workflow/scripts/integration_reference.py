"""Adapter: free energies where nothing exact applies, by field or β integration (rules
field_integration_reference and beta_integration_reference; the rule names the method)."""

from typing import TYPE_CHECKING

from lattherm.io import write_table
from lattherm.reference import beta_integration_table, field_integration_table
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
method = snakemake.rule.removesuffix("_reference")
compute = {"field_integration": field_integration_table, "beta_integration": beta_integration_table}[method]
with job_log(snakemake.log[0], snakemake.rule, config=snakemake.config, system=wc.system, size=wc.size,
             seed=params.seed, **params.settings) as log:  # fmt: skip
    table = compute(wc.system, wc.size, params.grid["T"], params.grid["field"], params=params.system_params,
                    settings=params.settings, seed=params.seed, progress=True)  # fmt: skip
    flagged = table[~table["converged"].astype(bool)]
    if len(flagged):
        log.warning("%d of %d rows not converged (f_err is no claim there):\n  %s", len(flagged), len(table),
                    "\n  ".join(f"T={r.T:g} h={r.field:g}: {r.diagnosis}" for r in flagged.itertuples()))  # fmt: skip
    else:
        log.info("all %d rows converged", len(table))
    write_table(table, snakemake.output.table)
