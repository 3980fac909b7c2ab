"""``genlab bench grading``: autograding throughput against the number of workers, side by side in
one run, and where the time of one submission goes.

A synthetic class (every student the model solution, so every notebook runs to the end; or,
with ``mix``, a class from ``genlab example-class`` with blank, mistaken, partly done and broken
students, each checked against the score its manifest expects) is graded from scratch once per
worker count. The serial time of one notebook is split into the start of the student's warm
sandboxes (:mod:`genlab.course.pool`, shared out over the notebooks), kernel start (a fork of
the warm sandbox), imports (the locked set-up cell), the student's own cells, and the rest:
the judged test cells and nbgrader's own work (sanitizing, the gradebook, feedback HTML).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import nbformat

from .. import labs as registry
from .api import KERNEL_NAME, ipc_kernels, patched_environ, write_kernelspec
from .examples import check_grades, fill_in
from .examples import make_class as make_mixed_class
from .grade import grade
from .paths import Course, course_root


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (from /proc/stat): the sandboxed kernels are
    not our children, so this is how their CPU time is counted."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / os.sysconf("SC_CLK_TCK")


def make_class(root: Path, dest: Path, labs, students: int) -> Course:
    """A private copy of the course with ``students`` honest submissions of each lab."""
    for folder in ("solutions", "labs", "notebooks"):
        shutil.copytree(root / folder, dest / folder)
    (dest / "grading").mkdir()
    shutil.copy(root / "grading" / "nbgrader_config.py", dest / "grading")
    for lab in labs:
        source = nbformat.read(str(dest / "solutions" / lab / f"{lab}.ipynb"), as_version=4)
        release = nbformat.read(str(dest / "labs" / lab / f"{lab}.ipynb"), as_version=4)
        for i in range(students):
            folder = dest / "grading" / "submitted" / f"student{i:03d}" / lab
            folder.mkdir(parents=True)
            nbformat.write(fill_in(release, source), str(folder / f"{lab}.ipynb"))
    return Course(dest, dest / "grading" / "submitted", dest / "grading")


def split_notebooks(notebooks: dict[str, Path], root: Path) -> dict[str, float]:
    """Mean seconds per notebook, as ``genlab grade`` runs one student's ``notebooks`` (lab ->
    path): kernel start (forked from the student's warm sandbox where there is one), imports
    (the set-up cell), the other graded cells; and the warm sandboxes' own start, shared out."""
    from . import pool
    from .plugins import kernel_answer_key
    split: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, ipc_kernels() as ip, \
            patched_environ(JUPYTER_PATH=str(write_kernelspec(Path(tmp)))):
        kernels = pool.for_student(Path(ip).parent, list(notebooks))
        with kernels or contextlib.nullcontext():
            for lab, notebook in notebooks.items():
                control, hidden = None, ",".join(sorted(kernel_answer_key(root, lab)))
                if kernels is not None:
                    start = time.perf_counter()
                    control = kernels.control_for(lab, hidden)
                    key = "warm sandbox start (per student, shared out)"
                    split[key] = split.get(key, 0.0) + time.perf_counter() - start
                with patched_environ(**{pool.ENV: control, "GENLAB_SANDBOX_HIDE": hidden or None}):
                    for key, value in _split_one(notebook, ip).items():
                        split[key] = split.get(key, 0.0) + value
    return {key: value / len(notebooks) for key, value in split.items()}


def _split_one(notebook: Path, ip: str) -> dict[str, float]:
    from jupyter_client.manager import KernelManager
    nb = nbformat.read(str(notebook), as_version=4)
    graded = [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader")]
    own = [c for c in graded[1:] if not c.metadata["nbgrader"].get("grade")]  # not the tests
    km = KernelManager(kernel_name=KERNEL_NAME, transport="ipc", ip=ip)
    start = time.perf_counter()
    km.start_kernel()
    client = km.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    times = {"kernel start": time.perf_counter() - start}
    try:
        start = time.perf_counter()
        client.execute_interactive(graded[0].source, timeout=300, output_hook=_quiet)
        times["imports (set-up cell)"] = time.perf_counter() - start
        start = time.perf_counter()
        for cell in own:
            client.execute_interactive(cell.source, timeout=300, output_hook=_quiet)
        times["the student's cells"] = time.perf_counter() - start
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
    return times


def _quiet(message) -> None:
    """Discard a kernel's output (the benchmark times cells; it does not show them)."""


def run(labs=None, students: int = 4, workers=(1, 2), log=print,
        mix: dict[str, int] | None = None) -> dict:
    """Grade the class once per worker count. ``mix`` (kind -> weight, see
    ``genlab.course.examples``): a mixed class of ``students`` instead of honest ones."""
    root = course_root()
    labs = list(labs or registry.available(root))
    result = {"labs": labs, "students": students, "cores": os.cpu_count(), "runs": [],
              "mix": mix}
    with tempfile.TemporaryDirectory(prefix="genlab-bench-grading-") as tmp:
        manifest = None
        if mix:
            manifest = make_mixed_class(Path(tmp) / "class", students, labs, mix=mix, root=root)
            course = Course.default(Path(tmp) / "class")
        else:
            course = make_class(root, Path(tmp), labs, students)
        n = students * len(labs)
        for count in workers:
            run_course = Course(course.root, course.submitted, Path(tmp) / f"state-{count}")
            start, cpu = time.perf_counter(), machine_cpu_seconds()
            grades = grade(run_course, labs, log=lambda *a: None, force=True, workers=count)
            wall, cpu = time.perf_counter() - start, machine_cpu_seconds() - cpu
            if manifest:
                problems = check_grades(manifest, grades)
                assert not problems, "unexpected scores: " + "; ".join(problems[:5])
            else:
                assert all(g.score == g.max_score for g in grades), "an honest submission lost points"
            row = {"workers": count, "seconds": wall, "cpu_seconds": cpu,
                   "per_minute": 60 * n / wall, "cpu_per_submission": cpu / n}
            result["runs"].append(row)
            log(f"  {count} worker(s): {n} notebooks in {wall:.0f} s, "
                f"{row['per_minute']:.1f} per minute, {row['cpu_per_submission']:.1f} CPU s each")
            if count == 1:  # the split below is of honest notebooks (every cell runs)
                timed = [g.seconds for g in grades if not manifest
                         or manifest["class"][g.student]["kind"] == "honest"] or [0.0]
                mean = sum(timed) / len(timed)
        honest = "student000" if not manifest else next(
            (s for s, e in manifest["class"].items() if e["kind"] == "honest"), None)
        split = split_notebooks({lab: course.submitted / honest / lab / f"{lab}.ipynb"
                                 for lab in labs}, root) if honest else {}
        if honest and any(r["workers"] == 1 for r in result["runs"]):
            split["judged tests and nbgrader (verdicts, gradebook, feedback)"] = max(0.0, mean - sum(split.values()))
        result["serial_split"] = split
    return result


def format_result(result: dict) -> str:
    who = "honest students" if not result.get("mix") else "students of a mixed class (" + \
        ", ".join(f"{k}={v}" for k, v in result["mix"].items()) + ")"
    lines = [f"grading {result['students']} {who} x {len(result['labs'])} lab(s) "
             f"on {result['cores']} cores", "", "  workers  notebooks/min  speed-up  CPU s/notebook"]
    base = result["runs"][0]["per_minute"]
    for r in result["runs"]:
        lines.append(f"  {r['workers']:>7}  {r['per_minute']:>13.1f}  {r['per_minute'] / base:>7.2f}x"
                     f"  {r['cpu_per_submission']:>14.1f}")
    lines += ["", "  one notebook, serial (mean over the labs):"]
    for key, value in result.get("serial_split", {}).items():
        lines.append(f"    {key:<42} {value:5.2f} s")
    return "\n".join(lines)
