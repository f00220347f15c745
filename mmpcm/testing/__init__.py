"""Tiny models, pipelines and data for tests, benchmarks and smoke runs.

Like ``torch.testing``, this package serves the code that checks mmpcm; no
module of the product imports it. Nothing here is downloaded: every model
has random weights.

* :mod:`~mmpcm.testing.models`: tiny CLIP and captioner configs, random
  concept vocabularies, a tiny regression model for Runner-level tests.
* :mod:`~mmpcm.testing.pipelines`: tiny diffusers Stable Diffusion and
  open_clip models saved to folders (imported on first use: it loads
  diffusers and transformers).
* :mod:`~mmpcm.testing.stores`: feature stores of random values.
* :mod:`~mmpcm.testing.smoke`: the data set of ``configs/pcm/pcm_smoke.py``.
"""
import importlib
from typing import Any

from .models import (TINY_CLIP_CFG, TINY_EMBED_DIM, TINY_NUM_PATCHES,
                     TINY_PATCH_DIM, TinyCaptioner, TinyRegressionDataset,
                     TinyRegressionModel, build_tiny_captioner,
                     random_concepts, tiny_captioner_cfg)
from .smoke import SMOKE_CAPTIONS, SMOKE_CONCEPTS, write_smoke_data
from .stores import make_random_feature_store

_PIPELINE_NAMES = ('TINY_SD_SIZE', 'TinyCLIPFiles', 'build_tiny_open_clip',
                   'build_tiny_sd_pipeline', 'save_tiny_open_clip',
                   'save_tiny_sd_pipeline', 'write_clip_tokenizer')

__all__ = [
    'TINY_CLIP_CFG', 'TINY_EMBED_DIM', 'TINY_NUM_PATCHES', 'TINY_PATCH_DIM',
    'TinyRegressionDataset', 'TinyRegressionModel', 'random_concepts',
    'tiny_captioner_cfg', 'TinyCaptioner', 'build_tiny_captioner',
    'SMOKE_CAPTIONS', 'SMOKE_CONCEPTS',
    'write_smoke_data', 'make_random_feature_store', *_PIPELINE_NAMES
]


def __getattr__(name: str) -> Any:
    """Import :mod:`~mmpcm.testing.pipelines` when one of its names is used.

    Raises:
        AttributeError: If ``name`` is not a public name of this package.
    """
    if name in _PIPELINE_NAMES:
        return getattr(importlib.import_module('.pipelines', __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
