"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 17 grey levels 0..16).

Fixed split: a permutation of all 1,797 images drawn with
``numpy.random.default_rng(0)``; the first 1,497 are ``train``, the last 300
``test``. Images are ``(1, 8, 8)`` floats with integer values 0..16 (data space);
labels 0..9 are ``train_y`` / ``test_y`` (``spec.classes = 10``).
"""

from __future__ import annotations

import numpy as np
import torch

from genlab.data.base import Dataset, image_spec, labelled_dataset

N_TEST = 300


def digits() -> Dataset:
    """The embedded default image dataset: ``(1, 8, 8)``, 17 levels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.images))
    x = torch.tensor(bunch.images[order], dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target[order])
    spec = image_spec("digits", (1, 8, 8), levels=17)
    return labelled_dataset(spec, x[:-N_TEST], x[-N_TEST:], y[:-N_TEST], y[-N_TEST:], classes=10)
