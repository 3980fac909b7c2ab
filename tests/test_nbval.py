"""Every solution notebook executes top to bottom under nbval (fast mode, headless).

``--nbval-lax``: solutions are stored without outputs, so there is nothing to compare; the
run fails on any cell that raises, which includes every visible and hidden test cell.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*/*.ipynb"))


def test_there_are_solution_notebooks():
    assert SOLUTIONS, "no solutions/*/*.ipynb found"


@pytest.mark.slow
@pytest.mark.timeout(330)
@pytest.mark.parametrize("notebook", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_notebook_runs_under_nbval(notebook, tmp_path):
    env = {**os.environ, "GENLAB_FAST": "1", "MPLBACKEND": "Agg",
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
               "-p", "no:cacheprovider", "-q", "--rootdir", str(ROOT),
               str(notebook.relative_to(ROOT))]
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=300)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{notebook.name} did not finish under nbval in {err.timeout} s")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"nbval failed on {notebook.name}:\n{output[-6000:]}"
    summary = [line for line in result.stdout.splitlines() if re.search(r"\d+ passed", line)]
    assert summary, f"no 'passed' in pytest's summary:\n{output[-3000:]}"
    assert not re.search(r"\d+ (failed|error)", summary[-1]), summary[-1]
    assert int(re.search(r"(\d+) passed", summary[-1])[1]) >= 1
