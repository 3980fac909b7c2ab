"""The test cells that need the most of the judge, run as a student's self-check runs them
(``genlab check``: grading kernel, sandbox where bubblewrap is installed, verdict in this
process): a spy in place of the student's ``reparameterize`` and a model trained with an
optimizer in the kernel (lab 04), a count of backward passes through the test's generator
(lab 07), a penalty differentiated twice through the test's critic and a training step whose
calls are recorded in the kernel (lab 08). Each typical mistake below must still fail there,
with its message, and the answer key must be out of reach."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from genlab import labs
from genlab.course.check import run_tests

ROOT = Path(__file__).resolve().parents[1]


def _variant(tmp_path: Path, lab_id: str, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """The model solution of ``lab_id`` with ``edits`` ({solution cell: [(old, new), ...]})."""
    nb = nbformat.read(str(labs.get(lab_id).solution(ROOT)), as_version=4)
    for cell in nb.cells:
        for old, new in edits.get(cell.metadata.get("nbgrader", {}).get("grade_id"), []):
            assert old in cell.source, (lab_id, old)
            cell.source = cell.source.replace(old, new)
    path = tmp_path / lab_id / f"{lab_id}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, str(path))
    return path


def _results(path: Path, lab_id: str) -> dict:
    reference = ROOT / "labs" / lab_id / f"{lab_id}.ipynb"
    return {r.grade_id: r for r in run_tests(path, reference=reference)}


def test_lab04_spy_and_kernel_optimizer(tmp_path):
    """Decoding mu instead of the sampled code is caught by the spy's records."""
    path = _variant(tmp_path, "04_vae", {"VAE": [(
        "return self.decode(reparameterize(mu, logvar)), mu, logvar",
        "z = reparameterize(mu, logvar)\n        return self.decode(mu), mu, logvar")]})
    results = _results(path, "04_vae")
    assert not results["test_VAE"].passed
    assert "decoding mu instead of the sampled code" in results["test_VAE"].message
    assert all(r.passed for gid, r in results.items() if gid != "test_VAE"), \
        {gid: r.message for gid, r in results.items() if not r.passed}


def test_lab04_a_model_that_cannot_learn_fails(tmp_path):
    """An encoder under torch.no_grad: its weights get no gradient from the test's loss, whose
    backward reaches the parameters in the kernel."""
    path = _variant(tmp_path, "04_vae", {"VAE": [(
        "mu, logvar = self.encode(x)\n",
        "with torch.no_grad():\n            mu, logvar = self.encode(x)\n")]})
    results = _results(path, "04_vae")
    assert not results["test_VAE"].passed
    assert "gives no gradient to" in results["test_VAE"].message
    assert "torch.no_grad() or .detach()" in results["test_VAE"].message


def test_lab07_missing_detach_in_the_discriminator_step_fails(tmp_path):
    """The anchor bug: D's loss back-propagates into G. Counted in the kernel, by the test's G."""
    path = _variant(tmp_path, "07_dcgan", {"gan_train_step": [(
        "d_loss = discriminator_loss(D(real), D(fake.detach()))",
        "d_loss = discriminator_loss(D(real), D(fake))"), (
        "d_loss.backward()", "d_loss.backward(retain_graph=True)")]})
    results = _results(path, "07_dcgan")
    assert not results["test_gan_train_step"].passed
    assert "back-propagated into the generator" in results["test_gan_train_step"].message
    assert all(r.passed for gid, r in results.items() if gid != "test_gan_train_step")


def test_lab08_mistakes_and_the_answer_key(tmp_path):
    """Without create_graph the penalty cannot train the critic (its gradient comes through the
    kernel); codes reused for the generator step are counted by the test's spy; the answer key,
    imported past the static check, is an empty module in the sandbox."""
    sandboxed = Path("/usr/bin/bwrap").exists()
    path = _variant(tmp_path, "08_wgan", {
        "gradient_penalty": [("create_graph=True", "create_graph=False")],
        "wgan_train_step": [("fake = G(z_fn(len(real)))", "z = z_fn(len(real))\n            fake = G(z)"),
                            ("critic(G(z_fn(len(real_batches[0]))))", "critic(G(z))")],
        "critic_loss": [("def critic_loss(", "import importlib\n_key = importlib.import_module("
                         "'genlab.' + 'wg' + 'an')\n\n\ndef critic_loss(")],
    })
    # critic_loss hands its work to the answer key
    nb = nbformat.read(str(path), as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "critic_loss")
    body = cell.source.index("### BEGIN SOLUTION")
    end = cell.source.index("### END SOLUTION")
    cell.source = (cell.source[:body] + "### BEGIN SOLUTION\n    return _key.critic_loss(real_scores, "
                   "fake_scores)\n    " + cell.source[end:])
    nbformat.write(nb, str(path))
    results = _results(path, "08_wgan")
    penalty = results["test_gradient_penalty"]
    assert not penalty.passed and "create_graph=True" in penalty.message, penalty.message
    step = results["test_wgan_train_step"]
    assert not step.passed and "reusing the last critic step's codes" in step.message, step.message
    if sandboxed:
        assert not results["test_critic_loss"].passed   # genlab.wgan is empty in the sandbox
    assert results["test_wasserstein_1d"].passed and results["test_clip_weights_"].passed
