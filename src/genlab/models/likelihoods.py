"""Observation models ``p(x | z)`` for latent-variable models, as ``torch.distributions``
over **model space** (``x = (k - shift) / scale`` for data with ``levels``).

Every decoder emits per-pixel parameters and :func:`make_likelihood` turns them into a
distribution with batch shape ``(B,)`` and event shape ``event_shape`` (the per-pixel
terms are summed):

=================  ===========================================================  =========
name               distribution                                                 discrete
=================  ===========================================================  =========
``bernoulli``      one logit per pixel over the lowest and highest level        yes
                   (binarised data: only levels 0 and ``L-1`` occur)
``categorical``    ``L`` logits per pixel over the data's ``L`` levels          yes
``logistic``       discretised logistic (PixelCNN++, arXiv 1701.05517): bins    yes
                   of width ``1/scale`` around each level, open end bins
``gaussian``       ``N(mu, sigma^2)`` per pixel, ``sigma`` from the decoder     no
``gaussian_fixed`` ``N(mu, noise_std^2)`` with a fixed ``noise_std``            no
=================  ===========================================================  =========

Discrete likelihoods are probability masses of the levels: ``log_prob`` of a model-space
image is ``log P(k)``; their ``support.is_discrete`` is True so that metrics and
objectives add no change-of-variables term (:func:`is_discrete`). Continuous ones are
densities in model space; on discrete data they are used on uniformly dequantised
inputs (:func:`variational_input`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, constraints

from genlab.data.base import DataSpec
from genlab.data.dequantize import log_scale_offset, uniform_dequantize

LikelihoodName = Literal["bernoulli", "categorical", "logistic", "gaussian", "gaussian_fixed"]
LIKELIHOODS = ("bernoulli", "categorical", "logistic", "gaussian", "gaussian_fixed")
DISCRETE = ("bernoulli", "categorical", "logistic")


def params_per_pixel(name: str, spec: DataSpec) -> int:
    """How many numbers per pixel the decoder must emit for likelihood ``name``."""
    check_likelihood(name, spec)
    return {"bernoulli": 1, "gaussian_fixed": 1, "gaussian": 2, "logistic": 2}.get(name) or int(spec.levels)


def check_likelihood(name: str, spec: DataSpec) -> None:
    """Refuse a likelihood that cannot describe ``spec``'s data, with what to use instead."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}")
    if name in DISCRETE and spec.levels is None:
        raise ValueError(f"likelihood {name!r} needs discrete data (levels), but {spec.name} is continuous; "
                         "use likelihood: gaussian")


class _Levels(constraints.Constraint):
    """The model-space level values of ``spec`` (a discrete support)."""

    is_discrete = True
    event_dim = 0

    def __init__(self, spec: DataSpec):
        super().__init__()
        self.spec = spec

    def check(self, value: Tensor) -> Tensor:
        k = value * self.spec.scale + self.spec.shift
        return (k - k.round()).abs().lt(1e-4) & k.ge(-0.5) & k.le(self.spec.levels - 0.5)


class _LevelDistribution(Distribution):
    """Base of the discrete likelihoods: per-pixel log-masses summed over the event."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, spec: DataSpec, batch_shape: torch.Size, event_shape: torch.Size):
        self.spec = spec
        super().__init__(batch_shape, event_shape, validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(_Levels(self.spec), len(self.event_shape))

    def levels_of(self, x: Tensor) -> Tensor:
        """Model-space values -> integer levels ``k`` (long)."""
        return (x * self.spec.scale + self.spec.shift).round().clamp(0, self.spec.levels - 1).long()

    def to_model(self, k: Tensor) -> Tensor:
        return (k.to(self._dtype) - self.spec.shift) / self.spec.scale

    def _sum_event(self, v: Tensor) -> Tensor:
        return v.flatten(-len(self.event_shape)).sum(-1) if len(self.event_shape) else v


class BernoulliLevels(_LevelDistribution):
    """Bernoulli pixels over the lowest (0) and highest (``L-1``) level; ``logits``
    ``(B, *event)`` are the log-odds of the highest. Data with any other level is refused
    (binarise it first: ``data: {name: digits, binarize: threshold}``)."""

    def __init__(self, logits: Tensor, spec: DataSpec, event_dims: int):
        self.logits, self._dtype = logits, logits.dtype
        super().__init__(spec, logits.shape[:logits.dim() - event_dims], logits.shape[logits.dim() - event_dims:])

    def log_prob(self, x: Tensor) -> Tensor:
        k = self.levels_of(x)
        top = self.spec.levels - 1
        if not bool(((k == 0) | (k == top)).all()):
            raise ValueError(f"likelihood 'bernoulli' needs binary data (levels 0 and {top} only), but "
                             f"{self.spec.name} has other levels; binarise it (data.binarize: threshold or "
                             "stochastic) or use likelihood: categorical or logistic")
        k = (k == top).to(self.logits.dtype)
        return self._sum_event(-F.binary_cross_entropy_with_logits(self.logits.expand_as(k), k, reduction="none"))

    @property
    def mean(self) -> Tensor:
        return self.to_model(torch.sigmoid(self.logits) * (self.spec.levels - 1))

    def sample(self, sample_shape: torch.Size = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        p = torch.sigmoid(self.logits).expand(*sample_shape, *self.logits.shape)
        u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
        return self.to_model((u < p).long() * (self.spec.levels - 1))


class CategoricalLevels(_LevelDistribution):
    """A categorical over the ``L`` levels per pixel; ``logits`` ``(B, *event, L)``."""

    def __init__(self, logits: Tensor, spec: DataSpec, event_dims: int):
        self.logits, self._dtype = logits, logits.dtype
        lead = logits.dim() - 1
        super().__init__(spec, logits.shape[:lead - event_dims], logits.shape[lead - event_dims:lead])

    def log_prob(self, x: Tensor) -> Tensor:
        k = self.levels_of(x)
        logp = torch.log_softmax(self.logits, -1)
        logp = logp.expand(*k.shape, logp.shape[-1])
        return self._sum_event(logp.gather(-1, k.unsqueeze(-1)).squeeze(-1))

    @property
    def mean(self) -> Tensor:
        levels = torch.arange(self.spec.levels, dtype=self._dtype, device=self.logits.device)
        return self.to_model((torch.softmax(self.logits, -1) * levels).sum(-1))

    def sample(self, sample_shape: torch.Size = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        probs = torch.softmax(self.logits, -1)
        flat = probs.reshape(-1, probs.shape[-1])
        n = math.prod(sample_shape) if len(sample_shape) else 1
        k = torch.multinomial(flat, n, replacement=True, generator=generator)  # (P, n)
        k = k.T.reshape(*sample_shape, *probs.shape[:-1])
        return self.to_model(k)


def _log_sigmoid_diff(a: Tensor, b: Tensor) -> Tensor:
    """``log(sigmoid(a) - sigmoid(b))`` for ``a > b``, stable in both tails."""
    la, lb = F.logsigmoid(a), F.logsigmoid(b)
    d = (lb - la).clamp(max=-1e-12)
    near = d > -math.log(2)
    # both branches get safe inputs: torch.where would otherwise pass NaN gradients through
    a = torch.log(-torch.expm1(torch.where(near, d, torch.full_like(d, -1.0))))
    b = torch.log1p(-torch.exp(torch.where(near, torch.full_like(d, -1.0), d)))
    return la + torch.where(near, a, b)


class DiscretizedLogistic(_LevelDistribution):
    """Discretised logistic per pixel (Salimans et al. 2017, PixelCNN++, arXiv 1701.05517):
    level ``k`` (model-space value ``x``) gets the logistic mass of
    ``[x - 1/(2 scale), x + 1/(2 scale)]``, the first and last bins extended to infinity.
    ``loc``, ``log_scale`` ``(B, *event)``; ``log_scale`` is clamped at -7 from below."""

    def __init__(self, loc: Tensor, log_scale: Tensor, spec: DataSpec, event_dims: int):
        self.loc, self.log_s, self._dtype = loc, log_scale.clamp(min=-7.0), loc.dtype
        super().__init__(spec, loc.shape[:loc.dim() - event_dims], loc.shape[loc.dim() - event_dims:])

    def log_prob(self, x: Tensor) -> Tensor:
        k = self.levels_of(x)
        xm = self.to_model(k)
        half = 0.5 / self.spec.scale
        inv_s = torch.exp(-self.log_s)
        upper = (xm + half - self.loc) * inv_s
        lower = (xm - half - self.loc) * inv_s
        top = k == self.spec.levels - 1
        bottom = k == 0
        mid = _log_sigmoid_diff(upper, lower)
        # open end bins: P(X <= upper) for the lowest level, P(X > lower) for the highest
        out = torch.where(bottom, F.logsigmoid(upper), torch.where(top, F.logsigmoid(-lower), mid))
        return self._sum_event(out)

    @property
    def mean(self) -> Tensor:
        """The location, clamped to the level range (the exact mean of the binned
        distribution is not needed for pictures)."""
        return self.loc.clamp(self.to_model(torch.zeros(())), self.to_model(torch.tensor(self.spec.levels - 1.0)))

    def sample(self, sample_shape: torch.Size = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        shape = (*sample_shape, *self.loc.shape)
        u = torch.rand(shape, generator=generator, dtype=self.loc.dtype, device=self.loc.device).clamp(1e-6, 1 - 1e-6)
        v = self.loc + torch.exp(self.log_s) * (torch.log(u) - torch.log1p(-u))
        k = (v * self.spec.scale + self.spec.shift).round().clamp(0, self.spec.levels - 1)
        return self.to_model(k)


def make_likelihood(name: str, params: Tensor, spec: DataSpec, *, noise_std: float = 1.0) -> Distribution:
    """Decoder output ``params`` ``(B, P, *event)`` (``P = params_per_pixel``) -> ``p(x | z)``
    with batch shape ``(B,)`` and event shape ``event``."""
    event_dims = params.dim() - 2
    if name == "bernoulli":
        return BernoulliLevels(params[:, 0], spec, event_dims)
    if name == "categorical":
        return CategoricalLevels(params.movedim(1, -1), spec, event_dims)
    if name == "logistic":
        return DiscretizedLogistic(params[:, 0], params[:, 1], spec, event_dims)
    if name == "gaussian":
        std = F.softplus(params[:, 1]) + 1e-3
        return Independent(Normal(params[:, 0], std), event_dims)
    if name == "gaussian_fixed":
        mean = params[:, 0]
        return Independent(Normal(mean, torch.full_like(mean, noise_std)), event_dims)
    raise ValueError(f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}")


def is_discrete(dist: Distribution) -> bool:
    """Whether ``dist`` is a probability mass (no change-of-variables term applies)."""
    return bool(dist.support.is_discrete)


def likelihood_is_discrete(model) -> bool:
    """Whether a latent-variable model's ``likelihood(z)`` is a probability mass (checked on one code)."""
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    z = torch.zeros(1, *model.latent_shape, dtype=dtype, device=model.device)
    context = torch.zeros(1, dtype=torch.long, device=model.device) if model.conditional else None
    with torch.no_grad():
        return is_discrete(model.likelihood(z, context=context))


def variational_input(x: Tensor, spec: DataSpec | None, *, discrete: bool,
                      generator: torch.Generator | None = None) -> tuple[Tensor, float]:
    """What a variational bound is computed on, and the constant that turns its model-space
    value into data-space nats: ``log p_data = bound(x_in) - offset``.

    * discrete likelihood: ``x`` itself, offset 0 (a bound on ``log P(k)``);
    * continuous likelihood on discrete data: ``x`` uniformly dequantised and the
      ``D log|scale|`` offset (a bound on ``log P(k)`` in expectation over the noise,
      Theis et al. 2016, arXiv 1511.01844);
    * continuous data: ``x`` and the ``D log|scale|`` offset (exact change of variables).
    """
    if discrete or spec is None:
        return x, 0.0
    if spec.levels is not None:
        x = uniform_dequantize(x, spec, generator)
    return x, log_scale_offset(spec)
