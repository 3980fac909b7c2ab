"""Reproducible samples from ``torch.distributions``: a tool of lab 05_kl_divergence.

It lives apart from :mod:`genlab.kl` (the lab's reference answers), so that the lab's set-up
can import it while a graded kernel has no access to the answers.
"""
from __future__ import annotations

import torch
from torch.distributions import Distribution

__all__ = ["draw_samples"]


def draw_samples(dist: Distribution, n: int, generator: torch.Generator | None = None):
    """``dist.sample((n,))``, made reproducible by ``generator`` (on any device).

    ``torch.distributions`` samples from the global random state and takes no generator. With
    one, this draws a seed from ``generator`` and samples inside :func:`torch.random.fork_rng`,
    so the same generator state gives the same samples and the global state is left untouched.
    """
    if generator is None:
        return dist.sample((n,))
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        # not torch.manual_seed: before CUDA starts, it records a stack trace for each of three
        # kinds of device it would seed later (1 ms each); only the CPU and CUDA ones matter
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed_all(seed)
        return dist.sample((n,))
