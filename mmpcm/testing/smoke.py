"""The tiny built-in data set of ``configs/pcm/pcm_smoke.py``.

:func:`write_smoke_data` writes it; ``tools/data/make_smoke_data.py`` is its
command line.
"""
import json
import os
import os.path as osp

from mmpcm.text import WordVocabulary
from .models import (TINY_EMBED_DIM, TINY_NUM_PATCHES, TINY_PATCH_DIM,
                     random_concepts)
from .stores import make_random_feature_store

__all__ = ['SMOKE_CAPTIONS', 'SMOKE_CONCEPTS', 'write_smoke_data']

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
    WordVocabulary.from_captions(SMOKE_CAPTIONS, min_count=1).save(
        osp.join(root, 'vocab.json'))
