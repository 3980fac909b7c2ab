"""genlab.vae against independent oracles (torch.distributions, plain BCE, autograd)."""
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch.distributions import Normal, kl_divergence

from genlab import vae


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    got = vae.kl_to_standard_normal(mu, logvar)
    assert got.shape == (5,)
    torch.testing.assert_close(got, expected)


def test_kl_is_zero_only_at_the_prior():
    assert vae.kl_to_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() < 1e-7
    assert (vae.kl_to_standard_normal(torch.zeros(1, 4), torch.full((1, 4), 0.5)) > 0).all()


def test_elbo_loss_matches_summed_bce_and_kl():
    n = 6
    logits, x = torch.randn(n, 1, 28, 28).double(), torch.rand(n, 1, 28, 28).double()
    mu, logvar = torch.randn(n, 3).double(), torch.randn(n, 3).double()
    loss, recon, kl = vae.elbo_loss(logits, x, mu, logvar, beta=3.0)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    torch.testing.assert_close(recon, bce / n)
    p = torch.sigmoid(logits)  # the textbook formula as a second oracle
    torch.testing.assert_close(recon, -(x * p.log() + (1 - x) * (1 - p).log()).sum() / n)
    expected_kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl, expected_kl.mean())
    torch.testing.assert_close(loss, recon + 3.0 * kl)
    assert loss.dim() == recon.dim() == kl.dim() == 0


def test_reparameterize_is_mu_plus_sigma_eps_with_gradients():
    mu = torch.randn(4, 3, requires_grad=True)
    sigma = (torch.rand(4, 3) + 0.5).requires_grad_()
    eps = torch.randn(4, 3)
    z = vae.reparameterize(mu, 2 * torch.log(sigma), eps)  # logvar = log sigma^2
    torch.testing.assert_close(z, mu + sigma * eps)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(4, 3))  # dz/dmu = 1
    torch.testing.assert_close(sigma.grad, eps)            # dz/dsigma = eps


def test_reparameterize_samples_have_std_sigma_not_variance():
    mu, logvar = torch.full((200_000, 1), 2.0), torch.full((200_000, 1), math.log(9.0))  # sigma = 3
    z = vae.reparameterize(mu, logvar)
    assert abs(z.mean().item() - 2.0) < 0.05
    assert abs(z.std().item() - 3.0) < 0.05


def test_box_muller_known_values_and_distribution():
    u1 = torch.tensor([math.exp(-0.5), math.exp(-0.5)])  # radius sqrt(-2 log u1) = 1
    z1, z2 = vae.box_muller(u1, torch.tensor([0.0, 0.25]))
    torch.testing.assert_close(z1, torch.tensor([1.0, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(z2, torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)
    g = torch.Generator().manual_seed(1)
    u1 = 1.0 - torch.rand(50_000, generator=g, dtype=torch.float64)  # (0, 1]
    z1, z2 = vae.box_muller(u1, torch.rand(50_000, generator=g, dtype=torch.float64))
    for z in (z1, z2):
        assert stats.kstest(z.numpy(), "norm").pvalue > 1e-3
    assert abs(torch.corrcoef(torch.stack([z1, z2]))[0, 1].item()) < 0.03


@pytest.mark.parametrize("cls", [vae.VAE, vae.MLPVAE])
def test_model_shapes(cls):
    model = cls(latent_dim=5)
    x = torch.rand(3, 1, 28, 28)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 5)
    assert model.decode(mu).shape == (3, 1, 28, 28)
    logits, mu, logvar = model(x)
    assert logits.shape == (3, 1, 28, 28) and mu.shape == (3, 5)
    assert (logits < 0).any()  # logits, not probabilities


def test_mlp_vae_is_the_pytorch_examples_model():
    model = vae.MLPVAE()
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {"fc1.weight": (400, 784), "fc1.bias": (400,),
                      "fc21.weight": (20, 400), "fc21.bias": (20,),
                      "fc22.weight": (20, 400), "fc22.bias": (20,),
                      "fc3.weight": (400, 20), "fc3.bias": (400,),
                      "fc4.weight": (784, 400), "fc4.bias": (784,)}
    z = torch.randn(2, 20)
    expected = model.fc4(F.relu(model.fc3(z))).view(2, 1, 28, 28)  # pytorch/examples: sigmoid of it
    torch.testing.assert_close(model.decode(z), expected)


@pytest.mark.parametrize("cls", [vae.VAE, vae.MLPVAE])
def test_a_few_steps_reduce_the_loss(cls):
    x = (torch.rand(64, 1, 28, 28) < 0.3).float()
    x[:, :, 10:18, 10:18] = 1.0  # some structure to learn
    model = cls(latent_dim=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss():
        torch.manual_seed(1)  # the same eps each time
        return vae.vae_loss(model, x)[0]

    before = loss().item()
    for _ in range(20):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.9 * before


def test_sample_prior_and_interpolate():
    model = vae.VAE(latent_dim=3)
    a = vae.sample_prior(model, 4, generator=torch.Generator().manual_seed(0))
    b = vae.sample_prior(model, 4, generator=torch.Generator().manual_seed(0))
    assert a.shape == (4, 1, 28, 28) and 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(a, b)
    x_a, x_b = torch.rand(1, 28, 28), torch.rand(1, 1, 28, 28)
    line = vae.interpolate(model, x_a, x_b, steps=5)
    assert line.shape == (5, 1, 28, 28)
    ends = torch.sigmoid(model.decode(model.encode(torch.stack([x_a, x_b[0]]))[0]))
    torch.testing.assert_close(line[[0, -1]], ends)


# --------------------------------------------------------------------------- consistency of the sampler and the KL

def test_reparameterize_samples_have_variance_exp_logvar_per_dimension():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(1, 4, generator=g, dtype=torch.float64), torch.randn(1, 4, generator=g, dtype=torch.float64)
    torch.manual_seed(1)
    z = vae.reparameterize(mu.expand(100_000, 4), logvar.expand(100_000, 4))
    var = logvar.exp()[0]
    torch.testing.assert_close(z.mean(0), mu[0], atol=(5 * var.sqrt() / 300).max().item(), rtol=0)
    torch.testing.assert_close(z.var(0), var, rtol=0.03, atol=0)   # the variance is exp(logvar)


def test_kl_equals_the_monte_carlo_kl_of_the_reparameterized_samples():
    """The KL term and the sampler read logvar the same way: the closed form equals
    E_q[log q(z) - log p(z)] estimated from reparameterize's own samples."""
    mu = torch.tensor([[0.5, -1.0, 0.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.2, -1.5, 1.0, -3.0]], dtype=torch.float64)
    n = 400_000
    torch.manual_seed(2)
    z = vae.reparameterize(mu.expand(n, 4), logvar.expand(n, 4))
    q = Normal(mu, torch.exp(0.5 * logvar))
    log_ratio = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1)
    stderr = log_ratio.std().item() / math.sqrt(n)
    closed = vae.kl_to_standard_normal(mu, logvar).item()
    assert abs(log_ratio.mean().item() - closed) < 5 * stderr
    buggy = (-logvar + 0.5 * (torch.exp(2 * logvar) + mu ** 2) - 0.5).sum().item()  # logvar as log-std
    assert abs(log_ratio.mean().item() - buggy) > 50 * stderr


def test_elbo_kl_uses_the_samplers_sigma_in_a_trained_direction():
    """Gradient descent on the KL alone drives q to N(0, I): mu -> 0 and logvar -> 0 (sigma 1)."""
    mu = torch.tensor([[1.5, -0.5]], requires_grad=True)
    logvar = torch.tensor([[1.0, -2.0]], requires_grad=True)
    optimizer = torch.optim.SGD([mu, logvar], lr=0.2)
    for _ in range(300):
        optimizer.zero_grad()
        vae.kl_to_standard_normal(mu, logvar).sum().backward()
        optimizer.step()
    torch.testing.assert_close(mu.detach(), torch.zeros(1, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(logvar.detach(), torch.zeros(1, 2), atol=1e-4, rtol=0)


def test_box_muller_moments_in_float32():
    g = torch.Generator().manual_seed(4)
    u1, u2 = 1.0 - torch.rand(200_000, generator=g), torch.rand(200_000, generator=g)
    z1, z2 = vae.box_muller(u1, u2)
    assert z1.dtype == torch.float32 and z1.shape == u1.shape
    for z in (z1.double(), z2.double()):
        assert abs(z.mean().item()) < 0.01
        assert abs(z.var().item() - 1) < 0.015
        assert abs(stats.skew(z.numpy())) < 0.03 and abs(stats.kurtosis(z.numpy())) < 0.06
        assert stats.normaltest(z.numpy()).pvalue > 1e-4


def test_elbo_loss_per_image_sum_and_batch_mean_with_beta():
    n = 4
    logits, x = torch.randn(n, 1, 28, 28), torch.rand(n, 1, 28, 28)
    mu, logvar = torch.randn(n, 5), torch.randn(n, 5)
    loss, recon, kl = vae.elbo_loss(logits, x, mu, logvar, beta=0.0)
    torch.testing.assert_close(loss, recon)
    manual = sum(F.binary_cross_entropy_with_logits(logits[i], x[i], reduction="sum") for i in range(n)) / n
    torch.testing.assert_close(recon, manual)
    assert recon > 700 * 0.1   # a sum over 784 pixels, not a mean (which would be < 5)


# --------------------------------------------------------------------------- the Gaussian decoder

@pytest.mark.parametrize("sigma", [1.0, 0.1, 0.5, 3.0])
def test_gaussian_nll_matches_torch_distributions(sigma):
    g = torch.Generator().manual_seed(0)
    x, x_hat = torch.rand(5, 1, 28, 28, generator=g).double(), torch.rand(5, 1, 28, 28, generator=g).double()
    expected = -Normal(x_hat, sigma).log_prob(x).flatten(1).sum(1).mean()
    got = vae.gaussian_nll(x, x_hat, sigma)
    assert got.shape == () and got.dtype == torch.float64
    torch.testing.assert_close(got, expected)
    # a second oracle: torch's Gaussian NLL loss (it takes the variance), with its constant
    torch.testing.assert_close(got, F.gaussian_nll_loss(x_hat, x, torch.full_like(x, sigma ** 2),
                                                        full=True, reduction="sum") / len(x))


def test_gaussian_nll_with_a_sigma_per_pixel_and_any_batch_shape():
    g = torch.Generator().manual_seed(1)
    x, x_hat = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    sigma = 0.2 + torch.rand(1, 2, 4, 4, generator=g)
    expected = -Normal(x_hat, sigma.expand_as(x)).log_prob(x).flatten(1).sum(1).mean()
    torch.testing.assert_close(vae.gaussian_nll(x, x_hat, sigma), expected)
    torch.testing.assert_close(vae.gaussian_nll(x, x_hat, torch.tensor(0.7)),
                               vae.gaussian_nll(x, x_hat, 0.7))
    flat = torch.rand(4, 10, generator=g)
    torch.testing.assert_close(vae.gaussian_nll(flat, flat, 1.0),
                               torch.tensor(10 * 0.5 * math.log(2 * math.pi)))


def test_gaussian_nll_is_the_beta_weighted_squared_error_plus_a_constant():
    """-log N(x; x_hat, sigma^2 I) = SSE / (2 sigma^2) + D log(sigma sqrt(2 pi)): with a fixed
    sigma, 2 sigma^2 (NLL + KL) is the squared error plus beta = 2 sigma^2 times the KL, plus a
    constant, so the two objectives have proportional gradients."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 1, 28, 28, generator=g, dtype=torch.float64)
    x_hat = torch.rand(6, 1, 28, 28, generator=g, dtype=torch.float64).requires_grad_()
    for sigma in (0.1, 0.3, 1.0):
        kl = (x_hat ** 2).mean() * 3.0    # any differentiable stand-in for the KL term
        nll = vae.gaussian_nll(x, x_hat, sigma)
        sse = (x - x_hat).pow(2).flatten(1).sum(1).mean()
        const = 784 * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
        torch.testing.assert_close(nll, sse / (2 * sigma ** 2) + const)
        beta = 2 * sigma ** 2
        (g_elbo,) = torch.autograd.grad(nll + kl, x_hat, retain_graph=True)
        (g_beta,) = torch.autograd.grad(sse + beta * kl, x_hat)
        torch.testing.assert_close(beta * g_elbo, g_beta)


def test_gaussian_nll_is_finite_at_extreme_sigmas():
    x, x_hat = torch.zeros(2, 3), torch.full((2, 3), 1e-3)
    for sigma in (1e-20, 1e20):   # sigma**2 leaves float32's normal range at both ends
        expected = -Normal(x_hat.double(), sigma).log_prob(x.double()).flatten(1).sum(1).mean()
        got = vae.gaussian_nll(x, x_hat, sigma)
        assert torch.isfinite(got)
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=0)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, error", [
    (lambda: vae.box_muller(torch.rand(3), torch.rand(4)), ValueError),
    (lambda: vae.box_muller(torch.ones(3, dtype=torch.long), torch.ones(3, dtype=torch.long)), TypeError),
    (lambda: vae.reparameterize(torch.zeros(2, 3), torch.zeros(2, 4)), ValueError),
    (lambda: vae.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3)), ValueError),
    (lambda: vae.kl_to_standard_normal(torch.zeros(2, 3), torch.zeros(3, 2)), ValueError),
    (lambda: vae.kl_to_standard_normal([0.0], [0.0]), TypeError),
    (lambda: vae.elbo_loss(torch.zeros(2, 784), torch.zeros(2, 1, 28, 28), torch.zeros(2, 3),
                           torch.zeros(2, 3)), ValueError),
    (lambda: vae.elbo_loss(torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 28, 28), torch.zeros(3, 3),
                           torch.zeros(3, 3)), ValueError),
    (lambda: vae.gaussian_nll(torch.zeros(2, 3), torch.zeros(2, 4), 1.0), ValueError),
    (lambda: vae.gaussian_nll(torch.zeros(2, 3), torch.zeros(2, 3), 0.0), ValueError),
    (lambda: vae.gaussian_nll(torch.zeros(2, 3), torch.zeros(2, 3), -1.0), ValueError),
    (lambda: vae.gaussian_nll(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([1.0, -1.0, 1.0])),
     ValueError),
    (lambda: vae.gaussian_nll(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(4)), ValueError),
    (lambda: vae.gaussian_nll(torch.zeros(2, 3), torch.zeros(2, 3), "1"), TypeError),
    (lambda: vae.gaussian_nll(torch.zeros(3), torch.zeros(3), 1.0), ValueError),
    (lambda: vae.gaussian_nll(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), 1.0), TypeError),
    (lambda: vae.sample_prior(vae.VAE(2), 0), ValueError),
    (lambda: vae.interpolate(vae.VAE(2), torch.rand(1, 28, 28), torch.rand(1, 28, 28), 1), ValueError),
    (lambda: vae.interpolate(vae.VAE(2), torch.rand(2, 1, 28, 28), torch.rand(1, 28, 28), 3), ValueError),
])
def test_bad_input_gets_a_clear_error(call, error):
    with pytest.raises(error):
        call()


# --------------------------------------------------------------------------- devices

@pytest.mark.gpu
def test_functions_return_on_the_input_device():
    dev = torch.device("cuda")
    u1, u2 = 1 - torch.rand(5, device=dev), torch.rand(5, device=dev)
    assert all(z.device.type == "cuda" for z in vae.box_muller(u1, u2))
    mu, logvar = torch.randn(3, 2, device=dev), torch.randn(3, 2, device=dev)
    assert vae.reparameterize(mu, logvar).device.type == "cuda"
    assert vae.kl_to_standard_normal(mu, logvar).device.type == "cuda"
    model = vae.VAE(2).to(dev)
    assert vae.sample_prior(model, 3, generator=torch.Generator().manual_seed(0)).device.type == "cuda"
    x = torch.rand(1, 1, 28, 28, device=dev)
    assert vae.interpolate(model, x, x, 4).device.type == "cuda"
    logits, mu, logvar = model(x)
    assert all(t.device.type == "cuda" for t in vae.elbo_loss(logits, x, mu, logvar))
