"""The grading kernel's sandbox: every notebook that ``genlab check`` or ``genlab grade`` runs
gets a throwaway Debian ``bubblewrap`` (``bwrap``) container.

Inside, the kernel sees the Python environment and genlab read-only, an empty working directory
and ``/tmp`` on a size-limited tmpfs, its own IPC socket folder and connection file, and nothing
else: no course files, no gradebook, no other submissions, no network, no other processes (a pid
namespace), no environment variables of the grader. When the kernel ends, bwrap's pid namespace
ends and every process the notebook started dies with it.

The kernelspec runs ``python -m genlab.course.sandbox -f {connection_file}``: this launcher runs
outside the sandbox (it is trusted course code), computes the binds from the connection file,
starts ``bwrap`` and then **supervises** it: it sums the resident memory of every process in the
sandbox and kills the sandbox when the whole tree goes over the memory limit or starts too many
processes (per-process ``RLIMIT_AS`` alone lets a notebook split its memory over subprocesses).
Limits on file size, processes and CPU time are also set with ``prlimit`` inside.

Where ``bwrap`` cannot run, :func:`available` is False and the grader falls back to the plain
kernel with a loud warning (never silently).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from .. import config

# The only environment variables that cross into the sandbox: the grading kernel's settings
# (config.grading_env), the device and nbgrader's flag. Nothing else of the grader's.
PASSED_ENV = frozenset(config.grading_env()) | {"GENLAB_DEVICE", "NBGRADER_EXECUTION",
                                                "OMP_NUM_THREADS", "MKL_NUM_THREADS"}
KILLED_FOR_MEMORY = 137
# Options of every grading kernel. Plain tracebacks: IPython's default ("Context") looks up the
# module of every frame among torch's thousands, 60 ms per error against 12 ms.
KERNEL_OPTIONS = ["--InteractiveShell.xmode=Plain"]


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Whether ``bwrap`` can create a sandbox here (it needs user namespaces)."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return False
    try:
        probe = subprocess.run([bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                                "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def kernel_argv(python: str = sys.executable) -> list[str]:
    """The kernelspec's argv: this launcher, which starts the kernel inside the sandbox."""
    return [python, "-m", "genlab.course.sandbox", "-f", "{connection_file}"]


def _python_paths() -> list[Path]:
    """What the kernel's Python needs to read: the interpreter's installation, the virtual
    environment, and genlab's source when it is an editable install."""
    import genlab
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
             Path(sysconfig.get_paths()["purelib"]).resolve(),
             Path(genlab.__file__).resolve().parents[1]}  # the folder that holds genlab/
    # keep only the outermost folders
    return sorted(p for p in paths if not any(q != p and q in p.parents for q in paths))


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("lib", "lib64", "lib32", "bin", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for etc in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "fonts", "localtime", "alternatives",
                "matplotlibrc", "ssl/certs"):
        args += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
    return args


def bwrap_argv(connection_file: str, inner: list[str]) -> list[str]:
    """``bwrap`` arguments that run ``inner`` (the kernel command) in a fresh sandbox."""
    info = json.loads(Path(connection_file).read_text())
    sockets = str(Path(info["ip"]).parent) if info.get("transport") == "ipc" else None
    return _bwrap(inner, sockets, os.environ.get("GENLAB_SANDBOX_HIDE", ""),
                  ["--ro-bind", connection_file, connection_file])


def _bwrap(inner: list[str], sockets: str | None, hide: str, extra: list[str],
           capabilities: tuple[str, ...] = ()) -> list[str]:
    """The sandbox around ``inner``: ``sockets`` the folder of the IPC sockets (bound writable),
    ``hide`` the genlab modules to empty, ``extra`` more binds, ``capabilities`` the only ones
    kept (in the sandbox's own user namespace; none for a kernel)."""
    disk = int(config.grader_disk_mb() * 2**20)
    args = [shutil.which("bwrap"), "--unshare-all", "--die-with-parent", "--cap-drop", "ALL"]
    for capability in capabilities:
        args += ["--cap-add", capability]
    args += _system_binds()
    args += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(disk), "--tmpfs", "/tmp",
             "--dir", "/tmp/work", "--dir", "/tmp/home", "--dir", "/tmp/data", *extra]
    # after the tmpfs, so that an environment or course under /tmp stays visible (read-only)
    for path in _python_paths():
        args += ["--ro-bind", str(path), str(path)]
    args += _hidden_modules(hide)
    if sockets:  # the sockets live in the folder of the "ip" path
        args += ["--bind", sockets, sockets]
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV}
    env.update(HOME="/tmp/home", TMPDIR="/tmp", GENLAB_DATA="/tmp/data", MPLCONFIGDIR="/tmp/home/mpl",
               IPYTHONDIR="/tmp/home/ipython", PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
               PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
    args += ["--clearenv"]
    for key, value in sorted(env.items()):
        args += ["--setenv", key, value]
    return args + ["--chdir", "/tmp/work", "--", *inner]


def hidden_paths(names) -> list[Path]:
    """The files of genlab's modules named in ``names`` ("genlab.tconv,..." or a list), source
    and bytecode: what the sandbox empties."""
    import genlab
    package = Path(genlab.__file__).resolve().parent
    if isinstance(names, str):
        names = names.split(",")
    paths = []
    for name in filter(None, names):
        stem = name.removeprefix("genlab.")
        if not stem.isidentifier():
            continue
        # (exists, not is_file: inside a sandbox a hidden one is /dev/null, a character device)
        paths += [path for path in [package / f"{stem}.py",
                                    *package.glob(f"__pycache__/{stem}.*.pyc")] if path.exists()]
    return paths


def _hidden_modules(names: str) -> list[str]:
    """Binds that empty genlab's modules named in ``names`` inside the sandbox: the reference
    answers of a lab whose tests are all judged (genlab.course.judge) are not there for the
    student's code to import or read."""
    return [arg for path in hidden_paths(names) for arg in ("--ro-bind", "/dev/null", str(path))]


def _limits() -> list[str]:
    """prlimit inside the sandbox: file size, CPU seconds and (as a back-stop for the
    supervisor) processes and per-process address space on CPU graders."""
    prlimit = shutil.which("prlimit")
    if not prlimit:
        return []
    # RLIMIT_NPROC counts every process and thread of the real user, inside or not
    nproc = _processes_of_user() + config.grader_max_processes() * 8
    args = [prlimit, f"--fsize={int(config.grader_file_mb() * 2**20)}", f"--nproc={nproc}",
            f"--cpu={config.grader_cpu_seconds()}"]
    memory = config.grader_memory_gb()
    if memory > 0 and not cuda_present():  # RLIMIT_AS breaks CUDA
        args.append(f"--as={int(memory * 2**30)}")
    return args + ["--"]


def cuda_present() -> bool:
    """A CUDA GPU on this machine (then no RLIMIT_AS: it breaks CUDA)."""
    return shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists()


def _processes_of_user() -> int:
    uid, count = os.getuid(), 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) == uid:
                for line2 in text.splitlines():
                    if line2.startswith("Threads:"):
                        count += int(line2.split()[1])
                break
    return count


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc; a daemon that double-forks inside the
    sandbox is re-parented to the sandbox's init, so it stays in the tree). Read with bare
    system calls: the supervisor does this ten times a second for as long as a kernel lives."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = _read(f"/proc/{name}/stat")
            ppid = int(stat[stat.rindex(b")") + 2:].split(None, 2)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _read(path: str) -> bytes:
    """The start of a small /proc file, with bare system calls (no buffered file object)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _resident_bytes(pids) -> int:
    """The resident memory of ``pids`` (a sum over processes: pages shared between a forked
    kernel and its zygote count twice). Cheap: one small read per process."""
    page, total = os.sysconf("SC_PAGE_SIZE"), 0
    for pid in pids:
        try:
            total += int(_read(f"/proc/{pid}/statm").split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total


def _proportional_bytes(pids) -> int:
    """The memory of ``pids``: each process's proportional share (PSS) where the kernel says it,
    so that the pages a forked kernel shares with its zygote count once; else resident pages.
    Exact but dear (the kernel walks every mapping: about 8 ms for a process that imported
    torch), so the supervisor asks only when the resident sum is over the limit."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
            continue
        except (OSError, IndexError, ValueError):
            pass
        total += _resident_bytes([pid])
    return total


def _kill(pids) -> None:
    for pid in reversed(pids):  # children first
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def supervise(argv: list[str], poll: float = 0.1, extra_processes: int = 0) -> int:
    """Run ``argv`` (bwrap) and kill it when its process tree exceeds the memory or process
    limits, or when the grader that started us is gone. SIGTERM is forwarded; an interrupt
    (SIGINT to our process group) reaches the kernel directly. Returns the exit status."""
    process = subprocess.Popen(argv)
    forward = lambda signum, frame: process.send_signal(signum)  # noqa: E731
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the kernel, in our process group, gets it
    limit = config.grader_memory_gb() * 2**30
    max_procs = config.grader_max_processes()
    parent = os.getppid()
    while process.poll() is None:
        pids = _tree(process.pid)
        if os.getppid() != parent:  # the grader is gone: nothing may outlive it
            _kill(pids)
            return process.wait()
        memory = _resident_bytes(pids) if limit > 0 else 0
        if memory > limit:   # PSS <= RSS: only now is the exact, dear count needed
            memory = _proportional_bytes(pids)
        if memory > limit or len(pids) > max_procs + 2 + extra_processes:  # + bwrap's two
            why = "memory" if memory > limit else "processes"
            print(f"genlab sandbox: the notebook exceeded its {why} limit; stopping it",
                  file=sys.stderr, flush=True)
            _kill(pids)
            process.wait()
            return KILLED_FOR_MEMORY
        time.sleep(poll)
    return process.returncode


def main(argv: list[str] | None = None) -> int:
    from . import pool
    parser = argparse.ArgumentParser(description="start a genlab grading kernel in a sandbox")
    parser.add_argument("-f", dest="connection_file")
    parser.add_argument("--zygote", help="start a zygote (genlab.course.pool) on this socket")
    parser.add_argument("--sockets", help="with --zygote: the folder of the kernels' sockets")
    args = parser.parse_args(argv)
    if args.zygote:
        hide = os.environ.get("GENLAB_SANDBOX_HIDE", "")
        inner = _limits() + [sys.executable, "-m", "genlab.course.pool", args.zygote, hide]
        return supervise(_bwrap(inner, args.sockets, hide, [], pool.ZYGOTE_CAPABILITIES),
                         extra_processes=1)
    if not args.connection_file:
        parser.error("-f CONNECTION_FILE is required")
    if os.environ.get(pool.ENV):   # a kernel forked by the student's zygote
        return pool.launch(os.environ[pool.ENV], args.connection_file)
    inner = _limits() + [sys.executable, "-m", "ipykernel_launcher", "-f", args.connection_file,
                         *KERNEL_OPTIONS]
    return supervise(bwrap_argv(args.connection_file, inner))


if __name__ == "__main__":
    sys.exit(main())
