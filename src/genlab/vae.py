"""Reference implementations for lab 04_vae (exercises in :mod:`genlab.labs`).

The encoder outputs the log-*variance* ``logvar = log sigma^2``, so ``sigma = exp(0.5 * logvar)``.
Mixing that up with a log standard deviation is the classic VAE bug; every function here uses
``logvar`` in the same sense.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .arguments import float_tensor
from .device import model_device


def _check_same_shape(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    float_tensor(a, a_name)
    float_tensor(b, b_name)
    if a.shape != b.shape:
        raise ValueError(f"{a_name} and {b_name} must have the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


def box_muller(u1: torch.Tensor, u2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent standard normals from independent uniforms ``u1`` in (0, 1] and ``u2``.

    ``z1 = sqrt(-2 log u1) cos(2 pi u2)``, ``z2 = sqrt(-2 log u1) sin(2 pi u2)``.
    """
    _check_same_shape("u1", u1, "u2", u2)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    angle = 2.0 * math.pi * u2
    return radius * torch.cos(angle), radius * torch.sin(angle)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   eps: torch.Tensor | None = None) -> torch.Tensor:
    """``z = mu + sigma * eps`` with ``sigma = exp(0.5 * logvar)``, ``eps ~ N(0, I)`` unless given.

    The randomness sits in ``eps`` alone, so gradients flow to ``mu`` (dz/dmu = 1) and to sigma
    (dz/dsigma = eps).
    """
    _check_same_shape("mu", mu, "logvar", logvar)
    if eps is None:
        eps = torch.randn_like(mu)  # one draw per element (and per batch row), on mu's device
    elif eps.shape != mu.shape:
        raise ValueError(f"eps must have the shape of mu {tuple(mu.shape)}, got {tuple(eps.shape)}")
    return mu + torch.exp(0.5 * logvar) * eps


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(N(mu, diag(exp(logvar))) || N(0, I))``, summed over the last dimension."""
    _check_same_shape("mu", mu, "logvar", logvar)
    if mu.dim() == 0:
        raise ValueError("mu and logvar need a latent dimension (the last one); got 0-d tensors")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def elbo_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
              beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The negative ELBO in nats per image: ``(recon + beta * kl, recon, kl)``.

    ``recon`` is the batch mean of each image's summed Bernoulli cross-entropy, computed from
    the decoder's logits (stable, unlike ``sigmoid`` then ``log``); ``kl`` is the batch mean of
    :func:`kl_to_standard_normal`.
    """
    _check_same_shape("logits", logits, "x", x)
    _check_same_shape("mu", mu, "logvar", logvar)
    if logits.dim() < 2 or mu.dim() != 2 or len(mu) != len(x):
        raise ValueError(f"expected a batch: logits/x (N, ...) and mu/logvar (N, D), got "
                         f"{tuple(logits.shape)} and {tuple(mu.shape)}")
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
    kl = kl_to_standard_normal(mu, logvar).mean()
    return recon + beta * kl, recon, kl


def gaussian_nll(x: torch.Tensor, x_hat: torch.Tensor, sigma) -> torch.Tensor:
    """``-log N(x; x_hat, sigma^2 I)`` in nats per image: summed over the pixels (every dimension
    after the first), averaged over the batch, a 0-d tensor.

    Per pixel ``(x - x_hat)^2 / (2 sigma^2) + log sigma + log(2 pi) / 2``: the squared error is
    the Gaussian log-likelihood up to a scale ``1 / (2 sigma^2)`` and a constant, so an ELBO with
    a fixed-sigma Gaussian decoder is, after multiplying by ``2 sigma^2``, the summed squared error
    plus ``beta = 2 sigma^2`` times the KL. ``sigma``: the decoder's standard deviation, a positive
    number or a tensor of positive values that broadcasts against ``x`` (e.g. one per pixel).
    """
    _check_same_shape("x", x, "x_hat", x_hat)
    if x.dim() < 2:
        raise ValueError(f"x and x_hat must be batches (N, ...), got shape {tuple(x.shape)}")
    if isinstance(sigma, torch.Tensor):
        float_tensor(sigma, "sigma", nonempty=True)
        try:
            fits = torch.broadcast_shapes(sigma.shape, x.shape) == x.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"sigma of shape {tuple(sigma.shape)} does not broadcast to x's "
                             f"shape {tuple(x.shape)}")
        if not bool((sigma > 0).all()):
            raise ValueError("sigma is a standard deviation: every value must be positive")
        sigma = sigma.to(x.device, x.dtype)
    else:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
            raise TypeError(f"sigma must be a positive number or a tensor, got {type(sigma).__name__}")
        if not sigma > 0 or not math.isfinite(sigma):
            raise ValueError(f"sigma is a standard deviation and must be positive, got {sigma}")
        sigma = torch.tensor(float(sigma), dtype=x.dtype, device=x.device)
    per_pixel = ((x - x_hat) / sigma).pow(2) / 2 + torch.log(sigma) + 0.5 * math.log(2 * math.pi)
    return per_pixel.expand_as(x).flatten(1).sum(1).mean()


def vae_loss(model: nn.Module, batch, beta: float = 1.0):
    """A ``loss_fn`` for :func:`genlab.training.fit`: the ELBO loss of ``model`` on a batch of
    images (or an ``(images, labels)`` batch), with recon and KL as extra metrics."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    logits, mu, logvar = model(x)
    loss, recon, kl = elbo_loss(logits, x, mu, logvar, beta)
    return loss, {"recon": recon, "kl": kl}


class VAE(nn.Module):
    """A small convolutional VAE for ``(N, 1, 28, 28)`` images, cheap enough for a 2-core CPU.

    Encoder: two stride-2 convolutions (1->32->64 channels, 28->14->7) and linear heads for
    ``mu`` and ``logvar``. Decoder: the mirror image with transposed convolutions, ending in
    logits (apply ``sigmoid`` for pixel probabilities).
    """

    def __init__(self, latent_dim: int = 20):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(64 * 7 * 7, latent_dim)
        self.fc_logvar = nn.Linear(64 * 7 * 7, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 64 * 7 * 7), nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar


class MLPVAE(nn.Module):
    """The VAE of pytorch/examples ``vae/main.py``: 784-400-(20, 20) encoder, 20-400-784 decoder.

    One change: pytorch/examples' ``decode`` ends in ``sigmoid`` and returns ``(N, 784)``; here it
    returns the logits shaped ``(N, 1, 28, 28)`` so that :func:`elbo_loss` applies (same model,
    numerically stabler loss).
    """

    def __init__(self, latent_dim: int = 20):
        super().__init__()
        self.latent_dim = latent_dim
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, latent_dim)
        self.fc22 = nn.Linear(400, latent_dim)
        self.fc3 = nn.Linear(latent_dim, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x.reshape(-1, 784)))
        return self.fc21(h1), self.fc22(h1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc4(F.relu(self.fc3(z))).view(-1, 1, 28, 28)

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar


@torch.no_grad()
def sample_prior(model: nn.Module, n: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` images in [0, 1] decoded from ``z ~ N(0, I)`` (``model.latent_dim`` dimensions),
    on the model's device; ``generator`` (on any device) makes the draw reproducible."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    where = generator.device if generator is not None else model_device(model)
    z = torch.randn(n, model.latent_dim, generator=generator, device=where)
    return torch.sigmoid(model.decode(z.to(model_device(model))))


@torch.no_grad()
def interpolate(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, steps: int) -> torch.Tensor:
    """Decode ``steps`` evenly spaced points on the line from the posterior mean of image ``x_a``
    to that of ``x_b`` (each ``(1, 28, 28)`` or ``(1, 1, 28, 28)``); images in [0, 1].
    The first image decodes ``x_a``'s mean, the last ``x_b``'s."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2 (the two ends are included), got {steps!r}")
    float_tensor(x_a, "x_a")
    float_tensor(x_b, "x_b")
    if x_a.numel() != x_b.numel() or x_a.dim() < 3 or x_a.dim() > 4 or x_b.dim() < 3 or x_b.dim() > 4 \
            or x_a.shape[-3:] != x_b.shape[-3:] or x_a.numel() != math.prod(x_a.shape[-3:]):
        raise ValueError(f"x_a and x_b must each be one image, (C, H, W) or (1, C, H, W); got "
                         f"{tuple(x_a.shape)} and {tuple(x_b.shape)}")
    x = torch.stack([x_a.reshape(x_a.shape[-3:]), x_b.reshape(x_b.shape[-3:])])
    mu, _ = model.encode(x)
    t = torch.linspace(0.0, 1.0, steps, device=mu.device).unsqueeze(1)
    return torch.sigmoid(model.decode((1 - t) * mu[0] + t * mu[1]))
