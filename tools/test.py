"""Test a PCM-Net captioner on real images (mmpretrain's test.py conventions).

Only the config and the model are needed: a training checkpoint (``.pth``)
or a release (``.safetensors``). The word vocabulary, concept table and CLIP
weights come from it. Without CHECKPOINT, or with a work dir as CHECKPOINT,
the run's best checkpoint by validation CIDEr is tested
(``best_coco-caption_CIDEr_epoch_N.pth`` in the config's work dir, or in the
dir given), or the last checkpoint of a run that kept no best one (trained
without validation, as the toy world is), and a line names it. Writes ``predictions.json`` (COCO results)
and ``metrics.json`` into ``<work_dir>/<timestamp>/`` and prints the paper
row ``B4 / M / R / C / S``.
"""
import argparse
import os
import sys
from typing import List, Optional

from mmpcm.setup_env import register_all_modules
from mmpcm.utils.cfg_options import CfgOptionsAction
from mmpcm.utils.cli import (add_debug_flag, check_output_dir, load_config,
                             run_tool)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a PCM-Net captioner')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', nargs='?',
                        help='training checkpoint (.pth), release '
                        '(.safetensors), or a work dir (its best checkpoint '
                        'by validation CIDEr, else its last one); default: '
                        'the config\'s work dir')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument('--show-dir', help='also write a results gallery '
                        '(index.html and thumbnails) into this dir: per image '
                        'the caption, references, scores, hallucinated '
                        'objects and PCM\'s concepts and patches')
    parser.add_argument('--show-image-root', help='folder of the test images '
                        '(named by image id), for the gallery when the test '
                        'features do not record where their images are')
    parser.add_argument('--cfg-options', nargs='+',
                        action=CfgOptionsAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def test(args: argparse.Namespace) -> int:
    # The config first: a missing one is refused before the heavy imports.
    cfg = load_config(args.config)
    if args.show_dir:
        check_output_dir(args.show_dir)
    # Fixes and registries before mmpcm.apis loads; the Runner sets the
    # config's default scope.
    register_all_modules(init_default_scope=False)

    from mmpcm.apis import default_work_dir, run_test
    from mmpcm.apis.best_checkpoint import (resolve_checkpoint_or_last,
                                            save_best_metric)

    cfg.launcher = args.launcher
    cfg.work_dir = default_work_dir(args.config,
                                    args.work_dir or cfg.get('work_dir'))
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    checkpoint = resolve_checkpoint_or_last(
        args.checkpoint, save_best_metric(cfg), cfg.work_dir)
    if checkpoint.work_dir is not None and os.environ.get('RANK', '0') == '0':
        print(checkpoint.describe(), flush=True)
    outputs = run_test(cfg, checkpoint.path, show_dir=args.show_dir,
                       show_image_root=args.show_image_root,
                       config_file=args.config)
    if outputs.metrics_file is not None:
        print(outputs.row)
        print(f'predictions: {outputs.predictions_file}')
        print(f'metrics: {outputs.metrics_file}')
        if outputs.gallery_file is not None:
            print(f'gallery: {outputs.gallery_file}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Test; an error is one line on stderr (the traceback with --debug)."""
    return run_tool(test, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
