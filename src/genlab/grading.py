"""The grading pipeline: nbgrader, configured and hardened for genlab.

Verbs (``genlab <verb> --help``):

- ``release``   regenerate ``labs/`` from ``solutions/`` (``nbgrader generate_assignment --force``).
- ``check``     a student's self-check: run a notebook's visible tests, report each exercise.
- ``grade``     autograde every submission, write feedback and a grades CSV, print a table.
- ``validate``  maintainers: sources build the solutions, solutions earn full marks, released
  stubs earn zero, ``labs/`` is byte-for-byte what ``release`` generates.

Fixes for the nbgrader 0.9 pitfalls (see ``../shared/NBGRADER_NOTES.md``) live here as
preprocessors that ``grading/nbgrader_config.py`` plugs in:

- :class:`DeduplicateIds`: a duplicated graded cell no longer aborts the whole batch.
- :class:`RestoreCells`: deleted test and locked cells come back; edited ones are reset.
- :class:`Execute`: per-cell time limits keyed on ``grade_id``, a total limit per notebook, and
  a kernel that dies (memory, ``os._exit``, segfault) costs only the cells it had not run.
- :class:`HideTests`: feedback shows neither hidden test code nor tracebacks into test code.

Student notebooks are only ever read: nbgrader copies them to ``autograded/`` and works there.
"""
from __future__ import annotations

import contextlib
import csv
import fnmatch
import filecmp
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, OverwriteCells
from nbgrader.preprocessors.execute import Execute as NbGraderExecute
from nbgrader import utils as nbutils
from traitlets import Dict, Integer

LABS = (
    "01_transposed_convolution", "02_autoencoder_bottleneck", "03_denoising_autoencoder",
    "04_vae", "05_kl_divergence", "06_beta_vae", "07_dcgan", "08_wgan",
)
KERNEL_NAME = "genlab-grader"
MEMORY_LIMIT_GB = float(os.environ.get("GENLAB_GRADER_MEMORY_GB", "8"))

# Error names genlab writes into a cell it could not run to the end.
KERNEL_DIED = "KernelDied"
NOT_RUN = "NotRun"
TIMED_OUT = "CellTimeoutError"


# --------------------------------------------------------------------------------------------
# Preprocessors
# --------------------------------------------------------------------------------------------

class DeduplicateIds(NbGraderPreprocessor):
    """Keep the last cell of each grade_id; earlier copies become ordinary cells.

    nbgrader's own version sets the copy's metadata to ``{}``, which ``CheckCellMetadata`` then
    rejects as an "old metadata format" and the whole batch stops (nbgrader #1083, #1941).
    Deleting the key instead leaves a plain cell that still runs.
    """

    def preprocess(self, nb, resources):
        seen = set()
        for cell in reversed(nb.cells):
            meta = cell.metadata.get("nbgrader")
            if not meta or not (meta.get("grade") or meta.get("solution") or meta.get("locked")):
                continue
            grade_id = meta.get("grade_id")
            if grade_id in seen:
                self.log.warning("Cell with id %r appears more than once; grading the last copy",
                                 grade_id)
                del cell.metadata["nbgrader"]
            else:
                seen.add(grade_id)
        return nb, resources


class RestoreCells(OverwriteCells):
    """nbgrader's OverwriteCells (resets edited test/locked cells from the gradebook) with every
    missing test or locked cell put back, each after the nearest earlier cell still present.

    Upstream only restores grade cells, and only when the cell just before it in the source is
    itself a grade or solution cell in the submission (otherwise it raises KeyError).
    """

    def preprocess(self, nb, resources):
        self.add_missing_cells = False  # we do it ourselves, below
        nb, resources = super().preprocess(nb, resources)
        from nbgrader.api import Gradebook
        with Gradebook(self.db_url) as gradebook:
            source_nb = gradebook.find_notebook(self.notebook_id, self.assignment_id)
            max_scores = {cell.name: cell.max_score for cell in source_nb.grade_cells}
            solution_ids = {cell.name for cell in source_nb.solution_cells}
            present = {cell.metadata.nbgrader["grade_id"] for cell in nb.cells
                       if cell.metadata.get("nbgrader", {}).get("grade_id")}
            order = [cell.name for cell in source_nb.source_cells]
            for index, source_cell in enumerate(source_nb.source_cells):
                name = source_cell.name
                if name in present or name in solution_ids and name not in max_scores:
                    continue
                if name not in max_scores and not source_cell.locked:
                    continue
                self.log.warning("Cell %r is missing from the submission; restoring it", name)
                if name in max_scores:
                    cell = self.missing_cell_transform(source_cell, max_scores[name],
                                                       is_solution=name in solution_ids)
                else:
                    cell = self._locked_cell(source_cell)
                position = self._insert_position(nb, order[:index])
                nb.cells.insert(position, cell)
                present.add(name)
        return nb, resources

    def _locked_cell(self, source_cell):
        cell = nbformat.v4.new_code_cell(source_cell.source) if source_cell.cell_type == "code" \
            else nbformat.v4.new_markdown_cell(source_cell.source)
        cell.metadata = {"deletable": False, "editable": False, "nbgrader": {
            "grade": False, "grade_id": source_cell.name, "locked": True, "solution": False,
            "task": False, "schema_version": 3, "checksum": source_cell.checksum}}
        return cell

    @staticmethod
    def _insert_position(nb, earlier_names):
        """Index just after the last cell of ``earlier_names`` present in ``nb`` (else 0)."""
        positions = {cell.metadata.get("nbgrader", {}).get("grade_id"): i
                     for i, cell in enumerate(nb.cells)}
        for name in reversed(earlier_names):
            if name in positions:
                return positions[name] + 1
        return 0


class Execute(NbGraderExecute):
    """nbgrader's Execute with time limits keyed on grade_id and no lost work on a dead kernel.

    ``cell_timeouts`` maps grade_id patterns to seconds (a student can edit tags, but
    RestoreCells has reset the grade_ids of test cells from the gradebook by now).
    ``total_timeout`` bounds a whole notebook. When the kernel dies, the cell it died in and
    every later cell get an error output, so the cells that ran keep their points.
    """

    cell_timeouts = Dict(help="grade_id pattern -> seconds").tag(config=True)
    default_timeout = Integer(120, help="seconds for a cell with no entry").tag(config=True)
    total_timeout = Integer(900, help="seconds for the whole notebook").tag(config=True)

    def _cell_timeout(self, cell):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        for pattern, seconds in self.cell_timeouts.items():
            if grade_id and fnmatch.fnmatchcase(grade_id, pattern):
                return int(seconds)
        return self.default_timeout

    def preprocess(self, nb, resources=None, km=None):
        from nbclient import NotebookClient
        NotebookClient.__init__(self, nb, km)
        self.timeout_func = self._cell_timeout
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        deadline = time.monotonic() + self.total_timeout
        stopped = None  # (ename, message) once the notebook cannot go on
        try:
            with self.setup_kernel():
                info = self.wait_for_reply(self.kc.kernel_info())
                self.nb.metadata["language_info"] = info["content"]["language_info"]
                for index, cell in enumerate(self.nb.cells):
                    if cell.cell_type != "code":
                        continue
                    if stopped:
                        _add_error(cell, NOT_RUN, stopped[1])
                        continue
                    if time.monotonic() > deadline:
                        stopped = (NOT_RUN, f"not run: the notebook used up its "
                                            f"{self.total_timeout} s time limit")
                        _add_error(cell, *stopped)
                        continue
                    try:
                        self.preprocess_cell(cell, resources, index)
                    except DeadKernelError:
                        _add_error(cell, KERNEL_DIED, "the kernel died while running this cell "
                                   "(out of memory, os._exit or a crash)")
                        stopped = (NOT_RUN, "not run: the kernel died in an earlier cell")
                    except CellTimeoutError:
                        _add_error(cell, TIMED_OUT, "this cell ran past its time limit and the "
                                   "kernel did not respond to an interrupt")
                        stopped = (NOT_RUN, "not run: an earlier cell hung the kernel")
        except DeadKernelError:
            self.log.warning("the kernel died; later cells were not run")
        self.set_widgets_metadata()
        return self.nb, self.resources


def _add_error(cell, ename, evalue):
    cell.outputs = list(cell.get("outputs", [])) + [nbformat.v4.new_output(
        "error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])]


class HideTests(ClearHiddenTests):
    """Feedback without hidden tests: removes their code (as upstream) and rewrites the error
    output of every test cell to its last line, so no traceback quotes a hidden assert."""

    def preprocess_cell(self, cell, resources, cell_index):
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if nbutils.is_grade(cell) and cell.cell_type == "code":
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: "
                                           f"{output.get('evalue', '')}"]
        return cell, resources


# --------------------------------------------------------------------------------------------
# Course paths and nbgrader set-up
# --------------------------------------------------------------------------------------------

def course_root() -> Path:
    """The repository root: ``$GENLAB_COURSE_ROOT``, else the nearest folder above the working
    directory with ``grading/nbgrader_config.py``, else the checkout genlab is installed from."""
    env = os.environ.get("GENLAB_COURSE_ROOT")
    if env:
        return Path(env).resolve()
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "grading" / "nbgrader_config.py").is_file():
            return folder
    here = Path(__file__).resolve().parents[2]
    if (here / "grading" / "nbgrader_config.py").is_file():
        return here
    raise SystemExit("genlab: cannot find the course (a folder with grading/nbgrader_config.py); "
                     "run from the repository or set GENLAB_COURSE_ROOT")


def _grader_kernelspec(state_dir: Path) -> Path:
    """Write the grading kernelspec: the venv's Python, fast mode, a memory limit (CPU only)
    and no network where the system allows it. Returns the folder to add to JUPYTER_PATH."""
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    prlimit = shutil.which("prlimit")
    if prlimit and not _cuda_present() and MEMORY_LIMIT_GB > 0:
        argv = [prlimit, f"--as={int(MEMORY_LIMIT_GB * 2**30)}", "--"] + argv
    unshare = shutil.which("unshare")
    if unshare and _works([unshare, "-rn", "true"]):
        argv = [unshare, "-rn"] + argv
    spec = {"argv": argv, "display_name": "genlab grader", "language": "python",
            "env": {"GENLAB_FAST": "1", "MPLBACKEND": "Agg", "GENLAB_NO_WIDGETS": "1",
                    "PYTHONUNBUFFERED": "1", "GENLAB_OFFLINE": "1"}}
    folder = state_dir / "jupyter"
    kernel_dir = folder / "kernels" / KERNEL_NAME
    kernel_dir.mkdir(parents=True, exist_ok=True)
    (kernel_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


def _cuda_present() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists()


def _works(argv) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@dataclass
class Course:
    """Where one grading run reads and writes. The defaults are the real course under
    ``grading/``; the demo and ``validate`` use their own state folders."""
    root: Path
    submitted: Path
    state: Path  # autograded/, feedback/, gradebook.db, grades.csv live here
    overrides: object = None  # a traitlets Config merged over grading/nbgrader_config.py

    @classmethod
    def default(cls, root: Path | None = None) -> "Course":
        root = root or course_root()
        return cls(root, root / "grading" / "submitted", root / "grading")

    @property
    def release_check(self) -> Path:
        return self.state / ".tmp" / "release"


@contextlib.contextmanager
def nbgrader_api(course: Course, release_dir: Path | None = None):
    """An ``NbGraderAPI`` on ``course`` with genlab's configuration and grading kernel.

    ``course.overrides`` (a traitlets Config) is merged last, e.g. shorter time limits in tests.
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py",
                                path=str(course.root / "grading")).load_config()
    cd = config.CourseDirectory
    cd.root = str(course.root)
    cd.submitted_directory = str(course.submitted)
    cd.autograded_directory = str(course.state / "autograded")
    cd.feedback_directory = str(course.state / "feedback")
    cd.db_url = "sqlite:///" + str(course.state / "gradebook.db")
    if release_dir is not None:
        cd.release_directory = str(release_dir)
    if course.overrides is not None:
        config.merge(course.overrides)
    # IPC transport: the kernel may live in a network namespace without loopback TCP, and
    # ipykernel does not warn about unencrypted TCP. Socket paths must be short and absolute.
    ipc_dir = Path(tempfile.mkdtemp(prefix="genlab-ipc-"))
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = str(ipc_dir / "kernel")
    course.state.mkdir(parents=True, exist_ok=True)
    jupyter_path = _grader_kernelspec(course.state / ".tmp")
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "GENLAB_FAST", "PYTHONWARNINGS", "PATH")}
    # nbgrader runs the `alembic` command: find it beside this Python even without an active venv
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), saved["PATH"] or ""])
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(jupyter_path),
                                                               saved["JUPYTER_PATH"]]))
    os.environ["GENLAB_FAST"] = "1"
    os.environ["PYTHONWARNINGS"] = "ignore"  # SQLAlchemy 2.1 warns on every autograde
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    finally:
        shutil.rmtree(ipc_dir, ignore_errors=True)
        _restore_env(saved)


def _restore_env(saved: dict) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _check(result: dict, what: str) -> None:
    if not result.get("success"):
        log = [ln for ln in (result.get("log") or "").splitlines() if "[ERROR]" in ln]
        detail = log or (result.get("error") or "").strip().splitlines()[-5:]
        raise SystemExit(f"genlab: {what} failed:\n  " + "\n  ".join(detail[-15:]))


def available_labs(root: Path) -> list[str]:
    return [lab for lab in LABS if (root / "solutions" / lab / f"{lab}.ipynb").is_file()]


# --------------------------------------------------------------------------------------------
# build / release
# --------------------------------------------------------------------------------------------

def build_solutions(root: Path, dest_root: Path | None = None) -> list[str]:
    """Compile ``notebooks/<lab>.py`` into ``solutions/<lab>/<lab>.ipynb``; return the changed."""
    from .authoring import build
    changed = []
    for source in sorted((root / "notebooks").glob("*.py")):
        lab = source.stem
        dest = (dest_root or root / "solutions") / lab / f"{lab}.ipynb"
        if build(source, dest):
            changed.append(lab)
    return changed


def release(root: Path, labs=None, into: Path | None = None, course: Course | None = None) -> None:
    """Generate the student version of each lab into ``labs/`` (or ``into``)."""
    course = course or Course.default(root)
    with nbgrader_api(course, release_dir=into) as api:
        for lab in labs or available_labs(root):
            _check(api.generate_assignment(lab, force=True, create=True), f"release of {lab}")


# --------------------------------------------------------------------------------------------
# check: a student's self-check
# --------------------------------------------------------------------------------------------

@dataclass
class CellResult:
    grade_id: str
    points: float
    passed: bool
    ename: str = ""
    message: str = ""


def exercise_of(grade_id: str, exercises) -> str:
    """``test_conv2d_matrix_hidden`` -> ``conv2d_matrix`` (the longest exercise name that fits)."""
    name = grade_id[5:] if grade_id.startswith("test_") else grade_id
    for exercise in sorted(exercises, key=len, reverse=True):
        if name == exercise or name.startswith(exercise + "_"):
            return exercise
    return name


def run_tests(notebook: Path, reference: Path | None = None, timeout: int = 120) -> list[CellResult]:
    """Execute a copy of ``notebook`` (fast mode, headless) and report every test cell.

    With ``reference`` (the released notebook) the test cells' code is taken from there, so an
    edited test cannot pass itself. The student's file is not written to.
    """
    from nbclient import NotebookClient
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
    env_keys = {"GENLAB_FAST": "1", "MPLBACKEND": "Agg", "GENLAB_NO_WIDGETS": "1"}
    saved = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(env_keys)
    ipc_dir = Path(tempfile.mkdtemp(prefix="genlab-ipc-"))
    try:
        from jupyter_client.manager import AsyncKernelManager
        km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(ipc_dir / "kernel"))
        client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=True,
                                resources={"metadata": {"path": str(notebook.parent)}})
        try:
            client.execute()
        except DeadKernelError:
            pass
    finally:
        _restore_env(saved)
        shutil.rmtree(ipc_dir, ignore_errors=True)
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


def _exercises_in(nb) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")]


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
    ref_nb = nbformat.read(str(reference), as_version=4) if reference and reference.is_file() else nb
    exercises = _exercises_in(ref_nb)
    print(f"genlab check: running the visible tests of {notebook.name} (fast mode) ...", flush=True)
    start = time.monotonic()
    rows = summarize_exercises(run_tests(notebook, reference, timeout=args.timeout), exercises)
    print(format_check_table(lab, rows, time.monotonic() - start))
    return 0 if rows and all(r["status"] == "passed" for r in rows) else 1


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


# --------------------------------------------------------------------------------------------
# grade: the instructor's round
# --------------------------------------------------------------------------------------------

@dataclass
class Grade:
    student: str
    lab: str
    score: float = 0.0
    max_score: float = 0.0
    notes: list[str] = field(default_factory=list)


def _submissions(submitted: Path, labs) -> dict[str, list[str]]:
    """lab -> students with ``<submitted>/<student>/<lab>/<lab>.ipynb``."""
    out: dict[str, list[str]] = {}
    if not submitted.is_dir():
        return out
    for student_dir in sorted(p for p in submitted.iterdir() if p.is_dir()):
        for lab in labs:
            if (student_dir / lab).is_dir():
                out.setdefault(lab, []).append(student_dir.name)
    return out


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.is_dir() else {}


def grade(course: Course, labs=None, log=print) -> list[Grade]:
    """Autograde every submission of ``labs``, generate feedback, export CSV; return grades."""
    labs = list(labs or available_labs(course.root))
    todo = _submissions(course.submitted, labs)
    before = _fingerprint(course.submitted)
    grades: list[Grade] = []
    with nbgrader_api(course, release_dir=course.release_check) as api:
        for lab in labs:
            if lab not in todo:
                continue
            _check(api.generate_assignment(lab, force=True, create=True),
                   f"registering {lab} in the gradebook")
            for student in todo[lab]:
                start = time.monotonic()
                result = api.autograde(lab, student, force=True, create=True)
                g = Grade(student, lab)
                if not result.get("success"):
                    g.notes.append("could not be graded: " + _autograde_reason(result))
                else:
                    fb = api.generate_feedback(lab, student, force=True)
                    if not fb.get("success"):
                        g.notes.append("feedback failed: " + _autograde_reason(fb))
                    g.notes.extend(_execution_notes(course, lab, student))
                g.notes.append(f"{time.monotonic() - start:.1f} s")
                grades.append(g)
                log(f"  graded {student}/{lab} ({g.notes[-1]})")
        _fill_scores(api, grades)
    _export_csv(course, grades)
    if _fingerprint(course.submitted) != before:  # never expected; say so loudly if it happens
        raise SystemExit("genlab: a submitted file changed during grading; please report this")
    return grades


def _autograde_reason(result: dict) -> str:
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    for pattern, reason in [
        (r"NotJSONError|does not appear to be JSON|Unreadable Notebook|JSONDecodeError",
         "the file is not a valid notebook (damaged or not JSON)"),
        (r"SchemaTooOld|SchemaTooNew", "its nbgrader cell metadata is damaged"),
        (r"Kernel didn't respond|Kernel died before replying", "the kernel did not start"),
    ]:
        if re.search(pattern, text):
            return reason
    errors = re.findall(r"^\s*([A-Za-z_.]*(?:Error|Exception)): (.+)$", text, re.M)
    errors = [e for e in errors if not e[0].endswith("NbGraderException")]
    if errors:
        return f"{errors[-1][0].split('.')[-1]}: {errors[-1][1][:160]}"
    return "unknown error (see the log above)"


def _execution_notes(course: Course, lab: str, student: str) -> list[str]:
    path = course.state / "autograded" / student / lab / f"{lab}.ipynb"
    if not path.is_file():
        return []
    nb = nbformat.read(str(path), as_version=4)
    notes = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            ename = out.get("ename")
            if ename == KERNEL_DIED:
                notes.append("kernel died (memory limit or crash); later cells not run")
            elif ename == TIMED_OUT:
                gid = cell.metadata.get("nbgrader", {}).get("grade_id") or "a cell"
                notes.append(f"time limit hit in {gid}")
            elif ename == "MemoryError" or "can't allocate memory" in out.get("evalue", ""):
                notes.append("ran out of memory (limit %g GB)" % MEMORY_LIMIT_GB)
            elif ename == NOT_RUN and "time limit" in out.get("evalue", ""):
                notes.append("notebook time limit hit")
    return list(dict.fromkeys(notes))


def _fill_scores(api, grades: list[Grade]) -> None:
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(api.coursedir.db_url) as gb:
        for g in grades:
            try:
                assignment = gb.find_assignment(g.lab)
                g.max_score = float(assignment.max_score)
                sub = gb.find_submission(g.lab, g.student)
                g.score = float(sub.score) if not any(n.startswith("could not") for n in g.notes) else 0.0
            except MissingEntry:
                g.score = 0.0


def _export_csv(course: Course, grades: list[Grade]) -> Path:
    path = course.state / "grades.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "lab", "score", "max_score", "notes"])
        for g in grades:
            writer.writerow([g.student, g.lab, f"{g.score:g}", f"{g.max_score:g}",
                             "; ".join(g.notes[:-1])])
    return path


def format_grade_table(grades: list[Grade]) -> str:
    labs = list(dict.fromkeys(g.lab for g in grades))
    students = list(dict.fromkeys(g.student for g in grades))
    by = {(g.student, g.lab): g for g in grades}
    short = {lab: lab.split("_")[0] for lab in labs}
    sw = max([len(s) for s in students] + [7])
    head = f"  {'student':<{sw}}  " + "  ".join(f"{'lab ' + short[l]:>9}" for l in labs) + "  notes"
    lines = [head, "  " + "-" * (len(head) - 2)]
    for s in students:
        cells, notes = [], []
        for lab in labs:
            g = by.get((s, lab))
            cells.append(f"{g.score:g}/{g.max_score:g}".rjust(9) if g else " " * 9)
            if g:
                notes += [f"{short[lab]}: {n}" if len(labs) > 1 else n for n in g.notes[:-1]]
        lines.append(f"  {s:<{sw}}  " + "  ".join(cells) + "  " + "; ".join(notes))
    return "\n".join(lines)


def cmd_grade(args) -> int:
    root = course_root()
    course = Course.default(root)
    labs = args.labs or None
    unknown = [lab for lab in (labs or []) if lab not in available_labs(root)]
    if unknown:
        print(f"genlab grade: unknown lab(s) {', '.join(unknown)}; available: "
              f"{', '.join(available_labs(root))}", file=sys.stderr)
        return 2
    if args.examples or not _submissions(course.submitted, labs or LABS):
        course = Course(root, root / "grading" / "examples" / "submitted", root / "grading" / "demo")
        print(f"genlab grade: no submissions in {Course.default(root).submitted.relative_to(root)}/; "
              f"grading the bundled examples in grading/examples/ (results in grading/demo/)")
    print(f"genlab grade: autograding with fast mode on; feedback -> "
          f"{(course.state / 'feedback').relative_to(root)}/")
    start = time.monotonic()
    grades = grade(course, labs)
    if not grades:
        print("genlab grade: nothing to grade")
        return 1
    print("\n" + format_grade_table(grades))
    print(f"\n  grades: {(course.state / 'grades.csv').relative_to(root)}    "
          f"feedback: {(course.state / 'feedback').relative_to(root)}/<student>/<lab>/    "
          f"{len(grades)} submissions in {time.monotonic() - start:.0f} s")
    return 0


# --------------------------------------------------------------------------------------------
# validate: the maintainers' gate
# --------------------------------------------------------------------------------------------

def compare_trees(a: Path, b: Path) -> list[str]:
    """Paths that differ between two folders (missing on either side or different bytes)."""
    fa, fb = _fingerprint(a), _fingerprint(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def validate(root: Path, labs=None, log=print, scores: bool = True) -> list[str]:
    """Return a list of problems (empty when all is well). ``scores=False`` checks only that
    solutions/ and labs/ are in sync, without grading."""
    problems: list[str] = []
    labs = list(labs or available_labs(root))
    with tempfile.TemporaryDirectory(prefix="genlab-validate-") as tmp:
        tmp = Path(tmp)
        # 1. notebooks/*.py build exactly solutions/
        build_solutions(root, tmp / "solutions")
        for lab in labs:
            built = tmp / "solutions" / lab / f"{lab}.ipynb"
            if built.is_file() and not filecmp.cmp(built, root / "solutions" / lab / f"{lab}.ipynb",
                                                   shallow=False):
                problems.append(f"solutions/{lab}/{lab}.ipynb is not what notebooks/{lab}.py "
                                "builds (run: genlab build)")
        # 2. labs/ is what release generates
        course = Course(root, tmp / "submitted", tmp / "state")
        release(root, labs, into=tmp / "labs", course=course)
        for lab in labs:
            diff = compare_trees(tmp / "labs" / lab, root / "labs" / lab)
            if diff:
                problems.append(f"labs/{lab} differs from a fresh release in {', '.join(diff)} "
                                "(run: genlab release)")
        # 3. solutions earn full marks, stubs earn zero
        if not scores:
            return problems
        for lab in labs:
            for student, source in (("solution", root / "solutions" / lab),
                                    ("stub", tmp / "labs" / lab)):
                dest = course.submitted / student / lab
                shutil.copytree(source, dest)
        grades = grade(course, labs, log=log)
        for g in grades:
            notes = "; ".join(g.notes[:-1])
            if g.student == "solution" and (g.max_score <= 0 or g.score != g.max_score):
                problems.append(f"{g.lab}: the solution earns {g.score:g}/{g.max_score:g} {notes}")
            if g.student == "stub" and g.score != 0:
                problems.append(f"{g.lab}: the released stub earns {g.score:g}/{g.max_score:g}")
            log(f"  {g.lab}: {g.student} {g.score:g}/{g.max_score:g}")
    return problems


def cmd_validate(args) -> int:
    root = course_root()
    problems = validate(root, args.labs or None)
    if problems:
        print("genlab validate: FAILED\n  " + "\n  ".join(problems))
        return 1
    print("genlab validate: OK (sources build solutions, solutions full marks, stubs zero, "
          "labs in sync)")
    return 0


def cmd_release(args) -> int:
    root = course_root()
    changed = build_solutions(root) if not args.no_build else []
    if changed:
        print(f"genlab release: rebuilt solutions for {', '.join(changed)} from notebooks/")
    labs = args.labs or available_labs(root)
    release(root, labs)
    print(f"genlab release: labs/ regenerated for {', '.join(labs)}")
    return 0


def cmd_build(args) -> int:
    root = course_root()
    changed = build_solutions(root)
    print("genlab build: " + (f"rebuilt {', '.join(changed)}" if changed else "solutions up to date"))
    return 0


# --------------------------------------------------------------------------------------------
# Submissions for examples and tests
# --------------------------------------------------------------------------------------------

def fill_in(release_nb, source_nb, answers: dict[str, str] | None = None):
    """A student's notebook: the release with every solution cell answered — from the source
    notebook's solution, or from ``answers`` (grade_id -> code; ``None`` keeps the stub)."""
    from .authoring import solution_code
    answers = answers or {}
    solutions = {c.metadata["nbgrader"]["grade_id"]: solution_code(c.source)
                 for c in source_nb.cells if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.from_dict(json.loads(json.dumps(release_nb)))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in solutions and cell.metadata["nbgrader"].get("solution"):
            answer = answers.get(gid, solutions[gid])
            if answer is not None:
                cell.source = answer
    return nb
