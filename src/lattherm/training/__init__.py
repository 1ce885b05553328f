"""Training of the neural samplers: REINFORCE for ARMs (:mod:`.reinforce`), the MAM objectives
(:mod:`.mam`: the study's and the distilled), the drifting condition grid (:mod:`.conditions`),
self-describing checkpoints and the training state they hold (:mod:`.checkpoint`), and the
training loop with its objectives and :class:`TrainSpec` (:mod:`.trainer`), on one process or
several (DDP, :mod:`lattherm.distributed`)."""

from lattherm.training.checkpoint import TrainState, load_checkpoint, load_model, save_checkpoint
from lattherm.training.mam import GibbsBuffer, consistency_terms, distill_loss, mam_loss
from lattherm.training.reinforce import advantage, reinforce_loss, sampled_step_log_prob
from lattherm.training.trainer import (
    MAM,
    Reinforce,
    TrainConfig,
    TrainingDiverged,
    TrainSpec,
    check_train_config,
    sampling_seed,
    train,
    train_config_from_dict,
    train_process,
)

__all__ = [
    "TrainConfig",
    "TrainSpec",
    "TrainState",
    "TrainingDiverged",
    "Reinforce",
    "MAM",
    "train",
    "train_process",
    "train_config_from_dict",
    "check_train_config",
    "sampling_seed",
    "reinforce_loss",
    "advantage",
    "sampled_step_log_prob",
    "GibbsBuffer",
    "mam_loss",
    "distill_loss",
    "consistency_terms",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
