"""Train and test PCM-Net variants on the toy world, and report them."""
import contextlib
import json
import logging
import os
import os.path as osp
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmpcm.registry import HOOKS
from .paths import WorldPaths

logger = logging.getLogger(__name__)
DEFAULT_WORLD_ROOT = 'data/toyworld'
#: The main job's config.
DEFAULT_CONFIG = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                          'configs', 'pcm_toyworld.py')
#: Paper-table columns and the metric keys they read.
COLUMNS = (('B4', 'Bleu_4'), ('M', 'METEOR'), ('R', 'ROUGE_L'),
           ('C', 'CIDEr'), ('CHAIR-i', 'chair/CHAIR-i'),
           ('CHAIR-s', 'chair/CHAIR-s'), ('obj. recall', 'chair/object_recall'),
           ('CHAIR-i colour', 'chair_colour/CHAIR-i'))
"""Caption metrics, then object hallucination by shape (``chair/``) and by
coloured shape (``chair_colour/``), all x100; CHAIR lower is better."""


#: The environment variable the toy-world configs take their world from.
WORLD_ENV = 'MMPCM_TOYWORLD'


def load_world_cfg(config: str, world_root: str) -> Config:
    """A toy-world config read for the world at ``world_root``.

    The configs name their world as ``{{$MMPCM_TOYWORLD:data/toyworld}}``
    (mmengine's environment-variable substitution), so every path of the
    config, its top-level variables included, follows the world given here
    (whatever ``MMPCM_TOYWORLD`` the caller's environment holds).
    """
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level, previous = logger.level, os.environ.get(WORLD_ENV)
    os.environ[WORLD_ENV] = world_root.rstrip('/')
    logger.setLevel(logging.WARNING)  # not a line per substituted path
    try:
        return Config.fromfile(config)
    finally:
        logger.setLevel(level)
        if previous is None:
            del os.environ[WORLD_ENV]
        else:
            os.environ[WORLD_ENV] = previous


_CONSOLE_SINK = None


@contextlib.contextmanager
def mmengine_console_off(enabled: bool = True) -> Iterator[None]:
    """Keep mmengine's console output of Runners built in the block away
    from the terminal.

    A Runner logs the environment, the whole config and the hook table
    while it is built; its console handler writes to the ``sys.stdout`` of
    that moment, so within the block it writes to a null device, while the
    log file in the work dir keeps everything. Plain ``print`` after the
    block reaches the terminal again.

    Args:
        enabled (bool): False leaves the console as it is. Defaults to True.
    """
    global _CONSOLE_SINK
    if not enabled:
        yield
        return
    if _CONSOLE_SINK is None:  # kept open: handlers write to it later
        _CONSOLE_SINK = open(os.devnull, 'w')
    with contextlib.redirect_stdout(_CONSOLE_SINK):
        yield


#: mmengine's own deprecation notices about its file backends, which say
#: nothing about the run (they stay in the log file).
_MMENGINE_NOTICES = ('"FileClient" will be deprecated',
                     '"HardDiskBackend" is the alias')


def _not_a_notice(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(notice in message for notice in _MMENGINE_NOTICES)


def console_warnings_only(runner: Runner) -> None:
    """Point the runner's console handler back at the terminal for warnings
    and errors only (after :func:`mmengine_console_off`), without mmengine's
    file-backend deprecation notices."""
    for handler in runner.logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setStream(sys.stdout)
            handler.setLevel(logging.WARNING)
            handler.addFilter(_not_a_notice)


@HOOKS.register_module()
class ToyProgressHook(Hook):
    """One line per training epoch on the terminal: epoch, loss, time."""
    priority = 'VERY_LOW'

    def before_train(self, runner: Runner) -> None:
        self._start = time.time()

    def after_train_epoch(self, runner: Runner) -> None:
        loss = runner.message_hub.get_scalar('train/loss').current()
        print(f'  training: epoch {runner.epoch + 1}/{runner.max_epochs}, loss '
              f'{loss:.3f} ({time.time() - self._start:.0f} s)', flush=True)


def load_variant_cfg(config: str, world_root: str, work_dir: str, seed: int,
                     options: Optional[dict] = None) -> Config:
    """A toy-world config, pointed at a world and a work dir, seeded.

    Without CUDA the run also turns on torch's deterministic algorithms
    (``randomness.deterministic``): every op the model uses has a
    deterministic CPU kernel, so the same seed and thread count train the
    same weights bit for bit. On CUDA it stays off (cuBLAS would need
    ``CUBLAS_WORKSPACE_CONFIG``); ``options`` can turn it on.
    """
    cfg = load_world_cfg(config, world_root)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed,
                          deterministic=not torch.cuda.is_available())
    cfg.launcher = 'none'
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if options:
        cfg.merge_from_dict(options)
    return cfg


def train_variant(config: str, world_root: str, work_dir: str, seed: int,
                  options: Optional[dict] = None, quiet: bool = False) -> str:
    """Train one variant; returns its final checkpoint.

    With ``quiet``, mmengine's console shows warnings and errors only (its
    log file in the work dir keeps everything) and one line per epoch says
    how training goes.

    A run whose final checkpoint is already complete is not trained again,
    and an interrupted one resumes from its last epoch checkpoint (the
    configs save one every epoch): mmengine names a checkpoint in
    ``last_checkpoint`` only after writing it, so a checkpoint cut off
    mid-write is never taken as done. A resumed run replays the same data
    order (the sampler seeds each epoch) but not the same dropout draws, so
    its scores can differ slightly from an uninterrupted run's.
    """
    from mmpcm.apis import naming_checkpoint, prepare_cfg
    cfg = prepare_cfg(load_variant_cfg(config, world_root, work_dir, seed,
                                       options))
    final = osp.join(work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')
    last = _last_checkpoint(work_dir)
    if last == osp.abspath(final):
        logger.info(f'{osp.basename(config)}: trained earlier ({final}); '
                    'not training again')
        return final
    if last is not None and osp.isfile(last):
        logger.info(f'resuming {osp.basename(config)} from {last}')
        cfg.resume = True
        cfg.load_from = last
    if quiet:
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='ToyProgressHook')]
    with mmengine_console_off(quiet):
        runner = Runner.from_cfg(cfg)
    if quiet:
        console_warnings_only(runner)
    with naming_checkpoint(runner):
        runner.train()
    return final


def _last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint mmengine last finished writing in ``work_dir``."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker, encoding='utf-8') as f:
        return osp.abspath(f.read().strip())


def test_variant(config: str, world_root: str, work_dir: str,
                 checkpoint: str, options: Optional[dict] = None,
                 quiet: bool = False, show_dir: Optional[str] = None):
    """Test a checkpoint on the world's real renders (tools/test.py's path).

    With ``quiet``, mmengine's console output goes to the log file only;
    with ``show_dir``, the results gallery is written there
    (``tools/test.py --show-dir``).

    Returns:
        CaptionTestResult: Metrics, paper row and predictions file.
    """
    from mmpcm.apis import run_test
    cfg = load_variant_cfg(config, world_root, work_dir, 0, options)
    with mmengine_console_off(quiet):
        return run_test(cfg, checkpoint, show_dir=show_dir,
                        config_file=config)


def most_frequent_caption_baseline(world_root: str,
                                   config: str = DEFAULT_CONFIG
                                   ) -> Dict[str, float]:
    """Scores of always emitting the corpus' most frequent caption, by the
    test metrics of ``config`` (its ``test_evaluator``), keyed
    ``<prefix>/<name>`` as a test run reports them."""
    from mmengine.registry import DefaultScope

    from mmpcm.registry import METRICS
    with open(WorldPaths(world_root).corpus, encoding='utf-8') as f:
        caption = Counter(line.strip() for line in f if line.strip()).most_common(1)[0][0]
    cfg = load_world_cfg(config, world_root)
    with open(cfg.test_evaluator[0].ann_file, encoding='utf-8') as f:
        ids = [im['id'] for im in json.load(f)['images']]
    samples = [dict(image_id=i, pred_caption=caption) for i in ids]
    scores: Dict[str, float] = {}
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmpretrain')):
        for metric_cfg in cfg.test_evaluator:
            metric = METRICS.build(metric_cfg)
            metric.process(None, samples)
            scores.update({f'{metric.prefix}/{k}': v for k, v in
                           metric.compute_metrics(metric.results).items()})
    return dict(scores, caption=caption)


def sample_predictions(predictions_file: str, gt_file: str,
                       num: int = 5) -> List[dict]:
    """A few predictions beside their references, for the report."""
    with open(predictions_file, encoding='utf-8') as f:
        preds = json.load(f)
    with open(gt_file, encoding='utf-8') as f:
        refs = defaultdict(list)
        for ann in json.load(f)['annotations']:
            refs[ann['image_id']].append(ann['caption'])
    step = max(1, len(preds) // num)
    return [dict(image_id=p['image_id'], caption=p['caption'],
                 references=refs[p['image_id']])
            for p in preds[::step][:num]]


@dataclass
class VariantScores:
    """Test scores of one variant over seeds (metric -> list of values)."""
    name: str
    scores: Dict[str, List[float]]

    def mean_std(self, key: str) -> str:
        return mean_std(self.scores[key])


def mean_std(values: Sequence[float]) -> str:
    """``'mean ± std'`` (sample std; 0 for one value), one decimal."""
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{mean:.1f} ± {std:.1f}'


def metric_value(metrics: Dict[str, float], key: str) -> float:
    """Read ``key`` from metrics with or without the evaluator prefix."""
    for name, value in metrics.items():
        if name == key or name.endswith('/' + key):
            return float(value)
    raise KeyError(f'No metric {key!r} in {sorted(metrics)}.')


def markdown_table(variants: Sequence[VariantScores]) -> str:
    """The ablation table: mean ± std per column."""
    head = '| variant | ' + ' | '.join(c for c, _ in COLUMNS) + ' |'
    rule = '|---|' + '---|' * len(COLUMNS)
    rows = [f'| {v.name} | ' + ' | '.join(v.mean_std(k) for _, k in COLUMNS)
            + ' |' for v in variants]
    return '\n'.join([head, rule, *rows])


def paired_difference_table(variants: Sequence[VariantScores],
                            base: VariantScores) -> str:
    """Each variant minus ``base``, seed by seed: mean ± std per column.

    The variants must have been run over the same seeds in the same order
    (as the ablation tool runs them), so that seed k of each is paired.

    Raises:
        ValueError: If a variant has another number of runs than ``base``.
    """
    head = ('| variant - ' + base.name + ' | ' +
            ' | '.join(c for c, _ in COLUMNS) + ' |')
    rule = '|---|' + '---|' * len(COLUMNS)
    rows = []
    for v in variants:
        if v is base:
            continue
        cells = []
        for _, key in COLUMNS:
            a, b = v.scores[key], base.scores[key]
            if len(a) != len(b):
                raise ValueError(f'{v.name} has {len(a)} runs and {base.name} '
                                 f'{len(b)}: pair them over the same seeds.')
            cells.append(mean_std([x - y for x, y in zip(a, b)]))
        rows.append(f'| {v.name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join([head, rule, *rows])
