"""Energy models: every system satisfies :class:`lattherm.systems.base.System` and describes
itself with a :class:`~lattherm.systems.base.SystemInfo` (``INFO`` in its module).

The registry :data:`REGISTRY` holds the ``INFO`` of every module of this package: adding a system
is adding its module (and its reference methods in :mod:`lattherm.reference`, and its config block
in the schema). Code elsewhere asks ``REGISTRY[name]`` (units, labels, symmetries, Gibbs block,
extra observables, which references apply) instead of testing a system's name.
"""

from __future__ import annotations

import importlib
import pkgutil

from lattherm.systems.base import SIZE_PATTERN, System, SystemInfo, parse_size, reduced_energy, spin_sum
from lattherm.systems.ising import IsingSystem

__all__ = [
    "System",
    "SystemInfo",
    "IsingSystem",
    "make_system",
    "system_info",
    "parse_size",
    "reduced_energy",
    "spin_sum",
    "REGISTRY",
    "SYSTEMS",
    "SIZE_PATTERN",
]


def _discover() -> dict[str, SystemInfo]:
    infos: dict[str, SystemInfo] = {}
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        info = getattr(importlib.import_module(f"{__name__}.{module.name}"), "INFO", None)
        if isinstance(info, SystemInfo):
            if info.name in infos:
                raise RuntimeError(f"two systems are named {info.name!r}")
            infos[info.name] = info
    return infos


#: name -> SystemInfo of every system module
REGISTRY: dict[str, SystemInfo] = _discover()
#: system names known to the workflow
SYSTEMS = tuple(REGISTRY)


def system_info(name: str) -> SystemInfo:
    """The :class:`SystemInfo` of ``name``; ``ValueError`` naming the known systems."""
    if name not in REGISTRY:
        raise ValueError(f"unknown system {name!r}; expected one of {list(SYSTEMS)}")
    return REGISTRY[name]


def make_system(name: str, size: str, **params) -> System:
    """Build a system from its name and size token (``make_system("ising", "8x8", J=1.0)``)."""
    return system_info(name).build(size, **params)
