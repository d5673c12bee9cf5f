"""The conditional subspace VAE, CSVAE (Klys, Snell & Zemel 2018, "Learning latent subspaces in
variational autoencoders", NeurIPS, arXiv 1812.06190), for one binary attribute.

The code has two parts: a free latent ``z`` (``z_dim``) and an attribute latent ``w``
(``w_dim``) meant to hold everything about a binary attribute ``y`` in ``{0, 1}``::

    p(x, z, w | y) = p(x | z, w) p(z) p(w | y),     p(z) = N(0, I),
    p(w | y) = N(m_y, diag s_y^2)          (one learned Gaussian per attribute value),
    q(z, w | x, y) = q(z | x) q(w | x, y)  (two Gaussian encoders; z never sees y).

The training objective (:mod:`genlab.objectives.csvae`) adds an adversary ``q_delta(y | z)`` that
removes the attribute from ``z``; then swapping ``w`` for the one of another attribute value
changes the attribute and keeps the rest (:meth:`CSVAE.swap`).

In genlab the attribute is derived from class labels: ``attribute_classes`` lists the classes
with ``y = 1`` (e.g. ``[0, 2, 4, 6, 8]``: even digits). The model is ``conditional``: its
``context`` is the dataset's class labels ``(B,)``, mapped to ``y`` inside. For the rest of
genlab it is a conditional latent-variable model over the joint code ``[z, w]``
(``latent_dim = z_dim + w_dim``): ``posterior(x, context)`` is ``q(z|x) q(w|x,y)``,
``prior(context)`` is ``p(z) p(w|y)``, ``likelihood(code)`` is ``p(x | z, w)`` (it does not depend
on the context), so the ``elbo``/``iwae`` objectives, the ``iwae`` metric and the reconstruction
pictures work on it unchanged.

Nets: ``encoder`` (``q(z|x)``), ``w_encoder`` (``q(w|x,y)``, the one-hot attribute appended to the
input; default: the ``encoder`` spec) and ``decoder`` specs as for ``vae``
(:func:`genlab.nets.build.build_encoder`, :func:`genlab.models.vae.build_decoder`); ``likelihood``
any of :mod:`genlab.models.likelihoods`. ``p(w|y)``: means initialised at ``0`` (``y = 0``) and
``prior_init`` in every coordinate (``y = 1``), scales at 1; ``learn_prior: false`` keeps them
fixed.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from genlab.data.base import DataSpec
from genlab.kwargs import PositiveFloat, PositiveInt
from genlab.models.base import AmortizedPosterior, standard_normal
from genlab.models.likelihoods import (
    LikelihoodName,
    check_likelihood,
    make_likelihood,
    params_per_pixel,
)
from genlab.models.vae import MIN_STD, build_decoder, build_encoder, gaussian_posterior
from genlab.nets.conditional import concat_onehot, concat_shape


def _normal(loc: Tensor, scale: Tensor) -> Distribution:
    return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)


class CSVAE(AmortizedPosterior):
    """CSVAE (arXiv 1812.06190): ``p(x|z,w) p(z) p(w|y)``, ``q(z|x) q(w|x,y)``, a binary attribute
    ``y`` derived from class labels by ``attribute_classes``; ``swap(x, y_new)`` changes it."""

    conditional: ClassVar[bool] = True

    def __init__(self, *, data_spec: DataSpec, attribute_classes: list[int], z_dim: PositiveInt = 8,
                 w_dim: PositiveInt = 2, likelihood: LikelihoodName = "logistic",
                 encoder: dict[str, Any] | None = None, w_encoder: dict[str, Any] | None = None,
                 decoder: dict[str, Any] | None = None, learn_prior: bool = True, prior_init: PositiveFloat = 3.0,
                 noise_std: PositiveFloat = 0.1, sample_from: Literal["likelihood", "mean"] = "likelihood"):
        super().__init__()
        if data_spec.classes is None:
            raise ValueError(f"csvae needs labelled data (its attribute comes from class labels); {data_spec.name} "
                             "has none. Use a labelled dataset such as digits")
        classes = int(data_spec.classes)
        attrs = list(attribute_classes) if isinstance(attribute_classes, (list, tuple)) else None
        if not attrs or not all(isinstance(c, int) and not isinstance(c, bool) for c in attrs):
            raise ValueError(f"csvae: attribute_classes must be a non-empty list of class labels (the classes with "
                             f"attribute y = 1), e.g. [0, 2, 4, 6, 8]; got {attribute_classes!r}")
        bad = [c for c in attrs if not 0 <= c < classes]
        if bad:
            raise ValueError(f"csvae: attribute_classes {bad} are not labels of {data_spec.name} (0..{classes - 1})")
        if len(set(attrs)) != len(attrs):
            raise ValueError(f"csvae: attribute_classes has repeated labels: {attrs}")
        if len(attrs) == classes:
            raise ValueError(f"csvae: attribute_classes lists every class of {data_spec.name}, so y = 1 always; "
                             "leave at least one class out (those get y = 0)")
        check_likelihood(likelihood, data_spec)
        if sample_from not in ("likelihood", "mean"):
            raise ValueError(f"sample_from must be 'likelihood' or 'mean', got {sample_from!r}")
        self.num_classes = classes
        self.attribute_classes = sorted(attrs)
        self.register_buffer("attribute_map", torch.zeros(classes, dtype=torch.long).index_fill_(
            0, torch.tensor(attrs), 1), persistent=False)
        self.spec = data_spec
        self.event_shape = torch.Size(data_spec.event_shape)
        self.z_dim, self.w_dim = int(z_dim), int(w_dim)
        self.latent_shape = torch.Size((self.z_dim + self.w_dim,))
        self.likelihood_name, self.noise_std, self.sample_from = likelihood, noise_std, sample_from
        event = tuple(data_spec.event_shape)
        self.encoder = build_encoder(encoder, in_shape=event, out_features=2 * self.z_dim)
        self.w_encoder = build_encoder(w_encoder if w_encoder is not None else encoder,
                                       in_shape=concat_shape(event, 2), out_features=2 * self.w_dim)
        self.n_params = params_per_pixel(likelihood, data_spec)
        self.decoder = build_decoder(decoder, in_features=self.z_dim + self.w_dim,
                                     out_shape=(self.n_params * event[0], *event[1:]))
        loc = torch.zeros(2, self.w_dim)
        loc[1] = float(prior_init)
        raw = torch.full((2, self.w_dim), float(torch.log(torch.expm1(torch.tensor(1.0)))))  # softplus^-1(1)
        if learn_prior:
            self.prior_loc, self.prior_raw_scale = nn.Parameter(loc), nn.Parameter(raw)
        else:
            self.register_buffer("prior_loc", loc)
            self.register_buffer("prior_raw_scale", raw)

    # --- the attribute and the two parts of the code ------------------------------------------
    def attribute(self, context: Tensor) -> Tensor:
        """Class labels ``(B,)`` -> the binary attribute ``y`` ``(B,)`` long (1 for ``attribute_classes``)."""
        context = self.check_context(context, len(context) if context is not None else 0)
        return self.attribute_map[context]

    def _check_y(self, y: Tensor, n: int) -> Tensor:
        y = torch.as_tensor(y, device=self.device)
        if y.shape != (n,) or y.dtype.is_floating_point or (n and not bool(((y == 0) | (y == 1)).all())):
            raise ValueError(f"csvae: the attribute y must be ({n},) integers in {{0, 1}}, got {y.dtype} "
                             f"{tuple(y.shape)}" + ("" if y.dtype.is_floating_point or y.shape != (n,) else
                                                    f" with values {sorted(set(y.tolist()))}"))
        return y.long()

    def posterior_z(self, x: Tensor) -> Distribution:
        """``q(z | x)``: batch ``(B,)``, event ``(z_dim,)``."""
        self._check_x(x)
        return gaussian_posterior(self.encoder(x))

    def posterior_w(self, x: Tensor, y: Tensor) -> Distribution:
        """``q(w | x, y)`` for the attribute ``y`` ``(B,)`` in {0, 1}: batch ``(B,)``, event ``(w_dim,)``."""
        self._check_x(x)
        y = self._check_y(y, x.shape[0])
        return gaussian_posterior(self.w_encoder(concat_onehot(x, y, 2)))

    def prior_w(self, y: Tensor) -> Distribution:
        """``p(w | y)`` for the attribute ``y`` ``(B,)``: batch ``(B,)``, event ``(w_dim,)``."""
        y = self._check_y(y, len(y))
        return _normal(self.prior_loc[y], F.softplus(self.prior_raw_scale[y]) + MIN_STD)

    def prior_z(self) -> Distribution:
        """``p(z) = N(0, I)`` over ``(z_dim,)``."""
        return standard_normal((self.z_dim,), self.device)

    def split(self, code: Tensor) -> tuple[Tensor, Tensor]:
        """A joint code ``(..., z_dim + w_dim)`` -> ``(z, w)``."""
        return code[..., :self.z_dim], code[..., self.z_dim:]

    def likelihood_zw(self, z: Tensor, w: Tensor) -> Distribution:
        """``p(x | z, w)`` for ``z`` ``(B, z_dim)`` and ``w`` ``(B, w_dim)``: batch ``(B,)``."""
        code = torch.cat([z, w], -1)
        params = self.decoder(code).reshape(code.shape[0], self.n_params, *self.event_shape)
        return make_likelihood(self.likelihood_name, params, self.spec, noise_std=self.noise_std)

    def swap(self, x: Tensor, y_new: Tensor, *, draw: bool = False,
             generator: torch.Generator | None = None) -> Tensor:
        """Attribute swapping: ``z = E q(z | x)`` from ``x`` ``(B, *event)`` (model space), ``w`` the mean
        of ``p(w | y_new)`` (``draw``: one draw with ``generator``), decoded to ``E[x | z, w]``
        ``(B, *event)``. ``y_new`` ``(B,)`` are attribute values in {0, 1}, not class labels."""
        z, w = self.swap_codes(x, y_new, draw=draw, generator=generator)
        return self.likelihood_zw(z, w).mean

    def swap_codes(self, x: Tensor, y_new: Tensor, *, draw: bool = False,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The codes :meth:`swap` decodes: ``(z (B, z_dim), w (B, w_dim))``."""
        z = self.posterior_z(x).mean
        p = self.prior_w(self._check_y(y_new, x.shape[0]))
        if not draw:
            return z, p.mean
        base = p.base_dist
        eps = torch.randn(base.loc.shape, generator=generator, dtype=base.loc.dtype, device=base.loc.device)
        return z, base.loc + base.scale * eps

    # --- capabilities over the joint code [z, w] ------------------------------------------------
    def posterior(self, x: Tensor, *, context: Tensor | None = None) -> Distribution:
        """``q(z | x) q(w | x, y)`` over ``[z, w]``: batch ``(B,)``, event ``(z_dim + w_dim,)``."""
        self._check_x(x)
        y = self.attribute(self.check_context(context, x.shape[0]))
        qz, qw = self.posterior_z(x).base_dist, self.posterior_w(x, y).base_dist
        return _normal(torch.cat([qz.loc, qw.loc], -1), torch.cat([qz.scale, qw.scale], -1))

    def prior(self, *, context: Tensor | None = None) -> Distribution:
        """``p(z) p(w | y)`` over ``[z, w]``, batch ``(B,)`` for context labels ``(B,)``."""
        y = self.attribute(context)
        pw = self.prior_w(y).base_dist
        zeros = pw.loc.new_zeros(len(y), self.z_dim)
        return _normal(torch.cat([zeros, pw.loc], -1), torch.cat([torch.ones_like(zeros), pw.scale], -1))

    def likelihood(self, z: Tensor, *, context: Tensor | None = None) -> Distribution:
        """``p(x | z, w)`` for joint codes ``(B, z_dim + w_dim)``; the context (if given) is only checked:
        ``x`` depends on the attribute through ``w``."""
        if context is not None:
            self.check_context(context, z.shape[0])
        return self.likelihood_zw(*self.split(z))

    def decode(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        """``E[x | z, w]`` for joint codes ``(B, z_dim + w_dim)``."""
        return self.likelihood(z, context=context).mean

    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        dtype = self.prior_loc.dtype
        y = self.attribute(context)
        pw = self.prior_w(y).base_dist
        z = torch.randn(n, self.z_dim, generator=generator, dtype=dtype, device=self.device)
        w = pw.loc + pw.scale * torch.randn(pw.loc.shape, generator=generator, dtype=dtype, device=self.device)
        p = self.likelihood_zw(z, w)
        if self.sample_from == "mean":
            return p.mean
        if isinstance(p, Independent):
            base = p.base_dist
            return base.loc + base.scale * torch.randn(base.loc.shape, generator=generator, dtype=dtype,
                                                       device=self.device)
        return p.sample(generator=generator)

    def _check_x(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"CSVAE expects x of shape (B, {', '.join(map(str, self.event_shape))}), got "
                             f"{tuple(x.shape)}")
