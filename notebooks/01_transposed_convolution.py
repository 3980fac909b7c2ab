# %%
# On Google Colab only: install genlab, the course's helper library, from the course repository.
# (Colab has PyTorch and the other packages already; --no-deps keeps its versions.)
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "genlab @ git+https://github.com/genlab-course/genlab"], check=True)

# %% [markdown]
# # Lab 1 · Transposed convolution: how a network learns to upsample
#
# Every generative model in this course ends in a **decoder**: a network that takes a short vector
# of numbers and paints a whole image from it. Ordinary strided convolutions go the other way —
# they make feature maps *smaller*, which is exactly what an encoder or a classifier wants. A
# decoder needs a layer that keeps the good habits of a convolution (it looks at small
# neighbourhoods and reuses the same weights everywhere) but makes the image *larger*. That layer
# is the **transposed convolution**, `torch.nn.ConvTranspose2d`. It upsamples in the autoencoders of
# labs 2–3, the VAE decoders of labs 4 and 6, and the DCGAN generator of lab 7.
#
# In this lab you take it apart and build it again from nothing but additions and
# multiplications.
#
# **Learning goals.** After this lab you can
#
# 1. compute a small transposed convolution by hand and explain it as a *sum of scaled copies of
#    the kernel*, one copy per input pixel;
# 2. predict the output size from `stride`, `padding`, `output_padding` and `dilation`, and say
#    what each of them does to those copies;
# 3. implement `conv_transpose2d` yourself (batches, channels, bias, all four arguments) and match
#    PyTorch to the last digit;
# 4. write an ordinary convolution as a matrix $C$, and show that the transposed convolution is
#    multiplication by $C^\top$ — the origin of the name, and the reason it is also the *gradient*
#    of a convolution;
# 5. connect this to the "insert zeros, then convolve" picture, and explain where the
#    checkerboard artifacts of image generators come from and how to avoid them.
#
# **Lecture ideas practised.** The lecture introduces the transposed convolution as the operation
# that *expands* the spatial dimensions, works the $2\times 2$ example in which every input value
# scales the kernel and the scaled kernels add up to a $3\times 3$ output, and then uses it as the
# trainable upsampling layer of the decoders and generators that follow (autoencoders, VAEs,
# GANs). Part 1 redoes that example; the exercises turn it into code; the later parts explain the
# name and the layer's best-known failure.
#
# **How this lab works.** Each exercise has a cell where you write a function, followed by a
# locked test cell. The visible tests in it are there for you to run while you work; when the lab
# is graded, hidden tests check many more cases. A failing test tells you *what* it checked and,
# when your result matches a typical mistake, *which* mistake it looks like. Please do not call
# PyTorch's convolution routines (`F.conv2d`, `F.conv_transpose2d`, `nn.ConvTranspose2d`, …)
# inside the graded functions — the tests notice. Everything else is fair game, `torch.einsum` in
# particular. In the ungraded cells we use PyTorch's own routines freely, to check your work.
#
# | Exercise | Function | Points |
# |---|---|---|
# | 1 | `conv_transpose_output_size` | 2 |
# | 2 | `conv_transpose2d` | 4 + 1 (input checks) |
# | 3 | `conv2d_matrix` | 3 |
#
# There is no training in this lab: the whole notebook runs in a few seconds on a CPU.
# %% [markdown]
# ## Set-up
#
# The first cell is locked because the tests rely on it. It also gives you `as_pair`, a tiny
# helper that turns an argument such as `stride=2` or `stride=(2, 1)` into a pair `(2, 2)` or
# `(2, 1)` — PyTorch accepts both forms and so will your functions.
# %% readonly setup
import math
import random

import torch
import torch.nn.functional as F

from genlab import seed_everything

seed_everything(0)
torch.set_printoptions(precision=3, sci_mode=False)


def as_pair(value):
    """(value, value) for an int; the two entries as ints for a pair (h, w)."""
    if isinstance(value, (tuple, list)):
        h, w = value
        return int(h), int(w)
    return int(value), int(value)

# %% [markdown]
# Plotting tools for the ungraded parts: `show(fig)` displays a figure once and closes it, and
# `draw_matrix` draws a small matrix with its numbers written in.
# %% demo
import matplotlib.pyplot as plt
import numpy as np

from genlab.plotting import show, subplots
from genlab.widgets import explore


def draw_matrix(ax, values, title=None, cmap="Blues", fmt="{:g}", fontsize=11, vmax=None):
    """Draw a small matrix as coloured squares with each entry written on it."""
    values = np.asarray(values, dtype=float)
    vmax = max(1.0, values.max()) * 1.3 if vmax is None else vmax
    ax.imshow(values, cmap=cmap, vmin=min(0.0, values.min()), vmax=vmax)
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)

# %% [markdown]
# ## Part 1 · Scatter, don't gather
#
# An ordinary convolution **gathers**: to compute one output pixel it lays the kernel over a
# window of the input, multiplies entry by entry and adds. A transposed convolution **scatters**:
# every *input* pixel pastes a copy of the kernel into the output, multiplied by the pixel's own
# value. Copies that overlap are added together.
#
# Take the lecture's example, an input $X$ and a kernel $K$, both $2\times 2$, with stride 1:
#
# $$X = \begin{pmatrix}0 & 1\\ 2 & 3\end{pmatrix}, \qquad
#   K = \begin{pmatrix}0 & 1\\ 2 & 3\end{pmatrix}.$$
#
# Input pixel $x_{hw}$ pastes $x_{hw}\,K$ with its top-left corner at position $(h, w)$ of a
# $3\times 3$ output. Written out on the full output grid, the four copies are
#
# $$Y = 0\cdot\begin{pmatrix}0&1&0\\2&3&0\\0&0&0\end{pmatrix}
#     + 1\cdot\begin{pmatrix}0&0&1\\0&2&3\\0&0&0\end{pmatrix}
#     + 2\cdot\begin{pmatrix}0&0&0\\0&1&0\\2&3&0\end{pmatrix}
#     + 3\cdot\begin{pmatrix}0&0&0\\0&0&1\\0&2&3\end{pmatrix}
#     = \begin{pmatrix}0&0&1\\0&4&6\\4&12&9\end{pmatrix}.$$
#
# The centre entry is the only one that all four copies reach: $0\cdot 3 + 1\cdot 2 + 2\cdot 1 +
# 3\cdot 0 = 4$. The corners are reached by one copy each. And notice the sizes: a $2\times 2$
# input became a $3\times 3$ output. The layer grew the image by $k-1$ pixels in each direction —
# with a larger stride it grows much more, as you will see.
# %% demo
X = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])

stamps, labels = [], []
for h in range(2):
    for w in range(2):
        canvas = torch.zeros(3, 3)
        canvas[h:h + 2, w:w + 2] = X[h, w] * K   # paste the scaled kernel with its corner at (h, w)
        stamps.append(canvas)
        labels.append(f"$x_{{{h}{w}}}\\,K$ = {X[h, w]:g}$\\,K$")
Y = sum(stamps)

fig, axes = subplots(1, 5, figsize=(13, 2.9))
for ax, stamp, label in zip(axes, stamps, labels):
    draw_matrix(ax, stamp, label)
draw_matrix(axes[4], Y, "the sum $Y$", cmap="Oranges")
fig.suptitle("Each input pixel pastes a scaled copy of the kernel; where copies overlap they add up")
show(fig)

# %% [markdown]
# ## Exercise 1 · How big is the output? (2 points)
#
# Rows and columns are handled independently, so think in one dimension: an input of length $n$,
# a kernel of length $k$. Follow the copies.
#
# * **Stride $s$** is the distance between the starting points of neighbouring copies: input
#   pixel $h$ starts its copy at position $s\,h$. The first copy starts at 0 and the last at
#   $(n-1)\,s$ — there are $n$ starting points but only $n-1$ gaps between them.
# * **Dilation $d$** spreads the taps *inside* one copy: tap $i$ of the copy lands $d\,i$ positions
#   after its start. One copy therefore spans $d\,(k-1) + 1$ positions.
#
# Together, input pixel $h$ and kernel tap $i$ meet at output position
#
# $$t = s\,h + d\,i, \qquad 0 \le h < n,\quad 0 \le i < k,$$
#
# and the positions reached run from $0$ to $(n-1)\,s + d\,(k-1)$. That is the **full** output,
# $(n-1)\,s + d\,(k-1) + 1$ positions long. Two more arguments change it:
#
# * **Padding $p$** works backwards compared with `conv2d`: instead of adding zeros around the
#   input, it **crops** $p$ positions from *each* end of the full output. The convention is chosen
#   so that `conv2d` and `conv_transpose2d` with the same `kernel_size, stride, padding` have
#   mirror-image shapes: what one shrinks, the other grows back.
# * **Output padding $a$** keeps $a$ extra positions at the **end** (bottom/right). Why would anyone
#   want that? Because a strided convolution rounds down: with $k=3, s=2, p=1$ both an input of
#   length 7 and one of length 8 give an output of length 4. Going back from 4, the transposed
#   convolution cannot know which one you meant; `output_padding=1` says "the longer one". PyTorch
#   only accepts $a < \max(s, d)$.
#
# Putting the pieces together gives PyTorch's formula:
#
# $$n_{\text{out}} = \underbrace{(n-1)\,s}_{\text{between first and last copy}}
#    \; - \; \underbrace{2p}_{\text{cropped}}
#    \; + \; \underbrace{d\,(k-1) + 1}_{\text{one copy}}
#    \; + \; \underbrace{a}_{\text{kept at the end}}.$$
#
# Check it on Part 1: $n=2, k=2, s=1$ gives $1 + 1 + 1 = 3$. ✓
#
# **Your task.** Write `conv_transpose_output_size(size, kernel_size, stride=1, padding=0,
# output_padding=0, dilation=1)` for one axis. All arguments are Python ints. Return an `int`.
# Raise a `ValueError` with a helpful message when `output_padding >= max(stride, dilation)` or
# when the result would not be positive (padding can crop everything away).
# %% solution conv_transpose_output_size
def conv_transpose_output_size(size, kernel_size, stride=1, padding=0, output_padding=0,
                               dilation=1):
    """Length of one spatial axis after a transposed convolution.

    Raises ValueError when output_padding >= max(stride, dilation), or when the result would
    not be positive.
    """
    ### BEGIN SOLUTION
    if output_padding >= max(stride, dilation):
        raise ValueError(f"output_padding={output_padding} must be smaller than "
                         f"max(stride, dilation) = {max(stride, dilation)}")
    between_copies = (size - 1) * stride          # first copy starts at 0, last at (size-1)*stride
    one_copy = dilation * (kernel_size - 1) + 1   # positions covered by one dilated kernel copy
    out = between_copies + one_copy - 2 * padding + output_padding
    if out <= 0:
        raise ValueError(f"padding={padding} crops the whole output (its size would be {out})")
    return out
    ### END SOLUTION

# %% test test_conv_transpose_output_size points=2
from genlab.testing import CheckFailed, check_number, check_raises


def _size_call(*args, **kwargs):
    """Call the student's function; turn an unexpected error into a readable failure."""
    call = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    what = f"conv_transpose_output_size({call})"
    try:
        return what, conv_transpose_output_size(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(f"{what}: not implemented yet (replace `raise NotImplementedError()` "
                          "with your code)") from None
    except Exception as err:
        hint = ("this is a valid configuration; PyTorch accepts any output_padding smaller than "
                "max(stride, dilation), so stride 1 with dilation 2 allows output_padding 1"
                if kwargs.get("output_padding", 0) else "this is a valid configuration")
        raise CheckFailed(f"{what}: raised {type(err).__name__}: {err}\n  Hint: {hint}") from None


def _size_check(size, kernel_size, stride=1, padding=0, output_padding=0, dilation=1):
    n, k, s, p, a, d = size, kernel_size, stride, padding, output_padding, dilation
    what, got = _size_call(n, k, stride=s, padding=p, output_padding=a, dilation=d)
    mistakes = {
        "forgetting dilation: one kernel copy spans dilation*(kernel_size-1)+1 positions":
            (n - 1) * s - 2 * p + (k - 1) + a + 1,
        "subtracting padding once: padding crops from both ends, so subtract 2*padding":
            (n - 1) * s - p + d * (k - 1) + a + 1,
        "ignoring output_padding: it keeps that many extra positions at the end":
            (n - 1) * s - 2 * p + d * (k - 1) + 1,
        "forgetting the +1: a copy of k taps covers (k-1)*dilation + 1 positions, not (k-1)*dilation":
            (n - 1) * s - 2 * p + d * (k - 1) + a,
        "size*stride instead of (size-1)*stride: n copies have only n-1 gaps between their starts":
            n * s - 2 * p + d * (k - 1) + a + 1,
        "the ordinary convolution's formula, which shrinks; the transposed one runs it backwards":
            (n + 2 * p - d * (k - 1) - 1) // s + 1,
    }
    expected = (n - 1) * s - 2 * p + d * (k - 1) + a + 1
    check_number(got, expected, what, integer=True, mistakes=mistakes)


_size_check(2, 2)                                          # the lecture's example
_size_check(3, 3, stride=2)
_size_check(4, 3, stride=2, padding=1)
_size_check(5, 3, stride=2, padding=1, output_padding=1)
_size_check(4, 3, dilation=2)
check_raises(lambda: conv_transpose_output_size(4, 3, stride=2, output_padding=2), ValueError,
             "conv_transpose_output_size(4, 3, stride=2, output_padding=2)",
             hint="output_padding must be smaller than max(stride, dilation); raise ValueError")
### BEGIN HIDDEN TESTS
_size_check(1, 1)
_size_check(7, 4, stride=2, padding=1)                     # DCGAN's doubling layer
_size_check(1, 5, stride=3, padding=2)
_size_check(3, 3, stride=1, output_padding=1, dilation=2)  # output_padding allowed by dilation
_rng = random.Random(2024)
for _ in range(300):
    _n, _k = _rng.randint(1, 9), _rng.randint(1, 6)
    _s, _d, _p = _rng.randint(1, 4), _rng.randint(1, 3), _rng.randint(0, 3)
    _a = _rng.randint(0, max(_s, _d) - 1)
    if (_n - 1) * _s - 2 * _p + _d * (_k - 1) + _a + 1 > 0:
        _size_check(_n, _k, stride=_s, padding=_p, output_padding=_a, dilation=_d)
# The formula agrees with the shapes PyTorch actually produces.
for _args in [(5, 4, 2, 1, 0, 1), (6, 3, 3, 2, 2, 1), (2, 3, 1, 1, 1, 2)]:
    _n, _k, _s, _p, _a, _d = _args
    _shape = F.conv_transpose2d(torch.zeros(1, 1, _n, 1), torch.zeros(1, 1, _k, 1),
                                stride=(_s, 1), padding=(_p, 0), output_padding=(_a, 0),
                                dilation=(_d, 1)).shape
    _what, _got = _size_call(_n, _k, stride=_s, padding=_p, output_padding=_a, dilation=_d)
    check_number(_got, _shape[2], _what, integer=True)
for _args, _hint in [
    ((1, 1, 1, 1), "padding 1 crops the single output position: raise ValueError"),
    ((2, 1, 1, 1), "a size of 0 is not positive either: raise ValueError when the result is <= 0"),
    ((3, 2, 1, 2), "padding crops more than the whole output: raise ValueError"),
    ((4, 3, 1, 0, 1), "output_padding must be smaller than max(stride, dilation) = 1"),
    ((4, 3, 3, 0, 3, 2), "output_padding must be smaller than max(stride, dilation) = 3"),
    ((4, 3, 1, 0, 2, 2), "output_padding must be smaller than max(stride, dilation) = 2"),
]:
    check_raises(lambda: conv_transpose_output_size(*_args), ValueError,
                 f"conv_transpose_output_size{_args}", hint=_hint)
### END HIDDEN TESTS

# %% [markdown]
# A quick look at what your formula predicts. The first line is the workhorse of DCGAN-style
# generators (lab 7): kernel 4, stride 2, padding 1 **doubles** any size. The second shows the
# other common way to double, with a 3-tap kernel and `output_padding=1`.
# %%
for n in [1, 2, 4, 7, 14]:
    doubled_a = conv_transpose_output_size(n, 4, stride=2, padding=1)
    doubled_b = conv_transpose_output_size(n, 3, stride=2, padding=1, output_padding=1)
    torch_size = F.conv_transpose2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, 4, 4),
                                    stride=2, padding=1).shape[-1]
    print(f"n = {n:2d}:  k=4,s=2,p=1 -> {doubled_a:2d} (PyTorch: {torch_size:2d});   "
          f"k=3,s=2,p=1,output_padding=1 -> {doubled_b:2d}")

# %% [markdown]
# ## Exercise 2 · The transposed convolution itself (4 + 1 points)
#
# Now with everything a real layer has. The input is a batch $x$ of shape
# $(N, C_{\text{in}}, H, W)$, the weight $K$ has shape $(C_{\text{in}}, C_{\text{out}}, k_h, k_w)$
# and the bias $b$ has shape $(C_{\text{out}},)$. Each input pixel now carries $C_{\text{in}}$
# numbers, and each kernel tap $K_{:,:,i,j}$ is a $C_{\text{in}}\times C_{\text{out}}$ matrix that
# turns them into $C_{\text{out}}$ numbers. Notice the order of the weight's axes: **input channels
# first** — the reverse of `conv2d`, whose weight is $(C_{\text{out}}, C_{\text{in}}, k_h, k_w)$.
# (This is one more trace of the "transpose" in the name; Part 2 explains it.)
#
# Let $\tilde Y$ be the *full* output of size $H_{\text{full}} \times W_{\text{full}}$ with
# $H_{\text{full}} = (H-1)\,s_h + d_h\,(k_h-1) + 1$ (same for $W$). The scatter rule of Part 1, with
# channels, is: for every input position $(h, w)$ and every tap $(i, j)$,
#
# $$\tilde Y_{n,\,o,\; s_h h + d_h i,\; s_w w + d_w j} \;\mathrel{+}=\;
#   \sum_{c=1}^{C_{\text{in}}} x_{n,c,h,w}\, K_{c,o,i,j}.$$
#
# Then crop the padding and add the bias: for $0 \le r < H_{\text{out}}$, $0 \le q < W_{\text{out}}$,
#
# $$y_{n,o,r,q} = \tilde Y_{n,\,o,\; r + p_h,\; q + p_w} + b_o ,$$
#
# where positions beyond the bottom/right edge of $\tilde Y$ (they exist only when
# `output_padding` > 0) count as zeros. Careful: when `padding` > 0 those extra rows are *not* all
# zeros — output padding gives back part of what the padding cropped.
#
# **Two ways to loop.** You can loop over the $H\cdot W$ input positions and add one
# $k_h\times k_w$ block each time: a direct translation of the pictures of Part 1. Or you can swap
# the roles and loop over the $k_h\cdot k_w$ **kernel taps**. For one fixed tap $(i, j)$, all the
# input pixels land on a regular grid of output rows
#
# $$d_h i,\;\; d_h i + s_h,\;\; d_h i + 2s_h,\;\; \dots,\;\; d_h i + (H-1)\,s_h ,$$
#
# which is exactly a Python slice `d_h*i : d_h*i + (H-1)*s_h + 1 : s_h` (and likewise for the
# columns). One `torch.einsum("nchw,co->nohw", x, weight[:, :, i, j])` mixes the channels of all
# pixels at once. Kernels are small and images are large, so the second way runs far fewer Python
# iterations.
#
# **A recipe** (the tap version):
#
# 1. read the shapes, turn `stride, padding, output_padding, dilation` into pairs with `as_pair`;
# 2. allocate a zero buffer of shape $(N, C_{\text{out}}, H_{\text{full}} + a_h, W_{\text{full}} + a_w)$
#    with `x.new_zeros(...)`, which gives it `x`'s dtype and device — the $a$ spare rows and
#    columns at the bottom/right are where output padding will come from;
# 3. for each tap, add the channel-mixed input into the strided slice of the buffer;
# 4. crop: keep rows `p_h : p_h + H_out` and columns `p_w : p_w + W_out`;
# 5. add the bias, reshaped to $(1, C_{\text{out}}, 1, 1)$ so that it broadcasts.
#
# **Rules.** Same result as `F.conv_transpose2d(x, weight, bias, stride, padding, output_padding,
# groups=1, dilation)` for int or `(h, w)` arguments; no convolution routine inside; the result on
# `x`'s device. Raise a `ValueError` when `x` or `weight` is not 4-dimensional, or when the number
# of channels of `x` differs from `weight.shape[0]` (a separate test cell checks this, 1 point).
# %% solution conv_transpose2d
def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Transposed convolution of x (N, C_in, H, W) with weight (C_in, C_out, kH, kW).

    Same result as torch.nn.functional.conv_transpose2d (groups=1), built as a scatter-add.
    """
    ### BEGIN SOLUTION
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C_in, H, W), got shape {tuple(x.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"weight must be (C_in, C_out, kH, kW), got shape {tuple(weight.shape)}")
    n, c_in, h, w = x.shape
    if weight.shape[0] != c_in:
        raise ValueError(f"x has {c_in} channels but weight.shape[0] = {weight.shape[0]}")
    c_out, k_h, k_w = weight.shape[1:]
    (s_h, s_w), (p_h, p_w) = as_pair(stride), as_pair(padding)
    (a_h, a_w), (d_h, d_w) = as_pair(output_padding), as_pair(dilation)

    full_h = (h - 1) * s_h + d_h * (k_h - 1) + 1
    full_w = (w - 1) * s_w + d_w * (k_w - 1) + 1
    out_h, out_w = full_h - 2 * p_h + a_h, full_w - 2 * p_w + a_w
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"the padding crops the whole output (size {out_h} x {out_w})")

    buffer = x.new_zeros(n, c_out, full_h + a_h, full_w + a_w)
    for i in range(k_h):
        rows = slice(d_h * i, d_h * i + (h - 1) * s_h + 1, s_h)
        for j in range(k_w):
            cols = slice(d_w * j, d_w * j + (w - 1) * s_w + 1, s_w)
            # tap (i, j) sends every input pixel to its own output position, mixing channels
            buffer[:, :, rows, cols] += torch.einsum("nchw,co->nohw", x, weight[:, :, i, j])

    out = buffer[:, :, p_h:p_h + out_h, p_w:p_w + out_w]
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out
    ### END SOLUTION

# %% test test_conv_transpose2d points=4
import random
import torch
import torch.nn.functional as F
from genlab.testing import CheckFailed, check_close, check_tensor, devices, forbid_calls


def _ct_pair(v):
    return tuple(int(u) for u in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _ct_mistakes(x, weight, bias, stride=1, padding=0, output_padding=0, dilation=1):
    """What typical mistakes would return for these arguments (computed with PyTorch)."""
    s, p, a, d = map(_ct_pair, (stride, padding, output_padding, dilation))

    def torch_ct(x_=x, w_=weight, b_=bias, **changes):
        kwargs = dict(stride=s, padding=p, output_padding=a, dilation=d)
        kwargs.update(changes)
        return F.conv_transpose2d(x_, w_, b_, **kwargs)

    def plus_bias(y):
        return y if bias is None else y + bias.view(1, -1, 1, 1)

    no_output_padding = lambda: torch_ct(b_=None, output_padding=0)
    recipes = {
        "the kernel flipped: a transposed convolution pastes each copy of the kernel as it is; "
        "the flipped kernel belongs to the other picture (a convolution of a zero-inserted input)":
            lambda: torch_ct(w_=weight.flip(-1, -2)),
        "the channel axes of weight swapped: for a transposed convolution weight is "
        "(C_in, C_out, kH, kW), the reverse of conv2d's (C_out, C_in, kH, kW)":
            lambda: torch_ct(w_=weight.transpose(0, 1)),
        "bias missing: add bias[o] to every pixel of output channel o":
            lambda: torch_ct(b_=None) if bias is not None else None,
        "padding applied to the input as in conv2d: in a transposed convolution padding crops "
        "that many rows/columns from each border of the full output":
            lambda: torch_ct(x_=F.pad(x, (p[1], p[1], p[0], p[0])), padding=0),
        "padding ignored: crop `padding` rows/columns from each border of the full output":
            lambda: torch_ct(padding=0),
        "output_padding filled with zeros: the extra bottom/right rows and columns keep the "
        "values of the full output there (part of what padding would otherwise crop)":
            lambda: plus_bias(F.pad(no_output_padding(), (0, a[1], 0, a[0]))),
        "output_padding added on the wrong side: the extra rows/columns go at the bottom/right, "
        "not at the top/left":
            lambda: plus_bias(F.pad(no_output_padding(), (a[1], 0, a[0], 0))),
        "stride and dilation swapped: stride spaces the kernel copies (one copy per input "
        "pixel), dilation spaces the taps inside one copy":
            lambda: torch_ct(stride=d, dilation=s),
        "stride ignored: input pixel (h, w) starts its kernel copy at (h*stride, w*stride)":
            lambda: torch_ct(stride=1),
        "dilation ignored: tap (i, j) of a copy lands at offset (i*dilation, j*dilation)":
            lambda: torch_ct(dilation=1),
    }
    found = {}
    with torch.no_grad():
        for text, recipe in recipes.items():
            try:
                result = recipe()
            except Exception:  # this mistake is impossible for these arguments
                continue
            if result is not None:
                found[text] = result
    return found


def _ct_check(x, weight, bias=None, expected=None, **kwargs):
    """Compare the student's conv_transpose2d with PyTorch's, naming a matching mistake."""
    args = ", ".join([f"x {tuple(x.shape)}", f"weight {tuple(weight.shape)}",
                      "bias" if bias is not None else "bias=None"]
                     + [f"{k}={v!r}" for k, v in kwargs.items()])
    what = f"conv_transpose2d({args}, {str(x.dtype).replace('torch.', '')})"
    if expected is None:
        with torch.no_grad():
            expected = F.conv_transpose2d(x, weight, bias, **kwargs)
    try:
        with forbid_calls(what=what):
            out = conv_transpose2d(x, weight, bias, **kwargs)
    except CheckFailed:
        raise
    except NotImplementedError:
        raise CheckFailed(f"{what}: not implemented yet (replace `raise NotImplementedError()` "
                          "with your code)") from None
    except Exception as err:
        raise CheckFailed(f"{what}: raised {type(err).__name__}: {err}\n  Hint: x is "
                          "(N, C_in, H, W) and weight is (C_in, C_out, kH, kW); stride, padding, "
                          "output_padding and dilation may be ints or pairs (h, w)") from None
    tol = {} if x.dtype == torch.float64 else dict(atol=1e-4, rtol=1e-4)
    try:
        check_close(out, expected, what, **tol)
    except CheckFailed:  # wrong: check again, now looking for a mistake that explains it
        check_close(out, expected, what, mistakes=_ct_mistakes(x, weight, bias, **kwargs), **tol)
    return out


# The lecture's example: a 2x2 input and a 2x2 kernel, stride 1.
_ct_check(torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]]), torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]]),
          expected=torch.tensor([[[[0.0, 0.0, 1.0], [0.0, 4.0, 6.0], [4.0, 12.0, 9.0]]]]))
_g = torch.Generator().manual_seed(0)
# A batch with channels, stride 2 and a bias.
_ct_check(torch.randn(2, 3, 4, 4, generator=_g), torch.randn(3, 3, 3, 3, generator=_g),
          torch.randn(3, generator=_g), stride=2)
# Padding and output_padding; C_in != C_out.
_ct_check(torch.randn(1, 2, 5, 5, generator=_g), torch.randn(2, 4, 3, 3, generator=_g),
          torch.randn(4, generator=_g), stride=2, padding=1, output_padding=1)
# Dilation.
_ct_check(torch.randn(2, 2, 3, 4, generator=_g), torch.randn(2, 3, 3, 2, generator=_g),
          dilation=2, padding=1)
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(1)
# Pairs (h, w) for every argument, rectangular everything.
_ct_check(torch.randn(2, 3, 4, 6, generator=_g), torch.randn(3, 2, 3, 2, generator=_g),
          torch.randn(2, generator=_g), stride=(2, 3), padding=(1, 0), output_padding=(1, 2),
          dilation=(1, 2))
_ct_check(torch.randn(1, 2, 3, 3, generator=_g), torch.randn(2, 2, 4, 4, generator=_g),
          stride=2, padding=1)                                        # DCGAN's doubling layer
# Edge cases: a 1x1 input, a 1x1 kernel, stride larger than the kernel.
_ct_check(torch.randn(3, 2, 1, 1, generator=_g), torch.randn(2, 4, 3, 2, generator=_g),
          torch.randn(4, generator=_g), stride=2)
_ct_check(torch.randn(2, 3, 4, 5, generator=_g), torch.randn(3, 2, 1, 1, generator=_g),
          stride=3, output_padding=2)
_ct_check(torch.randn(1, 1, 3, 3, generator=_g), torch.randn(1, 1, 2, 2, generator=_g),
          stride=(3, 1), padding=(0, 1))
# float64 in, float64 out, exact.
_x64 = torch.randn(2, 2, 3, 3, generator=_g, dtype=torch.float64)
_w64 = torch.randn(2, 3, 3, 3, generator=_g, dtype=torch.float64)
_out64 = _ct_check(_x64, _w64, torch.randn(3, generator=_g, dtype=torch.float64),
                   stride=2, padding=1, output_padding=1)
check_tensor(_out64, "conv_transpose2d on float64 input", dtype=torch.float64)
# Many random configurations.
_rng = random.Random(7)
for _case in range(40):
    _s = (_rng.randint(1, 3), _rng.randint(1, 3))
    _d = (_rng.randint(1, 2), _rng.randint(1, 2))
    _p = (_rng.randint(0, 2), _rng.randint(0, 2))
    _a = tuple(_rng.randint(0, max(_s[k], _d[k]) - 1) for k in range(2))
    _kh, _kw = _rng.randint(1, 4), _rng.randint(1, 4)
    _h, _w = _rng.randint(1, 5), _rng.randint(1, 5)
    while (_h - 1) * _s[0] - 2 * _p[0] + _d[0] * (_kh - 1) + _a[0] + 1 <= 0:
        _h += 1
    while (_w - 1) * _s[1] - 2 * _p[1] + _d[1] * (_kw - 1) + _a[1] + 1 <= 0:
        _w += 1
    _cin, _cout, _n = _rng.randint(1, 3), _rng.randint(1, 3), _rng.randint(1, 2)
    _kwargs = dict(stride=_s, padding=_p, output_padding=_a, dilation=_d)
    if _case % 2:  # ints where both entries agree
        _kwargs = {k: (v[0] if v[0] == v[1] else v) for k, v in _kwargs.items()}
    _ct_check(torch.randn(_n, _cin, _h, _w, generator=_g),
              torch.randn(_cin, _cout, _kh, _kw, generator=_g),
              torch.randn(_cout, generator=_g) if _case % 3 else None, **_kwargs)
# Same device in and out (CPU, and CUDA when there is one).
for _dev in devices():
    _x = torch.randn(2, 2, 3, 3, generator=_g).to(_dev)
    _w = torch.randn(2, 3, 3, 3, generator=_g).to(_dev)
    _b = torch.randn(3, generator=_g).to(_dev)
    _out = conv_transpose2d(_x, _w, _b, stride=2, padding=1)
    check_tensor(_out, f"conv_transpose2d on {_dev.type}", device=_dev)
    check_close(_out.cpu(), F.conv_transpose2d(_x.cpu(), _w.cpu(), _b.cpu(), stride=2, padding=1),
                f"conv_transpose2d on {_dev.type}", atol=1e-4, rtol=1e-4)
### END HIDDEN TESTS

# %% test test_conv_transpose2d_errors points=1
import torch
from genlab.testing import check_raises

_x, _w = torch.randn(2, 3, 4, 4), torch.randn(3, 4, 3, 3)
check_raises(lambda: conv_transpose2d(_x[0], _w), ValueError, "conv_transpose2d with a 3-D x",
             hint="x must be (N, C_in, H, W): check x.dim() and raise ValueError")
check_raises(lambda: conv_transpose2d(torch.randn(2, 2, 4, 4), _w), ValueError,
             "conv_transpose2d with x of 2 channels and weight (3, 4, 3, 3)",
             hint="x.shape[1] must equal weight.shape[0] (C_in): raise ValueError otherwise")
### BEGIN HIDDEN TESTS
check_raises(lambda: conv_transpose2d(_x, _w[0]), ValueError, "conv_transpose2d with a 3-D weight",
             hint="weight must be (C_in, C_out, kH, kW): check weight.dim() and raise ValueError")
check_raises(lambda: conv_transpose2d(_x[None], _w), ValueError, "conv_transpose2d with a 5-D x",
             hint="x must be (N, C_in, H, W): check x.dim() and raise ValueError")
check_raises(lambda: conv_transpose2d(torch.randn(2, 2, 4, 4), torch.randn(3, 2, 3, 3)),
             ValueError, "conv_transpose2d with x (2, 2, 4, 4) and weight (3, 2, 3, 3)",
             hint="compare x.shape[1] with weight.shape[0], not weight.shape[1]: the weight of a "
                  "transposed convolution is (C_in, C_out, kH, kW)")
### END HIDDEN TESTS

# %% [markdown]
# ### Your layer at work: overlap and stride
#
# Run your function on the lecture's example with three strides. With stride 1 the copies
# overlap (the lecture's $3\times 3$ result); with stride 2 they sit exactly side by side, so every
# input pixel is simply *replaced* by a scaled $2\times 2$ kernel — a learnable kind of
# upsampling; with stride 3 gaps of zeros open up between the copies. Whether copies overlap, and
# how evenly, will matter again in Part 4.
# %% demo
x_seed = torch.tensor([[0.0, 1.0], [2.0, 3.0]])[None, None]   # (N=1, C_in=1, 2, 2)
k_seed = torch.tensor([[0.0, 1.0], [2.0, 3.0]])[None, None]   # (C_in=1, C_out=1, 2, 2)
fig, axes = subplots(1, 3, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 4, 5]})
for ax, s in zip(axes, [1, 2, 3]):
    y = conv_transpose2d(x_seed, k_seed, stride=s)
    draw_matrix(ax, y[0, 0], f"stride {s}: output {y.shape[-2]}x{y.shape[-1]}", cmap="Oranges")
show(fig)
print("matches the lecture:", torch.equal(conv_transpose2d(x_seed, k_seed)[0, 0],
                                          torch.tensor([[0.0, 0, 1], [0, 4, 6], [4, 12, 9]])))

# %% [markdown]
# ## Exercise 3 · A convolution is a matrix (3 points)
#
# Why *transposed*? Because of linear algebra. An ordinary convolution is a linear function of its
# input, so — once the images are flattened into vectors — it is multiplication by a matrix $C$.
# Part 2 will show that the transposed convolution multiplies by $C^\top$. First, build $C$.
#
# Take a single-channel input $x$ of size $H\times W$, a kernel $K$ of size $k_h\times k_w$, stride
# $s$ and zero padding $p$. PyTorch's `conv2d` computes a **cross-correlation** (the kernel is laid
# on the input as it is, without flipping):
#
# $$z_{r,q} = \sum_{i=0}^{k_h-1}\sum_{j=0}^{k_w-1} K_{i,j}\; x_{\,s_h r - p_h + i,\;\; s_w q - p_w + j}
#   \qquad\text{(entries outside the image count as 0)},$$
#
# with output size $H_{\text{out}} = \lfloor (H + 2p_h - k_h)/s_h \rfloor + 1$ (same for $W$).
# Flatten images **row by row**, as `.flatten()` does: pixel $(h, w)$ becomes entry $hW + w$, and
# output pixel $(r, q)$ becomes entry $rW_{\text{out}} + q$. Then $z = Cx$ with
#
# $$C_{\,rW_{\text{out}}+q,\;\; hW+w} = \begin{cases}
#   K_{\,h - s_h r + p_h,\;\; w - s_w q + p_w} & \text{if both indices lie inside the kernel,}\\
#   0 & \text{otherwise.}\end{cases}$$
#
# In words: **row $(r, q)$ of $C$ is the kernel placed at the position that output pixel reads
# from**, laid on an $H\times W$ grid of zeros and flattened; the parts of the kernel that hang
# over the padding simply fall off. $C$ has shape $(H_{\text{out}}W_{\text{out}},\; HW)$ and is
# mostly zeros.
#
# **Your task.** Write `conv2d_matrix(kernel, in_size, stride=1, padding=0)` for a 2-D `kernel`
# `(kH, kW)`; `in_size` is `(H, W)` or an int for a square input; `stride` and `padding` are ints
# or pairs. Return `C` with the kernel's dtype and device, such that
# `F.conv2d(x[None, None], kernel[None, None], stride=stride, padding=padding).flatten()` equals
# `C @ x.flatten()`. Any construction is fine — a double loop over output positions that pastes the
# kernel into a padded canvas is a good start. (No convolution routines here either.)
# %% solution conv2d_matrix
def conv2d_matrix(kernel, in_size, stride=1, padding=0):
    """The matrix C (H_out*W_out, H*W) with conv2d(x).flatten() == C @ x.flatten()."""
    ### BEGIN SOLUTION
    (h, w), (s_h, s_w), (p_h, p_w) = as_pair(in_size), as_pair(stride), as_pair(padding)
    k_h, k_w = kernel.shape
    out_h = (h + 2 * p_h - k_h) // s_h + 1
    out_w = (w + 2 * p_w - k_w) // s_w + 1
    C = kernel.new_zeros(out_h * out_w, h * w)
    for r in range(out_h):
        for q in range(out_w):
            # the kernel where output pixel (r, q) reads, on a zero-padded canvas ...
            canvas = kernel.new_zeros(h + 2 * p_h, w + 2 * p_w)
            canvas[r * s_h:r * s_h + k_h, q * s_w:q * s_w + k_w] = kernel
            # ... minus the padding, flattened row by row, is row (r, q) of C
            C[r * out_w + q] = canvas[p_h:p_h + h, p_w:p_w + w].flatten()
    return C
    ### END SOLUTION

# %% test test_conv2d_matrix points=3
import random
import torch
import torch.nn.functional as F
from genlab.testing import CheckFailed, check_close, check_tensor, devices


def _cm_pair(v):
    return tuple(int(u) for u in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _cm_oracle(kernel, h, w, stride, padding):
    """Column k of C is what conv2d makes of the k-th basis image."""
    basis = torch.eye(h * w, dtype=kernel.dtype, device=kernel.device).view(h * w, 1, h, w)
    out = F.conv2d(basis, kernel[None, None], stride=stride, padding=padding)
    return out.reshape(h * w, -1).T


def _cm_mistakes(kernel, h, w, stride, padding, right):
    out_h = (h + 2 * _cm_pair(padding)[0] - kernel.shape[0]) // _cm_pair(stride)[0] + 1
    out_w = right.shape[0] // out_h
    by_columns_in = torch.arange(h * w).view(h, w).T.flatten()
    by_columns_out = torch.arange(out_h * out_w).view(out_h, out_w).T.flatten()
    recipes = {
        "the transposed matrix: C has one row per output pixel and one column per input pixel, "
        "so its shape is (H_out*W_out, H*W)":
            lambda: right.T,
        "a flipped kernel (a true convolution): PyTorch's conv2d is a cross-correlation, so the "
        "kernel is laid on the input as it is":
            lambda: _cm_oracle(kernel.flip(0, 1), h, w, stride, padding),
        "padding ignored: output pixel (r, q) reads from rows starting at r*stride - padding":
            lambda: _cm_oracle(kernel, h, w, stride, 0),
        "stride ignored: output pixel (r, q) reads from rows starting at r*stride - padding":
            lambda: _cm_oracle(kernel, h, w, 1, padding),
        "pixels numbered column by column: .flatten() reads an image row by row, so pixel "
        "(h, w) is entry h*W + w":
            lambda: right[by_columns_out][:, by_columns_in],
    }
    found = {}
    with torch.no_grad():
        for text, recipe in recipes.items():
            try:
                found[text] = recipe()
            except Exception:
                continue
    return found


def _cm_check(kernel, in_size, stride=1, padding=0):
    h, w = _cm_pair(in_size)
    what = (f"conv2d_matrix(kernel {tuple(kernel.shape)}, in_size={in_size!r}, "
            f"stride={stride!r}, padding={padding!r})")
    with torch.no_grad():
        right = _cm_oracle(kernel, h, w, stride, padding)
    try:
        C = conv2d_matrix(kernel, in_size, stride=stride, padding=padding)
    except NotImplementedError:
        raise CheckFailed(f"{what}: not implemented yet (replace `raise NotImplementedError()` "
                          "with your code)") from None
    except Exception as err:
        raise CheckFailed(f"{what}: raised {type(err).__name__}: {err}") from None
    tol = {} if kernel.dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    try:
        check_close(C, right, what, **tol)
    except CheckFailed:  # wrong: check again, now looking for a mistake that explains it
        mistakes = _cm_mistakes(kernel, h, w, stride, padding, right)
        check_close(C, right, what, mistakes=mistakes, **tol)
    return C


# A 3x3 input and a 2x2 kernel: C is (2*2, 3*3) = (4, 9).
_C = _cm_check(torch.tensor([[1.0, -2.0], [3.0, 0.5]]), (3, 3))
# Stride and padding on a rectangular input.
_g = torch.Generator().manual_seed(0)
_cm_check(torch.randn(3, 2, generator=_g), (5, 4), stride=2, padding=1)
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(3)
_cm_check(torch.randn(3, 3, generator=_g), 4)                                  # int in_size
_cm_check(torch.randn(2, 3, generator=_g), (4, 6), stride=(1, 2), padding=(2, 0))
_cm_check(torch.randn(1, 1, generator=_g), (3, 5), stride=2)                   # 1x1 kernel
_cm_check(torch.randn(3, 4, generator=_g), (3, 4))                             # a 1x1 output
_cm_check(torch.randn(3, 3, generator=_g), (2, 2), padding=1)                  # mostly padding
_rng = random.Random(5)
for _case in range(30):
    _kh, _kw = _rng.randint(1, 4), _rng.randint(1, 4)
    _h, _w = _rng.randint(_kh, 7), _rng.randint(_kw, 7)
    _s = (_rng.randint(1, 3), _rng.randint(1, 3))
    _p = (_rng.randint(0, 2), _rng.randint(0, 2))
    _s = _s[0] if _case % 2 else _s
    _p = _p[0] if _case % 3 else _p
    _cm_check(torch.randn(_kh, _kw, generator=_g), (_h, _w), stride=_s, padding=_p)
# The kernel's dtype and device.
_k64 = torch.randn(3, 2, generator=_g, dtype=torch.float64)
_C64 = _cm_check(_k64, (4, 4), stride=2, padding=1)
check_tensor(_C64, "conv2d_matrix of a float64 kernel", dtype=torch.float64)
for _dev in devices():
    _Cd = conv2d_matrix(torch.randn(2, 2, generator=_g).to(_dev), (3, 3))
    check_tensor(_Cd, f"conv2d_matrix of a kernel on {_dev.type}", device=_dev)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · The transposed convolution multiplies by $C^\top$
#
# Here is $C$ for a $3\times 3$ kernel on a $4\times 4$ input (stride 1, no padding): the output is
# $2\times 2$, so $C$ has 4 rows and 16 columns. Each row is the kernel, unrolled, shifted to where
# its output pixel reads. Its transpose $C^\top$ has 16 rows and 4 columns: it takes a $2\times 2$
# image and returns a $4\times 4$ one. That is the *shape* of an upsampling layer.
# %% demo
K3 = torch.arange(1.0, 10.0).view(3, 3)
C = conv2d_matrix(K3, (4, 4))
print("C has shape", tuple(C.shape), "and C.T has shape", tuple(C.T.shape))

fig, axes = subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 4, 1.1]})
draw_matrix(axes[0], K3, "kernel $K$", cmap="Greens")
axes[1].imshow(C, cmap="Greens")
axes[1].set_title("$C$ (4 x 16): one row per output pixel")
axes[1].set_xlabel("input pixel $hW + w$")
axes[1].set_ylabel("output pixel")
axes[2].imshow(C.T, cmap="Greens")
axes[2].set_title("$C^\\top$ (16 x 4)")
axes[2].set_xlabel("input of $C^\\top$")
axes[2].set_xticks(range(4))
show(fig)

# %% [markdown]
# Each **column** of $C^\top$ is one row of $C$: the kernel, placed where one small-image pixel
# sits, on a big grid. So $C^\top y = \sum_{r,q} y_{r,q}\,(\text{column } (r,q) \text{ of } C^\top)$
# pastes one scaled copy of the kernel for every pixel of $y$ and adds them up — exactly the
# scatter rule of Part 1. In symbols, with $x \mapsto Cx$ the convolution,
#
# $$\texttt{conv\_transpose2d}(y) = C^\top y, \qquad\text{equivalently}\qquad
#   \langle Cx,\, y\rangle = \langle x,\, C^\top y\rangle \;\text{ for all } x, y .$$
#
# The second form is the definition of the **adjoint** of a linear map. Let's check both, with
# your matrix and your transposed convolution.
# %% demo
x4 = torch.randn(4, 4)
y2 = torch.randn(2, 2)
via_matrix = (C.T @ y2.flatten()).view(4, 4)
via_layer = conv_transpose2d(y2[None, None], K3[None, None])[0, 0]
print("C.T @ y equals conv_transpose2d(y):", torch.allclose(via_matrix, via_layer, atol=1e-5))
print("C @ x equals conv2d(x):            ",
      torch.allclose(C @ x4.flatten(), F.conv2d(x4[None, None], K3[None, None]).flatten(), atol=1e-5))
lhs = torch.dot(C @ x4.flatten(), y2.flatten())
rhs = torch.dot(x4.flatten(), C.T @ y2.flatten())
print(f"<Cx, y> = {lhs.item():.4f}   <x, C^T y> = {rhs.item():.4f}")

# %% [markdown]
# **Stride, padding — and why `output_padding` exists.** The identity keeps holding with stride and
# padding, provided the transposed convolution gets the same `stride` and `padding` as the
# convolution. But look at the sizes: with $k=3, s=2, p=1$, both a $5\times 5$ and a $6\times 6$
# input give a $3\times 3$ output, because the convolution rounds down. $C^\top$ knows which one it
# came from (it has $HW$ rows); `conv_transpose2d` only sees the $3\times 3$ image, so it has to be
# told — `output_padding` is the part the rounding dropped, $(H + 2p - k) \bmod s$.
# %% demo
for H in (5, 6):
    C_s = conv2d_matrix(K3, (H, H), stride=2, padding=1)
    side = math.isqrt(C_s.shape[0])
    y = torch.randn(side, side)
    dropped = (H + 2 * 1 - 3) % 2
    back = (C_s.T @ y.flatten()).view(H, H)
    ours = conv_transpose2d(y[None, None], K3[None, None], stride=2, padding=1,
                            output_padding=dropped)[0, 0]
    print(f"H = {H}: conv2d gives {side}x{side}; C.T @ y is {H}x{H}; "
          f"with output_padding={dropped}, conv_transpose2d matches: "
          f"{torch.allclose(back, ours, atol=1e-5)}")

# %% [markdown]
# **It is the gradient of a convolution.** If $z = Cx$ and a loss $L$ has gradient $g = \partial L
# / \partial z$, the chain rule gives $\partial L / \partial x = C^\top g$. So every time you
# back-propagate through a `conv2d`, PyTorch runs a transposed convolution on the incoming
# gradient — and that is how libraries actually implement `conv_transpose2d`: as the backward pass
# of a convolution. Autograd confirms it:
# %% demo
x6 = torch.randn(1, 1, 6, 6, requires_grad=True)
z = F.conv2d(x6, K3[None, None], stride=2, padding=1)
g = torch.randn_like(z)                        # some upstream gradient dL/dz
(grad_x,) = torch.autograd.grad(z, x6, grad_outputs=g)
same = torch.allclose(grad_x, conv_transpose2d(g, K3[None, None], stride=2, padding=1,
                                               output_padding=1), atol=1e-5)
print("gradient of conv2d w.r.t. its input == conv_transpose2d of the gradient:", same)

# %% [markdown]
# **Transposed is not inverse.** The transposed convolution restores the *shape* the convolution
# took away, not the *values*: $C^\top C \ne I$ in general. (This is why the older name
# "deconvolution" is misleading — a deconvolution in signal processing really does undo a
# convolution.) In a decoder that is fine: the weights are learned, and nobody asks the layer to
# invert anything.
# %% demo
x8 = torch.rand(1, 1, 8, 8)
K_avg = K3 / K3.sum()                          # a weighted average, so values stay comparable
roundtrip = conv_transpose2d(F.conv2d(x8, K_avg[None, None], stride=2, padding=1),
                             K_avg[None, None], stride=2, padding=1, output_padding=1)
print("shape back:", tuple(roundtrip.shape) == tuple(x8.shape),
      f"| relative error of the values: {((roundtrip - x8).norm() / x8.norm()).item():.2f}")

# %% [markdown]
# ## Part 3 · The other picture: insert zeros, then convolve
#
# Many textbooks (and the convolution-arithmetic guide in the reading list) describe the transposed
# convolution differently, as an ordinary convolution on a stretched input:
#
# 1. insert $s-1$ zeros between neighbouring input pixels (in both directions);
# 2. pad the result with $d\,(k-1) - p$ zeros on every side, plus $a$ more at the bottom/right for
#    `output_padding`;
# 3. run an ordinary stride-1 convolution (cross-correlation) with dilation $d$, using the kernel
#    **rotated by 180°** and with its **channel axes swapped**: `weight.flip(-1, -2).transpose(0, 1)`.
#
# Why the rotation? In the scatter picture, input pixel $h$ reaches output $t = s\,h + d\,i$ through
# tap $i$. In the gather picture, output $t$ collects its inputs through the taps of a sliding
# window; as the input index $h$ increases, $i = (t - s\,h)/d$ *decreases*, so the window meets the
# taps in reverse order. The channel swap turns $(C_{\text{in}}, C_{\text{out}}, \dots)$ into the
# $(C_{\text{out}}, C_{\text{in}}, \dots)$ layout that `conv2d` expects.
# %%
x_demo = torch.randn(2, 3, 4, 5)
w_demo = torch.randn(3, 2, 3, 3)
s, p, a, d, k = 2, 1, 1, 1, 3

stretched = x_demo.new_zeros(2, 3, (4 - 1) * s + 1, (5 - 1) * s + 1)
stretched[:, :, ::s, ::s] = x_demo                       # step 1: zeros between the pixels
e = d * (k - 1) - p
stretched = F.pad(stretched, (e, e + a, e, e + a))       # step 2: pad (left, right, top, bottom)
gathered = F.conv2d(stretched, w_demo.flip(-1, -2).transpose(0, 1), dilation=d)   # step 3
scattered = conv_transpose2d(x_demo, w_demo, stride=s, padding=p, output_padding=a)
print("zero insertion + conv2d == your conv_transpose2d:", torch.allclose(gathered, scattered, atol=1e-5))

# %% [markdown]
# The picture below shows step 1 and 2 for a $3\times 3$ input with stride 2 and a $3\times 3$
# kernel (no padding): the nine input values sit on every other position of a $9\times 9$ grid
# that is mostly zeros. A $3\times 3$ window sliding over it meets 1, 2 or 4 real pixels depending
# on where it is — keep that in mind for Part 4. It also shows why libraries do not compute
# transposed convolutions this way: with stride 2, three quarters of the multiplications are by
# inserted zeros.
# %% demo
small = torch.arange(1.0, 10.0).view(3, 3)
grid = torch.zeros(5, 5)
grid[::2, ::2] = small
grid = F.pad(grid, (2, 2, 2, 2))
fig, axes = subplots(1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [1, 3]})
draw_matrix(axes[0], small, "input (3x3)", cmap="Purples")
draw_matrix(axes[1], grid, cmap="Purples", fontsize=9)
for r0, c0, colour in [(0, 0, "tab:red"), (1, 2, "tab:orange"), (2, 2, "tab:green")]:
    axes[1].add_patch(plt.Rectangle((c0 - 0.5, r0 - 0.5), 3, 3, fill=False, lw=2.5, color=colour))
axes[1].set_title("zeros inserted (stride 2), padded by $k-1=2$; windows meet 1, 2 or 4 pixels")
show(fig)

# %% [markdown]
# ## Part 4 · Checkerboard artifacts
#
# Images made by GAN generators and decoders often carry a faint grid pattern, most visible in
# flat regions. Odena, Dumoulin and Olah (2016) traced it to **uneven overlap** of the kernel
# copies. Count how many kernel taps reach each output pixel: that is a transposed convolution of
# an all-ones input with an all-ones kernel, which your function computes directly.
#
# In one dimension with $k=3, s=2$, copies start every 2 positions and are 3 long, so positions are
# covered alternately by 1 and 2 copies. In two dimensions the counts multiply: 1, 2 and 4, a
# checkerboard. With $k=4, s=2$ every interior position is covered by exactly $k/s = 2$ copies per
# direction. **The interior coverage is uniform exactly when the stride divides the kernel size.**
# %% demo
ones_in = torch.ones(1, 1, 4, 4)
fig, axes = subplots(1, 3, figsize=(14, 4.8))
for ax, (k, s) in zip(axes, [(3, 2), (4, 2), (2, 2)]):
    coverage = conv_transpose2d(ones_in, torch.ones(1, 1, k, k), stride=s)[0, 0]
    draw_matrix(ax, coverage, f"kernel {k}, stride {s}: taps per pixel", cmap="Reds", fontsize=8,
                vmax=6)
show(fig)

# %% [markdown]
# Does it matter once the weights are learned? A network *can* learn weights that hide the
# pattern, but it has to work for it, and stacking layers compounds the problem: each layer
# imprints its own grid at its own scale. The experiment below upsamples a constant $12\times 12$
# image three times ($12\to 24\to 48\to 96$) in three ways, once with all-ones kernels and once
# with random positive kernels, and shows a $32\times 32$ window from the middle, far from the
# borders (where fewer copies arrive and every method darkens):
#
# * transposed convolution, $k=3, s=2, p=1$, `output_padding=1` (stride does not divide the kernel);
# * transposed convolution, $k=4, s=2, p=1$ (it does);
# * **resize-convolution**: nearest-neighbour upsampling by 2, then an ordinary $3\times 3$
#   convolution with padding 1 — the fix Odena et al. recommend.
#
# The number in each title is the relative standard deviation inside that window ("ripple"):
# 0 means perfectly flat, as the upsampled version of a constant image should be.
# %% demo
def upsample_three_times(method, kernels):
    img = torch.ones(1, 1, 12, 12)
    for kernel in kernels:
        if method == "tconv k=3":
            img = conv_transpose2d(img, kernel[None, None], stride=2, padding=1, output_padding=1)
        elif method == "tconv k=4":
            img = conv_transpose2d(img, kernel[None, None], stride=2, padding=1)
        else:  # resize, then convolve
            img = F.conv2d(F.interpolate(img, scale_factor=2, mode="nearest"), kernel[None, None],
                           padding=1)
    return img[0, 0]


gen = torch.Generator().manual_seed(1)
random_kernels = {3: [torch.rand(3, 3, generator=gen) + 0.5 for _ in range(3)],
                  4: [torch.rand(4, 4, generator=gen) + 0.5 for _ in range(3)]}
methods = [("tconv k=3", 3), ("tconv k=4", 4), ("resize + conv k=3", 3)]
fig, axes = subplots(2, 3, figsize=(12, 8.4))
for row, kind in enumerate(["all-ones kernels", "random kernels"]):
    for col, (method, k) in enumerate(methods):
        kernels = [torch.ones(k, k)] * 3 if row == 0 else random_kernels[k]
        window = upsample_three_times(method, kernels)[32:64, 32:64]   # the middle of 96 x 96
        ripple = (window.std() / window.mean()).item()
        axes[row, col].imshow(window / window.mean(), cmap="gray", vmin=0.0, vmax=2.0)
        axes[row, col].set_title(f"{method}, {kind}\nripple {ripple:.3f}")
        axes[row, col].axis("off")
fig.suptitle("Upsampling a constant image three times (12 -> 96): the middle 32 x 32 pixels")
show(fig)

# %% [markdown]
# Read the grid row by row. With all-ones kernels, $k=3$ gives a strong checkerboard while $k=4$ and
# resize-convolution are perfectly flat. With random kernels, even $k=4$ ripples: every pixel
# receives the same *number* of taps, but pixels in even and odd positions receive *different*
# taps, whose weights differ.
# Only resize-convolution stays flat for **any** kernel, because every output pixel of a
# convolution uses all taps of the same kernel. That is why many modern decoders upsample with
# `nn.Upsample` followed by `nn.Conv2d`; DCGAN (lab 7) keeps transposed convolutions with
# $k=4, s=2$, and training learns to smooth most of the pattern away.
# %% [markdown]
# ## Part 5 · Explorer: where does each input pixel go?
#
# Move the sliders to see how the four arguments move the kernel copies. Every input pixel gets its
# own colour (left). In the middle, each position of the *full* output is coloured by the average
# colour of the input pixels whose kernel copy reaches it (white: no copy reaches it); the darkened
# border, outside the black frame, is what `padding` crops. On the right, the number of kernel taps that land on each kept
# output pixel (the coverage of Part 4). Things to try: stride 1 vs 3 with kernel 3; kernel 4 with
# stride 2; dilation 2 with stride 1; padding large enough to crop everything.
# %% demo
from matplotlib.figure import Figure


def render_spread(stride=2, kernel_size=3, padding=1, dilation=1, input_size=3):
    n, k, s, p, d = input_size, kernel_size, stride, padding, dilation
    full = (n - 1) * s + d * (k - 1) + 1
    out = full - 2 * p
    colours = plt.get_cmap("tab20")(np.arange(n * n) % 20)[:, :3]   # one colour per input pixel
    # hits[q, r, c]: how many taps of input pixel q's copy land on full-output position (r, c)
    hits = np.zeros((n * n, full, full))
    for h in range(n):
        for w in range(n):
            for i in range(k):
                for j in range(k):
                    hits[h * n + w, s * h + d * i, s * w + d * j] += 1
    count = hits.sum(axis=0)
    blend = np.einsum("qrc,qk->rck", hits, colours) / np.maximum(count, 1)[..., None]
    blend[count == 0] = 1.0

    fig = Figure(figsize=(13, 4.6), layout="constrained")
    ax_in, ax_full, ax_count = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 2, 2]})
    ax_in.imshow(colours.reshape(n, n, 3))
    ax_in.set_title(f"input {n}x{n}")
    ax_full.imshow(blend)
    ax_full.set_title(f"full output {full}x{full}: (n-1)s + d(k-1) + 1")
    if p > 0:  # shade the border that padding crops
        shade = np.zeros((full, full, 4))
        keep = slice(p, max(p, full - p))
        shade[..., 3] = 0.55
        shade[keep, keep, 3] = 0.0
        ax_full.imshow(shade)
        if out > 0:
            ax_full.add_patch(plt.Rectangle((p - 0.5, p - 0.5), out, out, fill=False, lw=2))
    if out > 0:
        ax_count.imshow(count[p:full - p, p:full - p], cmap="Reds", vmin=0, vmax=max(1, count.max()))
        for (r, c), v in np.ndenumerate(count[p:full - p, p:full - p]):
            ax_count.text(c, r, f"{v:g}", ha="center", va="center", fontsize=9 if out < 16 else 5,
                          color="white" if v > 0.6 * count.max() else "black")
        ax_count.set_title(f"kept output {out}x{out}: taps per pixel")
    else:
        ax_count.text(0.5, 0.5, f"padding {p} crops everything:\nthe output size would be {out}",
                      ha="center", va="center", transform=ax_count.transAxes)
    for ax in (ax_in, ax_full, ax_count):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"stride {s}, kernel {k}, padding {p}, dilation {d}")
    return fig


explore(render_spread,
        {"stride": (1, 4, 1, 2), "kernel_size": (1, 5, 1, 3), "padding": (0, 4, 1, 1),
         "dilation": (1, 3, 1, 1), "input_size": (1, 5, 1, 3)},
        title="How a transposed convolution spreads its input")

# %% [markdown]
# ## Summary
#
# * A transposed convolution **scatters**: each input pixel pastes a copy of the kernel, scaled by
#   its value (and mixed across channels by the tap's $C_{\text{in}}\times C_{\text{out}}$ matrix),
#   at $s$ times its position; overlapping copies add.
# * Output size: $(n-1)s - 2p + d(k-1) + a + 1$. Stride spaces the copies, dilation spaces the taps
#   inside a copy, padding **crops** the full output, output padding keeps extra rows at the
#   bottom/right to pick one of the input sizes a strided convolution would have rounded together.
# * A convolution is a matrix $C$; the transposed convolution is $C^\top$ — its adjoint and the
#   gradient of the convolution with respect to its input. It restores shapes, not values.
# * The same operation is a convolution of a zero-inserted input with the rotated, channel-swapped
#   kernel: a useful picture, a wasteful algorithm.
# * When the stride does not divide the kernel size, kernel copies overlap unevenly and imprint a
#   checkerboard; kernel sizes divisible by the stride reduce it, resize-convolution removes it.
#
# ## Questions to think about
#
# 1. DCGAN's generator upsamples with $k=4, s=2, p=1$. Use your formula to show that it doubles the
#    size. Which `output_padding` would a $k=5, s=2, p=2$ layer need to double, and would it avoid
#    checkerboards?
# 2. With $k = s$ and $p = 0$ the copies neither overlap nor leave gaps. What does such a layer do
#    to each input pixel? For which kernel does it equal nearest-neighbour upsampling?
# 3. Why is $C^\top$ not $C^{-1}$? The $C$ of Part 2 is $4\times 16$, and a matrix that is not
#    square has no inverse: a linear map from 16 numbers to 4 sends many different images to the
#    same output, so nothing can undo it. What $C^\top$ *can* be is the Moore–Penrose
#    pseudo-inverse, $C^+ = C^\top (CC^\top)^{-1}$ when $C$ has full row rank. Show that
#    $C^\top = C^+$ exactly when the rows of $C$ are orthonormal, $CC^\top = I$ (think of $k = s$,
#    $p = 0$ and a kernel of unit norm). Then $C(C^\top y) = y$ for every $y$, but $C^\top C$ is only the
#    orthogonal projection onto the row space of $C$: which inputs does it leave unchanged?
# 4. The gradient of a convolution is a transposed convolution. What is the gradient of a
#    transposed convolution with respect to its input?
# 5. With the zero-insertion algorithm and stride $s$ in two dimensions, what fraction of the
#    multiplications involve an inserted zero?
# 6. Both fixes for checkerboards keep the output size. Which one has more parameters for the same
#    receptive field, and which one costs more computation?
#
# ## Further reading
#
# * V. Dumoulin and F. Visin, *A guide to convolution arithmetic for deep learning* (2016),
#   arXiv:1603.07285 — the size formulas and the zero-insertion pictures, with animations.
# * A. Odena, V. Dumoulin and C. Olah, *Deconvolution and Checkerboard Artifacts*, Distill (2016),
#   https://distill.pub/2016/deconv-checkerboard/ — where the grid patterns come from and the
#   resize-convolution fix.
# * PyTorch documentation of `torch.nn.ConvTranspose2d`
#   (https://pytorch.org/docs/stable/generated/torch.nn.ConvTranspose2d.html) — the exact
#   semantics of every argument you implemented, including `groups`, which we left out.
