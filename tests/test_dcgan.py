"""genlab.dcgan, the reference implementations of lab 07, against independent oracles."""
import copy
import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab import dcgan
from genlab.data import load_mnist


# --------------------------------------------------------------------------- networks

@pytest.mark.parametrize("nz, ngf, n", [(64, 64, 3), (10, 8, 5), (100, 16, 1)])
def test_generator_shape_and_range(nz, ngf, n):
    G = dcgan.Generator(nz, ngf)
    out = G(torch.randn(n, nz))
    assert out.shape == (n, 1, 28, 28)
    assert out.min() >= -1 and out.max() <= 1 and out.min() < 0 < out.max()
    # z may also come as (N, nz, 1, 1), as in the PyTorch DCGAN tutorial
    G.eval()
    z = torch.randn(2, nz)
    torch.testing.assert_close(G(z[:, :, None, None]), G(z))


def test_generator_follows_the_dcgan_rules():
    G = dcgan.Generator(64, 32)
    layers = list(G.modules())
    tconvs = [m for m in layers if isinstance(m, nn.ConvTranspose2d)]
    norms = [m for m in layers if isinstance(m, nn.BatchNorm2d)]
    assert len(tconvs) == 3 and len(norms) == 2
    assert all(m.num_features > 1 for m in norms)          # none at the output
    assert isinstance(layers[-1], nn.Tanh)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Linear)) for m in layers)


def test_discriminator_shape_and_rules():
    D = dcgan.Discriminator(16)
    assert D(torch.randn(5, 1, 28, 28)).shape == (5,)
    assert D.eval()(torch.randn(1, 1, 28, 28)).shape == (1,)
    layers = list(D.modules())
    assert all(m.negative_slope == 0.2 for m in layers if isinstance(m, nn.LeakyReLU))
    assert sum(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in layers) == 2
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Sigmoid, nn.ReLU)) for m in layers)
    first_norm = next(i for i, m in enumerate(layers) if isinstance(m, nn.BatchNorm2d))
    first_conv = next(i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d))
    assert first_conv < first_norm and isinstance(layers[first_conv + 1], nn.LeakyReLU)


def test_networks_reject_bad_input():
    with pytest.raises(ValueError):
        dcgan.Generator(64, 8)(torch.randn(3, 10))
    with pytest.raises(ValueError):
        dcgan.Generator(64, 8)(torch.randn(64))
    with pytest.raises(TypeError):
        dcgan.Generator(64, 8)([0.0] * 64)
    with pytest.raises(ValueError):
        dcgan.Discriminator(8)(torch.randn(3, 1, 32, 32))
    with pytest.raises(ValueError):
        dcgan.Generator(0, 8)
    with pytest.raises(ValueError):
        dcgan.Discriminator(ndf=2.5)


# --------------------------------------------------------------------------- initialization

def test_dcgan_weights_init_statistics():
    net = nn.Sequential(nn.Conv2d(16, 128, 3), nn.BatchNorm2d(4000), nn.ReLU(),
                        nn.ConvTranspose2d(128, 16, 3, bias=False))
    net.apply(dcgan.dcgan_weights_init)
    for conv in (net[0], net[3]):
        w = conv.weight.detach().double().flatten()
        n = w.numel()
        assert abs(w.mean().item()) < 5 * 0.02 / math.sqrt(n)
        assert w.std().item() == pytest.approx(0.02, rel=5 / math.sqrt(2 * n))
        # normal, not uniform: P(|w| > 2 sigma) = 4.55 % for a Gaussian, 0 for a uniform of that std
        assert (w.abs() > 0.04).double().mean().item() == pytest.approx(0.0455, abs=0.006)
    assert net[0].bias.abs().max() == 0 and net[3].bias is None
    scale = net[1].weight.detach().double()
    assert abs(scale.mean().item() - 1) < 5 * 0.02 / math.sqrt(4000)
    assert scale.std().item() == pytest.approx(0.02, rel=0.12)
    assert net[1].bias.abs().max() == 0


def test_dcgan_weights_init_ignores_other_modules():
    relu, seq = nn.ReLU(), nn.Sequential()
    assert dcgan.dcgan_weights_init(relu) is None
    dcgan.dcgan_weights_init(seq)


# --------------------------------------------------------------------------- losses

def _bernoulli_nll(logits, label):
    """-log p(label) under Bernoulli(logits), from torch.distributions: an independent oracle."""
    dist = torch.distributions.Bernoulli(logits=logits.double())
    return -dist.log_prob(torch.full_like(logits.double(), float(label))).mean()


@pytest.mark.parametrize("scale", [1.0, 10.0, 60.0])
def test_losses_match_bernoulli_log_likelihoods(scale):
    g = torch.Generator().manual_seed(0)
    r, f = torch.randn(9, generator=g) * scale, torch.randn(4, generator=g) * scale
    d = dcgan.discriminator_loss(r, f)
    assert d.shape == ()
    assert d.item() == pytest.approx((_bernoulli_nll(r, 1) + _bernoulli_nll(f, 0)).item(), rel=1e-5)
    assert dcgan.generator_loss(f).item() == pytest.approx(_bernoulli_nll(f, 1).item(), rel=1e-5)


def test_equilibrium_values_and_non_saturating_gradient():
    assert dcgan.discriminator_loss(torch.zeros(3), torch.zeros(5)).item() == pytest.approx(2 * math.log(2))
    assert dcgan.generator_loss(torch.zeros(4)).item() == pytest.approx(math.log(2))
    f = torch.full((4,), -30.0, requires_grad=True)
    dcgan.generator_loss(f).backward()
    torch.testing.assert_close(f.grad, torch.full((4,), -0.25))  # finite-difference-free: d/dl softplus(-l) = -1


def test_losses_gradients_against_finite_differences():
    r = torch.randn(5, dtype=torch.float64, requires_grad=True)
    f = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: dcgan.discriminator_loss(a, b), (r, f))
    assert torch.autograd.gradcheck(lambda b: dcgan.generator_loss(b), (f,))


def test_losses_reject_bad_input():
    with pytest.raises(ValueError):
        dcgan.discriminator_loss(torch.zeros(3, 1), torch.zeros(3))
    with pytest.raises(ValueError):
        dcgan.generator_loss(torch.zeros(0))
    with pytest.raises(TypeError):
        dcgan.generator_loss(torch.zeros(3, dtype=torch.long))


# --------------------------------------------------------------------------- the training step

def _tiny(seed=0):
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(3, 784), nn.Tanh(), nn.Unflatten(1, (1, 28, 28)))
    D = nn.Sequential(nn.Flatten(), nn.Linear(784, 1), nn.Flatten(0))
    return G, D


def _manual_step(G, D, real, z, lr):
    """Alternating SGD step computed with torch.autograd.grad on copies (the oracle)."""
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    fake = G(z).detach()
    d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
    with torch.no_grad():
        for p, g in zip(D.parameters(), torch.autograd.grad(d_loss, list(D.parameters()))):
            p -= lr * g
    g_loss = F.softplus(-D(G(z))).mean()
    with torch.no_grad():
        for p, g in zip(G.parameters(), torch.autograd.grad(g_loss, list(G.parameters()))):
            p -= lr * g
    return G, D, d_loss.item(), g_loss.item()


def test_gan_train_step_matches_a_manual_step_and_ignores_stale_gradients():
    G, D = _tiny()
    real, z = torch.rand(6, 1, 28, 28) * 2 - 1, torch.randn(6, 3)
    G_ref, D_ref, d_ref, g_ref = _manual_step(G, D, real, z, 0.1)
    for p in list(G.parameters()) + list(D.parameters()):
        p.grad = torch.randn_like(p) * 100          # leftovers must not matter
    d_loss, g_loss = dcgan.gan_train_step(G, D, torch.optim.SGD(G.parameters(), 0.1),
                                          torch.optim.SGD(D.parameters(), 0.1), real, z)
    assert isinstance(d_loss, float) and isinstance(g_loss, float)
    assert d_loss == pytest.approx(d_ref, rel=1e-5) and g_loss == pytest.approx(g_ref, rel=1e-5)
    for mine, ref in [(G, G_ref), (D, D_ref)]:
        for p, q in zip(mine.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q)
    assert all(p.grad is None for p in D.parameters())  # no stale gradients left in D


def test_discriminator_step_does_not_reach_the_generator():
    G, D = _tiny(1)
    passes = []
    for p in G.parameters():
        p.register_hook(lambda grad: passes.append(1))
    before = [p.detach().clone() for p in G.parameters()]
    opt_g = torch.optim.SGD(G.parameters(), lr=0.0)   # G cannot move: any change would come from D's step
    dcgan.gan_train_step(G, D, opt_g, torch.optim.SGD(D.parameters(), 0.1),
                         torch.rand(4, 1, 28, 28), torch.randn(4, 3))
    assert len(passes) == len(before)                 # one backward pass through G: the G step's
    for p, q in zip(G.parameters(), before):
        torch.testing.assert_close(p.detach(), q)


# --------------------------------------------------------------------------- helpers

def test_slerp_keeps_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
    path = dcgan.slerp(a, b, 9)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b, atol=1e-5, rtol=1e-5)
    b = b * a.norm() / b.norm()                       # equal norms: the whole arc keeps them
    assert torch.allclose(dcgan.slerp(a, b, 7).norm(dim=1), a.norm().expand(7), rtol=1e-4)


def test_gan_range_round_trip():
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(dcgan.from_gan_range(dcgan.to_gan_range(x)), x)


def test_train_gan_records_losses_and_snapshots():
    x, _ = load_mnist("train", limit=128)
    G, D = dcgan.make_dcgan(nz=16, ngf=4, ndf=4)
    fixed = torch.randn(8, 16)
    history = dcgan.train_gan(G, D, x, 2, batch_size=32, fixed_z=fixed, progress=False, device="cpu")
    assert len(history.d_losses) == len(history.g_losses) == 8 and history.steps_per_epoch == 4
    assert len(history.snapshots) == 3 and history.snapshot_epochs == [0.0, 1.0, 2.0]
    assert history.snapshots[-1].shape == (8, 1, 28, 28)
    assert all(math.isfinite(v) for v in history.d_losses + history.g_losses)
    assert G.training  # generate() restored the mode


def test_train_gan_gives_both_players_adam_with_the_betas_asked_for():
    x, _ = load_mnist("train", limit=64)
    seen = []

    def spy(G, D, opt_g, opt_d, real, z):
        seen.append([(type(o), o.param_groups[0]["lr"], o.param_groups[0]["betas"])
                     for o in (opt_g, opt_d)])
        return dcgan.gan_train_step(G, D, opt_g, opt_d, real, z)
    G, D = dcgan.make_dcgan(nz=8, ngf=4, ndf=4)
    dcgan.train_gan(G, D, x, 1, batch_size=32, lr=1e-3, beta1=0.5, beta2=0.99, step=spy,
                    progress=False, device="cpu")
    assert seen == [[(torch.optim.Adam, 1e-3, (0.5, 0.99))] * 2] * 2
    seen.clear()
    dcgan.train_gan(G, D, x, 1, batch_size=64, step=spy, progress=False, device="cpu")
    assert seen == [[(torch.optim.Adam, 2e-4, (0.5, 0.999))] * 2]   # Radford et al.'s defaults


@pytest.mark.gpu
def test_step_and_generate_on_cuda():
    G, D = dcgan.make_dcgan(nz=16, ngf=8, ndf=8, device="cuda")
    out = dcgan.gan_train_step(G, D, dcgan.adam_gan(G), dcgan.adam_gan(D),
                               torch.rand(4, 1, 28, 28, device="cuda") * 2 - 1,
                               torch.randn(4, 16, device="cuda"))
    assert all(isinstance(v, float) for v in out)
    assert dcgan.generate(G, torch.randn(3, 16, device="cuda")).device.type == "cuda"


@pytest.mark.gpu
def test_colour_networks_and_nearest_neighbours_on_cuda():
    G, D = dcgan.ColourGenerator(16, 8).cuda(), dcgan.ColourDiscriminator(8).cuda()
    out = dcgan.gan_train_step(G, D, dcgan.adam_gan(G), dcgan.adam_gan(D),
                               torch.rand(4, 3, 32, 32, device="cuda") * 2 - 1,
                               torch.randn(4, 16, device="cuda"))
    assert all(isinstance(v, float) for v in out)
    samples = dcgan.generate(G, torch.randn(3, 16, device="cuda"))
    distances, indices = dcgan.nearest_neighbours(samples, torch.rand(10, 3, 32, 32))
    assert distances.device.type == indices.device.type == "cuda" and distances.shape == (3,)


# --------------------------------------------------------------------------- quality, fast mode

@pytest.mark.slow
def test_reference_dcgan_learns_in_fast_mode():
    """A short run (2 epochs on the fallback digits, width 16) moves the Fréchet distance far
    from the untrained generator's and towards the real-data floor."""
    from genlab.quality import sample_quality
    torch.manual_seed(0)
    x, _ = load_mnist("train")
    G, D = dcgan.make_dcgan(nz=64, ngf=16, ndf=16)
    z = torch.randn(500, 64, generator=torch.Generator().manual_seed(2))
    before = sample_quality(dcgan.generate(G, z), value_range=(-1, 1))
    dcgan.train_gan(G, D, x, 2, batch_size=64, lr=5e-4, progress=False, device="cpu")
    after = sample_quality(dcgan.generate(G, z), value_range=(-1, 1))
    print(f"untrained: {before}\nafter 2 epochs: {after}")
    assert after.fd < before.fd / 3
    assert (after.coverage > 0.01).sum() >= 6    # more than a few digit classes already
    assert after.confidence > before.confidence


# --------------------------------------------------------------------------- the colour extension

@pytest.mark.parametrize("nz, ngf, channels, n", [(100, 64, 3, 2), (16, 8, 3, 5), (10, 4, 1, 1)])
def test_colour_generator_shape_range_and_rules(nz, ngf, channels, n):
    G = dcgan.ColourGenerator(nz, ngf, channels)
    out = G(torch.randn(n, nz))
    assert out.shape == (n, channels, 32, 32)
    assert out.min() >= -1 and out.max() <= 1 and out.min() < 0 < out.max()
    G.eval()
    z = torch.randn(2, nz)
    torch.testing.assert_close(G(z[:, :, None, None]), G(z))
    layers = list(G.modules())
    tconvs = [m for m in layers if isinstance(m, nn.ConvTranspose2d)]
    assert len(tconvs) == 4 and [m.stride for m in tconvs] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert [m.num_features for m in layers if isinstance(m, nn.BatchNorm2d)] == [4 * ngf, 2 * ngf, ngf]
    assert isinstance(layers[-1], nn.Tanh) and tconvs[-1].out_channels == channels


def test_colour_discriminator_shape_and_rules():
    D = dcgan.ColourDiscriminator(8)
    assert D(torch.randn(5, 3, 32, 32)).shape == (5,)
    assert D.eval()(torch.randn(1, 3, 32, 32)).shape == (1,)
    layers = list(D.modules())
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    assert [m.stride for m in convs] == [(2, 2)] * 3 + [(1, 1)] and convs[0].in_channels == 3
    assert all(m.negative_slope == 0.2 for m in layers if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Sigmoid, nn.ReLU)) for m in layers)
    assert isinstance(layers[layers.index(convs[0]) + 1], nn.LeakyReLU)  # no batch norm on the input
    assert dcgan.ColourDiscriminator(4, channels=1)(torch.randn(2, 1, 32, 32)).shape == (2,)


def test_colour_networks_reject_bad_input():
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        dcgan.ColourDiscriminator(8)(torch.randn(2, 1, 28, 28))   # grey digits, not colour images
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        dcgan.ColourDiscriminator(8)(torch.randn(3, 32, 32))      # one image without a batch axis
    with pytest.raises(TypeError):
        dcgan.ColourDiscriminator(8)([[0.0]])
    with pytest.raises(ValueError, match=r"\(N, 100\)"):
        dcgan.ColourGenerator()(torch.randn(2, 64))
    with pytest.raises(ValueError, match="channels"):
        dcgan.ColourGenerator(channels=0)
    with pytest.raises(ValueError, match="ndf"):
        dcgan.ColourDiscriminator(ndf=True)


def test_nearest_neighbours_against_brute_force():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(50, 3, 4, 4, generator=g)
    samples = torch.rand(7, 3, 4, 4, generator=g)
    samples[2] = train[31]                       # an exact copy of a training image
    distances, indices = dcgan.nearest_neighbours(samples, train, chunk=8)  # chunks of 8
    brute = ((samples[:, None] - train[None]) ** 2).sum((2, 3, 4)).sqrt()
    torch.testing.assert_close(distances, brute.min(1).values, atol=1e-5, rtol=1e-5)
    assert torch.equal(indices, brute.argmin(1)) and indices.dtype == torch.long
    assert indices[2] == 31 and distances[2] == 0
    same, _ = dcgan.nearest_neighbours(samples, train)  # one chunk: the same answer
    torch.testing.assert_close(same, distances, atol=1e-5, rtol=1e-5)


def test_nearest_neighbours_rejects_bad_input():
    with pytest.raises(ValueError, match="same"):
        dcgan.nearest_neighbours(torch.rand(2, 3, 32, 32), torch.rand(5, 1, 28, 28))
    with pytest.raises(TypeError, match="floating-point"):
        dcgan.nearest_neighbours(torch.rand(2, 1, 4, 4), torch.zeros(5, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="empty"):
        dcgan.nearest_neighbours(torch.rand(2, 1, 4, 4), torch.rand(0, 1, 4, 4))
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        dcgan.nearest_neighbours(torch.rand(2, 1, 4, 4), torch.rand(5, 1, 4, 4), chunk=0)


def test_colour_spread_against_a_loop():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 5, 4, generator=g)
    means = torch.tensor([[images[i, c].sum().item() / 20 for c in range(3)] for i in range(6)])
    expected = torch.tensor([statistics.stdev(means[:, c].tolist()) for c in range(3)])
    torch.testing.assert_close(dcgan.colour_spread(images), expected, atol=1e-6, rtol=1e-5)
    tinted = torch.rand(1, 3, 5, 4, generator=g).repeat(6, 1, 1, 1)   # one picture, six times
    torch.testing.assert_close(dcgan.colour_spread(tinted), torch.zeros(3), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="at least 2 images"):
        dcgan.colour_spread(images[:1])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        dcgan.colour_spread(images[0])
    with pytest.raises(TypeError, match="floating-point"):
        dcgan.colour_spread(images.to(torch.uint8))


@pytest.mark.slow
def test_colour_dcgan_learns_the_colours_of_its_data():
    """Two epochs on the coloured fallback digits: the mean image moves towards the data's, and
    the samples' colours start to vary from image to image as the data's do."""
    from genlab.data import load_images
    torch.manual_seed(0)
    x, _ = load_images("cifar10", "train", quiet=True)
    G, D = dcgan.ColourGenerator(32, 16), dcgan.ColourDiscriminator(16)
    G.apply(dcgan.dcgan_weights_init)
    D.apply(dcgan.dcgan_weights_init)
    z = torch.randn(500, 32, generator=torch.Generator().manual_seed(2))
    real = dcgan.to_gan_range(x[:500])

    def gap(fake):
        return (fake.mean(0) - real.mean(0)).abs().mean().item()

    spread = dcgan.colour_spread
    before = dcgan.generate(G, z)
    dcgan.train_gan(G, D, x, 2, batch_size=64, lr=5e-4, progress=False, device="cpu")
    after = dcgan.generate(G, z)
    print(f"mean-image gap: {gap(before):.3f} -> {gap(after):.3f}; colour spread: "
          f"{spread(before)} -> {spread(after)} (data {spread(real)})")
    assert gap(after) < gap(before) / 2
    assert (spread(after) > spread(real) / 5).all()   # untrained: ~1e-5
