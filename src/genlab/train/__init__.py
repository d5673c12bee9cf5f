"""Training engine: the config-free :class:`Trainer`, :func:`fit` (config -> run directory),
checkpoints, EMA, logging."""

from genlab.train.loop import RunDirError, fit
from genlab.train.trainer import Callback, Trainer, TrainingDiverged

__all__ = ["fit", "Trainer", "Callback", "TrainingDiverged", "RunDirError"]
