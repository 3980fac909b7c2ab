"""The labs in a real browser, as a student sees them: JupyterLab with the student profile
(``genlab lab``'s) in headless Chromium, driven by Selenium.

Every released lab (``labs/``) and its solution (``solutions/``) is opened in fast mode and its
code cells are run one after another, as Shift+Enter would. Checked:

- the solution raises nothing; the stub raises only "not implemented" errors (and, after the
  first, errors of ungraded cells that need an unfinished exercise's results), and a failed
  check shows a few lines (its message and hint), not a traceback;
- a cell that fails leaves no figure (no empty grid of axes);
- widgets render as live widgets, and moving a slider redraws the figure below it;
- training shows tqdm progress bars as widgets; the fallback-data notice is not on stderr;
- no instructor UI: no nbgrader menu, formgrader, Create Assignment, assignment list or Validate.

Screenshots go to ``artifacts/browser/`` (CI keeps them). Needs Chromium and its driver
(Debian: ``chromium`` and ``chromium-driver``, which ``.ci/run`` installs); without them the
tests are skipped, saying so.
"""
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import JUPYTERLAB_TOKEN
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from genlab import labs

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
KINDS = {"solution": "solutions", "lab": "labs"}
INSTRUCTOR_COMMANDS = ["nbgrader:open-formgrader", "nbgrader:open-create-assignment",
                       "nbgrader:open-assignment-list", "nbgrader:open-course-list"]
CELL_TIMEOUT = 300

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    """Paths of the Chromium browser and its driver, or skip."""
    browser = next(filter(None, map(shutil.which, ["chromium", "chromium-browser",
                                                    "google-chrome"])), None)
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("no Chromium or chromedriver on this machine (Debian: apt-get install "
                    "chromium chromium-driver; .ci/run installs them)")
    return browser, driver


@pytest.fixture(scope="module")
def server(chromium, start_jupyterlab, tmp_path_factory):
    """JupyterLab with the student profile on a copy of labs/ and solutions/, in fast mode, with
    the kernel environment a student has (no headless overrides)."""
    home = tmp_path_factory.mktemp("notebooks")
    for lab in labs.LABS.values():
        for kind, folder in KINDS.items():
            (home / kind).mkdir(exist_ok=True)
            shutil.copy(ROOT / folder / lab.id / f"{lab.id}.ipynb", home / kind)
    return start_jupyterlab("student", home, GENLAB_FAST="1", MPLBACKEND=None,
                            GENLAB_NO_WIDGETS=None, GENLAB_WIDGETS=None, NBGRADER_EXECUTION=None)


@pytest.fixture(scope="module")
def browser(chromium, server):
    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(CELL_TIMEOUT)
    driver.command_executor.client_config.timeout = CELL_TIMEOUT + 30  # a long cell is one call
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(f"{server}/lab?reset&token={JUPYTERLAB_TOKEN}")  # ?reset: a fresh workspace
        _wait(driver, "return !!window.jupyterapp", "JupyterLab did not load")
        _call(driver, "await window.jupyterapp.restored;")
        yield driver
    finally:
        driver.quit()


def _wait(driver, script: str, message: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := driver.execute_script(script)):
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.2)
    return value


def _call(driver, body: str, *args):
    """Run ``body`` (JavaScript, may use await and ``args``) in the page; return its value."""
    script = ("const done = arguments[arguments.length - 1];"
              "const args = Array.from(arguments).slice(0, -1);"
              "const app = window.jupyterapp, panel = window.genlabPanel;"
              f"(async () => {{ {body} }})().then(done, e => done({{jsError: String(e)}}));")
    value = driver.execute_async_script(script, *args)
    if isinstance(value, dict) and "jsError" in value:
        raise AssertionError(f"JavaScript failed: {value['jsError']}")
    return value


# One summary per code cell: its source, nbgrader metadata, and its outputs without the images.
CELLS_JS = """
return panel.content.widgets.map((cell, index) => ({cell, index}))
  .filter(({cell}) => cell.model.type === 'code')
  .map(({cell, index}) => ({
    index, source: cell.model.sharedModel.getSource(),
    nbgrader: cell.model.getMetadata('nbgrader') || {},
    outputs: cell.model.outputs.toJSON().map(o => ({
      type: o.output_type, name: o.name || '', text: o.text || '', ename: o.ename || '',
      evalue: o.evalue || '', traceback: o.traceback || [],
      mimes: Object.keys(o.data || {})})),
    widgets: cell.node.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
    progress: cell.node.querySelectorAll('.jp-OutputArea-output .widget-hprogress').length,
    sliders: cell.node.querySelectorAll('.widget-slider .noUi-handle').length,
    broken: /Error displaying widget|Loading widget/.test(cell.node.textContent)}));
"""


class Notebook:
    """One notebook open in JupyterLab, with its own kernel."""

    def __init__(self, driver, path: str):
        self.driver, self.path = driver, path
        _call(driver, """
            const panel = await app.commands.execute('docmanager:open', {path: args[0]});
            await panel.context.ready;
            await panel.sessionContext.ready;
            window.genlabPanel = panel;""", path)

    def run_every_cell(self) -> list[dict]:
        """Run the code cells in order; print the slowest (``pytest -s`` shows them)."""
        count = _call(self.driver, "return panel.content.widgets.length;")
        seconds = {}
        for index in range(count):
            start = time.monotonic()
            _call(self.driver, """
                if (panel.content.widgets[args[0]].model.type !== 'code') return;
                app.shell.activateById(panel.id);
                panel.content.activeCellIndex = args[0];
                await app.commands.execute('notebook:run-cell');""", index)
            seconds[index] = time.monotonic() - start
        slowest = sorted(seconds, key=seconds.get, reverse=True)[:5]
        print(f"{self.path}: {sum(seconds.values()):.0f} s running cells; slowest: "
              + ", ".join(f"cell {i} {seconds[i]:.1f} s" for i in slowest))
        time.sleep(1)  # let the last outputs and widgets render
        return _call(self.driver, CELLS_JS)

    def close(self):
        _call(self.driver, "await panel.sessionContext.shutdown(); panel.dispose();")

    def scroll_to(self, selector: str, text: str = "") -> None:
        """Scroll to the first element matching ``selector`` whose text starts with ``text``."""
        _call(self.driver, """
            const element = [...panel.node.querySelectorAll(args[0])]
              .find(e => e.textContent.trim().startsWith(args[1]));
            if (element) element.scrollIntoView({block: 'center'});""", selector, text)


def _errors(cells):
    return [(cell, out) for cell in cells for out in cell["outputs"] if out["type"] == "error"]


def _where(cell) -> str:
    first_line = (cell["source"].splitlines() or [""])[0]
    return f"cell {cell['index']} ({first_line[:60]!r})"


def _not_implemented(out) -> bool:
    return out["ename"] == "NotImplementedError" or any(
        phrase in out["evalue"] for phrase in ("not implemented", "NotImplementedError"))


def _unexpected_in_stub(cells) -> list[tuple[dict, dict]]:
    """The stub's errors other than "not implemented". After the first of those, an ungraded
    cell may also fail for want of what an unfinished exercise would have computed (a model
    never trained, an empty dict): the solution's run shows that the cell itself works. A test
    cell must always fail as "not implemented"."""
    unexpected, stopped = [], False
    for cell, out in _errors(cells):
        if _not_implemented(out):
            stopped = True
        elif not stopped or cell["nbgrader"].get("grade"):
            unexpected.append((cell, out))
    return unexpected


def _move_first_slider(driver, cells) -> None:
    """Drag the first slider of the first explorer and wait for its picture to change."""
    cell = next((c for c in cells if c["sliders"]), None)
    if cell is None:
        return
    picture = ("return (panel.content.widgets[args[0]].node.querySelector("
               "'.jupyter-widgets .widget-output img') || {}).src || '';")
    before = _call(driver, picture, cell["index"])
    assert before, f"{_where(cell)}: the explorer shows no picture"
    handle = _call(driver, """
        const handle = panel.content.widgets[args[0]].node.querySelector('.noUi-handle');
        handle.scrollIntoView({block: 'center'});
        return handle;""", cell["index"])
    ActionChains(driver).click_and_hold(handle).move_by_offset(60, 0).release().perform()
    deadline = time.monotonic() + 60
    while _call(driver, picture, cell["index"]) == before:
        assert time.monotonic() < deadline, f"{_where(cell)}: moving the slider redrew nothing"
        time.sleep(0.5)


def test_no_instructor_tools_for_students(browser, server):
    menus = browser.execute_script(
        "return [...document.querySelectorAll('.lm-MenuBar-itemLabel')].map(e => e.textContent)")
    assert "File" in menus and not any("nbgrader" in m.lower() for m in menus), menus
    has = "return window.jupyterapp.commands.hasCommand(arguments[0])"
    present = [c for c in INSTRUCTOR_COMMANDS if browser.execute_script(has, c)]
    assert not present, f"instructor commands available to students: {present}"
    titles = browser.execute_script(
        "return [...document.querySelectorAll('[title], .lm-TabBar-tabLabel')]"
        ".map(e => (e.title || '') + ' ' + e.textContent)")
    assert not [t for t in titles if "Assignment" in t or "Formgrader" in t]
    status = _call(browser, "return (await fetch('/formgrader')).status;")
    assert status == 404, f"/formgrader answers {status} in the student profile"
    browser.find_element(By.CSS_SELECTOR, ".lm-MenuBar")  # the page itself is there
    browser.save_screenshot(str(ARTIFACTS / "student-profile.png"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lab", labs.LABS.values(), ids=lambda lab: lab.number)
def test_every_cell_runs_in_jupyterlab(browser, lab, kind):
    notebook = Notebook(browser, f"{kind}/{lab.id}.ipynb")
    try:
        cells = notebook.run_every_cell()
        errors = _errors(cells)
        if kind == "solution":
            assert not errors, "the solution raised:\n" + "\n".join(
                f"{_where(c)}: {o['ename']}: {o['evalue']}" for c, o in errors)
        else:
            unexpected = _unexpected_in_stub(cells)
            assert not unexpected, "the stub raised more than 'not implemented':\n" + "\n".join(
                f"{_where(c)}: {o['ename']}: {o['evalue'][:200]}" for c, o in unexpected)
            assert errors, "the stub raised nothing: are its exercises released as stubs?"
        for cell, out in errors:
            if out["ename"] == "CheckFailed":
                assert len(out["traceback"]) <= 4, f"{_where(cell)}: a long traceback for a check"
        for cell in cells:
            kinds = [o["type"] for o in cell["outputs"]]
            if "error" in kinds:
                after = cell["outputs"][kinds.index("error"):]
                assert not any("image/png" in o["mimes"] for o in after), \
                    f"{_where(cell)} failed and still shows a figure (empty axes?)"
            views = sum("application/vnd.jupyter.widget-view+json" in o["mimes"]
                        for o in cell["outputs"])
            assert not cell["broken"] and cell["widgets"] >= min(views, 1), \
                f"{_where(cell)}: a widget is not rendered as a live widget"
            text = "".join(o["text"] for o in cell["outputs"] if o["name"] == "stderr")
            assert "%|" not in text, f"{_where(cell)}: a text progress bar instead of a widget"
            assert "DataFallbackWarning" not in text, f"{_where(cell)}: the data notice on stderr"
        if kind == "solution":
            trains = any(re.search(r"\b(fit|train_\w+)\(", c["source"]) for c in cells)
            if trains:
                assert any(c["progress"] for c in cells), "training showed no progress bar"
            _move_first_slider(browser, cells)
        toolbar = _call(browser, "return panel.toolbar.node.textContent;")
        assert "Validate" not in toolbar, "nbgrader's Validate button is shown to students"
    finally:  # a screenshot also when it failed: the first slider, or the first failed check
        notebook.scroll_to(".widget-slider" if kind == "solution" else
                           ".jp-OutputArea-output[data-mime-type*='stderr']", "CheckFailed")
        browser.save_screenshot(str(ARTIFACTS / f"{lab.id}-{kind}.png"))
        notebook.close()
