"""``generation_meta.json``: the image settings, recorded and checked on rerun.

What is recorded (and what is not): ``docs/generation_format.md``.
"""
import json
import logging
import os
import os.path as osp
from typing import Any, Dict

import torch

from mmpcm.utils.fileio import PathLike, atomic_write_json
from .captions import CaptionFile
from .config import (FORMAT_VERSION, JPEG_QUALITY, META_FILE, META_FORMAT,
                     SEED_RULE, GenerationConfig)
from .deps import require

logger = logging.getLogger(__name__)

__all__ = [
    'base_settings', 'pipeline_settings', 'read_generation_meta',
    'check_settings', 'write_or_check_meta'
]


def _json_normalise(value: Any) -> Any:
    """Round-trip through JSON so recorded and current values compare."""
    return json.loads(json.dumps(value, default=str))


def base_settings(config: GenerationConfig, model: str, dtype: str,
                  captions: CaptionFile) -> Dict[str, Any]:
    """Settings known before the pipeline is loaded."""
    return dict(
        model=model,
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        height=config.height,
        width=config.width,
        dtype=dtype,
        seed=config.seed,
        seed_rule=SEED_RULE,
        max_attempts=config.max_attempts,
        min_pixel_std=config.min_pixel_std,
        image_format=config.image_format,
        jpeg_quality=JPEG_QUALITY if config.image_format == 'jpg' else None,
        chunk_size=config.chunk_size,
        captions_sha256=captions.sha256,
        captions_num_lines=captions.num_lines)


def pipeline_settings(pipe: Any) -> Dict[str, Any]:
    """Settings read from the loaded pipeline."""
    scheduler_config = {
        k: v
        for k, v in dict(pipe.scheduler.config).items()
        if not k.startswith('_')
    }
    return dict(
        pipeline_class=type(pipe).__name__,
        scheduler=type(pipe.scheduler).__name__,
        scheduler_config=scheduler_config)


def _versions() -> Dict[str, str]:
    diffusers = require('diffusers')
    transformers = require('transformers')
    return dict(diffusers=diffusers.__version__, torch=torch.__version__,
                transformers=transformers.__version__)


def read_generation_meta(out_dir: PathLike) -> Dict[str, Any]:
    """Read ``<out>/generation_meta.json``.

    Raises:
        FileNotFoundError: If it does not exist.
        ValueError: If it is not a generation meta file.
    """
    path = osp.join(os.fspath(out_dir), META_FILE)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} not found: expected the output folder of '
            'tools/data/generate_images.py')
    with open(path, encoding='utf-8') as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f'{path}: not valid JSON ({err})') from None
    if not isinstance(meta, dict) or meta.get('format') != META_FORMAT:
        raise ValueError(f'{path}: not a {META_FORMAT!r} meta file')
    return meta


def check_settings(path: str, recorded: Dict[str, Any],
                   current: Dict[str, Any]) -> None:
    """Raise if any current setting differs from the recorded one."""
    current = _json_normalise(current)
    diff = [(k, recorded.get(k), v) for k, v in current.items()
            if recorded.get(k) != v]
    if diff:
        lines = '\n'.join(f'  {k}: recorded {a!r}, now {b!r}'
                          for k, a, b in diff)
        raise ValueError(
            f'{path}: this folder was generated with other settings:\n{lines}'
            '\nUse a new output folder (or the recorded settings to resume); '
            'mixing settings in one data set is refused.')


def write_or_check_meta(out_dir: str, settings: Dict[str, Any],
                        captions_file: str) -> None:
    """Record the settings, or check them against an earlier run's."""
    path = osp.join(out_dir, META_FILE)
    versions = _versions()
    if osp.isfile(path):
        meta = read_generation_meta(out_dir)
        check_settings(path, meta['settings'], settings)
        if meta.get('versions') != versions:
            logger.warning(f'{path}: recorded versions {meta.get("versions")}'
                           f' differ from the running ones {versions}')
        return
    atomic_write_json(path, dict(
        format=META_FORMAT, version=FORMAT_VERSION,
        settings=_json_normalise(settings), captions_file=captions_file,
        versions=versions))
