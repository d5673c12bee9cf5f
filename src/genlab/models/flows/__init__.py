"""Normalizing flows: Real NVP, Glow, MADE/MAF/IAF and the shared transforms.

See ``docs/flows.md`` for the conventions (directions, log-dets, dequantisation
and bits/dim)."""

from genlab.models.flows.core import (ActNorm, AffineCoupling, Compose, FactorOut, Inverse,
                                      LUInvertibleLinear, Squeeze, Transform, TransformFlow)
from genlab.models.flows.glow import Glow
from genlab.models.flows.maf import IAF, MAF, MADEFlow, MaskedAffine
from genlab.models.flows.realnvp import RealNVP

__all__ = ["ActNorm", "AffineCoupling", "Compose", "FactorOut", "Inverse", "LUInvertibleLinear", "Squeeze",
           "Transform", "TransformFlow", "Glow", "IAF", "MAF", "MADEFlow", "MaskedAffine", "RealNVP"]
