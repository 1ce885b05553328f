"""Adapter: Wang-Landau density of states of one system and size (rule wang_landau)."""

from typing import TYPE_CHECKING

from lattherm.io import write_table
from lattherm.reference import wang_landau_tables
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc, params = snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0], "wang_landau", config=snakemake.config, system=wc.system, size=wc.size,
             seed=params.seed, **params.settings) as log:  # fmt: skip
    table, dos, result = wang_landau_tables(wc.system, wc.size, params.T, params=params.system_params,
                                            settings=params.settings, seed=params.seed, progress=True)  # fmt: skip
    log.info("%s: %d moves, %.1f s, %d stages", result.method, result.moves, result.wall_time, len(result.stages))
    write_table(table, snakemake.output.table)
    write_table(dos, snakemake.output.dos, required=("system", "size", "E", "ln_g"))
