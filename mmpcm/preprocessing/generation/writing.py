"""Writing a run's output beside the generation: images encoded on worker
threads, record files committed in order on one more thread.

A batch's records are written only after all of its images are on disk
(each image atomically), so an interrupted run never lists an image that
is missing or half-written; images saved whose records were not yet
written are generated again by a rerun, from the same seeds.
Layout and completion rules: ``docs/generation_format.md``.
"""
import logging
import os
import os.path as osp
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Deque, List, Optional, Tuple

import numpy as np

from mmpcm.utils.fileio import remove_tmp_files
from .config import IMAGES_DIR, GenerationConfig
from .records import (ItemRecord, chunk_file, image_relpath,
                      read_chunk_records, save_image, write_chunk_records)

logger = logging.getLogger(__name__)

__all__ = ['BatchResults', 'ChunkWriter', 'BackgroundWriter']

BatchResults = List[Tuple[ItemRecord, Optional[np.ndarray]]]
"""Per item of a batch, its record and its kept ``(H, W, 3)`` uint8 image
(None when it failed)."""


class ChunkWriter:
    """Writes one chunk's images and keeps its record file up to date.

    Args:
        out_dir (str): The run's output folder.
        chunk (int): Chunk number.
        config (GenerationConfig): Chunk size and image format.
    """

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

    def place(self, results: BatchResults) -> List[Tuple[str, np.ndarray]]:
        """Name each kept image (sets ``record.file``).

        Returns:
            list[tuple[str, np.ndarray]]: The ``(path, image)`` pairs to
            save before :meth:`commit`.
        """
        todo = []
        for record, image in results:
            if image is not None:
                record.file = image_relpath(record.index,
                                            self.config.chunk_size,
                                            self.config.image_format)
                todo.append((osp.join(self.out_dir, record.file), image))
        return todo

    def save(self, path: str, image: np.ndarray) -> None:
        """Write one image atomically in the run's format."""
        save_image(path, image, self.config.image_format)

    def commit(self, results: BatchResults) -> None:
        """List the batch in the record file (its images must be saved)."""
        for record, _ in results:
            self.records[record.index] = record
        write_chunk_records(self.records_path, self.chunk, self.records)

    def add(self, results: BatchResults) -> None:
        """Save the images, then list the batch in the record file."""
        for path, image in self.place(results):
            self.save(path, image)
        self.commit(results)


class BackgroundWriter:
    """Saves batches while the next ones are generated.

    Images are encoded on ``workers`` threads (PIL releases the GIL while
    it encodes); one more thread commits each batch's records once its
    images are saved, batches in the order they were submitted. At most
    ``max_pending`` batches wait; :meth:`submit` blocks on the oldest
    beyond that, so memory stays bounded when writing is slower than
    generating. The first write error stops later commits and is raised by
    the next :meth:`submit` or by :meth:`close`.

    With ``workers=0`` everything is written in the calling thread, batch
    by batch (:meth:`ChunkWriter.add`).

    Use as a context manager: leaving it (also by an exception or Ctrl-C)
    waits until every submitted batch is saved and committed, so no
    generated image is lost.

    Args:
        workers (int): Image-encoding threads; 0 writes synchronously.
        max_pending (int): Batches that may wait to be written. Defaults
            to 2.
    """

    def __init__(self, workers: int, max_pending: int = 2) -> None:
        if workers < 0 or max_pending < 1:
            raise ValueError(f'workers must be >= 0 and max_pending >= 1, '
                             f'got {workers} and {max_pending}')
        self.workers, self.max_pending = workers, max_pending
        self._images = (ThreadPoolExecutor(workers, 'mmpcm-gen-image')
                        if workers else None)
        self._commits = (ThreadPoolExecutor(1, 'mmpcm-gen-records')
                         if workers else None)
        self._pending: Deque[Future] = deque()
        self._error: Optional[BaseException] = None
        self._raised = False

    def submit(self, writer: ChunkWriter, results: BatchResults) -> None:
        """Write one batch: its images, then its records.

        Raises:
            Exception: The first error of an earlier batch's writing.
        """
        if self._images is None:
            writer.add(results)
            return
        saves = [self._images.submit(writer.save, path, image)
                 for path, image in writer.place(results)]
        self._pending.append(
            self._commits.submit(self._commit, writer, results, saves))
        while len(self._pending) > self.max_pending:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        """Wait for the oldest batch; raise the first write error once."""
        self._pending.popleft().exception()
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error

    def _commit(self, writer: ChunkWriter, results: BatchResults,
                saves: List[Future]) -> None:
        try:
            for save in saves:
                save.result()
            if self._error is None:
                writer.commit(results)
        except BaseException as err:  # noqa: B902 (kept for the caller)
            if self._error is None:
                self._error = err
            raise

    def close(self) -> None:
        """Wait for every submitted batch; raise the first write error."""
        try:
            while self._pending:
                self._wait_oldest()
        finally:
            while self._pending:
                self._pending.popleft().exception()
            for pool in (self._images, self._commits):
                if pool is not None:
                    pool.shutdown(wait=True)

    def __enter__(self) -> 'BackgroundWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except Exception as err:  # the first exception is the one to see
            logger.error(f'while stopping: writing also failed: {err}')
