"""Reference implementations for lab 08_wgan (topic ``wgan``).

The Wasserstein GAN (Arjovsky, Chintala and Bottou 2017) replaces the discriminator's
real-vs-fake probability by a *critic* whose score difference estimates the Wasserstein-1
(earth mover's) distance between the data and the generator's distribution. The critic has to be
1-Lipschitz; the original paper clips its weights, Gulrajani et al. (2017) penalise the norm of
its input gradient instead (WGAN-GP).

Graded (the exercises listed for this lab in :mod:`genlab.labs`):

- :func:`wasserstein_1d` -- W1 between two equal-size 1-D samples (sort and match);
- :func:`parallel_lines_divergences` -- TV, KL, JS and W1 for Arjovsky et al.'s Example 1;
- :func:`critic_loss`, :func:`wgan_generator_loss` -- the two WGAN losses;
- :func:`clip_weights_` -- weight clipping, in place;
- :func:`gradient_penalty` -- Gulrajani et al.'s penalty at random interpolates;
- :func:`wgan_train_step` -- ``n_critic`` critic updates, then one generator update.

Helpers: :class:`Critic` (a DCGAN-style discriminator without batch norm), :data:`RECIPES`
(the optimizers and settings of the three GANs the lab compares) and :func:`train_recipe`, which
trains DCGAN, WGAN with clipping or WGAN-GP through :func:`genlab.training.fit` and records the
losses, the critic's Wasserstein estimate and the sample-quality score over training.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from numbers import Real
from typing import Callable, Sequence

import torch
from torch import nn

from .arguments import float_tensor, generator_or_none

__all__ = ["wasserstein_1d", "parallel_lines_divergences", "critic_loss", "wgan_generator_loss",
           "clip_weights_", "gradient_penalty", "wgan_train_step", "Critic", "RECIPES",
           "GANRun", "train_recipe", "make_optimizers"]


# --------------------------------------------------------------------------------------------
# Distances in one dimension and the parallel lines
# --------------------------------------------------------------------------------------------

def wasserstein_1d(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """W1 between the empirical distributions of two equal-size 1-D samples, a 0-d tensor.

    In one dimension the optimal transport plan matches the k-th smallest point of ``x`` with
    the k-th smallest of ``y``, so ``W1 = mean |sort(x) - sort(y)|``.
    """
    float_tensor(x, "x", nonempty=True)
    float_tensor(y, "y", nonempty=True)
    if x.dim() != 1 or y.dim() != 1:
        raise ValueError(f"x and y must be 1-D samples, got shapes {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same size, got {len(x)} and {len(y)}")
    if x.device != y.device:
        raise ValueError(f"x and y are on different devices: {x.device} and {y.device}")
    return (torch.sort(x).values - torch.sort(y).values).abs().mean()


def parallel_lines_divergences(theta) -> dict[str, torch.Tensor]:
    """TV, KL, JS and W1 between P0 (x = 0) and P_theta (x = theta), y ~ U[0, 1] on both lines.

    ``theta``: a number or a tensor of any shape (element-wise). Returns a dict with keys
    ``"tv"``, ``"kl"``, ``"js"`` and ``"w1"``, each a floating-point tensor shaped like ``theta``
    (0-d for a number) on its device. For theta != 0 the lines are disjoint: TV = 1, KL = inf,
    JS = log 2; W1 = |theta| (every point moves horizontally by |theta|). All are 0 at theta = 0.
    ``w1`` keeps the graph, so ``w1`` can be differentiated with respect to ``theta``.
    """
    if isinstance(theta, Real) and not isinstance(theta, bool):
        theta = torch.tensor(float(theta), dtype=torch.get_default_dtype())
    if not isinstance(theta, torch.Tensor) or theta.dtype == torch.bool:
        raise TypeError(f"theta must be a number or a tensor, got {type(theta).__name__}")
    if not theta.is_floating_point():
        theta = theta.to(torch.get_default_dtype())
    apart = (theta != 0).to(theta.dtype)  # 1 where the lines are disjoint
    return {"tv": apart,
            "kl": torch.where(theta != 0, math.inf, 0.0).to(theta.dtype),
            "js": math.log(2) * apart,
            "w1": theta.abs()}


# --------------------------------------------------------------------------------------------
# The WGAN losses, clipping and the gradient penalty
# --------------------------------------------------------------------------------------------

def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """``mean(fake_scores) - mean(real_scores)``: the critic minimizes it, so that its score
    difference ``mean(real) - mean(fake)`` estimates W1 (the negative of this loss)."""
    float_tensor(real_scores, "real_scores", nonempty=True)
    float_tensor(fake_scores, "fake_scores", nonempty=True)
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """``-mean(fake_scores)``: the generator raises the critic's score of its samples."""
    float_tensor(fake_scores, "fake_scores", nonempty=True)
    return -fake_scores.mean()


def clip_weights_(critic: nn.Module, c: float) -> nn.Module:
    """Clamp every parameter of ``critic`` to ``[-c, c]`` in place (the same Parameter objects,
    so optimizers keep tracking them); returns ``critic``."""
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be an nn.Module, got {type(critic).__name__}")
    if isinstance(c, bool) or not isinstance(c, Real) or not c > 0 or not math.isfinite(c):
        raise ValueError(f"c must be a positive number, got {c!r}")
    with torch.no_grad():
        for p in critic.parameters():
            p.clamp_(-c, c)
    return critic


def _uniform_per_sample(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One U[0, 1) number per sample, shaped (N, 1, ..., 1): drawn on the generator's device
    (``x``'s without one) and returned on ``x``'s device with ``x``'s dtype."""
    generator_or_none(generator)
    where = x.device if generator is None else generator.device
    shape = (len(x),) + (1,) * (x.dim() - 1)
    return torch.rand(shape, generator=generator, device=where, dtype=x.dtype).to(x.device)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Gulrajani et al.'s penalty ``mean_n (||grad_x critic(x_hat_n)||_2 - 1)^2``, a 0-d tensor.

    ``x_hat_n = eps_n * real_n + (1 - eps_n) * fake_n`` with one ``eps_n ~ U[0, 1]`` per sample,
    drawn with ``generator`` (on its device, then moved to ``real``'s). The gradient is taken
    with ``create_graph=True``, so the penalty can be back-propagated into the critic's weights.
    """
    float_tensor(real, "real", nonempty=True)
    float_tensor(fake, "fake", nonempty=True)
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    if real.dim() < 2:
        raise ValueError(f"real and fake must be batches (N, ...), got shape {tuple(real.shape)}")
    eps = _uniform_per_sample(real, generator)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


# --------------------------------------------------------------------------------------------
# The training step
# --------------------------------------------------------------------------------------------

def wgan_train_step(G: nn.Module, critic: nn.Module, opt_g, opt_c, real_batches: Sequence,
                    z_fn: Callable[[int], torch.Tensor], n_critic: int = 5,
                    clip: float | None = None, gp_weight: float | None = None) -> dict:
    """``n_critic`` critic updates, then one generator update; returns floats.

    Critic step ``k`` uses ``real_batches[k]`` and fresh fakes ``G(z_fn(len(real))).detach()``;
    it minimizes ``critic_loss`` (plus ``gp_weight * gradient_penalty`` when ``gp_weight``), and
    clips the critic's weights to ``[-clip, clip]`` after ``opt_c.step()`` when ``clip``. The
    generator step minimizes ``wgan_generator_loss`` on fresh fakes (batch size of the first
    real batch). No gradients are left behind on either network.

    Returned: ``critic_loss``, ``wasserstein`` (= -critic_loss) and ``gp`` (0.0 without a
    penalty), each the mean over the critic steps, and ``generator_loss``.
    """
    if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
        raise ValueError(f"n_critic must be a positive int, got {n_critic!r}")
    if len(real_batches) < n_critic:
        raise ValueError(f"real_batches has {len(real_batches)} batches, n_critic={n_critic} needs "
                         "one per critic step")
    losses, penalties = [], []
    for real in real_batches[:n_critic]:
        with torch.no_grad():
            fake = G(z_fn(len(real)))
        opt_c.zero_grad(set_to_none=True)
        loss = critic_loss(critic(real), critic(fake))
        total = loss
        if gp_weight:
            gp = gradient_penalty(critic, real, fake)
            total = loss + gp_weight * gp
            penalties.append(gp.detach())
        total.backward()
        opt_c.step()
        if clip is not None:
            clip_weights_(critic, clip)
        losses.append(loss.detach())

    opt_g.zero_grad(set_to_none=True)
    g_loss = wgan_generator_loss(critic(G(z_fn(len(real_batches[0])))))
    g_loss.backward()
    opt_g.step()
    opt_g.zero_grad(set_to_none=True)
    opt_c.zero_grad(set_to_none=True)   # the generator's backward reached the critic too
    c_loss = torch.stack(losses).mean().item()
    return {"critic_loss": c_loss, "wasserstein": -c_loss,
            "gp": torch.stack(penalties).mean().item() if penalties else 0.0,
            "generator_loss": g_loss.item()}


# --------------------------------------------------------------------------------------------
# The critic network
# --------------------------------------------------------------------------------------------

class Critic(nn.Module):
    """A DCGAN-style discriminator for (N, 1, 28, 28) images without batch norm: scores (N,).

    28 -> 14 -> 7 by strided 4x4 convolutions with LeakyReLU(0.2), then a 7x7 convolution to one
    number per image. No sigmoid: a critic's score is unbounded. ``norm="layer"`` adds layer
    normalization (``GroupNorm`` with one group, per sample) after the second convolution; batch
    norm is ruled out because it mixes the samples of a batch, and the gradient penalty needs
    the gradient of each sample's score with respect to that sample alone.
    """

    def __init__(self, ndf: int = 64, norm: str = "none"):
        super().__init__()
        if norm not in ("none", "layer"):
            raise ValueError(f"norm must be 'none' or 'layer', got {norm!r}")
        self.net = nn.Sequential(
            nn.Conv2d(1, ndf, 4, 2, 1), nn.LeakyReLU(0.2),                   # ndf x 14 x 14
            nn.Conv2d(ndf, 2 * ndf, 4, 2, 1),                                # 2ndf x 7 x 7
            nn.GroupNorm(1, 2 * ndf) if norm == "layer" else nn.Identity(),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ndf, 1, 7),                                        # 1 x 1 x 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def _init_weights(module: nn.Module) -> None:
    """DCGAN initialisation (conv weights ~ N(0, 0.02), norm weights ~ N(1, 0.02), biases 0)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------
# Training the three GANs of the comparison
# --------------------------------------------------------------------------------------------

# The published settings: DCGAN (Radford et al.), WGAN (Arjovsky et al., Algorithm 1) and WGAN-GP
# (Gulrajani et al., Algorithm 1 with the DCGAN-style betas of their experiments).
RECIPES = {
    "dcgan": dict(optimizer="adam", lr=2e-4, betas=(0.5, 0.999), n_critic=1),
    "wgan-clip": dict(optimizer="rmsprop", lr=5e-5, n_critic=5, clip=0.01),
    "wgan-gp": dict(optimizer="adam", lr=1e-4, betas=(0.5, 0.9), n_critic=5, gp_weight=10.0),
}


def make_optimizers(kind: str, G: nn.Module, D: nn.Module, lr: float | None = None):
    """The recipe's optimizers ``(opt_g, opt_d)`` for ``kind`` in :data:`RECIPES`."""
    recipe = _recipe(kind)
    lr = recipe["lr"] if lr is None else lr
    if recipe["optimizer"] == "rmsprop":
        make = lambda m: torch.optim.RMSprop(m.parameters(), lr=lr)  # noqa: E731
    else:
        make = lambda m: torch.optim.Adam(m.parameters(), lr=lr, betas=recipe["betas"])  # noqa: E731
    return make(G), make(D)


def _recipe(kind: str) -> dict:
    if kind not in RECIPES:
        raise ValueError(f"kind must be one of {sorted(RECIPES)}, got {kind!r}")
    return RECIPES[kind]


@dataclass
class GANRun:
    """What :func:`train_recipe` measured. ``steps`` are generator updates; ``evals`` holds, at
    each evaluation, the generator step, the images seen and the SampleQuality."""
    kind: str
    G: nn.Module
    D: nn.Module
    lr: float
    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    evals: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    diverged: str | None = None

    @property
    def quality(self):
        """The last sample-quality score (None before any evaluation)."""
        return self.evals[-1]["quality"] if self.evals else None


def train_recipe(kind: str, x: torch.Tensor, *, epochs: int, evals: int = 5, lr: float | None = None,
              nz: int = 64, ngf: int = 32, ndf: int = 32, batch_size: int = 64,
              n_samples: int = 1000, seed: int = 0, device=None, step_fn=None,
              quality_fn=None, progress: bool | None = None) -> GANRun:
    """Train a DCGAN generator with ``kind``'s recipe on images ``x`` in [0, 1] (genlab's image
    range, as :func:`genlab.dcgan.train_gan`; the networks see them mapped to [-1, 1]).

    ``kind``: ``"dcgan"`` (lab 07's Discriminator and ``gan_train_step``), ``"wgan-clip"`` or
    ``"wgan-gp"`` (a :class:`Critic` and ``step_fn``, default :func:`wgan_train_step`). Every
    kind makes ``epochs`` passes over ``x`` with the discriminator/critic (a WGAN generator step
    uses ``n_critic`` real batches, so it makes ``n_critic`` times fewer generator steps). The
    sample quality of ``n_samples`` samples is measured ``evals`` times, evenly spread.
    A loss that becomes NaN or inf stops the run and sets ``diverged``.
    """
    from . import dcgan
    from .training import fit

    recipe = _recipe(kind)
    if quality_fn is None:
        from .quality import digit_classifier, sample_quality
        digit_classifier()  # trained (once) outside no_grad, before the first evaluation
        quality_fn = lambda images: sample_quality(images, value_range=(-1, 1))  # noqa: E731
    x = dcgan.to_gan_range(x)
    step_fn = wgan_train_step if step_fn is None else step_fn
    torch.manual_seed(seed)
    G = dcgan.Generator(nz=nz, ngf=ngf)
    if kind == "dcgan":
        D = dcgan.Discriminator(ndf=ndf)
        G.apply(dcgan.dcgan_weights_init)
        D.apply(dcgan.dcgan_weights_init)
    else:
        D = Critic(ndf=ndf)
        G.apply(_init_weights)
        D.apply(_init_weights)
    from .device import get_device
    device = torch.device(device) if device is not None else get_device()
    pair = dcgan.GANPair(G, D).to(device)
    opt_g, opt_d = make_optimizers(kind, G, D, lr)
    run = GANRun(kind=kind, G=G, D=D, lr=opt_g.param_groups[0]["lr"])
    n_critic = recipe["n_critic"]
    z_fixed = torch.randn(n_samples, nz, generator=torch.Generator().manual_seed(seed + 1))

    def z_fn(n):
        return torch.randn(n, nz, device=device)

    def step(model, batch, optimizer):
        if kind == "dcgan":
            d_loss, g_loss = dcgan.gan_train_step(G, D, opt_g, opt_d, batch, z_fn(len(batch)))
            out = {"d_loss": float(d_loss), "g_loss": float(g_loss)}
        else:
            out = step_fn(G, D, opt_g, opt_d, batch.tensor_split(n_critic), z_fn, n_critic=n_critic,
                          clip=recipe.get("clip"), gp_weight=recipe.get("gp_weight"))
        for name, value in out.items():
            run.metrics.setdefault(name, []).append(float(value))
        run.steps.append(len(run.steps) + 1)
        loss = out.get("critic_loss", out.get("d_loss"))
        if not all(math.isfinite(float(v)) for v in out.values()):
            raise FloatingPointError(f"a loss became {loss}")
        return torch.tensor(loss)

    def evaluate(epoch):
        fake = dcgan.generate(G, z_fixed)
        run.evals.append({"epoch": epoch, "step": len(run.steps), "quality": quality_fn(fake)})

    marks = sorted({max(1, round(epochs * (i + 1) / evals)) for i in range(evals)}) if evals else []
    start, done = time.perf_counter(), 0
    order = torch.Generator().manual_seed(seed)
    for mark in marks or [epochs]:
        try:
            fit(pair, x, step_fn=step, epochs=mark - done, batch_size=batch_size * n_critic,
                generator=order, device=device, progress=progress,
                desc=f"{kind} epochs {done + 1}-{mark}")
        except FloatingPointError as err:
            run.diverged = str(err)
            break
        done = mark
        if marks:
            evaluate(done)
    run.seconds = time.perf_counter() - start
    return run


def samples(G: nn.Module, n: int = 64, nz: int = 64, seed: int = 0) -> torch.Tensor:
    """``n`` samples of ``G`` from a fixed seed, on the CPU, in [-1, 1], in eval mode."""
    from .dcgan import generate
    return generate(G, torch.randn(n, nz, generator=torch.Generator().manual_seed(seed)))
