# %%
# On Google Colab only: install genlab, the course's helper library, from the course repository.
# (Colab has PyTorch and the other packages already; --no-deps keeps its versions.)
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "genlab @ git+https://github.com/genlab-course/genlab"], check=True)

# %% [markdown]
# # Lab 5 · The KL divergence: what the VAE's second term really measures
#
# The VAE loss of lab 4 has two terms. The first, the reconstruction error, is familiar from the
# autoencoders of labs 2 and 3. The second is stranger: a **Kullback–Leibler divergence** between
# what the encoder says about an image, $q(z\mid x) = \mathcal N(\mu, \operatorname{diag}\sigma^2)$,
# and the prior $p(z) = \mathcal N(0, I)$. In lab 4 it arrived as a ready-made formula,
# `kl_to_standard_normal`. In this lab you take that formula apart: where it comes from, how to
# check it without trusting anyone's algebra, why the KL is *not* a distance, and why minimizing
# it is the same as maximizing the lower bound a VAE is trained on.
#
# **Learning goals.** After this lab you can
#
# 1. derive the KL divergence between two univariate Gaussians, step by step, and implement it;
# 2. extend it to diagonal Gaussians in the log-variance parametrization a VAE encoder outputs,
#    and say why the coordinates' KLs **add**;
# 3. estimate any KL by Monte Carlo, attach an honest standard error, and check both numerically;
# 4. verify the KL's defining properties yourself: $\mathrm{KL}\ge 0$, $=0$ only for equal
#    distributions, and $\mathrm{KL}(q\,\|\,p) \ne \mathrm{KL}(p\,\|\,q)$ — and see what the asymmetry
#    does when one Gaussian is fitted to two bumps (*mode-seeking* vs *mass-covering*);
# 5. write down a latent-variable model whose evidence $\log p(x)$ and posterior $p(z\mid x)$ are
#    exact, and use it to watch the identity
#    $\log p(x) = \mathrm{ELBO}(q) + \mathrm{KL}(q\,\|\,p(z\mid x))$ hold to the last digit.
#
# **Lecture ideas practised.** The lecture defines the KL divergence as the expected log-ratio
# $\int p \log(p/q)$, calls it a dissimilarity that is not symmetric, and reads it as the extra
# code length paid for using a code built for $Q$ on samples of $P$. It then splits the KL of two
# Gaussians into an entropy and a cross-entropy, arrives at
# $\log\frac{\sigma_2}{\sigma_1} + \frac{\sigma_1^2 + (\mu_1-\mu_2)^2}{2\sigma_2^2} - \frac12$, and
# specializes it to the standard-normal prior of the VAE. Finally it writes
# $\log p(x) = \mathrm{ELBO} + \mathrm{KL}(q(z\mid x)\,\|\,p(z\mid x))$, concludes that the ELBO is a
# lower bound because the KL is non-negative, and that raising the ELBO pushes $q$ towards the true
# posterior. Parts 1–2 redo the derivation, Parts 3–4 check the properties, Part 5 builds the
# model in which the last identity can be verified exactly, and Part 6 returns to the VAE.
#
# **How this lab works.** Each exercise has a cell where you write a function, followed by a
# locked test cell. The visible tests are there for you to run while you work; when the lab is
# graded, hidden tests check more cases. A failing test says *what* it checked and, when your
# result matches a typical mistake, *which* mistake it looks like. In the two closed-form
# exercises please do not build `torch.distributions` objects — the tests notice; we use
# `torch.distributions` everywhere else, to check your formulas.
#
# | Exercise | Function | Points |
# |---|---|---|
# | 1 | `kl_univariate` | 3 |
# | 2 | `kl_diag_gaussians` | 3 |
# | 3 | `kl_monte_carlo` | 3 |
# | 4 | `LinearGaussianModel` (`log_marginal`, `posterior`) | 2 + 2 |
# | 5 | `elbo` | 3 |
#
# **Time.** Nothing is trained in this lab; the whole notebook runs in well under a minute on a
# laptop CPU, and a GPU would not make it faster (so there is no separate GPU budget). With
# `GENLAB_FAST=1`, which the autograder uses, the Monte Carlo experiments use fewer samples.
# %% [markdown]
# ## Set-up
#
# The first cell is locked because the tests rely on it. Besides the imports it brings in
# genlab's `attempt`, which the test cells use to call your functions: a missing function or a
# crash becomes a short failure message instead of a long traceback. It also imports `draw_samples` (explained
# in Part 3) and lab 4's `kl_to_standard_normal`.
# %% readonly setup
import math

import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from genlab import budget, seed_everything
from genlab.sampling import draw_samples
from genlab.testing import CheckFailed, attempt
from genlab.vae import kl_to_standard_normal

seed_everything(0)
torch.set_printoptions(precision=4, sci_mode=False)

# %% [markdown]
# Tools for the ungraded parts: matplotlib and genlab's `show(fig)`, which displays a figure once
# and closes it.
# %% demo
import matplotlib.pyplot as plt
import numpy as np

from genlab.plotting import show, subplots

F64 = torch.float64


def normal_pdf(x, mu, sigma):
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

# %% [markdown]
# ## Part 1 · What the KL divergence measures
#
# For two densities $p$ and $q$ on the same space,
#
# $$\mathrm{KL}(p\,\|\,q) = \int p(x)\,\log\frac{p(x)}{q(x)}\,dx
#   = \mathbb E_{x\sim p}\big[\log p(x) - \log q(x)\big].$$
#
# Read it as an average, **under the first argument**, of the log-ratio of the two densities.
# Where $p$ puts its mass, the KL asks how much less likely $q$ finds the same points. Where $p$
# has no mass, nothing counts, however badly $q$ behaves there. The lecture's coding reading
# says the same: if you compress samples of $p$ with a code designed for $q$, you pay
# $\mathrm{KL}(p\,\|\,q)$ extra nats (bits, with $\log_2$) per sample, compared with the best code
# for $p$.
#
# The picture shows this lab's running example (our own choice; the lectures give only the general
# formula), $p = \mathcal N(1, 0.5^2)$ and $q = \mathcal N(0, 1)$. The shaded area on the right is
# the KL: the integrand $p\log(p/q)$ is negative in places (where $q > p$), yet the total can never
# be — the proof, with Jensen's inequality, comes right after Exercise 1.
# %% demo
xs = np.linspace(-3.5, 4.0, 600)
p_pdf, q_pdf = normal_pdf(xs, 1.0, 0.5), normal_pdf(xs, 0.0, 1.0)
integrand = p_pdf * np.log(p_pdf / q_pdf)
area = np.trapezoid(integrand, xs)

fig, (ax_d, ax_i) = subplots(1, 2, figsize=(12, 3.8))
ax_d.plot(xs, p_pdf, label="$p = \\mathcal{N}(1, 0.5^2)$")
ax_d.plot(xs, q_pdf, label="$q = \\mathcal{N}(0, 1)$")
ax_d.set_title("two Gaussians")
ax_d.legend()
ax_i.plot(xs, integrand, color="tab:purple")
ax_i.fill_between(xs, integrand, 0, where=integrand > 0, color="tab:purple", alpha=0.3)
ax_i.fill_between(xs, integrand, 0, where=integrand < 0, color="tab:red", alpha=0.3)
ax_i.axhline(0, color="grey", lw=0.8)
ax_i.set_title(f"integrand $p\\,\\log(p/q)$: area = {area:.6f}")
for ax in (ax_d, ax_i):
    ax.set_xlabel("$x$")
show(fig)

# %% [markdown]
# ## Part 2 · The closed form for two Gaussians, step by step
#
# Take $p = \mathcal N(\mu_1, \sigma_1^2)$ and $q = \mathcal N(\mu_2, \sigma_2^2)$. As in the
# lecture, split the KL into two expectations under $p$:
#
# $$\mathrm{KL}(p\,\|\,q) = \underbrace{\mathbb E_p[\log p(x)]}_{-\,\text{entropy } H(p)}
#   \;-\; \underbrace{\mathbb E_p[\log q(x)]}_{-\,\text{cross-entropy } H(p,\,q)}.$$
#
# **Step 1: the log-density.** For any Gaussian,
# $\log \mathcal N(x;\mu,\sigma^2) = -\tfrac12\log(2\pi\sigma^2) - \dfrac{(x-\mu)^2}{2\sigma^2}$.
# Only the squared distance depends on $x$, so each expectation needs one number:
# $\mathbb E_p[(x-\mu)^2]$.
#
# **Step 2: one expectation.** Write $x - \mu_2 = (x - \mu_1) + (\mu_1 - \mu_2)$ and expand the
# square. Under $p$, $\mathbb E[(x-\mu_1)^2] = \sigma_1^2$, and the cross term vanishes because
# $\mathbb E[x - \mu_1] = 0$:
#
# $$\mathbb E_p\big[(x - \mu_2)^2\big] = \sigma_1^2 + (\mu_1 - \mu_2)^2 .$$
#
# **Step 3: the cross-entropy.** With Step 2,
# $\;-\mathbb E_p[\log q(x)] = \tfrac12\log(2\pi\sigma_2^2) + \dfrac{\sigma_1^2 + (\mu_1-\mu_2)^2}{2\sigma_2^2}.$
#
# **Step 4: the entropy.** The same computation with $q = p$ ($\mu_2=\mu_1$, $\sigma_2=\sigma_1$):
# $\;-\mathbb E_p[\log p(x)] = \tfrac12\log(2\pi\sigma_1^2) + \tfrac12.$
#
# **Step 5: subtract.** The $2\pi$'s cancel and $\tfrac12\log\sigma_2^2 - \tfrac12\log\sigma_1^2 =
# \log(\sigma_2/\sigma_1)$:
#
# $$\boxed{\;\mathrm{KL}\big(\mathcal N(\mu_1,\sigma_1^2)\,\|\,\mathcal N(\mu_2,\sigma_2^2)\big)
#   = \log\frac{\sigma_2}{\sigma_1} + \frac{\sigma_1^2 + (\mu_1-\mu_2)^2}{2\sigma_2^2} - \frac12\;}$$
#
# Three sanity checks before coding. Equal arguments give $0 + \tfrac12 - \tfrac12 = 0$. With
# equal variances only the means matter, $(\mu_1-\mu_2)^2/(2\sigma^2)$: a squared distance measured
# in units of the spread. And with the VAE's prior, $\mu_2 = 0, \sigma_2 = 1$, the box becomes the
# lecture's $-\log\sigma_1 + \tfrac12(\sigma_1^2 + \mu_1^2) - \tfrac12$.
#
# **Worked example.** $\mu_1 = 1, \sigma_1 = 0.5$ against $\mathcal N(0, 1)$:
# $\log 2 + \tfrac12(0.25 + 1) - \tfrac12 = 0.693147 + 0.125 = 0.818147$ nats — the area in Part 1.
#
# ## Exercise 1 · `kl_univariate` (3 points)
#
# **Your task.** Write `kl_univariate(mu1, sigma1, mu2, sigma2)` returning
# $\mathrm{KL}(\mathcal N(\mu_1,\sigma_1^2)\,\|\,\mathcal N(\mu_2,\sigma_2^2))$ **elementwise**: the
# arguments are tensors (`sigma1`, `sigma2` are *standard deviations*, positive) whose shapes
# broadcast, like those of `a + b`. Return a tensor of the broadcast shape, dtype and device.
# Use tensor operations (`torch.log`, `**`, …) and no `torch.distributions`.
# %% solution kl_univariate
def kl_univariate(mu1, sigma1, mu2, sigma2):
    """KL(N(mu1, sigma1^2) || N(mu2, sigma2^2)), elementwise; sigma1 and sigma2 are standard deviations."""
    ### BEGIN SOLUTION
    return torch.log(sigma2 / sigma1) + (sigma1 ** 2 + (mu1 - mu2) ** 2) / (2 * sigma2 ** 2) - 0.5
    ### END SOLUTION

# %% test test_kl_univariate points=3
import math
import torch
from torch.distributions import Normal, kl_divergence
from genlab.testing import forbid_distributions
from genlab.testing import check_close, check_tensor, devices


def _kl_univariate_check(mu1, s1, mu2, s2, what, atol=1e-10, rtol=1e-10):
    with forbid_distributions(what):
        got = attempt(what, kl_univariate, mu1, s1, mu2, s2)
    expected = kl_divergence(Normal(mu1, s1), Normal(mu2, s2))
    d2, v1, v2 = (mu1 - mu2) ** 2, s1 ** 2, s2 ** 2
    log_ratio = torch.log(s2 / s1)
    mistakes = {
        "the two distributions swapped: KL(p || q) averages over its FIRST argument, "
        "N(mu1, sigma1^2)": torch.log(s1 / s2) + (v2 + d2) / (2 * v1) - 0.5,
        "a missing 1/2 in the quadratic term (sigma1^2 + (mu1 - mu2)^2) / (2 sigma2^2)":
            log_ratio + (v1 + d2) / v2 - 0.5,
        "a sign error in the log term: it is log(sigma2 / sigma1)":
            -log_ratio + (v1 + d2) / (2 * v2) - 0.5,
        "forgetting the -1/2 (the entropy's E[(x - mu1)^2] / (2 sigma1^2) = 1/2)":
            log_ratio + (v1 + d2) / (2 * v2),
        "log(sigma2^2 / sigma1^2) without the factor 1/2: the log term is log(sigma2 / sigma1)":
            2 * log_ratio + (v1 + d2) / (2 * v2) - 0.5,
        "sigma where sigma^2 belongs in the quadratic term (sigma1 and sigma2 are standard "
        "deviations)": log_ratio + (s1 + d2) / (2 * s2) - 0.5,
        "the sigmas treated as variances (they are standard deviations)":
            0.5 * log_ratio + (s1 + d2) / (2 * s2) - 0.5,
        "dividing by sigma1^2 instead of sigma2^2": log_ratio + (v1 + d2) / (2 * v1) - 0.5,
        "forgetting the squared difference of the means": log_ratio + v1 / (2 * v2) - 0.5,
    }
    check_close(got, expected, what, mistakes=mistakes, atol=atol, rtol=rtol)
    check_tensor(got, what, dtype=expected.dtype, device=expected.device)


_f64 = dict(dtype=torch.float64)
_one = lambda v: torch.tensor(v, **_f64)
_kl_univariate_check(_one(1.0), _one(0.5), _one(0.0), _one(1.0),
                     "kl_univariate(1, 0.5, 0, 1), the lab's running example (0.818147)")
_g = torch.Generator().manual_seed(0)
_mu1, _mu2 = torch.randn(2, 8, generator=_g, **_f64)
_s1, _s2 = torch.rand(2, 8, generator=_g, **_f64) * 2 + 0.2
_kl_univariate_check(_mu1, _s1, _mu2, _s2, "kl_univariate on 8 random pairs (float64)")
_kl_univariate_check(_mu1.float(), _s1.float(), _mu2.float(), _s2.float(),
                     "kl_univariate on 8 random pairs (float32)", atol=1e-6, rtol=1e-5)
_same = attempt("kl_univariate(mu, s, mu, s)", kl_univariate, _mu1, _s1, _mu1, _s1)
check_close(_same, torch.zeros(8, **_f64), "kl_univariate(mu, s, mu, s): equal arguments give 0",
            atol=1e-12, rtol=0)
_kl_univariate_check(torch.zeros(3, 1), torch.ones(3, 1), torch.arange(4.0), torch.full((4,), 2.0),
                     "kl_univariate with shapes (3, 1) and (4,), which broadcast to (3, 4)",
                     atol=1e-6, rtol=1e-5)
### BEGIN HIDDEN TESTS
for _seed in range(1, 6):
    _g = torch.Generator().manual_seed(_seed)
    _mu1, _mu2 = torch.randn(2, 50, generator=_g, **_f64) * 3
    _s1, _s2 = torch.rand(2, 50, generator=_g, **_f64) * 4 + 0.01
    _kl_univariate_check(_mu1, _s1, _mu2, _s2, f"kl_univariate on 50 random pairs (seed {_seed})")
_kl_univariate_check(_one(0.0), _one(1e-3), _one(0.0), _one(1e3), "kl_univariate, tiny vs huge sigma")
_kl_univariate_check(_one(-2.0), _one(3.0), _one(5.0), _one(0.1), "kl_univariate, wide vs narrow")
_kl_univariate_check(torch.zeros(2, 1, 3, **_f64), _one(1.5), torch.ones(4, 1, **_f64), _one(0.7),
                     "kl_univariate with shapes (2, 1, 3), (), (4, 1), ()")
for _dev in devices():
    _x = torch.rand(5, device=_dev) + 0.5
    _kl_univariate_check(_x, _x, _x * 0, _x * 2, f"kl_univariate on {_dev.type}", atol=1e-6, rtol=1e-5)
### END HIDDEN TESTS

# %% [markdown]
# ### Why the KL is never negative
#
# Part 1 promised a proof; it takes two lines. The logarithm is **concave** (every chord of its
# graph lies below the graph), and for a positive random variable $Y$ this gives **Jensen's
# inequality** $\mathbb E[\log Y] \le \log \mathbb E[Y]$, with equality only when $Y$ is constant
# with probability 1. Take $Y = q(x)/p(x)$ with $x \sim p$:
#
# $$-\mathrm{KL}(p\,\|\,q) = \mathbb E_{x\sim p}\Big[\log\frac{q(x)}{p(x)}\Big]
#   \;\le\; \log \mathbb E_{x\sim p}\Big[\frac{q(x)}{p(x)}\Big]
#   = \log \int_{p > 0} p(x)\,\frac{q(x)}{p(x)}\,dx
#   = \log \int_{p > 0} q(x)\,dx \;\le\; \log 1 = 0 .$$
#
# Hence $\mathrm{KL}(p\,\|\,q) \ge 0$. (If $q$ vanishes somewhere $p$ has mass, the left side is
# $-\infty$ and there is nothing to prove.) **Equality** needs both "$\le$" to be "$=$". Jensen's
# step is tight only if $q/p$ equals one constant $c$ wherever $p$ has mass ($p$-almost
# everywhere); the last step only if $q$ has no mass outside that region. Then
# $1 = \int q = c\int p = c$, so $q = p$ (up to sets of probability zero). Nothing here used the
# Gaussian form: the statement holds for every pair of distributions, and with the names swapped it
# is the $\mathrm{KL}(q\,\|\,p) \ge 0$ that makes the ELBO a lower bound in Part 5.
#
# ### Check it yourself
#
# A formula you derived is a formula you should not trust yet. Four independent checks:
#
# 1. **against `torch.distributions`**, which has the KL of two normals built in;
# 2. **against numerical integration** of $p\log(p/q)$ on a fine grid;
# 3. **non-negativity** on thousands of random pairs, and **zero only for equal arguments**;
# 4. **asymmetry**: swap the arguments and the value changes.
# %% demo
g = torch.Generator().manual_seed(1)
mu1, mu2 = torch.randn(2, 10_000, generator=g, dtype=F64) * 2
s1, s2 = torch.rand(2, 10_000, generator=g, dtype=F64) * 3 + 0.1

mine = kl_univariate(mu1, s1, mu2, s2)
torch_value = kl_divergence(Normal(mu1, s1), Normal(mu2, s2))
print(f"1. largest difference to torch.distributions over 10,000 pairs: "
      f"{(mine - torch_value).abs().max().item():.1e}")

x_grid = torch.linspace(-12, 14, 200_001, dtype=F64)
log_p, log_q = Normal(1.0, 0.5).log_prob(x_grid), Normal(0.0, 1.0).log_prob(x_grid)
numeric = torch.trapezoid(log_p.exp() * (log_p - log_q), x_grid).item()
closed = kl_univariate(torch.tensor(1.0, dtype=F64), torch.tensor(0.5, dtype=F64),
                       torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64)).item()
print(f"2. KL(N(1, 0.5²) || N(0, 1)): closed form {closed:.6f}, numerical integral {numeric:.6f}")

distance = (mu1 - mu2).abs() + (s1 - s2).abs()
print(f"3. smallest KL over 10,000 random pairs: {mine.min().item():.2e} (at a pair "
      f"{distance[mine.argmin()].item():.3f} apart); KL(p || p) on all of them: "
      f"{kl_univariate(mu1, s1, mu1, s1).abs().max().item():.1e}")
swapped = kl_univariate(mu2, s2, mu1, s1)
print(f"4. |KL(p || q) - KL(q || p)|: median {(mine - swapped).abs().median().item():.2f}, "
      f"largest {(mine - swapped).abs().max().item():.0f}")

# %% [markdown]
# How asymmetric? Fix one Gaussian at $\mathcal N(0, 1)$ and shrink the other one's $\sigma$.
# $\mathrm{KL}(\text{narrow}\,\|\,\text{wide}) = -\log\sigma + \sigma^2/2 - 1/2$ grows only like
# $\log(1/\sigma)$, while $\mathrm{KL}(\text{wide}\,\|\,\text{narrow}) = \log\sigma + 1/(2\sigma^2)
# - 1/2$ explodes like $1/\sigma^2$. The expectation runs under the first argument: a narrow first
# argument only visits places where the wide one is comfortable, but a wide first argument visits
# the tails, where the narrow density is vanishingly small and the log-ratio huge. Remember this
# for Part 4.
# %% demo
sigmas = torch.logspace(-1.5, 1, 200, dtype=F64)
zero, one = torch.zeros((), dtype=F64), torch.ones((), dtype=F64)
fig, ax = subplots(figsize=(7, 4))
ax.plot(sigmas, kl_univariate(zero, sigmas, zero, one), label="KL( N(0, σ²) ‖ N(0, 1) )")
ax.plot(sigmas, kl_univariate(zero, one, zero, sigmas), label="KL( N(0, 1) ‖ N(0, σ²) )")
ax.set_xscale("log")
ax.set_yscale("log")
ax.axvline(1.0, color="grey", ls=":")
ax.set_xlabel("σ")
ax.set_ylabel("KL (nats)")
ax.set_title("Same two distributions, two different numbers")
ax.legend()
show(fig)

# %% [markdown]
# ## Exercise 2 · Diagonal Gaussians, the VAE's case (3 points)
#
# A VAE's encoder outputs a mean vector $\mu \in \mathbb R^K$ and a **log-variance** vector,
# `logvar` $= \log\sigma^2$ (unconstrained, so a linear layer can produce it; $\sigma^2 =
# e^{\text{logvar}}$ is then automatically positive). Its $q$ is a Gaussian with diagonal
# covariance: the $K$ coordinates are independent, $q(z) = \prod_j q_j(z_j)$, and the same holds
# for the prior. For independent coordinates the log-ratio is a sum,
# $\log\frac{q(z)}{p(z)} = \sum_j \log\frac{q_j(z_j)}{p_j(z_j)}$, and the $j$-th term depends on
# $z_j$ only, so its expectation under $q$ is the univariate KL of coordinate $j$. **KLs of
# independent coordinates add up:**
#
# $$\mathrm{KL}(q\,\|\,p) = \sum_{j=1}^{K} \mathrm{KL}(q_j\,\|\,p_j)
#   = \frac12\sum_{j=1}^{K}\Big[\ell^p_j - \ell^q_j
#     + \frac{e^{\ell^q_j} + (\mu^q_j - \mu^p_j)^2}{e^{\ell^p_j}} - 1\Big],
#   \qquad \ell = \text{logvar}.$$
#
# (Exercise 1's box with $\log(\sigma_2/\sigma_1) = \tfrac12(\ell^p - \ell^q)$ and
# $\sigma^2 = e^{\ell}$.) Two traps live here. The standard deviation is $e^{\ell/2}$, not
# $e^{\ell}$: treating `logvar` as a log standard deviation squares every variance. And the sum
# runs over the latent dimensions, not a mean: averaging would make a 20-dimensional code look as
# cheap as a 1-dimensional one.
#
# **Your task.** Write `kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p)`: tensors whose shapes
# broadcast, the last dimension holding the $K$ coordinates; return the KL per sample, summed over
# the last dimension (inputs `(N, K)` give `(N,)`). No `torch.distributions` here either.
# %% solution kl_diag_gaussians
def kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p):
    """KL(N(mu_q, diag exp(logvar_q)) || N(mu_p, diag exp(logvar_p))), summed over the last dimension."""
    ### BEGIN SOLUTION
    per_dim = 0.5 * (logvar_p - logvar_q
                     + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1)
    return per_dim.sum(-1)
    ### END SOLUTION

# %% test test_kl_diag_gaussians points=3
import torch
from torch.distributions import Independent, Normal, kl_divergence
from genlab.testing import forbid_distributions
from genlab.testing import check_close, check_tensor, devices
from genlab.vae import kl_to_standard_normal


def _diag_per_dim(mu_q, lv_q, mu_p, lv_p):
    return 0.5 * (lv_p - lv_q + (lv_q.exp() + (mu_q - mu_p) ** 2) / lv_p.exp() - 1)


def _kl_diag_check(mu_q, lv_q, mu_p, lv_p, what, atol=1e-10, rtol=1e-10):
    with forbid_distributions(what):
        got = attempt(what, kl_diag_gaussians, mu_q, lv_q, mu_p, lv_p)
    q = Independent(Normal(mu_q, (0.5 * lv_q).exp()), 1)
    p = Independent(Normal(mu_p, (0.5 * lv_p).exp()), 1)
    expected = kl_divergence(q, p)
    per_dim = _diag_per_dim(mu_q, lv_q, mu_p, lv_p)
    full = torch.broadcast_shapes(mu_q.shape, lv_q.shape, mu_p.shape, lv_p.shape)
    mistakes = {
        "logvar used as a log standard deviation: the variance is exp(logvar), the standard "
        "deviation exp(logvar / 2)": _diag_per_dim(mu_q, 2 * lv_q, mu_p, 2 * lv_p).sum(-1),
        "a missing factor 1/2 in front of the sum": 2 * per_dim.sum(-1),
        "the KL averaged over the latent dimensions instead of summed: independent coordinates "
        "add their KLs": per_dim.mean(-1),
        "a sign error in the log term: log(sigma_p^2 / sigma_q^2) = logvar_p - logvar_q":
            (per_dim - (lv_p - lv_q)).sum(-1),
        "the arguments swapped (KL(p || q) instead of KL(q || p))":
            _diag_per_dim(mu_p, lv_p, mu_q, lv_q).expand(full).sum(-1),
        "the KL to N(0, I): mu_p and logvar_p are ignored":
            _diag_per_dim(mu_q, lv_q, torch.zeros_like(mu_q), torch.zeros_like(lv_q)).expand(full).sum(-1),
        "one number for the whole batch: sum over the last dimension only":
            lambda a: a.dim() == 0 and len(full) > 1,
        "per-dimension KLs that were never summed over the last dimension":
            lambda a: tuple(a.shape) == tuple(full),
    }
    check_close(got, expected, what, mistakes=mistakes, atol=atol, rtol=rtol)
    check_tensor(got, what, dtype=expected.dtype, device=expected.device)


_f64 = dict(dtype=torch.float64)
_g = torch.Generator().manual_seed(0)
_mq, _mp, _lq, _lp = torch.randn(4, 6, 5, generator=_g, **_f64)
_kl_diag_check(_mq, _lq, _mp, _lp, "kl_diag_gaussians on inputs of shape (6, 5)")
_kl_diag_check(_mq, _lq, _mp[0], _lp[0], "kl_diag_gaussians with q (6, 5) and p (5,)")
_kl_diag_check(_mq.float(), _lq.float(), _mp.float(), _lp.float(),
               "kl_diag_gaussians on float32 inputs", atol=1e-5, rtol=1e-5)
_what = "kl_diag_gaussians(mu, logvar, 0, 0) against lab 4's kl_to_standard_normal(mu, logvar)"
with forbid_distributions(_what):
    _got = attempt(_what, kl_diag_gaussians, _mq, _lq, torch.zeros(5, **_f64), torch.zeros(5, **_f64))
check_close(_got, kl_to_standard_normal(_mq, _lq), _what)
### BEGIN HIDDEN TESTS
for _seed in range(1, 5):
    _g = torch.Generator().manual_seed(_seed)
    _mq, _mp = torch.randn(2, 30, 8, generator=_g, **_f64) * 2
    _lq, _lp = torch.randn(2, 30, 8, generator=_g, **_f64) * 1.5
    _kl_diag_check(_mq, _lq, _mp, _lp, f"kl_diag_gaussians on inputs of shape (30, 8), seed {_seed}")
_kl_diag_check(_mq[0], _lq[0], _mp[0], _lp[0], "kl_diag_gaussians on one sample of shape (8,)")
_kl_diag_check(_mq[:, :1], _lq[:, :1], _mp[:, :1], _lp[:, :1],
               "kl_diag_gaussians with one latent dimension, shape (30, 1)")
_kl_diag_check(_mq.view(5, 6, 8), _lq.view(5, 6, 8), _mp[0], _lp[0],
               "kl_diag_gaussians on inputs of shape (5, 6, 8)")
for _dev in devices():
    _x = torch.randn(4, 3, device=_dev)
    _kl_diag_check(_x, _x * 0.5, _x * 0, _x * 0 + 0.3, f"kl_diag_gaussians on {_dev.type}",
                   atol=1e-5, rtol=1e-5)
### END HIDDEN TESTS

# %% [markdown]
# Check the claim that the KLs add, with `torch.distributions` doing the multivariate case its own
# way (a full-covariance `MultivariateNormal` with a diagonal matrix), and the claim that lab 4's
# VAE regularizer is the special case $p = \mathcal N(0, I)$:
# %% demo
g = torch.Generator().manual_seed(2)
mu_q, logvar_q, mu_p, logvar_p = torch.randn(4, 3, 20, generator=g, dtype=F64)
mine = kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p)
full_cov = kl_divergence(MultivariateNormal(mu_q, torch.diag_embed(logvar_q.exp())),
                         MultivariateNormal(mu_p, torch.diag_embed(logvar_p.exp())))
sum_of_1d = kl_univariate(mu_q, (0.5 * logvar_q).exp(), mu_p, (0.5 * logvar_p).exp()).sum(-1)
print("per-sample KL, 3 samples with 20 dimensions:", mine)
print("  MultivariateNormal:   ", full_cov)
print("  sum of univariate KLs:", sum_of_1d)
zeros = torch.zeros(20, dtype=F64)
print("against N(0, I): kl_diag_gaussians", kl_diag_gaussians(mu_q, logvar_q, zeros, zeros),
      "\n      lab 4's kl_to_standard_normal", kl_to_standard_normal(mu_q, logvar_q))

# %% [markdown]
# ## Part 3 · Monte Carlo: a KL for any pair of distributions
#
# Closed forms exist for few pairs of distributions. Between a Gaussian and a mixture, or a
# decoder's image distribution and anything, there is none. But the definition is an expectation,
# and expectations can be estimated by sampling. With $z_1, \dots, z_n \sim q$ drawn independently
# and $f(z) = \log q(z) - \log p(z)$,
#
# $$\widehat{\mathrm{KL}} = \frac1n\sum_{i=1}^n f(z_i), \qquad
#   \mathrm{SE} = \frac{s}{\sqrt n}, \quad s^2 = \frac{1}{n-1}\sum_{i=1}^n \big(f(z_i) - \widehat{\mathrm{KL}}\big)^2.$$
#
# The estimate is unbiased, and by the central limit theorem it lands within $\pm 2\,\mathrm{SE}$ of
# the truth about 95% of the time. The **standard error** SE is the standard deviation of the
# *estimate*, not of the individual $f(z_i)$: it shrinks like $1/\sqrt n$, so 100 times more
# samples buy one more correct digit. (Individual $f(z_i)$ can be negative; only their average is
# bounded below by 0.)
#
# **How large is $s$ in our running example?** With $q = \mathcal N(1, 0.5^2)$, $p = \mathcal N(0,1)$
# and $z = 1 + \varepsilon/2$, $\varepsilon\sim\mathcal N(0,1)$, the log-ratio is
# $f = \log 2 - \tfrac{\varepsilon^2}{2} + \tfrac{(1 + \varepsilon/2)^2}{2} = \log 2 + \tfrac12 +
# \tfrac{\varepsilon}{2} - \tfrac{3\varepsilon^2}{8}$. Its mean is $\log 2 + \tfrac18$ (the KL, as it
# must be) and, since $\operatorname{Var}\varepsilon = 1$ and $\operatorname{Var}\varepsilon^2 = 2$,
# its variance is $\tfrac14 + \tfrac{9}{64}\cdot 2 = 0.53125$: a per-sample standard deviation of
# $s \approx 0.729$. With $n = 10{,}000$ samples the standard error is about $0.0073$.
#
# **Randomness you can repeat.** `torch.distributions` objects sample from PyTorch's global random
# state: `q.sample((n,))` takes no `torch.Generator`. The set-up cell imports
# `draw_samples(dist, n, generator=None)` from genlab, which returns the same as
# `dist.sample((n,))` but, when given a generator, takes its randomness from that generator (and
# leaves the global state alone). Use it, so that the same seed gives the same estimate.
#
# ## Exercise 3 · `kl_monte_carlo` (3 points)
#
# **Your task.** Write `kl_monte_carlo(q, p, n, generator=None)` for two `torch.distributions`
# objects over the same space: draw `n` samples of `q` with `draw_samples`, evaluate
# `q.log_prob` and `p.log_prob` on them (for a multivariate distribution `log_prob` already sums
# over the coordinates and returns one number per sample), and return the pair
# `(estimate, standard_error)` — two 0-d tensors (Python floats are accepted too). Use the
# unbiased standard deviation (`tensor.std()`, PyTorch's default). Raise `ValueError` for `n < 2`:
# one sample has no spread to estimate.
# %% solution kl_monte_carlo
def kl_monte_carlo(q, p, n, generator=None):
    """Monte Carlo estimate of KL(q || p) from n samples of q, and its standard error."""
    ### BEGIN SOLUTION
    if n < 2:
        raise ValueError(f"need n >= 2 samples to estimate a standard error, got {n}")
    z = draw_samples(q, n, generator)
    f = q.log_prob(z) - p.log_prob(z)
    return f.mean(0), f.std(0) / math.sqrt(n)
    ### END SOLUTION

# %% test test_kl_monte_carlo points=3
import math
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence
from genlab.testing import CheckFailed, check_number, check_raises, devices


def _mc_call(what, q, p, n, seed):
    result = attempt(what, kl_monte_carlo, q, p, n, generator=torch.Generator().manual_seed(seed))
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailed(f"{what}: expected a pair (estimate, standard_error), got "
                          f"{type(result).__name__}")
    for value, name in zip(result, ("estimate", "standard error")):
        if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
            raise CheckFailed(f"{what}: the {name}: expected a number (a 0-d tensor or a float), "
                              f"got {type(value).__name__}")
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise CheckFailed(f"{what}: the {name} should be one number, got a tensor of shape "
                              f"{tuple(value.shape)}\n  Hint: average over the n samples only")
    return result


def _running_pair(device="cpu", dtype=torch.float64):
    t = lambda v: torch.tensor(v, dtype=dtype, device=device)
    return Normal(t(1.0), t(0.5)), Normal(t(0.0), t(1.0))


_KL = math.log(2) + 0.125                    # KL(N(1, 0.5^2) || N(0, 1))
_KL_BACK = math.log(0.5) + 4.0 - 0.5         # KL(N(0, 1) || N(1, 0.5^2)) = 2.807
_SD = math.sqrt(0.25 + 9 / 32)               # per-sample s.d. of log q - log p under q (0.729)


def _running_checks(n, seed):
    what = f"kl_monte_carlo(N(1, 0.5^2), N(0, 1), n={n})"
    q, p = _running_pair()
    estimate, se = _mc_call(what, q, p, n, seed)
    if abs(float(se)) < 1e-10:
        raise CheckFailed(f"{what}: the standard error is 0\n  Hint: this looks like a "
                          "standard error of 0: are all n samples the same draw?")
    named = {"a sign error: average log q(z) - log p(z)": -_KL,
             "samples drawn from p instead of q: KL(q || p) averages over z ~ q": -_KL_BACK,
             "the KL in the other direction, KL(p || q): draw from q and average "
             "log q(z) - log p(z)": _KL_BACK}
    for mistake, value in named.items():   # these are far apart; samples from p scatter more
        if abs(float(estimate) - value) < 0.25:
            raise CheckFailed(f"{what}: the estimate is wrong\n  Hint: this looks like {mistake}")
    check_number(estimate, _KL, f"{what}: the estimate (allowing 5 standard errors)", rel=0,
                 abs_=5 * _SD / math.sqrt(n))
    check_number(se, _SD / math.sqrt(n), f"{what}: the standard error", rel=0.08, abs_=0,
                 mistakes={"the per-sample standard deviation instead of the standard error "
                           "(divide it by sqrt(n))": _SD,
                           "dividing the standard deviation by n instead of by sqrt(n)": _SD / n,
                           "the variance divided by sqrt(n): take the standard deviation": _SD ** 2 / math.sqrt(n),
                           "a standard error of 0: are all n samples the same draw?": 0.0})


_running_checks(20_000, seed=0)
_what = "kl_monte_carlo(q, p, 500) called twice with generators seeded alike"
_q, _p = _running_pair()
_a = _mc_call(_what, _q, _p, 500, seed=1)
torch.rand(10)   # move the global random state: a seeded generator must not care
_b = _mc_call(_what, _q, _p, 500, seed=1)
check_number(_b[0], float(_a[0]), _what, rel=1e-12, abs_=1e-12,
             hint="this looks like ignoring the generator argument: draw the samples with "
                  "draw_samples(q, n, generator)")
_c = _mc_call("kl_monte_carlo(q, p, 500) with two different seeds", _q, _p, 500, seed=2)
if float(_c[0]) == float(_a[0]):
    raise CheckFailed("kl_monte_carlo(q, p, 500) gave the same estimate for two different seeds\n"
                      "  Hint: the samples must come from draw_samples(q, n, generator)")
check_raises(lambda: kl_monte_carlo(_q, _p, 1), ValueError, "kl_monte_carlo(q, p, n=1)",
             hint="one sample has no spread: raise ValueError when n < 2")
### BEGIN HIDDEN TESTS
_running_checks(5_000, seed=3)
# The standard error is what repeated runs say: 300 estimates from 40 samples each.
_runs = [_mc_call("kl_monte_carlo(N(1, 0.5^2), N(0, 1), n=40)", _q, _p, 40, seed=100 + _i)
         for _i in range(300)]
_estimates = torch.tensor([float(_e) for _e, _ in _runs], dtype=torch.float64)
_errors = torch.tensor([float(_s) for _, _s in _runs], dtype=torch.float64)
check_number(_estimates.std().item(), _errors.mean().item(),
             "kl_monte_carlo, 300 runs with n=40: the spread of the estimates against the "
             "standard errors the runs report", rel=0.2, abs_=0,
             hint="the standard error is the standard deviation of the log-ratios divided by sqrt(n)")
check_number(_estimates.mean().item(), _KL, "kl_monte_carlo, the mean of 300 estimates with n=40",
             rel=0, abs_=5 * _SD / math.sqrt(40 * 300))
# A three-dimensional pair with a closed form to compare against.
_g = torch.Generator().manual_seed(4)
_A = torch.randn(3, 3, generator=_g, dtype=torch.float64)
_q3 = MultivariateNormal(torch.randn(3, generator=_g, dtype=torch.float64),
                         _A @ _A.T + 0.5 * torch.eye(3, dtype=torch.float64))
_p3 = MultivariateNormal(torch.zeros(3, dtype=torch.float64), 2 * torch.eye(3, dtype=torch.float64))
_e3, _s3 = _mc_call("kl_monte_carlo on two 3-D Gaussians, n=20000", _q3, _p3, 20_000, seed=5)
check_number(_e3, kl_divergence(_q3, _p3).item(), "kl_monte_carlo on two 3-D Gaussians, n=20000",
             rel=0, abs_=5 * float(_s3) + 1e-9,
             hint="q.log_prob(z) of a multivariate distribution is already one number per sample")
for _dev in devices():
    _qd, _pd = _running_pair(_dev, torch.float32)
    _ed, _sd = _mc_call(f"kl_monte_carlo with distributions on {_dev.type}", _qd, _pd, 4000, seed=6)
    check_number(_ed, _KL, f"kl_monte_carlo with distributions on {_dev.type}", rel=0,
                 abs_=5 * _SD / math.sqrt(4000))
### END HIDDEN TESTS

# %% [markdown]
# ### Does the error bar tell the truth?
#
# Two checks. Left: estimates with $\pm 2$ standard errors for growing $n$ — the bars shrink like
# $1/\sqrt n$ and (almost always) cover the closed form. Right: many independent runs with the
# same $n$; their histogram should look like a normal curve whose width is the standard error the
# runs report.
# %% demo
q_demo = Normal(torch.tensor(1.0, dtype=F64), torch.tensor(0.5, dtype=F64))
p_demo = Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
exact = kl_univariate(q_demo.loc, q_demo.scale, p_demo.loc, p_demo.scale).item()

sizes = [10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000]
sizes = [n for n in sizes if n <= budget(default=100_000, fast=10_000)]
results = [kl_monte_carlo(q_demo, p_demo, n, generator=torch.Generator().manual_seed(i))
           for i, n in enumerate(sizes)]
estimates = np.array([float(e) for e, _ in results])
errors = np.array([float(s) for _, s in results])

RUNS, N_PER_RUN = budget(default=2_000, fast=300), 100
runs = [kl_monte_carlo(q_demo, p_demo, N_PER_RUN, generator=torch.Generator().manual_seed(1000 + i))
        for i in range(RUNS)]
run_estimates = np.array([float(e) for e, _ in runs])
mean_se = np.mean([float(s) for _, s in runs])

fig, (ax_n, ax_h) = subplots(1, 2, figsize=(13, 4.2))
ax_n.errorbar(sizes, estimates, yerr=2 * errors, fmt="o", capsize=3, label="estimate ± 2 SE")
ax_n.axhline(exact, color="black", ls="--", label=f"closed form {exact:.6f}")
ax_n.set_xscale("log")
ax_n.set_xlabel("number of samples n")
ax_n.set_ylabel("KL estimate (nats)")
ax_n.set_title("Monte Carlo converges like $1/\\sqrt{n}$")
ax_n.legend()
ax_h.hist(run_estimates, bins=40, density=True, alpha=0.6, label=f"{RUNS} runs, n = {N_PER_RUN}")
grid = np.linspace(run_estimates.min(), run_estimates.max(), 300)
ax_h.plot(grid, normal_pdf(grid, exact, mean_se), color="black",
          label=f"N(KL, SE²), SE = {mean_se:.4f} (average reported)")
ax_h.set_xlabel("estimate")
ax_h.set_title("Spread of repeated runs vs the reported standard error")
ax_h.legend(fontsize=8)
show(fig)

print(f"n = {sizes[-1]:,}: estimate {estimates[-1]:.5f} ± {errors[-1]:.5f} (closed form {exact:.6f}, "
      f"off by {abs(estimates[-1] - exact) / errors[-1]:.1f} SE); per-sample s.d. "
      f"{errors[-1] * math.sqrt(sizes[-1]):.4f} (derived: 0.7289)")
print(f"{RUNS} runs with n = {N_PER_RUN}: s.d. of the estimates {run_estimates.std(ddof=1):.4f}, "
      f"average reported SE {mean_se:.4f}, fraction within ±2 SE of the truth "
      f"{np.mean([abs(float(e) - exact) <= 2 * float(s) for e, s in runs]):.3f}")

# %% [markdown]
# At $n = 10$ the error bar is itself a rough estimate (from ten numbers), and in this run it
# misses the truth; from a few hundred samples on, the bars behave. The histogram is slightly
# skewed: $f$ contains $-3\varepsilon^2/8$, a long left tail, and with
# only 100 samples the average still shows it. The coverage of the $\pm2$ SE interval comes out
# close to the nominal 95%, a little below it — the price of estimating $s$ from the same 100
# samples. With thousands of samples both effects disappear.
#
# ## Part 4 · Mode-seeking and mass-covering
#
# The asymmetry matters most when the approximating family is too simple. Take a target $p$ with
# two well-separated bumps and the best *single* Gaussian $q = \mathcal N(m, s^2)$. There are two
# ways to ask for "best":
#
# * **Forward KL**, $\min_q \mathrm{KL}(p\,\|\,q)$ — the expectation runs under $p$. Wherever $p$
#   has mass and $q$ is tiny, $\log(p/q)$ is huge: $q$ must **cover all of $p$'s mass**. This is
#   what maximum likelihood does (fitting $q$ to samples of $p$); for a Gaussian $q$ the optimum
#   matches $p$'s mean and variance — a wide Gaussian sitting in the gap between the bumps.
# * **Reverse KL**, $\min_q \mathrm{KL}(q\,\|\,p)$ — the expectation runs under $q$. Where $q$
#   has no mass, nothing is charged, but wherever $q$ puts mass where $p$ is small it pays
#   heavily: $q$ **seeks one mode** and fits it snugly. This is what variational inference does:
#   the ELBO's gap is $\mathrm{KL}(q\,\|\,p(z\mid x))$ (Part 5), with $q$ first.
#
# genlab's `kl_gaussian_mixture` computes both KLs between a Gaussian and a 1-D mixture by
# quadrature on a fine grid, and `fit_gaussian` minimizes either one from a starting point. The
# contour plots show the whole landscape over $(m, \log s)$: one valley for the forward KL, two
# for the reverse KL — which mode $q$ ends up in depends on where the search starts.
# %% demo
from genlab.kl import fit_gaussian, gaussian_mixture, kl_gaussian_mixture

target = gaussian_mixture(weights=[0.5, 0.5], means=[-2.5, 2.5], stds=[0.7, 0.7])
fits = {"reverse KL(q‖p), start m = +1": ("reverse", 1.0, "tab:red"),
        "reverse KL(q‖p), start m = −1": ("reverse", -1.0, "tab:orange"),
        "forward KL(p‖q)": ("forward", 1.0, "tab:blue")}
fitted = {name: fit_gaussian(target, direction, mu0=start)
          for name, (direction, start, _) in fits.items()}

xs = torch.linspace(-7, 7, 800, dtype=F64)
m_grid = torch.linspace(-5, 5, 81, dtype=F64)
s_grid = torch.logspace(-0.8, 0.8, 61, dtype=F64)
fig, axes = subplots(1, 3, figsize=(16, 4.4))
axes[0].fill_between(xs, target.log_prob(xs).exp(), color="grey", alpha=0.35, label="target p")
for name, (direction, _, colour) in fits.items():
    m, s = fitted[name]
    axes[0].plot(xs, normal_pdf(xs.numpy(), m, s), color=colour, lw=2,
                 ls="--" if "−1" in name else "-", label=f"{name}: m = {m:+.2f}, s = {s:.2f}")
axes[0].set_title("One Gaussian fitted to two bumps")
axes[0].legend(fontsize=8, loc="upper left")
axes[0].set_ylim(0, 0.62)
for ax, direction in zip(axes[1:], ["reverse", "forward"]):
    surface = kl_gaussian_mixture(m_grid[:, None], s_grid[None, :], target, direction)
    levels = np.quantile(surface.numpy(), np.linspace(0.0, 0.9, 25))
    ax.contourf(m_grid, s_grid, surface.T.log(), levels=np.log(levels), cmap="viridis")
    for name, (d, _, colour) in fits.items():
        if d == direction:
            ax.plot(*fitted[name], "o", color=colour, ms=9, mec="white")
    ax.set_yscale("log")
    ax.minorticks_off()
    ax.set_yticks([0.2, 0.5, 1, 2, 5], labels=["0.2", "0.5", "1", "2", "5"])
    ax.set_xlabel("mean m of q")
    ax.set_ylabel("standard deviation s of q")
    ax.set_title(("reverse KL(q‖p): two valleys" if direction == "reverse"
                  else "forward KL(p‖q): one valley") + " (darker = smaller)")
show(fig)
print(f"mixture: mean {target.mean.item():.3f}, standard deviation {target.variance.sqrt().item():.3f}")
for name, (m, s) in fitted.items():
    print(f"{name:>31}: m = {m:+.3f}, s = {s:.3f}, KL(q‖p) = "
          f"{kl_gaussian_mixture(m, s, target, 'reverse').item():.3f}, KL(p‖q) = "
          f"{kl_gaussian_mixture(m, s, target, 'forward').item():.3f}")

# %% [markdown]
# The numbers tell the story. The forward fit is exactly the moment match (mean 0, standard
# deviation $\sqrt{0.7^2 + 2.5^2} \approx 2.60$): it covers both bumps and puts most of its mass in
# the empty gap between them. Each reverse fit sits on one bump with almost exactly that bump's
# width, and its reverse KL is about $\log 2 \approx 0.69$ — the price of ignoring half of $p$'s
# mass. Judged by the *other* KL, each fit does poorly (compare the last two columns). Neither is
# wrong; they answer different questions. (A reverse-KL search started exactly at $m=0$ stays there by symmetry, on
# a saddle between the two valleys.)
#
# A VAE's encoder is fitted with the reverse KL. When the true posterior of an image is
# multi-modal — the top of a 7 could also be the top of a 9 — a Gaussian $q$ will pick one
# reading and be confident about it, rather than spread over both.
#
# Monte Carlo needs no closed form, so it also checks the quadrature:
# %% demo
q_fit = Normal(torch.tensor(fitted["reverse KL(q‖p), start m = +1"][0], dtype=F64),
               torch.tensor(fitted["reverse KL(q‖p), start m = +1"][1], dtype=F64))
estimate, se = kl_monte_carlo(q_fit, target, budget(default=100_000, fast=10_000),
                              generator=torch.Generator().manual_seed(7))
print(f"KL(q‖p) for the red fit: Monte Carlo {float(estimate):.4f} ± {float(se):.4f}, "
      f"quadrature {kl_gaussian_mixture(q_fit.loc, q_fit.scale, target).item():.4f}")

# %% [markdown]
# ## Part 5 · A latent-variable model with an exact posterior
#
# The VAE's lower bound is easy to write down and impossible to check: for a neural decoder nobody
# can compute $\log p(x)$ or $p(z\mid x)$. One model is different. Let the decoder be **linear**:
#
# $$z \sim \mathcal N(0, I_K), \qquad x \mid z \sim \mathcal N(Wz + b,\; \sigma^2 I_D),
#   \qquad W \in \mathbb R^{D\times K},\; b \in \mathbb R^D,$$
#
# where the noise variance $\sigma^2$ is the argument `noise_var`.
#
# (Fitted to data this is *probabilistic PCA*, Tipping & Bishop 1999: lab 2's PCA baseline as a
# generative model.) Everything about it is Gaussian and exact.
#
# **The evidence.** $x = Wz + b + \sigma\varepsilon$ is a linear function of the Gaussians $z$ and
# $\varepsilon$, hence Gaussian, with mean $b$ and covariance
# $\operatorname{Cov}(Wz) + \operatorname{Cov}(\sigma\varepsilon) = WW^\top + \sigma^2 I_D$:
#
# $$p(x) = \mathcal N\big(x;\; b,\; WW^\top + \sigma^2 I_D\big).$$
#
# **The posterior, by Bayes' rule.** $\log p(z\mid x) = \log p(x\mid z) + \log p(z) - \log p(x)$,
# and only the first two terms depend on $z$:
#
# $$\log p(z\mid x) = -\frac{\|x - b - Wz\|^2}{2\sigma^2} - \frac{\|z\|^2}{2} + \text{const}
#   = -\tfrac12\, z^\top\Big(I + \frac{W^\top W}{\sigma^2}\Big) z + z^\top \frac{W^\top (x-b)}{\sigma^2} + \text{const}.$$
#
# A quadratic in $z$ is the log of a Gaussian; matching it with
# $-\tfrac12 (z-m)^\top\Sigma^{-1}(z-m)$ reads off the **precision** and the mean:
#
# $$\Sigma = \Big(I_K + \frac{W^\top W}{\sigma^2}\Big)^{-1}, \qquad m(x) = \Sigma\, \frac{W^\top (x - b)}{\sigma^2}.$$
#
# The prior contributes the $I_K$; without it you would get least squares, which trusts the data
# completely. Note that $\Sigma$ does not depend on $x$: in this model every observation leaves the
# same uncertainty about its code.
#
# ## Exercise 4 · `LinearGaussianModel` (2 + 2 points)
#
# **Your task.** Complete the class. The constructor is given: it keeps `W` (shape `(D, K)`), `b`
# (shape `(D,)`) and `noise_var` (a positive Python float, the variance $\sigma^2$) as attributes,
# which Exercise 5 uses. Write
#
# * `log_marginal(x)`: for `x` of shape `(N, D)`, the per-sample $\log p(x)$, shape `(N,)`. You may
#   use `torch.distributions.MultivariateNormal(mean, covariance_matrix)` and its `log_prob`;
# * `posterior(x)`: the pair `(mean, cov)` with `mean` of shape `(N, K)` (one row per sample) and
#   `cov` of shape `(K, K)` (shared by all samples). `torch.linalg.inv` inverts a matrix; mind
#   that `x` holds samples as **rows**, so $W^\top(x - b)$ for all of them at once is
#   `(x - b) @ W`.
# %% solution LinearGaussianModel
class LinearGaussianModel:
    """z ~ N(0, I_K), x | z ~ N(W z + b, noise_var I_D), with W of shape (D, K) and b of shape (D,)."""

    def __init__(self, W, b, noise_var):
        self.W, self.b, self.noise_var = W, b, noise_var

    def log_marginal(self, x):
        """Per-sample log p(x) for x of shape (N, D)."""
        ### BEGIN SOLUTION
        D = self.W.shape[0]
        cov = self.W @ self.W.T + self.noise_var * torch.eye(D, dtype=self.W.dtype, device=self.W.device)
        return MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)
        ### END SOLUTION

    def posterior(self, x):
        """p(z | x) = N(mean, cov): mean of shape (N, K), cov of shape (K, K)."""
        ### BEGIN SOLUTION
        K = self.W.shape[1]
        eye = torch.eye(K, dtype=self.W.dtype, device=self.W.device)
        cov = torch.linalg.inv(eye + self.W.T @ self.W / self.noise_var)
        mean = (x - self.b) @ self.W @ cov / self.noise_var      # rows: cov W^T (x_i - b) / noise_var
        return mean, cov
        ### END SOLUTION

# %% test test_LinearGaussianModel points=2
import torch
from torch.distributions import MultivariateNormal
from genlab.testing import CheckFailed, check_close, check_tensor, devices


def _lgm_data(D, K, seed, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, K, generator=g, dtype=dtype)
    b = torch.randn(D, generator=g, dtype=dtype)
    x = b + 2 * torch.randn(6, D, generator=g, dtype=dtype)
    return W.to(device), b.to(device), x.to(device)


def _log_marginal_check(D, K, s, seed, dtype=torch.float64, device="cpu", atol=1e-8, rtol=1e-8):
    W, b, x = _lgm_data(D, K, seed, dtype, device)
    what = f"LinearGaussianModel(W of shape ({D}, {K}), b, noise_var={s}).log_marginal(x), x of shape (6, {D})"
    model = attempt(what, LinearGaussianModel, W, b, s)
    got = attempt(what, model.log_marginal, x)
    eye = torch.eye(D, dtype=dtype, device=device)
    logp = lambda mean, cov: MultivariateNormal(mean, cov).log_prob(x)
    expected = logp(b, W @ W.T + s * eye)
    mistakes = {
        "noise_var squared: it is already a variance, so the covariance is W W^T + noise_var I":
            logp(b, W @ W.T + s ** 2 * eye),
        "forgetting the offset b: x has mean b": logp(torch.zeros_like(b), W @ W.T + s * eye),
        "log p(x | z = 0): integrating z out adds W W^T to the covariance": logp(b, s * eye),
        "the density instead of its logarithm": expected.exp(),
        "one number for the whole batch: return one log p(x) per row of x": lambda a: a.dim() == 0,
        "log densities per coordinate: x has a single D-dimensional Gaussian distribution":
            lambda a: tuple(a.shape) == tuple(x.shape),
    }
    if D <= K:    # these covariances are invertible only when W W^T or W^T W has full rank
        mistakes["forgetting the noise: the covariance of x is W W^T + noise_var I"] = logp(b, W @ W.T)
    if D == K:
        mistakes["W^T W in place of W W^T"] = logp(b, W.T @ W + s * eye)
    check_close(got, expected, what, mistakes=mistakes, atol=atol, rtol=rtol)
    check_tensor(got, what, dtype=dtype, device=device)


_W, _b, _ = _lgm_data(4, 2, 0)
_model = attempt("LinearGaussianModel(W, b, 0.3)", LinearGaussianModel, _W, _b, 0.3)
for _name, _value in [("W", _W), ("b", _b), ("noise_var", 0.3)]:
    if not hasattr(_model, _name):
        raise CheckFailed(f"LinearGaussianModel(W, b, 0.3) has no attribute {_name}\n"
                          "  Hint: keep the constructor as given: Exercise 5 reads model.W, model.b "
                          "and model.noise_var")
_log_marginal_check(3, 3, 0.5, seed=1)
_log_marginal_check(4, 2, 0.3, seed=0)
### BEGIN HIDDEN TESTS
_log_marginal_check(2, 5, 0.1, seed=2)
_log_marginal_check(6, 1, 2.0, seed=3)
_log_marginal_check(1, 1, 0.7, seed=4)
_log_marginal_check(5, 3, 0.2, seed=5, dtype=torch.float32, atol=1e-3, rtol=1e-4)
for _dev in devices():
    _log_marginal_check(3, 2, 0.4, seed=6, dtype=torch.float32, device=_dev, atol=1e-3, rtol=1e-4)
### END HIDDEN TESTS

# %% test test_LinearGaussianModel_posterior points=2
import torch
from genlab.testing import CheckFailed, check_close, check_tensor, devices


def _lgm_data(D, K, seed, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, K, generator=g, dtype=dtype)
    b = torch.randn(D, generator=g, dtype=dtype)
    x = b + 2 * torch.randn(6, D, generator=g, dtype=dtype)
    return W.to(device), b.to(device), x.to(device)


def _conditional(W, b, s, x):
    """p(z | x) from the joint Gaussian of (z, x): mean Cov(z, x) Cov(x)^-1 (x - b),
    covariance I - Cov(z, x) Cov(x)^-1 Cov(x, z), with Cov(z, x) = W^T."""
    D, K = W.shape
    gain = torch.linalg.solve(W @ W.T + s * torch.eye(D, dtype=W.dtype, device=W.device), W).T
    return (x - b) @ gain.T, torch.eye(K, dtype=W.dtype, device=W.device) - gain @ W


def _posterior_check(D, K, s, seed, dtype=torch.float64, device="cpu", atol=1e-8, rtol=1e-8):
    W, b, x = _lgm_data(D, K, seed, dtype, device)
    what = f"LinearGaussianModel(W of shape ({D}, {K}), b, noise_var={s}).posterior(x), x of shape (6, {D})"
    model = attempt(what, LinearGaussianModel, W, b, s)
    result = attempt(what, model.posterior, x)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailed(f"{what}: expected a pair (mean, cov), got {type(result).__name__}")
    mean, cov = result
    exp_mean, exp_cov = _conditional(W, b, s, x)
    eye = torch.eye(K, dtype=dtype, device=device)
    precision = eye + W.T @ W / s
    cov_mistakes = {
        "the precision I + W^T W / noise_var instead of its inverse, the covariance": precision,
        "noise_var squared: it is already a variance": torch.linalg.inv(eye + W.T @ W / s ** 2),
        "a covariance built from W W^T: the posterior covariance is K x K, (I + W^T W / noise_var)^-1":
            lambda a: tuple(a.shape) == (D, D) and D != K,
        "one covariance per sample of shape (N, K, K): return the shared (K, K) matrix":
            lambda a: a.dim() == 3,
    }
    if K <= D:
        cov_mistakes["forgetting the prior's I in the precision: (W^T W / noise_var)^-1 is least "
                     "squares, not Bayes"] = torch.linalg.inv(W.T @ W / s)
    check_close(cov, exp_cov, f"{what}: the covariance", mistakes=cov_mistakes, atol=atol, rtol=rtol)
    check_tensor(cov, f"{what}: the covariance", dtype=dtype, device=device)
    mean_mistakes = {
        "forgetting to subtract b: the mean is cov W^T (x - b) / noise_var": (x @ W) @ exp_cov / s,
        "a mean without the posterior covariance: cov W^T (x - b) / noise_var, not W^T (x - b) / noise_var":
            (x - b) @ W / s,
        "a mean without the 1 / noise_var": (x - b) @ W @ exp_cov,
        "noise_var squared in the mean": (x - b) @ W @ exp_cov / s ** 2,
        "the transpose of the mean: one row per sample, shape (N, K)": lambda a: tuple(a.shape) == (K, len(x)) and K != len(x),
    }
    if K <= D:
        mean_mistakes["the least-squares code pinv(W) (x - b): the prior pulls the mean towards 0"] = \
            (x - b) @ torch.linalg.pinv(W).T
    check_close(mean, exp_mean, f"{what}: the mean", mistakes=mean_mistakes, atol=atol, rtol=rtol)
    check_tensor(mean, f"{what}: the mean", dtype=dtype, device=device)


_posterior_check(3, 3, 0.5, seed=1)
_posterior_check(4, 2, 0.3, seed=0)
### BEGIN HIDDEN TESTS
_posterior_check(2, 5, 0.1, seed=2)
_posterior_check(6, 1, 2.0, seed=3)
_posterior_check(1, 1, 0.7, seed=4)
_posterior_check(5, 3, 0.2, seed=5, dtype=torch.float32, atol=1e-4, rtol=1e-4)
for _dev in devices():
    _posterior_check(3, 2, 0.4, seed=6, dtype=torch.float32, device=_dev, atol=1e-4, rtol=1e-4)
### END HIDDEN TESTS

# %% [markdown]
# Check the evidence the slow way: sample $(z, x)$ pairs from the model and compare the sample
# mean and covariance of $x$ with $b$ and $WW^\top + \sigma^2 I$. And check the posterior with
# Bayes' rule itself: at any $z$, $\log p(x\mid z) + \log p(z) - \log p(x)$ must equal the log
# density of your posterior Gaussian.
# %% demo
g = torch.Generator().manual_seed(3)
W_demo = torch.randn(4, 2, generator=g, dtype=F64)
b_demo = torch.randn(4, generator=g, dtype=F64)
model = LinearGaussianModel(W_demo, b_demo, 0.3)
z_s = torch.randn(budget(default=200_000, fast=20_000), 2, generator=g, dtype=F64)
x_s = z_s @ W_demo.T + b_demo + math.sqrt(0.3) * torch.randn(len(z_s), 4, generator=g, dtype=F64)
print("largest |sample mean - b|:", (x_s.mean(0) - b_demo).abs().max().item())
print("largest |sample covariance - (W W^T + noise_var I)|:",
      (torch.cov(x_s.T) - W_demo @ W_demo.T - 0.3 * torch.eye(4, dtype=F64)).abs().max().item())

x_few, z_any = x_s[:5], torch.randn(5, 2, generator=g, dtype=F64)
mean, cov = model.posterior(x_few)
log_lik = Normal(z_any @ W_demo.T + b_demo, math.sqrt(0.3)).log_prob(x_few).sum(-1)
log_prior = Normal(0.0, 1.0).log_prob(z_any).sum(-1)
bayes = log_lik + log_prior - model.log_marginal(x_few)
print("Bayes' rule vs your posterior density at 5 random z:\n",
      torch.stack([bayes, MultivariateNormal(mean, cov).log_prob(z_any)]))

# %% [markdown]
# ## Exercise 5 · The ELBO in closed form (3 points)
#
# For any distribution $q(z)$ the evidence lower bound is
#
# $$\mathrm{ELBO}(q) = \mathbb E_{q}\big[\log p(x\mid z)\big] - \mathrm{KL}\big(q(z)\,\|\,p(z)\big)
#   = \mathbb E_q\big[\log p(x\mid z) + \log p(z) - \log q(z)\big].$$
#
# In the linear-Gaussian model and for a diagonal Gaussian $q = \mathcal N(\mu, \operatorname{diag}\sigma^2)$
# (with $\sigma_k^2 = e^{\ell_k}$, where $\ell$ is `q_logvar`) both terms have closed forms.
#
# **The reconstruction term.** $\log p(x\mid z) = -\frac D2\log(2\pi\sigma_x^2) -
# \frac{\|x - b - Wz\|^2}{2\sigma_x^2}$, writing $\sigma_x^2$ for `noise_var`. Its expectation needs
# $\mathbb E_q\|x - b - Wz\|^2$. Split $z = \mu + (z - \mu)$: the squared norm of a fixed vector minus
# a zero-mean one is the fixed part's squared norm plus the random part's expected squared norm (the
# cross term averages to zero), so
#
# $$\mathbb E_q\|x - b - Wz\|^2 = \|x - b - W\mu\|^2 + \mathbb E_q\|W(z - \mu)\|^2
#   = \|x - b - W\mu\|^2 + \sum_{k=1}^{K}\sigma_k^2\,\|W_{:,k}\|^2 .$$
#
# The second sum is the cost of *uncertainty*: the wider $q$, the more the decoded means $Wz$
# scatter around $x$. (A VAE estimates this term by sampling one $z$ — that is why its loss is
# noisy.)
#
# **The KL term** is lab 4's `kl_to_standard_normal(mu, logvar)`, imported in the set-up cell — or
# your `kl_diag_gaussians` with $\mu_p = 0$, $\log\sigma_p^2 = 0$. Altogether
#
# $$\mathrm{ELBO}(q) = -\frac D2\log(2\pi\sigma_x^2)
#   - \frac{\|x - b - W\mu\|^2 + \sum_k \sigma_k^2\|W_{:,k}\|^2}{2\sigma_x^2}
#   - \mathrm{KL}\big(\mathcal N(\mu, \operatorname{diag}\sigma^2)\,\|\,\mathcal N(0, I)\big).$$
#
# **Your task.** Write `elbo(model, x, q_mu, q_logvar)`: `model` has attributes `W (D, K)`,
# `b (D,)` and `noise_var` (a float); `x` is `(N, D)`; `q_mu` and `q_logvar` are `(N, K)`, one
# diagonal Gaussian per sample. Return the per-sample ELBO, shape `(N,)`, exactly — no sampling.
# %% solution elbo
def elbo(model, x, q_mu, q_logvar):
    """Per-sample ELBO of the linear-Gaussian model for q = N(q_mu, diag exp(q_logvar)), in closed form."""
    ### BEGIN SOLUTION
    D = x.shape[-1]
    residual = x - q_mu @ model.W.T - model.b
    spread = (q_logvar.exp() * model.W.pow(2).sum(0)).sum(-1)   # sum_k sigma_k^2 ||W[:, k]||^2
    expected_log_lik = (-0.5 * D * math.log(2 * math.pi * model.noise_var)
                        - (residual.pow(2).sum(-1) + spread) / (2 * model.noise_var))
    return expected_log_lik - kl_to_standard_normal(q_mu, q_logvar)
    ### END SOLUTION

# %% test test_elbo points=3
import math
import torch
from torch.distributions import MultivariateNormal, kl_divergence
from genlab.kl import LinearGaussianModel as _ReferenceModel
from genlab.testing import CheckFailed, check_close, check_tensor, devices
from genlab.vae import kl_to_standard_normal


def _elbo_case(D, K, s, seed, dtype=torch.float64, device="cpu", orthogonal=False):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, K, generator=g, dtype=dtype)
    if orthogonal:   # orthogonal columns: W^T W is diagonal, and so is the posterior covariance
        W = torch.linalg.qr(W)[0] * torch.linspace(0.5, 2.0, K, dtype=dtype)
    b = torch.randn(D, generator=g, dtype=dtype)
    x = b + 2 * torch.randn(7, D, generator=g, dtype=dtype)
    q_mu = torch.randn(7, K, generator=g, dtype=dtype)
    q_logvar = torch.randn(7, K, generator=g, dtype=dtype) - 0.5
    to = lambda t: t.to(device)
    return _ReferenceModel(to(W), to(b), s), to(x), to(q_mu), to(q_logvar)


def _evidence_and_posterior(model, x):
    W, b, s = model.W, model.b, model.noise_var
    D, K = W.shape
    cov_x = W @ W.T + s * torch.eye(D, dtype=W.dtype, device=W.device)
    gain = torch.linalg.solve(cov_x, W).T
    post = MultivariateNormal((x - b) @ gain.T, torch.eye(K, dtype=W.dtype, device=W.device) - gain @ W)
    return MultivariateNormal(b, cov_x).log_prob(x), post


def _elbo_check(model, x, q_mu, q_logvar, what, atol=1e-8, rtol=1e-8):
    got = attempt(what, elbo, model, x, q_mu, q_logvar)
    evidence, post = _evidence_and_posterior(model, x)
    q = MultivariateNormal(q_mu, torch.diag_embed(q_logvar.exp()))
    expected = evidence - kl_divergence(q, post)          # log p(x) = ELBO(q) + KL(q || p(z | x))
    W, b, s = model.W, model.b, model.noise_var
    D, K = W.shape

    def variant(lv=q_logvar, spread=True, const=True, half=True, s_=s, kl_scale=-1.0, kl_mean=False):
        squared = (x - q_mu @ W.T - b).pow(2).sum(-1)
        if spread:
            squared = squared + (lv.exp() * W.pow(2).sum(0)).sum(-1)
        value = -squared / ((2 if half else 1) * s_)
        if const:
            value = value - 0.5 * D * math.log(2 * math.pi * s_)
        kl = kl_to_standard_normal(q_mu, lv)
        return value + kl_scale * (kl / K if kl_mean else kl)

    mistakes = {
        "forgetting the spread of z under q: E_q||x - b - Wz||^2 = ||x - b - W mu||^2 + "
        "sum_k sigma_k^2 ||W[:, k]||^2": variant(spread=False),
        "forgetting the normalizing constant -(D/2) log(2 pi noise_var) of log p(x | z)":
            variant(const=False),
        "a sign error: the ELBO subtracts KL(q || p(z))": variant(kl_scale=1.0),
        "the KL term missing: the ELBO is E_q[log p(x | z)] - KL(q || p(z))": variant(kl_scale=0.0),
        "logvar used as a log standard deviation: sigma^2 = exp(logvar), not exp(2 logvar)":
            variant(lv=2 * q_logvar),
        "a missing 1/2: log p(x | z) contains -||x - b - Wz||^2 / (2 noise_var)": variant(half=False),
        "noise_var squared: it is already a variance": variant(s_=s ** 2),
        "the KL averaged over the latent dimensions instead of summed": variant(kl_mean=True),
        "log p(x) itself: the ELBO equals it only when q is the exact posterior": evidence,
        "the negative ELBO (a loss): return the ELBO itself": -expected,
        "one number for the whole batch: return one ELBO per row of x": lambda a: a.dim() == 0,
    }
    if K == 1:
        mistakes.pop("the KL averaged over the latent dimensions instead of summed")
    check_close(got, expected, what, mistakes=mistakes, atol=atol, rtol=rtol)
    check_tensor(got, what, dtype=x.dtype, device=x.device)
    again = attempt(what, elbo, model, x, q_mu, q_logvar)
    check_close(again, got, f"{what}, called twice",
                mistakes={"sampling z (a Monte Carlo estimate): the closed form needs no random "
                          "numbers": lambda a: True})


_elbo_check(*_elbo_case(4, 2, 0.3, seed=0), "elbo(model with W (4, 2), x (7, 4), random q)")
_model, _x, _, _ = _elbo_case(5, 3, 0.5, seed=1, orthogonal=True)
_mean, _cov = _model.posterior(_x)
_what = "elbo at the exact posterior (diagonal here), which must equal log p(x)"
_at_posterior = attempt(_what, elbo, _model, _x, _mean, torch.diag(_cov).log().expand_as(_mean))
check_close(_at_posterior, _model.log_marginal(_x), _what, atol=1e-8, rtol=1e-8)
### BEGIN HIDDEN TESTS
_elbo_check(*_elbo_case(3, 5, 0.1, seed=2), "elbo with more latent than data dimensions")
_elbo_check(*_elbo_case(6, 1, 1.5, seed=3), "elbo with one latent dimension")
_elbo_check(*_elbo_case(8, 4, 0.05, seed=4), "elbo with W (8, 4), noise_var 0.05")
_elbo_check(*_elbo_case(4, 2, 0.3, seed=5, dtype=torch.float32), "elbo in float32", atol=1e-3, rtol=1e-4)
for _dev in devices():
    _elbo_check(*_elbo_case(4, 3, 0.3, seed=6, dtype=torch.float32, device=_dev),
                f"elbo on {_dev.type}", atol=1e-3, rtol=1e-4)
### END HIDDEN TESTS

# %% [markdown]
# ### Watching $\log p(x) = \mathrm{ELBO}(q) + \mathrm{KL}(q\,\|\,p(z\mid x))$
#
# Why does this identity hold? For every $z$, Bayes' rule says
# $\log p(x) = \log p(x, z) - \log p(z\mid x)$. The left side does not depend on $z$, so averaging
# both sides over any $q(z)$ changes nothing; adding and subtracting $\log q(z)$ inside the average
# splits it:
#
# $$\log p(x) = \underbrace{\mathbb E_q\big[\log p(x,z) - \log q(z)\big]}_{\mathrm{ELBO}(q)}
#   + \underbrace{\mathbb E_q\big[\log q(z) - \log p(z\mid x)\big]}_{\mathrm{KL}(q\,\|\,p(z\mid x))\;\ge\;0}.$$
#
# Since the KL is never negative, the ELBO is a lower bound, and since $\log p(x)$ does not depend
# on $q$, raising the ELBO by changing $q$ is **the same as** lowering the KL to the true posterior.
# The bound is tight exactly when $q$ *is* the posterior. Three checks, all with functions you
# wrote: first, your closed form against a Monte Carlo estimate of
# $\mathbb E_q[\log p(x\mid z) + \log p(z) - \log q(z)]$, using the reparameterization of lab 4 to
# draw $z$:
# %% demo
from genlab.vae import reparameterize

g = torch.Generator().manual_seed(4)
W5 = torch.randn(5, 3, generator=g, dtype=F64)
b5 = torch.randn(5, generator=g, dtype=F64)
model5 = LinearGaussianModel(W5, b5, 0.4)
x5 = b5 + 2 * torch.randn(4, 5, generator=g, dtype=F64)
q_mu5 = torch.randn(4, 3, generator=g, dtype=F64)
q_logvar5 = torch.randn(4, 3, generator=g, dtype=F64) - 1

n_mc = budget(default=100_000, fast=10_000)
eps = torch.randn(n_mc, 4, 3, generator=g, dtype=F64)
z5 = reparameterize(q_mu5.expand_as(eps), q_logvar5.expand_as(eps), eps)   # (n, 4, 3)
log_lik = Normal(z5 @ W5.T + b5, math.sqrt(0.4)).log_prob(x5).sum(-1)
log_prior = Normal(0.0, 1.0).log_prob(z5).sum(-1)
log_q = Normal(q_mu5, (0.5 * q_logvar5).exp()).log_prob(z5).sum(-1)
terms = log_lik + log_prior - log_q
print("closed form:", elbo(model5, x5, q_mu5, q_logvar5))
print("Monte Carlo:", terms.mean(0), "\n    ± 1 SE:", terms.std(0) / math.sqrt(n_mc))

# %% [markdown]
# Second, the identity itself for 200 random $q$'s, with `torch.distributions` supplying the KL
# between your diagonal $q$ and your (full-covariance) posterior:
# %% demo
x_one = x5[:1].expand(200, 5)
q_mu_r = 2 * torch.randn(200, 3, generator=g, dtype=F64)
q_logvar_r = 1.5 * torch.randn(200, 3, generator=g, dtype=F64)
post_mean, post_cov = model5.posterior(x_one)
gap = kl_divergence(MultivariateNormal(q_mu_r, torch.diag_embed(q_logvar_r.exp())),
                    MultivariateNormal(post_mean, post_cov))
bound = elbo(model5, x_one, q_mu_r, q_logvar_r)
evidence = model5.log_marginal(x5[:1]).item()
print(f"log p(x) = {evidence:.6f}")
print(f"ELBO + KL over 200 random q: from {(bound + gap).min().item():.6f} to "
      f"{(bound + gap).max().item():.6f} (largest deviation {(bound + gap - evidence).abs().max().item():.1e})")
print(f"ELBO alone: from {bound.min().item():.1f} to {bound.max().item():.3f}, always below log p(x): "
      f"{bool((bound < evidence).all())}")

# %% [markdown]
# Third, the gap closing. On the left, a model whose posterior covariance happens to be diagonal
# (orthogonal columns of $W$): we slide $q$ along a straight line in $(\mu, \log\sigma^2)$ from a
# random start to the exact posterior, and the ELBO climbs until it touches $\log p(x)$. On the
# right, the model of the previous cells, whose posterior is **correlated**: no diagonal $q$ can
# equal it. We maximize the ELBO over $(\mu, \log\sigma^2)$ by gradient ascent — autograd runs
# straight through your `elbo` — and the gap stops at a positive value: exactly
# $\mathrm{KL}(q^\star\,\|\,p(z\mid x))$ of the best diagonal $q^\star$ (the "mean-field" solution).
# %% demo
g = torch.Generator().manual_seed(5)
Q, _ = torch.linalg.qr(torch.randn(5, 3, generator=g, dtype=F64))
model_diag = LinearGaussianModel(Q * torch.tensor([2.0, 1.0, 0.5], dtype=F64),
                                 torch.randn(5, generator=g, dtype=F64), 0.3)
x_d = model_diag.b[None] + 2 * torch.randn(1, 5, generator=g, dtype=F64)
mean_d, cov_d = model_diag.posterior(x_d)
start_mu, start_lv = torch.randn(1, 3, generator=g, dtype=F64) * 2, torch.zeros(1, 3, dtype=F64) + 1.5
ts = torch.linspace(0, 1, 41, dtype=F64)[:, None]
path_mu = (1 - ts) * start_mu + ts * mean_d
path_lv = (1 - ts) * start_lv + ts * torch.diag(cov_d).log()
path_elbo = elbo(model_diag, x_d.expand(41, 5), path_mu, path_lv)
evidence_d = model_diag.log_marginal(x_d).item()

x_c = x5[:1]
mean_c, cov_c = model5.posterior(x_c)
q_mu = torch.zeros(1, 3, dtype=F64, requires_grad=True)
q_logvar = torch.zeros(1, 3, dtype=F64, requires_grad=True)
optimizer = torch.optim.Adam([q_mu, q_logvar], lr=0.1)
STEPS = budget(default=400, fast=300)
ascent = []
for step in range(STEPS):
    optimizer.zero_grad()
    loss = -elbo(model5, x_c, q_mu, q_logvar).sum()
    loss.backward()
    optimizer.step()
    ascent.append(-loss.item())
evidence_c = model5.log_marginal(x_c).item()
mean_field_var = 1 / torch.diag(torch.linalg.inv(cov_c))          # best diagonal q: 1 / diag(precision)
best_gap = kl_divergence(MultivariateNormal(mean_c, torch.diag_embed(mean_field_var[None])),
                         MultivariateNormal(mean_c, cov_c)).item()

fig, (ax_l, ax_r, ax_e) = subplots(1, 3, figsize=(17, 4.3))
ax_l.plot(ts.squeeze(), path_elbo.detach(), label="ELBO(q)")
ax_l.axhline(evidence_d, color="black", ls="--", label="log p(x)")
ax_l.fill_between(ts.squeeze(), path_elbo.detach(), evidence_d, color="tab:orange", alpha=0.3,
                  label="gap = KL(q ‖ p(z|x))")
ax_l.set_xlabel("position on the path (0: random q, 1: exact posterior)")
ax_l.set_ylabel("nats")
ax_l.set_title("Diagonal posterior: the gap closes")
ax_l.legend()
ax_r.plot(np.arange(1, STEPS + 1), ascent, label="ELBO during gradient ascent")
ax_r.axhline(evidence_c, color="black", ls="--", label="log p(x)")
ax_r.axhline(evidence_c - best_gap, color="tab:red", ls=":", label="log p(x) − KL(q* ‖ p(z|x))")
ax_r.set_ylim(evidence_c - 6 * best_gap - 1, evidence_c + best_gap + 0.3)
ax_r.set_xlabel("Adam step")
ax_r.set_title("Correlated posterior: the best diagonal q keeps a gap")
ax_r.legend()
# the posterior and the best diagonal q in the first two latent coordinates
angles = torch.linspace(0, 2 * math.pi, 200, dtype=F64)
circle = torch.stack([angles.cos(), angles.sin()])
for cov2, colour, label in [(cov_c[:2, :2], "black", "true posterior"),
                            (torch.diag(q_logvar.detach()[0, :2].exp()), "tab:red", "ELBO-optimal diagonal q")]:
    ellipse = torch.linalg.cholesky(cov2) @ (2 * circle)
    centre = mean_c[0, :2] if colour == "black" else q_mu.detach()[0, :2]
    ax_e.plot(centre[0] + ellipse[0], centre[1] + ellipse[1], color=colour, label=label)
ax_e.set_aspect("equal")
ax_e.set_xlabel("$z_1$")
ax_e.set_ylabel("$z_2$")
ax_e.set_title("2-σ ellipses: the diagonal q is too narrow")
ax_e.legend(fontsize=8)
show(fig)
print(f"left:  log p(x) = {evidence_d:.6f}, ELBO at the posterior = {path_elbo[-1].item():.6f}")
print(f"right: log p(x) = {evidence_c:.4f}, ELBO after {STEPS} steps = {ascent[-1]:.4f}, "
      f"gap {evidence_c - ascent[-1]:.4f}; KL of the best diagonal q = {best_gap:.4f}")
print("       q's mean vs posterior mean:", q_mu.detach()[0], mean_c[0])
print("       q's variances vs 1/diag(precision) vs diag(posterior cov):",
      q_logvar.detach()[0].exp(), mean_field_var, torch.diag(cov_c))

# %% [markdown]
# On the right, the ELBO-optimal diagonal $q$ gets the posterior **mean** exactly right, but its
# variances are $1/\Lambda_{kk}$ (one over the diagonal of the precision), which is smaller than the
# true marginal variances $\Sigma_{kk}$ whenever the coordinates are correlated. That is the
# mode-seeking habit of the reverse KL from Part 4 again: $q$ must avoid every place where the
# posterior is small, so it shrinks into the inside of the tilted ellipse rather than covering it.
# Variational posteriors tend to be **over-confident**.
#
# ## Part 6 · Back to the VAE
#
# Lab 4's loss is this lab's ELBO with two changes: the decoder is a neural network with Bernoulli
# pixels instead of $Wz + b$ with Gaussian noise, and $q(z\mid x)$ is produced by an encoder for
# each image instead of being chosen freely. Written as a loss (negated), for one image,
#
# $$-\mathrm{ELBO} = \underbrace{\mathbb E_{q}\big[-\log p_\theta(x\mid z)\big]}_{\texttt{recon}:
#   \text{ one reparameterized sample}}
#   + \underbrace{\mathrm{KL}\big(\mathcal N(\mu, \operatorname{diag}\sigma^2)\,\|\,\mathcal N(0, I)\big)}_{\texttt{kl}:
#   \text{ closed form, Exercise 2}}.$$
#
# The KL term of `elbo_loss` is lab 4's `kl_to_standard_normal` — the function the set-up cell
# gave you for Exercise 5 — and it agrees with your `kl_diag_gaussians` against $\mathcal N(0, I)$. Check it on the encoder of a (freshly initialized)
# VAE from lab 4 and a few test digits:
# %% demo
from genlab.data import load_mnist
from genlab.vae import VAE, elbo_loss

torch.manual_seed(0)
vae = VAE(latent_dim=8)
digits, _ = load_mnist("test", limit=16)
with torch.no_grad():
    mu, logvar = vae.encode(digits)
    logits = vae.decode(reparameterize(mu, logvar))
    loss, recon, kl_term = elbo_loss(logits, digits, mu, logvar)
mine = kl_diag_gaussians(mu, logvar, torch.zeros(8), torch.zeros(8))
print(f"elbo_loss: loss {loss.item():.3f} = recon {recon.item():.3f} + kl {kl_term.item():.4f} "
      "(nats per image)")
print(f"batch mean of your kl_diag_gaussians(mu, logvar, 0, 0): {mine.mean().item():.4f}; "
      f"largest per-image difference to kl_to_standard_normal: "
      f"{(mine - kl_to_standard_normal(mu, logvar)).abs().max().item():.1e}")

# %% [markdown]
# Everything you verified here carries over to the VAE, where nobody can verify it:
#
# * its loss is $-\mathrm{ELBO} \ge -\log p(x)$: an **upper bound** on the negative log-likelihood,
#   whose slack is $\mathrm{KL}(q(z\mid x)\,\|\,p(z\mid x))$ — so a lower VAE loss means a better
#   model, a better encoder, or both;
# * the KL to the prior is computed exactly, the reconstruction term by a single sample; the
#   sampling noise is in the reconstruction only;
# * the encoder is fitted by the reverse KL, so its $q(z\mid x)$ is mode-seeking and tends to be
#   over-confident.
#
# ## The figures of this run
# %% demo
print(f"KL(N(1, 0.5²) ‖ N(0, 1)): closed form {exact:.6f}; Monte Carlo with n = {sizes[-1]:,}: "
      f"{estimates[-1]:.5f} ± {errors[-1]:.5f}; per-sample s.d. {errors[-1] * math.sqrt(sizes[-1]):.4f}")
print(f"{RUNS} repeated runs (n = {N_PER_RUN}): s.d. of the estimates {run_estimates.std(ddof=1):.4f} "
      f"vs average reported SE {mean_se:.4f}")
for name, (m, s) in fitted.items():
    print(f"fit, {name}: m = {m:+.3f}, s = {s:.3f}")
print(f"ELBO + KL(q ‖ posterior) - log p(x), 200 random q: largest |deviation| "
      f"{(bound + gap - evidence).abs().max().item():.1e}")
print(f"correlated posterior: ELBO gap after gradient ascent {evidence_c - ascent[-1]:.4f} "
      f"(mean-field KL {best_gap:.4f})")

# %% [markdown]
# With the default budget this run gave: the closed form 0.818147 against a Monte Carlo estimate
# of $0.81919 \pm 0.00230$ from 100,000 samples (0.5 standard errors off), with a per-sample
# standard deviation of 0.7282 (derived: 0.7289); 2,000 repeated runs with 100 samples each spread
# by 0.0733 against an average reported standard error of 0.0718, and 93.8% of their $\pm2$ SE
# intervals covered the truth; the reverse-KL fits landed at $m = \pm 2.499$, $s = 0.703$ and the
# forward fit at $m = 0$, $s = 2.596$; the identity $\log p(x) = \mathrm{ELBO} + \mathrm{KL}$ held
# to $7\times10^{-13}$ over 200 random $q$; and gradient ascent on the ELBO left a gap of 0.2435
# nats, the mean-field KL to four digits.
#
# ## Summary
#
# * $\mathrm{KL}(p\,\|\,q) = \mathbb E_p[\log p - \log q]$: an average under the **first**
#   argument, $\ge 0$, $= 0$ only when $p = q$, and not symmetric.
# * For Gaussians it is cross-entropy minus entropy:
#   $\log\frac{\sigma_2}{\sigma_1} + \frac{\sigma_1^2 + (\mu_1-\mu_2)^2}{2\sigma_2^2} - \frac12$.
#   For independent coordinates the KLs **add**; in the log-variance parametrization,
#   $\tfrac12\sum_j[\ell^p_j - \ell^q_j + (e^{\ell^q_j} + (\mu^q_j-\mu^p_j)^2)/e^{\ell^p_j} - 1]$,
#   and against $\mathcal N(0, I)$ it is the VAE's regularizer.
# * Any KL can be estimated by sampling from the first argument; report it with its standard error
#   $s/\sqrt n$, and check the error bar against repeated runs.
# * Fitting a simple $q$ to a complicated $p$: $\min \mathrm{KL}(p\,\|\,q)$ covers all the mass
#   (maximum likelihood), $\min \mathrm{KL}(q\,\|\,p)$ locks onto a mode (variational inference).
# * $\log p(x) = \mathrm{ELBO}(q) + \mathrm{KL}(q\,\|\,p(z\mid x))$ for every $q$: the ELBO is a
#   lower bound, tight exactly at the true posterior; maximizing it over $q$ minimizes the KL to
#   the posterior, and a diagonal $q$ facing a correlated posterior ends up too narrow.
#
# ## Questions to think about
#
# 1. Where in the derivation of the univariate KL did you use that $p$ is Gaussian, and where that
#    $q$ is? What changes if only $q$ is Gaussian?
# 2. $\mathrm{KL}(\mathcal N(\mu, \sigma^2)\,\|\,\mathcal N(0, 1))$ is minimized at $\mu = 0,
#    \sigma = 1$. In a VAE, what would an encoder with that output for *every* image mean for the
#    reconstructions? (Look up "posterior collapse".)
# 3. The Monte Carlo estimator of Part 3 can return a negative number for small $n$. Why is that
#    not a contradiction? How would you build an estimator that is never negative?
# 4. Could you estimate $\mathrm{KL}(q\,\|\,p)$ by Monte Carlo if you could evaluate $p$ only up to
#    an unknown constant factor? What would you get instead, and why does variational inference
#    only ever need that?
# 5. In Part 4, what happens to the two reverse-KL valleys as the bumps move closer together?
#    Try `means=[-1, 1]`: when does the reverse-KL fit stop seeking a mode?
# 6. In Part 5 the posterior covariance does not depend on $x$. Which part of a VAE's encoder would
#    be unnecessary if the same were true for its decoder?
# 7. The ELBO-optimal diagonal $q$ used the variances $1/\Lambda_{kk}$. Show it: write
#    $\mathrm{KL}(q\,\|\,\mathcal N(m, \Lambda^{-1}))$ for diagonal $q$ and set the derivative with
#    respect to $\sigma_k^2$ to zero.
#
# ## Further reading
#
# * D. P. Kingma and M. Welling, *Auto-Encoding Variational Bayes*, ICLR 2014 — the ELBO and its
#   closed-form Gaussian KL (their Appendix B), which lab 4 trains with.
# * C. M. Bishop, *Pattern Recognition and Machine Learning* (2006), §10.1 — variational inference,
#   the forward/reverse KL picture, and the mean-field solution for a correlated Gaussian
#   (Figure 10.2), which Part 5 reproduces.
# * M. E. Tipping and C. M. Bishop, *Probabilistic Principal Component Analysis*, J. R. Stat. Soc.
#   B 61 (1999) — the linear-Gaussian model, its marginal and posterior.
# * J. Lucas, G. Tucker, R. Grosse and M. Norouzi, *Don't Blame the ELBO! A Linear VAE Perspective
#   on Posterior Collapse*, NeurIPS 2019 — a VAE with a linear decoder is this lab's model, and its
#   exact ELBO explains a VAE failure mode.
# * D. M. Blei, A. Kucukelbir and J. D. McAuliffe, *Variational Inference: A Review for
#   Statisticians*, JASA 112 (2017) — the ELBO, its derivation and its uses beyond VAEs.
# * T. M. Cover and J. A. Thomas, *Elements of Information Theory*, ch. 2 — entropy, relative
#   entropy and the coding interpretation the lecture mentions.
