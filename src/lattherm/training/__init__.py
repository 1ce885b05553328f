"""Training of the neural samplers: REINFORCE for ARMs, the MAM objective, the drifting
condition grid, the training loop with self-describing checkpoints and resume, on one process or
several (DDP, :mod:`lattherm.distributed`)."""

from lattherm.training.checkpoint import load_checkpoint, load_model, save_checkpoint
from lattherm.training.conditions import DriftingGrid
from lattherm.training.mam import GibbsBuffer, consistency_terms, mam_loss
from lattherm.training.reinforce import advantage, reinforce_loss, sampled_step_log_prob
from lattherm.training.trainer import (
    TrainConfig,
    TrainingDiverged,
    check_train_config,
    sampling_seed,
    train,
    train_config_from_dict,
    train_process,
)

__all__ = [
    "TrainConfig",
    "TrainingDiverged",
    "train",
    "train_process",
    "train_config_from_dict",
    "check_train_config",
    "sampling_seed",
    "DriftingGrid",
    "reinforce_loss",
    "advantage",
    "sampled_step_log_prob",
    "GibbsBuffer",
    "mam_loss",
    "consistency_terms",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
