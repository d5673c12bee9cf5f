"""Training engine: :func:`fit`, checkpoints, EMA, logging."""

from genlab.train.loop import RunDirError, TrainingDiverged, fit

__all__ = ["fit", "TrainingDiverged", "RunDirError"]
