"""Lab 01 autograder tests are fair and discriminating.

For every exercise of notebooks/01_transposed_convolution.py: the model solution and correct
alternative implementations pass its test cells (visible and hidden); the stub, an object that
claims to equal everything, and typical mistakes fail, each mistake with a message that names it.
"""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genlab import labs, tconv
from genlab.testing import AlwaysEqual, EqualTensor, LabHarness, stub

LAB = labs.get("01_transposed_convolution")
SOURCE = LAB.source(Path(__file__).resolve().parents[1])
EXERCISES = LAB.exercise_names
POINTS = LAB.points


@pytest.fixture(scope="module")
def lab():
    return LabHarness(SOURCE)


# ------------------------------------------- model solutions (common checks: test_lab_cells.py)

def test_model_solutions_agree_with_the_reference(lab):
    ns = lab.namespace()
    assert ns["conv_transpose_output_size"](5, 3, stride=2, padding=1, output_padding=1) == \
        tconv.conv_transpose_output_size(5, 3, stride=2, padding=1, output_padding=1)
    x, w, b = torch.randn(2, 3, 4, 5), torch.randn(3, 2, 3, 2), torch.randn(2)
    kw = dict(stride=(2, 1), padding=1, output_padding=(1, 0), dilation=(1, 2))
    torch.testing.assert_close(ns["conv_transpose2d"](x, w, b, **kw),
                               tconv.conv_transpose2d(x, w, b, **kw))
    k = torch.randn(3, 2)
    torch.testing.assert_close(ns["conv2d_matrix"](k, (5, 4), stride=2, padding=1),
                               tconv.conv2d_matrix(k, (5, 4), stride=2, padding=1))


# --------------------------------------------------------------------------- stubs and cheats

@pytest.mark.parametrize("test_id", list(POINTS))
def test_stub_earns_nothing(lab, test_id):
    name = LAB.exercise_of(test_id)
    with pytest.raises(Exception):
        lab.run(test_id, **{name: stub})


def test_release_stub_fails_with_a_clear_message(lab):
    # The release replaces the solution body by `raise NotImplementedError()`.
    for name in EXERCISES:
        msg = lab.fails_with(f"test_{name}", "not implemented yet", **{name: stub})
        assert "Traceback" not in msg


def test_always_equal_objects_fail(lab):
    lab.fails_with("test_conv_transpose_output_size", "expected an int",
                conv_transpose_output_size=lambda *a, **k: AlwaysEqual())
    cheat = lambda *a, **k: torch.zeros(1).as_subclass(EqualTensor)  # noqa: E731
    lab.fails_with("test_conv_transpose2d", "tensor subclass", conv_transpose2d=cheat)
    lab.fails_with("test_conv2d_matrix", "tensor subclass", conv2d_matrix=cheat)
    lab.fails_with("test_conv2d_matrix", "expected a torch.Tensor",
                conv2d_matrix=lambda *a, **k: AlwaysEqual())


# --------------------------------------------------------------------------- exercise 1

def _size(formula, check_padding_vs_stride_only=False, raise_on_negative_only=False,
          no_errors=False, return_float=False):
    def conv_transpose_output_size(size, kernel_size, stride=1, padding=0, output_padding=0,
                                   dilation=1):
        limit = stride if check_padding_vs_stride_only else max(stride, dilation)
        if not no_errors and output_padding >= limit:
            raise ValueError("output_padding too large")
        out = formula(size, kernel_size, stride, padding, output_padding, dilation)
        if not no_errors and (out < 0 if raise_on_negative_only else out <= 0):
            raise ValueError("non-positive size")
        return float(out) if return_float else out
    return conv_transpose_output_size


RIGHT = lambda n, k, s, p, a, d: (n - 1) * s - 2 * p + d * (k - 1) + a + 1  # noqa: E731

SIZE_MISTAKES = [
    ("forgetting dilation", lambda n, k, s, p, a, d: (n - 1) * s - 2 * p + (k - 1) + a + 1),
    ("subtracting padding once", lambda n, k, s, p, a, d: (n - 1) * s - p + d * (k - 1) + a + 1),
    ("ignoring output_padding", lambda n, k, s, p, a, d: (n - 1) * s - 2 * p + d * (k - 1) + 1),
    ("forgetting the +1", lambda n, k, s, p, a, d: (n - 1) * s - 2 * p + d * (k - 1) + a),
    ("size*stride instead of (size-1)*stride",
     lambda n, k, s, p, a, d: n * s - 2 * p + d * (k - 1) + a + 1),
    ("the ordinary convolution's formula",
     lambda n, k, s, p, a, d: (n + 2 * p - d * (k - 1) - 1) // s + 1),
]


@pytest.mark.parametrize("phrase, formula", SIZE_MISTAKES, ids=[m[0] for m in SIZE_MISTAKES])
def test_output_size_mistakes_are_named(lab, phrase, formula):
    lab.fails_with("test_conv_transpose_output_size", phrase,
                conv_transpose_output_size=_size(formula))


def test_output_size_error_handling_mistakes(lab):
    lab.fails_with("test_conv_transpose_output_size", "max(stride, dilation)",
                conv_transpose_output_size=_size(RIGHT, check_padding_vs_stride_only=True))
    lab.fails_with("test_conv_transpose_output_size", "a size of 0 is not positive",
                conv_transpose_output_size=_size(RIGHT, raise_on_negative_only=True))
    lab.fails_with("test_conv_transpose_output_size", "expected ValueError",
                conv_transpose_output_size=_size(RIGHT, no_errors=True))
    lab.fails_with("test_conv_transpose_output_size", "expected an int",
                conv_transpose_output_size=_size(RIGHT, return_float=True))


def test_output_size_alternative_passes(lab):
    def conv_transpose_output_size(size, kernel_size, stride=1, padding=0, output_padding=0,
                                   dilation=1):
        # Count the positions the kernel copies reach, then crop and extend.
        reached = {stride * h + dilation * i for h in range(size) for i in range(kernel_size)}
        out = max(reached) + 1 - 2 * padding + output_padding
        if output_padding >= max(stride, dilation) or out < 1:
            raise ValueError("bad configuration")
        return out
    lab.run("test_conv_transpose_output_size",
         conv_transpose_output_size=conv_transpose_output_size)


# --------------------------------------------------------------------------- exercise 2

def _pairs(*values):
    return [tuple(v) if isinstance(v, (tuple, list)) else (v, v) for v in values]


def _scatter(flip=False, swap_channels=False, drop_bias=False, pad_input=False,
             ignore_padding=False, op_zeros=False, op_top_left=False, swap_stride_dilation=False,
             ignore_stride=False, ignore_dilation=False, call_torch=None):
    """A from-scratch conv_transpose2d (scatter over taps) with one typical mistake switched on."""
    def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
        if call_torch is not None:
            return call_torch(x, weight, bias, stride, padding, output_padding, dilation)
        s, p, a, d = _pairs(stride, padding, output_padding, dilation)
        if swap_stride_dilation:
            s, d = d, s
        if ignore_stride:
            s = (1, 1)
        if ignore_dilation:
            d = (1, 1)
        if flip:
            weight = weight.flip(-1, -2)
        if swap_channels:
            weight = weight.transpose(0, 1)
        if pad_input:
            x = F.pad(x, (p[1], p[1], p[0], p[0]))
        if pad_input or ignore_padding:
            p = (0, 0)
        n, _, h, w = x.shape
        _, c_out, kh, kw = weight.shape
        full_h, full_w = (h - 1) * s[0] + d[0] * (kh - 1) + 1, (w - 1) * s[1] + d[1] * (kw - 1) + 1
        buf = x.new_zeros(n, c_out, full_h + a[0], full_w + a[1])
        for i in range(kh):
            for j in range(kw):
                buf[:, :, d[0] * i:d[0] * i + (h - 1) * s[0] + 1:s[0],
                    d[1] * j:d[1] * j + (w - 1) * s[1] + 1:s[1]] += \
                    torch.einsum("nchw,co->nohw", x, weight[:, :, i, j])
        if op_zeros or op_top_left:
            core = buf[:, :, p[0]:full_h - p[0], p[1]:full_w - p[1]]
            pad = (0, a[1], 0, a[0]) if op_zeros else (a[1], 0, a[0], 0)
            out = F.pad(core, pad)
        else:
            out = buf[:, :, p[0]:full_h - p[0] + a[0], p[1]:full_w - p[1] + a[1]]
        if bias is not None and not drop_bias:
            out = out + bias.view(1, -1, 1, 1)
        return out
    return conv_transpose2d


CT_MISTAKES = [
    ("the kernel flipped", dict(flip=True)),
    ("the channel axes of weight swapped", dict(swap_channels=True)),
    ("bias missing", dict(drop_bias=True)),
    ("padding applied to the input", dict(pad_input=True)),
    ("padding ignored", dict(ignore_padding=True)),
    ("output_padding filled with zeros", dict(op_zeros=True)),
    ("output_padding added on the wrong side", dict(op_top_left=True)),
    ("stride and dilation swapped", dict(swap_stride_dilation=True)),
    ("stride ignored", dict(ignore_stride=True)),
    ("dilation ignored", dict(ignore_dilation=True)),
]


def test_scatter_helper_without_mistakes_passes(lab):
    lab.run("test_conv_transpose2d", conv_transpose2d=_scatter())


@pytest.mark.parametrize("phrase, flags", CT_MISTAKES, ids=[m[0] for m in CT_MISTAKES])
def test_conv_transpose2d_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_conv_transpose2d", phrase, conv_transpose2d=_scatter(**flags))


def test_calling_a_convolution_routine_is_caught(lab):
    def via_torch(x, w, b, s, p, a, d):
        return F.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=a, dilation=d)

    def via_module(x, w, b, s, p, a, d):
        layer = torch.nn.ConvTranspose2d(w.shape[0], w.shape[1], w.shape[2:], stride=s, padding=p,
                                         output_padding=a, dilation=d, bias=b is not None)
        with torch.no_grad():
            layer.weight.copy_(w)
            if b is not None:
                layer.bias.copy_(b)
        return layer(x)

    def via_zero_insertion(x, w, b, s, p, a, d):
        s, p, a, d = _pairs(s, p, a, d)
        z = x.new_zeros(*x.shape[:2], (x.shape[2] - 1) * s[0] + 1, (x.shape[3] - 1) * s[1] + 1)
        z[:, :, ::s[0], ::s[1]] = x
        e = (d[0] * (w.shape[2] - 1) - p[0], d[1] * (w.shape[3] - 1) - p[1])
        z = F.pad(z, (e[1], e[1] + a[1], e[0], e[0] + a[0]))
        return F.conv2d(z, w.flip(-1, -2).transpose(0, 1), b, dilation=d)

    for fn in (via_torch, via_module, via_zero_insertion):
        lab.fails_with("test_conv_transpose2d", "which this exercise asks you not to use",
                    conv_transpose2d=_scatter(call_torch=fn))


def test_conv_transpose2d_alternative_loop_over_input_positions_passes(lab):
    def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
        if x.dim() != 4 or weight.dim() != 4 or x.shape[1] != weight.shape[0]:
            raise ValueError("bad shapes")
        s, p, a, d = _pairs(stride, padding, output_padding, dilation)
        n, _, h, w = x.shape
        _, c_out, kh, kw = weight.shape
        full_h, full_w = (h - 1) * s[0] + d[0] * (kh - 1) + 1, (w - 1) * s[1] + d[1] * (kw - 1) + 1
        out = torch.zeros(n, c_out, full_h + a[0], full_w + a[1], dtype=x.dtype, device=x.device)
        for r in range(h):
            for c in range(w):
                # the block pasted by input pixel (r, c): (N, C_out, kh, kw)
                block = torch.einsum("nc,cokl->nokl", x[:, :, r, c], weight)
                out[:, :, r * s[0]:r * s[0] + d[0] * (kh - 1) + 1:d[0],
                    c * s[1]:c * s[1] + d[1] * (kw - 1) + 1:d[1]] += block
        out = out[:, :, p[0]:full_h - p[0] + a[0], p[1]:full_w - p[1] + a[1]]
        return out if bias is None else out + bias[None, :, None, None]
    lab.run("test_conv_transpose2d", conv_transpose2d=conv_transpose2d)
    lab.run("test_conv_transpose2d_errors", conv_transpose2d=conv_transpose2d)


def test_conv_transpose2d_alternative_zero_insertion_with_unfold_passes(lab):
    def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
        if x.dim() != 4 or weight.dim() != 4 or x.shape[1] != weight.shape[0]:
            raise ValueError("bad shapes")
        s, p, a, d = _pairs(stride, padding, output_padding, dilation)
        n, c_in, h, w = x.shape
        _, c_out, kh, kw = weight.shape
        z = x.new_zeros(n, c_in, (h - 1) * s[0] + 1, (w - 1) * s[1] + 1)
        z[:, :, ::s[0], ::s[1]] = x
        e = (d[0] * (kh - 1) - p[0], d[1] * (kw - 1) - p[1])
        z = F.pad(z, (e[1], e[1] + a[1], e[0], e[0] + a[0]))   # negative pads crop
        out_h, out_w = z.shape[2] - d[0] * (kh - 1), z.shape[3] - d[1] * (kw - 1)
        cols = F.unfold(z, (kh, kw), dilation=d)                # (N, C_in*kh*kw, L): im2col
        g = weight.flip(-1, -2).transpose(0, 1).reshape(c_out, -1)
        out = (g @ cols).view(n, c_out, out_h, out_w)
        return out if bias is None else out + bias.view(1, -1, 1, 1)
    lab.run("test_conv_transpose2d", conv_transpose2d=conv_transpose2d)


def test_conv_transpose2d_error_cell(lab):
    # No checks at all: the 3-D x is accepted by a bare einsum? It fails to unpack -> ValueError,
    # but the channel mismatch surfaces as einsum's RuntimeError, which the test rejects.
    lab.fails_with("test_conv_transpose2d_errors", "expected ValueError",
                conv_transpose2d=_scatter())

    def checks_wrong_axis(x, weight, bias=None, stride=1, padding=0, output_padding=0,
                          dilation=1):
        if x.dim() != 4 or weight.dim() != 4:
            raise ValueError("bad ndim")
        if x.shape[1] != weight.shape[1]:
            raise ValueError("channel mismatch")
        return _scatter()(x, weight, bias, stride, padding, output_padding, dilation)
    lab.fails_with("test_conv_transpose2d_errors", "not weight.shape[1]",
                conv_transpose2d=checks_wrong_axis)


# --------------------------------------------------------------------------- exercise 3

def _matrix(flip=False, transpose=False, ignore_padding=False, ignore_stride=False,
            column_major=False):
    """A conv2d_matrix built by pasting the kernel, with one typical mistake switched on."""
    def conv2d_matrix(kernel, in_size, stride=1, padding=0):
        (h, w), (sh, sw), (ph, pw) = _pairs(in_size, stride, padding)
        if ignore_padding:
            ph = pw = 0
        if ignore_stride:
            sh = sw = 1
        if flip:
            kernel = kernel.flip(0, 1)
        kh, kw = kernel.shape
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        C = kernel.new_zeros(oh * ow, h * w)
        for r in range(oh):
            for q in range(ow):
                canvas = kernel.new_zeros(h + 2 * ph, w + 2 * pw)
                canvas[r * sh:r * sh + kh, q * sw:q * sw + kw] = kernel
                row = canvas[ph:ph + h, pw:pw + w]
                if column_major:
                    C[q * oh + r] = row.T.flatten()
                else:
                    C[r * ow + q] = row.flatten()
        return C.T if transpose else C
    return conv2d_matrix


CM_MISTAKES = [
    ("the transposed matrix", dict(transpose=True)),
    ("a flipped kernel", dict(flip=True)),
    ("padding ignored", dict(ignore_padding=True)),
    ("stride ignored", dict(ignore_stride=True)),
    ("pixels numbered column by column", dict(column_major=True)),
]


def test_matrix_helper_without_mistakes_passes(lab):
    lab.run("test_conv2d_matrix", conv2d_matrix=_matrix())


@pytest.mark.parametrize("phrase, flags", CM_MISTAKES, ids=[m[0] for m in CM_MISTAKES])
def test_conv2d_matrix_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_conv2d_matrix", phrase, conv2d_matrix=_matrix(**flags))


def test_conv2d_matrix_wrong_dtype_fails(lab):
    def float32_always(kernel, in_size, stride=1, padding=0):
        return _matrix()(kernel, in_size, stride, padding).float()
    lab.fails_with("test_conv2d_matrix", "dtype", conv2d_matrix=float32_always)


def test_conv2d_matrix_alternative_from_basis_images_passes(lab):
    def conv2d_matrix(kernel, in_size, stride=1, padding=0):
        # Column k of C is the correlation of the k-th basis image, computed with unfold + matmul.
        (h, w), (sh, sw), (ph, pw) = _pairs(in_size, stride, padding)
        basis = torch.eye(h * w, dtype=kernel.dtype, device=kernel.device).view(h * w, 1, h, w)
        cols = F.unfold(basis, kernel.shape, padding=(ph, pw), stride=(sh, sw))  # (HW, k, L)
        return (kernel.reshape(1, -1) @ cols).squeeze(1).T
    lab.run("test_conv2d_matrix", conv2d_matrix=conv2d_matrix)
