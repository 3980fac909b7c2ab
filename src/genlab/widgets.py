"""Sliders for exploring a model, which turn into a still picture where sliders cannot work.

The one function to know is :func:`explore`::

    def render(beta, n):                      # returns a matplotlib Figure
        ...
    explore(render, {"beta": (0.0, 4.0, 0.1, 1.0), "n": (1, 16, 1, 8)})

What explore() shows
--------------------
It always calls ``render`` once with the default values first, so there is always a picture. Then:

* **No widget front end** (``has_widget_frontend()`` is False: a plain script, a notebook executed
  by nbclient/nbconvert/nbgrader, or ``GENLAB_NO_WIDGETS=1``): the picture is shown as an ordinary
  image, followed by the note "(interactive sliders appear when this runs in JupyterLab)".
  ``explore`` returns ``None``.
* **A widget front end is likely** (JupyterLab, Notebook 7, VS Code, Colab): sliders plus the
  picture, redrawn whenever a slider is released. The box is displayed as one output that carries
  both the live widget and the default picture as a PNG: JupyterLab draws the widget, and anything
  that cannot (a JupyterLab without the widgets extension, nbconvert, GitHub) falls back to the
  picture. So even a wrong guess never leaves an empty output. ``explore`` returns the box
  (an :class:`Explorer`); if you leave it as the last line of a cell it is *not* shown a second time.

How has_widget_frontend() decides
---------------------------------
A kernel cannot ask the browser whether the widgets extension is installed, so it guesses,
conservatively; the first rule that applies wins:

1. ``GENLAB_NO_WIDGETS=1`` -> False; ``GENLAB_WIDGETS=1`` -> True (manual overrides).
2. ``NBGRADER_EXECUTION`` is set (nbgrader autograding or validating) -> False.
3. Not running inside a Jupyter kernel (plain Python, terminal IPython) -> False.
4. The kernel was started by a Jupyter server (JupyterLab, Notebook 7, JupyterHub: they set
   ``JPY_SESSION_NAME``), or by VS Code or Google Colab -> True.
5. Anything else, such as a kernel started directly by nbclient, nbconvert or papermill -> False.
"""
from __future__ import annotations

import base64
import html
import math
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from numbers import Real

import ipywidgets
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from . import config, plotting

__all__ = ["has_widget_frontend", "explore", "Explorer", "interpolation_widget",
           "latent_traversal_widget"]

NOTE = "(interactive sliders appear when this runs in JupyterLab)"


def has_widget_frontend() -> bool:
    """Whether interactive widgets will probably be drawn (rules in the module docstring)."""
    forced = config.widgets_override()
    if forced is not None:
        return forced
    if config.autograding():
        return False
    if not plotting.in_kernel():
        return False
    from IPython import get_ipython
    user_ns = getattr(get_ipython(), "user_ns", {})
    return bool(os.environ.get("JPY_SESSION_NAME") or "__vsc_ipynb_file__" in user_ns
                or "google.colab" in sys.modules)


# --------------------------------------------------------------------------- controls

def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_control(name, spec):
    """Validate one control and return its default value."""
    if not isinstance(name, str):
        raise TypeError(f"control names must be strings, got {name!r}")
    if isinstance(spec, bool):
        return spec
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"control {name!r}: the list of options is empty")
        return spec[0]
    if isinstance(spec, tuple):
        if len(spec) != 4:
            raise ValueError(f"control {name!r}: a slider is (min, max, step, default), got {spec!r}")
        if not all(_is_number(v) for v in spec):
            raise TypeError(f"control {name!r}: min, max, step and default must be numbers, got {spec!r}")
        low, high, step, default = spec
        if not low < high:
            raise ValueError(f"control {name!r}: min ({low}) must be smaller than max ({high})")
        if not step > 0:
            raise ValueError(f"control {name!r}: step must be positive, got {step}")
        if not low <= default <= high:
            raise ValueError(f"control {name!r}: default {default} is outside [{low}, {high}]")
        return default
    raise TypeError(f"control {name!r}: expected a (min, max, step, default) tuple, a list of "
                    f"options or a bool, got {type(spec).__name__} {spec!r}")


def _check_controls(controls) -> dict:
    """Validate all controls and return their default values."""
    if not isinstance(controls, Mapping) or not controls:
        raise ValueError("controls must be a non-empty dict {name: (min, max, step, default) | "
                         "[options] | bool}")
    return {name: _check_control(name, spec) for name, spec in controls.items()}


def _make_widget(name: str, spec) -> ipywidgets.Widget:
    """The input widget for one (already validated) control."""
    if isinstance(spec, bool):
        return ipywidgets.Checkbox(value=spec, description=name, indent=False)
    if isinstance(spec, list):
        return ipywidgets.Dropdown(options=spec, value=spec[0], description=name)
    low, high, step, default = spec
    common = dict(min=low, max=high, step=step, value=default, description=name,
                  continuous_update=False)  # redraw when the slider is released, not while dragging
    if all(isinstance(v, int) for v in spec):
        return ipywidgets.IntSlider(**common)
    decimals = max(0, -math.floor(math.log10(step)))
    return ipywidgets.FloatSlider(readout_format=f".{decimals}f", **common)


# --------------------------------------------------------------------------- rendering

def _render_figure(render: Callable, values: dict) -> Figure:
    """Call ``render(**values)`` and return its Figure, closing any other pyplot figure it opened.

    ``render`` should return a Figure; returning an Axes, or nothing after drawing with pyplot,
    works too.
    """
    before = set(plt.get_fignums())
    result = None
    try:
        result = render(**values)
        if result is None:  # drew with pyplot and returned nothing: take the newest figure it made
            new = sorted(set(plt.get_fignums()) - before)
            result = plt.figure(new[-1]) if new else None
        if not isinstance(result, Figure):
            result = getattr(result, "figure", result)  # an Axes knows its Figure
        if not isinstance(result, Figure):
            raise TypeError(f"render(...) must return a matplotlib Figure, got {type(result).__name__}")
        return result
    finally:  # leave no stray figures behind, even when render fails
        for num in set(plt.get_fignums()) - before:
            if plt.figure(num) is not result:
                plt.close(num)


def _render_png(render: Callable, values: dict) -> bytes:
    """Render, convert to PNG and close the figure."""
    fig = _render_figure(render, values)
    try:
        return plotting.figure_to_png(fig)
    finally:
        plt.close(fig)


def _png_output(png: bytes) -> dict:
    """A notebook output (as stored in .ipynb files) holding one PNG."""
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": "<Figure>"}}


def _execution_count():
    """The number of the cell being executed, or None outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return getattr(get_ipython(), "execution_count", None)


class Explorer(ipywidgets.VBox):
    """The box :func:`explore` returns: controls on top, picture below.

    When displayed it sends one output holding both the live widget and a PNG of the default
    picture, so viewers without widget support still show something.
    """

    def __init__(self, children, png: bytes, **kwargs):
        super().__init__(children, **kwargs)
        self.static_png = png
        self._shown_in = None

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs) or {}
        data["image/png"] = base64.b64encode(self.static_png).decode("ascii")
        data["text/plain"] = "interactive figure (run in JupyterLab to use the sliders)"
        return data

    def _ipython_display_(self):
        # explore() already displayed this box; when the call is also the cell's last line,
        # Jupyter displays the returned box again, which we skip (once per cell).
        count = _execution_count()
        if count is not None and count == self._shown_in:
            return
        self._shown_in = count
        from IPython.display import display
        display(self._repr_mimebundle_(), raw=True)


def explore(render: Callable[..., Figure], controls: Mapping, *, title: str | None = None):
    """Show ``render(**values)`` with one control per entry of ``controls``.

    ``controls`` maps each argument name of ``render`` to
      * ``(min, max, step, default)``: a slider (an int slider if all four are ints),
      * a list of options: a drop-down, defaulting to the first option,
      * ``True`` / ``False``: a checkbox with that default.

    ``render`` is called once with the defaults. Without a widget front end the picture is shown
    as a plain image with a one-line note and ``None`` is returned; with one, the sliders and the
    picture are shown and the :class:`Explorer` box is returned (see the module docstring).
    Figures are closed after they have been drawn.
    """
    if not callable(render):
        raise TypeError(f"render must be a function returning a Figure, got {type(render).__name__}")
    defaults = _check_controls(controls)

    if not has_widget_frontend():
        plotting.show(_render_figure(render, defaults))
        print(f"{title} {NOTE}" if title else NOTE)
        return None

    png = _render_png(render, defaults)
    inputs = {name: _make_widget(name, spec) for name, spec in controls.items()}
    picture = ipywidgets.Output()
    picture.outputs = (_png_output(png),)

    def redraw(_change=None):
        values = {name: widget.value for name, widget in inputs.items()}
        try:
            picture.outputs = (_png_output(_render_png(render, values)),)
        except Exception:  # show the error under the sliders; callbacks' errors are otherwise hidden
            picture.outputs = ({"output_type": "stream", "name": "stderr",
                                "text": traceback.format_exc()},)

    for widget in inputs.values():
        widget.observe(redraw, names="value")
    header = [ipywidgets.HTML(f"<b>{html.escape(str(title))}</b>")] if title else []
    box = Explorer([*header, ipywidgets.VBox(list(inputs.values())), picture], png)
    from IPython.display import display
    display(box)
    return box


# --------------------------------------------------------------------------- VAE helpers

def _as_code(z, name: str) -> torch.Tensor:
    """One latent code as a 1-D float CPU tensor (accepts (D,) or (1, D))."""
    z = torch.as_tensor(z).detach().to("cpu", torch.float32)
    if z.dim() == 2 and z.shape[0] == 1:
        z = z[0]
    if z.dim() != 1:
        raise ValueError(f"{name} must be one latent code, shaped (D,) or (1, D); got {tuple(z.shape)}")
    return z


def _slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: walks along the arc between a and b instead of the chord."""
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.acos(cos.clamp(-1, 1))
    if omega.abs() < 1e-6:
        return torch.lerp(a, b, t)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def _image_panels(images: torch.Tensor, names, value_range) -> Figure:
    """One small titled panel per image, side by side."""
    fig = Figure(figsize=(2.2 * len(names), 2.5), layout="constrained")
    for ax, image, name in zip(fig.subplots(1, len(names), squeeze=False)[0], images, names):
        plotting.show_images(image[None], ax=ax, title=name, value_range=value_range)
    return fig


def interpolation_widget(decode_fn: Callable, z_a, z_b, steps: int = 10, value_range=(0, 1)):
    """Walk from code ``z_a`` to code ``z_b``: a slider ``t`` in [0, 1] (``steps`` steps) and a
    choice of linear or spherical ("slerp") interpolation. Shows A, the decoded z(t), and B."""
    z_a, z_b = _as_code(z_a, "z_a"), _as_code(z_b, "z_b")
    if z_a.shape != z_b.shape:
        raise ValueError(f"z_a and z_b must have the same size, got {z_a.numel()} and {z_b.numel()}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")

    def render(t, method):
        z_t = torch.lerp(z_a, z_b, t) if method == "linear" else _slerp(z_a, z_b, t)
        images = plotting.decode_images(decode_fn, torch.stack([z_a, z_t, z_b]))
        return _image_panels(images, ["A", f"t = {t:.2f} ({method})", "B"], value_range)

    controls = {"t": (0.0, 1.0, 1.0 / steps, 0.5), "method": ["linear", "slerp"]}
    return explore(render, controls, title="Interpolating between two codes")


def latent_traversal_widget(decode_fn: Callable, z, dims, lim: float = 3.0, value_range=(0, 1)):
    """Start from code ``z`` and move the latent dimensions ``dims`` with one slider each
    (range [-lim, lim]) to see what each dimension controls."""
    z = _as_code(z, "z")
    dims = [int(d) for d in dims]
    if not dims or any(not 0 <= d < z.numel() for d in dims) or len(set(dims)) != len(dims):
        raise ValueError(f"dims must be distinct indices in [0, {z.numel()}), got {dims}")
    if not lim > 0:
        raise ValueError(f"lim must be positive, got {lim!r}")

    def render(**values):
        code = z.clone()
        for d in dims:
            code[d] = values[f"z{d}"]
        images = plotting.decode_images(decode_fn, code[None])
        return _image_panels(images, ["decoded"], value_range)

    controls = {f"z{d}": (-float(lim), float(lim), lim / 10, min(max(float(z[d]), -lim), lim))
                for d in dims}
    return explore(render, controls, title="Latent traversal")
