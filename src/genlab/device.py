"""Choosing the device and making runs reproducible."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from . import config


def get_device(prefer: str | None = None) -> torch.device:
    """The device to compute on: ``prefer`` or ``$GENLAB_DEVICE`` if given, else CUDA, then
    Apple MPS, then CPU."""
    name = prefer or config.device_override()
    if name:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} was asked for but CUDA is not available here; "
                               "unset GENLAB_DEVICE or use 'cpu'")
        if device.type == "mps" and not _mps_available():
            raise RuntimeError(f"device {name!r} was asked for but Apple MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters (or buffers) are on; CPU for a model without any."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices); return a CPU ``torch.Generator`` seeded
    the same way, for code that wants its own random stream.

    ``deterministic=True`` also asks PyTorch for deterministic kernels (slower on GPU).
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)  # for subprocesses started from here
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def describe(device: torch.device | None = None) -> str:
    """One line naming the device, e.g. 'cuda (NVIDIA H100, 80 GB)' or 'cpu (2 threads)'."""
    device = device or get_device()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


@contextlib.contextmanager
def one_cpu_thread():
    """Inside the block, torch computes on one CPU thread (the number before is restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
