"""Adapter: batched Metropolis reference for one system and size (rule mcmc_reference).

Conditions whose error bars are not claimed (``converged`` false in the table) are counted and
listed in the job log as a warning.
"""

from typing import TYPE_CHECKING

import numpy as np

from lattherm.conditions import condition_grid
from lattherm.io import write_table
from lattherm.reference.mcmc import (
    convergence_report,
    mcmc_histograms,
    mcmc_samples_table,
    mcmc_table,
    run_metropolis,
)
from lattherm.runlog import job_log
from lattherm.systems import make_system

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
settings = dict(params.settings)  # every key: the config, with the schema's defaults
with job_log(snakemake.log[0], "mcmc_reference", config=snakemake.config, system=wc.system, size=wc.size,
             seed=params.seed, **settings) as log:  # fmt: skip
    system = make_system(wc.system, wc.size, **params.system_params)
    grid = condition_grid(params.grid["T"], params.grid["field"])
    result = run_metropolis(
        system,
        grid[:, 0],
        grid[:, 1],
        n_chains=settings["n_chains"],
        n_samples=settings["n_samples"],
        burn_in_sweeps=settings["burn_in_sweeps"],
        thin_sweeps=settings["thin_sweeps"],
        seed=params.seed,
        start=settings["start"],
        replica_exchange=settings["replica_exchange"],
        exchange_sweeps=settings["exchange_sweeps"],
        progress=True,
    )
    table = mcmc_table(result, system)
    acc = table["exchange_acc"].to_numpy()
    log.info(
        "%d conditions (%d from the ladder estimate); max split-R̂ %.3f; max tau_E %.2f, tau_M %.2f "
        "samples; replica-exchange acceptance %s",
        len(table),
        int((table["estimator"] == "ladder").sum()),
        np.nanmax(table["rhat"].to_numpy(), initial=np.nan),
        table["tau_E"].max(),
        table["tau_M"].max(),
        f"{np.nanmin(acc):.3f} .. {np.nanmax(acc):.3f}" if np.isfinite(acc).any() else "- (none)",
    )
    n_bad, lines = convergence_report(table)
    if n_bad:
        log.warning(
            "%d of %d conditions not converged: their unclaimed error bars are NaN in %s\n  %s",
            n_bad,
            len(table),
            snakemake.output.table,
            "\n  ".join(lines),
        )
    else:
        log.info("all %d conditions converged (every error bar claimed)", len(table))
    write_table(table, snakemake.output.table)
    write_table(mcmc_histograms(result), snakemake.output.histograms)
    samples = mcmc_samples_table(result, max_per_condition=settings["saved_per_condition"])
    write_table(samples, snakemake.output.samples)
