"""Packed on-disk store of pre-extracted CLIP features.

One store is a directory of shards; no file per sample, so it scales to the
542,401 SynthImgCap pairs of MSCOCO::

    <root>/meta.json                       # written last, atomically
    <root>/shard_00000/patch_tokens.npy    # (n, N, Dv) float16
    <root>/shard_00000/global_embeds.npy   # (n, D) float16, L2-normalised
    <root>/shard_00000/text_embeds.npy     # (n, D) float16, optional
    <root>/shard_00000/records.jsonl       # n lines of JSON

:class:`FeatureStoreWriter` writes it (resumable), :class:`FeatureStore` reads
it (memory-mapped). ``docs/feature_format.md`` describes the format in full.
"""
import contextlib
import dataclasses
import json
import math
import os
import os.path as osp
import re
import shutil
from dataclasses import dataclass, field
from typing import (Any, Dict, Iterator, List, Mapping, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import numpy as np

from mmpcm.utils.cli import InputError, MissingInputError
from mmpcm.utils.fileio import atomic_write_text, fsync_dir, tmp_path_for

PathLike = Union[str, 'os.PathLike[str]']

FORMAT_NAME = 'mmpcm-features'
FORMAT_VERSION = 1
DTYPE = 'float16'
META_FILE = 'meta.json'
PATCH_FILE = 'patch_tokens.npy'
GLOBAL_FILE = 'global_embeds.npy'
TEXT_FILE = 'text_embeds.npy'
RECORDS_FILE = 'records.jsonl'
SHARD_PREFIX = 'shard_'
_HAS_PREADV = hasattr(os, 'preadv')
"""Linux, BSD and macOS >= 11; elsewhere rows are copied from memory maps."""
_TMP_SHARD_RE = re.compile(r'^\.shard_\d+\.tmp-\d+$')
_NORM_TOL = 2e-2  # float16 rounding of a unit vector stays well inside this
_EXTRACT_TOOL = 'tools/data/extract_features.py'
_REBUILD = (f'rebuild the store: re-run {_EXTRACT_TOOL} (or '
            'tools/data/import_release_features.py for the released '
            'features) into a new folder')
"""What to do about a store whose files are damaged or not mmpcm's."""

__all__ = [
    'CLIPFeatureInfo', 'ShardInfo', 'FeatureStoreMeta', 'FeatureItem',
    'FeatureStore', 'FeatureStoreWriter', 'read_meta', 'write_meta',
    'FORMAT_NAME', 'FORMAT_VERSION'
]


# --------------------------------------------------------------------------
# meta.json
# --------------------------------------------------------------------------
def _check_keys(data: Mapping, required: Sequence[str],
                optional: Sequence[str], path: str, what: str = '') -> None:
    """Raise :class:`InputError` on a missing or unknown key of a meta dict.

    Args:
        path (str): The meta.json file (named first in the message).
        what (str): The part of it being checked (``'clip'``,
            ``'shards[2]'``); empty for the top level.
    """
    where = f'{what}: ' if what else ''
    keys = list(required) + list(optional)
    if not isinstance(data, Mapping):
        raise InputError(
            path, f'{where}expected a JSON object, found '
            f'{type(data).__name__}', _REBUILD)
    missing = [k for k in required if k not in data]
    if missing:
        raise InputError(
            path, f'{where}missing key(s) {missing} (expected keys {keys})',
            _REBUILD)
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise InputError(
            path, f'{where}unknown key(s) {unknown} (expected keys {keys})',
            _REBUILD)


def _check_positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f'{name} must be a positive int, got {value!r}')


@dataclass(frozen=True)
class CLIPFeatureInfo:
    """Which CLIP encoder produced the features, and their sizes.

    Args:
        model (str): open_clip model name, e.g. ``'ViT-B-32'``.
        num_patches (int): Patch tokens per image N (after pooling), e.g. 49.
        patch_dim (int): Width Dv of a patch token, e.g. 768.
        embed_dim (int): Width D of the joint CLIP space, e.g. 512.
        pretrained (str, optional): open_clip pretrained tag, or the sha256
            of the weight file, or None for random weights. Defaults to None.
        image_size (int): Input resolution in pixels. Defaults to 224.
        patch_pool (int): Side of the average pooling applied to the patch
            grid (2 for ViT-L/14: 16x16 -> 8x8). Defaults to 1.
    """
    model: str
    num_patches: int
    patch_dim: int
    embed_dim: int
    pretrained: Optional[str] = None
    image_size: int = 224
    patch_pool: int = 1

    _KEYS = ('model', 'pretrained', 'image_size', 'patch_pool',
             'num_patches', 'patch_dim', 'embed_dim')

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(
                f'clip.model must be a non-empty str, got {self.model!r}')
        if self.pretrained is not None and not isinstance(
                self.pretrained, str):
            raise ValueError('clip.pretrained must be a str or None, got '
                             f'{self.pretrained!r}')
        for name in ('num_patches', 'patch_dim', 'embed_dim', 'image_size',
                     'patch_pool'):
            _check_positive_int(getattr(self, name), f'clip.{name}')

    def to_dict(self) -> Dict[str, Any]:
        """Return the ``clip`` block of meta.json (keys in a fixed order)."""
        return {k: getattr(self, k) for k in self._KEYS}

    @classmethod
    def from_dict(cls, data: Mapping, source: str = 'clip info',
                  what: str = '') -> 'CLIPFeatureInfo':
        """Build from a ``clip`` block.

        Args:
            data (Mapping): The block.
            source (str): The file it comes from, named first in errors.
            what (str): Where in the file (``'clip'``). Defaults to ''.

        Raises:
            InputError: On a missing, unknown or invalid key.
        """
        _check_keys(data, required=cls._KEYS, optional=(), path=source,
                    what=what)
        try:
            return cls(**{k: data[k] for k in cls._KEYS})
        except ValueError as err:
            raise InputError(source, str(err), _REBUILD) from None

    def diff(self, other: 'CLIPFeatureInfo') -> List[Tuple[str, Any, Any]]:
        """List ``(key, self value, other value)`` for every differing key."""
        return [(k, getattr(self, k), getattr(other, k)) for k in self._KEYS
                if getattr(self, k) != getattr(other, k)]


@dataclass(frozen=True)
class ShardInfo:
    """One complete shard listed in meta.json.

    Args:
        name (str): Directory name under the store root, e.g.
            ``'shard_00000'``.
        count (int): Number of items in the shard.
    """
    name: str
    count: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(
                r'shard_\d{5,}', self.name):
            raise ValueError(
                f'shard name must look like shard_00000, got {self.name!r}')
        _check_positive_int(self.count, f'count of {self.name}')

    def to_dict(self) -> Dict[str, Any]:
        return {'name': self.name, 'count': self.count}


@dataclass
class FeatureStoreMeta:
    """Content of meta.json.

    Args:
        clip (CLIPFeatureInfo): The CLIP encoder and feature sizes.
        shards (list[ShardInfo]): Complete shards, in item order.
            Defaults to an empty list.
        has_text_embeds (bool): Whether every shard has ``text_embeds.npy``.
            Defaults to False.
        clip_score_text (str, optional): How each caption was normalised
            before the CLIP text encoder embedded it for ``clip_score`` and
            ``text_embeds``: ``'lowercase_strip_final_period'``
            (:data:`~mmpcm.preprocessing.extraction.CLIP_SCORE_TEXT`, the
            authors' release), or None when not recorded (stores without
            scores, and stores written before the key existed, whose
            captions were embedded as written). Defaults to None.
        format (str): Always ``'mmpcm-features'``.
        version (int): Format version, 1.
        dtype (str): Dtype of every array, ``'float16'``.
    """
    clip: CLIPFeatureInfo
    shards: List[ShardInfo] = field(default_factory=list)
    has_text_embeds: bool = False
    clip_score_text: Optional[str] = None
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    dtype: str = DTYPE

    _REQUIRED = ('format', 'version', 'clip', 'dtype', 'shards', 'num_items')
    _OPTIONAL = ('has_text_embeds', 'clip_score_text')

    def __post_init__(self) -> None:
        if self.format != FORMAT_NAME:
            raise ValueError(
                f'format is {self.format!r}, expected {FORMAT_NAME!r}')
        if self.version != FORMAT_VERSION:
            raise ValueError(f'version is {self.version!r}, this mmpcm reads '
                             f'version {FORMAT_VERSION}')
        if self.dtype != DTYPE:
            raise ValueError(f'dtype is {self.dtype!r}, expected {DTYPE!r}')
        if not isinstance(self.has_text_embeds, bool):
            raise ValueError('has_text_embeds must be a bool, got '
                             f'{self.has_text_embeds!r}')
        if self.clip_score_text is not None and (
                not isinstance(self.clip_score_text, str)
                or not self.clip_score_text):
            raise ValueError('clip_score_text must be a non-empty str or '
                             f'null, got {self.clip_score_text!r}')
        names = [s.name for s in self.shards]
        if len(set(names)) != len(names):
            raise ValueError(f'shard names repeat: {names}')

    @property
    def num_items(self) -> int:
        return sum(s.count for s in self.shards)

    def to_dict(self) -> Dict[str, Any]:
        """Return the meta.json object (keys in a fixed order).

        ``clip_score_text`` is written only when set, so a store without
        it stays readable by versions that do not know the key.
        """
        data = {
            'format': self.format,
            'version': self.version,
            'clip': self.clip.to_dict(),
            'dtype': self.dtype,
            'has_text_embeds': self.has_text_embeds,
        }
        if self.clip_score_text is not None:
            data['clip_score_text'] = self.clip_score_text
        data['shards'] = [s.to_dict() for s in self.shards]
        data['num_items'] = self.num_items
        return data

    @classmethod
    def from_dict(cls, data: Mapping,
                  source: str = META_FILE) -> 'FeatureStoreMeta':
        """Parse and validate a meta.json object.

        Raises:
            InputError: Naming ``source`` (the meta.json file), on a
                missing, unknown or invalid key.
        """
        _check_keys(data, cls._REQUIRED, cls._OPTIONAL, path=source)
        clip = CLIPFeatureInfo.from_dict(data['clip'], source, what='clip')
        if not isinstance(data['shards'], list):
            raise InputError(
                source, 'shards must be a list, found '
                f'{type(data["shards"]).__name__}', _REBUILD)
        shards = [
            cls._parse_shard(shard, source, i)
            for i, shard in enumerate(data['shards'])
        ]
        try:
            meta = cls(
                clip=clip,
                shards=shards,
                has_text_embeds=data.get('has_text_embeds', False),
                clip_score_text=data.get('clip_score_text'),
                format=data['format'],
                version=data['version'],
                dtype=data['dtype'])
        except ValueError as err:
            raise InputError(source, str(err), _REBUILD) from None
        if data['num_items'] != meta.num_items:
            raise InputError(
                source, f'num_items is {data["num_items"]!r} but the shard '
                f'counts sum to {meta.num_items}', _REBUILD)
        return meta

    @staticmethod
    def _parse_shard(data: Any, source: str, index: int) -> ShardInfo:
        what = f'shards[{index}]'
        _check_keys(data, ('name', 'count'), (), path=source, what=what)
        try:
            return ShardInfo(name=data['name'], count=data['count'])
        except ValueError as err:
            raise InputError(source, f'{what}: {err}', _REBUILD) from None


def read_meta(root: PathLike) -> FeatureStoreMeta:
    """Read and validate ``<root>/meta.json``.

    Raises:
        MissingInputError: If ``root`` or its meta.json does not exist (a
            ``FileNotFoundError``).
        InputError: If meta.json is not valid JSON or not a valid meta (a
            ``ValueError``).
    """
    root = os.fspath(root)
    if not osp.isdir(root):
        raise MissingInputError(
            root, f'no such feature store folder (a store is a folder with '
            f'{META_FILE} and shard_* folders in it)',
            f'extract the features first with {_EXTRACT_TOOL} (or '
            'tools/data/import_release_features.py for the released '
            'features), or point data_root at an existing store')
    path = osp.join(root, META_FILE)
    if not osp.isfile(path):
        raise MissingInputError(
            path, f'no {META_FILE}, so the feature store is incomplete (it '
            'is written after the first complete shard and when the '
            'extraction ends)',
            f'finish the extraction: re-run {_EXTRACT_TOOL} with this folder '
            'as its output (it resumes), or point data_root at a complete '
            'store')
    with open(path, encoding='utf-8') as f:
        try:
            data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(path, f'not valid JSON ({err})',
                             _REBUILD) from None
    return FeatureStoreMeta.from_dict(data, source=path)


def write_meta(root: PathLike, meta: FeatureStoreMeta) -> None:
    """Write ``<root>/meta.json`` atomically, then flush the folder entry."""
    root = os.fspath(root)
    atomic_write_text(osp.join(root, META_FILE),
                      json.dumps(meta.to_dict(), indent=2) + '\n')
    fsync_dir(root)


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------
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
        page of the row into this process's mapping first, which was
        measured several times slower per item on a virtualised GPU host
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


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
def _as_numpy(array: Any, name: str) -> np.ndarray:
    """Accept numpy arrays and torch tensors (any device)."""
    if hasattr(array, 'detach'):  # torch.Tensor
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f'{name} must be a floating array, got {array.dtype}')
    return array


def _to_float16(array: Any, name: str,
                shape: Tuple[int, ...]) -> np.ndarray:
    """Check the shape, cast to float16 and check all values are finite."""
    array = _as_numpy(array, name)
    if tuple(array.shape) != shape:
        raise ValueError(f'{name} has shape {tuple(array.shape)}, expected '
                         f'{shape} (items, clip info sizes)')
    with np.errstate(over='ignore'):  # overflow is reported just below
        array = np.ascontiguousarray(array, dtype=DTYPE)
    if not np.isfinite(array).all():
        raise ValueError(f'{name} has values that are not finite in float16 '
                         '(NaN, or beyond +-65504)')
    return array


def _check_unit_norm(array: np.ndarray, name: str) -> None:
    norms = np.linalg.norm(array.astype(np.float32), axis=-1)  # (n, )
    bad = np.flatnonzero(np.abs(norms - 1) > _NORM_TOL)
    if bad.size:
        raise ValueError(f'{name} must be L2-normalised; row {bad[0]} has '
                         f'norm {norms[bad[0]]:.4f}')


def _clean_record(record: Mapping, i: int) -> dict:
    """Validate one record and fill the optional keys with None."""
    if not isinstance(record, Mapping) or 'image_id' not in record:
        raise ValueError(f'records[{i}] must be a dict with an "image_id"')
    out = {'image_id': record['image_id'], 'caption': None,
           'clip_score': None}
    out.update(record)
    image_id, caption, score = out['image_id'], out['caption'], out[
        'clip_score']
    if isinstance(image_id, bool) or not isinstance(image_id, (str, int)):
        raise ValueError(
            f'records[{i}]["image_id"] must be a str or int, got {image_id!r}')
    if caption is not None and not isinstance(caption, str):
        raise ValueError(
            f'records[{i}]["caption"] must be a str or None, got {caption!r}')
    if score is not None:
        if isinstance(score, bool) or not isinstance(
                score, (int, float, np.floating)) or not math.isfinite(score):
            raise ValueError(f'records[{i}]["clip_score"] must be a finite '
                             f'float or None, got {score!r}')
        out['clip_score'] = float(score)
    return out


class FeatureStoreWriter:
    """Write a feature store, shard by shard; resumable.

    Each shard is written into ``<root>/.shard_XXXXX.tmp-<pid>``, moved into
    place with ``os.replace``, and only then listed in meta.json (rewritten
    atomically). A crash therefore leaves at most an unlisted shard folder,
    which readers ignore and the next writer overwrites. One writer per root.

    Opening a root that has a meta.json resumes it: :attr:`num_items` says how
    many items are already stored, so the caller skips that many inputs.

    Args:
        root (str | PathLike): The store directory (created if missing).
        clip_info (CLIPFeatureInfo): The CLIP encoder and feature sizes.
        shard_size (int): Items per shard written by :meth:`add`.
            Defaults to 4096.
        clip_score_text (str, optional): The caption normalisation of the
            records' ``clip_score`` (see :class:`FeatureStoreMeta`).
            Defaults to None (not recorded).

    Raises:
        InputError: If ``root`` holds a store with different clip info or
            another ``clip_score_text`` (a ``ValueError``).
    """

    def __init__(self,
                 root: PathLike,
                 clip_info: CLIPFeatureInfo,
                 shard_size: int = 4096,
                 clip_score_text: Optional[str] = None) -> None:
        _check_positive_int(shard_size, 'shard_size')
        self.root = os.fspath(root)
        self.clip_info = clip_info
        self.shard_size = shard_size
        self.clip_score_text = clip_score_text
        os.makedirs(self.root, exist_ok=True)
        self.meta = self._open_meta()
        self._remove_stale_tmp_dirs()
        self._buffer: List[Tuple[np.ndarray, np.ndarray, List[dict],
                                 Optional[np.ndarray]]] = []

    def _open_meta(self) -> FeatureStoreMeta:
        """Start a new meta, or resume the one on disk if clip info agrees."""
        meta_path = osp.join(self.root, META_FILE)
        if not osp.isfile(meta_path):
            return FeatureStoreMeta(clip=self.clip_info,
                                    clip_score_text=self.clip_score_text)
        meta = read_meta(self.root)
        diff = meta.clip.diff(self.clip_info)
        if diff:
            found = ', '.join(f'clip.{k} is {a!r} (writer: {b!r})'
                              for k, a, b in diff)
            raise InputError(
                meta_path, 'the existing store was written with other CLIP '
                f'settings: {found}',
                'write to a new output folder, or resume with the same CLIP '
                'settings')
        if meta.clip_score_text != self.clip_score_text:
            raise InputError(
                meta_path, f'clip_score_text is {meta.clip_score_text!r} '
                'but this writer scores captions normalised as '
                f'{self.clip_score_text!r} (None: not recorded), and one '
                'store must not mix scores of the two',
                'write to a new output folder')
        FeatureStore(self.root)  # the completed shards must be readable
        return meta

    def _remove_stale_tmp_dirs(self) -> None:
        for name in os.listdir(self.root):
            if _TMP_SHARD_RE.match(name):
                shutil.rmtree(osp.join(self.root, name))

    @property
    def num_items(self) -> int:
        """Items in complete shards (buffered items not counted)."""
        return self.meta.num_items

    @property
    def shards(self) -> List[ShardInfo]:
        """The complete shards."""
        return list(self.meta.shards)

    @property
    def num_buffered(self) -> int:
        return sum(len(part[2]) for part in self._buffer)

    def _validate_shard(
        self, patch_tokens: Any, global_embeds: Any,
        records: Sequence[Mapping], text_embeds: Optional[Any]
    ) -> Tuple[np.ndarray, np.ndarray, List[dict], Optional[np.ndarray]]:
        """Check one batch against clip info; return float16 arrays."""
        n, clip = len(records), self.clip_info
        if n == 0:
            raise ValueError('a shard needs at least one record')
        patches = _to_float16(patch_tokens, 'patch_tokens',
                              (n, clip.num_patches, clip.patch_dim))
        globals_ = _to_float16(global_embeds, 'global_embeds',
                               (n, clip.embed_dim))
        _check_unit_norm(globals_, 'global_embeds')
        texts = None
        if text_embeds is not None:
            texts = _to_float16(text_embeds, 'text_embeds',
                                (n, clip.embed_dim))
        clean = [_clean_record(r, i) for i, r in enumerate(records)]
        return patches, globals_, clean, texts

    def _check_text_consistency(self, has_text: bool) -> None:
        if self.meta.shards and has_text != self.meta.has_text_embeds:
            raise InputError(
                osp.join(self.root, META_FILE), 'has_text_embeds is '
                f'{self.meta.has_text_embeds}, so every shard must '
                f'{"have" if self.meta.has_text_embeds else "lack"} '
                'text_embeds', 'write to a new output folder, or resume '
                'with the same captions as the finished shards')

    def write_shard(self,
                    patch_tokens: Any,
                    global_embeds: Any,
                    records: Sequence[Mapping],
                    text_embeds: Optional[Any] = None) -> ShardInfo:
        """Validate and write one complete shard, then update meta.json.

        Args:
            patch_tokens (np.ndarray | torch.Tensor): ``(n, N, Dv)`` floats.
            global_embeds (np.ndarray | torch.Tensor): ``(n, D)``
                L2-normalised floats.
            records (Sequence[dict]): ``n`` dicts with ``image_id`` (str or
                int) and optional ``caption`` (str or None) and
                ``clip_score`` (float or None).
            text_embeds (np.ndarray | torch.Tensor, optional): ``(n, D)``
                caption text embeddings. Defaults to None.

        Returns:
            ShardInfo: The shard written.
        """
        if self._buffer:
            raise RuntimeError('call close() (or flush()) to write the items '
                               'buffered by add() before write_shard()')
        arrays = self._validate_shard(patch_tokens, global_embeds, records,
                                      text_embeds)
        return self._write_validated(*arrays)

    def _write_validated(self, patches: np.ndarray, globals_: np.ndarray,
                         records: List[dict],
                         texts: Optional[np.ndarray]) -> ShardInfo:
        self._check_text_consistency(texts is not None)
        info = ShardInfo(f'{SHARD_PREFIX}{len(self.meta.shards):05d}',
                         len(records))
        final = osp.join(self.root, info.name)
        tmp = tmp_path_for(final)
        if osp.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        _save_npy(osp.join(tmp, PATCH_FILE), patches)
        _save_npy(osp.join(tmp, GLOBAL_FILE), globals_)
        if texts is not None:
            _save_npy(osp.join(tmp, TEXT_FILE), texts)
        _save_jsonl(osp.join(tmp, RECORDS_FILE), records)
        if osp.exists(final):  # left over by a crash, never listed in meta
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(self.root)
        self.meta = dataclasses.replace(
            self.meta,
            shards=self.meta.shards + [info],
            has_text_embeds=texts is not None)
        write_meta(self.root, self.meta)
        return info

    def add(self,
            patch_tokens: Any,
            global_embeds: Any,
            records: Sequence[Mapping],
            text_embeds: Optional[Any] = None) -> None:
        """Buffer a batch; write every full shard of ``shard_size`` items.

        Takes the same arguments as :meth:`write_shard`, for any batch size.
        """
        part = self._validate_shard(patch_tokens, global_embeds, records,
                                    text_embeds)
        if self._buffer and (part[3] is None) != (self._buffer[0][3] is None):
            raise ValueError('text_embeds must be given for every batch or '
                             'for none')
        self._buffer.append(part)
        while self.num_buffered >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, count: int) -> None:
        """Write the first ``count`` buffered items as one shard."""
        patches = np.concatenate([p[0] for p in self._buffer])  # (b, N, Dv)
        globals_ = np.concatenate([p[1] for p in self._buffer])  # (b, D)
        records = [r for p in self._buffer for r in p[2]]
        texts = None
        if self._buffer[0][3] is not None:
            texts = np.concatenate([p[3] for p in self._buffer])  # (b, D)
        self._write_validated(patches[:count], globals_[:count],
                              records[:count],
                              None if texts is None else texts[:count])
        self._buffer = []
        if len(records) > count:
            rest_texts = None if texts is None else texts[count:]
            self._buffer = [(patches[count:], globals_[count:],
                             records[count:], rest_texts)]

    def flush(self) -> None:
        """Write every buffered item (the last shard may be smaller)."""
        if self._buffer:
            self._flush(self.num_buffered)

    def close(self) -> None:
        """Flush the buffer and write meta.json (also for an empty store)."""
        self.flush()
        write_meta(self.root, self.meta)

    def __enter__(self) -> 'FeatureStoreWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, 'wb') as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())


def _save_jsonl(path: str, records: List[dict]) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + '\n')
        f.flush()
        os.fsync(f.fileno())
