"""Self-describing checkpoints (DESIGN §6 ``checkpoint.pt``), loadable with ``weights_only=True``.

A checkpoint is a plain dict of tensors, dicts, lists, str, int, float, bool and None::

    format        "lattherm-checkpoint-1"
    model_spec    model.spec(): {name, config (dict), cond_box}
    model_state   state_dict of the model
    system        {name, size, n_sites, params}      (params: Ising {J}; CuAu {eci})
    cond_box      [[T_min, T_max], [field_min, field_max]]
    train_config  dataclasses.asdict(TrainConfig)
    step, finished, wall_s
    optimizer, scheduler           state dicts
    rng           {train_generator, torch_cpu, torch_cuda (list), numpy, python}   (rank 0's)
    grid          DriftingGrid.state_dict()
    buffer        GibbsBuffer.state_dict() (MAMs) or None                          (rank 0's)
    world_size    number of training processes (1; absent in older checkpoints: 1)
    ranks         None for one process; else a list over ranks of {rng, buffer}, so that a run
                  resumed with the same number of processes continues every rank's stream
    log           {column: list} of the training log so far

Written atomically (temporary file + rename).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lattherm.io import atomic_path
from lattherm.models import build_from_spec

__all__ = [
    "FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint", "system_record", "check_system", "load_model",
]

FORMAT = "lattherm-checkpoint-1"


def system_record(system) -> dict:
    """``{name, size, n_sites, params}`` of a system (plain types only; ``params``: what besides
    the size defines it, e.g. Ising ``J``, CuAu ``eci``, a disorder instance)."""
    params = system.params() if hasattr(system, "params") else {}
    return {"name": system.name, "size": system.size, "n_sites": int(system.n_sites), "params": params}


def check_system(record: dict, system) -> None:
    """Fail fast when ``system`` is not the one a checkpoint was trained on."""
    mine = system_record(system)
    if mine != record:
        diff = sorted(k for k in set(mine) | set(record) if mine.get(k) != record.get(k))
        raise ValueError(
            f"checkpoint was trained on {record['name']} {record['size']} and differs from the given "
            f"system ({mine['name']} {mine['size']}) in {diff}"
        )


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    with atomic_path(Path(path), suffix=".pt") as tmp:
        torch.save(state, tmp)


class CheckpointError(ValueError):
    """A checkpoint file cannot be read (truncated, corrupt, tampered with, or not ours)."""


def load_checkpoint(path: str | os.PathLike, *, map_location="cpu") -> dict:
    """The state dict of a checkpoint, loaded with ``weights_only=True``; :class:`CheckpointError`
    naming the file for anything that is not a complete lattherm checkpoint."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated zip raises OSError/RuntimeError, a tampered one UnpicklingError
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "it may be truncated or corrupt: delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a lattherm checkpoint (format {FORMAT!r})")
    return state


def load_model(path: str | os.PathLike, *, system, device="cpu"):
    """The trained model of a checkpoint (eval mode, on ``device``), checked against ``system``."""
    state = load_checkpoint(path, map_location=device)
    check_system(state["system"], system)
    model = build_from_spec(state["model_spec"], system=system)
    if state["train_config"].get("precision") == "float64":
        model = model.double()
    model.load_state_dict(state["model_state"])
    return model.to(device).eval()
