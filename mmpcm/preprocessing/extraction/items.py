"""The items to extract: generated images with their captions, an image
folder or a list file; each item's path, id and caption."""
import logging
import os
import os.path as osp
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

from mmpcm.datasets.image_lists import (IMAGE_EXTENSIONS, read_path_list,
                                        scan_folder, stem_image_ids)
from mmpcm.preprocessing.generation import (load_generation_records,
                                            read_caption_file)
from mmpcm.utils.cli import InputError
from mmpcm.utils.fileio import PathLike

logger = logging.getLogger(__name__)

__all__ = [
    'ExtractionItem', 'items_from_generated', 'items_from_folder',
    'items_from_list'
]


class ExtractionItem(NamedTuple):
    """One image to encode.

    Attributes:
        path (str): The image file.
        image_id (int | str): Id stored in the record (unique).
        relpath (str): Path relative to the input root (kept in the record).
        caption (str, optional): Its caption (synthetic data), or None.
    """
    path: str
    image_id: Union[int, str]
    relpath: str
    caption: Optional[str] = None


def items_from_generated(gen_dir: PathLike,
                         captions_file: Optional[PathLike] = None
                         ) -> List[ExtractionItem]:
    """The generated images of a generation output folder, with captions.

    Items the generation recorded as failed have no image and are left out
    (and counted in the log).

    Args:
        gen_dir (str | PathLike): Output folder of
            :func:`~mmpcm.preprocessing.generation.generate_images`.
        captions_file (str | PathLike, optional): The caption corpus; when
            given, every generated item's caption must equal its line.
            Defaults to None (the captions in the records are used).

    Returns:
        list[ExtractionItem]: By caption index; ``image_id`` is the index.

    Raises:
        ValueError: If a caption differs from the corpus line it was
            generated from (naming file, line and both texts).
    """
    gen_dir = os.fspath(gen_dir)
    records = load_generation_records(gen_dir)
    ok = [records[i] for i in sorted(records) if records[i].status == 'ok']
    if len(ok) < len(records):
        logger.warning(f'{gen_dir}: {len(records) - len(ok)} caption(s) '
                       'have no image (generation failed); not extracted')
    if captions_file is not None:
        _check_captions_match(gen_dir, records, os.fspath(captions_file))
    return [
        ExtractionItem(osp.join(gen_dir, r.file), r.index, r.file, r.caption)
        for r in ok
    ]


def _check_captions_match(gen_dir: str, records: Dict[int, Any],
                          captions_file: str) -> None:
    """Raise unless every generated item's caption is its corpus line."""
    corpus = read_caption_file(captions_file)
    for index in sorted(records):
        found = corpus.caption_at(index)
        if found != records[index].caption:
            raise ValueError(
                f'{captions_file}:{index + 1}: line is {found!r}, but '
                f'{gen_dir} generated image {index} from '
                f'{records[index].caption!r}: the images were made from '
                'another caption file')
    missing = len(corpus.items) - sum(1 for it in corpus.items
                                      if it.index in records)
    if missing:
        logger.warning(f'{gen_dir}: {missing} caption(s) of {captions_file} '
                       'have no generated image yet')


def _check_unique_ids(items: Sequence[ExtractionItem]) -> None:
    seen: Dict[Union[int, str], str] = {}
    for item in items:
        if item.image_id in seen:
            raise ValueError(
                f'image id {item.image_id!r} (the file stem) is used by both '
                f'{seen[item.image_id]} and {item.path}; image ids must be '
                'unique')
        seen[item.image_id] = item.path


def _stem_items(paths: Sequence[str], relpaths: Sequence[str],
                source: str) -> List[ExtractionItem]:
    """Items of listed or scanned files; ids the (unique) file stems."""
    ids = stem_image_ids(paths, source)
    return [ExtractionItem(p, i, r) for p, i, r in zip(paths, ids, relpaths)]


def items_from_folder(folder: PathLike) -> List[ExtractionItem]:
    """Every image file under ``folder``.

    The folder is scanned by
    :func:`~mmpcm.datasets.image_lists.scan_folder`, as testing from images
    and captioning scan it: recursive, a folder's files sorted by name
    before its subfolders, hidden files and folders skipped, image files
    picked by extension (:data:`IMAGE_EXTENSIONS`, ignoring case); whether
    they decode is found out during extraction.

    Args:
        folder (str | PathLike): The image folder.

    Returns:
        list[ExtractionItem]: ``image_id`` is the file stem, ``relpath``
        the path relative to ``folder``.

    Raises:
        MissingInputError: If ``folder`` does not exist.
        InputError: If two files share a stem.
    """
    folder = os.fspath(folder)
    scan = scan_folder(folder)
    if scan.skipped:
        logger.info(f'{folder}: ignored {len(scan.skipped)} file(s) without '
                    f'an image extension {IMAGE_EXTENSIONS}')
    return _stem_items([osp.join(folder, rel) for rel in scan.files],
                       scan.files, folder)


def items_from_list(list_file: PathLike) -> List[ExtractionItem]:
    """Images named in a plain list file, one path per line.

    The file is read by :func:`~mmpcm.datasets.image_lists.read_path_list`,
    as testing from images and captioning read it: relative paths are
    relative to the list file's folder, blank lines and ``#`` comments are
    skipped, the text is decoded by :func:`mmpcm.utils.text_io.read_text`
    (UTF-8, or UTF-16/UTF-32 with a byte-order mark, or BOM-less UTF-16).
    A typed ``.jsonl`` list is refused (see that function).

    Args:
        list_file (str | PathLike): The list file.

    Returns:
        list[ExtractionItem]: In file order; ``image_id`` is the file stem,
        ``path`` absolute, ``relpath`` the line as written.

    Raises:
        MissingInputError: If the list file does not exist.
        InputError: If it is not text in a supported encoding, holds a
            NUL byte, is a JSON file, or two paths share a stem.
    """
    list_file = os.fspath(list_file)
    listed = read_path_list(list_file)
    return _stem_items([osp.abspath(image.path) for image in listed],
                       [image.entry for image in listed], list_file)


def _check_items(items: Sequence[ExtractionItem], source: str) -> None:
    """Refuse an empty, mixed or id-repeating item list, before writing.

    Args:
        items (Sequence[ExtractionItem]): The items of every rank.
        source (str): Where they come from (or the output folder), for the
            error.

    Raises:
        InputError: If there is no item: a store of 0 items would look
            finished to a later run.
        ValueError: On repeated ids, or captioned and uncaptioned items.
    """
    if not items:
        raise InputError(
            source, 'no images to extract (an empty folder or list file, or '
            'a generation folder without a finished image)',
            'check the input path; nothing was written')
    _check_unique_ids(items)
    captioned = {it.caption is not None for it in items}
    if len(captioned) > 1:
        raise ValueError('either every item has a caption or none has: a '
                         'feature store has text embeddings for all or none')
