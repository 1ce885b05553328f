# Sampling stage: direct samples of a trained model at every condition of the system's grid.


rule sample:
    """Direct ancestral samples with exact log q at every (T, field) of the evaluation grid."""
    input:
        checkpoint=rules.train.output.checkpoint,
    output:
        samples=res("{system}/{size}/samples/{model}/direct.parquet"),
    params:
        grid=job_grid,
        system_params=system_params_of,
        sampling=sampling_of,
        seed=model_seed_of("sample"),
    resources:
        gpu=sampling_gpus_of,
    threads: 1
    message:
        "sample {wildcards.model} on {wildcards.system} {wildcards.size}: {params.sampling}"
    log:
        logs("{system}/{size}/samples/{model}/direct.log"),
    benchmark:
        logs("{system}/{size}/samples/{model}/direct.tsv")
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/sample.py"


rule transfer:
    """Direct samples at a larger size from the weights of a model trained at the scaling block's
    size (size transfer: architectures whose parameters do not depend on the box)."""
    input:
        checkpoint=res("{system}/{size0}/models/{model}/checkpoint.pt"),
    output:
        samples=res("{system}/{size}/samples/{model}/transfer-{size0}.parquet"),
    params:
        grid=job_grid,
        system_params=system_params_of,
        sampling=sampling_of,
        seed=model_seed_of("transfer"),
    resources:
        gpu=sampling_gpus_of,
    threads: 1
    message:
        "transfer {wildcards.model} from {wildcards.system} {wildcards.size0} to {wildcards.size}: {params.sampling}"
    log:
        logs("{system}/{size}/samples/{model}/transfer-{size0}.log"),
    benchmark:
        logs("{system}/{size}/samples/{model}/transfer-{size0}.tsv")
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/sample.py"


rule outpaint:
    """Samples of a larger box out-painted by an any-order model trained at the scaling block's
    size (lattherm.outpaint), with the exact log q of every sample, at every condition of its grid."""
    input:
        checkpoint=res("{system}/{size0}/models/{model}/checkpoint.pt"),
    output:
        samples=res("{system}/{size}/samples/{model}/outpaint-{size0}.parquet"),
    params:
        grid=job_grid,
        settings=scaling_settings_of,
        system_params=system_params_of,
        seed=model_seed_of("outpaint"),
    resources:
        gpu=sampling_gpus_of,
    threads: 1
    message:
        "outpaint {wildcards.model} from {wildcards.system} {wildcards.size0} to {wildcards.size}: {params.settings}"
    log:
        logs("{system}/{size}/samples/{model}/outpaint-{size0}.log"),
    benchmark:
        logs("{system}/{size}/samples/{model}/outpaint-{size0}.tsv")
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/outpaint.py"
