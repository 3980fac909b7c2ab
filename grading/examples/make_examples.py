"""Regenerate the bundled example submissions from the current release and solutions.

    python grading/examples/make_examples.py        (after `genlab release`)

Each student shows one thing an instructor meets in a real class. `make grade` grades them;
tests/test_grading.py checks each gets the score its description promises.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat

from genlab.course.examples import fill_in, solution_of

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

FLIPPED_KERNEL = '''

_unflipped = conv_transpose2d


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    # A typical mistake: the kernel is flipped, as if this were a true convolution.
    return _unflipped(x, weight.flip(-1, -2), bias, stride, padding, output_padding, dilation)'''

# student -> (what the example shows, answers to change, test cells expected to fail)
EXAMPLES = {
    "01_transposed_convolution": {
        "ada": ("complete and correct", {}, []),
        "ben": ("blank: the release as handed out", None, "all"),
        "cat": ("one wrong exercise (kernel flipped in conv_transpose2d)",
                {"conv_transpose2d": ("conv_transpose2d", FLIPPED_KERNEL)}, ["test_conv_transpose2d"]),
        "dan": ("broken: a duplicated graded cell, a deleted test cell, and a cell that kills "
                "the kernel after the first exercise", "broken",
                ["test_conv_transpose2d", "test_conv_transpose2d_errors", "test_conv2d_matrix"]),
    },
}


def broken(nb):
    """Duplicate the first solution cell, delete one test cell, and kill the kernel after the
    first exercise's test: the first exercise keeps its points, the rest are not run."""
    cells = nb.cells
    first_test = next(i for i, c in enumerate(cells)
                      if c.metadata.get("nbgrader", {}).get("grade"))
    first_solution = max(i for i, c in enumerate(cells[:first_test])
                         if c.metadata.get("nbgrader", {}).get("solution"))
    cells.insert(first_test + 1, nbformat.v4.new_code_cell(
        "# I was debugging something...\nimport os\nos._exit(1)"))
    cells.insert(first_solution, copy.deepcopy(cells[first_solution]))
    last_test = max(i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade"))
    del cells[last_test]
    for i, cell in enumerate(cells):  # keep cell ids unique, as Jupyter would
        cell.id = f"{cell.get('id', 'cell')}-{i}" if cell.get("id") else f"cell-{i}"
    return nb


def main() -> None:
    manifest = {}
    for lab, students in EXAMPLES.items():
        release = nbformat.read(str(ROOT / "labs" / lab / f"{lab}.ipynb"), as_version=4)
        source = nbformat.read(str(ROOT / "solutions" / lab / f"{lab}.ipynb"), as_version=4)
        for student, (description, answers, loses) in students.items():
            if answers is None:
                nb = copy.deepcopy(release)
            elif answers == "broken":
                nb = broken(fill_in(release, source))
            else:  # (exercise, code added after the model solution): the student's own mistake
                nb = fill_in(release, source, {name: solution_of(source, base) + extra
                                               for name, (base, extra) in answers.items()})
            dest = HERE / "submitted" / student / lab / f"{lab}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(dest))
            manifest.setdefault(lab, {})[student] = {"shows": description, "loses": loses}
    (HERE / "examples.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
