"""``genlab lab``: JupyterLab from the repository's environment, for students or instructors.

* **Students** (``make lab``) work in ``work/``, a copy of ``labs/`` made on the first start.
  Later starts copy only what is new (a lab released since), never over an existing file, so
  updating the repository never conflicts with a student's edits. The student profile
  (``jupyter/student/``) disables and locks nbgrader's instructor tools.
* **Instructors** (``make instructor``, ``genlab lab --instructor``) get every nbgrader tool
  (formgrader, Create Assignment, the nbgrader menu) on the whole repository
  (``jupyter/instructor/``, which loads ``grading/nbgrader_config.py``).

Each profile is a ``JUPYTER_CONFIG_DIR``; see ``jupyter/README.md``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PROFILES = ("student", "instructor")


def profile_dir(root: Path, profile: str) -> Path:
    """The ``JUPYTER_CONFIG_DIR`` of a profile: ``<root>/jupyter/<profile>``."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return Path(root) / "jupyter" / profile


def sync_work(labs: Path, work: Path) -> list[Path]:
    """Copy every file of ``labs`` that ``work`` does not have yet; return the copies made.
    A file already in ``work`` is never touched, edited or not."""
    copied = []
    for source in sorted(Path(labs).rglob("*")):
        target = Path(work) / source.relative_to(labs)
        if source.is_file() and ".ipynb_checkpoints" not in source.parts and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copied.append(target)
    return copied


def lab_command(root: Path, profile: str = "student", notebook_dir: Path | None = None,
                port: int | None = None, extra=()) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start JupyterLab with ``profile`` on
    ``notebook_dir`` (default: ``work/`` for students, the repository for instructors)."""
    root = Path(root)
    if notebook_dir is None:
        notebook_dir = root / "work" if profile == "student" else root
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(profile_dir(root, profile))}
    argv = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={notebook_dir}"]
    if port is not None:
        argv.append(f"--port={port}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")
    return argv + list(extra), env


def main(args) -> int:
    from .course.paths import course_root
    root = course_root()
    profile = "instructor" if args.instructor else "student"
    if profile == "student":
        copied = sync_work(root / "labs", root / "work")
        if copied:
            print(f"genlab: copied {len(copied)} new file(s) from labs/ into work/ "
                  "(your own files there are never overwritten)")
    argv, env = lab_command(root, profile, port=args.port, extra=args.jupyter_args)
    if os.name != "posix":
        return subprocess.call(argv, env=env)
    os.execve(argv[0], argv, env)  # JupyterLab replaces this process: Ctrl-C goes to it directly
