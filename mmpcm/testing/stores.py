"""Feature stores of random values, for tests and benchmarks.

Real stores come from the feature extraction tool;
:func:`make_random_feature_store` writes one in the same format through
:class:`~mmpcm.datasets.FeatureStoreWriter`.
"""
from typing import Optional, Sequence, Union

import numpy as np

from mmpcm.datasets.feature_store import (CLIPFeatureInfo, FeatureStore,
                                          FeatureStoreWriter)
from mmpcm.utils.fileio import PathLike

__all__ = ['make_random_feature_store']


def make_random_feature_store(root: PathLike,
                              captions: Sequence[Optional[str]],
                              num_patches: int,
                              patch_dim: int,
                              embed_dim: int,
                              clip_model: str = 'tiny',
                              image_ids: Optional[Sequence[Union[
                                  str, int]]] = None,
                              clip_scores: Optional[Sequence[Optional[
                                  float]]] = None,
                              seed: int = 0,
                              shard_size: int = 4096,
                              with_text_embeds: bool = False) -> FeatureStore:
    """Write a store of random features, one item per caption.

    A utility for tests and benchmarks; real stores come from the feature
    extraction tool.

    Args:
        root (str | PathLike): The store directory.
        captions (Sequence[str | None]): One caption per item.
        num_patches (int): Patch tokens per item N.
        patch_dim (int): Patch token width Dv.
        embed_dim (int): CLIP joint-space width D.
        clip_model (str): Name stored as ``clip.model``. Defaults to 'tiny'.
        image_ids (Sequence[str | int], optional): Defaults to
            ``0 .. len(captions) - 1``.
        clip_scores (Sequence[float | None], optional): Defaults to the
            cosine between the random global and text embeddings.
        seed (int): Seed of the random values. Defaults to 0.
        shard_size (int): Items per shard. Defaults to 4096.
        with_text_embeds (bool): Also store text embeddings. Defaults to
            False.

    Returns:
        FeatureStore: The store, opened for reading.

    Raises:
        ValueError: If ``image_ids`` or ``clip_scores`` has another length
            than ``captions``.
    """
    n = len(captions)
    rng = np.random.default_rng(seed)
    clip = CLIPFeatureInfo(
        model=clip_model,
        num_patches=num_patches,
        patch_dim=patch_dim,
        embed_dim=embed_dim)
    patches = rng.standard_normal((n, num_patches, patch_dim))
    globals_ = _unit_rows(rng.standard_normal((n, embed_dim)))  # (n, D)
    texts = _unit_rows(rng.standard_normal((n, embed_dim)))  # (n, D)
    if clip_scores is None:
        clip_scores = (globals_ * texts).sum(-1).tolist()  # (n, )
    ids = list(range(n)) if image_ids is None else list(image_ids)
    records = [
        dict(image_id=i, caption=c, clip_score=s)
        for i, c, s in zip(ids, captions, clip_scores, strict=True)
    ]
    with FeatureStoreWriter(root, clip, shard_size=shard_size) as writer:
        if n:
            writer.add(patches, globals_, records,
                       texts if with_text_embeds else None)
    return FeatureStore(root)


def _unit_rows(array: np.ndarray) -> np.ndarray:
    """Rows of ``array`` (``(n, D)``) scaled to unit L2 norm."""
    return array / np.linalg.norm(array, axis=-1, keepdims=True)
