"""genlab.dsprites: the factor grid against NumPy's unravel_index, the images against what the
factors promise (area grows with scale as scale², centroids follow positions, rotation keeps the
area and turns the sprite, mirror symmetry at orientation 0), determinism and the caches."""
import math

import numpy as np
import pytest
import torch

from genlab import dsprites as ds
from genlab.testing import devices


def _classes(rows):
    return torch.tensor(rows, dtype=torch.long)


def _area(images):
    return images.flatten(1).sum(1)


def _centroid(images):
    """(column, row) of each image's centre of mass, in pixel-centre coordinates (j + 0.5)."""
    coords = torch.arange(64, dtype=torch.float64) + 0.5
    img = images[:, 0].double()
    mass = img.sum((1, 2))
    return (img.sum(1) @ coords) / mass, (img.sum(2) @ coords) / mass


# --------------------------------------------------------------------------- the factor grid

def test_factor_grid_matches_the_original_dsprites():
    assert ds.FACTOR_NAMES == ("shape", "scale", "orientation", "posX", "posY")
    assert ds.FACTOR_SIZES == (3, 6, 40, 32, 32)
    assert ds.N_IMAGES == 737_280 == 3 * 6 * 40 * 32 * 32
    values = ds.factor_values()
    assert list(values) == list(ds.FACTOR_NAMES)
    np.testing.assert_allclose(values["shape"].numpy(), [1, 2, 3])
    np.testing.assert_allclose(values["scale"].numpy(), np.linspace(0.5, 1, 6))
    np.testing.assert_allclose(values["orientation"].numpy(), np.linspace(0, 2 * np.pi, 40))
    assert values["orientation"][0] == 0 and values["orientation"][-1] == pytest.approx(2 * math.pi)
    for name in ("posX", "posY"):
        np.testing.assert_allclose(values[name].numpy(), np.linspace(0, 1, 32))


def test_flat_index_has_the_last_factor_fastest():
    rng = np.random.default_rng(0)
    idx = np.concatenate([[0, 1, 31, 32, 1023, 1024, ds.N_IMAGES - 1],
                          rng.integers(0, ds.N_IMAGES, 500)])
    classes = ds.index_to_classes(torch.from_numpy(idx))
    expected = np.stack(np.unravel_index(idx, ds.FACTOR_SIZES), axis=1)   # C order: last fastest
    np.testing.assert_array_equal(classes.numpy(), expected)
    assert classes[1].tolist() == [0, 0, 0, 0, 1]
    assert classes[6].tolist() == [s - 1 for s in ds.FACTOR_SIZES]
    torch.testing.assert_close(ds.classes_to_index(classes), torch.from_numpy(idx))


def test_classes_to_values():
    values = ds.classes_to_values(_classes([[0, 0, 0, 0, 0], [2, 5, 39, 31, 31], [1, 2, 10, 3, 7]]))
    assert values.dtype == torch.float64
    np.testing.assert_allclose(values[0].numpy(), [1, 0.5, 0, 0, 0])
    np.testing.assert_allclose(values[1].numpy(), [3, 1, 2 * np.pi, 1, 1])
    np.testing.assert_allclose(values[2].numpy(), [2, 0.7, 10 * 2 * np.pi / 39, 3 / 31, 7 / 31])


def test_bad_indices_and_classes_are_refused():
    with pytest.raises(ValueError):
        ds.render([ds.N_IMAGES])
    with pytest.raises(ValueError):
        ds.render([-1])
    with pytest.raises(TypeError):
        ds.render(torch.tensor([1.0]))
    with pytest.raises(ValueError):
        ds.render_classes(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError):
        ds.render_classes(_classes([[3, 0, 0, 0, 0]]))
    with pytest.raises(TypeError):
        ds.render_classes(torch.zeros(2, 5))
    with pytest.raises(TypeError):
        ds.render([0], dtype=torch.int32)


# --------------------------------------------------------------------------- the images

def test_images_are_binary_and_every_dtype_agrees():
    idx = torch.arange(0, ds.N_IMAGES, 997)
    x = ds.render(idx)
    assert x.shape == (len(idx), 1, 64, 64) and x.dtype == torch.float32
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert (_area(x) > 0).all()
    for dtype in (torch.uint8, torch.bool, torch.float64):
        torch.testing.assert_close(ds.render(idx, dtype=dtype).to(torch.float32), x)


def test_area_grows_with_scale_as_its_square():
    for shape in range(3):
        for orientation in (0, 7, 23):
            rows = [[shape, s, orientation, 16, 16] for s in range(6)]
            area = _area(ds.render_classes(_classes(rows)))
            assert (area[1:] > area[:-1]).all(), (shape, orientation, area)
            scales = ds.factor_values()["scale"]
            # the linear size sqrt(area) is proportional to the scale, up to a pixel of rounding
            side = area.double().sqrt()
            np.testing.assert_allclose(side.numpy(), (side[-1] * scales).numpy(), rtol=0, atol=1.0)


def test_sprite_sizes_fit_the_frame_at_scale_one():
    """At scale 1 a sprite spans 15-21 pixels; at every orientation and at the extreme positions
    it stays inside the 64 x 64 frame (nothing on the border rows and columns)."""
    for shape in range(3):
        img = ds.render_classes(_classes([[shape, 5, 0, 16, 16]]))[0, 0]
        rows, cols = img.nonzero(as_tuple=True)
        assert 15 <= cols.max() - cols.min() + 1 <= 21
    rows = [[s, 5, o, px, py] for s in range(3) for o in range(40) for px in (0, 31) for py in (0, 31)]
    x = ds.render_classes(_classes(rows))[:, 0]
    border = x[:, 0, :].sum() + x[:, -1, :].sum() + x[:, :, 0].sum() + x[:, :, -1].sum()
    assert border == 0


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_centroid_follows_position(shape):
    rows = [[shape, 3, 5, px, py] for px in range(0, 32, 3) for py in range(0, 32, 5)]
    classes = _classes(rows)
    cx, cy = _centroid(ds.render_classes(classes))
    values = ds.classes_to_values(classes)
    px, py = values[:, 3], values[:, 4]
    # centre column 12 + 40 posX (left to right), centre row 12 + 40 posY (top to bottom)
    slope_x = np.polyfit(px.numpy(), cx.numpy(), 1)[0]
    slope_y = np.polyfit(py.numpy(), cy.numpy(), 1)[0]
    assert slope_x == pytest.approx(40, rel=0.03) and slope_y == pytest.approx(40, rel=0.03)
    if shape < 2:  # square and ellipse are centrally symmetric: the centroid is the centre
        assert (cx - (12 + 40 * px)).abs().max() < 0.35
        assert (cy - (12 + 40 * py)).abs().max() < 0.35
    # moving along x leaves the row of the centroid alone, and vice versa
    same_y = classes[:, 4] == 0
    assert cy[same_y].std() < 0.3


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_rotation_preserves_area(shape):
    for scale in (0, 5):
        area = _area(ds.render_classes(_classes([[shape, scale, o, 10, 20] for o in range(40)])))
        spread = (area.max() - area.min()) / area.mean()
        assert spread < (0.25 if scale == 0 else 0.12), (shape, scale, area)


def test_rotation_turns_the_sprite():
    """The ellipse is wide at orientation 0, tall a quarter turn later, wide again at pi, and
    the first and last orientations (0 and 2 pi) give the same image, as in the original."""
    def extent(o, shape=1):
        img = ds.render_classes(_classes([[shape, 5, o, 16, 16]]))[0, 0]
        rows, cols = img.nonzero(as_tuple=True)
        return (cols.max() - cols.min()).item(), (rows.max() - rows.min()).item()
    w0, h0 = extent(0)
    w90, h90 = extent(10)          # 10 / 39 * 2 pi: 92 degrees
    assert w0 > 1.6 * h0 and h90 > 1.6 * w90
    first_last = ds.render_classes(_classes([[s, 5, o, 7, 9] for s in range(3) for o in (0, 39)]))
    torch.testing.assert_close(first_last[0::2], first_last[1::2])
    # the heart turns too: its lobes sit above its tip at 0, below it half a turn later
    heart = ds.render_classes(_classes([[2, 5, 0, 16, 16], [2, 5, 20, 16, 16]]))[:, 0]
    _, cy = _centroid(heart[:, None])
    assert cy[0] < 12 + 40 * 16 / 31 < cy[1]


def test_shapes_look_right_at_orientation_zero():
    """Mirror symmetric about the vertical axis through the centre (column 12 at posX = 0);
    the square and ellipse also about the horizontal one; the heart is not (lobes up, tip down)."""
    x = ds.render_classes(_classes([[s, 5, 0, 0, 0] for s in range(3)]))[:, 0]
    torch.testing.assert_close(x[:, :, :24], x[:, :, :24].flip(-1))
    torch.testing.assert_close(x[:2, :24], x[:2, :24].flip(-2))
    heart = x[2]
    assert heart[:12].sum() > 1.2 * heart[12:24].sum()          # more ink above the centre row
    square, ellipse = x[0], x[1]
    assert square.sum() == 16 * 16                               # half side 0.8 * 10 pixels
    assert ellipse.sum() == pytest.approx(math.pi * 10 * 5, rel=0.05)
    # the square fills its bounding box, the ellipse and heart do not
    for img, full in ((square, True), (ellipse, False), (heart, False)):
        rows, cols = img.nonzero(as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert (img.sum() == box) == full


# --------------------------------------------------------------------------- determinism, caches

def test_rendering_is_deterministic_and_chunk_independent():
    idx = torch.randint(0, ds.N_IMAGES, (5000,), generator=torch.Generator().manual_seed(3))
    a, b = ds.render(idx), ds.render(idx)
    assert torch.equal(a, b)
    one_by_one = torch.cat([ds.render(idx[i:i + 1]) for i in range(0, 5000, 611)])
    assert torch.equal(one_by_one, a[::611])
    assert torch.equal(ds.render_classes(ds.index_to_classes(idx)), a)


def test_sample_is_reproducible_and_distinct():
    x1, c1 = ds.sample(300, generator=torch.Generator().manual_seed(0))
    torch.rand(5)
    x2, c2 = ds.sample(300, generator=torch.Generator().manual_seed(0))
    x3, c3 = ds.sample(300, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x1, x2) and torch.equal(c1, c2)
    assert not torch.equal(c1, c3)
    assert len(torch.unique(ds.classes_to_index(c1))) == 300
    assert torch.equal(ds.render_classes(c1), x1)
    s = ds.sample_classes(20_000, generator=torch.Generator().manual_seed(0))
    for k, size in enumerate(ds.FACTOR_SIZES):
        counts = torch.bincount(s[:, k], minlength=size).double()
        assert counts.min() > 0.7 * 20_000 / size            # roughly uniform over every factor


def test_subset_is_cached_in_memory_and_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path))
    ds.clear_memory_cache()
    x, c = ds.subset(200, seed=5)
    files = list((tmp_path / "dsprites").glob("*.pt"))
    assert len(files) == 1
    x[:] = 0                                     # the caller's copy, not the cache
    again, c_again = ds.subset(200, seed=5)
    assert torch.equal(c_again, c) and again.sum() > 0
    ds.clear_memory_cache()
    from_disk, c_disk = ds.subset(200, seed=5, dtype=torch.bool)
    fresh, c_fresh = ds.sample(200, generator=torch.Generator().manual_seed(5))
    assert torch.equal(from_disk, fresh.bool()) and torch.equal(c_disk, c_fresh)
    ds.clear_memory_cache()


def test_pack_and_unpack_round_trip():
    x = ds.render(torch.arange(100, 5000, 37), dtype=torch.uint8)
    bits = ds._pack(x)
    assert bits.shape == (len(x), 512) and bits.dtype == torch.uint8
    assert torch.equal(ds.unpack(bits), x)
    with pytest.raises(ValueError):
        ds.unpack(torch.zeros(3, 100, dtype=torch.uint8))


@pytest.mark.parametrize("device", devices(), ids=lambda d: d.type)
def test_renders_on_every_device(device):
    idx = torch.arange(0, ds.N_IMAGES, 7919)
    x = ds.render(idx.to(device))
    assert x.device.type == device.type
    cpu = ds.render(idx)
    # float rounding may move a pixel exactly on a boundary; nothing more
    assert (x.cpu() != cpu).sum() <= 0.001 * cpu.numel()


def test_shrink_is_the_covered_share_of_each_block():
    """Oracle: the mean of each 2 x 2 (or 4 x 4) block, written with reshape instead of pooling."""
    images = ds.render(torch.arange(0, 737_280, 99_991), dtype=torch.uint8)
    for size in (32, 16):
        k = 64 // size
        want = images.float().reshape(len(images), 1, size, k, size, k).mean((3, 5))
        got = ds.shrink(images, size)
        assert got.dtype == torch.float32 and got.shape == (len(images), 1, size, size)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got.sum((1, 2, 3)) * k * k, images.float().sum((1, 2, 3)))
    assert set(ds.shrink(images).unique().tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    torch.testing.assert_close(ds.shrink(images, 64), images.float())
    with pytest.raises(ValueError, match="divisor"):
        ds.shrink(images, 24)
    with pytest.raises(ValueError, match="expected dSprites images"):
        ds.shrink(images[:, :, :32, :32])


def test_sample_classes_can_hold_factors_fixed():
    free = ds.sample_classes(500, generator=torch.Generator().manual_seed(5))
    held = ds.sample_classes(500, generator=torch.Generator().manual_seed(5),
                             fixed={"shape": 0, "orientation": 3})
    assert (held[:, 0] == 0).all() and (held[:, 2] == 3).all()
    torch.testing.assert_close(held[:, [1, 3, 4]], free[:, [1, 3, 4]])   # the same draws otherwise
    assert ds.varying_factors({"shape": 0, "orientation": 3}) == [1, 3, 4]
    assert ds.varying_factors() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="unknown factor"):
        ds.sample_classes(3, fixed={"colour": 0})
    with pytest.raises(ValueError, match="0..2"):
        ds.sample_classes(3, fixed={"shape": 3})
    with pytest.raises(ValueError, match="at least one factor"):
        ds.sample_classes(3, fixed={name: 0 for name in ds.FACTOR_NAMES})
