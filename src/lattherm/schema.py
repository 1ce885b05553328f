"""The config schema (``lattherm/data/config.schema.yaml``) and the one validator of settings.

Every setting the project takes — a workflow config, a ``TrainConfig``, a model config, a
``--set KEY=VALUE`` of the command line — is checked here against its node of the schema, so
types, bounds and defaults are written once. :func:`check` raises :class:`ConfigError` naming
the key, the value and what was expected; numbers must be finite (no NaN or inf anywhere),
integers must be integers (not ``2.0``, not ``true``).
"""

from __future__ import annotations

import copy
import functools
import math
import numbers
from collections.abc import Mapping
from importlib import resources

import yaml

__all__ = ["ConfigError", "schema", "check", "node", "fill_defaults", "describe"]


class ConfigError(ValueError):
    """A setting is wrong; the message names the key, the value and what was expected."""

    def __init__(self, key: str, expected: str, got, *, message: str | None = None) -> None:
        super().__init__(message or f"config key '{key}': expected {expected}, got {got!r}")
        self.key = key


@functools.cache
def schema() -> dict:
    """The config schema, parsed (a fresh copy is not made: do not modify it)."""
    text = resources.files("lattherm").joinpath("data/config.schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def node(name: str) -> dict:
    """The schema's ``$defs`` entry ``name`` (e.g. ``"TrainConfig"``)."""
    return schema()["$defs"][name]


def _is_integer(_checker, v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(_checker, v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


@functools.cache
def _validator_class():
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
    return jsonschema.validators.extend(base, type_checker=checker)


def _validator(root: dict):
    return _validator_class()(root)


def _key(prefix: str, path) -> str:
    key = prefix
    for p in path:
        key = f"{key}[{p}]" if isinstance(p, int) else (f"{key}.{p}" if key else str(p))
    return key or "(top level)"


def _expected(err) -> str:
    """What the failing schema node asks for, in words."""
    v, s = err.validator, err.schema
    if v == "type":
        kinds = s["type"] if isinstance(s["type"], list) else [s["type"]]
        words = {"integer": "an integer", "number": "a finite number", "string": "a string", "boolean": "true or false",
                 "object": "a mapping", "array": "a list", "null": "null"}  # fmt: skip
        return " or ".join(words[k] for k in kinds)
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if v in bounds:
        return f"a value {bounds[v]} {s[v]}"
    if v == "enum":
        return f"one of {s['enum']}"
    if v == "pattern":
        return s.get("description") or f"a string matching {s['pattern']}"
    if v in ("minItems", "maxItems"):
        return f"a list of {'at least' if v == 'minItems' else 'at most'} {s[v]} items"
    if v == "uniqueItems":
        return "each item at most once"
    if v == "minProperties":
        return f"at least {s[v]} entries"
    if v == "required":
        return f"the keys {s['required']}"
    if v == "oneOf":
        return s.get("description", "one of the forms of this key").strip()
    return s.get("description", f"a value satisfying {v}")


def _first_error(validator, instance):
    import jsonschema

    return jsonschema.exceptions.best_match(validator.iter_errors(instance))


def check(instance, where: str | dict = "#", key: str = "") -> None:
    """Raise :class:`ConfigError` if ``instance`` breaks the schema node ``where`` (``"#"``: the
    whole config; a ``$defs`` name such as ``"TrainConfig"``; or a schema dict whose ``$ref``\\ s
    point into the config schema). ``key`` prefixes the key paths of the message."""
    if where == "#":
        root = schema()
    else:
        where = {"$ref": f"#/$defs/{where}"} if isinstance(where, str) else where
        root = {"$schema": schema()["$schema"], "$defs": schema()["$defs"], **where}
    err = _first_error(_validator(root), instance)
    if err is None:
        return
    path = list(err.absolute_path)
    if err.validator in ("additionalProperties", "unevaluatedProperties"):
        known = _known_keys(err.schema)
        extra = sorted(set(err.instance) - set(known)) if isinstance(err.instance, Mapping) else []
        name = _key(key, [*path, extra[0]]) if extra else _key(key, path)
        raise ConfigError(name, f"one of the keys {known}", extra[:1],
                          message=f"config key '{name}' is unknown; the keys here are {known}")  # fmt: skip
    if err.validator == "propertyNames":
        raise ConfigError(_key(key, path), _expected(err), err.instance)
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        raise ConfigError(_key(key, [*path, missing[0]] if missing else path), "a value (this key is required)", None)
    if err.validator == "oneOf" and isinstance(err.instance, Mapping) and err.context:
        inner = sorted(err.context, key=lambda e: -len(e.absolute_path))[0]
        if inner.validator not in ("required", "not"):
            raise ConfigError(_key(key, list(inner.absolute_path)), _expected(inner), inner.instance)
    raise ConfigError(_key(key, path), _expected(err), err.instance)


def _resolve(n: dict) -> dict:
    """``n`` with its ``$ref`` chain merged in (local refs only)."""
    out = {}
    while True:
        out = {**n, **out, "properties": {**n.get("properties", {}), **out.get("properties", {})}}
        ref = n.get("$ref")
        if not ref:
            break
        n = node(ref.rsplit("/", 1)[-1])
    out.pop("$ref", None)
    return out


def _known_keys(n: dict) -> list[str]:
    return sorted(_resolve(n).get("properties", {}))


#: ``$defs`` whose keys' defaults are not filled into the config: layers of overrides (a default
#: there would override the layer below) and the settings dataclasses (which fill their own)
_NO_FILL = {"trainLayer", "samplingLayer", "MADEConfig", "MLPConfig", "TransformerConfig"}


def fill_defaults(config: dict, where: dict | None = None) -> dict:
    """Fill the schema's defaults into ``config`` (in place, nested; returns it). Keys given are
    kept as they are: a ``{values: [...]}`` grid gets no ``min``/``max``/``step``."""
    n = schema() if where is None else where
    if n.get("$ref", "").rsplit("/", 1)[-1] in _NO_FILL:
        return config
    for k, sub in _resolve(n).get("properties", {}).items():
        default = sub.get("default", _resolve(sub).get("default"))
        if k not in config and default is not None:
            config[k] = copy.deepcopy(default)
        if isinstance(config.get(k), dict):
            fill_defaults(config[k], sub)
    return config


def describe(where: dict | None = None, prefix: str = ""):
    """``(key, schema node)`` of every key below ``where`` (default the whole config), depth first,
    following ``properties`` and the ``$defs`` they point to: the rows of config/README.md."""
    n = _resolve(schema() if where is None else where)
    for k, sub in n.get("properties", {}).items():
        key = f"{prefix}.{k}" if prefix else k
        full = _resolve(sub)
        yield key, full
        grid = "oneOf" in full  # a grid's min/max/step/values are described once, in its description
        if full.get("type") == "object" and "properties" in full and not grid:
            yield from describe(sub, key)
