"""Adapter: MCMC refinement of one sample file, its BAR free energy and, over a chemical-potential grid,
its composition-resolved free energies and phase diagram (rule refine)."""

from typing import TYPE_CHECKING

from lattherm.composition import log_composition, log_windows, sampler_phase_diagram
from lattherm.evaluation import sampler_density
from lattherm.io import read_table, write_table
from lattherm.reference.phase_diagram import log_transitions, order_disorder_table
from lattherm.refine import log_against_windows, log_ladder, refine
from lattherm.runlog import job_log
from lattherm.systems import make_system

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0], "refine", config=snakemake.config, system=wc.system, size=wc.size, model=wc.model,
             source=wc.source, seed=params.seed, refine=params.refine) as log:  # fmt: skip
    system = make_system(wc.system, wc.size, **params.system_params)
    samples = read_table(snakemake.input.samples)
    density = sampler_density(
        snakemake.input.checkpoint, system, wc.source, symmetrised=bool(samples["symmetrised"].iloc[0]),
        n_orders=int(samples["n_orders"].iloc[0]), order=str(samples["order"].iloc[0]), stride=params.stride,
        trained_on=make_system(wc.system, params.trained_size, **params.system_params),
    )  # fmt: skip
    reference = read_table(snakemake.input.reference[0]) if snakemake.input.reference else None
    composition_ref = snakemake.input.composition_reference
    composition_ref = read_table(composition_ref[0], required=("T", "n_au", "f_x")) if composition_ref else None
    table, corr, composition, ladder, windows = refine(system, samples, model=wc.model, source=wc.source,
                                                       seed=params.seed, reference_df=reference, density=density,
                                                       composition_reference=composition_ref,
                                                       **params.refine)  # fmt: skip
    log.info("%d of %d conditions converged; BAR claimed at %d, max |delta_f| there %.3g",
             int(table["converged"].sum()), len(table), int(table["est_converged"].sum()),
             table.loc[table["est_converged"], "delta_f"].abs().max())  # fmt: skip
    if len(composition):
        log_composition(composition, log)
    regions = sampler_phase_diagram(composition, tol=params.tol)
    transitions = order_disorder_table(composition, method=("heat_capacity", "order_parameter"))
    log_transitions(transitions, log)
    log_ladder(ladder, log)
    log_against_windows({"Bennett": table, "ladder": ladder}, log)
    log_windows(windows, log)
    write_table(table, snakemake.output.table)
    write_table(ladder, snakemake.output.ladder)
    write_table(windows, snakemake.output.windows)
    write_table(corr, snakemake.output.correlation)
    write_table(composition, snakemake.output.composition, required=("system", "size", "T", "n_au", "x_au", "f_x"))
    write_table(regions, snakemake.output.regions, required=("system", "size", "T", "x_lo", "x_hi"))
    write_table(transitions, snakemake.output.order_disorder, required=("x_au", "phase", "T_od"))
