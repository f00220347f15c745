"""Atomic file writes and file hashes (standard library only).

A file is written completely or not at all: its content goes to a temporary
sibling (``.<name>.tmp-<pid>``, see :func:`tmp_path_for`), is fsync'ed, and is
renamed to the final name with ``os.replace``. A crash never leaves a
half-written file under the final name; a leftover temporary file is
recognised by :func:`is_tmp_name` and removed by :func:`remove_tmp_files`.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Any, Callable, IO, Union

PathLike = Union[str, 'os.PathLike[str]']

TMP_TAG = '.tmp-'
"""Marks a temporary file: ``.<final name>.tmp-<pid>``; never read back."""

__all__ = [
    'PathLike', 'TMP_TAG', 'tmp_path_for', 'is_tmp_name', 'remove_tmp_files',
    'atomic_write', 'atomic_write_text', 'atomic_write_json', 'fsync_dir',
    'sha256_file'
]


# --------------------------------------------------------------------------
# temporary names
# --------------------------------------------------------------------------
def tmp_path_for(path: PathLike) -> str:
    """Temporary sibling of ``path``: ``<dir>/.<name>.tmp-<pid>``.

    Args:
        path (str | PathLike): The final path (a file or a folder).

    Returns:
        str: The temporary path, in the same folder, unique per process.
    """
    path = os.fspath(path)
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}{TMP_TAG}{os.getpid()}')


def is_tmp_name(name: str) -> bool:
    """Whether a file name is a temporary name of :func:`tmp_path_for`.

    Args:
        name (str): A base name (no folder).
    """
    return name.startswith('.') and TMP_TAG in name


def remove_tmp_files(folder: PathLike) -> int:
    """Delete the temporary files a crashed writer left in ``folder``.

    Only call it for a folder no other live process writes into.

    Args:
        folder (str | PathLike): The folder; a missing one holds nothing.

    Returns:
        int: How many were removed.
    """
    folder = os.fspath(folder)
    if not osp.isdir(folder):
        return 0
    names = [n for n in os.listdir(folder) if is_tmp_name(n)]
    for name in names:
        os.remove(osp.join(folder, name))
    return len(names)


# --------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------
def atomic_write(path: PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Write a file completely or not at all.

    ``write(f)`` fills a temporary binary file in the same folder, which is
    fsync'ed and renamed to ``path`` with ``os.replace``. On an error the
    temporary file is removed (a hard crash may leave it: its name marks it,
    see :func:`is_tmp_name`).

    Args:
        path (str | PathLike): The final path.
        write (Callable[[IO[bytes]], Any]): Writes the content.

    Raises:
        OSError: If the folder is not writable; whatever ``write`` raises
            propagates too.
    """
    path = os.fspath(path)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`atomic_write`).

    Args:
        path (str | PathLike): The final path.
        text (str): The whole content.
    """
    atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def atomic_write_json(path: PathLike, data: Any) -> None:
    """Write JSON (indent 1, UTF-8, trailing newline) atomically.

    Args:
        path (str | PathLike): The final path.
        data (Any): A JSON-serialisable value.

    Raises:
        TypeError: If ``data`` is not JSON-serialisable (nothing is written).
    """
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) +
                      '\n')


def fsync_dir(path: PathLike) -> None:
    """Flush a folder's entries to disk (after a rename into it).

    Best effort: a no-op outside POSIX, where folders cannot be opened.

    Args:
        path (str | PathLike): The folder.
    """
    if os.name != 'posix':
        return
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# hashes
# --------------------------------------------------------------------------
def sha256_file(path: PathLike, block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes.

    Args:
        path (str | PathLike): The file.
        block (int): Bytes read at a time. Defaults to 1 MiB.

    Returns:
        str: 64 lowercase hex digits.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for data in iter(lambda: f.read(block), b''):
            digest.update(data)
    return digest.hexdigest()
