"""The caption file generation reads: one caption per line, indexed by line.

Item ``i`` is line ``i + 1``; skipped lines leave a gap in the indices
(``docs/generation_format.md``).
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional

from mmpcm.utils.cli import InputError
from mmpcm.utils.fileio import PathLike, sha256_file
from ..corpus import SkippedLine, read_text_corpus

logger = logging.getLogger(__name__)

_MAX_REPORTED_LINES = 20

__all__ = ['CaptionItem', 'CaptionFile', 'SkippedLine', 'read_caption_file']


class CaptionItem(NamedTuple):
    """One caption; ``index`` is its 0-based line number in the file."""
    index: int
    caption: str


@dataclass
class CaptionFile:
    """A caption file read by :func:`read_caption_file`.

    Args:
        path (str): The file.
        items (list[CaptionItem]): Usable captions, in line order.
        skipped (list[SkippedLine]): Empty and non-UTF-8 lines.
        num_lines (int): Lines in the file.
        sha256 (str): Hex sha256 of the file's bytes.
    """
    path: str
    items: List[CaptionItem]
    skipped: List[SkippedLine]
    num_lines: int
    sha256: str
    _lookup: Dict[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._lookup = dict(self.items)

    def caption_at(self, index: int) -> Optional[str]:
        """The caption of line ``index + 1`` (None for a skipped line)."""
        return self._lookup.get(index)


def read_caption_file(path: PathLike) -> CaptionFile:
    """Read a caption corpus: one caption per line.

    Bad lines do not stop it: empty lines, lines that are not UTF-8 and
    lines with a NUL byte are skipped and listed with their line numbers
    (and logged). Lines are read and cleaned as every corpus is
    (:func:`~mmpcm.preprocessing.corpus.read_text_corpus`); this adds line
    indices and the file's hash.

    Args:
        path (str | PathLike): The caption file.

    Returns:
        CaptionFile: Usable captions, indexed by 0-based line number.

    Raises:
        FileNotFoundError: If the file does not exist.
        InputError: If the file has no caption at all (empty, only blank or
            unreadable lines), or is not text in a supported encoding.
    """
    corpus = read_text_corpus(path)
    path = os.fspath(path)
    if not corpus.captions:
        raise InputError(
            path, f'no captions in it ({corpus.num_lines} line(s): '
            f'{corpus.num_empty} empty, {corpus.num_invalid} unreadable)',
            'give a text file with one caption per line')
    digest = sha256_file(path)
    items = [CaptionItem(n - 1, c)
             for n, c in zip(corpus.line_numbers, corpus.captions)]
    _report_skipped(corpus.skipped, corpus.num_lines)
    return CaptionFile(path, items, corpus.skipped, corpus.num_lines, digest)


def _report_skipped(skipped: List[SkippedLine], num_lines: int) -> None:
    if not skipped:
        return
    shown = '\n'.join(f'  {s}' for s in skipped[:_MAX_REPORTED_LINES])
    more = len(skipped) - _MAX_REPORTED_LINES
    tail = f'\n  ... and {more} more' if more > 0 else ''
    logger.warning(f'skipped {len(skipped)} of {num_lines} caption lines:\n'
                   f'{shown}{tail}')
