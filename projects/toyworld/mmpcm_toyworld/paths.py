"""Where each file of a toy world lives, and readers of the world's own
files that the measurements share."""
import os.path as osp
from typing import Dict

import numpy as np


class WorldPaths:
    """Where each part of the world lives under ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.config = osp.join(root, 'world.json')
        self.corpus = osp.join(root, 'train_captions.txt')
        self.vocab = osp.join(root, 'vocab.json')
        # the corpus of a world built before it had a vocabulary file
        self.old_corpus = osp.join(root, 'corpus.txt')
        self.test_images = osp.join(root, 'test_images')
        self.test_gt = osp.join(root, 'test_gt.json')
        self.test_masks = osp.join(root, 'test_object_masks.npz')
        # CHAIR's inputs: each test image's objects and the synonym tables,
        # by shape ("circle") and by coloured shape ("red circle")
        self.test_objects = osp.join(root, 'test_objects.json')
        self.object_synonyms = osp.join(root, 'object_synonyms.json')
        self.test_coloured_objects = osp.join(root,
                                              'test_coloured_objects.json')
        self.coloured_object_synonyms = osp.join(
            root, 'coloured_object_synonyms.json')
        self.defects = osp.join(root, 'synthetic_defects.json')
        self.clip = osp.join(root, 'clip')
        self.synthetic = osp.join(root, 'synthetic')
        self.train_features = osp.join(root, 'features', 'train')
        self.test_features = osp.join(root, 'features', 'test')
        self.concepts = osp.join(root, 'concepts.safetensors')

    @property
    def clip_model(self) -> str:
        """The open_clip name of the world's CLIP."""
        return f'local-dir:{self.clip}'


def load_test_masks(paths: WorldPaths) -> Dict[str, np.ndarray]:
    """``{image_id: (n, H, W) bool}`` object masks of the test renders."""
    with np.load(paths.test_masks) as data:
        return {k: data[k] for k in data.files}
