"""genlab.wgan against independent oracles.

W1: scipy.stats.wasserstein_distance and a hand-computed case. Parallel lines: the closed forms
and a discretized computation with scipy (total variation, entropy, Jensen-Shannon, W1 of the
x-marginals). Gradient penalty: a separate autograd call per sample, torch.func, and linear
critics whose input gradient is known. Clipping: torch.clamp on copies. Training step: the same
step done by hand on copies of tiny networks.
"""
import copy
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, wasserstein_distance
from torch import nn

from genlab import wgan
from genlab.testing import devices


# --------------------------------------------------------------------------- wasserstein_1d

@pytest.mark.parametrize("n, seed", [(1, 0), (5, 1), (64, 2), (1000, 3)])
def test_wasserstein_1d_matches_scipy(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    y = torch.rand(n, generator=g, dtype=torch.float64) * 4 - 1
    got = wgan.wasserstein_1d(x, y)
    assert got.shape == () and got.dtype == torch.float64
    assert got.item() == pytest.approx(wasserstein_distance(x.numpy(), y.numpy()), rel=1e-10)


def test_wasserstein_1d_by_hand_and_properties():
    got = wgan.wasserstein_1d(torch.tensor([0.0, 1.0, 5.0]), torch.tensor([4.0, 2.0, 2.0]))
    assert got.item() == pytest.approx(4 / 3)            # |0-2| + |1-2| + |5-4| over 3
    x = torch.randn(20)
    assert wgan.wasserstein_1d(x, x.flip(0)).item() == 0.0
    assert wgan.wasserstein_1d(x, x + 2.5).item() == pytest.approx(2.5, rel=1e-6)  # a shift
    y = torch.randn(20)
    assert wgan.wasserstein_1d(x, y).item() == pytest.approx(wgan.wasserstein_1d(y, x).item())


def test_wasserstein_1d_is_differentiable():
    x = torch.randn(30, dtype=torch.float64, requires_grad=True)
    y = torch.randn(30, dtype=torch.float64)
    torch.autograd.gradcheck(lambda a: wgan.wasserstein_1d(a, y), (x,))


def test_wasserstein_1d_rejects_bad_input():
    with pytest.raises(ValueError):
        wgan.wasserstein_1d(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError):
        wgan.wasserstein_1d(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(TypeError):
        wgan.wasserstein_1d(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError):
        wgan.wasserstein_1d([0.0, 1.0], torch.zeros(2))


@pytest.mark.parametrize("device", devices(), ids=str)
def test_wasserstein_1d_stays_on_the_device(device):
    out = wgan.wasserstein_1d(torch.randn(8, device=device), torch.randn(8, device=device))
    assert out.device.type == device.type


# --------------------------------------------------------------------------- parallel lines

def _discretized(theta, m=50):
    """TV, KL, JS and W1 from scipy on a discretization: m points on each segment, mass 1/m."""
    xs = sorted({0.0, float(theta)})
    support = [(x, k) for x in xs for k in range(m)]
    p = np.array([1 / m if x == 0.0 else 0.0 for x, _ in support])
    q = np.array([1 / m if x == float(theta) else 0.0 for x, _ in support])
    w1 = wasserstein_distance(np.zeros(m), np.full(m, float(theta)))  # the y's coincide
    return {"tv": 0.5 * np.abs(p - q).sum(), "kl": entropy(p, q),
            "js": jensenshannon(p, q) ** 2, "w1": w1}


@pytest.mark.parametrize("theta", [0.0, 0.3, -1.7, 1e-4])
def test_parallel_lines_against_scipy_and_the_closed_forms(theta):
    got = wgan.parallel_lines_divergences(theta)
    assert set(got) == {"tv", "kl", "js", "w1"}
    oracle = _discretized(theta)
    closed = ({"tv": 1.0, "kl": math.inf, "js": math.log(2), "w1": abs(theta)} if theta
              else {"tv": 0.0, "kl": 0.0, "js": 0.0, "w1": 0.0})
    for key in got:
        assert got[key].shape == ()
        assert got[key].item() == pytest.approx(closed[key], rel=1e-6, abs=1e-9)
        assert got[key].item() == pytest.approx(oracle[key], rel=1e-6, abs=1e-9)


def test_parallel_lines_elementwise_and_differentiable():
    theta = torch.tensor([[-0.5, 0.0], [2.0, 1e-3]], dtype=torch.float64, requires_grad=True)
    got = wgan.parallel_lines_divergences(theta)
    for key, value in got.items():
        assert value.shape == theta.shape and value.dtype == torch.float64
        for i in range(2):
            for j in range(2):
                t = theta[i, j].item()
                assert value[i, j].item() == pytest.approx(
                    wgan.parallel_lines_divergences(t)[key].item(), rel=1e-6)
    (grad,) = torch.autograd.grad(got["w1"].sum(), theta)
    torch.testing.assert_close(grad, torch.tensor([[-1.0, 0.0], [1.0, 1.0]], dtype=torch.float64))
    assert not got["js"].requires_grad      # JS gives the generator nothing to follow


@pytest.mark.parametrize("device", devices(), ids=str)
def test_parallel_lines_on_the_device(device):
    out = wgan.parallel_lines_divergences(torch.tensor([0.0, 1.0], device=device))
    assert all(v.device.type == device.type for v in out.values())


def test_parallel_lines_rejects_bad_input():
    with pytest.raises(TypeError):
        wgan.parallel_lines_divergences("0.5")
    with pytest.raises(TypeError):
        wgan.parallel_lines_divergences(True)


# --------------------------------------------------------------------------- losses

def test_losses_by_hand():
    real, fake = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, 0.5])
    assert wgan.critic_loss(real, fake).item() == pytest.approx(-0.25 - 2.0)
    assert wgan.wgan_generator_loss(fake).item() == pytest.approx(0.25)
    scores = torch.randn(7, requires_grad=True)
    (grad,) = torch.autograd.grad(wgan.wgan_generator_loss(scores), scores)
    torch.testing.assert_close(grad, torch.full((7,), -1 / 7))
    with pytest.raises(TypeError):
        wgan.critic_loss([1.0], torch.zeros(1))
    with pytest.raises(ValueError):
        wgan.wgan_generator_loss(torch.zeros(0))


# --------------------------------------------------------------------------- clipping

def test_clip_weights_clamps_every_parameter_in_place():
    torch.manual_seed(0)
    critic = wgan.Critic(ndf=4, norm="layer")
    with torch.no_grad():
        for p in critic.parameters():
            p.mul_(20)
    before = {n: p.detach().clone() for n, p in critic.named_parameters()}
    objects = {n: p for n, p in critic.named_parameters()}
    c = 0.01
    assert wgan.clip_weights_(critic, c) is critic
    for name, p in critic.named_parameters():
        assert p is objects[name] and p.is_leaf
        assert p.abs().max().item() <= c
        torch.testing.assert_close(p.detach(), torch.clamp(before[name], -c, c), rtol=0, atol=0)
        inside = before[name].abs() <= c
        assert torch.equal(p.detach()[inside], before[name][inside])   # nothing inside changes
    with pytest.raises(ValueError):
        wgan.clip_weights_(critic, 0)
    with pytest.raises(ValueError):
        wgan.clip_weights_(critic, -1.0)


# --------------------------------------------------------------------------- gradient penalty

class LinearCritic(nn.Module):
    def __init__(self, w, b=0.0):
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(torch.tensor(b, dtype=w.dtype))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1) + self.b


@pytest.mark.parametrize("norm", [1.0, 0.25, 3.0])
def test_gradient_penalty_of_linear_critics(norm):
    w = torch.randn(1, 5, 5, dtype=torch.float64)
    critic = LinearCritic(w / w.norm() * norm)
    real, fake = torch.rand(7, 1, 5, 5, dtype=torch.float64), torch.randn(7, 1, 5, 5, dtype=torch.float64)
    gp = wgan.gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((norm - 1) ** 2, abs=1e-12)   # 0 for a unit weight vector
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: the penalty trains the critic (create_graph)
    (grad,) = torch.autograd.grad(gp, critic.w)
    torch.testing.assert_close(grad, 2 * (norm - 1) * critic.w.detach() / norm)


def _per_sample_oracle(critic, real, fake, eps):
    x_hat = eps * real + (1 - eps) * fake
    out = []
    for n in range(len(x_hat)):
        point = x_hat[n:n + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(critic(point).sum(), point, create_graph=True)
        out.append((g.flatten().norm() - 1) ** 2)
    return torch.stack(out).mean()


def test_gradient_penalty_against_per_sample_autograd_and_torch_func():
    torch.manual_seed(0)
    critic = wgan.Critic(ndf=4, norm="layer").double()
    g = torch.Generator().manual_seed(1)
    real = torch.rand(5, 1, 28, 28, generator=g, dtype=torch.float64) * 2 - 1
    fake = torch.randn(5, 1, 28, 28, generator=g, dtype=torch.float64)
    gp = wgan.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    eps = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    expected = _per_sample_oracle(critic, real, fake, eps)
    torch.testing.assert_close(gp, expected)
    # torch.func: the per-sample input gradients by vmap over single samples
    x_hat = eps * real + (1 - eps) * fake
    grads = torch.func.vmap(torch.func.grad(lambda x: critic(x[None]).sum()))(x_hat)
    via_func = (grads.flatten(1).norm(dim=1) - 1).pow(2).mean()
    torch.testing.assert_close(gp.detach(), via_func)
    # gradients with respect to the weights agree with the oracle's (double backprop)
    mine = torch.autograd.grad(gp, list(critic.parameters()), allow_unused=True)
    ref = torch.autograd.grad(expected, list(critic.parameters()), allow_unused=True)
    for a, b in zip(mine, ref):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b)


def test_gradient_penalty_eps_and_detaching():
    critic = LinearCritic(torch.randn(4))
    real, fake = torch.rand(6, 4), torch.randn(6, 4)
    a = wgan.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    b = wgan.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    assert a.item() == b.item()
    G = nn.Linear(3, 4)
    fake = G(torch.randn(6, 3))
    gp = wgan.gradient_penalty(wgan.Critic(ndf=2), torch.rand(6, 1, 28, 28),
                               torch.randn(6, 1, 28, 28) + fake.sum() * 0)
    grads = torch.autograd.grad(gp, list(G.parameters()), allow_unused=True)
    assert all(g is None or not g.any() for g in grads)
    with pytest.raises(ValueError):
        wgan.gradient_penalty(critic, torch.rand(3, 4), torch.rand(2, 4))
    with pytest.raises(TypeError):
        wgan.gradient_penalty(critic, torch.rand(3, 4), torch.rand(3, 4), generator=3)


@pytest.mark.parametrize("device", devices(), ids=str)
def test_gradient_penalty_on_the_device_with_a_cpu_generator(device):
    critic = wgan.Critic(ndf=2).to(device)
    real, fake = torch.rand(3, 1, 28, 28, device=device), torch.rand(3, 1, 28, 28, device=device)
    gp = wgan.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))
    assert gp.device.type == device.type and gp.shape == ()


# --------------------------------------------------------------------------- critic network

def test_critic_scores_each_sample_on_its_own():
    torch.manual_seed(0)
    for norm in ("none", "layer"):
        critic = wgan.Critic(ndf=8, norm=norm)
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
        x = torch.randn(6, 1, 28, 28)
        scores = critic(x)
        assert scores.shape == (6,)
        torch.testing.assert_close(scores[2:3], critic(x[2:3]))
    with pytest.raises(ValueError):
        wgan.Critic(norm="batch")


# --------------------------------------------------------------------------- training step

class TinyCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))

    def forward(self, x):
        return self.net(x).squeeze(1)


def _by_hand(G, critic, reals, zs, lr, clip=None, gp_weight=None):
    G, critic = copy.deepcopy(G), copy.deepcopy(critic)
    losses = []
    for real, z in zip(reals, zs):
        fake = G(z).detach()
        loss = critic(fake).mean() - critic(real).mean()
        total = loss
        if gp_weight:
            total = loss + gp_weight * _per_sample_oracle(critic, real, fake, torch.full((len(real), 1), 0.5))
        grads = torch.autograd.grad(total, list(critic.parameters()))
        with torch.no_grad():
            for p, g in zip(critic.parameters(), grads):
                p -= lr * g
                if clip is not None:
                    p.clamp_(-clip, clip)
        losses.append(loss.item())
    g_loss = -critic(G(zs[len(reals)])).mean()
    grads = torch.autograd.grad(g_loss, list(G.parameters()))
    with torch.no_grad():
        for p, g in zip(G.parameters(), grads):
            p -= lr * g
    return G, critic, sum(losses) / len(losses), g_loss.item()


@pytest.mark.parametrize("clip", [None, 0.2])
def test_wgan_train_step_matches_the_step_by_hand(clip):
    torch.manual_seed(0)
    G, critic = nn.Linear(2, 4).double(), TinyCritic().double()
    reals = [torch.randn(5, 4, dtype=torch.float64) for _ in range(3)]
    zs = iter([torch.randn(5, 2, dtype=torch.float64) for _ in range(4)])
    z_list = list(zs)
    G_ref, c_ref, c_loss, g_loss = _by_hand(G, critic, reals, z_list, 0.1, clip=clip)
    calls = iter(z_list)
    for p in list(G.parameters()) + list(critic.parameters()):
        p.grad = torch.ones_like(p)                       # stale gradients from before
    out = wgan.wgan_train_step(G, critic, torch.optim.SGD(G.parameters(), lr=0.1),
                               torch.optim.SGD(critic.parameters(), lr=0.1), reals,
                               lambda n: next(calls), n_critic=3, clip=clip)
    for a, b in zip(list(G.parameters()) + list(critic.parameters()),
                    list(G_ref.parameters()) + list(c_ref.parameters())):
        torch.testing.assert_close(a.detach(), b.detach())
        assert a.grad is None                             # no stale gradients left
    assert all(isinstance(v, float) for v in out.values())
    assert out["critic_loss"] == pytest.approx(c_loss) and out["wasserstein"] == pytest.approx(-c_loss)
    assert out["generator_loss"] == pytest.approx(g_loss) and out["gp"] == 0.0


def test_wgan_train_step_with_gradient_penalty(monkeypatch):
    # eps fixed at 0.5 so the step by hand can use the per-sample oracle
    monkeypatch.setattr(wgan, "_uniform_per_sample",
                        lambda x, g: torch.full((len(x),) + (1,) * (x.dim() - 1), 0.5, dtype=x.dtype))
    torch.manual_seed(1)
    G, critic = nn.Linear(2, 4).double(), TinyCritic().double()
    reals = [torch.randn(6, 4, dtype=torch.float64) for _ in range(2)]
    zs = [torch.randn(6, 2, dtype=torch.float64) for _ in range(3)]
    G_ref, c_ref, c_loss, _ = _by_hand(G, critic, reals, zs, 0.05, gp_weight=10.0)
    calls = iter(zs)
    out = wgan.wgan_train_step(G, critic, torch.optim.SGD(G.parameters(), lr=0.05),
                               torch.optim.SGD(critic.parameters(), lr=0.05), reals,
                               lambda n: next(calls), n_critic=2, gp_weight=10.0)
    for a, b in zip(critic.parameters(), c_ref.parameters()):
        torch.testing.assert_close(a.detach(), b.detach())
    for a, b in zip(G.parameters(), G_ref.parameters()):
        torch.testing.assert_close(a.detach(), b.detach())
    assert out["gp"] > 0 and out["critic_loss"] == pytest.approx(c_loss)


def test_wgan_train_step_keeps_G_fixed_during_critic_steps_and_detaches_fakes():
    torch.manual_seed(2)
    G, critic = nn.Linear(2, 4), TinyCritic()
    G_before = [p.detach().clone() for p in G.parameters()]
    seen = []

    class Watch(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(all(torch.equal(a, b) for a, b in zip(G.parameters(), G_before)))
            return super().step(closure)

    inputs = []
    critic.register_forward_pre_hook(lambda m, args: inputs.append(args[0].requires_grad))
    wgan.wgan_train_step(G, critic, torch.optim.SGD(G.parameters(), lr=0.1),
                         Watch(critic.parameters(), lr=0.1), [torch.randn(4, 4)] * 5,
                         lambda n: torch.randn(n, 2), n_critic=5)
    assert seen == [True] * 5
    assert inputs == [False] * 10 + [True]                # 5 x (real, fake), then G's step
    with pytest.raises(ValueError):
        wgan.wgan_train_step(G, critic, None, None, [torch.randn(4, 4)], lambda n: None, n_critic=2)


# --------------------------------------------------------------------------- training (fast)

@pytest.mark.slow
def test_train_recipe_improves_on_the_untrained_generator():
    """Fast-mode quality bound: 40 WGAN-GP generator updates on 640 digits (width 8, a raised
    learning rate) already beat the untrained generator's Fréchet distance (measured: 962 vs
    1050 on the fallback digits). A loose bound: WGAN-GP needs thousands of updates to shine."""
    from genlab import dcgan
    from genlab.data import load_mnist
    from genlab.quality import digit_classifier, sample_quality
    x, _ = load_mnist("train", limit=640)
    digit_classifier()
    score = lambda images: sample_quality(images, value_range=(-1, 1)).fd  # noqa: E731
    torch.manual_seed(0)
    untrained = dcgan.Generator(nz=64, ngf=8)
    untrained.apply(wgan._init_weights)
    before = score(wgan.samples(untrained, 500, seed=1))
    run = wgan.train_recipe("wgan-gp", x, epochs=20, evals=1, ngf=8, ndf=8, n_samples=500,
                            lr=1e-3, device="cpu", progress=False, quality_fn=score)
    assert run.diverged is None and len(run.steps) == 20 * 2
    assert set(run.metrics) == {"critic_loss", "wasserstein", "gp", "generator_loss"}
    assert all(math.isfinite(v) for values in run.metrics.values() for v in values)
    assert run.quality < 0.95 * before, (before, run.quality)
