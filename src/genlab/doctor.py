"""``genlab doctor``: what this machine offers the labs, in one screen.

Versions of the packages the labs use, the device genlab will pick (CUDA, then Apple MPS, then
CPU), where each data set would come from (nothing is downloaded), and the fast-mode setting.
"""
from __future__ import annotations

import importlib.metadata as md
import platform
import sys

PACKAGES = ("torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "jupyterlab", "notebook",
            "nbgrader", "nbval", "tqdm", "scikit-learn", "mlxtend")


def _version(package: str) -> str:
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "MISSING"


def report() -> list[tuple[str, str]]:
    """(label, value) rows of the report."""
    import torch

    from . import __version__, config, data, device

    rows = [("genlab", __version__), ("python", f"{platform.python_version()} ({sys.executable})")]
    rows += [(name, _version(name)) for name in PACKAGES]
    rows.append(("device", device.describe(device.get_device())))
    cuda = (f"available, {torch.cuda.device_count()} device(s), CUDA {torch.version.cuda}"
            if torch.cuda.is_available() else
            f"not available (torch built for CUDA {torch.version.cuda})" if torch.version.cuda
            else "not available (CPU-only torch build)")
    rows.append(("cuda", cuda))
    rows.append(("fast mode", "ON (GENLAB_FAST=1: tiny training budgets)" if config.fast_mode()
                 else "off (set GENLAB_FAST=1 for tiny budgets)"))
    rows.append(("offline", "yes (GENLAB_OFFLINE=1: no downloads)" if config.offline()
                 else "no (downloads are tried, with a bounded wait)"))
    rows.append(("data dir", str(config.data_dir())))
    for name, what, present in data.describe_sources():
        rows.append((f"data: {name}", f"{'present' if present else 'not present'}: {what}"))
    return rows


def main(args=None) -> int:
    rows = report()
    width = max(len(label) for label, _ in rows)
    print("genlab doctor\n")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    missing = [label for label, value in rows if value == "MISSING"]
    if missing:
        print(f"\n  missing packages: {', '.join(missing)} -- run `make venv` or "
              "`pip install -e .` in the repository")
        return 1
    return 0
