"""Config checks: the schema and lattherm.config.check_config reject every bad value by name."""

import copy

import jsonschema
import numpy as np
import pytest
import yaml
from conftest import ROOT

from lattherm.conditions import condition_grid, grid_values
from lattherm.config import ConfigError, check_config, ising_sizes, system_grid


@pytest.fixture(scope="module")
def default_config() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    return yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def test_default_config_is_valid(default_config, schema):
    jsonschema.validate(default_config, schema)
    check_config(default_config)
    assert ising_sizes(default_config) == ["4x4", "8x8"]
    T, h = system_grid(default_config, "ising")
    assert len(T) == 21 and T[0] == 1.5 and T[-1] == 3.5 and T[7] == 2.2
    np.testing.assert_array_equal(h, [-1.0, -0.5, 0.0, 0.5, 1.0])


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name, schema):
    cfg = yaml.safe_load((ROOT / "config" / name).read_text())
    jsonschema.validate(cfg, schema)
    check_config(cfg)


def _walk(schema, path=""):
    yield path, schema
    for k, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{k}")


def test_every_schema_key_has_description_and_default(schema):
    for path, node in _walk(schema):
        if path == "":
            continue
        assert "description" in node, f"schema key {path} has no description"
        grid_leaf = path.rsplit(".", 1)[-1] in {"min", "max", "step", "values"}
        # a system's own block has no default on purpose: leaving it out means "do not run it"
        system_block = path.count(".") == 2 and path.startswith(".systems.")
        if not (grid_leaf or system_block):
            assert "default" in node, f"schema key {path} has no default"


# (key path, bad value, key named in the message)
BAD = [
    (("systems", "ising", "T", "min"), -1.0, "systems.ising.T.min"),
    (("systems", "ising", "T", "min"), 0.0, "systems.ising.T.min"),
    (("systems", "ising", "T", "max"), 1.0, "systems.ising.T.max"),  # reversed: min 1.5 > max 1.0
    (("systems", "ising", "T", "max"), 1.5, "systems.ising.T.max"),  # empty: min == max
    (("systems", "ising", "T", "step"), 0.0, "systems.ising.T.step"),
    (("systems", "ising", "field", "step"), 0, "systems.ising.field.step"),
    (("systems", "ising", "sizes"), [4, 1], "systems.ising.sizes[1]"),
    (("systems", "ising", "sizes"), [4, 2.5], "systems.ising.sizes[1]"),
    (("systems", "ising", "sizes"), ["8x8"], "systems.ising.sizes[0]"),
    (("systems", "ising", "sizes"), [], "systems.ising.sizes"),
    (("systems", "ising", "models"), ["ao-arm-mlp", "made"], "systems.ising.models[1]"),
    (("seed",), -5, "seed"),
    (("training", "ising", "stepz"), 10, "training.ising"),
    (("training", "ising", "lr"), -1.0, "training.ising"),
    (("models", "ao-arm-mlp", "depth"), 3, "models.ao-arm-mlp"),
    (("training", "gpus_per_model"), {"made": 2}, "training.gpus_per_model.made"),
    (("training", "gpus_per_model"), {"mam-mlp": -1}, "training.gpus_per_model.mam-mlp"),
    (("systems", "cuau", "sizes"), ["2x2x4", "4x4"], "systems.cuau.sizes[1]"),
    (("systems", "cuau", "T", "min"), -100, "systems.cuau.T.min"),
    (("systems", "cuau", "models"), ["gpt"], "systems.cuau.models[0]"),
    (("reference", "metadynamics", "sizes"), ["4x4"], "reference.metadynamics.sizes[0]"),
    (("reference", "metadynamics", "T"), {"min": 0.0, "max": 500.0, "step": 100.0}, "reference.metadynamics.T.min"),
    (("reference", "metadynamics", "mod_factor_final"), 2.0, "reference.metadynamics.mod_factor_final"),
]


def _set(cfg, path, value):
    d = cfg
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


@pytest.mark.parametrize(("path", "value", "key"), BAD, ids=[b[2] + "=" + repr(b[1]) for b in BAD])
def test_bad_values_are_rejected_by_name(default_config, path, value, key):
    cfg = copy.deepcopy(default_config)
    _set(cfg, path, value)
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert err.value.key == key
    assert f"'{key}'" in str(err.value) and "expected" in str(err.value)


def test_unknown_system_is_rejected(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["systems"]["isng"] = cfg["systems"].pop("ising")
    with pytest.raises(ConfigError, match=r"'systems.isng'.*one of \['ising', 'cuau'\]"):
        check_config(cfg)


def test_empty_values_list_is_rejected(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["systems"]["ising"]["field"] = {"values": []}
    with pytest.raises(ConfigError, match="systems.ising.field.values"):
        check_config(cfg)


def test_grid_values_and_condition_grid():
    np.testing.assert_allclose(grid_values({"min": 0.2, "max": 0.5, "step": 0.1}), [0.2, 0.3, 0.4, 0.5], atol=0)
    # a range that is not a whole number of steps stops below max
    np.testing.assert_allclose(grid_values({"min": 0.0, "max": 1.0, "step": 0.3}), [0.0, 0.3, 0.6, 0.9], atol=0)
    grid = condition_grid([1.0, 2.0], [-1.0, 0.0, 1.0])
    assert grid.shape == (6, 2) and grid[:3, 0].tolist() == [1.0, 1.0, 1.0] and grid[3:, 1].tolist() == [-1, 0, 1]


def test_training_gpus_per_model(default_config):
    from lattherm.config import training_gpus

    cfg = copy.deepcopy(default_config)
    cfg["training"]["gpus"] = 1
    cfg["training"]["gpus_per_model"] = {"mam-transformer": 4}
    check_config(cfg)
    assert training_gpus(cfg, "mam-transformer") == 4
    assert training_gpus(cfg, "ao-arm-mlp") == 1 and training_gpus(cfg) == 1


def test_training_per_size_overrides(default_config):
    """training.<system>.per_size.<size> (and its per_model) win over the system block and
    its per_model; other sizes keep the system's settings."""
    from lattherm.config import train_settings

    cfg = copy.deepcopy(default_config)
    block = cfg["training"]["ising"]
    block["per_model"] = {"mam-mlp": {"steps": 9000, "lr": 3e-3}}
    block["per_size"] = {"4x4": {"steps": 3000, "per_model": {"mam-mlp": {"steps": 1500}}}}
    check_config(cfg)
    assert train_settings(cfg, "ising", "mam-mlp", "8x8")["steps"] == 9000
    s4 = train_settings(cfg, "ising", "mam-mlp", "4x4")
    assert s4["steps"] == 1500 and s4["lr"] == 3e-3  # size's model override; model's lr kept
    assert train_settings(cfg, "ising", "fo-arm-mlp", "4x4")["steps"] == 3000
    assert train_settings(cfg, "ising", "fo-arm-mlp", "8x8")["steps"] == block["steps"]


def test_sampling_settings_per_system_model_and_size(default_config):
    from lattherm.config import sampling_settings

    cfg = copy.deepcopy(default_config)
    cfg["sampling"].update(n_samples=1000, n_orders=4, symmetrised=True)
    cfg["sampling"]["ising"] = {"per_model": {"fo-arm-mlp": {"n_samples": 10000}},
                                "per_size": {"4x4": {"n_samples": 2000}}}  # fmt: skip
    cfg["sampling"]["cuau"] = {"n_samples": 10000, "n_orders": 1}
    check_config(cfg)
    assert sampling_settings(cfg, "ising", "fo-arm-mlp", "8x8") == {
        "n_samples": 10000, "symmetrised": True, "n_orders": 4, "order": "random",
        "batch_size": cfg["sampling"]["batch_size"]}  # fmt: skip
    assert sampling_settings(cfg, "ising", "ao-arm-mlp", "8x8")["n_samples"] == 1000
    assert sampling_settings(cfg, "ising", "fo-arm-mlp", "4x4")["n_samples"] == 2000  # size wins
    cu = sampling_settings(cfg, "cuau", "ao-arm-mlp", "2x2x4")
    assert (cu["n_samples"], cu["n_orders"], cu["symmetrised"]) == (10000, 1, False)  # no flip symmetry


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("sampling", "ising"), {"n_sample": 10}, "sampling.ising"),
        (("sampling", "ising"), {"per_model": {"made": {"n_samples": 10}}}, "sampling.ising.per_model.made"),
        (("sampling", "cuau"), {"per_model": {"ao-arm-mlp": {"n_samples": 1}}},
         "sampling.cuau.per_model.ao-arm-mlp.n_samples"),
        (("sampling", "ising"), {"per_size": {"4x4": {"n_orders": 0}}}, "sampling.ising.per_size.4x4.n_orders"),
        (("sampling", "ising"), {"per_size": {"four": {"n_orders": 2}}}, "sampling.ising.per_size"),
        (("sampling", "ising"), {"symmetrised": "yes"}, "sampling.ising.symmetrised"),
        (("sampling", "cuau"), {"order": "raster"}, "sampling.cuau.order"),
        (("sampling", "cuau"), {"per_model": {"mam-transformer": {"order": "fixed", "n_orders": 2}}},
         "sampling.cuau.per_model.mam-transformer.n_orders"),
        (("sampling",), {"n_samples": 1000, "order": "fixed", "n_orders": 4}, "sampling.n_orders"),
        (("training", "ising", "per_size"), {"4x4": {"stepz": 3}}, "training.ising.per_size.4x4"),
        (("training", "ising", "per_size"), {"4x4": {"per_model": {"mam-mlp": {"lr": -1.0}}}},
         "training.ising.per_size.4x4.per_model.mam-mlp"),
        (("training", "cuau", "per_size"), {"2x2x4": {"per_model": {"gpt": {}}}},
         "training.cuau.per_size.2x2x4.per_model.gpt"),
    ],
)
def test_bad_override_blocks_are_rejected_by_name(default_config, path, value, key):
    cfg = copy.deepcopy(default_config)
    _set(cfg, path, value)
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert err.value.key == key, str(err.value)
