"""The resumable sharded run: this rank's chunks, batch by batch.

Chunk ``c`` belongs to rank ``c % WORLD_SIZE`` (``docs/generation_format.md``).
"""
import logging
from typing import Any, Dict, Iterator, List

from tqdm import tqdm

from mmpcm.preprocessing.sharding import RankInfo
from .captions import CaptionFile, CaptionItem
from .config import GenerationConfig
from .records import GenerationSummary, chunk_file, read_chunk_records
from .sampling import generate_batch
from .writing import BackgroundWriter, BatchResults, ChunkWriter

logger = logging.getLogger(__name__)

__all__ = [
    'rank_items', 'done_indices', 'run_chunks', 'count_results'
]


def _batches(items: List[CaptionItem], size: int) -> Iterator[List[
        CaptionItem]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


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
    """Generate ``pending`` chunk by chunk, updating ``summary``.

    Each batch is written by a :class:`BackgroundWriter` with
    ``config.write_workers`` threads while the next batch is generated;
    every batch generated is on disk, records included, when this returns
    or raises.
    """
    by_chunk: Dict[int, List[CaptionItem]] = {}
    for item in pending:
        by_chunk.setdefault(item.index // config.chunk_size, []).append(item)
    with bar, BackgroundWriter(config.write_workers) as background:
        for chunk, chunk_items in by_chunk.items():
            writer = ChunkWriter(out_dir, chunk, config)
            for batch in _batches(chunk_items, config.batch_size):
                results = generate_batch(pipe, batch, config)
                background.submit(writer, results)
                count_results(results, summary)
                bar.update(len(batch))
                bar.set_postfix(retried=summary.regenerated,
                                failed=len(summary.failed))


def count_results(results: BatchResults,
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
