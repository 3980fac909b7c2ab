"""Procedural dSprites: the disentanglement benchmark of Higgins et al. (2017), drawn by genlab.

No download: every image is rendered on demand from its factors, vectorized in torch, and the
same index always gives the same image.

    >>> images, classes = sample(1000, generator=torch.Generator().manual_seed(0))
    >>> images.shape, classes.shape                         # doctest: +SKIP
    (torch.Size([1000, 1, 64, 64]), torch.Size([1000, 5]))

The factors of variation, in this order (last one varying fastest in the flat index, as in the
original ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``):

=========== ====== ======================================== ============================
factor      values  values                                   original ``latents_values``
=========== ====== ======================================== ============================
shape       3      1 = square, 2 = ellipse, 3 = heart         column 1
scale       6      ``linspace(0.5, 1, 6)``                    column 2
orientation 40     ``linspace(0, 2π, 40)`` (both ends: the    column 3
                   first and last images are identical)
posX        32     ``linspace(0, 1, 32)``                     column 4
posY        32     ``linspace(0, 1, 32)``                     column 5
=========== ====== ======================================== ============================

The original has a sixth factor in front, *color*, with a single value (white); it never varies,
so genlab leaves it out (disentanglement_lib drops it as well). ``FACTOR_SIZES = (3, 6, 40, 32,
32)`` gives 737,280 images, exactly the original ``latents_sizes[1:]``. A factor's *class* is
its integer index 0..size-1; its *value* is the number in the table.

How a sprite is drawn: every pixel centre is mapped back into the sprite's own frame (undo the
translation, the rotation, then the scale) and kept when it satisfies the shape's inequality:

* square: ``max(|u|, |v|) <= 0.8``;
* ellipse: ``u² + (v / 0.5)² <= 1`` (twice as long as it is high at orientation 0);
* heart: ``(a² + b² - 1)³ - a² b³ <= 0`` with ``(a, b) = (u, v + 0.1) / 0.85``, the classic
  implicit heart curve, tip pointing down.

One sprite unit is ``10 * scale`` pixels, so at scale 1 a sprite spans about 20 pixels (the
square 16 × 16). ``posX`` moves the centre from column 12 to column 52 (left to right) and
``posY`` from row 12 to row 52 (top to bottom), which keeps every sprite inside the 64 × 64
frame at every orientation. Orientation turns the sprite counter-clockwise as seen on screen.
Images are binary: ``(N, 1, 64, 64)`` float in {0, 1} by default, or ``uint8``/``bool`` to save
memory (a float copy of the whole set would take 12 GB; :func:`render_all` packs it into 377 MB).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from . import config
from .files import save_atomic

__all__ = ["FACTOR_NAMES", "FACTOR_SIZES", "SHAPES", "N_IMAGES", "IMAGE_SIZE", "factor_values",
           "index_to_classes", "classes_to_index", "classes_to_values", "render",
           "render_classes", "sample_classes", "sample", "subset", "render_all", "unpack",
           "shrink", "varying_factors", "clear_memory_cache"]

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")
N_IMAGES = math.prod(FACTOR_SIZES)  # 737,280
IMAGE_SIZE = 64
RENDER_VERSION = 1  # part of the disk cache's file names: bump it when the drawing changes

_UNIT_PX = 10.0  # pixels per sprite unit at scale 1
_CENTRE_RANGE = (12.0, 52.0)  # pixel coordinates of the centre at pos 0 and pos 1
_STRIDES = tuple(math.prod(FACTOR_SIZES[i + 1:]) for i in range(len(FACTOR_SIZES)))
_CHUNK = 2048  # images rendered at once (memory: a few float tensors of CHUNK x 64 x 64)


def factor_values() -> dict[str, torch.Tensor]:
    """The values of every factor, as float64 tensors (shape as 1, 2, 3 like the original)."""
    return {
        "shape": torch.arange(1, 4, dtype=torch.float64),
        "scale": torch.linspace(0.5, 1.0, 6, dtype=torch.float64),
        "orientation": torch.linspace(0.0, 2 * math.pi, 40, dtype=torch.float64),
        "posX": torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
        "posY": torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
    }


def _as_indices(indices) -> torch.Tensor:
    indices = torch.as_tensor(indices)
    if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
        raise TypeError(f"indices must be integers, got {indices.dtype}")
    indices = indices.reshape(-1).long()
    if len(indices) and (indices.min() < 0 or indices.max() >= N_IMAGES):
        raise ValueError(f"indices must lie in [0, {N_IMAGES}), got values from "
                         f"{indices.min().item()} to {indices.max().item()}")
    return indices


def _check_classes(classes) -> torch.Tensor:
    classes = torch.as_tensor(classes)
    if classes.is_floating_point() or classes.dtype == torch.bool or classes.is_complex():
        raise TypeError(f"factor classes must be integers, got {classes.dtype}")
    if classes.dim() != 2 or classes.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factor classes must be shaped (N, {len(FACTOR_SIZES)}) in the order "
                         f"{FACTOR_NAMES}, got {tuple(classes.shape)}")
    classes = classes.long()
    sizes = torch.tensor(FACTOR_SIZES, device=classes.device)
    if len(classes) and ((classes < 0).any() or (classes >= sizes).any()):
        raise ValueError(f"factor classes out of range: each column k must lie in "
                         f"[0, FACTOR_SIZES[k]) with FACTOR_SIZES = {FACTOR_SIZES}")
    return classes


def index_to_classes(indices) -> torch.Tensor:
    """Flat indices ``(N,)`` -> factor classes ``(N, 5)`` (int64), last factor fastest."""
    indices = _as_indices(indices)
    strides = torch.tensor(_STRIDES, device=indices.device)
    sizes = torch.tensor(FACTOR_SIZES, device=indices.device)
    return (indices[:, None] // strides) % sizes


def classes_to_index(classes) -> torch.Tensor:
    """Factor classes ``(N, 5)`` -> flat indices ``(N,)``, the inverse of :func:`index_to_classes`."""
    classes = _check_classes(classes)
    return (classes * torch.tensor(_STRIDES, device=classes.device)).sum(1)


def classes_to_values(classes) -> torch.Tensor:
    """Factor classes ``(N, 5)`` -> factor values ``(N, 5)`` (float64, see the module table)."""
    classes = _check_classes(classes)
    values = factor_values()
    return torch.stack([values[name].to(classes.device)[classes[:, k]]
                        for k, name in enumerate(FACTOR_NAMES)], dim=1)


def _inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The shape's implicit inequality in sprite units (v points up)."""
    if shape == 0:  # square
        return torch.maximum(u.abs(), v.abs()) <= 0.8
    if shape == 1:  # ellipse
        return u * u + (v / 0.5) ** 2 <= 1.0
    a, b = u / 0.85, (v + 0.1) / 0.85  # heart
    a2 = a * a
    return (a2 + b * b - 1.0) ** 3 - a2 * b ** 3 <= 0.0


def _render_chunk(classes: torch.Tensor, out: torch.Tensor) -> None:
    """Draw the sprites of ``classes`` (n, 5) into ``out`` (n, 1, 64, 64) on classes' device."""
    device = classes.device
    values = classes_to_values(classes).to(device)
    shape = classes[:, 0]
    radius = (_UNIT_PX * values[:, 1]).float()  # pixels per sprite unit
    theta = values[:, 2]
    cos, sin = torch.cos(theta).float(), torch.sin(theta).float()
    lo, hi = _CENTRE_RANGE
    cx = (lo + (hi - lo) * values[:, 3]).float()
    cy = (lo + (hi - lo) * values[:, 4]).float()
    centres = torch.arange(IMAGE_SIZE, device=device, dtype=torch.float32) + 0.5
    dx = (centres[None, :] - cx[:, None]) / radius[:, None]  # (n, W): right is +x
    dy = (cy[:, None] - centres[None, :]) / radius[:, None]  # (n, H): up is +y
    # Undo the rotation: (u, v) = R(-theta) (dx, dy), separable over rows and columns.
    u = (cos[:, None] * dx)[:, None, :] + (sin[:, None] * dy)[:, :, None]
    v = (-sin[:, None] * dx)[:, None, :] + (cos[:, None] * dy)[:, :, None]
    for k in range(len(SHAPES)):
        rows = (shape == k).nonzero().squeeze(1)
        if len(rows):
            out[rows, 0] = _inside(k, u[rows], v[rows]).to(out.dtype)


_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.bool)


def render_classes(classes, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Render the images with the given factor classes ``(N, 5)``: ``(N, 1, 64, 64)`` in {0, 1}.

    ``dtype`` is float32 by default, or any float type, ``torch.uint8`` or ``torch.bool``;
    ``device`` defaults to the device of ``classes``. Deterministic: the same classes always
    give the same pixels (on the same device type).
    """
    if dtype not in _DTYPES:
        raise TypeError(f"dtype must be one of {_DTYPES}, got {dtype}")
    classes = _check_classes(classes)
    device = torch.device(device) if device is not None else classes.device
    classes = classes.to(device)
    out = torch.zeros(len(classes), 1, IMAGE_SIZE, IMAGE_SIZE, dtype=dtype, device=device)
    for start in range(0, len(classes), _CHUNK):
        _render_chunk(classes[start:start + _CHUNK], out[start:start + _CHUNK])
    return out


def shrink(images: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Images ``(N, 1, 64, 64)`` -> ``(N, 1, size, size)`` float by averaging blocks of pixels
    (``size`` must divide 64): at 32, each new pixel is the share of its 2 x 2 block that the
    sprite covers, one of 0, 0.25, 0.5, 0.75, 1. ``size=64`` returns the images as float."""
    if not isinstance(size, int) or size < 1 or IMAGE_SIZE % size:
        raise ValueError(f"size must be a divisor of {IMAGE_SIZE}, got {size!r}")
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected dSprites images (N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}), got "
                         f"{tuple(images.shape)}")
    floats = images if images.is_floating_point() else images.float()
    return torch.nn.functional.avg_pool2d(floats, IMAGE_SIZE // size) if size < IMAGE_SIZE \
        else floats.clone()


def render(indices, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Render the images with these flat indices (0 .. 737,279): ``(N, 1, 64, 64)`` in {0, 1}."""
    return render_classes(index_to_classes(indices), dtype=dtype, device=device)


def _generator_device(generator):
    return torch.device("cpu") if generator is None else generator.device


def _check_fixed(fixed) -> dict[int, int]:
    """``{factor name: class}`` -> ``{factor index: class}``, checked."""
    out = {}
    for name, value in dict(fixed or {}).items():
        if name not in FACTOR_NAMES:
            raise ValueError(f"unknown factor {name!r}; the factors are {FACTOR_NAMES}")
        k = FACTOR_NAMES.index(name)
        if not isinstance(value, int) or not 0 <= value < FACTOR_SIZES[k]:
            raise ValueError(f"{name} must be a class in 0..{FACTOR_SIZES[k] - 1}, got {value!r}")
        out[k] = value
    if len(out) == len(FACTOR_NAMES):
        raise ValueError("at least one factor must vary")
    return out


def varying_factors(fixed=None) -> list[int]:
    """Indices of the factors that ``fixed`` (``{factor name: class}``) leaves free."""
    held = _check_fixed(fixed)
    return [k for k in range(len(FACTOR_NAMES)) if k not in held]


def sample_classes(n: int, generator: torch.Generator | None = None, fixed=None) -> torch.Tensor:
    """``n`` factor combinations drawn uniformly and independently (with replacement): ``(n, 5)``
    int64 on the generator's device (CPU without one). What MIG and the BetaVAE score sample.

    ``fixed`` (``{factor name: class}``, e.g. ``{"shape": 0, "orientation": 0}``) holds factors
    at one class: a slice of dSprites. The random draws are the same with or without it, so the
    free factors get the same classes."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    held = _check_fixed(fixed)
    where = _generator_device(generator)
    classes = torch.stack([torch.randint(0, size, (n,), generator=generator, device=where)
                           for size in FACTOR_SIZES], dim=1)
    for k, value in held.items():
        classes[:, k] = value
    return classes


def sample(n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
           device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` *distinct* images drawn uniformly from the 737,280: ``(images, classes)`` with
    images ``(n, 1, 64, 64)`` and their factor classes ``(n, 5)`` int64."""
    if not isinstance(n, int) or not 0 <= n <= N_IMAGES:
        raise ValueError(f"n must be an int in [0, {N_IMAGES}], got {n!r}")
    where = _generator_device(generator)
    indices = torch.randperm(N_IMAGES, generator=generator, device=where)[:n].cpu()
    classes = index_to_classes(indices)
    return render_classes(classes, dtype=dtype, device=device or "cpu"), classes.to(device or "cpu")


# --------------------------------------------------------------------------- cached subsets

_MEMORY: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}


def clear_memory_cache() -> None:
    """Forget the subsets kept in memory by :func:`subset` (the disk cache stays)."""
    _MEMORY.clear()


def _cache_file(n: int, seed: int) -> Path:
    return config.data_dir() / "dsprites" / f"subset-v{RENDER_VERSION}-n{n}-seed{seed}.pt"


def unpack(bits: torch.Tensor) -> torch.Tensor:
    """Packed rows ``(N, 512)`` uint8 (8 pixels per byte) -> ``(N, 1, 64, 64)`` uint8 in {0, 1}."""
    if bits.dtype != torch.uint8 or bits.dim() != 2 or bits.shape[1] != IMAGE_SIZE ** 2 // 8:
        raise ValueError(f"expected packed images (N, {IMAGE_SIZE ** 2 // 8}) uint8, got "
                         f"{tuple(bits.shape)} {bits.dtype}")
    flat = np.unpackbits(bits.cpu().numpy(), axis=1)
    return torch.from_numpy(flat).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)


def _pack(images: torch.Tensor) -> torch.Tensor:
    flat = images.reshape(len(images), -1).to(torch.bool).cpu().numpy()
    return torch.from_numpy(np.packbits(flat, axis=1))


def subset(n: int, seed: int = 0, dtype: torch.dtype = torch.float32,
           disk_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The same ``n`` distinct images for the same ``seed``, every time: ``(images, classes)``.

    The subset is :func:`sample` with ``torch.Generator().manual_seed(seed)``. It is kept in
    memory, and (``disk_cache=True``) as packed bits under ``genlab.config.data_dir() /
    "dsprites"`` (a 40,000-image subset takes 20 MB), so a second call, or the next session,
    reads it back instead of drawing it again. A cache that cannot be written is skipped with a
    warning.
    """
    key = (n, seed)
    if key not in _MEMORY:
        path = _cache_file(n, seed)
        images = None
        if disk_cache and path.is_file():
            try:
                saved = torch.load(path, weights_only=True)
                images, classes = unpack(saved["bits"]), saved["classes"]
            except Exception as err:  # a truncated or foreign file: draw again
                warnings.warn(f"ignoring unreadable dSprites cache {path} ({err})", stacklevel=2)
                images = None
        if images is None:
            images, classes = sample(n, generator=torch.Generator().manual_seed(seed),
                                     dtype=torch.uint8)
            if disk_cache:
                try:
                    save_atomic({"bits": _pack(images), "classes": classes}, path)
                except OSError as err:
                    warnings.warn(f"could not cache dSprites subset in {path.parent} ({err})",
                                  stacklevel=2)
        _MEMORY[key] = (images.to(torch.uint8), classes)
    images, classes = _MEMORY[key]
    return images.to(dtype), classes.clone()


def render_all(device=None, progress: bool = False) -> torch.Tensor:
    """The whole data set as packed bits ``(737280, 512)`` uint8 (377 MB; :func:`unpack` rows to
    get images). Takes about a minute on a laptop CPU, seconds on a GPU."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    bits = torch.empty(N_IMAGES, IMAGE_SIZE ** 2 // 8, dtype=torch.uint8)
    step = 16 * _CHUNK
    starts = range(0, N_IMAGES, step)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="rendering dSprites")
    for start in starts:
        index = torch.arange(start, min(start + step, N_IMAGES))
        bits[start:start + len(index)] = _pack(render(index, dtype=torch.bool, device=device))
    return bits
