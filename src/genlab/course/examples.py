"""Submissions made from a release: the bundled example class, the tests, and synthetic classes
of any size (``genlab example-class``) to try grading at scale.

Every submission is built from the release and the model solution; a typical mistake is code
appended after the model solution of one exercise (never an import of genlab's reference
answers), so what each notebook should score is known before it is graded.
"""
from __future__ import annotations

import copy
import csv
import json
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .. import labs as registry
from ..authoring import solution_code


def solution_of(source_nb, name: str) -> str:
    """The model solution of exercise ``name`` (its code, without the solution markers), e.g.
    to build a typical mistake on top of it without importing the reference answers."""
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") == name:
            return solution_code(cell.source)
    raise KeyError(f"no solution cell {name!r}")


def fill_in(release_nb, source_nb, answers: dict[str, str] | None = None):
    """A student's notebook: the release with every solution cell answered — from the source
    notebook's solution, or from ``answers`` (grade_id -> code; ``None`` keeps the stub)."""
    answers = answers or {}
    solutions = {c.metadata["nbgrader"]["grade_id"]: solution_code(c.source)
                 for c in source_nb.cells if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.from_dict(json.loads(json.dumps(release_nb)))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in solutions and cell.metadata["nbgrader"].get("solution"):
            answer = answers.get(gid, solutions[gid])
            if answer is not None:
                cell.source = answer
    return nb


# ------------------------------------------------------------------------------------------
# Typical mistakes, per lab
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mistake:
    """A typical mistake in one exercise: ``code`` is appended after the model solution of
    ``exercise`` (it usually wraps it), and the test cells ``loses`` fail because of it (and
    no other: tests/test_examples.py checks each entry with the lab's test cells)."""
    exercise: str
    shows: str
    code: str
    loses: tuple[str, ...]

    def answer(self, source_nb) -> str:
        return solution_of(source_nb, self.exercise) + self.code


def _m(exercise: str, shows: str, code: str, *loses: str) -> Mistake:
    return Mistake(exercise, shows, code, loses or (f"test_{exercise}",))


# lab -> its typical mistakes, each in a different exercise; the first is the bundled example
# class's (grading/examples/make_examples.py), so its code must not change.
MISTAKES: dict[str, tuple[Mistake, ...]] = {
    "01_transposed_convolution": (
        _m("conv_transpose2d", "the kernel flipped in conv_transpose2d", '''

_unflipped = conv_transpose2d


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    # A typical mistake: the kernel is flipped, as if this were a true convolution.
    return _unflipped(x, weight.flip(-1, -2), bias, stride, padding, output_padding, dilation)'''),
        _m("conv2d_matrix", "the transposed matrix returned by conv2d_matrix", '''

_right_matrix = conv2d_matrix


def conv2d_matrix(kernel, in_size, stride=1, padding=0):
    return _right_matrix(kernel, in_size, stride, padding).T   # rows and columns swapped'''),
    ),
    "02_autoencoder_bottleneck": (
        _m("reconstruction_loss", "reconstruction_loss averaged over pixels instead of summed", """

_summed = reconstruction_loss


def reconstruction_loss(x_hat, x):
    return _summed(x_hat, x) / x[0].numel()   # a mean over pixels, not a sum"""),
        _m("pca_reconstruct", "pca_reconstruct without adding the mean image back", """

_centered = pca_reconstruct


def pca_reconstruct(x_train, x_test, k):
    centered = _centered(x_train, x_test, k)   # the same checks of the arguments
    mean = x_train.reshape(len(x_train), -1).mean(dim=0).reshape(x_test.shape[1:])
    return centered - mean   # the mean image is never added back"""),
    ),
    "03_denoising_autoencoder": (
        _m("psnr", "psnr with the natural logarithm instead of log10", """

_log10_psnr = psnr


def psnr(x_hat, x, max_val=1.0):
    return _log10_psnr(x_hat, x, max_val) * math.log(10)   # 10 ln(.) instead of 10 log10(.)"""),
        _m("roc_auc", "roc_auc with the normal and anomalous scores swapped", """

_auc = roc_auc


def roc_auc(scores_normal, scores_anomalous):
    return _auc(scores_anomalous, scores_normal)   # the two score sets swapped: 1 - AUC"""),
    ),
    "04_vae": (
        _m("kl_to_standard_normal", "log-variance read as a log standard deviation in the KL",
           """

_kl = kl_to_standard_normal


def kl_to_standard_normal(mu, logvar):
    return _kl(mu, 2 * logvar)   # treats logvar as log(sigma): sigma^2 = exp(2 logvar)"""),
        _m("sample_prior", "sample_prior returns the decoder's logits, not pixel probabilities",
           """

_probabilities = sample_prior


def sample_prior(model, n, generator=None):
    return torch.logit(_probabilities(model, n, generator), eps=1e-6)   # sigmoid forgotten"""),
    ),
    "05_kl_divergence": (
        _m("kl_univariate", "variances passed where kl_univariate takes standard deviations", """

_kl = kl_univariate


def kl_univariate(mu1, sigma1, mu2, sigma2):
    return _kl(mu1, sigma1 ** 2, mu2, sigma2 ** 2)   # squares what is already a scale"""),
        _m("kl_diag_gaussians", "KL(p || q) computed where kl_diag_gaussians asks for KL(q || p)",
           """

_kl_qp = kl_diag_gaussians


def kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p):
    return _kl_qp(mu_p, logvar_p, mu_q, logvar_q)   # the two distributions swapped"""),
    ),
    "06_beta_vae": (
        _m("kl_per_dimension", "the per-dimension KL summed over the batch instead of averaged",
           """

_mean_kl = kl_per_dimension


def kl_per_dimension(mu, logvar):
    return _mean_kl(mu, logvar) * len(mu)   # a sum over the batch"""),
        _m("active_units", "active_units counts the inactive dimensions", """

_active = active_units


def active_units(mu, threshold=0.01):
    return mu.shape[1] - _active(mu, threshold)   # the dimensions at or below the threshold"""),
    ),
    "07_dcgan": (
        _m("discriminator_loss", "the discriminator's two losses averaged instead of added", """

_added = discriminator_loss


def discriminator_loss(real_logits, fake_logits):
    return _added(real_logits, fake_logits) / 2   # (real + fake) / 2"""),
        _m("generator_loss", "the saturating generator loss log(1 - D(G(z)))", """

def generator_loss(fake_logits):
    # minimizes log(1 - D(G(z))) instead of maximizing log D(G(z))
    return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))"""),
    ),
    "08_wgan": (
        _m("critic_loss", "the critic's loss with the wrong sign", """

_critic_loss = critic_loss


def critic_loss(real_scores, fake_scores):
    return -_critic_loss(real_scores, fake_scores)   # mean(real) - mean(fake)"""),
        _m("wasserstein_1d", "wasserstein_1d pairs the samples without sorting them", """

_sorted_w1 = wasserstein_1d


def wasserstein_1d(x, y):
    _sorted_w1(x, y)                  # the same checks of the arguments
    return (x - y).abs().mean()       # pairs x[i] with y[i]: not the optimal coupling"""),
    ),
}


# lab -> exercise -> the exercises whose code its tests call from the student's notebook, so that
# leaving one of those undone fails them too (the other tests use genlab's reference answers for
# the other exercises). tests/test_examples.py checks this with every exercise left undone.
REQUIRES: dict[str, dict[str, tuple[str, ...]]] = {
    "04_vae": {"VAE": ("reparameterize",)},   # VAE.forward samples with reparameterize
}


def with_mistakes(release_nb, source_nb, mistakes) -> nbformat.NotebookNode:
    """The model solution with each of ``mistakes`` made."""
    return fill_in(release_nb, source_nb, {m.exercise: m.answer(source_nb) for m in mistakes})


# ------------------------------------------------------------------------------------------
# Broken notebooks
# ------------------------------------------------------------------------------------------

def _graded(cell, key: str) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get(key))


def broken(nb):
    """Duplicate the first solution cell, delete one test cell, and kill the kernel after the
    first exercise's test: the first exercise keeps its points, the rest are not run."""
    cells = nb.cells
    first_test = next(i for i, c in enumerate(cells) if _graded(c, "grade"))
    first_solution = max(i for i, c in enumerate(cells[:first_test]) if _graded(c, "solution"))
    debugging = nbformat.v4.new_code_cell("# I was debugging something...\nimport os\nos._exit(1)")
    debugging.id = "debugging"  # a fixed id: regenerating the examples changes nothing
    cells.insert(first_test + 1, debugging)
    cells.insert(first_solution, copy.deepcopy(cells[first_solution]))
    last_test = max(i for i, c in enumerate(cells) if _graded(c, "grade"))
    del cells[last_test]
    for i, cell in enumerate(cells):  # keep cell ids unique, as Jupyter would
        cell.id = f"{cell.get('id', 'cell')}-{i}" if cell.get("id") else f"cell-{i}"
    return nb


def kill_kernel_in(nb, exercise: str):
    """End ``exercise``'s solution cell with ``os._exit(1)``: its tests and every later cell
    never run."""
    cell = next(c for c in nb.cells
                if _graded(c, "solution") and c.metadata["nbgrader"].get("grade_id") == exercise)
    cell.source += "\n\nimport os\nos._exit(1)   # left over from debugging: ends the kernel"
    return nb


def delete_test(nb, test_id: str):
    """Delete the test cell ``test_id`` (the grader puts it back)."""
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != test_id]
    return nb


def truncated(nb) -> str:
    """The first half of a notebook's file: an upload cut off, not valid JSON."""
    text = nbformat.writes(nb)
    return text[:len(text) // 2]


# ------------------------------------------------------------------------------------------
# A synthetic class
# ------------------------------------------------------------------------------------------

KINDS = ("honest", "mistakes", "partial", "blank", "broken")
DEFAULT_MIX = {"honest": 3, "mistakes": 3, "partial": 2, "blank": 1, "broken": 1}
# what a broken student's notebook of a lab is; they take turns (by student and lab)
BROKEN = ("kernel_dies", "not_json", "deleted_test", "everything")
MANIFEST = "class.json"


def parse_mix(text: str) -> dict[str, int]:
    """``"honest=3,blank=1"`` -> ``{"honest": 3, "blank": 1}`` (kinds left out get 0)."""
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, weight = part.partition("=")
        kind = kind.strip()
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} in the mix; kinds: {', '.join(KINDS)}")
        try:
            mix[kind] = int(weight)
        except ValueError:
            raise ValueError(f"the mix needs KIND=WEIGHT with an integer weight, got {part!r}") \
                from None
    _check_mix(mix)
    return mix


def _check_mix(mix: dict[str, int]) -> None:
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(sorted(unknown))}; kinds: {', '.join(KINDS)}")
    if any(w < 0 for w in mix.values()) or not any(mix.values()):
        raise ValueError("the mix needs non-negative weights, at least one of them positive")


def mix_counts(students: int, mix: dict[str, int] | None = None) -> dict[str, int]:
    """How many students of each kind: one of every kind with a positive weight (when there are
    enough students; the heaviest kinds first), the rest in proportion to the weights (largest
    remainder). Always sums to ``students``."""
    mix = DEFAULT_MIX if mix is None else mix
    _check_mix(mix)
    kinds = sorted((k for k in KINDS if mix.get(k, 0) > 0), key=lambda k: -mix[k])  # stable
    counts = {k: 0 for k in KINDS}
    for kind in kinds[:students]:
        counts[kind] = 1
    rest = students - sum(counts.values())
    if rest > 0:
        total = sum(mix[k] for k in kinds)
        quotas = {k: rest * mix[k] / total for k in kinds}
        for k in kinds:
            counts[k] += int(quotas[k])
        left = students - sum(counts.values())
        for k in sorted(kinds, key=lambda k: -(quotas[k] - int(quotas[k])))[:left]:
            counts[k] += 1
    return {k: n for k, n in counts.items() if n or k in mix}


def _student_kinds(students: int, seed: int, mix) -> list[str]:
    kinds = [k for k, n in mix_counts(students, mix).items() for _ in range(n)]
    random.Random(f"genlab-class/{seed}").shuffle(kinds)
    return kinds


def _expected(lab: registry.Lab, loses) -> float:
    return lab.max_score - sum(lab.points[t] for t in loses)


def _tests_of(lab: registry.Lab, exercises) -> list[str]:
    return [t for e in lab.exercises if e.name in exercises for t in e.tests]


def class_submission(lab_id: str, release_nb, source_nb, kind: str, rng: random.Random,
                     broken_turn: int = 0):
    """One student's notebook of ``lab_id`` (a notebook, or the text of a damaged file) and what
    it shows and should score: ``{"shows", "loses", "expected", "graded"}``."""
    lab = registry.get(lab_id)
    exercises = lab.exercise_names
    loses: list[str] = []
    graded = True
    if kind == "honest":
        nb, shows = fill_in(release_nb, source_nb), "complete and correct"
    elif kind == "blank":
        nb, shows, loses = copy.deepcopy(release_nb), "blank: the release as handed out", list(lab.points)
    elif kind == "mistakes":
        table = MISTAKES[lab_id]
        chosen = rng.sample(table, rng.randint(1, len(table)))
        chosen.sort(key=lambda m: exercises.index(m.exercise))
        nb = with_mistakes(release_nb, source_nb, chosen)
        shows = "typical mistakes: " + "; ".join(m.shows for m in chosen)
        loses = [t for t in lab.points if any(t in m.loses for m in chosen)]
    elif kind == "partial":
        answered = set(rng.sample(exercises, rng.randint(1, len(exercises) - 1)))
        nb = fill_in(release_nb, source_nb, {e: None for e in exercises if e not in answered})
        shows = "partly done: " + ", ".join(e for e in exercises if e in answered)
        needs = REQUIRES.get(lab_id, {})
        loses = _tests_of(lab, {e for e in exercises if e not in answered
                                or not answered.issuperset(needs.get(e, ()))})
    elif kind == "broken":
        variant = BROKEN[broken_turn % len(BROKEN)]
        if variant == "kernel_dies":
            exercise = rng.choice(exercises[1:])
            nb = kill_kernel_in(fill_in(release_nb, source_nb), exercise)
            shows = f"broken: os._exit(1) at the end of the solution of {exercise}"
            loses = _tests_of(lab, exercises[exercises.index(exercise):])
        elif variant == "not_json":
            nb, shows = truncated(fill_in(release_nb, source_nb)), "broken: a truncated file, not JSON"
            loses, graded = list(lab.points), False
        elif variant == "deleted_test":
            mistake = rng.choice(MISTAKES[lab_id])
            nb = delete_test(with_mistakes(release_nb, source_nb, [mistake]), mistake.loses[0])
            shows = (f"broken: a typical mistake ({mistake.shows}) and its test cell "
                     f"{mistake.loses[0]} deleted")
            loses = list(mistake.loses)
        else:
            nb = broken(fill_in(release_nb, source_nb))
            shows = ("broken: a duplicated graded cell, a deleted test cell, and a cell that "
                     "kills the kernel after the first exercise's test")
            loses = list(lab.points)[1:]
    else:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    return nb, {"shows": shows, "loses": loses, "expected": _expected(lab, loses),
                "max_score": lab.max_score, "graded": graded}


def copy_course(root: Path, dest: Path, labs) -> None:
    """A course of its own in ``dest``: ``labs``' sources, solutions and releases and the
    nbgrader configuration (grading it never touches ``root``'s gradebook)."""
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    for lab_id in labs:
        lab = registry.get(lab_id)
        for path in (lab.solution(root).parent, lab.release(root).parent):
            shutil.copytree(path, dest / path.relative_to(root), ignore=ignore)
        if lab.source(root).is_file():
            (dest / "notebooks").mkdir(parents=True, exist_ok=True)
            shutil.copy(lab.source(root), dest / "notebooks")
    (dest / "grading").mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "grading" / "nbgrader_config.py", dest / "grading")


def make_class(out, students: int, labs=None, seed: int = 0, mix: dict[str, int] | None = None,
               root: Path | None = None) -> dict:
    """Write a synthetic class into ``out`` and return its manifest.

    ``out`` becomes a course of its own (``labs``' solutions, releases and sources, and the
    nbgrader configuration, copied from ``root``), with ``students`` submissions of each lab in
    ``out/grading/submitted/<student>/<lab>/<lab>.ipynb`` and the manifest in ``out/class.json``:
    each student's kind (``KINDS``: mixed by ``mix``, ``DEFAULT_MIX`` by default) and, per lab,
    what the notebook shows, the test cells it should fail and its expected score. The same
    ``seed`` gives the same bytes; a student's notebook of a lab does not depend on which other
    labs are made. ``cd out && genlab grade`` grades it.
    """
    from .paths import available_labs, course_root
    root = Path(root) if root else course_root()
    out = Path(out)
    labs = list(labs or available_labs(root))
    if students < 1:
        raise ValueError(f"students must be at least 1, got {students}")
    mix = dict(DEFAULT_MIX if mix is None else mix)
    kinds = _student_kinds(students, seed, mix)
    names = [f"student{i:0{max(3, len(str(students)))}d}" for i in range(1, students + 1)]
    copy_course(root, out, labs)
    manifest = {"made_by": "genlab example-class", "seed": seed, "students": students,
                "labs": labs, "mix": mix, "counts": mix_counts(students, mix),
                "class": {name: {"kind": kind, "labs": {}} for name, kind in zip(names, kinds)}}
    order = list(registry.LABS)
    for lab_id in labs:
        release = nbformat.read(str(registry.get(lab_id).release(out)), as_version=4)
        source = nbformat.read(str(registry.get(lab_id).solution(out)), as_version=4)
        written: dict[str, str] = {}  # the same notebook is serialized once
        broken_turn = order.index(lab_id)
        for name, kind in zip(names, kinds):
            rng = random.Random(f"genlab-class/{seed}/{name}/{lab_id}")
            nb, info = class_submission(lab_id, release, source, kind, rng, broken_turn)
            broken_turn += kind == "broken"
            text = nb if isinstance(nb, str) else written.setdefault(
                json.dumps(info, sort_keys=True), nbformat.writes(nb))
            dest = out / "grading" / "submitted" / name / lab_id / f"{lab_id}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
            manifest["class"][name]["labs"][lab_id] = info
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def check_grades(manifest: dict, grades) -> list[str]:
    """Where ``grades`` (``Grade`` objects or CSV rows) differ from the manifest's expected
    scores; empty when every submission scored what it should."""
    got = {}
    for g in grades:
        row = g if isinstance(g, dict) else vars(g)
        got[(row["student"], row["lab"])] = float(row["score"])
    problems = []
    for student, entry in manifest["class"].items():
        for lab_id, info in entry["labs"].items():
            score = got.get((student, lab_id))
            if score is None:
                problems.append(f"{student}/{lab_id}: not graded")
            elif abs(score - info["expected"]) > 1e-9:
                problems.append(f"{student}/{lab_id} ({entry['kind']}: {info['shows']}): "
                                f"{score:g}, expected {info['expected']:g}")
    return problems


def cmd_example_class(args) -> int:
    from .paths import available_labs, course_root
    out = Path(args.out)
    if args.verify:
        manifest_path, grades_csv = out / MANIFEST, out / "grading" / "grades.csv"
        if not manifest_path.is_file() or not grades_csv.is_file():
            print(f"genlab example-class: --verify needs {manifest_path} and {grades_csv} "
                  f"(generate, then grade: cd {out} && genlab grade)", file=sys.stderr)
            return 2
        manifest = json.loads(manifest_path.read_text())
        problems = check_grades(manifest, csv.DictReader(open(grades_csv)))
        for line in problems:
            print("  " + line)
        n = sum(len(s["labs"]) for s in manifest["class"].values())
        print(f"genlab example-class: {n - len(problems)} of {n} submissions scored as expected")
        return 1 if problems else 0
    root = course_root()
    known = available_labs(root)
    unknown = [lab for lab in args.labs if lab not in known]
    if unknown:
        print(f"genlab example-class: unknown lab(s) {', '.join(unknown)}; available: "
              f"{', '.join(known)}", file=sys.stderr)
        return 2
    if args.students < 1:
        print("genlab example-class: --students must be at least 1", file=sys.stderr)
        return 2
    try:
        mix = parse_mix(args.mix) if args.mix else None
    except ValueError as err:
        print(f"genlab example-class: --mix: {err}", file=sys.stderr)
        return 2
    if out.exists() and any(out.iterdir()):
        if not (args.force and (out / MANIFEST).is_file()):
            print(f"genlab example-class: {out} is not empty" + (
                  "; --force replaces only a folder genlab example-class made" if args.force else
                  " (--force replaces a class made before)"), file=sys.stderr)
            return 2
        shutil.rmtree(out)
    import time
    start = time.monotonic()
    manifest = make_class(out, args.students, args.labs or None, seed=args.seed, mix=mix, root=root)
    n = sum(len(s["labs"]) for s in manifest["class"].values())
    counts = ", ".join(f"{k} {v}" for k, v in manifest["counts"].items() if v)
    print(f"genlab example-class: {args.students} students ({counts}) x {len(manifest['labs'])} "
          f"lab(s) = {n} notebooks in {out}/grading/submitted/ ({time.monotonic() - start:.1f} s); "
          f"manifest {out / MANIFEST}")
    print(f"  grade it:   cd {out} && genlab grade --workers 2\n"
          f"  then check: genlab example-class --verify --out {out}")
    return 0
