"""genlab.tconv against independent oracles: torch.nn.functional.conv_transpose2d / conv2d."""
import random

import pytest
import torch
import torch.nn.functional as F

from genlab import tconv
from genlab.testing import CheckFailed, forbid_calls


def _random_config(rng: random.Random):
    """A random valid conv_transpose2d configuration (small sizes), half of them with tuples."""
    def pick(low, high):
        a, b = rng.randint(low, high), rng.randint(low, high)
        return (a, b) if rng.random() < 0.5 else a

    def pair(v):
        return v if isinstance(v, tuple) else (v, v)

    stride, dilation, padding = pick(1, 3), pick(1, 3), pick(0, 2)
    s, d = pair(stride), pair(dilation)
    op = tuple(rng.randint(0, max(s[k], d[k]) - 1) for k in range(2))
    output_padding = op if rng.random() < 0.5 else min(op)
    cfg = dict(n=rng.randint(1, 3), c_in=rng.randint(1, 4), c_out=rng.randint(1, 4),
               h=rng.randint(1, 6), w=rng.randint(1, 6), kh=rng.randint(1, 4),
               kw=rng.randint(1, 4), stride=stride, padding=padding,
               output_padding=output_padding, dilation=dilation,
               bias=rng.random() < 0.5,
               dtype=rng.choice([torch.float32, torch.float64]))
    # Make sure the output is not empty: enlarge the input until padding fits.
    p, opad = pair(padding), pair(output_padding)
    for axis, size_key, k_key in ((0, "h", "kh"), (1, "w", "kw")):
        while ((cfg[size_key] - 1) * s[axis] - 2 * p[axis] + d[axis] * (cfg[k_key] - 1)
               + opad[axis] + 1) <= 0:
            cfg[size_key] += 1
    return cfg


def _tensors(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(cfg["n"], cfg["c_in"], cfg["h"], cfg["w"], generator=g, dtype=cfg["dtype"])
    w = torch.randn(cfg["c_in"], cfg["c_out"], cfg["kh"], cfg["kw"], generator=g,
                    dtype=cfg["dtype"])
    b = torch.randn(cfg["c_out"], generator=g, dtype=cfg["dtype"]) if cfg["bias"] else None
    return x, w, b


_KW = ("stride", "padding", "output_padding", "dilation")


@pytest.mark.parametrize("block", range(4))
def test_conv_transpose2d_matches_torch_on_random_configs(block):
    rng = random.Random(1000 + block)
    for k in range(60):  # 4 blocks x 60 = 240 configurations
        cfg = _random_config(rng)
        x, w, b = _tensors(cfg, seed=block * 100 + k)
        kwargs = {key: cfg[key] for key in _KW}
        expected = F.conv_transpose2d(x, w, b, **kwargs)
        actual = tconv.conv_transpose2d(x, w, b, **kwargs)
        tol = dict(atol=1e-5, rtol=1e-5) if cfg["dtype"] == torch.float32 else {}
        assert actual.dtype == x.dtype, cfg
        torch.testing.assert_close(actual, expected, msg=lambda m: f"{cfg}\n{m}", **tol)


def test_seed_example_from_the_lecture():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])[None, None]
    kernel = torch.tensor([[0.0, 1.0], [2.0, 3.0]])[None, None]
    out = tconv.conv_transpose2d(x, kernel)
    expected = torch.tensor([[0.0, 0.0, 1.0], [0.0, 4.0, 6.0], [4.0, 12.0, 9.0]])
    torch.testing.assert_close(out[0, 0], expected, rtol=0, atol=0)


def test_edge_cases_one_pixel_input_and_one_by_one_kernel():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 1, 1, generator=g)
    w = torch.randn(3, 4, 3, 2, generator=g)
    torch.testing.assert_close(tconv.conv_transpose2d(x, w, stride=2),
                               F.conv_transpose2d(x, w, stride=2))
    x = torch.randn(2, 3, 4, 5, generator=g)
    w = torch.randn(3, 4, 1, 1, generator=g)
    for kw in (dict(), dict(stride=3, output_padding=2), dict(stride=2, padding=1)):
        torch.testing.assert_close(tconv.conv_transpose2d(x, w, **kw),
                                   F.conv_transpose2d(x, w, **kw))


def test_accepts_lists_and_numpy_style_ints():
    x = torch.randn(1, 2, 3, 3)
    w = torch.randn(2, 1, 3, 3)
    torch.testing.assert_close(tconv.conv_transpose2d(x, w, stride=[2, 1], padding=torch.tensor(1)),
                               F.conv_transpose2d(x, w, stride=(2, 1), padding=1))


def test_output_size_matches_torch_output_shape():
    rng = random.Random(7)
    checked = 0
    while checked < 300:
        size, k = rng.randint(1, 8), rng.randint(1, 5)
        s, d, p = rng.randint(1, 4), rng.randint(1, 3), rng.randint(0, 3)
        op = rng.randint(0, max(s, d) - 1)
        formula = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        if formula <= 0:
            with pytest.raises(ValueError):
                tconv.conv_transpose_output_size(size, k, s, p, op, d)
            continue
        shape = F.conv_transpose2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, k, 1),
                                   stride=(s, 1), padding=(p, 0), output_padding=(op, 0),
                                   dilation=(d, 1)).shape
        got = tconv.conv_transpose_output_size(size, k, stride=s, padding=p, output_padding=op,
                                               dilation=d)
        assert type(got) is int
        assert got == shape[2], (size, k, s, p, op, d)
        checked += 1


def test_output_size_keyword_defaults():
    assert tconv.conv_transpose_output_size(2, 2) == 3
    assert tconv.conv_transpose_output_size(7, 4, stride=2, padding=1) == 14
    assert tconv.conv_transpose_output_size(7, 3, stride=2, padding=1, output_padding=1) == 14
    assert tconv.conv_transpose_output_size(3, 3, dilation=2, output_padding=1) == 8


@pytest.mark.parametrize("args, error", [
    ((1, 1, 1, 1), ValueError),                 # 0*1 - 2 + 0 + 0 + 1 = -1
    ((2, 1, 1, 1), ValueError),                 # 1 - 2 + 1 = 0 is not positive either
    ((4, 3, 2, 0, 2), ValueError),              # output_padding == stride
    ((4, 3, 1, 0, 1, 1), ValueError),           # output_padding == max(stride, dilation)
    ((0, 3), ValueError), ((3, 0), ValueError), ((3, 3, 0), ValueError),
    ((3, 3, 1, -1), ValueError), ((3, 3, 1, 0, -1), ValueError), ((3, 3, 1, 0, 0, 0), ValueError),
    ((3.0, 3), TypeError), ((3, 3, 2.5), TypeError), ((3, True), TypeError), (("3", 3), TypeError),
])
def test_output_size_errors(args, error):
    with pytest.raises(error):
        tconv.conv_transpose_output_size(*args)


def test_output_size_allows_output_padding_below_dilation():
    # PyTorch accepts output_padding < max(stride, dilation), so stride 1 with dilation 2 is fine.
    assert tconv.conv_transpose_output_size(3, 3, stride=1, output_padding=1, dilation=2) == 8
    out = F.conv_transpose2d(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3),
                             output_padding=1, dilation=2)
    assert out.shape[-1] == 8


def test_conv_transpose2d_errors():
    x, w = torch.randn(1, 2, 3, 3), torch.randn(2, 3, 2, 2)
    with pytest.raises(ValueError, match="x must have shape"):
        tconv.conv_transpose2d(x[0], w)
    with pytest.raises(ValueError, match="weight must have shape"):
        tconv.conv_transpose2d(x, w[0])
    with pytest.raises(ValueError, match="channels"):
        tconv.conv_transpose2d(torch.randn(1, 3, 3, 3), w)
    with pytest.raises(ValueError, match="bias"):
        tconv.conv_transpose2d(x, w, torch.randn(2))
    with pytest.raises(TypeError, match="floating"):
        tconv.conv_transpose2d(torch.ones(1, 2, 3, 3, dtype=torch.long), w.long())
    with pytest.raises(TypeError, match="dtype"):
        tconv.conv_transpose2d(x.double(), w)
    with pytest.raises(ValueError, match="output_padding"):
        tconv.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError):
        tconv.conv_transpose2d(x, w, padding=3)
    with pytest.raises(ValueError, match="pair"):
        tconv.conv_transpose2d(x, w, stride=(1, 2, 3))
    with pytest.raises(TypeError):
        tconv.conv_transpose2d(x, w, stride=1.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_empty_batch_gives_torchs_empty_result(dtype):
    """N = 0 is a valid batch for torch (e.g. the last, empty chunk of a split): the result is
    (0, C_out, H_out, W_out), with no convolution routine called."""
    g = torch.Generator().manual_seed(11)
    w = torch.randn(3, 2, 3, 2, generator=g, dtype=dtype)
    b = torch.randn(2, generator=g, dtype=dtype)
    configs = [dict(), dict(stride=2),
               dict(stride=(2, 3), padding=1, output_padding=1, dilation=(1, 2)),
               dict(stride=3, padding=(0, 1), output_padding=(2, 0), dilation=2)]
    for kwargs in configs:
        for bias in (None, b):
            x = torch.randn(0, 3, 4, 5, dtype=dtype)
            expected = F.conv_transpose2d(x, w, bias, **kwargs)
            with forbid_calls(what="genlab.tconv"):
                actual = tconv.conv_transpose2d(x, w, bias, **kwargs)
            assert actual.shape == expected.shape and actual.dtype == expected.dtype, kwargs
            torch.testing.assert_close(actual, expected)
    # the batch is the only dimension that may be empty, as in torch
    with pytest.raises(ValueError, match="empty"):
        tconv.conv_transpose2d(torch.randn(1, 3, 0, 5, dtype=dtype), w)
    with pytest.raises(RuntimeError):
        F.conv_transpose2d(torch.randn(1, 3, 0, 5, dtype=dtype), w)


def test_reference_calls_no_convolution_routine():
    x, w, b = torch.randn(2, 3, 4, 4), torch.randn(3, 2, 3, 3), torch.randn(2)
    with forbid_calls(what="genlab.tconv"):
        tconv.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, dilation=1)
        tconv.conv2d_matrix(torch.randn(3, 3), (5, 5), stride=2, padding=1)
        tconv.checkerboard_coverage(3, 2, 4)
    # ... and forbid_calls does catch torch's own routine, so the check above means something.
    with pytest.raises(CheckFailed, match="conv_transpose2d"):
        with forbid_calls(what="torch"):
            F.conv_transpose2d(x, w, b)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(2, 3, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)

    def fn(x, w, b):
        return tconv.conv_transpose2d(x, w, b, stride=(2, 1), padding=(1, 0), output_padding=1,
                                      dilation=(1, 2))

    assert torch.autograd.gradcheck(fn, (x, w, b))
    # Gradients also agree with torch's own.
    ref = F.conv_transpose2d(x, w, b, stride=(2, 1), padding=(1, 0), output_padding=1,
                             dilation=(1, 2))
    up = torch.randn_like(ref)
    ours = torch.autograd.grad((fn(x, w, b) * up).sum(), (x, w, b))
    theirs = torch.autograd.grad((ref * up).sum(), (x, w, b))
    for a, e in zip(ours, theirs):
        torch.testing.assert_close(a, e)


def _matrix_by_basis(kernel, h, w, stride, padding):
    """Oracle: column k of C is F.conv2d applied to the k-th basis image."""
    basis = torch.eye(h * w, dtype=kernel.dtype).view(h * w, 1, h, w)
    out = F.conv2d(basis, kernel[None, None], stride=stride, padding=padding)
    return out.reshape(h * w, -1).T


def test_conv2d_matrix_matches_conv2d():
    rng = random.Random(11)
    for k in range(80):
        kh, kw = rng.randint(1, 4), rng.randint(1, 4)
        h, w = rng.randint(kh, 7), rng.randint(kw, 7)
        stride = (rng.randint(1, 3), rng.randint(1, 3)) if k % 2 else rng.randint(1, 3)
        padding = (rng.randint(0, 2), rng.randint(0, 2)) if k % 3 else rng.randint(0, 2)
        in_size = (h, w) if h != w or k % 2 else h
        dtype = torch.float64 if k % 4 == 0 else torch.float32
        g = torch.Generator().manual_seed(k)
        kernel = torch.randn(kh, kw, generator=g, dtype=dtype)
        x = torch.randn(h, w, generator=g, dtype=dtype)
        C = tconv.conv2d_matrix(kernel, in_size, stride=stride, padding=padding)
        y = F.conv2d(x[None, None], kernel[None, None], stride=stride, padding=padding)
        assert C.dtype == dtype
        assert C.shape == (y.numel(), h * w)
        torch.testing.assert_close(C @ x.flatten(), y.flatten())
        torch.testing.assert_close(C, _matrix_by_basis(kernel, h, w, stride, padding))


def test_adjoint_identity_transpose_of_C_is_conv_transpose2d():
    rng = random.Random(13)
    for k in range(60):
        kh, kw = rng.randint(1, 4), rng.randint(1, 4)
        h, w = rng.randint(kh, 8), rng.randint(kw, 8)
        s, p = (rng.randint(1, 3), rng.randint(1, 3)), (rng.randint(0, 1), rng.randint(0, 1))
        p = (min(p[0], kh - 1), min(p[1], kw - 1))  # conv_transpose2d needs padding < kernel
        kernel = torch.randn(kh, kw, dtype=torch.float64)
        C = tconv.conv2d_matrix(kernel, (h, w), stride=s, padding=p)
        h_out = (h + 2 * p[0] - kh) // s[0] + 1
        w_out = (w + 2 * p[1] - kw) // s[1] + 1
        y = torch.randn(h_out, w_out, dtype=torch.float64)
        # output_padding recovers the rows/columns that the forward floor division dropped.
        op = ((h + 2 * p[0] - kh) % s[0], (w + 2 * p[1] - kw) % s[1])
        for ct in (F.conv_transpose2d, tconv.conv_transpose2d):
            z = ct(y[None, None], kernel[None, None], stride=s, padding=p, output_padding=op)
            assert z.shape[-2:] == (h, w)
            torch.testing.assert_close(C.T @ y.flatten(), z.flatten())
        x = torch.randn(h, w, dtype=torch.float64)
        torch.testing.assert_close(torch.dot(C @ x.flatten(), y.flatten()),
                                   torch.dot(x.flatten(), C.T @ y.flatten()))


def test_conv2d_matrix_is_differentiable_and_keeps_device_and_dtype():
    kernel = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    C = tconv.conv2d_matrix(kernel, (4, 5), padding=1)
    assert C.dtype == torch.float64 and C.device == kernel.device
    C.sum().backward()
    # Each kernel tap appears once per output position where it lands inside the input.
    expected = _matrix_by_basis(torch.ones(2, 3, dtype=torch.float64), 4, 5, 1, 1)
    assert kernel.grad.sum().item() == pytest.approx(expected.sum().item())


def test_conv2d_matrix_errors():
    with pytest.raises(ValueError):
        tconv.conv2d_matrix(torch.randn(1, 3, 3), (4, 4))
    with pytest.raises(ValueError):
        tconv.conv2d_matrix(torch.randn(5, 5), (3, 3))
    with pytest.raises(TypeError):
        tconv.conv2d_matrix(torch.ones(2, 2, dtype=torch.long), (3, 3))
    with pytest.raises(ValueError):
        tconv.conv2d_matrix(torch.randn(2, 2), (3, 3), stride=0)


def test_zero_insert_and_the_zero_insertion_view():
    x = torch.arange(1.0, 7.0).view(1, 1, 2, 3)
    z = tconv.zero_insert(x, (2, 3))
    assert z.shape == (1, 1, 3, 7)
    assert torch.equal(z[0, 0, ::2, ::3], x[0, 0]) and z.sum() == x.sum()
    # conv_transpose2d == conv2d(zero-inserted, pad d(k-1)-p, flipped & channel-swapped kernel)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    s, p, op, d = 2, 1, 1, 1
    zi = tconv.zero_insert(x, s)
    pad = d * (3 - 1) - p
    zi = F.pad(zi, (pad, pad + op, pad, pad + op))
    via_conv = F.conv2d(zi, w.flip(-1, -2).transpose(0, 1), dilation=d)
    torch.testing.assert_close(via_conv, F.conv_transpose2d(x, w, stride=s, padding=p,
                                                            output_padding=op))


def test_checkerboard_coverage():
    uneven = tconv.checkerboard_coverage(3, 2, 5)
    even = tconv.checkerboard_coverage(4, 2, 5)
    assert uneven.shape == (11, 11) and even.shape == (12, 12)
    inner_uneven, inner_even = uneven[2:-2, 2:-2], even[2:-2, 2:-2]
    assert set(inner_uneven.unique().tolist()) == {1.0, 2.0, 4.0}   # a checkerboard
    assert inner_even.unique().tolist() == [4.0]                      # uniform: 2 x 2 taps
    assert uneven.sum() == 25 * 9 and even.sum() == 25 * 16           # every tap lands once


def test_device_mismatch_is_a_clear_error():
    # The "meta" device exists everywhere, so this path is tested without a GPU.
    x, w = torch.randn(1, 2, 3, 3), torch.randn(2, 1, 2, 2, device="meta")
    with pytest.raises(ValueError, match="same device"):
        tconv.conv_transpose2d(x, w)
    with pytest.raises(ValueError, match="same device"):
        tconv.conv_transpose2d(x, torch.randn(2, 1, 2, 2), torch.zeros(1, device="meta"))


def test_same_device_and_dtype_on_cpu():
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    w = torch.randn(2, 1, 2, 2, dtype=torch.float64)
    out = tconv.conv_transpose2d(x, w)
    assert out.device == x.device and out.dtype == torch.float64


@pytest.mark.gpu
def test_same_device_in_and_out_on_cuda():
    x = torch.randn(2, 3, 5, 5, device="cuda")
    w = torch.randn(3, 4, 3, 3, device="cuda")
    b = torch.randn(4, device="cuda")
    out = tconv.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
    assert out.device == x.device
    torch.testing.assert_close(out, F.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                       output_padding=1), atol=1e-4, rtol=1e-4)
    C = tconv.conv2d_matrix(torch.randn(3, 3, device="cuda"), (5, 5), stride=2)
    assert C.device == x.device
    with pytest.raises(ValueError, match="device"):
        tconv.conv_transpose2d(x, w.cpu())
