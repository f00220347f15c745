"""Tiny, random-weight model configs and models for tests and smoke runs.

Nothing here is downloaded: the CLIP model is an open_clip ``CLIP`` built
from a small config with random weights, exactly as real weights would be
built, only smaller.
"""
import os.path as osp
from typing import List, NamedTuple, Optional, Sequence

import torch
from mmengine.model import BaseModel
from torch.utils.data import Dataset

from mmpcm.models.utils.concepts import ConceptVocabulary

__all__ = [
    'TINY_CLIP_CFG', 'TINY_NUM_PATCHES', 'TINY_PATCH_DIM', 'TINY_EMBED_DIM',
    'random_concepts', 'tiny_captioner_cfg', 'TinyCaptioner',
    'build_tiny_captioner', 'TinyRegressionModel', 'TinyRegressionDataset'
]

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
    """A concept vocabulary with random (then L2-normalised) embeddings.

    Args:
        words (list[str]): The concept words.
        embed_dim (int): Width D of the embeddings. Defaults to
            :data:`TINY_EMBED_DIM`.
        clip_model (str): CLIP name the vocabulary records. Defaults to
            'custom'.
        seed (int): Seed of the random values. Defaults to 0.

    Returns:
        ConceptVocabulary: ``len(words)`` embeddings of width D.
    """
    gen = torch.Generator().manual_seed(seed)
    return ConceptVocabulary(list(words),
                             torch.randn(len(words), embed_dim, generator=gen),
                             clip_model)


def tiny_captioner_cfg(vocab, concepts: Optional[str], model_dim: int = 32,
                       **neck_overrides) -> dict:
    """Config of a tiny PCMCaptioner over :data:`TINY_CLIP_CFG`.

    Args:
        vocab (WordVocabulary | list | str): The head's word vocabulary.
        concepts (str, optional): The neck's concept file.
        model_dim (int): Width of neck, encoder and head. Defaults to 32.
        **neck_overrides: Keys replacing the neck's defaults.

    Returns:
        dict: A ``PCMCaptioner`` model config.
    """
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


class TinyCaptioner(NamedTuple):
    """A tiny random captioner and its files (:func:`build_tiny_captioner`).

    Attributes:
        model (nn.Module): The ``PCMCaptioner``, in eval mode.
        checkpoint (str): A training-style checkpoint of it (its config
            text in ``meta.cfg``).
        concepts (str): Its concept file.
        cfg (dict): Its model config.
    """
    model: torch.nn.Module
    checkpoint: str
    concepts: str
    cfg: dict


def build_tiny_captioner(root: str, captions: Sequence[str],
                         concept_words: Sequence[str], seed: int = 0
                         ) -> TinyCaptioner:
    """Build a tiny random captioner and save its concept file and a
    training-style checkpoint (``epoch_1.pth``) under ``root``.

    Args:
        root (str): Output folder (exists).
        captions (Sequence[str]): Captions whose words form the vocabulary.
        concept_words (Sequence[str]): The concept vocabulary's words.
        seed (int): Seed of the weights. Defaults to 0.

    Returns:
        TinyCaptioner: The model and its files.
    """
    from mmengine.config import Config

    from mmpcm.registry import MODELS
    from mmpcm.text import WordVocabulary
    concepts = osp.join(root, 'concepts.safetensors')
    random_concepts(list(concept_words)).save(concepts)
    vocab = WordVocabulary.from_captions(list(captions), min_count=1).words
    cfg = tiny_captioner_cfg(vocab, concepts)
    torch.manual_seed(seed)
    model = MODELS.build(cfg).eval()
    checkpoint = osp.join(root, 'epoch_1.pth')
    torch.save(dict(meta=dict(cfg=Config(dict(model=cfg)).pretty_text),
                    state_dict=model.state_dict()), checkpoint)
    return TinyCaptioner(model, checkpoint, concepts, cfg)


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
