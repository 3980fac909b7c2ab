"""genlab.authoring: percent-format sources -> nbgrader source notebooks, and the curriculum's
conventions on the real notebooks in notebooks/ and solutions/."""
import re
import textwrap
from pathlib import Path

import nbformat
import pytest

from genlab import authoring, labs  # module import: authoring.test_source must not be collected

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*/*.ipynb"))

SAMPLE = textwrap.dedent("""\
    # %% [markdown]
    # # Title
    #
    # Some *text*.
    # %%
    import math
    # %% readonly setup
    X = 1

    # %% solution square
    def square(x):
        ### BEGIN SOLUTION
        return x * x
        ### END SOLUTION
    # %% test test_square points=2
    assert square(2) == 4
    ### BEGIN HIDDEN TESTS
    assert square(3) == 9
    ### END HIDDEN TESTS
    # %% test test_square_more points=1.5
    assert square(0) == 0
    """)


def _write(tmp_path, text, name="lab.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def sample_nb(tmp_path):
    return authoring.build_notebook(_write(tmp_path, SAMPLE))


def _meta(cell):
    return cell.metadata.get("nbgrader")


# --------------------------------------------------------------------------------------------
# build_notebook on a small source
# --------------------------------------------------------------------------------------------

def test_cell_types_and_count(sample_nb):
    assert [c.cell_type for c in sample_nb.cells] == ["markdown", "code", "code", "code", "code",
                                                     "code"]


def test_markdown_cell_strips_comment_prefix(sample_nb):
    assert sample_nb.cells[0].source == "# Title\n\nSome *text*."
    assert _meta(sample_nb.cells[0]) is None


def test_plain_code_cell(sample_nb):
    cell = sample_nb.cells[1]
    assert cell.source == "import math"
    assert _meta(cell) is None
    assert cell.id == "cell-001"
    assert cell.outputs == [] and cell.execution_count is None


def test_readonly_cell(sample_nb):
    cell = sample_nb.cells[2]
    assert cell.source == "X = 1"  # trailing blank line stripped
    assert cell.id == "setup"
    assert _meta(cell) == {"grade": False, "grade_id": "setup", "locked": True,
                           "schema_version": 3, "solution": False, "task": False}


def test_demo_cell_is_tagged_and_not_graded(tmp_path):
    source = tmp_path / "lab.py"
    source.write_text("# %% demo\ntrain_for_a_minute()\n# %%\nx = 1\n")
    demo, plain = authoring.build_notebook(source).cells
    assert demo.metadata == {"tags": [authoring.DEMO_TAG]} and "nbgrader" not in demo.metadata
    assert "tags" not in plain.metadata


def test_solution_cell(sample_nb):
    cell = sample_nb.cells[3]
    assert cell.source == ("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n"
                           "    ### END SOLUTION")
    assert cell.id == "square"
    assert _meta(cell) == {"grade": False, "grade_id": "square", "locked": False,
                           "schema_version": 3, "solution": True, "task": False}
    assert "points" not in _meta(cell)


def test_test_cell(sample_nb):
    cell = sample_nb.cells[4]
    assert cell.source.startswith("assert square(2) == 4\n### BEGIN HIDDEN TESTS")
    assert cell.source.endswith("### END HIDDEN TESTS")
    assert cell.id == "test_square"
    assert _meta(cell) == {"grade": True, "grade_id": "test_square", "locked": True,
                           "points": 2.0, "schema_version": 3, "solution": False, "task": False}
    assert _meta(sample_nb.cells[5])["points"] == 1.5


def test_notebook_metadata_and_validity(sample_nb):
    assert sample_nb.nbformat == 4
    assert sample_nb.metadata["kernelspec"]["name"] == "python3"
    assert sample_nb.metadata["kernelspec"]["language"] == "python"
    assert sample_nb.metadata["language_info"]["name"] == "python"
    nbformat.validate(sample_nb)
    ids = [c.id for c in sample_nb.cells]
    assert len(set(ids)) == len(ids)


def test_kernelspec_is_a_copy(tmp_path):
    nb = authoring.build_notebook(_write(tmp_path, SAMPLE))
    nb.metadata["kernelspec"]["name"] = "changed"
    assert authoring.KERNELSPEC["name"] == "python3"


def test_markdown_bare_hash_is_blank_line(tmp_path):
    nb = authoring.build_notebook(_write(tmp_path, "# %% [markdown]\n# a\n#\n#\n# b\n"))
    assert nb.cells[0].source == "a\n\n\nb"


def test_leading_blank_lines_allowed(tmp_path):
    nb = authoring.build_notebook(_write(tmp_path, "\n\n# %%\nx = 1\n"))
    assert [c.source for c in nb.cells] == ["x = 1"]


def test_text_round_trips(tmp_path):
    nb = authoring.build_notebook(_write(tmp_path, SAMPLE))
    text = authoring.notebook_text(nb)
    assert text.endswith("}\n") and not text.endswith("\n\n")  # one final newline
    assert nbformat.reads(text, as_version=4) == nb


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------

def _error(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        authoring.build_notebook(path)
    return str(info.value), path


def test_duplicate_grade_id(tmp_path):
    message, path = _error(tmp_path, """\
        # %% solution f
        def f(): pass
        # %% test test_f points=1
        assert f() is None
        # %% readonly f
        x = 1
        """)
    assert "'f'" in message and "twice" in message
    assert str(path) in message


def test_duplicate_grade_id_names_the_line(tmp_path):
    message, path = _error(tmp_path, "# %% solution f\npass\n# %% readonly f\nx = 1\n")
    assert f"{path}:3" in message


def test_test_without_points(tmp_path):
    message, path = _error(tmp_path, "# %%\nx = 1\n# %% test test_x\nassert x\n")
    assert f"{path}:3:" in message
    assert "test_x" in message and "points=P" in message


@pytest.mark.parametrize("marker", ["# %% exercise f", "# %% solution", "# %% test",
                                    "# %% [code]", "# %% Solution f"])
def test_unknown_marker(tmp_path, marker):
    message, path = _error(tmp_path, f"# %%\nx = 1\n\n{marker}\ny = 2\n")
    assert f"{path}:4:" in message
    assert marker in message


def test_unknown_option(tmp_path):
    message, path = _error(tmp_path, "# %% test test_x score=3\nassert True\n")
    assert f"{path}:1:" in message and "score=3" in message


def test_text_before_first_marker(tmp_path):
    message, path = _error(tmp_path, "\nimport os\n# %%\nx = 1\n")
    assert f"{path}:2:" in message
    assert "before the first" in message


def test_markdown_line_without_prefix(tmp_path):
    message, _ = _error(tmp_path, "# %% [markdown]\n# fine\nnot a comment\n# %%\nx = 1\n")
    assert "not a comment" in message
    assert "# " in message


def test_markdown_line_hash_without_space(tmp_path):
    message, _ = _error(tmp_path, "# %% [markdown]\n#Heading\n")
    assert "#Heading" in message


def test_markdown_line_without_prefix_names_line_number(tmp_path):
    message, path = _error(tmp_path, "# %% [markdown]\n# fine\nnot a comment\n")
    assert f"{path}:3" in message


# --------------------------------------------------------------------------------------------
# build()
# --------------------------------------------------------------------------------------------

def test_build_reports_changes(tmp_path):
    source = _write(tmp_path, SAMPLE)
    dest = tmp_path / "out" / "lab" / "lab.ipynb"
    assert authoring.build(source, dest) is True
    assert dest.read_text() == authoring.notebook_text(authoring.build_notebook(source))
    mtime = dest.stat().st_mtime_ns
    assert authoring.build(source, dest) is False
    assert dest.stat().st_mtime_ns == mtime  # unchanged file not rewritten

    source.write_text(SAMPLE.replace("x * x", "x ** 2"))
    assert authoring.build(source, dest) is True
    assert "x ** 2" in dest.read_text()
    assert authoring.build(source, dest) is False


def test_build_restores_edited_output(tmp_path):
    source = _write(tmp_path, SAMPLE)
    dest = tmp_path / "lab.ipynb"
    authoring.build(source, dest)
    dest.write_text(dest.read_text().replace("return x * x", "return 0"))
    assert authoring.build(source, dest) is True
    assert "return x * x" in dest.read_text()


def test_build_error_leaves_dest_alone(tmp_path):
    source = _write(tmp_path, "# %% test t\n")
    dest = tmp_path / "lab.ipynb"
    with pytest.raises(ValueError):
        authoring.build(source, dest)
    assert not dest.exists()


# --------------------------------------------------------------------------------------------
# source helpers
# --------------------------------------------------------------------------------------------

SOLUTION_SRC = "def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n"
TEST_SRC = ("assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(2) == 3\n### END HIDDEN TESTS\n"
            "print('ok')")


def test_solution_code():
    assert authoring.solution_code(SOLUTION_SRC) == "def f(x):\n    y = x + 1\n    return y"
    assert authoring.solution_code("x = 1") == "x = 1"


def test_solution_code_runs():
    namespace = {}
    exec(authoring.solution_code(SOLUTION_SRC), namespace)
    assert namespace["f"](1) == 2


def test_strip_hidden():
    assert authoring.strip_hidden(TEST_SRC) == "assert f(1) == 2\nprint('ok')"
    assert authoring.strip_hidden("a\nb") == "a\nb"


def test_strip_hidden_indented_markers():
    src = "def t():\n    a = 1\n    ### BEGIN HIDDEN TESTS\n    b = 2\n    ### END HIDDEN TESTS\n"
    assert authoring.strip_hidden(src) == "def t():\n    a = 1"


def test_test_source():
    assert authoring.test_source(TEST_SRC) == "assert f(1) == 2\nassert f(2) == 3\nprint('ok')"


def test_graded_cells(sample_nb):
    graded = authoring.graded_cells(sample_nb)
    assert [g["grade_id"] for g in graded] == ["setup", "square", "test_square",
                                                "test_square_more"]
    by_id = {g["grade_id"]: g for g in graded}
    assert by_id["square"]["solution"] and by_id["square"]["cell_type"] == "code"
    assert by_id["square"]["source"] == sample_nb.cells[3].source
    assert by_id["test_square"]["points"] == 2.0 and by_id["test_square"]["grade"]
    assert by_id["setup"]["locked"] and not by_id["setup"]["grade"]


def test_graded_cells_ignores_cells_without_grade_id():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x"), nbformat.v4.new_markdown_cell("m")]
    nb.cells[0].metadata["nbgrader"] = {"grade_id": "", "solution": True}
    assert authoring.graded_cells(nb) == []


# --------------------------------------------------------------------------------------------
# The real notebooks
# --------------------------------------------------------------------------------------------

def test_there_are_sources_and_solutions():
    assert SOURCES, "no notebooks/*.py"
    assert SOLUTIONS, "no solutions/*/*.ipynb"
    assert {p.stem for p in SOURCES} == {p.stem for p in SOLUTIONS}, \
        "every notebooks/<lab>.py needs solutions/<lab>/<lab>.ipynb and vice versa"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_solution_is_built_from_source(source):
    lab = source.stem
    dest = ROOT / "solutions" / lab / f"{lab}.ipynb"
    assert dest.exists(), f"{dest} missing; run `genlab build`"
    assert authoring.notebook_text(authoring.build_notebook(source)) == dest.read_text(), \
        f"{dest} is out of date with {source}; run `genlab build`"


def _cells_by_kind(nb):
    solutions, tests = [], []
    for meta in authoring.graded_cells(nb):
        if meta.get("solution"):
            solutions.append(meta)
        if meta.get("grade"):
            tests.append(meta)
    return solutions, tests


def _exercise_of(test_id, exercises):
    """The exercise a test cell belongs to: test_<name> or test_<name>_<suffix>."""
    return [name for name in exercises
            if test_id == f"test_{name}" or test_id.startswith(f"test_{name}_")]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert path.parent.name == path.stem, "solutions/<id>/<id>.ipynb"
    solutions, tests = _cells_by_kind(nb)
    assert solutions, f"{path}: no solution cells"
    exercises = [s["grade_id"] for s in solutions]
    test_ids = [t["grade_id"] for t in tests]

    for meta in solutions:
        name = meta["grade_id"]
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), f"{name!r} is not an identifier"
        assert not meta.get("grade"), f"{name}: solution cells are not graded themselves"
        assert "### BEGIN SOLUTION" in meta["source"] and "### END SOLUTION" in meta["source"], \
            f"{name}: solution cell without BEGIN/END SOLUTION markers"
        assert re.search(rf"^(def|class)\s+{re.escape(name)}\b", meta["source"], re.M), \
            f"{name}: the solution cell does not define {name}"
        own = [t for t in test_ids if name in _exercise_of(t, exercises)]
        assert own, f"exercise {name} has no test cell test_{name} (or test_{name}_<suffix>)"
        assert f"test_{name}" in test_ids, f"exercise {name} has no test cell test_{name}"

    for meta in tests:
        tid = meta["grade_id"]
        assert meta.get("points") and meta["points"] > 0, f"{tid}: points must be > 0"
        assert meta.get("locked"), f"{tid}: test cells are locked"
        assert not meta.get("solution"), f"{tid}: a test cell is not a solution cell"
        assert _exercise_of(tid, exercises), f"{tid} does not belong to any exercise"

    # Every test cell comes after its exercise's solution cell.
    order = [m["grade_id"] for m in authoring.graded_cells(nb)]
    for tid in test_ids:
        for name in _exercise_of(tid, exercises):
            assert order.index(name) < order.index(tid), f"{tid} comes before {name}"


@pytest.mark.parametrize("lab", labs.LABS.values(), ids=lambda lab: lab.number)
def test_solution_notebook_matches_the_registry(lab):
    """Exercises, test cells and points in solutions/ are the registry's (and the contract's)."""
    nb = nbformat.read(lab.solution(ROOT), as_version=4)
    assert labs.structure_problems(lab, nb) == []


def test_registry_mismatch_is_named():
    lab = labs.get("01_transposed_convolution")
    nb = nbformat.read(lab.solution(ROOT), as_version=4)
    test_cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    test_cell.metadata["nbgrader"]["points"] += 1
    problems = labs.structure_problems(lab, nb)
    assert len(problems) == 1 and "points" in problems[0], problems
