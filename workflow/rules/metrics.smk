# Metrics stage: free energies (F_var, F_NIS), NESS and reweighted observables against the best reference.


rule metrics:
    """Per-condition metrics of a sample file against the best available reference table."""
    input:
        samples=res("{system}/{size}/samples/{model}/{source}.parquet"),
        reference=best_reference,
    output:
        table=res("{system}/{size}/metrics/{model}/{source}.parquet"),
    params:
        ref_method=best_reference_method,
        system_params=system_params_of,
        n_boot=config["metrics"]["n_boot"],
        seed=model_seed_of("metrics"),
    log:
        logs("{system}/{size}/metrics/{model}/{source}.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/metrics.py"


rule refine:
    """MCMC refinement of a sample file (lattherm.refine): local Metropolis chains started from its
    configurations; u, c, m, |m| with errors between chains and convergence flags, the Ising G(r), and
    Bennett's free energy from the file's draws of q and the chains' draws of p (exact log q of both); where
    the field is a chemical potential, f_x, u_x, c_x per composition from the chains and Bennett's estimates,
    against the composition reference where one exists, the phase diagram and the order-disorder temperatures
    from them, and the composition windows' links (no rows elsewhere)."""
    input:
        samples=res("{system}/{size}/samples/{model}/{source}.parquet"),
        checkpoint=source_checkpoint,
        reference=best_reference,
        composition_reference=composition_reference_of,
    output:
        table=res("{system}/{size}/metrics/{model}/{source}_refined.parquet"),
        correlation=res("{system}/{size}/metrics/{model}/{source}_correlation.parquet"),
        composition=res("{system}/{size}/metrics/{model}/{source}_refined_composition.parquet"),
        regions=res("{system}/{size}/metrics/{model}/{source}_refined_phase_diagram.parquet"),
        order_disorder=res("{system}/{size}/metrics/{model}/{source}_refined_order_disorder.parquet"),
        ladder=res("{system}/{size}/metrics/{model}/{source}_ladder.parquet"),
        windows=res("{system}/{size}/metrics/{model}/{source}_windows.parquet"),
    params:
        tol=config["reference"]["phase_diagram"]["tol"],
        system_params=system_params_of,
        refine=refine_of,
        trained_size=trained_size_of,
        stride=stride_of,
        seed=model_seed_of("refine", by_source=True),
    log:
        logs("{system}/{size}/metrics/{model}/{source}_refined.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/refine.py"


rule estimates:
    """Every free-energy estimate of a sample file side by side (importance sampling from the metric table, Bennett's
    from the refined one), each with its error and claim, and the best claimed one per condition."""
    input:
        metrics=rules.metrics.output.table,
        refined=rules.refine.output.table,
        ladder=rules.refine.output.ladder,
    output:
        table=res("{system}/{size}/metrics/{model}/{source}_estimates.parquet"),
    log:
        logs("{system}/{size}/metrics/{model}/{source}_estimates.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/estimates.py"


rule composition:
    """Free energy, energy and heat capacity per composition from a sample file over the chemical-potential grid
    (lattherm.composition), against the composition reference where one exists, and the phase diagram from them by
    the reference's hull construction."""
    input:
        samples=res("{system}/{size}/samples/{model}/{source}.parquet"),
        reference=composition_reference_of,
    output:
        table=res("{system}/{size}/metrics/{model}/{source}_composition.parquet"),
        regions=res("{system}/{size}/metrics/{model}/{source}_phase_diagram.parquet"),
    params:
        system_params=system_params_of,
        tol=config["reference"]["phase_diagram"]["tol"],
    log:
        logs("{system}/{size}/metrics/{model}/{source}_composition.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/composition.py"


rule sampler_summary:
    """One row per sampler: worst and median F_NIS error against its reference, NESS median and minimum, and where;
    its cost: training steps, wall time and peak memory, sampling wall time, rate and peak memory."""
    input:
        metrics=[m for m, _, _, _ in summary_sources()],
        train_logs=[t for _, chain, _, _ in summary_sources() for t in chain],
        train_timings=[t for _, _, chain, _ in summary_sources() for t in chain],
        sample_timings=[t for _, _, _, t in summary_sources()],
    params:
        # trainings per metric table (a fine-tuning chain: more than one), to regroup the flat lists above
        chain_lengths=[len(chain) for _, chain, _, _ in summary_sources()],
    output:
        table=res("tables/sampler_accuracy.parquet"),
    log:
        logs("tables/sampler_accuracy.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/summary.py"
