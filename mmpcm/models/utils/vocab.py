"""Word-level caption vocabulary.

The vocabulary is built from the training captions with a count threshold and
travels inside every checkpoint (see :class:`~mmpcm.models.PCMCaptionHead`), so
testing and inference need no other file.
"""
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

PAD, BOS, EOS, UNK = '<pad>', '<bos>', '<eos>', '<unk>'
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def tokenize_caption(caption: str) -> List[str]:
    """Split a caption into lower-case word tokens, dropping punctuation.

    Args:
        caption (str): Raw caption text.

    Returns:
        list[str]: Word tokens, e.g. ``"A dog's ball."`` ->
        ``['a', "dog's", 'ball']``.
    """
    return _TOKEN_RE.findall(caption.lower())


@dataclass(frozen=True)
class EncodedCaptions:
    """A batch of captions as token ids.

    Attributes:
        input_ids (torch.Tensor): ``(B, L)`` decoder inputs, ``<bos>`` first.
        target_ids (torch.Tensor): ``(B, L)`` next-token targets, ``<eos>``
            last, ``pad_id`` where there is no token.
    """
    input_ids: torch.Tensor
    target_ids: torch.Tensor

    @classmethod
    def from_rows(cls, rows: torch.Tensor, pad_id: int,
                  trim: bool = True) -> 'EncodedCaptions':
        """Split caption rows into decoder inputs and targets.

        Args:
            rows (torch.Tensor): ``(B, max_len + 1)`` ids as
                :meth:`WordVocabulary.encode_row` writes them: ``<bos>``,
                words, ``<eos>``, then ``pad_id``.
            pad_id (int): The padding id.
            trim (bool): Cut the padding columns that no caption of the
                batch uses (the length then varies between batches and is
                read back from the device). False keeps every batch at
                ``max_len`` positions: static shapes, for compiled or
                graph-captured steps. The loss is the same either way.
                Defaults to True.

        Returns:
            EncodedCaptions: ``(B, L)`` inputs and targets.
        """
        if trim:
            # <bos> + n words + <eos>: the longest has n + 2 ids, L = n + 1.
            length = int((rows != pad_id).sum(dim=1).max()) - 1
            rows = rows[:, :length + 1]  # (B, L + 1)
        return cls(rows[:, :-1], rows[:, 1:])  # 2 x (B, L)


class WordVocabulary:
    """An ordered word list with the four special tokens first.

    Args:
        words (Sequence[str]): Every token in id order. Must start with
            ``('<pad>', '<bos>', '<eos>', '<unk>')`` and hold no duplicate.
    """

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if tuple(words[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f'A word vocabulary must start with {SPECIAL_TOKENS}, got '
                f'{tuple(words[:len(SPECIAL_TOKENS)])}.')
        index: Dict[str, int] = {}
        for i, word in enumerate(words):
            if word in index:
                raise ValueError(f'Duplicate word {word!r} in vocabulary.')
            index[word] = i
        self.words: List[str] = words
        self._index = index

    # ------------------------------------------------------------ building
    @classmethod
    def from_captions(cls,
                      captions: Iterable[str],
                      min_count: int = 5,
                      max_size: Optional[int] = None) -> 'WordVocabulary':
        """Build a vocabulary from training captions.

        Args:
            captions (Iterable[str]): Training captions.
            min_count (int): Keep words seen at least this many times.
                Defaults to 5.
            max_size (int, optional): Keep at most this many words (most
                frequent first). Defaults to None (no limit).

        Returns:
            WordVocabulary: Words ordered by decreasing count, ties broken
            alphabetically, after the special tokens.
        """
        counts = Counter()
        for caption in captions:
            counts.update(tokenize_caption(caption))
        kept = sorted((w for w, c in counts.items() if c >= min_count),
                      key=lambda w: (-counts[w], w))
        if max_size is not None:
            kept = kept[:max_size]
        if not kept:
            raise ValueError(
                f'No word occurs at least min_count={min_count} times in the '
                'training captions: the vocabulary would be empty.')
        return cls(list(SPECIAL_TOKENS) + kept)

    @classmethod
    def load(cls, path: str) -> 'WordVocabulary':
        """Load a vocabulary from a JSON file holding a list of words."""
        with open(path, encoding='utf-8') as f:
            words = json.load(f)
        if not isinstance(words, list):
            raise ValueError(f'{path}: expected a JSON list of words, got '
                             f'{type(words).__name__}.')
        return cls(words)

    def save(self, path: str) -> None:
        """Write the vocabulary as a JSON list of words."""
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(self.words, f, ensure_ascii=False)

    # ------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordVocabulary) and self.words == other.words

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def bos_id(self) -> int:
        return 1

    @property
    def eos_id(self) -> int:
        return 2

    @property
    def unk_id(self) -> int:
        return 3

    def encode(self, caption: str) -> List[int]:
        """Word ids of a caption (unknown words map to ``<unk>``)."""
        return [self._index.get(w, self.unk_id) for w in tokenize_caption(caption)]

    def decode(self, ids: Iterable[int]) -> str:
        """Caption text of a token id sequence, stopping at ``<eos>``."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            words.append(self.words[i])
        return ' '.join(words)

    def encode_batch(self, captions: Sequence[str], max_len: int,
                     device: Optional[torch.device] = None) -> EncodedCaptions:
        """Encode captions into padded decoder inputs and targets.

        Each caption is cut to ``max_len - 1`` words so that, with ``<eos>``,
        at most ``max_len`` tokens are predicted.

        Args:
            captions (Sequence[str]): Captions of the batch.
            max_len (int): Number of predicted tokens, ``<eos>`` included.
            device (torch.device, optional): Where to put the tensors.

        Returns:
            EncodedCaptions: ``(B, L)`` inputs and targets, ``L`` the longest
            encoded caption plus one.
        """
        rows = np.stack([self.encode_row(c, max_len) for c in captions])
        return EncodedCaptions.from_rows(
            torch.from_numpy(rows).to(device), self.pad_id)  # (B, L)

    def encode_row(self, caption: str, max_len: int) -> np.ndarray:
        """A caption as one fixed-length row of ids, for data loaders.

        The caption is cut to ``max_len - 1`` words, as in
        :meth:`encode_batch`, which reads the same rows.

        Args:
            caption (str): Caption text.
            max_len (int): Number of predicted tokens, ``<eos>`` included.

        Returns:
            np.ndarray: ``(max_len + 1,)`` int64: ``<bos>``, the word ids,
            ``<eos>``, then ``<pad>``.
        """
        words = self.encode(caption)[:max_len - 1]
        row = np.full(max_len + 1, self.pad_id, dtype=np.int64)
        row[0] = self.bos_id
        row[1:len(words) + 1] = words
        row[len(words) + 1] = self.eos_id
        return row


@dataclass(frozen=True)
class CaptionTokenizer:
    """Encodes training captions the way a caption head reads them.

    Data loaders that call it (``SynthImgCapDataset.set_caption_tokenizer``)
    move tokenization out of the training step; the head then takes the
    ``(B, max_len + 1)`` rows instead of strings.

    Attributes:
        vocab (WordVocabulary): The head's vocabulary.
        max_len (int): The head's ``max_len``.
    """
    vocab: WordVocabulary
    max_len: int

    def __call__(self, caption: str) -> np.ndarray:
        """``(max_len + 1,)`` int64 ids of ``caption``."""
        return self.vocab.encode_row(caption, self.max_len)


def build_vocabulary(spec: Union['WordVocabulary', Sequence[str], str, dict]
                     ) -> WordVocabulary:
    """Build a :class:`WordVocabulary` from what a config gives.

    Args:
        spec: One of: a ``WordVocabulary``; a list of words (as stored in a
            checkpoint); a path to a JSON word list; or a dict
            ``dict(data_root=..., min_count=5, max_size=None)`` building it
            from the captions of a SynthImgCap feature store.

    Returns:
        WordVocabulary: The vocabulary.
    """
    if isinstance(spec, WordVocabulary):
        return spec
    if isinstance(spec, str):
        return WordVocabulary.load(spec)
    if isinstance(spec, dict):
        spec = dict(spec)
        unknown = set(spec) - {'data_root', 'min_count', 'max_size'}
        if 'data_root' not in spec or unknown:
            raise ValueError(
                'A vocabulary dict must be dict(data_root=..., min_count=..., '
                f'max_size=...), got keys {sorted(spec)}.')
        if spec['data_root'] is None:
            raise ValueError('vocab=dict(data_root=None): name the training '
                             'feature store the vocabulary is built from.')
        from mmpcm.datasets.feature_store import FeatureStore
        captions = FeatureStore(spec.pop('data_root')).captions()
        return WordVocabulary.from_captions(
            (c for c in captions if c), **spec)
    if isinstance(spec, (list, tuple)):
        return WordVocabulary(spec)
    raise TypeError('vocab must be a WordVocabulary, a word list, a JSON path '
                    f'or a dict(data_root=...), got {type(spec).__name__}.')
