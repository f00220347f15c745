"""Name the checkpoint file in errors raised while a Runner loads it."""
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from mmengine.runner import Runner, find_latest_checkpoint

from mmpcm.models.utils.errors import CheckpointMismatchError
from mmpcm.utils.cli import InputError


def checkpoint_in_use(runner: Runner) -> Optional[str]:
    """The file ``runner.load_or_resume()`` loads (its own rule)."""
    if runner._resume and runner._load_from is None:
        return find_latest_checkpoint(runner.work_dir)
    return runner._load_from


def config_name(cfg: Any) -> str:
    """How messages name a run's config: its file, when it has one.

    Args:
        cfg (Config | dict | str | None): A config, or its file name.

    Returns:
        str: The file name, or ``'the config'``.
    """
    if isinstance(cfg, str):
        return cfg
    return getattr(cfg, 'filename', None) or 'the config'


@contextmanager
def naming_checkpoint(runner: Runner) -> Iterator[None]:
    """Re-raise :class:`CheckpointMismatchError` with the file name in front.

    A mismatch that already names its file (an :class:`InputError` such as
    :class:`~mmpcm.models.utils.errors.ConfigMismatchError`) passes
    unchanged.

    Args:
        runner (Runner): The runner about to train or test.
    """
    try:
        yield
    except CheckpointMismatchError as err:
        if isinstance(err, InputError):
            raise
        raise type(err)(f'{checkpoint_in_use(runner)}: {err}') from err
