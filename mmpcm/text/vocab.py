"""The word vocabulary of the caption head: a data artifact.

``tools/data/prepare_corpus.py`` builds it from the training captions with a
count threshold and writes ``vocab.json`` (a JSON list of words) beside the
corpus; a config names that file once, for the caption head (which keeps the
words in every checkpoint, so testing and inference need no other file) and
for the :class:`~mmpcm.datasets.PCMTokenizeCaption` transform that turns
training captions into id rows in the data loader.
"""
import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from mmpcm.utils.cli import InputError, MissingInputError
from mmpcm.utils.fileio import atomic_write_text
from mmpcm.utils.text_io import read_json

from .tokenize import detokenize_caption, scan_caption, tokenize_caption

PAD, BOS, EOS, UNK = '<pad>', '<bos>', '<eos>', '<unk>'
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


@dataclass(frozen=True)
class VocabularyReport:
    """What a vocabulary built from captions cannot say.

    Made by :meth:`WordVocabulary.from_captions_with_report`; ``str()``
    gives a short summary for a tool to print.

    Attributes:
        num_captions (int): Captions read.
        num_tokens (int): Word tokens in them (:func:`tokenize_caption`).
        num_words (int): Distinct words.
        num_kept (int): Distinct words in the vocabulary (special tokens
            not counted).
        num_unk_tokens (int): Word tokens that become ``<unk>``: their word
            is under ``min_count`` or past ``max_size``.
        dropped_words (tuple[tuple[str, int], ...]): Every dropped word
            with its count, most frequent first (ties alphabetical).
        num_punctuation (int): Punctuation tokens removed, as the caption
            metric removes them.
        removed_chars (tuple[tuple[str, int], ...]): Characters the
            tokenizer dropped (emoji, control characters...; see
            :func:`scan_caption`) with their counts, most frequent first.
        min_count (int): The count threshold used.
        max_size (int, optional): The size limit used.
    """
    num_captions: int
    num_tokens: int
    num_words: int
    num_kept: int
    num_unk_tokens: int
    dropped_words: Tuple[Tuple[str, int], ...]
    num_punctuation: int
    removed_chars: Tuple[Tuple[str, int], ...]
    min_count: int
    max_size: Optional[int] = None

    @property
    def num_dropped_words(self) -> int:
        """Distinct words left out of the vocabulary."""
        return len(self.dropped_words)

    @property
    def unk_share(self) -> float:
        """Share of the word tokens that become ``<unk>``, in [0, 1]."""
        return self.num_unk_tokens / self.num_tokens if self.num_tokens else 0.

    @property
    def num_removed_chars(self) -> int:
        """Characters dropped by the tokenizer, in all."""
        return sum(n for _, n in self.removed_chars)

    def __str__(self) -> str:
        limit = f'min count {self.min_count}' + (
            f', at most {self.max_size} words' if self.max_size else '')
        lines = [
            f'vocabulary keeps {self.num_kept} of {self.num_words} distinct '
            f'words ({limit}) of {self.num_tokens} word tokens in '
            f'{self.num_captions} captions'
        ]
        if self.dropped_words:
            top = ', '.join(f'{w!r} {n}' for w, n in self.dropped_words[:10])
            lines.append(
                f'{self.num_dropped_words} words dropped: '
                f'{self.num_unk_tokens} tokens ({100 * self.unk_share:.2f}%) '
                f'become <unk>; most frequent: {top}')
        if self.removed_chars:
            top = ', '.join(f'{c!r} (U+{ord(c):04X}) {n}'
                            for c, n in self.removed_chars[:10])
            lines.append(
                f'{self.num_removed_chars} characters removed, as the '
                f'metric\'s PTB tokenizer drops them: {top}')
        return '\n'.join(lines)


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
        """Build a vocabulary from training captions: the vocabulary of
        :meth:`from_captions_with_report` (same arguments and errors),
        without the report."""
        return cls.from_captions_with_report(captions, min_count,
                                             max_size)[0]

    @classmethod
    def from_captions_with_report(
            cls,
            captions: Iterable[str],
            min_count: int = 5,
            max_size: Optional[int] = None
    ) -> Tuple['WordVocabulary', 'VocabularyReport']:
        """Build a vocabulary and report what it cannot say.

        One pass over the captions (tokenized by :func:`scan_caption`).

        Args:
            captions (Iterable[str]): Training captions.
            min_count (int): Keep words seen at least this many times.
                Defaults to 5.
            max_size (int, optional): Keep at most this many words (most
                frequent first). Defaults to None (no limit).

        Returns:
            tuple[WordVocabulary, VocabularyReport]: The vocabulary (words
            ordered by decreasing count, ties broken alphabetically, after
            the special tokens), and the words it drops (they become
            ``<unk>``) and the characters the tokenizer removed.

        Raises:
            ValueError: If no word is kept.
        """
        counts: Counter = Counter()
        removed_chars: Counter = Counter()
        num_captions = num_punctuation = 0
        for caption in captions:
            scan = scan_caption(caption)
            counts.update(scan.words)
            removed_chars.update(scan.removed_chars)
            num_punctuation += scan.num_punctuation
            num_captions += 1
        ranked = sorted(counts, key=lambda w: (-counts[w], w))
        kept = [w for w in ranked if counts[w] >= min_count]
        if max_size is not None:
            kept = kept[:max_size]
        if not kept:
            raise ValueError(
                f'No word occurs at least min_count={min_count} times in the '
                'training captions: the vocabulary would be empty.')
        kept_set = set(kept)
        dropped = [(w, counts[w]) for w in ranked if w not in kept_set]
        report = VocabularyReport(
            num_captions=num_captions,
            num_tokens=sum(counts.values()),
            num_words=len(counts),
            num_kept=len(kept),
            num_unk_tokens=sum(c for _, c in dropped),
            dropped_words=tuple(dropped),
            num_punctuation=num_punctuation,
            removed_chars=tuple(removed_chars.most_common()),
            min_count=min_count,
            max_size=max_size)
        return cls(list(SPECIAL_TOKENS) + kept), report

    @classmethod
    def load(cls, path: str) -> 'WordVocabulary':
        """Load a ``vocab.json`` (a JSON list of words, special tokens first).

        Raises:
            MissingInputError: If the file does not exist.
            InputError: If it is not JSON, not a list of words, or does not
                start with the special tokens.
        """
        if not os.path.isfile(path):
            raise MissingInputError(
                path, 'no such vocabulary file',
                'write it with tools/data/prepare_corpus.py (vocab.json '
                'in its output folder, beside train_captions.txt) and name it '
                'in the config')
        words = read_json(path, 'name the vocab.json that '
                          'prepare_corpus.py wrote')
        if not isinstance(words, list) or not all(
                isinstance(w, str) for w in words):
            raise InputError(path, 'expected a JSON list of words',
                             'name the vocab.json that prepare_corpus.py '
                             'wrote')
        try:
            return cls(words)
        except ValueError as e:
            raise InputError(path, str(e).rstrip('.'),
                             'rewrite it with tools/data/prepare_corpus.py'
                             ) from None

    def save(self, path: str) -> None:
        """Write the vocabulary as a JSON list of words (atomically)."""
        atomic_write_text(path, json.dumps(self.words, ensure_ascii=False))

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
        """Caption text of a token id sequence, stopping at ``<eos>``.

        ``<pad>`` and ``<bos>`` are skipped; the words are joined by
        :func:`detokenize_caption` (``dog 's`` -> ``dog's``), so the text
        tokenizes back into the same words.
        """
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            words.append(self.words[i])
        return detokenize_caption(words)

    def encode_rows(self, captions: Sequence[str],
                    max_len: int) -> np.ndarray:
        """Captions as fixed-length id rows (:meth:`encode_row` each).

        Args:
            captions (Sequence[str]): Caption texts.
            max_len (int): Number of predicted tokens, ``<eos>`` included.

        Returns:
            np.ndarray: ``(B, max_len + 1)`` int64 ids.
        """
        return np.stack([self.encode_row(c, max_len) for c in captions])

    def encode_row(self, caption: str, max_len: int) -> np.ndarray:
        """A caption as one fixed-length row of ids, for data loaders.

        The caption is cut to ``max_len - 1`` words so that, with
        ``<eos>``, at most ``max_len`` tokens are predicted.

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


def build_vocabulary(spec: Union[WordVocabulary, Sequence[str], str]
                     ) -> WordVocabulary:
    """The vocabulary a config names.

    Args:
        spec (WordVocabulary | Sequence[str] | str): A vocabulary, its word
            list (as a checkpoint stores it), or the ``vocab.json`` file
            ``tools/data/prepare_corpus.py`` wrote.

    Returns:
        WordVocabulary: The vocabulary.

    Raises:
        MissingInputError: If the file does not exist.
        InputError: If the file is not a JSON word list that starts with
            the special tokens.
        TypeError: If ``spec`` is of another type (a ``dict``: the
            vocabulary is no longer built from a feature store at model
            build time).
    """
    if isinstance(spec, WordVocabulary):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return WordVocabulary.load(os.fspath(spec))
    if isinstance(spec, (list, tuple)):
        return WordVocabulary(spec)
    raise TypeError(
        'vocab must be a vocab.json path, a word list or a WordVocabulary, '
        f'got {type(spec).__name__} {spec!r}: write the vocabulary with '
        'tools/data/prepare_corpus.py and name its vocab.json.')
