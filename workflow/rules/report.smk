# Report stage: an HTML view of every result table, for snakemake --report (Parquet is not shown by browsers).


rule table_view:
    """An HTML page of one result table: its rows, units, provenance and what each column means."""
    input:
        table=res("{table}.parquet"),
    output:
        view=report(
            res("{table}.html"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    log:
        logs("{table}.view.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/table_view.py"
