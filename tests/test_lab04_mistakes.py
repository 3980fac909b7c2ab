"""Lab 04 autograder tests are fair and discriminating.

For every exercise of notebooks/04_vae.py: the model solution, the library's reference and correct
alternative implementations pass its test cell (visible and hidden); the stub, objects that claim
to equal everything, and typical mistakes fail, each mistake with a message that names it.
"""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from genlab import labs, vae
from genlab.testing import EqualTensor, LabHarness, stub

LAB = labs.get("04_vae")
SOURCE = LAB.source(Path(__file__).resolve().parents[1])
EXERCISES = LAB.exercise_names
POINTS = LAB.points


@pytest.fixture(scope="module")
def lab():
    return LabHarness(SOURCE)


# ------------------------------------------- model solutions (common checks: test_lab_cells.py)

def test_model_solutions_agree_with_the_reference(lab):
    ns = lab.namespace()
    u1, u2 = 1 - torch.rand(50, dtype=torch.float64), torch.rand(50, dtype=torch.float64)
    for mine, ref in zip(ns["box_muller"](u1, u2), vae.box_muller(u1, u2)):
        torch.testing.assert_close(mine, ref)
    mu, logvar, eps = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(ns["reparameterize"](mu, logvar, eps), vae.reparameterize(mu, logvar, eps))
    torch.testing.assert_close(ns["kl_to_standard_normal"](mu, logvar), vae.kl_to_standard_normal(mu, logvar))
    logits, x = torch.randn(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    for mine, ref in zip(ns["elbo_loss"](logits, x, mu, logvar, 2.0), vae.elbo_loss(logits, x, mu, logvar, 2.0)):
        torch.testing.assert_close(mine, ref)
    torch.manual_seed(0)
    model = ns["VAE"](5)
    torch.manual_seed(0)
    reference = vae.VAE(5)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}
    reference.load_state_dict(model.state_dict())
    x = torch.rand(3, 1, 28, 28)
    for mine, ref in zip(model.encode(x), reference.encode(x)):
        torch.testing.assert_close(mine, ref)
    torch.testing.assert_close(ns["sample_prior"](model, 4, torch.Generator().manual_seed(1)),
                               vae.sample_prior(reference, 4, torch.Generator().manual_seed(1)))
    torch.testing.assert_close(ns["interpolate"](model, x[0], x[1], 6),
                               vae.interpolate(reference, x[0], x[1], 6))
    x_hat = torch.rand(3, 1, 28, 28)
    for sigma in (0.3, torch.full((1, 1, 28, 28), 0.2)):
        torch.testing.assert_close(ns["gaussian_nll"](x, x_hat, sigma), vae.gaussian_nll(x, x_hat, sigma))


# --------------------------------------------------------------------------- stubs and cheats

def _cheat(*args, **kwargs):
    return torch.zeros(1).as_subclass(EqualTensor)


@pytest.mark.parametrize("name", EXERCISES)
def test_stub_fails_with_a_clear_message(lab, name):
    if name == "VAE":
        class VAE(nn.Module):
            def __init__(self, latent_dim=20):
                super().__init__()
                self.latent_dim = latent_dim
                raise NotImplementedError()
        unwritten = VAE
    else:
        unwritten = stub
    msg = lab.fails_with(f"test_{name}", "not implemented yet", **{name: unwritten})
    assert "Traceback" not in msg


@pytest.mark.parametrize("name", ["reparameterize", "kl_to_standard_normal", "gaussian_nll",
                                  "sample_prior", "interpolate"])
def test_always_equal_tensors_fail(lab, name):
    lab.fails_with(f"test_{name}", "tensor subclass", **{name: _cheat})


def test_always_equal_tuples_fail(lab):
    lab.fails_with("test_box_muller", "tensor subclass", box_muller=lambda u1, u2: (_cheat(), _cheat()))
    lab.fails_with("test_elbo_loss", "tensor subclass",
                   elbo_loss=lambda *a, **k: (_cheat(), _cheat(), _cheat()))


# --------------------------------------------------------------------------- exercise 1: Box-Muller

def _box_muller(radius=lambda u: torch.sqrt(-2 * torch.log(u)), turn=2 * math.pi, swap_inputs=False,
                second=torch.sin, swap_outputs=False):
    def box_muller(u1, u2):
        if swap_inputs:
            u1, u2 = u2, u1
        r = radius(u1)
        z1, z2 = r * torch.cos(turn * u2), r * second(turn * u2)
        return (z2, z1) if swap_outputs else (z1, z2)
    return box_muller


BOX_MULLER_MISTAKES = [
    ("without the factor 2", dict(radius=lambda u: torch.sqrt(-torch.log(u)))),
    ("a missing square root", dict(radius=lambda u: -2 * torch.log(u))),
    ("the base-10 logarithm", dict(radius=lambda u: torch.sqrt(-2 * torch.log10(u)))),
    ("an angle of pi * u2", dict(turn=math.pi)),
    ("u1 and u2 swapped", dict(swap_inputs=True)),
    ("the same formula for both outputs", dict(second=torch.cos)),
    ("cos and sin swapped", dict(swap_outputs=True)),
]


@pytest.mark.parametrize("phrase, flags", BOX_MULLER_MISTAKES, ids=[m[0] for m in BOX_MULLER_MISTAKES])
def test_box_muller_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_box_muller", phrase, box_muller=_box_muller(**flags))


def test_box_muller_alternative_with_polar_passes(lab):
    def box_muller(u1, u2):
        z = torch.polar((-2.0 * u1.log()).sqrt(), 2 * torch.pi * u2)   # r * exp(i * theta)
        return z.real.to(u1.dtype), z.imag.to(u1.dtype)
    lab.run("test_box_muller", box_muller=box_muller)


# --------------------------------------------------------------------------- exercise 2: reparameterize

def _reparameterize(sigma=lambda lv: torch.exp(0.5 * lv), eps_shape=None, use_normal=False,
                    detach=False, sample=False, ignore_eps=False, uniform=False):
    def reparameterize(mu, logvar, eps=None):
        std = sigma(logvar)
        if use_normal:
            return torch.normal(mu, std) if eps is None else mu + std * eps
        if sample:
            return Normal(mu, std).sample() if eps is None else mu + std * eps
        if eps is None or ignore_eps:
            shape = eps_shape(mu) if eps_shape else mu.shape
            draw = torch.rand if uniform else torch.randn
            eps = draw(shape, device=mu.device, dtype=mu.dtype)
        z = mu + std * eps
        return z.detach() if detach else z
    return reparameterize


REPARAMETERIZE_MISTAKES = [
    ("treating logvar as a log standard deviation", dict(sigma=torch.exp)),
    ("logvar used as sigma itself", dict(sigma=lambda lv: lv)),
    ("the same eps for every element of the batch", dict(eps_shape=lambda mu: mu.shape[1:])),
    ("one eps per image shared by all latent dimensions", dict(eps_shape=lambda mu: (len(mu), 1))),
    ("torch.normal(mu, sigma)", dict(use_normal=True)),
    ("carries no gradient", dict(detach=True)),
    ("ignoring the eps argument", dict(ignore_eps=True)),
    ("uniform noise (torch.rand)", dict(uniform=True)),
]


@pytest.mark.parametrize("phrase, flags", REPARAMETERIZE_MISTAKES,
                         ids=[m[0] for m in REPARAMETERIZE_MISTAKES])
def test_reparameterize_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_reparameterize", phrase, reparameterize=_reparameterize(**flags))


def test_reparameterize_sampling_without_gradient_fails(lab):
    lab.fails_with("test_reparameterize", "carries no gradient",
                   reparameterize=_reparameterize(sample=True))


def test_reparameterize_alternatives_pass(lab):
    def examples_style(mu, logvar, eps=None):        # pytorch/examples vae/main.py
        std = torch.exp(0.5 * logvar)
        if eps is None:
            eps = torch.randn_like(std)
        return mu + eps * std

    def with_rsample(mu, logvar, eps=None):
        std = logvar.mul(0.5).exp()
        return Normal(mu, std).rsample() if eps is None else torch.addcmul(mu, std, eps)

    for fn in (examples_style, with_rsample):
        lab.run("test_reparameterize", reparameterize=fn)


# --------------------------------------------------------------------------- exercise 3: KL

def _kl(formula):
    def kl_to_standard_normal(mu, logvar):
        return formula(mu, logvar)
    return kl_to_standard_normal


def _terms(mu, logvar):
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


KL_MISTAKES = [
    ("treating logvar as a log standard deviation",
     lambda mu, lv: (-lv + 0.5 * (torch.exp(2 * lv) + mu.pow(2)) - 0.5).sum(-1)),
    ("a missing factor 0.5", lambda mu, lv: 2 * _terms(mu, lv).sum(-1)),
    ("averaged over the latent dimensions instead of summed", lambda mu, lv: _terms(mu, lv).mean(-1)),
    ("a sign error", lambda mu, lv: 0.5 * torch.sum(1 + lv - mu.pow(2) - lv.exp(), dim=-1)),
    ("a sign error on logvar", lambda mu, lv: 0.5 * (mu.pow(2) + lv.exp() - 1 + lv).sum(-1)),
    ("a forgotten -1", lambda mu, lv: 0.5 * (mu.pow(2) + lv.exp() - lv).sum(-1)),
    ("mu instead of mu squared", lambda mu, lv: 0.5 * (mu + lv.exp() - 1 - lv).sum(-1)),
    ("one number for the whole batch", lambda mu, lv: _terms(mu, lv).sum()),
    ("summing over the batch dimension", lambda mu, lv: _terms(mu, lv).sum(0)),
]


@pytest.mark.parametrize("phrase, formula", KL_MISTAKES, ids=[m[0] for m in KL_MISTAKES])
def test_kl_mistakes_are_named(lab, phrase, formula):
    lab.fails_with("test_kl_to_standard_normal", phrase, kl_to_standard_normal=_kl(formula))


def test_kl_alternatives_pass(lab):
    def examples_style(mu, logvar):                  # pytorch/examples: -0.5 * sum(1 + ...)
        return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)

    def with_distributions(mu, logvar):
        q = Normal(mu, torch.exp(0.5 * logvar))
        return kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)

    for fn in (examples_style, with_distributions):
        lab.run("test_kl_to_standard_normal", kl_to_standard_normal=fn)


# --------------------------------------------------------------------------- exercise 4: VAE

def _make_vae(final=None, concat=False, shared_head=False, fixed_latent=None, decode_mean=False,
              inline=False, flat=False):
    class VAE(nn.Module):
        def __init__(self, latent_dim=20):
            super().__init__()
            self.latent_dim = latent_dim
            d = fixed_latent or latent_dim
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU())
            self.fc_mu, self.fc_logvar = nn.Linear(64, d), nn.Linear(64, d)
            layers = [nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, 784)]
            if final is not None:
                layers.append(final())
            self.dec = nn.Sequential(*layers)

        def encode(self, x):
            h = self.body(x)
            mu = self.fc_mu(h)
            logvar = mu if shared_head else self.fc_logvar(h)
            return torch.cat([mu, logvar], 1) if concat else (mu, logvar)

        def decode(self, z):
            out = self.dec(z)
            return out if flat else out.view(-1, 1, 28, 28)

        def forward(self, x):
            mu, logvar = self.encode(x)
            if decode_mean:
                z = mu
            elif inline:
                z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            else:
                z = vae.reparameterize(mu, logvar)
            return self.decode(z), mu, logvar
    return VAE


VAE_MISTAKES = [
    ("a decoder ending in a sigmoid", dict(final=nn.Sigmoid)),
    ("a decoder ending in a ReLU", dict(final=nn.ReLU)),
    ("returning mu and logvar concatenated", dict(concat=True)),
    ("one layer used for both", dict(shared_head=True)),
    ("a latent size that does not follow latent_dim", dict(fixed_latent=8)),
    ("decoding mu instead of a sampled code", dict(decode_mean=True)),
    ("reshape the output to images", dict(flat=True)),
]


@pytest.mark.parametrize("phrase, flags", VAE_MISTAKES, ids=[m[0] for m in VAE_MISTAKES])
def test_vae_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_VAE", phrase, VAE=_make_vae(**flags))


def test_vae_decoding_mu_while_calling_reparameterize_is_named(lab):
    class VAE(_make_vae()):
        def forward(self, x):
            mu, logvar = self.encode(x)
            reparameterize(mu, logvar)   # noqa: F821  (the lab's function, looked up at run time)
            return self.decode(mu), mu, logvar
    ns = lab.namespace(VAE=VAE)
    VAE.forward = _in_namespace(VAE.forward, ns)
    with pytest.raises(AssertionError, match="decoding mu instead of the sampled code"):
        lab.run("test_VAE", namespace=ns)


def _in_namespace(fn, ns):
    """``fn`` with its global names looked up in the lab's namespace (as a notebook cell would)."""
    import types
    return types.FunctionType(fn.__code__, ns, fn.__name__, fn.__defaults__, fn.__closure__)


def test_vae_returning_sigma_as_logvar_is_named(lab):
    class VAE(_make_vae()):
        def forward(self, x):
            mu, logvar = self.encode(x)
            return self.decode(vae.reparameterize(mu, logvar)), mu, torch.exp(0.5 * logvar)
    lab.fails_with("test_VAE", "returning sigma", VAE=VAE)


def test_vae_that_cannot_learn_fails(lab):
    class VAE(_make_vae()):
        def encode(self, x):
            with torch.no_grad():
                h = self.body(x)
            return self.fc_mu(h), self.fc_logvar(h)

        def decode(self, z):
            return super().decode(z).detach() + 0 * z.sum()
    lab.fails_with("test_VAE", "gives no gradient to", VAE=VAE)


def test_vae_with_a_frozen_encoder_fails(lab):
    """The decoder alone lowers the loss, so it is the gradients that must be checked."""
    class VAE(_make_vae()):
        def encode(self, x):
            with torch.no_grad():
                h = self.body(x)
                return self.fc_mu(h), self.fc_logvar(h)
    lab.fails_with("test_VAE", "torch.no_grad() or .detach() inside the model", VAE=VAE)


def test_vae_alternatives_pass(lab):
    lab.run("test_VAE", VAE=_make_vae())                       # an MLP, calling reparameterize
    lab.run("test_VAE", VAE=_make_vae(inline=True))            # sampling written inline

    class MLPStyle(vae.MLPVAE):                                # pytorch/examples' layout
        def __init__(self, latent_dim=20):
            super().__init__(latent_dim)
    lab.run("test_VAE", VAE=MLPStyle)


# --------------------------------------------------------------------------- exercise 5: ELBO

def _elbo(recon_fn=None, kl_fn=None, combine=lambda r, k, b: r + b * k, returned_kl=None):
    def elbo_loss(logits, x, mu, logvar, beta=1.0):
        n = len(x)
        if recon_fn is None:
            recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
        else:
            recon = recon_fn(logits, x, n)
        kl_n = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        kl = kl_n.mean() if kl_fn is None else kl_fn(kl_n)
        loss = combine(recon, kl, beta)
        return loss, recon, (kl if returned_kl is None else returned_kl(kl, beta))
    return elbo_loss


ELBO_MISTAKES = [
    ("the reconstruction averaged over pixels instead of summed",
     dict(recon_fn=lambda l, x, n: F.binary_cross_entropy_with_logits(l, x))),
    ("the reconstruction summed over the batch",
     dict(recon_fn=lambda l, x, n: F.binary_cross_entropy_with_logits(l, x, reduction="sum"))),
    ("a sigmoid applied twice",
     dict(recon_fn=lambda l, x, n: F.binary_cross_entropy_with_logits(torch.sigmoid(l), x,
                                                                      reduction="sum") / n)),
    ("the arguments swapped",
     dict(recon_fn=lambda l, x, n: F.binary_cross_entropy_with_logits(x, l, reduction="sum") / n)),
    ("a squared error instead of the Bernoulli cross-entropy",
     dict(recon_fn=lambda l, x, n: F.mse_loss(torch.sigmoid(l), x, reduction="sum") / n)),
    ("sigmoid followed by log",
     dict(recon_fn=lambda l, x, n: -(x * torch.sigmoid(l).log()
                                     + (1 - x) * (1 - torch.sigmoid(l)).log()).sum() / n)),
    ("F.binary_cross_entropy on sigmoid(logits)",
     dict(recon_fn=lambda l, x, n: F.binary_cross_entropy(torch.sigmoid(l), x, reduction="sum") / n)),
    ("the KL summed over the batch", dict(kl_fn=lambda k: k.sum())),
    ("a missing mean over the batch", dict(kl_fn=lambda k: k)),
    ("beta multiplying the reconstruction", dict(combine=lambda r, k, b: b * r + k)),
    ("a sign error: loss = recon + beta * kl", dict(combine=lambda r, k, b: r - b * k)),
    ("beta ignored", dict(combine=lambda r, k, b: r + k)),
    ("beta already multiplied into the returned kl", dict(returned_kl=lambda k, b: b * k)),
]


@pytest.mark.parametrize("phrase, flags", ELBO_MISTAKES, ids=[m[0] for m in ELBO_MISTAKES])
def test_elbo_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_elbo_loss", phrase, elbo_loss=_elbo(**flags))


def test_elbo_with_a_wrong_kl_costs_only_the_kl_exercise(lab):
    # elbo_loss calling a KL that averages over latent dimensions: the KL's own test names it;
    # elbo_loss's test runs with the reference KL, so the mistake is not counted twice.
    def kl_mean(mu, logvar):
        return _terms(mu, logvar).mean(-1)
    ns_kl = lab.namespace(kl_to_standard_normal=kl_mean)
    with pytest.raises(AssertionError, match="kl_to_standard_normal"):
        lab.run("test_kl_to_standard_normal", namespace=ns_kl)
    lab.run("test_elbo_loss", namespace=lab.namespace(kl_to_standard_normal=kl_mean))


def test_elbo_sign_error_in_the_reconstruction_is_named(lab):
    lab.fails_with("test_elbo_loss", "a sign error: the reconstruction term",
                   elbo_loss=_elbo(recon_fn=lambda l, x, n: -F.binary_cross_entropy_with_logits(
                       l, x, reduction="sum") / n))


def test_elbo_that_detaches_fails(lab):
    def elbo_loss(logits, x, mu, logvar, beta=1.0):
        loss, recon, kl = vae.elbo_loss(logits, x, mu, logvar, beta)
        return loss.detach(), recon.detach(), kl.detach()
    lab.fails_with("test_elbo_loss", "carries no gradient", elbo_loss=elbo_loss)


def test_elbo_alternatives_pass(lab):
    def with_distributions(logits, x, mu, logvar, beta=1.0):
        log_px = torch.distributions.Bernoulli(logits=logits, validate_args=False).log_prob(x)
        recon = -log_px.reshape(len(x), -1).sum(1).mean()
        kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1).mean()
        return recon + beta * kl, recon, kl

    def examples_style(logits, x, mu, logvar, beta=1.0):
        bce = F.binary_cross_entropy_with_logits(logits.view(len(x), -1), x.view(len(x), -1),
                                                 reduction="sum") / len(x)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
        return bce + beta * kld, bce, kld

    for fn in (with_distributions, examples_style):
        lab.run("test_elbo_loss", elbo_loss=fn)


# --------------------------------------------------------------------------- exercise 6: Gaussian NLL

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _nll(per_pixel=lambda sq, s: sq / (2 * s ** 2) + torch.log(s) + HALF_LOG_2PI,
         reduce=lambda t: t.flatten(1).sum(1).mean(), check=True, detach=False):
    def gaussian_nll(x, x_hat, sigma):
        if check and x.shape != x_hat.shape:
            raise ValueError("shapes differ")
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if check and not bool((s > 0).all()):
            raise ValueError("sigma must be positive")
        out = reduce(per_pixel((x - x_hat) ** 2, s).expand_as(x))
        return out.detach() if detach else out
    return gaussian_nll


NLL_MISTAKES = [
    ("the constant log(sigma) + log(2 pi)/2 per pixel dropped", dict(per_pixel=lambda sq, s: sq / (2 * s ** 2))),
    ("the log(2 pi)/2 per pixel dropped", dict(per_pixel=lambda sq, s: sq / (2 * s ** 2) + torch.log(s))),
    ("the log(sigma) per pixel dropped", dict(per_pixel=lambda sq, s: sq / (2 * s ** 2) + HALF_LOG_2PI)),
    ("sigma used as the variance",
     dict(per_pixel=lambda sq, s: sq / (2 * s) + 0.5 * torch.log(s) + HALF_LOG_2PI)),
    ("sigma squared twice",
     dict(per_pixel=lambda sq, s: sq / (2 * s ** 4) + 2 * torch.log(s) + HALF_LOG_2PI)),
    ("log(sigma^2) instead of log(sigma)",
     dict(per_pixel=lambda sq, s: sq / (2 * s ** 2) + torch.log(s ** 2) + HALF_LOG_2PI)),
    ("a missing 1/2 in front of the squared error",
     dict(per_pixel=lambda sq, s: sq / s ** 2 + torch.log(s) + HALF_LOG_2PI)),
    ("the mean over the pixels instead of the sum", dict(reduce=lambda t: t.flatten(1).mean(1).mean())),
    ("the sum over the batch instead of the mean", dict(reduce=lambda t: t.sum())),
    ("a sign error", dict(reduce=lambda t: -t.flatten(1).sum(1).mean())),
    ("expected a 0-d tensor", dict(reduce=lambda t: t.flatten(1).sum(1))),
    ("cut off from autograd", dict(detach=True)),
]


@pytest.mark.parametrize("phrase, flags", NLL_MISTAKES, ids=[m[0] for m in NLL_MISTAKES])
def test_gaussian_nll_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_gaussian_nll", phrase, gaussian_nll=_nll(**flags))


@pytest.mark.parametrize("phrase, fn", [
    ("F.mse_loss (a mean squared error) is not the negative log-likelihood",
     lambda x, x_hat, sigma: F.mse_loss(x_hat, x)),
    ("F.gaussian_nll_loss with its defaults",
     lambda x, x_hat, sigma: F.gaussian_nll_loss(x_hat, x, torch.full_like(x, sigma ** 2))),
    ("it creates a torch.distributions.Normal",
     lambda x, x_hat, sigma: -Normal(x_hat, sigma).log_prob(x).flatten(1).sum(1).mean()),
], ids=["mse_loss", "gaussian_nll_loss defaults", "torch.distributions"])
def test_gaussian_nll_shortcuts_are_named(lab, phrase, fn):
    lab.fails_with("test_gaussian_nll", phrase, gaussian_nll=fn)


def test_gaussian_nll_helper_without_mistakes_passes(lab):
    lab.run("test_gaussian_nll", gaussian_nll=_nll())
    lab.run("test_gaussian_nll_errors", gaussian_nll=_nll())


def test_gaussian_nll_without_input_checks_earns_the_math_points_only(lab):
    lab.run("test_gaussian_nll", gaussian_nll=_nll(check=False))
    lab.fails_with("test_gaussian_nll_errors", "expected ValueError", gaussian_nll=_nll(check=False))


def test_gaussian_nll_checking_only_a_number_sigma_fails_the_errors_cell(lab):
    def gaussian_nll(x, x_hat, sigma):
        if x.shape != x_hat.shape:
            raise ValueError("shapes differ")
        if not isinstance(sigma, torch.Tensor) and sigma <= 0:   # a tensor sigma is not checked
            raise ValueError("sigma must be positive")
        return _nll(check=False)(x, x_hat, sigma)
    lab.run("test_gaussian_nll", gaussian_nll=gaussian_nll)
    lab.fails_with("test_gaussian_nll_errors", "a sigma per pixel that has a 0", gaussian_nll=gaussian_nll)


def test_gaussian_nll_stub_fails_the_errors_cell(lab):
    lab.fails_with("test_gaussian_nll_errors", "got NotImplementedError", gaussian_nll=stub)


def test_gaussian_nll_alternatives_pass(lab):
    def with_torch_loss(x, x_hat, sigma):
        if x.shape != x_hat.shape:
            raise ValueError("x and x_hat differ in shape")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if (sigma <= 0).any():          # checking sigma ** 2 instead would let -0.5 through
            raise ValueError("sigma must be positive")
        var = sigma ** 2
        var = var.expand_as(x) if var.dim() else torch.full_like(x, var.item())
        return F.gaussian_nll_loss(x_hat, x, var, full=True, reduction="sum", eps=0.0) / len(x)

    def from_log_sigma(x, x_hat, sigma):
        if tuple(x.shape) != tuple(x_hat.shape):
            raise ValueError("x and x_hat differ in shape")
        log_s = torch.log(torch.as_tensor(sigma, dtype=x.dtype, device=x.device))
        if torch.isnan(log_s).any() or torch.isinf(log_s).any():
            raise ValueError("sigma must be positive")
        z = (x - x_hat) * torch.exp(-log_s)
        nll = 0.5 * z.pow(2) + log_s + 0.5 * math.log(2 * math.pi)
        return nll.reshape(len(x), -1).sum(-1).mean()

    for fn in (with_torch_loss, from_log_sigma):
        lab.run("test_gaussian_nll", gaussian_nll=fn)
        lab.run("test_gaussian_nll_errors", gaussian_nll=fn)


# --------------------------------------------------------------------------- exercise 7: sample_prior

def _sample_prior(draw=torch.randn, sigmoid=True, latent=None, ignore_generator=False,
                  no_grad=True, reseed=False, one_per_sample=False):
    def sample_prior(model, n, generator=None):
        device = next(model.parameters()).device
        g = None if ignore_generator or reseed else generator
        if reseed:
            torch.manual_seed(0)
        where = device if g is None else g.device
        d = latent or model.latent_dim
        shape = (n, 1) if one_per_sample else (n, d)
        z = draw(shape, generator=g, device=where).to(device)
        if one_per_sample:
            z = z.expand(n, d)
        with torch.set_grad_enabled(not no_grad):
            out = model.decode(z)
            return torch.sigmoid(out) if sigmoid else out
    return sample_prior


SAMPLE_PRIOR_MISTAKES = [
    ("uniform codes (torch.rand)", dict(draw=torch.rand)),
    ("returning the decoder's logits", dict(sigmoid=False)),
    ("a hard-coded latent size", dict(latent=20)),
    ("the images carry gradients", dict(no_grad=False)),
    ("pass generator=generator", dict(ignore_generator=True)),
    ("one random number per sample repeated in every dimension", dict(one_per_sample=True)),
]


@pytest.mark.parametrize("phrase, flags", SAMPLE_PRIOR_MISTAKES,
                         ids=[m[0] for m in SAMPLE_PRIOR_MISTAKES])
def test_sample_prior_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_sample_prior", phrase, sample_prior=_sample_prior(**flags))


def test_sample_prior_reseeding_is_named(lab):
    lab.fails_with("test_sample_prior", "seed reset inside the function",
                   sample_prior=_sample_prior(reseed=True))


def test_sample_prior_alternative_with_torch_normal_passes(lab):
    @torch.no_grad()
    def sample_prior(model, n, generator=None):
        p = next(model.parameters())
        where = generator.device if generator is not None else p.device
        z = torch.normal(0.0, 1.0, size=(n, model.latent_dim), generator=generator, device=where)
        return model.decode(z.to(p.device)).sigmoid()
    lab.run("test_sample_prior", sample_prior=sample_prior)


# --------------------------------------------------------------------------- exercise 8: interpolate

def _interpolate(kind="right"):
    def interpolate(model, x_a, x_b, steps):
        with torch.no_grad():
            a, b = x_a.reshape(1, 1, 28, 28), x_b.reshape(1, 1, 28, 28)
            t = torch.linspace(0, 1, steps, device=a.device)[:, None]
            if kind == "open":
                t = (torch.arange(steps, device=a.device) / steps)[:, None]
            if kind == "reversed":
                t = t.flip(0)
            if kind == "pixels":
                return (1 - t[:, :, None, None]) * a + t[:, :, None, None] * b
            mu_a, lv_a = model.encode(a)
            mu_b, lv_b = model.encode(b)
            if kind == "sampled":
                mu_a, mu_b = vae.reparameterize(mu_a, lv_a), vae.reparameterize(mu_b, lv_b)
            if kind == "decoded_blend":
                ends = torch.sigmoid(model.decode(torch.cat([mu_a, mu_b])))
                return (1 - t[:, :, None, None]) * ends[:1] + t[:, :, None, None] * ends[1:]
            logits = model.decode((1 - t) * mu_a + t * mu_b)
            return logits if kind == "logits" else torch.sigmoid(logits)
    return interpolate


INTERPOLATE_MISTAKES = [
    ("a blend of the two images in pixel space", "pixels"),
    ("a blend of the two decoded images", "decoded_blend"),
    ("the logits", "logits"),
    ("the end point x_b missing", "open"),
    ("the path reversed", "reversed"),
    ("sampled codes instead of the posterior means", "sampled"),
]


@pytest.mark.parametrize("phrase, kind", INTERPOLATE_MISTAKES, ids=[m[0] for m in INTERPOLATE_MISTAKES])
def test_interpolate_mistakes_are_named(lab, phrase, kind):
    lab.fails_with("test_interpolate", phrase, interpolate=_interpolate(kind))


def test_interpolate_alternatives_pass(lab):
    lab.run("test_interpolate", interpolate=_interpolate())

    def with_a_loop(model, x_a, x_b, steps):
        model_device = x_a.device
        mu_a = model.encode(x_a.view(1, 1, 28, 28))[0]
        mu_b = model.encode(x_b.view(1, 1, 28, 28))[0]
        images = [torch.sigmoid(model.decode(torch.lerp(mu_a, mu_b, k / (steps - 1))))
                  for k in range(steps)]
        return torch.cat(images).detach().to(model_device)
    lab.run("test_interpolate", interpolate=with_a_loop)


# --------------------------------------------------------------------------- quality in fast mode

@pytest.mark.slow
def test_reference_conv_vae_learns_in_fast_mode():
    """The reference model, trained as the notebook trains it (fast budget), clearly beats its start."""
    from genlab.data import load_mnist
    from genlab.training import evaluate, fit
    x_train, _ = load_mnist("train", limit=1024)
    x_test, _ = load_mnist("test", limit=200)
    torch.manual_seed(0)
    model = vae.VAE(20)
    torch.manual_seed(0)
    before = evaluate(model, x_test, vae.vae_loss)["loss"]
    fit(model, x_train, vae.vae_loss, epochs=4, generator=0, device="cpu", progress=False)
    torch.manual_seed(0)
    after = evaluate(model, x_test, vae.vae_loss)
    assert before > 500                          # an untrained model: about 545 nats
    assert after["loss"] < 300, after            # measured 243 nats (default budget: ~113)
    assert 0 < after["kl"] < after["loss"]
