"""Kernels forked from a warm sandbox (genlab.course.pool), with a real bubblewrap sandbox: a
forked kernel starts with torch imported yet inherits nothing from the notebook before it
(processes, files), sees exactly what a sandbox of its own would show (its own answer key
hidden, another lab's there), cannot regain what the zygote keeps (capabilities, its memory,
its control socket), can be interrupted, and a zygote that died is started again."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from genlab.course import pool, sandbox
from genlab.course.api import KERNEL_NAME, ipc_kernels, patched_environ, write_kernelspec
from genlab.course.paths import course_root
from genlab.course.plugins import kernel_answer_key


def test_the_zygote_hides_every_labs_answer_key():
    root = course_root()
    keys = pool.answer_keys()
    assert kernel_answer_key(root, "05_kl_divergence") == {"genlab.kl"}
    assert kernel_answer_key(root, "01_transposed_convolution") == {"genlab.tconv"}
    assert {"genlab.tconv", "genlab.autoencoder", "genlab.vae", "genlab.kl"} <= keys
    assert "genlab.testing" not in keys and "genlab.data" not in keys


@pytest.fixture
def warm_pool():
    if not sandbox.available():
        pytest.skip("bubblewrap cannot create a sandbox here")
    with tempfile.TemporaryDirectory() as tmp, ipc_kernels() as ip, \
            patched_environ(JUPYTER_PATH=str(write_kernelspec(Path(tmp)))):
        with pool.KernelPool(Path(ip).parent) as kernels:
            yield kernels, ip


def _kernel(ip, control, hide="genlab.tconv"):
    with patched_environ(**{pool.ENV: control, "GENLAB_SANDBOX_HIDE": hide or None}):
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
    assert kernels.control_for("lab", "genlab.not_a_lab") is None   # cannot hide it: not this one
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
    zygote = kernels.zygote
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


_PROBE = """
import ctypes, os, socket, sys
import genlab, genlab.autoencoder
TCONV = os.path.join(os.path.dirname(genlab.__file__), "tconv.py")
def readable(path):
    try:
        return "conv_transpose2d" in open(path).read()
    except OSError:
        return False
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print("tconv", readable(TCONV))
print("autoencoder", "Autoencoder" in vars(genlab.autoencoder))
print("caps", *(int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")))
print("nnp", status["NoNewPrivs"].strip())
zygote = os.getppid()
for what in ("environ", "mem", "root/etc"):
    try:
        open(f"/proc/{zygote}/{what}", "rb").read(1) if what != "root/etc" else os.listdir(f"/proc/{zygote}/{what}")
        print("zygote", what, "READ")
    except OSError as err:
        print("zygote", what, type(err).__name__)
libc = ctypes.CDLL(None, use_errno=True)
print("umount", libc.umount2(TCONV.encode(), 0), "unshare", libc.unshare(0x20000))
ask = socket.socket(socket.AF_UNIX)
ask.connect(CONTROL)
ask.sendall(b'{"connection": "{}", "hide": ""}\\n')
ask.settimeout(2)
try:
    print("control", ask.recv(100) or "nothing")
except TimeoutError:   # the zygote is busy with this kernel; it will drop the request after
    print("control", "nothing")
"""


def test_each_kernel_sees_its_own_view_and_cannot_regain_the_zygotes_powers(warm_pool):
    """What a hostile notebook would try from a forked kernel: its answer key is empty while
    another lab's module is there (lab 3 imports lab 2's autoencoder), as in a sandbox of its
    own; no capability is left, not even in the bounding set, so the hiding mount cannot be
    undone nor a new namespace made; the zygote's memory, environment and view are out of
    reach; a request on the zygote's control socket from inside gets nothing. The next kernel,
    allowed the key, sees it; the one after that, not allowed, does not."""
    kernels, ip = warm_pool
    control = kernels.control_for("lab", "genlab.tconv")
    km, client = _kernel(ip, control)
    try:
        printed = _run(client, f"CONTROL = {control!r}\n" + _PROBE)
    finally:
        _stop(km, client)
    lines = dict(line.split(" ", 1) for line in printed.strip().splitlines())
    assert lines["tconv"] == "False" and lines["autoencoder"] == "True", printed
    assert lines["caps"] == "0 0 0 0 0" and lines["nnp"] == "1", printed
    for what in ("environ", "mem", "root/etc"):
        assert f"zygote {what} PermissionError" in printed, printed
    assert lines["umount"] == "-1 unshare -1", printed
    assert lines["control"] == "nothing", printed
    for hide, visible in (("", "True"), ("genlab.tconv", "False")):
        km, client = _kernel(ip, control, hide=hide)
        try:
            printed = _run(client, "import genlab, os\n"
                                   "tconv = os.path.join(os.path.dirname(genlab.__file__), 'tconv.py')\n"
                                   "try:\n    print('conv_transpose2d' in open(tconv).read())\n"
                                   "except OSError:\n    print(False)")
        finally:
            _stop(km, client)
        assert printed.strip() == visible, (hide, printed)


def test_the_zygote_serves_only_requests_from_outside_its_sandbox():
    """The launcher runs outside the sandbox's PID namespace, so the kernel reports its process
    id as 0; a peer with a process id of its own (here: this process) is a kernel asking."""
    import socket
    one, two = socket.socketpair()
    with one, two:
        assert pool._from_outside(one) is False
