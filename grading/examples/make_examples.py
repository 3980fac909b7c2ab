"""Regenerate the bundled example submissions from the current release and solutions.

    python grading/examples/make_examples.py        (after `genlab release`)

Each student shows one thing an instructor meets in a real class. `make grade` grades them;
tests/test_grading.py checks each gets the score its description promises.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat

from genlab import labs
from genlab.course.examples import fill_in, solution_of

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

FLIPPED_KERNEL = '''

_unflipped = conv_transpose2d


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    # A typical mistake: the kernel is flipped, as if this were a true convolution.
    return _unflipped(x, weight.flip(-1, -2), bias, stride, padding, output_padding, dilation)'''

# One typical mistake per lab, built on the model solution (never on genlab's reference answers):
# lab -> (what it shows, exercise, code appended after the model solution, test cells that fail)
MISTAKES = {
    "01_transposed_convolution": ("the kernel flipped in conv_transpose2d", "conv_transpose2d",
                                  FLIPPED_KERNEL, ["test_conv_transpose2d"]),
    "02_autoencoder_bottleneck": ("reconstruction_loss averaged over pixels instead of summed",
                                  "reconstruction_loss", """

_summed = reconstruction_loss


def reconstruction_loss(x_hat, x):
    return _summed(x_hat, x) / x[0].numel()   # a mean over pixels, not a sum""",
                                  ["test_reconstruction_loss"]),
    "03_denoising_autoencoder": ("psnr with the natural logarithm instead of log10", "psnr", """

_log10_psnr = psnr


def psnr(x_hat, x, max_val=1.0):
    return _log10_psnr(x_hat, x, max_val) * math.log(10)   # 10 ln(.) instead of 10 log10(.)""",
                                 ["test_psnr"]),
    "04_vae": ("log-variance read as a log standard deviation in the KL", "kl_to_standard_normal",
               """

_kl = kl_to_standard_normal


def kl_to_standard_normal(mu, logvar):
    return _kl(mu, 2 * logvar)   # treats logvar as log(sigma): sigma^2 = exp(2 logvar)""",
               ["test_kl_to_standard_normal"]),
    "05_kl_divergence": ("variances passed where kl_univariate takes standard deviations",
                         "kl_univariate", """

_kl = kl_univariate


def kl_univariate(mu1, sigma1, mu2, sigma2):
    return _kl(mu1, sigma1 ** 2, mu2, sigma2 ** 2)   # squares what is already a scale""",
                         ["test_kl_univariate"]),
    "06_beta_vae": ("the per-dimension KL summed over the batch instead of averaged",
                    "kl_per_dimension", """

_mean_kl = kl_per_dimension


def kl_per_dimension(mu, logvar):
    return _mean_kl(mu, logvar) * len(mu)   # a sum over the batch""",
                    ["test_kl_per_dimension"]),
    "07_dcgan": ("the discriminator's two losses averaged instead of added", "discriminator_loss",
                 """

_added = discriminator_loss


def discriminator_loss(real_logits, fake_logits):
    return _added(real_logits, fake_logits) / 2   # (real + fake) / 2""",
                 ["test_discriminator_loss"]),
    "08_wgan": ("the critic's loss with the wrong sign", "critic_loss", """

_critic_loss = critic_loss


def critic_loss(real_scores, fake_scores):
    return -_critic_loss(real_scores, fake_scores)   # mean(real) - mean(fake)""",
                ["test_critic_loss"]),
}


def examples_for(lab: str, test_ids: list[str]) -> dict:
    """student -> (what the example shows, answers, test cells expected to fail)."""
    shows, exercise, code, loses = MISTAKES[lab]
    return {
        "ada": ("complete and correct", {}, []),
        "ben": ("blank: the release as handed out", None, "all"),
        "cat": (f"one typical mistake: {shows}", {exercise: (exercise, code)}, loses),
        "dan": ("broken: a duplicated graded cell, a deleted test cell, and a cell that kills "
                "the kernel after the first exercise's test", "broken", test_ids[1:]),
    }


def broken(nb):
    """Duplicate the first solution cell, delete one test cell, and kill the kernel after the
    first exercise's test: the first exercise keeps its points, the rest are not run."""
    cells = nb.cells
    first_test = next(i for i, c in enumerate(cells)
                      if c.metadata.get("nbgrader", {}).get("grade"))
    first_solution = max(i for i, c in enumerate(cells[:first_test])
                         if c.metadata.get("nbgrader", {}).get("solution"))
    debugging = nbformat.v4.new_code_cell("# I was debugging something...\nimport os\nos._exit(1)")
    debugging.id = "debugging"  # a fixed id: regenerating the examples changes nothing
    cells.insert(first_test + 1, debugging)
    cells.insert(first_solution, copy.deepcopy(cells[first_solution]))
    last_test = max(i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade"))
    del cells[last_test]
    for i, cell in enumerate(cells):  # keep cell ids unique, as Jupyter would
        cell.id = f"{cell.get('id', 'cell')}-{i}" if cell.get("id") else f"cell-{i}"
    return nb


def main() -> None:
    manifest = {}
    for lab in MISTAKES:
        release = nbformat.read(str(ROOT / "labs" / lab / f"{lab}.ipynb"), as_version=4)
        source = nbformat.read(str(ROOT / "solutions" / lab / f"{lab}.ipynb"), as_version=4)
        students = examples_for(lab, list(labs.get(lab).points))
        for student, (description, answers, loses) in students.items():
            if answers is None:
                nb = copy.deepcopy(release)
            elif answers == "broken":
                nb = broken(fill_in(release, source))
            else:  # (exercise, code added after the model solution): the student's own mistake
                nb = fill_in(release, source, {name: solution_of(source, base) + extra
                                               for name, (base, extra) in answers.items()})
            dest = HERE / "submitted" / student / lab / f"{lab}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(dest))
            manifest.setdefault(lab, {})[student] = {"shows": description, "loses": loses}
    (HERE / "examples.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
