"""Log-likelihood of latent-variable and decoder-based models by annealed importance
sampling (Wu et al. 2017, "On the quantitative analysis of decoder-based generative
models", arXiv 1611.04273).

* ``ais`` (:class:`AISDecoder`): GAN generators and other :class:`DecoderModel`s have
  no likelihood; following Wu et al. they get the Gaussian observation model
  ``p(x | z) = N(decode(z), sigma^2 I)`` in model space, ``sigma`` a metric argument
  (the estimate depends strongly on it; report it with the number).
* ``ais_latent`` (:class:`AISLatent`): :class:`LatentVariableModel`s use their own
  ``likelihood(z)``.

Both anneal from the prior to the posterior along the geometric path with HMC
transitions (:mod:`genlab.sampling.ais`), ``chains`` chains per example, and take
``log_mean_exp`` over chains. HMC step sizes are tuned by a pilot run (one chain
per example, adapted towards ``target_accept``) and then held fixed, which keeps
the estimate a valid stochastic lower bound; the pilot adds ``1 / chains`` to the
cost. Values are in **data space**: for continuous
likelihoods ``log p_data(x) = log p_model(x_model) - D log(spec.scale)`` (the model-
space density times the Jacobian of ``x_model = (x - shift) / scale``); discrete
likelihoods (``support.is_discrete``) are probability masses and are left as they
are. A continuous likelihood on discrete data (digits) is evaluated on uniformly
dequantised inputs (one draw per example), so the estimate is a stochastic lower bound
on the probability of the integer image, comparable with dequantised bits/dim
(:func:`genlab.models.likelihoods.variational_input`). ``compute()`` returns the mean log-likelihood in nats per example, its standard
error over examples and bits/dim ``-log p_data(x) / (D ln 2)``.

The AIS estimate is a stochastic lower bound on ``log p(x)``; its error shrinks
with ``steps`` (intermediate distributions) and ``chains``. Only the first
``max_examples`` examples given to ``update`` are evaluated (AIS is costly).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import ClassVar, Literal

import torch
from torch import Tensor

from genlab.kwargs import PositiveInt
from genlab.data.base import Batch, Dataset, DataSpec
from genlab.metrics.base import ModelMetric
from genlab.models.base import DecoderModel, GenerativeModel, LatentVariableModel
from genlab.models.likelihoods import variational_input
from genlab.sampling.ais import ais_log_marginal
from genlab.sampling.importance import sample_distribution

Schedule = Literal["linear", "sigmoid", "geometric"]


class _AISMetric(ModelMetric):
    """Shared machinery; subclasses give the observation log-likelihood."""

    prefix: ClassVar[str] = "ais"

    def __init__(self, *, steps: PositiveInt = 500, chains: PositiveInt = 8, leapfrog: int = 5, step_size: float = 0.05,
                 schedule: Schedule = "sigmoid", target_accept: float = 0.65, max_examples: int = 256,
                 batch_size: int = 32, seed: int = 0, progress: bool = True, dataset: Dataset | None = None,
                 data_spec: DataSpec | None = None):
        if steps < 1 or chains < 1 or leapfrog < 1:
            raise ValueError(f"{type(self).__name__}: steps, chains and leapfrog must be >= 1, "
                             f"got {steps}, {chains}, {leapfrog}")
        self.steps, self.chains, self.leapfrog = steps, chains, leapfrog
        self.step_size, self.schedule, self.target_accept = step_size, schedule, target_accept
        self.max_examples, self.batch_size, self.seed, self.progress = max_examples, batch_size, seed, progress
        self.spec: DataSpec | None = dataset.spec if dataset is not None else data_spec
        self.reset()

    def reset(self) -> None:
        self._log_px: list[Tensor] = []
        self._accept: list[float] = []
        self._dim: int | None = None
        self._gen: torch.Generator | None = None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen

    @abstractmethod
    def _log_lik_fn(self, model: GenerativeModel, x: Tensor):
        """``z (N, *latent) -> (N,)`` log p(x | z) in model space, ``x`` ``(N, *event)``."""

    @abstractmethod
    def _is_discrete(self, model: GenerativeModel, z: Tensor) -> bool:
        """Whether p(x|z) is a probability mass (no change-of-variables term)."""

    def update(self, model: GenerativeModel, batch: Batch) -> None:
        if model.conditional:
            raise ValueError(f"{type(self).__name__} does not support conditional models yet")
        x = batch.x
        seen = sum(len(t) for t in self._log_px)
        x = x[: max(0, self.max_examples - seen)]
        if len(x) == 0:
            return
        was_training = model.training
        model.eval()
        try:
            for start in range(0, len(x), self.batch_size):
                self._update_batch(model, x[start:start + self.batch_size])
        finally:
            model.train(was_training)

    def _update_batch(self, model: GenerativeModel, x: Tensor) -> None:
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        x = x.to(device=model.device, dtype=dtype)
        xm = x if self.spec is None else self.spec.to_model(x)
        gen = self._generator(model.device)
        prior = model.prior()
        z_pilot = sample_distribution(prior, (len(xm),), generator=gen).detach().to(dtype)
        discrete = self._is_discrete(model, z_pilot[:1])
        xm, offset = variational_input(xm, self.spec, discrete=discrete, generator=gen)
        x_rep = xm.repeat_interleave(self.chains, 0)
        z0 = sample_distribution(prior, (len(x_rep),), generator=gen).detach().to(dtype)
        log_px, acc = ais_log_marginal(
            z0, prior.log_prob, self._log_lik_fn(model, x_rep), self.chains, n_steps=self.steps,
            z_pilot=z_pilot, pilot_log_lik_fn=self._log_lik_fn(model, xm), schedule=self.schedule,
            n_leapfrog=self.leapfrog, step_size=self.step_size, target_accept=self.target_accept, generator=gen,
            progress=self.progress)
        self._dim = math.prod(x.shape[1:])
        self._log_px.append((log_px.detach() - offset).double().cpu())
        self._accept.append(acc)

    def values(self) -> Tensor:
        """Per-example estimates ``log p_data(x)`` (nats) seen so far: ``(N,)``."""
        if not self._log_px:
            raise ValueError(f"{type(self).__name__}: update(model, x) was never called; nothing to compute")
        return torch.cat(self._log_px)

    def compute(self) -> dict[str, float]:
        v = self.values()
        se = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
        p = self.prefix
        return {f"{p}_log_px": float(v.mean()), f"{p}_log_px_se": se,
                f"{p}_bpd": float(-v.mean() / (self._dim * math.log(2))),
                f"{p}_accept": sum(self._accept) / len(self._accept), f"{p}_n": float(len(v))}


class AISDecoder(_AISMetric):
    """AIS log-likelihood of a decoder (GAN generator) under ``N(decode(z), sigma^2 I)``."""

    requires = (DecoderModel,)
    prefix = "ais"
    higher_is_better = {"ais_log_px": True, "ais_bpd": False}

    def __init__(self, *, sigma: float = 0.1, steps: PositiveInt = 500, chains: PositiveInt = 8, leapfrog: int = 5,
                 step_size: float = 0.05, schedule: Schedule = "sigmoid", target_accept: float = 0.65,
                 max_examples: int = 256, batch_size: int = 32, seed: int = 0, progress: bool = True,
                 dataset: Dataset | None = None,
                 data_spec: DataSpec | None = None):
        if sigma <= 0:
            raise ValueError(f"ais: sigma (observation noise std in model space) must be > 0, got {sigma}")
        self.sigma = sigma
        super().__init__(steps=steps, chains=chains, leapfrog=leapfrog, step_size=step_size,
                         schedule=schedule, target_accept=target_accept, max_examples=max_examples,
                         batch_size=batch_size, seed=seed, progress=progress, dataset=dataset,
                         data_spec=data_spec)

    def _log_lik_fn(self, model: DecoderModel, x: Tensor):
        dim = math.prod(x.shape[1:])
        const = -dim * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))

        def log_lik(z: Tensor) -> Tensor:
            sq = (x - model.decode(z)).flatten(1).pow(2).sum(1)
            return const - 0.5 * sq / self.sigma**2
        return log_lik

    def _is_discrete(self, model: GenerativeModel, z: Tensor) -> bool:
        return False


class AISLatent(_AISMetric):
    """AIS log-likelihood of a latent-variable model under its own ``likelihood(z)``."""

    requires = (LatentVariableModel,)
    prefix = "ais"
    higher_is_better = {"ais_log_px": True, "ais_bpd": False}

    def _log_lik_fn(self, model: LatentVariableModel, x: Tensor):
        return lambda z: model.likelihood(z).log_prob(x)

    def _is_discrete(self, model: LatentVariableModel, z: Tensor) -> bool:
        return bool(model.likelihood(z).support.is_discrete)
