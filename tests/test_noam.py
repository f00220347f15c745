"""NoamLR: X-modaler's Noam schedule as an mmengine parameter scheduler."""
import math
import uuid

import pytest
import torch

import mmpcm.registry  # noqa: F401  (applies the compat patches)
from mmengine.hooks import Hook
from mmpcm.testing import TinyRegressionDataset, TinyRegressionModel
from mmengine.runner import Runner
from mmpcm.engine import NoamLR, noam_value
from mmpcm.registry import PARAM_SCHEDULERS

BATCHES_PER_EPOCH = 4


def formula(t, model_size=512, warmup=10000, factor=1.0):
    """The release's formula, written out independently of the module."""
    return factor * model_size**-0.5 * min(t**-0.5, t * warmup**-1.5)


def make_optimizer(lr=123.0):
    """SGD over one parameter; its lr must be ignored by NoamLR."""
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def run_steps(scheduler, optimizer, n):
    """Takes n optimizer+scheduler steps; returns the lr before each."""
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    return lrs


def test_formula_values():
    assert noam_value(1) == pytest.approx(512**-0.5 * 10000**-1.5)
    assert noam_value(10000) == pytest.approx(512**-0.5 * 10000**-0.5)
    assert noam_value(10000) == pytest.approx(4.4194e-4, rel=1e-4)
    assert noam_value(40000) == pytest.approx(noam_value(10000) / 2)
    with pytest.raises(ValueError):
        noam_value(0)


def test_scheduler_values_at_1_warmup_4warmup():
    optimizer = make_optimizer()
    scheduler = NoamLR(optimizer)
    lrs = run_steps(scheduler, optimizer, 40000)
    # Iteration k (0-based) uses t = k + 1; base lr 123 is ignored.
    assert lrs[0] == pytest.approx(formula(1), rel=1e-12)
    assert lrs[9999] == pytest.approx(formula(10000), rel=1e-12)
    assert lrs[39999] == pytest.approx(formula(40000), rel=1e-12)
    assert max(lrs) == lrs[9999]
    assert not scheduler.by_epoch


def test_begin_end():
    optimizer = make_optimizer(lr=0.5)
    scheduler = NoamLR(optimizer, warmup=3, begin=2, end=5)
    lrs = run_steps(scheduler, optimizer, 7)
    expected = [0.5, 0.5] + [formula(t, warmup=3) for t in (1, 2, 3)]
    # After `end` the last value stays.
    expected += [formula(3, warmup=3)] * 2
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_state_dict_resume():
    optimizer = make_optimizer()
    scheduler = NoamLR(optimizer, warmup=5)
    run_steps(scheduler, optimizer, 7)
    state = scheduler.state_dict()
    expected = run_steps(scheduler, optimizer, 6)

    new_optimizer = make_optimizer()
    new_scheduler = NoamLR(new_optimizer, warmup=5)
    new_scheduler.load_state_dict(state)
    new_optimizer.step()
    new_scheduler.step()
    resumed = [new_optimizer.param_groups[0]['lr']]
    resumed += run_steps(new_scheduler, new_optimizer, 6)[1:]
    # The first step after loading computes t = 9 (8 steps taken).
    assert expected[1:] == pytest.approx(resumed[:5], rel=1e-12)
    assert expected == pytest.approx(
        [formula(t, warmup=5) for t in range(8, 14)], rel=1e-12)


def test_registered():
    assert PARAM_SCHEDULERS.get('NoamLR') is NoamLR


class LrRecorder(Hook):
    """Records (iter, lr) before each training iteration."""

    def __init__(self):
        self.lrs = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs[runner.iter] = runner.optim_wrapper.get_lr()['lr'][0]


def train(work_dir, scheduler, max_epochs, **kwargs):
    """Trains the tiny model; returns {iter: lr}."""
    recorder = LrRecorder()
    runner = Runner(
        model=TinyRegressionModel(),
        work_dir=str(work_dir),
        experiment_name=f'noam_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=TinyRegressionDataset(2 * BATCHES_PER_EPOCH),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='Adam', lr=5e-4)),
        param_scheduler=scheduler,
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_scope='mmpretrain',
        custom_hooks=[recorder],
        **kwargs)
    runner.train()
    return recorder.lrs


def test_runner_iteration_based(tmp_path):
    lrs = train(
        tmp_path,
        dict(type='NoamLR', model_size=512, warmup=3, by_epoch=False),
        max_epochs=2)
    assert sorted(lrs) == list(range(2 * BATCHES_PER_EPOCH))
    for k, lr in lrs.items():
        assert lr == pytest.approx(formula(k + 1, warmup=3), rel=1e-12)


def test_runner_resume_continues(tmp_path):
    # An explicit `end`: the Runner would otherwise set it to the first
    # run's max_iters, and resuming restores that `end` too.
    scheduler = dict(type='NoamLR', warmup=3, by_epoch=False, end=1000)
    train(tmp_path, scheduler, max_epochs=2)
    lrs = train(tmp_path, scheduler, max_epochs=3, resume=True)
    resumed_iters = range(2 * BATCHES_PER_EPOCH, 3 * BATCHES_PER_EPOCH)
    assert sorted(lrs) == list(resumed_iters)
    for k in resumed_iters:
        assert lrs[k] == pytest.approx(formula(k + 1, warmup=3), rel=1e-12)


def test_runner_epoch_based(tmp_path):
    lrs = train(
        tmp_path,
        dict(type='NoamLR', warmup=2, by_epoch=True),
        max_epochs=3)
    for k, lr in lrs.items():
        epoch = k // BATCHES_PER_EPOCH
        assert lr == pytest.approx(formula(epoch + 1, warmup=2), rel=1e-12)


def test_runner_convert_to_iter_based(tmp_path):
    lrs = train(
        tmp_path,
        dict(type='NoamLR', warmup=2, factor=1.0, convert_to_iter_based=True),
        max_epochs=3)
    iters = BATCHES_PER_EPOCH
    for k, lr in lrs.items():
        # warmup 2 epochs -> 2 * iters iterations, factor * sqrt(iters).
        expected = formula(
            k + 1, warmup=2 * iters, factor=math.sqrt(iters))
        assert lr == pytest.approx(expected, rel=1e-12)
    # At each epoch's last iteration it meets the epoch-based curve.
    for epoch in range(3):
        assert lrs[(epoch + 1) * iters - 1] == pytest.approx(
            formula(epoch + 1, warmup=2), rel=1e-12)


def test_runner_fills_end_from_max_epochs_without_by_epoch(tmp_path):
    # The pitfall the module docstring warns about: with no `by_epoch` in
    # the config the Runner sets end=max_epochs (2) although NoamLR is
    # iteration-based, so the lr freezes after two iterations.
    lrs = train(tmp_path, dict(type='NoamLR', warmup=3), max_epochs=2)
    assert lrs[1] == pytest.approx(formula(2, warmup=3), rel=1e-12)
    assert lrs[7] == lrs[2] == lrs[1]
