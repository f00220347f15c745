"""Checkpoint choice: every validating config keeps the best checkpoint by
validation CIDEr (paper configs on Karpathy val, every epoch), and a work dir
resolves to it."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

import mmpcm  # noqa: F401  (registers mmpcm's parts)
from mmpcm.apis.best_checkpoint import (BEST_METRIC, CheckpointNotFoundError,
                                        best_checkpoint_prefix,
                                        find_best_checkpoint,
                                        resolve_checkpoint, save_best_metric)
from mmpcm.evaluation.metrics import PCMCaptionMetric
from mmpcm.evaluation.metrics.caption_metric import DEFAULT_METRICS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PCM_CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', 'pcm', '*.py')) +
    glob.glob(osp.join(ROOT, 'projects', 'toyworld', 'configs', '*.py')))
# Configs on data without a validation split: the offline world (tested at
# its last epoch, never validated) and the smoke run (one evaluation set).
NOT_PAPER = ('pcm_toyworld', 'pcm_smoke')


def _validates(cfg: Config) -> bool:
    parts = [cfg.get(k) for k in ('val_dataloader', 'val_cfg',
                                  'val_evaluator')]
    assert all(p is None for p in parts) or all(
        p is not None for p in parts), 'val loader, loop and evaluator must '\
        'be all set or all None'
    return parts[0] is not None


@pytest.mark.parametrize('path', PCM_CONFIGS, ids=osp.basename)
def test_validating_configs_keep_the_best_checkpoint_by_cider(path):
    cfg = Config.fromfile(path)
    hook = cfg.default_hooks.checkpoint
    if not _validates(cfg):
        assert hook.get('save_best') is None
        return
    evaluator = cfg.val_evaluator
    assert evaluator.type == 'PCMCaptionMetric'
    # the key the metric returns for CIDEr, as mmengine's hook looks it up
    prefix = evaluator.get('prefix', PCMCaptionMetric.default_prefix)
    assert 'CIDEr' in evaluator.get('metrics', DEFAULT_METRICS)
    assert hook.save_best == f'{prefix}/CIDEr' == BEST_METRIC
    assert hook.rule == 'greater'
    assert save_best_metric(cfg) == BEST_METRIC


@pytest.mark.parametrize('path', [
    p for p in PCM_CONFIGS if not osp.basename(p).startswith(NOT_PAPER)
], ids=osp.basename)
def test_paper_configs_validate_on_karpathy_val_every_epoch(path):
    cfg = Config.fromfile(path)
    assert _validates(cfg)
    assert cfg.train_cfg.val_interval == 1
    val_root = cfg.val_dataloader.dataset.data_root
    assert osp.basename(val_root).startswith('val_features_')
    assert cfg.val_evaluator.ann_file.endswith('karpathy_val_gt.json')
    # never the test split, nor the training data
    assert val_root not in (cfg.test_dataloader.dataset.get('data_root'),
                            cfg.train_dataloader.dataset.data_root)
    test_evaluators = cfg.test_evaluator if isinstance(
        cfg.test_evaluator, list) else [cfg.test_evaluator]
    assert all(e.ann_file.endswith('karpathy_test_gt.json')
               for e in test_evaluators)


@pytest.mark.parametrize('path', [
    p for p in PCM_CONFIGS if osp.basename(p).startswith('pcm_toyworld')
], ids=osp.basename)
def test_toy_world_configs_never_validate_on_their_test_set(path):
    assert not _validates(Config.fromfile(path))


def test_best_checkpoint_file_name_is_mmengines():
    assert best_checkpoint_prefix() == 'best_coco-caption_CIDEr_'
    assert best_checkpoint_prefix('a/b/c') == 'best_a_b_c_'


def test_resolve_a_work_dir(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    for name in ('epoch_11.pth', 'epoch_12.pth',
                 'best_coco-caption_Bleu_1_epoch_12.pth'):
        (work / name).write_bytes(b'')
    # only another metric's best: refused, and that file named
    with pytest.raises(CheckpointNotFoundError) as err:
        resolve_checkpoint(work)
    assert str(err.value) == (
        f'{work}: no best-coco-caption/CIDEr checkpoint '
        '(best_coco-caption_CIDEr_*.pth) (it has '
        'best_coco-caption_Bleu_1_epoch_12.pth, epoch_11.pth, epoch_12.pth); '
        f'pass a checkpoint file (e.g. {work / "epoch_12.pth"}), or train '
        'with validation (without --no-validate) to keep a best one')

    best = work / 'best_coco-caption_CIDEr_epoch_7.pth'
    best.write_bytes(b'')
    resolved = resolve_checkpoint(work)
    assert resolved.path == find_best_checkpoint(work) == str(best)
    assert resolved.describe() == (
        f'checkpoint: {best} (best coco-caption/CIDEr on validation in '
        f'{work})')
    # a file is kept as given, existing or not
    assert resolve_checkpoint(work / 'epoch_12.pth') == (
        str(work / 'epoch_12.pth'), None, None)
    assert resolve_checkpoint('nope.pth').describe() == 'checkpoint: nope.pth'
    # another metric's best, when a config keeps that one
    assert resolve_checkpoint(work, 'coco-caption/Bleu_1').path == str(
        work / 'best_coco-caption_Bleu_1_epoch_12.pth')

    # no model: the given work dir's best, which must exist
    assert resolve_checkpoint(None, work_dir=work).path == str(best)
    with pytest.raises(CheckpointNotFoundError, match=(
            f'^{tmp_path / "nope"}: no such work dir; train the config '
            'first')):
        resolve_checkpoint(None, work_dir=tmp_path / 'nope')

    (work / 'best_coco-caption_CIDEr_epoch_3.pth').write_bytes(b'')
    with pytest.raises(CheckpointNotFoundError, match=r'2 best-coco-caption/'
                       r'CIDEr checkpoints \(best_coco-caption_CIDEr_epoch_3'
                       r'.pth, best_coco-caption_CIDEr_epoch_7.pth\)'):
        resolve_checkpoint(work)


def test_save_best_metric_of_a_config():
    assert save_best_metric(None) == BEST_METRIC
    assert save_best_metric(dict(default_hooks=dict(checkpoint=dict(
        save_best='auto')))) == BEST_METRIC
    assert save_best_metric(dict(default_hooks=dict(checkpoint=dict(
        save_best='x/METEOR')))) == 'x/METEOR'
