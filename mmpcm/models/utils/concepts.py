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
from safetensors import SafetensorError, safe_open

from mmpcm.utils.cli import InputError, MissingInputError
from mmpcm.utils.compat import save_safetensors

CONCEPTS_FORMAT = 'mmpcm-concepts'
_BUILD_TOOL = 'tools/data/build_concepts.py'


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
        save_safetensors({'embeddings': self.embeddings.contiguous()}, path,
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

        Raises:
            MissingInputError: If the file does not exist (a
                ``FileNotFoundError``).
            InputError: If it is not an mmpcm concept file, or was made with
                another CLIP than ``clip_model`` / ``embed_dim`` (a
                ``ValueError``).
        """
        path = str(path)
        if not osp.isfile(path):
            raise MissingInputError(
                path, 'no such concept vocabulary file',
                f'build it with {_BUILD_TOOL} using the model\'s CLIP, or '
                'set the neck\'s concepts to an existing file')
        vocab = cls._read(path)
        if clip_model is not None and vocab.clip_model != clip_model:
            raise InputError(
                path, f'concepts were embedded with CLIP '
                f'{vocab.clip_model!r}, but the model uses {clip_model!r}',
                f'build the concepts with the model\'s CLIP ({_BUILD_TOOL} '
                f'--clip-model {clip_model}), or use the config of CLIP '
                f'{vocab.clip_model!r}')
        if embed_dim is not None and vocab.embeddings.shape[1] != embed_dim:
            raise InputError(
                path, f'concept embeddings are {vocab.embeddings.shape[1]}-d '
                f'(CLIP {vocab.clip_model!r}), but the model expects '
                f'{embed_dim}-d CLIP embeddings',
                f'build the concepts with the model\'s CLIP ({_BUILD_TOOL}), '
                'or use the config of the CLIP that made them')
        return vocab

    @classmethod
    def _read(cls, path: str) -> 'ConceptVocabulary':
        """Read a concept file; anything but one of ours is an InputError."""
        remedy = (f'pass a concept file written by {_BUILD_TOOL} (its '
                  'from-release command converts the authors\' pickle)')
        try:
            with safe_open(path, framework='pt') as f:
                meta = f.metadata() or {}
                if meta.get('format') != CONCEPTS_FORMAT:
                    raise InputError(
                        path, 'not an mmpcm concept file (metadata format is '
                        f'{meta.get("format")!r}, expected '
                        f'{CONCEPTS_FORMAT!r})', remedy)
                embeddings = f.get_tensor('embeddings')
        except SafetensorError as err:
            raise InputError(path, 'not a readable safetensors concept file '
                             f'({err})', remedy) from None
        try:
            words = json.loads(meta['words'])
            clip_model = meta['clip_model']
        except (KeyError, ValueError) as err:
            raise InputError(path, f'incomplete concept file metadata '
                             f'({type(err).__name__}: {err})',
                             remedy) from None
        if not isinstance(words, list) or not all(
                isinstance(w, str) for w in words):
            raise InputError(path, 'the metadata "words" is not a list of '
                             'str', remedy)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(words):
            raise InputError(
                path, f'embeddings of shape {tuple(embeddings.shape)} for '
                f'{len(words)} words; expected (K, D) with K = the number of '
                'words', remedy)
        return cls(words, embeddings, clip_model)
