# lattherm — neural samplers of lattice thermodynamics, and their references.
#
# Results:  results/{system}/{size}/reference/{method}.parquet      exact | wang_landau | mcmc | metadynamics
#           results/{system}/{size}/models/{model}/checkpoint.pt    (sampler stage)
#           results/{system}/{size}/{samples,metrics}/{model}/{source}.parquet
#           results/tables/sampler_accuracy.parquet               (one row per sampler)
#           results/figures/{system}_{size}_{figure}.{png,pdf}        (figure stage)
# Logs and rule benchmarks mirror those paths under logs/ and benchmarks/.
#
# Laptop:   snakemake --cores all all                     (config/config.yaml)
# Cluster:  snakemake --profile profiles/slurm all_figures (config/paper.yaml)

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, schema="workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"


wildcard_constraints:
    # Ising side L >= 2 (a target like results/ising/1x1/... or 4x5 matches no rule)
    L=r"[2-9]|[1-9]\d+",
    # size tokens: 10x10, 2x2x4
    size=SIZE_PATTERN,
    system=r"ising|cuau",
    model="|".join(MODELS),

include: "workflow/rules/references.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/figures.smk"


# Target rules only collect files: they run on the submitting host, not as cluster jobs.
localrules:
    all,
    all_references,
    all_metrics,
    all_figures,
    figure_free_energy,
    figure_heat_capacity,
    figure_training,
    figure_phase_diagram,
    sampler_summary,


rule all:
    """Everything (the default): references, trained samplers and their metrics, and the figures."""
    default_target: True
    input:
        reference_targets(),
        metric_targets(),
        summary_targets(),
        figure_targets(),


rule all_references:
    """Every reference table of the configured systems and sizes."""
    input:
        reference_targets(),


rule all_metrics:
    """Train, sample and evaluate every configured model on every configured system and size."""
    input:
        metric_targets(),
        summary_targets(),


rule all_figures:
    """The cluster's name for everything (the same as all): every table, then every figure."""
    input:
        reference_targets(),
        metric_targets(),
        summary_targets(),
        figure_targets(),
