"""Writing a feature store: :class:`FeatureStoreWriter`, shard by shard.

Arrays are validated and cast to float16; each shard is written into a
temporary folder, renamed into place, and only then listed in meta.json, so a
crash never leaves a listed shard incomplete. See ``docs/feature_format.md``.
"""
import dataclasses
import json
import math
import os
import os.path as osp
import re
import shutil
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from mmpcm.utils.cli import InputError
from mmpcm.utils.fileio import PathLike, fsync_dir, tmp_path_for
from .meta import (DTYPE, GLOBAL_FILE, META_FILE, PATCH_FILE, RECORDS_FILE,
                   SHARD_PREFIX, TEXT_FILE, CLIPFeatureInfo, FeatureStoreMeta,
                   ShardInfo, _check_positive_int, read_meta, write_meta)
from .reader import FeatureStore

_TMP_SHARD_RE = re.compile(r'^\.shard_\d+\.tmp-\d+$')
_NORM_TOL = 2e-2  # float16 rounding of a unit vector stays well inside this

__all__ = ['FeatureStoreWriter']


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
