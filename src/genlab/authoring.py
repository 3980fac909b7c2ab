"""Build the nbgrader source notebooks in ``solutions/`` from readable percent-format files.

Maintainers write ``notebooks/<lab>.py``; ``genlab build`` turns it into
``solutions/<lab>/<lab>.ipynb`` with the nbgrader cell metadata, and ``genlab release`` turns
that into the student version in ``labs/``. Cell markers (one per line, at column 0)::

    # %% [markdown]                    a markdown cell; each line starts with "# "
    # %%                               an ordinary code cell
    # %% solution NAME                 graded exercise: grade_id NAME, the student writes here
    # %% test test_NAME points=P       autograded test cell (locked), worth P points
    # %% readonly NAME                 a locked code cell (set-up the tests rely on)
    # %% demo                          a code cell that only trains, plots or shows (tag "demo"),
                                       skipped when grading and checking: the tests never need it

Inside a solution cell, ``### BEGIN SOLUTION`` / ``### END SOLUTION`` mark what the release
replaces with ``raise NotImplementedError``; inside a test cell,
``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` mark what students do not see.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

DEMO_TAG = "demo"  # cells that only train, plot or show: skipped when grading
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
_MARKER = re.compile(r"^# %%(?P<rest>.*)$")


def _nbgrader_meta(kind: str, grade_id: str, points: float | None = None) -> dict:
    meta = {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
            "solution": False, "task": False}
    if kind == "solution":
        meta["solution"] = True
    elif kind == "test":
        meta.update(grade=True, locked=True, points=points)
    elif kind == "readonly":
        meta["locked"] = True
    return meta


def _parse_header(rest: str, lineno: int, path: Path) -> tuple[str, str | None, float | None]:
    words = rest.split()
    if not words:
        return "code", None, None
    if words[0] == "[markdown]":
        return "markdown", None, None
    if words == ["demo"]:
        return "demo", None, None
    kind = words[0]
    if kind not in {"solution", "test", "readonly"} or len(words) < 2:
        raise ValueError(f"{path}:{lineno}: cannot read cell marker '# %%{rest}'")
    grade_id, points = words[1], None
    for word in words[2:]:
        key, _, value = word.partition("=")
        if key != "points":
            raise ValueError(f"{path}:{lineno}: unknown option {word!r}")
        points = float(value)
    if kind == "test" and points is None:
        raise ValueError(f"{path}:{lineno}: test cell {grade_id} needs points=P")
    return kind, grade_id, points


def _markdown_source(lines: list[str], first_line: int, path: Path) -> str:
    out = []
    for lineno, line in enumerate(lines, start=first_line):
        if line.startswith("# "):
            out.append(line[2:])
        elif line.rstrip() == "#":
            out.append("")
        else:
            raise ValueError(f"{path}:{lineno}: a markdown line must start with '# ': {line!r}")
    return "\n".join(out).strip("\n")


def build_notebook(source: Path) -> nbformat.NotebookNode:
    """Parse one percent-format file into an nbgrader source notebook."""
    source = Path(source)
    cells: list[tuple[str, str | None, float | None, int, list[str]]] = []
    for lineno, line in enumerate(source.read_text().splitlines(), start=1):
        match = _MARKER.match(line)
        if match:
            cells.append((*_parse_header(match["rest"], lineno, source), lineno, []))
        elif cells:
            cells[-1][4].append(line)
        elif line.strip():
            raise ValueError(f"{source}:{lineno}: text before the first '# %%' marker")
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    seen = set()
    for index, (kind, grade_id, points, lineno, lines) in enumerate(cells):
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(_markdown_source(lines, lineno + 1, source))
        else:
            cell = nbformat.v4.new_code_cell("\n".join(lines).strip("\n"))
            if kind == "demo":
                cell.metadata["tags"] = [DEMO_TAG]
        if grade_id is not None:
            if grade_id in seen:
                raise ValueError(f"{source}:{lineno}: grade_id {grade_id!r} is used twice")
            seen.add(grade_id)
            cell.metadata["nbgrader"] = _nbgrader_meta(kind, grade_id, points)
        cell.id = grade_id or f"cell-{index:03d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The exact text genlab writes for a notebook (stable, so that diffs stay small)."""
    return nbformat.writes(nb) + "\n"


def build(source: Path, dest: Path) -> bool:
    """Write ``dest`` from ``source``; return True if the file changed."""
    text = notebook_text(build_notebook(source))
    dest = Path(dest)
    if dest.exists() and dest.read_text() == text:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return True


def graded_cells(nb: nbformat.NotebookNode) -> list[dict]:
    """The nbgrader metadata of every graded or solution cell, in order (with the cell source)."""
    out = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta and meta.get("grade_id"):
            out.append({**meta, "source": cell.source, "cell_type": cell.cell_type})
    return out


def solution_code(source: str) -> str:
    """A solution cell's code with the BEGIN/END SOLUTION markers removed."""
    return "\n".join(line for line in source.splitlines()
                     if line.strip() not in {"### BEGIN SOLUTION", "### END SOLUTION"})


def strip_hidden(source: str) -> str:
    """A test cell's source without its hidden part."""
    out, hidden = [], False
    for line in source.splitlines():
        if line.strip() == "### BEGIN HIDDEN TESTS":
            hidden = True
        elif line.strip() == "### END HIDDEN TESTS":
            hidden = False
        elif not hidden:
            out.append(line)
    return "\n".join(out)


def scoped_test(source: str) -> str:
    """The code the grading kernel runs for a test cell: the cell's code in a scope of its own
    (:func:`genlab.testing.run_test_cell`), so its names never replace the student's."""
    return (f"__import__('genlab.testing', fromlist=['run_test_cell'])"
            f".run_test_cell({source!r}, globals())")


def test_source(source: str) -> str:
    """A test cell's full source (visible and hidden) with the markers removed, ready to exec."""
    return "\n".join(line for line in source.splitlines()
                     if line.strip() not in {"### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"})
