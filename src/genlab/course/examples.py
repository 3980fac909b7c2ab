"""Submissions made from a release, for the bundled example class and the tests."""
from __future__ import annotations

import json

import nbformat

from ..authoring import solution_code


def solution_of(source_nb, name: str) -> str:
    """The model solution of exercise ``name`` (its code, without the solution markers), e.g.
    to build a typical mistake on top of it without importing the reference answers."""
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") == name:
            return solution_code(cell.source)
    raise KeyError(f"no solution cell {name!r}")


def fill_in(release_nb, source_nb, answers: dict[str, str] | None = None):
    """A student's notebook: the release with every solution cell answered — from the source
    notebook's solution, or from ``answers`` (grade_id -> code; ``None`` keeps the stub)."""
    answers = answers or {}
    solutions = {c.metadata["nbgrader"]["grade_id"]: solution_code(c.source)
                 for c in source_nb.cells if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.from_dict(json.loads(json.dumps(release_nb)))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in solutions and cell.metadata["nbgrader"].get("solution"):
            answer = answers.get(gid, solutions[gid])
            if answer is not None:
                cell.source = answer
    return nb
