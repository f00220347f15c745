"""Speed of the input checks: the image check before a test run, and the
caption word scan.

Two components stand between the user's files and the model and run over
whole data sets, so they must stay cheap:

* :func:`mmpcm.datasets.transforms.check_image` runs on every image of a
  test set before the checkpoint loads (``ImageFolderCaptionDataset``).
  Target: at most 1/10 of :func:`~mmpcm.datasets.transforms.load_image`'s
  time per file, for 640x480 JPEGs (COCO's typical size) and PNGs.
* :func:`mmpcm.text.tokenize_caption` (the metric's PTB word rules) runs
  over the training corpus when ``tools/data/prepare_corpus.py`` builds the
  word vocabulary. Target: the 542,401 captions of SynthImgCap-COCO in at
  most 60 s on one CPU core.

Images are random-textured 640x480 files written to ``--workdir``; captions
are Zipf-distributed random words of COCO's length
(:func:`benchmarks.common.random_captions`) with a share of hyphenated,
accented and possessive words. ``--check`` exits 1 if a
target is missed.

Example::

    python -m benchmarks.input_checks_speed --num-images 200 --check
"""
import argparse
import os.path as osp
import sys
import tempfile
import time
from typing import Callable, List, Optional, Sequence

import numpy as np
from PIL import Image

from mmpcm.datasets.transforms import check_image, load_image
from mmpcm.text import tokenize_caption

from benchmarks import common

CHECK_TO_LOAD_MAX = 0.1
CORPUS_SECONDS_MAX = 60.0
EXTRA_WORDS = ("t-shirt", "café", "jalapeños", "dog's", "man’s",
               "3-year-old", "hot-dog")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-images', type=int, default=200,
                        help='images per format (default: 200)')
    parser.add_argument('--size', type=int, nargs=2, default=(640, 480),
                        metavar=('WIDTH', 'HEIGHT'))
    parser.add_argument('--num-captions', type=int, default=20000)
    parser.add_argument('--repeats', type=int, default=3,
                        help='timed passes; the fastest counts (default 3)')
    parser.add_argument('--workdir', help='where the images are written '
                        '(default: a temporary folder)')
    parser.add_argument('--check', action='store_true',
                        help='exit 1 if a target is missed')
    parser.add_argument('--json', help='write the results here')
    return parser.parse_args(argv)


def write_images(folder: str, count: int, size: Sequence[int],
                 fmt: str) -> List[str]:
    """``count`` random-textured images of ``size`` in format ``fmt``."""
    rng = np.random.default_rng(0)
    width, height = size
    base = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    paths = []
    for i in range(count):
        noise = rng.integers(0, 24, (height, width, 3), dtype=np.uint8)
        pixels = np.kron(np.roll(base, i, axis=0),
                         np.ones((8, 8, 1), np.uint8)) + noise
        path = osp.join(folder, f'{i:05d}.{fmt}')
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    print(f'{common.describe_software()}; {common.describe_load()}')
    print(f'CPU: {common.cpu_model()}')
    rows, results, missed = [], {}, []
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        for fmt in ('jpg', 'png'):
            paths = write_images(folder, args.num_images, args.size, fmt)
            check = best_seconds(lambda: [check_image(p) for p in paths],
                                 args.repeats) / len(paths)
            load = best_seconds(lambda: [load_image(p) for p in paths],
                                args.repeats) / len(paths)
            ratio = check / load
            results[fmt] = dict(check_ms=check * 1e3, load_ms=load * 1e3,
                                ratio=ratio)
            rows.append([f'check_image, {fmt} {args.size[0]}x{args.size[1]}',
                         f'{check * 1e3:.3f} ms', f'{ratio:.3f} of a load',
                         f'<= {CHECK_TO_LOAD_MAX}'])
            rows.append([f'load_image, {fmt}', f'{load * 1e3:.3f} ms', '',
                         ''])
            if ratio > CHECK_TO_LOAD_MAX:
                missed.append(f'check_image {fmt}')
    words = common.make_word_list(2000)
    words[10:10] = EXTRA_WORDS
    captions = common.random_captions(words, args.num_captions)
    seconds = best_seconds(lambda: [tokenize_caption(c) for c in captions],
                           args.repeats)
    corpus = seconds / len(captions) * common.COCO_PAIRS
    results['tokenize'] = dict(us_per_caption=seconds / len(captions) * 1e6,
                               coco_seconds=corpus)
    rows.append(['tokenize_caption', f'{seconds / len(captions) * 1e6:.1f} '
                 'us/caption', f'{corpus:.1f} s for SynthImgCap-COCO',
                 f'<= {CORPUS_SECONDS_MAX:.0f} s'])
    if corpus > CORPUS_SECONDS_MAX:
        missed.append('tokenize_caption')
    print(common.format_table(['component', 'time', 'measure', 'target'],
                              rows))
    common.write_json(args.json, dict(results=results, missed=missed))
    if missed:
        print('targets missed: ' + ', '.join(missed))
    return 1 if args.check and missed else 0


if __name__ == '__main__':
    sys.exit(main())
