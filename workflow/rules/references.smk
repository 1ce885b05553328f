# Reference stage: exact tables, Wang–Landau, Metropolis MCMC, metadynamics and phase diagrams.
# Each rule serves every system whose SystemInfo lists its method (lattherm.systems.REGISTRY);
# lattherm.reference runs the system's own implementation.


rule exact_reference:
    """Exact thermodynamics on the system's (T, field) grid: transfer matrix / Kaufman (Ising),
    enumeration (CuAu, N <= 24), the 2x2 transfer matrix (chain); the method column says which."""
    input:
        valid_job("exact"),
    output:
        table=res("{system}/{size}/reference/exact.parquet"),
    params:
        grid=job_grid,
        system_params=system_params_of,
        settings=config["reference"]["exact"],
    log:
        logs("{system}/{size}/reference/exact.log"),
    benchmark:
        logs("{system}/{size}/reference/exact.tsv")
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/exact_reference.py"


rule exact_composition_reference:
    """Exact canonical free energies f_x at every composition, by enumeration (CuAu, N <= 24)."""
    input:
        valid_job("exact_composition"),
    output:
        table=res("{system}/{size}/reference/exact_composition.parquet"),
    params:
        T=job_temperatures,
        system_params=system_params_of,
    log:
        logs("{system}/{size}/reference/exact_composition.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/exact_composition_reference.py"


rule wang_landau:
    """Wang–Landau density of states and its field-0 f, u, c on the system's T grid (Ising)."""
    input:
        valid_job("wang_landau"),
    output:
        table=res("{system}/{size}/reference/wang_landau.parquet"),
        dos=res("{system}/{size}/reference/wang_landau_dos.parquet"),
    params:
        T=job_temperatures,
        system_params=system_params_of,
        settings=config["reference"]["wang_landau"],
        seed=seed_of("wang_landau"),
    log:
        logs("{system}/{size}/reference/wang_landau.log"),
    benchmark:
        logs("{system}/{size}/reference/wang_landau.tsv")
    threads: 2
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/wang_landau.py"


rule field_integration_reference:
    """f(T, h) past the exact transfer matrix (Ising L > max_transfer_L): MBAR over a field ladder
    from Kaufman's f(T, 0), Metropolis with replica exchange along T."""
    input:
        valid_job("field_integration"),
    output:
        table=res("{system}/{size}/reference/field_integration.parquet"),
    params:
        grid=job_grid,
        system_params=system_params_of,
        settings=config["reference"]["field_integration"],
        seed=seed_of("field_integration"),
    log:
        logs("{system}/{size}/reference/field_integration.log"),
    benchmark:
        logs("{system}/{size}/reference/field_integration.tsv")
    threads: 2
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/integration_reference.py"


rule beta_integration_reference:
    """f(T, h) where nothing exact applies (spin glasses past enumeration and the transfer matrix):
    thermodynamic integration over β from β = 0, Metropolis with replica exchange at every node."""
    input:
        valid_job("beta_integration"),
    output:
        table=res("{system}/{size}/reference/beta_integration.parquet"),
    params:
        grid=job_grid,
        system_params=system_params_of,
        settings=config["reference"]["beta_integration"],
        seed=seed_of("beta_integration"),
    log:
        logs("{system}/{size}/reference/beta_integration.log"),
    benchmark:
        logs("{system}/{size}/reference/beta_integration.tsv")
    threads: 2
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/integration_reference.py"


rule mcmc_reference:
    """Batched Metropolis MCMC at every condition of the system's grid: observables with errors,
    energy/magnetisation histograms and packed sample configurations."""
    input:
        valid_job("mcmc"),
    output:
        table=res("{system}/{size}/reference/mcmc.parquet"),
        histograms=res("{system}/{size}/reference/mcmc_histograms.parquet"),
        samples=res("{system}/{size}/reference/mcmc_samples.parquet"),
    params:
        grid=job_grid,
        settings=mcmc_settings,
        system_params=system_params_of,
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
    """Composition free energies f_x by metadynamics over the Au fraction, at each configured T (CuAu)."""
    input:
        valid_job("metadynamics"),
    output:
        table=res("{system}/{size}/reference/metadynamics.parquet"),
    params:
        temperatures=metadynamics_temperatures(),
        settings=metadynamics_settings_of,
        seed=seed_of("metadynamics"),
    log:
        logs("{system}/{size}/reference/metadynamics.log"),
    benchmark:
        logs("{system}/{size}/reference/metadynamics.tsv")
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/metadynamics_reference.py"


rule phase_diagram_reference:
    """Two-phase regions (lower convex hull of f_x per T), boundary lines and the order-disorder temperature of
    each ordered compound (heat-capacity peak at its composition) from metadynamics."""
    input:
        table=rules.metadynamics_reference.output.table,
    output:
        regions=res("{system}/{size}/reference/phase_diagram.parquet"),
        boundaries=res("{system}/{size}/reference/phase_boundaries.parquet"),
        order_disorder=res("{system}/{size}/reference/order_disorder.parquet"),
    params:
        tol=config["reference"]["phase_diagram"]["tol"],
    log:
        logs("{system}/{size}/reference/phase_diagram.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/phase_diagram_reference.py"


rule couplings_reference:
    """The couplings i, j, J of a disordered instance (the size token's seed), stored with its results."""
    input:
        valid_job("couplings"),
    output:
        table=res("{system}/{size}/reference/couplings.parquet"),
    params:
        system_params=system_params_of,
    log:
        logs("{system}/{size}/reference/couplings.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/couplings_reference.py"
