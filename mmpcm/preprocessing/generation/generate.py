"""The entry point: :func:`generate_images`, one image per caption."""
import logging
import os
import os.path as osp
from typing import Any, Optional

from tqdm import tqdm

from mmpcm.preprocessing.sharding import (RankInfo, device_for_rank,
                                          get_rank_info)
from mmpcm.utils.fileio import PathLike
from .captions import read_caption_file
from .chunks import done_indices, rank_items, run_chunks
from .config import META_FILE, GenerationConfig
from .meta import (base_settings, check_settings, pipeline_settings,
                   read_generation_meta, write_or_check_meta)
from .pipeline import (apply_speed_settings, describe_speed, load_pipeline,
                       resolve_dtype, resolve_model_source)
from .prompts import token_limit
from .records import GenerationSummary

logger = logging.getLogger(__name__)

__all__ = ['generate_images']


def generate_images(captions_file: PathLike,
                    out_dir: PathLike,
                    config: GenerationConfig = GenerationConfig(),
                    rank_info: Optional[RankInfo] = None,
                    progress: bool = True,
                    pipeline: Optional[Any] = None) -> GenerationSummary:
    """Generate one image per caption (this rank's share), resumably.

    Args:
        captions_file (str | PathLike): One caption per line.
        out_dir (str | PathLike): Output folder (layout in the module doc).
        config (GenerationConfig): Model and sampling settings. Defaults to
            ``GenerationConfig()`` (SD v1.5, 50 steps, guidance 7.5, 512 px).
        rank_info (RankInfo, optional): Defaults to the torchrun environment
            (:func:`~mmpcm.preprocessing.sharding.get_rank_info`).
        progress (bool): Show a tqdm progress bar. Defaults to True.
        pipeline (Any, optional): An already built text-to-image pipeline
            with diffusers' call interface, used instead of loading
            ``config.model`` (which then only names it in the metadata).
            The speed settings of ``config`` are applied to it in place
            (:func:`apply_speed_settings`; nothing when they are off).
            Defaults to None.

    Returns:
        GenerationSummary: Counts of this rank's run, the cut prompts
        included (``truncated_prompts``; also logged).

    Raises:
        FileNotFoundError: If the model folder or caption file is missing
            (before anything is written).
        InputError: If the caption file has no caption, or is not text
            (before the pipeline is loaded and anything is written).
        ValueError: If ``out_dir`` holds images generated with other
            settings or another caption file (speed settings, batch size
            and device may differ), or a speed setting is asked of a
            pipeline without a UNet.
    """
    out_dir = os.fspath(out_dir)
    model = (config.model if pipeline is not None else
             resolve_model_source(config.model)[0])
    captions = read_caption_file(captions_file)
    info = rank_info or get_rank_info()
    device = device_for_rank(info, config.device)
    dtype = resolve_dtype(config.dtype, device)
    settings = base_settings(config, model, dtype, captions)
    if osp.isfile(osp.join(out_dir, META_FILE)):  # fail before loading
        check_settings(osp.join(out_dir, META_FILE),
                       read_generation_meta(out_dir)['settings'], settings)
    items = rank_items(captions, config.chunk_size, info)
    done = done_indices(out_dir, items, config.chunk_size)
    pending = [it for it in items if it.index not in done]
    summary = GenerationSummary(assigned=len(items),
                                already_done=len(items) - len(pending),
                                skipped_lines=captions.skipped)
    speed = dict(channels_last=config.channels_last,
                 compile_unet=config.compile_unet,
                 compile_mode=config.compile_mode,
                 compile_backend=config.compile_backend)
    if pipeline is not None:
        pipe = apply_speed_settings(pipeline, **speed)
    else:
        pipe = load_pipeline(model, dtype, device, config.scheduler, **speed)
    os.makedirs(out_dir, exist_ok=True)
    write_or_check_meta(out_dir, {**settings, **pipeline_settings(pipe)},
                        os.fspath(captions_file))
    logger.info(f'rank {info.rank}/{info.world_size} on {device}: '
                f'{len(items)} captions, {summary.already_done} already done, '
                f'{len(pending)} to generate; speed settings: '
                f'{describe_speed(config)}')
    run_chunks(pipe, pending, out_dir, config, summary,
               tqdm(total=len(pending), unit='img', disable=not progress,
                    desc=f'generate [rank {info.rank}/{info.world_size}]'))
    if summary.truncated_prompts:
        logger.warning(
            f'{summary.truncated_prompts} caption(s) were longer than the '
            f'text encoder\'s context ({token_limit(pipe)} tokens) and were '
            'truncated: their images show only the leading words (flagged '
            'prompt_truncated in their records, with prompt_tokens and '
            'prompt_used)')
    if summary.retry_on_rerun:
        logger.warning(
            f'{len(summary.retry_on_rerun)} caption(s) gave non-finite pixels '
            '(NaN/inf) in every attempt and were recorded as failed; a rerun '
            'tries them again (if float16 overflows, generate into a new '
            'folder with --dtype float32 or bfloat16)')
    return summary
