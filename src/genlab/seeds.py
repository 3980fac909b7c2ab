"""``genlab seeds LAB --seeds 0 1 2 3 4``: rerun a lab's solution notebook with several seeds and
print what each run reports, to see the spread of the lab's headline result.

Each run executes ``solutions/<id>/<id>.ipynb`` from start to end in a fresh kernel, at the
default budget (or fast mode with ``--fast``), with ``GENLAB_SEED`` set: the labs that train a
main model take its seed from :func:`genlab.config.run_seed`. What a run "reports" is the text
its last code cell prints (each lab ends with a cell that prints the figures of its run).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

__all__ = ["run_seed_sweep", "add_arguments", "main"]


def _last_printed(nb) -> str:
    """The text that the last code cell which printed anything printed."""
    for cell in reversed(nb.cells):
        if cell.cell_type == "code":
            text = "".join(out.get("text", "") for out in cell.get("outputs", [])
                           if out.get("output_type") == "stream" and out.get("name") == "stdout")
            if text.strip():
                return text.rstrip()
    return ""


def run_seed_sweep(notebook: Path, seeds, fast: bool = False, timeout: int = 1800, log=print):
    """Execute ``notebook`` once per seed; returns ``[(seed, seconds, report), ...]``. A run
    that fails is reported with its error instead of stopping the others."""
    import nbformat
    from nbclient import NotebookClient

    from .course.api import patched_environ

    rows = []
    for seed in seeds:
        nb = nbformat.read(str(notebook), as_version=4)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as cwd, \
                patched_environ(GENLAB_SEED=str(seed), GENLAB_FAST="1" if fast else None):
            try:
                NotebookClient(nb, timeout=timeout, kernel_name="python3",
                               resources={"metadata": {"path": cwd}}).execute()
                report = _last_printed(nb)
            except Exception as err:  # one failed seed must not hide the others
                last = (str(err).strip().splitlines() or [""])[-1]
                report = f"FAILED: {type(err).__name__}: {last}"
        seconds = time.perf_counter() - start
        log(f"seed {seed} ({seconds:.0f} s):\n{report}\n")
        rows.append((seed, seconds, report))
    return rows


def add_arguments(p) -> None:
    p.add_argument("lab", metavar="LAB", help="a lab id, e.g. 06_beta_vae")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], metavar="S",
                   help="the seeds (default 0 1 2 3 4)")
    p.add_argument("--fast", action="store_true", help="fast mode (GENLAB_FAST=1): a smoke test")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")


def main(args) -> int:
    from . import labs as registry
    from .course.paths import course_root

    if any(seed < 0 for seed in args.seeds):
        raise SystemExit("genlab seeds: seeds must be non-negative integers")
    try:
        notebook = registry.get(args.lab).solution(course_root())
    except KeyError as err:
        raise SystemExit(f"genlab seeds: {err.args[0]}") from None
    if not notebook.is_file():
        raise SystemExit(f"genlab seeds: {notebook} does not exist (run genlab build)")
    rows = run_seed_sweep(notebook, args.seeds, fast=args.fast, timeout=args.timeout)
    return 1 if any(report.startswith("FAILED") for _, _, report in rows) else 0
