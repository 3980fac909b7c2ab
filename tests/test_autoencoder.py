"""The lab 02 reference (genlab.autoencoder) against independent oracles.

- reconstruction_loss against F.mse_loss(reduction="sum") / N and its analytic gradient;
- pca_reconstruct against scikit-learn's PCA, NumPy's SVD and the covariance eigenvectors;
- Autoencoder shapes, output range and errors; train_autoencoder really trains;
- a quality check with a budget that fast mode can afford.
"""
import math
from copy import deepcopy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab import autoencoder as ae
from genlab.data import load_mnist
from genlab.testing import devices


@pytest.fixture(autouse=True)
def _no_progress_bars(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")  # fit() then shows no progress bar


def _images(n, seed=0, dtype=torch.float32):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _low_rank(n, d=50, rank=5, seed=0):
    """Samples near a rank-`rank` affine subspace, with distinct variances (a clear PCA)."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, rank, generator=g, dtype=torch.float64))[0]
    codes = torch.randn(n, rank, generator=g, dtype=torch.float64) * torch.linspace(4, 1, rank,
                                                                                   dtype=torch.float64)
    return torch.rand(d, generator=g, dtype=torch.float64) + codes @ basis.T \
        + 0.05 * torch.randn(n, d, generator=g, dtype=torch.float64)


# --------------------------------------------------------------------------- reconstruction_loss

@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (3, 3, 4, 6), (1, 1, 2, 2), (4, 10)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reconstruction_loss_matches_mse_sum_over_batch_size(shape, dtype):
    g = torch.Generator().manual_seed(1)
    x_hat, x = torch.rand(*shape, generator=g, dtype=dtype), torch.rand(*shape, generator=g, dtype=dtype)
    loss = ae.reconstruction_loss(x_hat, x)
    assert loss.shape == () and loss.dtype == dtype
    torch.testing.assert_close(loss, F.mse_loss(x_hat, x, reduction="sum") / shape[0])
    # ... which is 784 times F.mse_loss's default for MNIST images
    if shape[1:] == (1, 28, 28):
        torch.testing.assert_close(loss / 784, F.mse_loss(x_hat, x))


def test_reconstruction_loss_hand_example_and_gradient():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [-3.0, 0.0]]]], requires_grad=True)
    loss = ae.reconstruction_loss(x_hat, x)
    assert loss.item() == pytest.approx(6.5)
    loss.backward()
    torch.testing.assert_close(x_hat.grad, 2 * (x_hat.detach() - x) / 2)


def test_reconstruction_loss_errors():
    x = _images(3)
    with pytest.raises(ValueError, match="same shape"):
        ae.reconstruction_loss(x[:2], x)
    with pytest.raises(ValueError, match="same shape"):
        ae.reconstruction_loss(x[0], x)            # broadcasting would hide this
    with pytest.raises(TypeError, match="floating-point"):
        ae.reconstruction_loss((x * 255).to(torch.uint8), x)
    with pytest.raises(TypeError, match="torch.Tensor"):
        ae.reconstruction_loss(x.numpy(), x)
    with pytest.raises(ValueError, match="batch"):
        ae.reconstruction_loss(torch.rand(5), torch.rand(5))


# --------------------------------------------------------------------------- Autoencoder

@pytest.mark.parametrize("latent_dim", [1, 2, 5, 20])
def test_autoencoder_shapes_and_range(latent_dim):
    torch.manual_seed(0)
    model = ae.Autoencoder(latent_dim).eval()
    x = _images(4)
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (4, latent_dim) and z.dtype == torch.float32
        out = model.decode(z)
        assert out.shape == (4, 1, 28, 28)
        torch.testing.assert_close(model(x), out)
        far = model.decode(100 * torch.randn(64, latent_dim))  # any code gives a valid image
        assert far.min() >= 0 and far.max() <= 1
    assert model.latent_dim == latent_dim


def test_autoencoder_is_small_enough_for_a_cpu():
    n = sum(p.numel() for p in ae.Autoencoder(2).parameters())
    assert 100_000 < n < 2_000_000


def test_autoencoder_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = ae.Autoencoder(3)
    x = _images(8)
    ae.reconstruction_loss(model(x), x).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_autoencoder_errors():
    for bad in (0, -2):
        with pytest.raises(ValueError, match="latent_dim"):
            ae.Autoencoder(bad)
    for bad in (2.0, True, "2"):
        with pytest.raises(TypeError, match="latent_dim"):
            ae.Autoencoder(bad)
    model = ae.Autoencoder(3)
    with pytest.raises(ValueError, match=r"unsqueeze\(1\)"):
        model.encode(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        model.encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(TypeError, match="floating-point"):
        model.encode(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        model.decode(torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        model.decode(torch.rand(3))
    with pytest.raises(TypeError, match="floating-point"):
        model.decode(torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.parametrize("device", devices(), ids=str)
def test_autoencoder_on_each_device(device):
    model = ae.Autoencoder(2).to(device)
    x = _images(3).to(device)
    assert model.encode(x).device.type == device.type
    assert ae.encode_all(model, _images(5)).device.type == "cpu"     # x's device
    assert ae.reconstruct_all(model, x).device.type == device.type


# --------------------------------------------------------------------------- train_autoencoder

def test_train_autoencoder_lowers_the_loss_and_returns_floats():
    torch.manual_seed(0)
    model = ae.Autoencoder(4, channels=4, hidden=32)      # a small one, to keep this quick
    x = load_mnist("train", limit=256, quiet=True)[0]
    with torch.no_grad():
        before = ae.reconstruction_loss(model(x), x).item()
    losses = ae.train_autoencoder(model, x, 5, lr=3e-3, batch_size=64, seed=0)
    assert isinstance(losses, list) and len(losses) == 5
    assert all(isinstance(v, float) for v in losses)
    assert losses[-1] < 0.8 * losses[0] and losses[-1] < before
    with torch.no_grad():
        after = ae.reconstruction_loss(model(x), x).item()
    assert after < 0.8 * before
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_train_autoencoder_matches_adam_by_hand():
    """One batch per epoch: deterministic, so compare with an explicit Adam loop."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 3), nn.Linear(3, 784), nn.Sigmoid(),
                          nn.Unflatten(1, (1, 28, 28)))
    copy = deepcopy(model)
    x = _images(32)
    opt = torch.optim.Adam(copy.parameters(), lr=0.01)
    expected = []
    for _ in range(3):
        opt.zero_grad()
        loss = F.mse_loss(copy(x), x, reduction="sum") / len(x)
        loss.backward()
        opt.step()
        expected.append(loss.item())
    labels = torch.zeros(32, dtype=torch.long)
    losses = ae.train_autoencoder(model, (x, labels), 3, lr=0.01, batch_size=32)
    assert losses == pytest.approx(expected, rel=1e-4)
    for p, q in zip(model.parameters(), copy.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


def test_train_autoencoder_is_reproducible_with_a_seed():
    x = _images(64)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(ae.train_autoencoder(ae.Autoencoder(2, channels=4, hidden=16), x, 2,
                                         batch_size=16, seed=3))
    assert runs[0] == runs[1]


def test_train_autoencoder_errors():
    model = ae.Autoencoder(2)
    with pytest.raises(ValueError, match="epochs"):
        ae.train_autoencoder(model, _images(8), 0)
    with pytest.raises(TypeError, match="epochs"):
        ae.train_autoencoder(model, _images(8), 1.5)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        ae.train_autoencoder(model, torch.rand(8, 784), 1)
    with pytest.raises(ValueError, match="empty"):
        ae.train_autoencoder(model, (), 1)
    with pytest.raises(TypeError, match="nn.Module"):
        ae.train_autoencoder(lambda x: x, _images(8), 1)


# --------------------------------------------------------------------------- pca_reconstruct

@pytest.mark.parametrize("k", [1, 3, 5, 12])
def test_pca_reconstruct_matches_sklearn(k):
    from sklearn.decomposition import PCA
    x_train, x_test = _low_rank(200, seed=0), _low_rank(30, seed=1)
    pca = PCA(n_components=k, svd_solver="full").fit(x_train.numpy())
    expected = torch.from_numpy(pca.inverse_transform(pca.transform(x_test.numpy())))
    torch.testing.assert_close(ae.pca_reconstruct(x_train, x_test, k), expected)


@pytest.mark.parametrize("k", [1, 4, 9])
def test_pca_reconstruct_matches_numpy_svd_and_covariance_eigenvectors(k):
    x_train = _low_rank(40, d=36, seed=2).float().reshape(40, 1, 6, 6)
    x_test = _low_rank(7, d=36, seed=3).float().reshape(7, 1, 6, 6)
    X, T = x_train.reshape(40, -1).double().numpy(), x_test.reshape(7, -1).double().numpy()
    mean = X.mean(axis=0)
    vt = np.linalg.svd(X - mean, full_matrices=False)[2]
    by_svd = mean + (T - mean) @ vt[:k].T @ vt[:k]
    vecs = np.linalg.eigh((X - mean).T @ (X - mean))[1][:, ::-1][:, :k]
    by_eigh = mean + (T - mean) @ vecs @ vecs.T
    np.testing.assert_allclose(by_svd, by_eigh, atol=1e-8)
    out = ae.pca_reconstruct(x_train, x_test, k)
    assert out.shape == x_test.shape and out.dtype == torch.float32
    np.testing.assert_allclose(out.reshape(7, -1).double().numpy(), by_svd, atol=2e-5)


def test_pca_reconstruct_properties():
    x_train, x_test = _images(60, seed=4), _images(5, seed=5)
    before = x_train.clone(), x_test.clone()
    out = ae.pca_reconstruct(x_train, x_test, 10)
    assert torch.equal(x_train, before[0]) and torch.equal(x_test, before[1])  # inputs untouched
    # Projecting twice changes nothing; more components never increase the error.
    again = ae.pca_reconstruct(x_train, out, 10)
    torch.testing.assert_close(again, out, atol=1e-4, rtol=1e-4)
    errors = [ae.per_pixel_mse(ae.pca_reconstruct(x_train, x_test, k), x_test) for k in (1, 5, 20, 60)]
    assert errors == sorted(errors, reverse=True)
    # All components of more samples than features: exact.
    small_train, small_test = _low_rank(30, d=9, seed=6), _low_rank(4, d=9, seed=7)
    torch.testing.assert_close(ae.pca_reconstruct(small_train, small_test, 9), small_test)
    # float64 in, float64 out.
    assert ae.pca_reconstruct(small_train, small_test, 2).dtype == torch.float64


def test_pca_reconstruct_errors():
    x_train, x_test = _images(20), _images(5)
    for k in (0, -1, 785):
        with pytest.raises(ValueError, match="k must be between 1 and"):
            ae.pca_reconstruct(x_train, x_test, k)
    with pytest.raises(ValueError, match="min"):
        ae.pca_reconstruct(x_train[:6], x_test, 7)
    with pytest.raises(TypeError, match="k must be an int"):
        ae.pca_reconstruct(x_train, x_test, 2.0)
    with pytest.raises(ValueError, match="same shape"):
        ae.pca_reconstruct(x_train, x_test.reshape(5, 784), 2)
    with pytest.raises(ValueError, match="floating-point"):
        ae.pca_reconstruct((x_train * 255).to(torch.uint8), x_test, 2)
    with pytest.raises(ValueError, match="floating-point"):
        ae.pca_reconstruct(x_train, x_test.long(), 2)
    with pytest.raises(ValueError, match="batch"):
        ae.pca_reconstruct(torch.rand(5), torch.rand(5), 1)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="same device"):
            ae.pca_reconstruct(x_train.cuda(), x_test, 2)


@pytest.mark.parametrize("device", devices(), ids=str)
def test_pca_reconstruct_on_each_device(device):
    x_train, x_test = _images(30).to(device), _images(4).to(device)
    out = ae.pca_reconstruct(x_train, x_test, 3)
    assert out.device.type == device.type
    torch.testing.assert_close(out.cpu(), ae.pca_reconstruct(x_train.cpu(), x_test.cpu(), 3),
                               atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- helpers

def test_per_pixel_mse_is_the_loss_over_784():
    x_hat, x = _images(6, seed=1), _images(6, seed=2)
    assert ae.per_pixel_mse(x_hat, x) == pytest.approx(ae.reconstruction_loss(x_hat, x).item() / 784)
    with pytest.raises(ValueError, match="same shape"):
        ae.per_pixel_mse(x_hat[:2], x)


def test_encode_all_and_reconstruct_all_batch_correctly():
    torch.manual_seed(0)
    model = ae.Autoencoder(3).train()
    x = _images(25)
    with torch.no_grad():
        model.eval()
        z, out = model.encode(x), model(x)
        model.train()
    torch.testing.assert_close(ae.encode_all(model, x, batch_size=7), z)
    torch.testing.assert_close(ae.reconstruct_all(model, x, batch_size=4), out)
    assert model.training  # the mode is restored


def test_decode_box_order():
    class Corner(nn.Module):
        """Draws the code itself: pixel (0, 0) = z_1, pixel (0, 1) = z_2."""
        latent_dim = 2
        dummy = nn.Parameter(torch.zeros(1))

        def decode(self, z):
            out = torch.zeros(len(z), 1, 28, 28)
            out[:, 0, 0, :2] = z
            return out

    images = ae.decode_box(Corner(), (-1, 0), (1, 4), n=3)
    assert images.shape == (9, 1, 28, 28)
    assert images[0, 0, 0, :2].tolist() == [-1, 4]      # top left: smallest z_1, largest z_2
    assert images[2, 0, 0, :2].tolist() == [1, 4]       # top right
    assert images[8, 0, 0, :2].tolist() == [1, 0]       # bottom right
    with pytest.raises(ValueError, match="2-D latent"):
        ae.decode_box(ae.Autoencoder(3), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="hi must exceed lo"):
        ae.decode_box(Corner(), (0, 0), (0, 1))


def test_latent_size_sweep_small_run():
    x = load_mnist("train", limit=128, quiet=True)[0]
    calls = []

    def my_train(model, data, epochs, lr, batch_size):
        calls.append((model.latent_dim, epochs, lr, batch_size))
        return [1.0] * epochs

    result = ae.latent_size_sweep(x[:100], x[100:], (2, 3), epochs=1, train=my_train, device="cpu")
    assert calls == [(2, 1, 1e-3, 128), (3, 1, 1e-3, 128)]
    assert set(result.ae_mse) == set(result.pca_mse) == {2, 3}
    assert result.pca_mse[3] <= result.pca_mse[2]
    table = result.table()
    assert "latent size" in table and len(table.splitlines()) == 4
    trained = ae.latent_size_sweep(x[:100], x[100:], (2,), epochs=1, device="cpu")
    assert len(trained.train_losses[2]) == 1 and math.isfinite(trained.ae_mse[2])


# --------------------------------------------------------------------------- quality

def test_quality_with_a_fast_budget():
    """A loose bound that a few seconds of training meets (2 epochs on 2,000 images): the 20-D
    autoencoder beats the mean image and PCA with 2 components by a clear margin. (The lab's
    default budget does far better; the notebook prints its figures.)"""
    x_train = load_mnist("train", limit=2000, quiet=True)[0]
    x_test = load_mnist("test", limit=500, quiet=True)[0]
    torch.manual_seed(0)
    model = ae.Autoencoder(20)
    losses = ae.train_autoencoder(model, x_train, 2, lr=3e-3, batch_size=64, seed=0)
    assert losses[1] < losses[0]
    mse = ae.per_pixel_mse(ae.reconstruct_all(model, x_test), x_test)
    mean_image = ae.per_pixel_mse(x_train.mean(0, keepdim=True).expand_as(x_test), x_test)
    pca2 = ae.per_pixel_mse(ae.pca_reconstruct(x_train, x_test, 2), x_test)
    assert pca2 < mean_image
    assert mse < 0.7 * pca2, (mse, pca2, mean_image)   # measured: 0.027 vs 0.057
