"""``genlab check``: a student's self-check. Runs a copy of the notebook in the grading kernel
(the same kernel and environment as ``genlab grade``) and reports each exercise."""
from __future__ import annotations

import contextlib
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .. import labs as registry
from ..labs import exercise_of as labs_exercise_of
from .api import KERNEL_NAME, ipc_kernels, patched_environ, write_kernelspec
from .paths import course_root
from .plugins import NOT_RUN, Execute, Verdict


@dataclass
class CellResult:
    grade_id: str
    points: float
    passed: bool
    ename: str = ""
    message: str = ""


def exercise_of(grade_id: str, exercises) -> str:
    """The exercise a test cell reports under: ``test_conv2d_matrix_hidden`` ->
    ``conv2d_matrix``; a test cell of no known exercise under its own name."""
    return labs_exercise_of(grade_id, exercises) or (
        grade_id[5:] if grade_id.startswith("test_") else grade_id)


def run_tests(notebook: Path, reference: Path | None = None, timeout: int = 120) -> list[CellResult]:
    """Execute a copy of ``notebook`` in the grading kernel and report every test cell.

    With ``reference`` (the released notebook) the test cells' code is taken from there, so an
    edited test cannot pass itself. The student's file is not written to.
    """
    from jupyter_client.manager import AsyncKernelManager

    nb = nbformat.read(str(notebook), as_version=4)
    if reference is not None and reference.is_file():
        ref_cells = {c.metadata["nbgrader"]["grade_id"]: c for c in
                     nbformat.read(str(reference), as_version=4).cells
                     if c.metadata.get("nbgrader", {}).get("grade")}
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in ref_cells:
                cell.source = ref_cells[gid].source
                cell.metadata["nbgrader"] = ref_cells[gid].metadata["nbgrader"]
    # As when graded: demo cells skipped, judged test cells run in this process, the others in
    # a scope of their own in the kernel (genlab.course.plugins.Execute).
    resources = {"nbgrader": {"assignment": notebook.stem, "notebook": notebook.stem},
                 "metadata": {"path": str(notebook.parent)}}
    with tempfile.TemporaryDirectory(prefix="genlab-check-") as tmp, ipc_kernels() as ip, \
            patched_environ(JUPYTER_PATH=str(write_kernelspec(Path(tmp), warn=False))):
        km = AsyncKernelManager(kernel_name=KERNEL_NAME, transport="ipc", ip=ip)
        execute = Execute(kernel_name=KERNEL_NAME, default_timeout=timeout,
                          cell_timeouts={"test_*": timeout}, allow_errors=True,
                          interrupt_on_timeout=True, quiet_kernel=True)
        nb, _ = execute.preprocess(nb, resources, km=km)
    nb, _ = Verdict().preprocess(nb, resources)  # as grading
    return collect_results(nb)


def collect_results(nb) -> list[CellResult]:
    """Pass/fail of every autograded test cell of an executed notebook."""
    out = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade") or cell.cell_type != "code":
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        executed = cell.get("execution_count") is not None or errors
        result = CellResult(meta["grade_id"], float(meta.get("points") or 0), bool(executed))
        if errors:
            result.passed = False
            result.ename, result.message = errors[-1].get("ename", ""), errors[-1].get("evalue", "")
        elif not executed:
            result.ename, result.message = NOT_RUN, "not run"
        out.append(result)
    return out


def summarize_exercises(results: list[CellResult], exercises) -> list[dict]:
    """Group test cells by exercise: points earned/possible, status and the first hint.

    An exercise whose code still raises ``NotImplementedError`` is "not yet done" rather than
    "failed", whichever of its test cells noticed first."""
    rows: dict[str, dict] = {}
    for r in results:
        name = exercise_of(r.grade_id, exercises)
        row = rows.setdefault(name, {"exercise": name, "earned": 0.0, "points": 0.0,
                                     "status": "passed", "message": ""})
        row["points"] += r.points
        if r.passed:
            row["earned"] += r.points
            continue
        not_done = r.ename == "NotImplementedError" or "NotImplementedError" in r.message \
            or "not implemented yet" in r.message
        if not_done or row["status"] == "passed":
            row["status"] = "not yet done" if not_done else "failed"
        if not row["message"] or not_done:
            row["message"] = _one_message(r)
    return list(rows.values())


def _one_message(r: CellResult) -> str:
    if r.ename == "NotImplementedError":
        return "replace `raise NotImplementedError()` with your code"
    text = re.sub(r"\x1b\[[0-9;]*m", "", r.message or "").strip()
    return f"{r.ename}: {text}" if text else r.ename


def format_check_table(lab: str, rows: list[dict], seconds: float) -> str:
    width = max([len(r["exercise"]) for r in rows] + [8])
    lines = [f"\n{lab}: visible tests (hidden tests run when your work is graded)", ""]
    lines.append(f"  {'exercise':<{width}}  {'points':>7}  result")
    for r in rows:
        pts = f"{r['earned']:g}/{r['points']:g}"
        lines.append(f"  {r['exercise']:<{width}}  {pts:>7}  {r['status']}")
        if r["message"]:
            for i, line in enumerate(r["message"].splitlines()[:6]):
                lines.append(f"  {'':<{width}}  {'':>7}    {'-> ' if i == 0 else '   '}{line}")
    earned = sum(r["earned"] for r in rows)
    total = sum(r["points"] for r in rows)
    done = sum(r["status"] == "passed" for r in rows)
    lines.append(f"\n  {done} of {len(rows)} exercises pass, {earned:g}/{total:g} points "
                 f"on the visible tests ({seconds:.0f} s)")
    return "\n".join(lines)


def cmd_check(args) -> int:
    notebook = Path(args.notebook).resolve()
    if not notebook.is_file():
        print(f"genlab check: no notebook at {notebook}", file=sys.stderr)
        return 2
    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except Exception as err:  # not JSON, not a notebook
        print(f"genlab check: {notebook} is not a readable notebook ({err})", file=sys.stderr)
        return 2
    lab = notebook.stem
    reference = None
    with contextlib.suppress(SystemExit):
        reference = course_root() / "labs" / lab / f"{lab}.ipynb"
    if lab in registry.LABS:
        exercises = registry.get(lab).exercise_names
    else:  # a notebook genlab does not know: its own solution cells
        exercises = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                     if c.metadata.get("nbgrader", {}).get("solution")]
    print(f"genlab check: running the visible tests of {notebook.name} (fast mode) ...", flush=True)
    start = time.monotonic()
    rows = summarize_exercises(run_tests(notebook, reference, timeout=args.timeout), exercises)
    print(format_check_table(lab, rows, time.monotonic() - start))
    return 0 if rows and all(r["status"] == "passed" for r in rows) else 1
