"""Test a PCM-Net checkpoint on real images (mmpretrain's test.py conventions).

Only the config and the checkpoint are needed: the word vocabulary, concept
table and CLIP weights come from the checkpoint.
"""
import argparse
import os

import mmpcm  # noqa: F401  (compat patches before mmpretrain.models)
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmpcm.apis import apply_checkpoint_to_cfg, default_work_dir, prepare_cfg


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a PCM-Net captioner')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    cfg.work_dir = default_work_dir(args.config,
                                    args.work_dir or cfg.get('work_dir'))
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    apply_checkpoint_to_cfg(cfg, args.checkpoint)
    prepare_cfg(cfg)
    runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg
              else RUNNERS.build(cfg))
    runner.test()


if __name__ == '__main__':
    main()
