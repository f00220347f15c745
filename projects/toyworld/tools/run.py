"""The offline main job: build the toy world, train PCM-Net on its synthetic
pairs, test on its real renders, and print the scores beside a trivial
baseline and a few captions beside their scenes' true descriptions."""
import argparse
import json
import logging
import os.path as osp
import sys
from typing import List, Optional

from mmpcm.setup_env import register_all_modules
from mmpcm.utils.cli import add_debug_flag, run_tool
from mmpcm_toyworld.experiment import (COLUMNS, metric_value,
                                       most_frequent_caption_baseline,
                                       sample_predictions, test_variant,
                                       train_variant)
from mmpcm_toyworld.grounding import GroundingReport
from mmpcm_toyworld.world import WorldConfig, build_world

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(PROJECT, 'configs', 'pcm_toyworld.py')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--world', default=None,
                        help='where the world is built (resumable; default: '
                        'data/toyworld, with --small data/toyworld_small)')
    parser.add_argument('--work-dir', default=None,
                        help='where PCM-Net is trained and tested (default: '
                        'work_dirs/pcm_toyworld, with --small '
                        'work_dirs/pcm_toyworld_small)')
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--small', action='store_true',
                        help='a shrunken world and run: a smoke test whose '
                        'captions collapse to one sentence (minutes; see the '
                        'README)')
    parser.add_argument('--verbose', action='store_true',
                        help="show mmengine's full log (config, hooks, "
                        'every logging interval) on the terminal too')
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    # --small keeps its own folders, so it never meets the full world's.
    suffix = '_small' if args.small else ''
    args.world = args.world or f'data/toyworld{suffix}'
    args.work_dir = args.work_dir or f'work_dirs/pcm_toyworld{suffix}'
    return args


SMALL_WORLD = WorldConfig(num_corpus_scenes=120, num_test_scenes=30,
                          num_clip_scenes=400, clip_width=64, clip_layers=2,
                          clip_grounding_steps=60, clip_steps=30)
SMALL_RUN = {'train_cfg.max_epochs': 4, 'param_scheduler.warmup': 20}


def row(name: str, metrics: dict) -> str:
    return f'| {name} | ' + ' | '.join(
        f'{metric_value(metrics, key):.1f}' for _, key in COLUMNS) + ' |'


def run_main_job(args: argparse.Namespace) -> int:
    # Fixes and registries before mmpcm's pipeline loads; the Runner sets
    # the config's default scope.
    register_all_modules(init_default_scope=False)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    for name in ('mmpcm', 'mmpcm_toyworld'):
        logging.getLogger(name).setLevel(logging.INFO)
    world_cfg = SMALL_WORLD if args.small else WorldConfig()
    summary = build_world(args.world, world_cfg)
    options = SMALL_RUN if args.small else None
    print(f'Training PCM-Net ({osp.basename(args.config)}, seed '
          f'{args.seed}); mmengine\'s full log goes to a timestamped '
          f'folder in {args.work_dir}',
          flush=True)
    checkpoint = train_variant(args.config, args.world, args.work_dir,
                               args.seed, options, quiet=not args.verbose)
    print('Testing on the real test renders', flush=True)
    result = test_variant(args.config, args.world, args.work_dir, checkpoint,
                          options, quiet=not args.verbose,
                          show_dir=osp.join(args.work_dir, 'gallery'))
    baseline = most_frequent_caption_baseline(args.world, args.config)
    table = '\n'.join([
        '| model | ' + ' | '.join(c for c, _ in COLUMNS) + ' |',
        '|---|' + '---|' * len(COLUMNS),
        row(f'always "{baseline["caption"]}"', baseline),
        row('PCM-Net', result.metrics),
    ])
    print('\nToy world: {num_pairs} synthetic pairs (defect rate {rate}), '
          '{num_test_images} real test renders; CLIP top-1 retrieval '
          '{clip:.2f}\n'.format(rate=world_cfg.defect_rate,
                                clip=summary['clip_retrieval_top1'],
                                **summary))
    print('The world\'s CLIP on the real test renders: ' +
          GroundingReport(**summary['grounding']).summary() + '\n')
    print(table)
    print('\nAll figures x100. CHAIR-i: mentioned shapes not in the image / '
          'mentioned shapes; CHAIR-s: captions naming such a shape / '
          'captions (both lower is better); obj. recall: the scenes\' shapes '
          'a caption names / all their shapes (higher is better); CHAIR-i '
          'colour: CHAIR-i over coloured shapes ("red star").')
    if args.small:
        print('(A shrunken world: a smoke test; its figures say little.)')
    print('\nGenerated captions and the true descriptions of their scenes:')
    for item in sample_predictions(result.predictions_file,
                                   osp.join(args.world, 'test_gt.json')):
        print(f'- {item["image_id"]}: {item["caption"]}')
        for ref in item['references'][:3]:
            print(f'    true: {ref}')
    result_file = osp.join(args.work_dir, 'toyworld_result.json')
    with open(result_file, 'w') as f:
        json.dump(dict(world=summary, metrics=result.metrics,
                       baseline=baseline), f, indent=1)
    print(f'\nAll scores: {result_file}')
    print(f'Gallery (captions, hallucinated shapes, PCM\'s concepts and '
          f'patches per test image; open in a browser): '
          f'{result.gallery_file}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run; an error is one line on stderr (traceback with --debug)."""
    return run_tool(run_main_job, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
