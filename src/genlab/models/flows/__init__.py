"""Normalizing flows: Real NVP, Glow, MADE/MAF/IAF, neural spline flows, their
class-conditional versions and the shared transforms.

See ``docs/flows.md`` for the conventions (directions, log-dets, dequantisation
and bits/dim)."""

from genlab.models.flows.core import (ActNorm, AffineCoupling, Compose, FactorOut, Inverse,
                                      LUInvertibleLinear, Squeeze, Transform, TransformFlow)
from genlab.models.flows.glow import Glow
from genlab.models.flows.maf import IAF, MAF, ConditionalMAF, MADEFlow, MaskedAffine
from genlab.models.flows.realnvp import ConditionalRealNVP, RealNVP
from genlab.models.flows.spline import (NSF, NSFAR, ConditionalNSF, MaskedSpline, RationalQuadraticSpline,
                                        SplineCoupling)

__all__ = ["ActNorm", "AffineCoupling", "Compose", "FactorOut", "Inverse", "LUInvertibleLinear", "Squeeze",
           "Transform", "TransformFlow", "Glow", "IAF", "MAF", "MADEFlow", "MaskedAffine", "RealNVP",
           "ConditionalMAF", "ConditionalRealNVP", "NSF", "NSFAR", "ConditionalNSF", "MaskedSpline",
           "RationalQuadraticSpline", "SplineCoupling"]
