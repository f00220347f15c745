"""Merging the finished rank parts of an extraction into one feature
store, in rank order; safe to rerun after an interruption."""
import json
import logging
import os
import os.path as osp
import shutil
from typing import Any, Dict, List, Tuple

from mmpcm.datasets.feature_store import (META_FILE, RECORDS_FILE,
                                          FeatureStore, FeatureStoreMeta,
                                          ShardInfo, read_meta, write_meta)
from mmpcm.utils.fileio import PathLike, atomic_write_json
from .parts import (DONE_FILE, FAILED_FILE, INFO_FILE, _find_parts,
                    _read_failed, _write_failed)

logger = logging.getLogger(__name__)

__all__ = ['merge_feature_parts']


def _ready_parts(out_dir: str) -> List[str]:
    """The rank parts in rank order; raise unless all are finished."""
    parts = _find_parts(out_dir)
    worlds = sorted({w for _, w in parts})
    if len(worlds) != 1:
        raise ValueError(f'{out_dir}: rank parts of several world sizes '
                         f'{worlds}; keep the parts of one run only')
    world = worlds[0]
    missing = [r for r in range(world) if (r, world) not in parts]
    unfinished = [r for (r, _), p in parts.items()
                  if not osp.isfile(osp.join(p, DONE_FILE))]
    if missing or unfinished:
        raise ValueError(
            f'{out_dir}: cannot merge: rank(s) {sorted(missing + unfinished)}'
            f' of {world} have not finished (no {DONE_FILE}); rerun the '
            f'extraction with WORLD_SIZE={world} for them, then merge')
    return [parts[r, world] for r in range(world)]


def _merged_meta(parts: List[str]) -> Tuple[FeatureStoreMeta, List[Tuple[
        str, str]]]:
    """The merged meta and the ``(source, destination)`` shard moves."""
    metas = [read_meta(p) for p in parts]
    clip = metas[0].clip
    for part, meta in zip(parts, metas):
        if meta.clip.diff(clip):
            raise ValueError(f'{part}: CLIP settings {meta.clip.diff(clip)} '
                             f'differ from {parts[0]}')
    texts = {m.has_text_embeds for m in metas if m.shards}
    if len(texts) > 1:
        raise ValueError('some rank parts have text embeddings, others not')
    for part, meta in zip(parts, metas):
        if meta.clip_score_text != metas[0].clip_score_text:
            raise ValueError(
                f'{part}: clip_score_text {meta.clip_score_text!r} differs '
                f'from {parts[0]}\'s {metas[0].clip_score_text!r}; the '
                'parts were scored on differently normalised captions')
    shards, moves = [], []
    for part, meta in zip(parts, metas):
        for shard in meta.shards:
            name = f'shard_{len(shards):05d}'
            shards.append(ShardInfo(name, shard.count))
            moves.append((osp.join(part, shard.name), name))
    merged = FeatureStoreMeta(clip=clip, shards=shards,
                              has_text_embeds=texts == {True},
                              clip_score_text=metas[0].clip_score_text)
    return merged, moves


def _combine_info(parts: List[str],
                  meta: FeatureStoreMeta) -> Dict[str, Any]:
    done = []
    for part in parts:
        with open(osp.join(part, DONE_FILE), encoding='utf-8') as f:
            done.append(json.load(f))
    return dict(
        source=done[0]['source'], clip=done[0]['clip'],
        clip_info=meta.clip.to_dict(), world_size=len(parts),
        num_items=sum(d['num_items'] for d in done),
        num_failed=sum(d['num_failed'] for d in done),
        num_captions_truncated=sum(d['num_captions_truncated'] for d in done),
        versions=done[0]['versions'])


def merge_feature_parts(out_dir: PathLike) -> FeatureStore:
    """Merge the finished rank parts of ``out_dir`` into one feature store.

    Shards are moved (not copied) into ``out_dir`` in rank order, then
    ``failed.txt``, ``extraction_info.json`` and last ``meta.json`` are
    written, and the rank folders removed. Safe to rerun after an
    interruption at any point.

    Args:
        out_dir (str | PathLike): The extraction output folder.

    Returns:
        FeatureStore: The merged store.

    Raises:
        FileNotFoundError: If there are neither parts nor a merged store.
        ValueError: If a rank is missing or unfinished, parts disagree, or
            an image id appears twice.
    """
    out_dir = os.fspath(out_dir)
    parts = _find_parts(out_dir)
    if not parts:
        if osp.isfile(osp.join(out_dir, META_FILE)):
            return FeatureStore(out_dir)
        raise FileNotFoundError(f'{out_dir}: no rank parts (rank_*-of-*) and '
                                'no merged meta.json: nothing to merge')
    if not osp.isfile(osp.join(out_dir, META_FILE)):  # not merged yet
        ordered = _ready_parts(out_dir)
        meta, moves = _merged_meta(ordered)
        _move_shards(out_dir, moves)
        _check_unique_ids_in_shards(out_dir, meta)
        failed = [f for p in ordered
                  for f in _read_failed(osp.join(p, FAILED_FILE)).values()]
        _write_failed(osp.join(out_dir, FAILED_FILE), failed)
        atomic_write_json(osp.join(out_dir, INFO_FILE),
                          _combine_info(ordered, meta))
        write_meta(out_dir, meta)  # last: from here on the store is complete
    for part in parts.values():  # the merge is complete: drop the parts
        shutil.rmtree(part)
    store = FeatureStore(out_dir)
    logger.info(f'merged {len(parts)} rank part(s) into {out_dir}: '
                f'{len(store)} items')
    return store


def _move_shards(out_dir: str, moves: List[Tuple[str, str]]) -> None:
    for src, name in moves:
        dst = osp.join(out_dir, name)
        if osp.isdir(src):
            if osp.exists(dst):  # left by an interrupted merge
                shutil.rmtree(dst)
            os.replace(src, dst)
        elif not osp.isdir(dst):
            raise FileNotFoundError(f'{src} is listed in its part\'s '
                                    f'meta.json but is missing, and {dst} '
                                    'does not exist either')


def _check_unique_ids_in_shards(out_dir: str,
                                meta: FeatureStoreMeta) -> None:
    """Refuse to finish a merge whose shards repeat an image id."""
    seen = set()
    for shard in meta.shards:
        path = osp.join(out_dir, shard.name, RECORDS_FILE)
        with open(path, encoding='utf-8') as f:
            for lineno, line in enumerate(f, start=1):
                image_id = json.loads(line)['image_id']
                if image_id in seen:
                    raise ValueError(f'{path} line {lineno}: image id '
                                     f'{image_id!r} is already in an earlier '
                                     'shard; the rank parts overlap')
                seen.add(image_id)
