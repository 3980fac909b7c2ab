"""genlab.disentangle against independent oracles.

Losses and KLs: torch.distributions. Active units: NumPy's variance. Traversals: a hand-made
decode of the posterior mean. MIG: disentanglement_lib's recipe written out with NumPy and
scikit-learn (np.histogram + np.digitize, sklearn's mutual_info_score), and its behaviour on
synthetic codes (perfect, independent, rotated, permuted, rescaled). BetaVAE score: an encoder
that reads positions off the images against one that ignores them. Training lowers the loss.
"""
import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import mutual_info_score
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence

from genlab import disentangle as dis
from genlab import dsprites as ds
from genlab.testing import devices
from genlab.training import fit


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- loss and KL

@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_beta_vae_loss_against_torch_distributions(beta):
    g = _gen(1)
    x = (torch.rand(6, 1, 8, 8, generator=g) > 0.5).double()
    logits = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64) * 3
    mu = torch.randn(6, 4, generator=g, dtype=torch.float64)
    logvar = torch.randn(6, 4, generator=g, dtype=torch.float64)
    loss, recon, kl = dis.beta_vae_loss(logits, x, mu, logvar, beta)
    nll = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1).mean()
    q = Normal(mu, (0.5 * logvar).exp())
    kl_ref = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(1).mean()
    torch.testing.assert_close(recon, nll)
    torch.testing.assert_close(kl, kl_ref)
    torch.testing.assert_close(loss, nll + beta * kl_ref)
    with pytest.raises(ValueError):
        dis.beta_vae_loss(logits[:, :, :4], x, mu, logvar, beta)


def test_kl_per_dimension_against_torch_distributions():
    g = _gen(2)
    mu = torch.randn(50, 7, generator=g, dtype=torch.float64) * 2
    logvar = torch.randn(50, 7, generator=g, dtype=torch.float64)
    per_dim = dis.kl_per_dimension(mu, logvar)
    q = Normal(mu, (0.5 * logvar).exp())
    ref = kl_divergence(q, Normal(0.0, 1.0)).mean(0)
    assert per_dim.shape == (7,)
    torch.testing.assert_close(per_dim, ref)
    _, _, kl = dis.beta_vae_loss(torch.zeros(50, 1, 2, 2, dtype=torch.float64),
                                 torch.zeros(50, 1, 2, 2, dtype=torch.float64), mu, logvar, 1.0)
    torch.testing.assert_close(per_dim.sum(), kl)
    assert (dis.kl_per_dimension(torch.zeros(3, 4), torch.zeros(3, 4)) == 0).all()


def test_active_units_against_numpy():
    g = _gen(3)
    scales = torch.tensor([0.0, 0.05, 0.09, 0.11, 0.5, 2.0])
    mu = torch.randn(4000, 6, generator=g) * scales
    expected = int((np.var(mu.numpy(), axis=0, ddof=1) > 0.01).sum())
    assert dis.active_units(mu) == expected == 3
    assert dis.active_units(mu, threshold=0.3) == 1
    assert isinstance(dis.active_units(mu), int)
    with pytest.raises(ValueError):
        dis.active_units(mu[0])


# --------------------------------------------------------------------------- traversal

def test_latent_traversal_decodes_the_mean_with_one_dimension_replaced():
    torch.manual_seed(0)
    model = dis.MLPBetaVAE(latent_dim=5, image_size=64, hidden=16).train()
    x = ds.render(torch.tensor([12345]))[0]
    values = [-2.0, 0.0, 1.5]
    out = dis.latent_traversal(model, x, 3, values)
    assert out.shape == (3, 1, 64, 64) and model.training
    with torch.no_grad():
        model.eval()
        mu, _ = model.encode(x[None])
        rows = []
        for v in values:
            z = mu.clone()
            z[0, 3] = v
            rows.append(torch.sigmoid(model.decode(z)))
    torch.testing.assert_close(out, torch.cat(rows))
    torch.testing.assert_close(dis.latent_traversal(model, x[None], 3, torch.tensor(values)), out)
    with pytest.raises(ValueError):
        dis.latent_traversal(model, x.repeat(2, 1, 1, 1), 0, values)


@pytest.mark.parametrize("device", devices(), ids=lambda d: d.type)
def test_latent_traversal_on_every_device(device):
    model = dis.MLPBetaVAE(latent_dim=3, image_size=64, hidden=16).to(device)
    out = dis.latent_traversal(model, ds.render([7]).to(device), 0, [0.0, 1.0])
    assert out.device.type == device.type and out.shape == (2, 1, 64, 64)


# --------------------------------------------------------------------------- MIG

def _np_histogram_discretize(codes, n_bins):
    """disentanglement_lib.evaluation.metrics.utils._histogram_discretize (codes as (N, D))."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        out[:, j] = np.digitize(codes[:, j], np.histogram(codes[:, j], n_bins)[1][:-1])
    return out


def _np_mig(codes, factors, n_bins=20):
    """disentanglement_lib's _compute_mig, with its (dim, N) arrays transposed to (N, dim)."""
    binned = _np_histogram_discretize(codes, n_bins)
    m = np.array([[mutual_info_score(factors[:, k], binned[:, j]) for k in range(factors.shape[1])]
                  for j in range(codes.shape[1])])
    h = np.array([mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / h)), m, h


def _dsprites_factors(n, seed=0):
    return ds.sample_classes(n, generator=_gen(seed))


def _mixed_codes(factors, seed=0, noise=0.3):
    """Codes that carry the factors in a partly entangled way, plus noise."""
    g = _gen(seed)
    f = factors.double()
    f = (f - f.mean(0)) / f.std(0)
    mix = torch.eye(f.shape[1], dtype=torch.float64) + 0.4 * torch.randn(f.shape[1], 7, generator=g,
                                                                          dtype=torch.float64)[:, :f.shape[1]]
    codes = torch.cat([f @ mix, torch.randn(len(f), 3, generator=g, dtype=torch.float64)], 1)
    return codes + noise * torch.randn(codes.shape, generator=g, dtype=torch.float64)


def test_discretize_matches_numpy_histogram_and_digitize():
    g = _gen(4)
    codes = torch.cat([torch.randn(3000, 4, generator=g, dtype=torch.float64),
                       torch.full((3000, 1), 2.5, dtype=torch.float64),              # constant
                       torch.randint(0, 7, (3000, 1), generator=g).double()], 1)     # few values
    for n_bins in (20, 7, 1):
        ours = dis.discretize(codes, n_bins)
        ref = _np_histogram_discretize(codes.numpy(), n_bins) - 1         # numpy counts from 1
        np.testing.assert_array_equal(ours.numpy(), ref)
        assert ours.min() >= 0 and ours.max() <= n_bins - 1


def _codes_on_bin_edges(dtype, n_bins):
    """Columns of one float dtype built to sit exactly on (or one ulp beside) the bin edges that
    np.histogram computes for them, where rounding decides the bin."""
    lo, hi = dtype(-0.7), dtype(1.9)
    edges = np.linspace(lo, hi, n_bins + 1, dtype=dtype)      # np.histogram's edges for [lo, hi]
    on_edges = np.concatenate([edges, np.nextafter(edges, dtype(np.inf)),
                               np.nextafter(edges, dtype(-np.inf))])
    rng = np.random.default_rng(n_bins)
    return [
        np.clip(on_edges, lo, hi).astype(dtype),
        dtype(0.1) * np.arange(101, dtype=dtype),                  # 0.1 k, rounded in dtype
        np.arange(101, dtype=dtype) / dtype(10),                   # k / 10
        np.linspace(-1.3, 2.7, 1001).astype(dtype),
        np.linspace(0.0, 1.0, 4 * n_bins + 1).astype(dtype),      # every quarter bin
        dtype(2.5) * np.arange(-8, 9, dtype=dtype) / dtype(3),
        (rng.normal(size=500) * 3 + 0.7).astype(dtype),            # posterior means, say
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("n_bins", [3, 7, 10, 20, 30, 50])
def test_discretize_is_disentanglement_libs_on_codes_that_sit_on_bin_edges(dtype, n_bins):
    """NumPy computes the edges of float32 codes in float32 (and compares in float32), so a
    float32 code on an edge can land in another bin than float64 edges would put it in."""
    for j, column in enumerate(_codes_on_bin_edges(dtype, n_bins)):
        codes = column.reshape(-1, 1)
        assert codes.dtype == dtype
        ref = _np_histogram_discretize(codes, n_bins) - 1
        ours = dis.discretize(torch.from_numpy(codes), n_bins)
        np.testing.assert_array_equal(ours.numpy(), ref, err_msg=f"column {j}, {n_bins} bins")
    # all columns at once (they have different lengths: pad each with its own first value)
    columns = _codes_on_bin_edges(dtype, n_bins)
    n = max(len(c) for c in columns)
    codes = np.stack([np.concatenate([c, np.full(n - len(c), c[0], dtype)]) for c in columns], 1)
    np.testing.assert_array_equal(dis.discretize(torch.from_numpy(codes), n_bins).numpy(),
                                  _np_histogram_discretize(codes, n_bins) - 1)


def test_discretize_where_numpy_refuses_a_float32_range_uses_float64_edges():
    """A float32 column whose range is a few ulps wide has float32 edges that do not increase
    (np.histogram raises "Too many bins"); discretize bins it with float64 edges instead."""
    narrow = (np.float32(0.3) + np.arange(12) % 5 * np.spacing(np.float32(0.3))).astype(np.float32)
    constant = np.full(12, 1e8, np.float32)     # 1e8 +- 0.5 rounds back to 1e8 in float32
    codes = np.stack([narrow, constant], 1)
    with pytest.raises(ValueError, match="Too many bins"):
        _np_histogram_discretize(codes, 20)
    np.testing.assert_array_equal(dis.discretize(torch.from_numpy(codes), 20).numpy(),
                                  _np_histogram_discretize(codes.astype(np.float64), 20) - 1)


def test_nan_or_inf_codes_raise_a_clear_error():
    factors = _dsprites_factors(100)
    codes = torch.randn(100, 4, generator=_gen(7))
    message = r"NaN or inf values \(2 of them, in column\(s\) \[1\]\); a latent code must be finite"
    for bad in (math.nan, math.inf, -math.inf):
        broken = codes.clone()
        broken[3, 1] = bad
        broken[50, 1] = bad
        for call in (lambda: dis.mutual_information_gap(broken, factors),
                     lambda: dis.mig_per_factor(broken, factors),
                     lambda: dis.discretize(broken)):
            with pytest.raises(ValueError, match=message):
                call()
        with pytest.raises(ValueError, match="not finite"):     # disentanglement_lib fails too
            _np_histogram_discretize(broken.numpy(), 20)


def test_mutual_info_and_entropy_against_sklearn_and_scipy():
    factors = _dsprites_factors(5000)
    codes = _mixed_codes(factors)
    m = dis.mutual_info_matrix(codes, factors)
    binned = _np_histogram_discretize(codes.numpy(), 20)
    for j in range(codes.shape[1]):
        for k in range(factors.shape[1]):
            assert m[j, k].item() == pytest.approx(
                mutual_info_score(factors[:, k].numpy(), binned[:, j]), abs=1e-10)
    h = dis.factor_entropy(factors)
    for k in range(factors.shape[1]):
        counts = np.bincount(factors[:, k].numpy())
        assert h[k].item() == pytest.approx(scipy_entropy(counts), abs=1e-10)


@pytest.mark.parametrize("n_bins", [20, 10])
def test_mig_matches_disentanglement_lib(n_bins):
    factors = _dsprites_factors(4000, seed=1)
    codes = _mixed_codes(factors, seed=1)
    ref, _, _ = _np_mig(codes.numpy(), factors.numpy(), n_bins)
    got = dis.mutual_information_gap(codes, factors, n_bins)
    assert isinstance(got, float)
    assert got == pytest.approx(ref, abs=1e-10)
    torch.testing.assert_close(dis.mig_per_factor(codes, factors, n_bins).mean().item(), got)


def test_mig_is_near_one_for_codes_that_copy_one_factor_each():
    factors = _dsprites_factors(10_000, seed=2)
    codes = factors.double()
    extra = torch.randn(10_000, 3, generator=_gen(2), dtype=torch.float64)   # unused dimensions
    perfect = dis.mutual_information_gap(torch.cat([codes, extra], 1), factors)
    assert perfect > 0.85                  # 40 orientations in 20 bins lose a little
    # with as many bins as values every factor is copied exactly: MIG is 1 up to sampling bias
    assert dis.mutual_information_gap(codes, factors, n_bins=40) > 0.97
    small = factors[:, :2]                 # shape (3 values) and scale (6 values) fit in 20 bins
    assert dis.mutual_information_gap(small.double(), small) == pytest.approx(1.0, abs=3e-3)


def test_mig_is_near_zero_for_codes_independent_of_the_factors():
    factors = _dsprites_factors(10_000, seed=3)
    noise = torch.randn(10_000, 10, generator=_gen(3))
    assert dis.mutual_information_gap(noise, factors) < 0.02


def test_mig_drops_when_perfect_codes_are_rotated():
    factors = _dsprites_factors(10_000, seed=4)
    codes = factors.double()
    codes = (codes - codes.mean(0)) / codes.std(0)
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    rotation = torch.eye(5, dtype=torch.float64)
    rotation[3:, 3:] = torch.tensor([[c, -s], [s, c]])    # mix posX and posY
    rotation[1:3, 1:3] = torch.tensor([[c, -s], [s, c]])  # mix scale and orientation
    before = dis.mig_per_factor(codes, factors)
    after = dis.mig_per_factor(codes @ rotation, factors)
    assert dis.mutual_information_gap(codes @ rotation, factors) < before.mean() - 0.3
    assert after[0] == pytest.approx(before[0].item(), abs=0.01)    # shape was left alone
    assert (after[1:] < 0.3).all()


def test_mig_is_invariant_to_permuting_and_rescaling_the_codes():
    factors = _dsprites_factors(6000, seed=5)
    codes = _mixed_codes(factors, seed=5)
    base = dis.mutual_information_gap(codes, factors)
    perm = torch.randperm(codes.shape[1], generator=_gen(5))
    assert dis.mutual_information_gap(codes[:, perm], factors) == pytest.approx(base, abs=1e-12)
    scale = torch.tensor([3.0, 0.01, 250.0, 1.0, 7.0, 0.5, 2.0, 1e3], dtype=torch.float64)
    shifted = codes * scale - 17.0
    assert dis.mutual_information_gap(shifted, factors) == pytest.approx(base, abs=1e-6)
    assert dis.mutual_information_gap(-codes, factors) == pytest.approx(base, abs=1e-3)
    # relabelling a factor's classes changes nothing either
    relabelled = factors.clone()
    relabelled[:, 2] = 100 - 3 * relabelled[:, 2]
    assert dis.mutual_information_gap(codes, relabelled) == pytest.approx(base, abs=1e-12)


def test_mig_refuses_bad_input():
    factors = _dsprites_factors(100)
    codes = torch.randn(100, 4)
    with pytest.raises(ValueError):
        dis.mutual_information_gap(codes[:50], factors)
    with pytest.raises(TypeError):
        dis.mutual_information_gap(codes, factors.float())
    with pytest.raises(ValueError):
        dis.mutual_information_gap(codes[:, :1], factors)
    constant = factors.clone()
    constant[:, 1] = 2
    with pytest.raises(ValueError, match="single value"):
        dis.mutual_information_gap(codes, constant)


@pytest.mark.parametrize("device", devices(), ids=lambda d: d.type)
def test_mig_on_every_device(device):
    factors = _dsprites_factors(2000, seed=6)
    codes = _mixed_codes(factors, seed=6)
    got = dis.mutual_information_gap(codes.to(device), factors.to(device))
    assert got == pytest.approx(dis.mutual_information_gap(codes, factors), abs=1e-9)


# --------------------------------------------------------------------------- model-level metrics

class PositionEncoder(nn.Module):
    """Reads the sprite's centroid (x, y) and its area off the image: codes that capture posX and
    posY perfectly and scale partly, plus two noise dimensions."""

    def __init__(self, noise_only=False):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.noise_only = noise_only
        self.g = _gen(9)

    def encode(self, x):
        x = x[:, 0].double()
        coords = torch.arange(64, dtype=torch.float64, device=x.device)
        mass = x.sum((1, 2))
        codes = torch.stack([(x.sum(1) @ coords) / mass, (x.sum(2) @ coords) / mass, mass.sqrt()], 1)
        noise = torch.randn(len(x), 2, generator=self.g, dtype=torch.float64).to(x.device)
        if self.noise_only:
            codes = torch.randn(len(x), 3, generator=self.g, dtype=torch.float64).to(x.device)
        codes = torch.cat([codes, noise], 1).float()
        return codes, torch.zeros_like(codes)


def test_mig_of_model_on_an_encoder_that_reads_positions():
    result = dis.mig_of_model(PositionEncoder(), n_points=3000, generator=_gen(0))
    per_factor = result["per_factor"]
    assert per_factor[3] > 0.6 and per_factor[4] > 0.6      # posX, posY
    assert per_factor[2] < 0.1                              # orientation is not in the codes
    assert result["mi"].shape == (5, 5) and result["codes"].shape == (3000, 5)
    ref, _, _ = _np_mig(result["codes"].double().numpy(), result["factors"].numpy())
    assert result["mig"] == pytest.approx(ref, abs=1e-9)
    noise = dis.mig_of_model(PositionEncoder(noise_only=True), n_points=3000, generator=_gen(0))
    assert noise["mig"] < 0.03


def test_betavae_score_separates_informative_from_random_codes():
    kwargs = dict(n_train=200, n_eval=100, batch_size=8)
    good = dis.betavae_score(PositionEncoder(), generator=_gen(1), **kwargs)
    bad = dis.betavae_score(PositionEncoder(noise_only=True), generator=_gen(1), **kwargs)
    assert set(good) == {"train_accuracy", "eval_accuracy"}
    # posX and posY are recognised every time; scale often (area also depends on the shape)
    assert good["eval_accuracy"] > 0.45
    assert bad["eval_accuracy"] < 0.35                       # chance is 1/5
    assert good["eval_accuracy"] > bad["eval_accuracy"] + 0.2


# --------------------------------------------------------------------------- model and training

def test_mlp_beta_vae_shapes_and_errors():
    model = dis.MLPBetaVAE(latent_dim=6, hidden=32)
    x = ds.shrink(ds.render(torch.arange(4)))
    logits, mu, logvar = model(x)
    assert logits.shape == x.shape == (4, 1, 32, 32) and mu.shape == logvar.shape == (4, 6)
    probs = model.decode_probs(mu)
    assert probs.min() >= 0 and probs.max() <= 1
    with pytest.raises(ValueError, match="dsprites.shrink"):
        model.encode(ds.render(torch.arange(2)))                      # 64 x 64 into a 32 x 32 model
    assert dis.MLPBetaVAE(image_size=64, hidden=8)(ds.render(torch.arange(2)))[0].shape == (2, 1, 64, 64)


def test_metrics_render_at_the_models_image_size():
    """mig_of_model and betavae_score give a 32 x 32 model 32 x 32 images: the same codes as
    encoding the shrunk renders by hand."""
    torch.manual_seed(0)
    model = dis.MLPBetaVAE(latent_dim=4, hidden=16)
    result = dis.mig_of_model(model, n_points=300, generator=_gen(3))
    by_hand = dis.encode_means(model, ds.shrink(ds.render_classes(result["factors"])))
    torch.testing.assert_close(result["codes"], by_hand)
    score = dis.betavae_score(model, n_train=20, n_eval=10, batch_size=4, generator=_gen(4))
    assert 0.0 <= score["eval_accuracy"] <= 1.0


def test_metrics_on_a_slice_score_only_the_factors_that_vary():
    """Squares at one orientation: MIG has three factors (a square's area gives its scale
    exactly, so the centroid-and-area reader scores high on all three), and the BetaVAE score is
    judged among three factors."""
    fixed = {"shape": 0, "orientation": 0}
    result = dis.mig_of_model(PositionEncoder(), n_points=3000, generator=_gen(0), fixed=fixed)
    assert result["factors"].shape == (3000, 3) and result["per_factor"].shape == (3,)
    per = result["per_factor"]
    assert per.min() > 0.5, per
    noise = dis.mig_of_model(PositionEncoder(noise_only=True), n_points=3000, generator=_gen(0),
                             fixed=fixed)
    assert noise["mig"] < 0.05
    score = dis.betavae_score(PositionEncoder(), n_train=300, n_eval=150, batch_size=16,
                              generator=_gen(1), fixed=fixed)
    assert score["eval_accuracy"] > 0.9


def test_capacity_loss():
    g = _gen(7)
    logits, x = torch.randn(3, 1, 4, 4, generator=g), (torch.rand(3, 1, 4, 4, generator=g) > 0.5).float()
    mu, logvar = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    loss, recon, kl = dis.capacity_loss(logits, x, mu, logvar, gamma=100.0, capacity=0.5)
    torch.testing.assert_close(loss, recon + 100.0 * (kl - 0.5).abs())


def _train(beta, epochs=4, n=384, seed=0):
    torch.manual_seed(seed)
    x, _ = ds.subset(n, seed=seed, disk_cache=False)
    model = dis.MLPBetaVAE(latent_dim=6, image_size=64, hidden=64)

    def loss_fn(m, batch):
        logits, mu, logvar = m(batch)
        loss, recon, kl = dis.beta_vae_loss(logits, batch, mu, logvar, beta)
        return loss, {"recon": recon, "kl": kl}

    history = fit(model, x, loss_fn, epochs=epochs, batch_size=32, lr=3e-3, generator=seed,
                  progress=False, device="cpu")
    return model, history, x


def test_fast_training_lowers_the_loss_and_metrics_run():
    """The fast-mode quality bound: 48 small steps cut the loss far below that of an untrained
    decoder (4096 log 2 = 2839 nats for probability 1/2 everywhere), and the measurements the
    lab prints work on the result."""
    model, history, x = _train(beta=4.0)
    assert history.epoch_losses[-1] < 0.4 * 4096 * math.log(2)
    assert history.epoch_losses[-1] < history.epoch_losses[0]
    mu = dis.encode_means(model, x)
    assert mu.shape == (len(x), 6)
    assert 0 <= dis.active_units(mu) <= 6
    result = dis.mig_of_model(model, n_points=500, generator=_gen(0))
    assert 0.0 <= result["mig"] <= 1.0


def test_the_labs_cpu_model_learns_the_slice_quickly():
    """Lab 06's CPU setting in miniature: the MLP β-VAE on 32 x 32 squares (scale and position
    vary) cuts the loss far below an untrained decoder's (1024 log 2 = 710 nats) within 96
    steps, and MIG runs on the slice."""
    fixed = {"shape": 0, "orientation": 0}
    classes = ds.sample_classes(384, generator=_gen(0), fixed=fixed)
    x = ds.shrink(ds.render_classes(classes, dtype=torch.uint8))
    torch.manual_seed(0)
    model = dis.MLPBetaVAE(latent_dim=6, hidden=64)

    def loss_fn(m, batch):
        logits, mu, logvar = m(batch)
        loss, recon, kl = dis.beta_vae_loss(logits, batch, mu, logvar, 4.0)
        return loss, {"recon": recon, "kl": kl}

    history = fit(model, x, loss_fn, epochs=8, batch_size=32, lr=3e-3, generator=0,
                  progress=False, device="cpu")
    assert history.epoch_losses[-1] < 0.25 * 1024 * math.log(2)
    result = dis.mig_of_model(model, n_points=500, generator=_gen(1), fixed=fixed)
    assert result["per_factor"].shape == (3,) and 0.0 <= result["mig"] <= 1.0
