"""Train and test PCM-Net variants on the toy world, and report them."""
import json
import logging
import os.path as osp
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config
from mmengine.runner import Runner
from .paths import WorldPaths

logger = logging.getLogger(__name__)
DEFAULT_WORLD_ROOT = 'data/toyworld'
#: Paper-table columns and the metric keys they read.
COLUMNS = (('B4', 'Bleu_4'), ('M', 'METEOR'), ('R', 'ROUGE_L'),
           ('C', 'CIDEr'), ('CHAIR-i', 'chair/CHAIR-i'),
           ('CHAIR-s', 'chair/CHAIR-s'), ('obj. recall', 'chair/object_recall'),
           ('CHAIR-i colour', 'chair_colour/CHAIR-i'))
"""Caption metrics, then object hallucination by shape (``chair/``) and by
coloured shape (``chair_colour/``), all x100; CHAIR lower is better."""


def set_world_root(cfg: Config, root: str) -> None:
    """Point every ``data/toyworld`` path of a toy-world config at ``root``."""

    def rewrite(node):
        if isinstance(node, dict):
            return {k: rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        if isinstance(node, str) and DEFAULT_WORLD_ROOT in node:
            return node.replace(DEFAULT_WORLD_ROOT, root.rstrip('/'))
        return node

    if root.rstrip('/') == DEFAULT_WORLD_ROOT:
        return
    for key in ('model', 'train_dataloader', 'val_dataloader',
                'test_dataloader', 'val_evaluator', 'test_evaluator'):
        if cfg.get(key) is not None:
            cfg[key] = rewrite(cfg[key].to_dict() if hasattr(
                cfg[key], 'to_dict') else cfg[key])


def load_variant_cfg(config: str, world_root: str, work_dir: str, seed: int,
                     options: Optional[dict] = None) -> Config:
    """A toy-world config, pointed at a world and a work dir, seeded."""
    cfg = Config.fromfile(config)
    set_world_root(cfg, world_root)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.launcher = 'none'
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if options:
        cfg.merge_from_dict(options)
    return cfg


def train_variant(config: str, world_root: str, work_dir: str, seed: int,
                  options: Optional[dict] = None) -> str:
    """Train one variant; returns its final checkpoint.

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
    runner = Runner.from_cfg(cfg)
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
                 checkpoint: str, options: Optional[dict] = None):
    """Test a checkpoint on the world's real renders (tools/test.py's path).

    Returns:
        CaptionTestResult: Metrics, paper row and predictions file.
    """
    from mmpcm.apis import run_test
    cfg = load_variant_cfg(config, world_root, work_dir, 0, options)
    return run_test(cfg, checkpoint)


def most_frequent_caption_baseline(world_root: str) -> Dict[str, float]:
    """Scores of always emitting the corpus' most frequent caption."""
    from mmpcm.evaluation.metrics.caption_metric import PCMCaptionMetric
    from mmpcm.evaluation.metrics.chair_metric import PCMCHAIRMetric
    with open(WorldPaths(world_root).corpus, encoding='utf-8') as f:
        caption = Counter(line.strip() for line in f if line.strip()).most_common(1)[0][0]
    gt_file = osp.join(world_root, 'test_gt.json')
    with open(gt_file, encoding='utf-8') as f:
        ids = [im['id'] for im in json.load(f)['images']]
    samples = [dict(image_id=i, pred_caption=caption) for i in ids]
    metric = PCMCaptionMetric(ann_file=gt_file)
    metric.process(None, samples)
    scores = metric.compute_metrics(metric.results)
    paths = WorldPaths(world_root)
    for prefix, objects, synonyms in (
            ('chair', paths.test_objects, paths.object_synonyms),
            ('chair_colour', paths.test_coloured_objects,
             paths.coloured_object_synonyms)):
        chair = PCMCHAIRMetric(objects, synonyms, prefix=prefix)
        chair.process(None, samples)
        scores.update({f'{prefix}/{k}': v for k, v in
                       chair.compute_metrics(chair.results).items()})
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
