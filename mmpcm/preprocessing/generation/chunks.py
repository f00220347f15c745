"""The resumable sharded run: this rank's chunks, batch by batch.

Chunk ``c`` belongs to rank ``c % WORLD_SIZE`` (``docs/generation_format.md``).
"""
import logging
import os
import os.path as osp
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from mmpcm.preprocessing.sharding import RankInfo
from mmpcm.utils.fileio import remove_tmp_files
from .captions import CaptionFile, CaptionItem
from .config import IMAGES_DIR, GenerationConfig
from .records import (GenerationSummary, ItemRecord, chunk_file,
                      image_relpath, read_chunk_records, save_image,
                      write_chunk_records)
from .sampling import generate_batch

logger = logging.getLogger(__name__)

__all__ = [
    'ChunkWriter', 'rank_items', 'done_indices', 'run_chunks',
    'count_results'
]


def _batches(items: List[CaptionItem], size: int) -> Iterator[List[
        CaptionItem]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class ChunkWriter:
    """Writes one chunk's images and keeps its record file up to date."""

    def __init__(self, out_dir: str, chunk: int,
                 config: GenerationConfig) -> None:
        self.out_dir, self.chunk, self.config = out_dir, chunk, config
        self.records_path = chunk_file(out_dir, chunk)
        self.records = read_chunk_records(self.records_path, chunk)
        os.makedirs(osp.dirname(self.records_path), exist_ok=True)
        self.image_dir = osp.join(out_dir, IMAGES_DIR, f'{chunk:06d}')
        os.makedirs(self.image_dir, exist_ok=True)
        removed = remove_tmp_files(self.image_dir)
        if removed:
            logger.info(f'removed {removed} unfinished temporary file(s) in '
                        f'{self.image_dir}')

    def add(self, results: List[Tuple[ItemRecord,
                                      Optional[np.ndarray]]]) -> None:
        """Save the images, then list the batch in the record file."""
        for record, image in results:
            if image is not None:
                record.file = image_relpath(record.index,
                                            self.config.chunk_size,
                                            self.config.image_format)
                save_image(osp.join(self.out_dir, record.file), image,
                           self.config.image_format)
        for record, _ in results:
            self.records[record.index] = record
        write_chunk_records(self.records_path, self.chunk, self.records)


def rank_items(captions: CaptionFile, chunk_size: int,
               info: RankInfo) -> List[CaptionItem]:
    """Captions of the chunks this rank owns (``chunk % world == rank``)."""
    return [
        it for it in captions.items
        if (it.index // chunk_size) % info.world_size == info.rank
    ]


def done_indices(out_dir: str, items: List[CaptionItem],
                 chunk_size: int) -> set:
    """Indices with a final record (ok, or failed for its content)."""
    chunks = sorted({it.index // chunk_size for it in items})
    done = set()
    for chunk in chunks:
        records = read_chunk_records(chunk_file(out_dir, chunk), chunk)
        done.update(i for i, r in records.items() if not r.retry_on_rerun)
    return done


def run_chunks(pipe: Any, pending: List[CaptionItem], out_dir: str,
               config: GenerationConfig, summary: GenerationSummary,
               bar: tqdm) -> None:
    """Generate ``pending`` chunk by chunk, updating ``summary``."""
    by_chunk: Dict[int, List[CaptionItem]] = {}
    for item in pending:
        by_chunk.setdefault(item.index // config.chunk_size, []).append(item)
    with bar:
        for chunk, chunk_items in by_chunk.items():
            writer = ChunkWriter(out_dir, chunk, config)
            for batch in _batches(chunk_items, config.batch_size):
                results = generate_batch(pipe, batch, config)
                writer.add(results)
                count_results(results, summary)
                bar.update(len(batch))
                bar.set_postfix(retried=summary.regenerated,
                                failed=len(summary.failed))


def count_results(results: List[Tuple[ItemRecord, Optional[np.ndarray]]],
                  summary: GenerationSummary) -> None:
    for record, _ in results:
        summary.truncated_prompts += record.prompt_truncated
        if record.status == 'failed':
            summary.failed.append(record.index)
            if record.retry_on_rerun:
                summary.retry_on_rerun.append(record.index)
            logger.warning(
                f'caption {record.index} (line {record.index + 1}) failed, '
                f'{record.reason}: {record.caption!r}')
            continue
        summary.generated += 1
        summary.regenerated += len(record.attempts) > 1
