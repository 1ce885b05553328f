"""Neural samplers: one file per architecture, built by name from a config.

``build_model(name, *, system, cond_box, config)`` with ``name`` one of :data:`MODEL_NAMES`;
``config`` is the architecture's dataclass, a dict of its fields (unknown keys are an error), or
None for the defaults. ``model.spec()`` gives ``{name, config, cond_box}`` for checkpoints and
:func:`build_from_spec` rebuilds the model from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from lattherm.conditions import CondBox
from lattherm.models.ao_transformer import AOTransformer, AOTransformerConfig
from lattherm.models.base import FourierCondition, Model
from lattherm.models.exact import ExactModel
from lattherm.models.gnn import MAMGNN, GNNConfig
from lattherm.models.mlp import MADE, MAMMLP, AnyOrderMLP, MADEConfig, MLPConfig
from lattherm.models.pixelcnn import PixelCNN, PixelCNNConfig
from lattherm.models.tensor_train import TensorTrain, TensorTrainConfig
from lattherm.models.transformer import MAMTransformer, TransformerConfig
from lattherm.models.twobo import TwoBo, TwoBoConfig
from lattherm.schema import check

__all__ = [
    "Model",
    "ExactModel",
    "FourierCondition",
    "MADE",
    "AnyOrderMLP",
    "MAMMLP",
    "MAMTransformer",
    "AOTransformer",
    "TwoBo",
    "PixelCNN",
    "MAMGNN",
    "TensorTrain",
    "MADEConfig",
    "MLPConfig",
    "TransformerConfig",
    "AOTransformerConfig",
    "TwoBoConfig",
    "PixelCNNConfig",
    "GNNConfig",
    "TensorTrainConfig",
    "MODEL_NAMES",
    "build_model",
    "build_from_spec",
    "is_size_free",
    "needs_couplings",
    "transfer_model",
    "model_config_from_dict",
    "check_model_config",
    "is_fixed_order",
    "asdict",
]

#: name → (model class, config dataclass)
_REGISTRY: dict[str, tuple[type[Model], type]] = {
    "fo-arm-mlp": (MADE, MADEConfig),
    "ao-arm-mlp": (AnyOrderMLP, MLPConfig),
    "mam-mlp": (MAMMLP, MLPConfig),
    "mam-transformer": (MAMTransformer, TransformerConfig),
    "ao-transformer": (AOTransformer, AOTransformerConfig),
    "twobo": (TwoBo, TwoBoConfig),
    "fo-pixelcnn": (PixelCNN, PixelCNNConfig),
    "mam-gnn": (MAMGNN, GNNConfig),
    "mam-tt": (TensorTrain, TensorTrainConfig),
}
MODEL_NAMES = tuple(_REGISTRY)


def _entry(name: str) -> tuple[type[Model], type]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; expected one of {list(MODEL_NAMES)}")
    return _REGISTRY[name]


def is_fixed_order(name: str) -> bool:
    """Whether the architecture ``name`` generates in one fixed order (the FO-ARMs)."""
    return bool(_entry(name)[0].fixed_order)


def needs_couplings(name: str) -> bool:
    """Whether architecture ``name`` is built from a two-body system's couplings (``twobo``)."""
    return _entry(name)[0].uses_couplings == "always"


def is_size_free(name: str) -> bool:
    """Whether the weights of architecture ``name`` define it on any box (size transfer)."""
    return bool(_entry(name)[0].size_free)


def model_config_from_dict(name: str, config: Mapping[str, Any] | Any | None = None):
    """The config dataclass of ``name`` from a dict (missing keys: defaults), instance or None."""
    cls = _entry(name)[1]
    if config is None:
        return cls()
    if is_dataclass(config) and not isinstance(config, type):
        if not isinstance(config, cls):
            raise TypeError(f"model {name!r} takes a {cls.__name__}, got a {type(config).__name__}")
        return config
    if not isinstance(config, Mapping):
        raise TypeError(
            f"config of {name!r} must be a {cls.__name__}, a dict or None, "
            f"got {type(config).__name__}"
        )
    check(dict(config), cls.__name__, key=f"models.{name}")  # types and bounds: the config schema
    return cls(**dict(config))


def check_model_config(name: str, config: Mapping[str, Any] | Any | None, *, periods: tuple[int, ...]) -> None:
    """Raise ``ValueError`` if the settings of ``name`` cannot build a model on a lattice of these
    periods (keys, bounds, and what depends on the lattice, e.g. Transformer heads against RoPE)."""
    model_cls, _ = _entry(name)
    model_cls.check_config(model_config_from_dict(name, config), periods)


def build_model(
    name: str, *, system, cond_box: CondBox, config: Mapping | Any | None = None
) -> Model:
    """Build architecture ``name`` for ``system`` (lattice, ``n_states``) over ``cond_box``."""
    model_cls, _ = _entry(name)
    cfg = model_config_from_dict(name, config)
    extra = {}
    if needs_couplings(name):
        if not hasattr(system, "pair_couplings"):
            raise ValueError(f"{name} needs a two-body system (pair couplings: ising, ea, chain), "
                             f"got {getattr(system, 'name', type(system).__name__)}")  # fmt: skip
        extra = {"couplings": system.pair_couplings(), "k_B": float(system.k_B)}
    elif model_cls.uses_couplings == "disordered" and hasattr(system, "pair_couplings"):
        from lattherm.systems import REGISTRY

        if REGISTRY[system.name].disordered:  # uniform couplings carry nothing
            extra = {"couplings": system.pair_couplings()}
    return model_cls(
        lattice=system.lattice, n_states=system.n_states, cond_box=cond_box, config=cfg, **extra
    )


def build_from_spec(spec: Mapping[str, Any], *, system) -> Model:
    """Rebuild a model from ``model.spec()`` (weights are loaded separately)."""
    missing = [k for k in ("name", "config", "cond_box") if k not in spec]
    if missing:
        raise ValueError(f"model spec is missing {missing}; got keys {sorted(spec)}")
    return build_model(
        spec["name"], system=system, cond_box=spec["cond_box"], config=spec["config"]
    )


def transfer_model(model: Model, system) -> Model:
    """The trained ``model``'s weights on ``system``'s lattice (size transfer: a model trained on
    8x8 evaluated on 12x12), for architectures whose parameters do not depend on the box; same
    dtype, device and mode. Raises ``ValueError`` for the others, or another number of states."""
    if not model.size_free:
        free = [n for n in MODEL_NAMES if is_size_free(n)]
        raise ValueError(f"{model.name} has weights tied to its box and cannot be transferred to another size; "
                         f"size-free architectures: {free}")  # fmt: skip
    if system.n_states != model.n_states:
        raise ValueError(f"{model.name} has {model.n_states} states per site, {system.name} {system.n_states}")
    param = next(iter(model.parameters()))
    moved = build_from_spec(model.spec(), system=system).to(dtype=param.dtype)
    moved.load_state_dict(model.state_dict())
    return moved.to(param.device).train(model.training)
