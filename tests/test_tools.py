"""tools/train.py, tools/dist_train.sh (2 gloo processes), --resume and
tools/test.py, end to end on the tiny smoke config.

The Python tools run in this process, through their ``main(argv)``
(:func:`run_tool_here`); only dist_train.sh, which starts its own
processes, runs as a subprocess.
"""
import glob
import json
import logging
import os
import os.path as osp
import shutil
import subprocess
import sys
import warnings
from contextlib import contextmanager
from typing import Dict, Iterator, List, NamedTuple

import pytest
from mmengine.utils import ManagerMixin

from mmpcm.testing import write_smoke_data
from mmpcm.utils.checkpoint import load_checkpoint_file

from tool_loader import ROOT, load_tool

CONFIG = osp.join(ROOT, 'configs', 'pcm', 'pcm_smoke.py')
# Short runs: 2 iterations per epoch (8 pairs, batch 4), no validation.
FAST = ['--cfg-options', 'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1']


def _mmengine_globals() -> dict:
    """mmengine's named global instances, ``{(class, name): instance}``:
    loggers, message hubs, visualizers, default scopes."""
    found, classes = {}, [ManagerMixin]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        for name, instance in vars(cls).get('_instance_dict', {}).items():
            found[cls, name] = instance
    return found


@contextmanager
def one_run() -> Iterator[List[str]]:
    """Ends a run in this process as the end of its own process would.

    mmengine keys a run's logger, visualizer and message hub by
    ``<config name>_<second the runner was built>``, not by work dir: a
    second run of the same config built within the same second would get
    the first run's logger and write its lines into the first run's log
    file. So what the run created is dropped on exit (log files closed),
    and the environment variables it set (LOCAL_RANK) are undone. Yields
    the list that then holds the run's log files.
    """
    before, env = set(_mmengine_globals()), dict(os.environ)
    log_files: List[str] = []
    try:
        yield log_files
    finally:
        for (cls, name), instance in _mmengine_globals().items():
            if (cls, name) in before:
                continue
            del cls._instance_dict[name]
            if not isinstance(instance, logging.Logger):
                continue
            for handler in list(instance.handlers):
                if isinstance(handler, logging.FileHandler):
                    log_files.append(handler.baseFilename)
                instance.removeHandler(handler)
                handler.close()
        for key in set(os.environ) - set(env):
            del os.environ[key]
        os.environ.update(env)


# How far each log file was read: two runs in one work dir within the same
# second share <work_dir>/<timestamp>/<timestamp>.log (appended to).
_LOG_READ: Dict[str, int] = {}


class ToolRun(NamedTuple):
    status: int  # the exit status
    out: str  # stdout (mmengine's logger writes there too)
    err: str  # stderr: the tool's 'error: ' / 'warning: ' lines
    log: str  # what the run wrote to its mmengine log file ('' if none)


def _warning_to_stderr(message, category, filename, lineno, file=None,
                       line=None) -> None:
    """Python's own output of a warning: sys.stderr, in the format in
    effect (the tools': ``warning: <message>``)."""
    sys.stderr.write(
        warnings.formatwarning(message, category, filename, lineno, line))


def run_tool_here(capsys, name: str, *argv: str) -> ToolRun:
    """``tools/<name>.py ARGV`` in this process (no interpreter start).

    As in a process of its own, warnings go to stderr (pytest would record
    them) and each is shown once per run (a fresh warning registry).
    """
    capsys.readouterr()
    with one_run() as log_files, warnings.catch_warnings():
        warnings.showwarning = _warning_to_stderr
        status = load_tool(name).main(list(argv))
    out, err = capsys.readouterr()
    assert len(log_files) <= 1, log_files
    log = ''
    if log_files:
        with open(log_files[0], 'rb') as f:
            f.seek(_LOG_READ.get(log_files[0], 0))
            log = f.read().decode()
            _LOG_READ[log_files[0]] = f.tell()
    return ToolRun(status, out, err, log)


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
    # Same run, but the training captions (and so the vocabulary) changed.
    other = tmp_path / 'other'
    write_smoke_data(str(other / 'data' / 'smoke'))
    captions = other / 'data' / 'smoke' / 'train'
    shutil.rmtree(captions)
    from mmpcm.datasets.feature_store import make_random_feature_store
    make_random_feature_store(str(captions), ['a completely different caption'] * 8,
                              16, 32, 16, clip_model='custom')
    monkeypatch.chdir(other)
    run = run_tool_here(capsys, 'train', CONFIG, '--work-dir', work,
                        '--no-validate', '--resume', *FAST,
                        'train_cfg.max_epochs=2')
    assert run.status != 0
    assert 'epoch_1.pth' in run.err
    assert "word vocabulary" in run.err and 'first difference' in run.err
