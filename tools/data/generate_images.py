"""Generate one synthetic image per caption with a diffusers pipeline.

Single process::

    python tools/data/generate_images.py data/coco/train_captions.txt \\
        data/synthimgcap_coco/images_sd15 --batch-size 16

Several GPUs / nodes (each rank takes the chunks ``c % WORLD_SIZE == RANK``)::

    torchrun --nproc_per_node 8 tools/data/generate_images.py CAPTIONS OUT

Rerunning resumes; output layout and seeding are described in
``docs/generation_format.md``. ``--channels-last`` and
``--compile-unet`` only change speed (images by rounding at most): they are
not recorded, and a resumed run may add or drop them. Exit status: 0 when
every caption has its image, 1 when some failed (listed on stderr; those
whose failure may pass, e.g. NaN pixels, are retried by a rerun), 1 with one
``error:`` line on bad input.
"""
import argparse
import logging
import sys
from typing import List, Optional

from mmpcm.preprocessing.generation import (DEFAULT_COMPILE_MODE,
                                            DEFAULT_MODEL, DTYPES,
                                            IMAGE_FORMATS, GenerationConfig,
                                            generate_images)
from mmpcm.preprocessing.sharding import get_rank_info
from mmpcm.utils.cli import add_debug_flag, run_tool


def _count(text: str) -> int:
    """argparse type of a thread count: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f'must be a whole number >= 0 (0 writes each batch before the '
            f'next), got {text!r}')
    return value


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='One synthetic image per caption (text-to-image).')
    parser.add_argument('captions', help='caption file, one caption per line')
    parser.add_argument('out', help='output folder')
    parser.add_argument('--model', default=DEFAULT_MODEL,
                        help='diffusers pipeline folder or hub id '
                        f'(default: {DEFAULT_MODEL})')
    parser.add_argument('--scheduler', default=None,
                        help='diffusers scheduler class, e.g. '
                        'DPMSolverMultistepScheduler (default: the '
                        "pipeline's own)")
    parser.add_argument('--steps', type=int, default=50,
                        help='denoising steps (default: 50)')
    parser.add_argument('--guidance', type=float, default=7.5,
                        help='classifier-free guidance scale (default: 7.5)')
    parser.add_argument('--size', type=int, nargs=2, default=(512, 512),
                        metavar=('HEIGHT', 'WIDTH'),
                        help='image size in pixels (default: 512 512)')
    parser.add_argument('--dtype', default='auto', choices=DTYPES,
                        help='auto: float16 on CUDA, float32 on CPU')
    parser.add_argument('--batch-size', type=int, default=8,
                        help='prompts per pipeline call (default: 8)')
    parser.add_argument('--seed', type=int, default=0,
                        help='base seed; each caption and attempt derives '
                        'its own (default: 0)')
    parser.add_argument('--max-attempts', type=int, default=3,
                        help='tries per caption when the image is blanked '
                        '(NSFW) or near-constant (default: 3)')
    parser.add_argument('--min-std', type=float, default=2.0,
                        help='an image whose largest per-channel pixel std '
                        '(0-255) is below this is regenerated (default: 2)')
    parser.add_argument('--format', default='jpg',
                        choices=sorted(IMAGE_FORMATS),
                        help='jpg (quality 95) or png (default: jpg)')
    parser.add_argument('--chunk-size', type=int, default=1000,
                        help='captions per folder/record file; the unit a '
                        'rank owns (default: 1000)')
    parser.add_argument('--device', default=None,
                        help='default: cuda:LOCAL_RANK if CUDA, else cpu')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar')
    speed = parser.add_argument_group(
        'speed only', 'change speed, not the images (rounding at most); not '
        'recorded in generation_meta.json, so a resumed run may change them')
    speed.add_argument('--channels-last', action='store_true',
                       help='put the UNet and VAE in channels_last memory '
                       'format')
    speed.add_argument('--compile-unet', action='store_true',
                       help='compile the UNet with torch.compile (compiles '
                       'at the first batch and once more at the first '
                       'batch of another size)')
    speed.add_argument('--compile-mode', default=DEFAULT_COMPILE_MODE,
                       help='torch.compile mode for --compile-unet, e.g. '
                       'default, reduce-overhead, max-autotune (default: '
                       f'{DEFAULT_COMPILE_MODE}: autotuned kernels, no CUDA '
                       'graphs, as batch sizes vary at chunk ends and on '
                       'retries)')
    speed.add_argument('--compile-backend', default='inductor',
                       help='torch.compile backend for --compile-unet '
                       "(default: inductor; 'eager' only traces, for tests)")
    speed.add_argument('--write-workers', type=_count, default=4,
                       help='threads that encode and save images while the '
                       'next batch is generated; 0 writes each batch before '
                       'the next (default: 4)')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def generate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO,
                        format='%(asctime)s %(levelname)s %(message)s')
    config = GenerationConfig(
        model=args.model, scheduler=args.scheduler,
        num_inference_steps=args.steps, guidance_scale=args.guidance,
        height=args.size[0], width=args.size[1], dtype=args.dtype,
        seed=args.seed, max_attempts=args.max_attempts,
        min_pixel_std=args.min_std, image_format=args.format,
        chunk_size=args.chunk_size, batch_size=args.batch_size,
        device=args.device, channels_last=args.channels_last,
        compile_unet=args.compile_unet, compile_mode=args.compile_mode,
        compile_backend=args.compile_backend,
        write_workers=args.write_workers)
    info = get_rank_info()
    summary = generate_images(args.captions, args.out, config, info,
                              progress=not args.no_progress)
    print(f'rank {info.rank}/{info.world_size}: {summary.assigned} captions, '
          f'{summary.already_done} already done, {summary.generated} '
          f'generated ({summary.regenerated} after a retry), '
          f'{len(summary.failed)} failed, {len(summary.skipped_lines)} '
          f'caption lines skipped, {summary.truncated_prompts} prompts cut '
          "to the text encoder's length")
    if summary.failed:
        print('failed caption indices (line = index + 1): '
              f'{summary.failed}', file=sys.stderr)
        if summary.retry_on_rerun:
            print(f'{len(summary.retry_on_rerun)} of them are tried again '
                  'by rerunning the same command', file=sys.stderr)
    return 1 if summary.failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    """Generate; an error is one line on stderr (traceback with --debug)."""
    return run_tool(generate, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
