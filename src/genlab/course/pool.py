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

Each kernel sees exactly what a sandbox of its own would show it. The zygote's sandbox hides
the answer keys (``genlab.<topic>``, see ``genlab.course.plugins``) of every lab, and the
zygote keeps two capabilities of that sandbox's user namespace (``CAP_SYS_ADMIN`` and
``CAP_SETPCAP``). A child, before it runs anything of the student's, takes a mount namespace of
its own, shows there the keys its notebook may use (lab 3 builds on lab 2's autoencoder) and
then drops every capability for good (bounding set, secure bits, ``no_new_privs``). Without
capabilities a kernel cannot undo its mounts, nor look into the zygote (``/proc/<pid>/mem``,
``root``: the kernel would need the zygote's capabilities); the zygote serves only requests
from outside its sandbox (the launcher), never one a kernel makes.

What a notebook leaves behind does not reach the next one: when a kernel ends, the zygote
kills every other process left in the sandbox (a daemon the notebook started) and empties
``/tmp``. The zygote itself never runs student code, and a fork copies its memory: what a
kernel changes in its modules stays in that kernel. The sandbox is the student's only: no two
students share a zygote. A zygote that died (the memory limit) is started again for the next
notebook; one that cannot start (no capabilities to keep) costs only speed: the notebook gets
a kernel of its own.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ENV = "GENLAB_SANDBOX_ZYGOTE"    # the launcher's cue: the control socket of the zygote to ask
ZYGOTE_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETPCAP")  # mounts; then dropping them for good
# torch._dynamo: torch imports it (with sympy) on the first optimizer a kernel makes, 2.5 CPU s
# ipykernel.debugger: every kernel imports it (with debugpy) as it starts, 0.13 CPU s
WARM_MODULES = ("torch", "torch._dynamo", "torch.optim", "numpy", "ipykernel.kernelapp",
                "ipykernel.ipkernel", "ipykernel.debugger", "IPython",
                "matplotlib", "matplotlib.pyplot", "matplotlib_inline.backend_inline",
                "genlab", "genlab.config", "genlab.device", "genlab.testing",
                "genlab.course.remote", "genlab.course.sandbox")

_ACTIVE: list["KernelPool"] = []   # the pool of the student being graded in this process


def answer_keys() -> frozenset[str]:
    """Every lab's reference module: what the zygote's own sandbox hides."""
    from ..labs import LABS
    return frozenset(f"genlab.{lab.topic}" for lab in LABS.values())


# ---------------------------------------------------------------------- grader side: the pool
@dataclass
class Zygote:
    hidden: frozenset[str]
    control: str
    process: subprocess.Popen | None = None


class KernelPool:
    """The zygote of one student's notebooks (a context manager; see the module's text).
    ``sockets`` is the folder of the kernels' IPC sockets (bound into the sandbox; the control
    socket lives there too)."""

    def __init__(self, sockets: Path):
        self.sockets = Path(sockets)
        self.zygote = Zygote(answer_keys(), str(self.sockets / f"zygote-{os.urandom(4).hex()}"))

    def __enter__(self):
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc):
        _ACTIVE.remove(self)
        _stop(self.zygote)

    def control_for(self, lab: str, hidden: str) -> str | None:
        """The control socket of the zygote, started if need be, for a notebook of ``lab`` whose
        kernel must not see ``hidden``; None (a kernel of its own) when the zygote cannot hide
        that or cannot start."""
        zygote = self.zygote
        if not set(filter(None, hidden.split(","))) <= zygote.hidden:
            return None
        if zygote.process is None or zygote.process.poll() is not None:
            try:
                _start(zygote, self.sockets)
            except (OSError, RuntimeError) as err:   # grade anyway, with a kernel of its own
                print(f"genlab: WARNING: no warm sandbox for {lab} ({err}); starting its kernel "
                      "from scratch", file=sys.stderr, flush=True)
                return None
        return zygote.control


def for_student(sockets: Path, labs: list[str]) -> KernelPool | None:
    """A pool for one student's ``labs``, or None where warm sandboxes do not apply: a single
    notebook, ``GENLAB_GRADER_WARM=0``, or kernels that are not sandboxed at all."""
    from .. import config
    from .api import kernel_argv
    if len(labs) < 2 or not config.grader_warm_kernels() \
            or kernel_argv(warn=False)[1:3] != ["-m", "genlab.course.sandbox"]:
        return None
    return KernelPool(sockets)


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
_SYS_ADMIN, _SETPCAP = 21, 8
_CLONE_NEWNS, _MS_REC, _MS_PRIVATE, _MS_BIND, _MS_REMOUNT, _MS_RDONLY = \
    0x20000, 0x4000, 1 << 18, 0x1000, 0x20, 0x1
_PR_CAPBSET_DROP, _PR_SET_SECUREBITS, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT = 24, 28, 38, 47
# SECBIT_NOROOT, NO_SETUID_FIXUP, NO_CAP_AMBIENT_RAISE and KEEP_CAPS off, each locked
_SECURE_BITS = 0b11101111


def _capabilities(kind: str = "CapEff") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(kind + ":"):
            return int(line.split()[1], 16)
    return 0


def serve(control: str, hidden: str) -> None:
    """The zygote: import what every grading kernel imports, then fork one kernel per request
    on the ``control`` socket, one at a time. ``hidden``: the modules its sandbox hides."""
    import importlib
    wanted = (1 << _SYS_ADMIN) | (1 << _SETPCAP)
    if _capabilities() & wanted != wanted:   # cannot give each kernel its own view: refuse
        sys.exit("genlab: the zygote's sandbox kept no capabilities to confine its kernels")
    # debugpy (ipykernel.debugger) would warn on stderr that Python's frozen modules may hide
    # breakpoints: no debugger runs when grading
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    for name in WARM_MODULES:   # (every answer key is hidden by the sandbox: not among them)
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = control + ".new"
    listener.bind(temporary)
    listener.listen(4)
    os.rename(temporary, control)   # the pool waits for this name: we are ready
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    hidden_here = frozenset(filter(None, hidden.split(",")))
    while True:
        connection, _ = listener.accept()
        with connection:
            if not _from_outside(connection):   # a process of this sandbox (a kernel) asks
                continue
            try:
                _one_kernel(listener, connection, hidden_here)
            except OSError:
                pass
            _clean_up()


def _from_outside(connection: socket.socket) -> bool:
    """Whether the peer of ``connection`` is outside this sandbox's PID namespace (the launcher):
    the kernel reports the peer's process id as 0 then."""
    pid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                    struct.calcsize("3i")))[0]
    return pid == 0


def _confine(hide: frozenset[str], hidden_here: frozenset[str]) -> None:
    """In a forked kernel, before anything else: a mount namespace of its own where exactly
    ``hide`` is hidden (the zygote's sandbox hides ``hidden_here``), then no capabilities, for
    good. Raises OSError when any step fails (the kernel is not started)."""
    import stat as stat_

    from .sandbox import hidden_paths
    libc = ctypes.CDLL(None, use_errno=True)
    ulong = ctypes.c_ulong

    def check(result, what):
        if result != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    def is_hidden(path):   # emptied by a bind of /dev/null
        return stat_.S_ISCHR(os.stat(path).st_mode)

    check(libc.unshare(_CLONE_NEWNS), "unshare")
    check(libc.mount(b"none", b"/", None, ulong(_MS_REC | _MS_PRIVATE), None),
          "mount --make-rprivate")
    for path in hidden_paths(sorted(hidden_here - hide)):   # what this notebook may use
        if is_hidden(path):
            check(libc.umount2(str(path).encode(), 0), f"umount {path}")
    for path in hidden_paths(sorted(hide)):   # (a file written after the zygote started too)
        if not is_hidden(path):
            check(libc.mount(b"/dev/null", str(path).encode(), None, ulong(_MS_BIND), None),
                  f"hide {path}")
            check(libc.mount(None, str(path).encode(), None,
                             ulong(_MS_BIND | _MS_REMOUNT | _MS_RDONLY), None), f"hide {path}")
    check(libc.prctl(_PR_SET_SECUREBITS, ulong(_SECURE_BITS), ulong(0), ulong(0), ulong(0)),
          "securebits")
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for capability in range(last + 1):
        check(libc.prctl(_PR_CAPBSET_DROP, ulong(capability), ulong(0), ulong(0), ulong(0)),
              "drop from the bounding set")
    check(libc.prctl(_PR_CAP_AMBIENT, ulong(4), ulong(0), ulong(0), ulong(0)), "clear ambient")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)   # _LINUX_CAPABILITY_VERSION_3, this process
    check(libc.capset(header, (ctypes.c_uint32 * 6)()), "capset")
    check(libc.prctl(_PR_SET_NO_NEW_PRIVS, ulong(1), ulong(0), ulong(0), ulong(0)), "no_new_privs")
    if any(_capabilities(kind) for kind in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")):
        raise OSError("capabilities left after dropping them")


def _one_kernel(listener, connection, hidden_here: frozenset[str]) -> None:
    request = json.loads(_read_line(connection))
    hide = frozenset(filter(None, str(request.get("hide", "")).split(",")))
    if not hide <= hidden_here:   # the pool asks only for what this sandbox hides
        connection.sendall(json.dumps({"exit": 1}).encode() + b"\n")
        return
    folder = Path("/tmp/kernels")
    folder.mkdir(exist_ok=True)
    connection_file = folder / f"kernel-{os.urandom(8).hex()}.json"
    connection_file.write_text(request["connection"])
    pid = os.fork()
    if pid == 0:  # the kernel
        try:
            listener.close()
            connection.close()
            try:
                _confine(hide, hidden_here)
            except OSError as err:   # fail closed: no kernel
                print(f"genlab zygote: cannot confine the kernel: {err}", file=sys.stderr,
                      flush=True)
                os._exit(71)
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
    connection.sendall(json.dumps({"connection": Path(connection_file).read_text(),
                                   "hide": os.environ.get("GENLAB_SANDBOX_HIDE", "")}).encode()
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


if __name__ == "__main__":   # inside the sandbox: python -m genlab.course.pool CONTROL HIDDEN
    serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
