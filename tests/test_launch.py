"""genlab lab: the student and instructor JupyterLab profiles, and the students' work/ copy."""
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import JUPYTERLAB_TOKEN

from genlab import cli, launch

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "jupyter" / "student"
NBGRADER_PLUGINS = {f"@jupyter/nbgrader:{name}" for name in (
    "assignment-list", "course-list", "create-assignment", "formgrader", "menu",
    "validate-assignment")}


def test_work_gets_new_files_and_never_loses_an_edit(tmp_path):
    labs, work = tmp_path / "labs", tmp_path / "work"
    (labs / "01").mkdir(parents=True)
    (labs / "01" / "01.ipynb").write_text("release 1")
    assert launch.sync_work(labs, work) == [work / "01" / "01.ipynb"]
    (work / "01" / "01.ipynb").write_text("my answers")
    (labs / "01" / "01.ipynb").write_text("release 2")   # the repository was updated
    (labs / "02").mkdir()
    (labs / "02" / "02.ipynb").write_text("a new lab")
    assert launch.sync_work(labs, work) == [work / "02" / "02.ipynb"]
    assert (work / "01" / "01.ipynb").read_text() == "my answers"


def test_student_profile_disables_and_locks_every_nbgrader_tool():
    page = json.loads((STUDENT / "labconfig" / "page_config.json").read_text())
    for key in ("disabledExtensions", "lockedExtensions"):
        assert {name for name, on in page[key].items() if on} >= NBGRADER_PLUGINS, key
    server = json.loads((STUDENT / "jupyter_server_config.json").read_text())
    extensions = server["ServerApp"]["jpserver_extensions"]
    assert {name for name, on in extensions.items() if not on and "nbgrader" in name} == {
        f"nbgrader.server_extensions.{name}" for name in (
            "formgrader", "validate_assignment", "assignment_list", "course_list")}


def test_the_profile_names_every_plugin_nbgrader_installs():
    """A new nbgrader with a new plugin must not slip into the students' JupyterLab."""
    import nbgrader
    static = Path(nbgrader.__file__).parent / "labextension" / "static"
    found = set()
    for path in static.glob("*.js"):
        found |= set(re.findall(r'"(@jupyter/nbgrader:[\w-]+)"', path.read_text()))
    assert found == NBGRADER_PLUGINS


def test_lab_command_uses_the_profile(monkeypatch):
    argv, env = launch.lab_command(ROOT, "student", port=8899, extra=["--no-browser"])
    assert env["JUPYTER_CONFIG_DIR"] == str(STUDENT)
    assert argv[1:3] == ["-m", "jupyterlab"] and argv[-1] == "--no-browser"
    assert f"--notebook-dir={ROOT / 'work'}" in argv and "--port=8899" in argv
    argv, env = launch.lab_command(ROOT, "instructor")
    assert env["JUPYTER_CONFIG_DIR"] == str(ROOT / "jupyter" / "instructor")
    assert f"--notebook-dir={ROOT}" in argv
    with pytest.raises(ValueError, match="profile"):
        launch.lab_command(ROOT, "teacher")


def test_genlab_lab_copies_labs_into_work_then_starts_jupyterlab(tmp_path, monkeypatch):
    (tmp_path / "labs" / "01").mkdir(parents=True)
    (tmp_path / "labs" / "01" / "01.ipynb").write_text("{}")
    monkeypatch.setenv("GENLAB_COURSE_ROOT", str(tmp_path))
    started = []
    monkeypatch.setattr(launch.os, "execve", lambda path, argv, env: started.append((argv, env)))
    cli.main(["lab", "--port", "9000", "--", "--no-browser"])
    argv, env = started[0]
    assert (tmp_path / "work" / "01" / "01.ipynb").read_text() == "{}"
    assert env["JUPYTER_CONFIG_DIR"] == str(tmp_path / "jupyter" / "student")
    assert argv[-1] == "--no-browser" and "--port=9000" in argv
    cli.main(["lab", "--instructor"])
    assert started[1][1]["JUPYTER_CONFIG_DIR"] == str(tmp_path / "jupyter" / "instructor")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None  # a redirect comes back as its HTTPError


def _get(url: str) -> tuple[int, str]:
    """Status and page, not following redirects."""
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(f"{url}?token={JUPYTERLAB_TOKEN}", timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


def _page_config(html: str) -> dict:
    return json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', html, re.S)[1])


@pytest.mark.slow
def test_the_servers_of_both_profiles(start_jupyterlab, tmp_path):
    student = start_jupyterlab("student", tmp_path)
    instructor = start_jupyterlab("instructor", ROOT)
    status, html = _get(f"{student}/lab")
    page = _page_config(html)
    assert NBGRADER_PLUGINS <= set(page["disabledExtensions"]), page["disabledExtensions"]
    assert NBGRADER_PLUGINS <= set(page["lockedExtensions"])
    assert _get(f"{student}/formgrader")[0] == 404
    status, html = _get(f"{instructor}/lab")
    assert not NBGRADER_PLUGINS & set(_page_config(html)["disabledExtensions"])
    assert _get(f"{instructor}/formgrader")[0] == 302  # to its pages (they open the gradebook)
