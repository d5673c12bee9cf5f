"""genlab: deep generative models — train, sample, evaluate and compare.

Model, learning principle and evaluation are independent axes (see DESIGN.md).
"""

__version__ = "0.1.0"


def load(run_dir, *, ema=None, step=None):
    """Rebuild a trained model from a run directory (see :func:`genlab.api.load`)."""
    from genlab.api import load as _load

    return _load(run_dir, ema=ema, step=step)


__all__ = ["load", "__version__"]
