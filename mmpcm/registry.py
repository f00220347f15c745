"""Registries mmpcm registers into.

mmpcm is an mmpretrain plugin: every component goes into mmpretrain's own
registries, so configs keep ``default_scope = 'mmpretrain'`` and mix mmpcm and
mmpretrain parts freely. Names must be unique there (mmpretrain already has
``COCOCaption``, ``BlipCaption``, ``LabelSmoothLoss``...), hence the ``PCM``
prefixes.
"""
from mmpcm.utils.compat import apply_compat_patches

apply_compat_patches()

from mmpretrain.registry import (DATASETS, FUNCTIONS, HOOKS,  # noqa: E402
                                 METRICS, MODELS, PARAM_SCHEDULERS,
                                 TRANSFORMS)

__all__ = [
    'DATASETS', 'FUNCTIONS', 'HOOKS', 'METRICS', 'MODELS', 'PARAM_SCHEDULERS',
    'TRANSFORMS'
]
