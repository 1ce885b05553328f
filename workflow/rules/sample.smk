# Sampling stage: direct samples of a trained model at every condition of the system's grid.


rule sample:
    """Direct ancestral samples with exact log q at every (T, field) of the evaluation grid."""
    input:
        checkpoint=rules.train.output.checkpoint,
    output:
        samples="results/{system}/{size}/samples/{model}/direct.parquet",
    params:
        grid=job_grid,
        sampling=sampling_of,
        seed=model_seed_of("sample"),
    resources:
        gpu=lambda wc: min(1, training_gpus_of(wc)),
    threads: 1
    log:
        "logs/{system}/{size}/samples/{model}/direct.log",
    benchmark:
        "benchmarks/{system}/{size}/samples/{model}/direct.tsv"
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/sample.py"
