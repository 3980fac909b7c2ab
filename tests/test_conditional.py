"""genlab.conditional against independent oracles: the conditional ELBO against
torch.distributions, restyling and class means against the computation written out, and a
conditional VAE that learns to draw the digit it is asked for."""
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence

from genlab import conditional
from genlab.training import fit


def _data(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_cvae_loss_is_the_conditional_elbo():
    torch.manual_seed(0)
    model = conditional.ConditionalVAE(latent_dim=3)
    x, y = _data()
    torch.manual_seed(1)
    loss, metrics = conditional.cvae_loss(model, (x, y), beta=2.0)
    torch.manual_seed(1)
    logits, mu, logvar = model(x, y)
    recon = -Bernoulli(logits=logits, validate_args=False).log_prob(x).flatten(1).sum(1).mean()
    kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1).mean()
    torch.testing.assert_close(loss, recon + 2.0 * kl)
    torch.testing.assert_close(torch.as_tensor(metrics["kl"]).float(), kl.detach().float())


def test_the_label_reaches_both_networks():
    torch.manual_seed(0)
    model = conditional.ConditionalVAE(latent_dim=4).eval()
    x, y = _data(5)
    mu_a, _ = model.encode(x, y)
    mu_b, _ = model.encode(x, (y + 1) % 10)
    assert not torch.allclose(mu_a, mu_b)
    z = torch.zeros(2, 4)
    assert not torch.allclose(model.decode(z, torch.tensor([3, 3])), model.decode(z, torch.tensor([3, 7])))
    grid = conditional.restyle(model, x, y, torch.arange(10))
    assert grid.shape == (5, 10, 1, 28, 28)
    with torch.no_grad():
        want = torch.sigmoid(model.decode(mu_a[2:3].expand(10, 4), torch.arange(10)))
    torch.testing.assert_close(grid[2], want)


def test_bad_labels_and_shapes_get_clear_errors():
    model = conditional.ConditionalVAE()
    x, y = _data(4)
    with pytest.raises(TypeError, match="integer"):
        model.encode(x, y.float())
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        model.encode(x, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="N labels"):
        model.encode(x, y[:3])
    with pytest.raises(ValueError, match="codes"):
        model.decode(torch.zeros(4, 5), y)


def test_a_trained_conditional_vae_draws_the_digit_it_is_asked_for():
    """Ten random templates, noisy copies labelled by template: after training, the prior's
    mode decoded with label k is nearest to template k, and so are most prior samples."""
    g = torch.Generator().manual_seed(0)
    templates = (torch.rand(10, 1, 28, 28, generator=g) < 0.3).float()
    y = torch.arange(10).repeat(60)
    x = (templates[y] + 0.1 * torch.randn(len(y), 1, 28, 28, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    model = conditional.ConditionalVAE(latent_dim=2, hidden=64)
    fit(model, (x, y), conditional.cvae_loss, epochs=40, lr=3e-3, batch_size=100, generator=0,
        device="cpu", progress=False)
    model.eval()
    with torch.no_grad():
        mode = torch.sigmoid(model.decode(torch.zeros(10, 2), torch.arange(10)))
    assert torch.cdist(mode.flatten(1), templates.flatten(1)).argmin(1).tolist() == list(range(10))
    labels = torch.arange(10).repeat(5)
    drawn = conditional.sample(model, labels, generator=torch.Generator().manual_seed(1))
    nearest = torch.cdist(drawn.flatten(1), templates.flatten(1)).argmin(1)
    assert (nearest == labels).float().mean() >= 0.7   # 0.80-0.82 over three seeds


class _Linear(nn.Module):
    """A stand-in plain VAE whose code is the first two pixels and whose decoder is affine."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def encode(self, x):
        mu = x.flatten(1)[:, :2]
        return mu, torch.zeros_like(mu)

    def decode(self, z):
        return (z.sum(1) * self.w).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)


def test_class_means_and_latent_arithmetic_are_the_formulas():
    model = _Linear()
    x, y = _data(40, seed=3)
    y[:10] = torch.arange(10)
    means = conditional.class_means(model, x, y)
    for k in range(10):
        torch.testing.assert_close(means[k], x[y == k].flatten(1)[:, :2].mean(0))
    moved = conditional.latent_arithmetic(model, x[:4], 2, 7, means)
    code = x[:4].flatten(1)[:, :2] - means[2] + means[7]
    torch.testing.assert_close(moved, torch.sigmoid(code.sum(1)).view(-1, 1, 1, 1).expand(-1, 1, 28, 28))
    with pytest.raises(ValueError, match="needs an image"):
        conditional.class_means(model, x[:5], torch.zeros(5, dtype=torch.long))
