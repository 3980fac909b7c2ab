"""Lab 07 autograder tests are fair and discriminating.

For every exercise of notebooks/07_dcgan.py: the model solution, the library's reference and
correct alternative implementations pass its test cell (visible and hidden); the stub, objects
that claim to equal everything, and typical mistakes fail, each mistake with a message that
names it.
"""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab import dcgan, labs
from genlab.testing import AlwaysEqual, EqualTensor, LabHarness, stub

LAB = labs.get("07_dcgan")
SOURCE = LAB.source(Path(__file__).resolve().parents[1])
EXERCISES = LAB.exercise_names
POINTS = LAB.points


@pytest.fixture(scope="module")
def lab():
    return LabHarness(SOURCE)


# ------------------------------------------- model solutions (common checks: test_lab_cells.py)

def test_gan_train_step_cell_restores_the_loss_functions(lab):
    ns = lab.namespace()
    mine = ns["discriminator_loss"], ns["generator_loss"]
    lab.run("test_gan_train_step", namespace=ns)
    assert (ns["discriminator_loss"], ns["generator_loss"]) == mine


def test_model_solutions_agree_with_the_reference(lab):
    ns = lab.namespace()
    r, f = torch.randn(7), torch.randn(5)
    torch.testing.assert_close(ns["discriminator_loss"](r, f), dcgan.discriminator_loss(r, f))
    torch.testing.assert_close(ns["generator_loss"](f), dcgan.generator_loss(f))
    torch.manual_seed(0)
    mine = ns["Generator"](nz=16, ngf=8)
    torch.manual_seed(0)
    ref = dcgan.Generator(nz=16, ngf=8)
    z = torch.randn(4, 16)
    torch.testing.assert_close(mine(z), ref(z))
    torch.manual_seed(0)
    mine_d = ns["Discriminator"](ndf=8)
    torch.manual_seed(0)
    ref_d = dcgan.Discriminator(ndf=8)
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(mine_d(x), ref_d(x))


# --------------------------------------------------------------------------- stubs and cheats

class _StubModule(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        raise NotImplementedError()


@pytest.mark.parametrize("name", EXERCISES)
def test_stub_fails_with_a_clear_message(lab, name):
    unwritten = _StubModule if name in ("Generator", "Discriminator") else stub
    msg = lab.fails_with(f"test_{name}", "not implemented yet", **{name: unwritten})
    assert "Traceback" not in msg


@pytest.mark.parametrize("name", ["discriminator_loss", "generator_loss", "gan_train_step"])
def test_always_equal_objects_fail(lab, name):
    lab.fails_with(f"test_{name}", "", **{name: lambda *a, **k: AlwaysEqual()})
    lab.fails_with(f"test_{name}", "", **{name: lambda *a, **k: torch.zeros(()).as_subclass(EqualTensor)})


def test_always_equal_networks_fail(lab):
    class Cheat(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return AlwaysEqual()
    lab.fails_with("test_Generator", "expected a torch.Tensor", Generator=Cheat)
    lab.fails_with("test_Discriminator", "expected a torch.Tensor", Discriminator=Cheat)


def test_init_that_does_nothing_fails(lab):
    lab.fails_with("test_dcgan_weights_init", "default initialization",
                   dcgan_weights_init=lambda module: None)


# --------------------------------------------------------------------------- exercise 1-2: losses

def _bce(logits, label):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(label)))


D_LOSS_MISTAKES = [
    ("the labels swapped", lambda r, f: _bce(r, 0) + _bce(f, 1)),
    ("the mean of the two terms", lambda r, f: (_bce(r, 1) + _bce(f, 0)) / 2),
    ("one BCE over the concatenated batch", lambda r, f: F.binary_cross_entropy_with_logits(
        torch.cat([r, f]), torch.cat([torch.ones_like(r), torch.zeros_like(f)]))),
    ("sums over the batch", lambda r, f: F.binary_cross_entropy_with_logits(
        r, torch.ones_like(r), reduction="sum") + F.binary_cross_entropy_with_logits(
        f, torch.zeros_like(f), reduction="sum")),
    ("only the real term", lambda r, f: _bce(r, 1)),
    ("BCE on probabilities", lambda r, f: F.binary_cross_entropy(torch.sigmoid(r), torch.ones_like(r))
     + F.binary_cross_entropy(torch.sigmoid(f), torch.zeros_like(f))),
    ("a least-squares loss", lambda r, f: (r - 1).pow(2).mean() + f.pow(2).mean()),
    ("the minimax value V(D, G) itself", lambda r, f: -(_bce(r, 1) + _bce(f, 0))),
]


@pytest.mark.parametrize("phrase, fn", D_LOSS_MISTAKES, ids=[m[0] for m in D_LOSS_MISTAKES])
def test_discriminator_loss_mistakes_are_named(lab, phrase, fn):
    lab.fails_with("test_discriminator_loss", phrase, discriminator_loss=fn)


def test_discriminator_loss_that_loses_the_gradient_fails(lab):
    lab.fails_with("test_discriminator_loss", "carries no gradient",
                   discriminator_loss=lambda r, f: dcgan.discriminator_loss(r.detach(), f.detach()))


@pytest.mark.parametrize("variant", ["softplus", "logsigmoid", "module"])
def test_discriminator_loss_alternatives_pass(lab, variant):
    def discriminator_loss(real_logits, fake_logits):
        if variant == "softplus":
            return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        if variant == "logsigmoid":
            return -(F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean())
        bce = nn.BCEWithLogitsLoss()
        return bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
    lab.run("test_discriminator_loss", discriminator_loss=discriminator_loss)


G_LOSS_MISTAKES = [
    ("the saturating loss", lambda f: -F.softplus(f).mean()),
    ("the discriminator's fake term BCE(fake, 0)", lambda f: _bce(f, 0)),
    ("the sign flipped", lambda f: -_bce(f, 1)),
    ("a sum over the batch", lambda f: F.binary_cross_entropy_with_logits(
        f, torch.ones_like(f), reduction="sum")),
    ("BCE on probabilities", lambda f: F.binary_cross_entropy(torch.sigmoid(f), torch.ones_like(f))),
    ("a least-squares loss", lambda f: (f - 1).pow(2).mean()),
]


@pytest.mark.parametrize("phrase, fn", G_LOSS_MISTAKES, ids=[m[0] for m in G_LOSS_MISTAKES])
def test_generator_loss_mistakes_are_named(lab, phrase, fn):
    lab.fails_with("test_generator_loss", phrase, generator_loss=fn)


def test_generator_loss_alternative_passes(lab):
    lab.run("test_generator_loss", generator_loss=lambda f: -F.logsigmoid(f).mean())


# --------------------------------------------------------------------------- exercise 3: Generator

def _generator(output="tanh", bn_out=False, fixed_width=None, start=7, use_all=True):
    class Generator(nn.Module):
        def __init__(self, nz=64, ngf=64):
            super().__init__()
            self.nz = nz
            w = fixed_width or ngf
            first = (nn.ConvTranspose2d(nz, 2 * w, 7, 1, 0, bias=False) if start == 7 else
                     nn.ConvTranspose2d(nz, 2 * w, 8, 1, 0, bias=False))
            last = [nn.ConvTranspose2d(w, 1, 4, 2, 1)]
            if bn_out:
                last.append(nn.BatchNorm2d(1))
            last += {"tanh": [nn.Tanh()], "sigmoid": [nn.Sigmoid()], "none": []}[output]
            self.net = nn.Sequential(first, nn.BatchNorm2d(2 * w), nn.ReLU(),
                                     nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),
                                     nn.BatchNorm2d(w), nn.ReLU(), *last)
            self.unused = nn.Linear(3, 3)
            if use_all:
                del self.unused

        def forward(self, z):
            return self.net(z.view(len(z), self.nz, 1, 1))
    return Generator


GENERATOR_MISTAKES = [
    ("looks like a sigmoid at the output", dict(output="sigmoid")),
    ("pixel values outside [-1, 1]", dict(output="none")),
    ("batch norm on the 1-channel output layer", dict(bn_out=True)),
    ("use ngf as the number of feature maps", dict(fixed_width=16)),
    ("expected shape", dict(start=8)),
    ("no gradient reaches", dict(use_all=False)),
]


@pytest.mark.parametrize("phrase, flags", GENERATOR_MISTAKES, ids=[m[0] for m in GENERATOR_MISTAKES])
def test_generator_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_Generator", phrase, Generator=_generator(**flags))


def test_generator_mixing_the_batch_fails(lab):
    class Generator(dcgan.Generator):
        def forward(self, z):
            return super().forward(z.roll(1, dims=0))
    lab.fails_with("test_Generator", "each image must depend on its own code", Generator=Generator)


def test_generator_without_transposed_convs_fails(lab):
    class Generator(nn.Module):
        def __init__(self, nz=64, ngf=64):
            super().__init__()
            self.nz = nz
            self.net = nn.Sequential(nn.Linear(nz, ngf * 49), nn.BatchNorm1d(ngf * 49), nn.ReLU(),
                                     nn.Unflatten(1, (ngf, 7, 7)), nn.Upsample(scale_factor=4),
                                     nn.Conv2d(ngf, 1, 3, padding=1), nn.Tanh())

        def forward(self, z):
            return self.net(z)
    lab.fails_with("test_Generator", "no nn.ConvTranspose2d", Generator=Generator)


def test_generator_alternatives_pass(lab):
    class LinearFirst(nn.Module):
        """Fully connected projection to 7x7 maps, then two transposed convolutions."""

        def __init__(self, nz=64, ngf=64):
            super().__init__()
            self.nz = nz
            self.project = nn.Sequential(nn.Linear(nz, 2 * ngf * 49, bias=False),
                                         nn.BatchNorm1d(2 * ngf * 49), nn.ReLU())
            self.up = nn.Sequential(nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False),
                                    nn.BatchNorm2d(ngf), nn.ReLU(),
                                    nn.ConvTranspose2d(ngf, 1, 4, 2, 1))
            self.ngf = ngf

        def forward(self, z):
            h = self.project(z).view(-1, 2 * self.ngf, 7, 7)
            return torch.tanh(self.up(h))

    class FourByFour(nn.Module):
        """4x4 -> 7x7 -> 14x14 -> 28x28, as many MNIST DCGANs do."""

        def __init__(self, nz=64, ngf=64):
            super().__init__()
            self.nz = nz
            self.main = nn.Sequential(
                nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
                nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False), nn.Tanh())

        def forward(self, z):
            return self.main(z[:, :, None, None])

    for cls in (LinearFirst, FourByFour):
        lab.run("test_Generator", Generator=cls)


# --------------------------------------------------------------------------- exercise 4: Discriminator

def _discriminator(sigmoid=False, keep_dim=False, act="leaky", slope=0.2, pool=False, squeeze=False,
                   fixed_width=None, detach=False):
    class Discriminator(nn.Module):
        def __init__(self, ndf=64):
            super().__init__()
            w = fixed_width or ndf
            make = (lambda: nn.LeakyReLU(slope)) if act == "leaky" else nn.ReLU
            down = ([nn.Conv2d(1, w, 3, 1, 1), nn.MaxPool2d(2)] if pool else [nn.Conv2d(1, w, 4, 2, 1)])
            layers = down + [make(), nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w),
                             make(), nn.Conv2d(2 * w, 1, 7)]
            if sigmoid:
                layers.append(nn.Sigmoid())
            self.net = nn.Sequential(*layers)

        def forward(self, x):
            out = self.net(x.detach() if detach else x)
            if keep_dim:
                return out.view(-1, 1)
            return out.squeeze() if squeeze else out.view(-1)
    return Discriminator


DISCRIMINATOR_MISTAKES = [
    ("returns probabilities", dict(sigmoid=True)),
    ("expected logits of shape", dict(keep_dim=True)),
    ("no LeakyReLU", dict(act="relu")),
    ("a slope other than 0.2", dict(slope=0.01)),
    ("it uses pooling", dict(pool=True)),
    ("use .view(-1), not .squeeze()", dict(squeeze=True)),
    ("use ndf as the number of feature maps", dict(fixed_width=16)),
    ("no gradient flows back to the input", dict(detach=True)),
]


@pytest.mark.parametrize("phrase, flags", DISCRIMINATOR_MISTAKES,
                         ids=[m[0] for m in DISCRIMINATOR_MISTAKES])
def test_discriminator_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_Discriminator", phrase, Discriminator=_discriminator(**flags))


def test_discriminator_with_functional_sigmoid_fails(lab):
    class Discriminator(dcgan.Discriminator):
        def forward(self, x):
            return torch.sigmoid(super().forward(x))
    lab.fails_with("test_Discriminator", "returns probabilities", Discriminator=Discriminator)


def test_discriminator_alternatives_pass(lab):
    class Functional(nn.Module):
        """Three strided convs, F.leaky_relu in forward, a linear read-out."""

        def __init__(self, ndf=64):
            super().__init__()
            self.c1 = nn.Conv2d(1, ndf, 4, 2, 1)
            self.c2 = nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False)
            self.b2 = nn.BatchNorm2d(ndf * 2)
            self.c3 = nn.Conv2d(ndf * 2, ndf * 4, 3, 2, 1, bias=False)
            self.b3 = nn.BatchNorm2d(ndf * 4)
            self.out = nn.Linear(ndf * 4 * 16, 1)

        def forward(self, x):
            h = F.leaky_relu(self.c1(x), 0.2)
            h = F.leaky_relu(self.b2(self.c2(h)), negative_slope=0.2)
            h = F.leaky_relu(self.b3(self.c3(h)), 0.2, inplace=True)
            return self.out(h.flatten(1)).flatten()

    lab.run("test_Discriminator", Discriminator=Functional)
    lab.run("test_Discriminator", Discriminator=_discriminator())


# --------------------------------------------------------------------------- exercise 5: init

def _init(std=0.02, dist="normal", bn_mean=1.0, bn_std=0.02, types=(nn.Conv2d, nn.ConvTranspose2d),
          zero_bias=True, bn_bias=0.0, skip_none_check=False):
    def dcgan_weights_init(module):
        if isinstance(module, types):
            if dist == "normal":
                nn.init.normal_(module.weight, 0.0, std)
            else:
                nn.init.uniform_(module.weight, -std, std)
            if zero_bias and (skip_none_check or module.bias is not None):
                module.bias.data.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, bn_mean, bn_std)
            nn.init.constant_(module.bias, bn_bias)
    return dcgan_weights_init


INIT_MISTAKES = [
    ("0.02 used as the variance", dict(std=0.02 ** 0.5)),
    ("a uniform distribution", dict(dist="uniform")),
    ("a uniform distribution with standard deviation 0.02", dict(dist="uniform", std=0.02 * 3 ** 0.5)),
    ("standard deviation 0.2", dict(std=0.2)),
    ("batch-norm weights centred at 0", dict(bn_mean=0.0)),
    ("batch-norm weights left at their default 1", dict(bn_std=0.0)),
    ("make sure ConvTranspose2d layers are initialized too", dict(types=(nn.Conv2d,))),
    ("set the biases of conv layers to 0", dict(zero_bias=False)),
    ("set batch-norm biases (shifts) to 0", dict(bn_bias=0.1)),
    ("raised AttributeError", dict(skip_none_check=True)),
]


@pytest.mark.parametrize("phrase, flags", INIT_MISTAKES, ids=[m[0] for m in INIT_MISTAKES])
def test_init_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_dcgan_weights_init", phrase, dcgan_weights_init=_init(**flags))


def test_init_with_python_random_fails(lab):
    import random

    def dcgan_weights_init(module):
        _init()(module)
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            with torch.no_grad():
                module.weight.copy_(torch.tensor([random.gauss(0, 0.02) for _ in
                                                  range(module.weight.numel())]).view_as(module.weight))
    lab.fails_with("test_dcgan_weights_init", "the same random state gave different weights",
                   dcgan_weights_init=dcgan_weights_init)


def test_init_alternative_by_class_name_passes(lab):
    def dcgan_weights_init(m):
        # the PyTorch DCGAN tutorial's version, plus zeroing conv biases
        classname = m.__class__.__name__
        if classname.find("Conv") != -1:
            m.weight.data.normal_(0.0, 0.02)
            if m.bias is not None:
                m.bias.data.fill_(0)
        elif classname.find("BatchNorm") != -1:
            m.weight.data.normal_(1.0, 0.02)
            m.bias.data.fill_(0)
    lab.run("test_dcgan_weights_init", dcgan_weights_init=dcgan_weights_init)


# --------------------------------------------------------------------------- exercise 6: the step

def _step(detach=True, zero_d=True, zero_g=True, g_first=False, as_tensor=False, step_d=True,
          step_g=True):
    def gan_train_step(G, D, opt_g, opt_d, real, z):
        d_fn, g_fn = dcgan.discriminator_loss, dcgan.generator_loss
        if g_first:
            opt_g.zero_grad()
            g_loss = g_fn(D(G(z)))
            g_loss.backward()
            opt_g.step()
            opt_d.zero_grad()
            d_loss = d_fn(D(real), D(G(z).detach()))
            d_loss.backward()
            opt_d.step()
        else:
            fake = G(z)
            if zero_d:
                opt_d.zero_grad()
            d_loss = d_fn(D(real), D(fake.detach() if detach else fake))
            d_loss.backward(retain_graph=True)
            if step_d:
                opt_d.step()
            if zero_g:
                opt_g.zero_grad()
            g_loss = g_fn(D(fake))
            g_loss.backward()
            if step_g:
                opt_g.step()
        if as_tensor:
            return d_loss.detach(), g_loss.detach()
        return d_loss.item(), g_loss.item()
    return gan_train_step


def _step_reusing_old_logits():
    """G's backward done before D's update and its optimizer step after it: the generator
    follows gradients through the old discriminator."""
    def gan_train_step(G, D, opt_g, opt_d, real, z):
        fake = G(z)
        opt_g.zero_grad()
        g_loss = dcgan.generator_loss(D(fake))
        g_loss.backward()
        opt_d.zero_grad()
        d_loss = dcgan.discriminator_loss(D(real), D(fake.detach()))
        d_loss.backward()
        opt_d.step()
        opt_g.step()
        return d_loss.item(), g_loss.item()
    return gan_train_step


STEP_MISTAKES = [
    ("fake.detach()", dict(detach=False, zero_g=True)),
    ("the discriminator's loss back-propagated into the generator", dict(detach=False, zero_g=False)),
    ("fake.detach()", dict(detach=False, zero_g=False)),
    ("call opt_d.zero_grad() before the discriminator's backward", dict(zero_d=False)),
    ("call opt_g.zero_grad() before the generator's backward", dict(zero_g=False)),
    ("the generator updated before the discriminator", dict(g_first=True)),
    ("should be a Python float", dict(as_tensor=True)),
    ("the discriminator not updated", dict(step_d=False)),
    ("the generator not updated", dict(step_g=False)),
]


@pytest.mark.parametrize("phrase, flags", STEP_MISTAKES, ids=[m[0] for m in STEP_MISTAKES])
def test_gan_train_step_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_gan_train_step", phrase, gan_train_step=_step(**flags))


def test_gan_train_step_with_stale_discriminator_output_is_named(lab):
    lab.fails_with("test_gan_train_step", "from before its update",
                   gan_train_step=_step_reusing_old_logits())


def test_gan_train_step_helper_without_mistakes_passes(lab):
    lab.run("test_gan_train_step", gan_train_step=_step())


def test_gan_train_step_alternatives_pass(lab):
    def twice(G, D, opt_g, opt_d, real, z):
        """G(z) computed twice: under no_grad for D, with gradients for G."""
        with torch.no_grad():
            fake = G(z)
        D.zero_grad(set_to_none=False)
        d_loss = dcgan.discriminator_loss(D(real), D(fake))
        d_loss.backward()
        opt_d.step()
        G.zero_grad()
        for p in D.parameters():
            p.requires_grad_(False)     # no gradients for D in G's step
        g_loss = dcgan.generator_loss(D(G(z)))
        g_loss.backward()
        for p in D.parameters():
            p.requires_grad_(True)
        opt_g.step()
        return d_loss.item(), g_loss.item()

    def with_reference(G, D, opt_g, opt_d, real, z):
        return dcgan.gan_train_step(G, D, opt_g, opt_d, real, z)

    for fn in (twice, with_reference):
        lab.run("test_gan_train_step", gan_train_step=fn)
