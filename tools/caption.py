"""Caption your own images with a trained PCM-Net.

    python tools/caption.py MODEL INPUT [INPUT ...] [--out captions.jsonl]

MODEL is a release (.safetensors), a training checkpoint (.pth; its CLIP
weights, vocabulary and concepts are inside), or a training work dir (its
best checkpoint by validation CIDEr, or the last checkpoint of a run
trained without validation; named on stderr). INPUT is an image, a
folder (every file in it, recursively) or a list file (.txt/.lst/.list: one
path per line, relative to the list's folder). Writes one JSON line per
image, ``{"image": path, "caption": ..., "score": ...}``, to --out or
stdout; an unreadable file is reported on stderr (``skipped PATH: reason``)
and skipped. ``--show-dir DIR`` also writes a gallery (``DIR/index.html``):
each image as CLIP saw it with PCM's selected patches, the caption and the
retrieved concepts. Exit status: 0 if every image was captioned, 1 if some failed,
2 on an error (one line on stderr; the traceback with --debug).
"""
import argparse
import os
import sys
from contextlib import nullcontext
from typing import List, Optional

from mmpcm.setup_env import register_all_modules
from mmpcm.utils.cli import (MissingInputError, add_debug_flag,
                             check_output_dir, check_output_file, run_tool)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Caption images')
    parser.add_argument('model', help='release (.safetensors), training '
                        'checkpoint (.pth), or work dir (its best checkpoint '
                        'by validation CIDEr, else its last one)')
    parser.add_argument('inputs', nargs='+',
                        help='image files, folders or list files')
    parser.add_argument('--out', help='JSONL output file (default: stdout)')
    parser.add_argument('--config', help='training config, for a .pth '
                        'without one inside')
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--num-workers', type=int, default=2,
                        help='image decoding processes')
    parser.add_argument('--device', help='e.g. cuda:0 (default: CUDA when '
                        'available, else CPU)')
    parser.add_argument('--beam-size', type=int,
                        help='override the model\'s beam size')
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--show-dir', help='also write a gallery here '
                        '(index.html and thumbnails): each image with its '
                        'caption and PCM\'s concepts and selected patches')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def caption(args: argparse.Namespace) -> int:
    # Fixes and registries before mmpcm.apis loads; it builds the model in
    # mmpretrain's scope.
    register_all_modules(init_default_scope=False)

    from mmpcm.apis import (PCMCaptionInferencer, caption_to_jsonl,
                            expand_inputs)
    from mmpcm.apis.best_checkpoint import resolve_checkpoint_or_last

    if args.out:
        check_output_file(args.out)
    if args.show_dir:
        check_output_dir(args.show_dir)
    for path in args.inputs:  # a mistyped input is an error, not a skip
        if not os.path.exists(path):
            raise MissingInputError(path, 'no such file or folder',
                                    'check the path')
    images = expand_inputs(args.inputs)  # none: an error before --out
    model = resolve_checkpoint_or_last(args.model)
    if model.work_dir is not None:
        print(model.describe(), file=sys.stderr)
    inferencer = PCMCaptionInferencer(model.path, args.config, args.device,
                                      args.beam_size,
                                      return_concepts=bool(args.show_dir))
    results = [] if args.show_dir else None
    with (open(args.out, 'w', encoding='utf-8') if args.out else
          nullcontext(sys.stdout)) as out:
        summary = caption_to_jsonl(inferencer, images, out, sys.stderr,
                                   args.batch_size, args.num_workers,
                                   progress=not args.no_progress,
                                   keep=results)
    print(f'captioned {summary.num_captioned} images, {summary.num_failed} '
          'skipped', file=sys.stderr)
    if results:
        from mmpcm.visualization.gallery import (GalleryEntry, GalleryHeader,
                                                 write_gallery)
        entries = [GalleryEntry(r.image, r.caption, image_path=r.image,
                                scores={'log-prob': r.score},
                                concepts=r.concepts) for r in results]
        page = write_gallery(args.show_dir, entries,
                             GalleryHeader(f'captions by {model.path}',
                                           checkpoint=model.path),
                             inferencer.preprocess_cfg)
        print(f'gallery: {page}', file=sys.stderr)
    return 1 if summary.num_failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    """Caption; an error is one line on stderr and exit status 2."""
    return run_tool(caption, parse_args(argv), error_status=2)


if __name__ == '__main__':
    sys.exit(main())
