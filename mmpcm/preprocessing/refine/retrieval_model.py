"""SynC's retrieval embeddings computed with an open_clip model.

SynC (Kim et al., ACM MM 2025, arXiv 2507.18616) retrieves with SigLIP2
(open_clip ``ViT-B-16-SigLIP2-256``) by default. Its two searches need only
each image's global embedding and each caption's text embedding, which
every open_clip model gives through ``encode_image`` and ``encode_text``
(patch tokens, which the feature extraction needs and cannot take from a
timm image tower, are not needed here). :func:`retrieval_model_embeds`
embeds a store's images (``record['image']``, relative to the generation
folder) and captions (normalised as the store's CLIP scores were, its
``clip_score_text``) and caches both under ``<out>/parts/`` keyed by the
model's identity, so a rerun reads them back instead of recomputing.

open_clip and torch are imported only when a model is loaded.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from mmpcm.datasets.feature_store import RECORDS_FILE, FeatureStore
from mmpcm.datasets.feature_store.pairing import write_npz_deterministic
from mmpcm.utils.cli import InputError, MissingInputError
from mmpcm.utils.fileio import atomic_write, sha256_file
from .parts import IMAGES_CACHE, TEXTS_CACHE
from .sentence import l2_normalize

__all__ = ['RETRIEVAL_MODEL_SOURCE', 'require_captions', 'clip_captions',
           'model_identity', 'retrieval_model_embeds']

RETRIEVAL_MODEL_SOURCE = 'retrieval_model'
"""``settings.retrieval.source`` of a pairing retrieved with a model."""
_LOCAL_DIR = 'local-dir:'
_WEIGHT_SUFFIXES = ('.pt', '.pth', '.bin', '.safetensors', '.npz')

PartHook = Callable[[str], None]


def require_captions(store: FeatureStore) -> List[str]:
    """Every caption of the store.

    Raises:
        InputError: If a record has no caption (naming its records file
            and line, and how many lack one).
    """
    captions = store.captions()
    missing = [i for i, c in enumerate(captions) if not isinstance(c, str)]
    if missing:
        shard, row = store.locate(missing[0])
        raise InputError(
            store.shard_path(shard, RECORDS_FILE),
            f'line {row + 1}: no caption ({len(missing)} items of the store '
            'have none); SynC re-pairs captions',
            'refine a store extracted from captioned synthetic images')
    return captions


def clip_captions(store: FeatureStore) -> Tuple[List[str], Optional[str]]:
    """The captions as the store's CLIP text encoder saw them.

    The store's ``clip_score_text`` names the normalisation: that of
    :func:`~mmpcm.preprocessing.extraction.normalize_caption_for_clip`
    (what the extraction tool writes), or None for captions as written.

    Returns:
        tuple[list[str], str | None]: The captions and the normalisation.

    Raises:
        InputError: If a caption is missing or ``clip_score_text`` names a
            normalisation mmpcm does not know.
    """
    from mmpcm.preprocessing.extraction.clip_model import (
        CLIP_SCORE_TEXT, normalize_caption_for_clip)
    captions = require_captions(store)
    how = store.clip_score_text
    if how is None:
        return captions, None
    if how != CLIP_SCORE_TEXT:
        raise InputError(
            store.meta_path, f'clip_score_text is {how!r}, a caption '
            f'normalisation mmpcm does not know (only {CLIP_SCORE_TEXT!r} '
            'or none)', 're-extract the store with tools/data/'
            'extract_features.py')
    return [normalize_caption_for_clip(c) for c in captions], how


def _is_local_file(pretrained: str) -> bool:
    return (osp.sep in pretrained or osp.isfile(pretrained)
            or pretrained.endswith(_WEIGHT_SUFFIXES))


def model_identity(name: str, pretrained: Optional[str]) -> Dict[str, Any]:
    """Who embeds: name, pretrained as given, and the sha256 of local
    weights (a weight file, or every file of a ``local-dir:`` folder), so
    retrained weights under the same name are another model.

    Raises:
        MissingInputError: If a local weight file or folder is missing.
        InputError: If ``pretrained`` is given with a ``local-dir:`` name
            (open_clip would ignore it).
    """
    identity: Dict[str, Any] = dict(model=name, pretrained=pretrained)
    if name.startswith(_LOCAL_DIR):
        folder = osp.expanduser(name[len(_LOCAL_DIR):])
        if pretrained is not None:
            raise InputError(
                '--retrieval-pretrained', f'{name} loads the weights of its '
                'folder; open_clip ignores pretrained for local-dir: models',
                'leave --retrieval-pretrained out')
        if not osp.isfile(osp.join(folder, 'open_clip_config.json')):
            raise MissingInputError(
                folder, 'no open_clip_config.json: not an open_clip '
                'local-dir model folder', 'give a folder holding '
                'open_clip_config.json and the weights')
        digest = hashlib.sha256()
        for entry in sorted(os.listdir(folder)):
            path = osp.join(folder, entry)
            if osp.isfile(path):
                digest.update(f'{entry}\0{sha256_file(path)}\n'.encode())
        identity['weights_sha256'] = digest.hexdigest()
    elif pretrained is not None and _is_local_file(pretrained):
        if not osp.isfile(pretrained):
            raise MissingInputError(
                pretrained, f'no such weight file (for open_clip model '
                f'{name!r})', 'check --retrieval-pretrained')
        identity['weights_sha256'] = sha256_file(pretrained)
    return identity


def _key(identity: Dict[str, Any], kind: str, rows: Sequence[str]) -> str:
    digest = hashlib.sha256(json.dumps(dict(identity, kind=kind),
                                       sort_keys=True).encode())
    for row in rows:
        digest.update(row.encode('utf-8') + b'\n')
    return digest.hexdigest()


def _read_cache(path: str, key: str, rows: int) -> Optional[np.ndarray]:
    if not osp.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data['key']) != key:
                return None
            embeds = np.asarray(data['embeds'])
    except (OSError, ValueError, KeyError):
        return None
    return embeds if embeds.ndim == 2 and len(embeds) == rows else None


def _write_cache(path: str, key: str, embeds: np.ndarray,
                 on_part: Optional[PartHook]) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    atomic_write(path, lambda f: write_npz_deterministic(
        f, dict(embeds=embeds, key=np.array(key))))
    if on_part is not None:
        on_part(path)


def _image_paths(store: FeatureStore, image_root: str
                 ) -> Tuple[List[str], List[Tuple[str, int, Any]]]:
    """Each record's image (relative, as recorded) and where it is
    recorded (records file, line, image_id)."""
    rel, where = [], []
    for path, line, record in store.iter_records():
        image = record.get('image')
        if not isinstance(image, str) or not image:
            raise InputError(
                path, f'line {line}: no image path (record key "image") '
                f'for image_id {record.get("image_id")!r}; embedding the '
                'images with --retrieval-model needs it', 'extract the '
                'store with tools/data/extract_features.py --generated, '
                'which records each image file, or use --retrieval-store')
        rel.append(image)
        where.append((path, line, record.get('image_id')))
    return rel, where


class _Model:
    """An open_clip model, its eval preprocess and tokenizer, on a device."""

    def __init__(self, name: str, pretrained: Optional[str],
                 device: Optional[str]) -> None:
        import open_clip
        import torch
        if device is None:
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        self.torch = torch
        self.device = torch.device(device)
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained)
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(name)

    def images(self, paths: Sequence[str], where: Sequence[Tuple],
               batch_size: int, progress: bool,
               num_threads: Optional[int] = None) -> np.ndarray:
        """``(M, D)`` L2-normalised image embeddings, in ``paths`` order.

        Images are read and preprocessed by a thread pool one batch ahead
        of the model (decoding overlaps the forward pass); on CUDA the
        forward pass runs under float16 autocast.
        """
        from concurrent.futures import ThreadPoolExecutor

        from tqdm import tqdm

        from mmpcm.datasets.transforms import ImageLoadError, load_image
        torch = self.torch

        def load(i: int):
            try:
                image = load_image(paths[i])
            except ImageLoadError as err:
                records, line, image_id = where[i]
                raise InputError(
                    paths[i], f'{err.reason} (item {i}, image_id '
                    f'{image_id!r}, {records} line {line})',
                    'check --image-root (the generation folder the '
                    'store\'s "image" paths are relative to)') from None
            return self.preprocess(image)  # (3, S, S)

        threads = num_threads or min(8, os.cpu_count() or 1)
        cuda = self.device.type == 'cuda'
        out = []
        pool = ThreadPoolExecutor(max_workers=threads)
        try:
            def submit(start: int) -> list:
                stop = min(start + batch_size, len(paths))
                return [pool.submit(load, i) for i in range(start, stop)]

            pending = submit(0)
            with tqdm(total=len(paths), desc='SynC retrieval images',
                      unit='img', disable=not progress,
                      dynamic_ncols=True) as bar, torch.no_grad(), \
                    torch.autocast('cuda', dtype=torch.float16,
                                   enabled=cuda):
                for start in range(0, len(paths), batch_size):
                    batch = [f.result() for f in pending]
                    pending = submit(start + batch_size)
                    pixels = torch.stack(batch).to(
                        self.device, non_blocking=True)  # (B, 3, S, S)
                    embeds = self.model.encode_image(pixels)  # (B, D)
                    out.append(embeds.float().cpu().numpy())
                    bar.update(len(batch))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return l2_normalize(np.concatenate(out))

    def texts(self, captions: Sequence[str], batch_size: int,
              progress: bool) -> np.ndarray:
        from tqdm import tqdm
        torch = self.torch
        out = []
        with tqdm(total=len(captions), desc='SynC retrieval captions',
                  unit='caption', disable=not progress,
                  dynamic_ncols=True) as bar, torch.no_grad(), \
                torch.autocast('cuda', dtype=torch.float16,
                               enabled=self.device.type == 'cuda'):
            for start in range(0, len(captions), batch_size):
                batch = list(captions[start:start + batch_size])
                tokens = self.tokenizer(batch).to(self.device)  # (B, ctx)
                embeds = self.model.encode_text(tokens)  # (B, D)
                out.append(embeds.float().cpu().numpy())
                bar.update(len(batch))
        return l2_normalize(np.concatenate(out))


def retrieval_model_embeds(store: FeatureStore,
                           out_dir: str,
                           model_name: str,
                           pretrained: Optional[str],
                           image_root: str,
                           batch_size: int = 256,
                           device: Optional[str] = None,
                           progress: bool = True,
                           on_part: Optional[PartHook] = None,
                           parts_dir: str = 'parts'
                           ) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """The store's images and captions embedded by an open_clip model.

    Images are read with :func:`~mmpcm.datasets.transforms.load_image`
    from ``image_root / record['image']`` and go through the model's own
    eval preprocess; captions are normalised as the store's CLIP text
    embeddings were (:func:`clip_captions`). Both are cached in
    ``<out_dir>/<parts_dir>/`` (:data:`IMAGES_CACHE`, :data:`TEXTS_CACHE`)
    with a sha256 of the model identity (:func:`model_identity`) and the
    image paths (with ``image_root`` made absolute) or captions; a rerun
    whose keys match reads them back without loading the model. The
    cached image embeddings are keyed by path, not by file contents.

    Args:
        store (FeatureStore): The store (records with ``image`` and
            ``caption``).
        out_dir (str): The pairing's output folder.
        model_name (str): open_clip model name (``'ViT-B-16-SigLIP2-256'``)
            or ``'local-dir:<folder>'``.
        pretrained (str, optional): open_clip pretrained tag or a local
            weight file (None: random weights, or the local-dir folder's).
        image_root (str): The generation folder the ``image`` paths are
            relative to.
        batch_size (int): Images / captions per forward pass.
        device (str, optional): None: cuda when available, else cpu.
        progress (bool): tqdm bars.
        on_part (Callable[[str], None], optional): Called with each cache
            file's path once it is written.
        parts_dir (str): Sub-folder of ``out_dir`` for the caches.

    Returns:
        tuple: ``(M, D)`` image and ``(P, D)`` caption embeddings
        (float32, unit rows) and the model identity dict
        (:func:`model_identity`).

    Raises:
        InputError: If a record lacks its image path or caption, an image
            cannot be read (naming the file, the item and its records
            line), ``image_root`` is not a folder, or ``pretrained`` is
            given for a ``local-dir:`` model.
        MissingInputError: If local weights are missing.
    """
    if not osp.isdir(image_root):
        raise MissingInputError(
            image_root, 'no such folder (--image-root: the generation '
            'folder the store\'s "image" paths are relative to)',
            'give the folder the store was extracted from (--generated)')
    identity = model_identity(model_name, pretrained)
    captions, _ = clip_captions(store)
    rel, where = _image_paths(store, image_root)
    root = osp.abspath(image_root)
    folder = osp.join(out_dir, parts_dir)
    image_key = _key(identity, 'images', [root] + rel)
    text_key = _key(identity, 'texts', captions)
    image_path = osp.join(folder, IMAGES_CACHE)
    text_path = osp.join(folder, TEXTS_CACHE)
    images = _read_cache(image_path, image_key, len(rel))
    texts = _read_cache(text_path, text_key, len(captions))
    model = None
    if images is None or texts is None:
        model = _Model(model_name, pretrained, device)
    if texts is None:
        texts = model.texts(captions, batch_size, progress)  # (P, D)
        _write_cache(text_path, text_key, texts, on_part)
    if images is None:
        paths = [osp.join(image_root, r) for r in rel]
        images = model.images(paths, where, batch_size, progress)  # (M, D)
        _write_cache(image_path, image_key, images, on_part)
    return images, texts, identity
