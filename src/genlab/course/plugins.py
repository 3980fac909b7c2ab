"""nbgrader plug-ins that fix nbgrader 0.9 pitfalls (its issues #1083, #1941, #917, #1363),
plugged in by ``grading/nbgrader_config.py``.

- :class:`DeduplicateIds`: a duplicated graded cell no longer aborts the whole batch.
- :class:`RestoreCells`: deleted test and locked cells come back; edited ones are reset.
- :class:`Execute`: per-cell time limits keyed on ``grade_id``, a total limit per notebook, and
  a kernel that dies (memory, ``os._exit``, segfault) costs only the cells it had not run.
- :class:`Verdict`: a test cell earns its points exactly when it ran without an error.
- :class:`HideTests`: feedback shows neither hidden test code nor tracebacks into test code.
- :class:`FeedbackExporter`: the feedback HTML without nbconvert's second pass through
  BeautifulSoup, and with each cell's highlighted code and Markdown kept for the next student.
"""
from __future__ import annotations

import ast
import contextlib
import fnmatch
import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from jinja2 import BytecodeCache, pass_context
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbgrader import utils as nbutils
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, OverwriteCells
from nbgrader.preprocessors.execute import Execute as NbGraderExecute
from traitlets import Bool, Dict, Integer, Unicode

from .. import config
from ..authoring import DEMO_TAG, scoped_test
from ..labs import exercise_of
from . import pool
from .api import patched_environ
from .judge import JudgeStopped

# Error names genlab writes into a cell it could not run to the end.
KERNEL_DIED = "KernelDied"
NOT_RUN = "NotRun"
TIMED_OUT = "CellTimeoutError"
ANSWER_KEY = "AnswerKeyUsed"

class _SchemaCheckedOnce:
    """Stands in for the ``jsonschema`` module in nbgrader's metadata validator
    (``nbgrader.nbgraderformat.common``), which calls ``jsonschema.validate`` for every cell's
    metadata four times per notebook; each call first checks the schema itself against its
    meta-schema (1.4 CPU s of an eight-lab submission). Here the schema is checked once, and
    metadata found valid before is not validated again. The verdict is the same: the same
    validator, the same best-matching error."""

    def __init__(self):
        self._validators: dict[str, object] = {}
        self._valid: set[tuple[str, str]] = set()

    def validate(self, instance, schema) -> None:
        import jsonschema
        schema_key = json.dumps(schema, sort_keys=True)
        key = (schema_key, json.dumps(instance, sort_keys=True, default=repr))
        if key in self._valid:
            return
        if schema_key not in self._validators:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self._validators[schema_key] = cls(schema)
        error = jsonschema.exceptions.best_match(self._validators[schema_key].iter_errors(instance))
        if error is not None:
            raise error
        if len(self._valid) > 50_000:
            self._valid.clear()
        self._valid.add(key)

    def __getattr__(self, name):
        import jsonschema
        return getattr(jsonschema, name)


def _check_nbgrader_schema_once() -> None:
    from nbgrader.nbgraderformat import common
    if not isinstance(common.jsonschema, _SchemaCheckedOnce):
        common.jsonschema = _SchemaCheckedOnce()


_check_nbgrader_schema_once()


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

    def output(self, outs, msg, display_id, cell_index):
        """Keep at most ``GENLAB_GRADER_OUTPUT_MB`` of output per notebook; drop the rest as it
        arrives (a notebook that prints 500 MB must not fill the grader's memory)."""
        size = len(json.dumps(msg.get("content", {}), default=str))
        self._output_bytes = getattr(self, "_output_bytes", 0) + size
        if self._output_bytes > self._output_limit:
            if not getattr(self, "_output_dropped", False):
                self._output_dropped = True
                outs.append(nbformat.v4.new_output(
                    "stream", name="stdout", text=f"[genlab: output over "
                    f"{self._output_limit / 2**20:g} MB dropped]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    skip_cells_with_tag = Unicode(DEMO_TAG, help="cells with this tag are not run (grading mode: "
                                  "the demo cells); '' runs every cell").tag(config=True)

    quiet_kernel = Bool(False, help="discard the kernel's own stdout/stderr (its start-up "
                        "banner), as genlab check does").tag(config=True)

    async def async_start_new_kernel(self, **kwargs):
        if self.quiet_kernel:
            kwargs.setdefault("stdout", subprocess.DEVNULL)
            kwargs.setdefault("stderr", subprocess.DEVNULL)
        return await super().async_start_new_kernel(**kwargs)

    start_new_kernel = run_sync(async_start_new_kernel)

    def _cell_timeout(self, cell):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        for pattern, seconds in self.cell_timeouts.items():
            if grade_id and fnmatch.fnmatchcase(grade_id, pattern):
                return int(seconds)
        return self.default_timeout

    def preprocess_cell(self, cell, resources, index):
        """Test cells run in a scope of their own (:func:`genlab.authoring.scoped_test`); the
        notebook keeps their source as written. A judged test cell runs in this process
        (:mod:`genlab.course.judge`) from its trusted source, never in the kernel."""
        if not (nbutils.is_grade(cell) and cell.cell_type == "code"):
            return super().preprocess_cell(cell, resources, index)
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        if self._judge is not None and grade_id in self._trusted.tests:
            cell.outputs = self._judge.run(self._trusted.tests[grade_id], grade_id,
                                           self._cell_timeout(cell))
            cell.execution_count = index + 1
            return cell, resources
        original = cell.source
        cell.source = scoped_test(original)
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            cell.source = original

    def preprocess(self, nb, resources=None, km=None):
        from nbclient import NotebookClient
        NotebookClient.__init__(self, nb, km)
        self.timeout_func = self._cell_timeout
        self._output_limit = config.grader_output_mb() * 2**20
        self._output_bytes, self._output_dropped = 0, False
        never_skip_graded_cells(self.nb, self.skip_cells_with_tag)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        deadline = time.monotonic() + self.total_timeout
        stopped = None  # (ename, message) once the notebook cannot go on
        self._trusted = trusted_cells(self.nb, resources)
        hidden = ",".join(self._trusted.answer_key)  # read by the sandbox as the kernel starts
        # a kernel forked from the student's warm sandbox, when genlab grade keeps one
        zygote = pool.control_for((resources or {}).get("nbgrader", {}).get("assignment"), hidden)
        try:
            with patched_environ(GENLAB_SANDBOX_HIDE=hidden or None,
                                 **{pool.ENV: zygote}), self.setup_kernel():
                info = self.wait_for_reply(self.kc.kernel_info())
                self.nb.metadata["language_info"] = info["content"]["language_info"]
                self._judge = self._start_judge(resources)
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
                    except JudgeStopped as err:
                        _add_error(cell, err.ename, str(err))
                        stopped = (NOT_RUN, "not run: the kernel hung or died in an earlier cell")
        except DeadKernelError:
            self.log.warning("the kernel died; later cells were not run")
        finally:
            if self._judge is not None:
                self._judge.close()
                self._judge.client.stop_channels()
                self._judge = None
        self.set_widgets_metadata()
        return self.nb, self.resources


    _judge = None
    _trusted = None

    def _start_judge(self, resources):
        """A :class:`~genlab.course.judge.Judge` on this notebook's kernel when the lab has
        judged test cells (the registry says which), with the setup cells run in it."""
        from jupyter_client.blocking import BlockingKernelClient
        from jupyter_core.utils import run_sync
        from .judge import Judge
        if not self._trusted.tests:
            return None
        client = BlockingKernelClient()
        client.load_connection_info(self.km.get_connection_info())
        client.start_channels(shell=True, iopub=True, stdin=False, hb=True)
        judge = Judge(client, run_sync(self.km.interrupt_kernel), self._trusted.names)
        for source in self._trusted.setup:
            judge.setup(source)
        return judge


@dataclass
class TrustedCells:
    """What a judge runs, from the instructor's copy: the lab's exercise names, its locked
    setup cells and its judged test cells (grade_id -> source, hidden tests included)."""
    names: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    tests: dict[str, str] = field(default_factory=dict)
    answer_key: list[str] = field(default_factory=list)  # modules the kernel does not get


def trusted_cells(nb, resources) -> TrustedCells:
    """The judged cells of this notebook's lab. When grading, their source comes from the
    gradebook (never from the submission); ``genlab check`` (no gradebook) takes them from the
    notebook it was given, whose test cells it has already reset from the release."""
    from .. import labs
    info = resources.get("nbgrader", {}) if resources else {}
    lab_id = info.get("assignment")
    if lab_id not in labs.LABS:
        return TrustedCells()
    lab = labs.get(lab_id)
    if info.get("db_url"):
        from nbgrader.api import Gradebook
        with Gradebook(info["db_url"]) as gradebook:
            record = gradebook.find_notebook(info.get("notebook", lab_id), lab_id)
            graded = {c.name for c in record.grade_cells} | {c.name for c in record.solution_cells}
            cells = [(c.name, c.cell_type, c.locked, c.source) for c in record.source_cells]
    else:
        graded = {c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                  if nbutils.is_grade(c) or nbutils.is_solution(c)}
        cells = [(c.metadata.get("nbgrader", {}).get("grade_id"), c.cell_type,
                  nbutils.is_locked(c), c.source) for c in nb.cells]
    trusted = TrustedCells(names=lab.exercise_names)
    for name, kind, locked, source in cells:
        if kind != "code" or not name:
            continue
        if name in graded and lab.judged(name):
            trusted.tests[name] = source
        elif locked and name not in graded:
            trusted.setup.append(source)
    trusted.answer_key = answer_key(lab, trusted.setup)
    return trusted


def answer_key(lab, setup: list[str]) -> list[str]:
    """Every test is judged, so the kernel needs no reference answers: the sandbox hides the
    lab's genlab.<topic> (unless the lab's own set-up cells import it)."""
    module = f"genlab.{lab.topic}"
    return [] if any(module in source for source in setup) else [module]


def kernel_answer_key(root, lab_id: str) -> set[str]:
    """The answer key a lab's grading kernel must not see, found as :func:`trusted_cells` finds
    it for a submission, from the instructor's copy of the lab."""
    nb = nbformat.read(str(root / "solutions" / lab_id / f"{lab_id}.ipynb"), as_version=4)
    return set(trusted_cells(nb, {"nbgrader": {"assignment": lab_id}}).answer_key)


def never_skip_graded_cells(nb, tag: str) -> None:
    """Grading skips the cells tagged ``tag`` (the demo cells); a student's tag on a solution,
    locked or test cell is removed so that every graded cell runs."""
    for cell in nb.cells:
        if cell.metadata.get("nbgrader") and tag in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != tag]


def _add_error(cell, ename, evalue):
    cell.outputs = list(cell.get("outputs", [])) + [nbformat.v4.new_output(
        "error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])]


class Verdict(NbGraderPreprocessor):
    """What a test cell earns, decided by genlab rather than by what the kernel printed.

    nbgrader gives partial credit for a number a test cell displays, zero for any text on
    stderr (a warning from honest code) and full marks to a test cell that never ran. Here a
    test cell earns its points exactly when it ran to the end without an error: displayed
    results are dropped, stderr is kept as ordinary output, a cell that did not run gets an
    error. Runs just before ``SaveAutoGrades``.
    """

    def preprocess(self, nb, resources):
        lab = resources.get("nbgrader", {}).get("assignment")
        self._answer_key = answer_key_uses(nb, lab)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, cell_index):
        if not (nbutils.is_grade(cell) and cell.cell_type == "code"):
            return cell, resources
        # Honest test cells print nothing: their output can only be a student's hook (which
        # could show hidden test code in the feedback) or a number meant as partial credit.
        outputs = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if cell.get("execution_count") is None and not outputs:
            outputs.append(_error(NOT_RUN, "this test cell did not run"))
        exercise = exercise_of(cell.metadata["nbgrader"]["grade_id"], self._answer_key)
        if exercise:
            outputs = [_error(ANSWER_KEY, self._answer_key[exercise])]
        cell.outputs = outputs
        return cell, resources


def _error(ename: str, evalue: str):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                  traceback=[f"{ename}: {evalue}"])


def answer_key_uses(nb, lab_id: str | None) -> dict[str, str]:
    """Exercise -> why, for each solution cell that reaches for the lab's reference answers
    (``genlab.<topic>``): an import of the topic module or of one of its names, or the module's
    name in a string (``importlib.import_module("genlab.tconv")``). A static check: the
    references stay importable in the kernel, so a determined student can still hide the use."""
    from .. import labs
    if lab_id not in labs.LABS:
        return {}
    topic = labs.get(lab_id).topic
    module = f"genlab.{topic}"
    found = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("solution") or cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            hit = None
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == module or node.module.startswith(module + "."):
                    hit = f"from {node.module} import ..."
                elif node.module == "genlab" and any(a.name == topic for a in node.names):
                    hit = f"from genlab import {topic}"
            elif isinstance(node, ast.Import) and any(
                    a.name == module or a.name.startswith(module + ".") for a in node.names):
                hit = f"import {module}"
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and module in node.value:
                hit = f"the string {node.value!r}"
            if hit:
                found[meta["grade_id"]] = (
                    f"the solution of {meta['grade_id']} uses {module}, which holds the reference "
                    f"answers ({hit}); write the exercise yourself to earn its points")
                break
    return found


class HideTests(ClearHiddenTests):
    """Feedback without hidden tests: removes their code (as upstream) and rewrites the error
    output of every test cell to its last line, so no traceback quotes a hidden assert.

    The other code cells lose their outputs: the student has them in their own notebook, and a
    student's cell printing what its kernel saw during grading (a test's arguments, a helper
    it was handed) must not carry it into the feedback."""

    def preprocess_cell(self, cell, resources, cell_index):
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.cell_type == "code" and not nbutils.is_grade(cell):
            cell.outputs = []
        if nbutils.is_grade(cell) and cell.cell_type == "code":
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: "
                                           f"{output.get('evalue', '')}"]
        return cell, resources


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTMLExporter for feedback pages, made cheap for a class:

    * without its final pass, which parses the whole page with BeautifulSoup to add ``alt``
      text to images and ``tabindex`` to JupyterLab cells (a third of the cost of a page); the
      ``alt`` text is added with a pattern (nbgrader's feedback template is the classic one,
      with no JupyterLab cells to mark);
    * with the highlighted code and the rendered Markdown of each cell kept for the next page:
      every student's copy of a lab shares its text, test and locked cells, so after the first
      student only the answers are highlighted again;
    * with the compiled templates kept too (a Jinja bytecode cache in memory, checked against
      each template's source): nbgrader makes a new exporter for every page.
    """

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = _TEMPLATES
        return environment

    def from_notebook_node(self, nb, resources=None, **kw):
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        self.register_filter("highlight_code", _Remembered(
            self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self)),
            lexer))
        resources = self._init_resources(resources)
        self.register_filter("filter_data_type", WidgetsDataTypeFilter(
            notebook_metadata=self._nb_metadata, parent=self, resources=resources))
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        return _IMG_WITHOUT_ALT.sub(
            r'<img alt="No description has been provided for this image"\1', html), resources

    @pass_context
    def markdown2html(self, context, source):
        cell = context.get("cell", {})
        if cell.get("attachments"):
            return super().markdown2html(context, source)
        path = context.get("resources", {}).get("metadata", {}).get("path", "")
        return _remember(("markdown", source, path, self.embed_images, self.anchor_link_text,
                          self.exclude_anchor_links),
                         lambda: super(FeedbackExporter, self).markdown2html(context, source),
                         shared=not _is_answer(cell.get("metadata", {})))


class _Remembered:
    """A highlight filter whose results are kept (same source and language; of the cell's
    metadata nbconvert reads only ``magics_language``, while the rest, such as the execution
    timestamps of every executed cell, differs from page to page)."""

    def __init__(self, highlight, lexer):
        self.highlight, self.lexer = highlight, lexer

    def __call__(self, source, language=None, metadata=None):
        key = ("code", source, language or self.lexer, (metadata or {}).get("magics_language"))
        return _remember(key, lambda: self.highlight(source, language, metadata),
                         shared=not _is_answer(metadata or {}))


class _MemoryBytecodeCache(BytecodeCache):
    """Compiled Jinja templates kept in this process (Jinja checks each against its source)."""

    def __init__(self):
        self.store: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.store:
            bucket.bytecode_from_string(self.store[bucket.key])

    def dump_bytecode(self, bucket):
        self.store[bucket.key] = bucket.bytecode_to_string()


_TEMPLATES = _MemoryBytecodeCache()
_RENDERED: dict[tuple, str] = {}
_SHARED: list[Path] = []   # the course's folder of rendered cells (see share_rendered_cells)


def share_rendered_cells(folder) -> None:
    """Keep the rendered cells that every copy of a lab shares (text, test and locked cells;
    not the student's answers) in ``folder`` as well, for the other grading workers of a class
    and for later runs: highlighting a lab's code costs a second or more per fresh process.
    ``None``: in this process's memory only."""
    _SHARED[:] = [Path(folder)] if folder else []


def _is_answer(metadata) -> bool:
    return bool(metadata.get("nbgrader", {}).get("solution"))


def _remember(key: tuple, render, shared: bool = False) -> str:
    if key in _RENDERED:
        return _RENDERED[key]
    file = None
    if shared and _SHARED:   # named by the hash of what is rendered: no entry is another's
        file = _SHARED[0] / (hashlib.sha256(repr(key).encode()).hexdigest() + ".html")
        with contextlib.suppress(OSError, UnicodeDecodeError):
            _RENDERED[key] = file.read_text(encoding="utf-8")
            return _RENDERED[key]
    if len(_RENDERED) > 20_000:   # a few labs' cells; a long class run stays bounded
        _RENDERED.clear()
    _RENDERED[key] = value = render()
    if file is not None:
        with contextlib.suppress(OSError):
            file.parent.mkdir(parents=True, exist_ok=True)
            partial = file.with_suffix(f".{os.getpid()}.part")
            partial.write_text(value, encoding="utf-8")
            os.replace(partial, file)   # whole or not at all, whichever worker writes it
    return value


_IMG_WITHOUT_ALT = re.compile(r"<img(?![^>]*\balt=)(\s|>|/)")
