"""The caption metric's word tokenizer, in Python.

The COCO caption evaluation (pycocoevalcap, used by
:mod:`mmpcm.evaluation.metrics.caption_metric`) runs Stanford CoreNLP
3.4.1's ``PTBTokenizer`` with ``-lowerCase`` and then removes pycocoevalcap's
``PUNCTUATIONS`` tokens. :func:`tokenize_caption` mirrors that, so a model
can say every word the metric scores (``t-shirt``, ``café``, ``jalapeños``,
``3.5``, CJK words), and :func:`detokenize_caption` writes text that the
metric tokenizes back into the same words.
"""
import re
import unicodedata
from typing import Iterable, List, NamedTuple

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
