"""Every lab's default CPU budget bounds the images a training run sees, whatever the data source.

An online student gets all 60,000 MNIST training digits; an offline one the 4,000-digit
fallback. A budget written as "N epochs of the training split" then costs 15 times more online
than what the lab was measured with. Here each lab's budget statements (the assignments in its
solution that call only ``budget``, ``load_mnist``, ``len``, ``max``, ...) are run with the real
default budget (not fast mode) twice: once on a full-size 60,000-image training split (Debian's
Fashion-MNIST standing in for MNIST: the same IDX format and size) and once on the fallback.
The images each training run sees may grow by at most ``MAX_GROWTH`` between the two.

No model is trained: this checks the budget arithmetic of the notebooks as written. The time a
lab takes on 60,000 images is measured by running it (README, "Budgets").
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
MAX_GROWTH = 1.3   # labs 03/04 use up to 5,000 digits where the fallback has 4,000

# For each lab that trains on digits: the images one training run sees, as expressions in the
# notebook's budget names.
RUNS = {
    "02_autoencoder_bottleneck": ["EPOCHS * len(x_train)", "LINEAR_EPOCHS * len(x_train)"],
    "03_denoising_autoencoder": ["EPOCHS * len(x_train)"],
    "04_vae": ["EPOCHS * len(x_train)", "EPOCHS_2D * len(x_train)"],
    "07_dcgan": ["EPOCHS * len(x_train)"],
    "08_wgan": ["DCGAN_EPOCHS * len(x_train)", "WGAN_EPOCHS * len(x_train)"],
}

# Calls a budget statement may make; any other call (training, plotting) is not run.
ALLOWED_CALLS = {"budget", "gpu_budget", "load_mnist", "len", "max", "min", "round", "int",
                 "dict", "get_device", "range", "list", "items"}

PROBE = r"""
import ast, json, sys, warnings
warnings.simplefilter("ignore")
from genlab.config import budget
from genlab.data import load_mnist
from genlab.device import get_device
source, expressions, allowed = json.loads(sys.stdin.read())
env = {"budget": budget, "load_mnist": load_mnist, "get_device": get_device}


def calls_allowed(node):
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        f = call.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name not in allowed:
            return False
    return True


for node in ast.parse(source).body:
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and calls_allowed(node):
        try:
            exec(compile(ast.Module([node], []), "<budget>", "exec"), env)
        except (NameError, KeyError, TypeError, AttributeError):
            pass   # depends on something that was not run (a model, a result)
print(json.dumps([eval(e, env) for e in expressions]))
"""


def solution_source(lab_id: str) -> str:
    """The code cells of a lab's solution, in order, without IPython magics."""
    nb = json.loads((ROOT / "solutions" / lab_id / f"{lab_id}.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    return "\n".join(line for cell in cells for line in cell.splitlines()
                     if not line.lstrip().startswith(("%", "!")))


def images_seen(lab_id: str, env: dict) -> list[int]:
    payload = json.dumps([solution_source(lab_id), RUNS[lab_id], sorted(ALLOWED_CALLS)])
    result = subprocess.run([sys.executable, "-c", PROBE], input=payload, capture_output=True,
                            text=True, env=env, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Environments for the two data sources: 60,000 training images and the fallback."""
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    full = tmp_path_factory.mktemp("full")
    (full / "MNIST" / "raw").mkdir(parents=True)
    for path in FASHION.glob("*-ubyte.gz"):
        (full / "MNIST" / "raw" / path.name).symlink_to(path)
    base = {k: v for k, v in os.environ.items()
            if k not in ("GENLAB_FAST", "NBGRADER_EXECUTION", "GENLAB_DATA")}
    base.update(GENLAB_OFFLINE="1", GENLAB_NO_GPU_BUDGET="1", GENLAB_DEVICE="cpu")
    return {"60k": {**base, "GENLAB_DATA": str(full)},
            "fallback": {**base, "GENLAB_DATA": str(tmp_path_factory.mktemp("empty"))}}


def test_the_stand_in_is_full_size(sources):
    """The 60,000-image source really is 60,000 images (and the fallback is not)."""
    probe = ("from genlab.data import load_mnist; import warnings; warnings.simplefilter('ignore');"
             "print(len(load_mnist('train')[0]))")
    sizes = {name: int(subprocess.run([sys.executable, "-c", probe], env=env, text=True,
                                      capture_output=True, timeout=300).stdout.split()[-1])
             for name, env in sources.items()}
    assert sizes == {"60k": 60_000, "fallback": 4_000}


@pytest.mark.parametrize("lab_id", RUNS)
def test_budget_bounds_the_images_seen(lab_id, sources):
    full, fallback = images_seen(lab_id, sources["60k"]), images_seen(lab_id, sources["fallback"])
    for expression, big, small in zip(RUNS[lab_id], full, fallback):
        assert small > 0 and big > 0, f"{lab_id}: {expression} is {small} / {big}"
        assert big <= MAX_GROWTH * small, (
            f"{lab_id}: a training run sees {big:,} images ({expression}) with 60,000 training "
            f"images but {small:,} with the 4,000-image fallback: the default budget grows with "
            f"the data set; bound the images seen (e.g. epochs = IMAGES // len(x_train))")


def test_the_probe_catches_an_unbounded_budget(sources):
    """The check can fail: a budget of 20 epochs over the whole split is caught."""
    source = ("x_train, _ = load_mnist('train', limit=budget(default=None, fast=600))\n"
              "EPOCHS = budget(default=20, fast=1)\n")
    payload = json.dumps([source, ["EPOCHS * len(x_train)"], sorted(ALLOWED_CALLS)])
    seen = {name: json.loads(subprocess.run([sys.executable, "-c", PROBE], input=payload, env=env,
                                            capture_output=True, text=True, timeout=300,
                                            cwd=ROOT).stdout.split()[-1])[0]
            for name, env in sources.items()}
    assert seen == {"60k": 1_200_000, "fallback": 80_000}
    assert seen["60k"] > MAX_GROWTH * seen["fallback"]
