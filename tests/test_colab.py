"""The Colab route: each lab's first cell installs genlab when it runs on Google Colab, from the
repository the README names, and that install gives a genlab that imports."""
import ast
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from genlab import labs

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/genlab-course/genlab"


def _first_cell(lab) -> str:
    nb = json.loads((ROOT / "labs" / lab.id / f"{lab.id}.ipynb").read_text())
    cell = nb["cells"][0]
    assert cell["cell_type"] == "code", f"{lab.id}: the first cell is not the install cell"
    return "".join(cell["source"])


def _install_command(source: str, python: str, requirement: str) -> list[str]:
    """The argument list of the cell's ``subprocess.run([...])``, with ``sys.executable`` and
    the git URL replaced."""
    call = next(node for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Call) and ast.unparse(node.func) == "subprocess.run")
    words = [python if ast.unparse(arg) == "sys.executable" else ast.literal_eval(arg)
             for arg in call.args[0].elts]
    return [requirement if word.startswith("genlab @ git+") else word for word in words]


def test_every_lab_starts_with_the_same_colab_install_cell():
    sources = {lab.id: _first_cell(lab) for lab in labs.LABS.values()}
    assert len(set(sources.values())) == 1, "the labs' install cells differ"
    source = sources["01_transposed_convolution"]
    assert 'if "google.colab" in sys.modules:' in source
    assert f'"genlab @ git+{REPOSITORY}"' in source
    readme = (ROOT / "README.md").read_text()
    assert REPOSITORY in readme
    assert ("https://colab.research.google.com/github/genlab-course/genlab/blob/main/labs/"
            "01_transposed_convolution/01_transposed_convolution.ipynb") in readme


def test_the_install_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("installed outside Colab"))
    exec(_first_cell(labs.LABS["01_transposed_convolution"]), {})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_install_command_gives_an_importable_genlab(tmp_path):
    """The cell's command, run in a fresh virtual environment that has PyTorch and the other
    packages but no genlab (as on Colab), with the git URL replaced by this checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = str(venv / "bin" / "python")
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([python, "-c", purelib], check=True, capture_output=True,
                          text=True).stdout.strip()
    # Colab's preinstalled packages: this environment's (a path line; its .pth files, among them
    # genlab's editable install, are not read from there).
    Path(site, "preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = [python, "-c", "import genlab, genlab.data, genlab.plotting, genlab.training, "
                           "genlab.widgets, torch; print(genlab.__file__)"]
    assert subprocess.run(probe, capture_output=True).returncode != 0, "genlab is there already"

    checkout = tmp_path / "checkout"  # what the git URL gives pip: the package's sources
    shutil.copytree(ROOT / "src", checkout / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, checkout)
    command = _install_command(_first_cell(labs.LABS["01_transposed_convolution"]), python,
                               f"genlab @ {checkout.as_uri()}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    result = subprocess.run(probe, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip()).is_relative_to(venv), result.stdout
