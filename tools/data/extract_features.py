"""Extract CLIP features (and caption embeddings + CLIP scores) to a store.

Synthetic images (a generate_images.py output folder), ViT-B/32::

    python tools/data/extract_features.py data/synthimgcap_coco_vitb32 \\
        --generated data/synthimgcap_coco/images_sd15 \\
        --captions data/coco/train_captions.txt \\
        --model ViT-B-32 --pretrained checkpoints/ViT-B-32-openai.pt

Real images (a folder or a list file), ViT-L/14 (8x8 pooled patches)::

    python tools/data/extract_features.py data/coco_test_vitl14 \\
        --images data/coco/val2014 --model ViT-L-14 --pretrained openai \\
        --patch-pool 2

Several GPUs: each rank writes ``OUT/rank_K-of-W``; merge them afterwards::

    torchrun --nproc_per_node 8 tools/data/extract_features.py OUT ...
    python tools/data/extract_features.py OUT --merge

A single process merges by itself. Rerunning resumes. Design and layout:
``docs/extraction.md``.

Decoding on the GPU (JPEGs decoded with nvJPEG and resized there; the
workers only read files, so far fewer host cores keep up with the model)::

    python tools/data/extract_features.py OUT --images IMAGES \
        --pretrained openai --decode device --workers 4

Features of ``--decode cpu`` and ``--decode device`` differ at rounding
level; the mode is recorded and a store is only resumed in its own mode.

Exit status: 0 when every image has its features; 1 when some could not be
read (skipped, listed in ``failed.txt``, counted on stderr), or with one
``error:`` line on bad input.
"""
import argparse
import logging
import os.path as osp
import sys
from typing import List, Optional, Tuple

from mmpcm.preprocessing.extraction import (DECODE_MODES, CLIPSpec,
                                            ExtractionConfig,
                                            ExtractionItem, extract_features,
                                            items_from_folder,
                                            items_from_generated,
                                            items_from_list,
                                            merge_feature_parts)
from mmpcm.preprocessing.sharding import get_rank_info
from mmpcm.utils.cli import add_debug_flag, run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='CLIP features of images into a feature store.')
    parser.add_argument('out', help='output feature store folder')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--generated',
                        help='output folder of generate_images.py')
    source.add_argument('--images', help='folder of images (recursive)')
    source.add_argument('--image-list',
                        help='text file of image paths, one per line')
    source.add_argument('--merge', action='store_true',
                        help='only merge the finished rank parts of OUT')
    parser.add_argument('--captions', default=None,
                        help='with --generated: the caption file, to check '
                        'every generated caption against its line')
    parser.add_argument('--model', default='ViT-B-32',
                        help='open_clip model name (default: ViT-B-32)')
    parser.add_argument('--pretrained', default=None,
                        help='open_clip pretrained tag (e.g. openai) or local '
                        'weight file; required unless --random-weights')
    parser.add_argument('--random-weights', action='store_true',
                        help='random CLIP weights (tests and benchmarks only)')
    parser.add_argument('--model-cfg', default=None,
                        help='JSON open_clip model config for a custom model '
                        '(instead of --model)')
    parser.add_argument('--patch-pool', type=int, default=1,
                        help='average-pool the patch grid (2 for ViT-L/14)')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--workers', type=int, default=4,
                        help='DataLoader workers decoding images')
    parser.add_argument('--shard-size', type=int, default=4096,
                        help='items per feature-store shard')
    parser.add_argument('--device', default=None,
                        help='default: cuda:LOCAL_RANK if CUDA, else cpu')
    parser.add_argument('--no-amp', action='store_true',
                        help='no float16 autocast on CUDA')
    parser.add_argument(
        '--decode', choices=DECODE_MODES, default='cpu',
        help='cpu (default): PIL decodes and resizes in the workers (about '
        '5 ms of a core per 512 px JPEG); device: the workers only read the '
        'files, JPEGs are decoded (nvJPEG on CUDA) and resized / cropped on '
        'the extraction device (PNGs, CMYK and unreadable files, and JPEGs '
        'the device decoder rejects still go through PIL). The two modes\' '
        'pixels differ at rounding level (mean |difference| 0.14 of 255 on '
        '512 px JPEGs, decoded on the CPU), so their features differ '
        'slightly: the mode is recorded in OUT/extraction_source.json and a '
        'resumed run in the other mode is refused')
    parser.add_argument('--no-merge', action='store_true',
                        help='single process: keep the rank part unmerged')
    parser.add_argument('--no-progress', action='store_true')
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if not args.merge and (args.pretrained is None) != args.random_weights:
        parser.error('give exactly one of --pretrained (an open_clip tag or '
                     'a weight file) and --random-weights')
    return args


def load_items(
        args: argparse.Namespace) -> Tuple[List[ExtractionItem], str]:
    """The items to encode and a description of their source."""
    if args.generated:
        return (items_from_generated(args.generated, args.captions),
                osp.abspath(args.generated))
    if args.images:
        return items_from_folder(args.images), osp.abspath(args.images)
    return items_from_list(args.image_list), osp.abspath(args.image_list)


def extract(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO,
                        format='%(asctime)s %(levelname)s %(message)s')
    if args.merge:
        store = merge_feature_parts(args.out)
        print(f'merged: {store}')
        return 0
    items, source = load_items(args)
    spec = CLIPSpec(model_name=None if args.model_cfg else args.model,
                    pretrained=args.pretrained, model_cfg=args.model_cfg,
                    patch_pool=args.patch_pool)
    config = ExtractionConfig(batch_size=args.batch_size,
                              num_workers=args.workers,
                              shard_size=args.shard_size, device=args.device,
                              amp=not args.no_amp, merge=not args.no_merge,
                              decode=args.decode)
    info = get_rank_info()
    summary = extract_features(items, args.out, spec, config, source, info,
                               progress=not args.no_progress)
    print(f'rank {info.rank}/{info.world_size}: {summary.assigned} images, '
          f'{summary.already_done} already done, {summary.extracted} '
          f'extracted, {len(summary.failed)} unreadable, '
          f'{summary.truncated_captions} captions truncated')
    if summary.merged_dir:
        print(f'feature store: {summary.merged_dir}')
    elif info.world_size > 1:
        print(f'when every rank has finished: python {__file__} {args.out} '
              '--merge')
    if summary.failed:
        print(f'warning: {len(summary.failed)} images could not be read and '
              'have no features (listed in the output\'s failed.txt): a test '
              'set built from this store covers fewer images', file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Extract; an error is one line on stderr (traceback with --debug)."""
    return run_tool(extract, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
