"""genlab.plotting: shapes, input checks and the display/close convention (headless, Agg)."""
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from genlab import plotting


@pytest.fixture(autouse=True)
def _no_open_figures():
    """Every test starts and must end with no pyplot figure open."""
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a helper left a figure open"


def _images(n=10, c=1, size=8):
    return torch.rand(n, c, size, size, requires_grad=True)  # grad tensors must be accepted


class _Decoder(torch.nn.Module):
    """(M, 2) -> (M, 1, 6, 6); records the device of its input."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 36)
        self.calls = []

    def forward(self, z):
        self.calls.append(z.shape)
        return torch.sigmoid(self.linear(z)).view(-1, 1, 6, 6)


# --------------------------------------------------------------------------- image_grid

def test_image_grid_shape_channels_and_range():
    grid = plotting.image_grid(torch.zeros(10, 1, 8, 8), nrow=4, padding=2)
    assert grid.shape == (1, 3 * 10 + 2, 4 * 10 + 2)  # 3 rows of 4 images
    colour = plotting.image_grid(torch.full((2, 3, 5, 5), -1.0), value_range=(-1, 1), padding=0)
    assert colour.shape == (3, 5, 10) and colour.max() == 0  # -1 maps to black
    clipped = plotting.image_grid(torch.full((1, 1, 4, 4), 7.0), padding=0)
    assert clipped.max() == 1


@pytest.mark.parametrize("bad, message", [
    (torch.rand(5, 8, 8), "unsqueeze"),
    (torch.rand(5, 64), "reshaping"),
    (torch.rand(5, 2, 8, 8), "channels"),
    (torch.rand(0, 1, 8, 8), "empty"),
])
def test_image_grid_rejects_bad_shapes(bad, message):
    with pytest.raises(ValueError, match=message):
        plotting.image_grid(bad)


def test_bad_value_range():
    with pytest.raises(ValueError, match="low < high"):
        plotting.image_grid(torch.rand(2, 1, 4, 4), value_range=(1, 0))


# --------------------------------------------------------------------------- the convention

def test_helpers_return_figure_only_when_not_displayed():
    fig = plotting.show_images(_images(), display=False)
    assert isinstance(fig, Figure) and len(fig.axes) == 1 and len(fig.axes[0].images) == 1
    assert plotting.show_images(_images()) is None


def test_show_displays_once_in_a_kernel_and_closes(monkeypatch):
    shown = []
    monkeypatch.setattr(plotting, "in_kernel", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    fig, _ = plt.subplots()  # a pyplot figure, as a student would make
    plotting.show(fig)
    plotting.show_images(_images())
    assert len(shown) == 2 and all(obj.format == "png" and obj.data[:4] == b"\x89PNG" for obj in shown)


def test_show_does_nothing_visible_in_a_plain_script(monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda obj: pytest.fail("displayed outside a kernel"))
    plotting.show_images(_images())
    with pytest.raises(TypeError, match="Figure"):
        plotting.show("not a figure")


def test_subplots_is_shown_only_by_show_and_uses_a_constrained_layout(monkeypatch):
    fig, axes = plotting.subplots(1, 3, figsize=(6, 2), sharey=True, width_ratios=[1, 2, 1])
    assert axes.shape == (3,) and fig.get_size_inches().tolist() == [6, 2]
    assert fig.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine"
    assert plt.get_fignums() == []  # a cell that raises here leaves nothing for the inline backend
    shown = []
    monkeypatch.setattr(plotting, "in_kernel", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    plotting.show(fig)
    assert len(shown) == 1


def test_latent_scatter_legends_stay_out_of_the_next_panel():
    fig, axes = plotting.subplots(1, 2, figsize=(8, 4))
    for ax in axes:
        plotting.plot_latent_scatter(torch.randn(200, 2), torch.arange(200) % 10, ax=ax)
    plotting.figure_to_png(fig)  # lays the figure out
    renderer = fig._get_renderer()
    legend = axes[0].get_legend().get_window_extent(renderer)
    assert legend.x1 <= axes[1].get_tightbbox(renderer).x0  # clear of its axis label too


def test_ax_is_drawn_into_and_left_open_for_the_caller():
    fig, (left, right) = plt.subplots(1, 2)
    assert plotting.show_images(_images(), ax=left) is fig
    assert plotting.plot_curves([3, 2, 1], ax=right) is fig
    assert len(left.images) == 1 and len(right.lines) == 1
    assert plt.get_fignums() == [fig.number]  # not closed: the caller owns it
    plotting.show(fig)


# --------------------------------------------------------------------------- the helpers

def test_show_images_colour_and_title():
    fig = plotting.show_images(_images(c=3) * 2 - 1, value_range=(-1, 1), title="samples", display=False)
    ax = fig.axes[0]
    assert ax.get_title() == "samples" and ax.images[0].get_array().shape[-1] == 3


def test_show_rows_one_axes_per_row():
    rows = {"original": _images(8), "noisy": _images(5), "colour": _images(3, c=3, size=10)}
    fig = plotting.show_rows(rows, n=6, display=False)
    assert [ax.get_ylabel() for ax in fig.axes] == list(rows)
    assert all(len(ax.images) == 1 for ax in fig.axes)
    assert fig.axes[0].images[0].get_array().shape[1] == 6 * 10 + 2  # first 6 images in one line
    with pytest.raises(ValueError, match="non-empty"):
        plotting.show_rows({})
    with pytest.raises(ValueError, match="row 'bad'"):
        plotting.show_rows({"bad": torch.rand(3, 8, 8)})


def test_plot_curves_accepts_lists_dicts_tensors_and_histories():
    class History:
        epoch_losses = [torch.tensor(2.0, requires_grad=True), 1.5, 1.0]

    assert len(plotting.plot_curves([1.0, 0.5], display=False).axes[0].lines) == 1
    fig = plotting.plot_curves({"train": torch.tensor([3.0, 2.0]), "val": [3.5, 2.5]}, logy=True,
                               title="t", display=False)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and ax.get_legend() is not None and ax.get_yscale() == "log"
    line = plotting.plot_curves(History(), display=False).axes[0].lines[0]
    assert list(line.get_xdata()) == [1, 2, 3] and list(line.get_ydata()) == [2.0, 1.5, 1.0]


def test_plot_curves_errors():
    with pytest.raises(ValueError, match="positive"):
        plotting.plot_curves([1.0, -0.5], logy=True)
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_curves([])
    with pytest.raises(TypeError, match="numbers"):
        plotting.plot_curves(["a", "b"])
    with pytest.raises(ValueError, match="one-dimensional"):
        plotting.plot_curves(torch.rand(3, 2))


def test_plot_latent_scatter_discrete_continuous_and_pca():
    z = torch.randn(200, 2, requires_grad=True)
    digits = torch.arange(200) % 10
    fig = plotting.plot_latent_scatter(z, digits, display=False)
    assert len(fig.axes) == 1 and len(fig.axes[0].collections) == 10  # one colour per digit
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [str(d) for d in range(10)]
    fig = plotting.plot_latent_scatter(z, torch.rand(200), display=False)
    assert len(fig.axes) == 2  # plot + colour bar
    fig = plotting.plot_latent_scatter(torch.randn(50, 6), project=True, display=False)
    assert fig.axes[0].get_xlabel() == "PC 1"


@pytest.mark.parametrize("bad, message", [
    (torch.randn(10), "2-D"),
    (torch.randn(10, 5), "project=True"),
    (torch.randn(2, 10, 2), "2-D"),
])
def test_plot_latent_scatter_rejects_bad_shapes(bad, message):
    with pytest.raises(ValueError, match=message):
        plotting.plot_latent_scatter(bad)


def test_plot_latent_scatter_label_count():
    with pytest.raises(ValueError, match="labels"):
        plotting.plot_latent_scatter(torch.randn(10, 2), torch.zeros(9))


def test_latent_grid_decodes_n_by_n_codes():
    decoder = _Decoder()
    fig = plotting.latent_grid(decoder, lim=2.0, n=5, display=False)
    assert decoder.calls == [torch.Size([25, 2])]
    ax = fig.axes[0]
    assert len(ax.images) == 1 and ax.images[0].get_array().shape == (30, 30)
    assert ax.images[0].get_extent() == [-2.5, 2.5, -2.5, 2.5]  # each image centred on its code
    flat = plotting.latent_grid(lambda z: torch.rand(len(z), 16), n=3, display=False)  # (M, 16) -> 4x4
    assert flat.axes[0].images[0].get_array().shape == (12, 12)
    with pytest.raises(ValueError, match="n must be"):
        plotting.latent_grid(decoder, n=1)
    with pytest.raises(ValueError, match="decode_fn turned 9 codes into 1"):
        plotting.latent_grid(lambda z: torch.rand(1, 1, 4, 4), n=3)


def test_plot_bars():
    fig = plotting.plot_bars(torch.rand(6, requires_grad=True), ylabel="KL", display=False)
    assert len(fig.axes[0].patches) == 6
    with pytest.raises(ValueError, match="labels"):
        plotting.plot_bars([1, 2, 3], labels=["a", "b"])


@pytest.mark.gpu
def test_cuda_tensors():
    x = _images().cuda()
    assert plotting.show_images(x, display=False) is not None
    assert plotting.plot_latent_scatter(torch.randn(20, 2).cuda(), display=False) is not None
    decoder = _Decoder().cuda()
    plotting.latent_grid(decoder, n=3, display=False)
