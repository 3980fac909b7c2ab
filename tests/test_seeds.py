"""genlab seeds: each run gets its seed through GENLAB_SEED in a real kernel, reports the last
printed cell, and a failing run does not stop the others."""
import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from genlab import seeds


def _notebook(tmp_path, fail_on=None):
    cells = [new_code_cell("import genlab\nSEED = genlab.run_seed()\nprint('set-up')"),
             new_code_cell(f"assert SEED != {fail_on!r}, 'seed refused'" if fail_on is not None
                           else "pass"),
             new_code_cell("import os\nprint(f'seed {SEED}, fast {os.environ.get(\"GENLAB_FAST\")}')"),
             new_code_cell("x = 1"),                                    # prints nothing
             new_markdown_cell("the end")]
    path = tmp_path / "lab.ipynb"
    nbformat.write(new_notebook(cells=cells), str(path))
    return path


def test_each_seed_runs_in_its_own_kernel_and_reports_the_last_printout(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_FAST", "1")
    monkeypatch.delenv("GENLAB_SEED", raising=False)
    lines = []
    rows = seeds.run_seed_sweep(_notebook(tmp_path), [3, 1], log=lines.append)
    assert [(seed, report) for seed, _, report in rows] == [(3, "seed 3, fast None"),
                                                              (1, "seed 1, fast None")]
    assert os.environ["GENLAB_FAST"] == "1" and "GENLAB_SEED" not in os.environ   # restored
    assert len(lines) == 2 and lines[0].startswith("seed 3 (")


def test_a_failing_seed_is_reported_and_the_others_still_run(tmp_path):
    rows = seeds.run_seed_sweep(_notebook(tmp_path, fail_on=2), [2, 4], fast=True, log=lambda _: None)
    assert rows[0][2].startswith("FAILED") and "seed refused" in rows[0][2]
    assert rows[1][2] == "seed 4, fast 1"
