"""Train a PCM-Net captioner (mmpretrain's train.py conventions)."""
import argparse
import os
import sys
from typing import List, Optional

from mmengine.config import Config

from mmpcm.setup_env import register_all_modules
from mmpcm.utils.cfg_options import CfgOptionsAction
from mmpcm.utils.cli import add_debug_flag, load_config, run_tool


# On/off flags: (flag, help).
_SWITCHES = (
    ('--amp', 'automatic mixed precision (CUDA only)'),
    ('--no-validate', 'do not evaluate during training'),
    ('--auto-scale-lr', 'scale the lr by actual / base batch size (refused '
     'with the Noam schedule, which sets the lr itself)'),
    ('--no-pin-memory', 'data loaders do not pin host memory'),
    ('--no-persistent-workers', 'data loaders restart their workers each '
     'epoch'),
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a PCM-Net captioner')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or without a path from the latest '
        'checkpoint in the work dir; the config\'s param_scheduler applies '
        'from the checkpoint\'s step (each changed value is logged)')
    for flag, text in _SWITCHES:
        parser.add_argument(flag, action='store_true', help=text)
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


def _check_lr_scales(cfg: Config, config_path: str) -> None:
    """Refuse --auto-scale-lr where the schedule sets the lr itself."""
    from mmpcm.utils.cli import InputError
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    if any(s.get('type') in ('NoamLR', 'NoamParamScheduler')
           for s in schedulers):
        raise InputError(
            config_path, '--auto-scale-lr has no effect: NoamLR sets the '
            'learning rate itself and ignores the optimizer\'s lr',
            'scale the schedule instead (param_scheduler.factor, warmup: '
            'configs/_base_/schedules/noam_fast.py shows the rule)')


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge command-line arguments into the config."""
    from mmpcm.apis.run_config import (check_training_files,
                                       default_work_dir, prepare_cfg)
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.launcher = args.launcher
    cfg.work_dir = default_work_dir(args.config,
                                    args.work_dir or cfg.get('work_dir'))
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        _check_lr_scales(cfg, args.config)
        cfg.auto_scale_lr.enable = True
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(name):
            if args.no_pin_memory:
                cfg[name].pin_memory = False
            if args.no_persistent_workers:
                cfg[name].persistent_workers = False
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    check_training_files(cfg)
    return prepare_cfg(cfg)


def train(args: argparse.Namespace) -> None:
    # The config first: a missing one is refused before the heavy imports.
    cfg = load_config(args.config)
    # Fixes and registries before mmpcm.apis loads; the Runner sets the
    # config's default scope.
    register_all_modules(init_default_scope=False)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from mmpcm.apis import naming_checkpoint

    cfg = merge_args(cfg, args)
    runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg
              else RUNNERS.build(cfg))
    with naming_checkpoint(runner):
        runner.train()


def main(argv: Optional[List[str]] = None) -> int:
    """Train; an error is one line on stderr (the traceback with --debug)."""
    return run_tool(train, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
