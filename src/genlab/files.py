"""Writing cache files safely: readers see either no file or the whole file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def save_atomic(obj, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file in the same folder and a rename,
    so that a crash or a concurrent reader never sees half a file. The file is world-readable (a
    shared data directory wants that). Raises ``OSError`` (no temporary file is left behind)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
