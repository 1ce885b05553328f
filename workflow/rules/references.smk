# Reference stage: exact tables (transfer matrix / Kaufman / enumeration), Monte Carlo, metadynamics.


rule exact_reference:
    """Exact Ising thermodynamics on the config's (T, field) grid for any L x L torus."""
    output:
        table=report(
            "results/ising/{L}x{L}/reference/exact.parquet",
            caption="../report/exact_reference.rst",
            category="References",
            labels={"system": "ising", "size": "{L}x{L}", "method": "exact"},
        ),
    params:
        grid=ising_grid(),
        J=config["systems"]["ising"]["J"],
        max_transfer_L=config["reference"]["exact"]["max_transfer_L"],
    log:
        "logs/ising/{L}x{L}/reference/exact.log",
    benchmark:
        "benchmarks/ising/{L}x{L}/reference/exact.tsv"
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/exact_reference.py"
