"""Training: the trainer (`trainer.py`) and its run directories (`runs.py`)."""

from miniclip.train.runs import run_dir, train_if_changed, trained_with
from miniclip.train.trainer import Trainer, TrainingDiverged, learning_rate, param_groups

__all__ = ["Trainer", "TrainingDiverged", "learning_rate", "param_groups", "run_dir", "train_if_changed",
           "trained_with"]
