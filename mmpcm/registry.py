"""Registries mmpcm registers into.

mmpcm is an mmpretrain plugin: every component goes into mmpretrain's own
registries, so configs keep ``default_scope = 'mmpretrain'`` and mix mmpcm and
mmpretrain parts freely. Names must be unique there (mmpretrain already has
``COCOCaption``, ``BlipCaption``, ``LabelSmoothLoss``...), hence the ``PCM``
prefixes. mmpretrain has no ``FUNCTIONS`` registry of its own; collate
functions go into mmengine's, where the Runner looks them up.

Importing this module only names the registries: it registers nothing and
changes no library. :func:`mmpcm.setup_env.register_all_modules` does both.
"""
from mmengine.registry import FUNCTIONS
from mmpretrain.registry import (DATASETS, HOOKS, METRICS, MODELS,
                                 PARAM_SCHEDULERS, TRANSFORMS)

__all__ = [
    'DATASETS', 'FUNCTIONS', 'HOOKS', 'METRICS', 'MODELS', 'PARAM_SCHEDULERS',
    'TRANSFORMS'
]
