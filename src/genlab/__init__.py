"""genlab: helper library for the deep generative models labs.

Infrastructure: :mod:`genlab.config` (fast mode, data directory), :mod:`genlab.device`
(device choice, seeding), :mod:`genlab.data`, :mod:`genlab.training`, :mod:`genlab.plotting`,
:mod:`genlab.widgets`, :mod:`genlab.testing`; the lab registry :mod:`genlab.labs`; running the
course with nbgrader: :mod:`genlab.course`.
Reference implementations, one module per lab topic: :mod:`genlab.tconv`,
:mod:`genlab.autoencoder`, :mod:`genlab.denoising`, :mod:`genlab.vae`, :mod:`genlab.kl`,
:mod:`genlab.disentangle`, :mod:`genlab.dcgan`, :mod:`genlab.wgan`.
"""
from .config import budget, data_dir, fast_mode, gpu_budget, run_seed


def __getattr__(name):
    # genlab.device imports torch: load it on first use, so that torch-free parts (the CLI, the
    # grading sandbox's launcher) start fast and small.
    if name in ("get_device", "seed_everything"):
        from . import device
        return getattr(device, name)
    raise AttributeError(f"module 'genlab' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["budget", "data_dir", "fast_mode", "gpu_budget", "run_seed", "get_device", "seed_everything",
           "__version__"]
