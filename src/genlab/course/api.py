"""nbgrader, configured for genlab: the grading kernel and an ``NbGraderAPI`` on a course."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from .. import config
from . import sandbox
from .paths import Course

KERNEL_NAME = "genlab-grader"


def kernel_argv(python: str = sys.executable, warn: bool = True) -> list[str]:
    """The command that starts a grading kernel: in a bubblewrap sandbox
    (:mod:`genlab.course.sandbox`) where it works; else, with a loud warning, this environment's
    Python under a memory limit (CPU graders) and without network where the system allows it."""
    mode = config.grader_sandbox()
    if mode != "off" and sandbox.available():
        return sandbox.kernel_argv(python)
    if mode == "require":
        raise SystemExit("genlab: GENLAB_GRADER_SANDBOX=require, but bubblewrap (bwrap) cannot "
                         "create a sandbox here; install Debian's bubblewrap package")
    if mode == "auto" and warn:
        print("genlab: WARNING: no sandbox for the grading kernel (bubblewrap is missing or cannot "
              "run here): student code runs with the grader's rights. Install Debian's "
              "bubblewrap package (apt-get install bubblewrap).", file=sys.stderr, flush=True)
    argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}", *sandbox.KERNEL_OPTIONS]
    prlimit = shutil.which("prlimit")
    limit = config.grader_memory_gb()
    if prlimit and not sandbox.cuda_present() and limit > 0:
        argv = [prlimit, f"--as={int(limit * 2**30)}", "--"] + argv
    unshare = shutil.which("unshare")
    if unshare and _works([unshare, "-rn", "true"]):
        argv = [unshare, "-rn"] + argv
    return argv


def write_kernelspec(folder: Path, warn: bool = True) -> Path:
    """Write the ``genlab-grader`` kernelspec under ``folder``; return the folder to add to
    ``JUPYTER_PATH``. ``warn=False``: no warning when there is no sandbox (a student checking
    their own notebook on their own machine)."""
    spec = {"argv": kernel_argv(warn=warn), "display_name": "genlab grader", "language": "python",
            "env": config.grading_env()}
    kernel_dir = folder / "kernels" / KERNEL_NAME
    kernel_dir.mkdir(parents=True, exist_ok=True)
    (kernel_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


def _works(argv) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@contextlib.contextmanager
def patched_environ(**values: str | None):
    """Set (or, with None, remove) environment variables for the duration of a block."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


def _set_environ(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def ipc_kernels():
    """A short-lived folder for kernels' IPC sockets (paths must be short and absolute). IPC,
    not TCP: the kernel may live in a network namespace without loopback."""
    folder = Path(tempfile.mkdtemp(prefix="genlab-ipc-"))
    try:
        yield str(folder / "kernel")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def nbgrader_api(course: Course, release_dir: Path | None = None):
    """An ``NbGraderAPI`` on ``course`` with genlab's configuration and grading kernel.

    ``course.overrides`` (a traitlets Config) is merged last, e.g. shorter time limits in tests.
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config_ = PyFileConfigLoader("nbgrader_config.py",
                                 path=str(course.root / "grading")).load_config()
    cd = config_.CourseDirectory
    cd.root = str(course.root)
    cd.submitted_directory = str(course.submitted)
    cd.autograded_directory = str(course.state / "autograded")
    cd.feedback_directory = str(course.state / "feedback")
    cd.db_url = course.db_url
    if release_dir is not None:
        cd.release_directory = str(release_dir)
    if course.overrides is not None:
        config_.merge(course.overrides)
    course.state.mkdir(parents=True, exist_ok=True)
    jupyter_path = write_kernelspec(course.state / ".tmp" / f"jupyter-{os.getpid()}")
    with ipc_kernels() as ip, patched_environ(
            # nbgrader runs the `alembic` command: find it beside this Python without a venv
            PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            JUPYTER_PATH=os.pathsep.join(filter(None, [str(jupyter_path),
                                                       os.environ.get("JUPYTER_PATH")])),
            GENLAB_FAST="1",
            PYTHONWARNINGS="ignore"):  # SQLAlchemy 2.1 warns on every autograde
        config_.KernelManager.transport = "ipc"
        config_.KernelManager.ip = ip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield NbGraderAPI(coursedir=CourseDirectory(config=config_), config=config_)


def require_success(result: dict, what: str) -> None:
    """Stop with nbgrader's error lines when an API call failed."""
    if not result.get("success"):
        log = [ln for ln in (result.get("log") or "").splitlines() if "[ERROR]" in ln]
        detail = log or (result.get("error") or "").strip().splitlines()[-5:]
        raise SystemExit(f"genlab: {what} failed:\n  " + "\n  ".join(detail[-15:]))
