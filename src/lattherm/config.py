"""Semantic checks of the workflow configuration (after JSON-Schema validation).

The Snakefile validates the config against ``workflow/schemas/config.schema.yaml`` and then
calls :func:`check_config`, which raises :class:`ConfigError` naming the offending key and the
expected value before any job runs. The helpers that read grids and sizes from a checked config
live here too, so the workflow and the tests read the config the same way.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from collections.abc import Mapping

import numpy as np

from lattherm.conditions import grid_values
from lattherm.models import MODEL_NAMES, model_config_from_dict
from lattherm.systems import SYSTEMS, parse_size

__all__ = [
    "ConfigError", "check_config", "MODELS", "ising_sizes", "cuau_sizes", "system_grid", "job_seed", "training_gpus",
    "train_settings", "sampling_settings",
]

#: architectures implemented so far (DESIGN §6 also plans mam-gnn and twobo)
MODELS = MODEL_NAMES


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what was expected."""

    def __init__(self, key: str, expected: str, got) -> None:
        super().__init__(f"config key '{key}': expected {expected}, got {got!r}")
        self.key = key


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_grid(cfg: Mapping, key: str, *, positive: bool = False) -> np.ndarray:
    spec = cfg.get(key.rsplit(".", 1)[-1])
    if not isinstance(spec, Mapping):
        raise ConfigError(key, "a grid {min, max, step} or {values: [...]}", spec)
    for k in ("min", "max", "step"):
        if k in spec and (not isinstance(spec[k], numbers.Real) or not math.isfinite(spec[k])):
            raise ConfigError(f"{key}.{k}", "a finite number", spec[k])
    if "values" in spec:
        vals = spec["values"]
        if not isinstance(vals, list) or not vals:
            raise ConfigError(f"{key}.values", "a non-empty list of numbers", vals)
        if any(not isinstance(v, numbers.Real) or not math.isfinite(v) for v in vals):
            raise ConfigError(f"{key}.values", "finite numbers", vals)
        if any(b <= a for a, b in zip(vals, vals[1:], strict=False)):
            raise ConfigError(f"{key}.values", "a strictly increasing list", vals)
    else:
        missing = [k for k in ("min", "max", "step") if k not in spec]
        if missing:
            raise ConfigError(key, f"the keys min, max, step (missing {missing}) or values", dict(spec))
        if not spec["step"] > 0:
            raise ConfigError(f"{key}.step", "a grid step > 0", spec["step"])
        if not spec["max"] > spec["min"]:
            raise ConfigError(
                f"{key}.max",
                f"a value greater than {key}.min = {spec['min']} (a non-empty, increasing range)",
                spec["max"],
            )
    values = grid_values(spec)
    if positive and not np.all(values > 0):
        bad = "values" if "values" in spec else "min"
        raise ConfigError(f"{key}.{bad}", "temperatures > 0", spec.get(bad))
    return values


def _check_models(cfg: Mapping, key: str) -> None:
    models = cfg.get("models", [])
    if not isinstance(models, list):
        raise ConfigError(key, f"a list of model names from {list(MODELS)}", models)
    for i, m in enumerate(models):
        if m not in MODELS:
            raise ConfigError(f"{key}[{i}]", f"a model name, one of {list(MODELS)}", m)
    if len(set(models)) != len(models):
        raise ConfigError(key, "each model at most once", models)


def _check_ising(cfg: Mapping) -> None:
    key = "systems.ising"
    sizes = cfg.get("sizes")
    if not isinstance(sizes, list) or not sizes:
        raise ConfigError(f"{key}.sizes", "a non-empty list of lattice sides L (integers >= 2)", sizes)
    for i, L in enumerate(sizes):
        if not _is_int(L) or L < 2:
            raise ConfigError(f"{key}.sizes[{i}]", "a lattice side L that is an integer >= 2", L)
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"{key}.sizes", "each size at most once", sizes)
    J = cfg.get("J", 1.0)
    if not isinstance(J, numbers.Real) or not math.isfinite(J) or J == 0:
        raise ConfigError(f"{key}.J", "a finite, non-zero coupling", J)
    _check_grid(cfg, f"{key}.T", positive=True)
    _check_grid(cfg, f"{key}.field")
    _check_models(cfg, f"{key}.models")


#: largest system enumerated exactly (2^N states)
MAX_ENUMERATION_SITES = 24


def _check_cuau_sizes(sizes, key: str) -> None:
    if not isinstance(sizes, list) or not sizes:
        raise ConfigError(key, "a non-empty list of FCC cells like '2x2x4'", sizes)
    for i, size in enumerate(sizes):
        if not isinstance(size, str) or not re.fullmatch(r"[1-9]\d*x[1-9]\d*x[1-9]\d*", size):
            raise ConfigError(f"{key}[{i}]", "a cell n1xn2xn3 of positive integers, e.g. '2x2x4'", size)
    if len(set(sizes)) != len(sizes):
        raise ConfigError(key, "each size at most once", sizes)


def _check_cuau(cfg: Mapping) -> None:
    key = "systems.cuau"
    _check_cuau_sizes(cfg.get("sizes"), f"{key}.sizes")
    _check_grid(cfg, f"{key}.T", positive=True)
    _check_grid(cfg, f"{key}.field")
    _check_models(cfg, f"{key}.models")


def _check_training(training: Mapping) -> None:
    from lattherm.training.trainer import _check_config as check_train_config
    from lattherm.training.trainer import train_config_from_dict

    gpus_per_model = training.get("gpus_per_model", {}) or {}
    if not isinstance(gpus_per_model, Mapping):
        raise ConfigError("training.gpus_per_model", "a mapping model name -> GPUs", gpus_per_model)
    for name, n in gpus_per_model.items():
        if name not in MODELS:
            raise ConfigError(f"training.gpus_per_model.{name}", f"a model name, one of {list(MODELS)}", name)
        if not _is_int(n) or n < 0:
            raise ConfigError(f"training.gpus_per_model.{name}", "an integer >= 0", n)

    for system in SYSTEMS:
        block = training.get(system) or {}
        for key, model, size in _layers(block, f"training.{system}"):
            try:
                check_train_config(train_config_from_dict(_layered(block, model, size)))
            except (TypeError, ValueError) as err:
                raise ConfigError(key, "keys and values of lattherm.training.TrainConfig", str(err)) from None


def _layers(block, key: str):
    """``(key, model, size)`` of every layer of a settings block with ``per_model`` / ``per_size``
    overrides (the names checked), so that each resolved combination can be validated."""
    if not isinstance(block, Mapping):
        raise ConfigError(key, "a mapping of settings", block)
    per_size = block.get("per_size") or {}
    if not isinstance(per_size, Mapping):
        raise ConfigError(f"{key}.per_size", "a mapping size token -> settings, e.g. {'4x4': {steps: 2000}}", per_size)
    layers = [(key, None, None)]
    for size_key, sub, size in [(key, block, None)] + [(f"{key}.per_size.{s}", b, s) for s, b in per_size.items()]:
        if size is not None:
            if not isinstance(size, str) or not re.fullmatch(r"[1-9]\d*(x[1-9]\d*)+", size):
                raise ConfigError(f"{key}.per_size", "size tokens like '4x4' or '2x2x4'", size)
            if not isinstance(sub, Mapping) or "per_size" in sub:
                raise ConfigError(size_key, "a mapping of settings (with optional per_model, no per_size)", sub)
            layers.append((size_key, None, size))
        per_model = sub.get("per_model") or {}
        if not isinstance(per_model, Mapping):
            raise ConfigError(f"{size_key}.per_model", "a mapping model name -> settings", per_model)
        for name in per_model:
            if name not in MODELS:
                raise ConfigError(f"{size_key}.per_model.{name}", f"a model name, one of {list(MODELS)}", name)
            layers.append((f"{size_key}.per_model.{name}", name, size))
    return layers


def _check_sampling(sampling: Mapping) -> None:
    top = {k: v for k, v in sampling.items() if k not in SYSTEMS}  # the top level alone
    _check_sampling_layer("sampling", top, sampling_settings({"sampling": top}, "ising"))
    for system in SYSTEMS:
        block = sampling.get(system)
        if block is None:
            continue
        for key, model, size in _layers(block, f"sampling.{system}"):
            settings = sampling_settings({"sampling": sampling}, system, model, size)
            _check_sampling_layer(key, _layered(block, model, size), settings)


def _check_sampling_layer(key: str, layer: Mapping, settings: Mapping) -> None:
    """One layer of the sampling settings (its own keys) and the settings it resolves to."""
    unknown = sorted(set(layer) - set(SAMPLING_KEYS))
    if unknown:
        raise ConfigError(key, f"sampling keys {list(SAMPLING_KEYS)}", unknown)
    for name in ("n_samples", "n_orders", "batch_size"):
        v, low = settings[name], 2 if name == "n_samples" else 1
        if not _is_int(v) or v < low:
            raise ConfigError(f"{key}.{name}", f"an integer >= {low}", v)
    if not isinstance(layer.get("symmetrised", True), bool):
        raise ConfigError(f"{key}.symmetrised", "true or false", layer["symmetrised"])
    if settings["order"] not in ("random", "fixed"):
        raise ConfigError(f"{key}.order", "'random' or 'fixed'", settings["order"])
    if settings["order"] == "fixed" and settings["n_orders"] > 1:
        raise ConfigError(f"{key}.n_orders", "1 with order 'fixed' (one order per sample)", settings["n_orders"])


def check_config(config: Mapping) -> None:
    """Raise :class:`ConfigError` on the first semantically wrong value of a workflow config."""
    seed = config.get("seed")
    if not _is_int(seed) or seed < 0:
        raise ConfigError("seed", "an integer >= 0", seed)
    systems = config.get("systems")
    if not isinstance(systems, Mapping) or not systems:
        raise ConfigError("systems", f"a mapping with at least one of {list(SYSTEMS)}", systems)
    for name in systems:
        if name not in SYSTEMS:
            raise ConfigError(f"systems.{name}", f"a system name, one of {list(SYSTEMS)}", name)
    if "ising" in systems:
        _check_ising(systems["ising"])
    if "cuau" in systems:
        _check_cuau(systems["cuau"])
    for name, cfg in (config.get("models") or {}).items():
        if name not in MODELS:
            raise ConfigError(f"models.{name}", f"a model name, one of {list(MODELS)}", name)
        try:
            model_config_from_dict(name, cfg or {})
        except (TypeError, ValueError) as err:
            raise ConfigError(f"models.{name}", "keys of the model's config dataclass", str(err)) from None
    _check_training(config.get("training") or {})
    _check_sampling(config.get("sampling") or {})
    meta = config.get("reference", {}).get("metadynamics")
    if meta is not None and "cuau" in systems:
        _check_cuau_sizes(meta.get("sizes"), "reference.metadynamics.sizes")
        _check_grid(meta, "reference.metadynamics.T", positive=True)
        if not meta.get("mod_factor_final", 1e-4) <= meta.get("mod_factor_start", 1.0):
            raise ConfigError(
                "reference.metadynamics.mod_factor_final",
                f"a value <= mod_factor_start = {meta.get('mod_factor_start')}",
                meta.get("mod_factor_final"),
            )


def job_seed(seed: int, *keys: str) -> int:
    """A per-job seed derived from the config seed and the job's identity (rule, system, size).

    Jobs get distinct, reproducible streams; the same config seed gives the same seeds.
    """
    digest = hashlib.sha256("/".join([str(seed), *map(str, keys)]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def ising_sizes(config: Mapping) -> list[str]:
    """Size tokens ``"LxL"`` of the Ising lattices in the config."""
    return [f"{L}x{L}" for L in config["systems"]["ising"]["sizes"]]


def cuau_sizes(config: Mapping, *, exact_only: bool = False) -> list[str]:
    """CuAu cell tokens of the config; ``exact_only``: those small enough to enumerate."""
    sizes = list(config["systems"]["cuau"]["sizes"])
    if exact_only:
        sizes = [s for s in sizes if math.prod(parse_size(s)) <= MAX_ENUMERATION_SITES]
    return sizes


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


#: sampling keys that ``sampling.<system>`` and its ``per_model`` / ``per_size`` blocks may override
SAMPLING_KEYS = ("n_samples", "symmetrised", "n_orders", "order", "batch_size")
_SAMPLING_DEFAULTS = {"n_samples": 1000, "symmetrised": True, "n_orders": 1, "order": "random", "batch_size": 4096}


def sampling_settings(config: Mapping, system: str, model: str | None = None, size: str | None = None) -> dict:
    """Direct-sampling settings of one job: the ``sampling`` keys, overridden by
    ``sampling.<system>`` and its ``per_model[model]`` / ``per_size[size]`` blocks. ``symmetrised``
    holds for Ising only (the global spin flip); FO-ARMs ignore ``n_orders`` and ``order`` (their
    own order)."""
    sampling = config.get("sampling") or {}
    settings = {k: sampling.get(k, _SAMPLING_DEFAULTS[k]) for k in SAMPLING_KEYS}
    settings.update(_layered(sampling.get(system), model, size))
    settings["symmetrised"] = bool(settings["symmetrised"]) and system == "ising"
    return settings


def training_gpus(config: Mapping, model: str | None = None) -> int:
    """GPUs of a training job: ``training.gpus_per_model[model]`` if set, else ``training.gpus``."""
    training = config.get("training", {}) or {}
    per_model = training.get("gpus_per_model", {}) or {}
    if model is not None and model in per_model:
        return int(per_model[model])
    return int(training.get("gpus", 0))


def cond_box(config: Mapping, system: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """The training box ``((T_min, T_max), (field_min, field_max))``: the system's evaluation grid."""
    T, field = system_grid(config, system)
    return ((float(T.min()), float(T.max())), (float(field.min()), float(field.max())))


def system_grid(config: Mapping, system: str) -> tuple[np.ndarray, np.ndarray]:
    """``(T values, field values)`` of a system's evaluation grid."""
    cfg = config["systems"][system]
    return grid_values(cfg["T"]), grid_values(cfg["field"])
