"""The lab registry: one home for everything genlab knows about each lab.

Every command (``genlab build/release/grade/validate/check``) and every repository test reads
this list; nothing else names the labs. A lab is:

- ``id``: the nbgrader assignment name, also the folder and notebook name (``04_vae``);
- ``title`` and ``topic``: the library module with the reference answers (``genlab.vae``);
- ``exercises``: each graded function or class with its test cells and their points
  (``test_<name>`` first, then ``test_<name>_<suffix>``), in notebook order;
- budgets (the course contract): the whole notebook in ``minutes`` on a 2-core CPU
  at the default budget, in ``fast_seconds`` in fast mode.

Adding a lab: ``docs/adding-a-lab.md``. ``genlab validate`` fails when a lab here has no source
(``notebooks/<id>.py``) or a source has no entry here, and when the notebook's graded cells do not
match the entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Exercise:
    name: str                       # the solution cell's grade_id and the reference's name
    tests: dict[str, float]         # test cell grade_id -> points

    @property
    def points(self) -> float:
        return sum(self.tests.values())


@dataclass(frozen=True)
class Lab:
    id: str
    title: str
    topic: str
    exercises: tuple[Exercise, ...]
    minutes: float = 5.0            # default budget, whole notebook, 2-core CPU
    fast_seconds: float = 30.0      # fast mode (GENLAB_FAST=1), whole notebook

    @property
    def number(self) -> str:
        return self.id.split("_", 1)[0]

    @property
    def points(self) -> dict[str, float]:
        """Every test cell's grade_id -> points, in notebook order."""
        return {test: p for exercise in self.exercises for test, p in exercise.tests.items()}

    @property
    def exercise_names(self) -> list[str]:
        return [exercise.name for exercise in self.exercises]

    @property
    def max_score(self) -> float:
        return sum(self.points.values())

    def judged(self, grade_id: str) -> bool:
        """Whether ``grade_id`` is a test cell, which runs in the grader's process
        (genlab.course.judge), out of the student's reach: every test cell is."""
        return grade_id in self.points

    def exercise_of(self, grade_id: str) -> str:
        """The exercise a test cell (or solution cell) belongs to: ``test_psnr`` -> ``psnr``."""
        for exercise in self.exercises:
            if grade_id == exercise.name or grade_id in exercise.tests:
                return exercise.name
        raise KeyError(f"{self.id} has no graded cell {grade_id!r}")

    def source(self, root: Path) -> Path:
        """The maintainers' percent-format source of the solution notebook."""
        return Path(root) / "notebooks" / f"{self.id}.py"

    def solution(self, root: Path) -> Path:
        return Path(root) / "solutions" / self.id / f"{self.id}.ipynb"

    def release(self, root: Path) -> Path:
        return Path(root) / "labs" / self.id / f"{self.id}.ipynb"


def _ex(name: str, points: float, **more: float) -> Exercise:
    """``_ex("psnr", 2)``; extra test cells as keyword arguments: ``_ex("x", 2, errors=1)``."""
    return Exercise(name, {f"test_{name}": points, **{f"test_{name}_{k}": p for k, p in more.items()}})


LABS: dict[str, Lab] = {lab.id: lab for lab in [
    Lab("01_transposed_convolution", "Transposed convolution: how a network learns to upsample",
        "tconv", (_ex("conv_transpose_output_size", 2), _ex("conv_transpose2d", 4, errors=1),
                  _ex("conv2d_matrix", 3))),
    Lab("02_autoencoder_bottleneck", "The bottleneck: what an autoencoder learns when it must compress",
        "autoencoder", (_ex("reconstruction_loss", 2), _ex("Autoencoder", 3),
                        _ex("train_autoencoder", 2), _ex("pca_reconstruct", 3, errors=1))),
    Lab("03_denoising_autoencoder", "Denoising autoencoders: learning by repairing",
        "denoising", (_ex("add_gaussian_noise", 2, errors=1), _ex("add_masking_noise", 2, errors=1),
                      _ex("add_salt_and_pepper_noise", 2, errors=1), _ex("psnr", 2, errors=1),
                      _ex("denoising_train_step", 3), _ex("anomaly_scores", 2),
                      _ex("roc_auc", 3, errors=1))),
    Lab("04_vae", "Variational autoencoders: an autoencoder you can sample from",
        "vae", (_ex("box_muller", 2), _ex("reparameterize", 3), _ex("kl_to_standard_normal", 3),
                _ex("VAE", 3), _ex("elbo_loss", 4), _ex("gaussian_nll", 3, errors=1),
                _ex("sample_prior", 2), _ex("interpolate", 3))),
    Lab("05_kl_divergence", "The KL divergence: what the VAE's second term really measures",
        "kl", (_ex("kl_univariate", 3), _ex("kl_diag_gaussians", 3), _ex("kl_monte_carlo", 3),
               _ex("LinearGaussianModel", 2, posterior=2), _ex("elbo", 3))),
    Lab("06_beta_vae", "β-VAE: disentangled factors, measured",
        "disentangle", (_ex("beta_vae_loss", 2), _ex("kl_per_dimension", 2), _ex("active_units", 2),
                        _ex("latent_traversal", 3), _ex("mutual_information_gap", 6))),
    Lab("07_dcgan", "DCGAN: two networks that learn by playing against each other",
        "dcgan", (_ex("discriminator_loss", 3), _ex("generator_loss", 3), _ex("Generator", 3),
                  _ex("Discriminator", 3), _ex("dcgan_weights_init", 3), _ex("gan_train_step", 5))),
    Lab("08_wgan", "Wasserstein GANs: a distance that keeps its gradient",
        "wgan", (_ex("wasserstein_1d", 2, errors=1), _ex("parallel_lines_divergences", 3),
                 _ex("critic_loss", 1), _ex("wgan_generator_loss", 1), _ex("clip_weights_", 2, errors=1),
                 _ex("gradient_penalty", 5, errors=1), _ex("wgan_train_step", 6))),
]}


def get(lab_id: str) -> Lab:
    """The registry entry of ``lab_id``; a clear error naming the known labs otherwise."""
    try:
        return LABS[lab_id]
    except KeyError:
        raise KeyError(f"unknown lab {lab_id!r}; the registry (genlab/labs.py) has "
                       f"{', '.join(LABS)}") from None


def exercise_of(grade_id: str, exercises) -> str | None:
    """Which of ``exercises`` a cell belongs to, by name: ``test_conv2d_matrix_hidden`` ->
    ``conv2d_matrix`` (the longest name that fits), or None."""
    name = grade_id[5:] if grade_id.startswith("test_") else grade_id
    return next((e for e in sorted(exercises, key=len, reverse=True)
                 if name == e or name.startswith(e + "_")), None)


def available(root: Path) -> list[str]:
    """Registered labs whose solution notebook exists under ``root`` (in registry order)."""
    return [lab.id for lab in LABS.values() if lab.solution(root).is_file()]


def registry_problems(root: Path) -> list[str]:
    """Registry vs repository: a source without an entry, an entry without a source."""
    root = Path(root)
    problems = []
    sources = {p.stem for p in (root / "notebooks").glob("*.py")}
    for stem in sorted(sources - set(LABS)):
        problems.append(f"notebooks/{stem}.py has no entry in the lab registry (src/genlab/labs.py); "
                        "add one (docs/adding-a-lab.md)")
    for lab in LABS.values():
        if lab.id not in sources:
            problems.append(f"lab {lab.id} is in the registry but has no source notebooks/{lab.id}.py")
    return problems


def structure_problems(lab: Lab, nb) -> list[str]:
    """The built notebook's graded cells vs the registry entry: exercises, test cells, points."""
    cells = [c.metadata["nbgrader"] for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")]
    solutions = [m["grade_id"] for m in cells if m.get("solution")]
    points = {m["grade_id"]: float(m.get("points") or 0) for m in cells if m.get("grade")}
    problems = []
    if solutions != lab.exercise_names:
        problems.append(f"{lab.id}: exercises in the notebook {solutions} != registry {lab.exercise_names}")
    if points != {k: float(v) for k, v in lab.points.items()}:
        problems.append(f"{lab.id}: test cells and points in the notebook {points} != registry {lab.points}")
    return problems
