"""Argument checks shared by the reference implementations: a wrong type or shape gets an
error that says what was expected and how to fix it, the same words in every lab."""
from __future__ import annotations

import operator

import torch


def float_tensor(x, name: str, *, images: bool = False, nonempty: bool = False) -> torch.Tensor:
    """``x`` itself if it is a floating-point tensor; else ``TypeError`` (``ValueError`` for an
    empty one when ``nonempty``). ``images=True`` adds how to convert 0..255 integer images."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = (f" of images in [0, 1], got {x.dtype}; convert it with {name}.float() (and divide "
                "by 255 if it holds 0..255)") if images else f", got {x.dtype}"
        raise TypeError(f"{name} must be a floating-point tensor{hint}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{name} is empty")
    return x


def as_int(value, name: str) -> int:
    """``value`` as a Python int; bools, floats and other non-integers raise TypeError."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        raise TypeError(f"{name} must be an int, got a floating-point tensor")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


def generator_or_none(generator) -> torch.Generator | None:
    """``generator`` if it is a ``torch.Generator`` or None; else TypeError."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator
