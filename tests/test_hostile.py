"""A hostile class, graded in one batch: every attacker gets no more than it deserves, no other
student's score or file changes, the course is untouched and the batch completes.

Each submission is lab 01 (10 points) with an attack added; the controls are an honest and a
blank student. ``DESERVED`` is what each one should get. Every test cell of lab 01 is judged
(genlab.course.judge): it runs in the grader's process and calls into the sandboxed kernel.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import nbformat
import pytest
from traitlets.config import Config

from genlab.course import grade, sandbox
from genlab.course.examples import fill_in
from genlab.course.paths import Course, fingerprint

ROOT = Path(__file__).resolve().parents[1]
LAB = "01_transposed_convolution"
SECRET = "grader-secret-5f2c9"
MARKER = "genlab-hostile-marker"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sandbox.available(), reason="bubblewrap cannot run here")]

DESERVED = {
    "honest": 10, "blank": 0,
    "shadow_files": 0,        # a genlab/ package and ipykernel_launcher.py beside a blank notebook
    "vandal": 10,             # correct, then tries to write the course, gradebook, others' work
    "snoop": 10,              # correct, then prints hidden tests, others' work, the grader's secrets
    "daemon": 10,             # correct, leaves a process behind to tamper with later students
    "output_flood": 10,       # correct, then prints 100 MB
    "disk_filler": 10,        # correct, then writes 2 GB
    "fork_bomb": 10,          # correct, then starts hundreds of processes
    "split_memory": 10,       # correct, then spreads 7.5 GB over three processes (limit 6 GB)
    "warns": 10,              # correct, but its functions log to stderr
    "partial_credit": 0,      # blank, and a hook that shows 10 as each cell's result
    "skip_tests": 0,          # blank, with the test cells tagged "skip-execution"
    "answer_key": 7,          # conv2d_matrix (3 points) imported from genlab.tconv
    "input_transformer": 0,   # blank, and an IPython transformer that empties the test cells
    "history_snoop": 10,      # correct, then prints the hidden tests from the kernel's history
    "rebind_checks": 0,       # blank, with genlab's checks, assert_close and isclose made no-ops
    "stack_walker": 0,        # returns the expected value it finds in the test's frames
    "lying_tensor": 0,        # returns a tensor subclass whose __eq__ and allclose say yes
    "hidden_answer_key": 7,   # conv2d_matrix from genlab.tconv, imported past the static check
}


def _cell(code: str):
    return nbformat.v4.new_code_cell(textwrap.dedent(code))


def _attacks(release, source, root: Path) -> dict[str, nbformat.NotebookNode]:
    honest = lambda: fill_in(release, source)  # noqa: E731
    blank = lambda: nbformat.from_dict(json.loads(json.dumps(release)))  # noqa: E731
    course_files = [root / "grading" / "gradebook.db", root / "solutions" / LAB / f"{LAB}.ipynb",
                    root / "grading" / "submitted" / "honest" / LAB / f"{LAB}.ipynb",
                    root / "grading" / "autograded" / "honest" / LAB / f"{LAB}.ipynb",
                    root / "grading" / "nbgrader_config.py",
                    ROOT / "src" / "genlab" / "testing.py"]
    subs = {"honest": honest(), "blank": blank(), "shadow_files": blank()}

    nb = honest()
    nb.cells.append(_cell(f"""
        import os, signal
        for path in {[str(p) for p in course_files]!r}:
            try:
                with open(path, "a") as f:
                    f.write("{MARKER}")
                print("WROTE", path)
            except OSError as err:
                print("refused", path, err.strerror)
        for pid in (os.getppid(), 1, -1):
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
        """))
    subs["vandal"] = nb

    nb = honest()
    nb.cells.append(_cell(f"""
        import os
        for path in {[str(root / "solutions" / LAB / f"{LAB}.ipynb"), str(root / "grading"),
                      str(root / "grading" / "submitted")]!r}:
            try:
                print(os.listdir(path) if os.path.isdir(path) else open(path).read())
            except OSError as err:
                print("cannot read", path, err.strerror)
        print({{k: v for k, v in os.environ.items() if "SECRET" in k}})
        """))
    subs["snoop"] = nb

    nb = honest()
    nb.cells.append(_cell("print([cell for cell in In if 'BEGIN ' + 'HIDDEN' in cell])"))
    subs["history_snoop"] = nb

    nb = honest()
    nb.cells.append(_cell(f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # {MARKER}"],
                         start_new_session=True)
        """))
    subs["daemon"] = nb

    nb = honest()
    nb.cells.append(_cell("print('x' * 2**20 * 100)"))
    subs["output_flood"] = nb

    nb = honest()
    nb.cells.append(_cell("""
        import os
        block = b"0" * 2**20
        try:
            for name in ("/tmp/a", "/tmp/work/b", os.path.expanduser("~/c"), "/tmp/d"):
                with open(name, "wb") as f:
                    for _ in range(200):
                        f.write(block)
        except OSError as err:
            print("stopped:", err.strerror)
        """))
    subs["disk_filler"] = nb

    nb = honest()
    nb.cells.append(_cell("""
        import subprocess, sys
        procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
                 for _ in range(300)]
        """))
    subs["fork_bomb"] = nb

    nb = honest()
    nb.cells.append(_cell("""
        import subprocess, sys, time
        code = "b = bytearray(5 * 2**29); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(60)"
        procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(3)]
        time.sleep(30)
        """))
    subs["split_memory"] = nb

    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in honest().cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    subs["warns"] = fill_in(release, source, {  # logs to stderr, as a logger or warning would
        name: "import sys\n" + code.replace("):\n", "):\n    print('working...', file=sys.stderr)\n", 1)
        for name, code in answers.items()})

    nb = blank()
    nb.cells.insert(1, _cell("""
        get_ipython().events.register("pre_run_cell", lambda info: get_ipython().displayhook(10))
        """))
    subs["partial_credit"] = nb

    nb = blank()
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.metadata["tags"] = ["skip-execution"]
    subs["skip_tests"] = nb

    subs["answer_key"] = fill_in(release, source, {"conv2d_matrix":
                                                   "from genlab.tconv import conv2d_matrix"})
    subs["hidden_answer_key"] = fill_in(release, source, {"conv2d_matrix": textwrap.dedent("""
        import importlib, marshal, pathlib
        _module = importlib.import_module("genlab." + "tc" + "onv")
        if not hasattr(_module, "conv2d_matrix"):  # the source is hidden: try the bytecode
            for _pyc in pathlib.Path(_module.__file__).parent.glob("__pycache__/*.pyc"):
                if "tc" + "onv" in _pyc.name and _pyc.stat().st_size > 16:
                    exec(marshal.loads(_pyc.read_bytes()[16:]), vars(_module))
        conv2d_matrix = _module.conv2d_matrix
        """)})

    nb = blank()
    nb.cells.insert(1, _cell("""
        def _empty(lines):
            return ["pass\\n"] if any("check" in line for line in lines) else lines
        get_ipython().input_transformers_post.append(_empty)
        """))
    subs["input_transformer"] = nb

    nb = blank()
    nb.cells.insert(1, _cell("""
        import math, torch, genlab.testing as t
        for name in dir(t):
            if name.startswith(("check", "attempt", "forbid")):
                setattr(t, name, lambda *a, **k: None)
        torch.testing.assert_close = torch.allclose = lambda *a, **k: True
        math.isclose = lambda *a, **k: True
        """))
    subs["rebind_checks"] = nb

    walker = """
        def {name}(*args, **kwargs):
            import sys
            frame = sys._getframe(1)
            while frame is not None:
                for key in ("expected", "right", "_shape", "reference"):
                    if key in frame.f_locals:
                        return frame.f_locals[key]
                frame = frame.f_back
            return args[0]
        """
    subs["stack_walker"] = fill_in(release, source, {
        name: textwrap.dedent(walker.format(name=name)) for name in answers})

    liar = """
        import torch
        class _Yes(torch.Tensor):
            def __eq__(self, other): return True
            def allclose(self, *a, **k): return True
            def __float__(self): return 0.0
        def {name}(*args, **kwargs):
            return torch.zeros(1, 1, 4, 4).as_subclass(_Yes)
        """
    subs["lying_tensor"] = fill_in(release, source, {
        name: textwrap.dedent(liar.format(name=name)) for name in answers})
    return subs


@pytest.fixture(scope="module")
def batch(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("hostile")
    for folder in ("solutions", "labs", "notebooks"):
        shutil.copytree(ROOT / folder, root / folder)
    (root / "grading").mkdir()
    shutil.copy(ROOT / "grading" / "nbgrader_config.py", root / "grading")
    source = nbformat.read(str(root / "solutions" / LAB / f"{LAB}.ipynb"), as_version=4)
    release = nbformat.read(str(root / "labs" / LAB / f"{LAB}.ipynb"), as_version=4)
    submitted = root / "grading" / "submitted"
    for student, nb in _attacks(release, source, root).items():
        folder = submitted / student / LAB
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / f"{LAB}.ipynb"))
    shadow = submitted / "shadow_files" / LAB
    (shadow / "genlab").mkdir()
    (shadow / "genlab" / "__init__.py").write_text("")
    (shadow / "genlab" / "testing.py").write_text(
        "class CheckFailed(AssertionError): pass\n"
        "def __getattr__(name):\n    return lambda *a, **k: None\n")
    (shadow / "ipykernel_launcher.py").write_text(
        f"open('/tmp/{MARKER}-launcher', 'w')\n"
        "from ipykernel import kernelapp\nkernelapp.launch_new_instance()\n")

    monkeypatch_module.setenv("GENLAB_GRADER_SECRET", SECRET)  # must not reach the kernel
    monkeypatch_module.setenv("SECRET_TOKEN", SECRET)
    monkeypatch_module.setenv("GENLAB_GRADER_MEMORY_GB", "6")
    monkeypatch_module.setenv("GENLAB_GRADER_PROCESSES", "64")
    overrides = Config()
    overrides.Execute.cell_timeouts = {"test_*": 20}
    overrides.Execute.default_timeout = 60
    course = Course(root, submitted, root / "grading", overrides)
    watched = {name: fingerprint(root / name) for name in ("solutions", "labs", "notebooks")}
    library = fingerprint(ROOT / "src" / "genlab")
    grades = {g.student: g for g in grade.grade(course, [LAB], log=lambda *a: None)}
    return {"root": root, "course": course, "grades": grades, "watched": watched,
            "library": library}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _printed(batch, student) -> str:
    """What the student's notebook printed (stream outputs), not its source."""
    nb = nbformat.read(str(batch["course"].autograded(student, LAB)), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def _feedback_text(batch, student) -> str:
    return (batch["course"].state / "feedback" / student / LAB / f"{LAB}.html").read_text()


@pytest.mark.parametrize("student", list(DESERVED))
def test_attacker_gets_no_more_than_deserved(batch, student):
    g = batch["grades"][student]
    assert g.score == DESERVED[student], (student, g.score, g.reasons)


def test_hidden_tests_never_reach_the_kernel(batch):
    """Judged test cells run in the grader: the kernel's history has no test code at all."""
    printed = _printed(batch, "history_snoop")
    assert "[]" in printed and "BEGIN HIDDEN" not in printed, printed


def test_the_whole_class_was_graded_and_nothing_else_changed(batch):
    assert set(batch["grades"]) == set(DESERVED)
    assert not [g for g in batch["grades"].values() if any("TAMPERING" in r for r in g.reasons)]
    for name, before in batch["watched"].items():
        assert fingerprint(batch["root"] / name) == before, f"{name}/ changed"
    assert fingerprint(ROOT / "src" / "genlab") == batch["library"], "the library changed"
    assert MARKER not in (batch["root"] / "grading" / "nbgrader_config.py").read_text()


def test_vandal_could_write_nothing(batch):
    text = _printed(batch, "vandal")
    assert "WROTE" not in text and text.count("refused") == 6, text


def test_snoop_saw_no_hidden_tests_no_other_work_and_no_secrets(batch):
    for text in (_printed(batch, "snoop"), _feedback_text(batch, "snoop")):
        assert SECRET not in text
        assert "BEGIN HIDDEN" not in text
        assert "honest" not in text  # the other students' folders
    assert _printed(batch, "snoop").count("cannot read") == 3, _printed(batch, "snoop")


def test_no_process_outlives_its_notebook(batch):
    found = subprocess.run(["pgrep", "-f", MARKER], capture_output=True, text=True).stdout
    assert found.strip() == "", found
    assert not list(Path("/tmp").glob(f"{MARKER}*"))


def test_output_flood_is_cut(batch):
    path = batch["course"].autograded("output_flood", LAB)
    assert path.stat().st_size < 40 * 2**20
    assert "output over" in _printed(batch, "output_flood")


def test_resource_abuse_is_stopped_and_named(batch):
    assert any("kernel died" in r for r in batch["grades"]["split_memory"].reasons)
    assert any("kernel died" in r for r in batch["grades"]["fork_bomb"].reasons)
    assert "stopped: No space left on device" in _printed(batch, "disk_filler")


def test_answer_key_use_is_explained_in_the_feedback(batch):
    text = _feedback_text(batch, "answer_key")
    assert "AnswerKeyUsed" in text and "genlab.tconv" in text


def test_a_rerun_reuses_results_and_force_regrades(batch, tmp_path):
    course = batch["course"]
    lines = course.results.read_text().splitlines()
    assert len(lines) == len(DESERVED)
    # a crash mid-write leaves a torn last line: it is ignored
    with open(course.results, "a") as f:
        f.write('{"student": "torn')
    log = []
    again = grade.grade(course, [LAB], log=log.append)
    assert {g.student: g.score for g in again} == \
        {s: g.score for s, g in batch["grades"].items()}
    assert all("already graded" in line for line in log), log
