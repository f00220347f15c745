"""Sentence embeddings for SynC's cycle score.

SynC (Kim et al., ACM MM 2025, arXiv 2507.18616) compares a caption with
the captions its candidate image retrieves through a sentence encoder (a
Sentence-BERT model in the paper). Two sources:

* :func:`encode_sentences` with a ``sentence_transformers.SentenceTransformer``
  loaded by :func:`load_sentence_model` from a name or a local folder
  (sentence-transformers is imported there, with a one-line error when it
  is not installed);
* :func:`clip_text_sentence_embeds`: the store's own CLIP text embeddings,
  which need no model and no network (the offline default).

Both return L2-normalised float32 ``(P, Ds)`` rows, so an inner product is
a cosine.
"""
import os
from typing import Any, Optional, Sequence

import numpy as np

from mmpcm.utils.cli import InputError, MissingInputError
from mmpcm.utils.deps import require_package

__all__ = ['CLIP_TEXT_SOURCE', 'load_sentence_model', 'encode_sentences',
           'clip_text_sentence_embeds', 'l2_normalize']

CLIP_TEXT_SOURCE = 'clip_text_embeds'
"""The name recorded when the store's CLIP text embeddings stand in for a
sentence encoder."""


def l2_normalize(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (zero rows stay zero).

    Args:
        rows (np.ndarray): ``(N, D)`` any float dtype.

    Returns:
        np.ndarray: ``(N, D)`` float32, C order.
    """
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)  # (N, 1)
    return np.ascontiguousarray(rows / np.maximum(norms, 1e-12))


def load_sentence_model(name_or_path: str, device: Optional[str] = None
                        ) -> Any:
    """A ``SentenceTransformer`` by hub name or local folder.

    Args:
        name_or_path (str): E.g. ``'sentence-transformers/all-MiniLM-L6-v2'``
            or a folder written by ``SentenceTransformer.save``.
        device (str, optional): ``'cuda'``, ``'cpu'``; None: the library's
            choice.

    Returns:
        sentence_transformers.SentenceTransformer: The model.

    Raises:
        MissingInputError: If ``name_or_path`` is a local path (starts
            with ``.``, ``/`` or ``~``, or exists) that is not a folder.
        InputError: If a hub name is neither in the Hugging Face cache nor
            downloadable (the cache is tried first, offline).
        MissingPackageError: If sentence-transformers is not installed.
    """
    expanded = os.path.expanduser(name_or_path)
    looks_local = name_or_path.startswith(('.', '/', '~', os.sep)) or (
        os.path.exists(expanded))
    if looks_local and not os.path.isdir(expanded):
        raise MissingInputError(
            name_or_path, 'no such sentence-transformers model folder',
            'give a folder written by SentenceTransformer.save, or a hub '
            'name such as sentence-transformers/all-MiniLM-L6-v2')
    module = require_package(
        'sentence_transformers',
        '--sentence-model (leave it out to use the store\'s CLIP text '
        'embeddings)', 'sentence-transformers')
    if looks_local:
        return module.SentenceTransformer(expanded, device=device)
    try:  # the Hugging Face cache first: offline, no download retries
        return module.SentenceTransformer(name_or_path, device=device,
                                          local_files_only=True)
    except (OSError, ValueError):
        pass
    try:
        return module.SentenceTransformer(name_or_path, device=device)
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(
            error).__name__
        raise InputError(
            name_or_path, 'cannot be loaded: not in the Hugging Face cache '
            f'and not downloadable here ({reason})',
            'give a local folder written by SentenceTransformer.save, or '
            'leave out --sentence-model to use the store\'s CLIP text '
            'embeddings') from None


def encode_sentences(captions: Sequence[str], model: Any,
                     batch_size: int = 256,
                     progress: bool = True) -> np.ndarray:
    """Embed captions with a sentence encoder, in batches.

    Args:
        captions (Sequence[str]): P captions, as written.
        model: A ``SentenceTransformer`` (or anything with its ``encode``).
        batch_size (int): Captions per forward pass. Defaults to 256.
        progress (bool): Show a progress bar. Defaults to True.

    Returns:
        np.ndarray: ``(P, Ds)`` float32, L2-normalised rows.
    """
    embeds = model.encode(list(captions), batch_size=batch_size,
                          show_progress_bar=progress,
                          convert_to_numpy=True,
                          normalize_embeddings=True)  # (P, Ds)
    return l2_normalize(embeds)


def clip_text_sentence_embeds(text_embeds: np.ndarray) -> np.ndarray:
    """The store's CLIP text embeddings as the sentence embeddings.

    Args:
        text_embeds (np.ndarray): ``(P, D)`` CLIP text embeddings (float16
            in a store).

    Returns:
        np.ndarray: ``(P, D)`` float32, L2-normalised rows.
    """
    return l2_normalize(text_embeds)
