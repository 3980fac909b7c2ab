"""Plotting helpers shared by the labs.

What the helpers accept
-----------------------
* Tensors may live on the GPU and may require grad: every helper calls ``.detach().cpu()`` for you.
* Images are float tensors shaped ``(N, C, H, W)`` with ``C = 1`` (drawn in grey) or ``C = 3``
  (colour), with values in ``value_range``: ``(0, 1)`` by default, ``(-1, 1)`` for GAN samples.
  Values outside the range are clipped.

The display convention (one rule)
---------------------------------
A helper **returns the Figure exactly when it has not displayed it**:

* ``display=True`` (the default): the helper shows its figure once (see :func:`show`), closes it and
  returns ``None``. A call on the last line of a cell therefore gives one picture, not two.
* ``display=False``: nothing is shown and the ``Figure`` is returned, to save with
  ``fig.savefig(...)``, to change, or to show later with ``show(fig)``.
* ``ax=...``: the helper only draws into your axes and returns their figure; it neither shows nor
  closes it. Call ``show(fig)`` once every panel is drawn.

Why close figures at all? In Jupyter, matplotlib's inline backend draws every figure that is still
open when a cell ends, so a figure that was displayed *and* left open would appear twice, and an
executed notebook would keep every figure in memory. The helpers build their figures with
:class:`matplotlib.figure.Figure` directly, which pyplot does not keep track of, so they can never
pile up; :func:`show` also closes pyplot figures you made yourself with ``plt.subplots()``.
For figures of your own, :func:`subplots` is ``plt.subplots`` the same way: a cell that fails
before ``show(fig)`` shows its error and no empty grid of axes.

Everything works headless (``MPLBACKEND=Agg``) and nothing here ever blocks on ``plt.show()``.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["subplots", "image_grid", "show_images", "show_rows", "plot_curves", "plot_latent_scatter",
           "latent_grid", "plot_bars", "decode_images", "show", "figure_to_png", "in_kernel"]

_INCH_PER_PIXEL = 0.03  # how large one image pixel is drawn by default


# --------------------------------------------------------------------------- showing figures

def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, nbclient, nbgrader...), False in a plain script
    or a terminal IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def figure_to_png(fig: Figure) -> bytes:
    """The figure rendered as PNG bytes (the same picture Jupyter would show)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def show(fig: Figure) -> None:
    """Display ``fig`` once as a PNG in a notebook (nothing happens in a plain script), then close it.

    We send the PNG ourselves instead of relying on the backend, so the picture looks the same under
    any backend (inline, Agg) and appears exactly once.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"show() expects a matplotlib Figure, got {type(fig).__name__}")
    try:
        if in_kernel():
            from IPython.display import Image, display
            display(Image(data=figure_to_png(fig), format="png"))
    finally:
        plt.close(fig)  # a no-op for figures pyplot does not know about


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, dpi=None, layout="constrained",
             **kwargs):
    """``fig, axes = subplots(1, 3, figsize=(12, 4))``: ``plt.subplots`` with the same arguments
    and return value, but the figure appears only when you ``show(fig)`` (pyplot does not know
    about it, so a cell that fails halfway leaves no empty grid of axes behind), and its layout
    is constrained (titles, colour bars and outside legends never overlap the next panel)."""
    fig = Figure(figsize=figsize, dpi=dpi, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _new_figure(ax: Axes | None, figsize) -> tuple[Figure, Axes]:
    """The figure and axes to draw on: the caller's axes, or a fresh figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots()


def _finish(fig: Figure, display: bool, own_figure: bool) -> Figure | None:
    """Apply the display convention of the module docstring."""
    if own_figure and display:
        show(fig)
        return None
    return fig


# --------------------------------------------------------------------------- images

def _as_images(images, name: str = "images") -> torch.Tensor:
    """``images`` as a float CPU tensor (N, C, H, W) with C in {1, 3}, or a clear error."""
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
    x = images.detach().to("cpu", torch.float32)
    if x.dim() != 4:
        hint = ""
        if x.dim() == 3:
            hint = (" For one image (C, H, W) use x.unsqueeze(0); for a batch of grey images"
                    " (N, H, W) use x.unsqueeze(1).")
        elif x.dim() == 2:
            hint = " Flattened images (N, H*W) need reshaping first, e.g. x.view(-1, 1, 28, 28)."
        raise ValueError(f"{name} must be shaped (N, C, H, W), got {tuple(x.shape)}.{hint}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 (grey) or 3 (colour) channels in dim 1, got shape "
                         f"{tuple(x.shape)}; channels-last (N, H, W, C) data needs x.permute(0, 3, 1, 2)")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (N = 0)")
    return x


def _check_range(value_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be a pair (low, high), got {value_range!r}") from None
    if not lo < hi:
        raise ValueError(f"value_range must have low < high, got {value_range!r}")
    return lo, hi


def image_grid(images, nrow: int = 8, value_range=(0, 1), padding: int = 2,
               pad_value: float = 1.0) -> torch.Tensor:
    """Tile a batch of images into one image, ``nrow`` images per row (as in torchvision).

    Values are rescaled from ``value_range`` to [0, 1] and clipped. Returns a CPU tensor
    (C, H, W): one channel for grey images, three for colour ones.
    """
    x = _as_images(images)
    lo, hi = _check_range(value_range)
    if not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}")
    x = ((x - lo) / (hi - lo)).clamp(0, 1)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = torch.full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for i in range(n):
        row, col = divmod(i, ncol)
        top, left = padding + row * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i]
    return grid


def _imshow(ax: Axes, grid: torch.Tensor, extent=None) -> None:
    """Draw a (C, H, W) tensor in [0, 1]: grey colour map for one channel, RGB for three."""
    if grid.shape[0] == 1:
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest", extent=extent)
    else:
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest", extent=extent)


def _grid_figsize(grid: torch.Tensor, extra_height: float = 0.0) -> tuple[float, float]:
    h, w = grid.shape[1:]
    width = min(12.0, max(2.0, w * _INCH_PER_PIXEL))
    return width, width * h / w + extra_height


def show_images(images, nrow: int = 8, title: str | None = None, value_range=(0, 1),
                ax: Axes | None = None, figsize=None, display: bool = True) -> Figure | None:
    """Show a batch of images as one grid (grey for one channel). One axes, one image."""
    grid = image_grid(images, nrow=nrow, value_range=value_range)
    fig, ax_ = _new_figure(ax, figsize or _grid_figsize(grid, 0.4 if title else 0.0))
    _imshow(ax_, grid)
    ax_.set_axis_off()
    if title:
        ax_.set_title(title)
    return _finish(fig, display, own_figure=ax is None)


def show_rows(rows: Mapping[str, torch.Tensor], n: int | None = None, value_range=(0, 1),
              title: str | None = None, figsize=None, display: bool = True) -> Figure | None:
    """Show labelled rows of images one above another, e.g.
    ``show_rows({"original": x, "noisy": x_noisy, "denoised": x_hat}, n=8)``.

    Each row gets its own axes with its label on the left; ``n`` keeps the first ``n`` images of
    every row. Rows may differ in length and image size; one pixel has the same size in every row.
    """
    if not isinstance(rows, Mapping) or not rows:
        raise ValueError("rows must be a non-empty dict {label: images}")
    grids = {}
    for label, images in rows.items():
        x = _as_images(images, name=f"row {label!r}")[:n]
        grids[str(label)] = image_grid(x, nrow=len(x), value_range=value_range)
    width = max(g.shape[2] for g in grids.values())
    heights = [g.shape[1] for g in grids.values()]
    if figsize is None:
        inches = min(10.0, max(2.0, width * _INCH_PER_PIXEL))
        figsize = (inches + 1.2, inches * sum(heights) / width + (0.4 if title else 0.0))
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(len(grids), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (label, grid) in zip(axes, grids.items()):
        _imshow(ax, grid)
        ax.set_xlim(-0.5, width - 0.5)  # same scale in every row, short rows are left-aligned
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    return _finish(fig, display, own_figure=True)


# --------------------------------------------------------------------------- curves and bars

def _as_1d(values, what: str) -> np.ndarray:
    """A 1-D float NumPy array from a list of numbers (or 0-d tensors), an array or a tensor."""
    try:
        if isinstance(values, torch.Tensor):
            arr = values.detach().cpu().double().numpy()
        elif isinstance(values, np.ndarray):
            arr = values.astype(float)
        else:
            # float() also turns 0-d tensors (on the GPU, or with grad) into numbers
            arr = np.array([float(v.detach() if isinstance(v, torch.Tensor) else v) for v in values])
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{what} must be a sequence of numbers, got {type(values).__name__} ({err})") from None
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what} is empty: nothing to plot")
    return arr


def plot_curves(curves, xlabel: str = "epoch", ylabel: str = "loss", title: str | None = None,
                logy: bool = False, ax: Axes | None = None, figsize=(6, 4),
                display: bool = True) -> Figure | None:
    """Plot training curves against 1, 2, 3, ...

    ``curves`` is a list of numbers, a dict ``{name: list}`` (one line each, with a legend), or a
    training History (anything with an ``epoch_losses`` attribute). Short curves get dots so that a
    one-epoch run (fast mode) is still visible.
    """
    history = getattr(curves, "epoch_losses", None)
    if history is not None:
        curves = history
    if isinstance(curves, Mapping):
        if not curves:
            raise ValueError("curves is an empty dict: nothing to plot")
        series = {str(name): _as_1d(v, f"curve {name!r}") for name, v in curves.items()}
    else:
        series = {ylabel: _as_1d(curves, "curves")}
    if logy and any((y <= 0).any() for y in series.values()):
        raise ValueError("logy=True needs positive values (a log axis cannot show values <= 0); "
                         "use logy=False, e.g. for a WGAN critic loss")
    fig, ax_ = _new_figure(ax, figsize)
    for name, y in series.items():
        ax_.plot(np.arange(1, len(y) + 1), y, marker="o" if len(y) <= 30 else None, ms=3, label=name)
    ax_.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax_.set_xlabel(xlabel)
    ax_.set_ylabel(ylabel)
    if logy:
        ax_.set_yscale("log")
    if isinstance(curves, Mapping):
        ax_.legend()
    if title:
        ax_.set_title(title)
    return _finish(fig, display, own_figure=ax is None)


def plot_bars(values, labels=None, xlabel: str | None = None, ylabel: str | None = None,
              title: str | None = None, ax: Axes | None = None, figsize=None,
              display: bool = True) -> Figure | None:
    """A bar chart of ``values`` (one bar each), e.g. the KL divergence of each latent dimension.
    ``labels`` names the bars (default: 0, 1, 2, ...)."""
    y = _as_1d(values, "values")
    if labels is None:
        labels = [str(i) for i in range(len(y))]
    labels = [str(label) for label in labels]
    if len(labels) != len(y):
        raise ValueError(f"got {len(y)} values but {len(labels)} labels")
    fig, ax_ = _new_figure(ax, figsize or (max(4.0, 0.35 * len(y) + 1.5), 3.5))
    ax_.bar(np.arange(len(y)), y, tick_label=labels)
    if xlabel:
        ax_.set_xlabel(xlabel)
    if ylabel:
        ax_.set_ylabel(ylabel)
    if title:
        ax_.set_title(title)
    return _finish(fig, display, own_figure=ax is None)


# --------------------------------------------------------------------------- latent spaces

def _pca_2d(z: torch.Tensor) -> torch.Tensor:
    """Project the rows of ``z`` onto their first two principal components."""
    centred = z - z.mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return centred @ vh[:2].T


def plot_latent_scatter(z, labels=None, ax: Axes | None = None, title: str | None = None,
                        project: bool = False, s: float = 6, figsize=(5.5, 5),
                        display: bool = True) -> Figure | None:
    """Scatter 2-D latent codes ``z`` (N, 2), coloured by ``labels`` (N,).

    Integer labels with at most 20 distinct values (digits 0-9) get one colour each and a legend;
    other labels get a colour bar (a second axes). Codes with more than two columns raise an error
    unless ``project=True``, which draws their first two principal components (PCA) instead.
    """
    if not isinstance(z, torch.Tensor):
        z = torch.as_tensor(np.asarray(z))
    z = z.detach().to("cpu", torch.float64)
    if z.dim() != 2:
        raise ValueError(f"z must be a 2-D tensor (N, 2), got shape {tuple(z.shape)}")
    projected = z.shape[1] != 2
    if projected:
        if not project or z.shape[1] < 2:
            raise ValueError(f"z has {z.shape[1]} columns but this plot needs exactly 2. Pick two, "
                             "e.g. z[:, :2], or pass project=True to plot the first two principal "
                             "components (PCA)")
        z = _pca_2d(z)
    fig, ax_ = _new_figure(ax, figsize)
    x, y = z[:, 0].numpy(), z[:, 1].numpy()
    if labels is None:
        ax_.scatter(x, y, s=s, alpha=0.7)
    else:
        c = _as_1d(labels, "labels")
        if len(c) != len(x):
            raise ValueError(f"got {len(x)} codes but {len(c)} labels")
        classes = np.unique(c)
        if np.all(c == np.round(c)) and len(classes) <= 20:
            colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
            for i, k in enumerate(classes):
                mask = c == k
                ax_.scatter(x[mask], y[mask], s=s, alpha=0.7, color=colours(i), label=str(int(k)))
            ax_.legend(title="label", loc="center left", bbox_to_anchor=(1.0, 0.5),
                       markerscale=2, frameon=False)
        else:
            points = ax_.scatter(x, y, s=s, alpha=0.7, c=c, cmap="viridis")
            fig.colorbar(points, ax=ax_)
    ax_.set_xlabel("PC 1" if projected else "$z_1$")
    ax_.set_ylabel("PC 2" if projected else "$z_2$")
    if title:
        ax_.set_title(title)
    return _finish(fig, display, own_figure=ax is None)


def _module_device(fn) -> torch.device:
    """The device of the model behind ``fn`` (a module or one of its methods), else the CPU."""
    owner = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
    if isinstance(owner, torch.nn.Module):
        for tensor in (*owner.parameters(), *owner.buffers()):
            return tensor.device
    return torch.device("cpu")


def decode_images(decode_fn: Callable, z: torch.Tensor, device=None) -> torch.Tensor:
    """Run ``decode_fn(z)`` without gradients and return the images as CPU tensors (M, C, H, W).

    ``z`` is moved to ``device`` (default: the device of the model behind ``decode_fn``). Flat
    outputs (M, H*W) with a square H*W, e.g. 784 for MNIST, are reshaped to (M, 1, H, W).
    """
    device = torch.device(device) if device is not None else _module_device(decode_fn)
    with torch.no_grad():
        out = decode_fn(z.to(device))
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"decode_fn must return a tensor of images, got {type(out).__name__}")
    if out.dim() == 2 and math.isqrt(out.shape[1]) ** 2 == out.shape[1]:
        side = math.isqrt(out.shape[1])
        out = out.reshape(-1, 1, side, side)
    elif out.dim() == 3:
        out = out.unsqueeze(1)
    images = _as_images(out, name="decode_fn's output")
    if images.shape[0] != z.shape[0]:
        raise ValueError(f"decode_fn turned {z.shape[0]} codes into {images.shape[0]} images")
    return images


def latent_grid(decode_fn: Callable, lim: float = 3.0, n: int = 15, value_range=(0, 1),
                device=None, title: str | None = None, ax: Axes | None = None, figsize=(6, 6),
                display: bool = True) -> Figure | None:
    """Decode a regular ``n`` x ``n`` grid of points covering [-lim, lim]^2 of a 2-D latent plane
    and draw the images where their codes lie (the "manifold" figure of the AE and VAE labs).

    ``decode_fn`` maps codes (M, 2) to images (M, C, H, W). Put the model in ``eval()`` mode first.
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if not lim > 0:
        raise ValueError(f"lim must be positive, got {lim!r}")
    coords = torch.linspace(-lim, lim, n)
    zy, zx = torch.meshgrid(coords.flip(0), coords, indexing="ij")  # top row: largest z_2
    z = torch.stack([zx.reshape(-1), zy.reshape(-1)], dim=1)
    images = decode_images(decode_fn, z, device=device)
    grid = image_grid(images, nrow=n, value_range=value_range, padding=0)
    half = lim / (n - 1)  # half the spacing: each image is centred on its code
    fig, ax_ = _new_figure(ax, figsize)
    _imshow(ax_, grid, extent=(-lim - half, lim + half, -lim - half, lim + half))
    ax_.set_xlabel("$z_1$")
    ax_.set_ylabel("$z_2$")
    if title:
        ax_.set_title(title)
    return _finish(fig, display, own_figure=ax is None)
