# Reference stage: exact tables (transfer matrix / Kaufman / enumeration), Monte Carlo, metadynamics.


rule exact_reference:
    """Exact Ising thermodynamics on the config's (T, field) grid for any L x L torus."""
    output:
        table=res("ising/{L}x{L}/reference/exact.parquet"),
    params:
        grid=grid_of("ising"),
        J=ising_coupling(),
        max_transfer_L=config["reference"]["exact"]["max_transfer_L"],
    log:
        logs("ising/{L}x{L}/reference/exact.log"),
    benchmark:
        logs("ising/{L}x{L}/reference/exact.tsv")
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/exact_reference.py"


rule wang_landau:
    """Wang-Landau density of states of the L x L Ising torus and its field-0 f, u, c on the T grid."""
    output:
        table=res("ising/{L}x{L}/reference/wang_landau.parquet"),
        dos=res("ising/{L}x{L}/reference/wang_landau_dos.parquet"),
    params:
        T=grid_of("ising")["T"],
        J=ising_coupling(),
        settings=config["reference"]["wang_landau"],
        seed=ising_seed_of("wang_landau"),
    log:
        logs("ising/{L}x{L}/reference/wang_landau.log"),
    benchmark:
        logs("ising/{L}x{L}/reference/wang_landau.tsv")
    threads: 2
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/wang_landau.py"


rule cuau_exact_reference:
    """Exact CuAu semi-grand thermodynamics and composition free energies by enumeration (N <= 24)."""
    output:
        table=res("cuau/{size}/reference/exact.parquet"),
        composition=res("cuau/{size}/reference/exact_composition.parquet"),
    params:
        grid=grid_of("cuau"),
    log:
        logs("cuau/{size}/reference/exact.log"),
    benchmark:
        logs("cuau/{size}/reference/exact.tsv")
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/cuau_exact_reference.py"


rule mcmc_reference:
    """Batched Metropolis MCMC at every condition of the system's grid: observables with errors,
    energy/magnetisation histograms and packed sample configurations."""
    output:
        table=res("{system}/{size}/reference/mcmc.parquet"),
        histograms=res("{system}/{size}/reference/mcmc_histograms.parquet"),
        samples=res("{system}/{size}/reference/mcmc_samples.parquet"),
    params:
        grid=job_grid,
        settings=mcmc_settings,
        seed=seed_of("mcmc"),
    log:
        logs("{system}/{size}/reference/mcmc.log"),
    benchmark:
        logs("{system}/{size}/reference/mcmc.tsv")
    threads: 2
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/mcmc_reference.py"


rule metadynamics_reference:
    """CuAu composition free energies f_x by metadynamics over the Au fraction, at each configured T."""
    output:
        table=res("cuau/{size}/reference/metadynamics.parquet"),
    params:
        temperatures=metadynamics_temperatures(),
        settings=metadynamics_settings(),
        seed=seed_of("metadynamics", system="cuau"),
    log:
        logs("cuau/{size}/reference/metadynamics.log"),
    benchmark:
        logs("cuau/{size}/reference/metadynamics.tsv")
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/metadynamics_reference.py"


rule phase_diagram_reference:
    """Two-phase regions (lower convex hull of f_x per T) and boundary lines from metadynamics."""
    input:
        table=rules.metadynamics_reference.output.table,
    output:
        regions=res("cuau/{size}/reference/phase_diagram.parquet"),
        boundaries=res("cuau/{size}/reference/phase_boundaries.parquet"),
    params:
        tol=config["reference"]["phase_diagram"]["tol"],
    log:
        logs("cuau/{size}/reference/phase_diagram.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/phase_diagram_reference.py"
