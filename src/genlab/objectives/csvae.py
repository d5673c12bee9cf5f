"""The CSVAE objective (Klys, Snell & Zemel 2018, "Learning latent subspaces in variational
autoencoders", arXiv 1812.06190, Section 3), objective ``csvae``, for the ``csvae`` model.

With the attribute ``y`` of each example (from its class label, :class:`genlab.models.csvae.CSVAE`),
``z ~ q(z | x)`` and ``w ~ q(w | x, y)`` (one reparameterised draw each), the model player
(encoders, decoder and ``p(w|y)``) minimises, per example and divided by the data dimension::

    M1 + M2 = - beta1 log p(x | z, w) + beta2 KL(q(w|x,y) || p(w|y)) + beta3 KL(q(z|x) || p(z))
              - beta4 H(q_delta(y | z))

and the adversary player ``q_delta(y | z)`` (an MLP on ``z``, a helper network of this objective,
saved in ``objective.safetensors``) minimises its cross-entropy ``-log q_delta(y | z)`` on codes
``z ~ q(z|x)`` (gradient stopped), i.e. learns to predict the attribute from ``z``. The term
``- beta4 H`` is the paper's ``beta4 sum_y q_delta(y|z) log q_delta(y|z)``: the encoder of ``z``
is pushed to make the adversary maximally uncertain (``q_delta(y|z) -> 1/2``), which minimises
the mutual information between ``z`` and ``y`` as far as the adversary can measure it. The
adversary's weights are not changed by the model's loss (its parameters enter that loss
detached). The paper's ``- log p(y)`` is a constant of the data and is left out.

Option names and defaults (the paper's Section 4 values as we read them; state them when
reporting): ``reconstruction`` = beta1 = 20, ``kl_w`` = beta2 = 1, ``kl_z`` = beta3 = 0.2,
``entropy`` = beta4 = 10. ``adversary``: ``hidden`` x ``depth`` MLP (64 x 2).

The KLs are analytic (Gaussian posteriors, Gaussian priors). A continuous likelihood on discrete
data sees uniformly dequantised inputs (:func:`genlab.models.likelihoods.variational_input`).
Logged: ``elbo`` (``rec - kl_w - kl_z``: data-space nats per example, a bound on ``log p(x | y)``),
``rec``, ``kl_w``, ``kl_z``, ``entropy`` (mean ``H(q_delta(y|z))`` in nats; ``log 2 = 0.693`` is
chance); the adversary logs ``ce`` and ``acc``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, kl_divergence
from torch.func import functional_call

from genlab.data.base import Batch, DataSpec
from genlab.kwargs import NonNegativeFloat, NonNegativeInt, PositiveInt
from genlab.models.base import GenerativeModel
from genlab.models.csvae import CSVAE
from genlab.models.likelihoods import likelihood_is_discrete, variational_input
from genlab.nets.mlp import MLP
from genlab.objectives.base import LossOutput, Objective
from genlab.sampling.importance import sample_distribution


class CSVAEObjective(Objective):
    """CSVAE's objective (arXiv 1812.06190): the weighted ELBO terms plus the adversarial
    minimisation of the information about ``y`` in ``z``; players ``model`` and ``adversary``."""

    requires: ClassVar[tuple[type, ...]] = (CSVAE,)
    players: ClassVar[tuple[str, ...]] = ("model", "adversary")
    conditional: ClassVar[bool | None] = True

    def __init__(self, *, reconstruction: NonNegativeFloat = 20.0, kl_w: NonNegativeFloat = 1.0,
                 kl_z: NonNegativeFloat = 0.2, entropy: NonNegativeFloat = 10.0, hidden: PositiveInt = 64,
                 depth: NonNegativeInt = 2):
        """``reconstruction``, ``kl_w``, ``kl_z``, ``entropy``: the paper's beta1..beta4;
        ``hidden``/``depth``: the adversary MLP ``q_delta(y | z)``."""
        super().__init__()
        self.beta_rec, self.beta_w, self.beta_z, self.beta_h = reconstruction, kl_w, kl_z, entropy
        self.hidden, self.depth = hidden, depth
        self.adversary: nn.Module | None = None

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        if not isinstance(model, CSVAE):
            raise ValueError(f"objective csvae trains model csvae; got {type(model).__name__}")  # noqa: TRY004
        if data_spec.classes is None:
            raise ValueError(f"objective csvae needs labelled data (the attribute comes from labels); "
                             f"{data_spec.name} has none")
        self.spec = data_spec
        self.discrete = likelihood_is_discrete(model)
        self.adversary = MLP(in_shape=(model.z_dim,), out_features=1, hidden=self.hidden, depth=self.depth)

    def helper_modules(self) -> dict[str, list[nn.Module]]:
        if self.adversary is None:
            raise RuntimeError("CSVAEObjective.setup(model, data_spec) must be called before use (it builds the "
                               "adversary)")
        return {"adversary": [self.adversary]}

    def adversary_logits(self, z: Tensor, *, detach_params: bool = False) -> Tensor:
        """The logit of ``q_delta(y = 1 | z)`` ``(B,)`` for codes ``(B, z_dim)``; ``detach_params``:
        the adversary's parameters get no gradient (the model's loss)."""
        if self.adversary is None:
            raise RuntimeError("CSVAEObjective.setup(model, data_spec) must be called before use")
        if not detach_params:
            return self.adversary(z).squeeze(-1)
        params = {k: v.detach() for k, v in self.adversary.named_parameters()}
        return functional_call(self.adversary, params, (z,)).squeeze(-1)

    def terms(self, model: CSVAE, x: Tensor, y: Tensor, generator: torch.Generator | None = None
              ) -> dict[str, Tensor]:
        """Per-example model-space terms ``(B,)``: ``rec`` ``log p(x|z,w)``, ``kl_w``, ``kl_z``, and the
        draws ``z`` ``(B, z_dim)`` and ``w`` ``(B, w_dim)`` (``z`` drawn first, then ``w``)."""
        qz, qw = model.posterior_z(x), model.posterior_w(x, y)
        z = sample_distribution(qz, generator=generator)
        w = sample_distribution(qw, generator=generator)
        rec = model.likelihood_zw(z, w).log_prob(x)
        return {"rec": rec, "kl_w": kl_divergence(qw, model.prior_w(y)), "kl_z": kl_divergence(qz, model.prior_z()),
                "z": z, "w": w}

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        if not hasattr(self, "spec"):
            raise RuntimeError("CSVAEObjective.setup(model, data_spec) must be called before loss()")
        if batch.y is None:
            raise ValueError("objective csvae needs labels in the batch (batch.y): its attribute comes from the class "
                             "labels. Use a labelled dataset such as digits")
        y = model.attribute(batch.y)
        if player == "adversary":
            with torch.no_grad():
                z = sample_distribution(model.posterior_z(batch.x), generator=generator)
            logits = self.adversary_logits(z)
            ce = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
            return LossOutput(ce, {"ce": ce.item(), "acc": float(((logits > 0).long() == y).float().mean())})
        if player != "model":
            raise ValueError(f"csvae has players {self.players}, got {player!r}")
        x, offset = variational_input(batch.x, self.spec, discrete=self.discrete, generator=generator)
        t = self.terms(model, x, y, generator)
        entropy = Bernoulli(logits=self.adversary_logits(t["z"], detach_params=True)).entropy()
        per = -self.beta_rec * t["rec"] + self.beta_w * t["kl_w"] + self.beta_z * t["kl_z"] - self.beta_h * entropy
        loss = per.mean() / self.spec.dim
        elbo = float((t["rec"] - t["kl_w"] - t["kl_z"]).detach().mean()) - offset
        logs = {"elbo": elbo, "rec": float(t["rec"].detach().mean()), "kl_w": float(t["kl_w"].detach().mean()),
                "kl_z": float(t["kl_z"].detach().mean()), "entropy": float(entropy.detach().mean())}
        if self.spec.levels is not None:
            logs["bpd"] = -elbo / (self.spec.dim * math.log(2))
        return LossOutput(loss, logs)
