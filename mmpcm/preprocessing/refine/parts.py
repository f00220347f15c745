"""Resumable part files of a SynC run (``<work>/parts/``).

A part is one chunk of queries' finished result of one stage (``i2t`` or
``t2i``), saved as ``<stage>_<chunk:06d>.npz``, so an interrupted run
resumes where it stopped and ends with the same bytes. ``settings.json``
records the fingerprint, a sha256 of the search settings and the input
arrays (:func:`fingerprint`); every part holds it too, and parts of another
fingerprint are deleted and computed anew, never mixed with this run's.
The embedding caches (:data:`SENTENCES`, and the retrieval model's
``IMAGES_CACHE`` and ``TEXTS_CACHE``) share the folder but are keyed on
their own. Every file is written atomically (a temporary file renamed into
place; left-over temporary files are removed on open), so a part is either
whole or absent.
"""
import hashlib
import json
import logging
import os
import os.path as osp
from typing import Any, Callable, Dict, Optional

import numpy as np

from mmpcm.datasets.feature_store.pairing import write_npz_deterministic
from mmpcm.utils.fileio import (atomic_write, atomic_write_json,
                                remove_tmp_files)

logger = logging.getLogger(__name__)

__all__ = ['PARTS_DIR', 'SENTENCES', 'IMAGES_CACHE', 'TEXTS_CACHE',
           'PartHook', 'Parts', 'fingerprint']

PARTS_DIR = 'parts'
_PARTS_SETTINGS = 'settings.json'
SENTENCES = 'sentences.npz'
IMAGES_CACHE = 'retrieval_images.npz'
TEXTS_CACHE = 'retrieval_texts.npz'
_CACHES = (SENTENCES, IMAGES_CACHE, TEXTS_CACHE)
"""Embedding caches of ``parts/``, keyed on their own, not chunk parts."""

PartHook = Callable[[str], None]


class Parts:
    """The part files of one run under ``<work>/parts`` (or none).

    ``settings.json`` records the search settings and a sha256 of the input
    arrays (the fingerprint); every part file holds the fingerprint too.
    Parts of another fingerprint are deleted and computed anew, never
    mixed with this run's. ``method`` names the method in
    ``settings.json``.
    """

    def __init__(self, work_dir: Optional[str], fingerprint: str,
                 settings: Dict[str, Any], on_part: Optional[PartHook],
                 method: str) -> None:
        self.folder = (osp.join(work_dir, PARTS_DIR)
                       if work_dir is not None else None)
        self.fingerprint = fingerprint
        self.on_part = on_part
        self.reused = 0
        if self.folder is None:
            return
        os.makedirs(self.folder, exist_ok=True)
        remove_tmp_files(self.folder)
        path = osp.join(self.folder, _PARTS_SETTINGS)
        recorded = None
        if osp.isfile(path):
            try:
                with open(path, encoding='utf-8') as f:
                    recorded = json.load(f).get('fingerprint')
            except (OSError, ValueError, AttributeError):
                recorded = None
        if recorded != fingerprint:
            stale = [n for n in os.listdir(self.folder)
                     if n.endswith('.npz') and n not in _CACHES]
            if stale:
                logger.warning(
                    '%s: %d part files were made from other settings or '
                    'inputs; computing them anew', self.folder, len(stale))
            for name in stale:
                os.remove(osp.join(self.folder, name))
            atomic_write_json(path, dict(fingerprint=fingerprint,
                                         settings=settings, method=method))

    def path(self, stage: str, chunk: int) -> Optional[str]:
        if self.folder is None:
            return None
        return osp.join(self.folder, f'{stage}_{chunk:06d}.npz')

    def load(self, stage: str, chunk: int) -> Optional[Dict[str, np.ndarray]]:
        """A finished part's arrays, or None (missing, damaged, or of
        another fingerprint)."""
        path = self.path(stage, chunk)
        if path is None or not osp.isfile(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: np.asarray(data[k]) for k in data.files}
        except (OSError, ValueError, KeyError) as err:
            logger.warning('%s: unreadable (%s); computing it anew', path,
                           err)
            return None
        if str(arrays.pop('fingerprint', '')) != self.fingerprint:
            return None
        self.reused += 1
        return arrays

    def save(self, stage: str, chunk: int,
             arrays: Dict[str, np.ndarray]) -> None:
        path = self.path(stage, chunk)
        if path is None:
            return
        data = dict(arrays, fingerprint=np.array(self.fingerprint))
        atomic_write(path, lambda f: write_npz_deterministic(f, data))
        if self.on_part is not None:
            self.on_part(path)


def fingerprint(settings: Dict[str, Any], *arrays: np.ndarray) -> str:
    """sha256 of the search settings and the input arrays' bytes."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for array in arrays:
        digest.update(repr((array.shape, array.dtype.str)).encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast('B'))
    return digest.hexdigest()
