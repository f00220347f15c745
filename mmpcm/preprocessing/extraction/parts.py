"""The extraction output folder's bookkeeping: the rank parts, the recorded
input list and decode mode, the failed-image lists, and the checks a run makes
before it writes (another world size, an already merged store)."""
import hashlib
import json
import logging
import os
import os.path as osp
import re
from typing import Any, Dict, Iterable, Sequence, Tuple

import open_clip
import torch

from mmpcm.datasets.feature_store import (META_FILE, SOURCE_FILE,
                                          CLIPFeatureInfo,
                                          FeatureStore)
from mmpcm.preprocessing.sharding import RankInfo
from mmpcm.utils.fileio import PathLike, atomic_write_json, atomic_write_text
from .clip_model import CLIP_SCORE_TEXT
from .config import ExtractionSummary, FailedImage
from .items import ExtractionItem

logger = logging.getLogger(__name__)

INFO_FILE = 'extraction_info.json'
FAILED_FILE = 'failed.txt'
DONE_FILE = 'done.json'
_PART_RE = re.compile(r'^rank_(\d{5})-of-(\d{5})$')


def part_dir(out_dir: PathLike, info: RankInfo) -> str:
    """``<out>/rank_<rank:05d>-of-<world:05d>``."""
    return osp.join(os.fspath(out_dir),
                    f'rank_{info.rank:05d}-of-{info.world_size:05d}')


def _items_digest(items: Sequence[ExtractionItem]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps([item.image_id, item.relpath,
                                  item.caption]).encode() + b'\n')
    return digest.hexdigest()


def _write_or_check_source(out_dir: str, source: Dict[str, Any]) -> None:
    """Record the input list and decode mode, or refuse different ones."""
    path = osp.join(out_dir, SOURCE_FILE)
    if not osp.isfile(path):
        atomic_write_json(path, source)
        return
    with open(path, encoding='utf-8') as f:
        recorded = json.load(f)
    keys = ('num_items', 'items_sha256')
    if any(recorded.get(k) != source[k] for k in keys):
        raise ValueError(
            f'{path}: this folder was started with another input list '
            f'({recorded.get("num_items")} items from '
            f'{recorded.get("root")!r}; now {source["num_items"]} from '
            f'{source["root"]!r}). Ranks split the list by position, so a '
            'changed list would mix items; use a new output folder.')
    # Folders started before the decode option have no key: PIL decoded.
    recorded_decode = recorded.get('decode', 'cpu')
    if recorded_decode != source['decode']:
        raise ValueError(
            f'{path}: "decode" is {recorded_decode!r} (the images already '
            f'stored were decoded that way), but this run has decode='
            f'{source["decode"]!r}. Features of the two modes differ at '
            'rounding level and one store must not mix them: resume with '
            f'--decode {recorded_decode} or use a new output folder.')


def _read_failed(path: str) -> Dict[str, FailedImage]:
    failed: Dict[str, FailedImage] = {}
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            for line in f:
                image_id, img_path, reason = line.rstrip('\n').split('\t', 2)
                failed[image_id] = FailedImage(image_id, img_path, reason)
    return failed


def _write_failed(path: str, failed: Iterable[FailedImage]) -> None:
    lines = [f'{f.image_id}\t{f.path}\t{" ".join(f.reason.split())}\n'
             for f in failed]
    atomic_write_text(path, ''.join(lines))


def _versions() -> Dict[str, str]:
    return dict(open_clip=open_clip.__version__, torch=torch.__version__)


def _source_info(items: Sequence[ExtractionItem], source: str,
                 decode: str) -> Dict[str, Any]:
    return dict(root=source, num_items=len(items),
                captioned=bool(items) and items[0].caption is not None,
                items_sha256=_items_digest(items), decode=decode)


def _find_parts(out_dir: str) -> Dict[Tuple[int, int], str]:
    """``(rank, world_size) -> folder`` of every rank part in ``out_dir``."""
    if not osp.isdir(out_dir):
        return {}
    parts = {}
    for name in sorted(os.listdir(out_dir)):
        match = _PART_RE.match(name)
        if match and osp.isdir(osp.join(out_dir, name)):
            parts[int(match.group(1)), int(match.group(2))] = osp.join(
                out_dir, name)
    return parts


def _is_merged(out_dir: str) -> bool:
    return osp.isfile(osp.join(out_dir, META_FILE)) and not _find_parts(
        out_dir)


def _check_merged(out_dir: str, items: Sequence[ExtractionItem],
                  clip_info: CLIPFeatureInfo) -> ExtractionSummary:
    """A rerun into a merged store: fine if it holds every readable item."""
    store = FeatureStore(out_dir)
    diff = store.clip_info.diff(clip_info)
    if diff:
        raise ValueError(f'{store.meta_path}: written with other CLIP '
                         f'settings {diff}; use a new output folder')
    captioned = bool(items) and items[0].caption is not None
    if captioned and store.clip_score_text != CLIP_SCORE_TEXT:
        raise ValueError(
            f'{store.meta_path}: clip_score_text is '
            f'{store.clip_score_text!r}, not {CLIP_SCORE_TEXT!r}: its CLIP '
            'scores were not computed on captions normalised as the '
            'release does (None: as written); extract into a new output '
            'folder')
    stored = {r['image_id'] for r in store.records}
    failed = _read_failed(osp.join(out_dir, FAILED_FILE))
    missing = [it for it in items if it.image_id not in stored
               and str(it.image_id) not in failed]
    if missing:
        raise ValueError(
            f'{out_dir} is a finished (merged) feature store without '
            f'{len(missing)} of the input images (first: {missing[0].path}); '
            'extract into a new output folder')
    logger.info(f'{out_dir}: merged store already holds every input image')
    return ExtractionSummary(assigned=len(items), already_done=len(stored),
                             failed=list(failed.values()),
                             merged_dir=out_dir)


def _check_world_size(out_dir: str, info: RankInfo) -> None:
    worlds = {w for _, w in _find_parts(out_dir)}
    if worlds - {info.world_size}:
        raise ValueError(
            f'{out_dir} holds rank parts of a run with WORLD_SIZE='
            f'{sorted(worlds)}; ranks split the items by world size, so '
            f'resume with that WORLD_SIZE (now {info.world_size}) or use a '
            'new output folder')
