# Metrics stage: free energies (F_var, F_NIS), NESS and reweighted observables against the best reference.


rule metrics:
    """Per-condition metrics of a sample file against the best available reference table."""
    input:
        samples=rules.sample.output.samples,
        reference=best_reference,
    output:
        table=report(
            "results/{system}/{size}/metrics/{model}/direct.parquet",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"system": "{system}", "size": "{size}", "model": "{model}"},
        ),
    params:
        ref_method=best_reference_method,
        n_boot=config["metrics"]["n_boot"],
        seed=model_seed_of("metrics"),
    log:
        "logs/{system}/{size}/metrics/{model}/direct.log",
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/metrics.py"
