"""The paper's ablation on the toy world: base / +mixup / +CXE / full, each
over several seeds, as a mean ± std table (markdown and JSON). Named with
``--variants``: the large-batch recipe (``pcm_toyworld_fast.py``) and full
PCM-Net on the SynC pairing (``pcm_toyworld_sync.py``; the pairing is made
with the defaults of ``tools/data/refine_pairs.py`` when missing, and judged
against what the generator drew).

Each (variant, seed) run keeps its scores in
``<work-dir>/<variant>/seed<k>/result.json`` and is skipped when that
exists, so a rerun resumes, and several processes can share the work
(``--variants``) before a last call prints the whole table. A kept result
of another config, options or world is refused; one made by other code is
not detected: use a fresh ``--work-dir`` after changing mmpcm or the
project's code."""
import argparse
import hashlib
import json
import logging
import os
import os.path as osp
import sys
import time
from dataclasses import asdict
from typing import List, Optional

import torch

from mmpcm.setup_env import register_all_modules
from mmpcm.utils.cfg_options import CfgOptionsAction
from mmpcm.utils.cli import (InputError, add_debug_flag, run_tool,
                             thread_count)
from mmpcm.utils.fileio import atomic_write_json
from mmpcm.utils.text_io import read_json
from mmpcm_toyworld.experiment import (COLUMNS, VariantScores,
                                       load_variant_cfg, markdown_table,
                                       metric_value,
                                       paired_difference_table,
                                       test_variant, train_variant)
from mmpcm_toyworld.grounding import GroundingReport
from mmpcm_toyworld.paths import WorldPaths
from mmpcm_toyworld.refinement import RefinementReport, measure_refinement
from mmpcm_toyworld.world import WorldConfig, build_world, load_world_config

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VARIANTS = (
    ('base (no PCM, plain CE)', 'pcm_toyworld_ablation-base.py'),
    ('+ PCM mix-up', 'pcm_toyworld_ablation-mixup.py'),
    ('+ CXE loss', 'pcm_toyworld_ablation-cxe.py'),
    ('full PCM-Net', 'pcm_toyworld.py'),
)
# Run only when named with --variants: the fast recipe's scaling rule (batch
# 4x, square-root lr scaling, warm-up fixed in samples, 2x the epochs),
# against 'pcm_toyworld.py'.
EXTRA_VARIANTS = (
    ('full PCM-Net, fast recipe', 'pcm_toyworld_fast.py'),
    ('full PCM-Net + SynC pairs', 'pcm_toyworld_sync.py'),
)
SYNC_CONFIG = 'pcm_toyworld_sync.py'


def _rate(text: str) -> float:
    """argparse type of a defect rate: a share of images in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f'must be a share of synthetic images in [0, 1], got {text!r}')
    return value


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.replace('``', "'"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--world', default='data/toyworld',
                        help='the world, built when missing (default: '
                        'data/toyworld)')
    parser.add_argument('--work-dir', default='work_dirs/toyworld_ablation',
                        help='where each run and its result.json go (default: '
                        'work_dirs/toyworld_ablation)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                        help='the seeds of every variant (default: 0 1 2)')
    parser.add_argument('--defect-rate', type=_rate, default=None,
                        help='build (or use) a world with this defect rate '
                        '(default: the world\'s, 0.3)')
    parser.add_argument('--variants', nargs='+', default=None,
                        choices=[c for _, c in VARIANTS + EXTRA_VARIANTS],
                        metavar='CONFIG',
                        help='run only these configs: '
                        + ', '.join(c for _, c in VARIANTS + EXTRA_VARIANTS)
                        + ' (default: the four ablation variants; '
                        'pcm_toyworld_fast.py and pcm_toyworld_sync.py only '
                        'when named)')
    parser.add_argument('--threads', type=thread_count, default=None,
                        help='torch threads of this process after the world '
                        'is built (default: torch\'s; the world build uses '
                        'up to 2)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        metavar='KEY=VALUE',
                        help='config overrides for every variant')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def run_fingerprint(path: str, world: str, work: str, seed: int,
                    options) -> str:
    """sha256 of what a kept result was made with, as far as files say: the
    resolved config (options, seed and world paths included) and the
    world's settings. The code that ran is not part of it."""
    cfg = load_variant_cfg(path, world, work, seed, options)
    settings = asdict(load_world_config(WorldPaths(world)))
    text = cfg.pretty_text + '\n' + json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def run_once(config: str, seed: int, args: argparse.Namespace,
             options) -> dict:
    """Train and test one variant with one seed, or read its kept result.

    Raises:
        InputError: If the kept result was made with another config or
            world (naming its result.json).
    """
    work = osp.join(args.work_dir, osp.splitext(config)[0], f'seed{seed}')
    result_file = osp.join(work, 'result.json')
    path = osp.join(PROJECT, 'configs', config)
    fingerprint = run_fingerprint(path, args.world, work, seed, options)
    if osp.isfile(result_file):
        remedy = ('use a fresh --work-dir, or delete this run\'s folder to '
                  'train it again')
        kept = read_json(result_file, remedy)
        if not isinstance(kept, dict) or kept.get(
                'fingerprint') != fingerprint:
            raise InputError(result_file, 'was made with another config, '
                             'options or world than this run\'s', remedy)
        return kept['metrics']
    start = time.time()
    ckpt = train_variant(path, args.world, work, seed, options)
    metrics = test_variant(path, args.world, work, ckpt, options).metrics
    atomic_write_json(result_file, dict(config=config, seed=seed,
                                        fingerprint=fingerprint,
                                        metrics=metrics,
                                        seconds=time.time() - start))
    return metrics


def run_ablation(args: argparse.Namespace) -> int:
    # Fixes and registries before mmpcm's pipeline loads; the Runner sets
    # the config's default scope.
    register_all_modules(init_default_scope=False)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    for name in ('mmpcm', 'mmpcm_toyworld'):
        logging.getLogger(name).setLevel(logging.INFO)
    world = WorldConfig()
    if args.defect_rate is not None:
        world.defect_rate = args.defect_rate
    summary = build_world(args.world, world)
    options = args.cfg_options or None
    if args.threads:
        torch.set_num_threads(args.threads)
    refinement = None
    if args.variants and SYNC_CONFIG in args.variants:
        refinement = refine_world_pairs(args.world)
        print(refinement.summary(), flush=True)
    results = []
    for name, config in VARIANTS + EXTRA_VARIANTS:
        if (config not in args.variants if args.variants else
                (name, config) in EXTRA_VARIANTS):
            continue
        scores = {key: [] for _, key in COLUMNS}
        for seed in args.seeds:
            metrics = run_once(config, seed, args, options)
            for _, key in COLUMNS:
                scores[key].append(metric_value(metrics, key))
        results.append(VariantScores(name, scores))
        print(markdown_table(results), flush=True)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, 'ablation.json'), 'w') as f:
        json.dump(dict(world=vars(world), seeds=args.seeds,
                       options=options,
                       variants=[vars(v) for v in results],
                       grounding=summary['grounding'],
                       refinement=(refinement.to_dict()
                                   if refinement else None)),
                  f, indent=1)
    print('\n' + markdown_table(results))
    if len(results) > 1:
        print('\nPaired by seed:\n' +
              paired_difference_table(results, results[0]))
    print('\nThe world\'s CLIP on its real test renders: '
          + GroundingReport(**summary['grounding']).summary())
    if refinement is not None:
        print(refinement.summary())
    return 0


def refine_world_pairs(world_root: str) -> RefinementReport:
    """Make the SynC pairing of the world's training store (the settings of
    ``tools/data/refine_pairs.py``) when missing, and judge it."""
    from mmpcm.preprocessing.refine import refine_store
    store = WorldPaths(world_root).train_features
    out = store + '_sync'
    if not osp.isfile(osp.join(out, 'pairing.json')):
        refine_store(store, out, progress=False)
    return measure_refinement(world_root, out)


def main(argv: Optional[List[str]] = None) -> int:
    """Run; an error is one line on stderr (traceback with --debug)."""
    return run_tool(run_ablation, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
