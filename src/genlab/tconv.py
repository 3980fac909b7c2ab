"""Reference implementations for lab 01_transposed_convolution (topic ``tconv``).

A transposed convolution *scatters*: every input pixel adds a copy of the kernel, scaled by the
pixel's value, into the output, and the copies overlap and add up.  The functions here build it
from that picture alone, without calling any convolution routine, so they can be checked against
``torch.nn.functional.conv_transpose2d`` as an independent oracle.

- :func:`conv_transpose_output_size` -- PyTorch's output-size formula, with clear errors.
- :func:`conv_transpose2d` -- the operation itself, as a scatter-add over kernel taps.
- :func:`conv2d_matrix` -- the matrix ``C`` of a (cross-correlation) convolution, so that
  ``C.T @ y`` is the transposed convolution of ``y``.
- :func:`zero_insert` and :func:`checkerboard_coverage` -- helpers for the lab's pictures.
"""
from __future__ import annotations

import torch

from .arguments import as_int

__all__ = ["conv_transpose_output_size", "conv_transpose2d", "conv2d_matrix", "zero_insert",
           "checkerboard_coverage"]


def _pair(value, name: str) -> tuple[int, int]:
    """An int or a pair ``(h, w)`` of ints, as a tuple of two ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {len(value)} values")
        return as_int(value[0], name), as_int(value[1], name)
    v = as_int(value, name)
    return v, v


def conv_transpose_output_size(size, kernel_size, stride=1, padding=0, output_padding=0,
                               dilation=1) -> int:
    """Length of one spatial axis after a transposed convolution (PyTorch's formula).

    ``(size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1``

    Raises ValueError for negative or zero sizes/strides/dilations, negative paddings,
    ``output_padding >= max(stride, dilation)`` and a non-positive result; TypeError for
    arguments that are not integers.
    """
    size = as_int(size, "size")
    kernel_size = as_int(kernel_size, "kernel_size")
    stride = as_int(stride, "stride")
    padding = as_int(padding, "padding")
    output_padding = as_int(output_padding, "output_padding")
    dilation = as_int(dilation, "dilation")
    for name, value, low in (("size", size, 1), ("kernel_size", kernel_size, 1),
                             ("stride", stride, 1), ("dilation", dilation, 1),
                             ("padding", padding, 0), ("output_padding", output_padding, 0)):
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    if output_padding >= max(stride, dilation):
        raise ValueError(f"output_padding ({output_padding}) must be smaller than stride "
                         f"({stride}) or dilation ({dilation})")
    out = (size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1
    if out <= 0:
        raise ValueError(f"the output would have size {out}: padding={padding} crops more than "
                         f"the {out + 2 * padding - output_padding} positions the kernel copies cover")
    return out


def _check_same_device(*tensors) -> None:
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(f"all tensors must be on the same device, got {names}")


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    """2-D transposed convolution, equal to ``torch.nn.functional.conv_transpose2d`` (groups=1).

    ``x`` is ``(N, C_in, H, W)``, ``weight`` is ``(C_in, C_out, kH, kW)``, ``bias`` is
    ``(C_out,)`` or None; ``stride``, ``padding``, ``output_padding`` and ``dilation`` are ints
    or pairs ``(h, w)``.  Returns ``(N, C_out, H_out, W_out)`` on ``x``'s device; ``N`` may be
    0 (an empty batch gives an empty result of that shape, as in torch).

    Written as a scatter-add over kernel taps: tap ``(i, j)`` sends every input pixel
    ``(h, w)`` to position ``(h*stride + i*dilation, w*stride + j*dilation)`` of a full-size
    buffer, with its channels mixed by ``weight[:, :, i, j]``.  The buffer is then cropped by
    ``padding`` on every side, and ``output_padding`` extra rows/columns are kept at the
    bottom/right.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError("x and weight must be torch tensors")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (N, C_in, H, W), got {x.dim()} dimensions "
                         f"{tuple(x.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"weight must have shape (C_in, C_out, kH, kW), got {weight.dim()} "
                         f"dimensions {tuple(weight.shape)}")
    n, c_in, h, w = x.shape
    if weight.shape[0] != c_in:
        raise ValueError(f"x has {c_in} channels but weight expects {weight.shape[0]} input "
                         f"channels (weight is (C_in, C_out, kH, kW) = {tuple(weight.shape)})")
    c_out, k_h, k_w = weight.shape[1:]
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias.shape != (c_out,):
            shape = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
            raise ValueError(f"bias must be a tensor of shape ({c_out},), got {shape}")
    for name, t in (("x", x), ("weight", weight), ("bias", bias)):
        if t is not None and not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(f"x, weight and bias must share a dtype, got {x.dtype} and "
                        f"{weight.dtype}" + ("" if bias is None else f" and {bias.dtype}"))
    _check_same_device(x, weight, bias)
    # An empty batch (N = 0) is fine, as for torch: the result is (0, C_out, H_out, W_out).
    if min(c_in, h, w, c_out, k_h, k_w) == 0:
        raise ValueError(f"empty input: x {tuple(x.shape)}, weight {tuple(weight.shape)}")

    s_h, s_w = _pair(stride, "stride")
    p_h, p_w = _pair(padding, "padding")
    op_h, op_w = _pair(output_padding, "output_padding")
    d_h, d_w = _pair(dilation, "dilation")
    h_out = conv_transpose_output_size(h, k_h, s_h, p_h, op_h, d_h)
    w_out = conv_transpose_output_size(w, k_w, s_w, p_w, op_w, d_w)

    # Every (input pixel, kernel tap) pair at once: contrib[n, d, i, j, h, w] is what input pixel
    # (h, w) sends through tap (i, j) to output channel d, summed over input channels.
    contrib = torch.einsum("nchw,cdij->ndijhw", x, weight)

    # Full (uncropped) output, plus output_padding spare rows/columns at the bottom/right.
    full_h = (h - 1) * s_h + d_h * (k_h - 1) + 1
    full_w = (w - 1) * s_w + d_w * (k_w - 1) + 1
    buf = x.new_zeros(n, c_out, full_h + op_h, full_w + op_w)
    for i in range(k_h):
        rows = slice(i * d_h, i * d_h + (h - 1) * s_h + 1, s_h)
        for j in range(k_w):
            cols = slice(j * d_w, j * d_w + (w - 1) * s_w + 1, s_w)
            buf[:, :, rows, cols] += contrib[:, :, i, j]

    out = buf[:, :, p_h:p_h + h_out, p_w:p_w + w_out]
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out


def conv2d_matrix(kernel, in_size, stride=1, padding=0):
    """The matrix ``C`` of a 2-D convolution (cross-correlation, as PyTorch computes it).

    For a kernel ``(kH, kW)`` and an input of size ``in_size = (H, W)`` (or an int for a square
    input), returns ``C`` of shape ``(H_out*W_out, H*W)`` such that
    ``F.conv2d(x[None, None], kernel[None, None], stride=stride, padding=padding).flatten()
    == C @ x.flatten()``.  Row ``r`` of ``C`` is the kernel laid on the (zero-padded) input at
    output position ``r``; ``C.T @ y`` is the transposed convolution of ``y``.
    Same dtype and device as ``kernel``; differentiable with respect to ``kernel``.
    """
    if not isinstance(kernel, torch.Tensor):
        raise TypeError(f"kernel must be a torch tensor, got {type(kernel).__name__}")
    if kernel.dim() != 2:
        raise ValueError(f"kernel must be 2-D (kH, kW), got shape {tuple(kernel.shape)}")
    if not kernel.is_floating_point():
        raise TypeError(f"kernel must be a floating-point tensor, got {kernel.dtype}")
    h, w = _pair(in_size, "in_size")
    s_h, s_w = _pair(stride, "stride")
    p_h, p_w = _pair(padding, "padding")
    k_h, k_w = kernel.shape
    if min(h, w, k_h, k_w) < 1 or min(s_h, s_w) < 1 or min(p_h, p_w) < 0:
        raise ValueError(f"need positive sizes and strides and non-negative padding, got "
                         f"in_size=({h}, {w}), kernel {tuple(kernel.shape)}, "
                         f"stride=({s_h}, {s_w}), padding=({p_h}, {p_w})")
    h_out = (h + 2 * p_h - k_h) // s_h + 1
    w_out = (w + 2 * p_w - k_w) // s_w + 1
    if h + 2 * p_h < k_h or w + 2 * p_w < k_w:
        raise ValueError(f"the {k_h}x{k_w} kernel does not fit in the padded "
                         f"{h + 2 * p_h}x{w + 2 * p_w} input")

    device = kernel.device
    oh = torch.arange(h_out, device=device).view(-1, 1)  # output row index, as a column
    ow = torch.arange(w_out, device=device).view(1, -1)  # output column index, as a row
    out_index = (oh * w_out + ow).flatten()
    matrix = kernel.new_zeros(h_out * w_out, h * w)
    for i in range(k_h):
        ih = oh * s_h - p_h + i                # the input row that tap (i, .) reads
        for j in range(k_w):
            iw = ow * s_w - p_w + j            # the input column that tap (., j) reads
            inside = ((ih >= 0) & (ih < h) & (iw >= 0) & (iw < w)).flatten()
            in_index = (ih * w + iw).flatten()
            rows, cols = out_index[inside], in_index[inside]
            value = kernel[i, j].expand(rows.numel())
            # Each (output, input) pair is reached by exactly one tap, so put == add here.
            matrix = matrix.index_put((rows, cols), value, accumulate=True)
    return matrix


def zero_insert(x, stride):
    """Insert ``stride - 1`` zeros between neighbouring pixels of ``x (..., H, W)``.

    The result has spatial size ``((H-1)*s_h + 1, (W-1)*s_w + 1)``: the first step of the
    "zero insertion" view of a transposed convolution.
    """
    s_h, s_w = _pair(stride, "stride")
    if min(s_h, s_w) < 1:
        raise ValueError(f"stride must be at least 1, got ({s_h}, {s_w})")
    if x.dim() < 2:
        raise ValueError(f"x needs at least 2 dimensions (..., H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    out = x.new_zeros(*x.shape[:-2], (h - 1) * s_h + 1, (w - 1) * s_w + 1)
    out[..., ::s_h, ::s_w] = x
    return out


def checkerboard_coverage(kernel_size, stride, size, padding=0, dilation=1):
    """How many kernel taps land on each output pixel (a float tensor ``(H_out, W_out)``).

    It is the transposed convolution of an all-ones ``size`` input with an all-ones kernel:
    with ``kernel_size`` not divisible by ``stride`` the counts alternate (the checkerboard
    of Odena et al., 2016); when it divides evenly the interior is uniform.
    ``kernel_size``, ``stride``, ``size``, ``padding`` and ``dilation`` are ints or pairs.
    """
    k_h, k_w = _pair(kernel_size, "kernel_size")
    h, w = _pair(size, "size")
    ones = torch.ones(1, 1, h, w, dtype=torch.float64)
    kernel = torch.ones(1, 1, k_h, k_w, dtype=torch.float64)
    out = conv_transpose2d(ones, kernel, stride=stride, padding=padding, dilation=dilation)
    return out[0, 0]
