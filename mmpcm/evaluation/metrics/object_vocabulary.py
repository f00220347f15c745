"""ObjectVocabulary: which objects a caption mentions, for the CHAIR metric.

Caption words and multi-word phrases map to canonical object names (the
COCO instance categories, or any other table), the way the CHAIR metric of
Rohrbach et al., "Object Hallucination in Image Captioning" (EMNLP 2018,
Sec. 2) finds the objects of a caption: by a synonym table, phrases before
single words. The synonym table shipped for COCO
(``resources/coco_object_synonyms.json``) is our own.
"""
import os.path as osp
from typing import (Dict, FrozenSet, Iterable, List, Mapping, Optional,
                    Sequence, Set, Tuple)

from mmpcm.text import tokenize_caption
from mmpcm.utils.cli import InputError
from mmpcm.utils.text_io import read_json

__all__ = ['ObjectVocabulary', 'plural_of', 'COCO_SYNONYMS_FILE',
           'IRREGULAR_PLURALS', 'INVARIANT_PLURALS']

#: The shipped synonym table of the 80 COCO instance categories.
COCO_SYNONYMS_FILE = osp.join(
    osp.dirname(osp.abspath(__file__)), 'resources',
    'coco_object_synonyms.json')

#: Plurals the suffix rule of :func:`plural_of` gets wrong.
IRREGULAR_PLURALS: Dict[str, str] = {
    'man': 'men', 'woman': 'women', 'child': 'children',
    'person': 'people', 'gentleman': 'gentlemen', 'policeman': 'policemen',
    'foot': 'feet', 'tooth': 'teeth', 'mouse': 'mice', 'goose': 'geese',
    'ox': 'oxen', 'knife': 'knives', 'calf': 'calves', 'leaf': 'leaves',
    'shelf': 'shelves', 'wolf': 'wolves', 'loaf': 'loaves',
    'tomato': 'tomatoes', 'potato': 'potatoes', 'hero': 'heroes',
}
#: Words whose plural is the word itself (already plural, or uncountable).
INVARIANT_PLURALS: FrozenSet[str] = frozenset({
    'sheep', 'deer', 'fish', 'skis', 'scissors', 'people', 'children',
    'cattle', 'luggage', 'baggage', 'broccoli', 'aircraft', 'series',
    'species', 'glasses', 'pants', 'jeans', 'men', 'women', 'police',
})
_VOWELS = frozenset('aeiou')


def plural_of(word: str) -> str:
    """The plural of one lower-case English noun.

    Rules, in order: :data:`INVARIANT_PLURALS` stay as they are;
    :data:`IRREGULAR_PLURALS` are looked up; a word ending in s, x, z, ch or
    sh takes ``-es`` (bus -> buses); consonant + y becomes ``-ies`` (puppy
    -> puppies); any other word takes ``-s``. A hyphenated word is a word
    (hot-dog -> hot-dogs).

    Args:
        word (str): A lower-case noun, e.g. ``'bench'``.

    Returns:
        str: Its plural, e.g. ``'benches'``.

    Raises:
        ValueError: If ``word`` is empty.
    """
    if not word:
        raise ValueError('plural_of needs a non-empty word.')
    if word in INVARIANT_PLURALS:
        return word
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if word.endswith(('s', 'x', 'z', 'ch', 'sh')):
        return word + 'es'
    if len(word) > 1 and word[-1] == 'y' and word[-2] not in _VOWELS:
        return word[:-1] + 'ies'
    return word + 's'


class ObjectVocabulary:
    """Map caption words and phrases to canonical object names.

    Every synonym is tokenized with :func:`mmpcm.text.tokenize_caption` (the
    caption metric's PTB word rules) and registered with the plural of its
    last word (:func:`plural_of`), so ``'teddy bear'`` also matches
    ``'teddy bears'``. :meth:`mentions` scans a caption left to right and
    at each word takes the longest phrase that matches: ``'hot dog'`` is a
    hot dog, not a dog. ``not_objects`` phrases (e.g. ``'baseball cap'``)
    are matched the same way and name no object, so their words are not read
    as one (the cap is not a sports ball).

    Args:
        synonyms (Mapping[str, Sequence[str]]): ``{object: [word or phrase,
            ...]}``; the object name itself is a synonym too.
        not_objects (Iterable[str]): Phrases that mention no object.
            Defaults to none.

    Raises:
        ValueError: If a name or synonym is not a str or has no words, a
            list is empty, or a phrase (or its plural) belongs to two
            objects, or to an object and ``not_objects``.
    """

    def __init__(self, synonyms: Mapping[str, Sequence[str]],
                 not_objects: Iterable[str] = ()) -> None:
        if not synonyms:
            raise ValueError('An ObjectVocabulary needs at least one object.')
        self._phrases: Dict[Tuple[str, ...], Optional[str]] = {}
        self._objects: List[str] = []
        for name, words in synonyms.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f'Object name {name!r} is not a word.')
            if isinstance(words, str) or not isinstance(words, Sequence):
                raise ValueError(f'The synonyms of {name!r} must be a list '
                                 f'of str, got {type(words).__name__}.')
            self._objects.append(name)
            for phrase in [name, *words]:
                self._add(phrase, name)
        for phrase in not_objects:
            self._add(phrase, None)
        self._max_len = max(len(p) for p in self._phrases)

    def _add(self, phrase: str, name: Optional[str]) -> None:
        """Register ``phrase`` and its plural for ``name`` (None: none)."""
        if not isinstance(phrase, str):
            raise ValueError(f'Synonym {phrase!r} of {name!r} is not a str.')
        words = tuple(tokenize_caption(phrase))
        if not words:
            raise ValueError(f'Synonym {phrase!r} of {name!r} has no words.')
        plural = words[:-1] + (plural_of(words[-1]), )
        for key in {words, plural}:
            if key in self._phrases and self._phrases[key] != name:
                raise ValueError(
                    f'{" ".join(key)!r} (from {phrase!r}) would mean both '
                    f'{self._phrases[key]!r} and {name!r} (None: not an '
                    'object); keep it in one list.')
            self._phrases[key] = name

    @classmethod
    def from_file(cls, path: str) -> 'ObjectVocabulary':
        """Read a synonym table: ``{"objects": {object: [synonym, ...]},
        "not_objects": [phrase, ...]}`` (``not_objects`` optional).

        Args:
            path (str): The JSON file, e.g. :data:`COCO_SYNONYMS_FILE`.

        Returns:
            ObjectVocabulary: The vocabulary.

        Raises:
            InputError: If the file is not such a table (as the line of a
                tool says), or a phrase belongs to two objects.
            OSError: If it cannot be read.
        """
        remedy = ('write {"objects": {name: [synonym, ...]}, "not_objects": '
                  '[...]}, or use the shipped COCO table')
        table = read_json(path, remedy)
        if not isinstance(table, dict) or not isinstance(
                table.get('objects'), dict) or not isinstance(
                    table.get('not_objects', []), list):
            raise InputError(path, 'not a synonym table', remedy)
        try:
            return cls(table['objects'], table.get('not_objects', []))
        except ValueError as error:
            raise InputError(path, str(error).rstrip('.'), remedy) from None

    @classmethod
    def coco(cls) -> 'ObjectVocabulary':
        """The shipped table of the 80 COCO instance categories."""
        return cls.from_file(COCO_SYNONYMS_FILE)

    @property
    def objects(self) -> List[str]:
        """list[str]: The canonical object names, in table order."""
        return list(self._objects)

    def phrases_of(self, name: str) -> Set[str]:
        """All phrases (plurals included) that mean object ``name``.

        Raises:
            KeyError: If ``name`` is not an object of the table.
        """
        if name not in self._objects:
            raise KeyError(f'{name!r} is not an object of the vocabulary.')
        return {' '.join(k) for k, v in self._phrases.items() if v == name}

    def __contains__(self, name: object) -> bool:
        return name in self._objects

    def __len__(self) -> int:
        return len(self._objects)

    def mentions(self, caption: str) -> Set[str]:
        """The objects a caption mentions (each once, however often said).

        Args:
            caption (str): Raw caption text.

        Returns:
            set[str]: Canonical object names, e.g. ``'Two men eat hot dogs'``
            -> ``{'person', 'hot dog'}``.
        """
        return set(self.mention_spans(caption).values())

    def mention_spans(self, caption: str) -> Dict[Tuple[int, int], str]:
        """Where each object is mentioned, by word positions.

        Args:
            caption (str): Raw caption text.

        Returns:
            dict: ``{(first word, end word): object}`` over the words of
            :func:`mmpcm.text.tokenize_caption`, longest phrases first,
            left to right; ``not_objects`` phrases are left out.
        """
        words = tuple(tokenize_caption(caption))
        spans: Dict[Tuple[int, int], str] = {}
        start = 0
        while start < len(words):
            for size in range(min(self._max_len, len(words) - start), 0, -1):
                key = words[start:start + size]
                if key in self._phrases:
                    name = self._phrases[key]
                    if name is not None:
                        spans[(start, start + size)] = name
                    start += size
                    break
            else:
                start += 1
        return spans
