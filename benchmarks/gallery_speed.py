"""Results gallery speed: writing it, and opening it in a browser.

Target: a gallery of 5,000 images (the Karpathy test split) opens in a
browser within 2x the time of one of 50 (the page draws 50 entries at a
time from its embedded data; thumbnails load lazily), and is written in
under a minute on one CPU core.

How it is measured: N random 224 px images are written as PNGs, with a
caption, five references, two scores and a concept picture (5 concepts,
5 patches on a 7x7 grid) each; :func:`~mmpcm.visualization.gallery.
write_gallery` is timed (thumbnails included); then, with ``--browser``
(a Chromium binary), the wall time of a headless Chromium that loads the
page, runs its script and takes a screenshot is timed for the N-image page
and for a 50-image page, browser start-up included in both.

Example::

    python -m benchmarks.gallery_speed --num-images 5000 \
        --browser /usr/bin/chromium
"""
import argparse
import os
import os.path as osp
import shutil
import subprocess
import tempfile
import time
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from mmpcm.visualization import concept_view
from mmpcm.visualization.gallery import (GalleryEntry, GalleryHeader,
                                         write_gallery)

from benchmarks import common

CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu',
                  '--disable-quic', '--no-first-run',
                  '--disable-background-networking',
                  '--disable-component-update', '--disable-sync',
                  '--window-size=1200,900')


def make_entries(folder: str, num: int, size: int = 224,
                 seed: int = 0) -> list:
    """``num`` gallery entries over random PNGs written into ``folder``."""
    rng = np.random.default_rng(seed)
    words = ['person', 'dog', 'grass', 'frisbee', 'park']
    picture = dict(
        concept_ids=torch.arange(5), concept_probs=torch.tensor(
            [.5, .2, .1, .1, .1]), concept_kept=torch.ones(5, dtype=bool),
        selected=torch.tensor([True] * 5 + [False] * 44),
        patch_concept=torch.zeros(49, dtype=torch.long),
        patch_similarity=torch.rand(49, generator=torch.Generator(
        ).manual_seed(seed)))
    view = concept_view(picture, words)
    entries = []
    for i in range(num):
        path = osp.join(folder, f'{i:06d}.png')
        Image.fromarray(rng.integers(0, 256, (size, size, 3),
                                     dtype=np.uint8)).save(path)
        entries.append(GalleryEntry(
            f'{i:06d}', 'a man throwing a frisbee to a dog in a park',
            image_path=path,
            references=['a person plays frisbee with a dog on the grass'] * 5,
            scores={'CIDEr': float(i % 300), 'CLIP-S': 70.0 + i % 7},
            concepts=view))
    return entries


def open_seconds(browser: str, page: str, out_png: str) -> float:
    """Wall seconds of a headless browser loading ``page`` to a screenshot."""
    profile = tempfile.mkdtemp(prefix='gallery_browser_')
    try:
        start = time.perf_counter()
        subprocess.run([browser, *CHROMIUM_FLAGS,
                        f'--user-data-dir={profile}',
                        f'--screenshot={out_png}', f'file://{page}'],
                       check=True, capture_output=True, timeout=300)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--num-images', type=int, default=5000)
    p.add_argument('--small-num-images', type=int, default=50)
    p.add_argument('--image-size', type=int, default=224)
    p.add_argument('--browser', help='a Chromium binary; without it only '
                   'the writing is timed')
    p.add_argument('--workdir', default='work_dirs/benchmarks')
    p.add_argument('--json', help='also write the results here')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix='gallery_', dir=args.workdir)
    try:
        rows, result = [], dict(num_images=args.num_images)
        for num in (args.small_num_images, args.num_images):
            images = osp.join(work, f'images_{num}')
            os.makedirs(images)
            entries = make_entries(images, num, args.image_size)
            start = time.perf_counter()
            page = write_gallery(osp.join(work, f'gallery_{num}'), entries,
                                 GalleryHeader('benchmark'), 224)
            write_s = time.perf_counter() - start
            size_mb = os.path.getsize(page) / 1e6
            open_s = (open_seconds(args.browser, osp.abspath(page),
                                   osp.join(work, f'shot_{num}.png'))
                      if args.browser else None)
            rows.append([num, f'{write_s:.1f}', f'{size_mb:.1f}',
                         '-' if open_s is None else f'{open_s:.2f}'])
            result[f'write_s_{num}'] = write_s
            result[f'open_s_{num}'] = open_s
            result[f'html_mb_{num}'] = size_mb
        print(common.format_table(
            ['images', 'write (s)', 'index.html (MB)',
             'open in headless Chromium (s)'], rows))
        small, big = (result[f'open_s_{n}'] for n in (
            args.small_num_images, args.num_images))
        if small is not None:
            ratio = big / small
            print(f'target: {args.num_images} images open within 2x of '
                  f'{args.small_num_images}: {ratio:.2f}x '
                  f'({"met" if ratio <= 2 else "NOT met"})')
            result['open_ratio'] = ratio
        common.write_json(args.json, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
