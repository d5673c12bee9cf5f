""""Many paths to equilibrium" (Fedus et al. 2018, arXiv 1710.08446) at toy scale.

Part 1, disjoint supports. Data ``P = Uniform[1.5, 2.5]``; the generator is
``x = mu + w (u - 1/2)``, ``u ~ U(0, 1)``, starting at ``mu = -2, w = 1``: the
supports are disjoint, so ``JS(P, Q_mu) = log 2`` for every ``|mu - 2| >= 1``
(computed exactly below) and the divergence the minimax game minimises gives no
gradient. With the same MLP critic (5 critic steps per generator step), the
non-saturating GAN still moves ``mu`` to the data; the minimax GAN's gradient
``E[D(G(z)) d logit]`` vanishes as the critic wins.

Part 2, learning-rate sweep on ring8 (MLP generator and critic): for each learning
rate, does NS-GAN reach all 8 modes with most samples high-quality, and do the
gradient penalties of GAN-GP (``gp`` at interpolates, weight 10) and DRAGAN-NS
(``dragan`` near data, weight 10) widen the range of rates that work? Success:
all 8 modes captured and reverse KL <= 0.1 after the run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from genlab.data.base import DataSpec
from genlab.data.synthetic import ring8
from genlab.experiments import progress_bar, simple_fit, write_table
from genlab.metrics.modes import ModeCoverage
from genlab.models.base import ReparameterizedModel
from genlab.models.gan import MLPGenerator
from genlab.objectives.adversarial import MinimaxGAN, NonSaturatingGAN

LINE = DataSpec(name="uniform", kind="points", event_shape=(1,))
DATA_LO, DATA_HI = 1.5, 2.5


class ShiftedUniform(ReparameterizedModel):
    """``x = mu + w (u - 1/2)``, ``u ~ U(0, 1)``: support ``[mu - w/2, mu + w/2]``; ``(n, 1)``."""

    def __init__(self, *, mu: float = -2.0, width: float = 1.0):
        super().__init__()
        self.event_shape = torch.Size((1,))
        self.mu = nn.Parameter(torch.tensor(mu))
        self.log_width = nn.Parameter(torch.tensor(math.log(width)))

    def _rsample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(n, 1, generator=generator)
        return self.mu + self.log_width.exp() * (u - 0.5)


def js_uniform(mu: float, width: float = 1.0, grid: int = 20001) -> float:
    """``JS(P, Q)`` (nats) between ``U[1.5, 2.5]`` and ``U[mu - w/2, mu + w/2]`` by quadrature."""
    x = np.linspace(min(DATA_LO, mu - width / 2) - 0.1, max(DATA_HI, mu + width / 2) + 0.1, grid)
    p = ((x >= DATA_LO) & (x <= DATA_HI)).astype(float)
    q = ((x >= mu - width / 2) & (x <= mu + width / 2)).astype(float) / width
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(0.5 * np.trapezoid(kl_p + kl_q, x))


def disjoint_run(cls: type, *, steps: int, seed: int, critic_steps: int = 5, lr: float = 1e-3) -> list[float]:
    """Train ``mu`` against Uniform data with objective ``cls``; returns the ``mu`` trajectory."""
    torch.manual_seed(seed)
    model = ShiftedUniform()
    obj = cls(critic={"hidden": 32, "depth": 2})
    obj.setup(model, LINE)
    traj: list[float] = []

    def draw(n: int, g: torch.Generator) -> Tensor:
        return DATA_LO + (DATA_HI - DATA_LO) * torch.rand(n, 1, generator=g)

    simple_fit(model, obj, draw, steps=steps, lr={"generator": 2e-2, "critic": lr}, schedule={"critic": critic_steps},
               seed=seed, callback=lambda s: traj.append(float(model.mu.detach())))
    return traj


SWEEP = {
    "NS-GAN": {},
    "GAN-GP": {"penalty": [{"name": "gp", "weight": 10.0}]},
    "DRAGAN-NS": {"penalty": [{"name": "dragan", "weight": 10.0}]},
}


def sweep_run(kw: dict, lr: float, *, steps: int, seed: int) -> dict[str, float]:
    """NS-GAN (with the penalties in ``kw``) on ring8 at learning rate ``lr`` for both players."""
    data = ring8(n_train=0, n_test=0, seed=seed)
    torch.manual_seed(seed)
    model = MLPGenerator(data_spec=data.spec, latent_dim=2, hidden=64, depth=3)
    obj = NonSaturatingGAN(critic={"hidden": 64, "depth": 3}, **kw)
    obj.setup(model, data.spec)
    simple_fit(model, obj, lambda n, g: data.sample(n, g), steps=steps, lr=lr, batch_size=256, seed=seed)
    metric = ModeCoverage(dataset=data)
    metric.update(fake=model.sample(2500, generator=torch.Generator().manual_seed(0)))
    values = metric.compute()
    values["success"] = float(values["modes"] == 8 and values["reverse_kl"] <= 0.1)
    return values


def run(*, out: str | Path, quick: bool = False, seeds: int = 3, progress: bool = True) -> dict:
    """Writes ``many_paths.png`` and ``many_paths.md`` into ``out``; returns the numbers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = 1 if quick else seeds
    d_steps = 150 if quick else 400
    lrs = [1e-3, 1e-2] if quick else [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    s_steps = 300 if quick else 1500
    res: dict = {"disjoint": {}, "sweep": {}}
    bar = progress_bar(2 * seeds + len(SWEEP) * len(lrs) * seeds, progress, "many-paths")
    mus = np.linspace(-3, 5, 161)
    res["js_curve"] = [js_uniform(float(m)) for m in mus]
    trajs = {}
    for name, cls in (("minimax GAN", MinimaxGAN), ("NS-GAN", NonSaturatingGAN)):
        trajs[name] = []
        for s in range(seeds):
            trajs[name].append(disjoint_run(cls, steps=d_steps, seed=s))
            bar.update(1)
        res["disjoint"][name] = [t[-1] for t in trajs[name]]
    for name, kw in SWEEP.items():
        res["sweep"][name] = {}
        for lr in lrs:
            runs = []
            for s in range(seeds):
                runs.append(sweep_run(kw, lr, steps=s_steps, seed=s))
                bar.update(1)
            res["sweep"][name][lr] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    bar.close()

    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    ax[0].plot(mus, res["js_curve"])
    ax[0].axhline(math.log(2), color="k", ls=":", lw=0.8)
    ax[0].set(title="JS(P, Q_mu): flat (= log 2) when supports are disjoint", xlabel="mu", ylabel="nats")
    for name, ts in trajs.items():
        for i, t in enumerate(ts):
            ax[1].plot(t, color="C0" if name == "NS-GAN" else "C3", alpha=0.7, label=name if i == 0 else None)
    ax[1].axhline(2.0, color="k", ls=":", lw=0.8)
    ax[1].set(title="generator location mu (data centre = 2)", xlabel="generator step", ylabel="mu")
    ax[1].legend()
    for i, name in enumerate(SWEEP):
        ax[2].plot(lrs, [res["sweep"][name][lr]["modes"] for lr in lrs], "o-", label=name)
    ax[2].set(xscale="log", title="ring8: modes captured vs learning rate", xlabel="learning rate", ylabel="modes (of 8)")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(out / "many_paths.png", dpi=110)
    plt.close(fig)

    rows = [[name, lr, v["modes"], v["hq_percent"], v["reverse_kl"], v["success"]]
            for name, by_lr in res["sweep"].items() for lr, v in by_lr.items()]
    text = write_table(out / "many_paths.md", "Many paths to equilibrium: ring8 learning-rate sweep",
                       ["objective", "lr", "modes", "HQ %", "reverse KL", "success rate"], rows,
                       note=(f"Disjoint supports (data U[1.5, 2.5], generator starts at mu = -2): final mu "
                             f"minimax = {np.round(res['disjoint']['minimax GAN'], 2).tolist()}, NS-GAN = "
                             f"{np.round(res['disjoint']['NS-GAN'], 2).tolist()} (target 2). Sweep: {s_steps} "
                             f"steps, batch 256, Adam(0.5, 0.999), same lr for both players, {seeds} seed(s); "
                             "success = 8 modes and reverse KL <= 0.1."))
    res["figure"], res["table"], res["text"] = str(out / "many_paths.png"), str(out / "many_paths.md"), text
    return res
