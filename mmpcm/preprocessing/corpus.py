"""Caption corpora: Karpathy split files and plain text, read and written.

:func:`prepare_corpus` turns a Karpathy ``dataset_*.json`` into everything
the rest of the pipeline reads. The two corpus formats, skipped lines and
image ids (:class:`ImageIdScheme`): ``docs/data.md``, section 1.
"""
import json
import os
import os.path as osp
from dataclasses import dataclass, field
from enum import Enum
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple, Union)

from mmpcm.text.vocab import VocabularyReport, WordVocabulary
from mmpcm.utils.cli import InputError, MissingInputError
from mmpcm.utils.fileio import atomic_write_text
from mmpcm.utils.text_io import read_text, read_text_lines

ImageId = Union[str, int]
PathLike = Union[str, 'os.PathLike[str]']

TRAIN_SPLITS = ('train', 'restval')
EVAL_SPLITS = ('val', 'test')
KNOWN_SPLITS = TRAIN_SPLITS + EVAL_SPLITS
TRAIN_CAPTIONS_FILE = 'train_captions.txt'
VOCAB_FILE = 'vocab.json'
_IMAGE_KEYS = ('filename', 'split', 'sentences')
_JSON_SUFFIXES = ('.json', )

__all__ = [
    'ImageIdScheme', 'SkippedLine', 'TextCorpus', 'KarpathySentence',
    'KarpathyImage', 'KarpathyDataset', 'ImageEntry', 'PreparedCorpus',
    'SplitFiles', 'clean_caption', 'load_json', 'read_text_corpus',
    'read_karpathy', 'load_corpus', 'coco_ground_truth', 'read_image_list',
    'write_image_list', 'write_path_list', 'write_text_corpus',
    'prepare_corpus', 'gt_file_name', 'image_list_file_name'
]


class ImageIdScheme(str, Enum):
    """How an image of a Karpathy file gets its id.

    * ``stem`` (default): the file name without extension (str), e.g.
      ``'COCO_val2014_000000391895'`` or Flickr30k's ``'1000092795'``; the
      id the feature extraction tool derives from an image path.
    * ``stem-int``: the same stem as an int (it must be all digits, e.g.
      Flickr30k).
    * ``cocoid``: the image's ``cocoid`` (int), COCO's own image id.
    * ``imgid``: Karpathy's running image index ``imgid`` (int).
    * ``filename``: the file name with extension (str).

    The caption metric compares ids exactly (``1`` and ``'1'`` differ), so
    the features of the val/test images must carry the same ids.
    ``tools/data/extract_features.py`` names images by their file stem, so
    the test sets of the configs need ``stem``; the ``.jsonl`` image list
    records the typed ids of another scheme for tools of one's own (none of
    mmpcm's reads it).
    """
    COCOID = 'cocoid'
    IMGID = 'imgid'
    STEM = 'stem'
    STEM_INT = 'stem-int'
    FILENAME = 'filename'


# --------------------------------------------------------------------------
# plain text corpora
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class SkippedLine:
    """A corpus line that was not read as a caption.

    Args:
        path (str): The corpus file.
        lineno (int): 1-based line number.
        reason (str): ``'empty'`` or why it could not be read (``'not
            UTF-8 (...)'``, ``'contains a NUL byte'``).
    """
    path: str
    lineno: int
    reason: str

    def __str__(self) -> str:
        return f'{self.path}:{self.lineno}: {self.reason}'


@dataclass
class TextCorpus:
    """Captions read from a corpus and the lines skipped on the way.

    Args:
        captions (list[str]): Cleaned captions, in file order.
        skipped (list[SkippedLine]): Lines that gave no caption. Defaults to
            an empty list.
        line_numbers (list[int]): 1-based line number of each caption.
            Defaults to an empty list.
        num_lines (int): Lines in the file. Defaults to 0.
    """
    captions: List[str]
    skipped: List[SkippedLine] = field(default_factory=list)
    line_numbers: List[int] = field(default_factory=list)
    num_lines: int = 0

    @property
    def num_empty(self) -> int:
        return sum(s.reason == 'empty' for s in self.skipped)

    @property
    def num_invalid(self) -> int:
        return len(self.skipped) - self.num_empty

    def report(self, max_lines: int = 10) -> str:
        """Describe what was read and skipped, naming the first bad lines.

        Args:
            max_lines (int): How many undecodable lines to name.
                Defaults to 10.

        Returns:
            str: A few lines of text.
        """
        invalid = [s for s in self.skipped if s.reason != 'empty']
        kinds = ('non-UTF-8' if all(s.reason.startswith('not UTF-8')
                                    for s in invalid)
                 else 'non-UTF-8 or NUL-byte')
        lines = [f'{len(self.captions)} captions read; skipped '
                 f'{self.num_empty} empty and {self.num_invalid} '
                 f'{kinds} line(s)']
        lines += [f'  {s}' for s in invalid[:max_lines]]
        if len(invalid) > max_lines:
            lines.append(f'  ... and {len(invalid) - max_lines} more')
        return '\n'.join(lines)


def clean_caption(text: str) -> str:
    """Collapse every run of whitespace (newlines included) to one space.

    Args:
        text (str): Raw caption text.

    Returns:
        str: The caption on one line, stripped.
    """
    return ' '.join(text.split())


def _check_file(path: PathLike, what: str) -> str:
    """``path`` as a str; MissingInputError naming ``what`` if not a file."""
    path = os.fspath(path)
    if osp.isdir(path):
        raise InputError(path, f'a folder, not a {what}', 'pass the file')
    if not osp.isfile(path):
        raise MissingInputError(path, f'no such {what}', 'check the path')
    return path


def read_text_corpus(path: PathLike) -> TextCorpus:
    """Read a text file with one caption per line.

    The file is decoded by :func:`mmpcm.utils.text_io.read_text_lines`
    (byte-order marks, BOM-less UTF-16). In UTF-8, lines are decoded one by
    one, so a line that is not UTF-8 is skipped (and reported) without
    losing the rest; a line with a NUL byte is skipped the same way.

    Args:
        path (str | PathLike): The corpus file.

    Returns:
        TextCorpus: The cleaned captions and the skipped lines.

    Raises:
        FileNotFoundError: If the file does not exist.
        InputError: If it is not text, or UTF-16/UTF-32 that does not
            decode (:mod:`mmpcm.utils.text_io`).
    """
    path = _check_file(path, 'caption corpus')
    corpus = TextCorpus(captions=[])
    for lineno, text, problem in read_text_lines(path):
        corpus.num_lines = lineno
        if problem is not None:
            corpus.skipped.append(SkippedLine(path, lineno, problem))
            continue
        caption = clean_caption(text)
        if caption:
            corpus.captions.append(caption)
            corpus.line_numbers.append(lineno)
        else:
            corpus.skipped.append(SkippedLine(path, lineno, 'empty'))
    return corpus


def write_text_corpus(path: PathLike, captions: Iterable[str]) -> int:
    """Write captions one per line (UTF-8), atomically.

    Args:
        path (str | PathLike): Output file.
        captions (Iterable[str]): Captions; each is cleaned of newlines and
            empty ones are dropped.

    Returns:
        int: Number of lines written.
    """
    lines = [c for c in (clean_caption(c) for c in captions) if c]
    atomic_write_text(path, ''.join(f'{c}\n' for c in lines))
    return len(lines)


# --------------------------------------------------------------------------
# Karpathy split files
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class KarpathySentence:
    """One reference caption.

    Args:
        sent_id (int): Karpathy's ``sentid`` (running index if absent).
        caption (str): The ``raw`` text, cleaned of newlines.
    """
    sent_id: int
    caption: str


@dataclass(frozen=True)
class KarpathyImage:
    """One image of a Karpathy file.

    Args:
        image_id (str | int): Id under the chosen :class:`ImageIdScheme`.
        file_name (str): Path relative to the image root
            (``filepath/filename``, or ``filename`` without a filepath).
        split (str): ``'train'``, ``'restval'``, ``'val'`` or ``'test'``.
        sentences (tuple[KarpathySentence, ...]): Its captions.
    """
    image_id: ImageId
    file_name: str
    split: str
    sentences: Tuple[KarpathySentence, ...]


@dataclass
class KarpathyDataset:
    """A parsed Karpathy split file.

    Args:
        name (str): ``dataset`` field (``'coco'``, ``'flickr30k'``...), or
            ``'unknown'``.
        images (list[KarpathyImage]): Images in file order.
        path (str): The file read. Defaults to ''.
        num_empty_sentences (int): Sentences dropped because their raw text
            was empty. Defaults to 0.
        id_scheme (str): The :class:`ImageIdScheme` value the ids follow.
            Defaults to 'stem'.
    """
    name: str
    images: List[KarpathyImage]
    path: str = ''
    num_empty_sentences: int = 0
    id_scheme: str = ImageIdScheme.STEM.value

    def split(self, name: str) -> List[KarpathyImage]:
        """Images of a split; ``'train'`` includes ``'restval'``.

        Args:
            name (str): ``'train'``, ``'val'`` or ``'test'`` (or
                ``'restval'`` alone).

        Returns:
            list[KarpathyImage]: The images, in file order.
        """
        wanted = TRAIN_SPLITS if name == 'train' else (name, )
        return [im for im in self.images if im.split in wanted]

    def train_captions(self) -> List[str]:
        """Every caption of the training images (train + restval)."""
        return [s.caption for im in self.split('train') for s in im.sentences]


def load_json(path: PathLike, what: str) -> Any:
    """Read a JSON file with errors that name it.

    Args:
        path (str | PathLike): The file.
        what (str): What the file is, for the missing-file message.

    Returns:
        Any: The parsed content.

    The text is decoded by :func:`mmpcm.utils.text_io.read_text` (UTF-8,
    or UTF-16/UTF-32 with a byte-order mark, or BOM-less UTF-16).

    Raises:
        FileNotFoundError: If the file does not exist.
        InputError: If it is not text in a supported encoding, or holds a
            NUL byte or a ``\\u0000`` escape (:mod:`mmpcm.utils.text_io`).
        ValueError: If it is not valid JSON.
    """
    path = _check_file(path, what)
    text = read_text(path)
    nul = _json_nul_escape(text)
    if nul is not None:  # decodes to a NUL character inside a string
        lineno = text.count('\n', 0, nul) + 1
        raise InputError(path, f'line {lineno} holds a NUL character (a '
                         '\\u0000 escape)', 'remove it')
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f'{path}: not valid JSON ({err})') from None


def _json_nul_escape(text: str) -> Optional[int]:
    """Where JSON text has a ``\\u0000`` escape (whose backslash is not
    itself escaped), or None."""
    start = text.find('\\u0000')
    while start >= 0:
        slashes = 0
        while start - slashes > 0 and text[start - slashes - 1] == '\\':
            slashes += 1
        if slashes % 2 == 0:
            return start
        start = text.find('\\u0000', start + 1)
    return None


def _require(mapping: Any, keys: Sequence[str], where: str,
             expected: str) -> None:
    """Raise a ValueError naming the first of ``keys`` missing."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f'{where}: expected a JSON object, found '
                         f'{type(mapping).__name__}; {expected}')
    for key in keys:
        if key not in mapping:
            raise ValueError(f'{where}: missing key {key!r}; {expected}')


_KARPATHY_HINT = ('a Karpathy split file is {"images": [{"filename", "split", '
                  '"sentences": [{"raw", ...}], ...}], "dataset": ...}')


def _image_id(image: Mapping, scheme: ImageIdScheme, where: str) -> ImageId:
    """The id of one Karpathy image under ``scheme``."""
    if scheme in (ImageIdScheme.COCOID, ImageIdScheme.IMGID):
        key = scheme.value
        _require(image, [key], where,
                 f'image id scheme {scheme.value!r} reads it')
        value = image[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'{where}: {key} must be an int, got {value!r}')
        return value
    filename = image['filename']
    if scheme is ImageIdScheme.FILENAME:
        return filename
    stem = osp.splitext(osp.basename(filename))[0]
    if scheme is ImageIdScheme.STEM_INT:
        if not stem.isdigit():
            raise ValueError(f'{where}: file name stem {stem!r} is not an '
                             'integer; use image id scheme "stem"')
        return int(stem)
    return stem


def _parse_sentences(image: Mapping, where: str,
                     next_id: int) -> Tuple[List[KarpathySentence], int]:
    """Cleaned, non-empty sentences of an image, and the empty count."""
    sentences = image['sentences']
    if not isinstance(sentences, list):
        raise ValueError(f'{where}: sentences must be a list; '
                         f'{_KARPATHY_HINT}')
    out, empty = [], 0
    for j, sent in enumerate(sentences):
        _require(sent, ['raw'], f'{where}.sentences[{j}]', _KARPATHY_HINT)
        if not isinstance(sent['raw'], str):
            raise ValueError(f'{where}.sentences[{j}]: raw must be a str')
        caption = clean_caption(sent['raw'])
        if not caption:
            empty += 1
            continue
        out.append(KarpathySentence(sent.get('sentid', next_id + j), caption))
    return out, empty


def _parse_image(image: Mapping, scheme: ImageIdScheme,
                 where: str, next_sent_id: int) -> Tuple[KarpathyImage, int]:
    _require(image, _IMAGE_KEYS, where, _KARPATHY_HINT)
    if not isinstance(image['filename'], str) or not image['filename']:
        raise ValueError(f'{where}: filename must be a non-empty str')
    if image['split'] not in KNOWN_SPLITS:
        raise ValueError(f'{where}: split {image["split"]!r} is not one of '
                         f'{list(KNOWN_SPLITS)}')
    sentences, empty = _parse_sentences(image, where, next_sent_id)
    filepath = image.get('filepath') or ''
    file_name = '/'.join(p for p in (filepath, image['filename']) if p)
    return KarpathyImage(
        image_id=_image_id(image, scheme, where),
        file_name=file_name,
        split=image['split'],
        sentences=tuple(sentences)), empty


def read_karpathy(path: PathLike,
                  id_scheme: Union[str, ImageIdScheme] = 'stem'
                  ) -> KarpathyDataset:
    """Parse a Karpathy split file (``dataset_coco.json`` and the like).

    Args:
        path (str | PathLike): The JSON file.
        id_scheme (str | ImageIdScheme): How images get their ids, see
            :class:`ImageIdScheme`. Defaults to 'stem'.

    Returns:
        KarpathyDataset: Every image with its cleaned captions (empty ones
        dropped and counted).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not valid JSON, a key is missing (named), a
            split is unknown, or an image id repeats within a split.
    """
    data = load_json(path, 'Karpathy split file')
    path = os.fspath(path)
    _require(data, ['images'], path, _KARPATHY_HINT)
    if not isinstance(data['images'], list):
        raise ValueError(f'{path}: images must be a list; {_KARPATHY_HINT}')
    scheme = ImageIdScheme(id_scheme)
    images, empty, next_sent_id = [], 0, 0
    for i, image in enumerate(data['images']):
        parsed, n_empty = _parse_image(image, scheme, f'{path}: images[{i}]',
                                       next_sent_id)
        next_sent_id += len(image['sentences'])
        images.append(parsed)
        empty += n_empty
    dataset = KarpathyDataset(
        name=str(data.get('dataset', 'unknown')),
        images=images,
        path=path,
        num_empty_sentences=empty,
        id_scheme=scheme.value)
    for split in ('train', ) + EVAL_SPLITS:
        _check_unique_ids(dataset.split(split), f'{path} ({split} split)')
    return dataset


def _check_unique_ids(images: Sequence[KarpathyImage], where: str) -> None:
    seen = set()
    for image in images:
        if image.image_id in seen:
            raise ValueError(
                f'{where}: image id {image.image_id!r} appears twice; pick '
                'another image id scheme (e.g. "imgid")')
        seen.add(image.image_id)


def load_corpus(path: PathLike) -> TextCorpus:
    """Training captions of a corpus file of either kind.

    Args:
        path (str | PathLike): A Karpathy split file (``.json``: its train
            and restval captions) or a text file (one caption per line).

    Returns:
        TextCorpus: The captions (and, for text, the skipped lines).
    """
    if os.fspath(path).lower().endswith(_JSON_SUFFIXES):
        return TextCorpus(captions=read_karpathy(path).train_captions())
    return read_text_corpus(path)


# --------------------------------------------------------------------------
# outputs: COCO-format ground truth and image lists
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageEntry:
    """One line of a typed image list.

    Args:
        image_id (str | int): The id the features and references use.
        file_name (str): Image path relative to the image root.
    """
    image_id: ImageId
    file_name: str


def coco_ground_truth(images: Sequence[KarpathyImage]) -> Dict[str, list]:
    """COCO-format caption references of some images.

    Args:
        images (Sequence[KarpathyImage]): The images (one split).

    Returns:
        dict: ``{"images": [{"id", "file_name"}], "annotations": [{"id",
        "image_id", "caption"}]}``; annotation ids are Karpathy sentids.
    """
    return {
        'images': [{'id': im.image_id, 'file_name': im.file_name}
                   for im in images],
        'annotations': [{'id': s.sent_id, 'image_id': im.image_id,
                         'caption': s.caption}
                        for im in images for s in im.sentences],
    }


def write_image_list(path: PathLike, images: Iterable[ImageEntry]) -> int:
    """Write a typed image list: JSON Lines ``{"image_id", "file_name"}``.

    JSON keeps the id's type (``391895`` and ``"391895"`` differ for the
    caption metric), which a plain path list would lose.

    Args:
        path (str | PathLike): Output ``.jsonl`` file.
        images (Iterable[ImageEntry]): The images, in order.

    Returns:
        int: Number of lines written.
    """
    lines = [json.dumps({'image_id': e.image_id, 'file_name': e.file_name},
                        ensure_ascii=False) for e in images]
    atomic_write_text(path, ''.join(f'{line}\n' for line in lines))
    return len(lines)


def write_path_list(path: PathLike, file_names: Iterable[str],
                    image_root: Optional[PathLike] = None) -> int:
    """Write a plain image list, one path per line.

    This is the list ``tools/data/extract_features.py`` reads: each path is
    relative to the list file's own folder, and the image id is the file
    stem.

    Args:
        path (str | PathLike): Output ``.txt`` file.
        file_names (Iterable[str]): Paths relative to ``image_root``.
        image_root (str | PathLike, optional): Folder the file names are
            relative to; paths are rewritten relative to the list's folder.
            Defaults to None (the list's folder is the image root).

    Returns:
        int: Number of lines written.
    """
    list_dir = osp.dirname(osp.abspath(os.fspath(path)))
    root = list_dir if image_root is None else osp.abspath(
        os.fspath(image_root))
    lines = [
        osp.relpath(osp.join(root, name), list_dir).replace(os.sep, '/')
        for name in file_names
    ]
    atomic_write_text(path, ''.join(f'{line}\n' for line in lines))
    return len(lines)


def read_image_list(path: PathLike) -> List[ImageEntry]:
    """Read a typed image list written by :func:`write_image_list`.

    Args:
        path (str | PathLike): The ``.jsonl`` file.

    Returns:
        list[ImageEntry]: The entries, in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        InputError: If it is not text in a supported encoding
            (:func:`mmpcm.utils.text_io.read_text`).
        ValueError: On a line that is not a JSON object with ``image_id``
            (str or int) and ``file_name`` (str).
    """
    path = _check_file(path, 'image list')
    entries = []
    for lineno, line in enumerate(read_text(path).split('\n'), start=1):
        if line.strip():
            entries.append(_parse_list_line(line, f'{path}:{lineno}'))
    return entries


def _parse_list_line(line: str, where: str) -> ImageEntry:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f'{where}: not valid JSON ({err})') from None
    _require(item, ['image_id', 'file_name'], where,
             'an image list line is {"image_id", "file_name"}')
    image_id = item['image_id']
    if isinstance(image_id, bool) or not isinstance(image_id, (str, int)):
        raise ValueError(
            f'{where}: image_id must be a str or int, got {image_id!r}')
    return ImageEntry(image_id, str(item['file_name']))


def gt_file_name(split: str) -> str:
    """``karpathy_<split>_gt.json``, the name the configs read."""
    return f'karpathy_{split}_gt.json'


def image_list_file_name(split: str, typed: bool = False) -> str:
    """``karpathy_<split>_images.txt`` (or ``.jsonl`` when ``typed``)."""
    return f'karpathy_{split}_images.{"jsonl" if typed else "txt"}'


def _write_json(path: PathLike, data: Any) -> None:
    """Write compact JSON (UTF-8, trailing newline) atomically."""
    atomic_write_text(path, json.dumps(data, ensure_ascii=False) + '\n')


@dataclass
class SplitFiles:
    """The files :func:`prepare_corpus` wrote for one eval split.

    Args:
        ground_truth (str): COCO-format references.
        path_list (str): Plain image list (extraction tool input).
        typed_list (str): JSON Lines image list with typed ids.
        num_images (int): Images in the split.
        num_captions (int): Reference captions in the split.
    """
    ground_truth: str
    path_list: str
    typed_list: str
    num_images: int
    num_captions: int


@dataclass
class PreparedCorpus:
    """What :func:`prepare_corpus` wrote.

    Args:
        train_captions (str): The training corpus (one caption per line).
        vocab (str): The word vocabulary JSON.
        num_train_captions (int): Lines of the training corpus.
        vocab_size (int): Words in the vocabulary, special tokens included.
        splits (dict[str, SplitFiles]): Eval split -> its files. Defaults to
            an empty dict (a text corpus has no splits).
        skipped (list[SkippedLine]): Lines of a text corpus that were
            skipped. Defaults to an empty list.
        id_scheme (str): The image id scheme used. Defaults to ''.
        num_empty_sentences (int): Empty Karpathy sentences dropped.
            Defaults to 0.
        vocab_report (VocabularyReport, optional): What the vocabulary
            drops (words that become ``<unk>``, characters the tokenizer
            removes); ``str()`` of it is a summary to print. Defaults to
            None.
    """
    train_captions: str
    vocab: str
    num_train_captions: int
    vocab_size: int
    splits: Dict[str, SplitFiles] = field(default_factory=dict)
    skipped: List[SkippedLine] = field(default_factory=list)
    id_scheme: str = ''
    num_empty_sentences: int = 0
    vocab_report: Optional[VocabularyReport] = None


def prepare_corpus(corpus: PathLike,
                   out_dir: PathLike,
                   id_scheme: Union[str, ImageIdScheme] = 'stem',
                   image_root: Optional[PathLike] = None,
                   min_count: int = 5,
                   eval_splits: Sequence[str] = EVAL_SPLITS
                   ) -> PreparedCorpus:
    """Write the training corpus, references, image lists and vocabulary.

    Files written into ``out_dir``:

    * ``train_captions.txt``: the train (+ restval) captions, one per line.
    * ``karpathy_<split>_gt.json``: COCO-format references of each eval
      split (``{"images": [{"id", "file_name"}], "annotations": [{"id",
      "image_id", "caption"}]}``; ``file_name`` relative to the image root,
      annotation ids are Karpathy sentids), the configs' ``ann_file``.
    * ``karpathy_<split>_images.txt``: the split's image paths, one per
      line, relative to ``out_dir`` (the extraction tool's list format).
    * ``karpathy_<split>_images.jsonl``: the same images as
      ``{"image_id", "file_name"}`` lines (typed ids, ``file_name``
      relative to the image root).
    * ``vocab.json``: the word vocabulary of the training captions
      (:class:`WordVocabulary`; the model builds the same one from its
      training store, this file is for inspection).

    A text corpus (not ``.json``) has no splits: only the first and last
    files are written.

    Args:
        corpus (str | PathLike): Karpathy split file or text corpus.
        out_dir (str | PathLike): Output folder (created if missing).
        id_scheme (str | ImageIdScheme): Image ids, see
            :class:`ImageIdScheme`. Defaults to 'stem'.
        image_root (str | PathLike, optional): Folder the Karpathy paths
            (``filepath/filename``) are relative to, used for the ``.txt``
            lists. Defaults to None (``out_dir``).
        min_count (int): Vocabulary count threshold. Defaults to 5.
        eval_splits (Sequence[str]): Splits that get references and image
            lists. Defaults to ('val', 'test').

    Returns:
        PreparedCorpus: The files written and their sizes.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    if not os.fspath(corpus).lower().endswith(_JSON_SUFFIXES):
        text = read_text_corpus(corpus)
        result = _write_train_files(corpus, out_dir, text.captions,
                                    min_count)
        result.skipped = text.skipped
        return result
    dataset = read_karpathy(corpus, id_scheme)
    result = _write_train_files(corpus, out_dir, dataset.train_captions(),
                                min_count)
    result.id_scheme = dataset.id_scheme
    result.num_empty_sentences = dataset.num_empty_sentences
    for split in eval_splits:
        result.splits[split] = _write_split_files(
            out_dir, split, dataset.split(split), image_root)
    return result


def _write_split_files(out_dir: str, split: str,
                       images: Sequence[KarpathyImage],
                       image_root: Optional[PathLike]) -> SplitFiles:
    """Write the references and both image lists of one split."""
    files = SplitFiles(
        ground_truth=osp.join(out_dir, gt_file_name(split)),
        path_list=osp.join(out_dir, image_list_file_name(split)),
        typed_list=osp.join(out_dir, image_list_file_name(split, True)),
        num_images=len(images),
        num_captions=sum(len(im.sentences) for im in images))
    _write_json(files.ground_truth, coco_ground_truth(images))
    write_path_list(files.path_list, (im.file_name for im in images),
                    image_root)
    write_image_list(files.typed_list,
                     (ImageEntry(im.image_id, im.file_name) for im in images))
    return files


def _write_train_files(corpus: PathLike, out_dir: str,
                       captions: Sequence[str],
                       min_count: int) -> PreparedCorpus:
    """Write the training corpus and its vocabulary (nothing when the
    vocabulary would be empty)."""
    if not captions:
        raise InputError(corpus, 'no training caption (no train or restval '
                         'image with a non-empty caption)',
                         'pass the Karpathy JSON or a caption file')
    try:
        vocab, report = WordVocabulary.from_captions_with_report(
            captions, min_count=min_count)
    except ValueError:
        raise InputError(corpus, f'no word occurs {min_count} times or more '
                         'in the training captions, so the vocabulary would '
                         'be empty', 'lower --min-count (e.g. --min-count 1) '
                         'or give a larger corpus') from None
    corpus_path = osp.join(out_dir, TRAIN_CAPTIONS_FILE)
    vocab_path = osp.join(out_dir, VOCAB_FILE)
    n = write_text_corpus(corpus_path, captions)
    vocab.save(vocab_path)
    return PreparedCorpus(
        train_captions=corpus_path,
        vocab=vocab_path,
        num_train_captions=n,
        vocab_size=len(vocab),
        vocab_report=report)
