"""The grading kernel's sandbox, in pieces: its command line and its fallback."""
import json
from pathlib import Path

import pytest

from genlab.course import api, sandbox

ROOT = Path(__file__).resolve().parents[1]


def test_without_bubblewrap_grading_warns_loudly_and_require_refuses(monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "available", lambda: False)
    monkeypatch.setenv("GENLAB_GRADER_SANDBOX", "auto")
    argv = api.kernel_argv()
    assert "genlab.course.sandbox" not in argv and "ipykernel_launcher" in argv
    assert "WARNING: no sandbox" in capsys.readouterr().err
    api.kernel_argv(warn=False)                       # genlab check on a student's laptop
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("GENLAB_GRADER_SANDBOX", "require")
    with pytest.raises(SystemExit, match="bubblewrap"):
        api.kernel_argv()
    monkeypatch.setenv("GENLAB_GRADER_SANDBOX", "off")
    api.kernel_argv()
    assert capsys.readouterr().err == ""


def test_with_bubblewrap_the_kernel_starts_through_the_sandbox(monkeypatch):
    monkeypatch.setattr(sandbox, "available", lambda: True)
    monkeypatch.setenv("GENLAB_GRADER_SANDBOX", "auto")
    assert api.kernel_argv()[1:3] == ["-m", "genlab.course.sandbox"]


def test_sandbox_passes_only_the_grading_settings(monkeypatch, tmp_path):
    if not sandbox.shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed")
    connection = tmp_path / "kernel.json"
    connection.write_text(json.dumps({"transport": "ipc", "ip": str(tmp_path / "ipc" / "k")}))
    monkeypatch.setenv("GENLAB_FAST", "1")
    monkeypatch.setenv("GENLAB_GRADER_SECRET", "s3cret")
    monkeypatch.setenv("DATABASE_PASSWORD", "s3cret")
    argv = sandbox.bwrap_argv(str(connection), ["python"])
    assert "--clearenv" in argv and "--unshare-all" in argv and "--die-with-parent" in argv
    assert "s3cret" not in " ".join(argv)
    assert argv[argv.index("GENLAB_FAST") + 1] == "1"
    assert argv[argv.index("--chdir") + 1] == "/tmp/work"
    assert str(tmp_path / "ipc") in argv       # its own socket folder, and nothing of the course
    for folder in ("solutions", "labs", "grading", "notebooks", "tests"):
        assert not any(a.startswith(str(ROOT / folder)) for a in argv), folder


def test_an_environment_under_tmp_is_not_hidden_by_the_sandboxs_tmpfs(monkeypatch, tmp_path):
    """The Python environment is bound after /tmp's fresh tmpfs: a course cloned (and its
    virtual environment made) under /tmp still has a working kernel."""
    if not sandbox.shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed")
    connection = tmp_path / "kernel.json"
    connection.write_text(json.dumps({"transport": "ipc", "ip": str(tmp_path / "ipc" / "k")}))
    monkeypatch.setattr(sandbox, "_python_paths", lambda: [Path("/tmp/course/.venv")])
    argv = sandbox.bwrap_argv(str(connection), ["python"])
    tmpfs = argv.index("--tmpfs")
    assert argv[tmpfs + 1] == "/tmp"
    bind = [i for i, a in enumerate(argv) if a == "--ro-bind" and argv[i + 1] == "/tmp/course/.venv"]
    assert bind and bind[0] > tmpfs


_FORKED = """
import os, sys, time
block = b"\\x01" * (300 << 20)              # 300 MB, every page touched
for _ in range(3):
    if os.fork() == 0:
        {child}
        time.sleep(2)
        os._exit(0)
time.sleep(2.5)
"""


@pytest.mark.parametrize("child, killed", [
    ("pass", False),                                          # pages shared with the parent
    ("own = bytearray(block)", True),                         # 300 MB more each: 1.2 GB in all
])
def test_the_memory_limit_counts_shared_pages_once(monkeypatch, child, killed):
    """The supervisor sums resident memory cheaply and, only over the limit, asks for the
    proportional share: four processes that share 300 MB (a zygote and its kernel) stay under a
    0.7 GB limit although their resident sum is 1.2 GB; four that each own 300 MB are stopped."""
    import sys
    monkeypatch.setenv("GENLAB_GRADER_MEMORY_GB", "0.7")
    code = _FORKED.format(child=child)
    status = sandbox.supervise([sys.executable, "-c", code], extra_processes=3)
    assert (status == sandbox.KILLED_FOR_MEMORY) is killed, status
    if not killed:
        assert status == 0
