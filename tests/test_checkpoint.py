"""Loading mmengine checkpoints under torch >= 2.6 (ENVIRONMENT.md item 2)."""
import os
import pickle
import shutil
import uuid

import numpy as np
import pytest
import torch

import mmpcm.registry  # noqa: F401  (applies the compat patches)
from mmengine.hooks import Hook
from mmengine.logging.history_buffer import HistoryBuffer
from mmpcm.testing import TinyRegressionDataset, TinyRegressionModel
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import load_from_local as mmengine_local_loader
from mmpcm.utils.checkpoint import (UntrustedCheckpointError,
                                    load_checkpoint_file,
                                    load_trusted_checkpoint)

ITERS_PER_EPOCH = 2


class IterRecorder(Hook):
    """Records the runner's (epoch, iter) before each training iteration."""

    def __init__(self):
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.seen.append((runner.epoch, runner.iter))


def build_runner(work_dir, max_epochs, **kwargs):
    """A CPU Runner on the tiny model; extra kwargs go to Runner."""
    return Runner(
        model=TinyRegressionModel(),
        work_dir=str(work_dir),
        experiment_name=f'ckpt_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=TinyRegressionDataset(4 * ITERS_PER_EPOCH),
            batch_size=4,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='Adam', lr=0.01)),
        param_scheduler=dict(
            type='LinearLR', start_factor=0.5, by_epoch=False, begin=0,
            end=3),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        default_scope='mmpretrain',
        **kwargs)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Trains 2 epochs and returns (work_dir, final model state)."""
    work_dir = tmp_path_factory.mktemp('train')
    runner = build_runner(work_dir, max_epochs=2)
    runner.train()
    state = {k: v.clone() for k, v in runner.model.state_dict().items()}
    return work_dir, state


def copy_work_dir(src, dst):
    """Copies the checkpoints (and last_checkpoint, re-pointed) to dst."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        shutil.copy(src / name, dst / name)
    (dst / 'last_checkpoint').write_text(str(dst / 'epoch_2.pth'))
    return dst


def test_breakage_exists_without_the_fix(trained):
    work_dir, _ = trained
    ckpt = str(work_dir / 'epoch_2.pth')
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(ckpt)
    # mmengine's own local loader, which the fix replaces.
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        mmengine_local_loader(ckpt, map_location='cpu')


def test_load_checkpoint_file(trained):
    work_dir, state = trained
    before = set(torch.serialization.get_safe_globals())
    ckpt = load_checkpoint_file(str(work_dir / 'epoch_2.pth'))
    # The allowlist is scoped to the call.
    assert set(torch.serialization.get_safe_globals()) == before
    assert ckpt['meta']['epoch'] == 2
    assert ckpt['meta']['iter'] == 2 * ITERS_PER_EPOCH
    for key, value in state.items():
        torch.testing.assert_close(ckpt['state_dict'][key], value)
    buffer = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert np.isfinite(buffer.mean())
    assert isinstance(ckpt['message_hub']['runtime_info']['eta'], np.floating)


def test_trusted_route_loads_the_same(trained):
    work_dir, _ = trained
    ckpt = load_trusted_checkpoint(str(work_dir / 'epoch_1.pth'))
    assert ckpt['meta']['epoch'] == 1


def test_mmengine_load_checkpoint(trained):
    work_dir, state = trained
    model = TinyRegressionModel()
    load_checkpoint(model, str(work_dir / 'epoch_2.pth'), map_location='cpu')
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_runner_resume_latest(trained, tmp_path):
    work_dir = copy_work_dir(trained[0], tmp_path / 'resume')
    recorder = IterRecorder()
    runner = build_runner(
        work_dir, max_epochs=3, resume=True, custom_hooks=[recorder])
    runner.train()
    # Resumed after epoch 2: only epoch 3 (index 2) runs, from iter 4.
    assert recorder.seen == [(2, 4), (2, 5)]
    assert (runner.epoch, runner.iter) == (3, 6)
    # The LinearLR schedule (3 steps) finished before the checkpoint.
    assert runner.optim_wrapper.get_lr()['lr'] == [pytest.approx(0.01)]


def test_runner_resume_from_load_from(trained, tmp_path):
    work_dir = copy_work_dir(trained[0], tmp_path / 'resume_from')
    recorder = IterRecorder()
    runner = build_runner(
        work_dir,
        max_epochs=2,
        resume=True,
        load_from=str(work_dir / 'epoch_1.pth'),
        custom_hooks=[recorder])
    runner.train()
    assert recorder.seen == [(1, 2), (1, 3)]
    # The scheduler state resumed too: 2 steps before, 2 after.
    assert runner.param_schedulers[0]._global_step == 2 * ITERS_PER_EPOCH


def test_runner_load_from_weights_only(trained, tmp_path):
    work_dir, state = trained
    runner = build_runner(
        tmp_path / 'test', max_epochs=2,
        load_from=str(work_dir / 'epoch_2.pth'))
    runner.load_or_resume()
    for key, value in state.items():
        torch.testing.assert_close(runner.model.state_dict()[key], value)


class ShellPayload:
    """Would create the marker file through os.system when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


class OpenPayload:
    """Would create the marker file through builtins.open when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), 'w')


class GetattrPayload:
    """Asks for getattr beyond HistoryBuffer's statistics methods."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def _payloads(marker):
    return {
        'os.system': ShellPayload(marker),
        'open': OpenPayload(marker),
        'getattr': GetattrPayload(),
        'object array': np.array([1, 'a'], dtype=object),
    }


@pytest.mark.parametrize('kind', ['os.system', 'open', 'getattr',
                                  'object array'])
@pytest.mark.parametrize('route', ['load_checkpoint_file', 'mmengine'])
def test_malicious_checkpoint_refused(tmp_path, kind, route):
    marker = tmp_path / 'pwned'
    ckpt = tmp_path / 'evil.pth'
    torch.save(
        dict(
            meta=dict(epoch=1),
            state_dict={'linear.weight': torch.zeros(1, 2)},
            extra=_payloads(marker)[kind]), ckpt)
    with pytest.raises(UntrustedCheckpointError) as info:
        if route == 'mmengine':
            load_checkpoint(TinyRegressionModel(), str(ckpt), map_location='cpu')
        else:
            load_checkpoint_file(str(ckpt))
    assert not marker.exists()
    message = str(info.value)
    assert str(ckpt) in message
    assert 'mmpcm.utils.checkpoint.load_trusted_checkpoint' in message
    assert isinstance(info.value, pickle.UnpicklingError)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint_file(str(tmp_path / 'nothing.pth'))
