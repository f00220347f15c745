"""SynthImgCap: pre-extracted CLIP features of synthetic images + captions."""
import os
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Union)

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmpretrain.structures import DataSample

from mmpcm.registry import DATASETS
from mmpcm.utils.cli import InputError
from .feature_store import FeatureStore, load_pairing

# dataset argument -> meta.json key it is checked against
_CLIP_ARGS = {
    'clip_model': 'clip.model',
    'num_patches': 'clip.num_patches',
    'patch_dim': 'clip.patch_dim',
    'embed_dim': 'clip.embed_dim',
}


@DATASETS.register_module()
class SynthImgCapDataset(BaseDataset):
    """Image-caption pairs stored as CLIP features in a feature store.

    Reads a directory written by
    :class:`~mmpcm.datasets.feature_store.FeatureStoreWriter` (layout in
    ``docs/feature_format.md``). The data list holds only small per-item
    dicts; the feature arrays stay memory-mapped and are read per item.

    Each item is ``dict(inputs=dict(patch_tokens=(N, Dv) float16 tensor,
    global_embed=(D,) float16 tensor), data_samples=DataSample)``; the
    DataSample carries ``image_id`` and ``sample_idx`` as meta info and,
    when the record has them, ``gt_caption`` and ``clip_score``. Batch items
    with ``collate_fn=dict(type='pcm_collate')``.

    With ``with_caption=True`` (training), ``inputs`` also holds the
    record's ``clip_score`` (0-d float32) when the store has scores; the
    training pipeline's :class:`~mmpcm.datasets.PCMTokenizeCaption` adds
    ``caption_ids``, so captions are tokenized in the loader workers.

    Args:
        data_root (str): The feature store directory.
        clip_model (str, optional): Expected ``clip.model`` of the store.
            Defaults to None (not checked).
        num_patches (int, optional): Expected ``clip.num_patches``.
            Defaults to None (not checked).
        patch_dim (int, optional): Expected ``clip.patch_dim``.
            Defaults to None (not checked).
        embed_dim (int, optional): Expected ``clip.embed_dim``.
            Defaults to None (not checked).
        with_caption (bool): Require a non-empty caption in every record,
            as training does. Defaults to True.
        pairing (str, optional): A refined pairing of this store (the folder
            ``tools/data/refine_pairs.py`` writes, SynC: Kim et al., ACM MM
            2025): item ``p`` trains caption ``caption_idx[p]`` on the
            features of store row ``image_idx[p]`` with the pair's
            recomputed ``clip_score``; captions it dropped are not read. The
            features are not copied. Defaults to None (every store row with
            its own caption).
        metainfo (dict, optional): Extra meta information, added to
            ``clip`` (the store's clip info) and ``feature_store`` (``root``,
            ``dtype``, ``has_text_embeds``, ``num_items``). Defaults to None.
        pipeline (Sequence[dict | Callable]): Transforms applied to each
            item dict, e.g. ``[dict(type='PCMTokenizeCaption',
            vocab='data/coco/vocab.json', max_len=20)]`` for training.
            Defaults to ().
        test_mode (bool): Whether the dataset is used for testing.
            Defaults to False.
        indices (int | Sequence[int], optional): Use only these items (first
            ``indices`` items if an int). Defaults to None (all).
        lazy_init (bool): Defer reading the records until first use.
            meta.json and the shard headers are still checked at once.
            Defaults to False.
        serialize_data (bool): Keep the data list as one byte buffer shared
            by DataLoader workers. Defaults to True.
        max_refetch (int): Retries when the pipeline returns None.
            Defaults to 1000.

    Raises:
        MissingInputError: If the store directory, its meta.json or a shard
            file is missing (a ``FileNotFoundError``).
        InputError: If the store disagrees with the expected CLIP settings
            (naming meta.json, the key and both values), if ``pairing`` was
            made for another store or is incomplete (naming its file), or, with
            ``with_caption=True``, a record has no caption (naming the
            records file and line); a ``ValueError``.

    Examples:
        >>> dataset = SynthImgCapDataset(
        ...     data_root='data/synthimgcap_coco_vitb32',
        ...     clip_model='ViT-B-32', num_patches=49, patch_dim=768,
        ...     embed_dim=512)
        >>> item = dataset[0]
        >>> item['inputs']['patch_tokens'].shape
        torch.Size([49, 768])
    """

    def __init__(self,
                 data_root: str,
                 clip_model: Optional[str] = None,
                 num_patches: Optional[int] = None,
                 patch_dim: Optional[int] = None,
                 embed_dim: Optional[int] = None,
                 with_caption: bool = True,
                 pairing: Optional[str] = None,
                 metainfo: Optional[Mapping] = None,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 test_mode: bool = False,
                 indices: Optional[Union[int, Sequence[int]]] = None,
                 lazy_init: bool = False,
                 serialize_data: bool = True,
                 max_refetch: int = 1000) -> None:
        self.with_caption = with_caption
        self.pairing = None if pairing is None else os.fspath(pairing)
        self.store = FeatureStore(data_root)
        expected = dict(clip_model=clip_model, num_patches=num_patches,
                        patch_dim=patch_dim, embed_dim=embed_dim)
        self.store.check(
            {_CLIP_ARGS[arg]: value for arg, value in expected.items()})
        # No top-level str values: BaseDataset would try them as file names.
        store_info = dict(
            clip=self.store.clip_info.to_dict(),
            feature_store=dict(
                root=self.store.root,
                dtype=self.store.meta.dtype,
                has_text_embeds=self.store.has_text_embeds,
                num_items=len(self.store),
                pairing=self.pairing))
        super().__init__(
            ann_file='',
            metainfo={**store_info, **dict(metainfo or {})},
            data_root=os.fspath(data_root),
            data_prefix=dict(),
            indices=indices,
            serialize_data=serialize_data,
            pipeline=list(pipeline),
            test_mode=test_mode,
            lazy_init=lazy_init,
            max_refetch=max_refetch)

    def load_data_list(self) -> List[dict]:
        """Read every record into a small dict (no feature arrays).

        Returns:
            list[dict]: ``sample_idx``, ``store_idx`` (the store row whose
            features the item reads), ``image_id``, ``caption`` and
            ``clip_score`` per item; with a pairing also ``caption_idx``
            (the store row the caption comes from).
        """
        # (caption's (path, line, record), image row, image_id, score,
        # caption row or None)
        if self.pairing is None:  # streamed: each row with its own caption
            pairs = ((row, i, row[2]['image_id'], row[2].get('clip_score'),
                      None)
                     for i, row in enumerate(self.store.iter_records()))
        else:
            rows = list(self.store.iter_records())  # (path, line, record)
            pairing = load_pairing(self.pairing, self.store)
            pairs = ((rows[c], i, rows[i][2]['image_id'], score, c)
                     for c, i, score in zip(pairing.caption_idx.tolist(),
                                            pairing.image_idx.tolist(),
                                            pairing.clip_score.tolist()))
        data_list = []
        for sample_idx, ((path, lineno, record), image_idx, image_id, score,
                         caption_idx) in enumerate(pairs):
            caption = record.get('caption')
            if self.with_caption:
                self._check_caption(caption, path, lineno)
            info = dict(
                sample_idx=sample_idx,
                store_idx=image_idx,
                image_id=image_id,
                caption=caption,
                clip_score=score)
            if caption_idx is not None:
                info['caption_idx'] = caption_idx
            data_list.append(info)
        return data_list

    @staticmethod
    def _check_caption(caption: Any, path: str, lineno: int) -> None:
        if not isinstance(caption, str) or not caption.strip():
            raise InputError(
                path, f'line {lineno}: caption is {caption!r}, but training '
                '(with_caption=True) needs a non-empty caption in every '
                'record', 'set with_caption=False in the dataset config to '
                'read captionless items (testing), or extract the store with '
                'captions')

    def prepare_data(self, idx: int) -> Any:
        """Read item ``idx``'s features and build its data sample.

        Args:
            idx (int): Index in the dataset (after ``indices``).

        Returns:
            dict: ``inputs`` (dict of tensors) and ``data_samples``
            (DataSample), after the pipeline.
        """
        info = self.get_data_info(idx)
        item = self.store.get(info['store_idx'], with_record=False)
        inputs = dict(
            patch_tokens=torch.from_numpy(item.patch_tokens),  # (N, Dv)
            global_embed=torch.from_numpy(item.global_embed))  # (D, )
        if self.with_caption and info.get('clip_score') is not None:
            inputs['clip_score'] = np.asarray(info['clip_score'],
                                              dtype=np.float32)  # ()
        results = dict(inputs=inputs, data_samples=self._data_sample(info))
        return self.pipeline(results)

    @staticmethod
    def _data_sample(info: Dict[str, Any]) -> DataSample:
        data_sample = DataSample()
        data_sample.set_metainfo(
            dict(image_id=info['image_id'], sample_idx=info['sample_idx']))
        caption = info.get('caption')
        if isinstance(caption, str) and caption.strip():
            data_sample.gt_caption = caption
        if info.get('clip_score') is not None:
            data_sample.clip_score = float(info['clip_score'])
        return data_sample

    def extra_repr(self) -> List[str]:
        """Extra lines for ``repr``."""
        clip = self.store.clip_info
        return [
            f'Feature store: {self.store.root}',
            f'CLIP: {clip.model} ({clip.pretrained}), '
            f'{clip.num_patches}x{clip.patch_dim} patches, '
            f'{clip.embed_dim}-d global',
        ] + ([] if self.pairing is None else
             [f'Refined pairing: {self.pairing}'])

    def __repr__(self) -> str:
        head = f'Dataset {type(self).__name__}'
        size = (len(self) if self._fully_initialized else
                'unknown (not fully initialized)')
        body = [f'Number of samples: \t{size}'] + self.extra_repr()
        return '\n'.join([head] + ['    ' + line for line in body])
