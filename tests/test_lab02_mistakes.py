"""Lab 02 autograder tests are fair and discriminating.

For every exercise of notebooks/02_autoencoder_bottleneck.py: the model solution, the library
reference and correct alternative implementations pass its test cells (visible and hidden); the
stub, objects that claim to equal everything, and typical mistakes fail, each mistake with a
message that names it.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab import autoencoder as reference
from genlab import labs
from genlab.testing import AlwaysEqual, EqualTensor, LabHarness, stub
from genlab.training import fit

LAB = labs.get("02_autoencoder_bottleneck")
SOURCE = LAB.source(Path(__file__).resolve().parents[1])
EXERCISES = LAB.exercise_names
POINTS = LAB.points


@pytest.fixture(scope="module")
def lab():
    return LabHarness(SOURCE)


@pytest.fixture(autouse=True)
def _no_progress_bars(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")  # fit() then shows no progress bar


# ------------------------------------------- model solutions (common checks: test_lab_cells.py)

def test_training_budgets_use_budget_with_a_gpu_tier():
    text = SOURCE.read_text()
    # the budget counts images seen, so that 60,000 digits cost what 4,000 do (test_budgets.py)
    assert "IMAGES_PER_MODEL = budget(default=80_000, fast=" in text and "gpu=" in text
    assert "EPOCHS = max(1, IMAGES_PER_MODEL // len(x_train))" in text
    assert "N_TRAIN = budget(default=" in text
    assert "train_autoencoder(model, x_train" in text  # the experiment uses the student's code


def test_model_solutions_agree_with_the_reference(lab):
    ns = lab.namespace()
    g = torch.Generator().manual_seed(0)
    x, x_hat = torch.rand(6, 1, 28, 28, generator=g), torch.rand(6, 1, 28, 28, generator=g)
    torch.testing.assert_close(ns["reconstruction_loss"](x_hat, x),
                               reference.reconstruction_loss(x_hat, x))
    x_train = torch.rand(50, 1, 28, 28, generator=g)
    torch.testing.assert_close(ns["pca_reconstruct"](x_train, x, 4),
                               reference.pca_reconstruct(x_train, x, 4), atol=1e-5, rtol=1e-4)
    # Same architecture, same initialisation: the same model.
    torch.manual_seed(1)
    mine = ns["Autoencoder"](3)
    torch.manual_seed(1)
    ref = reference.Autoencoder(3)
    assert [p.shape for p in mine.parameters()] == [p.shape for p in ref.parameters()]
    torch.testing.assert_close(mine(x), ref(x))
    torch.manual_seed(2)
    losses_mine = ns["train_autoencoder"](mine, x_train, 2, lr=1e-3, batch_size=16)
    torch.manual_seed(2)
    losses_ref = reference.train_autoencoder(ref, x_train, 2, lr=1e-3, batch_size=16)
    assert losses_mine == pytest.approx(losses_ref, rel=1e-4)


# --------------------------------------------------------------------------- stubs and cheats

class StubAutoencoder(nn.Module):
    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        raise NotImplementedError()


STUBS = {"reconstruction_loss": stub, "Autoencoder": StubAutoencoder,
         "train_autoencoder": stub, "pca_reconstruct": stub}


@pytest.mark.parametrize("test_id", list(POINTS))
def test_stub_fails_with_a_clear_message(lab, test_id):
    name = LAB.exercise_of(test_id)
    msg = lab.fails_with(test_id, "not implemented yet", **{name: STUBS[name]})
    assert "Traceback" not in msg


def test_always_equal_objects_fail(lab):
    lab.fails_with("test_reconstruction_loss", "expected a torch.Tensor",
                reconstruction_loss=lambda x_hat, x: AlwaysEqual())
    lab.fails_with("test_reconstruction_loss", "tensor subclass",
                reconstruction_loss=lambda x_hat, x: torch.zeros(()).as_subclass(EqualTensor))
    lab.fails_with("test_pca_reconstruct", "tensor subclass",
                pca_reconstruct=lambda a, b, k: torch.zeros_like(b).as_subclass(EqualTensor))
    lab.fails_with("test_pca_reconstruct", "expected a torch.Tensor",
                pca_reconstruct=lambda a, b, k: AlwaysEqual())
    lab.fails_with("test_train_autoencoder", "returned a AlwaysEqual",
                train_autoencoder=lambda *a, **k: AlwaysEqual())
    lab.fails_with("test_train_autoencoder", "returned a EqualTensor",
                train_autoencoder=lambda *a, **k: torch.zeros(3).as_subclass(EqualTensor))

    class Cheat(reference.Autoencoder):
        def encode(self, x):
            return AlwaysEqual()
    lab.fails_with("test_Autoencoder", "expected a torch.Tensor", Autoencoder=Cheat)


# --------------------------------------------------------------------------- exercise 1

def _per_image(x_hat, x):
    return ((x_hat - x) ** 2).flatten(1).sum(1)


LOSS_MISTAKES = [
    ("the mean over the pixels as well", lambda x_hat, x: F.mse_loss(x_hat, x)),
    ("the sum over the batch", lambda x_hat, x: ((x_hat - x) ** 2).sum()),
    ("absolute errors", lambda x_hat, x: (x_hat - x).abs().flatten(1).sum(1).mean()),
    ("the norm of each image's error", lambda x_hat, x: (x_hat - x).flatten(1).norm(dim=1).mean()),
    ("errors that are not squared", lambda x_hat, x: (x_hat - x).flatten(1).sum(1).mean()),
    ("the per-image losses", _per_image),
    ("the mean over the batch of each pixel", lambda x_hat, x: ((x_hat - x) ** 2).mean(0)),
    ("expected a torch.Tensor", lambda x_hat, x: _per_image(x_hat, x).mean().item()),
    ("carries no gradient", lambda x_hat, x: _per_image(x_hat, x).mean().detach()),
    ("expected dtype torch.float64",
     lambda x_hat, x: _per_image(x_hat.float(), x.float()).mean()),
]


@pytest.mark.parametrize("phrase, fn", LOSS_MISTAKES, ids=[m[0] for m in LOSS_MISTAKES])
def test_reconstruction_loss_mistakes_are_named(lab, phrase, fn):
    lab.fails_with("test_reconstruction_loss", phrase, reconstruction_loss=fn)


@pytest.mark.parametrize("fn", [
    lambda x_hat, x: F.mse_loss(x_hat, x, reduction="sum") / x.shape[0],
    lambda x_hat, x: torch.einsum("nchw,nchw->n", x_hat - x, x_hat - x).mean(),
    lambda x_hat, x: torch.stack([torch.sum((a - b) ** 2) for a, b in zip(x_hat, x)]).mean(),
], ids=["mse_sum_over_N", "einsum", "loop"])
def test_reconstruction_loss_alternatives_pass(lab, fn):
    lab.run("test_reconstruction_loss", reconstruction_loss=fn)


# --------------------------------------------------------------------------- exercise 2

class MLPAutoencoder(nn.Module):
    """A correct alternative: fully connected layers only."""

    def __init__(self, latent_dim):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(),
                                     nn.Linear(128, latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 784),
                                     nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        return self.decode(self.encode(x))


class PlainConvAutoencoder(nn.Module):
    """A correct alternative: convolutions without batch norm, no hidden linear layer."""

    def __init__(self, latent_dim):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                                     nn.ReLU(), nn.Flatten(), nn.Linear(16 * 7 * 7, latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, 16 * 7 * 7), nn.ReLU(),
                                     nn.Unflatten(1, (16, 7, 7)), nn.ConvTranspose2d(16, 8, 4, 2, 1),
                                     nn.ReLU(), nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Sigmoid())

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        return self.decode(self.encode(x))


def _ae_with(**changes):
    """The reference Autoencoder with one typical mistake switched on."""
    class Broken(reference.Autoencoder):
        def __init__(self, latent_dim):
            super().__init__(changes.get("fixed_latent", latent_dim))
            if changes.get("no_sigmoid"):
                self.decoder = self.decoder[:-1]

        def encode(self, x):
            if changes.get("feature_map"):
                return self.encoder[:4](x)
            if changes.get("no_grad"):
                with torch.no_grad():
                    return super().encode(x)
            return super().encode(x)

        def decode(self, z):
            out = super().decode(z)
            return out.flatten(1) if changes.get("flat") else out

        def forward(self, x):
            if changes.get("skip"):
                return 0.5 * self.decode(self.encode(x)) + 0.5 * x
            return super().forward(x)
    return Broken


AE_MISTAKES = [
    ("decoder output not in [0, 1]", dict(no_sigmoid=True)),
    ("latent size that does not follow latent_dim", dict(fixed_latent=2)),
    ("encode returning a 4-D map", dict(feature_map=True)),
    ("encode running under torch.no_grad()", dict(no_grad=True)),
    ("reshape the output to images", dict(flat=True)),
    ("forward must return decode(encode(x))", dict(skip=True)),
]


@pytest.mark.parametrize("phrase, flags", AE_MISTAKES, ids=[m[0] for m in AE_MISTAKES])
def test_autoencoder_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_Autoencoder", phrase, Autoencoder=_ae_with(**flags))


def test_autoencoder_other_failures(lab):
    class NotAModule:
        def __init__(self, latent_dim):
            pass
    lab.fails_with("test_Autoencoder", "not an nn.Module", Autoencoder=NotAModule)

    class NoParameters(nn.Module):
        def __init__(self, latent_dim):
            super().__init__()
    lab.fails_with("test_Autoencoder", "has no parameters", Autoencoder=NoParameters)

    class Huge(MLPAutoencoder):
        def __init__(self, latent_dim):
            super().__init__(latent_dim)
            self.extra = nn.Linear(3000, 3000)
    lab.fails_with("test_Autoencoder", "too many to train", Autoencoder=Huge)


@pytest.mark.parametrize("cls", [MLPAutoencoder, PlainConvAutoencoder], ids=["mlp", "plain_conv"])
def test_autoencoder_alternatives_pass(lab, cls):
    lab.run("test_Autoencoder", Autoencoder=cls)


# --------------------------------------------------------------------------- exercise 3

def _images(data):
    return data[0] if isinstance(data, (tuple, list)) else data


def _loop(loss="sum", step=True, optimizer="adam", per_step=False, ignore_lr=False,
          ignore_batch_size=False, no_train_mode=False, as_tensors=False, after_update=False,
          pairs=True):
    """A hand-written training loop with one typical mistake switched on."""
    def train_autoencoder(model, data, epochs, lr=1e-3, batch_size=128):
        x = _images(data) if pairs else data
        lr = 1e-3 if ignore_lr else lr
        batch_size = 128 if ignore_batch_size else batch_size
        opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(model.parameters(), lr=lr)
        if not no_train_mode:
            model.train()
        epoch_losses, step_losses = [], []
        for _ in range(epochs):
            order = torch.randperm(len(x))
            total = 0.0
            for i in range(0, len(x), batch_size):
                batch = x[order[i:i + batch_size]]
                if loss == "mean":
                    value = F.mse_loss(model(batch), batch)
                elif loss == "batch_sum":
                    value = ((model(batch) - batch) ** 2).sum()
                else:
                    value = ((model(batch) - batch) ** 2).flatten(1).sum(1).mean()
                opt.zero_grad()
                value.backward()
                if step:
                    opt.step()
                step_losses.append(value.item())
                total += value.item() * len(batch)
            if after_update:
                with torch.no_grad():
                    total = ((model(x) - x) ** 2).flatten(1).sum(1).mean().item() * len(x)
            epoch_losses.append(torch.tensor(total / len(x)) if as_tensors else total / len(x))
        return step_losses if per_step else epoch_losses
    return train_autoencoder


TRAIN_MISTAKES = [
    ("per-step (per-batch) losses instead of per-epoch", dict(per_step=True)),
    ("never updated", dict(step=False)),
    ("lr ignored", dict(ignore_lr=True)),
    ("averaged over the pixels too", dict(loss="mean")),
    ("summed over the batch", dict(loss="batch_sum")),
    ("plain SGD instead of Adam", dict(optimizer="sgd")),
    ("batch_size ignored", dict(ignore_batch_size=True)),
    ("not in train mode", dict(no_train_mode=True)),
    ("return Python floats", dict(as_tensors=True)),
    ("measured after its update", dict(after_update=True)),
    ("data is a tensor of images or a pair (images, labels)", dict(pairs=False)),
]


def test_hand_written_loop_without_mistakes_passes(lab):
    lab.run("test_train_autoencoder", train_autoencoder=_loop())


@pytest.mark.parametrize("phrase, flags", TRAIN_MISTAKES, ids=[m[0] for m in TRAIN_MISTAKES])
def test_train_autoencoder_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_train_autoencoder", phrase, train_autoencoder=_loop(**flags))


def test_train_autoencoder_with_fit_and_a_loss_per_pixel_is_named(lab):
    def per_pixel(model, data, epochs, lr=1e-3, batch_size=128):
        history = fit(model, _images(data), lambda m, x: F.mse_loss(m(x), x), epochs=epochs,
                      lr=lr, batch_size=batch_size, device=next(model.parameters()).device)
        return history.epoch_losses
    lab.fails_with("test_train_autoencoder", "averaged over the pixels too",
                train_autoencoder=per_pixel)

    def step_losses(model, data, epochs, lr=1e-3, batch_size=128):
        history = fit(model, _images(data), lambda m, x: ((m(x) - x) ** 2).flatten(1).sum(1).mean(),
                      epochs=epochs, lr=lr, batch_size=batch_size)
        return history.step_losses
    lab.fails_with("test_train_autoencoder", "per-step (per-batch) losses",
                train_autoencoder=step_losses)


# --------------------------------------------------------------------------- exercise 4

def _pca(center=True, add_mean=True, test_mean=False, test_components=False, smallest=False,
         flat=False, extra=0, in_place=False, checks=True, allow_k0=False, float64=False):
    """An SVD-based pca_reconstruct with one typical mistake switched on."""
    def pca_reconstruct(x_train, x_test, k):
        if checks:
            if not (x_train.is_floating_point() and x_test.is_floating_point()):
                raise ValueError("not floating point")
            if x_train.shape[1:] != x_test.shape[1:]:
                raise ValueError("different shapes")
            n, d = len(x_train), x_train[0].numel()
            if k > min(n, d) or (k < 1 and not allow_k0):
                raise ValueError("k out of range")
        X = x_train.reshape(len(x_train), -1)
        T = x_test.reshape(len(x_test), -1)
        if float64:
            X, T = X.double(), T.double()
        mean = X.mean(0) if center else torch.zeros_like(X[0])
        if in_place:
            X -= mean
            source = X
        else:
            source = (T - T.mean(0)) if test_components else (X - mean)
        vh = torch.linalg.svd(source, full_matrices=False)[2]
        v = vh[-k:].T if smallest else vh[:k + extra].T
        shift = T.mean(0) if test_mean else mean
        out = (T - shift) @ v @ v.T + (shift if add_mean else 0)
        return out if flat else out.reshape(x_test.shape)
    return pca_reconstruct


PCA_MISTAKES = [
    ("forgetting to centre", dict(center=False)),
    ("not adding the mean back", dict(add_mean=False)),
    ("the test set's mean", dict(test_mean=True)),
    ("components computed from x_test", dict(test_components=True)),
    ("the smallest principal components", dict(smallest=True)),
    ("a flattened result", dict(flat=True)),
    ("k + 1 components instead of k", dict(extra=1)),
    ("k - 1 components instead of k", dict(extra=-1)),
    ("centring in place", dict(in_place=True)),
    ("expected dtype torch.float32", dict(float64=True)),
]


def test_pca_helper_without_mistakes_passes(lab):
    lab.run("test_pca_reconstruct", pca_reconstruct=_pca())
    lab.run("test_pca_reconstruct_errors", pca_reconstruct=_pca())


@pytest.mark.parametrize("phrase, flags", PCA_MISTAKES, ids=[m[0] for m in PCA_MISTAKES])
def test_pca_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_pca_reconstruct", phrase, pca_reconstruct=_pca(**flags))


def test_pca_error_cell(lab):
    lab.fails_with("test_pca_reconstruct_errors", "expected ValueError",
                pca_reconstruct=_pca(checks=False))
    lab.fails_with("test_pca_reconstruct_errors", "k must be at least 1",
                pca_reconstruct=_pca(allow_k0=True))

    def type_error_for_integers(x_train, x_test, k):
        if not x_train.is_floating_point():
            raise TypeError("integers")
        return _pca()(x_train, x_test, k)
    lab.fails_with("test_pca_reconstruct_errors", "expected ValueError, got TypeError",
                pca_reconstruct=type_error_for_integers)


def _pca_eigh(x_train, x_test, k):
    """Alternative: eigenvectors of the covariance matrix."""
    if not (x_train.is_floating_point() and x_test.is_floating_point()):
        raise ValueError("not floating point")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError("different shapes")
    X = x_train.reshape(len(x_train), -1)
    if not 1 <= k <= min(X.shape):
        raise ValueError("k out of range")
    mean = X.mean(0)
    cov = (X - mean).T.double() @ (X - mean).double()
    v = torch.linalg.eigh(cov)[1][:, -k:].to(X.dtype)
    out = mean + (x_test.reshape(len(x_test), -1) - mean) @ v @ v.T
    return out.reshape(x_test.shape)


def _pca_lowrank(x_train, x_test, k):
    """Alternative: torch.pca_lowrank with every component and a few power iterations."""
    if not (x_train.is_floating_point() and x_test.is_floating_point()):
        raise ValueError("not floating point")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError("different shapes")
    X = x_train.reshape(len(x_train), -1)
    if not 1 <= k <= min(X.shape):
        raise ValueError("k out of range")
    torch.manual_seed(0)
    _, _, v = torch.pca_lowrank(X, q=min(X.shape), center=True, niter=6)
    v = v[:, :k]
    mean = X.mean(0)
    return (mean + (x_test.reshape(len(x_test), -1) - mean) @ v @ v.T).reshape(x_test.shape)


def _pca_sklearn(x_train, x_test, k):
    """Alternative: scikit-learn's PCA, back to torch with the input's dtype and device."""
    from sklearn.decomposition import PCA
    if not (x_train.is_floating_point() and x_test.is_floating_point()):
        raise ValueError("not floating point")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError("different shapes")
    X = x_train.reshape(len(x_train), -1).detach().cpu().double().numpy()
    if not 1 <= k <= min(X.shape):
        raise ValueError("k out of range")
    pca = PCA(n_components=k, svd_solver="full").fit(X)
    T = x_test.reshape(len(x_test), -1).detach().cpu().double().numpy()
    out = torch.from_numpy(np.ascontiguousarray(pca.inverse_transform(pca.transform(T))))
    return out.reshape(x_test.shape).to(x_test.dtype).to(x_test.device)


@pytest.mark.parametrize("fn", [_pca_eigh, _pca_lowrank, _pca_sklearn],
                         ids=["eigh", "pca_lowrank", "sklearn"])
def test_pca_alternatives_pass(lab, fn):
    lab.run("test_pca_reconstruct", pca_reconstruct=fn)
    lab.run("test_pca_reconstruct_errors", pca_reconstruct=fn)
