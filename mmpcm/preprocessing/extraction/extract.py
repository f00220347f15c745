"""The entry point: :func:`extract_features` encodes this rank's block of
the items into its part store, and merges when it is the only rank."""
import logging
import os
from typing import Optional, Sequence

from tqdm import tqdm

from mmpcm.datasets.clip_transforms import device_transform_size
from mmpcm.preprocessing.sharding import (RankInfo, contiguous_block,
                                          device_for_rank, get_rank_info)
from mmpcm.utils.fileio import PathLike
from .clip_model import CLIPFeatureExtractor, CLIPSpec
from .config import ExtractionConfig, ExtractionSummary
from .items import ExtractionItem, _check_items
from .merge import merge_feature_parts
from .parts import (_check_merged, _check_world_size, _is_merged,
                    _source_info, _write_or_check_source, part_dir)
from .rank_run import _finish_part, _RankRun

logger = logging.getLogger(__name__)

__all__ = ['extract_features']


def extract_features(items: Sequence[ExtractionItem],
                     out_dir: PathLike,
                     spec: CLIPSpec,
                     config: ExtractionConfig = ExtractionConfig(),
                     source: str = '',
                     rank_info: Optional[RankInfo] = None,
                     progress: bool = True) -> ExtractionSummary:
    """Encode this rank's block of ``items`` into its part store; resumable.

    With one process (and ``config.merge``) the part is merged into
    ``out_dir`` at the end; with several, run :func:`merge_feature_parts`
    once every rank has finished.

    Args:
        items (Sequence[ExtractionItem]): All items (every rank gets the
            same list): all captioned or none.
        out_dir (str | PathLike): Output folder (layout in
            ``docs/extraction.md``).
        spec (CLIPSpec): The CLIP model.
        config (ExtractionConfig): Batching, workers, device, decode mode.
            Defaults to ``ExtractionConfig()``.
        source (str): Where the items come from, for the record.
            Defaults to ''.
        rank_info (RankInfo, optional): Defaults to the torchrun
            environment.
        progress (bool): Show a tqdm progress bar. Defaults to True.

    Returns:
        ExtractionSummary: This rank's counts.

    Raises:
        InputError: If ``items`` is empty (naming ``source``, else
            ``out_dir``), before anything is written.
        FileNotFoundError: If the CLIP weights or model config are missing.
        ValueError: On duplicate image ids, mixed captioned/uncaptioned
            items, another input list, decode mode or other CLIP settings
            in ``out_dir``, or ``decode='device'`` with a model whose
            transform the device path does not copy
            (:func:`~mmpcm.datasets.clip_transforms.device_transform_size`).
    """
    out_dir = os.fspath(out_dir)
    _check_items(items, source or out_dir)
    info = rank_info or get_rank_info()
    device = device_for_rank(info, config.device)
    extractor = CLIPFeatureExtractor(spec, device, config.amp)
    if config.decode == 'device':
        device_transform_size(extractor.transform)  # refuse before writing
        if device.type == 'cpu':
            logger.warning("decode='device' on the CPU decodes in the main "
                           'process, not in the workers: slower than '
                           "decode='cpu' there; it is meant for CUDA")
    if _is_merged(out_dir):
        return _check_merged(out_dir, items, extractor.clip_info)
    _check_world_size(out_dir, info)
    os.makedirs(out_dir, exist_ok=True)
    source_info = _source_info(items, source, config.decode)
    _write_or_check_source(out_dir, source_info)
    part = part_dir(out_dir, info)
    run = _RankRun(items, part, extractor, config)
    block = contiguous_block(len(items), info)
    done = run.stored_ids()
    todo = [p for p in block if items[p].image_id not in done]
    summary = ExtractionSummary(assigned=len(block),
                                already_done=len(block) - len(todo),
                                part_dir=part)
    logger.info(f'rank {info.rank}/{info.world_size} on {device}: '
                f'{len(block)} images, {summary.already_done} already done, '
                f'{len(todo)} to encode; decode={config.decode}')
    run.run(todo, summary, tqdm(
        total=len(todo), unit='img', disable=not progress,
        desc=f'extract [rank {info.rank}/{info.world_size}]'))
    summary.failed = list(run.failed.values())
    _finish_part(part, run, source_info, spec, extractor)
    if summary.truncated_captions:
        logger.warning(
            f'{summary.truncated_captions} caption(s) were longer than '
            f'CLIP\'s context ({extractor.context_length} tokens) and were '
            'truncated (flagged caption_truncated in their records)')
    if info.world_size == 1 and config.merge:
        summary.merged_dir = merge_feature_parts(out_dir).root
    return summary
