"""genlab: deep generative models — train, sample, evaluate and compare.

Model, learning principle and evaluation are independent axes (see docs/design.md).
"""

__version__ = "0.1.0"


def load(run_dir, *, ema=None, step=None):
    """Rebuild a trained model from a run directory (see :func:`genlab.api.load`)."""
    from genlab.api import load as _load

    return _load(run_dir, ema=ema, step=step)


def load_run(run_dir, *, ema=None, step=None, sampler=None):
    """The model with the run's sampler and data spec (see :func:`genlab.api.load_run`)."""
    from genlab.api import load_run as _load_run

    return _load_run(run_dir, ema=ema, step=step, sampler=sampler)


__all__ = ["load", "load_run", "__version__"]
