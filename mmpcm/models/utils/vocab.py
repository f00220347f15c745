"""Word-level caption vocabulary and the tokenizer it is built with.

The vocabulary is built from the training captions with a count threshold and
travels inside every checkpoint (see :class:`~mmpcm.models.PCMCaptionHead`), so
testing and inference need no other file.

Captions are split into the words the caption metric counts: the COCO caption
evaluation (pycocoevalcap, :mod:`mmpcm.evaluation.metrics.caption_metric`)
runs Stanford CoreNLP 3.4.1's ``PTBTokenizer`` with ``-lowerCase`` and then
removes pycocoevalcap's ``PUNCTUATIONS`` tokens. :func:`tokenize_caption`
mirrors that in Python, so a model can say every word the metric scores
(``t-shirt``, ``café``, ``jalapeños``, ``3.5``, CJK words) and
:meth:`WordVocabulary.decode` gives text that the metric tokenizes back into
the same words.
"""
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import (Dict, Iterable, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import torch
from mmengine.logging import print_log

PAD, BOS, EOS, UNK = '<pad>', '<bos>', '<eos>', '<unk>'
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)

# ---------------------------------------------------------------- tokenizer
# Each character of the (lower-cased, NFC) caption gets a one-character
# class, so one regex tokenizes every script: ASCII characters are their
# own class, and so is the typographic apostrophe U+2019; other letters and
# marks 'a', other decimal digits '0', whitespace ' ', characters the PTB
# tokenizer drops '\x00', quotes and dashes it turns into removed
# punctuation '"', the hyphens U+2010/U+2011 it keeps inside words '-', any
# other symbol '$' (a token of its own).
_REMOVED = '\x00'
_SOFT_HYPHEN = '\u00ad'  # deleted by PTB: 'a\u00adb' -> 'ab'
_APOSTROPHE = '\u2019'  # PTB: dog\u2019s -> dog 's, but o\u2019clock stays
# PTB maps these to `` '' ` ' -- ... (all in PUNCTUATIONS): removed.
_REMOVED_PUNCTUATION = frozenset(
    '\u2018\u201c\u201d\u00ab\u00bb\u2039\u203a\u2012\u2013\u2014\u2015\u2026')
_WORD_HYPHENS = frozenset('\u2010\u2011')


def _char_class(char: str) -> str:
    """The class of one character, see the table above."""
    if char < '\x80':
        if char.isspace():
            return ' '
        return _REMOVED if char < ' ' or char == '\x7f' else char
    if ord(char) > 0xFFFF:  # emoji and other astral characters: dropped
        return _REMOVED
    if char == _APOSTROPHE:
        return char
    if char in _REMOVED_PUNCTUATION:
        return '"'
    if char in _WORD_HYPHENS:
        return '-'
    if 0xFE00 <= ord(char) <= 0xFE0F:  # variation selectors (emoji style)
        return _REMOVED
    category = unicodedata.category(char)
    if category[0] in 'LM' or category == 'Nl':
        return 'a'
    if category == 'Nd':
        return '0'
    if category[0] == 'Z':
        return ' '
    if category[0] == 'C':  # control, format, private use, unassigned
        return _REMOVED
    return '$'


class _ClassTable(dict):
    """``str.translate`` table: code point -> :func:`_char_class`."""

    def __missing__(self, code: int) -> str:
        self[code] = _char_class(chr(code))
        return self[code]


_CLASSES = _ClassTable()
_ABBREVIATIONS = ('mrs', 'mr', 'ms', 'dr', 'st', 'jr', 'sr', 'vs', 'etc',
                  'mt', 'co', 'inc', 'ft', 'ave')
_TOKEN_RE = re.compile(
    r"""
    (?P<initials>(?:[a-z]\.)+)(?![a-z0-9_])            # u.s. e.g. a.m. b.
  | (?P<abbrev>(?:{abbrev})\.(?![a-z0-9_])             # mr. st. etc.
        |no\.(?=\s*[0-9]))                               # no. 5
  | (?P<clitic>['’](?:s|m|d|re|ve|ll|em|n['’]?)(?![a-z0-9_])  # 's alone
        |'t(?=(?:is|was)(?![a-z0-9_])))                  # 'tis -> 't is
  | (?P<decade>['’][0-9]{{2}}s?)(?![a-z0-9_])           # '90s
  | (?P<word>(?:[#@](?=[a-z_])|[-+.](?=[0-9]))?         # #tag, -5, .5
        [a-z0-9_]+
        (?:(?:[-./@'’]|(?<=[0-9])[,:](?=[0-9]))[a-z0-9_]+)*)
  | (?P<emphasis>[!?]{{2,}})                             # !! ?! (PTB keeps)
  | (?P<punctuation>--+|\.{{3,}}|[-.,:;'’"`]|[!?])       # removed by the metric
  | (?P<symbol>[^\s\x00a-z0-9_])                        # % & $ ( 。 ...
    """.format(abbrev='|'.join(_ABBREVIATIONS)), re.VERBOSE)
_CLITIC_END_RE = re.compile(r"(.+?)(n['’]t|['’](?:s|m|d|re|ve|ll))")
_CLITICS = frozenset({"n't", "'s", "'m", "'d", "'re", "'ve", "'ll"})
_ELISION_RE = re.compile(r"[dlo]['’][^'’]+")  # o'clock l'été d'angelo
_N_RE = re.compile(r"(['’]n['’])")  # rock'n'roll -> rock 'n' roll
_APOSTROPHE_WORDS = frozenset({"ma'am", "ne'er"})
_SPLIT_WORDS = {  # PTB splits these words in two
    'cannot': ('can', 'not'), 'gonna': ('gon', 'na'),
    'gotta': ('got', 'ta'), 'wanna': ('wan', 'na'),
    'gimme': ('gim', 'me'), 'lemme': ('lem', 'me'), "y'all": ("y'", 'all')}
# Word pairs :func:`detokenize_caption` writes as the one word PTB split.
_JOINED_PAIRS = frozenset(
    [*_SPLIT_WORDS.values(), ("'t", 'is'), ("'t", 'was')])


class CaptionTokens(NamedTuple):
    """What :func:`scan_caption` found in one caption.

    Attributes:
        words (list[str]): The word tokens, as :func:`tokenize_caption`.
        num_punctuation (int): Punctuation tokens removed, as the metric
            removes them (``.``, ``,``, quotes, dashes, ...).
        removed_chars (list[str]): Characters dropped without a trace, as
            the PTB tokenizer drops them: emoji and other characters beyond
            U+FFFF, control and format characters, variation selectors.
    """
    words: List[str]
    num_punctuation: int
    removed_chars: List[str]


def _ascii_apostrophes(word: str) -> str:
    return word.replace(_APOSTROPHE, "'")


def _split_apostrophes(word: str) -> List[str]:
    """PTB's split of a word holding ``'`` or ``’``.

    Clitics are split off and spelled with ASCII ``'`` (``doesn’t`` ->
    ``does n't``, ``can't`` -> ``ca n't``, ``dog’s`` -> ``dog 's``);
    elisions stay whole and as written (``o'clock``, ``o’clock``,
    ``l'été``), as do ``'n'`` (``rock 'n' roll``); any other apostrophe is
    removed as punctuation (``a'b`` -> ``a b``).
    """
    ascii_word = _ascii_apostrophes(word)
    if ascii_word in _CLITICS:
        return [ascii_word]
    if ascii_word in _APOSTROPHE_WORDS:
        return [word]
    if _N_RE.search(word):
        parts = _N_RE.split(word, maxsplit=1)  # head, 'n', tail
        return [*_split_apostrophes(parts[0]), parts[1],
                *_split_apostrophes(parts[2])]
    match = _CLITIC_END_RE.fullmatch(word)
    if match is not None:
        return _split_apostrophes(match[1]) + [_ascii_apostrophes(match[2])]
    if _ELISION_RE.fullmatch(word):
        return [word]
    return [part for part in re.split("['’]", word) if part]


def _split_word(word: str) -> List[str]:
    """A word regex match as PTB's tokens (see :func:`scan_caption`)."""
    if "'" not in word and _APOSTROPHE not in word:  # the common case
        pair = _SPLIT_WORDS.get(word)
        return [word] if pair is None else list(pair)
    pair = _SPLIT_WORDS.get(_ascii_apostrophes(word))
    if pair is not None:  # same lengths: keep the apostrophe as written
        return [word[:len(pair[0])], word[len(pair[0]):]]
    return _split_apostrophes(word)


def scan_caption(caption: str) -> CaptionTokens:
    """Split a caption into the words the caption metric counts.

    Mirrors what pycocoevalcap scores: Stanford CoreNLP 3.4.1's
    ``PTBTokenizer`` (``-lowerCase``), then pycocoevalcap's
    ``PUNCTUATIONS`` removed. Rules, each checked against that tokenizer:

    * Unicode NFC (composed accents, as typed; not NFKC, which would change
      characters the metric keeps, e.g. the ligature ``ﬁ`` or ``²``), then
      lower case.
    * Words are runs of letters (any script), combining marks, digits and
      ``_``, joined by ``-``, ``.``, ``/``, ``@`` and ``'`` (and ``,`` or
      ``:`` between digits): ``t-shirt``, ``3-year-old``, ``3.5``,
      ``10,000``, ``1/2``, ``dog.cat``, ``café``, ``一只猫``.
    * Apostrophes: clitics are their own tokens, spelled with ASCII ``'``
      whether typed ``'`` or ``’`` (``dog’s`` -> ``dog 's``, ``doesn't``
      -> ``does n't``, ``can't`` -> ``ca n't``, ``'t is``); elisions stay
      whole and as typed (``o'clock``, ``o’clock``, ``l'été``, ``rock 'n'
      roll``), as PTB keeps them; a left quote ``‘`` is a quote. ``cannot``, ``gonna``, ``gotta``,
      ``wanna``, ``gimme``, ``lemme``, ``y'all`` are split as PTB splits
      them (``can not``...).
    * Initials and a few abbreviations keep their period (``u.s.``,
      ``e.g.``, ``mr.``, ``st.``, ``no. 5``); a sentence's final period
      does not.
    * Removed, as the metric removes them: ``. , : ; ? ! ' " `` and
      dashes (``-`` alone, ``--``, en and em dashes), ellipses, curly
      quotes and guillemets.
    * Kept as one-character tokens: other symbols (``%``, ``&``, ``$``,
      brackets, ``°``, CJK punctuation such as ``。``), which the metric
      scores as words (brackets as ``-lrb-``..., which it does not remove);
      runs of ``!``/``?`` (``!!``) stay one token, as PTB keeps them.
    * Dropped characters (the PTB tokenizer deletes them with a warning):
      characters beyond U+FFFF (emoji), control and format characters,
      variation selectors, the soft hyphen.

    Known differences from PTB, all rare in captions: symbol runs
    (``##a``), URLs, ``a!b``, ``jack'o'lantern``, ``,5``; PTB's
    currency and fraction spellings (``€`` -> ``$``, ``½`` -> ``1/2``: the
    metric maps both the caption and its references, so scores agree).

    Args:
        caption (str): Raw caption text.

    Returns:
        CaptionTokens: The words, the punctuation tokens removed and the
        characters dropped.
    """
    text = unicodedata.normalize('NFC', caption.lower())
    removed = [_SOFT_HYPHEN] * text.count(_SOFT_HYPHEN)
    text = text.replace(_SOFT_HYPHEN, '')
    shape = text.translate(_CLASSES)  # same length as text
    if _REMOVED in shape:
        removed += [c for c, k in zip(text, shape) if k == _REMOVED]
    words: List[str] = []
    num_punctuation = 0
    for match in _TOKEN_RE.finditer(shape):
        kind = match.lastgroup
        if kind == 'punctuation':
            num_punctuation += 1
            continue
        token = text[match.start():match.end()]
        if kind == 'word':
            words.extend(_split_word(token))
        elif kind == 'clitic' and _ascii_apostrophes(token) in _CLITICS:
            words.append(_ascii_apostrophes(token))  # ’s -> 's
        else:
            words.append(token)
    return CaptionTokens(words, num_punctuation, removed)


def tokenize_caption(caption: str) -> List[str]:
    """Split a caption into the lower-case words the caption metric counts.

    See :func:`scan_caption` for the rules (the COCO evaluation's PTB
    tokenizer, punctuation removed).

    Args:
        caption (str): Raw caption text.

    Returns:
        list[str]: Word tokens, e.g. ``"A dog’s red T-shirt."`` ->
        ``['a', 'dog', "'s", 'red', 't-shirt']``.
    """
    return scan_caption(caption).words


def detokenize_caption(words: Iterable[str]) -> str:
    """Caption text of word tokens: spaces, clitics rejoined.

    ``['the', 'dog', "'s", 'ball']`` -> ``"the dog's ball"``, ``['ca',
    "n't"]`` -> ``"can't"``, ``['gon', 'na']`` -> ``"gonna"``.
    :func:`tokenize_caption` (and the metric's PTB tokenizer) split the text
    back into the same words.

    Args:
        words (Iterable[str]): Word tokens.

    Returns:
        str: The caption.
    """
    out: List[str] = []
    for word in words:
        if out and (_ascii_apostrophes(out[-1]), word) in _JOINED_PAIRS:
            out[-1] += word  # gon na -> gonna, y' all -> y'all
        elif word in _CLITICS and out and out[-1][-1].isalnum():
            out[-1] += word
        else:
            out.append(word)
    return ' '.join(out)


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

        Raises:
            ValueError: If no word is kept.
        """
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

        Same vocabulary as :meth:`from_captions`, from one pass over the
        captions (tokenized by :func:`scan_caption`).

        Args:
            captions (Iterable[str]): Training captions.
            min_count (int): Keep words seen at least this many times.
                Defaults to 5.
            max_size (int, optional): Keep at most this many words (most
                frequent first). Defaults to None (no limit).

        Returns:
            tuple[WordVocabulary, VocabularyReport]: The vocabulary, and
            the words it drops (they become ``<unk>``) and the characters
            the tokenizer removed.

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
            from the captions of a SynthImgCap feature store; its
            :class:`VocabularyReport` (words that become ``<unk>``,
            characters removed) goes to the current mmengine logger.

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
        data_root = spec.pop('data_root')
        captions = FeatureStore(data_root).captions()
        vocab, report = WordVocabulary.from_captions_with_report(
            (c for c in captions if c), **spec)
        print_log(f'{data_root}: {report}', logger='current')
        return vocab
    if isinstance(spec, (list, tuple)):
        return WordVocabulary(spec)
    raise TypeError('vocab must be a WordVocabulary, a word list, a JSON path '
                    f'or a dict(data_root=...), got {type(spec).__name__}.')
