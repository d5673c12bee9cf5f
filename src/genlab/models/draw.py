"""Convolutional DRAW (Gregor, Besse, Rezende, Danihelka & Wierstra 2016, "Towards conceptual
compression", arXiv 1604.08772): a recurrent VAE whose latents are convolutional feature maps,
one set per iteration, written additively onto a canvas.

For ``t = 1..T`` (all states are ``(B, hidden, h, w)`` feature maps at the image size divided by
``2**downsample``; ``r_0`` is a learned canvas, ``h^d_0 = h^e_0 = 0``)::

    eps_t   = x - E[x | r_{t-1}]                         error image (decoder mean of the canvas)
    h^e_t   = ConvLSTM_enc([down(x, eps_t), h^d_{t-1}], h^e_{t-1})
    q_t     = N(mu, sigma^2)(conv(h^e_t))                q(z_t | x, z_<t), maps (latent_channels, h, w)
    p_t     = N(mu, sigma^2)(conv(h^d_{t-1}))            the learned prior p(z_t | z_<t)
    h^d_t   = ConvLSTM_dec([z_t, down(r_{t-1})], h^d_{t-1})
    r_t     = r_{t-1} + write(h^d_t)                     write: a transposed conv back to (P*C, H, W)

and ``p(x | z_1..T)`` is any genlab likelihood (:func:`genlab.models.likelihoods.make_likelihood`)
of the final canvas ``r_T``, which has ``P * C`` channels (``P = params_per_pixel``). The paper's
loss is ``-log p(x | r_T) + sum_t KL(q_t || p_t)``, the ELBO.

genlab protocols (:class:`~genlab.models.base.AmortizedPosterior`): the code is the
concatenation of all ``z_t``, ``latent_shape = (T * latent_channels * h * w,)``.

* ``prior()`` is :class:`ConvDRAWPrior`, an autoregressive distribution over the whole code
  sequence: ``log_prob(z)`` runs the decoder recurrence over the given codes and sums
  ``log p_t(z_t)``; ``rsample``/``sample`` draw ``z_t ~ p_t`` one step after the other.
* ``posterior(x)`` is :class:`ConvDRAWPosterior`, ``q(z | x) = prod_t q(z_t | x, z_<t)``:
  ``rsample`` runs encoder and decoder together; ``log_prob(z)`` runs them teacher-forced on
  the given codes (the log-density of the distribution's own last draw is kept, so the ELBO
  objective's ``log q(z) - log p(z)`` does not rerun the encoder).
* ``likelihood(z)`` decodes a full code sequence.

So the generic ``elbo`` (its KL falls back to the single-sample ``log q - log p``: there is no
closed form over the sequence) and ``iwae`` objectives and the ``iwae`` metric work unchanged.
Neither sequence distribution has a closed-form mean: their ``mean`` raises; ``reconstruct(x)``
decodes the *sequential posterior means* ``z_t = E[z_t | x, z_<t]`` (documented, not ``E_q z``).

:meth:`ConvDRAW.step_terms` gives, in one pass, the per-iteration ``KL(q_t || p_t)`` (analytic
given ``z_<t``), ``log q_t(z_t) - log p_t(z_t)``, ``log p(x | z)`` and the decoder mean of the
canvas after every iteration. :meth:`ConvDRAW.partial_likelihood` is the paper's "conceptual
compression": the first ``t`` iterations' codes from the posterior, the rest from the prior
(its mean or a draw), decoded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, constraints

from genlab.data.base import DataSpec
from genlab.kwargs import NonNegativeInt, PositiveFloat, PositiveInt
from genlab.models.base import AmortizedPosterior
from genlab.models.likelihoods import LikelihoodName, check_likelihood, make_likelihood, params_per_pixel

MIN_STD = 1e-4
#: What a step's code is: drawn from / the mean of the posterior or the prior, or given.
Policy = Literal["q_sample", "q_mean", "p_sample", "p_mean", "given"]
NO_MEAN = ("{what} of Convolutional DRAW is autoregressive (z_t depends on z_<t through the decoder state), so "
           "its mean has no closed form. Draw from it (rsample/sample), or use ConvDRAW.reconstruct (the "
           "sequential posterior means) / ConvDRAW.partial_likelihood")


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell (Shi et al. 2015, arXiv 1506.04214, without peepholes): one
    ``k x k`` convolution of ``[input, h]`` gives the four gates. ``(B, in, h, w)`` and state
    ``(h, c)`` ``(B, hidden, h, w)`` -> new ``(h, c)``."""

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)
        with torch.no_grad():  # forget-gate bias 1 (Gers et al. 2000): remember by default
            self.gates.bias[hidden:2 * hidden].fill_(1.0)

    def forward(self, inp: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        i, f, g, o = self.gates(torch.cat([inp, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


def _down(in_channels: int, out_channels: int, levels: int) -> nn.Module:
    """``levels`` stride-2 4x4 convolutions (ELU between them); a 3x3 convolution if 0."""
    if levels == 0:
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)
    layers: list[nn.Module] = []
    for i in range(levels):
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 4, stride=2, padding=1)]
        if i < levels - 1:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


def _up(in_channels: int, out_channels: int, levels: int) -> nn.Module:
    """``levels`` stride-2 4x4 transposed convolutions (ELU between them); a 3x3 conv if 0."""
    if levels == 0:
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)
    layers: list[nn.Module] = []
    for i in range(levels):
        last = i == levels - 1
        layers += [nn.ConvTranspose2d(in_channels, out_channels if last else in_channels, 4, stride=2, padding=1)]
        if not last:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


def _gaussian(h: Tensor) -> Normal:
    mu, raw = h.chunk(2, 1)
    return Normal(mu, F.softplus(raw) + MIN_STD, validate_args=False)


@dataclass
class Unrolled:
    """What one pass of the recurrence produced (``B`` sequences, ``T`` steps).

    ``z`` ``(B, T, zc, h, w)``; ``log_p`` ``(B, T)``; ``log_q``/``kl`` ``(B, t_q)`` for the first
    ``t_q`` steps, those the encoder ran for (``None`` if it never ran); ``canvas``
    ``(B, P*C, H, W)``; ``canvases`` the canvas after each step when asked for (``T`` tensors)."""

    z: Tensor
    log_q: Tensor | None
    log_p: Tensor
    kl: Tensor | None
    canvas: Tensor
    canvases: list[Tensor] | None


class ConvDRAW(AmortizedPosterior):
    """Convolutional DRAW (arXiv 1604.08772): ``steps`` iterations of conv-LSTM encoder and
    decoder, Gaussian latent maps ``(latent_channels, H/2^d, W/2^d)`` per step with a learned
    prior ``p(z_t | z_<t)`` from the decoder state, an additive canvas and any genlab likelihood.

    Keys: ``steps`` (T), ``hidden`` (conv-LSTM channels), ``latent_channels``, ``downsample``
    (``d``: stride-2 levels between the image and the recurrent maps; H and W must be divisible
    by ``2**d``), ``kernel`` (the LSTMs' kernel), ``likelihood``, ``noise_std``
    (``gaussian_fixed`` only), ``sample_from`` (``likelihood``: ``x ~ p(x|z)``; ``mean``:
    ``E[x|z]``)."""

    def __init__(self, *, data_spec: DataSpec, steps: PositiveInt = 8, hidden: PositiveInt = 16,
                 latent_channels: PositiveInt = 4, downsample: NonNegativeInt = 1, kernel: PositiveInt = 3,
                 likelihood: LikelihoodName = "logistic", noise_std: PositiveFloat = 0.1,
                 sample_from: Literal["likelihood", "mean"] = "likelihood"):
        super().__init__()
        event = tuple(data_spec.event_shape)
        if len(event) != 3:
            raise ValueError(f"conv_draw needs image data (C, H, W), got event shape {event} from {data_spec.name}; "
                             "use model: vae for flat data")
        check_likelihood(likelihood, data_spec)
        c, hgt, wid = event
        f = 2 ** downsample
        if hgt % f or wid % f:
            raise ValueError(f"conv_draw: downsample {downsample} needs H and W divisible by {f}, got {hgt}x{wid}; "
                             "use a smaller downsample")
        if kernel % 2 == 0:
            raise ValueError(f"conv_draw: kernel must be odd (same-size convolutions), got {kernel}")
        if sample_from not in ("likelihood", "mean"):
            raise ValueError(f"sample_from must be 'likelihood' or 'mean', got {sample_from!r}")
        self.spec, self.event_shape = data_spec, torch.Size(event)
        self.likelihood_name, self.noise_std, self.sample_from = likelihood, noise_std, sample_from
        self.steps, self.hidden, self.latent_channels = steps, hidden, latent_channels
        self.map_size = (hgt // f, wid // f)
        #: the size of one step's code, ``latent_channels * h * w``
        self.step_dim = latent_channels * self.map_size[0] * self.map_size[1]
        self.latent_shape = torch.Size((steps * self.step_dim,))
        self.n_params = params_per_pixel(likelihood, data_spec)
        pc = self.n_params * c
        self.canvas0 = nn.Parameter(torch.zeros(pc, hgt, wid))
        self.read = _down(2 * c, hidden, downsample)          # [x, eps_t] -> maps
        self.read_canvas = _down(pc, hidden, downsample)      # r_{t-1} -> maps (decoder input)
        self.encoder = ConvLSTMCell(2 * hidden, hidden, kernel)
        self.decoder = ConvLSTMCell(latent_channels + hidden, hidden, kernel)
        self.posterior_head = nn.Conv2d(hidden, 2 * latent_channels, kernel, padding=kernel // 2)
        self.prior_head = nn.Conv2d(hidden, 2 * latent_channels, kernel, padding=kernel // 2)
        self.write = _up(hidden, pc, downsample)

    # --- the recurrence ---------------------------------------------------------------
    def _canvas_dist(self, canvas: Tensor) -> Distribution:
        return make_likelihood(self.likelihood_name, canvas.reshape(canvas.shape[0], self.n_params,
                                                                    *self.event_shape),
                               self.spec, noise_std=self.noise_std)

    def unroll(self, policy: Sequence[str], *, x: Tensor | None = None, z: Tensor | None = None,
               n: int | None = None, generator: torch.Generator | None = None,
               keep_canvases: bool = False) -> Unrolled:
        """Run the recurrence once. ``policy[t]`` says where step ``t``'s code comes from:
        ``q_sample`` / ``q_mean`` (posterior; needs ``x`` ``(B, *event)``), ``p_sample`` /
        ``p_mean`` (prior), ``given`` (``z`` ``(B, T * step_dim)``). The encoder runs for the steps
        up to the last one that needs it (and for every ``given`` step when ``x`` is given, so that
        ``log_q`` is defined there). Noise comes from ``generator``, one draw per sampled step."""
        if len(policy) != self.steps or any(p not in ("q_sample", "q_mean", "p_sample", "p_mean", "given")
                                            for p in policy):
            raise ValueError(f"conv_draw: policy must be {self.steps} of q_sample, q_mean, p_sample, p_mean, "
                             f"given; got {list(policy)}")
        needs_q = [p.startswith("q_") or (p == "given" and x is not None) for p in policy]
        if any(p.startswith("q_") for p in policy) and x is None:
            raise ValueError("conv_draw: posterior steps (q_sample, q_mean) need x")
        if "given" in policy and z is None:
            raise ValueError("conv_draw: 'given' steps need the codes z")
        for v, name in ((x, "x"), (z, "z")):
            if v is not None:
                n = v.shape[0] if n is None else n
                if v.shape[0] != n:
                    raise ValueError(f"conv_draw: {name} has {v.shape[0]} rows, expected {n}")
        if n is None:
            raise ValueError("conv_draw: unroll needs x, z or n")
        if x is not None and tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"conv_draw expects x of shape (B, {', '.join(map(str, self.event_shape))}), got "
                             f"{tuple(x.shape)}")
        if z is not None:
            if tuple(z.shape[1:]) != tuple(self.latent_shape):
                raise ValueError(f"conv_draw expects codes of shape (B, {self.latent_shape[0]}) (T * step_dim), "
                                 f"got {tuple(z.shape)}")
            z = z.reshape(n, self.steps, self.latent_channels, *self.map_size)
        last_q = max([t for t, q in enumerate(needs_q) if q], default=-1)
        dtype, dev = self.canvas0.dtype, self.canvas0.device
        zero = torch.zeros(n, self.hidden, *self.map_size, dtype=dtype, device=dev)
        hd, cd, he, ce = zero, zero, zero, zero
        canvas = self.canvas0.unsqueeze(0).expand(n, *self.canvas0.shape)
        zs, log_q, log_p, kls, canvases = [], [], [], [], []
        for t in range(self.steps):
            p_t = _gaussian(self.prior_head(hd))
            q_t = None
            if t <= last_q:
                err = x - self._canvas_dist(canvas).mean
                he, ce = self.encoder(torch.cat([self.read(torch.cat([x, err], 1)), hd], 1), (he, ce))
                q_t = _gaussian(self.posterior_head(he))
            how = policy[t]
            if how == "given":
                z_t = z[:, t]
            else:
                d = q_t if how.startswith("q_") else p_t
                if how.endswith("_mean"):
                    z_t = d.loc
                else:
                    z_t = d.loc + d.scale * torch.randn(d.loc.shape, generator=generator, dtype=dtype, device=dev)
            zs.append(z_t)
            log_p.append(p_t.log_prob(z_t).flatten(1).sum(1))
            if t <= last_q:
                log_q.append(q_t.log_prob(z_t).flatten(1).sum(1))
                kls.append(torch.distributions.kl_divergence(q_t, p_t).flatten(1).sum(1))
            hd, cd = self.decoder(torch.cat([z_t, self.read_canvas(canvas)], 1), (hd, cd))
            canvas = canvas + self.write(hd)
            if keep_canvases:
                canvases.append(canvas)
        return Unrolled(torch.stack(zs, 1), torch.stack(log_q, 1) if log_q else None, torch.stack(log_p, 1),
                        torch.stack(kls, 1) if kls else None, canvas, canvases if keep_canvases else None)

    # --- capabilities -------------------------------------------------------------------
    def posterior(self, x: Tensor, *, context: Tensor | None = None) -> "ConvDRAWPosterior":
        """``q(z | x) = prod_t q(z_t | x, z_<t)``: batch shape ``(B,)``, event ``latent_shape``."""
        self.check_context(context, x.shape[0])
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"conv_draw expects x of shape (B, {', '.join(map(str, self.event_shape))}), got "
                             f"{tuple(x.shape)}")
        return ConvDRAWPosterior(self, x)

    def prior(self, *, context: Tensor | None = None) -> "ConvDRAWPrior":
        """``p(z) = prod_t p(z_t | z_<t)``: batch shape ``()``, event ``latent_shape``."""
        if context is not None:
            self.check_context(context, len(context))
        return ConvDRAWPrior(self)

    def likelihood(self, z: Tensor, *, context: Tensor | None = None) -> Distribution:
        """``p(x | z_1..T)`` for codes ``(B, T * step_dim)``: the likelihood of the final canvas."""
        self.check_context(context, z.shape[0])
        return self._canvas_dist(self.unroll(["given"] * self.steps, z=z).canvas)

    def decode(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        """The decoder mean ``E[x | z]`` in model space, ``(B, *event_shape)``."""
        return self.likelihood(z, context=context).mean

    def reconstruct(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """The decoder mean at the *sequential posterior means* ``z_t = E[z_t | x, z_<t]`` (the
        posterior's own mean has no closed form), ``(B, *event_shape)``."""
        self.check_context(context, x.shape[0])
        return self._canvas_dist(self.unroll(["q_mean"] * self.steps, x=x).canvas).mean

    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        p = self._canvas_dist(self.unroll(["p_sample"] * self.steps, n=n, generator=generator).canvas)
        if self.sample_from == "mean":
            return p.mean
        if isinstance(p, Independent):  # Gaussian: reparameterised draw with our generator
            base = p.base_dist
            return base.loc + base.scale * torch.randn(base.loc.shape, generator=generator, dtype=base.loc.dtype,
                                                       device=base.loc.device)
        return p.sample(generator=generator)

    # --- per-iteration quantities ---------------------------------------------------------
    def step_terms(self, x: Tensor, *, z: Tensor | None = None,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One ELBO pass with its per-iteration parts, for ``x`` ``(B, *event)`` in model space.

        Codes are ``z`` ``(B, T * step_dim)`` if given, else one posterior draw (noise from
        ``generator``). Returns ``kl`` ``(B, T)``: ``KL(q_t || p_t)`` in closed form given ``z_<t``
        (its sum over ``t`` is an unbiased estimate of ``KL(q(z|x) || p(z))``); ``log_ratio``
        ``(B, T)``: ``log q_t(z_t) - log p_t(z_t)`` (its sum is the single-sample KL that the
        ``elbo`` objective uses); ``rec`` ``(B,)``: ``log p(x | z)``; ``z`` ``(B, T * step_dim)``;
        ``means`` ``(B, T, *event)``: the decoder mean of the canvas after each iteration."""
        out = self.unroll(["q_sample" if z is None else "given"] * self.steps, x=x, z=z, generator=generator,
                          keep_canvases=True)
        means = torch.stack([self._canvas_dist(c).mean for c in out.canvases], 1)
        return {"kl": out.kl, "log_ratio": out.log_q - out.log_p, "rec": self._canvas_dist(out.canvas).log_prob(x),
                "z": out.z.flatten(1), "means": means}

    def partial_likelihood(self, x: Tensor, t: int, *, posterior: Literal["sample", "mean"] = "sample",
                           rest: Literal["mean", "sample"] = "mean",
                           generator: torch.Generator | None = None) -> tuple[Distribution, Tensor]:
        """Conceptual compression (arXiv 1604.08772, Sec. 4): the codes of the first ``t`` iterations
        come from the posterior (a draw or the sequential means), the remaining ``T - t`` from the
        prior ``p(z_s | z_<s)`` (its mean or a draw); returns ``(p(x | z), kl)`` with ``kl``
        ``(B, t)`` the rate ``KL(q_s || p_s)`` of the transmitted iterations. The first ``t``
        iterations draw the same noise from a generator seeded alike, whatever ``t``."""
        if not 0 <= t <= self.steps:
            raise ValueError(f"conv_draw: t must be in 0..{self.steps}, got {t}")
        if posterior not in ("sample", "mean") or rest not in ("mean", "sample"):
            raise ValueError("conv_draw: posterior must be sample or mean, rest mean or sample")
        q = "q_sample" if posterior == "sample" else "q_mean"
        p = "p_sample" if rest == "sample" else "p_mean"
        out = self.unroll([q] * t + [p] * (self.steps - t), x=x, generator=generator)
        kl = out.kl if out.kl is not None else torch.zeros(x.shape[0], 0, dtype=x.dtype, device=x.device)
        return self._canvas_dist(out.canvas), kl


class _Sequence(Distribution):
    """Base of the two autoregressive code distributions (event shape ``latent_shape``)."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 1)
    has_rsample = True

    def sample(self, sample_shape: torch.Size | tuple = torch.Size(), generator: torch.Generator | None = None
               ) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape, generator)

    def _flat(self, value: Tensor) -> tuple[Tensor, torch.Size]:
        d = self.event_shape[0]
        if value.shape[-1:] != (d,):
            raise ValueError(f"conv_draw codes must end in ({d},) (T * step_dim), got {tuple(value.shape)}")
        lead = value.shape[:-1]
        return value.reshape(-1, d), lead


class ConvDRAWPrior(_Sequence):
    """The learned autoregressive prior ``p(z) = prod_t p(z_t | z_<t)`` of Convolutional DRAW,
    ``p_t`` computed from the decoder state ``h^d_{t-1}``. ``log_prob(z)`` runs the decoder over
    the given codes; ``rsample``/``sample`` draw step by step (optional ``generator``)."""

    def __init__(self, model: ConvDRAW, batch_shape: torch.Size | tuple = torch.Size()):
        self.model = model
        super().__init__(torch.Size(batch_shape), model.latent_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None) -> "ConvDRAWPrior":
        return ConvDRAWPrior(self.model, torch.Size(batch_shape))

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size(), generator: torch.Generator | None = None
                ) -> Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        out = self.model.unroll(["p_sample"] * self.model.steps, n=max(1, math.prod(shape)), generator=generator)
        return out.z.flatten(1).reshape(*shape, *self.event_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        flat, lead = self._flat(value)
        return self.model.unroll(["given"] * self.model.steps, z=flat).log_p.sum(1).reshape(lead)

    @property
    def mean(self) -> Tensor:
        raise NotImplementedError(NO_MEAN.format(what="The prior p(z)"))


class ConvDRAWPosterior(_Sequence):
    """``q(z | x) = prod_t q(z_t | x, z_<t)`` of Convolutional DRAW for ``x`` ``(B, *event)``:
    batch shape ``(B,)``. ``rsample(sample_shape)`` gives ``(*sample_shape, B, D)``;
    ``log_prob(z)`` takes ``(..., B, D)``. The log-density of this object's last draw is kept and
    returned when ``log_prob`` is called on that very tensor (unchanged, same grad mode)."""

    def __init__(self, model: ConvDRAW, x: Tensor):
        self.model, self.x = model, x
        self._last: tuple[Tensor, int, bool, Tensor] | None = None
        super().__init__(x.shape[:1], model.latent_shape, validate_args=False)

    def _repeat_x(self, lead: torch.Size) -> Tensor:
        s = math.prod(lead[:-1]) if len(lead) > 1 else 1
        return self.x.unsqueeze(0).expand(s, *self.x.shape).reshape(s * self.x.shape[0], *self.x.shape[1:])

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size(), generator: torch.Generator | None = None
                ) -> Tensor:
        shape = torch.Size(sample_shape)
        lead = shape + self.batch_shape
        out = self.model.unroll(["q_sample"] * self.model.steps, x=self._repeat_x(lead), generator=generator)
        z = out.z.flatten(1).reshape(*lead, *self.event_shape)
        self._last = (z, z._version, torch.is_grad_enabled(), out.log_q.sum(1).reshape(lead))
        return z

    def log_prob(self, value: Tensor) -> Tensor:
        if self._last is not None:
            z, version, grad, log_q = self._last
            if value is z and value._version == version and (grad or not torch.is_grad_enabled()):
                return log_q
        flat, lead = self._flat(value)
        if lead[-1:] != self.batch_shape:
            raise ValueError(f"conv_draw posterior: codes must be (..., {self.batch_shape[0]}, "
                             f"{self.event_shape[0]}), got {tuple(value.shape)}")
        out = self.model.unroll(["given"] * self.model.steps, x=self._repeat_x(lead), z=flat)
        return out.log_q.sum(1).reshape(lead)

    @property
    def mean(self) -> Tensor:
        raise NotImplementedError(NO_MEAN.format(what="The posterior q(z|x)"))
