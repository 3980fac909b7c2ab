"""Settings read from the environment, in one place.

- ``GENLAB_FAST=1`` switches every training budget to its fast value (CI and the autograder
  set it) so that a whole lab executes in seconds.
- ``GENLAB_DATA`` is where data sets are downloaded and cached (default: the user's cache).
- ``GENLAB_DEVICE`` forces a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
- ``GENLAB_OFFLINE=1`` skips download attempts and goes straight to the bundled fallbacks.
- ``GENLAB_NO_WIDGETS=1`` / ``GENLAB_WIDGETS=1`` force sliders off / on (:mod:`genlab.widgets`).
- ``GENLAB_NO_GPU_BUDGET=1`` keeps the default (CPU) budgets on a GPU.
- ``GENLAB_SEED`` is the seed of a lab's main training run (default 0): ``genlab seeds`` reruns a
  lab with several to show the spread of its figures.
- ``GENLAB_GRADER_MEMORY_GB`` caps the grading kernel's memory, the whole process tree (default
  8; 0 for no cap); ``GENLAB_GRADER_SANDBOX``, ``_DISK_MB``, ``_FILE_MB``, ``_PROCESSES``,
  ``_CPU_SECONDS``, ``_OUTPUT_MB``: the grading sandbox (:mod:`genlab.course.sandbox`).

The grading kernel's environment (:func:`grading_env`) is written here once, for both
``genlab check`` and ``genlab grade``, so a student sees the verdict the grader gives.

Every module asks these functions, never ``os.environ`` directly, so a test can flip a
setting with ``monkeypatch.setenv`` and see the effect everywhere.
"""
from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def fast_mode() -> bool:
    """True when ``GENLAB_FAST`` is set to 1/true/yes/on."""
    return _flag("GENLAB_FAST")


def offline() -> bool:
    """True when ``GENLAB_OFFLINE`` asks genlab never to try a download."""
    return _flag("GENLAB_OFFLINE")


def autograding() -> bool:
    """True while nbgrader executes the notebook (it sets ``NBGRADER_EXECUTION``)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


_UNSET = object()


def budget(default, fast, gpu=_UNSET):
    """Pick a training budget: ``fast`` in fast mode; else ``gpu`` (when given) if genlab's
    device is a CUDA GPU; else ``default`` (the laptop-CPU budget).

    >>> epochs = budget(default=10, fast=1, gpu=40)

    ``None`` is a value like any other (notebooks use it for "the whole data set").
    """
    if fast_mode():
        return fast
    if gpu is not _UNSET and gpu_budget():
        return gpu
    return default


def gpu_budget() -> bool:
    """True when notebooks should use their larger GPU budgets: genlab computes on CUDA, fast
    mode is off and ``GENLAB_NO_GPU_BUDGET`` is not set."""
    if fast_mode() or _flag("GENLAB_NO_GPU_BUDGET"):
        return False
    from .device import get_device
    return get_device().type == "cuda"


def run_seed() -> int:
    """The seed of a lab's main training run: ``GENLAB_SEED`` (a non-negative integer), 0 by
    default. The tests' seeds never change with it."""
    value = os.environ.get("GENLAB_SEED", "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise ValueError(f"GENLAB_SEED must be a non-negative integer, got {value!r}")
    return int(value)


def widgets_override() -> bool | None:
    """``GENLAB_NO_WIDGETS=1`` -> False, ``GENLAB_WIDGETS=1`` -> True, else None (let
    :func:`genlab.widgets.has_widget_frontend` guess)."""
    if _flag("GENLAB_NO_WIDGETS"):
        return False
    if _flag("GENLAB_WIDGETS"):
        return True
    return None


def grader_memory_gb() -> float:
    """The grading kernel's memory cap in GiB (``GENLAB_GRADER_MEMORY_GB``, default 8; 0: none)."""
    return _number("GENLAB_GRADER_MEMORY_GB", 8.0)


def _number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def grader_disk_mb() -> float:
    """Size of the grading sandbox's writable /tmp (``GENLAB_GRADER_DISK_MB``, default 512)."""
    return _number("GENLAB_GRADER_DISK_MB", 512)


def grader_file_mb() -> float:
    """Largest file a graded notebook may write (``GENLAB_GRADER_FILE_MB``, default 256)."""
    return _number("GENLAB_GRADER_FILE_MB", 256)


def grader_max_processes() -> int:
    """Processes a graded notebook may run at once (``GENLAB_GRADER_PROCESSES``, default 32)."""
    return int(_number("GENLAB_GRADER_PROCESSES", 32))


def grader_cpu_seconds() -> int:
    """CPU seconds for one graded notebook's kernel (``GENLAB_GRADER_CPU_SECONDS``, default 1800)."""
    return int(_number("GENLAB_GRADER_CPU_SECONDS", 1800))


def grader_output_mb() -> float:
    """Output a graded notebook may produce before the rest is dropped (``GENLAB_GRADER_OUTPUT_MB``,
    default 20)."""
    return _number("GENLAB_GRADER_OUTPUT_MB", 20)


def grader_sandbox() -> str:
    """``GENLAB_GRADER_SANDBOX``: ``auto`` (bubblewrap where it works, else a loud warning and
    the plain kernel), ``require`` (refuse to grade without it) or ``off``."""
    value = os.environ.get("GENLAB_GRADER_SANDBOX", "auto").strip().lower() or "auto"
    if value not in {"auto", "require", "off"}:
        raise ValueError(f"GENLAB_GRADER_SANDBOX must be auto, require or off, got {value!r}")
    return value


def grader_warm_kernels() -> bool:
    """``GENLAB_GRADER_WARM``: ``1`` (default) forks a student's grading kernels from a warm
    sandbox that has imported torch once (:mod:`genlab.course.pool`); ``0`` starts every
    notebook's kernel from scratch."""
    value = os.environ.get("GENLAB_GRADER_WARM", "1").strip()
    if value not in {"0", "1"}:
        raise ValueError(f"GENLAB_GRADER_WARM must be 0 or 1, got {value!r}")
    return value == "1"


def grading_env() -> dict[str, str]:
    """Environment of the kernel that runs a notebook for ``genlab check`` and ``genlab grade``:
    fast mode, headless figures, no sliders, no download attempts, unbuffered output."""
    return {"GENLAB_FAST": "1", "MPLBACKEND": "Agg", "GENLAB_NO_WIDGETS": "1",
            "GENLAB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def data_dir() -> Path:
    """Where data sets live: ``$GENLAB_DATA``, else ``$XDG_CACHE_HOME/genlab`` or ``~/.cache/genlab``."""
    env = os.environ.get("GENLAB_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "genlab"


def device_override() -> str | None:
    """The device named by ``GENLAB_DEVICE``, or None."""
    value = os.environ.get("GENLAB_DEVICE", "").strip()
    return value or None
