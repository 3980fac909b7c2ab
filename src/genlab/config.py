"""Settings read from the environment, in one place.

- ``GENLAB_FAST=1`` switches every training budget to its fast value (CI and the autograder
  set it) so that a whole lab executes in seconds.
- ``GENLAB_DATA`` is where data sets are downloaded and cached (default: the user's cache).
- ``GENLAB_DEVICE`` forces a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
- ``GENLAB_OFFLINE=1`` skips download attempts and goes straight to the bundled fallbacks.

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


def budget(default, fast):
    """Pick a training budget: ``fast`` in fast mode, ``default`` otherwise.

    >>> epochs = budget(default=10, fast=1)
    """
    return fast if fast_mode() else default


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
