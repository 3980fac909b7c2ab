"""Shared test set-up: fast mode, headless matplotlib, a private offline data directory."""
import os
import tempfile

os.environ.setdefault("GENLAB_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GENLAB_OFFLINE", "1")       # no download attempts from the suite
os.environ.setdefault("GENLAB_DATA", tempfile.mkdtemp(prefix="genlab-test-data-"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


JUPYTERLAB_TOKEN = "genlab-test"


@pytest.fixture(scope="module")
def start_jupyterlab(tmp_path_factory):
    """``start(profile, notebook_dir, **env)``: JupyterLab as ``genlab lab`` starts it (the
    profile's ``JUPYTER_CONFIG_DIR``), on a free loopback port, with token ``JUPYTERLAB_TOKEN``
    and a fresh settings and workspace folder; returns its URL. All are stopped at the end."""
    import socket
    import subprocess
    import time
    import urllib.request
    from pathlib import Path

    from genlab import launch

    root = Path(__file__).resolve().parents[1]
    started = []

    def start(profile, notebook_dir, **env):
        """``env``: variables to set, or to remove where the value is None."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        argv, environ = launch.lab_command(
            root, profile, notebook_dir=notebook_dir, port=port,
            extra=["--no-browser", "--ServerApp.ip=127.0.0.1",
                   f"--IdentityProvider.token={JUPYTERLAB_TOKEN}",
                   "--LabApp.expose_app_in_browser=True"])
        state = tmp_path_factory.mktemp(f"jupyterlab-{profile}")
        environ.update(JUPYTERLAB_SETTINGS_DIR=str(state / "settings"),
                       JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"))
        for name, value in env.items():
            environ.pop(name, None) if value is None else environ.update({name: value})
        log = state / "server.log"
        with open(log, "w") as out:
            process = subprocess.Popen(argv, env=environ, cwd=state, stdout=out,
                                       stderr=subprocess.STDOUT)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={JUPYTERLAB_TOKEN}", timeout=5)
                return url
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab ({profile}) did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
