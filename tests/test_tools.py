"""tools/train.py, tools/dist_train.sh (2 gloo processes), --resume and
tools/test.py, end to end on the tiny smoke config.

The Python tools run in this process, through their ``main(argv)``
(:func:`run_tool_here`); only dist_train.sh, which starts its own
processes, runs as a subprocess.
"""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from mmpcm.testing import write_smoke_data
from mmpcm.utils.checkpoint import load_checkpoint_file

from tool_loader import ROOT, ToolRun, run_tool_here

CONFIG = osp.join(ROOT, 'configs', 'pcm', 'pcm_smoke.py')
# Short runs: 2 iterations per epoch (8 pairs, batch 4), no validation.
FAST = ['--cfg-options', 'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1']


def _ok(run: ToolRun) -> ToolRun:
    assert run.status == 0, run.out[-3000:] + run.err[-3000:]
    return run


def _train(capsys, work_dir, epochs, *extra) -> ToolRun:
    return _ok(run_tool_here(
        capsys, 'train', CONFIG, '--work-dir', work_dir, '--no-validate',
        *extra, *FAST, f'train_cfg.max_epochs={epochs}'))


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    cwd = tmp_path_factory.mktemp('tools')
    write_smoke_data(str(cwd / 'data' / 'smoke'))
    return cwd


@pytest.fixture
def in_workspace(workspace, monkeypatch):
    """The tools' data paths (data/smoke) are relative: run from there."""
    monkeypatch.chdir(workspace)
    return workspace


def test_train_writes_checkpoint_and_resume_continues(in_workspace, capsys):
    work = str(in_workspace / 'run')
    _train(capsys, work, 1)
    ckpt = load_checkpoint_file(osp.join(work, 'epoch_1.pth'))
    assert ckpt['meta']['epoch'] == 1 and ckpt['meta']['iter'] == 2
    assert 'head.vocab_bytes' in ckpt['state_dict']

    # "Interrupted" after epoch 1: --resume picks up the latest checkpoint
    # and continues at iteration 3, not from scratch.
    log = _train(capsys, work, 2, '--resume').log
    assert 'resumed epoch: 1, iter: 2' in log
    assert 'Epoch(train) [2][1/2]' in log and 'Epoch(train) [1][' not in log
    ckpt2 = load_checkpoint_file(osp.join(work, 'epoch_2.pth'))
    assert ckpt2['meta']['epoch'] == 2 and ckpt2['meta']['iter'] == 4
    # The schedule continued too: after 4 iterations the optimizer holds
    # Noam's lr for t = 5 (a restarted schedule would hold t = 3's).
    lr = ckpt2['optimizer']['param_groups'][0]['lr']
    assert lr == pytest.approx(0.1 * 64 ** -0.5 * 5 * 40 ** -1.5, rel=1e-4)


def test_dist_train_two_gloo_processes(workspace):
    """A subprocess: dist_train.sh starts two ranks with torchrun."""
    work = str(workspace / 'dist')
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1',
               PYTHON=sys.executable, PORT=str(29500 + os.getpid() % 1000))
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), CONFIG, '2',
         '--work-dir', work, '--no-validate', *FAST,
         'train_cfg.max_epochs=1'], cwd=workspace, env=env,
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'Distributed training: True' in log
    # 8 pairs over 2 ranks at batch 4: one iteration per epoch per rank.
    assert 'Epoch(train) [1][1/1]' in log
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))


def test_test_tool_needs_only_config_and_checkpoint(in_workspace, capsys,
                                                    monkeypatch):
    work = str(in_workspace / 'full')
    _ok(run_tool_here(capsys, 'train', CONFIG, '--work-dir', work,
                      '--no-validate'))
    # Only the real test features and their references remain: the training
    # captions (vocabulary source) and the concept file are gone.
    isolated = in_workspace / 'isolated'
    shutil.copytree(in_workspace / 'data' / 'smoke' / 'test',
                    isolated / 'data' / 'smoke' / 'test')
    shutil.copy(in_workspace / 'data' / 'smoke' / 'test_gt.json',
                isolated / 'data' / 'smoke' / 'test_gt.json')
    monkeypatch.chdir(isolated)
    log = _ok(run_tool_here(capsys, 'test', CONFIG,
                            osp.join(work, 'epoch_100.pth'), '--work-dir',
                            str(isolated / 'out'))).log
    # The tiny captioner memorises its eight captions.
    assert 'coco-caption/Bleu_4: 100.0000' in log


def test_validation_keeps_the_best_checkpoint_and_test_takes_it(
        in_workspace, capsys):
    """Validation every epoch keeps best_coco-caption_CIDEr_epoch_N.pth; a
    work dir, or no checkpoint at all, makes tools/test.py test that file
    and name it in its first line."""
    work = str(in_workspace / 'best')
    _ok(run_tool_here(capsys, 'train', CONFIG, '--work-dir', work, *FAST,
                      'train_cfg.max_epochs=2', 'train_cfg.val_interval=1'))
    best, = glob.glob(osp.join(work, 'best_*.pth'))
    epoch = load_checkpoint_file(best)['meta']['epoch']
    assert osp.basename(best) == f'best_coco-caption_CIDEr_epoch_{epoch}.pth'
    line = (f'checkpoint: {best} (best coco-caption/CIDEr on validation in '
            f'{work})')
    out = in_workspace / 'best_out'
    run = _ok(run_tool_here(capsys, 'test', CONFIG, work, '--work-dir',
                            str(out)))
    assert run.out.startswith(line + '\n')
    metrics_file, = glob.glob(str(out / '*' / 'metrics.json'))
    with open(metrics_file) as f:
        assert json.load(f)['checkpoint'] == best
    run = _ok(run_tool_here(capsys, 'test', CONFIG, '--work-dir', work))
    assert run.out.startswith(line + '\n')
    metrics_file, = glob.glob(osp.join(work, '*', 'metrics.json'))
    with open(metrics_file) as f:
        assert json.load(f)['checkpoint'] == best


def test_resume_with_another_vocabulary_is_refused(in_workspace, tmp_path,
                                                   capsys, monkeypatch):
    work = str(in_workspace / 'vocab')
    _train(capsys, work, 1)
    # Same run, but the corpus's vocabulary (vocab.json) changed.
    other = tmp_path / 'other'
    write_smoke_data(str(other / 'data' / 'smoke'))
    from mmpcm.text import WordVocabulary
    WordVocabulary.from_captions(
        ['a completely different caption'] * 8, min_count=1).save(
            str(other / 'data' / 'smoke' / 'vocab.json'))
    monkeypatch.chdir(other)
    run = run_tool_here(capsys, 'train', CONFIG, '--work-dir', work,
                        '--no-validate', '--resume', *FAST,
                        'train_cfg.max_epochs=2')
    assert run.status != 0
    assert 'epoch_1.pth' in run.err
    assert "word vocabulary" in run.err and 'first difference' in run.err
