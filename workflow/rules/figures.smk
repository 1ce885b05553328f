# Figure stage: results/figures/{system}_{size}_{figure}.{png,pdf} from the tables (lattherm.plotting).


rule figure_free_energy:
    """F_NIS error against the reference and NESS over T, every configured model of a system and size."""
    input:
        metrics=metric_tables_of,
    output:
        png=report(
            res("figures/{system}_{size}_free_energy.png"),
            caption="../report/fig_free_energy.rst",
            category="Figures",
            labels={"system": "{system}", "size": "{size}", "figure": "free energy"},
        ),
        pdf=res("figures/{system}_{size}_free_energy.pdf"),
    log:
        logs("figures/{system}_{size}_free_energy.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/figure.py"


rule figure_heat_capacity:
    """Reweighted heat capacity of every configured model against the reference c(T)."""
    input:
        metrics=metric_tables_of,
        reference=thermo_reference,
    output:
        png=report(
            res("figures/{system}_{size}_heat_capacity.png"),
            caption="../report/fig_heat_capacity.rst",
            category="Figures",
            labels={"system": "{system}", "size": "{size}", "figure": "heat capacity"},
        ),
        pdf=res("figures/{system}_{size}_heat_capacity.pdf"),
    log:
        logs("figures/{system}_{size}_heat_capacity.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/figure.py"


rule figure_training:
    """Training curves (spread of log w, F_var) of every configured model of a system and size."""
    input:
        unpack(train_logs_of),
    output:
        png=report(
            res("figures/{system}_{size}_training.png"),
            caption="../report/fig_training.rst",
            category="Figures",
            labels={"system": "{system}", "size": "{size}", "figure": "training"},
        ),
        pdf=res("figures/{system}_{size}_training.pdf"),
    log:
        logs("figures/{system}_{size}_training.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/figure.py"


rule figure_phase_diagram:
    """f_x per composition with its hull, and the T-x phase diagram from metadynamics (CuAu)."""
    input:
        composition=rules.metadynamics_reference.output.table,
        regions=rules.phase_diagram_reference.output.regions,
        boundaries=rules.phase_diagram_reference.output.boundaries,
    output:
        png=report(
            res("figures/{system}_{size}_phase_diagram.png"),
            caption="../report/fig_phase_diagram.rst",
            category="Figures",
            labels={"system": "{system}", "size": "{size}", "figure": "phase diagram"},
        ),
        pdf=res("figures/{system}_{size}_phase_diagram.pdf"),
    log:
        logs("figures/{system}_{size}_phase_diagram.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/figure.py"


rule figure_sampler_phase_diagram:
    """f_x per composition from a sampler's semi-grand samples against its reference, and the T-x phase diagram from
    them with the reference's boundary lines over it (CuAu)."""
    input:
        composition=rules.composition.output.table,
        reference=reference_boundaries_of,
        regions=rules.composition.output.regions,
    output:
        png=report(
            res("figures/{system}_{size}_{model}_{source}_phase_diagram.png"),
            caption="../report/fig_sampler_phase_diagram.rst",
            category="Figures",
            labels={"system": "{system}", "size": "{size}", "figure": "phase diagram ({model}, {source})"},
        ),
        pdf=res("figures/{system}_{size}_{model}_{source}_phase_diagram.pdf"),
    log:
        logs("figures/{system}_{size}_{model}_{source}_phase_diagram.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/figure.py"


rule figure_refined_phase_diagram:
    """f_x per composition from a sampler's refined chains against its reference, and the T-x phase diagram from them
    with the reference's boundary lines over it (CuAu)."""
    input:
        composition=rules.refine.output.composition,
        reference=reference_boundaries_of,
        regions=rules.refine.output.regions,
    output:
        png=report(
            res("figures/{system}_{size}_{model}_{source}_refined_phase_diagram.png"),
            caption="../report/fig_sampler_phase_diagram.rst",
            category="Figures",
            labels={"system": "{system}", "size": "{size}", "figure": "phase diagram ({model}, {source}, refined)"},
        ),
        pdf=res("figures/{system}_{size}_{model}_{source}_refined_phase_diagram.pdf"),
    log:
        logs("figures/{system}_{size}_{model}_{source}_refined_phase_diagram.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/figure.py"


rule figure_estimates:
    """The free-energy estimators of one sample file over T: error against the reference with its error bar, z, the
    best claimed one."""
    input:
        estimates=rules.estimates.output.table,
    output:
        png=report(
            res("figures/{system}_{size}_{model}_{source}_estimates.png"),
            caption="../report/fig_estimates.rst",
            category="Figures",
            labels={"system": "{system}", "size": "{size}", "figure": "estimators ({model}, {source})"},
        ),
        pdf=res("figures/{system}_{size}_{model}_{source}_estimates.pdf"),
    log:
        logs("figures/{system}_{size}_{model}_{source}_estimates.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/figure.py"


rule figure_equal_cost:
    """The worst F_NIS error of every sampler against its wall time (training and sampling), one panel per system."""
    input:
        summary=summary_targets(),
    output:
        png=report(
            res("figures/equal_cost.png"),
            caption="../report/fig_equal_cost.rst",
            category="Figures",
            labels={"system": "all", "size": "all", "figure": "equal cost"},
        ),
        pdf=res("figures/equal_cost.pdf"),
    log:
        logs("figures/equal_cost.log"),
    conda:
        "../../envs/lattherm.yaml"
    script:
        "../scripts/figure.py"
