"""Every name a config or ``genlab list`` can use, in explicit dicts (no import-time
registration). Each entry is a class or builder function; its keyword-only
constructor arguments are the config keys (see :mod:`genlab.config`)."""

from __future__ import annotations

from typing import Any, Callable

from genlab.data import codes as _codes
from genlab.data import digits as _digits
from genlab.data import files as _files
from genlab.data import probes as _probes
from genlab.data import sequences as _seq
from genlab.data import sphere as _sphere
from genlab.data import synthetic as _syn
from genlab.metrics.c2st import C2ST
from genlab.metrics.fid import FID
from genlab.metrics.inception_score import InceptionScore
from genlab.metrics.kid import KID
from genlab.metrics.memorization import Memorization
from genlab.metrics.mmd import MMD
from genlab.metrics.modes import ModeCoverage
from genlab.metrics.msssim import MSSSIM
from genlab.metrics.prdc import PRDC
from genlab.metrics.bpd import BitsPerDim
from genlab.metrics.ais import AISDecoder, AISLatent
from genlab.metrics.critic import IndependentCritic
from genlab.metrics.iwae import IWAEBound
from genlab.metrics.latent import LatentMarginal
from genlab.metrics.classification import ClassifyError, LatentProbe
from genlab.models.autoregressive import PixelCNN, Transformer, WaveNet
from genlab.models.flows import IAF, MAF, Glow, MADEFlow, RealNVP
from genlab.models.flows import NSF, NSFAR, ConditionalMAF, ConditionalNSF, ConditionalRealNVP
from genlab.models.flows.circular_conv import ConvFlow
from genlab.models.flows.ffjord import FFJORD
from genlab.models.flows.residual import ResidualFlow
from genlab.models.flows.sphere import SphereFlow
from genlab.models.gan import ConditionalConvGenerator, ConditionalMLPGenerator, ConvGenerator, MLPGenerator
from genlab.models.independent import IndependentPixels
from genlab.models.linear_gaussian import LinearGaussian
from genlab.models.vae import VAE, ConditionalVAE
from genlab.models.helmholtz import DDCHelmholtzMachine, HelmholtzMachine
from genlab.models.draw import ConvDRAW
from genlab.models.semi_supervised import M2
from genlab.models.ssvae import PartiallySpecifiedVAE
from genlab.models.csvae import CSVAE
from genlab.objectives.acgan import ACGAN, TACGAN
from genlab.objectives.adversarial import MinimaxGAN, NonSaturatingGAN
from genlab.objectives.conditional import ConditionalGAN
from genlab.objectives.cramer import CramerGAN
from genlab.objectives.density_ratio import RatioMatching
from genlab.objectives.fgan import FGAN
from genlab.objectives.hinge import HingeGAN
from genlab.objectives.hybrids import ADE, AVB, AlphaGAN
from genlab.objectives.likelihood import MaximumLikelihood
from genlab.objectives.semi_supervised import M2Objective
from genlab.objectives.ssvae import SSVAEObjective
from genlab.objectives.csvae import CSVAEObjective
from genlab.objectives.variational import ELBO, GECO, IWAE
from genlab.objectives.wake_sleep import DDCWakeSleep, WakeSleep
from genlab.objectives.lsgan import LeastSquaresGAN
from genlab.objectives.mmd import GMMN
from genlab.objectives.mmd_gan import MMDGAN
from genlab.objectives.wasserstein import WGANGP, WassersteinGAN
from genlab.sampling.samplers import Ancestral, AnnealedLangevin, Langevin

# --- data -------------------------------------------------------------------
DATASETS: dict[str, Callable[..., Any]] = {
    "ring8": _syn.ring8,
    "grid25": _syn.grid25,
    "digits": _digits.digits,
    "vae_codes": _codes.vae_codes,
    "moons": _syn.moons,
    "spiral": _syn.spiral,
    "checkerboard": _syn.checkerboard,
    "pinwheel": _syn.pinwheel,
    "swissroll": _syn.swissroll,
    "overlap1d": _syn.overlap1d,
    "mnist": _files.mnist,
    "cifar10": _files.cifar10,
    "image_folder": _files.image_folder,
    "array": _files.array,
    "wav": _files.wav,
    "sines": _seq.sines,
    "vmf_s2": _sphere.vmf_s2,
    "vmf_s1": _sphere.vmf_s1,
    "dots": _probes.dots,
    "bar": _probes.bar,
}

# --- models -----------------------------------------------------------------
MODELS: dict[str, type] = {
    "linear_gaussian": LinearGaussian,
    "vae": VAE,
    "cond_vae": ConditionalVAE,
    "helmholtz": HelmholtzMachine,
    "ddc_helmholtz": DDCHelmholtzMachine,
    "conv_draw": ConvDRAW,
    "m2": M2,
    "ssvae": PartiallySpecifiedVAE,
    "csvae": CSVAE,
    "mlp_generator": MLPGenerator,
    "conv_generator": ConvGenerator,
    "cond_mlp_generator": ConditionalMLPGenerator,
    "cond_conv_generator": ConditionalConvGenerator,
    "realnvp": RealNVP,
    "glow": Glow,
    "made": MADEFlow,
    "maf": MAF,
    "iaf": IAF,
    "nsf": NSF,
    "nsf_ar": NSFAR,
    "cond_realnvp": ConditionalRealNVP,
    "cond_nsf": ConditionalNSF,
    "cond_maf": ConditionalMAF,
    "residual_flow": ResidualFlow,
    "conv_flow": ConvFlow,
    "ffjord": FFJORD,
    "sphere_flow": SphereFlow,
    "independent_pixels": IndependentPixels,
    "pixelcnn": PixelCNN,
    "wavenet": WaveNet,
    "transformer": Transformer,
}

# --- objectives -------------------------------------------------------------
OBJECTIVES: dict[str, type] = {
    "gan": MinimaxGAN,
    "nsgan": NonSaturatingGAN,
    "fgan": FGAN,
    "lsgan": LeastSquaresGAN,
    "hinge": HingeGAN,
    "wgan": WassersteinGAN,
    "wgan-gp": WGANGP,
    "cramer": CramerGAN,
    "gmmn": GMMN,
    "mmd-gan": MMDGAN,
    "ratio": RatioMatching,
    "cgan": ConditionalGAN,
    "acgan": ACGAN,
    "tacgan": TACGAN,
    "mle": MaximumLikelihood,
    "elbo": ELBO,
    "geco": GECO,
    "iwae": IWAE,
    "wake_sleep": WakeSleep,
    "ddc_wake_sleep": DDCWakeSleep,
    "alpha_gan": AlphaGAN,
    "avb": AVB,
    "ade": ADE,
    "m2": M2Objective,
    "ssvae": SSVAEObjective,
    "csvae": CSVAEObjective,
}

# --- metrics ----------------------------------------------------------------
METRICS: dict[str, type] = {
    "ais": AISDecoder,
    "ais_latent": AISLatent,
    "iwae": IWAEBound,
    "latent": LatentMarginal,
    "classify_error": ClassifyError,
    "latent_probe": LatentProbe,
    "critic": IndependentCritic,
    "modes": ModeCoverage,
    "fid": FID,
    "kid": KID,
    "is": InceptionScore,
    "prdc": PRDC,
    "msssim": MSSSIM,
    "mmd": MMD,
    "c2st": C2ST,
    "memorization": Memorization,
    "bpd": BitsPerDim,
}

# --- samplers ---------------------------------------------------------------
SAMPLERS: dict[str, type] = {
    "ancestral": Ancestral,
    "langevin": Langevin,
    "annealed_langevin": AnnealedLangevin,
}

TABLES = {"datasets": DATASETS, "models": MODELS, "objectives": OBJECTIVES, "metrics": METRICS,
          "samplers": SAMPLERS}


def lookup(table: str, name: str) -> Any:
    """``TABLES[table][name]`` with an error that lists the valid names."""
    entries = TABLES[table]
    if name not in entries:
        raise KeyError(f"unknown {table[:-1]} {name!r}; valid {table}: {', '.join(sorted(entries))}")
    return entries[name]


def summary(obj: Any) -> str:
    """The first paragraph of an entry's docstring, shortened to a sentence or ~110 characters."""
    doc = (obj.__doc__ or "").strip()
    para = " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())
    if len(para) <= 110:
        return para
    cut = para.find(". ", 0, 110)
    return para[:cut + 1] if cut > 40 else para[:107].rstrip() + "..."
