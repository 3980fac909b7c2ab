"""An offline sample-quality score for generated digits.

The Fréchet Inception Distance (Heusel et al. 2017) compares the mean and covariance of
Inception-v3 features of real and generated images. Inception's weights are downloaded at run
time, which fails offline and on many lab machines, and an ImageNet network is a poor judge of
28x28 digits anyway. genlab therefore measures the same Fréchet distance in the feature space of
a **small digit classifier** that it trains itself on whatever MNIST data is available (the full
data set or the bundled fallback) and caches on disk:

    >>> q = sample_quality(fake, value_range=(-1, 1))     # doctest: +SKIP
    >>> print(q)                                            # doctest: +SKIP
    FD 12.3 (train-vs-test floor 1.9), every class >= 7.1% of samples, confidence 0.93, n=1000

- :func:`digit_classifier` -- the classifier (trained in seconds the first time, then loaded);
- :func:`features` -- its penultimate-layer features;
- :func:`frechet_distance` -- ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})``;
- :func:`sample_quality` -- the distance of samples to the real test digits, the train-vs-test
  floor for the same number of images, class coverage and classifier confidence.

The numbers are comparable only between runs that use the same data source and sample size
(the Fréchet distance is biased upwards for small samples; the floor shows by how much).
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import config
from .data import data_source, load_mnist
from .files import save_atomic

__all__ = ["CODE_VERSION", "DigitClassifier", "digit_classifier", "features", "frechet_distance",
           "SampleQuality", "sample_quality", "cache_path"]

CODE_VERSION = 1  # bump when the classifier, its training or its features change
TRAIN_LIMIT = 10_000  # train on at most this many images: seconds on a CPU, ~98% on MNIST
EPOCHS = 3
SEED = 0

_models: dict[tuple[str, str], nn.Module] = {}  # (cache key, device) -> classifier
_floors: dict[tuple, float] = {}  # (cache key, n, n_ref) -> train-vs-test distance


class DigitClassifier(nn.Module):
    """A small LeNet-style CNN: two conv blocks, a 64-d feature layer, 10 logits."""

    feature_dim = 64

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 16 x 14 x 14
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 7 x 7
            nn.Flatten(), nn.Linear(32 * 7 * 7, self.feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(self.feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# --------------------------------------------------------------------------------------------
# The classifier and its cache
# --------------------------------------------------------------------------------------------

def _cache_key() -> str:
    """What the cached classifier depends on: the data source and this code's version."""
    load_mnist("train", limit=1, quiet=True)  # so that data_source names what was loaded
    return f"mnist from {data_source('mnist')} | quality code v{CODE_VERSION}"


def cache_path(key: str | None = None) -> Path:
    """Where the classifier for the current data source is (or would be) cached."""
    key = _cache_key() if key is None else key
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return config.data_dir() / "quality" / f"digit-classifier-{digest}.pt"


def _notice(message: str) -> None:
    print(f"genlab: {message}", file=sys.stderr)


def _load_cached(path: Path, key: str) -> DigitClassifier | None:
    """The cached classifier, or None (with a notice when a file is there but unusable)."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or saved.get("key") != key:
            raise ValueError("it was made for other data or code")
        model = DigitClassifier()
        model.load_state_dict(saved["state_dict"])
        model.test_accuracy = float(saved["accuracy"])
    except Exception as err:  # truncated, corrupt, from another version: retrain
        why = str(err).strip().splitlines()[0][:100] if str(err).strip() else type(err).__name__
        _notice(f"the cached digit classifier {path} is unusable ({why}); retraining it")
        return None
    return model


def _save(path: Path, model: DigitClassifier, key: str) -> None:
    """Write the classifier atomically (temporary file, then rename); warn if that fails."""
    saved = {"key": key, "state_dict": model.state_dict(), "accuracy": model.test_accuracy}
    try:
        save_atomic(saved, path)
    except OSError as err:
        _notice(f"cannot cache the digit classifier in {path.parent} ({err.strerror or err}); "
                "it will be retrained in the next session")


@torch.enable_grad()  # also when called from inside torch.no_grad(), e.g. by features()
def _train(device: torch.device) -> DigitClassifier:
    """Train the classifier from a fixed seed; sets ``test_accuracy``. Takes seconds."""
    x, y = load_mnist("train", limit=TRAIN_LIMIT, device=device)
    x_test, y_test = load_mnist("test", device=device)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = DigitClassifier().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    order_rng = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x), generator=order_rng).split(64):
            idx = idx.to(device)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    model.test_accuracy = _accuracy(model, x_test, y_test)
    _notice(f"trained the digit classifier for sample quality on {len(x):,} images in "
            f"{time.perf_counter() - start:.1f} s (test accuracy {model.test_accuracy:.3f})")
    return model


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    preds = torch.cat([model(chunk).argmax(1) for chunk in x.split(1000)])
    return (preds == y).float().mean().item()


def digit_classifier(device=None) -> nn.Module:
    """The digit classifier in eval mode on ``device`` (default: :func:`genlab.get_device`).

    Trained on ``load_mnist("train")`` (at most ``TRAIN_LIMIT`` images) the first time and cached
    in ``data_dir()/quality``, keyed by the data source and ``CODE_VERSION``; a corrupt cache file
    is retrained with a notice. Its test accuracy is in ``model.test_accuracy``. Do not train it
    further: it is shared within the process.
    """
    from .device import get_device
    device = torch.device(device) if device is not None else get_device()
    key = _cache_key()
    model = _models.get((key, str(device)))
    if model is not None:
        return model
    path = cache_path(key)
    model = _load_cached(path, key)
    if model is None:
        model = _train(device)
        _save(path, model, key)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    _models[(key, str(device))] = model
    return model


# --------------------------------------------------------------------------------------------
# Features and the Fréchet distance
# --------------------------------------------------------------------------------------------

def _check_images(images, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {images.dtype}")
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"{name} must have shape (N, 1, 28, 28), got {tuple(images.shape)}")
    if len(images) < 2:
        raise ValueError(f"{name} needs at least 2 images for a covariance, got {len(images)}")


@torch.no_grad()
def _apply(images: torch.Tensor, device, batch_size: int, fn) -> torch.Tensor:
    device = torch.device(device) if device is not None else images.device
    model = digit_classifier(device)
    out = [fn(model, chunk.to(device, torch.float32)) for chunk in images.split(batch_size)]
    return torch.cat(out).to(images.device)


def features(images: torch.Tensor, device=None, batch_size: int = 500) -> torch.Tensor:
    """Penultimate-layer features ``(N, 64)`` of ``images`` ``(N, 1, 28, 28)`` in [0, 1].

    Computed on ``device`` (default: the images' device); returned on the images' device.
    """
    _check_images(images)
    return _apply(images, device, batch_size, lambda model, x: model.features(x))


def _as_matrix(feats, name: str) -> torch.Tensor:
    if not isinstance(feats, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(feats).__name__}")
    if feats.dim() != 2 or len(feats) < 2:
        raise ValueError(f"{name} must be (N, F) with N >= 2, got shape {tuple(feats.shape)}")
    return feats.detach().to("cpu", torch.float64)


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    """The symmetric PSD square root of a symmetric matrix (negative eigenvalues set to 0)."""
    vals, vecs = torch.linalg.eigh((s + s.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets ``(N_a, F)``, ``(N_b, F)``:
    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})``, in float64.

    ``Tr (S_a S_b)^{1/2}`` is computed as the trace of the PSD square root of
    ``S_a^{1/2} S_b S_a^{1/2}`` (the same eigenvalues), by symmetric eigendecompositions that clamp
    round-off negatives to zero: no complex parts, stable for singular covariances.
    """
    a, b = _as_matrix(feats_a, "feats_a"), _as_matrix(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root_a = _psd_sqrt(s_a)
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2 * cross
    return max(float(value), 0.0)


# --------------------------------------------------------------------------------------------
# The score
# --------------------------------------------------------------------------------------------

@dataclass
class SampleQuality:
    """What :func:`sample_quality` measured."""
    fd: float  # Fréchet distance of the samples to the real test digits
    floor: float  # train-vs-test distance with the same number of images
    coverage: torch.Tensor  # (10,) fraction of samples per predicted class
    confidence: float  # mean max softmax probability
    n: int

    def __str__(self) -> str:
        return (f"FD {self.fd:.2f} (train-vs-test floor {self.floor:.2f}), every class >= "
                f"{100 * float(self.coverage.min()):.1f}% of samples (ideal 10%), "
                f"confidence {self.confidence:.2f}, n={self.n}")


def _floor(n: int, ref_feats: torch.Tensor) -> float:
    """FD between ``n`` real training images (fewer if there are not that many) and the
    reference features (cached per process)."""
    key = (_cache_key(), n, len(ref_feats))
    if key not in _floors:
        x_train, _ = load_mnist("train", limit=n, quiet=True)
        _floors[key] = frechet_distance(features(x_train), ref_feats)
    return _floors[key]


def sample_quality(images: torch.Tensor, value_range=(0, 1), n_ref: int | None = None) -> SampleQuality:
    """Score generated ``images`` ``(N, 1, 28, 28)`` against the real test digits.

    ``value_range``: the range the images are in; ``(-1, 1)`` for tanh GAN outputs (mapped to
    [0, 1], then clamped). ``n_ref``: how many test images form the reference (default: all).
    The ``floor`` is the distance of ``N`` real training images to the same reference: a
    generator cannot be expected to beat it at this sample size.
    """
    _check_images(images)
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    x = ((images.detach().float() - lo) / (hi - lo)).clamp(0, 1)
    x_test, _ = load_mnist("test", limit=n_ref, quiet=True)
    x_test = x_test.to(x.device)
    ref = features(x_test)
    feats = features(x)
    with torch.no_grad():
        probs = _apply(x, None, 500, lambda model, chunk: model(chunk).softmax(1))
    counts = torch.bincount(probs.argmax(1).cpu(), minlength=10).double()
    return SampleQuality(fd=frechet_distance(feats, ref),
                         floor=_floor(len(x), ref.cpu()),
                         coverage=counts / len(x),
                         confidence=float(probs.max(1).values.mean()),
                         n=len(x))
