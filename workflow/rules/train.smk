# Training stage: one conditional sampler per system, size and model, over the system's (T, field) box.


rule train:
    """Train a neural sampler; a killed run resumes from its last checkpoint (models/{model}/state/).
    A fine-tuning stage (scaling.<system>.finetune.<size>) starts from the weights of the checkpoint at its from size.
    With N > 1 GPUs (training.gpus, or training.gpus_per_model for the model) the job runs N DDP processes, one per GPU (workflow/scripts/train.py)."""
    input:
        unpack(init_checkpoint_of),
    output:
        checkpoint=res("{system}/{size}/models/{model}/checkpoint.pt"),
        train_log=res("{system}/{size}/models/{model}/train_log.parquet"),
    params:
        model_config=model_config_of,
        train_config=train_config_of,
        cond_box=cond_box_of,
        grid=job_grid,
        state=res("{system}/{size}/models/{model}/state/last.pt"),
    resources:
        # GPUs of the job (sbatch --gpus=N through the Slurm profile) = DDP processes when N > 1
        gpu=training_gpus_of,
    threads: 1
    message:
        "train {wildcards.model} on {wildcards.system} {wildcards.size}, {resources.gpu} GPU(s): model {params.model_config}, training {params.train_config}"
    log:
        logs("{system}/{size}/models/{model}/train.log"),
    benchmark:
        logs("{system}/{size}/models/{model}/train.tsv")
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/train.py"
