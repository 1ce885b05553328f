"""Adapter: the HTML view of one result table (rule table_view)."""

from typing import TYPE_CHECKING

from lattherm.io import atomic_path, read_metadata, read_table
from lattherm.report import table_html
from lattherm.runlog import job_log

if TYPE_CHECKING:
    from snakemake.script import snakemake

with job_log(snakemake.log[0], "table_view", config=snakemake.config, table=snakemake.input.table):
    page = table_html(
        read_table(snakemake.input.table, required=()),
        title=snakemake.wildcards.table,
        metadata=read_metadata(snakemake.input.table),
    )
    with atomic_path(snakemake.output.view, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
