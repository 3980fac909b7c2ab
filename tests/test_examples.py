"""Synthetic classes (`genlab example-class`, genlab.course.examples.make_class).

The generator is deterministic for a seed, makes the requested number of students in the
requested mix, and writes notebooks that score what its manifest says: the mistakes table and
the exercises left undone are checked against each lab's test cells in plain Python, and a small
class of lab 01 is graded end to end through nbgrader.
"""
from __future__ import annotations

import copy
import importlib.util
import json
from collections import Counter
from pathlib import Path

import nbformat
import pytest

from genlab import cli, labs
from genlab.course import examples
from genlab.course.examples import (BROKEN, DEFAULT_MIX, KINDS, MANIFEST, MISTAKES, REQUIRES,
                                    check_grades, fill_in, make_class, mix_counts, parse_mix,
                                    with_mistakes)
from genlab.course.paths import Course, fingerprint

ROOT = Path(__file__).resolve().parents[1]
LAB = "01_transposed_convolution"


def _submitted(out: Path, student: str, lab: str) -> Path:
    return out / "grading" / "submitted" / student / lab / f"{lab}.ipynb"


@pytest.fixture(scope="module")
def class_of_12(tmp_path_factory):
    out = tmp_path_factory.mktemp("class") / "c"
    return out, make_class(out, 12, [LAB, "05_kl_divergence"], seed=7, root=ROOT)


# ---- the mix -----------------------------------------------------------------------------

@pytest.mark.parametrize("students", [1, 2, 4, 5, 6, 10, 23, 100])
def test_mix_counts_sum_to_the_class_and_cover_every_kind(students):
    counts = mix_counts(students)
    assert sum(counts.values()) == students
    assert set(counts) == set(DEFAULT_MIX)
    if students >= len(DEFAULT_MIX):
        assert all(n >= 1 for n in counts.values()), counts
    else:  # the heaviest kinds first
        assert [k for k, n in counts.items() if n] == list(DEFAULT_MIX)[:students]
    if students >= 100:  # in proportion to the weights
        total = sum(DEFAULT_MIX.values())
        for kind, weight in DEFAULT_MIX.items():
            assert abs(counts[kind] - students * weight / total) <= 1.5, counts


def test_mix_with_weights_and_zeros():
    assert mix_counts(7, {"honest": 1}) == {"honest": 7}
    assert mix_counts(6, parse_mix("honest=1,blank=1,mistakes=1,partial=1,broken=2")) == \
        {"honest": 1, "mistakes": 1, "partial": 1, "blank": 1, "broken": 2}
    assert mix_counts(3, parse_mix("honest=2, broken=0, blank=1")) == \
        {"honest": 2, "blank": 1, "broken": 0}
    for bad in ("honest=x", "lazy=2", "honest=0", "honest=-1,blank=2"):
        with pytest.raises(ValueError):
            parse_mix(bad)


# ---- the generated class -----------------------------------------------------------------

def test_class_has_the_requested_students_mix_and_files(class_of_12):
    out, manifest = class_of_12
    assert manifest["students"] == 12 and len(manifest["class"]) == 12
    assert Counter(s["kind"] for s in manifest["class"].values()) == \
        Counter({k: n for k, n in mix_counts(12).items() if n})
    assert json.loads((out / MANIFEST).read_text()) == manifest
    students = sorted(p.name for p in (out / "grading" / "submitted").iterdir())
    assert students == sorted(manifest["class"])
    for student in students:
        for lab in (LAB, "05_kl_divergence"):
            assert _submitted(out, student, lab).is_file()
    # a course of its own: `cd out && genlab grade` finds it and grades only these labs
    assert (out / "grading" / "nbgrader_config.py").is_file()
    assert Course.default(out).submissions([LAB, "05_kl_divergence"])[LAB] == students
    assert sorted(p.name for p in (out / "solutions").iterdir()) == \
        [LAB, "05_kl_divergence"]


def test_same_seed_same_bytes_other_seed_other_class(class_of_12, tmp_path):
    out, manifest = class_of_12
    again = make_class(tmp_path / "again", 12, [LAB, "05_kl_divergence"], seed=7, root=ROOT)
    assert again == manifest
    assert fingerprint(tmp_path / "again") == fingerprint(out)
    other = make_class(tmp_path / "other", 12, [LAB, "05_kl_divergence"], seed=8, root=ROOT)
    assert [s["kind"] for s in other["class"].values()] != \
        [s["kind"] for s in manifest["class"].values()]


def test_a_students_lab_does_not_depend_on_the_other_labs(class_of_12, tmp_path):
    out, manifest = class_of_12
    alone = make_class(tmp_path / "alone", 12, ["05_kl_divergence"], seed=7, root=ROOT)
    for student, entry in alone["class"].items():
        assert entry["kind"] == manifest["class"][student]["kind"]
        assert _submitted(tmp_path / "alone", student, "05_kl_divergence").read_bytes() == \
            _submitted(out, student, "05_kl_divergence").read_bytes()


def test_expected_scores_follow_the_kind(class_of_12):
    _, manifest = class_of_12
    for student, entry in manifest["class"].items():
        for lab, info in entry["labs"].items():
            top = labs.get(lab).max_score
            assert info["max_score"] == top
            if entry["kind"] == "honest":
                assert info["expected"] == top and info["loses"] == []
            elif entry["kind"] == "blank":
                assert info["expected"] == 0
            elif entry["kind"] in ("mistakes", "partial"):
                assert 0 < info["expected"] < top, (student, lab, info)
            assert info["graded"] == ("not JSON" not in info["shows"])


def test_notebooks_are_what_the_manifest_says(class_of_12):
    out, manifest = class_of_12
    release = nbformat.read(str(labs.get(LAB).release(ROOT)), as_version=4)
    source = nbformat.read(str(labs.get(LAB).solution(ROOT)), as_version=4)
    for student, entry in manifest["class"].items():
        path, info = _submitted(out, student, LAB), entry["labs"][LAB]
        if not info["graded"]:
            with pytest.raises(Exception):
                nbformat.read(str(path), as_version=4)
            continue
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        if entry["kind"] == "honest":
            assert nb == fill_in(release, source)
        elif entry["kind"] == "blank":
            assert nb == release
        elif "os._exit" in info["shows"]:
            assert any("os._exit(1)" in c.source for c in nb.cells
                       if c.metadata.get("nbgrader", {}).get("solution"))


def test_broken_students_take_turns_through_every_breakage(tmp_path):
    manifest = make_class(tmp_path / "c", 4, [LAB], mix={"broken": 1}, root=ROOT)
    shows = [s["labs"][LAB]["shows"] for s in manifest["class"].values()]
    assert len(BROKEN) == 4
    for phrase in ("os._exit", "not JSON", "and its test cell", "duplicated graded cell"):
        assert sum(phrase in s for s in shows) == 1, shows


def test_check_grades_names_each_difference(class_of_12):
    _, manifest = class_of_12
    rows = [{"student": s, "lab": lab, "score": str(info["expected"])}
            for s, entry in manifest["class"].items() for lab, info in entry["labs"].items()]
    assert check_grades(manifest, rows) == []
    rows[0]["score"] = "-1"
    missing = rows.pop()
    problems = check_grades(manifest, rows)
    assert len(problems) == 2
    assert any("expected" in p and rows[0]["student"] in p for p in problems)
    assert any("not graded" in p and missing["student"] in p for p in problems)


def test_cli_writes_a_class_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "cls"
    assert cli.main(["example-class", LAB, "--students", "3", "--out", str(out)]) == 0
    assert "cd " in capsys.readouterr().out
    assert len(json.loads((out / MANIFEST).read_text())["class"]) == 3
    assert cli.main(["example-class", LAB, "--students", "2", "--out", str(out)]) == 2
    assert cli.main(["example-class", LAB, "--students", "2", "--out", str(out), "--force"]) == 0
    assert len(list((out / "grading" / "submitted").iterdir())) == 2
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("not a class")
    assert cli.main(["example-class", "--out", str(elsewhere), "--force"]) == 2
    assert (elsewhere / "notes.txt").is_file()  # never deletes a folder it did not make
    assert cli.main(["example-class", "--out", str(tmp_path / "x"), "--mix", "lazy=1"]) == 2
    assert cli.main(["example-class", "99_nope", "--out", str(tmp_path / "y")]) == 2
    assert cli.main(["example-class", "--verify", "--out", str(out)]) == 2  # not graded yet
    capsys.readouterr()


def test_bundled_examples_regenerate_byte_for_byte(tmp_path):
    """grading/examples/make_examples.py takes its mistakes and breakage from the library and
    regenerates the bundled class as it is. Labs released since the class was made (its blank
    student is no longer the release) are left out: they wait for make_examples.py to be run."""
    current = [lab.id for lab in labs.LABS.values()
               if nbformat.read(str(ROOT / "grading" / "examples" / "submitted" / "ben" / lab.id
                                    / f"{lab.id}.ipynb"), as_version=4)
               == nbformat.read(str(lab.release(ROOT)), as_version=4)]
    if not current:
        pytest.skip("every lab was released after the bundled examples were made "
                    "(run grading/examples/make_examples.py)")
    spec = importlib.util.spec_from_file_location(
        "make_examples", ROOT / "grading" / "examples" / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.HERE = tmp_path
    module.main()
    made, bundled = (fingerprint(d) for d in (tmp_path / "submitted",
                                               ROOT / "grading" / "examples" / "submitted"))
    assert made.keys() == bundled.keys()
    for path in made:
        if path.split("/")[1] in current:
            assert made[path] == bundled[path], path


def test_mistakes_table_is_well_formed():
    assert set(MISTAKES) == set(labs.LABS)
    for lab_id, table in MISTAKES.items():
        lab = labs.get(lab_id)
        assert len({m.exercise for m in table}) == len(table) >= 1  # one per exercise
        for m in table:
            assert m.exercise in lab.exercise_names
            assert set(m.loses) <= set(lab.points) and m.loses
            assert lab.max_score - sum(lab.points[t] for t in m.loses) > 0
    for lab_id, needs in REQUIRES.items():
        for exercise, required in needs.items():
            assert {exercise, *required} <= set(labs.get(lab_id).exercise_names)


# ---- the mistakes and undone exercises fail exactly the tests the manifest says ------------

def _failing(harness, nb, tests) -> list[str]:
    """Which of ``tests`` fail after the solution cells of ``nb`` run on the set-up, in one
    namespace as in the notebook (a solution's functions see it as their globals)."""
    ns = {"__name__": "__lab__"}
    for code in harness.setup:
        exec(compile(code, "<setup>", "exec"), ns)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            try:
                exec(compile(cell.source, "<solution>", "exec"), ns)
            except Exception:  # noqa: BLE001  (a stub class body, say: the test will say so)
                pass
    failed = []
    for test_id in tests:
        try:
            harness.run(test_id, namespace=ns)
        except Exception:  # noqa: BLE001
            failed.append(test_id)
    return failed


@pytest.mark.slow
@pytest.mark.parametrize("lab_id", list(labs.LABS))
def test_mistakes_and_undone_exercises_fail_exactly_what_the_manifest_says(lab_id):
    """In plain Python, each test cell run about twice: all of the lab's mistakes at once fail
    exactly their tests; each exercise's tests pass with only it (and what REQUIRES names)
    answered, so a partly done notebook loses exactly the exercises left undone."""
    from genlab.testing import LabHarness
    lab = labs.get(lab_id)
    harness = LabHarness(lab.source(ROOT))
    release = nbformat.read(str(lab.release(ROOT)), as_version=4)
    source = nbformat.read(str(lab.solution(ROOT)), as_version=4)

    table = MISTAKES[lab_id]
    assert _failing(harness, with_mistakes(release, source, table), lab.points) == \
        [t for t in lab.points if any(t in m.loses for m in table)]
    needs = REQUIRES.get(lab_id, {})
    for exercise in lab.exercises:
        answered = {exercise.name, *needs.get(exercise.name, ())}
        only = fill_in(release, source, {e: None for e in lab.exercise_names if e not in answered})
        assert _failing(harness, only, exercise.tests) == [], exercise.name
        if needs.get(exercise.name):  # and the requirement is real
            without = fill_in(release, source, {e: None for e in lab.exercise_names
                                                if e != exercise.name})
            assert _failing(harness, without, exercise.tests) == list(exercise.tests)


# ---- end to end through nbgrader --------------------------------------------------------

@pytest.mark.slow
def test_a_generated_class_grades_as_its_manifest_says(tmp_path):
    """Six students of lab 01 (honest, blank, typical mistakes, partly done, and two broken: a
    kernel killed in a solution cell and a file that is not JSON), graded in one batch."""
    out = tmp_path / "class"
    mix = {"honest": 1, "blank": 1, "mistakes": 1, "partial": 1, "broken": 2}
    manifest = make_class(out, 6, [LAB], seed=0, mix=mix, root=ROOT)
    kinds = {s: e["kind"] for s, e in manifest["class"].items()}
    assert sorted(kinds.values()) == sorted(["honest", "blank", "mistakes", "partial",
                                             "broken", "broken"])
    from genlab.course.grade import grade
    before = fingerprint(out / "grading" / "submitted")
    grades = grade(Course.default(out), [LAB], log=lambda *a: None, workers=2)
    by = {g.student: g for g in grades}
    assert set(by) == set(kinds)  # a broken notebook stops nothing
    assert check_grades(manifest, grades) == []
    top = labs.get(LAB).max_score
    for student, kind in kinds.items():
        g, info = by[student], manifest["class"][student]["labs"][LAB]
        assert g.max_score == top
        if kind == "honest":
            assert g.score == top
        elif kind == "blank":
            assert g.score == 0
        elif kind in ("mistakes", "partial"):
            assert 0 < g.score < top
        else:  # broken: reported in the notes, whatever it kept
            assert g.reasons, (student, info["shows"])
            note = "not a valid notebook" if "not JSON" in info["shows"] else "kernel died"
            assert any(note in r for r in g.reasons), g.reasons
    assert fingerprint(out / "grading" / "submitted") == before
    assert cli.main(["example-class", "--verify", "--out", str(out)]) == 0


def test_kinds_and_breakage_names_are_stable():
    """The CLI's --mix and the manifest use these names: renaming one breaks saved classes."""
    assert KINDS == ("honest", "mistakes", "partial", "blank", "broken")
    assert BROKEN == ("kernel_dies", "not_json", "deleted_test", "everything")
    assert copy.deepcopy(DEFAULT_MIX) == {"honest": 3, "mistakes": 3, "partial": 2, "blank": 1,
                                          "broken": 1}
    assert examples.MANIFEST == "class.json"


@pytest.mark.slow
def test_bench_grading_can_use_a_mixed_class():
    """`genlab bench grading` on a generated class checks every score against the manifest."""
    from genlab.course import bench
    result = bench.run([LAB], students=2, workers=[1], log=lambda *a: None,
                       mix={"honest": 1, "blank": 1})
    assert result["mix"] == {"honest": 1, "blank": 1} and len(result["runs"]) == 1
    assert result["runs"][0]["per_minute"] > 0
    assert "kernel start" in result["serial_split"]
    assert "mixed class" in bench.format_result(result)
