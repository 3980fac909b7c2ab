"""genlab.config (environment settings) and genlab.device (device choice, seeding)."""
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab import config, device

# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------

TRUE_VALUES = ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " 1 ", "yes\n"]
FALSE_VALUES = ["0", "", "   ", "false", "no", "off", "2", "y", "enabled"]


@pytest.mark.parametrize("value", TRUE_VALUES)
def test_fast_mode_on(monkeypatch, value):
    monkeypatch.setenv("GENLAB_FAST", value)
    assert config.fast_mode() is True


@pytest.mark.parametrize("value", FALSE_VALUES)
def test_fast_mode_off(monkeypatch, value):
    monkeypatch.setenv("GENLAB_FAST", value)
    assert config.fast_mode() is False


def test_fast_mode_unset_is_off(monkeypatch):
    monkeypatch.delenv("GENLAB_FAST", raising=False)
    assert config.fast_mode() is False


def test_fast_mode_is_read_at_call_time(monkeypatch):
    monkeypatch.setenv("GENLAB_FAST", "1")
    assert config.fast_mode()
    monkeypatch.setenv("GENLAB_FAST", "0")
    assert not config.fast_mode()


def test_budget_follows_fast_mode(monkeypatch):
    monkeypatch.setenv("GENLAB_FAST", "1")
    assert config.budget(default=10, fast=1) == 1
    assert config.budget(200, 3) == 3
    monkeypatch.setenv("GENLAB_FAST", "0")
    assert config.budget(default=10, fast=1) == 10
    monkeypatch.delenv("GENLAB_FAST")
    assert config.budget(200, 3) == 200


def test_budget_returns_the_objects_unchanged(monkeypatch):
    default, fast = {"epochs": 10}, {"epochs": 1}
    monkeypatch.setenv("GENLAB_FAST", "yes")
    assert config.budget(default, fast) is fast
    monkeypatch.setenv("GENLAB_FAST", "no")
    assert config.budget(default, fast) is default


@pytest.mark.parametrize("dev, fast, no_gpu, expected", [
    ("cpu", "0", "", "default"),
    ("cuda", "0", "", "gpu"),
    ("cuda", "1", "", "fast"),            # fast mode wins, also on a GPU
    ("cuda", "0", "1", "default"),        # GENLAB_NO_GPU_BUDGET keeps the CPU budget
])
def test_budget_has_a_gpu_tier(monkeypatch, dev, fast, no_gpu, expected):
    monkeypatch.setattr(device, "get_device", lambda prefer=None: torch.device(dev))
    monkeypatch.setenv("GENLAB_FAST", fast)
    monkeypatch.setenv("GENLAB_NO_GPU_BUDGET", no_gpu)
    tiers = {"default": object(), "fast": object(), "gpu": object()}
    assert config.budget(**tiers) is tiers[expected]
    assert config.gpu_budget() is (expected == "gpu")
    # without a gpu tier, a GPU gets the default budget
    assert config.budget(default=tiers["default"], fast=tiers["fast"]) is \
        tiers["fast" if expected == "fast" else "default"]


def test_budget_gpu_tier_may_be_none(monkeypatch):
    """None means "the whole data set" in the notebooks, so it must be a value, not "unset"."""
    monkeypatch.setattr(device, "get_device", lambda prefer=None: torch.device("cuda"))
    monkeypatch.setenv("GENLAB_FAST", "0")
    monkeypatch.delenv("GENLAB_NO_GPU_BUDGET", raising=False)
    assert config.budget(default=5000, fast=256, gpu=None) is None


def test_grader_memory_limit_setting(monkeypatch):
    monkeypatch.delenv("GENLAB_GRADER_MEMORY_GB", raising=False)
    assert config.grader_memory_gb() == 8.0
    monkeypatch.setenv("GENLAB_GRADER_MEMORY_GB", "2.5")
    assert config.grader_memory_gb() == 2.5
    monkeypatch.setenv("GENLAB_GRADER_MEMORY_GB", "lots")
    with pytest.raises(ValueError, match="GENLAB_GRADER_MEMORY_GB"):
        config.grader_memory_gb()


@pytest.mark.parametrize("no, yes, expected", [("1", "", False), ("", "1", True), ("", "", None)])
def test_widgets_override(monkeypatch, no, yes, expected):
    monkeypatch.setenv("GENLAB_NO_WIDGETS", no)
    monkeypatch.setenv("GENLAB_WIDGETS", yes)
    assert config.widgets_override() is expected


@pytest.mark.parametrize("value", TRUE_VALUES)
def test_offline_on(monkeypatch, value):
    monkeypatch.setenv("GENLAB_OFFLINE", value)
    assert config.offline() is True


@pytest.mark.parametrize("value", FALSE_VALUES)
def test_offline_off(monkeypatch, value):
    monkeypatch.setenv("GENLAB_OFFLINE", value)
    assert config.offline() is False


def test_offline_unset_is_off(monkeypatch):
    monkeypatch.delenv("GENLAB_OFFLINE", raising=False)
    assert config.offline() is False


def test_offline_and_fast_are_independent(monkeypatch):
    monkeypatch.setenv("GENLAB_FAST", "1")
    monkeypatch.setenv("GENLAB_OFFLINE", "0")
    assert config.fast_mode() and not config.offline()
    monkeypatch.setenv("GENLAB_FAST", "0")
    monkeypatch.setenv("GENLAB_OFFLINE", "1")
    assert config.offline() and not config.fast_mode()


def test_data_dir_honours_genlab_data(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "mydata"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # GENLAB_DATA wins
    assert config.data_dir() == tmp_path / "mydata"


def test_data_dir_expands_tilde(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GENLAB_DATA", "~/genlab-data")
    result = config.data_dir()
    assert isinstance(result, Path)
    assert "~" not in str(result)
    assert result == tmp_path / "genlab-data"


def test_data_dir_uses_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.delenv("GENLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.data_dir() == tmp_path / "xdg" / "genlab"


def test_data_dir_empty_genlab_data_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_DATA", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.data_dir() == tmp_path / "xdg" / "genlab"


def test_data_dir_default_is_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("GENLAB_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.data_dir() == tmp_path / ".cache" / "genlab"


def test_data_dir_does_not_create_anything(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "not-yet"))
    config.data_dir()
    assert not (tmp_path / "not-yet").exists()


def test_device_override(monkeypatch):
    monkeypatch.delenv("GENLAB_DEVICE", raising=False)
    assert config.device_override() is None
    monkeypatch.setenv("GENLAB_DEVICE", "  ")
    assert config.device_override() is None
    monkeypatch.setenv("GENLAB_DEVICE", " cpu ")
    assert config.device_override() == "cpu"


# --------------------------------------------------------------------------------------------
# get_device
# --------------------------------------------------------------------------------------------

@pytest.fixture
def no_override(monkeypatch):
    monkeypatch.delenv("GENLAB_DEVICE", raising=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_get_device_is_cpu_here(no_override, monkeypatch):
    monkeypatch.setattr(device, "_mps_available", lambda: False)
    result = device.get_device()
    assert isinstance(result, torch.device)
    assert result.type == "cpu"


def test_get_device_prefer_cpu(no_override):
    assert device.get_device(prefer="cpu") == torch.device("cpu")
    assert device.get_device("cpu").type == "cpu"


def test_get_device_prefer_cpu_even_when_cuda_is_there(no_override, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.get_device(prefer="cpu").type == "cpu"


def test_get_device_env_cpu(monkeypatch):
    monkeypatch.setenv("GENLAB_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device, "_mps_available", lambda: True)
    assert device.get_device().type == "cpu"


def test_get_device_prefer_beats_env(monkeypatch):
    monkeypatch.setenv("GENLAB_DEVICE", "cuda")
    assert device.get_device(prefer="cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_get_device_prefer_cuda_without_cuda_raises(no_override, name):
    with pytest.raises(RuntimeError) as info:
        device.get_device(prefer=name)
    message = str(info.value)
    assert name in message
    assert "CUDA is not available" in message
    assert "cpu" in message  # tells the user the way out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_get_device_env_cuda_without_cuda_raises(monkeypatch):
    monkeypatch.setenv("GENLAB_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="GENLAB_DEVICE"):
        device.get_device()


def test_get_device_prefer_mps_without_mps_raises(no_override, monkeypatch):
    monkeypatch.setattr(device, "_mps_available", lambda: False)
    with pytest.raises(RuntimeError, match="MPS"):
        device.get_device(prefer="mps")


def test_get_device_picks_cuda_when_available(no_override, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device, "_mps_available", lambda: True)  # CUDA comes first
    assert device.get_device().type == "cuda"


def test_get_device_explicit_cuda_when_available(no_override, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.get_device(prefer="cuda:1") == torch.device("cuda:1")


def test_get_device_picks_mps_when_only_mps(no_override, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_mps_available", lambda: True)
    assert device.get_device().type == "mps"


def test_get_device_falls_back_to_cpu(no_override, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_mps_available", lambda: False)
    assert device.get_device().type == "cpu"


def test_mps_available_returns_bool():
    assert isinstance(device._mps_available(), bool)


@pytest.mark.gpu
def test_get_device_is_cuda_when_available(no_override):
    assert device.get_device().type == "cuda"
    assert device.describe().startswith("cuda (")


# --------------------------------------------------------------------------------------------
# seed_everything
# --------------------------------------------------------------------------------------------

def _draws():
    return (torch.rand(5), np.random.rand(5), [random.random() for _ in range(5)])


@pytest.fixture
def restore_hashseed(monkeypatch):
    # seed_everything writes PYTHONHASHSEED; make monkeypatch put the old value back.
    monkeypatch.setenv("PYTHONHASHSEED", "0")


def test_seed_everything_same_seed_same_draws(restore_hashseed):
    device.seed_everything(123)
    t1, n1, r1 = _draws()
    device.seed_everything(123)
    t2, n2, r2 = _draws()
    assert torch.equal(t1, t2)
    np.testing.assert_array_equal(n1, n2)
    assert r1 == r2


def test_seed_everything_different_seed_different_draws(restore_hashseed):
    device.seed_everything(1)
    t1, n1, r1 = _draws()
    device.seed_everything(2)
    t2, n2, r2 = _draws()
    assert not torch.equal(t1, t2)
    assert not np.array_equal(n1, n2)
    assert r1 != r2


def test_seed_everything_returns_seeded_generator(restore_hashseed):
    gen = device.seed_everything(7)
    assert isinstance(gen, torch.Generator)
    assert gen.initial_seed() == 7
    assert gen.device.type == "cpu"
    expected = torch.rand(4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.rand(4, generator=gen), expected)


def test_seed_everything_generator_is_independent_of_global_stream(restore_hashseed):
    gen = device.seed_everything(7)
    torch.rand(100)  # consuming the global stream does not move the returned generator
    expected = torch.rand(4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.rand(4, generator=gen), expected)


def test_seed_everything_default_seed_is_zero(restore_hashseed):
    gen = device.seed_everything()
    assert gen.initial_seed() == 0
    a = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(a, torch.rand(3))


def test_seed_everything_large_seed_ok(restore_hashseed):
    gen = device.seed_everything(2**40 + 5)  # numpy only takes 32 bits; must not raise
    assert gen.initial_seed() == 2**40 + 5


def test_seed_everything_sets_pythonhashseed(restore_hashseed):
    import os
    device.seed_everything(42)
    assert os.environ["PYTHONHASHSEED"] == "42"


@pytest.mark.parametrize("seed", [1.0, 1.5, "3", None, True, False, np.float64(2.0)])
def test_seed_everything_rejects_non_int(restore_hashseed, seed):
    with pytest.raises(TypeError, match="seed must be an int"):
        device.seed_everything(seed)


def test_seed_everything_deterministic(restore_hashseed):
    before = torch.are_deterministic_algorithms_enabled()
    benchmark = torch.backends.cudnn.benchmark
    try:
        device.seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.use_deterministic_algorithms(before)
        torch.backends.cudnn.benchmark = benchmark


# --------------------------------------------------------------------------------------------
# describe
# --------------------------------------------------------------------------------------------

def test_describe_cpu():
    text = device.describe(torch.device("cpu"))
    assert text.startswith("cpu")
    assert f"{torch.get_num_threads()} thread" in text


def test_describe_default_names_cpu_when_forced(monkeypatch):
    monkeypatch.setenv("GENLAB_DEVICE", "cpu")
    assert "cpu" in device.describe()


def test_describe_other_device_type():
    assert device.describe(torch.device("meta")) == "meta"


def test_model_device_reads_parameters_then_buffers_else_cpu():
    assert device.model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert device.model_device(torch.nn.ReLU()) == torch.device("cpu")        # nothing to read
    only_buffers = torch.nn.BatchNorm1d(3, affine=False)
    assert device.model_device(only_buffers) == torch.device("cpu")
    if torch.cuda.is_available():
        assert device.model_device(torch.nn.Linear(2, 2).cuda()).type == "cuda"


def test_run_seed(monkeypatch):
    monkeypatch.delenv("GENLAB_SEED", raising=False)
    assert config.run_seed() == 0
    monkeypatch.setenv("GENLAB_SEED", " 3 ")
    assert config.run_seed() == 3
    for bad in ("-1", "1.5", "three"):
        monkeypatch.setenv("GENLAB_SEED", bad)
        with pytest.raises(ValueError, match="GENLAB_SEED must be a non-negative integer"):
            config.run_seed()
