"""Tiny, random-weight building blocks for tests and smoke runs.

Nothing here is downloaded: the CLIP model is an open_clip ``CLIP`` built
from a small config with random weights, exactly as real weights would be
built, only smaller.
"""
from typing import List, Optional

import torch
from mmengine.model import BaseModel
from torch.utils.data import Dataset

from mmpcm.models.utils.concepts import ConceptVocabulary

TINY_CLIP_CFG = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=32, patch_size=8, width=32, layers=2,
                    head_width=16),
    text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2,
                  layers=1),
)
"""open_clip config of a tiny ViT CLIP: 4x4 patches of width 32, 16-d space."""

TINY_NUM_PATCHES, TINY_PATCH_DIM, TINY_EMBED_DIM = 16, 32, 16


def random_concepts(words: List[str],
                    embed_dim: int = TINY_EMBED_DIM,
                    clip_model: str = 'custom',
                    seed: int = 0) -> ConceptVocabulary:
    """A concept vocabulary with random unit embeddings."""
    gen = torch.Generator().manual_seed(seed)
    return ConceptVocabulary(list(words),
                             torch.randn(len(words), embed_dim, generator=gen),
                             clip_model)


def tiny_captioner_cfg(vocab, concepts: Optional[str], model_dim: int = 32,
                       **neck_overrides) -> dict:
    """Config of a tiny PCMCaptioner over :data:`TINY_CLIP_CFG`."""
    neck = dict(type='PCMNeck', concepts=concepts, clip_model='custom',
                num_patches=TINY_NUM_PATCHES, patch_dim=TINY_PATCH_DIM,
                embed_dim=TINY_EMBED_DIM, model_dim=model_dim, top_k=3,
                num_selected=3)
    neck.update(neck_overrides)
    return dict(
        type='PCMCaptioner',
        backbone=dict(type='OpenCLIPVisionBackbone', model_name=None,
                      model_cfg=TINY_CLIP_CFG),
        neck=neck,
        encoder=dict(type='VisualSemanticEncoder', num_layers=1,
                     model_dim=model_dim, num_heads=2, ffn_dim=64,
                     dropout=0.1),
        head=dict(type='PCMCaptionHead', vocab=vocab, model_dim=model_dim,
                  num_layers=1, num_heads=2, ffn_dim=64, dropout=0.1,
                  max_len=12, beam_size=3))


SMOKE_CAPTIONS = [
    'a red ball on the green grass',
    'two dogs play in the white snow',
    'a man rides a brown horse on the beach',
    'a cat sleeps on a red sofa',
    'a plate of food on a wooden table',
    'a boy throws a ball to a dog',
    'a woman holds an umbrella in the rain',
    'a train waits at the station',
]
SMOKE_CONCEPTS = ['ball', 'grass', 'dog', 'snow', 'man', 'horse', 'beach',
                  'cat', 'sofa', 'plate', 'food', 'table', 'boy', 'woman',
                  'umbrella', 'rain', 'train', 'station']


def write_smoke_data(root: str, seed: int = 0) -> None:
    """Write the tiny built-in data set that ``configs/pcm/pcm_smoke.py`` uses.

    Random tiny-CLIP features, one per caption of :data:`SMOKE_CAPTIONS`: a
    synthetic training store, a "real" test store holding the same features
    without captions, COCO-format references for it, and a concept file. A
    captioner that learns reproduces the references, so the run's metric
    shows learning; it says nothing about real images (that is the offline
    benchmark's job).

    Args:
        root (str): Output folder (``train/``, ``test/``,
            ``test_gt.json``, ``concepts.safetensors``, ``vocab.json``).
        seed (int): Seed of the random features. Defaults to 0.
    """
    import json
    import os
    import os.path as osp

    from mmpcm.datasets.feature_store import make_random_feature_store
    os.makedirs(root, exist_ok=True)
    n = len(SMOKE_CAPTIONS)
    dims = dict(num_patches=TINY_NUM_PATCHES, patch_dim=TINY_PATCH_DIM,
                embed_dim=TINY_EMBED_DIM, clip_model='custom', seed=seed)
    ids = [f'smoke_{i}' for i in range(n)]
    # Same seed and count: the test store holds exactly the train features.
    make_random_feature_store(osp.join(root, 'train'), SMOKE_CAPTIONS,
                              image_ids=ids, clip_scores=[0.3] * n, **dims)
    make_random_feature_store(osp.join(root, 'test'), [None] * n,
                              image_ids=ids, clip_scores=[None] * n, **dims)
    gt = dict(images=[dict(id=i) for i in ids],
              annotations=[dict(id=k, image_id=i, caption=c)
                           for k, (i, c) in enumerate(zip(ids, SMOKE_CAPTIONS))])
    with open(osp.join(root, 'test_gt.json'), 'w') as f:
        json.dump(gt, f)
    random_concepts(SMOKE_CONCEPTS, seed=seed).save(
        osp.join(root, 'concepts.safetensors'))
    from mmpcm.text import WordVocabulary
    WordVocabulary.from_captions(SMOKE_CAPTIONS, min_count=1).save(
        osp.join(root, 'vocab.json'))



class TinyRegressionModel(BaseModel):
    """``y = w.x + b`` trained with MSE: a Runner-level test model."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        return out


class TinyRegressionDataset(Dataset):
    """``num_samples`` points ``x = (i, 1)``, ``y = i`` for the model above."""

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=torch.tensor([float(index), 1.0]),
                    labels=torch.tensor(float(index)))
