"""meta.json of a feature store: its schema, and reading and writing it.

:class:`FeatureStoreMeta` (with :class:`CLIPFeatureInfo` and
:class:`ShardInfo`) is the parsed, validated meta.json; :func:`read_meta` and
:func:`write_meta` move it to and from disk. ``docs/feature_format.md``
describes every key.
"""
import json
import os
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from mmpcm.utils.cli import InputError, MissingInputError
from mmpcm.utils.fileio import PathLike, atomic_write_text, fsync_dir

FORMAT_NAME = 'mmpcm-features'
FORMAT_VERSION = 1
DTYPE = 'float16'
META_FILE = 'meta.json'
PATCH_FILE = 'patch_tokens.npy'
GLOBAL_FILE = 'global_embeds.npy'
TEXT_FILE = 'text_embeds.npy'
RECORDS_FILE = 'records.jsonl'
SHARD_PREFIX = 'shard_'
_EXTRACT_TOOL = 'tools/data/extract_features.py'
_REBUILD = (f'rebuild the store: re-run {_EXTRACT_TOOL} (or '
            'tools/data/import_release_features.py for the released '
            'features) into a new folder')
"""What to do about a store whose files are damaged or not mmpcm's."""

__all__ = [
    'CLIPFeatureInfo', 'ShardInfo', 'FeatureStoreMeta', 'read_meta',
    'write_meta', 'FORMAT_NAME', 'FORMAT_VERSION', 'DTYPE', 'META_FILE',
    'PATCH_FILE', 'GLOBAL_FILE', 'TEXT_FILE', 'RECORDS_FILE', 'SHARD_PREFIX'
]


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
