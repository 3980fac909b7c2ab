"""Reference implementations for lab 03_denoising_autoencoder (topic ``denoising``).

A denoising autoencoder (Vincent et al. 2008, 2010) sees a corrupted image and is trained to
give back the clean one. This module holds the lab's graded functions and the helpers its
experiment uses.

Graded (the exercises listed for this lab in :mod:`genlab.labs`):

- :func:`add_gaussian_noise`, :func:`add_masking_noise`, :func:`add_salt_and_pepper_noise` --
  the three corruptions of Vincent et al. (2010);
- :func:`psnr` -- peak signal-to-noise ratio per image, in dB;
- :func:`denoising_train_step` -- one optimizer step on the denoising criterion;
- :func:`anomaly_scores` and :func:`roc_auc` -- outlier detection by reconstruction error.

Helpers: :func:`corruption` (a noise function with its level fixed), :func:`random_corruption`
(a mixture of all three), :func:`train_denoising`, :func:`reconstruct`, :func:`psnr_table`,
:func:`make_outliers`, :func:`roc_curve`, :func:`inpaint`.

Random numbers
--------------
Every function that draws noise takes ``generator=``. With ``None`` it uses PyTorch's global
random state on ``x``'s device. With a ``torch.Generator`` the draw is reproducible: the noise is
drawn **on the generator's device** and then moved to ``x``'s device. So a CPU generator works for
CUDA inputs as well (and gives exactly the noise it gives on the CPU), and a CUDA generator works
for CUDA inputs without any copy. The output is always on ``x``'s device, with ``x``'s dtype.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Callable, Mapping

import torch
from torch import nn

from .arguments import float_tensor, generator_or_none
from .autoencoder import reconstruction_loss
from .device import model_device
from .training import adam, evaluating, fit, predict

__all__ = ["add_gaussian_noise", "add_masking_noise", "add_salt_and_pepper_noise", "psnr",
           "denoising_train_step", "anomaly_scores", "roc_auc", "NOISES", "NOISE_LEVELS",
           "corruption", "MIXED_RANGES", "random_corruption", "train_denoising", "reconstruct",
           "psnr_table", "OUTLIER_KINDS", "make_outliers", "roc_curve", "inpaint"]


# --------------------------------------------------------------------------------------------
# Checking inputs and drawing random numbers
# --------------------------------------------------------------------------------------------

def _check_level(value, name: str, upper: float | None) -> float:
    """``value`` as a float in ``[0, upper]`` (``[0, inf)`` without ``upper``), or a clear error."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (upper is not None and value > upper):
        allowed = f"between 0 and {upper:g}" if upper is not None else "a finite number >= 0"
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return value


def _draw(x: torch.Tensor, generator: torch.Generator | None, normal: bool) -> torch.Tensor:
    """Standard normal (``normal=True``) or uniform [0, 1) numbers shaped like ``x``: drawn on the
    generator's device (``x``'s without one), returned on ``x``'s device with ``x``'s dtype."""
    generator_or_none(generator)
    where = x.device if generator is None else generator.device
    draw = torch.randn if normal else torch.rand
    return draw(x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)


# --------------------------------------------------------------------------------------------
# The three corruptions
# --------------------------------------------------------------------------------------------

def add_gaussian_noise(x: torch.Tensor, sigma: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``clamp(x + sigma * eps, 0, 1)`` with ``eps ~ N(0, 1)`` drawn independently for every pixel.

    ``sigma`` is the *standard deviation* of the noise (>= 0). Raises TypeError for a
    non-float ``x`` and ValueError for a negative ``sigma``.
    """
    float_tensor(x, "x", images=True)
    sigma = _check_level(sigma, "sigma", upper=None)
    return (x + sigma * _draw(x, generator, normal=True)).clamp(0.0, 1.0)


def add_masking_noise(x: torch.Tensor, p: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Set each pixel to 0 independently with probability ``p`` (in [0, 1]); keep it otherwise.

    Vincent et al. call this masking noise: the network must fill in the pixels it lost.
    """
    float_tensor(x, "x", images=True)
    p = _check_level(p, "p", upper=1.0)
    u = _draw(x, generator, normal=False)          # uniform in [0, 1): P(u < p) = p
    return torch.where(u < p, torch.zeros_like(x), x)


def add_salt_and_pepper_noise(x: torch.Tensor, p: float,
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability ``p`` (in [0, 1]) replace a pixel by 0 or 1 with even odds; keep it otherwise.

    One uniform number per pixel decides both things: ``u < p/2`` gives pepper (0),
    ``p/2 <= u < p`` gives salt (1), ``u >= p`` keeps the pixel.
    """
    float_tensor(x, "x", images=True)
    p = _check_level(p, "p", upper=1.0)
    u = _draw(x, generator, normal=False)
    salt_or_pepper = (u >= p / 2).to(x.dtype)      # 1 on the upper half of [0, p), else 0
    return torch.where(u < p, salt_or_pepper, x)


NOISES: dict[str, Callable] = {
    "gaussian": add_gaussian_noise,
    "masking": add_masking_noise,
    "salt_and_pepper": add_salt_and_pepper_noise,
}
NOISE_LEVELS: dict[str, tuple[float, ...]] = {   # sigma for Gaussian noise, p for the others
    "gaussian": (0.1, 0.2, 0.3, 0.5, 0.7),
    "masking": (0.1, 0.25, 0.5, 0.75),
    "salt_and_pepper": (0.05, 0.1, 0.2, 0.3, 0.5),
}


def corruption(kind: str, level: float, generator: torch.Generator | None = None,
               noises: Mapping[str, Callable] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function ``x -> noises[kind](x, level, generator=generator)`` (default: :data:`NOISES`)."""
    noises = NOISES if noises is None else noises
    if kind not in noises:
        raise ValueError(f"unknown noise {kind!r}; choose one of {sorted(noises)}")
    noise = noises[kind]
    return lambda x: noise(x, level, generator=generator)


MIXED_RANGES: dict[str, tuple[float, float]] = {   # the levels random_corruption draws from
    "gaussian": (0.1, 0.7),
    "masking": (0.1, 0.75),
    "salt_and_pepper": (0.05, 0.5),
}


def random_corruption(noises: Mapping[str, Callable] | None = None,
                      ranges: Mapping[str, tuple[float, float]] | None = None,
                      generator: torch.Generator | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A corruption that mixes noise types: every call splits the batch at random into one group
    per noise type and corrupts each group with its own noise at a level drawn uniformly from
    ``ranges[kind]`` (default :data:`MIXED_RANGES`). A DAE trained with it learns to undo all
    of them. ``noises`` replaces the reference noise functions; ``generator`` (CPU) makes the
    choices and the noise reproducible."""
    noises = NOISES if noises is None else noises
    ranges = MIXED_RANGES if ranges is None else ranges
    kinds = list(ranges)
    generator_or_none(generator)

    def corrupt(x: torch.Tensor) -> torch.Tensor:
        order = torch.randperm(len(x), generator=generator).to(x.device)
        out = torch.empty_like(x)
        for k, kind in enumerate(kinds):
            rows = order[k::len(kinds)]
            low, high = ranges[kind]
            level = low + (high - low) * torch.rand(1, generator=generator).item()
            out[rows] = corruption(kind, level, generator, noises)(x[rows])
        return out

    return corrupt


# --------------------------------------------------------------------------------------------
# Measuring quality: PSNR
# --------------------------------------------------------------------------------------------

def psnr(x_hat: torch.Tensor, x: torch.Tensor, max_val: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image, in dB: ``10 * log10(max_val**2 / MSE_n)``.

    ``MSE_n`` is the mean squared error over the pixels of image ``n`` (not over the batch), so the
    result has shape ``(N,)``. Identical images have ``MSE_n = 0`` and a PSNR of ``+inf``.
    Raises ValueError when the shapes differ, the input is not a batch ``(N, ...)`` or
    ``max_val <= 0``; TypeError for non-float tensors.
    """
    float_tensor(x_hat, "x_hat", images=True)
    float_tensor(x, "x", images=True)
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {tuple(x_hat.shape)} and "
                         f"{tuple(x.shape)}")
    if x.dim() < 2:
        raise ValueError(f"expected a batch (N, ...) of images, got shape {tuple(x.shape)}")
    if isinstance(max_val, bool) or not isinstance(max_val, Real) or not max_val > 0:
        raise ValueError(f"max_val must be a positive number, got {max_val!r}")
    mse = (x_hat - x).pow(2).flatten(start_dim=1).mean(dim=1)   # (N,) one MSE per image
    return 10.0 * torch.log10(max_val ** 2 / mse)                # mse = 0 gives +inf


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def denoising_train_step(model: nn.Module, x_clean: torch.Tensor,
                         corrupt: Callable[[torch.Tensor], torch.Tensor],
                         optimizer: torch.optim.Optimizer) -> float:
    """One optimizer step on ``reconstruction_loss(model(corrupt(x_clean)), x_clean)``.

    The network sees the corrupted images but is scored against the clean ones. Returns the
    loss before the step, as a Python float.
    """
    optimizer.zero_grad()
    x_noisy = corrupt(x_clean)
    loss = reconstruction_loss(model(x_noisy), x_clean)   # the target is the CLEAN image
    loss.backward()
    optimizer.step()
    return loss.item()


def train_denoising(model: nn.Module, x_train: torch.Tensor,
                    corrupt: Callable[[torch.Tensor], torch.Tensor], epochs: int, *,
                    lr: float = 1e-3, batch_size: int = 128, seed: int | None = None,
                    step: Callable = denoising_train_step, progress: bool | None = None,
                    desc: str | None = None):
    """Train ``model`` as a denoising autoencoder with :func:`genlab.training.fit`, calling
    ``step(model, batch, corrupt, optimizer)`` (default :func:`denoising_train_step`) on every
    batch. Runs on the model's device; ``seed`` fixes the batch order. Returns the History."""
    optimizer = adam(model, lr)
    return fit(model, x_train, epochs=epochs, optimizer=optimizer, batch_size=batch_size,
               device=model_device(model), generator=seed, progress=progress, desc=desc,
               step_fn=lambda m, batch, opt: step(m, batch, corrupt, opt))


def reconstruct(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``model(x)`` in eval mode without gradients, in batches on the model's device; the result
    is on ``x``'s device (:func:`genlab.training.predict`)."""
    return predict(model, x, batch_size=batch_size)


def psnr_table(models: Mapping[str, nn.Module], x: torch.Tensor,
               levels: Mapping[str, tuple] | None = None, *, seed: int = 0,
               noises: Mapping[str, Callable] | None = None,
               psnr_fn: Callable = psnr) -> dict[str, dict[str, list[float]]]:
    """Mean PSNR (dB) over the images ``x`` of the noisy input and of each model's output, for
    every noise type and level.

    Returns ``{noise: {"level": [...], "noisy": [...], name: [...] for each model}}``. Each
    (noise, level) pair is drawn once with a CPU generator seeded with ``seed``, so every model
    sees exactly the same noisy images. ``noises`` and ``psnr_fn`` replace the reference
    functions (the lab passes the student's own).
    """
    levels = NOISE_LEVELS if levels is None else levels
    noises = NOISES if noises is None else noises
    table: dict[str, dict[str, list[float]]] = {}
    for kind, values in levels.items():
        row = table.setdefault(kind, {"level": [], "noisy": [], **{name: [] for name in models}})
        for level in values:
            generator = torch.Generator().manual_seed(seed)
            noisy = corruption(kind, level, generator, noises)(x)
            row["level"].append(float(level))
            row["noisy"].append(psnr_fn(noisy, x).mean().item())
            for name, model in models.items():
                row[name].append(psnr_fn(reconstruct(model, noisy).clamp(0, 1), x).mean().item())
    return table


# --------------------------------------------------------------------------------------------
# Outlier detection
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def anomaly_scores(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Per-sample sum of squared reconstruction errors ``sum_pixels (model(x) - x)**2``, shape
    ``(N,)``, on ``x``'s device, without gradients. The model runs in eval mode (its mode is
    restored afterwards). A high score means the model cannot rebuild the input: a likely outlier.
    """
    float_tensor(x, "x", images=True)
    if x.dim() < 2:
        raise ValueError(f"expected a batch (N, ...) of inputs, got shape {tuple(x.shape)}")
    x_hat = reconstruct(model, x, batch_size)
    return (x_hat - x).pow(2).flatten(start_dim=1).sum(dim=1)


def _as_scores(scores, name: str) -> torch.Tensor:
    """Scores as a 1-D float64 CPU tensor, or a clear error."""
    if isinstance(scores, torch.Tensor):
        t = scores.detach()
    else:
        try:
            t = torch.as_tensor(scores)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a 1-D tensor (or array) of numbers, got "
                            f"{type(scores).__name__}") from None
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be one-dimensional (one score per sample), got shape "
                         f"{tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: the AUC needs at least one score on each side")
    t = t.to("cpu", torch.float64)
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    return t


def roc_auc(scores_normal, scores_anomalous) -> float:
    """Area under the ROC curve: the probability that a random anomalous score exceeds a random
    normal score, ties counting one half,

        AUC = (1 / (n m)) * sum_i sum_j [ 1(a_j > s_i) + 0.5 * 1(a_j == s_i) ].

    Computed from ranks (the Mann-Whitney U statistic), which needs O((n + m) log(n + m)) time
    instead of the n*m comparisons of the double sum: give tied scores their average rank, add
    up the ranks of the anomalous scores, and subtract the smallest possible sum m(m + 1)/2.
    Returns a Python float. Raises ValueError for empty or non-1-D inputs or NaN scores.
    """
    normal = _as_scores(scores_normal, "scores_normal")
    anomalous = _as_scores(scores_anomalous, "scores_anomalous")
    n, m = len(normal), len(anomalous)
    values, order = torch.sort(torch.cat([normal, anomalous]))
    _, group, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    last_rank = counts.cumsum(0).double()                  # 1-based rank of each group's last item
    average_rank = last_rank - (counts.double() - 1) / 2   # ties share the mean of their ranks
    ranks = torch.empty_like(values)
    ranks[order] = average_rank[group]
    u = ranks[n:].sum().item() - m * (m + 1) / 2           # pairs (normal, anomalous) won by anomalous
    return u / (n * m)


def roc_curve(scores_normal, scores_anomalous) -> tuple[torch.Tensor, torch.Tensor]:
    """The ROC curve of "anomalous if score > t" over all thresholds t: ``(fpr, tpr)``, two 1-D
    float64 tensors from (0, 0) to (1, 1). Tied scores make one diagonal step, so the area under
    the curve (trapezoids) equals :func:`roc_auc`."""
    normal = _as_scores(scores_normal, "scores_normal")
    anomalous = _as_scores(scores_anomalous, "scores_anomalous")
    thresholds = torch.unique(torch.cat([normal, anomalous]), sorted=True).flip(0)
    # Points for "score >= t" at each distinct t, from the highest threshold down.
    fpr = (normal[None, :] >= thresholds[:, None]).double().mean(1)
    tpr = (anomalous[None, :] >= thresholds[:, None]).double().mean(1)
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([zero, fpr]), torch.cat([zero, tpr])


OUTLIER_KINDS = ("rectangle", "ring", "stripes", "blobs", "static")


def make_outliers(n: int, generator: torch.Generator | None = None,
                  device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` procedural 28x28 images that are not digits, as ``(images, kinds)``.

    ``images`` is float32 ``(n, 1, 28, 28)`` in [0, 1]; ``kinds`` is int64 ``(n,)`` indexing
    :data:`OUTLIER_KINDS`, and image ``i`` is of kind ``i % 5``:

    - ``rectangle``: a filled axis-aligned box;
    - ``ring``: a circle outline (the kind that looks most like a digit, a zero);
    - ``stripes``: a sinusoidal grating at a random angle and frequency;
    - ``blobs``: smooth random noise (a few wide Gaussian bumps);
    - ``static``: independent uniform noise in every pixel.

    Drawn on the CPU with ``generator`` (reproducible), then moved to ``device``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    generator_or_none(generator)
    g = generator if generator is not None and generator.device.type == "cpu" else None
    if generator is not None and g is None:  # a CUDA generator: derive a CPU one from it
        g = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator,
                                                            device=generator.device)))

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    coords = torch.arange(28, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    images = torch.zeros(n, 1, 28, 28)
    kinds = torch.arange(n) % len(OUTLIER_KINDS)
    for i in range(n):
        kind = OUTLIER_KINDS[int(kinds[i])]
        brightness = 0.6 + 0.4 * rand(1).item()
        if kind == "rectangle":
            h, w = 6 + (16 * rand(2)).floor()
            top, left = ((28 - h) * rand(1)).floor(), ((28 - w) * rand(1)).floor()
            img = ((yy >= top) & (yy < top + h) & (xx >= left) & (xx < left + w)).float()
        elif kind == "ring":
            cy, cx = 10 + 8 * rand(2)
            radius, width = 5 + 6 * rand(1), 1.0 + 1.5 * rand(1)
            dist = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
            img = (1 - ((dist - radius).abs() - width / 2)).clamp(0, 1)  # soft 1-pixel edge
        elif kind == "stripes":
            angle, period = math.pi * rand(1), 4 + 8 * rand(1)
            phase = 2 * math.pi * rand(1)
            t = xx * torch.cos(angle) + yy * torch.sin(angle)
            img = 0.5 + 0.5 * torch.sin(2 * math.pi * t / period + phase)
        elif kind == "blobs":
            img = torch.zeros(28, 28)
            for _ in range(4):
                cy, cx = 28 * rand(2)
                spread = 2.5 + 3.5 * rand(1)
                img = img + torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * spread ** 2))
            img = img / img.max()
        else:  # static
            img = rand(28, 28)
        images[i, 0] = brightness * img
    device = torch.device("cpu") if device is None else torch.device(device)
    return images.clamp(0, 1).to(device), kinds.to(device)


# --------------------------------------------------------------------------------------------
# Inpainting by optimizing the latent code
# --------------------------------------------------------------------------------------------

def inpaint(model: nn.Module, x: torch.Tensor, mask: torch.Tensor, steps: int = 200,
            lr: float = 0.05, z_init: torch.Tensor | None = None,
            callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Fill in the pixels of ``x`` where ``mask`` is 0 by searching the decoder's latent space:

        z* = argmin_z  || (decode(z) - x) * mask ||^2 ,   returned: decode(z*).

    Only the known pixels (``mask == 1``) enter the loss; the decoder fills the rest with
    whatever its code space makes consistent with them. The search starts from
    ``z_init`` (default: ``model.encode(x * mask)``, the encoder's guess from the masked image)
    and runs ``steps`` Adam steps with learning rate ``lr`` on the codes alone; the weights do not
    change. Returns the decoded images ``(N, 1, 28, 28)`` (no gradient) on ``x``'s device. To keep
    the known pixels exactly, combine: ``mask * x + (1 - mask) * inpaint(...)``.

    ``callback(step, z)``, if given, is called after every step (1, 2, ..., ``steps``) with a
    detached copy of the codes, e.g. to follow the error inside the hole as the search goes on.
    """
    float_tensor(x, "x", images=True)
    float_tensor(mask, "mask", images=True)
    if mask.shape != x.shape:
        mask = mask.expand_as(x)  # e.g. one (1, 1, 28, 28) mask for the whole batch
    device = model_device(model)
    x_, m_ = x.to(device), mask.to(device)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with evaluating(model):
            with torch.no_grad():
                z0 = model.encode(x_ * m_) if z_init is None else z_init.to(device)
            z = z0.detach().clone().requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=lr)
            for step in range(steps):
                optimizer.zero_grad()
                masked_error = ((model.decode(z) - x_) * m_).pow(2).flatten(1).sum(1)
                masked_error.sum().backward()  # a sum: every image's code gets its own gradient
                optimizer.step()
                if callback is not None:
                    callback(step + 1, z.detach().clone())
            with torch.no_grad():
                return model.decode(z).to(x.device)
    finally:
        for p in frozen:
            p.requires_grad_(True)
