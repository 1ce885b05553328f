"""Adapter: Wang-Landau density of states for one Ising L (rule wang_landau)."""

from typing import TYPE_CHECKING

from lattherm.io import write_table
from lattherm.reference.wang_landau import wang_landau, wang_landau_dos_table, wang_landau_table
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

L, params = int(snakemake.wildcards.L), snakemake.params
with job_log(
    snakemake.log[0], "wang_landau", config=snakemake.config, L=L, J=params.J, seed=params.seed, **params.settings
) as log:
    result = wang_landau(L, J=params.J, seed=params.seed, progress=True, **params.settings)
    log.info("%s: %d moves, %.1f s, %d stages", result.method, result.moves, result.wall_time, len(result.stages))
    write_table(wang_landau_table(result, params.T), snakemake.output.table)
    write_table(wang_landau_dos_table(result), snakemake.output.dos, required=("system", "size", "E", "ln_g"))
