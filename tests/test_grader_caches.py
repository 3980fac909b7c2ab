"""What the grader keeps between notebooks to save CPU must not change a verdict or a page:
nbgrader's metadata validation with the schema checked once, and feedback pages rendered with
compiled templates and highlighted cells kept (genlab.course.plugins)."""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import jsonschema
import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbgrader.nbgraderformat import MetadataValidator, common

from genlab.course import plugins

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "solutions" / "04_vae" / "04_vae.ipynb"


def _graded(nb):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))


def _tamper_points(cell):
    cell.metadata.nbgrader["points"] = "ten"


def _tamper_id(cell):
    cell.metadata.nbgrader["grade_id"] = 7


def _tamper_flag(cell):
    cell.metadata.nbgrader["locked"] = "yes"


def _verdict(nb, module):
    saved = common.jsonschema
    common.jsonschema = module
    try:
        MetadataValidator().validate_nb(copy.deepcopy(nb))
        return None
    except Exception as err:   # noqa: BLE001 (the verdict is what we compare)
        return type(err).__name__, str(err)
    finally:
        common.jsonschema = saved


def test_nbgraders_validator_checks_the_schema_once_with_the_same_verdicts():
    assert isinstance(common.jsonschema, plugins._SchemaCheckedOnce)  # installed with the plugins
    nb = nbformat.read(str(LAB), as_version=4)
    once = plugins._SchemaCheckedOnce()
    assert _verdict(nb, once) is None and _verdict(nb, once) is None   # valid, then remembered
    for tamper in (_tamper_points, _tamper_id, _tamper_flag):
        bad = copy.deepcopy(nb)
        tamper(_graded(bad))
        expected = _verdict(bad, jsonschema)
        assert expected is not None and expected[0] == "ValidationError", tamper.__name__
        assert _verdict(bad, once) == expected, tamper.__name__
        assert _verdict(bad, once) == expected, tamper.__name__     # never remembered as valid


def test_feedback_pages_are_the_same_with_templates_and_cells_kept():
    """The page of a fresh nbconvert exporter and of two FeedbackExporters in a row (the second
    with every template compiled and every cell highlighted already), the same once parsed."""
    bs4 = pytest.importorskip("bs4")
    nb = nbformat.read(str(LAB), as_version=4)
    parse = lambda html: str(bs4.BeautifulSoup(html, "html.parser"))  # noqa: E731
    reference = parse(HTMLExporter(template_name="classic").from_notebook_node(nb)[0])
    first = plugins.FeedbackExporter(template_name="classic").from_notebook_node(nb)[0]
    assert plugins._TEMPLATES.store, "the compiled templates were not kept"
    second = plugins.FeedbackExporter(template_name="classic").from_notebook_node(nb)[0]
    assert parse(first) == parse(second) == reference


def test_cloudpickles_submodule_scan_is_remembered_with_the_same_answer():
    """The judge pickles a test's functions by value; cloudpickle's scan of sys.modules for the
    submodules a function uses is kept until sys.modules changes, with the same answer."""
    import importlib
    import sys
    import types

    import cloudpickle

    from genlab.course import judge
    with judge._answer_keys_by_value():
        pass
    find = cloudpickle.cloudpickle._find_imported_submodules
    assert getattr(find, "remembered", False)
    original = find.original

    def uses(x):
        return torch.nn.functional.relu(x) + email.mime.text.MIMEText("x").get_payload() * 0

    import email
    import torch
    deps = [torch, email, types]
    for _ in range(2):
        assert find(uses.__code__, deps) == original(uses.__code__, deps)
    sys.modules.pop("email.mime.text", None)
    sys.modules.pop("email.mime", None)
    without = find(uses.__code__, deps)
    importlib.import_module("email.mime.text")          # sys.modules grew: asked again
    with_it = find(uses.__code__, deps)
    assert with_it == original(uses.__code__, deps)
    assert sys.modules["email.mime.text"] in with_it and len(with_it) > len(without)


def test_rendered_cells_are_shared_through_the_course_folder_but_not_the_answers(tmp_path,
                                                                                 monkeypatch):
    """Another worker (a fresh process: nothing in memory) reads the shared cells from the
    course's folder and renders the same page; a student's answers never go there."""
    bs4 = pytest.importorskip("bs4")
    nb = nbformat.read(str(LAB), as_version=4)
    answers = [c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    monkeypatch.setattr(plugins, "_RENDERED", {})
    plugins.share_rendered_cells(tmp_path)
    try:
        first = plugins.FeedbackExporter(template_name="classic").from_notebook_node(nb)[0]
        files = list(tmp_path.glob("*.html"))
        shared = [c for c in nb.cells if not c.metadata.get("nbgrader", {}).get("solution")]
        assert 0 < len(files) <= len(shared)
        info = nb.metadata.get("language_info", {})
        lexer = info.get("pygments_lexer", info.get("name"))

        def stored(cell):
            key = ("code", cell.source, lexer, None)
            return (tmp_path / (hashlib.sha256(repr(key).encode()).hexdigest() + ".html")).exists()
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert answers and not any(stored(c) for c in code if c.source in answers)
        assert all(stored(c) for c in code if c.metadata.get("nbgrader", {}).get("grade"))
        monkeypatch.setattr(plugins, "_RENDERED", {})            # a fresh worker
        second = plugins.FeedbackExporter(template_name="classic").from_notebook_node(nb)[0]
        assert len(plugins._RENDERED) >= len(files)
    finally:
        plugins.share_rendered_cells(None)
    parse = lambda html: str(bs4.BeautifulSoup(html, "html.parser"))  # noqa: E731
    assert parse(first) == parse(second)
