# %%
# On Google Colab only: install genlab, the course's helper library, from the course repository.
# (Colab has PyTorch and the other packages already; --no-deps keeps its versions.)
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "genlab @ git+https://github.com/genlab-course/genlab"], check=True)

# %% [markdown]
# # Lab 4 · Variational autoencoders: an autoencoder you can sample from
#
# The autoencoders of labs 2 and 3 compress a digit into a code and rebuild it. They cannot
# *invent* a digit: nothing tells us which codes the decoder understands. Lab 2's 2-D latent plane
# showed it — digit clusters with wide empty gaps between them, and a code drawn from a gap decodes
# to a smudge. Kingma and Welling (2014) fixed this with two changes. The encoder no longer returns
# one code but a small *distribution* over codes, and a penalty pulls every such distribution
# towards one fixed distribution, the **prior** $p(z) = \mathcal N(0, I)$. After training, a code
# drawn from the prior lands where the decoder has seen codes before, and decodes to a digit. That
# model is the **variational autoencoder** (VAE), and in this lab you build every piece of it.
#
# **Learning goals.** After this lab you can
#
# 1. derive the VAE objective — reconstruction plus KL divergence, the negative *evidence lower
#    bound* (ELBO) — and say what each term rewards;
# 2. turn two uniform random numbers into two standard normal ones (Box–Muller) and check the
#    result with moments and a normality test;
# 3. explain why sampling blocks gradients and how $z = \mu + \sigma\,\varepsilon$ fixes it, and
#    verify $\partial z/\partial\mu = 1$ and $\partial z/\partial\sigma = \varepsilon$ with autograd;
# 4. write the KL divergence of a diagonal Gaussian from $\mathcal N(0, I)$ and prove, against
#    `torch.distributions` and by Monte Carlo, that it uses the *same* $\sigma$ as your sampler;
# 5. read the squared error as the negative log-likelihood of a Gaussian decoder, say which
#    $\beta$ a fixed noise level $\sigma$ implies ($\beta = 2\sigma^2$), and when to prefer it
#    to the BCE;
# 6. build and train a convolutional VAE on MNIST, measure its test loss in nats, and compare it
#    with the multilayer-perceptron VAE of pytorch/examples;
# 7. generate digits from the prior, draw the 2-D latent manifold of Kingma & Welling, interpolate
#    between digits, and read the reconstruction/KL trade-off as its weight $\beta$ varies;
# 8. condition a VAE on the label so that it draws the digit asked for in a given style, and
#    compare that with arithmetic on class means in an unconditional code.
#
# **Lecture ideas practised.** The lecture describes the VAE as an encoder that maps to the mean
# and standard deviation of a Gaussian, a Gaussian prior with mean 0 and standard deviation 1, and
# an objective with a data term and a KL prior term; it derives the KL between two univariate
# Gaussians and its special case against $\mathcal N(0, 1)$, recommends the Box–Muller transform to
# sample a Gaussian from two uniforms, asks what the Jacobian of a sampling layer is and answers
# with the reparameterization trick and its gradients, and ends with the limitations: a weight that
# trades crisp reconstructions against a latent code that really looks Gaussian. The other decks
# add the evidence lower bound, $\log p(x) = \text{ELBO} + \mathrm{KL}(q\,\|\,p(z\mid x))$. Parts
# 1–3 build the sampler and the KL, Part 4 the model and the loss, Parts 5–8 train and use it.
#
# **How this lab works.** Each exercise has a cell where you write a function or class, followed by
# a locked test cell. The visible tests are there for you to run while you work; when the lab is
# graded, hidden tests check more cases. A failing test says *what* it checked and, when your
# result matches a typical mistake, *which* mistake it looks like. The tests never need a trained
# model: they use tiny networks and run in a second or two.
#
# | Exercise | Function | Points |
# |---|---|---|
# | 1 | `box_muller` | 2 |
# | 2 | `reparameterize` | 3 |
# | 3 | `kl_to_standard_normal` | 3 |
# | 4 | `VAE` | 3 |
# | 5 | `elbo_loss` | 4 |
# | 6 | `gaussian_nll` | 3 + 1 (input checks) |
# | 7 | `sample_prior` | 2 |
# | 8 | `interpolate` | 3 |
#
# **Time.** The experiments train a 20-dimensional convolutional VAE, the pytorch/examples MLP VAE
# for comparison, three small 2-dimensional VAEs and a conditional VAE. With the default budget the notebook runs in
# about a minute on a 2-core laptop CPU (62 s measured); on a GPU it switches to a larger budget (Part 5 says
# how), and with `GENLAB_FAST=1` (what the autograder uses) it takes seconds.
# %% [markdown]
# ## Set-up
#
# The first cell is locked because the tests rely on it. Besides the imports it provides `attempt` (from `genlab.testing`),
# which the test cells use to call your functions: a missing function or a crash becomes a short
# failure message instead of a long traceback.
# %% readonly setup
import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab import budget, get_device, seed_everything
from genlab.testing import CheckFailed, attempt

seed_everything(0)
torch.set_printoptions(precision=3, sci_mode=False)


# %% [markdown]
# The data: MNIST digits as float tensors `(N, 1, 28, 28)` with pixels in $[0, 1]$ (without a
# network connection genlab falls back to 5,000 bundled MNIST digits and says so in one line).
# %% demo
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from genlab.data import load_mnist
from genlab.plotting import (latent_grid, plot_bars, plot_curves, plot_latent_scatter, show,
                             show_images, show_rows, subplots)
from genlab.widgets import explore

x_test_all, y_test_all = load_mnist("test")
show_images(x_test_all[:16], title="sixteen test digits")

# %% [markdown]
# ## Part 1 · The objective
#
# A VAE is a **latent-variable model**. To make a digit, draw a code $z \in \mathbb R^D$ from the
# prior $p(z) = \mathcal N(0, I)$, then draw the image from the decoder's distribution
# $p_\theta(x \mid z)$. For black-and-white-ish MNIST we let the decoder output one number per pixel,
# a **logit** $\ell_i$, and read it as the probability $p_i = \operatorname{sigmoid}(\ell_i)$ that
# pixel $i$ is on (a Bernoulli distribution per pixel). Training should make the data probable:
# maximize $\log p_\theta(x) = \log \int p_\theta(x \mid z)\,p(z)\,dz$. That integral over all codes
# is hopeless in 20 dimensions.
#
# The way out is an **encoder** $q_\phi(z \mid x)$ that guesses which codes could have produced $x$:
# a Gaussian $\mathcal N\big(\mu_\phi(x), \operatorname{diag}\sigma^2_\phi(x)\big)$ whose mean and
# variance a network computes from the image. For any such $q$,
#
# $$\log p_\theta(x) \;=\; \underbrace{\mathbb E_{z \sim q}\big[\log p_\theta(x \mid z)\big]
#   - \mathrm{KL}\big(q_\phi(z \mid x)\,\big\|\,p(z)\big)}_{\text{ELBO}(x)}
#   \;+\; \mathrm{KL}\big(q_\phi(z \mid x)\,\big\|\,p_\theta(z \mid x)\big).$$
#
# The last KL is never negative, so the ELBO is a lower bound on $\log p_\theta(x)$ (lab 5 proves
# the identity). We maximize the ELBO, i.e. **minimize its negative**, over encoder and decoder
# together:
#
# $$\mathcal L(x) \;=\; \underbrace{-\,\mathbb E_{z\sim q}\big[\log p_\theta(x\mid z)\big]}_{\text{reconstruction}}
#   \;+\; \underbrace{\mathrm{KL}\big(q_\phi(z\mid x)\,\|\,\mathcal N(0, I)\big)}_{\text{prior term}} .$$
#
# * **Reconstruction.** With one sample $z \sim q$ and the Bernoulli decoder, $-\log p_\theta(x \mid z)
#   = -\sum_{i=1}^{784} \big[x_i \log p_i + (1 - x_i)\log(1 - p_i)\big]$: the binary cross-entropy,
#   **summed** over the pixels of the image. MNIST pixels are grey levels in $[0, 1]$, not bits; like
#   pytorch/examples we plug them in as they are, so the numbers are "nats per image" of a
#   slightly unusual likelihood (a perfect reconstruction of a grey pixel still costs a little).
# * **Prior term.** It pulls each $q_\phi(z\mid x)$ towards $\mathcal N(0, I)$ — means towards 0,
#   variances towards 1 — so the codes of all images fill one dense ball without holes, and a code
#   from the prior decodes to something sensible.
#
# Without the prior term the encoder would shrink $\sigma$ to zero and we would be back to a plain
# autoencoder. Without the reconstruction term every $q$ would equal the prior and the code would
# carry nothing. Parts 2 and 3 build the two ingredients the objective needs that lab 2 did not
# have: *sampling* $z \sim q$ inside a network, and the KL term.
#
# **One convention for the whole lab.** The encoder outputs the **log-variance**
# $\texttt{logvar} = \log\sigma^2$ (any real number; exponentiating keeps $\sigma$ positive). So
# $\sigma = \exp(\tfrac12\,\texttt{logvar})$ and $\sigma^2 = \exp(\texttt{logvar})$. Course
# packages have shipped VAEs whose KL read the same output as $\log\sigma$ while the sampler read it
# as $\log\sigma^2$: each piece looked right, and the model optimized the wrong objective. Every
# function you write uses `logvar` in the one sense above, and Part 3 checks that they agree.
#
# ## Part 2 · Sampling a Gaussian, and sampling inside a network
#
# ### Box–Muller: two normals from two uniforms
#
# Computers produce uniform random numbers. To get Gaussian ones, rejection sampling from a uniform
# box is wasteful and cuts off the tails. Box and Muller (1958) found an exact transform. Take
# $u_1 \in (0, 1]$ and $u_2 \in [0, 1)$ independent and uniform, and set
#
# $$r = \sqrt{-2\ln u_1}, \qquad \theta = 2\pi u_2, \qquad
#   z_1 = r\cos\theta, \qquad z_2 = r\sin\theta .$$
#
# Then $z_1$ and $z_2$ are **independent** standard normals. Why: a pair of independent standard
# normals has density $\tfrac1{2\pi}e^{-(z_1^2 + z_2^2)/2}$, which depends only on the radius. In
# polar coordinates the angle is uniform on $[0, 2\pi)$, and the squared radius $r^2$ has the
# density $\tfrac12 e^{-r^2/2}$ — an exponential distribution with mean 2, which is exactly what
# $-2\ln u_1$ is. Running the change of variables backwards turns two uniforms into that pair.
#
# Two details: $u_1 = 0$ would give $\ln 0 = -\infty$, hence the half-open interval $(0, 1]$ (use
# `1 - torch.rand(...)`), and the factor $-2$ is what makes the variance 1.
#
# ## Exercise 1 · `box_muller` (2 points)
#
# **Your task.** Write `box_muller(u1, u2)`: elementwise on two tensors of the same shape, return the
# pair `(z1, z2)` with the shape, dtype and device of `u1`.
# %% solution box_muller
def box_muller(u1, u2):
    """Two independent standard normal tensors from independent uniforms u1 in (0, 1] and u2."""
    ### BEGIN SOLUTION
    radius = torch.sqrt(-2.0 * torch.log(u1))
    angle = 2.0 * math.pi * u2
    return radius * torch.cos(angle), radius * torch.sin(angle)
    ### END SOLUTION

# %% test test_box_muller points=2
import math
import torch
from genlab.testing import CheckFailed, check_close, check_number, check_tensor, devices


def _bm_formula(u1, u2, radius=lambda u: torch.sqrt(-2 * torch.log(u)), turn=2 * math.pi):
    r = radius(u1)
    return r * torch.cos(turn * u2), r * torch.sin(turn * u2)


def _bm_pair(u1, u2, what):
    out = attempt(what, box_muller, u1, u2)
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed(f"{what}: expected a tuple (z1, z2), got {type(out).__name__}\n  Hint: "
                          "return z1, z2")
    for name, z in zip(("z1", "z2"), out):
        check_tensor(z, f"{what}: {name}", shape=u1.shape, dtype=u1.dtype, device=u1.device)
    return out


def _bm_exact(u1, u2):
    what = f"box_muller(u1, u2) for u1 = {u1.tolist()} and u2 = {u2.tolist()}"
    z1, z2 = _bm_pair(u1, u2, what)
    right = _bm_formula(u1, u2)
    wrong = {
        "a radius without the factor 2 (sqrt(-log u1)): the variance would be 1/2":
            _bm_formula(u1, u2, radius=lambda u: torch.sqrt(-torch.log(u))),
        "a missing square root: the radius is sqrt(-2 log u1)":
            _bm_formula(u1, u2, radius=lambda u: -2 * torch.log(u)),
        "the base-10 logarithm: Box-Muller needs the natural log (torch.log)":
            _bm_formula(u1, u2, radius=lambda u: torch.sqrt(-2 * torch.log10(u))),
        "an angle of pi * u2: the angle must cover the full circle, 2 * pi * u2":
            _bm_formula(u1, u2, turn=math.pi),
        "u1 and u2 swapped: the radius comes from u1, the angle from u2":
            _bm_formula(u2.clamp_min(1e-12), u1),
    }
    for k, (z, name) in enumerate(zip((z1, z2), ("z1 = r cos(2 pi u2)", "z2 = r sin(2 pi u2)"))):
        mistakes = {m: pair[k] for m, pair in wrong.items()}
        if k == 0:
            mistakes["cos and sin swapped: z1 = r cos(theta), z2 = r sin(theta)"] = right[1]
        else:
            mistakes["the same formula for both outputs: z2 uses sin"] = right[0]
        check_close(z, right[k], f"{what}: {name}", atol=1e-5, rtol=1e-5, mistakes=mistakes)


def _bm_statistics(n=100_000, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    u1 = 1.0 - torch.rand(n, generator=g, dtype=dtype)       # (0, 1]
    u2 = torch.rand(n, generator=g, dtype=dtype)
    what = f"box_muller on {n:,} pairs of uniform numbers"
    z1, z2 = _bm_pair(u1, u2, what)
    for name, z in (("z1", z1), ("z2", z2)):
        z = z.double()
        if not torch.isfinite(z).all():
            raise CheckFailed(f"{what}: {name} contains NaN or inf\n  Hint: u1 lies in (0, 1], "
                              "so log(u1) is finite")
        check_number(z.mean().item(), 0.0, f"{what}: the mean of {name}", rel=0, abs_=0.03,
                     mistakes={"an angle of pi * u2: sin is then never negative":
                               math.sqrt(2 / math.pi)})
        check_number(z.var().item(), 1.0, f"{what}: the variance of {name}", rel=0.04,
                     mistakes={"a radius without the factor 2": 0.5})
        ks = (torch.arange(1, n + 1, dtype=z.dtype) / n - torch.special.ndtr(z.sort().values)).abs().max()
        if ks > 2.3 / math.sqrt(n):        # Kolmogorov-Smirnov at a level of about 1e-4
            raise CheckFailed(f"{what}: {name} does not look standard normal (a Kolmogorov-Smirnov "
                              "test rejects it)\n  Hint: check the radius sqrt(-2 log u1) and the "
                              "angle 2 pi u2")
    corr = torch.corrcoef(torch.stack([z1.double(), z2.double()]))[0, 1].item()
    check_number(corr, 0.0, f"{what}: the correlation of z1 and z2", rel=0, abs_=0.03,
                 mistakes={"the same output twice: z1 and z2 must use cos and sin": 1.0})


_bm_exact(torch.tensor([math.exp(-0.5), math.exp(-0.5), math.exp(-2.0), 1.0]),
          torch.tensor([0.5, 0.25, 0.125, 0.3]))
_bm_statistics()
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(11)
_bm_exact(1.0 - torch.rand(3, 4, generator=_g), torch.rand(3, 4, generator=_g))
_bm_exact((1.0 - torch.rand(5, generator=_g, dtype=torch.float64)),
          torch.rand(5, generator=_g, dtype=torch.float64))
_bm_statistics(n=60_000, dtype=torch.float32, seed=3)
for _dev in devices():
    _u1, _u2 = (1.0 - torch.rand(2, 3, generator=_g)).to(_dev), torch.rand(2, 3, generator=_g).to(_dev)
    _bm_pair(_u1, _u2, f"box_muller on {_dev.type}")
### END HIDDEN TESTS

# %% [markdown]
# ### Do the samples look normal?
#
# A histogram is the first check; numbers are the second. A standard normal has mean 0, variance 1,
# skewness 0 and (excess) kurtosis 0, and the two outputs of one pair should be uncorrelated.
# Finally a **normality test**: the Kolmogorov–Smirnov test compares the empirical distribution
# function with the normal one; its p-value is the probability of a discrepancy at least this large
# *if* the samples were normal. A tiny p-value rejects normality. We run the same checks on a
# deliberately broken transform (without the factor 2): it still looks bell-shaped, but the numbers
# give it away.
# %% demo
g = torch.Generator().manual_seed(0)
n = budget(default=200_000, fast=20_000)
u1, u2 = 1.0 - torch.rand(n, generator=g, dtype=torch.float64), torch.rand(n, generator=g, dtype=torch.float64)
z1, z2 = box_muller(u1, u2)
broken = torch.sqrt(-torch.log(u1)) * torch.cos(2 * math.pi * u2)   # the factor 2 is missing

print(f"{'':>26}{'mean':>9}{'variance':>10}{'skewness':>10}{'kurtosis':>10}{'KS p-value':>12}")
for name, z in [("z1", z1), ("z2", z2), ("torch.randn", torch.randn(n, generator=g, dtype=torch.float64)),
                ("broken (no factor 2)", broken)]:
    z = z.numpy()
    print(f"{name:>26}{z.mean():>9.3f}{z.var():>10.3f}{stats.skew(z):>10.3f}{stats.kurtosis(z):>10.3f}"
          f"{stats.kstest(z, 'norm').pvalue:>12.3g}")
print(f"correlation of z1 and z2: {np.corrcoef(z1.numpy(), z2.numpy())[0, 1]:.4f}")

fig, (ax_hist, ax_pair) = subplots(1, 2, figsize=(11, 4))
grid = np.linspace(-4.5, 4.5, 200)
ax_hist.hist(z1.numpy(), bins=90, density=True, alpha=0.6, label="$z_1$ from Box–Muller")
ax_hist.hist(broken.numpy(), bins=90, density=True, alpha=0.4, label="without the factor 2")
ax_hist.plot(grid, stats.norm.pdf(grid), color="black", label="$\\mathcal{N}(0, 1)$ density")
ax_hist.set_xlabel("value")
ax_hist.legend()
ax_pair.scatter(z1[:3000].numpy(), z2[:3000].numpy(), s=2, alpha=0.5)
ax_pair.set_aspect("equal")
ax_pair.set_xlabel("$z_1$")
ax_pair.set_ylabel("$z_2$")
ax_pair.set_title("pairs: a round cloud, no dependence")
show(fig)

# %% [markdown]
# ### Why sampling blocks gradients
#
# The VAE's encoder outputs $\mu$ and $\sigma$, and the decoder needs a code $z \sim \mathcal N(\mu,
# \sigma^2)$. To train the encoder, backpropagation must know how $z$ changes when $\mu$ or $\sigma$
# change: what is the Jacobian of a sampling layer? If "sampling" is a black box that returns a
# fresh random number, there is no answer. PyTorch agrees, in two different ways:
# %%
mu = torch.tensor([0.5], requires_grad=True)
sigma = torch.tensor([2.0], requires_grad=True)
z_sample = torch.distributions.Normal(mu, sigma).sample()
print(f"Normal(mu, sigma).sample(): requires_grad = {z_sample.requires_grad}  (cut off from mu and sigma)")
z_normal = torch.normal(mu, sigma)
z_normal.sum().backward()
print(f"torch.normal(mu, sigma): requires_grad = {z_normal.requires_grad}, but dz/dmu = "
      f"{mu.grad.item()}, dz/dsigma = {sigma.grad.item()}  (silently zero!)")

# %% [markdown]
# The second is the dangerous one: `torch.normal` *looks* differentiable, training runs, and the
# encoder simply never learns anything from the reconstruction term.
#
# **The reparameterization trick.** Move the randomness out of the way. Draw noise that does not
# depend on any parameter, $\varepsilon \sim \mathcal N(0, I)$, and *compute* the code from it:
#
# $$z = \mu + \sigma \odot \varepsilon, \qquad \sigma = \exp\big(\tfrac12\,\texttt{logvar}\big).$$
#
# $z$ has exactly the distribution $\mathcal N(\mu, \operatorname{diag}\sigma^2)$, but now it is an
# ordinary differentiable function of $\mu$ and $\sigma$, with the noise as a constant input:
#
# $$\frac{\partial z}{\partial \mu} = 1, \qquad \frac{\partial z}{\partial \sigma} = \varepsilon,
#   \qquad \frac{\partial z}{\partial\,\texttt{logvar}} = \tfrac12\,\sigma\,\varepsilon .$$
#
# Read it geometrically: increasing $\mu$ shifts the sample by the same amount; increasing $\sigma$
# pushes it away from the mean, in the direction and by the amount of its $\varepsilon$. Averaged
# over many $\varepsilon$, these per-sample gradients estimate the gradient of the *expected* loss.
#
# ## Exercise 2 · `reparameterize` (3 points)
#
# **Your task.** Write `reparameterize(mu, logvar, eps=None)` returning $\mu + \sigma\varepsilon$ with
# $\sigma = \exp(\tfrac12\,\texttt{logvar})$. When `eps` is given use it (that is how the tests and
# the next cell check your function); when it is `None`, draw a fresh standard normal number for
# **every element** of `mu` — every latent dimension of every image in the batch — on `mu`'s device
# (`torch.randn_like(mu)` does all of that).
# %% solution reparameterize
def reparameterize(mu, logvar, eps=None):
    """z = mu + exp(0.5 * logvar) * eps, with eps ~ N(0, I) drawn per element when not given."""
    ### BEGIN SOLUTION
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps
    ### END SOLUTION

# %% test test_reparameterize points=3
import math
import torch
from genlab.testing import CheckFailed, check_close, check_number, check_tensor, devices

_LOGSTD = ("treating logvar as a log standard deviation (sigma = exp(logvar)): logvar is "
           "log sigma^2, so sigma = exp(0.5 * logvar)")


def _rp_given_eps(n=4, d=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, d, generator=g, dtype=dtype)
    logvar = torch.randn(n, d, generator=g, dtype=dtype)
    eps = torch.randn(n, d, generator=g, dtype=dtype)
    what = f"reparameterize(mu, logvar, eps) with a given eps, shape {(n, d)}"
    z = attempt(what, reparameterize, mu.clone(), logvar.clone(), eps.clone())
    check_tensor(z, what, shape=mu.shape, dtype=dtype)
    check_close(z, mu + torch.exp(0.5 * logvar) * eps, what, atol=1e-5, rtol=1e-5, mistakes={
        _LOGSTD: mu + torch.exp(logvar) * eps,
        "logvar used as sigma itself: sigma = exp(0.5 * logvar)": mu + logvar * eps,
        "the variance in place of the standard deviation: sigma = exp(0.5 * logvar)":
            mu + torch.exp(logvar) * eps,
        "a minus sign: z = mu + sigma * eps": mu - torch.exp(0.5 * logvar) * eps,
        "ignoring the eps argument: use it when it is given, draw only when eps is None":
            lambda a: not torch.allclose(a, reparameterize(mu, logvar, eps)),
    })


def _rp_gradients(seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(5, 3, generator=g).requires_grad_()
    sigma = (torch.rand(5, 3, generator=g) + 0.5).requires_grad_()
    eps = torch.randn(5, 3, generator=g)
    what = "reparameterize(mu, 2 * log(sigma), eps)"
    z = attempt(what, reparameterize, mu, 2 * torch.log(sigma), eps)
    check_tensor(z, what, shape=mu.shape)
    if not z.requires_grad:
        raise CheckFailed(f"{what}: the result carries no gradient\n  Hint: this looks like "
                          "sampling that cuts the graph (.sample(), .detach() or torch.no_grad()): "
                          "compute z = mu + sigma * eps from mu and logvar")
    z.sum().backward()
    zero = ("torch.normal(mu, sigma) (or a detached sigma): its gradients are silently zero; "
            "compute mu + sigma * eps yourself")
    check_close(mu.grad if mu.grad is not None else torch.zeros_like(mu), torch.ones_like(mu),
                f"{what}: dz/dmu from autograd", mistakes={zero: torch.zeros_like(mu)},
                hint="z = mu + sigma * eps moves one-for-one with mu")
    check_close(sigma.grad if sigma.grad is not None else torch.zeros_like(sigma), eps,
                f"{what}: dz/dsigma from autograd", atol=1e-5, rtol=1e-4,
                mistakes={zero: torch.zeros_like(sigma),
                          _LOGSTD: 2 * sigma.detach() * eps})
    # The same without eps: the fresh noise must not block the gradients either.
    mu = mu.detach().clone().requires_grad_()
    sigma = sigma.detach().clone().requires_grad_()
    what = "reparameterize(mu, 2 * log(sigma)) without eps"
    z = attempt(what, reparameterize, mu, 2 * torch.log(sigma))
    check_tensor(z, what, shape=mu.shape)
    if not z.requires_grad:
        raise CheckFailed(f"{what}: the result carries no gradient\n  Hint: this looks like "
                          "sampling that cuts the graph (Normal(...).sample(), .detach() or "
                          "torch.no_grad()): compute z = mu + sigma * eps with eps = torch.randn_like(mu)")
    z.sum().backward()
    check_close(mu.grad if mu.grad is not None else torch.zeros_like(mu), torch.ones_like(mu),
                f"{what}: dz/dmu from autograd", mistakes={zero: torch.zeros_like(mu)},
                hint="z = mu + sigma * eps moves one-for-one with mu")
    eps_used = ((z - mu) / sigma).detach()
    check_close(sigma.grad if sigma.grad is not None else torch.zeros_like(sigma), eps_used,
                f"{what}: dz/dsigma from autograd (it must equal the eps that was drawn)",
                atol=1e-4, rtol=1e-4, mistakes={zero: torch.zeros_like(sigma)})


def _rp_fresh(seed=0):
    mu, logvar = torch.zeros(500, 8), torch.zeros(500, 8)
    torch.manual_seed(seed)
    what = "reparameterize(mu, logvar) without eps, mu and logvar of shape (500, 8)"
    z = attempt(what, reparameterize, mu, logvar)
    check_tensor(z, what, shape=mu.shape)
    same_rows = (z[1:] == z[:-1]).double().mean().item()
    check_number(same_rows, 0.0, f"{what}: fraction of entries equal in neighbouring rows", rel=0,
                 abs_=0.01, mistakes={"the same eps for every element of the batch (eps drawn once, "
                                      "shaped like one row): draw eps shaped like mu, "
                                      "torch.randn_like(mu)": 1.0})
    same_cols = (z[:, 1:] == z[:, :-1]).double().mean().item()
    check_number(same_cols, 0.0, f"{what}: fraction of entries equal in neighbouring latent "
                 "dimensions", rel=0, abs_=0.01,
                 mistakes={"one eps per image shared by all latent dimensions (eps shaped (N, 1)): "
                           "draw eps shaped like mu": 1.0})
    again = reparameterize(mu, logvar)
    check_number((again == z).double().mean().item(), 0.0,
                 f"{what}, called twice: fraction of equal entries", rel=0, abs_=0.01,
                 mistakes={"a fixed eps (the global seed reset inside the function?)": 1.0})


def _rp_moments(seed=0):
    n = 40_000
    mu = torch.tensor([1.0, -2.0]).expand(n, 2).contiguous()
    logvar = torch.log(torch.tensor([4.0, 0.25])).expand(n, 2).contiguous()
    torch.manual_seed(seed)
    what = "reparameterize(mu, logvar) without eps, for sigma = (2, 0.5): 40,000 samples"
    z = attempt(what, reparameterize, mu, logvar).detach().double()
    for j, (m, s) in enumerate([(1.0, 2.0), (-2.0, 0.5)]):
        check_number(z[:, j].mean().item(), m, f"{what}: the mean of dimension {j}", rel=0,
                     abs_=6 * s / math.sqrt(n),
                     mistakes={"uniform noise (torch.rand) instead of torch.randn": m + s / 2})
        check_number(z[:, j].std().item(), s, f"{what}: the standard deviation of dimension {j}",
                     rel=0.03, mistakes={_LOGSTD: s ** 2, "logvar used as sigma itself": abs(2 * math.log(s)),
                                         "uniform noise (torch.rand) instead of torch.randn":
                                         s / math.sqrt(12)})


_rp_given_eps()
_rp_gradients()
_rp_fresh()
_rp_moments()
### BEGIN HIDDEN TESTS
_rp_given_eps(n=7, d=2, seed=1, dtype=torch.float64)
_rp_given_eps(n=1, d=5, seed=2)
_rp_gradients(seed=3)
_rp_fresh(seed=4)
_rp_moments(seed=5)
_x = torch.randn(3, 4)
_x_copy = _x.clone()
reparameterize(_x, torch.zeros(3, 4), torch.ones(3, 4))
check_close(_x, _x_copy, "mu after calling reparameterize",
            hint="do not change mu in place (mu += ...); return a new tensor")
for _dev in devices():
    _mu, _lv = torch.randn(3, 4).to(_dev), torch.randn(3, 4).to(_dev)
    check_tensor(attempt(f"reparameterize on {_dev.type}", reparameterize, _mu, _lv),
                 f"reparameterize(mu, logvar) on {_dev.type}", shape=(3, 4), device=_dev)
    check_tensor(attempt(f"reparameterize with eps on {_dev.type}", reparameterize, _mu, _lv,
                         torch.randn(3, 4).to(_dev)),
                 f"reparameterize(mu, logvar, eps) on {_dev.type}", shape=(3, 4), device=_dev)
### END HIDDEN TESTS

# %% [markdown]
# ### dz/dμ = 1 and dz/dσ = ε, checked by autograd
#
# Fix a few noise values, build $z$ with your function from a $\mu$ and a $\sigma$ that require
# gradients, and ask autograd. Then the payoff: the average of these per-sample gradients is an
# unbiased estimate of the gradient of an *expectation*. For $f(z) = z^2$ and $z \sim \mathcal N(\mu,
# \sigma^2)$ we know $\mathbb E[z^2] = \mu^2 + \sigma^2$, whose gradient is $(2\mu, 2\sigma)$.
# %%
eps = torch.tensor([-1.5, 0.0, 0.3, 2.0])
mu = torch.zeros(4, requires_grad=True)
sigma = torch.full((4,), 0.7, requires_grad=True)
z = reparameterize(mu, 2 * torch.log(sigma), eps)    # logvar = log sigma^2
z.sum().backward()
print("eps       ", eps)
print("dz/dmu    ", mu.grad)
print("dz/dsigma ", sigma.grad)

mu, sigma = torch.tensor(0.8, requires_grad=True), torch.tensor(1.5, requires_grad=True)
eps = torch.randn(budget(default=200_000, fast=20_000), generator=torch.Generator().manual_seed(1))
reparameterize(mu, 2 * torch.log(sigma), eps).pow(2).mean().backward()
print(f"Monte Carlo gradient of E[z^2]: d/dmu = {mu.grad.item():.3f} (exact {2 * 0.8:.3f}), "
      f"d/dsigma = {sigma.grad.item():.3f} (exact {2 * 1.5:.3f})")

# %% [markdown]
# ## Part 3 · The KL term
#
# The lecture computes the KL divergence between two univariate Gaussians,
#
# $$\mathrm{KL}\big(\mathcal N(\mu_1, \sigma_1^2)\,\|\,\mathcal N(\mu_2, \sigma_2^2)\big)
#   = \log\frac{\sigma_2}{\sigma_1} + \frac{\sigma_1^2 + (\mu_1 - \mu_2)^2}{2\sigma_2^2} - \frac12 ,$$
#
# and with $\mu_2 = 0$, $\sigma_2 = 1$ it becomes $-\log\sigma_1 + \tfrac12(\sigma_1^2 + \mu_1^2) -
# \tfrac12$. A diagonal Gaussian is a product of independent one-dimensional ones, and the KL of
# products is the **sum** of the KLs. Written with $\texttt{logvar}_j = \log\sigma_j^2$ (so
# $-\log\sigma_j = -\tfrac12\,\texttt{logvar}_j$):
#
# $$\mathrm{KL}\big(\mathcal N(\mu, \operatorname{diag}\sigma^2)\,\|\,\mathcal N(0, I)\big)
#   = \frac12 \sum_{j=1}^{D} \Big(\mu_j^2 + e^{\texttt{logvar}_j} - 1 - \texttt{logvar}_j\Big).$$
#
# Each term is $\ge 0$ and is 0 only at $\mu_j = 0$, $\texttt{logvar}_j = 0$: the penalty pulls
# means to 0 and variances to 1. It also *explodes* as $\sigma_j \to 0$ (through $-\texttt{logvar}_j$),
# which is what keeps the VAE from collapsing into a plain autoencoder.
#
# **Matching the slides.** The decks write this KL in three ways; all agree with the formula above
# once the symbols are read the same way.
#
# * The representation-learning lecture's univariate derivation writes $\mathcal N(\mu, \sigma)$
#   with $\sigma$ the *standard deviation* (its density has $\sigma\sqrt{2\pi}$ in front); we write
#   the same Gaussian as $\mathcal N(\mu, \sigma^2)$, naming the variance. The formulas agree.
# * The deck on latent spaces and variational autoencoders puts a minus sign in front of
#   $\tfrac12\sum_j(\sigma_j + \mu_j^2 - 1 - \log\sigma_j)$ and labels it the divergence. Two
#   readings reconcile it with ours. There $\sigma_j$ stands for the **variance** $\sigma_j^2$, so
#   its $\log\sigma_j$ is our $\texttt{logvar}_j$. And with the leading minus the expression is
#   $-\mathrm{KL}$, the term as it enters the ELBO (the form in Kingma & Welling's appendix), not
#   the KL itself, which is never negative. In a loss we *minimize*, the penalty is $+\tfrac12\sum$.
# * The latent-models lecture writes $\tfrac12\sum_j(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2)$:
#   our formula, with $\sigma_j^2 = e^{\texttt{logvar}_j}$ and $\log\sigma_j^2 = \texttt{logvar}_j$.
#
# Whatever the slide, one check settles the sign and the $\sigma$-versus-$\sigma^2$ question: the
# KL is 0 at $\mu = 0$, $\sigma^2 = 1$ and positive everywhere else.
#
# ## Exercise 3 · `kl_to_standard_normal` (3 points)
#
# **Your task.** Write `kl_to_standard_normal(mu, logvar)` for tensors shaped `(N, D)` (or more
# generally `(..., D)`): the KL of each row's Gaussian from $\mathcal N(0, I)$, **summed over the
# last (latent) dimension**, one number per sample: shape `(N,)`.
# %% solution kl_to_standard_normal
def kl_to_standard_normal(mu, logvar):
    """Per-sample KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over the last dimension."""
    ### BEGIN SOLUTION
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)
    ### END SOLUTION

# %% test test_kl_to_standard_normal points=3
import torch
from torch.distributions import Normal, kl_divergence
from genlab.testing import CheckFailed, check_close, check_tensor, devices


def _kl_terms(mu, logvar):
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def _kl_check(shape=(6, 4), seed=0, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g, dtype=dtype).to(device)
    logvar = (1.5 * torch.randn(shape, generator=g, dtype=dtype)).to(device)
    what = f"kl_to_standard_normal(mu, logvar) for mu, logvar of shape {tuple(shape)}"
    kl = attempt(what, kl_to_standard_normal, mu.clone(), logvar.clone())
    check_tensor(kl, what, dtype=dtype, device=device)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    terms = _kl_terms(mu, logvar)
    mistakes = {
        "treating logvar as a log standard deviation (sigma = exp(logvar)), while the sampler "
        "uses sigma = exp(0.5 * logvar): the KL must read logvar as log sigma^2":
            (-logvar + 0.5 * (torch.exp(2 * logvar) + mu.pow(2)) - 0.5).sum(-1),
        "a missing factor 0.5 in front of the sum": 2 * terms.sum(-1),
        "the KL averaged over the latent dimensions instead of summed": terms.mean(-1),
        "a sign error: the KL is 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar), always >= 0 "
        "(the -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) form has a minus in front)":
            -terms.sum(-1),
        "a sign error on logvar: it is - logvar inside the sum":
            0.5 * (mu.pow(2) + logvar.exp() - 1.0 + logvar).sum(-1),
        "a forgotten -1 inside the sum": 0.5 * (mu.pow(2) + logvar.exp() - logvar).sum(-1),
        "mu instead of mu squared": 0.5 * (mu + logvar.exp() - 1.0 - logvar).sum(-1),
        "one number for the whole batch: return one KL per sample, summed over the last "
        "dimension only": terms.sum(),
        "summing over the batch dimension instead of the latent (last) dimension": terms.sum(0),
        "the batch mean: return one KL per sample (the loss takes the mean later)":
            terms.sum(-1).mean(),
    }
    check_close(kl, expected, what, atol=1e-5, rtol=1e-4, mistakes=mistakes)
    return mu, logvar


_kl_check()
_zero = attempt("kl_to_standard_normal(0, 0)", kl_to_standard_normal, torch.zeros(3, 5), torch.zeros(3, 5))
check_close(_zero, torch.zeros(3), "kl_to_standard_normal(mu=0, logvar=0): the KL of N(0, I) from itself",
            atol=1e-7, rtol=0, hint="KL(p || p) = 0")
### BEGIN HIDDEN TESTS
_kl_check(shape=(9, 2), seed=1, dtype=torch.float64)
_kl_check(shape=(1, 20), seed=2)
_kl_check(shape=(2, 3, 5), seed=3)
for _dev in devices():
    _kl_check(shape=(4, 3), seed=4, device=_dev)
# Shapes where the mistakes would be hard to tell apart by shape: N == D.
_kl_check(shape=(5, 5), seed=5)
### END HIDDEN TESTS

# %% [markdown]
# ### Are the sampler and the KL consistent?
#
# Three independent answers for the same KL: your closed form, `torch.distributions` (with
# $\sigma = \exp(\tfrac12\,\texttt{logvar})$ written out), and a **Monte Carlo** estimate that uses
# *your sampler*: $\mathrm{KL}(q\,\|\,p) = \mathbb E_{z\sim q}\big[\log q(z) - \log p(z)\big]$, averaged
# over many $z$ = `reparameterize(mu, logvar)`. If the sampler and the KL read `logvar` the same
# way, all three agree (the Monte Carlo one within its standard error). The last row is the bug
# from the introduction: a KL that reads `logvar` as $\log\sigma$ while the sampler reads it as
# $\log\sigma^2$.
# %%
mu = torch.tensor([[0.5, -1.0, 0.0]])
logvar = torch.tensor([[0.2, -1.5, 1.0]])
n_mc = budget(default=400_000, fast=40_000)
z = reparameterize(mu.expand(n_mc, 3), logvar.expand(n_mc, 3))
sigma = torch.exp(0.5 * logvar)
log_ratio = (torch.distributions.Normal(mu, sigma).log_prob(z)
             - torch.distributions.Normal(0.0, 1.0).log_prob(z)).sum(-1).double()
buggy = (-logvar + 0.5 * (torch.exp(2 * logvar) + mu ** 2) - 0.5).sum(-1)
print(f"your kl_to_standard_normal:       {kl_to_standard_normal(mu, logvar).item():.4f}")
print(f"torch.distributions.kl_divergence: "
      f"{torch.distributions.kl_divergence(torch.distributions.Normal(mu, sigma), torch.distributions.Normal(0.0, 1.0)).sum().item():.4f}")
print(f"Monte Carlo with your sampler:     {log_ratio.mean().item():.4f} "
      f"± {log_ratio.std().item() / math.sqrt(n_mc):.4f}")
print(f"KL reading logvar as log sigma:    {buggy.item():.4f}   <- inconsistent with the sampler")

# %% [markdown]
# ## Part 4 · The model and its loss
#
# ### The network
#
# The encoder is lab 2's encoder with **two heads**: from the last features, one linear layer
# gives $\mu$ and another gives $\texttt{logvar}$, each of size `latent_dim`. The decoder mirrors the
# encoder and returns **logits** — raw scores, no sigmoid at the end. The loss applies the sigmoid
# itself, inside `binary_cross_entropy_with_logits`, which computes $\log\operatorname{sigmoid}(\ell)$
# stably even for large $|\ell|$; a decoder that already ends in a sigmoid would be squashed twice.
# To look at an image, apply `torch.sigmoid` to the logits.
#
# A suggested design, small enough to train on a laptop CPU (about 0.2 million parameters with
# `latent_dim = 20`):
#
# | encoder | shape | decoder | shape |
# |---|---|---|---|
# | input | (1, 28, 28) | `Linear(latent_dim, 64·7·7)`, ReLU, unflatten | (64, 7, 7) |
# | `Conv2d(1, 32, 4, stride=2, padding=1)`, ReLU | (32, 14, 14) | `ConvTranspose2d(64, 32, 4, stride=2, padding=1)`, ReLU | (32, 14, 14) |
# | `Conv2d(32, 64, 4, stride=2, padding=1)`, ReLU, flatten | (3136,) | `ConvTranspose2d(32, 1, 4, stride=2, padding=1)` | (1, 28, 28) logits |
# | `Linear(3136, latent_dim)` → $\mu$; `Linear(3136, latent_dim)` → logvar | (latent_dim,) each | | |
#
# `forward(x)` encodes, draws a code with your `reparameterize`, decodes, and returns
# `(logits, mu, logvar)` — everything the loss needs.
#
# ## Exercise 4 · `VAE` (3 points)
#
# **Your task.** Complete the class: `encode(x) -> (mu, logvar)`, each `(N, latent_dim)`;
# `decode(z) -> logits (N, 1, 28, 28)`; `forward(x) -> (logits, mu, logvar)` with the logits decoded
# from a *sampled* code `reparameterize(mu, logvar)`. Any architecture passes the tests as long as
# it has these shapes, stays below a few million parameters and can learn; the one above is what
# the numbers quoted in this notebook were measured with.
# %% solution VAE
class VAE(nn.Module):
    """A convolutional VAE for (N, 1, 28, 28) images with a latent_dim-dimensional Gaussian code."""

    def __init__(self, latent_dim=20):
        super().__init__()
        self.latent_dim = latent_dim
        ### BEGIN SOLUTION
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1), nn.ReLU(),        # (32, 14, 14)
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),       # (64, 7, 7)
            nn.Flatten(),                                               # (3136,)
        )
        self.fc_mu = nn.Linear(64 * 7 * 7, latent_dim)
        self.fc_logvar = nn.Linear(64 * 7 * 7, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 64 * 7 * 7), nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),   # (32, 14, 14)
            nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1),               # (1, 28, 28) logits
        )
        ### END SOLUTION

    def encode(self, x):
        """Images (N, 1, 28, 28) -> (mu, logvar), each (N, latent_dim)."""
        ### BEGIN SOLUTION
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)
        ### END SOLUTION

    def decode(self, z):
        """Codes (N, latent_dim) -> logits (N, 1, 28, 28); torch.sigmoid gives pixel probabilities."""
        ### BEGIN SOLUTION
        return self.decoder(z)
        ### END SOLUTION

    def forward(self, x):
        """(logits, mu, logvar), the logits decoded from a sampled code reparameterize(mu, logvar)."""
        ### BEGIN SOLUTION
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar
        ### END SOLUTION

# %% test test_VAE points=3
import torch
import torch.nn.functional as F
from torch import nn
from genlab.testing import (CheckFailed, Spy, build_module, check_close, check_tensor, devices,
                            notebook_globals, optimizer_for)


def _vae_build(latent_dim, seed=0):
    return build_module(f"VAE({latent_dim})", VAE, latent_dim, seed=seed,
                        size_hint="the suggested design has about 0.2 million")


def _vae_encode(model, x, latent_dim):
    what = f"VAE({latent_dim}).encode(x) for x of shape {tuple(x.shape)}"
    out = attempt(what, model.encode, x)
    if isinstance(out, torch.Tensor):
        raise CheckFailed(f"{what}: returned one tensor of shape {tuple(out.shape)}\n  Hint: this "
                          "looks like returning mu and logvar concatenated (or only mu): return the "
                          "pair (mu, logvar)")
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed(f"{what}: expected a tuple (mu, logvar), got {type(out).__name__}")
    for name, t in zip(("mu", "logvar"), out):
        t = check_tensor(t, f"{what}: {name}", floating=True, device=x.device)
        if t.dim() == 2 and t.shape[0] == x.shape[0] and t.shape[1] != latent_dim:
            raise CheckFailed(f"{what}: {name} has {t.shape[1]} dimensions, expected latent_dim = "
                              f"{latent_dim}\n  Hint: this looks like a latent size that does not "
                              "follow latent_dim (a hard-coded number?)")
        check_tensor(t, f"{what}: {name}", shape=(x.shape[0], latent_dim))
    mu, logvar = out
    if torch.allclose(mu, logvar):
        raise CheckFailed(f"{what}: mu and logvar are equal\n  Hint: this looks like one layer "
                          "used for both: mu and logvar need separate heads (two nn.Linear)")
    return mu, logvar


def _vae_decode(model, z, latent_dim):
    what = f"VAE({latent_dim}).decode(z) for z of shape {tuple(z.shape)}"
    logits = check_tensor(attempt(what, model.decode, z), what, floating=True, device=z.device)
    if tuple(logits.shape) == (z.shape[0], 784):
        raise CheckFailed(f"{what}: got flat vectors of shape {tuple(logits.shape)}\n  Hint: "
                          "reshape the output to images (N, 1, 28, 28)")
    check_tensor(logits, what, shape=(z.shape[0], 1, 28, 28))
    if not torch.isfinite(logits).all():
        raise CheckFailed(f"{what}: the logits contain NaN or inf")
    return logits


def _vae_check(latent_dim, n=5, dev="cpu", seed=0):
    model = _vae_build(latent_dim, seed).to(dev)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g).to(dev)
    model.eval()
    with torch.no_grad():
        mu, logvar = _vae_encode(model, x, latent_dim)
        _vae_decode(model, mu, latent_dim)
        far = _vae_decode(model, 5 * torch.randn(64, latent_dim, generator=g).to(dev), latent_dim)
        if far.min() >= 0:
            mistake = ("a decoder ending in a sigmoid: decode must return logits (no sigmoid); "
                       "elbo_loss applies the sigmoid inside binary_cross_entropy_with_logits"
                       if far.max() <= 1 else "a decoder ending in a ReLU: logits must be able to "
                       "be negative (dark pixels); end with the last (transposed) convolution")
            raise CheckFailed(f"VAE({latent_dim}).decode(z): no logit is negative for 64 random "
                              f"codes\n  Hint: this looks like {mistake}")
        # forward: (logits, mu, logvar), with the logits decoded from reparameterize(mu, logvar).
        what = f"VAE({latent_dim})(x), the forward pass"
        # while the forward runs, reparameterize is a spy: it records (mu, logvar) and returns
        # the code for eps = 0.5, so that the logits can be checked
        spy = Spy(lambda m, lv, eps=None: m + torch.exp(0.5 * lv) * torch.full_like(m, 0.5))
        namespace = notebook_globals()    # where your forward looks up reparameterize
        real = namespace.get("reparameterize")
        namespace["reparameterize"] = spy
        try:
            out = attempt(what, model, x)
        finally:
            namespace["reparameterize"] = real
        calls = spy.calls
        if not isinstance(out, tuple) or len(out) != 3:
            raise CheckFailed(f"{what}: expected a tuple (logits, mu, logvar), got "
                              f"{type(out).__name__}\n  Hint: the loss needs all three")
        logits, f_mu, f_logvar = out
        check_tensor(logits, f"{what}: logits", shape=(n, 1, 28, 28), device=dev)
        check_close(f_mu, mu, f"{what}: mu", atol=1e-5, rtol=1e-4,
                    hint="forward returns the mu of encode(x)")
        check_close(f_logvar, logvar, f"{what}: logvar", atol=1e-5, rtol=1e-4,
                    mistakes={"returning sigma (or the variance) in place of logvar":
                              lambda a: torch.allclose(a, torch.exp(0.5 * logvar), atol=1e-5) or
                              torch.allclose(a, logvar.exp(), atol=1e-5)},
                    hint="forward returns the logvar of encode(x)")
        if calls:
            check_close(calls[0][1], logvar, f"{what}: the logvar passed to reparameterize",
                        atol=1e-5, rtol=1e-4, hint="call reparameterize(mu, logvar)")
            check_close(logits, model.decode(mu + torch.exp(0.5 * logvar) * 0.5),
                        f"{what}: logits", atol=1e-4, rtol=1e-4,
                        mistakes={"decoding mu instead of the sampled code z":
                                  model.decode(mu)},
                        hint="decode the code that reparameterize returns")
        else:  # the sampling is written inline: it must at least be random
            torch.manual_seed(seed)
            a = model(x)[0]
            b = model(x)[0]
            if torch.equal(a, b):
                raise CheckFailed(f"{what}: two calls gave identical logits\n  Hint: this looks "
                                  "like decoding mu instead of a sampled code: decode "
                                  "reparameterize(mu, logvar)")


def _vae_learns(latent_dim=4, steps=10, seed=0):
    """A few Adam steps on a small batch must lower the negative ELBO (computed here, not with your loss)."""
    model = _vae_build(latent_dim, seed)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(16, 1, 28, 28, generator=g) < 0.15).float()
    x[:, :, 8:20, 12:16] = 1.0
    optimizer = optimizer_for(model, "Adam", lr=3e-3)

    def loss():
        torch.manual_seed(seed)
        logits, mu, logvar = model(x)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        return recon + 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()

    model.train()
    before = attempt(f"VAE({latent_dim}) training step", loss)
    for step in range(steps):
        optimizer.zero_grad()
        loss().backward()
        if step == 0:
            frozen = [name for name, p in model.named_parameters()
                      if p.grad is None or not bool(p.grad.abs().sum() > 0)]
            if frozen:
                raise CheckFailed(f"VAE({latent_dim}): the negative ELBO gives no gradient to "
                                  f"{', '.join(frozen[:4])}{' ...' if len(frozen) > 4 else ''}\n"
                                  "  Hint: this looks like torch.no_grad() or .detach() inside the "
                                  "model: gradients must reach the encoder and the decoder")
        optimizer.step()
    after = loss().item()
    if not after < 0.9 * before.item():
        raise CheckFailed(f"VAE({latent_dim}): {steps} Adam steps on one small batch lowered the "
                          f"negative ELBO from {before.item():.1f} to {after:.1f} only\n  Hint: "
                          "check that gradients reach the encoder and the decoder (no detach, "
                          "no torch.no_grad in the model)")


_vae_check(3)
_vae_check(20, n=4)
_vae_learns()
### BEGIN HIDDEN TESTS
_vae_check(1, n=6, seed=1)
_vae_check(7, n=1, seed=2)
for _dev in devices():
    _vae_check(2, n=3, dev=_dev, seed=3)
_small, _large = _vae_build(2, seed=4).eval(), _vae_build(9, seed=4).eval()
with torch.no_grad():
    _vae_encode(_small, torch.rand(3, 1, 28, 28), 2)
    _m = _vae_build(4, seed=5).eval()
    _mu, _ = _vae_encode(_m, torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(5)), 4)
    if torch.allclose(_mu[0], _mu[1]):
        raise CheckFailed("VAE(4).encode: two different images got the same mu\n  Hint: mu must be "
                          "computed from x")
### END HIDDEN TESTS

# %% [markdown]
# ### The loss
#
# One sample $z$ per image gives an unbiased estimate of the reconstruction term, and the KL term is
# exact. For a batch of $N$ images,
#
# $$\text{recon} = \frac1N \sum_{n=1}^N \sum_{i=1}^{784} \mathrm{BCE}(\ell_{n,i}, x_{n,i}), \qquad
#   \text{kl} = \frac1N \sum_{n=1}^N \mathrm{KL}_n, \qquad
#   \text{loss} = \text{recon} + \beta\cdot\text{kl},$$
#
# all in **nats per image**. Two reductions decide whether the objective means anything:
#
# * **Sum over pixels, mean over images.** The ELBO is a log-probability of a whole image: 784
#   pixel terms add up. `F.binary_cross_entropy_with_logits(logits, x)` with its default
#   `reduction="mean"` divides by 784 as well — the reconstruction then weighs 784 times less
#   against the KL, which behaves like $\beta = 784$ and gives blurry, nearly identical digits.
#   Use `reduction="none"` (or `"sum"`) and divide by the batch size yourself.
# * **Sum over latent dimensions** inside the KL (your Exercise 3), then the batch mean.
#
# $\beta = 1$ is the true negative ELBO. Other values weight the prior term up or down; Part 7
# explores that knob, and lab 6 ($\beta$-VAE) builds on it.
#
# ## Exercise 5 · `elbo_loss` (4 points)
#
# **Your task.** Write `elbo_loss(logits, x, mu, logvar, beta=1.0)` returning the three scalars
# `(loss, recon, kl)` defined above. Use `F.binary_cross_entropy_with_logits` (not `sigmoid` then
# `log`: for a confident wrong pixel that overflows to infinity) and your `kl_to_standard_normal`.
# %% solution elbo_loss
def elbo_loss(logits, x, mu, logvar, beta=1.0):
    """(recon + beta * kl, recon, kl): batch means of per-image summed BCE and of the KL, in nats."""
    ### BEGIN SOLUTION
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    recon = bce.flatten(1).sum(1).mean()
    kl = kl_to_standard_normal(mu, logvar).mean()
    return recon + beta * kl, recon, kl
    ### END SOLUTION

# %% test test_elbo_loss points=4
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence
from genlab.testing import CheckFailed, check_close, check_tensor, devices, using_references


def _elbo_inputs(n=6, d=3, seed=0, dtype=torch.float32, device="cpu", size=(1, 28, 28)):
    g = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(n, *size, generator=g, dtype=dtype)).to(device)
    x = torch.rand(n, *size, generator=g, dtype=dtype).to(device)
    x[x < 0.5] = 0.0                                     # MNIST-like: many exact zeros
    mu = torch.randn(n, d, generator=g, dtype=dtype).to(device)
    logvar = torch.randn(n, d, generator=g, dtype=dtype).to(device)
    return logits, x, mu, logvar


def _elbo_parts(what, *args, **kwargs):
    # your elbo_loss with the reference KL: a KL mistake costs its own exercise's points only
    from genlab.vae import kl_to_standard_normal as _reference_kl
    with using_references(kl_to_standard_normal=_reference_kl):
        out = attempt(what, elbo_loss, *args, **kwargs)
    if not isinstance(out, tuple) or len(out) != 3:
        raise CheckFailed(f"{what}: expected a tuple (loss, recon, kl), got {type(out).__name__}\n"
                          "  Hint: return loss, recon, kl")
    for name, t in zip(("loss", "recon", "kl"), out):
        check_tensor(t, f"{what}: {name}", floating=True)
        if t.dim() != 0:
            raise CheckFailed(f"{what}: {name} has shape {tuple(t.shape)}, expected a scalar\n  "
                              "Hint: this looks like a missing mean over the batch")
    return out


def _elbo_check(beta=2.5, seed=0, **kw):
    logits, x, mu, logvar = _elbo_inputs(seed=seed, **kw)
    n = len(x)
    what = f"elbo_loss(logits, x, mu, logvar, beta={beta}) on a batch of {n}"
    loss, recon, kl = _elbo_parts(what, logits, x, mu, logvar, beta=beta)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1)
    p = torch.sigmoid(logits)
    check_close(recon, bce.sum() / n, f"{what}: recon", atol=1e-4, rtol=1e-5, mistakes={
        "the reconstruction averaged over pixels instead of summed (the default reduction='mean' "
        "of F.binary_cross_entropy_with_logits): sum over each image's pixels, then average over "
        "the batch": bce.mean(),
        "the reconstruction summed over the batch instead of averaged": bce.sum(),
        "a sigmoid applied twice: binary_cross_entropy_with_logits takes the logits themselves":
            F.binary_cross_entropy_with_logits(p, x, reduction="sum") / n,
        "the arguments swapped: binary_cross_entropy_with_logits(logits, x)":
            F.binary_cross_entropy_with_logits(x, logits, reduction="sum") / n,
        "a squared error instead of the Bernoulli cross-entropy": (p - x).pow(2).sum() / n,
        "a sign error: the reconstruction term is the cross-entropy, -log p(x|z), which is >= 0":
            -bce.sum() / n,
    })
    kl_n = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    check_close(kl, kl_n.mean(), f"{what}: kl", atol=1e-5, rtol=1e-5, mistakes={
        "the KL summed over the batch instead of averaged": kl_n.sum(),
        "beta already multiplied into the returned kl: return the plain kl": beta * kl_n.mean(),
    }, hint="kl is the batch mean of kl_to_standard_normal(mu, logvar)")
    check_close(loss, bce.sum() / n + beta * kl_n.mean(), f"{what}: loss", atol=1e-4, rtol=1e-5,
                mistakes={
                    "beta multiplying the reconstruction instead of the KL":
                        beta * bce.sum() / n + kl_n.mean(),
                    "a sign error: loss = recon + beta * kl (we minimize the negative ELBO)":
                        bce.sum() / n - beta * kl_n.mean(),
                    "beta ignored": bce.sum() / n + kl_n.mean(),
                })
    return logits, x, mu, logvar


def _elbo_gradients(seed=0):
    logits, x, mu, logvar = (t.requires_grad_() if i != 1 else t
                             for i, t in enumerate(_elbo_inputs(seed=seed)))
    what = "elbo_loss(...)[0].backward()"
    loss = _elbo_parts(what, logits, x, mu, logvar)[0]
    if not loss.requires_grad:
        raise CheckFailed(f"{what}: the loss carries no gradient\n  Hint: do not use .item(), "
                          ".detach() or torch.no_grad() inside elbo_loss")
    loss.backward()
    for name, t in (("logits", logits), ("mu", mu), ("logvar", logvar)):
        if t.grad is None or not t.grad.abs().sum() > 0:
            raise CheckFailed(f"{what}: no gradient reaches {name}")


def _elbo_stable():
    logits = torch.tensor([[-200.0, 200.0, 0.0, 30.0]]).reshape(1, 1, 2, 2)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]]).reshape(1, 1, 2, 2)
    mu, logvar = torch.zeros(1, 2), torch.zeros(1, 2)
    what = "elbo_loss for logits of +-200 (confident, wrong pixels)"
    recon = _elbo_parts(what, logits, x, mu, logvar)[1]
    if not torch.isfinite(recon):
        raise CheckFailed(f"{what}: recon is not finite\n  Hint: this looks like sigmoid followed "
                          "by log: use F.binary_cross_entropy_with_logits, which is stable")
    check_close(recon, F.binary_cross_entropy_with_logits(logits, x, reduction="sum"), f"{what}: recon",
                atol=1e-3, rtol=1e-5,
                mistakes={"F.binary_cross_entropy on sigmoid(logits): it clamps log(0) to -100, "
                          "use binary_cross_entropy_with_logits":
                          F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum")})


_elbo_check()
_elbo_check(beta=1.0, seed=1)
_elbo_gradients()
_elbo_stable()
### BEGIN HIDDEN TESTS
_elbo_check(beta=0.3, seed=2, n=9, d=5, dtype=torch.float64)
_elbo_check(beta=4.0, seed=3, n=1, d=2)
_elbo_check(beta=2.0, seed=4, n=4, d=4, size=(1, 8, 8))
_elbo_gradients(seed=5)
for _dev in devices():
    _out = _elbo_parts(f"elbo_loss on {_dev.type}", *_elbo_inputs(seed=6, device=_dev))
    for _t in _out:
        check_tensor(_t, f"elbo_loss on {_dev.type}", device=_dev)
### END HIDDEN TESTS

# %% [markdown]
# ### Another decoder: Gaussian pixels and the squared error
#
# Our decoder treats every pixel as a coin flip with probability $\operatorname{sigmoid}(\ell_i)$.
# Many VAE implementations score reconstructions with the **squared error** instead, and that too
# is a negative log-likelihood — of a different decoder. Let the decoder output a mean image
# $\hat x = d_\theta(z)$ and model each pixel as that mean plus Gaussian noise of a *fixed*
# standard deviation $\sigma$:
#
# $$p_\theta(x \mid z) = \mathcal N\big(x;\ \hat x,\ \sigma^2 I\big)
#   = \prod_{i=1}^{D} \frac{1}{\sigma\sqrt{2\pi}}
#     \exp\!\Big(-\frac{(x_i - \hat x_i)^2}{2\sigma^2}\Big).$$
#
# Take $-\log$ of one factor: the exponential gives back its exponent, the normalizer gives a log.
#
# $$-\log \mathcal N(x_i;\ \hat x_i,\ \sigma^2) = \frac{(x_i - \hat x_i)^2}{2\sigma^2}
#   + \log\sigma + \tfrac12 \log(2\pi).$$
#
# The pixels are independent given $z$, so the $D = 784$ terms add up:
#
# $$-\log \mathcal N(x;\ \hat x,\ \sigma^2 I) = \frac{\lVert x - \hat x\rVert^2}{2\sigma^2}
#   + D\log\sigma + \frac D2 \log(2\pi).$$
#
# **Where β hides.** Put this into the negative ELBO and write $\lambda = 1/(2\sigma^2)$:
#
# $$-\text{ELBO} = \lambda\,\mathbb E_{q}\lVert x - \hat x\rVert^2 + \mathrm{KL} + C
#   = \lambda\Big(\mathbb E_{q}\lVert x - \hat x\rVert^2 + \tfrac1\lambda\,\mathrm{KL}\Big) + C,
#   \qquad C = D \log\big(\sigma\sqrt{2\pi}\big).$$
#
# With $\sigma$ fixed, $C$ does not depend on the networks, and multiplying a loss by the positive
# number $1/\lambda$ does not move its minimum. So training a VAE with the **summed squared error
# plus $\beta$ times the KL** is exactly maximizing the ELBO of a Gaussian decoder with
# $\beta = 1/\lambda = 2\sigma^2$. The weight on the reconstruction, $\lambda$, plays the role of
# $1/\beta$: choosing $\beta$ *is* choosing how much noise the decoder assumes. A small $\sigma$
# (sharp pixels) means a small $\beta$ and a nearly deterministic autoencoder; a large $\sigma$
# means that the decoder explains most of the image away as noise, the KL wins, and the
# reconstructions blur.
#
# **Reading the slides.** One deck writes this decoder as $\mathcal N(d(h), \sigma I)$, with $\sigma$
# in the place of the covariance, and then folds $1/(2\sigma^2)$ into a weight $\lambda$; with
# $\sigma$ read as a standard deviation (its $\log\mathcal N$ line has $\sigma\sqrt{2\pi}$ in front)
# that is the derivation above. The deck on losses writes Gaussian regression noise as
# $\mathcal N(t \mid y, \beta^{-1})$: there $\beta$ is a **precision**, $1/\sigma^2$, not the weight
# of the KL. In that notation the β-VAE weight is $2/\beta_{\text{precision}}$.
#
# **A common shortcut, read as a likelihood.** `F.mse_loss(x_hat, x)` averages over all 784 pixels
# (and the batch): adding the KL to it weighs the squared error by $\lambda = 1/784$, a decoder
# with $\sigma^2 = 392$, $\sigma \approx 19.8$, on pixels that live in $[0, 1]$. It assumes noise
# twenty times larger than the whole pixel range, so the KL dominates and the model says little
# about each image — the same $\beta = 784$ as the mean-reduced BCE above.
#
# **MSE or BCE?** Both are likelihoods; they differ in what they assume about a pixel.
#
# | | Bernoulli decoder (BCE) | Gaussian decoder (squared error) |
# |---|---|---|
# | a pixel is | 0 or 1, with probability $\operatorname{sigmoid}(\ell_i)$ | $\hat x_i$ plus noise of standard deviation $\sigma$ |
# | suits | nearly binary images (MNIST) | real-valued data, natural images |
# | gradient of one pixel's term | $\operatorname{sigmoid}(\ell_i) - x_i$ with respect to the logit | $(\hat x_i - x_i)/\sigma^2$ with respect to the mean |
# | weight against the KL | fixed by the model ($\beta = 1$) | a free knob, $\beta = 2\sigma^2$ |
#
# One warning when you compare numbers: the Gaussian term is a *density*, which can exceed 1. With
# $\sigma = 0.1$ a good reconstruction has a **negative** negative log-likelihood, while the BCE of
# grey-level pixels never drops below their entropy. Nats from different likelihoods cannot be
# compared with each other.
#
# ## Exercise 6 · `gaussian_nll` (3 + 1 points)
#
# **Your task.** Write `gaussian_nll(x, x_hat, sigma)`: the exact
# $-\log\mathcal N(x;\ \hat x,\ \sigma^2 I)$ of each image — **summed** over its pixels (every
# dimension after the first), **including the constant** — then averaged over the batch. Return a
# 0-d tensor that keeps the graph to `x_hat` (the loss of a Gaussian decoder must train it).
#
# * `sigma` is the **standard deviation**: a positive number, or a tensor of positive values that
#   broadcasts against `x` (one $\sigma$ per pixel, for instance). `torch.as_tensor(sigma,
#   dtype=x.dtype, device=x.device)` turns either into a tensor you can take `torch.log` of.
# * Write the formula with tensor operations: the tests check it against
#   `torch.distributions.Normal(x_hat, sigma).log_prob(x)`, so do not use that one here.
# * Dividing before squaring, `((x - x_hat) / sigma) ** 2`, stays finite for a very small $\sigma$
#   where `sigma ** 2` would underflow to 0.
# * Raise a `ValueError` when `x` and `x_hat` differ in shape and when `sigma` is not positive
#   (1 point, in a test cell of its own).
# %% solution gaussian_nll
def gaussian_nll(x, x_hat, sigma):
    """-log N(x; x_hat, sigma^2 I) per image (summed over pixels), averaged over the batch."""
    ### BEGIN SOLUTION
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and "
                         f"{tuple(x_hat.shape)}")
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if not bool((sigma > 0).all()):
        raise ValueError("sigma is a standard deviation and must be positive")
    per_pixel = 0.5 * ((x - x_hat) / sigma) ** 2 + torch.log(sigma) + 0.5 * math.log(2 * math.pi)
    return per_pixel.flatten(start_dim=1).sum(dim=1).mean()
    ### END SOLUTION

# %% test test_gaussian_nll points=3
import math
import torch
import torch.nn.functional as F
from torch.distributions import Normal
from genlab.testing import CheckFailed, check_close, check_tensor, devices, forbid_distributions


def _nll_mistakes(x, x_hat, sigma):
    """What typical mistakes return, computed in float64 from the same inputs."""
    x, x_hat = x.detach().double().cpu(), x_hat.detach().double().cpu()
    s = torch.as_tensor(sigma, dtype=torch.float64).cpu().expand_as(x)
    sq, log_s, half_log_2pi = (x - x_hat) ** 2, torch.log(s), 0.5 * math.log(2 * math.pi)

    def per_image(terms):
        return terms.flatten(1).sum(1).mean()

    exact = sq / (2 * s ** 2) + log_s + half_log_2pi
    return {
        "the constant log(sigma) + log(2 pi)/2 per pixel dropped: gaussian_nll is the exact "
        "negative log-likelihood, normalizer included": per_image(sq / (2 * s ** 2)),
        "the log(2 pi)/2 per pixel dropped: keep the whole normalizer": per_image(sq / (2 * s ** 2) + log_s),
        "the log(sigma) per pixel dropped: the normalizer 1/(sigma sqrt(2 pi)) depends on sigma":
            per_image(sq / (2 * s ** 2) + half_log_2pi),
        "sigma used as the variance: sigma is the standard deviation, the variance is sigma^2":
            per_image(sq / (2 * s) + 0.5 * log_s + half_log_2pi),
        "sigma squared twice (sigma^4 in the denominator, or log(sigma^2) with a variance "
        "passed in)": per_image(sq / (2 * s ** 4) + 2 * log_s + half_log_2pi),
        "log(sigma^2) instead of log(sigma): the normalizer is 1/(sigma sqrt(2 pi))":
            per_image(sq / (2 * s ** 2) + 2 * log_s + half_log_2pi),
        "a missing 1/2 in front of the squared error: (x - x_hat)^2 / (2 sigma^2)":
            per_image(sq / s ** 2 + log_s + half_log_2pi),
        "the mean over the pixels instead of the sum: the pixels are independent, so their "
        "log-likelihoods add up": exact.flatten(1).mean(1).mean(),
        "the sum over the batch instead of the mean": exact.flatten(1).sum(),
        "a sign error: the negative log-likelihood of a good reconstruction with a large sigma "
        "is positive; return -log N": -per_image(exact),
        "F.mse_loss (a mean squared error) is not the negative log-likelihood": sq.mean(),
        "the summed squared error alone: divide by 2 sigma^2 and add the normalizer":
            per_image(sq),
        "F.gaussian_nll_loss with its defaults (full=False drops log(2 pi)/2, reduction='mean' "
        "averages over the pixels)": (0.5 * (sq / s ** 2 + 2 * log_s)).mean(),
    }


def _nll_check(sigma, n=5, shape=(1, 28, 28), seed=0, dtype=torch.float32, device="cpu", what=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g, dtype=dtype).to(device)
    x_hat = torch.rand(n, *shape, generator=g, dtype=dtype).to(device)
    label = f"sigma={sigma}" if not isinstance(sigma, torch.Tensor) else f"sigma of shape {tuple(sigma.shape)}"
    what = what or f"gaussian_nll(x, x_hat, {label}) for {n} images of shape {shape} ({dtype})"
    with forbid_distributions(what):
        got = attempt(what, gaussian_nll, x, x_hat, sigma)
    check_tensor(got, what, floating=True, device=device)
    if got.dim() != 0:
        raise CheckFailed(f"{what}: got shape {tuple(got.shape)}, expected a 0-d tensor\n  Hint: "
                          "sum over the pixels of each image, then take the mean over the batch")
    s = torch.as_tensor(sigma, dtype=torch.float64).cpu()
    expected = -Normal(x_hat.double().cpu(), s.expand(x.shape)).log_prob(x.double().cpu())
    expected = expected.flatten(1).sum(1).mean()
    check_close(got.double().cpu(), expected, what, atol=1e-3, rtol=1e-5,
                mistakes=_nll_mistakes(x, x_hat, sigma))
    return got


_nll_check(0.3)
_nll_check(0.05, seed=1)
# A good reconstruction under a small sigma: a density above 1, so the value is negative.
_x = torch.full((2, 1, 2, 2), 0.5)
check_close(attempt("gaussian_nll(x, x, sigma=0.1)", gaussian_nll, _x, _x.clone(), 0.1),
            torch.tensor(4 * (math.log(0.1) + 0.5 * math.log(2 * math.pi))),
            "gaussian_nll(x, x, sigma=0.1) for two 2x2 images: 4 (log 0.1 + log(2 pi)/2) = -5.53",
            atol=1e-4, rtol=1e-6, mistakes=_nll_mistakes(_x, _x, 0.1))
_x_hat = torch.rand(3, 1, 28, 28, requires_grad=True)
_what = "gaussian_nll(x, x_hat, 0.2) when x_hat requires gradients"
_loss = attempt(_what, gaussian_nll, torch.rand(3, 1, 28, 28), _x_hat, 0.2)
if not (isinstance(_loss, torch.Tensor) and _loss.requires_grad):
    raise CheckFailed(f"{_what}: the result is cut off from autograd\n  Hint: do not call .item(), "
                      ".detach() or torch.tensor(...) on the result; return the tensor itself")
### BEGIN HIDDEN TESTS
_nll_check(2.0, seed=2, dtype=torch.float64)
_nll_check(0.7, n=1, seed=3)
_nll_check(0.4, n=4, shape=(3, 5, 5), seed=4)
_nll_check(1.5, n=6, shape=(10,), seed=5)
_nll_check(torch.tensor(0.25), seed=6, what="gaussian_nll(x, x_hat, sigma=torch.tensor(0.25))")
_nll_check(0.1 + torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(7)), seed=7,
           what="gaussian_nll(x, x_hat, sigma) with one sigma per pixel, shape (1, 1, 28, 28)")
_nll_check(1e-20, n=2, shape=(1, 2, 2), seed=8, dtype=torch.float64,
           what="gaussian_nll(x, x_hat, sigma=1e-20) in float64 (sigma^2 = 1e-40)")
for _dev in devices():
    _nll_check(0.3, seed=9, device=_dev, what=f"gaussian_nll on {_dev.type}")
### END HIDDEN TESTS

# %% test test_gaussian_nll_errors points=1
import torch
from genlab.testing import check_raises

check_raises(lambda: gaussian_nll(torch.rand(3, 1, 28, 28), torch.rand(2, 1, 28, 28), 0.5),
             ValueError, "gaussian_nll with x (3, 1, 28, 28) and x_hat (2, 1, 28, 28)",
             hint="compare x.shape with x_hat.shape and raise ValueError when they differ")
check_raises(lambda: gaussian_nll(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28), 0.0),
             ValueError, "gaussian_nll(x, x_hat, sigma=0)",
             hint="sigma is a standard deviation: raise ValueError unless it is positive")
### BEGIN HIDDEN TESTS
check_raises(lambda: gaussian_nll(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4), -0.5),
             ValueError, "gaussian_nll(x, x_hat, sigma=-0.5)",
             hint="sigma is a standard deviation: raise ValueError unless it is positive")
check_raises(lambda: gaussian_nll(torch.rand(4, 1, 4, 4), torch.rand(1, 1, 4, 4), 0.5),
             ValueError, "gaussian_nll with x (4, 1, 4, 4) and x_hat (1, 1, 4, 4)",
             hint="compare x.shape with x_hat.shape and raise ValueError when they differ, even "
                  "when the two shapes would broadcast")
check_raises(lambda: gaussian_nll(torch.rand(2, 1, 2, 2), torch.rand(2, 1, 2, 2),
                                  torch.tensor([[[[0.5, 0.5], [0.0, 0.5]]]])),
             ValueError, "gaussian_nll with a sigma per pixel that has a 0",
             hint="every value of a sigma tensor must be positive: check (sigma > 0).all()")
### END HIDDEN TESTS

# %% [markdown]
# ### The β-VAE in disguise, checked
#
# The derivation says: for a fixed $\sigma$, $2\sigma^2$ times the Gaussian negative ELBO equals
# the summed squared error plus $\beta = 2\sigma^2$ times the KL, up to the constant
# $2\sigma^2 D\log(\sigma\sqrt{2\pi})$ — so the two losses have the same gradients up to the factor
# $2\sigma^2$, and gradient descent on one is gradient descent on the other with a rescaled learning
# rate. The cell checks it on a fresh conv VAE (your `VAE`) and one batch of test digits: the same
# $z$ for both losses, the decoder mean $\hat x = \operatorname{sigmoid}(\ell)$, gradients with
# respect to every weight.
# %% demo
torch.manual_seed(0)
check_model = VAE(20)
check_batch = x_test_all[:64]
check_logits, check_mu, check_logvar = check_model(check_batch)   # one z, shared by both losses
x_mean = torch.sigmoid(check_logits)
kl_term = kl_to_standard_normal(check_mu, check_logvar).mean()
sse = (check_batch - x_mean).pow(2).flatten(1).sum(1).mean()
params = list(check_model.parameters())
pixels = check_batch[0].numel()
print(f"{'sigma':>7}{'lambda':>10}{'beta':>9}{'2s^2(-ELBO) - (SSE + beta KL)':>31}"
      f"{'2s^2 D log(s sqrt(2pi))':>26}{'largest gradient gap':>22}")
for sigma in [0.05, 0.1, 0.3, 1.0]:
    beta = 2 * sigma ** 2
    gaussian_elbo = gaussian_nll(check_batch, x_mean, sigma) + kl_term   # the negative ELBO
    weighted = sse + beta * kl_term                                 # the beta-weighted loss
    grads_elbo = torch.autograd.grad(gaussian_elbo, params, retain_graph=True)
    grads_weighted = torch.autograd.grad(weighted, params, retain_graph=True)
    gap = max(((beta * a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
              for a, b in zip(grads_elbo, grads_weighted))
    constant = beta * pixels * math.log(sigma * math.sqrt(2 * math.pi))
    print(f"{sigma:>7}{1 / beta:>10.1f}{beta:>9.4f}{(beta * gaussian_elbo - weighted).item():>31.2f}"
          f"{constant:>26.2f}{gap:>22.1e}")
print(f"F.mse_loss + KL weighs the squared error by 1/{pixels}: sigma = sqrt({pixels}/2) = "
      f"{math.sqrt(pixels / 2):.1f}, beta = {pixels}")

# %% [markdown]
# What to look for. In every row the two middle columns agree (up to float32 rounding): the
# difference of the two losses is the constant, whatever the weights of the network. The last
# column, the largest relative difference between $2\sigma^2\,\nabla(-\text{ELBO})$ and
# $\nabla(\text{SSE} + \beta\,\text{KL})$ over all weights, is at the level of float32
# rounding (a few times $10^{-6}$ or below): the gradients are the same. Going down the table,
# $\sigma$ grows, the weight $\lambda$ on the squared error shrinks and $\beta$ grows — from
# $0.005$ at $\sigma = 0.05$ to $2$ at $\sigma = 1$. Part 7 trains models at several $\beta$ and
# shows what that knob does to reconstructions and samples.
# %% [markdown]
# ## Part 5 · Training on MNIST
#
# Everything comes together: your `VAE`, trained with your `elbo_loss` by genlab's training loop.
# For comparison we train the VAE of **pytorch/examples** (`vae/main.py`): a multilayer perceptron
# 784–400–20 with 400–784 back, Adam with learning rate $10^{-3}$, batch 128, the same grey-level
# BCE. On the full MNIST training set it reaches a test loss of about 106 nats after 10 epochs.
# Here both models see the same images, the same number of epochs and the same optimizer.
#
# **Budget.** On a CPU the cell uses up to 5,000 training digits and 20 epochs per model (the
# bundled fallback has 4,000); with `GENLAB_FAST=1`, a few batches. **With a GPU** it switches to the
# full training set and **10 epochs** — pytorch/examples' setting, so your test loss is directly
# comparable with its 106 nats. Set `GENLAB_NO_GPU_BUDGET=1` before starting Jupyter to use the
# CPU numbers anyway.
# %% demo
from genlab.training import evaluate, fit
from genlab.vae import MLPVAE

device = get_device()
TRAIN_LIMIT = budget(default=5000, fast=256, gpu=None)   # gpu: all 60,000 MNIST digits
EPOCHS = budget(default=20, fast=1, gpu=10)               # gpu: pytorch/examples' epochs
LATENT_DIM, LR, BATCH_SIZE = 20, 1e-3, 128
x_train, y_train = load_mnist("train", limit=TRAIN_LIMIT)
x_test, y_test = x_test_all[:budget(default=None, fast=200)], y_test_all[:budget(default=None, fast=200)]
print(f"device {device}; {len(x_train):,} training and {len(x_test):,} test images; "
      f"{EPOCHS} epochs per model")


def vae_objective(model, x, beta=1.0):
    """A loss_fn for fit and evaluate: your elbo_loss, with recon and kl logged."""
    logits, mu, logvar = model(x)
    loss, recon, kl = elbo_loss(logits, x, mu, logvar, beta)
    return loss, {"recon": recon, "kl": kl}


def test_elbo(model):
    """The negative ELBO on the test images, one sample of z per image (seeded)."""
    torch.manual_seed(0)
    return evaluate(model, x_test, vae_objective)


models, histories, results = {}, {}, {}
for name, make in [("conv VAE (yours)", lambda: VAE(LATENT_DIM)), ("MLP VAE (pytorch/examples)", lambda: MLPVAE(LATENT_DIM))]:
    torch.manual_seed(0)
    model = make().to(device)
    histories[name] = fit(model, x_train, vae_objective, epochs=EPOCHS, lr=LR,
                          batch_size=BATCH_SIZE, generator=0, desc=name)
    models[name] = model.eval()
    results[name] = test_elbo(model)

print(f"{'':>28}{'test -ELBO':>12}{'recon':>9}{'KL':>8}{'train time':>12}")
for name, r in results.items():
    print(f"{name:>28}{r['loss']:>12.1f}{r['recon']:>9.1f}{r['kl']:>8.1f}"
          f"{histories[name].seconds:>10.0f} s")
vae = models["conv VAE (yours)"]

# %% demo
fig, axes = subplots(1, 3, figsize=(15, 3.8))
for ax, key, label in zip(axes, ["loss", "recon", "kl"],
                          ["negative ELBO", "reconstruction", "KL"]):
    curves = {name: (h.epoch_losses if key == "loss" else h.metrics[key])
              for name, h in histories.items()}
    plot_curves(curves, ylabel=f"{label} (nats per image)", ax=ax)
    ax.set_title(f"training {label}")
show(fig)

# %% [markdown]
# **What we measured** with the default CPU budget (the 4,000 bundled digits, 20 epochs, the
# 1,000 bundled test digits, one sample of $z$ per image): your conv VAE — with the suggested
# architecture — reaches a test negative ELBO of **114.2 nats** (reconstruction 89.3, KL 24.9); the
# MLP VAE of pytorch/examples, trained on the same images for the same 20 epochs with the same
# optimizer, **123.0 nats** (reconstruction 101.4, KL 21.7). So at equal epochs on the same data
# the conv VAE is ahead by about 9 nats; in an earlier check after 10 epochs the gap was wider
# (about 125 against 137). Its convolutions share weights across positions and know that
# neighbouring pixels belong together, which the MLP must learn from 4,000 examples. Both numbers
# are above pytorch/examples' 106 because 4,000 images are 15 times fewer than MNIST's 60,000:
# fewer steps per epoch and more overfitting. The conv VAE also spends *more* nats on the KL: a
# better decoder can make use of more information in the code. (The GPU budget trains on all
# 60,000 digits for pytorch/examples' 10 epochs; we have not measured it on a GPU here — compare
# your number with the 106.)
#
# **Reading the number.** The ELBO bounds $\log p_\theta(x)$ from below, so a test negative ELBO of
# 114.2 nats per image says that the test digits' $\log p_\theta(x)$ averages at least $-114.2$:
# a geometric-mean likelihood score of at least $e^{-114.2} \approx 2.5 \times 10^{-50}$ per image.
# That score is *not* the probability of the image. The Bernoulli formula
# $\prod_i p_i^{x_i}(1 - p_i)^{1 - x_i}$ is a probability only for pixels that are exactly 0 or 1;
# with our grey levels in $[0, 1]$ it becomes a cross-entropy score, like a density that is not
# normalized over the space of grey-level images. The number is only meaningful in comparison (a
# lower negative ELBO is better), and only across models trained and evaluated with the same
# likelihood on the same data.
#
# ## Part 6 · Using the model
#
# ### Reconstructions
#
# Encode a test digit, decode its posterior mean $\mu$ (no sampling), apply the sigmoid. The VAE's
# reconstructions are smoother than a plain autoencoder's: the KL term limits how much information
# about each image the code may carry.
# %% demo
def reconstruct(model, x):
    with torch.no_grad():
        mu, _ = model.encode(x.to(device))
        return torch.sigmoid(model.decode(mu)).cpu()


examples = x_test_all[:10]
show_rows({"test digit": examples,
           "conv VAE": reconstruct(models["conv VAE (yours)"], examples),
           "MLP VAE": reconstruct(models["MLP VAE (pytorch/examples)"], examples)},
          title="Reconstructions from the posterior mean")

# %% [markdown]
# ### Generating new digits
#
# A VAE is a generative model: draw $z \sim \mathcal N(0, I)$, decode, apply the sigmoid. (We show
# the pixel *probabilities*, the mean of the Bernoulli decoder; sampling black-and-white pixels from
# them would add salt-and-pepper noise.)
#
# ## Exercise 7 · `sample_prior` (2 points)
#
# **Your task.** Write `sample_prior(model, n, generator=None)`: draw `n` codes of size
# `model.latent_dim` from the standard normal prior and return `torch.sigmoid(model.decode(z))`,
# shape `(n, 1, 28, 28)`, on the model's device. As in lab 3, draw on the generator's device (or on
# the model's device without a generator) and then move the codes to the model's device; the
# model's device is `next(model.parameters()).device`. Sampling needs no gradients: run it under
# `torch.no_grad()`.
# %% solution sample_prior
def sample_prior(model, n, generator=None):
    """n images in [0, 1] decoded from codes z ~ N(0, I) of size model.latent_dim."""
    ### BEGIN SOLUTION
    device = next(model.parameters()).device
    where = device if generator is None else generator.device
    with torch.no_grad():
        z = torch.randn(n, model.latent_dim, generator=generator, device=where).to(device)
        return torch.sigmoid(model.decode(z))
    ### END SOLUTION

# %% test test_sample_prior points=2
import math
import torch
from torch import nn
from genlab.testing import CheckFailed, check_close, check_number, check_tensor, devices


class _CodeDecoder(nn.Module):
    """A fake VAE whose logits show the code: the first latent_dim pixels are z, the rest 0."""

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        self.gain = nn.Parameter(torch.ones(()))

    def decode(self, z):
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise CheckFailed(f"sample_prior: decode received codes of shape {tuple(z.shape)} but "
                              f"model.latent_dim is {self.latent_dim}\n  Hint: this looks like a "
                              "hard-coded latent size: draw codes (n, model.latent_dim)")
        logits = torch.zeros(len(z), 784, device=z.device, dtype=z.dtype)
        logits[:, :self.latent_dim] = z
        return (logits * self.gain).reshape(-1, 1, 28, 28)


def _sp_draw(latent_dim, n, generator=None, dev="cpu"):
    model = _CodeDecoder(latent_dim).to(dev)
    what = f"sample_prior(model, {n}) for a model with latent_dim = {latent_dim} on {dev}"
    images = attempt(what, sample_prior, model, n, generator=generator)
    check_tensor(images, what, shape=(n, 1, 28, 28), floating=True, device=dev)
    if images.requires_grad:
        raise CheckFailed(f"{what}: the images carry gradients\n  Hint: sampling needs no "
                          "gradients: run it under torch.no_grad()")
    if images.min() < 0 or images.max() > 1:
        raise CheckFailed(f"{what}: values outside [0, 1]\n  Hint: this looks like returning the "
                          "decoder's logits: apply torch.sigmoid")
    if images.flatten(1)[:, latent_dim:].sub(0.5).abs().max() > 1e-6:
        raise CheckFailed(f"{what}: the images are not sigmoid(model.decode(z))\n  Hint: decode "
                          "the codes and apply torch.sigmoid once")
    return images, torch.logit(images.flatten(1)[:, :latent_dim].double().cpu(), eps=1e-12)


def _sp_statistics(latent_dim=3, n=6000, seed=0):
    z = _sp_draw(latent_dim, n, generator=torch.Generator().manual_seed(seed))[1]
    what = f"the codes sample_prior drew ({n:,} codes of size {latent_dim})"
    check_number(z.mean().item(), 0.0, f"{what}: their mean", rel=0, abs_=0.04,
                 mistakes={"uniform codes (torch.rand) instead of standard normal ones (torch.randn)": 0.5})
    check_number(z.std().item(), 1.0, f"{what}: their standard deviation", rel=0.04,
                 mistakes={"uniform codes (torch.rand) instead of standard normal ones": 1 / math.sqrt(12)})
    corr = torch.corrcoef(z.T)
    off = (corr - torch.eye(latent_dim, dtype=corr.dtype)).abs().max().item()
    check_number(off, 0.0, f"{what}: the largest correlation between two latent dimensions", rel=0,
                 abs_=0.06, mistakes={"one random number per sample repeated in every dimension: "
                                      "draw a (n, latent_dim) tensor": 1.0})


def _sp_generator(latent_dim=4, n=8, seed=0):
    a = _sp_draw(latent_dim, n, generator=torch.Generator().manual_seed(seed))[0]
    torch.rand(5)   # move the global random state: a seeded generator must not care
    b = _sp_draw(latent_dim, n, generator=torch.Generator().manual_seed(seed))[0]
    check_close(b, a, f"sample_prior(model, {n}) twice with generators seeded alike",
                hint="pass generator=generator to torch.randn")
    c = _sp_draw(latent_dim, n, generator=torch.Generator().manual_seed(seed + 1))[0]
    if torch.equal(a, c):
        raise CheckFailed(f"sample_prior(model, {n}) with two differently seeded generators gave "
                          "the same images\n  Hint: this looks like a seed reset inside the function")
    rows = _sp_draw(latent_dim, 32)[1]
    if torch.allclose(rows[1:], rows[:-1]):
        raise CheckFailed("sample_prior: every sample is the same\n  Hint: draw n codes, one per "
                          "image")


_sp_statistics()
_sp_generator()
### BEGIN HIDDEN TESTS
_sp_statistics(latent_dim=7, n=5000, seed=1)
_sp_generator(latent_dim=1, n=3, seed=2)
_sp_draw(2, 1)
for _dev in devices():
    _sp_draw(5, 4, generator=torch.Generator().manual_seed(3), dev=_dev)
    _sp_draw(5, 4, dev=_dev)
### END HIDDEN TESTS

# %% [markdown]
# Samples from your conv VAE and from the MLP VAE, decoded from the *same* codes:
# %% demo
for name, model in models.items():
    show_images(sample_prior(model, 32, generator=torch.Generator().manual_seed(0)).cpu(),
                title=f"samples from the prior: {name}")

# %% [markdown]
# Most samples are recognisable digits, some are hybrids (a code between a 4 and a 9 draws something
# in between), all are smooth. The blur is the price of the Bernoulli likelihood and of the KL
# term: a VAE averages over everything its posterior considers possible. The GANs of labs 7 and 8
# trade that away for sharpness.
#
# ### Walking between two digits
#
# Because the prior term packs codes into one dense ball, the straight line between the codes of
# two digits stays where the decoder has been trained, and every point on it decodes to a digit.
# Compare that with a blend of the two *images*, which is two half-transparent digits on top of each
# other.
#
# ## Exercise 8 · `interpolate` (3 points)
#
# **Your task.** Write `interpolate(model, x_a, x_b, steps)`: encode the two images (each `(1, 28,
# 28)` or `(1, 1, 28, 28)`), take their posterior **means** $\mu_a, \mu_b$ (not sampled codes: the
# path should not jitter), decode `steps` evenly spaced points
# $z_t = (1 - t)\,\mu_a + t\,\mu_b$ for $t = 0, \frac1{\text{steps}-1}, \dots, 1$ (both ends
# included: `torch.linspace`), and return their sigmoid images, shape `(steps, 1, 28, 28)`, in
# order from `x_a` to `x_b`. No gradients are needed.
# %% solution interpolate
def interpolate(model, x_a, x_b, steps):
    """Decode `steps` evenly spaced points from the posterior mean of x_a to that of x_b."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        x = torch.stack([x_a.reshape(1, 28, 28), x_b.reshape(1, 28, 28)])
        mu, _ = model.encode(x)
        t = torch.linspace(0.0, 1.0, steps, device=mu.device).unsqueeze(1)
        return torch.sigmoid(model.decode((1 - t) * mu[0] + t * mu[1]))
    ### END SOLUTION

# %% test test_interpolate points=3
import torch
from torch import nn
from genlab.testing import CheckFailed, check_close, check_tensor, devices


class _LinearVAE(nn.Module):
    """A tiny linear VAE with a known encoder and decoder."""

    def __init__(self, latent_dim=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.latent_dim = latent_dim
        self.enc = nn.Parameter(torch.randn(784, latent_dim, generator=g) / 10)
        self.dec = nn.Parameter(torch.randn(latent_dim, 784, generator=g))

    def encode(self, x):
        h = x.reshape(len(x), 784) @ self.enc
        return h, torch.zeros_like(h)          # sigma = 1: sampled codes differ a lot from mu

    def decode(self, z):
        return (z @ self.dec).reshape(-1, 1, 28, 28)

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(mu + torch.randn_like(mu)), mu, logvar


def _ip_check(steps=5, seed=0, dev="cpu", shapes=((1, 28, 28), (1, 28, 28))):
    model = _LinearVAE(seed=seed).to(dev)
    g = torch.Generator().manual_seed(seed)
    x_a = torch.rand(shapes[0], generator=g).to(dev)
    x_b = torch.rand(shapes[1], generator=g).to(dev)
    what = (f"interpolate(model, x_a, x_b, steps={steps}) for images shaped {tuple(x_a.shape)} "
            f"and {tuple(x_b.shape)} on {dev}")
    out = attempt(what, interpolate, model, x_a, x_b, steps)
    check_tensor(out, what, floating=True, device=dev)
    with torch.no_grad():
        mu_a = model.encode(x_a.reshape(1, 1, 28, 28))[0][0]
        mu_b = model.encode(x_b.reshape(1, 1, 28, 28))[0][0]
        t = torch.linspace(0, 1, steps, device=dev)[:, None]
        right = torch.sigmoid(model.decode((1 - t) * mu_a + t * mu_b))
        t_open = (torch.arange(steps, device=dev) / steps)[:, None]
        flat_a, flat_b = x_a.reshape(1, 1, 28, 28), x_b.reshape(1, 1, 28, 28)
        ends = torch.sigmoid(model.decode(torch.stack([mu_a, mu_b])))
        mistakes = {
            "the logits: apply torch.sigmoid to the decoded images": model.decode((1 - t) * mu_a + t * mu_b),
            "a blend of the two images in pixel space: interpolate the codes, then decode":
                (1 - t[:, :, None, None]) * flat_a + t[:, :, None, None] * flat_b,
            "a blend of the two decoded images: decode points on the line between the codes":
                (1 - t[:, :, None, None]) * ends[:1] + t[:, :, None, None] * ends[1:],
            "the end point x_b missing (t = k / steps): use torch.linspace(0, 1, steps)":
                torch.sigmoid(model.decode((1 - t_open) * mu_a + t_open * mu_b)),
            "the path reversed: start at x_a and end at x_b": right.flip(0),
            "sampled codes instead of the posterior means: use mu from encode, without noise":
                lambda a: not torch.allclose(a, interpolate(model, x_a, x_b, steps), atol=1e-6),
        }
    check_close(out, right, what, atol=1e-5, rtol=1e-4, mistakes=mistakes)


_ip_check()
_ip_check(steps=2, seed=1, shapes=((1, 1, 28, 28), (1, 1, 28, 28)))
### BEGIN HIDDEN TESTS
_ip_check(steps=9, seed=2, shapes=((1, 28, 28), (1, 1, 28, 28)))
_ip_check(steps=3, seed=3)
for _dev in devices():
    _ip_check(steps=4, seed=4, dev=_dev)
### END HIDDEN TESTS

# %% [markdown]
# **Interpolation explorer.** Pick two digit classes and which test example of each; the rows show
# the path between them through the code space of your conv VAE and, for contrast, a blend of the
# two images.
# %% demo
by_digit = {d: x_test_all[y_test_all == d] for d in range(10)}


def render_path(digit_a=3, digit_b=8, example=0, steps=10):
    x_a = by_digit[digit_a][example % len(by_digit[digit_a])]
    x_b = by_digit[digit_b][example % len(by_digit[digit_b])]
    t = torch.linspace(0, 1, steps)[:, None, None, None]
    return show_rows({"through the code": interpolate(vae, x_a.to(device), x_b.to(device), steps).cpu(),
                      "image blend": (1 - t) * x_a + t * x_b},
                     title=f"from {digit_a} to {digit_b}", display=False)


explore(render_path, {"digit_a": (0, 9, 1, 3), "digit_b": (0, 9, 1, 8), "example": (0, 20, 1, 0),
                      "steps": (3, 14, 1, 10)},
        title="Interpolating between two test digits")

# %% [markdown]
# ## Part 7 · Two-dimensional codes: the manifold, and the price of β
#
# With a 2-D code we can *look* at the whole latent space. Kingma & Welling's famous figure decodes a
# regular grid of codes. Because the prior is $\mathcal N(0, I)$, they spaced the grid by the
# prior's quantiles — a grid of equal probability mass, $z = \Phi^{-1}(u)$ for evenly spaced $u \in
# (0, 1)$ — so that the picture covers the region the prior actually uses.
#
# We train three 2-D VAEs that differ only in $\beta$, the weight of the KL term:
#
# * $\beta = 1$: the real negative ELBO;
# * $\beta = 0.1$: reconstruction matters ten times more than staying near the prior — almost an
#   autoencoder;
# * $\beta = 8$: the prior term dominates.
#
# The lecture predicts the trade-off: a large weight on the data term gives crisp reconstructions but
# a code that is not Gaussian, so codes drawn from the prior land in **holes** and decode badly; a
# large weight on the prior gives a code that follows the prior but **blurry** reconstructions.
# These models get a smaller budget (12 epochs on CPU).
#
# Both sides are measured: the test **reconstruction term** (lower is better) and the quality of
# 1,000 **prior samples**, scored by `genlab.quality.sample_quality` (lab 7 explains it): the
# Fréchet distance between the features a small digit classifier sees in the samples and in the
# real test digits — lower is better, real digits score about 4.
# %% demo
from genlab.quality import sample_quality

BETAS = [0.1, 1.0, 8.0]
EPOCHS_2D = budget(default=12, fast=1, gpu=30)
N_PRIOR = budget(default=1000, fast=200)                  # prior samples scored per model
models_2d, results_2d, prior_2d = {}, {}, {}
for beta in BETAS:
    torch.manual_seed(0)
    model = VAE(2).to(device)
    fit(model, x_train, lambda m, x, beta=beta: vae_objective(m, x, beta), epochs=EPOCHS_2D,
        lr=LR, batch_size=BATCH_SIZE, generator=0, desc=f"2-D VAE, beta = {beta}")
    models_2d[beta] = model.eval()
    results_2d[beta] = test_elbo(model)        # beta = 1 here: the true negative ELBO
    with torch.no_grad():                      # lab 7's score of N_PRIOR decoded prior codes
        z_prior = torch.randn(N_PRIOR, 2, generator=torch.Generator().manual_seed(1))
        prior_2d[beta] = sample_quality(torch.sigmoid(model.decode(z_prior.to(device))).cpu())
    print(f"beta = {beta:>4}: test recon {results_2d[beta]['recon']:6.1f}, "
          f"KL {results_2d[beta]['kl']:5.2f}, negative ELBO {results_2d[beta]['loss']:6.1f} nats; "
          f"prior samples: Fréchet distance {prior_2d[beta].fd:5.0f}")

# %% demo
u = np.linspace(0.05, 0.95, 15)                             # evenly spaced probabilities
q = torch.tensor(stats.norm.ppf(u), dtype=torch.float32)    # ... mapped through the inverse CDF
z_row, z_col = torch.meshgrid(q.flip(0), q, indexing="ij")  # top row: largest z_2
manifold_codes = torch.stack([z_col.reshape(-1), z_row.reshape(-1)], dim=1)
with torch.no_grad():
    manifold = torch.sigmoid(models_2d[1.0].decode(manifold_codes.to(device))).cpu()
show_images(manifold, nrow=15, title="The learnt 2-D manifold, beta = 1 (Kingma & Welling's "
                                     "quantile grid)")

# %% [markdown]
# Reading the figure: moving across it changes the digit *continuously* — slant, width and class
# morph into each other, with no empty regions — because every point of the plane near the prior's
# mass has been used by some training digit. (Column $j$ and row $k$ sit at
# $z = (\Phi^{-1}(u_j), \Phi^{-1}(u_k))$ with $u$ evenly spaced from 0.05 to 0.95, so each image
# stands for the same share of the prior's probability.)
#
# Now the three values of $\beta$ side by side. Top: where the test digits' posterior means lie
# (coloured by digit, with the circle of radius 2, which holds 86 % of the prior's mass). Bottom: what
# each decoder draws on a regular grid over $[-2.5, 2.5]^2$ — the region the prior samples from.
# %% demo
circle = np.linspace(0, 2 * np.pi, 200)
fig, axes = subplots(2, len(BETAS), figsize=(5.2 * len(BETAS), 9.6))
with torch.no_grad():
    for ax, ax_grid, beta in zip(axes[0], axes[1], BETAS):
        mu, _ = models_2d[beta].encode(x_test.to(device))
        plot_latent_scatter(mu.cpu(), y_test, ax=ax, s=4)
        ax.plot(2 * np.cos(circle), 2 * np.sin(circle), color="black", lw=1)
        ax.set_title(f"beta = {beta}: test posterior means")
        ax.set_aspect("equal")
        latent_grid(lambda z, m=models_2d[beta]: torch.sigmoid(m.decode(z)), lim=2.5, n=12,
                    device=device, ax=ax_grid)
        ax_grid.set_title(f"beta = {beta}: decoded grid")
show(fig)

codes = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
rows = {"test digit": examples}
for beta in BETAS:
    rows[f"beta = {beta}: reconstruction"] = reconstruct(models_2d[beta], examples)
for beta in BETAS:
    with torch.no_grad():
        rows[f"beta = {beta}: prior sample"] = torch.sigmoid(models_2d[beta].decode(codes.to(device))).cpu()
show_rows(rows, title="The same test digits and the same prior codes for three values of beta")

# %% [markdown]
# The reconstruction/KL trade-off as numbers: each model's test reconstruction term against its KL
# term ("rate" and "distortion" in information-theory language). Lowering $\beta$ buys lower
# reconstruction error with more nats in the code.
# %% demo
fig, (ax_bars, ax_rd) = subplots(1, 2, figsize=(11, 3.8))
plot_bars([results_2d[b]["recon"] for b in BETAS], labels=[f"beta = {b}" for b in BETAS],
          ylabel="test reconstruction (nats)", ax=ax_bars)
ax_bars.set_ylim(min(results_2d[b]["recon"] for b in BETAS) * 0.9, None)
ax_rd.plot([results_2d[b]["kl"] for b in BETAS], [results_2d[b]["recon"] for b in BETAS], "o-")
for b in BETAS:
    ax_rd.annotate(f"beta = {b}", (results_2d[b]["kl"], results_2d[b]["recon"]),
                   textcoords="offset points", xytext=(6, 4))
ax_rd.set_xlabel("KL term (nats): information in the code")
ax_rd.set_ylabel("reconstruction term (nats)")
ax_rd.set_title("the trade-off")
show(fig)

# %% [markdown]
# What to look for. At the default CPU budget (the bundled digits, 12 epochs per model) expect
# test KL terms of about 13–15, 5.5 and 1.5–2 nats for β = 0.1, 1 and 8. Over five seeds (of
# the initialization and the batch order; seed 0 is the one above) the β = 8 model's
# reconstruction term was higher than the β = 0.1 model's in every seed, by 3–14 nats (blurrier
# reconstructions), and its prior samples were better in every seed: a Fréchet distance lower by
# 44–167 (580–760 against 750–860; both far above the 4 of real digits — decoded from a 2-D
# code, all samples are blurry).
#
# * **β = 0.1, nearly an autoencoder.** The code carries the most information (the largest KL,
#   with posterior standard deviations around 0.05), and the posterior means spread far outside the
#   prior's circle — in our run the 1s sat near $z_2 \approx -6$, six prior standard deviations
#   out. The prior, meanwhile, puts most of its mass where few digits were encoded: many prior
#   samples decode to smudges. These are the **holes in the latent space**.
# * **β = 1.** The codes are pulled towards the circle and the decoded grid is mostly digits.
# * **β = 8.** The prior wins: the codes are packed into the circle, the code carries the fewest
#   nats, and reconstructions are **blurrier** and less faithful — different test digits come back
#   as the same vague shape.
#
# Between β = 0.1 and β = 1 the reconstruction terms are within about two nats of each other at
# this budget, and β = 1 was even slightly *lower* in all five seeds: 2-D VAEs learn slowly, and
# the β = 0.1 decoder needs more steps to turn its precise codes into sharper images. The
# trade-off shows clearly between the two ends; the GPU budget (30 epochs on 60,000 digits) or
# more epochs here (`EPOCHS_2D`) sharpen the low end.
#
# ## The figures of this run
# %% demo
for name, r in results.items():
    print(f"{name:>28}: test -ELBO {r['loss']:6.1f} nats (recon {r['recon']:.1f}, KL {r['kl']:.1f}), "
          f"{EPOCHS} epochs on {len(x_train):,} digits")
for beta in BETAS:
    r = results_2d[beta]
    print(f"{'2-D VAE, beta = ' + str(beta):>28}: test recon {r['recon']:6.1f}, KL {r['kl']:5.2f}")

# %% [markdown]
# ## Part 8 · Telling the model which digit: a conditional VAE, and arithmetic in the code
#
# Your VAE was never shown a label. To draw a *7* on request it has to be told, and the simplest
# way is to give the label $y$ to both networks. The **conditional VAE** (Sohn et al. 2015) has an
# encoder $q_\phi(z \mid x, y)$, a decoder $p_\theta(x \mid z, y)$ and the same prior
# $p(z) = \mathcal N(0, I)$; the ELBO of Part 1 holds with every term conditioned on $y$:
#
# $$\log p_\theta(x \mid y) \;\ge\; \mathbb E_{q_\phi(z \mid x, y)}\big[\log p_\theta(x \mid z, y)\big]
#   - \mathrm{KL}\big(q_\phi(z \mid x, y)\,\|\,p(z)\big).$$
#
# In code that is one change: the one-hot label is appended to the encoder's input (784 + 10
# numbers) and to the decoder's input ($d$ + 10). The loss is your `elbo_loss` unchanged
# (`genlab.conditional.ConditionalVAE`, the MLP of Part 5 with those ten extra inputs).
#
# Why this changes what the code means: the decoder already knows *which* digit to draw, so a
# code that also said it would pay KL nats for nothing. What the code keeps is what the label does
# not say — the **style**: slant, stroke width, size. Two consequences to look for below: a prior
# sample decoded with label $k$ is a $k$, and one test digit's code decoded with each of the ten
# labels writes the ten digits in that digit's hand.
# %% demo
from genlab.conditional import ConditionalVAE, cvae_loss, restyle
from genlab.conditional import sample as sample_conditional
from genlab.quality import digit_classifier

torch.manual_seed(0)
cvae = ConditionalVAE(latent_dim=2).to(device)   # a 2-D code: room for style, not for the digit
fit(cvae, (x_train, y_train), cvae_loss, epochs=EPOCHS, lr=LR, batch_size=BATCH_SIZE, generator=0,
    desc="conditional VAE")
cvae.eval()
classifier = digit_classifier("cpu")     # lab 7's small digit classifier, as an impartial reader


def read_as(images, labels):
    """The share of ``images`` that the digit classifier reads as the digit in ``labels``."""
    with torch.no_grad():
        return (classifier(images.cpu()).argmax(1) == labels.cpu()).float().mean().item()


labels = torch.arange(10).repeat(100)
drawn = sample_conditional(cvae, labels, generator=torch.Generator().manual_seed(3))
show_images(drawn[:100], nrow=10, title="z ~ N(0, I) decoded with the label of each column")
styled = restyle(cvae, x_test[:100], y_test[:100], torch.arange(10))
show_rows({f"a test {int(y_test[i])}": torch.cat([x_test[i:i + 1], styled[i]]) for i in range(6)},
          title="left: a test digit; then its code decoded with the labels 0, 1, ..., 9")
print(f"the classifier reads {100 * read_as(drawn, labels):.0f}% of 1,000 conditional samples, and "
      f"{100 * read_as(styled.flatten(0, 1), torch.arange(10).repeat(100)):.0f}% of 1,000 restyled "
      "test digits, as the digit asked for")

# %% [markdown]
# **Arithmetic in an unconditional code.** Can your plain VAE of Part 5 do the same without labels?
# Radford et al. (2016) found that directions in a GAN's code carry meaning ("smiling woman" −
# "neutral woman" + "neutral man"); for a VAE, take the mean code of each class,
# $\bar z_k = \frac{1}{|C_k|}\sum_{x \in C_k} \mu(x)$, and move a digit of class $a$ by the
# difference between two class means:
#
# $$z' = \mu(x) - \bar z_a + \bar z_b .$$
#
# If the classes were neat clusters offset by one vector each, $z'$ would decode to a $b$ in the
# hand of $x$. They are not: class regions are curved and of different sizes, so the move lands in
# the $b$ region only part of the time, and the style is kept only roughly.
# %% demo
from genlab.conditional import class_means, latent_arithmetic

plain_vae = models["conv VAE (yours)"]
means = class_means(plain_vae, x_test, y_test)
moves = [(1, 7), (3, 8), (4, 9), (5, 6), (7, 2)]
rows, moved_all, targets = {}, [], []
for a, b in moves:
    x_a = x_test[y_test == a][:100]
    moved = latent_arithmetic(plain_vae, x_a, a, b, means)
    rows[f"{a}s"], rows[f"{a} - mean {a} + mean {b}"] = x_a[:10], moved[:10]
    moved_all.append(moved)
    targets.append(torch.full((len(moved),), b))
show_rows({k: v for k, v in list(rows.items())[:6]}, title="latent arithmetic in your VAE's code")
print(f"the classifier reads {100 * read_as(torch.cat(moved_all), torch.cat(targets)):.0f}% of the "
      f"{sum(len(m) for m in moved_all)} arithmetic moves as the target digit")

# %% [markdown]
# Compare the numbers. At the default CPU budget, over five seeds, the classifier read 93–99 % of
# the conditional VAE's prior samples and 93–98 % of the restyled test digits as the digit asked
# for, and about 71–74 % of the arithmetic moves in the plain VAE's code as their target: the
# label is a far more reliable handle than a direction found after the fact.
#
# **Try it.** Train the conditional VAE with `latent_dim=8` instead of 2. The classifier then
# reads only about half of its samples as the digit asked for: a roomy code has space to store the
# digit's identity too, and the decoder learns to read it from there — the label is then partly
# ignored. The bottleneck of lab 2 is at work again: what a code *does not* have room for is what
# the other inputs must supply.
#
# The conditional model buys its reliability with the labels: it needs them for every training
# image, while the plain VAE learned its code from the images alone. Lab 6 asks the harder
# question of whether an unsupervised code can separate such factors by itself.
# %% [markdown]
# ## Summary
#
# * A VAE maximizes the evidence lower bound: a reconstruction term (the Bernoulli cross-entropy,
#   **summed** over pixels) minus the KL divergence of the encoder's Gaussian from the prior
#   (**summed** over latent dimensions), both averaged over the batch, in nats per image.
# * Box–Muller turns two uniforms into two independent standard normals, exactly; moments and a
#   Kolmogorov–Smirnov test confirm it and catch a missing factor.
# * Sampling has no useful gradient — `sample()` cuts the graph, `torch.normal` returns zeros. The
#   reparameterization $z = \mu + \sigma\varepsilon$ makes the code a differentiable function of
#   $\mu$ and $\sigma$, with $\partial z/\partial\mu = 1$ and $\partial z/\partial\sigma = \varepsilon$.
# * With `logvar` $= \log\sigma^2$, $\sigma = \exp(\tfrac12\,\texttt{logvar})$ in the sampler and
#   $\tfrac12\sum(\mu^2 + e^{\texttt{logvar}} - 1 - \texttt{logvar})$ in the KL. A Monte Carlo
#   estimate from your own sampler proves the two agree.
# * The decoder returns logits; `binary_cross_entropy_with_logits` applies the sigmoid stably.
# * The squared error is the negative log-likelihood of a Gaussian decoder with a fixed $\sigma$,
#   up to the scale $\lambda = 1/(2\sigma^2)$ and the constant $D\log(\sigma\sqrt{2\pi})$: an
#   MSE-VAE is a β-VAE with $\beta = 2\sigma^2$, and a mean over pixels hides a $\beta$ of 784.
# * A conv VAE beats the MLP VAE of pytorch/examples at equal epochs on the same data. Its prior
#   samples are digits, its 2-D latent plane is a continuous map of digit shapes, and straight
#   lines between codes decode to plausible transitions.
# * $\beta$ trades reconstruction against the prior: small $\beta$ leaves holes between clusters,
#   large $\beta$ blurs everything.
# * A conditional VAE gives the label to both networks; its code then carries the style, and a
#   label picks the digit. Arithmetic with class means in a plain VAE's code moves digits towards
#   another class only part of the time.
#
# ## Questions to think about
#
# 1. Box–Muller needs a logarithm, a square root, a sine and a cosine per pair. Marsaglia's polar
#    method avoids the trigonometry by rejection. What fraction of its proposals does it reject?
# 2. The reparameterization trick needs a sampler written as a differentiable function of its
#    parameters and parameter-free noise. Can you do that for an exponential distribution? For a
#    Bernoulli one? What breaks?
# 3. Our test loss uses one sample of $z$ per image. Is that an unbiased estimate of the negative
#    ELBO? Of $-\log p(x)$? (Importance-weighted bounds, Burda et al., close part of the gap.)
# 4. Suppose the encoder's KL read `logvar` as $\log\sigma$ while the sampler read it as
#    $\log\sigma^2$. What would the optimal `logvar` be for a dimension the decoder ignores, and what
#    would the sampler then draw?
# 5. The grey-level BCE is not a proper likelihood for values between 0 and 1. What is the smallest
#    reconstruction term a *perfect* decoder could reach on a test digit? (Hint: the entropy of a
#    Bernoulli variable with probability $x_i$.)
# 6. With $\beta = 4$ and a 20-dimensional code, how many latent dimensions would you expect to stay
#    "active" (KL clearly above 0)? Lab 6 measures it.
# 7. Why does the interpolation use the posterior means and not sampled codes, while training uses
#    sampled codes?
#
# ## Further reading
#
# * D. P. Kingma and M. Welling, *Auto-Encoding Variational Bayes*, ICLR 2014 — the VAE, the
#   reparameterization trick, the 2-D manifold figures.
# * D. J. Rezende, S. Mohamed, D. Wierstra, *Stochastic Backpropagation and Approximate Inference in
#   Deep Generative Models*, ICML 2014 — the same idea, found independently.
# * G. E. P. Box and M. E. Muller, *A Note on the Generation of Random Normal Deviates*, Annals of
#   Mathematical Statistics 29 (1958).
# * K. Sohn, H. Lee, X. Yan, *Learning Structured Output Representation using Deep Conditional
#   Generative Models*, NeurIPS 2015 — the conditional VAE.
# * T. White, *Sampling Generative Networks*, 2016 — interpolation and vector arithmetic in the
#   codes of VAEs and GANs.
# * D. P. Kingma and M. Welling, *An Introduction to Variational Autoencoders*, Foundations and
#   Trends in Machine Learning (2019) — a careful tutorial by the authors.
# * I. Higgins et al., *β-VAE: Learning Basic Visual Concepts with a Constrained Variational
#   Framework*, ICLR 2017 — what larger β does to the code (lab 6).
# * A. Alemi et al., *Fixing a Broken ELBO*, ICML 2018 — the rate–distortion view of the β trade-off.
# * Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016 — tighter
#   bounds than the ELBO.
# * pytorch/examples, `vae/main.py` — the MLP VAE we compared with.
