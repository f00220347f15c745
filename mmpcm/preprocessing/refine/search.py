"""Exact inner-product top-k search with FAISS, in query chunks.

SynC (Kim et al., ACM MM 2025, arXiv 2507.18616) retrieves the nearest
images of every caption and the nearest captions of every image over the
whole synthetic corpus (542,401 pairs for SynthImgCap-COCO): a full
similarity matrix would not fit in memory, so queries go through a
``faiss.IndexFlatIP`` (exact search, on a GPU when faiss sees one) a chunk
at a time.

faiss is imported when a search index is built, never when this module is
imported; a missing faiss is one error line saying what to install.
"""
from types import ModuleType
from typing import Iterator, NamedTuple, Optional, Tuple

import numpy as np

from mmpcm.utils.deps import MissingPackageError, require_package

__all__ = ['MissingPackageError', 'require_faiss', 'TopK', 'ExactSearchIndex',
           'search_topk']


def require_faiss() -> ModuleType:
    """faiss, or :class:`MissingPackageError` saying ``pip install
    faiss-cpu`` (or faiss-gpu)."""
    return require_package('faiss', 'the SynC nearest-neighbour search',
                           'faiss-cpu (or faiss-gpu for a GPU)')


class TopK(NamedTuple):
    """The ``k`` best database rows of each query, best first."""
    scores: np.ndarray  # (Q, k) float32 inner products
    indices: np.ndarray  # (Q, k) int64 database rows


def _as_float32_rows(array: np.ndarray, name: str) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f'{name} must be 2-d (rows, width), got shape '
                         f'{array.shape}')
    return array


class ExactSearchIndex:
    """Exact inner-product search over a fixed database.

    A ``faiss.IndexFlatIP`` holding ``database`` (moved to GPU 0 when
    ``faiss.get_num_gpus() > 0`` unless ``use_gpu=False``). Results are
    sorted by score, then by database row: equal scores put the lower row
    first. Which of several rows tied at the k-th score is returned is
    faiss's choice (deterministic for the same inputs and device).

    Args:
        database (np.ndarray): ``(M, D)`` rows to search (converted to
            float32, C order).
        use_gpu (bool, optional): None (default): a GPU when faiss has one;
            True: require one; False: CPU.

    Raises:
        MissingPackageError: If faiss is not installed.
        ValueError: If ``database`` is not 2-d, or ``use_gpu=True`` and
            faiss sees no GPU.
    """

    def __init__(self, database: np.ndarray,
                 use_gpu: Optional[bool] = None) -> None:
        faiss = require_faiss()
        database = _as_float32_rows(database, 'database')
        self.size, self.dim = database.shape
        index = faiss.IndexFlatIP(self.dim)
        gpus = faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0
        if use_gpu and not gpus:
            raise ValueError('a GPU search was asked for, but faiss sees no '
                             'GPU (install faiss-gpu, or search on the CPU)')
        self.on_gpu = bool(gpus) if use_gpu is None else bool(use_gpu)
        if self.on_gpu:
            self._resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._resources, 0, index)
        index.add(database)
        self._index = index

    def search(self, queries: np.ndarray, k: int) -> TopK:
        """The ``k`` best rows of each query, in one faiss call.

        Args:
            queries (np.ndarray): ``(Q, D)`` queries.
            k (int): Rows per query, at most the database size.

        Returns:
            TopK: ``(Q, k)`` float32 scores and int64 rows.
        """
        queries = _as_float32_rows(queries, 'queries')
        if queries.shape[1] != self.dim:
            raise ValueError(f'queries have width {queries.shape[1]}, the '
                             f'database {self.dim}')
        if not 1 <= k <= self.size:
            raise ValueError(f'k must be in [1, {self.size}], got {k}')
        scores, indices = self._index.search(queries, k)  # (Q, k) each
        scores = np.asarray(scores, dtype=np.float32)
        indices = np.asarray(indices, dtype=np.int64)
        # best score first, the lower row first among equal scores
        order = np.lexsort((indices, -scores), axis=-1)  # (Q, k)
        return TopK(np.take_along_axis(scores, order, axis=-1),
                    np.take_along_axis(indices, order, axis=-1))

    def search_chunks(self, queries: np.ndarray, k: int,
                      chunk_size: int) -> Iterator[Tuple[int, TopK]]:
        """Search ``chunk_size`` queries at a time.

        Memory beyond the inputs stays within one chunk's results and
        faiss's own blocks (O(chunk_size x M) at most), never a full
        ``Q x M`` matrix.

        Yields:
            tuple[int, TopK]: The first query row of the chunk and its
            ``(chunk, k)`` results.
        """
        for start in range(0, len(queries), chunk_size):
            yield start, self.search(queries[start:start + chunk_size], k)


def search_topk(queries: np.ndarray, database: np.ndarray, k: int,
                chunk_size: int = 4096,
                use_gpu: Optional[bool] = None) -> TopK:
    """Exact inner-product top-k of every query over ``database``.

    Args:
        queries (np.ndarray): ``(Q, D)`` queries (unit rows give cosines).
        database (np.ndarray): ``(M, D)`` rows to search.
        k (int): Rows per query, in ``[1, M]``.
        chunk_size (int): Queries per faiss call. Defaults to 4096.
        use_gpu (bool, optional): See :class:`ExactSearchIndex`.

    Returns:
        TopK: ``(Q, k)`` float32 scores and int64 rows, best first (equal
        scores: lower row first).

    Raises:
        MissingPackageError: If faiss is not installed (``pip install
            faiss-cpu``).
        ValueError: On mismatched widths or a ``k`` out of range.
    """
    index = ExactSearchIndex(database, use_gpu=use_gpu)
    scores = np.empty((len(queries), k), dtype=np.float32)  # (Q, k)
    indices = np.empty((len(queries), k), dtype=np.int64)  # (Q, k)
    for start, found in index.search_chunks(queries, k, chunk_size):
        scores[start:start + len(found.scores)] = found.scores
        indices[start:start + len(found.indices)] = found.indices
    return TopK(scores, indices)
