"""Conditional generation: a VAE told which digit to draw, and arithmetic in a VAE's code.

A **conditional VAE** (Sohn, Lee and Yan 2015; the generative half of Kingma et al. 2014's M2)
gives the label ``y`` to both networks: the encoder is :math:`q(z \\mid x, y)`, the decoder
:math:`p(x \\mid z, y)`, and the ELBO is the VAE's with every distribution conditioned on ``y``.
The code no longer has to say *which* digit it is, so it is free to carry the *style* (slant,
stroke width, size): one code decoded with each of the ten labels writes one hand in ten digits
(:func:`restyle`), and a code drawn from the prior with label ``k`` decodes to a ``k``.

**Latent arithmetic** (Radford et al. 2016 for GANs; White 2016 for VAEs) asks the same of a
plain VAE, which was never told the labels: the mean code of the test digits of class ``a`` marks
where that class lives, so ``mu(x) - mean[a] + mean[b]`` moves an ``a`` towards the ``b``
region and keeps what set ``x`` apart from the average ``a`` (:func:`latent_arithmetic`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .device import model_device
from .vae import elbo_loss, reparameterize


def one_hot(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Labels ``(N,)`` (integers in ``[0, n_classes)``) as float one-hot rows ``(N, n_classes)``."""
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool \
            or y.dim() != 1:
        raise TypeError("labels must be a 1-D integer tensor (N,), got "
                        + (f"{y.dtype} of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor)
                           else type(y).__name__))
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got values from {int(y.min())} "
                         f"to {int(y.max())}")
    return F.one_hot(y.long(), n_classes).float()


class ConditionalVAE(nn.Module):
    """pytorch/examples' MLP VAE with the label appended to both networks' inputs:
    encoder ``[x, onehot(y)]`` (784 + 10) -> 400 -> (mu, logvar); decoder ``[z, onehot(y)]`` ->
    400 -> 784 logits, shaped ``(N, 1, 28, 28)``.

    The default code is 2-D on purpose: with 8 dimensions, at lab 4's CPU budget, the code also
    stores the digit's identity and the decoder half ignores the label (a digit classifier read
    about half of the samples as the label asked for, against 93-99 % with 2 dimensions)."""

    def __init__(self, latent_dim: int = 2, n_classes: int = 10, hidden: int = 400):
        super().__init__()
        self.latent_dim, self.n_classes = latent_dim, n_classes
        self.encoder = nn.Sequential(nn.Linear(784 + n_classes, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim + n_classes, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 784))

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1:] != (1, 28, 28) or len(x) != len(y):
            raise ValueError(f"expected images (N, 1, 28, 28) and N labels, got images "
                             f"{tuple(x.shape)} and {len(y)} labels")
        h = self.encoder(torch.cat([x.flatten(1), one_hot(y, self.n_classes).to(x)], 1))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim or len(z) != len(y):
            raise ValueError(f"expected codes (N, {self.latent_dim}) and N labels, got codes "
                             f"{tuple(z.shape)} and {len(y)} labels")
        h = torch.cat([z, one_hot(y, self.n_classes).to(z)], 1)
        return self.decoder(h).view(-1, 1, 28, 28)

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        mu, logvar = self.encode(x, y)
        return self.decode(reparameterize(mu, logvar), y), mu, logvar


def cvae_loss(model: ConditionalVAE, batch, beta: float = 1.0):
    """A ``loss_fn`` for :func:`genlab.training.fit` on ``(images, labels)`` batches: the
    conditional ELBO (summed over pixels and latent dimensions, averaged over the batch)."""
    x, y = batch
    logits, mu, logvar = model(x, y)
    loss, recon, kl = elbo_loss(logits, x, mu, logvar, beta)
    return loss, {"recon": recon, "kl": kl}


@torch.no_grad()
def sample(model: ConditionalVAE, labels: torch.Tensor,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """One image in [0, 1] per label, decoded from ``z ~ N(0, I)`` with that label."""
    device = model_device(model)
    z = torch.randn(len(labels), model.latent_dim, generator=generator)
    return torch.sigmoid(model.decode(z.to(device), labels.to(device))).cpu()


@torch.no_grad()
def restyle(model: ConditionalVAE, x: torch.Tensor, y: torch.Tensor,
            labels: torch.Tensor) -> torch.Tensor:
    """Each image's style as every label: encode ``x`` with its own label ``y`` (posterior mean),
    decode that code once per entry of ``labels``. Returns ``(len(x), len(labels), 1, 28, 28)``
    pixel probabilities."""
    device = model_device(model)
    mu, _ = model.encode(x.to(device), y.to(device))
    codes = mu.repeat_interleave(len(labels), 0)
    out = model.decode(codes, labels.to(device).repeat(len(x)))
    return torch.sigmoid(out).view(len(x), len(labels), 1, 28, 28).cpu()


@torch.no_grad()
def class_means(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                n_classes: int = 10) -> torch.Tensor:
    """The mean posterior mean ``mu(x)`` of each class's images under a plain VAE
    (``model.encode(x) -> (mu, logvar)``): ``(n_classes, latent_dim)``. Every class needs at
    least one image."""
    counts = torch.bincount(y.long(), minlength=n_classes)
    if len(counts) > n_classes or bool((counts == 0).any()):
        raise ValueError(f"every class in [0, {n_classes}) needs an image; counts {counts.tolist()}")
    mu = torch.cat([model.encode(x[i:i + 1000].to(model_device(model)))[0].cpu()
                    for i in range(0, len(x), 1000)])
    sums = torch.zeros(n_classes, mu.shape[1]).index_add_(0, y.long(), mu)
    return sums / counts[:, None]


@torch.no_grad()
def latent_arithmetic(model: nn.Module, x: torch.Tensor, source: int, target: int,
                      means: torch.Tensor) -> torch.Tensor:
    """Decode ``mu(x) - means[source] + means[target]`` (pixel probabilities, on the CPU): the
    images ``x`` of class ``source`` moved, in a plain VAE's code, towards class ``target``."""
    mu, _ = model.encode(x.to(model_device(model)))
    shift = (means[target] - means[source]).to(mu)
    return torch.sigmoid(model.decode(mu + shift)).cpu()
