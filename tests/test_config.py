"""Config checks: every bad value of a workflow config is refused by name, before any job runs
(lattherm.config.load_config, which the Snakefile calls), and the schema is the one truth of the
settings dataclasses."""

import copy
import math
from dataclasses import fields

import numpy as np
import pytest
import yaml
from conftest import ROOT

from lattherm.conditions import condition_grid, grid_values
from lattherm.config import (
    SAMPLING_KEYS,
    ConfigError,
    load_config,
    read_config_file,
    sampling_settings,
    sizes_of,
    system_grid,
    train_settings,
    training_gpus,
)
from lattherm.models import MODEL_NAMES, MADEConfig, MLPConfig, TransformerConfig
from lattherm.schema import check, describe, node, schema
from lattherm.training import TrainConfig


@pytest.fixture(scope="module")
def default_config() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_default_config_is_valid(default_config):
    cfg = load_config(default_config)
    assert sizes_of(cfg, "ising") == ["4x4", "8x8"]
    T, h = system_grid(cfg, "ising")
    assert len(T) == 21 and T[0] == 1.5 and T[-1] == 3.5 and T[7] == 2.2
    np.testing.assert_array_equal(h, [-1.0, -0.5, 0.0, 0.5, 1.0])
    assert cfg["results_dir"] == "results"
    assert default_config == yaml.safe_load((ROOT / "config/config.yaml").read_text())  # not changed


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(read_config_file(ROOT / "config" / name))
    assert cfg["results_dir"] == ("results" if name == "config.yaml" else "results-paper")


def test_defaults_come_from_the_schema_alone():
    """A config of one system and nothing else: the rest is the schema's defaults; a values grid
    stays a values grid; no other system appears."""
    cfg = load_config({"systems": {"ising": {"sizes": ["4x4"], "T": {"values": [2.0]}, "field": {"values": [0.0]}}}})
    assert cfg["systems"]["ising"]["T"] == {"values": [2.0]}
    assert list(cfg["systems"]) == ["ising"] and cfg["systems"]["ising"]["models"] == []
    assert cfg["reference"]["mcmc"]["cuau"]["n_chains"] == node("mcmc")["properties"]["n_chains"]["default"]
    assert cfg["reference"]["metadynamics"]["sizes"] == []
    assert cfg["seed"] == schema()["properties"]["seed"]["default"]


@pytest.mark.parametrize(
    ("cls", "name"), [(TrainConfig, "TrainConfig"), (MADEConfig, "MADEConfig"), (MLPConfig, "MLPConfig"),
                      (TransformerConfig, "TransformerConfig")],  # fmt: skip
)
def test_dataclasses_match_the_schema(cls, name):
    """The settings dataclasses have exactly the schema's keys, with the schema's defaults."""
    props = node(name)["properties"]
    assert [f.name for f in fields(cls)] == list(props)
    for f in fields(cls):
        assert f.default == props[f.name]["default"], f.name
    check({f.name: f.default for f in fields(cls)}, name)  # the defaults satisfy the bounds


def test_names_match_the_registries():
    assert tuple(node("modelName")["enum"]) == MODEL_NAMES
    assert tuple(schema()["properties"]["models"]["properties"]) == (*MODEL_NAMES, "per_system")
    assert tuple(node("SamplingSettings")["properties"]) == SAMPLING_KEYS


def test_every_key_has_description_and_default():
    for key, n in describe():
        assert "description" in n, f"config key {key} has no description"
        leaf = key.rsplit(".", 1)[-1]
        # a system's block and an out-painting block are given whole
        required = key.startswith(("systems.", "scaling.")) and key.count(".") <= 2
        if not (required or leaf in ("min", "max", "step", "values") or key == "systems"):
            assert "default" in n, f"config key {key} has no default"


def test_config_readme_is_generated_from_the_schema():
    from lattherm.config import config_reference

    assert (ROOT / "config/README.md").read_text() == config_reference(), (
        "config/README.md is out of date: python -m lattherm.config > config/README.md"
    )


# ---------------------------------------------------------------------------------------- bad
IS, TR, SA, MO, RE = ("systems", "ising"), ("training", "ising"), ("sampling",), ("models",), ("reference",)
INF, NAN = math.inf, math.nan

# (path, value, key named in the message): each a copy of config/config.yaml with one change
BAD = [
    # top level
    (("seed",), -5, "seed"),
    (("seed",), "abc", "seed"),
    (("seed",), 2**40, "seed"),
    (("seed",), 1.5, "seed"),
    (("seed",), True, "seed"),
    (("results_dir",), "", "results_dir"),
    (("results_dir",), "out/{system}", "results_dir"),
    (("results_dir",), 5, "results_dir"),
    (("sampels",), {}, "sampels"),
    (("systems",), {}, "systems"),
    (("systems", "isng"), {}, "systems.isng"),
    # Ising block
    ((*IS, "sizes"), ["4x4", "1x1"], "systems.ising.sizes[1]"),
    ((*IS, "sizes"), ["4x5"], "systems.ising.sizes[0]"),
    ((*IS, "sizes"), [8], "systems.ising.sizes[0]"),
    ((*IS, "sizes"), ["2x2x4"], "systems.ising.sizes[0]"),
    ((*IS, "sizes"), ["100000x100000"], "systems.ising.sizes[0]"),
    ((*IS, "sizes"), [], "systems.ising.sizes"),
    ((*IS, "sizes"), ["8x8", "8x8"], "systems.ising.sizes"),
    ((*IS, "sizes"), "8x8", "systems.ising.sizes"),
    ((*IS, "J"), 0.0, "systems.ising.J"),
    ((*IS, "J"), INF, "systems.ising.J"),
    ((*IS, "J"), "one", "systems.ising.J"),
    ((*IS, "T", "min"), -1.0, "systems.ising.T.min"),
    ((*IS, "T", "min"), 0.0, "systems.ising.T.min"),
    ((*IS, "T", "min"), NAN, "systems.ising.T.min"),
    ((*IS, "T", "max"), 1.0, "systems.ising.T.max"),
    ((*IS, "T", "max"), 1.5, "systems.ising.T.max"),
    ((*IS, "T", "max"), INF, "systems.ising.T.max"),
    ((*IS, "T", "step"), 0.0, "systems.ising.T.step"),
    ((*IS, "T", "step"), 1e-12, "systems.ising.T.step"),
    ((*IS, "T", "step"), -0.1, "systems.ising.T.step"),
    ((*IS, "T"), {"values": []}, "systems.ising.T.values"),
    ((*IS, "T"), {"values": [2.0, 1.0]}, "systems.ising.T.values"),
    ((*IS, "T"), {"values": [1.0, 1.0]}, "systems.ising.T.values"),
    ((*IS, "T"), {"values": [0.0, 1.0]}, "systems.ising.T.values[0]"),
    ((*IS, "T"), {"min": 1.0, "max": 2.0}, "systems.ising.T"),
    ((*IS, "T"), {"min": 1.0, "max": 2.0, "step": 0.5, "values": [1.0]}, "systems.ising.T"),
    ((*IS, "T"), [1.0, 2.0], "systems.ising.T"),
    ((*IS, "field", "step"), 0, "systems.ising.field.step"),
    ((*IS, "field", "min"), -1e9, "systems.ising.field.min"),
    ((*IS, "field"), {"values": [0.0, NAN]}, "systems.ising.field.values[1]"),
    ((*IS, "models"), ["ao-arm-mlp", "made"], "systems.ising.models[1]"),
    ((*IS, "models"), ["ao-arm-mlp", "ao-arm-mlp"], "systems.ising.models"),
    ((*IS, "coupling"), 1.0, "systems.ising.coupling"),
    # CuAu block
    (("systems", "cuau", "sizes"), ["2x2x4", "4x4"], "systems.cuau.sizes[1]"),
    (("systems", "cuau", "sizes"), ["40x40x40"], "systems.cuau.sizes[0]"),
    (("systems", "cuau", "sizes"), ["0x2x4"], "systems.cuau.sizes[0]"),
    (("systems", "cuau", "T", "min"), -100, "systems.cuau.T.min"),
    (("systems", "cuau", "models"), ["gpt"], "systems.cuau.models[0]"),
    # a two-body model on the cluster expansion (multi-body): refused before any job
    (("systems", "cuau", "models"), ["ao-arm-mlp", "twobo"], "systems.cuau.models[1]"),
    (("systems", "cuau", "field"), {"min": 0.1, "max": -0.1, "step": 0.01}, "systems.cuau.field.max"),
    # architectures
    ((*MO, "per_system"), {"potts": {"ao-transformer": {}}}, "models.per_system.potts"),
    ((*MO, "per_system"), {"cuau": {"gpt": {}}}, "models.per_system.cuau.gpt"),
    ((*MO, "per_system"), {"cuau": {"ao-transformer": {"heads": 2}}}, "models.per_system.cuau.ao-transformer"),
    ((*MO, "per_system"), {"cuau": {"mam-transformer": {"n_heads": 3}}}, "models.per_system.cuau.mam-transformer"),
    ((*MO, "per_system"), {"cuau": []}, "models.per_system.cuau"),
    ((*MO, "ao-arm-mlp", "width"), -256, "models.ao-arm-mlp.width"),
    ((*MO, "ao-arm-mlp", "width"), 0, "models.ao-arm-mlp.width"),
    ((*MO, "ao-arm-mlp", "width"), 256.5, "models.ao-arm-mlp.width"),
    ((*MO, "ao-arm-mlp", "depth"), 3, "models.ao-arm-mlp.depth"),
    ((*MO, "fo-arm-mlp", "channels"), 0, "models.fo-arm-mlp.channels"),
    ((*MO, "fo-arm-mlp", "n_hidden"), -1, "models.fo-arm-mlp.n_hidden"),
    ((*MO, "mam-mlp", "n_layers"), 0, "models.mam-mlp.n_layers"),
    ((*MO, "mam-transformer", "n_heads"), 0, "models.mam-transformer.n_heads"),
    ((*MO, "mam-transformer", "dim"), 66, "models.mam-transformer"),  # not a multiple of 4 heads
    ((*MO, "mam-transformer", "n_heads"), 16, "models.mam-transformer"),  # RoPE needs more than 4 head dims
    ((*MO, "mam-transformer", "norm"), "batchnorm", "models.mam-transformer.norm"),
    ((*MO, "made"), {}, "models.made"),
    # training
    (("training", "gpus"), -1, "training.gpus"),
    (("training", "gpus"), 1.5, "training.gpus"),
    (("training", "gpu"), 1, "training.gpu"),
    (("training", "isng"), {}, "training.isng"),
    (("training", "gpus_per_model"), {"made": 2}, "training.gpus_per_model"),
    (("training", "ising", "grid"), "random", "training.ising.grid"),
    (("training", "gpus_per_model"), {"mam-mlp": -1}, "training.gpus_per_model.mam-mlp"),
    ((*TR, "steps"), 0, "training.ising.steps"),
    ((*TR, "steps"), INF, "training.ising.steps"),
    ((*TR, "steps"), 10.5, "training.ising.steps"),
    ((*TR, "steps"), "many", "training.ising.steps"),
    ((*TR, "stepz"), 10, "training.ising.stepz"),
    ((*TR, "gpu"), 1, "training.ising.gpu"),
    ((*TR, "lr"), -1.0, "training.ising.lr"),
    ((*TR, "lr"), 0.0, "training.ising.lr"),
    ((*TR, "lr"), INF, "training.ising.lr"),
    ((*TR, "lr"), NAN, "training.ising.lr"),
    ((*TR, "lr"), 1e3, "training.ising.lr"),
    ((*TR, "lr"), "abc", "training.ising.lr"),
    ((*TR, "grad_clip"), -1.0, "training.ising.grad_clip"),
    ((*TR, "grad_clip"), 0.0, "training.ising.grad_clip"),
    ((*TR, "weight_decay"), -0.1, "training.ising.weight_decay"),
    ((*TR, "warmup_frac"), 1.0, "training.ising.warmup_frac"),
    ((*TR, "min_lr_frac"), 1.5, "training.ising.min_lr_frac"),
    ((*TR, "beta0"), 0.0, "training.ising.beta0"),
    ((*TR, "beta0"), 2.0, "training.ising.beta0"),
    ((*TR, "beta_anneal_frac"), -0.5, "training.ising.beta_anneal_frac"),
    ((*TR, "n_T"), 0, "training.ising.n_T"),
    ((*TR, "n_field"), 2.5, "training.ising.n_field"),
    ((*TR, "samples_per_condition"), 1, "training.ising.samples_per_condition"),
    ((*TR, "grid_step_frac"), 2.0, "training.ising.grid_step_frac"),
    ((*TR, "standardise"), "yes", "training.ising.standardise"),
    ((*TR, "ao_grad_steps"), 0, "training.ising.ao_grad_steps"),
    ((*TR, "steps_per_pass"), 0, "training.ising.steps_per_pass"),
    ((*TR, "grad_chunk"), 0, "training.ising.grad_chunk"),
    ((*TR, "mam_lambda"), -1.0, "training.ising.mam_lambda"),
    ((*TR, "gibbs_sweeps"), 0, "training.ising.gibbs_sweeps"),
    ((*TR, "gibbs_block"), 0, "training.ising.gibbs_block"),
    ((*TR, "refill_every"), 0, "training.ising.refill_every"),
    ((*TR, "checkpoint_every"), 0, "training.ising.checkpoint_every"),
    ((*TR, "log_every"), -1, "training.ising.log_every"),
    ((*TR, "seed"), "abc", "training.ising.seed"),
    ((*TR, "seed"), -1, "training.ising.seed"),
    ((*TR, "device"), "tpu", "training.ising.device"),
    ((*TR, "device"), "cuda:x", "training.ising.device"),
    ((*TR, "precision"), "fp8", "training.ising.precision"),
    ((*TR, "max_minutes"), 0, "training.ising.max_minutes"),
    ((*TR, "max_minutes"), INF, "training.ising.max_minutes"),
    ((*TR, "per_model"), {"made": {"steps": 10}}, "training.ising.per_model"),
    ((*TR, "per_model"), {"mam-mlp": {"lr": -1.0}}, "training.ising.per_model.mam-mlp.lr"),
    ((*TR, "per_model"), {"mam-mlp": {"per_model": {}}}, "training.ising.per_model.mam-mlp.per_model"),
    ((*TR, "per_size"), {"four": {"steps": 3}}, "training.ising.per_size"),
    ((*TR, "per_size"), {"4x4": {"stepz": 3}}, "training.ising.per_size.4x4.stepz"),
    ((*TR, "per_size"), {"4x4": {"per_model": {"mam-mlp": {"lr": -1.0}}}},
     "training.ising.per_size.4x4.per_model.mam-mlp.lr"),
    (("training", "cuau", "per_size"), {"2x2x4": {"per_model": {"gpt": {}}}},
     "training.cuau.per_size.2x2x4.per_model"),
    # sampling
    ((*SA, "n_samples"), 1, "sampling.n_samples"),
    ((*SA, "n_samples"), True, "sampling.n_samples"),
    ((*SA, "n_samples"), 1e4, "sampling.n_samples"),
    ((*SA, "n_orders"), 0, "sampling.n_orders"),
    ((*SA, "order"), "raster", "sampling.order"),
    ((*SA, "batch_size"), 0, "sampling.batch_size"),
    ((*SA, "symmetrised"), "yes", "sampling.symmetrised"),
    ((*SA, "n_sample"), 10, "sampling.n_sample"),
    ((*SA, "ising"), {"n_sample": 10}, "sampling.ising.n_sample"),
    ((*SA, "ising"), {"per_model": {"made": {"n_samples": 10}}}, "sampling.ising.per_model"),
    ((*SA, "cuau"), {"per_model": {"ao-arm-mlp": {"n_samples": 1}}}, "sampling.cuau.per_model.ao-arm-mlp.n_samples"),
    ((*SA, "ising"), {"per_size": {"4x4": {"n_orders": 0}}}, "sampling.ising.per_size.4x4.n_orders"),
    ((*SA, "cuau"), {"per_model": {"mam-transformer": {"order": "fixed", "n_orders": 2}}}, "sampling.cuau.n_orders"),
    ((*SA, "order"), "fixed", "sampling.ising.n_orders"),  # n_orders 4 of the laptop config with one order
    (("metrics", "n_boot"), 0, "metrics.n_boot"),
    (("metrics", "n_boot"), 5.5, "metrics.n_boot"),
    (("metrics", "nboot"), 200, "metrics.nboot"),
    # references
    ((*RE, "exact", "max_transfer_L"), 20, "reference.exact.max_transfer_L"),
    ((*RE, "mcmc", "ising", "n_chains"), 1, "reference.mcmc.ising.n_chains"),
    ((*RE, "mcmc", "ising", "thin_sweeps"), 0, "reference.mcmc.ising.thin_sweeps"),
    ((*RE, "mcmc", "cuau", "burn_in_sweeps"), -10, "reference.mcmc.cuau.burn_in_sweeps"),
    ((*RE, "mcmc", "cuau", "n_sample"), 10, "reference.mcmc.cuau.n_sample"),
    ((*RE, "mcmc", "cuau", "saved_per_condition"), 0.5, "reference.mcmc.cuau.saved_per_condition"),
    ((*RE, "mcmc", "alloy"), {}, "reference.mcmc.alloy"),
    ((*RE, "wang_landau", "schedule"), "fast", "reference.wang_landau.schedule"),
    ((*RE, "wang_landau", "ln_f_final"), 2.0, "reference.wang_landau.ln_f_final"),
    ((*RE, "wang_landau", "flatness"), 1.0, "reference.wang_landau.flatness"),
    ((*RE, "wang_landau", "overlap"), 0.0, "reference.wang_landau.overlap"),
    ((*RE, "wang_landau", "n_windows"), 0, "reference.wang_landau.n_windows"),
    ((*RE, "metadynamics", "sizes"), ["4x4"], "reference.metadynamics.sizes[0]"),
    ((*RE, "metadynamics", "T"), {"min": 0.0, "max": 500.0, "step": 100.0}, "reference.metadynamics.T.min"),
    ((*RE, "metadynamics", "mod_factor_final"), 2.0, "reference.metadynamics.mod_factor_final"),
    ((*RE, "metadynamics", "production_blocks"), 1, "reference.metadynamics.production_blocks"),
    ((*RE, "metadynamics", "backend"), "torch", "reference.metadynamics.backend"),
    ((*RE, "metadynamics", "per_size"), {"8x8x8": {"production_sweeps": 10}}, "reference.metadynamics.per_size.8x8x8"),
    ((*RE, "metadynamics", "per_size"), {"2x2x4": {"production_sweeps": -1}},
     "reference.metadynamics.per_size.2x2x4.production_sweeps"),
    ((*RE, "metadynamics", "per_size"), {"2x2x4": {"T": {"values": [300]}}}, "reference.metadynamics.per_size.2x2x4.T"),
    ((*RE, "phase_diagram", "tol"), -1e-5, "reference.phase_diagram.tol"),
    # past the trained size
    (("scaling", "ising", "from"), "16x16", "scaling.ising.from"),
    (("scaling", "ising"), {"from": "8x8", "to": ["16x16"], "stride": 9}, "scaling.ising.stride"),  # out-painting's
    (("scaling", "ising", "transfer"), ["6x6"], "scaling.ising.transfer[0]"),
    (("scaling", "ising", "refine"), {"n_chains": 1}, "scaling.ising.refine.n_chains"),
    (("scaling", "ising", "refine"), {"n_chains": 5000}, "scaling.ising.refine.n_chains"),  # 2000 samples there
    (("scaling", "ising", "refine"), {"sweeps": 10}, "scaling.ising.refine.sweeps"),
    (("scaling", "ising", "refine"), {"thin_sweeps": 0}, "scaling.ising.refine.thin_sweeps"),
    (("scaling", "ising", "refine"), {"cluster_updates": -1}, "scaling.ising.refine.cluster_updates"),
    (("scaling", "ising", "refine"), {"ladder_chains": 1}, "scaling.ising.refine.ladder_chains"),
    (("scaling", "ising", "refine"), {"ladder_chains": 3}, "scaling.ising.refine.ladder_chains"),  # halves of 1
    (("scaling", "ising", "refine"), {"ladder_chains": 5000}, "scaling.ising.refine.ladder_chains"),
    (("scaling", "ising", "refine"), {"ladder_rungs": 2}, "scaling.ising.refine.ladder_rungs"),
    (("scaling", "ising", "refine"), {"ladder_top_rungs": 8}, "scaling.ising.refine.ladder_top_rungs"),
    (("scaling", "ising", "refine"), {"ladder_chains": 64, "ladder_rungs": -1}, "scaling.ising.refine.ladder_rungs"),
    (("scaling", "ising", "refine"), {"ladder_every_sweep": True, "replica_exchange": True, "ladder_chains": 64},
     "scaling.ising.refine.ladder_every_sweep"),  # exchanges every sweep tie the links
    (("scaling", "ising", "refine"), {"ladder_n_samples": 40}, "scaling.ising.refine.ladder_n_samples"),
    (("scaling", "cuau", "refine"), {"cluster_updates": 2}, "scaling.cuau.refine.cluster_updates"),
    (("scaling", "ising", "refine"), {"composition_windows": True}, "scaling.ising.refine.composition_windows"),
    (("scaling", "cuau", "refine"), {"composition_windows": False, "window_thin_sweeps": 50},
     "scaling.cuau.refine.window_thin_sweeps"),
    (("scaling", "ising", "per_size"), {"256x256": {"T": {"values": [2.0]}}}, "scaling.ising.per_size.256x256"),
    (("scaling", "ising", "per_size"), {"16x16": {"field": {"values": [0.0, 9.0]}}},
     "scaling.ising.per_size.16x16.field"),
    (("scaling", "ising", "per_size"), {"16x16": {"n_samples": 5}}, "scaling.ising.per_size.16x16.n_samples"),
    (("scaling", "ising", "per_size"), {"16x16": {"models": ["twobo"]}}, "scaling.ising.per_size.16x16.models[0]"),
    (("scaling", "ising", "models"), ["fo-arm-mlp"], "scaling.ising.models[0]"),  # fixed to its box
    (("scaling", "ising", "finetune", "8x8"), {"from": "4x4"}, "scaling.ising.finetune.8x8"),  # trained from scratch
    (("scaling", "ising", "finetune", "6x6"), {"from": "8x8"}, "scaling.ising.finetune.6x6"),  # smaller than from
    (("scaling", "ising", "finetune", "16x16", "from"), "4x4", "scaling.ising.finetune.16x16.from"),
    (("scaling", "ising", "finetune", "16x16", "from"), "16x16", "scaling.ising.finetune.16x16.from"),  # a cycle
    (("scaling", "ising", "finetune", "16x16"), {"models": ["fo-pixelcnn"]}, "scaling.ising.finetune.16x16.from"),
    (("scaling", "ising", "finetune", "16x16", "models"), ["ao-arm-mlp"], "scaling.ising.finetune.16x16.models[0]"),
    (("scaling", "ising", "finetune", "32x32", "models"), ["ao-transformer"],
     "scaling.ising.finetune.32x32.models"),  # the 16x16 stage it starts from trains fo-pixelcnn alone
    (("scaling", "ising", "per_size", "64x64", "from"), "4x4", "scaling.ising.per_size.64x64.from"),
    (("scaling", "ising", "per_size", "12x12", "from"), "16x16", "scaling.ising.per_size.12x12.from"),  # no stage
    (("scaling", "ising"), {"models": ["fo-pixelcnn"], "from": "8x8", "to": ["16x16"]},
     "scaling.ising.models[0]"),  # fixed order: transferred, never out-painted
]


def _set(cfg, path, value):
    d = cfg
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = value


def _bad_id(b) -> str:
    return ".".join(map(str, b[0])) + "=" + repr(b[1])[:30]


def test_at_least_100_kinds_of_bad_config():
    assert len({_bad_id(b) for b in BAD}) == len(BAD) >= 100


@pytest.mark.parametrize(("path", "value", "key"), BAD, ids=[_bad_id(b) for b in BAD])
def test_bad_values_are_refused_by_name(default_config, path, value, key):
    cfg = copy.deepcopy(default_config)
    _set(cfg, path, value)
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.key == key, str(err.value)
    assert str(err.value).startswith(f"config key '{key}'"), str(err.value)


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        ({"training": {"gpus": 2, "ising": {"samples_per_condition": 41}}}, "training.ising.samples_per_condition",
         "a multiple of 2"),
        ({"systems": {"ising": {"field": {"values": [0.0, 0.5, 1.0]}}}}, "sampling.symmetrised", "symmetric about 0"),
        ({"reference": {"metadynamics": {"sizes": ["2x2x4"], "per_size": {}}}, "systems": {"cuau": None},
          "scaling": {"cuau": None}},
         "reference.metadynamics.sizes", "systems.cuau"),
    ],
    ids=["gpus-divide-batch", "symmetrised-needs-symmetric-field", "metadynamics-needs-cuau"],
)
def test_settings_that_only_fail_together(default_config, change, key, fragment):
    cfg = copy.deepcopy(default_config)
    for top, block in change.items():
        for k, v in block.items():
            if v is None:
                cfg[top].pop(k)
            elif isinstance(v, dict) and isinstance(cfg[top].get(k), dict):
                cfg[top][k].update(v)
            else:
                cfg[top][k] = v
    with pytest.raises(ConfigError, match=fragment) as err:
        load_config(cfg)
    assert err.value.key == key


def test_config_files_read_strictly(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("seed: 1\nsystems:\n  ising: {}\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"line 4: key 'seed' is given twice.*first on line 1"):
        read_config_file(dup)
    nested = tmp_path / "nested.yaml"
    nested.write_text("training:\n  ising:\n    lr: 1.0e-3\n    steps: 10\n    lr: 3.0e-3\n")
    with pytest.raises(ConfigError, match=r"line 5: key 'lr' is given twice"):
        read_config_file(nested)
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: 1\nsystems:\n  ising: {J: 1\n")
    with pytest.raises(ConfigError, match=r"broken.yaml, line \d+, column \d+: not valid YAML"):
        read_config_file(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping"):
        read_config_file(listy)


def test_scaling_per_size_grid(default_config):
    """scaling.<system>.per_size.<size> sets the grid of one target (its references' too); the other
    targets keep the block's grid."""
    from lattherm.config import grid_at, system_grid

    cfg = copy.deepcopy(default_config)
    cfg["scaling"]["ising"]["per_size"]["16x16"] = {"field": {"values": [0.0]}, "T": {"values": [2.0, 2.3]}}
    cfg = load_config(cfg)
    T, field = grid_at(cfg, "ising", "16x16")
    assert T.tolist() == [2.0, 2.3] and field.tolist() == [0.0]
    for got, full in zip(grid_at(cfg, "ising", "12x12"), system_grid(cfg, "ising"), strict=True):
        np.testing.assert_array_equal(got, full)


def test_scaling_models_per_size(default_config):
    """A size-free fixed-order model (fo-pixelcnn) is size-transferred, never out-painted, and
    per_size.<size>.models picks the block's models at one target."""
    from lattherm.config import scaling_jobs, scaling_tables

    cfg = copy.deepcopy(default_config)
    block = cfg["scaling"]["ising"]
    block.update(to=["16x16"], transfer=["16x16", "32x32"], models=["ao-transformer", "fo-pixelcnn"])
    block["per_size"] = {"32x32": {"models": ["fo-pixelcnn"], "field": {"values": [0.0]},
                                   "refine": {"ladder_chains": 500}}}  # 500 samples per condition there
    cfg = load_config(cfg)
    assert scaling_tables(cfg, "ising", "16x16") == [("ao-transformer", "outpaint-8x8"),
                                                     ("ao-transformer", "transfer-8x8"),
                                                     ("fo-pixelcnn", "transfer-8x8")]  # fmt: skip
    assert scaling_tables(cfg, "ising", "32x32") == [("fo-pixelcnn", "transfer-8x8")]
    assert ("ising", "32x32", "ao-transformer", "transfer-8x8") not in scaling_jobs(cfg)


def test_finetune_stages(default_config):
    """scaling.<system>.finetune: a chain of trainings at larger boxes, each from the previous
    one's checkpoint, and the transfer tables of a size with per_size.<size>.from use its weights."""
    from lattherm.config import finetune_from, scaling_tables, transfer_source

    cfg = load_config(copy.deepcopy(default_config))
    assert cfg["scaling"]["ising"]["finetune"] == {"16x16": {"from": "8x8", "models": ["fo-pixelcnn"]},
                                                   "32x32": {"from": "16x16", "models": ["fo-pixelcnn"]}}
    assert finetune_from(cfg, "ising", "16x16", "fo-pixelcnn") == "8x8"
    assert finetune_from(cfg, "ising", "32x32", "fo-pixelcnn") == "16x16"
    assert finetune_from(cfg, "ising", "16x16", "ao-transformer") is None  # not a model of the stage
    assert finetune_from(cfg, "ising", "8x8", "fo-pixelcnn") is None and finetune_from(cfg, "cuau", "4x4x8",
                                                                                        "ao-transformer") is None
    assert transfer_source(cfg, "ising", "64x64") == "transfer-32x32"
    assert transfer_source(cfg, "ising", "128x128") == "transfer-32x32"
    assert transfer_source(cfg, "ising", "16x16") == "transfer-8x8"  # per_size.16x16 sets no from
    assert scaling_tables(cfg, "ising", "32x32") == [("fo-pixelcnn", "transfer-16x16")]
    assert scaling_tables(cfg, "ising", "12x12") == [("ao-transformer", "transfer-8x8")]
    # a stage's training settings: training.<system>.per_size.<size>, grid points
    train = train_settings(cfg, "ising", "fo-pixelcnn", "32x32")
    assert train["grid"] == "points" and train["beta_anneal_frac"] == 0.0 and train["steps"] == 500
    # without the stages the tables fall back to the trained size's weights where from is unset
    bare = copy.deepcopy(default_config)
    bare["scaling"]["ising"]["finetune"] = {}
    with pytest.raises(ConfigError, match=r"scaling\.ising\.per_size\.(32|64|128)x\1\.from"):
        load_config(bare)
    for size in ("32x32", "64x64", "128x128"):
        bare["scaling"]["ising"]["per_size"][size].pop("from")
    assert scaling_tables(load_config(bare), "ising", "64x64") == [("fo-pixelcnn", "transfer-8x8")]


def test_scaling_refine_per_size(default_config):
    """per_size.<size>.refine overrides the block's refinement settings at one target alone, and
    is checked against that target's sample counts."""
    from lattherm.config import refine_settings

    cfg = copy.deepcopy(default_config)
    block = cfg["scaling"]["ising"]
    block["per_size"]["16x16"] = {"models": ["ao-transformer"],
                                  "refine": {"ladder_rungs": 3, "batch_size": 64, "burn_in_sweeps": 700}}  # fmt: skip
    loaded = load_config(cfg)
    own, other = refine_settings(loaded, "ising", "16x16"), refine_settings(loaded, "ising", "12x12")
    assert own["ladder_rungs"] == 3 and own["batch_size"] == 64 and own["n_chains"] == block["refine"]["n_chains"]
    assert own["burn_in_sweeps"] == 700 and other["burn_in_sweeps"] == block["refine"]["burn_in_sweeps"] != 700
    assert other["ladder_rungs"] == 0 and other["batch_size"] == 1024
    block["per_size"]["16x16"]["refine"] = {"burn_in_sweeps": -1}
    with pytest.raises(ConfigError, match=r"scaling\.ising\.per_size\.16x16\.refine\.burn_in_sweeps"):
        load_config(cfg)
    block["per_size"]["16x16"]["refine"] = {"ladder_chains": 5000}  # 1000 samples per condition there
    with pytest.raises(ConfigError, match=r"scaling\.ising\.per_size\.16x16\.refine\.ladder_chains"):
        load_config(cfg)
    del block["refine"]
    block["per_size"] = {"16x16": {"models": ["ao-transformer"], "refine": {"ladder_rungs": 1}}}
    with pytest.raises(ConfigError, match=r"scaling\.ising\.per_size\.16x16\.refine"):
        load_config(cfg)


def test_grid_values_and_condition_grid():
    np.testing.assert_allclose(grid_values({"min": 0.2, "max": 0.5, "step": 0.1}), [0.2, 0.3, 0.4, 0.5], atol=0)
    # a range that is not a whole number of steps stops below max
    np.testing.assert_allclose(grid_values({"min": 0.0, "max": 1.0, "step": 0.3}), [0.0, 0.3, 0.6, 0.9], atol=0)
    grid = condition_grid([1.0, 2.0], [-1.0, 0.0, 1.0])
    assert grid.shape == (6, 2) and grid[:3, 0].tolist() == [1.0, 1.0, 1.0] and grid[3:, 1].tolist() == [-1, 0, 1]
    with pytest.raises(ValueError, match="values"):
        grid_values({"min": 1.0, "max": 2.0, "step": 1e-12})


def test_training_gpus_per_model(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["training"]["gpus"] = 1
    cfg["training"]["gpus_per_model"] = {"mam-transformer": 4}
    cfg = load_config(cfg)
    assert training_gpus(cfg, "mam-transformer") == 4
    assert training_gpus(cfg, "ao-arm-mlp") == 1 and training_gpus(cfg) == 1


def test_training_per_size_overrides(default_config):
    """training.<system>.per_size.<size> (and its per_model) win over the system block and
    its per_model; other sizes keep the system's settings."""
    cfg = copy.deepcopy(default_config)
    block = cfg["training"]["ising"]
    block["per_model"] = {"mam-mlp": {"steps": 9000, "lr": 3e-3}}
    block["per_size"] = {"4x4": {"steps": 3000, "per_model": {"mam-mlp": {"steps": 1500}}}}
    cfg = load_config(cfg)
    assert train_settings(cfg, "ising", "mam-mlp", "8x8")["steps"] == 9000
    s4 = train_settings(cfg, "ising", "mam-mlp", "4x4")
    assert s4["steps"] == 1500 and s4["lr"] == 3e-3  # size's model override; model's lr kept
    assert train_settings(cfg, "ising", "fo-arm-mlp", "4x4")["steps"] == 3000
    assert train_settings(cfg, "ising", "fo-arm-mlp", "8x8")["steps"] == block["steps"]


def test_sampling_settings_per_system_model_and_size(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["sampling"].update(n_samples=1000, n_orders=4, symmetrised=True)
    cfg["sampling"]["ising"] = {"per_model": {"fo-arm-mlp": {"n_samples": 10000}},
                                "per_size": {"4x4": {"n_samples": 2000}}}  # fmt: skip
    cfg["sampling"]["cuau"] = {"n_samples": 10000, "n_orders": 1}
    cfg = load_config(cfg)
    assert sampling_settings(cfg, "ising", "fo-arm-mlp", "8x8") == {
        "n_samples": 10000, "symmetrised": True, "n_orders": 4, "order": "random",
        "batch_size": cfg["sampling"]["batch_size"]}  # fmt: skip
    assert sampling_settings(cfg, "ising", "ao-arm-mlp", "8x8")["n_samples"] == 1000
    assert sampling_settings(cfg, "ising", "fo-arm-mlp", "4x4")["n_samples"] == 2000  # size wins
    cu = sampling_settings(cfg, "cuau", "ao-arm-mlp", "2x2x4")
    assert (cu["n_samples"], cu["n_orders"], cu["symmetrised"]) == (10000, 1, False)  # no flip symmetry


def test_metadynamics_per_size_settings(default_config):
    """reference.metadynamics.per_size.<cell> overrides the production run of one cell only."""
    from lattherm.config import metadynamics_settings

    cfg = copy.deepcopy(default_config)
    meta = cfg["reference"]["metadynamics"]
    meta["per_size"] = {meta["sizes"][-1]: {"production_sweeps": 12345, "min_batches": 8}}
    cfg = load_config(cfg)
    got = metadynamics_settings(cfg, meta["sizes"][-1])
    assert got["production_sweeps"] == 12345 and got["min_batches"] == 8 and "T" not in got and "per_size" not in got
    other = metadynamics_settings(cfg, meta["sizes"][0])
    assert other["production_sweeps"] == cfg["reference"]["metadynamics"]["production_sweeps"] != 12345
