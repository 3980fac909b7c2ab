"""genlab: helper library for the deep generative models labs.

Infrastructure: :mod:`genlab.config` (fast mode, data directory), :mod:`genlab.device`
(device choice, seeding), :mod:`genlab.data`, :mod:`genlab.training`, :mod:`genlab.plotting`,
:mod:`genlab.widgets`, :mod:`genlab.testing`, :mod:`genlab.grading`.
Reference implementations, one module per lab topic: :mod:`genlab.tconv`,
:mod:`genlab.autoencoder`, :mod:`genlab.denoising`, :mod:`genlab.vae`, :mod:`genlab.kl`,
:mod:`genlab.disentangle`, :mod:`genlab.dcgan`, :mod:`genlab.wgan`.
"""
from .config import budget, data_dir, fast_mode
from .device import get_device, seed_everything

__version__ = "0.1.0"
__all__ = ["budget", "data_dir", "fast_mode", "get_device", "seed_everything", "__version__"]
