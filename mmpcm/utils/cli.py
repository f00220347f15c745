"""One line per user error: how every mmpcm tool reports bad input.

:func:`run_tool` prints ``error: <file>: <what is wrong>; <what to do>`` for
what a tool's ``main`` raises and exits non-zero; which errors are the
user's, warnings and ``--debug``: ``docs/inputs_and_errors.md``.
"""
import argparse
import errno
import logging
import os
import re
import sys
import traceback
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TextIO, Tuple, Type

__all__ = [
    'InputError', 'MissingInputError', 'add_debug_flag', 'check_output_file',
    'error_line', 'load_config', 'run_tool', 'EXIT_ERROR', 'EXIT_INTERRUPTED'
]

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Base of mmpcm's errors that a user can act on.

    Its message names the file and says what to do; tools print it as one
    ``error:`` line (:func:`error_line`). Domain errors of other modules
    (:class:`InputError`, image, checkpoint, release and concept file
    errors) derive from it, so this module needs to know none of them.
    """


class InputError(UserError, ValueError):
    """An input the user can fix: which file, what is wrong, what to do.

    ``str(error)`` is ``'<path>: <problem>; <remedy>'``.

    Args:
        path (str | PathLike): The file or folder at fault (or an option
            name such as ``'--out'`` when no file is involved).
        problem (str): What is wrong with it, lower case, no final period.
        remedy (str): What to do about it.
    """

    def __init__(self, path, problem: str, remedy: str) -> None:
        self.path = os.fspath(path) if not isinstance(path, str) else path
        self.problem = problem
        self.remedy = remedy
        super().__init__(f'{self.path}: {problem}; {remedy}')

    def __reduce__(self):
        return type(self), (self.path, self.problem, self.remedy)


class MissingInputError(InputError, FileNotFoundError):
    """An input file or folder that does not exist."""


# errno -> (problem, remedy) for OSErrors that carry a file name.
_OS_ERRORS = {
    errno.ENOENT: ('no such file or folder', 'check the path'),
    errno.EACCES: ('permission denied',
                   'choose a path you may read and write, or fix its '
                   'permissions'),
    errno.EPERM: ('operation not permitted',
                  'choose a path you may read and write'),
    errno.EROFS: ('read-only file system', 'choose a writable folder'),
    errno.ENOSPC: ('no space left on the device',
                   'free space and rerun: finished work is kept'),
    errno.EISDIR: ('is a folder, not a file', 'pass a file'),
    errno.ENOTDIR: ('a part of the path is not a folder',
                    'check the path'),
    errno.EEXIST: ('already exists', 'choose another path or remove it'),
    errno.ENAMETOOLONG: ('file name too long', 'choose a shorter path'),
}


def _class_names(cls: Type[BaseException]) -> set:
    """Names of ``cls`` and of every subclass of it defined so far."""
    names = {cls.__name__}
    for sub in cls.__subclasses__():
        names |= _class_names(sub)
    return names


def _raised_by_mmpcm(error: BaseException) -> bool:
    """Whether the innermost frame of ``error`` is in the mmpcm package."""
    frames = traceback.extract_tb(error.__traceback__)
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return bool(frames) and os.path.abspath(
        frames[-1].filename).startswith(package + os.sep)


_WORKER_ERROR = re.compile(
    r'^Caught (?P<type>\w+) in DataLoader worker process \d+\.\n'
    r'Original Traceback \(most recent call last\):\n(?P<trace>.*)\Z',
    re.S)


def _worker_error_line(error: BaseException) -> Optional[Tuple[str, bool]]:
    """The line of an error a DataLoader worker raised, as if raised here.

    torch re-raises a worker's exception as ``type(msg)`` with the worker's
    traceback in ``msg``, or as a RuntimeError when the type does not take
    one argument (:class:`InputError`). The last traceback line holds the
    original ``module.Type: message``.
    """
    match = _WORKER_ERROR.match(str(error))
    if match is None:
        return None
    trace = match['trace'].rstrip('\n')
    last = trace.splitlines()[-1] if trace else ''
    message = last.split(': ', 1)[1] if ': ' in last else last
    files = re.findall(r'^  File "([^"]+)"', trace, re.M)
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    names = _class_names(UserError) | {'ShortReadError'}
    by_mmpcm = bool(files) and os.path.abspath(files[-1]).startswith(
        package + os.sep)
    if match['type'] in names or (
            by_mmpcm and match['type'] in ('ValueError', 'KeyError')):
        return ' '.join(message.split()), True
    return (f'unexpected {match["type"]} in a data loader worker: '
            f'{message}; rerun with --debug for the traceback and report '
            'it'), False


def error_line(error: BaseException) -> Tuple[str, bool]:
    """The one line (without ``'error: '``) that reports ``error``.

    Errors raised in a DataLoader worker process are reported as the
    original error (see :func:`_worker_error_line`).

    Args:
        error (BaseException): What a tool raised.

    Returns:
        tuple[str, bool]: The line, and whether the error is one the user
        can act on (False: a defect, worth a report with ``--debug``).
    """
    worker = _worker_error_line(error)
    if worker is not None:
        return worker
    if isinstance(error, UserError):
        return str(error), True
    if isinstance(error, OSError) and error.filename is not None:
        problem, remedy = _OS_ERRORS.get(
            error.errno, ((error.strerror or str(error)).lower(),
                          'check the path'))
        name = error.filename
        if error.filename2 is not None:
            name = f'{name} -> {error.filename2}'
        return f'{name}: {problem}; {remedy}', True
    if isinstance(error, FileNotFoundError):  # raised with a message only
        return f'{error}; check the path', True
    if isinstance(error, (ValueError, KeyError, RuntimeError)
                  ) and _raised_by_mmpcm(error):
        # mmpcm validates its inputs with ValueError/KeyError messages
        # that name the file; one line of them.
        text = error.args[0] if error.args else type(error).__name__
        return ' '.join(str(text).split()), True
    text = str(error).splitlines()[0] if str(error) else ''
    return (f'unexpected {type(error).__name__}: {text}; rerun with --debug '
            'for the traceback and report it'), False


def check_output_file(path: str) -> str:
    """Check before any work that a file can be written at ``path``.

    A parent folder that does not exist yet is created.

    Args:
        path (str): The output file.

    Returns:
        str: ``path``.

    Raises:
        InputError: If ``path`` is a folder or its folder is not writable.
        OSError: If the folder cannot be created (worded by
            :func:`error_line`).
    """
    if os.path.isdir(path):
        raise InputError(path, 'is a folder, not a file',
                         'give a file path in it, e.g. '
                         f'{os.path.join(path, "out.jsonl")}')
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise InputError(folder, 'folder is not writable',
                         'choose a writable folder')
    return path


def check_output_dir(path: str) -> str:
    """Check before any work that a folder can be written at ``path``.

    Args:
        path (str): The output folder (created if missing).

    Returns:
        str: ``path``.

    Raises:
        InputError: If ``path`` is a file, or it is not writable.
        OSError: If the folder cannot be created (worded by
            :func:`error_line`).
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(path, 'is a file, not a folder',
                         'give a folder path (created if missing)')
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise InputError(path, 'folder is not writable',
                         'choose a writable folder')
    return path


def load_config(path: str):
    """Read an mmengine config file; a missing or broken file is an error.

    Args:
        path (str): The config (``configs/pcm/pcm_coco.py``).

    Returns:
        mmengine.config.Config: The config.

    Raises:
        MissingInputError: No such file (or a base it inherits is missing).
        InputError: A folder, or a file that is not valid Python.
    """
    from mmengine.config import Config
    if os.path.isdir(path):
        raise InputError(path, 'is a folder, not a config file',
                         'pass a config such as configs/pcm/pcm_coco.py')
    if not os.path.isfile(path):
        raise MissingInputError(path, 'no such config file',
                                'pass a config such as '
                                'configs/pcm/pcm_coco.py')
    try:
        return Config.fromfile(path)
    except SyntaxError as error:
        name = (error.filename if error.filename not in (None, '<unknown>')
                else path)
        where = f'{name}:{error.lineno}'
        raise InputError(where, f'not valid Python ({error.msg})',
                         'fix the config') from error
    except FileNotFoundError as error:
        raise MissingInputError(
            path, f'a file it needs is missing ({error})',
            'check its _base_ entries') from error


def thread_count(text: str) -> int:
    """argparse type of a CPU thread count: a whole number >= 1.

    Raises:
        argparse.ArgumentTypeError: Otherwise (argparse makes it one usage
            error line and exit status 2).
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f'must be a whole number >= 1, got {text!r}')
    return value


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug``: show the traceback of an error instead of one line."""
    parser.add_argument('--debug', action='store_true',
                        help='show the full traceback of an error')


def _mmengine_loggers() -> dict:
    """mmengine's loggers by name (empty when mmengine is not loaded)."""
    module = sys.modules.get('mmengine.logging')
    return dict(module.MMLogger._instance_dict) if module else {}


def _log_traceback(error: BaseException, before: dict) -> Optional[str]:
    """Write the traceback to the log file of a run this call started.

    Args:
        error (BaseException): The error.
        before (dict): The mmengine loggers that existed before the tool
            ran (their files belong to earlier runs of the process).

    Returns:
        str, optional: The log file written to.
    """
    text = ''.join(
        traceback.format_exception(type(error), error, error.__traceback__))
    for name, logger in _mmengine_loggers().items():
        if name in before:
            continue
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.stream.write(text)
                handler.flush()
                return handler.baseFilename
    return None


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """``warnings.formatwarning`` for tools: ``warning: <message>``."""
    return f'warning: {" ".join(str(message).split())}\n'


@contextmanager
def _one_line_warnings(debug: bool) -> Iterator[None]:
    """Warnings as one line each (with their source line under --debug)."""
    original = warnings.formatwarning
    if not debug:
        warnings.formatwarning = _one_line_warning
    try:
        yield
    finally:
        warnings.formatwarning = original


def run_tool(main: Callable[[argparse.Namespace], Optional[int]],
             args: argparse.Namespace,
             stderr: Optional[TextIO] = None,
             error_status: int = EXIT_ERROR) -> int:
    """Run a tool's ``main(args)``; report what it raises in one line.

    Args:
        main (Callable): The tool; returns its exit status (None is 0).
        args (argparse.Namespace): Its parsed arguments; ``args.debug``
            (see :func:`add_debug_flag`) re-raises instead.
        stderr (TextIO, optional): Where the line goes (default
            ``sys.stderr``).
        error_status (int): The exit status after an error (default 1).

    Returns:
        int: The exit status: main's, ``error_status`` after an error,
        ``EXIT_INTERRUPTED`` (130) after Ctrl-C.
    """
    stderr = stderr if stderr is not None else sys.stderr
    debug = bool(getattr(args, 'debug', False))
    loggers = _mmengine_loggers()
    try:
        with _one_line_warnings(debug):
            status = main(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print('interrupted: the files finished so far are kept; rerun the '
              'same command to resume', file=stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001  every error gets one line
        if debug:
            raise
        line, _ = error_line(error)
        log_file = _log_traceback(error, loggers)
        if log_file is not None:
            line += f' (traceback in {log_file})'
        print(f'error: {line}', file=stderr, flush=True)
        return error_status
    return 0 if status is None else int(status)
