# %%
# On Google Colab only: install genlab, the course's helper library, from the course repository.
# (Colab has PyTorch and the other packages already; --no-deps keeps its versions.)
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "genlab @ git+https://github.com/genlab-course/genlab"], check=True)

# %% [markdown]
# # Lab 3 · Denoising autoencoders: learning by repairing
#
# The autoencoder of lab 2 learns to *copy*: an image goes in, passes through a narrow code, and
# the same image should come out. Copying is a task that a network can pass without learning much
# about digits — give it a wide enough code and it gets close to the identity map. Vincent,
# Larochelle, Bengio and Manzagol (2008) proposed a harder task with the same network: **damage
# the input and ask for the undamaged image**. To repair a digit with a third of its pixels
# missing, the network has to know what digits look like. That knowledge is what we want from
# unsupervised learning.
#
# In this lab you build the pieces of that idea and use the trained models three ways:
#
# * **denoising** — give back a clean digit from a noisy one;
# * **outlier detection** — an image the model cannot rebuild is probably not a digit;
# * **inpainting** — fill a hole in a digit by searching the decoder's code space for an image
#   that agrees with the pixels you can still see.
#
# **Learning goals.** After this lab you can
#
# 1. write the three corruptions of Vincent et al. (additive Gaussian, masking, salt-and-pepper)
#    as random functions of an image, make them reproducible with a `torch.Generator`, and check
#    their statistics against their definitions;
# 2. measure restoration quality in decibels (PSNR) and read a difference of a few dB;
# 3. write the training step of a denoising autoencoder (DAE): corrupt the input, score the output
#    against the *clean* image;
# 4. compare a plain autoencoder with denoising ones over noise types and levels, and explain both
#    why the DAE wins and where it does not;
# 5. turn reconstruction error into an anomaly score and judge the detector by its ROC curve and
#    the area under it (AUC), computed as a probability over pairs with ties counted fairly;
# 6. inpaint a digit by optimizing its latent code under a loss that only looks at known pixels.
#
# **Lecture ideas practised.** The lecture on latent models notes that plain autoencoders both
# underfit and overfit, and that the classic regularizers are weight decay, penalties on the
# activations and *noise*; the denoising autoencoder of Vincent et al. (2010) receives a corrupted
# input and must output the clean one. The same lecture restores images with a latent model by
# minimizing $\|(g_\theta(z) - x)\odot m\|$ over the code $z$, where the mask $m$ marks the known
# pixels (the GLO model of Bojanowski et al.). The other lecture lists what an autoencoder is good
# for — dimensionality reduction, pre-training, denoising, and detecting outliers with the error
# $\|x - \hat x\|^2$. Parts 1–3 build the denoiser, Part 4 the outlier detector, Part 5 the inpainter.
#
# **How this lab works.** Each exercise has a cell where you write a function, followed by a locked
# test cell. The visible tests are there for you to run while you work; when the lab is graded,
# hidden tests check more cases. A failing test says *what* it checked and, when your result
# matches a typical mistake, *which* mistake it looks like. The tests never need a trained model:
# they use tiny networks and run in a second or two.
#
# | Exercise | Function | Points |
# |---|---|---|
# | 1 | `add_gaussian_noise` | 2 + 1 (input checks) |
# | 2 | `add_masking_noise` | 2 + 1 (input checks) |
# | 3 | `add_salt_and_pepper_noise` | 2 + 1 (input checks) |
# | 4 | `psnr` | 2 + 1 (input checks) |
# | 5 | `denoising_train_step` | 3 |
# | 6 | `anomaly_scores` | 2 |
# | 7 | `roc_auc` | 3 + 1 (input checks) |
#
# **Time.** The experiment trains four small autoencoders. With the default budget the whole
# notebook runs in about two minutes on a 2-core laptop CPU; on a GPU it switches to a larger
# budget (Part 2 says how), and with `GENLAB_FAST=1` (what the autograder uses) it takes seconds.
# %% [markdown]
# ## Set-up
#
# The first cell is locked because the tests rely on it. Besides the imports it brings `attempt`,
# which the test cells use to call your functions: a missing function or a crash becomes a short
# failure message instead of a long traceback.
# %% readonly setup
import math

import torch
from torch import nn

from genlab import budget, get_device, seed_everything
from genlab.autoencoder import Autoencoder, reconstruction_loss
from genlab.testing import CheckFailed, attempt

seed_everything(0)
torch.set_printoptions(precision=3, sci_mode=False)

# %% [markdown]
# The data: MNIST digits as float tensors `(N, 1, 28, 28)` with pixels in $[0, 1]$ (without a
# network connection genlab falls back to 5,000 bundled MNIST digits and says so in one line). We
# keep a few test digits aside to look at throughout the lab.
# %% demo
import matplotlib.pyplot as plt
import numpy as np

from genlab.data import load_mnist
from genlab.plotting import plot_curves, show, show_images, show_rows, subplots
from genlab.widgets import explore

x_test_all, _ = load_mnist("test")
examples = x_test_all[:8]
show_images(examples, title="eight test digits")

# %% [markdown]
# ## Part 1 · Three ways to damage an image
#
# Vincent et al. (2010) tried three kinds of corruption $q(\tilde x \mid x)$. Each acts on every
# pixel $x_i$ independently:
#
# | name | what happens to pixel $x_i$ | parameter |
# |---|---|---|
# | additive Gaussian | $\tilde x_i = x_i + \sigma\,\varepsilon_i$, with $\varepsilon_i \sim \mathcal N(0, 1)$, clamped to $[0, 1]$ | $\sigma$, a standard deviation |
# | masking | $\tilde x_i = 0$ with probability $p$, else $x_i$ | $p \in [0, 1]$ |
# | salt-and-pepper | $\tilde x_i \in \{0, 1\}$ (even odds) with probability $p$, else $x_i$ | $p \in [0, 1]$ |
#
# Gaussian noise nudges every pixel a little; the other two destroy a fraction of the pixels
# completely and leave the rest alone. Masking is the gentlest to look at on MNIST (the background
# is already 0, so only the strokes lose pixels), yet it hides the damage best: a zero inside a
# stroke looks exactly like background. Salt-and-pepper drops white dots on the background that a
# model must recognise as foreign.
#
# **Randomness you can repeat.** Every function below takes an optional `generator`, a
# `torch.Generator`. Random functions accept it as `torch.randn(shape, generator=generator)`;
# two generators seeded alike produce the same numbers, whatever else happens in between. That
# makes a noisy test set identical from run to run, and it lets the tests check your functions.
# One snag: a generator lives on one device, and a CPU generator cannot draw numbers on the GPU.
# The rule in this lab: **draw on the generator's device, then move the numbers to `x`'s device**
# (without a generator, draw directly on `x`'s device):
#
# ```python
# where = x.device if generator is None else generator.device
# eps = torch.randn(x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)
# ```
#
# `torch.rand` (uniform on $[0, 1)$) takes the same arguments. Draw numbers shaped like the whole
# batch, `x.shape`: one fresh random number for every pixel of every image.
#
# **Checking inputs.** All three functions raise a `TypeError` when `x` is not a floating-point
# tensor (`x.is_floating_point()`: an image stored as `uint8` 0–255 must be converted first) and a
# `ValueError` when the noise level is out of range. None of them changes `x` itself: they return
# a new tensor of the same shape, dtype and device. The input checks have a test cell of their own
# (1 point per function, here and in Exercises 4 and 7), so a function that computes the right
# thing earns its main points even before the checks are in place.
#
# ## Exercise 1 · Additive Gaussian noise (2 + 1 points)
#
# $$\tilde x = \operatorname{clamp}\big(x + \sigma\,\varepsilon,\; 0,\; 1\big), \qquad
#   \varepsilon_i \overset{\text{iid}}{\sim} \mathcal N(0, 1).$$
#
# Two details matter. First, $\sigma$ is the **standard deviation**: `torch.randn` gives standard
# normal numbers, and multiplying them by $\sigma$ gives standard deviation $\sigma$ (variance
# $\sigma^2$). Second, the clamp keeps the result an image. It also makes the noise lopsided near
# the ends of the range: a black pixel can only get brighter, so on a black image about half of
# the noisy pixels stay exactly 0.
#
# **Your task.** Write `add_gaussian_noise(x, sigma, generator=None)`. Raise `ValueError` when
# `sigma` is negative and `TypeError` when `x` is not floating point.
# %% solution add_gaussian_noise
def add_gaussian_noise(x, sigma, generator=None):
    """clamp(x + sigma * eps, 0, 1) with eps ~ N(0, 1) drawn independently for every pixel."""
    ### BEGIN SOLUTION
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if sigma < 0:
        raise ValueError(f"sigma is a standard deviation and cannot be negative, got {sigma}")
    where = x.device if generator is None else generator.device
    eps = torch.randn(x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)
    return (x + sigma * eps).clamp(0.0, 1.0)
    ### END SOLUTION

# %% test test_add_gaussian_noise points=2
import math
import torch
from genlab.testing import check_close, check_number, check_raises, check_tensor, devices


def _spread(sigma):
    """Standard deviation of clamp(0.5 + sigma * eps, 0, 1), estimated from 400,000 draws."""
    eps = torch.randn(400_000, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
    return (0.5 + sigma * eps).clamp(0, 1).std().item()


def _gaussian_checks(sigma, dtype=torch.float32, seed=0):
    what = f"add_gaussian_noise(x, sigma={sigma}) on 64 grey images (every pixel 0.5, {dtype})"
    x = torch.full((64, 1, 28, 28), 0.5, dtype=dtype)
    out = attempt(what, add_gaussian_noise, x, sigma, generator=torch.Generator().manual_seed(seed))
    check_tensor(out, what, shape=x.shape, dtype=dtype, device="cpu")
    check_close(x, torch.full_like(x, 0.5), f"x after calling {what}",
                hint="do not change x in place (x += ..., x.clamp_()); return a new tensor")
    same = (out[1:] == out[:-1]).double().mean().item()
    check_number(same, 0.0, f"{what}: fraction of pixels equal in neighbouring images", rel=0,
                 abs_=0.05, mistakes={"the same noise for every image (noise shaped (1, C, H, W), or "
                                      "a generator reseeded for each image): draw noise shaped like "
                                      "the whole batch x": 1.0})
    noise = (out - x).double()
    spread = _spread(sigma)
    check_number(noise.flatten(1).std(1).mean().item(), spread,
                 f"{what}: standard deviation of the noise within an image", rel=0.04, abs_=1e-4,
                 mistakes={"one noise value per image (noise shaped (N, 1, 1, 1)): draw one number "
                           "per pixel": 0.0,
                           "sigma used as the variance: the noise's standard deviation is sqrt(sigma)":
                           _spread(math.sqrt(sigma)),
                           "sigma squared: sigma * torch.randn(...) already has standard deviation sigma":
                           _spread(sigma ** 2),
                           "uniform noise (torch.rand) instead of standard normal noise (torch.randn)":
                           sigma / math.sqrt(12)})
    check_number(noise.mean().item(), 0.0, f"{what}: mean of the added noise", rel=0,
                 abs_=6 * spread / math.sqrt(noise.numel()),
                 mistakes={"uniform noise (torch.rand) instead of standard normal noise "
                           "(torch.randn)": sigma / 2})
    torch.rand(10)  # move the global random state: a seeded generator must not care
    again = add_gaussian_noise(x, sigma, generator=torch.Generator().manual_seed(seed))
    check_close(again, out, f"{what}, called twice with generators seeded alike",
                mistakes={"ignoring the generator argument: pass generator=generator to "
                          "torch.randn so that the same seed gives the same noise": lambda a: True})
    other = add_gaussian_noise(x, sigma, generator=torch.Generator().manual_seed(seed + 1))
    check_number((other == out).double().mean().item(), 0.0,
                 f"{what}, called with two differently seeded generators: fraction of equal "
                 "pixels", rel=0, abs_=0.05,
                 mistakes={"noise that does not depend on the generator's seed (is the global "
                           "random state reseeded inside the function?)": 1.0})


_gaussian_checks(0.1)
_black = add_gaussian_noise(torch.zeros(64, 1, 28, 28), 0.5, generator=torch.Generator().manual_seed(1))
check_close(_black, _black.clamp(0, 1), "add_gaussian_noise(black images, sigma=0.5): values in [0, 1]",
            mistakes={"forgetting to clamp the noisy image to [0, 1]": lambda a: bool((a < 0).any()),
                      "clamping only from below: clamp to [0, 1], not just at 0":
                      lambda a: bool((a > 1).any())})
check_number((_black == 0).double().mean().item(), 0.5,
             "add_gaussian_noise(black images, sigma=0.5): fraction of pixels clamped to exactly 0",
             rel=0, abs_=0.02, hint="clamp x + sigma * eps to [0, 1]: the negative half becomes 0")
### BEGIN HIDDEN TESTS
_gaussian_checks(0.3, dtype=torch.float64, seed=1)
_gaussian_checks(0.05, seed=2)
_white = add_gaussian_noise(torch.ones(16, 1, 28, 28), 0.5, generator=torch.Generator().manual_seed(3))
check_close(_white, _white.clamp(0, 1), "add_gaussian_noise(white images, sigma=0.5): values in [0, 1]",
            mistakes={"clamping only from below: clamp to [0, 1], not just at 0":
                      lambda a: bool((a > 1).any())})
_x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(4))
check_close(add_gaussian_noise(_x, 0.0, generator=torch.Generator().manual_seed(5)), _x,
            "add_gaussian_noise(x, sigma=0) must return x unchanged")
for _dev in devices():
    for _gen in (torch.Generator().manual_seed(6), None):
        _what = f"add_gaussian_noise on {_dev.type} with {'a CPU generator' if _gen else 'no generator'}"
        _out = attempt(_what, add_gaussian_noise, _x.to(_dev), 0.2, generator=_gen)
        check_tensor(_out, _what, shape=_x.shape, device=_dev)
### END HIDDEN TESTS

# %% test test_add_gaussian_noise_errors points=1
import torch
from genlab.testing import check_raises

check_raises(lambda: add_gaussian_noise(torch.rand(2, 1, 28, 28), -0.1), ValueError,
             "add_gaussian_noise(x, sigma=-0.1)", hint="a standard deviation cannot be negative")
check_raises(lambda: add_gaussian_noise(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 0.1),
             TypeError, "add_gaussian_noise on a uint8 tensor",
             hint="check x.is_floating_point() and raise TypeError")
### BEGIN HIDDEN TESTS
check_raises(lambda: add_gaussian_noise(torch.rand(2, 1, 4, 4, dtype=torch.float64), -1e-3),
             ValueError, "add_gaussian_noise(x, sigma=-0.001)",
             hint="a standard deviation cannot be negative")
check_raises(lambda: add_gaussian_noise(torch.zeros(2, 1, 4, 4, dtype=torch.int64), 0.1),
             TypeError, "add_gaussian_noise on an int64 tensor",
             hint="check x.is_floating_point() and raise TypeError")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2 · Masking noise (2 + 1 points)
#
# Each pixel is switched off independently with probability $p$:
#
# $$\tilde x_i = b_i\, x_i, \qquad b_i \overset{\text{iid}}{\sim} \operatorname{Bernoulli}(1 - p).$$
#
# A uniform number $u_i$ on $[0, 1)$ falls below $p$ with probability exactly $p$, so
# "$u_i < p$" is a fair coin with probability $p$ of heads. On average a fraction $p$ of the pixels
# is zeroed, and each image loses about $p$ of its own pixels (not: a fraction $p$ of the images
# loses everything).
#
# Careful with a tempting shortcut: `torch.nn.functional.dropout` zeroes entries with probability
# $p$ but also **multiplies the survivors by** $1/(1-p)$, to keep the expected value of a
# layer's activations. That is right inside a network and wrong for an image: masking noise leaves
# the surviving pixels exactly as they were.
#
# **Your task.** Write `add_masking_noise(x, p, generator=None)`. Raise `ValueError` unless
# $0 \le p \le 1$, and `TypeError` when `x` is not floating point.
# %% solution add_masking_noise
def add_masking_noise(x, p, generator=None):
    """Set each pixel to 0 independently with probability p; keep it otherwise."""
    ### BEGIN SOLUTION
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if not 0 <= p <= 1:
        raise ValueError(f"p is a probability and must lie in [0, 1], got {p}")
    where = x.device if generator is None else generator.device
    u = torch.rand(x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)
    return torch.where(u < p, torch.zeros_like(x), x)
    ### END SOLUTION

# %% test test_add_masking_noise points=2
import math
import torch
from genlab.testing import check_close, check_number, check_raises, check_tensor, devices


def _masking_checks(p, dtype=torch.float32, seed=0):
    what = f"add_masking_noise(x, p={p}) on 64 random images without black pixels ({dtype})"
    x = 0.1 + 0.9 * torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(100 + seed),
                               dtype=dtype)
    before = x.clone()
    out = attempt(what, add_masking_noise, x, p, generator=torch.Generator().manual_seed(seed))
    check_tensor(out, what, shape=x.shape, dtype=dtype, device="cpu")
    check_close(x, before, f"x after calling {what}",
                hint="do not change x in place; return a new tensor")
    zeroed = out == 0
    check_close(out, torch.where(zeroed, torch.zeros_like(x), x),
                f"{what}: every pixel is either 0 or unchanged",
                mistakes={"rescaling the kept pixels by 1/(1-p), as dropout does (F.dropout is not "
                          "masking noise)": lambda a: torch.allclose(a[a != 0], (x / (1 - p))[a != 0]),
                          "multiplying the pixels by the random numbers instead of by a 0/1 mask":
                              lambda a: bool((a < x - 1e-6).any() and (a > 0).any())},
                hint="a masked pixel becomes exactly 0; every other pixel keeps its value")
    per_image = zeroed.flatten(1).double().mean(1)
    check_number(((per_image == 0) | (per_image == 1)).double().mean().item(), 0.0,
                 f"{what}: fraction of images zeroed entirely or not touched at all", rel=0,
                 abs_=0.0, mistakes={"zeroing whole images (one random number per image) instead "
                                     "of single pixels": 1.0})
    q = zeroed.double().mean().item()   # independent images agree with probability q^2 + (1-q)^2
    check_number((zeroed[1:] == zeroed[:-1]).double().mean().item(), q ** 2 + (1 - q) ** 2,
                 f"{what}: how often a pixel has the same fate in neighbouring images", rel=0,
                 abs_=0.03, mistakes={"the same mask for every image (random numbers shaped "
                                      "(1, C, H, W)): draw one number per pixel of every image": 1.0})
    check_number(zeroed.double().mean().item(), p, f"{what}: fraction of zeroed pixels", rel=0,
                 abs_=6 * math.sqrt(p * (1 - p) / x.numel()) + 1e-12,
                 mistakes={"keeping each pixel with probability p instead of zeroing it with "
                           "probability p": 1 - p})
    torch.rand(10)
    again = add_masking_noise(x, p, generator=torch.Generator().manual_seed(seed))
    check_close(again, out, f"{what}, called twice with generators seeded alike",
                mistakes={"ignoring the generator argument: pass generator=generator to "
                          "torch.rand": lambda a: True})


_masking_checks(0.3)
### BEGIN HIDDEN TESTS
_masking_checks(0.75, dtype=torch.float64, seed=1)
_masking_checks(0.1, seed=2)
_x = 0.1 + torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(7)) * 0.9
check_close(add_masking_noise(_x, 0.0, generator=torch.Generator().manual_seed(1)), _x,
            "add_masking_noise(x, p=0) must keep every pixel")
check_close(add_masking_noise(_x, 1.0, generator=torch.Generator().manual_seed(1)),
            torch.zeros_like(_x), "add_masking_noise(x, p=1) must zero every pixel")
for _dev in devices():
    for _gen in (torch.Generator().manual_seed(6), None):
        _what = f"add_masking_noise on {_dev.type} with {'a CPU generator' if _gen else 'no generator'}"
        _out = attempt(_what, add_masking_noise, _x.to(_dev), 0.4, generator=_gen)
        check_tensor(_out, _what, shape=_x.shape, device=_dev)
### END HIDDEN TESTS

# %% test test_add_masking_noise_errors points=1
import torch
from genlab.testing import check_raises

check_raises(lambda: add_masking_noise(torch.rand(2, 1, 28, 28), 1.5), ValueError,
             "add_masking_noise(x, p=1.5)", hint="p is a probability: raise ValueError outside [0, 1]")
check_raises(lambda: add_masking_noise(torch.rand(2, 1, 28, 28), -0.1), ValueError,
             "add_masking_noise(x, p=-0.1)", hint="p is a probability: raise ValueError outside [0, 1]")
check_raises(lambda: add_masking_noise(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 0.3),
             TypeError, "add_masking_noise on a uint8 tensor",
             hint="check x.is_floating_point() and raise TypeError")
### BEGIN HIDDEN TESTS
check_raises(lambda: add_masking_noise(torch.rand(2, 1, 4, 4, dtype=torch.float64), 1.0001),
             ValueError, "add_masking_noise(x, p=1.0001)",
             hint="p is a probability: raise ValueError outside [0, 1]")
check_raises(lambda: add_masking_noise(torch.zeros(2, 1, 4, 4, dtype=torch.int64), 0.3),
             TypeError, "add_masking_noise on an int64 tensor",
             hint="check x.is_floating_point() and raise TypeError")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3 · Salt-and-pepper noise (2 + 1 points)
#
# With probability $p$ a pixel is corrupted, and a corrupted pixel becomes white ("salt", 1) or
# black ("pepper", 0) with even odds:
#
# $$\tilde x_i = \begin{cases} 0 & \text{with probability } p/2,\\
#                              1 & \text{with probability } p/2,\\
#                              x_i & \text{with probability } 1 - p.\end{cases}$$
#
# One uniform number per pixel is enough to make both decisions: split $[0, 1)$ into
# $[0, p/2)$ for pepper, $[p/2, p)$ for salt and $[p, 1)$ for "leave it alone". Two independent
# draws (one for "corrupted?", one for "salt or pepper?") are just as correct. A common slip is to
# add salt with probability $p$ and *then* pepper with probability $p$: that corrupts about
# $2p - p^2$ of the pixels instead of $p$.
#
# **Your task.** Write `add_salt_and_pepper_noise(x, p, generator=None)`, with the same input checks
# as Exercise 2.
# %% solution add_salt_and_pepper_noise
def add_salt_and_pepper_noise(x, p, generator=None):
    """With probability p set a pixel to 0 or 1 (even odds); keep it otherwise."""
    ### BEGIN SOLUTION
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if not 0 <= p <= 1:
        raise ValueError(f"p is a probability and must lie in [0, 1], got {p}")
    where = x.device if generator is None else generator.device
    u = torch.rand(x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)
    salt_or_pepper = (u >= p / 2).to(x.dtype)   # 0 on [0, p/2), 1 on [p/2, p)
    return torch.where(u < p, salt_or_pepper, x)
    ### END SOLUTION

# %% test test_add_salt_and_pepper_noise points=2
import math
import torch
from genlab.testing import check_close, check_number, check_raises, check_tensor, devices


def _salt_pepper_checks(p, dtype=torch.float32, seed=0):
    what = f"add_salt_and_pepper_noise(x, p={p}) on 64 grey images (every pixel 0.5, {dtype})"
    x = torch.full((64, 1, 28, 28), 0.5, dtype=dtype)
    out = attempt(what, add_salt_and_pepper_noise, x, p,
                  generator=torch.Generator().manual_seed(seed))
    check_tensor(out, what, shape=x.shape, dtype=dtype, device="cpu")
    check_close(x, torch.full_like(x, 0.5), f"x after calling {what}",
                hint="do not change x in place; return a new tensor")
    salt, pepper = out == 1, out == 0
    changed = salt | pepper
    check_close(out, torch.where(changed, out, x), f"{what}: every pixel is 0, 1 or unchanged",
                mistakes={"replacing the corrupted pixels by p instead of by 0 or 1":
                          lambda a: bool((a == p).any())},
                hint="a corrupted pixel becomes exactly 0 (pepper) or exactly 1 (salt)")
    shares = [m.double().mean().item() for m in (salt, pepper, ~changed)]
    check_number((out[1:] == out[:-1]).double().mean().item(), sum(q ** 2 for q in shares),
                 f"{what}: how often a pixel has the same value in neighbouring images", rel=0,
                 abs_=0.03, mistakes={"the same noise pattern for every image (random numbers shaped "
                                      "(1, C, H, W)): draw numbers shaped like x": 1.0})
    check_number(changed.double().mean().item(), p, f"{what}: fraction of corrupted pixels", rel=0,
                 abs_=6 * math.sqrt(p * (1 - p) / x.numel()) + 1e-12,
                 mistakes={"corrupting pixels twice (salt with probability p, then pepper with "
                           "probability p): about 2p - p^2 of the pixels change instead of p":
                           2 * p - p * p,
                           "corrupting only p/2 of the pixels: p is the probability of salt OR "
                           "pepper": p / 2})
    k = max(int(changed.sum()), 1)
    check_number(salt.sum().item() / k, 0.5, f"{what}: share of salt (1) among the corrupted pixels",
                 rel=0, abs_=6 * math.sqrt(0.25 / k),
                 mistakes={"only salt: a corrupted pixel must become 0 or 1 with even odds": 1.0,
                           "only pepper: a corrupted pixel must become 0 or 1 with even odds": 0.0,
                           "choosing salt with probability p instead of 1/2": p})
    torch.rand(10)
    again = add_salt_and_pepper_noise(x, p, generator=torch.Generator().manual_seed(seed))
    check_close(again, out, f"{what}, called twice with generators seeded alike",
                mistakes={"ignoring the generator argument: pass generator=generator to "
                          "torch.rand": lambda a: True})


_salt_pepper_checks(0.2)
### BEGIN HIDDEN TESTS
_salt_pepper_checks(0.6, dtype=torch.float64, seed=1)
_salt_pepper_checks(0.05, seed=2)
_x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(8))
check_close(add_salt_and_pepper_noise(_x, 0.0, generator=torch.Generator().manual_seed(1)), _x,
            "add_salt_and_pepper_noise(x, p=0) must keep every pixel")
_all = add_salt_and_pepper_noise(_x, 1.0, generator=torch.Generator().manual_seed(2))
check_close(_all, _all.round(), "add_salt_and_pepper_noise(x, p=1): every pixel must be 0 or 1")
for _dev in devices():
    for _gen in (torch.Generator().manual_seed(6), None):
        _what = (f"add_salt_and_pepper_noise on {_dev.type} with "
                 f"{'a CPU generator' if _gen else 'no generator'}")
        _out = attempt(_what, add_salt_and_pepper_noise, _x.to(_dev), 0.3, generator=_gen)
        check_tensor(_out, _what, shape=_x.shape, device=_dev)
### END HIDDEN TESTS

# %% test test_add_salt_and_pepper_noise_errors points=1
import torch
from genlab.testing import check_raises

check_raises(lambda: add_salt_and_pepper_noise(torch.rand(2, 1, 28, 28), 1.2), ValueError,
             "add_salt_and_pepper_noise(x, p=1.2)",
             hint="p is a probability: raise ValueError outside [0, 1]")
check_raises(lambda: add_salt_and_pepper_noise(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 0.2),
             TypeError, "add_salt_and_pepper_noise on a uint8 tensor",
             hint="check x.is_floating_point() and raise TypeError")
### BEGIN HIDDEN TESTS
check_raises(lambda: add_salt_and_pepper_noise(torch.rand(8, 1, 4, 4), -0.2), ValueError,
             "add_salt_and_pepper_noise(x, p=-0.2)",
             hint="p is a probability: raise ValueError outside [0, 1]")
check_raises(lambda: add_salt_and_pepper_noise(torch.zeros(2, 1, 4, 4, dtype=torch.int64), 0.2),
             TypeError, "add_salt_and_pepper_noise on an int64 tensor",
             hint="check x.is_floating_point() and raise TypeError")
### END HIDDEN TESTS

# %% [markdown]
# Here are the three corruptions at increasing strength, applied to the same eight digits. The
# generator is seeded, so you see the same noise every time you run the cell.
# %% demo
NOISE_FUNCTIONS = {"gaussian": add_gaussian_noise, "masking": add_masking_noise,
                   "salt_and_pepper": add_salt_and_pepper_noise}
LEVEL_NAME = {"gaussian": "σ", "masking": "p", "salt_and_pepper": "p"}

gallery = {"clean": examples}
for kind, levels in [("gaussian", [0.2, 0.5]), ("masking", [0.25, 0.5]),
                     ("salt_and_pepper", [0.1, 0.3])]:
    for level in levels:
        noisy = NOISE_FUNCTIONS[kind](examples, level, generator=torch.Generator().manual_seed(0))
        gallery[f"{kind} {LEVEL_NAME[kind]}={level}"] = noisy
show_rows(gallery, title="The same digits under three kinds of noise")

# %% [markdown]
# ## Exercise 4 · Peak signal-to-noise ratio (2 + 1 points)
#
# To compare denoisers we need one number per image that says how close a restored image
# $\hat x$ is to the clean one $x$. The mean squared error over the $D$ pixels of image $n$,
#
# $$\operatorname{MSE}_n = \frac{1}{D} \sum_{i=1}^{D} \big(\hat x_{n,i} - x_{n,i}\big)^2 ,$$
#
# is the natural start, but image people quote the **peak signal-to-noise ratio** instead, on a
# logarithmic scale in decibels:
#
# $$\operatorname{PSNR}_n = 10 \log_{10} \frac{\text{MAX}^2}{\operatorname{MSE}_n}\ \text{dB},$$
#
# where MAX is the largest possible pixel value (1 for our images, 255 for 8-bit ones). Reading it:
#
# * higher is better; **+10 dB means 10 times less squared error**, +3 dB about half;
# * 20 dB on $[0, 1]$ images means a root-mean-square error of $0.1$ per pixel;
# * identical images have $\operatorname{MSE}_n = 0$ and an **infinite** PSNR — return `inf` there
#   (dividing by a zero tensor gives `inf` in PyTorch, and $\log_{10}(\infty) = \infty$); do not
#   add a small constant, which would invent a finite number;
# * the squared ratio uses $\text{MAX}^2$ because the MSE is a *squared* error; with the root
#   mean squared error you would write $20 \log_{10}(\text{MAX}/\text{RMSE})$ — the same thing.
#
# The MSE is taken **per image**: one PSNR per image, a tensor of shape `(N,)`. When we report a
# single figure for a test set, we average these per-image values.
#
# **Your task.** Write `psnr(x_hat, x, max_val=1.0)` for batches of shape `(N, ...)`. Raise a
# `ValueError` when `x_hat` and `x` do not have the same shape.
# %% solution psnr
def psnr(x_hat, x, max_val=1.0):
    """Peak signal-to-noise ratio of each image in dB, shape (N,)."""
    ### BEGIN SOLUTION
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {tuple(x_hat.shape)} and "
                         f"{tuple(x.shape)}")
    mse = (x_hat - x).pow(2).flatten(start_dim=1).mean(dim=1)   # one MSE per image
    return 10 * torch.log10(max_val ** 2 / mse)                 # MSE 0 gives +inf
    ### END SOLUTION

# %% test test_psnr points=2
import math
import torch
from genlab.testing import check_close, check_raises, check_tensor, devices


def _psnr_mistakes(x_hat, x, max_val):
    err = (x_hat - x).double().pow(2)
    mse, sse, m2 = err.flatten(1).mean(1), err.flatten(1).sum(1), max_val ** 2
    batch = 10 * torch.log10(m2 / err.mean())
    return {
        "max_val instead of max_val**2 in the numerator": 10 * torch.log10(max_val / mse),
        "one MSE for the whole batch instead of one per image": batch,
        "the same batch-wide PSNR for every image: compute the MSE of each image separately":
            batch.expand(len(x)),
        "the mean PSNR of the batch instead of one value per image":
            (10 * torch.log10(m2 / mse)).mean(),
        "the natural logarithm (torch.log) instead of log10": 10 * torch.log(m2 / mse),
        "20 * log10 with the MSE: 20 * log10 goes with the RMSE, 10 * log10 with the MSE":
            20 * torch.log10(m2 / mse),
        "the sum of squared errors instead of their mean over the pixels":
            10 * torch.log10(m2 / sse),
        "the root mean squared error in place of the MSE": 10 * torch.log10(m2 / mse.sqrt()),
    }


def _psnr_check(x_hat, x, max_val=1.0, expected=None, what=None):
    what = what or f"psnr(x_hat, x, max_val={max_val}) for {len(x)} images of shape {tuple(x.shape[1:])}"
    got = attempt(what, psnr, x_hat, x, max_val=max_val)
    if expected is None:
        mse = (x_hat - x).double().pow(2).flatten(1).mean(1)
        expected = (10 * torch.log10(max_val ** 2 / mse)).to(x.dtype)
    check_close(got, expected, what, mistakes=_psnr_mistakes(x_hat, x, max_val),
                atol=1e-4, rtol=1e-5)
    return got


# A hand-made example: three 2x2 images.
_x = torch.zeros(3, 1, 2, 2)
_x_hat = torch.zeros(3, 1, 2, 2)
_x_hat[0] = 0.1                                       # MSE 0.01   -> 20 dB
_x_hat[1, 0, 0, 0] = 0.5                              # MSE 0.0625 -> 10 log10(16) = 12.04 dB
_x_hat[2, 0] = torch.tensor([[0.2, -0.2], [0.4, 0.0]])  # MSE 0.06   -> 12.22 dB
_hand = torch.tensor([20.0, 10 * math.log10(16), 10 * math.log10(1 / 0.06)])
_psnr_check(_x_hat, _x, expected=_hand)
# The same images on a 0..255 scale have the same PSNR when max_val = 255.
_psnr_check(255 * _x_hat, 255 * _x, max_val=255.0, expected=_hand)
# Identical images: +inf, not NaN and not a large finite number.
_same = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
check_close(attempt("psnr(x, x)", psnr, _same, _same), torch.full((4,), math.inf),
            "psnr(x, x) for identical images",
            mistakes={"adding a small epsilon to the MSE: identical images have an infinite PSNR":
                      lambda a: bool(torch.isfinite(a).all()),
                      "0 / 0 somewhere: max_val**2 / 0 is +inf, but a NaN appeared":
                      lambda a: bool(torch.isnan(a).any())})
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(1)
_x = 2 * torch.rand(5, 1, 28, 28, generator=_g, dtype=torch.float64)
_noise = torch.randn(_x.shape, generator=_g, dtype=torch.float64) * torch.tensor(
    [0.01, 0.05, 0.1, 0.3, 0.6], dtype=torch.float64).view(5, 1, 1, 1)
_got = _psnr_check(_x + _noise, _x, max_val=2.0)
check_tensor(_got, "psnr on float64 images", dtype=torch.float64)
_psnr_check(torch.rand(1, 3, 8, 8, generator=_g), torch.rand(1, 3, 8, 8, generator=_g))
_mixed = _same.clone()
_mixed[1] = 1 - _mixed[1]
_mse1 = (_mixed[1] - _same[1]).double().pow(2).mean()
_psnr_check(_mixed, _same, expected=torch.tensor([math.inf, 10 * math.log10(1 / _mse1.item()),
                                                  math.inf, math.inf]))
for _dev in devices():
    _a, _b = torch.rand(2, 1, 4, 4).to(_dev), torch.rand(2, 1, 4, 4).to(_dev)
    check_tensor(attempt(f"psnr on {_dev.type}", psnr, _a, _b), f"psnr on {_dev.type}",
                 shape=(2,), device=_dev)
### END HIDDEN TESTS

# %% test test_psnr_errors points=1
import torch
from genlab.testing import check_raises

check_raises(lambda: psnr(torch.rand(3, 1, 28, 28), torch.rand(2, 1, 28, 28)), ValueError,
             "psnr with x_hat (3, 1, 28, 28) and x (2, 1, 28, 28)",
             hint="compare x_hat.shape with x.shape and raise ValueError when they differ")
### BEGIN HIDDEN TESTS
# Shapes that broadcast silently: without the check these give a number of the wrong kind.
check_raises(lambda: psnr(torch.rand(1, 1, 28, 28), torch.rand(4, 1, 28, 28)), ValueError,
             "psnr with x_hat (1, 1, 28, 28) and x (4, 1, 28, 28)",
             hint="compare x_hat.shape with x.shape and raise ValueError when they differ, even "
                  "when the two shapes would broadcast")
check_raises(lambda: psnr(torch.rand(4, 1, 28, 28), torch.rand(4, 784)), ValueError,
             "psnr with x_hat (4, 1, 28, 28) and x (4, 784)",
             hint="compare x_hat.shape with x.shape and raise ValueError when they differ")
### END HIDDEN TESTS

# %% [markdown]
# How much do the corruptions hurt, in these units? The PSNR of the *noisy* images (compared with
# the clean ones) is the baseline every denoiser has to beat.
# %% demo
x_eval = x_test_all[:1000]
for kind, levels in [("gaussian", [0.1, 0.3, 0.5]), ("masking", [0.25, 0.5]),
                     ("salt_and_pepper", [0.1, 0.3])]:
    for level in levels:
        noisy = NOISE_FUNCTIONS[kind](x_eval, level, generator=torch.Generator().manual_seed(0))
        print(f"{kind:>16} {LEVEL_NAME[kind]}={level:<5} noisy input: "
              f"{psnr(noisy, x_eval).mean().item():5.1f} dB")

# %% [markdown]
# ## Part 2 · Training a denoising autoencoder
#
# A plain autoencoder $g_\theta \circ f_\theta$ (encoder $f$, decoder $g$) minimizes the
# reconstruction error of the images themselves. A **denoising** autoencoder feeds the network a
# corrupted copy $\tilde x \sim q(\tilde x \mid x)$ and scores the output against the clean $x$:
#
# $$\min_\theta\; \mathbb{E}_{x}\, \mathbb{E}_{\tilde x \sim q(\tilde x \mid x)}
#   \big\| g_\theta(f_\theta(\tilde x)) - x \big\|^2 .$$
#
# In practice the expectation over $\tilde x$ is a fresh corruption of every batch at every step,
# so the network never sees the same noisy image twice. Why does this help?
#
# * **The identity stops being a solution.** Copying $\tilde x$ to the output reproduces the noise,
#   which the loss punishes. The network must map damaged images *back* towards the clean ones.
# * **It learns where digits live.** Clean digits occupy a thin region (a "manifold") of the
#   784-dimensional pixel space; corrupted ones lie off it. The DAE learns to send points near the
#   region onto it — which needs a model of the region itself. Alain and Bengio (2014) showed that
#   for small Gaussian noise, $g(f(\tilde x)) - \tilde x$ points along the gradient of
#   $\log p(\tilde x)$, towards more probable images.
# * **The code stays meaningful.** Vincent et al. found that denoising training makes the learned
#   features better for classification than those of a plain autoencoder (the lecture compares
#   filters learnt on image patches with weight decay and with denoising: only the denoising ones
#   look like edge detectors).
#
# ## Exercise 5 · The training step (3 points)
#
# One step of stochastic gradient descent on the denoising criterion:
#
# 1. clear the gradients left from the previous step (`optimizer.zero_grad()`);
# 2. corrupt the clean batch: `x_noisy = corrupt(x_clean)`;
# 3. compute `reconstruction_loss(model(x_noisy), x_clean)` — from lab 2: the sum of squared errors
#    over each image's pixels, averaged over the batch. The target is the **clean** batch;
# 4. back-propagate and take one optimizer step;
# 5. return the loss as a Python `float` (`loss.item()`), for logging.
#
# `corrupt` is any function from images to images, e.g. `lambda x: add_gaussian_noise(x, 0.5)`.
# %% solution denoising_train_step
def denoising_train_step(model, x_clean, corrupt, optimizer):
    """One optimizer step on reconstruction_loss(model(corrupt(x_clean)), x_clean); returns a float."""
    ### BEGIN SOLUTION
    optimizer.zero_grad()
    x_noisy = corrupt(x_clean)
    loss = reconstruction_loss(model(x_noisy), x_clean)   # scored against the CLEAN images
    loss.backward()
    optimizer.step()
    return loss.item()
    ### END SOLUTION

# %% test test_denoising_train_step points=3
import copy
import torch
import torch.nn.functional as F
from torch import nn
from genlab.testing import CheckFailed, check_close, check_number, devices


class _TinyAE(nn.Module):
    """784 -> 8 -> 784 with a sigmoid: small enough to check one step by hand."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.Linear(8, 784), nn.Sigmoid(),
                                 nn.Unflatten(1, (1, 28, 28)))

    def forward(self, x):
        return self.net(x)


class _CountingSGD(torch.optim.SGD):
    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1
        return super().step(closure)


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _after_step(model, model_input, target, lr, loss_kind="sum", extra_grad=0.0):
    """Parameters (flat) and loss of one SGD step done by hand on a copy of model."""
    twin = copy.deepcopy(model)
    out = twin(model_input)
    if loss_kind == "sum":
        loss = (out - target).pow(2).flatten(1).sum(1).mean()
    else:
        loss = F.mse_loss(out, target)
    grads = torch.autograd.grad(loss, list(twin.parameters()))
    new = [p.detach() - lr * (g + extra_grad) for p, g in zip(twin.parameters(), grads)]
    return torch.cat([p.flatten() for p in new]), loss.item()


def _step_checks(seed=0, device="cpu", gaussian=False):
    torch.manual_seed(seed)
    model = _TinyAE().to(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(16, 1, 28, 28, generator=g).to(device)
    if gaussian:
        eps = torch.randn(x.shape, generator=g).to(device)
        corrupt = lambda b: (b + 0.4 * eps[:len(b)]).clamp(0, 1)   # noqa: E731  fixed noise
    else:
        keep = (torch.rand(x.shape, generator=g) > 0.3).float().to(device)
        corrupt = lambda b: b * keep[:len(b)]                      # noqa: E731  a fixed mask
    lr, junk = 0.1, 1.0
    right, right_loss = _after_step(model, corrupt(x), x, lr)
    stale, _ = _after_step(model, corrupt(x), x, lr, extra_grad=junk)
    noisy_target, noisy_target_loss = _after_step(model, corrupt(x), corrupt(x), lr)
    clean_input, clean_input_loss = _after_step(model, x, x, lr)
    mse, mse_loss = _after_step(model, corrupt(x), x, lr, loss_kind="mean")

    what = f"denoising_train_step(model, x_clean, corrupt, optimizer) with SGD (lr={lr}) on {device}"
    optimizer = _CountingSGD(model.parameters(), lr=lr)
    for p in model.parameters():    # gradients left over from an earlier step
        p.grad = torch.full_like(p, junk)
    result = attempt(what, denoising_train_step, model, x, corrupt, optimizer)
    if isinstance(result, torch.Tensor):
        raise CheckFailed(f"{what}: returned a tensor, not a Python float\n  Hint: this looks like "
                          "returning the loss tensor itself; return loss.item()")
    check_number(result, right_loss, f"{what}: the returned loss", rel=1e-4, abs_=1e-6,
                 mistakes={"the loss against the noisy input instead of the clean target":
                           noisy_target_loss,
                           "feeding the clean images to the model (corrupt is never applied)":
                           clean_input_loss,
                           "F.mse_loss (a mean over pixels) instead of reconstruction_loss (a sum "
                           "over each image's pixels, averaged over the batch)": mse_loss})
    check_number(optimizer.steps, 1, f"{what}: number of optimizer.step() calls", integer=True,
                 mistakes={"never calling optimizer.step()": 0,
                           "calling optimizer.step() twice": 2})
    check_close(_flat(model), right, f"{what}: the parameters after the step", atol=1e-5,
                rtol=1e-4,
                mistakes={"no optimizer.zero_grad() before backward(): gradients left over from "
                          "earlier steps are added to this one": stale,
                          "the loss against the noisy input instead of the clean target":
                          noisy_target,
                          "feeding the clean images to the model (corrupt is never applied)":
                          clean_input,
                          "F.mse_loss (a mean over pixels) instead of reconstruction_loss": mse})


_step_checks(seed=0)
### BEGIN HIDDEN TESTS
_step_checks(seed=1, gaussian=True)
for _dev in devices():
    _step_checks(seed=2, device=_dev)
### END HIDDEN TESTS

# %% [markdown]
# ### The experiment: two plain autoencoders, two denoising ones
#
# We train four copies of the convolutional `Autoencoder` of lab 2 on the same data, with the
# same budget and optimizer:
#
# * **AE** — a plain autoencoder with a 64-number code, trained on clean images;
# * **AE (code 10)** — the same with a 10-number code, a much tighter bottleneck;
# * **DAE (Gaussian)** — code 64, trained with Gaussian noise, $\sigma = 0.5$;
# * **DAE (mixed)** — code 64; every batch is split into three groups, each corrupted by one of
#   your three noise functions at a random level (Gaussian $\sigma \in [0.1, 0.7]$, masking
#   $p \in [0.1, 0.75]$, salt-and-pepper $p \in [0.05, 0.5]$).
#
# Both denoisers are trained with *your* `denoising_train_step`, plugged into genlab's training
# loop with `fit(..., step_fn=...)`; the corruptions use *your* noise functions.
#
# **Budget.** The next cell picks the size of the run. On a CPU it uses up to 5,000 training digits
# and 25 epochs per model (a minute or two on 2 cores); with `GENLAB_FAST=1` a few batches, enough
# to run the notebook but not to learn much. **With a GPU** the cell switches to the full training
# set and 40 epochs, which gives visibly sharper digits (set `GENLAB_NO_GPU_BUDGET=1` before
# starting Jupyter to use the CPU numbers anyway).
# %% demo
from genlab.denoising import random_corruption
from genlab.training import adam, fit

device = get_device()
TRAIN_LIMIT = budget(default=5000, fast=256, gpu=None)   # gpu: all training images (60,000 for MNIST)
EPOCHS = budget(default=25, fast=1, gpu=40)
LR, BATCH_SIZE = 2e-3, 128
x_train, _ = load_mnist("train", limit=TRAIN_LIMIT)
x_test = x_test_all[:budget(default=1000, fast=100)]
print(f"device {device}; {len(x_train):,} training and {len(x_test):,} test images; "
      f"{EPOCHS} epochs per model")

# %% demo
def plain_loss(model, x):
    return reconstruction_loss(model(x), x)


def denoising_step(corrupt):
    """A step_fn for fit: your training step with a fixed corruption."""
    return lambda model, x, optimizer: denoising_train_step(model, x, corrupt, optimizer)


gaussian_half = lambda x: add_gaussian_noise(x, 0.5)   # noqa: E731
mixed = random_corruption(noises=NOISE_FUNCTIONS)
RUNS = {  # name: (code size, corruption; None trains a plain autoencoder)
    "AE": (64, None),
    "AE (code 10)": (10, None),
    "DAE (Gaussian)": (64, gaussian_half),
    "DAE (mixed)": (64, mixed),
}

models, histories = {}, {}
for name, (code_size, corrupt) in RUNS.items():
    torch.manual_seed(0)                      # the same initial weights for every code size
    model = Autoencoder(code_size).to(device)
    if corrupt is None:
        history = fit(model, x_train, plain_loss, epochs=EPOCHS, lr=LR, batch_size=BATCH_SIZE,
                      generator=0, desc=name)
    else:
        history = fit(model, x_train, epochs=EPOCHS, batch_size=BATCH_SIZE,
                      optimizer=adam(model, LR), step_fn=denoising_step(corrupt), generator=0,
                      desc=name)
    models[name], histories[name] = model.eval(), history
print("training time: " + ", ".join(f"{n} {h.seconds:.0f} s" for n, h in histories.items()))

# %% [markdown]
# The training losses are not comparable between the models — the small code has less room, the
# denoisers are scored on a harder task, and the mixed one on a different task at every batch —
# but each curve should fall and flatten.
# %% demo
plot_curves({name: h.epoch_losses for name, h in histories.items()},
            ylabel="training loss (squared error per image)", logy=True,
            title="Training losses")

# %% [markdown]
# ## Part 3 · Who denoises best?
#
# For each noise type and level we corrupt the test digits once (seeded, so every model sees the
# same noisy images), run each model, and average the per-image PSNR of its output against the
# clean digits. `psnr_table` from `genlab.denoising` does the bookkeeping with *your* noise
# functions and *your* `psnr`; the baseline "noisy input" is the PSNR of the corrupted images
# themselves.
# %% demo
from genlab.denoising import NOISE_LEVELS, psnr_table

table = psnr_table(models, x_test, NOISE_LEVELS, noises=NOISE_FUNCTIONS, psnr_fn=psnr)

fig, axes = subplots(1, 3, figsize=(15, 4.2), sharey=True)
styles = {"noisy": dict(color="grey", ls="--", marker="o"), "AE": dict(marker="o"),
          "AE (code 10)": dict(marker="v"), "DAE (Gaussian)": dict(marker="s"),
          "DAE (mixed)": dict(marker="^")}
for ax, (kind, row) in zip(axes, table.items()):
    for name in ["noisy", *models]:
        label = "noisy input" if name == "noisy" else name
        ax.plot(row["level"], row[name], label=label, **styles[name])
    ax.set_xlabel(f"noise level {LEVEL_NAME[kind]}")
    ax.set_title(kind.replace("_", "-"))
    ax.grid(alpha=0.3)
axes[0].set_ylabel("mean PSNR on test digits (dB)")
axes[0].legend()
fig.suptitle("Restoration quality: higher is better")
show(fig)

columns = ["noisy", *models]
for kind, row in table.items():
    print(f"\n{kind + ' ' + LEVEL_NAME[kind]:<20}" + "".join(f"{n:>16}" for n in columns))
    for i, level in enumerate(row["level"]):
        print(f"{level:<20.2f}" + "".join(f"{row[n][i]:>13.1f} dB" for n in columns))

# %% [markdown]
# What to look for (the numbers quoted are from the default CPU run on the 4,000 bundled digits;
# yours may differ a little):
#
# * **At low noise nobody beats the input.** With $\sigma = 0.1$ the noisy digits are already
#   closer to the clean ones than anything the models rebuild: each model is limited by its own
#   reconstruction error, the left end of its curve (about 22 dB for the plain AE, 18 dB with a
#   10-number code). Denoising pays only where the noise costs more than the bottleneck does.
# * **The plain AE denoises a little, by accident.** 64 numbers cannot hold the noise of 784 pixels,
#   so part of it is lost on the way (about +6 dB at $\sigma = 0.5$). But nothing in its training
#   asked it to remove anything, and the noise comes out as blotches and stray dots.
# * **A tighter bottleneck is not a better denoiser.** The 10-number AE's outputs *look* clean —
#   its decoder can hardly draw anything but digits — yet they are often the *wrong* digit: the
#   noise misleads the encoder, and a confident wrong digit costs more PSNR than a noisy right one.
# * **A DAE learns to undo the noise it was trained on.** The Gaussian DAE gains almost 10 dB at
#   $\sigma = 0.5$ and transfers well to salt-and-pepper (both scatter bright specks over the
#   background). On masking noise it is *worse than doing nothing*: it has learnt to erase
#   isolated bright dots, and a stroke with half of its pixels missing is a trail of isolated dots.
# * **Training on a mixture buys robustness.** The mixed DAE stays within about half a dB of the
#   specialist on Gaussian and salt-and-pepper noise and is far ahead on masking; it gives up a
#   little on nearly clean inputs, where it expects more damage than there is.
#
# Pictures tell the same story. Rows: the noisy input, each model's output, the clean digit.
# %% demo
def restore(model, x):
    with torch.no_grad():
        return model(x.to(device)).cpu()


for kind, level in [("gaussian", 0.5), ("masking", 0.5), ("salt_and_pepper", 0.3)]:
    noisy = NOISE_FUNCTIONS[kind](examples, level, generator=torch.Generator().manual_seed(1))
    rows = {"noisy": noisy}
    rows.update({name: restore(model, noisy) for name, model in models.items()})
    rows["clean"] = examples
    show_rows(rows, title=f"{kind.replace('_', '-')} noise, {LEVEL_NAME[kind]} = {level}")

# %% [markdown]
# **Explorer.** Choose a noise type and level and compare the four models on the same digits.
# The number after each model's name is its mean PSNR on these eight digits.
# %% demo
def render_denoising(noise="gaussian", level=0.5, seed=0):
    noisy = NOISE_FUNCTIONS[noise](examples, level, generator=torch.Generator().manual_seed(seed))
    rows = {f"noisy ({psnr(noisy, examples).mean().item():.1f} dB)": noisy}
    for name, model in models.items():
        out = restore(model, noisy)
        rows[f"{name} ({psnr(out, examples).mean().item():.1f} dB)"] = out
    rows["clean"] = examples
    return show_rows(rows, title=f"{noise}, {LEVEL_NAME[noise]} = {level:.2f}", display=False)


explore(render_denoising,
        {"noise": ["gaussian", "masking", "salt_and_pepper"], "level": (0.0, 0.9, 0.05, 0.5),
         "seed": (0, 9, 1, 0)},
        title="Denoising explorer")

# %% [markdown]
# ## Part 4 · Outlier detection by reconstruction error
#
# An autoencoder trained on digits rebuilds digits well and everything else badly: its decoder can
# only produce images from the family it was trained on. So the reconstruction error is an
# **anomaly score**,
#
# $$s(x) = \big\| x - g(f(x)) \big\|^2 = \sum_{i=1}^{D} \big(x_i - \hat x_i\big)^2 ,$$
#
# and a threshold $t$ turns it into a detector: "outlier if $s(x) > t$". No labels are needed to
# train it — only examples of normal data — which is why the lecture files it under unsupervised
# learning (fraud detection, surveillance, a broken sensor).
#
# ## Exercise 6 · Anomaly scores (2 points)
#
# **Your task.** Write `anomaly_scores(model, x)`: the per-image **sum** of squared errors between
# `model(x)` and `x`, a tensor of shape `(N,)`. Scoring is not training, so
#
# * compute it without building a graph (`with torch.no_grad():`) — the result should not require
#   gradients;
# * run the model in evaluation mode (`model.eval()`: layers such as dropout behave differently
#   while training), and put it back in the mode it was in afterwards
#   (`was_training = model.training` … `model.train(was_training)`).
# %% solution anomaly_scores
def anomaly_scores(model, x):
    """Per-sample sum of squared reconstruction errors, shape (N,), without gradients."""
    ### BEGIN SOLUTION
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x_hat = model(x)
    finally:
        model.train(was_training)
    return (x_hat - x).pow(2).flatten(start_dim=1).sum(dim=1)
    ### END SOLUTION

# %% test test_anomaly_scores points=2
import torch
from torch import nn
from genlab.testing import CheckFailed, check_close, check_number, devices


def _small_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 784),
                         nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))


def _score_checks(model, x, what, expected=None, extra_mistakes=None):
    was_training = model.training
    scores = attempt(what, anomaly_scores, model, x)
    if expected is None:
        model.eval()
        with torch.no_grad():
            err = model(x) - x
        model.train(was_training)
        expected = err.pow(2).flatten(1).sum(1)
        mistakes = {
            "the mean squared error of each image instead of the sum": err.pow(2).flatten(1).mean(1),
            "absolute errors instead of squared errors": err.abs().flatten(1).sum(1),
            "the Euclidean distance (the square root of the sum of squares)": expected.sqrt(),
            "one score for the whole batch instead of one per image": expected.sum(),
            "one mean score for the whole batch instead of one per image": expected.mean(),
            "summing over the batch instead of over the pixels of each image": err.pow(2).sum(0),
        }
    else:
        mistakes = {}
    mistakes.update(extra_mistakes or {})
    check_close(scores, expected, what, mistakes=mistakes, atol=1e-4, rtol=1e-4)
    if scores.requires_grad:
        raise CheckFailed(f"{what}: the scores require gradients\n  Hint: compute them inside "
                          "`with torch.no_grad():` (scoring is not training)")
    check_number(int(model.training), int(was_training), f"{what}: model.training afterwards",
                 integer=True,
                 mistakes={"leaving the model in eval mode: remember model.training before "
                           "model.eval() and restore it with model.train(was_training)": 0,
                           "leaving the model in training mode": 1})


_x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
_score_checks(_small_model(0), _x, "anomaly_scores(model, x) for 6 images")
_score_checks(_small_model(1).train(), _x[:2], "anomaly_scores(model in training mode, x) for 2 images")
### BEGIN HIDDEN TESTS
_score_checks(_small_model(2).double().eval(), _x.double()[:5], "anomaly_scores(model in eval mode, float64 x)")
torch.manual_seed(3)
_dropout = nn.Sequential(nn.Dropout(0.5)).train()   # the identity in eval mode
_score_checks(_dropout, _x, "anomaly_scores(a dropout layer in training mode, x)",
              expected=torch.zeros(6),
              extra_mistakes={"scoring in training mode: dropout was active; call model.eval() "
                              "before computing the scores": lambda a: bool((a > 0).any())})
for _dev in devices():
    _score_checks(_small_model(4).to(_dev), _x.to(_dev), f"anomaly_scores on {_dev.type}")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 7 · ROC-AUC: how well do the scores separate the two groups? (3 + 1 points)
#
# A threshold $t$ on the score gives a detector. It flags a fraction of the true outliers (the
# **true positive rate**, TPR) and, unavoidably, a fraction of the normal images (the **false
# positive rate**, FPR). Sliding $t$ from $+\infty$ down to $-\infty$ traces the **ROC curve** from
# $(0, 0)$ to $(1, 1)$; a perfect detector goes straight up to $(0, 1)$, a coin flip follows the
# diagonal. The area under the curve, the **AUC**, summarises it in one number that needs no
# threshold. It has a direct meaning: with normal scores $s_1, \dots, s_n$ and anomalous scores
# $a_1, \dots, a_m$,
#
# $$\operatorname{AUC} = \frac{1}{n\,m} \sum_{i=1}^{n} \sum_{j=1}^{m}
#   \Big( \mathbb{1}[a_j > s_i] + \tfrac12\, \mathbb{1}[a_j = s_i] \Big),$$
#
# the probability that a randomly drawn outlier scores **higher** than a randomly drawn normal
# image, a tie counting as half a win. (It is the Mann–Whitney $U$ statistic divided by $nm$.)
# AUC 1 means every outlier outscores every normal image; 0.5 means the scores carry no
# information; below 0.5 the detector is upside down.
#
# Ties matter more than you might think: scores are often rounded, clipped, or computed in low
# precision, and a detector that gives *everything* the same score must get exactly 0.5, not 0 or 1.
#
# **Your task.** Write `roc_auc(scores_normal, scores_anomalous)` for two 1-D tensors (the normal
# scores first!) and return a Python `float`. Raise `ValueError` when either is empty. Comparing all
# pairs at once by broadcasting (`a[:, None]` against `s[None, :]`) is fine for the sizes in this
# lab; sorting gives an $O((n+m)\log(n+m))$ method if you want a challenge.
# %% solution roc_auc
def roc_auc(scores_normal, scores_anomalous):
    """P(anomalous score > normal score) + 0.5 * P(equal), over all pairs; a float."""
    ### BEGIN SOLUTION
    if scores_normal.numel() == 0 or scores_anomalous.numel() == 0:
        raise ValueError("roc_auc needs at least one normal and one anomalous score")
    s = scores_normal.detach().double().flatten()
    a = scores_anomalous.detach().double().flatten().to(s.device)
    wins = (a[:, None] > s[None, :]).double().mean()   # (m, n) comparisons of every pair
    ties = (a[:, None] == s[None, :]).double().mean()
    return (wins + 0.5 * ties).item()
    ### END SOLUTION

# %% test test_roc_auc points=3
import torch
from genlab.testing import CheckFailed, check_number, check_raises, devices


def _auc_check(normal, anomalous, what=None):
    s, a = normal.tolist(), anomalous.tolist()
    what = what or f"roc_auc(scores_normal, scores_anomalous) with {len(s)} normal and {len(a)} anomalous scores"
    got = attempt(what, roc_auc, normal, anomalous)
    if isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}: returned a tensor, not a Python float\n  Hint: this looks like "
                          "forgetting .item() at the end")
    wins = sum(1 for aj in a for si in s if aj > si)        # brute force over all pairs
    ties = sum(1 for aj in a for si in s if aj == si)
    pairs = len(s) * len(a)
    expected = (wins + 0.5 * ties) / pairs
    mistakes = {"ties counted as 0: a tie between an anomalous and a normal score counts one half":
                wins / pairs,
                "ties counted as 1: a tie between an anomalous and a normal score counts one half":
                (wins + ties) / pairs,
                "the arguments swapped (this gives 1 - AUC): the normal scores come first":
                1 - expected}
    if len(s) == len(a):
        mistakes["comparing each anomalous score only with the normal score at the same index "
                 "(zip): compare every anomalous score with every normal one"] = \
            sum((aj > si) + 0.5 * (aj == si) for aj, si in zip(a, s)) / len(a)
    check_number(got, expected, what, rel=0, abs_=1e-6, mistakes=mistakes)


_auc_check(torch.tensor([0.1, 0.4, 0.35]), torch.tensor([0.8, 0.5]))          # perfectly separated
_auc_check(torch.tensor([0.8, 0.5]), torch.tensor([0.1, 0.4, 0.35]))          # upside down
_auc_check(torch.full((4,), 2.0), torch.full((3,), 2.0))                      # all tied
_auc_check(torch.tensor([3.0, 2.0, 4.0]), torch.tensor([5.0, 1.0, 4.0]))      # one tie
_auc_check(torch.tensor([1.0, 3.0]), torch.tensor([3.0, 2.0]))
_auc_check(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 5.0, 0.0]))
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(0)
for _case in range(25):
    _n = int(torch.randint(1, 30, (1,), generator=_g))
    _m = _n if _case % 3 == 0 else int(torch.randint(1, 30, (1,), generator=_g))
    _s = torch.randint(0, 6, (_n,), generator=_g).float()     # small integers: many ties
    _a = torch.randint(2, 8, (_m,), generator=_g).float()
    _auc_check(_s, _a)
_auc_check(torch.randn(400, generator=_g), torch.randn(300, generator=_g) + 0.7)
_auc_check(torch.randn(50, generator=_g, dtype=torch.float64),
           torch.randn(80, generator=_g, dtype=torch.float64))
_auc_check(torch.tensor([5.0]), torch.tensor([5.0]))
for _dev in devices():
    _auc_check(torch.tensor([1.0, 2.0, 2.0]).to(_dev), torch.tensor([2.0, 3.0]).to(_dev),
               f"roc_auc on {_dev.type}")
### END HIDDEN TESTS

# %% test test_roc_auc_errors points=1
import torch
from genlab.testing import check_raises

check_raises(lambda: roc_auc(torch.tensor([]), torch.tensor([1.0, 2.0])), ValueError,
             "roc_auc with no normal scores", hint="raise ValueError when either tensor is empty")
### BEGIN HIDDEN TESTS
check_raises(lambda: roc_auc(torch.tensor([1.0, 2.0]), torch.tensor([])), ValueError,
             "roc_auc with no anomalous scores", hint="raise ValueError when either tensor is empty")
### END HIDDEN TESTS

# %% [markdown]
# ### Digits against things that are not digits
#
# `make_outliers` draws procedural images that are not digits: rectangles, rings, stripes,
# smooth blobs and pixel static. We score them and the test digits with each of our four models
# and ask how well the scores separate the two groups.
# %% demo
from genlab.denoising import OUTLIER_KINDS, make_outliers, roc_curve

n_outliers = budget(default=500, fast=50)
outliers, outlier_kinds = make_outliers(n_outliers, generator=torch.Generator().manual_seed(0))
show_images(outliers[:20], nrow=10, title="procedural non-digits: " + ", ".join(OUTLIER_KINDS))

scores = {name: (anomaly_scores(model, x_test.to(device)).cpu(),
                 anomaly_scores(model, outliers.to(device)).cpu())
          for name, model in models.items()}
aucs = {name: roc_auc(digits, others) for name, (digits, others) in scores.items()}
for name, value in aucs.items():
    print(f"ROC-AUC, digits vs non-digits, {name:>14}: {value:.3f}")

# %% demo
scores_digits, scores_outliers = scores["AE"]
fig, (ax_hist, ax_roc) = subplots(1, 2, figsize=(12, 4.3))
bins = np.logspace(np.log10(min(scores_digits.min(), scores_outliers.min()).item() + 1e-3),
                   np.log10(max(scores_digits.max(), scores_outliers.max()).item()), 40)
ax_hist.hist(scores_digits.numpy(), bins=bins, alpha=0.6, label="test digits")
ax_hist.hist(scores_outliers.numpy(), bins=bins, alpha=0.6, label="non-digits")
ax_hist.set_xscale("log")
ax_hist.set_xlabel("anomaly score (squared error per image)")
ax_hist.set_ylabel("count")
ax_hist.legend()
ax_hist.set_title("Reconstruction error of the plain AE")
for name, (digits, others) in scores.items():
    fpr, tpr = roc_curve(digits, others)
    ax_roc.plot(fpr.numpy(), tpr.numpy(), label=f"{name} (AUC = {aucs[name]:.3f})")
ax_roc.plot([0, 1], [0, 1], color="grey", ls="--", label="chance (AUC = 0.5)")
ax_roc.set_xlabel("false positive rate (digits flagged)")
ax_roc.set_ylabel("true positive rate (non-digits flagged)")
ax_roc.set_title("ROC curves")
ax_roc.legend(loc="lower right")
show(fig)

# %% [markdown]
# Not all non-digits are equally easy. Break the AUC down by kind, and look at the outliers the
# plain autoencoder rebuilds best — the ones a threshold would miss.
# %% demo
print(f"{'':>10}" + "".join(f"{name:>16}" for name in models))
for k, kind in enumerate(OUTLIER_KINDS):
    row = [roc_auc(digits, others[outlier_kinds == k]) for digits, others in scores.values()]
    print(f"{kind:>10}" + "".join(f"{value:>16.3f}" for value in row))
hardest = scores_outliers.argsort()[:8]
show_rows({"hardest non-digits": outliers[hardest],
           "AE reconstruction": restore(models["AE"], outliers[hardest])},
          title="The non-digits with the lowest anomaly scores (plain AE)")

# %% [markdown]
# All four models separate digits from non-digits well, with AUCs around 0.96–0.98. Static,
# stripes and blobs are trivial: no decoder trained on digits can draw them, so their errors are
# enormous. Rings are the hard case: the plain AE rebuilds them almost perfectly, because a round
# stroke of the right thickness is exactly what a decoder of zeros, sixes and eights can draw.
# Reconstruction error measures the distance from what the decoder can draw, not how strange an
# input looks to a person.
#
# The denoisers are slightly *worse* detectors. One reason is visible in Part 3: they rebuild clean
# digits less sharply (their curves start lower at the smallest noise level), so the normal
# scores are higher and overlap more with the outliers. A detector wants a model that is good at
# the normal data and bad at everything else; a denoiser is trained to be forgiving.
#
# ## Part 5 · Inpainting by optimizing the code
#
# Suppose the lower half of a digit is lost. The encoder was never shown half digits, so
# `model(x_masked)` is a guess from a strange input. The lecture's latent-model view suggests
# something better: the decoder $g$ is a *generator* of digit-like images, so look for the code
# whose image agrees with the pixels we still have,
#
# $$z^\star = \arg\min_{z}\; \big\| \big(g(z) - x\big) \odot m \big\|^2, \qquad
#   \text{inpainting} = g(z^\star),$$
#
# where the mask $m$ is 1 on known pixels and 0 on the hole, so the hole does not enter the loss
# at all. The decoder's weights stay fixed; only the numbers of the code $z$ move, by gradient
# descent. Starting from the encoder's guess $z_0 = f(x \odot m)$, genlab's `inpaint` runs Adam
# on $z$ — in essence:
#
# ```python
# z = model.encode(x * mask).detach().requires_grad_(True)
# optimizer = torch.optim.Adam([z], lr=lr)
# for _ in range(steps):
#     optimizer.zero_grad()
#     ((model.decode(z) - x) * mask).pow(2).sum().backward()
#     optimizer.step()
# filled = model.decode(z)
# ```
#
# This is how the GLO model of Bojanowski et al. restores images, and how many later methods
# invert a generator. We run the search with two decoders, the plain AE's (a 64-number code) and
# the small AE's (10 numbers), and compare with the one-shot answers `model(x * mask)` of the
# plain AE and of the mixed DAE, which was trained with masking noise. The `callback` records,
# every 10 steps, the error on the known pixels (what the search minimizes) and the error inside
# the hole (what we care about, and what the search never sees).
# %% demo
from genlab.denoising import inpaint

mask = torch.ones(1, 1, 28, 28)
mask[..., 14:, :] = 0                                   # the lower half is missing
targets = x_test[:budget(default=200, fast=20)]
masked = targets * mask
hole = (1 - mask).bool().expand_as(targets)
STEPS = budget(default=300, fast=10)


def hole_error(images):
    """Mean squared error inside the hole, where nothing was known."""
    return (images.cpu() - targets)[hole].pow(2).mean().item()


def known_error(images):
    """Mean squared error on the known pixels, the ones the search fits."""
    return (images.cpu() - targets)[~hole].pow(2).mean().item()


results = {"AE(masked)": restore(models["AE"], masked),
           "DAE mixed(masked)": restore(models["DAE (mixed)"], masked)}
curves = {}
for name in ["AE", "AE (code 10)"]:
    model, curve = models[name], {"step": [], "known pixels": [], "hole": []}

    def track(step, z, model=model, curve=curve):
        if step % 10 == 0:
            with torch.no_grad():
                images = model.decode(z)
            curve["step"].append(step)
            curve["known pixels"].append(known_error(images))
            curve["hole"].append(hole_error(images))

    results[f"search, {name}"] = inpaint(model, targets.to(device), mask.to(device), steps=STEPS,
                                         lr=0.05, callback=track).cpu()
    curves[name] = curve

rows = {"masked input": masked}
rows.update({f"{name}: {hole_error(images):.3f}": images for name, images in results.items()})
rows["original"] = targets
show_rows(rows, n=8, title=f"Inpainting the lower half (number: mean squared error in the hole, "
                           f"{len(targets)} test digits)")

fig, axes = subplots(1, 2, figsize=(12, 4))
for name, curve in curves.items():
    for ax, key in zip(axes, ["known pixels", "hole"]):
        ax.plot(curve["step"], curve[key], marker=".", label=f"search with the {name} decoder")
axes[1].axhline(hole_error(results["DAE mixed(masked)"]), color="grey", ls="--",
                label="DAE mixed, one shot")
for ax, title in zip(axes, ["the known pixels (what the search fits)",
                            "the hole (never seen by the search)"]):
    ax.set_xlabel("Adam steps on the code z")
    ax.set_ylabel("mean squared error")
    ax.set_title(f"error on {title}")
    ax.grid(alpha=0.3)
    ax.legend()
show(fig)

# %% [markdown]
# Compare the two searches. With the 64-number code the search fits the known half almost
# perfectly (left), yet the hole hardly improves after the first hundred steps and then slowly
# gets *worse* (right): that decoder can draw a top half with nothing or odd strokes below, so
# agreeing with the known pixels does not force a sensible bottom. This is overfitting, with the
# code as the parameters and the known pixels as the data. The 10-number decoder cannot draw such images.
# Whatever code the search finds, it draws a whole digit, so fitting the top half drags a
# plausible bottom half along: the error in the hole ends about half that of the plain AE's
# one-shot guess. The small code acts as a **prior** — it restricts the search to digit-like
# images. (The mixed DAE never saw half-masked digits, but its masking-noise training already
# makes its one-shot guess better than the plain AE's.)
#
# When the top half does not determine the digit — the tops of a 7 and a 9 look alike — the search
# picks one, and nothing in the loss prefers the right one. That ambiguity is real, and no
# inpainter can remove it; a probabilistic model (the VAE of the next lab) can at least describe
# it. Stronger priors on the code and adversarial losses, as in Pathak et al.'s context encoders,
# are the usual ways to get sharper, more plausible fills.
#
# ## The figures of this run
# %% demo
sigma_half = table["gaussian"]["level"].index(0.5)
masking_half = table["masking"]["level"].index(0.5)
print(f"{'':>30}{'noisy':>9}" + "".join(f"{name:>16}" for name in models))
for label, kind, i in [("Gaussian σ = 0.5, PSNR (dB)", "gaussian", sigma_half),
                       ("masking p = 0.5, PSNR (dB)", "masking", masking_half)]:
    print(f"{label:>30}{table[kind]['noisy'][i]:>9.1f}"
          + "".join(f"{table[kind][name][i]:>16.1f}" for name in models))
print(f"{'outlier ROC-AUC':>30}{'':>9}" + "".join(f"{aucs[name]:>16.3f}" for name in models))
print("\nmean squared error in the hole: "
      + ", ".join(f"{name} {hole_error(images):.3f}" for name, images in results.items()))

# %% [markdown]
# ## Summary
#
# * The three corruptions of Vincent et al. are simple random maps: Gaussian noise adds
#   $\sigma\,\varepsilon$ and clamps; masking zeroes each pixel with probability $p$; salt-and-pepper
#   sets it to 0 or 1 with probability $p$. A seeded `torch.Generator`, drawn on its own device,
#   makes them reproducible — and testable by their statistics.
# * PSNR $= 10\log_{10}(\text{MAX}^2/\text{MSE})$ per image: a log scale where 10 dB is a factor 10
#   in squared error, and identical images score $+\infty$.
# * A denoising autoencoder is an ordinary autoencoder trained on
#   $\|g(f(\tilde x)) - x\|^2$: damaged input, clean target. It beats the plain autoencoder by
#   several dB on the noise it was trained on, and mostly only there: train on a mixture to be
#   robust to all of them. A narrower bottleneck is no substitute — it yields clean-looking but
#   often wrong digits.
# * Reconstruction error is an anomaly score; the ROC-AUC is the probability that an outlier
#   outscores a normal example, with ties worth one half. It measures how far inputs are from what
#   the decoder can draw — rings that look like zeros slip through.
# * A decoder is a generator: searching its code space under a masked loss fills holes. A small
#   code acts as a prior that keeps the fill digit-like; a large one overfits the known pixels.
#
# ## Questions to think about
#
# 1. Why does every model lose to the noisy input at $\sigma = 0.1$? What would you change to win
#    there, and what would that cost at $\sigma = 0.7$?
# 2. The Gaussian DAE only ever saw $\sigma = 0.5$. How would you train one denoiser that is good
#    at every $\sigma$, and how could you give it the noise level as an extra input?
# 3. The 10-number AE turns noisy digits into clean but wrong ones. Would a 10-number *denoising*
#    AE do the same? Train one (change `RUNS`) and look.
# 4. An AUC of 0.5 can come from a useless detector, or from one that is perfect on half of the
#    outliers and exactly backwards on the other half. Sketch both ROC curves.
# 5. Your `roc_auc` counts a tie as half a win. What would a constant score get if ties counted as
#    wins, and why is that a bad property for an evaluation metric?
# 6. In Part 5 the search with the 64-number code overfits the known pixels. Name two remedies
#    that keep the 64-number code, and try one (for example a penalty $\lambda\|z - z_0\|^2$, or
#    fewer steps).
# 7. A rotated digit or a digit drawn twice as thick: would the plain AE flag it as an outlier?
#    Should it?
#
# ## Further reading
#
# * P. Vincent, H. Larochelle, Y. Bengio, P.-A. Manzagol, *Extracting and Composing Robust Features
#   with Denoising Autoencoders*, ICML 2008 — the original denoising criterion, with masking noise.
# * P. Vincent, H. Larochelle, I. Lajoie, Y. Bengio, P.-A. Manzagol, *Stacked Denoising
#   Autoencoders: Learning Useful Representations in a Deep Network with a Local Denoising
#   Criterion*, JMLR 11 (2010) — the three noise types, the manifold picture, stacked pre-training.
# * G. Alain and Y. Bengio, *What Regularized Auto-Encoders Learn from the Data-Generating
#   Distribution*, JMLR 15 (2014) — the reconstruction of a DAE estimates the score
#   $\nabla_x \log p(x)$, the seed of today's diffusion models.
# * D. Pathak, P. Krähenbühl, J. Donahue, T. Darrell, A. Efros, *Context Encoders: Feature Learning
#   by Inpainting*, CVPR 2016 — an encoder-decoder trained to fill large holes, with an adversarial
#   loss for sharp results.
# * P. Bojanowski, A. Joulin, D. Lopez-Paz, A. Szlam, *Optimizing the Latent Space of Generative
#   Networks*, ICML 2018 — GLO: a generator trained by optimizing one code per image; restoration
#   by searching the code space, as in Part 5.
# * T. Fawcett, *An introduction to ROC analysis*, Pattern Recognition Letters 27 (2006) — ROC
#   curves, the AUC as a probability over pairs, and how to handle ties.
