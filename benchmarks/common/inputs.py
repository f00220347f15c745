"""Random inputs of the real shapes: words, captions, concepts, stores.

Nothing is downloaded; every input is random, so figures say how fast,
never how well. Feature stores are written with mmpcm's own writers
(:func:`~mmpcm.testing.make_random_feature_store` for the first shard,
:class:`~mmpcm.datasets.FeatureStoreWriter` for the rest), in the layout of
docs/feature_format.md.
"""
import dataclasses
import json
import os
import os.path as osp
import shutil
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from mmpcm.datasets import (FeatureStore, FeatureStoreWriter, ShardInfo,
                            read_meta, write_meta)
from mmpcm.datasets.feature_store import (GLOBAL_FILE, PATCH_FILE,
                                          RECORDS_FILE, SHARD_PREFIX)
from mmpcm.testing import make_random_feature_store, random_concepts
from mmpcm.text import SPECIAL_TOKENS, WordVocabulary
from mmpcm.utils.fileio import atomic_write_text

from .shapes import COCO_VOCAB_SIZE, NUM_CONCEPTS, ClipShape

Log = Callable[[str], None]

# --------------------------------------------------------------------------
# words and captions
# --------------------------------------------------------------------------
CONSONANTS = 'bcdfghjklmnprstvwz'
VOWELS = 'aeiou'


def make_word_list(size: int) -> List[str]:
    """``size`` distinct lower-case pseudo-words (``'ba'``, ``'beko'``...).

    Args:
        size (int): Number of words.

    Returns:
        list[str]: Short words first (1, 2, then 3 syllables), so that the
        frequent words of :func:`random_captions` are the short ones.
    """
    syll = [c + v for c in CONSONANTS for v in VOWELS]  # 90 syllables
    words: List[str] = []
    for n in (1, 2, 3):
        for i in range(len(syll)**n):
            parts, rest = [], i
            for _ in range(n):
                parts.append(syll[rest % len(syll)])
                rest //= len(syll)
            words.append(''.join(parts))
            if len(words) == size:
                return words
    raise ValueError(f'at most {len(words)} pseudo-words, asked for {size}')


def write_vocabulary(path: str, size: int = COCO_VOCAB_SIZE) -> List[str]:
    """Write a word vocabulary of ``size`` tokens (special tokens + words).

    A vocabulary of the real size keeps the decoder's output layer and the
    loss at their real cost; captions use its words.

    Returns:
        list[str]: The plain words (special tokens excluded).
    """
    words = make_word_list(size - len(SPECIAL_TOKENS))
    WordVocabulary(list(SPECIAL_TOKENS) + words).save(path)
    return words


CAPTION_MIN_WORDS = 8
CAPTION_MEAN_WORDS = 10.5
"""Random captions: at least 8 words, 10.5 on average (COCO's mean), with
a geometric tail, so that a large batch, like COCO's, usually holds a
caption cut at ``max_len``."""


def random_captions(words: Sequence[str], count: int, seed: int = 0,
                    min_words: int = CAPTION_MIN_WORDS,
                    mean_words: float = CAPTION_MEAN_WORDS,
                    max_words: int = 40) -> List[str]:
    """Random captions, word ranks Zipf-distributed.

    Args:
        words (Sequence[str]): Word list, most frequent first.
        count (int): Number of captions.
        seed (int): Random seed. Defaults to 0.
        min_words (int): Shortest caption. Defaults to 8.
        mean_words (float): Mean length. Defaults to 10.5.
        max_words (int): Longest caption. Defaults to 40.

    Returns:
        list[str]: Captions like ``'Ba beko ... zu.'`` (capitalised, with a
        full stop, as corpus captions are).
    """
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, len(words) + 1, dtype=np.float64)
    probs = 1.0 / ranks
    probs /= probs.sum()
    tail = rng.geometric(1.0 / (mean_words - min_words + 1), size=count)
    lengths = np.minimum(min_words - 1 + tail, max_words)
    ids = rng.choice(len(words), size=int(lengths.sum()), p=probs)
    table = np.asarray(words, dtype=object)[ids]
    out, pos = [], 0
    for n in lengths.tolist():
        out.append(' '.join(table[pos:pos + n]).capitalize() + '.')
        pos += n
    return out


def write_concepts(path: str, shape: ClipShape, count: int = NUM_CONCEPTS,
                   seed: int = 0) -> None:
    """Write a concept file of ``count`` random embeddings of ``shape``."""
    random_concepts([f'concept{i}' for i in range(count)],
                    embed_dim=shape.embed_dim, clip_model=shape.model,
                    seed=seed).save(path)


# --------------------------------------------------------------------------
# feature stores
# --------------------------------------------------------------------------
def store_matches(root: str, num_items: int, shape: ClipShape) -> bool:
    """Whether ``root`` already holds a complete store of ``num_items``
    items of ``shape`` (then it is reused)."""
    if not osp.isfile(osp.join(root, 'meta.json')):
        return False
    meta = read_meta(root)
    clip = meta.clip
    return (meta.num_items == num_items
            and clip.model == shape.model
            and clip.num_patches == shape.num_patches
            and clip.patch_dim == shape.patch_dim)


def write_random_store(root: str, captions: Sequence[Optional[str]],
                       shape: ClipShape, scores: Sequence[Optional[float]],
                       shard_size: int, seed: int) -> FeatureStore:
    """mmpcm's random store of ``shape`` (one item per caption)."""
    return make_random_feature_store(
        root, list(captions), shape.num_patches, shape.patch_dim,
        shape.embed_dim, clip_model=shape.model, clip_scores=list(scores),
        seed=seed, shard_size=shard_size)


def records(captions: Sequence[str], scores: Sequence[float], start: int,
            stop: int) -> List[dict]:
    """Store records of items ``start .. stop - 1`` (image id = index)."""
    return [dict(image_id=i, caption=captions[i], clip_score=scores[i])
            for i in range(start, stop)]


def write_feature_store(root: str, captions: Sequence[str], shape: ClipShape,
                        shard_size: int = 4096, linked: bool = False,
                        seed: int = 0, log: Log = print) -> str:
    """Write a feature store of random features, one item per caption.

    The first shard holds random features; every later shard repeats them
    (rows rolled per shard): the values do not matter for speed, and
    generating a COCO-sized store's random numbers would take longer than
    the benchmark. An existing complete store of the same size and shapes
    is reused.

    Args:
        root (str): Store directory.
        captions (Sequence[str]): One caption per item.
        shape (ClipShape): Feature shapes.
        shard_size (int): Items per shard. Defaults to 4096.
        linked (bool): Hard-link the first shard's arrays into every other
            full shard (records still differ): a COCO-sized store then
            takes one shard's disk space and seconds to write, and every
            read hits the same pages, i.e. a warm page cache. Defaults to
            False.
        seed (int): Random seed. Defaults to 0.
        log (Callable): Progress printer. Defaults to print.

    Returns:
        str: ``root``.
    """
    n = len(captions)
    if store_matches(root, n, shape):
        log(f'reusing feature store {root} ({n:,} items)')
        return root
    if osp.isdir(root):
        shutil.rmtree(root)
    scores = np.random.default_rng(seed).uniform(0.15, 0.35, size=n).tolist()
    start_t = time.perf_counter()
    log(f'writing feature store {root}: {n:,} items, '
        f'{n * shape.bytes_per_item / 1e9:.1f} GB'
        + (' (hard-linked shards)' if linked else ''))
    first = min(shard_size, n)
    store = write_random_store(root, captions[:first], shape, scores[:first],
                               shard_size, seed)
    if n > first:
        extend = extend_linked if linked else extend_rolled
        extend(store, captions, scores, shard_size)
    log(f'  written in {time.perf_counter() - start_t:.1f} s')
    return root


def first_shard_arrays(store: FeatureStore) -> tuple:
    """The first shard's float16 patch tokens and global embeddings."""
    return (np.load(store.shard_path(0, PATCH_FILE)),
            np.load(store.shard_path(0, GLOBAL_FILE)))


def extend_rolled(store: FeatureStore, captions: Sequence[str],
                  scores: Sequence[float], shard_size: int) -> None:
    """Append shards holding the first shard's rows, rolled per shard."""
    patches, globals_ = first_shard_arrays(store)
    block, n = len(patches), len(captions)
    with FeatureStoreWriter(store.root, store.clip_info,
                            shard_size=shard_size) as writer:
        for shard, start in enumerate(range(block, n, shard_size), start=1):
            stop = min(start + shard_size, n)
            roll = np.roll(np.arange(block), shard)[:stop - start]
            writer.write_shard(patches[roll], globals_[roll],
                               records(captions, scores, start, stop))


def extend_linked(store: FeatureStore, captions: Sequence[str],
                  scores: Sequence[float], shard_size: int) -> None:
    """Append full shards whose arrays are hard links to the first shard's.

    Each new shard folder gets the two links and its own records file, then
    meta.json lists them; a shorter last shard is written with its own
    arrays by :class:`~mmpcm.datasets.FeatureStoreWriter`.
    """
    first, n = len(store), len(captions)
    shards: List[ShardInfo] = store.shards
    start = first
    while n - start >= first:
        name = f'{SHARD_PREFIX}{len(shards):05d}'
        folder = osp.join(store.root, name)
        os.makedirs(folder)
        for fname in (PATCH_FILE, GLOBAL_FILE):
            os.link(store.shard_path(0, fname), osp.join(folder, fname))
        lines = [json.dumps(r, ensure_ascii=False) + '\n'
                 for r in records(captions, scores, start, start + first)]
        atomic_write_text(osp.join(folder, RECORDS_FILE), ''.join(lines))
        shards.append(ShardInfo(name, first))
        start += first
    write_meta(store.root, dataclasses.replace(store.meta, shards=shards))
    if start < n:
        patches, globals_ = first_shard_arrays(store)
        with FeatureStoreWriter(store.root, store.clip_info,
                                shard_size=shard_size) as writer:
            writer.write_shard(patches[:n - start], globals_[:n - start],
                               records(captions, scores, start, n))


def write_npz_samples(folder: str, captions: Sequence[str], store_root: str,
                      seed: int = 0, log: Log = print) -> List[dict]:
    """The release's layout: one ``.npz`` per sample (float32).

    Keys ``features`` ``(N, Dv)`` and ``g_feature`` ``(D,)``, as the
    authors' X-modaler loader reads them, filled with the first items of
    the store at ``store_root``. Files already there are reused.

    Returns:
        list[dict]: ``path``, ``caption``, ``clip_score`` per sample.
    """
    os.makedirs(folder, exist_ok=True)
    store = FeatureStore(store_root)
    block = min(256, len(captions), len(store))
    items = [store.get(i, with_record=False) for i in range(block)]
    scores = np.random.default_rng(seed).uniform(0.15, 0.35,
                                                 size=len(captions))
    index, written = [], 0
    start_t = time.perf_counter()
    for i, caption in enumerate(captions):
        path = osp.join(folder, f'{i:07d}.npz')
        if not osp.isfile(path):
            item = items[i % block]
            np.savez(path, features=item.patch_tokens.astype(np.float32),
                     g_feature=item.global_embed.astype(np.float32))
            written += 1
        index.append(dict(path=path, caption=caption,
                          clip_score=float(scores[i])))
    if written:
        log(f'wrote {written:,} .npz files into {folder} in '
            f'{time.perf_counter() - start_t:.1f} s')
    return index


def random_test_features(folder: str, num_images: int, shape: ClipShape,
                         seed: int = 0) -> Dict[str, torch.Tensor]:
    """Test features as a captionless feature store gives them (float16).

    Up to 512 distinct random items are written to a store in ``folder``
    (reused when it matches) and repeated to ``num_images``.

    Returns:
        dict: ``patch_tokens`` ``(num_images, N, Dv)`` and ``global_embed``
        ``(num_images, D)``.
    """
    block = min(512, num_images)
    if store_matches(folder, block, shape):
        store = FeatureStore(folder)
    else:
        if osp.isdir(folder):
            shutil.rmtree(folder)
        store = write_random_store(folder, [None] * block, shape,
                                   [None] * block, block, seed)
    idx = np.arange(num_images) % block
    return dict(
        patch_tokens=torch.from_numpy(store.load_array(PATCH_FILE)[idx]),
        global_embed=torch.from_numpy(store.load_array(GLOBAL_FILE)[idx]))
