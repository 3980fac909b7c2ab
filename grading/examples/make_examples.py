"""Regenerate the bundled example submissions from the current release and solutions.

    python grading/examples/make_examples.py        (after `genlab release`)

Each student shows one thing an instructor meets in a real class. `make grade` grades them;
tests/test_grading.py checks each gets the score its description promises. The mistakes and the
broken notebook come from genlab.course.examples, which also makes classes of any size
(`genlab example-class`).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat

from genlab import labs
from genlab.course.examples import MISTAKES, broken, fill_in, with_mistakes

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def examples_for(lab: str, test_ids: list[str]) -> dict:
    """student -> (what the example shows, answers, test cells expected to fail)."""
    mistake = MISTAKES[lab][0]  # one typical mistake per lab, built on the model solution
    return {
        "ada": ("complete and correct", {}, []),
        "ben": ("blank: the release as handed out", None, "all"),
        "cat": (f"one typical mistake: {mistake.shows}", [mistake], list(mistake.loses)),
        "dan": ("broken: a duplicated graded cell, a deleted test cell, and a cell that kills "
                "the kernel after the first exercise's test", "broken", test_ids[1:]),
    }


def main() -> None:
    manifest = {}
    for lab in MISTAKES:
        release = nbformat.read(str(ROOT / "labs" / lab / f"{lab}.ipynb"), as_version=4)
        source = nbformat.read(str(ROOT / "solutions" / lab / f"{lab}.ipynb"), as_version=4)
        students = examples_for(lab, list(labs.get(lab).points))
        for student, (description, answers, loses) in students.items():
            if answers is None:
                nb = copy.deepcopy(release)
            elif answers == "broken":
                nb = broken(fill_in(release, source))
            else:  # the student's own mistakes, on top of the model solution
                nb = with_mistakes(release, source, answers)
            dest = HERE / "submitted" / student / lab / f"{lab}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(dest))
            manifest.setdefault(lab, {})[student] = {"shows": description, "loses": loses}
    (HERE / "examples.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
