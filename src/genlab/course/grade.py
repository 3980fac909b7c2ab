"""``genlab grade``: the instructor's round. Autograde every submission, write feedback and a
grades CSV, print a table. Student notebooks are only ever read: nbgrader copies them to
``autograded/`` and works there."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from .. import config
from .api import nbgrader_api, require_success
from .paths import Course, available_labs, course_root, fingerprint
from .plugins import KERNEL_DIED, NOT_RUN, TIMED_OUT


@dataclass
class Grade:
    """One submission's result. ``graded`` is False when nbgrader could not grade it at all
    (then ``score`` is 0 and ``reasons`` says why); ``reasons`` also lists what cost points
    beyond failed tests (a dead kernel, a time limit)."""
    student: str
    lab: str
    score: float = 0.0
    max_score: float = 0.0
    graded: bool = True
    seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)


def grade(course: Course, labs=None, log=print, force: bool = False,
          workers: int = 1, scheduler: str | None = None) -> list[Grade]:
    """Autograde every submission of ``labs``, generate feedback, export CSV; return grades.

    Each result is appended to ``results.jsonl`` as soon as it is known, so a crash loses
    nothing graded so far; a rerun reuses the results of unchanged submissions unless ``force``.
    With ``workers > 1``, students are graded in parallel processes (each notebook in its own
    sandbox, all labs of one student in one process); with ``scheduler`` (``"local"`` for a
    Dask ``LocalCluster`` of ``workers`` processes, or a ``tcp://HOST:PORT`` address) on Dask
    workers, where a task lost with its worker is run again elsewhere. The results are the same.
    After each submission, files outside that student's own output are checked: a change is
    reported against the student.
    """
    labs = list(labs or available_labs(course.root))
    todo = course.submissions(labs)
    before = fingerprint(course.submitted)
    done = {} if force else _load_results(course.results)
    with nbgrader_api(course, release_dir=course.release_check) as api:
        for lab in labs:
            if lab in todo:
                require_success(api.generate_assignment(lab, force=True, create=True),
                                f"registering {lab} in the gradebook")
    results: dict[tuple[str, str], Grade] = {}
    work: dict[str, list[str]] = {}  # student -> labs to grade, in registry order
    for lab in labs:
        for student in todo.get(lab, []):
            digest = _digest(course.submitted / student / lab)
            previous = done.get((student, lab))
            if previous and previous.pop("digest", None) == digest:
                results[(student, lab)] = Grade(**previous)
                log(f"  {student}/{lab}: already graded (unchanged; --force to regrade)")
            else:
                work.setdefault(student, []).append(lab)
    for g in _run(course, work, workers, scheduler):
        results[(g.student, g.lab)] = g
        _append_result(course.results, g, _digest(course.submitted / g.student / g.lab))
        log(f"  graded {g.student}/{g.lab} ({g.seconds:.1f} s)")
    grades = [results[(student, lab)] for lab in labs for student in todo.get(lab, [])]
    export_csv(course.csv, grades)
    if fingerprint(course.submitted) != before:  # never expected; say so loudly if it happens
        raise SystemExit("genlab: a submitted file changed during grading; please report this")
    return grades


def _run(course: Course, work: dict[str, list[str]], workers: int, scheduler: str | None = None):
    """Grade ``work`` (student -> labs); yield each Grade as soon as it is known."""
    if scheduler:
        yield from _run_on_dask(course, work, workers, scheduler)
        return
    if workers <= 1 or len(work) <= 1:
        for student, labs in work.items():
            yield from grade_student(course, student, labs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    # A fresh server process forks the workers (nothing inherited from this one: no kernels,
    # sockets or threads) after importing, once for all of them, what grading imports.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["genlab.course.grade", "genlab.course.plugins",
                                    "genlab.course.judge", "nbgrader.apps.api", "torch"])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        threads = max(1, (os.cpu_count() or 1) // workers)
        futures = [pool.submit(_grade_student_rows, course, student, labs, threads)
                   for student, labs in work.items()]
        for future in as_completed(futures):
            for row in future.result():
                yield Grade(**row)


def _run_on_dask(course: Course, work: dict[str, list[str]], workers: int, scheduler: str):
    """The same tasks on Dask distributed, with a progress bar. Dask reschedules the tasks of
    a worker that dies; grading a student again is harmless (nbgrader regrades in place)."""
    from distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm
    cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                           dashboard_address=None) if scheduler == "local" else None
    try:
        with Client(cluster or scheduler) as client:
            # kernel threads: this machine's cores over the workers (exact for a local cluster)
            threads = max(1, (os.cpu_count() or 1) // max(1, len(client.ncores())))
            futures = [client.submit(_grade_student_rows, course, student, labs, threads,
                                     key=f"genlab-grade-{student}", pure=False)
                       for student, labs in work.items()]
            total = sum(len(labs) for labs in work.values())
            with tqdm(total=total, desc="grading", unit="notebook") as bar:
                for future in as_completed(futures):
                    for row in future.result():
                        bar.update()
                        yield Grade(**row)
    finally:
        if cluster is not None:
            cluster.close()


def _grade_student_rows(course: Course, student: str, labs: list[str], threads: int):
    """In a worker process: the kernels share the cores with the other workers' kernels
    (oversubscribed OpenMP threads spin and waste CPU)."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    return [asdict(g) for g in grade_student(course, student, labs, parallel=True)]


def grade_student(course: Course, student: str, labs: list[str], parallel: bool = False):
    """Autograde and give feedback to one student's submissions of ``labs`` (the unit of work
    that ``--workers`` spreads over processes); yield a Grade per lab."""
    from ..device import one_cpu_thread
    from .plugins import share_rendered_cells
    share_rendered_cells(course.state / ".cache" / "rendered-cells")
    # The grader's own torch (the judged tests' references and comparisons, on small tensors)
    # on one thread: with more, OpenMP's idle threads spin while the kernel works, and with
    # several workers they spin against each other (the grader's CPU per notebook doubled).
    with nbgrader_api(course) as api, _kernel_pool(api, course, labs), one_cpu_thread():
        for lab in labs:
            yield _grade_one(api, course, lab, student, parallel)


def _kernel_pool(api, course: Course, labs: list[str]):
    """Kernels forked from a warm sandbox for this student's labs (:mod:`genlab.course.pool`),
    where the kernels are sandboxed at all."""
    from . import pool
    sockets = Path(api.coursedir.config.KernelManager.ip).parent
    return pool.for_student(sockets, labs) or contextlib.nullcontext()


def _grade_one(api, course: Course, lab: str, student: str, parallel: bool = False) -> Grade:
    """Autograde and give feedback to one submission; check that it touched nothing else (in
    parallel runs, other students' results are being written, so only the course and the
    submissions are watched)."""
    start = time.monotonic()
    watched = _watch(course, student, others=not parallel)
    result = api.autograde(lab, student, force=True, create=True)
    g = Grade(student, lab)
    if not result.get("success"):
        g.graded = False
        g.reasons.append("could not be graded: " + _autograde_reason(result))
    else:
        fb = api.generate_feedback(lab, student, force=True)
        if not fb.get("success"):
            g.reasons.append("feedback failed: " + _autograde_reason(fb))
        g.reasons.extend(_execution_reasons(course.autograded(student, lab)))
    now = _watch(course, student, others=not parallel)
    changed = sorted(k for k in watched.keys() | now.keys() if watched.get(k) != now.get(k))
    if changed:
        g.graded = False
        g.reasons.append(f"TAMPERING: files outside this submission changed while it was graded: "
                         f"{', '.join(changed[:5])}")
        print(f"genlab: WARNING: while grading {student}/{lab}, files outside its own output "
              f"changed: {', '.join(changed[:5])}", file=sys.stderr, flush=True)
    _fill_scores(api.coursedir.db_url, [g])
    g.seconds = time.monotonic() - start
    return g


def _watch(course: Course, student: str, others: bool = True) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file a submission must not change: the course's sources, library
    and configuration, every submission, and the other students' results."""
    roots = [course.root / "solutions", course.root / "labs", course.root / "notebooks",
             course.root / "grading" / "nbgrader_config.py", course.submitted,
             Path(__file__).resolve().parents[1]]  # the genlab package graders import
    if others:
        roots += [p for sub in ("autograded", "feedback") if (course.state / sub).is_dir()
                  for p in (course.state / sub).iterdir() if p.name != student]
    out = {}
    for root in roots:
        files = [root] if root.is_file() else root.rglob("*") if root.is_dir() else []
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                stat = path.stat()
                out[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return out


def _digest(folder: Path) -> str:
    """One hash of a submission folder's files (a rerun regrades a changed submission)."""
    h = hashlib.sha256()
    for name, digest in sorted(fingerprint(folder).items()):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def _append_result(path: Path, g: Grade, digest: str) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({**asdict(g), "digest": digest}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _load_results(path: Path) -> dict[tuple[str, str], dict]:
    """The last result of each (student, lab) in ``results.jsonl`` (a torn last line, from a
    crash mid-write, is ignored)."""
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                out[(row["student"], row["lab"])] = row
            except (ValueError, KeyError, TypeError):
                continue
    return out


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


def _execution_reasons(autograded: Path) -> list[str]:
    """What stopped an executed notebook early (from the error outputs genlab's Execute wrote)."""
    if not autograded.is_file():
        return []
    nb = nbformat.read(str(autograded), as_version=4)
    reasons = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            ename = out.get("ename")
            if ename == KERNEL_DIED:
                reasons.append("kernel died (memory limit or crash); later cells not run")
            elif ename == TIMED_OUT:
                gid = cell.metadata.get("nbgrader", {}).get("grade_id") or "a cell"
                reasons.append(f"time limit hit in {gid}")
            elif ename == "MemoryError" or "can't allocate memory" in out.get("evalue", ""):
                reasons.append("ran out of memory (limit %g GB)" % config.grader_memory_gb())
            elif ename == NOT_RUN and "time limit" in out.get("evalue", ""):
                reasons.append("notebook time limit hit")
    return list(dict.fromkeys(reasons))


def _fill_scores(db_url: str, grades: list[Grade]) -> None:
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(db_url) as gb:
        for g in grades:
            try:
                g.max_score = float(gb.find_assignment(g.lab).max_score)
                g.score = float(gb.find_submission(g.lab, g.student).score) if g.graded else 0.0
            except MissingEntry:
                g.score = 0.0


def export_csv(path: Path, grades: list[Grade]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "lab", "score", "max_score", "notes"])
        for g in grades:
            writer.writerow([g.student, g.lab, f"{g.score:g}", f"{g.max_score:g}",
                             "; ".join(g.reasons)])
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
                notes += [f"{short[lab]}: {n}" if len(labs) > 1 else n for n in g.reasons]
        lines.append(f"  {s:<{sw}}  " + "  ".join(cells) + "  " + "; ".join(notes))
    return "\n".join(lines)


def cmd_grade(args) -> int:
    root = course_root()
    course = Course.default(root)
    labs = args.labs or None
    known = available_labs(root)
    unknown = [lab for lab in (labs or []) if lab not in known]
    if unknown:
        print(f"genlab grade: unknown lab(s) {', '.join(unknown)}; available: "
              f"{', '.join(known)}", file=sys.stderr)
        return 2
    if args.examples or not course.submissions(labs or known):
        course = Course.examples(root)
        print(f"genlab grade: no submissions in {Course.default(root).submitted.relative_to(root)}/; "
              f"grading the bundled examples in grading/examples/ (results in grading/demo/)")
    if args.all_cells:
        from traitlets.config import Config
        course.overrides = Config()
        course.overrides.Execute.skip_cells_with_tag = ""
    print(f"genlab grade: autograding with fast mode on; feedback -> "
          f"{(course.state / 'feedback').relative_to(root)}/")
    start = time.monotonic()
    course.db = args.db
    grades = grade(course, labs, force=args.force, workers=args.workers, scheduler=args.scheduler)
    if not grades:
        print("genlab grade: nothing to grade")
        return 1
    print("\n" + format_grade_table(grades))
    print(f"\n  grades: {course.csv.relative_to(root)}    "
          f"feedback: {(course.state / 'feedback').relative_to(root)}/<student>/<lab>/    "
          f"{len(grades)} submissions in {time.monotonic() - start:.0f} s")
    return 0
