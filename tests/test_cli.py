"""One-line errors from every tool (mmpcm.utils.cli)."""
import argparse
import errno
import io

import pytest
import torch

from mmpcm.utils.cli import (EXIT_ERROR, EXIT_INTERRUPTED, InputError,
                             MissingInputError, error_line, run_tool)


def _run(raise_what, debug=False):
    def main(args):
        raise raise_what

    err = io.StringIO()
    status = run_tool(main, argparse.Namespace(debug=debug), stderr=err)
    return status, err.getvalue()


def test_input_error_is_one_line_with_file_problem_remedy():
    status, err = _run(InputError('a.json', 'not valid JSON', 'fix it'))
    assert status == EXIT_ERROR
    assert err == 'error: a.json: not valid JSON; fix it\n'


def test_missing_input_is_a_file_not_found_error():
    error = MissingInputError('x/meta.json', 'no such file', 'extract first')
    assert isinstance(error, FileNotFoundError)
    assert isinstance(error, ValueError)
    assert str(error) == 'x/meta.json: no such file; extract first'


@pytest.mark.parametrize('code,words', [
    (errno.ENOENT, 'no such file or folder'),
    (errno.EACCES, 'permission denied'),
    (errno.EROFS, 'read-only file system'),
    (errno.ENOSPC, 'no space left'),
])
def test_os_errors_are_worded_by_errno(code, words):
    status, err = _run(OSError(code, 'ignored', '/out/x.json'))
    assert status == EXIT_ERROR
    assert err.startswith(f'error: /out/x.json: {words}')
    assert err.count('\n') == 1 and 'Traceback' not in err


def test_unexpected_error_is_one_line_naming_the_type_and_debug():
    status, err = _run(ZeroDivisionError('division by zero'))
    assert status == EXIT_ERROR
    assert err == ('error: unexpected ZeroDivisionError: division by zero; '
                   'rerun with --debug for the traceback and report it\n')
    assert not error_line(ZeroDivisionError('x'))[1]


def test_debug_reraises():
    with pytest.raises(InputError):
        _run(InputError('a', 'b', 'c'), debug=True)


def test_interrupt_exits_130_and_says_work_is_kept():
    status, err = _run(KeyboardInterrupt())
    assert status == EXIT_INTERRUPTED
    assert 'rerun the same command to resume' in err


def test_status_of_main_is_returned():
    assert run_tool(lambda args: 3, argparse.Namespace()) == 3
    assert run_tool(lambda args: None, argparse.Namespace()) == 0


class _FailingDataset(torch.utils.data.Dataset):

    def __init__(self, error):
        self.error = error

    def __len__(self):
        return 1

    def __getitem__(self, index):
        raise self.error


@pytest.mark.parametrize('error,line,actionable', [
    (InputError('a.npy', 'short read', 'extract again'),
     'a.npy: short read; extract again', True),
    (ZeroDivisionError('division by zero'),
     'unexpected ZeroDivisionError in a data loader worker: division by '
     'zero; rerun with --debug for the traceback and report it', False),
])
def test_errors_from_data_loader_workers_keep_their_line(error, line,
                                                         actionable):
    """torch re-raises a worker's InputError as a RuntimeError holding the
    worker's traceback: the tool still prints the original line."""
    loader = torch.utils.data.DataLoader(_FailingDataset(error),
                                         num_workers=1)
    with pytest.raises(Exception) as info:
        next(iter(loader))
    assert error_line(info.value) == (line, actionable)


def test_runtime_errors_raised_by_mmpcm_are_user_errors():
    """``--amp`` without CUDA: mmpcm's own check, not a defect."""
    from mmengine.config import Config

    from mmpcm.apis.run_config import check_amp_device
    if torch.cuda.is_available():
        pytest.skip('the check passes on a CUDA machine')
    with pytest.raises(RuntimeError) as info:
        check_amp_device(Config(dict(optim_wrapper=dict(
            type='AmpOptimWrapper'))))
    line, actionable = error_line(info.value)
    assert actionable and line.startswith('--amp needs a CUDA GPU')
    assert not error_line(RuntimeError('CUDA out of memory'))[1]
