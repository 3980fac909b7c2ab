"""Reference implementations for lab 07_dcgan (topic ``dcgan``).

A generative adversarial network (Goodfellow et al. 2014) trains two networks against each other:
a generator ``G`` that turns noise ``z`` into images and a discriminator ``D`` that tells real
images from generated ones. DCGAN (Radford, Metz and Chintala 2016) is the set of architecture
rules that made this game train reliably on images.

Graded (the exercises listed for this lab in :mod:`genlab.labs`):

- :class:`Generator` -- ``z (N, nz) -> (N, 1, 28, 28)`` in [-1, 1];
- :class:`Discriminator` -- ``(N, 1, 28, 28) -> logits (N,)``;
- :func:`dcgan_weights_init` -- conv weights ~ N(0, 0.02), batch-norm weights ~ N(1, 0.02), biases 0;
- :func:`discriminator_loss`, :func:`generator_loss` -- the two BCE losses, on logits;
- :func:`gan_train_step` -- one discriminator update, then one generator update.

The colour extension (CIFAR-10, GPU budget): :class:`ColourGenerator` and
:class:`ColourDiscriminator`, the same rules at 32x32 with 3 channels, and
:func:`nearest_neighbours` (are the samples copies of training images?) and
:func:`colour_spread` (do the samples keep the data's variety of colours?).

Helpers: :func:`to_gan_range` / :func:`from_gan_range`, :func:`make_dcgan`, :func:`train_gan`
(genlab's :func:`~genlab.training.fit` with a two-optimizer step), :func:`generate`,
:func:`slerp`.

Images are in [-1, 1] throughout (the generator ends in tanh); real digits in [0, 1] are mapped
with ``2 x - 1``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .arguments import float_tensor
from .device import model_device
from .training import evaluating, fit

__all__ = ["Generator", "Discriminator", "dcgan_weights_init", "discriminator_loss",
           "generator_loss", "gan_train_step", "to_gan_range", "from_gan_range", "make_dcgan",
           "adam_gan", "GANHistory", "train_gan", "generate", "slerp", "ColourGenerator",
           "ColourDiscriminator", "nearest_neighbours", "colour_spread"]


def _as_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# The two networks
# --------------------------------------------------------------------------------------------

class Generator(nn.Module):
    """DCGAN generator for 28x28 digits.

    ``z (N, nz)`` -> project to ``2*ngf x 7 x 7`` (a transposed conv on a 1x1 "image") ->
    ``ngf x 14 x 14`` -> ``1 x 28 x 28``. Batch norm and ReLU after every layer except the last,
    which has tanh (Radford et al.); no bias before batch norm (it would cancel).
    """

    def __init__(self, nz: int = 64, ngf: int = 64):
        super().__init__()
        self.nz, self.ngf = _as_positive_int(nz, "nz"), _as_positive_int(ngf, "ngf")
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, 2 * ngf, 7, 1, 0, bias=False),       # 1x1 -> 7x7
            nn.BatchNorm2d(2 * ngf), nn.ReLU(True),
            nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False),      # 7x7 -> 14x14
            nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 1, 4, 2, 1),                        # 14x14 -> 28x28
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if z.dim() == 4 and z.shape[2:] == (1, 1):
            z = z.flatten(1)
        if z.dim() != 2 or z.shape[1] != self.nz:
            raise ValueError(f"z must have shape (N, {self.nz}), got {tuple(z.shape)}")
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """DCGAN discriminator for 28x28 digits: strided convs, LeakyReLU(0.2), no pooling.

    ``1 x 28 x 28`` -> ``ndf x 14 x 14`` -> ``2*ndf x 7 x 7`` (with batch norm) -> one logit per
    image from a 7x7 conv. No batch norm on the input layer (Radford et al.).
    """

    def __init__(self, ndf: int = 64):
        super().__init__()
        self.ndf = _as_positive_int(ndf, "ndf")
        self.net = nn.Sequential(
            nn.Conv2d(1, ndf, 4, 2, 1),                                 # 28 -> 14
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False),               # 14 -> 7
            nn.BatchNorm2d(2 * ndf), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * ndf, 1, 7, 1, 0),                             # 7 -> 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"x must have shape (N, 1, 28, 28), got {tuple(x.shape)}")
        return self.net(x).flatten()


class ColourGenerator(nn.Module):
    """DCGAN generator for 32x32 colour images (CIFAR-10), the extension of lab 07.

    Radford et al.'s generator, one upsampling stage shorter than their 64x64 one:
    ``z (N, nz)`` -> ``4*ngf x 4 x 4`` -> ``2*ngf x 8 x 8`` -> ``ngf x 16 x 16`` ->
    ``channels x 32 x 32`` in [-1, 1]. The same rules as :class:`Generator`.
    """

    def __init__(self, nz: int = 100, ngf: int = 64, channels: int = 3):
        super().__init__()
        self.nz, self.ngf = _as_positive_int(nz, "nz"), _as_positive_int(ngf, "ngf")
        self.channels = _as_positive_int(channels, "channels")
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, 4 * ngf, 4, 1, 0, bias=False),       # 1x1 -> 4x4
            nn.BatchNorm2d(4 * ngf), nn.ReLU(True),
            nn.ConvTranspose2d(4 * ngf, 2 * ngf, 4, 2, 1, bias=False),  # 4x4 -> 8x8
            nn.BatchNorm2d(2 * ngf), nn.ReLU(True),
            nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False),      # 8x8 -> 16x16
            nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1),                 # 16x16 -> 32x32
            nn.Tanh(),
        )

    forward = Generator.forward  # the same checks: z of shape (N, nz) or (N, nz, 1, 1)


class ColourDiscriminator(nn.Module):
    """DCGAN discriminator for 32x32 colour images: ``channels x 32 x 32`` -> ``ndf x 16 x 16``
    -> ``2*ndf x 8 x 8`` -> ``4*ndf x 4 x 4`` (batch norm on all but the first) -> one logit per
    image from a 4x4 conv. The same rules as :class:`Discriminator`."""

    def __init__(self, ndf: int = 64, channels: int = 3):
        super().__init__()
        self.ndf = _as_positive_int(ndf, "ndf")
        self.channels = _as_positive_int(channels, "channels")
        self.net = nn.Sequential(
            nn.Conv2d(channels, ndf, 4, 2, 1),                          # 32 -> 16
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False),               # 16 -> 8
            nn.BatchNorm2d(2 * ndf), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * ndf, 4 * ndf, 4, 2, 1, bias=False),           # 8 -> 4
            nn.BatchNorm2d(4 * ndf), nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * ndf, 1, 4, 1, 0),                             # 4 -> 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, 32, 32):
            raise ValueError(f"x must have shape (N, {self.channels}, 32, 32), got {tuple(x.shape)}")
        return self.net(x).flatten()


def dcgan_weights_init(module: nn.Module) -> None:
    """Radford et al.'s initialization, for ``model.apply(dcgan_weights_init)``: conv and
    transposed-conv weights ~ N(0, 0.02), batch-norm weights ~ N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                           nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------
# Losses and the training step
# --------------------------------------------------------------------------------------------

def _check_logits(logits, name: str) -> None:
    float_tensor(logits, name)
    if logits.dim() != 1 or len(logits) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor of logits (N,), "
                         f"got shape {tuple(logits.shape)}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``BCE(D(x), 1) + BCE(D(G(z)), 0)``, each a batch mean, from logits:
    ``mean(softplus(-real)) + mean(softplus(fake))``."""
    _check_logits(real_logits, "real_logits")
    _check_logits(fake_logits, "fake_logits")
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss ``BCE(D(G(z)), 1) = mean(softplus(-fake))``."""
    _check_logits(fake_logits, "fake_logits")
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def gan_train_step(G: nn.Module, D: nn.Module, opt_g, opt_d, real: torch.Tensor,
                   z: torch.Tensor) -> tuple[float, float]:
    """One discriminator update on ``real`` and the detached ``G(z)``, then one generator update
    through the updated discriminator. Returns ``(d_loss, g_loss)`` as floats. Gradients are
    cleared before each backward pass and D's are cleared at the end, so nothing stale is left."""
    fake = G(z)
    opt_d.zero_grad(set_to_none=True)
    d_loss = discriminator_loss(D(real), D(fake.detach()))   # detach: this step must not reach G
    d_loss.backward()
    opt_d.step()

    opt_g.zero_grad(set_to_none=True)
    g_loss = generator_loss(D(fake))                         # through the *updated* D
    g_loss.backward()
    opt_g.step()
    opt_d.zero_grad(set_to_none=True)  # the G step left gradients in D; do not leave them around
    return d_loss.item(), g_loss.item()


# --------------------------------------------------------------------------------------------
# Helpers for the experiment
# --------------------------------------------------------------------------------------------

def to_gan_range(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> [-1, 1]."""
    return x * 2 - 1


def from_gan_range(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> [0, 1] (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)


def make_dcgan(nz: int = 64, ngf: int = 64, ndf: int = 64, device=None, seed: int | None = 0):
    """``(G, D)`` with :func:`dcgan_weights_init` applied, on ``device`` (default CPU)."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        G, D = Generator(nz, ngf), Discriminator(ndf)
        G.apply(dcgan_weights_init)
        D.apply(dcgan_weights_init)
    return G.to(device or "cpu"), D.to(device or "cpu")


def adam_gan(model: nn.Module, lr: float = 2e-4, beta1: float = 0.5,
             beta2: float = 0.999) -> torch.optim.Adam:
    """Adam with Radford et al.'s settings by default: learning rate 2e-4, beta1 = 0.5 (and
    PyTorch's beta2 = 0.999)."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(beta1, beta2))


class GANPair(nn.Module):
    """G and D (or a critic) in one module, so that :func:`~genlab.training.fit` moves and
    converts both."""

    def __init__(self, G, D):
        super().__init__()
        self.G, self.D = G, D


@dataclass
class GANHistory:
    """What :func:`train_gan` measured: per-step losses, snapshots of ``G(fixed_z)``."""
    d_losses: list[float] = field(default_factory=list)
    g_losses: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0
    snapshots: list[torch.Tensor] = field(default_factory=list)  # in [-1, 1], on the CPU
    snapshot_epochs: list[float] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``G(z)`` in eval mode (batch norm uses its running statistics), in batches; the
    generator's train/eval mode is restored afterwards. Returns images in [-1, 1] on z's device."""
    device = model_device(G)
    with evaluating(G):
        out = torch.cat([G(chunk.to(device)) for chunk in z.split(batch_size)])
    return out.to(z.device).contiguous()


def train_gan(G: nn.Module, D: nn.Module, x: torch.Tensor, epochs: int, *, batch_size: int = 64,
              lr: float = 2e-4, beta1: float = 0.5, beta2: float = 0.999, step=gan_train_step,
              fixed_z: torch.Tensor | None = None, snapshots_per_epoch: int = 1,
              seed: int = 0, device=None, progress: bool | None = None,
              desc: str = "DCGAN") -> GANHistory:
    """Train ``G`` and ``D`` on real images ``x`` in [0, 1] with ``step(G, D, opt_g, opt_d,
    real, z)`` (default :func:`gan_train_step`), through :func:`genlab.training.fit`. Both
    players get Adam (:func:`adam_gan`) with ``lr``, ``beta1`` and ``beta2``.

    The real batches are mapped to [-1, 1]; ``z`` is standard normal, drawn from a generator
    seeded with ``seed``. ``G(fixed_z)`` is recorded ``snapshots_per_epoch`` times per epoch
    (and once before training).
    """
    from .device import get_device
    device = torch.device(device) if device is not None else get_device()
    G.to(device), D.to(device)
    opt_g, opt_d = adam_gan(G, lr, beta1, beta2), adam_gan(D, lr, beta1, beta2)
    nz = G.nz if hasattr(G, "nz") else None
    history = GANHistory(steps_per_epoch=math.ceil(len(x) / batch_size))
    every = max(1, history.steps_per_epoch // max(1, snapshots_per_epoch))
    noise = torch.Generator(device="cpu").manual_seed(seed)

    def snapshot(step_count):
        if fixed_z is not None:
            history.snapshots.append(generate(G, fixed_z.to(device)).cpu())
            history.snapshot_epochs.append(step_count / history.steps_per_epoch)

    def step_fn(model, real, _optimizer):
        size = nz if nz is not None else fixed_z.shape[1]
        z = torch.randn(len(real), size, generator=noise).to(device)
        d_loss, g_loss = step(G, D, opt_g, opt_d, to_gan_range(real), z)
        history.d_losses.append(float(d_loss))
        history.g_losses.append(float(g_loss))
        done = len(history.d_losses)
        if done % every == 0 or done % history.steps_per_epoch == 0:
            snapshot(done)
        return torch.tensor(float(d_loss)), {"g_loss": float(g_loss)}

    snapshot(0)
    start = time.perf_counter()
    fit(GANPair(G, D), x, step_fn=step_fn, epochs=epochs, batch_size=batch_size, device=device,
        generator=seed, progress=progress, desc=desc)
    history.seconds = time.perf_counter() - start
    history.images_per_second = len(x) * epochs / history.seconds
    return history


def slerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` points on the great circle from ``a`` to ``b`` (both ``(nz,)``), ``(steps, nz)``.

    For Gaussian codes, spherical interpolation keeps the norm typical of N(0, I) samples; a
    straight line passes through codes of unusually small norm (White 2016).
    """
    steps = _as_positive_int(steps, "steps")
    t = torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device)[:, None]
    cos = F.cosine_similarity(a, b, dim=0).clamp(-1 + 1e-7, 1 - 1e-7)
    omega = torch.arccos(cos)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def nearest_neighbours(samples: torch.Tensor, train: torch.Tensor,
                       chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """For each sample, its nearest training image in pixel space (Euclidean distance).

    ``samples (N, C, H, W)`` and ``train (M, C, H, W)``, same range. Returns ``(distances (N,),
    indices (N,))`` on ``samples``' device. A generator that copies its training set shows
    samples whose nearest neighbour is the same picture at a distance near 0. The training images
    are compared ``chunk`` at a time, so memory stays bounded for all of CIFAR-10.
    """
    float_tensor(samples, "samples")
    float_tensor(train, "train")
    chunk = _as_positive_int(chunk, "chunk")
    if samples.dim() != 4 or train.dim() != 4 or samples.shape[1:] != train.shape[1:]:
        raise ValueError(f"samples and train must be image batches of the same (C, H, W), got "
                         f"{tuple(samples.shape)} and {tuple(train.shape)}")
    if len(train) == 0:
        raise ValueError("train is empty: there is no neighbour to find")
    flat = samples.flatten(1)
    best = torch.full((len(flat),), float("inf"), dtype=flat.dtype, device=flat.device)
    index = torch.zeros(len(flat), dtype=torch.long, device=flat.device)
    for start in range(0, len(train), chunk):
        block = train[start:start + chunk].to(flat.device, flat.dtype).flatten(1)
        distance, at = torch.cdist(flat, block).min(dim=1)
        closer = distance < best
        best = torch.where(closer, distance, best)
        index = torch.where(closer, at + start, index)
    # cdist's fast matrix-product formula loses precision near 0 (a copy would show ~1e-3):
    # measure the distance to each winner again, directly.
    nearest = train[index.to(train.device)].to(flat.device, flat.dtype).flatten(1)
    return (flat - nearest).norm(dim=1), index


def colour_spread(images: torch.Tensor) -> torch.Tensor:
    """The spread of colour over a batch: the standard deviation, over images, of each image's
    mean value per channel. ``images (N, C, H, W)`` -> ``(C,)``, in the images' own units.

    A generator that paints every sample in the same tint has a spread near 0 however varied
    its data; compare with the spread of as many real images.
    """
    float_tensor(images, "images")
    if images.dim() != 4 or len(images) < 2:
        raise ValueError(f"images must be a batch (N, C, H, W) of at least 2 images, got "
                         f"{tuple(images.shape)}")
    return images.mean(dim=(2, 3)).std(dim=0)
