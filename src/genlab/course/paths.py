"""Where a course lives and where one grading run reads and writes."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .. import labs as registry


def course_root() -> Path:
    """The repository root: ``$GENLAB_COURSE_ROOT``, else the nearest folder above the working
    directory with ``grading/nbgrader_config.py``, else the checkout genlab is installed from."""
    env = os.environ.get("GENLAB_COURSE_ROOT")
    if env:
        return Path(env).resolve()
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "grading" / "nbgrader_config.py").is_file():
            return folder
    here = Path(__file__).resolve().parents[3]
    if (here / "grading" / "nbgrader_config.py").is_file():
        return here
    raise SystemExit("genlab: cannot find the course (a folder with grading/nbgrader_config.py); "
                     "run from the repository or set GENLAB_COURSE_ROOT")


@dataclass
class Course:
    """Where one grading run reads and writes. The defaults are the real course under
    ``grading/``; the demo and ``validate`` use their own state folders."""
    root: Path
    submitted: Path
    state: Path  # autograded/, feedback/, gradebook.db, grades.csv live here
    overrides: object = None  # a traitlets Config merged over grading/nbgrader_config.py
    db: str | None = None     # the gradebook's SQLAlchemy URL; default SQLite in ``state``

    @property
    def db_url(self) -> str:
        # SQLite waits up to a minute for a lock: parallel workers write the same gradebook
        return self.db or "sqlite:///" + str(self.state / "gradebook.db") + "?timeout=60"

    @classmethod
    def default(cls, root: Path | None = None) -> "Course":
        root = root or course_root()
        return cls(root, root / "grading" / "submitted", root / "grading")

    @classmethod
    def examples(cls, root: Path) -> "Course":
        """The bundled example class, graded into ``grading/demo/`` (never mixed with a real class)."""
        return cls(root, root / "grading" / "examples" / "submitted", root / "grading" / "demo")

    @property
    def release_check(self) -> Path:
        return self.state / ".tmp" / "release"

    @property
    def csv(self) -> Path:
        return self.state / "grades.csv"

    @property
    def results(self) -> Path:
        """One JSON line per graded submission, appended as grading goes."""
        return self.state / "results.jsonl"

    def autograded(self, student: str, lab: str) -> Path:
        return self.state / "autograded" / student / lab / f"{lab}.ipynb"

    def submissions(self, labs) -> dict[str, list[str]]:
        """lab -> students with ``<submitted>/<student>/<lab>/``."""
        out: dict[str, list[str]] = {}
        if not self.submitted.is_dir():
            return out
        for student_dir in sorted(p for p in self.submitted.iterdir() if p.is_dir()):
            for lab in labs:
                if (student_dir / lab).is_dir():
                    out.setdefault(lab, []).append(student_dir.name)
        return out


def available_labs(root: Path) -> list[str]:
    """Registered labs with a solution notebook in this course."""
    return registry.available(root)


def fingerprint(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.is_dir() else {}


def compare_trees(a: Path, b: Path) -> list[str]:
    """Paths that differ between two folders (missing on either side or different bytes)."""
    fa, fb = fingerprint(a), fingerprint(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
