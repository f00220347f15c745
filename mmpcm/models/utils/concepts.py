"""Concept vocabulary: frequent nouns embedded with CLIP's text encoder.

Stored as a safetensors file (no pickle): one tensor ``embeddings`` of shape
``(K, D)`` and the metadata keys ``format`` (``mmpcm-concepts``), ``words``
(JSON list) and ``clip_model`` (the open_clip model name the embeddings were
made with).
"""
import json
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

CONCEPTS_FORMAT = 'mmpcm-concepts'


@dataclass
class ConceptVocabulary:
    """Concept words and their L2-normalised CLIP text embeddings.

    Attributes:
        words (list[str]): ``K`` concept words.
        embeddings (torch.Tensor): ``(K, D)`` normalised text embeddings.
        clip_model (str): open_clip model name that made the embeddings.
    """
    words: List[str]
    embeddings: torch.Tensor
    clip_model: str

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.words):
            raise ValueError(
                f'Concept embeddings must be (K, D) with K={len(self.words)} '
                f'words, got shape {tuple(self.embeddings.shape)}.')
        self.embeddings = F.normalize(self.embeddings.float(), dim=-1)

    def save(self, path: str) -> None:
        """Write the vocabulary to a safetensors file."""
        metadata = dict(format=CONCEPTS_FORMAT, words=json.dumps(self.words),
                        clip_model=self.clip_model)
        save_file({'embeddings': self.embeddings.contiguous()}, path,
                  metadata=metadata)

    @classmethod
    def load(cls,
             path: str,
             clip_model: Optional[str] = None,
             embed_dim: Optional[int] = None) -> 'ConceptVocabulary':
        """Read a concept file, checking it was made for the expected CLIP.

        Args:
            path (str): The safetensors concept file.
            clip_model (str, optional): open_clip model name the run uses.
                Defaults to None (not checked).
            embed_dim (int, optional): CLIP joint-space width the run uses.
                Defaults to None (not checked).

        Returns:
            ConceptVocabulary: The loaded vocabulary.
        """
        if not osp.isfile(path):
            raise FileNotFoundError(f'Concept vocabulary file not found: {path}')
        with safe_open(path, framework='pt') as f:
            meta = f.metadata() or {}
            if meta.get('format') != CONCEPTS_FORMAT:
                raise ValueError(
                    f'{path}: not an mmpcm concept file (metadata format is '
                    f'{meta.get("format")!r}, expected {CONCEPTS_FORMAT!r}).')
            embeddings = f.get_tensor('embeddings')
        vocab = cls(json.loads(meta['words']), embeddings, meta['clip_model'])
        if clip_model is not None and vocab.clip_model != clip_model:
            raise ValueError(
                f'{path}: concepts were embedded with CLIP '
                f'{vocab.clip_model!r}, but the model uses {clip_model!r}. '
                'Re-embed the concept words with the run\'s CLIP.')
        if embed_dim is not None and vocab.embeddings.shape[1] != embed_dim:
            raise ValueError(
                f'{path}: concept embeddings are {vocab.embeddings.shape[1]}-d, '
                f'but the model expects {embed_dim}-d CLIP embeddings.')
        return vocab
