"""The workflow configuration: read, checked once, resolved into each job's settings.

:func:`load_config` takes a config as given (``config/config.yaml``, or the files of
``--configfile`` used alone: nothing is merged from another file), checks every key against the
schema (:mod:`lattherm.schema`: types, bounds, unknown keys, finite numbers), fills the schema's
defaults, and then checks what one key cannot say alone (grids, sizes, a training's GPU count
against its batch, sampling options against the field grid). A wrong value raises
:class:`ConfigError` naming the key, the value and what was expected, before any job runs.
:func:`read_config_file` reads a YAML file strictly (duplicate keys are an error, with their
line). The helpers below resolve a checked config into one job's settings, so the workflow, the
command line and the tests read the config the same way.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lattherm.conditions import MAX_GRID_VALUES, CondBox, cond_box_of, grid_values
from lattherm.models import MODEL_NAMES, check_model_config, is_fixed_order, is_size_free, needs_couplings
from lattherm.schema import ConfigError, check
from lattherm.seeds import job_seed
from lattherm.systems import REGISTRY, SYSTEMS, parse_size, system_info

__all__ = [
    "ConfigError",
    "load_config",
    "read_config_file",
    "config_hash",
    "job_memory_mb",
    "model_settings",
    "sizes_of",
    "system_grid",
    "cond_box",
    "job_seed",
    "training_gpus",
    "train_settings",
    "sampling_settings",
    "SAMPLING_KEYS",
    "config_reference",
    "metadynamics_settings",
    "metadynamics_system",
    "refine_settings",
    "scaling_models",
    "scaling_grid",
    "grid_at",
    "MAX_GRID_VALUES",
    "MAX_CONDITIONS",
]

#: most (T, field) conditions of one system
MAX_CONDITIONS = 20000

#: sampling keys that ``sampling.<system>`` and its ``per_model`` / ``per_size`` blocks may override
SAMPLING_KEYS = ("n_samples", "symmetrised", "n_orders", "order", "batch_size")


# --------------------------------------------------------------------------- reading
def read_config_file(path: str | Path) -> dict:
    """A YAML config file as a dict; :class:`ConfigError` for a missing or unreadable file, a
    YAML error (with its line and column) or a key given twice in one mapping (with both lines)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", None, message=f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), "", None, message=f"cannot read the config file {path}: {err}") from None

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    str(key), "", None,
                    message=f"{path}, line {line}: key '{key}' is given twice in one mapping "
                    f"(first on line {seen[key]})",
                )  # fmt: skip
            seen[key] = line
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        config = yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(str(path), "", None, message=f"{path}{where}: not valid YAML: {err.problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(str(path), "", None, message=f"{path}: not valid YAML: {err}") from None
    if not isinstance(config, dict):
        message = f"{path}: expected a YAML mapping of config keys, got {config!r}"
        raise ConfigError(str(path), "", None, message=message)
    return config


# --------------------------------------------------------------------------- checking
def load_config(config: Mapping) -> dict:
    """The checked config with the schema's defaults filled in (a new dict; ``config`` is not
    changed). Raises :class:`ConfigError` on the first wrong value."""
    from lattherm.schema import fill_defaults

    config = copy.deepcopy(dict(config))
    check(config)
    fill_defaults(config)
    _check_systems(config)
    _check_models(config)
    _check_jobs(config)
    _check_scaling(config)
    meta = config["reference"]["metadynamics"]
    if meta["sizes"]:
        system = metadynamics_system(config)
        if system is None:
            with_it = [n for n, i in REGISTRY.items() if "metadynamics" in i.references]
            blocks = " or ".join(f"systems.{n}" for n in with_it)
            raise ConfigError("reference.metadynamics.sizes", f"no cells without a {blocks} block", meta["sizes"])
        for i, size in enumerate(meta["sizes"]):
            _check_size(system, size, f"reference.metadynamics.sizes[{i}]")
        for size in meta["per_size"]:
            if size not in meta["sizes"]:
                raise ConfigError(f"reference.metadynamics.per_size.{size}", f"one of its sizes {meta['sizes']}", size)
        _check_grid(meta["T"], "reference.metadynamics.T")
        if meta["mod_factor_final"] > meta["mod_factor_start"]:
            raise ConfigError(
                "reference.metadynamics.mod_factor_final",
                f"a value <= mod_factor_start = {meta['mod_factor_start']}",
                meta["mod_factor_final"],
            )
    return config


def _check_grid(spec: Mapping, key: str) -> np.ndarray:
    """The values of a grid that passed the schema; bounds on its form and length."""
    if "values" in spec:
        vals = spec["values"]
        bad = next((i for i in range(1, len(vals)) if not vals[i] > vals[i - 1]), None)
        if bad is not None:
            raise ConfigError(f"{key}.values", "a strictly increasing list", vals)
    else:
        if not spec["max"] > spec["min"]:
            raise ConfigError(
                f"{key}.max", f"a value greater than {key}.min = {spec['min']} (one value: {{values: [...]}})",
                spec["max"],
            )
        n = math.floor((spec["max"] - spec["min"]) / spec["step"] + 1e-9) + 1
        if n > MAX_GRID_VALUES:
            raise ConfigError(
                f"{key}.step", f"a step giving at most {MAX_GRID_VALUES} values from {spec['min']} to {spec['max']} "
                f"(this one gives {n})", spec["step"],
            )  # fmt: skip
    return grid_values(spec)


def _check_size(system: str, size: str, key: str) -> None:
    try:
        system_info(system).parse(size)
    except ValueError as err:
        raise ConfigError(key, str(err).split(", got")[0], size) from None


def _check_systems(config: Mapping) -> None:
    for system, cfg in config["systems"].items():
        key = f"systems.{system}"
        for i, size in enumerate(cfg["sizes"]):
            _check_size(system, size, f"{key}.sizes[{i}]")
        if cfg.get("J", 1.0) == 0:
            raise ConfigError(f"{key}.J", "a non-zero coupling", cfg["J"])
        T = _check_grid(cfg["T"], f"{key}.T")
        field = _check_grid(cfg["field"], f"{key}.field")
        if T.size * field.size > MAX_CONDITIONS:
            raise ConfigError(
                key, f"grids of at most {MAX_CONDITIONS} (T, field) conditions", f"{T.size} x {field.size}"
            )


def model_settings(config: Mapping, system: str, model: str) -> dict:
    """Architecture settings of ``model`` on ``system``: ``models.<model>``, then
    ``models.per_system.<system>.<model>`` over them."""
    models = config.get("models") or {}
    own = ((models.get("per_system") or {}).get(system) or {}).get(model) or {}
    return {**(models.get(model) or {}), **own}


def _check_models(config: Mapping) -> None:
    """Architecture settings that depend on the lattice (e.g. Transformer heads against RoPE)."""
    per_system = config["models"].get("per_system") or {}
    for system, per in per_system.items():
        if system not in SYSTEMS:
            raise ConfigError(f"models.per_system.{system}", f"a system name {sorted(SYSTEMS)}", system)
        for model in per:
            if model not in MODEL_NAMES:
                raise ConfigError(f"models.per_system.{system}.{model}", f"a model name {list(MODEL_NAMES)}", model)
    for system, cfg in config["systems"].items():
        for i, model in enumerate(cfg["models"]):
            if needs_couplings(model) and not REGISTRY[system].two_body:
                two_body = sorted(n for n in SYSTEMS if REGISTRY[n].two_body)
                raise ConfigError(f"systems.{system}.models[{i}]", f"{model} on a two-body system {two_body}", model)
            settings = model_settings(config, system, model)
            own = model in (per_system.get(system) or {})
            key = f"models.per_system.{system}.{model}" if own else f"models.{model}"
            for size in cfg["sizes"]:
                try:
                    check_model_config(model, settings, periods=parse_size(size))
                except ValueError as err:
                    raise ConfigError(key, f"settings that fit {system} {size}", str(err)) from None


def _check_jobs(config: Mapping) -> None:
    """Each training and sampling job's resolved settings."""
    for system, cfg in config["systems"].items():
        T, field = system_grid(config, system)
        for model in cfg["models"]:
            for size in cfg["sizes"]:
                _check_training(config, system, size, model)
                sampling = sampling_settings(config, system, model, size)
                if sampling["order"] == "fixed" and sampling["n_orders"] > 1:
                    raise ConfigError(
                        f"sampling.{system}.n_orders", f"1 with order 'fixed' ({model} {size})", sampling["n_orders"]
                    )
                if sampling["symmetrised"]:
                    lo, hi = float(field.min()), float(field.max())
                    outside = [float(h) for h in field if not lo - 1e-12 <= -h <= hi + 1e-12]
                    if outside:
                        raise ConfigError(
                            "sampling.symmetrised",
                            f"false for a field grid that is not symmetric about 0: the flip-symmetrised "
                            f"sampler draws at −h, outside the trained box [{lo}, {hi}] for h = {outside[:3]}",
                            True,
                        )  # fmt: skip


def _check_training(config: Mapping, system: str, size: str, model: str) -> None:
    """The resolved settings of the training of ``model`` on ``system`` at ``size``."""
    gpus = training_gpus(config, model)
    S = train_settings(config, system, model, size).get("samples_per_condition", 40)
    if gpus > 1 and (S % gpus or S // gpus < 2):
        raise ConfigError(
            f"training.{system}.samples_per_condition",
            f"for {model} on {gpus} GPUs a multiple of {gpus} with at least 2 per GPU "
            f"(e.g. {max(2, -(-S // gpus)) * gpus})", S,
        )  # fmt: skip


def _check_finetune(config: Mapping, system: str) -> None:
    """The fine-tuning stages of ``scaling.<system>``: larger boxes than the one they start from,
    not a size the system trains from scratch, starting from the block's size or another stage
    (no cycle), size-free models of the block that the stage they start from trains, and the
    models' settings on each stage's box; then the ``per_size.<size>.from`` of the transfer sizes."""
    block, key = config["scaling"][system], f"scaling.{system}"
    stages = block.get("finetune", {})
    free = [m for m in scaling_models(config, system) if is_size_free(m)]
    for size, stage in stages.items():
        at = f"{key}.finetune.{size}"
        _check_size(system, size, at)
        if size in sizes_of(config, system):
            raise ConfigError(at, f"a size the system does not train from scratch (systems.{system}.sizes "
                              f"{sizes_of(config, system)}: both would write its checkpoint)", size)  # fmt: skip
        if stage["from"] != block["from"] and stage["from"] not in stages:
            raise ConfigError(f"{at}.from", f"the block's from ({block['from']}) or another fine-tuning size "
                              f"{[s for s in stages if s != size]}", stage["from"])  # fmt: skip
        _check_size(system, stage["from"], f"{at}.from")
        if any(d < d0 for d, d0 in zip(parse_size(size), parse_size(stage["from"]), strict=True)):
            raise ConfigError(at, f"a box at least {stage['from']} (its from) in every direction", size)
        seen, s = {size}, stage["from"]
        while s in stages:
            if s in seen:
                raise ConfigError(f"{at}.from", "a chain of stages that ends at the block's from (this one "
                                  f"returns to {s})", stage["from"])  # fmt: skip
            seen.add(s)
            s = stages[s]["from"]
        for i, model in enumerate(stage.get("models") or []):
            if model not in free:
                raise ConfigError(f"{at}.models[{i}]", f"a size-free model of the block {free}", model)
        if not finetune_models(config, system, size):
            raise ConfigError(f"{at}.models", f"a size-free model of the block {free}", stage.get("models"))
        for model in finetune_models(config, system, size):
            if stage["from"] in stages and model not in finetune_models(config, system, stage["from"]):
                raise ConfigError(f"{at}.models", f"models that the stage at {stage['from']} trains "
                                  f"{finetune_models(config, system, stage['from'])}", model)  # fmt: skip
            try:
                check_model_config(model, model_settings(config, system, model), periods=parse_size(size))
            except ValueError as err:
                raise ConfigError(f"models.{model}", f"settings that fit {system} {size}", str(err)) from None
            _check_training(config, system, size, model)
    for size, own in block["per_size"].items():
        if "from" not in own or own["from"] == block["from"]:
            continue
        at = f"{key}.per_size.{size}.from"
        if own["from"] not in stages:
            raise ConfigError(at, f"the block's from ({block['from']}) or a fine-tuning size {list(stages)}",
                              own["from"])  # fmt: skip
        if size not in block["transfer"]:
            raise ConfigError(at, f"unset at a size that is not under {key}.transfer (the weights of a "
                              "fine-tuning stage are size-transferred, not out-painted)", own["from"])  # fmt: skip
        missing = [m for m in transfer_models(config, system, size) if m not in finetune_models(config, system,
                                                                                                own["from"])]
        if missing:
            raise ConfigError(at, f"a stage that trains every model transferred to {size} ({missing} are not "
                              f"among {finetune_models(config, system, own['from'])})", own["from"])  # fmt: skip


def _check_scaling(config: Mapping) -> None:
    """The out-painting blocks: a trained size, larger targets, any-order models of the system,
    and conditions inside the box the models were trained on."""
    for system, block in config["scaling"].items():
        key = f"scaling.{system}"
        if system not in config["systems"]:
            raise ConfigError(key, f"a block of a configured system (systems.{system} is missing)", list(block))
        if REGISTRY[system].disordered:
            raise ConfigError(key, "a system without disorder (each size of a disordered system is its own instance)",
                              list(block))  # fmt: skip
        if block["from"] not in sizes_of(config, system):
            raise ConfigError(f"{key}.from", f"one of the trained sizes {sizes_of(config, system)}", block["from"])
        if not block["to"] and not block["transfer"]:
            raise ConfigError(key, "at least one size under to (out-painting) or transfer", list(block))
        dims0 = parse_size(block["from"])
        for name in ("to", "transfer"):
            for i, size in enumerate(block[name]):
                _check_size(system, size, f"{key}.{name}[{i}]")
                if any(d < d0 for d, d0 in zip(parse_size(size), dims0, strict=True)):
                    raise ConfigError(f"{key}.{name}[{i}]", f"a box at least {block['from']} in every direction", size)
        if block["to"] and block["stride"] > min(dims0):  # the stride is the out-painting's
            raise ConfigError(f"{key}.stride", f"at most the window's side {min(dims0)}", block["stride"])
        trained = config["systems"][system]["models"]
        for i, model in enumerate(block["models"]):
            if model not in trained or (is_fixed_order(model) and not is_size_free(model)):
                raise ConfigError(f"{key}.models[{i}]", f"an any-order or size-free model trained on {system}: "
                                  f"{[m for m in trained if not is_fixed_order(m) or is_size_free(m)]}",
                                  model)  # fmt: skip
            if is_fixed_order(model) and not block["transfer"]:
                raise ConfigError(f"{key}.models[{i}]", "a model that can be out-painted (any-order; the fixed-order "
                                  f"{model} is only size-transferred, and {key}.transfer is empty)", model)  # fmt: skip
        if block["transfer"] and not transfer_models(config, system):
            free = [m for m in MODEL_NAMES if is_size_free(m)]
            raise ConfigError(f"{key}.transfer", f"a size-free model ({free}) among the models of {key}",
                              scaling_models(config, system))  # fmt: skip
        _check_finetune(config, system)
        targets = [*block["to"], *block["transfer"]]
        for size in block["per_size"]:
            if size not in targets:
                raise ConfigError(f"{key}.per_size.{size}", f"a target size under to or transfer {targets}", size)
            for i, model in enumerate(block["per_size"][size].get("models", [])):
                if model not in scaling_models(config, system):
                    raise ConfigError(f"{key}.per_size.{size}.models[{i}]", f"one of the block's models "
                                      f"{scaling_models(config, system)}", model)  # fmt: skip
            if not scaling_tables(config, system, size):
                raise ConfigError(f"{key}.per_size.{size}.models", f"a model with a table at {size} (out-painted: "
                                  "any-order; transferred: size-free)",
                                  block["per_size"][size].get("models"))  # fmt: skip
        (t0, t1), (h0, h1) = cond_box(config, system)
        for size in (None, *block["per_size"]):
            at = f"{key}.per_size.{size}" if size else key
            T, field = scaling_grid(config, system, size)
            for name, values, lo, hi in (("T", T, t0, t1), ("field", field, h0, h1)):
                if name in (block["per_size"][size] if size else block):
                    _check_grid((block["per_size"][size] if size else block)[name], f"{at}.{name}")
                if values.min() < lo - 1e-9 or values.max() > hi + 1e-9:
                    raise ConfigError(f"{at}.{name}", f"values inside the trained box [{lo}, {hi}]", values.tolist())
            if block["symmetrised"] and REGISTRY[system].flip_symmetric:
                outside = [float(h) for h in field if not h0 - 1e-12 <= -h <= h1 + 1e-12]
                if outside:
                    raise ConfigError(f"{key}.symmetrised", f"false for fields whose mirror is outside the trained box "
                                      f"(at {at}.field: {outside[:3]})", True)  # fmt: skip
        for size, own in block["per_size"].items():
            if "refine" in own and "refine" not in block:
                raise ConfigError(f"{key}.per_size.{size}.refine", f"settings over {key}.refine, which is not set "
                                  "(nothing is refined)", own["refine"])  # fmt: skip
        own_refine = [size for size, own in block["per_size"].items() if "refine" in own]
        for size in [None, *own_refine] if "refine" in block else ():  # the block's, then each size's over it
            refine = refine_settings(config, system, size)
            at = key if size is None else f"{key}.per_size.{size}"
            if refine.get("ladder_chains") in (1, 2, 3):
                raise ConfigError(f"{at}.refine.ladder_chains", "0 (no ladder) or at least 4 (each link reads half "
                                  "of them, resampled by chain)", refine["ladder_chains"])  # fmt: skip
            if refine.get("ladder_n_samples") is not None and not refine.get("ladder_chains"):
                raise ConfigError(f"{at}.refine.ladder_n_samples", "null unless ladder_chains is set (it sets the "
                                  "ladder chains' samples)", refine["ladder_n_samples"])  # fmt: skip
            for name in ("ladder_rungs", "ladder_top_rungs"):
                if refine.get(name) and not refine.get("ladder_chains"):
                    raise ConfigError(f"{at}.refine.{name}", "0 unless ladder_chains is set (the rungs are "
                                      "ladder chains)", refine[name])  # fmt: skip
            if refine.get("ladder_every_sweep") and (refine.get("replica_exchange") or not refine.get("ladder_chains")):
                raise ConfigError(f"{at}.refine.ladder_every_sweep", "false with replica_exchange or without "
                                  "ladder_chains (with exchanges every sweep the links are not independent)",
                                  True)  # fmt: skip
            for name in ("window_burn_in_sweeps", "window_thin_sweeps"):
                if refine.get(name) is not None and not refine.get("composition_windows"):
                    raise ConfigError(f"{at}.refine.{name}", "null unless composition_windows is true (it sets "
                                      "the windows' sweeps)", refine[name])  # fmt: skip
            if refine.get("composition_windows") and not REGISTRY[system].compositions:
                raise ConfigError(f"{at}.refine.composition_windows", f"false for {system} (the windows are "
                                  "compositions: a system whose field is a chemical potential)", True)  # fmt: skip
            if refine.get("cluster_updates") and system != "ising":
                raise ConfigError(f"{at}.refine.cluster_updates", f"0 or null for {system} (its updates have no "
                                  "cluster moves; Wolff moves are Ising's)", refine["cluster_updates"])  # fmt: skip
            for target in dict.fromkeys([*block["to"], *block["transfer"]]) if size is None else [size]:
                if size is None and target in own_refine:
                    continue  # checked with its own settings
                settings = refine_settings(config, system, target)
                for model, source in scaling_tables(config, system, target):
                    n = (block["n_samples"] if source.startswith("outpaint") else
                         sampling_settings(config, system, model, target)["n_samples"])  # fmt: skip
                    for name in ("n_chains", "ladder_chains"):
                        if settings.get(name, 0) > n:
                            raise ConfigError(f"{at}.refine.{name}", f"at most the {n} samples per condition of "
                                              f"{system} {target} {model} {source}", settings[name])  # fmt: skip


def refine_settings(config: Mapping, system: str, size: str | None = None) -> dict:
    """The keyword settings of :func:`lattherm.refine.refine` for ``system`` at ``size``: the scaling
    block's ``refine``, then its ``per_size[size].refine`` over it (empty where nothing is refined)."""
    block = config["scaling"].get(system, {})
    if "refine" not in block:
        return {}
    own = block.get("per_size", {}).get(size, {}).get("refine", {}) if size is not None else {}
    return {**block["refine"], **own}


def scaling_models(config: Mapping, system: str, size: str | None = None) -> list[str]:
    """The models of ``system`` past its trained size: ``scaling.<system>.models``, or every
    any-order model the system trains; at ``size``, its ``per_size`` models where it names them."""
    block = config["scaling"].get(system)
    if block is None:
        return []
    models = list(block["models"]) or [m for m in config["systems"][system]["models"] if not is_fixed_order(m)]
    own = block["per_size"].get(size, {}).get("models") if size is not None else None
    return [m for m in models if m in own] if own else models


def transfer_models(config: Mapping, system: str, size: str | None = None) -> list[str]:
    """The models of ``system`` sampled with their trained weights at ``scaling.<system>.transfer``
    (at ``size``): the size-free ones among :func:`scaling_models`."""
    return [m for m in scaling_models(config, system, size) if is_size_free(m)]


def finetune_models(config: Mapping, system: str, size: str) -> list[str]:
    """The models trained further at ``size`` from the weights of a smaller box (the fine-tuning
    stage ``scaling.<system>.finetune.<size>``: its ``models``, else every size-free model of the
    block); none where ``size`` is no stage."""
    stage = (config["scaling"].get(system) or {}).get("finetune", {}).get(size)
    if stage is None:
        return []
    return list(stage.get("models") or [m for m in scaling_models(config, system) if is_size_free(m)])


def finetune_from(config: Mapping, system: str, size: str, model: str) -> str | None:
    """The size whose checkpoint of ``model`` starts its training at ``size`` (a fine-tuning stage:
    ``scaling.<system>.finetune.<size>.from``), or None (trained from scratch)."""
    if model not in finetune_models(config, system, size):
        return None
    return config["scaling"][system]["finetune"][size]["from"]


def training_chain(config: Mapping, system: str, size: str, model: str) -> list[str]:
    """The sizes whose trainings made the checkpoint of ``model`` at ``size``, first to last: the
    training from scratch, then each fine-tuning stage on the way (``[size]`` without stages)."""
    chain = [size]
    while (size0 := finetune_from(config, system, chain[0], model)) is not None:
        chain.insert(0, size0)
    return chain


def transfer_source(config: Mapping, system: str, size: str) -> str:
    """The source of the size-transferred tables of ``system`` at ``size``: ``transfer-<size0>``,
    ``size0`` the block's ``per_size.<size>.from`` (a fine-tuning stage), else its ``from``."""
    block = config["scaling"][system]
    return f"transfer-{block['per_size'].get(size, {}).get('from', block['from'])}"


def scaling_tables(config: Mapping, system: str, size: str) -> list[tuple[str, str]]:
    """``(model, source)`` of the metric tables of ``system`` at ``size`` past its trained size:
    out-painted (``outpaint-<from>``, the any-order models) where it is a target under ``to``,
    size-transferred (:func:`transfer_source`, the size-free models) where it is a ``transfer`` size."""
    block = config["scaling"].get(system)
    if block is None:
        return []
    tables = [(m, f"outpaint-{block['from']}") for m in scaling_models(config, system, size)
              if size in block["to"] and not is_fixed_order(m)]  # fmt: skip
    return tables + [(m, transfer_source(config, system, size)) for m in transfer_models(config, system, size)
                     if size in block["transfer"]]  # fmt: skip


def scaling_jobs(config: Mapping) -> list[tuple[str, str, str, str]]:
    """``(system, size, model, source)`` of every out-painted and size-transferred table."""
    return [(system, size, model, source) for system, block in config["scaling"].items()
            for size in dict.fromkeys([*block["to"], *block["transfer"]])
            for model, source in scaling_tables(config, system, size)]  # fmt: skip


def scaling_sizes(config: Mapping, system: str) -> list[str]:
    """The sizes of ``system`` past its trained ones: out-painting targets, then transfer sizes."""
    block = config["scaling"].get(system)
    if block is None:
        return []
    sizes = dict.fromkeys([*block["to"], *block["transfer"]])
    return [s for s in sizes if s not in sizes_of(config, system)]


def scaling_grid(config: Mapping, system: str, size: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(T values, field values)`` of the out-painting and transfer targets (at ``size``: its
    ``per_size`` grid first), then the block's grids, else the system's."""
    block = config["scaling"].get(system, {})
    own = block.get("per_size", {}).get(size, {}) if size is not None else {}
    return tuple(grid_values(own[k]) if k in own else grid_values(block[k]) if k in block else default
                 for k, default in zip(("T", "field"), system_grid(config, system), strict=True))  # fmt: skip


def grid_at(config: Mapping, system: str, size: str) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation grid at ``size``: the system's at its own sizes, the out-painting grid at its
    targets (their references are computed there)."""
    if size in scaling_sizes(config, system):
        return scaling_grid(config, system, size)
    return system_grid(config, system)


def metadynamics_settings(config: Mapping, size: str) -> dict:
    """Keyword settings of :func:`lattherm.reference.metadynamics.run_metadynamics` at one cell: the
    ``reference.metadynamics`` keys (without ``sizes``, ``T``), then its ``per_size[size]``."""
    return {k: v for k, v in _layered(config["reference"]["metadynamics"], None, size).items()
            if k not in ("sizes", "T")}  # fmt: skip


def metadynamics_system(config: Mapping) -> str | None:
    """The configured system whose composition free energies ``reference.metadynamics`` computes."""
    return next((n for n in config["systems"] if "metadynamics" in REGISTRY[n].references), None)


def job_memory_mb(config: Mapping, rule: str, system: str, size: str, model: str | None = None) -> int:
    """An estimate (MB, rounded up) of the peak memory of one job whose memory grows with the
    config; the workflow refuses a job whose estimate exceeds the memory it may use. ``sample``
    (and ``transfer``, ``outpaint``): the sample table of every condition, twice while it is
    assembled, plus one batch of network activations; ``mcmc_reference``: every chain's state and samples, and the saved
    configurations; every job: 400 MB for the Python process with torch and the library (measured
    356 MB). Meant as an upper end:
    the laptop config's CuAu MAM Transformer, 1e5 samples at 99 conditions, peaked at 5 GB
    (estimate 5.5 GB)."""
    base = 400.0
    n_sites = system_info(system).n_sites(size)
    T, field = grid_at(config, system, size)
    C = T.size * field.size
    row = n_sites / 8 + 100  # a packed configuration in a bytes object, and four float64 columns
    if rule in ("sample", "transfer", "outpaint"):  # the sample table's rules
        s = config["scaling"][system] if rule == "outpaint" else sampling_settings(config, system, model, size)
        batch = min(s["batch_size"], C * s["n_samples"])
        return math.ceil(base + (2 * C * s["n_samples"] * row + batch * n_sites * 2048) / 2**20)
    if rule == "mcmc_reference":
        m = config["reference"]["mcmc"][system]
        per_chain = n_sites + 16 * m["n_samples"]  # uint8 state, float64 energy and spin sum per sample
        return math.ceil(base + (C * m["n_chains"] * per_chain + C * m["saved_per_condition"] * row) / 2**20)
    return math.ceil(base)


def config_hash(config: Mapping) -> str:
    """A short hash of a (checked) config: the same settings give the same hash."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- resolving
def sizes_of(config: Mapping, system: str) -> list[str]:
    """Size tokens of ``system`` in the config (none when the system is not configured)."""
    return list(config["systems"].get(system, {}).get("sizes", []))


def _layered(block: Mapping | None, model: str | None, size: str | None) -> dict:
    """A settings block resolved for one job: its own keys, then ``per_model[model]``, then
    ``per_size[size]`` (its keys, then its ``per_model[model]``); later layers win."""
    block = dict(block or {})
    per_model = block.pop("per_model", None) or {}
    per_size = block.pop("per_size", None) or {}
    settings = {**block, **(per_model.get(model) or {})}
    if size is not None and size in per_size:
        size_block = dict(per_size[size] or {})
        size_models = size_block.pop("per_model", None) or {}
        settings.update(size_block)
        settings.update(size_models.get(model) or {})
    return settings


def train_settings(config: Mapping, system: str, model: str, size: str | None = None) -> dict:
    """TrainConfig keys for ``model`` on ``system`` (``training.<system>`` with its ``per_model``
    and, with ``size``, ``per_size`` overrides); with ``size``, also the job's seed (unless the
    config sets one), derived from the config seed."""
    settings = _layered(config.get("training", {}).get(system), model, size)
    if size is not None:
        settings.setdefault("seed", job_seed(config["seed"], "train", system, size, model))
    return settings


def sampling_settings(config: Mapping, system: str, model: str | None = None, size: str | None = None) -> dict:
    """Direct-sampling settings of one job: the ``sampling`` keys, overridden by
    ``sampling.<system>`` and its ``per_model[model]`` / ``per_size[size]`` blocks. ``symmetrised``
    holds for systems with the global spin-flip symmetry (Ising); FO-ARMs ignore ``n_orders`` and ``order`` (their
    own order)."""
    from lattherm.schema import node

    sampling = config.get("sampling") or {}
    defaults = {k: v["default"] for k, v in node("SamplingSettings")["properties"].items()}
    settings = {k: sampling.get(k, defaults[k]) for k in SAMPLING_KEYS}
    settings.update(_layered(sampling.get(system), model, size))
    settings["symmetrised"] = bool(settings["symmetrised"]) and REGISTRY[system].flip_symmetric
    return settings


def training_gpus(config: Mapping, model: str | None = None) -> int:
    """GPUs of a training job: ``training.gpus_per_model[model]`` if set, else ``training.gpus``."""
    training = config.get("training", {}) or {}
    per_model = training.get("gpus_per_model", {}) or {}
    if model is not None and model in per_model:
        return int(per_model[model])
    return int(training.get("gpus", 0))


def cond_box(config: Mapping, system: str) -> CondBox:
    """The training box ``((T_min, T_max), (field_min, field_max))``: the system's evaluation grid."""
    return cond_box_of(*system_grid(config, system))


def system_grid(config: Mapping, system: str) -> tuple[np.ndarray, np.ndarray]:
    """``(T values, field values)`` of a system's evaluation grid."""
    cfg = config["systems"][system]
    return grid_values(cfg["T"]), grid_values(cfg["field"])



# --------------------------------------------------------------------------- documentation
def _bounds(n: Mapping) -> str:
    kinds = n.get("type", "")
    kinds = " or ".join(kinds) if isinstance(kinds, list) else kinds
    if "enum" in n:
        return "one of " + ", ".join(f"`{v}`" for v in n["enum"])
    parts = [kinds] if kinds else []
    for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if k in n:
            parts.append(f"{op} {n[k]}")
    if "oneOf" in n:
        parts = ["grid"]
    elif kinds == "array" and "items" in n:
        parts = [f"list of {n['items'].get('type', 'values')}s"] if "type" in n["items"] else ["list"]
    return " ".join(parts)


def config_reference() -> str:
    """``config/README.md``: every config key of the schema with its type, bounds, default and
    meaning (generated: ``python -m lattherm.config > config/README.md``)."""
    from lattherm.schema import describe

    lines = [
        "# Configuration keys",
        "",
        "Generated from `src/lattherm/data/config.schema.yaml` (`python -m lattherm.config > config/README.md`);",
        "edit the schema, not this file. `config.yaml` is the laptop default that `make run` uses;",
        "`paper.yaml` is the paper's scale. A config given with `--configfile` is used alone: every key",
        "it leaves out takes the default below, never a value from another file. Every value is checked",
        "before any job runs; a wrong one stops Snakemake with one line naming the key, e.g.",
        "",
        "    lattherm: config key 'training.ising.lr': expected a value <= 1, got 1000.0",
        "",
        "Grids are `{min, max, step}` (both ends included) or `{values: [...]}`. `training.<system>` and",
        "`sampling.<system>` take `per_model: {<model>: {...}}` and `per_size: {<size>: {..., per_model}}`",
        "overrides; later layers win (system, per_model, per_size, per_size.per_model).",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for key, n in describe():
        first, _, rest = key.partition(".")
        if first in ("training", "sampling") and rest.split(".")[0] in SYSTEMS:  # one block for every system
            if not rest.startswith(SYSTEMS[0]):
                continue
            key = f"{first}.<system>{rest[len(SYSTEMS[0]):]}"
        default = f"`{json.dumps(n['default'])}`" if "default" in n else "—"
        text = " ".join(str(n.get("description", "")).split()).replace("|", "\\|")
        lines.append(f"| `{key}` | {_bounds(n)} | {default} | {text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
