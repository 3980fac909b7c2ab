"""Kernels forked from a warm sandbox (genlab.course.pool): which labs share a zygote, and, with
a real bubblewrap sandbox, that a forked kernel starts with torch imported yet inherits nothing
from the notebook before it (processes, files), hides the answer key, can be interrupted, and
that a zygote that died is started again."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from genlab.course import pool, sandbox
from genlab.course.api import KERNEL_NAME, ipc_kernels, patched_environ, write_kernelspec
from genlab.course.plugins import kernel_plan
from genlab.course.paths import course_root


def test_labs_that_need_anothers_answer_key_get_a_zygote_of_their_own():
    plans = {"a": ({"genlab.a"}, {"genlab.testing"}),
             "b": ({"genlab.b"}, {"genlab.b"}),          # its own key: hidden, as for one notebook
             "c": ({"genlab.c"}, {"genlab.a"}),          # builds on a's module
             "d": ({"genlab.d"}, set())}
    found = pool.groups(plans)
    assert found == [({"genlab.a", "genlab.b", "genlab.d"}, ["a", "b", "d"]), ({"genlab.c"}, ["c"])]
    # and a lab whose key another lab of the group needs starts a new group too
    assert pool.groups({"c": ({"genlab.c"}, {"genlab.a"}), "a": ({"genlab.a"}, set())}) == \
        [({"genlab.c"}, ["c"]), ({"genlab.a"}, ["a"])]


def test_the_course_labs_are_planned_from_their_own_imports():
    root = course_root()
    key, needs = kernel_plan(root, "05_kl_divergence")
    assert key == {"genlab.kl"} and "genlab.vae" in needs      # lab 5 builds on lab 4's VAE
    key, needs = kernel_plan(root, "03_denoising_autoencoder")
    assert key == {"genlab.denoising"} and "genlab.autoencoder" in needs
    plans = {lab: kernel_plan(root, lab) for lab in ("01_transposed_convolution", "04_vae",
                                                      "05_kl_divergence")}
    groups = pool.groups(plans)
    assert len(groups) == 2 and groups[1][1] == ["05_kl_divergence"]


@pytest.fixture
def warm_pool():
    if not sandbox.available():
        pytest.skip("bubblewrap cannot create a sandbox here")
    with tempfile.TemporaryDirectory() as tmp, ipc_kernels() as ip, \
            patched_environ(JUPYTER_PATH=str(write_kernelspec(Path(tmp)))):
        plans = {"lab": ({"genlab.tconv"}, set())}
        with pool.KernelPool(Path(ip).parent, plans) as kernels:
            yield kernels, ip


def _kernel(ip, control):
    with patched_environ(**{pool.ENV: control}):
        km = KernelManager(kernel_name=KERNEL_NAME, transport="ipc", ip=ip)
        km.start_kernel()
    client = km.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    return km, client


def _run(client, code: str, timeout: float = 60) -> str:
    out = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(msg["content"]["ename"])
    client.execute_interactive(code, timeout=timeout, output_hook=hook)
    return "".join(out)


def _stop(km, client):
    client.stop_channels()
    km.shutdown_kernel()


def test_a_forked_kernel_is_warm_but_starts_clean(warm_pool):
    kernels, ip = warm_pool
    control = kernels.control_for("lab", "genlab.tconv")
    assert control and os.path.exists(control)
    assert kernels.control_for("lab", "genlab.vae") is None      # hides too little: not this one
    km, client = _kernel(ip, control)
    try:
        printed = _run(client, "import sys, os, subprocess\n"
                               "print('torch' in sys.modules, os.getcwd())\n"
                               "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
                               "open('/tmp/left-behind', 'w').write('x')\n"
                               "import genlab.tconv; print(sorted(vars(genlab.tconv)))")
        first_cwd = printed.split()[1]
        assert printed.startswith("True /tmp/work/"), printed
        assert "conv_transpose2d" not in printed                  # the answer key is empty
        start = time.monotonic()
        client.execute("while True: pass")
        time.sleep(0.5)
        km.interrupt_kernel()
        reply = client.get_shell_msg(timeout=30)
        assert reply["content"]["status"] == "error" and time.monotonic() - start < 30
    finally:
        _stop(km, client)
    km, client = _kernel(ip, control)
    try:
        printed = _run(client, "import glob, os\n"
                               "print(os.path.exists('/tmp/left-behind'), os.getcwd())\n"
                               "print(sorted(open(f).read().strip() for f in glob.glob('/proc/[0-9]*/comm')))")
        first_line, processes = printed.split("\n")[:2]
        assert first_line.split() == ["False", first_line.split()[1]] and first_line.split()[1] != first_cwd
        assert "python" in processes and "sleep" not in processes, processes
    finally:
        _stop(km, client)


def test_a_zygote_that_died_is_started_again(warm_pool):
    kernels, ip = warm_pool
    control = kernels.control_for("lab", "genlab.tconv")
    zygote = kernels.zygotes["lab"]
    zygote.process.kill()
    zygote.process.wait()
    control = kernels.control_for("lab", "genlab.tconv")
    assert zygote.process.poll() is None
    km, client = _kernel(ip, control)
    try:
        assert _run(client, "print(6 * 7)").strip() == "42"
    finally:
        _stop(km, client)


def test_a_zygote_that_cannot_start_means_a_kernel_of_its_own(warm_pool, monkeypatch, capsys):
    """Grading goes on without a warm sandbox (the notebook's kernel starts from scratch)."""
    kernels, _ = warm_pool

    def broken(zygote, sockets):
        raise RuntimeError("the grading sandbox's zygote did not start")
    monkeypatch.setattr(pool, "_start", broken)
    assert kernels.control_for("lab", "genlab.tconv") is None
    assert "no warm sandbox for lab" in capsys.readouterr().err
