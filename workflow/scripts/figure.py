"""Adapter: one figure of lattherm.plotting from its input tables (rules figure_*)."""

from typing import TYPE_CHECKING

from lattherm.plotting import figure_from_files, save_figure
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

kind = snakemake.rule.removeprefix("figure_")
with job_log(snakemake.log[0], snakemake.rule, config=snakemake.config, **dict(snakemake.wildcards)) as log:
    wc = snakemake.wildcards
    fig = figure_from_files(kind, dict(snakemake.input.items()), system=wc.get("system"), size=wc.get("size"))
    save_figure(fig, [snakemake.output.png, snakemake.output.pdf])
    log.info("wrote %s", snakemake.output.png)
