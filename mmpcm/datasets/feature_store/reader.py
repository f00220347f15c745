"""Reading a feature store: :class:`FeatureStore`, one item at a time.

Opening checks meta.json and every listed shard array against it; items are
read with ``os.preadv`` (memory maps where it is missing). See
``docs/feature_format.md``.
"""
import contextlib
import json
import os
import os.path as osp
from typing import (Any, Dict, Iterator, List, Mapping, NamedTuple, Optional,
                    Tuple)

import numpy as np

from mmpcm.utils.cli import InputError, MissingInputError
from mmpcm.utils.fileio import PathLike
from .meta import (_EXTRACT_TOOL, _REBUILD, DTYPE, GLOBAL_FILE, META_FILE,
                   PATCH_FILE, RECORDS_FILE, TEXT_FILE, CLIPFeatureInfo,
                   ShardInfo, read_meta)

_HAS_PREADV = hasattr(os, 'preadv')
"""Linux, BSD and macOS >= 11; elsewhere rows are copied from memory maps."""

__all__ = ['FeatureItem', 'FeatureStore', 'ShortReadError']


class FeatureItem(NamedTuple):
    """One item of a :class:`FeatureStore` (arrays are float16 copies)."""
    patch_tokens: np.ndarray  # (N, Dv)
    global_embed: np.ndarray  # (D, )
    record: dict
    text_embed: Optional[np.ndarray] = None  # (D, ) when the store has them


def _open_npy(path: str, expected_shape: Tuple[int, ...],
              meta_path: str) -> np.memmap:
    """Memory-map an .npy file and check its shape and dtype against meta."""
    if not osp.isfile(path):
        raise MissingInputError(
            path, f'missing, but {meta_path} lists its shard as complete, so '
            f'a {DTYPE} array of shape {expected_shape} was expected',
            _REBUILD)
    try:
        array = np.load(path, mmap_mode='r')
    except (ValueError, OSError) as err:
        raise InputError(
            path, f'cannot be read as an .npy array of shape '
            f'{expected_shape} ({err})', _REBUILD) from None
    if tuple(array.shape) != expected_shape or array.dtype != DTYPE:
        raise InputError(
            path, f'array is {array.dtype} of shape {tuple(array.shape)}, '
            f'{meta_path} expects {DTYPE} of shape {expected_shape}',
            _REBUILD)
    return array


def _iter_jsonl(path: str) -> Iterator[Tuple[int, dict]]:
    """Yield ``(line number, record)`` of a records.jsonl file."""
    if not osp.isfile(path):
        raise MissingInputError(
            path, 'missing: expected one JSON record per item', _REBUILD)
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(path, f'line {lineno}: not valid JSON '
                                 f'({err})', _REBUILD) from None
            if not isinstance(record, dict) or 'image_id' not in record:
                raise InputError(
                    path, f'line {lineno}: expected a JSON object with an '
                    '"image_id" key', _REBUILD)
            yield lineno, record


class ShortReadError(InputError, OSError):
    """A shard array shorter than its .npy header says (an ``OSError`` and
    an :class:`~mmpcm.utils.cli.InputError`)."""


class _RowSource(NamedTuple):
    """Where :meth:`FeatureStore.get` reads one shard array's rows."""
    fd: int  # open read-only
    offset: int  # bytes before the array's data (the .npy header)
    row_shape: Tuple[int, ...]  # (N, Dv) or (D, )
    dtype: np.dtype


class FeatureStore:
    """Read-only view of a feature store directory.

    Opening reads meta.json and checks every listed shard's arrays (shape and
    dtype from the .npy headers, through a throw-away memory map). Records are
    read on first use. An item's rows are read with ``os.preadv`` straight
    into a new array (one system call per array, no page faults in this
    process; memory-map copies where ``os.preadv`` is missing). Files are
    opened lazily, one descriptor per shard array; a forked DataLoader
    worker reads through the ones it inherits (``preadv`` moves no shared
    file position). Memory maps (``load_array``) are per process: a forked
    worker maps its own files. Pickling drops both.

    Args:
        root (str | PathLike): The store directory.

    Raises:
        MissingInputError: If the directory, meta.json or a shard file is
            missing (a ``FileNotFoundError``).
        InputError: If meta.json or a shard array disagrees with the format
            (a ``ValueError``).
    """

    def __init__(self, root: PathLike) -> None:
        self.root = os.fspath(root)
        self.meta = read_meta(self.root)
        self.meta_path = osp.join(self.root, META_FILE)
        counts = [s.count for s in self.meta.shards]
        self._offsets = np.cumsum([0] + counts)  # (num_shards + 1, )
        self._records: Optional[List[dict]] = None
        self._maps: Dict[Tuple[int, str], np.memmap] = {}
        self._row_sources: Dict[Tuple[int, str], _RowSource] = {}
        self._pid = os.getpid()
        self._validate_shards()

    # ---- meta ------------------------------------------------------------
    @property
    def clip_info(self) -> CLIPFeatureInfo:
        return self.meta.clip

    @property
    def has_text_embeds(self) -> bool:
        return self.meta.has_text_embeds

    @property
    def clip_score_text(self) -> Optional[str]:
        """Caption normalisation of the CLIP scores (None: not recorded)."""
        return self.meta.clip_score_text

    @property
    def shards(self) -> List[ShardInfo]:
        return list(self.meta.shards)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(root={self.root!r}, '
                f'num_items={len(self)}, shards={len(self.meta.shards)}, '
                f'clip={self.clip_info.model!r})')

    def shard_path(self, shard: int, filename: str = '') -> str:
        """Path of shard number ``shard`` (or of a file inside it)."""
        return osp.join(self.root, self.meta.shards[shard].name, filename)

    def _expected_shape(self, shard: int, filename: str) -> Tuple[int, ...]:
        n, clip = self.meta.shards[shard].count, self.clip_info
        if filename == PATCH_FILE:
            return (n, clip.num_patches, clip.patch_dim)
        return (n, clip.embed_dim)

    def _array_files(self) -> List[str]:
        files = [PATCH_FILE, GLOBAL_FILE]
        return files + [TEXT_FILE] if self.has_text_embeds else files

    def _validate_shards(self) -> None:
        """Check that every listed shard file exists with the right shape."""
        for shard in range(len(self.meta.shards)):
            for filename in self._array_files():
                _open_npy(
                    self.shard_path(shard, filename),
                    self._expected_shape(shard, filename), self.meta_path)
            records = self.shard_path(shard, RECORDS_FILE)
            if not osp.isfile(records):
                raise MissingInputError(
                    records, f'missing, but {self.meta_path} lists its shard '
                    f'as complete, so {self.meta.shards[shard].count} JSON '
                    'records were expected', _REBUILD)

    def check(self, expected: Mapping[str, Any]) -> None:
        """Check meta values against what a config expects.

        Args:
            expected (Mapping): Dotted meta keys to expected values, e.g.
                ``{'clip.patch_dim': 768, 'clip.model': 'ViT-B-32'}``; nested
                dicts (``{'clip': {'patch_dim': 768}}``) work too. None values
                are skipped.

        Raises:
            KeyError: If a key is not in meta.json (a caller's mistake).
            InputError: On the first mismatch, naming meta.json, the key, the
                value found and the value expected (a ``ValueError``).
        """
        found = _flatten(self.meta.to_dict())
        for key, want in _flatten(expected).items():
            if want is None:
                continue
            if key not in found:
                raise KeyError(f'{self.meta_path} has no key {key!r}; known '
                               f'keys: {sorted(found)}')
            if found[key] == want:
                continue
            problem = f'{key} is {found[key]!r}, the config expects {want!r}'
            if key.startswith('clip.'):
                raise InputError(
                    self.meta_path, f'{problem}: the store was made with '
                    'another CLIP than the config\'s',
                    'use the config of the store\'s CLIP, or extract the '
                    'features with the config\'s CLIP into a new folder '
                    f'({_EXTRACT_TOOL}) and point data_root at it')
            raise InputError(
                self.meta_path, problem, 'point data_root at a store made '
                f'for this config ({_EXTRACT_TOOL})')

    # ---- records ---------------------------------------------------------
    def iter_records(self) -> Iterator[Tuple[str, int, dict]]:
        """Yield ``(records file, line number, record)`` for every item.

        Reads the shards' records.jsonl in order without caching them.

        Raises:
            InputError: If a records file has a bad line or a line count
                different from meta.json (a ``ValueError``).
        """
        for shard, info in enumerate(self.meta.shards):
            path = self.shard_path(shard, RECORDS_FILE)
            lineno = 0
            for lineno, record in _iter_jsonl(path):
                if lineno > info.count:
                    break
                yield path, lineno, record
            if lineno != info.count:
                found = (f'more than {info.count}'
                         if lineno > info.count else str(lineno))
                raise InputError(
                    path, f'has {found} records, {self.meta_path} lists '
                    f'{info.count} for {info.name}', _REBUILD)

    @property
    def records(self) -> List[dict]:
        """All records, in item order (read once, then cached)."""
        if self._records is None:
            self._records = [record for _, _, record in self.iter_records()]
        return self._records

    def captions(self) -> List[Optional[str]]:
        """The caption of every item (None where a record has none)."""
        return [record.get('caption') for record in self.records]

    # ---- arrays ----------------------------------------------------------
    def locate(self, idx: int) -> Tuple[int, int]:
        """Map an item index to ``(shard number, row in that shard)``."""
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f'index {idx} out of range for a feature store '
                             f'of {n} items ({self.root})')
        idx = idx % n
        shard = int(np.searchsorted(self._offsets, idx, side='right')) - 1
        return shard, idx - int(self._offsets[shard])

    def _map(self, shard: int, filename: str) -> np.memmap:
        """Memory map of one shard file, opened once per process."""
        if self._pid != os.getpid():  # forked: map the files anew
            self._maps, self._pid = {}, os.getpid()
        key = (shard, filename)
        if key not in self._maps:
            self._maps[key] = _open_npy(
                self.shard_path(shard, filename),
                self._expected_shape(shard, filename), self.meta_path)
        return self._maps[key]

    def _read_row(self, shard: int, filename: str, row: int) -> np.ndarray:
        """Copy one row of a shard array into a new array.

        ``os.preadv`` reads the row from the page cache (or disk) into the
        new array in one call; a memory-map copy instead would fault each
        page of the row into this process's mapping first, which is slower
        (docs/benchmarks.md, finding 3).
        """
        if not _HAS_PREADV:
            return np.array(self._map(shard, filename)[row])
        source = self._row_source(shard, filename)
        out = np.empty(source.row_shape, dtype=source.dtype)  # (...)
        nbytes = os.preadv(source.fd, [out],
                           source.offset + row * out.nbytes)
        if nbytes != out.nbytes:
            raise ShortReadError(
                self.shard_path(shard, filename),
                f'read {nbytes} of {out.nbytes} bytes of row {row}: the file '
                'is shorter than its .npy header says (truncated after the '
                'store was opened?)', _REBUILD)
        return out

    def _row_source(self, shard: int, filename: str) -> _RowSource:
        """The open file and data layout of one shard array, opened on
        first use."""
        key = (shard, filename)
        source = self._row_sources.get(key)
        if source is None:
            path = self.shard_path(shard, filename)
            header = _open_npy(path, self._expected_shape(shard, filename),
                               self.meta_path)  # checked, then unmapped
            source = self._row_sources[key] = _RowSource(
                os.open(path, os.O_RDONLY), header.offset,
                tuple(header.shape[1:]), header.dtype)
        return source

    def close(self) -> None:
        """Close the files this store opened (reads reopen them)."""
        sources, self._row_sources = self._row_sources, {}
        for source in sources.values():
            os.close(source.fd)
        self._maps = {}

    def __del__(self) -> None:
        if getattr(self, '_row_sources', None):  # None: __init__ failed
            with contextlib.suppress(OSError):  # closed at shutdown already
                self.close()

    def get(self, idx: int, with_record: bool = True) -> FeatureItem:
        """Read item ``idx``.

        Args:
            idx (int): Item index in ``[-len(self), len(self))``.
            with_record (bool): Read the record too (loads and caches every
                record on first use). Defaults to True; when False,
                ``record`` is an empty dict.

        Returns:
            FeatureItem: float16 copies of the arrays and the record.
        """
        shard, row = self.locate(idx)
        text = None
        if self.has_text_embeds:
            text = self._read_row(shard, TEXT_FILE, row)  # (D, )
        return FeatureItem(
            patch_tokens=self._read_row(shard, PATCH_FILE, row),  # (N, Dv)
            global_embed=self._read_row(shard, GLOBAL_FILE, row),  # (D, )
            record=dict(self.records[idx]) if with_record else {},
            text_embed=text)

    __getitem__ = get

    def load_array(self, filename: str = GLOBAL_FILE) -> np.ndarray:
        """Concatenate one array over all shards into memory.

        Meant for the small per-item arrays (``global_embeds.npy``,
        ``text_embeds.npy``), e.g. to compute CLIP scores.

        Returns:
            np.ndarray: ``(len(self), ...)`` float16 array.
        """
        if filename not in self._array_files():
            raise ValueError(f'{filename!r} is not an array of this store; '
                             f'it has {self._array_files()}')
        if not self.meta.shards:
            clip = self.clip_info
            row = ((clip.num_patches, clip.patch_dim)
                   if filename == PATCH_FILE else (clip.embed_dim, ))
            return np.zeros((0, ) + row, dtype=DTYPE)
        parts = [
            self._map(s, filename) for s in range(len(self.meta.shards))
        ]
        return np.concatenate(parts)  # (num_items, ...)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state['_maps'] = {}  # memory maps are per process
        state['_row_sources'] = {}  # and so are file descriptors
        return state


def _flatten(data: Mapping, prefix: str = '') -> Dict[str, Any]:
    """``{'clip': {'model': 'x'}}`` -> ``{'clip.model': 'x'}``."""
    flat: Dict[str, Any] = {}
    for key, value in data.items():
        name = f'{prefix}{key}'
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix=f'{name}.'))
        else:
            flat[name] = value
    return flat
