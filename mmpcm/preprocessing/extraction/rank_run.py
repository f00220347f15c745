"""One rank's resumable extraction into its part store: load, encode,
write shards, list the failed images, mark the part done."""
import logging
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mmpcm.datasets.clip_transforms import (device_preprocess,
                                            device_transform_size)
from mmpcm.datasets.feature_store import FeatureStore, FeatureStoreWriter
from mmpcm.utils.fileio import atomic_write_json
from .clip_model import CLIP_SCORE_TEXT, CLIPFeatureExtractor, CLIPSpec
from .config import ExtractionConfig, ExtractionSummary, FailedImage
from .items import ExtractionItem
from .loading import _collate, _ImageDataset, _load_image
from .parts import (DONE_FILE, FAILED_FILE, _read_failed, _versions,
                    _write_failed)

logger = logging.getLogger(__name__)


class _RankRun:
    """One rank's extraction into its part store."""

    def __init__(self, items: Sequence[ExtractionItem], part: str,
                 extractor: CLIPFeatureExtractor,
                 config: ExtractionConfig) -> None:
        self.items, self.part = items, part
        self.extractor, self.config = extractor, config
        self.captioned = items[0].caption is not None if items else False
        self.writer = FeatureStoreWriter(
            part, extractor.clip_info, config.shard_size,
            clip_score_text=CLIP_SCORE_TEXT if self.captioned else None)
        self.failed_path = osp.join(part, FAILED_FILE)
        self.failed = _read_failed(self.failed_path)
        self.device_size = (device_transform_size(extractor.transform)
                            if config.decode == 'device' else None)

    def stored_ids(self) -> set:
        if not self.writer.num_items:
            return set()
        return {r['image_id'] for r in FeatureStore(self.part).records}

    def run(self, positions: List[int], summary: ExtractionSummary,
            bar: tqdm) -> None:
        loader = DataLoader(
            _ImageDataset(self.items, positions, self.extractor.transform,
                          self.config.decode),
            batch_size=self.config.batch_size,
            num_workers=self.config.num_workers, collate_fn=_collate,
            pin_memory=self.extractor.device.type == 'cuda')
        with bar:
            for batch in loader:
                positions, images, failed = self._batch_images(batch)
                self._note_failures(failed)
                if positions:
                    self._add(positions, images, summary)
                bar.update(len(batch['positions']) + len(batch['failed']) +
                           len(batch['encoded_positions']))
                bar.set_postfix(failed=len(self.failed))
        self.writer.close()
        _write_failed(self.failed_path, self.failed.values())

    def _batch_images(self, batch: Dict[str, Any]
                      ) -> Tuple[List[int], Optional[torch.Tensor],
                                 List[Tuple[int, str]]]:
        """The batch's images in input order, the encoded ones decoded on
        the device, and its failures in input order: ``(positions,
        (B, 3, S, S) uint8, [(position, reason)])``."""
        positions, images = batch['positions'], batch['images']
        if not batch['encoded_positions']:
            return positions, images, batch['failed']
        data = torch.split(batch['encoded'],
                           batch['encoded_sizes'])  # B x (num_bytes, )
        dev_positions, dev_images, failed = self._decode_on_device(
            batch['encoded_positions'], data)
        failed = sorted(batch['failed'] + failed)
        if images is None:
            return dev_positions, dev_images, failed
        if dev_images is None:
            return positions, images, failed
        device = self.extractor.device
        merged = torch.cat([images.to(device, non_blocking=True),
                            dev_images])  # (B, 3, S, S)
        merged_positions = positions + dev_positions
        order = sorted(range(len(merged_positions)),
                       key=merged_positions.__getitem__)
        return ([merged_positions[i] for i in order],
                merged[torch.tensor(order, device=device)], failed)

    def _decode_on_device(self, positions: List[int],
                          data: Sequence[torch.Tensor]
                          ) -> Tuple[List[int], Optional[torch.Tensor],
                                     List[Tuple[int, str]]]:
        """Decode + resize on the device; per image on a failure, then
        PIL for the images the device decoder rejects: ``(positions kept,
        (B, 3, S, S) uint8, [(position, PIL's reason)])``."""
        device = self.extractor.device
        try:
            return positions, device_preprocess(data, self.device_size,
                                                device), []
        except (RuntimeError, ValueError) as err:
            logger.warning(f'decoding {len(data)} JPEGs on {device} failed '
                           f'({_first_line(err)}); decoding them one by one')
        kept, images, failed = [], [], []
        for pos, one in zip(positions, data):
            try:
                images.append(device_preprocess(
                    [one], self.device_size, device))  # (1, 3, S, S)
                kept.append(pos)
                continue
            except (RuntimeError, ValueError) as err:
                rejected = _first_line(err)
            path = self.items[pos].path
            image, error = _load_image(path, self.extractor.transform)
            if image is None:
                failed.append((pos, error))
                continue
            logger.warning(f'{path}: the decoder on {device} rejected it '
                           f'({rejected}); decoded with PIL instead')
            images.append(image[None].to(device))  # (1, 3, S, S)
            kept.append(pos)
        return kept, torch.cat(images) if images else None, failed

    def _note_failures(self, failed: List[Tuple[int, str]]) -> None:
        for pos, error in failed:
            item = self.items[pos]
            logger.warning(f'skipped unreadable image {item.path}: {error}')
            self.failed[str(item.image_id)] = FailedImage(
                item.image_id, item.path, error)

    def _add(self, positions: List[int], images: torch.Tensor,
             summary: ExtractionSummary) -> None:
        items = [self.items[p] for p in positions]
        patches, globals_ = self.extractor.encode_images(images)
        texts, truncated = None, [False] * len(items)
        scores: List[Optional[float]] = [None] * len(items)
        if self.captioned:
            texts, truncated = self.extractor.encode_texts(
                [it.caption for it in items])
            scores = (globals_ * texts).sum(-1).tolist()  # (B, )
        records = [self._record(it, s, t)
                   for it, s, t in zip(items, scores, truncated, strict=True)]
        shards_before = len(self.writer.shards)
        self.writer.add(patches, globals_, records, texts)
        for item in items:
            self.failed.pop(str(item.image_id), None)
        if len(self.writer.shards) != shards_before:  # keep failed.txt current
            _write_failed(self.failed_path, self.failed.values())
        summary.extracted += len(items)
        summary.truncated_captions += sum(truncated)

    def _record(self, item: ExtractionItem, score: Optional[float],
                truncated: bool) -> Dict[str, Any]:
        record = dict(image_id=item.image_id, caption=item.caption,
                      clip_score=score, image=item.relpath)
        if self.captioned:
            record['caption_truncated'] = truncated
        return record


def _first_line(err: BaseException) -> str:
    """An exception's message for a log line: its first line."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _finish_part(part: str, run: _RankRun, source_info: Dict[str, Any],
                 spec: CLIPSpec, extractor: CLIPFeatureExtractor) -> None:
    """Write ``done.json``: the part is complete."""
    store = FeatureStore(part)
    truncated = sum(bool(r.get('caption_truncated')) for r in store.records)
    atomic_write_json(osp.join(part, DONE_FILE), dict(
        num_items=len(store), num_failed=len(run.failed),
        num_captions_truncated=truncated, source=source_info,
        clip=dict(model_name=spec.model_name, pretrained=spec.pretrained,
                  model_cfg=spec.load_model_cfg(),
                  patch_pool=spec.patch_pool,
                  context_length=extractor.context_length),
        versions=_versions()))
