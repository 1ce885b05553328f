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
from lattherm.config import check_config, cuau_sizes, ising_sizes, job_seed, system_grid  # noqa: E402
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
    """Params function for an Ising rule with an {L}x{L} pattern: the job's seed."""

    def seed(wildcards):
        return job_seed(config["seed"], method, "ising", f"{wildcards.L}x{wildcards.L}")

    return seed


def mcmc_settings(wildcards):
    """Params function: the Metropolis settings of the job's system."""
    return config["reference"]["mcmc"][wildcards.system]
