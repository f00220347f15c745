"""Resuming with a changed param_scheduler runs the config's schedule from
the checkpoint's step (PCMResumeScheduleHook), and says what changed."""
import logging
import math
import os.path as osp
import uuid

import pytest

import mmpcm.registry  # noqa: F401  (applies the compat patches)
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmpcm.apis import prepare_cfg
from mmpcm.testing import (TinyRegressionDataset, TinyRegressionModel,
                           write_smoke_data)
from mmpcm.utils.checkpoint import load_checkpoint_file
from tool_loader import run_tool_here

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'pcm', 'pcm_smoke.py')
ITERS = 4  # per epoch
HOOK = dict(type='PCMResumeScheduleHook')


def noam(t, warmup, model_size=512, factor=1.0):
    """The Noam formula, written out independently of mmpcm."""
    return factor * model_size**-0.5 * min(t**-0.5, t * warmup**-1.5)


class LrRecorder(Hook):
    """Records the lr of each training iteration, by iteration."""

    def __init__(self):
        self.lrs = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs[runner.iter] = runner.optim_wrapper.get_lr()['lr'][0]


def train(work_dir, scheduler, max_epochs, hooks=(HOOK, ), lr=5e-4,
          **kwargs):
    """Trains the tiny model; returns ({iter: lr}, log text)."""
    recorder = LrRecorder()
    runner = Runner(
        model=TinyRegressionModel(),
        work_dir=str(work_dir),
        experiment_name=f'resume_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=TinyRegressionDataset(2 * ITERS),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=lr)),
        param_scheduler=scheduler,
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=1)),
        default_scope='mmpretrain',
        custom_hooks=[recorder, *hooks],
        **kwargs)
    runner.train()
    log_file, = [h.baseFilename for h in runner.logger.handlers
                 if isinstance(h, logging.FileHandler)]
    with open(log_file) as file:
        return recorder.lrs, file.read()


RESUMED = range(2 * ITERS, 3 * ITERS)


def test_without_the_hook_the_checkpoints_schedule_runs(tmp_path):
    """mmengine alone: the checkpoint's warmup wins over the config's."""
    train(tmp_path, dict(type='NoamLR', warmup=3, by_epoch=False, end=1000),
          2, hooks=())
    lrs, log = train(tmp_path, dict(type='NoamLR', warmup=5, by_epoch=False,
                                    end=1000), 3, hooks=(), resume=True)
    assert lrs[2 * ITERS + 1] == pytest.approx(noam(2 * ITERS + 2, 3))
    assert 'resume: param_scheduler' not in log


def test_changed_noam_values_are_applied_from_the_saved_step(tmp_path):
    train(tmp_path, dict(type='NoamLR', warmup=3, by_epoch=False, end=1000),
          2)
    lrs, log = train(
        tmp_path,
        dict(type='NoamLR', warmup=5, factor=2.0, by_epoch=False, end=1000),
        3, resume=True)
    assert sorted(lrs) == list(RESUMED)
    # Every resumed iteration, the first included, follows the new values
    # at the kept step: iteration k uses t = k + 1.
    for k in RESUMED:
        assert lrs[k] == pytest.approx(noam(k + 1, 5, factor=2.0), rel=1e-12)
    assert ('resume: param_scheduler[0].factor 1 -> 2 (config applied, '
            'step counter kept)') in log
    assert ('resume: param_scheduler[0].warmup 3 -> 5 (config applied, '
            'step counter kept)') in log
    assert 'resume: param_scheduler[0]: lr set to' in log
    # What ran is what the next checkpoint records.
    state = load_checkpoint_file(str(tmp_path / 'epoch_3.pth'))
    assert state['param_schedulers'][0]['warmup'] == 5
    assert state['param_schedulers'][0]['factor'] == 2.0
    assert state['param_schedulers'][0]['_global_step'] == 3 * ITERS


def test_unchanged_schedule_logs_nothing_and_continues(tmp_path):
    scheduler = dict(type='NoamLR', warmup=3, by_epoch=False, end=1000)
    train(tmp_path, scheduler, 2)
    lrs, log = train(tmp_path, scheduler, 3, resume=True)
    for k in RESUMED:
        assert lrs[k] == pytest.approx(noam(k + 1, 3), rel=1e-12)
    assert 'resume: param_scheduler' not in log


def test_an_end_filled_from_max_epochs_follows_the_new_length(tmp_path):
    # Without `end`, the Runner ends the schedule at the run's max_iters;
    # the checkpoint's end (8) froze the lr of a longer resumed run.
    scheduler = dict(type='NoamLR', warmup=3, by_epoch=False)
    train(tmp_path, scheduler, 2)
    lrs, log = train(tmp_path, scheduler, 3, resume=True)
    for k in RESUMED:
        assert lrs[k] == pytest.approx(noam(k + 1, 3), rel=1e-12)
    assert ('resume: param_scheduler[0].end 8 -> 12 (config applied, step '
            'counter kept)') in log


def test_a_moved_begin_recomputes_the_position(tmp_path):
    train(tmp_path, dict(type='NoamLR', warmup=3, by_epoch=False, end=1000),
          2)
    lrs, log = train(
        tmp_path,
        dict(type='NoamLR', warmup=3, by_epoch=False, begin=2, end=1000), 3,
        resume=True)
    # As if it had begun at iteration 2: iteration k uses t = k - 1.
    for k in RESUMED:
        assert lrs[k] == pytest.approx(noam(k - 1, 3), rel=1e-12)
    assert 'resume: param_scheduler[0].begin 0 -> 2' in log


def test_a_chained_scheduler_with_a_closed_form(tmp_path):
    """mmengine's LinearLR (chained: each step multiplies the current lr):
    the new start factor applies from the first resumed iteration."""
    train(tmp_path, dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                         begin=0, end=20), 2, lr=0.01)
    lrs, log = train(tmp_path, dict(type='LinearLR', start_factor=0.5,
                                    by_epoch=False, begin=0, end=20), 3,
                     lr=0.01, resume=True)
    # LinearLR's factor at step k: start + (1 - start) * k / (end - 1).
    for k in RESUMED:
        assert lrs[k] == pytest.approx(0.01 * (0.5 + 0.5 * k / 19), rel=1e-9)
    assert ('resume: param_scheduler[0].start_factor 0.1 -> 0.5 (config '
            'applied, step counter kept)') in log


def test_prepare_cfg_adds_the_hook():
    cfg = prepare_cfg(Config(dict(param_scheduler=dict(type='NoamLR'))))
    assert HOOK in cfg.custom_hooks
    assert HOOK not in prepare_cfg(Config(dict())).get('custom_hooks', [])


def test_train_tool_resume_with_a_changed_warmup(tmp_path, monkeypatch,
                                                 capsys):
    """tools/train.py --resume with another warmup: the new one runs."""
    write_smoke_data(str(tmp_path / 'data' / 'smoke'))
    monkeypatch.chdir(tmp_path)
    work = str(tmp_path / 'run')

    def run(epochs, *extra):
        result = run_tool_here(
            capsys, 'train', CONFIG, '--work-dir', work, '--no-validate',
            *extra, '--cfg-options', 'default_hooks.checkpoint.interval=1',
            'default_hooks.logger.interval=1',
            f'train_cfg.max_epochs={epochs}', *(
                ['param_scheduler.warmup=20'] if extra else []))
        assert result.status == 0, result.err[-3000:]
        return result.log

    run(1)
    log = run(2, '--resume')
    assert ('resume: param_scheduler[0].warmup 40 -> 20 (config applied, '
            'step counter kept)') in log
    # 2 iterations per epoch: after 4 the optimizer holds t = 5's lr, with
    # the smoke config's model size 64 and factor 0.1.
    ckpt = load_checkpoint_file(osp.join(work, 'epoch_2.pth'))
    assert ckpt['optimizer']['param_groups'][0]['lr'] == pytest.approx(
        noam(5, 20, model_size=64, factor=0.1), rel=1e-6)
    assert ckpt['param_schedulers'][0]['warmup'] == 20
    assert not math.isclose(noam(5, 20, 64, 0.1), noam(5, 40, 64, 0.1))
