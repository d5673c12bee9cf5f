"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 17 grey levels 0..16).

Fixed split: a permutation of all 1,797 images drawn with
``numpy.random.default_rng(0)``; the first 1,497 are ``train``, the last 300
``test``. Images are ``(1, 8, 8)`` floats with integer values 0..16 (data space);
labels 0..9 are ``train_y`` / ``test_y`` (``spec.classes = 10``).

``binarize`` gives the small stand-in for binarised MNIST (dataset name
``digits_binary``): ``threshold`` sets a pixel to 16 when ``level / 16 > threshold`` and to 0
otherwise; ``stochastic`` sets it to 16 with probability ``level / 16`` (Salakhutdinov &
Murray 2008), drawn once with ``numpy.random.default_rng(seed)`` so that the dataset is
fixed. The pixels keep the 17-level alphabet (only 0 and 16 occur), so the digits feature
extractor and pictures work unchanged, and a Bernoulli likelihood is a mass over {0, 16}.
"""

from __future__ import annotations

import numpy as np
import torch

from typing import Literal

from genlab.data.base import Dataset, image_spec, labelled_dataset
from genlab.kwargs import NonNegativeInt, Probability

N_TEST = 300


def digits(*, binarize: Literal["none", "threshold", "stochastic"] = "none", threshold: Probability = 0.5,
           seed: NonNegativeInt = 0) -> Dataset:
    """The embedded default image dataset: ``(1, 8, 8)``, 17 levels (optionally binarised)."""
    from sklearn.datasets import load_digits

    if binarize not in ("none", "threshold", "stochastic"):
        raise ValueError(f"digits: binarize must be none, threshold or stochastic, got {binarize!r}")
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.images))
    images = bunch.images[order]
    if binarize == "threshold":
        images = np.where(images / 16.0 > threshold, 16.0, 0.0)
    elif binarize == "stochastic":
        images = np.where(np.random.default_rng(seed).random(images.shape) < images / 16.0, 16.0, 0.0)
    x = torch.tensor(images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target[order])
    spec = image_spec("digits" if binarize == "none" else "digits_binary", (1, 8, 8), levels=17)
    return labelled_dataset(spec, x[:-N_TEST], x[-N_TEST:], y[:-N_TEST], y[-N_TEST:], classes=10)
