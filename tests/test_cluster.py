"""Class-scale grading on real parts: a Dask scheduler and two Dask workers on loopback, and a
PostgreSQL server from Debian's ``postgresql`` package on a local socket. The class graded there,
with a worker killed mid-run, gives the same CSV as the embedded default (one process, SQLite).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from genlab.course import grade
from genlab.course.paths import Course

ROOT = Path(__file__).resolve().parents[1]
LAB = "01_transposed_convolution"
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on a Unix socket; yields a SQLAlchemy URL."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("Debian's postgresql is not installed (apt-get install postgresql)")
    pg = Path(bins[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="genlab-pg-"))
    (base / "sock").mkdir()
    as_user = []
    if os.getuid() == 0:  # the server refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
        shutil.chown(base / "sock", "postgres")

    def run(*argv):
        subprocess.run(as_user + [str(a) for a in argv], check=True, capture_output=True,
                       timeout=120)
    try:
        run(pg / "initdb", "-D", base / "data", "-A", "trust", "-U", "genlab")
        run(pg / "pg_ctl", "-D", base / "data", "-l", base / "log", "-w", "-o",
            f"-k {base / 'sock'} -c listen_addresses='' -F", "start")
        run(pg / "createdb", "-h", base / "sock", "-U", "genlab", "grading")
    except (subprocess.CalledProcessError, OSError) as err:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL here: {err}")
    try:
        yield f"postgresql+psycopg2://genlab@/grading?host={base / 'sock'}"
    finally:
        subprocess.run(as_user + [str(pg / "pg_ctl"), "-D", str(base / "data"), "-m", "immediate",
                                  "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes on loopback."""
    folder = tmp_path_factory.mktemp("dask")
    info = folder / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(info)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    for _ in range(600):
        if info.exists() and info.stat().st_size:
            break
        time.sleep(0.1)
    address = json.loads(info.read_text())["address"]
    for _ in range(2):
        procs.append(subprocess.Popen(
            [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny",
             "--no-dashboard", "--host", "127.0.0.1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    from distributed import Client
    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    yield {"address": address, "workers": procs[1:]}
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _class(tmp_path: Path) -> Path:
    """The bundled examples plus copies: enough tasks to keep both workers busy."""
    submitted = tmp_path / "submitted"
    shutil.copytree(ROOT / "grading" / "examples" / "submitted", submitted)
    for i in range(3):
        shutil.copytree(submitted / "ada", submitted / f"ada{i}")
        shutil.copytree(submitted / "cat", submitted / f"cat{i}")
    return submitted


def test_dask_and_postgres_give_the_embedded_grades_even_when_a_worker_dies(
        tmp_path, postgres, dask_cluster):
    submitted = _class(tmp_path)
    embedded = Course(ROOT, submitted, tmp_path / "embedded")
    grade.grade(embedded, [LAB], log=lambda *a: None)

    killed = []

    def kill_a_worker_after_the_first_result(line):
        if "graded" in line and not killed:
            worker = dask_cluster["workers"][0]
            os.killpg(worker.pid, signal.SIGKILL)
            killed.append(worker.wait())

    cluster = Course(ROOT, submitted, tmp_path / "cluster", db=postgres)
    grades = grade.grade(cluster, [LAB], log=kill_a_worker_after_the_first_result,
                         scheduler=dask_cluster["address"])
    assert killed, "no worker was killed"
    assert len(grades) == len(list(submitted.iterdir()))
    assert cluster.csv.read_text() == embedded.csv.read_text()

    from nbgrader.api import Gradebook
    with Gradebook(postgres) as gb:  # the scores are in PostgreSQL too
        scores = {s.student_id: s.score for s in gb.find_assignment(LAB).submissions}
    assert scores == {g.student: g.score for g in grades}

    log = []  # a rerun skips what is graded
    grade.grade(cluster, [LAB], log=log.append, scheduler=dask_cluster["address"])
    assert len(log) == len(grades) and all("already graded" in line for line in log)
