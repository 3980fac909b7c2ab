"""Reference implementations for lab 02_autoencoder_bottleneck (topic ``autoencoder``).

An autoencoder squeezes each image through a narrow *bottleneck* of ``latent_dim`` numbers and
is trained to rebuild the image from them. The lab compares it with the best *linear* code of the
same size, principal component analysis (PCA).

- :class:`Autoencoder` -- a small convolutional autoencoder for ``(N, 1, 28, 28)`` images:
  ``.encode(x) -> (N, latent_dim)``, ``.decode(z) -> (N, 1, 28, 28)`` in [0, 1].
- :func:`reconstruction_loss` -- batch mean of the per-image *sum* of squared errors.
- :func:`train_autoencoder` -- trains with :func:`genlab.training.fit`, returns per-epoch losses.
- :func:`pca_reconstruct` -- project test images onto the top-k principal components of the
  training images and map them back (the "eigenface" baseline).

Helpers for the lab's experiment: :func:`per_pixel_mse`, :func:`encode_all`,
:func:`reconstruct_all`, :func:`latent_size_sweep` (train one autoencoder per latent size and
compare it with PCA) and :func:`decode_box` (decode a regular grid over a rectangle of a 2-D
latent plane).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .arguments import as_int, float_tensor
from .device import model_device
from .training import fit, predict

__all__ = ["Autoencoder", "reconstruction_loss", "train_autoencoder", "pca_reconstruct",
           "per_pixel_mse", "encode_all", "reconstruct_all", "latent_size_sweep", "SweepResult",
           "decode_box", "IMAGE_SHAPE"]

IMAGE_SHAPE = (1, 28, 28)  # one MNIST image: (C, H, W)


# --------------------------------------------------------------------------------------------
# Checking inputs
# --------------------------------------------------------------------------------------------

def _check_images(x, name: str = "x") -> None:
    """``x`` must be a floating-point tensor (N, 1, 28, 28)."""
    float_tensor(x, name, images=True)
    if x.dim() != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"{name} must have shape (N, 1, 28, 28), got {tuple(x.shape)}"
                         + ("; add the channel axis with x.unsqueeze(1)" if x.dim() == 3 else ""))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

class Autoencoder(nn.Module):
    """A small convolutional autoencoder for 28x28 grey images.

    Encoder: two stride-2 convolutions (28 -> 14 -> 7 pixels, 1 -> c -> 2c channels), then a
    small fully connected network (2c*7*7 -> ``hidden`` -> ``latent_dim``) that outputs the code.
    Decoder: the mirror image: ``latent_dim`` -> ``hidden`` -> 2c*7*7, reshaped to a 7x7 map,
    two stride-2 transposed convolutions (7 -> 14 -> 28 pixels) and a sigmoid, so every output
    pixel lies in [0, 1]. Every hidden layer is followed by batch normalisation and a ReLU.
    Defaults: ``channels`` c = 16, ``hidden`` = 256 (about 0.8 million parameters).

    The code is the output of a linear layer without any activation: it may take any real value.
    The hidden layer matters most for tiny codes: from two numbers alone, a single linear layer
    followed by a ReLU can only draw a few kinds of digit. Batch normalisation shortens the
    plateau at the start of training, where a freshly initialised network outputs little more
    than the mean image.
    """

    def __init__(self, latent_dim: int, channels: int = 16, hidden: int = 256):
        super().__init__()
        latent_dim = as_int(latent_dim, "latent_dim")
        channels = as_int(channels, "channels")
        hidden = as_int(hidden, "hidden")
        for name, value in (("latent_dim", latent_dim), ("channels", channels), ("hidden", hidden)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.latent_dim = latent_dim
        c = channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, kernel_size=3, stride=2, padding=1),           # (c, 14, 14)
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, kernel_size=3, stride=2, padding=1),       # (2c, 7, 7)
            nn.BatchNorm2d(2 * c),
            nn.ReLU(),
            nn.Flatten(),                                                  # (2c*7*7,)
            nn.Linear(2 * c * 7 * 7, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, latent_dim),                                 # (latent_dim,)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * c * 7 * 7),
            nn.BatchNorm1d(2 * c * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (2 * c, 7, 7)),                                # (2c, 7, 7)
            nn.ConvTranspose2d(2 * c, c, kernel_size=4, stride=2, padding=1),  # (c, 14, 14)
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.ConvTranspose2d(c, 1, kernel_size=4, stride=2, padding=1),      # (1, 28, 28)
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 1, 28, 28)`` -> codes ``(N, latent_dim)``."""
        _check_images(x)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes ``(N, latent_dim)`` -> images ``(N, 1, 28, 28)`` with pixels in [0, 1]."""
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        if not z.is_floating_point():
            raise TypeError(f"z must be a floating-point tensor, got {z.dtype}")
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction ``decode(encode(x))``."""
        return self.decode(self.encode(x))


# --------------------------------------------------------------------------------------------
# The loss and training
# --------------------------------------------------------------------------------------------

def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Batch mean of the per-image sum of squared errors:

        L = (1/N) * sum_n sum_pixels (x_hat[n] - x[n])**2

    ``x_hat`` and ``x`` must have the same shape ``(N, ...)`` (no broadcasting, which would
    silently compare every image with every other one). Returns a 0-d tensor.
    """
    for name, t in (("x_hat", x_hat), ("x", x)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {tuple(x_hat.shape)} and "
                         f"{tuple(x.shape)}")
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"expected a non-empty batch (N, ...) of images, got shape {tuple(x.shape)}")
    per_image = (x_hat - x).pow(2).flatten(start_dim=1).sum(dim=1)  # (N,)
    return per_image.mean()


def _images_of(data) -> torch.Tensor:
    """The images in ``data``: a tensor of images, or a pair/tuple whose first item is one."""
    if isinstance(data, (tuple, list)):
        if not data:
            raise ValueError("data is empty: pass a tensor of images or (images, labels)")
        data = data[0]
    _check_images(data, "data" if isinstance(data, torch.Tensor) else "data[0]")
    if len(data) == 0:
        raise ValueError("data holds no images")
    return data


def train_autoencoder(model: nn.Module, data, epochs: int, lr: float = 1e-3,
                      batch_size: int = 128, *, seed: int | None = None,
                      progress: bool | None = None, desc: str | None = None) -> list[float]:
    """Train ``model`` to reconstruct ``data`` with Adam and :func:`reconstruction_loss`.

    ``data`` is a tensor of images ``(N, 1, 28, 28)`` or a tuple ``(images, labels)`` (the
    labels are ignored: an autoencoder learns without them). Training runs on the model's
    device (the images are moved there). ``seed`` fixes the order of the batches (default: the
    global torch random state). Returns the mean training loss of each epoch: a list of
    ``epochs`` floats.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    images = _images_of(data)
    epochs = as_int(epochs, "epochs")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")

    def loss_fn(m, x):
        return reconstruction_loss(m(x), x)

    history = fit(model, images, loss_fn, epochs=epochs, lr=lr, batch_size=batch_size,
                  device=model_device(model), generator=seed, progress=progress, desc=desc)
    return history.epoch_losses


# --------------------------------------------------------------------------------------------
# The linear baseline: PCA
# --------------------------------------------------------------------------------------------

def pca_reconstruct(x_train: torch.Tensor, x_test: torch.Tensor, k: int) -> torch.Tensor:
    """Reconstruct ``x_test`` from the top-``k`` principal components of ``x_train``.

    With the training mean ``mu`` and the top-k right singular vectors ``V_k`` (D, k) of the
    centred training matrix ``X - mu`` (one flattened image per row):

        x_hat = mu + (x - mu) V_k V_k^T

    Both inputs are ``(N, ...)`` with the same per-sample shape; the result has the shape, dtype
    and device of ``x_test``. Raises ValueError for ``k`` outside ``1..min(N_train, D)``, for
    inputs that are not floating-point, hold samples of different shapes or live on different
    devices; TypeError for a ``k`` that is not an int or inputs that are not tensors.
    """
    for name, t in (("x_train", x_train), ("x_test", x_test)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}; convert "
                             f"it with {name}.float() (and divide by 255 if it holds 0..255)")
        if t.dim() < 2:
            raise ValueError(f"{name} must be a batch (N, ...) of samples, got shape {tuple(t.shape)}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"x_train and x_test must hold samples of the same shape, got "
                         f"{tuple(x_train.shape[1:])} and {tuple(x_test.shape[1:])}")
    if x_train.device != x_test.device:
        raise ValueError(f"x_train is on {x_train.device} but x_test on {x_test.device}; "
                         "move them to the same device")
    n, d = len(x_train), math.prod(x_train.shape[1:])
    k = as_int(k, "k")
    if not 1 <= k <= min(n, d):
        raise ValueError(f"k must be between 1 and min(N_train, D) = {min(n, d)} "
                         f"(N_train = {n} samples, D = {d} features), got {k}")
    dtype = torch.promote_types(x_train.dtype, x_test.dtype)
    train = x_train.reshape(n, d).to(dtype)
    test = x_test.reshape(len(x_test), d).to(dtype)
    mean = train.mean(dim=0)                                          # (D,) the training mean
    _, _, vh = torch.linalg.svd(train - mean, full_matrices=False)   # rows of vh: directions
    v = vh[:k].T                                                      # (D, k), largest first
    codes = (test - mean) @ v                                         # (M, k) the PCA code
    recon = mean + codes @ v.T                                        # (M, D)
    return recon.reshape(x_test.shape).to(x_test.dtype)


# --------------------------------------------------------------------------------------------
# Helpers for the experiment
# --------------------------------------------------------------------------------------------

def per_pixel_mse(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """The mean squared error over every pixel of every image, as a float (the figure the lab
    reports; it equals ``reconstruction_loss / 784`` for MNIST)."""
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {tuple(x_hat.shape)} and "
                         f"{tuple(x.shape)}")
    return (x_hat.detach().double() - x.detach().double()).pow(2).mean().item()


def encode_all(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The codes ``(N, latent_dim)`` of all images ``x``, without gradients, on ``x``'s device."""
    _check_images(x)
    return predict(model, x, model.encode, batch_size)


def reconstruct_all(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The reconstructions ``model(x)`` of all images ``x``, without gradients, on ``x``'s device."""
    _check_images(x)
    return predict(model, x, batch_size=batch_size)


@dataclass
class SweepResult:
    """What :func:`latent_size_sweep` measured, keyed by latent size."""
    latent_sizes: list[int]
    models: dict[int, nn.Module] = field(default_factory=dict)
    train_losses: dict[int, list[float]] = field(default_factory=dict)  # per epoch
    ae_mse: dict[int, float] = field(default_factory=dict)   # per-pixel test MSE, autoencoder
    pca_mse: dict[int, float] = field(default_factory=dict)  # per-pixel test MSE, PCA
    seconds: dict[int, float] = field(default_factory=dict)  # training time per model

    def table(self) -> str:
        """The results as a small text table."""
        lines = [f"{'latent size':>11} | {'PCA test MSE':>12} | {'AE test MSE':>11} | {'AE / PCA':>8}",
                 "-" * 52]
        for k in self.latent_sizes:
            ratio = self.ae_mse[k] / self.pca_mse[k]
            lines.append(f"{k:>11} | {self.pca_mse[k]:>12.4f} | {self.ae_mse[k]:>11.4f} | {ratio:>8.2f}")
        return "\n".join(lines)


def latent_size_sweep(x_train: torch.Tensor, x_test: torch.Tensor, latent_sizes=(2, 5, 10, 20), *,
                      epochs: int, lr: float = 1e-3, batch_size: int = 128, seed: int = 0,
                      make_model=Autoencoder, train=train_autoencoder, pca=pca_reconstruct,
                      device=None, progress: bool | None = None) -> SweepResult:
    """Train one autoencoder per latent size and compare it with PCA at the same size.

    For each ``k`` in ``latent_sizes``: seed torch with ``seed``, build ``make_model(k)`` on
    ``device`` (default: :func:`genlab.device.get_device`), train it with
    ``train(model, x_train, epochs, lr, batch_size)`` and measure the per-pixel test MSE of the
    autoencoder and of ``pca(x_train, x_test, k)``. Pass your own functions for ``make_model``,
    ``train`` and ``pca`` to run the sweep on them. Each training shows its own progress bar,
    labelled with the latent size.
    """
    from .device import get_device
    device = torch.device(device) if device is not None else get_device()
    sizes = [as_int(k, "latent size") for k in latent_sizes]
    result = SweepResult(latent_sizes=sizes)
    for k in sizes:
        torch.manual_seed(seed)
        model = make_model(k).to(device)
        start = time.perf_counter()
        if train is train_autoencoder:
            losses = train(model, x_train, epochs, lr, batch_size, seed=seed, progress=progress,
                           desc=f"latent size {k:>2}")
        else:
            losses = train(model, x_train, epochs, lr, batch_size)
        result.seconds[k] = time.perf_counter() - start
        result.models[k] = model.eval()
        result.train_losses[k] = [float(v) for v in losses]
        result.ae_mse[k] = per_pixel_mse(reconstruct_all(model, x_test), x_test)
        result.pca_mse[k] = per_pixel_mse(pca(x_train, x_test, k), x_test)
    return result


def decode_box(model: nn.Module, lo, hi, n: int = 15) -> torch.Tensor:
    """Decode an ``n`` x ``n`` grid of codes covering the rectangle ``lo <= z <= hi`` of a 2-D
    latent plane. Returns images ``(n*n, 1, 28, 28)`` on the CPU, row by row from the top
    (largest ``z_2``) and, within a row, from left to right (growing ``z_1``), ready for
    ``image_grid(images, nrow=n)``."""
    if getattr(model, "latent_dim", 2) != 2:
        raise ValueError(f"decode_box needs a model with a 2-D latent space, got latent_dim="
                         f"{model.latent_dim}")
    n = as_int(n, "n")
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    (x0, y0), (x1, y1) = [tuple(float(v) for v in p) for p in (lo, hi)]
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"hi must exceed lo in both coordinates, got lo={lo}, hi={hi}")
    zx = torch.linspace(x0, x1, n)
    zy = torch.linspace(y1, y0, n)  # top row first
    gy, gx = torch.meshgrid(zy, zx, indexing="ij")
    z = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    return predict(model, z, model.decode)
