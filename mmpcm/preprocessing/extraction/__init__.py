"""CLIP features, caption embeddings and CLIP scores into a feature store.

:func:`extract_features` encodes images with the frozen CLIP image encoder
PCM-Net trains on and writes a :mod:`mmpcm.datasets.feature_store`;
``tools/data/extract_features.py`` is its command line. Inputs, decoding,
the rank parts and their merge are described in ``docs/extraction.md``.

Modules: :mod:`.items` (what to extract), :mod:`.clip_model` (the CLIP and
its tokenizer), :mod:`.loading` (reading images in workers), :mod:`.config`
(settings and summary), :mod:`.parts` (the output folder's bookkeeping),
:mod:`.rank_run` (one rank's run), :mod:`.merge` and :mod:`.extract`.
"""
from mmpcm.datasets.clip_transforms import (clip_image_transform,
                                            device_preprocess,
                                            device_transform_size)
from .clip_model import (CLIP_SCORE_TEXT, CLIPFeatureExtractor, CLIPSpec,
                         normalize_caption_for_clip)
from .config import (DECODE_MODES, ExtractionConfig, ExtractionSummary,
                     FailedImage)
from .extract import extract_features
from .items import (ExtractionItem, items_from_folder, items_from_generated,
                    items_from_list)
from .merge import merge_feature_parts
from .parts import part_dir

__all__ = [
    'CLIP_SCORE_TEXT', 'normalize_caption_for_clip', 'ExtractionItem',
    'items_from_generated', 'items_from_folder', 'items_from_list',
    'CLIPSpec', 'ExtractionConfig', 'FailedImage',
    'ExtractionSummary', 'CLIPFeatureExtractor', 'clip_image_transform',
    'device_preprocess', 'device_transform_size', 'DECODE_MODES',
    'extract_features', 'merge_feature_parts', 'part_dir'
]
