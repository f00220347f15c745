"""One synthetic image per caption with a diffusers text-to-image pipeline.

:func:`generate_images` makes them, resumable and sharded over torchrun
ranks; ``tools/data/generate_images.py`` is its command line. The output
folder, seeding, retries and sharding are described in
``docs/generation_format.md``.
"""
from .captions import CaptionFile, CaptionItem, SkippedLine, read_caption_file
from .config import (DEFAULT_COMPILE_MODE, DEFAULT_MODEL, DTYPES,
                     FORMAT_VERSION, IMAGE_FORMATS, IMAGES_DIR, JPEG_QUALITY,
                     META_FILE, META_FORMAT, RECORDS_DIR, RECORDS_FORMAT,
                     SEED_RULE, GenerationConfig)
from .deps import MissingPackageError
from .generate import generate_images
from .meta import read_generation_meta
from .pipeline import apply_speed_settings, load_pipeline, resolve_model_source
from .prompts import PromptTokens, prompt_tokens
from .records import (Attempt, GenerationSummary, ItemRecord, image_relpath,
                      load_generation_records, save_image)
from .sampling import PipelineImage, item_seed, pixel_std, run_pipeline

__all__ = [
    'CaptionItem', 'SkippedLine', 'CaptionFile', 'read_caption_file',
    'GenerationConfig', 'Attempt', 'ItemRecord', 'GenerationSummary',
    'PipelineImage', 'PromptTokens', 'item_seed', 'pixel_std',
    'resolve_model_source', 'load_pipeline', 'prompt_tokens',
    'run_pipeline', 'save_image', 'generate_images',
    'read_generation_meta', 'load_generation_records', 'image_relpath',
    'apply_speed_settings', 'MissingPackageError', 'DEFAULT_MODEL',
    'DEFAULT_COMPILE_MODE', 'DTYPES', 'IMAGE_FORMATS', 'JPEG_QUALITY',
    'META_FILE', 'IMAGES_DIR', 'RECORDS_DIR', 'META_FORMAT',
    'RECORDS_FORMAT', 'FORMAT_VERSION', 'SEED_RULE'
]
