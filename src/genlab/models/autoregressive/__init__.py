"""Autoregressive models over discrete levels: ``p(x) = prod_i p(x_i | x_<i)``.

- :class:`PixelCNN`: gated PixelCNN for images (arXiv 1606.05328), categorical or
  discretised-logistic-mixture outputs (arXiv 1701.05517).
- :class:`WaveNet`: dilated causal convolutions for sequences (arXiv 1609.03499).
- :class:`Transformer`: a decoder-only causal Transformer (arXiv 1706.03762).

See ``docs/autoregressive.md``.
"""

from genlab.models.autoregressive.base import AbstractAutoregressive, AbstractCachedAutoregressive
from genlab.models.autoregressive.pixelcnn import PixelCNN
from genlab.models.autoregressive.transformer import Transformer
from genlab.models.autoregressive.wavenet import WaveNet

__all__ = ["AbstractAutoregressive", "AbstractCachedAutoregressive", "PixelCNN", "Transformer", "WaveNet"]
