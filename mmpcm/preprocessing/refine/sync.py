"""SynC: re-pair each synthetic caption with the image that suits it best.

Kim et al., "SynC: Synthetic Image Caption Dataset Refinement with
One-to-many Mapping for Zero-shot Image Captioning", ACM MM 2025
(arXiv 2507.18616). The captions of a synthetic corpus are fine, its
generated images often are not, so instead of filtering pairs SynC
re-assigns images:

1. For each caption ``c``, its ``K`` nearest images by text-to-image cosine
   (the candidates).
2. Each candidate image ``j`` retrieves its ``i2t_k`` nearest captions over
   the whole caption pool (image-to-text cosine); the candidate's cycle
   score is the best sentence-embedding cosine between ``c`` and those
   captions (``c`` itself among them scores 1).
3. ``c`` is paired with its best-scoring candidate; that score is the pair's
   quality.
4. The best ``keep_fraction`` of pairs by quality are kept, and each kept
   pair's CLIP score is recomputed from its new image.

The two searches may use another model's embeddings of the same pairs than
the CLIP score (SynC's own default retrieval model is SigLIP2): in
:func:`refine_pairs` the ``clip_embeds`` argument, in :func:`refine_store`
a second feature store of the same images and captions
(``retrieval_store``) or an open_clip model that embeds the store's images
and captions (``retrieval_model``, :mod:`.retrieval_model`).

:func:`refine_pairs` runs it on arrays; :func:`refine_store` on a feature
store, writing a :class:`~mmpcm.datasets.feature_store.Pairing`. With a
work folder, both stages write one part file per chunk of queries
(``<work>/parts/``, :mod:`.parts`), so an interrupted run resumes where it
stopped and ends with the same bytes.
"""
import contextlib
import hashlib
import logging
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from mmpcm.datasets.feature_store import (GLOBAL_FILE, TEXT_FILE,
                                          FeatureStore, Pairing, save_pairing,
                                          store_meta_sha256)
from mmpcm.datasets.feature_store.pairing import write_npz_deterministic
from mmpcm.utils.cli import InputError
from mmpcm.utils.fileio import PathLike, atomic_write
from .parts import PARTS_DIR, SENTENCES, PartHook, Parts, fingerprint
from .retrieval_model import (RETRIEVAL_MODEL_SOURCE, require_captions,
                              retrieval_model_embeds)
from .search import ExactSearchIndex, TopK, require_faiss
from .sentence import (CLIP_TEXT_SOURCE, clip_text_sentence_embeds,
                       encode_sentences, l2_normalize, load_sentence_model)

logger = logging.getLogger(__name__)

__all__ = ['SyncConfig', 'RefineSummary', 'refine_pairs', 'refine_store',
           'pick_candidates', 'METHOD', 'TIE_TOLERANCE']

METHOD = 'SynC (Kim et al., ACM MM 2025, arXiv 2507.18616)'
TIE_TOLERANCE = 1e-6
"""Cycle scores this close count as equal: cos(c, c) of a caption with
itself is 1 up to float32 rounding, which must not decide between two
candidates that both retrieve ``c``."""
_SCORE_BLOCK = 256
"""Captions per block of the cycle-score product (bounds its memory)."""


@dataclass(frozen=True)
class SyncConfig:
    """Settings of SynC (defaults: the paper's).

    Args:
        num_candidates (int): K, candidate images per caption. Defaults to
            15.
        i2t_k (int): Captions each candidate image retrieves for its cycle
            score. Defaults to 2.
        keep_fraction (float): Share of pairs kept, in (0, 1]. Defaults to
            0.9.
        chunk_size (int): Queries per search call and per part file.
            Defaults to 4096.

    Raises:
        ValueError: If a value is out of range.
    """
    num_candidates: int = 15
    i2t_k: int = 2
    keep_fraction: float = 0.9
    chunk_size: int = 4096

    def __post_init__(self) -> None:
        for name in ('num_candidates', 'i2t_k', 'chunk_size'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                    value, (int, np.integer)) or value < 1:
                raise ValueError(f'{name} must be a positive int, got '
                                 f'{value!r}')
        fraction = self.keep_fraction
        if isinstance(fraction, bool) or not isinstance(
                fraction, (int, float)) or not 0 < fraction <= 1:
            raise ValueError('keep_fraction must be in (0, 1], got '
                             f'{fraction!r}')

    def num_kept(self, num_pairs: int) -> int:
        """Pairs kept out of ``num_pairs``: ``keep_fraction * num_pairs``
        rounded half up (0.5 -> 1), computed exactly on the decimal value of
        ``keep_fraction`` (``Fraction(repr(keep_fraction))``), so
        ``0.9 * 10`` keeps 9 and ``0.25 * 10`` keeps 3."""
        exact = Fraction(repr(float(self.keep_fraction))) * num_pairs
        return int(exact + Fraction(1, 2)) if exact else 0

    def search_settings(self) -> Dict[str, int]:
        """The settings the part files depend on (not ``keep_fraction``)."""
        return dict(num_candidates=int(self.num_candidates),
                    i2t_k=int(self.i2t_k), chunk_size=int(self.chunk_size))


@dataclass
class RefineSummary:
    """What :func:`refine_store` did.

    Attributes:
        pairs_in (int): Pairs of the store.
        kept (int): Pairs kept.
        dropped (int): Pairs dropped (lowest cycle scores).
        repaired (int): Kept pairs whose image is another store row than
            the caption's own.
        seconds (float): Wall-clock seconds of the run.
        out_dir (str): Folder holding pairing.npz and pairing.json.
        chunks_reused (int): Part files of earlier runs reused.
    """
    pairs_in: int
    kept: int
    dropped: int
    repaired: int
    seconds: float
    out_dir: str
    chunks_reused: int = 0


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='chunk', disable=not enabled,
                dynamic_ncols=True)


# --------------------------------------------------------------------------
# the two stages
# --------------------------------------------------------------------------
def _searched_chunks(parts: Parts, stage: str, queries: np.ndarray,
                     database: np.ndarray, k: int, size: int, desc: str,
                     progress: bool, use_gpu: Optional[bool],
                     row_shapes: Dict[str, Tuple[int, ...]],
                     finish: Callable[[int, TopK], Dict[str, np.ndarray]],
                     ) -> Iterator[Tuple[int, int, Dict[str, np.ndarray]]]:
    """Yield ``(start, stop, part)`` for each chunk of ``queries``.

    A chunk's part is read back when an earlier run saved it with the
    arrays ``row_shapes`` names, one row per query of the chunk, each row
    of the given shape; otherwise the chunk is searched (top ``k`` of
    ``database``; the index is built on first need), turned into arrays by
    ``finish(start, found)`` and saved before it is yielded.
    """
    index = None
    with _progress(-(-len(queries) // size), desc, progress) as bar:
        for chunk, start in enumerate(range(0, len(queries), size)):
            stop = min(start + size, len(queries))
            done = parts.load(stage, chunk)
            if done is None or any(
                    name not in done or done[name].shape != (stop - start,
                                                             *shape)
                    for name, shape in row_shapes.items()):
                if index is None:
                    index = ExactSearchIndex(database, use_gpu=use_gpu)
                found = index.search(queries[start:stop], k)  # (n, k)
                done = finish(start, found)
                parts.save(stage, chunk, done)
            yield start, stop, done
            bar.update()


def _image_to_text(images: np.ndarray, texts: np.ndarray, cfg: SyncConfig,
                   parts: Parts, progress: bool,
                   use_gpu: Optional[bool]) -> np.ndarray:
    """Stage 1: each image's ``i2t_k`` nearest captions.

    Returns:
        np.ndarray: ``(M, i2t_k)`` int64 caption rows, best first.
    """
    k = min(cfg.i2t_k, len(texts))
    retrieved = np.empty((len(images), k), dtype=np.int64)  # (M, k)
    chunks = _searched_chunks(
        parts, 'i2t', images, texts, k, cfg.chunk_size,
        'SynC 1/2 image->caption', progress, use_gpu, dict(indices=(k, )),
        lambda start, found: dict(indices=found.indices))
    for start, stop, done in chunks:
        retrieved[start:stop] = done['indices']
    return retrieved


def _cycle_scores(queries: np.ndarray, candidates: np.ndarray,
                  retrieved: np.ndarray, sentences: np.ndarray
                  ) -> np.ndarray:
    """The cycle score of every candidate of a block of captions.

    Args:
        queries (np.ndarray): ``(Q, )`` caption rows.
        candidates (np.ndarray): ``(Q, K)`` their candidate image rows.
        retrieved (np.ndarray): ``(M, R)`` each image's retrieved captions.
        sentences (np.ndarray): ``(P, Ds)`` unit sentence embeddings.

    Returns:
        np.ndarray: ``(Q, K)`` float32, the best cosine between each caption
        and its candidate's retrieved captions.
    """
    q, k = candidates.shape
    back = retrieved[candidates].reshape(q, -1)  # (Q, K * R)
    own = sentences[queries]  # (Q, Ds)
    other = sentences[back]  # (Q, K * R, Ds)
    cos = np.einsum('qd,qnd->qn', own, other)  # (Q, K * R)
    return cos.reshape(q, k, -1).max(axis=-1)  # (Q, K)


def pick_candidates(start: int, candidates: np.ndarray,
                    retrieved: np.ndarray, sentences: np.ndarray
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Each caption's best candidate by cycle score (steps 2 and 3).

    Among equal cycle scores (within :data:`TIE_TOLERANCE`) the candidate
    nearer by text-to-image cosine wins (the earlier column), then the
    lower image row (the search's order). Works in blocks of captions, so
    memory stays ``block x K x i2t_k x Ds``.

    Args:
        start (int): Row of the first caption of ``candidates``.
        candidates (np.ndarray): ``(Q, K)`` candidate image rows of
            captions ``start .. start + Q - 1``, nearest first.
        retrieved (np.ndarray): ``(M, i2t_k)`` each image's captions.
        sentences (np.ndarray): ``(P, Ds)`` unit sentence embeddings.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(Q, )`` int64 chosen image rows and
        ``(Q, )`` float32 their cycle scores.
    """
    num = len(candidates)
    best = np.empty(num, dtype=np.int64)  # (Q, )
    score = np.empty(num, dtype=np.float32)  # (Q, )
    for a in range(0, num, _SCORE_BLOCK):
        b = min(a + _SCORE_BLOCK, num)
        cands = candidates[a:b]  # (n, K)
        scores = _cycle_scores(np.arange(start + a, start + b), cands,
                               retrieved, sentences)  # (n, K)
        top = scores.max(axis=1, keepdims=True)  # (n, 1)
        pick = (scores >= top - TIE_TOLERANCE).argmax(axis=1)  # (n, )
        rows = np.arange(b - a)
        best[a:b] = cands[rows, pick]
        score[a:b] = scores[rows, pick]
    return best, score


def _best_images(texts: np.ndarray, images: np.ndarray,
                 sentences: np.ndarray, retrieved: np.ndarray,
                 cfg: SyncConfig, parts: Parts, progress: bool,
                 use_gpu: Optional[bool]) -> Tuple[np.ndarray, np.ndarray]:
    """Stage 2: each caption's candidates, their cycle scores, the best.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(P, )`` int64 best image row and
        ``(P, )`` float32 its cycle score.
    """
    k = min(cfg.num_candidates, len(images))
    best = np.empty(len(texts), dtype=np.int64)  # (P, )
    score = np.empty(len(texts), dtype=np.float32)  # (P, )

    def finish(start: int, found: TopK) -> Dict[str, np.ndarray]:
        chunk_best, chunk_score = pick_candidates(start, found.indices,
                                                  retrieved, sentences)
        return dict(image_idx=chunk_best, cycle_score=chunk_score)

    for start, stop, done in _searched_chunks(
            parts, 't2i', texts, images, k, cfg.chunk_size,
            'SynC 2/2 caption->image', progress, use_gpu,
            dict(image_idx=(), cycle_score=()), finish):
        best[start:stop] = done['image_idx']
        score[start:stop] = done['cycle_score']
    return best, score


# --------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------
def refine_pairs(image_embeds: np.ndarray,
                 text_embeds: np.ndarray,
                 sentence_embeds: np.ndarray,
                 cfg: SyncConfig = SyncConfig(),
                 work_dir: Optional[PathLike] = None,
                 progress: bool = True,
                 use_gpu: Optional[bool] = None,
                 on_part: Optional[PartHook] = None,
                 clip_embeds: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                 retrieval: Optional[Dict[str, Any]] = None) -> Pairing:
    """SynC's re-pairing and selection on embedding arrays.

    Caption ``c`` (row of ``text_embeds``) gets the candidate image (row of
    ``image_embeds``) with the best cycle score; ties (scores within
    :data:`TIE_TOLERANCE`) go to the candidate nearer by text-to-image
    cosine, then to the lower image row. Pairs are
    ranked by cycle score (ties: lower caption row first) and the best
    ``cfg.num_kept(P)`` are kept (``keep_fraction * P`` rounded half up).
    K and ``i2t_k`` larger than the pools are cut to the pool sizes.

    Every array is L2-normalised (in float32) first, so inner products are
    cosines.

    Args:
        image_embeds (np.ndarray): ``(M, D)`` image embeddings of the
            retrieval model (both searches use them).
        text_embeds (np.ndarray): ``(P, D)`` caption embeddings of the same
            model.
        sentence_embeds (np.ndarray): ``(P, Ds)`` sentence embeddings of the
            captions (the cycle score's space).
        cfg (SyncConfig): Settings; defaults are the paper's.
        work_dir (str | PathLike, optional): Where ``parts/`` goes; None:
            nothing is written and nothing resumes.
        progress (bool): tqdm bars on stderr. Defaults to True.
        use_gpu (bool, optional): The faiss search's device (None: a GPU
            when faiss has one).
        on_part (Callable[[str], None], optional): Called with each part
            file's path once it is written.
        clip_embeds (tuple[np.ndarray, np.ndarray], optional): ``(M, Dc)``
            image and ``(P, Dc)`` caption embeddings (same rows as the
            retrieval arrays, any width ``Dc``) the kept pairs'
            ``clip_score`` is computed from. None: the retrieval arrays.
        retrieval (dict, optional): A JSON-able description of where the
            retrieval embeddings come from; part of the parts' fingerprint
            (parts of another source are computed anew, never mixed) and
            recorded as ``meta['settings']['retrieval']``.

    Returns:
        Pairing: Kept pairs sorted by caption row; ``clip_score`` is the
        cosine of ``image_embeds[image_idx]`` and
        ``text_embeds[caption_idx]`` (of ``clip_embeds`` when given);
        ``meta`` holds ``'settings'`` and ``'method'`` (no ``'store'``:
        :func:`refine_store` adds it).

    Raises:
        ValueError: If the arrays' shapes disagree.
        MissingPackageError: If faiss is not installed.
    """
    images = l2_normalize(_rows(image_embeds, 'image_embeds'))  # (M, D)
    texts = l2_normalize(_rows(text_embeds, 'text_embeds'))  # (P, D)
    sentences = l2_normalize(_rows(sentence_embeds,
                                   'sentence_embeds'))  # (P, Ds)
    if images.shape[1] != texts.shape[1]:
        raise ValueError(f'image_embeds have width {images.shape[1]}, '
                         f'text_embeds {texts.shape[1]}: both must come '
                         'from one retrieval model')
    if len(sentences) != len(texts):
        raise ValueError(f'{len(sentences)} sentence embeddings for '
                         f'{len(texts)} captions')
    if not len(images) or not len(texts):
        raise ValueError('refine_pairs needs at least one image and one '
                         'caption')
    if clip_embeds is None:
        clip_images, clip_texts = images, texts
    else:
        clip_images = l2_normalize(_rows(clip_embeds[0],
                                         'clip_embeds[0]'))  # (M, Dc)
        clip_texts = l2_normalize(_rows(clip_embeds[1],
                                        'clip_embeds[1]'))  # (P, Dc)
        if (clip_images.shape[1] != clip_texts.shape[1]
                or len(clip_images) != len(images)
                or len(clip_texts) != len(texts)):
            raise ValueError(
                f'clip_embeds are {clip_images.shape} and '
                f'{clip_texts.shape}: they need one width and the rows of '
                f'image_embeds {images.shape} and text_embeds {texts.shape}')
    settings: Dict[str, Any] = dict(cfg.search_settings())
    if retrieval is not None:
        settings['retrieval'] = retrieval
    parts = Parts(
        os.fspath(work_dir) if work_dir is not None else None,
        fingerprint(settings, images, texts, sentences) if work_dir
        is not None else '', settings, on_part, METHOD)
    retrieved = _image_to_text(images, texts, cfg, parts, progress,
                               use_gpu)  # (M, i2t_k)
    best, quality = _best_images(texts, images, sentences, retrieved, cfg,
                                 parts, progress, use_gpu)  # (P, ) each
    num_pairs = len(texts)
    ranked = np.lexsort((np.arange(num_pairs), -quality))  # (P, ) best first
    kept = np.sort(ranked[:cfg.num_kept(num_pairs)])  # (P', )
    image_idx = best[kept]  # (P', )
    clip_score = np.einsum('nd,nd->n', clip_images[image_idx],
                           clip_texts[kept]).astype(np.float32)  # (P', )
    meta = dict(method=METHOD, settings=asdict(cfg))
    if retrieval is not None:
        meta['settings']['retrieval'] = retrieval
    if parts.folder is not None:
        meta['reused_parts'] = parts.reused  # not saved (see refine_store)
    return Pairing(caption_idx=kept.astype(np.int64), image_idx=image_idx,
                   clip_score=clip_score,
                   cycle_score=quality[kept].astype(np.float32), meta=meta)


def _rows(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f'{name} must be 2-d (rows, width), got shape '
                         f'{array.shape}')
    return array


def _cached_sentence_embeds(store: FeatureStore, out_dir: str,
                            model_name: str, batch_size: int,
                            device: Optional[str],
                            progress: bool) -> np.ndarray:
    """Encode the store's captions once; a rerun reads them back.

    ``<out>/parts/sentences.npz`` holds them with a sha256 of the model name
    and the captions, so a resumed run scores with the same bytes.
    """
    captions = require_captions(store)
    digest = hashlib.sha256(model_name.encode())
    for caption in captions:
        digest.update(caption.encode('utf-8') + b'\n')
    key = digest.hexdigest()
    path = osp.join(out_dir, PARTS_DIR, SENTENCES)
    if osp.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data['key']) == key:
                    return np.asarray(data['embeds'])
        except (OSError, ValueError, KeyError):
            pass
    model = load_sentence_model(model_name, device=device)
    embeds = encode_sentences(captions, model, batch_size=batch_size,
                              progress=progress)  # (P, Ds)
    os.makedirs(osp.dirname(path), exist_ok=True)
    atomic_write(path, lambda f: write_npz_deterministic(
        f, dict(embeds=embeds, key=np.array(key))))
    return embeds


def _text_embeds_required(store: FeatureStore, role: str,
                          remedy: str) -> None:
    if not store.has_text_embeds:
        raise InputError(
            store.meta_path, f'has_text_embeds is false: the {role} holds '
            'no CLIP text embeddings of its captions, which SynC retrieves '
            'captions and candidate images with', remedy)


def _embed_arrays(store: FeatureStore) -> Tuple[np.ndarray, np.ndarray]:
    """The store's ``(M, D)`` global and ``(M, D)`` text embeddings
    (float16), checked to have one width and one row per pair."""
    images = store.load_array(GLOBAL_FILE)  # (M, D) float16
    texts = store.load_array(TEXT_FILE)  # (P, D) float16
    _check_pair_widths(images, texts, store.shard_path(0, TEXT_FILE),
                       're-extract the features with captions into a new '
                       'folder')
    return images, texts


def _check_pair_widths(images: np.ndarray, texts: np.ndarray, where: str,
                       remedy: str) -> None:
    """Retrieval arrays need one width and one row per pair."""
    if texts.shape[1] != images.shape[1] or len(texts) != len(images):
        raise InputError(
            where, f'text embeddings are {texts.shape}, the image '
            f'embeddings {images.shape}: retrieval needs one width and one '
            'row per pair', remedy)


def _open_retrieval_store(root: str, store: FeatureStore,
                          out: str) -> FeatureStore:
    """The retrieval store, checked to hold the training store's pairs.

    Raises:
        MissingInputError: If it or one of its files is missing.
        InputError: If it is the output folder, has no text embeddings, or
            differs from ``store`` in size, or in ``image_id`` or caption
            at some row (the first such row is named).
    """
    if osp.abspath(out) == osp.abspath(root):
        raise InputError(out, 'is the retrieval store folder itself',
                         'write the pairing to a folder of its own')
    other = FeatureStore(root)
    redo = ('extract it from the same images and captions as '
            f'{store.root} (tools/data/extract_features.py OUT --generated '
            'GEN_DIR --model MODEL --pretrained TAG)')
    _text_embeds_required(other, 'retrieval store', redo)
    if len(other) != len(store):
        raise InputError(
            other.meta_path, f'the retrieval store has {len(other)} items, '
            f'the store it retrieves for ({store.root}) {len(store)}: it '
            'must hold the same pairs, row by row', redo)
    mine = store.records
    for item, (path, line, record) in enumerate(other.iter_records()):
        want = mine[item]
        for key in ('image_id', 'caption'):
            if record.get(key) != want.get(key):
                raise InputError(
                    path, f'line {line} (item {item}): {key} '
                    f'{record.get(key)!r}, the store it retrieves for '
                    f'({store.root}) has {want.get(key)!r} there: a '
                    'retrieval store must hold the same pairs, row by row',
                    redo)
    return other


def _retrieval_source(store: FeatureStore,
                      retrieval: Optional[FeatureStore]) -> Dict[str, Any]:
    """The identity of the retrieval embeddings (in the parts'
    fingerprint; pairing.json's ``settings.retrieval`` adds the retrieval
    store's ``root``, which a path spelled otherwise may change)."""
    if retrieval is None:
        clip = store.clip_info
        return dict(source='store', model=clip.model,
                    pretrained=clip.pretrained)
    clip = retrieval.clip_info
    return dict(source='retrieval_store', model=clip.model,
                pretrained=clip.pretrained, embed_dim=clip.embed_dim,
                meta_sha256=store_meta_sha256(retrieval.root))


def _no_empty_folder_left(folder: str):
    """Remove ``folder`` on an error when this run created it and wrote
    nothing into it (empty sub-folders aside); parts written are kept."""

    @contextlib.contextmanager
    def guard():
        existed = osp.isdir(folder)
        try:
            yield
        except BaseException:
            if not existed and osp.isdir(folder):
                for sub, _, _ in sorted(os.walk(folder), reverse=True):
                    try:
                        os.rmdir(sub)  # only empty folders go
                    except OSError:
                        pass
            raise

    return guard()


def refine_store(store_root: PathLike,
                 out_dir: PathLike,
                 cfg: SyncConfig = SyncConfig(),
                 sentence_model: Optional[str] = None,
                 batch_size: int = 256,
                 device: Optional[str] = None,
                 progress: bool = True,
                 on_part: Optional[PartHook] = None,
                 retrieval_store: Optional[PathLike] = None,
                 retrieval_model: Optional[str] = None,
                 retrieval_pretrained: Optional[str] = None,
                 image_root: Optional[PathLike] = None
                 ) -> RefineSummary:
    """Refine a feature store's pairs with SynC and save the pairing.

    Retrieval (both searches) uses the store's own CLIP embeddings
    (``global_embeds.npy`` and ``text_embeds.npy``) or, with
    ``retrieval_store``, those of a second store of the same pairs
    extracted with another model, or, with ``retrieval_model``, an
    open_clip model's ``encode_image`` / ``encode_text`` of the store's
    images (under ``image_root``) and captions (normalised as the store's
    ``clip_score_text`` says), cached in ``<out_dir>/parts/``
    (:func:`~.retrieval_model.retrieval_model_embeds`); each kept pair's
    CLIP score is always the store's own CLIP cosine. The cycle score uses ``sentence_model``
    or, by default, the store's own CLIP text embeddings (offline, no
    model). Parts go to ``<out_dir>/parts/`` and a rerun resumes from
    them; the result is ``<out_dir>/pairing.npz`` and ``pairing.json``
    (see :mod:`mmpcm.datasets.feature_store.pairing`); its
    ``settings.retrieval`` records the retrieval source (``source``:
    ``'store'``; ``'retrieval_store'`` with that store's ``root``,
    CLIP ``model``, ``pretrained``, ``embed_dim`` and ``meta_sha256``; or
    ``'retrieval_model'`` with ``model``, ``pretrained``, ``embed_dim``,
    ``image_root`` and, for local weights, ``weights_sha256``).

    Args:
        store_root (str | PathLike): The feature store (with text
            embeddings). Recorded in pairing.json as given.
        out_dir (str | PathLike): The output folder (created).
        cfg (SyncConfig): Settings; defaults are the paper's.
        sentence_model (str, optional): A sentence-transformers model name
            or local folder.
        batch_size (int): Captions per sentence-encoder batch (and images
            or captions per retrieval-model batch).
        device (str, optional): The sentence encoder's and retrieval
            model's device, and
            ``'cpu'`` keeps the search on the CPU too (None: a GPU where
            faiss and the encoder find one).
        progress (bool): tqdm bars on stderr. Defaults to True.
        on_part (Callable[[str], None], optional): Called with each part
            file's path once it is written.
        retrieval_store (str | PathLike, optional): A feature store of the
            same images and captions, row by row (same ``image_id`` and
            caption), extracted with another open_clip model; its
            ``global_embeds`` and ``text_embeds`` (of any one width) drive
            both searches. Recorded in pairing.json as given.
        retrieval_model (str, optional): An open_clip model name (e.g.
            ``'ViT-B-16-SigLIP2-256'``) or ``'local-dir:<folder>'`` whose
            image and text embeddings of the store's pairs drive both
            searches. Not with ``retrieval_store``.
        retrieval_pretrained (str, optional): Its open_clip pretrained tag
            or weight file (None: the local-dir folder's weights, or
            random ones).
        image_root (str | PathLike, optional): The generation folder the
            records' ``image`` paths are relative to (needed with
            ``retrieval_model``).

    Returns:
        RefineSummary: Counts, seconds and the output folder.

    Raises:
        MissingInputError: If a store or one of its files is missing.
        InputError: If a store has no text embeddings (naming its
            meta.json), its embedding widths differ (naming the file), the
            store is empty, a caption is missing, ``out_dir`` is a store,
            or the retrieval store holds other pairs (another size, naming
            its meta.json; another ``image_id`` or caption, naming the
            records file and the first such line), both retrieval sources
            are given, ``retrieval_model`` lacks ``image_root``, or an
            image cannot be read (naming the file and its record).
        MissingPackageError: If faiss (or sentence-transformers, for
            ``sentence_model``) is not installed.
    """
    start_time = time.perf_counter()
    root, out = os.fspath(store_root), os.fspath(out_dir)
    store = FeatureStore(root)
    if osp.abspath(out) == osp.abspath(root):
        raise InputError(out, 'is the feature store folder itself',
                         'write the pairing to a folder of its own, e.g. '
                         f'{root.rstrip(os.sep)}_sync')
    _text_embeds_required(
        store, 'store', 'SynC refines a training store of synthetic images '
        'with their captions: give that store, or re-extract one with '
        'captions (tools/data/extract_features.py OUT --generated GEN_DIR) '
        'into a new folder')
    if not len(store):
        raise InputError(store.meta_path, 'the store has no items',
                         'refine a store with pairs in it')
    if retrieval_store is not None and retrieval_model is not None:
        raise InputError(
            '--retrieval-model', 'given with --retrieval-store: the '
            'searches use one retrieval source', 'give one of the two')
    if retrieval_model is not None and image_root is None:
        raise InputError(
            '--image-root', f'missing: --retrieval-model {retrieval_model} '
            'embeds the store\'s images, found under the generation folder',
            'give --image-root GEN_DIR (the folder the store was extracted '
            'from)')
    with _no_empty_folder_left(out):
        images, texts = _embed_arrays(store)  # (M, D), (P, D) float16
        other = (None if retrieval_store is None else _open_retrieval_store(
            os.fspath(retrieval_store), store, out))
        require_faiss()  # before the embedding models' work
        if retrieval_model is not None:
            os.makedirs(out, exist_ok=True)
            search_images, search_texts, identity = retrieval_model_embeds(
                store, out, retrieval_model, retrieval_pretrained,
                os.fspath(image_root), batch_size=batch_size, device=device,
                progress=progress, on_part=on_part,
                parts_dir=PARTS_DIR)  # (M, D2), (P, D2) float32
            _check_pair_widths(
                search_images, search_texts, retrieval_model,
                'give an open_clip model whose image and text towers share '
                'one space')
            clip_embeds = (images, texts)
            retrieval = dict(source=RETRIEVAL_MODEL_SOURCE,
                             embed_dim=int(search_images.shape[1]), **identity)
        elif other is None:
            search_images, search_texts = images, texts
            clip_embeds = None
            retrieval = _retrieval_source(store, other)
        else:
            search_images, search_texts = _embed_arrays(other)  # (M, D2) each
            clip_embeds = (images, texts)
            retrieval = _retrieval_source(store, other)
        os.makedirs(out, exist_ok=True)
        if sentence_model is None:
            sentences = clip_text_sentence_embeds(texts)  # (P, D)
            sentence_source = CLIP_TEXT_SOURCE
        else:
            sentences = _cached_sentence_embeds(store, out, sentence_model,
                                                batch_size, device, progress)
            sentence_source = sentence_model
        pairing = refine_pairs(
            search_images, search_texts, sentences, cfg, work_dir=out,
            progress=progress, use_gpu=False if device == 'cpu' else None,
            on_part=on_part, clip_embeds=clip_embeds, retrieval=retrieval)
        reused = int(pairing.meta.pop('reused_parts', 0))
        if retrieval_store is not None:
            pairing.meta['settings']['retrieval'] = dict(
                source='retrieval_store', root=os.fspath(retrieval_store),
                **{k: v for k, v in retrieval.items() if k != 'source'})
        elif retrieval_model is not None:
            pairing.meta['settings']['retrieval'] = dict(
                retrieval, image_root=os.fspath(image_root))
        pairing.meta['settings'].update(sentence_model=sentence_source)
        pairing.meta['store'] = dict(root=root, num_items=len(store),
                                     meta_sha256=store_meta_sha256(root))
        save_pairing(pairing, out)
    return RefineSummary(
        pairs_in=len(store), kept=pairing.num_pairs,
        dropped=len(store) - pairing.num_pairs, repaired=pairing.num_repaired,
        seconds=time.perf_counter() - start_time, out_dir=out,
        chunks_reused=reused)

