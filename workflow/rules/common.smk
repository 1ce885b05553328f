# Helpers shared by the workflow files: the checked config, output paths and target lists.
# Everything that computes lives in src/lattherm; these only read the config and name files.

import os
import sys

# The workflow runs the library of its own checkout (also inside conda envs and Slurm jobs).
_SRC = os.path.join(workflow.basedir, "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p))

from lattherm.conditions import grid_values  # noqa: E402
from lattherm.config import (  # noqa: E402
    ConfigError,
    cond_box,
    load_config,
    grid_at,
    metadynamics_settings,
    metadynamics_system,
    model_settings,
    read_config_file,
    refine_settings,
    finetune_from,
    scaling_jobs,
    scaling_sizes,
    scaling_tables,
    job_memory_mb,
    job_seed,
    sampling_settings,
    sizes_of,
    system_grid,
    train_settings,
    training_chain,
    training_gpus,
)
from lattherm.models import MODEL_NAMES  # noqa: E402
from lattherm.reference import applies, composition_reference, free_energy_reference  # noqa: E402
from lattherm.systems import REGISTRY, SYSTEMS  # noqa: E402
from lattherm.systems.base import SIZE_PATTERN  # noqa: E402, F401  (used by the Snakefile)


def _checked_config():
    """The config checked once, with the schema's defaults; a wrong value stops here, with one
    message naming the key, before any job is planned (no traceback)."""
    try:
        for path in workflow.configfiles:  # duplicate keys and YAML errors, with their lines
            read_config_file(path)
        return load_config(config)
    except ConfigError as err:
        sys.exit(f"lattherm: {err}")


_checked = _checked_config()
config.clear()
config.update(_checked)

RESULTS = config["results_dir"]


def memory_limit_mb(rule):
    """The memory a job of ``rule`` may use: the profile's set-resources, --resources or
    default-resources mem_mb, else this machine's memory."""
    rs = workflow.resource_settings
    for mapping in (rs.overwrite_resources.get(rule, {}), rs.resources, rs.default_resources or {}):
        value = getattr(mapping.get("mem_mb"), "value", mapping.get("mem_mb"))
        if isinstance(value, (int, float)):
            return float(value)
    import psutil

    return psutil.virtual_memory().total / 2**20


def _check_memory():
    """Refuse, before any job, a planned job whose memory estimate exceeds what it may use."""
    jobs = [("mcmc_reference", system, size, None) for system in config["systems"] for size in sizes_of(config, system)]
    jobs += [("sample", system, size, model) for system, block in config["systems"].items()
             for size in block["sizes"] for model in block["models"]]  # fmt: skip
    jobs += [(source.split("-")[0], system, size, model) for system, size, model, source in scaling_jobs(config)]
    for rule, system, size, model in jobs:
        need, limit = job_memory_mb(config, rule, system, size, model), memory_limit_mb(rule)
        if need > limit:
            what = " ".join(x for x in (rule, system, size, model) if x)
            sys.exit(f"lattherm: the job {what} needs about {need:.0f} MB of memory, more than the "
                     f"{limit:.0f} MB it may use: lower its sample counts (sampling.n_samples, "
                     f"reference.mcmc.{system}) or give it more memory (mem_mb)")  # fmt: skip


def res(path):
    """``path`` under the config's results root (tables, checkpoints, figures)."""
    return f"{RESULTS}/{path}"


def logs(path):
    """``path`` under the config's log folder ({results_dir}/logs): job logs and rule timings."""
    return f"{RESULTS}/logs/{path}"


#: `snakemake --report`: the report shows what has been computed, so the target rules ask only for
#: the files that exist (after `make run TARGET=all_references`, the references)
REPORTING = any(arg == "--report" or arg.startswith("--report=") for arg in sys.argv)


def computed(targets):
    """``targets``, or in a report run the ones that exist."""
    return [t for t in targets if os.path.exists(t)] if REPORTING else targets


def views(tables):
    """The HTML views (rule table_view) of the Parquet tables among ``tables``."""
    return [t.removesuffix(".parquet") + ".html" for t in tables if t.endswith(".parquet")]


def reference_targets():
    """All reference tables of the configured systems and sizes: each method its system lists
    (lattherm.systems.REGISTRY) where it applies (lattherm.reference.applies), metadynamics at the
    configured cells."""
    targets = []
    for system in config["systems"]:
        for size in sizes_of(config, system):
            fields = grid_of(system, size)["field"]
            targets += [res(f"{system}/{size}/reference/{method}.parquet") for method in REGISTRY[system].references
                        if applies(system, method, size, config["reference"], fields)]  # fmt: skip
    system = metadynamics_system(config)
    for size in config["reference"]["metadynamics"]["sizes"]:
        targets += [res(f"{system}/{size}/reference/{t}.parquet") for t in ("metadynamics", "phase_diagram")]
    return targets


def valid_job(method):
    """Input function of a reference rule: nothing, once the job's size token is valid and the
    method applies there; else the run stops here with one line (before any job)."""

    def check(wildcards):
        try:
            REGISTRY[wildcards.system].parse(wildcards.size)
        except ValueError as err:
            sys.exit(f"lattherm: {err}")
        if method == "metadynamics":
            ok = method in REGISTRY[wildcards.system].references
        else:
            fields = grid_of(wildcards.system, wildcards.size)["field"]
            ok = applies(wildcards.system, method, wildcards.size, config["reference"], fields)
        if not ok:
            sys.exit(f"lattherm: no {method} reference for {wildcards.system} {wildcards.size}")
        return []

    return check


def system_params_of(wildcards):
    """Params function: the parameters of the job's system from its config block (e.g. Ising J)."""
    block = config["systems"].get(wildcards.system, {})
    return {k: v for k, v in block.items() if k not in ("sizes", "T", "field", "models")}


def job_temperatures(wildcards):
    """Params function: the temperatures of the job's grid."""
    return job_grid(wildcards)["T"]


def grid_of(system, size=None):
    """{"T": [...], "field": [...]}: the evaluation grid of a system (at ``size``: its own grid,
    or the out-painting grid at a scaling target), as lists for params."""
    if system not in config["systems"]:
        return {"T": [], "field": []}
    T, field = grid_at(config, system, size) if size else system_grid(config, system)
    return {"T": T.tolist(), "field": field.tolist()}


def job_grid(wildcards):
    """Params function: the evaluation grid of the job's system and size."""
    return grid_of(wildcards.system, wildcards.size)


def seed_of(method, system=None):
    """Params function for `method`: the job's seed, derived from the config seed, system and size
    (the system from the wildcards unless given)."""

    def seed(wildcards):
        return job_seed(config["seed"], method, system or wildcards.system, wildcards.size)

    return seed


def metadynamics_temperatures():
    """Temperatures (K) of the metadynamics scan."""
    return grid_values(config["reference"]["metadynamics"]["T"]).tolist()


def metadynamics_settings_of(wildcards):
    """Params function: keyword settings of lattherm.reference.metadynamics.run_metadynamics at the job's cell."""
    return metadynamics_settings(config, wildcards.size)


def mcmc_settings(wildcards):
    """Params function: the Metropolis settings of the job's system."""
    return config["reference"]["mcmc"][wildcards.system]


def metric_targets():
    """Metric tables of every configured system, size and model (direct samples), with the
    composition tables and phase diagrams of the systems whose field is a chemical potential."""
    targets = []
    for system, cfg in config["systems"].items():
        kinds = ["", "_composition", "_phase_diagram"] if REGISTRY[system].compositions else [""]
        targets += [res(f"{system}/{size}/metrics/{model}/direct{kind}.parquet")
                    for size in sizes_of(config, system) for model in cfg["models"] for kind in kinds]  # fmt: skip
    return targets


def composition_reference_of(wildcards):
    """Input function: the composition reference of the job's system and size (exact enumeration, else
    metadynamics at its cells), or nothing."""
    method = composition_reference(wildcards.system, wildcards.size, config["reference"])
    return [res(f"{wildcards.system}/{wildcards.size}/reference/{method}.parquet")] if method else []


def reference_boundaries_of(wildcards):
    """Input function: the reference phase-boundary lines of the job's system and size where its
    composition reference is metadynamics (the reference phase diagram's source), or nothing."""
    if composition_reference(wildcards.system, wildcards.size, config["reference"]) != "metadynamics":
        return []
    return [res(f"{wildcards.system}/{wildcards.size}/reference/phase_boundaries.parquet")]


def scaling_targets():
    """Metric tables of every out-painted and size-transferred target, and their refined and
    estimate tables where the scaling block refines (with the refined composition tables and phase
    diagrams of the systems whose field is a chemical potential)."""
    targets = []
    for system, size, model, source in scaling_jobs(config):
        targets.append(res(f"{system}/{size}/metrics/{model}/{source}.parquet"))
        if "refine" in config["scaling"][system]:
            kinds = ["refined", "correlation", "estimates"]
            if REGISTRY[system].compositions:
                kinds += ["refined_composition", "refined_phase_diagram", "refined_order_disorder"]
            targets += [res(f"{system}/{size}/metrics/{model}/{source}_{kind}.parquet") for kind in kinds]
    return targets


def refine_of(wildcards):
    """Params function: the scaling block's refinement settings of the job's system at its size."""
    return refine_settings(config, wildcards.system, wildcards.size)


def trained_size_of(wildcards):
    """The size the job's model was trained at: the source's suffix (transfer-/outpaint-), else the job's size."""
    return wildcards.source.split("-", 1)[1] if "-" in wildcards.source else wildcards.size


def source_checkpoint(wildcards):
    """Input function: the checkpoint of the model that drew the job's sample file."""
    return res(f"{wildcards.system}/{trained_size_of(wildcards)}/models/{wildcards.model}/checkpoint.pt")


def stride_of(wildcards):
    """Params function: the out-painting stride of the job's system (None without a scaling block)."""
    return config["scaling"].get(wildcards.system, {}).get("stride")


def summary_sources():
    """(metric table, train logs, training timings, sampling timing) of every sampler of the summary:
    each metric table with the trainings that made its model's weights (at the trained size for
    out-painted and size-transferred tables, after the fine-tuning stages that led there) and the
    timing of the job that drew its samples."""
    tables = [(system, size, model, "direct", size) for system, cfg in config["systems"].items()
              for size in sizes_of(config, system) for model in cfg["models"]]  # fmt: skip
    tables += [(system, size, model, source, source.split("-", 1)[1])
               for system, size, model, source in scaling_jobs(config)]  # fmt: skip
    sources = []
    for system, size, model, source, size0 in tables:
        chain = training_chain(config, system, size0, model)
        sources.append((res(f"{system}/{size}/metrics/{model}/{source}.parquet"),
                        [res(f"{system}/{s}/models/{model}/train_log.parquet") for s in chain],
                        [logs(f"{system}/{s}/models/{model}/train.tsv") for s in chain],
                        logs(f"{system}/{size}/samples/{model}/{source}.tsv")))  # fmt: skip
    return sources


def summary_targets():
    """The accuracy summary across every metric table (none without configured models)."""
    return [res("tables/sampler_accuracy.parquet")] if metric_targets() else []


def model_config_of(wildcards):
    """Params function: the architecture settings of the job's model on its system."""
    return model_settings(config, wildcards.system, wildcards.model)


def train_config_of(wildcards):
    """Params function: TrainConfig keys of the job, with a seed derived from the config seed."""
    return train_settings(config, wildcards.system, wildcards.model, wildcards.size)


def init_checkpoint_of(wildcards):
    """Input function of the train rule: ``{"init_from": checkpoint}`` where the training is a fine-tuning
    stage (scaling.<system>.finetune: the weights of that checkpoint start it), else nothing."""
    size0 = finetune_from(config, wildcards.system, wildcards.size, wildcards.model)
    return {} if size0 is None else {"init_from": res(f"{wildcards.system}/{size0}/models/{wildcards.model}/checkpoint.pt")}


def cond_box_of(wildcards):
    """Params function: the training box of the job's system."""
    return cond_box(config, wildcards.system)


def training_gpus_of(wildcards):
    """Resource function: GPUs of the job's training (gpu -> sbatch --gpus; DDP processes when > 1)."""
    return training_gpus(config, wildcards.model)


def sampling_gpus_of(wildcards):
    """Resource function: GPUs of the job's sampling (one when its training uses any)."""
    return min(1, training_gpus(config, wildcards.model))


def sampling_of(wildcards):
    """Params function: the job's sampling settings (n_samples, symmetrised, n_orders, order, batch_size),
    with the sampling.<system> per_model / per_size overrides."""
    return sampling_settings(config, wildcards.system, wildcards.model, wildcards.size)


def model_seed_of(method, *, by_source=False):
    """Params function for a per-model rule: the job's seed (``by_source``: one per sample file, so
    that the tables of two sources of one model draw independent streams)."""

    def seed(wildcards):
        keys = (wildcards.source,) if by_source else ()
        return job_seed(config["seed"], method, wildcards.system, wildcards.size, wildcards.model, *keys)

    return seed


def _reference(wildcards):
    """(path, method) of the reference with free energies for the job's system and size."""
    fields = grid_of(wildcards.system, wildcards.size)["field"]
    method = free_energy_reference(wildcards.system, wildcards.size, config["reference"], fields)
    return (res(f"{wildcards.system}/{wildcards.size}/reference/{method}.parquet"), method) if method else (None, None)


def best_reference(wildcards):
    """Input function: the reference table of the metrics job (none for large CuAu cells)."""
    path, _ = _reference(wildcards)
    return [path] if path else []


def best_reference_method(wildcards):
    """Params function: the method name of the metrics job's reference."""
    return _reference(wildcards)[1]


def models_of(system):
    """Models configured for a system (the figure rules plot them together)."""
    return list(config["systems"].get(system, {}).get("models", []))


def metric_tables_of(wildcards):
    """Input function: the metric tables of every model of the job's system and size: the direct
    samples at a trained size, the out-painted and size-transferred ones at a scaling size."""
    if wildcards.size in scaling_sizes(config, wildcards.system):
        tables = scaling_tables(config, wildcards.system, wildcards.size)
    else:
        tables = [(m, "direct") for m in models_of(wildcards.system)]
    return [res(f"{wildcards.system}/{wildcards.size}/metrics/{m}/{source}.parquet") for m, source in tables]


def train_logs_of(wildcards):
    """Input function (unpack): model name -> training log, every configured model of the job."""
    return {
        model: res(f"{wildcards.system}/{wildcards.size}/models/{model}/train_log.parquet")
        for model in models_of(wildcards.system)
    }


def thermo_reference(wildcards):
    """Input function: the reference with u and c for the job (exact where it exists, else MCMC)."""
    path, _ = _reference(wildcards)
    return [path or res(f"{wildcards.system}/{wildcards.size}/reference/mcmc.parquet")]


def figure_targets():
    """Every figure of the configured systems: sampler figures where models are configured
    (accuracy and heat capacity also at the out-painting targets), CuAu phase diagrams of the
    metadynamics sizes."""
    targets = []
    for system in config["systems"]:
        if models_of(system):
            targets += expand(
                res("figures/{system}_{size}_{figure}.png"),
                system=system,
                size=sizes_of(config, system),
                figure=["free_energy", "heat_capacity", "training"],
            )
        targets += expand(res("figures/{system}_{size}_{figure}.png"), system=system, size=scaling_sizes(config, system),
                          figure=["free_energy", "heat_capacity"])  # fmt: skip
        if "refine" in config["scaling"].get(system, {}):
            kinds = ["estimates", *(["refined_phase_diagram"] if REGISTRY[system].compositions else [])]
            targets += [res(f"figures/{system}_{size}_{model}_{source}_{kind}.png")
                        for s, size, model, source in scaling_jobs(config) if s == system for kind in kinds]  # fmt: skip
        if REGISTRY[system].compositions:
            targets += [res(f"figures/{system}_{size}_{model}_direct_phase_diagram.png")
                        for size in sizes_of(config, system) for model in models_of(system)]  # fmt: skip
    if summary_targets():
        targets.append(res("figures/equal_cost.png"))
    system = metadynamics_system(config)
    targets += [res(f"figures/{system}_{size}_phase_diagram.png") for size in config["reference"]["metadynamics"]["sizes"]]
    return targets


def scaling_settings_of(wildcards):
    """Params function: the out-painting settings of the job's system (stride, n_samples, batch_size, symmetrised)."""
    block = config["scaling"][wildcards.system]
    return {k: block[k] for k in ("stride", "n_samples", "batch_size", "symmetrised")}


_check_memory()
