"""The maintainers' path from sources to students: ``genlab build`` (``notebooks/<id>.py`` ->
``solutions/``), ``genlab release`` (``solutions/`` -> ``labs/``) and ``genlab validate`` (the
registry matches the sources, sources build the solutions, solutions earn full marks, released
stubs earn zero, ``labs/`` is byte-for-byte what ``release`` generates)."""
from __future__ import annotations

import filecmp
import shutil
import tempfile
from pathlib import Path

from .. import labs as registry
from ..authoring import build, build_notebook
from .api import nbgrader_api, require_success
from .grade import grade
from .paths import Course, available_labs, compare_trees, course_root


def build_solutions(root: Path, dest_root: Path | None = None, labs=None) -> list[str]:
    """Compile each registered lab's ``notebooks/<id>.py`` into ``solutions/<id>/<id>.ipynb``;
    return the labs whose notebook changed."""
    changed = []
    for lab in labs or registry.LABS:
        source = registry.get(lab).source(root)
        if not source.is_file():
            continue
        dest = (dest_root or root / "solutions") / lab / f"{lab}.ipynb"
        if build(source, dest):
            changed.append(lab)
    return changed


def release(root: Path, labs=None, into: Path | None = None, course: Course | None = None) -> None:
    """Generate the student version of each lab into ``labs/`` (or ``into``)."""
    course = course or Course.default(root)
    with nbgrader_api(course, release_dir=into) as api:
        for lab in labs or available_labs(root):
            require_success(api.generate_assignment(lab, force=True, create=True), f"release of {lab}")


def validate(root: Path, labs=None, log=print, scores: bool = True) -> list[str]:
    """Return a list of problems (empty when all is well). ``scores=False`` checks only the
    registry and that solutions/ and labs/ are in sync, without grading."""
    problems = list(registry.registry_problems(root))
    labs = [lab for lab in (labs or available_labs(root)) if registry.get(lab).source(root).is_file()]
    for lab in labs:
        problems += registry.structure_problems(registry.get(lab),
                                                build_notebook(registry.get(lab).source(root)))
    with tempfile.TemporaryDirectory(prefix="genlab-validate-") as tmp:
        tmp = Path(tmp)
        # 1. notebooks/<id>.py build exactly solutions/
        build_solutions(root, tmp / "solutions", labs)
        for lab in list(labs):
            built, kept = tmp / "solutions" / lab / f"{lab}.ipynb", registry.get(lab).solution(root)
            if not kept.is_file() or not filecmp.cmp(built, kept, shallow=False):
                problems.append(f"solutions/{lab}/{lab}.ipynb is not what notebooks/{lab}.py "
                                "builds (run: genlab build)")
            if not kept.is_file():
                labs.remove(lab)  # nothing to release or grade yet
        # 2. labs/ is what release generates
        course = Course(root, tmp / "submitted", tmp / "state")
        release(root, labs, into=tmp / "labs", course=course)
        for lab in labs:
            diff = compare_trees(tmp / "labs" / lab, root / "labs" / lab)
            if diff:
                problems.append(f"labs/{lab} differs from a fresh release in {', '.join(diff)} "
                                "(run: genlab release)")
        # 3. solutions earn full marks, stubs earn zero
        if not scores:
            return problems
        for lab in labs:
            for student, source in (("solution", root / "solutions" / lab),
                                    ("stub", tmp / "labs" / lab)):
                shutil.copytree(source, course.submitted / student / lab)
        for g in grade(course, labs, log=log):
            reasons = "; ".join(g.reasons)
            if g.student == "solution" and (g.max_score <= 0 or g.score != g.max_score):
                problems.append(f"{g.lab}: the solution earns {g.score:g}/{g.max_score:g} {reasons}")
            if g.student == "stub" and g.score != 0:
                problems.append(f"{g.lab}: the released stub earns {g.score:g}/{g.max_score:g}")
            log(f"  {g.lab}: {g.student} {g.score:g}/{g.max_score:g}")
    return problems


def cmd_validate(args) -> int:
    problems = validate(course_root(), args.labs or None)
    if problems:
        print("genlab validate: FAILED\n  " + "\n  ".join(problems))
        return 1
    print("genlab validate: OK (registry matches the sources, sources build solutions, "
          "solutions full marks, stubs zero, labs in sync)")
    return 0


def cmd_release(args) -> int:
    root = course_root()
    changed = build_solutions(root) if not args.no_build else []
    if changed:
        print(f"genlab release: rebuilt solutions for {', '.join(changed)} from notebooks/")
    labs = args.labs or available_labs(root)
    release(root, labs)
    print(f"genlab release: labs/ regenerated for {', '.join(labs)}")
    return 0


def cmd_build(args) -> int:
    changed = build_solutions(course_root())
    print("genlab build: " + (f"rebuilt {', '.join(changed)}" if changed else "solutions up to date"))
    return 0
