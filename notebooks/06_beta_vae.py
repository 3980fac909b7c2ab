# %%
# On Google Colab only: install genlab, the course's helper library, from the course repository.
# (Colab has PyTorch and the other packages already; --no-deps keeps its versions.)
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "genlab @ git+https://github.com/genlab-course/genlab"], check=True)

# %% [markdown]
# # Lab 6 · β-VAE: disentangled factors, measured
#
# A VAE trained on images of sprites that differ in shape, size, rotation and position learns a
# code. Does one number of that code control the size and another the horizontal position, or is
# every number a blend of everything? Higgins et al. (2017) found that a simple change to the VAE
# objective — weighting its KL term by a factor $\beta > 1$ — pushes the code towards the first
# kind, which they called **disentangled**. This lab builds that experiment from the data up, and
# replaces "look at the pictures" by a number: the **mutual information gap** (MIG) of Chen et
# al. (2018), the metric most papers on disentanglement report.
#
# **Learning goals.** After this lab you can
#
# 1. describe dSprites — five known factors of variation, every combination exactly once — and
#    say why a data set with *known* factors is what makes disentanglement measurable;
# 2. write the β-VAE loss and explain what $\beta$ trades: reconstruction against the amount of
#    information the code may carry;
# 3. split the KL term per latent dimension, find the dimensions the model switched off
#    (*collapsed*) and count the *active units*;
# 4. read a latent traversal: change one code number, keep the others, decode;
# 5. implement MIG as disentanglement_lib computes it (histogram discretization, mutual
#    information, a gap normalized by entropy) and check it on codes whose answer you know;
# 6. compare β = 1 with β = 8 by reconstruction, active units, MIG and the BetaVAE score, and
#    discuss the trade-off — and how capacity annealing (Burgess et al. 2018) tries to escape it.
#
# **Lecture ideas practised.** The lecture on VAEs ends with *latent perturbation*: move one
# latent variable, keep the others fixed, decode, and look at what changes. It motivates the
# prior $\mathcal N(0, I)$ as a push towards independent latent variables. Part 2 sharpens that
# picture: the prior alone looks the same in every rotated basis, so it cannot single out the
# coordinate axes; what does is the diagonal Gaussian *posterior*, whose KL is paid dimension by
# dimension (Rolinek et al. 2019). The lecture's example is a face model in
# which $\beta = 1$ mixes head rotation with other changes while a large β isolates it. Here the
# same idea runs on sprites whose true factors we know, so we can *score* it. The other lectures'
# VAE pieces are reused as they were derived there: the ELBO with a Bernoulli
# decoder, the closed-form KL between diagonal Gaussians, and the reparameterization trick.
#
# **How this lab works.** Each exercise has a cell where you write a function, followed by a
# locked test cell. The visible tests are there for you to run while you work; when the lab is
# graded, hidden tests check more cases. A failing test says *what* it checked and, when your
# result matches a typical mistake, *which* mistake it looks like. The tests never need a trained
# model: they use tiny networks and synthetic codes and run in a second or two.
#
# | Exercise | Function | Points |
# |---|---|---|
# | 1 | `beta_vae_loss` | 2 |
# | 2 | `kl_per_dimension` | 2 |
# | 3 | `active_units` | 2 |
# | 4 | `latent_traversal` | 3 |
# | 5 | `mutual_information_gap` | 6 |
#
# **Time.** The experiment trains two small β-VAEs on 32 × 32 sprites. With the default budget the
# whole notebook runs in about three minutes on a 2-core laptop CPU; on a GPU it switches to a
# larger budget (Part 3 says how), and with `GENLAB_FAST=1` (what the autograder uses) it takes
# seconds.
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

from genlab import budget, get_device, gpu_budget, seed_everything
from genlab.testing import CheckFailed, attempt

seed_everything(0)
torch.set_printoptions(precision=3, sci_mode=False)


# %% [markdown]
# ## Part 1 · dSprites, drawn on demand
#
# dSprites (Matthey, Higgins, Hassabis and Lerchner, 2017) is a set of 64 × 64 black-and-white
# images of one small sprite each. Five factors generate every image, and **every combination
# appears exactly once**:
#
# | factor | values | class (index) |
# |---|---|---|
# | shape | square, ellipse, heart | 0, 1, 2 |
# | scale | 6 values evenly from 0.5 to 1 | 0 … 5 |
# | orientation | 40 values evenly from 0 to 2π (both ends: the first and last images coincide) | 0 … 39 |
# | posX | 32 values evenly from 0 (left) to 1 (right) | 0 … 31 |
# | posY | 32 values evenly from 0 (top) to 1 (bottom) | 0 … 31 |
#
# That is $3 \cdot 6 \cdot 40 \cdot 32 \cdot 32 = 737{,}280$ images. The original file also lists
# a sixth factor, colour, with a single value (white); it never varies, so genlab leaves it out,
# as disentanglement_lib does. Image number $i$ has its factors in "odometer" order: the last
# factor (posY) changes fastest.
#
# Instead of downloading the original file, `genlab.dsprites` draws any image on demand: each
# pixel centre is moved back into the sprite's own frame (undo the position, the rotation, the
# scale) and tested against the shape's inequality — $\max(|u|, |v|) \le 0.8$ for the square,
# $u^2 + (v/0.5)^2 \le 1$ for the ellipse and the classic heart curve
# $(a^2 + b^2 - 1)^3 - a^2 b^3 \le 0$. It is vectorized over images and pixels, so 10,000 images
# take about a second, and the same index always gives the same picture.
#
# Why does this data set matter? Disentanglement is about matching code dimensions to the *true*
# factors of variation, so it can only be measured where the true factors are known. With
# dSprites we can draw an image for any factor combination we like — which is exactly what the
# metrics of Part 5 need.
# %% demo
import matplotlib.pyplot as plt
import numpy as np

from genlab import dsprites
from genlab.plotting import plot_bars, plot_curves, show, show_images, show_rows, subplots
from genlab.widgets import latent_traversal_widget


def factor_walk(base, factor, steps):
    """Factor classes that start at ``base`` and walk factor ``factor`` through ``steps``."""
    classes = torch.tensor(base).repeat(len(steps), 1)
    classes[:, factor] = torch.as_tensor(steps)
    return classes


base = [2, 5, 0, 15, 15]          # a large heart in the middle, not rotated
rows = {
    "shape": factor_walk(base, 0, range(3)),
    "scale": factor_walk(base, 1, range(6)),
    "orientation": factor_walk(base, 2, range(0, 40, 4)),
    "posX": factor_walk(base, 3, range(0, 32, 4)),
    "posY": factor_walk(base, 4, range(0, 32, 4)),
}
show_rows({name: dsprites.render_classes(classes) for name, classes in rows.items()},
          title="Each row changes one factor of a large heart (orientation: every 4th of the 40)")

x_random, c_random = dsprites.sample(16, generator=torch.Generator().manual_seed(1))
show_images(x_random, nrow=16, title="sixteen random dSprites")
print("factor classes of the first four:\n", c_random[:4])

# %% [markdown]
# The pictures should agree with the table; a few numbers make sure. The area of a sprite grows
# with the square of its scale; rotating a sprite keeps its area (up to pixel rounding); and the
# centre of mass follows the position factors along straight lines.
# %% demo
values = dsprites.factor_values()
fig, axes = subplots(1, 3, figsize=(13, 3.6))
for shape, name in enumerate(dsprites.SHAPES):
    area = dsprites.render_classes(factor_walk([shape, 0, 0, 15, 15], 1, range(6))).sum((1, 2, 3))
    axes[0].plot(values["scale"], area, marker="o", label=name)
    spin = dsprites.render_classes(factor_walk([shape, 5, 0, 15, 15], 2, range(40))).sum((1, 2, 3))
    axes[1].plot(values["orientation"], spin, marker=".", label=name)
walk = dsprites.render_classes(factor_walk([1, 3, 0, 0, 15], 3, range(32)))[:, 0]
columns = torch.arange(64) + 0.5
axes[2].plot(values["posX"], (walk.sum(1) @ columns) / walk.sum((1, 2)), marker=".")
axes[0].set(xlabel="scale", ylabel="area (pixels)", title="area grows like scale²")
axes[1].set(xlabel="orientation (radians)", ylabel="area (pixels)", title="rotation keeps the area")
axes[2].set(xlabel="posX", ylabel="centroid column", title="the centroid follows posX")
axes[0].legend()
show(fig)

# %% [markdown]
# ## Part 2 · The β-VAE objective
#
# The VAE of lab 4 maximizes the evidence lower bound; written as a loss to minimize, for one
# image $x$,
#
# $$\mathcal L_\beta(x) = \underbrace{\mathbb E_{q_\phi(z\mid x)}\big[-\log p_\theta(x \mid z)\big]}_{\text{reconstruction}}
#   \;+\; \beta\, \underbrace{\mathrm{KL}\big(q_\phi(z \mid x)\,\|\,\mathcal N(0, I)\big)}_{\text{rate}},$$
#
# with $\beta = 1$ for the VAE itself. Higgins et al. (2017) simply choose $\beta > 1$. Why
# should that help? The KL term is the number of nats the code carries about the image (its
# *rate*). A larger β makes every nat expensive, so the encoder must spend its budget on what buys
# the most reconstruction. The price is reconstruction quality: the code carries less, so the
# images come out blurrier. That trade-off is the theme of this lab.
#
# **Why would the code line up with the axes?** Not because of the prior. $\mathcal N(0, I)$ is
# isotropic: an orthogonal change of coordinates $z \mapsto Rz$ leaves it unchanged, and it leaves
# the KL of a Gaussian to it unchanged too, since
#
# $$\mathrm{KL}\big(\mathcal N(\mu, \Sigma)\,\|\,\mathcal N(0, I)\big)
#   = \tfrac12\big(\operatorname{tr}\Sigma + \|\mu\|^2 - D - \log\det\Sigma\big)$$
#
# depends only on the trace, the length and the determinant, which a rotation
# ($\mu \mapsto R\mu$, $\Sigma \mapsto R\Sigma R^\top$) does not change. If the encoder could
# output any covariance, a rotated code followed by a decoder that undoes the rotation would give
# the same reconstruction at the same rate: the objective would have no preferred axes. What breaks the tie is the **diagonal Gaussian
# posterior**. The encoder can only add independent noise along each coordinate, and a rotated
# diagonal covariance is in general no longer diagonal. So the rate is paid dimension by dimension,
# each axis with its own noise level $\sigma_j$; sources of variation that matter to different
# degrees are carried most cheaply each on an axis of its own, while a code that mixes them along
# rotated axes would need correlated noise to do as well, which a diagonal posterior cannot
# express. Rolinek et al. (2019) make this precise: the diagonal approximation pushes the decoder
# towards locally orthogonal directions, so the VAE picks out PCA-like axes "by accident" — nothing
# in the prior asks for them. Burgess et al. (2018) describe the same per-dimension pressure as an
# information bottleneck that β tightens. It is a tendency, not a guarantee: two factors that matter
# equally to the reconstruction can still come out mixed.
#
# For binary images the decoder outputs one logit per pixel and $-\log p_\theta(x \mid z)$ is the
# summed Bernoulli cross-entropy. The KL of a diagonal Gaussian $\mathcal N(\mu, \operatorname{diag}
# \sigma^2)$ to $\mathcal N(0, I)$, in the $\log\sigma^2$ ("logvar") parameterization, is
#
# $$\mathrm{KL} = \tfrac12 \sum_{j=1}^{D} \big(\mu_j^2 + \sigma_j^2 - 1 - \log \sigma_j^2\big),
#   \qquad \sigma_j^2 = e^{\texttt{logvar}_j}.$$
#
# ## Exercise 1 · The β-VAE loss (2 points)
#
# Write `beta_vae_loss(logits, x, mu, logvar, beta)` returning the tuple `(loss, recon, kl)`:
#
# * `recon`: for each image the **sum** over its pixels of the Bernoulli cross-entropy between the
#   decoder's `logits` and the target pixels `x`, then the **mean over the batch** — use
#   `F.binary_cross_entropy_with_logits(logits, x, reduction="none")`, which is stable where
#   `sigmoid` followed by `log` is not;
# * `kl`: the KL above for each image (summed over the $D$ latent dimensions), averaged over the batch;
# * `loss = recon + beta * kl`.
#
# All three are 0-d tensors in nats per image, and `loss` must keep its gradients (training calls
# `loss.backward()`). `logits` and `x` are `(N, C, H, W)`; `mu` and `logvar` are `(N, D)`.
# %% solution beta_vae_loss
def beta_vae_loss(logits, x, mu, logvar, beta):
    """(recon + beta * kl, recon, kl): Bernoulli cross-entropy summed per image, KL to N(0, I)
    summed over the latent dimensions; both averaged over the batch."""
    ### BEGIN SOLUTION
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
    return recon + beta * kl, recon, kl
    ### END SOLUTION

# %% test test_beta_vae_loss points=2
import torch
import torch.nn.functional as F
from genlab.testing import CheckFailed, check_close, check_tensor, devices


def _loss_case(n=6, d=4, size=8, seed=0, device="cpu", dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, size, size, generator=g) > 0.7).to(dtype)
    logits = (3 * torch.randn(n, 1, size, size, generator=g)).to(dtype)
    mu = torch.randn(n, d, generator=g).to(dtype)
    logvar = torch.randn(n, d, generator=g).to(dtype)
    return [t.to(device) for t in (logits, x, mu, logvar)]


def _loss_checks(beta, **case):
    logits, x, mu, logvar = _loss_case(**case)
    where = f"beta_vae_loss on {len(x)} images of {x.shape[-1]}x{x.shape[-1]} pixels, " \
            f"D = {mu.shape[1]}, beta = {beta}, on {x.device.type}"
    out = attempt(where, beta_vae_loss, logits, x, mu.requires_grad_(), logvar, beta)
    if not isinstance(out, tuple) or len(out) != 3:
        raise CheckFailed(f"{where}: expected a tuple (loss, recon, kl), got {type(out).__name__}"
                          "\n  Hint: return all three: loss, recon, kl")
    loss, recon, kl = out
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    per_kl = 0.5 * (mu.detach() ** 2 + logvar.exp() - 1 - logvar)
    r_ok, k_ok = bce.flatten(1).sum(1).mean(), per_kl.sum(1).mean()
    for value, name in ((loss, "loss"), (recon, "recon"), (kl, "kl")):
        check_tensor(value, f"{where}: {name}", shape=(), device=x.device)
    check_close(recon, r_ok, f"{where}: recon",
                mistakes={"F.binary_cross_entropy_with_logits's default reduction (a mean over every "
                          "pixel): sum over each image's pixels, then average over the batch": bce.mean(),
                          "summing over the batch as well: average the per-image sums over the batch":
                          bce.sum(),
                          "applying sigmoid before binary_cross_entropy_with_logits (it applies the "
                          "sigmoid itself)": F.binary_cross_entropy_with_logits(
                              torch.sigmoid(logits), x, reduction="none").flatten(1).sum(1).mean(),
                          "the arguments of binary_cross_entropy_with_logits swapped (input first, "
                          "then the target)": F.binary_cross_entropy_with_logits(
                              x, torch.sigmoid(logits), reduction="none").flatten(1).sum(1).mean()})
    check_close(kl, k_ok, f"{where}: kl",
                mistakes={"logvar treated as log(sigma): exp(logvar) is already the variance":
                          (0.5 * (mu.detach() ** 2 + (2 * logvar).exp() - 1 - 2 * logvar)).sum(1).mean(),
                          "summing the KL over the batch: average it": per_kl.sum(),
                          "averaging the KL over the latent dimensions: sum over them, average over "
                          "the batch": per_kl.mean(),
                          "the KL with the wrong sign": -per_kl.sum(1).mean(),
                          "forgetting the factor 1/2 in the KL": 2 * per_kl.sum(1).mean()})
    check_close(loss, r_ok + beta * k_ok, f"{where}: loss",
                mistakes={"beta multiplying the reconstruction term instead of the KL":
                          beta * r_ok + k_ok,
                          "dividing by beta: the loss is recon + beta * kl": r_ok + k_ok / beta})
    if not loss.requires_grad:
        raise CheckFailed(f"{where}: the loss does not require gradients\n  Hint: do not call "
                          ".item() or .detach() on it; training needs loss.backward()")


_loss_checks(4.0)
_loss_checks(1.0, n=3, d=2, seed=1)
### BEGIN HIDDEN TESTS
_loss_checks(0.0, seed=2)
_loss_checks(10.0, n=9, d=7, size=5, seed=3, dtype=torch.float32)
for _dev in devices():
    _loss_checks(2.5, seed=4, device=_dev, dtype=torch.float32)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2 · The KL of each latent dimension (2 points)
#
# Because the posterior and the prior are both diagonal, the KL is a sum of $D$ separate terms,
# one per latent dimension. Averaged over a batch, each term says how many nats that dimension
# carries about the images:
#
# $$\mathrm{KL}_j = \frac1N \sum_{i=1}^N \tfrac12\big(\mu_{ij}^2 + \sigma_{ij}^2 - 1 - \log\sigma_{ij}^2\big).$$
#
# A dimension whose $\mathrm{KL}_j$ is close to 0 nat has $q(z_j \mid x) \approx \mathcal N(0, 1)$
# for every image: the encoder ignores the image there and the decoder learns to ignore $z_j$. The
# dimension has **collapsed**. The bar chart of $\mathrm{KL}_j$ is the quickest look at how a
# β-VAE spends its budget.
#
# Write `kl_per_dimension(mu, logvar)`: a tensor of shape `(D,)` whose entries sum to the
# batch-mean KL of Exercise 1.
# %% solution kl_per_dimension
def kl_per_dimension(mu, logvar):
    """(D,): the batch mean of each latent dimension's KL(N(mu_j, exp(logvar_j)) || N(0, 1))."""
    ### BEGIN SOLUTION
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)
    ### END SOLUTION

# %% test test_kl_per_dimension points=2
import torch
from genlab.testing import check_close, check_tensor, devices


def _kl_dim_checks(n, d, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    mu = (2 * torch.randn(n, d, generator=g, dtype=torch.float64)).to(device)
    logvar = torch.randn(n, d, generator=g, dtype=torch.float64).to(device)
    what = f"kl_per_dimension(mu, logvar) with N = {n} images and D = {d} dimensions on {device}"
    out = attempt(what, kl_per_dimension, mu, logvar)
    terms = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)
    check_close(out, terms.mean(0), what, mistakes={
        "the KL of each image (summed over the dimensions) instead of each dimension's KL "
        "(averaged over the images)": terms.sum(1),
        "summing over the batch: average over it": terms.sum(0),
        "logvar treated as log(sigma): exp(logvar) is already the variance":
            (0.5 * (mu ** 2 + (2 * logvar).exp() - 1 - 2 * logvar)).mean(0),
        "forgetting the factor 1/2": 2 * terms.mean(0)})
    check_tensor(out, what, device=device)


_kl_dim_checks(20, 5)
_kl_dim_checks(7, 3, seed=1)
### BEGIN HIDDEN TESTS
_kl_dim_checks(5, 5, seed=2)
_kl_dim_checks(1, 10, seed=3)
_kl_dim_checks(300, 2, seed=4)
for _dev in devices():
    _kl_dim_checks(9, 4, seed=5, device=_dev)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3 · Active units (2 points)
#
# The KL says how much a dimension carries on average. Burda, Grosse and Salakhutdinov (2016)
# proposed a blunter test that looks only at the posterior *means*: a dimension is **active** when
# its mean changes with the input,
#
# $$A_j = \operatorname{Var}_{x}\big[\mu_j(x)\big] > 0.01 .$$
#
# A collapsed dimension outputs nearly the same $\mu_j$ for every image, so its variance across
# the data is tiny. The threshold 0.01 is small compared with the prior's variance 1.
#
# Write `active_units(mu, threshold=0.01)`: `mu` is `(N, D)`, one row of posterior means per
# image. Return a Python `int`, the number of dimensions whose variance **over the images**
# exceeds the threshold (either `torch.var`'s default or the population variance is fine).
# %% solution active_units
def active_units(mu, threshold=0.01):
    """How many latent dimensions have Var over the data of their posterior mean > threshold."""
    ### BEGIN SOLUTION
    return int((mu.var(dim=0) > threshold).sum().item())
    ### END SOLUTION

# %% test test_active_units points=2
import math
import torch
from genlab.testing import CheckFailed, check_number, devices


def _units_case(stds, n=2000, seed=0, offset=0.0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    stds = torch.tensor(stds, dtype=torch.float64)
    return (offset + torch.randn(n, len(stds), generator=g, dtype=torch.float64) * stds).to(device)


def _units_checks(stds, threshold=0.01, **case):
    mu = _units_case(stds, **case)
    what = f"active_units(mu, threshold={threshold}) on {len(mu)} images with posterior-mean " \
           f"standard deviations {stds}"
    out = attempt(what, active_units, mu, threshold) if threshold != 0.01 else \
        attempt(what, active_units, mu)
    if isinstance(out, torch.Tensor):
        raise CheckFailed(f"{what}: returned a tensor, not a Python int\n  Hint: this looks like "
                          "returning the count as a tensor; use int(...) or .item()")
    var = mu.var(0)
    check_number(out, int((var > threshold).sum()), what, integer=True, mistakes={
        "comparing the standard deviation with the threshold: the test is on the variance":
            int((var.sqrt() > threshold).sum()),
        "the mean of each dimension instead of its variance over the images":
            int((mu.mean(0).abs() > threshold).sum()),
        "counting the inactive dimensions": int((var <= threshold).sum()),
        "the variance over the dimensions (dim=1) instead of over the images (dim=0)":
            int((mu.var(1) > threshold).sum())})


_units_checks([0.0, 0.05, 0.2, 1.0, 3.0, 0.5, 2.0], offset=0.5)
_units_checks([0.02, 0.3, 0.0], threshold=0.05, seed=1)
### BEGIN HIDDEN TESTS
_units_checks([0.001] * 6, seed=2, offset=1.0)
_units_checks([0.5] * 4 + [0.04] * 3, seed=3, offset=-2.0)
_units_checks([0.2, 0.3], threshold=0.07, n=50, seed=4)
_units_checks([0.09, 0.11, 1.0, 0.0], seed=5, n=20000)
_mu = _units_case([1.0, 0.0, 1.0], n=100, seed=6)
check_number(attempt("active_units on 100 images and 3 dimensions", active_units, _mu), 2,
             "active_units(mu) with 100 images and 3 dimensions: variance over the images, not "
             "over the dimensions", integer=True,
             mistakes={"the variance over the dimensions (dim=1) instead of over the images (dim=0)":
                       int((_mu.var(1) > 0.01).sum())})
for _dev in devices():
    _units_checks([0.0, 1.0], seed=7, device=_dev)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · Training β = 1 and β = 8
#
# **The data: a slice of dSprites.** On a laptop we train on the part of dSprites where the answer
# is unambiguous: **squares at orientation 0**, so three factors vary — scale (6 values), posX and
# posY (32 each), 6,144 different images. Rotation and shape are the hard factors (a square a
# quarter turn on looks the same; a heart at 32 × 32 is a few pixels): in the short run that a
# CPU allows, models trained on all of dSprites did not separate their factors reliably in our
# tests, whatever β. The images are also
# shrunk to **32 × 32** (`dsprites.shrink`: each new pixel is the share of its 2 × 2 block that the
# sprite covers, so values 0, ¼, ½, ¾, 1 — the Bernoulli cross-entropy takes such targets as
# they are). The GPU budget trains on all of dSprites.
#
# **The model** is the fully connected β-VAE that Higgins et al. trained on dSprites
# (`genlab.disentangle.MLPBetaVAE`), slimmed for a CPU: the flattened image goes through two
# hidden ReLU layers of 256 units to the heads for $\mu$ and $\log\sigma^2$ of a
# **10-dimensional** code, and the decoder has two tanh hidden layers and returns one logit per
# pixel (the paper: 1,200 units, 64 × 64). A step of this model is cheap, which matters more than
# anything else here: the axes line up only after a few thousand steps. We train it twice with
# *your* loss, once with β = 1 (a plain VAE) and once with β = 8, from the same initial weights on
# the same images. Ten dimensions are far more than the three factors need, so we shall see what
# a model does with the spare ones.
#
# **Budget.** On a CPU each model takes about 6,000 steps of 64 images (about a minute per model
# on 2 cores). With `GENLAB_FAST=1` it takes a few batches, enough to run the notebook but not to
# learn anything. **With a GPU** the cell switches to all five factors at 64 × 64, the papers'
# 1,200 units, 300,000 images, 20 epochs and β ∈ {1, 2, 4, 8}. Set `GENLAB_NO_GPU_BUDGET=1` before
# starting Jupyter to use the CPU numbers anyway.
#
# A VAE on sprites often first learns to draw the *average* image (a grey blur) and lets the KL
# term switch every latent off before the encoder has found the sprite; the recovery can take
# thousands of steps. A **KL warm-up** — β grows linearly from 0 to its final value over the
# first 500 steps (Bowman et al. 2016; Sønderby et al. 2016) — gets past that, and every β gets
# the same warm-up, so the comparison stays fair.
# %% demo
from genlab import run_seed
from genlab.disentangle import MLPBetaVAE, betavae_score, encode_means, mutual_info_matrix
from genlab.training import fit

device = get_device()
USE_GPU_BUDGET = gpu_budget()   # True on a CUDA GPU outside fast mode: the larger budget

if USE_GPU_BUDGET:
    FIXED, IMAGE_SIZE, HIDDEN = {}, 64, 1200                       # all of dSprites, the paper's model
    N_TRAIN, EPOCHS, BETAS = 300_000, 20, (1.0, 2.0, 4.0, 8.0)
    N_SCORE = dict(n_train=10_000, n_eval=5_000, batch_size=64)   # disentanglement_lib's sizes
else:
    FIXED, IMAGE_SIZE, HIDDEN = {"shape": 0, "orientation": 0}, 32, 256   # squares, not rotated
    N_TRAIN = budget(default=30_000, fast=512)
    EPOCHS = budget(default=13, fast=1)                            # 13 x 469 = 6,097 steps
    BETAS = (1.0, 8.0)
    N_SCORE = budget(default=dict(n_train=500, n_eval=250, batch_size=16),
                     fast=dict(n_train=40, n_eval=20, batch_size=4))
LATENT_DIM, BATCH_SIZE, LR, WARMUP_STEPS = 10, 64, 1e-3, budget(default=500, fast=4)
SEED = run_seed()   # 0; GENLAB_SEED=3 before starting Jupyter (or `genlab seeds`) changes the run
N_METRIC = budget(default=10_000, fast=1_000)   # points for MIG (disentanglement_lib: 10,000)
VARYING = dsprites.varying_factors(FIXED)       # the factors that vary in this run
FACTORS = [dsprites.FACTOR_NAMES[k] for k in VARYING]


def draw(classes):
    """dSprites images of these factor classes at the size the model reads."""
    return dsprites.shrink(dsprites.render_classes(classes, dtype=torch.uint8), IMAGE_SIZE)


if FIXED:        # a slice: random factor combinations (with repeats) from its 6,144 images
    c_train = dsprites.sample_classes(N_TRAIN, generator=torch.Generator().manual_seed(SEED),
                                      fixed=FIXED)
    x_train = draw(c_train)
else:            # all of dSprites: distinct images
    x_train, c_train = dsprites.subset(N_TRAIN, seed=SEED, dtype=torch.uint8)
    x_train = dsprites.shrink(x_train, IMAGE_SIZE)
print(f"device {device}; {len(x_train):,} training images of {IMAGE_SIZE} x {IMAGE_SIZE} "
      f"(factors that vary: {', '.join(FACTORS)}), {EPOCHS} epochs per model, betas {BETAS}, "
      f"seed {SEED}")

# %% demo
def make_loss(beta):
    """A loss_fn for fit: your beta_vae_loss, with beta warmed up linearly over WARMUP_STEPS."""
    step = [0]

    def loss_fn(model, x):
        warm = min(1.0, step[0] / WARMUP_STEPS)
        step[0] += 1
        logits, mu, logvar = model(x)
        loss, recon, kl = beta_vae_loss(logits, x, mu, logvar, beta * warm)
        return loss, {"recon": recon, "kl": kl}
    return loss_fn


torch.manual_seed(SEED)
initial = MLPBetaVAE(LATENT_DIM, IMAGE_SIZE, HIDDEN).state_dict()
models, histories = {}, {}
for beta in BETAS:
    model = MLPBetaVAE(LATENT_DIM, IMAGE_SIZE, HIDDEN)
    model.load_state_dict(initial)                       # the same start for every beta
    histories[beta] = fit(model, x_train, make_loss(beta), epochs=EPOCHS, batch_size=BATCH_SIZE,
                          lr=LR, generator=SEED, device=device, desc=f"beta = {beta:g}")
    models[beta] = model.eval()
    print(f"beta = {beta:g}: recon {histories[beta].metrics['recon'][-1]:.1f} nats, "
          f"KL {histories[beta].metrics['kl'][-1]:.2f} nats per image "
          f"({histories[beta].seconds:.0f} s, {histories[beta].images_per_second:.0f} images/s)")

# %% demo
fig, axes = subplots(1, 2, figsize=(12, 3.8))
plot_curves({f"beta = {b:g}": h.metrics["recon"] for b, h in histories.items()}, ylabel="nats",
            title="reconstruction (cross-entropy per image)", ax=axes[0])
plot_curves({f"beta = {b:g}": h.metrics["kl"] for b, h in histories.items()}, ylabel="nats",
            title="KL to the prior per image (the rate)", ax=axes[1])
show(fig)

x_show = draw(dsprites.sample_classes(8, generator=torch.Generator().manual_seed(3), fixed=FIXED))
recons = {"original": x_show}
with torch.no_grad():
    for beta, model in models.items():
        recons[f"beta = {beta:g}"] = model.decode_probs(model.encode(x_show.to(device))[0]).cpu()
show_rows(recons, title="Reconstructions from the posterior mean")

# %% [markdown]
# Now the per-dimension picture, with your `kl_per_dimension` and `active_units`, on 10,000 fresh
# images (random factor combinations of the run's data, drawn with replacement as
# disentanglement_lib does). We
# also keep their posterior means and true factor classes for Part 5.
# %% demo
classes_drawn = dsprites.sample_classes(N_METRIC, generator=torch.Generator().manual_seed(1),
                                        fixed=FIXED)
x_eval = draw(classes_drawn)
classes_eval = classes_drawn[:, VARYING]        # MIG scores the factors that vary
codes, kl_dims, units = {}, {}, {}
for beta, model in models.items():
    with torch.no_grad():
        mus, logvars = zip(*(model.encode(x_eval[i:i + 1000].to(device)) for i in range(0, N_METRIC, 1000)))
    mu_all, logvar_all = torch.cat(mus).cpu(), torch.cat(logvars).cpu()
    codes[beta] = mu_all
    kl_dims[beta] = kl_per_dimension(mu_all, logvar_all)
    units[beta] = active_units(mu_all)

fig, axes = subplots(1, len(BETAS), figsize=(4.2 * len(BETAS), 3.4), sharey=True)
for ax, beta in zip(np.atleast_1d(axes), BETAS):
    plot_bars(kl_dims[beta], xlabel="latent dimension", ylabel="KL (nats)", ax=ax,
              title=f"beta = {beta:g}: {units[beta]} active units")
show(fig)
for beta in BETAS:
    print(f"beta = {beta:g}: KL per dimension {kl_dims[beta].numpy().round(2)}; "
          f"active units {units[beta]} of {LATENT_DIM}")

# %% [markdown]
# Read the bars together with the curves. β = 8 pays eight times as much for every nat, so it
# carries fewer nats in total and reconstructs worse. Where it keeps a dimension, that dimension
# tends to carry several nats; the rest it switches off completely. With β = 1 the spare
# dimensions cost little, and the model keeps more of them alive, each carrying a little.
#
# ## Part 4 · Latent traversals
#
# The lecture's *latent perturbation*: encode an image, keep its posterior mean $\mu(x)$, replace
# one coordinate by a sweep of values, decode each. If dimension $j$ has learned a factor, the row
# shows that factor changing and nothing else; a collapsed dimension gives a row of identical
# images.
#
# ## Exercise 4 · One row of a traversal (3 points)
#
# Write `latent_traversal(model, x, dim, values)`:
#
# 1. `x` is **one** image, `(C, H, W)` or `(1, C, H, W)`; give the model a batch of one
#    (`x.reshape(1, *x.shape[-3:])`);
# 2. put the model in eval mode, remember whether it was training, and work under
#    `torch.no_grad()`;
# 3. encode to `(mu, logvar)` with `model.encode`; use the **mean** $\mu$ — no sampling;
# 4. repeat $\mu$ once per entry of `values` and **set** coordinate `dim` of row $i$ to `values[i]`;
# 5. decode with `model.decode` (it returns logits) and apply `torch.sigmoid` to get pixel
#    probabilities;
# 6. restore the model's training mode and return the images, shaped `(len(values), C, H, W)`.
#
# `values` may be a list or a 1-D tensor. Build new tensors on `mu`'s device.
# %% solution latent_traversal
def latent_traversal(model, x, dim, values):
    """Decode x's posterior mean with latent `dim` set to each of `values`: (len(values), C, H, W)."""
    ### BEGIN SOLUTION
    was_training = model.training
    model.eval()
    with torch.no_grad():
        mu, _ = model.encode(x.reshape(1, *x.shape[-3:]))
        values = torch.as_tensor(values, dtype=mu.dtype, device=mu.device).reshape(-1)
        z = mu.repeat(len(values), 1)
        z[:, dim] = values
        images = torch.sigmoid(model.decode(z))
    model.train(was_training)
    return images
    ### END SOLUTION

# %% test test_latent_traversal points=3
import torch
from torch import nn
from genlab.testing import CheckFailed, check_close, check_tensor, devices


class _TinyVAE(nn.Module):
    """8x8 images, linear encoder and decoder; in training mode its encoder adds noise (as
    dropout would), so a traversal that forgets eval() is visibly different."""

    def __init__(self, d=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.enc = nn.Linear(64, 2 * d)
        self.dec = nn.Linear(d, 64)
        self.latent_dim = d

    def encode(self, x):
        h = self.enc(x.flatten(1))
        if self.training:
            h = h + 0.5
        return h.chunk(2, dim=1)

    def decode(self, z):
        return self.dec(z).reshape(-1, 1, 8, 8)

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)), mu, logvar


def _traversal_checks(dim, values, seed=0, batched=False, device="cpu", training=True):
    model = _TinyVAE(seed=seed).to(device).train(training)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(1, 8, 8, generator=g) > 0.5).float().to(device)
    shown = x[None] if batched else x
    what = (f"latent_traversal(model, x of shape {tuple(shown.shape)}, dim={dim}, "
            f"values={values}) on {device}")
    out = attempt(what, latent_traversal, model, shown, dim, values)
    n = len(values)
    check_tensor(out, what, shape=(n, 1, 8, 8), device=device)
    if out.requires_grad:
        raise CheckFailed(f"{what}: the images require gradients\n  Hint: work under "
                          "torch.no_grad()")
    if model.training != training:
        raise CheckFailed(f"{what}: the model was left in {'eval' if training else 'training'} "
                          "mode\n  Hint: this looks like leaving the model in eval mode: restore "
                          "model.train(was_training) before returning")
    with torch.no_grad():
        model.eval()
        mu, logvar = model.encode(x[None])
        mu_train, _ = model.train().encode(x[None])
        model.train(training)
        v = torch.as_tensor(values, dtype=mu.dtype, device=device)

        def decoded(code, mode="set"):
            z = code.repeat(n, 1)
            z[:, dim] = v if mode == "set" else z[:, dim] + v
            return z

        right = torch.sigmoid(model.decode(decoded(mu)))
        mistakes = {
            "returning logits: apply torch.sigmoid to the decoder's output":
                model.decode(decoded(mu)),
            "adding the values to mu[dim] instead of setting it": torch.sigmoid(model.decode(
                decoded(mu, "add"))),
            "forgetting model.eval(): the model was encoded in training mode":
                torch.sigmoid(model.decode(decoded(mu_train))),
        }
        if dim != 0:
            wrong = mu.repeat(n, 1)
            wrong[:, 0] = v
            mistakes["changing latent dimension 0 instead of dim"] = torch.sigmoid(model.decode(wrong))
    again = attempt(what, latent_traversal, model, shown, dim, values)
    check_close(again, out, f"{what}, called twice", mistakes={
        "sampling z instead of using the posterior mean (the images change from call to call)":
            lambda a: True})
    check_close(out, right, what, atol=1e-5, rtol=1e-4, mistakes=mistakes,
                hint="decode the posterior mean (not a sample) with coordinate dim replaced by "
                     "each value, then apply torch.sigmoid")


_traversal_checks(1, [-2.0, 0.0, 2.0])
_traversal_checks(3, [0.5], batched=True, seed=1)
### BEGIN HIDDEN TESTS
_traversal_checks(0, [-3.0, -1.0, 1.0, 3.0], seed=2, training=False)
_traversal_checks(2, torch.linspace(-2, 2, 7), seed=3, batched=True)
for _dev in devices():
    _traversal_checks(1, [0.0, 1.0], seed=4, device=_dev)
### END HIDDEN TESTS

# %% [markdown]
# ### Traversal grids
#
# One row per latent dimension, sorted by its KL (most informative first), sweeping the value from
# −2.5 to 2.5 — a range that covers most of the prior $\mathcal N(0, 1)$. The label gives the
# dimension and its KL in nats. Collapsed dimensions (KL ≈ 0) give rows of identical images.
# %% demo
values_sweep = torch.linspace(-2.5, 2.5, 9)
x_probe = draw(torch.tensor([[0 if FIXED else 2, 4, 0, 15, 15]]))[0]   # in the middle (a heart on the GPU budget)


def traversal_rows(beta):
    order = kl_dims[beta].argsort(descending=True)
    return {f"z{int(j)} ({kl_dims[beta][j]:.1f})": latent_traversal(models[beta], x_probe.to(device),
                                                                     int(j), values_sweep).cpu()
            for j in order}


for beta in BETAS:
    show_rows(traversal_rows(beta), title=f"beta = {beta:g}: traversals from -2.5 to 2.5 "
                                          "(label: dimension and its KL in nats)")

# %% [markdown]
# Look for rows in which *one* factor changes: the sprite slides left–right only, or up–down only,
# or only grows — against rows that move the sprite diagonally or change its size and position
# together, where the factors are there but mixed. β = 8 should keep three live rows, each close
# to one factor (left–right, up–down, size); β = 1 spreads the same three factors over four or
# five rows that move the square diagonally, change its size and position at once, or, towards
# the ends of the sweep, bend it into shapes that are not in the data. (On the GPU budget's full dSprites, rotation and shape are the hardest: a rotated
# square looks like a square at another angle, and short runs rarely isolate either.)
#
# Try it yourself: one slider per latent dimension of the β = 8 model, starting from the posterior
# mean of the square above. (Without a widget front end, e.g. under the autograder, the default
# picture is shown instead.)
# %% demo
beta_widget = 8.0
model_widget = models[beta_widget]
with torch.no_grad():
    z_probe = model_widget.encode(x_probe[None].to(device))[0][0].cpu()
latent_traversal_widget(model_widget.decode_probs, z_probe, dims=range(LATENT_DIM), lim=3.0)

# %% [markdown]
# ## Part 5 · Measuring disentanglement: the mutual information gap
#
# Pictures are persuasive but not comparable across models. Chen, Li, Grosse and Duvenaud (2018)
# proposed a number. Take $N$ images with known factors $v_1, \dots, v_K$ and their codes
# $z \in \mathbb R^D$ (posterior means). For each factor $k$ ask how much each code dimension
# knows about it, the mutual information $I(z_j; v_k)$. In a disentangled code *one* dimension
# knows a lot about $v_k$ and every other dimension knows almost nothing. So measure the **gap**
# between the best and the second best, relative to how much there is to know, the factor's
# entropy $H(v_k)$:
#
# $$\mathrm{MIG} = \frac1K \sum_{k=1}^{K} \frac{I(z_{j^{(1)}_k}; v_k) - I(z_{j^{(2)}_k}; v_k)}{H(v_k)},$$
#
# where $j^{(1)}_k$ and $j^{(2)}_k$ are the code dimensions with the largest and second largest
# mutual information with $v_k$. MIG lies in $[0, 1]$: 1 when every factor has its own dimension
# that knows it completely, near 0 when the codes know nothing or when two dimensions share a
# factor equally. A *rotated* copy of a perfect code (say, the $x$ and $y$ positions stored as
# $x + y$ and $x - y$) reconstructs just as well and scores much lower: MIG measures alignment
# with the factors, not information.
#
# The codes are continuous, so we follow google-research/disentanglement_lib (the reference
# implementation most papers used) and **discretize each code dimension separately** into
# `n_bins = 20` equal-width bins between its own minimum and maximum, then compute everything
# from counts:
#
# 1. **Bins.** For column $j$ with minimum $m$ and maximum $M$, the left edges are
#    $e_b = m + b\,(M - m)/n_\text{bins}$, $b = 0, \dots, n_\text{bins} - 1$. A value's bin is the
#    number of left edges $\le$ the value, minus one: a value on an edge goes to the bin above it,
#    and the maximum lands in the last bin, $n_\text{bins} - 1$ (`torch.bucketize(values, edges,
#    right=True) - 1` does this). A constant column — a collapsed dimension can be one — must
#    put all its points in one bin, without dividing by $M - m = 0$.
# 2. **Mutual information** from the joint histogram of two label vectors $a$ and $b$:
#    $$I(a; b) = \sum_{a, b} p(a, b)\, \log \frac{p(a, b)}{p(a)\,p(b)},$$
#    with empirical probabilities (counts over $N$) and terms with $p(a, b) = 0$ left out.
#    Tip: relabel each vector to $0, 1, 2, \dots$ with `torch.unique(v, return_inverse=True)`;
#    then `torch.bincount(a * n_b + b, minlength=n_a * n_b)` counts every pair at once.
# 3. **Entropy** of each factor, $H(v_k) = -\sum_v p(v) \log p(v)$ — which is $I(v_k; v_k)$.
# 4. For each factor, the two largest MIs over the code dimensions (`torch.topk(..., 2)` or a
#    sort), their difference divided by $H(v_k)$; then the mean over the factors, as a Python
#    `float`.
#
# Natural logarithms give nats; any base is fine as long as the MI and the entropy use the
# **same** one, since the ratio does not depend on it.
#
# ## Exercise 5 · MIG (6 points)
#
# Write `mutual_information_gap(codes, factors, n_bins=20)`: `codes` is a float tensor `(N, D)`
# with $D \ge 2$, `factors` an integer tensor `(N, K)` whose columns hold each factor's class
# (any integer labels). The tests compare your number with disentanglement_lib's recipe to six
# decimals on codes without points near a bin edge, so compute in float64
# (`codes.double()`) and count exactly.
# %% solution mutual_information_gap
def mutual_information_gap(codes, factors, n_bins=20):
    """MIG: mean over factors of (top MI - second MI over code dimensions) / factor entropy,
    with each code dimension discretized into n_bins equal-width bins."""
    ### BEGIN SOLUTION
    def labels(v):
        return torch.unique(v, return_inverse=True)[1]

    def mutual_info(a, b):
        a, b = labels(a), labels(b)
        na, nb = int(a.max()) + 1, int(b.max()) + 1
        joint = torch.bincount(a * nb + b, minlength=na * nb).double().reshape(na, nb) / len(a)
        outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
        keep = joint > 0
        return (joint[keep] * (joint[keep] / outer[keep]).log()).sum()

    codes = codes.double()
    binned = []
    for j in range(codes.shape[1]):
        column = codes[:, j].contiguous()
        lo, hi = column.min(), column.max()
        edges = lo + torch.arange(n_bins, dtype=torch.float64, device=codes.device) * (hi - lo) / n_bins
        binned.append(torch.bucketize(column, edges, right=True) - 1)
    gaps = []
    for k in range(factors.shape[1]):
        v = factors[:, k]
        mi = torch.stack([mutual_info(b, v) for b in binned])
        top = torch.topk(mi, 2).values
        gaps.append((top[0] - top[1]) / mutual_info(v, v))
    return float(torch.stack(gaps).mean())
    ### END SOLUTION

# %% test test_mutual_information_gap points=6
import math
import torch
from genlab.disentangle import factor_entropy, mutual_info_matrix
from genlab.testing import CheckFailed, check_number, devices


def _grid_codes(factors, d, seed, noise=0.3):
    """Codes whose columns are noisy functions of the factors, built so that no point lies near a
    bin edge for 20 or 10 bins: every column has its minimum 0 and maximum 20 exactly, and the
    other values sit within 0.3 of a bin centre k + 0.5 (then an exact power-of-two rescale)."""
    g = torch.Generator().manual_seed(seed)
    n, k = factors.shape
    f = factors.double()
    f = (f - f.min(0).values) / (f.max(0).values - f.min(0).values).clamp_min(1)
    mix = torch.randn(k, d, generator=g, dtype=torch.float64)
    mix[torch.arange(min(k, d)), torch.arange(min(k, d))] += 3.0      # mostly one factor each
    raw = f @ mix + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    raw = (raw - raw.min(0).values) / (raw.max(0).values - raw.min(0).values)
    bins = (raw * 20).floor().clamp(0, 19)
    jitter = noise * (2 * torch.rand(n, d, generator=g, dtype=torch.float64) - 1)
    codes = bins + 0.5 + jitter
    codes[0], codes[1] = 0.0, 20.0                                   # exact minimum and maximum
    scale = torch.tensor([2.0 ** (j % 5 - 2) for j in range(d)], dtype=torch.float64)
    return (codes * scale - 3.0).float()


def _factors(n, sizes, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, s, (n,), generator=g) for s in sizes], 1)


def _labels(v):
    return torch.unique(v, return_inverse=True)[1]


def _mi(a, b):
    a, b = _labels(a), _labels(b)
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    joint = torch.bincount(a * nb + b, minlength=na * nb).double().reshape(na, nb) / len(a)
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    keep = joint > 0
    return (joint[keep] * (joint[keep] / outer[keep]).log()).sum().item()


def _mig_variants(codes, factors, n_bins):
    m = mutual_info_matrix(codes, factors, n_bins).cpu()
    h = factor_entropy(factors).cpu()
    top = m.topk(2, dim=0)
    gap = top.values[0] - top.values[1]
    c = codes.double().cpu()
    lo, hi = c.min(), c.max()                         # one set of bins for every dimension
    glob = ((c - lo) / (hi - lo) * n_bins).floor().clamp(max=n_bins - 1).long()
    f = factors.cpu()
    m_glob = torch.tensor([[_mi(glob[:, j], f[:, k]) for k in range(f.shape[1])]
                           for j in range(c.shape[1])])
    tg = m_glob.topk(2, dim=0).values
    # entropy of the winning code dimension (per-dimension bins) instead of the factor's
    from genlab.disentangle import discretize
    binned = discretize(c, n_bins)
    h_code = torch.stack([torch.tensor(_mi(binned[:, int(j)], binned[:, int(j)]))
                          for j in top.indices[0]])
    return {
        "right": (gap / h).mean().item(),
        "not dividing by the factor's entropy H(v_k) (a gap in nats, not a fraction)":
            gap.mean().item(),
        "the largest mutual information alone, without subtracting the second largest":
            (top.values[0] / h).mean().item(),
        "dividing by the entropy of the code dimension instead of that of the factor":
            (gap / h_code).mean().item(),
        "one set of bins for all code dimensions together: discretize each column between its "
        "own minimum and maximum": ((tg[0] - tg[1]) / h).mean().item(),
        "mixing logarithm bases: the mutual information in bits (log2) but the entropy in nats":
            (gap / h).mean().item() / math.log(2),
        "mixing logarithm bases: the mutual information in nats but the entropy in bits (log2)":
            (gap / h).mean().item() * math.log(2),
        "the gap between the largest and the smallest mutual information instead of the two "
        "largest": ((top.values[0] - m.min(0).values) / h).mean().item(),
    }


def _mig_checks(n=600, d=6, sizes=(3, 6, 40, 32, 32), n_bins=20, seed=0, device="cpu",
                pass_bins=False):
    factors = _factors(n, sizes, seed)
    codes = _grid_codes(factors, d, seed)
    variants = _mig_variants(codes, factors, n_bins)
    what = (f"mutual_information_gap(codes {tuple(codes.shape)} float32, factors "
            f"{tuple(factors.shape)} with {list(sizes)} classes" +
            (f", n_bins={n_bins}" if pass_bins or n_bins != 20 else "") + f") on {device}")
    args = (codes.to(device), factors.to(device)) + ((n_bins,) if pass_bins or n_bins != 20 else ())
    out = attempt(what, mutual_information_gap, *args)
    if isinstance(out, torch.Tensor):
        raise CheckFailed(f"{what}: returned a tensor, not a Python float\n  Hint: this looks like "
                          "returning the mean as a tensor; use float(...) or .item()")
    if isinstance(out, float) and math.isnan(out):
        raise CheckFailed(f"{what}: returned NaN\n  Hint: a constant code column has max = min; "
                          "put all its points in one bin instead of dividing by max - min")
    right = variants.pop("right")
    check_number(out, right, what, rel=1e-6, abs_=2e-6, mistakes=variants,
                 hint="follow the four steps: per-column equal-width bins (a value on an edge "
                      "goes to the bin above, the maximum to the last bin), MI from the joint "
                      "counts, the factor's entropy, the top-two gap divided by it, mean over "
                      "factors")


_mig_checks()
_mig_checks(n=400, d=3, sizes=(2, 5), seed=1)
_f = _factors(500, (3, 6, 8), 2)
_codes = _f.float()                                      # a perfect code: one column per factor
_codes = torch.cat([_codes, torch.zeros(500, 1)], 1)     # and a dead (constant) dimension
_what = "mutual_information_gap on codes that copy one factor each, plus a constant column"
_out = attempt(_what, mutual_information_gap, _codes, _f)
if isinstance(_out, float) and math.isnan(_out):
    raise CheckFailed(f"{_what}: returned NaN\n  Hint: a constant code column has max = min; "
                      "put all its points in one bin instead of dividing by max - min")
check_number(_out, 1.0, _what, rel=0, abs_=0.02,
             hint="a code that copies each factor into its own dimension has MIG close to 1")
_noise = torch.randn(4000, 8, generator=torch.Generator().manual_seed(3))
check_number(attempt("mutual_information_gap on codes independent of the factors",
                     mutual_information_gap, _noise, _factors(4000, (3, 6, 40, 32, 32), 3)),
             0.0, "mutual_information_gap on random codes independent of the factors", rel=0,
             abs_=0.03, hint="codes that know nothing about the factors score close to 0")
### BEGIN HIDDEN TESTS
_mig_checks(n=800, d=8, sizes=(3, 6, 40, 32, 32), n_bins=10, seed=4)
_mig_checks(n=300, d=5, sizes=(4, 4, 4), seed=5, pass_bins=True)
_mig_checks(n=1000, d=10, sizes=(3, 6, 40, 32, 32), seed=6)
_f7 = _factors(900, (3, 6, 40, 32, 32), 7)
_c7 = _grid_codes(_f7, 7, 7)
_base = attempt("mutual_information_gap", mutual_information_gap, _c7, _f7)
_perm = torch.randperm(7, generator=torch.Generator().manual_seed(7))
check_number(attempt("mutual_information_gap on permuted code columns", mutual_information_gap,
                     _c7[:, _perm], _f7), _base,
             "mutual_information_gap must not depend on the order of the code dimensions",
             rel=1e-6, abs_=1e-9)
_relabel = _f7.clone()
_relabel[:, 2] = 1000 - 7 * _relabel[:, 2]
check_number(attempt("mutual_information_gap with relabelled factor classes",
                     mutual_information_gap, _c7, _relabel), _base,
             "mutual_information_gap must not depend on how a factor's classes are numbered "
             "(any integer labels)", rel=1e-6, abs_=1e-9)
_cont = torch.randn(3000, 6, generator=torch.Generator().manual_seed(8))
_fc = _factors(3000, (3, 6, 40, 32, 32), 8)
_cont[:, :5] += 0.5 * _fc.float()
from genlab.disentangle import mutual_information_gap as _reference_mig
check_number(attempt("mutual_information_gap on continuous codes", mutual_information_gap, _cont,
                     _fc), _reference_mig(_cont, _fc),
             "mutual_information_gap on 3,000 continuous float32 codes", rel=0, abs_=2e-3)
for _dev in devices():
    _mig_checks(n=300, d=4, sizes=(3, 6, 5), seed=9, device=_dev)
### END HIDDEN TESTS

# %% [markdown]
# Before trusting the metric on the models, check it on codes whose answer we know, built from
# the true factors of the evaluation images: a code that copies each factor into its own
# dimension; the same code with the two positions mixed by a 45° rotation; and random codes.
# %% demo
f_eval = classes_eval.double()
perfect = (f_eval - f_eval.mean(0)) / f_eval.std(0)
c45 = math.cos(math.pi / 4)
rotated = perfect.clone()
x_col, y_col = FACTORS.index("posX"), FACTORS.index("posY")
rotated[:, x_col] = c45 * (perfect[:, x_col] + perfect[:, y_col])
rotated[:, y_col] = c45 * (perfect[:, x_col] - perfect[:, y_col])
for name, c in [("one factor per dimension", perfect), ("positions rotated by 45 degrees", rotated),
                ("random codes", torch.randn(N_METRIC, len(FACTORS)))]:
    print(f"MIG of {name:>34}: {mutual_information_gap(c, classes_eval):.3f}")

# %% [markdown]
# The perfect code does not reach exactly 1: 20 bins cannot hold the 32 positions (or, on full
# dSprites, the 40 orientations) apart, so a little information is lost in the discretization. Rotating two
# dimensions keeps all the information but halves what each dimension knows alone, and MIG for
# the two positions collapses.
#
# Now the models, with your function on the 10,000 evaluation codes of Part 3. The heat map shows
# $I(z_j; v_k)/H(v_k)$ for every code dimension and factor: a disentangled code has one bright
# cell per column and the rest dark.
# %% demo
mig = {beta: mutual_information_gap(codes[beta], classes_eval) for beta in BETAS}
fig, axes = subplots(1, len(BETAS), figsize=(4.3 * len(BETAS), 4.2))
for ax, beta in zip(np.atleast_1d(axes), BETAS):
    m = mutual_info_matrix(codes[beta], classes_eval)
    sizes = [dsprites.FACTOR_SIZES[k] for k in VARYING]
    normalized = (m / m.new_tensor(np.log(sizes)).clamp_min(1e-12)).numpy()
    image = ax.imshow(normalized, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(FACTORS)), FACTORS, rotation=30)
    ax.set_yticks(range(LATENT_DIM))
    ax.set_ylabel("code dimension")
    ax.set_title(f"beta = {beta:g}: MIG {mig[beta]:.3f}")
fig.colorbar(image, ax=axes, label="I(z_j; v_k) / H(v_k)")
show(fig)

# %% [markdown]
# (The heat map divides by $\log |v_k|$, the entropy of a uniform factor; the sample's own
# entropies are within a fraction of a percent of it.)
#
# ### A second opinion: the BetaVAE score
#
# Higgins et al. measured disentanglement differently. Pick a factor $k$ at random; draw pairs of
# images that share the value of factor $k$ and differ in everything else; average the absolute
# difference of their codes, $\frac1L \sum_l |z^{(1)}_l - z^{(2)}_l|$. In a disentangled code the
# dimension for factor $k$ barely changes within a pair, so a *linear* classifier can read $k$
# off that vector. The score is the classifier's accuracy on fresh points (chance: one over the
# number of factors that vary, 1/3 on the CPU budget's slice). genlab
# implements it as disentanglement_lib does (`genlab.disentangle.betavae_score`); on a CPU we use
# fewer points than the library's 10,000 + 5,000 with 64 pairs each, so expect a few points of
# noise.
# %% demo
scores = {beta: betavae_score(model, generator=torch.Generator().manual_seed(2), fixed=FIXED,
                              **N_SCORE)
          for beta, model in models.items()}
print(f"{'beta':>6}{'recon (nats)':>15}{'KL (nats)':>11}{'active units':>14}{'MIG':>8}"
      f"{'BetaVAE score':>15}")
for beta in BETAS:
    h = histories[beta]
    print(f"{beta:>6g}{h.metrics['recon'][-1]:>15.1f}{h.metrics['kl'][-1]:>11.2f}{units[beta]:>14d}"
          f"{mig[beta]:>8.3f}{scores[beta]['eval_accuracy']:>15.3f}")

fig, ax = subplots(figsize=(5.5, 4))
ax.plot([histories[b].metrics["recon"][-1] for b in BETAS], [mig[b] for b in BETAS], marker="o")
for beta in BETAS:
    ax.annotate(f"beta = {beta:g}", (histories[beta].metrics["recon"][-1], mig[beta]),
                textcoords="offset points", xytext=(6, 4))
ax.set_xlabel("reconstruction loss (nats per image, last epoch)")
ax.set_ylabel("MIG")
ax.set_title("The trade-off: better MIG costs reconstruction")
show(fig)

# %% [markdown]
# ## Part 6 · The trade-off, and capacity annealing
#
# Higgins et al. describe a bargain: raising β buys disentanglement with reconstruction. The table
# shows both halves: the β = 8 model reconstructs worse (its squares come out soft-edged) and
# carries about half the KL of β = 1, and in exchange its few live dimensions each follow one
# factor, which MIG and the BetaVAE score reward. Push β much higher and the bargain turns bad:
# the model drops factors altogether (on full dSprites first orientation, then shape, then
# scale), and MIG falls again because a factor nobody encodes has no gap. Among the β-VAE results
# collected by Locatello et al. (2019), full-dSprites MIG mostly lies between 0.1 and 0.2 — and
# varies as much with the random seed as with β.
#
# **Capacity annealing** (Burgess et al. 2018, *Understanding disentangling in β-VAE*) tries to
# keep the benefits without the blur. Instead of a fixed price β per nat, it asks the KL to equal
# a target capacity $C$ and raises $C$ slowly during training:
#
# $$\mathcal L = \mathbb E_q[-\log p_\theta(x \mid z)] + \gamma\,\big|\mathrm{KL}(q(z\mid x)\,\|\,p(z)) - C\big|,
#   \qquad C: 0 \to 25 \text{ nats over training},\ \gamma = 1000 .$$
#
# With little capacity the model can only afford the factor that helps reconstruction most —
# position, which moves the most pixels — and it gets its own dimensions. As $C$ grows, scale,
# then shape and orientation are added, each into the free dimensions, while the large γ keeps
# the KL on target. At the end the code carries as much as a plain VAE's, so reconstructions
# sharpen, and much of the alignment learnt early survives. `genlab.disentangle.capacity_loss`
# computes this loss; the cell below trains one model with it on the GPU budget (on a CPU the
# schedule needs far more steps than this lab can afford, so it is skipped there).
# %% demo
if USE_GPU_BUDGET:
    from genlab.disentangle import capacity_loss

    def capacity_loss_fn(total_steps, gamma=1000.0, c_max=25.0):
        step = [0]

        def loss_fn(model, x):
            capacity = c_max * min(1.0, step[0] / (0.8 * total_steps))
            step[0] += 1
            logits, mu, logvar = model(x)
            loss, recon, kl = capacity_loss(logits, x, mu, logvar, gamma, capacity)
            return loss, {"recon": recon, "kl": kl}
        return loss_fn

    annealed = MLPBetaVAE(LATENT_DIM, IMAGE_SIZE, HIDDEN)
    annealed.load_state_dict(initial)
    total = EPOCHS * math.ceil(N_TRAIN / BATCH_SIZE)
    h_annealed = fit(annealed, x_train, capacity_loss_fn(total), epochs=EPOCHS,
                     batch_size=BATCH_SIZE, lr=5e-4, generator=SEED, device=device,
                     desc="capacity annealing")
    mig_annealed = mutual_information_gap(encode_means(annealed, x_eval), classes_eval)
    print(f"capacity annealing: recon {h_annealed.metrics['recon'][-1]:.1f} nats, "
          f"KL {h_annealed.metrics['kl'][-1]:.2f} nats, MIG {mig_annealed:.3f}")
else:
    print("capacity annealing runs on the GPU budget only (see the text above)")

# %% [markdown]
# ## The figures of this run
# %% demo
for beta in BETAS:
    h = histories[beta]
    print(f"beta = {beta:g}: recon {h.metrics['recon'][-1]:.1f} nats, KL {h.metrics['kl'][-1]:.2f} "
          f"nats, active units {units[beta]}, MIG {mig[beta]:.3f}, BetaVAE score "
          f"{scores[beta]['eval_accuracy']:.3f}")

# %% [markdown]
# **What to expect at the default budget** (CPU, `GENLAB_FAST` unset; the slice of squares,
# 6,000 steps per model). Over five seeds of the data, the initialization and the batch order,
# β = 1 reached a reconstruction of about 14 nats and a KL of about 10 nats per image with 4–5
# active units, a **MIG of 0.01–0.03** and a BetaVAE score of 0.67–0.81; β = 8 reached about 33
# nats and 5 nats with **3 active units** — one per factor — a **MIG of 0.09–0.46** and a BetaVAE
# score of 0.81–1.00. β = 8's MIG was higher than β = 1's in **five of the five seeds**, by a
# factor of 3.5 to 22. (To see another seed, set `GENLAB_SEED` before starting Jupyter and rerun
# the notebook; `genlab seeds 06_beta_vae` runs the model solution once for each of the five.) The spread of β = 8's MIG is wide: in the best seeds each of the three live dimensions
# follows one factor almost alone; in the others one factor is still shared between two
# dimensions, which the traversals show as a slightly diagonal slide. The numbers also move with
# the number of CPU threads (the order of floating-point sums). The published β-VAE results on
# full dSprites (MIG 0.1–0.2) come from hundreds of thousands of steps; the GPU budget goes in that
# direction, so if you have a GPU, compare your MIGs with those.
#
# ## Summary
#
# * dSprites has five known, independent factors and every combination once; genlab draws any
#   image on demand from its factors, which is what lets us measure disentanglement at all.
# * The β-VAE loss is the VAE's negative ELBO with the KL weighted by β. Above 1, β makes every
#   nat of code expensive; the diagonal Gaussian posterior (not the rotation-invariant prior)
#   makes axis-aligned, factor-by-factor codes the cheapest way to spend them.
# * The KL splits into one term per latent dimension. Dimensions near 0 nats have collapsed; the
#   active units — variance of the posterior mean above 0.01 — count the rest.
# * A latent traversal decodes the posterior mean with one coordinate swept: a disentangled
#   dimension changes one factor only.
# * MIG discretizes each code dimension into 20 bins, computes its mutual information with every
#   factor, and averages over factors the gap between the two most informative dimensions divided
#   by the factor's entropy. It is 1 for a perfect axis-aligned code, near 0 for random codes, and
#   it drops when a perfect code is rotated. The BetaVAE score asks the same question with a
#   classifier.
# * Disentanglement costs reconstruction. Capacity annealing raises the allowed KL slowly to get
#   the alignment early and the detail late.
#
# ## Questions to think about
#
# 1. MIG is invariant to permuting and rescaling code dimensions. Why must a disentanglement
#    metric be, and which other transformations of the code should it *not* be invariant to?
# 2. The perfect code scores below 1 with 20 bins. Would 40 bins fix it? What goes wrong with
#    1,000 bins on 10,000 points? (Think of the bias of the plug-in mutual information estimate.)
# 3. A square looks the same after a quarter turn. What does that do to the mutual information any
#    code can have with "orientation", and so to the best possible MIG on dSprites?
# 4. β = 8 made fewer dimensions active. Is a collapsed dimension good or bad for MIG? For
#    reconstruction? For sampling new images from the prior?
# 5. Locatello et al. (2019) proved that, without inductive biases or supervision, unsupervised
#    disentanglement is impossible in general. Which inductive biases did *this* lab rely on?
# 6. Run the training with another seed. How much does MIG move? What does that say about
#    comparing two models by one run each?
#
# ## Further reading
#
# * I. Higgins, L. Matthey, A. Pal, C. Burgess, X. Glorot, M. Botvinick, S. Mohamed, A. Lerchner,
#   *β-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework*, ICLR 2017 —
#   the β-VAE, dSprites' first use, and the BetaVAE score.
# * C. Burgess, I. Higgins, A. Pal, L. Matthey, N. Watters, G. Desjardins, A. Lerchner,
#   *Understanding disentangling in β-VAE*, 2018 — the information-bottleneck view and capacity
#   annealing.
# * R. T. Q. Chen, X. Li, R. Grosse, D. Duvenaud, *Isolating Sources of Disentanglement in
#   Variational Autoencoders*, NeurIPS 2018 — β-TCVAE and the mutual information gap.
# * F. Locatello, S. Bauer, M. Lucic, G. Rätsch, S. Gelly, B. Schölkopf, O. Bachem, *Challenging
#   Common Assumptions in the Unsupervised Learning of Disentangled Representations*, ICML 2019 —
#   thousands of models, disentanglement_lib, and why the seed matters as much as the method.
# * M. Rolinek, D. Zietlow, G. Martius, *Variational Autoencoders Pursue PCA Directions (by
#   Accident)*, CVPR 2019 — why the diagonal posterior, not the prior, aligns the code with axes.
# * Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016 — active
#   units.
# * L. Matthey, I. Higgins, D. Hassabis, A. Lerchner, *dSprites: Disentanglement testing Sprites
#   dataset*, 2017 — github.com/deepmind/dsprites-dataset.
