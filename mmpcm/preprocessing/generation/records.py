"""The output folder: image paths and files, per-chunk record files.

Layout and completion rules: ``docs/generation_format.md``.
"""
import json
import os
import os.path as osp
import re
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Dict, List, NamedTuple, Optional

import numpy as np
from PIL import Image

from mmpcm.utils.fileio import PathLike, atomic_write, atomic_write_json
from .captions import SkippedLine
from .config import (FORMAT_VERSION, IMAGE_FORMATS, IMAGES_DIR, JPEG_QUALITY,
                     RECORDS_DIR, RECORDS_FORMAT)
from .meta import read_generation_meta

_CHUNK_FILE_RE = re.compile(r'^chunk_(\d{6,})\.json$')

__all__ = [
    'Attempt', 'ItemRecord', 'GenerationSummary', 'image_relpath',
    'chunk_file', 'save_image', 'read_chunk_records', 'write_chunk_records',
    'load_generation_records'
]


class Attempt(NamedTuple):
    """One try at an item: its seed, outcome and pixel std.

    ``result`` is ``'ok'``, ``'nsfw'`` (flagged by the safety checker),
    ``'degenerate'`` (near-constant image) or ``'nonfinite'`` (NaN or inf
    pixels in the pipeline's output).
    """
    seed: int
    result: str
    pixel_std: float


@dataclass
class ItemRecord:
    """What was generated for one caption.

    Args:
        index (int): Caption index (0-based line number).
        caption (str): The caption (prompt).
        status (str): ``'ok'`` or ``'failed'``.
        file (str, optional): Image path relative to the output folder;
            None when failed.
        seed (int, optional): Seed of the kept image; None when failed.
        attempts (list[Attempt]): Every attempt, in order.
        reason (str, optional): Why the item failed (every attempt's
            rejection, counted); None when ok.
        prompt_tokens (int, optional): Tokens of the caption by the
            pipeline's tokenizer, start and end tokens included, before
            any cut; None when the pipeline has no tokenizer (or the record
            predates the field).
        prompt_truncated (bool): The caption had more tokens than the text
            encoder takes (``tokenizer.model_max_length``) and was cut: the
            image shows ``prompt_used``, not the whole caption.
        prompt_used (str, optional): When cut, the caption's leading words
            whose tokens all fit (the encoder may also have seen the first
            tokens of the next word); None otherwise.
    """
    index: int
    caption: str
    status: str
    file: Optional[str]
    seed: Optional[int]
    attempts: List[Attempt] = field(default_factory=list)
    reason: Optional[str] = None
    prompt_tokens: Optional[int] = None
    prompt_truncated: bool = False
    prompt_used: Optional[str] = None

    @property
    def retry_on_rerun(self) -> bool:
        """Whether a rerun tries this item again: it failed, and at least
        one attempt had non-finite pixels (a numerical fault)."""
        return self.status == 'failed' and any(
            a.result == 'nonfinite' for a in self.attempts)

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data['attempts'] = [a._asdict() for a in self.attempts]
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> 'ItemRecord':
        attempts = [Attempt(**a) for a in data['attempts']]
        return cls(**{**data, 'attempts': attempts})


@dataclass
class GenerationSummary:
    """What one rank did in one run.

    Args:
        assigned (int): Captions of this rank's chunks.
        already_done (int): Of those, finished by an earlier run.
        generated (int): Images written in this run.
        regenerated (int): Of those, items that needed more than one attempt.
        failed (list[int]): Indices recorded as failed in this run.
        skipped_lines (list[SkippedLine]): Unusable caption-file lines.
        truncated_prompts (int): Captions of this run (ok or failed) longer
            than the text encoder's context, cut (flagged
            ``prompt_truncated`` in their records).
        retry_on_rerun (list[int]): Of ``failed``, the indices a rerun
            tries again (non-finite pixels).
    """
    assigned: int = 0
    already_done: int = 0
    generated: int = 0
    regenerated: int = 0
    failed: List[int] = field(default_factory=list)
    skipped_lines: List[SkippedLine] = field(default_factory=list)
    truncated_prompts: int = 0
    retry_on_rerun: List[int] = field(default_factory=list)


def image_relpath(index: int, chunk_size: int, image_format: str) -> str:
    """``images/<chunk:06d>/<index:09d>.<ext>`` (relative to the output)."""
    return osp.join(IMAGES_DIR, f'{index // chunk_size:06d}',
                    f'{index:09d}.{image_format}')


def chunk_file(out_dir: str, chunk: int) -> str:
    """``<out>/records/chunk_<chunk:06d>.json``."""
    return osp.join(out_dir, RECORDS_DIR, f'chunk_{chunk:06d}.json')


def save_image(path: str, image: np.ndarray, image_format: str) -> None:
    """Write an ``(H, W, 3)`` uint8 image atomically (JPEG q95 or PNG)."""
    pil = Image.fromarray(image, mode='RGB')
    fmt = IMAGE_FORMATS[image_format]
    options = dict(quality=JPEG_QUALITY) if fmt == 'JPEG' else {}

    def write(f: IO[bytes]) -> None:
        pil.save(f, format=fmt, **options)

    atomic_write(path, write)


def read_chunk_records(path: str, chunk: int) -> Dict[int, ItemRecord]:
    """Read one chunk's record file (an empty dict when there is none)."""
    if not osp.isfile(path):
        return {}
    with open(path, encoding='utf-8') as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f'{path}: not valid JSON ({err})') from None
    if data.get('format') != RECORDS_FORMAT or data.get('chunk') != chunk:
        raise ValueError(f'{path}: not the {RECORDS_FORMAT!r} file of chunk '
                         f'{chunk}')
    records = [ItemRecord.from_dict(item) for item in data['items']]
    return {r.index: r for r in records}


def write_chunk_records(path: str, chunk: int,
                        records: Dict[int, ItemRecord]) -> None:
    items = [records[i].to_dict() for i in sorted(records)]
    atomic_write_json(path, dict(format=RECORDS_FORMAT,
                                 version=FORMAT_VERSION, chunk=chunk,
                                 items=items))


def load_generation_records(out_dir: PathLike) -> Dict[int, ItemRecord]:
    """Every finished item of a generation output folder, by caption index.

    Args:
        out_dir (str | PathLike): The output folder of :func:`generate_images`.

    Returns:
        dict[int, ItemRecord]: Items with status ``'ok'`` or ``'failed'``.

    Raises:
        FileNotFoundError: If the folder has no generation meta.
        ValueError: If a record file is damaged.
    """
    out_dir = os.fspath(out_dir)
    read_generation_meta(out_dir)
    folder = osp.join(out_dir, RECORDS_DIR)
    records: Dict[int, ItemRecord] = {}
    names = sorted(os.listdir(folder)) if osp.isdir(folder) else []
    for name in names:
        match = _CHUNK_FILE_RE.match(name)
        if match:
            records.update(
                read_chunk_records(osp.join(folder, name),
                                   int(match.group(1))))
    return records
