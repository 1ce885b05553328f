# lattherm — neural samplers of lattice thermodynamics, and their references.
#
# Results (under results_dir, default results/; every config its own root):
#   {results_dir}/{system}/{size}/reference/{method}.parquet      exact | wang_landau | mcmc | metadynamics
#   {results_dir}/{system}/{size}/models/{model}/checkpoint.pt    (sampler stage)
#   {results_dir}/{system}/{size}/{samples,metrics}/{model}/{source}.parquet
#   {results_dir}/tables/sampler_accuracy.parquet                 (one row per sampler)
#   {results_dir}/figures/{system}_{size}_{figure}.{png,pdf}      (figure stage)
#   {results_dir}/logs/…                                          job logs (.log) and timings (.tsv), mirroring the above
#
# Laptop:   snakemake --cores all all                                                 (config/config.yaml)
# Cluster:  snakemake --profile profiles/slurm all_figures                            (config/paper.yaml)
# A config given with --configfile is used alone: defaults come from the schema
# (src/lattherm/data/config.schema.yaml), never from config/config.yaml.

from snakemake.utils import min_version

min_version("9.0")


if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


report: "workflow/report/workflow.rst"


wildcard_constraints:
    # size tokens: 10x10, 2x2x4, 16 (each system checks its own: a wrong one stops the run with a message)
    size=SIZE_PATTERN,
    system="|".join(SYSTEMS),
    model="|".join(MODEL_NAMES),
    size0=SIZE_PATTERN,
    # how a sample file was drawn: direct, out-painted from a trained size, or with the weights of a trained size
    source=f"direct|(outpaint|transfer)-{SIZE_PATTERN}",


include: "workflow/rules/references.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"


# Target rules only collect files: they run on the submitting host, not as cluster jobs.
localrules:
    all_figures,
    all,
    all_references,
    all_metrics,
    all_scaling,
    figure_free_energy,
    figure_heat_capacity,
    figure_training,
    figure_phase_diagram,
    figure_equal_cost,
    sampler_summary,
    table_view,


rule all_figures:
    """Everything: references, trained samplers and their metrics, out-painting, the figures, and the tables' views."""
    input:
        computed(reference_targets() + views(reference_targets())),
        computed(metric_targets() + summary_targets() + views(metric_targets() + summary_targets())),
        computed(scaling_targets() + views(scaling_targets())),
        computed(figure_targets()),


rule all:
    """The default target: the same files as all_figures."""
    default_target: True
    input:
        rules.all_figures.input,


rule all_references:
    """Every reference table of the configured systems and sizes, with its view."""
    input:
        computed(reference_targets() + views(reference_targets())),


rule all_metrics:
    """Train, sample and evaluate every configured model on every configured system and size."""
    input:
        computed(metric_targets() + summary_targets() + views(metric_targets() + summary_targets())),


rule all_scaling:
    """Out-paint the trained any-order models to the scaling block's larger boxes, sample the size-free ones there with their trained weights, and evaluate them."""
    input:
        computed(scaling_targets() + views(scaling_targets())),
