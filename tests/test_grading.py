"""The grading pipeline end to end on lab 01: release -> autograde -> feedback -> CSV.

One batch grades the bundled examples and one submission per nbgrader pitfall (the nbgrader 0.9
issues named in genlab.course.plugins) in a private copy of the course; each test reads its row.
"""
from __future__ import annotations

import copy
import csv
import html
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from traitlets.config import Config

from genlab import labs
from genlab.course import build, check, grade, plugins
from genlab.course.examples import fill_in, solution_of
from genlab.course.paths import Course, fingerprint

ROOT = Path(__file__).resolve().parents[1]
LAB = "01_transposed_convolution"
REGISTRY = labs.get(LAB)
pytestmark = pytest.mark.slow

WRONG_MATRIX = '''

_right_matrix = conv2d_matrix


def conv2d_matrix(kernel, in_size, stride=1, padding=0):
    return _right_matrix(kernel, in_size, stride, padding).T   # the transpose: a typical mistake'''


def _test_cell_index(nb, exercise):
    return next(i for i, c in enumerate(nb.cells)
                if c.metadata.get("nbgrader", {}).get("grade_id") == f"test_{exercise}")


def _pitfall_submissions(release, source) -> dict[str, nbformat.NotebookNode]:
    fill = fill_in
    subs = {}
    subs["correct"] = fill(release, source)
    subs["blank"] = copy.deepcopy(release)
    wrong_matrix = solution_of(source, "conv2d_matrix") + WRONG_MATRIX
    subs["one_wrong"] = fill(release, source, {"conv2d_matrix": wrong_matrix})
    subs["answer_key"] = fill(release, source, {"conv2d_matrix":
                                                "from genlab.tconv import conv2d_matrix"})

    nb = fill(release, source)  # a graded solution cell duplicated (nbgrader #1083)
    i = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    dup = copy.deepcopy(nb.cells[i])
    dup.id = "copy-of-solution"
    nb.cells.insert(i + 1, dup)
    subs["duplicate_cell"] = nb

    nb = fill(release, source, {"conv2d_matrix": wrong_matrix})  # deleting the failing test
    del nb.cells[_test_cell_index(nb, "conv2d_matrix")]
    subs["deleted_test"] = nb

    nb = fill(release, source)  # deleting the locked set-up cell the tests rely on
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "setup"]
    subs["deleted_setup"] = nb

    nb = fill(release, source, {"conv2d_matrix": wrong_matrix})  # editing the failing test
    nb.cells[_test_cell_index(nb, "conv2d_matrix")].source = "pass  # all good"
    subs["tampered_test"] = nb

    nb = fill(release, source, {"conv2d_matrix":  # loops forever when the test calls it
                                "def conv2d_matrix(kernel, in_size, stride=1, padding=0):\n"
                                "    while True:\n        pass"})
    subs["infinite_loop"] = nb

    nb = fill(release, source)  # an exception at top level in an extra cell
    nb.cells.insert(_test_cell_index(nb, "conv2d_matrix"),
                    nbformat.v4.new_code_cell("raise RuntimeError('oops')"))
    subs["exception"] = nb

    nb = fill(release, source)  # the kernel dies before the last exercise is tested
    nb.cells.insert(_test_cell_index(nb, "conv2d_matrix"),
                    nbformat.v4.new_code_cell("import os\nos._exit(1)"))
    subs["kernel_dies"] = nb

    nb = fill(release, source)  # a demo cell (training, plots) is not run when grading
    demo = nbformat.v4.new_code_cell("import os\nos._exit(1)  # would kill the kernel if run")
    demo.metadata["tags"] = ["demo"]
    nb.cells.insert(_test_cell_index(nb, "conv2d_matrix"), demo)
    subs["demo_cell"] = nb

    nb = fill(release, source)  # asks for far more memory than the grader allows
    nb.cells.insert(_test_cell_index(nb, "conv2d_matrix"), nbformat.v4.new_code_cell(
        "import torch\nhog = torch.ones(2**36)"))
    subs["memory_hog"] = nb
    return subs


@pytest.fixture(scope="session")
def course(tmp_path_factory):
    """A private course: lab 01, graded once with short time limits."""
    root = tmp_path_factory.mktemp("course")
    for folder in ("solutions", "labs", "notebooks"):
        shutil.copytree(ROOT / folder, root / folder,
                        ignore=shutil.ignore_patterns("*.ipynb_checkpoints"))
    (root / "grading").mkdir()
    shutil.copy(ROOT / "grading" / "nbgrader_config.py", root / "grading")
    source = nbformat.read(str(root / "solutions" / LAB / f"{LAB}.ipynb"), as_version=4)
    release = nbformat.read(str(root / "labs" / LAB / f"{LAB}.ipynb"), as_version=4)

    submitted = root / "grading" / "submitted"
    shutil.copytree(ROOT / "grading" / "examples" / "submitted", submitted)
    for student, nb in _pitfall_submissions(release, source).items():
        dest = submitted / student / LAB / f"{LAB}.ipynb"
        dest.parent.mkdir(parents=True)
        nbformat.write(nb, str(dest))
    garbage = submitted / "not_json" / LAB / f"{LAB}.ipynb"
    garbage.parent.mkdir(parents=True)
    garbage.write_text('{"cells": [ this is not a notebook')

    overrides = Config()
    overrides.Execute.cell_timeouts = {"test_*": 10}
    overrides.Execute.default_timeout = 30
    before = fingerprint(submitted)
    course = Course(root, submitted, root / "grading", overrides)
    grades = {g.student: g for g in grade.grade(course, [LAB], log=lambda *a: None)}
    return {"root": root, "course": course, "grades": grades, "source": source,
            "points": {e.name: e.points for e in REGISTRY.exercises}, "before": before}


def _score(course, student):
    return course["grades"][student].score


def test_correct_submission_gets_full_points(course):
    total = sum(course["points"].values())
    assert course["grades"]["correct"].max_score == total
    assert _score(course, "correct") == total


def test_blank_release_gets_zero(course):
    assert _score(course, "blank") == 0


def test_one_wrong_exercise_loses_exactly_its_points(course):
    total = sum(course["points"].values())
    assert _score(course, "one_wrong") == total - course["points"]["conv2d_matrix"]


def test_using_the_reference_answer_earns_nothing_for_that_exercise(course):
    total = sum(course["points"].values())
    assert _score(course, "answer_key") == total - course["points"]["conv2d_matrix"]


def test_deleted_locked_setup_cell_is_restored(course):
    assert _score(course, "deleted_setup") == sum(course["points"].values())


def test_duplicated_graded_cell_neither_aborts_nor_costs(course):
    assert _score(course, "duplicate_cell") == sum(course["points"].values())


@pytest.mark.parametrize("student", ["deleted_test", "tampered_test"])
def test_deleted_or_tampered_test_cell_is_restored(course, student):
    # the wrong conv2d_matrix would get its points if the test were not put back
    total = sum(course["points"].values())
    assert _score(course, student) == total - course["points"]["conv2d_matrix"]


@pytest.mark.parametrize("student, note, lost", [
    ("infinite_loop", "time limit hit in test_conv2d_matrix", ["conv2d_matrix"]),
    ("kernel_dies", "kernel died", ["conv2d_matrix"]),   # the cells after it never ran
    ("memory_hog", "ran out of memory", []),             # the kernel survives its MemoryError
])
def test_runaway_submission_keeps_the_points_it_earned(course, student, note, lost):
    points = course["points"]
    assert _score(course, student) == sum(points.values()) - sum(points[e] for e in lost)
    assert any(note in n for n in course["grades"][student].reasons), course["grades"][student].reasons


def test_demo_cells_are_not_run_when_grading(course):
    assert _score(course, "demo_cell") == sum(course["points"].values())


def test_exception_in_a_cell_costs_only_what_depends_on_it(course):
    assert _score(course, "exception") == sum(course["points"].values())


def test_unreadable_notebook_is_reported_and_others_still_graded(course):
    g = course["grades"]["not_json"]
    assert g.score == 0 and not g.graded
    assert any("not a valid notebook" in n for n in g.reasons), g.reasons
    assert _score(course, "one_wrong") > 0  # graded after it
    assert set(course["grades"]) == {p.name for p in course["course"].submitted.iterdir()}


def test_bundled_examples_score_as_described(course):
    manifest = json.loads((ROOT / "grading" / "examples" / "examples.json").read_text())[LAB]
    cell_points = REGISTRY.points
    for student, info in manifest.items():
        lost = cell_points if info["loses"] == "all" else info["loses"]
        expected = sum(cell_points.values()) - sum(cell_points[c] for c in lost)
        assert _score(course, student) == expected, (student, info["shows"])


def test_submitted_files_are_never_modified(course):
    assert fingerprint(course["course"].submitted) == course["before"]


def test_grades_csv_has_every_submission(course):
    rows = list(csv.DictReader(open(course["root"] / "grading" / "grades.csv")))
    by_student = {r["student"]: r for r in rows}
    assert set(by_student) == set(course["grades"])
    assert float(by_student["correct"]["score"]) == sum(course["points"].values())
    assert "not a valid notebook" in by_student["not_json"]["notes"]


def test_feedback_hides_hidden_tests(course):
    """No line of hidden test code, and no traceback into a test cell, reaches the student."""
    hidden = []
    for cell in course["source"].cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            inside = False
            for line in cell.source.splitlines():
                if "BEGIN HIDDEN TESTS" in line:
                    inside = True
                elif "END HIDDEN TESTS" in line:
                    inside = False
                elif inside and len(line.strip()) > 25:
                    hidden.append(line.strip())
    released = (course["root"] / "labs" / LAB / f"{LAB}.ipynb").read_text()
    hidden = [line for line in hidden if json.dumps(line)[1:-1] not in released]  # hidden only
    assert hidden, "lab 01 should have hidden tests"
    for student in ("one_wrong", "blank", "correct"):
        path = (course["root"] / "grading" / "feedback" / student / LAB / f"{LAB}.html")
        text = html.unescape(path.read_text())
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"hidden test code in {student}'s feedback: {leaked[:3]}"
    wrong = html.unescape((course["root"] / "grading" / "feedback" / "one_wrong" / LAB /
                           f"{LAB}.html").read_text())
    assert "transposed" in wrong.lower() and "CheckFailed" in wrong  # the hint is still there


def test_feedback_shows_test_errors_as_one_line(course):
    """HideTests cuts the traceback of every test cell (it would quote hidden asserts)."""
    path = course["root"] / "grading" / "autograded" / "one_wrong" / LAB / f"{LAB}.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    nb, _ = plugins.HideTests().preprocess(nb, {})
    errors = [o for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors, "the wrong conv2d_matrix should fail its test"
    for output in errors:
        assert len(output["traceback"]) == 1
        assert "---->" not in output["traceback"][0] and "File " not in output["traceback"][0]
        assert output["traceback"][0].startswith("CheckFailed: ")
    assert all("BEGIN HIDDEN" not in c.source for c in nb.cells)


def test_summary_table_lists_every_student(course):
    table = grade.format_grade_table(list(course["grades"].values()))
    for student in course["grades"]:
        assert student in table
    assert "kernel died" in table


# ---- the student's self-check ------------------------------------------------------------

def _genlab(*args, cwd):
    return subprocess.run([sys.executable, "-m", "genlab", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_check_on_untouched_release_reports_every_exercise_not_done(course, tmp_path):
    nb_path = course["root"] / "labs" / LAB / f"{LAB}.ipynb"
    before = nb_path.read_bytes()
    result = _genlab("check", str(nb_path), cwd=course["root"])
    assert result.returncode == 1, result.stdout + result.stderr
    for exercise in course["points"]:
        line = next(ln for ln in result.stdout.splitlines() if ln.strip().startswith(exercise))
        assert "not yet done" in line, result.stdout
    assert "0 of 3 exercises pass" in result.stdout
    assert nb_path.read_bytes() == before  # the student's file is only read


def test_check_passes_a_correct_notebook_and_names_a_mistake(course, tmp_path):
    good = tmp_path / "good" / f"{LAB}.ipynb"
    bad = tmp_path / "bad" / f"{LAB}.ipynb"
    for path, student in ((good, "correct"), (bad, "one_wrong")):
        path.parent.mkdir()
        shutil.copy(course["course"].submitted / student / LAB / f"{LAB}.ipynb", path)
    ok = _genlab("check", str(good), cwd=course["root"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "3 of 3 exercises pass" in ok.stdout
    wrong = _genlab("check", str(bad), cwd=course["root"])
    assert wrong.returncode == 1
    assert "transposed matrix" in wrong.stdout.lower() or "transpose" in wrong.stdout.lower(), \
        wrong.stdout


def test_check_rejects_a_file_that_is_not_a_notebook(tmp_path):
    path = tmp_path / "x.ipynb"
    path.write_text("not json")
    result = _genlab("check", str(path), cwd=ROOT)
    assert result.returncode == 2 and "not a readable notebook" in result.stderr


# ---- the maintainers' gate ----------------------------------------------------------------

@pytest.mark.parametrize("lab_id", list(labs.LABS))
def test_validate_passes_on_the_repository(lab_id):
    """Source builds the solution, the solution earns full points and the stub zero through the
    real nbgrader pipeline, and labs/ holds exactly what a fresh release gives."""
    problems = build.validate(ROOT, [lab_id], log=lambda *a: None)
    assert problems == []


def test_validate_catches_labs_out_of_sync(course):
    root = course["root"]
    path = root / "labs" / LAB / f"{LAB}.ipynb"
    original = path.read_text()
    try:
        path.write_text(original.replace("Transposed", "Transposd", 1))
        problems = [p for p in build.validate(root, [LAB], log=lambda *a: None, scores=False)
                    if "differs from a fresh release" in p]
        assert problems
    finally:
        path.write_text(original)


def test_exercise_names_from_test_ids():
    names = ["conv2d_matrix", "conv_transpose2d", "conv_transpose_output_size"]
    assert check.exercise_of("test_conv_transpose2d_errors", names) == "conv_transpose2d"
    assert check.exercise_of("test_conv_transpose_output_size", names) == \
        "conv_transpose_output_size"
    assert check.exercise_of("test_conv2d_matrix", names) == "conv2d_matrix"


def test_make_grade_grades_every_lab_of_the_bundled_class(tmp_path):
    """`make grade`'s round on the bundled class (four students x every lab, two workers): each
    student gets what examples.json says, the table and CSV list them all."""
    course = Course(ROOT, ROOT / "grading" / "examples" / "submitted", tmp_path / "demo")
    grades = grade.grade(course, None, log=lambda *a: None, workers=2)
    manifest = json.loads((ROOT / "grading" / "examples" / "examples.json").read_text())
    assert set(manifest) == set(labs.LABS)
    by = {(g.student, g.lab): g for g in grades}
    for lab, students in manifest.items():
        points = labs.get(lab).points
        for student, info in students.items():
            lost = points if info["loses"] == "all" else info["loses"]
            expected = sum(points.values()) - sum(points[c] for c in lost)
            assert by[(student, lab)].score == expected, (lab, student, info["shows"])
    table = grade.format_grade_table(grades)
    assert all(f"lab {lab.number}" in table for lab in labs.LABS.values())
    # A complete, correct submission runs without a single cell error when graded: no ordinary
    # cell may use what a skipped demo cell defines, or a reference module the grader hides.
    for lab in labs.LABS:
        graded = nbformat.read(str(course.autograded("ada", lab)), as_version=4)
        errors = [(cell.source.splitlines() or [""])[0] + f" -> {out['ename']}: {out['evalue']}"
                  for cell in graded.cells if cell.cell_type == "code"
                  for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        assert not errors, f"{lab}: cells that fail in grading mode (tag them demo): {errors}"


def test_parallel_workers_give_the_same_grades_as_one(tmp_path):
    """`genlab grade --workers 2` on the bundled examples: the same CSV as one worker."""
    csvs = []
    for workers in (1, 2):
        course = Course(ROOT, ROOT / "grading" / "examples" / "submitted", tmp_path / f"w{workers}")
        grades = grade.grade(course, [LAB], log=lambda *a: None, workers=workers)
        assert len(grades) == 4 and all(g.graded for g in grades)
        csvs.append(course.csv.read_text())
    assert csvs[0] == csvs[1]
