"""Speed of the SynC data refinement (``tools/data/refine_pairs.py``).

SynC (Kim et al., ACM MM 2025, arXiv 2507.18616) searches the whole
corpus twice, exactly: every image against every caption (stage 1, the
image-to-text retrieval of the cycle score) and every caption against
every image (stage 2, the candidates), then scores ``K x i2t_k`` sentence
cosines per caption. For SynthImgCap-COCO that is two 542,401 x 542,401
inner-product searches at CLIP width.

Target: the whole refinement of SynthImgCap-COCO (542,401 pairs, ViT-B/32
512-d CLIP, 384-d sentence embeddings) in at most 10 minutes on one GPU,
so it is a small step next to feature extraction.

Inputs are random unit vectors of the real widths (no store, no model):
``--num-pairs`` images, captions (``images + noise``) and sentence
embeddings. The stages run the product's code
(:class:`mmpcm.preprocessing.refine.ExactSearchIndex`,
:func:`mmpcm.preprocessing.refine.sync.pick_candidates`), chunk by chunk as
``refine_pairs`` does. On a CPU the exact search of the full corpus takes
long: ``--time-fraction F`` runs only the first ``ceil(F x chunks)`` query
chunks of each stage against the full index (stage 2 scores with image
retrievals that are random where stage 1 did not run: the cost does not
depend on their values) and reports the measured seconds and, clearly
labelled, a linear extrapolation to all chunks.

Examples::

    # one GPU, the full corpus
    python -m benchmarks.refine_speed --device cuda
    # CPU: 2 % of the query chunks, extrapolated
    python -m benchmarks.refine_speed --device cpu --time-fraction 0.02
"""
import argparse
import math
import sys
import time
from typing import Optional, Sequence

import numpy as np

from mmpcm.preprocessing.refine import ExactSearchIndex, SyncConfig
from mmpcm.preprocessing.refine.sentence import l2_normalize
from mmpcm.preprocessing.refine.sync import pick_candidates

from benchmarks import common

TARGET_SECONDS = 600.0
CLIP_DIM = 512  # ViT-B/32
SENTENCE_DIM = 384  # all-MiniLM-L6-v2


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-pairs', type=int, default=common.COCO_PAIRS,
                        help=f'default: {common.COCO_PAIRS:,} '
                        '(SynthImgCap-COCO)')
    parser.add_argument('--clip-dim', type=int, default=CLIP_DIM)
    parser.add_argument('--sentence-dim', type=int, default=SENTENCE_DIM)
    parser.add_argument('--num-candidates', type=int, default=15)
    parser.add_argument('--i2t-k', type=int, default=2)
    parser.add_argument('--chunk-size', type=int, default=4096)
    parser.add_argument('--device', choices=('cpu', 'cuda'), default=None,
                        help='where faiss searches (default: a GPU when '
                        'faiss has one)')
    parser.add_argument('--time-fraction', type=float, default=1.0,
                        help='run only this share of the query chunks of '
                        'each stage and extrapolate linearly (default: 1)')
    parser.add_argument('--threads', type=int, default=None,
                        help='faiss OpenMP threads (default: faiss\'s)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--check', action='store_true',
                        help='exit 1 if the target is missed')
    parser.add_argument('--json', help='write the results here')
    args = parser.parse_args(argv)
    if not 0 < args.time_fraction <= 1:
        parser.error('--time-fraction must be in (0, 1]')
    return args


def random_inputs(num: int, clip_dim: int, sentence_dim: int, seed: int):
    """Unit image, caption and sentence rows (float32)."""
    rng = np.random.default_rng(seed)
    images = l2_normalize(rng.standard_normal((num, clip_dim),
                                              dtype=np.float32))
    texts = images + rng.standard_normal((num, clip_dim), dtype=np.float32)
    texts = l2_normalize(texts)
    sentences = l2_normalize(rng.standard_normal((num, sentence_dim),
                                                 dtype=np.float32))
    return images, texts, sentences


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    import faiss
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    use_gpu = None if args.device is None else args.device == 'cuda'
    cfg = SyncConfig(num_candidates=args.num_candidates, i2t_k=args.i2t_k,
                     chunk_size=args.chunk_size)
    print(f'faiss {faiss.__version__} ({faiss.get_num_gpus()} GPU(s) '
          f'seen, {faiss.omp_get_max_threads()} OpenMP threads); '
          f'{common.describe_load()}')
    print(f'CPU: {common.cpu_model()}, {common.usable_cores()} cores')
    num = args.num_pairs
    start = time.perf_counter()
    images, texts, sentences = random_inputs(num, args.clip_dim,
                                             args.sentence_dim, args.seed)
    print(f'{num:,} random pairs ({args.clip_dim}-d CLIP, '
          f'{args.sentence_dim}-d sentences) in '
          f'{time.perf_counter() - start:.1f} s')
    size = cfg.chunk_size
    chunks = -(-num // size)
    run_chunks = max(1, math.ceil(args.time_fraction * chunks))
    stop = min(run_chunks * size, num)
    scale = num / stop  # rows of all chunks / rows measured
    rng = np.random.default_rng(args.seed + 1)
    seconds = {}

    t = time.perf_counter()
    text_index = ExactSearchIndex(texts, use_gpu=use_gpu)
    seconds['index 1 (captions)'] = time.perf_counter() - t
    device = 'GPU' if text_index.on_gpu else 'CPU'
    retrieved = rng.integers(0, num, (num, cfg.i2t_k))  # (M, i2t_k)
    t = time.perf_counter()
    for first, found in text_index.search_chunks(images[:stop], cfg.i2t_k,
                                                 size):
        retrieved[first:first + len(found.indices)] = found.indices
    seconds['stage 1 search'] = time.perf_counter() - t
    del text_index

    t = time.perf_counter()
    image_index = ExactSearchIndex(images, use_gpu=use_gpu)
    seconds['index 2 (images)'] = time.perf_counter() - t
    search = score = 0.0
    best = np.empty(stop, dtype=np.int64)
    quality = rng.random(num, dtype=np.float32)  # (P, )
    for first in range(0, stop, size):
        t = time.perf_counter()
        found = image_index.search(texts[first:first + size],
                                   cfg.num_candidates)
        search += time.perf_counter() - t
        t = time.perf_counter()
        chunk_best, chunk_score = pick_candidates(first, found.indices,
                                                  retrieved, sentences)
        score += time.perf_counter() - t
        best[first:first + len(chunk_best)] = chunk_best
        quality[first:first + len(chunk_score)] = chunk_score
    seconds['stage 2 search'] = search
    seconds['stage 2 cycle scores'] = score
    del image_index

    t = time.perf_counter()  # selection and CLIP scores over all P
    ranked = np.lexsort((np.arange(num), -quality))
    kept = np.sort(ranked[:cfg.num_kept(num)])
    image_idx = np.concatenate([best, np.arange(stop, num)])[kept]
    np.einsum('nd,nd->n', images[image_idx], texts[kept])
    seconds['selection'] = time.perf_counter() - t

    scaled = ('stage 1 search', 'stage 2 search', 'stage 2 cycle scores')
    rows, total_measured, total_full = [], 0.0, 0.0
    for name, value in seconds.items():
        full = value * scale if name in scaled else value
        total_measured += value
        total_full += full
        rows.append([name, f'{value:.2f} s',
                     f'{full:.1f} s' if name in scaled and scale > 1
                     else '(measured)'])
    rows.append(['total', f'{total_measured:.1f} s', f'{total_full:.1f} s'])
    print(f'\nSynC refinement, {num:,} pairs, K={cfg.num_candidates}, '
          f'i2t_k={cfg.i2t_k}, chunks of {size}, faiss on {device}: '
          f'{run_chunks} of {chunks} query chunks per stage run '
          f'({stop:,} of {num:,} queries)')
    extrapolated = ('all chunks, LINEAR EXTRAPOLATION of the measured '
                    'chunks' if scale > 1 else 'all chunks (measured)')
    print(common.format_table(['step', 'measured', extrapolated], rows))
    met = total_full <= TARGET_SECONDS
    print(f'target: whole refinement <= {TARGET_SECONDS:.0f} s on one GPU: '
          f'{"met" if met else "missed"} ({total_full:.1f} s'
          f'{", extrapolated" if scale > 1 else ""}, {device})'
          + ('; a GPU target, only indicative on a CPU'
             if device == 'CPU' else ''))
    common.write_json(args.json, dict(
        num_pairs=num, device=device, chunks=chunks, chunks_run=run_chunks,
        queries_run=stop, seconds=seconds, total_measured=total_measured,
        total_extrapolated=total_full, extrapolated=scale > 1,
        cpu=common.cpu_model(), cores=common.usable_cores(),
        load=common.describe_load(), target_seconds=TARGET_SECONDS))
    return 1 if args.check and not met else 0


if __name__ == '__main__':
    sys.exit(main())
