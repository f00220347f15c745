"""Run a script under tools/ in this process: load it as a module and call
its ``main(argv)``, ending the run as the end of its own process would."""
import importlib.util
import logging
import os
import os.path as osp
import sys
import warnings
from contextlib import contextmanager
from types import ModuleType
from typing import Dict, Iterator, List, NamedTuple

from mmengine.utils import ManagerMixin

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(name: str) -> ModuleType:
    """``load_tool('data/prepare_corpus')`` is tools/data/prepare_corpus.py."""
    path = osp.join(ROOT, 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(
        'tool_' + name.replace('/', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
