"""A refined caption-image pairing of a feature store, on disk.

SynC (Kim et al., "SynC: Synthetic Image Caption Dataset Refinement with
One-to-many Mapping for Zero-shot Image Captioning", ACM MM 2025,
arXiv 2507.18616) re-pairs each caption of a synthetic corpus with the
synthetic image that suits it best and drops the worst pairs;
:mod:`mmpcm.preprocessing.refine` computes it. This module is the file
format of its result, readable with numpy and json alone (no pickle)::

    <folder>/pairing.npz    # caption_idx (P,) int64, image_idx (P,) int64,
                            # clip_score (P,) float32, cycle_score (P,) float32
    <folder>/pairing.json   # settings, the store refined, counts, and the
                            # sha256 of pairing.npz; written last

Row ``p`` of the arrays is one training pair: the caption of store row
``caption_idx[p]`` trained on the features of store row ``image_idx[p]``;
``clip_score[p]`` is the raw cosine between that image's global embedding
and the caption's CLIP text embedding (what the CXE loss weights by),
``cycle_score[p]`` SynC's quality of the pair. Rows are sorted by
``caption_idx``; a caption appears at most once, an image may serve several
captions. pairing.json's presence means the folder is complete.

Numpy and the standard library only: :mod:`mmpcm.datasets` sits below
:mod:`mmpcm.preprocessing`.
"""
import io
import json
import os
import os.path as osp
import zipfile
from typing import Any, Dict, IO, NamedTuple, Optional

import numpy as np

from mmpcm.utils.cli import InputError, MissingInputError
from mmpcm.utils.fileio import (PathLike, atomic_write, atomic_write_json,
                                fsync_dir, sha256_file)
from .meta import META_FILE

__all__ = [
    'Pairing', 'save_pairing', 'load_pairing', 'store_meta_sha256',
    'write_npz_deterministic',
    'PAIRING_NPZ', 'PAIRING_JSON', 'PAIRING_FORMAT', 'PAIRING_VERSION'
]

PAIRING_NPZ = 'pairing.npz'
PAIRING_JSON = 'pairing.json'
PAIRING_FORMAT = 'mmpcm-pairing'
PAIRING_VERSION = 1
_ARRAYS = {  # name -> dtype
    'caption_idx': np.dtype('int64'),
    'image_idx': np.dtype('int64'),
    'clip_score': np.dtype('float32'),
    'cycle_score': np.dtype('float32'),
}
_REMAKE = ('make it again with tools/data/refine_pairs.py STORE --out '
           'FOLDER (a rerun resumes from the finished parts)')
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
"""Fixed time stamp of every member of the .npz files written here, so that
the same arrays always give the same bytes."""


class Pairing(NamedTuple):
    """A refined pairing: which store image each kept caption trains on.

    Attributes:
        caption_idx (np.ndarray): ``(P, )`` int64, store row of the caption,
            ascending, unique.
        image_idx (np.ndarray): ``(P, )`` int64, store row whose image
            features the pair trains on.
        clip_score (np.ndarray): ``(P, )`` float32, raw cosine between that
            image's global embedding and the caption's CLIP text embedding.
        cycle_score (np.ndarray): ``(P, )`` float32, SynC's cycle score of
            the pair (cosine of sentence embeddings, in [-1, 1]).
        meta (dict): ``'settings'`` (how it was made) and ``'store'``
            (``root``, ``num_items``, ``meta_sha256`` of the store refined);
            after :func:`load_pairing`, all of pairing.json (with
            ``'counts'`` and ``'npz_sha256'``).
    """
    caption_idx: np.ndarray  # (P, ) int64
    image_idx: np.ndarray  # (P, ) int64
    clip_score: np.ndarray  # (P, ) float32
    cycle_score: np.ndarray  # (P, ) float32
    meta: Dict[str, Any]

    @property
    def num_pairs(self) -> int:
        """P, the number of pairs (``len()`` of a Pairing is its 5
        fields, as of any NamedTuple)."""
        return int(self.caption_idx.shape[0])

    @property
    def num_repaired(self) -> int:
        """Pairs whose image is not the caption's own (another row)."""
        return int((self.caption_idx != self.image_idx).sum())


def write_npz_deterministic(f: IO[bytes], arrays: Dict[str, np.ndarray]
                            ) -> None:
    """Write arrays as an uncompressed .npz with fixed member time stamps.

    The same layout as ``np.savez`` (one ``<name>.npy`` member per array,
    read back by ``np.load(..., allow_pickle=False)``), but byte-identical
    for identical arrays: ``np.savez`` stamps each member with the current
    time.

    Args:
        f (IO[bytes]): An open binary file.
        arrays (dict[str, np.ndarray]): Name -> array (no object dtype).
    """
    with zipfile.ZipFile(f, mode='w', compression=zipfile.ZIP_STORED,
                         allowZip64=True) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(f'{name}.npy', date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def store_meta_sha256(root: PathLike) -> str:
    """sha256 of a store's meta.json, which a pairing records."""
    return sha256_file(osp.join(os.fspath(root), META_FILE))


def _counts(pairing: Pairing, num_items: int) -> Dict[str, int]:
    return dict(pairs_in=num_items, kept=pairing.num_pairs,
                dropped=num_items - pairing.num_pairs,
                repaired=pairing.num_repaired)


def save_pairing(pairing: Pairing, folder: PathLike) -> str:
    """Write ``<folder>/pairing.npz``, then ``<folder>/pairing.json``.

    Both atomically (temporary file, fsync, rename); pairing.json last, so
    its presence means the folder is complete. The .npz bytes depend only on
    the arrays.

    Args:
        pairing (Pairing): Its ``meta`` must hold ``'store'`` with ``root``,
            ``num_items`` and ``meta_sha256``, and ``'settings'`` (a dict);
            other keys are written too (``counts``, ``npz_sha256``,
            ``format`` and ``version`` are set here).
        folder (str | PathLike): Created when missing.

    Returns:
        str: The path of pairing.json.

    Raises:
        ValueError: If the arrays or ``meta`` are malformed (a caller's
            mistake).
    """
    folder = os.fspath(folder)
    store = pairing.meta.get('store')
    if not isinstance(store, dict) or not {
            'root', 'num_items', 'meta_sha256'} <= set(store):
        raise ValueError('pairing.meta["store"] must hold root, num_items '
                         f'and meta_sha256; got {store!r}')
    if not isinstance(pairing.meta.get('settings'), dict):
        raise ValueError('pairing.meta["settings"] must be a dict')
    arrays = {name: np.ascontiguousarray(getattr(pairing, name), dtype)
              for name, dtype in _ARRAYS.items()}
    problem = _check_arrays(arrays, int(store['num_items']))
    if problem:
        raise ValueError(f'cannot save the pairing: {problem}')
    os.makedirs(folder, exist_ok=True)
    npz = osp.join(folder, PAIRING_NPZ)
    json_path = osp.join(folder, PAIRING_JSON)
    if osp.exists(json_path):  # being replaced: not complete meanwhile
        os.remove(json_path)
    atomic_write(npz, lambda f: write_npz_deterministic(f, arrays))
    meta = dict(pairing.meta)
    meta.update(format=PAIRING_FORMAT, version=PAIRING_VERSION,
                counts=_counts(pairing, int(store['num_items'])),
                npz_sha256=sha256_file(npz))
    atomic_write_json(json_path, meta)
    fsync_dir(folder)
    return json_path


def _check_arrays(arrays: Dict[str, np.ndarray], num_items: int
                  ) -> Optional[str]:
    """What is wrong with the arrays of a pairing (None: nothing)."""
    lengths = {name: a.shape for name, a in arrays.items()}
    if any(a.ndim != 1 for a in arrays.values()) or len(
            {a.shape[0] for a in arrays.values()}) != 1:
        return f'arrays must be 1-d of one length, found shapes {lengths}'
    for name, dtype in _ARRAYS.items():
        if arrays[name].dtype != dtype:
            return f'{name} is {arrays[name].dtype}, expected {dtype}'
    for name in ('caption_idx', 'image_idx'):
        a = arrays[name]
        if a.size and (a.min() < 0 or a.max() >= num_items):
            return (f'{name} holds rows outside [0, {num_items}) '
                    f'(min {a.min()}, max {a.max()})')
    captions = arrays['caption_idx']
    if captions.size > 1 and not (np.diff(captions) > 0).all():
        return 'caption_idx is not strictly ascending (a repeated caption?)'
    if captions.size > num_items:
        return f'{captions.size} pairs for a store of {num_items} items'
    for name in ('clip_score', 'cycle_score'):
        a = arrays[name]
        if a.size and not (np.isfinite(a).all() and np.abs(a).max() <= 1.01):
            return f'{name} holds values that are not cosines'
    return None


def load_pairing(folder: PathLike, store: Optional[Any] = None) -> Pairing:
    """Read and check a pairing written by :func:`save_pairing`.

    Args:
        folder (str | PathLike): The folder holding pairing.json and
            pairing.npz.
        store (FeatureStore, optional): The store it is used with; then its
            ``num_items`` and the sha256 of its meta.json must match what
            pairing.json records.

    Returns:
        Pairing: The arrays, and all of pairing.json as ``meta``.

    Raises:
        MissingInputError: If the folder, pairing.json or pairing.npz is
            missing (a ``FileNotFoundError``).
        InputError: If pairing.json is not valid, pairing.npz's sha256
            differs from the recorded one, the arrays are malformed, or the
            pairing was made for another store (a ``ValueError``); the
            message names the file.
    """
    folder = os.fspath(folder)
    json_path = osp.join(folder, PAIRING_JSON)
    npz = osp.join(folder, PAIRING_NPZ)
    if not osp.isfile(json_path):
        remedy = _REMAKE if store is None else (
            f'make it with tools/data/refine_pairs.py {store.root} --out '
            f'{folder} (a rerun resumes from the finished parts)')
        raise MissingInputError(
            json_path, 'missing: no finished pairing in this folder (a run '
            'that did not finish leaves no pairing.json)', remedy)
    try:
        with open(json_path, encoding='utf-8') as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(json_path, f'cannot be read as JSON ({err})',
                         _REMAKE) from None
    store_ref = meta.get('store') if isinstance(meta, dict) else None
    if (not isinstance(meta, dict) or meta.get('format') != PAIRING_FORMAT
            or meta.get('version') != PAIRING_VERSION
            or not isinstance(meta.get('npz_sha256'), str)
            or not isinstance(store_ref, dict)
            or not isinstance(store_ref.get('num_items'), int)):
        raise InputError(
            json_path, f'not a {PAIRING_FORMAT} version {PAIRING_VERSION} '
            'file with "npz_sha256" and "store.num_items"', _REMAKE)
    if not osp.isfile(npz):
        raise MissingInputError(npz, f'missing, but {json_path} lists it',
                                _REMAKE)
    digest = sha256_file(npz)
    if digest != meta['npz_sha256']:
        raise InputError(
            npz, f'sha256 is {digest}, {json_path} records '
            f'{meta["npz_sha256"]}: the file was changed or damaged after '
            'it was written', _REMAKE)
    arrays = _read_npz(npz)
    problem = _check_arrays(arrays, store_ref['num_items'])
    if problem:
        raise InputError(npz, problem, _REMAKE)
    if store is not None:
        _check_store(json_path, store_ref, store)
    return Pairing(meta=meta, **arrays)


def _read_npz(npz: str) -> Dict[str, np.ndarray]:
    try:
        with np.load(npz, allow_pickle=False) as data:
            found = set(data.files)
            missing = sorted(set(_ARRAYS) - found)
            if missing:
                raise InputError(npz, f'has no array(s) {missing} (found '
                                 f'{sorted(found)})', _REMAKE)
            return {name: np.asarray(data[name]) for name in _ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(npz, f'cannot be read as .npz ({err})',
                         _REMAKE) from None


def _check_store(json_path: str, recorded: Dict[str, Any],
                 store: Any) -> None:
    """Refuse a pairing made for another store than ``store``."""
    what = (f'the pairing was made for the store {recorded.get("root")!r}, '
            f'not {store.root!r}')
    remedy = ('use the pairing made from this store, or make one: '
              'tools/data/refine_pairs.py STORE --out FOLDER')
    if recorded['num_items'] != len(store):
        raise InputError(
            json_path, f'store.num_items is {recorded["num_items"]}, the '
            f'store has {len(store)} items: {what}', remedy)
    digest = store_meta_sha256(store.root)
    if recorded.get('meta_sha256') != digest:
        raise InputError(
            json_path, f'store.meta_sha256 differs from the sha256 of '
            f'{osp.join(store.root, META_FILE)}: {what} (or the store was '
            'rebuilt since)', remedy)
