"""The checks every lab's graded cells get, in one place.

For each ``tests/test_labNN_mistakes.py`` (which declares the lab's ``SOURCE``, ``EXERCISES`` and
``POINTS``): the notebook has the contract's cells and points; the model solutions pass every
test cell and print nothing; the visible part of each test cell runs without the hidden part;
and the library's reference implementations (``genlab.<topic>``) pass the lab's tests. The
lab-specific checks (correct alternatives, stubs, cheats, named mistakes) stay in those files.
"""
import importlib
from pathlib import Path

import pytest

from genlab.testing import LabHarness

TOPICS = {"01": "tconv", "02": "autoencoder", "03": "denoising", "04": "vae", "05": "kl",
          "06": "disentangle", "07": "dcgan", "08": "wgan"}
LAB_TESTS = sorted(p.stem for p in Path(__file__).parent.glob("test_lab[0-9][0-9]_mistakes.py"))

pytestmark = pytest.mark.filterwarnings(r"ignore:std\(\).*degrees of freedom")


def test_every_lab_has_its_tests():
    notebooks = sorted(p.stem[:2] for p in (Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))
    assert [name[8:10] for name in LAB_TESTS] == notebooks


@pytest.fixture(scope="module", params=LAB_TESTS, ids=lambda name: name[5:10])
def case(request):
    module = importlib.import_module(request.param)
    return module, LabHarness(module.SOURCE)


@pytest.fixture(autouse=True)
def _as_under_the_autograder(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")  # fit() then shows no progress bar


def test_notebook_structure(case):
    module, lab = case
    lab.check_structure(module.EXERCISES, module.POINTS)


def test_model_solutions_pass_every_test_cell(case, capsys):
    case[1].run_all()
    assert capsys.readouterr().out == ""  # test cells print nothing (no expected values leak)


def test_visible_part_of_each_test_cell_runs_on_its_own(case):
    case[1].run_visible()


def test_reference_implementations_pass_the_lab_tests(case):
    module, lab = case
    reference = importlib.import_module(f"genlab.{TOPICS[module.__name__[8:10]]}")
    replace = {name: getattr(reference, name) for name in module.EXERCISES}
    for test_id in lab.tests:
        lab.run(test_id, **replace)
