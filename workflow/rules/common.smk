# Helpers shared by the workflow files: config checks and target lists.
# Everything that computes lives in src/lattherm; these only read the config and name files.

import os
import sys

# The workflow runs the library of its own checkout (also inside conda envs and Slurm jobs).
_SRC = os.path.join(workflow.basedir, "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p)

from lattherm.conditions import grid_values  # noqa: E402
from lattherm.config import (  # noqa: E402
    MAX_ENUMERATION_SITES,
    MODELS,
    check_config,
    cond_box,
    cuau_sizes,
    ising_sizes,
    job_seed,
    sampling_settings,
    system_grid,
    train_settings,
    training_gpus,
)
from lattherm.systems import parse_size  # noqa: E402
from lattherm.systems.base import SIZE_PATTERN  # noqa: E402, F401  (used by the Snakefile)

check_config(config)


def reference_targets():
    """All reference tables of the configured systems and sizes."""
    targets = []
    if "ising" in config["systems"]:
        targets += expand(
            "results/ising/{size}/reference/{method}.parquet",
            size=ising_sizes(config),
            method=["exact", "mcmc", "wang_landau"],
        )
    if "cuau" in config["systems"]:
        targets += expand("results/cuau/{size}/reference/mcmc.parquet", size=cuau_sizes(config))
        targets += expand(
            "results/cuau/{size}/reference/{table}.parquet",
            size=cuau_sizes(config, exact_only=True),
            table=["exact", "exact_composition"],
        )
        targets += expand(
            "results/cuau/{size}/reference/{table}.parquet",
            size=config["reference"]["metadynamics"]["sizes"],
            table=["metadynamics", "phase_diagram"],
        )
    return targets


def grid_of(system):
    """{"T": [...], "field": [...]}: the evaluation grid of a system, as lists for params."""
    T, field = system_grid(config, system)
    return {"T": T.tolist(), "field": field.tolist()}


def job_grid(wildcards):
    """Params function: the evaluation grid of the job's system."""
    return grid_of(wildcards.system)


def seed_of(method, system=None):
    """Params function for `method`: the job's seed, derived from the config seed, system and size
    (the system from the wildcards unless given)."""

    def seed(wildcards):
        return job_seed(config["seed"], method, system or wildcards.system, wildcards.size)

    return seed


def metadynamics_temperatures():
    """Temperatures (K) of the metadynamics scan."""
    return grid_values(config["reference"]["metadynamics"]["T"]).tolist()


def metadynamics_settings():
    """Keyword settings of lattherm.reference.metadynamics.run_metadynamics from the config."""
    return {k: v for k, v in config["reference"]["metadynamics"].items() if k not in ("sizes", "T")}


def ising_seed_of(method):
    """Params function for the Ising {L}x{L} patterns: the job's seed."""

    def seed(wildcards):
        return job_seed(config["seed"], method, "ising", f"{wildcards.L}x{wildcards.L}")

    return seed


def mcmc_settings(wildcards):
    """Params function: the Metropolis settings of the job's system."""
    return config["reference"]["mcmc"][wildcards.system]


def sizes_of(system):
    """Size tokens of a system in the config."""
    return ising_sizes(config) if system == "ising" else cuau_sizes(config)


def metric_targets():
    """Metric tables of every configured system, size and model."""
    return [
        f"results/{system}/{size}/metrics/{model}/direct.parquet"
        for system, cfg in config["systems"].items()
        for size in sizes_of(system)
        for model in cfg.get("models", [])
    ]


def summary_targets():
    """The accuracy summary across every metric table (none without configured models)."""
    return ["results/tables/sampler_accuracy.parquet"] if metric_targets() else []


def model_config_of(wildcards):
    """Params function: the architecture settings of the job's model."""
    return dict(config.get("models", {}).get(wildcards.model) or {})


def train_config_of(wildcards):
    """Params function: TrainConfig keys of the job, with a seed derived from the config seed."""
    return train_settings(config, wildcards.system, wildcards.model, wildcards.size)


def cond_box_of(wildcards):
    """Params function: the training box of the job's system."""
    return cond_box(config, wildcards.system)


def training_gpus_of(wildcards):
    """Resource function: GPUs of the job's training (gpu -> sbatch --gpus; DDP processes when > 1)."""
    return training_gpus(config, wildcards.model)


def sampling_of(wildcards):
    """Params function: the job's sampling settings (n_samples, symmetrised, n_orders, order, batch_size),
    with the sampling.<system> per_model / per_size overrides."""
    return sampling_settings(config, wildcards.system, wildcards.model, wildcards.size)


def model_seed_of(method):
    """Params function for a per-model rule: the job's seed."""

    def seed(wildcards):
        return job_seed(config["seed"], method, wildcards.system, wildcards.size, wildcards.model)

    return seed


def _reference(wildcards):
    """(path, method) of the best reference with free energies for the job's system and size."""
    dims = parse_size(wildcards.size)
    if wildcards.system == "ising":
        # transfer matrix (every field) up to max_transfer_L, Kaufman (field 0) above
        return f"results/ising/{wildcards.size}/reference/exact.parquet", "exact"
    n_sites = dims[0] * dims[1] * dims[2]
    if n_sites <= MAX_ENUMERATION_SITES:
        return f"results/cuau/{wildcards.size}/reference/exact.parquet", "exact"
    return None, None


def best_reference(wildcards):
    """Input function: the reference table of the metrics job (none for large CuAu cells)."""
    path, _ = _reference(wildcards)
    return [path] if path else []


def best_reference_method(wildcards):
    """Params function: the method name of the metrics job's reference."""
    return _reference(wildcards)[1]


def models_of(system):
    """Models configured for a system (the figure rules plot them together)."""
    return list(config["systems"].get(system, {}).get("models") or [])


def metric_tables_of(wildcards):
    """Input function: the metric tables of every configured model of the job's system and size."""
    return expand(
        "results/{system}/{size}/metrics/{model}/direct.parquet",
        system=wildcards.system,
        size=wildcards.size,
        model=models_of(wildcards.system),
    )


def train_logs_of(wildcards):
    """Input function (unpack): model name -> training log, every configured model of the job."""
    return {
        model: f"results/{wildcards.system}/{wildcards.size}/models/{model}/train_log.parquet"
        for model in models_of(wildcards.system)
    }


def thermo_reference(wildcards):
    """Input function: the reference with u and c for the job (exact where it exists, else MCMC)."""
    path, _ = _reference(wildcards)
    return [path or f"results/{wildcards.system}/{wildcards.size}/reference/mcmc.parquet"]


def figure_targets():
    """Every figure of the configured systems: sampler figures where models are configured,
    CuAu phase diagrams of the metadynamics sizes."""
    targets = []
    for system in config["systems"]:
        if models_of(system):
            targets += expand(
                "results/figures/{system}_{size}_{figure}.png",
                system=system,
                size=sizes_of(system),
                figure=["free_energy", "heat_capacity", "training"],
            )
    if "cuau" in config["systems"]:
        targets += expand(
            "results/figures/cuau_{size}_phase_diagram.png", size=config["reference"]["metadynamics"]["sizes"]
        )
    return targets
