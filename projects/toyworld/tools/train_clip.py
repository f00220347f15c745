"""Train the default toy world's CLIP and write it as the shipped one.

A world build that the shipped CLIP (projects/toyworld/weights/toy_clip)
can serve takes it instead of training one; this tool is how that CLIP is
made, and how anyone can make it again: about 7 minutes on two CPU cores.
It trains on the scenes the default world build would (WorldConfig's
split), replaces the output folder when done (by default the shipped,
committed one), and records the settings, the render fingerprint, the
checksums, the wall time and the command beside the weights.
"""
import argparse
import datetime
import logging
import os
import os.path as osp
import platform
import sys
import time
from typing import List, Optional

import torch

from mmpcm.utils.cli import (add_debug_flag, check_output_dir, run_tool,
                             thread_count)
from mmpcm_toyworld.clip_train import train_toy_clip
from mmpcm_toyworld.pretrained import SHIPPED_CLIP, save_shipped_clip
from mmpcm_toyworld.world import TOY_NOUNS, WorldConfig, split_scenes


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', default=SHIPPED_CLIP,
                        help='output folder, replaced when training ends '
                        '(default: the shipped CLIP\'s folder)')
    parser.add_argument('--threads', type=thread_count,
                        default=max(1, min(2, os.cpu_count() or 1)),
                        help='torch CPU threads (default: up to 2)')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    # the output's parent must take the new folder before 7 minutes of work
    check_output_dir(osp.dirname(osp.abspath(args.out)))
    torch.set_num_threads(args.threads)
    cfg = WorldConfig()
    _, _, scenes = split_scenes(cfg)
    start = time.time()
    model = train_toy_clip(scenes, cfg.clip_train_config(), nouns=TOY_NOUNS,
                           model_cfg=cfg.clip_model_cfg)
    seconds = time.time() - start
    save_shipped_clip(
        model, cfg.clip_model_cfg, cfg.clip_settings(), args.out,
        training_seconds=round(seconds),
        threads=args.threads, torch=torch.__version__,
        machine=f'{platform.machine()}, {os.cpu_count()} CPUs',
        date=datetime.date.today().isoformat(),
        command='python projects/toyworld/tools/train_clip.py')
    print(f'toy CLIP trained in {seconds / 60:.1f} min; written to {args.out}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run; an error is one line on stderr (traceback with --debug)."""
    return run_tool(train, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
