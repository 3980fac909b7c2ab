"""The checks every lab's graded cells get, in one place, for every lab in the registry.

For each lab of ``genlab.labs``: the notebook has the registry's cells and points; the model
solutions pass every test cell and print nothing; the visible part of each test cell runs without
the hidden part; and the library's reference implementations (``genlab.<topic>``) pass the lab's
tests. The lab-specific checks (correct alternatives, stubs, cheats, named mistakes) live in
``tests/test_lab<NN>_mistakes.py``.
"""
import importlib
from pathlib import Path

import pytest

from genlab import labs
from genlab.testing import LabHarness

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings(r"ignore:std\(\).*degrees of freedom")


@pytest.mark.parametrize("lab", labs.LABS.values(), ids=lambda lab: lab.number)
def test_every_lab_has_its_source_topic_and_tests(lab):
    assert lab.source(ROOT).is_file(), f"{lab.id}: no notebooks/{lab.id}.py"
    assert (ROOT / "tests" / f"test_lab{lab.number}_mistakes.py").is_file(), \
        f"{lab.id}: no tests/test_lab{lab.number}_mistakes.py (typical mistakes per exercise)"
    reference = importlib.import_module(f"genlab.{lab.topic}")
    missing = [name for name in lab.exercise_names if not hasattr(reference, name)]
    assert not missing, f"genlab.{lab.topic} has no reference for {missing}"


def test_registry_matches_the_repository():
    assert labs.registry_problems(ROOT) == []


@pytest.fixture(scope="module", params=list(labs.LABS.values()), ids=lambda lab: lab.number)
def case(request):
    return request.param, LabHarness(request.param.source(ROOT))


@pytest.fixture(autouse=True)
def _as_under_the_autograder(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")  # fit() then shows no progress bar


def test_notebook_structure(case):
    lab, harness = case
    harness.check_structure(lab.exercise_names, lab.points)


def test_model_solutions_pass_every_test_cell(case, capsys):
    case[1].run_all()
    assert capsys.readouterr().out == ""  # test cells print nothing (no expected values leak)


def test_visible_part_of_each_test_cell_runs_on_its_own(case):
    case[1].run_visible()


def test_reference_implementations_pass_the_lab_tests(case):
    lab, harness = case
    reference = importlib.import_module(f"genlab.{lab.topic}")
    replace = {name: getattr(reference, name) for name in lab.exercise_names}
    for test_id in harness.tests:
        harness.run(test_id, **replace)


# A mistake in one exercise costs that exercise's points only: the test of an exercise that
# calls another one runs with the reference of the other (genlab.testing.using_references).
COUNTED_ONCE = [
    ("02_autoencoder_bottleneck", "test_train_autoencoder", "reconstruction_loss",
     lambda ref: lambda x_hat, x: ref(x_hat, x) / 784),
    ("04_vae", "test_elbo_loss", "kl_to_standard_normal",
     lambda ref: lambda mu, logvar: ref(mu, 2 * logvar)),
    ("08_wgan", "test_wgan_train_step", "critic_loss",
     lambda ref: lambda real, fake: -ref(real, fake)),
    ("07_dcgan", "test_gan_train_step", "discriminator_loss",
     lambda ref: lambda real, fake: ref(real, fake) / 2),
]


@pytest.mark.parametrize("lab_id, test_id, name, mistake", COUNTED_ONCE,
                         ids=[c[0][:2] for c in COUNTED_ONCE])
def test_a_mistake_is_not_counted_again_by_the_test_of_another_exercise(lab_id, test_id, name,
                                                                         mistake):
    lab = labs.get(lab_id)
    harness = LabHarness(lab.source(ROOT))
    wrong = mistake(getattr(importlib.import_module(f"genlab.{lab.topic}"), name))
    harness.fails_with(f"test_{name}", "", **{name: wrong})   # its own test catches it
    harness.run(test_id, **{name: wrong})                     # the other test does not


def test_a_failed_check_shows_as_its_message_not_a_traceback():
    from genlab.testing import CheckFailed
    err = CheckFailed("f(x): wrong shape\n  Hint: sum over pixels")
    assert err._render_traceback_() == ["CheckFailed: f(x): wrong shape", "  Hint: sum over pixels"]
