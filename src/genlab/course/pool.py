"""Grading kernels forked from a warm sandbox: one ``import torch`` per student, not per notebook.

A grading kernel spends most of its start on imports: ``torch`` alone is about 3 CPU seconds
here, in each of a submission's eight notebooks. While ``genlab grade`` grades one student's
labs, a :class:`KernelPool` keeps a *zygote*: a Python process inside a sandbox of its own
(:mod:`genlab.course.sandbox`, the same binds and limits) that has imported torch, IPython's
kernel and genlab's kernel-side modules once and then serves the notebooks one after another.
For each notebook the sandbox's launcher (the kernelspec's command, outside) asks the zygote
over a Unix socket for a kernel; the zygote forks, and the child becomes that notebook's kernel
in a fresh working folder, with the notebook's connection file. The launcher stays the
kernel's stand-in for the grader: an interrupt or a stop of the launcher reaches the kernel,
and the kernel's exit ends the launcher with its status.

What a notebook leaves behind does not reach the next one: when a kernel ends, the zygote
kills every other process left in the sandbox (a daemon the notebook started) and empties
``/tmp``. The zygote itself never runs student code, and a fork copies its memory: what a
kernel changes in its modules stays in that kernel. The sandbox is the student's only: no two
students share a zygote.

A zygote hides the answer keys (``genlab.<topic>``, see ``genlab.course.plugins``) of every
lab it serves, so the labs of a student are grouped: a lab whose own code imports another
lab's topic (lab 5 builds on lab 4's VAE) gets a zygote where that module is not hidden
(:func:`groups`). A zygote that died (the memory limit) is started again for the next notebook.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ENV = "GENLAB_SANDBOX_ZYGOTE"    # the launcher's cue: the control socket of the zygote to ask
# torch._dynamo: torch imports it (with sympy) on the first optimizer a kernel makes, 2.5 CPU s
WARM_MODULES = ("torch", "torch._dynamo", "torch.optim", "numpy", "ipykernel.kernelapp",
                "ipykernel.ipkernel", "IPython",
                "matplotlib", "matplotlib.pyplot", "matplotlib_inline.backend_inline",
                "genlab", "genlab.config", "genlab.device", "genlab.testing",
                "genlab.course.remote")

_ACTIVE: list["KernelPool"] = []   # the pool of the student being graded in this process


# ---------------------------------------------------------------------- grader side: the pool
@dataclass
class Zygote:
    hidden: frozenset[str]
    control: str
    process: subprocess.Popen | None = None


def groups(plans: dict[str, tuple[set[str], set[str]]]) -> list[tuple[set[str], list[str]]]:
    """Labs that can share a zygote. ``plans``: lab -> (its answer key, the genlab modules its
    own cells import). A zygote hides the answer keys of all its labs, so a lab joins a group
    only when it needs none of the others' keys and none of them needs its key. Returns
    ``[(hidden modules, labs)]`` in the order of ``plans``."""
    out: list[tuple[set[str], list[str], set[str]]] = []
    for lab, (key, needs) in plans.items():
        for hidden, labs, needed in out:
            if not (key & needed) and not (needs & (hidden - key)):
                hidden |= key
                needed |= needs
                labs.append(lab)
                break
        else:
            out.append((set(key), [lab], set(needs)))
    return [(hidden, labs) for hidden, labs, _ in out]


class KernelPool:
    """The zygotes of one student's notebooks (a context manager; see the module's text).

    ``sockets`` is the folder of the kernels' IPC sockets (bound into the sandbox; the control
    sockets live there too); ``plans`` as for :func:`groups`.
    """

    def __init__(self, sockets: Path, plans: dict[str, tuple[set[str], set[str]]]):
        self.sockets = Path(sockets)
        self.plans = plans
        self.zygotes: dict[str, Zygote] = {}
        for n, (hidden, labs) in enumerate(groups(plans)):
            zygote = Zygote(frozenset(hidden), str(self.sockets / f"zygote-{n}"))
            for lab in labs:
                self.zygotes[lab] = zygote

    def __enter__(self):
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc):
        _ACTIVE.remove(self)
        for zygote in {id(z): z for z in self.zygotes.values()}.values():
            _stop(zygote)

    def control_for(self, lab: str, hidden: str) -> str | None:
        """The control socket of the zygote for ``lab``, started if need be; None (a kernel of
        its own) when ``hidden`` (what the sandbox must hide for this notebook) is not hidden
        by that zygote."""
        zygote = self.zygotes.get(lab)
        if zygote is None or not set(filter(None, hidden.split(","))) <= zygote.hidden:
            return None
        if zygote.process is None or zygote.process.poll() is not None:
            try:
                _start(zygote, self.sockets)
            except (OSError, RuntimeError) as err:   # grade anyway, with a kernel of its own
                print(f"genlab: WARNING: no warm sandbox for {lab} ({err}); starting its kernel "
                      "from scratch", file=sys.stderr, flush=True)
                return None
        return zygote.control


def for_student(sockets: Path, root: Path, labs: list[str]) -> KernelPool | None:
    """A pool for one student's ``labs`` (their plans read from the course at ``root``), or None
    where warm sandboxes do not apply: a single notebook, ``GENLAB_GRADER_WARM=0``, or kernels
    that are not sandboxed at all."""
    from .. import config
    from .api import kernel_argv
    from .plugins import kernel_plan
    if len(labs) < 2 or not config.grader_warm_kernels() \
            or kernel_argv(warn=False)[1:3] != ["-m", "genlab.course.sandbox"]:
        return None
    return KernelPool(sockets, {lab: kernel_plan(root, lab) for lab in labs})


def control_for(lab: str | None, hidden: str) -> str | None:
    """The active pool's zygote for ``lab`` (None when no pool is active in this process)."""
    if not _ACTIVE or not lab:
        return None
    return _ACTIVE[-1].control_for(lab, hidden)


def _start(zygote: Zygote, sockets: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(zygote.control)
    env = dict(os.environ, GENLAB_SANDBOX_HIDE=",".join(sorted(zygote.hidden)))
    zygote.process = subprocess.Popen(
        [sys.executable, "-m", "genlab.course.sandbox", "--zygote", zygote.control,
         "--sockets", str(sockets)], env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not os.path.exists(zygote.control):   # it listens once its imports are done
        if zygote.process.poll() is not None or time.monotonic() > deadline:
            _stop(zygote)
            raise RuntimeError("genlab: the grading sandbox's zygote did not start")
        time.sleep(0.02)


def _stop(zygote: Zygote) -> None:
    process, zygote.process = zygote.process, None
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -------------------------------------------------------------- inside the sandbox: the zygote
def serve(control: str) -> None:
    """The zygote: import what every grading kernel imports, then fork one kernel per request
    on the ``control`` socket, one at a time."""
    import importlib
    for name in WARM_MODULES:   # (an answer key hidden by the sandbox is not among them)
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = control + ".new"
    listener.bind(temporary)
    listener.listen(4)
    os.rename(temporary, control)   # the pool waits for this name: we are ready
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        connection, _ = listener.accept()
        with connection:
            try:
                _one_kernel(listener, connection)
            except OSError:
                pass
            _clean_up()


def _one_kernel(listener, connection) -> None:
    request = json.loads(_read_line(connection))
    folder = Path("/tmp/kernels")
    folder.mkdir(exist_ok=True)
    connection_file = folder / f"kernel-{os.urandom(8).hex()}.json"
    connection_file.write_text(request["connection"])
    pid = os.fork()
    if pid == 0:  # the kernel
        try:
            listener.close()
            connection.close()
            os.setsid()
            work = Path("/tmp/work") / os.urandom(8).hex()
            work.mkdir(parents=True)
            os.chdir(work)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            from .sandbox import KERNEL_OPTIONS
            sys.argv = ["ipykernel_launcher", "-f", str(connection_file), *KERNEL_OPTIONS]
            sys.path[0] = str(work)   # as `python -m ipykernel_launcher` run there would have it
            from ipykernel.kernelapp import launch_new_instance
            launch_new_instance()
        finally:
            os._exit(0)
    connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    try:   # wake up when the kernel ends or the launcher writes, not on a timer
        ended = os.pidfd_open(pid)
    except (AttributeError, OSError):
        ended = None
    try:
        while True:
            ready, _, _ = select.select([connection] + ([ended] if ended else []), [], [],
                                        None if ended else 0.05)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                with contextlib.suppress(OSError):
                    code = os.waitstatus_to_exitcode(status)
                    connection.sendall(json.dumps({"exit": code}).encode() + b"\n")
                return
            if connection not in ready:
                continue
            data = connection.recv(64)
            if not data:   # the launcher is gone: so is its kernel
                _signal_group(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            for command in data.decode(errors="replace"):
                if command == "i":
                    _signal_group(pid, signal.SIGINT, group=False)
                elif command == "t":
                    _signal_group(pid, signal.SIGTERM, group=False)
    finally:
        if ended is not None:
            os.close(ended)


def _signal_group(pid: int, signum: int, group: bool = True) -> None:
    with contextlib.suppress(OSError):
        (os.killpg if group else os.kill)(pid, signum)


def _clean_up() -> None:
    """After a kernel: no process of its left (pid 1 is bubblewrap's init), and the sandbox's
    own /tmp emptied (never what is mounted into it: the sockets, an environment)."""
    me = os.getpid()
    for _ in range(3):
        others = [int(p.name) for p in Path("/proc").iterdir()
                  if p.name.isdigit() and int(p.name) not in (1, me)]
        if not others:
            break
        for pid in others:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    tmp = Path("/tmp")
    device = tmp.lstat().st_dev
    for entry in tmp.iterdir():
        _wipe(entry, device, keep=entry.name in ("work", "home", "data"))


def _wipe(path: Path, device: int, keep: bool = False) -> None:
    """Remove ``path`` (its contents only, with ``keep``), staying on ``device``: a mount point
    inside it and everything under that are left alone."""
    with contextlib.suppress(OSError):
        info = path.lstat()
        if info.st_dev != device:
            return
        if os.path.isdir(path) and not path.is_symlink():
            for inner in path.iterdir():
                _wipe(inner, device)
            if not keep:
                path.rmdir()
        elif not keep:
            path.unlink()


def _read_line(connection, limit: int = 1 << 20) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(65536)
        if not chunk or len(data) > limit:
            raise OSError("the connection closed mid-request")
        data += chunk
    return data


# ---------------------------------------------------------- the launcher: a kernel's stand-in
def launch(control: str, connection_file: str) -> int:
    """Ask the zygote at ``control`` for a kernel on ``connection_file``; stand in for it until
    it ends (SIGINT and SIGTERM are passed on); return its exit status."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(control)
    connection.sendall(json.dumps({"connection": Path(connection_file).read_text()}).encode()
                       + b"\n")
    json.loads(_read_line(connection))   # {"pid": ...}: the kernel is starting
    send = lambda command: connection.sendall(command)  # noqa: E731
    signal.signal(signal.SIGINT, lambda *_: send(b"i"))
    signal.signal(signal.SIGTERM, lambda *_: send(b"t"))
    try:
        reply = _read_line(connection)
    except OSError:   # the zygote died (its sandbox went over a limit)
        return 137
    return int(json.loads(reply).get("exit", 1))


if __name__ == "__main__":   # inside the sandbox: python -m genlab.course.pool CONTROL
    serve(sys.argv[1])
