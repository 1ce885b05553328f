"""Adapter: batched Metropolis reference for one system and size (rule mcmc_reference)."""

from typing import TYPE_CHECKING

from lattherm.conditions import condition_grid
from lattherm.io import write_table
from lattherm.reference.mcmc import mcmc_histograms, mcmc_samples_table, mcmc_table, run_metropolis
from lattherm.runlog import job_log
from lattherm.systems import make_system

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
settings = dict(params.settings)
with job_log(snakemake.log[0], "mcmc_reference", system=wc.system, size=wc.size, seed=params.seed, **settings) as log:
    system = make_system(wc.system, wc.size)
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
        progress=True,
    )
    table = mcmc_table(result, system)
    log.info("%d conditions; max tau_E %.2f samples", len(table), table["tau_E"].max())
    write_table(table, snakemake.output.table)
    write_table(mcmc_histograms(result), snakemake.output.histograms)
    samples = mcmc_samples_table(result, max_per_condition=settings["saved_per_condition"])
    write_table(samples, snakemake.output.samples)
