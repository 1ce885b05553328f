"""Adapter: samples of a trained model on the evaluation grid (rule sample: direct; rule transfer:
the weights of a model trained at another size, wildcard size0)."""

from typing import TYPE_CHECKING

from lattherm.evaluation import sample_grid
from lattherm.io import write_table
from lattherm.runlog import job_log
from lattherm.systems import make_system

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
settings = dict(params.sampling)  # n_samples, symmetrised, n_orders, order, batch_size
size0 = wc.get("size0")  # rule transfer: the size the model was trained at
job = dict(system=wc.system, size=wc.size, trained_size=size0 or wc.size, model=wc.model, seed=params.seed, **settings)
with job_log(snakemake.log[0], snakemake.rule, config=snakemake.config, threads=snakemake.threads, **job) as log:
    system = make_system(wc.system, wc.size, **params.system_params)
    trained_on = make_system(wc.system, size0, **params.system_params) if size0 else None
    samples = sample_grid(snakemake.input.checkpoint, system, params.grid["T"], params.grid["field"],
                          settings.pop("n_samples"), seed=params.seed, trained_on=trained_on, **settings)  # fmt: skip
    log.info("%d samples of %s %s from the %s model", len(samples), wc.system, wc.size, size0 or wc.size)
    write_table(samples, snakemake.output.samples)
