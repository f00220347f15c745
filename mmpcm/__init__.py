"""mmpcm: PCM-Net zero-shot image captioning as an mmpretrain plugin.

Importing mmpcm applies the compatibility fixes of :mod:`mmpcm.utils.compat`
first, then registers every component in mmpretrain's registries.
"""
from .registry import MODELS  # noqa: F401  (applies compat patches first)
from . import datasets, engine, evaluation, models  # noqa: E402,F401
from .version import __version__  # noqa: E402

__all__ = ['__version__']
