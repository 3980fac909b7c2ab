"""genlab.widgets: front-end detection, control checks, the headless fallback, the widget path,
and one end-to-end run of a real notebook through nbclient."""
import matplotlib.pyplot as plt
import nbformat
import pytest
import torch
from nbclient import NotebookClient

from genlab import plotting, widgets

SLIDER = {"a": (0.0, 1.0, 0.1, 0.5)}


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    """No widget-related variables from the outside, and no figure left open at the end."""
    for name in ("GENLAB_NO_WIDGETS", "GENLAB_WIDGETS", "NBGRADER_EXECUTION", "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a figure was left open"


class Recorder:
    """A render function that remembers its calls and draws with pyplot, like a student would."""

    def __init__(self):
        self.calls = []

    def __call__(self, **values):
        self.calls.append(values)
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, values.get("a", 0)])
        return fig


# --------------------------------------------------------------------------- detection

def test_no_frontend_in_plain_python():
    assert widgets.has_widget_frontend() is False


def test_frontend_rules(monkeypatch):
    monkeypatch.setattr(plotting, "in_kernel", lambda: True)  # pretend to be a kernel
    assert widgets.has_widget_frontend() is False  # e.g. started by nbclient
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/lab.ipynb")  # started by JupyterLab
    assert widgets.has_widget_frontend() is True
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert widgets.has_widget_frontend() is False
    monkeypatch.delenv("NBGRADER_EXECUTION")
    monkeypatch.setenv("GENLAB_NO_WIDGETS", "1")
    assert widgets.has_widget_frontend() is False


# --------------------------------------------------------------------------- controls

@pytest.mark.parametrize("controls, error, message", [
    ({}, ValueError, "non-empty"),
    ({"a": (0, 1, 0.1)}, ValueError, r"\(min, max, step, default\)"),
    ({"a": (1, 0, 0.1, 0.5)}, ValueError, "smaller than max"),
    ({"a": (0, 1, 0.1, 2)}, ValueError, "outside"),
    ({"a": (0, 1, 0, 0.5)}, ValueError, "step"),
    ({"a": (0, "1", 0.1, 0.5)}, TypeError, "numbers"),
    ({"a": []}, ValueError, "empty"),
    ({"a": "slow"}, TypeError, "expected"),
])
def test_bad_controls_are_rejected_before_rendering(controls, error, message):
    render = Recorder()
    with pytest.raises(error, match=message):
        widgets.explore(render, controls)
    assert render.calls == []


# --------------------------------------------------------------------------- headless fallback

def test_headless_explore_renders_defaults_once(capsys):
    render = Recorder()
    controls = {"a": (0, 10, 1, 3), "mode": ["x", "y"], "grid": True}
    assert widgets.explore(render, controls, title="Demo") is None
    assert render.calls == [{"a": 3, "mode": "x", "grid": True}]
    assert capsys.readouterr().out.strip() == f"Demo {widgets.NOTE}"


def test_render_may_return_nothing_or_an_axes_but_not_junk():
    def draws_only(a):
        plt.subplots()

    def returns_axes(a):
        plt.figure()  # a stray figure, closed as well
        return plt.subplots()[1]

    widgets.explore(draws_only, SLIDER)
    widgets.explore(returns_axes, SLIDER)
    with pytest.raises(TypeError, match="must return a matplotlib Figure"):
        widgets.explore(lambda a: 42, SLIDER)


def test_vae_helpers_headless():
    decoder = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Sigmoid())  # (M, 3) -> 4x4 images
    assert widgets.interpolation_widget(decoder, torch.randn(3), torch.randn(1, 3), steps=4) is None
    assert widgets.latent_traversal_widget(decoder, torch.randn(3, requires_grad=True), [0, 2]) is None
    with pytest.raises(ValueError, match="dims"):
        widgets.latent_traversal_widget(decoder, torch.randn(3), [3])
    with pytest.raises(ValueError, match="same size"):
        widgets.interpolation_widget(decoder, torch.randn(3), torch.randn(2))


def test_slerp_stays_on_the_sphere():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(widgets._slerp(a, b, 0.5).norm(), torch.tensor(1.0))
    assert torch.allclose(widgets._slerp(a, b, 1.0), b, atol=1e-6)


# --------------------------------------------------------------------------- with a front end

def test_widget_path_redraws_on_change(monkeypatch):
    monkeypatch.setattr(widgets, "has_widget_frontend", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: None)
    render = Recorder()
    box = widgets.explore(render, {"a": (0.0, 1.0, 0.1, 0.5), "on": False}, title="T")
    assert isinstance(box, widgets.Explorer) and render.calls == [{"a": 0.5, "on": False}]
    slider = next(w for w in box.children[1].children if w.description == "a")
    picture = box.children[-1]
    first = picture.outputs[0]["data"]["image/png"]
    slider.value = 0.9
    assert render.calls[-1] == {"a": 0.9, "on": False}
    assert picture.outputs[0]["data"]["image/png"] != first
    bundle = box._repr_mimebundle_()
    assert {"image/png", "application/vnd.jupyter.widget-view+json"} <= set(bundle)


def test_widget_shows_render_errors_under_the_sliders(monkeypatch):
    monkeypatch.setattr(widgets, "has_widget_frontend", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: None)

    def render(a):
        if a > 0.5:
            raise ValueError("too big")
        return Recorder()(a=a)

    box = widgets.explore(render, SLIDER)
    box.children[0].children[0].value = 0.8
    assert "too big" in box.children[-1].outputs[0]["text"]


def test_explorer_is_displayed_once_per_cell(monkeypatch):
    monkeypatch.setattr(widgets, "has_widget_frontend", lambda: True)
    sent = []

    def display(obj, raw=False):  # a stand-in for IPython's display()
        sent.append(obj)
        if hasattr(obj, "_ipython_display_"):
            obj._ipython_display_()

    monkeypatch.setattr("IPython.display.display", display)
    monkeypatch.setattr(widgets, "_execution_count", lambda: 7)
    box = widgets.explore(Recorder(), SLIDER)  # explore displays the box...
    assert len(sent) == 2 and "image/png" in sent[1]  # display(box) sends one bundle
    box._ipython_display_()  # ...the cell's displayhook would show the returned box: skipped
    assert len(sent) == 2
    monkeypatch.setattr(widgets, "_execution_count", lambda: 8)  # `box` alone in a later cell
    box._ipython_display_()
    assert len(sent) == 3


# --------------------------------------------------------------------------- end to end

CELLS = [
    "import matplotlib.pyplot as plt\nimport torch\nfrom genlab import plotting, widgets",
    "plotting.show_images(torch.rand(4, 1, 8, 8))",
    "fig = plotting.plot_curves([3, 2, 1], display=False)\nplotting.show(fig)",
    "def render(a):\n    fig, ax = plt.subplots()\n    ax.plot([0, 1], [0, a])\n    return fig\n"
    "widgets.explore(render, {'a': (0.0, 1.0, 0.1, 0.5)})",
]


@pytest.mark.slow
@pytest.mark.parametrize("frontend", [False, True], ids=["headless", "widgets"])
def test_notebook_gets_exactly_one_picture_per_call(tmp_path, monkeypatch, frontend):
    """Execute a notebook as nbgrader does, with matplotlib's inline backend. With
    GENLAB_WIDGETS=1 the kernel acts as if JupyterLab were attached: the widget output must
    still carry the picture, and the returned box must not be shown a second time."""
    monkeypatch.delenv("MPLBACKEND", raising=False)  # let the kernel use its default, inline
    if frontend:
        monkeypatch.setenv("GENLAB_WIDGETS", "1")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in CELLS])
    NotebookClient(nb, kernel_name="python3", timeout=60,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell in nb.cells[1:]:
        kinds = [out.output_type for out in cell.outputs]
        assert "error" not in kinds, cell.outputs
        assert "execute_result" not in kinds, cell.outputs  # no second copy from the return value
        pngs = [out for out in cell.outputs if "image/png" in out.get("data", {})]
        assert len(pngs) == 1, (cell.source, cell.outputs)
    explore_output = nb.cells[3].outputs[-1]
    if frontend:
        assert "application/vnd.jupyter.widget-view+json" in explore_output.data
    else:
        assert explore_output.text.strip() == widgets.NOTE
