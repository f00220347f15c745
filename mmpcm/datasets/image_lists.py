"""Which image files a list file or a folder names: one rule for every tool.

Feature extraction (:func:`~mmpcm.preprocessing.extraction.items_from_list`
and :func:`~mmpcm.preprocessing.extraction.items_from_folder`), testing from
images (:class:`~mmpcm.datasets.ImageFolderCaptionDataset`) and captioning
(:func:`~mmpcm.apis.inferencer.expand_inputs`, ``tools/caption.py``) find
their images here, so one list file or one folder means the same images, in
the same order, to all of them.

A plain image list (:func:`read_path_list`; what
:func:`~mmpcm.preprocessing.corpus.write_path_list` writes):

* one path per line, surrounding whitespace stripped (``\\r\\n`` endings
  too); relative paths are relative to the list file's folder, absolute
  paths are kept;
* blank lines and lines whose first non-blank character is ``#`` are
  skipped (name a file whose name starts with ``#`` as ``./#name.jpg``);
* decoded by :func:`mmpcm.utils.text_io.read_text` (UTF-8, byte-order
  marks, UTF-16/UTF-32); a line that does not decode refuses the file,
  since skipping it would silently drop an image.

A typed image list (``.jsonl``, ``{"image_id", "file_name"}`` lines, written
by :func:`~mmpcm.preprocessing.corpus.write_image_list`) is another format:
its ``file_name`` is relative to the image root, not to the list, and it
carries the ids. Only :func:`mmpcm.preprocessing.corpus.read_image_list`
reads it; :func:`read_path_list` refuses ``.jsonl`` and ``.json`` files with
a remedy rather than reading JSON lines as paths.

A folder (:func:`scan_folder`):

* searched recursively; a folder's files sorted by name, then its
  subfolders sorted by name, depth first (the order of a sorted
  ``os.walk``);
* files and folders whose name starts with ``.`` are skipped (macOS
  ``._name.jpg`` resource forks, ``.git``, editor backups);
* a file is an image by its extension, compared case-insensitively with
  :data:`IMAGE_EXTENSIONS` (``IMG_1.JPG`` is one); whether it decodes is
  found out when it is read;
* symbolic links to files are taken; symbolic links to folders are not
  followed (no cycles). The folder passed in may itself be a link.

The image id of a listed or scanned file is its file stem
(:func:`stem_image_ids`), which must be unique.
"""
import os
import os.path as osp
from typing import List, NamedTuple, Optional, Sequence, Union

from mmpcm.utils.cli import InputError, MissingInputError
from mmpcm.utils.text_io import read_text

PathLike = Union[str, 'os.PathLike[str]']

__all__ = [
    'IMAGE_EXTENSIONS', 'ListedImage', 'FolderScan', 'read_path_list',
    'scan_folder', 'stem_image_ids'
]

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff',
                    '.webp')
"""Lower-case suffixes of the files a folder scan takes as images."""

_JSON_SUFFIXES = ('.jsonl', '.json')


class ListedImage(NamedTuple):
    """One image named by a list file.

    Attributes:
        path (str): The file: an absolute line as written, a relative one
            joined to the list file's folder (as the list path was given,
            so a relative list gives relative paths).
        entry (str): The line as written, whitespace stripped.
        lineno (int): Its 1-based line number in the list file.
    """
    path: str
    entry: str
    lineno: int


class FolderScan(NamedTuple):
    """What :func:`scan_folder` found.

    Attributes:
        files (list[str]): The files taken, relative to the folder (POSIX
            separators), in scan order.
        skipped (list[str]): Other visible files (extension not taken),
            relative, in scan order.
    """
    files: List[str]
    skipped: List[str]


def read_path_list(list_file: PathLike) -> List[ListedImage]:
    """The images a plain list file names, in file order.

    Format and decoding: see the module docstring.

    Args:
        list_file (str | PathLike): The list file.

    Returns:
        list[ListedImage]: One per path line (may be empty).

    Raises:
        MissingInputError: If ``list_file`` does not exist.
        InputError: If it is a folder, a JSON / JSON Lines file (a typed
            list or COCO file, not a list of paths), or not text in a
            supported encoding (:func:`mmpcm.utils.text_io.read_text`).
    """
    list_file = os.fspath(list_file)
    if osp.isdir(list_file):
        raise InputError(
            list_file, 'is a folder, not an image list file',
            'pass the folder as the image folder, or a text '
            'file with one image path per line')
    if not osp.isfile(list_file):
        raise MissingInputError(list_file, 'no such image list file',
                                'check the path')
    if list_file.lower().endswith(_JSON_SUFFIXES):
        raise InputError(
            list_file, 'a JSON file, not a plain image list (one path per '
            'line)', 'pass a .txt list of image paths (prepare_corpus.py '
            'writes karpathy_<split>_images.txt next to the typed .jsonl)')
    folder = osp.dirname(list_file)
    listed = []
    for lineno, line in enumerate(read_text(list_file).split('\n'), start=1):
        entry = line.strip()
        if not entry or entry.startswith('#'):
            continue
        path = entry if osp.isabs(entry) else osp.join(folder, entry)
        listed.append(ListedImage(path, entry, lineno))
    return listed


def scan_folder(
        folder: PathLike,
        extensions: Optional[Sequence[str]] = IMAGE_EXTENSIONS) -> FolderScan:
    """The files under ``folder`` (rules in the module docstring).

    Args:
        folder (str | PathLike): The folder.
        extensions (Sequence[str], optional): Suffixes taken, compared
            case-insensitively. None takes every visible file (the caption
            inferencer does, so that a non-image file is reported as one
            rather than silently left out). Defaults to
            :data:`IMAGE_EXTENSIONS`.

    Returns:
        FolderScan: The files taken and the visible files skipped.

    Raises:
        MissingInputError: If ``folder`` does not exist.
        InputError: If it is a file.
    """
    folder = os.fspath(folder)
    if not osp.exists(folder):
        raise MissingInputError(folder, 'no such image folder',
                                'check the path')
    if not osp.isdir(folder):
        raise InputError(folder, 'is a file, not an image folder',
                         'pass the folder holding the images')
    suffixes = (None if extensions is None else tuple(e.lower()
                                                      for e in extensions))
    files, skipped = [], []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for name in sorted(names):
            if name.startswith('.'):
                continue
            rel = osp.relpath(osp.join(root, name),
                              folder).replace(os.sep, '/')
            if suffixes is None or name.lower().endswith(suffixes):
                files.append(rel)
            else:
                skipped.append(rel)
    return FolderScan(files, skipped)


def stem_image_ids(paths: Sequence[str], source: PathLike) -> List[str]:
    """Image ids of listed or scanned files: their file stems, unique.

    Args:
        paths (Sequence[str]): Image paths.
        source (str | PathLike): The list file or folder they come from,
            for the error.

    Returns:
        list[str]: ``'img_1'`` for ``'sub/img_1.jpg'``.

    Raises:
        InputError: If two files share a stem (naming both).
    """
    ids: List[str] = []
    seen = {}
    for path in paths:
        image_id = osp.splitext(osp.basename(path))[0]
        if image_id in seen:
            raise InputError(
                source, f'image id {image_id!r} (the file stem) is used by '
                f'both {seen[image_id]} and {path}', 'image ids must be '
                'unique: rename or leave out one of the files')
        seen[image_id] = path
        ids.append(image_id)
    return ids
